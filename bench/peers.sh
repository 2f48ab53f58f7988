#!/usr/bin/env bash
# bench/peers.sh - kiln and its peers on the same no-op jobs in one run:
# kiln (bench/e2e_noop.sh: serve + worker, its raw posix_spawn baseline),
# Buildbot (bench/peers/buildbot.sh), Laminar where Debian packages it, and
# Slurm through the hook below. Prints each figure and kiln/peer.
#
#   bash bench/peers.sh [N=200] [CORES=2]
# SLURM_PEER=CMD: a command printing "peer slurm ... jobs/s X" for N jobs on
# CORES cores (default: bench/peers/slurm.sh, the tuned cluster of
# tests/integration/lib_slurm.sh with CORES job slots in all).
# PEERS_PROFILE=1 adds a whole-machine perf profile of the Slurm run.
set -u
N=${1:-200}
CORES=${2:-2}
SRC=$(cd "$(dirname "$0")/.." && pwd)
rate() { sed -n 's/.*jobs\/s \([0-9.]*\).*/\1/p' | tail -1; }
k=$(bash "$SRC/bench/e2e_noop.sh" "$N" "$CORES" 1 2>/dev/null | tail -1)
echo "$k"
kr=$(echo "$k" | sed -n 's/.*kiln=\([0-9.]*\) jobs\/s.*/\1/p')
for peer in buildbot laminar slurm; do
    case $peer in
    buildbot) out=$(bash "$SRC/bench/peers/buildbot.sh" "$N" "$CORES" 2>&1) ;;
    laminar)
        if command -v laminard >/dev/null; then out="peer laminar: installed but no bench script yet"
        else out="peer laminar: not packaged in this Debian release"; fi ;;
    slurm) out=$(${SLURM_PEER:-bash "$SRC/bench/peers/slurm.sh"} "$N" "$CORES" 2>&1) ;;
    esac
    echo "$out" | grep -E '^(peer|profile) ' || echo "$out" | tail -3
    pr=$(echo "$out" | rate)
    [ -n "$pr" ] && [ -n "$kr" ] &&
        echo "ratio kiln/$peer = $(awk -v a="$kr" -v b="$pr" 'BEGIN{printf "%.1f", a / b}')x"
done
exit 0
