#!/usr/bin/env bash
# NIX_BUILD_CORES and MAX_JOBS inside a real nix-build (a derivation without
# nixpkgs, builder /bin/sh, no substituters, no sandbox) equal the job's
# cores, for jobs of 1 and 3 cores. Nix ignores NIX_BUILD_CORES in the
# caller's environment (it sets the builder's from its "cores" setting), so
# the worker passes the count in NIX_CONFIG; MAX_JOBS is forwarded by the
# derivation, as recipes do. The job reports its Nix output path through
# $KILN_REPORT_FILE and the server records it in the job's outputs.
set -u
. "$(dirname "$0")/worker_lib.sh"
trap 'cleanup_procs; rm -rf "$TMP"' EXIT
command -v nix-build >/dev/null || { echo "SKIP nix-build not installed"; exit 77; }

PORT=$(free_port)
start_serve "$TMP/srv" "$PORT"
"$KILN_BIN" worker --server "$SERVE_URL" --token "$WTOKEN" --work-dir "$TMP/w" --name nixer \
    --cores 3 --ram 4G --max-jobs 1 >"$TMP/worker.log" 2>&1 &
PIDS+=("$!")
cmd='p=$(nix-build --option substituters "" --option sandbox false '"$KILN_SRC"'/tests/fixtures/worker/cores.nix --argstr maxJobs "$MAX_JOBS" --argstr nonce "$KILN_JOB_ID-$(date +%s%N)" --no-out-link) && echo "built $p" && printf "{\"outputs\":[\"%s\"]}" "$p" > "$KILN_REPORT_FILE"'
for cores in 1 3; do
    body=$(python3 -c 'import json,sys; print(json.dumps({"name":"nix-"+sys.argv[2],"command":sys.argv[1],"cores":int(sys.argv[2]),"ram_mb":500,"platform":"x86_64-linux"}))' "$cmd" "$cores")
    j=$(ssubmit "$body")
    [ -n "$j" ] || fail "submit failed: $(api POST /jobs "$body")"
    wait_for 90 sstate_is "$j" succeeded || { api GET "/jobs/$j/log"; fail "nix job $j: $(sjob "$j")"; }
    line=$(api GET "/jobs/$j/log" | grep '^probe ')
    [ "$line" = "probe NIX_BUILD_CORES=$cores MAX_JOBS=$cores" ] ||
        { api GET "/jobs/$j/log"; fail "job with $cores cores saw: '$line'"; }
    out=$(jget "$(sjob "$j")" 'd["outputs"][0]')
    case $out in /nix/store/*-kiln-cores-probe) ;; *) fail "outputs not reported: $(sjob "$j")";; esac
    echo "ok job with $cores cores: $line; reported output $out"
done
echo PASS
