/* recipe_priv.h - private to recipes/: the marked YAML node tree, the arena
 * and the diagnostics list shared by recipe_yaml.c and recipe.c. Other
 * modules use recipe.h only. */
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
