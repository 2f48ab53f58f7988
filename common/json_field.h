/* json_field.h - reading typed fields out of jansson values, with one error
 * sentence per problem that names the field.
 *
 * Contract:
 * - Every reader returns KILN_OK, or KILN_EINVAL (wrong type, out of range,
 *   missing when required) / KILN_ELIMIT (string longer than the buffer),
 *   and fills err with "<name>: <problem>", for example
 *   "cores: must be an integer from 1 to 4096" or "repos: url: is required".
 *   `name` is whatever identifies the field to a person: a key, a path like
 *   "gpus[0].sm", or a prefixed key like "config: server".
 * - Value readers (kiln_json_want_*) check a value the caller already has;
 *   a NULL value is "missing" and fails like a wrong type.
 * - Field readers (kiln_json_field_*) look `key` up in object `o`: an absent
 *   or JSON null field gives the default (or "<key>: is required" when
 *   required), anything else goes through the value reader.
 * - Strings are rejected when they contain NUL bytes: C code would silently
 *   see a shorter string than the sender meant.
 * - Returned `const char *` point into the JSON value and live as long as it.
 * - kiln_json_only_keys() is the one unknown-key check for every config and
 *   API object, so each names the stray key and the keys it knows alike.
 * - kiln_json_str() is the lenient getter for places where a missing or
 *   non-string field simply means "not given" (webhook payloads, rows kiln
 *   wrote itself); it never fails.
 * No I/O, no globals.
 */
#ifndef KILN_JSON_FIELD_H
#define KILN_JSON_FIELD_H

#include "common/err.h"

#include <jansson.h>
#include <stddef.h>

/* The string value of o[key], or NULL when absent or not a string. */
const char *kiln_json_str(const json_t *o, const char *key);

/* v must be a string without NUL bytes. */
int kiln_json_want_str(const json_t *v, const char *name, const char **out, struct kiln_error *err);
/* v must be a string that fits out[n] (with its NUL); copied into out. */
int kiln_json_want_strcpy(const json_t *v, const char *name, char *out, size_t n,
                          struct kiln_error *err);
/* v must be an integer in [lo, hi]. With text_ok, a string holding a whole
 * number is accepted too (YAML config files quote numbers freely). */
int kiln_json_want_int(const json_t *v, const char *name, long long lo, long long hi, int text_ok,
                       long long *out, struct kiln_error *err);
/* v must be a number (integer or real) in [lo, hi]. */
int kiln_json_want_number(const json_t *v, const char *name, double lo, double hi, double *out,
                          struct kiln_error *err);

/* o[key] as a string; *out = NULL when absent and not required. */
int kiln_json_field_str(const json_t *o, const char *key, int required, const char **out,
                        struct kiln_error *err);
/* o[key] copied into out[n]; out is left untouched when absent and not required. */
int kiln_json_field_strcpy(const json_t *o, const char *key, int required, char *out, size_t n,
                           struct kiln_error *err);
/* o[key] as an integer in [lo, hi]; *out = def when absent. */
int kiln_json_field_int(const json_t *o, const char *key, long long lo, long long hi, long long def,
                        long long *out, struct kiln_error *err);
/* o[key] as true/false (1/0); *out = def when absent. */
int kiln_json_field_bool(const json_t *o, const char *key, int def, int *out,
                         struct kiln_error *err);
/* o[key] as an array (borrowed); *out = NULL when absent and not required. */
int kiln_json_field_array(const json_t *o, const char *key, int required, json_t **out,
                          struct kiln_error *err);

/* Every key of object o must be in the NULL-ended list known. The first that
 * is not fails with KILN_EINVAL and "<where>: unknown key '<key>' (known: a,
 * b, c)"; where may be NULL or "" for a top-level object. A non-object
 * passes: its type is the caller's check. */
int kiln_json_only_keys(const json_t *o, const char *const *known, const char *where,
                        struct kiln_error *err);

#endif
