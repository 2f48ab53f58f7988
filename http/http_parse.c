/* http_parse.c - request assembly with limits around Debian's http-parser. */
#include "http/http_parse.h"

#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* http-parser reads 1 from on_headers_complete as "no body", so errors
 * there are -1. */

/* Bodies above this are released after their request instead of kept. */
#define KEEP_BODY_CAP (64 * 1024)

struct kiln_http_parse {
    http_parser hp;
    http_parser_settings st;
    struct kiln_http_parse_limits lim;
    struct kiln_http_parse_ops ops;
    /* raw: target, NUL, then name NUL value NUL ... of the current request */
    struct kiln_buf raw;
    struct kiln_buf parts; /* path NUL query NUL */
    size_t *offs;          /* name/value offsets into raw, 2 per header */
    size_t noffs, offcap;
    struct kiln_http_header *hdrs;
    size_t hdrcap;
    int target_done;
    int last; /* 0 none, 1 field, 2 value */
    struct kiln_http_head head;
    struct kiln_buf body;
    int mode;
    int in_msg;
    int head_done;
    int msg_complete;
    size_t head_bytes;
    int failed;
    int status;
    char msg[256];
};

static struct kiln_http_parse *P(http_parser *hp)
{
    return (struct kiln_http_parse *)hp->data;
}

void kiln_http_parse_set_error(struct kiln_http_parse *p, int status, const char *msg)
{
    p->status = status;
    snprintf(p->msg, sizeof p->msg, "%s", msg);
}

static int cb_begin(http_parser *hp)
{
    struct kiln_http_parse *p = P(hp);
    kiln_buf_reset(&p->raw);
    kiln_buf_reset(&p->parts);
    if (p->body.cap > KEEP_BODY_CAP) {
        kiln_buf_free(&p->body);
    }
    kiln_buf_reset(&p->body);
    p->noffs = 0;
    p->target_done = 0;
    p->last = 0;
    memset(&p->head, 0, sizeof p->head);
    p->mode = KILN_HTTP_BODY_DISCARD;
    p->in_msg = 1;
    p->head_done = 0;
    p->head_bytes = 0;
    return 0;
}

static int oom(struct kiln_http_parse *p)
{
    kiln_http_parse_set_error(p, 503, "out of memory while reading the request");
    return 1;
}

static int cb_url(http_parser *hp, const char *at, size_t n)
{
    struct kiln_http_parse *p = P(hp);
    if (kiln_buf_append(&p->raw, at, n)) return oom(p);
    return 0;
}

static int end_target(struct kiln_http_parse *p)
{
    if (p->target_done) return 0;
    p->target_done = 1;
    return kiln_buf_append(&p->raw, "", 1);
}

static int push_off(struct kiln_http_parse *p, size_t off)
{
    if (p->noffs == p->offcap) {
        size_t cap = p->offcap ? p->offcap * 2 : 32;
        size_t *n = realloc(p->offs, cap * sizeof *n);
        if (!n) return KILN_ENOMEM;
        p->offs = n;
        p->offcap = cap;
    }
    p->offs[p->noffs++] = off;
    return 0;
}

static int cb_field(http_parser *hp, const char *at, size_t n)
{
    struct kiln_http_parse *p = P(hp);
    if (p->head_done) return 0; /* chunked trailers: ignored */
    if (end_target(p)) return oom(p);
    if (p->last != 1) {
        if (p->last == 2 && kiln_buf_append(&p->raw, "", 1)) return oom(p);
        if (push_off(p, p->raw.len)) return oom(p);
        p->last = 1;
    }
    if (kiln_buf_append(&p->raw, at, n)) return oom(p);
    return 0;
}

static int cb_value(http_parser *hp, const char *at, size_t n)
{
    struct kiln_http_parse *p = P(hp);
    if (p->head_done) return 0;
    if (p->last != 2) {
        if (p->last != 1) return 0; /* cannot happen: value without a name */
        if (kiln_buf_append(&p->raw, "", 1)) return oom(p);
        if (push_off(p, p->raw.len)) return oom(p);
        p->last = 2;
    }
    if (kiln_buf_append(&p->raw, at, n)) return oom(p);
    return 0;
}

static int split_target(struct kiln_http_parse *p)
{
    const char *t = p->raw.data ? p->raw.data : "";
    size_t tlen = strlen(t);
    struct http_parser_url u;
    http_parser_url_init(&u);
    size_t path_off = 0, path_len = 0, q_off = 0, q_len = 0;
    if (tlen == 1 && t[0] == '*') {
        path_len = 1;
    } else {
        if (tlen == 0 || http_parser_parse_url(t, tlen, 0, &u) != 0) return KILN_EPARSE;
        if (u.field_set & (1 << UF_PATH)) {
            path_off = u.field_data[UF_PATH].off;
            path_len = u.field_data[UF_PATH].len;
        }
        if (u.field_set & (1 << UF_QUERY)) {
            q_off = u.field_data[UF_QUERY].off;
            q_len = u.field_data[UF_QUERY].len;
        }
    }
    if (path_len == 0) {
        if (kiln_buf_append(&p->parts, "/", 2)) return KILN_ENOMEM;
    } else if (kiln_buf_append(&p->parts, t + path_off, path_len) ||
               kiln_buf_append(&p->parts, "", 1)) {
        return KILN_ENOMEM;
    }
    size_t qstart = p->parts.len;
    if (kiln_buf_append(&p->parts, t + q_off, q_len) || kiln_buf_append(&p->parts, "", 1))
        return KILN_ENOMEM;
    p->head.path = p->parts.data;
    p->head.query = p->parts.data + qstart;
    p->head.target = p->raw.data;
    return 0;
}

static int cb_headers_complete(http_parser *hp)
{
    struct kiln_http_parse *p = P(hp);
    if (end_target(p)) {
        oom(p);
        return -1;
    }
    if (p->last == 2 && kiln_buf_append(&p->raw, "", 1)) {
        oom(p);
        return -1;
    }
    if (p->last == 1) { /* name without a value cannot reach here, be safe */
        if (kiln_buf_append(&p->raw, "", 1) || push_off(p, p->raw.len) ||
            kiln_buf_append(&p->raw, "", 1)) {
            oom(p);
            return -1;
        }
    }
    p->head_done = 1;
    size_t n = p->noffs / 2;
    if (n > p->hdrcap) {
        struct kiln_http_header *h = realloc(p->hdrs, n * sizeof *h);
        if (!h) {
            oom(p);
            return -1;
        }
        p->hdrs = h;
        p->hdrcap = n;
    }
    for (size_t i = 0; i < n; i++) {
        char *v = p->raw.data + p->offs[2 * i + 1];
        size_t vl = strlen(v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            v[--vl] = '\0';
        while (*v == ' ' || *v == '\t')
            v++;
        p->hdrs[i].name = p->raw.data + p->offs[2 * i];
        p->hdrs[i].value = v;
    }
    struct kiln_http_head *h = &p->head;
    h->headers = p->hdrs;
    h->nheaders = n;
    int sr = split_target(p);
    if (sr == KILN_ENOMEM) {
        oom(p);
        return -1;
    }
    if (sr) {
        kiln_http_parse_set_error(p, 400, "malformed request target");
        return -1;
    }
    if (hp->http_major != 1 || hp->http_minor > 1) {
        kiln_http_parse_set_error(p, 400, "unsupported HTTP version (only 1.0 and 1.1)");
        return -1;
    }
    snprintf(h->method, sizeof h->method, "%s", http_method_str((enum http_method)hp->method));
    h->http_major = hp->http_major;
    h->http_minor = hp->http_minor;
    h->keep_alive = http_should_keep_alive(hp);
    h->chunked = (hp->flags & F_CHUNKED) != 0;
    h->has_length = !h->chunked && hp->content_length != ULLONG_MAX;
    h->content_length = h->has_length ? hp->content_length : 0;
    const char *ex = kiln_http_head_header(h, "Expect");
    h->expect_continue = ex && strcasecmp(ex, "100-continue") == 0;

    int mode = KILN_HTTP_BODY_BUFFER;
    if (p->ops.on_head) {
        p->status = 0;
        mode = p->ops.on_head(p->ops.ctx, h);
        if (mode < 0) {
            if (!p->status) kiln_http_parse_set_error(p, 400, "request rejected");
            return -1;
        }
    }
    if (mode != KILN_HTTP_BODY_STREAM && mode != KILN_HTTP_BODY_DISCARD)
        mode = KILN_HTTP_BODY_BUFFER;
    p->mode = mode;
    if (mode == KILN_HTTP_BODY_BUFFER && h->has_length &&
        h->content_length > p->lim.max_body_bytes) {
        char m[160];
        snprintf(m, sizeof m, "request body of %llu bytes exceeds the limit of %zu bytes",
                 (unsigned long long)h->content_length, p->lim.max_body_bytes);
        kiln_http_parse_set_error(p, 413, m);
        return -1;
    }
    return 0;
}

static int cb_body(http_parser *hp, const char *at, size_t n)
{
    struct kiln_http_parse *p = P(hp);
    switch (p->mode) {
    case KILN_HTTP_BODY_BUFFER: {
        /* Checked here, not via body.max: for kiln_buf 0 means unlimited. */
        int rc = n > p->lim.max_body_bytes - p->body.len ? KILN_ELIMIT
                                                         : kiln_buf_append(&p->body, at, n);
        if (rc == KILN_ELIMIT) {
            char m[160];
            snprintf(m, sizeof m, "request body exceeds the limit of %zu bytes",
                     p->lim.max_body_bytes);
            kiln_http_parse_set_error(p, 413, m);
            return 1;
        }
        if (rc) return oom(p);
        return 0;
    }
    case KILN_HTTP_BODY_STREAM:
        if (p->ops.on_body && p->ops.on_body(p->ops.ctx, at, n)) {
            kiln_http_parse_set_error(p, 0, "request aborted by its handler");
            return 1;
        }
        return 0;
    default:
        return 0;
    }
}

static int cb_complete(http_parser *hp)
{
    struct kiln_http_parse *p = P(hp);
    p->in_msg = 0;
    p->head_done = 0;
    p->msg_complete = 1;
    http_parser_pause(hp, 1);
    return 0;
}

int kiln_http_parse_new(const struct kiln_http_parse_limits *limits, struct kiln_http_parse_ops ops,
                        struct kiln_http_parse **out)
{
    *out = NULL;
    struct kiln_http_parse *p = calloc(1, sizeof *p);
    if (!p) return KILN_ENOMEM;
    p->lim = *limits;
    if (p->lim.max_header_bytes == 0) p->lim.max_header_bytes = 16 * 1024;
    p->ops = ops;
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
    http_parser_settings_init(&p->st);
    p->st.on_message_begin = cb_begin;
    p->st.on_url = cb_url;
    p->st.on_header_field = cb_field;
    p->st.on_header_value = cb_value;
    p->st.on_headers_complete = cb_headers_complete;
    p->st.on_body = cb_body;
    p->st.on_message_complete = cb_complete;
    *out = p;
    return KILN_OK;
}

void kiln_http_parse_free(struct kiln_http_parse *p)
{
    if (!p) return;
    kiln_buf_free(&p->raw);
    kiln_buf_free(&p->parts);
    kiln_buf_free(&p->body);
    free(p->offs);
    free(p->hdrs);
    free(p);
}

static int fail(struct kiln_http_parse *p, struct kiln_error *err)
{
    p->failed = 1;
    int code = KILN_EPARSE;
    if (p->status == 413 || p->status == 431) code = KILN_ELIMIT;
    if (p->status == 503) code = KILN_ENOMEM;
    if (p->status == 0) code = KILN_ESTATE;
    return kiln_fail(err, code, "%s", p->msg);
}

int kiln_http_parse_feed(struct kiln_http_parse *p, const char *data, size_t len, size_t *used,
                         struct kiln_error *err)
{
    *used = 0;
    if (p->failed) return kiln_fail(err, KILN_ESTATE, "%s", p->msg);
    if (HTTP_PARSER_ERRNO(&p->hp) == HPE_PAUSED) http_parser_pause(&p->hp, 0);
    size_t off = 0;
    while (off < len) {
        size_t chunk = len - off;
        int in_head = !p->head_done;
        /* Feed the head in slices so the limit is exact. */
        if (in_head) {
            size_t room = p->lim.max_header_bytes - p->head_bytes;
            if (chunk > room) chunk = room;
        }
        p->msg_complete = 0;
        p->status = 0;
        size_t n = http_parser_execute(&p->hp, &p->st, data + off, chunk);
        if (n > chunk) n = chunk;
        off += n;
        *used = off;
        if (in_head && !p->head_done && !p->msg_complete) p->head_bytes += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
        if (e == HPE_PAUSED) return KILN_HP_DONE;
        if (e != HPE_OK) {
            if (e >= HPE_CB_message_begin && e <= HPE_CB_chunk_complete) {
                /* one of our callbacks set status and message */
            } else if (e == HPE_HEADER_OVERFLOW) {
                kiln_http_parse_set_error(p, 431, "request header is too large");
            } else {
                char m[200];
                snprintf(m, sizeof m, "malformed HTTP request: %s", http_errno_description(e));
                kiln_http_parse_set_error(p, 400, m);
            }
            return fail(p, err);
        }
        /* The head did not end within the limit. */
        if (p->head_bytes >= p->lim.max_header_bytes) {
            char m[160];
            snprintf(m, sizeof m, "request header exceeds the limit of %zu bytes",
                     p->lim.max_header_bytes);
            kiln_http_parse_set_error(p, 431, m);
            return fail(p, err);
        }
        if (n < chunk) {
            kiln_http_parse_set_error(p, 400, "malformed HTTP request");
            return fail(p, err);
        }
    }
    return KILN_HP_MORE;
}

int kiln_http_parse_status(const struct kiln_http_parse *p)
{
    return p->status;
}

const struct kiln_http_head *kiln_http_parse_head(const struct kiln_http_parse *p)
{
    return &p->head;
}

const char *kiln_http_parse_body(const struct kiln_http_parse *p, size_t *len)
{
    if (len) *len = p->body.len;
    return p->body.data ? p->body.data : "";
}

int kiln_http_parse_in_request(const struct kiln_http_parse *p)
{
    return p->in_msg;
}

int kiln_http_parse_head_done(const struct kiln_http_parse *p)
{
    return p->head_done;
}

void kiln_http_parse_trim(struct kiln_http_parse *p)
{
    if (p->in_msg) return;
    if (p->body.cap > KEEP_BODY_CAP) kiln_buf_free(&p->body);
}

const char *kiln_http_head_header(const struct kiln_http_head *h, const char *name)
{
    for (size_t i = 0; i < h->nheaders; i++)
        if (strcasecmp(h->headers[i].name, name) == 0) return h->headers[i].value;
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int kiln_http_pct_decode(const char *src, size_t n, int plus_space, char *out, size_t outlen)
{
    if (outlen == 0) return KILN_ELIMIT;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= n) {
                out[0] = '\0';
                return KILN_EINVAL;
            }
            int a = hexval(src[i + 1]), b = hexval(src[i + 2]);
            if (a < 0 || b < 0) {
                out[0] = '\0';
                return KILN_EINVAL;
            }
            c = (char)(a * 16 + b);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (c == '\0') {
            out[0] = '\0';
            return KILN_EINVAL;
        }
        if (o + 1 >= outlen) {
            out[0] = '\0';
            return KILN_ELIMIT;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

int kiln_http_query_param(const char *query, const char *name, char *out, size_t outlen)
{
    if (outlen) out[0] = '\0';
    if (!query || !name) return 0;
    size_t nlen = strlen(name);
    const char *s = query;
    while (*s) {
        const char *end = strchr(s, '&');
        size_t seg = end ? (size_t)(end - s) : strlen(s);
        const char *eq = memchr(s, '=', seg);
        size_t klen = eq ? (size_t)(eq - s) : seg;
        char key[256];
        if (klen < sizeof key && kiln_http_pct_decode(s, klen, 1, key, sizeof key) == 0 &&
            strlen(key) == nlen && memcmp(key, name, nlen) == 0) {
            if (!eq) {
                if (outlen == 0) return KILN_ELIMIT;
                return 1;
            }
            int rc = kiln_http_pct_decode(eq + 1, seg - klen - 1, 1, out, outlen);
            return rc ? rc : 1;
        }
        if (!end) break;
        s = end + 1;
    }
    return 0;
}
