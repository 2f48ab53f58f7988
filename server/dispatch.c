/* dispatch.c - lease long-polls, and the glue between the store and the
 * service's one long-lived placer (scheduler/placement.h).
 *
 * No matching rule lives here. Every pass turns what changed in the store
 * into placer input events (scheduler/trace.h) - finish, worker, remove,
 * add, dispatch, in that order, so a worker's free resources always come
 * from the store after the items that ended gave theirs back - applies them
 * with kiln_trace_apply(), and hands each decision to the waiting worker it
 * names. With a trace file the same events go there, and `kiln sim --replay`
 * feeds them to a fresh placer to prove the decisions are the placer's. */
#include "server/dispatch.h"

#include "common/clock.h"
#include "common/isa.h"
#include "scheduler/trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runnable items read per pass: jobs.c returns the head of each resource
 * class (8 per class), so this bounds classes x 8, not the queue. */
#define MAX_CANDIDATES 1024

/* Item keys: (job, stage) as one sortable integer. */
static int64_t ikey(int64_t job, int stage)
{
    return job * 2 + stage;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int has_key(const int64_t *keys, size_t n, int64_t k)
{
    return n && bsearch(&k, keys, n, sizeof k, cmp_i64) != NULL;
}

struct keyset {
    int64_t *k;
    size_t n, cap;
};

static int keyset_push(struct keyset *s, int64_t k)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        int64_t *n = realloc(s->k, nc * sizeof *n);
        if (!n) return KILN_ENOMEM;
        s->k = n;
        s->cap = nc;
    }
    s->k[s->n++] = k;
    return KILN_OK;
}

static void keyset_sort(struct keyset *s)
{
    if (s->n) qsort(s->k, s->n, sizeof *s->k, cmp_i64);
}

/* What asks for work now: a worker's open lease request and its offer. */
struct asking {
    int64_t worker_id;
    const struct kiln_offer *offer;
    int max; /* jobs it takes in this pass */
};

/* The placer and what the glue knows it holds (sorted key sets). */
struct feed {
    struct kiln_jobs *j;
    struct kiln_policy pol; /* the policy the placer runs (and the trace records) */
    struct kiln_placer *pl;
    struct keyset queued;  /* added, not yet placed or removed */
    struct keyset running; /* placed, not yet finished */
    FILE *trace;           /* NULL: not recording */
    struct kiln_assignment *as;
    size_t capas;
    /* critical paths of the unfinished jobs (ids sorted), computed when
     * the newest job id was crit_max_id */
    int64_t *crit_ids;
    double *crit;
    size_t ncrit;
    int64_t crit_max_id;
    int64_t crit_gone; /* failed+cancelled+superseded jobs then (-1: unknown) */
};

static void feed_record(struct feed *f, const struct kiln_trace_event *ev);

static int feed_init(struct feed *f, struct kiln_jobs *j, const struct kiln_policy *pol,
                     FILE *trace, struct kiln_error *err)
{
    memset(f, 0, sizeof *f);
    f->j = j;
    f->pol = *pol;
    f->crit_max_id = -1;
    f->crit_gone = -1;
    f->trace = trace;
    int rc = kiln_placer_new(pol, &f->pl, err);
    if (rc) return rc;
    struct kiln_trace_event ev = {.kind = KILN_TEV_POLICY, .pol = *pol};
    feed_record(f, &ev);
    return KILN_OK;
}

static void feed_fini(struct feed *f)
{
    kiln_placer_free(f->pl);
    free(f->queued.k);
    free(f->running.k);
    free(f->as);
    free(f->crit_ids);
    free(f->crit);
    memset(f, 0, sizeof *f);
}

static void feed_record(struct feed *f, const struct kiln_trace_event *ev)
{
    if (!f->trace) return;
    json_t *o = kiln_trace_to_json(ev);
    if (!o || json_dumpf(o, f->trace, JSON_COMPACT | JSON_REAL_PRECISION(17)))
        fputs("{\"ev\":\"lost\"}", f->trace); /* the replay stops on it */
    fputc('\n', f->trace);
    json_decref(o);
}

/* Record and apply one input event. */
static int feed_event(struct feed *f, const struct kiln_trace_event *ev, size_t *nout,
                      struct kiln_error *err)
{
    feed_record(f, ev);
    size_t cap = 0;
    if (ev->kind == KILN_TEV_DISPATCH) {
        cap = kiln_placer_queued(f->pl);
        if (cap > f->capas) {
            struct kiln_assignment *n = realloc(f->as, cap * sizeof *n);
            if (!n) return kiln_fail(err, KILN_ENOMEM, "out of memory");
            f->as = n;
            f->capas = cap;
        }
    }
    size_t dummy;
    return kiln_trace_apply(f->pl, ev, f->as, cap, nout ? nout : &dummy, err);
}

static void to_pworker(const struct kiln_worker_info *w, const struct kiln_offer *o, int asking,
                       int max, struct kiln_pworker *pw)
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
        int idx = w->gpus[g].index, offered = !o || !o->gpus_given;
        pg->index = idx;
        snprintf(pg->sm, sizeof pg->sm, "%.*s", (int)sizeof pg->sm - 1, w->gpus[g].sm);
        pg->driver = w->gpus[g].driver_major;
        for (int i = 0; o && i < o->nfree_gpus && !offered; i++)
            if (o->free_gpus[i] == idx) offered = 1;
        pg->busy = (idx < 32 && (w->gpus_used & (1u << idx))) || !offered;
    }
    pw->state = !strcmp(w->state, "online")     ? (w->drain ? KILN_PW_DRAINING : KILN_PW_ONLINE)
                : !strcmp(w->state, "draining") ? KILN_PW_DRAINING
                : !strcmp(w->state, "lost")     ? KILN_PW_LOST
                                                : KILN_PW_OFFLINE;
    pw->healthy = !w->mem_pressure;
    /* Only a worker asking now takes work (an agent keeps a lease request
     * open whenever it has room), and at most the jobs it asked for (?max=,
     * 1 by default): the rest of the pass goes to other asking workers. */
    pw->max_new = asking ? (max > 0 ? max : 1) : -1;
}

static void to_pitem(const struct kiln_stage_needs *nd, struct kiln_pitem *it)
{
    memset(it, 0, sizeof *it);
    it->job_id = nd->job;
    it->stage = strcmp(nd->stage, "test") ? KILN_PSTAGE_BUILD : KILN_PSTAGE_TEST;
    it->priority = nd->priority;
    it->enqueued_at = nd->created_at;
    snprintf(it->platform, sizeof it->platform, "%.*s", (int)sizeof it->platform - 1, nd->platform);
    it->cores = nd->cores;
    it->ram_mb = nd->ram_mb;
    it->isa = nd->isa[0] ? kiln_isa_level_features(nd->isa) : 0;
    snprintf(it->gpu_sm, sizeof it->gpu_sm, "%.*s", (int)sizeof it->gpu_sm - 1, nd->gpu_sm);
    it->sm_compat = nd->sm_compat;
    it->driver_min = nd->driver_min;
    it->est_s = nd->est_s;
    snprintf(it->worker, sizeof it->worker, "%.*s", (int)sizeof it->worker - 1, nd->worker);
}

static size_t id_index(const int64_t *ids, size_t n, int64_t id)
{
    const int64_t *p = n ? bsearch(&id, ids, n, sizeof id, cmp_i64) : NULL;
    return p ? (size_t)(p - ids) : n;
}

/* A job's critical path in a set (0: not in it, as the placer reads it). */
static double crit_in(const int64_t *ids, const double *crit, size_t n, int64_t job)
{
    size_t i = id_index(ids, n, job);
    return i < n ? crit[i] : 0;
}

/* Critical path of every unfinished job over the dependency DAG (the
 * placer's tie-break after priority): its estimate plus the longest path
 * through the jobs that wait for it. Unknown estimates count 0.
 *
 * Read again only when it can have changed: a new job (the newest id
 * moved: a submission adds dependents to unfinished jobs), a job that
 * failed, was cancelled or superseded (the count of those moved: a waiting
 * job that leaves takes its length off its ancestors' paths), or an item to
 * add that the last read did not have (a retried job). A job that succeeds
 * after running changes no other unfinished job's path (its dependencies
 * ended before it started, its dependents' paths do not include it), so
 * leases and reports do not cost a read of every unfinished job and edge
 * (issue 18: 8% of serve's CPU per no-op job). Items already queued in the
 * placer whose path changed are removed and added again (sync_items). */
static int crit_stale(struct feed *f, const struct kiln_stage_needs *nds, int nnd, int64_t *max_id,
                      int64_t *gone)
{
    sqlite3_stmt *s;
    *max_id = -1; /* unknown: read again next time too */
    *gone = -1;
    if (kiln_store_stmt(f->j->st, "SELECT COALESCE(MAX(id), 0) FROM jobs", &s, NULL)) return 1;
    if (sqlite3_step(s) == SQLITE_ROW) *max_id = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (kiln_store_stmt(f->j->st,
                        "SELECT COALESCE(SUM(n), 0) FROM job_counts WHERE state IN "
                        "('failed','cancelled','superseded')",
                        &s, NULL))
        return 1;
    if (sqlite3_step(s) == SQLITE_ROW) *gone = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (*max_id < 0 || *max_id != f->crit_max_id || *gone < 0 || *gone != f->crit_gone) return 1;
    for (int i = 0; i < nnd; i++)
        if (id_index(f->crit_ids, f->ncrit, nds[i].job) == f->ncrit) return 1;
    return 0;
}

/* *old gets the paths before, when they were read again (the caller frees
 * old->ids and old->crit), else stays empty. */
struct crit_set {
    int64_t *ids;
    double *crit;
    size_t n;
};

static int compute_crit(struct feed *f, const struct kiln_stage_needs *nds, int nnd,
                        struct crit_set *old, struct kiln_error *err)
{
    int64_t max_id, gone;
    memset(old, 0, sizeof *old);
    if (!crit_stale(f, nds, nnd, &max_id, &gone)) return KILN_OK;
    struct keyset ids = {0}, edges = {0};
    double *est = NULL, *crit = NULL;
    size_t *off = NULL, *deps = NULL;
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(
        f->j->st,
        "SELECT id, COALESCE(est_duration_s, 0) FROM jobs WHERE " KILN_SQL_UNFINISHED
        " ORDER BY id",
        &s, err);
    if (rc) return rc;
    size_t cap = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (ids.n == cap) {
            cap = cap ? cap * 2 : 256;
            double *n = realloc(est, cap * sizeof *n);
            if (!n) break;
            est = n;
        }
        if (keyset_push(&ids, sqlite3_column_int64(s, 0))) break;
        est[ids.n - 1] = sqlite3_column_double(s, 1);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        rc = rc == SQLITE_ROW ? kiln_fail(err, KILN_ENOMEM, "out of memory")
                              : kiln_store_fail(f->j->st, rc, err, "reading job estimates");
        goto out;
    }
    /* edges between unfinished jobs, grouped by the job that waits */
    if ((rc = kiln_store_stmt(f->j->st,
                              "SELECT e.job, e.needs FROM job_edges e JOIN jobs j ON j.id = e.job "
                              "JOIN jobs d ON d.id = e.needs WHERE j." KILN_SQL_UNFINISHED
                              " AND d." KILN_SQL_UNFINISHED " ORDER BY e.job",
                              &s, err)))
        goto out;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t a = id_index(ids.k, ids.n, sqlite3_column_int64(s, 0));
        size_t b = id_index(ids.k, ids.n, sqlite3_column_int64(s, 1));
        if (a == ids.n || b == ids.n) continue;
        if (keyset_push(&edges, (int64_t)a) || keyset_push(&edges, (int64_t)b)) break;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        rc = rc == SQLITE_ROW ? kiln_fail(err, KILN_ENOMEM, "out of memory")
                              : kiln_store_fail(f->j->st, rc, err, "reading job dependencies");
        goto out;
    }
    size_t ne = edges.n / 2;
    off = calloc(ids.n + 1, sizeof *off);
    deps = malloc((ne ? ne : 1) * sizeof *deps);
    crit = malloc((ids.n ? ids.n : 1) * sizeof *crit);
    if (!off || !deps || !crit) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t e = 0; e < ne; e++)
        off[edges.k[2 * e] + 1]++;
    for (size_t i = 0; i < ids.n; i++)
        off[i + 1] += off[i];
    for (size_t e = 0; e < ne; e++) /* already grouped by job, in order */
        deps[e] = (size_t)edges.k[2 * e + 1];
    if ((rc = kiln_dag_critical_paths(ids.n, est, off, deps, crit, err))) goto out;
    *old = (struct crit_set){f->crit_ids, f->crit, f->ncrit};
    f->crit_ids = ids.k;
    f->crit = crit;
    f->ncrit = ids.n;
    f->crit_max_id = max_id;
    f->crit_gone = gone;
    ids.k = NULL;
    crit = NULL;
out:
    free(ids.k);
    free(edges.k);
    free(est);
    free(crit);
    free(off);
    free(deps);
    return rc;
}

/* Placed items that no longer run in the store (ended, cancelled, lost,
 * or a lease that failed) give their resources back. */
static int sync_running(struct feed *f, double now, struct kiln_error *err)
{
    if (!f->running.n) return KILN_OK;
    struct keyset live = {0};
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(
        f->j->st, "SELECT id, state FROM jobs WHERE state IN ('building','testing')", &s, err);
    if (rc) return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *st = (const char *)sqlite3_column_text(s, 1);
        int stage = st && !strcmp(st, "testing") ? KILN_PSTAGE_TEST : KILN_PSTAGE_BUILD;
        if (keyset_push(&live, ikey(sqlite3_column_int64(s, 0), stage))) {
            sqlite3_reset(s);
            free(live.k);
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        free(live.k);
        return kiln_store_fail(f->j->st, rc, err, "reading running jobs");
    }
    rc = KILN_OK;
    keyset_sort(&live);
    size_t keep = 0;
    for (size_t i = 0; i < f->running.n && !rc; i++) {
        int64_t k = f->running.k[i];
        if (has_key(live.k, live.n, k)) {
            f->running.k[keep++] = k;
            continue;
        }
        struct kiln_trace_event ev = {
            .kind = KILN_TEV_FINISH, .t = now, .job_id = k / 2, .stage = (int)(k % 2)};
        rc = feed_event(f, &ev, NULL, err);
    }
    f->running.n = keep;
    free(live.k);
    return rc;
}

static int sync_workers(struct feed *f, double now, const struct asking *ask, int nask,
                        struct kiln_error *err)
{
    struct kiln_worker_info *ws = NULL;
    int nw = 0;
    int rc = kiln_registry_all(f->j, &ws, &nw, err);
    for (int i = 0; !rc && i < nw; i++) {
        const struct kiln_offer *o = NULL;
        int asking = 0, max = 1;
        for (int k = 0; k < nask; k++)
            if (ask[k].worker_id == ws[i].id) {
                o = ask[k].offer;
                asking = 1;
                max = ask[k].max;
            }
        struct kiln_trace_event ev = {.kind = KILN_TEV_WORKER, .t = now};
        to_pworker(&ws[i], o, asking, max, &ev.w);
        rc = feed_event(f, &ev, NULL, err);
    }
    free(ws);
    return rc;
}

/* The runnable window from the store against what the placer queues:
 * what left it is removed, what is new is added. */
static int sync_items(struct feed *f, double now, struct kiln_error *err)
{
    struct kiln_stage_needs *nds = malloc(MAX_CANDIDATES * sizeof *nds);
    struct keyset snap = {0}, next = {0}, readd = {0};
    struct crit_set old = {0};
    int n = 0, rc;
    if (!nds) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    if ((rc = kiln_jobs_runnable_needs(f->j, now, nds, MAX_CANDIDATES, &n, err))) goto out;
    for (int i = 0; i < n; i++)
        if (keyset_push(&snap, ikey(nds[i].job, strcmp(nds[i].stage, "test") ? 0 : 1))) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto out;
        }
    keyset_sort(&snap);
    /* a dependency cycle or a failed read leaves the critical paths out
     * (0: the placer uses the item's own estimate), never the item */
    struct kiln_error ce = {0};
    if (n && compute_crit(f, nds, n, &old, &ce) == KILN_ENOMEM) {
        rc = kiln_fail(err, KILN_ENOMEM, "%s", ce.msg);
        goto out;
    }
    for (size_t i = 0; i < f->queued.n; i++) {
        int64_t k = f->queued.k[i];
        /* a queued item whose path changed goes out and back in with it */
        int moved = old.ids && crit_in(old.ids, old.crit, old.n, k / 2) !=
                                   crit_in(f->crit_ids, f->crit, f->ncrit, k / 2);
        if (has_key(snap.k, snap.n, k) && moved && keyset_push(&readd, k)) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto out;
        }
        if (has_key(snap.k, snap.n, k) && !moved) {
            if (keyset_push(&next, k)) {
                rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
                goto out;
            }
            continue;
        }
        struct kiln_trace_event ev = {
            .kind = KILN_TEV_REMOVE, .t = now, .job_id = k / 2, .stage = (int)(k % 2)};
        if ((rc = feed_event(f, &ev, NULL, err))) goto out;
    }
    /* in the store's order (best first), so the trace reads naturally */
    for (int i = 0; i < n; i++) {
        struct kiln_trace_event ev = {.kind = KILN_TEV_ADD, .t = now};
        to_pitem(&nds[i], &ev.it);
        size_t ci = id_index(f->crit_ids, f->ncrit, ev.it.job_id);
        if (ci < f->ncrit) ev.it.crit_s = f->crit[ci];
        int64_t k = ikey(ev.it.job_id, ev.it.stage);
        if ((has_key(f->queued.k, f->queued.n, k) && !has_key(readd.k, readd.n, k)) ||
            has_key(f->running.k, f->running.n, k))
            continue;
        struct kiln_error e2 = {0};
        rc = feed_event(f, &ev, NULL, &e2);
        if (rc == KILN_ENOMEM) {
            kiln_fail(err, rc, "%s", e2.msg);
            goto out;
        }
        /* An item the placer refuses (a malformed need) stays out; its
         * job's wait reason says it waits for a placement pass. */
        rc = KILN_OK;
        if (keyset_push(&next, k)) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto out;
        }
    }
    keyset_sort(&next);
    free(f->queued.k);
    f->queued = next;
    next.k = NULL;
out:
    free(next.k);
    free(snap.k);
    free(readd.k);
    free(old.ids);
    free(old.crit);
    free(nds);
    return rc;
}

/* Bring the placer up to the store, then dispatch: as and nas get the
 * decisions (f->as, valid until the next pass). */
static int feed_pass(struct feed *f, double now, const struct asking *ask, int nask,
                     const struct kiln_assignment **as, size_t *nas, struct kiln_error *err)
{
    *nas = 0;
    *as = NULL;
    int rc;
    if ((rc = sync_running(f, now, err)) || (rc = sync_workers(f, now, ask, nask, err)) ||
        (rc = sync_items(f, now, err)))
        return rc;
    struct kiln_trace_event ev = {.kind = KILN_TEV_DISPATCH, .t = now};
    if ((rc = feed_event(f, &ev, nas, err))) return rc;
    size_t keep = 0;
    for (size_t i = 0; i < f->queued.n; i++) {
        int placed = 0;
        for (size_t k = 0; k < *nas && !placed; k++)
            placed = f->queued.k[i] == ikey(f->as[k].job_id, f->as[k].stage);
        if (!placed) f->queued.k[keep++] = f->queued.k[i];
    }
    f->queued.n = keep;
    for (size_t k = 0; k < *nas; k++) {
        struct kiln_trace_event d = {.kind = KILN_TEV_DECIDE,
                                     .job_id = f->as[k].job_id,
                                     .stage = f->as[k].stage,
                                     .worker_id = f->as[k].worker_id,
                                     .gpu_index = f->as[k].gpu_index};
        feed_record(f, &d);
        if (keyset_push(&f->running, ikey(f->as[k].job_id, f->as[k].stage)))
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    keyset_sort(&f->running);
    if (f->trace) fflush(f->trace);
    *as = f->as;
    return KILN_OK;
}

/* The placer stage of a job object ("stage" "test" or build). */
static int job_stage(json_t *job)
{
    const char *s = json_string_value(json_object_get(job, "stage"));
    return s && !strcmp(s, "test") ? KILN_PSTAGE_TEST : KILN_PSTAGE_BUILD;
}

static void job_reason(struct feed *f, json_t *job, char *out, size_t outlen)
{
    if (kiln_placer_reason(f->pl, json_integer_value(json_object_get(job, "id")), job_stage(job),
                           out, outlen))
        /* not in the runnable window jobs.c reads (the head of each class) */
        snprintf(out, outlen, "waiting behind higher-priority jobs");
}

/* ---- the one-shot forms (tests, tools): the same feed over a snapshot ---- */

int kiln_dispatch_match(struct kiln_jobs *j, const struct kiln_worker_info *w,
                        const struct kiln_offer *o, double now, int64_t *job_id, int *gpu_index,
                        struct kiln_error *err)
{
    *job_id = 0;
    *gpu_index = -1;
    struct kiln_policy pol;
    kiln_policy_default(&pol);
    struct feed f;
    int rc = feed_init(&f, j, &pol, NULL, err);
    struct asking ask = {w->id, o, 1};
    const struct kiln_assignment *as;
    size_t n = 0;
    if (!rc) rc = feed_pass(&f, now, &ask, 1, &as, &n, err);
    for (size_t k = 0; !rc && k < n; k++)
        if (as[k].worker_id == w->id) {
            *job_id = as[k].job_id;
            *gpu_index = as[k].gpu_index;
        }
    feed_fini(&f);
    return rc;
}

void kiln_dispatch_reason_once(struct kiln_jobs *j, json_t *job, char *out, size_t outlen)
{
    struct kiln_policy pol;
    kiln_policy_default(&pol);
    struct feed f;
    const struct kiln_assignment *as;
    size_t n;
    snprintf(out, outlen, "waiting for a worker");
    if (!feed_init(&f, j, &pol, NULL, NULL) &&
        !feed_pass(&f, kiln_clock_wall(), NULL, 0, &as, &n, NULL))
        job_reason(&f, job, out, outlen);
    feed_fini(&f);
}

struct kiln_waiter {
    struct kiln_dispatch *d;
    struct kiln_waiter *next, *prev;
    int64_t worker_id;
    char worker_name[128]; /* for lease_fn (its log marker) */
    struct kiln_offer offer;
    int max;
    kiln_waiter_cb cb;
    void *arg;
    uv_timer_t timer;
    int linked;
};

struct kiln_dispatch {
    uv_loop_t *loop;
    struct kiln_jobs *j;
    struct feed feed;
    FILE *trace;
    int64_t probe_event_id; /* store state of the last reason-only pass */
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

static void on_wake(uv_timer_t *t);

static void arm_wakeup(struct kiln_dispatch *d)
{
    if (d->closing || !d->head) return;
    double now = kiln_clock_wall();
    double t = kiln_jobs_next_wakeup(d->j, now);
    if (t <= 0) return;
    double ms = (t - now) * 1000.0 + 5;
    if (ms < 1) ms = 1;
    uv_timer_start(&d->wake_timer, on_wake, (uint64_t)ms, 0);
}

static void run_pass(struct kiln_dispatch *d)
{
    d->kick_pending = 0;
    if (!d->head || d->closing) return;
    /* One pass for every waiting worker (not one per waiter), so a job
     * goes to the asking host the host policy prefers. */
    struct asking ask[256];
    int nask = 0;
    for (struct kiln_waiter *w = d->head; w && nask < 256; w = w->next)
        ask[nask++] = (struct asking){w->worker_id, &w->offer, w->max};
    const struct kiln_assignment *as;
    size_t n = 0;
    struct kiln_error err = {0};
    /* The pass only reads, but in autocommit each of its queries took and
     * dropped SQLite's file locks (fcntl) on its own: one transaction
     * around it takes them once. */
    int opened = kiln_store_read_begin(d->j->st);
    int prc = feed_pass(&d->feed, kiln_clock_wall(), ask, nask, &as, &n, &err);
    kiln_store_read_end(d->j->st, opened);
    if (prc) {
        /* The placer and the glue's key sets may disagree now: start over
         * from the store (the trace gets a new policy line: a reset). */
        struct kiln_policy pol = d->feed.pol;
        feed_fini(&d->feed);
        if (feed_init(&d->feed, d->j, &pol, d->trace, &err)) d->closing = 1;
        arm_wakeup(d);
        return;
    }
    /* Each asking worker's share of the decisions: one transaction leases
     * them all, and one answer carries them. */
    struct kiln_lease_item *items = n ? calloc(n, sizeof *items) : NULL;
    for (size_t k = 0; items && k < n; k++) {
        int seen = 0;
        for (size_t p = 0; p < k && !seen; p++)
            seen = as[p].worker_id == as[k].worker_id;
        struct kiln_waiter *w = d->head;
        while (w && w->worker_id != as[k].worker_id)
            w = w->next;
        if (seen || !w) continue; /* !w cannot happen: only asking workers take work */
        size_t ni = 0;
        for (size_t p = k; p < n; p++)
            if (as[p].worker_id == w->worker_id)
                items[ni++] =
                    (struct kiln_lease_item){.job = as[p].job_id, .gpu_index = as[p].gpu_index};
        struct kiln_error e2 = {0};
        /* A failed lease (raced with a cancel) is seen as ended next pass. */
        if (d->lease_fn(d->lease_ctx, w->worker_id, w->worker_name, ni, items, &e2)) continue;
        json_t *jobs = json_array();
        for (size_t i = 0; i < ni; i++) {
            if (!items[i].lease) continue;
            if (jobs)
                json_array_append_new(jobs, items[i].lease); /* takes it, even on failure */
            else
                json_decref(items[i].lease);
        }
        if (!json_array_size(jobs)) { /* every lease failed: the worker keeps waiting */
            json_decref(jobs);
            continue;
        }
        json_t *first = json_array_get(jobs, 0), *body;
        if (w->max > 1) {
            body = json_pack("{s:O,s:o}", "job", first, "jobs", jobs);
        } else {
            body = json_pack("{s:O}", "job", first);
            json_decref(jobs);
        }
        if (body) answer(d, w, 200, body);
    }
    free(items);
    arm_wakeup(d);
}

static void on_kick(uv_timer_t *t)
{
    struct kiln_dispatch *d = t->data;
    if (d->kick_pending) run_pass(d); /* else a pass since the kick saw its change */
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
                      const char *trace_path, kiln_lease_fn lease_fn, void *lease_ctx,
                      struct kiln_dispatch **out, struct kiln_error *err)
{
    struct kiln_dispatch *d = calloc(1, sizeof *d);
    if (!d) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    d->loop = loop;
    d->j = j;
    d->probe_event_id = -1;
    if (trace_path && !(d->trace = fopen(trace_path, "w"))) {
        free(d);
        return kiln_fail(err, KILN_EIO, "cannot write the trace %s", trace_path);
    }
    int rc = feed_init(&d->feed, j, pol, d->trace, err);
    if (rc) {
        if (d->trace) fclose(d->trace);
        free(d);
        return rc;
    }
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
    if (--d->handles_open) return;
    feed_fini(&d->feed);
    if (d->trace) fclose(d->trace);
    free(d);
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
                                       const struct kiln_worker_info *wi,
                                       const struct kiln_offer *o, int max, unsigned wait_ms,
                                       kiln_waiter_cb cb, void *arg)
{
    struct kiln_worker_info own;
    struct kiln_error err = {0};
    int rc = KILN_OK;
    if (!wi) {
        rc = kiln_registry_get(d->j, worker_id, &own, &err);
        wi = &own;
    }
    if (rc == KILN_ENOTFOUND || d->closing) {
        cb(arg, 204, NULL);
        return NULL;
    }
    if (rc) {
        cb(arg, 503,
           json_pack("{s:{s:s,s:s}}", "error", "code", kiln_code_name(rc), "message", err.msg));
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
    snprintf(w->worker_name, sizeof w->worker_name, "%s", wi->name);
    w->offer = *o;
    w->max = max < 1 ? 1 : max;
    w->cb = cb;
    w->arg = arg;
    w->timer.data = w;
    link_waiter(d, w);
    /* The request joins a pass with every other waiting worker at once:
     * the closed timer frees w only when the loop runs, so linked is safe
     * to read after an answer. */
    run_pass(d);
    if (!w->linked) return NULL;
    if (wait_ms == 0) {
        answer(d, w, 204, NULL);
        return NULL;
    }
    uv_timer_start(&w->timer, on_waiter_timeout, wait_ms, 0);
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

void kiln_dispatch_wait_reason(void *ctx, json_t *job, char *out, size_t outlen)
{
    struct kiln_dispatch *d = ctx;
    if (!kiln_placer_reason(d->feed.pl, json_integer_value(json_object_get(job, "id")),
                            job_stage(job), out, outlen))
        return;
    /* Not queued in the placer yet (just submitted, or no pass since the
     * store changed): one pass in which no worker asks brings it up to date
     * and decides nothing; at most one per store change. */
    int64_t ev = kiln_store_last_event_id(d->j->st);
    if (ev != d->probe_event_id) {
        d->probe_event_id = ev;
        const struct kiln_assignment *as;
        size_t n;
        struct kiln_error err = {0};
        if (feed_pass(&d->feed, kiln_clock_wall(), NULL, 0, &as, &n, &err)) {
            snprintf(out, outlen, "waiting for a worker");
            return;
        }
        kiln_dispatch_kick(d); /* the waiting workers were left out of that pass */
    }
    job_reason(&d->feed, job, out, outlen);
}
