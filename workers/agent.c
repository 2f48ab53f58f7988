/* agent.c - the worker agent's protocol loop (docs/API.md, "Workers").
 *
 * Shape: one libuv loop owns all state. HTTP calls run in the libuv thread
 * pool, one libcurl handle per channel (lease, control, log), at most one
 * call in flight per channel, so a long-poll never delays a heartbeat and a
 * slow log upload never delays a cancel. pump() decides what to do next and
 * runs after every event and on a 200 ms tick.
 *
 * Logs: the job writes to a file; the uploader reads chunks of it at the
 * server-confirmed offset. A chunk whose answer is lost is simply resent
 * from the server's size (the server skips overlap, 409 tells where to
 * resume), so a reconnect neither loses nor duplicates a byte. */
#include "workers/agent.h"

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/httpc.h"
#include "common/token.h"
#include "workers/limits.h"
#include "workers/proc.h"
#include "workers/stage.h"
#include "workers/retain.h"
#include "workers/spare.h"
#include "workers/step.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

#define LOG_CHUNK (1u << 20)
#define TICK_MS 200
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 10000
#define CANCEL_HB_MS 1500 /* heartbeat at least this often while jobs run */
#define HARD_EXIT_MS 10000
#define MAX_BATCH_LEASE 16 /* jobs one lease answer may carry (?max=N) */
#define REPORTS_MAX 64     /* finished jobs one POST /workers/{id}/reports carries */
#define STEP_CHECK_MS 2000 /* a step asks whether its attempt is still current */

enum chan_id { CH_LEASE = 0, CH_CTL, CH_LOG, CH_N };

struct agent;

struct ajob {
    struct agent *a;
    struct ajob *next;
    long id;
    long attempt;
    char stage[32];
    char name[128];
    int cores;
    long ram_mb;
    int gpu_index; /* -1 = none */
    struct kiln_proc *proc;
    int finished; /* process over, res valid */
    struct kiln_proc_result res;
    int server_cancelled;
    int log_gone; /* server refuses our log (stale attempt): stop uploading */
    int reported;
    uint64_t sent; /* bytes the server confirmed */
    char log_path[PATH_MAX];
    char dir[PATH_MAX];         /* work_dir/jobs/<id>-<attempt> ("" until made) */
    char report_path[PATH_MAX]; /* $KILN_REPORT_FILE: outputs + selftest from the job */
    json_t *outputs, *selftest;
    char selftest_doc[PATH_MAX]; /* test stage: where `kiln selftest run` writes its verdict */
    char cwd[PATH_MAX];          /* where the command ran */
    int staging;                 /* outputs are being staged: report after */
    int acct_pending;            /* step: asking Slurm's accounting; report after */
    uint64_t slurm_peak;         /* step: MaxRSS Slurm measured (bytes, 0 = none) */
};

/* Step mode: Slurm's accounting figure, asked on the thread pool (sstat
 * blocks); the report waits for it. */
struct acctwork {
    uv_work_t w;
    struct agent *a;
    long job, attempt;
    uint64_t bytes;
    int rc;
    struct kiln_error err;
};

/* Staging a build's outputs on the thread pool (workers/stage.h); the
 * report waits for it, so `built` means the test host can substitute them. */
struct stagework {
    uv_work_t w;
    struct agent *a;
    long job, attempt;
    json_t *outputs; /* a private copy: jansson refcounts are not atomic */
    char log_path[PATH_MAX];
    int rc;
    uint64_t started_ns;
    struct kiln_stage_result res;
    struct kiln_error err;
};

struct req {
    uv_work_t w;
    struct agent *a;
    enum chan_id ch;
    char method[8];
    char path[256];
    json_t *body;
    /* log upload: read [offset, offset+maxlen) of log_path in the thread */
    int is_log;
    char log_path[PATH_MAX];
    uint64_t offset;
    size_t maxlen;
    size_t sent_len;
    long timeout_ms;
    long job_id, attempt;
    int rc;
    long status;
    json_t *resp;
    struct kiln_error err;
    void (*done)(struct req *);
};

struct agent {
    uv_loop_t loop;
    const struct kiln_worker_config *cfg;
    const struct kiln_host *host;
    const struct kiln_logger *lg;
    struct kiln_limits limits;
    struct kiln_httpc http[CH_N];
    int busy[CH_N];
    uv_timer_t tick, backoff;
    uv_signal_t sigterm, sigint;
    long worker_id;
    int single_reports; /* the server has no POST /workers/{id}/reports */
    int registered;
    /* The credential the server issued at registration (docs/API.md): every
     * call after registering uses it, and so does registering again, which
     * proves this is the same worker. "" = none yet: the configured token
     * (a registration token) is used. Kept in cred_path across restarts. */
    char credential[KILN_TOKEN_LEN];
    /* Staging threads read the credential while the loop may rotate it. */
    uv_mutex_t cred_lock;
    char cred_path[PATH_MAX]; /* "" = not kept */
    int cred_used;            /* the last register request carried it */
    int backoff_ms;
    int backoff_pending;
    int heartbeat_s;
    uint64_t next_hb_ns;
    uint64_t next_lease_ns; /* a server that answers 204 at once is not hammered */
    uint64_t lease_sent_ns;
    int lease_in_reports; /* a batch report in flight asks for a lease too */
    int draining;
    int low_resources, low_logged; /* disk nearly full or memory pressure */
    int shutting;                  /* 1 after the first signal, 2 after the second */
    uint64_t hard_deadline_ns;
    int stopping;
    int fatal;
    struct kiln_error fatal_err;
    struct ajob *jobs;
    struct kiln_spare spare;   /* recycled job dirs and logs (off in step mode) */
    struct kiln_retain retain; /* finished jobs' dirs with files: the newest kept */
    unsigned log_rr;
    char name[128];
    char exe[PATH_MAX];          /* this kiln binary, for `kiln selftest run` */
    char selftest_dir[PATH_MAX]; /* "" = none found */
    int step;                    /* step mode: one preset lease, then exit */
    uint64_t next_check_ns;      /* step mode: next "is my attempt current?" */
};

static void pump(struct agent *a);
static void step_explain_oom(struct ajob *j);
static void step_ask_accounting(struct agent *a, struct ajob *j);

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

/* ---- requests in the thread pool ---- */

static void req_work(uv_work_t *w)
{
    struct req *r = w->data;
    struct kiln_httpc *c = &r->a->http[r->ch];
    if (!r->is_log) {
        r->rc = kiln_httpc_json(c, r->method, r->path, r->body, r->timeout_ms, &r->status, &r->resp,
                                &r->err);
        return;
    }
    int fd = open(r->log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r->rc = kiln_fail(&r->err, KILN_EIO, "cannot open %s: %s", r->log_path, strerror(errno));
        return;
    }
    char *buf = malloc(r->maxlen ? r->maxlen : 1);
    if (!buf) {
        close(fd);
        r->rc = kiln_fail(&r->err, KILN_ENOMEM, "out of memory");
        return;
    }
    ssize_t n = pread(fd, buf, r->maxlen, (off_t)r->offset);
    close(fd);
    if (n < 0) {
        free(buf);
        r->rc = kiln_fail(&r->err, KILN_EIO, "cannot read %s: %s", r->log_path, strerror(errno));
        return;
    }
    r->sent_len = (size_t)n;
    struct kiln_httpc_resp resp = {0};
    r->rc = kiln_httpc_request(c, "POST", r->path, "application/octet-stream", buf, (size_t)n,
                               r->timeout_ms, &resp, &r->err);
    free(buf);
    if (!r->rc) {
        r->status = resp.status;
        if (resp.body.len) r->resp = json_loadb(resp.body.data, resp.body.len, 0, NULL);
    }
    kiln_httpc_resp_free(&resp);
}

static void req_after(uv_work_t *w, int status)
{
    struct req *r = w->data;
    struct agent *a = r->a;
    a->busy[r->ch] = 0;
    if (status == UV_ECANCELED) {
        r->rc = KILN_ENET;
        snprintf(r->err.msg, sizeof r->err.msg, "request cancelled");
    }
    r->done(r);
    json_decref(r->body);
    json_decref(r->resp);
    free(r);
    pump(a);
}

static struct req *req_new(struct agent *a, enum chan_id ch, const char *method,
                           void (*done)(struct req *))
{
    struct req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->a = a;
    r->ch = ch;
    snprintf(r->method, sizeof r->method, "%s", method);
    r->done = done;
    r->timeout_ms = 10000;
    r->w.data = r;
    return r;
}

static int req_submit(struct req *r)
{
    struct agent *a = r->a;
    /* The channel is idle, so no thread reads its token while it changes. */
    snprintf(a->http[r->ch].token, sizeof a->http[r->ch].token, "%s",
             a->credential[0] ? a->credential : a->cfg->token);
    a->busy[r->ch] = 1;
    int e = uv_queue_work(&a->loop, &r->w, req_work, req_after);
    if (e) {
        a->busy[r->ch] = 0;
        kiln_log(a->lg, KILN_LOG_ERROR, "cannot queue a request: %s", uv_strerror(e));
        json_decref(r->body);
        free(r);
        return KILN_EIO;
    }
    return KILN_OK;
}

/* ---- connection state ---- */

static void on_backoff(uv_timer_t *t)
{
    struct agent *a = t->data;
    a->backoff_pending = 0;
    pump(a);
}

/* The server is unreachable or forgot us: register again after a pause that
 * doubles each time (capped), listing the jobs still running. */
static void lost_connection(struct agent *a, const char *why)
{
    if (a->registered)
        kiln_log(a->lg, KILN_LOG_WARN, "lost the server (%s); reconnecting with backoff", why);
    /* A step has no registration of its own: it only retries its calls. */
    if (!a->step) a->registered = 0;
    if (a->backoff_pending) return;
    a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (a->backoff_ms > BACKOFF_MAX_MS) a->backoff_ms = BACKOFF_MAX_MS;
    a->backoff_pending = 1;
    uv_timer_start(&a->backoff, on_backoff, (uint64_t)a->backoff_ms, 0);
}

static void fatal(struct agent *a, int code, const char *msg)
{
    if (a->fatal) return;
    a->fatal = code;
    kiln_fail(&a->fatal_err, code, "%s", msg);
    kiln_log(a->lg, KILN_LOG_ERROR, "%s", msg);
    /* A worker the server rejects must not keep building: jobs go back. */
    for (struct ajob *j = a->jobs; j; j = j->next)
        if (!j->finished)
            kiln_proc_kill(j->proc, "worker stopped: the server rejected its token", 1);
}

/* Handles statuses every endpoint shares. Returns 1 when handled. */
static int common_status(struct agent *a, struct req *r)
{
    if (r->rc) {
        lost_connection(a, r->err.msg);
        return 1;
    }
    if (r->status == 401 || r->status == 403) {
        char m[400];
        snprintf(m, sizeof m, "the server refused the worker token (HTTP %ld: %s)", r->status,
                 kiln_httpc_error_message(r->resp, r->status));
        fatal(a, r->status == 401 ? KILN_EAUTH : KILN_EPERM, m);
        return 1;
    }
    if (r->status >= 500 || r->status == 0) {
        char m[300];
        snprintf(m, sizeof m, "HTTP %ld from %s: %s", r->status, r->path,
                 kiln_httpc_error_message(r->resp, r->status));
        lost_connection(a, m);
        return 1;
    }
    return 0;
}

/* ---- jobs ---- */

static struct ajob *find_job(struct agent *a, long id)
{
    for (struct ajob *j = a->jobs; j; j = j->next)
        if (j->id == id) return j;
    return NULL;
}

/* One attempt of a job: a finished attempt may still wait for its report
 * when the server leases the next one (a hand-back during shutdown). */
static struct ajob *find_attempt(struct agent *a, long id, long attempt)
{
    for (struct ajob *j = a->jobs; j; j = j->next)
        if (j->id == id && j->attempt == attempt) return j;
    return NULL;
}

static void retain_error(void *arg, const char *dir, int e)
{
    struct agent *a = arg;
    kiln_log(a->lg, KILN_LOG_WARN, "cannot remove the old job directory %s: %s", dir, strerror(e));
}

static void drop_job(struct agent *a, struct ajob *j)
{
    /* Reported, so its log is all sent: the log, and the directory if the
     * job left it empty, serve a later job (spare.h). */
    if (j->reported && j->finished && !j->staging && !j->acct_pending && j->dir[0]) {
        /* a directory the pool does not take stays for a while (retain.h) */
        if (!kiln_spare_give_dir(&a->spare, j->dir)) kiln_retain_add(&a->retain, j->dir);
        kiln_spare_give_log(&a->spare, j->log_path);
    }
    for (struct ajob **pp = &a->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    if (j->proc) kiln_proc_free(j->proc);
    json_decref(j->outputs);
    json_decref(j->selftest);
    free(j);
}

static void cancel_jobs(struct agent *a, json_t *list)
{
    size_t i;
    json_t *v;
    if (!json_is_array(list)) return;
    json_array_foreach(list, i, v)
    {
        if (!json_is_integer(v)) continue;
        struct ajob *j = find_job(a, (long)json_integer_value(v));
        if (!j || j->server_cancelled) continue;
        kiln_log(a->lg, KILN_LOG_INFO, "job %ld: cancelled by the server", j->id);
        j->server_cancelled = 1;
        if (!j->finished) kiln_proc_kill(j->proc, "cancelled", 0);
    }
}

/* The job may leave {"outputs":["/nix/store/..."],"selftest":{...}} in
 * $KILN_REPORT_FILE; it goes into the report (bounded, checked). */
static void read_selftest_doc(struct agent *a, struct ajob *j)
{
    struct stat st;
    if (!j->selftest_doc[0] || stat(j->selftest_doc, &st) != 0 || st.st_size > (4 << 20)) return;
    json_error_t je;
    json_t *doc = json_load_file(j->selftest_doc, 0, &je);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return;
    }
    json_decref(j->selftest);
    j->selftest = doc;
    if (json_is_true(json_object_get(doc, "ok")) || j->res.killed || j->res.timed_out ||
        j->res.ram_exceeded)
        return;
    /* Say why in the selftest's own words, not "exited with status 1". */
    struct kiln_buf b = {0};
    size_t i;
    json_t *v;
    int rc = kiln_buf_puts(&b, "selftest failed: ");
    json_array_foreach(json_object_get(doc, "reasons"), i, v)
    {
        if (!rc && json_is_string(v))
            rc = kiln_buf_printf(&b, "%s%s", i ? "; " : "", json_string_value(v));
    }
    if (!rc && b.data) snprintf(j->res.reason, sizeof j->res.reason, "%s", b.data);
    kiln_buf_free(&b);
    if (j->res.exit_code == 0 && !j->res.term_signal) j->res.exit_code = 1;
    (void)a;
}

/* Recipes build with `nix-build ... -o result-NAME`: without an explicit
 * report, a successful build's output is where that link points. */
static void outputs_from_result_link(struct ajob *j)
{
    char link[PATH_MAX], target[PATH_MAX];
    if (j->outputs || strcmp(j->stage, "build") || j->res.exit_code != 0 || j->res.term_signal ||
        !j->name[0] || strchr(j->name, '/') ||
        snprintf(link, sizeof link, "%s/result-%s", j->cwd, j->name) >= (int)sizeof link)
        return;
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return;
    target[n] = '\0';
    if (strncmp(target, "/nix/store/", 11)) return;
    j->outputs = json_pack("[s]", target);
}

static void read_job_report(struct agent *a, struct ajob *j)
{
    struct stat st;
    if (!j->report_path[0] || stat(j->report_path, &st) != 0) {
        outputs_from_result_link(j);
        return;
    }
    json_error_t je;
    json_t *doc = st.st_size <= (1 << 20) ? json_load_file(j->report_path, 0, &je) : NULL;
    if (!json_is_object(doc)) {
        kiln_log(a->lg, KILN_LOG_WARN, "job %ld: ignoring %s: not a JSON object under 1 MiB", j->id,
                 j->report_path);
        json_decref(doc);
        return;
    }
    json_t *o = json_object_get(doc, "outputs"), *t = json_object_get(doc, "selftest");
    int ok = json_is_array(o) && json_array_size(o) <= 1000;
    size_t i;
    json_t *v;
    if (ok) json_array_foreach(o, i, v) if (!json_is_string(v)) ok = 0;
    if (ok) j->outputs = json_incref(o);
    if (json_is_object(t)) j->selftest = json_incref(t);
    json_decref(doc);
    outputs_from_result_link(j);
}

/* The current credential (rotated by re-registration, e.g. after a cut
 * link), read from a staging thread. */
static void current_token(void *arg, char *out, size_t outlen)
{
    struct agent *a = arg;
    uv_mutex_lock(&a->cred_lock);
    snprintf(out, outlen, "%s", a->credential[0] ? a->credential : a->cfg->token);
    uv_mutex_unlock(&a->cred_lock);
}

static void stage_work(uv_work_t *w)
{
    struct stagework *sw = w->data;
    const struct kiln_worker_config *cfg = sw->a->cfg;
    FILE *log = fopen(sw->log_path, "ae");
    struct kiln_stage_opts o = {.server = cfg->server,
                                .token = cfg->token,
                                .current_token = current_token,
                                .token_arg = sw->a,
                                .ca_file = cfg->ca_file,
                                .job = sw->job,
                                .attempt = sw->attempt,
                                .stall_s = cfg->stage_stall_s,
                                .log = log};
    sw->rc = kiln_stage_outputs(&o, sw->outputs, &sw->res, &sw->err);
    if (log) fclose(log);
}

static void stage_done(uv_work_t *w, int status)
{
    struct stagework *sw = w->data;
    struct agent *a = sw->a;
    struct ajob *j = find_attempt(a, sw->job, sw->attempt);
    if (status != 0 && sw->rc == KILN_OK)
        sw->rc = kiln_fail(&sw->err, KILN_EIO, "staging was cancelled");
    if (j && j->attempt == sw->attempt) {
        j->staging = 0;
        if (sw->rc != KILN_OK) {
            /* A link that never came back is the farm's fault (retry the
             * build elsewhere); refused bytes are the build's. */
            j->res.infra = sw->rc == KILN_ENET || sw->rc == KILN_ETIMEOUT;
            if (j->res.exit_code == 0) j->res.exit_code = 1;
            snprintf(j->res.reason, sizeof j->res.reason, "staging: %.235s", sw->err.msg);
            kiln_log(a->lg, KILN_LOG_WARN, "job %ld: %s", j->id, j->res.reason);
        } else if (!sw->res.unsupported) {
            double s = (double)(uv_hrtime() - sw->started_ns) / 1e9;
            kiln_log(a->lg, KILN_LOG_INFO,
                     "job %ld: staged %d of %d paths (%llu bytes sent, %d resumes) in %.1f s "
                     "(%.1f MB/s)",
                     j->id, sw->res.uploaded, sw->res.paths, (unsigned long long)sw->res.bytes,
                     sw->res.resumes, s, s > 0 ? (double)sw->res.bytes / s / 1e6 : 0.0);
        }
    }
    json_decref(sw->outputs);
    free(sw);
    pump(a);
}

static void start_staging(struct agent *a, struct ajob *j)
{
    struct stagework *sw = calloc(1, sizeof *sw);
    if (!sw || !(sw->outputs = json_deep_copy(j->outputs))) {
        free(sw);
        j->res.exit_code = 1;
        j->res.infra = 1;
        snprintf(j->res.reason, sizeof j->res.reason, "out of memory staging the outputs");
        return;
    }
    sw->w.data = sw;
    sw->a = a;
    sw->started_ns = uv_hrtime();
    sw->job = j->id;
    sw->attempt = j->attempt;
    snprintf(sw->log_path, sizeof sw->log_path, "%s", j->log_path);
    j->staging = 1;
    if (uv_queue_work(&a->loop, &sw->w, stage_work, stage_done) != 0) {
        j->staging = 0;
        json_decref(sw->outputs);
        free(sw);
        j->res.exit_code = 1;
        j->res.infra = 1;
        snprintf(j->res.reason, sizeof j->res.reason, "cannot queue the staging of the outputs");
    }
}

static void on_job_done(struct kiln_proc *p, const struct kiln_proc_result *res, void *arg)
{
    struct ajob *j = arg;
    struct agent *a = j->a;
    (void)p;
    j->finished = 1;
    j->res = *res;
    read_job_report(a, j);
    read_selftest_doc(a, j);
    if (a->step) {
        step_explain_oom(j);
        step_ask_accounting(a, j);
    }
    char peak[32];
    kiln_size_format(j->res.peak_ram, peak, sizeof peak);
    kiln_log(a->lg, KILN_LOG_INFO, "job %ld (attempt %ld): %s (peak RAM %s, CPU %.1f s)", j->id,
             j->attempt, j->res.reason[0] ? j->res.reason : "succeeded", peak, j->res.cpu_s);
    if (!strcmp(j->stage, "build") && j->res.exit_code == 0 && !j->res.term_signal &&
        !j->res.reason[0] && !j->server_cancelled && json_array_size(j->outputs) &&
        a->cfg->stage_outputs)
        start_staging(a, j);
    if (j->res.reason[0] && !j->server_cancelled) {
        /* Say in the log itself why it ended, where people look first. */
        FILE *f = fopen(j->log_path, "ae");
        if (f) {
            fprintf(f, "\n[kiln worker %s] job %s\n", a->name, j->res.reason);
            fclose(f);
        }
    }
    pump(a);
}

static int env_push(char ***envp, size_t *n, size_t *cap, const char *key, const char *val)
{
    size_t kl = strlen(key);
    char *s = malloc(kl + strlen(val) + 2);
    if (!s) return KILN_ENOMEM;
    sprintf(s, "%s=%s", key, val);
    for (size_t i = 0; i < *n; i++)
        if (!strncmp((*envp)[i], key, kl) && (*envp)[i][kl] == '=') {
            free((*envp)[i]);
            (*envp)[i] = s;
            return KILN_OK;
        }
    if (*n + 2 > *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        char **ne = realloc(*envp, nc * sizeof *ne);
        if (!ne) {
            free(s);
            return KILN_ENOMEM;
        }
        *envp = ne;
        *cap = nc;
    }
    (*envp)[(*n)++] = s;
    (*envp)[*n] = NULL;
    return KILN_OK;
}

void kiln_agent_env_free(char **env)
{
    if (!env) return;
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

/* The job's environment: the worker's own (PATH, HOME...) without its
 * credentials, the job's env from the server, then the limits the worker
 * enforces. NIX_CONFIG carries the core count into nix-build/nix build
 * (Nix gives the builder NIX_BUILD_CORES from its "cores" setting and
 * clears the rest of the environment). */
char **kiln_agent_job_env(char **base, json_t *jenv, const struct kiln_job_env_info *ji)
{
    char **env = NULL;
    size_t n = 0, cap = 0;
    int rc = KILN_OK;
    for (char **e = base; e && *e && !rc; e++) {
        if (!strncmp(*e, "KILN_TOKEN=", 11)) continue;
        char *eq = strchr(*e, '=');
        if (!eq) continue;
        char key[256];
        size_t kl = (size_t)(eq - *e);
        if (kl >= sizeof key) continue;
        memcpy(key, *e, kl);
        key[kl] = '\0';
        rc = env_push(&env, &n, &cap, key, eq + 1);
    }
    const char *k;
    json_t *v;
    if (json_is_object(jenv)) json_object_foreach(jenv, k, v)
        {
            if (rc) break;
            if (!*k || strchr(k, '=')) continue;
            if (json_is_string(v))
                rc = env_push(&env, &n, &cap, k, json_string_value(v));
            else if (json_is_integer(v)) {
                char num[32];
                snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
                rc = env_push(&env, &n, &cap, k, num);
            }
        }
    char num[64];
    snprintf(num, sizeof num, "%d", ji->cores);
    if (!rc) rc = env_push(&env, &n, &cap, "NIX_BUILD_CORES", num);
    if (!rc) rc = env_push(&env, &n, &cap, "MAX_JOBS", num);
    if (!rc) {
        const char *old = NULL;
        for (size_t i = 0; env && i < n; i++)
            if (!strncmp(env[i], "NIX_CONFIG=", 11)) old = env[i] + 11;
        struct kiln_buf b = {0};
        rc = kiln_buf_printf(&b, "%s%scores = %d", old ? old : "", old && *old ? "\n" : "",
                             ji->cores);
        if (!rc) rc = env_push(&env, &n, &cap, "NIX_CONFIG", b.data);
        kiln_buf_free(&b);
    }
    if (!rc && ji->gpu_index >= 0) {
        snprintf(num, sizeof num, "%d", ji->gpu_index);
        rc = env_push(&env, &n, &cap, "CUDA_VISIBLE_DEVICES", num);
        if (!rc) rc = env_push(&env, &n, &cap, "CUDA_DEVICE_ORDER", "PCI_BUS_ID");
    } else if (!rc && ji->host_has_gpus) {
        /* A build does not get the GPUs the tests next to it are using. */
        rc = env_push(&env, &n, &cap, "CUDA_VISIBLE_DEVICES", "");
    }
    snprintf(num, sizeof num, "%ld", ji->job_id);
    if (!rc) rc = env_push(&env, &n, &cap, "KILN_JOB_ID", num);
    snprintf(num, sizeof num, "%ld", ji->attempt);
    if (!rc) rc = env_push(&env, &n, &cap, "KILN_ATTEMPT", num);
    if (!rc) rc = env_push(&env, &n, &cap, "KILN_STAGE", ji->stage);
    if (!rc) rc = env_push(&env, &n, &cap, "KILN_WORK_DIR", ji->work_dir);
    if (!rc) rc = env_push(&env, &n, &cap, "KILN_WORKER", ji->worker);
    if (!rc && ji->report_file) rc = env_push(&env, &n, &cap, "KILN_REPORT_FILE", ji->report_file);
    if (rc) {
        kiln_agent_env_free(env);
        return NULL;
    }
    return env;
}

static char **job_env(struct agent *a, struct ajob *j, json_t *jenv, const char *workdir)
{
    struct kiln_job_env_info ji = {.cores = j->cores,
                                   .gpu_index = j->gpu_index,
                                   .host_has_gpus = a->host->ngpus > 0,
                                   .job_id = j->id,
                                   .attempt = j->attempt,
                                   .stage = j->stage,
                                   .work_dir = workdir,
                                   .worker = a->name,
                                   .report_file = j->report_path};
    return kiln_agent_job_env(environ, jenv, &ji);
}

static void send_report(struct agent *a, struct ajob *j);

/* 'text' for /bin/sh, with embedded single quotes escaped. */
static int sh_quote(struct kiln_buf *b, const char *text)
{
    int rc = kiln_buf_puts(b, "'");
    for (const char *p = text; !rc && *p; p++)
        rc = *p == '\'' ? kiln_buf_puts(b, "'\\''") : kiln_buf_append(b, p, 1);
    if (!rc) rc = kiln_buf_puts(b, "'");
    return rc;
}

/* A test stage on a host that shares no store with the build host fetches
 * its inputs first, by real Nix substitution from the server's cache
 * (signatures required, the farm's key from the lease; the token through a
 * netrc, as Nix sends it): `nix-store -r` is a no-op where they are already
 * valid. The command is written into cmd, followed by " && ". */
static int substitute_inputs(struct agent *a, json_t *sub, const char *dir, struct kiln_buf *cmd,
                             struct kiln_error *err)
{
    json_t *paths = json_object_get(sub, "paths");
    const char *key = json_string_value(json_object_get(sub, "public_key"));
    const char *cache = json_string_value(json_object_get(sub, "cache"));
    if (!json_array_size(paths) || !key || !cache) return KILN_OK;
    const struct kiln_worker_config *cfg = a->cfg;
    char netrc[PATH_MAX], host[256] = "";
    const char *h = strstr(cfg->server, "://");
    h = h ? h + 3 : cfg->server;
    size_t hl = strcspn(h, ":/");
    if (hl >= sizeof host) return kiln_fail(err, KILN_ELIMIT, "server host name too long");
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (snprintf(netrc, sizeof netrc, "%s/netrc", dir) >= (int)sizeof netrc)
        return kiln_fail(err, KILN_ELIMIT, "the work dir path is too long");
    /* The netrc holds the worker token: gone before the recipe's checks run. */
    int rc = kiln_buf_puts(cmd, "{ nix-store -r");
    size_t i;
    json_t *v;
    json_array_foreach(paths, i, v)
    {
        const char *p = json_string_value(v);
        if (!p || strncmp(p, "/nix/store/", 11))
            return kiln_fail(err, KILN_EINVAL,
                             "the lease names a test input that is not a store path");
        if (!rc) rc = kiln_buf_puts(cmd, " ");
        if (!rc) rc = sh_quote(cmd, p);
    }
    if (!rc) rc = kiln_buf_printf(cmd, " --option substituters ");
    if (!rc) {
        char url[1200];
        snprintf(url, sizeof url, "%s%s", cfg->server, cache);
        rc = sh_quote(cmd, url);
    }
    if (!rc) rc = kiln_buf_puts(cmd, " --option trusted-public-keys ");
    if (!rc) rc = sh_quote(cmd, key);
    /* A lookup made before the path was staged must not be remembered. */
    if (!rc)
        rc =
            kiln_buf_puts(cmd, " --option require-sigs true --option narinfo-cache-negative-ttl 0");
    if (!rc && cfg->ca_file[0]) {
        rc = kiln_buf_puts(cmd, " --option ssl-cert-file ");
        if (!rc) rc = sh_quote(cmd, cfg->ca_file);
    }
    char tok[160];
    current_token(a, tok, sizeof tok);
    if (!rc && tok[0]) {
        FILE *f = NULL;
        int fd = open(netrc, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || !(f = fdopen(fd, "w"))) {
            if (fd >= 0) close(fd);
            return kiln_fail(err, KILN_EIO, "cannot write %s: %s", netrc, strerror(errno));
        }
        fprintf(f, "machine %s login kiln password %s\n", host, tok);
        if (fclose(f) != 0) return kiln_fail(err, KILN_EIO, "cannot write %s", netrc);
        rc = kiln_buf_puts(cmd, " --option netrc-file ");
        if (!rc) rc = sh_quote(cmd, netrc);
    }
    if (!rc) rc = kiln_buf_puts(cmd, "; s=$?; rm -f ");
    if (!rc) rc = sh_quote(cmd, netrc);
    if (!rc) rc = kiln_buf_puts(cmd, "; [ $s -eq 0 ]; } && ");
    return rc ? kiln_fail(err, rc, "out of memory") : KILN_OK;
}

/* A test stage runs `kiln selftest run` on the build's output: the output
 * is linked as result-NAME where the recipe's checks and artifact_globs look
 * for it, and the lease's selftest spec is handed over in a file. */
static int prepare_test_stage(struct agent *a, struct ajob *j, json_t *jo, const char *dir,
                              const char *cwd, struct kiln_buf *cmd, struct kiln_error *err)
{
    json_t *outs = json_object_get(jo, "outputs");
    const char *out0 = json_string_value(json_array_get(outs, 0));
    if (out0 && j->name[0] && !strchr(j->name, '/') && strcmp(j->name, "..")) {
        char link[PATH_MAX];
        struct stat st;
        if (snprintf(link, sizeof link, "%s/result-%s", cwd, j->name) < (int)sizeof link &&
            (lstat(link, &st) != 0 || S_ISLNK(st.st_mode))) {
            unlink(link);
            if (symlink(out0, link) != 0)
                return kiln_fail(err, KILN_EIO, "cannot link %s to %s: %s", link, out0,
                                 strerror(errno));
        }
    }
    int rc = substitute_inputs(a, json_object_get(jo, "substitute"), dir, cmd, err);
    if (rc) return rc;
    json_t *spec = json_object_get(jo, "selftest");
    if (!json_is_object(spec))
        return kiln_buf_puts(cmd, "echo 'kiln: this job has no selftest spec; nothing to test'");
    char specp[PATH_MAX];
    if (snprintf(specp, sizeof specp, "%s/selftest-spec.json", dir) >= (int)sizeof specp ||
        snprintf(j->selftest_doc, sizeof j->selftest_doc, "%s/selftest-result.json", dir) >=
            (int)sizeof j->selftest_doc)
        return kiln_fail(err, KILN_ELIMIT, "the work dir path is too long");
    unlink(j->selftest_doc);
    if (json_dump_file(spec, specp, JSON_COMPACT) != 0)
        return kiln_fail(err, KILN_EIO, "cannot write %s", specp);
    rc = sh_quote(cmd, a->exe);
    if (!rc) rc = kiln_buf_puts(cmd, " selftest run --detect-host --spec ");
    if (!rc) rc = sh_quote(cmd, specp);
    if (!rc) rc = kiln_buf_puts(cmd, " --workdir ");
    if (!rc) rc = sh_quote(cmd, cwd);
    if (!rc) rc = kiln_buf_puts(cmd, " --out ");
    if (!rc) rc = sh_quote(cmd, j->selftest_doc);
    if (!rc && a->selftest_dir[0]) {
        rc = kiln_buf_puts(cmd, " --selftest-dir ");
        if (!rc) rc = sh_quote(cmd, a->selftest_dir);
    }
    return rc ? kiln_fail(err, rc, "out of memory") : KILN_OK;
}

/* Step mode: the cluster decided the cores and the GPU; the job sees those
 * (NIX_BUILD_CORES = the cores Slurm granted), not the lease's numbers. */
static void step_grant(struct ajob *j)
{
    const char *c = getenv("SLURM_CPUS_PER_TASK");
    if (!c) c = getenv("SLURM_CPUS_ON_NODE");
    char *e;
    long v = c ? strtol(c, &e, 10) : 0;
    if (c && !*e && v > 0 && v < 100000) j->cores = (int)v;
    const char *g = getenv("CUDA_VISIBLE_DEVICES");
    if (j->gpu_index >= 0 && g) {
        v = strtol(g, &e, 10);
        if (!*e && e != g && v >= 0 && v < KILN_MAX_GPUS) j->gpu_index = (int)v;
    }
}

/* Step mode: a SIGKILL (or a shell's 137 for its killed child) with an OOM
 * kill counted in our own (Slurm's) memory cgroup means the cluster stopped
 * the job for its memory limit. */
static void step_explain_oom(struct ajob *j)
{
    if (j->res.term_signal != SIGKILL && j->res.exit_code != 128 + SIGKILL) return;
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f) return;
    char line[1024], path[1024] = "";
    while (fgets(line, sizeof line, f)) {
        char *m = strstr(line, ":memory:");
        if (m) {
            snprintf(path, sizeof path, "%s", m + 8);
            path[strcspn(path, "\n")] = '\0';
        }
    }
    fclose(f);
    /* the job's cgroup and its parents up to the step: Slurm counts there */
    for (int up = 0; path[0] && up < 3; up++) {
        char file[1200];
        snprintf(file, sizeof file, "/sys/fs/cgroup/memory%s/memory.oom_control", path);
        long kills = 0;
        if ((f = fopen(file, "re"))) {
            while (fgets(line, sizeof line, f))
                if (sscanf(line, "oom_kill %ld", &kills) == 1) break;
            fclose(f);
        }
        if (kills > 0) {
            char peak[32];
            kiln_size_format(j->res.peak_ram, peak, sizeof peak);
            snprintf(j->res.reason, sizeof j->res.reason,
                     "killed by Slurm: it used more memory than its limit of %ld MiB "
                     "(--mem, enforced by Slurm's cgroup), peak %s",
                     j->ram_mb, peak);
            return;
        }
        char *slash = strrchr(path, '/');
        if (!slash || slash == path) break;
        *slash = '\0';
    }
}

static void start_job(struct agent *a, json_t *jo)
{
    json_int_t id = json_integer_value(json_object_get(jo, "id"));
    if (id <= 0) {
        kiln_log(a->lg, KILN_LOG_WARN, "lease answer without a job id; ignored");
        return;
    }
    json_t *att = json_object_get(jo, "attempt");
    long attempt = json_is_integer(att) ? (long)json_integer_value(att) : 1;
    /* The same attempt again, or a new one while the old still runs, is
     * ignored (the server's reconcile cancels what is stale). A new attempt
     * after the old one finished (its report may still be on its way) is
     * taken: during shutdown it is handed back at once as an infra failure. */
    struct ajob *old = find_job(a, (long)id);
    if (find_attempt(a, (long)id, attempt) || (old && !old->finished)) {
        kiln_log(a->lg, KILN_LOG_WARN,
                 "job %lld attempt %ld leased again while still here; ignored", (long long)id,
                 attempt);
        return;
    }
    struct ajob *j = calloc(1, sizeof *j);
    if (!j) return;
    j->a = a;
    j->id = (long)id;
    json_t *v = json_object_get(jo, "attempt");
    j->attempt = json_is_integer(v) ? (long)json_integer_value(v) : 1;
    snprintf(j->stage, sizeof j->stage, "%s",
             json_string_value(json_object_get(jo, "stage"))
                 ? json_string_value(json_object_get(jo, "stage"))
                 : "build");
    const char *nm = json_string_value(json_object_get(jo, "name"));
    snprintf(j->name, sizeof j->name, "%s", nm ? nm : "");
    v = json_object_get(jo, "cores");
    j->cores = json_is_integer(v) && json_integer_value(v) > 0 ? (int)json_integer_value(v) : 1;
    v = json_object_get(jo, "ram_mb");
    j->ram_mb = json_is_integer(v) && json_integer_value(v) > 0 ? (long)json_integer_value(v) : 0;
    v = json_object_get(jo, "gpu_index");
    j->gpu_index = json_is_integer(v) ? (int)json_integer_value(v) : -1;
    if (a->step) step_grant(j);
    j->next = a->jobs;
    a->jobs = j;

    const char *cmd = json_string_value(json_object_get(jo, "command"));
    double timeout = json_number_value(json_object_get(jo, "timeout_s"));
    char dir[PATH_MAX], logs[PATH_MAX], cg[128];
    struct kiln_error err = {0};
    int rc = KILN_OK;
    int toolong =
        snprintf(dir, sizeof dir, "%s/jobs/%ld-%ld", a->cfg->work_dir, j->id, j->attempt) >=
            (int)sizeof dir ||
        snprintf(logs, sizeof logs, "%s/logs", a->cfg->work_dir) >= (int)sizeof logs ||
        snprintf(j->log_path, sizeof j->log_path, "%s/%ld-%ld.log", logs, j->id, j->attempt) >=
            (int)sizeof j->log_path ||
        snprintf(cg, sizeof cg, "%d-%ld-%ld", (int)getpid(), j->id, j->attempt) >= (int)sizeof cg ||
        snprintf(j->report_path, sizeof j->report_path, "%s/jobs/%ld-%ld.report.json",
                 a->cfg->work_dir, j->id, j->attempt) >= (int)sizeof j->report_path;
    if (toolong) {
        rc = kiln_fail(&err, KILN_ELIMIT, "the work dir path is too long");
    } else if (a->shutting) {
        rc = kiln_fail(&err, KILN_ESTATE, "worker is shutting down");
    } else if (!cmd || !*cmd) {
        rc = kiln_fail(&err, KILN_EINVAL, "the job has no command");
    } else if ((!kiln_spare_take_dir(&a->spare, dir) && kiln_mkdir_p(dir, 0755)) ||
               kiln_mkdir_p(logs, 0755)) {
        rc = kiln_fail(&err, KILN_EIO, "cannot create %s: %s", dir, strerror(errno));
    } else {
        snprintf(j->dir, sizeof j->dir, "%s", dir);
        /* a fresh attempt starts a fresh log: a spare one, or none */
        if (!kiln_spare_take_log(&a->spare, j->log_path)) unlink(j->log_path);
        unlink(j->report_path);
        /* A job from a tracked repository builds its own commit: the job
         * first checks that commit out into its directory (in the job's
         * process, so the loop never waits for git) and runs there. */
        const char *src_url =
            json_string_value(json_object_get(json_object_get(jo, "attrs"), "source_url"));
        const char *commit = json_string_value(json_object_get(jo, "commit"));
        int from_git = src_url && *src_url && commit && strlen(commit) == 40;
        const char *cwd = from_git ? dir : a->cfg->source_dir[0] ? a->cfg->source_dir : dir;
        snprintf(j->cwd, sizeof j->cwd, "%s", cwd);
        struct kiln_buf tcmd = {0}, gcmd = {0};
        char **env = NULL;
        if (!strcmp(j->stage, "test")) {
            rc = prepare_test_stage(a, j, jo, dir, cwd, &tcmd, &err);
            if (!rc) cmd = tcmd.data;
        }
        if (!rc && from_git) {
            int q = sh_quote(&gcmd, a->exe);
            if (!q) q = kiln_buf_puts(&gcmd, " source checkout --url ");
            if (!q) q = sh_quote(&gcmd, src_url);
            if (!q) q = kiln_buf_puts(&gcmd, " --commit ");
            if (!q) q = sh_quote(&gcmd, commit);
            if (!q) q = kiln_buf_puts(&gcmd, " --dir ");
            if (!q) q = sh_quote(&gcmd, dir);
            if (!q) q = kiln_buf_printf(&gcmd, " && { %s\n}", cmd);
            if (q)
                rc = kiln_fail(&err, KILN_ENOMEM, "out of memory");
            else
                cmd = gcmd.data;
        }
        if (!rc) env = job_env(a, j, json_object_get(jo, "env"), dir);
        if (!rc && !env) {
            rc = kiln_fail(&err, KILN_ENOMEM, "out of memory building the environment");
        } else if (!rc) {
            struct kiln_proc_spec s = {.command = cmd,
                                       .env = env,
                                       .cwd = cwd,
                                       .log_path = j->log_path,
                                       .timeout_s = timeout > 0 ? timeout : 0,
                                       /* a step's limit is the cluster's (--mem) */
                                       .ram_bytes = a->step ? 0 : (uint64_t)j->ram_mb << 20,
                                       .name = cg,
                                       .limits = &a->limits};
            rc = kiln_proc_start(&a->loop, &s, on_job_done, j, &j->proc, &err);
        }
        kiln_agent_env_free(env);
        kiln_buf_free(&tcmd);
        kiln_buf_free(&gcmd);
    }
    if (rc) {
        kiln_log(a->lg, KILN_LOG_ERROR, "job %ld: cannot start: %s", j->id, err.msg);
        j->finished = 1;
        memset(&j->res, 0, sizeof j->res);
        j->res.exit_code = -1;
        j->res.infra = 1;
        if (snprintf(j->res.reason, sizeof j->res.reason, "worker %.60s could not start it: %.150s",
                     a->name, err.msg) < 0)
            j->res.reason[0] = '\0';
        j->log_gone = 1;
        return;
    }
    kiln_log(a->lg, KILN_LOG_INFO, "job %ld (attempt %ld, %s) started: %d cores, %ld MiB%s", j->id,
             j->attempt, j->name, j->cores, j->ram_mb, j->gpu_index >= 0 ? ", with a GPU" : "");
}

/* ---- endpoints ---- */

static json_t *running_list(struct agent *a, int with_offsets)
{
    json_t *arr = json_array();
    if (!arr) return NULL;
    for (struct ajob *j = a->jobs; j; j = j->next) {
        if (j->server_cancelled || j->reported) continue;
        json_t *o = with_offsets
                        ? json_pack("{s:I,s:I,s:I}", "job", (json_int_t)j->id, "attempt",
                                    (json_int_t)j->attempt, "log_offset", (json_int_t)j->sent)
                        : json_pack("{s:I,s:I,s:I}", "job", (json_int_t)j->id, "attempt",
                                    (json_int_t)j->attempt, "peak_ram_mb",
                                    (json_int_t)((j->proc && !j->finished ? kiln_proc_peak(j->proc)
                                                                          : j->res.peak_ram) >>
                                                 20));
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* The issued credential, kept (mode 0600) so a restarted agent can prove it
 * is the worker the server knows; failures only cost that convenience. */
static void keep_credential(struct agent *a, const char *cred)
{
    uv_mutex_lock(&a->cred_lock);
    snprintf(a->credential, sizeof a->credential, "%s", cred);
    uv_mutex_unlock(&a->cred_lock);
    if (!a->cred_path[0]) return;
    int rc = cred[0] ? kiln_write_file_atomic(a->cred_path, cred, strlen(cred), 0600)
                     : (unlink(a->cred_path) == 0 || errno == ENOENT ? KILN_OK : KILN_EIO);
    if (rc)
        kiln_log(a->lg, KILN_LOG_WARN, "cannot update %s: the credential lives in memory only",
                 a->cred_path);
}

static void load_credential(struct agent *a)
{
    struct kiln_buf b = {0};
    if (a->cred_path[0] && kiln_read_file(a->cred_path, 256, &b) == KILN_OK && b.data &&
        b.len == KILN_TOKEN_LEN - 1 && !strncmp(b.data, "kiln_", 5))
        snprintf(a->credential, sizeof a->credential, "%.*s", (int)b.len, b.data);
    kiln_buf_free(&b);
}

static void register_done(struct req *r)
{
    struct agent *a = r->a;
    if (!r->rc && r->status == 401 && a->cred_used) {
        /* Revoked or rotated: start over with the registration token. */
        kiln_log(a->lg, KILN_LOG_WARN,
                 "the server refused this worker's credential; "
                 "registering anew with the configured token");
        keep_credential(a, "");
        lost_connection(a, "credential refused");
        return;
    }
    if (common_status(a, r)) return;
    if (r->status != 200 && r->status != 201) {
        char m[400];
        snprintf(m, sizeof m, "registration refused (HTTP %ld): %s", r->status,
                 kiln_httpc_error_message(r->resp, r->status));
        if (r->status == 400) {
            fatal(a, KILN_EINVAL, m);
            return;
        }
        lost_connection(a, m);
        return;
    }
    json_t *id = json_object_get(r->resp, "worker_id");
    if (!json_is_integer(id)) {
        lost_connection(a, "registration answer has no worker_id");
        return;
    }
    a->worker_id = (long)json_integer_value(id);
    const char *cred = json_string_value(json_object_get(r->resp, "credential"));
    if (!cred || strlen(cred) != KILN_TOKEN_LEN - 1) {
        lost_connection(a, "registration answer has no credential");
        return;
    }
    keep_credential(a, cred);
    json_t *hb = json_object_get(r->resp, "heartbeat_s");
    a->heartbeat_s = a->cfg->heartbeat_s > 0 ? a->cfg->heartbeat_s
                     : json_is_integer(hb) && json_integer_value(hb) > 0
                         ? (int)json_integer_value(hb)
                         : 5;
    a->registered = 1;
    a->backoff_ms = 0;
    a->next_hb_ns = now_ns() + (uint64_t)a->heartbeat_s * 1000000000ull;
    int running = 0;
    for (struct ajob *j = a->jobs; j; j = j->next)
        running++;
    kiln_log(a->lg, KILN_LOG_INFO, "registered as worker %ld (%d job%s still here)", a->worker_id,
             running, running == 1 ? "" : "s");
    cancel_jobs(a, json_object_get(r->resp, "cancel"));
}

static void send_register(struct agent *a)
{
    struct req *r = req_new(a, CH_CTL, "POST", register_done);
    if (!r) return;
    a->cred_used = a->credential[0] != '\0';
    snprintf(r->path, sizeof r->path, "/api/v1/workers/register");
    json_t *h = kiln_host_to_json(a->host);
    json_t *run = running_list(a, 1);
    if (!h || !run || json_object_set_new(h, "running", run) ||
        json_object_set_new(h, "name", json_string(a->name)) ||
        (a->cfg->labels && json_object_set(h, "labels", a->cfg->labels)) ||
        (a->cfg->max_jobs > 0 &&
         json_object_set_new(h, "max_jobs", json_integer(a->cfg->max_jobs)))) {
        json_decref(h);
        free(r);
        return;
    }
    json_object_del(h, "detail");
    r->body = h;
    req_submit(r);
}

static void heartbeat_done(struct req *r)
{
    struct agent *a = r->a;
    if (common_status(a, r)) return;
    if (r->status == 404 || r->status == 409) {
        lost_connection(a, "the server does not know this worker any more");
        return;
    }
    if (r->status != 200) return;
    cancel_jobs(a, json_object_get(r->resp, "cancel"));
    int drain = json_is_true(json_object_get(r->resp, "drain"));
    if (drain != a->draining)
        kiln_log(a->lg, KILN_LOG_INFO,
                 drain ? "draining: finishing current work, taking no more"
                       : "drain lifted: taking work again");
    a->draining = drain;
}

/* Free MiB of the fuller of the work dir and the Nix store (-1 unknown). */
static long disk_free_mb(const struct agent *a)
{
    const char *paths[] = {a->cfg->work_dir, "/nix/store"};
    long best = -1;
    for (size_t i = 0; i < 2; i++) {
        struct statvfs sv;
        if (statvfs(paths[i], &sv) != 0) continue;
        long mb = (long)(((uint64_t)sv.f_bavail * sv.f_frsize) >> 20);
        if (best < 0 || mb < best) best = mb;
    }
    return best;
}

/* Memory pressure: PSI "some avg10" over 10 %, or (without PSI) less than
 * 5 % of RAM available. */
static int mem_pressure(void)
{
    char t[512];
    FILE *f = fopen("/proc/pressure/memory", "re");
    if (f) {
        size_t n = fread(t, 1, sizeof t - 1, f);
        fclose(f);
        t[n] = '\0';
        const char *p = strstr(t, "some avg10=");
        if (p) return strtod(p + 11, NULL) > 10.0;
    }
    f = fopen("/proc/meminfo", "re");
    if (!f) return 0;
    long total = 0, avail = -1, v;
    char key[64];
    while (fscanf(f, "%63s %ld kB", key, &v) == 2) {
        if (!strcmp(key, "MemTotal:")) total = v;
        if (!strcmp(key, "MemAvailable:")) avail = v;
    }
    fclose(f);
    return total > 0 && avail >= 0 && avail < total / 20;
}

static void send_heartbeat(struct agent *a)
{
    struct req *r = req_new(a, CH_CTL, "POST", heartbeat_done);
    if (!r) return;
    snprintf(r->path, sizeof r->path, "/api/v1/workers/%ld/heartbeat", a->worker_id);
    json_int_t disk = disk_free_mb(a);
    int pressure = mem_pressure();
    a->low_resources = pressure || (disk >= 0 && disk < a->cfg->min_disk_free_mb);
    if (a->low_resources != a->low_logged) {
        a->low_logged = a->low_resources;
        if (a->low_resources)
            kiln_log(a->lg, KILN_LOG_WARN, "taking no new job: %s",
                     pressure ? "the host is under memory pressure"
                              : "the work dir or /nix/store is nearly full");
        else
            kiln_log(a->lg, KILN_LOG_INFO, "resources recovered; taking jobs again");
    }
    json_t *run = running_list(a, 0);
    r->body = run ? json_pack("{s:o,s:I,s:b}", "running", run, "disk_free_mb", disk, "mem_pressure",
                              pressure)
                  : NULL;
    if (!r->body) {
        free(r);
        return;
    }
    a->next_hb_ns = now_ns() + (uint64_t)a->heartbeat_s * 1000000000ull;
    req_submit(r);
}

/* Returns KILN_ENOMEM when the GPU list could not be built. */
static int free_capacity(struct agent *a, int *cores, long *ram, json_t *gpus, int *njobs)
{
    int c = a->host->cores, n = 0;
    long ram_mb = a->host->ram_mb;
    int used[KILN_MAX_GPUS] = {0};
    for (struct ajob *j = a->jobs; j; j = j->next) {
        if (j->finished) continue;
        c -= j->cores;
        ram_mb -= j->ram_mb;
        n++;
        for (int i = 0; i < a->host->ngpus; i++)
            if (a->host->gpus[i].index == j->gpu_index) used[i] = 1;
    }
    *cores = c < 0 ? 0 : c;
    *ram = ram_mb < 0 ? 0 : ram_mb;
    *njobs = n;
    for (int i = 0; gpus && i < a->host->ngpus; i++)
        if (!used[i] && json_array_append_new(gpus, json_integer(a->host->gpus[i].index)))
            return KILN_ENOMEM;
    return KILN_OK;
}

/* A lease's answer (200): jobs to cancel, and the jobs leased. */
static void take_lease(struct agent *a, json_t *ans)
{
    cancel_jobs(a, json_object_get(ans, "cancel"));
    json_t *jobs = json_object_get(ans, "jobs"), *jo;
    size_t i;
    if (json_is_array(jobs)) { /* a batch lease (?max=N) */
        json_array_foreach(jobs, i, jo) if (json_is_object(jo)) start_job(a, jo);
        return;
    }
    jo = json_object_get(ans, "job");
    if (json_is_object(jo)) start_job(a, jo);
}

static void lease_done(struct req *r)
{
    struct agent *a = r->a;
    if (r->rc || r->status != 200) {
        /* Only an answer without work may come back at once: pace those. */
        if (now_ns() - a->lease_sent_ns < 1000000000ull)
            a->next_lease_ns = now_ns() + 1000000000ull;
    }
    if (common_status(a, r)) return;
    if (r->status == 204) return;
    if (r->status == 404 || r->status == 409) {
        lost_connection(a, "the server does not know this worker any more");
        return;
    }
    if (r->status != 200) {
        kiln_log(a->lg, KILN_LOG_WARN, "lease: HTTP %ld: %s", r->status,
                 kiln_httpc_error_message(r->resp, r->status));
        return;
    }
    take_lease(a, r->resp);
}

/* What a lease asks for now: *max jobs (at least one core each, so on a
 * farm of short jobs one round trip fills every free slot) and the offer
 * {free_cores, free_ram_mb, free_gpus}. 0 with *offer NULL: no room. */
static int lease_offer(struct agent *a, int *max, json_t **offer)
{
    int cores, njobs;
    long ram;
    *offer = NULL;
    json_t *gpus = json_array();
    if (!gpus || free_capacity(a, &cores, &ram, gpus, &njobs)) {
        json_decref(gpus);
        return KILN_ENOMEM;
    }
    if (cores <= 0 || ram <= 0 || (a->cfg->max_jobs > 0 && njobs >= a->cfg->max_jobs)) {
        json_decref(gpus);
        return KILN_OK;
    }
    int m = cores > MAX_BATCH_LEASE ? MAX_BATCH_LEASE : cores;
    if (a->cfg->max_jobs > 0 && m > a->cfg->max_jobs - njobs) m = a->cfg->max_jobs - njobs;
    *max = m < 1 ? 1 : m;
    *offer = json_pack("{s:i,s:I,s:o}", "free_cores", cores, "free_ram_mb", (json_int_t)ram,
                       "free_gpus", gpus);
    return *offer ? KILN_OK : KILN_ENOMEM;
}

static void send_lease(struct agent *a, int max, json_t *offer)
{
    struct req *r = req_new(a, CH_LEASE, "POST", lease_done);
    if (!r) {
        json_decref(offer);
        return;
    }
    int wait = a->cfg->lease_wait_s;
    snprintf(r->path, sizeof r->path, "/api/v1/workers/%ld/lease?wait=%d&max=%d", a->worker_id,
             wait, max);
    r->timeout_ms = (long)wait * 1000 + 15000;
    r->body = offer;
    a->lease_sent_ns = now_ns();
    req_submit(r);
}

static void log_done(struct req *r)
{
    struct agent *a = r->a;
    struct ajob *j = find_attempt(a, r->job_id, r->attempt);
    if (!j) return;
    if (r->rc) {
        lost_connection(a, r->err.msg);
        return;
    }
    json_t *sz = json_object_get(r->resp, "size");
    if ((r->status == 200 || r->status == 201) && json_is_integer(sz)) {
        j->sent = (uint64_t)json_integer_value(sz);
        return;
    }
    if (r->status == 409 && json_is_integer(sz)) {
        /* The server has fewer (or more) bytes than we thought: resume there. */
        kiln_log(a->lg, KILN_LOG_DEBUG, "job %ld: log resumes at %lld (server's size)", j->id,
                 (long long)json_integer_value(sz));
        j->sent = (uint64_t)json_integer_value(sz);
        return;
    }
    if (common_status(a, r)) return;
    kiln_log(a->lg, KILN_LOG_WARN,
             "job %ld: server refuses its log (HTTP %ld: %s); not sending more", j->id, r->status,
             kiln_httpc_error_message(r->resp, r->status));
    j->log_gone = 1;
}

static int send_log(struct agent *a)
{
    int n = 0;
    for (struct ajob *j = a->jobs; j; j = j->next)
        n++;
    if (!n) return 0;
    /* round robin so one chatty job does not starve the others */
    unsigned start = a->log_rr++ % (unsigned)n;
    struct ajob *j = a->jobs;
    for (unsigned i = 0; i < start; i++)
        j = j->next;
    for (int k = 0; k < n; k++, j = j->next ? j->next : a->jobs) {
        if (j->log_gone || j->server_cancelled || j->reported) continue;
        struct stat st;
        if (stat(j->log_path, &st) != 0) continue;
        if ((uint64_t)st.st_size <= j->sent) continue;
        struct req *r = req_new(a, CH_LOG, "POST", log_done);
        if (!r) return 0;
        r->is_log = 1;
        r->job_id = j->id;
        r->attempt = j->attempt;
        r->offset = j->sent;
        uint64_t left = (uint64_t)st.st_size - j->sent;
        r->maxlen = left > LOG_CHUNK ? LOG_CHUNK : (size_t)left;
        r->timeout_ms = 60000;
        snprintf(r->log_path, sizeof r->log_path, "%s", j->log_path);
        snprintf(r->path, sizeof r->path, "/api/v1/jobs/%ld/log?attempt=%ld&offset=%llu", j->id,
                 j->attempt, (unsigned long long)j->sent);
        req_submit(r);
        return 1;
    }
    return 0;
}

static int log_flushed(struct ajob *j)
{
    if (j->log_gone) return 1;
    struct stat st;
    if (stat(j->log_path, &st) != 0) return 1;
    return (uint64_t)st.st_size <= j->sent;
}

static void report_done(struct req *r)
{
    struct agent *a = r->a;
    struct ajob *j = find_attempt(a, r->job_id, r->attempt);
    if (!j) return;
    if (common_status(a, r)) return;
    if (r->status == 200 || r->status == 201) {
        const char *st = json_string_value(json_object_get(r->resp, "state"));
        kiln_log(a->lg, KILN_LOG_INFO, "job %ld reported; server state %s", j->id, st ? st : "?");
    } else {
        kiln_log(a->lg, KILN_LOG_WARN, "job %ld: report answered HTTP %ld (%s); dropping it", j->id,
                 r->status, kiln_httpc_error_message(r->resp, r->status));
    }
    j->reported = 1;
    drop_job(a, j);
}

/* The report of a finished attempt: the body of POST /jobs/{id}/report and,
 * with "job" added, one item of POST /workers/{id}/reports. */
static json_t *report_body(struct agent *a, struct ajob *j)
{
    const struct kiln_proc_result *s = &j->res;
    /* outputs only when this stage has some: the server keeps the build's
     * outputs when a test report leaves them out. */
    json_t *b =
        json_pack("{s:I,s:s,s:i,s:i,s:o,s:b,s:I,s:f,s:O}", "attempt", (json_int_t)j->attempt,
                  "stage", j->stage, "exit_code", s->exit_code, "signal", s->term_signal, "reason",
                  s->reason[0] ? json_string(s->reason) : json_null(), "infra", s->infra,
                  "peak_ram_mb", (json_int_t)((j->slurm_peak ? j->slurm_peak : s->peak_ram) >> 20),
                  "cpu_s", s->cpu_s, "selftest", j->selftest ? j->selftest : json_null());
    if (b && j->outputs && json_object_set(b, "outputs", j->outputs)) {
        json_decref(b);
        b = NULL;
    }
    /* Hosts that share one store stage nothing: the server then takes the
     * outputs as they are instead of asking where their NARs went. */
    if (b && !strcmp(j->stage, "build") && !a->cfg->stage_outputs &&
        json_object_set_new(b, "staged", json_false())) {
        json_decref(b);
        b = NULL;
    }
    return b;
}

static void send_report(struct agent *a, struct ajob *j)
{
    struct req *r = req_new(a, CH_CTL, "POST", report_done);
    if (!r) return;
    r->job_id = j->id;
    r->attempt = j->attempt;
    snprintf(r->path, sizeof r->path, "/api/v1/jobs/%ld/report", j->id);
    if (!(r->body = report_body(a, j))) {
        free(r);
        return;
    }
    req_submit(r);
}

static void reports_done(struct req *r)
{
    struct agent *a = r->a;
    a->lease_in_reports = 0;
    if (common_status(a, r)) return;
    if (r->status == 404) {
        /* A server from before the batch route: report one by one. */
        a->single_reports = 1;
        return;
    }
    json_t *items = json_object_get(r->body, "reports");
    json_t *results = json_object_get(r->resp, "results");
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i), *res = json_array_get(results, i);
        struct ajob *j = find_attempt(a, (long)json_integer_value(json_object_get(it, "job")),
                                      (long)json_integer_value(json_object_get(it, "attempt")));
        if (!j) continue;
        const char *st = json_string_value(json_object_get(res, "state"));
        if (r->status == 200 && st)
            kiln_log(a->lg, KILN_LOG_INFO, "job %ld reported; server state %s", j->id, st);
        else
            kiln_log(a->lg, KILN_LOG_WARN, "job %ld: report answered HTTP %ld (%s); dropping it",
                     j->id,
                     r->status == 200 ? (long)json_integer_value(json_object_get(res, "status"))
                                      : r->status,
                     kiln_httpc_error_message(r->status == 200 ? res : r->resp,
                                              r->status == 200 ? 409 : r->status));
        j->reported = 1;
        drop_job(a, j);
    }
    /* ?lease=N: the jobs leased after the reports ("lease": null when none
     * fit; absent from a server without it, and the next pump asks). */
    json_t *lease = json_object_get(r->resp, "lease");
    if (r->status == 200 && json_is_object(lease)) take_lease(a, lease);
}

/* Several finished jobs in one request and one server transaction. With an
 * offer (lease_offer), the same round trip asks for up to lease_max jobs
 * to take their place. */
static void send_reports(struct agent *a, struct ajob **js, int n, int lease_max, json_t *offer)
{
    struct req *r = req_new(a, CH_CTL, "POST", reports_done);
    json_t *items = json_array();
    if (!r || !items) {
        free(r);
        json_decref(items);
        json_decref(offer);
        return;
    }
    if (offer)
        snprintf(r->path, sizeof r->path, "/api/v1/workers/%ld/reports?lease=%d", a->worker_id,
                 lease_max);
    else
        snprintf(r->path, sizeof r->path, "/api/v1/workers/%ld/reports", a->worker_id);
    for (int i = 0; i < n; i++) {
        json_t *b = report_body(a, js[i]);
        if (!b || json_object_set_new(b, "job", json_integer(js[i]->id)) ||
            json_array_append_new(items, b)) {
            json_decref(items);
            json_decref(offer);
            free(r);
            return;
        }
    }
    r->body = offer ? offer : json_object();
    if (!r->body || json_object_set_new(r->body, "reports", items)) {
        json_decref(r->body);
        free(r);
        return;
    }
    if (req_submit(r) == KILN_OK && offer) {
        a->lease_in_reports = 1;
        a->lease_sent_ns = now_ns();
    }
}

/* ---- step mode: the attempt's currency and Slurm's accounting ---- */

/* A step has no heartbeat: it asks the lease route whether its attempt is
 * still the current one. 409 means kiln requeued it (a node failure: Slurm
 * cannot reach this node's slurmd to end us) or cancelled it: stop the
 * command, so an old attempt never runs beside the new one. Errors and 503
 * (the server reconciling after a start) change nothing. */
static void step_check_done(struct req *r)
{
    struct agent *a = r->a;
    struct ajob *j = find_attempt(a, r->job_id, r->attempt);
    if (!j || common_status(a, r) || r->status != 409) return;
    if (j->server_cancelled) return;
    kiln_log(a->lg, KILN_LOG_INFO, "job %ld attempt %ld is not current any more (%s); stopping it",
             j->id, j->attempt, kiln_httpc_error_message(r->resp, r->status));
    j->server_cancelled = 1;
    if (!j->finished) kiln_proc_kill(j->proc, "its attempt was requeued or cancelled", 0);
}

static void send_step_check(struct agent *a)
{
    a->next_check_ns = now_ns() + STEP_CHECK_MS * 1000000ull;
    struct ajob *j = a->jobs;
    while (j && (j->finished || j->server_cancelled))
        j = j->next;
    if (!j) return;
    struct req *r = req_new(a, CH_CTL, "GET", step_check_done);
    if (!r) return;
    r->job_id = j->id;
    r->attempt = j->attempt;
    snprintf(r->path, sizeof r->path, "/api/v1/slurm/lease/%ld/%ld", j->id, j->attempt);
    req_submit(r);
}

static void acct_work(uv_work_t *w)
{
    struct acctwork *aw = w->data;
    aw->rc = kiln_step_slurm_peak(&aw->bytes, &aw->err);
}

static void acct_done(uv_work_t *w, int status)
{
    struct acctwork *aw = w->data;
    struct agent *a = aw->a;
    struct ajob *j = find_attempt(a, aw->job, aw->attempt);
    (void)status;
    if (j) {
        j->acct_pending = 0;
        char mine[32], theirs[32];
        kiln_size_format(j->res.peak_ram, mine, sizeof mine);
        FILE *f = fopen(j->log_path, "ae");
        if (!aw->rc) {
            j->slurm_peak = aw->bytes;
            kiln_size_format(aw->bytes, theirs, sizeof theirs);
            kiln_log(a->lg, KILN_LOG_INFO, "job %ld: peak RAM by Slurm (sstat MaxRSS) %s", j->id,
                     theirs);
            if (f)
                fprintf(f,
                        "[kiln worker %s] peak RAM %s as Slurm measured it (sstat MaxRSS of the "
                        "batch step; kiln's own sampling saw %s)\n",
                        a->name, theirs, mine);
        } else {
            kiln_log(a->lg, KILN_LOG_INFO, "job %ld: no peak RAM from Slurm: %s", j->id,
                     aw->err.msg);
            if (f)
                fprintf(f, "[kiln worker %s] peak RAM %s (kiln's sampling; Slurm gave none: %s)\n",
                        a->name, mine, aw->err.msg);
        }
        if (f) fclose(f);
    }
    free(aw);
    pump(a);
}

static void step_ask_accounting(struct agent *a, struct ajob *j)
{
    if (!getenv("SLURM_JOB_ID") || j->server_cancelled) return;
    struct acctwork *aw = calloc(1, sizeof *aw);
    if (!aw) return;
    aw->a = a;
    aw->job = j->id;
    aw->attempt = j->attempt;
    aw->w.data = aw;
    j->acct_pending = 1;
    if (uv_queue_work(&a->loop, &aw->w, acct_work, acct_done)) {
        j->acct_pending = 0;
        free(aw);
    }
}

/* ---- the scheduler of our own work ---- */

static void stop_loop(struct agent *a)
{
    if (a->stopping) return;
    a->stopping = 1;
    uv_timer_stop(&a->tick);
    uv_timer_stop(&a->backoff);
    uv_close((uv_handle_t *)&a->tick, NULL);
    uv_close((uv_handle_t *)&a->backoff, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
}

static void pump(struct agent *a)
{
    if (a->stopping) return;
    /* drop jobs the server cancelled once their process is gone */
    for (struct ajob *j = a->jobs, *nx; j; j = nx) {
        nx = j->next;
        if (j->server_cancelled && j->finished) drop_job(a, j);
    }
    if (a->fatal) {
        int alive = 0;
        for (struct ajob *j = a->jobs; j; j = j->next)
            alive += !j->finished;
        if (!alive) stop_loop(a);
        return;
    }
    if (a->shutting) {
        /* A lease still in flight may hand us a job: wait for it, so that
         * job goes back to the server instead of being forgotten. */
        if (!a->jobs && !a->busy[CH_LEASE]) {
            stop_loop(a);
            return;
        }
        if (a->shutting == 2 && now_ns() > a->hard_deadline_ns) {
            kiln_log(a->lg, KILN_LOG_WARN,
                     "could not report every job before the deadline; exiting");
            for (struct ajob *j = a->jobs; j; j = j->next)
                if (!j->finished) kiln_proc_kill(j->proc, "worker shut down", 1);
            int alive = 0;
            for (struct ajob *j = a->jobs; j; j = j->next)
                alive += !j->finished;
            if (!alive) stop_loop(a);
            return;
        }
    }
    if (a->step && !a->jobs) {
        stop_loop(a); /* the one job is reported (or was cancelled) */
        return;
    }
    if (!a->registered) {
        if (!a->backoff_pending && !a->busy[CH_CTL]) send_register(a);
        return;
    }
    if (a->step && a->backoff_pending) return;
    if (!a->busy[CH_LOG]) send_log(a);
    int may_lease = !a->step && !a->busy[CH_LEASE] && !a->lease_in_reports && !a->draining &&
                    !a->shutting && !a->low_resources && now_ns() >= a->next_lease_ns;
    if (!a->busy[CH_CTL]) {
        struct ajob *rep = NULL, *ready[REPORTS_MAX];
        int nready = 0;
        for (struct ajob *j = a->jobs; j; j = j->next)
            if (j->finished && !j->staging && !j->acct_pending && !j->reported &&
                !j->server_cancelled && log_flushed(j)) {
                rep = j;
                if (nready < REPORTS_MAX) ready[nready++] = j;
            }
        int running = 0;
        for (struct ajob *j = a->jobs; j; j = j->next)
            running += !j->finished;
        uint64_t hb_ns = (uint64_t)a->heartbeat_s * 1000000000ull;
        if (running && hb_ns > CANCEL_HB_MS * 1000000ull) hb_ns = CANCEL_HB_MS * 1000000ull;
        if (nready && !a->single_reports && (nready > 1 || may_lease)) {
            /* The freed room asks for work in the same round trip. */
            int max = 0;
            json_t *offer = NULL;
            if (may_lease && lease_offer(a, &max, &offer)) return;
            send_reports(a, ready, nready, max, offer);
        } else if (rep)
            send_report(a, rep);
        else if (a->step && running && now_ns() >= a->next_check_ns)
            send_step_check(a);
        else if (!a->step &&
                 now_ns() + (uint64_t)a->heartbeat_s * 1000000000ull - hb_ns >= a->next_hb_ns)
            send_heartbeat(a);
    }
    if (may_lease && !a->lease_in_reports) {
        int max = 0;
        json_t *offer = NULL;
        if (lease_offer(a, &max, &offer)) return;
        if (offer) send_lease(a, max, offer);
    }
}

static void on_tick(uv_timer_t *t)
{
    pump(t->data);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct agent *a = s->data;
    a->shutting++;
    if (a->shutting == 1) {
        int n = 0;
        for (struct ajob *j = a->jobs; j; j = j->next)
            n += !j->finished;
        kiln_log(a->lg, KILN_LOG_INFO,
                 "%s: taking no more work; finishing %d running job%s (send it again to stop now)",
                 strsignal(signum), n, n == 1 ? "" : "s");
    } else if (a->shutting == 2) {
        kiln_log(a->lg, KILN_LOG_WARN, "%s again: stopping running jobs and handing them back",
                 strsignal(signum));
        a->hard_deadline_ns = now_ns() + HARD_EXIT_MS * 1000000ull;
        for (struct ajob *j = a->jobs; j; j = j->next)
            if (!j->finished) kiln_proc_kill(j->proc, "worker shut down while running it", 1);
    }
    pump(a);
}

static void strip_api_suffix(char *url)
{
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        url[--n] = '\0';
    if (n >= 7 && !strcmp(url + n - 7, "/api/v1")) url[n - 7] = '\0';
}

int kiln_agent_run(const struct kiln_worker_config *cfg, const struct kiln_host *host,
                   const struct kiln_logger *lg, struct kiln_error *err)
{
    struct agent *a = calloc(1, sizeof *a);
    if (!a) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    if (uv_mutex_init(&a->cred_lock)) {
        free(a);
        return kiln_fail(err, KILN_ENOMEM, "cannot make a mutex");
    }
    a->cfg = cfg;
    a->host = host;
    a->lg = lg;
    if (snprintf(a->name, sizeof a->name, "%s", cfg->name[0] ? cfg->name : host->hostname) >=
        (int)sizeof a->name)
        a->name[sizeof a->name - 1] = '\0';
    a->heartbeat_s = cfg->heartbeat_s > 0 ? cfg->heartbeat_s : 5;
    int rc = KILN_OK;
    if (kiln_mkdir_p(cfg->work_dir, 0755)) {
        rc = kiln_fail(err, KILN_EIO, "cannot create work dir %s: %s", cfg->work_dir,
                       strerror(errno));
        free(a);
        return rc;
    }
    /* One credential file per worker name, so agents sharing a work dir
     * keep theirs apart; names with other characters are not kept. */
    int plain = a->name[0] != '\0';
    for (const char *p = a->name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("-_.+", *p)))
            plain = 0;
    if (plain && snprintf(a->cred_path, sizeof a->cred_path, "%s/.kiln-credential-%s",
                          cfg->work_dir, a->name) >= (int)sizeof a->cred_path)
        a->cred_path[0] = '\0';
    load_credential(a);
    ssize_t n = readlink("/proc/self/exe", a->exe, sizeof a->exe - 1);
    a->exe[n > 0 ? n : 0] = '\0';
    if (cfg->selftest_dir[0]) {
        snprintf(a->selftest_dir, sizeof a->selftest_dir, "%s", cfg->selftest_dir);
    } else if (a->exe[0]) {
        /* make selftest puts kiln-selftest-smNN in build/selftest/ beside build/kiln */
        char *slash = strrchr(a->exe, '/');
        struct stat st;
        if (slash &&
            snprintf(a->selftest_dir, sizeof a->selftest_dir, "%.*s/selftest",
                     (int)(slash - a->exe), a->exe) < (int)sizeof a->selftest_dir &&
            (stat(a->selftest_dir, &st) != 0 || !S_ISDIR(st.st_mode)))
            a->selftest_dir[0] = '\0';
    }
    if (cfg->source_dir[0]) {
        struct stat st;
        if (stat(cfg->source_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            rc = kiln_fail(err, KILN_EINVAL, "source dir %s is not a directory", cfg->source_dir);
            free(a);
            return rc;
        }
    }
    char base[512];
    snprintf(base, sizeof base, "%s", cfg->server);
    strip_api_suffix(base);
    int inited = 0;
    for (; inited < CH_N; inited++) {
        if ((rc = kiln_httpc_init(&a->http[inited], base, cfg->token)) != KILN_OK) {
            kiln_fail(err, rc, "cannot set up the HTTP client for %s", base);
            goto out;
        }
        if (cfg->ca_file[0])
            snprintf(a->http[inited].ca_file, sizeof a->http[inited].ca_file, "%s", cfg->ca_file);
        a->http[inited].connect_timeout_ms = 5000;
    }
    if ((rc = kiln_limits_init(&a->limits, cfg->limit_method, a->name, err)) != KILN_OK) goto out;
    kiln_log(lg, KILN_LOG_INFO,
             "worker %s: %d cores, %ld MiB, %d GPU%s; RAM limits by %s; server %s", a->name,
             host->cores, host->ram_mb, host->ngpus, host->ngpus == 1 ? "" : "s", a->limits.note,
             base);
    if (uv_loop_init(&a->loop)) {
        rc = kiln_fail(err, KILN_EIO, "cannot create the event loop");
        goto out;
    }
    uv_timer_init(&a->loop, &a->tick);
    uv_timer_init(&a->loop, &a->backoff);
    uv_signal_init(&a->loop, &a->sigterm);
    uv_signal_init(&a->loop, &a->sigint);
    a->tick.data = a->backoff.data = a->sigterm.data = a->sigint.data = a;
    uv_signal_start(&a->sigterm, on_signal, SIGTERM);
    uv_signal_start(&a->sigint, on_signal, SIGINT);
    uv_timer_start(&a->tick, on_tick, TICK_MS, TICK_MS);
    /* Step mode runs one job: nothing to recycle. */
    if (!cfg->step_lease) kiln_spare_init(&a->spare, cfg->work_dir, plain ? a->name : NULL);
    /* ...and its one directory stays */
    kiln_retain_init(&a->retain, &a->loop, cfg->step_lease ? -1 : cfg->keep_job_dirs);
    a->retain.on_error = retain_error;
    a->retain.arg = a;
    if (cfg->step_lease) {
        a->step = 1;
        a->registered = 1;
        a->worker_id = cfg->step_worker_id;
        start_job(a, cfg->step_lease);
    }
    pump(a);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    /* Everything is closed; handles of finished jobs too. */
    while (a->jobs)
        drop_job(a, a->jobs);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&a->loop)) kiln_log(lg, KILN_LOG_WARN, "event loop closed with handles open");
    kiln_retain_free(&a->retain);
    kiln_limits_cleanup(&a->limits);
    if (a->fatal) {
        rc = a->fatal;
        if (err) *err = a->fatal_err;
    } else {
        kiln_log(lg, KILN_LOG_INFO, "worker %s stopped", a->name);
    }
out:
    for (int i = 0; i < inited; i++)
        kiln_httpc_cleanup(&a->http[i]);
    uv_mutex_destroy(&a->cred_lock);
    free(a);
    return rc;
}
