#!/usr/bin/env bash
# A batch lease (POST /workers/{id}/lease?max=N, issue 18): one answer
# carries up to N jobs, never more than the offer's free cores and RAM hold;
# "job" stays the first of "jobs" for agents that read only that; each job is
# leased (building) and reported like a single lease.
set -u
. "$KILN_SRC/tests/integration/lib_serve.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }
fixture batch
start_serve "$D" --allow-anonymous-read --trace "$T/trace.jsonl" || fail "serve did not start"
for i in 1 2 3 4 5; do
    r=$(req "$SUB" POST /jobs '{"name":"n","command":"true","cores":1,"ram_mb":100}')
    expect 201 "$r" "submit $i"
done
register_worker '{"name":"b1","cores":8,"ram_mb":8192,"platform":"x86_64-linux"}'
count() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(len(d.get("jobs",[])), d["job"]["id"] == d["jobs"][0]["id"])'; }
# 3 free cores: at most 3 of the 5 jobs, though max asks for 10.
r=$(req "$WK" POST "/workers/$W/lease?wait=0&max=10" '{"free_cores":3,"free_ram_mb":8192}')
expect 200 "$r" "batch lease"
[ "$(echo "${r#* }" | count)" = "3 True" ] || fail "wanted 3 jobs, first = job: ${r#* }"
# One placement pass decided all three (the trace: no "dispatch" between
# the first and the last "decide"), not one pass per job.
python3 - "$T/trace.jsonl" <<'PY' || fail "a batch lease took more than one placement pass"
import json, sys
ev = [json.loads(l).get("ev") for l in open(sys.argv[1]) if l.strip()]
d = [i for i, e in enumerate(ev) if e == "decide"]
assert len(d) == 3, ev
assert "dispatch" not in ev[d[0]:d[-1]], ev
PY
# RAM bounds it too: 250 MiB free holds two 100 MiB jobs.
r=$(req "$WK" POST "/workers/$W/lease?wait=0&max=10" '{"free_cores":5,"free_ram_mb":250}')
expect 200 "$r" "batch lease by RAM"
[ "$(echo "${r#* }" | count)" = "2 True" ] || fail "wanted 2 jobs: ${r#* }"
r=$(req "$WK" POST "/workers/$W/lease?wait=0&max=10" '{"free_cores":3,"free_ram_mb":8192}')
expect 204 "$r" "nothing left"
r=$(req "$WK" POST "/workers/$W/lease?wait=0&max=0" '{}')
expect 400 "$r" "max=0 is refused"
n=$(req "" GET "/jobs?state=building" | cut -d' ' -f2- | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
[ "$n" = 5 ] || fail "wanted 5 building jobs, got $n"
for id in 1 2 3 4 5; do
    r=$(req "$WK" POST "/jobs/$id/report" '{"attempt":1,"stage":"build","exit_code":0}')
    expect 200 "$r" "report $id"
done
echo PASS
