/* hostcheck.h - does this host suit a variant's selftest?
 *
 * Contract: pure decisions on facts passed in (GPU SMs, driver version, CPU
 * ISA feature bits from common/isa.h), so it is testable without a GPU.
 * Detecting the facts is the worker's job (workers/detect.c); the CLI
 * helpers below read them from nvidia-smi CSV and /proc/cpuinfo text.
 *
 * kiln_hostcheck() returns KILN_OK when at least one GPU has the wanted SM
 * (exactly, or binary-compatible: same major, minor >= wanted, when
 * allow_compatible is set), the driver is >= the minimum, and the CPU has
 * every feature of the ISA level; otherwise KILN_ECONFLICT with every
 * reason, one sentence each, joined by "; " in err->msg.
 */
#ifndef KILN_HOSTCHECK_H
#define KILN_HOSTCHECK_H

#include "common/err.h"

#include <stddef.h>
#include <stdint.h>

#define KILN_HOST_MAX_GPUS 64

struct kiln_host_facts {
    unsigned gpu_sm[KILN_HOST_MAX_GPUS];
    size_t ngpu;
    unsigned driver_major, driver_minor; /* 580.65.06 -> 580, 65 */
    int have_driver;
    uint32_t cpu_isa; /* KILN_ISA_* bits */
};

struct kiln_host_need {
    unsigned sm;           /* 0: no GPU needed */
    int allow_compatible;  /* accept same-major, higher-minor SMs */
    unsigned driver_min;   /* major driver version, 0: any */
    const char *isa_level; /* "avx512" etc., NULL: none */
};

int kiln_hostcheck(const struct kiln_host_facts *h, const struct kiln_host_need *n,
                   struct kiln_error *err);

/* "580.65.06" or "580" -> major/minor. */
int kiln_hostcheck_parse_driver(const char *s, unsigned *major, unsigned *minor);

/* Lines of `nvidia-smi --query-gpu=compute_cap,driver_version
 * --format=csv,noheader` ("9.0, 580.65.06") into facts (appends GPUs). */
int kiln_hostcheck_parse_smi_csv(const char *text, size_t len, struct kiln_host_facts *h,
                                 struct kiln_error *err);

/* The "flags" (x86) or "Features" (arm) line of /proc/cpuinfo text into ISA
 * bits; unknown feature names are ignored. */
uint32_t kiln_hostcheck_parse_cpuinfo(const char *text, size_t len);

#endif
