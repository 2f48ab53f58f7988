// Demo kernels for recipes/demo.yaml: small on purpose, so that one
// per-SM compile takes about a second. kernels-selftest/ has the real
// smoke kernels; this file only has to produce a cubin per SM.
__global__ void demo_saxpy(int n, float a, const float *x, float *y)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}

__global__ void demo_reduce(int n, const float *x, float *out)
{
    __shared__ float buf[256];
    int t = threadIdx.x;
    float s = 0.0f;
    for (int i = blockIdx.x * blockDim.x + t; i < n; i += blockDim.x * gridDim.x)
        s += x[i];
    buf[t] = s;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if (t < w) buf[t] += buf[t + w];
        __syncthreads();
    }
    if (t == 0) atomicAdd(out, buf[0]);
}
