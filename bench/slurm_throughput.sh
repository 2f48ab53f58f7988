#!/usr/bin/env bash
# Throughput of no-op stages, in one run on one real Slurm (tuned per Slurm's
# high-throughput guide: bench/slurm/slurm.conf.in; two slurmd of 4 CPUs):
#   sbatch   plain `sbatch --wrap true` x N, submitted back to back, until
#            squeue is empty (the floor: Slurm's own cost);
#   slurm    kiln's Slurm executor: N no-op kiln jobs (one POST), until all
#            succeeded; every stage is an sbatch + `kiln worker --step`;
#   agent    kiln's agent executor: the same N jobs on two agents of 4 cores
#            each (the same 8 slots), no Slurm involved.
# Prints jobs/s of each and the ratios. N=${SLURM_BENCH_N:-100}.
#   KILN_BIN=build/kiln KILN_SRC=$PWD bash bench/slurm_throughput.sh
set -u
export KILN_SRC=${KILN_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
: "${KILN_BIN:?}"
N=${SLURM_BENCH_N:-100}
. "$KILN_SRC/tests/integration/lib_stop.sh"
. "$KILN_SRC/tests/integration/lib_slurm.sh"
T=$(mktemp -d /tmp/kiln-slurm-bench-XXXXXX)
SERVE_PID=""; W1=""; W2=""
cleanup() { stop_pid "$W1"; stop_pid "$W2"; stop_pid "$SERVE_PID"; stop_slurm; rm -rf "$T"; }
trap cleanup EXIT
now() { date +%s.%N; }
SLURM_CONF_TEMPLATE=$KILN_SRC/bench/slurm/slurm.conf.in start_slurm "$T/slurm" || exit $?

# sbatch
t0=$(now)
for i in $(seq 1 "$N"); do
    sbatch --quiet -p kiln -c 1 --mem=50M -o /dev/null --export=ALL -J "plain-$i" --wrap true || exit 1
done
for _ in $(seq 1 6000); do [ -z "$(squeue -h -t PD,R,CG)" ] && break; sleep 0.05; done
t1=$(now)
sb=$("$PY" -c "print($t1 - $t0)")

submit_noops() { # URL TOKEN NAME
    "$PY" - "$1" "$2" "$3" "$N" <<'PY'
import json, sys, urllib.request
u, tok, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
yaml = f"""
recipe: {name}
axes: {{i: [{", ".join(str(i) for i in range(n))}]}}
templates: {{name: "{name}-{{i}}", command: "true"}}
resources: {{cores: 1, ram_mb: 50}}
"""
req = urllib.request.Request(u + "/jobs", data=json.dumps({"recipe_yaml": yaml}).encode(),
    method="POST", headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY
}
wait_done() { # DB COUNT
    for _ in $(seq 1 12000); do
        [ "$(sqlite3 "$1" "SELECT count(*) FROM jobs WHERE state='succeeded'")" -ge "$2" ] && return 0
        [ "$(sqlite3 "$1" "SELECT count(*) FROM jobs WHERE state='failed'")" -gt 0 ] && { echo "a job failed"; return 1; }
        sleep 0.05
    done
    return 1
}

# kiln, Slurm executor
start_serve_slurm "$T/k1" >/dev/null || exit 1
t0=$(now)
submit_noops "$U" "$ADMIN" noop-slurm
wait_done "$T/k1/data/kiln.db" "$N" || exit 1
t1=$(now)
ks=$("$PY" -c "print($t1 - $t0)")
stop_pid "$SERVE_PID"; SERVE_PID=""

# kiln, agent executor (no slurm section)
mkdir -p "$T/k2"
ADMIN=$("$KILN_BIN" token create --data "$T/k2/data" --role admin | grep -oE 'kiln_[0-9a-f]{48}')
WT=$("$KILN_BIN" token create --data "$T/k2/data" --role worker | grep -oE 'kiln_[0-9a-f]{48}')
P2=$(slurm_free_port)
"$KILN_BIN" serve --listen 127.0.0.1:$P2 --data "$T/k2/data" >"$T/k2/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$P2/healthz" >/dev/null && break; sleep 0.05; done
"$KILN_BIN" worker --server "http://127.0.0.1:$P2" --token "$WT" --name a1 --cores 4 --ram 3000M --work-dir "$T/k2/w1" >"$T/k2/w1.log" 2>&1 &
W1=$!
"$KILN_BIN" worker --server "http://127.0.0.1:$P2" --token "$WT" --name a2 --cores 4 --ram 3000M --work-dir "$T/k2/w2" >"$T/k2/w2.log" 2>&1 &
W2=$!
sleep 1
t0=$(now)
submit_noops "http://127.0.0.1:$P2/api/v1" "$ADMIN" noop-agent
wait_done "$T/k2/data/kiln.db" "$N" || exit 1
t1=$(now)
ka=$("$PY" -c "print($t1 - $t0)")

"$PY" - "$N" "$sb" "$ks" "$ka" <<'PY'
import sys
n = int(sys.argv[1]); sb, ks, ka = map(float, sys.argv[2:5])
print(f"no-op stages: {n}, 8 slots (2 nodes x 4 CPUs), same host, same run")
for name, t in (("plain sbatch --wrap true", sb), ("kiln Slurm executor", ks), ("kiln agent executor", ka)):
    print(f"  {name:26s} {t:7.2f} s  {n / t:7.1f} jobs/s")
print(f"  kiln Slurm executor / plain sbatch: {ks / sb:.2f}x the time")
print(f"  kiln Slurm executor / agent executor: {ks / ka:.2f}x the time")
PY
