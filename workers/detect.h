/* detect.h - what this host truthfully offers: cores, RAM, platform, CPU ISA
 * features and GPUs.
 *
 * Contract:
 * - kiln_detect_host() fills a struct kiln_host from the running system:
 *   cores = CPUs in sched_getaffinity, lowered by a cgroup CPU quota (v2
 *   cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us, rounded down, at
 *   least 1); ram = MemTotal lowered by a cgroup memory limit (v2 memory.max,
 *   v1 memory.limit_in_bytes); ISA features by cpuid + XGETBV on x86_64
 *   (AVX-512 only counts when the OS saves ZMM state) and by
 *   getauxval(AT_HWCAP/AT_HWCAP2) (else /proc/cpuinfo) on aarch64; GPUs
 *   through NVML loaded with dlopen("libnvidia-ml.so.1"), else nvidia-smi,
 *   else none (gpu_note says so plainly).
 * - The parsers below take text, so they are tested on fixture files; they
 *   never crash on bad input and return KILN_EPARSE with a sentence.
 * - Overrides from the worker config are applied by the caller
 *   (workers/config.h kiln_worker_config_apply()).
 */
#ifndef KILN_WORKERS_DETECT_H
#define KILN_WORKERS_DETECT_H

#include "common/err.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define KILN_MAX_GPUS 16

struct kiln_gpu {
    int index;
    char name[128];
    char sm[16]; /* compute capability without the dot: "90", "61", "100" */
    long memory_mb;
    char driver[64];
};

struct kiln_host {
    char hostname[256];
    char platform[80]; /* "x86_64-linux" | "aarch64-linux" | "<machine>-linux" */
    int cores;         /* usable cores (affinity and quota applied) */
    int cores_online;  /* CPUs in the affinity mask */
    double cpu_quota;  /* cgroup quota in CPUs, 0 = none */
    long ram_mb;       /* usable RAM (cgroup limit applied) */
    long mem_total_mb; /* MemTotal */
    long ram_limit_mb; /* cgroup memory limit, 0 = none */
    uint32_t isa;      /* KILN_ISA_* bits */
    int ngpus;
    struct kiln_gpu gpus[KILN_MAX_GPUS];
    char gpu_source[32]; /* "nvml", "nvidia-smi", "config", "none" */
    char gpu_note[256];  /* plain sentence: why no GPU, or what was found */
};

struct kiln_detect_opts {
    const char *proc_root;   /* "" or NULL = "/proc" (tests point to fixtures) */
    const char *cgroup_root; /* NULL = "/sys/fs/cgroup" */
    const char *smi_command; /* NULL = "nvidia-smi" */
    int skip_gpus;           /* 1: do not probe GPUs */
};

int kiln_detect_host(struct kiln_host *h, const struct kiln_detect_opts *opts,
                     struct kiln_error *err);

/* "MemTotal:  263941312 kB" line of /proc/meminfo -> bytes. */
int kiln_detect_parse_meminfo(const char *text, size_t len, uint64_t *total_bytes,
                              struct kiln_error *err);
/* /proc/cpuinfo: x86 "flags" or aarch64 "Features" lines -> ISA bits (of the
 * first CPU; the features of every CPU are the same on the hosts we target),
 * and the CPU count (processor lines). */
int kiln_detect_parse_cpuinfo(const char *text, size_t len, uint32_t *isa, int *ncpu,
                              struct kiln_error *err);
/* cgroup v2 cpu.max ("max 100000" or "200000 100000") -> CPUs (0 = none). */
int kiln_detect_parse_cpu_max(const char *text, double *cpus, struct kiln_error *err);
/* cgroup v1 cpu.cfs_quota_us + cpu.cfs_period_us -> CPUs (0 = none). */
int kiln_detect_parse_cfs(const char *quota, const char *period, double *cpus,
                          struct kiln_error *err);
/* v2 memory.max ("max" or bytes) or v1 memory.limit_in_bytes (bytes; values
 * near 2^63 mean none) -> bytes, 0 = no limit. */
int kiln_detect_parse_mem_limit(const char *text, uint64_t *bytes, struct kiln_error *err);
/* /proc/self/cgroup -> the path of a v1 controller ("memory", "cpu") or of
 * the v2 unified hierarchy (controller "" ) into out. KILN_ENOTFOUND if absent. */
int kiln_detect_parse_proc_cgroup(const char *text, const char *controller, char *out,
                                  size_t outlen);
/* nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version
 * --format=csv,noheader,nounits output -> gpus (at most max). */
int kiln_detect_parse_smi_csv(const char *text, size_t len, struct kiln_gpu *gpus, int max, int *n,
                              struct kiln_error *err);

/* x86_64 only: cpuid + xgetbv. Returns 0 bits elsewhere. */
uint32_t kiln_detect_cpuid_isa(void);

/* GPU probes (exposed for tests and the CLI). */
int kiln_detect_gpus_nvml(struct kiln_gpu *gpus, int max, int *n, struct kiln_error *err);
int kiln_detect_gpus_smi(const char *smi_command, struct kiln_gpu *gpus, int max, int *n,
                         struct kiln_error *err);

/* The host as JSON (register body fields: name, cores, ram_mb, platform,
 * isa_features, isa_levels, gpus, plus detection details). New reference. */
json_t *kiln_host_to_json(const struct kiln_host *h);
/* Human-readable multi-line summary into out. */
int kiln_host_describe(const struct kiln_host *h, char *out, size_t outlen);

#endif
