/* affected.h - which variants a push affects.
 *
 * Contract: kiln_affected() compares the variant expansions of the previous
 * and the new commit (JSON arrays in the "Variant JSON" shape of
 * docs/API.md; old may be NULL for a first build) and the list of files the
 * push changed, and returns an object {variant name: reason} of exactly the
 * variants to build:
 *   - new in this commit                         "new variant"
 *   - its expansion differs (command, env, ...)  "recipe changed: env"
 *   - a changed file matches one of its inputs   "input .flox/pkgs/lib/x.nix changed"
 *   - it depends (transitively) on one of those  "depends on <name>"
 * Variants that vanished are not returned (the caller may cancel them).
 * Globs: one star and ? stay within one path segment, a double star spans segments,
 * "[abc]" classes; matching is on the repository-relative path.
 */
#ifndef KILN_AFFECTED_H
#define KILN_AFFECTED_H

#include "common/err.h"

#include <jansson.h>

int kiln_glob_match(const char *pattern, const char *path);

int kiln_affected(json_t *old_variants, json_t *new_variants, json_t *changed_files, json_t **out,
                  struct kiln_error *err);

#endif
