/* recipe.c - recipes: compile the marked YAML tree (recipe_yaml.c) into a
 * recipe, expand it into variants, resolve dependencies, check, and the
 * public entry points of recipe.h. The format is documented in
 * docs/recipes.md; every problem carries file:line:col. */
#include "recipes/recipe_priv.h"

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/isa.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------- compiled recipe ---------- */

enum { SYM_NAME = 0, SYM_RECIPE = 1, SYM_BRANCH = 2 };
enum { RES_CORES, RES_RAM, RES_DUR, RES_TIMEOUT, RES_N };
static const char *const res_keys[RES_N] = {"cores", "ram_mb", "est_duration_s", "timeout_s"};
/* timeout_s has no default: without it the scheduler's applies. */
static const long long res_default[RES_N] = {1, 2048, 600, -1};

struct symtab {
    const char **name;
    size_t n, cap;
};

struct tpart {
    int var; /* -1: literal */
    const char *s;
    size_t len;
    int line, col;
};

struct tmpl {
    struct tpart *p;
    size_t n;
    const struct node *node;
    const char *what;
    /* Literal templates render to the same JSON in every variant: one
     * shared (reference-counted) value instead of one per variant. */
    json_t *jstr, *jint;
};

struct kv {
    int id; /* symbol (attrs) or env key index */
    struct tmpl *t;
};

enum { OP_EQ, OP_NE, OP_IN, OP_NOTIN, OP_LT, OP_LE, OP_GT, OP_GE };

struct cond {
    const char *symname;
    int sym;
    int op;
    const char **vals;
    size_t nvals;
    double num;
    int line, col;
    const char *ctx;
};

struct condset {
    struct cond *c;
    size_t n;
    int axes_only; /* every condition is on an axis: decidable before attrs */
};

struct rule {
    struct condset when;
    struct condset unset; /* attributes this rule removes (only symbols used) */
    struct kv *attrs;
    size_t nattrs;
    struct kv *env;
    size_t nenv;
    struct tmpl *res[RES_N];
    int selftest, publish; /* -1 unset, 0 off, 1 on */
};

struct axval {
    const char *val;
    json_t *jval; /* shared JSON string of val */
    struct kv *attrs;
    size_t nattrs;
};

struct axis {
    int sym;
    const char *name;
    struct axval *v;
    size_t n;
    int line, col;
};

struct include {
    const char **vals;        /* per axis */
    const struct axval **axv; /* per axis: the axis value when it is one, else NULL */
    struct kv *attrs;
    size_t nattrs;
};

struct dep {
    struct tmpl *name;
    const char *recipe; /* NULL: this recipe */
    const char *branch;
    int optional;
    struct condset when;
    int line, col;
};

struct check {
    struct tmpl *name, *command, *timeout;
};

struct selftest {
    int present;
    struct tmpl *sm, *sm_compat, *isa, *driver_min;
    struct check *checks;
    size_t nchecks;
    struct tmpl **syms;
    size_t nsyms;
    struct tmpl **globs;
    size_t nglobs;
};

enum { G_SCALAR, G_SEQ, G_MAP };
struct gnode {
    int kind;
    struct tmpl *t;
    int jtype; /* for scalars: 's' string, 'i' integer, 'b' bool, 'n' null */
    const char **keys;
    struct gnode **kids;
    size_t n;
};

struct branch {
    const char *name;
    struct kv *attrs;
    size_t nattrs;
    struct kv *env;
    size_t nenv;
};

struct recipe {
    const char *name;
    const char *default_branch;
    int name_line, name_col;
    struct axis *axes;
    size_t naxes;
    int axes_line, axes_col;
    struct include *inc;
    size_t ninc;
    struct condset *exc;
    size_t nexc;
    struct kv *attrs;
    size_t nattrs;
    struct rule *rules;
    size_t nrules;
    struct tmpl *t_name, *t_cmd, *t_desc, *t_header;
    struct kv *env;
    size_t nenv;
    struct tmpl *res[RES_N];
    struct dep *deps;
    size_t ndeps;
    struct tmpl **inputs;
    size_t ninputs;
    struct selftest st;
    struct gnode *publish;
    struct branch *br;
    size_t nbr;
    struct symtab syms;
    struct symtab envkeys;
    struct tmpl **tmpls; /* every template, for the shared JSON values */
    size_t ntmpls;
};

struct comp {
    struct arena *a;
    struct diags *d;
    const char *src;
    size_t srclen;
    struct recipe *r;
    struct tmpl **reg;
    size_t nreg, capreg;
    struct cond **creg;
    size_t ncreg, capcreg;
};

/* ---------- symbols ---------- */

static int sym_find(const struct symtab *t, const char *s, size_t len)
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

static int is_null(const struct node *n)
{
    return !n || (n->kind == N_SCALAR && n->plain &&
                  (n->len == 0 || strcmp(n->s, "~") == 0 || strcmp(n->s, "null") == 0));
}

static int want(struct comp *C, const struct node *n, int kind, const char *what)
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

static int parse_ll(const char *s, long long *out)
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

static int tmpl_is_literal(const struct tmpl *t)
{
    return t && (t->n == 0 || (t->n == 1 && t->p[0].var == -1));
}

static const char *tmpl_literal(const struct tmpl *t)
{
    return t->n == 0 ? "" : t->p[0].s;
}

/* ---------- conditions ---------- */

static int reg_cond(struct comp *C, struct cond *c)
{
    if (C->ncreg == C->capcreg) {
        size_t nc = C->capcreg ? C->capcreg * 2 : 32;
        struct cond **nr = realloc(C->creg, nc * sizeof(*nr));
        if (!nr) return KILN_ENOMEM;
        C->creg = nr;
        C->capcreg = nc;
    }
    C->creg[C->ncreg++] = c;
    return 0;
}

static int parse_num(const char *s, double *out)
{
    while (isspace((unsigned char)*s))
        s++;
    if (!*s) return 0;
    char *end;
    double v = strtod(s, &end);
    while (isspace((unsigned char)*end))
        end++;
    if (*end) return 0;
    *out = v;
    return 1;
}

static int cond_scalars(struct comp *C, const struct node *n, struct cond *c, const char *what)
{
    if (n->kind == N_SCALAR) {
        c->vals = ar_alloc(C->a, sizeof(*c->vals));
        if (!c->vals) return KILN_ENOMEM;
        c->vals[0] = n->s;
        c->nvals = 1;
        return 0;
    }
    if (n->kind != N_SEQ) {
        want(C, n, N_SEQ, what);
        return KILN_EINVAL;
    }
    c->vals = ar_alloc(C->a, (n->n ? n->n : 1) * sizeof(*c->vals));
    if (!c->vals) return KILN_ENOMEM;
    for (size_t i = 0; i < n->n; i++) {
        if (!want(C, n->kids[i], N_SCALAR, what)) return KILN_EINVAL;
        c->vals[c->nvals++] = n->kids[i]->s;
    }
    return 0;
}

static const char *const cond_ops[] = {"eq", "ne", "in", "not_in", "lt", "le", "gt", "ge"};

static int parse_condset(struct comp *C, const struct node *n, struct condset *cs, const char *ctx)
{
    cs->n = 0;
    if (is_null(n)) return 0;
    if (!want(C, n, N_MAP, ctx)) return KILN_EINVAL;
    cs->c = ar_alloc(C->a, (n->n ? n->n : 1) * sizeof(*cs->c));
    if (!cs->c) return KILN_ENOMEM;
    for (size_t i = 0; i < n->n; i++) {
        const struct node *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
        if (!want(C, k, N_SCALAR, ctx)) continue;
        struct cond *c = &cs->c[cs->n++];
        c->symname = k->s;
        c->sym = -1;
        c->line = k->line;
        c->col = k->col;
        c->ctx = ctx;
        if (reg_cond(C, c)) return KILN_ENOMEM;
        if (v->kind == N_SEQ) {
            c->op = OP_IN;
            if (cond_scalars(C, v, c, ctx)) continue;
        } else if (v->kind == N_SCALAR) {
            const char *s = v->s;
            c->op = OP_EQ;
            if (v->plain || v->style != 0) {
                if (!strncmp(s, "<=", 2))
                    c->op = OP_LE, s += 2;
                else if (!strncmp(s, ">=", 2))
                    c->op = OP_GE, s += 2;
                else if (!strncmp(s, "!=", 2))
                    c->op = OP_NE, s += 2;
                else if (!strncmp(s, "==", 2))
                    c->op = OP_EQ, s += 2;
                else if (*s == '<')
                    c->op = OP_LT, s++;
                else if (*s == '>')
                    c->op = OP_GT, s++;
            }
            while (isspace((unsigned char)*s))
                s++;
            c->vals = ar_alloc(C->a, sizeof(*c->vals));
            if (!c->vals) return KILN_ENOMEM;
            c->vals[0] = s;
            c->nvals = 1;
            if (c->op >= OP_LT && !parse_num(s, &c->num))
                dg_add(C->d, KILN_EINVAL, v->line, v->col,
                       "condition '%s %s' compares numbers, but '%s' is not a number", k->s, v->s,
                       s);
        } else if (v->kind == N_MAP) {
            if (v->n != 1) {
                dg_add(C->d, KILN_EINVAL, v->line, v->col,
                       "a condition mapping holds exactly one operator (eq, ne, in, not_in, "
                       "lt, le, gt, ge)");
                continue;
            }
            const struct node *ok = v->kids[0], *ov = v->kids[1];
            int op = -1;
            for (int j = 0; j < 8; j++)
                if (ok->kind == N_SCALAR && strcmp(ok->s, cond_ops[j]) == 0) op = j;
            if (op < 0) {
                const char *m = ok->kind == N_SCALAR ? did_you_mean(ok->s, cond_ops, 8) : NULL;
                dg_add(C->d, KILN_EINVAL, ok->line, ok->col,
                       "unknown condition operator '%s'%s%s%s (use eq, ne, in, not_in, lt, le, "
                       "gt or ge)",
                       ok->kind == N_SCALAR ? ok->s : "?", m ? "; did you mean '" : "", m ? m : "",
                       m ? "'?" : "");
                continue;
            }
            c->op = op;
            if (cond_scalars(C, ov, c, ctx)) continue;
            if (op >= OP_LT) {
                if (c->nvals != 1 || !parse_num(c->vals[0], &c->num))
                    dg_add(C->d, KILN_EINVAL, ov->line, ov->col,
                           "operator '%s' compares with one number", cond_ops[op]);
            } else if ((op == OP_EQ || op == OP_NE) && c->nvals != 1) {
                dg_add(C->d, KILN_EINVAL, ov->line, ov->col,
                       "operator '%s' compares with one value; use in/not_in for a list",
                       cond_ops[op]);
            }
        } else {
            want(C, v, N_SCALAR, ctx);
        }
    }
    return 0;
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
        for (size_t j = 0; j < v->n; j++) {
            const struct node *it = v->kids[j];
            struct axval *av = &ax->v[ax->n];
            const struct node *vn = it;
            if (it->kind == N_MAP) {
                if (it->n != 1) {
                    dg_add(C->d, KILN_EINVAL, it->line, it->col,
                           "an axis value with attributes is written '- VALUE: {attr: x, ...}' "
                           "(one key)");
                    continue;
                }
                vn = it->kids[0];
                if (parse_kvs(C, it->kids[1], &av->attrs, &av->nattrs, 0, what)) continue;
            }
            if (vn->kind != N_SCALAR || is_null(vn)) {
                dg_add(C->d, KILN_EINVAL, vn->line, vn->col,
                       "values of axis '%s' must be single values, not %s", k->s, kind_name(vn));
                continue;
            }
            int dup = 0;
            for (size_t q = 0; q < ax->n; q++)
                if (strcmp(ax->v[q].val, vn->s) == 0) dup = 1;
            if (dup) {
                dg_add(C->d, KILN_EINVAL, vn->line, vn->col, "axis '%s' lists value '%s' twice",
                       k->s, vn->s);
                continue;
            }
            av->val = vn->s;
            ax->n++;
        }
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
        const struct node *un = map_get(it, "unset");
        if (un && !is_null(un)) {
            if (un->kind == N_SCALAR) {
                ru->unset.c = ar_alloc(C->a, sizeof(*ru->unset.c));
                if (!ru->unset.c) return;
                ru->unset.c[0].symname = un->s;
                ru->unset.c[0].line = un->line;
                ru->unset.c[0].col = un->col;
                ru->unset.n = 1;
            } else if (want(C, un, N_SEQ, "rule unset")) {
                ru->unset.c = ar_alloc(C->a, (un->n ? un->n : 1) * sizeof(*ru->unset.c));
                if (!ru->unset.c) return;
                for (size_t j = 0; j < un->n; j++) {
                    const struct node *x = un->kids[j];
                    if (!want(C, x, N_SCALAR, "rule unset")) continue;
                    struct cond *c = &ru->unset.c[ru->unset.n++];
                    c->symname = x->s;
                    c->line = x->line;
                    c->col = x->col;
                }
            }
            for (size_t j = 0; j < ru->unset.n; j++) {
                ru->unset.c[j].sym = -1;
                ru->unset.c[j].ctx = "rule unset";
                if (reg_cond(C, &ru->unset.c[j])) return;
            }
        }
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

static void parse_selftest(struct comp *C, const struct node *n)
{
    static const char *const keys[] = {"sm",     "sm_compat",      "isa",           "driver_min",
                                       "checks", "expect_symbols", "artifact_globs"};
    static const char *const ckeys[] = {"name", "command", "timeout_s"};
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
    if ((v = map_get(n, "checks")) && !is_null(v) && want(C, v, N_SEQ, "selftest.checks")) {
        st->checks = ar_alloc(C->a, (v->n ? v->n : 1) * sizeof(*st->checks));
        if (!st->checks) return;
        for (size_t i = 0; i < v->n; i++) {
            const struct node *it = v->kids[i];
            if (!want(C, it, N_MAP, "selftest.checks entries")) continue;
            check_keys(C, it, ckeys, 3, "a selftest check");
            const struct node *cm = map_get(it, "command");
            if (!cm) {
                dg_add(C->d, KILN_EINVAL, it->line, it->col, "a selftest check needs 'command:'");
                continue;
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
    }
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

static int compile(struct comp *C, const struct node *root)
{
    static const char *const top[] = {"recipe",    "description", "default_branch", "axes",
                                      "include",   "exclude",     "attrs",          "rules",
                                      "templates", "env",         "resources",      "depends",
                                      "inputs",    "selftest",    "publish",        "branches"};
    static const char *const tkeys[] = {"name", "command", "description", "header"};
    struct recipe *r = C->r;
    if (!want(C, root, N_MAP, "the recipe file")) return KILN_EINVAL;
    for (int i = 0; i < 3; i++) {
        static const char *const b[] = {"name", "recipe", "branch"};
        if (sym_intern(&r->syms, C->a, b[i], strlen(b[i])) < 0) return KILN_ENOMEM;
    }
    check_keys(C, root, top, sizeof(top) / sizeof(top[0]), "the recipe");
    const struct node *n = map_get(root, "recipe");
    if (!n && !misspelled(root, "recipe", top, sizeof(top) / sizeof(top[0]))) {
        dg_add(C->d, KILN_EINVAL, root->line, root->col,
               "the recipe has no 'recipe:' key naming it");
    } else if (n && want(C, n, N_SCALAR, "recipe")) {
        if (strspn(n->s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
                n->len ||
            n->len == 0 || n->len > 64)
            dg_add(C->d, KILN_EINVAL, n->line, n->col,
                   "recipe name '%s' must be 1-64 letters, digits, '.', '_' or '-'", n->s);
        else
            r->name = n->s;
        r->name_line = n->line;
        r->name_col = n->col;
    }
    if ((n = map_get(root, "description"))) want(C, n, N_SCALAR, "description");
    if ((n = map_get(root, "default_branch")) && want(C, n, N_SCALAR, "default_branch"))
        r->default_branch = n->s;
    parse_axes(C, map_get(root, "axes"));
    parse_include(C, map_get(root, "include"));
    parse_exclude(C, map_get(root, "exclude"));
    parse_kvs(C, map_get(root, "attrs"), &r->attrs, &r->nattrs, 0, "attrs");
    parse_rules(C, map_get(root, "rules"));
    n = map_get(root, "templates");
    if (!n && !misspelled(root, "templates", top, sizeof(top) / sizeof(top[0]))) {
        dg_add(C->d, KILN_EINVAL, root->line, root->col,
               "the recipe has no 'templates:' (at least 'name:', the variant name template)");
    } else if (n && want(C, n, N_MAP, "templates")) {
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
    parse_kvs(C, map_get(root, "env"), &r->env, &r->nenv, 1, "env");
    parse_resources(C, map_get(root, "resources"), r->res, "resources");
    parse_depends(C, map_get(root, "depends"));
    r->inputs = parse_tmpl_list(C, map_get(root, "inputs"), &r->ninputs, "inputs");
    parse_selftest(C, map_get(root, "selftest"));
    n = map_get(root, "publish");
    if (n && !is_null(n)) {
        int b;
        if (n->kind == N_SCALAR) {
            if (parse_bool(C, n, "publish", &b) && b)
                dg_add(C->d, KILN_EINVAL, n->line, n->col,
                       "'publish: true' says nowhere to publish; give a mapping (target, ...)");
        } else if (want(C, n, N_MAP, "publish")) {
            r->publish = parse_gnode(C, n, "publish");
        }
    }
    parse_branches(C, map_get(root, "branches"));
    if (r->default_branch && r->nbr) {
        int found = 0;
        for (size_t i = 0; i < r->nbr; i++)
            if (strcmp(r->br[i].name, r->default_branch) == 0) found = 1;
        if (!found) {
            n = map_get(root, "default_branch");
            dg_add(C->d, KILN_EINVAL, n->line, n->col,
                   "default_branch '%s' is not one of the branches listed under 'branches'",
                   r->default_branch);
        }
    }
    resolve_all(C);
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
    return C->d->n ? C->d->v[0].code : 0;
}

/* ---------- a loaded recipe ---------- */

struct loaded {
    struct arena a;
    struct diags d;
    struct recipe r;
    char *file; /* name for errors */
    char *text;
    size_t len;
    int ok;
};

static void loaded_free(struct loaded *L)
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
static int load_text(struct loaded *L, const char *file, const char *text, size_t len)
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

static int load_file(struct loaded *L, const char *path)
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
    rc = load_text(L, path, b.data ? b.data : "", b.len);
    kiln_buf_free(&b);
    return rc;
}

/* ---------- expansion ---------- */

struct nameset {
    const char **names;
    size_t n, cap;
    uint32_t *slots; /* index+1, 0 = empty */
    size_t nslots;
};

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

static long ns_find(const struct nameset *ns, const char *s)
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

struct pend {
    size_t vi;
    const struct dep *dep;
    const char *name;
};

struct vrec {
    const char *const *vals;
    json_t *obj;     /* NULL when filtered out by where */
    json_t *depends; /* borrowed from obj */
};

enum { MODE_JSON, MODE_NAMES };

struct exp {
    struct loaded *L;
    const struct recipe *r;
    struct diags *d;
    int mode;
    int stop_first;
    int sym_platform, sym_isa;
    const char *branch;
    const struct branch *br;
    struct condset where;
    /* per variant */
    const char **val;
    json_t **valj; /* shared JSON of val[i] when it came from a literal, else NULL */
    const struct tmpl **env;
    const struct tmpl *res[RES_N];
    int st_on, pub_on;
    struct arena va;
    struct kiln_buf buf;
    char combo[512];
    const char *const *cur_vals;
    /* all variants */
    struct arena keep; /* names, combos, pending names */
    struct nameset names;
    struct vrec *vr;
    size_t nvr, capvr;
    struct pend *pd;
    size_t npd, cappd;
};

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
            return dg_add(E->d, KILN_EINVAL, p->line, p->col,
                          "%s uses {%s}, which has no value for the variant %s (set it in "
                          "attrs, or only use it where a rule sets it)",
                          t->what, p->s, combo(E));
        }
        if (kiln_buf_puts(out, v)) goto big;
    }
    return 0;
big:
    return dg_add(E->d, KILN_ELIMIT, t->node->line, t->node->col,
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
        return dg_add(E->d, KILN_EINVAL, t->node->line, t->node->col,
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

static int cond_match(struct exp *E, const struct cond *c)
{
    if (c->sym < 0) return 0;
    const char *v = E->val[c->sym];
    if (!v) return c->op == OP_NE || c->op == OP_NOTIN;
    switch (c->op) {
    case OP_EQ:
        return strcmp(v, c->vals[0]) == 0;
    case OP_NE:
        return strcmp(v, c->vals[0]) != 0;
    case OP_IN:
    case OP_NOTIN: {
        int in = 0;
        for (size_t i = 0; i < c->nvals && !in; i++)
            in = strcmp(v, c->vals[i]) == 0;
        return c->op == OP_IN ? in : !in;
    }
    default: {
        double x;
        /* "sm < 75" does not hold for sm=none: a value that is not a
         * number is simply not less (or greater) than one. */
        if (!parse_num(v, &x)) return 0;
        if (c->op == OP_LT) return x < c->num;
        if (c->op == OP_LE) return x <= c->num;
        if (c->op == OP_GT) return x > c->num;
        return x >= c->num;
    }
    }
}

static int set_match(struct exp *E, const struct condset *cs)
{
    for (size_t i = 0; i < cs->n; i++)
        if (!cond_match(E, &cs->c[i])) return 0;
    return 1;
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

#define JSET(o, k, v)                                                                              \
    do {                                                                                           \
        json_t *v_ = (v);                                                                          \
        if (!v_ || json_object_set_new_nocheck((o), (k), v_)) goto fail;                           \
    } while (0)

static json_t *str_or_null(const char *s)
{
    return s && *s ? json_string_nocheck(s) : json_null();
}

/* Build the Variant JSON of the current variant (name already in val). */
static json_t *build_variant(struct exp *E, int *rcp)
{
    const struct recipe *r = E->r;
    int rc = 0;
    json_t *o = json_object();
    if (!o) return NULL;
    const char *name = E->val[SYM_NAME];
    JSET(o, "name", json_string_nocheck(name));
    JSET(o, "recipe", json_string_nocheck(r->name));
    JSET(o, "branch", json_string_nocheck(E->branch));
    /* platform is an attribute; without one, the ISA level implies it. */
    const char *plat = E->sym_platform >= 0 ? E->val[E->sym_platform] : NULL;
    if (!plat && E->sym_isa >= 0 && E->val[E->sym_isa])
        plat = kiln_isa_level_platform(E->val[E->sym_isa]);
    if (!plat) plat = "x86_64-linux";
    JSET(o, "platform", json_string_nocheck(plat));
    json_t *attrs = json_object();
    JSET(o, "attrs", attrs);
    for (size_t i = 3; i < r->syms.n; i++)
        if (E->val[i])
            JSET(attrs, r->syms.name[i],
                 E->valj[i] ? json_incref(E->valj[i]) : json_string_nocheck(E->val[i]));
    json_t *env = json_object();
    JSET(o, "env", env);
    for (size_t i = 0; i < r->envkeys.n; i++)
        if (E->env[i]) {
            json_t *s = render_json_str(E, E->env[i], &rc);
            if (!s) goto fail;
            JSET(env, r->envkeys.name[i], s);
        }
    json_t *res = json_object(), *s;
    JSET(o, "resources", res);
    for (int i = 0; i < RES_N; i++) {
        if (E->res[i]) {
            if (!(s = render_jint(E, E->res[i], res_keys[i], &rc))) goto fail;
            JSET(res, res_keys[i], s);
        } else if (res_default[i] >= 0) {
            JSET(res, res_keys[i], json_integer(res_default[i]));
        }
    }
    if (!(s = r->t_cmd ? render_json_str(E, r->t_cmd, &rc) : json_string(""))) goto fail;
    JSET(o, "command", s);
    if (!(s = render_json_str(E, r->t_desc, &rc))) goto fail;
    JSET(o, "description", s);
    if (!(s = render_json_str(E, r->t_header, &rc))) goto fail;
    JSET(o, "header", s);
    JSET(o, "depends", json_array());
    json_t *inp = json_array();
    JSET(o, "inputs", inp);
    for (size_t i = 0; i < r->ninputs; i++) {
        if (!(s = render_json_str(E, r->inputs[i], &rc))) goto fail;
        if (json_array_append_new(inp, s)) goto fail;
    }
    if (E->st_on && r->st.present) {
        const struct selftest *st = &r->st;
        json_t *t = json_object();
        JSET(o, "selftest", t);
        const char *v = NULL;
        if (st->sm && (rc = render_str(E, st->sm, &v))) goto fail;
        JSET(t, "sm", str_or_null(v));
        int compat = 0;
        if (st->sm_compat) {
            if ((rc = render_str(E, st->sm_compat, &v))) goto fail;
            compat = strcmp(v, "true") == 0 || strcmp(v, "yes") == 0;
        }
        JSET(t, "sm_compat", json_boolean(compat));
        v = NULL;
        if (st->isa && (rc = render_str(E, st->isa, &v))) goto fail;
        JSET(t, "isa", str_or_null(v));
        if (st->driver_min) {
            long long x;
            if ((rc = render_str(E, st->driver_min, &v))) goto fail;
            if (*v == '\0')
                JSET(t, "driver_min", json_null());
            else if (parse_ll(v, &x))
                JSET(t, "driver_min", json_integer(x));
            else {
                rc =
                    dg_add(E->d, KILN_EINVAL, st->driver_min->node->line, st->driver_min->node->col,
                           "selftest.driver_min must be a whole number, but is '%s' for the "
                           "variant %s",
                           v, combo(E));
                goto fail;
            }
        } else {
            JSET(t, "driver_min", json_null());
        }
        json_t *checks = json_array();
        JSET(t, "checks", checks);
        for (size_t i = 0; i < st->nchecks; i++) {
            const struct check *ck = &st->checks[i];
            json_t *c = json_object();
            if (!c || json_array_append_new(checks, c)) goto fail;
            char defname[32];
            snprintf(defname, sizeof(defname), "check%zu", i + 1);
            if (ck->name) {
                if (!(s = render_json_str(E, ck->name, &rc))) goto fail;
            } else {
                s = json_string(defname);
            }
            JSET(c, "name", s);
            if (!(s = render_json_str(E, ck->command, &rc))) goto fail;
            JSET(c, "command", s);
            if (ck->timeout) {
                if (!(s = render_jint(E, ck->timeout, "timeout_s", &rc))) goto fail;
                JSET(c, "timeout_s", s);
            } else {
                JSET(c, "timeout_s", json_integer(120));
            }
        }
        json_t *a = json_array();
        JSET(t, "expect_symbols", a);
        for (size_t i = 0; i < st->nsyms; i++) {
            if (!(s = render_json_str(E, st->syms[i], &rc))) goto fail;
            if (json_array_append_new(a, s)) goto fail;
        }
        a = json_array();
        JSET(t, "artifact_globs", a);
        for (size_t i = 0; i < st->nglobs; i++) {
            if (!(s = render_json_str(E, st->globs[i], &rc))) goto fail;
            if (json_array_append_new(a, s)) goto fail;
        }
    } else {
        JSET(o, "selftest", json_null());
    }
    if (E->pub_on && r->publish) {
        if (!(s = render_gnode(E, r->publish, &rc))) goto fail;
        JSET(o, "publish", s);
    } else {
        JSET(o, "publish", json_null());
    }
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
        if (r->exc[k].axes_only && set_match(E, &r->exc[k])) return 0;
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
    for (size_t k = 0; k < r->nrules; k++) {
        const struct rule *ru = &r->rules[k];
        if (!set_match(E, &ru->when)) continue;
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
    }
    for (size_t k = 0; k < r->nexc; k++)
        if (!r->exc[k].axes_only && set_match(E, &r->exc[k])) return 0;
    if (E->nvr >= KILN_RECIPE_MAX_VARIANTS)
        return dg_add(E->d, KILN_ELIMIT, r->axes_line ? r->axes_line : 1,
                      r->axes_col ? r->axes_col : 1,
                      "the recipe produces more than %lu variants; kiln refuses that many "
                      "(narrow an axis or exclude combinations)",
                      (unsigned long)KILN_RECIPE_MAX_VARIANTS);
    /* Name */
    const char *name;
    if ((rc = render_str(E, r->t_name, &name))) return rc;
    if (!name_ok(name))
        return dg_add(E->d, KILN_EINVAL, r->t_name->node->line, r->t_name->node->col,
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
        return dg_add(E->d, KILN_EINVAL, r->t_name->node->line, r->t_name->node->col,
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
    int keep = set_match(E, &E->where);
    if (keep && E->mode == MODE_JSON) {
        vr->obj = build_variant(E, &rc);
        if (!vr->obj) return rc;
        vr->depends = json_object_get(vr->obj, "depends");
    }
    for (size_t k = 0; k < r->ndeps && E->mode == MODE_JSON; k++) {
        const struct dep *dp = &r->deps[k];
        if (!set_match(E, &dp->when)) continue;
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

static int enough(struct exp *E)
{
    return E->d->oom || (E->d->n && E->stop_first) || E->d->n >= DG_MAX;
}

static int expand_names(struct exp *E)
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
                out = r->exc[k].axes_only && set_match(E, &r->exc[k]);
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
        if (rc == KILN_ENOMEM || rc == KILN_ELIMIT || enough(E)) break;
        rc = 0;
        for (size_t a = na; a-- > 0;) {
            if (++idx[a] < r->axes[a].n) break;
            idx[a] = 0;
        }
    }
    for (size_t i = 0; i < r->ninc && !enough(E) && rc != KILN_ENOMEM && rc != KILN_ELIMIT; i++) {
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

static void exp_free(struct exp *E);
static int exp_init(struct exp *E, struct loaded *L, const char *branch, int mode);

static int load_other(struct exp *E, const struct dep *dp, struct other *o)
{
    char dir[4096], path[4200];
    dirname_of(E->L->file, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/%s.yaml", dir, dp->recipe);
    o->recipe = dp->recipe;
    o->branch = dp->branch;
    int rc = load_file(&o->L, path);
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

static int resolve_deps(struct exp *E)
{
    struct other *oth = NULL;
    size_t noth = 0;
    int rc = 0;
    size_t nv = E->nvr;
    size_t *cnt = NULL, *off = NULL, *adj = NULL;
    const struct dep **adjdep = NULL;
    for (size_t i = 0; i < E->npd && !enough(E); i++) {
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
                rc = dg_add(E->d, KILN_EINVAL, dp->line, dp->col,
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
        loaded_free(&oth[k].L);
    }
    free(oth);
    if (rc == KILN_ENOMEM || enough(E)) return rc ? rc : E->d->v[0].code;
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

static int exp_init(struct exp *E, struct loaded *L, const char *branch, int mode)
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

static void exp_free(struct exp *E)
{
    for (size_t i = 0; i < E->nvr; i++)
        json_decref(E->vr[i].obj);
    free(E->vr);
    free(E->pd);
    free(E->val);
    free(E->valj);
    free(E->env);
    ns_free(&E->names);
    ar_free(&E->va);
    ar_free(&E->keep);
    kiln_buf_free(&E->buf);
    memset(E, 0, sizeof(*E));
}

static int parse_where(struct exp *E, const char *where, struct kiln_error *err)
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

static int first_error(const struct diags *d, int rc, struct kiln_error *err)
{
    if (d->n) {
        const struct diag *g = &d->v[0];
        for (size_t i = 1; i < d->n; i++)
            if (d->v[i].line < g->line || (d->v[i].line == g->line && d->v[i].col < g->col))
                (void)0; /* keep the first reported, which is the cause */
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
    int rc = load_text(&L, name_for_errors, text ? text : "", len);
    rc = expand_loaded(&L, rc, branch, where, variants_out, err);
    loaded_free(&L);
    return rc;
}

int kiln_recipe_expand_file(const char *path, const char *branch, const char *where,
                            json_t **variants_out, struct kiln_error *err)
{
    if (!path || !variants_out) return kiln_fail(err, KILN_EINVAL, "no recipe path");
    *variants_out = NULL;
    struct loaded L;
    int rc = load_file(&L, path);
    rc = expand_loaded(&L, rc, branch, where, variants_out, err);
    loaded_free(&L);
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
            snprintf(text, sizeof(text), "%s:%d:%d: error: %s", g->file, g->line, g->col, g->msg);
            json_t *o = json_pack("{s:s,s:i,s:i,s:s,s:s}", "file", g->file, "line", g->line, "col",
                                  g->col, "message", g->msg, "text", text);
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
    int rc = load_text(&L, name_for_errors, text ? text : "", text ? len : 0);
    rc = check_loaded(&L, rc, problems_out, err);
    loaded_free(&L);
    return rc;
}

int kiln_recipe_check_file(const char *path, json_t **problems_out, struct kiln_error *err)
{
    if (problems_out) *problems_out = NULL;
    if (!path) return kiln_fail(err, KILN_EINVAL, "no recipe path");
    struct loaded L;
    int rc = load_file(&L, path);
    rc = check_loaded(&L, rc, problems_out, err);
    loaded_free(&L);
    return rc;
}

int kiln_recipe_name_file(const char *path, char *out, size_t outlen, struct kiln_error *err)
{
    struct loaded L;
    int rc = load_file(&L, path);
    if (rc) {
        rc = first_error(&L.d, rc, err);
    } else if ((size_t)snprintf(out, outlen, "%s", L.r.name) >= outlen) {
        rc = kiln_fail(err, KILN_ELIMIT, "recipe name too long");
    }
    loaded_free(&L);
    return rc;
}
