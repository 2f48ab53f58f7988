/* Unit tests for scheduler/http_parse: socket-free request assembly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/err.h"
#include "http/http_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct seen {
    int heads;
    int mode; /* what on_head answers */
    size_t streamed;
    char method[24];
    char path[256];
    char query[256];
    char host[64];
    int keep_alive;
    int reject_status; /* non-zero: on_head rejects with this */
};

static int on_head(void *ctx, const struct kiln_http_head *h)
{
    struct seen *s = ctx;
    s->heads++;
    snprintf(s->method, sizeof s->method, "%s", h->method);
    snprintf(s->path, sizeof s->path, "%s", h->path);
    snprintf(s->query, sizeof s->query, "%s", h->query);
    const char *host = kiln_http_head_header(h, "HOST");
    snprintf(s->host, sizeof s->host, "%s", host ? host : "(none)");
    s->keep_alive = h->keep_alive;
    return s->mode;
}

static int on_body(void *ctx, const char *p, size_t n)
{
    struct seen *s = ctx;
    (void)p;
    s->streamed += n;
    return 0;
}

static struct kiln_http_parse *mk(struct seen *s, size_t maxh, size_t maxb)
{
    struct kiln_http_parse_limits l = {maxh, maxb};
    struct kiln_http_parse_ops ops = {on_head, on_body, s};
    struct kiln_http_parse *p = NULL;
    assert_int_equal(kiln_http_parse_new(&l, ops, &p), 0);
    return p;
}

static const char REQ[] = "POST /api/v1/jobs?state=queued&q=a%20b HTTP/1.1\r\n"
                          "Host:   example  \r\n"
                          "Content-Type: application/json\r\n"
                          "Transfer-Encoding: chunked\r\n"
                          "\r\n"
                          "4\r\n{\"a\"\r\n"
                          "3\r\n:1}\r\n"
                          "0\r\n"
                          "Trailer-X: 1\r\n"
                          "\r\n";

static void test_split_everywhere(void **state)
{
    (void)state;
    size_t n = sizeof REQ - 1;
    for (size_t cut = 0; cut <= n; cut++) {
        struct seen s = {0};
        struct kiln_http_parse *p = mk(&s, 4096, 4096);
        size_t used = 0;
        struct kiln_error err;
        int rc = KILN_HP_MORE;
        if (cut > 0) {
            rc = kiln_http_parse_feed(p, REQ, cut, &used, &err);
            assert_true(rc >= 0);
            assert_int_equal(used, cut);
        }
        if (cut < n) {
            assert_int_equal(rc, KILN_HP_MORE);
            rc = kiln_http_parse_feed(p, REQ + cut, n - cut, &used, &err);
            assert_int_equal(used, n - cut);
        }
        assert_int_equal(rc, KILN_HP_DONE);
        assert_int_equal(s.heads, 1);
        assert_string_equal(s.method, "POST");
        assert_string_equal(s.path, "/api/v1/jobs");
        assert_string_equal(s.query, "state=queued&q=a%20b");
        assert_string_equal(s.host, "example");
        size_t blen;
        const char *b = kiln_http_parse_body(p, &blen);
        assert_int_equal(blen, 7);
        assert_memory_equal(b, "{\"a\":1}", 7);
        const struct kiln_http_head *h = kiln_http_parse_head(p);
        assert_true(h->chunked);
        assert_null(kiln_http_head_header(h, "Trailer-X")); /* trailers dropped */
        kiln_http_parse_free(p);
    }
}

static void test_byte_by_byte_pipelined(void **state)
{
    (void)state;
    const char two[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /b?x=1 HTTP/1.0\r\n\r\n";
    struct seen s = {0};
    struct kiln_http_parse *p = mk(&s, 4096, 4096);
    int done = 0;
    for (size_t i = 0; i < sizeof two - 1; i++) {
        size_t used;
        int rc = kiln_http_parse_feed(p, two + i, 1, &used, NULL);
        assert_true(rc >= 0);
        assert_int_equal(used, 1);
        if (rc == KILN_HP_DONE) {
            done++;
            assert_string_equal(s.path, done == 1 ? "/a" : "/b");
            assert_int_equal(s.keep_alive, done == 1 ? 1 : 0);
        }
    }
    assert_int_equal(done, 2);
    kiln_http_parse_free(p);

    /* One feed with both: stops after the first. */
    memset(&s, 0, sizeof s);
    p = mk(&s, 4096, 4096);
    size_t used;
    assert_int_equal(kiln_http_parse_feed(p, two, sizeof two - 1, &used, NULL), KILN_HP_DONE);
    assert_int_equal(used, strlen("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_string_equal(s.path, "/a");
    size_t rest = sizeof two - 1 - used;
    size_t used2;
    assert_int_equal(kiln_http_parse_feed(p, two + used, rest, &used2, NULL), KILN_HP_DONE);
    assert_int_equal(used2, rest);
    assert_string_equal(s.path, "/b");
    assert_string_equal(s.query, "x=1");
    kiln_http_parse_free(p);
}

static void test_header_limit_exact(void **state)
{
    (void)state;
    /* A head of exactly the limit passes, one byte more gets 431. */
    char req[600];
    const char *pre = "GET / HTTP/1.1\r\nX: ";
    size_t limit = 300;
    for (int extra = 0; extra <= 1; extra++) {
        size_t fill = limit - strlen(pre) - 4 + (size_t)extra;
        memset(req, 0, sizeof req);
        strcpy(req, pre);
        memset(req + strlen(pre), 'v', fill);
        strcat(req, "\r\n\r\n");
        assert_int_equal(strlen(req), limit + (size_t)extra);
        struct seen s = {0};
        struct kiln_http_parse *p = mk(&s, limit, 100);
        size_t used;
        struct kiln_error err;
        int rc = kiln_http_parse_feed(p, req, strlen(req), &used, &err);
        if (extra == 0) {
            assert_int_equal(rc, KILN_HP_DONE);
        } else {
            assert_int_equal(rc, KILN_ELIMIT);
            assert_int_equal(kiln_http_parse_status(p), 431);
            assert_non_null(strstr(err.msg, "300"));
            /* further input is refused */
            assert_true(kiln_http_parse_feed(p, "x", 1, &used, NULL) < 0);
        }
        kiln_http_parse_free(p);
    }
}

static void test_body_limits_and_modes(void **state)
{
    (void)state;
    const char *big = "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world";
    struct seen s = {0};
    struct kiln_http_parse *p = mk(&s, 1024, 10);
    size_t used;
    struct kiln_error err;
    assert_int_equal(kiln_http_parse_feed(p, big, strlen(big), &used, &err), KILN_ELIMIT);
    assert_int_equal(kiln_http_parse_status(p), 413);
    kiln_http_parse_free(p);

    /* exactly the limit is fine */
    memset(&s, 0, sizeof s);
    p = mk(&s, 1024, 11);
    assert_int_equal(kiln_http_parse_feed(p, big, strlen(big), &used, &err), KILN_HP_DONE);
    kiln_http_parse_free(p);

    /* chunked over the limit */
    const char *ch = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n";
    memset(&s, 0, sizeof s);
    p = mk(&s, 1024, 10);
    assert_int_equal(kiln_http_parse_feed(p, ch, strlen(ch), &used, &err), KILN_ELIMIT);
    assert_int_equal(kiln_http_parse_status(p), 413);
    kiln_http_parse_free(p);

    /* streamed: no limit, nothing kept */
    memset(&s, 0, sizeof s);
    s.mode = KILN_HTTP_BODY_STREAM;
    p = mk(&s, 1024, 10);
    assert_int_equal(kiln_http_parse_feed(p, ch, strlen(ch), &used, &err), KILN_HP_DONE);
    assert_int_equal(s.streamed, 12);
    size_t blen;
    kiln_http_parse_body(p, &blen);
    assert_int_equal(blen, 0);
    kiln_http_parse_free(p);

    /* discarded */
    memset(&s, 0, sizeof s);
    s.mode = KILN_HTTP_BODY_DISCARD;
    p = mk(&s, 1024, 10);
    assert_int_equal(kiln_http_parse_feed(p, ch, strlen(ch), &used, &err), KILN_HP_DONE);
    assert_int_equal(s.streamed, 0);
    kiln_http_parse_free(p);
}

static void test_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "FOO / HTTP/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1\r\nNo-Colon\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\n\r\n",
        "GET http://[::1 HTTP/1.1\r\n\r\n",
        "\r\n\r\n\x00",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct seen s = {0};
        struct kiln_http_parse *p = mk(&s, 1024, 1024);
        size_t used;
        struct kiln_error err;
        size_t len = strlen(bad[i]) + (i == 7 ? 1 : 0);
        int rc = kiln_http_parse_feed(p, bad[i], len, &used, &err);
        assert_true(rc < 0);
        assert_int_equal(kiln_http_parse_status(p), 400);
        assert_true(err.msg[0] != '\0');
        kiln_http_parse_free(p);
    }
}

static void test_targets(void **state)
{
    (void)state;
    struct {
        const char *req, *path, *query;
    } cases[] = {
        {"GET http://h:1/x/y?z=1 HTTP/1.1\r\n\r\n", "/x/y", "z=1"},
        {"OPTIONS * HTTP/1.1\r\n\r\n", "*", ""},
        {"GET /p?  HTTP/1.1\r\n\r\n", "/p", ""},
        {"GET /a%2Fb HTTP/1.1\r\n\r\n", "/a%2Fb", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct seen s = {0};
        struct kiln_http_parse *p = mk(&s, 1024, 1024);
        size_t used;
        int rc = kiln_http_parse_feed(p, cases[i].req, strlen(cases[i].req), &used, NULL);
        if (rc != KILN_HP_DONE) continue; /* "GET /p? " is the parser's call */
        assert_string_equal(s.path, cases[i].path);
        assert_string_equal(s.query, cases[i].query);
        kiln_http_parse_free(p);
    }
}

struct rj {
    struct kiln_http_parse *p;
};

static int reject(void *ctx, const struct kiln_http_head *h)
{
    struct rj *r = ctx;
    (void)h;
    kiln_http_parse_set_error(r->p, 417, "expectation failed");
    return -1;
}

static int reject_plain(void *ctx, const struct kiln_http_head *h)
{
    (void)ctx;
    (void)h;
    return -1;
}

static void test_on_head_reject(void **state)
{
    (void)state;
    struct kiln_http_parse_limits l = {1024, 1024};
    struct rj r = {0};
    struct kiln_http_parse_ops ops = {reject, NULL, &r};
    assert_int_equal(kiln_http_parse_new(&l, ops, &r.p), 0);
    const char *req = "GET / HTTP/1.1\r\n\r\n";
    size_t used;
    struct kiln_error err;
    assert_true(kiln_http_parse_feed(r.p, req, strlen(req), &used, &err) < 0);
    assert_int_equal(kiln_http_parse_status(r.p), 417);
    assert_string_equal(err.msg, "expectation failed");
    kiln_http_parse_free(r.p);
    struct kiln_http_parse_ops ops2 = {reject_plain, NULL, NULL};
    struct kiln_http_parse *p;
    assert_int_equal(kiln_http_parse_new(&l, ops2, &p), 0);
    assert_true(kiln_http_parse_feed(p, req, strlen(req), &used, &err) < 0);
    assert_int_equal(kiln_http_parse_status(p), 400);
    kiln_http_parse_free(p);
}

static void test_pct_decode(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(kiln_http_pct_decode("a%41+b", 6, 1, out, sizeof out), 0);
    assert_string_equal(out, "aA b");
    assert_int_equal(kiln_http_pct_decode("a+b", 3, 0, out, sizeof out), 0);
    assert_string_equal(out, "a+b");
    assert_int_equal(kiln_http_pct_decode("1234567", 7, 0, out, sizeof out), 0);
    assert_int_equal(kiln_http_pct_decode("12345678", 8, 0, out, sizeof out), KILN_ELIMIT);
    assert_int_equal(kiln_http_pct_decode("%", 1, 0, out, sizeof out), KILN_EINVAL);
    assert_int_equal(kiln_http_pct_decode("%g0", 3, 0, out, sizeof out), KILN_EINVAL);
    assert_int_equal(kiln_http_pct_decode("", 0, 0, out, 0), KILN_ELIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_everywhere),   cmocka_unit_test(test_byte_by_byte_pipelined),
        cmocka_unit_test(test_header_limit_exact), cmocka_unit_test(test_body_limits_and_modes),
        cmocka_unit_test(test_malformed),          cmocka_unit_test(test_targets),
        cmocka_unit_test(test_on_head_reject),     cmocka_unit_test(test_pct_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
