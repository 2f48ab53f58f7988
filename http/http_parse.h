/* http_parse.h - socket-free, incremental HTTP/1.1 request assembly.
 *
 * Contract:
 * - Wraps Debian's http-parser. Bytes go in through kiln_http_parse_feed() in
 *   pieces of any size, split anywhere; requests come out one at a time.
 * - After the request head is complete the on_head callback runs with the
 *   parsed head (method, target split into path and query, headers,
 *   keep-alive, framing). It picks what happens to the body: buffer it (up to
 *   max_body_bytes, larger -> 413), stream it to on_body, or discard it.
 * - feed() stops right after a complete request (returns KILN_HP_DONE with the
 *   bytes used) so the caller can answer before the next pipelined request is
 *   parsed; the head and the buffered body stay valid until the next feed()
 *   that starts a new request, or kiln_http_parse_free().
 * - Limits: the head (request line + headers) may not exceed
 *   max_header_bytes (-> 431); a buffered body may not exceed max_body_bytes
 *   (-> 413); anything malformed -> 400. After an error the parser refuses
 *   more input (the connection must close); kiln_http_parse_status() gives
 *   the HTTP status to answer with and err a sentence.
 * - No global state; one struct kiln_http_parse per connection.
 */
#ifndef KILN_HTTP_PARSE_H
#define KILN_HTTP_PARSE_H

#include "common/buf.h"
#include "common/err.h"

#include <stddef.h>
#include <stdint.h>

struct kiln_http_parse;

struct kiln_http_header {
    const char *name;  /* as sent */
    const char *value; /* surrounding whitespace removed */
};

struct kiln_http_head {
    char method[24];    /* "GET" */
    const char *target; /* raw request target as sent: "/a/b?x=1" */
    const char *path;   /* "/a/b" (not percent-decoded) */
    const char *query;  /* "x=1" or "" */
    unsigned http_major, http_minor;
    int keep_alive; /* client allows keep-alive */
    int chunked;    /* Transfer-Encoding: chunked */
    int has_length; /* Content-Length given */
    uint64_t content_length;
    int expect_continue; /* Expect: 100-continue */
    size_t nheaders;
    const struct kiln_http_header *headers;
};

/* What on_head returns: how to treat the body. */
enum kiln_http_body_mode {
    KILN_HTTP_BODY_BUFFER = 0, /* collect up to max_body_bytes */
    KILN_HTTP_BODY_STREAM = 1, /* hand pieces to on_body */
    KILN_HTTP_BODY_DISCARD = 2 /* read and drop */
};

struct kiln_http_parse_ops {
    /* Head complete. Return a kiln_http_body_mode, or a negative value to
     * reject the request (feed() then fails with status 400 unless the
     * callback set one with kiln_http_parse_set_error()). */
    int (*on_head)(void *ctx, const struct kiln_http_head *head);
    /* Streamed body bytes; non-zero aborts (feed() fails, status 0: the
     * caller has answered already). */
    int (*on_body)(void *ctx, const char *p, size_t n);
    void *ctx;
};

struct kiln_http_parse_limits {
    size_t max_header_bytes;
    size_t max_body_bytes;
};

enum {
    KILN_HP_MORE = 0, /* everything used, request not complete yet */
    KILN_HP_DONE = 1  /* a request completed; *used says where it ended */
};

int kiln_http_parse_new(const struct kiln_http_parse_limits *limits, struct kiln_http_parse_ops ops,
                        struct kiln_http_parse **out);
void kiln_http_parse_free(struct kiln_http_parse *p);

/* Returns KILN_HP_MORE, KILN_HP_DONE or a negative KILN_E* code (then see
 * kiln_http_parse_status()). *used is always set to the bytes consumed. */
int kiln_http_parse_feed(struct kiln_http_parse *p, const char *data, size_t len, size_t *used,
                         struct kiln_error *err);

/* HTTP status for the last error (400, 413, 431; 0 = aborted by on_body). */
int kiln_http_parse_status(const struct kiln_http_parse *p);
/* For on_head: fail with this status and sentence. */
void kiln_http_parse_set_error(struct kiln_http_parse *p, int status, const char *msg);

/* Head of the current request (valid after on_head ran); body when buffered. */
const struct kiln_http_head *kiln_http_parse_head(const struct kiln_http_parse *p);
const char *kiln_http_parse_body(const struct kiln_http_parse *p, size_t *len);
/* Bytes of the current request's head seen so far; 1 when between requests
 * but some bytes of the next one arrived. 0 = nothing of a request yet. */
int kiln_http_parse_in_request(const struct kiln_http_parse *p);
/* 1 once the current request's head is complete (until it completes). */
int kiln_http_parse_head_done(const struct kiln_http_parse *p);

/* Release a large body buffer kept from the last request (idle connections
 * should not hold megabytes). Only between requests. */
void kiln_http_parse_trim(struct kiln_http_parse *p);

/* Header lookup on a head, case-insensitive; NULL if absent. */
const char *kiln_http_head_header(const struct kiln_http_head *h, const char *name);

/* Query string helper: finds name in "a=1&b=x%20y" and percent-decodes its
 * value ('+' is a space) into out. Returns 1 if present, 0 if absent,
 * KILN_ELIMIT if the value does not fit outlen, KILN_EINVAL on a bad %
 * escape or an embedded NUL (out is "" on errors). */
int kiln_http_query_param(const char *query, const char *name, char *out, size_t outlen);
/* Percent-decode src[0..n) into out (NUL-terminated); plus_space turns '+'
 * into ' '. Same returns as above minus "absent" (0 = ok). */
int kiln_http_pct_decode(const char *src, size_t n, int plus_space, char *out, size_t outlen);

#endif
