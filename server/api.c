/* api.c - routes, auth and handlers of the v1 API. */
#include "server/api.h"

#include "common/buf.h"
#include "common/clock.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "common/json_field.h"
#include "state/jobspec.h"
#include "state/registry.h"
#include "server/auth.h"
#include "server/secrets.h"
#include "server/serve.h"
#include "server/worker_body.h"
#include "state/access.h"
#include "state/submit.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef KILN_VERSION
#define KILN_VERSION "dev"
#endif

#define MAX_SEGS 8

struct ctx {
    struct kiln_server *srv;
    struct kiln_http_req *req;
    int64_t id;     /* {id} segment */
    char name[128]; /* {name} segment */
    enum kiln_role role;
    struct kiln_principal who; /* the caller (server/auth.h) */
};

typedef void (*handler)(struct ctx *c);

static void fail(struct ctx *c, int code, const char *msg)
{
    kiln_http_respond_error(c->req, kiln_err_http_status(code), kiln_code_name(code), "%s", msg);
}

/* A long-lived client over its cap: 503 naming the limit (issue 16). */
static int over_cap(struct ctx *c, int have, unsigned cap, const char *what)
{
    if (have < 0 || (unsigned)have < cap) return 0;
    kiln_http_respond_error(c->req, 503, "unavailable",
                            "too many %s (the limit is %u); try again later", what, cap);
    return 1;
}

static void fail_err(struct ctx *c, const struct kiln_error *err, int code)
{
    fail(c, code, err->msg[0] ? err->msg : kiln_strerror(code));
}

static int parse_i64(const char *s, int64_t *out)
{
    if (!s[0] || strlen(s) > 18) return 0;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p)) return 0;
    *out = strtoll(s, NULL, 10);
    return 1;
}

/* Optional integer query parameter; 0 ok, else answered 400. */
static int param_i64(struct ctx *c, const char *name, int64_t lo, int64_t hi, int64_t *out,
                     int *present)
{
    char v[32];
    int r = kiln_http_req_param(c->req, name, v, sizeof v);
    if (present) *present = r == 1;
    if (r == 0) return 0;
    int64_t x;
    if (r < 0 || !parse_i64(v, &x) || x < lo || x > hi) {
        kiln_http_respond_error(c->req, 400, "invalid",
                                "query parameter %s must be an integer from %lld to %lld", name,
                                (long long)lo, (long long)hi);
        return -1;
    }
    *out = x;
    return 0;
}

static json_t *body_json(struct ctx *c, int allow_empty)
{
    size_t len;
    const char *b = kiln_http_req_body(c->req, &len);
    if (!b || len == 0) {
        if (allow_empty) return json_object();
        fail(c, KILN_EINVAL, "request body is empty; expected a JSON object");
        return NULL;
    }
    json_error_t je;
    json_t *o = json_loadb(b, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        kiln_http_respond_error(c->req, 400, "parse_error",
                                "body is not valid JSON: %s at line %d column %d", je.text, je.line,
                                je.column);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        fail(c, KILN_EINVAL, "body must be a JSON object");
        return NULL;
    }
    return o;
}

/* --- jobs --- */

static void h_jobs_submit(struct ctx *c)
{
    size_t len;
    const char *b = kiln_http_req_body(c->req, &len);
    struct kiln_jobspec spec;
    struct kiln_error err = {0};
    int64_t brief = 0;
    if (param_i64(c, "brief", 0, 1, &brief, NULL)) return;
    int rc = kiln_jobspec_parse(b, len, &spec, &err);
    if (rc) return fail_err(c, &err, rc);
    if (spec.kind == KILN_JOBSPEC_ADHOC && (rc = kiln_secrets_check(spec.jobs, &err))) {
        kiln_jobspec_free(&spec);
        return fail_err(c, &err, rc);
    }
    spec.owner = c->who.token_id;
    spec.owner_is_admin = c->who.role == KILN_ROLE_ADMIN;
    size_t k;
    json_t *job;
    if (spec.kind == KILN_JOBSPEC_RECIPE)
        rc = kiln_auth_scope(c->srv->st, &c->who, spec.recipe, spec.branch, &err);
    json_array_foreach(spec.jobs, k, job)
    {
        const char *r = json_string_value(json_object_get(job, "recipe")),
                   *br = json_string_value(json_object_get(job, "branch"));
        if (!rc) rc = kiln_auth_scope(c->srv->st, &c->who, r ? r : "", br ? br : "", &err);
        json_object_set_new(job, "owner", json_integer(spec.owner));
    }
    if (rc) {
        kiln_jobspec_free(&spec);
        return fail_err(c, &err, rc);
    }
    json_t *ids;
    if (spec.kind == KILN_JOBSPEC_RECIPE)
        rc = kiln_submit_recipe(&c->srv->jobs, c->srv->cfg.recipes_dir, &spec, kiln_clock_wall(),
                                &ids, &err);
    else
        rc = kiln_jobs_submit(&c->srv->jobs, spec.jobs, 0, kiln_clock_wall(), &ids, &err);
    kiln_jobspec_free(&spec);
    if (rc) return fail_err(c, &err, rc);
    json_t *jobs = NULL;
    int opened = kiln_store_read_begin(c->srv->jobs.st); /* one snapshot for the answer */
    if ((brief ? kiln_jobs_brief_many : kiln_jobs_get_many)(&c->srv->jobs, ids, &jobs, NULL))
        jobs = json_array();
    kiln_store_read_end(c->srv->jobs.st, opened);
    c->srv->m.jobs_submitted += json_array_size(ids);
    json_decref(ids);
    /* A recipe batch may have superseded running jobs: end their follows. */
    kiln_logs_finish_if(c->srv->logs, kiln_serve_job_is_final, c->srv);
    kiln_serve_changed(c->srv);
    kiln_http_respond_json(c->req, 201, json_pack("{s:o}", "jobs", jobs));
}

/* The text filters of GET /jobs and GET /queue. */
struct filter_text {
    char state[32], recipe[128], branch[128], name[256], q[256];
};

static int read_filter(struct ctx *c, struct filter_text *t, struct kiln_jobs_filter *f)
{
    memset(t, 0, sizeof *t);
    if (kiln_http_req_param(c->req, "state", t->state, sizeof t->state) < 0 ||
        kiln_http_req_param(c->req, "recipe", t->recipe, sizeof t->recipe) < 0 ||
        kiln_http_req_param(c->req, "branch", t->branch, sizeof t->branch) < 0 ||
        kiln_http_req_param(c->req, "name", t->name, sizeof t->name) < 0 ||
        kiln_http_req_param(c->req, "q", t->q, sizeof t->q) < 0) {
        fail(c, KILN_EINVAL, "a query parameter is too long or badly escaped");
        return -1;
    }
    *f = (struct kiln_jobs_filter){t->state, t->recipe, t->branch, t->name, t->q, 0, 0, 0};
    return 0;
}

static void h_jobs_list(struct ctx *c)
{
    struct filter_text t;
    struct kiln_jobs_filter f;
    if (read_filter(c, &t, &f)) return;
    int64_t limit = 100, before = 0, worker = 0;
    if (param_i64(c, "limit", 1, 1000, &limit, NULL) ||
        param_i64(c, "before_id", 0, INT64_MAX / 2, &before, NULL) ||
        param_i64(c, "worker", 0, INT64_MAX / 2, &worker, NULL))
        return;
    f.limit = (int)limit;
    f.before_id = before;
    f.worker_id = worker;
    json_t *out;
    struct kiln_error err = {0};
    int rc = kiln_jobs_list(&c->srv->jobs, &f, &out, &err);
    if (rc) return fail_err(c, &err, rc);
    kiln_http_respond_json(c->req, 200, out);
}

static void h_queue(struct ctx *c)
{
    struct filter_text t;
    struct kiln_jobs_filter f;
    if (read_filter(c, &t, &f)) return;
    int64_t limit = KILN_QUEUE_MAX;
    if (param_i64(c, "limit", 1, KILN_QUEUE_MAX, &limit, NULL)) return;
    f.limit = (int)limit;
    struct kiln_buf b = {0};
    struct kiln_error err = {0};
    int rc = kiln_jobs_queue(&c->srv->jobs, &f, &b, &err);
    if (rc) {
        kiln_buf_free(&b);
        return fail_err(c, &err, rc);
    }
    size_t len = b.len;
    kiln_http_respond_owned(c->req, 200, "application/json", kiln_buf_steal(&b), len);
}

static void h_job_get(struct ctx *c)
{
    json_t *o;
    struct kiln_error err = {0};
    int rc = kiln_jobs_get(&c->srv->jobs, c->id, &o, &err);
    if (rc) return fail_err(c, &err, rc);
    kiln_http_respond_json(c->req, 200, o);
}

static void respond_job(struct ctx *c, int status)
{
    json_t *o;
    struct kiln_error err = {0};
    int rc = kiln_jobs_get(&c->srv->jobs, c->id, &o, &err);
    if (rc) return fail_err(c, &err, rc);
    kiln_http_respond_json(c->req, status, o);
}

static void h_job_cancel(struct ctx *c)
{
    int64_t wid = 0;
    struct kiln_error err = {0};
    int rc = kiln_auth_job_owner(c->srv->st, &c->who, c->id, &err);
    if (rc) return fail_err(c, &err, rc);
    rc = kiln_jobs_cancel(&c->srv->jobs, c->id, kiln_clock_wall(), &wid, &err);
    if (rc) return fail_err(c, &err, rc);
    if (wid) kiln_dispatch_wake_cancel(c->srv->dispatch, wid, c->id);
    kiln_logs_finish(c->srv->logs, c->id);
    kiln_serve_changed(c->srv);
    respond_job(c, 200);
}

static void h_job_retry(struct ctx *c)
{
    struct kiln_error err = {0};
    int rc = kiln_auth_job_owner(c->srv->st, &c->who, c->id, &err);
    if (rc) return fail_err(c, &err, rc);
    rc = kiln_jobs_retry(&c->srv->jobs, c->id, kiln_clock_wall(), &err);
    if (rc) return fail_err(c, &err, rc);
    kiln_serve_changed(c->srv);
    respond_job(c, 200);
}

static void h_log_get(struct ctx *c)
{
    const char *state;
    struct kiln_error err = {0};
    int rc = kiln_jobs_log_state(&c->srv->jobs, c->id, NULL, NULL, &state, &err);
    if (rc) return fail_err(c, &err, rc);
    int64_t offset = 0, follow = 0;
    if (param_i64(c, "offset", 0, INT64_MAX / 2, &offset, NULL) ||
        param_i64(c, "follow", 0, 1, &follow, NULL))
        return;
    if (follow &&
        over_cap(c, kiln_logs_streams(c->srv->logs), c->srv->cfg.max_streams, "log streams"))
        return;
    kiln_logs_serve(c->srv->logs, c->req, c->id, offset, (int)follow, kiln_job_state_final(state));
}

static void h_log_post(struct ctx *c)
{
    int64_t attempt = 0, offset = 0;
    int has_a, has_o;
    if (param_i64(c, "attempt", 0, INT64_MAX / 2, &attempt, &has_a) ||
        param_i64(c, "offset", 0, INT64_MAX / 2, &offset, &has_o))
        return;
    if (!has_a || !has_o)
        return fail(c, KILN_EINVAL, "query parameters attempt and offset are required");
    int64_t cur_attempt, base;
    const char *state;
    struct kiln_error err = {0};
    int rc = kiln_auth_job_worker(c->srv->st, &c->who, c->id, &err);
    if (rc) return fail_err(c, &err, rc);
    rc = kiln_jobs_log_state(&c->srv->jobs, c->id, &cur_attempt, &base, &state, &err);
    if (rc) return fail_err(c, &err, rc);
    if (attempt != cur_attempt || (strcmp(state, "building") && strcmp(state, "testing")))
        return (void)kiln_http_respond_error(
            c->req, 409, "conflict",
            "log for job %lld attempt %lld is stale (job is %s, attempt %lld)", (long long)c->id,
            (long long)attempt, state, (long long)cur_attempt);
    size_t len;
    const char *b = kiln_http_req_body(c->req, &len);
    if (base + offset + (int64_t)len > c->srv->cfg.max_log_bytes)
        return (void)kiln_http_respond_error(
            c->req, 413, "too_large", "job %lld's log would exceed %lld bytes", (long long)c->id,
            (long long)c->srv->cfg.max_log_bytes);
    if (c->srv->cfg.log_quota_bytes > 0 &&
        c->srv->log_total + (int64_t)len > c->srv->cfg.log_quota_bytes)
        return (void)kiln_http_respond_error(
            c->req, 507, "insufficient_storage",
            "the server's log quota of %lld bytes is full (finished jobs' logs go first)",
            (long long)c->srv->cfg.log_quota_bytes);
    struct kiln_worker_info w;
    int64_t before, size;
    if ((rc = kiln_logs_size(c->srv->logs, c->id, &before, &err))) return fail_err(c, &err, rc);
    if (before < base && len > 0 &&
        ((rc = kiln_registry_get(&c->srv->jobs, c->who.worker_id, &w, &err)) ||
         (rc = kiln_logs_open_attempt(c->srv->logs, c->id, base, attempt,
                                      !strcmp(state, "testing") ? "test" : "build", w.name, &err))))
        return fail_err(c, &err, rc);
    /* Secret values never reach the stored log (server/secrets.h). */
    json_t *sec = NULL, *vals = NULL;
    char *masked = NULL;
    if ((rc = kiln_access_job_secrets(c->srv->st, c->id, &sec, &err))) return fail_err(c, &err, rc);
    if (json_object_size(sec)) {
        kiln_secrets_resolve(sec, &vals, NULL);
        masked = malloc(len ? len : 1);
        if (!masked) {
            json_decref(sec);
            json_decref(vals);
            return fail(c, KILN_ENOMEM, "out of memory");
        }
        if (len) memcpy(masked, b, len);
        kiln_secrets_mask(vals, masked, len);
        b = masked;
    }
    json_decref(sec);
    json_decref(vals);
    rc = kiln_logs_append_at(c->srv->logs, c->id, base + offset, b ? b : "", len, &size, &err);
    free(masked);
    if (rc == KILN_ECONFLICT) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "log offset %lld is past the %lld bytes the server has for attempt %lld; resend "
                 "from there",
                 (long long)offset, (long long)(size - base), (long long)attempt);
        json_t *o = json_pack("{s:{s:s,s:s},s:I}", "error", "code", "conflict", "message", msg,
                              "size", (json_int_t)(size - base));
        kiln_http_respond_json(c->req, 409, o);
        return;
    }
    if (rc) return fail_err(c, &err, rc);
    if (size > before) {
        c->srv->m.log_bytes += (uint64_t)(size - before);
        c->srv->log_total += size - before;
        if ((rc = kiln_jobs_log_grew(&c->srv->jobs, c->id, before, size - before, size,
                                     kiln_clock_wall(), &err)))
            return fail_err(c, &err, rc);
        kiln_logs_notify(c->srv->logs, c->id);
        kiln_events_notify(c->srv->events);
    }
    kiln_http_respond_json(c->req, 200, json_pack("{s:I}", "size", (json_int_t)(size - base)));
}

/* The catalog's say on a parsed report (serve.h, report_vet): a refusal
 * is the answer; a failed check fails the stage with its sentence (kept in
 * *why, which r->reason then borrows). "staged": false: the worker stages
 * nothing because every host shares its Nix store (worker config
 * stage_outputs: false). */
static int vet_report(struct kiln_server *srv, int64_t job, json_t *o, struct kiln_report *r,
                      struct kiln_error *why, struct kiln_error *err)
{
    if (!srv->report_vet) return KILN_OK;
    int rc = srv->report_vet(srv, job, r, !json_is_false(json_object_get(o, "staged")), why,
                             srv->report_vet_ctx, err);
    if (rc) return rc;
    if (why->msg[0]) {
        r->exit_code = -1;
        r->infra = 0;
        r->reason = why->msg;
    }
    return KILN_OK;
}

static void h_report(struct ctx *c)
{
    struct kiln_error aerr = {0};
    int arc = kiln_auth_job_worker(c->srv->st, &c->who, c->id, &aerr);
    if (arc) return fail_err(c, &aerr, arc);
    json_t *o = body_json(c, 0);
    if (!o) return;
    struct kiln_report r;
    struct kiln_error err = {0};
    struct kiln_error why = {0};
    int rc = kiln_report_parse(o, &r, &err);
    if (!rc) rc = vet_report(c->srv, c->id, o, &r, &why, &err);
    if (rc) {
        json_decref(o);
        return fail_err(c, &err, rc);
    }
    const char *state = NULL;
    rc = kiln_jobs_report(&c->srv->jobs, c->id, c->who.worker_id, &r, kiln_clock_wall(), &state,
                          &err);
    json_decref(o);
    if (rc) return fail_err(c, &err, rc);
    c->srv->m.reports++;
    if (kiln_job_state_final(state)) kiln_logs_finish(c->srv->logs, c->id);
    kiln_serve_changed(c->srv);
    kiln_http_respond_json(c->req, 200, json_pack("{s:s}", "state", state));
}

/* Several finished jobs of one worker in one request and one transaction
 * (group commit): the answer comes once all of them are durable. Each item
 * succeeds or fails alone, as its single report would. With ?lease=N the
 * body also carries a lease's offer, and the answer the lease of up to N
 * jobs decided after the reports (no wait): a worker whose job ended gets
 * its next one in the same round trip. */
#define REPORTS_MAX 256
static json_t *lease_now(struct kiln_server *srv, int64_t worker, const struct kiln_offer *off,
                         int max);
static void h_reports(struct ctx *c)
{
    struct kiln_error err = {0};
    int rc = kiln_auth_worker_self(&c->who, c->id, &err);
    if (rc) return fail_err(c, &err, rc);
    int64_t lease_max = 0;
    if (param_i64(c, "lease", 0, 64, &lease_max, NULL)) return;
    json_t *o = body_json(c, 0);
    if (!o) return;
    struct kiln_offer off;
    int orc = lease_max ? kiln_offer_parse(o, &off, &err) : KILN_OK;
    if (orc) {
        json_decref(o);
        return fail_err(c, &err, orc);
    }
    json_t *list = json_object_get(o, "reports");
    size_t n = json_array_size(list);
    if (!json_is_array(list) || n == 0 || n > REPORTS_MAX) {
        json_decref(o);
        return fail(c, KILN_EINVAL, "reports: must be an array of 1 to 256 reports");
    }
    struct kiln_report_item *items = calloc(n, sizeof *items);
    struct kiln_error *whys = calloc(n, sizeof *whys);
    json_t *results = json_array();
    if (!items || !whys || !results) {
        free(items);
        free(whys);
        json_decref(results);
        json_decref(o);
        return fail(c, KILN_ENOMEM, "out of memory");
    }
    int opened = kiln_store_read_begin(c->srv->jobs.st); /* the checks share one snapshot */
    for (size_t i = 0; i < n; i++) {
        struct kiln_report_item *it = &items[i];
        json_t *rj = json_array_get(list, i);
        json_t *job = json_object_get(rj, "job");
        if (!json_is_integer(job) || json_integer_value(job) <= 0)
            it->rc = kiln_fail(&it->err, KILN_EINVAL, "job: is required and must be a job id");
        else
            it->job = json_integer_value(job);
        if (!it->rc) it->rc = kiln_auth_job_worker(c->srv->st, &c->who, it->job, &it->err);
        if (!it->rc) it->rc = kiln_report_parse(rj, &it->rep, &it->err);
        if (!it->rc) it->rc = vet_report(c->srv, it->job, rj, &it->rep, &whys[i], &it->err);
    }
    kiln_store_read_end(c->srv->jobs.st, opened);
    /* Items refused above keep their rc and err: the batch skips them. */
    rc = kiln_jobs_report_batch(&c->srv->jobs, n, items, c->who.worker_id, kiln_clock_wall(), &err);
    for (size_t i = 0; !rc && i < n; i++) {
        struct kiln_report_item *it = &items[i];
        json_t *r;
        if (it->rc) {
            r = json_pack("{s:I,s:i,s:{s:s,s:s}}", "job", (json_int_t)it->job, "status",
                          kiln_err_http_status(it->rc), "error", "code", kiln_code_name(it->rc),
                          "message", it->err.msg[0] ? it->err.msg : kiln_strerror(it->rc));
        } else {
            c->srv->m.reports++;
            if (kiln_job_state_final(it->state)) kiln_logs_finish(c->srv->logs, it->job);
            r = json_pack("{s:I,s:s}", "job", (json_int_t)it->job, "state", it->state);
        }
        if (!r || json_array_append_new(results, r)) rc = KILN_ENOMEM;
    }
    free(items);
    free(whys);
    json_decref(o);
    if (rc) {
        json_decref(results);
        return fail_err(c, &err, rc);
    }
    kiln_serve_changed(c->srv);
    if (!lease_max) {
        kiln_http_respond_json(c->req, 200, json_pack("{s:o}", "results", results));
        return;
    }
    json_t *lease = lease_now(c->srv, c->id, &off, (int)lease_max);
    kiln_http_respond_json(
        c->req, 200,
        json_pack("{s:o,s:o}", "results", results, "lease", lease ? lease : json_null()));
}

/* --- workers --- */

static void h_register(struct ctx *c)
{
    int64_t replace = 0;
    if (param_i64(c, "replace", 0, 1, &replace, NULL)) return;
    json_t *o = body_json(c, 0);
    if (!o) return;
    int64_t id;
    json_t *cancel;
    struct kiln_error err = {0};
    char name[128] = "";
    const char *n = json_string_value(json_object_get(o, "name"));
    if (n && strlen(n) >= sizeof name) {
        json_decref(o);
        return fail(c, KILN_EINVAL, "name: at most 127 bytes");
    }
    if (n) snprintf(name, sizeof name, "%s", n); /* o goes before the name is used */
    int rc = n ? kiln_auth_register(c->srv->st, &c->who, name, (int)replace, &err) : KILN_OK;
    if (!rc) rc = kiln_registry_register(&c->srv->jobs, o, kiln_clock_wall(), &id, &cancel, &err);
    json_decref(o);
    if (rc) return fail_err(c, &err, rc);
    /* The worker acts with its own credential from now on; a new one each
     * registration, so a copy taken earlier stops working. */
    char cred[KILN_TOKEN_LEN];
    rc = kiln_access_issue_worker_credential(c->srv->st, id, name, kiln_clock_wall(), cred, &err);
    kiln_serve_changed(c->srv);
    if (rc) {
        json_decref(cancel);
        return fail_err(c, &err, rc);
    }
    kiln_http_respond_json(c->req, 200,
                           json_pack("{s:I,s:s,s:i,s:i,s:o}", "worker_id", (json_int_t)id,
                                     "credential", cred, "heartbeat_s",
                                     (int)c->srv->cfg.heartbeat_s, "lost_after_s",
                                     (int)c->srv->cfg.lost_after_s, "cancel", cancel));
}

static void h_heartbeat(struct ctx *c)
{
    struct kiln_error err = {0};
    int rc = kiln_auth_worker_self(&c->who, c->id, &err);
    if (rc) return fail_err(c, &err, rc);
    json_t *o = body_json(c, 1);
    if (!o) return;
    json_t *cancel;
    int drain = 0;
    rc = kiln_registry_heartbeat(&c->srv->jobs, c->id, o, kiln_clock_wall(), &cancel, &drain, &err);
    json_decref(o);
    if (rc) return fail_err(c, &err, rc);
    kiln_serve_changed(c->srv);
    kiln_http_respond_json(c->req, 200, json_pack("{s:o,s:b}", "cancel", cancel, "drain", drain));
}

struct lease_wait {
    struct kiln_server *srv;
    struct kiln_http_req *req;
    struct kiln_waiter *w;
    int in_call;
};

/* The one place secret values leave the server: into the leased job's env. */
static void lease_secrets(struct kiln_server *srv, json_t *job)
{
    json_t *sec = NULL, *vals = NULL;
    struct kiln_error err = {0};
    int64_t id = json_integer_value(json_object_get(job, "id"));
    if (kiln_access_job_secrets(srv->st, id, &sec, &err) == KILN_OK && json_object_size(sec)) {
        if (kiln_secrets_resolve(sec, &vals, &err))
            kiln_log(&srv->log, KILN_LOG_WARN, "job %lld: %s", (long long)id, err.msg);
        json_t *env = json_object_get(job, "env");
        if (json_is_object(env) && vals) json_object_update(env, vals);
    }
    json_decref(sec);
    json_decref(vals);
}

/* A lease answer on its way out (200): its jobs get their secret values,
 * and the leases are counted. */
static void lease_deliver(struct kiln_server *srv, json_t *body)
{
    if (!json_is_object(json_object_get(body, "job"))) return; /* {"cancel":[...]} */
    /* "jobs" (a batch lease, ?max= > 1) holds "job" too */
    json_t *jobs = json_object_get(body, "jobs");
    size_t n = json_is_array(jobs) ? json_array_size(jobs) : 0;
    int opened = kiln_store_read_begin(srv->jobs.st);
    if (!n) lease_secrets(srv, json_object_get(body, "job"));
    for (size_t i = 0; i < n; i++)
        lease_secrets(srv, json_array_get(jobs, i));
    kiln_store_read_end(srv->jobs.st, opened);
    srv->m.leases += n ? n : 1;
}

static void lease_answer(void *arg, int status, json_t *body)
{
    struct lease_wait *lw = arg;
    if (!lw->in_call) kiln_http_req_on_close(lw->req, NULL, NULL);
    if (status == 200) lease_deliver(lw->srv, body);
    if (status == 204)
        kiln_http_respond(lw->req, 204, NULL, NULL, NULL, 0);
    else
        kiln_http_respond_json(lw->req, status, body);
    if (status == 200) kiln_events_notify(lw->srv->events);
    if (!lw->in_call) free(lw);
}

static void lease_closed(struct kiln_http_req *req, void *arg)
{
    struct lease_wait *lw = arg;
    (void)req;
    kiln_dispatch_unwait(lw->srv->dispatch, lw->w);
    free(lw);
}

/* A lease's check of the asking worker: known and not marked lost. Asking
 * for work is a sign of life, like a heartbeat. */
static int lease_worker_check(struct kiln_server *srv, int64_t id, struct kiln_worker_info *w,
                              struct kiln_error *err)
{
    int rc = kiln_registry_get(&srv->jobs, id, w, err);
    if (rc) return rc;
    if (!strcmp(w->state, "lost") || !strcmp(w->state, "offline"))
        return kiln_fail(err, KILN_ESTATE, "worker is marked lost; register again");
    kiln_registry_touch(&srv->jobs, id, w->last_seen, kiln_clock_wall());
    return KILN_OK;
}

struct lease_now {
    int status;
    json_t *body;
};

static void lease_now_cb(void *arg, int status, json_t *body)
{
    struct lease_now *g = arg;
    g->status = status;
    g->body = body;
}

/* The lease a batch report asks for (?lease=N): one placement pass and one
 * transaction now, no waiting. The lease answer's object, or NULL when
 * nothing fits or the worker may not take work. */
static json_t *lease_now(struct kiln_server *srv, int64_t worker, const struct kiln_offer *off,
                         int max)
{
    struct kiln_error err = {0};
    struct kiln_worker_info w;
    if (lease_worker_check(srv, worker, &w, &err)) return NULL;
    struct lease_now g = {0};
    kiln_dispatch_wait(srv->dispatch, worker, &w, off, max, 0, lease_now_cb, &g); /* in call */
    if (g.status != 200 || !json_is_object(json_object_get(g.body, "job"))) {
        json_decref(g.body);
        return NULL;
    }
    lease_deliver(srv, g.body);
    kiln_events_notify(srv->events);
    return g.body;
}

static void h_lease(struct ctx *c)
{
    struct kiln_error aerr = {0};
    int arc = kiln_auth_worker_self(&c->who, c->id, &aerr);
    if (arc) return fail_err(c, &aerr, arc);
    int64_t wait = 0, max = 1;
    if (param_i64(c, "wait", 0, 3600, &wait, NULL)) return;
    if (param_i64(c, "max", 1, 64, &max, NULL)) return;
    if (wait > c->srv->cfg.max_lease_wait_s) wait = c->srv->cfg.max_lease_wait_s;
    json_t *o = body_json(c, 1);
    if (!o) return;
    struct kiln_offer off;
    struct kiln_error err = {0};
    int rc = kiln_offer_parse(o, &off, &err);
    json_decref(o);
    if (rc) return fail_err(c, &err, rc);
    struct kiln_worker_info w;
    if ((rc = lease_worker_check(c->srv, c->id, &w, &err))) return fail_err(c, &err, rc);
    if (wait > 0 && over_cap(c, kiln_dispatch_waiting(c->srv->dispatch),
                             c->srv->cfg.max_lease_waits, "waiting lease requests"))
        return;
    struct lease_wait *lw = calloc(1, sizeof *lw);
    if (!lw) return fail(c, KILN_ENOMEM, "out of memory");
    lw->srv = c->srv;
    lw->req = c->req;
    lw->in_call = 1;
    struct kiln_waiter *wt = kiln_dispatch_wait(c->srv->dispatch, c->id, &w, &off, (int)max,
                                                (unsigned)wait * 1000u, lease_answer, lw);
    lw->in_call = 0;
    if (!wt) {
        free(lw);
        return;
    }
    lw->w = wt;
    kiln_http_req_on_close(c->req, lease_closed, lw);
}

static void h_workers(struct ctx *c)
{
    json_t *o;
    struct kiln_error err = {0};
    int rc = kiln_registry_list(&c->srv->jobs, &o, &err);
    if (rc) return fail_err(c, &err, rc);
    kiln_http_respond_json(c->req, 200, o);
}

static void h_drain(struct ctx *c)
{
    json_t *o = body_json(c, 1);
    if (!o) return;
    json_t *d = json_object_get(o, "drain");
    if (d && !json_is_boolean(d)) {
        json_decref(o);
        return fail(c, KILN_EINVAL, "drain: must be true or false");
    }
    int drain = d ? json_is_true(d) : 1;
    json_decref(o);
    struct kiln_error err = {0};
    int rc = kiln_registry_drain(&c->srv->jobs, c->id, drain, kiln_clock_wall(), &err);
    if (rc) return fail_err(c, &err, rc);
    kiln_serve_changed(c->srv);
    json_t *w;
    if ((rc = kiln_registry_worker_json(&c->srv->jobs, c->id, &w, &err)))
        return fail_err(c, &err, rc);
    kiln_http_respond_json(c->req, 200, w);
}

/* --- events, health, metrics, recipes --- */

static void h_events(struct ctx *c)
{
    int64_t last = -1;
    const char *h = kiln_http_req_header(c->req, "Last-Event-ID");
    if (h && !parse_i64(h, &last))
        return fail(c, KILN_EINVAL, "Last-Event-ID must be an event id (an integer)");
    int present;
    int64_t q = -1;
    if (param_i64(c, "last_event_id", 0, INT64_MAX / 2, &q, &present)) return;
    if (!h && present) last = q;
    if (over_cap(c, kiln_events_subscribers(c->srv->events), c->srv->cfg.max_streams,
                 "event streams"))
        return;
    kiln_events_subscribe(c->srv->events, c->req, last);
}

static void h_healthz(struct ctx *c)
{
    kiln_http_respond_json(c->req, 200,
                           json_pack("{s:s,s:s,s:f}", "status", "ok", "version", KILN_VERSION,
                                     "uptime_s", kiln_clock_wall() - c->srv->started_at));
}

static void h_metrics(struct ctx *c)
{
    struct kiln_server *s = c->srv;
    struct kiln_buf b = {0};
    json_t *counts = NULL;
    struct kiln_error err = {0};
    int rc = kiln_jobs_counts(&s->jobs, &counts, &err);
    if (rc) return fail_err(c, &err, rc);
    kiln_buf_puts(&b, "# HELP kiln_jobs Jobs by state.\n# TYPE kiln_jobs gauge\n");
    const char *k;
    json_t *v;
    json_object_foreach(counts, k, v)
        kiln_buf_printf(&b, "kiln_jobs{state=\"%s\"} %lld\n", k, (long long)json_integer_value(v));
    json_decref(counts);
    static const char *wstates[] = {"online", "draining", "lost", "offline"};
    int wc[4] = {0};
    struct kiln_worker_info *ws = NULL;
    int nw = 0;
    if (kiln_registry_all(&s->jobs, &ws, &nw, NULL) == KILN_OK) {
        for (int i = 0; i < nw; i++)
            for (int j = 0; j < 4; j++)
                if (!strcmp(ws[i].state, wstates[j])) wc[j]++;
    }
    kiln_buf_puts(&b, "# HELP kiln_workers Workers by state.\n# TYPE kiln_workers gauge\n");
    for (int j = 0; j < 4; j++)
        kiln_buf_printf(&b, "kiln_workers{state=\"%s\"} %d\n", wstates[j], wc[j]);
    long long cores = 0, used = 0;
    for (int i = 0; i < nw; i++)
        if (!strcmp(ws[i].state, "online") || !strcmp(ws[i].state, "draining")) {
            cores += ws[i].cores;
            used += ws[i].cores_used;
        }
    free(ws);
    kiln_buf_printf(&b, "# TYPE kiln_worker_cores gauge\nkiln_worker_cores %lld\n", cores);
    kiln_buf_printf(&b, "# TYPE kiln_worker_cores_used gauge\nkiln_worker_cores_used %lld\n", used);
    struct {
        const char *name, *help;
        uint64_t v;
    } ctr[] = {
        {"kiln_http_requests_total", "HTTP requests received.", s->m.http_requests},
        {"kiln_auth_failures_total", "Requests refused with 401 or 403.", s->m.auth_failures},
        {"kiln_jobs_submitted_total", "Jobs submitted.", s->m.jobs_submitted},
        {"kiln_leases_total", "Jobs handed to workers.", s->m.leases},
        {"kiln_reports_total", "Results reported by workers.", s->m.reports},
        {"kiln_log_bytes_total", "Log bytes received.", s->m.log_bytes},
        {"kiln_workers_lost_total", "Workers declared lost.", s->m.workers_lost},
        {"kiln_timeouts_total", "Attempts that ran over their timeout.", s->m.timeouts},
    };
    for (size_t i = 0; i < sizeof ctr / sizeof ctr[0]; i++)
        kiln_buf_printf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", ctr[i].name, ctr[i].help,
                        ctr[i].name, ctr[i].name, (unsigned long long)ctr[i].v);
    kiln_buf_printf(&b,
                    "# TYPE kiln_lease_waiting gauge\nkiln_lease_waiting %d\n"
                    "# TYPE kiln_sse_clients gauge\nkiln_sse_clients %d\n"
                    "# TYPE kiln_log_streams gauge\nkiln_log_streams %d\n"
                    "# TYPE kiln_last_event_id gauge\nkiln_last_event_id %lld\n",
                    kiln_dispatch_waiting(s->dispatch), kiln_events_subscribers(s->events),
                    kiln_logs_streams(s->logs), (long long)kiln_store_last_event_id(s->st));
    if (!b.data) return fail(c, KILN_ENOMEM, "out of memory");
    kiln_http_respond(c->req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.data, b.len);
    kiln_buf_free(&b);
}

static void h_recipes(struct ctx *c)
{
    json_t *arr = json_array();
    DIR *d = c->srv->cfg.recipes_dir[0] ? opendir(c->srv->cfg.recipes_dir) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t n = strlen(e->d_name);
            if (n > 5 && !strcmp(e->d_name + n - 5, ".yaml") && e->d_name[0] != '.') {
                char name[256];
                snprintf(name, sizeof name, "%.*s", (int)(n - 5), e->d_name);
                json_array_append_new(arr, json_string(name));
            }
        }
        closedir(d);
    }
    kiln_http_respond_json(c->req, 200, json_pack("{s:o}", "recipes", arr));
}

static void h_recipe_expand(struct ctx *c)
{
    char branch[128] = "", where[1024] = "";
    if (kiln_http_req_param(c->req, "branch", branch, sizeof branch) < 0 ||
        kiln_http_req_param(c->req, "where", where, sizeof where) < 0)
        return fail(c, KILN_EINVAL, "branch or where is too long or badly escaped");
    json_t *variants;
    struct kiln_error err = {0};
    int rc =
        kiln_submit_expand(c->srv->cfg.recipes_dir, c->name, NULL, branch, where, &variants, &err);
    if (rc) return fail_err(c, &err, rc);
    kiln_http_respond_json(c->req, 200, json_pack("{s:o}", "variants", variants));
}

/* --- admin: audit log and route table --- */

static void h_audit(struct ctx *c)
{
    int64_t limit = 100, before = 0;
    if (param_i64(c, "limit", 1, 1000, &limit, NULL) ||
        param_i64(c, "before_id", 0, INT64_MAX / 2, &before, NULL))
        return;
    json_t *out;
    struct kiln_error err = {0};
    int rc = kiln_access_audit_list(c->srv->st, before, (int)limit, &out, &err);
    if (rc) return fail_err(c, &err, rc);
    kiln_http_respond_json(c->req, 200, out);
}

static void h_routes(struct ctx *c);

/* --- the page --- */

static const char *content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    static const struct {
        const char *ext, *type;
    } types[] = {{".html", "text/html; charset=utf-8"},
                 {".js", "text/javascript; charset=utf-8"},
                 {".mjs", "text/javascript; charset=utf-8"},
                 {".css", "text/css; charset=utf-8"},
                 {".json", "application/json"},
                 {".svg", "image/svg+xml"},
                 {".png", "image/png"},
                 {".ico", "image/x-icon"},
                 {".txt", "text/plain; charset=utf-8"},
                 {".woff2", "font/woff2"}};
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(dot, types[i].ext)) return types[i].type;
    return "application/octet-stream";
}

#define CSP_HEADERS                                                                                \
    "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; "           \
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "               \
    "frame-ancestors 'none'; form-action 'self'\r\n"                                               \
    "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"                          \
    "Cache-Control: no-cache\r\n"

static void serve_static(struct ctx *c, const char *rel)
{
    if (!c->srv->cfg.web_dir[0]) return fail(c, KILN_ENOTFOUND, "no web directory configured");
    /* Only plain names: no "..", no hidden files, no backslashes. */
    if (!rel[0] || strlen(rel) > 200 || strstr(rel, "..") || strstr(rel, "/.") || rel[0] == '.' ||
        strchr(rel, '\\') || strchr(rel, '%'))
        return fail(c, KILN_ENOTFOUND, "no such file");
    for (const char *p = rel; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("/._-", *p))
            return fail(c, KILN_ENOTFOUND, "no such file");
    char path[PATH_MAX];
    if (kiln_path_join(path, sizeof path, c->srv->cfg.web_dir, rel))
        return fail(c, KILN_ENOTFOUND, "no such file");
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) return fail(c, KILN_ENOTFOUND, "no such file");
    struct kiln_buf b = {0};
    int rc = kiln_read_file(path, 8u << 20, &b);
    if (rc) {
        kiln_buf_free(&b);
        return fail(c, rc == KILN_ELIMIT ? KILN_ELIMIT : KILN_EIO, "cannot read the file");
    }
    kiln_http_respond(c->req, 200, content_type(path), CSP_HEADERS, b.data ? b.data : "", b.len);
    kiln_buf_free(&b);
}

static void h_index(struct ctx *c)
{
    serve_static(c, "index.html");
}

static void h_web(struct ctx *c)
{
    const char *p = kiln_http_req_path(c->req);
    serve_static(c, p + strlen("/web/"));
}

/* --- router --- */

struct route {
    const char *method;
    const char *pattern; /* segments; {id} = integer, {name} = token, * = rest */
    enum kiln_role role; /* KILN_ROLE_NONE = no auth at all */
    handler fn;
};

static const struct route routes[] = {
    {"POST", "/api/v1/jobs", KILN_ROLE_SUBMIT, h_jobs_submit},
    {"GET", "/api/v1/jobs", KILN_ROLE_READ, h_jobs_list},
    {"GET", "/api/v1/jobs/{id}", KILN_ROLE_READ, h_job_get},
    {"GET", "/api/v1/queue", KILN_ROLE_READ, h_queue},
    {"POST", "/api/v1/jobs/{id}/cancel", KILN_ROLE_SUBMIT, h_job_cancel},
    {"POST", "/api/v1/jobs/{id}/retry", KILN_ROLE_SUBMIT, h_job_retry},
    {"GET", "/api/v1/jobs/{id}/log", KILN_ROLE_READ, h_log_get},
    {"POST", "/api/v1/jobs/{id}/log", KILN_ROLE_WORKER, h_log_post},
    {"POST", "/api/v1/jobs/{id}/report", KILN_ROLE_WORKER, h_report},
    {"POST", "/api/v1/workers/{id}/reports", KILN_ROLE_WORKER, h_reports},
    {"GET", "/api/v1/events", KILN_ROLE_READ, h_events},
    {"GET", "/api/v1/workers", KILN_ROLE_READ, h_workers},
    {"POST", "/api/v1/workers/register", KILN_ROLE_WORKER, h_register},
    {"POST", "/api/v1/workers/{id}/lease", KILN_ROLE_WORKER, h_lease},
    {"POST", "/api/v1/workers/{id}/heartbeat", KILN_ROLE_WORKER, h_heartbeat},
    {"POST", "/api/v1/workers/{id}/drain", KILN_ROLE_ADMIN, h_drain},
    {"GET", "/api/v1/recipes", KILN_ROLE_READ, h_recipes},
    {"GET", "/api/v1/recipes/{name}/expand", KILN_ROLE_READ, h_recipe_expand},
    {"GET", "/healthz", KILN_ROLE_NONE, h_healthz},
    {"GET", "/metrics", KILN_ROLE_READ, h_metrics},
    {"GET", "/", KILN_ROLE_NONE, h_index},
    {"GET", "/index.html", KILN_ROLE_NONE, h_index},
    {"GET", "/web/*", KILN_ROLE_NONE, h_web},
    {"GET", "/api/v1/audit", KILN_ROLE_ADMIN, h_audit},
    {"GET", "/api/v1/routes", KILN_ROLE_ADMIN, h_routes},
};

/* Every route the server answers: the table above, the features' routes
 * and their streamed prefixes. tests/security/ builds its table from this,
 * so a route added without a row there fails that test. */
static void h_routes(struct ctx *c)
{
    json_t *arr = json_array();
    struct kiln_server *s = c->srv;
    for (size_t i = 0; arr && i < sizeof routes / sizeof routes[0]; i++)
        json_array_append_new(arr,
                              json_pack("{s:s,s:s,s:s}", "method", routes[i].method, "path",
                                        routes[i].pattern, "role", kiln_role_name(routes[i].role)));
    for (int i = 0; arr && i < s->nroutes; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "method", s->routes[i].method, "path",
                                             s->routes[i].prefix, "role",
                                             kiln_role_name(s->routes[i].role)));
    for (int i = 0; arr && i < s->nstreams; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "method", "*", "path",
                                             s->streams[i].prefix, "role", "stream"));
    if (!arr) return fail(c, KILN_ENOMEM, "out of memory");
    kiln_http_respond_json(c->req, 200, json_pack("{s:o}", "routes", arr));
}

/* 1 if path matches pattern, filling c->id / c->name. */
static int match(const char *pattern, const char *path, struct ctx *c)
{
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '*') return 1;
        if (!strncmp(p, "{id}", 4) || !strncmp(p, "{name}", 6)) {
            const char *end = strchr(s, '/');
            size_t n = end ? (size_t)(end - s) : strlen(s);
            char seg[128];
            if (n == 0 || n >= sizeof seg) return 0;
            memcpy(seg, s, n);
            seg[n] = '\0';
            if (p[1] == 'i') {
                if (!parse_i64(seg, &c->id) || c->id <= 0) return 0;
                p += 4;
            } else {
                for (size_t i = 0; i < n; i++)
                    if (!isalnum((unsigned char)seg[i]) && !strchr("-_.+", seg[i])) return 0;
                snprintf(c->name, sizeof c->name, "%s", seg);
                p += 6;
            }
            s += n;
            continue;
        }
        if (*p != *s) return 0;
        p++;
        s++;
    }
    if (*p == '*') return 1;
    return *p == '\0' && *s == '\0';
}

/* Audit a state-changing request once its caller is known: outcome is
 * "allowed" or the refusal's status. A failed audit write is logged, not
 * fatal: refusing service because the audit table is busy would let a
 * noisy client lock everyone out. */
static void audit(struct kiln_server *srv, struct kiln_http_req *req,
                  const struct kiln_principal *who, const char *outcome)
{
    const char *method = kiln_http_req_method(req), *path = kiln_http_req_path(req);
    if (!kiln_auth_audited(method, path)) return;
    struct kiln_error err = {0};
    if (kiln_access_audit(srv->st, who, kiln_http_req_peer(req), method, path, outcome,
                          kiln_clock_wall(), &err))
        kiln_log(&srv->log, KILN_LOG_WARN, "audit: %s", err.msg);
}

/* KILN_OK when the caller may call a route needing `need`; c->who is set. */
static int check_caller(struct ctx *c, enum kiln_role need, int is_register, struct kiln_error *err)
{
    int rc = need == KILN_ROLE_NONE
                 ? KILN_OK
                 : kiln_auth_identify(c->srv->st, kiln_http_req_header(c->req, "Authorization"),
                                      &c->who, err);
    if (!rc)
        rc = kiln_auth_route(&c->who, need, c->srv->cfg.allow_anonymous_read, is_register, err);
    c->role = c->who.role;
    return rc;
}

/* Answer (and audit) a refusal: 401 or 403 with the reason. */
static void refuse(struct ctx *c, int rc, const struct kiln_error *err)
{
    c->srv->m.auth_failures++;
    int status = kiln_err_http_status(rc);
    char outcome[8];
    snprintf(outcome, sizeof outcome, "%d", status);
    audit(c->srv, c->req, &c->who, outcome);
    kiln_http_respond_error(c->req, status, kiln_code_name(rc), "%s", err->msg);
}

/* 1 when the caller may go on; else the refusal is answered (and audited). */
static int authorize_as(struct ctx *c, enum kiln_role need, int is_register)
{
    struct kiln_error err = {0};
    int rc = check_caller(c, need, is_register, &err);
    if (rc) {
        refuse(c, rc, &err);
        return 0;
    }
    audit(c->srv, c->req, &c->who, "allowed");
    return 1;
}

static int authorize(struct ctx *c, enum kiln_role need)
{
    return authorize_as(c, need, 0);
}

static int dispatch_extra(struct ctx *c, const char *method, const char *path)
{
    struct kiln_server *s = c->srv;
    for (int i = 0; i < s->nroutes; i++) {
        struct kiln_route *r = &s->routes[i];
        size_t n = strlen(r->prefix);
        if (strncmp(path, r->prefix, n) || (path[n] && path[n] != '/')) continue;
        if (strcmp(method, r->method) &&
            !(strcmp(r->method, "GET") == 0 && !strcmp(method, "HEAD")))
            continue;
        if (authorize(c, r->role)) r->fn(s, c->req, r->ctx);
        return 1;
    }
    return 0;
}

void kiln_api_on_request(struct kiln_http_req *req, void *server)
{
    struct kiln_server *srv = server;
    struct ctx c = {.srv = srv, .req = req};
    const char *method = kiln_http_req_method(req);
    const char *path = kiln_http_req_path(req);
    const char *m = !strcmp(method, "HEAD") ? "GET" : method;
    srv->m.http_requests++;
    if (srv->stopping) {
        kiln_http_respond_error(req, 503, "unavailable", "the server is shutting down");
        return;
    }
    char allow[64] = "";
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        struct ctx t = c;
        if (!match(routes[i].pattern, path, &t)) continue;
        if (strcmp(routes[i].method, m)) {
            if (!strstr(allow, routes[i].method)) {
                size_t l = strlen(allow);
                snprintf(allow + l, sizeof allow - l, "%s%s", l ? ", " : "", routes[i].method);
            }
            continue;
        }
        if (authorize_as(&t, routes[i].role, routes[i].fn == h_register)) routes[i].fn(&t);
        return;
    }
    if (dispatch_extra(&c, m, path)) return;
    if (allow[0]) {
        char hdr[96];
        snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
        char body[256];
        int n =
            snprintf(body, sizeof body,
                     "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"%s is not "
                     "allowed here; use %s\"}}",
                     !strcmp(method, "GET") || !strcmp(method, "POST") || !strcmp(method, "PUT") ||
                             !strcmp(method, "DELETE") || !strcmp(method, "PATCH") ||
                             !strcmp(method, "HEAD") || !strcmp(method, "OPTIONS")
                         ? method
                         : "this method",
                     allow);
        kiln_http_respond(req, 405, "application/json", hdr, body, (size_t)n);
        return;
    }
    kiln_http_respond_error(req, 404, "not_found", "no such endpoint: %.200s", path);
}

/* The token is checked before the body is read (issue 16): a refused caller
 * costs the server a header, not up to max_body_bytes. Allowed requests are
 * checked (and audited) again with their body in kiln_api_on_request. */
static void precheck(struct kiln_server *srv, struct kiln_http_req *req)
{
    struct ctx c = {.srv = srv, .req = req};
    const char *method = kiln_http_req_method(req), *path = kiln_http_req_path(req);
    const char *m = !strcmp(method, "HEAD") ? "GET" : method;
    enum kiln_role need = KILN_ROLE_NONE;
    int found = 0, is_register = 0;
    for (size_t i = 0; !found && i < sizeof routes / sizeof routes[0]; i++) {
        struct ctx t = c;
        if (strcmp(routes[i].method, m) || !match(routes[i].pattern, path, &t)) continue;
        found = 1;
        need = routes[i].role;
        is_register = routes[i].fn == h_register;
    }
    for (int i = 0; !found && i < srv->nroutes; i++) {
        struct kiln_route *r = &srv->routes[i];
        size_t n = strlen(r->prefix);
        if (strncmp(path, r->prefix, n) || (path[n] && path[n] != '/') || strcmp(m, r->method))
            continue;
        found = 1;
        need = r->role;
    }
    struct kiln_error err = {0};
    if (!found || need == KILN_ROLE_NONE) return;
    int rc = check_caller(&c, need, is_register, &err);
    if (rc) refuse(&c, rc, &err);
}

int kiln_api_on_headers(struct kiln_http_req *req, void *server)
{
    struct kiln_server *srv = server;
    const char *path = kiln_http_req_path(req);
    const struct kiln_stream_route *sr = NULL;
    for (int i = 0; i < srv->nstreams && !sr; i++)
        if (!strncmp(path, srv->streams[i].prefix, strlen(srv->streams[i].prefix)))
            sr = &srv->streams[i];
    if (srv->stopping) return 0;
    if (!sr) {
        precheck(srv, req);
        return 0;
    }
    struct ctx c = {.srv = srv, .req = req};
    /* Everyone here needs at least reading; the feature checks writes. */
    if (!authorize(&c, KILN_ROLE_READ)) return 0;
    enum kiln_role role = c.who.token_id ? c.who.role : KILN_ROLE_READ;
    if (sr->fn(srv, req, role, sr->ctx) == 1) srv->m.http_requests++;
    return 0;
}
