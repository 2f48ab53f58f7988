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

/* Other recipes that dependencies name, each loaded and expanded (names
 * only) once per (recipe, branch). Pointers, so that an expansion, which
 * points into its own struct other, never moves. */
struct others {
    struct other **v;
    size_t n;
};

static struct other *other_for(struct exp *E, struct others *os, const struct dep *dp)
{
    for (size_t k = 0; k < os->n; k++) {
        struct other *o = os->v[k];
        if (!strcmp(o->recipe, dp->recipe) &&
            ((!o->branch && !dp->branch) ||
             (o->branch && dp->branch && !strcmp(o->branch, dp->branch))))
            return o;
    }
    struct other **nv = realloc(os->v, (os->n + 1) * sizeof(*nv));
    if (!nv) return NULL;
    os->v = nv;
    struct other *o = calloc(1, sizeof(*o));
    if (!o) return NULL;
    os->v[os->n++] = o;
    load_other(E, dp, o);
    return o;
}

static void others_free(struct others *os)
{
    for (size_t k = 0; k < os->n; k++) {
        exp_free(&os->v[k]->E);
        recipe_loaded_free(&os->v[k]->L);
        free(os->v[k]);
    }
    free(os->v);
}

/* Find every pending dependency name among the variants it names; append
 * it to the depending variant's "depends", or report that nothing matches
 * (unless optional). */
static int match_pending(struct exp *E)
{
    struct others os = {0};
    int rc = 0;
    for (size_t i = 0; i < E->npd && !expand_enough(E); i++) {
        const struct pend *p = &E->pd[i];
        const struct dep *dp = p->dep;
        long hit = -1;
        const char *where = "this recipe";
        char wbuf[200];
        if (!dp->recipe) {
            hit = ns_find(&E->names, p->name);
        } else {
            struct other *o = other_for(E, &os, dp);
            if (!o) {
                rc = KILN_ENOMEM;
                break;
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
        if (!E->vr[p->vi].depends) continue; /* filtered out by where */
        json_t *s = json_string_nocheck(p->name);
        if (!s || json_array_append_new(E->vr[p->vi].depends, s)) {
            rc = KILN_ENOMEM;
            break;
        }
    }
    others_free(&os);
    return rc;
}

/* The dependencies among this recipe's own variants as a compressed
 * adjacency list: the edges of variant v are adj[off[v] .. off[v+1]), each
 * with the dependency entry that made it (for the error's line:col). */
struct graph {
    size_t nv, ne;
    size_t *off, *adj;
    const struct dep **dep;
};

static int graph_build(struct exp *E, struct graph *g)
{
    memset(g, 0, sizeof(*g));
    g->nv = E->nvr;
    size_t *cnt = calloc(g->nv + 1, sizeof(*cnt));
    g->off = calloc(g->nv + 1, sizeof(*g->off));
    if (!cnt || !g->off) {
        free(cnt);
        return KILN_ENOMEM;
    }
    for (size_t i = 0; i < E->npd; i++)
        if (!E->pd[i].dep->recipe && ns_find(&E->names, E->pd[i].name) >= 0) {
            cnt[E->pd[i].vi]++;
            g->ne++;
        }
    for (size_t i = 0; i < g->nv; i++)
        g->off[i + 1] = g->off[i] + cnt[i];
    g->adj = calloc(g->ne ? g->ne : 1, sizeof(*g->adj));
    g->dep = calloc(g->ne ? g->ne : 1, sizeof(*g->dep));
    if (!g->adj || !g->dep) {
        free(cnt);
        return KILN_ENOMEM;
    }
    memset(cnt, 0, g->nv * sizeof(*cnt));
    for (size_t i = 0; i < E->npd; i++) {
        long t;
        if (!E->pd[i].dep->recipe && (t = ns_find(&E->names, E->pd[i].name)) >= 0) {
            size_t v = E->pd[i].vi;
            g->adj[g->off[v] + cnt[v]] = (size_t)t;
            g->dep[g->off[v] + cnt[v]] = E->pd[i].dep;
            cnt[v]++;
        }
    }
    free(cnt);
    return 0;
}

static void graph_free(struct graph *g)
{
    free(g->off);
    free(g->adj);
    free(g->dep);
}

/* The cycle closed by an edge to v: the path from v to the top of the DFS
 * stack, then back to v. */
static int report_cycle(struct exp *E, const size_t *stk, size_t sp, size_t v, const struct dep *dp)
{
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
    int rc =
        dg_add(E->d, KILN_EINVAL, dp->line, dp->col, "dependency cycle: %s", b.data ? b.data : "?");
    kiln_buf_free(&b);
    return rc;
}

/* Iterative DFS from s0 (color: 0 unseen, 1 on the stack, 2 done); reports
 * the first cycle it closes. */
static int dfs_from(struct exp *E, const struct graph *g, size_t s0, unsigned char *color,
                    size_t *stk, size_t *it)
{
    size_t sp = 0;
    stk[sp++] = s0;
    it[s0] = g->off[s0];
    color[s0] = 1;
    while (sp) {
        size_t u = stk[sp - 1];
        if (it[u] >= g->off[u + 1]) {
            color[u] = 2;
            sp--;
            continue;
        }
        size_t e = it[u]++;
        size_t v = g->adj[e];
        if (color[v] == 1) return report_cycle(E, stk, sp, v, g->dep[e]);
        if (color[v] == 0) {
            color[v] = 1;
            it[v] = g->off[v];
            stk[sp++] = v;
        }
    }
    return 0;
}

/* Report the first cycle among this recipe's own variants, if any. */
static int find_cycle(struct exp *E)
{
    struct graph g;
    int rc = graph_build(E, &g);
    if (rc || g.ne == 0) {
        graph_free(&g);
        return rc;
    }
    unsigned char *color = calloc(g.nv, 1);
    size_t *stk = calloc(g.nv, sizeof(*stk)), *it = calloc(g.nv, sizeof(*it));
    if (!color || !stk || !it) rc = KILN_ENOMEM;
    for (size_t s0 = 0; s0 < g.nv && rc == 0; s0++)
        if (!color[s0]) rc = dfs_from(E, &g, s0, color, stk, it);
    free(color);
    free(stk);
    free(it);
    graph_free(&g);
    return rc;
}

int resolve_deps(struct exp *E)
{
    int rc = match_pending(E);
    if (rc == KILN_ENOMEM || expand_enough(E)) return rc ? rc : E->d->v[0].code;
    int crc = find_cycle(E);
    return crc ? crc : rc;
}
