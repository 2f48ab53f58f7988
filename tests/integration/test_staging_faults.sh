#!/usr/bin/env bash
# Issue 15, bad uploads (lib_farm.sh's simulated hosts):
# (1) The build host's link is cut in the middle of a staging upload (its
#     veth set down, as a pulled cable: no error, just silence) and healed:
#     the worker notices the stall, asks the server where to resume and
#     sends the rest from that offset; the NAR is staged with a matching
#     hash, and the test host substitutes it (Nix checks the NarHash too).
# (2) A build whose output changes on disk after Nix registered it uploads
#     a NAR that differs from the NarHash it reports: the server refuses it
#     with a clear reason, the job fails, and nothing is staged or signed.
set -u
: "${KILN_BIN:?}" "${KILN_SRC:?}"
FARM_NEEDS=tc
. "$KILN_SRC/tests/integration/lib_farm.sh"
farm_up "" "stage_stall_s: 3"
# ~10 MB/s out of the build host, so a 160 MiB NAR takes long enough to cut.
ip netns exec "$NETNS_PREFIX-bld" tc qdisc add dev eth0 root tbf rate 80mbit burst 256kb latency 100ms ||
    { echo "SKIP tc cannot shape the veth here"; exit 77; }
echo "ok 1 farm up, build host shaped to 80 Mbit/s"

out=$(farm_api POST /jobs '{"recipe":"vllmlike","branch":"mid"}')
VJ=$(jget "$out" '[j["id"] for j in d["jobs"] if j["name"]=="vllmlike-sm90"][0]') || fail "submit: $out"
farm_cut_upload "$VJ" $((24 << 20)) 300 60
echo "ok 2 link cut at $FARM_CUT_AT bytes of the upload, healed after the worker noticed"
farm_resumed "$VJ" 600
off=$RESUMED_AT vlog=$VLOG
echo "$vlog" | grep -q "\[kiln stage\] staged $VP" || fail "not staged after the resume: $vlog"
hb=$(host_run bld "$T/bld" nix-store -q --hash "$VP")
hg=$(host_run gpu "$T/gpu" nix-store -q --hash "$VP")
[ "$hb" = "$hg" ] || fail "NarHash differs: build $hb, test $hg"
# The published entry holds the staged blob (promotion; the staging row
# itself may already be pruned, since the catalog now serves the path).
cat=$(farm_api GET "/catalog?name=vllmlike-sm90")
digest=$(jget "$cat" 'd["entries"][0]["digest"]') || fail "catalog: $cat"
size=$(jget "$cat" 'd["entries"][0]["size"]')
blob="$T/srv/var/catalog/blobs/sha256/${digest:7:2}/${digest:7}"
[ "$(sha256sum "$blob" | cut -d' ' -f1)" = "${digest:7}" ] || fail "staged blob does not hash to $digest"
[ "$(stat -c %s "$blob")" = "$size" ] || fail "staged blob size: $(stat -c %s "$blob") bytes, staging says $size"
echo "ok 3 resumed from offset $off (cut at $FARM_CUT_AT), staged with matching hash, tested and published"
ip netns exec "$NETNS_PREFIX-bld" tc qdisc del dev eth0 root

# (2) the output changes on disk after Nix registered it.
cmd="nix-build pkgs.nix -A torch --argstr tag tampered --option substituters '' --option sandbox false -o result-tampered && echo corrupt >> result-tampered/lib/libtorchlike.so"
out=$(farm_api POST /jobs "$(python3 -c 'import json,sys; print(json.dumps({"name":"tampered","command":sys.argv[1],"cores":2,"ram_mb":1024,"platform":"x86_64-linux"}))' "$cmd")")
BJ=$(jget "$out" 'd["jobs"][0]["id"]') || fail "submit: $out"
farm_wait_state "$BJ" failed 300
bjob=$(farm_job "$BJ")
reason=$(jget "$bjob" 'd["reason"]')
echo "$reason" | grep -q "does not match the NarHash" || fail "reason does not say why: $reason"
BP=$(host_run bld "$T/bld" readlink "$T/bld/src/result-tampered")
[ -n "$BP" ] || fail "no tampered output on the build host"
farm_api GET /staging | grep -q "$BP" && fail "the refused path is staged: $(farm_api GET /staging)"
hp=$(basename "$BP" | cut -c1-32)
code=$(ip netns exec "$NETNS_PREFIX-cli" curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$SERVE_URL/nix-cache/$hp.narinfo")
[ "$code" = 404 ] || fail "narinfo of the refused path: HTTP $code"
ls "$T"/srv/var/catalog/staging/ | grep -q "$hp" && fail "bytes of the refused NAR left in staging"
grep -q "does not match the NarHash" "$T/logs/serve.log" || fail "server did not log the refusal"
echo "ok 4 a NAR that differs from its NarHash is refused ($reason), the job failed, nothing staged or signed"
vout=$(host_run srv "$T/srv" "$T/srv/bin/kiln" catalog verify --data "$T/srv/var" 2>&1) || fail "catalog verify: $vout"
echo "ok 5 kiln catalog verify is clean"
echo "PASS test_staging_faults"
