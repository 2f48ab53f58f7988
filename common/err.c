#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* One row per code: its stable name, its sentence, the HTTP status the API
 * answers with and the exit status the CLI ends with. Order matters only for
 * kiln_err_from_http(): the first row with a status is what that status
 * means when the body names no code. */
static const struct {
    int code;
    const char *name;
    const char *text;
    int http;
    int exit;
} table[] = {
    {KILN_OK, "ok", "success", 200, KILN_EXIT_OK},
    {KILN_ENOMEM, "out_of_memory", "out of memory", 503, KILN_EXIT_INTERNAL},
    {KILN_EIO, "io_error", "input/output error", 500, KILN_EXIT_INTERNAL},
    {KILN_EINVAL, "invalid", "invalid argument", 400, KILN_EXIT_FAIL},
    {KILN_ENOTFOUND, "not_found", "not found", 404, KILN_EXIT_NOTFOUND},
    {KILN_EEXIST, "exists", "already exists", 409, KILN_EXIT_CONFLICT},
    {KILN_EPARSE, "parse_error", "malformed input", 400, KILN_EXIT_FAIL},
    {KILN_EDB, "db_error", "database error", 500, KILN_EXIT_INTERNAL},
    {KILN_ENET, "network_error", "network error", 502, KILN_EXIT_UNREACHABLE},
    {KILN_EAUTH, "unauthorized", "missing or invalid token", 401, KILN_EXIT_AUTH},
    {KILN_EPERM, "forbidden", "not allowed for this token", 403, KILN_EXIT_AUTH},
    {KILN_ELIMIT, "too_large", "limit exceeded", 413, KILN_EXIT_FAIL},
    {KILN_ECONFLICT, "conflict", "conflicts with current state", 409, KILN_EXIT_CONFLICT},
    {KILN_ETIMEOUT, "timeout", "timed out", 504, KILN_EXIT_UNREACHABLE},
    {KILN_ESTATE, "bad_state", "not possible in the current state", 409, KILN_EXIT_CONFLICT},
    {KILN_EUNSUPPORTED, "unsupported", "not supported here", 501, KILN_EXIT_FAIL},
};

static int find(int code)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].code == code) return (int)i;
    return -1;
}

const char *kiln_code_name(int code)
{
    int i = find(code);
    return i < 0 ? "unknown" : table[i].name;
}

const char *kiln_strerror(int code)
{
    int i = find(code);
    return i < 0 ? "unknown error" : table[i].text;
}

int kiln_err_http_status(int code)
{
    int i = find(code);
    return i < 0 ? 500 : table[i].http;
}

int kiln_err_exit_code(int code)
{
    int i = find(code);
    return i < 0 ? KILN_EXIT_INTERNAL : table[i].exit;
}

int kiln_err_from_http(long status, const char *name)
{
    size_t n = sizeof table / sizeof table[0];
    if (status < 400) return KILN_OK;
    for (size_t i = 0; name && i < n; i++)
        if (!strcmp(table[i].name, name)) return table[i].code;
    for (size_t i = 0; i < n; i++)
        if (table[i].http == status) return table[i].code;
    return status >= 500 ? KILN_EIO : KILN_EINVAL;
}

int kiln_fail(struct kiln_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void kiln_error_clear(struct kiln_error *err)
{
    if (err) {
        err->code = KILN_OK;
        err->msg[0] = '\0';
    }
}
