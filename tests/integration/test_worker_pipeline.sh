#!/usr/bin/env bash
# The recipe pipeline through the real agent: `kiln serve --recipes` with the
# demo recipe, one worker that runs commands from a copy of the repository
# (--source-dir) and has an SM 90 GPU (the real one, or declared in its config
# on hosts without a GPU). The build stage runs nix-build + nvcc and the worker
# reports result-NAME's store path as the output; the test stage is leased to
# the GPU, links result-NAME to that output and runs `kiln selftest run` on
# the lease's selftest spec; the selftest document reaches the job. With a
# real GPU the job succeeds; without one it fails at the test stage with the
# selftest's own reasons.
set -u
. "$(dirname "$0")/worker_lib.sh"
trap 'cleanup_procs; rm -rf "$TMP"' EXIT
command -v nix-build >/dev/null || { echo "SKIP nix-build not installed"; exit 77; }
NVCC_DIR=$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")
[ -x "$NVCC_DIR/nvcc" ] || { echo "SKIP nvcc not installed"; exit 77; }

mkdir -p "$TMP/src"
cp -r "$KILN_SRC/recipes" "$KILN_SRC/kernels-selftest" "$TMP/src/"
PORT=$(free_port)
SERVE_EXTRA="recipes: $KILN_SRC/recipes" start_serve "$TMP/srv" "$PORT"
real_gpu=0
if "$KILN_BIN" worker --detect --json | python3 -c 'import json,sys; sys.exit(0 if any(g["sm"]=="90" for g in json.load(sys.stdin)["gpus"]) else 1)'; then
    real_gpu=1
    : >"$TMP/w.yaml"
else
    echo 'gpus: [{index: 0, name: "declared H100", sm: "90", memory_mb: 81559, driver: "580.65.06"}]' >"$TMP/w.yaml"
fi
PATH=$NVCC_DIR:$PATH "$KILN_BIN" worker --server "$SERVE_URL" --token "$WTOKEN" --config "$TMP/w.yaml" \
    --work-dir "$TMP/w" --source-dir "$TMP/src" --name gpu1 --cores 2 --ram 8G >"$TMP/worker.log" 2>&1 &
PIDS+=("$!")

r=$(api POST /jobs '{"recipe":"demo","branch":"main","where":{"sm":"90","isa":"avx2"}}')
j=$(jget "$r" 'd["jobs"][0]["id"]') || fail "submit: $r"
over() { case $(jget "$(sjob "$j")" 'd["state"]') in succeeded|failed|cancelled) return 0;; esac; return 1; }
wait_for 100 over || fail "pipeline did not finish: $(sjob "$j")"
d=$(sjob "$j")
out=$(jget "$d" 'd["outputs"][0] if d["outputs"] else ""')
case $out in /nix/store/*-demo-sm90-avx2*) ;; *) fail "build output not reported: $d";; esac
echo "ok 1 build stage: output $out"
api GET "/jobs/$j/log" >"$TMP/job.log"
grep -q -- '--- kiln: attempt 2 (test) on worker gpu1 ---' "$TMP/job.log" || fail "no test stage in the log"
[ "$(jget "$d" 'd["gpu_index"]')" = 0 ] || fail "test stage not on GPU 0: $d"
[ "$(jget "$d" 'd["selftest"] is not None and "checks" in d["selftest"]')" = True ] || fail "no selftest document: $d"
cubin=$(jget "$d" '[c["ok"] for c in d["selftest"]["checks"] if c["name"]=="built-for"][0]')
[ "$cubin" = True ] || fail "cubin check failed: $d"
echo "ok 2 test stage on GPU 0 ran kiln selftest; built-for check (the cubin's SM) passed"
if [ $real_gpu = 1 ]; then
    [ "$(jget "$d" 'd["state"]')" = succeeded ] || fail "with a real SM 90 GPU the job should succeed: $d"
    echo "ok 3 real GPU: job succeeded"
else
    [ "$(jget "$d" 'd["state"]')" = failed ] && [ "$(jget "$d" 'd["failed_stage"]')" = test ] || fail "expected a test-stage failure: $d"
    reason=$(jget "$d" 'd["reason"]')
    case $reason in "selftest failed: "*) ;; *) fail "reason: $reason";; esac
    echo "ok 3 no GPU here: failed at the test stage: ${reason:0:120}..."
fi
echo PASS
