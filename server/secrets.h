/* secrets.h - secret env values: resolved for the job, masked everywhere else.
 *
 * Contract (issue 16):
 * - A job's secret env entries (state/jobspec.h) are {"secret": value} or
 *   {"secret_ref": NAME}; a reference names a secret kept on the server, read
 *   from the server's environment variable KILN_SECRET_<NAME> when the job is
 *   leased (so rotating it needs no resubmission).
 * - The API, SSE and the page only ever see KILN_JOBSPEC_SECRET_MARK; the
 *   lease is the one place values are sent (to the worker that runs the job).
 * - Log chunks are masked before they are stored: every occurrence of a
 *   value becomes as many '*' (same length, so the log offsets the agent
 *   resends by stay right). A value split across two chunks is masked too:
 *   a chunk that ends with the first 4 or more bytes of a value, or starts
 *   with its last 4 or more, has those bytes masked. The price of that rule
 *   is a rare harmless 4+ byte run that looks like a value's edge being
 *   masked too. Values are at least 4 bytes (jobspec enforces it).
 * - Pure functions over JSON and buffers, plus getenv; no globals.
 */
#ifndef KILN_SECRETS_H
#define KILN_SECRETS_H

#include "common/err.h"

#include <jansson.h>
#include <stddef.h>

/* Resolve secret_env into *values (name -> string). A reference whose
 * variable is unset is KILN_ENOTFOUND naming it (values get what resolved). */
int kiln_secrets_resolve(json_t *secret_env, json_t **values, struct kiln_error *err);

/* KILN_OK when every reference in the jobs' secret_env can be resolved now. */
int kiln_secrets_check(json_t *jobs, struct kiln_error *err);

/* Mask every value of values (name -> string) in buf[0..len) in place. */
void kiln_secrets_mask(json_t *values, char *buf, size_t len);

#endif
