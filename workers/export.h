/* export.h - the worker's side of publishing: export a Nix store path as a
 * NAR with its references and deriver, and upload files to kiln's catalog.
 *
 * Contract:
 * - These functions block (subprocesses, file I/O, HTTP through libcurl
 *   easy): call them from a thread (uv_queue_work) or a CLI, never on a loop.
 * - kiln_export_nar() runs `nix-store --dump PATH`, streaming its output to a
 *   temp file under tmpdir while hashing (fixed 1 MiB buffer, never the whole
 *   NAR in memory); the caller unlinks *out_file.
 * - kiln_export_path_info() runs `nix-store -q --references` and `--deriver`
 *   and returns {"store_path":..., "references":[...], "deriver":...|""}.
 * - kiln_export_push() uploads one file: it asks the server first
 *   (HEAD /api/v1/catalog/blobs/sha256:<hex>) and sends nothing when the blob
 *   is already there (*sent = 0), else PUTs it with the digest in the URL so a
 *   corrupt or short transfer is refused; then POSTs the metadata
 *   (publish is idempotent). *entry gets the catalog entry.
 * - kiln_export_store_path() = path info + push, with meta.nix filled, which
 *   makes the path substitutable from <server>/nix-cache. The digest is the
 *   NarHash Nix recorded (nix-store -q --hash/--size), so nothing is dumped
 *   when the server already has it; otherwise `nix-store --dump` is piped
 *   straight into the upload (no temp file) and the server verifies it.
 */
#ifndef KILN_EXPORT_H
#define KILN_EXPORT_H

#include "common/err.h"
#include "scheduler/catalog.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

int kiln_export_nar(const char *store_path, const char *tmpdir, char *out_file, size_t outlen,
                    char digest[72], uint64_t *size, struct kiln_error *err);
int kiln_export_path_info(const char *store_path, json_t **out, struct kiln_error *err);

/* server "http://host:port", token may be NULL; digest may be NULL (hashed
 * here). meta is borrowed. */
int kiln_export_push(const char *server, const char *token, const char *file, const char *digest,
                     json_t *meta, json_t **entry, int *sent, struct kiln_error *err);
int kiln_export_store_path(const char *server, const char *token, const char *store_path,
                           json_t *meta, json_t **entry, int *sent, struct kiln_error *err);

/* Server side (same host as the store): dump store_path into the catalog's
 * blob store (checked against Nix's NarHash), and return the digest, size and
 * the "nix" object for kiln_catalog_publish(). Touches only files and
 * subprocesses, so it may run on the libuv thread pool; the publish itself
 * (SQLite) belongs on the loop thread. */
int kiln_export_into_catalog(struct kiln_catalog *c, const char *store_path, char digest[72],
                             uint64_t *size, json_t **nix, struct kiln_error *err);

#endif
