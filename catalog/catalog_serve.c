/* catalog_serve.c - the catalog plugged into kiln serve (routes, publish stage). */
#include "catalog/catalog_serve.h"

#include "catalog/catalog.h"
#include "catalog/publish.h"
#include "catalog/release_serve.h"
#include "catalog/staging.h"
#include "common/clock.h"
#include "catalog/staging_http.h"
#include "common/units.h"
#include "http/http.h"
#include "server/auth.h"

#include <stdlib.h>
#include <string.h>

struct catalog_feature {
    struct kiln_server *srv;
    struct kiln_catalog *cat;         /* NULL if it could not be opened */
    struct kiln_publisher *publisher; /* the publish stage */
    struct kiln_staging_http *staging;
    struct kiln_release_serve *releases; /* publish: release */
    uv_timer_t prune;
    int prune_started;
    double max_age_s;   /* staging retention (0 = none) */
    uint64_t max_bytes; /* (0 = none) */
    char public_key[200];
};

struct pubctx {
    struct kiln_server *srv;
    int64_t job;
};

static void publish_done(void *arg, int rc, json_t *res)
{
    struct pubctx *x = arg;
    struct kiln_error err = {0};
    const char *msg = json_string_value(json_object_get(res, "message"));
    if (!x->srv->stopping &&
        kiln_serve_publish_done(x->srv, x->job, rc == KILN_OK,
                                rc == KILN_OK ? NULL : (msg ? msg : kiln_strerror(rc)),
                                json_object_get(res, "artifact"), &err))
        kiln_log(&x->srv->log, KILN_LOG_WARN, "publish of job %lld: %s", (long long)x->job,
                 err.msg);
    free(x);
}

static void publish(struct kiln_server *srv, int64_t job, void *ctx)
{
    struct catalog_feature *cf = ctx;
    struct kiln_error err = {0};
    json_t *j = NULL;
    int64_t release = 0;
    struct pubctx *x = malloc(sizeof *x);
    if (x) {
        x->srv = srv;
        x->job = job;
    }
    if (!x || kiln_jobs_get(&srv->jobs, job, &j, &err) ||
        kiln_release_serve_for_job(cf->releases, j, &release, &err) ||
        kiln_publish_job_held(cf->publisher, j, release, publish_done, x, &err)) {
        free(x);
        struct kiln_error e2 = {0};
        kiln_serve_publish_done(srv, job, 0, err.msg[0] ? err.msg : "out of memory", NULL, &e2);
    }
    json_decref(j);
}

static void on_catalog_publish(void *arg, int64_t id)
{
    struct kiln_server *srv = arg;
    (void)id;
    /* Catalog changes reach the page through the next SSE flush. */
    if (srv->events) kiln_events_notify(srv->events);
}

/* A test stage fetches its inputs from here by Nix substitution: the lease
 * names them and the key their narinfos are signed with. */
static void lease_extra(struct kiln_server *srv, json_t *lease, void *ctx)
{
    struct catalog_feature *cf = ctx;
    (void)srv;
    json_t *outs = json_object_get(lease, "outputs");
    const char *stage = json_string_value(json_object_get(lease, "stage"));
    if (!stage || strcmp(stage, "test") || !json_array_size(outs) || !cf->public_key[0]) return;
    json_object_set_new(lease, "substitute",
                        json_pack("{s:O,s:s,s:s}", "paths", outs, "cache", "/nix-cache",
                                  "public_key", cf->public_key));
}

/* Staging retention: the outputs of jobs waiting for or running their test
 * stage are kept (with their closure); everything else ages out. */
static void prune_tick(uv_timer_t *t)
{
    struct catalog_feature *cf = t->data;
    struct kiln_server *srv = cf->srv;
    json_t *keep = json_array();
    /* building: what it staged before its report (kept by job id);
     * built/testing: its recorded outputs, which the test substitutes. */
    const char *states[] = {"building", "built", "testing", NULL};
    for (int s = 0; keep && states[s]; s++) {
        int64_t ids[1000];
        int n = 0;
        if (kiln_jobs_in_state(&srv->jobs, states[s], ids, 1000, &n, NULL) != KILN_OK) continue;
        for (int i = 0; i < n; i++) {
            json_t *j = NULL;
            json_array_append_new(keep, json_integer(ids[i]));
            if (kiln_jobs_get(&srv->jobs, ids[i], &j, NULL) == KILN_OK)
                json_array_extend(keep, json_object_get(j, "outputs"));
            json_decref(j);
        }
    }
    uint64_t n = 0, bytes = 0;
    struct kiln_error err = {0};
    if (!keep || kiln_staging_prune(cf->cat, kiln_clock_wall(), cf->max_age_s, cf->max_bytes, keep,
                                    &n, &bytes, &err) != KILN_OK)
        kiln_log(&srv->log, KILN_LOG_WARN, "staging retention: %s",
                 err.msg[0] ? err.msg : "out of memory");
    else if (n)
        kiln_log(&srv->log, KILN_LOG_INFO, "staging retention removed %llu paths (%llu bytes)",
                 (unsigned long long)n, (unsigned long long)bytes);
    json_decref(keep);
}

/* staging: {max_age_s: N, max_size: "500 GiB", prune_interval_s: N} */
static int staging_config(struct catalog_feature *cf, json_t *st, double *interval,
                          struct kiln_error *err)
{
    cf->max_age_s = 7 * 86400.0;
    cf->max_bytes = 0;
    *interval = 60;
    if (!st) return KILN_OK;
    if (!json_is_object(st)) return kiln_fail(err, KILN_EINVAL, "staging: must be a mapping");
    const char *k;
    json_t *v;
    json_object_foreach(st, k, v)
    {
        if (!strcmp(k, "max_age_s") && json_is_number(v) && json_number_value(v) >= 0)
            cf->max_age_s = json_number_value(v);
        else if (!strcmp(k, "prune_interval_s") && json_is_number(v) && json_number_value(v) > 0)
            *interval = json_number_value(v);
        else if (!strcmp(k, "max_size") && json_is_integer(v) && json_integer_value(v) >= 0)
            cf->max_bytes = (uint64_t)json_integer_value(v);
        else if (!strcmp(k, "max_size") && json_is_string(v) &&
                 kiln_parse_size(json_string_value(v), &cf->max_bytes) == KILN_OK)
            continue;
        else
            return kiln_fail(err, KILN_EINVAL,
                             "staging.%s: unknown key or bad value (max_age_s: seconds, "
                             "max_size: bytes or \"500 GiB\", prune_interval_s: seconds)",
                             k);
    }
    return KILN_OK;
}

/* Staged paths that are not published (a held release, a variant not yet
 * tested) are for test hosts only: a worker's own credential, or an admin.
 * A read token, anonymous reading and a registration token see published
 * paths only, so nothing leaves the farm before its release does. */
static int may_fetch_staged(struct kiln_server *srv, struct kiln_http_req *req, enum kiln_role role)
{
    if (role == KILN_ROLE_ADMIN) return 1;
    if (role != KILN_ROLE_WORKER) return 0;
    struct kiln_principal p;
    struct kiln_error e = {0};
    return kiln_auth_identify(srv->st, kiln_http_req_header(req, "Authorization"), &p, &e) ==
               KILN_OK &&
           p.role == KILN_ROLE_WORKER && p.worker_id > 0;
}

static int stream(struct kiln_server *srv, struct kiln_http_req *req, enum kiln_role role,
                  void *ctx)
{
    struct catalog_feature *cf = ctx;
    int staged =
        !strncmp(kiln_http_req_path(req), "/nix-cache/", 11) && may_fetch_staged(srv, req, role);
    return kiln_catalog_http(cf->cat, req, role, staged);
}

/* 1 when the job's stages include name. */
static int has_stage(json_t *job, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(job, "stages"), i, v)
    {
        if (json_is_string(v) && !strcmp(json_string_value(v), name)) return 1;
    }
    return 0;
}

/* A report's outputs, before the report is applied (serve.h, report_vet):
 * - a build names only outputs its own plan staged (catalog/staging.h),
 *   else the report is refused;
 * - a successful build whose test or publish stage comes next has every
 *   output on the server (staged, or published already), since the test
 *   host substitutes it from there and publishing promotes it. kiln worker
 *   stages before it reports, so a miss is a worker that did not (an old
 *   one, or stage_outputs: false on hosts that do not share a store): the
 *   build fails now and names the path, where the test host would fail
 *   later with a Nix error about a missing narinfo. */
static int report_vet(struct kiln_server *srv, int64_t job, const struct kiln_report *r, int staged,
                      struct kiln_error *fail, void *ctx, struct kiln_error *err)
{
    struct catalog_feature *cf = ctx;
    if (!json_array_size(r->outputs)) return KILN_OK;
    int rc = kiln_staging_check_outputs(cf->cat, job, r->outputs, err);
    if (rc || !staged || r->exit_code || r->signal || r->infra) return rc;
    const char *stage = r->stage;
    json_t *j = NULL;
    /* A job that is gone: the report itself answers for that. */
    if (kiln_jobs_get(&srv->jobs, job, &j, NULL) != KILN_OK) return KILN_OK;
    if (!stage) stage = json_string_value(json_object_get(j, "stage"));
    if (stage && !strcmp(stage, "build") && (has_stage(j, "test") || has_stage(j, "publish"))) {
        size_t i;
        json_t *v;
        json_array_foreach(r->outputs, i, v)
        {
            const char *p = json_string_value(v);
            if (p && kiln_staging_have(cf->cat, p)) continue;
            kiln_fail(fail, KILN_ECONFLICT,
                      "output %.300s was not staged on the server, so no test host can "
                      "substitute it: the worker must upload its outputs before it reports "
                      "(kiln worker does, unless its config says stage_outputs: false, "
                      "which is only for hosts that share one Nix store)",
                      p ? p : "(not a string)");
            break;
        }
    }
    json_decref(j);
    return KILN_OK;
}

static int feature_init(struct kiln_server *srv, json_t *config, void **state,
                        struct kiln_error *err)
{
    struct catalog_feature *cf = calloc(1, sizeof *cf);
    if (!cf) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    *state = cf;
    cf->srv = srv;
    double interval = 60;
    int rc0 = staging_config(cf, json_object_get(config, "staging"), &interval, err);
    if (rc0) return rc0;
    if (kiln_catalog_open(srv->cfg.data_dir, &cf->cat, err)) {
        kiln_log(&srv->log, KILN_LOG_WARN, "catalog unavailable: %s", err->msg);
        cf->cat = NULL;
        kiln_error_clear(err);
        return KILN_OK;
    }
    kiln_catalog_set_loop(cf->cat, srv->loop);
    int rc = kiln_serve_add_stream_route(srv, "/api/v1/catalog", stream, cf);
    if (!rc) rc = kiln_serve_add_stream_route(srv, "/nix-cache/", stream, cf);
    if (!rc) rc = kiln_staging_http_new(srv, cf->cat, &cf->staging, err);
    if (!rc)
        rc = kiln_serve_add_stream_route(srv, "/api/v1/staging", kiln_staging_http, cf->staging);
    if (rc) return kiln_fail(err, rc, "catalog: cannot register its routes");
    if (kiln_catalog_nix_public_key(cf->cat, cf->public_key, sizeof cf->public_key, err) ==
        KILN_OK) {
        srv->lease_extra = lease_extra;
        srv->lease_extra_ctx = cf;
    } else {
        kiln_log(&srv->log, KILN_LOG_WARN, "no Nix cache key, test stages cannot substitute: %s",
                 err->msg);
        kiln_error_clear(err);
    }
    if (uv_timer_init(srv->loop, &cf->prune) == 0) {
        cf->prune.data = cf;
        cf->prune_started = 1;
        uv_timer_start(&cf->prune, prune_tick, (uint64_t)(interval * 1000),
                       (uint64_t)(interval * 1000));
    }
    rc = kiln_publisher_new(srv->loop, cf->cat, json_object_get(config, "publish"), &cf->publisher,
                            err);
    if (rc) return rc;
    if ((rc = kiln_release_serve_new(srv, cf->cat, cf->publisher, &cf->releases, err))) return rc;
    srv->publish = publish;
    srv->publish_ctx = cf;
    srv->report_vet = report_vet;
    srv->report_vet_ctx = cf;
    kiln_catalog_on_publish(cf->cat, on_catalog_publish, srv);
    return KILN_OK;
}

static void feature_stop(struct kiln_server *srv, void *state)
{
    struct catalog_feature *cf = state;
    srv->publish = NULL;
    srv->publish_ctx = NULL;
    srv->report_vet = NULL;
    srv->report_vet_ctx = NULL;
    if (cf) kiln_release_serve_free(cf->releases);
    if (cf) cf->releases = NULL;
    srv->lease_extra = NULL;
    if (cf && cf->prune_started) {
        uv_timer_stop(&cf->prune);
        uv_close((uv_handle_t *)&cf->prune, NULL);
    }
    if (cf && cf->publisher) kiln_publisher_free(cf->publisher);
    if (cf) cf->publisher = NULL;
}

static void feature_cleanup(void *state)
{
    struct catalog_feature *cf = state;
    if (!cf) return;
    kiln_staging_http_free(cf->staging);
    kiln_catalog_close(cf->cat);
    free(cf);
}

static const char *const sections[] = {"catalog", "publish", "staging", NULL};

const struct kiln_serve_feature kiln_catalog_feature = {
    .name = "catalog",
    .config_sections = sections,
    .init = feature_init,
    .stop = feature_stop,
    .cleanup = feature_cleanup,
};
