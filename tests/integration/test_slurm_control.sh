#!/usr/bin/env bash
# Control of Slurm stages against a real Slurm:
#   1. A cancel (POST /jobs/{id}/cancel, what the page and kiln cancel call)
#      reaches slurmctld as a kill of the running Slurm job within 1 s.
#   2. Killing the slurmd of the node that runs a stage: Slurm marks the node
#      failed, kiln requeues the stage (an infrastructure failure, attempt 2)
#      and it finishes on the other node.
#      The killed node's row in the Workers view's data (GET /api/v1/slurm)
#      says down; the old attempt's command does not keep running on it
#      (its step learns that its attempt is not current and stops it).
#   0. (first) the Workers view's data lists both nodes as rows of their own,
#      the gpu:h100 GRES on the second only, in partition kiln, and the pool
#      worker's row stays in GET /api/v1/workers.
#   3. kiln serve killed with SIGKILL twice while Slurm runs stages of a
#      30-stage run, and restarted: it reconciles with Slurm by job name;
#      every stage's command ran exactly once and all succeed.
set -u
. "$(dirname "$0")/lib_slurm.sh"
WAIT_FINAL_S=90
slurm_test_setup slurm-ctl
running_on() { squeue -h -t R -n "kiln-it-$1-$2" -o '%i %N'; }

# SLURM_CTL_ONLY=N runs part N alone (while working on it).
part() { [ -z "${SLURM_CTL_ONLY:-}" ] || [ "$SLURM_CTL_ONLY" = "$1" ]; }

# node NAME FIELD: one field of a node row of GET /api/v1/slurm
node_field() {
    curl -s -H "Authorization: Bearer $ADMIN" "$U/slurm" | "$PY" -c "
import json, sys
for p in json.load(sys.stdin)['pools']:
    for n in p['nodes']:
        if n['name'] == '$1': print(n['$2'])"
}

# 0. capacity in view
if part 0; then
for _ in $(seq 100); do [ -n "$(node_field "$SLURM_N2" state)" ] && break; sleep 0.1; done
rows=$(curl -s -H "Authorization: Bearer $ADMIN" "$U/slurm" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
p = d["pools"][0]
print(len(p["nodes"]), [x["name"] + ":" + str(x["nodes"]) for x in p["partitions"]])
for n in sorted(p["nodes"], key=lambda n: n["name"]):
    print(n["name"], n["state"], n["cpus"], n["ram_mb"], n["gres"] or "-", n["features"], n["partition"])')
echo "$rows" | head -1 | grep -q "^2 \['kiln:2'\]" || fail "two nodes in partition kiln: $rows"
echo "$rows" | grep -qE "^$SLURM_N1 (idle|mixed|alloc) 4 3000 - x86-64,x86-64-v2,x86-64-v3 kiln$" || fail "node 1 row: $rows"
echo "$rows" | grep -qE "^$SLURM_N2 (idle|mixed|alloc) 4 3000 gpu:h100:1 x86-64,x86-64-v2,x86-64-v3,sm_90 kiln$" || fail "node 2 row: $rows"
curl -s -H "Authorization: Bearer $ADMIN" "$U/workers" | grep -q '"slurm-it"' || fail "the pool worker's row is gone"
echo "ok 0 Workers view data: both nodes as rows (state, 4 CPUs, 3000 MiB, features, partition kiln), gpu:h100:1 on $SLURM_N2 only; the pool worker stays"
fi

# 1. cancel -> scancel within 1 s
if part 1; then
c=$("$KILN" submit --json --name to-cancel --ram 100M -- "sleep 120" | jid)
for _ in $(seq 300); do r=$(running_on "$c" 1); [ -n "$r" ] && break; sleep 0.1; done
[ -n "$r" ] || fail "stage never ran in Slurm"
sid=${r%% *}
# From the cancel request (the page's and the CLI's call) to slurmctld
# accepting the kill (its own log line, millisecond stamps, same clock).
t0=$(date +%s.%N)
curl -fs -X POST -H "Authorization: Bearer $ADMIN" "$U/jobs/$c/cancel" >/dev/null || fail "cancel"
for _ in $(seq 100); do grep -q "REQUEST_KILL_JOB JobId=$sid " "$T/slurm/slurmctld.log" && break; sleep 0.02; done
stamp=$(grep -m1 "REQUEST_KILL_JOB JobId=$sid " "$T/slurm/slurmctld.log" | sed 's/^\[\([^]]*\)\].*/\1/')
[ -n "$stamp" ] || fail "slurmctld never got a kill for $sid"
dt=$("$PY" -c "import datetime,sys; t=datetime.datetime.fromisoformat('$stamp').timestamp(); print(f'{t - $t0:.2f}')")
"$PY" -c "import sys; sys.exit(0 if $dt < 1.0 else 1)" || fail "scancel reached Slurm $dt s after the cancel"
for _ in $(seq 150); do [ -z "$(squeue -h -j "$sid" -t PENDING,RUNNING,CONFIGURING 2>/dev/null)" ] && break; sleep 0.02; done
[ -z "$(squeue -h -j "$sid" -t PENDING,RUNNING,CONFIGURING 2>/dev/null)" ] || fail "Slurm job $sid still runs"
[ "$(jget "$c" 'd["state"]')" = cancelled ] || fail "kiln state after cancel"
"$KILN" cancel "$c" >/dev/null 2>&1 # the CLI on a cancelled job: nothing to do, no error to Slurm
echo "ok 1 cancel -> slurmctld killed Slurm job $sid $dt s after the request; it left squeue"
fi

# 2. slurmd dies mid-stage -> requeue, finishes on the other node
if part 2; then
# Each attempt leaves its shell's pid at its start and a marker at its end.
k=$("$KILN" submit --json --name survive-node --ram 100M -- 'echo "run on $SLURMD_NODENAME"; echo $$ > '"$T"'/pid-$SLURMD_NODENAME; sleep 40; echo done; touch '"$T"'/end-$SLURMD_NODENAME' | jid)
for _ in $(seq 300); do r=$(running_on "$k" 1); [ -n "$r" ] && break; sleep 0.1; done
[ -n "$r" ] || fail "stage never ran"
node=${r#* }
other=$SLURM_N1; [ "$node" = "$SLURM_N1" ] && other=$SLURM_N2
sleep 1
slurm_kill_node "$node"
down=""
for _ in $(seq 600); do down=$(node_field "$node" state); [ "$down" = down ] && break; sleep 0.1; done
[ "$down" = down ] || fail "the killed node's row says '$down', not down"
wait_final "$k"
[ "$(jget "$k" 'd["state"]')" = succeeded ] || fail "after node loss: $(jget "$k" 'd["state"], d["reason"]')"
att=$(jget "$k" 'd["attempt"]')
[ "$att" -ge 2 ] || fail "not requeued (attempt $att)"
last=$(grep "^run on" "$T/data/logs/$k.log" | tail -1)
[ "$last" = "run on $other" ] || fail "attempt $att ran on '$last', wanted $other"
grep -q "NODE_FAIL" "$T/data/logs/$k.log" "$T/serve.log" || fail "no NODE_FAIL noted"
# The old attempt started ~10 s before the new one and sleeps as long: had
# it kept running, its end marker would be there by now.
[ -s "$T/pid-$node" ] || fail "the first attempt left no pid"
oldpid=$(cat "$T/pid-$node")
[ ! -e "$T/end-$node" ] || fail "the first attempt's command ran to its end on the failed node"
! kill -0 "$oldpid" 2>/dev/null || fail "the first attempt's shell ($oldpid) still runs on the failed node"
[ -e "$T/end-$other" ] || fail "the second attempt left no end marker"
echo "ok 2 slurmd of $node killed mid-stage: its row says down; Slurm NODE_FAIL, kiln requeued it (attempt $att) and it finished on $other; the first attempt's command (pid $oldpid) was stopped, never reached its end"
slurm_start_node "$node"
slurm_wait_idle 2 || true
fi

# 3. SIGKILL of kiln serve during a run, twice; restart; reconcile
if part 3; then
REC=$T/records
: >"$REC"
# one POST: 30 stages, each 1-3 s, so that the kills land mid-run
"$PY" - "$U" "$ADMIN" "$REC" >"$T/ids" <<'PY' || fail "submit"
import json, sys, urllib.request
u, tok, rec = sys.argv[1:4]
yaml = f"""
recipe: restarts
axes: {{i: [{", ".join(str(i) for i in range(1, 31))}]}}
templates:
  name: "r-{{i}}"
  command: "echo start {{name}} >> {rec}; sleep $(( {{i}} % 3 + 1 )); echo end {{name}} >> {rec}"
resources: {{cores: 1, ram_mb: 100}}
"""
req = urllib.request.Request(u + "/jobs", data=json.dumps({"recipe_yaml": yaml}).encode(),
    method="POST", headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
for j in json.load(urllib.request.urlopen(req))["jobs"]:
    print(j["id"])
PY
mapfile -t ids <"$T/ids"
[ ${#ids[@]} = 30 ] || fail "submitted ${#ids[@]}"
killed_mid=0
for round in 1 2; do
    # wait until Slurm runs some of our stages, then kill the server under them
    for _ in $(seq 200); do [ "$(squeue -h -t R | grep -c kiln-it-)" -ge 2 ] && break; sleep 0.1; done
    [ "$(squeue -h -t R,PD | grep -c kiln-it-)" -ge 1 ] && killed_mid=$((killed_mid + 1))
    kill -KILL "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null
    sleep 1
    "$KILN_BIN" serve --listen 127.0.0.1:$PORT --data "$T/data" --config "$T/serve.yaml" >>"$T/serve.log" 2>&1 &
    SERVE_PID=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.05; done
done
[ "$killed_mid" = 2 ] || fail "only $killed_mid of 2 kills landed while Slurm ran stages"
for id in "${ids[@]}"; do wait_final "$id"; done
bad=$(for id in "${ids[@]}"; do s=$(jget "$id" 'd["state"]'); [ "$s" = succeeded ] || echo "$id:$s"; done)
[ -z "$bad" ] || fail "not succeeded after restarts: $bad"
starts=$(grep -c '^start ' "$REC"); ends=$(grep -c '^end ' "$REC")
dups=$(grep '^start ' "$REC" | sort | uniq -d)
[ "$starts" = 30 ] && [ "$ends" = 30 ] && [ -z "$dups" ] || fail "$starts starts, $ends ends; twice: $dups"
left=$(squeue -h -t PENDING,RUNNING | grep -c kiln-it- || true)
[ "$left" = 0 ] || fail "$left Slurm jobs left behind"
adopted=$(grep -o "found [1-9][0-9]* running Slurm job" "$T/serve.log" | tr '\n' ';')
echo "ok 3 kiln serve SIGKILLed twice while Slurm ran its stages, restarted ($adopted): 30 stages succeeded, each command ran exactly once, no Slurm job left"
fi
echo PASS
