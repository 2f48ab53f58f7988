/* staging_http.c - the staging area's endpoints (docs/API.md, "Staging"):
 *
 *   POST /api/v1/staging/{job}/plan?attempt=N       worker: whole closure, one call
 *   PUT  /api/v1/staging/{job}/nar/{hashpart}?attempt=N&offset=K   worker: NAR bytes from K
 *   GET  /api/v1/staging                            read: what is staged
 *
 * Only the attempt of a job that is building may claim or upload, so a
 * staged path always comes from the worker that ran that build (the one the
 * lease went to; tokens are per role, so the attempt is what ties the bytes
 * to the lease). One upload per path at a time: a new one (a worker
 * resuming after a cut link) detaches the old connection, whose late bytes
 * are then dropped. */
#include "catalog/staging_http.h"

#include "catalog/staging.h"
#include "common/clock.h"
#include "http/http.h"
#include "nix/nixcache.h"
#include "server/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API "/api/v1/staging"
#define PLAN_MAX (32u << 20)

struct sup;

#define KEPT_HASHES 16

struct kiln_staging_http {
    struct kiln_server *srv;
    struct kiln_catalog *cat;
    struct sup *active; /* uploads in progress */
    /* Running hashes of uploads cut short, for their resume (oldest go
     * first: a resume without one reads the file back, slower but right). */
    struct kiln_staging_hash *kept[KEPT_HASHES];
};

static void keep_hash(struct kiln_staging_http *h, struct kiln_staging_upload *u)
{
    struct kiln_staging_hash *k = kiln_staging_upload_keep_hash(u);
    if (!k) return;
    kiln_staging_hash_free(h->kept[KEPT_HASHES - 1]);
    memmove(h->kept + 1, h->kept, (KEPT_HASHES - 1) * sizeof h->kept[0]);
    h->kept[0] = k;
}

static void resume_hash(struct kiln_staging_http *h, struct kiln_staging_upload *u)
{
    const char *part = kiln_staging_upload_part(u);
    for (int i = 0; i < KEPT_HASHES; i++)
        if (h->kept[i] && !strcmp(kiln_staging_hash_part(h->kept[i]), part)) {
            struct kiln_staging_hash *k = h->kept[i];
            memmove(h->kept + i, h->kept + i + 1, (KEPT_HASHES - 1 - i) * sizeof h->kept[0]);
            h->kept[KEPT_HASHES - 1] = NULL;
            kiln_staging_upload_resume_hash(u, k);
            return;
        }
}

struct sup {
    struct kiln_staging_http *h;
    struct sup *next;
    struct kiln_http_req *req;
    struct kiln_staging_upload *u;
    char hashpart[KILN_NIX_HASHPART_LEN + 1];
    int64_t job, attempt;
    int plan, detached, working, gone, rc;
    struct kiln_buf body; /* plan JSON */
    uv_work_t work;
    struct kiln_error e;
};

int kiln_staging_http_new(struct kiln_server *srv, struct kiln_catalog *cat,
                          struct kiln_staging_http **out, struct kiln_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    (*out)->srv = srv;
    (*out)->cat = cat;
    return KILN_OK;
}

void kiln_staging_http_free(struct kiln_staging_http *h)
{
    for (int i = 0; h && i < KEPT_HASHES; i++)
        kiln_staging_hash_free(h->kept[i]);
    /* Requests still open hold their sup; the HTTP server closes them first
     * (their on_close unlinks them), so only the shell is left here. */
    free(h);
}

static void respond_err(struct kiln_http_req *req, const struct kiln_error *e)
{
    int code = e->code ? e->code : KILN_EIO;
    if (code == KILN_ESTATE) { /* the worker asks again and resumes */
        kiln_http_respond_error(req, 409, "busy", "%s", e->msg);
        return;
    }
    kiln_http_respond_error(req, kiln_err_http_status(code), kiln_code_name(code), "%s",
                            e->msg[0] ? e->msg : kiln_strerror(code));
}

static void unlink_sup(struct sup *x)
{
    for (struct sup **pp = &x->h->active; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
}

static void sup_free(struct sup *x)
{
    unlink_sup(x);
    kiln_staging_upload_close(x->u);
    kiln_buf_free(&x->body);
    free(x);
}

/* The caller must be the worker holding the job's current attempt (its own
 * credential, issued at registration: server/auth.h). */
static int caller_check(struct kiln_server *srv, struct kiln_http_req *req, int64_t job,
                        struct kiln_error *err)
{
    struct kiln_principal p;
    int rc = kiln_auth_identify(srv->st, kiln_http_req_header(req, "Authorization"), &p, err);
    return rc ? rc : kiln_auth_job_worker(srv->st, &p, job, err);
}

/* The attempt must be the current one of a job that is building. */
static int job_check(struct kiln_server *srv, int64_t job, int64_t attempt, struct kiln_error *err)
{
    json_t *j = NULL;
    int rc = kiln_jobs_get(&srv->jobs, job, &j, err);
    /* 404 on these routes means "no staging here" to a worker: a job that
     * is gone is a conflict instead. */
    if (rc == KILN_ENOTFOUND)
        return kiln_fail(err, KILN_ECONFLICT, "job %lld is gone", (long long)job);
    if (rc != KILN_OK) return rc;
    const char *state = json_string_value(json_object_get(j, "state"));
    int64_t cur = json_integer_value(json_object_get(j, "attempt"));
    if (!state || strcmp(state, "building"))
        rc = kiln_fail(err, KILN_ECONFLICT,
                       "job %lld is %s: only a build in progress may stage its outputs",
                       (long long)job, state ? state : "unknown");
    else if (cur != attempt)
        rc =
            kiln_fail(err, KILN_ECONFLICT, "attempt %lld of job %lld is not the current one (%lld)",
                      (long long)attempt, (long long)job, (long long)cur);
    json_decref(j);
    return rc;
}

/* ---------- plan ---------- */

static void do_plan(struct kiln_staging_http *h, struct kiln_http_req *req, int64_t job,
                    int64_t attempt, const char *body, size_t len)
{
    struct kiln_error e = {0};
    json_error_t je;
    json_t *in = json_loadb(body ? body : "", len, 0, &je);
    json_t *missing = NULL;
    int have = 0;
    if (!json_is_object(in))
        kiln_fail(&e, KILN_EINVAL, "plan body must be {\"paths\":[...]}: %s", je.text);
    else if (job_check(h->srv, job, attempt, &e) == KILN_OK)
        kiln_staging_plan(h->cat, job, attempt, json_object_get(in, "paths"), kiln_clock_wall(),
                          &missing, &have, &e);
    json_decref(in);
    if (!missing) {
        respond_err(req, &e);
        return;
    }
    kiln_http_respond_json(req, 200, json_pack("{s:o,s:i}", "missing", missing, "have", have));
}

/* ---------- uploads ---------- */

static void fin_work(uv_work_t *w)
{
    struct sup *x = w->data;
    x->rc = kiln_staging_upload_finish(x->u, &x->e);
}

static void fin_done(uv_work_t *w, int status)
{
    struct sup *x = w->data;
    (void)status;
    x->working = 0;
    struct kiln_error ce = {0};
    struct kiln_staging_upload *u = x->u;
    x->u = NULL;
    int crc = kiln_staging_commit(u, x->rc == KILN_OK, kiln_clock_wall(), &ce);
    if (x->rc == KILN_OK && crc != KILN_OK) x->e = ce;
    int ok = x->rc == KILN_OK && crc == KILN_OK;
    kiln_log(&x->h->srv->log, ok ? KILN_LOG_INFO : KILN_LOG_WARN, "staging %s (job %lld): %s",
             x->hashpart, (long long)x->job, ok ? "staged and signed" : x->e.msg);
    if (!x->gone) {
        kiln_http_req_on_close(x->req, NULL, NULL);
        if (ok)
            kiln_http_respond_json(x->req, 201,
                                   json_pack("{s:s,s:b}", "hashpart", x->hashpart, "staged", 1));
        else if (x->rc == KILN_EINVAL)
            kiln_http_respond_error(x->req, 422, "hash_mismatch", "%s", x->e.msg);
        else
            respond_err(x->req, &x->e);
    }
    sup_free(x);
}

static void up_on_close(struct kiln_http_req *req, void *arg)
{
    (void)req;
    struct sup *x = arg;
    if (x->working) {
        x->gone = 1; /* fin_done frees */
        return;
    }
    keep_hash(x->h, x->u); /* a cut link: the part file stays for the resume */
    sup_free(x);
}

static int up_on_data(struct kiln_http_req *req, const char *p, size_t n, void *arg)
{
    struct sup *x = arg;
    struct kiln_error e = {0};
    int rc;
    if (x->plan)
        rc = kiln_buf_append(&x->body, p, n) == KILN_OK
                 ? KILN_OK
                 : kiln_fail(&e, KILN_ELIMIT, "plan body is larger than 32 MiB");
    else if (x->detached)
        rc = kiln_fail(&e, KILN_ESTATE, "a newer upload of %s took over", x->hashpart);
    else
        rc = kiln_staging_upload_write(x->u, p, n, &e);
    if (rc == KILN_OK) return 0;
    kiln_http_req_on_close(req, NULL, NULL);
    respond_err(req, &e);
    sup_free(x);
    return 1;
}

static void up_on_end(struct kiln_http_req *req, void *arg)
{
    struct sup *x = arg;
    if (x->plan) {
        kiln_http_req_on_close(req, NULL, NULL);
        do_plan(x->h, req, x->job, x->attempt, x->body.data, x->body.len);
        sup_free(x);
        return;
    }
    if (x->detached) {
        kiln_http_req_on_close(req, NULL, NULL);
        kiln_http_respond_error(req, 409, "busy", "a newer upload of %s took over", x->hashpart);
        sup_free(x);
        return;
    }
    uint64_t held = kiln_staging_upload_held(x->u);
    struct kiln_error e = {0};
    /* Still the current attempt? A job cancelled mid-upload stages nothing. */
    if (job_check(x->h->srv, x->job, x->attempt, &e) != KILN_OK) {
        kiln_http_req_on_close(req, NULL, NULL);
        respond_err(req, &e);
        sup_free(x);
        return;
    }
    if (held < kiln_staging_upload_size(x->u)) {
        /* A short body (the worker sends what it has): resume later. */
        kiln_http_req_on_close(req, NULL, NULL);
        kiln_http_respond_json(
            req, 202, json_pack("{s:s,s:I}", "hashpart", x->hashpart, "offset", (json_int_t)held));
        sup_free(x);
        return;
    }
    /* Re-hashing a multi-GiB NAR takes seconds: on the thread pool. */
    x->working = 1; /* a new upload of this path waits for the verdict */
    x->work.data = x;
    if (uv_queue_work(x->h->srv->loop, &x->work, fin_work, fin_done) != 0) {
        fin_work(&x->work);
        fin_done(&x->work, 0);
    }
}

static int parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0) return 0;
    *out = v;
    return 1;
}

static int param_i64(struct kiln_http_req *req, const char *name, int64_t *out)
{
    char v[32];
    return kiln_http_req_param(req, name, v, sizeof v) == 1 && parse_i64(v, out);
}

static void upload_put(struct kiln_staging_http *h, struct kiln_http_req *req, int64_t job,
                       const char *hashpart)
{
    int64_t attempt = 0, offset = 0, clen = -1;
    struct kiln_error e = {0};
    if (strlen(hashpart) != KILN_NIX_HASHPART_LEN) {
        kiln_http_respond_error(req, 400, "invalid",
                                "the NAR is named by its store path's hash part");
        return;
    }
    if (!param_i64(req, "attempt", &attempt) || !param_i64(req, "offset", &offset)) {
        kiln_http_respond_error(req, 400, "invalid", "attempt= and offset= are required");
        return;
    }
    const char *cl = kiln_http_req_header(req, "Content-Length");
    if (cl && !parse_i64(cl, &clen)) {
        kiln_http_respond_error(req, 400, "invalid", "bad Content-Length");
        return;
    }
    if (caller_check(h->srv, req, job, &e) != KILN_OK ||
        job_check(h->srv, job, attempt, &e) != KILN_OK) {
        respond_err(req, &e);
        return;
    }
    for (struct sup *o = h->active; o; o = o->next)
        if (!o->plan && o->working && !strcmp(o->hashpart, hashpart)) {
            kiln_http_respond_error(req, 409, "busy",
                                    "%s is being checked; ask again (POST .../plan)", hashpart);
            return;
        }
    for (struct sup *o = h->active; o; o = o->next)
        if (!o->plan && !o->detached && !strcmp(o->hashpart, hashpart)) {
            /* The worker gave up on that connection and resumes: its bytes
             * end here, whatever still trickles in on it. */
            o->detached = 1;
            keep_hash(h, o->u);
            kiln_staging_upload_close(o->u);
            o->u = NULL;
        }
    struct sup *x = calloc(1, sizeof *x);
    uint64_t size = 0;
    if (!x) {
        kiln_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    int orc = kiln_staging_upload_open(h->cat, hashpart, job, attempt, (uint64_t)offset, &size,
                                       &x->u, &e);
    if (orc == KILN_EEXIST) {
        free(x);
        kiln_http_respond_json(req, 200, json_pack("{s:s,s:b}", "hashpart", hashpart, "staged", 1));
        return;
    }
    if (orc == KILN_ESTATE) {
        /* Two builds of one path (a shared dependency) upload the same
         * bytes: the one that asks again takes over from the offset. */
        free(x);
        kiln_http_respond_error(req, 409, "busy", "%s; ask again (POST .../plan)", e.msg);
        return;
    }
    if (orc != KILN_OK) {
        free(x);
        respond_err(req, &e);
        return;
    }
    resume_hash(h, x->u);
    if (clen >= 0 && (uint64_t)clen + (uint64_t)offset > size) {
        kiln_staging_upload_close(x->u);
        free(x);
        kiln_http_respond_error(req, 400, "invalid",
                                "offset %lld + %lld bytes is more than the NarSize %llu",
                                (long long)offset, (long long)clen, (unsigned long long)size);
        return;
    }
    x->h = h;
    x->req = req;
    x->job = job;
    x->attempt = attempt;
    snprintf(x->hashpart, sizeof x->hashpart, "%s", hashpart);
    x->next = h->active;
    h->active = x;
    if (kiln_http_req_take_body(req, up_on_data, up_on_end, up_on_close, x) != KILN_OK) {
        sup_free(x);
        kiln_http_respond_error(req, 500, "internal", "cannot stream the upload");
    }
}

static void plan_post(struct kiln_staging_http *h, struct kiln_http_req *req, int64_t job)
{
    int64_t attempt = 0;
    struct kiln_error e = {0};
    if (!param_i64(req, "attempt", &attempt)) {
        kiln_http_respond_error(req, 400, "invalid", "attempt= is required");
        return;
    }
    if (caller_check(h->srv, req, job, &e) != KILN_OK) {
        respond_err(req, &e);
        return;
    }
    struct sup *x = calloc(1, sizeof *x);
    if (!x) {
        kiln_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    x->h = h;
    x->plan = 1;
    x->job = job;
    x->attempt = attempt;
    x->body.max = PLAN_MAX;
    if (kiln_http_req_take_body(req, up_on_data, up_on_end, up_on_close, x) != KILN_OK) {
        free(x);
        kiln_http_respond_error(req, 500, "internal", "cannot read the request body");
    }
}

int kiln_staging_http(struct kiln_server *srv, struct kiln_http_req *req, enum kiln_role role,
                      void *ctx)
{
    (void)srv;
    struct kiln_staging_http *h = ctx;
    const char *path = kiln_http_req_path(req), *m = kiln_http_req_method(req);
    if (strncmp(path, API, strlen(API)) || (path[strlen(API)] && path[strlen(API)] != '/'))
        return 0;
    const char *rest = path + strlen(API);
    if (*rest == '/') rest++;
    if (!*rest) {
        if (strcmp(m, "GET") && strcmp(m, "HEAD")) {
            kiln_http_respond_error(req, 405, "method_not_allowed", "use GET");
        } else if (!kiln_role_allows(role, KILN_ROLE_READ)) {
            kiln_http_respond_error(req, 401, "unauthorized", "reading staging needs a token");
        } else {
            json_t *out = NULL;
            struct kiln_error e = {0};
            if (kiln_staging_list(h->cat, &out, &e) == KILN_OK)
                kiln_http_respond_json(req, 200, out);
            else
                respond_err(req, &e);
        }
        return 1;
    }
    if (!kiln_role_allows(role, KILN_ROLE_WORKER)) {
        kiln_http_respond_error(req, role == KILN_ROLE_NONE ? 401 : 403,
                                role == KILN_ROLE_NONE ? "unauthorized" : "forbidden",
                                "staging outputs needs a worker or admin token");
        return 1;
    }
    char jobs[24];
    const char *slash = strchr(rest, '/');
    int64_t job = 0;
    if (!slash || (size_t)(slash - rest) >= sizeof jobs) {
        kiln_http_respond_error(req, 404, "not_found", "no such staging resource");
        return 1;
    }
    memcpy(jobs, rest, (size_t)(slash - rest));
    jobs[slash - rest] = '\0';
    if (!parse_i64(jobs, &job) || job <= 0) {
        kiln_http_respond_error(req, 404, "not_found", "no such staging resource");
        return 1;
    }
    if (!strcmp(slash, "/plan") && !strcmp(m, "POST"))
        plan_post(h, req, job);
    else if (!strncmp(slash, "/nar/", 5) && !strcmp(m, "PUT"))
        upload_put(h, req, job, slash + 5);
    else
        kiln_http_respond_error(req, 405, "method_not_allowed",
                                "use POST .../plan or PUT .../nar/<hashpart>");
    return 1;
}
