/* forge_serve.c - the statuses feature: job changes -> per-forge queues ->
 * one POST at a time on the thread pool, retried with backoff. */
#include "forge/forge_serve.h"

#include "common/clock.h"
#include "common/httpc.h"
#include "forge/forge_status.h"
#include "state/jobs_commit.h"

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_QUEUED 100000 /* per forge: beyond this the oldest reports go */
#define MAX_REMEMBERED 50000
#define MAX_COMMITS 2000 /* commits whose tallies are kept (then rebuilt on demand) */

struct post {
    struct post *next;
    char sha[65];
    char context[200];
    char state[16];
    char description[141];
    char target_url[700];
};

struct forge_feature;

struct forge {
    struct forge_feature *ff;
    struct kiln_forge_target t;
    struct kiln_httpc http; /* used by one pool thread at a time */
    struct post *head, *tail;
    size_t queued;
    uint64_t sent, failures, dropped;
    int inflight, waiting; /* a request on the pool; the retry timer armed */
    uv_work_t work;
    uv_timer_t retry;
    unsigned attempt; /* consecutive failures of the head */
    double failing_since, next_retry_at;
    char last_error[KILN_ERR_MSG_MAX + 1];
    /* the request's result, written on the pool thread */
    int rc;
    long status;
    struct kiln_error err;
};

struct forge_feature {
    struct kiln_server *srv;
    char page_url[512];
    double base_s, max_s;
    int n;
    struct forge *forges;
    json_t *last; /* "forge-index sha context" -> the state last queued */
    /* "forge-index branch sha" -> {"jobs":{"id":forge state},"tally":[n,ok,failed,error]} */
    json_t *commits;
};

/* --- the queue --- */

static void kick(struct forge *f);

static void work_cb(uv_work_t *w)
{
    struct forge *f = w->data;
    struct post *p = f->head;
    char path[1024];
    json_t *body = NULL;
    f->status = 0;
    memset(&f->err, 0, sizeof f->err);
    f->rc = kiln_forge_status_request(&f->t, p->sha, p->state, p->context, p->description,
                                      p->target_url, path, sizeof path, &body, &f->err);
    if (!f->rc)
        f->rc = kiln_httpc_json(&f->http, "POST", path, body, 10000, &f->status, NULL, &f->err);
    json_decref(body);
}

static void pop(struct forge *f)
{
    struct post *p = f->head;
    f->head = p->next;
    if (!f->head) f->tail = NULL;
    f->queued--;
    free(p);
}

static void on_retry(uv_timer_t *t)
{
    struct forge *f = t->data;
    f->waiting = 0;
    kick(f);
}

static void after_cb(uv_work_t *w, int status)
{
    struct forge *f = w->data;
    struct kiln_server *srv = f->ff->srv;
    f->inflight = 0;
    int ok = status == 0 && f->rc == KILN_OK && f->status >= 200 && f->status < 300;
    int retry = status != 0 || (f->rc && f->rc != KILN_EINVAL) || f->status >= 500 ||
                f->status == 408 || f->status == 429;
    if (ok) {
        pop(f);
        f->sent++;
        f->attempt = 0;
        f->failing_since = 0;
        f->last_error[0] = 0;
    } else {
        if (f->rc)
            snprintf(f->last_error, sizeof f->last_error, "%s", f->err.msg);
        else
            snprintf(f->last_error, sizeof f->last_error, "HTTP %ld", f->status);
        f->failures++;
        if (!retry) {
            kiln_log(&srv->log, KILN_LOG_WARN, "forge %s: status %s of %.12s refused (%s); dropped",
                     f->t.repo, f->head->context, f->head->sha, f->last_error);
            pop(f);
            f->dropped++;
            f->attempt = 0;
        } else {
            double now = kiln_clock_wall();
            if (!f->failing_since) f->failing_since = now;
            double d = f->ff->base_s * pow(2, f->attempt < 30 ? f->attempt : 30);
            if (d > f->ff->max_s) d = f->ff->max_s;
            f->attempt++;
            f->next_retry_at = now + d;
            kiln_log(&srv->log, KILN_LOG_WARN, "forge %s: %s; retry %u in %.1f s", f->t.repo,
                     f->last_error, f->attempt, d);
            if (!srv->stopping && f->retry.data) {
                f->waiting = 1;
                uv_timer_start(&f->retry, on_retry, (uint64_t)(d * 1000), 0);
            }
            return;
        }
    }
    kick(f);
}

static void kick(struct forge *f)
{
    if (f->inflight || f->waiting || !f->head || f->ff->srv->stopping) return;
    f->work.data = f;
    if (uv_queue_work(f->ff->srv->loop, &f->work, work_cb, after_cb) == 0) f->inflight = 1;
}

/* Queue a status unless the forge already has (or will have) this state. */
static void report(struct forge *f, const char *sha, const char *context, const char *state,
                   const char *description, const char *target_url)
{
    json_t *last = f->ff->last;
    char key[1500];
    snprintf(key, sizeof key, "%d %s %s", (int)(f - f->ff->forges), sha, context);
    const char *was = json_string_value(json_object_get(last, key));
    if (was && !strcmp(was, state)) return;
    if (json_object_size(last) > MAX_REMEMBERED) json_object_clear(last);
    json_object_set_new(last, key, json_string(state));
    struct post *p = calloc(1, sizeof *p);
    if (!p) return;
    snprintf(p->sha, sizeof p->sha, "%s", sha);
    snprintf(p->context, sizeof p->context, "%s", context);
    snprintf(p->state, sizeof p->state, "%s", state);
    snprintf(p->description, 141, "%s", description); /* GitHub's limit */
    snprintf(p->target_url, sizeof p->target_url, "%s", target_url);
    if (f->tail)
        f->tail->next = p;
    else
        f->head = p;
    f->tail = p;
    if (++f->queued > MAX_QUEUED && !f->inflight) {
        pop(f);
        f->dropped++;
    }
    kick(f);
}

/* --- job changes --- */

static void describe_job(json_t *job, const char *state, char *out, size_t n)
{
    const char *st = json_string_value(json_object_get(job, "state"));
    const char *reason = json_string_value(json_object_get(job, "reason"));
    const char *stage = json_string_value(json_object_get(job, "failed_stage"));
    if (!strcmp(state, "success"))
        snprintf(out, n, "kiln: %s", "built, tested and published");
    else if (reason && *reason)
        snprintf(out, n, "kiln: %s%s%s: %.100s", st ? st : "?", stage ? " at " : "",
                 stage ? stage : "", reason);
    else
        snprintf(out, n, "kiln: %s", st ? st : "?");
}

/* The commit's tally for this forge, built from the store the first time
 * the commit is seen (and after the map was cleared): one read of the
 * commit's jobs per commit, not per change. NULL when that read fails. */
static json_t *commit_tally(struct forge *f, const char *branch, const char *sha)
{
    struct forge_feature *ff = f->ff;
    char key[600];
    snprintf(key, sizeof key, "%d %s %s", (int)(f - ff->forges), branch ? branch : "", sha);
    json_t *c = json_object_get(ff->commits, key);
    if (c) return c;
    json_t *all = NULL;
    struct kiln_error err = {0};
    if (kiln_jobs_of_commit(&ff->srv->jobs, branch, sha, &all, &err)) {
        kiln_log(&ff->srv->log, KILN_LOG_WARN, "forge summary of %.12s: %s", sha, err.msg);
        return NULL;
    }
    struct kiln_forge_tally t = {0};
    json_t *jobs = json_object();
    size_t i;
    json_t *j;
    json_array_foreach(all, i, j)
    {
        const char *u =
            json_string_value(json_object_get(json_object_get(j, "attrs"), "source_url"));
        if (!u || strcmp(u, f->t.url) || !jobs) continue;
        const char *st = kiln_forge_job_state(json_string_value(json_object_get(j, "state")));
        char id[24];
        snprintf(id, sizeof id, "%lld", (long long)json_integer_value(json_object_get(j, "id")));
        kiln_forge_tally_move(&t, NULL, st);
        json_object_set_new(jobs, id, json_string(st));
    }
    json_decref(all);
    c = jobs ? json_pack("{s:o,s:[I,I,I,I]}", "jobs", jobs, "tally", (json_int_t)t.n,
                         (json_int_t)t.ok, (json_int_t)t.failed, (json_int_t)t.error)
             : NULL;
    if (!c) return NULL;
    if (json_object_size(ff->commits) >= MAX_COMMITS) json_object_clear(ff->commits);
    if (json_object_set_new(ff->commits, key, c)) return NULL;
    return c;
}

static void summary(struct forge *f, json_t *job, const char *sha)
{
    const char *branch = json_string_value(json_object_get(job, "branch"));
    json_t *c = commit_tally(f, branch, sha);
    if (!c) return;
    json_t *jobs = json_object_get(c, "jobs"), *arr = json_object_get(c, "tally");
    struct kiln_forge_tally t = {
        (size_t)json_integer_value(json_array_get(arr, 0)),
        (size_t)json_integer_value(json_array_get(arr, 1)),
        (size_t)json_integer_value(json_array_get(arr, 2)),
        (size_t)json_integer_value(json_array_get(arr, 3)),
    };
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)json_integer_value(json_object_get(job, "id")));
    const char *now = kiln_forge_job_state(json_string_value(json_object_get(job, "state")));
    kiln_forge_tally_move(&t, json_string_value(json_object_get(jobs, id)), now);
    json_object_set_new(jobs, id, json_string(now));
    json_integer_set(json_array_get(arr, 0), (json_int_t)t.n);
    json_integer_set(json_array_get(arr, 1), (json_int_t)t.ok);
    json_integer_set(json_array_get(arr, 2), (json_int_t)t.failed);
    json_integer_set(json_array_get(arr, 3), (json_int_t)t.error);
    char desc[160], url[700];
    const char *state = kiln_forge_tally_summary(&t, desc, sizeof desc);
    char *esc = branch ? curl_easy_escape(NULL, branch, 0) : NULL;
    snprintf(url, sizeof url, "%s/#/queue%s%s", f->ff->page_url, esc ? "?branch=" : "",
             esc ? esc : "");
    curl_free(esc);
    report(f, sha, "kiln", state, desc, url);
}

static void on_job_change(struct kiln_server *srv, json_t *job, void *ctx)
{
    struct forge_feature *ff = ctx;
    (void)srv;
    const char *sha = json_string_value(json_object_get(job, "commit"));
    const char *url =
        json_string_value(json_object_get(json_object_get(job, "attrs"), "source_url"));
    const char *name = json_string_value(json_object_get(job, "name"));
    if (!sha || !url || !name) return;
    for (int i = 0; i < ff->n; i++) {
        struct forge *f = &ff->forges[i];
        if (strcmp(f->t.url, url)) continue;
        const char *state = kiln_forge_job_state(json_string_value(json_object_get(job, "state")));
        char context[200], desc[160], link[700];
        snprintf(context, sizeof context, "kiln/%s", name);
        describe_job(job, state, desc, sizeof desc);
        snprintf(link, sizeof link, "%s/#/build/%lld", ff->page_url,
                 (long long)json_integer_value(json_object_get(job, "id")));
        report(f, sha, context, state, desc, link);
        summary(f, job, sha);
    }
}

/* --- GET /api/v1/statuses --- */

static void h_statuses(struct kiln_server *srv, struct kiln_http_req *req, void *ctx)
{
    struct forge_feature *ff = ctx;
    (void)srv;
    static const char *kinds[] = {"github", "gitea", "gitlab"};
    json_t *arr = json_array();
    for (int i = 0; i < ff->n; i++) {
        struct forge *f = &ff->forges[i];
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:b,s:o,s:o,s:s?}", "url", f->t.url,
                           "forge", kinds[f->t.kind], "api", f->t.api, "repo", f->t.repo, "queued",
                           (json_int_t)f->queued, "sent", (json_int_t)f->sent, "failures",
                           (json_int_t)f->failures, "dropped", (json_int_t)f->dropped, "late",
                           f->failing_since > 0 && f->queued > 0, "failing_since",
                           f->failing_since > 0 ? json_real(f->failing_since) : json_null(),
                           "next_retry_at", f->waiting ? json_real(f->next_retry_at) : json_null(),
                           "last_error", f->last_error[0] ? f->last_error : NULL));
    }
    kiln_http_respond_json(req, 200, json_pack("{s:o}", "forges", arr));
}

/* --- lifetime --- */

static int feature_init(struct kiln_server *srv, json_t *config, void **state,
                        struct kiln_error *err)
{
    json_t *c = json_object_get(config, "statuses");
    *state = NULL;
    if (!c || json_is_null(c)) return KILN_OK; /* not configured: nothing to report */
    json_t *repos = json_object_get(c, "repos");
    if (!json_is_object(c) || (repos && !json_is_array(repos)))
        return kiln_fail(err, KILN_EINVAL, "statuses: must be a mapping with a 'repos' list");
    struct forge_feature *ff = calloc(1, sizeof *ff);
    size_t n = json_array_size(repos);
    if (!ff || !(ff->forges = calloc(n ? n : 1, sizeof *ff->forges)) ||
        !(ff->last = json_object()) || !(ff->commits = json_object())) {
        if (ff) json_decref(ff->last);
        if (ff) free(ff->forges);
        free(ff);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    *state = ff;
    ff->srv = srv;
    const char *page = json_string_value(json_object_get(c, "page_url"));
    if (page)
        snprintf(ff->page_url, sizeof ff->page_url, "%s", page);
    else
        snprintf(ff->page_url, sizeof ff->page_url, "%s://%s",
                 srv->cfg.tls_cert[0] ? "https" : "http", srv->cfg.listen);
    size_t pl = strlen(ff->page_url);
    while (pl && ff->page_url[pl - 1] == '/')
        ff->page_url[--pl] = 0;
    json_t *b = json_object_get(c, "retry_base_s"), *m = json_object_get(c, "retry_max_s");
    ff->base_s = json_is_number(b) ? json_number_value(b) : 2;
    ff->max_s = json_is_number(m) ? json_number_value(m) : 300;
    if (ff->base_s <= 0 || ff->max_s < ff->base_s)
        return kiln_fail(err, KILN_EINVAL, "statuses: need 0 < retry_base_s <= retry_max_s");
    for (size_t i = 0; i < n; i++) { /* all checked before any handle exists */
        struct forge *f = &ff->forges[i];
        int rc = kiln_forge_target_parse(json_array_get(repos, i), &f->t, NULL, err);
        if (!rc && kiln_httpc_init(&f->http, f->t.api, f->t.token))
            rc = kiln_fail(err, KILN_ENOMEM, "statuses: cannot set up an HTTP client");
        if (rc) return rc;
        f->ff = ff;
        f->http.timeout_ms = 10000;
        ff->n++;
    }
    for (int i = 0; i < ff->n; i++) {
        struct forge *f = &ff->forges[i];
        if (uv_timer_init(srv->loop, &f->retry))
            return kiln_fail(err, KILN_EIO, "statuses: cannot create a timer");
        f->retry.data = f;
    }
    int rc = kiln_serve_on_job_change(srv, on_job_change, ff);
    if (!rc)
        rc = kiln_serve_add_route(srv, "GET", "/api/v1/statuses", KILN_ROLE_READ, h_statuses, ff);
    if (rc) return kiln_fail(err, rc, "statuses: cannot register the hook or the route");
    kiln_log(&srv->log, KILN_LOG_INFO, "commit statuses: %d forge(s), links to %s", ff->n,
             ff->page_url);
    return KILN_OK;
}

static void feature_stop(struct kiln_server *srv, void *state)
{
    struct forge_feature *ff = state;
    (void)srv;
    if (!ff) return;
    for (int i = 0; i < ff->n; i++) {
        struct forge *f = &ff->forges[i];
        if (!f->retry.data) continue;
        uv_timer_stop(&f->retry);
        uv_close((uv_handle_t *)&f->retry, NULL);
    }
}

/* After the loop ended: every request on the pool has reported. */
static void feature_cleanup(void *state)
{
    struct forge_feature *ff = state;
    if (!ff) return;
    for (int i = 0; i < ff->n; i++) {
        struct forge *f = &ff->forges[i];
        while (f->head)
            pop(f);
        kiln_httpc_cleanup(&f->http);
    }
    json_decref(ff->last);
    json_decref(ff->commits);
    free(ff->forges);
    free(ff);
}

static const char *const sections[] = {"statuses", NULL};

const struct kiln_serve_feature kiln_forge_feature = {
    .name = "forge",
    .config_sections = sections,
    .init = feature_init,
    .stop = feature_stop,
    .cleanup = feature_cleanup,
};
