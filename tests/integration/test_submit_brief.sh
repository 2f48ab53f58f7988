#!/usr/bin/env bash
# POST /jobs?brief=1 (issue 18, the control plane): the answer names each
# submitted job by id, name and state only, in the order submitted, with the
# same ids and states a full answer or GET /jobs/{id} gives; ?brief=2 is a
# 400 and submits nothing; without brief the answer stays whole jobs.
set -u
. "$KILN_SRC/tests/integration/lib_serve.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }
fixture brief
start_serve "$D" --allow-anonymous-read || fail "serve did not start"
batch='{"jobs":[{"name":"a","command":"true"},{"name":"b","command":"true","depends":[]},{"name":"c","command":"true"}]}'
r=$(req "$SUB" POST "/jobs?brief=1" "$batch")
expect 201 "$r" "brief batch"
echo "${r#* }" | python3 -c '
import json, sys
d = json.load(sys.stdin)
js = d["jobs"]
assert [j["name"] for j in js] == ["a", "b", "c"], js
assert all(sorted(j) == ["id", "name", "state"] for j in js), js
assert all(j["state"] == "queued" for j in js), js
assert [j["id"] for j in js] == sorted(j["id"] for j in js), js
' || fail "brief answer: ${r#* }"
id=$(echo "${r#* }" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][1]["id"])')
r=$(req "" GET "/jobs/$id")
expect 200 "$r" "the job a brief answer named"
[ "$(echo "${r#* }" | jfield name)" = b ] || fail "job $id is not b: ${r#* }"
r=$(req "$SUB" POST "/jobs?brief=2" "$batch")
expect 400 "$r" "brief=2"
echo "$r" | grep -q "brief" || fail "the 400 does not name brief: $r"
n=$(req "" GET "/jobs" | cut -d' ' -f2- | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
[ "$n" = 3 ] || fail "a refused brief=2 submitted jobs: $n"
r=$(req "$SUB" POST /jobs '{"name":"d","command":"true"}')
expect 201 "$r" "full answer"
echo "${r#* }" | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; assert j["command"] == "true" and "resources" in j, j' ||
    fail "the answer without brief is not whole jobs: ${r#* }"
echo PASS
