# Builder of recipes/demo/default.nix: one cubin for exactly $sm, and a host
# object compiled with the ISA's flags (fatbin embedded for the same SM).
set -eu
case "$isa" in
avx2) hostflag=-mavx2 ;;
avx512) hostflag=-mavx512f ;;
*) echo "build.sh: unknown isa '$isa'" >&2; exit 1 ;;
esac
mkdir -p "$out/cubin" "$out/lib"
"$nvcc" -cubin -arch="sm_$sm" -o "$out/cubin/demo.sm_$sm.cubin" "$kernel"
"$nvcc" -c -gencode "arch=compute_$sm,code=sm_$sm" -Xcompiler "$hostflag" \
    -o "$out/lib/demo.o" "$kernel"
printf 'name=%s\nsm=%s\nisa=%s\n' "$name" "$sm" "$isa" >"$out/variant.txt"
