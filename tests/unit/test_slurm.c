/* Unit tests for slurm/executor: pool config, the sbatch argv of a stage
 * (resources, GRES and features, no user string in it), job names, squeue
 * and sinfo lines, Slurm's reasons. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "slurm/executor.h"

#include <string.h>

static const char POOL[] =
    "{\"name\":\"it\",\"partition\":\"kiln\",\"kiln\":\"/opt/kiln\",\"worker_config\":\"/etc/"
    "kiln/step.yaml\",\"out_dir\":\"/var/log/kiln\",\"gpus\":{\"90\":{\"gres\":\"gpu:h100\","
    "\"feature\":\"sm_90\"},\"80\":{\"feature\":\"a100\"}},\"isa_features\":{\"avx2\":\"x86-64-"
    "v3\"},"
    "\"extra_args\":[\"--account=kiln\"]}";

static void pool(struct kiln_slurm_pool *p)
{
    json_t *o = json_loads(POOL, 0, NULL);
    struct kiln_error e = {0};
    assert_non_null(o);
    assert_int_equal(kiln_slurm_pool_parse(o, p, &e), KILN_OK);
    json_decref(o);
}

static int has(const struct kiln_slurm_argv *a, const char *want)
{
    for (int i = 0; a->argv[i]; i++)
        if (!strcmp(a->argv[i], want)) return 1;
    return 0;
}

static void test_argv_build(void **state)
{
    (void)state;
    struct kiln_slurm_pool p;
    pool(&p);
    struct kiln_slurm_stage s = {.job = 42,
                                 .attempt = 3,
                                 .worker_id = 7,
                                 .stage = "build",
                                 .cores = 8,
                                 .ram_mb = 4096,
                                 .timeout_s = 3600,
                                 .gpu_sm = "",
                                 .isa = "avx2"};
    struct kiln_slurm_argv a;
    struct kiln_error e = {0};
    assert_int_equal(kiln_slurm_sbatch_argv(&p, "/data/slurm/kiln-step.sh", &s, &a, &e), KILN_OK);
    assert_string_equal(a.argv[0], "sbatch");
    assert_true(has(&a, "--partition=kiln"));
    assert_true(has(&a, "--job-name=kiln-it-42-3"));
    assert_true(has(&a, "--comment=kiln job=42 attempt=3 stage=build"));
    assert_true(has(&a, "--cpus-per-task=8"));
    assert_true(has(&a, "--mem=4096M"));
    assert_true(has(&a, "--time=61"));
    assert_true(has(&a, "--constraint=x86-64-v3"));
    assert_true(has(&a, "--no-requeue"));
    assert_true(has(&a, "--account=kiln"));
    assert_true(has(&a, "--step"));
    assert_true(has(&a, "42:3"));
    assert_false(has(&a, "--gres=gpu:h100:1"));
    /* the script comes right before kiln's own argv */
    int i = 0;
    while (a.argv[i] && strcmp(a.argv[i], "/data/slurm/kiln-step.sh"))
        i++;
    assert_non_null(a.argv[i]);
    assert_string_equal(a.argv[i + 1], "/opt/kiln");
    assert_string_equal(a.argv[i + 2], "worker");
}

static void test_argv_gpu(void **state)
{
    (void)state;
    struct kiln_slurm_pool p;
    pool(&p);
    struct kiln_slurm_stage s = {.job = 1,
                                 .attempt = 2,
                                 .worker_id = 7,
                                 .stage = "test",
                                 .cores = 1,
                                 .ram_mb = 100,
                                 .gpu_sm = "90",
                                 .isa = "avx2"};
    struct kiln_slurm_argv a;
    struct kiln_error e = {0};
    assert_int_equal(kiln_slurm_sbatch_argv(&p, "/s.sh", &s, &a, &e), KILN_OK);
    assert_true(has(&a, "--gres=gpu:h100:1"));
    assert_true(has(&a, "--constraint=sm_90&x86-64-v3"));
    assert_true(has(&a, "--comment=kiln job=1 attempt=2 stage=test"));
    for (int i = 0; a.argv[i]; i++)
        assert_null(strstr(a.argv[i], "--time"));
    /* a feature-only mapping gives a constraint and no GRES */
    s.gpu_sm = "80";
    s.isa = "";
    assert_int_equal(kiln_slurm_sbatch_argv(&p, "/s.sh", &s, &a, &e), KILN_OK);
    assert_true(has(&a, "--constraint=a100"));
    for (int i = 0; a.argv[i]; i++)
        assert_null(strstr(a.argv[i], "--gres"));
    /* an SM the pool does not map is an error naming it */
    s.gpu_sm = "100";
    assert_int_equal(kiln_slurm_sbatch_argv(&p, "/s.sh", &s, &a, &e), KILN_EINVAL);
    assert_non_null(strstr(e.msg, "SM 100"));
}

static void test_pool_errors(void **state)
{
    (void)state;
    static const char *bad[] = {
        "{\"name\":\"it\"}",                                      /* no worker_config */
        "{\"name\":\"a b\",\"worker_config\":\"/w\"}",            /* bad name */
        "{\"name\":\"it\",\"worker_config\":\"/w\",\"bogus\":1}", /* unknown key */
        "{\"name\":\"it\",\"worker_config\":\"/w\",\"partition\":\"x;y\"}",
        "{\"name\":\"it\",\"worker_config\":\"/w\",\"extra_args\":[\"no-dash\"]}",
        "{\"name\":\"it\",\"worker_config\":\"/w\",\"isa_features\":{\"avx2\":\"a b\"}}",
        "{\"name\":\"it\",\"worker_config\":\"/w\",\"gpus\":{\"90\":{}}}",
        "{\"name\":\"it\",\"worker_config\":\"/w\",\"poll_ms\":5}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *o = json_loads(bad[i], 0, NULL);
        struct kiln_slurm_pool p;
        struct kiln_error e = {0};
        assert_non_null(o);
        assert_int_equal(kiln_slurm_pool_parse(o, &p, &e), KILN_EINVAL);
        assert_true(e.msg[0] != '\0');
        json_decref(o);
    }
}

static void test_names_and_lines(void **state)
{
    (void)state;
    char name[64];
    int64_t j, a;
    kiln_slurm_job_name("it", 12, 3, name, sizeof name);
    assert_string_equal(name, "kiln-it-12-3");
    assert_true(kiln_slurm_name_parse("it", name, &j, &a));
    assert_int_equal(j, 12);
    assert_int_equal(a, 3);
    assert_false(kiln_slurm_name_parse("other", name, &j, &a));
    assert_false(kiln_slurm_name_parse("it", "kiln-it-12", &j, &a));
    assert_false(kiln_slurm_name_parse("it", "kiln-it-12-3x", &j, &a));
    assert_false(kiln_slurm_name_parse("i", "kiln-it-12-3", &j, &a));

    struct kiln_slurm_qjob q;
    assert_int_equal(kiln_slurm_qjob_parse("77|kiln-it-5-1|PENDING|Resources|\n", &q), 0);
    assert_int_equal(q.slurm_id, 77);
    assert_string_equal(q.state, "PENDING");
    assert_string_equal(q.reason, "Resources");
    assert_int_equal(kiln_slurm_qjob_parse("x|a|b|c|d", &q), -1);
    assert_int_equal(kiln_slurm_qjob_parse("1|a|b", &q), -1);

    struct kiln_slurm_node nd;
    assert_int_equal(kiln_slurm_node_parse("n2|4|3000|gpu:h100:2(S:0),gpu:a100:1|sm_90|idle", &nd),
                     0);
    assert_int_equal(nd.cpus, 4);
    assert_int_equal(nd.ram_mb, 3000);
    assert_int_equal(kiln_slurm_node_gpus(&nd, "gpu:h100"), 2);
    assert_int_equal(kiln_slurm_node_gpus(&nd, "gpu:a100"), 1);
    assert_int_equal(kiln_slurm_node_gpus(&nd, "gpu:h10"), 0);
    assert_string_equal(nd.partition, "");
    /* the nine-column form the executor asks for */
    assert_int_equal(
        kiln_slurm_node_parse("n2|4|3000|gpu:h100:1|x86-64,sm_90|mix|kiln*|3/1/0/4|up\n", &nd), 0);
    assert_string_equal(nd.partition, "kiln");
    assert_int_equal(nd.cpus_alloc, 3);
    assert_string_equal(nd.avail, "up");
    assert_int_equal(kiln_slurm_node_parse("n2|4|3000|g|f|idle|kiln", &nd), -1);
    assert_string_equal(kiln_slurm_node_state_word("idle"), "idle");
    assert_string_equal(kiln_slurm_node_state_word("mix"), "mixed");
    assert_string_equal(kiln_slurm_node_state_word("alloc"), "alloc");
    assert_string_equal(kiln_slurm_node_state_word("comp"), "alloc");
    assert_string_equal(kiln_slurm_node_state_word("down*"), "down");
    assert_string_equal(kiln_slurm_node_state_word("idle*"), "down");
    assert_string_equal(kiln_slurm_node_state_word("drain"), "drain");
    assert_string_equal(kiln_slurm_node_state_word("drng"), "drain");
    assert_string_equal(kiln_slurm_node_state_word("drain*"), "drain");
    assert_string_equal(kiln_slurm_node_state_word("idle~"), "other");
    assert_string_equal(kiln_slurm_node_state_word("maint"), "other");

    assert_true(kiln_slurm_state_infra("NODE_FAIL"));
    assert_true(kiln_slurm_state_infra("PREEMPTED"));
    assert_false(kiln_slurm_state_infra("FAILED"));
    assert_true(kiln_slurm_state_final("OUT_OF_MEMORY"));
    assert_false(kiln_slurm_state_final("RUNNING"));

    char t[300];
    kiln_slurm_reason_text("Resources", t, sizeof t);
    assert_non_null(strstr(t, "every node that could run it is busy"));
    kiln_slurm_reason_text("ReqNodeNotAvail, UnavailableNodes:n1", t, sizeof t);
    assert_non_null(strstr(t, "down, drained or reserved"));
    kiln_slurm_reason_text("SomethingNew", t, sizeof t);
    assert_string_equal(t, "waiting in Slurm: SomethingNew");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argv_build),
        cmocka_unit_test(test_argv_gpu),
        cmocka_unit_test(test_pool_errors),
        cmocka_unit_test(test_names_and_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
