#!/usr/bin/env bash
# make fuzz: long, random fuzzing of every tests/fuzz/fuzz_*.c, outside CI.
#
# CI (scripts/check.sh fuzz) replays the committed corpus and fuzzes briefly
# with a fixed seed, so its result never depends on luck. This script is the
# opposite: a fresh random seed per run, FUZZ_SECONDS per target, FUZZ_JOBS
# targets at a time. A target that finds something is restarted for the
# time it has left (up to 20 findings), so one early crash does not end its
# run. New inputs go to $FUZZ_OUT/corpus-NAME, findings to
# $FUZZ_OUT/findings/NAME/; the committed corpus (tests/fuzz/corpus/) is only
# read. A finding becomes a corpus file plus a fix in the same commit
# (docs/RELIABILITY.md, "Fuzzing").
#
# Environment (all optional):
#   FUZZ_SECONDS     per target (600)
#   FUZZ_JOBS        targets at a time (number of cores)
#   FUZZ_TARGETS     names to run, e.g. "fuzz_http fuzz_fatbin" (all)
#   FUZZ_OUT         where logs, new inputs and findings go (build/fuzz/long)
#   FUZZ_BIN_DIR     the fuzzer binaries (build/fuzz, built here first)
#   FUZZ_CORPUS_DIR  the committed corpus (tests/fuzz/corpus)
#   FUZZ_LOADER      a command to start each binary with, for binaries
#                    carried to another machine with their libraries
#                    ("lib/ld-linux-x86-64.so.2 --library-path lib")
# Exit status: 0 when no target found anything, 1 otherwise. Last lines: one
# row per target (executions, coverage, features, findings) and a total.
set -u
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-600}
JOBS=${FUZZ_JOBS:-$(nproc)}
OUTDIR=${FUZZ_OUT:-build/fuzz/long}
BINDIR=${FUZZ_BIN_DIR:-build/fuzz}
CORPUS=${FUZZ_CORPUS_DIR:-tests/fuzz/corpus}
LOADER=${FUZZ_LOADER:-}
MAX_FINDINGS=20

if [ -z "${FUZZ_BIN_DIR:-}" ]; then
    make --no-print-directory -j"$JOBS" -f scripts/fuzz.mk >/dev/null || {
        echo "fuzz.sh: building the fuzzers failed (make -f scripts/fuzz.mk)" >&2
        exit 2
    }
fi
mkdir -p "$OUTDIR/findings"

# One target for SECONDS_EACH seconds, restarted after each finding.
fuzz_one() {
    local bin=$1 name corpus work art log deadline left
    name=$(basename "$bin")
    corpus=$CORPUS/${name#fuzz_}
    work=$OUTDIR/corpus-$name
    art=$OUTDIR/findings/$name
    log=$OUTDIR/$name.log
    mkdir -p "$work" "$art"
    : >"$log"
    deadline=$(($(date +%s) + SECONDS_EACH))
    while :; do
        left=$((deadline - $(date +%s)))
        [ "$left" -gt 0 ] || break
        # shellcheck disable=SC2086 # LOADER is a command and its arguments
        $LOADER "$bin" -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix="$art/" "$work" "$corpus" >>"$log" 2>&1
        [ $? -eq 0 ] && break
        [ "$(find "$art" -type f | wc -l)" -lt "$MAX_FINDINGS" ] || break
    done
}

bins=()
for f in "$BINDIR"/fuzz_*; do
    [ -x "$f" ] || continue
    n=$(basename "$f")
    if [ -n "${FUZZ_TARGETS:-}" ] && [[ " $FUZZ_TARGETS " != *" $n "* ]]; then continue; fi
    bins+=("$f")
done
echo "fuzz.sh: ${#bins[@]} targets, ${SECONDS_EACH}s each, $JOBS at a time, output in $OUTDIR"
running=0
for f in "${bins[@]}"; do
    fuzz_one "$f" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

# Summary: executions summed over restarts; coverage from the last status.
total=0
printf '%-22s %12s %7s %8s %9s\n' target executions cov features findings
for f in "${bins[@]}"; do
    n=$(basename "$f")
    log=$OUTDIR/$n.log
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{s += $1} END {print s + 0}')
    last=$(grep -E '^#[0-9]+.*cov: [0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
    found=$(find "$OUTDIR/findings/$n" -type f | wc -l)
    total=$((total + found))
    printf '%-22s %12s %7s %8s %9s\n' "$n" "$execs" "${cov:-?}" "${ft:-?}" "$found"
    find "$OUTDIR/findings/$n" -type f | sed 's/^/  finding: /'
done
echo "$total findings in ${#bins[@]} targets"
[ "$total" -eq 0 ]
