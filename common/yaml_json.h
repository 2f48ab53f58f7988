/* yaml_json.h - read a YAML document into a jansson tree (configs, farm files).
 *
 * Contract: kiln_yaml_to_json() parses one YAML document (libyaml) into a
 * json_t tree: mappings -> objects (keys must be scalars), sequences ->
 * arrays, plain scalars -> null/true/false/integer/real when they look like
 * one (YAML 1.2 core schema), quoted scalars -> strings. Errors name
 * "file:line:col: sentence" in err->msg (lines and columns from 1).
 * Hostile input is bounded: text larger than KILN_YAML_MAX_BYTES, nesting
 * deeper than KILN_YAML_MAX_DEPTH, or more than KILN_YAML_MAX_NODES nodes
 * after alias expansion (billion-laughs) is refused with KILN_ELIMIT.
 * Aliases share the anchored json_t (json_incref), they are not copied.
 * Recipes have their own parser (recipes/) because they need marks per node.
 */
#ifndef KILN_YAML_JSON_H
#define KILN_YAML_JSON_H

#include "common/err.h"

#include <jansson.h>
#include <stddef.h>

#define KILN_YAML_MAX_BYTES (16u << 20)
#define KILN_YAML_MAX_DEPTH 64
#define KILN_YAML_MAX_NODES 1000000

/* name: used in error messages (a path, or "<config>"). If text is NULL the
 * file at `name` is read (bounded). *out is a new reference on success. */
int kiln_yaml_to_json(const char *name, const char *text, size_t len, json_t **out,
                      struct kiln_error *err);

#endif
