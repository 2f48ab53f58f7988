#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int code;
    const char *name;
    const char *text;
    int http;
} table[] = {
    {KILN_OK, "ok", "success", 200},
    {KILN_ENOMEM, "out_of_memory", "out of memory", 503},
    {KILN_EIO, "io_error", "input/output error", 500},
    {KILN_EINVAL, "invalid", "invalid argument", 400},
    {KILN_ENOTFOUND, "not_found", "not found", 404},
    {KILN_EEXIST, "exists", "already exists", 409},
    {KILN_EPARSE, "parse_error", "malformed input", 400},
    {KILN_EDB, "db_error", "database error", 500},
    {KILN_ENET, "network_error", "network error", 502},
    {KILN_EAUTH, "unauthorized", "missing or invalid token", 401},
    {KILN_EPERM, "forbidden", "not allowed for this token", 403},
    {KILN_ELIMIT, "too_large", "limit exceeded", 413},
    {KILN_ECONFLICT, "conflict", "conflicts with current state", 409},
    {KILN_ETIMEOUT, "timeout", "timed out", 504},
    {KILN_ESTATE, "bad_state", "not possible in the current state", 409},
    {KILN_EUNSUPPORTED, "unsupported", "not supported here", 501},
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
