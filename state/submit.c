/* submit.c - recipe submissions (expand, pull in dependencies, submit). */
#include "state/submit.h"

#include "common/fsutil.h"
#include "common/json_field.h"
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

/* Is there a live job of that name on the branch? The same rows
 * kiln_jobs_submit() links a dependency name to. */
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
        const char *n = kiln_json_str(v, "name");
        if (n && !strcmp(n, name)) return v;
    }
    return NULL;
}

/* One dependency of cur that is neither in the batch nor a live job: from
 * the pool (appended to extra and pending), dropped, or an error. */
static int resolve_missing(const struct kiln_submit_plan_opts *o, json_t **pool, json_t *cur,
                           const char *dn, json_t *seen, json_t *extra, json_t *pending, int *drop,
                           struct kiln_error *err)
{
    *drop = 0;
    if (o->pool && !*pool && o->pool(o->pool_arg, pool))
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    json_t *found = *pool ? find_variant(*pool, dn) : NULL;
    if (found) {
        json_object_set(seen, dn, json_true());
        json_array_append(extra, found);
        json_array_append(pending, found);
        return KILN_OK;
    }
    if (o->missing_ok) {
        *drop = 1;
        return KILN_OK;
    }
    return kiln_fail(err, KILN_EINVAL,
                     "variant %s depends on %s, which is neither submitted nor %s",
                     kiln_json_str(cur, "name"), dn, o->pool_name ? o->pool_name : "a live job");
}

int kiln_submit_plan(struct kiln_jobs *j, json_t *variants, const struct kiln_submit_plan_opts *o,
                     json_t **jobs_out, struct kiln_error *err)
{
    *jobs_out = NULL;
    int rc = KILN_OK;
    json_t *seen = json_object(), *pool = NULL, *extra = json_array();
    json_t *pending = json_array(), *ordered = json_array(), *dropped = json_object();
    if (!seen || !extra || !pending || !ordered || !dropped) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto out;
    }
    size_t i;
    json_t *v;
    json_array_foreach(variants, i, v)
    {
        const char *n = kiln_json_str(v, "name");
        json_object_set(seen, n ? n : "", json_true());
        json_array_append(pending, v);
    }
    /* Breadth-first over missing dependency names, bounded. */
    for (size_t guard = 0; !rc && json_array_size(pending) && guard < 10000; guard++) {
        json_t *cur = json_incref(json_array_get(pending, 0));
        json_array_remove(pending, 0);
        size_t k;
        json_t *d;
        json_array_foreach(json_object_get(cur, "depends"), k, d)
        {
            const char *dn = json_string_value(d);
            if (!dn || json_object_get(seen, dn) || live_job(j, dn, o->branch)) continue;
            int drop;
            if ((rc = resolve_missing(o, &pool, cur, dn, seen, extra, pending, &drop, err))) break;
            if (drop) json_object_set(dropped, dn, json_true());
        }
        json_decref(cur);
    }
    /* Dependencies pulled in are placed first, deepest last-found first. */
    for (size_t e = json_array_size(extra); !rc && e > 0; e--) {
        json_t *job;
        if (!(rc = kiln_jobspec_from_variant(json_array_get(extra, e - 1), o->priority, o->commit,
                                             &job, err)))
            json_array_append_new(ordered, job);
    }
    json_array_foreach(variants, i, v)
    {
        json_t *job;
        if (rc || (rc = kiln_jobspec_from_variant(v, o->priority, o->commit, &job, err))) break;
        json_array_append_new(ordered, job);
    }
    /* Dropped names leave the jobs' depends: they are taken as provided. */
    json_array_foreach(ordered, i, v)
    {
        json_t *deps = json_object_get(v, "depends"), *keep = json_array(), *d;
        size_t k;
        json_array_foreach(deps, k, d) if (!json_object_get(dropped, json_string_value(d)))
            json_array_append(keep, d);
        json_object_set_new(v, "depends", keep);
    }
    if (!rc) *jobs_out = json_incref(ordered);
out:
    json_decref(seen);
    json_decref(pool);
    json_decref(extra);
    json_decref(pending);
    json_decref(ordered);
    json_decref(dropped);
    return rc;
}

/* Variants of every other recipe in the recipe dir: the pool a submission's
 * missing dependencies come from. */
struct others {
    const char *dir, *self, *branch;
};

static int other_variants(void *arg, json_t **out)
{
    struct others *o = arg;
    *out = json_array();
    if (!*out) return KILN_ENOMEM;
    DIR *d = o->dir && o->dir[0] ? opendir(o->dir) : NULL;
    if (!d) return KILN_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n <= 5 || strcmp(e->d_name + n - 5, ".yaml") || e->d_name[0] == '.') continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(n - 5), e->d_name);
        if (o->self && !strcmp(name, o->self)) continue;
        json_t *vs = NULL;
        if (kiln_submit_expand(o->dir, name, NULL, o->branch, NULL, &vs, NULL) &&
            kiln_submit_expand(o->dir, name, NULL, NULL, NULL, &vs, NULL))
            continue; /* a broken neighbour recipe only matters if needed */
        json_array_extend(*out, vs);
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
    struct others others = {recipes_dir, spec->recipe, spec->branch};
    char pool_name[PATH_MAX + 32];
    snprintf(pool_name, sizeof pool_name, "in any recipe of %s",
             recipes_dir && recipes_dir[0] ? recipes_dir : "(no recipe dir)");
    struct kiln_submit_plan_opts o = {.branch = spec->branch,
                                      .commit = spec->commit,
                                      .priority = spec->priority,
                                      .pool = other_variants,
                                      .pool_arg = &others,
                                      .pool_name = pool_name};
    json_t *jobs = NULL;
    rc = kiln_submit_plan(j, variants, &o, &jobs, err);
    size_t k;
    json_t *job;
    if (!rc && spec->owner)
        json_array_foreach(jobs, k, job)
            json_object_set_new(job, "owner", json_integer(spec->owner));
    if (!rc)
        rc = kiln_jobs_submit(j, jobs,
                              spec->owner_is_admin ? KILN_SUPERSEDE_ANY : KILN_SUPERSEDE_OWN, now,
                              ids_out, err);
    json_decref(jobs);
    json_decref(variants);
    return rc;
}
