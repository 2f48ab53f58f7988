/* spawn.c - starting programs in their own process group; see spawn.h. */
#include "common/spawn.h"

#include "common/clock.h"
#include "common/plain_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Grace between SIGTERM and SIGKILL for a group that ran out of time. */
#define TERM_GRACE_MS 2000
/* The child's stack until exec (plus room for argv). */
#define CHILD_STACK (64 * 1024)
/* A command of plain words runs without sh up to this length and word count;
   a longer one goes through sh as any other. */
#define PLAIN_CMD_MAX 1024
#define PLAIN_CMD_ARGS 64

/* base (NULL: environ) with add laid over it (same key: add wins),
 * NULL-terminated, with room for one entry more (PWD, see child_pwd); the
 * strings are borrowed, only the array is allocated. */
static char **merged_env(char *const *base, char *const *add)
{
    if (!base) base = environ;
    size_t n = 0, m = 0;
    while (base[n])
        n++;
    while (add && add[m])
        m++;
    char **env = calloc(n + m + 2, sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(base[i], '=');
        size_t klen = eq ? (size_t)(eq - base[i]) + 1 : strlen(base[i]);
        int replaced = 0;
        for (size_t j = 0; j < m && !replaced; j++)
            replaced = !strncmp(add[j], base[i], klen);
        if (!replaced) env[k++] = base[i];
    }
    for (size_t j = 0; j < m; j++)
        env[k++] = add[j];
    env[k] = NULL;
    return env;
}

/* What the child does between clone() and exec. It runs on the parent's
 * memory (CLONE_VM) until it execs, so the parent prepares everything and
 * the child only makes system calls, on a stack of its own. */
struct child_plan {
    const char *file; /* what to exec; NULL: argv[0], looked up in PATH */
    char *const *argv;
    char **env;
    int pwd_idx;   /* >= 0: env[pwd_idx] is PWD's slot (child_pwd) */
    char *pwd_buf; /* PATH_MAX + 4 bytes for "PWD=..." */
    const char *cwd;
    int fd[3];       /* where fds 0, 1, 2 come from, in that order */
    int new_session; /* setsid() rather than setpgid(0, 0) */
    char *const *join;
    int err;            /* set by the child when a step fails; 0 after exec */
    const char *failed; /* which step failed */
    int exec_failed;    /* the failed step was chdir or exec: "cannot run" */
};

/* The child runs on a heap stack that the sanitizer does not know; it must
 * not instrument what runs there. */
#define CHILD_SIDE __attribute__((no_sanitize_address))

/* Points fd `target` at `from` (KILN_SPAWN_NULL: /dev/null), open across exec. */
CHILD_SIDE static int child_fd(int from, int target)
{
    if (from == KILN_SPAWN_NULL) {
        int fd = open("/dev/null", (target == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
        if (fd < 0) return -1;
        if (fd == target) return fcntl(fd, F_SETFD, 0);
        int r = dup2(fd, target);
        close(fd);
        return r < 0 ? -1 : 0;
    }
    if (from == target) return fcntl(from, F_SETFD, 0); /* dup2 would keep FD_CLOEXEC */
    return dup2(from, target) < 0 ? -1 : 0;
}

/* A program run without sh gets the PWD sh would have exported: the
 * environment's own if it names the working directory (a logical path),
 * else the physical one (dash does the same at start). */
CHILD_SIDE static void child_pwd(struct child_plan *c)
{
    const char *cur = c->env[c->pwd_idx];
    struct stat a, b;
    if (cur && cur[4] == '/' && stat(cur + 4, &a) == 0 && stat(".", &b) == 0 &&
        a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return;
    c->pwd_buf[0] = 'P', c->pwd_buf[1] = 'W', c->pwd_buf[2] = 'D', c->pwd_buf[3] = '=';
    if (getcwd(c->pwd_buf + 4, PATH_MAX)) c->env[c->pwd_idx] = c->pwd_buf;
}

CHILD_SIDE static int child_main(void *arg)
{
    struct child_plan *c = arg;
    /* The parent's handlers (libuv's, the agent's) must not run here: the
     * child shares the parent's memory until exec. Signals are blocked by
     * the parent around clone(); handled ones go back to the default (as
     * posix_spawn does), ignored ones stay ignored except SIGPIPE. */
    struct sigaction dfl, old;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int n = 1; n < NSIG; n++) {
        if (n == SIGKILL || n == SIGSTOP || sigaction(n, NULL, &old) != 0) continue;
        if (old.sa_handler == SIG_DFL || (old.sa_handler == SIG_IGN && n != SIGPIPE)) continue;
        sigaction(n, &dfl, NULL);
    }
    if (c->new_session ? setsid() < 0 : setpgid(0, 0) != 0) {
        c->failed = c->new_session ? "setsid" : "setpgid";
        goto fail;
    }
    for (size_t i = 0; c->join && c->join[i]; i++) {
        /* Writing "0" to a cgroup.procs file means "me". */
        int fd = open(c->join[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1) {
            c->failed = "joining its cgroup";
            goto fail;
        }
        close(fd);
    }
    for (int t = 0; t < 3; t++)
        if (child_fd(c->fd[t], t) != 0) {
            c->failed = "redirecting its input and output";
            goto fail;
        }
    c->exec_failed = 1;
    if (c->cwd && chdir(c->cwd) != 0) goto fail;
    if (c->pwd_idx >= 0) child_pwd(c);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvpe(c->file ? c->file : c->argv[0], c->argv, c->env);
fail:
    c->err = errno ? errno : EIO;
    _exit(127);
}

/* Starts c's program; KILN_OK with *pid set, or the child's failure. The way
 * posix_spawn does it: clone(CLONE_VM | CLONE_VFORK) copies no address space
 * (fork of a large agent costs page tables and copy-on-write faults), and
 * the parent is suspended until the child has exec'd or failed. */
static int start_child(struct child_plan *c, pid_t *pid, struct kiln_error *err)
{
    size_t argc = 0;
    while (c->argv[argc])
        argc++;
    /* execvp may lay a script's argv on the stack (ENOEXEC), as glibc's
     * posix_spawnp sizes its child stack. */
    size_t size = (CHILD_STACK + (argc + 2) * sizeof(char *) + 15) & ~(size_t)15;
    char *stack = malloc(size);
    if (!stack) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    *pid = clone(child_main, stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, c);
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(stack);
    if (*pid < 0) {
        *pid = -1;
        return kiln_fail(err, KILN_EIO, "cannot start %s: clone: %s", c->argv[0], strerror(e));
    }
    if (!c->err) return KILN_OK;
    while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR) {
    }
    *pid = -1;
    if (c->exec_failed)
        return kiln_fail(err, KILN_EUNSUPPORTED, "cannot run %s%s%s: %s", c->argv[0],
                         c->cwd ? " in " : "", c->cwd ? c->cwd : "", strerror(c->err));
    return kiln_fail(err, KILN_EIO, "cannot start %s: %s: %s", c->argv[0], c->failed,
                     strerror(c->err));
}

int kiln_spawn_start(const struct kiln_spawn_spec *spec, struct kiln_spawn_proc *p,
                     struct kiln_error *err)
{
    memset(p, 0, sizeof *p);
    p->pid = -1;
    p->out_fd = -1;
    if (!spec->argv && !spec->command) return kiln_fail(err, KILN_EINVAL, "no command to run");
    if (spec->argv && !spec->argv[0]) return kiln_fail(err, KILN_EINVAL, "empty argv");
    char *sh[] = {"/bin/sh", "-c", (char *)spec->command, NULL};
    char *const *argv = spec->argv ? spec->argv : sh;

    int pfd[2] = {-1, -1};
    if (spec->out_fd == KILN_SPAWN_PIPE && pipe2(pfd, O_CLOEXEC) != 0)
        return kiln_fail(err, KILN_EIO, "pipe: %s", strerror(errno));
    char **env = merged_env(spec->env, spec->env_add);
    if (!env) {
        if (pfd[0] >= 0) close(pfd[0]);
        if (pfd[1] >= 0) close(pfd[1]);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    /* a command of plain words runs without sh (plain_cmd.h) */
    char words[PLAIN_CMD_MAX], file[PATH_MAX], *wargv[PLAIN_CMD_ARGS], pwd[PATH_MAX + 4];
    const char *exe = NULL;
    int pwd_idx = -1;
    if (!spec->argv && kiln_plain_cmd(spec->command, env, words, sizeof words, wargv,
                                      PLAIN_CMD_ARGS, file, sizeof file) == 1) {
        argv = wargv;
        exe = file;
        /* PWD's slot: its entry, or the spare one at the end */
        for (pwd_idx = 0; env[pwd_idx] && strncmp(env[pwd_idx], "PWD=", 4); pwd_idx++) {
        }
    }
    snprintf(p->what, sizeof p->what, "%s", argv[0]);
    struct child_plan c = {.file = exe,
                           .pwd_idx = pwd_idx,
                           .pwd_buf = pwd,
                           .argv = argv,
                           .env = env,
                           .cwd = spec->cwd,
                           .new_session = spec->new_session,
                           .join = spec->join};
    c.fd[0] = KILN_SPAWN_NULL;
    c.fd[1] = spec->out_fd == KILN_SPAWN_PIPE ? pfd[1] : spec->out_fd;
    c.fd[2] = spec->err_fd == KILN_SPAWN_STDOUT ? 1 : spec->err_fd; /* fd 1 is set by then */
    p->t0 = kiln_clock_mono();
    int rc = start_child(&c, &p->pid, err);
    free(env);
    if (pfd[1] >= 0) close(pfd[1]);
    if (rc) {
        if (pfd[0] >= 0) close(pfd[0]);
        return rc;
    }
    p->out_fd = pfd[0];
    return KILN_OK;
}

void kiln_spawn_kill_group(pid_t pid, int sig)
{
    if (pid <= 0) return;
    kill(-pid, sig);
    kill(pid, sig);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Wait up to ms (< 0: forever) for pid to exit, without reaping it (WNOWAIT)
 * so that its pid - and so its process group id - cannot be reused while we
 * still signal the group. 1 if exited, 0 if still running, <0 on error. */
static int wait_exit(pid_t pid, long ms)
{
    double end = kiln_clock_mono() + (double)ms / 1000.0;
    long step = 1;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT | (ms < 0 ? 0 : WNOHANG));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (si.si_pid == pid) return 1;
        if (kiln_clock_mono() >= end) return 0;
        sleep_ms(step);
        if (step < 20) step *= 2;
    }
}

int kiln_spawn_wait(struct kiln_spawn_proc *p, long timeout_ms, struct kiln_spawn_result *r,
                    struct kiln_error *err)
{
    memset(r, 0, sizeof *r);
    int w = wait_exit(p->pid, timeout_ms > 0 ? timeout_ms : -1);
    if (w == 0) {
        r->timed_out = 1;
        kiln_spawn_kill_group(p->pid, SIGTERM);
        if (wait_exit(p->pid, TERM_GRACE_MS) == 0) kiln_spawn_kill_group(p->pid, SIGKILL);
    }
    /* Leftover children of the program die with it. */
    kill(-p->pid, SIGKILL);
    int status = 0;
    while (waitpid(p->pid, &status, 0) < 0)
        if (errno != EINTR) return kiln_fail(err, KILN_EIO, "waitpid: %s", strerror(errno));
    p->pid = -1;
    r->seconds = kiln_clock_mono() - p->t0;
    if (WIFEXITED(status)) {
        r->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        r->exit_code = -1;
        r->term_signal = WTERMSIG(status);
    }
    return KILN_OK;
}

int kiln_spawn_run(const struct kiln_spawn_spec *spec, long timeout_ms, struct kiln_spawn_result *r,
                   struct kiln_error *err)
{
    struct kiln_spawn_proc p;
    struct kiln_error why = {0};
    memset(r, 0, sizeof *r);
    int rc = kiln_spawn_start(spec, &p, &why);
    if (rc == KILN_EUNSUPPORTED) {
        /* As in a shell: a program that cannot start exits 127, and says why
         * where its errors would have gone. */
        int fd = spec->err_fd == KILN_SPAWN_STDOUT ? spec->out_fd : spec->err_fd;
        if (fd >= 0) dprintf(fd, "kiln: %s\n", why.msg);
        r->exit_code = 127;
        return KILN_OK;
    }
    if (rc) return kiln_fail(err, rc, "%s", why.msg);
    return kiln_spawn_wait(&p, timeout_ms, r, err);
}

int kiln_spawn_capture(const struct kiln_spawn_spec *spec, long timeout_ms, size_t max,
                       struct kiln_buf *out, struct kiln_spawn_result *r, struct kiln_error *err)
{
    struct kiln_spawn_spec s = *spec;
    s.out_fd = KILN_SPAWN_PIPE;
    struct kiln_spawn_proc p;
    memset(r, 0, sizeof *r);
    int rc = kiln_spawn_start(&s, &p, err);
    if (rc) return rc;
    double end = timeout_ms > 0 ? p.t0 + (double)timeout_ms / 1000.0 : 0;
    char chunk[8192];
    size_t got = 0;
    for (;;) {
        int left = -1;
        if (end > 0) {
            double ms = (end - kiln_clock_mono()) * 1000.0;
            if (ms <= 0) break; /* out of time: the wait below ends the group */
            left = ms > 1e9 ? 1000000000 : (int)ms + 1;
        }
        struct pollfd pf = {.fd = p.out_fd, .events = POLLIN};
        int pr = poll(&pf, 1, left);
        if (pr < 0 && errno == EINTR) continue;
        if (pr < 0) {
            rc = kiln_fail(err, KILN_EIO, "poll: %s", strerror(errno));
            break;
        }
        if (pr == 0) continue;
        ssize_t n = read(p.out_fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = kiln_fail(err, KILN_EIO, "reading %s's output: %s", p.what, strerror(errno));
            break;
        }
        if (n == 0) break;
        got += (size_t)n;
        if (got > max || kiln_buf_append(out, chunk, (size_t)n) != KILN_OK) {
            rc = kiln_fail(err, got > max ? KILN_ELIMIT : KILN_ENOMEM, "%s printed too much",
                           p.what);
            break;
        }
    }
    close(p.out_fd);
    p.out_fd = -1;
    if (rc) kiln_spawn_kill_group(p.pid, SIGKILL);
    long rest = 1;
    if (end > 0 && !rc) {
        double ms = (end - kiln_clock_mono()) * 1000.0;
        rest = ms < 1 ? 1 : (long)ms;
    }
    int wrc = kiln_spawn_wait(&p, end > 0 || rc ? rest : 0, r, rc ? NULL : err);
    return rc ? rc : wrc;
}

int kiln_spawn_status(const struct kiln_spawn_result *r, const char *what, struct kiln_error *err)
{
    if (r->timed_out) return kiln_fail(err, KILN_ETIMEOUT, "%s timed out", what);
    if (r->term_signal)
        return kiln_fail(err, KILN_EIO, "%s failed (signal %d)", what, r->term_signal);
    if (r->exit_code != 0)
        return kiln_fail(err, KILN_EIO, "%s failed (exit status %d)", what, r->exit_code);
    return KILN_OK;
}

int kiln_spawn_finish(struct kiln_spawn_proc *p, long timeout_ms, const char *what,
                      struct kiln_error *err)
{
    struct kiln_spawn_result r;
    int rc = kiln_spawn_wait(p, timeout_ms, &r, err);
    return rc ? rc : kiln_spawn_status(&r, what, err);
}

int kiln_spawn_fork_fn(void (*fn)(void *arg, int fd), void *arg, pid_t *pid, int *out_fd,
                       struct kiln_error *err)
{
    int fds[2];
    *pid = -1;
    *out_fd = -1;
    if (pipe2(fds, O_CLOEXEC) != 0)
        return kiln_fail(err, KILN_EIO, "cannot create a pipe: %s", strerror(errno));
    pid_t p = fork();
    if (p < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return kiln_fail(err, KILN_EIO, "fork failed: %s", strerror(e));
    }
    if (p == 0) {
        close(fds[0]);
        fn(arg, fds[1]);
        _exit(127); /* fn must not return; if it does, it is a failure */
    }
    close(fds[1]);
    *pid = p;
    *out_fd = fds[0];
    return KILN_OK;
}

int kiln_spawn_uv(uv_loop_t *loop, uv_process_t *proc, char **argv, const char *cwd, char **env,
                  uv_stdio_container_t stdio[3], uv_exit_cb on_exit, struct kiln_error *err)
{
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.file = argv[0];
    o.args = argv;
    o.cwd = cwd;
    o.env = env;
    o.flags = UV_PROCESS_DETACHED; /* setsid(): own session and process group */
    o.exit_cb = on_exit;
    o.stdio_count = 3;
    o.stdio = stdio;
    int e = uv_spawn(loop, proc, &o);
    if (e) return kiln_fail(err, KILN_EIO, "cannot start %s: %s", argv[0], uv_strerror(e));
    return KILN_OK;
}
