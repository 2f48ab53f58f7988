/* proc.c - one job's process tree under libuv.
 *
 * Why not uv_spawn: it fork()s the whole worker (page tables of libcurl,
 * OpenSSL and every buffer, then copy-on-write faults in the parent), and
 * joining the job's cgroup before exec needed a shell shim that exec'd a
 * second /bin/sh. A no-op job then cost the worker about 3x what the job
 * itself costs (perf, bench/e2e_noop.sh). So the job's first process is
 * started by common/spawn (clone(CLONE_VM | CLONE_VFORK), as posix_spawn
 * does: no copy of the address space). The child joins the cgroups itself
 * before it execs /bin/sh -c COMMAND once, so no process of the job ever
 * runs outside its limit. Its exit arrives on a pidfd watched by the loop
 * (no SIGCHLD handler, so nothing else's children are reaped by mistake);
 * where the kernel has no pidfd (before 5.3) a 10 ms timer polls waitpid.
 */
#include "workers/proc.h"

#include "common/spawn.h"
#include "workers/config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SAMPLE_MS 200
#define REAP_MS 50
#define REAP_TRIES 60  /* 3 s for stragglers to die after the main process */
#define WAITPOLL_MS 10 /* only without pidfd */

struct kiln_proc {
    uv_loop_t *loop;
    pid_t pid;
    int pidfd;       /* -1: no pidfd, waitpoll polls waitpid */
    uv_poll_t exitw; /* readable when the job's first process has exited */
    uv_timer_t sample, timeout, reap, waitpoll;
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
    if (--p->handles_open == 0) {
        if (p->pidfd >= 0) close(p->pidfd);
        free(p);
    }
}

static void close_all(struct kiln_proc *p)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&p->sample, (uv_handle_t *)&p->timeout,
                         (uv_handle_t *)&p->reap, (uv_handle_t *)&p->waitpoll,
                         (uv_handle_t *)&p->exitw};
    size_t n = p->pidfd >= 0 ? 5 : 4; /* exitw exists only with a pidfd */
    for (size_t i = 0; i < n; i++)
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
    uv_timer_stop(&p->waitpoll);
    if (p->pidfd >= 0) uv_poll_stop(&p->exitw);
    kiln_limits_job_sample(&p->jl); /* the last word on peak RAM and CPU */
    if (p->jl.exceeded && p->jl.ram_limit) p->ram_exceeded = 1;

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
    /* Every process is gone: the empty cgroup goes after the caller has
     * sent the report, off the way to the next job (p lives until its
     * handles close, even if done freed it). */
    kiln_limits_job_destroy(&p->jl);
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

static void on_exit_cb(struct kiln_proc *p, int64_t status, int sig)
{
    p->exited = 1;
    p->exit_status = status;
    p->term_signal = sig;
    /* A job ends with its main process: stragglers in the group would keep
     * writing to the log and hold RAM the next job was promised. Mostly
     * there are none, which one read of the job's cgroup says. */
    if (kiln_limits_job_alive(&p->jl)) {
        kill_all(p);
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

/* Reaps the job's first process if it has exited (never blocks). */
static void check_exit(struct kiln_proc *p)
{
    if (p->exited) return;
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR)) return;
    uv_timer_stop(&p->waitpoll);
    if (p->pidfd >= 0) uv_poll_stop(&p->exitw);
    if (r < 0) { /* cannot happen for our own child; do not hang on it */
        on_exit_cb(p, 127, 0);
        return;
    }
    on_exit_cb(p, WIFEXITED(st) ? WEXITSTATUS(st) : 0, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void on_pidfd(uv_poll_t *w, int status, int events)
{
    check_exit(w->data);
}

static void on_waitpoll(uv_timer_t *t)
{
    check_exit(t->data);
}

/* Starts the job's first process through common/spawn (no copy of the
 * agent's memory; see spawn.h): /bin/sh -c COMMAND in a session of its own,
 * having joined the job's cgroups before exec. KILN_OK with p->pid set. */
static int spawn_job(struct kiln_proc *p, const struct kiln_proc_spec *spec, int logfd,
                     struct kiln_error *err)
{
    char procs[2][PATH_MAX];
    char *join[3] = {NULL, NULL, NULL};
    const char *dirs[2];
    int nd = kiln_limits_job_dirs(&p->jl, dirs);
    for (int i = 0; i < nd; i++) {
        if (snprintf(procs[i], sizeof procs[i], "%s/cgroup.procs", dirs[i]) >= (int)sizeof procs[i])
            return kiln_fail(err, KILN_ELIMIT, "the cgroup path %s is too long", dirs[i]);
        join[i] = procs[i];
    }
    struct kiln_spawn_spec s = {.command = spec->command,
                                .cwd = spec->cwd,
                                .env = spec->env,
                                .out_fd = logfd,
                                .err_fd = KILN_SPAWN_STDOUT,
                                .join = join,
                                .new_session = 1};
    struct kiln_spawn_proc sp;
    struct kiln_error why = {0};
    if (kiln_spawn_start(&s, &sp, &why) != KILN_OK)
        return kiln_fail(err, KILN_EIO, "cannot start the job: %s", why.msg);
    p->pid = sp.pid;
    return KILN_OK;
}

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
    p->pidfd = -1;
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
    p->start_ns = uv_hrtime();
    rc = spawn_job(p, spec, logfd, err);
    close(logfd);
    if (rc) {
        kiln_limits_job_destroy(&p->jl);
        free(p);
        return rc;
    }
    /* From here the child exists: every path below must reap it. */
    uv_timer_init(loop, &p->sample);
    uv_timer_init(loop, &p->timeout);
    uv_timer_init(loop, &p->reap);
    uv_timer_init(loop, &p->waitpoll);
    p->sample.data = p->timeout.data = p->reap.data = p->waitpoll.data = p->exitw.data = p;
    p->handles_open = 4;
#ifdef SYS_pidfd_open
    p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
#endif
    if (p->pidfd >= 0) {
        fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
        if (uv_poll_init(loop, &p->exitw, p->pidfd) == 0) {
            p->handles_open++;
            uv_poll_start(&p->exitw, UV_READABLE, on_pidfd);
        } else {
            close(p->pidfd);
            p->pidfd = -1;
        }
    }
    if (p->pidfd < 0) uv_timer_start(&p->waitpoll, on_waitpoll, WAITPOLL_MS, WAITPOLL_MS);
    p->jl.sid = p->pid;
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
    return p->pid;
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
        if (!p->exited) waitpid(p->pid, NULL, WNOHANG); /* SIGKILLed: usually gone */
    }
    close_all(p);
}
