/* recipe_deps.h - private to recipes/: the second pass of an expansion,
 * resolving the dependencies that expand_names() (recipe_expand.h)
 * rendered.
 *
 * Contract: a dependency must name an existing variant of this recipe or of
 * the recipe it names (read from the directory of this recipe's file),
 * unless it is optional; the names are appended to each kept variant's
 * "depends" array in the order the recipe lists them. A cycle among this
 * recipe's variants is one problem that shows the path ("a -> b -> a").
 * Problems go to the expansion's diagnostics. Reads only the other recipe
 * files; no globals.
 */
#ifndef KILN_RECIPE_DEPS_H
#define KILN_RECIPE_DEPS_H

#include "recipes/recipe_expand.h"

/* Returns 0, or the first problem's code (KILN_ENOMEM when out of memory). */
int resolve_deps(struct exp *E);

#endif
