/* recipe_compile.h - private to recipes/: the compiled recipe, what the
 * compiler (recipe_compile.c) makes of a recipe document and what the
 * expander (recipe_expand.c) turns into variants.
 *
 * Contract: recipe_load_text()/_file() read a recipe (size limit of
 * recipe.h), parse it into the marked node tree (recipe_yaml.c) and compile
 * it: every key, type, name, condition and {variable} is checked once here,
 * so the expander never meets a malformed recipe, only values that a
 * particular variant renders badly. All problems go to struct loaded's
 * diagnostics as file:line:col sentences, every problem of the document,
 * not just the first; the return value is the first problem's code. On
 * success every template part and condition names a symbol (an axis, an
 * attribute or one of name/recipe/branch), and everything the recipe holds
 * lives in the loaded recipe's arena until recipe_loaded_free().
 *
 * No I/O beyond reading the one file, no globals.
 */
#ifndef KILN_RECIPE_COMPILE_H
#define KILN_RECIPE_COMPILE_H

#include "recipes/recipe_priv.h"

#include <jansson.h>
#include <stddef.h>

/* Characters of a recipe name (the "recipe:" key and the name a request
 * gives; each adds its own length and first-character rules). */
#define RECIPE_NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."

/* Symbols 0..2 are set by kiln for every variant; axes and attributes
 * follow. */
enum { SYM_NAME = 0, SYM_RECIPE = 1, SYM_BRANCH = 2 };
enum { RES_CORES, RES_RAM, RES_DUR, RES_TIMEOUT, RES_N };
/* The resource keys, and their defaults (-1: none, the scheduler's applies). */
extern const char *const res_keys[RES_N];
extern const long long res_default[RES_N];

struct symtab {
    const char **name;
    size_t n, cap;
};

/* A template is literal parts and {variable} parts, in order. */
struct tpart {
    int var; /* symbol; -1 literal, -2 not resolved yet, -3 unknown (reported) */
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

/* One condition on an axis or attribute: "sm: {ge: 80}". */
struct cond {
    const char *symname;
    int sym; /* -1 until resolved after the whole document is read */
    int op;
    const char **vals;
    size_t nvals;
    double num; /* the number lt, le, gt and ge compare with */
    int line, col;
    const char *ctx; /* where it was written, for messages ("rule 'when'") */
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

/* A recipe file read and compiled: owns the text, the node tree, the
 * compiled recipe and the diagnostics. ok is 1 when it compiled cleanly. */
struct loaded {
    struct arena a;
    struct diags d;
    struct recipe r;
    char *file; /* name for errors */
    char *text;
    size_t len;
    int ok;
};

/* Compile text (a copy is taken) named file in messages. Returns 0 or the
 * first problem's code; every problem is in L->d. L must be freed with
 * recipe_loaded_free() either way. */
int recipe_load_text(struct loaded *L, const char *file, const char *text, size_t len);
/* Same for a file: an oversized file is refused unread, a missing one is
 * KILN_ENOTFOUND; those are reported in L->d too. */
int recipe_load_file(struct loaded *L, const char *path);
void recipe_loaded_free(struct loaded *L);

/* The compiler's state while it reads one document (recipe_compile.c and
 * recipe_cond.c): every template and condition is registered so its names
 * can be resolved once the whole document is read. */
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

/* 1 when n is kind; else reports "'what' must be ..., not ..." and 0. */
int want(struct comp *C, const struct node *n, int kind, const char *what);
/* Absent, empty, "~" or "null". */
int is_null(const struct node *n);

/* Index of symbol s[0..len) in t, or -1. */
int sym_find(const struct symtab *t, const char *s, size_t len);
/* A template without {variables} renders to the same text everywhere. */
int tmpl_is_literal(const struct tmpl *t);
const char *tmpl_literal(const struct tmpl *t); /* only when tmpl_is_literal */
/* A whole number >= 0 and nothing else (resources, timeouts, driver_min);
 * 1 on success. */
int parse_ll(const char *s, long long *out);

#endif
