#!/usr/bin/env bash
# Staging throughput (issue 15): a build host stages a vllmlike output with a
# sparse file of SIZE (tests/fixtures/farm, branch "big") on the server,
# across the simulated hosts of tests/integration/lib_farm.sh (veth, no
# shaping), against `nix-store --dump PATH | curl -T -` of the same path from
# the same build host to the same server, in the same run:
#   kiln     the worker's own figure: closure query, one plan request, the
#            NAR streamed from nix-store --dump, the server's hash and fsync
#            and signature ("staged ... in X s (Y MB/s)" in its log)
#   curl     nix-store --dump | curl -T - to the catalog's blob upload under
#            a digest that cannot match: the server receives and hashes
#            every byte, then refuses it (so it skips the fsync kiln pays)
#   dump     nix-store --dump | cat > /dev/null: what the source can give
# Also the peak RSS (VmHWM) of serve and the build worker before and after.
#   sudo bash bench/staging_upload.sh [SIZE (2G)]
# Needs root (namespaces), nix, nvcc; SIZE x 2 of free disk under FARM_DIR.
set -u
cd "$(dirname "$0")/.."
export KILN_BIN=${KILN_BIN:-$PWD/build/kiln} KILN_SRC=$PWD
SIZE=${1:-2G}
. tests/integration/lib_farm.sh
trap farm_down EXIT
trap "exit 1" TERM INT
farm_up
sed -i "s/bigfile: \"8G\"/bigfile: \"$SIZE\"/" "$T/srv/recipes/vllmlike.yaml"
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
s0=$(hwm "$SRV_PID") b0=$(hwm "$BLD_PID")
out=$(farm_api POST /jobs '{"recipe":"vllmlike","branch":"big"}')
VJ=$(jget "$out" '[j["id"] for j in d["jobs"] if j["name"]=="vllmlike-sm90"][0]') || fail "submit: $out"
wait_until 3600 grep -q "job $VJ: staged" "$T/logs/build1.log" || fail "not staged"
line=$(grep "job $VJ: staged" "$T/logs/build1.log")
kiln_mbs=$(echo "$line" | sed -n 's/.*(\([0-9.]*\) MB\/s).*/\1/p')
VP=$(host_run bld "$T/bld" readlink "$T/bld/src/result-vllmlike-sm90")
bytes=$(host_run bld "$T/bld" nix-store -q --size "$VP")
s1=$(hwm "$SRV_PID") b1=$(hwm "$BLD_PID")
now() { date +%s.%N; }
t0=$(now)
code=$(host_run bld "$T/bld" bash -c "nix-store --dump '$VP' | curl -sS -T - -o /dev/null -w '%{http_code}' \
    -H 'Authorization: Bearer $ADMIN' '$SERVE_URL/api/v1/catalog/blobs/sha256:$(printf '%064d' 0)'")
t1=$(now)
host_run bld "$T/bld" bash -c "nix-store --dump '$VP' | cat >/dev/null"
t2=$(now)
curl_mbs=$(python3 -c "print(f'{$bytes/1e6/($t1-$t0):.1f}')")
dump_mbs=$(python3 -c "print(f'{$bytes/1e6/($t2-$t1):.1f}')")
ratio=$(python3 -c "print(f'{$kiln_mbs/$curl_mbs:.2f}')")
echo "NAR $bytes bytes; baseline curl answered HTTP $code (refused after receiving all of it)"
echo "kiln staging: $kiln_mbs MB/s   nix-store --dump | curl -T: $curl_mbs MB/s   ratio $ratio   (nix-store --dump alone: $dump_mbs MB/s)"
echo "VmHWM kB: serve $s0 -> $s1, build worker $b0 -> $b1"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
