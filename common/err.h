/* err.h - kiln's error codes and error reports.
 *
 * Contract: every fallible function in kiln returns an int: 0 (KILN_OK) on
 * success or one of the negative KILN_E* codes below. Where a caller needs to
 * tell a person what went wrong, the function also fills a struct kiln_error
 * (code + one plain sentence). Codes are stable. One table in err.c maps
 * each code to its name, sentence, HTTP status (the API) and exit status
 * (every CLI command, through kiln_err_exit_code()); nothing else maps them.
 */
#ifndef KILN_ERR_H
#define KILN_ERR_H

#include <stddef.h>

enum kiln_code {
    KILN_OK = 0,
    KILN_ENOMEM = -1,        /* allocation failed */
    KILN_EIO = -2,           /* read/write/syscall failed */
    KILN_EINVAL = -3,        /* bad argument or bad input */
    KILN_ENOTFOUND = -4,     /* no such object */
    KILN_EEXIST = -5,        /* already exists */
    KILN_EPARSE = -6,        /* malformed input (JSON, YAML, HTTP, ELF...) */
    KILN_EDB = -7,           /* SQLite error */
    KILN_ENET = -8,          /* network / transport error */
    KILN_EAUTH = -9,         /* missing or invalid credentials */
    KILN_EPERM = -10,        /* authenticated but not allowed */
    KILN_ELIMIT = -11,       /* a size or resource limit was exceeded */
    KILN_ECONFLICT = -12,    /* conflicts with current state */
    KILN_ETIMEOUT = -13,     /* took too long */
    KILN_ESTATE = -14,       /* operation not valid in the object's state */
    KILN_EUNSUPPORTED = -15, /* not available on this host/build */
};

/* Exit statuses of the kiln commands (README "Exit codes"). 2 (usage) is
 * only for a command line the command cannot parse: no error code maps to it. */
enum kiln_exit {
    KILN_EXIT_OK = 0,
    KILN_EXIT_FAIL = 1,        /* the operation failed (bad input, job failed...) */
    KILN_EXIT_USAGE = 2,       /* the command line is wrong */
    KILN_EXIT_UNREACHABLE = 3, /* network error or timeout */
    KILN_EXIT_AUTH = 4,        /* missing/invalid token, or not allowed */
    KILN_EXIT_NOTFOUND = 5,
    KILN_EXIT_CONFLICT = 6, /* exists, conflict, wrong state */
    KILN_EXIT_INTERNAL = 7, /* out of memory, I/O or database error */
};

#define KILN_ERR_MSG_MAX 512

struct kiln_error {
    int code;
    char msg[KILN_ERR_MSG_MAX];
};

/* Short stable name of a code, e.g. "not_found". Never NULL. */
const char *kiln_code_name(int code);
/* Human sentence for a code, e.g. "not found". Never NULL. */
const char *kiln_strerror(int code);
/* HTTP status that corresponds to a code (404 for KILN_ENOTFOUND...). */
int kiln_err_http_status(int code);
/* Exit status for a code (KILN_EXIT_*); unknown codes are KILN_EXIT_INTERNAL. */
int kiln_err_exit_code(int code);
/* The code behind an HTTP error: the body's code name when it is one of
 * ours, else the first code answered with that status. KILN_OK below 400. */
int kiln_err_from_http(long status, const char *name);

/* Fill err (if non-NULL) with code and a printf-style message; returns code
 * so callers can write `return kiln_fail(err, KILN_EINVAL, "...")`. */
int kiln_fail(struct kiln_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kiln_error_clear(struct kiln_error *err);

#endif
