#!/usr/bin/env bash
# bench/e2e_noop.sh - N no-op jobs (`true`, 1 core, 64 MiB) through a real
# `kiln serve` and a real `kiln worker` process (one process per job, RAM
# limit enforced by the worker's cgroup or polling method), against the
# machine's own limit measured in the same run: build/bench/spawn_raw, a C
# loop of posix_spawn + waitpid of /bin/true with one spawner per worker core.
#
#   bash bench/e2e_noop.sh [N=300] [CORES=2] [ROUNDS=3]
#
# The jobs are all submitted, and the client that waits for them is up
# (since 2026-12-07 14:10; before, its Python start-up shared the first
# second of the run), before the worker starts, so the figure is the
# worker+server throughput: N / (last finished_at - first started_at), the
# jobs' own timestamps. Rounds alternate kiln and the baseline; medians are
# compared. Prints "e2e_noop ... ratio R" as its last line.
set -eu
N=${1:-300}
CORES=${2:-2}
ROUNDS=${3:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
KILN=${KILN_BIN:-$SRC/build/kiln}
RAW=${SPAWN_RAW:-$SRC/build/bench/spawn_raw}
CLIENT="python3 $SRC/bench/lib/kiln_client.py"
[ -x "$KILN" ] && [ -x "$RAW" ] || { echo "build first: make && make bench" >&2; exit 2; }
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-e2e-bench-XXXXXX")
SPID="" WPID=""
cleanup() {
    for p in $WPID $SPID; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $WPID $SPID; do wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT

# One kiln round: fresh data dir, N jobs queued, then the worker drains them.
kiln_round() {
    local r=$1 d=$T/r$1
    mkdir -p "$d"
    local sub wk port=""
    sub=$("$KILN" token create --role submit --data "$d/var" 2>/dev/null)
    wk=$("$KILN" token create --role worker --data "$d/var" 2>/dev/null)
    ${SERVE_PREFIX:-} "$KILN" serve --listen 127.0.0.1:0 --data "$d/var" --allow-anonymous-read >"$d/serve.log" 2>&1 &
    SPID=$!
    for _ in $(seq 1 200); do
        port=$(sed -n 's/.*listening on .*(port \([0-9]*\)).*/\1/p' "$d/serve.log" | tail -1)
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { cat "$d/serve.log"; exit 1; }
    local url=http://127.0.0.1:$port
    $CLIENT "$url" "$sub" submit "$N" >/dev/null
    # The waiting client starts first: the interpreter's start (a pyenv
    # shim here: 0.4 s of CPU) must not share the cores with the jobs.
    $CLIENT "$url" "" wait "$N" 600 "$d/ready" >"$d/wait.out" &
    local cpid=$!
    for _ in $(seq 1 400); do
        [ -e "$d/ready" ] && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.05
    done
    ${WORKER_PREFIX:-} "$KILN" worker --server "$url" --token "$wk" --name bench-w --cores "$CORES" --ram 4G \
        --work-dir "$d/work" --log-level warn ${KILN_WORKER_ARGS:-} >"$d/worker.log" 2>&1 &
    WPID=$!
    local out
    wait "$cpid" || { tail "$d/worker.log" "$d/serve.log"; exit 1; }
    out=$(cat "$d/wait.out")
    # CPU seconds per job of each process (utime+stime, clock ticks): where
    # the machine's time went, beside the throughput.
    local tck cw cc cs
    tck=$(getconf CLK_TCK)
    cw=$(awk '{print $14 + $15}' "/proc/$WPID/stat")
    cc=$(awk '{print $16 + $17}' "/proc/$WPID/stat")
    cs=$(awk '{print $14 + $15}' "/proc/$SPID/stat")
    awk -v w="$cw" -v c="$cc" -v s="$cs" -v t="$tck" -v n="$N" 'BEGIN{printf "  cpu per job: worker %.2f ms, its jobs %.2f ms, serve %.2f ms\n", w/t/n*1000, c/t/n*1000, s/t/n*1000}' >&2
    kill -TERM "$WPID" "$SPID"
    wait "$WPID" "$SPID" 2>/dev/null || true
    WPID="" SPID=""
    echo "$out" | awk -v n="$N" '{printf "%.1f\n", n / ($4 - $3)}'
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

K=() B=()
for r in $(seq 1 "$ROUNDS"); do
    K+=("$(kiln_round "$r")")
    raw=$("$RAW" "$N" "$CORES")
    B+=("$(echo "$raw" | awk '{print $5}')")
    echo "round $r: kiln ${K[-1]} jobs/s, raw posix_spawn ${B[-1]} jobs/s ($(echo "$raw" | awk '{print $6}') ms CPU per job)" >&2
done
km=$(printf '%s\n' "${K[@]}" | median)
bm=$(printf '%s\n' "${B[@]}" | median)
echo "e2e_noop N=$N cores=$CORES rounds=$ROUNDS load=\"$(cut -d' ' -f1-3 /proc/loadavg)\" kiln=$km jobs/s raw=$bm jobs/s ratio $(awk -v k="$km" -v b="$bm" 'BEGIN{printf "%.3f", k/b}')"
