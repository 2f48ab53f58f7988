#!/usr/bin/env bash
# NIX_BUILD_CORES and MAX_JOBS inside a real nix-build (a derivation without
# nixpkgs, builder /bin/sh, no substituters, no sandbox) equal the job's
# cores, for jobs of 1 and 3 cores. Nix ignores NIX_BUILD_CORES in the
# caller's environment (it sets the builder's from its "cores" setting), so
# the worker passes the count in NIX_CONFIG; MAX_JOBS is forwarded by the
# derivation, as recipes do.
set -u
. "$(dirname "$0")/worker_lib.sh"
trap 'cleanup_procs; rm -rf "$TMP"' EXIT
command -v nix-build >/dev/null || { echo "SKIP nix-build not installed"; exit 77; }

PORT=$(free_port)
start_serve "$TMP/srv" "$PORT"
"$KILN_BIN" worker --server "$SERVE_URL" --token "$WTOKEN" --work-dir "$TMP/w" --name nixer \
    --cores 3 --ram 4G --max-jobs 1 >"$TMP/worker.log" 2>&1 &
PIDS+=("$!")
cmd='nix-build --option substituters \"\" --option sandbox false '"$KILN_SRC"'/tests/fixtures/worker/cores.nix --argstr maxJobs \"$MAX_JOBS\" --argstr nonce \"$KILN_JOB_ID-$(date +%s%N)\" --no-out-link'
for cores in 1 3; do
    j=$(ssubmit "{\"name\":\"nix-$cores\",\"command\":\"$cmd\",\"cores\":$cores,\"ram_mb\":500,\"platform\":\"x86_64-linux\"}")
    [ -n "$j" ] || fail "submit failed"
    wait_for 90 sstate_is "$j" succeeded || { api GET "/jobs/$j/log"; fail "nix job $j: $(sjob "$j")"; }
    line=$(api GET "/jobs/$j/log" | grep '^probe ')
    [ "$line" = "probe NIX_BUILD_CORES=$cores MAX_JOBS=$cores" ] ||
        { api GET "/jobs/$j/log"; fail "job with $cores cores saw: '$line'"; }
    echo "ok job with $cores cores: $line"
done
echo PASS
