/* Unit tests for workers/detect and workers/config: parsers on fixture files
 * (x86 and Grace/Altra cpuinfo, nvidia-smi CSV for H100/P40/B200, cgroup
 * files), a whole detection against a fake /proc + cgroup tree, overrides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/isa.h"
#include "workers/config.h"
#include "workers/detect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX "tests/fixtures/worker/"

static char *fixture(const char *name, size_t *len)
{
    struct kiln_buf b = {0};
    char path[256];
    snprintf(path, sizeof path, FIX "%s", name);
    assert_int_equal(kiln_read_file(path, 1 << 20, &b), KILN_OK);
    if (len) *len = b.len;
    char *s = kiln_buf_steal(&b);
    if (!s) s = strdup("");
    assert_non_null(s);
    return s;
}

static uint32_t cpuinfo_isa(const char *name, int *ncpu)
{
    size_t len;
    char *t = fixture(name, &len);
    uint32_t isa = 0;
    struct kiln_error err = {0};
    assert_int_equal(kiln_detect_parse_cpuinfo(t, len, &isa, ncpu, &err), KILN_OK);
    free(t);
    return isa;
}

static void test_cpuinfo_x86(void **state)
{
    (void)state;
    int n = 0;
    uint32_t spr = cpuinfo_isa("cpuinfo_x86_spr.txt", &n);
    assert_int_equal(n, 2);
    assert_true(kiln_isa_satisfies(spr, kiln_isa_level_features("avx512bf16")));
    assert_true(kiln_isa_satisfies(spr, kiln_isa_level_features("avx512vnni")));
    uint32_t hsw = cpuinfo_isa("cpuinfo_x86_haswell.txt", &n);
    assert_true(kiln_isa_satisfies(hsw, kiln_isa_level_features("avx2")));
    assert_false(kiln_isa_satisfies(hsw, kiln_isa_level_features("avx512")));
    uint32_t snb = cpuinfo_isa("cpuinfo_x86_sandybridge.txt", &n);
    assert_int_equal(snb, KILN_ISA_AVX);
    /* x86 flags never turn on arm bits */
    assert_int_equal(spr & 0xffff0000u, 0);
}

static void test_cpuinfo_arm(void **state)
{
    (void)state;
    int n = 0;
    uint32_t grace = cpuinfo_isa("cpuinfo_grace.txt", &n);
    assert_int_equal(n, 2);
    assert_true(kiln_isa_satisfies(grace, kiln_isa_level_features("armv9")));
    uint32_t altra = cpuinfo_isa("cpuinfo_altra.txt", &n);
    assert_true(kiln_isa_satisfies(altra, kiln_isa_level_features("armv8_2")));
    assert_false(kiln_isa_satisfies(altra, kiln_isa_level_features("armv9")));
    char levels[128];
    kiln_isa_levels_of(altra, levels, sizeof levels);
    assert_string_equal(levels, "armv8_2");
}

static void test_cpuinfo_garbage(void **state)
{
    (void)state;
    uint32_t isa = 7;
    struct kiln_error err = {0};
    assert_int_equal(kiln_detect_parse_cpuinfo("hello\nworld", 11, &isa, NULL, &err), KILN_EPARSE);
    assert_true(strlen(err.msg) > 0);
    assert_int_equal(kiln_detect_parse_cpuinfo("flags:", 6, &isa, NULL, &err), KILN_OK);
    assert_int_equal(isa, 0);
}

static void test_smi_csv(void **state)
{
    (void)state;
    struct kiln_gpu g[KILN_MAX_GPUS];
    int n = 0;
    struct kiln_error err = {0};
    size_t len;
    char *t = fixture("smi_h100.csv", &len);
    assert_int_equal(kiln_detect_parse_smi_csv(t, len, g, KILN_MAX_GPUS, &n, &err), KILN_OK);
    free(t);
    assert_int_equal(n, 2);
    assert_string_equal(g[1].name, "NVIDIA H100 80GB HBM3");
    assert_string_equal(g[1].sm, "90");
    assert_int_equal(g[1].index, 1);
    assert_int_equal(g[1].memory_mb, 81559);
    assert_string_equal(g[1].driver, "580.65.06");

    t = fixture("smi_p40.csv", &len);
    assert_int_equal(kiln_detect_parse_smi_csv(t, len, g, KILN_MAX_GPUS, &n, &err), KILN_OK);
    free(t);
    assert_int_equal(n, 1);
    assert_string_equal(g[0].sm, "61");
    assert_string_equal(g[0].name, "Tesla P40");

    t = fixture("smi_b200.csv", &len);
    assert_int_equal(kiln_detect_parse_smi_csv(t, len, g, KILN_MAX_GPUS, &n, &err), KILN_OK);
    free(t);
    assert_int_equal(n, 3);
    assert_string_equal(g[0].sm, "100");
    assert_int_equal(g[2].memory_mb, 0); /* [N/A] */

    t = fixture("smi_rtx5090.csv", &len);
    assert_int_equal(kiln_detect_parse_smi_csv(t, len, g, KILN_MAX_GPUS, &n, &err), KILN_OK);
    free(t);
    assert_string_equal(g[0].sm, "120");

    t = fixture("smi_bad_cc.csv", &len);
    assert_int_equal(kiln_detect_parse_smi_csv(t, len, g, KILN_MAX_GPUS, &n, &err), KILN_EPARSE);
    free(t);
    assert_non_null(strstr(err.msg, "compute capability"));

    assert_int_equal(kiln_detect_parse_smi_csv("0, a, 9.0\n", 10, g, KILN_MAX_GPUS, &n, &err),
                     KILN_EPARSE);
    assert_int_equal(kiln_detect_parse_smi_csv("", 0, g, KILN_MAX_GPUS, &n, &err), KILN_OK);
    assert_int_equal(n, 0);
    /* more GPUs than room */
    const char *two = "0, a, 9.0, 1, 1\n1, b, 9.0, 1, 1\n";
    assert_int_equal(kiln_detect_parse_smi_csv(two, strlen(two), g, 1, &n, &err), KILN_ELIMIT);
}

static void test_cgroup_files(void **state)
{
    (void)state;
    double cpus = -1;
    struct kiln_error err = {0};
    char *t = fixture("cpu.max_none", NULL);
    assert_int_equal(kiln_detect_parse_cpu_max(t, &cpus, &err), KILN_OK);
    assert_true(cpus == 0);
    free(t);
    t = fixture("cpu.max_4", NULL);
    assert_int_equal(kiln_detect_parse_cpu_max(t, &cpus, &err), KILN_OK);
    assert_true(cpus == 4.0);
    free(t);
    t = fixture("cpu.max_1_5", NULL);
    assert_int_equal(kiln_detect_parse_cpu_max(t, &cpus, &err), KILN_OK);
    assert_true(cpus == 1.5);
    free(t);
    assert_int_equal(kiln_detect_parse_cpu_max("bogus", &cpus, &err), KILN_EPARSE);

    char *q = fixture("cpu.cfs_quota_us_8", NULL), *p = fixture("cpu.cfs_period_us", NULL);
    assert_int_equal(kiln_detect_parse_cfs(q, p, &cpus, &err), KILN_OK);
    assert_true(cpus == 8.0);
    free(q);
    q = fixture("cpu.cfs_quota_us_none", NULL);
    assert_int_equal(kiln_detect_parse_cfs(q, p, &cpus, &err), KILN_OK);
    assert_true(cpus == 0);
    free(q);
    free(p);
    assert_int_equal(kiln_detect_parse_cfs("100", "0", &cpus, &err), KILN_EPARSE);

    uint64_t bytes = 1;
    t = fixture("memory.max_none", NULL);
    assert_int_equal(kiln_detect_parse_mem_limit(t, &bytes, &err), KILN_OK);
    assert_true(bytes == 0);
    free(t);
    t = fixture("memory.max_32g", NULL);
    assert_int_equal(kiln_detect_parse_mem_limit(t, &bytes, &err), KILN_OK);
    assert_true(bytes == 32ull << 30);
    free(t);
    t = fixture("memory.limit_in_bytes_none", NULL);
    assert_int_equal(kiln_detect_parse_mem_limit(t, &bytes, &err), KILN_OK);
    assert_true(bytes == 0);
    free(t);
    t = fixture("memory.limit_in_bytes_16g", NULL);
    assert_int_equal(kiln_detect_parse_mem_limit(t, &bytes, &err), KILN_OK);
    assert_true(bytes == 16ull << 30);
    free(t);
    assert_int_equal(kiln_detect_parse_mem_limit("-5", &bytes, &err), KILN_EPARSE);

    char path[256];
    t = fixture("proc_cgroup_v1", NULL);
    assert_int_equal(kiln_detect_parse_proc_cgroup(t, "memory", path, sizeof path), KILN_OK);
    assert_string_equal(path, "/system.slice/kiln-worker.service");
    assert_int_equal(kiln_detect_parse_proc_cgroup(t, "cpu", path, sizeof path), KILN_OK);
    assert_int_equal(kiln_detect_parse_proc_cgroup(t, "cpuacct", path, sizeof path), KILN_OK);
    assert_int_equal(kiln_detect_parse_proc_cgroup(t, "blkio", path, sizeof path), KILN_ENOTFOUND);
    free(t);
    t = fixture("proc_cgroup_v2", NULL);
    assert_int_equal(kiln_detect_parse_proc_cgroup(t, "", path, sizeof path), KILN_OK);
    assert_string_equal(path, "/system.slice/kiln-worker.service");
    assert_int_equal(kiln_detect_parse_proc_cgroup(t, "memory", path, sizeof path), KILN_ENOTFOUND);
    free(t);

    t = fixture("meminfo", NULL);
    assert_int_equal(kiln_detect_parse_meminfo(t, strlen(t), &bytes, &err), KILN_OK);
    assert_true(bytes == 263941312ull * 1024);
    free(t);
    assert_int_equal(kiln_detect_parse_meminfo("x", 1, &bytes, &err), KILN_EPARSE);
}

static void put(const char *dir, const char *rel, const char *content)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    char d[512];
    snprintf(d, sizeof d, "%s", p);
    *strrchr(d, '/') = '\0';
    assert_int_equal(kiln_mkdir_p(d, 0755), KILN_OK);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

/* A whole detection on a fake v1 host with an 8-CPU quota and 16 GiB limit,
 * and a fake nvidia-smi listing two H100s. */
static void test_detect_fake_host(void **state)
{
    (void)state;
    char tmp[] = "/tmp/kiln-detect-XXXXXX";
    assert_non_null(mkdtemp(tmp));
    char *cg = fixture("proc_cgroup_v1", NULL);
    put(tmp, "proc/self/cgroup", cg);
    free(cg);
    put(tmp, "proc/meminfo", "MemTotal:       33554432 kB\n");
    put(tmp, "cg/cpu/system.slice/kiln-worker.service/cpu.cfs_quota_us", "100000\n");
    put(tmp, "cg/cpu/system.slice/kiln-worker.service/cpu.cfs_period_us", "100000\n");
    put(tmp, "cg/memory/system.slice/memory.limit_in_bytes", "17179869184\n");
    put(tmp, "cg/memory/system.slice/kiln-worker.service/memory.limit_in_bytes",
        "9223372036854771712\n");
    char smi[600], cwd[400];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(smi, sizeof smi, "#!/bin/sh\ncat '%s/" FIX "smi_h100.csv'\n", cwd);
    put(tmp, "bin/nvidia-smi", smi);
    char smipath[300];
    snprintf(smipath, sizeof smipath, "%s/bin/nvidia-smi", tmp);
    assert_int_equal(chmod(smipath, 0755), 0);

    char proc[300], cgr[300];
    snprintf(proc, sizeof proc, "%s/proc", tmp);
    snprintf(cgr, sizeof cgr, "%s/cg", tmp);
    struct kiln_detect_opts o = {.proc_root = proc, .cgroup_root = cgr, .smi_command = smipath};
    struct kiln_host h;
    struct kiln_error err = {0};
    assert_int_equal(kiln_detect_host(&h, &o, &err), KILN_OK);
    assert_int_equal(h.cores, 1);
    assert_true(h.cpu_quota == 1.0);
    assert_int_equal(h.mem_total_mb, 32768);
    assert_int_equal(h.ram_limit_mb, 16384);
    assert_int_equal(h.ram_mb, 16384);
    /* NVML is absent on the test machine, so nvidia-smi answers */
    if (!strcmp(h.gpu_source, "nvidia-smi")) {
        assert_int_equal(h.ngpus, 2);
        assert_string_equal(h.gpus[0].sm, "90");
    }
    json_t *j = kiln_host_to_json(&h);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "cores")), 1);
    assert_int_equal(json_array_size(json_object_get(j, "gpus")), (size_t)h.ngpus);
    json_decref(j);

    /* no GPU at all: plain sentence */
    snprintf(smipath, sizeof smipath, "%s/bin/does-not-exist", tmp);
    assert_int_equal(kiln_detect_host(&h, &o, &err), KILN_OK);
    assert_int_equal(h.ngpus, 0);
    assert_non_null(strstr(h.gpu_note, "no GPU found"));
    char desc[4096];
    assert_int_equal(kiln_host_describe(&h, desc, sizeof desc), KILN_OK);
    assert_non_null(strstr(desc, "no GPU found"));

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    assert_int_equal(system(cmd), 0);
}

static void test_detect_this_host(void **state)
{
    (void)state;
    struct kiln_host h;
    struct kiln_error err = {0};
    assert_int_equal(kiln_detect_host(&h, NULL, &err), KILN_OK);
    assert_true(h.cores >= 1);
    assert_true(h.ram_mb > 0);
    assert_true(!strcmp(h.platform, "x86_64-linux") || !strcmp(h.platform, "aarch64-linux"));
}

static void test_sizes(void **state)
{
    (void)state;
    uint64_t b;
    struct kiln_error err = {0};
    assert_int_equal(kiln_size_parse("1G", &b, &err), KILN_OK);
    assert_true(b == 1ull << 30);
    assert_int_equal(kiln_size_parse("1.5GiB", &b, &err), KILN_OK);
    assert_true(b == 3ull << 29);
    assert_int_equal(kiln_size_parse("512", &b, &err), KILN_OK);
    assert_true(b == 512ull << 20);
    assert_int_equal(kiln_size_parse("200 GB", &b, &err), KILN_OK);
    assert_true(b == 200ull << 30);
    assert_int_equal(kiln_size_parse("12X", &b, &err), KILN_EINVAL);
    assert_int_equal(kiln_size_parse("-1G", &b, &err), KILN_EINVAL);
    assert_int_equal(kiln_size_parse("", &b, &err), KILN_EINVAL);
    char s[32];
    kiln_size_format(1ull << 30, s, sizeof s);
    assert_string_equal(s, "1 GiB");
    kiln_size_format((uint64_t)(1.9 * (1ull << 30)), s, sizeof s);
    assert_string_equal(s, "1.9 GiB");
    kiln_size_format(512ull << 20, s, sizeof s);
    assert_string_equal(s, "512 MiB");
    kiln_size_format(100, s, sizeof s);
    assert_string_equal(s, "100 B");
}

static void test_config_overrides(void **state)
{
    (void)state;
    struct kiln_worker_config c;
    kiln_worker_config_defaults(&c);
    struct kiln_error err = {0};
    json_error_t je;
    json_t *doc = json_loads(
        "{\"name\":\"gpu-7\",\"cores\":16,\"ram\":\"64G\",\"isa\":[\"avx512\"],"
        "\"gpus\":[{\"index\":0,\"name\":\"NVIDIA L40S\",\"sm\":\"89\",\"memory_mb\":46068}],"
        "\"labels\":{\"rack\":\"a1\"},\"limit_method\":\"poll\",\"max_jobs\":2,"
        "\"keep_job_dirs\":5}",
        0, &je);
    assert_non_null(doc);
    assert_int_equal(kiln_worker_config_from_json(&c, doc, &err), KILN_OK);
    json_decref(doc);
    struct kiln_host h;
    memset(&h, 0, sizeof h);
    h.cores = 2;
    h.ram_mb = 1000;
    kiln_worker_config_apply(&c, &h);
    assert_string_equal(h.hostname, "gpu-7");
    assert_int_equal(h.cores, 16);
    assert_int_equal(h.ram_mb, 65536);
    assert_true(kiln_isa_satisfies(h.isa, kiln_isa_level_features("avx512")));
    assert_int_equal(h.ngpus, 1);
    assert_string_equal(h.gpus[0].sm, "89");
    assert_int_equal(c.limit_method, KILN_LIMIT_POLL);
    assert_int_equal(c.keep_job_dirs, 5);
    kiln_worker_config_free(&c);

    const char *bad[] = {"{\"cores\":0}",
                         "{\"bogus\":1}",
                         "{\"ram\":\"lots\"}",
                         "{\"isa\":[\"avx9000\"]}",
                         "{\"gpus\":[{\"name\":\"x\"}]}",
                         "{\"limit_method\":\"magic\"}",
                         "[1,2]",
                         "{\"gpus\":[{\"sm\":\"9.0\"}]}",
                         "{\"keep_job_dirs\":-2}",
                         "{\"keep_job_dirs\":\"many\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kiln_worker_config_defaults(&c);
        doc = json_loads(bad[i], 0, &je);
        assert_non_null(doc);
        err.msg[0] = '\0';
        assert_int_not_equal(kiln_worker_config_from_json(&c, doc, &err), KILN_OK);
        assert_true(strlen(err.msg) > 0);
        json_decref(doc);
        kiln_worker_config_free(&c);
    }
    kiln_worker_config_defaults(&c);
    doc = json_loads("{\"gpus\":\"none\"}", 0, &je);
    assert_int_equal(kiln_worker_config_from_json(&c, doc, &err), KILN_OK);
    json_decref(doc);
    h.ngpus = 3;
    kiln_worker_config_apply(&c, &h);
    assert_int_equal(h.ngpus, 0);
    kiln_worker_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpuinfo_x86),      cmocka_unit_test(test_cpuinfo_arm),
        cmocka_unit_test(test_cpuinfo_garbage),  cmocka_unit_test(test_smi_csv),
        cmocka_unit_test(test_cgroup_files),     cmocka_unit_test(test_detect_fake_host),
        cmocka_unit_test(test_detect_this_host), cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_config_overrides),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
