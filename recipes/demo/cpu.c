/* The demo recipe's CPU-only variants (sm: cpu): the same two kernels as
 * kernel.cu, a vector add and a sum, on the host, compiled with the
 * variant's ISA flags. The program checks its own results, so the test
 * stage's "runs" check proves the built binary works on the test host:
 * it prints "demo-cpu ok ..." and exits 0, or says what is wrong and
 * exits 1. vadd_kernel and reduce_kernel are external so that the
 * selftest's symbol inspection finds them in the ELF. */
#include <stdio.h>

#define N 4096

void vadd_kernel(int n, float a, const float *x, float *y)
{
    for (int i = 0; i < n; i++)
        y[i] = a * x[i] + y[i];
}

double reduce_kernel(int n, const float *x)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += x[i];
    return s;
}

int main(void)
{
    static float x[N], y[N];
    for (int i = 0; i < N; i++) {
        x[i] = (float)i;
        y[i] = 1.0f;
    }
    vadd_kernel(N, 2.0f, x, y);
    for (int i = 0; i < N; i++) {
        if (y[i] != 2.0f * (float)i + 1.0f) {
            printf("demo-cpu FAIL: y[%d] = %g, want %g\n", i, y[i], 2.0 * i + 1.0);
            return 1;
        }
    }
    /* sum of 2i+1 for i < N is N^2, exact in double */
    double s = reduce_kernel(N, y), want = (double)N * N;
    if (s != want) {
        printf("demo-cpu FAIL: sum %.0f, want %.0f\n", s, want);
        return 1;
    }
    printf("demo-cpu ok: vadd and reduce of %d floats, built for %s\n", N, DEMO_ISA);
    return 0;
}
