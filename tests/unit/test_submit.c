/* Unit tests for state/submit: the one rule by which variants become jobs
 * (kiln_submit_plan), shared by recipe submissions and git pushes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "jobs_fixture.h"
#include "state/jobs.h"
#include "state/jobspec.h"
#include "state/store.h"
#include "state/submit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fx {
    struct jobs_fx base; /* first: the fixture's store and jobs */
    json_t *pool;
    int pool_calls;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f || jobs_fx_open(&f->base)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    jobs_fx_close(&f->base);
    json_decref(f->pool);
    free(f);
    return 0;
}

static int pool_fn(void *arg, json_t **out)
{
    struct fx *f = arg;
    f->pool_calls++;
    *out = json_incref(f->pool);
    return KILN_OK;
}

/* The job names of a plan, in order, joined by spaces; depends of job i in
 * deps (names joined by commas). */
static void names_of(json_t *jobs, char *out, size_t n)
{
    size_t i, used = 0;
    json_t *v;
    out[0] = 0;
    json_array_foreach(jobs, i, v)
    {
        used += (size_t)snprintf(out + used, n - used, "%s%s", i ? " " : "",
                                 json_string_value(json_object_get(v, "name")));
    }
}

static void deps_of(json_t *job, char *out, size_t n)
{
    size_t i, used = 0;
    json_t *d;
    out[0] = 0;
    json_array_foreach(json_object_get(job, "depends"), i, d)
    {
        used += (size_t)snprintf(out + used, n - used, "%s%s", i ? "," : "", json_string_value(d));
    }
}

static int64_t submit_job(struct fx *f, const char *name)
{
    json_t *v = json_pack("{s:s,s:s,s:s}", "name", name, "command", "true", "branch", "main");
    json_t *job, *ids;
    struct kiln_error err = {0};
    assert_int_equal(kiln_jobspec_from_variant(v, 0, NULL, &job, &err), KILN_OK);
    json_t *arr = json_pack("[o]", job);
    assert_int_equal(kiln_jobs_submit(&f->base.j, arr, 0, 1000.0, &ids, &err), KILN_OK);
    int64_t id = json_integer_value(json_array_get(ids, 0));
    json_decref(ids);
    json_decref(arr);
    json_decref(v);
    return id;
}

static json_t *variant(const char *name, const char *deps_json)
{
    json_t *d = json_loads(deps_json, 0, NULL);
    return json_pack("{s:s,s:s,s:s,s:o}", "name", name, "command", "true", "branch", "main",
                     "depends", d);
}

/* Rule 1 and 2: names in the batch and live jobs stay as dependencies and
 * nothing is pulled in; the pool is not even read. */
static void test_batch_and_live_jobs(void **state)
{
    struct fx *f = *state;
    submit_job(f, "base");
    json_t *vs = json_pack("[o,o]", variant("a", "[]"), variant("b", "[\"a\",\"base\"]"));
    struct kiln_submit_plan_opts o = {.branch = "main", .pool = pool_fn, .pool_arg = f};
    json_t *jobs;
    struct kiln_error err = {0};
    assert_int_equal(kiln_submit_plan(&f->base.j, vs, &o, &jobs, &err), KILN_OK);
    char s[256];
    names_of(jobs, s, sizeof s);
    assert_string_equal(s, "a b");
    deps_of(json_array_get(jobs, 1), s, sizeof s);
    assert_string_equal(s, "a,base");
    assert_int_equal(f->pool_calls, 0);
    json_decref(jobs);
    json_decref(vs);
}

/* Rule 3: a missing name comes from the pool, with its own dependencies,
 * ahead of its dependents (deepest first); the pool is read once. */
static void test_pool_pulls_dependencies_first(void **state)
{
    struct fx *f = *state;
    f->pool =
        json_pack("[o,o,o]", variant("p", "[\"q\"]"), variant("q", "[]"), variant("unused", "[]"));
    json_t *vs = json_pack("[o]", variant("d", "[\"p\"]"));
    struct kiln_submit_plan_opts o = {.branch = "main", .pool = pool_fn, .pool_arg = f};
    json_t *jobs;
    struct kiln_error err = {0};
    assert_int_equal(kiln_submit_plan(&f->base.j, vs, &o, &jobs, &err), KILN_OK);
    char s[256];
    names_of(jobs, s, sizeof s);
    assert_string_equal(s, "q p d");
    assert_int_equal(f->pool_calls, 1);
    json_decref(jobs);
    json_decref(vs);
}

/* Rule 4: a name found nowhere is an error naming both variants, or, with
 * missing_ok, leaves depends. A cancelled job is not live: it counts as
 * missing, the same for every caller. */
static void test_missing_error_or_dropped(void **state)
{
    struct fx *f = *state;
    int64_t gone = submit_job(f, "gone");
    int64_t wid = 0;
    struct kiln_error err = {0};
    assert_int_equal(kiln_jobs_cancel(&f->base.j, gone, 1001.0, &wid, &err), KILN_OK);
    json_t *vs = json_pack("[o]", variant("e", "[\"gone\",\"nowhere\"]"));
    struct kiln_submit_plan_opts o = {.branch = "main", .pool_name = "in any recipe of R"};
    json_t *jobs = NULL;
    assert_int_equal(kiln_submit_plan(&f->base.j, vs, &o, &jobs, &err), KILN_EINVAL);
    assert_null(jobs);
    assert_string_equal(err.msg,
                        "variant e depends on gone, which is neither submitted nor in any recipe "
                        "of R");
    o.missing_ok = 1;
    assert_int_equal(kiln_submit_plan(&f->base.j, vs, &o, &jobs, &err), KILN_OK);
    char s[256];
    deps_of(json_array_get(jobs, 0), s, sizeof s);
    assert_string_equal(s, "");
    /* The variant itself is untouched (git keeps variants to diff against). */
    assert_int_equal(json_array_size(json_object_get(json_array_get(vs, 0), "depends")), 2);
    json_decref(jobs);
    json_decref(vs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batch_and_live_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_pulls_dependencies_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_error_or_dropped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
