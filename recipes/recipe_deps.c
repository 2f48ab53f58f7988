/* recipe_deps.c - dependencies between variants: each name a variant's
 * 'depends' rendered is looked up among this recipe's variants or, for
 * "recipe: other", among the variants of <dir of this file>/other.yaml for
 * the branch the dependency names (each other recipe is loaded and expanded
 * once, names only); then the dependencies inside this recipe are checked
 * for a cycle. */
#include "recipes/recipe_deps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void dirname_of(const char *path, char *out, size_t outlen)
{
    const char *sl = path ? strrchr(path, '/') : NULL;
    if (!sl)
        snprintf(out, outlen, ".");
    else if (sl == path)
        snprintf(out, outlen, "/");
    else
        snprintf(out, outlen, "%.*s", (int)(sl - path), path);
}

struct other {
    const char *recipe, *branch;
    struct loaded L;
    struct exp E;
    int failed;
    char why[600];
};

static int load_other(struct exp *E, const struct dep *dp, struct other *o)
{
    char dir[4096], path[4200];
    dirname_of(E->L->file, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/%s.yaml", dir, dp->recipe);
    o->recipe = dp->recipe;
    o->branch = dp->branch;
    int rc = recipe_load_file(&o->L, path);
    if (rc == 0) {
        rc = exp_init(&o->E, &o->L, dp->branch, MODE_NAMES);
        if (rc == 0) rc = expand_names(&o->E);
        if (rc && o->E.d && o->E.d->n == 0) dg_add(&o->L.d, rc, 1, 1, "%s", kiln_strerror(rc));
    }
    if (rc) {
        o->failed = 1;
        const struct diag *g = o->L.d.n ? &o->L.d.v[0] : NULL;
        snprintf(o->why, sizeof(o->why), "%.200s:%d:%d: %.300s", path, g ? g->line : 1,
                 g ? g->col : 1, g ? g->msg : kiln_strerror(rc));
    }
    return 0;
}

int resolve_deps(struct exp *E)
{
    struct other *oth = NULL;
    size_t noth = 0;
    int rc = 0;
    size_t nv = E->nvr;
    size_t *cnt = NULL, *off = NULL, *adj = NULL;
    const struct dep **adjdep = NULL;
    for (size_t i = 0; i < E->npd && !expand_enough(E); i++) {
        const struct pend *p = &E->pd[i];
        const struct dep *dp = p->dep;
        long hit = -1;
        const char *where = "this recipe";
        char wbuf[200];
        if (!dp->recipe) {
            hit = ns_find(&E->names, p->name);
        } else {
            struct other *o = NULL;
            for (size_t k = 0; k < noth; k++)
                if (!strcmp(oth[k].recipe, dp->recipe) &&
                    ((!oth[k].branch && !dp->branch) ||
                     (oth[k].branch && dp->branch && !strcmp(oth[k].branch, dp->branch))))
                    o = &oth[k];
            if (!o) {
                struct other *no = realloc(oth, (noth + 1) * sizeof(*no));
                if (!no) {
                    rc = KILN_ENOMEM;
                    break;
                }
                oth = no;
                o = &oth[noth++];
                memset(o, 0, sizeof(*o));
                load_other(E, dp, o);
            }
            if (o->failed) {
                rc = dg_add(E->d, KILN_EINVAL, dp->line, dp->col,
                            "dependency on recipe '%s' cannot be resolved: %s", dp->recipe, o->why);
                continue;
            }
            hit = ns_find(&o->E.names, p->name);
            snprintf(wbuf, sizeof(wbuf), "recipe '%s' (branch %s)", dp->recipe, o->E.branch);
            where = wbuf;
        }
        if (hit < 0) {
            if (!dp->optional)
                rc = dg_once(E->d, KILN_EINVAL, dp->line, dp->col,
                             "dependency '%s' of variant %s matches no variant of %s; mark it "
                             "'optional: true' if it applies only where one exists",
                             p->name, E->names.names[p->vi], where);
            continue;
        }
        if (E->vr[p->vi].depends) {
            json_t *s = json_string_nocheck(p->name);
            if (!s || json_array_append_new(E->vr[p->vi].depends, s)) {
                rc = KILN_ENOMEM;
                break;
            }
        }
    }
    for (size_t k = 0; k < noth; k++) {
        exp_free(&oth[k].E);
        recipe_loaded_free(&oth[k].L);
    }
    free(oth);
    if (rc == KILN_ENOMEM || expand_enough(E)) return rc ? rc : E->d->v[0].code;
    /* Cycles among this recipe's own variants (iterative DFS over a
     * compressed adjacency list). */
    cnt = calloc(nv + 1, sizeof(*cnt));
    off = calloc(nv + 1, sizeof(*off));
    size_t ne = 0;
    if (!cnt || !off) {
        rc = KILN_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < E->npd; i++)
        if (!E->pd[i].dep->recipe && ns_find(&E->names, E->pd[i].name) >= 0) {
            cnt[E->pd[i].vi]++;
            ne++;
        }
    if (ne == 0) goto out;
    for (size_t i = 0; i < nv; i++)
        off[i + 1] = off[i] + cnt[i];
    adj = calloc(ne, sizeof(*adj));
    adjdep = calloc(ne, sizeof(*adjdep));
    unsigned char *color = calloc(nv, 1);
    size_t *stk = calloc(nv, sizeof(*stk)), *it = calloc(nv, sizeof(*it));
    if (!adj || !adjdep || !color || !stk || !it) {
        free(color);
        free(stk);
        free(it);
        rc = KILN_ENOMEM;
        goto out;
    }
    memset(cnt, 0, nv * sizeof(*cnt));
    for (size_t i = 0; i < E->npd; i++) {
        long t;
        if (!E->pd[i].dep->recipe && (t = ns_find(&E->names, E->pd[i].name)) >= 0) {
            size_t v = E->pd[i].vi;
            adj[off[v] + cnt[v]] = (size_t)t;
            adjdep[off[v] + cnt[v]] = E->pd[i].dep;
            cnt[v]++;
        }
    }
    int found = 0;
    for (size_t s0 = 0; s0 < nv && !found; s0++) {
        if (color[s0]) continue;
        size_t sp = 0;
        stk[sp++] = s0;
        it[s0] = off[s0];
        color[s0] = 1;
        while (sp && !found) {
            size_t u = stk[sp - 1];
            if (it[u] < off[u + 1]) {
                size_t e = it[u]++;
                size_t v = adj[e];
                if (color[v] == 1) {
                    /* Path from v to u on the stack, then back to v. */
                    struct kiln_buf b = {0};
                    size_t k = sp;
                    while (k > 0 && stk[k - 1] != v)
                        k--;
                    for (size_t q = k - 1; q < sp; q++) {
                        kiln_buf_printf(&b, "%s -> ", E->names.names[stk[q]]);
                        if (b.len > 400) {
                            kiln_buf_puts(&b, "... -> ");
                            break;
                        }
                    }
                    kiln_buf_puts(&b, E->names.names[v]);
                    rc = dg_add(E->d, KILN_EINVAL, adjdep[e]->line, adjdep[e]->col,
                                "dependency cycle: %s", b.data ? b.data : "?");
                    kiln_buf_free(&b);
                    found = 1;
                } else if (color[v] == 0) {
                    color[v] = 1;
                    it[v] = off[v];
                    stk[sp++] = v;
                }
            } else {
                color[u] = 2;
                sp--;
            }
        }
    }
    free(color);
    free(stk);
    free(it);
out:
    free(cnt);
    free(off);
    free(adj);
    free(adjdep);
    return rc;
}
