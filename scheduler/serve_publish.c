#include "scheduler/serve_publish.h"

#include "scheduler/catalog.h"
#include "scheduler/publish.h"

#include <stdlib.h>

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
    struct kiln_error err = {0};
    json_t *j = NULL;
    struct pubctx *x = malloc(sizeof *x);
    if (x) {
        x->srv = srv;
        x->job = job;
    }
    if (!x || kiln_jobs_get(&srv->jobs, job, &j, &err) ||
        kiln_publish_job(ctx, j, publish_done, x, &err)) {
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

int kiln_serve_publish_init(struct kiln_server *srv, json_t *config, struct kiln_error *err)
{
    if (!srv->catalog) return KILN_OK;
    struct kiln_publisher *pub = NULL;
    int rc =
        kiln_publisher_new(srv->loop, srv->catalog, json_object_get(config, "publish"), &pub, err);
    if (rc) return rc;
    srv->publisher = pub;
    srv->publish = publish;
    srv->publish_ctx = pub;
    kiln_catalog_on_publish(srv->catalog, on_catalog_publish, srv);
    return KILN_OK;
}

void kiln_serve_publish_stop(struct kiln_server *srv)
{
    if (!srv->publisher) return;
    kiln_publisher_free(srv->publisher);
    srv->publisher = NULL;
    srv->publish = NULL;
    srv->publish_ctx = NULL;
}
