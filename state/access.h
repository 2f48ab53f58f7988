/* access.h - the stored facts that authorisation needs: who holds a token,
 * which worker a credential is bound to, who owns a job, and the audit log.
 *
 * Contract:
 * - A principal is what a bearer token proves: its token id, its role and,
 *   for a credential the server issued to a worker at registration, that
 *   worker's id. A worker-role token without a worker id is a registration
 *   token: it may register a worker and nothing else (server/auth.h holds
 *   the rules; this file only stores and reads).
 * - Worker credentials are ordinary token rows (hashed with common/token.h,
 *   revocable with `kiln token revoke`). Issuing one for a worker deletes the
 *   worker's older credentials in the same transaction (rotation).
 * - The audit log is append-only; it keeps the newest KILN_ACCESS_AUDIT_KEEP
 *   rows (older ones are pruned as new ones arrive).
 * - Webhook delivery ids are remembered (per forge) in the store, so a replay
 *   is caught after a restart too; they are pruned after a retention window.
 * - Single-threaded like the store; every function returns KILN_OK or KILN_E*.
 */
#ifndef KILN_ACCESS_H
#define KILN_ACCESS_H

#include "common/err.h"
#include "common/token.h"
#include "state/store.h"

#include <jansson.h>
#include <stdint.h>

#define KILN_ACCESS_AUDIT_KEEP 100000

struct kiln_principal {
    int64_t token_id;    /* 0 = anonymous (no token) */
    enum kiln_role role; /* KILN_ROLE_NONE when anonymous */
    int64_t worker_id;   /* > 0: a credential bound to this worker */
    int scoped;          /* 1: the token has a scope (kiln_access_token_scope) */
};

/* KILN_EAUTH when no token has that hash. */
int kiln_access_identify(struct kiln_store *st, const char *hash_hex, struct kiln_principal *out,
                         struct kiln_error *err);

/* A token scope: {"recipes":[glob...],"branches":[glob...]}, either list
 * optional, each glob an fnmatch(3) pattern. A scoped token acts only on
 * jobs whose recipe matches one of its recipe globs (when it has any) and
 * whose branch matches one of its branch globs (when it has any). */
#define KILN_ACCESS_SCOPE_MAX 16 /* globs per list */

/* Add a token (only its hash is stored) with a scope (NULL: unscoped);
 * KILN_EINVAL for a scope that is not of the shape above. */
int kiln_access_token_add(struct kiln_store *st, enum kiln_role role, const char *name,
                          const char *hash_hex, const json_t *scope, double now,
                          struct kiln_error *err);

/* A token's scope (*out NULL when it has none). */
int kiln_access_token_scope(struct kiln_store *st, int64_t token_id, json_t **out,
                            struct kiln_error *err);

/* The recipe and branch a job was submitted for ("" when it has none). */
int kiln_access_job_place(struct kiln_store *st, int64_t job, char recipe[128], char branch[128],
                          struct kiln_error *err);

/* A fresh credential for worker_id (out gets the clear token, only the hash
 * is stored); the worker's older credentials stop working. */
int kiln_access_issue_worker_credential(struct kiln_store *st, int64_t worker_id,
                                        const char *worker_name, double now,
                                        char out[KILN_TOKEN_LEN], struct kiln_error *err);

/* The worker registered under name: *id (0 when there is none) and its state. */
int kiln_access_worker_by_name(struct kiln_store *st, const char *name, int64_t *id, char state[16],
                               struct kiln_error *err);

/* Who submitted a job (0: the server itself, e.g. a git push) and which
 * worker holds its current attempt (0: none). KILN_ENOTFOUND for no job. */
int kiln_access_job(struct kiln_store *st, int64_t job, int64_t *owner_token, int64_t *worker_id,
                    struct kiln_error *err);

/* The job's secret env entries ({} when none), as submitted: name ->
 * {"secret": value} or {"secret_ref": NAME}. Only the lease and the log
 * redaction read them. */
int kiln_access_job_secrets(struct kiln_store *st, int64_t job, json_t **out,
                            struct kiln_error *err);

/* One audit row: who (principal), from where, what (method and path) and
 * the outcome ("allowed" or the refusal's HTTP status, e.g. "403"). */
int kiln_access_audit(struct kiln_store *st, const struct kiln_principal *p, const char *peer,
                      const char *method, const char *path, const char *outcome, double now,
                      struct kiln_error *err);
/* {"audit":[{"id","at","token_id","role","peer","method","path","outcome"}],
 *  "next_before_id":N|null}, newest first. */
int kiln_access_audit_list(struct kiln_store *st, int64_t before_id, int limit, json_t **out,
                           struct kiln_error *err);

/* Remember a webhook delivery id: KILN_OK when new, KILN_EEXIST when it was
 * seen before (a replay). Ids older than keep_s are forgotten. */
int kiln_access_delivery_seen(struct kiln_store *st, const char *forge, const char *delivery,
                              double now, double keep_s, struct kiln_error *err);

#endif
