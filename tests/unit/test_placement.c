/* Unit tests for scheduler/placement: matching rules, order, best fit,
 * reservations and backfill, reasons, the one-shot API, DAG helpers, and a
 * randomized property test over 10,000+ generated scenarios. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/isa.h"
#include "scheduler/placement.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- helpers ---------- */

static struct kiln_pworker worker(int64_t id, const char *name, const char *plat, int cores,
                                  int64_t ram_mb)
{
    struct kiln_pworker w;
    memset(&w, 0, sizeof w);
    w.id = id;
    snprintf(w.name, sizeof w.name, "%s", name);
    snprintf(w.platform, sizeof w.platform, "%s", plat);
    w.cores_total = w.cores_free = cores;
    w.ram_total_mb = w.ram_free_mb = ram_mb;
    w.state = KILN_PW_ONLINE;
    w.healthy = 1;
    return w;
}

static void add_gpu(struct kiln_pworker *w, const char *sm, int driver)
{
    struct kiln_pgpu *g = &w->gpus[w->ngpus];
    g->index = w->ngpus;
    snprintf(g->sm, sizeof g->sm, "%s", sm);
    g->driver = driver;
    w->ngpus++;
}

static struct kiln_pitem build(int64_t id, const char *plat, int cores, int64_t ram_mb)
{
    struct kiln_pitem it;
    memset(&it, 0, sizeof it);
    it.job_id = id;
    it.stage = KILN_PSTAGE_BUILD;
    snprintf(it.platform, sizeof it.platform, "%s", plat);
    it.cores = cores;
    it.ram_mb = ram_mb;
    it.est_s = 3600;
    return it;
}

static struct kiln_pitem test(int64_t id, const char *plat, const char *sm, int driver_min)
{
    struct kiln_pitem it = build(id, plat, 2, 4096);
    it.stage = KILN_PSTAGE_TEST;
    snprintf(it.gpu_sm, sizeof it.gpu_sm, "%s", sm);
    it.driver_min = driver_min;
    it.est_s = 600;
    return it;
}

static struct kiln_placer *placer_host(int mode, int host_policy)
{
    struct kiln_policy pol;
    kiln_policy_default(&pol);
    pol.mode = mode;
    pol.host_policy = host_policy;
    struct kiln_placer *p = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_placer_new(&pol, &p, &err), 0);
    return p;
}

static struct kiln_placer *placer(int mode)
{
    struct kiln_policy pol;
    kiln_policy_default(&pol);
    pol.mode = mode;
    struct kiln_placer *p = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_placer_new(&pol, &p, &err), 0);
    return p;
}

static size_t dispatch(struct kiln_placer *p, double now, struct kiln_assignment *a, size_t cap)
{
    size_t n = 99;
    struct kiln_error err = {0};
    assert_int_equal(kiln_placer_dispatch(p, now, a, cap, &n, &err), 0);
    return n;
}

static void reason_of(struct kiln_placer *p, int64_t id, int stage, char *buf)
{
    assert_int_equal(kiln_placer_reason(p, id, stage, buf, KILN_PLACE_REASON_MAX), 0);
}

/* ---------- rules ---------- */

static void test_sm_rules(void **state)
{
    (void)state;
    assert_true(kiln_sm_matches("90", "90", 0));
    assert_false(kiln_sm_matches("89", "90", 0));
    assert_false(kiln_sm_matches("90", "86", 0));
    assert_true(kiln_sm_matches("86", "80", 1)); /* same major, newer minor */
    assert_true(kiln_sm_matches("89", "86", 1));
    assert_false(kiln_sm_matches("80", "86", 1)); /* older minor */
    assert_false(kiln_sm_matches("90", "89", 1)); /* other major */
    assert_true(kiln_sm_matches("103", "100", 1));
    assert_false(kiln_sm_matches("103", "100", 0));
    assert_true(kiln_sm_matches("90", "90a", 1)); /* arch-specific: exact only */
    assert_false(kiln_sm_matches("103", "100f", 1));
    assert_false(kiln_sm_matches("103", "100a", 1));
    assert_true(kiln_sm_matches("120", "120", 0));
    assert_false(kiln_sm_matches("", "90", 1));
    assert_false(kiln_sm_matches("9x", "90", 1));
    assert_false(kiln_sm_matches("90", "90b", 1));
    assert_int_equal(kiln_driver_major("580.65.06"), 580);
    assert_int_equal(kiln_driver_major("560"), 560);
    assert_int_equal(kiln_driver_major("x"), 0);
    assert_int_equal(kiln_driver_major(NULL), 0);
}

static void test_build_never_overcommits_and_best_fit(void **state)
{
    (void)state;
    struct kiln_placer *p = placer_host(KILN_POLICY_KILN, KILN_HOST_PACK);
    struct kiln_error err = {0};
    struct kiln_pworker big = worker(1, "big", "x86_64-linux", 64, 262144);
    struct kiln_pworker small = worker(2, "small", "x86_64-linux", 16, 65536);
    assert_int_equal(kiln_placer_set_worker(p, &big, &err), 0);
    assert_int_equal(kiln_placer_set_worker(p, &small, &err), 0);
    struct kiln_pitem a = build(1, "x86_64-linux", 16, 65536);
    assert_int_equal(kiln_placer_add(p, &a, &err), 0);
    assert_int_equal(kiln_placer_add(p, &a, &err), KILN_EEXIST);
    struct kiln_assignment out[8];
    assert_int_equal(dispatch(p, 0, out, 8), 1);
    /* best fit: the host it fills exactly */
    assert_int_equal(out[0].worker_id, 2);
    /* 5 more 16-core builds: 4 fit on big, the 5th waits */
    for (int i = 2; i <= 6; i++) {
        struct kiln_pitem b = build(i, "x86_64-linux", 16, 65536);
        assert_int_equal(kiln_placer_add(p, &b, &err), 0);
    }
    assert_int_equal(dispatch(p, 0, out, 8), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(out[i].worker_id, 1);
    assert_int_equal(kiln_placer_queued(p), 1);
    char why[KILN_PLACE_REASON_MAX];
    reason_of(p, 6, KILN_PSTAGE_BUILD, why);
    assert_string_equal(why, "needs 16 cores and 64 GiB on x86_64-linux; best host has 0 cores "
                             "and 0 GiB free");
    assert_int_equal(kiln_placer_finish(p, 1, KILN_PSTAGE_BUILD), 0);
    assert_int_equal(kiln_placer_finish(p, 1, KILN_PSTAGE_BUILD), KILN_ENOTFOUND);
    assert_int_equal(dispatch(p, 10, out, 8), 1);
    assert_int_equal(out[0].job_id, 6);
    assert_int_equal(out[0].worker_id, 2);
    kiln_placer_free(p);
}

/* spread (the default) puts an item on the least loaded host, pack on the
 * fullest one it fits; with max_new = 1 (one job per lease request) either
 * policy hands the second item to the other, idle worker in the same pass
 * instead of holding it for the busy one. */
static void test_host_policy_spread_pack(void **state)
{
    (void)state;
    struct kiln_error err = {0};
    struct kiln_policy def;
    kiln_policy_default(&def);
    assert_int_equal(def.host_policy, KILN_HOST_SPREAD);
    int hp = -1;
    assert_int_equal(kiln_host_policy_parse("pack", &hp, &err), 0);
    assert_int_equal(hp, KILN_HOST_PACK);
    assert_int_equal(kiln_host_policy_parse("spread", &hp, &err), 0);
    assert_int_equal(hp, KILN_HOST_SPREAD);
    assert_int_equal(kiln_host_policy_parse("random", &hp, &err), KILN_EINVAL);
    assert_string_equal(kiln_host_policy_name(KILN_HOST_PACK), "pack");
    for (int pol = KILN_HOST_SPREAD; pol <= KILN_HOST_PACK; pol++) {
        struct kiln_placer *p = placer_host(KILN_POLICY_KILN, pol);
        struct kiln_pworker busy = worker(1, "busy", "x86_64-linux", 4, 2048);
        struct kiln_pworker idle = worker(2, "idle", "x86_64-linux", 4, 2048);
        busy.cores_free = 3;
        busy.ram_free_mb = 1792;
        assert_int_equal(kiln_placer_set_worker(p, &busy, &err), 0);
        assert_int_equal(kiln_placer_set_worker(p, &idle, &err), 0);
        struct kiln_pitem a = build(1, "x86_64-linux", 1, 256);
        assert_int_equal(kiln_placer_add(p, &a, &err), 0);
        struct kiln_assignment out[4];
        assert_int_equal(dispatch(p, 0, out, 4), 1);
        assert_int_equal(out[0].worker_id, pol == KILN_HOST_SPREAD ? 2 : 1);
        kiln_placer_free(p);

        p = placer_host(KILN_POLICY_KILN, pol);
        busy.max_new = idle.max_new = 1;
        assert_int_equal(kiln_placer_set_worker(p, &busy, &err), 0);
        assert_int_equal(kiln_placer_set_worker(p, &idle, &err), 0);
        for (int i = 1; i <= 3; i++) {
            struct kiln_pitem b = build(i, "x86_64-linux", 1, 256);
            assert_int_equal(kiln_placer_add(p, &b, &err), 0);
        }
        assert_int_equal(dispatch(p, 0, out, 4), 2);
        assert_true(out[0].worker_id != out[1].worker_id);
        assert_int_equal(kiln_placer_queued(p), 1);
        /* the next pass (a new lease request) may give each one more */
        assert_int_equal(dispatch(p, 1, out, 4), 1);
        kiln_placer_free(p);
    }
}

/* ---------- one test per matching rule (the service runs these too) ----------
 * fits(): does one dispatch place item it on a worker w alone? */
static int fits(const struct kiln_pworker *w, const struct kiln_pitem *it)
{
    struct kiln_placer *p = placer(KILN_POLICY_KILN);
    struct kiln_error err = {0};
    assert_int_equal(kiln_placer_set_worker(p, w, &err), 0);
    assert_int_equal(kiln_placer_add(p, it, &err), 0);
    struct kiln_assignment out[2];
    size_t n = dispatch(p, 0, out, 2);
    kiln_placer_free(p);
    return n == 1;
}

static struct kiln_pworker gpu_host(const char *sm, int driver)
{
    struct kiln_pworker w = worker(1, "g", "x86_64-linux", 8, 16384);
    add_gpu(&w, sm, driver);
    return w;
}

static struct kiln_pitem sm_test(const char *sm, int compat)
{
    struct kiln_pitem it = test(1, "x86_64-linux", sm, 0);
    it.sm_compat = compat;
    return it;
}

static void test_rule_platform(void **state)
{
    (void)state;
    struct kiln_pworker w = worker(1, "a", "aarch64-linux", 64, 65536);
    struct kiln_pitem it = build(1, "x86_64-linux", 1, 1);
    assert_false(fits(&w, &it));
    snprintf(it.platform, sizeof it.platform, "aarch64-linux");
    assert_true(fits(&w, &it));
}

/* A job that names a worker (a Slurm pool's) runs there only, even when
 * another has more room; a name nobody registered says so. */
static void test_rule_named_worker(void **state)
{
    (void)state;
    struct kiln_placer *p = placer(KILN_POLICY_KILN);
    struct kiln_error err = {0};
    struct kiln_pworker big = worker(1, "agent-big", "x86_64-linux", 64, 65536);
    struct kiln_pworker pool = worker(2, "slurm-hpc", "x86_64-linux", 8, 8192);
    assert_int_equal(kiln_placer_set_worker(p, &big, &err), 0);
    assert_int_equal(kiln_placer_set_worker(p, &pool, &err), 0);
    struct kiln_pitem a = build(1, "x86_64-linux", 2, 1024), b = build(2, "x86_64-linux", 2, 1024),
                      c = build(3, "x86_64-linux", 2, 1024);
    snprintf(a.worker, sizeof a.worker, "slurm-hpc");
    snprintf(c.worker, sizeof c.worker, "slurm-nope");
    assert_int_equal(kiln_placer_add(p, &a, &err), 0);
    assert_int_equal(kiln_placer_add(p, &b, &err), 0);
    assert_int_equal(kiln_placer_add(p, &c, &err), 0);
    struct kiln_assignment out[4];
    size_t n = dispatch(p, 0, out, 4);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++)
        if (out[i].job_id == 1)
            assert_int_equal(out[i].worker_id, 2);
        else
            assert_int_equal(out[i].job_id, 2);
    char why[KILN_PLACE_REASON_MAX];
    reason_of(p, 3, KILN_PSTAGE_BUILD, why);
    assert_string_equal(why, "it asks for worker slurm-nope, which is not registered");
    kiln_placer_free(p);
}

static void test_rule_cores_and_ram_never_overcommit(void **state)
{
    (void)state;
    struct kiln_pworker w = worker(1, "a", "x86_64-linux", 8, 16384);
    w.cores_free = 3;
    w.ram_free_mb = 4096;
    struct kiln_pitem it = build(1, "x86_64-linux", 4, 1024);
    assert_false(fits(&w, &it)); /* cores */
    it.cores = 3;
    it.ram_mb = 4097;
    assert_false(fits(&w, &it)); /* RAM */
    it.ram_mb = 4096;
    assert_true(fits(&w, &it));
}

static void test_rule_isa(void **state)
{
    (void)state;
    struct kiln_pworker w = gpu_host("90", 580);
    w.isa = kiln_isa_level_features("avx2");
    struct kiln_pitem it = sm_test("90", 0);
    it.isa = kiln_isa_level_features("avx512");
    assert_false(fits(&w, &it));
    w.isa = kiln_isa_level_features("avx512");
    assert_true(fits(&w, &it));
}

static void test_rule_sm_exact(void **state)
{
    (void)state;
    struct kiln_pworker w = gpu_host("89", 580);
    struct kiln_pitem it = sm_test("86", 0);
    assert_false(fits(&w, &it)); /* newer minor, but no sm_compat */
    it = sm_test("89", 0);
    assert_true(fits(&w, &it));
}

static void test_rule_sm_compat_newer_minor_same_major(void **state)
{
    (void)state;
    struct kiln_pworker w = gpu_host("89", 580);
    struct kiln_pitem it = sm_test("86", 1);
    assert_true(fits(&w, &it));
    w = gpu_host("80", 580);
    assert_false(fits(&w, &it)); /* older minor */
    w = gpu_host("90", 580);
    assert_false(fits(&w, &it)); /* other major */
}

/* The two cases the old service copy answered differently (issue 14):
 * arch-specific code ("90a", "100f") runs on exactly that SM, with or
 * without sm_compat; sm_compat lets only plain (non-a/f) code move up. */
static void test_rule_arch_specific_exact_only(void **state)
{
    (void)state;
    struct kiln_pworker w90 = gpu_host("90", 580), w91 = gpu_host("91", 580);
    struct kiln_pitem a = sm_test("90a", 0);
    assert_true(fits(&w90, &a)); /* "90a" on SM 90 without sm_compat: yes */
    a = sm_test("90a", 1);
    assert_false(fits(&w91, &a)); /* "90a" on SM 91 with sm_compat: no */
    assert_true(fits(&w90, &a));
    struct kiln_pitem f = sm_test("100f", 1);
    struct kiln_pworker w103 = gpu_host("103", 580);
    assert_false(fits(&w103, &f));
    struct kiln_pitem plain = sm_test("90", 1);
    assert_true(fits(&w91, &plain)); /* the non-a arch may move up */
}

static void test_rule_driver_min(void **state)
{
    (void)state;
    struct kiln_pworker w = gpu_host("90", 550);
    struct kiln_pitem it = test(1, "x86_64-linux", "90", 560);
    assert_false(fits(&w, &it));
    w = gpu_host("90", 560);
    assert_true(fits(&w, &it));
}

static void test_rule_one_test_per_gpu(void **state)
{
    (void)state;
    struct kiln_pworker w = gpu_host("90", 580);
    struct kiln_pitem it = sm_test("90", 0);
    w.gpus[0].busy = 1;
    assert_false(fits(&w, &it));
    w.gpus[0].busy = 0;
    assert_true(fits(&w, &it));
}

static void test_rule_worker_takes_work(void **state)
{
    (void)state;
    struct kiln_pitem it = build(1, "x86_64-linux", 1, 1);
    struct kiln_pworker w = worker(1, "a", "x86_64-linux", 8, 16384);
    int states[] = {KILN_PW_DRAINING, KILN_PW_LOST, KILN_PW_OFFLINE};
    for (int i = 0; i < 3; i++) {
        w.state = states[i];
        assert_false(fits(&w, &it));
    }
    w.state = KILN_PW_ONLINE;
    w.healthy = 0;
    assert_false(fits(&w, &it));
    w.healthy = 1;
    w.max_new = -1; /* online but not asking */
    assert_false(fits(&w, &it));
    w.max_new = 0;
    assert_true(fits(&w, &it));
}

static void test_rule_no_builds(void **state)
{
    (void)state;
    struct kiln_pworker w = gpu_host("90", 580);
    w.no_builds = 1;
    struct kiln_pitem b = build(1, "x86_64-linux", 1, 1);
    assert_false(fits(&w, &b));
    struct kiln_pitem t = sm_test("90", 0);
    assert_true(fits(&w, &t));
}

static void test_reasons(void **state)
{
    (void)state;
    struct kiln_placer *p = placer(KILN_POLICY_KILN);
    struct kiln_error err = {0};
    struct kiln_pworker w = worker(1, "gpu-1", "x86_64-linux", 8, 65536);
    w.isa = kiln_isa_level_features("avx512");
    add_gpu(&w, "90", 550);
    add_gpu(&w, "80", 580);
    assert_int_equal(kiln_placer_set_worker(p, &w, &err), 0);
    struct kiln_pitem it[6];
    it[0] = test(1, "x86_64-linux", "100", 560);
    it[1] = test(2, "x86_64-linux", "90", 560);
    it[2] = test(3, "x86_64-linux", "80", 560);
    it[2].isa = kiln_isa_level_features("avx512bf16");
    it[3] = build(4, "x86_64-linux", 16, 131072);
    it[4] = build(5, "aarch64-linux", 16, 1024);
    it[5] = test(6, "x86_64-linux", "86", 0);
    it[5].sm_compat = 1;
    for (int i = 0; i < 6; i++)
        assert_int_equal(kiln_placer_add(p, &it[i], &err), 0);
    struct kiln_assignment out[8];
    assert_int_equal(dispatch(p, 0, out, 8), 0);
    char why[KILN_PLACE_REASON_MAX];
    reason_of(p, 1, KILN_PSTAGE_TEST, why);
    assert_string_equal(why, "no online worker with sm_100");
    reason_of(p, 2, KILN_PSTAGE_TEST, why);
    assert_string_equal(why, "no worker with driver >= 560 for sm_90 (newest has 550)");
    reason_of(p, 3, KILN_PSTAGE_TEST, why);
    assert_string_equal(why, "no worker with CPU features avx512_bf16 beside sm_80");
    reason_of(p, 4, KILN_PSTAGE_BUILD, why);
    assert_string_equal(why, "needs 16 cores and 128 GiB on x86_64-linux; largest host has 8 "
                             "cores and 64 GiB");
    reason_of(p, 5, KILN_PSTAGE_BUILD, why);
    assert_string_equal(why, "no worker for builds on aarch64-linux");
    reason_of(p, 6, KILN_PSTAGE_TEST, why);
    assert_string_equal(why, "no online worker with sm_86 or a compatible newer GPU");
    assert_int_equal(kiln_placer_reason(p, 99, 0, why, sizeof why), KILN_ENOTFOUND);

    /* a worker with the right GPU that is draining */
    struct kiln_pworker d = worker(2, "gpu-2", "x86_64-linux", 32, 65536);
    add_gpu(&d, "100", 580);
    d.state = KILN_PW_DRAINING;
    assert_int_equal(kiln_placer_set_worker(p, &d, &err), 0);
    assert_int_equal(dispatch(p, 0, out, 8), 0);
    reason_of(p, 1, KILN_PSTAGE_TEST, why);
    assert_string_equal(why, "no online worker with sm_100 (1 draining)");
    d.state = KILN_PW_ONLINE;
    assert_int_equal(kiln_placer_set_worker(p, &d, &err), 0);
    assert_int_equal(dispatch(p, 0, out, 8), 1);
    assert_int_equal(out[0].job_id, 1);
    assert_int_equal(out[0].gpu_index, 0);
    assert_int_equal(kiln_placer_remove_worker(p, 2), 0);
    assert_int_equal(kiln_placer_remove_worker(p, 2), KILN_ENOTFOUND);
    kiln_placer_free(p);
}

static void test_one_test_per_gpu_and_compat(void **state)
{
    (void)state;
    struct kiln_placer *p = placer(KILN_POLICY_KILN);
    struct kiln_error err = {0};
    struct kiln_pworker w = worker(1, "l40", "x86_64-linux", 64, 262144);
    add_gpu(&w, "89", 580);
    add_gpu(&w, "86", 580);
    assert_int_equal(kiln_placer_set_worker(p, &w, &err), 0);
    struct kiln_pitem a = test(1, "x86_64-linux", "86", 0);
    a.sm_compat = 1;
    struct kiln_pitem b = test(2, "x86_64-linux", "86", 0);
    b.sm_compat = 1;
    struct kiln_pitem c = test(3, "x86_64-linux", "86", 0);
    c.sm_compat = 1;
    assert_int_equal(kiln_placer_add(p, &a, &err), 0);
    struct kiln_assignment out[4];
    assert_int_equal(dispatch(p, 0, out, 4), 1);
    assert_int_equal(out[0].gpu_index, 1); /* the exact SM first */
    assert_int_equal(kiln_placer_add(p, &b, &err), 0);
    assert_int_equal(kiln_placer_add(p, &c, &err), 0);
    assert_int_equal(dispatch(p, 0, out, 4), 1);
    assert_int_equal(out[0].gpu_index, 0); /* newer minor, compatible */
    char why[KILN_PLACE_REASON_MAX];
    reason_of(p, 3, KILN_PSTAGE_TEST, why);
    assert_string_equal(why, "all 2 GPUs with sm_86 are busy");
    kiln_placer_free(p);
}

static void test_priority_aging_and_critical_path(void **state)
{
    (void)state;
    struct kiln_placer *p = placer(KILN_POLICY_KILN);
    struct kiln_error err = {0};
    struct kiln_pworker w = worker(1, "b", "x86_64-linux", 16, 65536);
    assert_int_equal(kiln_placer_set_worker(p, &w, &err), 0);
    struct kiln_pitem lo = build(1, "x86_64-linux", 16, 1024);
    lo.priority = 0;
    lo.enqueued_at = 0;
    struct kiln_pitem hi = build(2, "x86_64-linux", 16, 1024);
    hi.priority = 5;
    hi.enqueued_at = 3600;
    struct kiln_pitem cp = build(3, "x86_64-linux", 16, 1024);
    cp.priority = 5;
    cp.enqueued_at = 3600;
    cp.crit_s = 20000;
    assert_int_equal(kiln_placer_add(p, &lo, &err), 0);
    assert_int_equal(kiln_placer_add(p, &hi, &err), 0);
    assert_int_equal(kiln_placer_add(p, &cp, &err), 0);
    struct kiln_assignment out[4];
    /* same priority and time: the longer critical path first */
    assert_int_equal(dispatch(p, 3600, out, 4), 1);
    assert_int_equal(out[0].job_id, 3);
    kiln_placer_finish(p, 3, 0);
    assert_int_equal(dispatch(p, 3600, out, 4), 1);
    assert_int_equal(out[0].job_id, 2);
    kiln_placer_finish(p, 2, 0);
    /* a priority-6 item submitted 10 hours later loses to the aged one */
    struct kiln_pitem late = build(4, "x86_64-linux", 16, 1024);
    late.priority = 6;
    late.enqueued_at = 36000;
    struct kiln_pitem late2 = build(5, "x86_64-linux", 16, 1024);
    late2.priority = 2;
    late2.enqueued_at = 0; /* key 2 > 6 - 10 */
    assert_int_equal(kiln_placer_add(p, &late, &err), 0);
    assert_int_equal(kiln_placer_add(p, &late2, &err), 0);
    assert_int_equal(dispatch(p, 36000, out, 4), 1);
    assert_int_equal(out[0].job_id, 5);
    kiln_placer_finish(p, 5, 0);
    assert_int_equal(dispatch(p, 36000, out, 4), 1);
    assert_int_equal(out[0].job_id, 1); /* 0 - 0 > 6 - 10 */
    kiln_placer_free(p);
}

static void test_fifo_first_fit(void **state)
{
    (void)state;
    struct kiln_placer *p = placer(KILN_POLICY_FIFO);
    struct kiln_error err = {0};
    struct kiln_pworker a = worker(1, "a", "x86_64-linux", 64, 262144);
    struct kiln_pworker b = worker(2, "b", "x86_64-linux", 16, 65536);
    assert_int_equal(kiln_placer_set_worker(p, &a, &err), 0);
    assert_int_equal(kiln_placer_set_worker(p, &b, &err), 0);
    struct kiln_pitem x = build(1, "x86_64-linux", 16, 1024);
    x.priority = -5;
    struct kiln_pitem y = build(2, "x86_64-linux", 16, 1024);
    y.priority = 10;
    y.enqueued_at = 5;
    assert_int_equal(kiln_placer_add(p, &y, &err), 0);
    assert_int_equal(kiln_placer_add(p, &x, &err), 0);
    struct kiln_assignment out[4];
    assert_int_equal(dispatch(p, 10, out, 4), 2);
    assert_int_equal(out[0].job_id, 1);    /* oldest first, priority ignored */
    assert_int_equal(out[0].worker_id, 1); /* first worker that fits */
    assert_int_equal(out[1].worker_id, 1);
    kiln_placer_free(p);
}

/* One host with two slots of 16 cores; n independent 4 h builds (128 GiB,
 * ids 10..) and one 3 h build (64 GiB, another class, id 1) that heads a
 * chain of chain_h hours. */
static struct kiln_placer *slack_farm(int n, int chain_h)
{
    struct kiln_error err = {0};
    struct kiln_placer *p = placer(KILN_POLICY_KILN);
    struct kiln_pworker w = worker(1, "b", "x86_64-linux", 32, 262144);
    assert_int_equal(kiln_placer_set_worker(p, &w, &err), 0);
    for (int i = 0; i < n; i++) {
        struct kiln_pitem v = build(10 + i, "x86_64-linux", 16, 131072);
        v.est_s = 4 * 3600;
        assert_int_equal(kiln_placer_add(p, &v, &err), 0);
    }
    struct kiln_pitem pt = build(1, "x86_64-linux", 16, 65536);
    pt.est_s = 3 * 3600;
    pt.crit_s = chain_h * 3600;
    assert_int_equal(kiln_placer_add(p, &pt, &err), 0);
    return p;
}

/* Slack (placement.c, compute_slack): builds whose critical path ends well
 * before the platform's hosts run dry go longest first, so the short ones
 * fill the end; a build whose chain reaches that horizon goes first. The old
 * rule (critical path only) started the 3 h build with the longest chain
 * first in both cases. */
static void test_slack_longest_first(void **state)
{
    (void)state;
    struct kiln_assignment out[8];
    for (int round = 0; round < 2; round++) {
        /* four 4 h builds beside a 5 h chain, or an 8 h one */
        struct kiln_placer *p = slack_farm(4, round ? 8 : 5);
        /* horizon: 16 cores x (4 x 4 h + the chain) over 32 cores = 10.5 h
           (5 h chain) or 12 h (8 h chain); minus the longest item (4 h):
           6.5 h, so the 5 h chain has slack, or 8 h, so the 8 h one is urgent */
        size_t n = dispatch(p, 0, out, 8);
        assert_int_equal(n, 2);
        int started_pt = out[0].job_id == 1 || out[1].job_id == 1;
        if (round == 0)
            assert_false(started_pt); /* slack: the two 4 h builds go first */
        else
            assert_int_equal(out[0].job_id, 1); /* urgent: its chain first */
        kiln_placer_free(p);
    }
    /* a chain that would become critical if it waited one item's length is
       urgent: 3 h build + 2 h dependent beside two 4 h builds on two slots
       (horizon 6.5 h - 4 h = 2.5 h <= 5 h) - the critical-path order, which
       ends at 7 h where longest-first would end at 9 h */
    struct kiln_placer *p = slack_farm(2, 5);
    assert_int_equal(dispatch(p, 0, out, 8), 2);
    assert_int_equal(out[0].job_id, 1);
    kiln_placer_free(p);
}

/* The Slurm-like EASY baseline: submit order (priority ignored), first fit;
 * only the queue's head gets a reservation, and a later job starts now only
 * if it ends before the head's start or fits beside it. FIFO starts both. */
static void test_easy_backfill(void **state)
{
    (void)state;
    struct kiln_error err = {0};
    struct kiln_assignment out[8];
    for (int mode = KILN_POLICY_FIFO; mode <= KILN_POLICY_EASY; mode++) {
        struct kiln_placer *p = placer(mode);
        struct kiln_pworker w = worker(1, "b", "x86_64-linux", 64, 262144);
        assert_int_equal(kiln_placer_set_worker(p, &w, &err), 0);
        struct kiln_pitem run = build(1, "x86_64-linux", 48, 1024);
        run.est_s = 1000;
        assert_int_equal(kiln_placer_add(p, &run, &err), 0);
        assert_int_equal(dispatch(p, 0, out, 8), 1);
        struct kiln_pitem head = build(2, "x86_64-linux", 64, 1024);
        head.est_s = 5000;
        head.priority = -5; /* EASY orders by submission, not priority */
        head.enqueued_at = 10;
        struct kiln_pitem longj = build(3, "x86_64-linux", 4, 2048);
        longj.est_s = 5000;
        longj.priority = 9;
        longj.enqueued_at = 20;
        struct kiln_pitem shortj = build(4, "x86_64-linux", 8, 4096);
        shortj.est_s = 500;
        shortj.enqueued_at = 30;
        struct kiln_pitem head2 = build(5, "x86_64-linux", 60, 8192);
        head2.est_s = 5000;
        head2.enqueued_at = 40;
        assert_int_equal(kiln_placer_add(p, &head, &err), 0);
        assert_int_equal(kiln_placer_add(p, &longj, &err), 0);
        assert_int_equal(kiln_placer_add(p, &shortj, &err), 0);
        assert_int_equal(kiln_placer_add(p, &head2, &err), 0);
        size_t n = dispatch(p, 0, out, 8);
        if (mode == KILN_POLICY_FIFO) {
            assert_int_equal(n, 2); /* no reservation: both small jobs start */
            assert_int_equal(out[0].job_id, 3);
            assert_int_equal(out[1].job_id, 4);
        } else {
            /* the long job would delay the head (5000 s > its start at 1000 s);
               the short one ends first */
            assert_int_equal(n, 1);
            assert_int_equal(out[0].job_id, 4);
            char why[KILN_PLACE_REASON_MAX];
            reason_of(p, 3, KILN_PSTAGE_BUILD, why);
            assert_non_null(strstr(why, "held for higher-priority job 2"));
            kiln_placer_finish(p, 1, 0);
            kiln_placer_finish(p, 4, 0);
            n = dispatch(p, 1000, out, 8);
            assert_int_equal(n, 1);
            assert_int_equal(out[0].job_id, 2); /* the head starts on time */
        }
        kiln_placer_free(p);
    }
}

static void test_reservation_and_backfill(void **state)
{
    (void)state;
    struct kiln_placer *p = placer(KILN_POLICY_KILN);
    struct kiln_error err = {0};
    struct kiln_pworker w = worker(1, "b", "x86_64-linux", 64, 262144);
    assert_int_equal(kiln_placer_set_worker(p, &w, &err), 0);
    /* 48 cores busy until t=1000 */
    struct kiln_pitem run = build(1, "x86_64-linux", 48, 1024);
    run.est_s = 1000;
    assert_int_equal(kiln_placer_add(p, &run, &err), 0);
    struct kiln_assignment out[8];
    assert_int_equal(dispatch(p, 0, out, 8), 1);
    /* head: needs all 64 cores (blocked until 1000); then a short and a long
       small job */
    struct kiln_pitem head = build(2, "x86_64-linux", 64, 1024);
    head.priority = 10;
    head.est_s = 5000;
    struct kiln_pitem shortj = build(3, "x86_64-linux", 8, 1024);
    shortj.est_s = 500;
    struct kiln_pitem longj = build(4, "x86_64-linux", 4, 1024);
    longj.est_s = 5000;
    assert_int_equal(kiln_placer_add(p, &head, &err), 0);
    assert_int_equal(kiln_placer_add(p, &shortj, &err), 0);
    assert_int_equal(kiln_placer_add(p, &longj, &err), 0);
    size_t n = dispatch(p, 0, out, 8);
    /* the short job backfills (ends at 500 < 1000); the long one would delay
       the head, so it waits */
    assert_int_equal(n, 1);
    assert_int_equal(out[0].job_id, 3);
    char why[KILN_PLACE_REASON_MAX];
    reason_of(p, 4, KILN_PSTAGE_BUILD, why);
    assert_string_equal(why, "b is held for higher-priority job 2 (expected to start in 17m)");
    kiln_placer_finish(p, 1, 0);
    kiln_placer_finish(p, 3, 0);
    n = dispatch(p, 1000, out, 8);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].job_id, 2);

    /* without backfill, the long job would have started and delayed the head */
    struct kiln_policy pol;
    kiln_policy_default(&pol);
    pol.backfill = 0;
    struct kiln_placer *q = NULL;
    assert_int_equal(kiln_placer_new(&pol, &q, &err), 0);
    assert_int_equal(kiln_placer_set_worker(q, &w, &err), 0);
    assert_int_equal(kiln_placer_add(q, &run, &err), 0);
    assert_int_equal(dispatch(q, 0, out, 8), 1);
    assert_int_equal(kiln_placer_add(q, &head, &err), 0);
    assert_int_equal(kiln_placer_add(q, &longj, &err), 0);
    assert_int_equal(dispatch(q, 0, out, 8), 1);
    assert_int_equal(out[0].job_id, 4);
    kiln_placer_free(q);
    kiln_placer_free(p);
}

/* The service knows what runs on a worker but not when it ends: the head
 * waits for the worker to drain, lower items use only what it will not need. */
static void test_reservation_without_estimates(void **state)
{
    (void)state;
    struct kiln_placer *p = placer(KILN_POLICY_KILN);
    struct kiln_error err = {0};
    struct kiln_pworker w = worker(1, "b", "x86_64-linux", 64, 262144);
    w.cores_free = 16; /* 48 cores busy, no end times given */
    assert_int_equal(kiln_placer_set_worker(p, &w, &err), 0);
    struct kiln_pitem head = build(1, "x86_64-linux", 32, 1024);
    head.priority = 9;
    struct kiln_pitem small = build(2, "x86_64-linux", 8, 1024);
    struct kiln_pitem mid = build(3, "x86_64-linux", 8, 1024);
    mid.ram_mb = 262144 - 2048 + 1; /* fits now, but would leave the head short */
    struct kiln_pitem small2 = build(4, "x86_64-linux", 8, 1024);
    small2.enqueued_at = 60;
    assert_int_equal(kiln_placer_add(p, &head, &err), 0);
    assert_int_equal(kiln_placer_add(p, &small, &err), 0);
    assert_int_equal(kiln_placer_add(p, &mid, &err), 0);
    assert_int_equal(kiln_placer_add(p, &small2, &err), 0);
    struct kiln_assignment out[8];
    size_t n = dispatch(p, 0, out, 8);
    /* both 8-core items fit beside the head's future 32 cores (64 - 32) */
    assert_int_equal(n, 2);
    assert_true(out[0].job_id != 3 && out[1].job_id != 3);
    char why[KILN_PLACE_REASON_MAX];
    reason_of(p, 1, 0, why);
    /* reasons describe the state after the pass, when someone asks */
    assert_string_equal(why, "needs 32 cores and 1 GiB on x86_64-linux; best host has 0 cores and "
                             "254 GiB free");
    reason_of(p, 3, 0, why);
    assert_string_equal(why, "needs 8 cores and 254.0 GiB on x86_64-linux; best host has 0 cores "
                             "and 254 GiB free");
    kiln_placer_free(p);
}

static void test_dispatch_worker_and_states(void **state)
{
    (void)state;
    struct kiln_placer *p = placer(KILN_POLICY_KILN);
    struct kiln_error err = {0};
    struct kiln_pworker a = worker(1, "a", "x86_64-linux", 16, 65536);
    struct kiln_pworker b = worker(2, "b", "x86_64-linux", 16, 65536);
    b.healthy = 0;
    struct kiln_pworker t = worker(3, "t", "x86_64-linux", 16, 65536);
    t.no_builds = 1;
    assert_int_equal(kiln_placer_set_worker(p, &a, &err), 0);
    assert_int_equal(kiln_placer_set_worker(p, &b, &err), 0);
    assert_int_equal(kiln_placer_set_worker(p, &t, &err), 0);
    for (int i = 1; i <= 3; i++) {
        struct kiln_pitem x = build(i, "x86_64-linux", 16, 1024);
        assert_int_equal(kiln_placer_add(p, &x, &err), 0);
    }
    struct kiln_assignment out[4];
    size_t n = 9;
    assert_int_equal(kiln_placer_dispatch_worker(p, 0, 2, out, 4, &n, &err), 0);
    assert_int_equal(n, 0); /* unhealthy */
    assert_int_equal(kiln_placer_dispatch_worker(p, 0, 3, out, 4, &n, &err), 0);
    assert_int_equal(n, 0); /* test host */
    assert_int_equal(kiln_placer_dispatch_worker(p, 0, 1, out, 4, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].worker_id, 1);
    assert_int_equal(kiln_placer_dispatch_worker(p, 0, 42, out, 4, &n, &err), KILN_ENOTFOUND);
    assert_int_equal(kiln_placer_remove(p, 2, 0), 0);
    assert_int_equal(kiln_placer_remove(p, 2, 0), KILN_ENOTFOUND);
    assert_int_equal(kiln_placer_queued(p), 1);
    /* cap 0: nothing placed, the item is "behind" */
    b.healthy = 1;
    assert_int_equal(kiln_placer_set_worker(p, &b, &err), 0);
    assert_int_equal(dispatch(p, 0, out, 0), 0);
    char why[KILN_PLACE_REASON_MAX];
    reason_of(p, 3, 0, why);
    assert_string_equal(why, "waiting behind higher-priority jobs");
    kiln_placer_free(p);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct kiln_placer *p = placer(KILN_POLICY_KILN);
    struct kiln_error err = {0};
    struct kiln_pitem x = build(1, "x86_64-linux", -1, 1024);
    assert_int_equal(kiln_placer_add(p, &x, &err), KILN_EINVAL);
    x = test(1, "x86_64-linux", "9z", 0);
    assert_int_equal(kiln_placer_add(p, &x, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "9z"));
    x = build(1, "x86_64-linux", 1, 1);
    x.stage = 7;
    assert_int_equal(kiln_placer_add(p, &x, &err), KILN_EINVAL);
    x = build(1, "x86_64-linux", 1, 1);
    x.est_s = NAN;
    assert_int_equal(kiln_placer_add(p, &x, &err), KILN_EINVAL);
    memset(x.platform, 'x', sizeof x.platform);
    x.est_s = 1;
    assert_int_equal(kiln_placer_add(p, &x, &err), KILN_EINVAL);
    struct kiln_pworker w = worker(1, "w", "x86_64-linux", 1, 1);
    w.ngpus = 99;
    assert_int_equal(kiln_placer_set_worker(p, &w, &err), KILN_EINVAL);
    w.ngpus = 0;
    w.cores_free = -3;
    assert_int_equal(kiln_placer_set_worker(p, &w, &err), KILN_EINVAL);
    struct kiln_assignment out[1];
    size_t n;
    assert_int_equal(kiln_placer_dispatch(p, INFINITY, out, 1, &n, &err), KILN_EINVAL);
    struct kiln_policy pol;
    kiln_policy_default(&pol);
    pol.mode = 9;
    struct kiln_placer *q = NULL;
    assert_int_equal(kiln_placer_new(&pol, &q, &err), KILN_EINVAL);
    assert_null(q);
    kiln_placer_free(p);
}

static void test_place_snapshot(void **state)
{
    (void)state;
    struct kiln_pworker ws[2];
    ws[0] = worker(10, "cpu", "x86_64-linux", 32, 131072);
    ws[1] = worker(11, "gpu", "x86_64-linux", 16, 65536);
    ws[1].isa = kiln_isa_level_features("avx2");
    add_gpu(&ws[1], "90", 580);
    struct kiln_prun running = {99, 0, 16, 65536, -1, 500};
    ws[0].cores_free = 16;
    ws[0].ram_free_mb = 65536;
    ws[0].running = &running;
    ws[0].nrunning = 1;
    struct kiln_pitem items[4];
    items[0] = build(1, "x86_64-linux", 16, 65536);
    items[1] = test(2, "x86_64-linux", "90", 560);
    items[1].isa = kiln_isa_level_features("avx2");
    items[2] = test(3, "x86_64-linux", "90", 560);
    items[3] = build(4, "x86_64-linux", 64, 1024);
    struct kiln_assignment out[4];
    char reasons[4][KILN_PLACE_REASON_MAX];
    size_t n = 0;
    struct kiln_error err = {0};
    struct kiln_policy pol;
    kiln_policy_default(&pol);
    assert_int_equal(kiln_place(&pol, 0, items, 4, ws, 2, out, &n, reasons, &err), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (out[i].job_id == 1) {
            assert_int_equal(out[i].worker, 0);
            assert_int_equal(out[i].item, 0);
        } else {
            assert_int_equal(out[i].job_id, 2);
            assert_int_equal(out[i].worker, 1);
            assert_int_equal(out[i].item, 1);
            assert_int_equal(out[i].gpu_index, 0);
        }
    }
    assert_string_equal(reasons[0], "");
    assert_string_equal(reasons[2], "all 1 GPUs with sm_90 are busy");
    assert_string_equal(reasons[3], "needs 64 cores and 1 GiB on x86_64-linux; largest host has 32 "
                                    "cores and 128 GiB");
    /* the caller's workers are untouched */
    assert_int_equal(ws[0].cores_free, 16);
    assert_int_equal(ws[1].gpus[0].busy, 0);
    /* duplicate ids are refused */
    items[1] = items[0];
    assert_int_equal(kiln_place(&pol, 0, items, 2, ws, 2, out, &n, NULL, &err), KILN_EINVAL);
}

static void test_dag(void **state)
{
    (void)state;
    /* 0 <- 1 <- 3, 0 <- 2 */
    size_t off[] = {0, 0, 1, 2, 3};
    size_t deps[] = {0, 0, 1};
    double est[] = {10, 5, 1, 7};
    double crit[4];
    struct kiln_error err = {0};
    assert_int_equal(kiln_dag_critical_paths(4, est, off, deps, crit, &err), 0);
    assert_true(fabs(crit[0] - 22) < 1e-9);
    assert_true(fabs(crit[1] - 12) < 1e-9);
    assert_true(fabs(crit[2] - 1) < 1e-9);
    assert_true(fabs(crit[3] - 7) < 1e-9);
    size_t order[4];
    assert_int_equal(kiln_dag_topo_order(4, off, deps, order, &err), 0);
    assert_int_equal(order[0], 0);
    size_t cyc_off[] = {0, 1, 2};
    size_t cyc[] = {1, 0};
    assert_int_equal(kiln_dag_topo_order(2, cyc_off, cyc, order, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "cycle"));
    size_t bad[] = {5, 0};
    assert_int_equal(kiln_dag_critical_paths(2, est, cyc_off, bad, crit, &err), KILN_EINVAL);
}

/* ---------- randomized property test ---------- */

struct rng {
    uint64_t s;
};

static uint32_t rnd(struct rng *r, uint32_t n)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return n ? (uint32_t)((r->s >> 11) % n) : 0;
}

static const char *const SMS[] = {"61", "70",  "75",  "80",   "86",  "89",
                                  "90", "90a", "100", "100f", "103", "120"};
static const char *const LEVELS[] = {"avx",        "avx2",    "avx512", "avx512bf16",
                                     "avx512vnni", "armv8_2", "armv9"};
static const char *const PLATS[] = {"x86_64-linux", "aarch64-linux"};

#define PT_MAXW 6
#define PT_MAXJ 24

struct pjob {
    struct kiln_pitem b, t;
    int has_test;
    int ndeps;
    int deps[3];
    int bstate, tstate; /* 0 waiting, 1 queued, 2 running, 3 done */
    double bstart;
};

/* The rules, written independently of placement.c. */
static int ref_sm(const char *gpu, const char *need, int compat)
{
    if (!strcmp(gpu, need)) return 1;
    size_t ln = strlen(need), lg = strlen(gpu);
    char last = need[ln - 1];
    if (last == 'a' || last == 'f') {
        /* arch-specific: the GPU must be that exact arch */
        return lg == ln - 1 && !strncmp(gpu, need, lg);
    }
    if (!compat) return 0;
    int g = atoi(gpu), n = atoi(need);
    return g / 10 == n / 10 && g % 10 >= n % 10;
}

static int ref_can_ever(const struct kiln_pitem *it, const struct kiln_pworker *w)
{
    if (strcmp(it->platform, w->platform)) return 0;
    if (it->stage == KILN_PSTAGE_BUILD && w->no_builds) return 0;
    if ((w->isa & it->isa) != it->isa) return 0;
    if (w->cores_total < it->cores || w->ram_total_mb < it->ram_mb) return 0;
    if (it->stage == KILN_PSTAGE_TEST && it->gpu_sm[0]) {
        for (int g = 0; g < w->ngpus; g++)
            if (ref_sm(w->gpus[g].sm, it->gpu_sm, it->sm_compat) &&
                w->gpus[g].driver >= it->driver_min)
                return 1;
        return 0;
    }
    return 1;
}

struct prun {
    int job, stage, w, gpu;
    double end;
};

static void gen_worker(struct rng *r, int id, struct kiln_pworker *w)
{
    int plat = rnd(r, 4) == 0;
    *w = worker(id, "w", PLATS[plat], 4 << rnd(r, 5), (int64_t)8192 << rnd(r, 6));
    snprintf(w->name, sizeof w->name, "w%d", id);
    const char *lvl = LEVELS[plat ? 5 + rnd(r, 2) : rnd(r, 5)];
    w->isa = kiln_isa_level_features(lvl);
    if (rnd(r, 3) == 0) w->isa |= kiln_isa_level_features(plat ? "armv9" : "avx512vnni");
    int ng = rnd(r, 3) ? (int)rnd(r, 4) : 0;
    for (int g = 0; g < ng; g++) {
        const char *sm = SMS[rnd(r, 12)];
        char plain[8];
        snprintf(plain, sizeof plain, "%.*s", (int)strcspn(sm, "af"), sm);
        add_gpu(w, plain, 540 + (int)rnd(r, 5) * 10);
    }
    w->no_builds = ng && rnd(r, 3) == 0;
}

static void gen_job(struct rng *r, int j, struct pjob *pj, const struct kiln_pworker *ws, int nw)
{
    memset(pj, 0, sizeof *pj);
    const struct kiln_pworker *like = &ws[rnd(r, (uint32_t)nw)];
    /* mostly feasible: shaped after a worker; sometimes arbitrary */
    const char *plat = rnd(r, 8) ? like->platform : PLATS[rnd(r, 2)];
    int cores = 1 + (int)rnd(r, (uint32_t)(rnd(r, 8) ? like->cores_total : 128));
    int64_t ram = 512 + (int64_t)rnd(r, (uint32_t)(rnd(r, 8) ? like->ram_total_mb : 600000));
    pj->b = build(j + 1, plat, cores, ram);
    pj->b.priority = (int)rnd(r, 4);
    pj->b.est_s = rnd(r, 6) ? 1 + rnd(r, 100) : 0; /* 0: no estimate */
    pj->b.enqueued_at = 0;
    pj->has_test = rnd(r, 3) != 0;
    if (pj->has_test) {
        const char *sm = SMS[rnd(r, 12)];
        if (like->ngpus && rnd(r, 4)) {
            const struct kiln_pgpu *g = &like->gpus[rnd(r, (uint32_t)like->ngpus)];
            sm = g->sm;
        }
        pj->t = test(j + 1, plat, sm, 530 + (int)rnd(r, 5) * 10);
        pj->t.sm_compat = (int)rnd(r, 2);
        pj->t.cores = 1 + (int)rnd(r, 8);
        pj->t.ram_mb = 256 + (int64_t)rnd(r, 16384);
        pj->t.est_s = 1 + rnd(r, 20);
        pj->t.priority = pj->b.priority;
        if (rnd(r, 2)) {
            const char *lvl = LEVELS[strcmp(plat, "x86_64-linux") ? 5 + rnd(r, 2) : rnd(r, 5)];
            pj->t.isa = kiln_isa_level_features(lvl);
        }
        if (rnd(r, 5) == 0) pj->t.gpu_sm[0] = 0; /* CPU-only test */
    }
    pj->ndeps = j ? (int)rnd(r, 3) : 0;
    for (int k = 0; k < pj->ndeps; k++)
        pj->deps[k] = (int)rnd(r, (uint32_t)j);
}

/* One scenario: returns the number of placements checked. */
static int run_scenario(uint64_t seed, int mode)
{
    struct rng r = {seed * 2654435761u + 88172645463325252ull};
    for (int i = 0; i < 3; i++)
        rnd(&r, 2);
    int nw = 1 + (int)rnd(&r, PT_MAXW);
    int nj = 1 + (int)rnd(&r, PT_MAXJ);
    struct kiln_pworker ws[PT_MAXW];
    struct pjob jobs[PT_MAXJ];
    for (int i = 0; i < nw; i++)
        gen_worker(&r, i + 1, &ws[i]);
    for (int j = 0; j < nj; j++)
        gen_job(&r, j, &jobs[j], ws, nw);
    struct kiln_policy pol;
    kiln_policy_default(&pol);
    pol.mode = mode;
    pol.backfill = (int)rnd(&r, 4) != 0;
    struct kiln_placer *p = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_placer_new(&pol, &p, &err), 0);
    for (int i = 0; i < nw; i++)
        assert_int_equal(kiln_placer_set_worker(p, &ws[i], &err), 0);
    int used_c[PT_MAXW] = {0};
    int64_t used_r[PT_MAXW] = {0};
    int gpu_busy[PT_MAXW][KILN_PLACE_MAX_GPUS];
    memset(gpu_busy, 0, sizeof gpu_busy);
    struct prun run[2 * PT_MAXJ];
    int nrun = 0, placed = 0;
    double now = 0;
    struct kiln_assignment out[2 * PT_MAXJ];
    for (int iter = 0; iter < 8 * PT_MAXJ + 8; iter++) {
        /* queue what became ready */
        for (int j = 0; j < nj; j++) {
            struct pjob *pj = &jobs[j];
            if (pj->bstate == 0) {
                int ready = 1;
                for (int k = 0; k < pj->ndeps; k++)
                    if (jobs[pj->deps[k]].bstate != 3) ready = 0;
                if (ready) {
                    assert_int_equal(kiln_placer_add(p, &pj->b, &err), 0);
                    pj->bstate = 1;
                }
            }
            if (pj->has_test && pj->bstate == 3 && pj->tstate == 0) {
                assert_int_equal(kiln_placer_add(p, &pj->t, &err), 0);
                pj->tstate = 1;
            }
        }
        size_t n = 0;
        assert_int_equal(kiln_placer_dispatch(p, now, out, 2 * PT_MAXJ, &n, &err), 0);
        for (size_t k = 0; k < n; k++) {
            int j = (int)out[k].job_id - 1;
            assert_true(j >= 0 && j < nj);
            struct pjob *pj = &jobs[j];
            const struct kiln_pitem *it = out[k].stage == KILN_PSTAGE_TEST ? &pj->t : &pj->b;
            int *st = out[k].stage == KILN_PSTAGE_TEST ? &pj->tstate : &pj->bstate;
            assert_int_equal(*st, 1); /* only queued (so: ready) items start */
            /* dependency order */
            if (out[k].stage == KILN_PSTAGE_BUILD)
                for (int d = 0; d < pj->ndeps; d++)
                    assert_int_equal(jobs[pj->deps[d]].bstate, 3);
            else
                assert_int_equal(pj->bstate, 3);
            int w = (int)out[k].worker_id - 1;
            assert_true(w >= 0 && w < nw);
            assert_true(ref_can_ever(it, &ws[w]));
            used_c[w] += it->cores;
            used_r[w] += it->ram_mb;
            assert_true(used_c[w] <= ws[w].cores_total);
            assert_true(used_r[w] <= ws[w].ram_total_mb);
            int g = -1;
            if (out[k].stage == KILN_PSTAGE_TEST && it->gpu_sm[0]) {
                g = out[k].gpu_index;
                assert_true(g >= 0 && g < ws[w].ngpus);
                assert_true(ref_sm(ws[w].gpus[g].sm, it->gpu_sm, it->sm_compat));
                assert_true(ws[w].gpus[g].driver >= it->driver_min);
                assert_int_equal(gpu_busy[w][g], 0);
                gpu_busy[w][g] = 1;
            } else {
                assert_int_equal(out[k].gpu_index, -1);
            }
            *st = 2;
            run[nrun++] =
                (struct prun){j, out[k].stage, w, g, now + (it->est_s > 0 ? it->est_s : 37)};
            placed++;
        }
        if (!nrun) break;
        /* finish the earliest */
        int m = 0;
        for (int i = 1; i < nrun; i++)
            if (run[i].end < run[m].end) m = i;
        struct prun f = run[m];
        run[m] = run[--nrun];
        now = f.end;
        struct pjob *pj = &jobs[f.job];
        const struct kiln_pitem *it = f.stage == KILN_PSTAGE_TEST ? &pj->t : &pj->b;
        used_c[f.w] -= it->cores;
        used_r[f.w] -= it->ram_mb;
        if (f.gpu >= 0) gpu_busy[f.w][f.gpu] = 0;
        assert_int_equal(kiln_placer_finish(p, f.job + 1, f.stage), 0);
        if (f.stage == KILN_PSTAGE_TEST)
            pj->tstate = 3;
        else
            pj->bstate = 3;
    }
    /* liveness: what is left is exactly what no worker could ever run (or
       waits on such a thing) */
    assert_int_equal(nrun, 0);
    for (int j = 0; j < nj; j++) {
        struct pjob *pj = &jobs[j];
        int feasible_b = 0, feasible_t = 0;
        for (int w = 0; w < nw; w++) {
            feasible_b |= ref_can_ever(&pj->b, &ws[w]);
            if (pj->has_test) feasible_t |= ref_can_ever(&pj->t, &ws[w]);
        }
        if (pj->bstate == 1) {
            assert_false(feasible_b);
            char why[KILN_PLACE_REASON_MAX];
            reason_of(p, j + 1, 0, why);
            assert_true(strlen(why) > 10);
        }
        if (pj->bstate == 0) {
            int blocked = 0;
            for (int k = 0; k < pj->ndeps; k++)
                if (jobs[pj->deps[k]].bstate != 3) blocked = 1;
            assert_true(blocked);
        }
        if (pj->has_test && pj->tstate == 1) assert_false(feasible_t);
        if (pj->bstate == 3 && pj->has_test) assert_true(pj->tstate == 3 || !feasible_t);
    }
    kiln_placer_free(p);
    return placed;
}

/* Constant high-priority load on one host; a low-priority job that needs the
 * whole host must still start within (priority gap / aging) + one job. */
static void run_starvation(uint64_t seed)
{
    struct rng r = {seed * 7919 + 12345};
    rnd(&r, 2);
    struct kiln_policy pol;
    kiln_policy_default(&pol);
    pol.aging_per_hour = 1 + rnd(&r, 4);
    struct kiln_placer *p = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_placer_new(&pol, &p, &err), 0);
    struct kiln_pworker w = worker(1, "h", "x86_64-linux", 16, 65536);
    assert_int_equal(kiln_placer_set_worker(p, &w, &err), 0);
    int gap = 1 + (int)rnd(&r, 5);
    double job_s = 300 + rnd(&r, 1200);
    struct kiln_pitem big = build(1, "x86_64-linux", 16, 65536);
    big.priority = 0;
    big.est_s = job_s;
    int64_t next_id = 2;
    double now = 0;
    struct kiln_pitem hi = build(0, "x86_64-linux", 4, 4096);
    hi.priority = gap;
    hi.est_s = job_s;
    if (seed % 3 == 0) {
        /* the service case: nobody knows how long anything takes */
        hi.est_s = 0;
        big.est_s = 0;
    }
    /* fill the host and the queue before the big job arrives */
    for (int i = 0; i < 8; i++) {
        hi.job_id = next_id++;
        hi.enqueued_at = now;
        assert_int_equal(kiln_placer_add(p, &hi, &err), 0);
    }
    assert_int_equal(kiln_placer_add(p, &big, &err), 0);
    struct prun run[64];
    int nrun = 0;
    double started = -1;
    struct kiln_assignment out[64];
    /* crossover of the aging keys, then the backlog queued before it (at most
       10 jobs, 4 at a time, each up to 1.5x its estimate) and one more round */
    double bound = gap / pol.aging_per_hour * 3600 + 6 * 1.5 * job_s + 120;
    for (int iter = 0; iter < 5000 && started < 0; iter++) {
        size_t n = 0;
        assert_int_equal(kiln_placer_dispatch(p, now, out, 64, &n, &err), 0);
        for (size_t k = 0; k < n; k++) {
            if (out[k].job_id == 1) started = now;
            assert_true(nrun < 64);
            run[nrun++] = (struct prun){(int)out[k].job_id, 0, 0, -1,
                                        now + job_s * (0.5 + rnd(&r, 100) / 100.0)};
        }
        if (started >= 0) break;
        assert_true(nrun > 0);
        int m = 0;
        for (int i = 1; i < nrun; i++)
            if (run[i].end < run[m].end) m = i;
        now = run[m].end;
        assert_int_equal(kiln_placer_finish(p, run[m].job, 0), 0);
        run[m] = run[--nrun];
        /* the load never stops: two new high-priority jobs per finished one */
        for (int i = 0; i < 2 && kiln_placer_queued(p) < 10; i++) {
            hi.job_id = next_id++;
            hi.enqueued_at = now;
            assert_int_equal(kiln_placer_add(p, &hi, &err), 0);
        }
    }
    if (started < 0 || started > bound)
        fail_msg("seed %llu: low-priority job started at %.0f s, bound %.0f s",
                 (unsigned long long)seed, started, bound);
    kiln_placer_free(p);
}

static void test_property_random_scenarios(void **state)
{
    (void)state;
    long placed = 0;
    const int N = 10000;
    for (int s = 0; s < N; s++)
        placed += run_scenario((uint64_t)s + 1, s % 5 == 4    ? KILN_POLICY_FIFO
                                                : s % 10 == 3 ? KILN_POLICY_EASY
                                                              : KILN_POLICY_KILN);
    assert_true(placed > N); /* the generator yields real work */
    for (int s = 0; s < 500; s++)
        run_starvation((uint64_t)s + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sm_rules),
        cmocka_unit_test(test_build_never_overcommits_and_best_fit),
        cmocka_unit_test(test_host_policy_spread_pack),
        cmocka_unit_test(test_rule_platform),
        cmocka_unit_test(test_rule_named_worker),
        cmocka_unit_test(test_rule_cores_and_ram_never_overcommit),
        cmocka_unit_test(test_rule_isa),
        cmocka_unit_test(test_rule_sm_exact),
        cmocka_unit_test(test_rule_sm_compat_newer_minor_same_major),
        cmocka_unit_test(test_rule_arch_specific_exact_only),
        cmocka_unit_test(test_rule_driver_min),
        cmocka_unit_test(test_rule_one_test_per_gpu),
        cmocka_unit_test(test_rule_worker_takes_work),
        cmocka_unit_test(test_rule_no_builds),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_one_test_per_gpu_and_compat),
        cmocka_unit_test(test_priority_aging_and_critical_path),
        cmocka_unit_test(test_fifo_first_fit),
        cmocka_unit_test(test_slack_longest_first),
        cmocka_unit_test(test_easy_backfill),
        cmocka_unit_test(test_reservation_and_backfill),
        cmocka_unit_test(test_reservation_without_estimates),
        cmocka_unit_test(test_dispatch_worker_and_states),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_place_snapshot),
        cmocka_unit_test(test_dag),
        cmocka_unit_test(test_property_random_scenarios),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
