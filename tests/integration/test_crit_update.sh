#!/usr/bin/env bash
# Critical paths follow the queue (placement's slack and tie-break): a job
# already queued in the service's placer gets its path again when it changes.
# cp-a (100 s) has a dependent, cp-b (10,000 s): cp-a's path is 10,100 s.
# Once cp-b is cancelled, the next placement pass removes cp-a and adds it
# back with 100 s (the trace shows both). Before, the path stayed 10,100 s
# until the next submission, and a queued item never got a new one.
set -u
. "$KILN_SRC/tests/integration/lib_serve.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }
fixture crit
start_serve "$D" --allow-anonymous-read --trace "$T/trace.jsonl" || fail "serve did not start"
body=$(python3 -c '
import json
y = """recipe: cp
default_branch: main
axes:
  v: [a, b]
branches: {main: {}}
templates:
  name: "cp-{v}"
  command: "true"
resources: {cores: 1, ram_mb: 64, est_duration_s: 100}
rules:
  - when: {v: b}
    resources: {est_duration_s: 10000}
depends:
  - name: "cp-a"
    when: {v: b}
"""
print(json.dumps({"recipe_yaml": y, "branch": "main"}))')
r=$(req "$SUB" POST "/jobs?brief=1" "$body")
expect 201 "$r" "recipe submit"
ids=$(echo "${r#* }" | python3 -c 'import json,sys; print(" ".join(str(j["id"]) for j in sorted(json.load(sys.stdin)["jobs"], key=lambda j: j["name"])))')
A=${ids% *} B=${ids#* }
[ -n "$A" ] && [ "$A" != "$B" ] || fail "no ids: ${r#* }"
register_worker '{"name":"c1","cores":4,"ram_mb":4096,"platform":"x86_64-linux"}'
# A pass that places nothing (no free cores) still brings the placer up to date.
r=$(req "$WK" POST "/workers/$W/lease?wait=0" '{"free_cores":0}')
expect 204 "$r" "lease with no room"
adds() { python3 - "$T/trace.jsonl" "$1" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(" ".join("%s:%.0f" % (e["ev"], e["it"]["crit_s"]) if e["ev"] == "add" else e["ev"]
               for e in ev if e.get("ev") in ("add", "remove") and
               (e.get("it", {}).get("job") == int(sys.argv[2]) or e.get("job") == int(sys.argv[2]))))
PY
}
got=$(adds "$A")
[ "$got" = "add:10100" ] || { cat "$T/trace.jsonl"; fail "before the cancel, cp-a's trace: '$got' (wanted add:10100)"; }
r=$(req "$SUB" POST "/jobs/$B/cancel" '')
expect 200 "$r" "cancel cp-b"
r=$(req "$WK" POST "/workers/$W/lease?wait=0" '{"free_cores":0}')
expect 204 "$r" "lease after the cancel"
got=$(adds "$A")
[ "$got" = "add:10100 remove add:100" ] || fail "after the cancel, cp-a's trace: '$got' (wanted add:10100 remove add:100)"
# The service still decides what a replay of its trace decides.
"$KILN_BIN" sim --replay "$T/trace.jsonl" >"$T/replay.txt" 2>&1 || { cat "$T/replay.txt"; fail "replay"; }
echo PASS
