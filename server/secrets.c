/* secrets.c - resolve and mask secret env values (server/secrets.h). */
#include "server/secrets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EDGE_MIN 4 /* shortest value edge masked at a chunk boundary */

static const char *ref_value(const char *name)
{
    char var[160];
    if (snprintf(var, sizeof var, "KILN_SECRET_%s", name) >= (int)sizeof var) return NULL;
    return getenv(var);
}

int kiln_secrets_resolve(json_t *secret_env, json_t **values, struct kiln_error *err)
{
    *values = json_object();
    if (!*values) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    int rc = KILN_OK;
    const char *k;
    json_t *v;
    json_object_foreach(secret_env, k, v)
    {
        const char *val = json_string_value(json_object_get(v, "secret"));
        const char *ref = json_string_value(json_object_get(v, "secret_ref"));
        if (!val && ref) val = ref_value(ref);
        if (!val) {
            rc = kiln_fail(err, KILN_ENOTFOUND,
                           "env %s: the server has no secret %s (set KILN_SECRET_%s where kiln "
                           "serve runs)",
                           k, ref ? ref : "?", ref ? ref : "?");
            continue;
        }
        json_object_set_new(*values, k, json_string(val));
    }
    return rc;
}

int kiln_secrets_check(json_t *jobs, struct kiln_error *err)
{
    size_t i;
    json_t *job;
    json_array_foreach(jobs, i, job)
    {
        json_t *vals;
        int rc = kiln_secrets_resolve(json_object_get(job, "secret_env"), &vals, err);
        json_decref(vals);
        if (rc) return rc;
    }
    return KILN_OK;
}

static void mask_one(const char *s, size_t n, char *buf, size_t len)
{
    if (n == 0) return;
    /* Whole occurrences. */
    for (size_t i = 0; i + n <= len; i++)
        if (buf[i] == s[0] && !memcmp(buf + i, s, n)) {
            memset(buf + i, '*', n);
            i += n - 1;
        }
    /* A value cut by the chunk's end: its first m bytes end the chunk. */
    for (size_t m = n - 1; m >= EDGE_MIN && m > 0; m--)
        if (m <= len && !memcmp(buf + len - m, s, m)) {
            memset(buf + len - m, '*', m);
            break;
        }
    /* ... or by its start: its last m bytes begin the chunk. */
    for (size_t m = n - 1; m >= EDGE_MIN && m > 0; m--)
        if (m <= len && !memcmp(buf, s + n - m, m)) {
            memset(buf, '*', m);
            break;
        }
}

void kiln_secrets_mask(json_t *values, char *buf, size_t len)
{
    const char *k;
    json_t *v;
    json_object_foreach(values, k, v)
    {
        if (json_is_string(v)) mask_one(json_string_value(v), json_string_length(v), buf, len);
    }
}
