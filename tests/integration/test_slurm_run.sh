#!/usr/bin/env bash
# The Slurm executor's mixed run against a real Slurm (lib_slurm.sh: munged,
# slurmctld, slurmd on two nodes; the second has the only gpu:h100). One inline recipe
# expands to 3*N variants: base-I (build), app-I (build, depends on base-I),
# gpu-I (build, depends on base-I, then a GPU test stage for SM 90, then
# publish: the stages report no outputs, so the catalog publishes nothing). Every
# stage is one Slurm job. Afterwards:
#   - every kiln job succeeded;
#   - every build command ran exactly once (its start/end lines);
#   - Slurm's own completion log (jobcomp) has exactly one job per stage
#     (kiln-it-<job>-<attempt>, attempt 1 only: nothing ran twice);
#   - every GPU test stage ran on the GRES node;
#   - the test stages' selftest JSON came back to the jobs.
# SLURM_MIX_N (default 67: 201 variants, 268 Slurm jobs) scales it.
set -u
export KILN_SRC=${KILN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
: "${KILN_BIN:?}"
. "$(dirname "$0")/lib_stop.sh"
. "$(dirname "$0")/lib_slurm.sh"
N=${SLURM_MIX_N:-67}
T=$(mktemp -d /tmp/kiln-slurm-run-XXXXXX)
SERVE_PID=""
cleanup() { stop_pid "$SERVE_PID"; stop_slurm; [ -n "${KEEP:-}" ] || rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -30 "$T/serve.log"; exit 1; }
start_slurm "$T/slurm"
rc=$?; [ $rc -eq 0 ] || exit $rc
start_serve_slurm "$T" || fail "serve"
REC=$T/records
: >"$REC"
# No GPU here: a stand-in nvidia-smi reports an H100 only inside an
# allocation that Slurm granted the GRES (CUDA_VISIBLE_DEVICES set), so a
# test stage placed anywhere else fails its selftest host check.
mkdir -p "$T/fakebin"
cat >"$T/fakebin/nvidia-smi" <<'SMI'
#!/bin/sh
# answers --query-gpu=a,b,... in the order asked, for one H100
case "${CUDA_VISIBLE_DEVICES-}" in [0-9]*) ;; *) exit 0;; esac
q=; for a in "$@"; do case $a in --query-gpu=*) q=${a#--query-gpu=};; esac; done
out=; IFS=,
for f in $q; do
    case $f in index) v=0;; name) v="NVIDIA H100 80GB HBM3 (stand-in)";; compute_cap) v=9.0;;
        memory.total) v=81559;; driver_version) v=580.65.06;; *) v="[N/A]";; esac
    out="${out:+$out, }$v"
done
echo "$out"
SMI
chmod +x "$T/fakebin/nvidia-smi"
"$PY" - "$U" "$ADMIN" "$REC" "$N" "$T/fakebin" <<'PY' || fail "submit"
import json, sys, urllib.request, urllib.error
u, tok, rec, n, fakebin = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
yaml = f"""
recipe: slurmmix
axes:
  i: [{", ".join(str(i) for i in range(n))}]
  kind: [base, app, gpu]
templates:
  name: "{{kind}}-{{i}}"
  command: "echo start {{name}} $SLURM_JOB_ID $SLURMD_NODENAME >> {rec}; echo cores=$NIX_BUILD_CORES; echo end {{name}} >> {rec}"
resources: {{cores: 1, ram_mb: 200, timeout_s: 600}}
env: {{PATH: "{fakebin}:/usr/local/bin:/usr/bin:/bin"}}
depends:
  - name: "base-{{i}}"
    when: {{kind: [app, gpu]}}
selftest: {{sm: "90", checks: []}}
publish: {{name: "{{name}}"}}
rules:
  - when: {{kind: [base, app]}}
    selftest: false
    publish: false
"""
body = json.dumps({"recipe_yaml": yaml}).encode()
req = urllib.request.Request(u + "/jobs", data=body, method="POST",
    headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
try:
    r = json.load(urllib.request.urlopen(req))
except urllib.error.HTTPError as e:
    sys.exit(f"submit: HTTP {e.code}: {e.read().decode()}")
print("submitted", len(r["jobs"]), "jobs")
PY
total=$((3 * N))
t0=$(date +%s)
db=$T/data/kiln.db
for _ in $(seq 1 3000); do
    fin=$(sqlite3 "$db" "SELECT count(*) FROM jobs WHERE state IN ('succeeded','failed','cancelled')")
    [ "$fin" -ge "$total" ] && break
    sleep 0.2
done
t1=$(date +%s)
st=$(sqlite3 "$db" "SELECT state, count(*) FROM jobs GROUP BY state")
[ "$st" = "succeeded|$total" ] || { sqlite3 "$db" "SELECT id,name,state,reason FROM jobs WHERE state!='succeeded' LIMIT 5"; fail "states: $st"; }
echo "ok 1 $total jobs succeeded on Slurm in $((t1 - t0)) s"
starts=$(grep -c '^start ' "$REC"); ends=$(grep -c '^end ' "$REC")
dups=$(grep '^start ' "$REC" | awk '{print $2}' | sort | uniq -d | head -3)
[ "$starts" = "$total" ] && [ "$ends" = "$total" ] && [ -z "$dups" ] ||
    fail "build commands: $starts starts, $ends ends for $total jobs; twice: $dups"
echo "ok 2 every build command ran exactly once ($starts)"
# Slurm's completion log: one Slurm job per stage, none retried. A step
# exits just after its report, so let the last Slurm jobs finish first.
for _ in $(seq 1 300); do [ -z "$(squeue -h -t PD,R,CG,CF)" ] && break; sleep 0.1; done
"$PY" - "$T/slurm/jobcomp.txt" "$N" <<'PY' || fail "jobcomp check"
import re, sys, collections
path, n = sys.argv[1], int(sys.argv[2])
rows = [dict(re.findall(r'(\w+)=(\S*)', l)) for l in open(path)]
rows = [r for r in rows if r.get("Name", "").startswith("kiln-it-")]
stages = collections.Counter(r["Name"] for r in rows)
dup = [k for k, v in stages.items() if v > 1]
assert not dup, f"Slurm ran these twice: {dup[:5]}"
per_job = collections.Counter(int(k.split("-")[2]) for k in stages)
attempts = collections.Counter(k.split("-")[3] for k in stages)
want = 4 * n
assert len(rows) == want, f"{len(rows)} Slurm jobs, wanted {want} (3N builds + N tests)"
assert all(r["JobState"] == "COMPLETED" for r in rows), [r["Name"] for r in rows if r["JobState"] != "COMPLETED"][:5]
print(f"ok 3 Slurm ran {len(rows)} jobs, one per stage, all COMPLETED; attempts {dict(attempts)}")
PY
# GPU test stages: attempt 2 of each gpu-I job (build was attempt 1) ran on n2.
gpu_ids=$(sqlite3 "$db" "SELECT id FROM jobs WHERE name LIKE 'gpu-%'" | tr '\n' ' ')
"$PY" - "$T/slurm/jobcomp.txt" "$gpu_ids" "$SLURM_N2" <<'PY' || fail "GPU placement"
import re, sys
rows = [dict(re.findall(r'(\w+)=(\S*)', l)) for l in open(sys.argv[1])]
gpu = set(int(x) for x in sys.argv[2].split())
tests = [r for r in rows if r.get("Name", "").startswith("kiln-it-") and int(r["Name"].split("-")[2]) in gpu and r["Name"].endswith("-2")]
assert len(tests) == len(gpu), f"{len(tests)} test stages for {len(gpu)} gpu jobs"
bad = [r["Name"] + "@" + r["NodeList"] for r in tests if r["NodeList"] != sys.argv[3]]
assert not bad, f"GPU stages off the GRES node: {bad[:5]}"
print(f"ok 4 all {len(tests)} GPU test stages ran on {sys.argv[3]} (the gpu:h100 node)")
PY
nst=$(sqlite3 "$db" "SELECT count(*) FROM jobs WHERE name LIKE 'gpu-%' AND json_extract(selftest,'\$.ok') = 1")
[ "$nst" = "$N" ] || fail "selftest JSON on $nst of $N gpu jobs"
echo "ok 5 selftest JSON came back for all $N GPU jobs"
npub=$(sqlite3 "$db" "SELECT count(*) FROM jobs WHERE name LIKE 'gpu-%' AND stages LIKE '%publish%' AND state = 'succeeded'")
[ "$npub" = "$N" ] || fail "published: $npub of $N gpu jobs went through their publish stage"
echo "ok 6 all $N GPU jobs went build -> test (Slurm) -> publish (server) to succeeded"
echo PASS
