/* Unit tests for forge/forge_status.c: each forge's documented path and
 * body, state names, the summary rule and config errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "forge/forge_status.h"

#include <string.h>

#define SHA "0123456789abcdef0123456789abcdef01234567"

static void parse(const char *json, struct kiln_forge_target *t, int want)
{
    json_t *o = json_loads(json, 0, NULL);
    struct kiln_error err = {0};
    assert_non_null(o);
    assert_int_equal(kiln_forge_target_parse(o, t, NULL, &err), want);
    json_decref(o);
}

static void test_request_shapes(void **state)
{
    (void)state;
    struct kiln_forge_target t;
    char path[512];
    json_t *b = NULL;
    struct kiln_error err = {0};
    parse("{\"url\":\"u\",\"forge\":\"github\",\"repo\":\"o/r\",\"token\":\"x\"}", &t, KILN_OK);
    assert_string_equal(t.api, "https://api.github.com");
    assert_int_equal(kiln_forge_status_request(&t, SHA, "failure", "kiln/a", "d",
                                               "https://k/#/build/1", path, sizeof path, &b, &err),
                     KILN_OK);
    assert_string_equal(path, "/repos/o/r/statuses/" SHA);
    assert_string_equal(json_string_value(json_object_get(b, "state")), "failure");
    assert_string_equal(json_string_value(json_object_get(b, "context")), "kiln/a");
    assert_int_equal(json_object_size(b), 4);
    json_decref(b);

    parse("{\"url\":\"u\",\"forge\":\"forgejo\",\"api\":\"https://g/\",\"repo\":\"o/r\"}", &t,
          KILN_OK);
    assert_string_equal(t.api, "https://g");
    assert_int_equal(kiln_forge_status_request(&t, SHA, "pending", "kiln", "d", "l", path,
                                               sizeof path, &b, &err),
                     KILN_OK);
    assert_string_equal(path, "/api/v1/repos/o/r/statuses/" SHA);
    json_decref(b);

    parse("{\"url\":\"u\",\"forge\":\"gitlab\",\"api\":\"https://gl\",\"repo\":\"grp/sub proj\"}",
          &t, KILN_OK);
    assert_int_equal(kiln_forge_status_request(&t, SHA, "error", "kiln/a", "d", "l", path,
                                               sizeof path, &b, &err),
                     KILN_OK);
    assert_string_equal(path, "/api/v4/projects/grp%2Fsub%20proj/statuses/" SHA);
    assert_string_equal(json_string_value(json_object_get(b, "state")), "canceled");
    assert_string_equal(json_string_value(json_object_get(b, "name")), "kiln/a");
    assert_null(json_object_get(b, "context"));
    json_decref(b);
    assert_int_equal(kiln_forge_status_request(&t, "not-a-sha", "error", "c", "d", "l", path,
                                               sizeof path, &b, &err),
                     KILN_EINVAL);
}

static void test_config_errors(void **state)
{
    (void)state;
    struct kiln_forge_target t;
    parse("{\"url\":\"u\",\"forge\":\"bitbucket\",\"repo\":\"o/r\"}", &t, KILN_EINVAL);
    parse("{\"url\":\"u\",\"forge\":\"gitea\",\"repo\":\"o/r\"}", &t, KILN_EINVAL); /* no api */
    parse("{\"url\":\"u\",\"forge\":\"github\",\"repo\":\"r\"}", &t, KILN_EINVAL);
    parse("{\"url\":\"u\",\"forge\":\"github\",\"repo\":\"o/r\",\"tokn\":\"x\"}", &t, KILN_EINVAL);
    parse("{\"url\":\"u\",\"forge\":\"github\",\"repo\":\"o/"
          "r\",\"token_env\":\"KILN_NO_SUCH_VAR_X\"}",
          &t, KILN_EINVAL);
}

static void test_states(void **state)
{
    (void)state;
    assert_string_equal(kiln_forge_job_state("queued"), "pending");
    assert_string_equal(kiln_forge_job_state("testing"), "pending");
    assert_string_equal(kiln_forge_job_state("succeeded"), "success");
    assert_string_equal(kiln_forge_job_state("failed"), "failure");
    assert_string_equal(kiln_forge_job_state("superseded"), "error");
    char d[160];
    json_t *j = json_pack("[{s:s},{s:s}]", "state", "succeeded", "state", "building");
    assert_string_equal(kiln_forge_summary_state(j, d, sizeof d), "pending");
    json_decref(j);
    j = json_pack("[{s:s},{s:s}]", "state", "failed", "state", "building");
    assert_string_equal(kiln_forge_summary_state(j, d, sizeof d), "failure");
    json_decref(j);
    j = json_pack("[{s:s},{s:s}]", "state", "succeeded", "state", "succeeded");
    assert_string_equal(kiln_forge_summary_state(j, d, sizeof d), "success");
    assert_non_null(strstr(d, "2 of 2"));
    json_decref(j);
    /* The tally forge_serve.c keeps per commit: the same rule, one job
     * change at a time. */
    struct kiln_forge_tally t = {0};
    kiln_forge_tally_move(&t, NULL, "pending");
    kiln_forge_tally_move(&t, NULL, "pending");
    assert_string_equal(kiln_forge_tally_summary(&t, d, sizeof d), "pending");
    kiln_forge_tally_move(&t, "pending", "success");
    assert_string_equal(kiln_forge_tally_summary(&t, d, sizeof d), "pending");
    kiln_forge_tally_move(&t, "pending", "failure");
    assert_string_equal(kiln_forge_tally_summary(&t, d, sizeof d), "failure");
    assert_string_equal(d, "kiln: 1 of 2 variants passed, 1 failed, 0 unfinished");
    kiln_forge_tally_move(&t, "failure", "pending"); /* a retry */
    assert_string_equal(kiln_forge_tally_summary(&t, d, sizeof d), "pending");
    kiln_forge_tally_move(&t, "pending", "success");
    assert_string_equal(kiln_forge_tally_summary(&t, d, sizeof d), "success");
    assert_string_equal(d, "kiln: 2 of 2 variants passed, 0 failed, 0 unfinished");
    kiln_forge_tally_move(&t, "success", "error"); /* superseded later */
    assert_string_equal(kiln_forge_tally_summary(&t, d, sizeof d), "error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_shapes),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
