/* checks.h - run a recipe's selftest check commands with a timeout.
 *
 * Contract: kiln_check_run() runs one command (argv, or "/bin/sh -c cmd")
 * in its own process group with stdin from /dev/null and stdout+stderr
 * appended to log_path (or discarded when NULL). When timeout_ms passes,
 * the whole group gets SIGTERM, then SIGKILL 2 s later, so a hung check
 * (a kernel spinning forever, a child that ignores SIGTERM) never hangs
 * the worker. Only what this command appended to the log is classified.
 * It returns KILN_OK when it could run the command at all,
 * whatever the command's outcome; the outcome is in the result: passed is
 * 1 only for exit status 0 without timeout. On failure, reason holds one
 * plain sentence: the first known CUDA error found in the captured output
 * (kiln_check_classify), else the timeout, signal or exit status.
 *
 * kiln_check_classify() maps CUDA error text in output to a reason:
 *   "no kernel image is available for execution on the device"
 *   "an illegal memory access was encountered"
 *   "No supported CUDA architectures found for major versions [10]"
 *   and a few more (see checks.c); it returns 1 and fills reason when one
 *   matched, 0 otherwise.
 */
#ifndef KILN_CHECKS_H
#define KILN_CHECKS_H

#include "common/err.h"

#include <stddef.h>
#include <stdint.h>

struct kiln_check_spec {
    const char *name;
    const char *command;  /* run with /bin/sh -c when argv is NULL */
    char *const *argv;    /* argv[0] is looked up in PATH */
    long timeout_ms;      /* <= 0: 10 minutes */
    const char *log_path; /* stdout+stderr appended here; NULL: discarded */
    const char *cwd;      /* NULL: inherit */
    char *const *env_add; /* extra "K=V" entries, NULL-terminated, may be NULL */
};

#define KILN_CHECK_REASON_MAX 400

struct kiln_check_result {
    int passed;
    int exit_code; /* -1 when killed by a signal */
    int term_signal;
    int timed_out;
    double seconds;
    char reason[KILN_CHECK_REASON_MAX];
};

int kiln_check_run(const struct kiln_check_spec *spec, struct kiln_check_result *res,
                   struct kiln_error *err);

/* Scan output for known CUDA failure text; see above. */
int kiln_check_classify(const char *output, size_t len, char *reason, size_t reasonlen);

/* The last max bytes at or after offset from of a file (to classify a long
 * log cheaply, and only the part one command wrote), NUL terminated,
 * malloc'ed into *out. */
int kiln_check_read_tail(const char *path, uint64_t from, size_t max, char **out, size_t *outlen,
                         struct kiln_error *err);

#endif
