/* sim.c - discrete-event simulation of a farm (see sim.h for the model). */
#include "scheduler/sim.h"

#include "scheduler/slot_bound.h"
#include "scheduler/trace.h"

#include "common/isa.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_TAIL_NONE DBL_MAX
#define TAIL_WORDS ", then the shortest chain after one"
#define SLOT_WORDS " in whole tasks per slot"

void kiln_sim_opts_default(struct kiln_sim_opts *o)
{
    memset(o, 0, sizeof *o);
    kiln_policy_default(&o->policy);
    o->test_est_s = 600;
    o->test_cores = 4;
    o->test_ram_mb = 16384;
    o->default_build_s = 3600;
    o->deps_wait_test = 1;
}

void kiln_sim_result_free(struct kiln_sim_result *r)
{
    if (!r) return;
    free(r->tasks);
    free(r->hosts);
    memset(r, 0, sizeof *r);
}

struct var {
    const char *name;
    const json_t *depends;
    int build; /* task index of its build */
    int test;  /* task index of its test, -1 none */
    int priority;
};

static int name_cmp_ctx(const void *a, const void *b, void *ctx)
{
    const struct var *v = ctx;
    return strcmp(v[*(const size_t *)a].name, v[*(const size_t *)b].name);
}

static long find_var(const struct var *v, const size_t *sorted, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(v[sorted[mid]].name, name);
        if (!c) return (long)sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static double num_or(const json_t *o, const char *key, double dflt, int *bad)
{
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return dflt;
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0) {
        *bad = 1;
        return dflt;
    }
    return json_number_value(v);
}

/* Turn one variant into its build task and (maybe) test task. */
static int load_variant(const json_t *v, size_t vi, const struct kiln_sim_opts *o,
                        struct kiln_sim_task *tasks, size_t *nt, struct var *var, uint32_t *isa,
                        int *sm_compat, int *driver_min, char (*sm)[KILN_PLACE_SM_MAX],
                        char (*plat)[KILN_PLACE_PLATFORM_MAX], struct kiln_error *err)
{
    if (!json_is_object(v)) return kiln_fail(err, KILN_EINVAL, "variant %zu is not an object", vi);
    const char *name = json_string_value(json_object_get(v, "name"));
    if (!name || !name[0] || strlen(name) >= sizeof tasks[0].name)
        return kiln_fail(err, KILN_EINVAL, "variant %zu has no name (or a very long one)", vi);
    const json_t *res = json_object_get(v, "resources");
    if (res && !json_is_object(res))
        return kiln_fail(err, KILN_EINVAL, "%s: resources must be an object", name);
    int bad = 0;
    double cores = num_or(res, "cores", 1, &bad);
    double ram = num_or(res, "ram_mb", 1024, &bad);
    double est = num_or(res, "est_duration_s", o->default_build_s, &bad);
    if (bad || cores > 1e6 || ram > 1e12 || est > 1e9)
        return kiln_fail(err, KILN_EINVAL,
                         "%s: resources.cores, ram_mb and est_duration_s must be non-negative "
                         "numbers",
                         name);
    const char *platform = json_string_value(json_object_get(v, "platform"));
    if (!platform) {
        const json_t *attrs = json_object_get(v, "attrs");
        const char *lvl = json_string_value(json_object_get(attrs, "isa"));
        platform = lvl ? kiln_isa_level_platform(lvl) : NULL;
        if (!platform) platform = "";
    }
    if (strlen(platform) >= KILN_PLACE_PLATFORM_MAX)
        return kiln_fail(err, KILN_EINVAL, "%s: platform is too long", name);
    const json_t *deps = json_object_get(v, "depends");
    if (deps && !json_is_null(deps) && !json_is_array(deps))
        return kiln_fail(err, KILN_EINVAL, "%s: depends must be a list of variant names", name);
    const json_t *pr = json_object_get(v, "priority");
    var->name = name;
    var->depends = json_is_array(deps) ? deps : NULL;
    var->priority = json_is_integer(pr) ? (int)json_integer_value(pr) : 0;
    var->test = -1;
    var->build = (int)*nt;

    struct kiln_sim_task *b = &tasks[*nt];
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    b->stage = KILN_PSTAGE_BUILD;
    b->variant = vi;
    b->host = b->gpu = -1;
    b->cores = (int)cores;
    b->ram_mb = (int64_t)ram;
    b->est_s = est;
    snprintf(plat[*nt], KILN_PLACE_PLATFORM_MAX, "%s", platform);
    isa[*nt] = 0;
    sm[*nt][0] = 0;
    sm_compat[*nt] = 0;
    driver_min[*nt] = 0;
    (*nt)++;

    const json_t *st = json_object_get(v, "selftest");
    if (!st || json_is_null(st)) return KILN_OK;
    if (!json_is_object(st))
        return kiln_fail(err, KILN_EINVAL, "%s: selftest must be an object", name);
    struct kiln_sim_task *t = &tasks[*nt];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->stage = KILN_PSTAGE_TEST;
    t->variant = vi;
    t->host = t->gpu = -1;
    /* Range-checked as doubles, before the conversion (a fuzz finding:
     * "ram_mb": 2e78 overflowed the cast to int64_t). */
    double tcores = num_or(st, "cores", o->test_cores, &bad);
    double tram = num_or(st, "ram_mb", (double)o->test_ram_mb, &bad);
    t->est_s = num_or(st, "est_duration_s", o->test_est_s, &bad);
    if (bad || tcores > 1e6 || tram > 1e12 || t->est_s > 1e9)
        return kiln_fail(err, KILN_EINVAL, "%s: selftest numbers must be non-negative", name);
    t->cores = (int)tcores;
    t->ram_mb = (int64_t)tram;
    const json_t *smv = json_object_get(st, "sm");
    char smbuf[32] = "";
    if (json_is_string(smv))
        snprintf(smbuf, sizeof smbuf, "%s", json_string_value(smv));
    else if (json_is_integer(smv))
        snprintf(smbuf, sizeof smbuf, "%lld", (long long)json_integer_value(smv));
    if (smbuf[0] && (strlen(smbuf) >= KILN_PLACE_SM_MAX || !kiln_sm_matches(smbuf, smbuf, 0)))
        return kiln_fail(err, KILN_EINVAL, "%s: selftest.sm \"%s\" is not like \"90\" or \"100a\"",
                         name, smbuf);
    memcpy(sm[*nt], smbuf, KILN_PLACE_SM_MAX);
    sm[*nt][KILN_PLACE_SM_MAX - 1] = 0;
    sm_compat[*nt] = json_is_true(json_object_get(st, "sm_compat"));
    const json_t *dm = json_object_get(st, "driver_min");
    driver_min[*nt] = json_is_integer(dm)  ? (int)json_integer_value(dm)
                      : json_is_string(dm) ? kiln_driver_major(json_string_value(dm))
                                           : 0;
    const char *lvl = json_string_value(json_object_get(st, "isa"));
    isa[*nt] = 0;
    if (lvl && lvl[0]) {
        isa[*nt] = kiln_isa_level_features(lvl);
        if (!isa[*nt]) {
            char bad_name[64] = "";
            if (kiln_isa_parse_features(lvl, &isa[*nt], bad_name, sizeof bad_name))
                return kiln_fail(err, KILN_EINVAL, "%s: selftest.isa \"%s\" is not a known level",
                                 name, lvl);
        }
    }
    snprintf(plat[*nt], KILN_PLACE_PLATFORM_MAX, "%s", platform);
    var->test = (int)*nt;
    (*nt)++;
    return KILN_OK;
}

/* min-heap of running task indices by end time */
struct evheap {
    size_t *a;
    size_t n;
    const struct kiln_sim_task *t;
};

static int ev_less(const struct evheap *h, size_t i, size_t j)
{
    const struct kiln_sim_task *x = &h->t[h->a[i]], *y = &h->t[h->a[j]];
    if (x->end != y->end) return x->end < y->end;
    return h->a[i] < h->a[j];
}

static void ev_push(struct evheap *h, size_t v)
{
    size_t i = h->n++;
    h->a[i] = v;
    while (i && ev_less(h, i, (i - 1) / 2)) {
        size_t p = (i - 1) / 2, tmp = h->a[i];
        h->a[i] = h->a[p];
        h->a[p] = tmp;
        i = p;
    }
}

static size_t ev_pop(struct evheap *h)
{
    size_t top = h->a[0];
    h->a[0] = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && ev_less(h, l, m)) m = l;
        if (r < h->n && ev_less(h, r, m)) m = r;
        if (m == i) break;
        size_t tmp = h->a[i];
        h->a[i] = h->a[m];
        h->a[m] = tmp;
        i = m;
    }
    return top;
}

struct simctx {
    struct kiln_sim_task *tasks;
    size_t nt;
    size_t *dep_off, *deps;   /* task -> prerequisites */
    size_t *rdep_off, *rdeps; /* task -> dependents */
    size_t *pending;
    uint32_t *isa;
    int *sm_compat, *driver_min;
    char (*sm)[KILN_PLACE_SM_MAX];
    char (*plat)[KILN_PLACE_PLATFORM_MAX];
    struct var *vars;
    size_t nv;
    size_t *sorted;
    struct kiln_assignment *asg;
    size_t *evbuf;
    int64_t *host_ram;
    int *host_cores;
};

static void ctx_free(struct simctx *c)
{
    free(c->tasks);
    free(c->dep_off);
    free(c->deps);
    free(c->rdep_off);
    free(c->rdeps);
    free(c->pending);
    free(c->isa);
    free(c->sm_compat);
    free(c->driver_min);
    free(c->sm);
    free(c->plat);
    free(c->vars);
    free(c->sorted);
    free(c->asg);
    free(c->evbuf);
    free(c->host_ram);
    free(c->host_cores);
}

static void make_item(const struct simctx *c, size_t ti, struct kiln_pitem *it)
{
    const struct kiln_sim_task *t = &c->tasks[ti];
    memset(it, 0, sizeof *it);
    it->job_id = (int64_t)t->variant + 1;
    it->stage = t->stage;
    it->priority = c->vars[t->variant].priority;
    it->enqueued_at = 0;
    snprintf(it->platform, sizeof it->platform, "%s", c->plat[ti]);
    it->cores = t->cores;
    it->ram_mb = t->ram_mb;
    it->isa = c->isa[ti];
    snprintf(it->gpu_sm, sizeof it->gpu_sm, "%s", c->sm[ti]);
    it->sm_compat = c->sm_compat[ti];
    it->driver_min = c->driver_min[ti];
    it->est_s = t->est_s;
    it->crit_s = t->crit_s;
}

static int build_graph(struct simctx *c, const struct kiln_sim_opts *o, size_t *missing,
                       struct kiln_error *err)
{
    size_t nt = c->nt;
    size_t ne = 0;
    /* count edges: test <- build; build <- dep build (+ dep test) */
    for (size_t i = 0; i < nt; i++) {
        const struct kiln_sim_task *t = &c->tasks[i];
        if (t->stage == KILN_PSTAGE_TEST) {
            ne++;
        } else {
            const json_t *d = c->vars[t->variant].depends;
            ne += d ? json_array_size(d) * 2 : 0;
        }
    }
    c->dep_off = calloc(nt + 1, sizeof *c->dep_off);
    c->deps = malloc((ne ? ne : 1) * sizeof *c->deps);
    if (!c->dep_off || !c->deps) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    size_t e = 0;
    *missing = 0;
    for (size_t i = 0; i < nt; i++) {
        const struct kiln_sim_task *t = &c->tasks[i];
        c->dep_off[i] = e;
        if (t->stage == KILN_PSTAGE_TEST) {
            c->deps[e++] = i - 1; /* the build is stored just before its test */
            continue;
        }
        const json_t *d = c->vars[t->variant].depends;
        for (size_t k = 0; d && k < json_array_size(d); k++) {
            const char *dn = json_string_value(json_array_get(d, k));
            if (!dn) return kiln_fail(err, KILN_EINVAL, "%s: depends holds a non-name", t->name);
            long dv = find_var(c->vars, c->sorted, c->nv, dn);
            if (dv < 0) {
                (*missing)++;
                continue;
            }
            if ((size_t)dv == t->variant)
                return kiln_fail(err, KILN_EINVAL, "%s depends on itself", t->name);
            /* the build task of variant dv: the test (if any) follows it */
            c->deps[e++] = (size_t)c->vars[dv].build;
            if (o->deps_wait_test && c->vars[dv].test >= 0) c->deps[e++] = (size_t)c->vars[dv].test;
        }
    }
    c->dep_off[nt] = e;
    /* reverse edges */
    c->rdep_off = calloc(nt + 1, sizeof *c->rdep_off);
    c->rdeps = malloc((e ? e : 1) * sizeof *c->rdeps);
    c->pending = calloc(nt, sizeof *c->pending);
    size_t *fill = calloc(nt, sizeof *fill);
    if (!c->rdep_off || !c->rdeps || !c->pending || !fill) {
        free(fill);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < nt; i++)
        for (size_t k = c->dep_off[i]; k < c->dep_off[i + 1]; k++) {
            c->rdep_off[c->deps[k] + 1]++;
            c->pending[i]++;
        }
    for (size_t i = 0; i < nt; i++)
        c->rdep_off[i + 1] += c->rdep_off[i];
    for (size_t i = 0; i < nt; i++)
        for (size_t k = c->dep_off[i]; k < c->dep_off[i + 1]; k++) {
            size_t d = c->deps[k];
            c->rdeps[c->rdep_off[d] + fill[d]++] = i;
        }
    free(fill);
    double *est = malloc(nt * sizeof *est), *crit = malloc(nt * sizeof *crit);
    if (!est || !crit) {
        free(est);
        free(crit);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < nt; i++)
        est[i] = c->tasks[i].est_s;
    int rc = kiln_dag_critical_paths(nt, est, c->dep_off, c->deps, crit, err);
    if (rc == KILN_EINVAL) kiln_fail(err, rc, "the variants' dependencies form a cycle");
    for (size_t i = 0; !rc && i < nt; i++)
        c->tasks[i].crit_s = crit[i];
    free(est);
    free(crit);
    return rc;
}

static int plat_cmp(const void *a, const void *b, void *ctx)
{
    const struct simctx *c = ctx;
    return strcmp(c->plat[*(const size_t *)a], c->plat[*(const size_t *)b]);
}

static int sm_cmp(const void *a, const void *b, void *ctx)
{
    const struct simctx *c = ctx;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int r = strcmp(c->sm[x], c->sm[y]);
    return r ? r : c->sm_compat[x] - c->sm_compat[y];
}

/* The shortest chain that must still run after the last task of ix[g..e)
 * ends: min over them of (crit_s - est_s) / maxspeed. Valid only when every
 * task ran (an unplaceable dependent is in crit_s but not in the makespan),
 * so 0 otherwise. */
static double min_tail(const struct simctx *c, const struct kiln_sim_result *r, const size_t *ix,
                       size_t g, size_t e, double maxspeed)
{
    if (r->nunplaceable || g >= e) return 0;
    double m = T_TAIL_NONE;
    for (size_t k = g; k < e; k++) {
        const struct kiln_sim_task *t = &c->tasks[ix[k]];
        double tail = t->crit_s - t->est_s;
        if (tail < m) m = tail;
    }
    return m > 0 ? m / maxspeed : 0;
}

/* The slot term (slot_bound.h) of the group of tasks ix[g..e) on the hosts
 * with ok[h]: res 0 their cores, 1 their RAM, 2 their GPUs (ok[h] of them,
 * one test each). Seconds at the fastest speed, or 0 (no term). */
static double slot_term(const struct kiln_farm *f, const struct simctx *c, const size_t *ix,
                        size_t g, size_t e, int res, const int *ok, double maxspeed)
{
    size_t n = e - g, ncap = 0;
    for (size_t h = 0; h < f->nhosts; h++)
        ncap += res == 2 ? (size_t)ok[h] : ok[h] != 0;
    double *dur = malloc((n ? n : 1) * sizeof *dur);
    int64_t *demand = malloc((n ? n : 1) * sizeof *demand);
    int64_t *cap = malloc((ncap ? ncap : 1) * sizeof *cap);
    double out = 0;
    if (dur && demand && cap) {
        for (size_t k = 0; k < n; k++) {
            const struct kiln_sim_task *t = &c->tasks[ix[g + k]];
            dur[k] = t->est_s;
            demand[k] = res == 0 ? t->cores : res == 1 ? t->ram_mb : 1;
        }
        size_t m = 0;
        for (size_t h = 0; h < f->nhosts; h++)
            for (int k = 0; k < (res == 2 ? ok[h] : ok[h] != 0); k++)
                cap[m++] = res == 0 ? f->hosts[h].cores : res == 1 ? f->hosts[h].ram_mb : 1;
        out = kiln_slot_bound(dur, demand, n, cap, ncap) / maxspeed;
    }
    free(dur);
    free(demand);
    free(cap);
    return out;
}

/* Lower bound terms (see sim.h). The work terms: all of a group's work
 * (a platform's builds, or the tests of one SM) has to be done on the
 * group's capacity, so the group's last task ends no earlier than work /
 * capacity; and whichever task ends last, the chain of its dependents
 * (crit_s - est_s, the longest path after it, at the fastest host's speed)
 * runs after it. So makespan >= work / capacity + the shortest such chain
 * in the group (10 minutes in the seed: every build has a GPU smoke test). */
static void lower_bound(const struct kiln_farm *f, const struct simctx *c,
                        struct kiln_sim_result *r)
{
    double best = 0, maxspeed = 0;
    char what[160] = "nothing to do";
    for (size_t h = 0; h < f->nhosts; h++)
        if (f->hosts[h].speed > maxspeed) maxspeed = f->hosts[h].speed;
    if (maxspeed <= 0) maxspeed = 1;
    r->lb_chain = r->lb_longest = r->lb_work = 0;
    for (size_t i = 0; i < c->nt; i++) {
        const struct kiln_sim_task *t = &c->tasks[i];
        if (t->host < 0) continue;
        if (t->est_s / maxspeed > r->lb_longest) r->lb_longest = t->est_s / maxspeed;
        if (t->crit_s / maxspeed > r->lb_chain) r->lb_chain = t->crit_s / maxspeed;
    }
    if (r->lb_chain > best) {
        best = r->lb_chain;
        snprintf(what, sizeof what, "the longest dependency chain");
    }
    if (r->lb_longest > best) {
        best = r->lb_longest;
        snprintf(what, sizeof what, "the longest task");
    }
    /* per platform: build work over capacity. Placed builds only name
       platforms some host has, so the groups are few: sort, then scan. */
    size_t *ix = malloc((c->nt ? c->nt : 1) * sizeof *ix);
    int *ok = calloc(f->nhosts ? f->nhosts : 1, sizeof *ok);
    if (!ix || !ok) {
        free(ix);
        free(ok);
        r->lower_bound = best; /* still a valid (weaker) bound */
        snprintf(r->bound_what, sizeof r->bound_what, "%s", what);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < c->nt; i++)
        if (c->tasks[i].stage == KILN_PSTAGE_BUILD && c->tasks[i].host >= 0) ix[n++] = i;
    qsort_r(ix, n, sizeof *ix, plat_cmp, (void *)c);
    for (size_t g = 0; g < n;) {
        const char *plat = c->plat[ix[g]];
        double wc = 0, wr = 0, cc = 0, cr = 0;
        size_t e = g;
        for (; e < n && !strcmp(c->plat[ix[e]], plat); e++) {
            wc += c->tasks[ix[e]].cores * c->tasks[ix[e]].est_s;
            wr += (double)c->tasks[ix[e]].ram_mb * c->tasks[ix[e]].est_s;
        }
        double tail = min_tail(c, r, ix, g, e, maxspeed);
        for (size_t h = 0; h < f->nhosts; h++) {
            ok[h] = !f->hosts[h].no_builds && (!plat[0] || !strcmp(f->hosts[h].platform, plat));
            if (ok[h]) {
                cc += f->hosts[h].cores * f->hosts[h].speed;
                cr += (double)f->hosts[h].ram_mb * f->hosts[h].speed;
            }
        }
        double lc = cc > 0 ? wc / cc + tail : 0, lr = cr > 0 ? wr / cr + tail : 0;
        /* the busiest slot's whole builds (slot_bound.h), then the tail */
        double sc = slot_term(f, c, ix, g, e, 0, ok, maxspeed);
        double sr = slot_term(f, c, ix, g, e, 1, ok, maxspeed);
        g = e;
        int slot_c = sc > 0 && sc + tail > lc, slot_r = sr > 0 && sr + tail > lr;
        if (slot_c) lc = sc + tail;
        if (slot_r) lr = sr + tail;
        if (lc > r->lb_work) r->lb_work = lc;
        if (lr > r->lb_work) r->lb_work = lr;
        if (lc > best) {
            best = lc;
            snprintf(what, sizeof what, "build core-hours on %s over its cores%s%s",
                     plat[0] ? plat : "any platform", slot_c ? SLOT_WORDS : "",
                     tail > 0 ? TAIL_WORDS : "");
        }
        if (lr > best) {
            best = lr;
            snprintf(what, sizeof what, "build RAM-hours on %s over its RAM%s%s",
                     plat[0] ? plat : "any platform", slot_r ? SLOT_WORDS : "",
                     tail > 0 ? TAIL_WORDS : "");
        }
    }
    /* per SM requirement: test time over the GPUs that can run it */
    n = 0;
    for (size_t i = 0; i < c->nt; i++)
        if (c->tasks[i].stage == KILN_PSTAGE_TEST && c->tasks[i].host >= 0 && c->sm[i][0])
            ix[n++] = i;
    qsort_r(ix, n, sizeof *ix, sm_cmp, (void *)c);
    for (size_t g = 0; g < n;) {
        size_t i = ix[g], e = g;
        double w = 0, cap = 0;
        for (; e < n && !sm_cmp(&ix[e], &ix[g], (void *)c); e++)
            w += c->tasks[ix[e]].est_s;
        double tail = min_tail(c, r, ix, g, e, maxspeed);
        for (size_t h = 0; h < f->nhosts; h++) {
            ok[h] = 0;
            for (int k = 0; k < f->hosts[h].ngpus; k++)
                if (kiln_sm_matches(f->hosts[h].gpus[k].sm, c->sm[i], c->sm_compat[i])) {
                    cap += f->hosts[h].speed;
                    ok[h]++;
                }
        }
        double l = cap > 0 ? w / cap + tail : 0;
        double sg = slot_term(f, c, ix, g, e, 2, ok, maxspeed);
        g = e;
        int slot_g = sg > 0 && sg + tail > l;
        if (slot_g) l = sg + tail;
        if (l > r->lb_work) r->lb_work = l;
        if (l > best) {
            best = l;
            snprintf(what, sizeof what, "test hours on sm_%s GPUs%s%s", c->sm[i],
                     slot_g ? SLOT_WORDS : "", tail > 0 ? TAIL_WORDS : "");
        }
    }
    free(ix);
    free(ok);
    r->lower_bound = best;
    snprintf(r->bound_what, sizeof r->bound_what, "%s", what);
}

int kiln_sim_run(const struct kiln_farm *farm, const json_t *variants,
                 const struct kiln_sim_opts *opts, struct kiln_sim_result *out,
                 struct kiln_error *err)
{
    memset(out, 0, sizeof *out);
    struct kiln_sim_opts dflt;
    if (!opts) {
        kiln_sim_opts_default(&dflt);
        opts = &dflt;
    }
    if (!farm || !farm->nhosts) return kiln_fail(err, KILN_EINVAL, "the farm has no hosts");
    if (!json_is_array(variants))
        return kiln_fail(err, KILN_EINVAL, "variants must be a JSON array of variant objects");
    size_t nv = json_array_size(variants);
    if (nv * 2 > KILN_SIM_MAX_TASKS)
        return kiln_fail(err, KILN_ELIMIT, "%zu variants; the simulator takes at most %d", nv,
                         KILN_SIM_MAX_TASKS / 2);
    struct simctx c;
    memset(&c, 0, sizeof c);
    size_t cap = nv * 2 + 1;
    int rc = KILN_OK;
    struct kiln_placer *pl = NULL;
    c.tasks = calloc(cap, sizeof *c.tasks);
    c.isa = calloc(cap, sizeof *c.isa);
    c.sm_compat = calloc(cap, sizeof *c.sm_compat);
    c.driver_min = calloc(cap, sizeof *c.driver_min);
    c.sm = calloc(cap, sizeof *c.sm);
    c.plat = calloc(cap, sizeof *c.plat);
    c.vars = calloc(nv + 1, sizeof *c.vars);
    c.sorted = calloc(nv + 1, sizeof *c.sorted);
    c.asg = calloc(cap, sizeof *c.asg);
    c.evbuf = calloc(cap, sizeof *c.evbuf);
    c.host_ram = calloc(farm->nhosts, sizeof *c.host_ram);
    c.host_cores = calloc(farm->nhosts, sizeof *c.host_cores);
    out->hosts = calloc(farm->nhosts, sizeof *out->hosts);
    if (!c.tasks || !c.isa || !c.sm_compat || !c.driver_min || !c.sm || !c.plat || !c.vars ||
        !c.sorted || !c.asg || !c.evbuf || !c.host_ram || !c.host_cores || !out->hosts) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory for %zu variants", nv);
        goto done;
    }
    c.nv = nv;
    for (size_t i = 0; i < nv && !rc; i++)
        rc = load_variant(json_array_get(variants, i), i, opts, c.tasks, &c.nt, &c.vars[i], c.isa,
                          c.sm_compat, c.driver_min, c.sm, c.plat, err);
    if (rc) goto done;
    for (size_t i = 0; i < nv; i++)
        c.sorted[i] = i;
    qsort_r(c.sorted, nv, sizeof *c.sorted, name_cmp_ctx, c.vars);
    for (size_t i = 1; i < nv; i++)
        if (!strcmp(c.vars[c.sorted[i]].name, c.vars[c.sorted[i - 1]].name)) {
            rc = kiln_fail(err, KILN_EINVAL, "variant %s appears twice", c.vars[c.sorted[i]].name);
            goto done;
        }
    if ((rc = build_graph(&c, opts, &out->missing_deps, err))) goto done;
    /* The placer is fed the events the service feeds its own
     * (scheduler/trace.h), and like the service's workers each host takes
     * one item per pass (one lease request); passes repeat at the same
     * virtual time until nothing more starts, as agents ask again at once. */
    if ((rc = kiln_placer_new(&opts->policy, &pl, err))) goto done;
    size_t nodecide;
    for (size_t h = 0; h < farm->nhosts && !rc; h++) {
        struct kiln_trace_event wev = {.kind = KILN_TEV_WORKER};
        kiln_farm_worker(farm, h, &wev.w);
        wev.w.max_new = 1;
        rc = kiln_trace_apply(pl, &wev, NULL, 0, &nodecide, err);
        struct kiln_sim_host *sh = &out->hosts[h];
        snprintf(sh->name, sizeof sh->name, "%s", farm->hosts[h].name);
        sh->cores = farm->hosts[h].cores;
        sh->ram_mb = farm->hosts[h].ram_mb;
        sh->ngpus = farm->hosts[h].ngpus;
    }
    out->nhosts = farm->nhosts;
    for (size_t i = 0; i < c.nt && !rc; i++)
        if (!c.pending[i]) {
            struct kiln_trace_event add = {.kind = KILN_TEV_ADD};
            make_item(&c, i, &add.it);
            rc = kiln_trace_apply(pl, &add, NULL, 0, &nodecide, err);
        }
    if (rc) goto done;

    struct evheap ev = {c.evbuf, 0, c.tasks};
    double now = 0;
    size_t done_n = 0;
    for (;;) {
        size_t na = 0;
        struct kiln_trace_event dev = {.kind = KILN_TEV_DISPATCH, .t = now};
        rc = kiln_trace_apply(pl, &dev, c.asg, c.nt, &na, err);
        out->ndispatch++;
        if (rc) goto done;
        for (size_t k = 0; k < na; k++) {
            size_t vi = (size_t)(c.asg[k].job_id - 1);
            size_t ti =
                (size_t)(c.asg[k].stage == KILN_PSTAGE_TEST ? c.vars[vi].test : c.vars[vi].build);
            struct kiln_sim_task *t = &c.tasks[ti];
            size_t h = (size_t)(c.asg[k].worker_id - 1);
            t->host = (int)h;
            t->gpu = c.asg[k].gpu_index;
            t->start = now;
            t->end = now + t->est_s / farm->hosts[h].speed;
            c.host_cores[h] += t->cores;
            c.host_ram[h] += t->ram_mb;
            struct kiln_sim_host *sh = &out->hosts[h];
            if (c.host_ram[h] > sh->ram_peak_mb) sh->ram_peak_mb = c.host_ram[h];
            if (c.host_cores[h] > sh->cores_peak) sh->cores_peak = c.host_cores[h];
            ev_push(&ev, ti);
        }
        if (na) continue; /* the hosts ask again at once */
        if (!ev.n) break;
        size_t first = ev_pop(&ev);
        now = c.tasks[first].end;
        size_t cur = first;
        for (;;) {
            struct kiln_sim_task *t = &c.tasks[cur];
            size_t h = (size_t)t->host;
            c.host_cores[h] -= t->cores;
            c.host_ram[h] -= t->ram_mb;
            out->hosts[h].core_s += t->cores * (t->end - t->start);
            if (t->gpu >= 0) out->hosts[h].gpu_s += t->end - t->start;
            out->hosts[h].tasks++;
            struct kiln_trace_event fin = {.kind = KILN_TEV_FINISH,
                                           .t = now,
                                           .job_id = (int64_t)t->variant + 1,
                                           .stage = t->stage};
            if ((rc = kiln_trace_apply(pl, &fin, NULL, 0, &nodecide, err))) goto done;
            done_n++;
            for (size_t e = c.rdep_off[cur]; e < c.rdep_off[cur + 1]; e++) {
                size_t d = c.rdeps[e];
                if (--c.pending[d] == 0) {
                    struct kiln_trace_event add = {.kind = KILN_TEV_ADD, .t = now};
                    make_item(&c, d, &add.it);
                    if ((rc = kiln_trace_apply(pl, &add, NULL, 0, &nodecide, err))) goto done;
                }
            }
            if (!ev.n || c.tasks[ev.a[0]].end > now) break;
            cur = ev_pop(&ev);
        }
    }
    out->makespan = now;
    /* what never ran, and why */
    for (size_t i = 0; i < c.nt; i++) {
        struct kiln_sim_task *t = &c.tasks[i];
        if (t->host >= 0) {
            out->nplaced++;
            continue;
        }
        out->nunplaceable++;
        if (kiln_placer_reason(pl, (int64_t)t->variant + 1, t->stage, t->reason,
                               sizeof t->reason)) {
            const struct kiln_sim_task *b = NULL;
            for (size_t e = c.dep_off[i]; e < c.dep_off[i + 1] && !b; e++)
                if (c.tasks[c.deps[e]].host < 0) b = &c.tasks[c.deps[e]];
            if (!b)
                snprintf(t->reason, sizeof t->reason, "waits for a dependency that cannot run");
            else if (b->variant == t->variant)
                snprintf(t->reason, sizeof t->reason, "waits for its build, which cannot run");
            else
                snprintf(t->reason, sizeof t->reason,
                         "waits for the %s of %.120s, which cannot run",
                         b->stage == KILN_PSTAGE_TEST ? "test" : "build", b->name);
        }
    }
    for (size_t h = 0; h < farm->nhosts; h++) {
        struct kiln_sim_host *sh = &out->hosts[h];
        sh->util = now > 0 && sh->cores ? sh->core_s / (sh->cores * now) : 0;
        sh->gpu_util = now > 0 && sh->ngpus ? sh->gpu_s / (sh->ngpus * now) : 0;
    }
    lower_bound(farm, &c, out);
    out->ntasks = c.nt;
    out->tasks = c.tasks;
    c.tasks = NULL;
done:
    kiln_placer_free(pl);
    ctx_free(&c);
    if (rc) kiln_sim_result_free(out);
    return rc;
}

/* ---------- output ---------- */

json_t *kiln_sim_json(const struct kiln_sim_result *r, int with_tasks)
{
    json_t *o = json_object();
    json_t *hosts = json_array();
    json_t *tasks = with_tasks ? json_array() : NULL;
    if (!o || !hosts || (with_tasks && !tasks)) goto fail;
    int bad = 0;
    bad |= json_object_set_new(o, "makespan_s", json_real(r->makespan));
    bad |= json_object_set_new(o, "lower_bound_s", json_real(r->lower_bound));
    bad |= json_object_set_new(o, "ratio",
                               json_real(r->lower_bound > 0 ? r->makespan / r->lower_bound : 1));
    bad |= json_object_set_new(o, "bound", json_string(r->bound_what));
    bad |= json_object_set_new(o, "bound_chain_s", json_real(r->lb_chain));
    bad |= json_object_set_new(o, "bound_work_s", json_real(r->lb_work));
    bad |= json_object_set_new(o, "bound_longest_s", json_real(r->lb_longest));
    bad |= json_object_set_new(o, "tasks_total", json_integer((json_int_t)r->ntasks));
    bad |= json_object_set_new(o, "tasks_placed", json_integer((json_int_t)r->nplaced));
    bad |= json_object_set_new(o, "tasks_unplaceable", json_integer((json_int_t)r->nunplaceable));
    bad |=
        json_object_set_new(o, "missing_dependencies", json_integer((json_int_t)r->missing_deps));
    for (size_t h = 0; h < r->nhosts; h++) {
        const struct kiln_sim_host *sh = &r->hosts[h];
        json_t *x =
            json_pack("{s:s,s:i,s:I,s:i,s:f,s:f,s:I,s:i,s:I}", "name", sh->name, "cores", sh->cores,
                      "ram_mb", (json_int_t)sh->ram_mb, "gpus", sh->ngpus, "cpu_util", sh->util,
                      "gpu_util", sh->gpu_util, "ram_peak_mb", (json_int_t)sh->ram_peak_mb,
                      "cores_peak", sh->cores_peak, "tasks", (json_int_t)sh->tasks);
        if (!x || json_array_append_new(hosts, x)) goto fail;
    }
    for (size_t i = 0; with_tasks && i < r->ntasks; i++) {
        const struct kiln_sim_task *t = &r->tasks[i];
        json_t *x = json_pack("{s:s,s:s,s:s?,s:i,s:f,s:f,s:f}", "name", t->name, "stage",
                              t->stage == KILN_PSTAGE_TEST ? "test" : "build", "host",
                              t->host >= 0 ? r->hosts[t->host].name : NULL, "gpu", t->gpu,
                              "start_s", t->start, "end_s", t->end, "crit_s", t->crit_s);
        if (!x) goto fail;
        if (t->reason[0]) json_object_set_new(x, "reason", json_string(t->reason));
        if (json_array_append_new(tasks, x)) goto fail;
    }
    bad |= json_object_set_new(o, "hosts", hosts);
    hosts = NULL;
    if (with_tasks) {
        bad |= json_object_set_new(o, "tasks", tasks);
        tasks = NULL;
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
fail:
    json_decref(o);
    json_decref(hosts);
    json_decref(tasks);
    return NULL;
}

static int svg_text(struct kiln_buf *b, const char *s)
{
    int rc = 0;
    for (; *s && !rc; s++) {
        switch (*s) {
        case '<':
            rc = kiln_buf_puts(b, "&lt;");
            break;
        case '>':
            rc = kiln_buf_puts(b, "&gt;");
            break;
        case '&':
            rc = kiln_buf_puts(b, "&amp;");
            break;
        case '"':
            rc = kiln_buf_puts(b, "&quot;");
            break;
        default:
            rc = kiln_buf_append(b, s, 1);
            break;
        }
    }
    return rc;
}

/* One hue per SM so a chart shows where each GPU generation went. */
static unsigned hue_of(const char *name)
{
    const char *p = strstr(name, "-sm");
    unsigned h = 5381;
    if (!p) p = name;
    for (const char *q = p + (p != name); *q && *q != '-'; q++)
        h = h * 33 + (unsigned char)*q;
    return (h * 47) % 360;
}

int kiln_sim_svg(const struct kiln_farm *farm, const struct kiln_sim_result *r, const char *title,
                 struct kiln_buf *out)
{
    const int lane_h = 14, left = 170, width = 1200, top = 40;
    double span = r->makespan > 0 ? r->makespan : 1;
    double xs = (width - left - 20) / span;
    /* lanes: per host, greedy interval partitioning of its builds; one lane
       per GPU for tests */
    size_t nt = r->ntasks;
    int *lane = calloc(nt ? nt : 1, sizeof *lane);
    int *host_lanes = calloc(farm->nhosts, sizeof *host_lanes);
    double *lane_end = calloc(nt + 1, sizeof *lane_end);
    size_t *order = calloc(nt ? nt : 1, sizeof *order);
    int rc = KILN_OK;
    if (!lane || !host_lanes || !lane_end || !order) {
        rc = KILN_ENOMEM;
        goto out;
    }
    for (size_t h = 0; h < farm->nhosts; h++) {
        int nl = 0;
        size_t no = 0;
        for (size_t i = 0; i < nt; i++)
            if (r->tasks[i].host == (int)h && r->tasks[i].gpu < 0) order[no++] = i;
        /* insertion sort by start: a host has a few dozen tasks */
        for (size_t i = 1; i < no; i++) {
            size_t v = order[i], j = i;
            while (j > 0 && r->tasks[order[j - 1]].start > r->tasks[v].start) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = v;
        }
        for (size_t k = 0; k < no; k++) {
            const struct kiln_sim_task *t = &r->tasks[order[k]];
            int l = 0;
            while (l < nl && lane_end[l] > t->start + 1e-9)
                l++;
            if (l == nl) nl++;
            lane_end[l] = t->end;
            lane[order[k]] = l;
        }
        host_lanes[h] = nl ? nl : 1;
    }
    int rows = 0;
    for (size_t h = 0; h < farm->nhosts; h++)
        rows += host_lanes[h] + farm->hosts[h].ngpus;
    int height = top + rows * lane_h + (int)farm->nhosts * 6 + 40;
    rc |= kiln_buf_printf(out,
                          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                          "font-family=\"sans-serif\" font-size=\"10\">\n"
                          "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                          "<text x=\"10\" y=\"18\" font-size=\"14\">",
                          width, height);
    rc |= svg_text(out, title ? title : "kiln sim");
    rc |= kiln_buf_printf(out, " - makespan %.2f h, lower bound %.2f h (ratio %.3f)</text>\n",
                          r->makespan / 3600, r->lower_bound / 3600,
                          r->lower_bound > 0 ? r->makespan / r->lower_bound : 1.0);
    /* hour grid */
    double step = span > 48 * 3600 ? 6 * 3600 : span > 12 * 3600 ? 3600 * 2 : 3600;
    for (double t = 0; t <= span && !rc; t += step)
        rc |= kiln_buf_printf(out,
                              "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                              "<text x=\"%.1f\" y=\"%d\" fill=\"#666\">%.0fh</text>\n",
                              left + t * xs, top - 8, left + t * xs, height - 30, left + t * xs,
                              height - 18, t / 3600);
    int y = top;
    for (size_t h = 0; h < farm->nhosts && !rc; h++) {
        const struct kiln_farm_host *fh = &farm->hosts[h];
        rc |= kiln_buf_printf(out, "<text x=\"4\" y=\"%d\">", y + 10);
        rc |= svg_text(out, fh->name);
        rc |= kiln_buf_printf(out, " (%dc %lldG)</text>\n", fh->cores,
                              (long long)(fh->ram_mb / 1024));
        for (size_t i = 0; i < nt && !rc; i++) {
            const struct kiln_sim_task *t = &r->tasks[i];
            if (t->host != (int)h) continue;
            int row = t->gpu >= 0 ? host_lanes[h] + t->gpu : lane[i];
            double x = left + t->start * xs, wdt = (t->end - t->start) * xs;
            if (wdt < 1) wdt = 1;
            rc |= kiln_buf_printf(out,
                                  "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
                                  "fill=\"hsl(%u,60%%,%d%%)\" stroke=\"#333\" "
                                  "stroke-width=\"0.3\"><title>",
                                  x, y + row * lane_h, wdt, lane_h - 2, hue_of(t->name),
                                  t->stage == KILN_PSTAGE_TEST ? 45 : 70);
            rc |= svg_text(out, t->name);
            rc |= kiln_buf_printf(out, " %s %.2fh-%.2fh</title></rect>\n",
                                  t->stage == KILN_PSTAGE_TEST ? "test" : "build", t->start / 3600,
                                  t->end / 3600);
        }
        for (int g = 0; g < fh->ngpus && !rc; g++)
            rc |=
                kiln_buf_printf(out, "<text x=\"120\" y=\"%d\" fill=\"#555\">gpu%d sm_%s</text>\n",
                                y + (host_lanes[h] + g) * lane_h + 10, g, fh->gpus[g].sm);
        y += (host_lanes[h] + fh->ngpus) * lane_h + 6;
        rc |=
            kiln_buf_printf(out, "<line x1=\"0\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#aaa\"/>\n",
                            y - 3, width, y - 3);
    }
    rc |= kiln_buf_puts(out, "</svg>\n");
    if (rc) rc = KILN_ENOMEM;
out:
    free(lane);
    free(host_lanes);
    free(lane_end);
    free(order);
    return rc;
}
