/* Unit tests for scheduler/farm (farm YAML) and scheduler/sim (the
 * simulator), including the seed acceptance check: the 98 vLLM variants and
 * their PyTorch dependencies on bench/farms/seed-farm.yaml finish within
 * 1.05x of the lower bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/isa.h"
#include "recipes/recipe.h"
#include "scheduler/farm.h"
#include "scheduler/sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char FARM[] = "hosts:\n"
                           "  - name: build\n"
                           "    count: 2\n"
                           "    cores: 32\n"
                           "    ram: 128GiB\n"
                           "    isa: avx2\n"
                           "  - name: arm\n"
                           "    cores: 16\n"
                           "    ram_mb: 65536\n"
                           "    isa: armv9\n"
                           "  - name: h100\n"
                           "    cores: 8\n"
                           "    ram: 64G\n"
                           "    isa: [avx512bf16, avx512_vnni]\n"
                           "    builds: false\n"
                           "    speed: 2\n"
                           "    gpus:\n"
                           "      - {model: H100, sm: \"90\", driver: \"580.65.06\", count: 2}\n"
                           "      - {sm: 80, driver: 550}\n";

static void parse_farm(const char *text, struct kiln_farm *f)
{
    struct kiln_error err = {0};
    int rc = kiln_farm_parse("farm.yaml", text, strlen(text), f, &err);
    if (rc) fail_msg("farm did not parse: %s", err.msg);
}

static void test_farm_parse(void **state)
{
    (void)state;
    struct kiln_farm f;
    parse_farm(FARM, &f);
    assert_int_equal(f.nhosts, 4);
    assert_string_equal(f.hosts[0].name, "build-1");
    assert_string_equal(f.hosts[1].name, "build-2");
    assert_string_equal(f.hosts[1].kind, "build");
    assert_string_equal(f.hosts[0].platform, "x86_64-linux");
    assert_int_equal(f.hosts[0].ram_mb, 131072);
    assert_int_equal(f.hosts[0].isa, kiln_isa_level_features("avx2"));
    assert_string_equal(f.hosts[2].platform, "aarch64-linux"); /* from the ISA level */
    assert_int_equal(f.hosts[2].ram_mb, 65536);
    assert_int_equal(f.hosts[3].ngpus, 3);
    assert_string_equal(f.hosts[3].gpus[1].sm, "90");
    assert_int_equal(f.hosts[3].gpus[1].driver, 580);
    assert_int_equal(f.hosts[3].gpus[2].index, 2);
    assert_string_equal(f.hosts[3].gpus[2].sm, "80");
    assert_int_equal(f.hosts[3].no_builds, 1);
    assert_true(fabs(f.hosts[3].speed - 2) < 1e-9);
    assert_true((f.hosts[3].isa & KILN_ISA_AVX512_VNNI) != 0);
    struct kiln_error err = {0};
    assert_int_equal(kiln_farm_add_like(&f, "build", 2, &err), 0);
    assert_int_equal(f.nhosts, 6);
    assert_string_equal(f.hosts[4].name, "build-added1");
    assert_string_equal(f.hosts[5].name, "build-added2");
    assert_int_equal(kiln_farm_add_like(&f, "nope", 1, &err), KILN_ENOTFOUND);
    struct kiln_pworker w;
    kiln_farm_worker(&f, 3, &w);
    assert_int_equal(w.id, 4);
    assert_int_equal(w.no_builds, 1);
    assert_int_equal(w.state, KILN_PW_ONLINE);
    kiln_farm_free(&f);
}

static void expect_farm_error(const char *text, const char *needle)
{
    struct kiln_farm f;
    struct kiln_error err = {0};
    int rc = kiln_farm_parse("farm.yaml", text, strlen(text), &f, &err);
    if (rc == 0) fail_msg("farm should not parse: %s", text);
    if (!strstr(err.msg, needle)) fail_msg("error \"%s\" lacks \"%s\"", err.msg, needle);
    assert_null(f.hosts);
}

static void test_farm_errors(void **state)
{
    (void)state;
    expect_farm_error("hosts: []\n", "non-empty list");
    expect_farm_error("- a\n", "mapping");
    expect_farm_error("hostz: []\n", "unknown key 'hostz'");
    expect_farm_error("hosts:\n  - name: a\n    ram: 1G\n", "hosts[0] (a): cores");
    expect_farm_error("hosts:\n  - name: a\n    cores: 0\n    ram: 1G\n", "cores");
    expect_farm_error("hosts:\n  - name: a\n    cores: 4\n", "ram");
    expect_farm_error("hosts:\n  - name: a\n    cores: 4\n    ram: lots\n", "ram must be a size");
    expect_farm_error("hosts:\n  - name: a\n    cores: 4\n    ram: 1G\n    colour: red\n",
                      "unknown key 'colour'");
    expect_farm_error("hosts:\n  - name: a\n    cores: 4\n    ram: 1G\n    isa: avx9\n", "avx9");
    expect_farm_error("hosts:\n  - name: a\n    cores: 4\n    ram: 1G\n    gpus: [{sm: nine}]\n",
                      "sm must be like");
    expect_farm_error("hosts:\n  - name: a\n    cores: 4\n    ram: 1G\n    gpus: [{sm: 90, "
                      "count: 99}]\n",
                      "count must be");
    expect_farm_error("hosts:\n  - {name: a, cores: 4, ram: 1G}\n  - {name: a, cores: 4, ram: "
                      "1G}\n",
                      "two hosts are named a");
    expect_farm_error("hosts:\n  - {name: a, cores: 4, ram: 1G, count: 100000}\n", "count");
    expect_farm_error("hosts:\n  - {name: a, cores: 4, ram: 1G, builds: maybe}\n", "builds");
    expect_farm_error("hosts: [\n", "farm.yaml:");
}

/* Two PyTorch builds (3 units), two vLLM builds depending on them (4 units),
 * each with a test (1 unit on the H100 host, speed 2). */
static json_t *small_variants(void)
{
    const char *js = "["
                     "{\"name\":\"vllm-a\",\"platform\":\"x86_64-linux\","
                     " \"resources\":{\"cores\":16,\"ram_mb\":65536,\"est_duration_s\":400},"
                     " \"depends\":[\"torch-a\"],"
                     " \"selftest\":{\"sm\":\"90\",\"isa\":\"avx512\",\"driver_min\":560,"
                     "   \"est_duration_s\":100}},"
                     "{\"name\":\"vllm-b\",\"platform\":\"x86_64-linux\","
                     " \"resources\":{\"cores\":16,\"ram_mb\":65536,\"est_duration_s\":400},"
                     " \"depends\":[\"torch-b\", \"not-in-the-set\"],"
                     " \"selftest\":{\"sm\":\"90\",\"isa\":\"avx512\",\"driver_min\":560,"
                     "   \"est_duration_s\":100}},"
                     "{\"name\":\"torch-a\",\"platform\":\"x86_64-linux\","
                     " \"resources\":{\"cores\":16,\"ram_mb\":32768,\"est_duration_s\":300}},"
                     "{\"name\":\"torch-b\",\"platform\":\"x86_64-linux\","
                     " \"resources\":{\"cores\":16,\"ram_mb\":32768,\"est_duration_s\":300}}"
                     "]";
    json_error_t je;
    json_t *v = json_loads(js, 0, &je);
    if (!v) fail_msg("bad test JSON: %s", je.text);
    return v;
}

static void test_sim_small(void **state)
{
    (void)state;
    struct kiln_farm f;
    parse_farm(FARM, &f);
    json_t *v = small_variants();
    struct kiln_sim_opts o;
    kiln_sim_opts_default(&o);
    struct kiln_sim_result r;
    struct kiln_error err = {0};
    assert_int_equal(kiln_sim_run(&f, v, &o, &r, &err), 0);
    assert_int_equal(r.ntasks, 6);
    assert_int_equal(r.nplaced, 6);
    assert_int_equal(r.nunplaceable, 0);
    assert_int_equal(r.missing_deps, 1);
    /* torch builds in parallel (300), vLLM builds (400), tests on two GPUs at
       speed 2 (50): 750 */
    assert_true(fabs(r.makespan - 750) < 1e-6);
    /* chain: 300 + 400 + 100 nominal; the bound divides by the best speed */
    assert_true(fabs(r.lb_chain - 400) < 1e-6);
    assert_true(r.lower_bound <= r.makespan + 1e-9);
    for (size_t i = 0; i < r.ntasks; i++) {
        const struct kiln_sim_task *t = &r.tasks[i];
        if (!strcmp(t->name, "vllm-a") && t->stage == KILN_PSTAGE_BUILD) {
            for (size_t j = 0; j < r.ntasks; j++)
                if (!strcmp(r.tasks[j].name, "torch-a")) assert_true(t->start >= r.tasks[j].end);
        }
        if (t->stage == KILN_PSTAGE_TEST) {
            assert_string_equal(r.hosts[t->host].name, "h100");
            assert_true(t->gpu == 0 || t->gpu == 1);
        } else {
            assert_true(t->host <= 1); /* builds only on the x86 build hosts */
        }
    }
    assert_int_equal(r.hosts[0].ram_peak_mb + r.hosts[1].ram_peak_mb, 131072);
    struct kiln_buf b = {0};
    assert_int_equal(kiln_sim_svg(&f, &r, "small <farm>", &b), 0);
    assert_non_null(strstr(b.data, "<svg"));
    assert_non_null(strstr(b.data, "small &lt;farm&gt;"));
    assert_non_null(strstr(b.data, "h100"));
    assert_non_null(strstr(b.data, "gpu1 sm_90"));
    assert_non_null(strstr(b.data, "</svg>"));
    kiln_buf_free(&b);
    json_t *j = kiln_sim_json(&r, 1);
    assert_non_null(j);
    assert_true(fabs(json_real_value(json_object_get(j, "makespan_s")) - 750) < 1e-6);
    assert_int_equal(json_array_size(json_object_get(j, "tasks")), 6);
    json_decref(j);
    kiln_sim_result_free(&r);

    /* dependents waiting for the dependency's test too: the tests of the
       torch builds do not exist, so nothing changes; FIFO gives the same here */
    o.deps_wait_test = 1;
    o.policy.mode = KILN_POLICY_FIFO;
    assert_int_equal(kiln_sim_run(&f, v, &o, &r, &err), 0);
    assert_true(fabs(r.makespan - 750) < 1e-6);
    kiln_sim_result_free(&r);
    json_decref(v);
    kiln_farm_free(&f);
}

static void test_sim_unplaceable_and_errors(void **state)
{
    (void)state;
    struct kiln_farm f;
    parse_farm(FARM, &f);
    json_error_t je;
    json_t *v = json_loads("[{\"name\":\"x\",\"platform\":\"x86_64-linux\","
                           "\"resources\":{\"cores\":4,\"ram_mb\":1024,\"est_duration_s\":60},"
                           "\"selftest\":{\"sm\":\"120\",\"driver_min\":560}},"
                           "{\"name\":\"y\",\"platform\":\"x86_64-linux\",\"depends\":[\"z\"],"
                           "\"resources\":{\"cores\":4,\"ram_mb\":1024}},"
                           "{\"name\":\"z\",\"platform\":\"x86_64-linux\","
                           "\"resources\":{\"cores\":400,\"ram_mb\":1024}}]",
                           0, &je);
    assert_non_null(v);
    struct kiln_sim_result r;
    struct kiln_error err = {0};
    assert_int_equal(kiln_sim_run(&f, v, NULL, &r, &err), 0);
    assert_int_equal(r.nunplaceable, 3);
    for (size_t i = 0; i < r.ntasks; i++) {
        const struct kiln_sim_task *t = &r.tasks[i];
        if (!strcmp(t->name, "x") && t->stage == KILN_PSTAGE_TEST)
            assert_string_equal(t->reason, "no online worker with sm_120");
        if (!strcmp(t->name, "y"))
            assert_string_equal(t->reason, "waits for the build of z, which cannot run");
        if (!strcmp(t->name, "z")) assert_non_null(strstr(t->reason, "needs 400 cores"));
    }
    kiln_sim_result_free(&r);
    json_decref(v);

    const char *bad[] = {
        "{}",
        "[1]",
        "[{\"name\":\"a\",\"depends\":[\"b\"]},{\"name\":\"b\",\"depends\":[\"a\"]}]",
        "[{\"name\":\"a\"},{\"name\":\"a\"}]",
        "[{\"name\":\"a\",\"resources\":{\"cores\":-1}}]",
        "[{\"name\":\"a\",\"selftest\":{\"sm\":\"nine\"}}]",
        "[{\"name\":\"a\",\"selftest\":{\"sm\":\"90\",\"isa\":\"avx9\"}}]",
        "[{\"name\":\"a\",\"depends\":\"b\"}]",
        "[{\"name\":\"a\",\"depends\":[\"a\"]}]",
    };
    const char *needle[] = {"array",       "not an object", "cycle",   "twice", "non-negative",
                            "selftest.sm", "avx9",          "depends", "itself"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = json_loads(bad[i], 0, &je);
        assert_non_null(v);
        int rc = kiln_sim_run(&f, v, NULL, &r, &err);
        if (rc != KILN_EINVAL || !strstr(err.msg, needle[i]))
            fail_msg("case %zu: rc %d, message \"%s\"", i, rc, err.msg);
        json_decref(v);
    }
    kiln_farm_free(&f);
}

/* A small seed: 7 PyTorch-like builds (3 h, 64 GiB) each needed by a
 * vLLM-like build (4 h, 128 GiB), 3 vLLM-like builds with no dependency, all
 * with a 10-minute GPU test; one 4-slot build host, two GPUs. The critical-
 * path order ran the seven 3 h builds first and left a last wave of 4 h
 * builds alone: 18h 10m. With slack (placement.c) the independent 4 h builds
 * go first and the 3 h ones fill in: 17h 10m. The bound is 976 core-hours
 * over 64 cores, then a 10-minute test: 15h 25m. FIFO and EASY (submit
 * order: the dependent builds first) take 19h 20m. */
static void test_sim_slack_small_seed(void **state)
{
    (void)state;
    const char *farm = "hosts:\n"
                       "  - {name: build, cores: 64, ram: 512GiB, isa: avx2}\n"
                       "  - name: gpu\n"
                       "    cores: 32\n"
                       "    ram: 256GiB\n"
                       "    isa: avx2\n"
                       "    builds: false\n"
                       "    gpus: [{sm: \"90\", driver: \"580.65.06\", count: 2}]\n";
    struct kiln_farm f;
    parse_farm(farm, &f);
    json_t *v = json_array();
    for (int i = 0; i < 17; i++) {
        char name[32], dep[32];
        int indep = i < 3, pt = i >= 10;
        snprintf(name, sizeof name,
                 pt      ? "p-%d"
                 : indep ? "v-free-%d"
                         : "v-%d",
                 pt      ? i - 10
                 : indep ? i
                         : i - 3);
        snprintf(dep, sizeof dep, "p-%d", i - 3);
        json_t *x = json_pack("{s:s,s:s,s:{s:i,s:I,s:i},s:{s:s,s:i}}", "name", name, "platform",
                              "x86_64-linux", "resources", "cores", 16, "ram_mb",
                              (json_int_t)(pt ? 65536 : 131072), "est_duration_s",
                              pt ? 10800 : 14400, "selftest", "sm", "90", "est_duration_s", 600);
        assert_non_null(x);
        if (!pt && !indep) json_object_set_new(x, "depends", json_pack("[s]", dep));
        json_array_append_new(v, x);
    }
    struct kiln_sim_opts o;
    kiln_sim_opts_default(&o);
    struct kiln_sim_result r;
    struct kiln_error err = {0};
    double want[3] = {17 * 3600 + 600, 19 * 3600 + 1200, 19 * 3600 + 1200}; /* kiln, fifo, easy */
    for (int mode = KILN_POLICY_KILN; mode <= KILN_POLICY_EASY; mode++) {
        o.policy.mode = mode;
        assert_int_equal(kiln_sim_run(&f, v, &o, &r, &err), 0);
        assert_int_equal(r.nplaced, 34);
        /* 7 x 3 h + 10 x 4 h on 4 slots is 15h 15m on average, but a slot
           holds whole builds: 16 h at least (slot_bound.h), then a test */
        assert_true(fabs(r.lower_bound - (16 * 3600 + 600)) < 1e-6);
        if (fabs(r.makespan - want[mode]) > 1e-6)
            fail_msg("policy %d: makespan %.0f s, expected %.0f s", mode, r.makespan, want[mode]);
        kiln_sim_result_free(&r);
    }
    json_decref(v);
    kiln_farm_free(&f);
}

/* The bound stays a bound: on random small farms (mixed cores, RAM and
 * durations, dependencies, tests on two GPUs) no policy's makespan is below
 * it, with the slot terms of slot_bound.h in it. */
static void test_sim_bound_below_every_policy(void **state)
{
    (void)state;
    const char *farm = "hosts:\n"
                       "  - {name: a, cores: 48, ram: 192GiB, isa: avx2}\n"
                       "  - {name: b, cores: 32, ram: 160GiB, isa: avx2}\n"
                       "  - name: gpu\n"
                       "    cores: 16\n"
                       "    ram: 64GiB\n"
                       "    isa: avx2\n"
                       "    builds: false\n"
                       "    gpus: [{sm: \"90\", driver: \"580.65.06\", count: 2}]\n";
    struct kiln_farm f;
    parse_farm(farm, &f);
    unsigned seed = 7;
    int lifted = 0;
    for (int round = 0; round < 60; round++) {
        json_t *v = json_array();
        int n = 3 + (int)(rand_r(&seed) % 14);
        for (int i = 0; i < n; i++) {
            char name[16], dep[16];
            snprintf(name, sizeof name, "v-%d", i);
            json_t *x =
                json_pack("{s:s,s:s,s:{s:i,s:I,s:i}}", "name", name, "platform", "x86_64-linux",
                          "resources", "cores", 8 * (1 + (int)(rand_r(&seed) % 3)), "ram_mb",
                          (json_int_t)32768 * (1 + rand_r(&seed) % 4), "est_duration_s",
                          1800 * (1 + (int)(rand_r(&seed) % 8)));
            assert_non_null(x);
            if (rand_r(&seed) % 2)
                json_object_set_new(x, "selftest",
                                    json_pack("{s:s,s:i}", "sm", "90", "est_duration_s", 600));
            if (i > 0 && rand_r(&seed) % 3 == 0) {
                snprintf(dep, sizeof dep, "v-%d", (int)(rand_r(&seed) % (unsigned)i));
                json_object_set_new(x, "depends", json_pack("[s]", dep));
            }
            json_array_append_new(v, x);
        }
        struct kiln_sim_opts o;
        kiln_sim_opts_default(&o);
        for (int mode = KILN_POLICY_KILN; mode <= KILN_POLICY_EASY; mode++) {
            struct kiln_sim_result r;
            struct kiln_error err = {0};
            o.policy.mode = mode;
            assert_int_equal(kiln_sim_run(&f, v, &o, &r, &err), 0);
            if (r.lower_bound > r.makespan + 1e-6)
                fail_msg("round %d, policy %d: bound %.0f s above makespan %.0f s", round, mode,
                         r.lower_bound, r.makespan);
            lifted += mode == KILN_POLICY_KILN && strstr(r.bound_what, "whole tasks") != NULL;
            kiln_sim_result_free(&r);
        }
        json_decref(v);
    }
    assert_true(lifted > 0); /* the slot terms bind on some of these farms */
    kiln_farm_free(&f);
}

/* The acceptance check on the real recipes (skipped when they are absent). */
static void test_sim_seed_within_bound(void **state)
{
    (void)state;
    if (access("recipes/vllm.yaml", R_OK) || access("recipes/pytorch.yaml", R_OK) ||
        access("bench/farms/seed-farm.yaml", R_OK))
        skip();
    struct kiln_error err = {0};
    json_t *vl = NULL, *pt = NULL;
    if (kiln_recipe_expand_file("recipes/vllm.yaml", NULL, NULL, &vl, &err))
        fail_msg("%s", err.msg);
    if (kiln_recipe_expand_file("recipes/pytorch.yaml", NULL, NULL, &pt, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(json_array_size(vl), 98);
    /* the PyTorch variants the vLLM ones depend on */
    json_t *all = json_copy(vl);
    size_t i;
    json_t *x;
    json_array_foreach(pt, i, x)
    {
        const char *name = json_string_value(json_object_get(x, "name"));
        size_t k;
        json_t *y;
        int needed = 0;
        json_array_foreach(vl, k, y)
        {
            json_t *d = json_array_get(json_object_get(y, "depends"), 0);
            if (d && !strcmp(json_string_value(d), name)) needed = 1;
        }
        if (needed) json_array_append(all, x);
    }
    struct kiln_farm f;
    assert_int_equal(kiln_farm_parse("bench/farms/seed-farm.yaml", NULL, 0, &f, &err), 0);
    struct kiln_sim_opts o;
    kiln_sim_opts_default(&o);
    struct kiln_sim_result r, base;
    assert_int_equal(kiln_sim_run(&f, all, &o, &r, &err), 0);
    o.policy.mode = KILN_POLICY_FIFO;
    assert_int_equal(kiln_sim_run(&f, all, &o, &base, &err), 0);
    assert_int_equal(r.nunplaceable, 0);
    assert_int_equal(r.missing_deps, 0);
    double ratio = r.makespan / r.lower_bound;
    print_message("seed: %zu variants, kiln %.2f h, bound %.2f h, ratio %.3f; fifo %.2f h\n",
                  json_array_size(all), r.makespan / 3600, r.lower_bound / 3600, ratio,
                  base.makespan / 3600);
    assert_true(r.lower_bound <= r.makespan);
    assert_true(ratio <= 1.05); /* issue 18, item 6 */
    assert_true(r.makespan <= base.makespan + 1e-6);
    /* no host ever held more RAM or cores than it has */
    for (size_t h = 0; h < r.nhosts; h++) {
        assert_true(r.hosts[h].ram_peak_mb <= r.hosts[h].ram_mb);
        assert_true(r.hosts[h].cores_peak <= r.hosts[h].cores);
    }
    kiln_sim_result_free(&r);
    kiln_sim_result_free(&base);
    kiln_farm_free(&f);
    json_decref(all);
    json_decref(vl);
    json_decref(pt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_farm_parse),
        cmocka_unit_test(test_farm_errors),
        cmocka_unit_test(test_sim_small),
        cmocka_unit_test(test_sim_unplaceable_and_errors),
        cmocka_unit_test(test_sim_slack_small_seed),
        cmocka_unit_test(test_sim_bound_below_every_policy),
        cmocka_unit_test(test_sim_seed_within_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
