/* serve.c - wiring of `kiln serve`: config, store, HTTP, timers, signals. */
#include "server/serve.h"

#include "common/clock.h"
#include "common/fsutil.h"
#include "common/json_field.h"
#include "common/yaml_json.h"
#include "server/api.h"
#include "server/logquota.h"
#include "state/registry.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void kiln_serve_config_defaults(struct kiln_serve_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->listen, sizeof c->listen, "127.0.0.1:8080");
    snprintf(c->data_dir, sizeof c->data_dir, "./var");
    c->heartbeat_s = 5;
    c->lost_after_s = 20;
    c->max_lease_wait_s = 60;
    c->backoff_base_s = 5;
    c->backoff_max_s = 600;
    c->lease_ack_s = 30;
    c->tick_ms = 1000;
    c->keepalive_ms = 15000;
    c->events_keep = 100000;
    c->max_log_bytes = 4LL << 30;
    c->max_body_bytes = 8u << 20;
    c->max_header_bytes = 16u << 10;
    c->max_connections_per_client = 128;
    c->max_streams = 256;
    c->max_lease_waits = 1024;
    c->log_quota_bytes = 64LL << 30;
    c->log_retention_days = 90;
    c->log_level = KILN_LOG_INFO;
}

void kiln_serve_config_free(struct kiln_serve_config *c)
{
    json_decref(c->raw);
    c->raw = NULL;
}

/* Config keys are named "config: <key>" in errors; the checks themselves
 * are common/json_field's. */
static int cfg_str(json_t *v, const char *key, char *out, size_t n, struct kiln_error *err)
{
    char name[96];
    snprintf(name, sizeof name, "config: %s", key);
    return kiln_json_want_strcpy(v, name, out, n, err);
}

static int cfg_num(json_t *v, const char *key, double lo, double hi, double *out,
                   struct kiln_error *err)
{
    char name[96];
    snprintf(name, sizeof name, "config: %s", key);
    return kiln_json_want_number(v, name, lo, hi, out, err);
}

int kiln_serve_config_load(struct kiln_serve_config *c, const char *path, struct kiln_error *err)
{
    json_t *root;
    int rc = kiln_yaml_to_json(path, NULL, 0, &root, err);
    if (rc) return rc;
    if (json_is_null(root)) {
        json_decref(root);
        return KILN_OK; /* empty file */
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return kiln_fail(err, KILN_EINVAL, "%s: the config must be a mapping of settings", path);
    }
    /* Sections owned by features (catalog, repos, publish...) are passed
     * through untouched; everything else must be a known key. */
    static const char *foreign[] = {"placement", NULL};
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        double d = 0;
        int known = 1;
        if (!strcmp(k, "listen"))
            rc = cfg_str(v, k, c->listen, sizeof c->listen, err);
        else if (!strcmp(k, "data"))
            rc = cfg_str(v, k, c->data_dir, sizeof c->data_dir, err);
        else if (!strcmp(k, "recipes"))
            rc = cfg_str(v, k, c->recipes_dir, sizeof c->recipes_dir, err);
        else if (!strcmp(k, "web"))
            rc = cfg_str(v, k, c->web_dir, sizeof c->web_dir, err);
        else if (!strcmp(k, "tls_cert"))
            rc = cfg_str(v, k, c->tls_cert, sizeof c->tls_cert, err);
        else if (!strcmp(k, "tls_key"))
            rc = cfg_str(v, k, c->tls_key, sizeof c->tls_key, err);
        else if (!strcmp(k, "allow_anonymous_read")) {
            if (!json_is_boolean(v))
                rc = kiln_fail(err, KILN_EINVAL,
                               "config: allow_anonymous_read must be true or false");
            else
                c->allow_anonymous_read = json_is_true(v);
        } else if (!strcmp(k, "log_level")) {
            if (!json_is_string(v) || kiln_log_level_parse(json_string_value(v), &c->log_level))
                rc = kiln_fail(err, KILN_EINVAL,
                               "config: log_level must be debug, info, warn or error");
        } else if (!strcmp(k, "heartbeat_s")) {
            if (!(rc = cfg_num(v, k, 1, 3600, &d, err))) c->heartbeat_s = (unsigned)d;
        } else if (!strcmp(k, "lost_after_s")) {
            if (!(rc = cfg_num(v, k, 2, 86400, &d, err))) c->lost_after_s = (unsigned)d;
        } else if (!strcmp(k, "max_lease_wait_s")) {
            if (!(rc = cfg_num(v, k, 0, 3600, &d, err))) c->max_lease_wait_s = (unsigned)d;
        } else if (!strcmp(k, "retry_backoff_s")) {
            rc = cfg_num(v, k, 0, 86400, &c->backoff_base_s, err);
        } else if (!strcmp(k, "retry_backoff_max_s")) {
            rc = cfg_num(v, k, 0, 86400 * 7, &c->backoff_max_s, err);
        } else if (!strcmp(k, "lease_ack_s")) {
            rc = cfg_num(v, k, 1, 86400, &c->lease_ack_s, err);
        } else if (!strcmp(k, "events_keep")) {
            if (!(rc = cfg_num(v, k, 100, 1e9, &d, err))) c->events_keep = (int64_t)d;
        } else if (!strcmp(k, "max_log_bytes")) {
            if (!(rc = cfg_num(v, k, 1024, 1e13, &d, err))) c->max_log_bytes = (int64_t)d;
        } else if (!strcmp(k, "max_body_bytes")) {
            if (!(rc = cfg_num(v, k, 1024, 1e10, &d, err))) c->max_body_bytes = (size_t)d;
        } else if (!strcmp(k, "max_connections_per_client")) { /* issue 16 */
            if (!(rc = cfg_num(v, k, 1, 65536, &d, err)))
                c->max_connections_per_client = (unsigned)d;
        } else if (!strcmp(k, "header_timeout_ms")) {
            if (!(rc = cfg_num(v, k, 100, 600000, &d, err))) c->header_timeout_ms = (unsigned)d;
        } else if (!strcmp(k, "body_timeout_ms")) {
            if (!(rc = cfg_num(v, k, 100, 3600000, &d, err))) c->body_timeout_ms = (unsigned)d;
        } else if (!strcmp(k, "log_quota_bytes")) {
            if (!(rc = cfg_num(v, k, 0, 1e15, &d, err))) c->log_quota_bytes = (int64_t)d;
        } else if (!strcmp(k, "log_retention_days")) {
            rc = cfg_num(v, k, 0, 36500, &c->log_retention_days, err);
        } else if (!strcmp(k, "max_streams")) {
            if (!(rc = cfg_num(v, k, 1, 65536, &d, err))) c->max_streams = (unsigned)d;
        } else if (!strcmp(k, "max_lease_waits")) {
            if (!(rc = cfg_num(v, k, 1, 65536, &d, err))) c->max_lease_waits = (unsigned)d;
        } else {
            known = 0;
            for (const char **f = foreign; *f; f++)
                if (!strcmp(*f, k)) known = 1;
            for (const struct kiln_serve_feature *const *ft = c->features; ft && *ft; ft++)
                for (const char *const *f = (*ft)->config_sections; f && *f; f++)
                    if (!strcmp(*f, k)) known = 1;
            if (!known) rc = kiln_fail(err, KILN_EINVAL, "%s: unknown setting '%.64s'", path, k);
        }
        if (rc) break;
    }
    if (!rc) {
        json_decref(c->raw);
        c->raw = root; /* kept for the modules that own the foreign sections */
    } else {
        json_decref(root);
    }
    return rc;
}

/* --- glue --- */

static int lease_fn(void *ctx, int64_t worker_id, const char *worker_name, size_t n,
                    struct kiln_lease_item *items, struct kiln_error *err)
{
    struct kiln_server *s = ctx;
    int rc;
    /* Each attempt's log starts after its marker line, which is written
     * with the attempt's first byte (kiln_logs_open_attempt): no file per
     * lease. The reads share one snapshot. */
    int opened = kiln_store_read_begin(s->jobs.st);
    for (size_t i = 0; i < n; i++) {
        struct kiln_lease_item *it = &items[i];
        int64_t attempt, size;
        const char *state;
        char line[300];
        if ((it->rc = kiln_jobs_log_state(&s->jobs, it->job, &attempt, NULL, &state, &it->err)))
            continue;
        /* a job never leased has written no log: no stat() for its file */
        size = 0;
        if (attempt > 0 && (it->rc = kiln_logs_size(s->logs, it->job, &size, &it->err))) continue;
        int len =
            kiln_logs_marker(line, sizeof line, attempt + 1,
                             !strcmp(state, "built") ? "test" : "build", worker_name, size > 0);
        if (len < 0)
            it->rc = kiln_fail(&it->err, KILN_ELIMIT, "worker name too long for the log marker");
        it->log_base = size + len;
    }
    kiln_store_read_end(s->jobs.st, opened);
    if ((rc = kiln_jobs_lease_batch(&s->jobs, n, items, worker_id, kiln_clock_wall(), err)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].lease) continue;
        kiln_log(
            &s->log, KILN_LOG_INFO, "job %lld attempt %lld leased to %s", (long long)items[i].job,
            (long long)json_integer_value(json_object_get(items[i].lease, "attempt")), worker_name);
        kiln_logs_notify(s->logs, items[i].job);
        if (s->lease_extra) s->lease_extra(s, items[i].lease, s->lease_extra_ctx);
    }
    return KILN_OK;
}

static void default_publish(struct kiln_server *srv, int64_t job, void *ctx)
{
    (void)ctx;
    struct kiln_error err = {0};
    if (kiln_serve_publish_done(srv, job, 1, NULL, NULL, &err))
        kiln_log(&srv->log, KILN_LOG_WARN, "publish of job %lld: %s", (long long)job, err.msg);
}

int kiln_serve_publish_done(struct kiln_server *srv, int64_t job, int ok, const char *reason,
                            json_t *artifact, struct kiln_error *err)
{
    int rc = kiln_jobs_publish_done(&srv->jobs, job, ok, reason, artifact, kiln_clock_wall(), err);
    if (rc) return rc;
    kiln_logs_finish(srv->logs, job);
    kiln_serve_changed(srv);
    return KILN_OK;
}

static void start_publishes(struct kiln_server *s)
{
    int64_t ids[64];
    int n = 0;
    if (kiln_jobs_in_state(&s->jobs, "tested", ids, 64, &n, NULL)) return;
    for (int i = 0; i < n; i++) {
        struct kiln_error err = {0};
        if (kiln_jobs_publish_start(&s->jobs, ids[i], kiln_clock_wall(), &err)) continue;
        kiln_events_notify(s->events);
        if (s->publish)
            s->publish(s, ids[i], s->publish_ctx);
        else
            default_publish(s, ids[i], NULL);
    }
}

int kiln_serve_on_job_change(struct kiln_server *s, kiln_job_change_fn fn, void *ctx)
{
    if (s->njob_hooks == KILN_SERVE_MAX_JOB_HOOKS) return KILN_ELIMIT;
    s->job_hooks[s->njob_hooks].fn = fn;
    s->job_hooks[s->njob_hooks++].ctx = ctx;
    return KILN_OK;
}

static int job_event(void *arg, int64_t id, const char *type, const char *data)
{
    struct kiln_server *s = arg;
    s->job_cursor = id;
    /* Hooks hear only of jobs of a commit (serve.h): the compact JSON of
     * any other job lacks this text, and skips the parse. */
    if (strcmp(type, "job") || !data || !strstr(data, "\"commit\":\"")) return 0;
    json_t *job = json_loads(data ? data : "null", 0, NULL);
    for (int i = 0; job && i < s->njob_hooks && !s->stopping; i++)
        s->job_hooks[i].fn(s, job, s->job_hooks[i].ctx);
    json_decref(job);
    return 0;
}

/* Feed the hooks everything committed since they last ran. A hook that
 * commits appends events: the loop reads on until none are left. */
static void run_job_hooks(struct kiln_server *s)
{
    if (!s->njob_hooks || s->in_job_hooks) return;
    s->in_job_hooks = 1;
    for (;;) {
        int64_t before = s->job_cursor;
        if (kiln_store_events_after(s->st, s->job_cursor, 256, job_event, s, NULL) ||
            s->job_cursor == before)
            break;
    }
    s->in_job_hooks = 0;
}

void kiln_serve_changed(struct kiln_server *s)
{
    if (s->stopping) return;
    kiln_events_notify(s->events);
    kiln_dispatch_kick(s->dispatch);
    start_publishes(s);
    run_job_hooks(s);
}

int kiln_serve_add_route(struct kiln_server *s, const char *method, const char *prefix,
                         enum kiln_role role, kiln_route_fn fn, void *ctx)
{
    if (s->nroutes == KILN_SERVE_MAX_ROUTES || strlen(method) >= sizeof s->routes[0].method ||
        strlen(prefix) >= sizeof s->routes[0].prefix)
        return KILN_ELIMIT;
    struct kiln_route *r = &s->routes[s->nroutes++];
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
    r->role = role;
    r->fn = fn;
    r->ctx = ctx;
    return KILN_OK;
}

int kiln_serve_add_stream_route(struct kiln_server *s, const char *prefix, kiln_stream_fn fn,
                                void *ctx)
{
    if (s->nstreams == KILN_SERVE_MAX_STREAMS || strlen(prefix) >= sizeof s->streams[0].prefix)
        return KILN_ELIMIT;
    struct kiln_stream_route *r = &s->streams[s->nstreams++];
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
    r->fn = fn;
    r->ctx = ctx;
    return KILN_OK;
}

int kiln_serve_job_is_final(void *ctx, int64_t job)
{
    struct kiln_server *s = ctx;
    const char *state;
    if (kiln_jobs_log_state(&s->jobs, job, NULL, NULL, &state, NULL)) return 1;
    return kiln_job_state_final(state);
}

static void enforce_log_quota(struct kiln_server *s, double now)
{
    struct kiln_error err = {0};
    int removed = 0;
    if (kiln_logquota_enforce(s->st, s->logs, s->cfg.log_quota_bytes,
                              s->cfg.log_retention_days * 86400.0, now, &s->log_total, &removed,
                              &err))
        kiln_log(&s->log, KILN_LOG_WARN, "log quota: %s", err.msg);
    else if (removed)
        kiln_log(&s->log, KILN_LOG_INFO,
                 "log quota: removed %d finished job log(s); %lld bytes kept", removed,
                 (long long)s->log_total);
}

static void on_tick(uv_timer_t *t)
{
    struct kiln_server *s = t->data;
    double now = kiln_clock_wall();
    struct kiln_error err = {0};
    int n = 0, changed = 0;
    /* A worker blocked in a lease long-poll is alive. */
    kiln_dispatch_touch_waiting(s->dispatch, now);
    if (kiln_registry_check_lost(&s->jobs, now, s->cfg.lost_after_s, &n, &err))
        kiln_log(&s->log, KILN_LOG_WARN, "lost-worker check: %s", err.msg);
    if (n) {
        s->m.workers_lost += (uint64_t)n;
        kiln_log(&s->log, KILN_LOG_WARN, "%d worker(s) lost; their jobs were requeued", n);
        changed = 1;
    }
    n = 0;
    if (kiln_jobs_check_timeouts(&s->jobs, now, &n, &err))
        kiln_log(&s->log, KILN_LOG_WARN, "timeout check: %s", err.msg);
    if (n) {
        s->m.timeouts += (uint64_t)n;
        changed = 1;
    }
    if (++s->ticks % 600 == 0 && kiln_store_events_prune(s->st, s->cfg.events_keep, &err))
        kiln_log(&s->log, KILN_LOG_WARN, "event pruning: %s", err.msg);
    if (s->ticks % 60 == 1) enforce_log_quota(s, now);
    if (changed) {
        kiln_logs_finish_if(s->logs, kiln_serve_job_is_final, s);
        kiln_serve_changed(s);
    }
    run_job_hooks(s); /* changes committed without a kiln_serve_changed (leases) */
}

static int parse_listen(const char *listen, char *addr, size_t n, int *port, struct kiln_error *err)
{
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || (size_t)(colon - listen) >= n)
        return kiln_fail(err, KILN_EINVAL, "listen address '%s' must look like 127.0.0.1:8080",
                         listen);
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || !colon[1])
        return kiln_fail(err, KILN_EINVAL, "listen port in '%s' must be 0-65535", listen);
    const char *a = listen;
    size_t al = (size_t)(colon - listen);
    if (a[0] == '[' && al >= 2 && a[al - 1] == ']') {
        a++;
        al -= 2;
    }
    snprintf(addr, n, "%.*s", (int)al, a);
    *port = (int)p;
    return KILN_OK;
}

int kiln_server_init(struct kiln_server *s, uv_loop_t *loop, const struct kiln_serve_config *c,
                     struct kiln_error *err)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->cfg = *c;
    s->log.min = c->log_level;
    s->log.component = "serve";
    s->started_at = kiln_clock_wall();
    char addr[96];
    int port = 0;
    int rc = parse_listen(c->listen, addr, sizeof addr, &port, err);
    if (rc) return rc;
    if (kiln_mkdir_p(c->data_dir, 0755))
        return kiln_fail(err, KILN_EIO, "cannot create data directory %s: %s", c->data_dir,
                         strerror(errno));
    char path[PATH_MAX];
    if (kiln_path_join(path, sizeof path, c->data_dir, "kiln.db"))
        return kiln_fail(err, KILN_ELIMIT, "data directory path is too long");
    if ((rc = kiln_store_open(path, &s->st, err))) return rc;
    /* A checkpoint and its fsync on the loop stalled every request. */
    struct kiln_error cerr = {0};
    if (kiln_store_checkpoints_start(s->st, &cerr))
        kiln_log(&s->log, KILN_LOG_WARN, "%s; checkpoints stay on the loop", cerr.msg);
    kiln_jobs_init(&s->jobs, s->st);
    s->jobs.policy.backoff_base_s = c->backoff_base_s;
    s->jobs.policy.backoff_max_s = c->backoff_max_s;
    s->jobs.policy.lease_ack_s = c->lease_ack_s;
    double now = kiln_clock_wall();
    /* Recovery: workers get lost_after_s to reconnect and re-attach their
     * running jobs; interrupted publishes go back to waiting (idempotent). */
    if ((rc = kiln_registry_grace(&s->jobs, now, err)) ||
        (rc = kiln_jobs_recover(&s->jobs, now, err)))
        goto fail;
    if (kiln_path_join(path, sizeof path, c->data_dir, "logs")) {
        rc = kiln_fail(err, KILN_ELIMIT, "data directory path is too long");
        goto fail;
    }
    if ((rc = kiln_logs_new(path, &s->logs, err))) goto fail;
    s->job_cursor = kiln_store_last_event_id(s->st); /* hooks see changes from now on */
    if ((rc = kiln_events_new(loop, s->st, c->keepalive_ms, &s->events, err))) goto fail;
    struct kiln_policy pol;
    if ((rc = kiln_dispatch_policy_load(c->raw, &pol, err))) goto fail;
    if ((rc = kiln_dispatch_new(loop, &s->jobs, &pol, c->trace_path[0] ? c->trace_path : NULL,
                                lease_fn, s, &s->dispatch, err)))
        goto fail;
    s->jobs.wait_reason = kiln_dispatch_wait_reason;
    s->jobs.wait_ctx = s->dispatch;
    struct kiln_http_limits lim = {.max_header_bytes = c->max_header_bytes,
                                   .max_body_bytes = c->max_body_bytes,
                                   .max_connections_per_client = c->max_connections_per_client,
                                   .header_timeout_ms = c->header_timeout_ms,
                                   .body_timeout_ms = c->body_timeout_ms};
    struct kiln_http_tls tls = {c->tls_cert, c->tls_key};
    struct kiln_http_callbacks cb = {
        .on_headers = kiln_api_on_headers, .on_request = kiln_api_on_request, .ctx = s};
    if ((rc = kiln_http_server_start(loop, addr, port, &lim, c->tls_cert[0] ? &tls : NULL, cb,
                                     &s->http))) {
        rc = kiln_fail(err, rc, "cannot listen on %s (%s)", c->listen, kiln_strerror(rc));
        goto fail;
    }
    if (uv_timer_init(loop, &s->tick)) {
        rc = kiln_fail(err, KILN_EIO, "cannot create the housekeeping timer");
        goto fail;
    }
    s->tick.data = s;
    uv_timer_start(&s->tick, on_tick, c->tick_ms, c->tick_ms);
    for (const struct kiln_serve_feature *const *f = c->features; f && *f; f++) {
        if (s->nfeatures == KILN_SERVE_MAX_FEATURES) {
            rc = kiln_fail(err, KILN_ELIMIT, "more than %d features", KILN_SERVE_MAX_FEATURES);
            goto fail;
        }
        void *st = NULL;
        if ((rc = (*f)->init(s, c->raw, &st, err))) goto fail;
        s->feature_state[s->nfeatures++] = st;
    }
    return KILN_OK;
fail:
    kiln_server_shutdown(s);
    kiln_server_cleanup(s);
    return rc;
}

void kiln_server_shutdown(struct kiln_server *s)
{
    if (s->stopping) return;
    s->stopping = 1;
    /* Features stop in reverse order, before the core they rely on. */
    for (int i = s->nfeatures - 1; i >= 0; i--)
        if (s->cfg.features[i]->stop) s->cfg.features[i]->stop(s, s->feature_state[i]);
    if (s->dispatch) kiln_dispatch_flush(s->dispatch);
    if (s->events) kiln_events_free(s->events);
    s->events = NULL;
    if (s->logs) kiln_logs_free(s->logs);
    s->logs = NULL;
    if (s->dispatch) kiln_dispatch_free(s->dispatch);
    s->dispatch = NULL;
    if (s->http) kiln_http_server_stop(s->http);
    s->http = NULL;
    if (s->tick.data) {
        uv_timer_stop(&s->tick);
        uv_close((uv_handle_t *)&s->tick, NULL);
    }
}

void kiln_server_cleanup(struct kiln_server *s)
{
    for (int i = s->nfeatures - 1; i >= 0; i--)
        if (s->cfg.features[i]->cleanup) s->cfg.features[i]->cleanup(s->feature_state[i]);
    s->nfeatures = 0;
    kiln_store_close(s->st);
    s->st = NULL;
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct kiln_server *s = h->data;
    kiln_log(&s->log, KILN_LOG_INFO, "signal %d: stopping", signum);
    kiln_server_shutdown(s);
    uv_signal_stop(&s->sigint);
    uv_signal_stop(&s->sigterm);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

int kiln_serve_run(const struct kiln_serve_config *c, struct kiln_error *err)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop)) return kiln_fail(err, KILN_EIO, "cannot create the event loop");
    struct kiln_server *s = calloc(1, sizeof *s);
    if (!s) {
        uv_loop_close(&loop);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    int rc = kiln_server_init(s, &loop, c, err);
    if (rc) {
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        free(s);
        return rc;
    }
    uv_signal_init(&loop, &s->sigint);
    uv_signal_init(&loop, &s->sigterm);
    s->sigint.data = s;
    s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    kiln_log(&s->log, KILN_LOG_INFO, "listening on %s (port %d), data in %s", c->listen,
             kiln_http_server_port(s->http), c->data_dir);
    uv_run(&loop, UV_RUN_DEFAULT);
    kiln_server_cleanup(s);
    if (uv_loop_close(&loop) == UV_EBUSY) {
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    kiln_log(&s->log, KILN_LOG_INFO, "stopped");
    free(s);
    return KILN_OK;
}
