#!/usr/bin/env bash
# bench/peers/slurm.sh N CORES - the Slurm peer: N `sbatch --wrap true`
# jobs (1 core, 64 MiB) on a real Slurm started on loopback by
# tests/integration/lib_slurm.sh with the configuration tuned per Slurm's
# high-throughput guide, bench/slurm/slurm.conf.in (both from branch
# slurm17; two slurmd of 4 CPUs each, as that branch set them up; CORES is
# not applied to Slurm's nodes). As with kiln, the jobs are queued first
# (held: sbatch -H), then released at once; the figure is N / (release ->
# squeue empty). Prints "peer slurm N=.. jobs/s X"; 77 when Slurm or the
# slurm17 files are not here.
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
SLURM_CONF_TEMPLATE=$CONF start_slurm "$T/slurm" || exit $?
slurm_wait_idle 2 || { echo "peer slurm: nodes did not come up"; exit 1; }
for i in $(seq 1 "$N"); do
    sbatch --quiet -H -p kiln -c 1 --mem=64M -o /dev/null --export=ALL -J "peer-$i" --wrap true || exit 1
done
t0=$(date +%s.%N)
scontrol release "$(squeue -h -o %i | paste -sd,)" || exit 1
for _ in $(seq 1 36000); do [ -z "$(squeue -h -t PD,R,CG)" ] && break; sleep 0.05; done
t1=$(date +%s.%N)
[ -z "$(squeue -h -t PD,R,CG)" ] || { echo "peer slurm: jobs still queued after 30 min"; exit 1; }
awk -v n="$N" -v a="$t0" -v b="$t1" -v c="$CORES" \
    'BEGIN{printf "peer slurm N=%d cores=%s (nodes: 2x4 CPUs) jobs/s %.2f (%.1f s)\n", n, c, n / (b - a), b - a}'
