/* auth.h - the authorisation rules of the service, in one place.
 *
 * Who holds what (docs/RELIABILITY.md "Trust model"):
 *   anonymous    - nothing, or what a read token may see with allow_anonymous_read
 *   read         - GET (no secrets)
 *   submit       - read + submit; cancel and retry only the jobs it submitted;
 *                  a scoped one (--recipe/--branch) only inside its scope
 *   registration - a worker-role token made by `kiln token create --role worker`:
 *                  it may register a worker and nothing else
 *   worker       - the credential the server issues at registration, bound to
 *                  one worker: read + heartbeat and lease as that worker, and
 *                  log and report for jobs whose current attempt it holds
 *   admin        - everything, including acting on anyone's jobs and
 *                  replacing a live worker (?replace=1); it is not a worker
 *
 * Contract: pure decisions over a principal (state/access.h) and, where a
 * rule needs them, facts read from the store. Each function returns KILN_OK
 * or the refusal: KILN_EAUTH (401), KILN_EPERM (403), KILN_ECONFLICT (409),
 * with a sentence naming the reason. Nothing here answers HTTP.
 */
#ifndef KILN_AUTH_H
#define KILN_AUTH_H

#include "common/err.h"
#include "state/access.h"
#include "state/store.h"

/* Principal from an Authorization header value (NULL: anonymous): "Bearer
 * TOKEN", or "Basic base64(user:TOKEN)" as Nix sends from a netrc. A header
 * that is present but not a known token is KILN_EAUTH. */
int kiln_auth_identify(struct kiln_store *st, const char *authorization, struct kiln_principal *p,
                       struct kiln_error *err);

/* 1 when p is a registration token (a worker-role token bound to no worker). */
int kiln_auth_is_registration(const struct kiln_principal *p);

/* May p call a route that needs role `need` (KILN_ROLE_NONE: open to all)?
 * is_register marks POST /api/v1/workers/register, the one route a
 * registration token may call. */
int kiln_auth_route(const struct kiln_principal *p, enum kiln_role need, int anon_read,
                    int is_register, struct kiln_error *err);

/* Cancel or retry: the job's submitter or an admin (ENOTFOUND for no job),
 * and, for a scoped token, a job inside its scope (kiln_auth_scope). */
int kiln_auth_job_owner(struct kiln_store *st, const struct kiln_principal *p, int64_t job,
                        struct kiln_error *err);

/* May p act on a job of this recipe and branch ("" when the job has none)?
 * An unscoped token may; a scoped one (state/access.h) only inside its
 * scope, else KILN_EPERM with a sentence naming the scope. */
int kiln_auth_scope(struct kiln_store *st, const struct kiln_principal *p, const char *recipe,
                    const char *branch, struct kiln_error *err);

/* Lease and heartbeat as worker_id: only that worker's own credential. */
int kiln_auth_worker_self(const struct kiln_principal *p, int64_t worker_id,
                          struct kiln_error *err);

/* Log and report for a job: its current attempt must be leased to p's worker
 * (KILN_ECONFLICT otherwise: a stale attempt of a requeued job looks the same
 * as someone else's job, and the agent drops the job on 409). */
int kiln_auth_job_worker(struct kiln_store *st, const struct kiln_principal *p, int64_t job,
                         struct kiln_error *err);

/* Registering under name: a new name or one whose worker is lost or offline
 * is free; a live worker's name only for that worker's own credential
 * (re-registration rotates it) or an admin passing replace. */
int kiln_auth_register(struct kiln_store *st, const struct kiln_principal *p, const char *name,
                       int replace, struct kiln_error *err);

/* 1 when a request leaves an audit row: every method but GET and HEAD,
 * except the workers' high-rate protocol calls (heartbeat, lease, log
 * chunks), whose effects are recorded as events instead. */
int kiln_auth_audited(const char *method, const char *path);

#endif
