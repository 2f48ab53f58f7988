/* serve.h - `kiln serve`: the scheduler service wired on one libuv loop.
 *
 * Contract:
 * - kiln_serve_run() opens <data>/kiln.db, recovers (workers get a fresh
 *   grace period to reconnect; interrupted publishes restart), starts the
 *   HTTP server and runs until SIGINT/SIGTERM, then stops cleanly (pending
 *   long-polls answered, streams ended, store closed). Returns 0 or KILN_E*.
 * - Config: defaults < YAML file (--config) < command-line flags; unknown
 *   keys in the file are errors naming the key.
 * - One timer (tick_ms) marks silent workers lost, requeues timed-out
 *   attempts and prunes old events; matching itself is event-driven.
 * - Every committed change is followed by kiln_serve_changed(): SSE
 *   subscribers are fed, waiting leases are re-matched, publishes start.
 * - Features (the catalog, the git watcher) plug in through struct
 *   kiln_serve_feature, listed by the caller in cfg.features: each one's
 *   init registers its routes (kiln_serve_add_route, or
 *   kiln_serve_add_stream_route for bodies it streams itself) and hooks
 *   (srv->publish: the publish stage, which must finish each job with
 *   kiln_serve_publish_done(); kiln_serve_on_job_change: told of every
 *   committed change of a job that has a commit (a job of a tracked
 *   branch or a recipe at a commit: both hooks, releases and forge
 *   statuses, are about commits), in commit order, once each, from the
 *   loop after the change). The service knows none of them by name.
 *   Without a publisher, publishing succeeds at once.
 */
#ifndef KILN_SERVE_H
#define KILN_SERVE_H

#include "common/err.h"
#include "common/log.h"
#include "common/token.h"
#include "server/dispatch.h"
#include "server/events.h"
#include "http/http.h"
#include "state/jobs.h"
#include "server/logs.h"
#include "state/store.h"

struct kiln_serve_feature;

#include <limits.h>
#include <stdint.h>
#include <uv.h>

struct kiln_serve_config {
    /* The parsed config file (NULL without --config): sections owned by
     * other modules (repos, hooks, catalog, publish) are read from it. */
    json_t *raw;
    char listen[128]; /* "127.0.0.1:8080" */
    char data_dir[PATH_MAX];
    char recipes_dir[PATH_MAX];
    char web_dir[PATH_MAX];
    char tls_cert[PATH_MAX];
    char tls_key[PATH_MAX];
    char trace_path[PATH_MAX]; /* "" or where the placer's events go (--trace) */
    int allow_anonymous_read;
    unsigned heartbeat_s;      /* told to workers (5) */
    unsigned lost_after_s;     /* silent this long -> lost (20) */
    unsigned max_lease_wait_s; /* cap on ?wait= (60) */
    double backoff_base_s;     /* infra retry backoff (5) */
    double backoff_max_s;      /* (600) */
    double lease_ack_s;        /* (30) */
    unsigned tick_ms;          /* housekeeping timer (1000) */
    unsigned keepalive_ms;     /* SSE keep-alive (15000) */
    int64_t events_keep;       /* newest events kept for resume (100000) */
    int64_t max_log_bytes;     /* per job (4 GiB) */
    size_t max_body_bytes;     /* HTTP request body cap (8 MiB) */
    size_t max_header_bytes;   /* (16 KiB) */
    /* Issue 16's guards: each refusal is a 503 that names its limit. */
    unsigned max_connections_per_client; /* open connections per peer address (128) */
    unsigned max_streams;                /* SSE and log-follow clients, each (256) */
    unsigned max_lease_waits;            /* pending lease long-polls (1024) */
    unsigned header_timeout_ms;          /* whole request head (0 = http.h's 10 s) */
    unsigned body_timeout_ms;            /* whole buffered body (0 = http.h's 60 s) */
    int64_t log_quota_bytes;             /* all job logs together (64 GiB; 0 = none) */
    double log_retention_days;           /* finished jobs' logs kept (90; 0 = forever) */
    enum kiln_log_level log_level;
    /* NULL-terminated; borrowed. Their config sections pass load untouched. */
    const struct kiln_serve_feature *const *features;
};

void kiln_serve_config_defaults(struct kiln_serve_config *c);
int kiln_serve_config_load(struct kiln_serve_config *c, const char *path, struct kiln_error *err);
/* Releases what load kept (raw); the config stays usable otherwise. */
void kiln_serve_config_free(struct kiln_serve_config *c);
int kiln_serve_run(const struct kiln_serve_config *c, struct kiln_error *err);

struct kiln_server;
/* A job changed (job: its object as in the "job" event, borrowed). It may
 * commit changes of its own; it is not called again from inside itself. */
typedef void (*kiln_job_change_fn)(struct kiln_server *srv, json_t *job, void *ctx);
typedef void (*kiln_route_fn)(struct kiln_server *srv, struct kiln_http_req *req, void *ctx);
/* Called when a request's headers are in, before its body: returns 1 when it
 * took the request (it answers and reads the body itself), 0 to pass. The
 * caller is already authenticated as `role` (KILN_ROLE_NONE: anonymous and
 * anonymous reading is off). */
typedef int (*kiln_stream_fn)(struct kiln_server *srv, struct kiln_http_req *req,
                              enum kiln_role role, void *ctx);

/* A feature plugged into the service. init runs once the store, dispatch and
 * HTTP server exist; *state is passed back to stop (before the loop ends:
 * close handles, cancel work) and cleanup (after the loop: free). */
struct kiln_serve_feature {
    const char *name;
    const char *const *config_sections; /* NULL-terminated top-level keys it owns */
    int (*init)(struct kiln_server *srv, json_t *config, void **state, struct kiln_error *err);
    void (*stop)(struct kiln_server *srv, void *state);
    void (*cleanup)(void *state);
};
typedef void (*kiln_publish_fn)(struct kiln_server *srv, int64_t job_id, void *ctx);

struct kiln_route {
    char method[8];
    char prefix[96]; /* path prefix, e.g. "/api/v1/catalog" */
    enum kiln_role role;
    kiln_route_fn fn;
    void *ctx;
};

struct kiln_metrics {
    uint64_t http_requests;
    uint64_t auth_failures;
    uint64_t jobs_submitted;
    uint64_t leases;
    uint64_t reports;
    uint64_t log_bytes;
    uint64_t workers_lost;
    uint64_t timeouts;
};

#define KILN_SERVE_MAX_ROUTES 32
#define KILN_SERVE_MAX_STREAMS 8
#define KILN_SERVE_MAX_FEATURES 8
#define KILN_SERVE_MAX_JOB_HOOKS 8

struct kiln_stream_route {
    char prefix[96];
    kiln_stream_fn fn;
    void *ctx;
};

struct kiln_server {
    uv_loop_t *loop;
    struct kiln_serve_config cfg;
    struct kiln_logger log;
    struct kiln_store *st;
    struct kiln_jobs jobs;
    struct kiln_dispatch *dispatch;
    struct kiln_events *events;
    struct kiln_logs *logs;
    struct kiln_http_server *http;
    struct kiln_metrics m;
    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    int stopping;
    unsigned ticks;
    double started_at;
    int nroutes;
    struct kiln_route routes[KILN_SERVE_MAX_ROUTES];
    int nstreams;
    struct kiln_stream_route streams[KILN_SERVE_MAX_STREAMS];
    int nfeatures; /* those whose init succeeded, in order */
    void *feature_state[KILN_SERVE_MAX_FEATURES];
    kiln_publish_fn publish; /* the publish stage hook (NULL: succeed at once) */
    int64_t log_total;       /* bytes of all job logs (server/logquota.h) */
    void *publish_ctx;
    /* Adds feature fields to a committed lease before it is sent (the
     * catalog names where a test stage substitutes its inputs). NULL: none. */
    void (*lease_extra)(struct kiln_server *srv, json_t *lease, void *ctx);
    void *lease_extra_ctx;
    /* The catalog's say on a parsed report, before it is applied (ctx:
     * report_vet_ctx). A return other than KILN_OK refuses the report: its
     * error is the HTTP answer (a build naming outputs staged for another
     * job). KILN_OK with fail->msg set fails the stage with that sentence (a
     * build whose outputs are not on the server, since the test host
     * substitutes them from there; not held against a worker that stages
     * nothing, staged = 0). NULL: none. */
    int (*report_vet)(struct kiln_server *srv, int64_t job, const struct kiln_report *r, int staged,
                      struct kiln_error *fail, void *ctx, struct kiln_error *err);
    void *report_vet_ctx;
    /* Job-change hooks read the "job" events past job_cursor (the events
     * table is the one ordered record of what committed). */
    int njob_hooks, in_job_hooks;
    struct {
        kiln_job_change_fn fn;
        void *ctx;
    } job_hooks[KILN_SERVE_MAX_JOB_HOOKS];
    int64_t job_cursor;
};

void kiln_serve_changed(struct kiln_server *srv);
/* 1 if the job (ctx = the server) is final or gone; for kiln_logs_finish_if. */
int kiln_serve_job_is_final(void *srv, int64_t job);
int kiln_serve_add_route(struct kiln_server *srv, const char *method, const char *prefix,
                         enum kiln_role role, kiln_route_fn fn, void *ctx);
int kiln_serve_add_stream_route(struct kiln_server *srv, const char *prefix, kiln_stream_fn fn,
                                void *ctx);
/* Register a job-change hook (features call it from init). */
int kiln_serve_on_job_change(struct kiln_server *srv, kiln_job_change_fn fn, void *ctx);
int kiln_serve_publish_done(struct kiln_server *srv, int64_t job, int ok, const char *reason,
                            json_t *artifact, struct kiln_error *err);
/* Set up everything but the signals and run nothing (tests drive the loop). */
int kiln_server_init(struct kiln_server *srv, uv_loop_t *loop, const struct kiln_serve_config *c,
                     struct kiln_error *err);
/* Stop listening, end streams, close handles (run the loop after). */
void kiln_server_shutdown(struct kiln_server *srv);
/* Close the store once the loop has finished. */
void kiln_server_cleanup(struct kiln_server *srv);

#endif
