#!/usr/bin/env bash
# kiln selftest inspect/host/run against binaries nvcc builds here (several
# SMs, with and without PTX, arch-specific sm_90a/sm_100a and family sm_120f,
# shared objects with and without the NVFP4 ops of seed 003), plus malformed
# input. No GPU needed. Without nvcc the checked-in fixtures are used.
set -u
: "${KILN_BIN:?KILN_BIN must point at the kiln binary}"
: "${KILN_SRC:?KILN_SRC must point at the repo root}"
K=$KILN_BIN
FIX=$KILN_SRC/tests/fixtures/selftest
T=$(mktemp -d /tmp/kiln-selftest-inspect.XXXXXX)
cleanup() { rm -rf "$T"; }
trap cleanup EXIT
fails=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }

# expect RC PATTERN DESCRIPTION -- command...: rc must match, output must
# contain PATTERN (grep -E), and a crash (rc >= 128) is always a failure.
expect() {
    local want=$1 pat=$2 what=$3
    shift 4
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -ge 128 ]; then
        fail "$what: crashed (rc $rc)"; echo "$out" | tail -5; return
    fi
    if [ "$rc" -ne "$want" ]; then
        fail "$what: rc $rc, wanted $want"; echo "$out" | tail -10; return
    fi
    if [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$out"; then
        fail "$what: output lacks /$pat/"; echo "$out" | tail -10; return
    fi
    pass "$what"
}

NVCC=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })
[ -n "${KILN_TEST_NO_NVCC:-}" ] && NVCC= # exercise the fixture path
if [ -n "$NVCC" ]; then
    echo "building test objects with $NVCC"
    cp "$FIX/vecadd.cu" "$FIX/fp4lib.cu" "$T/"
    (
        cd "$T" || exit 1
        # Two at a time: the machine has two cores.
        {
            echo "-c vecadd.cu -o sm80_only.o -gencode arch=compute_80,code=sm_80"
            echo "-c vecadd.cu -o sm90_ptx.o -gencode arch=compute_90,code=[sm_90,compute_90]"
            echo "-fatbin vecadd.cu -o sm100a.fatbin -gencode arch=compute_100a,code=[sm_100a,compute_100a]"
            echo "-cubin vecadd.cu -o sm90a.cubin -arch=sm_90a"
            echo "-fatbin vecadd.cu -o sm120f.fatbin -gencode arch=compute_120f,code=sm_120f"
            echo "-shared -Xcompiler -fPIC -cudart shared -o libfp4_good.so fp4lib.cu -DENABLE_NVFP4 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_120f,code=sm_120f"
            echo "-shared -Xcompiler -fPIC -cudart shared -o libfp4_missing.so fp4lib.cu -gencode arch=compute_90,code=sm_90 -gencode arch=compute_120,code=sm_120"
        } | xargs -P 2 -L 1 "$NVCC"
    ) || { echo "nvcc failed"; exit 1; }
else
    echo "nvcc not found: using the checked-in fixtures of $FIX"
    cp "$FIX/sm80_only.obj" "$T/sm80_only.o"
    cp "$FIX/sm90_ptx.obj" "$T/sm90_ptx.o"
    cp "$FIX/sm90a.cubin" "$FIX/libfp4_good.so" "$FIX/libfp4_missing.so" "$T/"
    cp "$FIX/multi.fatbin" "$T/sm100a.fatbin" # holds sm_100a among others
    cp "$FIX/sm120f.cubin" "$T/sm120f.fatbin"
fi

# --- SM expectations
expect 1 'no cubin or PTX usable on sm_90: found sm_80 \(cubin\)' \
    "sm_80 cubin only does not serve sm_90" -- "$K" selftest inspect "$T/sm80_only.o" --expect-sm 90
expect 0 'OK via cubin sm_80' "sm_80 cubin serves sm_86" -- "$K" selftest inspect "$T/sm80_only.o" --expect-sm 86
expect 0 'OK via cubin sm_90' "sm_90 cubin serves sm_90" -- "$K" selftest inspect "$T/sm90_ptx.o" --expect-sm sm_90
expect 0 'PTX compute_90 \(JIT' "compute_90 PTX JITs for sm_100" -- "$K" selftest inspect "$T/sm90_ptx.o" --expect-sm 100
expect 0 'cubins: +sm_90a' "bare cubin sm_90a is listed as arch-specific" -- "$K" selftest inspect "$T/sm90a.cubin"
if [ -n "$NVCC" ]; then
    expect 1 'found sm_100a \(cubin, arch-specific\), compute_100a \(PTX, arch-specific\)' \
        "sm_100a does not serve sm_121 (seed 002)" -- "$K" selftest inspect "$T/sm100a.fatbin" --expect-sm 121
    expect 1 'arch-specific' "sm_100a does not serve sm_103" -- "$K" selftest inspect "$T/sm100a.fatbin" --expect-sm 103
fi
expect 0 'OK via cubin sm_120f' "family cubin sm_120f serves sm_121" -- "$K" selftest inspect "$T/sm120f.fatbin" --expect-sm 12.1
expect 1 'found sm_90 \(cubin\), sm_120f' "two files: a plain .so without sm_100 code fails" -- \
    "$K" selftest inspect "$T/libfp4_good.so" "$T/sm90_ptx.o" --expect-sm 100

# --- JSON output is valid and says why
"$K" selftest inspect "$T/sm80_only.o" --expect-sm 90 --json >"$T/out.json"
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is False; assert "sm_90" in d["reasons"][0]; assert d["files"][0]["cubins"]==["sm_80"]' "$T/out.json"; then
    pass "--json document"
else
    fail "--json document"; cat "$T/out.json"
fi

# --- symbols (seed 003: NVFP4 ops never compiled)
expect 1 'symbol cutlass_scaled_fp4_mm: MISSING' "library without fp4 ops fails" -- \
    "$K" selftest inspect "$T/libfp4_missing.so" --expect-symbols cutlass_scaled_fp4_mm,scaled_fp4_quant
expect 0 'symbol scaled_fp4_quant: found \(_Z16scaled_fp4_quant' "library with fp4 ops passes" -- \
    "$K" selftest inspect "$T/libfp4_good.so" --expect-sm 121 --expect-symbols cutlass_scaled_fp4_mm,scaled_fp4_quant
expect 0 'found' "kernel names inside cubins count" -- \
    "$K" selftest inspect "$T/libfp4_good.so" --expect-symbols 'scaled_fp4_quant_kernel,silu_and_mul*'

# --- malformed input: clear errors, never a crash
head -c 1000 "$T/sm90_ptx.o" >"$T/trunc.o"
head -c 30 "$T/sm90_ptx.o" >"$T/tiny.o"
head -c 200 "$T/sm120f.fatbin" >"$T/trunc.fatbin"
head -c 4096 /dev/urandom >"$T/random.bin"
: >"$T/empty"
expect 1 'runs past the end|truncated' "truncated object" -- "$K" selftest inspect "$T/trunc.o"
expect 1 'truncated ELF header' "30-byte ELF" -- "$K" selftest inspect "$T/tiny.o"
expect 1 'error' "truncated fatbin" -- "$K" selftest inspect "$T/trunc.fatbin"
expect 1 'not an ELF file' "random bytes" -- "$K" selftest inspect "$T/random.bin"
expect 1 'is empty' "empty file" -- "$K" selftest inspect "$T/empty"
expect 1 'not a regular file' "a directory" -- "$K" selftest inspect "$T"
expect 1 'cannot open' "missing file" -- "$K" selftest inspect "$T/nope.so"
expect 2 'wants an SM' "bad --expect-sm" -- "$K" selftest inspect "$T/sm90_ptx.o" --expect-sm banana
expect 2 'empty name' "bad --expect-symbols" -- "$K" selftest inspect "$T/sm90_ptx.o" --expect-symbols 'a,,b'
expect 2 'usage' "no subcommand" -- "$K" selftest

# --- host facts
expect 1 'needs a GPU with sm_90 but this host has sm_80' "host with the wrong GPU" -- \
    "$K" selftest host --sm 90 --gpu-sm 80 --driver 580.65.06 --cpu-isa avx2,fma,f16c,avx
expect 1 'driver >= 560 but this host has 550' "host with an old driver" -- \
    "$K" selftest host --sm 90 --driver-min 560 --gpu-sm 90 --driver 550.54.15
expect 1 'lacks avx512f' "host without avx512" -- \
    "$K" selftest host --isa avx512 --cpu-isa avx,avx2,fma,f16c
expect 0 'qualifies' "matching host" -- \
    "$K" selftest host --sm 120 --compatible --driver-min 570 --gpu-sm 90,121 --driver 580.1
expect 2 'unknown ISA level' "bad ISA level" -- "$K" selftest host --isa avx9000

# --- run: a stand-in selftest binary, checks with CUDA errors and a hang
cat >"$T/fake-selftest" <<'EOF'
#!/bin/sh
# stand-in for kiln-selftest: --json-file PATH
cat >"$2" <<'JSON'
{"tool":"kiln-selftest","ok":true,"kernels":[{"name":"vector_add","status":"pass","reason":null}]}
JSON
echo "overall: PASS"
EOF
chmod +x "$T/fake-selftest"
start=$(date +%s)
"$K" selftest run --binary "$T/fake-selftest" --timeout 2 --log "$T/run.log" \
    --check 'echo "RuntimeError: No supported CUDA architectures found for major versions [10]" >&2; exit 1' \
    --check 'sleep 60' --check true \
    --inspect "$T/libfp4_missing.so" --expect-symbols scaled_fp4_quant --out "$T/run.json" >/dev/null
rc=$?
secs=$(($(date +%s) - start))
if [ $rc -eq 1 ] && [ $secs -lt 20 ] && python3 - "$T/run.json" <<'EOF'; then
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] is False, d
assert d["selftest"]["ok"] is True
c = d["checks"]
assert "major versions [10]" in c[0]["reason"], c[0]
assert c[1]["timed_out"] is True and "timed out after 2.0 s" in c[1]["reason"], c[1]
assert c[2]["ok"] is True
assert any("scaled_fp4_quant" in r for r in d["reasons"]), d["reasons"]
EOF
    pass "selftest run document (CUDA error reason, hang killed at its timeout in ${secs}s)"
else
    fail "selftest run document (rc $rc, ${secs}s)"; cat "$T/run.json" 2>/dev/null | head -50
fi
grep -q 'overall: PASS' "$T/run.log" && pass "run log captured" || fail "run log captured"

# --- run --spec: the recipe's selftest object as the worker gets it
mkdir -p "$T/work/result-demo/lib"
cp "$T/libfp4_missing.so" "$T/work/result-demo/lib/"
cat >"$T/spec.json" <<'EOF'
{"name":"demo-sm121","selftest":{"sm":"121","sm_compat":false,"isa":"","driver_min":"560",
 "checks":[{"name":"layout","command":"test -d result-demo/lib","timeout_s":5}],
 "expect_symbols":["cutlass_scaled_fp4_mm"],"artifact_globs":["result-demo/lib/*.so"]}}
EOF
"$K" selftest run --spec "$T/spec.json" --workdir "$T/work" --selftest-dir "$T/nobin" \
    --out "$T/spec-run.json" >/dev/null
rc=$?
if [ $rc -eq 1 ] && python3 - "$T/spec-run.json" <<'EOF'; then
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] is False
assert d["checks"][0]["name"] == "layout" and d["checks"][0]["ok"] is True, d["checks"]
r = " | ".join(d["reasons"])
assert "cutlass_scaled_fp4_mm" in r, r
assert "kiln-selftest-sm121" in r, r
EOF
    pass "selftest run --spec (checks in the workdir, globbed artifacts, missing fp4 symbol)"
else
    fail "selftest run --spec (rc $rc)"; cat "$T/spec-run.json" 2>/dev/null | head -40
fi
echo '{"selftest":{"sm":"banana"}}' >"$T/bad-spec.json"
expect 2 'selftest.sm must name an SM' "bad spec is refused" -- "$K" selftest run --spec "$T/bad-spec.json"
echo '{"selftest":' >"$T/broken.json"
expect 2 'broken.json:' "unparsable spec names file:line:col" -- "$K" selftest run --spec "$T/broken.json"

# --- the real kiln-selftest binary: builds, reports no GPU plainly, and
# inspects as what it was built for.
if [ -n "$NVCC" ]; then
    if make -s -C "$KILN_SRC" B="$T/b" selftest SM=90 NVCC="$NVCC" >"$T/make.log" 2>&1; then
        bin=$T/b/selftest/kiln-selftest-sm90
        expect 0 'OK via cubin sm_90' "kiln-selftest-sm90 holds sm_90 code" -- "$K" selftest inspect "$bin" --expect-sm 90
        if nvidia-smi -L >/dev/null 2>&1; then
            echo "a GPU is present: tests/integration/test_selftest_gpu.sh runs the kernels"
        else
            "$bin" --json >"$T/nogpu.json"
            rc=$?
            if [ $rc -eq 3 ] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is False and "no usable CUDA GPU" in d["error"]' "$T/nogpu.json"; then
                pass "kiln-selftest without a GPU: exit 3 and a plain error"
            else
                fail "kiln-selftest without a GPU (rc $rc)"; cat "$T/nogpu.json"
            fi
        fi
    else
        fail "make selftest SM=90"; tail -20 "$T/make.log"
    fi
fi

if [ $fails -ne 0 ]; then
    echo "$fails failure(s)"
    exit 1
fi
echo "all selftest inspect checks passed"
exit 0
