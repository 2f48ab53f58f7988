/* nixcache.h - Nix binary cache format: nix32, ed25519 keys in Nix's format,
 * narinfo text, fingerprints and signatures.
 *
 * Contract:
 * - nix32 is Nix's base-32 ("0123456789abcdfghijklmnpqrsvwxyz", least
 *   significant 5 bits last), so kiln_nix32(sha256) equals
 *   `nix-hash --type sha256 --to-base32 <hex>`.
 * - Keys are Nix's files: secret "name:base64(32-byte seed + 32-byte public)"
 *   (as `nix-store --generate-binary-cache-key` writes), public
 *   "name:base64(32-byte public)". kiln_nixkey_load_or_create() makes one on
 *   first use (file mode 0600, written atomically) so a fresh data dir works.
 * - A narinfo signature is ed25519 over the fingerprint
 *   "1;<storepath>;sha256:<nix32 narhash>;<narsize>;<refs as full paths, comma-joined>",
 *   written "Sig: <keyname>:<base64 signature>": what `nix-store -r` checks
 *   with require-sigs and trusted-public-keys.
 * - kiln_narinfo_parse() reads narinfo text (from clients or the DB) with
 *   limits (64 KiB, 4096 references) and never trusts it: store paths must be
 *   /nix/store/<32 nix32 chars>-<name> with Nix's name characters.
 * - The cache is served at /nix-cache/ by the catalog's HTTP handler
 *   (scheduler/catalog.h); NARs are stored uncompressed (Compression: none,
 *   FileHash == NarHash), content-addressed in the catalog's blob store.
 */
#ifndef KILN_NIXCACHE_H
#define KILN_NIXCACHE_H

#include "common/buf.h"
#include "common/err.h"

#include <stddef.h>
#include <stdint.h>

#define KILN_NIX_STORE_DIR "/nix/store"
#define KILN_NIX32_SHA256_LEN 52 /* chars for 32 bytes */
#define KILN_NIX_HASHPART_LEN 32
#define KILN_NIX_MAX_REFS 4096
#define KILN_NARINFO_MAX 65536

/* out must hold kiln_nix32_len(n) + 1 bytes. */
size_t kiln_nix32_len(size_t n);
void kiln_nix32(const unsigned char *in, size_t n, char *out);
/* Decode nix32 of exactly outlen bytes; KILN_EPARSE on bad input. */
int kiln_nix32_decode(const char *s, unsigned char *out, size_t outlen);

/* Standard base64 (with padding). out needs 4*((n+2)/3)+1 bytes. */
void kiln_base64(const unsigned char *in, size_t n, char *out);
/* Decodes exactly outlen bytes or fails with KILN_EPARSE. */
int kiln_base64_decode_exact(const char *s, unsigned char *out, size_t outlen);

struct kiln_nixkey {
    char name[128];
    unsigned char seed[32];
    unsigned char pub[32];
};

/* Parse "name:base64(64)" secret key text (trailing whitespace allowed). */
int kiln_nixkey_parse_secret(const char *text, struct kiln_nixkey *k, struct kiln_error *err);
int kiln_nixkey_load(const char *path, struct kiln_nixkey *k, struct kiln_error *err);
/* Load path; if missing, generate a key named `name` and write it (0600)
 * plus "<path>.pub" (public key line). */
int kiln_nixkey_load_or_create(const char *path, const char *name, struct kiln_nixkey *k,
                               struct kiln_error *err);
/* "name:base64(pub)" into out (>= 200 bytes). */
int kiln_nixkey_public_line(const struct kiln_nixkey *k, char *out, size_t outlen);
/* ed25519 signature (64 bytes) of msg. */
int kiln_ed25519_sign(const struct kiln_nixkey *k, const void *msg, size_t len,
                      unsigned char sig[64]);
/* 1 if sig verifies under pub, 0 if not, negative on error. */
int kiln_ed25519_verify(const unsigned char pub[32], const void *msg, size_t len,
                        const unsigned char sig[64]);

/* A store path's information as the narinfo carries it. */
struct kiln_narinfo {
    char store_path[512];
    char url[256];
    char compression[32];
    unsigned char file_hash[32];
    uint64_t file_size;
    unsigned char nar_hash[32];
    uint64_t nar_size;
    char **refs; /* basenames, nrefs of them */
    size_t nrefs;
    char deriver[512]; /* basename or "" */
    char sig[512];     /* "keyname:base64" or "" (first Sig line) */
};

/* Checks /nix/store/<hash>-<name> (or a basename when basename=1). */
int kiln_nix_store_path_valid(const char *p, int basename);
/* The 32-char hash part of a store path (full or basename) into out[33]. */
int kiln_nix_hashpart(const char *p, char out[KILN_NIX_HASHPART_LEN + 1]);

/* Fingerprint "1;path;sha256:..;size;refs" into out (reset first). */
int kiln_narinfo_fingerprint(const struct kiln_narinfo *ni, struct kiln_buf *out);
/* Fill ni->sig with "keyname:base64" over the fingerprint. */
int kiln_narinfo_sign(struct kiln_narinfo *ni, const struct kiln_nixkey *k);
/* 1 if ni->sig is a valid signature by pub (and names keyname), else 0. */
int kiln_narinfo_verify(const struct kiln_narinfo *ni, const char *keyname,
                        const unsigned char pub[32]);
/* narinfo text (URL nar/<nix32 filehash>.nar, Compression none). */
int kiln_narinfo_format(const struct kiln_narinfo *ni, struct kiln_buf *out);
int kiln_narinfo_parse(const char *text, size_t len, struct kiln_narinfo *ni,
                       struct kiln_error *err);
/* Add a reference basename (copied); validates it. */
int kiln_narinfo_add_ref(struct kiln_narinfo *ni, const char *basename);
void kiln_narinfo_free(struct kiln_narinfo *ni);

#endif
