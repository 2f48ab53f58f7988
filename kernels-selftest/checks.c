/* checks.c - check command runner and CUDA error classification; see checks.h. */
#include "kernels-selftest/checks.h"

#include "common/spawn.h"

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
    struct kiln_spawn_spec sp = {.argv = spec->argv,
                                 .command = spec->command,
                                 .cwd = spec->cwd,
                                 .env_add = spec->env_add,
                                 .out_fd = logfd >= 0 ? logfd : KILN_SPAWN_NULL,
                                 .err_fd = KILN_SPAWN_STDOUT};
    struct kiln_spawn_result sr;
    int rc = kiln_spawn_run(&sp, timeout, &sr, err);
    if (logfd >= 0) close(logfd);
    if (rc) return rc;
    res->timed_out = sr.timed_out;
    res->exit_code = sr.exit_code;
    res->term_signal = sr.term_signal;
    res->seconds = sr.seconds;
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
