/* recipe_expand.c - the recipe expander: a compiled recipe -> its
 * variants (recipe_expand.h). Templates are rendered per variant into an
 * arena that is reset for the next one; what is the same in every variant
 * (literal templates, axis values, recipe and branch) is one shared JSON
 * value, which keeps a 10,000-variant expansion fast and small
 * (bench/recipe_expand.c). */
#include "recipes/recipe_expand.h"

#include "recipes/recipe_cond.h"

#include "common/isa.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- variant names ---------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void ns_free(struct nameset *ns)
{
    free(ns->names);
    free(ns->slots);
    memset(ns, 0, sizeof(*ns));
}

long ns_find(const struct nameset *ns, const char *s)
{
    if (!ns->nslots) return -1;
    size_t m = ns->nslots - 1;
    for (size_t i = hash_str(s) & m;; i = (i + 1) & m) {
        uint32_t v = ns->slots[i];
        if (!v) return -1;
        if (strcmp(ns->names[v - 1], s) == 0) return (long)v - 1;
    }
}

/* Adds s (not copied); returns its index or -1 when present (*dup = index). */
static int ns_add(struct nameset *ns, const char *s, long *dup)
{
    if ((ns->n + 1) * 2 > ns->nslots) {
        size_t nn = ns->nslots ? ns->nslots * 2 : 64;
        uint32_t *sl = calloc(nn, sizeof(*sl));
        if (!sl) return KILN_ENOMEM;
        for (size_t i = 0; i < ns->n; i++) {
            size_t j = hash_str(ns->names[i]) & (nn - 1);
            while (sl[j])
                j = (j + 1) & (nn - 1);
            sl[j] = (uint32_t)i + 1;
        }
        free(ns->slots);
        ns->slots = sl;
        ns->nslots = nn;
    }
    if (ns->n == ns->cap) {
        size_t nc = ns->cap ? ns->cap * 2 : 64;
        const char **nv = realloc(ns->names, nc * sizeof(*nv));
        if (!nv) return KILN_ENOMEM;
        ns->names = nv;
        ns->cap = nc;
    }
    size_t m = ns->nslots - 1;
    size_t i = hash_str(s) & m;
    while (ns->slots[i]) {
        uint32_t v = ns->slots[i];
        if (strcmp(ns->names[v - 1], s) == 0) {
            *dup = (long)v - 1;
            return 1;
        }
        i = (i + 1) & m;
    }
    ns->names[ns->n] = s;
    ns->slots[i] = (uint32_t)ns->n + 1;
    ns->n++;
    return 0;
}

/* ---------- rendering ---------- */

static const char *combo(struct exp *E);

static int render(struct exp *E, const struct tmpl *t, struct kiln_buf *out)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct tpart *p = &t->p[i];
        if (p->var == -1) {
            if (kiln_buf_append(out, p->s, p->len)) goto big;
            continue;
        }
        if (p->var < 0) return KILN_EINVAL; /* reported at compile time */
        const char *v = E->val[p->var];
        if (!v) {
            return dg_once(E->d, KILN_EINVAL, p->line, p->col,
                           "%s uses {%s}, which has no value for the variant %s (set it in "
                           "attrs, or only use it where a rule sets it)",
                           t->what, p->s, combo(E));
        }
        if (kiln_buf_puts(out, v)) goto big;
    }
    return 0;
big:
    return dg_once(E->d, KILN_ELIMIT, t->node->line, t->node->col,
                   "%s renders to more than %u bytes for the variant %s", t->what,
                   KILN_RECIPE_MAX_STR, combo(E));
}

/* Render into a string that lives until the next variant. */
static int render_str(struct exp *E, const struct tmpl *t, const char **out)
{
    if (tmpl_is_literal(t)) {
        *out = tmpl_literal(t);
        return 0;
    }
    E->buf.len = 0;
    int rc = render(E, t, &E->buf);
    if (rc) return rc;
    char *s = ar_strndup(&E->va, E->buf.data ? E->buf.data : "", E->buf.len);
    if (!s) return KILN_ENOMEM;
    *out = s;
    return 0;
}

static json_t *tmpl_jstr(const struct tmpl *t)
{
    struct tmpl *m = (struct tmpl *)t; /* the cache is not part of the template's value */
    if (!m->jstr) m->jstr = json_stringn_nocheck(tmpl_literal(t), t->n ? t->p[0].len : 0);
    return m->jstr;
}

static json_t *shared(json_t *j)
{
    return j ? json_incref(j) : NULL;
}

static json_t *render_json_str(struct exp *E, const struct tmpl *t, int *rc)
{
    if (!t) return json_string("");
    if (tmpl_is_literal(t)) return shared(tmpl_jstr(t));
    if (t->n == 1 && t->p[0].var >= 0 && E->valj[t->p[0].var]) return shared(E->valj[t->p[0].var]);
    E->buf.len = 0;
    *rc = render(E, t, &E->buf);
    if (*rc) return NULL;
    return json_stringn_nocheck(E->buf.data ? E->buf.data : "", E->buf.len);
}

static int render_ll(struct exp *E, const struct tmpl *t, long long *out, const char *what)
{
    const char *s;
    int rc = render_str(E, t, &s);
    if (rc) return rc;
    if (!parse_ll(s, out))
        return dg_once(E->d, KILN_EINVAL, t->node->line, t->node->col,
                       "%s must be a whole number, but is '%s' for the variant %s", what, s,
                       combo(E));
    return 0;
}

static int apply_kvs(struct exp *E, const struct kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *s;
        int rc = render_str(E, kv[i].t, &s);
        if (rc) return rc;
        E->val[kv[i].id] = s;
        E->valj[kv[i].id] = tmpl_is_literal(kv[i].t) ? tmpl_jstr(kv[i].t) : NULL;
    }
    return 0;
}

/* A whole number from a template, as shared JSON when the template is
 * literal. */
static json_t *render_jint(struct exp *E, const struct tmpl *t, const char *what, int *rc)
{
    struct tmpl *m = (struct tmpl *)t;
    if (tmpl_is_literal(t) && m->jint) return json_incref(m->jint);
    long long x;
    if ((*rc = render_ll(E, t, &x, what))) return NULL;
    json_t *j = json_integer(x);
    if (j && tmpl_is_literal(t)) m->jint = json_incref(j);
    return j;
}

static json_t *render_gnode(struct exp *E, const struct gnode *g, int *rc)
{
    if (g->kind == G_SCALAR) {
        if (g->jtype == 'n') return json_null();
        if (g->jtype == 'b') return json_boolean(strcmp(tmpl_literal(g->t), "true") == 0);
        if (g->jtype == 'i') {
            long long x = 0;
            parse_ll(tmpl_literal(g->t), &x);
            return json_integer(x);
        }
        return render_json_str(E, g->t, rc);
    }
    json_t *o = g->kind == G_MAP ? json_object() : json_array();
    if (!o) return NULL;
    for (size_t i = 0; i < g->n; i++) {
        json_t *k = render_gnode(E, g->kids[i], rc);
        if (!k) {
            json_decref(o);
            return NULL;
        }
        if (g->kind == G_MAP)
            json_object_set_new_nocheck(o, g->keys[i], k);
        else
            json_array_append_new(o, k);
    }
    return o;
}

/* Set key k of object o to v (a new reference); a NULL v (a render that
 * failed, or out of memory) jumps to the function's fail label. */
#define JSET(o, k, v)                                                                              \
    do {                                                                                           \
        json_t *v_ = (v);                                                                          \
        if (!v_ || json_object_set_new_nocheck((o), (k), v_)) goto fail;                           \
    } while (0)

/* A list of rendered templates as a JSON array. */
static json_t *render_list(struct exp *E, struct tmpl *const *t, size_t n, int *rc)
{
    json_t *a = json_array();
    if (!a) return NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *s = render_json_str(E, t[i], rc);
        if (!s || json_array_append_new(a, s)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* platform is an attribute; without one, the ISA level implies it. */
static json_t *variant_platform(struct exp *E)
{
    const char *plat = E->sym_platform >= 0 ? E->val[E->sym_platform] : NULL;
    if (!plat && E->sym_isa >= 0 && E->val[E->sym_isa])
        plat = kiln_isa_level_platform(E->val[E->sym_isa]);
    if (!plat) plat = "x86_64-linux";
    if (E->sym_platform >= 0 && E->valj[E->sym_platform] && plat == E->val[E->sym_platform])
        return json_incref(E->valj[E->sym_platform]);
    return json_string_nocheck(plat);
}

/* "attrs", "env" and "resources" of the current variant into o. Returns 0
 * or a problem's code. */
static int add_attrs_env_resources(struct exp *E, json_t *o)
{
    const struct recipe *r = E->r;
    int rc = 0;
    json_t *attrs = json_object();
    JSET(o, "attrs", attrs);
    for (size_t i = 3; i < r->syms.n; i++)
        if (E->val[i])
            JSET(attrs, r->syms.name[i],
                 E->valj[i] ? json_incref(E->valj[i]) : json_string_nocheck(E->val[i]));
    json_t *env = json_object();
    JSET(o, "env", env);
    for (size_t i = 0; i < r->envkeys.n; i++)
        if (E->env[i]) JSET(env, r->envkeys.name[i], render_json_str(E, E->env[i], &rc));
    json_t *res = json_object();
    JSET(o, "resources", res);
    for (int i = 0; i < RES_N; i++) {
        if (E->res[i])
            JSET(res, res_keys[i], render_jint(E, E->res[i], res_keys[i], &rc));
        else if (res_default[i] >= 0)
            JSET(res, res_keys[i], json_integer(res_default[i]));
    }
    return 0;
fail:
    return rc ? rc : KILN_ENOMEM;
}

/* selftest.driver_min: null when it renders empty, else a whole number. */
static json_t *selftest_driver_min(struct exp *E, const struct tmpl *t, int *rc)
{
    const char *v;
    long long x;
    if (!t) return json_null();
    if ((*rc = render_str(E, t, &v))) return NULL;
    if (*v == '\0') return json_null();
    if (parse_ll(v, &x)) return json_integer(x);
    *rc = dg_once(E->d, KILN_EINVAL, t->node->line, t->node->col,
                  "selftest.driver_min must be a whole number, but is '%s' for the variant %s", v,
                  combo(E));
    return NULL;
}

static json_t *selftest_checks(struct exp *E, const struct selftest *st, int *rcp)
{
    int rc = 0;
    json_t *checks = json_array();
    if (!checks) return NULL;
    for (size_t i = 0; i < st->nchecks; i++) {
        const struct check *ck = &st->checks[i];
        json_t *c = json_object();
        if (!c || json_array_append_new(checks, c)) goto fail;
        char defname[32];
        snprintf(defname, sizeof(defname), "check%zu", i + 1);
        JSET(c, "name", ck->name ? render_json_str(E, ck->name, &rc) : json_string(defname));
        JSET(c, "command", render_json_str(E, ck->command, &rc));
        JSET(c, "timeout_s",
             ck->timeout ? render_jint(E, ck->timeout, "timeout_s", &rc) : json_integer(120));
    }
    return checks;
fail:
    json_decref(checks);
    *rcp = rc;
    return NULL;
}

/* The "selftest" object of the current variant (the recipe has one and it
 * is on for this variant). */
static json_t *build_selftest(struct exp *E, int *rcp)
{
    const struct selftest *st = &E->r->st;
    int rc = 0;
    json_t *t = json_object();
    if (!t) return NULL;
    const char *v = NULL;
    if (st->sm && (rc = render_str(E, st->sm, &v))) goto fail;
    JSET(t, "sm", v && *v ? render_json_str(E, st->sm, &rc) : json_null());
    int compat = 0;
    if (st->sm_compat) {
        if ((rc = render_str(E, st->sm_compat, &v))) goto fail;
        compat = strcmp(v, "true") == 0 || strcmp(v, "yes") == 0;
    }
    JSET(t, "sm_compat", json_boolean(compat));
    v = NULL;
    if (st->isa && (rc = render_str(E, st->isa, &v))) goto fail;
    JSET(t, "isa", v && *v ? render_json_str(E, st->isa, &rc) : json_null());
    JSET(t, "driver_min", selftest_driver_min(E, st->driver_min, &rc));
    JSET(t, "checks", selftest_checks(E, st, &rc));
    JSET(t, "expect_symbols", render_list(E, st->syms, st->nsyms, &rc));
    JSET(t, "artifact_globs", render_list(E, st->globs, st->nglobs, &rc));
    return t;
fail:
    json_decref(t);
    *rcp = rc;
    return NULL;
}

/* Build the Variant JSON of the current variant (name already in val). */
static json_t *build_variant(struct exp *E, int *rcp)
{
    const struct recipe *r = E->r;
    int rc = 0;
    json_t *o = json_object();
    if (!o) return NULL;
    JSET(o, "name", json_string_nocheck(E->val[SYM_NAME]));
    /* The same in every variant: one shared value each. */
    if (!E->jrecipe) E->jrecipe = json_string_nocheck(r->name);
    if (!E->jbranch) E->jbranch = json_string_nocheck(E->branch);
    JSET(o, "recipe", shared(E->jrecipe));
    JSET(o, "branch", shared(E->jbranch));
    JSET(o, "platform", variant_platform(E));
    if ((rc = add_attrs_env_resources(E, o))) goto fail;
    JSET(o, "command", r->t_cmd ? render_json_str(E, r->t_cmd, &rc) : json_string(""));
    JSET(o, "description", render_json_str(E, r->t_desc, &rc));
    JSET(o, "header", render_json_str(E, r->t_header, &rc));
    JSET(o, "depends", json_array());
    JSET(o, "inputs", render_list(E, r->inputs, r->ninputs, &rc));
    if (E->st_on && r->st.present)
        JSET(o, "selftest", build_selftest(E, &rc));
    else
        JSET(o, "selftest", json_null());
    if (E->pub_on && r->publish)
        JSET(o, "publish", render_gnode(E, r->publish, &rc));
    else
        JSET(o, "publish", json_null());
    return o;
fail:
    json_decref(o);
    *rcp = rc ? rc : KILN_ENOMEM;
    return NULL;
}

static int name_ok(const char *s)
{
    if (!*s || strlen(s) > 200) return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '-' || *s == '_' || *s == '.' || *s == '+'))
            return 0;
    return 1;
}

/* "sm=90 isa=avx2" for messages; computed only when one is needed. */
static const char *combo_of(struct exp *E, const char *const *vals, char *out, size_t outlen)
{
    size_t off = 0;
    out[0] = '\0';
    for (size_t a = 0; vals && a < E->r->naxes && off < outlen - 1; a++) {
        int w =
            snprintf(out + off, outlen - off, "%s%s=%s", a ? " " : "", E->r->axes[a].name, vals[a]);
        if (w < 0) break;
        off += (size_t)w;
    }
    if (E->r->naxes == 0) snprintf(out, outlen, "(no axes)");
    return out;
}

static const char *combo(struct exp *E)
{
    return combo_of(E, E->cur_vals, E->combo, sizeof(E->combo));
}

/* The attributes, env and resources that hold before the rules: axis
 * values' attributes, the include entry's, recipe attrs (defaults), recipe
 * env, then the branch's attrs and env. */
static int apply_defaults(struct exp *E, const struct axval **axv, const struct include *inc)
{
    const struct recipe *r = E->r;
    int rc;
    for (size_t a = 0; a < r->naxes; a++) {
        if (!axv[a]) continue;
        if (!axv[a]->jval) {
            struct axval *m = (struct axval *)axv[a];
            m->jval = json_string_nocheck(m->val);
        }
        E->valj[r->axes[a].sym] = axv[a]->jval;
    }
    for (size_t a = 0; a < r->naxes; a++)
        if (axv[a] && (rc = apply_kvs(E, axv[a]->attrs, axv[a]->nattrs))) return rc;
    if (inc && (rc = apply_kvs(E, inc->attrs, inc->nattrs))) return rc;
    /* Recipe-level attrs are defaults: axis values' attributes win. */
    for (size_t i = 0; i < r->nattrs; i++) {
        if (E->val[r->attrs[i].id]) continue;
        if ((rc = apply_kvs(E, &r->attrs[i], 1))) return rc;
    }
    memset(E->env, 0, r->envkeys.n * sizeof(*E->env));
    for (size_t i = 0; i < r->nenv; i++)
        E->env[r->env[i].id] = r->env[i].t;
    if (E->br) {
        if ((rc = apply_kvs(E, E->br->attrs, E->br->nattrs))) return rc;
        for (size_t i = 0; i < E->br->nenv; i++)
            E->env[E->br->env[i].id] = E->br->env[i].t;
    }
    for (int i = 0; i < RES_N; i++)
        E->res[i] = r->res[i];
    E->st_on = r->st.present;
    E->pub_on = r->publish != NULL;
    return 0;
}

/* One rule whose 'when' holds: later rules overwrite earlier ones. */
static int apply_rule(struct exp *E, const struct rule *ru)
{
    int rc;
    if ((rc = apply_kvs(E, ru->attrs, ru->nattrs))) return rc;
    for (size_t i = 0; i < ru->unset.n; i++) {
        int id = ru->unset.c[i].sym;
        if (id > SYM_BRANCH) {
            E->val[id] = NULL;
            E->valj[id] = NULL;
        }
    }
    for (size_t i = 0; i < ru->nenv; i++)
        E->env[ru->env[i].id] = ru->env[i].t;
    for (int i = 0; i < RES_N; i++)
        if (ru->res[i]) E->res[i] = ru->res[i];
    if (ru->selftest >= 0) E->st_on = ru->selftest;
    if (ru->publish >= 0) E->pub_on = ru->publish;
    return 0;
}

/* Name the current variant and add it to the expansion (with its Variant
 * JSON when the where filter keeps it). */
static int add_variant(struct exp *E, const char **vals)
{
    const struct recipe *r = E->r;
    int rc;
    if (E->nvr >= KILN_RECIPE_MAX_VARIANTS)
        return dg_add(E->d, KILN_ELIMIT, r->axes_line ? r->axes_line : 1,
                      r->axes_col ? r->axes_col : 1,
                      "the recipe produces more than %lu variants; kiln refuses that many "
                      "(narrow an axis or exclude combinations)",
                      (unsigned long)KILN_RECIPE_MAX_VARIANTS);
    const char *name;
    if ((rc = render_str(E, r->t_name, &name))) return rc;
    if (!name_ok(name))
        return dg_once(E->d, KILN_EINVAL, r->t_name->node->line, r->t_name->node->col,
                       "variant name '%.200s' (for %s) must be letters, digits, '.', '_', '+' "
                       "or '-' and at most 200 characters",
                       name, combo(E));
    char *kname = ar_strndup(&E->keep, name, strlen(name));
    const char **kvals = ar_alloc(&E->keep, (r->naxes ? r->naxes : 1) * sizeof(*kvals));
    if (!kname || !kvals) return KILN_ENOMEM;
    if (r->naxes) memcpy(kvals, vals, r->naxes * sizeof(*kvals));
    long dup = -1;
    rc = ns_add(&E->names, kname, &dup);
    if (rc < 0) return rc;
    char other[512];
    if (rc == 1)
        return dg_once(E->d, KILN_EINVAL, r->t_name->node->line, r->t_name->node->col,
                       "two variants are named '%s' (%s and %s); put the axis that tells them "
                       "apart into the name template or exclude one",
                       kname, combo_of(E, E->vr[dup].vals, other, sizeof(other)), combo(E));
    E->val[SYM_NAME] = kname;
    if (E->nvr == E->capvr) {
        size_t nc = E->capvr ? E->capvr * 2 : 256;
        struct vrec *nv = realloc(E->vr, nc * sizeof(*nv));
        if (!nv) return KILN_ENOMEM;
        E->vr = nv;
        E->capvr = nc;
    }
    struct vrec *vr = &E->vr[E->nvr++];
    vr->vals = kvals;
    vr->obj = NULL;
    vr->depends = NULL;
    if (condset_holds(E->val, &E->where) && E->mode == MODE_JSON) {
        vr->obj = build_variant(E, &rc);
        if (!vr->obj) return rc;
        vr->depends = json_object_get(vr->obj, "depends");
    }
    return 0;
}

/* The dependency names of the variant just added, for resolve_deps(). */
static int add_pending_deps(struct exp *E)
{
    const struct recipe *r = E->r;
    int rc;
    for (size_t k = 0; k < r->ndeps; k++) {
        const struct dep *dp = &r->deps[k];
        if (!condset_holds(E->val, &dp->when)) continue;
        const char *dn;
        if ((rc = render_str(E, dp->name, &dn))) return rc;
        char *kd = ar_strndup(&E->keep, dn, strlen(dn));
        if (!kd) return KILN_ENOMEM;
        if (E->npd == E->cappd) {
            size_t nc = E->cappd ? E->cappd * 2 : 256;
            struct pend *np = realloc(E->pd, nc * sizeof(*np));
            if (!np) return KILN_ENOMEM;
            E->pd = np;
            E->cappd = nc;
        }
        E->pd[E->npd].vi = E->nvr - 1;
        E->pd[E->npd].dep = dp;
        E->pd[E->npd].name = kd;
        E->npd++;
    }
    return 0;
}

/* One combination: vals per axis, axv per axis (attributes; may be NULL),
 * inc (include entry or NULL). */
static int one_variant(struct exp *E, const char **vals, const struct axval **axv,
                       const struct include *inc)
{
    const struct recipe *r = E->r;
    ar_reset(&E->va);
    memset(E->val, 0, r->syms.n * sizeof(*E->val));
    memset(E->valj, 0, r->syms.n * sizeof(*E->valj));
    E->val[SYM_RECIPE] = r->name;
    E->val[SYM_BRANCH] = E->branch;
    E->cur_vals = vals;
    for (size_t a = 0; a < r->naxes; a++)
        E->val[r->axes[a].sym] = vals[a];
    /* Excludes on axes alone come first, so attributes of combinations
     * that do not exist are never rendered (and cannot fail). */
    for (size_t k = 0; k < r->nexc; k++)
        if (r->exc[k].axes_only && condset_holds(E->val, &r->exc[k])) return 0;
    int rc;
    if ((rc = apply_defaults(E, axv, inc))) return rc;
    for (size_t k = 0; k < r->nrules; k++)
        if (condset_holds(E->val, &r->rules[k].when) && (rc = apply_rule(E, &r->rules[k])))
            return rc;
    for (size_t k = 0; k < r->nexc; k++)
        if (!r->exc[k].axes_only && condset_holds(E->val, &r->exc[k])) return 0;
    if ((rc = add_variant(E, vals))) return rc;
    return E->mode == MODE_JSON ? add_pending_deps(E) : 0;
}

int expand_enough(struct exp *E)
{
    return E->d->oom || (E->d->n && E->stop_first) || E->d->n >= DG_MAX;
}

int expand_names(struct exp *E)
{
    const struct recipe *r = E->r;
    unsigned long long total = 1;
    for (size_t a = 0; a < r->naxes; a++) {
        total *= r->axes[a].n;
        if (total > KILN_RECIPE_MAX_COMBOS) {
            char sizes[256];
            size_t off = 0;
            sizes[0] = '\0';
            for (size_t b = 0; b < r->naxes && off < sizeof(sizes) - 20; b++)
                off += (size_t)snprintf(sizes + off, sizeof(sizes) - off, "%s%zu", b ? " x " : "",
                                        r->axes[b].n);
            return dg_add(E->d, KILN_ELIMIT, r->axes_line, r->axes_col,
                          "the matrix has more than %lu combinations (%s); kiln refuses "
                          "matrices that large (split the recipe or narrow an axis)",
                          (unsigned long)KILN_RECIPE_MAX_COMBOS, sizes);
        }
    }
    size_t na = r->naxes;
    size_t *idx = calloc(na + 1, sizeof(*idx));
    const char **vals = calloc(na + 1, sizeof(*vals));
    const struct axval **axv = calloc(na + 1, sizeof(*axv));
    int rc = 0;
    if (!idx || !vals || !axv) {
        rc = KILN_ENOMEM;
        goto out;
    }
    if (total + r->ninc > KILN_RECIPE_MAX_VARIANTS) {
        /* Count what the excludes on axes leave before building anything,
         * so a too-large recipe is refused fast and in little memory. */
        unsigned long long left = r->ninc;
        memset(E->val, 0, r->syms.n * sizeof(*E->val));
        for (unsigned long long c = 0; c < total; c++) {
            for (size_t a = 0; a < na; a++)
                E->val[r->axes[a].sym] = r->axes[a].v[idx[a]].val;
            int out = 0;
            for (size_t k = 0; k < r->nexc && !out; k++)
                out = r->exc[k].axes_only && condset_holds(E->val, &r->exc[k]);
            left += !out;
            for (size_t a = na; a-- > 0;) {
                if (++idx[a] < r->axes[a].n) break;
                idx[a] = 0;
            }
        }
        if (left > KILN_RECIPE_MAX_VARIANTS) {
            rc = dg_add(E->d, KILN_ELIMIT, r->axes_line ? r->axes_line : 1,
                        r->axes_col ? r->axes_col : 1,
                        "the recipe produces %llu variants; kiln refuses more than %lu from one "
                        "recipe (split it, narrow an axis or exclude combinations)",
                        left, (unsigned long)KILN_RECIPE_MAX_VARIANTS);
            goto out;
        }
        memset(idx, 0, (na + 1) * sizeof(*idx));
    }
    for (unsigned long long c = 0; c < total; c++) {
        for (size_t a = 0; a < na; a++) {
            axv[a] = &r->axes[a].v[idx[a]];
            vals[a] = axv[a]->val;
        }
        rc = one_variant(E, vals, axv, NULL);
        if (rc == KILN_ENOMEM || rc == KILN_ELIMIT || expand_enough(E)) break;
        rc = 0;
        for (size_t a = na; a-- > 0;) {
            if (++idx[a] < r->axes[a].n) break;
            idx[a] = 0;
        }
    }
    for (size_t i = 0; i < r->ninc && !expand_enough(E) && rc != KILN_ENOMEM && rc != KILN_ELIMIT;
         i++) {
        rc = one_variant(E, r->inc[i].vals, r->inc[i].axv, &r->inc[i]);
        if (rc != KILN_ENOMEM && rc != KILN_ELIMIT) rc = 0;
    }
out:
    free(idx);
    free(vals);
    free(axv);
    if (rc == 0 && E->d->n) rc = E->d->v[0].code;
    return rc;
}

/* ---------- an expansion ---------- */

int exp_init(struct exp *E, struct loaded *L, const char *branch, int mode)
{
    memset(E, 0, sizeof(*E));
    E->L = L;
    E->r = &L->r;
    E->d = &L->d;
    E->mode = mode;
    E->stop_first = 1;
    E->buf.max = KILN_RECIPE_MAX_STR;
    const struct recipe *r = E->r;
    if (!branch || !*branch) branch = r->default_branch;
    if (!branch && r->nbr) branch = r->br[0].name;
    if (!branch) branch = "main";
    E->branch = branch;
    if (r->nbr) {
        for (size_t i = 0; i < r->nbr; i++)
            if (strcmp(r->br[i].name, branch) == 0) E->br = &r->br[i];
        if (!E->br) {
            struct kiln_buf b = {0};
            for (size_t i = 0; i < r->nbr; i++)
                kiln_buf_printf(&b, "%s%s", i ? ", " : "", r->br[i].name);
            int rc = dg_add(E->d, KILN_ENOTFOUND, r->name_line, r->name_col,
                            "recipe %s has no branch '%s' (it has %s)", r->name, branch,
                            b.data ? b.data : "none");
            kiln_buf_free(&b);
            return rc;
        }
    }
    E->sym_platform = sym_find(&r->syms, "platform", 8);
    E->sym_isa = sym_find(&r->syms, "isa", 3);
    E->val = calloc(r->syms.n + 1, sizeof(*E->val));
    E->valj = calloc(r->syms.n + 1, sizeof(*E->valj));
    if (!E->valj) return KILN_ENOMEM;
    E->env = calloc(r->envkeys.n + 1, sizeof(*E->env));
    if (!E->val || !E->env) return KILN_ENOMEM;
    return 0;
}

void exp_free(struct exp *E)
{
    for (size_t i = 0; i < E->nvr; i++)
        json_decref(E->vr[i].obj);
    free(E->vr);
    free(E->pd);
    free(E->val);
    free(E->valj);
    json_decref(E->jrecipe);
    json_decref(E->jbranch);
    free(E->env);
    ns_free(&E->names);
    ar_free(&E->va);
    ar_free(&E->keep);
    kiln_buf_free(&E->buf);
    memset(E, 0, sizeof(*E));
}

int parse_where(struct exp *E, const char *where, struct kiln_error *err)
{
    if (!where || !*where) return 0;
    size_t cap = 1;
    for (const char *p = where; *p; p++)
        if (*p == ',') cap++;
    E->where.c = ar_alloc(&E->keep, cap * sizeof(*E->where.c));
    if (!E->where.c) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    char *w = ar_strndup(&E->keep, where, strlen(where));
    if (!w) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    char *save = NULL;
    for (char *tok = strtok_r(w, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (!*tok) continue;
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok)
            return kiln_fail(err, KILN_EINVAL,
                             "--where: '%s' is not key=value (e.g. sm=90,isa=avx512)", tok);
        *eq = '\0';
        int id = sym_find(&E->r->syms, tok, strlen(tok));
        if (id < 0) {
            const char *m = did_you_mean(tok, E->r->syms.name, E->r->syms.n);
            return kiln_fail(err, KILN_EINVAL,
                             "--where: '%s' is not an axis or attribute of recipe %s%s%s%s", tok,
                             E->r->name, m ? "; did you mean '" : "", m ? m : "", m ? "'?" : "");
        }
        struct cond *c = &E->where.c[E->where.n++];
        c->sym = id;
        c->symname = E->r->syms.name[id];
        c->op = OP_IN;
        c->ctx = "--where";
        size_t nalt = 1;
        for (char *p = eq + 1; *p; p++)
            if (*p == '|') nalt++;
        c->vals = ar_alloc(&E->keep, nalt * sizeof(*c->vals));
        if (!c->vals) return kiln_fail(err, KILN_ENOMEM, "out of memory");
        char *s2 = NULL;
        for (char *v = strtok_r(eq + 1, "|", &s2); v; v = strtok_r(NULL, "|", &s2))
            c->vals[c->nvals++] = v;
    }
    return 0;
}
