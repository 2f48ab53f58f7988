/* checks.c - check command runner and CUDA error classification; see checks.h. */
#include "kernels-selftest/checks.h"

#include "common/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct pattern {
    const char *text;
    const char *reason;
    int quote; /* append the matching line: it names the architectures */
};

/* Order does not matter: the earliest match in the output wins, because
 * the first CUDA error is the cause and later ones are its echoes. */
static const struct pattern patterns[] = {
    {"no kernel image is available for execution on the device",
     "no kernel image is available for execution on the device: the build has no cubin or PTX "
     "usable on this GPU's SM",
     0},
    {"invalid device function", "invalid device function: the build has no code for this GPU's SM",
     0},
    {"No supported CUDA architectures found for major versions",
     "a kernel exists only for other GPU architectures", 1},
    {"an illegal memory access was encountered", "a kernel made an illegal memory access", 0},
    {"misaligned address", "a kernel made a misaligned memory access", 0},
    {"unspecified launch failure", "a kernel crashed (unspecified launch failure)", 0},
    {"device-side assert triggered", "a kernel hit a device-side assert", 0},
    {"the provided PTX was compiled with an unsupported toolchain",
     "the PTX was built by a newer CUDA than this driver supports (update the driver or ship "
     "cubins for this SM)",
     0},
    {"CUDA driver version is insufficient for CUDA runtime version",
     "the NVIDIA driver is older than the CUDA runtime the build uses", 0},
    {"no CUDA-capable device is detected", "no GPU is visible to the check", 0},
    {"CUDA out of memory", "the GPU ran out of memory", 0},
    {"out of memory", "out of memory", 0},
    {"Error Internal",
     "a CUTLASS kernel returned Error Internal (often: kernels for this SM were "
     "not compiled)",
     1},
};

int kiln_check_classify(const char *output, size_t len, char *reason, size_t reasonlen)
{
    const struct pattern *best = NULL;
    const char *best_at = NULL;
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
        const char *at = memmem(output, len, patterns[i].text, strlen(patterns[i].text));
        if (at && (!best_at || at < best_at)) {
            best = &patterns[i];
            best_at = at;
        }
    }
    if (!best) return 0;
    if (!best->quote) {
        snprintf(reason, reasonlen, "%s", best->reason);
        return 1;
    }
    /* Quote the rest of the line, printable characters only. */
    char line[200];
    size_t k = 0;
    for (const char *p = best_at; p < output + len && *p != '\n' && k + 1 < sizeof line; p++)
        line[k++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
    line[k] = 0;
    snprintf(reason, reasonlen, "%s (%s)", best->reason, line);
    return 1;
}

int kiln_check_read_tail(const char *path, uint64_t from, size_t max, char **out, size_t *outlen,
                         struct kiln_error *err)
{
    *out = NULL;
    *outlen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kiln_fail(err, KILN_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return kiln_fail(err, KILN_EIO, "cannot stat %s: %s", path, strerror(e));
    }
    size_t size = st.st_size > 0 ? (size_t)st.st_size : 0;
    size_t avail = from < size ? size - (size_t)from : 0;
    size_t n = avail < max ? avail : max;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)(size - n + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return kiln_fail(err, KILN_EIO, "cannot read %s: %s", path, strerror(e));
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = 0;
    *out = buf;
    *outlen = got;
    return KILN_OK;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Child side: never returns. Only async-signal-safe calls until exec. */
static void child_exec(const struct kiln_check_spec *spec, int logfd)
{
    setpgid(0, 0);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) dup2(devnull, 0);
    int outfd = logfd >= 0 ? logfd : devnull;
    if (outfd >= 0) {
        dup2(outfd, 1);
        dup2(outfd, 2);
    }
    if (spec->cwd && chdir(spec->cwd) != 0) {
        dprintf(2, "kiln check: cannot enter %s: %s\n", spec->cwd, strerror(errno));
        _exit(127);
    }
    for (char *const *e = spec->env_add; e && *e; e++)
        putenv(*e);
    signal(SIGPIPE, SIG_DFL);
    if (spec->argv)
        execvp(spec->argv[0], spec->argv);
    else
        execl("/bin/sh", "sh", "-c", spec->command, (char *)NULL);
    dprintf(2, "kiln check: cannot run %s: %s\n", spec->argv ? spec->argv[0] : "/bin/sh",
            strerror(errno));
    _exit(127);
}

/* Wait up to ms for pid to exit, without reaping it (WNOWAIT) so that its
 * pid - and so its process group id - cannot be reused while we still
 * signal the group. 1 if exited, 0 if still running, <0 on error. */
static int wait_exit(pid_t pid, long ms)
{
    double end = kiln_clock_mono() + (double)ms / 1000.0;
    long step = 1;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (si.si_pid == pid) return 1;
        if (kiln_clock_mono() >= end) return 0;
        sleep_ms(step);
        if (step < 20) step *= 2;
    }
}

int kiln_check_run(const struct kiln_check_spec *spec, struct kiln_check_result *res,
                   struct kiln_error *err)
{
    memset(res, 0, sizeof *res);
    if (!spec->argv && !spec->command)
        return kiln_fail(err, KILN_EINVAL, "check %s has no command",
                         spec->name ? spec->name : "?");
    if (spec->argv && !spec->argv[0])
        return kiln_fail(err, KILN_EINVAL, "check %s has an empty argv",
                         spec->name ? spec->name : "?");
    long timeout = spec->timeout_ms > 0 ? spec->timeout_ms : 600000;
    int logfd = -1;
    if (spec->log_path) {
        logfd = open(spec->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (logfd < 0)
            return kiln_fail(err, KILN_EIO, "cannot open log %s: %s", spec->log_path,
                             strerror(errno));
    }
    /* Earlier output in a shared log must not be blamed on this command. */
    uint64_t log_start = 0;
    if (logfd >= 0) {
        struct stat st;
        if (fstat(logfd, &st) == 0 && st.st_size > 0) log_start = (uint64_t)st.st_size;
    }
    double t0 = kiln_clock_mono();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        if (logfd >= 0) close(logfd);
        return kiln_fail(err, KILN_EIO, "fork failed: %s", strerror(e));
    }
    if (pid == 0) {
        if (logfd >= 0) {
            /* O_CLOEXEC must not close our own stdout copy: dup2 clears it. */
            int fl = fcntl(logfd, F_GETFD);
            if (fl >= 0) fcntl(logfd, F_SETFD, fl & ~FD_CLOEXEC);
        }
        child_exec(spec, logfd);
    }
    setpgid(pid, pid); /* also in the child: whichever runs first wins the race */
    if (logfd >= 0) close(logfd);
    int r = wait_exit(pid, timeout);
    if (r == 0) {
        res->timed_out = 1;
        kill(-pid, SIGTERM);
        kill(pid, SIGTERM);
        r = wait_exit(pid, 2000);
        if (r == 0) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
    }
    /* Leftover children of the check die with it. */
    kill(-pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return kiln_fail(err, KILN_EIO, "waitpid failed: %s", strerror(errno));
    }
    res->seconds = kiln_clock_mono() - t0;
    if (WIFEXITED(status)) {
        res->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        res->exit_code = -1;
        res->term_signal = WTERMSIG(status);
    }
    res->passed = !res->timed_out && res->exit_code == 0 && !res->term_signal;
    if (res->passed) return KILN_OK;

    char cuda[KILN_CHECK_REASON_MAX] = "";
    if (spec->log_path) {
        char *tail = NULL;
        size_t n = 0;
        if (kiln_check_read_tail(spec->log_path, log_start, 256 * 1024, &tail, &n, NULL) ==
            KILN_OK) {
            kiln_check_classify(tail, n, cuda, sizeof cuda);
            free(tail);
        }
    }
    if (res->timed_out)
        snprintf(res->reason, sizeof res->reason, "timed out after %.1f s and was killed%s%.300s",
                 (double)timeout / 1000.0, cuda[0] ? "; before that: " : "", cuda);
    else if (cuda[0])
        snprintf(res->reason, sizeof res->reason, "%s", cuda);
    else if (res->term_signal)
        snprintf(res->reason, sizeof res->reason, "killed by signal %d (%s)", res->term_signal,
                 strsignal(res->term_signal));
    else if (res->exit_code == 127)
        snprintf(res->reason, sizeof res->reason, "the command could not be started (exit 127)");
    else
        snprintf(res->reason, sizeof res->reason, "exited with status %d", res->exit_code);
    return KILN_OK;
}
