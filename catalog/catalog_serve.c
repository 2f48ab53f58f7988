/* catalog_serve.c - the catalog plugged into kiln serve (routes, publish stage). */
#include "catalog/catalog_serve.h"

#include "catalog/catalog.h"
#include "catalog/publish.h"
#include "catalog/release_serve.h"

#include <stdlib.h>

struct catalog_feature {
    struct kiln_catalog *cat;           /* NULL if it could not be opened */
    struct kiln_publisher *publisher;   /* the publish stage */
    struct kiln_release_serve *releases; /* publish: release */
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

static int stream(struct kiln_server *srv, struct kiln_http_req *req, enum kiln_role role,
                  void *ctx)
{
    struct catalog_feature *cf = ctx;
    return kiln_catalog_http(cf->cat, req, role);
}

static int feature_init(struct kiln_server *srv, json_t *config, void **state,
                        struct kiln_error *err)
{
    struct catalog_feature *cf = calloc(1, sizeof *cf);
    if (!cf) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    *state = cf;
    if (kiln_catalog_open(srv->cfg.data_dir, &cf->cat, err)) {
        kiln_log(&srv->log, KILN_LOG_WARN, "catalog unavailable: %s", err->msg);
        cf->cat = NULL;
        kiln_error_clear(err);
        return KILN_OK;
    }
    kiln_catalog_set_loop(cf->cat, srv->loop);
    int rc = kiln_serve_add_stream_route(srv, "/api/v1/catalog", stream, cf);
    if (!rc) rc = kiln_serve_add_stream_route(srv, "/nix-cache/", stream, cf);
    if (rc) return kiln_fail(err, rc, "catalog: cannot register its routes");
    rc = kiln_publisher_new(srv->loop, cf->cat, json_object_get(config, "publish"), &cf->publisher,
                            err);
    if (rc) return rc;
    if ((rc = kiln_release_serve_new(srv, cf->cat, cf->publisher, &cf->releases, err))) return rc;
    srv->publish = publish;
    srv->publish_ctx = cf;
    kiln_catalog_on_publish(cf->cat, on_catalog_publish, srv);
    return KILN_OK;
}

static void feature_stop(struct kiln_server *srv, void *state)
{
    struct catalog_feature *cf = state;
    srv->publish = NULL;
    srv->publish_ctx = NULL;
    if (cf) kiln_release_serve_free(cf->releases);
    if (cf) cf->releases = NULL;
    if (cf && cf->publisher) kiln_publisher_free(cf->publisher);
    if (cf) cf->publisher = NULL;
}

static void feature_cleanup(void *state)
{
    struct catalog_feature *cf = state;
    if (!cf) return;
    kiln_catalog_close(cf->cat);
    free(cf);
}

static const char *const sections[] = {"catalog", "publish", NULL};

const struct kiln_serve_feature kiln_catalog_feature = {
    .name = "catalog",
    .config_sections = sections,
    .init = feature_init,
    .stop = feature_stop,
    .cleanup = feature_cleanup,
};
