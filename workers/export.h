/* export.h - the worker's side of publishing: upload a Nix store path (as a
 * NAR with its references and deriver) or a file to kiln's catalog.
 *
 * Contract:
 * - These functions block (subprocesses, file I/O, HTTP through libcurl
 *   easy): call them from a thread (uv_queue_work) or a CLI, never on a loop.
 * - NARs themselves come from nix/nar.h (streamed, never whole in memory).
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

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* server "http://host:port", token may be NULL; digest may be NULL (hashed
 * here). meta is borrowed. */
int kiln_export_push(const char *server, const char *token, const char *file, const char *digest,
                     json_t *meta, json_t **entry, int *sent, struct kiln_error *err);
int kiln_export_store_path(const char *server, const char *token, const char *store_path,
                           json_t *meta, json_t **entry, int *sent, struct kiln_error *err);

#endif
