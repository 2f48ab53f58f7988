/* err.h - kiln's error codes and error reports.
 *
 * Contract: every fallible function in kiln returns an int: 0 (KILN_OK) on
 * success or one of the negative KILN_E* codes below. Where a caller needs to
 * tell a person what went wrong, the function also fills a struct kiln_error
 * (code + one plain sentence). Codes are stable: the CLI maps them to exit
 * codes and the API to HTTP statuses (see kiln_err_http_status()).
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

/* Fill err (if non-NULL) with code and a printf-style message; returns code
 * so callers can write `return kiln_fail(err, KILN_EINVAL, "...")`. */
int kiln_fail(struct kiln_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kiln_error_clear(struct kiln_error *err);

#endif
