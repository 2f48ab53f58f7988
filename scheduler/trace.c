/* trace.c - see trace.h: placer input events, their JSON form, replay. */
#include "scheduler/trace.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const KIND_NAMES[] = {"policy", "worker", "gone",     "add",
                                         "remove", "finish", "dispatch", "decide"};
#define NKINDS (sizeof KIND_NAMES / sizeof KIND_NAMES[0])

/* ---------- encode ---------- */

static json_t *worker_json(const struct kiln_pworker *w)
{
    json_t *gpus = json_array();
    for (int g = 0; gpus && g < w->ngpus; g++)
        json_array_append_new(gpus, json_pack("{s:i,s:s,s:i,s:b}", "index", w->gpus[g].index, "sm",
                                              w->gpus[g].sm, "driver", w->gpus[g].driver, "busy",
                                              w->gpus[g].busy));
    return json_pack("{s:I,s:s,s:s,s:i,s:i,s:I,s:I,s:I,s:i,s:i,s:i,s:i,s:o*}", "id",
                     (json_int_t)w->id, "name", w->name, "platform", w->platform, "cores_total",
                     w->cores_total, "cores_free", w->cores_free, "ram_total_mb",
                     (json_int_t)w->ram_total_mb, "ram_free_mb", (json_int_t)w->ram_free_mb, "isa",
                     (json_int_t)w->isa, "state", w->state, "healthy", w->healthy, "no_builds",
                     w->no_builds, "max_new", w->max_new, "gpus", gpus);
}

static json_t *item_json(const struct kiln_pitem *it)
{
    return json_pack("{s:I,s:i,s:i,s:f,s:s,s:i,s:I,s:I,s:s,s:i,s:i,s:f,s:f}", "job",
                     (json_int_t)it->job_id, "stage", it->stage, "priority", it->priority,
                     "enqueued_at", it->enqueued_at, "platform", it->platform, "cores", it->cores,
                     "ram_mb", (json_int_t)it->ram_mb, "isa", (json_int_t)it->isa, "gpu_sm",
                     it->gpu_sm, "sm_compat", it->sm_compat, "driver_min", it->driver_min, "est_s",
                     it->est_s, "crit_s", it->crit_s);
}

json_t *kiln_trace_to_json(const struct kiln_trace_event *ev)
{
    if (ev->kind < 0 || (size_t)ev->kind >= NKINDS) return NULL;
    const char *k = KIND_NAMES[ev->kind];
    switch (ev->kind) {
    case KILN_TEV_POLICY:
        return json_pack("{s:s,s:i,s:f,s:i,s:s}", "ev", k, "mode", ev->pol.mode, "aging_per_hour",
                         ev->pol.aging_per_hour, "backfill", ev->pol.backfill, "host_policy",
                         kiln_host_policy_name(ev->pol.host_policy));
    case KILN_TEV_WORKER:
        return json_pack("{s:s,s:f,s:o*}", "ev", k, "t", ev->t, "w", worker_json(&ev->w));
    case KILN_TEV_GONE:
        return json_pack("{s:s,s:f,s:I}", "ev", k, "t", ev->t, "worker", (json_int_t)ev->worker_id);
    case KILN_TEV_ADD:
        return json_pack("{s:s,s:f,s:o*}", "ev", k, "t", ev->t, "it", item_json(&ev->it));
    case KILN_TEV_REMOVE:
    case KILN_TEV_FINISH:
        return json_pack("{s:s,s:f,s:I,s:i}", "ev", k, "t", ev->t, "job", (json_int_t)ev->job_id,
                         "stage", ev->stage);
    case KILN_TEV_DISPATCH:
        return json_pack("{s:s,s:f}", "ev", k, "t", ev->t);
    default:
        return json_pack("{s:s,s:I,s:i,s:I,s:i}", "ev", k, "job", (json_int_t)ev->job_id, "stage",
                         ev->stage, "worker", (json_int_t)ev->worker_id, "gpu", ev->gpu_index);
    }
}

/* ---------- decode ---------- */

static int get_i64(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   struct kiln_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return kiln_fail(err, KILN_EINVAL, "trace: %s must be an integer from %lld to %lld", key,
                         (long long)lo, (long long)hi);
    *out = json_integer_value(v);
    return KILN_OK;
}

static int get_int(json_t *o, const char *key, int lo, int hi, int *out, struct kiln_error *err)
{
    int64_t v;
    int rc = get_i64(o, key, lo, hi, &v, err);
    if (!rc) *out = (int)v;
    return rc;
}

static int get_num(json_t *o, const char *key, double *out, struct kiln_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return kiln_fail(err, KILN_EINVAL, "trace: %s must be a finite number", key);
    *out = json_number_value(v);
    return KILN_OK;
}

static int get_str(json_t *o, const char *key, char *buf, size_t len, struct kiln_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) >= len)
        return kiln_fail(err, KILN_EINVAL, "trace: %s must be a string of at most %zu bytes", key,
                         len - 1);
    memcpy(buf, json_string_value(v), json_string_length(v) + 1);
    return KILN_OK;
}

#define I32 2147483647
#define I64 INT64_MAX

static int worker_from(json_t *o, struct kiln_pworker *w, struct kiln_error *err)
{
    memset(w, 0, sizeof *w);
    int64_t isa = 0;
    int rc;
    if (!json_is_object(o)) return kiln_fail(err, KILN_EINVAL, "trace: w must be an object");
    if ((rc = get_i64(o, "id", 0, I64, &w->id, err)) ||
        (rc = get_str(o, "name", w->name, sizeof w->name, err)) ||
        (rc = get_str(o, "platform", w->platform, sizeof w->platform, err)) ||
        (rc = get_int(o, "cores_total", 0, I32, &w->cores_total, err)) ||
        (rc = get_int(o, "cores_free", -I32, I32, &w->cores_free, err)) ||
        (rc = get_i64(o, "ram_total_mb", 0, I64, &w->ram_total_mb, err)) ||
        (rc = get_i64(o, "ram_free_mb", -I64, I64, &w->ram_free_mb, err)) ||
        (rc = get_i64(o, "isa", 0, UINT32_MAX, &isa, err)) ||
        (rc = get_int(o, "state", 0, KILN_PW_OFFLINE, &w->state, err)) ||
        (rc = get_int(o, "healthy", 0, 1, &w->healthy, err)) ||
        (rc = get_int(o, "no_builds", 0, 1, &w->no_builds, err)) ||
        (rc = get_int(o, "max_new", -1, I32, &w->max_new, err)))
        return rc;
    w->isa = (uint32_t)isa;
    json_t *gpus = json_object_get(o, "gpus");
    if (!json_is_array(gpus) || json_array_size(gpus) > KILN_PLACE_MAX_GPUS)
        return kiln_fail(err, KILN_EINVAL, "trace: gpus must be an array of at most %d",
                         KILN_PLACE_MAX_GPUS);
    size_t i;
    json_t *g;
    json_array_foreach(gpus, i, g)
    {
        struct kiln_pgpu *pg = &w->gpus[w->ngpus++];
        json_t *busy = json_object_get(g, "busy");
        if (!json_is_object(g) || !json_is_boolean(busy))
            return kiln_fail(err, KILN_EINVAL, "trace: each gpu needs index, sm, driver, busy");
        pg->busy = json_is_true(busy);
        if ((rc = get_int(g, "index", 0, I32, &pg->index, err)) ||
            (rc = get_str(g, "sm", pg->sm, sizeof pg->sm, err)) ||
            (rc = get_int(g, "driver", 0, I32, &pg->driver, err)))
            return rc;
    }
    return KILN_OK;
}

static int item_from(json_t *o, struct kiln_pitem *it, struct kiln_error *err)
{
    memset(it, 0, sizeof *it);
    int64_t isa = 0;
    int rc;
    if (!json_is_object(o)) return kiln_fail(err, KILN_EINVAL, "trace: it must be an object");
    if ((rc = get_i64(o, "job", 0, I64, &it->job_id, err)) ||
        (rc = get_int(o, "stage", 0, 1, &it->stage, err)) ||
        (rc = get_int(o, "priority", -I32, I32, &it->priority, err)) ||
        (rc = get_num(o, "enqueued_at", &it->enqueued_at, err)) ||
        (rc = get_str(o, "platform", it->platform, sizeof it->platform, err)) ||
        (rc = get_int(o, "cores", 0, I32, &it->cores, err)) ||
        (rc = get_i64(o, "ram_mb", 0, I64, &it->ram_mb, err)) ||
        (rc = get_i64(o, "isa", 0, UINT32_MAX, &isa, err)) ||
        (rc = get_str(o, "gpu_sm", it->gpu_sm, sizeof it->gpu_sm, err)) ||
        (rc = get_int(o, "sm_compat", 0, 1, &it->sm_compat, err)) ||
        (rc = get_int(o, "driver_min", 0, I32, &it->driver_min, err)) ||
        (rc = get_num(o, "est_s", &it->est_s, err)) ||
        (rc = get_num(o, "crit_s", &it->crit_s, err)))
        return rc;
    it->isa = (uint32_t)isa;
    return KILN_OK;
}

int kiln_trace_from_json(json_t *o, struct kiln_trace_event *ev, struct kiln_error *err)
{
    memset(ev, 0, sizeof *ev);
    const char *k = json_string_value(json_object_get(o, "ev"));
    if (!json_is_object(o) || !k)
        return kiln_fail(err, KILN_EINVAL, "trace: a line must be an object with \"ev\"");
    size_t kind = 0;
    while (kind < NKINDS && strcmp(KIND_NAMES[kind], k))
        kind++;
    if (kind == NKINDS) return kiln_fail(err, KILN_EINVAL, "trace: unknown event '%.32s'", k);
    ev->kind = (int)kind;
    int rc = KILN_OK;
    if (kind != KILN_TEV_POLICY && kind != KILN_TEV_DECIDE && (rc = get_num(o, "t", &ev->t, err)))
        return rc;
    char host[16];
    switch (ev->kind) {
    case KILN_TEV_POLICY:
        if ((rc = get_int(o, "mode", 0, KILN_POLICY_EASY, &ev->pol.mode, err)) ||
            (rc = get_num(o, "aging_per_hour", &ev->pol.aging_per_hour, err)) ||
            (rc = get_int(o, "backfill", 0, 1, &ev->pol.backfill, err)) ||
            (rc = get_str(o, "host_policy", host, sizeof host, err)))
            return rc;
        return kiln_host_policy_parse(host, &ev->pol.host_policy, err);
    case KILN_TEV_WORKER:
        return worker_from(json_object_get(o, "w"), &ev->w, err);
    case KILN_TEV_GONE:
        return get_i64(o, "worker", 0, I64, &ev->worker_id, err);
    case KILN_TEV_ADD:
        return item_from(json_object_get(o, "it"), &ev->it, err);
    case KILN_TEV_DISPATCH:
        return KILN_OK;
    default:
        if (ev->kind == KILN_TEV_DECIDE &&
            ((rc = get_i64(o, "worker", 0, I64, &ev->worker_id, err)) ||
             (rc = get_int(o, "gpu", -1, I32, &ev->gpu_index, err))))
            return rc;
        if ((rc = get_i64(o, "job", 0, I64, &ev->job_id, err)) ||
            (rc = get_int(o, "stage", 0, 1, &ev->stage, err)))
            return rc;
        return KILN_OK;
    }
}

/* ---------- apply ---------- */

int kiln_trace_apply(struct kiln_placer *p, const struct kiln_trace_event *ev,
                     struct kiln_assignment *out, size_t cap, size_t *nout, struct kiln_error *err)
{
    *nout = 0;
    switch (ev->kind) {
    case KILN_TEV_WORKER:
        return kiln_placer_set_worker(p, &ev->w, err);
    case KILN_TEV_GONE:
        kiln_placer_remove_worker(p, ev->worker_id);
        return KILN_OK;
    case KILN_TEV_ADD:
        return kiln_placer_add(p, &ev->it, err);
    case KILN_TEV_REMOVE:
        kiln_placer_remove(p, ev->job_id, ev->stage);
        return KILN_OK;
    case KILN_TEV_FINISH:
        kiln_placer_finish(p, ev->job_id, ev->stage);
        return KILN_OK;
    case KILN_TEV_DISPATCH:
        return kiln_placer_dispatch(p, ev->t, out, cap, nout, err);
    default:
        return kiln_fail(err, KILN_EINVAL, "trace: %s is not an input event",
                         ev->kind >= 0 && (size_t)ev->kind < NKINDS ? KIND_NAMES[ev->kind] : "?");
    }
}

/* ---------- replay ---------- */

struct kiln_replay {
    struct kiln_placer *pl;
    struct kiln_assignment *got; /* the last dispatch's decisions */
    size_t ngot, capgot, next;   /* next: how many DECIDE lines matched so far */
    int in_dispatch;
    int host_policy; /* -1: the recorded one; else what kiln_replay_set_host_policy set */
    struct kiln_replay_stats st;
};

int kiln_replay_new(struct kiln_replay **out, struct kiln_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    (*out)->host_policy = -1;
    return KILN_OK;
}

void kiln_replay_set_host_policy(struct kiln_replay *r, int host_policy)
{
    r->host_policy = host_policy;
}

void kiln_replay_free(struct kiln_replay *r)
{
    if (!r) return;
    kiln_placer_free(r->pl);
    free(r->got);
    free(r);
}

static void mismatch(struct kiln_replay *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void mismatch(struct kiln_replay *r, const char *fmt, ...)
{
    if (r->st.mismatches++) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->st.first_mismatch, sizeof r->st.first_mismatch, fmt, ap);
    va_end(ap);
}

/* The recorded decisions of the last dispatch are all in: any the replay
 * made beyond them is a mismatch too. */
static void close_dispatch(struct kiln_replay *r)
{
    if (!r->in_dispatch) return;
    r->in_dispatch = 0;
    for (size_t i = r->next; i < r->ngot; i++)
        mismatch(r,
                 "dispatch %zu: the replay also placed job %lld on worker %lld, the service "
                 "did not",
                 r->st.dispatches, (long long)r->got[i].job_id, (long long)r->got[i].worker_id);
}

int kiln_replay_line(struct kiln_replay *r, json_t *line, struct kiln_error *err)
{
    struct kiln_trace_event ev;
    int rc = kiln_trace_from_json(line, &ev, err);
    if (rc) return rc;
    if (ev.kind == KILN_TEV_POLICY) {
        /* a later policy line is a reset: the service started over */
        close_dispatch(r);
        kiln_placer_free(r->pl);
        r->pl = NULL;
        if (r->host_policy >= 0) ev.pol.host_policy = r->host_policy;
        return kiln_placer_new(&ev.pol, &r->pl, err);
    }
    if (!r->pl) return kiln_fail(err, KILN_EINVAL, "trace: the first line must be the policy");
    if (ev.kind == KILN_TEV_DECIDE) {
        if (!r->in_dispatch)
            return kiln_fail(err, KILN_EINVAL, "trace: a decision outside a dispatch");
        r->st.decisions++;
        const struct kiln_assignment *a = r->next < r->ngot ? &r->got[r->next] : NULL;
        if (!a)
            mismatch(r,
                     "dispatch %zu: the service placed job %lld on worker %lld, the replay "
                     "placed nothing more",
                     r->st.dispatches, (long long)ev.job_id, (long long)ev.worker_id);
        else if (a->job_id != ev.job_id || a->stage != ev.stage || a->worker_id != ev.worker_id ||
                 a->gpu_index != ev.gpu_index)
            mismatch(r,
                     "dispatch %zu: the service placed job %lld (stage %d) on worker %lld (gpu "
                     "%d), the replay job %lld (stage %d) on worker %lld (gpu %d)",
                     r->st.dispatches, (long long)ev.job_id, ev.stage, (long long)ev.worker_id,
                     ev.gpu_index, (long long)a->job_id, a->stage, (long long)a->worker_id,
                     a->gpu_index);
        r->next++;
        return KILN_OK;
    }
    close_dispatch(r);
    r->st.events++;
    size_t cap = 0;
    if (ev.kind == KILN_TEV_DISPATCH) {
        cap = kiln_placer_queued(r->pl);
        if (cap > r->capgot) {
            struct kiln_assignment *n = realloc(r->got, cap * sizeof *n);
            if (!n) return kiln_fail(err, KILN_ENOMEM, "out of memory");
            r->got = n;
            r->capgot = cap;
        }
        r->st.dispatches++;
        r->in_dispatch = 1;
        r->next = 0;
    }
    /* Bad inputs the service also saw (e.g. an item the placer refused) are
     * replayed the same way: the result is compared, not the return code. */
    struct kiln_error e2 = {0};
    rc = kiln_trace_apply(r->pl, &ev, r->got, cap, &r->ngot, &e2);
    if (rc == KILN_ENOMEM) return kiln_fail(err, rc, "%s", e2.msg);
    if (ev.kind != KILN_TEV_DISPATCH) r->ngot = 0;
    return KILN_OK;
}

int kiln_replay_end(struct kiln_replay *r, struct kiln_error *err)
{
    (void)err;
    close_dispatch(r);
    return KILN_OK;
}

void kiln_replay_stats(const struct kiln_replay *r, struct kiln_replay_stats *out)
{
    *out = r->st;
}
