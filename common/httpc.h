/* httpc.h - blocking HTTP client over libcurl, for the CLI and the worker.
 *
 * Contract:
 * - A struct kiln_httpc holds one curl easy handle, so calls through it reuse
 *   the connection (keep-alive). It is not thread-safe: one per thread.
 * - Transport failures (refused, DNS, TLS, timeout) return KILN_ENET or
 *   KILN_ETIMEOUT with a sentence in err; any HTTP status is a success at this
 *   layer and is returned in *status / resp->status.
 * - The token, when set, goes in "Authorization: Bearer ...". With an https
 *   base URL the server certificate is verified (ca_file, else system CAs).
 * - Response bodies are capped at max_body bytes (default 64 MiB) -> KILN_ELIMIT.
 */
#ifndef KILN_HTTPC_H
#define KILN_HTTPC_H

#include "common/buf.h"
#include "common/err.h"

#include <jansson.h>
#include <stddef.h>

struct kiln_httpc {
    char base_url[512];      /* "http://127.0.0.1:8080" (no trailing slash) */
    char token[128];         /* "" = none */
    char ca_file[512];       /* "" = system default */
    long connect_timeout_ms; /* default 5000 */
    long timeout_ms;         /* default 30000; per-call override */
    size_t max_body;         /* default 64 MiB */
    void *curl;              /* private: CURL* */
};

struct kiln_httpc_resp {
    long status;
    struct kiln_buf body;
    char content_type[128];
};

int kiln_httpc_init(struct kiln_httpc *c, const char *base_url, const char *token);
void kiln_httpc_cleanup(struct kiln_httpc *c);

/* Raw request. path starts with "/" and is appended to base_url.
 * timeout_ms 0 = c->timeout_ms. resp must be zeroed by the caller. */
int kiln_httpc_request(struct kiln_httpc *c, const char *method, const char *path,
                       const char *content_type, const void *body, size_t len, long timeout_ms,
                       struct kiln_httpc_resp *resp, struct kiln_error *err);
/* JSON request: body (borrowed, may be NULL) is serialized; a JSON response
 * is parsed into *out (NULL if the body is empty or not JSON). */
int kiln_httpc_json(struct kiln_httpc *c, const char *method, const char *path, json_t *body,
                    long timeout_ms, long *status, json_t **out, struct kiln_error *err);
/* Streaming GET: on_data gets bytes as they arrive (return non-zero to stop).
 * No overall timeout (used by `kiln logs -f`); status is the HTTP status. */
int kiln_httpc_stream(struct kiln_httpc *c, const char *path,
                      int (*on_data)(const char *p, size_t n, void *arg), void *arg, long *status,
                      struct kiln_error *err);
void kiln_httpc_resp_free(struct kiln_httpc_resp *resp);

/* Message from a kiln JSON error body ({"error":{"message":..}}), or a
 * generic sentence for the status; never NULL. Points into obj or static. */
const char *kiln_httpc_error_message(json_t *obj, long status);

#endif
