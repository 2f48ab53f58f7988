/* release_serve.c - releases driven by job changes (see release_serve.h). */
#include "catalog/release_serve.h"

#include "catalog/release.h"
#include "common/clock.h"
#include "state/jobs_commit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct targets_run; /* the publish targets of one completed release */

struct kiln_release_serve {
    struct kiln_server *srv;
    struct kiln_catalog *cat;
    struct kiln_publisher *pub;
    struct targets_run *runs;
};

struct targets_run {
    struct kiln_release_serve *rs; /* NULL once the feature stopped */
    struct targets_run *next;
    int64_t release;
    int pending;
    json_t *results;
};

int kiln_release_job_wants(json_t *job)
{
    json_t *spec = json_object_get(job, "publish_spec");
    if (!spec) spec = json_object_get(job, "publish");
    const char *commit = json_string_value(json_object_get(job, "commit"));
    return json_is_true(json_object_get(spec, "release")) && commit && *commit;
}

static const char *job_branch(json_t *job)
{
    const char *b = json_string_value(json_object_get(job, "branch"));
    return b ? b : "";
}

int kiln_release_serve_for_job(struct kiln_release_serve *rs, json_t *job, int64_t *release_id,
                               struct kiln_error *err)
{
    *release_id = 0;
    if (!rs || !kiln_release_job_wants(job)) return KILN_OK;
    return kiln_release_open(rs->cat, job_branch(job),
                             json_string_value(json_object_get(job, "commit")), kiln_clock_wall(),
                             release_id, NULL, err);
}

static int job_final(const char *state)
{
    static const char *final[] = {"succeeded", "failed", "cancelled", "superseded", NULL};
    for (int i = 0; state && final[i]; i++)
        if (!strcmp(state, final[i])) return 1;
    return 0;
}

/* The release's jobs (those of its commit that want a release). */
static int release_jobs(struct kiln_release_serve *rs, json_t *rel, json_t **out,
                        struct kiln_error *err)
{
    json_t *all = NULL;
    int rc = kiln_jobs_of_commit(&rs->srv->jobs, json_string_value(json_object_get(rel, "branch")),
                                 json_string_value(json_object_get(rel, "commit")), &all, err);
    if (rc) return rc;
    json_t *mine = json_array();
    size_t i;
    json_t *j;
    json_array_foreach(all, i, j) if (kiln_release_job_wants(j)) json_array_append(mine, j);
    json_decref(all);
    *out = mine;
    return mine ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
}

/* --- publish targets after completion --- */

static void run_free(struct targets_run *r)
{
    json_decref(r->results);
    free(r);
}

static void unlink_run(struct kiln_release_serve *rs, struct targets_run *r)
{
    for (struct targets_run **pp = &rs->runs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            return;
        }
}

static void run_finish_if_done(struct targets_run *r)
{
    if (r->pending > 0) return;
    struct kiln_release_serve *rs = r->rs;
    if (rs) {
        struct kiln_error err = {0};
        if (kiln_release_set_targets(rs->cat, r->release, r->results, &err))
            kiln_log(&rs->srv->log, KILN_LOG_WARN, "release %lld: %s", (long long)r->release,
                     err.msg);
        unlink_run(rs, r);
    }
    run_free(r);
}

static void target_done(void *arg, int rc, json_t *results)
{
    struct targets_run *r = arg;
    json_array_append_new(r->results, json_pack("{s:b,s:O}", "ok", rc == KILN_OK, "targets",
                                                results ? results : json_null()));
    if (rc != KILN_OK && r->rs)
        kiln_log(&r->rs->srv->log, KILN_LOG_WARN, "release %lld: a publish target failed",
                 (long long)r->release);
    r->pending--;
    run_finish_if_done(r);
}

/* Every entry of a completed release goes to the publish targets. */
static void run_targets(struct kiln_release_serve *rs, int64_t id)
{
    json_t *rel = NULL;
    struct kiln_error err = {0};
    struct targets_run *r = calloc(1, sizeof *r);
    if (!r || !(r->results = json_array()) || kiln_release_get(rs->cat, id, &rel, &err)) {
        kiln_log(&rs->srv->log, KILN_LOG_ERROR, "release %lld: cannot start its targets: %s",
                 (long long)id, err.msg[0] ? err.msg : "out of memory");
        if (r) run_free(r);
        return;
    }
    r->rs = rs;
    r->release = id;
    r->pending = 1; /* held until every entry started */
    r->next = rs->runs;
    rs->runs = r;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(rel, "entries"), i, e)
    {
        r->pending++;
        struct kiln_error e2 = {0};
        if (kiln_publisher_run(rs->pub, json_integer_value(json_object_get(e, "id")), target_done,
                               r, &e2)) {
            json_array_append_new(r->results, json_pack("{s:b,s:s}", "ok", 0, "message", e2.msg));
            r->pending--;
        }
    }
    json_decref(rel);
    r->pending--;
    run_finish_if_done(r);
}

/* --- deciding --- */

/* Complete release id when every one of its jobs succeeded. */
static void evaluate(struct kiln_release_serve *rs, int64_t id)
{
    json_t *rel = NULL, *jobs = NULL;
    struct kiln_error err = {0};
    if (kiln_release_get(rs->cat, id, &rel, &err) || release_jobs(rs, rel, &jobs, &err)) {
        kiln_log(&rs->srv->log, KILN_LOG_WARN, "release %lld: %s", (long long)id, err.msg);
        json_decref(rel);
        return;
    }
    int all = json_array_size(jobs) > 0;
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j)
    {
        const char *st = json_string_value(json_object_get(j, "state"));
        if (!st || strcmp(st, "succeeded")) all = 0;
    }
    int done = 0;
    if (all && !strcmp(json_string_value(json_object_get(rel, "state")), "open")) {
        if (kiln_release_complete(rs->cat, id, kiln_clock_wall(), &done, &err))
            kiln_log(&rs->srv->log, KILN_LOG_ERROR, "release %lld: cannot complete: %s",
                     (long long)id, err.msg);
    }
    if (done) {
        kiln_log(&rs->srv->log, KILN_LOG_INFO,
                 "release %lld (%s@%.12s): all %zu variants passed; "
                 "published",
                 (long long)id, json_string_value(json_object_get(rel, "branch")),
                 json_string_value(json_object_get(rel, "commit")), json_array_size(jobs));
        kiln_events_notify(rs->srv->events);
        run_targets(rs, id);
    }
    json_decref(rel);
    json_decref(jobs);
}

static void on_job_change(struct kiln_server *srv, json_t *job, void *ctx)
{
    struct kiln_release_serve *rs = ctx;
    if (!kiln_release_job_wants(job)) return;
    int64_t id = 0;
    int created = 0;
    struct kiln_error err = {0};
    const char *commit = json_string_value(json_object_get(job, "commit"));
    if (kiln_release_open(rs->cat, job_branch(job), commit, kiln_clock_wall(), &id, &created, &err)) {
        kiln_log(&srv->log, KILN_LOG_WARN, "release of %s@%.12s: %s", job_branch(job), commit,
                 err.msg);
        return;
    }
    if (created)
        kiln_log(&srv->log, KILN_LOG_INFO,
                 "release %lld opened for %s@%.12s (older open releases of the branch are "
                 "superseded)",
                 (long long)id, job_branch(job), commit);
    if (job_final(json_string_value(json_object_get(job, "state")))) evaluate(rs, id);
}

/* --- what holds a release: the summary of GET /api/v1/releases --- */

static json_t *variant_of(json_t *j)
{
    return json_pack("{s:O,s:O,s:O,s:O?,s:O?,s:O?}", "job", json_object_get(j, "id"), "name",
                     json_object_get(j, "name"), "state", json_object_get(j, "state"),
                     "failed_stage", json_object_get(j, "failed_stage"), "reason",
                     json_object_get(j, "reason"), "recipe", json_object_get(j, "recipe"));
}

/* rel gets status, variants counts, held_by (and the variants with detail). */
static int describe(struct kiln_release_serve *rs, json_t *rel, int detail, struct kiln_error *err)
{
    json_t *jobs = NULL;
    int rc = release_jobs(rs, rel, &jobs, err);
    if (rc) return rc;
    json_t *held = json_array(), *variants = json_array();
    size_t passed = 0, i;
    json_t *j;
    json_array_foreach(jobs, i, j)
    {
        const char *st = json_string_value(json_object_get(j, "state"));
        if (st && !strcmp(st, "succeeded")) passed++;
        json_t *v = variant_of(j);
        if (st && job_final(st) && strcmp(st, "succeeded")) json_array_append(held, v);
        json_array_append_new(variants, v);
    }
    const char *state = json_string_value(json_object_get(rel, "state"));
    const char *status = state;
    if (state && !strcmp(state, "open")) status = json_array_size(held) ? "held" : "pending";
    json_object_set_new(rel, "status", json_string(status ? status : "?"));
    json_object_set_new(rel, "variants_total", json_integer((json_int_t)json_array_size(jobs)));
    json_object_set_new(rel, "variants_passed", json_integer((json_int_t)passed));
    json_object_set_new(rel, "held_by", held);
    if (detail)
        json_object_set_new(rel, "variants", variants);
    else
        json_decref(variants);
    if (!detail) json_object_del(rel, "entries");
    json_decref(jobs);
    return KILN_OK;
}

static void respond_err(struct kiln_http_req *req, int rc, const struct kiln_error *e)
{
    kiln_http_respond_error(req, kiln_err_http_status(rc), kiln_code_name(rc), "%s",
                            e->msg[0] ? e->msg : kiln_strerror(rc));
}

static void h_releases(struct kiln_server *srv, struct kiln_http_req *req, void *ctx)
{
    (void)srv;
    struct kiln_release_serve *rs = ctx;
    const char *path = kiln_http_req_path(req);
    const char *rest = path + strlen("/api/v1/releases");
    struct kiln_error err = {0};
    int rc;
    if (*rest == '/' && rest[1]) {
        char *end = NULL;
        long long id = strtoll(rest + 1, &end, 10);
        if (!end || *end || id <= 0) {
            kiln_http_respond_error(req, 404, "not_found", "no such resource %s", path);
            return;
        }
        json_t *rel = NULL;
        if ((rc = kiln_release_get(rs->cat, id, &rel, &err)) || (rc = describe(rs, rel, 1, &err))) {
            json_decref(rel);
            respond_err(req, rc, &err);
            return;
        }
        kiln_http_respond_json(req, 200, rel);
        return;
    }
    if (*rest && strcmp(rest, "/")) {
        kiln_http_respond_error(req, 404, "not_found", "no such resource %s", path);
        return;
    }
    char branch[256] = "", state[32] = "", commit[64] = "", limit_s[16] = "";
    if (kiln_http_req_param(req, "branch", branch, sizeof branch) < 0 ||
        kiln_http_req_param(req, "state", state, sizeof state) < 0 ||
        kiln_http_req_param(req, "commit", commit, sizeof commit) < 0 ||
        kiln_http_req_param(req, "limit", limit_s, sizeof limit_s) < 0) {
        kiln_http_respond_error(req, 400, "invalid", "a query parameter is too long");
        return;
    }
    /* held and pending are open releases told apart by their jobs. */
    int derived = !strcmp(state, "held") || !strcmp(state, "pending");
    json_t *f = json_pack("{s:s,s:s,s:s,s:I}", "branch", branch, "state", derived ? "open" : state,
                          "commit", commit, "limit", (json_int_t)atoll(limit_s));
    json_t *arr = NULL, *out = json_array();
    rc = kiln_release_list(rs->cat, f, &arr, &err);
    json_decref(f);
    size_t i;
    json_t *rel;
    json_array_foreach(arr, i, rel)
    {
        if (rc || (rc = describe(rs, rel, 0, &err))) break;
        if (derived && strcmp(json_string_value(json_object_get(rel, "status")), state)) continue;
        json_array_append(out, rel);
    }
    json_decref(arr);
    if (rc) {
        json_decref(out);
        respond_err(req, rc, &err);
        return;
    }
    kiln_http_respond_json(req, 200, json_pack("{s:o}", "releases", out));
}

/* --- lifetime --- */

static void recover(struct kiln_release_serve *rs)
{
    json_t *f = json_pack("{s:I}", "limit", (json_int_t)1000), *arr = NULL;
    struct kiln_error err = {0};
    if (kiln_release_list(rs->cat, f, &arr, &err))
        kiln_log(&rs->srv->log, KILN_LOG_WARN, "releases: %s", err.msg);
    json_decref(f);
    size_t i;
    json_t *rel;
    json_array_foreach(arr, i, rel)
    {
        const char *st = json_string_value(json_object_get(rel, "state"));
        int64_t id = json_integer_value(json_object_get(rel, "id"));
        if (!strcmp(st, "open"))
            evaluate(rs, id); /* its last job finished while nobody watched */
        else if (!strcmp(st, "complete") && json_is_null(json_object_get(rel, "targets")))
            run_targets(rs, id); /* stopped before its targets reported */
    }
    json_decref(arr);
}

int kiln_release_serve_new(struct kiln_server *srv, struct kiln_catalog *cat,
                           struct kiln_publisher *pub, struct kiln_release_serve **out,
                           struct kiln_error *err)
{
    *out = NULL;
    struct kiln_release_serve *rs = calloc(1, sizeof *rs);
    if (!rs) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    rs->srv = srv;
    rs->cat = cat;
    rs->pub = pub;
    if (kiln_serve_add_route(srv, "GET", "/api/v1/releases", KILN_ROLE_READ, h_releases, rs) ||
        kiln_serve_on_job_change(srv, on_job_change, rs)) {
        free(rs);
        return kiln_fail(err, KILN_ELIMIT, "releases: cannot register the route or the hook");
    }
    recover(rs);
    *out = rs;
    return KILN_OK;
}

void kiln_release_serve_free(struct kiln_release_serve *rs)
{
    if (!rs) return;
    /* Runs still in the publisher finish later and free themselves. */
    for (struct targets_run *r = rs->runs; r; r = r->next)
        r->rs = NULL;
    free(rs);
}
