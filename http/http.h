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
 * - The process must ignore SIGPIPE: libuv writes with write(2), and a
 *   client that left would kill us. main() should do signal(SIGPIPE,
 *   SIG_IGN); kiln_http_server_start() does it itself when the disposition
 *   is still the default (a handler someone installed is left alone).
 *
 * Details (refinements of the first contract; names and semantics unchanged):
 * - Requests on one connection are answered strictly in order: a pipelined
 *   request is not parsed until the previous response is finished.
 * - Server-made errors, all JSON {"error":{"code","message"}} + close: 400
 *   parse_error (malformed, bad version), 408 timeout (header not complete
 *   within header_timeout_ms; a buffered body not complete within
 *   body_timeout_ms, whatever trickles in; a streamed body that stalled for
 *   idle_timeout_ms), 413 too_large, 431
 *   header_too_large, 503 when max_connections or, for one peer address,
 *   max_connections_per_client is exceeded (the message says which).
 * - A client that stops reading is dropped once queued response bytes made
 *   no progress for idle_timeout_ms (streams included; on_close runs). A slow
 *   but moving reader is kept.
 * - The path is not percent-decoded (the router matches raw segments); query
 *   values are (kiln_http_req_param).
 * - A response started while the request body is still arriving (answer in
 *   on_headers, or from an on_data that then aborts) closes the connection
 *   afterwards unless the rest is a small Content-Length body that is drained.
 *   Expect: 100-continue is answered when the body is actually wanted.
 * - HEAD gets headers only. Streaming responses use chunked encoding for
 *   HTTP/1.1 (a close-delimited body for HTTP/1.0) unless the handler gives a
 *   Content-Length.
 * - Respond functions return KILN_ESTATE when a response was already started
 *   or the client is gone. After on_close ran, or after the response is
 *   finished and the handler returned, the req pointer is invalid.
 */
#ifndef KILN_HTTP_H
#define KILN_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct kiln_http_server;
struct kiln_http_req;

/* A zero field means its default. */
struct kiln_http_limits {
    size_t max_header_bytes;             /* default 16 KiB */
    size_t max_body_bytes;               /* default 8 MiB (streamed bodies are not capped here) */
    unsigned header_timeout_ms;          /* default 10 s: whole header must arrive in time */
    unsigned idle_timeout_ms;            /* default 60 s between keep-alive requests */
    unsigned max_connections;            /* default 1024 */
    unsigned body_timeout_ms;            /* default 60 s: a buffered body must be whole in time */
    unsigned max_connections_per_client; /* default 128 open connections per peer address */
};

struct kiln_http_callbacks {
    /* Optional: called when headers are complete. Return 0 to continue
     * (buffered body), or call kiln_http_req_stream_body() and return 0, or
     * answer right away (e.g. 401) and return 0 - the body is then drained.
     * Non-zero without an answer gets 500. */
    int (*on_headers)(struct kiln_http_req *req, void *ctx);
    void (*on_request)(struct kiln_http_req *req, void *ctx);
    void *ctx;
};

/* TLS is optional: NULL cert means plain HTTP. */
struct kiln_http_tls {
    const char *cert_file; /* PEM chain */
    const char *key_file;  /* PEM private key */
};

/* addr: numeric IPv4/IPv6 ("0.0.0.0", "::") or a name resolved once at start.
 * Returns 0, KILN_EINVAL (bad address or port, unreadable or mismatched
 * TLS cert/key), KILN_EEXIST (address in use) or KILN_ENET. On failure
 * after the socket was made, run the loop once to release it. */
int kiln_http_server_start(uv_loop_t *loop, const char *addr, int port,
                           const struct kiln_http_limits *limits, /* NULL = defaults */
                           const struct kiln_http_tls *tls,       /* NULL = plain */
                           struct kiln_http_callbacks cb, struct kiln_http_server **out);
/* Bound port (useful when started with port 0). */
int kiln_http_server_port(const struct kiln_http_server *s);
/* Counters for /metrics. */
struct kiln_http_stats {
    uint64_t connections;   /* accepted since start */
    uint64_t requests;      /* request heads parsed */
    uint64_t server_errors; /* answered by the server itself (400/408/413/431/503) */
    uint64_t bytes_in, bytes_out;
    unsigned open_connections;
};
void kiln_http_server_stats(const struct kiln_http_server *s, struct kiln_http_stats *out);

/* Stop listening, close all connections (pending requests get their
 * on_close); frees when the handles are closed, so run the loop afterwards. */
void kiln_http_server_stop(struct kiln_http_server *s);

/* --- request accessors --- */
const char *kiln_http_req_method(const struct kiln_http_req *r); /* "GET" */
const char *kiln_http_req_path(const struct kiln_http_req *r);   /* "/api/v1/jobs" (no query) */
const char *kiln_http_req_query(const struct kiln_http_req *r);  /* "a=1&b=2" or "" */
/* Query parameter value (percent-decoded, '+' = space) into out; returns 1 if
 * present, 0 if absent, KILN_ELIMIT if it does not fit outlen, KILN_EINVAL on
 * a bad % escape (out is "" then). "a&b" gives a and b with empty values. */
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

/* Take the request body as a stream (uploads); only from on_headers, else
 * KILN_ESTATE. Bodies are not capped (max_body_bytes does not apply); bytes
 * pass through without being collected. on_data returning non-zero aborts the
 * request (the handler should have answered; otherwise 500) and the connection
 * closes after the response. on_end runs once all bytes arrived; the handler
 * answers there (or later). */
int kiln_http_req_stream_body(struct kiln_http_req *r,
                              int (*on_data)(struct kiln_http_req *, const char *, size_t, void *),
                              void (*on_end)(struct kiln_http_req *, void *), void *arg);

/* The body either way, for a handler that may run from on_headers or from
 * on_request: where the body can still be streamed, this is
 * kiln_http_req_stream_body() followed by kiln_http_req_on_close(on_close);
 * where it was already buffered (on_request), on_data runs once with the
 * whole body and then, unless it returned non-zero, on_end, both before
 * this returns, and on_close is not set. KILN_OK, or KILN_ESTATE with
 * nothing called (no on_data, or the request was already answered). */
int kiln_http_req_take_body(struct kiln_http_req *r,
                            int (*on_data)(struct kiln_http_req *, const char *, size_t, void *),
                            void (*on_end)(struct kiln_http_req *, void *),
                            void (*on_close)(struct kiln_http_req *, void *), void *arg);

/* Flow control for streamed bodies: pause=1 stops reading the socket (the
 * bytes already read are still delivered to on_data), pause=0 resumes. For
 * handlers that write uploads asynchronously. Cleared with the request. */
void kiln_http_req_pause_body(struct kiln_http_req *r, int pause);

/* --- responses (exactly one per request) --- */
/* extra_headers: NULL or "Name: value\r\n..." lines. A Content-Length among
 * them is used as is for HEAD, must equal len otherwise (else KILN_EINVAL). */
int kiln_http_respond(struct kiln_http_req *r, int status, const char *content_type,
                      const char *extra_headers, const void *body, size_t len);
/* The same, taking body (from malloc; freed whatever happens): it is
 * written as it is, without a copy. For large answers. */
int kiln_http_respond_owned(struct kiln_http_req *r, int status, const char *content_type,
                            char *body, size_t len);
/* Serializes and decrefs obj. */
int kiln_http_respond_json(struct kiln_http_req *r, int status, json_t *obj);
/* {"error":{"code":code,"message":...}} with the given status. */
int kiln_http_respond_error(struct kiln_http_req *r, int status, const char *code, const char *fmt,
                            ...) __attribute__((format(printf, 4, 5)));

/* Streaming response: SSE, log follow, large files. Chunked, unless
 * extra_headers carries "Content-Length: N": then the body goes as is, writes
 * past N get KILN_EINVAL, and ending short of N closes the connection (a
 * malformed Content-Length line gets KILN_EINVAL from begin). */
int kiln_http_stream_begin(struct kiln_http_req *r, int status, const char *content_type,
                           const char *extra_headers);
int kiln_http_stream_write(struct kiln_http_req *r, const void *data, size_t len);
/* The same, for bytes many streams get at once (SSE fan-out): when nothing is
 * queued on a plain-TCP connection the bytes go to the kernel right away
 * (uv_try_write), with no copy, no write request and no on_drain for that
 * write; only what the socket did not take is copied and queued. */
int kiln_http_stream_write_now(struct kiln_http_req *r, const void *data, size_t len);
/* Bytes handed to the socket but not yet written (whole connection, headers
 * included): producers pause above a threshold and resume in on_drain. */
size_t kiln_http_stream_pending(const struct kiln_http_req *r);
/* Called when pending drops to zero after a write (for backpressure). */
void kiln_http_stream_on_drain(struct kiln_http_req *r, void (*cb)(struct kiln_http_req *, void *),
                               void *arg);
int kiln_http_stream_end(struct kiln_http_req *r);

#endif
