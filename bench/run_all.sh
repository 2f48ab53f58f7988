#!/usr/bin/env bash
# bench/run_all.sh - every benchmark, one after the other: `make bench`
# (full) and `make bench-quick` (short forms, under 5 minutes on the 2-core
# development VM). Each program prints its figures, its baseline from the
# same run and the ratio; this script keeps the output and, unless
# RECORD=0, appends it to docs/BENCHMARKS.md under "Recorded runs" with the
# date, the machine, its load and the exact command of each step.
#
#   bash bench/run_all.sh [quick|full]
# Not part of make check: nothing here is a timed test.
set -u
MODE=${1:-full}
SRC=$(cd "$(dirname "$0")/.." && pwd)
cd "$SRC"
B=${B:-build}
OUT=$B/bench/results-$(date -u +%Y%m%dT%H%M%SZ)-$MODE.md
mkdir -p "$B/bench"
if [ "$MODE" = quick ]; then
    steps=(
        "bash bench/e2e_noop.sh 100 2 1"
        "$B/bench/dispatch 300 4 30 8 50"
        "bash bench/live.sh 300 20"
        "bash bench/page_100k.sh 10000 100"
        "bash bench/scale.sh 10000 1000"
        "bash bench/peers.sh 20 2"
        "$B/bench/placement"
    )
else
    steps=(
        "bash bench/e2e_noop.sh 300 2 3"
        "$B/bench/dispatch 1000 4 100 16 100"
        "bash bench/live.sh 1000 100"
        "bash bench/page_100k.sh 100000 1000"
        "bash bench/scale.sh '10000 100000 1000000' 1000 $B/bench/scale.tsv"
        "python3 bench/plot_scale.py $B/bench/scale.tsv docs/bench-scale.svg"
        "bash bench/peers.sh 200 2"
        "$B/bench/http_bench 20000 500"
        "$B/bench/placement"
        "$B/bench/recipe_expand"
        "bash bench/sim_seed.sh"
    )
fi
{
    echo "### $(date -u '+%Y-%m-%d %H:%M') UTC, make bench$([ "$MODE" = quick ] && echo -quick)"
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '-dirty'); load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
} >"$OUT"
fails=0
for s in "${steps[@]}"; do
    echo "== $s"
    t0=$(date +%s)
    out=$(eval "$s" 2>&1)
    rc=$?
    echo "$out"
    {
        echo "    \$ $s    # $(($(date +%s) - t0)) s, exit $rc, load $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "$out" | grep -v '^\s*$' | tail -12 | sed 's/^/    /'
        echo
    } >>"$OUT"
    [ $rc = 0 ] || [ $rc = 77 ] || fails=$((fails + 1))
done
if [ "${RECORD:-1}" = 1 ]; then
    grep -q '^## Recorded runs' docs/BENCHMARKS.md ||
        printf '\n## Recorded runs\n\nAppended by `make bench` / `make bench-quick` (bench/run_all.sh); newest last.\n\n' >>docs/BENCHMARKS.md
    # at the end of that section (sections after it stay after it)
    python3 - docs/BENCHMARKS.md "$OUT" <<'PY'
import re, sys
doc, rec = open(sys.argv[1]).read(), open(sys.argv[2]).read().rstrip("\n") + "\n\n"
start = doc.index("\n## Recorded runs") + len("\n## Recorded runs")
nxt = re.search(r"^## ", doc[start:], re.M)
end = start + nxt.start() if nxt else len(doc)
head = doc[:end].rstrip("\n") + "\n\n"
open(sys.argv[1], "w").write(head + rec + doc[end:])
PY
    echo "recorded in docs/BENCHMARKS.md (and $OUT)"
fi
[ $fails = 0 ]
