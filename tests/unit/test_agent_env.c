/* Unit tests for the job environment the worker agent builds: the worker
 * token never reaches a job, the job's env applies, the limits win, NIX_CONFIG
 * keeps what was there, and GPU isolation. The protocol itself is tested
 * end to end by tests/integration/test_worker_*.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "workers/agent.h"

#include <string.h>

static const char *get(char **env, const char *key)
{
    size_t kl = strlen(key);
    const char *found = NULL;
    int count = 0;
    for (char **e = env; *e; e++)
        if (!strncmp(*e, key, kl) && (*e)[kl] == '=') {
            found = *e + kl + 1;
            count++;
        }
    assert_true(count <= 1); /* never two definitions of one name */
    return found;
}

static void test_env_basics(void **state)
{
    (void)state;
    char *base[] = {(char *)"PATH=/usr/bin:/bin", (char *)"KILN_TOKEN=kiln_secret",
                    (char *)"HOME=/root",         (char *)"NIX_CONFIG=sandbox = false",
                    (char *)"MAX_JOBS=64",        NULL};
    json_t *jenv = json_pack("{s:s,s:s,s:i,s:s}", "CUDA_HOME", "/usr/local/cuda", "MAX_JOBS", "99",
                             "TORCH_CUDA_ARCH_LIST", 90, "HOME", "/build");
    assert_non_null(jenv);
    struct kiln_job_env_info ji = {.cores = 16,
                                   .gpu_index = -1,
                                   .host_has_gpus = 0,
                                   .job_id = 12,
                                   .attempt = 2,
                                   .stage = "build",
                                   .work_dir = "/w/jobs/12-2",
                                   .worker = "build-1"};
    char **env = kiln_agent_job_env(base, jenv, &ji);
    assert_non_null(env);
    assert_null(get(env, "KILN_TOKEN"));
    assert_string_equal(get(env, "PATH"), "/usr/bin:/bin");
    assert_string_equal(get(env, "HOME"), "/build");
    assert_string_equal(get(env, "CUDA_HOME"), "/usr/local/cuda");
    assert_string_equal(get(env, "TORCH_CUDA_ARCH_LIST"), "90");
    assert_string_equal(get(env, "NIX_BUILD_CORES"), "16");
    assert_string_equal(get(env, "MAX_JOBS"), "16"); /* the limit wins over the job's env */
    assert_string_equal(get(env, "NIX_CONFIG"), "sandbox = false\ncores = 16");
    assert_null(get(env, "CUDA_VISIBLE_DEVICES"));
    assert_string_equal(get(env, "KILN_JOB_ID"), "12");
    assert_string_equal(get(env, "KILN_ATTEMPT"), "2");
    assert_string_equal(get(env, "KILN_STAGE"), "build");
    assert_string_equal(get(env, "KILN_WORK_DIR"), "/w/jobs/12-2");
    assert_string_equal(get(env, "KILN_WORKER"), "build-1");
    kiln_agent_env_free(env);
    json_decref(jenv);
}

static void test_env_gpus(void **state)
{
    (void)state;
    char *base[] = {(char *)"CUDA_VISIBLE_DEVICES=0,1,2,3", NULL};
    struct kiln_job_env_info ji = {.cores = 1,
                                   .gpu_index = 2,
                                   .host_has_gpus = 1,
                                   .job_id = 1,
                                   .attempt = 1,
                                   .stage = "test",
                                   .work_dir = "/w",
                                   .worker = "gpu-1"};
    char **env = kiln_agent_job_env(base, NULL, &ji);
    assert_non_null(env);
    assert_string_equal(get(env, "CUDA_VISIBLE_DEVICES"), "2");
    assert_string_equal(get(env, "CUDA_DEVICE_ORDER"), "PCI_BUS_ID");
    assert_string_equal(get(env, "NIX_CONFIG"), "cores = 1");
    kiln_agent_env_free(env);
    ji.gpu_index = -1;
    env = kiln_agent_job_env(base, NULL, &ji);
    assert_non_null(env);
    assert_string_equal(get(env, "CUDA_VISIBLE_DEVICES"), ""); /* builds get no GPU */
    kiln_agent_env_free(env);
    /* odd names from the server are skipped, not passed to the shell */
    json_t *bad = json_pack("{s:s,s:s,s:b}", "A=B", "x", "", "y", "FLAG", 1);
    env = kiln_agent_job_env(NULL, bad, &ji);
    assert_non_null(env);
    assert_null(get(env, "A"));
    assert_null(get(env, "FLAG"));
    kiln_agent_env_free(env);
    json_decref(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_basics),
        cmocka_unit_test(test_env_gpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
