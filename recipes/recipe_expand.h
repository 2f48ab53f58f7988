/* recipe_expand.h - private to recipes/: the expander, a compiled recipe
 * (recipe_compile.h) -> its variants for one branch.
 *
 * Contract: expand_names() walks the matrix in order (first axis
 * outermost), then the include entries, and for each combination applies,
 * in this order: axis-value attributes, the include entry's attributes,
 * recipe attrs (as defaults), recipe env, the branch's attrs and env, then
 * every rule whose 'when' holds, in file order (later rules win); excludes
 * on axes alone are decided before any attribute is rendered. It records
 * every variant's name (in MODE_NAMES only that, for recipes that others
 * depend on; in MODE_JSON also the Variant JSON of those the where filter
 * keeps, and the dependency names it still has to resolve, see
 * recipe_deps.h). Problems go to the loaded recipe's diagnostics, each
 * mistake once however many variants share it; with stop_first set (the
 * default) expansion stops at the first. Bounded: the matrix size and the
 * variant count are checked against recipe.h's limits before any variant
 * is built, and one per-variant arena is reused.
 *
 * No I/O, no globals; an expansion borrows its loaded recipe.
 */
#ifndef KILN_RECIPE_EXPAND_H
#define KILN_RECIPE_EXPAND_H

#include "common/buf.h"
#include "common/err.h"
#include "recipes/recipe_compile.h"

#include <jansson.h>
#include <stdint.h>

/* Variant names of one expansion: an open-addressing hash set over
 * borrowed strings, so a duplicate name is found in O(1). */
struct nameset {
    const char **names;
    size_t n, cap;
    uint32_t *slots; /* index+1, 0 = empty */
    size_t nslots;
};

/* A dependency name rendered for variant vi, resolved once all names are
 * known. */
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
    json_t *jrecipe, *jbranch;
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

/* Start an expansion of L for branch (NULL: the default branch). An unknown
 * branch is KILN_ENOTFOUND, reported in L's diagnostics. Free with
 * exp_free() whatever it returns. */
int exp_init(struct exp *E, struct loaded *L, const char *branch, int mode);
void exp_free(struct exp *E);
/* Keep only variants that match where ("sm=90,isa=avx2|avx512"); a key that
 * is no axis or attribute is KILN_EINVAL in err. */
int parse_where(struct exp *E, const char *where, struct kiln_error *err);
/* Expand every variant (see the contract above). Returns 0 or the first
 * problem's code. */
int expand_names(struct exp *E);
/* 1 when expansion should stop: out of memory, the first problem with
 * stop_first, or the diagnostics list is full. */
int expand_enough(struct exp *E);
/* Index of name s among the variants, or -1. */
long ns_find(const struct nameset *ns, const char *s);

#endif
