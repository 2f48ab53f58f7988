/* nar.h - Nix store paths as NARs, through the `nix-store` command.
 *
 * Contract:
 * - Every function blocks (subprocesses, file I/O): call them from a thread
 *   (uv_queue_work), a worker or a CLI, never on an event loop.
 * - Nothing is ever held whole in memory: dumps stream through a fixed
 *   1 MiB buffer.
 * - Used by the worker (uploads), the catalog (imports from this host's
 *   store) and the CLI; it knows nothing of any of them.
 */
#ifndef KILN_NIX_NAR_H
#define KILN_NIX_NAR_H

#include "common/err.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Takes each chunk of a dump; an error stops the dump and is returned. */
typedef int (*kiln_nar_sink)(void *arg, const void *data, size_t n, struct kiln_error *err);
/* `nix-store --dump PATH` streamed through sink, 1 MiB at a time; KILN_OK
 * only when the sink took everything and nix-store exited 0. */
int kiln_nar_dump(const char *store_path, kiln_nar_sink sink, void *arg, struct kiln_error *err);
/* `nix-store --dump PATH` into a temp file under tmpdir, hashed on the way;
 * the caller unlinks *out_file. digest is "sha256:<hex>". */
int kiln_nar_dump_file(const char *store_path, const char *tmpdir, char *out_file, size_t outlen,
                       char digest[72], uint64_t *size, struct kiln_error *err);
/* {"store_path":..., "references":[...], "deriver":...|""} from nix-store -q. */
int kiln_nar_path_info(const char *store_path, json_t **out, struct kiln_error *err);
/* NarHash ("sha256:<hex>") and NarSize as the local Nix database records them. */
int kiln_nar_hash_size(const char *store_path, char digest[72], uint64_t *size,
                       struct kiln_error *err);

/* The closure of paths (an array of store paths) as one array of
 * {"store_path","nar_hash":"sha256:<hex>","nar_size","references":[full
 * paths],"deriver":"/nix/store/..drv"|""}, from two commands for the whole
 * closure (`nix-store -qR`, `nix-store --dump-db`), however many paths. */
int kiln_nar_closure(json_t *paths, json_t **out, struct kiln_error *err);
/* Parse `nix-store --dump-db` text (path, hex hash, size, deriver, count,
 * references; repeated) into that array. KILN_EPARSE on anything else. */
int kiln_nar_parse_dump_db(char *text, json_t **out, struct kiln_error *err);

#endif
