/* recipe_compile.c - the recipe compiler: the marked YAML tree
 * (recipe_yaml.c) -> a checked struct recipe (recipe_compile.h). Each
 * section of the format (docs/recipes.md) has its parser here, and the
 * {variable} templates; conditions are compiled by recipe_cond.c. Names in
 * templates and conditions are resolved to symbols after the whole
 * document is read, because an attribute may be defined below the template
 * that uses it. Every problem is a file:line:col
 * diagnostic; parsing goes on after one, so check can list them all. */
#include "recipes/recipe_compile.h"

#include "recipes/recipe_cond.h"

#include "common/buf.h"
#include "common/fsutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const res_keys[RES_N] = {"cores", "ram_mb", "est_duration_s", "timeout_s"};
/* timeout_s has no default: without it the scheduler's applies. */
const long long res_default[RES_N] = {1, 2048, 600, -1};

/* ---------- symbols ---------- */

int sym_find(const struct symtab *t, const char *s, size_t len)
{
    for (size_t i = 0; i < t->n; i++)
        if (strncmp(t->name[i], s, len) == 0 && t->name[i][len] == '\0') return (int)i;
    return -1;
}

static int sym_intern(struct symtab *t, struct arena *a, const char *s, size_t len)
{
    int i = sym_find(t, s, len);
    if (i >= 0) return i;
    if (t->n >= 4096) return KILN_ELIMIT;
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 32;
        const char **nn = realloc(t->name, nc * sizeof(*nn));
        if (!nn) return KILN_ENOMEM;
        t->name = nn;
        t->cap = nc;
    }
    char *c = ar_strndup(a, s, len);
    if (!c) return KILN_ENOMEM;
    t->name[t->n] = c;
    return (int)t->n++;
}

static int is_ident(const char *s)
{
    if (!s || !(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

/* ---------- node helpers ---------- */

static const char *kind_name(const struct node *n)
{
    if (!n) return "nothing";
    if (n->kind == N_MAP) return "a mapping (key: value lines)";
    if (n->kind == N_SEQ) return "a list";
    if (n->plain && (n->len == 0 || strcmp(n->s, "~") == 0 || strcmp(n->s, "null") == 0))
        return "empty";
    return "a single value";
}

int is_null(const struct node *n)
{
    return !n || (n->kind == N_SCALAR && n->plain &&
                  (n->len == 0 || strcmp(n->s, "~") == 0 || strcmp(n->s, "null") == 0));
}

int want(struct comp *C, const struct node *n, int kind, const char *what)
{
    if (n && n->kind == kind) return 1;
    const char *k = kind == N_MAP ? "a mapping (key: value lines)"
                                  : (kind == N_SEQ ? "a list" : "a single value");
    dg_add(C->d, KILN_EINVAL, n ? n->line : 1, n ? n->col : 1, "'%s' must be %s, not %s", what, k,
           kind_name(n));
    return 0;
}

static void check_keys(struct comp *C, const struct node *map, const char *const *allowed,
                       size_t nallowed, const char *section)
{
    for (size_t i = 0; i < map->n; i++) {
        const struct node *k = map->kids[2 * i];
        if (k->kind != N_SCALAR) {
            dg_add(C->d, KILN_EINVAL, k->line, k->col, "keys in '%s' must be plain words", section);
            continue;
        }
        int ok = 0;
        for (size_t j = 0; j < nallowed; j++)
            if (strcmp(k->s, allowed[j]) == 0) ok = 1;
        for (size_t j = 0; j < i && ok; j++) {
            const struct node *k2 = map->kids[2 * j];
            if (k2->kind == N_SCALAR && strcmp(k2->s, k->s) == 0) {
                dg_add(C->d, KILN_EINVAL, k->line, k->col,
                       "key '%s' appears twice in '%s' (first at line %d)", k->s, section,
                       k2->line);
                break;
            }
        }
        if (ok) continue;
        const char *m = did_you_mean(k->s, allowed, nallowed);
        if (m)
            dg_add(C->d, KILN_EINVAL, k->line, k->col, "unknown key '%s' in %s; did you mean '%s'?",
                   k->s, section, m);
        else
            dg_add(C->d, KILN_EINVAL, k->line, k->col, "unknown key '%s' in %s", k->s, section);
    }
}

static const struct node *map_get(const struct node *map, const char *key)
{
    if (!map || map->kind != N_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++) {
        const struct node *k = map->kids[2 * i];
        if (k->kind == N_SCALAR && strcmp(k->s, key) == 0) return map->kids[2 * i + 1];
    }
    return NULL;
}

static int parse_bool(struct comp *C, const struct node *n, const char *what, int *out)
{
    if (n && n->kind == N_SCALAR) {
        const char *s = n->s;
        if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) {
            *out = 1;
            return 1;
        }
        if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) {
            *out = 0;
            return 1;
        }
    }
    dg_add(C->d, KILN_EINVAL, n ? n->line : 1, n ? n->col : 1, "'%s' must be true or false, not %s",
           what, n && n->kind == N_SCALAR ? n->s : kind_name(n));
    return 0;
}

int parse_ll(const char *s, long long *out)
{
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0) return 0;
    *out = v;
    return 1;
}

/* ---------- templates ---------- */

static int reg_tmpl(struct comp *C, struct tmpl *t)
{
    if (C->nreg == C->capreg) {
        size_t nc = C->capreg ? C->capreg * 2 : 64;
        struct tmpl **nr = realloc(C->reg, nc * sizeof(*nr));
        if (!nr) return KILN_ENOMEM;
        C->reg = nr;
        C->capreg = nc;
    }
    C->reg[C->nreg++] = t;
    return 0;
}

/* Compile a scalar into literal and {var} parts; variables are resolved to
 * symbols after the whole file is read (resolve_all), because attributes
 * may be defined below the template that uses them. */
static struct tmpl *tmpl_new(struct comp *C, const struct node *n, const char *what)
{
    if (!n || n->kind != N_SCALAR) {
        want(C, n, N_SCALAR, what);
        return NULL;
    }
    struct tmpl *t = ar_alloc(C->a, sizeof(*t));
    if (!t) return NULL;
    t->node = n;
    t->what = what;
    size_t cap = 1;
    for (size_t i = 0; i < n->len; i++)
        if (n->s[i] == '{') cap += 2;
    t->p = ar_alloc(C->a, cap * sizeof(*t->p));
    if (!t->p) return NULL;
    struct kiln_buf lit = {0};
    const char *s = n->s;
    size_t i = 0;
    int bad = 0;
    while (i < n->len && !bad) {
        if (s[i] == '{' && i + 1 < n->len && s[i + 1] == '{') {
            if (kiln_buf_append(&lit, "{", 1)) bad = 2;
            i += 2;
        } else if (s[i] == '}' && i + 1 < n->len && s[i + 1] == '}') {
            if (kiln_buf_append(&lit, "}", 1)) bad = 2;
            i += 2;
        } else if (s[i] == '{') {
            size_t j = i + 1;
            while (j < n->len && (isalnum((unsigned char)s[j]) || s[j] == '_'))
                j++;
            if (j >= n->len || s[j] != '}' || j == i + 1) {
                int line, col;
                char needle[40];
                snprintf(needle, sizeof(needle), "%.*s", (int)(j - i > 30 ? 30 : j - i + 1), s + i);
                scalar_pos(C->src, C->srclen, n, needle, &line, &col);
                dg_add(C->d, KILN_EINVAL, line, col,
                       "'{' in %s starts no {variable} (a name of letters, digits and _ "
                       "closed by '}'); write '{{' for a literal brace",
                       what);
                bad = 1;
                break;
            }
            if (lit.len) {
                struct tpart *p = &t->p[t->n++];
                p->var = -1;
                p->s = ar_strndup(C->a, lit.data, lit.len);
                p->len = lit.len;
                if (!p->s) bad = 2;
                lit.len = 0;
            }
            struct tpart *p = &t->p[t->n++];
            p->var = -2; /* unresolved */
            p->s = ar_strndup(C->a, s + i + 1, j - i - 1);
            p->len = j - i - 1;
            if (!p->s) bad = 2;
            char needle[80];
            snprintf(needle, sizeof(needle), "{%.70s}", p->s ? p->s : "");
            scalar_pos(C->src, C->srclen, n, needle, &p->line, &p->col);
            i = j + 1;
        } else {
            size_t j = i;
            while (j < n->len && s[j] != '{' && !(s[j] == '}' && j + 1 < n->len && s[j + 1] == '}'))
                j++;
            if (j == i) j++; /* a lone '}' is literal */
            if (kiln_buf_append(&lit, s + i, j - i)) bad = 2;
            i = j;
        }
    }
    if (!bad && lit.len) {
        struct tpart *p = &t->p[t->n++];
        p->var = -1;
        p->s = ar_strndup(C->a, lit.data, lit.len);
        p->len = lit.len;
        if (!p->s) bad = 2;
    }
    kiln_buf_free(&lit);
    if (bad == 2) dg_add(C->d, KILN_ENOMEM, n->line, n->col, "out of memory");
    if (bad) return NULL;
    if (reg_tmpl(C, t)) return NULL;
    return t;
}

int tmpl_is_literal(const struct tmpl *t)
{
    return t && (t->n == 0 || (t->n == 1 && t->p[0].var == -1));
}

const char *tmpl_literal(const struct tmpl *t)
{
    return t->n == 0 ? "" : t->p[0].s;
}

/* ---------- sections ---------- */

static int parse_kvs(struct comp *C, const struct node *n, struct kv **out, size_t *nout, int env,
                     const char *what)
{
    *out = NULL;
    *nout = 0;
    if (is_null(n)) return 0;
    if (!want(C, n, N_MAP, what)) return KILN_EINVAL;
    struct kv *v = ar_alloc(C->a, (n->n ? n->n : 1) * sizeof(*v));
    if (!v) return KILN_ENOMEM;
    for (size_t i = 0; i < n->n; i++) {
        const struct node *k = n->kids[2 * i], *val = n->kids[2 * i + 1];
        if (!want(C, k, N_SCALAR, what)) continue;
        if (!is_ident(k->s)) {
            dg_add(C->d, KILN_EINVAL, k->line, k->col,
                   "'%s' in %s is not a valid name (letters, digits and _, not starting with a "
                   "digit)",
                   k->s, what);
            continue;
        }
        for (size_t j = 0; j < i; j++)
            if (n->kids[2 * j]->kind == N_SCALAR && strcmp(n->kids[2 * j]->s, k->s) == 0)
                dg_add(C->d, KILN_EINVAL, k->line, k->col,
                       "'%s' appears twice in %s (first at line %d)", k->s, what,
                       n->kids[2 * j]->line);
        if (val->kind != N_SCALAR) {
            dg_add(C->d, KILN_EINVAL, val->line, val->col, "%s.%s must be a single value, not %s",
                   what, k->s, kind_name(val));
            continue;
        }
        int id = env ? sym_intern(&C->r->envkeys, C->a, k->s, k->len)
                     : sym_intern(&C->r->syms, C->a, k->s, k->len);
        if (id < 0)
            return dg_add(C->d, id, k->line, k->col, "too many attribute names (at most 4096)");
        if (!env && (id == SYM_NAME || id == SYM_RECIPE || id == SYM_BRANCH)) {
            dg_add(C->d, KILN_EINVAL, k->line, k->col,
                   "'%s' is set by kiln itself and cannot be an attribute", k->s);
            continue;
        }
        struct tmpl *t = tmpl_new(C, val, what);
        if (!t) continue;
        v[*nout].id = id;
        v[*nout].t = t;
        (*nout)++;
    }
    *out = v;
    return 0;
}

static void parse_resources(struct comp *C, const struct node *n, struct tmpl **res,
                            const char *what)
{
    if (is_null(n)) return;
    if (!want(C, n, N_MAP, what)) return;
    check_keys(C, n, res_keys, RES_N, what);
    for (int i = 0; i < RES_N; i++) {
        const struct node *v = map_get(n, res_keys[i]);
        if (!v) continue;
        char w[64];
        snprintf(w, sizeof(w), "%s.%s", what, res_keys[i]);
        if (v->kind != N_SCALAR) {
            dg_add(C->d, KILN_EINVAL, v->line, v->col,
                   "'%s' must be a whole number (or a {variable}), not %s", w, kind_name(v));
            continue;
        }
        struct tmpl *t = tmpl_new(C, v, res_keys[i]);
        if (!t) continue;
        long long x;
        if (tmpl_is_literal(t) && !parse_ll(tmpl_literal(t), &x)) {
            dg_add(C->d, KILN_EINVAL, v->line, v->col, "'%s' must be a whole number, not '%s'", w,
                   v->s);
            continue;
        }
        res[i] = t;
    }
}

static struct tmpl **parse_tmpl_list(struct comp *C, const struct node *n, size_t *nout,
                                     const char *what)
{
    *nout = 0;
    if (is_null(n)) return NULL;
    if (!want(C, n, N_SEQ, what)) return NULL;
    struct tmpl **v = ar_alloc(C->a, (n->n ? n->n : 1) * sizeof(*v));
    if (!v) return NULL;
    for (size_t i = 0; i < n->n; i++) {
        struct tmpl *t = tmpl_new(C, n->kids[i], what);
        if (t) v[(*nout)++] = t;
    }
    return v;
}

/* One value of axis ax (named by k): "- VALUE", or "- VALUE: {attr: x}"
 * for a value that carries attributes. */
static void parse_axis_value(struct comp *C, struct axis *ax, const struct node *k,
                             const struct node *it, const char *what)
{
    struct axval *av = &ax->v[ax->n];
    const struct node *vn = it;
    if (it->kind == N_MAP) {
        if (it->n != 1) {
            dg_add(C->d, KILN_EINVAL, it->line, it->col,
                   "an axis value with attributes is written '- VALUE: {attr: x, ...}' "
                   "(one key)");
            return;
        }
        vn = it->kids[0];
        if (parse_kvs(C, it->kids[1], &av->attrs, &av->nattrs, 0, what)) return;
    }
    if (vn->kind != N_SCALAR || is_null(vn)) {
        dg_add(C->d, KILN_EINVAL, vn->line, vn->col,
               "values of axis '%s' must be single values, not %s", k->s, kind_name(vn));
        return;
    }
    for (size_t q = 0; q < ax->n; q++)
        if (strcmp(ax->v[q].val, vn->s) == 0) {
            dg_add(C->d, KILN_EINVAL, vn->line, vn->col, "axis '%s' lists value '%s' twice", k->s,
                   vn->s);
            return;
        }
    av->val = vn->s;
    ax->n++;
}

static void parse_axes(struct comp *C, const struct node *n)
{
    struct recipe *r = C->r;
    if (!n) return;
    if (!want(C, n, N_MAP, "axes")) return;
    r->axes_line = n->line;
    r->axes_col = n->col;
    r->axes = ar_alloc(C->a, (n->n ? n->n : 1) * sizeof(*r->axes));
    if (!r->axes) return;
    for (size_t i = 0; i < n->n; i++) {
        const struct node *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
        if (!want(C, k, N_SCALAR, "axes")) continue;
        if (!is_ident(k->s)) {
            dg_add(C->d, KILN_EINVAL, k->line, k->col,
                   "axis name '%s' is not a valid name (letters, digits and _)", k->s);
            continue;
        }
        if (sym_find(&r->syms, k->s, k->len) >= 0) {
            dg_add(C->d, KILN_EINVAL, k->line, k->col,
                   "axis '%s' is defined twice or clashes with a name kiln sets", k->s);
            continue;
        }
        char *what = ar_alloc(C->a, k->len + 8);
        if (!what) return;
        snprintf(what, k->len + 8, "axes.%s", k->s);
        if (!want(C, v, N_SEQ, what)) continue;
        if (v->n == 0) {
            dg_add(C->d, KILN_EINVAL, v->line, v->col, "axis '%s' has no values", k->s);
            continue;
        }
        struct axis *ax = &r->axes[r->naxes];
        int sym = sym_intern(&r->syms, C->a, k->s, k->len);
        if (sym < 0) {
            dg_add(C->d, sym, k->line, k->col, "too many axes and attributes (at most 4096 names)");
            return;
        }
        ax->sym = sym;
        ax->name = r->syms.name[sym];
        ax->line = k->line;
        ax->col = k->col;
        ax->v = ar_alloc(C->a, v->n * sizeof(*ax->v));
        if (!ax->v) return;
        for (size_t j = 0; j < v->n; j++)
            parse_axis_value(C, ax, k, v->kids[j], what);
        if (ax->n) r->naxes++;
    }
}

static void parse_include(struct comp *C, const struct node *n)
{
    struct recipe *r = C->r;
    if (is_null(n)) return;
    if (!want(C, n, N_SEQ, "include")) return;
    r->inc = ar_alloc(C->a, (n->n ? n->n : 1) * sizeof(*r->inc));
    if (!r->inc) return;
    for (size_t i = 0; i < n->n; i++) {
        const struct node *it = n->kids[i];
        if (!want(C, it, N_MAP, "include entries")) continue;
        struct include *inc = &r->inc[r->ninc];
        inc->vals = ar_alloc(C->a, (r->naxes ? r->naxes : 1) * sizeof(*inc->vals));
        inc->axv = ar_alloc(C->a, (r->naxes ? r->naxes : 1) * sizeof(*inc->axv));
        if (!inc->vals || !inc->axv) return;
        int ok = 1;
        for (size_t j = 0; j < it->n; j++) {
            const struct node *k = it->kids[2 * j], *v = it->kids[2 * j + 1];
            if (k->kind != N_SCALAR) continue;
            if (strcmp(k->s, "attrs") == 0) {
                if (parse_kvs(C, v, &inc->attrs, &inc->nattrs, 0, "include.attrs")) ok = 0;
                continue;
            }
            size_t a;
            for (a = 0; a < r->naxes; a++)
                if (strcmp(r->axes[a].name, k->s) == 0) break;
            if (a == r->naxes) {
                const char *names[64];
                size_t nn = 0;
                for (size_t q = 0; q < r->naxes && nn < 63; q++)
                    names[nn++] = r->axes[q].name;
                names[nn++] = "attrs";
                const char *m = did_you_mean(k->s, names, nn);
                dg_add(C->d, KILN_EINVAL, k->line, k->col,
                       "include names '%s', which is not an axis%s%s%s", k->s,
                       m ? "; did you mean '" : "", m ? m : "", m ? "'?" : "");
                ok = 0;
                continue;
            }
            if (!want(C, v, N_SCALAR, k->s)) {
                ok = 0;
                continue;
            }
            inc->vals[a] = v->s;
            for (size_t q = 0; q < r->axes[a].n; q++)
                if (strcmp(r->axes[a].v[q].val, v->s) == 0) inc->axv[a] = &r->axes[a].v[q];
        }
        for (size_t a = 0; a < r->naxes && ok; a++)
            if (!inc->vals[a]) {
                dg_add(C->d, KILN_EINVAL, it->line, it->col,
                       "include entry gives no value for axis '%s'", r->axes[a].name);
                ok = 0;
            }
        if (ok) r->ninc++;
    }
}

/* A rule's 'unset': one attribute name or a list of them, resolved to
 * symbols later like conditions. Nonzero only when out of memory. */
static int parse_unset(struct comp *C, const struct node *un, struct condset *cs)
{
    if (!un || is_null(un)) return 0;
    if (un->kind == N_SCALAR) {
        cs->c = ar_alloc(C->a, sizeof(*cs->c));
        if (!cs->c) return KILN_ENOMEM;
        cs->c[0].symname = un->s;
        cs->c[0].line = un->line;
        cs->c[0].col = un->col;
        cs->n = 1;
    } else if (want(C, un, N_SEQ, "rule unset")) {
        cs->c = ar_alloc(C->a, (un->n ? un->n : 1) * sizeof(*cs->c));
        if (!cs->c) return KILN_ENOMEM;
        for (size_t j = 0; j < un->n; j++) {
            const struct node *x = un->kids[j];
            if (!want(C, x, N_SCALAR, "rule unset")) continue;
            struct cond *c = &cs->c[cs->n++];
            c->symname = x->s;
            c->line = x->line;
            c->col = x->col;
        }
    }
    for (size_t j = 0; j < cs->n; j++) {
        cs->c[j].sym = -1;
        cs->c[j].ctx = "rule unset";
        if (reg_cond(C, &cs->c[j])) return KILN_ENOMEM;
    }
    return 0;
}

static void parse_rules(struct comp *C, const struct node *n)
{
    static const char *const keys[] = {"when",     "attrs",   "env",   "resources",
                                       "selftest", "publish", "unset", "note"};
    struct recipe *r = C->r;
    if (is_null(n)) return;
    if (!want(C, n, N_SEQ, "rules")) return;
    r->rules = ar_alloc(C->a, (n->n ? n->n : 1) * sizeof(*r->rules));
    if (!r->rules) return;
    for (size_t i = 0; i < n->n; i++) {
        const struct node *it = n->kids[i];
        if (!want(C, it, N_MAP, "rules entries")) continue;
        check_keys(C, it, keys, sizeof(keys) / sizeof(keys[0]), "a rule");
        struct rule *ru = &r->rules[r->nrules];
        ru->selftest = ru->publish = -1;
        const struct node *w = map_get(it, "when");
        if (!w) {
            dg_add(C->d, KILN_EINVAL, it->line, it->col,
                   "a rule needs 'when:' (the conditions on axes or attributes)");
            continue;
        }
        if (parse_condset(C, w, &ru->when, "rule 'when'")) continue;
        parse_kvs(C, map_get(it, "attrs"), &ru->attrs, &ru->nattrs, 0, "rule attrs");
        parse_kvs(C, map_get(it, "env"), &ru->env, &ru->nenv, 1, "rule env");
        parse_resources(C, map_get(it, "resources"), ru->res, "rule resources");
        if (parse_unset(C, map_get(it, "unset"), &ru->unset)) return;
        const struct node *s = map_get(it, "selftest");
        if (s) parse_bool(C, s, "rule selftest", &ru->selftest);
        s = map_get(it, "publish");
        if (s) parse_bool(C, s, "rule publish", &ru->publish);
        r->nrules++;
    }
}

static void parse_exclude(struct comp *C, const struct node *n)
{
    struct recipe *r = C->r;
    if (is_null(n)) return;
    if (!want(C, n, N_SEQ, "exclude")) return;
    r->exc = ar_alloc(C->a, (n->n ? n->n : 1) * sizeof(*r->exc));
    if (!r->exc) return;
    for (size_t i = 0; i < n->n; i++) {
        const struct node *it = n->kids[i];
        if (!want(C, it, N_MAP, "exclude entries")) continue;
        if (it->n == 0) {
            dg_add(C->d, KILN_EINVAL, it->line, it->col,
                   "an empty exclude entry would exclude every variant");
            continue;
        }
        if (parse_condset(C, it, &r->exc[r->nexc], "exclude") == 0) r->nexc++;
    }
}

static void parse_depends(struct comp *C, const struct node *n)
{
    static const char *const keys[] = {"name", "recipe", "branch", "optional", "when"};
    struct recipe *r = C->r;
    if (is_null(n)) return;
    if (!want(C, n, N_SEQ, "depends")) return;
    r->deps = ar_alloc(C->a, (n->n ? n->n : 1) * sizeof(*r->deps));
    if (!r->deps) return;
    for (size_t i = 0; i < n->n; i++) {
        const struct node *it = n->kids[i];
        struct dep *dp = &r->deps[r->ndeps];
        dp->line = it->line;
        dp->col = it->col;
        if (it->kind == N_SCALAR) {
            dp->name = tmpl_new(C, it, "depends");
            if (dp->name) r->ndeps++;
            continue;
        }
        if (!want(C, it, N_MAP, "depends entries")) continue;
        check_keys(C, it, keys, 5, "a dependency");
        const struct node *nm = map_get(it, "name");
        if (!nm) {
            dg_add(C->d, KILN_EINVAL, it->line, it->col,
                   "a dependency needs 'name:' (a template of the variant name it needs)");
            continue;
        }
        dp->name = tmpl_new(C, nm, "depends.name");
        const struct node *rc = map_get(it, "recipe");
        if (rc && want(C, rc, N_SCALAR, "depends.recipe")) {
            if (!is_ident(rc->s) &&
                strspn(rc->s, "abcdefghijklmnopqrstuvwxyz0123456789_-.") != rc->len) {
                dg_add(C->d, KILN_EINVAL, rc->line, rc->col,
                       "depends.recipe '%s' is not a recipe name", rc->s);
                continue;
            }
            if (strcmp(rc->s, r->name ? r->name : "") != 0) dp->recipe = rc->s;
        }
        const struct node *b = map_get(it, "branch");
        if (b && want(C, b, N_SCALAR, "depends.branch")) dp->branch = b->s;
        const struct node *o = map_get(it, "optional");
        if (o) parse_bool(C, o, "depends.optional", &dp->optional);
        parse_condset(C, map_get(it, "when"), &dp->when, "dependency 'when'");
        if (dp->name) r->ndeps++;
    }
}

/* One entry of selftest.checks; counted only when it has a command. */
static void parse_check(struct comp *C, const struct node *it, struct selftest *st)
{
    static const char *const ckeys[] = {"name", "command", "timeout_s"};
    if (!want(C, it, N_MAP, "selftest.checks entries")) return;
    check_keys(C, it, ckeys, 3, "a selftest check");
    const struct node *cm = map_get(it, "command");
    if (!cm) {
        dg_add(C->d, KILN_EINVAL, it->line, it->col, "a selftest check needs 'command:'");
        return;
    }
    struct check *ck = &st->checks[st->nchecks];
    ck->command = tmpl_new(C, cm, "selftest check command");
    const struct node *nm = map_get(it, "name");
    if (nm) ck->name = tmpl_new(C, nm, "selftest check name");
    const struct node *to = map_get(it, "timeout_s");
    long long x;
    if (to) {
        ck->timeout = tmpl_new(C, to, "selftest check timeout_s");
        if (ck->timeout && tmpl_is_literal(ck->timeout) &&
            !parse_ll(tmpl_literal(ck->timeout), &x)) {
            dg_add(C->d, KILN_EINVAL, to->line, to->col,
                   "timeout_s must be a whole number of seconds, not '%s'", to->s);
            ck->timeout = NULL;
        }
    }
    if (ck->command) st->nchecks++;
}

/* selftest.checks (a list). Nonzero only when out of memory. */
static int parse_checks(struct comp *C, const struct node *v, struct selftest *st)
{
    st->checks = ar_alloc(C->a, (v->n ? v->n : 1) * sizeof(*st->checks));
    if (!st->checks) return KILN_ENOMEM;
    for (size_t i = 0; i < v->n; i++)
        parse_check(C, v->kids[i], st);
    return 0;
}

static void parse_selftest(struct comp *C, const struct node *n)
{
    static const char *const keys[] = {"sm",     "sm_compat",      "isa",           "driver_min",
                                       "checks", "expect_symbols", "artifact_globs"};
    struct selftest *st = &C->r->st;
    if (is_null(n)) return;
    int b;
    if (n->kind == N_SCALAR) {
        if (parse_bool(C, n, "selftest", &b) && b)
            dg_add(C->d, KILN_EINVAL, n->line, n->col,
                   "'selftest: true' says nothing to test; give a mapping with checks");
        return;
    }
    if (!want(C, n, N_MAP, "selftest")) return;
    check_keys(C, n, keys, 7, "selftest");
    st->present = 1;
    const struct node *v;
    if ((v = map_get(n, "sm"))) st->sm = tmpl_new(C, v, "selftest.sm");
    if ((v = map_get(n, "isa"))) st->isa = tmpl_new(C, v, "selftest.isa");
    if ((v = map_get(n, "driver_min"))) st->driver_min = tmpl_new(C, v, "selftest.driver_min");
    if ((v = map_get(n, "sm_compat"))) st->sm_compat = tmpl_new(C, v, "selftest.sm_compat");
    if ((v = map_get(n, "checks")) && !is_null(v) && want(C, v, N_SEQ, "selftest.checks") &&
        parse_checks(C, v, st))
        return;
    st->syms =
        parse_tmpl_list(C, map_get(n, "expect_symbols"), &st->nsyms, "selftest.expect_symbols");
    st->globs =
        parse_tmpl_list(C, map_get(n, "artifact_globs"), &st->nglobs, "selftest.artifact_globs");
}

static struct gnode *parse_gnode(struct comp *C, const struct node *n, const char *what)
{
    struct gnode *g = ar_alloc(C->a, sizeof(*g));
    if (!g) return NULL;
    if (n->kind == N_SCALAR) {
        g->kind = G_SCALAR;
        g->jtype = 's';
        long long x;
        if (n->plain) {
            if (is_null(n))
                g->jtype = 'n';
            else if (!strcmp(n->s, "true") || !strcmp(n->s, "false"))
                g->jtype = 'b';
            else if (parse_ll(n->s, &x))
                g->jtype = 'i';
        }
        g->t = tmpl_new(C, n, what);
        return g->t || g->jtype == 'n' ? g : NULL;
    }
    g->kind = n->kind == N_MAP ? G_MAP : G_SEQ;
    size_t cnt = n->n;
    g->kids = ar_alloc(C->a, (cnt ? cnt : 1) * sizeof(*g->kids));
    g->keys = ar_alloc(C->a, (cnt ? cnt : 1) * sizeof(*g->keys));
    if (!g->kids || !g->keys) return NULL;
    for (size_t i = 0; i < cnt; i++) {
        const struct node *k = n->kind == N_MAP ? n->kids[2 * i] : NULL;
        const struct node *v = n->kind == N_MAP ? n->kids[2 * i + 1] : n->kids[i];
        if (k && !want(C, k, N_SCALAR, what)) continue;
        struct gnode *kid = parse_gnode(C, v, what);
        if (!kid) continue;
        g->keys[g->n] = k ? k->s : NULL;
        g->kids[g->n++] = kid;
    }
    return g;
}

static void parse_branches(struct comp *C, const struct node *n)
{
    static const char *const keys[] = {"attrs", "env", "note"};
    struct recipe *r = C->r;
    if (is_null(n)) return;
    if (!want(C, n, N_MAP, "branches")) return;
    /* check expands every branch: keep that bounded */
    if (n->n > 100) {
        dg_add(C->d, KILN_ELIMIT, n->line, n->col,
               "a recipe lists at most 100 branches, this one %zu", n->n);
        return;
    }
    r->br = ar_alloc(C->a, (n->n ? n->n : 1) * sizeof(*r->br));
    if (!r->br) return;
    for (size_t i = 0; i < n->n; i++) {
        const struct node *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
        if (!want(C, k, N_SCALAR, "branches")) continue;
        struct branch *b = &r->br[r->nbr];
        b->name = k->s;
        if (!is_null(v)) {
            if (!want(C, v, N_MAP, "a branch")) continue;
            check_keys(C, v, keys, 3, "a branch");
            parse_kvs(C, map_get(v, "attrs"), &b->attrs, &b->nattrs, 0, "branch attrs");
            parse_kvs(C, map_get(v, "env"), &b->env, &b->nenv, 1, "branch env");
        }
        r->nbr++;
    }
}

static void resolve_all(struct comp *C)
{
    struct recipe *r = C->r;
    for (size_t i = 0; i < C->nreg; i++) {
        struct tmpl *t = C->reg[i];
        for (size_t j = 0; j < t->n; j++) {
            struct tpart *p = &t->p[j];
            if (p->var != -2) continue;
            int id = sym_find(&r->syms, p->s, p->len);
            if (id < 0) {
                const char *m = did_you_mean(p->s, r->syms.name, r->syms.n);
                dg_add(C->d, KILN_EINVAL, p->line, p->col,
                       "%s uses {%s}, which is not an axis or attribute of this recipe%s%s%s",
                       t->what, p->s, m ? "; did you mean {" : "", m ? m : "", m ? "}?" : "");
                p->var = -3;
                continue;
            }
            p->var = id;
        }
    }
    for (size_t i = 0; i < C->ncreg; i++) {
        struct cond *c = C->creg[i];
        int id = sym_find(&r->syms, c->symname, strlen(c->symname));
        if (id < 0) {
            const char *m = did_you_mean(c->symname, r->syms.name, r->syms.n);
            dg_add(C->d, KILN_EINVAL, c->line, c->col,
                   "%s names '%s', which is not an axis or attribute of this recipe%s%s%s", c->ctx,
                   c->symname, m ? "; did you mean '" : "", m ? m : "", m ? "'?" : "");
            continue;
        }
        c->sym = id;
    }
}

/* 1 when map has an unknown key that did-you-mean turns into want; its
 * "unknown key" report already says what is wrong. */
static int misspelled(const struct node *map, const char *want_key, const char *const *allowed,
                      size_t nallowed)
{
    for (size_t i = 0; i < map->n; i++) {
        const struct node *k = map->kids[2 * i];
        if (k->kind != N_SCALAR) continue;
        int known = 0;
        for (size_t j = 0; j < nallowed; j++)
            if (!strcmp(k->s, allowed[j])) known = 1;
        if (known) continue;
        const char *m = did_you_mean(k->s, allowed, nallowed);
        if (m && !strcmp(m, want_key)) return 1;
    }
    return 0;
}

static const char *const top_keys[] = {"recipe",    "description", "default_branch", "axes",
                                       "include",   "exclude",     "attrs",          "rules",
                                       "templates", "env",         "resources",      "depends",
                                       "inputs",    "selftest",    "publish",        "branches"};
#define NTOP (sizeof(top_keys) / sizeof(top_keys[0]))

static void parse_name(struct comp *C, const struct node *root)
{
    struct recipe *r = C->r;
    const struct node *n = map_get(root, "recipe");
    if (!n && !misspelled(root, "recipe", top_keys, NTOP)) {
        dg_add(C->d, KILN_EINVAL, root->line, root->col,
               "the recipe has no 'recipe:' key naming it");
    } else if (n && want(C, n, N_SCALAR, "recipe")) {
        if (strspn(n->s, RECIPE_NAME_CHARS) != n->len || n->len == 0 || n->len > 64)
            dg_add(C->d, KILN_EINVAL, n->line, n->col,
                   "recipe name '%s' must be 1-64 letters, digits, '.', '_' or '-'", n->s);
        else
            r->name = n->s;
        r->name_line = n->line;
        r->name_col = n->col;
    }
}

static void parse_templates(struct comp *C, const struct node *root)
{
    static const char *const tkeys[] = {"name", "command", "description", "header"};
    struct recipe *r = C->r;
    const struct node *n = map_get(root, "templates");
    if (!n && !misspelled(root, "templates", top_keys, NTOP)) {
        dg_add(C->d, KILN_EINVAL, root->line, root->col,
               "the recipe has no 'templates:' (at least 'name:', the variant name template)");
        return;
    }
    if (!n || !want(C, n, N_MAP, "templates")) return;
    check_keys(C, n, tkeys, 4, "templates");
    const struct node *v;
    if ((v = map_get(n, "name")))
        r->t_name = tmpl_new(C, v, "templates.name");
    else
        dg_add(C->d, KILN_EINVAL, n->line, n->col,
               "templates has no 'name:' (the variant name template)");
    if ((v = map_get(n, "command"))) r->t_cmd = tmpl_new(C, v, "templates.command");
    if ((v = map_get(n, "description"))) r->t_desc = tmpl_new(C, v, "templates.description");
    if ((v = map_get(n, "header"))) r->t_header = tmpl_new(C, v, "templates.header");
}

static void parse_publish(struct comp *C, const struct node *n)
{
    int b;
    if (!n || is_null(n)) return;
    if (n->kind == N_SCALAR && !strcmp(n->s, "release")) {
        /* all variants of a commit at once (catalog/release_serve.h) */
        C->r->publish = parse_gnode(C, n, "publish");
    } else if (n->kind == N_SCALAR) {
        if (parse_bool(C, n, "publish", &b) && b)
            dg_add(C->d, KILN_EINVAL, n->line, n->col,
                   "'publish: true' says nowhere to publish; give a mapping (target, ...) or 'release'");
    } else if (want(C, n, N_MAP, "publish")) {
        C->r->publish = parse_gnode(C, n, "publish");
    }
}

static void check_default_branch(struct comp *C, const struct node *root)
{
    const struct recipe *r = C->r;
    if (!r->default_branch || !r->nbr) return;
    for (size_t i = 0; i < r->nbr; i++)
        if (strcmp(r->br[i].name, r->default_branch) == 0) return;
    const struct node *n = map_get(root, "default_branch");
    dg_add(C->d, KILN_EINVAL, n->line, n->col,
           "default_branch '%s' is not one of the branches listed under 'branches'",
           r->default_branch);
}

/* An exclude entry whose conditions are all on axes can be decided before
 * any attribute is rendered (see one_variant in recipe_expand.c). */
static void mark_axes_only(struct recipe *r)
{
    for (size_t i = 0; i < r->nexc; i++) {
        struct condset *cs = &r->exc[i];
        cs->axes_only = 1;
        for (size_t j = 0; j < cs->n; j++) {
            int on_axis = 0;
            for (size_t a = 0; a < r->naxes; a++)
                if (cs->c[j].sym == r->axes[a].sym) on_axis = 1;
            if (!on_axis) cs->axes_only = 0;
        }
    }
}

/* The whole document, section by section in file-format order; names are
 * resolved at the end. Returns the first problem's code. */
static int compile(struct comp *C, const struct node *root)
{
    struct recipe *r = C->r;
    if (!want(C, root, N_MAP, "the recipe file")) return KILN_EINVAL;
    for (int i = 0; i < 3; i++) {
        static const char *const b[] = {"name", "recipe", "branch"};
        if (sym_intern(&r->syms, C->a, b[i], strlen(b[i])) < 0) return KILN_ENOMEM;
    }
    check_keys(C, root, top_keys, NTOP, "the recipe");
    parse_name(C, root);
    const struct node *n;
    if ((n = map_get(root, "description"))) want(C, n, N_SCALAR, "description");
    if ((n = map_get(root, "default_branch")) && want(C, n, N_SCALAR, "default_branch"))
        r->default_branch = n->s;
    parse_axes(C, map_get(root, "axes"));
    parse_include(C, map_get(root, "include"));
    parse_exclude(C, map_get(root, "exclude"));
    parse_kvs(C, map_get(root, "attrs"), &r->attrs, &r->nattrs, 0, "attrs");
    parse_rules(C, map_get(root, "rules"));
    parse_templates(C, root);
    parse_kvs(C, map_get(root, "env"), &r->env, &r->nenv, 1, "env");
    parse_resources(C, map_get(root, "resources"), r->res, "resources");
    parse_depends(C, map_get(root, "depends"));
    r->inputs = parse_tmpl_list(C, map_get(root, "inputs"), &r->ninputs, "inputs");
    parse_selftest(C, map_get(root, "selftest"));
    parse_publish(C, map_get(root, "publish"));
    parse_branches(C, map_get(root, "branches"));
    check_default_branch(C, root);
    resolve_all(C);
    mark_axes_only(r);
    return C->d->n ? C->d->v[0].code : 0;
}

/* ---------- a loaded recipe ---------- */

void recipe_loaded_free(struct loaded *L)
{
    for (size_t i = 0; i < L->r.ntmpls; i++) {
        json_decref(L->r.tmpls[i]->jstr);
        json_decref(L->r.tmpls[i]->jint);
    }
    free(L->r.tmpls);
    for (size_t a = 0; a < L->r.naxes; a++)
        for (size_t j = 0; j < L->r.axes[a].n; j++)
            json_decref(L->r.axes[a].v[j].jval);
    ar_free(&L->a);
    dg_free(&L->d);
    free(L->r.syms.name);
    free(L->r.envkeys.name);
    free(L->file);
    free(L->text);
    memset(L, 0, sizeof(*L));
}

/* Takes a copy of text. Returns 0 or the first problem's code (all problems
 * in L->d). */
int recipe_load_text(struct loaded *L, const char *file, const char *text, size_t len)
{
    memset(L, 0, sizeof(*L));
    L->file = strdup(file ? file : "<recipe>");
    if (!L->file) return KILN_ENOMEM;
    L->d.file = L->file;
    if (len > KILN_RECIPE_MAX_BYTES)
        return dg_add(&L->d, KILN_ELIMIT, 1, 1,
                      "the file is %zu bytes; recipes are limited to %u bytes", len,
                      KILN_RECIPE_MAX_BYTES);
    L->text = malloc(len + 1);
    if (!L->text) return dg_add(&L->d, KILN_ENOMEM, 1, 1, "out of memory");
    if (len) memcpy(L->text, text, len);
    L->text[len] = '\0';
    L->len = len;
    struct node *root = NULL;
    int rc = yaml_load(&L->a, &L->d, L->text, len, &root);
    if (rc) return rc;
    struct comp C;
    memset(&C, 0, sizeof(C));
    C.a = &L->a;
    C.d = &L->d;
    C.src = L->text;
    C.srclen = len;
    C.r = &L->r;
    rc = compile(&C, root);
    L->r.tmpls = C.reg;
    L->r.ntmpls = C.nreg;
    free(C.creg);
    if (rc == 0 && L->d.oom) rc = KILN_ENOMEM;
    L->ok = rc == 0;
    return rc;
}

int recipe_load_file(struct loaded *L, const char *path)
{
    struct kiln_buf b = {0};
    struct stat st;
    int rc = 0;
    /* Refuse an oversized file before reading any of it. */
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > (off_t)KILN_RECIPE_MAX_BYTES)
        rc = KILN_ELIMIT;
    else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        rc = KILN_EINVAL;
    else
        rc = kiln_read_file(path, KILN_RECIPE_MAX_BYTES, &b);
    if (rc) {
        memset(L, 0, sizeof(*L));
        L->file = strdup(path);
        if (!L->file) {
            kiln_buf_free(&b);
            return KILN_ENOMEM;
        }
        L->d.file = L->file;
        if (rc == KILN_ELIMIT)
            dg_add(&L->d, rc, 1, 1,
                   "the file is larger than the recipe limit of %u bytes; refused unread",
                   KILN_RECIPE_MAX_BYTES);
        else if (rc == KILN_ENOTFOUND)
            dg_add(&L->d, rc, 1, 1, "no such recipe file");
        else if (rc == KILN_EINVAL)
            dg_add(&L->d, rc, 1, 1, "this is a directory, not a recipe file");
        else
            dg_add(&L->d, rc, 1, 1, "cannot read the recipe file: %s", strerror(errno));
        kiln_buf_free(&b);
        return rc;
    }
    rc = recipe_load_text(L, path, b.data ? b.data : "", b.len);
    kiln_buf_free(&b);
    return rc;
}
