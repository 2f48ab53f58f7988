/* submit.c - recipe submissions (expand, pull in dependencies, submit). */
#include "state/submit.h"

#include "common/fsutil.h"
#include "recipes/recipe.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int kiln_submit_where_string(json_t *where, char *out, size_t outlen, struct kiln_error *err)
{
    size_t used = 0;
    out[0] = '\0';
    const char *k;
    json_t *v;
    json_object_foreach(where, k, v)
    {
        char val[128];
        if (json_is_string(v))
            snprintf(val, sizeof val, "%s", json_string_value(v));
        else if (json_is_integer(v))
            snprintf(val, sizeof val, "%lld", (long long)json_integer_value(v));
        else
            return kiln_fail(err, KILN_EINVAL, "where.%.64s: must be a string", k);
        if (!k[0] || strpbrk(k, ",=| ") || strpbrk(val, ",= ") || !val[0])
            return kiln_fail(err, KILN_EINVAL,
                             "where.%.64s: keys and values may not be empty or contain , = or "
                             "spaces ('|' separates alternatives in values)",
                             k);
        int n = snprintf(out + used, outlen - used, "%s%s=%s", used ? "," : "", k, val);
        if (n < 0 || (size_t)n >= outlen - used)
            return kiln_fail(err, KILN_ELIMIT, "where: too many filters");
        used += (size_t)n;
    }
    return KILN_OK;
}

static int recipe_path(const char *dir, const char *name, char *out, size_t n,
                       struct kiln_error *err)
{
    if (!dir || !dir[0])
        return kiln_fail(err, KILN_ENOTFOUND, "the server has no recipe directory (--recipes)");
    if (!kiln_jobspec_valid_name(name)) return kiln_fail(err, KILN_EINVAL, "not a recipe name");
    char file[160];
    snprintf(file, sizeof file, "%s.yaml", name);
    if (kiln_path_join(out, n, dir, file)) return kiln_fail(err, KILN_ELIMIT, "path too long");
    struct stat st;
    if (stat(out, &st) < 0 || !S_ISREG(st.st_mode))
        return kiln_fail(err, KILN_ENOTFOUND, "recipe %s not found in %s", name, dir);
    return KILN_OK;
}

int kiln_submit_expand(const char *recipes_dir, const char *name, const char *yaml,
                       const char *branch, const char *where, json_t **variants,
                       struct kiln_error *err)
{
    *variants = NULL;
    const char *b = branch && branch[0] ? branch : NULL;
    if (yaml) {
        /* Inline recipes resolve cross-recipe dependencies next to the
         * server's recipes. */
        char name_for_errors[PATH_MAX];
        if (recipes_dir && recipes_dir[0])
            snprintf(name_for_errors, sizeof name_for_errors, "%s/<inline>.yaml", recipes_dir);
        else
            snprintf(name_for_errors, sizeof name_for_errors, "<inline>");
        return kiln_recipe_expand_text(name_for_errors, yaml, strlen(yaml), b, where, variants,
                                       err);
    }
    char path[PATH_MAX];
    int rc = recipe_path(recipes_dir, name, path, sizeof path, err);
    if (rc) return rc;
    return kiln_recipe_expand_file(path, b, where, variants, err);
}

/* Is there a live job of that name on the branch? */
static int live_job(struct kiln_jobs *j, const char *name, const char *branch)
{
    sqlite3_stmt *s;
    if (kiln_store_stmt(
            j->st,
            "SELECT 1 FROM jobs WHERE name = ? AND (branch IS ? OR ? IS NULL) AND state "
            "NOT IN ('failed','cancelled','superseded') LIMIT 1",
            &s, NULL))
        return 0;
    kiln_store_bind_text(s, 1, name);
    kiln_store_bind_text(s, 2, branch);
    kiln_store_bind_text(s, 3, branch);
    int r = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return r;
}

static json_t *find_variant(json_t *arr, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *n = json_string_value(json_object_get(v, "name"));
        if (n && !strcmp(n, name)) return v;
    }
    return NULL;
}

/* Variants of every other recipe (cached across lookups of one submission). */
static int other_variants(const char *dir, const char *self, const char *branch, json_t **cache)
{
    if (*cache) return KILN_OK;
    *cache = json_array();
    if (!*cache) return KILN_ENOMEM;
    DIR *d = dir && dir[0] ? opendir(dir) : NULL;
    if (!d) return KILN_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n <= 5 || strcmp(e->d_name + n - 5, ".yaml") || e->d_name[0] == '.') continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(n - 5), e->d_name);
        if (self && !strcmp(name, self)) continue;
        json_t *vs = NULL;
        if (kiln_submit_expand(dir, name, NULL, branch, NULL, &vs, NULL) &&
            kiln_submit_expand(dir, name, NULL, NULL, NULL, &vs, NULL))
            continue; /* a broken neighbour recipe only matters if needed */
        json_array_extend(*cache, vs);
        json_decref(vs);
    }
    closedir(d);
    return KILN_OK;
}

int kiln_submit_recipe(struct kiln_jobs *j, const char *recipes_dir,
                       const struct kiln_jobspec *spec, double now, json_t **ids_out,
                       struct kiln_error *err)
{
    *ids_out = NULL;
    char where[1024];
    int rc = kiln_submit_where_string(spec->where, where, sizeof where, err);
    if (rc) return rc;
    json_t *variants;
    if ((rc = kiln_submit_expand(recipes_dir, spec->recipe, spec->recipe_yaml, spec->branch, where,
                                 &variants, err)))
        return rc;
    if (json_array_size(variants) == 0) {
        json_decref(variants);
        return kiln_fail(err, KILN_EINVAL, "no variant of %s matches where %s",
                         spec->recipe[0] ? spec->recipe : "the recipe", where[0] ? where : "{}");
    }
    /* Work list: dependencies found elsewhere go before their dependents. */
    json_t *ordered = json_array();
    json_t *others = NULL;
    json_t *seen = json_object();
    if (!ordered || !seen) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto out;
    }
    size_t i;
    json_t *v;
    json_array_foreach(variants, i, v)
        json_object_set(seen,
                        json_string_value(json_object_get(v, "name"))
                            ? json_string_value(json_object_get(v, "name"))
                            : "",
                        json_true());
    /* Breadth-first over missing dependency names, bounded. */
    json_t *pending = json_copy(variants);
    json_t *extra = json_array();
    for (size_t guard = 0; json_array_size(pending) && guard < 10000; guard++) {
        json_t *cur = json_incref(json_array_get(pending, 0));
        json_array_remove(pending, 0);
        size_t k;
        json_t *d;
        json_array_foreach(json_object_get(cur, "depends"), k, d)
        {
            const char *dn = json_string_value(d);
            if (!dn || json_object_get(seen, dn) || live_job(j, dn, spec->branch)) continue;
            if (other_variants(recipes_dir, spec->recipe, spec->branch, &others)) {
                json_decref(cur);
                rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
                goto out2;
            }
            json_t *found = find_variant(others, dn);
            if (!found) {
                json_decref(cur);
                rc = kiln_fail(err, KILN_EINVAL,
                               "variant %s depends on %s, which is neither submitted nor in any "
                               "recipe of %s",
                               json_string_value(json_object_get(cur, "name")), dn,
                               recipes_dir && recipes_dir[0] ? recipes_dir : "(no recipe dir)");
                goto out2;
            }
            json_object_set(seen, dn, json_true());
            json_array_append(extra, found);
            json_array_append(pending, found);
        }
        json_decref(cur);
    }
    /* Dependencies pulled in are placed first, deepest last-found first. */
    for (size_t e = json_array_size(extra); e > 0; e--) {
        json_t *job;
        if ((rc = kiln_jobspec_from_variant(json_array_get(extra, e - 1), spec->priority,
                                            spec->commit, &job, err)))
            goto out2;
        json_array_append_new(ordered, job);
    }
    json_array_foreach(variants, i, v)
    {
        json_t *job;
        if ((rc = kiln_jobspec_from_variant(v, spec->priority, spec->commit, &job, err))) goto out2;
        json_array_append_new(ordered, job);
    }
    rc = kiln_jobs_submit(j, ordered, 1, now, ids_out, err);
out2:
    json_decref(pending);
    json_decref(extra);
out:
    json_decref(others);
    json_decref(seen);
    json_decref(ordered);
    json_decref(variants);
    return rc;
}
