#!/usr/bin/env bash
# Issue 15, a large output: vllmlike with an 8 GiB sparse file in its output
# (branch "big" of tests/fixtures/farm/vllmlike.yaml) goes end to end on
# lib_farm.sh's simulated hosts: built on the build host, staged on the
# server with one cut link on the way (the build host's veth down, then up),
# substituted by the GPU host with real nix, tested, published by promotion.
# The peak resident memory (VmHWM) of every long-lived kiln process (serve,
# both workers) grows by less than 64 MB over the run. Needs ~17 GiB of free
# disk under FARM_DIR (default /var/tmp): the NAR on the server and in the
# GPU host's store (the build host's copy stays sparse).
set -u
: "${KILN_BIN:?}" "${KILN_SRC:?}"
free_kb=$(df -Pk "${FARM_DIR:-/var/tmp}" | awk 'NR==2 {print $4}')
[ "$free_kb" -gt $((20 << 20)) ] || { echo "SKIP needs 20 GiB free under ${FARM_DIR:-/var/tmp}"; exit 77; }
. "$KILN_SRC/tests/integration/lib_farm.sh"
farm_up "" "stage_stall_s: 5"
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
declare -A HWM0
for p in "$SRV_PID" "$BLD_PID" "$GPU_PID"; do HWM0[$p]=$(hwm "$p"); done
echo "ok 1 farm up; VmHWM kB at start: serve ${HWM0[$SRV_PID]}, build1 ${HWM0[$BLD_PID]}, gpu1 ${HWM0[$GPU_PID]}"

out=$(farm_api POST /jobs '{"recipe":"vllmlike","branch":"big"}')
VJ=$(jget "$out" '[j["id"] for j in d["jobs"] if j["name"]=="vllmlike-sm90"][0]') || fail "submit: $out"
farm_cut_upload "$VJ" $((1 << 30)) 900 120
echo "ok 2 link cut at $FARM_CUT_AT bytes, healed after the worker noticed"
farm_resumed "$VJ" 2400
off=$RESUMED_AT vlog=$VLOG
size=$(host_run bld "$T/bld" nix-store -q --size "$VP")
[ "$size" -ge $((8 << 30)) ] || fail "NAR is only $size bytes"
hb=$(host_run bld "$T/bld" nix-store -q --hash "$VP")
hg=$(host_run gpu "$T/gpu" nix-store -q --hash "$VP")
[ "$hb" = "$hg" ] || fail "NarHash differs: build $hb, test $hg"
echo "$vlog" | grep -q "copying path '$VP' from '$SERVE_URL/nix-cache'" || fail "GPU host did not substitute it"
cat=$(farm_api GET "/catalog?name=vllmlike-sm90")
[ "$(jget "$cat" 'd["entries"][0]["size"]')" = "$size" ] || fail "catalog entry: $cat"
[ -z "$(ls -A "$T/srv/nix" 2>/dev/null)" ] || fail "the server's /nix is not empty"
echo "ok 3 $size-byte NAR staged (resumed at $off), substituted with matching NarHash, published"
grep -h "staged .* paths" "$T/logs/build1.log" | sed 's/^/   /'
bad=0
for p in "$SRV_PID" "$BLD_PID" "$GPU_PID"; do
    h=$(hwm "$p")
    grow=$((h - ${HWM0[$p]}))
    echo "   pid $p ($(tr '\0' ' ' <"/proc/$p/cmdline" | cut -d' ' -f2)): VmHWM ${HWM0[$p]} -> $h kB (+$grow kB)"
    [ "$grow" -lt $((64 << 10)) ] || bad=1
done
# Under ASan (make check-integration-asan sets KILN_SANITIZED) resident
# memory is the sanitizer's (its quarantine keeps freed blocks, its shadow
# maps an eighth more), not kiln's: the figures are shown, the bound is held
# by the plain build in make check.
if [ -n "${KILN_SANITIZED:-}" ]; then
    echo "ok 4 # skip the 64 MB bound under sanitizers (figures above)"
else
    [ $bad -eq 0 ] || fail "a kiln process grew by 64 MB or more"
    echo "ok 4 VmHWM of serve, build1 and gpu1 grew by less than 64 MB"
fi
echo "PASS test_large_output"
