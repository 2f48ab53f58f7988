/* Unit tests for scheduler/http: a real server on 127.0.0.1 (port 0) whose
 * loop runs in a thread, driven by blocking sockets from the test thread.
 * Responses are read with http-parser in response mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/err.h"
#include "http/http.h"
#include "http/http_parse.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---------------- server side ---------------- */

struct tsrv {
    uv_loop_t loop;
    uv_async_t stop;
    struct kiln_http_server *srv;
    pthread_t th;
    int port;
    atomic_int closed_calls;  /* on_close callbacks run */
    atomic_long upload_bytes; /* bytes counted by the streamed upload */
    atomic_int requests;
    size_t stream_total; /* bytes /stream sends */
    int tls;             /* served over TLS with a throwaway cert */
    char dir[64], cert[128], key[128];
    atomic_long stream_max_pending;
};

struct later {
    uv_timer_t t;
    struct kiln_http_req *req;
    struct tsrv *ts;
};

static void later_closed(uv_handle_t *h)
{
    free(h->data);
}

static void later_fire(uv_timer_t *t)
{
    struct later *l = t->data;
    kiln_http_respond(l->req, 200, "text/plain", NULL, "late", 4);
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static void later_gone(struct kiln_http_req *r, void *arg)
{
    struct later *l = arg;
    (void)r;
    atomic_fetch_add(&l->ts->closed_calls, 1);
    uv_timer_stop(&l->t);
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static void hang_gone(struct kiln_http_req *r, void *arg)
{
    struct tsrv *ts = arg;
    (void)r;
    atomic_fetch_add(&ts->closed_calls, 1);
}

/* /stream producer: writes until 256 KiB are pending, resumes on drain. */
struct producer {
    struct tsrv *ts;
    size_t sent;
    char chunk[65536];
};

static void produce(struct kiln_http_req *r, void *arg)
{
    struct producer *p = arg;
    while (p->sent < p->ts->stream_total) {
        size_t pend = kiln_http_stream_pending(r);
        if ((long)pend > atomic_load(&p->ts->stream_max_pending))
            atomic_store(&p->ts->stream_max_pending, (long)pend);
        if (pend > 256 * 1024) return; /* wait for on_drain */
        size_t n = p->ts->stream_total - p->sent;
        if (n > sizeof p->chunk) n = sizeof p->chunk;
        if (kiln_http_stream_write(r, p->chunk, n) != 0) return;
        p->sent += n;
    }
    kiln_http_stream_end(r);
    free(p);
}

static void producer_gone(struct kiln_http_req *r, void *arg)
{
    (void)r;
    struct producer *p = arg;
    atomic_fetch_add(&p->ts->closed_calls, 1);
    free(p);
}

static int up_data(struct kiln_http_req *r, const char *d, size_t n, void *arg)
{
    struct tsrv *ts = arg;
    (void)r;
    (void)d;
    atomic_fetch_add(&ts->upload_bytes, (long)n);
    return 0;
}

static void up_end(struct kiln_http_req *r, void *arg)
{
    struct tsrv *ts = arg;
    char b[64];
    int n = snprintf(b, sizeof b, "%ld", atomic_load(&ts->upload_bytes));
    kiln_http_respond(r, 200, "text/plain", NULL, b, (size_t)n);
}

static int abort_data(struct kiln_http_req *r, const char *d, size_t n, void *arg)
{
    (void)d;
    (void)n;
    (void)arg;
    kiln_http_respond_error(r, 507, "no_space", "disk full");
    return 1;
}

/* /upload-slow: pauses the body on every piece, resumes 30 ms later. */
struct slow {
    uv_timer_t t;
    struct kiln_http_req *req;
    struct tsrv *ts;
    int pauses;
    int closed;
};

static void slow_closed(uv_handle_t *h)
{
    free(h->data);
}

static void slow_resume(uv_timer_t *t)
{
    struct slow *sl = t->data;
    kiln_http_req_pause_body(sl->req, 0);
}

static int slow_data(struct kiln_http_req *r, const char *d, size_t n, void *arg)
{
    struct slow *sl = arg;
    (void)d;
    atomic_fetch_add(&sl->ts->upload_bytes, (long)n);
    if (sl->pauses < 5) {
        sl->pauses++;
        kiln_http_req_pause_body(r, 1);
        uv_timer_start(&sl->t, slow_resume, 150, 0);
    }
    return 0;
}

static void slow_end(struct kiln_http_req *r, void *arg)
{
    struct slow *sl = arg;
    char b[64];
    int n = snprintf(b, sizeof b, "%ld/%d", atomic_load(&sl->ts->upload_bytes), sl->pauses);
    kiln_http_respond(r, 200, "text/plain", NULL, b, (size_t)n);
    uv_close((uv_handle_t *)&sl->t, slow_closed);
}

static void slow_gone(struct kiln_http_req *r, void *arg)
{
    struct slow *sl = arg;
    (void)r;
    uv_close((uv_handle_t *)&sl->t, slow_closed);
}

static int on_headers(struct kiln_http_req *r, void *ctx)
{
    struct tsrv *ts = ctx;
    const char *p = kiln_http_req_path(r);
    if (strcmp(p, "/upload") == 0) {
        atomic_store(&ts->upload_bytes, 0);
        return kiln_http_req_stream_body(r, up_data, up_end, ts);
    }
    if (strcmp(p, "/upload-slow") == 0) {
        atomic_store(&ts->upload_bytes, 0);
        struct slow *sl = calloc(1, sizeof *sl);
        assert_non_null(sl);
        sl->req = r;
        sl->ts = ts;
        uv_timer_init(&ts->loop, &sl->t);
        sl->t.data = sl;
        kiln_http_req_on_close(r, slow_gone, sl);
        return kiln_http_req_stream_body(r, slow_data, slow_end, sl);
    }
    if (strcmp(p, "/upload-abort") == 0) return kiln_http_req_stream_body(r, abort_data, NULL, ts);
    if (strcmp(p, "/take") == 0) {
        atomic_store(&ts->upload_bytes, 0);
        return kiln_http_req_take_body(r, up_data, up_end, NULL, ts);
    }
    if (strcmp(p, "/deny") == 0) {
        kiln_http_respond_error(r, 401, "unauthorized", "no token");
        return 0;
    }
    return 0;
}

static void on_request(struct kiln_http_req *r, void *ctx)
{
    struct tsrv *ts = ctx;
    atomic_fetch_add(&ts->requests, 1);
    const char *p = kiln_http_req_path(r);
    if (strcmp(p, "/hello") == 0) {
        char a[64] = "", out[256];
        int has = kiln_http_req_param(r, "a", a, sizeof a);
        int n = snprintf(out, sizeof out, "hello %s %s a=%s(%d) peer=%s", kiln_http_req_method(r),
                         p, a, has, kiln_http_req_peer(r));
        kiln_http_respond(r, 200, "text/plain", "X-Test: 1\r\n", out, (size_t)n);
    } else if (strcmp(p, "/echo") == 0) {
        size_t len;
        const char *b = kiln_http_req_body(r, &len);
        kiln_http_respond(r, 200, "application/octet-stream", NULL, b, len);
    } else if (strcmp(p, "/take-buffered") == 0) {
        /* on_request: the body is already whole, so take_body hands it over */
        atomic_store(&ts->upload_bytes, 0);
        assert_int_equal(kiln_http_req_take_body(r, up_data, up_end, NULL, ts), KILN_OK);
    } else if (strcmp(p, "/json") == 0) {
        kiln_http_respond_json(r, 201, json_pack("{s:i}", "id", 7));
    } else if (strcmp(p, "/later") == 0) {
        struct later *l = calloc(1, sizeof *l);
        assert_non_null(l);
        l->req = r;
        l->ts = ts;
        uv_timer_init(&ts->loop, &l->t);
        l->t.data = l;
        kiln_http_req_on_close(r, later_gone, l);
        uv_timer_start(&l->t, later_fire, 100, 0);
    } else if (strcmp(p, "/hang") == 0) {
        kiln_http_req_on_close(r, hang_gone, ts);
    } else if (strcmp(p, "/size") == 0) {
        /* HEAD tells the size GET would send */
        if (strcmp(kiln_http_req_method(r), "HEAD") == 0) {
            kiln_http_respond(r, 200, "application/octet-stream", "Content-Length: 12345\r\n", NULL,
                              0);
        } else {
            assert_int_equal(kiln_http_respond(r, 200, NULL, "Content-Length: 3\r\n", "ab", 2),
                             KILN_EINVAL);
            kiln_http_respond(r, 200, NULL, "Content-Length: 2\r\n", "ab", 2);
        }
    } else if (strcmp(p, "/fixed") == 0) {
        /* 10 bytes announced; ?short=1 sends only 4 */
        char v[8];
        int short_body = kiln_http_req_param(r, "short", v, sizeof v) == 1;
        assert_int_equal(kiln_http_stream_begin(r, 200, "text/plain", "Content-Length: x\r\n"),
                         KILN_EINVAL);
        assert_int_equal(kiln_http_stream_begin(r, 200, "text/plain", "content-length: 10\r\n"), 0);
        assert_int_equal(kiln_http_stream_write(r, "0123", 4), 0);
        if (!short_body) {
            assert_int_equal(kiln_http_stream_write(r, "4567890", 7), KILN_EINVAL);
            assert_int_equal(kiln_http_stream_write(r, "456789", 6), 0);
        }
        kiln_http_stream_end(r);
    } else if (strcmp(p, "/stream") == 0) {
        struct producer *pr = calloc(1, sizeof *pr);
        assert_non_null(pr);
        pr->ts = ts;
        memset(pr->chunk, 'z', sizeof pr->chunk);
        kiln_http_req_on_close(r, producer_gone, pr);
        kiln_http_stream_on_drain(r, produce, pr);
        kiln_http_stream_begin(r, 200, "application/octet-stream", NULL);
        produce(r, pr);
    } else {
        kiln_http_respond_error(r, 404, "not_found", "no route for %s", p);
    }
}

static void *loop_main(void *arg)
{
    struct tsrv *ts = arg;
    uv_run(&ts->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void stop_cb(uv_async_t *a)
{
    struct tsrv *ts = a->data;
    kiln_http_server_stop(ts->srv);
    uv_close((uv_handle_t *)a, NULL);
}

/* Self-signed EC cert for localhost/127.0.0.1 made by the openssl CLI; 0 ok. */
static int make_cert(struct tsrv *ts)
{
    snprintf(ts->dir, sizeof ts->dir, "/tmp/kiln-http-test-XXXXXX");
    if (!mkdtemp(ts->dir)) return -1;
    snprintf(ts->cert, sizeof ts->cert, "%s/cert.pem", ts->dir);
    snprintf(ts->key, sizeof ts->key, "%s/key.pem", ts->dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s -out %s -days 1 -subj /CN=localhost "
             "-addext subjectAltName=IP:127.0.0.1,DNS:localhost >/dev/null 2>&1",
             ts->key, ts->cert);
    return system(cmd) == 0 ? 0 : -1;
}

static void remove_cert(struct tsrv *ts)
{
    if (!ts->dir[0]) return;
    unlink(ts->cert);
    unlink(ts->key);
    rmdir(ts->dir);
}

/* use_tls: serve over TLS with a fresh cert (skips the test without openssl). */
static struct tsrv *start_mode(const struct kiln_http_limits *lim, int use_tls)
{
    struct tsrv *ts = calloc(1, sizeof *ts);
    assert_non_null(ts);
    struct kiln_http_tls tlsconf, *tls = NULL;
    if (use_tls) {
        if (make_cert(ts) != 0) {
            remove_cert(ts);
            free(ts);
            skip();
        }
        ts->tls = 1;
        tlsconf.cert_file = ts->cert;
        tlsconf.key_file = ts->key;
        tls = &tlsconf;
    }
    ts->stream_total = 10 * 1024 * 1024;
    assert_int_equal(uv_loop_init(&ts->loop), 0);
    struct kiln_http_callbacks cb = {on_headers, on_request, ts};
    assert_int_equal(kiln_http_server_start(&ts->loop, "127.0.0.1", 0, lim, tls, cb, &ts->srv), 0);
    ts->port = kiln_http_server_port(ts->srv);
    assert_true(ts->port > 0);
    assert_int_equal(uv_async_init(&ts->loop, &ts->stop, stop_cb), 0);
    ts->stop.data = ts;
    assert_int_equal(pthread_create(&ts->th, NULL, loop_main, ts), 0);
    return ts;
}

/* plain HTTP, or TLS when the test runs with a non-NULL prestate */
#define start(lim, state) start_mode((lim), *(state) != NULL)

static void stop(struct tsrv *ts)
{
    uv_async_send(&ts->stop);
    pthread_join(ts->th, NULL);
    /* Test timers still pending (none expected) are closed here. */
    uv_walk(&ts->loop, walk_close, NULL);
    uv_run(&ts->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&ts->loop), 0);
    remove_cert(ts);
    free(ts);
}

/* ---------------- client side ---------------- */

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

struct resp {
    int status;
    char body[4096];
    size_t body_len;   /* bytes kept (up to sizeof body - 1) */
    size_t body_total; /* all body bytes */
    char connection[32];
    char ctype[64];
    int chunked;
    int complete;
    /* header parsing state */
    char field[64];
    int want;
};

/* A test client: a blocking socket, optionally TLS (verifying the test CA). */
struct client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    http_parser hp;
    http_parser_settings st;
    struct resp r;
    char buf[65536];
    size_t have, off; /* unparsed bytes carried to the next response */
};

static int c_field(http_parser *p, const char *at, size_t n)
{
    struct client *c = p->data;
    snprintf(c->r.field, sizeof c->r.field, "%.*s", (int)n, at);
    return 0;
}

static int c_value(http_parser *p, const char *at, size_t n)
{
    struct client *c = p->data;
    if (strcasecmp(c->r.field, "Connection") == 0)
        snprintf(c->r.connection, sizeof c->r.connection, "%.*s", (int)n, at);
    if (strcasecmp(c->r.field, "Content-Type") == 0)
        snprintf(c->r.ctype, sizeof c->r.ctype, "%.*s", (int)n, at);
    if (strcasecmp(c->r.field, "Transfer-Encoding") == 0) c->r.chunked = 1;
    return 0;
}

static int c_body(http_parser *p, const char *at, size_t n)
{
    struct client *c = p->data;
    size_t room = sizeof c->r.body - 1 - c->r.body_len;
    size_t k = n < room ? n : room;
    memcpy(c->r.body + c->r.body_len, at, k);
    c->r.body_len += k;
    c->r.body[c->r.body_len] = '\0';
    c->r.body_total += n;
    return 0;
}

static int c_done(http_parser *p)
{
    struct client *c = p->data;
    c->r.status = (int)p->status_code;
    c->r.complete = 1;
    http_parser_pause(p, 1);
    return 0;
}

static void client_init_raw(struct client *c, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = dial(port);
    http_parser_init(&c->hp, HTTP_RESPONSE);
    c->hp.data = c;
    http_parser_settings_init(&c->st);
    c->st.on_header_field = c_field;
    c->st.on_header_value = c_value;
    c->st.on_body = c_body;
    c->st.on_message_complete = c_done;
}

static void client_init(struct client *c, struct tsrv *ts)
{
    client_init_raw(c, ts->port);
    if (!ts->tls) return;
    c->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(c->ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(c->ctx, ts->cert, NULL), 1);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    c->ssl = SSL_new(c->ctx);
    assert_non_null(c->ssl);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set1_host(c->ssl, "localhost");
    assert_int_equal(SSL_connect(c->ssl), 1);
}

static ssize_t crecv(struct client *c, void *b, size_t n, int flags)
{
    if (!c->ssl) return recv(c->fd, b, n, flags);
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(c->ssl, b, (int)n);
    if (r > 0) return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0) return 0; /* bare EOF */
    if (e == SSL_ERROR_SSL) errno = ECONNRESET; /* e.g. the peer reset mid-record */
    return -1;
}

static void send_all(struct client *c, const void *p, size_t n)
{
    const char *d = p;
    while (n) {
        ssize_t w;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, d, (int)(n > (1u << 30) ? (1u << 30) : n));
            w = r > 0 ? r : -1;
        } else {
            w = send(c->fd, d, n, MSG_NOSIGNAL);
        }
        assert_true(w > 0);
        d += w;
        n -= (size_t)w;
    }
}

static void send_str(struct client *c, const char *s)
{
    send_all(c, s, strlen(s));
}

static void cclose(struct client *c)
{
    if (c->ssl) SSL_free(c->ssl);
    if (c->ctx) SSL_CTX_free(c->ctx);
    c->ssl = NULL;
    c->ctx = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

/* Reads one response. Returns 0, or -1 on EOF/timeout before it completed. */
static int read_resp(struct client *c)
{
    memset(&c->r, 0, sizeof c->r);
    if (HTTP_PARSER_ERRNO(&c->hp) == HPE_PAUSED) http_parser_pause(&c->hp, 0);
    for (;;) {
        if (c->off < c->have) {
            size_t n = http_parser_execute(&c->hp, &c->st, c->buf + c->off, c->have - c->off);
            c->off += n;
            if (c->r.complete) return 0;
            if (HTTP_PARSER_ERRNO(&c->hp) != HPE_OK) return -2;
        }
        ssize_t r = crecv(c, c->buf, sizeof c->buf, 0);
        if (r <= 0) {
            /* EOF ends a close-delimited body */
            if (r == 0) http_parser_execute(&c->hp, &c->st, NULL, 0);
            return c->r.complete ? 0 : -1;
        }
        c->have = (size_t)r;
        c->off = 0;
    }
}

/* 1 if the server closed the connection within ms. */
static int wait_eof(struct client *c, int ms)
{
    struct pollfd pf = {c->fd, POLLIN, 0};
    char b[4096];
    for (;;) {
        if (!(c->ssl && SSL_pending(c->ssl) > 0)) {
            int r = poll(&pf, 1, ms);
            if (r <= 0) return 0;
        }
        ssize_t n = crecv(c, b, sizeof b, 0);
        if (n == 0) return 1;
        if (n < 0) return errno == ECONNRESET ? 1 : 0;
    }
}

static void wait_counter(atomic_int *v, int want, int ms)
{
    for (int i = 0; i < ms / 10 && atomic_load(v) < want; i++)
        usleep(10000);
}

/* ---------------- tests ---------------- */

static void test_keepalive_two_requests(void **state)
{
    (void)state;
    struct tsrv *ts = start(NULL, state);
    struct client c;
    client_init(&c, ts);
    send_str(&c, "GET /hello?a=x%20y+z&b=2 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    assert_string_equal(c.r.body, "hello GET /hello a=x y z(1) peer=127.0.0.1");
    assert_string_equal(c.r.connection, "keep-alive");
    send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    assert_string_equal(c.r.body, "abcde");
    send_str(&c, "GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 201);
    assert_string_equal(c.r.body, "{\"id\":7}");
    assert_string_equal(c.r.ctype, "application/json");
    assert_string_equal(c.r.connection, "close");
    assert_true(wait_eof(&c, 2000));
    cclose(&c);
    assert_int_equal(atomic_load(&ts->requests), 3);
    stop(ts);
}

static void test_pipelined_in_order(void **state)
{
    (void)state;
    struct tsrv *ts = start(NULL, state);
    struct client c;
    client_init(&c, ts);
    /* The first answer comes 100 ms later from a timer; the second must
     * still come after it. */
    send_str(&c, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_string_equal(c.r.body, "late");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    assert_memory_equal(c.r.body, "hello GET", 9);
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 404);
    assert_non_null(strstr(c.r.body, "\"code\":\"not_found\""));
    cclose(&c);
    stop(ts);
}

static void test_http10_and_head(void **state)
{
    (void)state;
    struct tsrv *ts = start(NULL, state);
    struct client c;
    client_init(&c, ts);
    send_str(&c, "GET /hello HTTP/1.0\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_string_equal(c.r.connection, "close");
    assert_true(wait_eof(&c, 2000));
    cclose(&c);
    client_init(&c, ts);
    send_str(&c, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    /* A HEAD response has no body even though Content-Length says so. */
    char b[1024];
    ssize_t n = crecv(&c, b, sizeof b - 1, 0);
    assert_true(n > 0);
    b[n] = '\0';
    assert_non_null(strstr(b, "Content-Length: 38\r\n"));
    assert_non_null(strstr(b, "\r\n\r\n"));
    assert_string_equal(strstr(b, "\r\n\r\n"), "\r\n\r\n");
    cclose(&c);
    stop(ts);
}

static void test_header_too_large(void **state)
{
    (void)state;
    struct kiln_http_limits lim = {.max_header_bytes = 1024};
    struct tsrv *ts = start(&lim, state);
    struct client c;
    client_init(&c, ts);
    char big[4096];
    memset(big, 'a', sizeof big);
    big[sizeof big - 1] = '\0';
    send_str(&c, "GET /hello HTTP/1.1\r\nX-Big: ");
    send_str(&c, big);
    send_str(&c, "\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 431);
    assert_non_null(strstr(c.r.body, "\"error\""));
    assert_true(wait_eof(&c, 3000));
    cclose(&c);
    assert_int_equal(atomic_load(&ts->requests), 0);
    stop(ts);
}

static void test_body_too_large(void **state)
{
    (void)state;
    struct kiln_http_limits lim = {.max_body_bytes = 1000};
    struct tsrv *ts = start(&lim, state);
    struct client c;
    client_init(&c, ts);
    send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 413);
    assert_non_null(strstr(c.r.body, "\"code\":\"too_large\""));
    assert_true(wait_eof(&c, 3000));
    cclose(&c);
    /* Chunked: the limit is hit while reading. */
    client_init(&c, ts);
    send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[700];
    memset(chunk, 'b', sizeof chunk);
    for (int i = 0; i < 2; i++) {
        send_str(&c, "2bc\r\n");
        send_all(&c, chunk, sizeof chunk);
        send_str(&c, "\r\n");
    }
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 413);
    cclose(&c);
    assert_int_equal(atomic_load(&ts->requests), 0);
    stop(ts);
}

static void test_slow_client_timeout(void **state)
{
    (void)state;
    struct kiln_http_limits lim = {.header_timeout_ms = 200, .idle_timeout_ms = 300};
    struct tsrv *ts = start(&lim, state);
    struct client c;
    client_init(&c, ts);
    send_str(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(read_resp(&c), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(c.r.status, 408);
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    /* over TLS the clock started before the handshake */
    assert_true(el >= (ts->tls ? 0.0 : 0.15) && el < 2.0);
    assert_true(wait_eof(&c, 3000));
    cclose(&c);
    /* Idle keep-alive: after a response the connection closes quietly. */
    client_init(&c, ts);
    send_str(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    assert_true(wait_eof(&c, 3000));
    cclose(&c);
    stop(ts);
}

static void test_bad_request(void **state)
{
    (void)state;
    struct tsrv *ts = start(NULL, state);
    const char *bad[] = {
        "BLAH /x HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /x HTTP/9.9\r\n\r\n",
        "GET /x HTTP/1.1\r\nBad Header\r\n\r\n",
        "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct client c;
        client_init(&c, ts);
        send_str(&c, bad[i]);
        assert_int_equal(read_resp(&c), 0);
        assert_int_equal(c.r.status, 400);
        assert_non_null(strstr(c.r.body, "{\"error\":{\"code\":\"parse_error\""));
        assert_string_equal(c.r.connection, "close");
        assert_true(wait_eof(&c, 3000));
        cclose(&c);
    }
    assert_int_equal(atomic_load(&ts->requests), 0);
    stop(ts);
}

static void test_chunked_request_body(void **state)
{
    (void)state;
    struct tsrv *ts = start(NULL, state);
    struct client c;
    client_init(&c, ts);
    send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n");
    usleep(20000);
    send_str(&c, "7\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    assert_string_equal(c.r.body, "hello, world");
    /* still usable */
    send_str(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    cclose(&c);
    stop(ts);
}

/* kiln_http_req_take_body gives the same answer whether the handler runs
 * from on_headers (streamed) or from on_request (buffered). */
static void test_take_body_either_way(void **state)
{
    struct tsrv *ts = start(NULL, state);
    struct client c;
    client_init(&c, ts);
    const char *paths[] = {"/take", "/take-buffered"};
    char body[1000], hdr[160];
    memset(body, 'q', sizeof body);
    for (int i = 0; i < 2; i++) {
        snprintf(hdr, sizeof hdr, "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
                 paths[i], sizeof body);
        send_str(&c, hdr);
        send_all(&c, body, sizeof body);
        assert_int_equal(read_resp(&c), 0);
        assert_int_equal(c.r.status, 200);
        assert_string_equal(c.r.body, "1000");
    }
    cclose(&c);
    stop(ts);
}

static void test_long_poll_answered_later(void **state)
{
    (void)state;
    struct tsrv *ts = start(NULL, state);
    struct client c;
    client_init(&c, ts);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    send_str(&c, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(el >= 0.09);
    assert_string_equal(c.r.body, "late");
    send_str(&c, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_string_equal(c.r.body, "late");
    cclose(&c);
    assert_int_equal(atomic_load(&ts->closed_calls), 0);
    stop(ts);
}

static void test_disconnect_calls_on_close(void **state)
{
    (void)state;
    struct tsrv *ts = start(NULL, state);
    struct client c;
    client_init(&c, ts);
    send_str(&c, "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_counter(&ts->requests, 1, 2000);
    assert_int_equal(atomic_load(&ts->requests), 1);
    cclose(&c);
    wait_counter(&ts->closed_calls, 1, 2000);
    assert_int_equal(atomic_load(&ts->closed_calls), 1);
    /* and a deferred one whose timer must be cancelled by on_close */
    client_init(&c, ts);
    send_str(&c, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_counter(&ts->requests, 2, 2000);
    cclose(&c);
    wait_counter(&ts->closed_calls, 2, 2000);
    assert_int_equal(atomic_load(&ts->closed_calls), 2);
    /* A pending long-poll at stop also gets on_close. */
    client_init(&c, ts);
    send_str(&c, "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_counter(&ts->requests, 3, 2000);
    stop(ts);
    cclose(&c);
}

static void test_streaming_response(void **state)
{
    (void)state;
    struct tsrv *ts = start(NULL, state);
    struct client c;
    client_init(&c, ts);
    send_str(&c, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    assert_true(c.r.chunked);
    assert_int_equal(c.r.body_total, ts->stream_total);
    /* The producer paused on backpressure instead of queueing 10 MB. */
    assert_true(atomic_load(&ts->stream_max_pending) <= 256 * 1024 + 65536 + 64);
    send_str(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    cclose(&c);
    stop(ts);
}

static void test_streamed_upload_50mb(void **state)
{
    (void)state;
    /* max_body is 1 MiB: a buffered body of 50 MB would get 413. */
    struct kiln_http_limits lim = {.max_body_bytes = 1024 * 1024};
    struct tsrv *ts = start(&lim, state);
    struct client c;
    client_init(&c, ts);
    size_t total = 50u * 1000 * 1000;
    char hdr[256];
    snprintf(hdr, sizeof hdr, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
             total);
    send_str(&c, hdr);
    static char block[1 << 20];
    memset(block, 'u', sizeof block);
    for (size_t sent = 0; sent < total;) {
        size_t n = total - sent < sizeof block ? total - sent : sizeof block;
        send_all(&c, block, n);
        sent += n;
    }
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    assert_string_equal(c.r.body, "50000000");
    /* Chunked upload too, on the same connection. */
    send_str(&c, "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        send_str(&c, "100000\r\n");
        send_all(&c, block, 0x100000);
        send_str(&c, "\r\n");
    }
    send_str(&c, "0\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_string_equal(c.r.body, "3145728");
    cclose(&c);
    stop(ts);
}

static void test_upload_abort_and_early_answer(void **state)
{
    (void)state;
    struct tsrv *ts = start(NULL, state);
    struct client c;
    client_init(&c, ts);
    send_str(&c, "POST /upload-abort HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nxyz");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 507);
    assert_string_equal(c.r.connection, "close");
    assert_true(wait_eof(&c, 3000));
    cclose(&c);
    /* Early 401 with a small body: the body is drained, keep-alive kept. */
    client_init(&c, ts);
    send_str(&c, "POST /deny HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd"
                 "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 401);
    assert_string_equal(c.r.connection, "keep-alive");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    cclose(&c);
    /* Expect: 100-continue gets the interim response before the body. */
    client_init(&c, ts);
    send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
                 "Expect: 100-continue\r\n\r\n");
    char b[64];
    ssize_t n = crecv(&c, b, sizeof b - 1, 0);
    assert_true(n > 0);
    b[n] = '\0';
    assert_string_equal(b, "HTTP/1.1 100 Continue\r\n\r\n");
    send_str(&c, "ok");
    assert_int_equal(read_resp(&c), 0);
    assert_string_equal(c.r.body, "ok");
    cclose(&c);
    stop(ts);
}

static void test_paused_upload_and_stats(void **state)
{
    (void)state;
    /* idle (body stall) timeout 100 ms, but pauses last 150 ms: a paused
     * upload must not be taken for a stalled one. */
    struct kiln_http_limits lim = {.idle_timeout_ms = 100};
    struct tsrv *ts = start(&lim, state);
    struct client c;
    client_init(&c, ts);
    size_t total = 4u * 1000 * 1000;
    char hdr[256];
    snprintf(hdr, sizeof hdr,
             "POST /upload-slow HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", total);
    send_str(&c, hdr);
    static char block[1 << 16];
    memset(block, 'p', sizeof block);
    for (size_t sent = 0; sent < total;) {
        size_t n = total - sent < sizeof block ? total - sent : sizeof block;
        send_all(&c, block, n);
        sent += n;
    }
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    assert_string_equal(c.r.body, "4000000/5");
    cclose(&c);
    wait_counter(&ts->requests, 0, 10);
    struct kiln_http_stats st;
    kiln_http_server_stats(ts->srv, &st); /* racy read of counters, fine for a test */
    assert_true(st.connections >= 1);
    assert_true(st.requests >= 1);
    assert_true(st.bytes_in >= total);
    stop(ts);
}

static void test_edges(void **state)
{
    (void)state;
    struct kiln_http_limits lim = {.header_timeout_ms = 150};
    struct tsrv *ts = start(&lim, state);
    struct client c;
    /* A connection that sends nothing gets 408 after the header timeout. */
    client_init(&c, ts);
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 408);
    assert_true(wait_eof(&c, 2000));
    cclose(&c);
    /* HTTP/1.0 streaming: close-delimited body. */
    ts->stream_total = 100000;
    client_init(&c, ts);
    send_str(&c, "GET /stream HTTP/1.0\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    assert_false(c.r.chunked);
    assert_int_equal(c.r.body_total, 100000);
    cclose(&c);
    /* Early answer to an Expect: 100-continue request: no 100, then close. */
    client_init(&c, ts);
    send_str(&c, "POST /deny HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n"
                 "Expect: 100-continue\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 401);
    assert_string_equal(c.r.connection, "close");
    assert_true(wait_eof(&c, 3000));
    cclose(&c);
    /* A good request, then a bad one pipelined: the first is answered. */
    client_init(&c, ts);
    send_str(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /x HTTP/1.1\r\nBad\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 400);
    assert_true(wait_eof(&c, 3000));
    cclose(&c);
    /* Stop with a streaming response in flight and unsent data queued. */
    ts->stream_total = (size_t)1 << 40;
    client_init(&c, ts);
    send_str(&c, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    char b[1024];
    assert_true(crecv(&c, b, sizeof b, 0) > 0);
    stop(ts);
    cclose(&c);
}

static void test_stalled_reader_dropped(void **state)
{
    (void)state;
    struct kiln_http_limits lim = {.idle_timeout_ms = 300};
    struct tsrv *ts = start(&lim, state);
    ts->stream_total = (size_t)1 << 40; /* endless */
    struct client c;
    client_init(&c, ts);
    int small = 4096;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    send_str(&c, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    /* never read: once the socket buffers are full, no progress for 300 ms */
    wait_counter(&ts->closed_calls, 1, 8000);
    assert_int_equal(atomic_load(&ts->closed_calls), 1);
    cclose(&c);
    /* A slow but steady reader of a big plain response is not dropped. */
    ts->stream_total = 3u * 1000 * 1000;
    client_init(&c, ts);
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    send_str(&c, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    char b[65536];
    size_t got = 0;
    for (int i = 0; i < 6; i++) { /* 6 x 100 ms pauses, each under the timeout */
        usleep(100000);
        ssize_t n = crecv(&c, b, sizeof b, 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_true(got > 0);
    /* still alive after 600 ms: each pause is under the limit and the
     * socket made progress in between */
    assert_int_equal(atomic_load(&ts->closed_calls), 1);
    cclose(&c);
    stop(ts);
}

static void test_fixed_length_stream(void **state)
{
    (void)state;
    struct tsrv *ts = start(NULL, state);
    struct client c;
    client_init(&c, ts);
    send_str(&c, "GET /fixed HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 200);
    assert_false(c.r.chunked);
    assert_string_equal(c.r.body, "0123456789");
    assert_string_equal(c.r.connection, "keep-alive");
    send_str(&c, "GET /size HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&c), 0);
    assert_string_equal(c.r.body, "ab");
    send_str(&c, "HEAD /size HTTP/1.1\r\nHost: t\r\n\r\n");
    char hb[512];
    ssize_t hn = crecv(&c, hb, sizeof hb - 1, 0);
    assert_true(hn > 0);
    hb[hn] = '\0';
    assert_non_null(strstr(hb, "Content-Length: 12345\r\n"));
    assert_null(strstr(strstr(hb, "12345"), "Content-Length"));
    assert_string_equal(strstr(hb, "\r\n\r\n"), "\r\n\r\n");
    /* still reusable after all that */
    send_str(&c, "GET /fixed?short=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&c), -1); /* 4 of 10 bytes, then the server closes */
    assert_string_equal(c.r.body, "0123");
    cclose(&c);
    stop(ts);
}

static void test_many_clients(void **state)
{
    (void)state;
    struct tsrv *ts = start(NULL, state);
    enum { N = 64, ROUNDS = 10 };
    struct client *cs = calloc(N, sizeof *cs);
    assert_non_null(cs);
    for (int i = 0; i < N; i++)
        client_init(&cs[i], ts);
    static const char *reqs[] = {
        "GET /hello?a=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /later HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        "GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n",
    };
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < N; i++)
            send_str(&cs[i], reqs[(i + round) % 4]);
        for (int i = 0; i < N; i++) {
            assert_int_equal(read_resp(&cs[i]), 0);
            assert_true(cs[i].r.status == 200 || cs[i].r.status == 201);
            if ((i + round) % 4 == 3) {
                assert_int_equal(read_resp(&cs[i]), 0);
                assert_int_equal(cs[i].r.status, 201);
            }
        }
    }
    /* Leave some mid-request (partial heads, pending long-polls) at stop. */
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0) send_str(&cs[i], "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
        if (i % 3 == 1) send_str(&cs[i], "POST /echo HTTP/1.1\r\nContent-Le");
        if (i % 5 == 0) cclose(&cs[i]);
    }
    usleep(100000);
    stop(ts);
    for (int i = 0; i < N; i++)
        if (cs[i].fd >= 0) cclose(&cs[i]);
    free(cs);
}

/* Issue 16: a body trickled a byte at a time, each byte inside the idle
 * timeout, still meets the whole-body deadline (the old timer restarted on
 * every byte, so the request was answered 200 after the last one). */
static void test_body_trickle_times_out(void **state)
{
    (void)state;
    struct kiln_http_limits lim = {.idle_timeout_ms = 400, .body_timeout_ms = 300};
    struct tsrv *ts = start(&lim, state);
    struct client c;
    client_init(&c, ts);
    send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n\r\n");
    for (int i = 0; i < 20; i++) {
        usleep(100000);
        if (send(c.fd, "a", 1, MSG_NOSIGNAL) != 1) break; /* closed on us: fine */
    }
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 408);
    assert_non_null(strstr(c.r.body, "body"));
    cclose(&c);
    stop(ts);
}

/* Issue 16: one client address may hold only so many connections; the
 * refusal says why, and others' connections are not affected. */
static void test_connections_capped_per_client(void **state)
{
    (void)state;
    struct kiln_http_limits lim = {.max_connections_per_client = 3};
    struct tsrv *ts = start(&lim, state);
    struct client cs[4];
    for (int i = 0; i < 3; i++) {
        client_init(&cs[i], ts);
        send_str(&cs[i], "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_int_equal(read_resp(&cs[i]), 0);
        assert_int_equal(cs[i].r.status, 200);
    }
    client_init(&cs[3], ts);
    assert_int_equal(read_resp(&cs[3]), 0);
    assert_int_equal(cs[3].r.status, 503);
    assert_non_null(strstr(cs[3].r.body, "too many connections from 127.0.0.1"));
    cclose(&cs[3]);
    /* A slot freed is a slot again (the close is seen asynchronously). */
    cclose(&cs[0]);
    int ok = 0;
    for (int tries = 0; tries < 100 && !ok; tries++) {
        client_init(&cs[0], ts);
        send_str(&cs[0], "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        ok = read_resp(&cs[0]) == 0 && cs[0].r.status == 200;
        if (!ok) {
            cclose(&cs[0]);
            usleep(20000);
        }
    }
    assert_true(ok);
    for (int i = 0; i < 3; i++)
        cclose(&cs[i]);
    stop(ts);
}

static void test_start_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct kiln_http_callbacks cb = {NULL, on_request, NULL};
    struct kiln_http_server *a = NULL, *b = NULL;
    assert_int_equal(kiln_http_server_start(&loop, "127.0.0.1", 0, NULL, NULL, cb, &a), 0);
    int port = kiln_http_server_port(a);
    assert_int_equal(kiln_http_server_start(&loop, "127.0.0.1", port, NULL, NULL, cb, &b),
                     KILN_EEXIST);
    assert_null(b);
    assert_int_equal(kiln_http_server_start(&loop, "", 0, NULL, NULL, cb, &b), KILN_EINVAL);
    /* names are looked up */
    assert_int_equal(kiln_http_server_start(&loop, "localhost", 0, NULL, NULL, cb, &b), 0);
    assert_true(kiln_http_server_port(b) > 0);
    kiln_http_server_stop(b);
    b = NULL;
    assert_int_equal(kiln_http_server_start(&loop, "127.0.0.1", 70000, NULL, NULL, cb, &b),
                     KILN_EINVAL);
    kiln_http_server_stop(a);
    kiln_http_server_stop(NULL); /* a no-op */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0); /* every handle closed */
}

static void test_max_connections(void **state)
{
    (void)state;
    struct kiln_http_limits lim = {.max_connections = 2};
    struct tsrv *ts = start(&lim, state);
    struct client a, b, c;
    client_init(&a, ts);
    client_init(&b, ts);
    send_str(&a, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&a), 0);
    send_str(&b, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(&b), 0);
    client_init(&c, ts);
    assert_int_equal(read_resp(&c), 0);
    assert_int_equal(c.r.status, 503);
    cclose(&c);
    cclose(&a);
    cclose(&b);
    stop(ts);
}

static void test_query_params(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(kiln_http_query_param("a=1&b=x%2Fy+z&c", "b", out, sizeof out), 1);
    assert_string_equal(out, "x/y z");
    assert_int_equal(kiln_http_query_param("a=1&b=2", "c", out, sizeof out), 0);
    assert_int_equal(kiln_http_query_param("a=1&c", "c", out, sizeof out), 1);
    assert_string_equal(out, "");
    assert_int_equal(kiln_http_query_param("a%20b=1", "a b", out, sizeof out), 1);
    assert_int_equal(kiln_http_query_param("a=%zz", "a", out, sizeof out), KILN_EINVAL);
    assert_int_equal(kiln_http_query_param("a=%4", "a", out, sizeof out), KILN_EINVAL);
    assert_int_equal(kiln_http_query_param("a=%00", "a", out, sizeof out), KILN_EINVAL);
    assert_int_equal(kiln_http_query_param("a=0123456789abcdefg", "a", out, sizeof out),
                     KILN_ELIMIT);
    assert_string_equal(out, "");
    assert_int_equal(kiln_http_query_param("", "a", out, sizeof out), 0);
}

/* ---------------- TLS ---------------- */

struct curl_sink {
    size_t bytes;
    char head[256];
};

static size_t sink_write(char *p, size_t sz, size_t n, void *arg)
{
    struct curl_sink *k = arg;
    size_t len = sz * n;
    if (k->bytes < sizeof k->head - 1) {
        size_t room = sizeof k->head - 1 - k->bytes;
        memcpy(k->head + k->bytes, p, len < room ? len : room);
    }
    k->bytes += len;
    return len;
}

struct curl_src {
    size_t left;
};

static size_t src_read(char *p, size_t sz, size_t n, void *arg)
{
    struct curl_src *s = arg;
    size_t len = sz * n;
    if (len > s->left) len = s->left;
    memset(p, 'q', len);
    s->left -= len;
    return len;
}

static void test_tls_with_curl(void **state)
{
    (void)state;
    /* The header deadline also bounds each TLS handshake: 5 s leaves room
     * for a handshake under ASan on a loaded machine, and the waits below
     * are upper bounds, never expected durations. */
    struct kiln_http_limits lim = {.header_timeout_ms = 5000};
    struct tsrv *ts = start_mode(&lim, 1);
    const char *cert = ts->cert;
    /* A missing key file is a clear error, not a crash. */
    struct kiln_http_server *bad = NULL;
    uv_loop_t l2;
    assert_int_equal(uv_loop_init(&l2), 0);
    struct kiln_http_tls badtls = {cert, "/nonexistent/key.pem"};
    struct kiln_http_callbacks nocb = {0};
    assert_int_not_equal(kiln_http_server_start(&l2, "127.0.0.1", 0, NULL, &badtls, nocb, &bad), 0);
    assert_null(bad);
    uv_run(&l2, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&l2), 0);

    CURL *h = curl_easy_init();
    assert_non_null(h);
    char url[128];
    struct curl_sink sink;
    long code = 0;
    for (int i = 0; i < 2; i++) { /* keep-alive over TLS */
        memset(&sink, 0, sizeof sink);
        snprintf(url, sizeof url, "https://127.0.0.1:%d/hello?a=%d", ts->port, i);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_CAINFO, cert);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
        assert_int_equal(curl_easy_perform(h), CURLE_OK);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        assert_int_equal(code, 200);
    }
    assert_non_null(strstr(sink.head, "a=1(1)"));
    long conns = -1;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);
    assert_int_equal(conns, 0); /* second request reused the connection */

    /* streamed download and upload through TLS */
    memset(&sink, 0, sizeof sink);
    snprintf(url, sizeof url, "https://127.0.0.1:%d/stream", ts->port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    assert_int_equal(sink.bytes, ts->stream_total);

    memset(&sink, 0, sizeof sink);
    struct curl_src src = {5 * 1000 * 1000};
    snprintf(url, sizeof url, "https://127.0.0.1:%d/upload", ts->port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, src_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &src);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)src.left);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    assert_int_equal(code, 200);
    assert_string_equal(sink.head, "5000000");
    curl_easy_cleanup(h);

    /* Verification against the wrong CA fails (the cert is really checked). */
    h = curl_easy_init();
    snprintf(url, sizeof url, "https://127.0.0.1:%d/hello", ts->port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, "/nonexistent-ca.pem");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    assert_int_not_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_cleanup(h);

    /* A TLS client that never finishes its handshake is dropped. */
    struct client idle;
    client_init_raw(&idle, ts->port);
    send_all(&idle, "\x16\x03\x01", 3);
    assert_true(wait_eof(&idle, 30000));
    cclose(&idle);
    /* Plain HTTP on the TLS port: closed, server still fine. */
    struct client c;
    client_init_raw(&c, ts->port);
    send_str(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(wait_eof(&c, 30000));
    cclose(&c);
    stop(ts);
}

static void test_stream_client_gone(void **state)
{
    (void)state;
    struct tsrv *ts = start(NULL, state);
    ts->stream_total = (size_t)1 << 40; /* endless */
    struct client c;
    client_init(&c, ts);
    send_str(&c, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    char b[65536];
    size_t got = 0;
    while (got < 1000000) {
        ssize_t n = crecv(&c, b, sizeof b, 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
    cclose(&c);
    wait_counter(&ts->closed_calls, 1, 3000);
    assert_int_equal(atomic_load(&ts->closed_calls), 1);
    stop(ts);
}

int main(void)
{
    /* No signal(SIGPIPE, SIG_IGN) here on purpose: the server start does it
     * when nobody did, and test_stream_client_gone proves it. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int tls_on = 1;
/* The same test again with the server behind TLS (prestate non-NULL). */
#define TLS_TEST(f)                                                                                \
    {                                                                                              \
#f "_tls", f, NULL, NULL, &tls_on                                                          \
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keepalive_two_requests),
        cmocka_unit_test(test_pipelined_in_order),
        cmocka_unit_test(test_http10_and_head),
        cmocka_unit_test(test_header_too_large),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_slow_client_timeout),
        cmocka_unit_test(test_bad_request),
        cmocka_unit_test(test_chunked_request_body),
        cmocka_unit_test(test_take_body_either_way),
        cmocka_unit_test(test_long_poll_answered_later),
        cmocka_unit_test(test_disconnect_calls_on_close),
        cmocka_unit_test(test_streaming_response),
        cmocka_unit_test(test_streamed_upload_50mb),
        cmocka_unit_test(test_upload_abort_and_early_answer),
        cmocka_unit_test(test_paused_upload_and_stats),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_stalled_reader_dropped),
        cmocka_unit_test(test_fixed_length_stream),
        cmocka_unit_test(test_many_clients),
        cmocka_unit_test(test_body_trickle_times_out),
        cmocka_unit_test(test_connections_capped_per_client),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_query_params),
        cmocka_unit_test(test_stream_client_gone),
        cmocka_unit_test(test_tls_with_curl),
        TLS_TEST(test_keepalive_two_requests),
        TLS_TEST(test_pipelined_in_order),
        TLS_TEST(test_http10_and_head),
        TLS_TEST(test_header_too_large),
        TLS_TEST(test_body_too_large),
        TLS_TEST(test_slow_client_timeout),
        TLS_TEST(test_bad_request),
        TLS_TEST(test_chunked_request_body),
        TLS_TEST(test_long_poll_answered_later),
        TLS_TEST(test_disconnect_calls_on_close),
        TLS_TEST(test_streaming_response),
        TLS_TEST(test_streamed_upload_50mb),
        TLS_TEST(test_upload_abort_and_early_answer),
        TLS_TEST(test_paused_upload_and_stats),
        TLS_TEST(test_edges),
        TLS_TEST(test_fixed_length_stream),
        TLS_TEST(test_many_clients),
        TLS_TEST(test_stream_client_gone),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
