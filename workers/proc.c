/* proc.c - one job's process tree under libuv. */
#include "workers/proc.h"

#include "common/spawn.h"
#include "workers/config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SAMPLE_MS 200
#define REAP_MS 50
#define REAP_TRIES 60 /* 3 s for stragglers to die after the main process */

struct kiln_proc {
    uv_loop_t *loop;
    uv_process_t proc;
    uv_timer_t sample, timeout, reap;
    int handles_open;
    int exited, done_called, free_requested;
    int reap_tries;
    int timed_out, ram_exceeded, killed, infra;
    int64_t exit_status;
    int term_signal;
    double timeout_s;
    uint64_t start_ns;
    char kill_reason[200];
    struct kiln_job_limits jl;
    kiln_proc_done_cb done;
    void *arg;
};

static void on_close(uv_handle_t *h)
{
    struct kiln_proc *p = h->data;
    if (--p->handles_open == 0) free(p);
}

static void close_all(struct kiln_proc *p)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&p->proc, (uv_handle_t *)&p->sample,
                         (uv_handle_t *)&p->timeout, (uv_handle_t *)&p->reap};
    for (size_t i = 0; i < 4; i++)
        if (!uv_is_closing(hs[i])) uv_close(hs[i], on_close);
}

static void kill_all(struct kiln_proc *p)
{
    kiln_limits_job_kill(&p->jl);
}

static void finish(struct kiln_proc *p)
{
    if (p->done_called) return;
    p->done_called = 1;
    uv_timer_stop(&p->sample);
    uv_timer_stop(&p->timeout);
    uv_timer_stop(&p->reap);
    kiln_limits_job_sample(&p->jl);
    if (p->jl.exceeded && p->jl.ram_limit) p->ram_exceeded = 1;
    kiln_limits_job_destroy(&p->jl);

    struct kiln_proc_result r;
    memset(&r, 0, sizeof r);
    r.exit_code = p->term_signal ? -1 : (int)p->exit_status;
    r.term_signal = p->term_signal;
    r.timed_out = p->timed_out;
    r.ram_exceeded = p->ram_exceeded;
    r.killed = p->killed;
    /* A timeout counts as an infrastructure failure (a stuck mount or GPU is
     * not the build's fault): the server retries it with backoff and fails
     * the job only after max_attempts. */
    r.infra = p->infra || p->timed_out;
    r.peak_ram = p->jl.peak;
    r.cpu_s = p->jl.cpu_s;
    r.wall_s = (double)(uv_hrtime() - p->start_ns) / 1e9;
    if (r.ram_exceeded) {
        char lim[32], peak[32];
        kiln_size_format(p->jl.ram_limit, lim, sizeof lim);
        kiln_size_format(r.peak_ram, peak, sizeof peak);
        snprintf(r.reason, sizeof r.reason, "exceeded its RAM limit of %s, peak %s", lim, peak);
    } else if (r.timed_out) {
        snprintf(r.reason, sizeof r.reason, "timed out after %g s", p->timeout_s);
    } else if (r.killed) {
        snprintf(r.reason, sizeof r.reason, "%s", p->kill_reason);
    } else if (r.term_signal) {
        snprintf(r.reason, sizeof r.reason, "killed by signal %d (%s)", r.term_signal,
                 strsignal(r.term_signal));
    } else if (r.exit_code != 0) {
        snprintf(r.reason, sizeof r.reason, "exited with status %d", r.exit_code);
    }
    p->done(p, &r, p->arg);
}

static void on_reap(uv_timer_t *t)
{
    struct kiln_proc *p = t->data;
    if (kiln_limits_job_alive(&p->jl) && ++p->reap_tries < REAP_TRIES) {
        kill_all(p);
        return;
    }
    finish(p);
}

static void on_exit_cb(uv_process_t *h, int64_t status, int sig)
{
    struct kiln_proc *p = h->data;
    p->exited = 1;
    p->exit_status = status;
    p->term_signal = sig;
    kiln_limits_job_sample(&p->jl);
    /* A job ends with its main process: stragglers in the group would keep
     * writing to the log and hold RAM the next job was promised. */
    kill_all(p);
    if (kiln_limits_job_alive(&p->jl)) {
        uv_timer_start(&p->reap, on_reap, REAP_MS, REAP_MS);
        return;
    }
    finish(p);
}

static void on_sample(uv_timer_t *t)
{
    struct kiln_proc *p = t->data;
    if (p->exited) return;
    if (kiln_limits_job_sample(&p->jl) && p->jl.ram_limit && !p->ram_exceeded) {
        p->ram_exceeded = 1;
        kill_all(p);
    }
}

static void on_timeout(uv_timer_t *t)
{
    struct kiln_proc *p = t->data;
    if (p->exited) return;
    p->timed_out = 1;
    kill_all(p);
}

/* Joins the cgroups named in "$@" (their cgroup.procs), then execs the
 * command, so that every process of the job starts inside the limit. */
static const char shim[] = "c=$1; shift; for d do echo $$ > \"$d/cgroup.procs\" || "
                           "{ echo \"kiln: cannot join cgroup $d\" >&2; exit 125; }; done; "
                           "exec /bin/sh -c \"$c\"";

int kiln_proc_start(uv_loop_t *loop, const struct kiln_proc_spec *spec, kiln_proc_done_cb done,
                    void *arg, struct kiln_proc **out, struct kiln_error *err)
{
    *out = NULL;
    if (!spec->command || !spec->log_path || !spec->limits)
        return kiln_fail(err, KILN_EINVAL, "job spec lacks a command, log path or limits");
    struct kiln_proc *p = calloc(1, sizeof *p);
    if (!p) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    p->loop = loop;
    p->done = done;
    p->arg = arg;
    p->timeout_s = spec->timeout_s;
    int rc = kiln_limits_job_create(spec->limits, &p->jl, spec->name ? spec->name : "job",
                                    spec->ram_bytes, err);
    if (rc) {
        free(p);
        return rc;
    }
    int logfd = open(spec->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        kiln_limits_job_destroy(&p->jl);
        free(p);
        return kiln_fail(err, KILN_EIO, "cannot open log %s: %s", spec->log_path, strerror(errno));
    }
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nullfd < 0) {
        close(logfd);
        kiln_limits_job_destroy(&p->jl);
        free(p);
        return kiln_fail(err, KILN_EIO, "cannot open /dev/null: %s", strerror(errno));
    }
    const char *dirs[2];
    int nd = kiln_limits_job_dirs(&p->jl, dirs);
    char *argv[8];
    int ac = 0;
    argv[ac++] = (char *)"/bin/sh";
    argv[ac++] = (char *)"-c";
    if (nd > 0) {
        argv[ac++] = (char *)shim;
        argv[ac++] = (char *)"kiln-job";
        argv[ac++] = (char *)spec->command;
        for (int i = 0; i < nd; i++)
            argv[ac++] = (char *)dirs[i];
    } else {
        argv[ac++] = (char *)spec->command;
    }
    argv[ac] = NULL;

    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_INHERIT_FD;
    stdio[0].data.fd = nullfd;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = logfd;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = logfd;
    uv_timer_init(loop, &p->sample);
    uv_timer_init(loop, &p->timeout);
    uv_timer_init(loop, &p->reap);
    p->sample.data = p->timeout.data = p->reap.data = p->proc.data = p;
    p->handles_open = 4;
    p->start_ns = uv_hrtime();
    rc = kiln_spawn_uv(loop, &p->proc, argv, (char *)spec->cwd, spec->env, stdio, on_exit_cb, err);
    close(logfd);
    close(nullfd);
    if (rc) {
        kiln_limits_job_destroy(&p->jl);
        p->done_called = 1;
        close_all(p); /* a failed spawn still needs uv_close */
        return rc;
    }
    p->jl.sid = p->proc.pid;
    uv_timer_start(&p->sample, on_sample, SAMPLE_MS, SAMPLE_MS);
    if (spec->timeout_s > 0) {
        double ms = spec->timeout_s * 1000.0;
        uv_timer_start(&p->timeout, on_timeout, ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms, 0);
    }
    *out = p;
    return KILN_OK;
}

void kiln_proc_kill(struct kiln_proc *p, const char *reason, int infra)
{
    if (!p || p->done_called) return;
    if (!p->killed) {
        p->killed = 1;
        p->infra = infra;
        snprintf(p->kill_reason, sizeof p->kill_reason, "%s", reason ? reason : "killed");
    }
    kill_all(p);
}

pid_t kiln_proc_pid(const struct kiln_proc *p)
{
    return p->proc.pid;
}

uint64_t kiln_proc_peak(const struct kiln_proc *p)
{
    return p->jl.peak;
}

void kiln_proc_free(struct kiln_proc *p)
{
    if (!p || p->free_requested) return;
    p->free_requested = 1;
    if (!p->done_called) {
        /* Freed while running: make sure nothing outlives its handle. */
        kill_all(p);
        p->done_called = 1;
        kiln_limits_job_destroy(&p->jl);
    }
    close_all(p);
}
