#!/usr/bin/env bash
# Auto-publish end to end: a push to a tracked repository -> the watcher
# enqueues the affected demo variant -> the worker checks out that commit ->
# a real nix-build (nvcc for SM 90) ->
# the selftest stage on a worker with an SM 90 GPU (declared in its config
# here; the checks inspect the built cubins, no kernel is launched) -> the
# publish stage puts the output into the signed catalog. The catalog entry
# names the commit and the branch, and `kiln catalog verify` is clean.
set -u
KILN=${KILN_BIN:?}
SRC=${KILN_SRC:?}
command -v nix-build >/dev/null || { echo "SKIP nix-build not installed"; exit 77; }
[ -x /usr/local/cuda/bin/nvcc ] || { echo "SKIP nvcc not installed"; exit 77; }
T=$(mktemp -d /tmp/kiln-autopub-XXXXXX)
pids=()
cleanup() {
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null; sleep 0.3; kill -TERM "${pids[i]}" 2>/dev/null
        for _ in $(seq 150); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${pids[i]}" 2>/dev/null; wait "${pids[i]}" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -25 "$T/serve.log"; tail -25 "$T/worker.log"; exit 1; }

git init -q --bare "$T/origin.git"
git init -q -b main "$T/work"
cd "$T/work"
git config user.email t@t; git config user.name t
mkdir -p recipes kernels-selftest
cp -r "$SRC/recipes/demo" recipes/
cp "$SRC/kernels-selftest/kselftest.cu" kernels-selftest/
# One variant only (SM 90 x avx2) so the test builds once; its selftest
# keeps the checks that need no GPU (the cubin's SM, the expected kernel
# symbols) and drops the GPU ones (sm, driver, running kiln-selftest), since
# this host has none.
python3 - "$SRC/recipes/demo.yaml" > recipes/demo.yaml <<'PY'
import re, sys
text = open(sys.argv[1]).read()
text = re.sub(r"\n\s+- (cpu|75|80|86|89|100|120):[^\n]*", "", text)
text = re.sub(r"\n\s+- avx512:[^\n]*", "", text)
text = re.sub(r"\n  sm: \"\{gpu_sm\}\"", "", text)
text = re.sub(r"\n  driver_min: \"\{driver_min\}\"", "", text)
text = re.sub(r"\n    # GPU variants, on the matching GPU:.*?timeout_s: 120", "", text, flags=re.S)
sys.stdout.write(text)
PY
grep -q 'check.sh runs\|{gpu_sm}' recipes/demo.yaml && { echo "FAIL: could not strip the GPU checks"; exit 1; }
git add -A; git commit -qm init; git push -q "$T/origin.git" main

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
U=http://127.0.0.1:$PORT
cat > "$T/kiln.yaml" <<Y
repos:
  - name: demo
    url: $T/origin.git
    branches: main
    recipes: [recipes/demo.yaml]
    poll_s: 1
    auto_publish: true
    initial_build: false
Y
WT=$("$KILN" token create --data "$T/d" --role worker | grep -oE 'kiln_[0-9a-f]{48}')
"$KILN" serve --listen 127.0.0.1:$PORT --data "$T/d" --config "$T/kiln.yaml" --allow-anonymous-read >"$T/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "$U/healthz" >/dev/null && break; sleep 0.05; done
# No --source-dir: the worker must check out the pushed commit itself.
# The worker binary in a folder of its own: no selftest/ binaries beside it,
# so the test stage runs the recipe's checks and inspection, not kernels.
mkdir -p "$T/bin"; cp "$KILN" "$T/bin/kiln"
echo 'gpus: [{index: 0, name: "declared H100", sm: "90", memory_mb: 81559, driver: "580.65.06"}]' > "$T/w.yaml"
PATH=/usr/local/cuda/bin:$PATH "$T/bin/kiln" worker --server "$U" --token "$WT" --config "$T/w.yaml" \
    --work-dir "$T/wd" --name gpu1 --cores 2 --ram 8G >"$T/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "$U/api/v1/repos" | grep -q "$(git rev-parse HEAD)" && break; sleep 0.1; done

echo "// touched $RANDOM $(date +%s%N)" >> kernels-selftest/kselftest.cu
git commit -qam "kselftest: touch the kernel (a new derivation: nvcc really runs)"
git push -q "$T/origin.git" main
C=$(git rev-parse HEAD)
job=""
for _ in $(seq 100); do
    job=$(curl -fs "$U/api/v1/jobs?limit=10" | python3 -c "import json,sys;print(' '.join(str(j['id']) for j in json.load(sys.stdin)['jobs'] if j.get('commit')=='$C'))")
    [ -n "$job" ] && break; sleep 0.1
done
[ "$(echo $job | wc -w)" = 1 ] || fail "expected exactly one job for $C, got '$job'"
echo "ok: push enqueued job $job (demo-sm90-avx2) for $C"
state() { curl -fs "$U/api/v1/jobs/$job" | python3 -c "import json,sys;j=json.load(sys.stdin);print(j['state'], j.get('failed_stage') or '', j.get('reason') or '')"; }
seen=""
for _ in $(seq 1800); do
    s=$(state); st=${s%% *}
    case " $seen " in *" $st "*) ;; *) seen="$seen $st";; esac
    case $st in succeeded|failed|cancelled) break;; esac
    sleep 0.1
done
[ "${s%% *}" = succeeded ] || fail "job ended: $s (states seen:$seen)"
for want in building testing publishing; do
    case " $seen " in *" $want "*) ;; *) echo "note: state $want passed between polls";; esac
done
echo "ok: job went through:$seen"
curl -fs "$U/api/v1/jobs/$job/log" > "$T/job.log"
grep -q "kiln source: $T/origin.git at ${C:0:12} checked out" "$T/job.log" || fail "the build did not check out the pushed commit: $(head -20 "$T/job.log")"
echo "ok: the worker checked out the pushed commit ${C:0:12} for the build (no --source-dir)"
curl -fs "$U/api/v1/catalog?name=demo-sm90-avx2" > "$T/cat.json"
python3 - "$T/cat.json" "$C" <<'PY' || fail "catalog entry: $(cat "$T/cat.json")"
import json, sys
d = json.load(open(sys.argv[1])); c = sys.argv[2]
entries = d.get("entries") or d.get("artifacts") or d.get("catalog") or []
e = [x for x in entries if x.get("commit") == c]
assert e, "no entry for the commit"
e = e[0]
assert e.get("branch") == "main", e
assert e.get("sm") in ("90", 90), e
print("ok: catalog entry", e.get("name"), e.get("version"), "commit", c[:12], "branch", e.get("branch"), e.get("digest", "")[:20])
PY
"$KILN" catalog verify --data "$T/d" >"$T/verify.log" 2>&1 || fail "catalog verify: $(cat "$T/verify.log")"
echo "ok: kiln catalog verify is clean"
echo PASS
