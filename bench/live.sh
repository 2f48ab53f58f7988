#!/usr/bin/env bash
# bench/live.sh - the live view under load: a fresh `kiln serve`, then
# build/bench/sse_fanout with C SSE clients (baseline: one client, same run).
#
#   bash bench/live.sh [C=1000] [ROUNDS=100]
set -eu
C=${1:-1000}
ROUNDS=${2:-100}
SRC=$(cd "$(dirname "$0")/.." && pwd)
KILN=${KILN_BIN:-$SRC/build/kiln}
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-live-XXXXXX")
SPID=""
cleanup() {
    [ -n "$SPID" ] && { kill -TERM "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; }
    rm -rf "$T"
}
trap cleanup EXIT
SUB=$("$KILN" token create --role submit --data "$T/var" 2>/dev/null)
ulimit -n $((C + 256)) 2>/dev/null || true
# The per-client caps of issue 16 (256 streams, 128 connections per
# address) would turn this bench's clients away: raise them for the run.
printf '{"max_streams":%d,"max_connections_per_client":%d}\n' $((C + 16)) $((C + 64)) >"$T/serve.json"
"$KILN" serve --listen 127.0.0.1:0 --data "$T/var" --config "$T/serve.json" --allow-anonymous-read \
    >"$T/serve.log" 2>&1 &
SPID=$!
PORT=""
for _ in $(seq 1 200); do
    PORT=$(sed -n 's/.*listening on .*(port \([0-9]*\)).*/\1/p' "$T/serve.log" | tail -1)
    [ -n "$PORT" ] && break
    sleep 0.05
done
[ -n "$PORT" ] || { cat "$T/serve.log"; exit 1; }
echo "live: load=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
c0=$(awk '{print $14 + $15}' "/proc/$SPID/stat")
"$SRC/build/bench/sse_fanout" "http://127.0.0.1:$PORT" "$SUB" "$C" "$ROUNDS"
# serve's own CPU per state change (both runs: one submit + fan-out each),
# the part of the latency the machine's load does not add.
awk -v a="$c0" -v t="$(getconf CLK_TCK)" -v r="$ROUNDS" -v c="$C" \
    '{printf "live: serve CPU %.2f ms per state change (1 + %d clients, averaged)\n", ($14 + $15 - a) / t * 1000 / (2 * r), c}' "/proc/$SPID/stat"
