/* libFuzzer target for kernels-selftest/hostcheck and checks text parsers:
 * nvidia-smi CSV, /proc/cpuinfo, driver versions, CUDA error text. */
#include "kernels-selftest/checks.h"
#include "kernels-selftest/hostcheck.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = 0;
    struct kiln_host_facts h;
    memset(&h, 0, sizeof h);
    struct kiln_error err;
    kiln_hostcheck_parse_smi_csv(s, size, &h, &err);
    h.cpu_isa = kiln_hostcheck_parse_cpuinfo(s, size);
    unsigned maj, min;
    kiln_hostcheck_parse_driver(s, &maj, &min);
    struct kiln_host_need n = {90, 1, 560, "avx512"};
    kiln_hostcheck(&h, &n, &err);
    char reason[KILN_CHECK_REASON_MAX];
    kiln_check_classify(s, size, reason, sizeof reason);
    free(s);
    return 0;
}
