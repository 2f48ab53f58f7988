#!/usr/bin/env bash
# Issue 15: a build report whose outputs were never staged on the server is
# refused at report time: the job fails at its build stage with a reason
# that names the path ("... was not staged on the server ..."), instead of
# reaching `built` and failing later on the test host at substitution. A
# worker that says "staged": false (stage_outputs: false, hosts sharing one
# Nix store) is taken at its word. A fake worker (curl) acts with the
# credential its registration returned.
set -u
: "${KILN_BIN:?}" "${KILN_SRC:?}"
command -v curl >/dev/null || { echo "SKIP curl not installed"; exit 77; }
. "$KILN_SRC/tests/integration/lib_serve.sh"
. "$KILN_SRC/tests/integration/lib_stop.sh"
T=$(mktemp -d /tmp/kiln-unstaged-XXXXXX)
trap 'stop_pid "$SERVE_PID"; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; tail -20 "$T/d.serve.log"; exit 1; }

mkdir -p "$T/recipes"
cat >"$T/recipes/u.yaml" <<'Y'
recipe: u
axes:
  v: [a, b]
templates:
  name: "u-{v}"
  command: "true"
selftest:
  checks:
    - name: runs
      command: "true"
Y
WT=$("$KILN_BIN" token create --data "$T/d" --role worker | grep -oE 'kiln_[0-9a-f]{48}')
AT=$("$KILN_BIN" token create --data "$T/d" --role admin | grep -oE 'kiln_[0-9a-f]{48}')
start_serve "$T/d" --recipes "$T/recipes" || fail "serve did not start"

r=$(req "$WT" POST /workers/register '{"name":"fake","cores":4,"ram_mb":8192,"platform":"x86_64-linux"}')
CW=$(echo "${r#* }" | jfield credential) WID=$(echo "${r#* }" | jfield worker_id)
[ -n "$CW" ] && [ -n "$WID" ] || fail "register: $r"
r=$(req "$AT" POST /jobs '{"recipe":"u"}')
[ "${r%% *}" = 201 ] || fail "submit: $r"

# lease_build -> "JOB ATTEMPT" of the next build stage leased to the fake
lease_build() {
    local r
    r=$(req "$CW" POST "/workers/$WID/lease?wait=5" '{}')
    [ "${r%% *}" = 200 ] || fail "lease: $r"
    echo "$(echo "${r#* }" | jfield id) $(echo "${r#* }" | jfield attempt)"
}
state_of() { req "$AT" GET "/jobs/$1" | cut -d' ' -f2-; }
P1=/nix/store/00000000000000000000000000000001-u-a
P2=/nix/store/00000000000000000000000000000002-u-b

read -r J A <<<"$(lease_build)"
r=$(req "$CW" POST "/jobs/$J/report" "{\"attempt\":$A,\"stage\":\"build\",\"exit_code\":0,\"outputs\":[\"$P1\"]}")
[ "${r%% *}" = 200 ] || fail "report: $r"
echo "$r" | grep -q '"state": *"failed"' || fail "an unstaged output was accepted: $r"
s=$(state_of "$J")
echo "$s" | grep -q "\"failed_stage\": *\"build\"" || fail "failed_stage is not build: $s"
echo "$s" | grep -q "output $P1 was not staged on the server" || fail "the reason does not name the path: $s"
echo "ok 1 a build report with an unstaged output fails the job: $(echo "$s" | jfield reason | cut -c1-90)..."

read -r J2 A2 <<<"$(lease_build)"
r=$(req "$CW" POST "/jobs/$J2/report" "{\"attempt\":$A2,\"stage\":\"build\",\"exit_code\":0,\"outputs\":[\"$P2\"],\"staged\":false}")
echo "$r" | grep -q '"state": *"built"' || fail "a shared-store report (staged: false) was refused: $r"
echo "ok 2 a worker that stages nothing by config (staged: false) is taken at its word: built"
echo "PASS test_report_unstaged"
