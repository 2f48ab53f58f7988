#!/usr/bin/env bash
# Issue 15: a real farm with no shared Nix store. A server, a build host and
# a GPU-test host (lib_farm.sh: each its own network namespace, mount
# namespace and private /nix). A recipe with a cross-recipe dependency
# (vllmlike on torchlike, tests/fixtures/farm) builds on the build host; the
# worker stages the output closure on the server; the GPU host substitutes
# it with real nix (signatures required) and tests it (cubin inspection plus
# running the built program, which loads torchlike's library); the server
# publishes it by promotion (its own /nix stays empty). A fourth, empty
# store substitutes the published path and its references; `kiln catalog
# verify` is clean. The GPU is simulated (no GPU on this machine): see
# lib_farm.sh.
set -u
: "${KILN_BIN:?}" "${KILN_SRC:?}"
. "$KILN_SRC/tests/integration/lib_farm.sh"
# Retention as tight as it gets (1 byte, every second): whatever a queued or
# running test stage needs must survive it; nothing else does.
farm_up "staging: {max_size: 1, prune_interval_s: 1}"
echo "ok 1 server, build host and GPU host up in their own namespaces"

out=$(farm_api POST /jobs '{"recipe":"vllmlike","branch":"main"}')
TJ=$(jget "$out" '[j["id"] for j in d["jobs"] if j["name"]=="torchlike-sm90"][0]') || fail "submit: $out"
VJ=$(jget "$out" '[j["id"] for j in d["jobs"] if j["name"]=="vllmlike-sm90"][0]') || fail "submit: $out"
farm_wait_state "$VJ" succeeded 600
farm_wait_state "$TJ" succeeded 60
echo "ok 2 torchlike and vllmlike built, tested and published"

job=$(farm_job "$VJ")
VP=$(jget "$job" 'd["outputs"][0]')
TP=$(jget "$(farm_job "$TJ")" 'd["outputs"][0]')
log() { farm_api GET "/jobs/$1/log"; }
vlog=$(log "$VJ")
echo "$vlog" | grep -q "attempt 1 (build) on worker build1" || fail "vllmlike did not build on build1: $vlog"
echo "$vlog" | grep -q "attempt 2 (test) on worker gpu1" || fail "vllmlike was not tested on gpu1: $vlog"
# Staging: one plan for the closure (vllmlike + torchlike); torchlike was
# staged by its own build, so only vllmlike's NAR went up.
echo "$vlog" | grep -q "\[kiln stage\] closure of 2 paths; the server lacks 1" || fail "staging plan: $vlog"
echo "$vlog" | grep -q "\[kiln stage\] staged $VP" || fail "vllmlike not staged: $vlog"
# The test host fetched both by substitution from the server's cache.
echo "$vlog" | grep -q "copying path '$VP' from '$SERVE_URL/nix-cache'" || fail "test host did not substitute vllmlike: $vlog"
# torchlike came with its own test stage (the first to need it there).
log "$TJ" | grep -q "copying path '$TP' from '$SERVE_URL/nix-cache'" || fail "test host did not substitute torchlike: $(log "$TJ")"
st=$(jget "$job" 'json.dumps(d["selftest"])')
echo "$st" | grep -q '"runs"' || fail "selftest did not run the program: $st"
jget "$job" 'd["selftest"]["ok"]' | grep -q True || fail "selftest not ok: $st"
echo "$st" | grep -q vllmlike_kernel || fail "inspection did not find the kernel symbol: $st"
echo "ok 3 staged from the build host, substituted and tested on the GPU host"

# Same bytes on both hosts, and none on the server's own /nix.
hb=$(host_run bld "$T/bld" nix-store -q --hash "$VP")
hg=$(host_run gpu "$T/gpu" nix-store -q --hash "$VP")
[ -n "$hb" ] && [ "$hb" = "$hg" ] || fail "NarHash differs: build $hb, test $hg"
host_run gpu "$T/gpu" nix-store --verify-path "$VP" "$TP" || fail "verify-path on the GPU host"
[ -z "$(ls -A "$T/srv/nix" 2>/dev/null)" ] || fail "the server's /nix is not empty: $(ls "$T/srv/nix")"
host_run gpu "$T/gpu" ls "$T/bld" | grep -q . && fail "the GPU host sees the build host's files"
# Published by promotion: the catalog entry's NAR is the staged blob.
cat=$(farm_api GET "/catalog?name=vllmlike-sm90")
jget "$cat" 'd["entries"][0]["meta"]["nix"]["store_path"]' | grep -qx "$VP" || fail "catalog: $cat"
grep -q "staging .* staged and signed" "$T/logs/serve.log" || fail "server did not log the staging"
echo "ok 4 same NarHash on build and test hosts; published from staging (server /nix empty)"

# A fourth, empty store: the published path and its references.
farm_substitute cli "$VP" >"$T/logs/cli.log" 2>&1 || fail "substitution into an empty store: $(cat "$T/logs/cli.log")"
grep -q "copying path '$TP'" "$T/logs/cli.log" || fail "reference not substituted: $(cat "$T/logs/cli.log")"
host_run cli "$T/cli" "$VP/bin/vllmlike" | grep -q "vllmlike ok" || fail "the substituted program does not run"
echo "ok 5 an empty fourth store substitutes the published path and its reference"

# A build nothing tests or publishes: once it is done, retention takes its
# staged path (narinfo gone); the published ones stay served.
cmd="nix-build pkgs.nix -A torch --argstr tag scratch --option substituters '' --option sandbox false -o result-scratch"
out=$(farm_api POST /jobs "$(python3 -c 'import json,sys; print(json.dumps({"name":"scratch","command":sys.argv[1],"cores":2,"ram_mb":1024,"platform":"x86_64-linux"}))' "$cmd")")
SJ=$(jget "$out" 'd["jobs"][0]["id"]') || fail "submit: $out"
farm_wait_state "$SJ" succeeded 300
SP=$(jget "$(farm_job "$SJ")" 'd["outputs"][0]')
farm_api GET "/jobs/$SJ/log" | grep -q "\[kiln stage\] staged $SP" || fail "scratch not staged"
narinfo_code() { ip netns exec "$NETNS_PREFIX-cli" curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$SERVE_URL/nix-cache/$(basename "$1" | cut -c1-32).narinfo"; }
gone() { [ "$(narinfo_code "$SP")" = 404 ]; }
wait_until 30 gone || fail "retention kept a path nothing needs"
grep -q "staging retention removed" "$T/logs/serve.log" || fail "retention did not log"
[ "$(narinfo_code "$VP")" = 200 ] && [ "$(narinfo_code "$TP")" = 200 ] || fail "published narinfo gone"
echo "ok 6 retention (1 byte, every second) removed an unneeded staged path, never a needed one"

vout=$(host_run srv "$T/srv" "$T/srv/bin/kiln" catalog verify --data "$T/srv/var" 2>&1) ||
    fail "catalog verify: $vout"
echo "ok 7 kiln catalog verify is clean"
echo "PASS test_three_hosts"
