/* kselftest.cu - kiln-selftest: GPU smoke kernels checked against CPU references.
 *
 * Contract: `kiln-selftest [--json] [--json-file PATH] [--device N]
 * [--min-bw GBPS]` runs, on one GPU, a vector add, an fp32 reduction, fp16
 * and bf16 GEMMs (tensor cores via wmma when the code runs as sm_80+, plain
 * FMA loops below), an fp8 e4m3 GEMM (mma.sync tensor-core instruction,
 * only on sm_89+), and a device-to-device copy bandwidth figure. Each kernel
 * is compared with a CPU reference against a stated tolerance. A table goes
 * to stdout for people; --json prints one JSON document instead (for the
 * worker), --json-file writes it to a file as well. Exit status: 0 every
 * kernel passed, 1 some kernel failed, 2 usage error, 3 no usable GPU.
 *
 * A CUDA error becomes a plain reason: cudaErrorNoKernelImageForDevice reads
 * "no kernel image is available for execution on the device: built for
 * sm_80, this GPU is sm_90". Build flags: KILN_SELFTEST_BUILT_FOR (string
 * naming the targets, set by module.mk) and KILN_SELFTEST_PLANT_WRONG=1,
 * which plants a numerically wrong vector add so tests can prove a wrong
 * kernel fails. Whole run: well under 10 s on a datacenter GPU.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef KILN_SELFTEST_BUILT_FOR
#define KILN_SELFTEST_BUILT_FOR "unknown targets"
#endif
#ifndef KILN_SELFTEST_PLANT_WRONG
#define KILN_SELFTEST_PLANT_WRONG 0
#endif

enum { PATH_SIMT = 1, PATH_WMMA = 2, PATH_MMA_FP8 = 3 };

/* ---------------- kernels ---------------- */

__global__ void vadd_kernel(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = a[i] + b[i];
#if KILN_SELFTEST_PLANT_WRONG
        /* Deliberately wrong: one element in 4099 is off by 0.1%. */
        if (i % 4099 == 7) v = v * 1.001f + 1e-3f;
#endif
        c[i] = v;
    }
}

/* Grid-stride partial sums, then a block tree reduction into partial[]. */
__global__ void reduce_kernel(const float *x, int n, float *partial)
{
    __shared__ float s[256];
    float acc = 0.f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        acc += x[i];
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

template <typename T> __device__ float to_f(T v);
template <> __device__ float to_f<__half>(__half v)
{
    return __half2float(v);
}
template <> __device__ float to_f<__nv_bfloat16>(__nv_bfloat16 v)
{
    return __bfloat162float(v);
}

/* One warp per 16x16 tile of C (row-major MxN, fp32). A is row-major MxK,
 * B is stored as NxK row-major (column-major KxN). */
template <typename T>
__global__ void gemm16_kernel(const T *A, const T *B, float *C, int M, int N, int K, int *path)
{
    int tile_n = blockIdx.x * 16, tile_m = blockIdx.y * 16;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
    wmma::fill_fragment(fc, 0.0f);
    for (int k = 0; k < K; k += 16) {
        wmma::load_matrix_sync(fa, A + (size_t)tile_m * K + k, K);
        wmma::load_matrix_sync(fb, B + (size_t)tile_n * K + k, K);
        wmma::mma_sync(fc, fa, fb, fc);
    }
    wmma::store_matrix_sync(C + (size_t)tile_m * N + tile_n, fc, N, wmma::mem_row_major);
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) *path = PATH_WMMA;
#else
    for (int e = threadIdx.x; e < 256; e += 32) {
        int r = tile_m + e / 16, c = tile_n + e % 16;
        float acc = 0.f;
        for (int k = 0; k < K; k++)
            acc += to_f(A[(size_t)r * K + k]) * to_f(B[(size_t)c * K + k]);
        C[(size_t)r * N + c] = acc;
    }
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) *path = PATH_SIMT;
#endif
}

/* e4m3: 1 sign, 4 exponent (bias 7), 3 mantissa bits; 0x7f/0xff are NaN. */
__host__ __device__ static float e4m3_to_float(uint8_t v)
{
    int s = v >> 7, e = (v >> 3) & 0xf, m = v & 7;
    float f;
    if (e == 0xf && m == 7) return NAN;
    if (e == 0)
        f = ldexpf((float)m / 8.0f, -6);
    else
        f = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return s ? -f : f;
}

/* One warp per 16x8 tile of C with mma.sync m16n8k32 e4m3 (sm_89+). A is
 * row-major MxK bytes, B is NxK bytes (column-major KxN). Fragment layout
 * per the PTX ISA "mma.m16n8k32" figures for 8-bit types. */
__global__ void gemm_fp8_kernel(const uint8_t *A, const uint8_t *B, float *C, int M, int N, int K,
                                int *path)
{
    int tile_n = blockIdx.x * 8, tile_m = blockIdx.y * 16;
    int lane = threadIdx.x;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    int g = lane >> 2, t = lane & 3;
    float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
    for (int k = 0; k < K; k += 32) {
        const uint8_t *a_lo = A + (size_t)(tile_m + g) * K + k + t * 4;
        const uint8_t *a_hi = A + (size_t)(tile_m + g + 8) * K + k + t * 4;
        const uint8_t *b = B + (size_t)(tile_n + g) * K + k + t * 4;
        uint32_t a0 = *(const uint32_t *)a_lo, a1 = *(const uint32_t *)a_hi;
        uint32_t a2 = *(const uint32_t *)(a_lo + 16), a3 = *(const uint32_t *)(a_hi + 16);
        uint32_t b0 = *(const uint32_t *)b, b1 = *(const uint32_t *)(b + 16);
        asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    }
    C[(size_t)(tile_m + g) * N + tile_n + t * 2] = d0;
    C[(size_t)(tile_m + g) * N + tile_n + t * 2 + 1] = d1;
    C[(size_t)(tile_m + g + 8) * N + tile_n + t * 2] = d2;
    C[(size_t)(tile_m + g + 8) * N + tile_n + t * 2 + 1] = d3;
    if (blockIdx.x == 0 && blockIdx.y == 0 && lane == 0) *path = PATH_MMA_FP8;
#else
    for (int e = lane; e < 128; e += 32) {
        int r = tile_m + e / 8, c = tile_n + e % 8;
        float acc = 0.f;
        for (int k = 0; k < K; k++)
            acc += e4m3_to_float(A[(size_t)r * K + k]) * e4m3_to_float(B[(size_t)c * K + k]);
        C[(size_t)r * N + c] = acc;
    }
    if (blockIdx.x == 0 && blockIdx.y == 0 && lane == 0) *path = PATH_SIMT;
#endif
}

/* ---------------- host side ---------------- */

struct result {
    const char *name;
    const char *status; /* "pass", "fail", "skip" */
    double max_err;
    const char *tol_text;
    double ms;
    const char *path;
    double figure; /* GB/s for the bandwidth test */
    char reason[320];
};

struct run {
    int dev;
    int sm;
    char gpu[256];
    int driver_ver, runtime_ver;
    int lost; /* sticky CUDA error: the context is gone */
    struct result res[8];
    int nres;
    double min_bw;
};

static const char *path_name(int p)
{
    switch (p) {
    case PATH_SIMT:
        return "simt";
    case PATH_WMMA:
        return "wmma tensor cores";
    case PATH_MMA_FP8:
        return "mma.sync e4m3 tensor cores";
    default:
        return "unknown";
    }
}

static int is_sticky(cudaError_t e)
{
    return e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure ||
           e == cudaErrorMisalignedAddress || e == cudaErrorAssert ||
           e == cudaErrorHardwareStackError || e == cudaErrorIllegalInstruction ||
           e == cudaErrorInvalidAddressSpace || e == cudaErrorInvalidPc ||
           e == cudaErrorLaunchTimeout || e == cudaErrorECCUncorrectable;
}

static void cuda_reason(struct run *rn, cudaError_t e, const char *what, char *out, size_t n)
{
    if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction)
        snprintf(out, n,
                 "no kernel image is available for execution on the device: built for %s, "
                 "this GPU is sm_%d",
                 KILN_SELFTEST_BUILT_FOR, rn->sm);
    else if (e == cudaErrorUnsupportedPtxVersion)
        snprintf(out, n,
                 "the provided PTX was compiled with an unsupported toolchain: the driver "
                 "(CUDA %d.%d) is older than the compiler that built it",
                 rn->driver_ver / 1000, (rn->driver_ver % 1000) / 10);
    else if (e == cudaErrorIllegalAddress)
        snprintf(out, n, "an illegal memory access was encountered (%s)", what);
    else
        snprintf(out, n, "%s (%s, in %s)", cudaGetErrorString(e), cudaGetErrorName(e), what);
    if (is_sticky(e)) rn->lost = 1;
}

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            cuda_reason(rn, e_, #call, r->reason, sizeof r->reason);                               \
            r->status = "fail";                                                                    \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

/* After a launch: configuration errors show at once, execution errors at
 * the synchronize. */
#define CKLAUNCH(what)                                                                             \
    do {                                                                                           \
        CK(cudaGetLastError());                                                                    \
        cudaError_t e2_ = cudaDeviceSynchronize();                                                 \
        if (e2_ != cudaSuccess) {                                                                  \
            cuda_reason(rn, e2_, what, r->reason, sizeof r->reason);                               \
            r->status = "fail";                                                                    \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

static uint64_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 11;
}

static float rng_unit(uint64_t *s) /* [-1, 1) */
{
    return (float)((double)(rng_next(s) & 0xffffff) / 8388608.0 - 1.0);
}

static struct result *new_result(struct run *rn, const char *name)
{
    struct result *r = &rn->res[rn->nres++];
    memset(r, 0, sizeof *r);
    r->name = name;
    r->status = "pass";
    r->path = "";
    r->tol_text = "";
    if (rn->lost) {
        r->status = "fail";
        snprintf(r->reason, sizeof r->reason,
                 "not run: the CUDA context was lost after an earlier kernel's error");
    }
    return r;
}

static float event_ms(cudaEvent_t a, cudaEvent_t b)
{
    float ms = 0.f;
    if (cudaEventElapsedTime(&ms, a, b) != cudaSuccess) return -1.f;
    return ms;
}

static void test_vadd(struct run *rn, cudaEvent_t e0, cudaEvent_t e1)
{
    struct result *r = new_result(rn, "vector_add");
    if (rn->lost) return;
    const int n = 1 << 22;
    size_t bytes = (size_t)n * sizeof(float);
    float *ha = (float *)malloc(bytes), *hb = (float *)malloc(bytes), *hc = (float *)malloc(bytes);
    float *da = NULL, *db = NULL, *dc = NULL;
    uint64_t seed = 1;
    r->tol_text = "0 (exact)";
    r->path = "simt";
    if (!ha || !hb || !hc) {
        r->status = "fail";
        snprintf(r->reason, sizeof r->reason, "out of host memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        ha[i] = rng_unit(&seed) * 100.f;
        hb[i] = rng_unit(&seed);
    }
    CK(cudaMalloc(&da, bytes));
    CK(cudaMalloc(&db, bytes));
    CK(cudaMalloc(&dc, bytes));
    CK(cudaMemcpy(da, ha, bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(db, hb, bytes, cudaMemcpyHostToDevice));
    vadd_kernel<<<(n + 255) / 256, 256>>>(da, db, dc, n);
    CKLAUNCH("vector_add kernel");
    CK(cudaEventRecord(e0));
    vadd_kernel<<<(n + 255) / 256, 256>>>(da, db, dc, n);
    CK(cudaEventRecord(e1));
    CKLAUNCH("vector_add kernel");
    r->ms = event_ms(e0, e1);
    CK(cudaMemcpy(hc, dc, bytes, cudaMemcpyDeviceToHost));
    {
        int bad = 0;
        for (int i = 0; i < n; i++) {
            float want = ha[i] + hb[i];
            double err = fabs((double)hc[i] - (double)want);
            if (err > r->max_err || isnan(hc[i])) r->max_err = isnan(hc[i]) ? INFINITY : err;
            if (hc[i] != want) bad++;
        }
        if (bad) {
            r->status = "fail";
            snprintf(r->reason, sizeof r->reason,
                     "%d of %d sums differ from the CPU reference (max error %.3g, tolerance 0)",
                     bad, n, r->max_err);
        }
    }
done:
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    free(ha);
    free(hb);
    free(hc);
}

static void test_reduce(struct run *rn, cudaEvent_t e0, cudaEvent_t e1)
{
    struct result *r = new_result(rn, "reduce_fp32");
    if (rn->lost) return;
    const int n = 1 << 24, blocks = 1024;
    size_t bytes = (size_t)n * sizeof(float);
    float *hx = (float *)malloc(bytes), hp[1024];
    float *dx = NULL, *dp = NULL;
    uint64_t seed = 2;
    double want = 0, got = 0;
    r->tol_text = "relative 1e-5";
    r->path = "simt";
    if (!hx) {
        r->status = "fail";
        snprintf(r->reason, sizeof r->reason, "out of host memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        hx[i] = (rng_unit(&seed) + 1.f) * 0.5f;
        want += hx[i];
    }
    CK(cudaMalloc(&dx, bytes));
    CK(cudaMalloc(&dp, blocks * sizeof(float)));
    CK(cudaMemcpy(dx, hx, bytes, cudaMemcpyHostToDevice));
    reduce_kernel<<<blocks, 256>>>(dx, n, dp);
    CKLAUNCH("reduce kernel");
    CK(cudaEventRecord(e0));
    reduce_kernel<<<blocks, 256>>>(dx, n, dp);
    CK(cudaEventRecord(e1));
    CKLAUNCH("reduce kernel");
    r->ms = event_ms(e0, e1);
    CK(cudaMemcpy(hp, dp, sizeof hp, cudaMemcpyDeviceToHost));
    for (int i = 0; i < blocks; i++)
        got += hp[i];
    r->max_err = fabs(got - want) / want;
    if (!(r->max_err <= 1e-5)) {
        r->status = "fail";
        snprintf(r->reason, sizeof r->reason,
                 "sum %.9g differs from the CPU's %.9g (relative %.3g "
                 "> 1e-5)",
                 got, want, r->max_err);
    }
done:
    cudaFree(dx);
    cudaFree(dp);
    free(hx);
}

template <typename T> static T host_cvt(float f);
template <> __half host_cvt<__half>(float f)
{
    return __float2half_rn(f);
}
template <> __nv_bfloat16 host_cvt<__nv_bfloat16>(float f)
{
    return __float2bfloat16_rn(f);
}
template <typename T> static float host_back(T v);
template <> float host_back<__half>(__half v)
{
    return __half2float(v);
}
template <> float host_back<__nv_bfloat16>(__nv_bfloat16 v)
{
    return __bfloat162float(v);
}

template <typename T>
static void test_gemm16(struct run *rn, const char *name, cudaEvent_t e0, cudaEvent_t e1)
{
    struct result *r = new_result(rn, name);
    if (rn->lost) return;
    const int M = 256, N = 256, K = 512;
    T *hA = (T *)malloc(sizeof(T) * M * K), *hB = (T *)malloc(sizeof(T) * N * K);
    float *hC = (float *)malloc(sizeof(float) * M * N);
    float *fA = (float *)malloc(sizeof(float) * M * K),
          *fB = (float *)malloc(sizeof(float) * N * K);
    T *dA = NULL, *dB = NULL;
    float *dC = NULL;
    int *dpath = NULL, hpath = 0;
    uint64_t seed = 3;
    r->tol_text = "2e-3 absolute (|C| ~ 10)";
    if (!hA || !hB || !hC || !fA || !fB) {
        r->status = "fail";
        snprintf(r->reason, sizeof r->reason, "out of host memory");
        goto done;
    }
    for (int i = 0; i < M * K; i++) {
        hA[i] = host_cvt<T>(rng_unit(&seed));
        fA[i] = host_back<T>(hA[i]);
    }
    for (int i = 0; i < N * K; i++) {
        hB[i] = host_cvt<T>(rng_unit(&seed));
        fB[i] = host_back<T>(hB[i]);
    }
    CK(cudaMalloc(&dA, sizeof(T) * M * K));
    CK(cudaMalloc(&dB, sizeof(T) * N * K));
    CK(cudaMalloc(&dC, sizeof(float) * M * N));
    CK(cudaMalloc(&dpath, sizeof(int)));
    CK(cudaMemset(dpath, 0, sizeof(int)));
    CK(cudaMemcpy(dA, hA, sizeof(T) * M * K, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dB, hB, sizeof(T) * N * K, cudaMemcpyHostToDevice));
    gemm16_kernel<T><<<dim3(N / 16, M / 16), 32>>>(dA, dB, dC, M, N, K, dpath);
    CKLAUNCH("gemm kernel");
    CK(cudaEventRecord(e0));
    gemm16_kernel<T><<<dim3(N / 16, M / 16), 32>>>(dA, dB, dC, M, N, K, dpath);
    CK(cudaEventRecord(e1));
    CKLAUNCH("gemm kernel");
    r->ms = event_ms(e0, e1);
    CK(cudaMemcpy(hC, dC, sizeof(float) * M * N, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(&hpath, dpath, sizeof(int), cudaMemcpyDeviceToHost));
    r->path = path_name(hpath);
    {
        int bad = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double want = 0;
                for (int k = 0; k < K; k++)
                    want += (double)fA[(size_t)i * K + k] * (double)fB[(size_t)j * K + k];
                double err = fabs((double)hC[(size_t)i * N + j] - want);
                if (isnan(hC[(size_t)i * N + j])) err = INFINITY;
                if (err > r->max_err) r->max_err = err;
                if (!(err <= 2e-3)) bad++;
            }
        if (bad) {
            r->status = "fail";
            snprintf(r->reason, sizeof r->reason,
                     "%d of %d outputs exceed the tolerance 2e-3 (max error %.3g)", bad, M * N,
                     r->max_err);
        }
    }
done:
    cudaFree(dA);
    cudaFree(dB);
    cudaFree(dC);
    cudaFree(dpath);
    free(hA);
    free(hB);
    free(hC);
    free(fA);
    free(fB);
}

/* Nearest e4m3 code to f (CPU side, by search: 256 codes). */
static uint8_t e4m3_encode(float f)
{
    uint8_t best = 0;
    float bd = INFINITY;
    for (int c = 0; c < 256; c++) {
        float v = e4m3_to_float((uint8_t)c);
        if (isnan(v)) continue;
        float d = fabsf(v - f);
        if (d < bd) {
            bd = d;
            best = (uint8_t)c;
        }
    }
    return best;
}

static void test_gemm_fp8(struct run *rn, cudaEvent_t e0, cudaEvent_t e1)
{
    struct result *r = new_result(rn, "gemm_fp8_e4m3");
    if (rn->lost) return;
    if (rn->sm < 89) {
        r->status = "skip";
        snprintf(r->reason, sizeof r->reason, "fp8 tensor cores need sm_89 or newer");
        return;
    }
    const int M = 256, N = 256, K = 512;
    uint8_t *hA = (uint8_t *)malloc((size_t)M * K), *hB = (uint8_t *)malloc((size_t)N * K);
    float *hC = (float *)malloc(sizeof(float) * M * N);
    uint8_t *dA = NULL, *dB = NULL;
    float *dC = NULL;
    int *dpath = NULL, hpath = 0;
    uint64_t seed = 4;
    float table[256];
    r->tol_text = "2% of sum|a*b| per output";
    if (!hA || !hB || !hC) {
        r->status = "fail";
        snprintf(r->reason, sizeof r->reason, "out of host memory");
        goto done;
    }
    for (int c = 0; c < 256; c++)
        table[c] = e4m3_to_float((uint8_t)c);
    for (int i = 0; i < M * K; i++)
        hA[i] = e4m3_encode(rng_unit(&seed) * 2.f);
    for (int i = 0; i < N * K; i++)
        hB[i] = e4m3_encode(rng_unit(&seed) * 2.f);
    CK(cudaMalloc(&dA, (size_t)M * K));
    CK(cudaMalloc(&dB, (size_t)N * K));
    CK(cudaMalloc(&dC, sizeof(float) * M * N));
    CK(cudaMalloc(&dpath, sizeof(int)));
    CK(cudaMemset(dpath, 0, sizeof(int)));
    CK(cudaMemcpy(dA, hA, (size_t)M * K, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dB, hB, (size_t)N * K, cudaMemcpyHostToDevice));
    gemm_fp8_kernel<<<dim3(N / 8, M / 16), 32>>>(dA, dB, dC, M, N, K, dpath);
    CKLAUNCH("fp8 gemm kernel");
    CK(cudaEventRecord(e0));
    gemm_fp8_kernel<<<dim3(N / 8, M / 16), 32>>>(dA, dB, dC, M, N, K, dpath);
    CK(cudaEventRecord(e1));
    CKLAUNCH("fp8 gemm kernel");
    r->ms = event_ms(e0, e1);
    CK(cudaMemcpy(hC, dC, sizeof(float) * M * N, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(&hpath, dpath, sizeof(int), cudaMemcpyDeviceToHost));
    r->path = path_name(hpath);
    {
        int bad = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double want = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    double p = (double)table[hA[(size_t)i * K + k]] * table[hB[(size_t)j * K + k]];
                    want += p;
                    mag += fabs(p);
                }
                double err = fabs((double)hC[(size_t)i * N + j] - want);
                if (isnan(hC[(size_t)i * N + j])) err = INFINITY;
                if (err > r->max_err) r->max_err = err;
                if (!(err <= 0.02 * mag + 1e-6)) bad++;
            }
        if (bad) {
            r->status = "fail";
            snprintf(r->reason, sizeof r->reason,
                     "%d of %d outputs exceed 2%% of sum|a*b| (max error %.3g)", bad, M * N,
                     r->max_err);
        }
    }
done:
    cudaFree(dA);
    cudaFree(dB);
    cudaFree(dC);
    cudaFree(dpath);
    free(hA);
    free(hB);
    free(hC);
}

static void test_bandwidth(struct run *rn, cudaEvent_t e0, cudaEvent_t e1)
{
    struct result *r = new_result(rn, "d2d_bandwidth");
    if (rn->lost) return;
    const size_t bytes = (size_t)256 << 20;
    const int iters = 10;
    unsigned char *src = NULL, *dst = NULL, probe[4096];
    r->tol_text = "";
    r->path = "cudaMemcpy device-to-device";
    CK(cudaMalloc(&src, bytes));
    CK(cudaMalloc(&dst, bytes));
    CK(cudaMemset(src, 0x5a, bytes));
    CK(cudaMemset(dst, 0, bytes));
    CK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice)); /* warm-up */
    CK(cudaDeviceSynchronize());
    CK(cudaEventRecord(e0));
    for (int i = 0; i < iters; i++)
        CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice));
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    r->ms = event_ms(e0, e1);
    CK(cudaMemcpy(probe, dst + bytes - sizeof probe, sizeof probe, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < sizeof probe; i++)
        if (probe[i] != 0x5a) {
            r->status = "fail";
            snprintf(r->reason, sizeof r->reason, "the copied data is wrong at byte %zu",
                     bytes - sizeof probe + i);
            goto done;
        }
    /* Bytes read plus bytes written, the usual way to state copy bandwidth. */
    r->figure = r->ms > 0 ? 2.0 * (double)bytes * iters / (r->ms / 1e3) / 1e9 : 0;
    if (r->figure < rn->min_bw) {
        r->status = "fail";
        snprintf(r->reason, sizeof r->reason,
                 "device-to-device copy ran at %.1f GB/s, below the sanity minimum %.1f GB/s",
                 r->figure, rn->min_bw);
    }
done:
    cudaFree(src);
    cudaFree(dst);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

static void write_json(FILE *f, const struct run *rn, int ok, double secs, const char *fatal)
{
    fputs("{\"tool\":\"kiln-selftest\",\"version\":1,\"built_for\":", f);
    json_str(f, KILN_SELFTEST_BUILT_FOR);
    fprintf(f, ",\"planted_wrong\":%s,\"ok\":%s,\"seconds\":",
            KILN_SELFTEST_PLANT_WRONG ? "true" : "false", ok ? "true" : "false");
    json_num(f, secs);
    if (fatal) {
        fputs(",\"error\":", f);
        json_str(f, fatal);
    }
    fprintf(f, ",\"gpu\":{\"index\":%d,\"name\":", rn->dev);
    json_str(f, rn->gpu);
    fprintf(f, ",\"sm\":%d,\"cuda_driver\":\"%d.%d\",\"cuda_runtime\":\"%d.%d\"},\"kernels\":[",
            rn->sm, rn->driver_ver / 1000, (rn->driver_ver % 1000) / 10, rn->runtime_ver / 1000,
            (rn->runtime_ver % 1000) / 10);
    for (int i = 0; i < rn->nres; i++) {
        const struct result *r = &rn->res[i];
        fprintf(f, "%s{\"name\":", i ? "," : "");
        json_str(f, r->name);
        fputs(",\"status\":", f);
        json_str(f, r->status);
        fputs(",\"max_error\":", f);
        json_num(f, r->max_err);
        fputs(",\"tolerance\":", f);
        json_str(f, r->tol_text);
        fputs(",\"ms\":", f);
        json_num(f, r->ms);
        fputs(",\"path\":", f);
        json_str(f, r->path);
        if (strcmp(r->name, "d2d_bandwidth") == 0) {
            fputs(",\"gbps\":", f);
            json_num(f, r->figure);
            fputs(",\"min_gbps\":", f);
            json_num(f, rn->min_bw);
        }
        fputs(",\"reason\":", f);
        if (r->reason[0])
            json_str(f, r->reason);
        else
            fputs("null", f);
        fputc('}', f);
    }
    fputs("]}\n", f);
}

static void write_table(FILE *f, const struct run *rn, int ok, double secs)
{
    fprintf(f, "kiln-selftest: GPU %d %s (sm_%d), CUDA driver %d.%d, built for %s%s\n", rn->dev,
            rn->gpu, rn->sm, rn->driver_ver / 1000, (rn->driver_ver % 1000) / 10,
            KILN_SELFTEST_BUILT_FOR, KILN_SELFTEST_PLANT_WRONG ? " [PLANTED WRONG KERNEL]" : "");
    fprintf(f, "%-15s %-6s %-11s %-26s %9s  %s\n", "kernel", "result", "max_error", "tolerance",
            "time_ms", "path / reason");
    int np = 0, nf = 0, ns = 0;
    for (int i = 0; i < rn->nres; i++) {
        const struct result *r = &rn->res[i];
        char extra[512];
        if (strcmp(r->name, "d2d_bandwidth") == 0 && r->figure > 0)
            snprintf(extra, sizeof extra, "%.1f GB/s (min %.0f)%s%s", r->figure, rn->min_bw,
                     r->reason[0] ? ": " : "", r->reason);
        else
            snprintf(extra, sizeof extra, "%s%s%s", r->path, r->reason[0] && r->path[0] ? ": " : "",
                     r->reason);
        fprintf(f, "%-15s %-6s %-11.3g %-26s %9.3f  %s\n", r->name,
                strcmp(r->status, "pass") == 0   ? "PASS"
                : strcmp(r->status, "skip") == 0 ? "SKIP"
                                                 : "FAIL",
                r->max_err, r->tol_text, r->ms, extra);
        np += strcmp(r->status, "pass") == 0;
        nf += strcmp(r->status, "fail") == 0;
        ns += strcmp(r->status, "skip") == 0;
    }
    fprintf(f, "overall: %s (%d passed, %d failed, %d skipped) in %.2f s\n", ok ? "PASS" : "FAIL",
            np, nf, ns, secs);
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kiln-selftest [--json] [--json-file PATH] [--device N] [--min-bw GBPS]\n"
            "Runs GPU smoke kernels against CPU references (built for %s).\n"
            "Exit: 0 all passed, 1 a kernel failed, 2 usage, 3 no usable GPU.\n",
            KILN_SELFTEST_BUILT_FOR);
}

int main(int argc, char **argv)
{
    int json = 0;
    const char *json_file = NULL;
    static struct run rn_storage;
    struct run *rn = &rn_storage;
    memset(rn, 0, sizeof *rn);
    rn->min_bw = 100.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--json-file") == 0 && i + 1 < argc) {
            json_file = argv[++i];
        } else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 1024) {
                fprintf(stderr, "kiln-selftest: bad --device \"%s\"\n", argv[i]);
                return 2;
            }
            rn->dev = (int)v;
        } else if (strcmp(argv[i], "--min-bw") == 0 && i + 1 < argc) {
            char *end;
            rn->min_bw = strtod(argv[++i], &end);
            if (*end || !(rn->min_bw >= 0)) {
                fprintf(stderr, "kiln-selftest: bad --min-bw \"%s\"\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "kiln-selftest: unknown argument \"%s\"\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    double t0 = wall_s();
    snprintf(rn->gpu, sizeof rn->gpu, "none");
    cudaDriverGetVersion(&rn->driver_ver);
    cudaRuntimeGetVersion(&rn->runtime_ver);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    char fatal[320] = "";
    if (e != cudaSuccess || count == 0)
        snprintf(fatal, sizeof fatal, "no usable CUDA GPU: %s",
                 e != cudaSuccess ? cudaGetErrorString(e) : "no device found");
    else if (rn->dev >= count)
        snprintf(fatal, sizeof fatal, "no CUDA GPU %d (this host has %d)", rn->dev, count);
    cudaDeviceProp prop;
    if (!fatal[0]) {
        e = cudaSetDevice(rn->dev);
        if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, rn->dev);
        if (e != cudaSuccess)
            snprintf(fatal, sizeof fatal, "cannot open CUDA GPU %d: %s", rn->dev,
                     cudaGetErrorString(e));
    }
    if (fatal[0]) {
        if (json)
            write_json(stdout, rn, 0, wall_s() - t0, fatal);
        else
            fprintf(stderr, "kiln-selftest: %s\n", fatal);
        if (json_file) {
            FILE *f = fopen(json_file, "w");
            if (f) {
                write_json(f, rn, 0, wall_s() - t0, fatal);
                fclose(f);
            }
        }
        return 3;
    }
    snprintf(rn->gpu, sizeof rn->gpu, "%s", prop.name);
    rn->sm = prop.major * 10 + prop.minor;
    cudaEvent_t e0, e1;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
        fprintf(stderr, "kiln-selftest: cannot create CUDA events\n");
        return 3;
    }
    test_vadd(rn, e0, e1);
    test_reduce(rn, e0, e1);
    test_gemm16<__half>(rn, "gemm_fp16", e0, e1);
    test_gemm16<__nv_bfloat16>(rn, "gemm_bf16", e0, e1);
    test_gemm_fp8(rn, e0, e1);
    test_bandwidth(rn, e0, e1);
    int ok = 1;
    for (int i = 0; i < rn->nres; i++)
        if (strcmp(rn->res[i].status, "fail") == 0) ok = 0;
    double secs = wall_s() - t0;
    if (json)
        write_json(stdout, rn, ok, secs, NULL);
    else
        write_table(stdout, rn, ok, secs);
    if (json_file) {
        FILE *f = fopen(json_file, "w");
        if (!f || (write_json(f, rn, ok, secs, NULL), fclose(f) != 0)) {
            fprintf(stderr, "kiln-selftest: cannot write %s\n", json_file);
            return 1;
        }
    }
    return ok ? 0 : 1;
}
