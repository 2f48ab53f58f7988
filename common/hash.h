/* hash.h - digests, HMAC, random bytes and constant-time comparison (OpenSSL).
 *
 * Contract: hex outputs are lowercase and NUL-terminated; out buffers must be
 * KILN_SHA256_HEX (65) bytes. Streaming hashing of files reads through a fixed
 * 64 KiB buffer, never the whole file.
 */
#ifndef KILN_HASH_H
#define KILN_HASH_H

#include <stddef.h>
#include <stdint.h>

#define KILN_SHA256_LEN 32
#define KILN_SHA256_HEX 65

void kiln_hex(const unsigned char *in, size_t n, char *out /* 2n+1 */);
/* Decode hex; returns KILN_OK or KILN_EPARSE. */
int kiln_unhex(const char *hex, unsigned char *out, size_t outlen);

int kiln_sha256(const void *p, size_t n, unsigned char out[KILN_SHA256_LEN]);
int kiln_sha256_hex(const void *p, size_t n, char out[KILN_SHA256_HEX]);
/* Hash a file; size_out (optional) gets its length. */
int kiln_sha256_file_hex(const char *path, char out[KILN_SHA256_HEX], uint64_t *size_out);
int kiln_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
                     unsigned char out[KILN_SHA256_LEN]);
/* Cryptographically random bytes. */
int kiln_random_bytes(unsigned char *out, size_t n);
/* Compare without data-dependent timing; returns 1 when equal. */
int kiln_ct_equal(const void *a, const void *b, size_t n);
/* Same for NUL-terminated strings (length difference is not hidden). */
int kiln_ct_streq(const char *a, const char *b);

#endif
