#!/usr/bin/env bash
# Report and lease in one round trip (POST /workers/{id}/reports?lease=N,
# issue 18): the answer carries the reports' results and, decided after
# them, the jobs leased into the room they freed ("lease": null when none
# fit). A bad offer refuses the whole request before any report is applied.
set -u
. "$KILN_SRC/tests/integration/lib_serve.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }
fixture replease
start_serve "$D" --allow-anonymous-read || fail "serve did not start"
submit() {
    r=$(req "$SUB" POST /jobs '{"name":"n","command":"true","cores":1,"ram_mb":100}')
    expect 201 "$r" "submit"
}
submit
register_worker '{"name":"r1","cores":1,"ram_mb":1024,"platform":"x86_64-linux"}'
r=$(req "$WK" POST "/workers/$W/lease?wait=0" '{"free_cores":1,"free_ram_mb":1024}')
expect 200 "$r" "first lease"
submit # job 2 waits: the worker's one core is taken by job 1
r=$(req "$WK" POST "/workers/$W/lease?wait=0" '{"free_cores":1,"free_ram_mb":1024}')
expect 204 "$r" "no room while job 1 runs"
# Bad offers and a bad ?lease= are refused, and job 1's report is not applied.
r=$(req "$WK" POST "/workers/$W/reports?lease=1" '{"free_cores":-1,"reports":[{"job":1,"attempt":1,"stage":"build"}]}')
expect 400 "$r" "negative free_cores"
echo "$r" | grep -q "free_cores" || fail "the error does not name free_cores: $r"
r=$(req "$WK" POST "/workers/$W/reports?lease=65" '{"reports":[{"job":1,"attempt":1,"stage":"build"}]}')
expect 400 "$r" "lease=65"
st=$(req "" GET /jobs/1 | cut -d' ' -f2- | jfield state)
[ "$st" = building ] || fail "a refused request applied its report: job 1 is $st"
# Job 1's report frees the core; job 2 comes back in the same answer.
r=$(req "$WK" POST "/workers/$W/reports?lease=1" '{"free_cores":1,"free_ram_mb":1024,"reports":[{"job":1,"attempt":1,"stage":"build","exit_code":0}]}')
expect 200 "$r" "report 1 + lease"
python3 - "${r#* }" <<'PY' || fail "wanted job 1 succeeded and job 2 leased: ${r#* }"
import json, sys
d = json.loads(sys.argv[1])
assert d["results"] == [{"job": 1, "state": "succeeded"}], d
assert d["lease"]["job"]["id"] == 2 and d["lease"]["job"]["attempt"] == 1, d
PY
st=$(req "" GET /jobs/2 | cut -d' ' -f2- | jfield state)
[ "$st" = building ] || fail "job 2 leased in the answer is $st, not building"
# Nothing left: the reports still land, and the lease is null.
r=$(req "$WK" POST "/workers/$W/reports?lease=1" '{"free_cores":1,"free_ram_mb":1024,"reports":[{"job":2,"attempt":1,"stage":"build","exit_code":0}]}')
expect 200 "$r" "report 2 + lease"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["results"][0]["state"]=="succeeded" and d["lease"] is None, d' "${r#* }" ||
    fail "wanted job 2 succeeded and lease null: ${r#* }"
# Without ?lease= the answer is as before: no "lease" key.
submit
r=$(req "$WK" POST "/workers/$W/lease?wait=0" '{"free_cores":1,"free_ram_mb":1024}')
expect 200 "$r" "lease job 3"
r=$(req "$WK" POST "/workers/$W/reports" '{"reports":[{"job":3,"attempt":1,"stage":"build","exit_code":0}]}')
expect 200 "$r" "report 3"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert "lease" not in d, d' "${r#* }" ||
    fail "a report without ?lease= answered a lease: ${r#* }"
echo PASS
