/* catalog.h - the embedded artifact catalog: signed, content-addressed blobs
 * with metadata, also served as a Nix binary cache.
 *
 * Contract:
 * - Layout under DATA/catalog/: blobs/sha256/ab/abcdef... (one file per
 *   sha256, content-addressed), blobs/tmp/ (uploads in progress, each held
 *   with flock by its writer), catalog.db (SQLite, WAL, user_version = schema
 *   version). Keys: DATA/keys/catalog.ed25519 (metadata signatures) and
 *   DATA/keys/nix-cache.sec (narinfo signatures; put a key from
 *   `nix-store --generate-binary-cache-key` there, or one is created). Both
 *   files are in Nix's "name:base64(seed+public)" format.
 * - Blobs arrive through an upload (begin/write/finish): bytes stream to a
 *   temp file while being hashed; finish checks the expected digest and
 *   size, fsyncs, renames into place and fsyncs the directory. A wrong
 *   digest, a short upload or abort leaves nothing behind.
 * - kiln_catalog_publish() records an entry for a blob in one transaction:
 *   metadata (name, version, recipe, branch, commit, platform, sm, capability,
 *   isa, cuda, driver_min, python, store_path, log_digest, selftest, nix...)
 *   plus digest and size, signed with ed25519 over the canonical JSON
 *   (JSON_COMPACT|JSON_SORT_KEYS) of that document. Idempotent: the same
 *   name+version+digest again is a no-op (*created = 0); a different digest
 *   under the same name+version is refused (KILN_ECONFLICT). With a "nix"
 *   object ({"store_path","references":[basenames],"deriver"}) the blob is a
 *   NAR and a signed narinfo is recorded in the same transaction.
 * - A crash at any point leaves an entry published completely or not at all;
 *   orphaned temp files (and, with gc, unreferenced blobs) are removed at open
 *   and by kiln_catalog_gc().
 * - Entries held in an unfinished release (catalog/release.h) are invisible
 *   to get, list, narinfo and NAR lookups until the release completes.
 * - kiln_catalog_verify() rehashes every blob and checks every signature.
 * - Names and versions: 1-200 chars of [A-Za-z0-9._+-], not starting with '.'.
 * - One struct kiln_catalog per thread; several processes may share a data
 *   dir (SQLite locking + flock).
 */
#ifndef KILN_CATALOG_H
#define KILN_CATALOG_H

#include "common/buf.h"
#include "common/err.h"
#include "common/token.h"

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

struct kiln_catalog;
struct kiln_catalog_upload;
struct kiln_http_req;

#define KILN_DIGEST_STR 72 /* "sha256:" + 64 hex + NUL */

int kiln_catalog_open(const char *data_dir, struct kiln_catalog **out, struct kiln_error *err);
void kiln_catalog_close(struct kiln_catalog *c);

/* Parse "sha256:<hex>" or bare 64-hex into lowercase hex (65 bytes). */
int kiln_catalog_parse_digest(const char *s, char hex[65]);
/* Name/version syntax check (see the contract). */
int kiln_catalog_name_valid(const char *s);

/* --- blobs --- */
/* expect_digest: "sha256:<hex>" or NULL; expect_size: -1 if unknown. */
int kiln_catalog_upload_begin(struct kiln_catalog *c, const char *expect_digest,
                              int64_t expect_size, struct kiln_catalog_upload **out,
                              struct kiln_error *err);
int kiln_catalog_upload_write(struct kiln_catalog_upload *u, const void *p, size_t n,
                              struct kiln_error *err);
/* Verifies and moves the blob into place; frees u in every case. */
int kiln_catalog_upload_finish(struct kiln_catalog_upload *u, char digest[KILN_DIGEST_STR],
                               uint64_t *size, struct kiln_error *err);
/* Removes the temp file and frees u. NULL is fine. */
void kiln_catalog_upload_abort(struct kiln_catalog_upload *u);
uint64_t kiln_catalog_upload_received(const struct kiln_catalog_upload *u);
/* Copy a file (or stdin for "-") into the blob store. */
int kiln_catalog_add_file(struct kiln_catalog *c, const char *path, const char *expect_digest,
                          char digest[KILN_DIGEST_STR], uint64_t *size, struct kiln_error *err);
/* 1 and size if the blob exists, 0 if not. */
int kiln_catalog_blob_have(struct kiln_catalog *c, const char *digest, uint64_t *size);
int kiln_catalog_blob_path(struct kiln_catalog *c, const char *digest, char *out, size_t outlen);

/* Remove a blob no entry references (undo of a refused publish). */
int kiln_catalog_blob_drop_unreferenced(struct kiln_catalog *c, const char *digest);

/* --- entries --- */
int kiln_catalog_publish(struct kiln_catalog *c, json_t *meta, const char *digest, int64_t *id,
                         int *created, struct kiln_error *err);
/* Same, held in release release_id (catalog/release.h): the entry stays
 * hidden until that release is complete. 0 = no release. */
int kiln_catalog_publish_held(struct kiln_catalog *c, json_t *meta, const char *digest,
                              int64_t release_id, int64_t *id, int *created,
                              struct kiln_error *err);
/* Entry as JSON (id, name, version, ..., digest, size, meta, signature, key). */
int kiln_catalog_get(struct kiln_catalog *c, int64_t id, json_t **out, struct kiln_error *err);
/* filters: object with optional string members name, version, sm, isa, cuda,
 * platform, branch, recipe, digest; limit (default 1000); "held": true also
 * lists entries held in unfinished releases (maintenance). */
int kiln_catalog_list(struct kiln_catalog *c, json_t *filters, json_t **out,
                      struct kiln_error *err);
/* 1 when the entry's stored signature matches its metadata, else 0. */
int kiln_catalog_entry_signature_ok(struct kiln_catalog *c, json_t *entry);

/* --- Nix cache --- */
int kiln_catalog_nix_cache_info(struct kiln_catalog *c, struct kiln_buf *out);
/* The narinfo of a published path (its entry visible), or of a staged path
 * in a published path's closure (its references, staged with it); with
 * staged, also of any other staged path. Only test hosts need those (the
 * farm's worker credentials, and admins): to anyone else a path of a held
 * release, or one no test passed yet, does not exist (404). */
int kiln_catalog_narinfo(struct kiln_catalog *c, const char *hashpart, int staged,
                         struct kiln_buf *out, struct kiln_error *err);
/* Blob path for nar/<nix32 filehash>.nar, only for NARs some narinfo names
 * (staged: as in kiln_catalog_narinfo). */
int kiln_catalog_nar_path(struct kiln_catalog *c, const char *file, int staged, char *out,
                          size_t outlen, uint64_t *size, struct kiln_error *err);
/* "name:base64" of the narinfo signing key (for trusted-public-keys). */
int kiln_catalog_nix_public_key(struct kiln_catalog *c, char *out, size_t outlen,
                                struct kiln_error *err);

/* --- maintenance --- */
/* problems (array of {"entry":id|null,"problem":"..."}) ; returns the count
 * of problems (>= 0) or a negative error. Orphan blobs go to notes. */
int kiln_catalog_verify(struct kiln_catalog *c, json_t **problems, json_t **notes,
                        struct kiln_error *err);
/* Remove temp files nobody holds and blobs no entry references that are
 * older than grace_s seconds. */
int kiln_catalog_gc(struct kiln_catalog *c, double grace_s, uint64_t *removed_files,
                    uint64_t *removed_bytes, struct kiln_error *err);

/* --- HTTP (scheduler/http.h) ---
 * Handles GET /api/v1/catalog[?name=&sm=&isa=&cuda=&platform=&branch=],
 * GET /api/v1/catalog/{id}, GET /api/v1/catalog/{id}/download (single Range,
 * 206/416), HEAD|GET /api/v1/catalog/blobs/sha256:<hex> (have it?),
 * PUT|POST /api/v1/catalog/blobs/sha256:<hex> (streamed upload, admin only),
 * POST /api/v1/catalog (manual publish {"digest":..,"meta":{..}}, admin only:
 * the router leaves an audit row), GET /nix-cache/nix-cache-info, /nix-cache/<hash>.narinfo,
 * /nix-cache/nar/<file>.nar. Returns 1 when it handled (answered or took
 * over) the request, 0 when the path is not the catalog's. role is what the
 * caller's token allows (the router authenticates). Call it from on_headers
 * (so uploads stream) and, for a request it declined there, not again. */
/* Called after a new entry was committed (not for idempotent no-ops), with
 * the entry id: the service emits its "catalog" SSE event and starts the
 * publisher (scheduler/publish.h) from here. */
void kiln_catalog_on_publish(struct kiln_catalog *c, void (*cb)(void *arg, int64_t id), void *arg);
/* HTTP Range "bytes=a-b" | "bytes=a-" | "bytes=-n" against size: 1 with
 * [*a, *b] (inclusive) for a satisfiable single range, 0 for none or one to
 * ignore (several ranges, malformed), -1 for unsatisfiable (416). */
int kiln_catalog_parse_range(const char *h, uint64_t size, uint64_t *a, uint64_t *b);
/* The loop downloads read files on (default: uv_default_loop()). */
void kiln_catalog_set_loop(struct kiln_catalog *c, uv_loop_t *loop);
uv_loop_t *kiln_catalog_loop(struct kiln_catalog *c);
/* staged: the caller may fetch staged, unpublished paths from /nix-cache
 * (kiln_catalog_narinfo). */
int kiln_catalog_http(struct kiln_catalog *c, struct kiln_http_req *req, enum kiln_role role,
                      int staged);

/* Import a path of this host's Nix store into the blob store (checked
 * against Nix's NarHash; nothing is dumped when the blob is already there),
 * and return the digest, size and the "nix" object for
 * kiln_catalog_publish(). Touches only files and subprocesses, so it may run
 * on the libuv thread pool; the publish itself (SQLite) belongs on the loop. */
int kiln_catalog_import_path(struct kiln_catalog *c, const char *store_path, char digest[72],
                             uint64_t *size, json_t **nix, struct kiln_error *err);

/* For the staging area (catalog/staging.h), which keeps its rows in this
 * catalog's database and its NARs in this blob store. Loop thread only. */
struct sqlite3;
struct kiln_narinfo;
struct sqlite3 *kiln_catalog_db(struct kiln_catalog *c);
const char *kiln_catalog_dir(struct kiln_catalog *c); /* DATA/catalog */
/* Sign ni with the farm's Nix cache key (DATA/keys/nix-cache.sec). */
int kiln_catalog_sign_narinfo(struct kiln_catalog *c, struct kiln_narinfo *ni,
                              struct kiln_error *err);

#endif
