#include "git/affected.h"

#include <stdio.h>
#include <string.h>

/* Iterative matcher with one backtrack point per '*' kind, so hostile
 * patterns cannot make it exponential: '**' may consume '/', '*' may not. */
static int match_class(const char **pp, char c)
{
    const char *p = *pp + 1; /* after '[' */
    int neg = 0, ok = 0;
    if (*p == '!' || *p == '^') {
        neg = 1;
        p++;
    }
    const char *start = p;
    while (*p && (*p != ']' || p == start)) {
        if (p[1] == '-' && p[2] && p[2] != ']') {
            if (c >= p[0] && c <= p[2]) ok = 1;
            p += 3;
        } else {
            if (c == *p) ok = 1;
            p++;
        }
    }
    if (*p != ']') return -1; /* unterminated: treat '[' literally */
    *pp = p + 1;
    return neg ? !ok : ok;
}

static int glob_rec(const char *p, const char *s, int depth)
{
    if (depth > 32) return 0;
    while (*p) {
        if (p[0] == '*' && p[1] == '*') {
            p += 2;
            /* the slash after a double star is optional: it may match no directory */
            if (*p == '/') p++;
            for (const char *t = s;; t++) {
                if (glob_rec(p, t, depth + 1)) return 1;
                if (!*t) return 0;
            }
        }
        if (*p == '*') {
            p++;
            for (const char *t = s;; t++) {
                if (glob_rec(p, t, depth + 1)) return 1;
                if (!*t || *t == '/') return 0;
            }
        }
        if (!*s) return 0;
        if (*p == '?') {
            if (*s == '/') return 0;
            p++;
            s++;
            continue;
        }
        if (*p == '[') {
            const char *q = p;
            int m = match_class(&q, *s);
            if (m >= 0) {
                if (!m || *s == '/') return 0;
                p = q;
                s++;
                continue;
            }
        }
        if (*p != *s) return 0;
        p++;
        s++;
    }
    return *s == '\0';
}

int kiln_glob_match(const char *pattern, const char *path)
{
    return glob_rec(pattern, path, 0);
}

static json_t *by_name(json_t *variants)
{
    json_t *m = json_object();
    size_t i;
    json_t *v;
    if (!m) return NULL;
    json_array_foreach(variants, i, v)
    {
        const char *n = json_string_value(json_object_get(v, "name"));
        if (n) json_object_set(m, n, v);
    }
    return m;
}

static void changed_field(json_t *a, json_t *b, char *out, size_t n)
{
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v)
    {
        if (!json_equal(v, json_object_get(a, k))) {
            snprintf(out, n, "recipe changed: %s", k);
            return;
        }
    }
    json_object_foreach(a, k, v)
    {
        if (!json_object_get(b, k)) {
            snprintf(out, n, "recipe changed: %s removed", k);
            return;
        }
    }
    snprintf(out, n, "recipe changed");
}

int kiln_affected(json_t *old_variants, json_t *new_variants, json_t *changed_files, json_t **out,
                  struct kiln_error *err)
{
    if (!json_is_array(new_variants))
        return kiln_fail(err, KILN_EINVAL, "variants must be a JSON array");
    json_t *old = old_variants ? by_name(old_variants) : json_object();
    json_t *res = json_object();
    if (!old || !res) {
        json_decref(old);
        json_decref(res);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    size_t i;
    json_t *v;
    char reason[600];
    json_array_foreach(new_variants, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        if (!name) continue;
        json_t *prev = json_object_get(old, name);
        reason[0] = '\0';
        if (!prev) {
            snprintf(reason, sizeof reason, "new variant");
        } else if (!json_equal(prev, v)) {
            changed_field(prev, v, reason, sizeof reason);
        } else {
            size_t gi, fi;
            json_t *g, *f;
            json_array_foreach(json_object_get(v, "inputs"), gi, g)
            {
                const char *pat = json_string_value(g);
                json_array_foreach(changed_files, fi, f)
                {
                    const char *path = json_string_value(f);
                    if (pat && path && kiln_glob_match(pat, path)) {
                        snprintf(reason, sizeof reason, "input %s changed", path);
                        break;
                    }
                }
                if (reason[0]) break;
            }
        }
        if (reason[0]) json_object_set_new(res, name, json_string(reason));
    }
    /* Dependents, to a fixed point (a chain is at most as long as the list). */
    for (int changed = 1; changed;) {
        changed = 0;
        json_array_foreach(new_variants, i, v)
        {
            const char *name = json_string_value(json_object_get(v, "name"));
            if (!name || json_object_get(res, name)) continue;
            size_t di;
            json_t *d;
            json_array_foreach(json_object_get(v, "depends"), di, d)
            {
                const char *dep = json_string_value(d);
                if (dep && json_object_get(res, dep)) {
                    snprintf(reason, sizeof reason, "depends on %s", dep);
                    json_object_set_new(res, name, json_string(reason));
                    changed = 1;
                    break;
                }
            }
        }
    }
    json_decref(old);
    *out = res;
    return KILN_OK;
}
