#!/usr/bin/env bash
# bench/peers/slurm.sh N CORES - the Slurm peer: N `sbatch --wrap true`
# jobs (1 core, 64 MiB) on a real Slurm started on loopback by
# tests/integration/lib_slurm.sh with the configuration tuned per Slurm's
# high-throughput guide, bench/slurm/slurm.conf.in. Its two slurmd get
# CORES CPUs between them (CORES/2 each, at least 1), so Slurm has the same
# job slots as kiln; SLURM_NODE_CPUS=N overrides the CPUs per node (the
# template's own 4 each gave Slurm 8 slots to kiln's 2 in earlier runs). As
# with kiln, the jobs are queued first (held: sbatch -H), then released at
# once; the figure is N / (release -> squeue empty). Prints "peer slurm N=..
# jobs/s X"; 77 when Slurm or its files are not here.
# PEERS_PROFILE=1: perf records the whole machine (-a) from release to
# empty queue and prints the share of samples per command (slurmctld,
# slurmd, slurmstepd, ...) as "profile slurm:" lines.
set -u
N=${1:-200}
CORES=${2:-2}
export KILN_SRC=${KILN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
LIB=$KILN_SRC/tests/integration/lib_slurm.sh
CONF=${SLURM_CONF_TEMPLATE:-$KILN_SRC/bench/slurm/slurm.conf.in}
[ -f "$LIB" ] && [ -f "$CONF" ] ||
    { echo "peer slurm: skipped, $LIB or $CONF is not on this branch (slurm17)"; exit 77; }
. "$KILN_SRC/tests/integration/lib_stop.sh"
. "$LIB"
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-slurm-peer-XXXXXX")
cleanup() { stop_slurm; rm -rf "$T"; }
trap cleanup EXIT
NODE_CPUS=${SLURM_NODE_CPUS:-$((CORES / 2 > 0 ? CORES / 2 : 1))}
sed -e "s/CPUs=4 Boards=1 SocketsPerBoard=1 CoresPerSocket=4/CPUs=$NODE_CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NODE_CPUS/" \
    "$CONF" >"$T/slurm.conf.in"
grep -q "CPUs=$NODE_CPUS " "$T/slurm.conf.in" || { echo "peer slurm: cannot set CPUs=$NODE_CPUS in $CONF"; exit 1; }
SLURM_CONF_TEMPLATE=$T/slurm.conf.in start_slurm "$T/slurm" || exit $?
slurm_wait_idle 2 || { echo "peer slurm: nodes did not come up"; exit 1; }
for i in $(seq 1 "$N"); do
    sbatch --quiet -H -p kiln -c 1 --mem=64M -o /dev/null --export=ALL -J "peer-$i" --wrap true || exit 1
done
prof=
if [ -n "${PEERS_PROFILE:-}" ] && command -v perf >/dev/null; then
    perf record -a -F 499 -q -o "$T/perf.data" -- sleep 3600 >/dev/null 2>&1 &
    prof=$!
    sleep 1
fi
t0=$(date +%s.%N)
scontrol release "$(squeue -h -o %i | paste -sd,)" || exit 1
for _ in $(seq 1 36000); do [ -z "$(squeue -h -t PD,R,CG)" ] && break; sleep 0.05; done
t1=$(date +%s.%N)
if [ -n "$prof" ]; then
    kill -INT "$prof" && wait "$prof"
    perf report -i "$T/perf.data" --sort comm --stdio -q 2>/dev/null | awk 'NF' | head -12 |
        sed 's/^ */profile slurm: /'
fi
[ -z "$(squeue -h -t PD,R,CG)" ] || { echo "peer slurm: jobs still queued after 30 min"; exit 1; }
awk -v n="$N" -v a="$t0" -v b="$t1" -v c="$CORES" -v nc="$NODE_CPUS" \
    'BEGIN{printf "peer slurm N=%d cores=%s (nodes: 2x%d CPUs) jobs/s %.2f (%.1f s)\n", n, c, nc, n / (b - a), b - a}'
