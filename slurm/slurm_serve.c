/* slurm_serve.c - the Slurm executor plugged into kiln serve (see
 * slurm_serve.h). One struct pool per configured pool; each owns the Slurm
 * jobs it submitted (struct sjob, in memory only: after a restart squeue
 * tells them again). Everything runs on the loop thread; Slurm commands run
 * as child processes (slurm_cmd.h), never blocking the loop. */
#include "slurm/slurm_serve.h"

#include "common/clock.h"
#include "common/fsutil.h"
#include "common/isa.h"
#include "common/json_field.h"
#include "slurm/executor.h"
#include "slurm/slurm_cmd.h"
#include "server/auth.h"
#include "state/access.h"
#include "state/registry.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_POOLS 4
#define MAX_NODES 256
#define TICK_MS 100
#define HEARTBEAT_S 1.0
#define SINFO_S 5.0
#define LEASE_WAIT_MS 30000
#define CMD_TIMEOUT_MS 30000
#define GONE_GRACE_S 5.0 /* a job missing from squeue this long is lost */
#define END_GRACE_S 2.0  /* a report may still be on its way when Slurm says done */

/* The batch script: fixed text, no field of any job in it. Everything the
 * step needs comes as "$@" (sbatch passes the arguments after the script),
 * so no shell ever parses a value. */
static const char STEP_SCRIPT[] =
    "#!/bin/sh\n"
    "# Written by kiln serve (Slurm executor): runs one kiln stage.\n"
    "# The command line is \"$@\": kiln worker --step JOB:ATTEMPT ...\n"
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}\n"
    "export PATH\n"
    "exec \"$@\"\n";

struct pool;

/* One Slurm job of this pool: a lease of (job, attempt). */
struct sjob {
    struct pool *p;
    struct sjob *next;
    int64_t job, attempt;
    int64_t slurm_id; /* 0 while sbatch has not answered */
    int sbatch_inflight;
    int cancel_wanted; /* scancel once the id is known */
    int cancel_sent;
    char state[32], reason[64], nodes[128];
    double seen_at;  /* last squeue that listed it */
    double ended_at; /* first squeue that showed a final state */
};

struct pool {
    struct kiln_slurm_serve *ss;
    struct kiln_slurm_pool conf;
    char worker_name[80];
    int64_t worker_id; /* 0 until registered */
    struct kiln_waiter *waiter;
    int want_wait;
    struct sjob *jobs;
    int sinfo_inflight, squeue_inflight;
    int have_nodes, reconciled;
    int nnodes;
    struct kiln_slurm_node nodes[MAX_NODES];
    json_t *last_size; /* what the worker registered with (re-register on change) */
    double next_poll, next_sinfo, next_hb;
    char credential[KILN_TOKEN_LEN]; /* the pool worker's, handed to its steps */
    char last_error[256];
};

struct kiln_slurm_serve {
    struct kiln_server *srv;
    int npools;
    struct pool pools[MAX_POOLS];
    uv_timer_t tick, rearm;
    int stopping;
    int inflight; /* Slurm commands running (the state waits for them) */
    int freed;    /* cleanup ran while commands were still running */
    char dir[PATH_MAX];
    char script[PATH_MAX];
};

static void run_cmd(struct pool *p, const char *const *argv, kiln_slurm_cmd_done done, void *arg);
static void on_rearm(uv_timer_t *t);

/* ---- small helpers ---- */

static struct sjob *find_sjob(struct pool *p, int64_t job, int64_t attempt)
{
    for (struct sjob *s = p->jobs; s; s = s->next)
        if (s->job == job && (attempt <= 0 || s->attempt == attempt)) return s;
    return NULL;
}

static void lease_path(const struct kiln_slurm_serve *ss, int64_t job, int64_t attempt, char *out,
                       size_t n)
{
    snprintf(out, n, "%s/leases/%" PRId64 "-%" PRId64 ".json", ss->dir, job, attempt);
}

static void drop_sjob(struct pool *p, struct sjob *s)
{
    char path[PATH_MAX + 64];
    lease_path(p->ss, s->job, s->attempt, path, sizeof path);
    unlink(path);
    for (struct sjob **pp = &p->jobs; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    free(s);
}

/* Where (job, attempt) stands, from one read of the job:
 * - ATT_CURRENT: the store still has it running on this pool;
 * - ATT_ENDED: its stage ended normally (built, testing, tested,
 *   succeeded), so its step has reported and exits on its own; a scancel
 *   there raced the step's exit and left Slurm saying CANCELLED;
 * - ATT_STALE: anything else (cancelled, superseded, requeued, gone). */
enum attempt_fate { ATT_STALE, ATT_CURRENT, ATT_ENDED };

static enum attempt_fate fate(struct pool *p, const struct sjob *s)
{
    json_t *o = NULL;
    if (kiln_jobs_get(&p->ss->srv->jobs, s->job, &o, NULL)) return ATT_STALE;
    const char *st = json_string_value(json_object_get(o, "state"));
    enum attempt_fate f = ATT_STALE;
    if (st && (!strcmp(st, "building") || !strcmp(st, "testing")) &&
        json_integer_value(json_object_get(o, "attempt")) == s->attempt &&
        json_integer_value(json_object_get(o, "worker_id")) == p->worker_id)
        f = ATT_CURRENT;
    else if (st && (!strcmp(st, "built") || !strcmp(st, "testing") || !strcmp(st, "tested") ||
                    !strcmp(st, "succeeded")))
        f = ATT_ENDED;
    json_decref(o);
    return f;
}

/* 1 when the store still has (job, attempt) running on this pool. */
static int current(struct pool *p, const struct sjob *s)
{
    return fate(p, s) == ATT_CURRENT;
}

static void log_pool(struct pool *p, enum kiln_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_pool(struct pool *p, enum kiln_log_level lvl, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_log(&p->ss->srv->log, lvl, "slurm pool %s: %s", p->conf.name, msg);
}

static void scancel(struct pool *p, struct sjob *s);

/* Requeue (job, attempt) as a new attempt. A Slurm job of the old attempt
 * that Slurm still counts as live is cancelled first, so the old attempt
 * never runs beside the new one. (After a node failure Slurm cannot reach
 * that node's slurmd: the step there notices itself that its attempt is
 * not current, see workers/agent.c, and stops its command.) */
static void infra_fail(struct pool *p, struct sjob *s, const char *why)
{
    struct kiln_error err = {0};
    if (!current(p, s)) return;
    if (s->slurm_id && !kiln_slurm_state_final(s->state)) scancel(p, s);
    if (kiln_jobs_infra_fail(&p->ss->srv->jobs, s->job, why, kiln_clock_wall(), &err))
        log_pool(p, KILN_LOG_WARN, "job %" PRId64 ": cannot requeue: %s", s->job, err.msg);
    else
        log_pool(p, KILN_LOG_INFO, "job %" PRId64 " attempt %" PRId64 ": %s", s->job, s->attempt,
                 why);
    kiln_serve_changed(p->ss->srv);
}

/* ---- scancel ---- */

struct cancel_ctx {
    struct pool *p;
    int64_t slurm_id;
};

static void scancel_done(void *arg, int status, const char *out, const char *errout)
{
    struct cancel_ctx *c = arg;
    (void)out;
    if (status != 0 && !c->p->ss->freed)
        log_pool(c->p, KILN_LOG_WARN, "scancel %" PRId64 " failed (%d): %.200s", c->slurm_id,
                 status, errout);
    free(c);
}

static void scancel(struct pool *p, struct sjob *s)
{
    if (!s->slurm_id) {
        s->cancel_wanted = 1; /* sbatch still on its way */
        return;
    }
    if (s->cancel_sent) return;
    s->cancel_sent = 1;
    struct cancel_ctx *c = malloc(sizeof *c);
    if (!c) return;
    c->p = p;
    c->slurm_id = s->slurm_id;
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, s->slurm_id);
    const char *argv[] = {"scancel", id, NULL};
    run_cmd(p, argv, scancel_done, c);
}

/* Cancel the Slurm job of every listed kiln job (heartbeat or lease answer)
 * whose attempt is stale; one that ended normally is left to exit. */
static void cancel_list(struct pool *p, json_t *list)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        int64_t id = json_integer_value(e);
        for (struct sjob *s = p->jobs; s; s = s->next)
            if (s->job == id && fate(p, s) == ATT_STALE) scancel(p, s);
    }
}

/* ---- commands ---- */

struct cmd_ctx {
    struct kiln_slurm_serve *ss;
    kiln_slurm_cmd_done done;
    void *arg;
};

static void cmd_done(void *arg, int status, const char *out, const char *errout)
{
    struct cmd_ctx *c = arg;
    struct kiln_slurm_serve *ss = c->ss;
    ss->inflight--;
    if (!ss->freed)
        c->done(c->arg, status, out, errout);
    else if (c->done == scancel_done)
        free(c->arg);
    free(c);
    if (ss->freed && ss->inflight == 0) free(ss);
}

static void run_cmd(struct pool *p, const char *const *argv, kiln_slurm_cmd_done done, void *arg)
{
    struct kiln_error err = {0};
    struct cmd_ctx *c = malloc(sizeof *c);
    if (!c) {
        done(arg, -1, "", "out of memory");
        return;
    }
    c->ss = p->ss;
    c->done = done;
    c->arg = arg;
    if (kiln_slurm_cmd_run(p->ss->srv->loop, argv, CMD_TIMEOUT_MS, cmd_done, c, &err)) {
        free(c);
        done(arg, -1, "", err.msg);
        return;
    }
    p->ss->inflight++;
}

/* ---- sbatch ---- */

struct sbatch_ctx {
    struct pool *p;
    int64_t job, attempt;
};

static void sbatch_done(void *arg, int status, const char *out, const char *errout)
{
    struct sbatch_ctx *c = arg;
    struct pool *p = c->p;
    struct sjob *s = find_sjob(p, c->job, c->attempt);
    free(c);
    if (!s) return;
    s->sbatch_inflight = 0;
    char *e;
    long long id = strtoll(out, &e, 10);
    if (status != 0 || id <= 0 || (*e && *e != ';' && *e != '\n')) {
        char why[400];
        snprintf(why, sizeof why, "sbatch refused it (status %d): %.300s", status,
                 errout[0] ? errout : out);
        why[strcspn(why, "\n")] = '\0';
        snprintf(p->last_error, sizeof p->last_error, "%.250s", why);
        infra_fail(p, s, why);
        drop_sjob(p, s);
        return;
    }
    s->slurm_id = id;
    s->seen_at = kiln_clock_wall();
    if (s->cancel_wanted) scancel(p, s);
}

static void submit(struct pool *p, json_t *lease)
{
    struct kiln_server *srv = p->ss->srv;
    int64_t job = json_integer_value(json_object_get(lease, "id"));
    int64_t attempt = json_integer_value(json_object_get(lease, "attempt"));
    if (job <= 0 || attempt <= 0) return;
    struct sjob *s = calloc(1, sizeof *s);
    if (!s) return; /* the registry requeues it: it is not in our running list */
    s->p = p;
    s->job = job;
    s->attempt = attempt;
    s->seen_at = kiln_clock_wall();
    snprintf(s->state, sizeof s->state, "SUBMITTING");
    s->next = p->jobs;
    p->jobs = s;

    struct kiln_error err = {0};
    char path[PATH_MAX + 64];
    lease_path(p->ss, job, attempt, path, sizeof path);
    json_t *doc = json_pack("{s:O}", "job", lease);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    struct kiln_stage_needs nd;
    int rc = KILN_OK;
    if (!text)
        rc = kiln_fail(&err, KILN_ENOMEM, "out of memory");
    else if (kiln_write_file_atomic(path, text, strlen(text), 0600))
        rc = kiln_fail(&err, KILN_EIO, "cannot write %s: %s", path, strerror(errno));
    free(text);
    if (!rc) rc = kiln_jobs_needs(&srv->jobs, job, &nd, &err);
    struct kiln_slurm_argv av;
    if (!rc) {
        const char *stage = json_string_value(json_object_get(lease, "stage"));
        struct kiln_slurm_stage st = {
            .job = job,
            .attempt = attempt,
            .worker_id = p->worker_id,
            .stage = stage ? stage : "build",
            .cores = (int)json_integer_value(json_object_get(lease, "cores")),
            .ram_mb = json_integer_value(json_object_get(lease, "ram_mb")),
            .timeout_s = json_number_value(json_object_get(lease, "timeout_s")),
            .gpu_sm = nd.gpu_sm,
            .isa = nd.isa,
        };
        rc = kiln_slurm_sbatch_argv(&p->conf, p->ss->script, &st, &av, &err);
    }
    struct sbatch_ctx *c = rc ? NULL : malloc(sizeof *c);
    if (!rc && !c) rc = kiln_fail(&err, KILN_ENOMEM, "out of memory");
    if (rc) {
        char why[400];
        snprintf(why, sizeof why, "the Slurm executor could not submit it: %.300s", err.msg);
        infra_fail(p, s, why);
        drop_sjob(p, s);
        return;
    }
    c->p = p;
    c->job = job;
    c->attempt = attempt;
    s->sbatch_inflight = 1;
    run_cmd(p, av.argv, sbatch_done, c);
}

/* ---- leases from dispatch ---- */

static void on_lease(void *arg, int status, json_t *body)
{
    struct pool *p = arg;
    p->waiter = NULL;
    p->want_wait = 1;
    /* ask again from the loop, not from inside dispatch's callback */
    if (!p->ss->stopping) uv_timer_start(&p->ss->rearm, on_rearm, 0, 0);
    if (status == 200 && body) {
        cancel_list(p, json_object_get(body, "cancel"));
        json_t *jo = json_object_get(body, "job");
        if (json_is_object(jo)) submit(p, jo);
    }
    json_decref(body);
}

static void rearm_pool(struct pool *p)
{
    struct kiln_server *srv = p->ss->srv;
    /* A waiter answered at once calls on_lease inside kiln_dispatch_wait and
     * asks again: keep asking until dispatch has nothing more for us. */
    int guard = 0;
    while (p->worker_id && p->reconciled && !p->waiter && p->want_wait && !p->ss->stopping &&
           guard++ < 1000) {
        p->want_wait = 0;
        struct kiln_offer off = {.free_cores = -1, .free_ram_mb = -1};
        p->waiter = kiln_dispatch_wait(srv->dispatch, p->worker_id, NULL, &off, 1, LEASE_WAIT_MS,
                                       on_lease, p);
    }
    if (guard) kiln_events_notify(srv->events);
}

static void on_rearm(uv_timer_t *t)
{
    struct kiln_slurm_serve *ss = t->data;
    for (int i = 0; i < ss->npools; i++)
        rearm_pool(&ss->pools[i]);
}

/* ---- registering the partition as a worker ---- */

static json_t *running_json(struct pool *p)
{
    json_t *a = json_array();
    int n = 0;
    for (struct sjob *s = p->jobs; s && a && n < 512; s = s->next, n++)
        json_array_append_new(a, json_pack("{s:I,s:I}", "job", (json_int_t)s->job, "attempt",
                                           (json_int_t)s->attempt));
    return a;
}

/* The worker's size, GPUs, ISA and labels from the nodes sinfo listed. */
static json_t *size_json(struct pool *p)
{
    int cores = 0;
    int64_t ram = 0;
    uint32_t isa = 0;
    json_t *gpus = json_array(), *labels = json_object();
    if (!gpus || !labels) {
        json_decref(gpus);
        json_decref(labels);
        return NULL;
    }
    int up = 0;
    for (int i = 0; i < p->nnodes; i++) {
        const struct kiln_slurm_node *nd = &p->nodes[i];
        char desc[200];
        snprintf(desc, sizeof desc, "%s, %d CPUs, %" PRId64 " MiB%s%s", nd->state, nd->cpus,
                 nd->ram_mb, strcmp(nd->gres, "(null)") ? ", " : "",
                 strcmp(nd->gres, "(null)") ? nd->gres : "");
        char key[80];
        snprintf(key, sizeof key, "node.%s", nd->name);
        json_object_set_new(labels, key, json_string(desc));
        /* down, drained and other nodes take no work: leave them out of the size */
        const char *word = kiln_slurm_node_state_word(nd->state);
        if (strcmp(word, "idle") && strcmp(word, "mixed") && strcmp(word, "alloc")) continue;
        up++;
        cores += nd->cpus;
        ram += nd->ram_mb;
        for (int k = 0; k < p->conf.nisa; k++) {
            char f[300];
            snprintf(f, sizeof f, ",%s,", nd->features);
            char want[80];
            snprintf(want, sizeof want, ",%s,", p->conf.isa[k].feature);
            if (strstr(f, want)) isa |= kiln_isa_level_features(p->conf.isa[k].level);
        }
        for (int k = 0; k < p->conf.ngpu; k++) {
            int n = p->conf.gpu[k].gres[0] ? kiln_slurm_node_gpus(nd, p->conf.gpu[k].gres) : 0;
            for (int g = 0; g < n && json_array_size(gpus) < KILN_MAX_GPUS; g++)
                json_array_append_new(
                    gpus, json_pack("{s:i,s:s,s:i,s:i}", "index", (int)json_array_size(gpus), "sm",
                                    p->conf.gpu[k].sm, "driver", p->conf.driver, "memory_mb", 0));
        }
    }
    json_object_set_new(labels, "executor", json_string("slurm"));
    json_object_set_new(labels, "partition",
                        json_string(p->conf.partition[0] ? p->conf.partition : "(default)"));
    json_object_set_new(labels, "nodes_up", json_integer(up));
    char feats[512] = "";
    kiln_isa_feature_list(isa, feats, sizeof feats);
    json_t *isa_arr = json_array();
    for (char *tok = strtok(feats, " ,"); tok && isa_arr; tok = strtok(NULL, " ,"))
        json_array_append_new(isa_arr, json_string(tok));
    return json_pack("{s:s,s:i,s:I,s:s,s:o,s:o,s:o}", "name", p->worker_name, "cores",
                     cores > 0 ? cores : 1, "ram_mb", (json_int_t)(ram > 0 ? ram : 1), "platform",
                     p->conf.platform, "isa_features", isa_arr ? isa_arr : json_array(), "gpus",
                     gpus, "labels", labels);
}

/* The pool worker's credential: its steps report with it (the server binds
 * reports to the credential's worker). Kept in DATA/slurm/<pool>.credential
 * (0600) and reused across restarts, because issuing a new one revokes the
 * old one that running steps hold. */
static void ensure_credential(struct pool *p)
{
    struct kiln_server *srv = p->ss->srv;
    char path[PATH_MAX + 100], hash[KILN_SHA256_HEX];
    snprintf(path, sizeof path, "%s/%s.credential", p->ss->dir, p->conf.name);
    struct kiln_buf b = {0};
    struct kiln_principal who;
    struct kiln_error err = {0};
    if (!kiln_read_file(path, KILN_TOKEN_LEN + 8, &b) && b.len >= KILN_TOKEN_LEN - 1) {
        snprintf(p->credential, sizeof p->credential, "%.*s", KILN_TOKEN_LEN - 1, b.data);
        if (!kiln_token_hash(p->credential, hash) &&
            !kiln_access_identify(srv->st, hash, &who, &err) && who.worker_id == p->worker_id) {
            kiln_buf_free(&b);
            return;
        }
    }
    kiln_buf_free(&b);
    p->credential[0] = '\0';
    if (kiln_access_issue_worker_credential(srv->st, p->worker_id, p->worker_name,
                                            kiln_clock_wall(), p->credential, &err)) {
        log_pool(p, KILN_LOG_ERROR, "cannot issue the pool's credential: %s", err.msg);
        p->credential[0] = '\0';
        return;
    }
    if (kiln_write_file_atomic(path, p->credential, strlen(p->credential), 0600))
        log_pool(p, KILN_LOG_WARN, "cannot keep the credential in %s: %s", path, strerror(errno));
}

static void do_register(struct pool *p)
{
    json_t *body = size_json(p);
    json_t *run = running_json(p);
    if (!body || !run) {
        json_decref(body);
        json_decref(run);
        return;
    }
    json_decref(p->last_size);
    p->last_size = json_deep_copy(body);
    json_object_set_new(body, "running", run);
    int64_t id = 0;
    json_t *cancel = NULL;
    struct kiln_error err = {0};
    if (kiln_registry_register(&p->ss->srv->jobs, body, kiln_clock_wall(), &id, &cancel, &err)) {
        log_pool(p, KILN_LOG_ERROR, "cannot register: %s", err.msg);
        json_decref(body);
        return;
    }
    json_decref(body);
    if (!p->worker_id)
        log_pool(p, KILN_LOG_INFO, "registered as worker %" PRId64 " (%s), %d node%s", id,
                 p->worker_name, p->nnodes, p->nnodes == 1 ? "" : "s");
    p->worker_id = id;
    ensure_credential(p);
    cancel_list(p, cancel);
    json_decref(cancel);
    p->want_wait = 1;
    kiln_serve_changed(p->ss->srv);
    rearm_pool(p);
}

static void heartbeat(struct pool *p)
{
    json_t *body = json_pack("{s:o}", "running", running_json(p));
    json_t *cancel = NULL;
    int drain = 0;
    struct kiln_error err = {0};
    int rc = body ? kiln_registry_heartbeat(&p->ss->srv->jobs, p->worker_id, body,
                                            kiln_clock_wall(), &cancel, &drain, &err)
                  : KILN_ENOMEM;
    json_decref(body);
    if (rc == KILN_ENOTFOUND) {
        p->worker_id = 0; /* forgotten: register again */
        do_register(p);
        return;
    }
    if (rc) return;
    cancel_list(p, cancel);
    json_decref(cancel);
}

/* ---- sinfo ---- */

static void sinfo_done(void *arg, int status, const char *out, const char *errout)
{
    struct pool *p = arg;
    p->sinfo_inflight = 0;
    if (status != 0) {
        snprintf(p->last_error, sizeof p->last_error, "sinfo failed (%d): %.200s", status, errout);
        log_pool(p, KILN_LOG_WARN, "%s", p->last_error);
        return;
    }
    int n = 0;
    const char *line = out;
    while (line && *line && n < MAX_NODES) {
        const char *nl = strchr(line, '\n');
        char buf[1024];
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len < sizeof buf) {
            memcpy(buf, line, len);
            buf[len] = '\0';
            struct kiln_slurm_node nd;
            int dup = 0;
            if (!kiln_slurm_node_parse(buf, &nd)) {
                for (int i = 0; i < n; i++)
                    dup |= !strcmp(p->nodes[i].name, nd.name);
                if (!dup) p->nodes[n++] = nd;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    p->nnodes = n;
    p->have_nodes = 1;
    if (!p->reconciled) return; /* the first squeue registers */
    json_t *now = size_json(p);
    if (now && (!p->last_size || !json_equal(now, p->last_size))) do_register(p);
    json_decref(now);
}

static void start_sinfo(struct pool *p)
{
    p->sinfo_inflight = 1;
    const char *argv[8];
    int n = 0;
    argv[n++] = "sinfo";
    argv[n++] = "-h";
    argv[n++] = "-N";
    argv[n++] = "-o";
    argv[n++] = "%N|%c|%m|%G|%f|%t|%P|%C|%a";
    if (p->conf.partition[0]) argv[n++] = "-p", argv[n++] = p->conf.partition;
    argv[n] = NULL;
    run_cmd(p, argv, sinfo_done, p);
}

/* ---- squeue ---- */

static void apply_qjob(struct pool *p, const struct kiln_slurm_qjob *q, double now)
{
    int64_t job, attempt;
    if (!kiln_slurm_name_parse(p->conf.name, q->name, &job, &attempt)) return;
    struct sjob *s = find_sjob(p, job, attempt);
    if (!s) {
        if (kiln_slurm_state_final(q->state)) return;
        if (p->reconciled) {
            /* Ours by name but unknown: a stale attempt. Cancel it. */
            struct sjob tmp = {.p = p, .job = job, .attempt = attempt, .slurm_id = q->slurm_id};
            scancel(p, &tmp);
            return;
        }
        /* First listing after a start: adopt it; registering decides. */
        if (!(s = calloc(1, sizeof *s))) return;
        s->p = p;
        s->job = job;
        s->attempt = attempt;
        s->next = p->jobs;
        p->jobs = s;
    }
    s->slurm_id = q->slurm_id;
    s->seen_at = now;
    snprintf(s->state, sizeof s->state, "%s", q->state);
    snprintf(s->reason, sizeof s->reason, "%s", q->reason);
    snprintf(s->nodes, sizeof s->nodes, "%s", q->nodes);
    if (kiln_slurm_state_final(q->state) && !s->ended_at) s->ended_at = now;
}

/* Decide about jobs that ended or vanished. */
static void settle(struct pool *p, double now)
{
    for (struct sjob *s = p->jobs, *nx; s; s = nx) {
        nx = s->next;
        if (s->sbatch_inflight) continue;
        char why[400];
        if (s->ended_at && kiln_slurm_state_infra(s->state)) {
            snprintf(why, sizeof why,
                     "Slurm ended it with %s%s%s: requeued as an infrastructure failure", s->state,
                     s->nodes[0] ? " on node " : "", s->nodes);
            infra_fail(p, s, why);
            drop_sjob(p, s);
        } else if (s->ended_at && now - s->ended_at >= END_GRACE_S) {
            if (current(p, s)) {
                if (!strcmp(s->state, "OUT_OF_MEMORY")) {
                    struct kiln_report r = {.attempt = s->attempt,
                                            .exit_code = -1,
                                            .signal = 9,
                                            .reason = why,
                                            .peak_ram_mb = -1,
                                            .cpu_s = -1};
                    snprintf(why, sizeof why,
                             "killed by Slurm: it used more memory than its --mem limit "
                             "(OUT_OF_MEMORY on %s)",
                             s->nodes);
                    struct kiln_error err = {0};
                    kiln_jobs_report(&p->ss->srv->jobs, s->job, p->worker_id, &r, now, NULL, &err);
                    kiln_serve_changed(p->ss->srv);
                } else {
                    snprintf(why, sizeof why,
                             "its Slurm job %" PRId64 " ended (%s) without a report", s->slurm_id,
                             s->state);
                    infra_fail(p, s, why);
                }
            }
            drop_sjob(p, s);
        } else if (!s->ended_at && s->slurm_id && now - s->seen_at > GONE_GRACE_S) {
            snprintf(why, sizeof why, "its Slurm job %" PRId64 " vanished from squeue",
                     s->slurm_id);
            infra_fail(p, s, why);
            drop_sjob(p, s);
        }
    }
}

static void squeue_done(void *arg, int status, const char *out, const char *errout)
{
    struct pool *p = arg;
    p->squeue_inflight = 0;
    double now = kiln_clock_wall();
    if (status != 0) {
        snprintf(p->last_error, sizeof p->last_error, "squeue failed (%d): %.200s", status, errout);
        log_pool(p, KILN_LOG_WARN, "%s", p->last_error);
        /* nothing is decided on a failed listing: jobs are not "gone" */
        for (struct sjob *s = p->jobs; s; s = s->next)
            s->seen_at = now;
        return;
    }
    const char *line = out;
    while (line && *line) {
        const char *nl = strchr(line, '\n');
        char buf[1024];
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len < sizeof buf) {
            memcpy(buf, line, len);
            buf[len] = '\0';
            struct kiln_slurm_qjob q;
            if (!kiln_slurm_qjob_parse(buf, &q)) apply_qjob(p, &q, now);
        }
        line = nl ? nl + 1 : NULL;
    }
    if (!p->reconciled) {
        /* The first listing is the truth about what runs: register with it. */
        for (struct sjob *s = p->jobs, *nx; s; s = nx) {
            nx = s->next;
            if (s->ended_at) drop_sjob(p, s); /* its report came or the registry requeues */
        }
        p->reconciled = 1;
        int n = 0;
        for (struct sjob *s = p->jobs; s; s = s->next)
            n++;
        log_pool(p, KILN_LOG_INFO, "found %d running Slurm job%s of this pool", n,
                 n == 1 ? "" : "s");
        do_register(p);
        return;
    }
    settle(p, now);
}

static void start_squeue(struct pool *p)
{
    p->squeue_inflight = 1;
    const char *argv[10];
    int n = 0;
    argv[n++] = "squeue";
    argv[n++] = "-h";
    argv[n++] = "--states=all";
    argv[n++] = "--me"; /* only kiln's user's jobs: a busy cluster lists many more */
    argv[n++] = "-o";
    argv[n++] = "%i|%j|%T|%r|%N";
    if (p->conf.partition[0]) argv[n++] = "-p", argv[n++] = p->conf.partition;
    argv[n] = NULL;
    run_cmd(p, argv, squeue_done, p);
}

/* ---- the timer ---- */

static void on_tick(uv_timer_t *t)
{
    struct kiln_slurm_serve *ss = t->data;
    double now = kiln_clock_wall();
    for (int i = 0; i < ss->npools; i++) {
        struct pool *p = &ss->pools[i];
        if (!p->sinfo_inflight && now >= p->next_sinfo) {
            p->next_sinfo = now + SINFO_S;
            start_sinfo(p);
        }
        if (!p->have_nodes) continue;
        if (!p->squeue_inflight && now >= p->next_poll) {
            p->next_poll = now + p->conf.poll_ms / 1000.0;
            start_squeue(p);
        }
        if (p->worker_id && now >= p->next_hb) {
            p->next_hb = now + HEARTBEAT_S;
            heartbeat(p);
        }
        rearm_pool(p);
    }
}

/* ---- wait reasons and routes ---- */

static void exec_reason(void *ctx, json_t *job, char *out, size_t n)
{
    struct kiln_slurm_serve *ss = ctx;
    int64_t id = json_integer_value(json_object_get(job, "id"));
    int64_t attempt = json_integer_value(json_object_get(job, "attempt"));
    int64_t wid = json_integer_value(json_object_get(job, "worker_id"));
    out[0] = '\0';
    for (int i = 0; i < ss->npools; i++) {
        struct pool *p = &ss->pools[i];
        if (p->worker_id != wid) continue;
        struct sjob *s = find_sjob(p, id, attempt);
        if (!s) return;
        if (!s->slurm_id)
            snprintf(out, n, "being submitted to Slurm (pool %s)", p->conf.name);
        else if (!strcmp(s->state, "PENDING")) {
            char text[300];
            kiln_slurm_reason_text(s->reason, text, sizeof text);
            snprintf(out, n, "Slurm job %" PRId64 " is %s", s->slurm_id, text);
        }
        return;
    }
}

static void h_lease(struct kiln_server *srv, struct kiln_http_req *req, void *ctx)
{
    struct kiln_slurm_serve *ss = ctx;
    long long job = 0, attempt = 0;
    char tail;
    const char *path = kiln_http_req_path(req);
    /* The step holds the site's registration token (its worker config) or
     * the pool's credential; the route is open in the table and checks here
     * (a registration token may do nothing else). */
    struct kiln_principal who;
    struct kiln_error aerr = {0};
    if (kiln_auth_identify(srv->st, kiln_http_req_header(req, "Authorization"), &who, &aerr) ||
        who.role != KILN_ROLE_WORKER) {
        kiln_http_respond_error(req, 401, "unauthorized", "%s",
                                aerr.msg[0] ? aerr.msg : "a worker token is needed");
        return;
    }
    if (sscanf(path, "/api/v1/slurm/lease/%lld/%lld%c", &job, &attempt, &tail) != 2 || job <= 0 ||
        attempt <= 0) {
        kiln_http_respond_error(req, 404, "not_found", "no such lease: %s", path);
        return;
    }
    for (int i = 0; i < ss->npools; i++) {
        struct pool *p = &ss->pools[i];
        if (!p->worker_id || !p->reconciled) {
            /* just restarted: the step retries on 503 until we know */
            kiln_http_respond_error(req, 503, "unavailable",
                                    "the Slurm executor is reconciling after a start; retry");
            return;
        }
        /* The store decides, not our memory: served while (job, attempt)
         * runs on this pool's worker and its lease file exists. */
        struct sjob probe = {.p = p, .job = job, .attempt = attempt};
        if (!current(p, &probe)) continue;
        if (who.worker_id && who.worker_id != p->worker_id) break;
        if (!p->credential[0]) {
            kiln_http_respond_error(req, 503, "unavailable", "the pool has no credential yet");
            return;
        }
        char lp[PATH_MAX + 64];
        lease_path(ss, job, attempt, lp, sizeof lp);
        json_error_t je;
        json_t *o = json_load_file(lp, 0, &je);
        if (!o) break;
        json_object_set_new(o, "credential", json_string(p->credential));
        kiln_http_respond_json(req, 200, o);
        return;
    }
    kiln_http_respond_error(req, 409, "conflict",
                            "job %lld attempt %lld is not a current Slurm stage (cancelled, "
                            "requeued or already run)",
                            job, attempt);
}

/* One node as the Workers view shows it (GET /api/v1/slurm). */
static json_t *node_json(const struct kiln_slurm_node *nd)
{
    return json_pack("{s:s,s:s,s:s,s:i,s:i,s:I,s:s,s:s,s:s,s:s}", "name", nd->name, "state",
                     kiln_slurm_node_state_word(nd->state), "slurm_state", nd->state, "cpus",
                     nd->cpus, "cpus_alloc", nd->cpus_alloc, "ram_mb", (json_int_t)nd->ram_mb,
                     "gres", strcmp(nd->gres, "(null)") ? nd->gres : "", "features", nd->features,
                     "partition", nd->partition, "partition_avail", nd->avail);
}

/* The partitions the pool's nodes belong to, each summed over its nodes
 * (a node may be in several): what the Workers view's partition rows say. */
static json_t *partitions_json(const struct pool *p)
{
    json_t *parts = json_object();
    for (int k = 0; parts && k < p->nnodes; k++) {
        const struct kiln_slurm_node *nd = &p->nodes[k];
        const char *name = nd->partition[0]       ? nd->partition
                           : p->conf.partition[0] ? p->conf.partition
                                                  : "(default)";
        json_t *o = json_object_get(parts, name);
        if (!o) {
            o = json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:I}", "name", name, "avail",
                          nd->avail[0] ? nd->avail : "up", "nodes", 0, "nodes_up", 0, "cpus", 0,
                          "cpus_alloc", 0, "ram_mb", (json_int_t)0);
            if (!o || json_object_set_new(parts, name, o)) break;
        }
        const char *word = kiln_slurm_node_state_word(nd->state);
        int up = !strcmp(word, "idle") || !strcmp(word, "mixed") || !strcmp(word, "alloc");
#define ADD(key, v)                                                                                \
    json_object_set_new(o, key, json_integer(json_integer_value(json_object_get(o, key)) + (v)))
        ADD("nodes", 1);
        ADD("nodes_up", up);
        ADD("cpus", nd->cpus);
        ADD("cpus_alloc", nd->cpus_alloc);
        ADD("ram_mb", nd->ram_mb);
#undef ADD
    }
    json_t *arr = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(parts, k, v) json_array_append(arr, v);
    json_decref(parts);
    return arr;
}

static void h_status(struct kiln_server *srv, struct kiln_http_req *req, void *ctx)
{
    struct kiln_slurm_serve *ss = ctx;
    (void)srv;
    json_t *pools = json_array();
    for (int i = 0; pools && i < ss->npools; i++) {
        struct pool *p = &ss->pools[i];
        json_t *nodes = json_array(), *jobs = json_array();
        for (int k = 0; nodes && k < p->nnodes; k++)
            json_array_append_new(nodes, node_json(&p->nodes[k]));
        for (struct sjob *s = p->jobs; s; s = s->next) {
            char text[300] = "";
            if (!strcmp(s->state, "PENDING")) kiln_slurm_reason_text(s->reason, text, sizeof text);
            json_array_append_new(
                jobs,
                json_pack("{s:I,s:I,s:I,s:s,s:s,s:s,s:s}", "job", (json_int_t)s->job, "attempt",
                          (json_int_t)s->attempt, "slurm_id", (json_int_t)s->slurm_id, "state",
                          s->state, "reason", s->reason, "reason_text", text, "nodes", s->nodes));
        }
        json_array_append_new(
            pools, json_pack("{s:s,s:s,s:s,s:I,s:o,s:o,s:o,s:s}", "name", p->conf.name, "partition",
                             p->conf.partition, "worker", p->worker_name, "worker_id",
                             (json_int_t)p->worker_id, "partitions", partitions_json(p), "nodes",
                             nodes, "jobs", jobs, "last_error", p->last_error));
    }
    kiln_http_respond_json(req, 200, json_pack("{s:o}", "pools", pools ? pools : json_array()));
}

/* ---- the feature ---- */

static int slurm_init(struct kiln_server *srv, json_t *config, void **state, struct kiln_error *err)
{
    *state = NULL;
    json_t *sec = json_object_get(config, "slurm");
    if (!sec || json_is_null(sec)) return KILN_OK;
    json_t *pools = json_object_get(sec, "pools");
    static const char *const known[] = {"pools", NULL};
    if (kiln_json_only_keys(sec, known, "slurm", err)) return KILN_EINVAL;
    if (!json_is_array(pools) || json_array_size(pools) < 1 || json_array_size(pools) > MAX_POOLS)
        return kiln_fail(err, KILN_EINVAL, "slurm: pools must be a list of 1..%d pools", MAX_POOLS);
    struct kiln_slurm_serve *ss = calloc(1, sizeof *ss);
    if (!ss) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    ss->srv = srv;
    size_t i;
    json_t *v;
    json_array_foreach(pools, i, v)
    {
        struct pool *p = &ss->pools[ss->npools];
        int rc = kiln_slurm_pool_parse(v, &p->conf, err);
        for (int k2 = 0; !rc && k2 < ss->npools; k2++)
            if (!strcmp(ss->pools[k2].conf.name, p->conf.name))
                rc = kiln_fail(err, KILN_EINVAL, "slurm: two pools named %s", p->conf.name);
        if (rc) {
            free(ss);
            return rc;
        }
        p->ss = ss;
        {
            char nm[64];
            memcpy(nm, p->conf.name, sizeof nm);
            snprintf(p->worker_name, sizeof p->worker_name, "slurm-%s", nm);
        }
        ss->npools++;
    }
    char leases[PATH_MAX + 16];
    if (snprintf(ss->dir, sizeof ss->dir, "%s/slurm", srv->cfg.data_dir) >= (int)sizeof ss->dir ||
        snprintf(ss->script, sizeof ss->script, "%s/kiln-step.sh", ss->dir) >=
            (int)sizeof ss->script) {
        free(ss);
        return kiln_fail(err, KILN_ELIMIT, "data dir path too long");
    }
    snprintf(leases, sizeof leases, "%s/leases", ss->dir);
    if (kiln_mkdir_p(leases, 0700) ||
        kiln_write_file_atomic(ss->script, STEP_SCRIPT, sizeof STEP_SCRIPT - 1, 0755)) {
        int e = errno;
        free(ss);
        return kiln_fail(err, KILN_EIO, "slurm: cannot prepare %s: %s", leases, strerror(e));
    }
    if (kiln_serve_add_route(srv, "GET", "/api/v1/slurm/lease", KILN_ROLE_NONE, h_lease, ss) ||
        kiln_serve_add_route(srv, "GET", "/api/v1/slurm", KILN_ROLE_READ, h_status, ss)) {
        free(ss);
        return kiln_fail(err, KILN_ELIMIT, "slurm: no room for its routes");
    }
    srv->jobs.exec_reason = exec_reason;
    srv->jobs.exec_ctx = ss;
    uv_timer_init(srv->loop, &ss->tick);
    uv_timer_init(srv->loop, &ss->rearm);
    ss->tick.data = ss->rearm.data = ss;
    uv_timer_start(&ss->tick, on_tick, 0, TICK_MS);
    *state = ss;
    kiln_log(&srv->log, KILN_LOG_INFO, "slurm executor: %d pool%s", ss->npools,
             ss->npools == 1 ? "" : "s");
    return KILN_OK;
}

static void slurm_stop(struct kiln_server *srv, void *state)
{
    struct kiln_slurm_serve *ss = state;
    if (!ss) return;
    ss->stopping = 1;
    srv->jobs.exec_reason = NULL;
    for (int i = 0; i < ss->npools; i++)
        if (ss->pools[i].waiter) {
            kiln_dispatch_unwait(srv->dispatch, ss->pools[i].waiter);
            ss->pools[i].waiter = NULL;
        }
    uv_timer_stop(&ss->tick);
    uv_timer_stop(&ss->rearm);
    uv_close((uv_handle_t *)&ss->tick, NULL);
    uv_close((uv_handle_t *)&ss->rearm, NULL);
}

static void slurm_cleanup(void *state)
{
    struct kiln_slurm_serve *ss = state;
    if (!ss) return;
    for (int i = 0; i < ss->npools; i++) {
        struct pool *p = &ss->pools[i];
        while (p->jobs) {
            struct sjob *s = p->jobs;
            p->jobs = s->next;
            free(s); /* lease files stay: the steps still need them */
        }
        json_decref(p->last_size);
    }
    /* Slurm commands still running hold ss; the last one frees it. */
    if (ss->inflight)
        ss->freed = 1;
    else
        free(ss);
}

static const char *const sections[] = {"slurm", NULL};

const struct kiln_serve_feature kiln_slurm_feature = {
    .name = "slurm",
    .config_sections = sections,
    .init = slurm_init,
    .stop = slurm_stop,
    .cleanup = slurm_cleanup,
};
