/* recipe.c - the public entry points of recipe.h: load and compile
 * (recipe_compile.c), expand (recipe_expand.c), resolve dependencies
 * (recipe_deps.c), and turn the diagnostics into the error line or the
 * problem list that callers get. The format is documented in
 * docs/recipes.md; every problem carries file:line:col. */
#include "recipes/recipe.h"

#include "recipes/recipe_deps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int first_error(const struct diags *d, int rc, struct kiln_error *err)
{
    if (d->n) {
        /* The first problem reported, not the first in the file: later
         * ones are often its consequences. */
        const struct diag *g = &d->v[0];
        return kiln_fail(err, g->code ? g->code : rc, "%s:%d:%d: error: %s", g->file, g->line,
                         g->col, g->msg);
    }
    return kiln_fail(err, rc ? rc : KILN_EINVAL, "%s", kiln_strerror(rc ? rc : KILN_EINVAL));
}

static int expand_loaded(struct loaded *L, int rc, const char *branch, const char *where,
                         json_t **out, struct kiln_error *err)
{
    if (rc) return first_error(&L->d, rc, err);
    struct exp E;
    rc = exp_init(&E, L, branch, MODE_JSON);
    if (rc) {
        exp_free(&E);
        return first_error(&L->d, rc, err);
    }
    rc = parse_where(&E, where, err);
    if (rc) {
        exp_free(&E);
        return rc;
    }
    rc = expand_names(&E);
    if (rc == 0) rc = resolve_deps(&E);
    if (rc == 0 && L->d.n) rc = L->d.v[0].code;
    if (rc) {
        exp_free(&E);
        return first_error(&L->d, rc, err);
    }
    json_t *arr = json_array();
    if (!arr) {
        exp_free(&E);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < E.nvr; i++)
        if (E.vr[i].obj) {
            json_array_append_new(arr, E.vr[i].obj);
            E.vr[i].obj = NULL;
        }
    exp_free(&E);
    *out = arr;
    return 0;
}

int kiln_recipe_expand_text(const char *name_for_errors, const char *text, size_t len,
                            const char *branch, const char *where, json_t **variants_out,
                            struct kiln_error *err)
{
    if (!variants_out || (!text && len)) return kiln_fail(err, KILN_EINVAL, "no recipe text");
    *variants_out = NULL;
    struct loaded L;
    int rc = recipe_load_text(&L, name_for_errors, text ? text : "", len);
    rc = expand_loaded(&L, rc, branch, where, variants_out, err);
    recipe_loaded_free(&L);
    return rc;
}

int kiln_recipe_expand_file(const char *path, const char *branch, const char *where,
                            json_t **variants_out, struct kiln_error *err)
{
    if (!path || !variants_out) return kiln_fail(err, KILN_EINVAL, "no recipe path");
    *variants_out = NULL;
    struct loaded L;
    int rc = recipe_load_file(&L, path);
    rc = expand_loaded(&L, rc, branch, where, variants_out, err);
    recipe_loaded_free(&L);
    return rc;
}

static int cmp_diag(const void *a, const void *b)
{
    const struct diag *x = a, *y = b;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    if (x->col != y->col) return x->col < y->col ? -1 : 1;
    return strcmp(x->msg, y->msg);
}

static int check_loaded(struct loaded *L, int rc, json_t **problems_out, struct kiln_error *err)
{
    if (rc == 0) {
        const struct recipe *r = &L->r;
        size_t nb = r->nbr ? r->nbr : 1;
        for (size_t b = 0; b < nb && !L->d.oom && L->d.n < DG_MAX; b++) {
            struct exp E;
            int erc = exp_init(&E, L, r->nbr ? r->br[b].name : NULL, MODE_JSON);
            E.stop_first = 0;
            if (erc == 0) erc = expand_names(&E);
            if (erc != KILN_ENOMEM && erc != KILN_ELIMIT) resolve_deps(&E);
            exp_free(&E);
        }
    }
    int first = L->d.n ? L->d.v[0].code : rc;
    if (L->d.n) rc = first_error(&L->d, first, err);
    if (L->d.n > 1) qsort(L->d.v, L->d.n, sizeof(*L->d.v), cmp_diag);
    if (problems_out) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < L->d.n; i++) {
            const struct diag *g = &L->d.v[i];
            char text[1200];
            char msg[900];
            if (g->more)
                snprintf(msg, sizeof(msg), "%s (and %zu more variant%s like it)", g->msg, g->more,
                         g->more == 1 ? "" : "s");
            else
                snprintf(msg, sizeof(msg), "%s", g->msg);
            snprintf(text, sizeof(text), "%s:%d:%d: error: %s", g->file, g->line, g->col, msg);
            json_t *o = json_pack("{s:s,s:i,s:i,s:s,s:s}", "file", g->file, "line", g->line, "col",
                                  g->col, "message", msg, "text", text);
            if (!o || json_array_append_new(arr, o)) {
                json_decref(arr);
                arr = NULL;
            }
        }
        *problems_out = arr;
        if (!arr) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    if (L->d.n) return rc;
    if (rc) return first_error(&L->d, rc, err);
    return 0;
}

int kiln_recipe_check_text(const char *name_for_errors, const char *text, size_t len,
                           json_t **problems_out, struct kiln_error *err)
{
    if (problems_out) *problems_out = NULL;
    struct loaded L;
    int rc = recipe_load_text(&L, name_for_errors, text ? text : "", text ? len : 0);
    rc = check_loaded(&L, rc, problems_out, err);
    recipe_loaded_free(&L);
    return rc;
}

int kiln_recipe_check_file(const char *path, json_t **problems_out, struct kiln_error *err)
{
    if (problems_out) *problems_out = NULL;
    if (!path) return kiln_fail(err, KILN_EINVAL, "no recipe path");
    struct loaded L;
    int rc = recipe_load_file(&L, path);
    rc = check_loaded(&L, rc, problems_out, err);
    recipe_loaded_free(&L);
    return rc;
}

int kiln_recipe_name_file(const char *path, char *out, size_t outlen, struct kiln_error *err)
{
    struct loaded L;
    int rc = recipe_load_file(&L, path);
    if (rc) {
        rc = first_error(&L.d, rc, err);
    } else if ((size_t)snprintf(out, outlen, "%s", L.r.name) >= outlen) {
        rc = kiln_fail(err, KILN_ELIMIT, "recipe name too long");
    }
    recipe_loaded_free(&L);
    return rc;
}

int kiln_recipe_expand_request(const char *recipes_dir, const char *name, const char *inline_yaml,
                               const char *branch, const json_t *where, json_t **variants_out,
                               struct kiln_error *err)
{
    if (!variants_out) return kiln_fail(err, KILN_EINVAL, "no output");
    *variants_out = NULL;
    const char *dir = recipes_dir && *recipes_dir ? recipes_dir : "recipes";
    if (!inline_yaml && (!name || !*name))
        return kiln_fail(err, KILN_EINVAL, "give a recipe name or an inline recipe");
    if (name && *name &&
        (strlen(name) > 64 || strspn(name, RECIPE_NAME_CHARS) != strlen(name) || name[0] == '.'))
        return kiln_fail(err, KILN_EINVAL,
                         "recipe name '%.64s' must be 1-64 letters, digits, '.', '_' or '-' "
                         "and not start with '.'",
                         name);
    char w[4096];
    int rc = kiln_recipe_where_from_json(where, w, sizeof(w), err);
    if (rc) return rc;
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/%s.yaml", dir, name && *name ? name : "inline");
    if (n < 0 || (size_t)n >= sizeof(path))
        return kiln_fail(err, KILN_ELIMIT, "recipe directory path too long");
    if (inline_yaml)
        return kiln_recipe_expand_text(path, inline_yaml, strlen(inline_yaml), branch, w,
                                       variants_out, err);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return kiln_fail(err, KILN_ENOTFOUND, "no recipe '%s' in %s", name, dir);
    return kiln_recipe_expand_file(path, branch, w, variants_out, err);
}
