/* recipe_priv.h - private to recipes/: the marked YAML node tree, the arena
 * and the diagnostics list that every stage of the recipe module shares.
 * Other modules use recipe.h only.
 *
 * The module, one stage per file, each feeding the next:
 *   recipe_yaml.c     YAML text -> node tree with line:col (this header)
 *   recipe_compile.c  node tree -> checked struct recipe (recipe_compile.h)
 *   recipe_cond.c     conditions: compiled with the recipe, tested per
 *                     variant (recipe_cond.h)
 *   recipe_expand.c   recipe -> variants of one branch (recipe_expand.h)
 *   recipe_deps.c     dependencies between variants, cycles (recipe_deps.h)
 *   recipe.c          the entry points of recipe.h; problems -> errors
 *   recipe_diff.c     two expansions compared (recipe.h only)
 */
#ifndef KILN_RECIPE_PRIV_H
#define KILN_RECIPE_PRIV_H

#include "recipes/recipe.h"

#include <stddef.h>

struct arena {
    struct ar_chunk *head;
    size_t total;
};
void *ar_alloc(struct arena *a, size_t n); /* zeroed, 16-aligned; NULL on OOM */
char *ar_strndup(struct arena *a, const char *s, size_t n);
void ar_reset(struct arena *a);
void ar_free(struct arena *a);

enum { N_SCALAR, N_SEQ, N_MAP };

/* A YAML node. Mappings keep keys and values interleaved in kids (n pairs,
 * 2n kids), in file order. Aliased nodes are shared, not copied. */
struct node {
    int kind;
    int line, col; /* 1-based */
    int plain;     /* plain (unquoted) scalar */
    int style;
    char *s; /* scalar text, NUL-terminated */
    size_t len;
    struct node **kids;
    size_t n;
    size_t weight; /* nodes in this subtree with aliases expanded */
};

#define DG_MAX 200

struct diag {
    const char *file;
    int line, col;
    int code;
    char *msg;
    size_t more; /* further variants with the same problem here (dg_once) */
};

struct diags {
    const char *file;
    struct diag *v;
    size_t n, cap;
    size_t dropped;
    int oom;
};

/* Add a problem (deduplicated); returns code (KILN_EINVAL when 0). */
int dg_add(struct diags *d, int code, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Like dg_add, for problems found per variant: a second problem at the same
 * line:col only counts in ->more, so check lists each mistake once. */
int dg_once(struct diags *d, int code, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void dg_free(struct diags *d);

/* Closest candidate to word within a small edit distance, or NULL. */
const char *did_you_mean(const char *word, const char *const *cands, size_t n);

/* Parse YAML text into a node tree in arena a, enforcing the limits of
 * recipe.h; problems go to d. */
int yaml_load(struct arena *a, struct diags *d, const char *text, size_t len, struct node **root);

/* Line:column of needle inside scalar n of source src (falls back to n's
 * own mark). */
void scalar_pos(const char *src, size_t srclen, const struct node *n, const char *needle, int *line,
                int *col);

#endif
