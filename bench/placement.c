/* bench/placement.c - how long one dispatch decision takes with a deep queue.
 *
 * 10,000 queued job stages (seed-shaped: 16-core builds of 32-128 GiB on two
 * platforms, GPU tests over 10 SMs x 7 ISA levels, priorities 0-3) and 100
 * workers (70 build hosts, 30 GPU test hosts). The farm is filled, then in the
 * steady state one running item finishes, a new job arrives (the queue stays
 * at 10,000) and kiln_placer_dispatch() decides what starts: that call is
 * "one dispatch decision". The baseline, measured in the same run, is the
 * obvious full scan: sort the whole queue by priority and try every job on
 * every worker (O(jobs x workers) per decision).
 *
 *   make bench && build/bench/placement [jobs] [workers] [decisions]
 */
#include "common/clock.h"
#include "common/isa.h"
#include "scheduler/placement.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU time of this thread: the machine is shared, and wall time would
 * measure the neighbours' compilers; wall time is printed beside it. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t rnd_s(uint64_t *s, uint32_t n)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)((*s >> 11) % n);
}
#define rnd(n) rnd_s(rng, (n))

static const char *const SMS[] = {"61", "70", "75", "80", "86", "89", "90", "100", "103", "120"};
static const char *const X86[] = {"avx", "avx2", "avx512", "avx512bf16", "avx512vnni"};
static const char *const ARM[] = {"armv8_2", "armv9"};

static void make_worker(int i, struct kiln_pworker *w)
{
    memset(w, 0, sizeof *w);
    w->id = i + 1;
    w->state = KILN_PW_ONLINE;
    w->healthy = 1;
    int arm = i % 10 == 9;
    snprintf(w->platform, sizeof w->platform, "%s", arm ? "aarch64-linux" : "x86_64-linux");
    w->isa = kiln_isa_level_features(arm ? "armv9" : "avx512bf16") |
             kiln_isa_level_features(arm ? "armv8_2" : "avx512vnni");
    if (i < 70) {
        snprintf(w->name, sizeof w->name, "build-%d", i);
        w->cores_total = w->cores_free = 64;
        w->ram_total_mb = w->ram_free_mb = 512 * 1024;
    } else {
        snprintf(w->name, sizeof w->name, "gpu-%d", i);
        w->cores_total = w->cores_free = 32;
        w->ram_total_mb = w->ram_free_mb = 256 * 1024;
        w->no_builds = 1;
        w->ngpus = 2;
        for (int g = 0; g < 2; g++) {
            w->gpus[g].index = g;
            snprintf(w->gpus[g].sm, sizeof w->gpus[g].sm, "%s", SMS[(i + g * 3) % 10]);
            w->gpus[g].driver = 580;
        }
    }
}

static void make_item(uint64_t *rng, int64_t id, double t, struct kiln_pitem *it)
{
    memset(it, 0, sizeof *it);
    it->job_id = id;
    it->priority = (int)rnd(4);
    it->enqueued_at = t;
    int arm = rnd(10) == 0;
    snprintf(it->platform, sizeof it->platform, "%s", arm ? "aarch64-linux" : "x86_64-linux");
    if (rnd(3)) {
        it->stage = KILN_PSTAGE_BUILD;
        it->cores = 16;
        it->ram_mb = (int64_t)(32 << rnd(3)) * 1024;
        it->est_s = 3600 * (1 + rnd(4));
        it->crit_s = it->est_s + 3600 * rnd(5);
    } else {
        it->stage = KILN_PSTAGE_TEST;
        it->cores = 4;
        it->ram_mb = 16384;
        snprintf(it->gpu_sm, sizeof it->gpu_sm, "%s", SMS[rnd(10)]);
        it->isa = kiln_isa_level_features(arm ? ARM[rnd(2)] : X86[rnd(5)]);
        it->driver_min = rnd(2) ? 560 : 550;
        it->est_s = 600;
    }
}

/* ---- the baseline: a full scan per decision ---- */

struct naive {
    struct kiln_pitem *q;
    size_t n;
    struct kiln_pworker *w;
    size_t nw;
};

static int cmp_prio(const void *a, const void *b)
{
    const struct kiln_pitem *x = a, *y = b;
    if (x->priority != y->priority) return y->priority - x->priority;
    return x->enqueued_at < y->enqueued_at ? -1 : x->enqueued_at > y->enqueued_at;
}

static int naive_fits(const struct kiln_pitem *it, const struct kiln_pworker *w, int *gpu)
{
    *gpu = -1;
    if (strcmp(it->platform, w->platform) || w->cores_free < it->cores ||
        w->ram_free_mb < it->ram_mb || (w->isa & it->isa) != it->isa)
        return 0;
    if (it->stage == KILN_PSTAGE_BUILD) return !w->no_builds;
    for (int g = 0; g < w->ngpus; g++)
        if (!w->gpus[g].busy && kiln_sm_matches(w->gpus[g].sm, it->gpu_sm, it->sm_compat) &&
            w->gpus[g].driver >= it->driver_min) {
            *gpu = g;
            return 1;
        }
    return 0;
}

static size_t naive_dispatch(struct naive *s)
{
    qsort(s->q, s->n, sizeof *s->q, cmp_prio);
    size_t placed = 0;
    for (size_t i = 0; i < s->n; i++) {
        for (size_t k = 0; k < s->nw; k++) {
            int g;
            if (naive_fits(&s->q[i], &s->w[k], &g)) {
                s->w[k].cores_free -= s->q[i].cores;
                s->w[k].ram_free_mb -= s->q[i].ram_mb;
                if (g >= 0) s->w[k].gpus[g].busy = 1;
                s->q[i] = s->q[--s->n];
                i--;
                placed++;
                break;
            }
        }
    }
    return placed;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct running {
    int64_t job;
    int stage;
};

int main(int argc, char **argv)
{
    size_t njobs = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
    size_t nworkers = argc > 2 ? strtoul(argv[2], NULL, 10) : 100;
    size_t ndec = argc > 3 ? strtoul(argv[3], NULL, 10) : 2000;
    if (!njobs || !nworkers || nworkers > 100000 || !ndec || ndec > 1000000) {
        fprintf(stderr, "usage: placement [jobs] [workers] [decisions]\n");
        return 2;
    }
    uint64_t rng_state = 88172645463325252ull, *rng = &rng_state;
    struct kiln_error err = {0};
    struct kiln_policy pol;
    kiln_policy_default(&pol);
    struct kiln_placer *p = NULL;
    struct kiln_pworker *ws = calloc(nworkers, sizeof *ws);
    double *lat = calloc(ndec, sizeof *lat), *wlat = calloc(ndec, sizeof *wlat);
    struct running *run = calloc(njobs + ndec + 1, sizeof *run);
    struct kiln_assignment *out = calloc(njobs + 1, sizeof *out);
    struct naive nv = {calloc(njobs + 1, sizeof(struct kiln_pitem)), 0,
                       calloc(nworkers, sizeof *ws), nworkers};
    if (!ws || !lat || !wlat || !run || !out || !nv.q || !nv.w || kiln_placer_new(&pol, &p, &err)) {
        fprintf(stderr, "placement bench: setup failed: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < nworkers; i++) {
        make_worker((int)i, &ws[i]);
        if (kiln_placer_set_worker(p, &ws[i], &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
    }
    int64_t next = 1;
    double t0 = now_s();
    for (size_t i = 0; i < njobs; i++) {
        struct kiln_pitem it;
        make_item(rng, next++, (double)i, &it);
        if (kiln_placer_add(p, &it, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
    }
    double t_add = now_s() - t0;
    size_t nrun = 0, n = 0;
    t0 = now_s();
    if (kiln_placer_dispatch(p, 0, out, njobs, &n, &err)) return 1;
    double t_fill = now_s() - t0;
    for (size_t i = 0; i < n; i++)
        run[nrun++] = (struct running){out[i].job_id, out[i].stage};
    size_t filled = n;
    /* top the queue back up to njobs */
    for (size_t i = 0; i < n; i++) {
        struct kiln_pitem it;
        make_item(rng, next++, 0, &it);
        if (kiln_placer_add(p, &it, &err)) return 1;
    }
    size_t started = 0;
    for (size_t d = 0; d < ndec; d++) {
        double vt = 60.0 * (double)(d + 1);
        size_t k = rnd((uint32_t)nrun);
        if (kiln_placer_finish(p, run[k].job, run[k].stage)) {
            fprintf(stderr, "finish failed\n");
            return 1;
        }
        run[k] = run[--nrun];
        struct kiln_pitem it;
        make_item(rng, next++, vt, &it);
        if (kiln_placer_add(p, &it, &err)) return 1;
        double a = now_s(), aw = kiln_clock_mono();
        if (kiln_placer_dispatch(p, vt, out, njobs, &n, &err)) return 1;
        lat[d] = now_s() - a;
        wlat[d] = kiln_clock_mono() - aw;
        started += n;
        for (size_t i = 0; i < n; i++)
            run[nrun++] = (struct running){out[i].job_id, out[i].stage};
    }
    qsort(lat, ndec, sizeof *lat, cmp_d);
    qsort(wlat, ndec, sizeof *wlat, cmp_d);
    double sum = 0;
    for (size_t d = 0; d < ndec; d++)
        sum += lat[d];
    double med = lat[ndec / 2], p99 = lat[(size_t)(ndec * 0.99)], mx = lat[ndec - 1];
    /* a lease: one worker asks for work */
    double lease_sum = 0;
    size_t nlease = ndec < 500 ? ndec : 500;
    for (size_t d = 0; d < nlease; d++) {
        size_t k = rnd((uint32_t)nrun);
        kiln_placer_finish(p, run[k].job, run[k].stage);
        run[k] = run[--nrun];
        double a = now_s();
        size_t wi = rnd((uint32_t)nworkers);
        if (kiln_placer_dispatch_worker(p, 1e6, ws[wi].id, out, 4, &n, &err)) return 1;
        lease_sum += now_s() - a;
        for (size_t i = 0; i < n; i++)
            run[nrun++] = (struct running){out[i].job_id, out[i].stage};
    }

    /* baseline: the full scan, same queue shape, same farm (fill first so
       the decisions are steady-state ones too) */
    for (size_t i = 0; i < nworkers; i++)
        nv.w[i] = ws[i];
    for (size_t i = 0; i < njobs; i++)
        make_item(rng, (int64_t)i + 1, (double)i, &nv.q[nv.n++]);
    naive_dispatch(&nv);
    while (nv.n < njobs)
        make_item(rng, next++, 0, &nv.q[nv.n++]);
    size_t nbase = ndec < 200 ? ndec : 200;
    double base_sum = 0;
    for (size_t d = 0; d < nbase; d++) {
        /* free one build slot somewhere (like one item finishing) */
        struct kiln_pworker *w = &nv.w[rnd(70 < nworkers ? 70 : (uint32_t)nworkers)];
        if (w->cores_free + 16 <= w->cores_total) w->cores_free += 16;
        if (w->ram_free_mb + 65536 <= w->ram_total_mb) w->ram_free_mb += 65536;
        make_item(rng, next++, 0, &nv.q[nv.n < njobs ? nv.n++ : nv.n - 1]);
        double a = now_s();
        naive_dispatch(&nv);
        base_sum += now_s() - a;
        while (nv.n < njobs)
            make_item(rng, next++, 0, &nv.q[nv.n++]);
    }
    double base_avg = base_sum / (double)nbase;
    double avg = sum / (double)ndec;
    printf("placement bench: %zu queued job stages, %zu workers\n", njobs, nworkers);
    printf("  queue %zu items in %.1f ms (%.2f us each); initial fill placed %zu in %.2f ms\n",
           njobs, t_add * 1e3, t_add * 1e6 / (double)njobs, filled, t_fill * 1e3);
    printf("  dispatch decision (one item finished, one arrived; %zu decisions, %zu started):\n",
           ndec, started);
    printf("    median %.1f us, mean %.1f us, p99 %.1f us, max %.1f us\n", med * 1e6, avg * 1e6,
           p99 * 1e6, mx * 1e6);
    printf("    wall clock (shared machine): median %.1f us, p99 %.1f us, max %.1f us\n",
           wlat[ndec / 2] * 1e6, wlat[(size_t)(ndec * 0.99)] * 1e6, wlat[ndec - 1] * 1e6);
    printf("  lease (dispatch for one worker): mean %.1f us over %zu\n",
           lease_sum * 1e6 / (double)nlease, nlease);
    printf("  baseline full scan (sort queue, try every job on every worker): mean %.1f us\n",
           base_avg * 1e6);
    printf("  ratio baseline/kiln (mean): %.1fx; p99 under 1 ms: %s\n", base_avg / avg,
           p99 < 1e-3 ? "yes" : "NO");
    kiln_placer_free(p);
    free(ws);
    free(lat);
    free(wlat);
    free(run);
    free(out);
    free(nv.q);
    free(nv.w);
    return p99 < 1e-3 ? 0 : 1;
}
