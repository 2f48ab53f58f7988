/* staging.h - the server's staging area: the NARs of build outputs, held so
 * that a test host on another machine can substitute them with real Nix
 * before anything is published (issue 15).
 *
 * Contract:
 * - It lives inside the catalog's store: a staged NAR is an ordinary
 *   content-addressed blob (blobs/sha256/..), its row is in catalog.db's
 *   `staged` table, and the bytes still on the way sit in
 *   DATA/catalog/staging/<hashpart>-<sha256 hex>.part. The size of that file
 *   is the offset an interrupted upload resumes from.
 * - A row is 'pending' (claimed by a build, not served) or 'staged'
 *   (received from the worker of that build, re-hashed whole and found equal
 *   to the NarHash and NarSize the worker reported, narinfo signed with the
 *   farm's Nix cache key). Only staged rows are served from /nix-cache.
 * - kiln_staging_plan(): one call for a build's whole output closure; it
 *   claims what the server lacks for (job, attempt) and says from which
 *   offset each path resumes. Paths already staged or published are skipped.
 *   Every path it names is remembered for the job (staged_uses), so that
 *   kiln_staging_check_outputs() can tell a build's own outputs.
 * - An upload: kiln_staging_upload_open() (claim and attempt must match;
 *   any offset up to the bytes held is accepted: the rest is cut off and
 *   resent), _write(), then _finish() on the thread pool (fsync, re-hash the
 *   whole file, compare, move into the blob store) and
 *   kiln_staging_commit() on the loop (sign, mark staged). A mismatch removes
 *   the bytes and the claim: nothing is staged or signed.
 * - kiln_staging_lookup(): what publish promotes (no second upload).
 * - kiln_staging_prune(): retention by age and total size, never touching a
 *   path in keep (nor its staged references) or one a published narinfo
 *   references.
 * - Everything but _finish() uses SQLite and runs on the loop thread.
 */
#ifndef KILN_CATALOG_STAGING_H
#define KILN_CATALOG_STAGING_H

#include "catalog/catalog.h"
#include "common/err.h"

#include <jansson.h>
#include <stdint.h>

struct kiln_staging_upload;

/* paths: [{"store_path","nar_hash","nar_size","references","deriver"}].
 * *missing: [{"store_path","offset","nar_size"}] still to send. */
int kiln_staging_plan(struct kiln_catalog *c, int64_t job, int64_t attempt, json_t *paths,
                      double now, json_t **missing, int *have, struct kiln_error *err);

/* Open the upload of hashpart's NAR from offset for (job, attempt); *size
 * gets the NarSize the worker claimed. KILN_ENOTFOUND: no such claim;
 * KILN_ESTATE: claimed since by another build of the same path (plan again
 * to take it back: the bytes are the same, the claim only says who may
 * write now); KILN_ECONFLICT: offset past the bytes held (err says where to
 * resume); KILN_EEXIST: staged already. */
int kiln_staging_upload_open(struct kiln_catalog *c, const char *hashpart, int64_t job,
                             int64_t attempt, uint64_t offset, uint64_t *size,
                             struct kiln_staging_upload **out, struct kiln_error *err);
int kiln_staging_upload_write(struct kiln_staging_upload *u, const void *p, size_t n,
                              struct kiln_error *err);
/* Bytes held so far (offset + written), and the NarSize claimed. */
uint64_t kiln_staging_upload_held(const struct kiln_staging_upload *u);
uint64_t kiln_staging_upload_size(const struct kiln_staging_upload *u);
/* Thread pool: once all bytes are held, check and move into the blob store.
 * KILN_EINVAL with a sentence when the bytes hash or size differs. Does not
 * free u. */
int kiln_staging_upload_finish(struct kiln_staging_upload *u, struct kiln_error *err);
/* Loop: after a successful finish, sign and mark staged; after a failed one,
 * drop the claim. Frees u. */
int kiln_staging_commit(struct kiln_staging_upload *u, int finished_ok, double now,
                        struct kiln_error *err);
/* Loop: close without finishing (the part file stays for a resume). */
void kiln_staging_upload_close(struct kiln_staging_upload *u);

/* The running hash of an upload that ends unfinished (a cut link), so the
 * resumed upload goes on hashing instead of reading the whole file back at
 * the end. _keep takes it from u (NULL when u has none); _resume hands it
 * to a new upload, which uses it only when it covers exactly the bytes
 * before its offset, and frees it otherwise. */
struct kiln_staging_hash;
struct kiln_staging_hash *kiln_staging_upload_keep_hash(struct kiln_staging_upload *u);
void kiln_staging_upload_resume_hash(struct kiln_staging_upload *u, struct kiln_staging_hash *h);
const char *kiln_staging_hash_part(const struct kiln_staging_hash *h); /* its part file */
const char *kiln_staging_upload_part(const struct kiln_staging_upload *u);
void kiln_staging_hash_free(struct kiln_staging_hash *h);

/* 1 when store_path is published or staged (a worker's plan need not send
 * it), else 0. */
int kiln_staging_have(struct kiln_catalog *c, const char *store_path);

/* 1 and digest, size, nix ({"store_path","references":[basenames],
 * "deriver"}) when store_path is staged; 0 when not; negative on error. */
int kiln_staging_lookup(struct kiln_catalog *c, const char *store_path, char digest[72],
                        uint64_t *size, json_t **nix, struct kiln_error *err);

/* May job's build report outputs (an array of store paths)? Refused with
 * KILN_ECONFLICT (409: the agent drops the job instead of stopping, as it
 * does on 403) and a sentence naming the path:
 * - a path staged (or claimed) for another job that no narinfo publishes,
 *   unless this job's own plan named it with the same, non-empty deriver
 *   (two builds of one derivation make one path);
 * - when this job planned anything, a path its plan did not name.
 * Published paths pass (Nix builds a derivation once; the server signed
 * them after their own test), and so do paths unknown here when the job
 * planned nothing (a farm without staging). The deriver is what the worker
 * said: the server does not evaluate Nix, so a worker that lies about it is
 * not caught here (docs/operations.md, trust model). */
int kiln_staging_check_outputs(struct kiln_catalog *c, int64_t job, json_t *outputs,
                               struct kiln_error *err);

/* Remove staged paths older than max_age_s (<= 0: no age limit), then the
 * oldest until the staged bytes are at most max_bytes (0: no size limit),
 * sparing keep (an array of store paths, and of job ids: what those jobs
 * staged) with their staged references, and paths a published narinfo
 * references. Claims older than max_age_s are
 * dropped with their part files. */
int kiln_staging_prune(struct kiln_catalog *c, double now, double max_age_s, uint64_t max_bytes,
                       json_t *keep, uint64_t *removed, uint64_t *removed_bytes,
                       struct kiln_error *err);

/* {"staged":[{store_path, digest, nar_size, job, state, staged_at}], "bytes":N}. */
int kiln_staging_list(struct kiln_catalog *c, json_t **out, struct kiln_error *err);

#endif
