#!/usr/bin/env bash
# Issue 15, first run: what `make run` runs (scripts/run-local.sh, embedded
# defaults) on this GPU-less machine builds, tests and publishes the demo's
# CPU-only variants and prints a nix-store -r command; that exact command,
# run against an EMPTY private Nix store (its own mount namespace with an
# empty dir over /nix), substitutes the path from the farm's cache with
# signatures required, and the program runs. The GPU variant stays in the
# queue with the reason it waits. Fails if nothing is published or the
# printed command does not fetch the path.
set -u
: "${KILN_BIN:?KILN_BIN not set}" "${KILN_SRC:?KILN_SRC not set}"
for t in nix-build nix-store curl python3 unshare; do
    command -v $t >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root for a private /nix (unshare --mount)"; exit 77; }
# nix itself must live outside /nix: the empty store is mounted over it.
case "$(readlink -f "$(command -v nix-store)")" in /nix/*)
    echo "SKIP: nix-store lives in /nix/store; a private /nix would hide it"; exit 77 ;;
esac
unshare --mount --propagation private true 2>/dev/null || { echo "SKIP: unshare --mount not allowed here"; exit 77; }

T=$(mktemp -d "${FARM_DIR:-/var/tmp}/kiln-first-run.XXXXXX")
run_pid=""
cleanup() {
    if [ -n "$run_pid" ]; then
        # run-local.sh stops its worker and server on TERM; its process
        # group (setsid) catches anything left after 30 s.
        kill -TERM "$run_pid" 2>/dev/null
        for _ in $(seq 300); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$run_pid" 2>/dev/null
        wait "$run_pid" 2>/dev/null
    fi
    rm -rf "$T"
}
trap cleanup EXIT
trap "exit 1" TERM INT
fail() {
    echo "FAIL: $*"
    for f in "$T/out" "$T/var/serve.log" "$T/var/worker.log" "$T/var/submit.log" "$T/fetch.log"; do
        [ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }
    done
    exit 1
}

# The tree run-local.sh runs from (it cds to its script's parent): a copy,
# so the worker's result-* links land here, not in the source tree.
mkdir -p "$T/src/scripts" "$T/src/kernels-selftest"
cp "$KILN_SRC/scripts/run-local.sh" "$T/src/scripts/"
cp -r "$KILN_SRC/recipes" "$KILN_SRC/web" "$T/src/"
cp "$KILN_SRC/kernels-selftest/kselftest.cu" "$T/src/kernels-selftest/" 2>/dev/null
# Both CPU variants, and one SM of GPU variants when nvcc can build them.
where='sm=cpu'
[ -x /usr/local/cuda/bin/nvcc ] && where='sm=cpu|90'
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
KILN_BIN=$KILN_BIN KILN_DATA=$T/var KILN_LISTEN=127.0.0.1:$PORT KILN_DEMO_WHERE=$where \
    setsid bash "$T/src/scripts/run-local.sh" >"$T/out" 2>&1 &
run_pid=$!

printed() { grep -q '^    nix-store -r ' "$T/out"; }
for _ in $(seq 3000); do
    printed && break
    kill -0 "$run_pid" 2>/dev/null || fail "run-local.sh exited before printing the command"
    sleep 0.2
done
printed || fail "no nix-store -r command printed in 600 s (nothing published?)"
cmd=$(sed -n 's/^    \(nix-store -r .*\)$/\1/p' "$T/out" | head -1)
P=$(echo "$cmd" | awk '{print $3}')
case "$P" in /nix/store/*-demo-cpu-*) ;; *) fail "the command fetches '$P', not a CPU demo variant: $cmd" ;; esac
echo "$cmd" | grep -q -- "--option substituters $URL/nix-cache" || fail "command does not use this farm's cache: $cmd"
echo "$cmd" | grep -q -- "--option require-sigs true" || fail "command does not require signatures: $cmd"
echo "ok 1 run-local.sh printed: $cmd"

# Published: in the catalog, readable without a token on loopback.
name=${P#/nix/store/*-}
cat=$(curl -fs "$URL/api/v1/catalog?name=$name") || fail "anonymous catalog read on loopback"
echo "$cat" | grep -q "\"store_path\": *\"$P\"" || fail "catalog has no entry for $P: $cat"
grep -q "^  catalog: *$URL/#/catalog" "$T/out" || fail "catalog URL not printed"
echo "ok 2 $name is in the catalog"

# The printed command, verbatim, into an empty private store.
mkdir -p "$T/empty/nix" "$T/cache"
unshare --mount --propagation private -- bash -c '
    mount --bind "$1/empty/nix" /nix || exit 1
    export XDG_CACHE_HOME=$1/cache
    eval "$2" || exit 1
    "$3/bin/demo-cpu"' first-run "$T" "$cmd" "$P" >"$T/fetch.log" 2>&1 ||
    fail "the printed command did not fetch and run $P in an empty store"
grep -q "copying path '$P' from '$URL/nix-cache'" "$T/fetch.log" || fail "not substituted from the cache"
grep -q "demo-cpu ok" "$T/fetch.log" || fail "the substituted program did not say ok"
echo "ok 3 the printed command substituted $P into an empty store (signatures required) and it runs"

# Every CPU variant ends published; the GPU one waits and says why.
done_cpu() { grep -q "^  the demo's other variants now" "$T/out"; }
for _ in $(seq 3000); do done_cpu && break; sleep 0.2; done
done_cpu || fail "run-local.sh did not finish the CPU variants"
n=$(grep -c '^  published: demo-cpu-' "$T/out")
[ "$n" = 2 ] || fail "published $n CPU variants, want 2"
if [ "$where" != sm=cpu ]; then
    waits() { KILN_SERVER=$URL "$KILN_BIN" queue --recipe demo | grep -q "demo-sm90-avx2 .*no online worker with sm_90"; }
    for _ in $(seq 3000); do waits && break; sleep 0.2; done
    waits || fail "demo-sm90-avx2 does not wait with its reason: $(KILN_SERVER=$URL "$KILN_BIN" queue --recipe demo)"
    echo "ok 4 both CPU variants published; demo-sm90-avx2 waits: no online worker with sm_90"
else
    echo "ok 4 both CPU variants published (no nvcc: no GPU variant built)"
fi
echo "PASS test_first_run"
