# Builder of recipes/demo/default.nix. Device code for exactly sm_$sm (a
# cubin, no PTX, so nothing else can run it) and host code with the ISA's
# flags: bin/kiln-selftest when the source is kselftest.cu (it has a main),
# else lib/demo.o; plus cubin/demo.sm_$sm.cubin on its own. With sm=cpu:
# bin/demo-cpu from cpu.c with the ISA's flags, and no CUDA at all.
set -eu
case "$isa" in
avx2) hostflag=-mavx2 ;;
avx512) hostflag=-mavx512f ;;
*) echo "build.sh: unknown isa '$isa'" >&2; exit 1 ;;
esac
if [ "$sm" = cpu ]; then
    # CPU-only variant: no nvcc, no device code; bin/demo-cpu checks itself.
    mkdir -p "$out/bin" "$out/lib"
    cp "$cpusrc" "$out/lib/source.c"
    cc -O2 -std=c11 "$hostflag" -DDEMO_ISA="\"$isa\"" -o "$out/bin/demo-cpu" "$cpusrc"
    printf 'name=%s\nsm=cpu\nisa=%s\nhost_flag=%s\n' "$name" "$isa" "$hostflag" >"$out/variant.txt"
    exit 0
fi
mkdir -p "$out/cubin" "$out/lib" "$out/bin"
cp "$kernel" "$out/lib/source.cu"
"$nvcc" -O2 -std=c++17 -cubin -arch="sm_$sm" -o "$out/cubin/demo.sm_$sm.cubin" "$kernel"
if grep -q '^int main' "$kernel"; then
    "$nvcc" -O2 -std=c++17 -gencode "arch=compute_$sm,code=sm_$sm" -Xcompiler "$hostflag" \
        -DKILN_SELFTEST_BUILT_FOR="\"sm_$sm\"" -o "$out/bin/kiln-selftest" "$kernel"
else
    "$nvcc" -O2 -c -gencode "arch=compute_$sm,code=sm_$sm" -Xcompiler "$hostflag" \
        -o "$out/lib/demo.o" "$kernel"
fi
printf 'name=%s\nsm=%s\nisa=%s\nhost_flag=%s\n' "$name" "$sm" "$isa" "$hostflag" >"$out/variant.txt"
