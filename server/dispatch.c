/* dispatch.c - lease long-polls, the matcher, and wait reasons. */
#include "server/dispatch.h"

#include "common/isa.h"
#include "scheduler/placement.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CANDIDATES 256

struct kiln_waiter {
    struct kiln_dispatch *d;
    struct kiln_waiter *next, *prev;
    int64_t worker_id;
    struct kiln_offer offer;
    kiln_waiter_cb cb;
    void *arg;
    uv_timer_t timer;
    int linked;
};

struct kiln_dispatch {
    uv_loop_t *loop;
    struct kiln_jobs *j;
    struct kiln_policy pol;
    kiln_lease_fn lease_fn;
    void *lease_ctx;
    struct kiln_waiter *head, *tail;
    int nwaiting;
    uv_timer_t kick_timer;
    uv_timer_t wake_timer;
    int kick_pending;
    int closing;
    int handles_open;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int sm_num(const char *sm)
{
    return atoi(sm);
}

static int gpu_fits(const struct kiln_gpu_info *g, const struct kiln_stage_needs *n)
{
    if (!n->gpu_sm[0]) return 1;
    if (strcmp(g->sm, n->gpu_sm)) {
        if (!n->sm_compat) return 0;
        int have = sm_num(g->sm), need = sm_num(n->gpu_sm);
        if (have / 10 != need / 10 || have < need) return 0;
    }
    if (n->driver_min > 0 && g->driver_major > 0 && g->driver_major < n->driver_min) return 0;
    return 1;
}

static int gpu_offered(const struct kiln_worker_info *w, const struct kiln_offer *o, int index)
{
    if (index < 32 && (w->gpus_used & (1u << index))) return 0;
    if (!o || !o->gpus_given) return 1;
    for (int i = 0; i < o->nfree_gpus; i++)
        if (o->free_gpus[i] == index) return 1;
    return 0;
}

/* Static capability (ignoring what is in use): could w ever run n? */
static int host_capable(const struct kiln_worker_info *w, const struct kiln_stage_needs *n,
                        int *gpu_ok)
{
    if (strcmp(w->platform, n->platform)) return 0;
    if (n->isa[0]) {
        uint32_t need = kiln_isa_level_features(n->isa);
        if (need && !kiln_isa_satisfies(w->isa_mask, need)) return 0;
    }
    int any = !n->gpu_sm[0];
    for (int i = 0; i < w->ngpus && !any; i++)
        if (gpu_fits(&w->gpus[i], n)) any = 1;
    if (gpu_ok) *gpu_ok = any;
    return any;
}

/* First-fit matcher: the fallback if placement itself fails. */
static int match_first_fit(struct kiln_jobs *j, const struct kiln_worker_info *w,
                           const struct kiln_offer *o, double now, int64_t *job_id, int *gpu_index,
                           struct kiln_error *err)
{
    *job_id = 0;
    *gpu_index = -1;
    if (strcmp(w->state, "online") || w->drain || w->mem_pressure) return KILN_OK;
    int64_t free_cores = w->cores - w->cores_used;
    int64_t free_ram = w->ram_mb - w->ram_used_mb;
    if (o && o->free_cores >= 0 && o->free_cores < free_cores) free_cores = o->free_cores;
    if (o && o->free_ram_mb >= 0 && o->free_ram_mb < free_ram) free_ram = o->free_ram_mb;
    if (free_cores <= 0 || free_ram <= 0) return KILN_OK;
    int64_t *ids = malloc(MAX_CANDIDATES * sizeof *ids);
    if (!ids) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    int n;
    int rc = kiln_jobs_runnable(j, now, ids, MAX_CANDIDATES, &n, err);
    for (int i = 0; !rc && i < n; i++) {
        struct kiln_stage_needs nd;
        if ((rc = kiln_jobs_needs(j, ids[i], &nd, err))) break;
        if (nd.cores > free_cores || nd.ram_mb > free_ram) continue;
        if (!host_capable(w, &nd, NULL)) continue;
        int gi = -1;
        if (nd.gpu_sm[0]) {
            for (int g = 0; g < w->ngpus; g++) {
                if (gpu_fits(&w->gpus[g], &nd) && gpu_offered(w, o, w->gpus[g].index)) {
                    gi = w->gpus[g].index;
                    break;
                }
            }
            if (gi < 0) continue;
        }
        *job_id = ids[i];
        *gpu_index = gi;
        break;
    }
    free(ids);
    return rc;
}

static void to_pworker(const struct kiln_worker_info *w, const struct kiln_offer *o,
                       struct kiln_pworker *pw)
{
    memset(pw, 0, sizeof *pw);
    pw->id = w->id;
    snprintf(pw->name, sizeof pw->name, "%.*s", (int)sizeof pw->name - 1, w->name);
    snprintf(pw->platform, sizeof pw->platform, "%.*s", (int)sizeof pw->platform - 1, w->platform);
    pw->cores_total = w->cores;
    pw->ram_total_mb = w->ram_mb;
    int64_t fc = w->cores - w->cores_used, fr = w->ram_mb - w->ram_used_mb;
    if (o && o->free_cores >= 0 && o->free_cores < fc) fc = o->free_cores;
    if (o && o->free_ram_mb >= 0 && o->free_ram_mb < fr) fr = o->free_ram_mb;
    pw->cores_free = fc > 0 ? (int)fc : 0;
    pw->ram_free_mb = fr > 0 ? fr : 0;
    pw->isa = w->isa_mask;
    for (int g = 0; g < w->ngpus && g < KILN_PLACE_MAX_GPUS; g++) {
        struct kiln_pgpu *pg = &pw->gpus[pw->ngpus++];
        pg->index = w->gpus[g].index;
        snprintf(pg->sm, sizeof pg->sm, "%.*s", (int)sizeof pg->sm - 1, w->gpus[g].sm);
        pg->driver = w->gpus[g].driver_major;
        pg->busy = !gpu_offered(w, o, w->gpus[g].index);
    }
    pw->state = !strcmp(w->state, "online")     ? (w->drain ? KILN_PW_DRAINING : KILN_PW_ONLINE)
                : !strcmp(w->state, "draining") ? KILN_PW_DRAINING
                : !strcmp(w->state, "lost")     ? KILN_PW_LOST
                                                : KILN_PW_OFFLINE;
    pw->healthy = !w->mem_pressure;
    /* A lease answer carries one job: the next item in the same pass must
     * go to another asking worker, not wait for this one to ask again. */
    pw->max_new = 1;
}

struct offer_ref {
    int64_t worker_id;
    const struct kiln_offer *offer;
};

/* One placement: the runnable jobs (with their needs, one query) over the
 * online workers in offers, each with what it offers. */
static int plan(struct kiln_jobs *j, const struct kiln_policy *pol, const struct offer_ref *offers,
                int noffers, double now, struct kiln_assignment **out, size_t *nout,
                struct kiln_error *err)
{
    *out = NULL;
    *nout = 0;
    struct kiln_stage_needs *nds = malloc(MAX_CANDIDATES * sizeof *nds);
    struct kiln_worker_info *ws = NULL;
    struct kiln_placer *pl = NULL;
    struct kiln_assignment *as = NULL;
    int nw = 0, n = 0, rc;
    if (!nds) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    if ((rc = kiln_jobs_runnable_needs(j, now, nds, MAX_CANDIDATES, &n, err)) || n == 0) goto out;
    if ((rc = kiln_registry_all(j, &ws, &nw, err))) goto out;
    if ((rc = kiln_placer_new(pol, &pl, err))) goto out;
    for (int i = 0; i < nw; i++) {
        if (strcmp(ws[i].state, "online") || ws[i].drain || ws[i].mem_pressure) continue;
        /* Only workers asking for work now: a job given to a busy host
         * would wait while an idle one asks (agents keep a lease open
         * whenever they have room, so "asking" means "has room"). */
        const struct kiln_offer *o = NULL;
        int asking = 0;
        for (int k = 0; k < noffers; k++)
            if (offers[k].worker_id == ws[i].id) {
                o = offers[k].offer;
                asking = 1;
            }
        if (!asking) continue;
        struct kiln_pworker pw;
        to_pworker(&ws[i], o, &pw);
        if ((rc = kiln_placer_set_worker(pl, &pw, err))) goto out;
    }
    for (int i = 0; i < n; i++) {
        struct kiln_stage_needs *nd = &nds[i];
        struct kiln_pitem it;
        memset(&it, 0, sizeof it);
        it.job_id = nd->job;
        it.stage = strcmp(nd->stage, "test") ? KILN_PSTAGE_BUILD : KILN_PSTAGE_TEST;
        it.priority = nd->priority;
        it.enqueued_at = nd->created_at;
        snprintf(it.platform, sizeof it.platform, "%.*s", (int)sizeof it.platform - 1,
                 nd->platform);
        it.cores = nd->cores;
        it.ram_mb = nd->ram_mb;
        it.isa = nd->isa[0] ? kiln_isa_level_features(nd->isa) : 0;
        snprintf(it.gpu_sm, sizeof it.gpu_sm, "%.*s", (int)sizeof it.gpu_sm - 1, nd->gpu_sm);
        it.sm_compat = nd->sm_compat;
        it.driver_min = nd->driver_min;
        it.est_s = nd->est_s;
        if ((rc = kiln_placer_add(pl, &it, err))) goto out;
    }
    if (!(as = calloc((size_t)n, sizeof *as))) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = kiln_placer_dispatch(pl, now, as, (size_t)n, nout, err))) goto out;
    *out = as;
    as = NULL;
out:
    free(as);
    kiln_placer_free(pl);
    free(ws);
    free(nds);
    return rc;
}

/* The matcher: scheduler/placement.h decides (priority with aging, critical
 * path, best fit, backfill) among the runnable jobs for the workers asking
 * now; a pass over several waiting leases (run_pass) places them together,
 * so a job goes to the waiting host it fits best. */
int kiln_dispatch_match(struct kiln_jobs *j, const struct kiln_worker_info *w,
                        const struct kiln_offer *o, double now, int64_t *job_id, int *gpu_index,
                        struct kiln_error *err)
{
    *job_id = 0;
    *gpu_index = -1;
    if (strcmp(w->state, "online") || w->drain || w->mem_pressure) return KILN_OK;
    struct offer_ref ref = {w->id, o};
    struct kiln_assignment *as;
    size_t n;
    struct kiln_policy pol;
    kiln_policy_default(&pol);
    int rc = plan(j, &pol, &ref, 1, now, &as, &n, err);
    if (rc == KILN_ENOMEM) return rc;
    if (rc) {
        /* Placement refused the snapshot (a bad item): keep serving. */
        struct kiln_error e2 = {0};
        return match_first_fit(j, w, o, now, job_id, gpu_index, &e2);
    }
    for (size_t k = 0; k < n; k++) {
        if (as[k].worker_id == w->id) {
            *job_id = as[k].job_id;
            *gpu_index = as[k].gpu_index;
            break;
        }
    }
    free(as);
    return KILN_OK;
}

static void fmt_ram(char *out, size_t n, int64_t mb)
{
    if (mb % 1024 == 0)
        snprintf(out, n, "%lld GiB", (long long)(mb / 1024));
    else if (mb >= 1024)
        snprintf(out, n, "%.1f GiB", (double)mb / 1024.0);
    else
        snprintf(out, n, "%lld MiB", (long long)mb);
}

void kiln_dispatch_wait_reason(void *ctx, json_t *job, char *out, size_t outlen)
{
    struct kiln_jobs *j = ctx;
    struct kiln_stage_needs nd;
    int64_t id = json_integer_value(json_object_get(job, "id"));
    if (kiln_jobs_needs(j, id, &nd, NULL)) {
        snprintf(out, outlen, "waiting for a worker");
        return;
    }
    struct kiln_worker_info *ws = NULL;
    int nw = 0;
    if (kiln_registry_all(j, &ws, &nw, NULL)) {
        snprintf(out, outlen, "waiting for a worker");
        return;
    }
    char need_ram[32];
    fmt_ram(need_ram, sizeof need_ram, nd.ram_mb);
    char gpu_desc[160] = "";
    if (nd.gpu_sm[0])
        snprintf(gpu_desc, sizeof gpu_desc, " with an SM %s GPU%s%s%s", nd.gpu_sm,
                 nd.isa[0] ? " and CPU ISA " : "", nd.isa, "");
    int online = 0, draining = 0, pressure = 0, capable = 0, big = 0, lost = 0;
    const char *lost_name = NULL;
    int64_t best_free_cores = -1, best_free_ram = 0, max_cores = 0, max_ram = 0;
    for (int i = 0; i < nw; i++) {
        struct kiln_worker_info *w = &ws[i];
        if (strcmp(w->platform, nd.platform)) continue;
        if (!strcmp(w->state, "lost")) {
            int gok;
            if (host_capable(w, &nd, &gok)) {
                lost++;
                if (!lost_name) lost_name = w->name;
            }
            continue;
        }
        if (strcmp(w->state, "online") && strcmp(w->state, "draining")) continue;
        online++;
        if (!host_capable(w, &nd, NULL)) continue;
        capable++;
        if (w->drain || !strcmp(w->state, "draining")) {
            draining++;
            continue;
        }
        if (w->mem_pressure) {
            pressure++;
            continue;
        }
        if (w->cores > max_cores) max_cores = w->cores;
        if (w->ram_mb > max_ram) max_ram = w->ram_mb;
        if (w->cores >= nd.cores && w->ram_mb >= nd.ram_mb) big++;
        int64_t fc = w->cores - w->cores_used, fr = w->ram_mb - w->ram_used_mb;
        if (fc > best_free_cores || (fc == best_free_cores && fr > best_free_ram)) {
            best_free_cores = fc;
            best_free_ram = fr;
        }
    }
    free(ws);
    if (capable == 0 && lost > 0)
        snprintf(out, outlen, "waiting for worker %s (%s%s) to come back; it was lost", lost_name,
                 nd.platform, gpu_desc);
    else if (online == 0)
        snprintf(out, outlen, "no online worker for %s", nd.platform);
    else if (capable == 0)
        snprintf(out, outlen, "no online %s worker%s", nd.platform,
                 gpu_desc[0] ? gpu_desc : " that can run it");
    else if (draining == capable)
        snprintf(out, outlen, "every %s worker that can run it is draining", nd.platform);
    else if (pressure + draining == capable)
        snprintf(out, outlen, "the %s workers that can run it are under memory pressure",
                 nd.platform);
    else if (big == 0) {
        char have[32];
        fmt_ram(have, sizeof have, max_ram);
        snprintf(out, outlen, "needs %d cores and %s on %s; biggest host has %lld cores and %s",
                 nd.cores, need_ram, nd.platform, (long long)max_cores, have);
    } else if (best_free_cores < nd.cores || best_free_ram < nd.ram_mb) {
        char have[32];
        fmt_ram(have, sizeof have, best_free_ram > 0 ? best_free_ram : 0);
        snprintf(out, outlen, "needs %d cores and %s on %s; best host has %lld cores and %s free",
                 nd.cores, need_ram, nd.platform,
                 (long long)(best_free_cores > 0 ? best_free_cores : 0), have);
    } else if (nd.gpu_sm[0])
        snprintf(out, outlen, "waiting for a free SM %s GPU on %s", nd.gpu_sm, nd.platform);
    else
        snprintf(out, outlen, "ready; waiting for a %s worker to ask for work", nd.platform);
}

/* --- waiters --- */

static void link_waiter(struct kiln_dispatch *d, struct kiln_waiter *w)
{
    w->prev = d->tail;
    w->next = NULL;
    if (d->tail)
        d->tail->next = w;
    else
        d->head = w;
    d->tail = w;
    w->linked = 1;
    d->nwaiting++;
}

static void unlink_waiter(struct kiln_dispatch *d, struct kiln_waiter *w)
{
    if (!w->linked) return;
    if (w->prev)
        w->prev->next = w->next;
    else
        d->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        d->tail = w->prev;
    w->linked = 0;
    d->nwaiting--;
}

static void waiter_closed(uv_handle_t *h)
{
    free(h->data);
}

static void release_waiter(struct kiln_dispatch *d, struct kiln_waiter *w)
{
    unlink_waiter(d, w);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

static void answer(struct kiln_dispatch *d, struct kiln_waiter *w, int status, json_t *body)
{
    kiln_waiter_cb cb = w->cb;
    void *arg = w->arg;
    release_waiter(d, w);
    cb(arg, status, body);
}

static void on_waiter_timeout(uv_timer_t *t)
{
    struct kiln_waiter *w = t->data;
    answer(w->d, w, 204, NULL);
}

/* Try to lease something to worker_id. 1 = leased (*lease set), 0 = none. */
static int try_match(struct kiln_dispatch *d, int64_t worker_id, const struct kiln_offer *o,
                     json_t **lease, struct kiln_error *err)
{
    *lease = NULL;
    struct kiln_worker_info w;
    int rc = kiln_registry_get(d->j, worker_id, &w, err);
    if (rc) return rc;
    for (int tries = 0; tries < 4; tries++) {
        int64_t job;
        int gpu;
        if ((rc = kiln_dispatch_match(d->j, &w, o, now_s(), &job, &gpu, err))) return rc;
        if (!job) return 0;
        json_t *l = NULL;
        rc = d->lease_fn(d->lease_ctx, job, worker_id, gpu, &l, err);
        if (rc == KILN_ESTATE) continue; /* raced with a cancel: pick again */
        if (rc) return rc;
        *lease = json_pack("{s:o}", "job", l);
        if (!*lease) return kiln_fail(err, KILN_ENOMEM, "out of memory");
        return 1;
    }
    return 0;
}

static void on_wake(uv_timer_t *t);

static void arm_wakeup(struct kiln_dispatch *d)
{
    if (d->closing || !d->head) return;
    double now = now_s();
    double t = kiln_jobs_next_wakeup(d->j, now);
    if (t <= 0) return;
    double ms = (t - now) * 1000.0 + 5;
    if (ms < 1) ms = 1;
    uv_timer_start(&d->wake_timer, on_wake, (uint64_t)ms, 0);
}

static void run_pass(struct kiln_dispatch *d)
{
    d->kick_pending = 0;
    if (!d->head) return;
    /* One placement for every waiting worker (not one per waiter). */
    struct offer_ref refs[256];
    int nrefs = 0;
    for (struct kiln_waiter *w = d->head; w && nrefs < 256; w = w->next)
        refs[nrefs++] = (struct offer_ref){w->worker_id, &w->offer};
    struct kiln_assignment *as = NULL;
    size_t n = 0;
    struct kiln_error err = {0};
    double now = now_s();
    if (plan(d->j, &d->pol, refs, nrefs, now, &as, &n, &err) == KILN_OK) {
        for (size_t k = 0; k < n; k++) {
            struct kiln_waiter *w = d->head;
            while (w && w->worker_id != as[k].worker_id)
                w = w->next;
            if (!w) continue; /* that worker is busy; it gets it when it asks */
            json_t *l = NULL;
            struct kiln_error e2 = {0};
            if (d->lease_fn(d->lease_ctx, as[k].job_id, w->worker_id, as[k].gpu_index, &l, &e2))
                continue;
            json_t *lease = json_pack("{s:o}", "job", l);
            if (lease) answer(d, w, 200, lease);
        }
        free(as);
    } else {
        /* Placement failed: fall back to matching waiter by waiter. */
        struct kiln_waiter *w = d->head;
        while (w) {
            struct kiln_waiter *next = w->next;
            json_t *lease;
            struct kiln_error e3 = {0};
            int rc = try_match(d, w->worker_id, &w->offer, &lease, &e3);
            if (rc == 1)
                answer(d, w, 200, lease);
            else if (rc == KILN_ENOTFOUND)
                answer(d, w, 204, NULL);
            else if (rc < 0)
                break;
            w = next;
        }
    }
    arm_wakeup(d);
}

static void on_kick(uv_timer_t *t)
{
    run_pass(t->data);
}

static void on_wake(uv_timer_t *t)
{
    run_pass(t->data);
}

int kiln_dispatch_policy_load(json_t *config, struct kiln_policy *pol, struct kiln_error *err)
{
    kiln_policy_default(pol);
    json_t *sec = config ? json_object_get(config, "placement") : NULL;
    if (!sec || json_is_null(sec)) return KILN_OK;
    if (!json_is_object(sec))
        return kiln_fail(err, KILN_EINVAL, "config: placement must be a mapping (host_policy)");
    const char *k;
    json_t *v;
    json_object_foreach(sec, k, v)
    {
        if (strcmp(k, "host_policy"))
            return kiln_fail(err, KILN_EINVAL, "config: unknown placement setting '%.64s'", k);
        if (!json_is_string(v) ||
            kiln_host_policy_parse(json_string_value(v), &pol->host_policy, NULL))
            return kiln_fail(err, KILN_EINVAL,
                             "config: placement.host_policy must be spread or pack");
    }
    return KILN_OK;
}

int kiln_dispatch_new(uv_loop_t *loop, struct kiln_jobs *j, const struct kiln_policy *pol,
                      kiln_lease_fn lease_fn, void *lease_ctx, struct kiln_dispatch **out,
                      struct kiln_error *err)
{
    struct kiln_dispatch *d = calloc(1, sizeof *d);
    if (!d) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    d->loop = loop;
    d->j = j;
    d->pol = *pol;
    d->lease_fn = lease_fn;
    d->lease_ctx = lease_ctx;
    if (uv_timer_init(loop, &d->kick_timer) || uv_timer_init(loop, &d->wake_timer)) {
        free(d);
        return kiln_fail(err, KILN_EIO, "cannot create dispatch timers");
    }
    d->kick_timer.data = d;
    d->wake_timer.data = d;
    d->handles_open = 2;
    *out = d;
    return KILN_OK;
}

static void dispatch_handle_closed(uv_handle_t *h)
{
    struct kiln_dispatch *d = h->data;
    if (--d->handles_open == 0) free(d);
}

void kiln_dispatch_flush(struct kiln_dispatch *d)
{
    while (d->head)
        answer(d, d->head, 204, NULL);
}

void kiln_dispatch_free(struct kiln_dispatch *d)
{
    if (!d) return;
    d->closing = 1;
    while (d->head)
        release_waiter(d, d->head);
    uv_timer_stop(&d->kick_timer);
    uv_timer_stop(&d->wake_timer);
    uv_close((uv_handle_t *)&d->kick_timer, dispatch_handle_closed);
    uv_close((uv_handle_t *)&d->wake_timer, dispatch_handle_closed);
}

int kiln_dispatch_waiting(const struct kiln_dispatch *d)
{
    return d->nwaiting;
}

struct kiln_waiter *kiln_dispatch_wait(struct kiln_dispatch *d, int64_t worker_id,
                                       const struct kiln_offer *o, unsigned wait_ms,
                                       kiln_waiter_cb cb, void *arg)
{
    json_t *lease;
    struct kiln_error err = {0};
    int rc = try_match(d, worker_id, o, &lease, &err);
    if (rc == 1) {
        cb(arg, 200, lease);
        return NULL;
    }
    if (rc < 0 && rc != KILN_ENOTFOUND) {
        cb(arg, 503,
           json_pack("{s:{s:s,s:s}}", "error", "code", kiln_code_name(rc), "message", err.msg));
        return NULL;
    }
    if (wait_ms == 0 || d->closing || rc == KILN_ENOTFOUND) {
        cb(arg, 204, NULL);
        return NULL;
    }
    struct kiln_waiter *w = calloc(1, sizeof *w);
    if (!w || uv_timer_init(d->loop, &w->timer)) {
        free(w);
        cb(arg, 503,
           json_pack("{s:{s:s,s:s}}", "error", "code", "out_of_memory", "message",
                     "cannot queue the lease request"));
        return NULL;
    }
    w->d = d;
    w->worker_id = worker_id;
    w->offer = *o;
    w->cb = cb;
    w->arg = arg;
    w->timer.data = w;
    link_waiter(d, w);
    uv_timer_start(&w->timer, on_waiter_timeout, wait_ms, 0);
    arm_wakeup(d);
    return w;
}

void kiln_dispatch_unwait(struct kiln_dispatch *d, struct kiln_waiter *w)
{
    if (w) release_waiter(d, w);
}

void kiln_dispatch_kick(struct kiln_dispatch *d)
{
    if (d->closing || d->kick_pending || !d->head) return;
    d->kick_pending = 1;
    uv_timer_start(&d->kick_timer, on_kick, 0, 0);
}

void kiln_dispatch_wake_cancel(struct kiln_dispatch *d, int64_t worker_id, int64_t job_id)
{
    for (struct kiln_waiter *w = d->head; w; w = w->next) {
        if (w->worker_id == worker_id) {
            answer(d, w, 200, json_pack("{s:[I]}", "cancel", (json_int_t)job_id));
            return;
        }
    }
}

void kiln_dispatch_touch_waiting(struct kiln_dispatch *d, double now)
{
    for (struct kiln_waiter *w = d->head; w; w = w->next) {
        sqlite3_stmt *s;
        if (kiln_store_stmt(d->j->st,
                            "UPDATE workers SET last_seen = MAX(last_seen, ?) WHERE id = ? AND "
                            "state IN ('online','draining')",
                            &s, NULL))
            return;
        sqlite3_bind_double(s, 1, now);
        sqlite3_bind_int64(s, 2, w->worker_id);
        sqlite3_step(s);
        sqlite3_reset(s);
    }
}
