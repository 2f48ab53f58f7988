/* recipe_cond.h - private to recipes/: conditions on axes and attributes,
 * as "when:" of rules and dependencies and as exclude entries write them.
 *
 * Contract: parse_condset() compiles a mapping of conditions, all of which
 * must hold: "key: value" (equality, or a comparison written in front:
 * "<= 80", ">= 90", "!= none", "< 75", "> 75"), "key: [a, b]" (one of) or
 * "key: {OP: value}" with OP one of eq, ne, in, not_in, lt, le, gt, ge.
 * Problems go to the compiler's diagnostics; the keys are resolved to
 * symbols later, with the templates (recipe_compile.c). Evaluation is pure:
 * an attribute a variant does not have satisfies only ne and not_in, and a
 * value that is not a number is neither less nor greater than one.
 */
#ifndef KILN_RECIPE_COND_H
#define KILN_RECIPE_COND_H

#include "recipes/recipe_compile.h"

/* Compile n (NULL or empty: no conditions, always holds) into cs; ctx names
 * the place in messages. Nonzero when n is not a mapping or out of memory. */
int parse_condset(struct comp *C, const struct node *n, struct condset *cs, const char *ctx);
/* Register c for name resolution at the end of the document. */
int reg_cond(struct comp *C, struct cond *c);

/* Does c (every condition of cs) hold for the variant whose value of
 * symbol i is val[i] (NULL: not set)? */
int cond_holds(const char *const *val, const struct cond *c);
int condset_holds(const char *const *val, const struct condset *cs);

#endif
