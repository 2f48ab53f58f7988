#!/usr/bin/env bash
# kiln-selftest on a real GPU: the build for this GPU's SM passes every
# kernel; a cubin-only build for another major fails with the "no kernel
# image" reason; the planted wrong kernel fails; `kiln selftest run` turns a
# kernel's illegal memory access into a plain reason. Skips (77) without a
# GPU or without nvcc. Prebuilt binaries may be given in KILN_SELFTEST_DIR
# (kiln-selftest-smNN, kiln-selftest-sm80-noptx, kiln-selftest-smNN-planted,
# illegal-smNN), as on the device machine, which builds nothing.
set -u
: "${KILN_BIN:?}" "${KILN_SRC:?}"
K=$KILN_BIN
if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "SKIP: no NVIDIA GPU here (nvidia-smi -L failed); GPU selftests need one"
    exit 77
fi
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
[ -n "$cap" ] || { echo "cannot read the GPU's compute capability"; exit 1; }
T=$(mktemp -d /tmp/kiln-selftest-gpu.XXXXXX)
trap 'rm -rf "$T"' EXIT
D=${KILN_SELFTEST_DIR:-}
if [ -z "$D" ]; then
    NVCC=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })
    if [ -z "$NVCC" ]; then
        echo "SKIP: nvcc not found and KILN_SELFTEST_DIR not set"
        exit 77
    fi
    D=$T/b/selftest
    other=80
    [ "${cap:0:1}" = 8 ] && other=90
    make -s -C "$KILN_SRC" B="$T/b" selftest SM="$cap" NVCC="$NVCC" &&
        make -s -C "$KILN_SRC" B="$T/b" selftest SM="$cap" PLANT=1 NVCC="$NVCC" &&
        make -s -C "$KILN_SRC" B="$T/b" selftest SM=$other PTX=0 NVCC="$NVCC" || exit 1
    mv "$D/kiln-selftest-sm$other-noptx" "$D/kiln-selftest-sm80-noptx" 2>/dev/null
    cat >"$T/illegal.cu" <<'EOF'
#include <cstdio>
#include <cuda_runtime.h>
__global__ void bad(int *p) { p[threadIdx.x * 1000000] = 1; }
int main() {
    bad<<<1, 32>>>((int *)0x10);
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) { fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(e)); return 1; }
    return 0;
}
EOF
    "$NVCC" -arch=sm_$cap -o "$D/illegal-sm$cap" "$T/illegal.cu" || exit 1
fi
fails=0
check() { if eval "$2"; then echo "ok   - $1"; else echo "FAIL - $1"; fails=$((fails + 1)); fi; }

out=$("$D/kiln-selftest-sm$cap" 2>&1); rc=$?
echo "$out"
check "kiln-selftest-sm$cap passes every kernel" '[ $rc -eq 0 ] && grep -q "overall: PASS" <<<"$out"'
out=$("$D/kiln-selftest-sm80-noptx" 2>&1); rc=$?
echo "$out" | head -4
check "a cubin-only build for another major fails with no kernel image" \
    '[ $rc -eq 1 ] && grep -q "no kernel image is available for execution on the device: built for sm_" <<<"$out"'
out=$("$D/kiln-selftest-sm$cap-planted" 2>&1); rc=$?
check "the planted wrong kernel fails" '[ $rc -eq 1 ] && grep -q "^vector_add *FAIL" <<<"$out"'
"$K" selftest run --binary "$D/kiln-selftest-sm$cap" --check "$D/illegal-sm$cap" --timeout 60 \
    --out "$T/run.json" >/dev/null
rc=$?
check "kiln selftest run names the illegal memory access" \
    '[ $rc -eq 1 ] && grep -q "a kernel made an illegal memory access" "$T/run.json" && ! grep -q "no kernel image" "$T/run.json"'
[ $fails -eq 0 ]
