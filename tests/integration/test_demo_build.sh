#!/usr/bin/env bash
# The demo recipe builds for real: expand recipes/demo.yaml for two SMs,
# run each variant's own build command (nix-build of recipes/demo with
# nvcc), and check that the outputs hold cubins for exactly the requested
# SMs (read from the cubins' ELF headers by recipes/demo/cubin-sm.sh).
set -u
: "${KILN_BIN:?KILN_BIN not set}" "${KILN_SRC:?KILN_SRC not set}"
command -v nix-build >/dev/null || { echo "SKIP: nix-build not installed"; exit 77; }
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$NVCC" ] || { echo "SKIP: nvcc not found"; exit 77; }

work=$(mktemp -d /tmp/kiln-demo-build.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/recipes" "$work/kernels-selftest"
cp -r "$KILN_SRC/recipes/demo" "$KILN_SRC/recipes/demo.yaml" "$work/recipes/"
# The derivation compiles kernels-selftest's CUDA file when the tree has it.
if [ -f "$KILN_SRC/kernels-selftest/kselftest.cu" ]; then
    cp "$KILN_SRC/kernels-selftest/kselftest.cu" "$work/kernels-selftest/"
fi
cd "$work" || exit 1

want_sms="75 90"
"$KILN_BIN" recipe expand recipes/demo.yaml --where 'sm=75|90,isa=avx2' --json >variants.json || {
    echo "FAIL: expand"; exit 1; }
# Top-level "command" of each variant (4-space indent in the pretty JSON;
# selftest check commands are nested deeper).
sed -n 's/^    "command": "\(.*\)",$/\1/p' variants.json >commands.txt
sed -n 's/^    "name": "\(.*\)",$/\1/p' variants.json >names.txt
n=$(wc -l <commands.txt)
[ "$n" -eq 2 ] || { echo "FAIL: expected 2 variants, got $n"; cat variants.json; exit 1; }

# Drop earlier outputs of these derivations from the store so that the
# builds below really run nvcc (nothing else holds them as GC roots).
while IFS= read -r cmd; do
    icmd=$(echo "$cmd" | sed 's/^nix-build/nix-instantiate/; s/ -o [^ ]*$//')
    drv=$(bash -c "$icmd" 2>/dev/null) || continue
    for o in $(nix-store -q --outputs "$drv" 2>/dev/null); do
        [ -e "$o" ] && nix-store --delete "$o" >/dev/null 2>&1
    done
done <commands.txt

start=$(date +%s)
while IFS= read -r cmd; do
    echo "+ $cmd"
    # The command is the recipe's template, run as a worker would run it.
    bash -c "$cmd" >>build.log 2>&1 || { echo "FAIL: build: $cmd"; tail -30 build.log; exit 1; }
done <commands.txt
echo "built 2 variants in $(($(date +%s) - start)) s"

found=""
while IFS= read -r name; do
    out="result-$name"
    [ -d "$out/cubin" ] || { echo "FAIL: $out/cubin missing"; exit 1; }
    files=("$out"/cubin/*.cubin)
    [ "${#files[@]}" -eq 1 ] || { echo "FAIL: $name has ${#files[@]} cubins, want 1"; exit 1; }
    line=$(sh recipes/demo/cubin-sm.sh "${files[@]}") || { echo "FAIL: not a cubin: ${files[*]}"; exit 1; }
    sm=${line##* }
    want=${name#demo-sm}; want=${want%%-*}
    echo "$name: cubin for sm_$sm"
    [ "$sm" = "$want" ] || { echo "FAIL: $name holds a cubin for sm_$sm, want sm_$want"; exit 1; }
    if [ -f "$work/kernels-selftest/kselftest.cu" ]; then
        # The smoke-test binary embeds cubins for exactly this SM (kernels-
        # selftest's fatbin inspector reads them out of the host ELF).
        bin="$out/bin/kiln-selftest"
        [ -x "$bin" ] || { echo "FAIL: $name has no bin/kiln-selftest"; exit 1; }
        insp=$("$KILN_BIN" selftest inspect "$bin" --expect-sm "$want") || {
            echo "FAIL: inspect $bin"; echo "$insp"; exit 1; }
        cubins=$(echo "$insp" | sed -n 's/^ *cubins: *//p')
        ptx=$(echo "$insp" | sed -n 's/^ *ptx: *//p')
        echo "$name: kiln-selftest cubins: $cubins; ptx: $ptx"
        [ "$cubins" = "sm_$want" ] || { echo "FAIL: $bin holds cubins '$cubins', want exactly sm_$want"; exit 1; }
        [ "$ptx" = "(none)" ] || { echo "FAIL: $bin holds PTX '$ptx'"; exit 1; }
    else
        [ -s "$out/lib/demo.o" ] || { echo "FAIL: $name has no host object"; exit 1; }
    fi
    found="$found $sm"
done <names.txt
found=$(echo $found | tr ' ' '\n' | sort -n | tr '\n' ' ' | sed 's/ $//')
[ "$found" = "$want_sms" ] || { echo "FAIL: SMs built: '$found', want '$want_sms'"; exit 1; }
echo "PASS: cubins for exactly SMs $found"
