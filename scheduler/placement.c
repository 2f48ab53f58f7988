/* placement.c - see placement.h for the contract and the policy. */
#include "scheduler/placement.h"

#include "common/isa.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_INF 1e300
/* Items submitted within the same minute compare by critical path, not by
 * who came a few seconds earlier: the aging key is quantized to this. */
#define AGE_QUANTUM_S 60.0

enum { Q_FREE = 0, Q_QUEUED = 1, Q_RUNNING = 2 };

/* Why the head of a class did not start in the last pass. */
enum {
    W_NONE = 0, /* not considered yet */
    W_STATIC,   /* no worker could ever run it: diagnosed on demand */
    W_OFFLINE,  /* capable workers exist, none online and healthy */
    W_BUSY,     /* capable workers lack free cores/RAM */
    W_GPU_BUSY, /* every matching GPU is busy */
    W_RESERVED, /* resources held for a higher-priority item */
    W_BEHIND,   /* the pass ended (cap) before reaching it */
    W_BLOCKED,  /* could not start; which of the above is worked out when
                   someone asks (kiln_placer_reason), not in every pass */
};

struct why {
    int code;
    int best_cores; /* W_BUSY: most free cores on a capable host */
    int64_t best_ram;
    int ngpus; /* W_GPU_BUSY */
    int n_draining, n_lost, n_offline, n_unhealthy;
    int64_t res_job; /* W_RESERVED */
    int res_worker;
    double res_wait; /* seconds until the reservation starts */
};

struct qitem {
    struct kiln_pitem it;
    double key;
    int cls;
    int hpos;
    int state;
    int worker; /* slot while running */
    int gpu;    /* position in the worker's gpus[] while running, -1 none */
    size_t user;
    int next_free;
};

struct wslot {
    int present;
    struct kiln_pworker w; /* w.running unused */
    struct kiln_prun *run;
    size_t nrun, caprun;
    /* per-pass reservation for a blocked head */
    int reserved;
    double res_start;
    int spare_cores;
    int64_t spare_ram;
    int res_gpu;
    int64_t res_job;
    int taken; /* items given to it in this pass (for w.max_new) */
};

struct pclass {
    int stage;
    char platform[KILN_PLACE_PLATFORM_MAX];
    char worker[KILN_PLACE_NAME_MAX]; /* "" = any worker */
    int cores;
    int64_t ram_mb;
    uint32_t isa;
    char sm[KILN_PLACE_SM_MAX];
    int sm_compat;
    int driver_min;
    unsigned hash;
    int *heap;
    size_t n, cap;
    int *compat;
    size_t ncompat, capcompat;
    struct why why;
    double chain_sum; /* sum of the queued items' critical paths (seconds) */
    double est_max;   /* longest est_s queued since the class was last empty */
    double urgent_at; /* this pass: a head with a critical path this long or
                         longer is urgent (compute_slack) */
};

struct kiln_placer {
    struct kiln_policy pol;
    struct qitem *items;
    size_t nitems, capitems;
    int free_head;
    size_t nqueued;
    /* (job_id, stage) -> item index, open addressing */
    int64_t *mkeys;
    int *mvals; /* -1 empty, -2 tombstone */
    size_t mcap, mused;
    struct wslot *ws;
    size_t nws, capws;
    struct pclass *cls;
    size_t ncls, capcls;
    int *ctab; /* class hash -> class index (open addressing), -1 empty */
    size_t ctcap;
    double last_now; /* time of the last pass, for reasons */
    int *cheap;      /* class heap scratch */
    size_t capcheap;
};

void kiln_policy_default(struct kiln_policy *pol)
{
    memset(pol, 0, sizeof *pol);
    pol->mode = KILN_POLICY_KILN;
    pol->aging_per_hour = 1.0;
    pol->backfill = 1;
    pol->host_policy = KILN_HOST_SPREAD;
}

int kiln_host_policy_parse(const char *name, int *out, struct kiln_error *err)
{
    if (name && !strcmp(name, "spread"))
        *out = KILN_HOST_SPREAD;
    else if (name && !strcmp(name, "pack"))
        *out = KILN_HOST_PACK;
    else
        return kiln_fail(err, KILN_EINVAL, "host policy is spread or pack, not '%.32s'",
                         name ? name : "");
    return KILN_OK;
}

const char *kiln_host_policy_name(int host_policy)
{
    return host_policy == KILN_HOST_PACK ? "pack" : "spread";
}

/* ---------- SM and driver helpers ---------- */

struct smv {
    int major, minor;
    char suffix; /* 0, 'a' or 'f' */
};

static int sm_parse(const char *s, struct smv *v)
{
    size_t n = 0;
    while (s[n] && isdigit((unsigned char)s[n]))
        n++;
    if (n < 2 || n > 4) return -1;
    char sfx = s[n];
    if (sfx) {
        if ((sfx != 'a' && sfx != 'f') || s[n + 1]) return -1;
    }
    int val = 0;
    for (size_t i = 0; i < n; i++)
        val = val * 10 + (s[i] - '0');
    v->major = val / 10;
    v->minor = val % 10;
    v->suffix = sfx;
    return v->major > 0 ? 0 : -1;
}

int kiln_sm_matches(const char *gpu, const char *need, int sm_compat)
{
    struct smv g, n;
    if (!gpu || !need || sm_parse(gpu, &g) || sm_parse(need, &n)) return 0;
    if (g.major != n.major) return 0;
    if (g.minor == n.minor) return 1;
    /* arch-specific code (sm_90a, sm_100f) runs only on that exact arch */
    if (!sm_compat || n.suffix) return 0;
    return g.minor > n.minor;
}

int kiln_driver_major(const char *version)
{
    if (!version) return 0;
    long v = 0;
    size_t i = 0;
    for (; version[i] && isdigit((unsigned char)version[i]) && i < 6; i++)
        v = v * 10 + (version[i] - '0');
    return (int)v;
}

/* ---------- (job_id, stage) map ---------- */

static size_t mhash(int64_t k, size_t cap)
{
    uint64_t x = (uint64_t)k * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return (size_t)(x & (cap - 1));
}

static int64_t mkey(int64_t job_id, int stage)
{
    return (int64_t)((uint64_t)job_id * 4u + (uint64_t)(stage & 3));
}

static int map_find(const struct kiln_placer *p, int64_t k)
{
    if (!p->mcap) return -1;
    size_t i = mhash(k, p->mcap);
    for (size_t probes = 0; probes < p->mcap; probes++) {
        int v = p->mvals[i];
        if (v == -1) return -1;
        if (v >= 0 && p->mkeys[i] == k) return v;
        i = (i + 1) & (p->mcap - 1);
    }
    return -1;
}

static int map_grow(struct kiln_placer *p)
{
    size_t ncap = p->mcap ? p->mcap * 2 : 64;
    int64_t *nk = malloc(ncap * sizeof *nk);
    int *nv = malloc(ncap * sizeof *nv);
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return KILN_ENOMEM;
    }
    for (size_t i = 0; i < ncap; i++)
        nv[i] = -1;
    size_t used = 0;
    for (size_t i = 0; i < p->mcap; i++) {
        if (p->mvals[i] < 0) continue;
        size_t j = mhash(p->mkeys[i], ncap);
        while (nv[j] != -1)
            j = (j + 1) & (ncap - 1);
        nk[j] = p->mkeys[i];
        nv[j] = p->mvals[i];
        used++;
    }
    free(p->mkeys);
    free(p->mvals);
    p->mkeys = nk;
    p->mvals = nv;
    p->mcap = ncap;
    p->mused = used;
    return KILN_OK;
}

static int map_put(struct kiln_placer *p, int64_t k, int v)
{
    if ((p->mused + 1) * 2 > p->mcap) {
        int rc = map_grow(p);
        if (rc) return rc;
    }
    size_t i = mhash(k, p->mcap);
    while (p->mvals[i] >= 0)
        i = (i + 1) & (p->mcap - 1);
    if (p->mvals[i] == -1) p->mused++;
    p->mkeys[i] = k;
    p->mvals[i] = v;
    return KILN_OK;
}

static void map_del(struct kiln_placer *p, int64_t k)
{
    if (!p->mcap) return;
    size_t i = mhash(k, p->mcap);
    for (size_t probes = 0; probes < p->mcap; probes++) {
        int v = p->mvals[i];
        if (v == -1) return;
        if (v >= 0 && p->mkeys[i] == k) {
            p->mvals[i] = -2;
            return;
        }
        i = (i + 1) & (p->mcap - 1);
    }
}

/* ---------- ordering ---------- */

/* 1 if item a goes before item b (inside a class, and for FIFO and EASY
 * everywhere; the kiln order across classes adds slack, see class_before). */
static int before(const struct kiln_placer *p, const struct qitem *a, const struct qitem *b)
{
    if (p->pol.mode == KILN_POLICY_KILN) {
        if (a->key != b->key) return a->key > b->key;
        double ca = a->it.crit_s > 0 ? a->it.crit_s : a->it.est_s;
        double cb = b->it.crit_s > 0 ? b->it.crit_s : b->it.est_s;
        if (ca != cb) return ca > cb;
    }
    if (a->it.enqueued_at != b->it.enqueued_at) return a->it.enqueued_at < b->it.enqueued_at;
    if (a->it.job_id != b->it.job_id) return a->it.job_id < b->it.job_id;
    return a->it.stage < b->it.stage;
}

static void iheap_swap(struct kiln_placer *p, struct pclass *c, size_t i, size_t j)
{
    int t = c->heap[i];
    c->heap[i] = c->heap[j];
    c->heap[j] = t;
    p->items[c->heap[i]].hpos = (int)i;
    p->items[c->heap[j]].hpos = (int)j;
}

static void iheap_up(struct kiln_placer *p, struct pclass *c, size_t i)
{
    while (i > 0) {
        size_t par = (i - 1) / 2;
        if (!before(p, &p->items[c->heap[i]], &p->items[c->heap[par]])) break;
        iheap_swap(p, c, i, par);
        i = par;
    }
}

static void iheap_down(struct kiln_placer *p, struct pclass *c, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < c->n && before(p, &p->items[c->heap[l]], &p->items[c->heap[m]])) m = l;
        if (r < c->n && before(p, &p->items[c->heap[r]], &p->items[c->heap[m]])) m = r;
        if (m == i) break;
        iheap_swap(p, c, i, m);
        i = m;
    }
}

static void iheap_remove(struct kiln_placer *p, struct pclass *c, size_t pos)
{
    size_t last = c->n - 1;
    p->items[c->heap[pos]].hpos = -1;
    if (pos != last) {
        c->heap[pos] = c->heap[last];
        p->items[c->heap[pos]].hpos = (int)pos;
        c->n--;
        iheap_down(p, c, pos);
        iheap_up(p, c, pos);
    } else {
        c->n--;
    }
}

/* ---------- classes and compatibility ---------- */

static unsigned class_hash(const struct kiln_pitem *it, int stage)
{
    unsigned h = 2166136261u;
#define MIX(x) h = (h ^ (unsigned)(x)) * 16777619u
    MIX(stage);
    for (const char *s = it->platform; *s; s++)
        MIX(*s);
    for (const char *s = it->worker; *s; s++)
        MIX(*s);
    MIX(it->cores);
    MIX(it->ram_mb);
    MIX(it->ram_mb >> 32);
    MIX(it->isa);
    if (stage == KILN_PSTAGE_TEST) {
        for (const char *s = it->gpu_sm; *s; s++)
            MIX(*s);
        MIX(it->sm_compat);
        MIX(it->driver_min);
    }
#undef MIX
    return h;
}

static int class_same(const struct pclass *c, const struct kiln_pitem *it)
{
    if (c->stage != it->stage || c->cores != it->cores || c->ram_mb != it->ram_mb ||
        c->isa != it->isa || strcmp(c->platform, it->platform) || strcmp(c->worker, it->worker))
        return 0;
    if (it->stage == KILN_PSTAGE_TEST)
        return !strcmp(c->sm, it->gpu_sm) && c->sm_compat == (it->sm_compat != 0) &&
               c->driver_min == it->driver_min;
    return 1;
}

static int needs_gpu(const struct pclass *c)
{
    return c->stage == KILN_PSTAGE_TEST && c->sm[0];
}

static int gpu_ok(const struct pclass *c, const struct kiln_pgpu *g)
{
    return kiln_sm_matches(g->sm, c->sm, c->sm_compat) && g->driver >= c->driver_min;
}

/* Could this worker ever run items of this class (ignoring state and load)? */
static int compat_static(const struct pclass *c, const struct kiln_pworker *w)
{
    if (c->platform[0] && strcmp(c->platform, w->platform)) return 0;
    if (c->worker[0] && strcmp(c->worker, w->name)) return 0;
    if (c->stage == KILN_PSTAGE_BUILD && w->no_builds) return 0;
    if (!kiln_isa_satisfies(w->isa, c->isa)) return 0;
    if (w->cores_total < c->cores || w->ram_total_mb < c->ram_mb) return 0;
    if (needs_gpu(c)) {
        for (int g = 0; g < w->ngpus; g++)
            if (gpu_ok(c, &w->gpus[g])) return 1;
        return 0;
    }
    return 1;
}

static int push_int(int **arr, size_t *n, size_t *cap, int v)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        int *na = realloc(*arr, nc * sizeof *na);
        if (!na) return KILN_ENOMEM;
        *arr = na;
        *cap = nc;
    }
    (*arr)[(*n)++] = v;
    return KILN_OK;
}

static int compat_add(struct pclass *c, int slot)
{
    for (size_t i = 0; i < c->ncompat; i++)
        if (c->compat[i] == slot) return KILN_OK;
    return push_int(&c->compat, &c->ncompat, &c->capcompat, slot);
}

static void compat_del(struct pclass *c, int slot)
{
    for (size_t i = 0; i < c->ncompat; i++)
        if (c->compat[i] == slot) {
            /* keep registration order: FIFO's "first worker" depends on it */
            memmove(&c->compat[i], &c->compat[i + 1], (c->ncompat - i - 1) * sizeof(int));
            c->ncompat--;
            return;
        }
}

static int ctab_insert(struct kiln_placer *p, int ci)
{
    if ((p->ncls + 1) * 2 > p->ctcap) {
        size_t nc = p->ctcap ? p->ctcap * 2 : 64;
        int *n = malloc(nc * sizeof *n);
        if (!n) return KILN_ENOMEM;
        for (size_t i = 0; i < nc; i++)
            n[i] = -1;
        for (size_t k = 0; k < p->ctcap; k++) {
            if (p->ctab[k] < 0) continue;
            size_t j = p->cls[p->ctab[k]].hash & (nc - 1);
            while (n[j] >= 0)
                j = (j + 1) & (nc - 1);
            n[j] = p->ctab[k];
        }
        free(p->ctab);
        p->ctab = n;
        p->ctcap = nc;
    }
    size_t j = p->cls[ci].hash & (p->ctcap - 1);
    while (p->ctab[j] >= 0)
        j = (j + 1) & (p->ctcap - 1);
    p->ctab[j] = ci;
    return KILN_OK;
}

static int class_get(struct kiln_placer *p, const struct kiln_pitem *it, int *out)
{
    unsigned h = class_hash(it, it->stage);
    if (p->ctcap)
        for (size_t j = h & (p->ctcap - 1); p->ctab[j] >= 0; j = (j + 1) & (p->ctcap - 1)) {
            const struct pclass *c = &p->cls[p->ctab[j]];
            if (c->hash == h && class_same(c, it)) {
                *out = p->ctab[j];
                return KILN_OK;
            }
        }
    if (p->ncls == p->capcls) {
        size_t nc = p->capcls ? p->capcls * 2 : 16;
        struct pclass *n = realloc(p->cls, nc * sizeof *n);
        if (!n) return KILN_ENOMEM;
        p->cls = n;
        p->capcls = nc;
    }
    struct pclass *c = &p->cls[p->ncls];
    memset(c, 0, sizeof *c);
    c->stage = it->stage;
    memcpy(c->platform, it->platform, sizeof c->platform);
    memcpy(c->worker, it->worker, sizeof c->worker);
    c->cores = it->cores;
    c->ram_mb = it->ram_mb;
    c->isa = it->isa;
    if (it->stage == KILN_PSTAGE_TEST) {
        memcpy(c->sm, it->gpu_sm, sizeof c->sm);
        c->sm_compat = it->sm_compat != 0;
        c->driver_min = it->driver_min;
    }
    c->hash = h;
    for (size_t s = 0; s < p->nws; s++)
        if (p->ws[s].present && compat_static(c, &p->ws[s].w)) {
            if (push_int(&c->compat, &c->ncompat, &c->capcompat, (int)s)) {
                free(c->compat);
                return KILN_ENOMEM;
            }
        }
    if (ctab_insert(p, (int)p->ncls)) {
        free(c->compat);
        return KILN_ENOMEM;
    }
    *out = (int)p->ncls++;
    return KILN_OK;
}

static double chain_of(const struct kiln_pitem *it)
{
    double c = it->crit_s > 0 ? it->crit_s : it->est_s;
    return c > 0 ? c : 0;
}

/* Keep the class's queued work as items come and go (after the heap). */
static void class_work_add(struct pclass *c, const struct kiln_pitem *it, int sign)
{
    c->chain_sum += sign * chain_of(it);
    if (sign > 0 && it->est_s > c->est_max) c->est_max = it->est_s;
    if (!c->n || c->chain_sum < 0) { /* no drift once empty */
        c->chain_sum = 0;
        c->est_max = 0;
    }
}

/* ---------- placer lifecycle ---------- */

int kiln_placer_new(const struct kiln_policy *pol, struct kiln_placer **out, struct kiln_error *err)
{
    *out = NULL;
    struct kiln_placer *p = calloc(1, sizeof *p);
    if (!p) return kiln_fail(err, KILN_ENOMEM, "out of memory creating the placer");
    if (pol)
        p->pol = *pol;
    else
        kiln_policy_default(&p->pol);
    if (p->pol.mode != KILN_POLICY_KILN && p->pol.mode != KILN_POLICY_FIFO &&
        p->pol.mode != KILN_POLICY_EASY) {
        free(p);
        return kiln_fail(err, KILN_EINVAL, "unknown placement policy mode %d", pol->mode);
    }
    if (!(p->pol.aging_per_hour >= 0) || p->pol.aging_per_hour > 1e6) {
        free(p);
        return kiln_fail(err, KILN_EINVAL, "aging rate must be between 0 and 1e6 per hour");
    }
    p->free_head = -1;
    *out = p;
    return KILN_OK;
}

void kiln_placer_free(struct kiln_placer *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->ncls; i++) {
        free(p->cls[i].heap);
        free(p->cls[i].compat);
    }
    for (size_t i = 0; i < p->nws; i++)
        free(p->ws[i].run);
    free(p->cls);
    free(p->ws);
    free(p->items);
    free(p->mkeys);
    free(p->mvals);
    free(p->cheap);
    free(p->ctab);
    free(p);
}

void kiln_placer_policy(const struct kiln_placer *p, struct kiln_policy *out)
{
    *out = p->pol;
}

size_t kiln_placer_queued(const struct kiln_placer *p)
{
    return p->nqueued;
}

static int str_ok(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static int worker_check(const struct kiln_pworker *w, struct kiln_error *err)
{
    if (!str_ok(w->name, sizeof w->name) || !str_ok(w->platform, sizeof w->platform))
        return kiln_fail(err, KILN_EINVAL, "worker %lld: name or platform is not terminated",
                         (long long)w->id);
    if (w->cores_total < 0 || w->cores_free < 0 || w->ram_total_mb < 0 || w->ram_free_mb < 0)
        return kiln_fail(err, KILN_EINVAL, "worker %s: negative cores or RAM", w->name);
    if (w->ngpus < 0 || w->ngpus > KILN_PLACE_MAX_GPUS)
        return kiln_fail(err, KILN_EINVAL, "worker %s: %d GPUs (at most %d)", w->name, w->ngpus,
                         KILN_PLACE_MAX_GPUS);
    for (int g = 0; g < w->ngpus; g++)
        if (!str_ok(w->gpus[g].sm, sizeof w->gpus[g].sm))
            return kiln_fail(err, KILN_EINVAL, "worker %s: GPU %d SM is not terminated", w->name,
                             g);
    if (w->nrunning && !w->running)
        return kiln_fail(err, KILN_EINVAL, "worker %s: running list missing", w->name);
    return KILN_OK;
}

static int find_worker(const struct kiln_placer *p, int64_t id)
{
    for (size_t i = 0; i < p->nws; i++)
        if (p->ws[i].present && p->ws[i].w.id == id) return (int)i;
    return -1;
}

int kiln_placer_set_worker(struct kiln_placer *p, const struct kiln_pworker *w,
                           struct kiln_error *err)
{
    int rc = worker_check(w, err);
    if (rc) return rc;
    int s = find_worker(p, w->id);
    if (s < 0) {
        for (size_t i = 0; i < p->nws; i++)
            if (!p->ws[i].present) {
                s = (int)i;
                break;
            }
        if (s < 0) {
            if (p->nws == p->capws) {
                size_t nc = p->capws ? p->capws * 2 : 16;
                struct wslot *n = realloc(p->ws, nc * sizeof *n);
                if (!n) return kiln_fail(err, KILN_ENOMEM, "out of memory adding a worker");
                p->ws = n;
                p->capws = nc;
            }
            s = (int)p->nws++;
            memset(&p->ws[s], 0, sizeof p->ws[s]);
        }
    }
    struct wslot *ws = &p->ws[s];
    if (w->running) {
        if (w->nrunning > ws->caprun) {
            struct kiln_prun *n = realloc(ws->run, w->nrunning * sizeof *n);
            if (!n) return kiln_fail(err, KILN_ENOMEM, "out of memory copying running items");
            ws->run = n;
            ws->caprun = w->nrunning;
        }
        if (w->nrunning) memcpy(ws->run, w->running, w->nrunning * sizeof *ws->run);
        ws->nrun = w->nrunning;
    }
    ws->present = 1;
    ws->w = *w;
    ws->w.running = NULL;
    ws->w.nrunning = 0;
    for (size_t i = 0; i < p->ncls; i++) {
        struct pclass *c = &p->cls[i];
        if (compat_static(c, &ws->w)) {
            if (compat_add(c, s)) return kiln_fail(err, KILN_ENOMEM, "out of memory");
        } else {
            compat_del(c, s);
        }
    }
    return KILN_OK;
}

int kiln_placer_remove_worker(struct kiln_placer *p, int64_t worker_id)
{
    int s = find_worker(p, worker_id);
    if (s < 0) return KILN_ENOTFOUND;
    for (size_t i = 0; i < p->ncls; i++)
        compat_del(&p->cls[i], s);
    /* items the placer put there are no longer tracked as running */
    for (size_t i = 0; i < p->nitems; i++) {
        struct qitem *q = &p->items[i];
        if (q->state == Q_RUNNING && q->worker == s) {
            map_del(p, mkey(q->it.job_id, q->it.stage));
            q->state = Q_FREE;
            q->next_free = p->free_head;
            p->free_head = (int)i;
        }
    }
    p->ws[s].present = 0;
    p->ws[s].nrun = 0;
    return KILN_OK;
}

static int item_check(const struct kiln_pitem *it, struct kiln_error *err)
{
    if (it->stage != KILN_PSTAGE_BUILD && it->stage != KILN_PSTAGE_TEST)
        return kiln_fail(err, KILN_EINVAL, "job %lld: unknown stage %d", (long long)it->job_id,
                         it->stage);
    if (!str_ok(it->platform, sizeof it->platform) || !str_ok(it->gpu_sm, sizeof it->gpu_sm) ||
        !str_ok(it->worker, sizeof it->worker))
        return kiln_fail(err, KILN_EINVAL, "job %lld: platform, SM or worker is not terminated",
                         (long long)it->job_id);
    if (it->cores < 0 || it->ram_mb < 0)
        return kiln_fail(err, KILN_EINVAL, "job %lld: negative cores or RAM",
                         (long long)it->job_id);
    if (!isfinite(it->enqueued_at) || !isfinite(it->est_s) || !isfinite(it->crit_s))
        return kiln_fail(err, KILN_EINVAL, "job %lld: times must be finite numbers",
                         (long long)it->job_id);
    struct smv v;
    if (it->stage == KILN_PSTAGE_TEST && it->gpu_sm[0] && sm_parse(it->gpu_sm, &v))
        return kiln_fail(err, KILN_EINVAL,
                         "job %lld: GPU SM \"%s\" is not like \"90\", \"120\" or \"100a\"",
                         (long long)it->job_id, it->gpu_sm);
    return KILN_OK;
}

int kiln_placer_add(struct kiln_placer *p, const struct kiln_pitem *it, struct kiln_error *err)
{
    int rc = item_check(it, err);
    if (rc) return rc;
    int64_t k = mkey(it->job_id, it->stage);
    if (map_find(p, k) >= 0)
        return kiln_fail(err, KILN_EEXIST, "job %lld stage %s is already queued or running",
                         (long long)it->job_id, it->stage ? "test" : "build");
    int ci;
    if ((rc = class_get(p, it, &ci))) return kiln_fail(err, rc, "out of memory adding a job");
    struct pclass *c = &p->cls[ci];
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 8;
        int *nh = realloc(c->heap, nc * sizeof *nh);
        if (!nh) return kiln_fail(err, KILN_ENOMEM, "out of memory adding a job");
        c->heap = nh;
        c->cap = nc;
    }
    int idx;
    if (p->free_head >= 0) {
        idx = p->free_head;
        p->free_head = p->items[idx].next_free;
    } else {
        if (p->nitems == p->capitems) {
            size_t nc = p->capitems ? p->capitems * 2 : 64;
            struct qitem *n = realloc(p->items, nc * sizeof *n);
            if (!n) return kiln_fail(err, KILN_ENOMEM, "out of memory adding a job");
            p->items = n;
            p->capitems = nc;
        }
        idx = (int)p->nitems++;
    }
    if ((rc = map_put(p, k, idx))) {
        p->items[idx].state = Q_FREE;
        p->items[idx].next_free = p->free_head;
        p->free_head = idx;
        return kiln_fail(err, rc, "out of memory adding a job");
    }
    struct qitem *q = &p->items[idx];
    memset(q, 0, sizeof *q);
    q->it = *it;
    if (it->stage != KILN_PSTAGE_TEST) {
        memset(q->it.gpu_sm, 0, sizeof q->it.gpu_sm);
        q->it.sm_compat = 0;
        q->it.driver_min = 0;
    }
    q->key = (double)it->priority - p->pol.aging_per_hour * floor(it->enqueued_at / AGE_QUANTUM_S) *
                                        AGE_QUANTUM_S / 3600.0;
    q->cls = ci;
    q->state = Q_QUEUED;
    q->worker = -1;
    q->gpu = -1;
    q->next_free = -1;
    c->heap[c->n] = idx;
    q->hpos = (int)c->n;
    c->n++;
    class_work_add(c, &q->it, 1);
    iheap_up(p, c, c->n - 1);
    p->nqueued++;
    return KILN_OK;
}

static void item_release(struct kiln_placer *p, int idx)
{
    struct qitem *q = &p->items[idx];
    map_del(p, mkey(q->it.job_id, q->it.stage));
    q->state = Q_FREE;
    q->next_free = p->free_head;
    p->free_head = idx;
}

int kiln_placer_remove(struct kiln_placer *p, int64_t job_id, int stage)
{
    int idx = map_find(p, mkey(job_id, stage));
    if (idx < 0 || p->items[idx].state != Q_QUEUED) return KILN_ENOTFOUND;
    struct qitem *q = &p->items[idx];
    iheap_remove(p, &p->cls[q->cls], (size_t)q->hpos);
    class_work_add(&p->cls[q->cls], &q->it, -1);
    p->nqueued--;
    item_release(p, idx);
    return KILN_OK;
}

int kiln_placer_finish(struct kiln_placer *p, int64_t job_id, int stage)
{
    int idx = map_find(p, mkey(job_id, stage));
    if (idx < 0 || p->items[idx].state != Q_RUNNING) return KILN_ENOTFOUND;
    struct qitem *q = &p->items[idx];
    struct wslot *ws = &p->ws[q->worker];
    if (ws->present) {
        ws->w.cores_free += q->it.cores;
        ws->w.ram_free_mb += q->it.ram_mb;
        if (ws->w.cores_free > ws->w.cores_total) ws->w.cores_free = ws->w.cores_total;
        if (ws->w.ram_free_mb > ws->w.ram_total_mb) ws->w.ram_free_mb = ws->w.ram_total_mb;
        if (q->gpu >= 0 && q->gpu < ws->w.ngpus) ws->w.gpus[q->gpu].busy = 0;
        for (size_t i = 0; i < ws->nrun; i++)
            if (ws->run[i].job_id == job_id && ws->run[i].stage == stage) {
                ws->run[i] = ws->run[--ws->nrun];
                break;
            }
    }
    item_release(p, idx);
    return KILN_OK;
}

/* ---------- one pass ---------- */

static int worker_takes_work(const struct kiln_pworker *w)
{
    return w->state == KILN_PW_ONLINE && w->healthy;
}

/* Takes work and has not had its share of this pass yet. */
static int slot_takes_work(const struct wslot *ws)
{
    return worker_takes_work(&ws->w) && ws->w.max_new >= 0 &&
           (!ws->w.max_new || ws->taken < ws->w.max_new);
}

/* Best free GPU on w for class c, -1 if none. Prefers an exact SM match
 * (a newer compatible GPU is kept for what needs it). */
static int pick_gpu(const struct pclass *c, const struct kiln_pworker *w, int avoid)
{
    int best = -1, best_exact = 0;
    for (int g = 0; g < w->ngpus; g++) {
        if (w->gpus[g].busy || g == avoid || !gpu_ok(c, &w->gpus[g])) continue;
        struct smv a, b;
        int exact = !sm_parse(w->gpus[g].sm, &a) && !sm_parse(c->sm, &b) && a.minor == b.minor;
        if (best < 0 || (exact && !best_exact)) {
            best = g;
            best_exact = exact;
        }
    }
    return best;
}

/* Can item q start on slot s now? Fills *gpu and *spare (1 = it uses the
 * reservation's spare resources, 0 = it finishes before the reservation). */
static int can_start(const struct kiln_placer *p, const struct wslot *ws, const struct pclass *c,
                     const struct qitem *q, double now, int *gpu, int *spare)
{
    const struct kiln_pworker *w = &ws->w;
    if (!slot_takes_work(ws)) return 0;
    if (w->cores_free < c->cores || w->ram_free_mb < c->ram_mb) return 0;
    *gpu = -1;
    *spare = 0;
    if (needs_gpu(c)) {
        *gpu = pick_gpu(c, w, -1);
        if (*gpu < 0) return 0;
    }
    if (!ws->reserved || p->pol.mode == KILN_POLICY_FIFO) return 1;
    if (q->it.est_s > 0 && ws->res_start < T_INF && now + q->it.est_s <= ws->res_start) return 1;
    if (c->cores <= ws->spare_cores && c->ram_mb <= ws->spare_ram) {
        if (*gpu >= 0 && *gpu == ws->res_gpu) {
            *gpu = pick_gpu(c, w, ws->res_gpu);
            if (*gpu < 0) return 0;
        }
        *spare = 1;
        return 1;
    }
    return 0;
}

/* Smaller is better. pack: the share of the host left idle beside the item
 * (best fit); spread: the share in use once it runs (least loaded). Both
 * keep builds off GPU hosts when a CPU host fits (tests need those). */
static double host_score(int host_policy, const struct wslot *ws, const struct pclass *c, int gpu)
{
    const struct kiln_pworker *w = &ws->w;
    double sc = w->cores_total ? (double)(w->cores_free - c->cores) / w->cores_total : 0;
    double sr = w->ram_total_mb ? (double)(w->ram_free_mb - c->ram_mb) / w->ram_total_mb : 0;
    double v = host_policy == KILN_HOST_PACK ? sc + sr : 2.0 - (sc + sr);
    if (!needs_gpu(c) && w->ngpus) v += 2.0 + w->ngpus * 0.01;
    if (gpu >= 0) {
        struct smv a, b;
        if (!sm_parse(w->gpus[gpu].sm, &a) && !sm_parse(c->sm, &b) && a.minor != b.minor) v += 4.0;
    }
    return v;
}

static int fits_totals(const struct pclass *c, int cores, int64_t ram, const int *gfree,
                       const struct kiln_pworker *w, int *gpu)
{
    if (cores < c->cores || ram < c->ram_mb) return 0;
    *gpu = -1;
    if (!needs_gpu(c)) return 1;
    for (int g = 0; g < w->ngpus; g++)
        if (gfree[g] && gpu_ok(c, &w->gpus[g])) {
            *gpu = g;
            return 1;
        }
    return 0;
}

/* Earliest time class c could start on ws from the expected ends of what
 * runs there; T_INF when unknown. Fills the spare resources at that time. */
static double earliest_start(const struct wslot *ws, const struct pclass *c, double now,
                             int *spare_cores, int64_t *spare_ram, int *gpu)
{
    const struct kiln_pworker *w = &ws->w;
    int cores = w->cores_free;
    int64_t ram = w->ram_free_mb;
    int gfree[KILN_PLACE_MAX_GPUS];
    for (int g = 0; g < w->ngpus; g++)
        gfree[g] = !w->gpus[g].busy;
    if (fits_totals(c, cores, ram, gfree, w, gpu)) {
        *spare_cores = cores - c->cores;
        *spare_ram = ram - c->ram_mb;
        return now;
    }
    /* run lists are short (a host runs a handful of builds): selection by
       repeated minimum keeps this allocation-free */
    size_t n = ws->nrun;
    unsigned char used[256];
    if (n > sizeof used) n = sizeof used;
    memset(used, 0, n);
    for (size_t k = 0; k < n; k++) {
        size_t m = n;
        for (size_t i = 0; i < n; i++)
            if (!used[i] && (m == n || ws->run[i].end_at < ws->run[m].end_at)) m = i;
        used[m] = 1;
        const struct kiln_prun *r = &ws->run[m];
        if (!(r->end_at < T_INF)) return T_INF;
        cores += r->cores;
        ram += r->ram_mb;
        for (int g = 0; g < w->ngpus; g++)
            if (w->gpus[g].index == r->gpu_index && r->gpu_index >= 0) gfree[g] = 1;
        if (fits_totals(c, cores, ram, gfree, w, gpu)) {
            *spare_cores = cores - c->cores;
            *spare_ram = ram - c->ram_mb;
            return r->end_at > now ? r->end_at : now;
        }
    }
    return T_INF;
}

static void diagnose_blocked(const struct kiln_placer *p, const struct pclass *c, double now,
                             struct why *y)
{
    memset(y, 0, sizeof *y);
    y->res_worker = -1;
    if (!c->ncompat) {
        y->code = W_STATIC;
        return;
    }
    int online = 0, gpus = 0, gpus_free = 0;
    y->best_cores = -1;
    for (size_t i = 0; i < c->ncompat; i++) {
        const struct wslot *ws = &p->ws[c->compat[i]];
        const struct kiln_pworker *w = &ws->w;
        if (!worker_takes_work(w)) {
            if (w->state == KILN_PW_DRAINING)
                y->n_draining++;
            else if (w->state == KILN_PW_LOST)
                y->n_lost++;
            else if (w->state == KILN_PW_OFFLINE)
                y->n_offline++;
            else
                y->n_unhealthy++;
            continue;
        }
        online++;
        if (needs_gpu(c))
            for (int g = 0; g < w->ngpus; g++)
                if (gpu_ok(c, &w->gpus[g])) {
                    gpus++;
                    if (!w->gpus[g].busy) gpus_free++;
                }
        if (ws->reserved && w->cores_free >= c->cores && w->ram_free_mb >= c->ram_mb &&
            (!needs_gpu(c) || pick_gpu(c, w, -1) >= 0)) {
            if (y->res_worker < 0 || ws->res_start - now < y->res_wait) {
                y->res_worker = c->compat[i];
                y->res_job = ws->res_job;
                y->res_wait = ws->res_start - now;
            }
        }
        if (w->cores_free > y->best_cores ||
            (w->cores_free == y->best_cores && w->ram_free_mb > y->best_ram)) {
            y->best_cores = w->cores_free;
            y->best_ram = w->ram_free_mb;
        }
    }
    if (!online)
        y->code = W_OFFLINE;
    else if (y->res_worker >= 0)
        y->code = W_RESERVED;
    else if (needs_gpu(c) && !gpus_free) {
        y->code = W_GPU_BUSY;
        y->ngpus = gpus;
    } else
        y->code = W_BUSY;
}

/* How far w is from fitting c now (0 = fits): used to pick among workers
 * whose start time is unknown. */
static double deficit(const struct kiln_pworker *w, const struct pclass *c)
{
    double d = 0;
    if (c->cores > w->cores_free && w->cores_total)
        d += (double)(c->cores - w->cores_free) / w->cores_total;
    if (c->ram_mb > w->ram_free_mb && w->ram_total_mb)
        d += (double)(c->ram_mb - w->ram_free_mb) / (double)w->ram_total_mb;
    if (needs_gpu(c) && pick_gpu(c, w, -1) < 0) d += 1;
    return d;
}

/* Reserve the worker where the blocked head can start soonest. When nothing
 * says when that is (no end estimates), the head waits for what runs there
 * to end, and lower items may still use what the head will not need then
 * (total minus its needs), so they never push its start further out. */
static void reserve_for(struct kiln_placer *p, struct pclass *c, const struct qitem *head,
                        double now)
{
    int best = -1, bgpu = -1, bsc = 0;
    int64_t bsr = 0;
    double bt = T_INF, bd = 0;
    for (size_t i = 0; i < c->ncompat; i++) {
        struct wslot *ws = &p->ws[c->compat[i]];
        if (ws->reserved || !slot_takes_work(ws)) continue;
        int sc = 0, gpu = -1;
        int64_t sr = 0;
        double t = earliest_start(ws, c, now, &sc, &sr, &gpu);
        double d = t < T_INF ? 0 : deficit(&ws->w, c);
        if (best < 0 || t < bt || (t == bt && t >= T_INF && d < bd)) {
            best = c->compat[i];
            bt = t;
            bd = d;
            bsc = sc;
            bsr = sr;
            bgpu = gpu;
        }
    }
    if (best < 0) return;
    struct wslot *ws = &p->ws[best];
    ws->reserved = 1;
    ws->res_start = bt;
    ws->res_job = head->it.job_id;
    if (bt < T_INF) {
        ws->spare_cores = bsc;
        ws->spare_ram = bsr;
        ws->res_gpu = bgpu;
        return;
    }
    ws->spare_cores = ws->w.cores_total - c->cores;
    ws->spare_ram = ws->w.ram_total_mb - c->ram_mb;
    ws->res_gpu = -1;
    if (needs_gpu(c))
        for (int g = 0; g < ws->w.ngpus && ws->res_gpu < 0; g++)
            if (gpu_ok(c, &ws->w.gpus[g])) ws->res_gpu = g;
}

/* Slack, per build platform, for this pass. The horizon H: how long the
 * platform's online build hosts stay busy with what runs there (to its
 * expected end) and what is queued for them, each queued item counted with
 * its whole critical path on its own cores and RAM (a stand-in for the work
 * of its dependents, which are not queued yet); over the hosts' cores or
 * RAM, whichever is longer. An item that is not started now may wait for
 * up to the longest queued item, so it is urgent when its critical path
 * reaches H minus that: urgent_at. Tests, builds without estimates, and
 * platforms past HZ_PLATFORMS get urgent_at 0: everything urgent, the plain
 * critical-path order. */
#define HZ_PLATFORMS 16
static void compute_slack(struct kiln_placer *p, double now)
{
    struct hz {
        const char *plat;
        double core_s, ram_s, cores, ram, est_max, at;
    } g[HZ_PLATFORMS];
    size_t ng = 0;
    for (size_t i = 0; i < p->ncls; i++) {
        struct pclass *c = &p->cls[i];
        c->urgent_at = 0;
        if (c->stage != KILN_PSTAGE_BUILD || !c->n || !(c->chain_sum > 0)) continue;
        size_t k = 0;
        while (k < ng && strcmp(g[k].plat, c->platform))
            k++;
        if (k == ng) {
            if (ng == HZ_PLATFORMS) continue;
            memset(&g[ng], 0, sizeof g[ng]);
            g[ng++].plat = c->platform;
        }
        g[k].core_s += c->cores * c->chain_sum;
        g[k].ram_s += (double)c->ram_mb * c->chain_sum;
        if (c->est_max > g[k].est_max) g[k].est_max = c->est_max;
    }
    if (!ng) return;
    for (size_t s = 0; s < p->nws; s++) {
        const struct wslot *ws = &p->ws[s];
        if (!ws->present || !worker_takes_work(&ws->w) || ws->w.no_builds) continue;
        for (size_t k = 0; k < ng; k++) {
            if (g[k].plat[0] && strcmp(g[k].plat, ws->w.platform)) continue;
            g[k].cores += ws->w.cores_total;
            g[k].ram += (double)ws->w.ram_total_mb;
            for (size_t r = 0; r < ws->nrun; r++) {
                const struct kiln_prun *run = &ws->run[r];
                if (!(run->end_at < T_INF) || run->end_at <= now) continue;
                g[k].core_s += run->cores * (run->end_at - now);
                g[k].ram_s += (double)run->ram_mb * (run->end_at - now);
            }
        }
    }
    for (size_t k = 0; k < ng; k++) {
        double hc = g[k].cores > 0 ? g[k].core_s / g[k].cores : 0;
        double hr = g[k].ram > 0 ? g[k].ram_s / g[k].ram : 0;
        g[k].at = (hc > hr ? hc : hr) - g[k].est_max;
    }
    for (size_t i = 0; i < p->ncls; i++) {
        struct pclass *c = &p->cls[i];
        if (c->stage != KILN_PSTAGE_BUILD || !c->n || !(c->chain_sum > 0)) continue;
        for (size_t k = 0; k < ng; k++)
            if (!strcmp(g[k].plat, c->platform)) c->urgent_at = g[k].at > 0 ? g[k].at : 0;
    }
}

/* Class heads in the kiln order: priority+aging first; then slack. An item
 * whose critical path reaches urgent_at (compute_slack) is urgent: delaying
 * it delays the end, so urgent items go first, longest path first. The
 * others have slack (their chain ends before the hosts run dry anyway), and
 * among them the longest item goes first (LPT), so the short ones are left
 * to fill the hosts' last gaps instead of a final wave of long ones running
 * alone. Without estimates urgent_at is 0 and this is the plain critical-
 * path order. Inside a class (same resources) the heap keeps the static
 * order. Trade-off: the horizon guesses dependents' work from the critical
 * paths; a DAG whose chains share many dependents makes it too long, and
 * items that looked slack may start later than the critical-path order
 * would have started them. */
static int class_before(const struct kiln_placer *p, int a, int b)
{
    const struct pclass *ca = &p->cls[a], *cb = &p->cls[b];
    const struct qitem *x = &p->items[ca->heap[0]], *y = &p->items[cb->heap[0]];
    if (p->pol.mode == KILN_POLICY_KILN && x->key == y->key) {
        int ux = chain_of(&x->it) >= ca->urgent_at, uy = chain_of(&y->it) >= cb->urgent_at;
        if (ux != uy) return ux;
        if (!ux && x->it.est_s != y->it.est_s) return x->it.est_s > y->it.est_s;
    }
    return before(p, x, y);
}

static void cheap_down(struct kiln_placer *p, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && class_before(p, p->cheap[l], p->cheap[m])) m = l;
        if (r < n && class_before(p, p->cheap[r], p->cheap[m])) m = r;
        if (m == i) break;
        int t = p->cheap[i];
        p->cheap[i] = p->cheap[m];
        p->cheap[m] = t;
        i = m;
    }
}

static int run_push(struct wslot *ws, const struct kiln_prun *r)
{
    if (ws->nrun == ws->caprun) {
        size_t nc = ws->caprun ? ws->caprun * 2 : 8;
        struct kiln_prun *n = realloc(ws->run, nc * sizeof *n);
        if (!n) return KILN_ENOMEM;
        ws->run = n;
        ws->caprun = nc;
    }
    ws->run[ws->nrun++] = *r;
    return KILN_OK;
}

static int do_pass(struct kiln_placer *p, double now, int only, struct kiln_assignment *out,
                   size_t cap, size_t *nout, struct kiln_error *err)
{
    *nout = 0;
    if (!isfinite(now)) return kiln_fail(err, KILN_EINVAL, "dispatch time must be finite");
    for (size_t s = 0; s < p->nws; s++) {
        p->ws[s].reserved = 0;
        p->ws[s].taken = 0;
    }
    p->last_now = now;
    if (p->capcheap < p->ncls) {
        int *n = realloc(p->cheap, p->ncls * sizeof *n);
        if (!n) return kiln_fail(err, KILN_ENOMEM, "out of memory in dispatch");
        p->cheap = n;
        p->capcheap = p->ncls;
    }
    size_t hn = 0;
    for (size_t i = 0; i < p->ncls; i++) {
        struct pclass *c = &p->cls[i];
        if (c->n && !c->ncompat) {
            /* nothing could ever run it: no need to look each pass */
            c->why.code = W_STATIC;
        } else if (c->n) {
            p->cheap[hn++] = (int)i;
            c->why.code = W_BEHIND;
        }
    }
    if (p->pol.mode == KILN_POLICY_KILN) compute_slack(p, now);
    for (size_t i = hn / 2; i-- > 0;)
        cheap_down(p, hn, i);
    /* kiln: a reservation for the head of each blocked class; EASY: one,
       for the first blocked item in submit order (the queue's head) */
    int reserving =
        (p->pol.mode == KILN_POLICY_KILN && p->pol.backfill) || p->pol.mode == KILN_POLICY_EASY;
    while (hn) {
        int ci = p->cheap[0];
        struct pclass *c = &p->cls[ci];
        int hidx = c->heap[0];
        struct qitem *q = &p->items[hidx];
        int bs = -1, bgpu = -1, bspare = 0;
        double bw = 0;
        if (*nout < cap) {
            for (size_t i = 0; i < c->ncompat; i++) {
                int s = c->compat[i];
                if (only >= 0 && s != only) continue;
                int gpu, spare;
                if (!can_start(p, &p->ws[s], c, q, now, &gpu, &spare)) continue;
                if (p->pol.mode != KILN_POLICY_KILN) { /* FIFO, EASY: first fit */
                    bs = s;
                    bgpu = gpu;
                    break;
                }
                double wv = host_score(p->pol.host_policy, &p->ws[s], c, gpu);
                if (bs < 0 || wv < bw) {
                    bs = s;
                    bw = wv;
                    bgpu = gpu;
                    bspare = spare;
                }
            }
        }
        if (bs < 0) {
            /* the class is blocked for this pass; everything behind its
               head needs the same resources */
            if (*nout >= cap) {
                c->why.code = W_BEHIND;
            } else {
                if (reserving) reserve_for(p, c, q, now);
                if (p->pol.mode == KILN_POLICY_EASY) reserving = 0;
                c->why.code = W_BLOCKED;
            }
            p->cheap[0] = p->cheap[--hn];
            cheap_down(p, hn, 0);
            continue;
        }
        struct wslot *ws = &p->ws[bs];
        struct kiln_prun r = {q->it.job_id,
                              q->it.stage,
                              c->cores,
                              c->ram_mb,
                              bgpu >= 0 ? ws->w.gpus[bgpu].index : -1,
                              q->it.est_s > 0 ? now + q->it.est_s : T_INF};
        if (run_push(ws, &r)) return kiln_fail(err, KILN_ENOMEM, "out of memory in dispatch");
        ws->w.cores_free -= c->cores;
        ws->w.ram_free_mb -= c->ram_mb;
        ws->taken++;
        if (bgpu >= 0) ws->w.gpus[bgpu].busy = 1;
        if (ws->reserved && bspare) {
            ws->spare_cores -= c->cores;
            ws->spare_ram -= c->ram_mb;
        }
        struct kiln_assignment *a = &out[(*nout)++];
        memset(a, 0, sizeof *a);
        a->job_id = q->it.job_id;
        a->stage = q->it.stage;
        a->worker_id = ws->w.id;
        a->gpu_index = r.gpu_index;
        a->item = q->user;
        a->worker = (size_t)bs;
        iheap_remove(p, c, 0);
        class_work_add(c, &q->it, -1);
        p->nqueued--;
        q->state = Q_RUNNING;
        q->worker = bs;
        q->gpu = bgpu;
        if (c->n) {
            cheap_down(p, hn, 0);
        } else {
            c->why.code = W_NONE;
            p->cheap[0] = p->cheap[--hn];
            cheap_down(p, hn, 0);
        }
    }
    return KILN_OK;
}

int kiln_placer_dispatch(struct kiln_placer *p, double now, struct kiln_assignment *out, size_t cap,
                         size_t *nout, struct kiln_error *err)
{
    return do_pass(p, now, -1, out, cap, nout, err);
}

int kiln_placer_dispatch_worker(struct kiln_placer *p, double now, int64_t worker_id,
                                struct kiln_assignment *out, size_t cap, size_t *nout,
                                struct kiln_error *err)
{
    *nout = 0;
    int s = find_worker(p, worker_id);
    if (s < 0)
        return kiln_fail(err, KILN_ENOTFOUND, "worker %lld is not known to placement",
                         (long long)worker_id);
    return do_pass(p, now, s, out, cap, nout, err);
}

/* ---------- reasons ---------- */

static void fmt_gib(char *b, size_t n, int64_t mb)
{
    if (mb % 1024 == 0)
        snprintf(b, n, "%lld GiB", (long long)(mb / 1024));
    else if (mb >= 1024)
        snprintf(b, n, "%.1f GiB", (double)mb / 1024.0);
    else
        snprintf(b, n, "%lld MiB", (long long)mb);
}

static void fmt_dur(char *b, size_t n, double s)
{
    if (!(s < T_INF))
        snprintf(b, n, "unknown time");
    else if (s < 90)
        snprintf(b, n, "%.0fs", s < 0 ? 0 : s);
    else if (s < 5400)
        snprintf(b, n, "%.0fm", s / 60);
    else
        snprintf(b, n, "%dh %02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void fmt_states(char *b, size_t n, const struct why *y)
{
    size_t k = 0;
    const char *names[] = {"draining", "lost", "offline", "unhealthy"};
    int counts[] = {y->n_draining, y->n_lost, y->n_offline, y->n_unhealthy};
    b[0] = 0;
    for (int i = 0; i < 4; i++) {
        if (!counts[i] || k >= n) continue;
        int w = snprintf(b + k, n - k, "%s%d %s", k ? ", " : "", counts[i], names[i]);
        if (w < 0) break;
        k += (size_t)w;
    }
}

/* No worker could ever run the class: say which requirement nobody meets,
 * checking them in the order a person would. */
static void static_reason(const struct kiln_placer *p, const struct pclass *c, char *buf,
                          size_t len)
{
    const char *plat = c->platform[0] ? c->platform : "any platform";
    int n_plat = 0, n_sm = 0, n_drv = 0, n_isa = 0, max_drv = 0, best_cores = 0;
    int64_t best_ram = 0;
    uint32_t best_missing = c->isa;
    int best_missing_n = 99;
    int n_named = 0;
    for (size_t s = 0; s < p->nws; s++) {
        const struct kiln_pworker *w = &p->ws[s].w;
        if (!p->ws[s].present) continue;
        if (c->worker[0] && strcmp(c->worker, w->name)) continue;
        n_named++;
        if (c->platform[0] && strcmp(c->platform, w->platform)) continue;
        if (c->stage == KILN_PSTAGE_BUILD && w->no_builds) continue;
        n_plat++;
        if (needs_gpu(c)) {
            int sm = 0, drv = 0;
            for (int g = 0; g < w->ngpus; g++)
                if (kiln_sm_matches(w->gpus[g].sm, c->sm, c->sm_compat)) {
                    sm = 1;
                    if (w->gpus[g].driver > max_drv) max_drv = w->gpus[g].driver;
                    if (w->gpus[g].driver >= c->driver_min) drv = 1;
                }
            if (!sm) continue;
            n_sm++;
            if (!drv) continue;
            n_drv++;
        }
        uint32_t miss = c->isa & ~w->isa;
        int nm = __builtin_popcount(miss);
        if (nm < best_missing_n) {
            best_missing_n = nm;
            best_missing = miss;
        }
        if (miss) continue;
        n_isa++;
        if (w->cores_total > best_cores ||
            (w->cores_total == best_cores && w->ram_total_mb > best_ram)) {
            best_cores = w->cores_total;
            best_ram = w->ram_total_mb;
        }
    }
    char gib[32], gib2[32];
    if (c->worker[0] && !n_named) {
        snprintf(buf, len, "it asks for worker %s, which is not registered", c->worker);
    } else if (!n_plat) {
        snprintf(buf, len, "no worker for %s%s", c->stage == KILN_PSTAGE_BUILD ? "builds on " : "",
                 plat);
    } else if (needs_gpu(c) && !n_sm) {
        snprintf(buf, len, "no online worker with sm_%s%s", c->sm,
                 c->sm_compat ? " or a compatible newer GPU" : "");
    } else if (needs_gpu(c) && !n_drv) {
        snprintf(buf, len, "no worker with driver >= %d for sm_%s (newest has %d)", c->driver_min,
                 c->sm, max_drv);
    } else if (!n_isa) {
        char feats[160];
        if (kiln_isa_feature_list(best_missing, feats, sizeof feats))
            snprintf(feats, sizeof feats, "0x%x", best_missing);
        snprintf(buf, len, "no worker with CPU features %s%s%s", feats,
                 needs_gpu(c) ? " beside sm_" : "", needs_gpu(c) ? c->sm : "");
    } else {
        fmt_gib(gib, sizeof gib, c->ram_mb);
        fmt_gib(gib2, sizeof gib2, best_ram);
        snprintf(buf, len, "needs %d cores and %s on %s; largest host has %d cores and %s",
                 c->cores, gib, plat, best_cores, gib2);
    }
}

int kiln_placer_reason(struct kiln_placer *p, int64_t job_id, int stage, char *buf, size_t len)
{
    if (!len) return KILN_EINVAL;
    int idx = map_find(p, mkey(job_id, stage));
    if (idx < 0 || p->items[idx].state != Q_QUEUED) return KILN_ENOTFOUND;
    const struct qitem *q = &p->items[idx];
    const struct pclass *c = &p->cls[q->cls];
    struct why lazy;
    const struct why *y = &c->why;
    if (y->code == W_BLOCKED) {
        diagnose_blocked(p, c, p->last_now, &lazy);
        y = &lazy;
    }
    const char *plat = c->platform[0] ? c->platform : "any platform";
    char gib[32], gib2[32], st[96], dur[32];
    int behind = q->hpos > 0;
    switch (y->code) {
    case W_STATIC:
        static_reason(p, c, buf, len);
        break;
    case W_OFFLINE:
        fmt_states(st, sizeof st, y);
        if (needs_gpu(c))
            snprintf(buf, len, "no online worker with sm_%s (%s)", c->sm, st);
        else
            snprintf(buf, len, "no online worker for %s with %d cores (%s)", plat, c->cores, st);
        break;
    case W_GPU_BUSY:
        snprintf(buf, len, "all %d GPUs with sm_%s are busy%s", y->ngpus, c->sm,
                 behind ? "; behind other tests for them" : "");
        break;
    case W_BUSY:
        fmt_gib(gib, sizeof gib, c->ram_mb);
        fmt_gib(gib2, sizeof gib2, y->best_ram < 0 ? 0 : y->best_ram);
        snprintf(buf, len, "needs %d cores and %s on %s%s; best host has %d cores and %s free",
                 c->cores, gib, plat, needs_gpu(c) ? " beside a free GPU" : "",
                 y->best_cores < 0 ? 0 : y->best_cores, gib2);
        break;
    case W_RESERVED:
        fmt_dur(dur, sizeof dur, y->res_wait);
        snprintf(buf, len, "%s is held for higher-priority job %lld (expected to start in %s)",
                 p->ws[y->res_worker].w.name, (long long)y->res_job, dur);
        break;
    case W_BEHIND:
        snprintf(buf, len, "waiting behind higher-priority jobs");
        break;
    default:
        snprintf(buf, len, "waiting for the next placement pass");
        break;
    }
    return KILN_OK;
}

/* ---------- one-shot ---------- */

int kiln_place(const struct kiln_policy *pol, double now, const struct kiln_pitem *items,
               size_t nitems, const struct kiln_pworker *workers, size_t nworkers,
               struct kiln_assignment *out, size_t *nout, char (*reasons)[KILN_PLACE_REASON_MAX],
               struct kiln_error *err)
{
    *nout = 0;
    if ((nitems && (!items || !out)) || (nworkers && !workers))
        return kiln_fail(err, KILN_EINVAL, "placement needs item, worker and output arrays");
    struct kiln_placer *p;
    int rc = kiln_placer_new(pol, &p, err);
    if (rc) return rc;
    for (size_t i = 0; i < nworkers && !rc; i++) {
        if (find_worker(p, workers[i].id) >= 0)
            rc = kiln_fail(err, KILN_EINVAL, "worker id %lld appears twice",
                           (long long)workers[i].id);
        else
            rc = kiln_placer_set_worker(p, &workers[i], err);
    }
    for (size_t i = 0; i < nitems && !rc; i++) {
        rc = kiln_placer_add(p, &items[i], err);
        if (rc == KILN_EEXIST) rc = KILN_EINVAL;
        if (!rc) p->items[map_find(p, mkey(items[i].job_id, items[i].stage))].user = i;
    }
    if (!rc) rc = do_pass(p, now, -1, out, nitems, nout, err);
    if (!rc) {
        /* slots were filled in order, so slot == the caller's index */
        if (reasons)
            for (size_t i = 0; i < nitems; i++)
                if (kiln_placer_reason(p, items[i].job_id, items[i].stage, reasons[i],
                                       KILN_PLACE_REASON_MAX))
                    reasons[i][0] = 0;
    }
    kiln_placer_free(p);
    return rc;
}

/* ---------- DAG helpers ---------- */

int kiln_dag_topo_order(size_t n, const size_t *dep_off, const size_t *deps, size_t *order,
                        struct kiln_error *err)
{
    if (!n) return KILN_OK;
    size_t *indeg = calloc(n, sizeof *indeg);
    size_t *roff = calloc(n + 1, sizeof *roff);
    size_t ne = dep_off[n];
    size_t *radj = malloc((ne ? ne : 1) * sizeof *radj);
    int rc = KILN_OK;
    if (!indeg || !roff || !radj) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory ordering the dependency graph");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (dep_off[i] > dep_off[i + 1] || dep_off[i + 1] > ne) {
            rc = kiln_fail(err, KILN_EINVAL, "dependency offsets of node %zu are not ascending", i);
            goto out;
        }
        for (size_t e = dep_off[i]; e < dep_off[i + 1]; e++) {
            if (deps[e] >= n) {
                rc = kiln_fail(err, KILN_EINVAL, "node %zu depends on node %zu, out of range", i,
                               deps[e]);
                goto out;
            }
            indeg[i]++;
            roff[deps[e] + 1]++;
        }
    }
    for (size_t i = 0; i < n; i++)
        roff[i + 1] += roff[i];
    {
        size_t *fill = calloc(n, sizeof *fill);
        if (!fill) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory ordering the dependency graph");
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            for (size_t e = dep_off[i]; e < dep_off[i + 1]; e++)
                radj[roff[deps[e]] + fill[deps[e]]++] = i;
        free(fill);
    }
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < n; i++)
        if (!indeg[i]) order[tail++] = i;
    while (head < tail) {
        size_t u = order[head++];
        for (size_t e = roff[u]; e < roff[u + 1]; e++)
            if (--indeg[radj[e]] == 0) order[tail++] = radj[e];
    }
    if (tail != n) {
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            if (indeg[i]) {
                bad = i;
                break;
            }
        rc = kiln_fail(err, KILN_EINVAL, "dependency cycle through node %zu", bad);
    }
out:
    free(indeg);
    free(roff);
    free(radj);
    return rc;
}

int kiln_dag_critical_paths(size_t n, const double *est, const size_t *dep_off, const size_t *deps,
                            double *crit, struct kiln_error *err)
{
    if (!n) return KILN_OK;
    size_t *order = malloc(n * sizeof *order);
    if (!order) return kiln_fail(err, KILN_ENOMEM, "out of memory computing critical paths");
    int rc = kiln_dag_topo_order(n, dep_off, deps, order, err);
    if (!rc) {
        for (size_t i = 0; i < n; i++)
            crit[i] = est[i] > 0 ? est[i] : 0;
        /* walk dependents before their dependencies */
        for (size_t k = n; k-- > 0;) {
            size_t i = order[k];
            for (size_t e = dep_off[i]; e < dep_off[i + 1]; e++) {
                size_t d = deps[e];
                double v = (est[d] > 0 ? est[d] : 0) + crit[i];
                if (v > crit[d]) crit[d] = v;
            }
        }
    }
    free(order);
    return rc;
}
