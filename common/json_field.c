/* json_field.c - typed JSON field readers; see json_field.h for the contract. */
#include "common/json_field.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *kiln_json_str(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int kiln_json_want_str(const json_t *v, const char *name, const char **out, struct kiln_error *err)
{
    if (!json_is_string(v)) return kiln_fail(err, KILN_EINVAL, "%s: must be a string", name);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return kiln_fail(err, KILN_EINVAL, "%s: must not contain NUL bytes", name);
    *out = json_string_value(v);
    return KILN_OK;
}

int kiln_json_want_strcpy(const json_t *v, const char *name, char *out, size_t n,
                          struct kiln_error *err)
{
    const char *s;
    int rc = kiln_json_want_str(v, name, &s, err);
    if (rc) return rc;
    if (json_string_length(v) >= n)
        return kiln_fail(err, KILN_ELIMIT, "%s: is too long (at most %zu bytes)", name, n - 1);
    memcpy(out, s, json_string_length(v) + 1);
    return KILN_OK;
}

int kiln_json_want_int(const json_t *v, const char *name, long long lo, long long hi, int text_ok,
                       long long *out, struct kiln_error *err)
{
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (text_ok && json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        x = strtoll(s, &end, 10);
        if (errno || end == s || *end) goto bad;
    } else {
        goto bad;
    }
    if (x < lo || x > hi) goto bad;
    *out = x;
    return KILN_OK;
bad:
    return kiln_fail(err, KILN_EINVAL, "%s: must be an integer from %lld to %lld", name, lo, hi);
}

int kiln_json_want_number(const json_t *v, const char *name, double lo, double hi, double *out,
                          struct kiln_error *err)
{
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi)
        return kiln_fail(err, KILN_EINVAL, "%s: must be a number from %g to %g", name, lo, hi);
    *out = json_number_value(v);
    return KILN_OK;
}

/* The value of o[key], or NULL for absent and JSON null alike. */
static json_t *given(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

int kiln_json_field_str(const json_t *o, const char *key, int required, const char **out,
                        struct kiln_error *err)
{
    json_t *v = given(o, key);
    if (!v) {
        *out = NULL;
        return required ? kiln_fail(err, KILN_EINVAL, "%s: is required", key) : KILN_OK;
    }
    return kiln_json_want_str(v, key, out, err);
}

int kiln_json_field_strcpy(const json_t *o, const char *key, int required, char *out, size_t n,
                           struct kiln_error *err)
{
    json_t *v = given(o, key);
    if (!v) return required ? kiln_fail(err, KILN_EINVAL, "%s: is required", key) : KILN_OK;
    return kiln_json_want_strcpy(v, key, out, n, err);
}

int kiln_json_field_int(const json_t *o, const char *key, long long lo, long long hi, long long def,
                        long long *out, struct kiln_error *err)
{
    json_t *v = given(o, key);
    if (!v) {
        *out = def;
        return KILN_OK;
    }
    return kiln_json_want_int(v, key, lo, hi, 0, out, err);
}

int kiln_json_field_bool(const json_t *o, const char *key, int def, int *out,
                         struct kiln_error *err)
{
    json_t *v = given(o, key);
    if (!v) {
        *out = def;
        return KILN_OK;
    }
    if (!json_is_boolean(v)) return kiln_fail(err, KILN_EINVAL, "%s: must be true or false", key);
    *out = json_is_true(v);
    return KILN_OK;
}

int kiln_json_field_array(const json_t *o, const char *key, int required, json_t **out,
                          struct kiln_error *err)
{
    json_t *v = given(o, key);
    *out = NULL;
    if (!v) return required ? kiln_fail(err, KILN_EINVAL, "%s: is required", key) : KILN_OK;
    if (!json_is_array(v)) return kiln_fail(err, KILN_EINVAL, "%s: must be a list", key);
    *out = v;
    return KILN_OK;
}

int kiln_json_only_keys(const json_t *o, const char *const *known, const char *where,
                        struct kiln_error *err)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        const char *const *p = known;
        while (*p && strcmp(*p, k))
            p++;
        if (*p) continue;
        char list[512];
        size_t n = 0;
        list[0] = 0;
        for (p = known; *p && n < sizeof list; p++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", p == known ? "" : ", ", *p);
        int top = !where || !*where;
        return kiln_fail(err, KILN_EINVAL, "%s%sunknown key '%.64s' (known: %s)", top ? "" : where,
                         top ? "" : ": ", k, list);
    }
    return KILN_OK;
}
