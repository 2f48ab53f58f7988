/* recipe.h - recipes: one YAML file that says once what a family of variants is.
 *
 * Contract: a recipe (format in docs/recipes.md) names axes (ordered value
 * lists whose values may carry attributes), include/exclude lists, rules that
 * set attributes, env and resources when conditions on axes/attributes hold,
 * templates ({var} substitution) for the variant name, command, description
 * and header, dependencies on variants of this or other recipes, inputs
 * globs, a selftest spec, a publish spec and per-branch settings.
 *
 * kiln_recipe_expand_file()/_text() turn it into a jansson array of variant
 * objects in the "Variant JSON" shape of docs/API.md, in matrix order (first
 * axis outermost). branch NULL = the recipe's default_branch. where is
 * "key=value,key=value" ("sm=90,isa=avx512"; a value may list alternatives
 * "sm=90|100") and keeps only variants whose axes/attributes match; NULL or
 * "" keeps all. Cross-recipe dependencies ("recipe: pytorch") are read from
 * <dir of the recipe file>/<recipe>.yaml.
 *
 * Errors: every problem is reported as "file:line:col: error: sentence" (line
 * and column 1-based, pointing into the YAML). Expand stops at the first
 * problem (KILN_EPARSE for YAML syntax, KILN_ELIMIT for size/alias/nesting/
 * matrix limits, KILN_ENOTFOUND for a missing file or unknown branch,
 * KILN_EINVAL for everything else) and puts that line in err->msg. kiln_recipe_check_*() collect
 * every problem over every branch.
 *
 * Limits (hostile input ends in a clear error, fast, in bounded memory):
 * file size KILN_RECIPE_MAX_BYTES, nesting KILN_RECIPE_MAX_DEPTH, expanded
 * YAML nodes (aliases counted as copies) KILN_RECIPE_MAX_NODES, matrix
 * combinations KILN_RECIPE_MAX_COMBOS, variants produced
 * KILN_RECIPE_MAX_VARIANTS, one rendered template KILN_RECIPE_MAX_STR.
 *
 * Sharing: string and integer leaves that are the same in every variant
 * (literal attributes, axis values, resources) are one reference-counted
 * jansson value shared by all variants of an expansion. Replace values with
 * json_object_set*() freely; do not modify a leaf in place (json_string_set,
 * json_integer_set).
 *
 * No global state; all functions are reentrant.
 */
#ifndef KILN_RECIPE_H
#define KILN_RECIPE_H

#include "common/err.h"

#include <jansson.h>
#include <stddef.h>

#define KILN_RECIPE_MAX_BYTES (4u * 1024u * 1024u)
#define KILN_RECIPE_MAX_DEPTH 64
#define KILN_RECIPE_MAX_NODES 200000ul
#define KILN_RECIPE_MAX_COMBOS 1000000ul
/* ~8.5 KB of JSON per variant: 10,000 variants stay under 100 MB. */
#define KILN_RECIPE_MAX_VARIANTS 10000ul
#define KILN_RECIPE_MAX_STR 65536u

/* Expand a recipe file. On success *variants_out is a new JSON array the
 * caller json_decref()s. */
int kiln_recipe_expand_file(const char *path, const char *branch, const char *where,
                            json_t **variants_out, struct kiln_error *err);

/* Same, for text already in memory; name_for_errors is used in messages
 * ("file:line:col") and, when it is a path, to find other recipes that
 * dependencies name. */
int kiln_recipe_expand_text(const char *name_for_errors, const char *text, size_t len,
                            const char *branch, const char *where, json_t **variants_out,
                            struct kiln_error *err);

/* Check a recipe: parse it and expand every branch it declares (or the
 * default), collecting all problems. Returns 0 when there are none, else
 * KILN_EINVAL (or the code of the first problem) with err set to the first
 * problem. *problems_out (always set on return when non-NULL) is a new JSON
 * array of {"file","line","col","message","text"} where text is the full
 * "file:line:col: error: sentence" line; sorted by line, column. */
int kiln_recipe_check_file(const char *path, json_t **problems_out, struct kiln_error *err);
int kiln_recipe_check_text(const char *name_for_errors, const char *text, size_t len,
                           json_t **problems_out, struct kiln_error *err);

/* Compare two variant arrays (as expand returns) by name. *diff_out is
 * {"added":[name...],"removed":[name...],
 *  "changed":[{"name":n,"fields":["env.USE_CUDNN","attrs.python",...]}],
 *  "unchanged":N}. Field paths are dotted one level into objects. */
int kiln_recipe_diff(const json_t *old_variants, const json_t *new_variants, json_t **diff_out,
                     struct kiln_error *err);

/* The API's "where" object ({"sm":"90","isa":["avx2","avx512"]}, values
 * strings, numbers or lists of them) as the where string expand takes
 * ("sm=90,isa=avx2|avx512"). NULL or an empty object gives "". */
int kiln_recipe_where_from_json(const json_t *where, char *out, size_t outlen,
                                struct kiln_error *err);

/* What the server's POST /jobs {"recipe"|"recipe_yaml","branch","where"}
 * and GET /recipes/{name}/expand need in one call: expand
 * <recipes_dir>/<name>.yaml, or inline_yaml when it is non-NULL (errors then
 * read "<name or inline>.yaml:line:col", and its dependencies on other
 * recipes are found in recipes_dir). where is the API's JSON object (or
 * NULL). name must be a plain recipe name (letters, digits, . _ -, no
 * slash): anything else is KILN_EINVAL; a missing recipe file is
 * KILN_ENOTFOUND ("no recipe 'x' in DIR"). */
int kiln_recipe_expand_request(const char *recipes_dir, const char *name, const char *inline_yaml,
                               const char *branch, const json_t *where, json_t **variants_out,
                               struct kiln_error *err);

/* The recipe's name ("recipe:" key) without expanding; for listings. */
int kiln_recipe_name_file(const char *path, char *out, size_t outlen, struct kiln_error *err);

#endif
