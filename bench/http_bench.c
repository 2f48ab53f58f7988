/* http_bench - kiln's HTTP server against a bare libuv baseline, same run.
 *
 *   build/bench/http_bench [requests] [upload_mb]
 *
 * 1. Keep-alive request rate: one client, sequential GETs. Baseline: a libuv
 *    TCP server on the same loop that answers a canned response whenever it
 *    sees "\r\n\r\n" (no parsing, no allocation) - the floor for syscalls and
 *    loop wake-ups.
 * 2. Streamed upload throughput (Content-Length, counted in on_data).
 *    Baseline: the same bytes into a libuv socket that discards them.
 * Prints each figure and the ratio kiln/baseline.
 */
#include "common/clock.h"
#include "http/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char CANNED[] = "HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
                             "Content-Type: text/plain\r\nConnection: keep-alive\r\n"
                             "Content-Length: 2\r\n\r\nok";

struct bench {
    uv_loop_t loop;
    uv_async_t stop;
    struct kiln_http_server *srv;
    uv_tcp_t raw;
    int raw_port;
    long long uploaded;
};

/* ---- kiln handlers ---- */

static int up_data(struct kiln_http_req *r, const char *d, size_t n, void *arg)
{
    struct bench *b = arg;
    (void)r;
    (void)d;
    b->uploaded += (long long)n;
    return 0;
}

static void up_end(struct kiln_http_req *r, void *arg)
{
    (void)arg;
    kiln_http_respond(r, 200, "text/plain", NULL, "ok", 2);
}

static int on_headers(struct kiln_http_req *r, void *ctx)
{
    if (strcmp(kiln_http_req_path(r), "/up") == 0)
        return kiln_http_req_stream_body(r, up_data, up_end, ctx);
    return 0;
}

static void on_request(struct kiln_http_req *r, void *ctx)
{
    (void)ctx;
    kiln_http_respond(r, 200, "text/plain", NULL, "ok", 2);
}

/* ---- baseline server ---- */

struct rawc {
    uv_tcp_t t;
    char buf[65536];
    int mode; /* 0 unknown, 1 requests, 2 upload sink */
};

static void raw_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    struct rawc *c = h->data;
    (void)s;
    *b = uv_buf_init(c->buf, sizeof c->buf);
}

static void raw_free(uv_handle_t *h)
{
    free(h->data);
}

static void raw_wrote(uv_write_t *w, int st)
{
    (void)st;
    free(w);
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct rawc *c = s->data;
    if (n < 0) {
        uv_close((uv_handle_t *)s, raw_free);
        return;
    }
    if (n == 0) return;
    if (c->mode == 0) c->mode = (n >= 4 && memcmp(b->base, "POST", 4) == 0) ? 2 : 1;
    if (c->mode == 2) return; /* upload sink */
    /* Small sequential requests arrive whole: one answer per blank line. */
    const char *p = b->base, *end = b->base + n;
    while ((p = memmem(p, (size_t)(end - p), "\r\n\r\n", 4)) != NULL) {
        p += 4;
        uv_write_t *w = malloc(sizeof *w);
        if (!w) continue;
        uv_buf_t o = uv_buf_init((char *)CANNED, sizeof CANNED - 1);
        if (uv_write(w, s, &o, 1, raw_wrote) < 0) free(w);
    }
}

static void raw_conn(uv_stream_t *ls, int st)
{
    if (st < 0) return;
    struct rawc *c = calloc(1, sizeof *c);
    if (!c) return;
    uv_tcp_init(ls->loop, &c->t);
    c->t.data = c;
    uv_tcp_nodelay(&c->t, 1); /* as kiln does */
    if (uv_accept(ls, (uv_stream_t *)&c->t) == 0)
        uv_read_start((uv_stream_t *)&c->t, raw_alloc, raw_read);
    else
        uv_close((uv_handle_t *)&c->t, raw_free);
}

static void walk_close(uv_handle_t *h, void *a)
{
    (void)a;
    /* left over: baseline connections (kiln's handles are closed by now) */
    if (!uv_is_closing(h)) uv_close(h, h->type == UV_TCP && h->data ? raw_free : NULL);
}

static void stop_cb(uv_async_t *a)
{
    struct bench *b = a->data;
    kiln_http_server_stop(b->srv);
    uv_close((uv_handle_t *)&b->raw, NULL);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    struct bench *b = arg;
    uv_run(&b->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- client ---- */

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        exit(1);
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Sequential keep-alive GETs; every response ends with "ok". */
static double req_rate(int port, int n)
{
    int fd = dial(port);
    static const char req[] = "GET /x HTTP/1.1\r\nHost: b\r\n\r\n";
    char buf[4096];
    double t0 = kiln_clock_mono();
    for (int i = 0; i < n; i++) {
        if (send_all(fd, req, sizeof req - 1)) exit(1);
        size_t have = 0;
        for (;;) {
            ssize_t r = recv(fd, buf + have, sizeof buf - have, 0);
            if (r <= 0) {
                fprintf(stderr, "recv failed\n");
                exit(1);
            }
            have += (size_t)r;
            if (have >= 2 && memcmp(buf + have - 2, "ok", 2) == 0) break;
        }
    }
    double el = kiln_clock_mono() - t0;
    close(fd);
    return n / el;
}

static double upload_rate(int port, size_t total, int http)
{
    int fd = dial(port);
    static char block[1 << 20];
    memset(block, 'x', sizeof block);
    double t0 = kiln_clock_mono();
    if (!http) send_all(fd, "POST", 4); /* marks the baseline connection a sink */
    if (http) {
        char h[128];
        int k = snprintf(h, sizeof h, "POST /up HTTP/1.1\r\nHost: b\r\nContent-Length: %zu\r\n\r\n",
                         total);
        send_all(fd, h, (size_t)k);
    }
    for (size_t sent = 0; sent < total;) {
        size_t n = total - sent < sizeof block ? total - sent : sizeof block;
        if (send_all(fd, block, n)) exit(1);
        sent += n;
    }
    if (http) {
        char buf[1024];
        size_t have = 0;
        while (have < 2 || memcmp(buf + have - 2, "ok", 2) != 0) {
            ssize_t r = recv(fd, buf + have, sizeof buf - have, 0);
            if (r <= 0) exit(1);
            have += (size_t)r;
        }
    } else {
        shutdown(fd, SHUT_WR);
        char c;
        while (recv(fd, &c, 1, 0) > 0) {
        }
    }
    double el = kiln_clock_mono() - t0;
    close(fd);
    return (double)total / el / 1e6;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmpd);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    size_t mb = argc > 2 ? (size_t)atoi(argv[2]) : 500;
    signal(SIGPIPE, SIG_IGN);
    struct bench b;
    memset(&b, 0, sizeof b);
    if (uv_loop_init(&b.loop)) return 1;
    struct kiln_http_callbacks cb = {on_headers, on_request, &b};
    if (kiln_http_server_start(&b.loop, "127.0.0.1", 0, NULL, NULL, cb, &b.srv) != 0) return 1;
    uv_tcp_init(&b.loop, &b.raw);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_bind(&b.raw, (struct sockaddr *)&sa, 0);
    if (uv_listen((uv_stream_t *)&b.raw, 128, raw_conn) != 0) return 1;
    struct sockaddr_in bound;
    int bl = sizeof bound;
    uv_tcp_getsockname(&b.raw, (struct sockaddr *)&bound, &bl);
    b.raw_port = ntohs(bound.sin_port);
    uv_async_init(&b.loop, &b.stop, stop_cb);
    b.stop.data = &b;
    pthread_t th;
    pthread_create(&th, NULL, loop_main, &b);
    int kport = kiln_http_server_port(b.srv);

    /* Rounds alternate kiln and baseline so noise from other processes on
     * the machine hits both; the medians are compared. */
    enum { ROUNDS = 5 };
    double kr[ROUNDS], rr[ROUNDS], ku[ROUNDS], ru[ROUNDS];
    size_t total = mb * 1000 * 1000;
    req_rate(kport, n / 10); /* warm-up */
    req_rate(b.raw_port, n / 10);
    for (int i = 0; i < ROUNDS; i++) {
        kr[i] = req_rate(kport, n);
        rr[i] = req_rate(b.raw_port, n);
        b.uploaded = 0;
        ku[i] = upload_rate(kport, total, 1);
        if (b.uploaded != (long long)total) {
            fprintf(stderr, "upload counted %lld of %zu bytes\n", b.uploaded, total);
            return 1;
        }
        ru[i] = upload_rate(b.raw_port, total, 0);
    }
    double mkr = median(kr, ROUNDS), mrr = median(rr, ROUNDS);
    double mku = median(ku, ROUNDS), mru = median(ru, ROUNDS);
    printf("keep-alive GET, 1 connection, %d requests x %d rounds (median): kiln %.0f req/s, "
           "baseline %.0f req/s, ratio %.2f\n",
           n, ROUNDS, mkr, mrr, mkr / mrr);
    printf("streamed upload %zu MB x %d rounds (median): kiln %.0f MB/s, baseline %.0f MB/s, "
           "ratio %.2f\n",
           mb, ROUNDS, mku, mru, mku / mru);

    uv_async_send(&b.stop);
    pthread_join(th, NULL);
    uv_walk(&b.loop, walk_close, NULL);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    return 0;
}
