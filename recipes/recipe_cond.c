/* recipe_cond.c - conditions ("when:" of rules and dependencies, exclude
 * entries, the --where filter): the syntax a recipe writes them in,
 * compiled once, and their test against the values of one variant
 * (recipe_cond.h). */
#include "recipes/recipe_cond.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---------- compile ---------- */

int reg_cond(struct comp *C, struct cond *c)
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

/* A number, surrounding spaces allowed; 1 on success. */
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

/* "key: VALUE": equality, or a comparison written in front of the value
 * ("<= 80", "!= none") when the scalar is plain or quoted. */
static int parse_cond_scalar(struct comp *C, const struct node *k, const struct node *v,
                             struct cond *c)
{
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
               "condition '%s %s' compares numbers, but '%s' is not a number", k->s, v->s, s);
    return 0;
}

/* "key: {OP: value(s)}" with one of cond_ops. */
static void parse_cond_map(struct comp *C, const struct node *v, struct cond *c, const char *ctx)
{
    if (v->n != 1) {
        dg_add(C->d, KILN_EINVAL, v->line, v->col,
               "a condition mapping holds exactly one operator (eq, ne, in, not_in, "
               "lt, le, gt, ge)");
        return;
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
        return;
    }
    c->op = op;
    if (cond_scalars(C, ov, c, ctx)) return;
    if (op >= OP_LT) {
        if (c->nvals != 1 || !parse_num(c->vals[0], &c->num))
            dg_add(C->d, KILN_EINVAL, ov->line, ov->col, "operator '%s' compares with one number",
                   cond_ops[op]);
    } else if ((op == OP_EQ || op == OP_NE) && c->nvals != 1) {
        dg_add(C->d, KILN_EINVAL, ov->line, ov->col,
               "operator '%s' compares with one value; use in/not_in for a list", cond_ops[op]);
    }
}

/* A 'when' (or exclude entry): every key names an axis or attribute
 * (resolved later), every value a condition on it; all must hold. */
int parse_condset(struct comp *C, const struct node *n, struct condset *cs, const char *ctx)
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
            cond_scalars(C, v, c, ctx);
        } else if (v->kind == N_SCALAR) {
            if (parse_cond_scalar(C, k, v, c)) return KILN_ENOMEM;
        } else if (v->kind == N_MAP) {
            parse_cond_map(C, v, c, ctx);
        } else {
            want(C, v, N_SCALAR, ctx);
        }
    }
    return 0;
}

/* ---------- evaluate ---------- */

int cond_holds(const char *const *val, const struct cond *c)
{
    if (c->sym < 0) return 0;
    const char *v = val[c->sym];
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

int condset_holds(const char *const *val, const struct condset *cs)
{
    for (size_t i = 0; i < cs->n; i++)
        if (!cond_holds(val, &cs->c[i])) return 0;
    return 1;
}
