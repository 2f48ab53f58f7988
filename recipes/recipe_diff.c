/* recipe_diff.c - compare two expansions of a recipe (old vs new) by
 * variant name: what a change to a recipe file adds, removes and changes. */
#include "recipes/recipe.h"

#include "common/buf.h"

#include <stdio.h>
#include <string.h>

static int add_field(json_t *fields, const char *a, const char *b)
{
    char path[256];
    if (b)
        snprintf(path, sizeof(path), "%s.%s", a, b);
    else
        snprintf(path, sizeof(path), "%s", a);
    return json_array_append_new(fields, json_string(path));
}

/* Keys of object field k that differ between o and n, as "k.key". */
static int fields_in(const char *k, json_t *ov, json_t *nv, json_t *fields)
{
    const char *k2;
    json_t *v2;
    json_object_foreach(ov, k2, v2)
    {
        if (!json_equal(v2, json_object_get(nv, k2)) && add_field(fields, k, k2))
            return KILN_ENOMEM;
    }
    json_object_foreach(nv, k2, v2)
    {
        if (!json_object_get(ov, k2) && add_field(fields, k, k2)) return KILN_ENOMEM;
    }
    return 0;
}

/* Differences between two variant objects as dotted field paths. */
static int fields_of(const json_t *o, const json_t *n, json_t *fields)
{
    const char *k;
    json_t *ov;
    json_object_foreach((json_t *)o, k, ov)
    {
        json_t *nv = json_object_get(n, k);
        if (json_equal(ov, nv)) continue;
        if (json_is_object(ov) && json_is_object(nv)) {
            if (fields_in(k, ov, nv, fields)) return KILN_ENOMEM;
        } else if (add_field(fields, k, NULL)) {
            return KILN_ENOMEM;
        }
    }
    json_object_foreach((json_t *)n, k, ov)
    {
        if (!json_object_get(o, k) && add_field(fields, k, NULL)) return KILN_ENOMEM;
    }
    return 0;
}

static int index_by_name(const json_t *arr, json_t **out, const char *which, struct kiln_error *err)
{
    if (!json_is_array(arr))
        return kiln_fail(err, KILN_EINVAL, "the %s variants are not a JSON array", which);
    json_t *idx = json_object();
    if (!idx) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        if (!name) {
            json_decref(idx);
            return kiln_fail(err, KILN_EINVAL, "%s variant %zu has no name", which, i);
        }
        json_object_set(idx, name, v);
    }
    *out = idx;
    return 0;
}

int kiln_recipe_diff(const json_t *old_variants, const json_t *new_variants, json_t **diff_out,
                     struct kiln_error *err)
{
    json_t *oi = NULL, *ni = NULL;
    int rc = index_by_name(old_variants, &oi, "old", err);
    if (rc) return rc;
    rc = index_by_name(new_variants, &ni, "new", err);
    if (rc) {
        json_decref(oi);
        return rc;
    }
    json_t *added = json_array(), *removed = json_array(), *changed = json_array();
    json_int_t same = 0;
    size_t i;
    json_t *v;
    if (!added || !removed || !changed) goto oom;
    json_array_foreach(new_variants, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        json_t *o = json_object_get(oi, name);
        if (!o) {
            if (json_array_append_new(added, json_string(name))) goto oom;
            continue;
        }
        json_t *fields = json_array();
        if (!fields || fields_of(o, v, fields)) {
            json_decref(fields);
            goto oom;
        }
        if (json_array_size(fields) == 0) {
            same++;
            json_decref(fields);
            continue;
        }
        json_t *c = json_pack("{s:s,s:o}", "name", name, "fields", fields);
        if (!c || json_array_append_new(changed, c)) goto oom;
    }
    json_array_foreach(old_variants, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        if (!json_object_get(ni, name) && json_array_append_new(removed, json_string(name)))
            goto oom;
    }
    json_decref(oi);
    json_decref(ni);
    *diff_out = json_pack("{s:o,s:o,s:o,s:I}", "added", added, "removed", removed, "changed",
                          changed, "unchanged", same);
    if (!*diff_out) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    return 0;
oom:
    json_decref(oi);
    json_decref(ni);
    json_decref(added);
    json_decref(removed);
    json_decref(changed);
    return kiln_fail(err, KILN_ENOMEM, "out of memory");
}

static int where_value(const json_t *v, struct kiln_buf *b)
{
    if (json_is_string(v)) return kiln_buf_puts(b, json_string_value(v));
    if (json_is_integer(v))
        return kiln_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    if (json_is_real(v)) return kiln_buf_printf(b, "%g", json_real_value(v));
    return KILN_EINVAL;
}

int kiln_recipe_where_from_json(const json_t *where, char *out, size_t outlen,
                                struct kiln_error *err)
{
    if (!out || outlen == 0) return kiln_fail(err, KILN_EINVAL, "no output buffer");
    out[0] = '\0';
    if (!where || json_is_null(where)) return 0;
    if (!json_is_object(where))
        return kiln_fail(err, KILN_EINVAL, "where must be an object of attribute filters");
    struct kiln_buf b = {0};
    const char *k;
    json_t *v;
    int rc = 0;
    json_object_foreach((json_t *)where, k, v)
    {
        if (!*k || strpbrk(k, "=,|")) {
            rc = kiln_fail(err, KILN_EINVAL, "where: '%s' is not an attribute name", k);
            break;
        }
        if ((rc = kiln_buf_printf(&b, "%s%s=", b.len ? "," : "", k))) break;
        if (json_is_array(v)) {
            size_t i;
            json_t *x;
            if (json_array_size(v) == 0) {
                rc = kiln_fail(err, KILN_EINVAL, "where: '%s' lists no values", k);
                break;
            }
            json_array_foreach(v, i, x)
            {
                if (i && (rc = kiln_buf_puts(&b, "|"))) break;
                if ((rc = where_value(x, &b))) break;
            }
        } else {
            rc = where_value(v, &b);
        }
        if (rc) {
            if (rc == KILN_EINVAL)
                rc = kiln_fail(err, KILN_EINVAL,
                               "where: '%s' must be a string, a number or a list of them", k);
            break;
        }
    }
    if (rc == 0 && b.len >= outlen) rc = kiln_fail(err, KILN_ELIMIT, "where: filter too long");
    if (rc == 0 && b.len) memcpy(out, b.data, b.len + 1);
    if (rc == KILN_ENOMEM) kiln_fail(err, rc, "out of memory");
    kiln_buf_free(&b);
    return rc;
}
