/* detect.c - host detection: cores, RAM, platform, ISA, GPUs.
 *
 * Why parsers take text: every host in the farm differs (Skylake to Sapphire
 * Rapids, Altra, Grace, P40 to B200) and only this x86 box without a GPU is
 * at hand, so each source is parsed from a string that tests feed from
 * fixtures, and the syscalls stay thin. */
#include "workers/detect.h"

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/isa.h"
#include "common/spawn.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

#define SMALL_FILE_MAX (4u << 20)

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

int kiln_detect_parse_meminfo(const char *text, size_t len, uint64_t *total_bytes,
                              struct kiln_error *err)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if ((size_t)(le - p) > 9 && !memcmp(p, "MemTotal:", 9)) {
            const char *q = skip_ws(p + 9, le);
            uint64_t v = 0;
            int digits = 0;
            while (q < le && isdigit((unsigned char)*q)) {
                if (v > UINT64_MAX / 10 - 10)
                    return kiln_fail(err, KILN_EPARSE, "MemTotal is too large");
                v = v * 10 + (uint64_t)(*q - '0');
                q++;
                digits++;
            }
            if (!digits) return kiln_fail(err, KILN_EPARSE, "MemTotal has no number");
            q = skip_ws(q, le);
            uint64_t mul = 1;
            if (le - q >= 2 && (q[0] == 'k' || q[0] == 'K') && q[1] == 'B') mul = 1024;
            if (v > UINT64_MAX / mul) return kiln_fail(err, KILN_EPARSE, "MemTotal is too large");
            *total_bytes = v * mul;
            return KILN_OK;
        }
        p = le + 1;
    }
    return kiln_fail(err, KILN_EPARSE, "no MemTotal line in meminfo");
}

/* Adds the known features named on one "flags"/"Features" value to *isa;
 * allowed limits the bits to the platform the line belongs to. */
static void add_feature_words(const char *p, const char *end, uint32_t allowed, uint32_t *isa)
{
    char word[64];
    while (p < end) {
        p = skip_ws(p, end);
        const char *w = p;
        while (p < end && *p != ' ' && *p != '\t' && *p != '\r')
            p++;
        size_t n = (size_t)(p - w);
        if (n && n < sizeof word) {
            memcpy(word, w, n);
            word[n] = '\0';
            uint32_t b = kiln_isa_feature(word);
            if (b & allowed) *isa |= b;
        }
        if (p < end && *p == '\r') p++;
    }
}

int kiln_detect_parse_cpuinfo(const char *text, size_t len, uint32_t *isa, int *ncpu,
                              struct kiln_error *err)
{
    const char *p = text, *end = text + len;
    uint32_t bits = 0;
    int cpus = 0, seen_flags = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon) {
            const char *k = p, *ke = colon;
            while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
                ke--;
            size_t kl = (size_t)(ke - k);
            if (kl == 9 && !memcmp(k, "processor", 9)) {
                cpus++;
            } else if (!seen_flags && kl == 5 && !memcmp(k, "flags", 5)) {
                add_feature_words(colon + 1, le, 0xffffu, &bits);
                seen_flags = 1;
            } else if (!seen_flags && kl == 8 && !memcmp(k, "Features", 8)) {
                add_feature_words(colon + 1, le, 0xffff0000u, &bits);
                seen_flags = 1;
            }
        }
        p = le + 1;
    }
    if (!seen_flags && !cpus)
        return kiln_fail(err, KILN_EPARSE,
                         "cpuinfo has neither processor nor flags/Features lines");
    *isa = bits;
    if (ncpu) *ncpu = cpus;
    return KILN_OK;
}

static int parse_i64(const char *s, const char **endp, long long *out)
{
    errno = 0;
    char *e;
    long long v = strtoll(s, &e, 10);
    if (e == s || errno) return KILN_EPARSE;
    *out = v;
    if (endp) *endp = e;
    return KILN_OK;
}

int kiln_detect_parse_cpu_max(const char *text, double *cpus, struct kiln_error *err)
{
    const char *p = text;
    while (*p == ' ' || *p == '\t')
        p++;
    long long quota, period = 100000;
    if (!strncmp(p, "max", 3)) {
        *cpus = 0;
        return KILN_OK;
    }
    const char *e;
    if (parse_i64(p, &e, &quota) || quota <= 0)
        return kiln_fail(err, KILN_EPARSE, "cpu.max: expected \"max\" or a quota, got \"%.40s\"",
                         text);
    while (*e == ' ' || *e == '\t')
        e++;
    if (*e && *e != '\n' && (parse_i64(e, NULL, &period) || period <= 0))
        return kiln_fail(err, KILN_EPARSE, "cpu.max: bad period in \"%.40s\"", text);
    *cpus = (double)quota / (double)period;
    return KILN_OK;
}

int kiln_detect_parse_cfs(const char *quota, const char *period, double *cpus,
                          struct kiln_error *err)
{
    long long q, pe;
    if (parse_i64(quota, NULL, &q))
        return kiln_fail(err, KILN_EPARSE, "cpu.cfs_quota_us is not a number: \"%.40s\"", quota);
    if (q <= 0) {
        *cpus = 0;
        return KILN_OK;
    }
    if (parse_i64(period, NULL, &pe) || pe <= 0)
        return kiln_fail(err, KILN_EPARSE, "cpu.cfs_period_us is not a positive number: \"%.40s\"",
                         period);
    *cpus = (double)q / (double)pe;
    return KILN_OK;
}

int kiln_detect_parse_mem_limit(const char *text, uint64_t *bytes, struct kiln_error *err)
{
    const char *p = text;
    while (*p == ' ' || *p == '\t')
        p++;
    if (!strncmp(p, "max", 3)) {
        *bytes = 0;
        return KILN_OK;
    }
    errno = 0;
    char *e;
    if (*p == '-') return kiln_fail(err, KILN_EPARSE, "memory limit is negative: \"%.40s\"", text);
    unsigned long long v = strtoull(p, &e, 10);
    if (e == p || errno)
        return kiln_fail(err, KILN_EPARSE, "memory limit is not a number: \"%.40s\"", text);
    /* v1 reports "no limit" as PAGE_COUNTER_MAX pages, just under 2^63. */
    *bytes = v >= (1ull << 62) ? 0 : (uint64_t)v;
    return KILN_OK;
}

int kiln_detect_parse_proc_cgroup(const char *text, const char *controller, char *out,
                                  size_t outlen)
{
    const char *p = text;
    size_t cl = strlen(controller);
    while (*p) {
        const char *le = strchr(p, '\n');
        if (!le) le = p + strlen(p);
        /* "hierarchy-id:controller-list:path" */
        const char *c1 = memchr(p, ':', (size_t)(le - p));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(le - c1 - 1)) : NULL;
        if (c2) {
            const char *list = c1 + 1;
            int match = 0;
            if (!cl) {
                match = (c2 == list && c1 - p == 1 && p[0] == '0');
            } else {
                const char *w = list;
                while (w < c2) {
                    const char *we = memchr(w, ',', (size_t)(c2 - w));
                    if (!we) we = c2;
                    if ((size_t)(we - w) == cl && !memcmp(w, controller, cl)) match = 1;
                    w = we + 1;
                }
            }
            if (match) {
                size_t n = (size_t)(le - c2 - 1);
                if (n + 1 > outlen) return KILN_ELIMIT;
                memcpy(out, c2 + 1, n);
                out[n] = '\0';
                return KILN_OK;
            }
        }
        p = *le ? le + 1 : le;
    }
    return KILN_ENOTFOUND;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    size_t i = 0;
    while (s[i] && isspace((unsigned char)s[i]))
        i++;
    if (i) memmove(s, s + i, n - i + 1);
}

int kiln_detect_parse_smi_csv(const char *text, size_t len, struct kiln_gpu *gpus, int max, int *n,
                              struct kiln_error *err)
{
    const char *p = text, *end = text + len;
    int count = 0, lineno = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        lineno++;
        char line[512];
        size_t ll = (size_t)(le - p);
        if (ll >= sizeof line)
            return kiln_fail(err, KILN_EPARSE, "nvidia-smi line %d is too long", lineno);
        memcpy(line, p, ll);
        line[ll] = '\0';
        p = le + 1;
        trim(line);
        if (!line[0]) continue;
        char *fields[5];
        int nf = 0;
        char *s = line;
        while (nf < 5) {
            fields[nf++] = s;
            char *c = strchr(s, ',');
            if (!c) break;
            *c = '\0';
            s = c + 1;
        }
        if (nf != 5 || strchr(fields[4], ','))
            return kiln_fail(err, KILN_EPARSE,
                             "nvidia-smi line %d: expected 5 fields "
                             "(index, name, compute_cap, memory.total, driver_version)",
                             lineno);
        for (int i = 0; i < 5; i++)
            trim(fields[i]);
        if (count >= max)
            return kiln_fail(err, KILN_ELIMIT, "more than %d GPUs reported by nvidia-smi", max);
        struct kiln_gpu *g = &gpus[count];
        memset(g, 0, sizeof *g);
        long long idx;
        const char *e;
        if (parse_i64(fields[0], &e, &idx) || *e || idx < 0 || idx > 1024)
            return kiln_fail(err, KILN_EPARSE, "nvidia-smi line %d: bad GPU index \"%.20s\"",
                             lineno, fields[0]);
        g->index = (int)idx;
        snprintf(g->name, sizeof g->name, "%s", fields[1]);
        /* "9.0" -> "90", "12.0" -> "120" */
        const char *cc = fields[2];
        const char *dot = strchr(cc, '.');
        size_t majl = dot ? (size_t)(dot - cc) : 0;
        if (!dot || majl == 0 || majl > 2 || strlen(dot + 1) != 1 ||
            !isdigit((unsigned char)dot[1]))
            return kiln_fail(err, KILN_EPARSE,
                             "nvidia-smi line %d: bad compute capability \"%.20s\" "
                             "(this nvidia-smi may be too old for compute_cap)",
                             lineno, cc);
        for (size_t i = 0; i < majl; i++)
            if (!isdigit((unsigned char)cc[i]))
                return kiln_fail(err, KILN_EPARSE,
                                 "nvidia-smi line %d: bad compute capability \"%.20s\"", lineno,
                                 cc);
        snprintf(g->sm, sizeof g->sm, "%.*s%c", (int)majl, cc, dot[1]);
        long long mem;
        if (parse_i64(fields[3], &e, &mem) || *e || mem < 0)
            g->memory_mb = 0; /* "[N/A]" on some boards; not fatal */
        else
            g->memory_mb = (long)mem;
        snprintf(g->driver, sizeof g->driver, "%s", fields[4]);
        count++;
    }
    *n = count;
    return KILN_OK;
}

uint32_t kiln_detect_cpuid_isa(void)
{
    uint32_t f = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1;
    int avx_hw = (c >> 28) & 1;
    unsigned long long xcr0 = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    /* The OS must save XMM+YMM (bits 1,2) for AVX and opmask+ZMM (5,6,7)
     * for AVX-512, or using them corrupts state across context switches. */
    int os_avx = (xcr0 & 0x6) == 0x6;
    int os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
    if (!(avx_hw && os_avx)) return 0;
    f |= KILN_ISA_AVX;
    if ((c >> 12) & 1) f |= KILN_ISA_FMA;
    if ((c >> 29) & 1) f |= KILN_ISA_F16C;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        unsigned sub_max = a;
        if ((b >> 5) & 1) f |= KILN_ISA_AVX2;
        if (os_avx512) {
            if ((b >> 16) & 1) f |= KILN_ISA_AVX512F;
            if ((b >> 17) & 1) f |= KILN_ISA_AVX512DQ;
            if ((b >> 30) & 1) f |= KILN_ISA_AVX512BW;
            if ((b >> 31) & 1) f |= KILN_ISA_AVX512VL;
            if ((c >> 11) & 1) f |= KILN_ISA_AVX512_VNNI;
            if (sub_max >= 1) {
                __cpuid_count(7, 1, a, b, c, d);
                if ((a >> 5) & 1) f |= KILN_ISA_AVX512_BF16;
            }
        }
    }
#endif
    return f;
}

#if defined(__aarch64__)
static uint32_t hwcap_isa(void)
{
    /* Bit numbers from the kernel's arch/arm64/include/uapi/asm/hwcap.h. */
    unsigned long h1 = getauxval(AT_HWCAP), h2 = getauxval(AT_HWCAP2);
    uint32_t f = 0;
    if (h1 & (1ul << 9)) f |= KILN_ISA_FPHP;
    if (h1 & (1ul << 20)) f |= KILN_ISA_ASIMDDP;
    if (h2 & (1ul << 1)) f |= KILN_ISA_SVE2;
    if (h2 & (1ul << 13)) f |= KILN_ISA_I8MM;
    if (h2 & (1ul << 14)) f |= KILN_ISA_BF16;
    return f;
}
#endif

/* ---- NVML through dlopen: no link-time dependency on the driver. ---- */

typedef int (*nvml_init_fn)(void);
typedef int (*nvml_shutdown_fn)(void);
typedef int (*nvml_count_fn)(unsigned int *);
typedef int (*nvml_handle_fn)(unsigned int, void **);
typedef int (*nvml_name_fn)(void *, char *, unsigned int);
typedef int (*nvml_cc_fn)(void *, int *, int *);
struct nvml_memory {
    unsigned long long total, free, used;
};
typedef int (*nvml_mem_fn)(void *, struct nvml_memory *);
typedef int (*nvml_driver_fn)(char *, unsigned int);
typedef const char *(*nvml_errstr_fn)(int);

int kiln_detect_gpus_nvml(struct kiln_gpu *gpus, int max, int *n, struct kiln_error *err)
{
    *n = 0;
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return kiln_fail(
            err, KILN_EUNSUPPORTED,
            "NVML (libnvidia-ml.so.1) is not installed, so no NVIDIA driver is present");
    int rc = KILN_OK;
    nvml_init_fn init = (nvml_init_fn)dlsym(lib, "nvmlInit_v2");
    nvml_shutdown_fn shutdown = (nvml_shutdown_fn)dlsym(lib, "nvmlShutdown");
    nvml_count_fn count = (nvml_count_fn)dlsym(lib, "nvmlDeviceGetCount_v2");
    nvml_handle_fn handle = (nvml_handle_fn)dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    nvml_name_fn name = (nvml_name_fn)dlsym(lib, "nvmlDeviceGetName");
    nvml_cc_fn cc = (nvml_cc_fn)dlsym(lib, "nvmlDeviceGetCudaComputeCapability");
    nvml_mem_fn mem = (nvml_mem_fn)dlsym(lib, "nvmlDeviceGetMemoryInfo");
    nvml_driver_fn drv = (nvml_driver_fn)dlsym(lib, "nvmlSystemGetDriverVersion");
    nvml_errstr_fn es = (nvml_errstr_fn)dlsym(lib, "nvmlErrorString");
    if (!init || !shutdown || !count || !handle || !name || !cc || !mem || !drv) {
        dlclose(lib);
        return kiln_fail(err, KILN_EUNSUPPORTED, "libnvidia-ml.so.1 lacks NVML v2 functions");
    }
    int r = init();
    if (r != 0) {
        const char *m = es ? es(r) : NULL;
        dlclose(lib);
        return kiln_fail(err, KILN_EIO, "NVML failed to initialise: %s", m ? m : "unknown error");
    }
    char driver[sizeof gpus[0].driver] = "";
    if (drv(driver, sizeof driver) != 0) driver[0] = '\0';
    unsigned int cnt = 0;
    if (count(&cnt) != 0) {
        rc = kiln_fail(err, KILN_EIO, "NVML could not count GPUs");
        goto out;
    }
    for (unsigned int i = 0; i < cnt && *n < max; i++) {
        void *h = NULL;
        if (handle(i, &h) != 0) continue; /* e.g. a GPU lost from the bus: skip it */
        struct kiln_gpu *g = &gpus[*n];
        memset(g, 0, sizeof *g);
        g->index = (int)i;
        if (name(h, g->name, sizeof g->name) != 0) snprintf(g->name, sizeof g->name, "unknown");
        int maj = 0, min = 0;
        if (cc(h, &maj, &min) == 0 && maj >= 0 && maj < 100 && min >= 0 && min < 10)
            snprintf(g->sm, sizeof g->sm, "%d%d", maj, min);
        struct nvml_memory m;
        if (mem(h, &m) == 0) g->memory_mb = (long)(m.total / (1024 * 1024));
        snprintf(g->driver, sizeof g->driver, "%.63s", driver);
        (*n)++;
    }
out:
    shutdown();
    dlclose(lib);
    return rc;
}

static int find_in_path(const char *cmd, char *out, size_t outlen)
{
    if (strchr(cmd, '/')) {
        if (access(cmd, X_OK) != 0) return KILN_ENOTFOUND;
        snprintf(out, outlen, "%s", cmd);
        return KILN_OK;
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        char cand[PATH_MAX];
        if (n && snprintf(cand, sizeof cand, "%.*s/%s", (int)n, path, cmd) < (int)sizeof cand &&
            access(cand, X_OK) == 0) {
            snprintf(out, outlen, "%s", cand);
            return KILN_OK;
        }
        path += n;
        if (*path == ':') path++;
    }
    return KILN_ENOTFOUND;
}

int kiln_detect_gpus_smi(const char *smi_command, struct kiln_gpu *gpus, int max, int *n,
                         struct kiln_error *err)
{
    *n = 0;
    char path[PATH_MAX];
    const char *cmd = smi_command ? smi_command : "nvidia-smi";
    if (find_in_path(cmd, path, sizeof path))
        return kiln_fail(err, KILN_EUNSUPPORTED, "%s is not installed", cmd);
    char *argv[] = {path, "--query-gpu=index,name,compute_cap,memory.total,driver_version",
                    "--format=csv,noheader,nounits", NULL};
    struct kiln_spawn_spec sp = {.argv = argv, .err_fd = KILN_SPAWN_NULL};
    struct kiln_spawn_result r;
    struct kiln_buf b = {0};
    /* A wedged driver can make nvidia-smi hang; 30 s is far above its usual second. */
    int rc = kiln_spawn_capture(&sp, 30000, 1 << 20, &b, &r, err);
    if (rc == KILN_OK && r.timed_out)
        rc =
            kiln_fail(err, KILN_ETIMEOUT, "nvidia-smi did not answer in 30 s: the driver may hang");
    else if (rc == KILN_OK && (r.exit_code != 0 || r.term_signal))
        rc = kiln_fail(err, KILN_EIO,
                       "nvidia-smi failed (exit status %d): the driver may not be loaded",
                       r.exit_code);
    if (rc) {
        kiln_buf_free(&b);
        return rc;
    }
    rc = kiln_detect_parse_smi_csv(b.data ? b.data : "", b.len, gpus, max, n, err);
    kiln_buf_free(&b);
    return rc;
}

/* ---- assembling the host ---- */

static int read_small(const char *path, struct kiln_buf *b)
{
    kiln_buf_reset(b);
    return kiln_read_file(path, SMALL_FILE_MAX, b);
}

/* Smallest limit found walking from the cgroup's dir up to the hierarchy root
 * (a parent's limit binds its children). kind: 0 memory bytes, 1 CPUs. */
static void walk_cgroup(const char *mount, const char *cgpath, const char *file, const char *file2,
                        int kind, double *best)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s%s", mount, cgpath) >= (int)sizeof dir) return;
    size_t mlen = strlen(mount);
    struct kiln_buf b = {0}, b2 = {0};
    for (;;) {
        char p[PATH_MAX + 64];
        snprintf(p, sizeof p, "%s/%s", dir, file);
        if (read_small(p, &b) == KILN_OK && b.data) {
            double v = 0;
            if (kind == 0) {
                uint64_t bytes;
                if (kiln_detect_parse_mem_limit(b.data, &bytes, NULL) == KILN_OK) v = (double)bytes;
            } else if (!file2) {
                kiln_detect_parse_cpu_max(b.data, &v, NULL);
            } else {
                snprintf(p, sizeof p, "%s/%s", dir, file2);
                if (read_small(p, &b2) == KILN_OK && b2.data)
                    kiln_detect_parse_cfs(b.data, b2.data, &v, NULL);
            }
            if (v > 0 && (*best == 0 || v < *best)) *best = v;
        }
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < mlen) break;
        *slash = '\0';
        if (strlen(dir) < mlen) break;
    }
    kiln_buf_free(&b);
    kiln_buf_free(&b2);
}

int kiln_detect_host(struct kiln_host *h, const struct kiln_detect_opts *opts,
                     struct kiln_error *err)
{
    struct kiln_detect_opts dflt = {0};
    if (!opts) opts = &dflt;
    const char *proc = opts->proc_root && *opts->proc_root ? opts->proc_root : "/proc";
    const char *cgr = opts->cgroup_root ? opts->cgroup_root : "/sys/fs/cgroup";
    memset(h, 0, sizeof *h);
    if (gethostname(h->hostname, sizeof h->hostname) != 0)
        snprintf(h->hostname, sizeof h->hostname, "worker");
    h->hostname[sizeof h->hostname - 1] = '\0';

    struct utsname u;
    if (uname(&u) != 0) return kiln_fail(err, KILN_EIO, "uname failed: %s", strerror(errno));
    if (!strcmp(u.machine, "arm64")) snprintf(u.machine, sizeof u.machine, "aarch64");
    snprintf(h->platform, sizeof h->platform, "%s-linux", u.machine);

    /* cores: affinity mask, then quota */
    cpu_set_t *set = CPU_ALLOC(8192);
    if (!set) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    size_t setsz = CPU_ALLOC_SIZE(8192);
    CPU_ZERO_S(setsz, set);
    if (sched_getaffinity(0, setsz, set) == 0) h->cores_online = CPU_COUNT_S(setsz, set);
    CPU_FREE(set);
    if (h->cores_online <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        h->cores_online = n > 0 ? (int)n : 1;
    }

    struct kiln_buf b = {0};
    char path[PATH_MAX];
    char cgself[PATH_MAX] = "";
    snprintf(path, sizeof path, "%s/self/cgroup", proc);
    if (read_small(path, &b) == KILN_OK && b.data) {
        snprintf(cgself, sizeof cgself, "%s", b.data);
    }
    double quota = 0, memlim = 0;
    char sub[PATH_MAX / 2], mnt[PATH_MAX];
    /* v1 controllers */
    if (kiln_detect_parse_proc_cgroup(cgself, "cpu", sub, sizeof sub) == KILN_OK) {
        snprintf(mnt, sizeof mnt, "%s/cpu", cgr);
        walk_cgroup(mnt, sub, "cpu.cfs_quota_us", "cpu.cfs_period_us", 1, &quota);
        snprintf(mnt, sizeof mnt, "%s/cpu,cpuacct", cgr);
        walk_cgroup(mnt, sub, "cpu.cfs_quota_us", "cpu.cfs_period_us", 1, &quota);
    }
    if (kiln_detect_parse_proc_cgroup(cgself, "memory", sub, sizeof sub) == KILN_OK) {
        snprintf(mnt, sizeof mnt, "%s/memory", cgr);
        walk_cgroup(mnt, sub, "memory.limit_in_bytes", NULL, 0, &memlim);
    }
    /* v2: unified at the root, or at unified/ on hybrid hosts */
    if (kiln_detect_parse_proc_cgroup(cgself, "", sub, sizeof sub) == KILN_OK) {
        walk_cgroup(cgr, sub, "cpu.max", NULL, 1, &quota);
        walk_cgroup(cgr, sub, "memory.max", NULL, 0, &memlim);
        snprintf(mnt, sizeof mnt, "%s/unified", cgr);
        walk_cgroup(mnt, sub, "cpu.max", NULL, 1, &quota);
        walk_cgroup(mnt, sub, "memory.max", NULL, 0, &memlim);
    }
    h->cpu_quota = quota;
    h->cores = h->cores_online;
    if (quota > 0 && quota < h->cores) h->cores = quota < 1 ? 1 : (int)quota;

    snprintf(path, sizeof path, "%s/meminfo", proc);
    uint64_t total = 0;
    if (read_small(path, &b) == KILN_OK && b.data &&
        kiln_detect_parse_meminfo(b.data, b.len, &total, NULL) == KILN_OK)
        h->mem_total_mb = (long)(total >> 20);
    else {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        if (pages > 0 && psz > 0) h->mem_total_mb = (long)(((uint64_t)pages * (uint64_t)psz) >> 20);
    }
    h->ram_limit_mb = (long)((uint64_t)memlim >> 20);
    h->ram_mb = h->mem_total_mb;
    if (h->ram_limit_mb > 0 && h->ram_limit_mb < h->ram_mb) h->ram_mb = h->ram_limit_mb;

        /* ISA */
#if defined(__x86_64__) || defined(__i386__)
    h->isa = kiln_detect_cpuid_isa();
#elif defined(__aarch64__)
    h->isa = hwcap_isa();
#endif
    if (!h->isa) {
        snprintf(path, sizeof path, "%s/cpuinfo", proc);
        uint32_t isa = 0;
        if (read_small(path, &b) == KILN_OK && b.data &&
            kiln_detect_parse_cpuinfo(b.data, b.len, &isa, NULL, NULL) == KILN_OK)
            h->isa = isa;
    }
    kiln_buf_free(&b);

    /* GPUs */
    if (opts->skip_gpus) {
        snprintf(h->gpu_source, sizeof h->gpu_source, "none");
        snprintf(h->gpu_note, sizeof h->gpu_note, "GPU detection was skipped");
        return KILN_OK;
    }
    struct kiln_error e1 = {0}, e2 = {0};
    int n = 0;
    if (kiln_detect_gpus_nvml(h->gpus, KILN_MAX_GPUS, &n, &e1) == KILN_OK && n > 0) {
        h->ngpus = n;
        snprintf(h->gpu_source, sizeof h->gpu_source, "nvml");
        snprintf(h->gpu_note, sizeof h->gpu_note, "%d NVIDIA GPU%s found through NVML", n,
                 n == 1 ? "" : "s");
        return KILN_OK;
    }
    if (kiln_detect_gpus_smi(opts->smi_command, h->gpus, KILN_MAX_GPUS, &n, &e2) == KILN_OK &&
        n > 0) {
        h->ngpus = n;
        snprintf(h->gpu_source, sizeof h->gpu_source, "nvidia-smi");
        snprintf(h->gpu_note, sizeof h->gpu_note, "%d NVIDIA GPU%s found through nvidia-smi", n,
                 n == 1 ? "" : "s");
        return KILN_OK;
    }
    h->ngpus = 0;
    snprintf(h->gpu_source, sizeof h->gpu_source, "none");
    snprintf(h->gpu_note, sizeof h->gpu_note, "no GPU found: %.110s; %.110s",
             e1.code ? e1.msg : "NVML reports no devices",
             e2.code ? e2.msg : "nvidia-smi lists no devices");
    return KILN_OK;
}

json_t *kiln_host_to_json(const struct kiln_host *h)
{
    char feats[512], levels[256];
    kiln_isa_feature_list(h->isa, feats, sizeof feats);
    kiln_isa_levels_of(h->isa, levels, sizeof levels);
    json_t *o = json_object();
    json_t *fa = json_array(), *la = json_array(), *ga = json_array();
    if (!o || !fa || !la || !ga) goto fail;
    for (uint32_t bit = 1; bit; bit <<= 1)
        if ((h->isa & bit) && kiln_isa_feature_name(bit))
            if (json_array_append_new(fa, json_string(kiln_isa_feature_name(bit)))) goto fail;
    char *save = NULL;
    for (char *w = strtok_r(levels, " ", &save); w; w = strtok_r(NULL, " ", &save))
        if (json_array_append_new(la, json_string(w))) goto fail;
    for (int i = 0; i < h->ngpus; i++) {
        const struct kiln_gpu *g = &h->gpus[i];
        json_t *go = json_pack("{s:i,s:s,s:s,s:I,s:s}", "index", g->index, "name", g->name, "sm",
                               g->sm, "memory_mb", (json_int_t)g->memory_mb, "driver", g->driver);
        if (!go || json_array_append_new(ga, go)) goto fail;
    }
    if (json_object_set_new(o, "name", json_string(h->hostname)) ||
        json_object_set_new(o, "platform", json_string(h->platform)) ||
        json_object_set_new(o, "cores", json_integer(h->cores)) ||
        json_object_set_new(o, "ram_mb", json_integer(h->ram_mb)) ||
        json_object_set_new(o, "isa_features", fa) || json_object_set_new(o, "isa_levels", la) ||
        json_object_set_new(o, "gpus", ga))
        goto fail_set;
    json_t *d = json_pack("{s:i,s:f,s:I,s:I,s:s,s:s}", "cores_online", h->cores_online, "cpu_quota",
                          h->cpu_quota, "mem_total_mb", (json_int_t)h->mem_total_mb, "ram_limit_mb",
                          (json_int_t)h->ram_limit_mb, "gpu_source", h->gpu_source, "gpu_note",
                          h->gpu_note);
    if (!d || json_object_set_new(o, "detail", d)) {
        json_decref(o);
        return NULL;
    }
    return o;
fail:
    json_decref(fa);
    json_decref(la);
    json_decref(ga);
    json_decref(o);
    return NULL;
fail_set:
    json_decref(o);
    return NULL;
}

int kiln_host_describe(const struct kiln_host *h, char *out, size_t outlen)
{
    char feats[512], levels[256];
    kiln_isa_feature_list(h->isa, feats, sizeof feats);
    kiln_isa_levels_of(h->isa, levels, sizeof levels);
    struct kiln_buf b = {0};
    int rc = kiln_buf_printf(&b, "host:      %s\nplatform:  %s\n", h->hostname, h->platform);
    if (!rc)
        rc = kiln_buf_printf(&b, "cores:     %d (%d CPUs in affinity mask%s", h->cores,
                             h->cores_online, h->cpu_quota > 0 ? ", cgroup quota " : ")\n");
    if (!rc && h->cpu_quota > 0) rc = kiln_buf_printf(&b, "%.2f CPUs)\n", h->cpu_quota);
    if (!rc)
        rc =
            kiln_buf_printf(&b, "ram:       %ld MiB (MemTotal %ld MiB", h->ram_mb, h->mem_total_mb);
    if (!rc && h->ram_limit_mb > 0)
        rc = kiln_buf_printf(&b, ", cgroup limit %ld MiB", h->ram_limit_mb);
    if (!rc)
        rc = kiln_buf_printf(&b, ")\nisa:       %s\nisa levels: %s\ngpus:      %s\n",
                             feats[0] ? feats : "(none of the tracked features)",
                             levels[0] ? levels : "(none)", h->gpu_note);
    for (int i = 0; !rc && i < h->ngpus; i++)
        rc = kiln_buf_printf(&b, "  gpu %d: %s, sm %s, %ld MiB, driver %s\n", h->gpus[i].index,
                             h->gpus[i].name, h->gpus[i].sm, h->gpus[i].memory_mb,
                             h->gpus[i].driver);
    if (!rc) {
        if (b.len + 1 > outlen)
            rc = KILN_ELIMIT;
        else
            memcpy(out, b.data, b.len + 1);
    }
    kiln_buf_free(&b);
    return rc;
}
