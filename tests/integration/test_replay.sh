#!/usr/bin/env bash
# Issue 14: the service runs the policy that `kiln sim` measures. kiln serve
# --trace records the placer's inputs while 3 fake workers (replay_farm.py)
# run 200 jobs: GPU test stages (one recipe with sm_compat), dependencies, a
# cancel and a worker that goes silent and is declared lost. kiln sim
# --replay feeds the trace to a fresh placer and must make every decision the
# service made, one by one. Negative check: the same trace replayed under the
# other host policy (`kiln sim --replay --host-policy`: a simulator whose
# policy differs from the service's) must be reported as different.
set -u
: "${KILN_BIN:?}"
KILN=$KILN_BIN
HERE=$(cd "$(dirname "$0")" && pwd)
command -v python3 >/dev/null || { echo "SKIP python3 not installed"; exit 77; }
T=$(mktemp -d /tmp/kiln-replay-XXXXXX)
pids=()
. "$HERE/lib_stop.sh"
cleanup() { for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
cat >"$T/serve.yaml" <<'Y'
lost_after_s: 3
heartbeat_s: 1
retry_backoff_s: 0
Y

# run NAME: serve with --trace, the farm, then stop serve.
run() {
    local name=$1
    local d=$T/$name
    mkdir -p "$d"
    local admin wtok
    admin=$("$KILN" token create --data "$d/data" --role admin | grep -oE 'kiln_[0-9a-f]{48}')
    wtok=$("$KILN" token create --data "$d/data" --role worker | grep -oE 'kiln_[0-9a-f]{48}')
    "$KILN" serve --config "$T/serve.yaml" --listen 127.0.0.1:0 --data "$d/data" \
        --trace "$d/trace.jsonl" >"$d/serve.log" 2>&1 &
    local spid=$!
    pids+=("$spid")
    local port=""
    for _ in $(seq 200); do
        port=$(sed -n 's/.*listening on .*(port \([0-9]*\)).*/\1/p' "$d/serve.log" | tail -1)
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || fail "$name: serve did not start: $(cat "$d/serve.log")"
    python3 "$HERE/replay_farm.py" "http://127.0.0.1:$port/api/v1" "$admin" "$wtok" \
        >"$d/farm.log" 2>&1 || { cat "$d/farm.log"; tail -5 "$d/serve.log"; fail "$name: the farm run"; }
    sed 's/^/  /' "$d/farm.log"
    stop_pid "$spid"
}

run same
# A second policy line means the service's glue hit an error and started
# over from the store: that must not happen in a healthy run.
resets=$(grep -c '"ev":"policy"' "$T/same/trace.jsonl")
[ "$resets" = 1 ] || fail "the service's placer started over $((resets - 1)) time(s)"
"$KILN" sim --replay "$T/same/trace.jsonl" >"$T/same/replay.txt" 2>&1
rc=$?
cat "$T/same/replay.txt"
[ $rc = 0 ] || fail "the replay disagrees with the service (exit $rc)"
n=$(sed -n 's/.* dispatches, \([0-9]*\) decisions$/\1/p' "$T/same/replay.txt")
# 136 ad hoc builds + 64 builds + 64 tests, less the 2 that never run, plus reruns
[ "${n:-0}" -ge 262 ] || fail "only ${n:-0} decisions were compared"
echo "ok: $n decisions of the service replayed identically"

recorded=$(sed -n '1s/.*"host_policy":"\([a-z]*\)".*/\1/p' "$T/same/trace.jsonl")
case $recorded in spread) other=pack ;; pack) other=spread ;; *) fail "no host policy in the trace" ;; esac
"$KILN" sim --replay "$T/same/trace.jsonl" --host-policy "$other" >"$T/same/skewed.txt" 2>&1
rc=$?
cat "$T/same/skewed.txt"
[ $rc = 1 ] || fail "a simulator running $other against a service running $recorded was not caught (exit $rc)"
grep -q '^DIFFERENT: ' "$T/same/skewed.txt" || fail "no DIFFERENT line"
echo "ok: a service whose policy differs from the simulator's is caught"
echo PASS
