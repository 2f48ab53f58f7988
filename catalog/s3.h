/* s3.h - uploads to S3-compatible object stores (AWS SigV4, libcurl multi
 * driven by a libuv loop).
 *
 * Contract:
 * - kiln_s3_sign() is the pure SigV4 signer (header auth): given method,
 *   canonical URI path (already URI-encoded), raw query ("a=1&b" or ""),
 *   the headers to sign (must include host and x-amz-date; names any case),
 *   the payload hash and the time "YYYYMMDDTHHMMSSZ", it writes the
 *   Authorization header value. Checked against AWS's published examples.
 * - A struct kiln_s3_client runs transfers on a uv loop via
 *   curl_multi_socket_action + uv_poll + uv_timer: nothing blocks the loop;
 *   part hashing runs on the libuv thread pool.
 * - kiln_s3_put_file() uploads one file: a single PUT up to
 *   multipart_threshold bytes, else CreateMultipartUpload, UploadPart
 *   (part_size each), CompleteMultipartUpload (AbortMultipartUpload on
 *   failure). Transport errors, 5xx, 408 and 429 are retried with
 *   exponential backoff (backoff_ms * 2^n, max_retries times). The progress
 *   callback reports bytes acknowledged so far; done runs exactly once.
 * - Paths are path-style: <endpoint>/<bucket>/<key>. Keys are 1-1024 bytes,
 *   no "..", no leading '/', no control characters.
 */
#ifndef KILN_S3_H
#define KILN_S3_H

#include "common/err.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct kiln_s3_cfg {
    char endpoint[256]; /* "http://127.0.0.1:4568" (no trailing slash) */
    char region[64];    /* "us-east-1" */
    char bucket[128];
    char access_key[128];
    char secret_key[128];
    uint64_t part_size;           /* default 8 MiB (min 5 MiB except for tests) */
    uint64_t multipart_threshold; /* default 64 MiB */
    int max_retries;              /* default 4 */
    unsigned backoff_ms;          /* default 200 */
};

/* Fill defaults for zero fields. */
void kiln_s3_cfg_defaults(struct kiln_s3_cfg *cfg);

struct kiln_s3_header {
    const char *name;
    const char *value;
};

int kiln_s3_sign(const struct kiln_s3_cfg *cfg, const char *method, const char *path,
                 const char *query, const struct kiln_s3_header *hdrs, size_t nhdrs,
                 const char *payload_sha256_hex, const char *amz_date, char *auth, size_t authlen,
                 struct kiln_error *err);
/* URI-encode for a canonical path (keeps '/'). */
int kiln_s3_uri_encode(const char *in, int keep_slash, char *out, size_t outlen);
/* Value of <tag>...</tag> in an S3 XML reply into out; KILN_ENOTFOUND if absent. */
int kiln_s3_xml_value(const char *xml, size_t len, const char *tag, char *out, size_t outlen);
int kiln_s3_key_valid(const char *key);

struct kiln_s3_client;
typedef void (*kiln_s3_progress_cb)(void *arg, uint64_t done, uint64_t total);
typedef void (*kiln_s3_done_cb)(void *arg, int rc, const char *msg);

int kiln_s3_client_new(uv_loop_t *loop, struct kiln_s3_client **out, struct kiln_error *err);
/* Cancels transfers (their done runs with KILN_ESTATE) and frees once the
 * handles are closed (run the loop afterwards). */
void kiln_s3_client_free(struct kiln_s3_client *c);

/* sha256_hex: the file's digest if known (skips hashing a single PUT) or NULL.
 * cfg is copied. */
int kiln_s3_put_file(struct kiln_s3_client *c, const struct kiln_s3_cfg *cfg, const char *key,
                     const char *path, const char *sha256_hex, kiln_s3_progress_cb progress,
                     kiln_s3_done_cb done, void *arg, struct kiln_error *err);

#endif
