/* Unit tests for scheduler/api + serve: a real kiln server (in-process, its
 * loop in a thread) on 127.0.0.1 port 0, driven over HTTP with common/httpc. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/httpc.h"
#include "common/token.h"
#include "state/jobspec.h"
#include "catalog/catalog_serve.h"
#include "git/git_serve.h"
#include "server/serve.h"
#include "server/auth.h"
#include "state/access.h"
#include "state/jobs.h"
#include "state/store.h"
#include "jobs_fixture.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct fx {
    char dir[64];
    uv_loop_t loop;
    uv_async_t stop;
    struct kiln_server srv;
    pthread_t thread;
    int port;
    char url[64];
    char admin[KILN_TOKEN_LEN], submit[KILN_TOKEN_LEN], worker[KILN_TOKEN_LEN],
        read[KILN_TOKEN_LEN];
    /* worker starts as the registration token and becomes the credential
     * the server issues (reg_call); reg keeps the registration token and
     * submit2 is a second submitter, for ownership checks. */
    char reg[KILN_TOKEN_LEN], submit2[KILN_TOKEN_LEN];
    /* scoped: a submit token scoped to recipes "de*" on branch "main". */
    char scoped[KILN_TOKEN_LEN];
};

static void on_stop(uv_async_t *a)
{
    struct fx *f = a->data;
    kiln_server_shutdown(&f->srv);
    uv_close((uv_handle_t *)&f->stop, NULL);
}

static void *loop_thread(void *arg)
{
    struct fx *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void add_token(struct kiln_store *st, enum kiln_role r, char *out)
{
    char h[KILN_SHA256_HEX];
    assert_int_equal(kiln_token_generate(out), KILN_OK);
    assert_int_equal(kiln_token_hash(out, h), KILN_OK);
    assert_int_equal(kiln_store_token_add(st, r, "t", h, NULL, 1.0, NULL), KILN_OK);
}

static int setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/kiln-api-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    char db[128];
    snprintf(db, sizeof db, "%s/kiln.db", f->dir);
    struct kiln_store *st;
    if (kiln_store_open(db, &st, NULL)) return -1;
    add_token(st, KILN_ROLE_ADMIN, f->admin);
    add_token(st, KILN_ROLE_SUBMIT, f->submit);
    add_token(st, KILN_ROLE_WORKER, f->reg);
    memcpy(f->worker, f->reg, sizeof f->worker);
    add_token(st, KILN_ROLE_READ, f->read);
    add_token(st, KILN_ROLE_SUBMIT, f->submit2);
    {
        char h[KILN_SHA256_HEX];
        json_t *scope = json_pack("{s:[s],s:[s]}", "recipes", "de*", "branches", "main");
        if (kiln_token_generate(f->scoped) || kiln_token_hash(f->scoped, h) ||
            kiln_access_token_add(st, KILN_ROLE_SUBMIT, "scoped", h, scope, 1.0, NULL))
            return -1;
        json_decref(scope);
    }
    kiln_store_close(st);
    struct kiln_serve_config cfg;
    kiln_serve_config_defaults(&cfg);
    snprintf(cfg.listen, sizeof cfg.listen, "127.0.0.1:0");
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", f->dir);
    cfg.max_body_bytes = 64 * 1024;
    /* Tests run from the repository root (scripts/check.sh). */
    snprintf(cfg.recipes_dir, sizeof cfg.recipes_dir, "recipes");
    cfg.log_level = KILN_LOG_WARN;
    static const struct kiln_serve_feature *const features[] = {&kiln_catalog_feature,
                                                                &kiln_git_feature, NULL};
    cfg.features = features;
    uv_loop_init(&f->loop);
    struct kiln_error err = {0};
    if (kiln_server_init(&f->srv, &f->loop, &cfg, &err)) {
        fprintf(stderr, "init: %s\n", err.msg);
        return -1;
    }
    f->port = kiln_http_server_port(f->srv.http);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", f->port);
    uv_async_init(&f->loop, &f->stop, on_stop);
    f->stop.data = f;
    pthread_create(&f->thread, NULL, loop_thread, f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    kiln_server_cleanup(&f->srv);
    uv_loop_close(&f->loop);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd)) { /* best effort */
    }
    free(f);
    return 0;
}

/* One call; returns status, *out (may be NULL). */
static long call(struct fx *f, const char *token, const char *method, const char *path,
                 const char *body, json_t **out)
{
    struct kiln_httpc c;
    assert_int_equal(kiln_httpc_init(&c, f->url, token), KILN_OK);
    struct kiln_httpc_resp r = {0};
    struct kiln_error err = {0};
    int rc = kiln_httpc_request(&c, method, path, body ? "application/json" : NULL, body,
                                body ? strlen(body) : 0, 0, &r, &err);
    if (rc) fprintf(stderr, "request: %s\n", err.msg);
    assert_int_equal(rc, KILN_OK);
    long st = r.status;
    if (out) *out = r.body.len ? json_loadb(r.body.data, r.body.len, 0, NULL) : NULL;
    if (st >= 400 && out && *out) {
        /* Every error is {"error":{"code","message"}}. */
        json_t *e = json_object_get(*out, "error");
        assert_non_null(json_string_value(json_object_get(e, "code")));
        assert_non_null(json_string_value(json_object_get(e, "message")));
    }
    kiln_httpc_resp_free(&r);
    kiln_httpc_cleanup(&c);
    return st;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* Register (with f->worker: first the registration token, then the worker's
 * own credential) and keep the credential the answer carries in f->worker. */
static long reg_call(struct fx *f, const char *body, json_t **out)
{
    long st = call(f, f->worker, "POST", "/api/v1/workers/register", body, out);
    const char *cred = st == 200 ? json_string_value(json_object_get(*out, "credential")) : NULL;
    if (st == 200) {
        assert_non_null(cred);
        assert_int_equal(strlen(cred), KILN_TOKEN_LEN - 1);
        memcpy(f->worker, cred, KILN_TOKEN_LEN);
    }
    return st;
}

#define REG "{\"name\":\"w1\",\"cores\":4,\"ram_mb\":8192,\"platform\":\"x86_64-linux\"}"

static void test_end_to_end(void **state)
{
    struct fx *f = *state;
    json_t *o;
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs",
                          "{\"name\":\"hello\",\"command\":\"echo hi\",\"cores\":2}", &o),
                     201);
    json_int_t id =
        json_integer_value(json_object_get(json_array_get(json_object_get(o, "jobs"), 0), "id"));
    json_decref(o);
    assert_int_equal(reg_call(f, REG, &o), 200);
    json_int_t wid = json_integer_value(json_object_get(o, "worker_id"));
    assert_int_equal(json_integer_value(json_object_get(o, "heartbeat_s")), 5);
    json_decref(o);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/workers/%lld/lease?wait=1", (long long)wid);
    assert_int_equal(call(f, f->worker, "POST", path, "{\"free_cores\":4}", &o), 200);
    json_t *job = json_object_get(o, "job");
    assert_int_equal(json_integer_value(json_object_get(job, "id")), id);
    assert_int_equal(json_integer_value(json_object_get(job, "attempt")), 1);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/log?attempt=1&offset=0", (long long)id);
    assert_int_equal(call(f, f->worker, "POST", path, "hello\n", &o), 200);
    assert_int_equal(json_integer_value(json_object_get(o, "size")), 6);
    json_decref(o);
    /* Resend of an overlapping chunk is idempotent. */
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/log?attempt=1&offset=3", (long long)id);
    assert_int_equal(call(f, f->worker, "POST", path, "lo\nworld\n", &o), 200);
    assert_int_equal(json_integer_value(json_object_get(o, "size")), 12);
    json_decref(o);
    /* A gap is refused with the size to resend from. */
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/log?attempt=1&offset=50", (long long)id);
    assert_int_equal(call(f, f->worker, "POST", path, "x", &o), 409);
    assert_int_equal(json_integer_value(json_object_get(o, "size")), 12);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/report", (long long)id);
    assert_int_equal(call(f, f->worker, "POST", path, "{\"attempt\":2,\"exit_code\":0}", &o), 409);
    json_decref(o);
    assert_int_equal(call(f, f->worker, "POST", path,
                          "{\"attempt\":1,\"stage\":\"build\",\"exit_code\":0,\"peak_ram_mb\":12}",
                          &o),
                     200);
    assert_string_equal(jstr(o, "state"), "succeeded");
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/jobs/%lld", (long long)id);
    assert_int_equal(call(f, f->read, "GET", path, NULL, &o), 200);
    assert_string_equal(jstr(o, "state"), "succeeded");
    assert_string_equal(jstr(o, "worker"), "w1");
    assert_int_equal(json_integer_value(json_object_get(o, "peak_ram_mb")), 12);
    json_decref(o);
    /* The log: attempt marker + the bytes, once. */
    struct kiln_httpc c;
    kiln_httpc_init(&c, f->url, f->read);
    struct kiln_httpc_resp r = {0};
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/log", (long long)id);
    assert_int_equal(kiln_httpc_request(&c, "GET", path, NULL, NULL, 0, 0, &r, NULL), KILN_OK);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "attempt 1 (build) on worker w1"));
    assert_non_null(strstr(r.body.data, "---\nhello\nworld\n"));
    kiln_httpc_resp_free(&r);
    kiln_httpc_cleanup(&c);
    assert_int_equal(call(f, f->read, "GET", "/api/v1/jobs?state=succeeded", NULL, &o), 200);
    assert_int_equal(json_array_size(json_object_get(o, "jobs")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "counts"), "succeeded")),
                     1);
    json_decref(o);
}

/* Issue 16, worker identity: each case names the weakness it guards. */
static void test_worker_identity(void **state)
{
    struct fx *f = *state;
    json_t *o;
    char path[160];
    const char *w2 = "{\"name\":\"w2\",\"cores\":4,\"ram_mb\":8192,\"platform\":\"x86_64-linux\"}";
    /* w2 registers with the registration token and keeps its credential. */
    assert_int_equal(reg_call(f, w2, &o), 200);
    json_int_t w2id = json_integer_value(json_object_get(o, "worker_id"));
    json_decref(o);
    char cred2[KILN_TOKEN_LEN];
    memcpy(cred2, f->worker, sizeof cred2);
    /* w1 registers next (starting again from the registration token). */
    memcpy(f->worker, f->reg, sizeof f->worker);
    assert_int_equal(reg_call(f, REG, &o), 200);
    json_int_t w1id = json_integer_value(json_object_get(o, "worker_id"));
    json_decref(o);
    char cred1[KILN_TOKEN_LEN];
    memcpy(cred1, f->worker, sizeof cred1);
    /* A registration token can only register: no lease, heartbeat, report. */
    snprintf(path, sizeof path, "/api/v1/workers/%lld/lease?wait=0", (long long)w1id);
    assert_int_equal(call(f, f->reg, "POST", path, "{}", &o), 403);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/workers/%lld/heartbeat", (long long)w1id);
    assert_int_equal(call(f, f->reg, "POST", path, "{}", &o), 403);
    json_decref(o);
    assert_int_equal(call(f, f->reg, "GET", "/api/v1/jobs", NULL, &o), 403);
    json_decref(o);
    /* Lease and heartbeat accept only the worker's own credential. */
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs",
                          "{\"name\":\"j\",\"command\":\"x\",\"cores\":1}", &o),
                     201);
    json_int_t job =
        json_integer_value(json_object_get(json_array_get(json_object_get(o, "jobs"), 0), "id"));
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/workers/%lld/lease?wait=0", (long long)w1id);
    assert_int_equal(call(f, cred2, "POST", path, "{}", &o), 403);
    json_decref(o);
    assert_int_equal(call(f, f->admin, "POST", path, "{}", &o), 403);
    json_decref(o);
    assert_int_equal(call(f, cred1, "POST", path, "{}", &o), 200);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "job"), "id")), job);
    json_decref(o);
    /* Another worker cannot log into or report w1's job (the old code took
     * any worker token and passed worker id 0, skipping the check). */
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/report", (long long)job);
    assert_int_equal(call(f, cred2, "POST", path, "{\"attempt\":1,\"exit_code\":1}", &o), 409);
    json_decref(o);
    assert_int_equal(call(f, f->reg, "POST", path, "{\"attempt\":1,\"exit_code\":1}", &o), 403);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/log?attempt=1&offset=0", (long long)job);
    assert_int_equal(call(f, cred2, "POST", path, "forged\n", &o), 409);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/jobs/%lld", (long long)job);
    assert_int_equal(call(f, f->read, "GET", path, NULL, &o), 200);
    assert_string_equal(jstr(o, "state"), "building");
    json_decref(o);
    /* A second registration under the live name is refused, so the job the
     * empty running list would have failed stays with w1. */
    assert_int_equal(call(f, f->reg, "POST", "/api/v1/workers/register", REG, &o), 409);
    json_decref(o);
    assert_int_equal(call(f, cred2, "POST", "/api/v1/workers/register", REG, &o), 403);
    json_decref(o);
    assert_int_equal(call(f, f->read, "GET", path, NULL, &o), 200);
    assert_string_equal(jstr(o, "state"), "building");
    json_decref(o);
    /* The owner reports; its report counts. */
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/report", (long long)job);
    assert_int_equal(call(f, cred1, "POST", path, "{\"attempt\":1,\"exit_code\":0}", &o), 200);
    json_decref(o);
    /* Re-registration with its own credential rotates it: the old one dies. */
    assert_int_equal(reg_call(f, REG, &o), 200);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/workers/%lld/heartbeat", (long long)w1id);
    assert_int_equal(call(f, cred1, "POST", path, "{}", &o), 401);
    json_decref(o);
    assert_int_equal(call(f, f->worker, "POST", path, "{}", &o), 200);
    json_decref(o);
    /* An admin may replace a live worker; the replaced credential dies. */
    char path2[96];
    snprintf(path2, sizeof path2, "/api/v1/workers/register?replace=1");
    assert_int_equal(call(f, f->admin, "POST", path2, w2, &o), 200);
    assert_int_equal(json_integer_value(json_object_get(o, "worker_id")), w2id);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/workers/%lld/heartbeat", (long long)w2id);
    assert_int_equal(call(f, cred2, "POST", path, "{}", &o), 401);
    json_decref(o);
}

/* Issue 16, ownership and audit. */
static void test_ownership_and_audit(void **state)
{
    struct fx *f = *state;
    json_t *o;
    char path[128];
    assert_int_equal(
        call(f, f->submit, "POST", "/api/v1/jobs", "{\"name\":\"a\",\"command\":\"x\"}", &o), 201);
    json_int_t job =
        json_integer_value(json_object_get(json_array_get(json_object_get(o, "jobs"), 0), "id"));
    json_decref(o);
    /* Another submitter may neither cancel nor retry it. */
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/cancel", (long long)job);
    assert_int_equal(call(f, f->submit2, "POST", path, NULL, &o), 403);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/jobs/%lld", (long long)job);
    assert_int_equal(call(f, f->read, "GET", path, NULL, &o), 200);
    assert_string_equal(jstr(o, "state"), "queued");
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/cancel", (long long)job);
    assert_int_equal(call(f, f->submit, "POST", path, NULL, &o), 200);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/retry", (long long)job);
    assert_int_equal(call(f, f->submit2, "POST", path, NULL, &o), 403);
    json_decref(o);
    assert_int_equal(call(f, f->admin, "POST", path, NULL, &o), 200);
    json_decref(o);
    /* Recipe submissions supersede only the same owner's jobs. */
    const char *rb = "{\"recipe\":\"demo\",\"branch\":\"main\"}";
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs", rb, &o), 201);
    json_int_t first =
        json_integer_value(json_object_get(json_array_get(json_object_get(o, "jobs"), 0), "id"));
    json_decref(o);
    assert_int_equal(call(f, f->submit2, "POST", "/api/v1/jobs", rb, &o), 201);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/jobs/%lld", (long long)first);
    assert_int_equal(call(f, f->read, "GET", path, NULL, &o), 200);
    assert_string_equal(jstr(o, "state"), "queued");
    json_decref(o);
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs", rb, &o), 201);
    json_decref(o);
    assert_int_equal(call(f, f->read, "GET", path, NULL, &o), 200);
    assert_string_equal(jstr(o, "state"), "superseded");
    json_decref(o);
    /* Every state-changing request left an audit row, refusals included;
     * only admins read them. */
    assert_int_equal(call(f, f->read, "GET", "/api/v1/audit", NULL, &o), 403);
    json_decref(o);
    assert_int_equal(call(f, f->admin, "GET", "/api/v1/audit?limit=1000", NULL, &o), 200);
    json_t *rows = json_object_get(o, "audit");
    int denied_cancel = 0, allowed_retry = 0;
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        const char *pth = jstr(r, "path"), *out = jstr(r, "outcome"), *role = jstr(r, "role");
        assert_non_null(pth);
        assert_non_null(out);
        assert_non_null(role);
        assert_true(json_real_value(json_object_get(r, "at")) > 0);
        if (strstr(pth, "/cancel") && !strcmp(role, "submit")) denied_cancel++;
        if (strstr(pth, "/retry") && !strcmp(role, "admin")) allowed_retry++;
    }
    assert_int_equal(denied_cancel, 2);
    assert_int_equal(allowed_retry, 1);
    json_decref(o);
    /* The route table lists itself and the audit log. */
    assert_int_equal(call(f, f->admin, "GET", "/api/v1/routes", NULL, &o), 200);
    assert_true(json_array_size(json_object_get(o, "routes")) > 20);
    json_decref(o);
    assert_int_equal(call(f, f->submit, "GET", "/api/v1/routes", NULL, &o), 403);
    json_decref(o);
}

/* Issue 16, build point 3: a token scoped to recipes and branches submits,
 * cancels and retries only inside its scope; each refusal is a 403 whose
 * sentence names the scope. */
static void test_token_scope(void **state)
{
    struct fx *f = *state;
    json_t *o;
    char path[128];
    /* Inside: recipe demo (matches "de*") on main. */
    assert_int_equal(
        call(f, f->scoped, "POST", "/api/v1/jobs", "{\"recipe\":\"demo\",\"branch\":\"main\"}", &o),
        201);
    json_int_t job =
        json_integer_value(json_object_get(json_array_get(json_object_get(o, "jobs"), 0), "id"));
    json_decref(o);
    /* Outside: another branch, another recipe, an ad-hoc job (no recipe). */
    static const struct {
        const char *body, *names;
    } outside[] = {
        {"{\"recipe\":\"demo\",\"branch\":\"dev\"}", "branches [main]"},
        {"{\"recipe\":\"pytorch\",\"branch\":\"main\"}", "recipes [de*]"},
        {"{\"name\":\"a\",\"command\":\"x\",\"branch\":\"main\"}", "recipes [de*]"},
    };
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        assert_int_equal(call(f, f->scoped, "POST", "/api/v1/jobs", outside[i].body, &o), 403);
        const char *msg =
            json_string_value(json_object_get(json_object_get(o, "error"), "message"));
        assert_non_null(msg);
        assert_non_null(strstr(msg, outside[i].names));
        json_decref(o);
    }
    /* Its own job inside the scope: cancel and retry work. */
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/cancel", (long long)job);
    assert_int_equal(call(f, f->scoped, "POST", path, NULL, &o), 200);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/retry", (long long)job);
    assert_int_equal(call(f, f->scoped, "POST", path, NULL, &o), 200);
    json_decref(o);
    /* Another submitter's job inside the scope's recipes stays refused. */
    assert_int_equal(
        call(f, f->submit, "POST", "/api/v1/jobs", "{\"recipe\":\"demo\",\"branch\":\"main\"}", &o),
        201);
    json_int_t other =
        json_integer_value(json_object_get(json_array_get(json_object_get(o, "jobs"), 0), "id"));
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/cancel", (long long)other);
    assert_int_equal(call(f, f->scoped, "POST", path, NULL, &o), 403);
    json_decref(o);
}

/* Issue 16: a worker names as its build's output a path staged for another
 * job (claiming someone else's output, which publish would then sign under
 * this job's name). Today's code recorded it (200); the report is refused,
 * while the job whose plan staged the path reports it. */
static void test_report_foreign_output(void **state)
{
    struct fx *f = *state;
    json_t *o;
    char path[160];
    assert_int_equal(reg_call(f, REG, &o), 200);
    json_int_t wid = json_integer_value(json_object_get(o, "worker_id"));
    json_decref(o);
    json_int_t job[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs",
                              "{\"name\":\"j\",\"command\":\"x\",\"cores\":1}", &o),
                         201);
        json_decref(o);
        snprintf(path, sizeof path, "/api/v1/workers/%lld/lease?wait=0", (long long)wid);
        assert_int_equal(call(f, f->worker, "POST", path, "{}", &o), 200);
        job[i] = json_integer_value(json_object_get(json_object_get(o, "job"), "id"));
        json_decref(o);
    }
#define OUT_A "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a"
#define OUT_B "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b"
    const char *plan_a =
        "{\"paths\":[{\"store_path\":\"" OUT_A "\",\"nar_hash\":\"sha256:"
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\",\"nar_size\":5,"
        "\"references\":[],\"deriver\":\"/nix/store/dddddddddddddddddddddddddddddddd-a.drv\"}]}";
    const char *plan_b =
        "{\"paths\":[{\"store_path\":\"" OUT_B "\",\"nar_hash\":\"sha256:"
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\",\"nar_size\":5,"
        "\"references\":[],\"deriver\":\"\"}]}";
    snprintf(path, sizeof path, "/api/v1/staging/%lld/plan?attempt=1", (long long)job[0]);
    assert_int_equal(call(f, f->worker, "POST", path, plan_a, &o), 200);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/staging/%lld/plan?attempt=1", (long long)job[1]);
    assert_int_equal(call(f, f->worker, "POST", path, plan_b, &o), 200);
    json_decref(o);
    /* Job 2 names job 1's staged path, or one its own plan never named. */
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/report", (long long)job[1]);
    static const char *const bad[] = {
        "{\"attempt\":1,\"exit_code\":0,\"outputs\":[\"" OUT_A "\"]}",
        "{\"attempt\":1,\"exit_code\":0,\"outputs\":[\"" OUT_B "\",\"" OUT_A "\"]}",
        ("{\"attempt\":1,\"exit_code\":0,\"outputs\":"
         "[\"/nix/store/cccccccccccccccccccccccccccccccc-c\"]}"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(call(f, f->worker, "POST", path, bad[i], &o), 409);
        const char *msg =
            json_string_value(json_object_get(json_object_get(o, "error"), "message"));
        assert_non_null(msg);
        assert_non_null(strstr(msg, "/nix/store/"));
        json_decref(o);
    }
    snprintf(path, sizeof path, "/api/v1/jobs/%lld", (long long)job[1]);
    assert_int_equal(call(f, f->read, "GET", path, NULL, &o), 200);
    assert_string_equal(jstr(o, "state"), "building");
    json_decref(o);
    /* Each job reports its own output. */
    for (int i = 0; i < 2; i++) {
        char body[160];
        snprintf(path, sizeof path, "/api/v1/jobs/%lld/report", (long long)job[i]);
        snprintf(body, sizeof body, "{\"attempt\":1,\"exit_code\":0,\"outputs\":[\"%s\"]}",
                 i ? OUT_B : OUT_A);
        assert_int_equal(call(f, f->worker, "POST", path, body, &o), 200);
        json_decref(o);
    }
#undef OUT_A
#undef OUT_B
}

/* A job the scoped token owns but that lies outside its scope (a recipe
 * submission can pull in dependencies from other recipes): cancel and retry
 * are refused with the scope named, inside the scope they pass. */
static void test_scope_own_job_outside(void **state)
{
    (void)state;
    struct jobs_fx f;
    assert_int_equal(jobs_fx_open(&f), 0);
    char tok[KILN_TOKEN_LEN], h[KILN_SHA256_HEX];
    assert_int_equal(kiln_token_generate(tok), KILN_OK);
    assert_int_equal(kiln_token_hash(tok, h), KILN_OK);
    json_t *scope = json_pack("{s:[s,s]}", "recipes", "cuda-*", "demo");
    assert_int_equal(kiln_access_token_add(f.st, KILN_ROLE_SUBMIT, "s", h, scope, 1.0, NULL),
                     KILN_OK);
    json_decref(scope);
    /* A scope of the wrong shape is refused, never stored as no scope. */
    json_t *bad = json_pack("{s:s}", "recipes", "demo");
    struct kiln_error err = {0};
    assert_int_equal(kiln_access_token_add(f.st, KILN_ROLE_SUBMIT, "b", "00", bad, 1.0, &err),
                     KILN_EINVAL);
    json_decref(bad);
    struct kiln_principal p;
    char auth[128];
    snprintf(auth, sizeof auth, "Bearer %s", tok);
    assert_int_equal(kiln_auth_identify(f.st, auth, &p, NULL), KILN_OK);
    assert_int_equal(p.scoped, 1);
    json_int_t ids[2];
    const char *recipes[2] = {"cuda-12", "vllm"};
    for (int i = 0; i < 2; i++) {
        const char *b = "{\"name\":\"n\",\"command\":\"true\",\"branch\":\"main\"}";
        struct kiln_jobspec spec;
        assert_int_equal(kiln_jobspec_parse(b, strlen(b), &spec, NULL), KILN_OK);
        json_t *jobs = json_incref(spec.jobs);
        kiln_jobspec_free(&spec);
        json_t *one = json_array_get(jobs, 0);
        json_object_set_new(one, "recipe", json_string(recipes[i]));
        json_object_set_new(one, "owner", json_integer(p.token_id));
        json_t *out;
        struct kiln_error je = {0};
        int src = kiln_jobs_submit(&f.j, jobs, 0, 1.0, &out, &je);
        if (src) fprintf(stderr, "submit: %s\n", je.msg);
        assert_int_equal(src, KILN_OK);
        ids[i] = json_integer_value(json_array_get(out, 0));
        json_decref(out);
        json_decref(jobs);
    }
    assert_int_equal(kiln_auth_job_owner(f.st, &p, ids[0], NULL), KILN_OK);
    memset(&err, 0, sizeof err);
    assert_int_equal(kiln_auth_job_owner(f.st, &p, ids[1], &err), KILN_EPERM);
    assert_non_null(strstr(err.msg, "recipes [cuda-*, demo]"));
    assert_non_null(strstr(err.msg, "'vllm'"));
    jobs_fx_close(&f);
}

/* Issue 16: the token is checked before the body is read, so a caller
 * without one is refused 401 at once instead of first being read up to the
 * body cap (the old code answered 413: it had read the body first). */
static void test_token_before_body(void **state)
{
    struct fx *f = *state;
    json_t *o = NULL;
    char *big = malloc(100000);
    assert_non_null(big);
    memset(big, 'a', 99999);
    big[99999] = 0;
    assert_int_equal(call(f, NULL, "POST", "/api/v1/jobs", big, &o), 401);
    json_decref(o);
    assert_int_equal(call(f, f->read, "POST", "/api/v1/jobs", big, &o), 403);
    json_decref(o);
    assert_int_equal(call(f, f->reg, "POST", "/api/v1/jobs/1/report", big, &o), 403);
    json_decref(o);
    free(big);
    assert_int_equal(call(f, NULL, "GET", "/healthz", NULL, &o), 200);
    json_decref(o);
}

static int on_sse_log(const char *p, size_t n, void *arg)
{
    struct kiln_buf *b = arg;
    kiln_buf_append(b, p, n);
    return strstr(b->data, "event: log") != NULL;
}

/* Issue 16, secrets: a secret env value reaches the job's lease only; the
 * API, the event stream and the log (even when the job echoes it, split
 * across two chunks) never show it. The old code showed env to every reader. */
static void test_secrets(void **state)
{
    struct fx *f = *state;
    json_t *o;
    char path[160];
    setenv("KILN_SECRET_HF", "hf-from-the-server", 1);
    assert_int_equal(reg_call(f, REG, &o), 200);
    json_int_t wid = json_integer_value(json_object_get(o, "worker_id"));
    json_decref(o);
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs",
                          "{\"name\":\"s\",\"command\":\"echo $TOKEN\",\"env\":{\"TOKEN\":"
                          "{\"secret\":\"sup3r-s3cret-value\"},\"HF\":{\"secret_ref\":\"HF\"},"
                          "\"PLAIN\":\"shown\"}}",
                          &o),
                     201);
    json_t *job = json_array_get(json_object_get(o, "jobs"), 0);
    json_int_t id = json_integer_value(json_object_get(job, "id"));
    assert_string_equal(jstr(json_object_get(job, "env"), "TOKEN"), KILN_JOBSPEC_SECRET_MARK);
    json_decref(o);
    /* A reference to a secret the server does not have is refused. */
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs",
                          "{\"name\":\"s2\",\"command\":\"x\",\"env\":{\"A\":{\"secret_ref\":"
                          "\"NOPE\"}}}",
                          &o),
                     404);
    json_decref(o);
    const char *readers[] = {f->read, f->submit, f->admin};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(call(f, readers[i], "GET", "/api/v1/jobs", NULL, &o), 200);
        char *text = json_dumps(o, 0);
        assert_null(strstr(text, "sup3r-s3cret-value"));
        assert_null(strstr(text, "hf-from-the-server"));
        assert_non_null(strstr(text, "shown"));
        free(text);
        json_decref(o);
    }
    snprintf(path, sizeof path, "/api/v1/workers/%lld/lease?wait=1", (long long)wid);
    assert_int_equal(call(f, f->worker, "POST", path, "{}", &o), 200);
    json_t *env = json_object_get(json_object_get(o, "job"), "env");
    assert_string_equal(jstr(env, "TOKEN"), "sup3r-s3cret-value");
    assert_string_equal(jstr(env, "HF"), "hf-from-the-server");
    assert_string_equal(jstr(env, "PLAIN"), "shown");
    json_decref(o);
    /* The job echoes it, once whole and once cut across two chunks. */
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/log?attempt=1&offset=0", (long long)id);
    assert_int_equal(call(f, f->worker, "POST", path, "token=sup3r-s3cret-value\nsup3r-s3", &o),
                     200);
    json_decref(o);
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/log?attempt=1&offset=33", (long long)id);
    assert_int_equal(call(f, f->worker, "POST", path, "cret-value done\n", &o), 200);
    json_decref(o);
    struct kiln_httpc c;
    kiln_httpc_init(&c, f->url, f->admin);
    struct kiln_httpc_resp r = {0};
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/log", (long long)id);
    assert_int_equal(kiln_httpc_request(&c, "GET", path, NULL, NULL, 0, 0, &r, NULL), KILN_OK);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body.data, "s3cret"));
    assert_null(strstr(r.body.data, "sup3r"));
    assert_non_null(strstr(r.body.data, "token=******************\n"));
    assert_non_null(strstr(r.body.data, " done\n"));
    kiln_httpc_resp_free(&r);
    kiln_httpc_cleanup(&c);
    /* Nor in the event stream's replay (it ends once the log event is in). */
    kiln_httpc_init(&c, f->url, f->read);
    struct kiln_buf got = {0};
    long status = 0;
    kiln_httpc_stream(&c, "/api/v1/events?last_event_id=0", on_sse_log, &got, &status, NULL);
    kiln_httpc_cleanup(&c);
    assert_int_equal(status, 200);
    assert_non_null(strstr(got.data, "\"TOKEN\":\"" KILN_JOBSPEC_SECRET_MARK "\""));
    assert_null(strstr(got.data, "s3cret"));
    assert_null(strstr(got.data, "hf-from-the-server"));
    kiln_buf_free(&got);
    unsetenv("KILN_SECRET_HF");
}

static void test_auth(void **state)
{
    struct fx *f = *state;
    json_t *o = NULL;
    const char *body = "{\"name\":\"a\",\"command\":\"x\"}";
    assert_int_equal(call(f, NULL, "POST", "/api/v1/jobs", body, &o), 401);
    json_decref(o);
    assert_int_equal(call(f, "kiln_000000000000000000000000000000000000000000000000", "POST",
                          "/api/v1/jobs", body, &o),
                     401);
    json_decref(o);
    assert_int_equal(call(f, f->read, "POST", "/api/v1/jobs", body, &o), 403);
    json_decref(o);
    assert_int_equal(call(f, f->worker, "POST", "/api/v1/jobs", body, &o), 403);
    json_decref(o);
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/workers/register", REG, &o), 403);
    json_decref(o);
    assert_int_equal(call(f, f->worker, "POST", "/api/v1/workers/1/drain", "{}", &o), 403);
    json_decref(o);
    /* GETs need a token unless anonymous reads are allowed (they are not here). */
    assert_int_equal(call(f, NULL, "GET", "/api/v1/jobs", NULL, &o), 401);
    json_decref(o);
    assert_int_equal(call(f, f->read, "GET", "/api/v1/jobs", NULL, &o), 200);
    json_decref(o);
    assert_int_equal(call(f, NULL, "GET", "/healthz", NULL, &o), 200);
    assert_string_equal(jstr(o, "status"), "ok");
    json_decref(o);
    assert_int_equal(call(f, f->admin, "POST", "/api/v1/jobs", body, &o), 201);
    json_decref(o);
}

/* GET /queue: every waiting job in one answer, in queue order, each with
 * the same fields and wait_reason that GET /jobs/{id} gives. */
static json_int_t submit_one(struct fx *f, const char *body)
{
    json_t *o;
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs", body, &o), 201);
    json_int_t id =
        json_integer_value(json_object_get(json_array_get(json_object_get(o, "jobs"), 0), "id"));
    json_decref(o);
    return id;
}

static void test_queue_all(void **state)
{
    struct fx *f = *state;
    json_int_t a = submit_one(f, "{\"name\":\"quoted\",\"command\":\"true\"}");
    json_int_t b = submit_one(f, "{\"name\":\"urgent\",\"command\":\"true\",\"priority\":5}");
    char body[160];
    snprintf(body, sizeof body, "{\"name\":\"after\",\"command\":\"true\",\"depends\":[%lld]}",
             (long long)a);
    json_int_t c = submit_one(f, body);
    json_t *q;
    assert_int_equal(call(f, f->read, "GET", "/api/v1/queue", NULL, &q), 200);
    assert_int_equal(json_integer_value(json_object_get(q, "total")), 3);
    assert_true(json_is_false(json_object_get(q, "truncated")));
    json_t *jobs = json_object_get(q, "jobs");
    assert_int_equal(json_array_size(jobs), 3);
    /* priority first, then oldest */
    json_int_t want[3] = {b, a, c};
    static const char *const keys[] = {"name",  "recipe",   "branch", "state",
                                       "stage", "priority", "attrs",  "wait_reason"};
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(jobs, i);
        assert_int_equal(json_integer_value(json_object_get(x, "id")), want[i]);
        char path[64];
        snprintf(path, sizeof path, "/api/v1/jobs/%lld", (long long)want[i]);
        json_t *full;
        assert_int_equal(call(f, f->read, "GET", path, NULL, &full), 200);
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            if (!json_equal(json_object_get(x, keys[k]), json_object_get(full, keys[k])))
                fail_msg("job %lld: %s differs from GET /jobs/{id}", (long long)want[i], keys[k]);
        }
        json_t *res = json_object_get(full, "resources"), *xres = json_object_get(x, "resources");
        assert_int_equal(json_object_size(xres), 3);
        const char *rk;
        json_t *rv;
        json_object_foreach(xres, rk, rv) assert_true(json_equal(rv, json_object_get(res, rk)));
        assert_true(fabs(json_number_value(json_object_get(x, "created_at")) -
                         json_number_value(json_object_get(full, "created_at"))) < 0.001);
        json_decref(full);
    }
    assert_string_equal(jstr(json_array_get(jobs, 2), "wait_reason"), "waiting for quoted");
    json_decref(q);
    /* the cap: the rows stop, the total does not */
    assert_int_equal(call(f, f->read, "GET", "/api/v1/queue?limit=1", NULL, &q), 200);
    assert_int_equal(json_array_size(json_object_get(q, "jobs")), 1);
    assert_int_equal(json_integer_value(json_object_get(q, "total")), 3);
    assert_true(json_is_true(json_object_get(q, "truncated")));
    json_decref(q);
    /* the filters of GET /jobs */
    assert_int_equal(call(f, f->read, "GET", "/api/v1/queue?q=uote", NULL, &q), 200);
    assert_int_equal(json_integer_value(json_object_get(q, "total")), 1);
    json_decref(q);
    assert_int_equal(call(f, f->read, "GET", "/api/v1/queue?state=succeeded", NULL, &q), 400);
    assert_non_null(strstr(jstr(json_object_get(q, "error"), "message"), "not a waiting state"));
    json_decref(q);
    assert_int_equal(call(f, f->read, "GET", "/api/v1/queue?limit=0", NULL, &q), 400);
    json_decref(q);
    /* a job that leaves the waiting states leaves the queue */
    char path[64];
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/cancel", (long long)b);
    assert_int_equal(call(f, f->submit, "POST", path, NULL, &q), 200);
    json_decref(q);
    assert_int_equal(call(f, f->read, "GET", "/api/v1/queue", NULL, &q), 200);
    assert_int_equal(json_integer_value(json_object_get(q, "total")), 2);
    json_decref(q);
}

static void test_errors(void **state)
{
    struct fx *f = *state;
    json_t *o = NULL;
    assert_int_equal(call(f, f->read, "GET", "/api/v1/nope", NULL, &o), 404);
    json_decref(o);
    assert_int_equal(call(f, f->admin, "DELETE", "/api/v1/jobs", NULL, &o), 405);
    json_decref(o);
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs", "{nope", &o), 400);
    assert_string_equal(jstr(json_object_get(o, "error"), "code"), "parse_error");
    json_decref(o);
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs",
                          "{\"name\":\"a\",\"command\":\"x\",\"cores\":\"many\"}", &o),
                     400);
    assert_non_null(strstr(jstr(json_object_get(o, "error"), "message"), "cores"));
    json_decref(o);
    assert_int_equal(call(f, f->read, "GET", "/api/v1/jobs/999", NULL, &o), 404);
    json_decref(o);
    assert_int_equal(call(f, f->read, "GET", "/api/v1/jobs/abc", NULL, &o), 404);
    json_decref(o);
    assert_int_equal(call(f, f->read, "GET", "/api/v1/jobs?limit=0", NULL, &o), 400);
    json_decref(o);
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs/999/cancel", NULL, &o), 404);
    json_decref(o);
    /* A registration token is no worker: it may not heartbeat as any. */
    assert_int_equal(call(f, f->worker, "POST", "/api/v1/workers/77/heartbeat", "{}", &o), 403);
    json_decref(o);
    assert_int_equal(
        reg_call(f, "{\"name\":\"w\",\"cores\":-1,\"ram_mb\":1,\"platform\":\"x86_64-linux\"}", &o),
        400);
    json_decref(o);
    /* Too big a body: 413 (limit is 64 KiB here). */
    char *big = malloc(100000);
    memset(big, 'a', 99999);
    big[99999] = 0;
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs", big, &o), 413);
    json_decref(o);
    free(big);
    /* Still serving. */
    assert_int_equal(call(f, NULL, "GET", "/healthz", NULL, &o), 200);
    json_decref(o);
}

struct delayed {
    struct fx *f;
    int ms;
    const char *token, *method, *path, *body;
};

static void *delayed_call(void *arg)
{
    struct delayed *d = arg;
    usleep((useconds_t)d->ms * 1000);
    json_t *o = NULL;
    call(d->f, d->token, d->method, d->path, d->body, &o);
    json_decref(o);
    return NULL;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_long_poll_wakes(void **state)
{
    struct fx *f = *state;
    json_t *o;
    assert_int_equal(reg_call(f, REG, &o), 200);
    json_decref(o);
    /* Nothing queued: 204 after the wait. */
    double t0 = mono();
    assert_int_equal(call(f, f->worker, "POST", "/api/v1/workers/1/lease?wait=1", "{}", &o), 204);
    json_decref(o);
    assert_true(mono() - t0 >= 0.9);
    /* A submit during the wait answers it at once. */
    struct delayed d = {
        f, 200, f->submit, "POST", "/api/v1/jobs", "{\"name\":\"late\",\"command\":\"x\"}"};
    pthread_t th;
    pthread_create(&th, NULL, delayed_call, &d);
    t0 = mono();
    assert_int_equal(call(f, f->worker, "POST", "/api/v1/workers/1/lease?wait=10", "{}", &o), 200);
    double dt = mono() - t0;
    pthread_join(th, NULL);
    assert_true(dt < 2.0);
    json_int_t id = json_integer_value(json_object_get(json_object_get(o, "job"), "id"));
    json_decref(o);
    /* A cancel wakes the next pending lease with {"cancel":[id]}. */
    char cpath[64];
    snprintf(cpath, sizeof cpath, "/api/v1/jobs/%lld/cancel", (long long)id);
    struct delayed d2 = {f, 200, f->submit, "POST", cpath, NULL};
    pthread_create(&th, NULL, delayed_call, &d2);
    t0 = mono();
    assert_int_equal(call(f, f->worker, "POST", "/api/v1/workers/1/lease?wait=10", "{}", &o), 200);
    dt = mono() - t0;
    pthread_join(th, NULL);
    assert_true(dt < 2.0);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(o, "cancel"), 0)), id);
    json_decref(o);
    /* The heartbeat says so too. */
    char hb[128];
    snprintf(hb, sizeof hb, "{\"running\":[{\"job\":%lld,\"attempt\":1}]}", (long long)id);
    assert_int_equal(call(f, f->worker, "POST", "/api/v1/workers/1/heartbeat", hb, &o), 200);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(o, "cancel"), 0)), id);
    json_decref(o);
}

struct sse {
    struct kiln_buf got;
};

static int on_sse(const char *p, size_t n, void *arg)
{
    struct sse *s = arg;
    kiln_buf_append(&s->got, p, n);
    /* Stop once both events arrived. */
    return strstr(s->got.data, "\"name\":\"e2\"") != NULL;
}

static void test_events_resume(void **state)
{
    struct fx *f = *state;
    json_t *o;
    assert_int_equal(
        call(f, f->submit, "POST", "/api/v1/jobs", "{\"name\":\"e1\",\"command\":\"x\"}", &o), 201);
    json_decref(o);
    assert_int_equal(
        call(f, f->submit, "POST", "/api/v1/jobs", "{\"name\":\"e2\",\"command\":\"x\"}", &o), 201);
    json_decref(o);
    struct kiln_httpc c;
    kiln_httpc_init(&c, f->url, f->read);
    struct sse s = {0};
    long status = 0;
    kiln_httpc_stream(&c, "/api/v1/events?last_event_id=0", on_sse, &s, &status, NULL);
    kiln_httpc_cleanup(&c);
    assert_int_equal(status, 200);
    assert_non_null(strstr(s.got.data, "id: 1\nevent: job\ndata: {"));
    assert_non_null(strstr(s.got.data, "\"name\":\"e1\""));
    kiln_buf_free(&s.got);
    /* Resuming after event 1 skips it. */
    kiln_httpc_init(&c, f->url, f->read);
    struct sse s2 = {0};
    kiln_httpc_stream(&c, "/api/v1/events?last_event_id=1", on_sse, &s2, &status, NULL);
    kiln_httpc_cleanup(&c);
    assert_null(strstr(s2.got.data, "\"name\":\"e1\""));
    kiln_buf_free(&s2.got);
}

struct follow {
    struct fx *f;
    long id;
    struct kiln_buf got;
    long status;
};

static int on_log(const char *p, size_t n, void *arg)
{
    struct follow *fl = arg;
    kiln_buf_append(&fl->got, p, n);
    return 0;
}

static void *follow_thread(void *arg)
{
    struct follow *fl = arg;
    struct kiln_httpc c;
    kiln_httpc_init(&c, fl->f->url, fl->f->read);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/jobs/%ld/log?follow=1", fl->id);
    kiln_httpc_stream(&c, path, on_log, fl, &fl->status, NULL);
    kiln_httpc_cleanup(&c);
    return NULL;
}

static void test_log_follow_and_drain(void **state)
{
    struct fx *f = *state;
    json_t *o;
    assert_int_equal(
        call(f, f->submit, "POST", "/api/v1/jobs", "{\"name\":\"f\",\"command\":\"x\"}", &o), 201);
    json_decref(o);
    assert_int_equal(reg_call(f, REG, &o), 200);
    json_decref(o);
    assert_int_equal(call(f, f->worker, "POST", "/api/v1/workers/1/lease?wait=1", "{}", &o), 200);
    json_decref(o);
    struct follow fl = {.f = f, .id = 1};
    pthread_t th;
    pthread_create(&th, NULL, follow_thread, &fl);
    usleep(200000);
    assert_int_equal(
        call(f, f->worker, "POST", "/api/v1/jobs/1/log?attempt=1&offset=0", "part one\n", &o), 200);
    json_decref(o);
    usleep(100000);
    assert_int_equal(
        call(f, f->worker, "POST", "/api/v1/jobs/1/log?attempt=1&offset=9", "part two\n", &o), 200);
    json_decref(o);
    /* The report ends the follow: the thread's request returns. */
    assert_int_equal(
        call(f, f->worker, "POST", "/api/v1/jobs/1/report", "{\"attempt\":1,\"exit_code\":1}", &o),
        200);
    json_decref(o);
    pthread_join(th, NULL);
    assert_int_equal(fl.status, 200);
    assert_non_null(fl.got.data);
    assert_non_null(strstr(fl.got.data, "part one\npart two\n"));
    kiln_buf_free(&fl.got);
    /* Drain (admin): the worker takes nothing new and says so. */
    assert_int_equal(call(f, f->admin, "POST", "/api/v1/workers/1/drain", "{\"drain\":true}", &o),
                     200);
    assert_string_equal(jstr(o, "state"), "draining");
    json_decref(o);
    assert_int_equal(
        call(f, f->submit, "POST", "/api/v1/jobs", "{\"name\":\"g\",\"command\":\"x\"}", &o), 201);
    assert_non_null(
        strstr(jstr(json_array_get(json_object_get(o, "jobs"), 0), "wait_reason"), "draining"));
    json_decref(o);
    assert_int_equal(call(f, f->worker, "POST", "/api/v1/workers/1/lease?wait=0", "{}", &o), 204);
    json_decref(o);
    assert_int_equal(call(f, f->worker, "POST", "/api/v1/workers/1/heartbeat", "{}", &o), 200);
    assert_true(json_is_true(json_object_get(o, "drain")));
    json_decref(o);
}

static void test_recipe_pipeline(void **state)
{
    struct fx *f = *state;
    json_t *o;
    assert_int_equal(
        call(f, f->read, "GET", "/api/v1/recipes/demo/expand?where=sm%3D90,isa%3Davx2", NULL, &o),
        200);
    assert_int_equal(json_array_size(json_object_get(o, "variants")), 1);
    json_decref(o);
    assert_int_equal(
        call(f, f->submit, "POST", "/api/v1/jobs",
             "{\"recipe\":\"demo\",\"where\":{\"sm\":\"90\",\"isa\":\"avx2\"},\"commit\":\"abc\"}",
             &o),
        201);
    json_t *job = json_array_get(json_object_get(o, "jobs"), 0);
    json_int_t id = json_integer_value(json_object_get(job, "id"));
    assert_string_equal(jstr(job, "recipe"), "demo");
    assert_string_equal(jstr(job, "commit"), "abc");
    assert_int_equal(json_array_size(json_object_get(job, "stages")), 3);
    json_decref(o);
    /* A GPU host with SM 90, a new driver and AVX2. */
    assert_int_equal(
        reg_call(f,
                 "{\"name\":\"g\",\"cores\":8,\"ram_mb\":16384,\"platform\":\"x86_64-linux\","
                 "\"isa_features\":[\"avx\",\"avx2\",\"fma\",\"f16c\"],\"gpus\":[{\"index\":0,"
                 "\"sm\":\"90\",\"driver\":\"580.65.06\"}]}",
                 &o),
        200);
    json_decref(o);
    assert_int_equal(call(f, f->worker, "POST", "/api/v1/workers/1/lease?wait=1", "{}", &o), 200);
    assert_string_equal(jstr(json_object_get(o, "job"), "stage"), "build");
    json_decref(o);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/jobs/%lld/report", (long long)id);
    /* Nothing is staged here: a worker on a shared store says so (without
     * "staged": false the report fails the build, test_report_unstaged.sh). */
    assert_int_equal(call(f, f->worker, "POST", path,
                          "{\"attempt\":1,\"stage\":\"build\",\"staged\":false,"
                          "\"outputs\":[\"/nix/store/x\"]}",
                          &o),
                     200);
    assert_string_equal(jstr(o, "state"), "built");
    json_decref(o);
    assert_int_equal(
        call(f, f->worker, "POST", "/api/v1/workers/1/lease?wait=1", "{\"free_gpus\":[0]}", &o),
        200);
    job = json_object_get(o, "job");
    assert_string_equal(jstr(job, "stage"), "test");
    assert_int_equal(json_integer_value(json_object_get(job, "gpu_index")), 0);
    assert_int_equal(json_integer_value(json_object_get(job, "attempt")), 2);
    assert_true(json_is_object(json_object_get(job, "selftest")));
    json_decref(o);
    assert_int_equal(call(f, f->worker, "POST", path,
                          "{\"attempt\":2,\"stage\":\"test\",\"selftest\":{\"ok\":true}}", &o),
                     200);
    json_decref(o);
    /* The publish stage runs on the server (the catalog's publisher): with
     * no artifact uploaded it ends failed at "publish" with a reason; either
     * way the job ends, never stuck in publishing. */
    snprintf(path, sizeof path, "/api/v1/jobs/%lld", (long long)id);
    const char *st = NULL;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(call(f, f->read, "GET", path, NULL, &o), 200);
        st = jstr(o, "state");
        if (!strcmp(st, "succeeded") || !strcmp(st, "failed")) break;
        json_decref(o);
        o = NULL;
        usleep(50000);
    }
    assert_non_null(o);
    if (!strcmp(jstr(o, "state"), "failed")) {
        assert_string_equal(jstr(o, "failed_stage"), "publish");
        assert_non_null(jstr(o, "reason"));
    } else {
        assert_string_equal(jstr(o, "state"), "succeeded");
    }
    json_decref(o);
    /* Resubmitting supersedes nothing finished, and a bad filter is a 400. */
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs",
                          "{\"recipe\":\"demo\",\"where\":{\"sm\":\"1\"}}", &o),
                     400);
    json_decref(o);
    assert_int_equal(call(f, f->submit, "POST", "/api/v1/jobs", "{\"recipe\":\"nosuch\"}", &o),
                     404);
    json_decref(o);
}

static void test_metrics(void **state)
{
    struct fx *f = *state;
    struct kiln_httpc c;
    kiln_httpc_init(&c, f->url, f->read);
    struct kiln_httpc_resp r = {0};
    assert_int_equal(kiln_httpc_request(&c, "GET", "/metrics", NULL, NULL, 0, 0, &r, NULL),
                     KILN_OK);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "kiln_jobs{state=\"queued\"} 0"));
    assert_non_null(strstr(r.body.data, "kiln_workers{state=\"online\"}"));
    assert_non_null(strstr(r.body.data, "kiln_http_requests_total"));
    kiln_httpc_resp_free(&r);
    kiln_httpc_cleanup(&c);
}

static void test_config_file(void **state)
{
    (void)state;
    char path[] = "/tmp/kiln-cfg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *good = "listen: 0.0.0.0:9000\nallow_anonymous_read: true\nlost_after_s: 7\n"
                       "catalog: {s3: {bucket: x}}\n";
    assert_int_equal(write(fd, good, strlen(good)), (ssize_t)strlen(good));
    close(fd);
    struct kiln_serve_config c;
    kiln_serve_config_defaults(&c);
    struct kiln_error err = {0};
    /* Without the catalog feature, its section is an unknown setting. */
    assert_int_equal(kiln_serve_config_load(&c, path, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "unknown setting 'catalog'"));
    static const struct kiln_serve_feature *const features[] = {&kiln_catalog_feature, NULL};
    c.features = features;
    assert_int_equal(kiln_serve_config_load(&c, path, &err), KILN_OK);
    assert_string_equal(c.listen, "0.0.0.0:9000");
    assert_int_equal(c.allow_anonymous_read, 1);
    assert_int_equal(c.lost_after_s, 7);
    FILE *fp = fopen(path, "w");
    fputs("lost_after_s: soon\n", fp);
    fclose(fp);
    assert_int_equal(kiln_serve_config_load(&c, path, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "lost_after_s"));
    fp = fopen(path, "w");
    fputs("listne: 1\n", fp);
    fclose(fp);
    assert_int_equal(kiln_serve_config_load(&c, path, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "unknown setting 'listne'"));
    fp = fopen(path, "w");
    fputs("a: [1,\n", fp);
    fclose(fp);
    assert_int_not_equal(kiln_serve_config_load(&c, path, &err), KILN_OK);
    assert_non_null(strstr(err.msg, path));
    kiln_serve_config_free(&c);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_end_to_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_before_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ownership_and_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_scope, setup, teardown),
        cmocka_unit_test(test_scope_own_job_outside),
        cmocka_unit_test_setup_teardown(test_report_foreign_output, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_poll_wakes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_follow_and_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recipe_pipeline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test(test_config_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
