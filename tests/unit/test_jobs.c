/* Unit tests for scheduler/jobs, registry, dispatch matcher and jobspec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "jobs_fixture.h"
#include "server/dispatch.h"
#include "state/jobs.h"
#include "state/jobspec.h"
#include "state/registry.h"
#include "state/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int setup(void **state)
{
    struct jobs_fx *f = calloc(1, sizeof *f);
    if (!f || jobs_fx_open(f)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    jobs_fx_close(*state);
    free(*state);
    return 0;
}

static int64_t submit(struct jobs_fx *f, const char *body)
{
    struct kiln_jobspec spec;
    struct kiln_error err = {0};
    int rc = kiln_jobspec_parse(body, strlen(body), &spec, &err);
    if (rc) fprintf(stderr, "parse: %s\n", err.msg);
    assert_int_equal(rc, KILN_OK);
    json_t *ids;
    rc = kiln_jobs_submit(&f->j, spec.jobs, 0, 100.0, &ids, &err);
    if (rc) fprintf(stderr, "submit: %s\n", err.msg);
    assert_int_equal(rc, KILN_OK);
    int64_t id = json_integer_value(json_array_get(ids, 0));
    json_decref(ids);
    kiln_jobspec_free(&spec);
    return id;
}

/* An ad-hoc job named name, command "x", that depends on job dep. */
static int64_t submit_after(struct jobs_fx *f, const char *name, int64_t dep)
{
    char body[200];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"command\":\"x\",\"depends\":[%lld]}", name,
             (long long)dep);
    return submit(f, body);
}

static json_t *get(struct jobs_fx *f, int64_t id)
{
    json_t *o;
    struct kiln_error err = {0};
    assert_int_equal(kiln_jobs_get(&f->j, id, &o, &err), KILN_OK);
    return o;
}

static void assert_state(struct jobs_fx *f, int64_t id, const char *state)
{
    json_t *o = get(f, id);
    const char *s = json_string_value(json_object_get(o, "state"));
    if (strcmp(s, state)) fprintf(stderr, "job %lld: %s, want %s\n", (long long)id, s, state);
    assert_string_equal(s, state);
    json_decref(o);
}

static int64_t reg(struct jobs_fx *f, const char *body, json_t **cancel)
{
    json_error_t je;
    json_t *b = json_loads(body, 0, &je);
    assert_non_null(b);
    int64_t id = 0;
    json_t *c = NULL;
    struct kiln_error err = {0};
    int rc = kiln_registry_register(&f->j, b, 100.0, &id, &c, &err);
    if (rc) fprintf(stderr, "register: %s\n", err.msg);
    assert_int_equal(rc, KILN_OK);
    json_decref(b);
    if (cancel)
        *cancel = c;
    else
        json_decref(c);
    return id;
}

static int64_t match(struct jobs_fx *f, int64_t wid, int *gpu)
{
    struct kiln_worker_info w;
    struct kiln_error err = {0};
    assert_int_equal(kiln_registry_get(&f->j, wid, &w, &err), KILN_OK);
    struct kiln_offer o = {.free_cores = -1, .free_ram_mb = -1};
    int64_t job;
    int g;
    assert_int_equal(kiln_dispatch_match(&f->j, &w, &o, 200.0, &job, &g, &err), KILN_OK);
    if (gpu) *gpu = g;
    return job;
}

static json_t *lease(struct jobs_fx *f, int64_t job, int64_t wid, int gpu)
{
    json_t *l;
    struct kiln_error err = {0};
    assert_int_equal(kiln_jobs_lease(&f->j, job, wid, gpu, 0, 200.0, &l, &err), KILN_OK);
    return l;
}

static const char *report(struct jobs_fx *f, int64_t job, int64_t wid, int64_t attempt, int code,
                          int infra, int expect_rc)
{
    struct kiln_report r = {
        .attempt = attempt, .exit_code = code, .infra = infra, .peak_ram_mb = -1, .cpu_s = -1};
    const char *st = NULL;
    struct kiln_error err = {0};
    int rc = kiln_jobs_report(&f->j, job, wid, &r, 210.0, &st, &err);
    if (rc != expect_rc) fprintf(stderr, "report: %s\n", err.msg);
    assert_int_equal(rc, expect_rc);
    return st;
}

#define W8 "{\"name\":\"b1\",\"cores\":8,\"ram_mb\":16384,\"platform\":\"x86_64-linux\"}"

/* Group commit: one transaction for several reports; a stale one (wrong
 * attempt) fails alone and leaves its job as it was, the others land. */
static void test_report_batch(void **state)
{
    struct jobs_fx *f = *state;
    int64_t wid = reg(f, W8, NULL);
    int64_t a = submit(f, "{\"name\":\"a\",\"command\":\"true\"}");
    int64_t b = submit(f, "{\"name\":\"b\",\"command\":\"true\"}");
    int64_t c = submit(f, "{\"name\":\"c\",\"command\":\"false\"}");
    json_decref(lease(f, a, wid, -1));
    json_decref(lease(f, b, wid, -1));
    json_decref(lease(f, c, wid, -1));
    struct kiln_report_item it[3] = {
        {.job = a, .rep = {.attempt = 1, .peak_ram_mb = -1, .cpu_s = -1}},
        {.job = b, .rep = {.attempt = 7, .peak_ram_mb = -1, .cpu_s = -1}},
        {.job = c, .rep = {.attempt = 1, .exit_code = 3, .peak_ram_mb = -1, .cpu_s = -1}}};
    struct kiln_error err = {0};
    assert_int_equal(kiln_jobs_report_batch(&f->j, 3, it, wid, 210.0, &err), KILN_OK);
    assert_int_equal(it[0].rc, KILN_OK);
    assert_string_equal(it[0].state, "succeeded");
    assert_int_equal(it[1].rc, KILN_ECONFLICT);
    assert_non_null(strstr(it[1].err.msg, "stale"));
    assert_null(it[1].state);
    assert_int_equal(it[2].rc, KILN_OK);
    assert_string_equal(it[2].state, "failed");
    assert_state(f, a, "succeeded");
    assert_state(f, b, "building");
    assert_state(f, c, "failed");
    assert_false(kiln_store_in_tx(f->st));
    /* An item refused before the batch is skipped with its reason kept. */
    struct kiln_report_item pre = {.job = b, .rc = KILN_EPERM};
    snprintf(pre.err.msg, sizeof pre.err.msg, "not yours");
    assert_int_equal(kiln_jobs_report_batch(&f->j, 1, &pre, wid, 211.0, &err), KILN_OK);
    assert_int_equal(pre.rc, KILN_EPERM);
    assert_string_equal(pre.err.msg, "not yours");
    assert_state(f, b, "building");
}

/* {"jobs":[...]}: several ad-hoc jobs in one submission; one bad item fails
 * the whole batch with its index named. */
static void test_submit_batch_spec(void **state)
{
    (void)state;
    struct kiln_jobspec spec;
    struct kiln_error err = {0};
    const char *ok = "{\"jobs\":[{\"name\":\"a\",\"command\":\"true\"},"
                     "{\"name\":\"b\",\"command\":\"make\",\"cores\":2}]}";
    assert_int_equal(kiln_jobspec_parse(ok, strlen(ok), &spec, &err), KILN_OK);
    assert_int_equal(spec.kind, KILN_JOBSPEC_ADHOC);
    assert_int_equal(json_array_size(spec.jobs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(spec.jobs, 1), "name")),
                        "b");
    kiln_jobspec_free(&spec);
    const char *bad = "{\"jobs\":[{\"name\":\"a\",\"command\":\"true\"},{\"name\":\"b\"}]}";
    assert_int_equal(kiln_jobspec_parse(bad, strlen(bad), &spec, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "jobs[1]: "));
    const char *empty = "{\"jobs\":[]}";
    assert_int_equal(kiln_jobspec_parse(empty, strlen(empty), &spec, &err), KILN_EINVAL);
    const char *extra = "{\"jobs\":[{\"name\":\"a\",\"command\":\"true\"}],\"x\":1}";
    assert_int_equal(kiln_jobspec_parse(extra, strlen(extra), &spec, &err), KILN_EINVAL);
}

static void test_adhoc_end_to_end(void **state)
{
    struct jobs_fx *f = *state;
    int64_t id =
        submit(f, "{\"name\":\"hello\",\"command\":\"echo hi\",\"cores\":2,\"ram_mb\":512}");
    assert_state(f, id, "queued");
    int64_t w = reg(f, W8, NULL);
    assert_int_equal(match(f, w, NULL), id);
    json_t *l = lease(f, id, w, -1);
    assert_int_equal(json_integer_value(json_object_get(l, "attempt")), 1);
    assert_string_equal(json_string_value(json_object_get(l, "command")), "echo hi");
    json_decref(l);
    assert_state(f, id, "building");
    /* Nothing else to match while it runs; resources are accounted. */
    assert_int_equal(match(f, w, NULL), 0);
    struct kiln_worker_info wi;
    assert_int_equal(kiln_registry_get(&f->j, w, &wi, NULL), KILN_OK);
    assert_int_equal(wi.cores_used, 2);
    /* Stale attempt refused, right one accepted. */
    report(f, id, w, 7, 0, 0, KILN_ECONFLICT);
    assert_string_equal(report(f, id, w, 1, 0, 0, KILN_OK), "succeeded");
    assert_state(f, id, "succeeded");
    /* A second report for the same attempt is stale now. */
    report(f, id, w, 1, 0, 0, KILN_ECONFLICT);
    /* Events: submit, lease, success (+ worker register). */
    assert_true(kiln_store_last_event_id(f->st) >= 4);
}

/* A job that names its worker keeps the name through the store to the
 * dispatcher's needs; one that names none has "" (any). */
static void test_named_worker_needs(void **state)
{
    struct jobs_fx *f = *state;
    int64_t a = submit(f, "{\"name\":\"on-pool\",\"command\":\"true\",\"worker\":\"slurm-hpc\"}");
    int64_t b = submit(f, "{\"name\":\"anywhere\",\"command\":\"true\"}");
    struct kiln_stage_needs nd;
    struct kiln_error err = {0};
    assert_int_equal(kiln_jobs_needs(&f->j, a, &nd, &err), KILN_OK);
    assert_string_equal(nd.worker, "slurm-hpc");
    assert_int_equal(kiln_jobs_needs(&f->j, b, &nd, &err), KILN_OK);
    assert_string_equal(nd.worker, "");
    struct kiln_stage_needs out[8];
    int n = 0, seen = 0;
    assert_int_equal(kiln_jobs_runnable_needs(&f->j, 1e9, out, 8, &n, &err), KILN_OK);
    assert_int_equal(n, 2); /* two classes, both runnable */
    for (int i = 0; i < n; i++)
        seen |= (out[i].job == a && !strcmp(out[i].worker, "slurm-hpc")) |
                (out[i].job == b && !out[i].worker[0]) << 1;
    assert_int_equal(seen, 3);
}

static void test_build_failure_no_retry_and_retry(void **state)
{
    struct jobs_fx *f = *state;
    int64_t id = submit(f, "{\"name\":\"bad\",\"command\":\"false\"}");
    int64_t w = reg(f, W8, NULL);
    json_decref(lease(f, id, w, -1));
    assert_string_equal(report(f, id, w, 1, 2, 0, KILN_OK), "failed");
    json_t *o = get(f, id);
    assert_string_equal(json_string_value(json_object_get(o, "failed_stage")), "build");
    assert_string_equal(json_string_value(json_object_get(o, "reason")),
                        "build exited with code 2");
    json_decref(o);
    assert_int_equal(match(f, w, NULL), 0);
    struct kiln_error err = {0};
    assert_int_equal(kiln_jobs_retry(&f->j, id, 300.0, &err), KILN_OK);
    assert_state(f, id, "queued");
    assert_int_equal(match(f, w, NULL), id);
    assert_int_equal(kiln_jobs_retry(&f->j, id, 300.0, &err), KILN_ESTATE);
}

static void test_infra_backoff_and_give_up(void **state)
{
    struct jobs_fx *f = *state;
    int64_t id = submit(f, "{\"name\":\"flaky\",\"command\":\"x\",\"max_attempts\":2}");
    int64_t w = reg(f, W8, NULL);
    json_decref(lease(f, id, w, -1));
    assert_string_equal(report(f, id, w, 1, 1, 1, KILN_OK), "queued");
    json_t *o = get(f, id);
    assert_true(json_real_value(json_object_get(o, "not_before")) > 200.0);
    json_decref(o);
    /* Backoff: not runnable at t=200, runnable later. */
    assert_int_equal(match(f, w, NULL), 0);
    int64_t ids[4];
    int n;
    assert_int_equal(kiln_jobs_runnable(&f->j, 10000.0, ids, 4, &n, NULL), KILN_OK);
    assert_int_equal(n, 1);
    json_t *l;
    struct kiln_error err = {0};
    assert_int_equal(kiln_jobs_lease(&f->j, id, w, -1, 0, 10000.0, &l, &err), KILN_OK);
    assert_int_equal(json_integer_value(json_object_get(l, "attempt")), 2);
    json_decref(l);
    assert_int_equal(kiln_jobs_infra_fail(&f->j, id, "disk exploded", 10001.0, &err), KILN_OK);
    o = get(f, id);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "failed");
    assert_non_null(strstr(json_string_value(json_object_get(o, "reason")), "disk exploded"));
    json_decref(o);
}

/* A batch lease is one transaction with a savepoint per job: a job that
 * raced with a cancel fails alone, with its own error, and the others are
 * leased. */
static void test_lease_batch_item_fails_alone(void **state)
{
    struct jobs_fx *f = *state;
    struct kiln_error err = {0};
    int64_t a = submit(f, "{\"name\":\"a\",\"command\":\"x\"}");
    int64_t b = submit(f, "{\"name\":\"b\",\"command\":\"x\"}");
    int64_t c = submit(f, "{\"name\":\"c\",\"command\":\"x\"}");
    int64_t w = reg(f, W8, NULL), wid = 0;
    assert_int_equal(kiln_jobs_cancel(&f->j, b, 150.0, &wid, &err), KILN_OK);
    struct kiln_lease_item it[3] = {{.job = a, .gpu_index = -1, .log_base = 7},
                                    {.job = b, .gpu_index = -1},
                                    {.job = c, .gpu_index = -1}};
    assert_int_equal(kiln_jobs_lease_batch(&f->j, 3, it, w, 200.0, &err), KILN_OK);
    assert_int_equal(it[0].rc, KILN_OK);
    assert_int_equal(it[1].rc, KILN_ESTATE);
    assert_non_null(strstr(it[1].err.msg, "not waiting"));
    assert_null(it[1].lease);
    assert_int_equal(it[2].rc, KILN_OK);
    assert_int_equal(json_integer_value(json_object_get(it[0].lease, "id")), a);
    assert_int_equal(json_integer_value(json_object_get(it[2].lease, "attempt")), 1);
    const int64_t ids[3] = {a, b, c};
    const char *want[3] = {"building", "cancelled", "building"};
    for (int i = 0; i < 3; i++) {
        json_t *o = get(f, ids[i]);
        assert_string_equal(json_string_value(json_object_get(o, "state")), want[i]);
        json_decref(o);
        json_decref(it[i].lease);
    }
}

/* kiln_jobs_get_many: the objects GET /jobs/{id} gives, in the order asked,
 * with ids that name no job left out. */
static void test_get_many_order(void **state)
{
    struct jobs_fx *f = *state;
    struct kiln_error err = {0};
    int64_t a = submit(f, "{\"name\":\"a\",\"command\":\"x\"}");
    int64_t b = submit_after(f, "b", a);
    int64_t c = submit(f, "{\"name\":\"c\",\"command\":\"x\"}");
    json_t *ids =
               json_pack("[I,I,I,I]", (json_int_t)c, (json_int_t)a, (json_int_t)999, (json_int_t)b),
           *out = NULL;
    assert_int_equal(kiln_jobs_get_many(&f->j, ids, &out, &err), KILN_OK);
    assert_int_equal(json_array_size(out), 3);
    const int64_t want[3] = {c, a, b};
    for (size_t i = 0; i < 3; i++) {
        json_t *one = get(f, want[i]);
        assert_true(json_equal(json_array_get(out, i), one));
        json_decref(one);
    }
    assert_int_equal(
        json_integer_value(json_array_get(json_object_get(json_array_get(out, 2), "depends"), 0)),
        a);
    json_decref(ids);
    json_decref(out);
}

static void test_dependencies(void **state)
{
    struct jobs_fx *f = *state;
    struct kiln_error err = {0};
    int64_t a = submit(f, "{\"name\":\"torch\",\"command\":\"x\"}");
    int64_t b = submit_after(f, "vllm", a);
    int64_t c = submit_after(f, "app", b);
    json_t *o = get(f, b);
    assert_string_equal(json_string_value(json_object_get(o, "wait_reason")), "waiting for torch");
    json_decref(o);
    int64_t w = reg(f, W8, NULL);
    assert_int_equal(match(f, w, NULL), a);
    json_decref(lease(f, a, w, -1));
    assert_int_equal(match(f, w, NULL), 0); /* b waits for a */
    report(f, a, w, 1, 0, 0, KILN_OK);
    assert_int_equal(match(f, w, NULL), b);
    json_decref(lease(f, b, w, -1));
    report(f, b, w, 1, 3, 0, KILN_OK);
    /* c failed because b failed. */
    o = get(f, c);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(o, "failed_stage")), "dependency");
    assert_string_equal(json_string_value(json_object_get(o, "reason")), "dependency vllm failed");
    json_decref(o);
    /* Retrying b requeues c too. */
    assert_int_equal(kiln_jobs_retry(&f->j, b, 300.0, &err), KILN_OK);
    assert_state(f, c, "queued");
    /* Unknown dependency is a clear error. */
    struct kiln_jobspec spec;
    const char *bad = "{\"name\":\"q\",\"command\":\"z\",\"depends\":[999]}";
    assert_int_equal(kiln_jobspec_parse(bad, strlen(bad), &spec, &err), KILN_OK);
    json_t *ids;
    assert_int_equal(kiln_jobs_submit(&f->j, spec.jobs, 0, 1.0, &ids, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "999"));
    kiln_jobspec_free(&spec);
}

static void test_cancel(void **state)
{
    struct jobs_fx *f = *state;
    struct kiln_error err = {0};
    int64_t id = submit(f, "{\"name\":\"long\",\"command\":\"sleep 100\"}");
    int64_t w = reg(f, W8, NULL);
    json_decref(lease(f, id, w, -1));
    int64_t wid = 0;
    assert_int_equal(kiln_jobs_cancel(&f->j, id, 250.0, &wid, &err), KILN_OK);
    assert_int_equal(wid, w);
    assert_state(f, id, "cancelled");
    assert_int_equal(kiln_jobs_cancel(&f->j, id, 250.0, &wid, &err), KILN_ESTATE);
    /* The worker's late report is stale; its heartbeat is told to cancel. */
    report(f, id, w, 1, 0, 0, KILN_ECONFLICT);
    json_t *hb = json_pack("{s:[{s:I,s:i}]}", "running", "job", (json_int_t)id, "attempt", 1);
    json_t *cancel;
    int drain;
    assert_int_equal(kiln_registry_heartbeat(&f->j, w, hb, 260.0, &cancel, &drain, &err), KILN_OK);
    assert_int_equal(json_array_size(cancel), 1);
    assert_int_equal(json_integer_value(json_array_get(cancel, 0)), id);
    json_decref(cancel);
    json_decref(hb);
    assert_int_equal(kiln_jobs_cancel(&f->j, 4242, 250.0, &wid, &err), KILN_ENOTFOUND);
}

static void test_worker_lost_and_reregister(void **state)
{
    struct jobs_fx *f = *state;
    struct kiln_error err = {0};
    int64_t a = submit(f, "{\"name\":\"a\",\"command\":\"x\"}");
    int64_t b = submit(f, "{\"name\":\"b\",\"command\":\"x\"}");
    int64_t w = reg(f, W8, NULL);
    json_decref(lease(f, a, w, -1));
    json_decref(lease(f, b, w, -1));
    /* Restart of the worker: it still runs a (attempt 1) and a stale job 77. */
    json_t *cancel;
    char body[300];
    snprintf(body, sizeof body,
             "{\"name\":\"b1\",\"cores\":8,\"ram_mb\":16384,\"platform\":\"x86_64-linux\","
             "\"running\":[{\"job\":%lld,\"attempt\":1},{\"job\":77,\"attempt\":1}]}",
             (long long)a);
    assert_int_equal(reg(f, body, &cancel), w);
    assert_int_equal(json_array_size(cancel), 1);
    assert_int_equal(json_integer_value(json_array_get(cancel, 0)), 77);
    json_decref(cancel);
    assert_state(f, a, "building");
    assert_state(f, b, "queued"); /* lost in the restart: requeued */
    /* Silence: the worker is lost and a is requeued. */
    int n;
    assert_int_equal(kiln_registry_check_lost(&f->j, 1000.0, 20.0, &n, &err), KILN_OK);
    assert_int_equal(n, 1);
    assert_state(f, a, "queued");
    json_t *o = get(f, a);
    assert_non_null(strstr(json_string_value(json_object_get(o, "reason")), "lost"));
    json_decref(o);
    struct kiln_worker_info wi;
    assert_int_equal(kiln_registry_get(&f->j, w, &wi, &err), KILN_OK);
    assert_string_equal(wi.state, "lost");
}

static void test_lease_not_acknowledged(void **state)
{
    struct jobs_fx *f = *state;
    struct kiln_error err = {0};
    int64_t a = submit(f, "{\"name\":\"a\",\"command\":\"x\"}");
    int64_t w = reg(f, W8, NULL);
    json_decref(lease(f, a, w, -1)); /* at t=200 */
    json_t *hb = json_pack("{s:[]}", "running");
    json_t *cancel;
    int drain;
    /* Within the ack window nothing happens... */
    assert_int_equal(kiln_registry_heartbeat(&f->j, w, hb, 210.0, &cancel, &drain, &err), KILN_OK);
    json_decref(cancel);
    assert_state(f, a, "building");
    /* ...after it, the job comes back. */
    assert_int_equal(kiln_registry_heartbeat(&f->j, w, hb, 260.0, &cancel, &drain, &err), KILN_OK);
    json_decref(cancel);
    json_decref(hb);
    assert_state(f, a, "queued");
}

static void test_timeout(void **state)
{
    struct jobs_fx *f = *state;
    struct kiln_error err = {0};
    int64_t a = submit(f, "{\"name\":\"a\",\"command\":\"x\",\"timeout_s\":10}");
    int64_t w = reg(f, W8, NULL);
    json_decref(lease(f, a, w, -1));
    int n;
    assert_int_equal(kiln_jobs_check_timeouts(&f->j, 205.0, &n, &err), KILN_OK);
    assert_int_equal(n, 0);
    assert_int_equal(kiln_jobs_check_timeouts(&f->j, 215.0, &n, &err), KILN_OK);
    assert_int_equal(n, 1);
    json_t *o = get(f, a);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "queued");
    assert_string_equal(json_string_value(json_object_get(o, "reason")), "timed out after 10 s");
    json_decref(o);
}

static void test_wait_reasons_and_fit(void **state)
{
    struct jobs_fx *f = *state;
    int64_t big = submit(f, "{\"name\":\"big\",\"command\":\"x\",\"cores\":16,\"ram_mb\":131072}");
    int64_t arm = submit(f, "{\"name\":\"arm\",\"command\":\"x\",\"platform\":\"aarch64-linux\"}");
    int64_t w = reg(f, W8, NULL);
    assert_int_equal(match(f, w, NULL), 0);
    char why[300];
    json_t *o = get(f, big);
    kiln_dispatch_reason_once(&f->j, o, why, sizeof why);
    /* the placer's sentences (scheduler/placement.c), not a second copy */
    assert_string_equal(why, "needs 16 cores and 128 GiB on x86_64-linux; largest host has 8 "
                             "cores and 16 GiB");
    json_decref(o);
    o = get(f, arm);
    kiln_dispatch_reason_once(&f->j, o, why, sizeof why);
    assert_string_equal(why, "no worker for builds on aarch64-linux");
    json_decref(o);
    int64_t small = submit(f, "{\"name\":\"s\",\"command\":\"x\",\"cores\":6}");
    json_decref(lease(f, small, w, -1));
    int64_t s2 = submit(f, "{\"name\":\"s2\",\"command\":\"x\",\"cores\":4}");
    assert_int_equal(match(f, w, NULL), 0); /* only 2 cores free: never overcommit */
    o = get(f, s2);
    kiln_dispatch_reason_once(&f->j, o, why, sizeof why);
    assert_non_null(strstr(why, "best host has 2 cores"));
    json_decref(o);
}

/* The service's path (store -> dispatch -> placer) gives the placer's answer
 * for the two SM cases its old copy of the rules got wrong (issue 14). */
static int64_t submit_sm_test(struct jobs_fx *f, const char *name, const char *sm, int compat)
{
    struct kiln_error err = {0};
    json_t *variant =
        json_pack("{s:s,s:s,s:s,s:s,s:{},s:{},s:{s:i,s:i},s:s,s:[],s:{s:s,s:b,s:[]}}", "name", name,
                  "recipe", "r", "branch", "main", "platform", "x86_64-linux", "attrs", "env",
                  "resources", "cores", 1, "ram_mb", 512, "command", "true", "depends", "selftest",
                  "sm", sm, "sm_compat", compat, "checks");
    json_t *job;
    assert_int_equal(kiln_jobspec_from_variant(variant, 0, "abc", &job, &err), KILN_OK);
    json_t *arr = json_array(), *ids;
    json_array_append_new(arr, job);
    assert_int_equal(kiln_jobs_submit(&f->j, arr, 0, 100.0, &ids, &err), KILN_OK);
    int64_t id = json_integer_value(json_array_get(ids, 0));
    json_decref(ids);
    json_decref(arr);
    json_decref(variant);
    return id;
}

static void test_service_arch_specific_sm(void **state)
{
    struct jobs_fx *f = *state;
    int64_t b = reg(f, W8, NULL);
    int64_t g90 =
        reg(f,
            "{\"name\":\"g90\",\"cores\":8,\"ram_mb\":16384,\"platform\":"
            "\"x86_64-linux\",\"gpus\":[{\"index\":0,\"sm\":\"90\",\"driver\":\"580.1\"}]}",
            NULL);
    int64_t g91 =
        reg(f,
            "{\"name\":\"g91\",\"cores\":8,\"ram_mb\":16384,\"platform\":"
            "\"x86_64-linux\",\"gpus\":[{\"index\":0,\"sm\":\"91\",\"driver\":\"580.1\"}]}",
            NULL);
    int64_t a = submit_sm_test(f, "a90a", "90a", 0), c = submit_sm_test(f, "c90a", "90a", 1);
    int64_t ids[2] = {a, c};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(match(f, b, NULL), ids[i]);
        json_decref(lease(f, ids[i], b, -1));
        assert_string_equal(report(f, ids[i], b, 1, 0, 0, KILN_OK), "built");
    }
    /* "90a" with sm_compat on SM 91: no; on SM 90 (either job): yes */
    assert_int_equal(match(f, g91, NULL), 0);
    int gi = -1;
    assert_int_equal(match(f, g90, &gi), a); /* "90a" on SM 90 without sm_compat */
    assert_int_equal(gi, 0);
    json_decref(lease(f, a, g90, 0));
    assert_int_equal(match(f, g91, NULL), 0);
    char why[300];
    json_t *o = get(f, c);
    kiln_dispatch_reason_once(&f->j, o, why, sizeof why);
    assert_non_null(strstr(why, "sm_90a"));
    json_decref(o);
}

/* The service gives the placer each job's critical path: a short job that
 * a long one waits for starts before a medium independent one. */
static void test_service_critical_path(void **state)
{
    struct jobs_fx *f = *state;
    struct kiln_error err = {0};
    json_t *arr = json_array();
    const char *names[] = {"head", "tail", "alone"};
    int est[] = {100, 1000, 500};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_pack("{s:s,s:s,s:s,s:s,s:{},s:{},s:{s:i,s:i,s:i},s:s,s:[]}", "name",
                              names[i], "recipe", "r", "branch", "main", "platform", "x86_64-linux",
                              "attrs", "env", "resources", "cores", 8, "ram_mb", 1024,
                              "est_duration_s", est[i], "command", "true", "depends");
        if (i == 1) json_array_append_new(json_object_get(v, "depends"), json_string("head"));
        json_t *job;
        assert_int_equal(kiln_jobspec_from_variant(v, 0, "abc", &job, &err), KILN_OK);
        json_array_append_new(arr, job);
        json_decref(v);
    }
    json_t *ids;
    assert_int_equal(kiln_jobs_submit(&f->j, arr, 0, 100.0, &ids, &err), KILN_OK);
    int64_t head = json_integer_value(json_array_get(ids, 0));
    json_decref(ids);
    json_decref(arr);
    int64_t w = reg(f, W8, NULL);
    /* by its own estimate "alone" (500 s) would go first; head + tail is 1100 s */
    assert_int_equal(match(f, w, NULL), head);
}

static void test_gpu_test_stage(void **state)
{
    struct jobs_fx *f = *state;
    struct kiln_error err = {0};
    json_t *variant = json_loads(
        "{\"name\":\"vllm-sm90-avx512\",\"recipe\":\"vllm\",\"branch\":\"main\","
        "\"platform\":\"x86_64-linux\",\"attrs\":{\"sm\":\"90\",\"isa\":\"avx512\"},"
        "\"env\":{\"NIX_BUILD_CORES\":\"4\"},\"resources\":{\"cores\":4,\"ram_mb\":4096},"
        "\"command\":\"flox build x\",\"depends\":[],\"selftest\":{\"sm\":\"90\","
        "\"isa\":\"avx512\",\"driver_min\":560,\"checks\":[]},\"publish\":{\"to\":\"catalog\"}}",
        0, NULL);
    json_t *job;
    assert_int_equal(kiln_jobspec_from_variant(variant, 5, "abc", &job, &err), KILN_OK);
    json_t *arr = json_array();
    json_array_append_new(arr, job);
    json_t *ids;
    assert_int_equal(kiln_jobs_submit(&f->j, arr, 1, 100.0, &ids, &err), KILN_OK);
    int64_t id = json_integer_value(json_array_get(ids, 0));
    json_decref(ids);
    json_decref(arr);
    json_decref(variant);
    int64_t builder = reg(f, W8, NULL);
    int64_t gpu = reg(f,
                      "{\"name\":\"g1\",\"cores\":8,\"ram_mb\":16384,\"platform\":"
                      "\"x86_64-linux\",\"isa_features\":[\"avx\",\"avx2\",\"fma\",\"f16c\","
                      "\"avx512f\",\"avx512dq\",\"avx512vl\",\"avx512bw\"],\"gpus\":[{\"index\":"
                      "0,\"sm\":\"89\",\"driver\":\"580.1\"},{\"index\":1,\"sm\":\"90\","
                      "\"driver\":\"580.65.06\"}]}",
                      NULL);
    assert_int_equal(match(f, builder, NULL), id);
    json_decref(lease(f, id, builder, -1));
    assert_string_equal(report(f, id, builder, 1, 0, 0, KILN_OK), "built");
    /* The test needs SM 90 + avx512: the plain builder can't, the GPU host can. */
    assert_int_equal(match(f, builder, NULL), 0);
    int g = -1;
    assert_int_equal(match(f, gpu, &g), id);
    assert_int_equal(g, 1);
    json_t *l = lease(f, id, gpu, g);
    assert_string_equal(json_string_value(json_object_get(l, "stage")), "test");
    assert_int_equal(json_integer_value(json_object_get(l, "gpu_index")), 1);
    json_decref(l);
    assert_string_equal(report(f, id, gpu, 2, 0, 0, KILN_OK), "tested");
    assert_int_equal(kiln_jobs_publish_start(&f->j, id, 220.0, &err), KILN_OK);
    json_t *art = json_pack("{s:s,s:i}", "digest", "sha256:00", "size", 1);
    assert_int_equal(kiln_jobs_publish_done(&f->j, id, 1, NULL, art, 230.0, &err), KILN_OK);
    json_decref(art);
    json_t *o = get(f, id);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "succeeded");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "artifact"), "digest")), "sha256:00");
    json_decref(o);
}

static void test_placement_order(void **state)
{
    struct jobs_fx *f = *state;
    int64_t low = submit(f, "{\"name\":\"low\",\"command\":\"x\",\"priority\":-5}");
    int64_t high = submit(f, "{\"name\":\"high\",\"command\":\"x\",\"priority\":7}");
    int64_t w = reg(f, W8, NULL);
    /* placement.h orders by priority (with aging), not submission order. */
    assert_int_equal(match(f, w, NULL), high);
    json_decref(lease(f, high, w, -1));
    assert_int_equal(match(f, w, NULL), low);
}

static void test_no_head_of_line_blocking(void **state)
{
    struct jobs_fx *f = *state;
    /* Many urgent jobs no host can run must not hide one that can run. */
    for (int i = 0; i < 40; i++)
        submit(f, "{\"name\":\"arm\",\"command\":\"x\",\"platform\":\"aarch64-linux\","
                  "\"priority\":100}");
    for (int i = 0; i < 40; i++)
        submit(f, "{\"name\":\"huge\",\"command\":\"x\",\"cores\":64,\"priority\":50}");
    int64_t x = submit(f, "{\"name\":\"x86\",\"command\":\"x\",\"priority\":-10}");
    int64_t w = reg(f, W8, NULL);
    assert_int_equal(match(f, w, NULL), x);
}

static void test_jobspec_errors(void **state)
{
    (void)state;
    struct {
        const char *body;
        const char *needle;
    } cases[] = {
        {"", "empty"},
        {"{", "not valid JSON"},
        {"[]", "JSON object"},
        {"{\"command\":\"x\"}", "name: is required"},
        {"{\"name\":\"a\"}", "command: is required"},
        {"{\"name\":\"a\",\"command\":\"x\",\"cores\":\"2\"}", "cores: must be an integer"},
        {"{\"name\":\"a\",\"command\":\"x\",\"cores\":0}", "cores"},
        {"{\"name\":\"a b\",\"command\":\"x\"}", "name:"},
        {"{\"name\":\"a\",\"command\":\"x\",\"env\":{\"1X\":\"y\"}}", "not a valid variable"},
        {"{\"name\":\"a\",\"command\":\"x\",\"env\":{\"X\":1}}", "env.X"},
        {"{\"name\":\"a\",\"command\":\"x\",\"colour\":1}", "unknown key 'colour'"},
        {"{\"name\":\"a\",\"command\":\"x\",\"platform\":\"Linux\"}", "platform"},
        {"{\"name\":\"a\",\"command\":\"x\",\"depends\":[0]}", "depends[0]"},
        {"{\"name\":\"a\",\"command\":\"x\",\"worker\":\"\"}", "worker:"},
        {"{\"name\":\"a\",\"command\":\"x\",\"worker\":\"a b\"}", "worker:"},
        {"{\"recipe\":\"demo\",\"where\":[1]}", "where"},
        {"{\"recipe\":\"demo\",\"recipe_yaml\":\"a: 1\"}", "either"},
        {"{\"name\":\"a\",\"name\":\"b\",\"command\":\"x\"}", "JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kiln_jobspec spec;
        struct kiln_error err = {0};
        int rc = kiln_jobspec_parse(cases[i].body, strlen(cases[i].body), &spec, &err);
        if (rc == KILN_OK || !strstr(err.msg, cases[i].needle))
            fprintf(stderr, "case %zu: rc %d msg '%s'\n", i, rc, err.msg);
        assert_int_not_equal(rc, KILN_OK);
        assert_non_null(strstr(err.msg, cases[i].needle));
    }
    struct kiln_jobspec spec;
    const char *ok = "{\"recipe\":\"demo\",\"where\":{\"sm\":\"90\"},\"priority\":5}";
    assert_int_equal(kiln_jobspec_parse(ok, strlen(ok), &spec, NULL), KILN_OK);
    assert_int_equal(spec.kind, KILN_JOBSPEC_RECIPE);
    assert_string_equal(spec.recipe, "demo");
    assert_string_equal(spec.branch, "main");
    assert_int_equal(spec.priority, 5);
    kiln_jobspec_free(&spec);
}

static void test_list_filters_and_paging(void **state)
{
    struct jobs_fx *f = *state;
    for (int i = 0; i < 5; i++)
        submit(f, "{\"name\":\"p\",\"command\":\"x\"}");
    submit(f, "{\"name\":\"other\",\"command\":\"x\"}");
    struct kiln_jobs_filter flt = {.name = "p", .limit = 2};
    json_t *out;
    struct kiln_error err = {0};
    assert_int_equal(kiln_jobs_list(&f->j, &flt, &out, &err), KILN_OK);
    assert_int_equal(json_array_size(json_object_get(out, "jobs")), 2);
    json_int_t next = json_integer_value(json_object_get(out, "next_before_id"));
    assert_int_equal(next, 4);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(out, "counts"), "queued")),
                     6);
    json_decref(out);
    flt.before_id = next;
    flt.limit = 10;
    assert_int_equal(kiln_jobs_list(&f->j, &flt, &out, &err), KILN_OK);
    assert_int_equal(json_array_size(json_object_get(out, "jobs")), 3);
    assert_true(json_is_null(json_object_get(out, "next_before_id")));
    json_decref(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_adhoc_end_to_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_batch, setup, teardown),
        cmocka_unit_test(test_submit_batch_spec),
        cmocka_unit_test_setup_teardown(test_named_worker_needs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_failure_no_retry_and_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_infra_backoff_and_give_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dependencies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_lost_and_reregister, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_not_acknowledged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_reasons_and_fit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_arch_specific_sm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_critical_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gpu_test_stage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_placement_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_head_of_line_blocking, setup, teardown),
        cmocka_unit_test(test_jobspec_errors),
        cmocka_unit_test_setup_teardown(test_lease_batch_item_fails_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_many_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_filters_and_paging, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
