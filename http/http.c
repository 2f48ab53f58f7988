/* http.c - HTTP/1.1 server on libuv: connections, timers, responses, TLS.
 *
 * One connection answers one request at a time. When a request is complete the
 * parser stops (pipelined bytes wait in c->in) until the handler has finished
 * its response; then the request is freed and the next one parsed. Requests
 * are only freed from process()/teardown paths, never inside a respond call,
 * so a handler may still touch its req until it returns.
 */
#include "http/http.h"

#include "common/buf.h"
#include "common/err.h"
#include "http/http_parse.h"

#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define READ_BUF 65536
#define LINGER_MS 2000

/* One timer per connection, in one of these roles:
 * T_HEADER  the next request head must arrive in time (408)
 * T_IDLE    keep-alive wait between requests (quiet close)
 * T_BODY    the request body must arrive in time (408): a buffered body
 *           whole within body_timeout_ms, so a trickle of a byte now and
 *           then never keeps a connection alive; a streamed one (uploads,
 *           which the service takes only from authenticated callers after
 *           checking the token in on_headers) must not stall for
 *           idle_timeout_ms
 * T_WRITE   queued response bytes must keep moving (a client that stopped
 *           reading is dropped; on_close runs)
 * T_LINGER  after our FIN, wait a moment for the client's. */
enum timer_kind { T_NONE = 0, T_HEADER, T_IDLE, T_BODY, T_WRITE, T_LINGER };

struct conn;

struct kiln_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct kiln_http_limits lim;
    struct kiln_http_callbacks cb;
    SSL_CTX *ssl_ctx;
    struct conn *conns;
    unsigned nconns;
    int port;
    int stopping;
    int listener_closed;
    time_t date_t;
    char date[64];
    struct kiln_http_stats stats;
    /* One read buffer for all connections: reads are handled one at a time
     * on the loop thread and copied out before the next. */
    char rbuf[READ_BUF];
};

struct kiln_http_req {
    struct conn *c;
    const struct kiln_http_head *head;
    int mode;
    void *user;
    void (*on_close)(struct kiln_http_req *, void *);
    void *close_arg;
    int (*on_data)(struct kiln_http_req *, const char *, size_t, void *);
    void (*on_end)(struct kiln_http_req *, void *);
    void *stream_arg;
    void (*on_drain)(struct kiln_http_req *, void *);
    void *drain_arg;
    int keep_alive;
    int is_head;
    int in_on_headers;
    int seen;      /* the handler has seen it (on_headers or on_request) */
    int msg_done;  /* request fully read */
    int responded; /* a response was started (by the handler or the server) */
    int resp_done; /* the handler's response is complete */
    int streaming; /* chunked (or close-delimited) response in progress */
    int chunked;
    int fixed;          /* stream with a Content-Length the handler gave */
    uint64_t fixed_len; /* ... that many bytes */
    uint64_t sent;
    int gone;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_idle_t kick;
    uv_shutdown_t shut;
    struct kiln_http_server *srv;
    struct conn *prev, *next;
    struct kiln_http_parse *ps;
    struct kiln_buf in;
    struct kiln_http_req *req;
    struct kiln_http_req *dead; /* freed with the connection */
    int open_handles;
    int closing;
    int shutting;
    int close_after;
    int reading;
    int in_process;
    int body_paused; /* the handler asked to stop reading */
    int timer_kind;
    size_t pending;
    uint64_t written; /* bytes the socket took, for progress checks */
    uint64_t mark;    /* written when the timer was armed */
    char peer[64];
    SSL *ssl;
    BIO *rbio, *wbio;
};

struct wreq {
    uv_write_t w;
    struct conn *c;
    size_t len;
    char *data;
};

static void teardown(struct conn *c);
static void begin_shutdown(struct conn *c);
static void process(struct conn *c);
static void resume_reading(struct conn *c);
static void send_server_error(struct conn *c, int status, const char *code, const char *msg);

/* ---------- small helpers ---------- */

static const char *reason(int status)
{
    const char *s = http_status_str((enum http_status)status);
    if (!s || strcmp(s, "<unknown>") == 0) return "Status";
    return s;
}

static const char *date_now(struct kiln_http_server *s)
{
    time_t t = time(NULL);
    if (t != s->date_t || !s->date[0]) {
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(s->date, sizeof s->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        else
            snprintf(s->date, sizeof s->date, "Thu, 01 Jan 1970 00:00:00 GMT");
        s->date_t = t;
    }
    return s->date;
}

static void timer_set(struct conn *c, int kind, unsigned ms);

static void timer_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    int kind = c->timer_kind;
    c->timer_kind = T_NONE;
    switch (kind) {
    case T_IDLE:
    case T_WRITE:
        /* Still sending the last response and the client is reading it:
         * not idle, not stuck. */
        if (c->pending > 0 && c->written != c->mark) {
            timer_set(c, kind, c->srv->lim.idle_timeout_ms);
            break;
        }
        teardown(c);
        break;
    case T_LINGER:
        teardown(c);
        break;
    case T_HEADER:
    case T_BODY:
        if (c->req && c->req->responded) {
            teardown(c);
        } else {
            send_server_error(c, 408, "timeout",
                              kind == T_HEADER ? "the request header did not arrive in time"
                                               : "the request body stalled");
        }
        break;
    default:
        break;
    }
}

static void timer_set(struct conn *c, int kind, unsigned ms)
{
    if (c->closing) return;
    uv_timer_stop(&c->timer);
    c->timer_kind = kind;
    c->mark = c->written;
    if (kind != T_NONE) uv_timer_start(&c->timer, timer_cb, ms ? ms : 1, 0);
}

/* ---------- writing ---------- */

static void write_cb(uv_write_t *w, int status)
{
    struct wreq *wr = (struct wreq *)w;
    struct conn *c = wr->c;
    c->pending -= wr->len;
    if (status >= 0) c->written += wr->len;
    free(wr->data);
    free(wr);
    if (c->closing) return;
    if (status < 0) {
        teardown(c);
        return;
    }
    if (c->pending == 0 && c->timer_kind == T_WRITE) timer_set(c, T_NONE, 0);
    if (c->pending == 0 && c->req && c->req->streaming && c->req->on_drain && !c->req->gone)
        c->req->on_drain(c->req, c->req->drain_arg);
}

/* Takes ownership of data (malloc'd). */
static int write_raw_owned(struct conn *c, char *data, size_t len)
{
    if (c->closing) {
        free(data);
        return KILN_ESTATE;
    }
    struct wreq *wr = calloc(1, sizeof *wr);
    if (!wr) {
        free(data);
        return KILN_ENOMEM;
    }
    if (len > UINT_MAX) { /* uv_buf_t lengths are unsigned int */
        free(data);
        free(wr);
        return KILN_ELIMIT;
    }
    wr->c = c;
    wr->len = len;
    wr->data = data;
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
    if (rc < 0) {
        free(data);
        free(wr);
        return KILN_ENET;
    }
    c->pending += len;
    c->srv->stats.bytes_out += len;
    /* While the handler is answering, a stalled reader is the only thing
     * that can hold the connection: watch for write progress. */
    if (c->timer_kind == T_NONE && c->req && c->req->msg_done)
        timer_set(c, T_WRITE, c->srv->lim.idle_timeout_ms);
    return KILN_OK;
}

static int tls_flush(struct conn *c)
{
    for (;;) {
        size_t n = BIO_ctrl_pending(c->wbio);
        if (n == 0) return KILN_OK;
        char *d = malloc(n);
        if (!d) return KILN_ENOMEM;
        int r = BIO_read(c->wbio, d, (int)n);
        if (r <= 0) {
            free(d);
            return KILN_EIO;
        }
        int rc = write_raw_owned(c, d, (size_t)r);
        if (rc) return rc;
    }
}

/* Takes ownership of data. */
static int conn_write_owned(struct conn *c, char *data, size_t len)
{
    if (c->closing || c->shutting) {
        free(data);
        return KILN_ESTATE;
    }
    if (len == 0) {
        free(data);
        return KILN_OK;
    }
    if (!c->ssl) return write_raw_owned(c, data, len);
    size_t off = 0;
    while (off < len) {
        size_t n = len - off;
        if (n > 1 << 30) n = 1 << 30;
        /* OpenSSL's error queue is per thread, shared by all connections:
         * clear it so a stale entry is not read as this call's failure. */
        ERR_clear_error();
        int r = SSL_write(c->ssl, data + off, (int)n);
        if (r <= 0) {
            ERR_clear_error();
            free(data);
            return KILN_EIO;
        }
        off += (size_t)r;
    }
    free(data);
    return tls_flush(c);
}

static int conn_write(struct conn *c, const void *data, size_t len)
{
    char *d = malloc(len ? len : 1);
    if (!d) return KILN_ENOMEM;
    memcpy(d, data, len);
    return conn_write_owned(c, d, len);
}

/* ---------- connection lifecycle ---------- */

static void free_req(struct kiln_http_req *r)
{
    free(r);
}

static void conn_closed_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->open_handles > 0) return;
    struct kiln_http_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else if (s->conns == c)
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    if (c->req) free_req(c->req);
    if (c->dead) free_req(c->dead);
    kiln_http_parse_free(c->ps);
    kiln_buf_free(&c->in);
    if (c->ssl) SSL_free(c->ssl); /* frees both BIOs */
    free(c);
    if (s->stopping && s->listener_closed && s->nconns == 0) {
        if (s->ssl_ctx) SSL_CTX_free(s->ssl_ctx);
        free(s);
    }
}

static void teardown(struct conn *c)
{
    if (c->closing) return;
    c->closing = 1;
    uv_timer_stop(&c->timer);
    uv_idle_stop(&c->kick);
    uv_read_stop((uv_stream_t *)&c->tcp);
    struct kiln_http_req *r = c->req;
    if (r && !r->gone) {
        r->gone = 1;
        if (r->seen && !r->resp_done && r->on_close) r->on_close(r, r->close_arg);
    }
    uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
    uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
    uv_close((uv_handle_t *)&c->kick, conn_closed_cb);
}

static void shutdown_cb(uv_shutdown_t *sr, int status)
{
    struct conn *c = sr->data;
    if (status < 0 && !c->closing) teardown(c);
}

/* Finish writing, then close. Reading goes on (discarding) for a moment so
 * unread request bytes do not turn our FIN into a reset that eats the
 * response. */
static void begin_shutdown(struct conn *c)
{
    if (c->closing || c->shutting) return;
    if (c->ssl) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
        tls_flush(c);
    }
    c->shutting = 1;
    c->body_paused = 0;
    uv_idle_stop(&c->kick);
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, shutdown_cb) < 0) {
        teardown(c);
        return;
    }
    resume_reading(c);
    timer_set(c, T_LINGER, LINGER_MS);
}

/* A complete server-made error response (400, 408, 413, 431, 503), then close. */
static void send_server_error(struct conn *c, int status, const char *code, const char *msg)
{
    if (c->closing || c->shutting) return;
    if (c->req) c->req->responded = 1;
    c->srv->stats.server_errors++;
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    struct kiln_buf b = {0};
    const char *bd = body ? body : "{\"error\":{\"code\":\"internal\",\"message\":\"error\"}}";
    int rc = kiln_buf_printf(&b,
                             "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                             status, reason(status), date_now(c->srv), strlen(bd), bd);
    free(body);
    if (rc == 0) {
        size_t len = b.len;
        conn_write_owned(c, kiln_buf_steal(&b), len);
    } else {
        kiln_buf_free(&b);
    }
    c->close_after = 1;
    begin_shutdown(c);
}

/* ---------- reading ---------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->srv->rbuf, sizeof c->srv->rbuf);
}

static void conn_input(struct conn *c, const char *data, size_t n);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void resume_reading(struct conn *c)
{
    if (!c->reading && !c->closing && !c->body_paused) {
        if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0) c->reading = 1;
    }
}

static void pause_reading(struct conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

/* Ciphertext in; the mem BIO copies it, so data may be srv->rbuf, which
 * SSL_read then reuses for plaintext. */
static void tls_input(struct conn *c, const char *data, size_t n)
{
    if (n > 0 && BIO_write(c->rbio, data, (int)n) != (int)n) {
        teardown(c);
        return;
    }
    for (;;) {
        if (c->closing || c->shutting) return;
        ERR_clear_error();
        int r = SSL_read(c->ssl, c->srv->rbuf, sizeof c->srv->rbuf);
        if (r > 0) {
            conn_input(c, c->srv->rbuf, (size_t)r);
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (tls_flush(c) != KILN_OK) {
            teardown(c);
            return;
        }
        if (e == SSL_ERROR_WANT_READ) return;
        /* close_notify or a TLS failure (bad handshake, plain HTTP on a TLS
         * port): nothing sensible to answer. */
        ERR_clear_error();
        teardown(c);
        return;
    }
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = st->data;
    (void)buf;
    if (c->closing) return;
    if (nread < 0) {
        teardown(c);
        return;
    }
    if (nread == 0) return;
    c->srv->stats.bytes_in += (uint64_t)nread;
    if (c->shutting) return; /* lingering: discard */
    if (c->ssl) {
        tls_input(c, c->srv->rbuf, (size_t)nread);
        return;
    }
    conn_input(c, c->srv->rbuf, (size_t)nread);
}

static size_t pipeline_cap(const struct conn *c)
{
    return c->srv->lim.max_header_bytes + 65536;
}

/* Feed data (which the caller owns) to the parser; keep what is left. */
static void conn_input(struct conn *c, const char *data, size_t n)
{
    if (c->closing || c->shutting) return;
    if (c->timer_kind == T_IDLE) timer_set(c, T_HEADER, c->srv->lim.header_timeout_ms);
    /* Only a streamed body (an authenticated upload) earns more time, for
     * any progress; a buffered one has its deadline from the head on. */
    if (c->timer_kind == T_BODY && c->req && c->req->mode == KILN_HTTP_BODY_STREAM)
        timer_set(c, T_BODY, c->srv->lim.idle_timeout_ms);
    if (kiln_buf_append(&c->in, data, n) != KILN_OK) {
        send_server_error(c, 503, "out_of_memory", "out of memory while reading the request");
        return;
    }
    process(c);
    if (!c->closing && !c->shutting && c->in.len > pipeline_cap(c)) pause_reading(c);
}

/* ---------- parser callbacks ---------- */

static int body_expected(const struct kiln_http_head *h)
{
    return h->chunked || (h->has_length && h->content_length > 0);
}

static int ps_on_head(void *ctx, const struct kiln_http_head *h)
{
    struct conn *c = ctx;
    struct kiln_http_server *s = c->srv;
    if (c->closing) return -1;
    struct kiln_http_req *r = calloc(1, sizeof *r);
    if (!r) {
        kiln_http_parse_set_error(c->ps, 503, "out of memory");
        return -1;
    }
    r->c = c;
    r->head = h;
    r->keep_alive = h->keep_alive && !s->stopping;
    r->is_head = strcmp(h->method, "HEAD") == 0;
    r->mode = KILN_HTTP_BODY_BUFFER;
    c->req = r;
    s->stats.requests++;
    if (body_expected(h))
        timer_set(c, T_BODY, s->lim.idle_timeout_ms);
    else
        timer_set(c, T_NONE, 0);
    if (s->cb.on_headers) {
        r->seen = 1;
        r->in_on_headers = 1;
        int rc = s->cb.on_headers(r, s->cb.ctx);
        r->in_on_headers = 0;
        if (c->closing || c->shutting || r->gone) {
            kiln_http_parse_set_error(c->ps, 0, "connection closed by the handler");
            return -1;
        }
        if (rc != 0 && !r->responded) {
            kiln_http_respond_error(r, 500, "internal", "the request could not be handled");
        }
    }
    if (r->responded) {
        r->mode = KILN_HTTP_BODY_DISCARD;
    } else if (r->on_data) {
        r->mode = KILN_HTTP_BODY_STREAM;
    }
    if (c->timer_kind == T_BODY) {
        timer_set(c, T_BODY,
                  r->mode == KILN_HTTP_BODY_STREAM ? s->lim.idle_timeout_ms
                                                   : s->lim.body_timeout_ms);
    }
    if (r->mode != KILN_HTTP_BODY_DISCARD && h->expect_continue && body_expected(h) &&
        !(r->mode == KILN_HTTP_BODY_BUFFER && h->has_length &&
          h->content_length > s->lim.max_body_bytes)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write(c, cont, sizeof cont - 1);
    }
    return r->mode;
}

static int ps_on_body(void *ctx, const char *p, size_t n)
{
    struct conn *c = ctx;
    struct kiln_http_req *r = c->req;
    if (c->closing || !r || r->gone) return 1;
    /* After the handler answered, the rest of the body is dropped: its
     * upload state may be gone already. */
    if (!r->on_data || r->responded) return 0;
    int rc = r->on_data(r, p, n, r->stream_arg);
    if (c->closing || r->gone) return 1;
    return rc;
}

/* ---------- the request loop ---------- */

static void finish_request(struct conn *c)
{
    struct kiln_http_req *r = c->req;
    int keep = r->keep_alive && !c->close_after && !c->srv->stopping;
    c->req = NULL;
    free_req(r);
    kiln_http_parse_trim(c->ps);
    c->body_paused = 0;
    if (!keep) {
        begin_shutdown(c);
        return;
    }
    resume_reading(c);
    if (c->in.len > 0)
        timer_set(c, T_HEADER, c->srv->lim.header_timeout_ms);
    else
        timer_set(c, T_IDLE, c->srv->lim.idle_timeout_ms);
}

static void dispatch(struct conn *c)
{
    struct kiln_http_req *r = c->req;
    struct kiln_http_server *s = c->srv;
    r->msg_done = 1;
    timer_set(c, T_NONE, 0);
    if (r->responded) return; /* answered early; finished by process() */
    r->seen = 1;
    if (r->mode == KILN_HTTP_BODY_STREAM) {
        if (r->on_end)
            r->on_end(r, r->stream_arg);
        else
            kiln_http_respond_error(r, 500, "internal", "the upload has no end handler");
    } else if (s->cb.on_request) {
        s->cb.on_request(r, s->cb.ctx);
    } else {
        kiln_http_respond_error(r, 404, "not_found", "no handler");
    }
}

static void process(struct conn *c)
{
    if (c->in_process) return;
    c->in_process = 1;
    while (!c->closing && !c->shutting) {
        if (c->req && c->req->msg_done) {
            if (!c->req->resp_done) break; /* handler answers later */
            finish_request(c);
            continue;
        }
        if (c->in.len == 0) break;
        size_t used = 0;
        struct kiln_error err;
        kiln_error_clear(&err);
        int rc = kiln_http_parse_feed(c->ps, c->in.data, c->in.len, &used, &err);
        kiln_buf_consume(&c->in, used);
        if (c->closing || c->shutting) break;
        if (rc < 0) {
            int st = kiln_http_parse_status(c->ps);
            if (c->req && c->req->responded) {
                c->close_after = 1;
                if (!c->req->streaming) begin_shutdown(c);
            } else if (st == 0) {
                send_server_error(c, 500, "internal", "the upload was aborted");
            } else {
                const char *code = st == 413   ? "too_large"
                                   : st == 431 ? "header_too_large"
                                   : st == 503 ? "out_of_memory"
                                               : "parse_error";
                send_server_error(c, st, code, err.msg[0] ? err.msg : "malformed request");
            }
            break;
        }
        if (rc == KILN_HP_DONE && used == 0) { /* cannot happen; never spin on it */
            send_server_error(c, 400, "parse_error", "malformed request");
            break;
        }
        if (rc == KILN_HP_DONE) dispatch(c);
    }
    c->in_process = 0;
}

static void kick_cb(uv_idle_t *h)
{
    struct conn *c = h->data;
    uv_idle_stop(h);
    process(c);
}

/* The handler finished its response (possibly outside process()). */
static void response_finished(struct conn *c)
{
    if (c->closing) return;
    if (c->close_after) {
        begin_shutdown(c);
        return;
    }
    if (!c->in_process) uv_idle_start(&c->kick, kick_cb);
}

/* ---------- server ---------- */

static void on_connection(uv_stream_t *ls, int status)
{
    struct kiln_http_server *s = ls->data;
    if (status < 0 || s->stopping) return;
    struct conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = s;
    if (uv_tcp_init(s->loop, &c->tcp) < 0) {
        free(c);
        return;
    }
    c->tcp.data = c;
    c->timer.data = c;
    c->kick.data = c;
    c->open_handles = 1;
    s->stats.connections++;
    /* Linked in before anything can fail so conn_closed_cb can unlink. */
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    uv_timer_init(s->loop, &c->timer);
    c->open_handles++;
    uv_idle_init(s->loop, &c->kick);
    c->open_handles++;
    struct kiln_http_parse_limits pl = {s->lim.max_header_bytes, s->lim.max_body_bytes};
    struct kiln_http_parse_ops ops = {ps_on_head, ps_on_body, c};
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0 || kiln_http_parse_new(&pl, ops, &c->ps) != 0) {
        teardown(c);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    snprintf(c->peer, sizeof c->peer, "unknown");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
        else if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (s->ssl_ctx) {
        c->ssl = SSL_new(s->ssl_ctx);
        c->rbio = BIO_new(BIO_s_mem());
        c->wbio = BIO_new(BIO_s_mem());
        if (!c->ssl || !c->rbio || !c->wbio) {
            if (!c->ssl) {
                BIO_free(c->rbio);
                BIO_free(c->wbio);
            } else {
                if (c->rbio) BIO_free(c->rbio);
                if (c->wbio) BIO_free(c->wbio);
                SSL_free(c->ssl);
                c->ssl = NULL;
            }
            c->rbio = c->wbio = NULL;
            teardown(c);
            return;
        }
        SSL_set_bio(c->ssl, c->rbio, c->wbio);
        SSL_set_accept_state(c->ssl);
    }
    resume_reading(c);
    if (!c->reading) {
        teardown(c);
        return;
    }
    if (s->nconns > s->lim.max_connections) {
        if (s->nconns > s->lim.max_connections + 64 || c->ssl) {
            teardown(c);
            return;
        }
        send_server_error(c, 503, "unavailable", "too many connections, try again later");
        return;
    }
    /* One client must not take every slot: count its open connections. */
    unsigned mine = 0;
    for (struct conn *o = s->conns; o; o = o->next)
        if (!o->closing && !strcmp(o->peer, c->peer)) mine++;
    if (mine > s->lim.max_connections_per_client) {
        if (c->ssl) {
            teardown(c);
            return;
        }
        char msg[160];
        snprintf(msg, sizeof msg, "too many connections from %.64s (at most %u), try again later",
                 c->peer, s->lim.max_connections_per_client);
        send_server_error(c, 503, "unavailable", msg);
        return;
    }
    timer_set(c, T_HEADER, s->lim.header_timeout_ms);
}

static int make_ssl_ctx(const struct kiln_http_tls *tls, SSL_CTX **out, struct kiln_error *err)
{
    (void)err;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return KILN_ENOMEM;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, tls->key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return KILN_EINVAL;
    }
    *out = ctx;
    return KILN_OK;
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct kiln_http_server *s = h->data;
    s->listener_closed = 1;
    if (s->nconns == 0) {
        if (s->ssl_ctx) SSL_CTX_free(s->ssl_ctx);
        free(s);
    }
}

/* Numeric address, else a name looked up once (synchronously: this runs at
 * start-up, before the loop serves anyone). */
static int resolve(uv_loop_t *loop, const char *addr, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(addr, port, (struct sockaddr_in *)ss) == 0) return 0;
    if (uv_ip6_addr(addr, port, (struct sockaddr_in6 *)ss) == 0) return 0;
    uv_getaddrinfo_t req;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (uv_getaddrinfo(loop, &req, NULL, addr, NULL, &hints) != 0 || !req.addrinfo) return -1;
    int rc = -1;
    for (struct addrinfo *ai = req.addrinfo; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET && ai->ai_addrlen <= sizeof *ss) {
            memcpy(ss, ai->ai_addr, ai->ai_addrlen);
            ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
            rc = 0;
            break;
        }
        if (ai->ai_family == AF_INET6 && ai->ai_addrlen <= sizeof *ss) {
            memcpy(ss, ai->ai_addr, ai->ai_addrlen);
            ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
            rc = 0;
            break;
        }
    }
    uv_freeaddrinfo(req.addrinfo);
    return rc;
}

int kiln_http_server_start(uv_loop_t *loop, const char *addr, int port,
                           const struct kiln_http_limits *limits, const struct kiln_http_tls *tls,
                           struct kiln_http_callbacks cb, struct kiln_http_server **out)
{
    *out = NULL;
    if (!loop || !addr || port < 0 || port > 65535) return KILN_EINVAL;
    /* libuv writes with write(2): a client that went away would raise
     * SIGPIPE and kill the process. main() should ignore it; if nobody
     * decided, do it here (only when the disposition is still the default). */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        struct sigaction ign;
        memset(&ign, 0, sizeof ign);
        ign.sa_handler = SIG_IGN;
        sigemptyset(&ign.sa_mask);
        sigaction(SIGPIPE, &ign, NULL);
    }
    struct kiln_http_server *s = calloc(1, sizeof *s);
    if (!s) return KILN_ENOMEM;
    s->loop = loop;
    s->cb = cb;
    if (limits) s->lim = *limits;
    if (!s->lim.max_header_bytes) s->lim.max_header_bytes = 16 * 1024;
    if (!s->lim.max_body_bytes) s->lim.max_body_bytes = 8 * 1024 * 1024;
    if (!s->lim.header_timeout_ms) s->lim.header_timeout_ms = 10000;
    if (!s->lim.idle_timeout_ms) s->lim.idle_timeout_ms = 60000;
    if (!s->lim.max_connections) s->lim.max_connections = 1024;
    if (!s->lim.body_timeout_ms) s->lim.body_timeout_ms = 60000;
    if (!s->lim.max_connections_per_client) s->lim.max_connections_per_client = 128;
    if (tls && tls->cert_file) {
        if (!tls->key_file) {
            free(s);
            return KILN_EINVAL;
        }
        int rc = make_ssl_ctx(tls, &s->ssl_ctx, NULL);
        if (rc) {
            free(s);
            return rc;
        }
    }
    struct sockaddr_storage ss;
    if (resolve(loop, addr, port, &ss) != 0) {
        if (s->ssl_ctx) SSL_CTX_free(s->ssl_ctx);
        free(s);
        return KILN_EINVAL;
    }
    if (uv_tcp_init(loop, &s->listener) < 0) {
        if (s->ssl_ctx) SSL_CTX_free(s->ssl_ctx);
        free(s);
        return KILN_EIO;
    }
    s->listener.data = s;
    int rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (rc < 0) {
        /* The handle must be closed through the loop; free on its callback. */
        s->stopping = 1;
        uv_close((uv_handle_t *)&s->listener, listener_closed_cb);
        return rc == UV_EADDRINUSE ? KILN_EEXIST : KILN_ENET;
    }
    struct sockaddr_storage bound;
    int bl = sizeof bound;
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &bl) == 0) {
        if (bound.ss_family == AF_INET)
            s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        else
            s->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    *out = s;
    return KILN_OK;
}

int kiln_http_server_port(const struct kiln_http_server *s)
{
    return s ? s->port : 0;
}

void kiln_http_server_stop(struct kiln_http_server *s)
{
    if (!s || s->stopping) return;
    s->stopping = 1;
    uv_close((uv_handle_t *)&s->listener, listener_closed_cb);
    struct conn *c = s->conns;
    while (c) {
        struct conn *next = c->next;
        teardown(c);
        c = next;
    }
}

/* ---------- request accessors ---------- */

const char *kiln_http_req_method(const struct kiln_http_req *r)
{
    return r->head->method;
}

const char *kiln_http_req_path(const struct kiln_http_req *r)
{
    return r->head->path;
}

const char *kiln_http_req_query(const struct kiln_http_req *r)
{
    return r->head->query;
}

int kiln_http_req_param(const struct kiln_http_req *r, const char *name, char *out, size_t outlen)
{
    return kiln_http_query_param(r->head->query, name, out, outlen);
}

const char *kiln_http_req_header(const struct kiln_http_req *r, const char *name)
{
    return kiln_http_head_header(r->head, name);
}

const char *kiln_http_req_body(const struct kiln_http_req *r, size_t *len)
{
    if (r->mode != KILN_HTTP_BODY_BUFFER || !r->msg_done) {
        if (len) *len = 0;
        return "";
    }
    return kiln_http_parse_body(r->c->ps, len);
}

const char *kiln_http_req_peer(const struct kiln_http_req *r)
{
    return r->c->peer;
}

void kiln_http_req_set_user(struct kiln_http_req *r, void *user)
{
    r->user = user;
}

void *kiln_http_req_user(const struct kiln_http_req *r)
{
    return r->user;
}

void kiln_http_req_on_close(struct kiln_http_req *r, void (*cb)(struct kiln_http_req *, void *),
                            void *arg)
{
    r->on_close = cb;
    r->close_arg = arg;
}

int kiln_http_req_stream_body(struct kiln_http_req *r,
                              int (*on_data)(struct kiln_http_req *, const char *, size_t, void *),
                              void (*on_end)(struct kiln_http_req *, void *), void *arg)
{
    if (!r->in_on_headers || !on_data || r->responded) return KILN_ESTATE;
    r->on_data = on_data;
    r->on_end = on_end;
    r->stream_arg = arg;
    return KILN_OK;
}

int kiln_http_req_take_body(struct kiln_http_req *r,
                            int (*on_data)(struct kiln_http_req *, const char *, size_t, void *),
                            void (*on_end)(struct kiln_http_req *, void *),
                            void (*on_close)(struct kiln_http_req *, void *), void *arg)
{
    if (kiln_http_req_stream_body(r, on_data, on_end, arg) == KILN_OK) {
        kiln_http_req_on_close(r, on_close, arg);
        return KILN_OK;
    }
    if (!on_data || r->responded) return KILN_ESTATE;
    size_t len = 0;
    const char *body = kiln_http_req_body(r, &len);
    if (on_data(r, body ? body : "", len, arg) == 0 && on_end) on_end(r, arg);
    return KILN_OK;
}

/* ---------- responses ---------- */

/* Decide keep-alive for a response started now. */
static int response_keeps(struct kiln_http_req *r)
{
    struct conn *c = r->c;
    if (!r->keep_alive || c->close_after || c->srv->stopping) return 0;
    if (!r->msg_done && body_expected(r->head)) {
        /* Answered before the body arrived: only keep the connection when the
         * rest of the body is small enough to read and drop. */
        if (!r->in_on_headers || r->head->expect_continue || !r->head->has_length ||
            r->head->content_length > c->srv->lim.max_body_bytes)
            return 0;
    }
    return 1;
}

static int head_start(struct kiln_http_req *r, struct kiln_buf *b, int status,
                      const char *content_type, const char *extra, int keep)
{
    int rc = kiln_buf_printf(b, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, reason(status),
                             date_now(r->c->srv));
    if (!rc && content_type) rc = kiln_buf_printf(b, "Content-Type: %s\r\n", content_type);
    if (!rc) rc = kiln_buf_puts(b, keep ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    if (!rc && extra) rc = kiln_buf_puts(b, extra);
    return rc;
}

static int check_req(struct kiln_http_req *r)
{
    if (!r || r->gone || r->c->closing) return KILN_ESTATE;
    if (r->responded) return KILN_ESTATE;
    return KILN_OK;
}

/* 1 and *len if extra has a Content-Length line, 0 if none, -1 if it is
 * malformed. */
static int find_content_length(const char *extra, uint64_t *len)
{
    static const char name[] = "content-length:";
    for (const char *l = extra; l && *l;) {
        if (strncasecmp(l, name, sizeof name - 1) == 0) {
            const char *v = l + sizeof name - 1;
            while (*v == ' ' || *v == '\t')
                v++;
            if (*v < '0' || *v > '9') return -1;
            char *end;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (errno) return -1;
            while (*end == ' ' || *end == '\t')
                end++;
            if (*end != '\r' && *end != '\n' && *end != '\0') return -1;
            *len = n;
            return 1;
        }
        const char *nl = strchr(l, '\n');
        l = nl ? nl + 1 : NULL;
    }
    return 0;
}

/* One response. With owned (the body itself, from malloc) the head goes
 * out in its own write and the body is written without a copy, then freed:
 * a 3 MB answer was copied once more here (issue 18). */
static int respond(struct kiln_http_req *r, int status, const char *content_type,
                   const char *extra_headers, const void *body, size_t len, char *owned)
{
    int rc = check_req(r);
    if (!rc && (status < 200 || status > 999)) rc = KILN_EINVAL;
    if (rc) {
        free(owned);
        return rc;
    }
    struct conn *c = r->c;
    /* A handler's own Content-Length is for HEAD (the size of what GET
     * would send); otherwise it must match. */
    uint64_t given = 0;
    int has_len = find_content_length(extra_headers, &given);
    if (has_len < 0 || (has_len && !r->is_head && given != len)) {
        free(owned);
        return KILN_EINVAL;
    }
    int keep = response_keeps(r);
    int nobody = status == 204 || status == 304;
    int send_body = !nobody && !r->is_head && len;
    struct kiln_buf b = {0};
    /* one allocation for head and body in the common case */
    rc =
        kiln_buf_reserve(&b, 256 + (extra_headers ? strlen(extra_headers) : 0) + (owned ? 0 : len));
    if (!rc) rc = head_start(r, &b, status, nobody ? NULL : content_type, extra_headers, keep);
    if (!rc && !nobody && !has_len) rc = kiln_buf_printf(&b, "Content-Length: %zu\r\n", len);
    if (!rc) rc = kiln_buf_puts(&b, "\r\n");
    if (!rc && send_body && !owned) rc = kiln_buf_append(&b, body, len);
    if (rc) {
        kiln_buf_free(&b);
        free(owned);
        return rc;
    }
    r->responded = 1;
    r->resp_done = 1;
    r->keep_alive = keep;
    if (!keep) c->close_after = 1;
    size_t blen = b.len;
    rc = conn_write_owned(c, kiln_buf_steal(&b), blen);
    if (owned) {
        if (!rc && send_body)
            rc = conn_write_owned(c, owned, len);
        else
            free(owned);
    }
    response_finished(c);
    return rc;
}

int kiln_http_respond(struct kiln_http_req *r, int status, const char *content_type,
                      const char *extra_headers, const void *body, size_t len)
{
    return respond(r, status, content_type, extra_headers, body, len, NULL);
}

int kiln_http_respond_owned(struct kiln_http_req *r, int status, const char *content_type,
                            char *body, size_t len)
{
    return respond(r, status, content_type, NULL, body, len, body);
}

int kiln_http_respond_json(struct kiln_http_req *r, int status, json_t *obj)
{
    if (!obj) return kiln_http_respond_error(r, 500, "internal", "no response body");
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s) return kiln_http_respond_error(r, 500, "internal", "response not serializable");
    return kiln_http_respond_owned(r, status, "application/json", s, strlen(s));
}

int kiln_http_respond_error(struct kiln_http_req *r, int status, const char *code, const char *fmt,
                            ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code ? code : "error", "message", msg);
    if (!o) {
        static const char fb[] = "{\"error\":{\"code\":\"internal\",\"message\":\"error\"}}";
        return kiln_http_respond(r, status, "application/json", NULL, fb, sizeof fb - 1);
    }
    return kiln_http_respond_json(r, status, o);
}

int kiln_http_stream_begin(struct kiln_http_req *r, int status, const char *content_type,
                           const char *extra_headers)
{
    int rc = check_req(r);
    if (rc) return rc;
    if (status < 200 || status > 999 || status == 204 || status == 304) return KILN_EINVAL;
    struct conn *c = r->c;
    uint64_t flen = 0;
    int fixed = find_content_length(extra_headers, &flen);
    if (fixed < 0) return KILN_EINVAL;
    int chunked = !fixed && r->head->http_major == 1 && r->head->http_minor >= 1;
    /* A length given by the handler frames the body; otherwise chunked, and
     * HTTP/1.0 clients get a close-delimited body. */
    int keep = (fixed || chunked) && response_keeps(r);
    struct kiln_buf b = {0};
    rc = head_start(r, &b, status, content_type, extra_headers, keep);
    if (!rc && chunked) rc = kiln_buf_puts(&b, "Transfer-Encoding: chunked\r\n");
    if (!rc) rc = kiln_buf_puts(&b, "\r\n");
    if (rc) {
        kiln_buf_free(&b);
        return rc;
    }
    r->responded = 1;
    r->streaming = 1;
    r->chunked = chunked;
    r->fixed = fixed;
    r->fixed_len = flen;
    r->keep_alive = keep;
    if (!keep) c->close_after = 1;
    size_t blen = b.len;
    return conn_write_owned(c, kiln_buf_steal(&b), blen);
}

int kiln_http_stream_write(struct kiln_http_req *r, const void *data, size_t len)
{
    if (!r || r->gone || r->c->closing || !r->streaming) return KILN_ESTATE;
    if (len == 0 || r->is_head) return KILN_OK;
    struct conn *c = r->c;
    if (r->fixed && len > r->fixed_len - r->sent) return KILN_EINVAL;
    r->sent += len;
    if (!r->chunked) return conn_write(c, data, len);
    struct kiln_buf b = {0};
    int rc = kiln_buf_printf(&b, "%zx\r\n", len);
    if (!rc) rc = kiln_buf_append(&b, data, len);
    if (!rc) rc = kiln_buf_puts(&b, "\r\n");
    if (rc) {
        kiln_buf_free(&b);
        return rc;
    }
    size_t blen = b.len;
    return conn_write_owned(c, kiln_buf_steal(&b), blen);
}

int kiln_http_stream_write_now(struct kiln_http_req *r, const void *data, size_t len)
{
    if (!r || r->gone || r->c->closing || !r->streaming) return KILN_ESTATE;
    struct conn *c = r->c;
    if (len == 0 || len > (1u << 30) || r->is_head || r->fixed || !r->chunked || c->ssl ||
        c->shutting || c->pending)
        return kiln_http_stream_write(r, data, len);
    char hdr[24];
    int hl = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
    uv_buf_t b[3] = {uv_buf_init(hdr, (unsigned)hl), uv_buf_init((char *)data, (unsigned)len),
                     uv_buf_init("\r\n", 2)};
    size_t total = (size_t)hl + len + 2;
    int n = uv_try_write((uv_stream_t *)&c->tcp, b, 3);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) return KILN_ENET;
    r->sent += len;
    c->srv->stats.bytes_out += (size_t)n;
    if ((size_t)n == total) return KILN_OK;
    /* The socket took part: queue the rest like any other write. */
    size_t rest = total - (size_t)n, skip = (size_t)n, off = 0;
    char *d = malloc(rest);
    if (!d) return KILN_ENOMEM;
    for (int i = 0; i < 3; i++) {
        size_t bl = b[i].len;
        if (skip >= bl) {
            skip -= bl;
            continue;
        }
        memcpy(d + off, b[i].base + skip, bl - skip);
        off += bl - skip;
        skip = 0;
    }
    return write_raw_owned(c, d, rest);
}

size_t kiln_http_stream_pending(const struct kiln_http_req *r)
{
    return r ? r->c->pending : 0;
}

void kiln_http_stream_on_drain(struct kiln_http_req *r, void (*cb)(struct kiln_http_req *, void *),
                               void *arg)
{
    r->on_drain = cb;
    r->drain_arg = arg;
}

int kiln_http_stream_end(struct kiln_http_req *r)
{
    if (!r || r->gone || r->c->closing || !r->streaming) return KILN_ESTATE;
    struct conn *c = r->c;
    int rc = KILN_OK;
    if (r->chunked && !r->is_head) rc = conn_write(c, "0\r\n\r\n", 5);
    /* Fewer bytes than announced: the client cannot tell where this
     * response ends, so the connection cannot carry another. */
    if (r->fixed && !r->is_head && r->sent != r->fixed_len) c->close_after = 1;
    r->streaming = 0;
    r->resp_done = 1;
    response_finished(c);
    return rc;
}

void kiln_http_req_pause_body(struct kiln_http_req *r, int pause)
{
    struct conn *c = r->c;
    if (r->gone || c->closing) return;
    if (pause) {
        c->body_paused = 1;
        pause_reading(c);
        /* A paused upload is not a stalled one. */
        if (c->timer_kind == T_BODY) timer_set(c, T_NONE, 0);
    } else if (c->body_paused) {
        c->body_paused = 0;
        resume_reading(c);
        if (!r->msg_done && c->timer_kind == T_NONE)
            timer_set(c, T_BODY, c->srv->lim.idle_timeout_ms);
    }
}

void kiln_http_server_stats(const struct kiln_http_server *s, struct kiln_http_stats *out)
{
    *out = s->stats;
    out->open_connections = s->nconns;
}
