/* bench/dispatch.c - N no-op jobs through submit -> lease -> report with W
 * local workers against a real in-process kiln server over loopback HTTP.
 *
 * Prints jobs/s (a batch of N submitted at once) and p50/p99 submit-to-start
 * latency (M jobs submitted one at a time while workers are idle), for kiln's
 * event-driven long-poll lease and for a baseline measured in the same run:
 * workers that poll with wait=0 every 50 ms (a periodic dispatcher). The last
 * lines are the ratios kiln/baseline. With B > 1 a third run uses batch
 * leases (?max=B: a worker takes up to B jobs in one round trip), and a
 * fourth adds group commit: each worker reports all the jobs of a lease in
 * one POST /workers/{id}/reports (one request, one transaction), and the
 * submitter sends S jobs per POST /jobs {"jobs":[...]} (only with S > 1).
 * A fifth run is the fourth with the agent's protocol since 2026-12-07:
 * the report asks for the next lease in the same round trip
 * (/reports?lease=B), so a worker that keeps getting work sends one request
 * per batch instead of two.
 *
 *   build/bench/dispatch [N=500] [W=4] [M=100] [B=1] [S=1]
 *
 * Batch submits (S > 1) ask for the brief answer (POST /jobs?brief=1: ids,
 * names and states, not whole jobs) since 2026-12-07 16:10;
 * DISPATCH_FULL_SUBMIT=1 asks for whole jobs, as before.
 * DISPATCH_ONLY_GROUP=1 runs only the group-commit runs (for a profile;
 * =2: only the report+lease run);
 * DISPATCH_KEEP=1 keeps each run's data directory (for a look at the store).
 * Each worker registers max(4, B) cores (1-core jobs: a lease of B needs B
 * cores); DISPATCH_CORES=C sets it (C=4 is what the bench used before
 * 2026-12-07 10:45).
 */
#include "common/clock.h"
#include "common/httpc.h"
#include "common/sqlite_open.h"
#include "common/token.h"
#include "server/serve.h"
#include "state/store.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct run {
    char url[64];
    char sub[KILN_TOKEN_LEN], wk[KILN_TOKEN_LEN];
    int long_poll;
    int batch;        /* ?max= of each lease */
    int batch_report; /* one /reports request per lease; 2: it asks for the next lease too */
    int nworkers;
    int cores; /* each worker's size: how many 1-core no-op jobs it holds */
    int maxid;
    double *submit_t, *start_t;
    atomic_int done_jobs;
    atomic_int stop;
};

struct wctx {
    struct run *r;
    int idx;
};

static void *worker(void *arg)
{
    struct wctx *w = arg;
    struct run *r = w->r;
    struct kiln_httpc c;
    kiln_httpc_init(&c, r->url, r->wk);
    char body[256];
    snprintf(body, sizeof body,
             "{\"name\":\"bench-%d\",\"cores\":%d,\"ram_mb\":%d,\"platform\":\"x86_64-linux\"}",
             w->idx, r->cores, r->cores * 2048);
    json_t *in = json_loads(body, 0, NULL), *out = NULL;
    long st;
    if (kiln_httpc_json(&c, "POST", "/api/v1/workers/register", in, 0, &st, &out, NULL) ||
        st != 200) {
        fprintf(stderr, "register failed\n");
        exit(1);
    }
    json_decref(in);
    long wid = (long)json_integer_value(json_object_get(out, "worker_id"));
    /* From now on the worker acts with the credential it was issued. */
    const char *cred = json_string_value(json_object_get(out, "credential"));
    if (!cred || strlen(cred) >= sizeof c.token) {
        fprintf(stderr, "register gave no credential\n");
        exit(1);
    }
    snprintf(c.token, sizeof c.token, "%s", cred);
    json_decref(out);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/workers/%ld/lease?wait=%d&max=%d", wid,
             r->long_poll ? 2 : 0, r->batch);
    json_t *empty = json_object(), *next = NULL; /* next: a lease a report's answer carried */
    while (!atomic_load(&r->stop)) {
        out = NULL;
        if (next) {
            out = next;
            next = NULL;
            st = 200;
        } else if (kiln_httpc_json(&c, "POST", path, empty, 10000, &st, &out, NULL))
            break;
        json_t *jobs = json_object_get(out, "jobs"), *job = json_object_get(out, "job");
        size_t nj = json_is_array(jobs) ? json_array_size(jobs) : job ? 1 : 0;
        for (size_t k = 0; st == 200 && k < nj; k++) {
            if (json_is_array(jobs)) job = json_array_get(jobs, k);
            int id = (int)json_integer_value(json_object_get(job, "id"));
            if (id > 0 && id <= r->maxid) r->start_t[id] = kiln_clock_mono();
        }
        json_t *reps = r->batch_report ? json_array() : NULL;
        for (size_t k = 0; st == 200 && k < nj; k++) {
            if (json_is_array(jobs)) job = json_array_get(jobs, k);
            int id = (int)json_integer_value(json_object_get(job, "id"));
            json_int_t att = json_integer_value(json_object_get(job, "attempt"));
            json_t *rep = json_pack("{s:i,s:I,s:s,s:i}", "job", id, "attempt", att, "stage",
                                    "build", "exit_code", 0);
            if (reps) {
                json_array_append_new(reps, rep);
                continue;
            }
            char rp[96];
            snprintf(rp, sizeof rp, "/api/v1/jobs/%d/report", id);
            json_t *ro = NULL;
            long rs;
            kiln_httpc_json(&c, "POST", rp, rep, 0, &rs, &ro, NULL);
            json_decref(rep);
            json_decref(ro);
            atomic_fetch_add(&r->done_jobs, 1);
        }
        if (reps && json_array_size(reps)) {
            char rp[96];
            if (r->batch_report == 2) /* as the agent does: the freed room asks at once */
                snprintf(rp, sizeof rp, "/api/v1/workers/%ld/reports?lease=%d", wid, r->batch);
            else
                snprintf(rp, sizeof rp, "/api/v1/workers/%ld/reports", wid);
            json_t *rb = json_pack("{s:O}", "reports", reps), *ro = NULL;
            long rs;
            if (kiln_httpc_json(&c, "POST", rp, rb, 0, &rs, &ro, NULL) || rs != 200) {
                fprintf(stderr, "batch report failed (%ld)\n", rs);
                exit(1);
            }
            atomic_fetch_add(&r->done_jobs, (int)json_array_size(reps));
            json_t *l = json_object_get(ro, "lease");
            if (json_is_object(l)) next = json_incref(l);
            json_decref(rb);
            json_decref(ro);
        }
        json_decref(reps);
        if (nj == 0 && !r->long_poll) {
            usleep(50000); /* the baseline: a periodic poller */
        }
        json_decref(out);
    }
    json_decref(empty);
    json_decref(next);
    kiln_httpc_cleanup(&c);
    return NULL;
}

static int submit_one(struct kiln_httpc *c, struct run *r)
{
    double t = kiln_clock_mono();
    json_t *in = json_pack("{s:s,s:s}", "name", "noop", "command", "true"), *out = NULL;
    long st;
    if (kiln_httpc_json(c, "POST", "/api/v1/jobs", in, 0, &st, &out, NULL) || st != 201) {
        fprintf(stderr, "submit failed (%ld)\n", st);
        exit(1);
    }
    json_decref(in);
    int id = (int)json_integer_value(
        json_object_get(json_array_get(json_object_get(out, "jobs"), 0), "id"));
    json_decref(out);
    if (id > 0 && id <= r->maxid) r->submit_t[id] = t;
    return id;
}

/* k jobs in one POST /jobs {"jobs":[...]} (one transaction). */
static void submit_many(struct kiln_httpc *c, struct run *r, int k)
{
    double t = kiln_clock_mono();
    json_t *list = json_array(), *out = NULL;
    for (int i = 0; i < k; i++)
        json_array_append_new(list, json_pack("{s:s,s:s}", "name", "noop", "command", "true"));
    json_t *in = json_pack("{s:o}", "jobs", list);
    long st;
    /* the brief answer (ids, names, states) unless DISPATCH_FULL_SUBMIT=1 */
    const char *full = getenv("DISPATCH_FULL_SUBMIT");
    const char *path = full && !strcmp(full, "1") ? "/api/v1/jobs" : "/api/v1/jobs?brief=1";
    if (kiln_httpc_json(c, "POST", path, in, 0, &st, &out, NULL) || st != 201) {
        fprintf(stderr, "batch submit failed (%ld)\n", st);
        exit(1);
    }
    json_decref(in);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(out, "jobs"), i, v)
    {
        int id = (int)json_integer_value(json_object_get(v, "id"));
        if (id > 0 && id <= r->maxid) r->submit_t[id] = t;
    }
    json_decref(out);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct result {
    double jobs_per_s, p50_ms, p99_ms;
    double srv_cpu_us; /* the server loop thread's CPU per job of the batch */
};

/* CPU seconds a thread has used: on a shared machine the wall-clock rate
 * moves with the load, the server's CPU per job much less. */
static double thread_cpu_s(pthread_t th)
{
    clockid_t cid;
    struct timespec ts;
    if (pthread_getcpuclockid(th, &cid) || clock_gettime(cid, &ts)) return 0;
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct srv {
    uv_loop_t loop;
    uv_async_t stop;
    struct kiln_server s;
    pthread_t th;
};

static void on_stop(uv_async_t *a)
{
    struct srv *v = a->data;
    kiln_server_shutdown(&v->s);
    uv_close((uv_handle_t *)&v->stop, NULL);
}

static void *loop_main(void *arg)
{
    struct srv *v = arg;
    uv_run(&v->loop, UV_RUN_DEFAULT);
    return NULL;
}

static struct result one_run(int long_poll, int batch, int batch_report, int sbatch, int n, int w,
                             int m)
{
    char dir[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/kiln-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) exit(1);
    struct run *r = calloc(1, sizeof *r);
    r->long_poll = long_poll;
    r->batch = batch;
    r->batch_report = batch_report;
    r->nworkers = w;
    /* A worker holds as many 1-core jobs as it has cores, so a lease of B
     * needs B cores: 4-core workers cap a batch lease at 4 jobs. */
    const char *ce = getenv("DISPATCH_CORES");
    r->cores = ce && atoi(ce) > 0 ? atoi(ce) : batch > 4 ? batch : 4;
    r->maxid = n + m + 16;
    r->submit_t = calloc((size_t)r->maxid + 1, sizeof(double));
    r->start_t = calloc((size_t)r->maxid + 1, sizeof(double));
    char db[300], h[KILN_SHA256_HEX];
    snprintf(db, sizeof db, "%s/kiln.db", dir);
    struct kiln_store *st;
    if (kiln_store_open(db, &st, NULL)) exit(1);
    kiln_token_generate(r->sub);
    kiln_token_hash(r->sub, h);
    kiln_store_token_add(st, KILN_ROLE_SUBMIT, "b", h, NULL, 0, NULL);
    kiln_token_generate(r->wk);
    kiln_token_hash(r->wk, h);
    kiln_store_token_add(st, KILN_ROLE_WORKER, "b", h, NULL, 0, NULL);
    kiln_store_close(st);

    struct srv *v = calloc(1, sizeof *v);
    struct kiln_serve_config cfg;
    kiln_serve_config_defaults(&cfg);
    snprintf(cfg.listen, sizeof cfg.listen, "127.0.0.1:0");
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", dir);
    cfg.log_level = KILN_LOG_WARN;
    uv_loop_init(&v->loop);
    struct kiln_error err = {0};
    if (kiln_server_init(&v->s, &v->loop, &cfg, &err)) {
        fprintf(stderr, "server: %s\n", err.msg);
        exit(1);
    }
    snprintf(r->url, sizeof r->url, "http://127.0.0.1:%d", kiln_http_server_port(v->s.http));
    uv_async_init(&v->loop, &v->stop, on_stop);
    v->stop.data = v;
    pthread_create(&v->th, NULL, loop_main, v);
    pthread_setname_np(v->th, "kiln-serve"); /* perf report --comm kiln-serve */

    pthread_t *ths = calloc((size_t)w, sizeof *ths);
    struct wctx *wc = calloc((size_t)w, sizeof *wc);
    for (int i = 0; i < w; i++) {
        wc[i] = (struct wctx){r, i};
        pthread_create(&ths[i], NULL, worker, &wc[i]);
    }
    usleep(200000);
    struct kiln_httpc c;
    kiln_httpc_init(&c, r->url, r->sub);
    struct result res;
    /* Throughput: a batch of n. */
    double t0 = kiln_clock_mono(), c0 = thread_cpu_s(v->th);
    for (int i = 0; i < n; i += sbatch) {
        if (sbatch == 1)
            submit_one(&c, r);
        else
            submit_many(&c, r, n - i < sbatch ? n - i : sbatch);
    }
    while (atomic_load(&r->done_jobs) < n)
        usleep(1000);
    res.jobs_per_s = n / (kiln_clock_mono() - t0);
    res.srv_cpu_us = (thread_cpu_s(v->th) - c0) * 1e6 / n;
    /* Latency: one at a time onto idle workers. */
    double *lat = calloc((size_t)m, sizeof *lat);
    for (int i = 0; i < m; i++) {
        int before = atomic_load(&r->done_jobs);
        int id = submit_one(&c, r);
        while (atomic_load(&r->done_jobs) == before)
            usleep(100);
        lat[i] = (r->start_t[id] - r->submit_t[id]) * 1000.0;
        usleep(20000); /* let the workers go back to waiting */
    }
    qsort(lat, (size_t)m, sizeof *lat, cmp);
    res.p50_ms = lat[m / 2];
    res.p99_ms = lat[(m * 99) / 100 >= m ? m - 1 : (m * 99) / 100];
    kiln_httpc_cleanup(&c);
    atomic_store(&r->stop, 1);
    for (int i = 0; i < w; i++)
        pthread_join(ths[i], NULL);
    uv_async_send(&v->stop);
    pthread_join(v->th, NULL);
    uv_run(&v->loop, UV_RUN_DEFAULT);
    kiln_server_cleanup(&v->s);
    uv_loop_close(&v->loop);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (getenv("DISPATCH_KEEP"))
        fprintf(stderr, "kept %s\n", dir);
    else if (system(cmd)) {
    }
    free(lat);
    free(ths);
    free(wc);
    free(v);
    free(r->submit_t);
    free(r->start_t);
    free(r);
    return res;
}

/* One kiln run's line of figures after its label. */
static void print_kiln(const char *label, const struct result *r)
{
    printf("%-26s %8.1f jobs/s   submit->start p50 %7.2f ms  p99 %7.2f ms   server CPU %6.0f "
           "us/job (%6.0f jobs/s per core)\n",
           label, r->jobs_per_s, r->p50_ms, r->p99_ms, r->srv_cpu_us, 1e6 / r->srv_cpu_us);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 500;
    int w = argc > 2 ? atoi(argv[2]) : 4;
    int m = argc > 3 ? atoi(argv[3]) : 100;
    int bt = argc > 4 ? atoi(argv[4]) : 1;
    int sb = argc > 5 ? atoi(argv[5]) : 1;
    if (n < 1 || w < 1 || m < 2 || bt < 1 || bt > 64 || sb < 1 || sb > 1000) {
        fprintf(stderr, "usage: dispatch [N>=1] [W>=1] [M>=2] [B=1..64] [S=1..1000]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    kiln_sqlite_process_init(); /* as kiln's main() does */
    printf("dispatch bench: %d no-op jobs, %d workers, %d latency samples (loopback HTTP, real "
           "store)\n",
           n, w, m);
    if (getenv("DISPATCH_ONLY_GROUP") && bt > 1 && sb > 1) { /* for perf: the last runs only */
        int mode = atoi(getenv("DISPATCH_ONLY_GROUP"));
        if (mode != 2) {
            struct result kg = one_run(1, bt, 1, sb, n, w, m);
            printf("kiln group commit (S=%-4d) %8.1f jobs/s   server CPU %6.0f us/job\n", sb,
                   kg.jobs_per_s, kg.srv_cpu_us);
        }
        struct result kr = one_run(1, bt, 2, sb, n, w, m);
        printf("kiln report+lease (S=%-4d) %8.1f jobs/s   server CPU %6.0f us/job\n", sb,
               kr.jobs_per_s, kr.srv_cpu_us);
        return 0;
    }
    struct result k = one_run(1, 1, 0, 1, n, w, m);
    printf("kiln (long-poll lease):   %8.1f jobs/s   submit->start p50 %7.2f ms  p99 %7.2f ms"
           "   server CPU %6.0f us/job (%6.0f jobs/s per core)\n",
           k.jobs_per_s, k.p50_ms, k.p99_ms, k.srv_cpu_us, 1e6 / k.srv_cpu_us);
    struct result b = one_run(0, 1, 0, 1, n, w, m);
    printf("baseline (50 ms polling): %8.1f jobs/s   submit->start p50 %7.2f ms  p99 %7.2f ms"
           "   server CPU %6.0f us/job\n",
           b.jobs_per_s, b.p50_ms, b.p99_ms, b.srv_cpu_us);
    printf("ratio throughput kiln/baseline: %.2fx\n", k.jobs_per_s / b.jobs_per_s);
    if (bt > 1) {
        struct result kb = one_run(1, bt, 0, 1, n, w, m);
        char label[64];
        snprintf(label, sizeof label, "kiln batch leases max=%-3d", bt);
        print_kiln(label, &kb);
        printf("ratio throughput batch/single lease: %.2fx\n", kb.jobs_per_s / k.jobs_per_s);
        if (sb > 1) { /* group commit needs the batch routes */
            struct result kg = one_run(1, bt, 1, sb, n, w, m);
            snprintf(label, sizeof label, "kiln group commit (S=%-4d)", sb);
            print_kiln(label, &kg);
            printf("ratio throughput group commit/single lease: %.2fx\n",
                   kg.jobs_per_s / k.jobs_per_s);
            struct result kr = one_run(1, bt, 2, sb, n, w, m);
            snprintf(label, sizeof label, "kiln report+lease (S=%-4d)", sb);
            print_kiln(label, &kr);
            printf("ratio throughput report+lease/group commit: %.2fx\n",
                   kr.jobs_per_s / kg.jobs_per_s);
        }
    }
    printf("ratio p50 latency baseline/kiln: %.2fx (higher = kiln starts jobs sooner)\n",
           b.p50_ms / (k.p50_ms > 0 ? k.p50_ms : 1e-3));
    return 0;
}
