/* http.h - HTTP/1.1 server on a libuv loop (parser: Debian's http-parser).
 *
 * Contract:
 * - kiln_http_server_start() listens on addr:port on the given loop and calls
 *   cb.on_request once per request, after the whole body has arrived (bodies
 *   are buffered up to limits.max_body; larger gets 413 without calling the
 *   handler). A handler may instead take the body as a stream: cb.on_headers
 *   runs after the headers and may call kiln_http_req_stream_body().
 * - The handler answers now or later (long-poll, SSE, log follow): the req
 *   stays valid until the response is finished or the client goes away; in
 *   the latter case the close callback set by kiln_http_req_on_close() runs
 *   and the req must not be used after it returns.
 * - Keep-alive is on for HTTP/1.1 unless the client says close. Limits: header
 *   bytes, body bytes, header timeout (slow clients), idle keep-alive timeout.
 *   Malformed requests get 400 with a JSON error and the connection closes.
 * - Everything runs on the loop thread; nothing here blocks.
 */
#ifndef KILN_HTTP_H
#define KILN_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct kiln_http_server;
struct kiln_http_req;

struct kiln_http_limits {
    size_t max_header_bytes;    /* default 16 KiB */
    size_t max_body_bytes;      /* default 8 MiB (streamed bodies are not capped here) */
    unsigned header_timeout_ms; /* default 10 s: whole header must arrive in time */
    unsigned idle_timeout_ms;   /* default 60 s between keep-alive requests */
    unsigned max_connections;   /* default 1024 */
};

struct kiln_http_callbacks {
    /* Optional: called when headers are complete. Return 0 to continue
     * (buffered body), or call kiln_http_req_stream_body() and return 0, or
     * answer right away (e.g. 401) and return 0 - the body is then drained. */
    int (*on_headers)(struct kiln_http_req *req, void *ctx);
    void (*on_request)(struct kiln_http_req *req, void *ctx);
    void *ctx;
};

/* TLS is optional: NULL cert means plain HTTP. */
struct kiln_http_tls {
    const char *cert_file; /* PEM chain */
    const char *key_file;  /* PEM private key */
};

int kiln_http_server_start(uv_loop_t *loop, const char *addr, int port,
                           const struct kiln_http_limits *limits, /* NULL = defaults */
                           const struct kiln_http_tls *tls,       /* NULL = plain */
                           struct kiln_http_callbacks cb, struct kiln_http_server **out);
/* Bound port (useful when started with port 0). */
int kiln_http_server_port(const struct kiln_http_server *s);
/* Stop listening, close all connections; frees when the handles are closed. */
void kiln_http_server_stop(struct kiln_http_server *s);

/* --- request accessors --- */
const char *kiln_http_req_method(const struct kiln_http_req *r); /* "GET" */
const char *kiln_http_req_path(const struct kiln_http_req *r);   /* "/api/v1/jobs" (no query) */
const char *kiln_http_req_query(const struct kiln_http_req *r);  /* "a=1&b=2" or "" */
/* Query parameter value (percent-decoded) into out; returns 1 if present. */
int kiln_http_req_param(const struct kiln_http_req *r, const char *name, char *out, size_t outlen);
/* Header value, case-insensitive name; NULL if absent. */
const char *kiln_http_req_header(const struct kiln_http_req *r, const char *name);
const char *kiln_http_req_body(const struct kiln_http_req *r, size_t *len);
const char *kiln_http_req_peer(const struct kiln_http_req *r); /* "127.0.0.1" */
/* Per-request user pointer for handlers. */
void kiln_http_req_set_user(struct kiln_http_req *r, void *user);
void *kiln_http_req_user(const struct kiln_http_req *r);
void kiln_http_req_on_close(struct kiln_http_req *r, void (*cb)(struct kiln_http_req *, void *),
                            void *arg);

/* Take the request body as a stream (uploads). on_data returning non-zero
 * aborts the request (the handler must have answered). on_end runs once all
 * bytes arrived; the handler answers there. */
int kiln_http_req_stream_body(struct kiln_http_req *r,
                              int (*on_data)(struct kiln_http_req *, const char *, size_t, void *),
                              void (*on_end)(struct kiln_http_req *, void *), void *arg);

/* --- responses (exactly one per request) --- */
/* extra_headers: NULL or "Name: value\r\n..." lines. */
int kiln_http_respond(struct kiln_http_req *r, int status, const char *content_type,
                      const char *extra_headers, const void *body, size_t len);
/* Serializes and decrefs obj. */
int kiln_http_respond_json(struct kiln_http_req *r, int status, json_t *obj);
/* {"error":{"code":code,"message":...}} with the given status. */
int kiln_http_respond_error(struct kiln_http_req *r, int status, const char *code, const char *fmt,
                            ...) __attribute__((format(printf, 4, 5)));

/* Streaming (chunked) response: SSE, log follow, large files. */
int kiln_http_stream_begin(struct kiln_http_req *r, int status, const char *content_type,
                           const char *extra_headers);
int kiln_http_stream_write(struct kiln_http_req *r, const void *data, size_t len);
/* Bytes written but not yet sent: producers pause above a threshold. */
size_t kiln_http_stream_pending(const struct kiln_http_req *r);
/* Called when pending drops to zero after a write (for backpressure). */
void kiln_http_stream_on_drain(struct kiln_http_req *r, void (*cb)(struct kiln_http_req *, void *),
                               void *arg);
int kiln_http_stream_end(struct kiln_http_req *r);

#endif
