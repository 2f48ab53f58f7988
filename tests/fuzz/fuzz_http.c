/* libFuzzer target for scheduler/http_parse: any bytes, fed in pieces split
 * at input-chosen points, must never crash, never loop, and never let a head
 * or buffered body past its limit. The first two bytes choose the limits,
 * body modes and split sizes; the rest is the connection's byte stream. */
#include "http/http_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct fz {
    struct kiln_http_parse *p;
    unsigned mode_seed;
    size_t max_header;
    size_t streamed;
    int heads;
};

static int fz_head(void *ctx, const struct kiln_http_head *h)
{
    struct fz *f = ctx;
    size_t total = strlen(h->target);
    if (!h->path || !h->query || !h->method[0]) abort();
    for (size_t i = 0; i < h->nheaders; i++)
        total += strlen(h->headers[i].name) + strlen(h->headers[i].value);
    if (total > f->max_header) abort();
    (void)kiln_http_head_header(h, "content-type");
    char v[32];
    (void)kiln_http_query_param(h->query, "a", v, sizeof v);
    (void)kiln_http_query_param(h->query, "state", v, 4);
    f->heads++;
    unsigned m = (f->mode_seed >> (f->heads % 8)) % 4;
    if (m == 3) {
        kiln_http_parse_set_error(f->p, 401, "rejected by the fuzzer");
        return -1;
    }
    return (int)m;
}

static int fz_body(void *ctx, const char *p, size_t n)
{
    struct fz *f = ctx;
    if (n && !p) abort();
    f->streamed += n;
    return f->streamed > (1u << 20); /* abort very long streams */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    unsigned c0 = data[0], c1 = data[1];
    data += 2;
    size -= 2;
    struct fz f = {0};
    f.mode_seed = c1 * 2654435761u;
    f.max_header = 32 + (c0 & 0x3f) * 16;
    struct kiln_http_parse_limits lim = {f.max_header, (size_t)(c1 & 0x1f) * 16};
    struct kiln_http_parse_ops ops = {fz_head, fz_body, &f};
    if (kiln_http_parse_new(&lim, ops, &f.p) != 0) return 0;
    uint32_t rng = c0 * 16777619u + c1 + 1;
    size_t off = 0;
    while (off < size) {
        rng = rng * 1103515245u + 12345u;
        size_t piece = 1 + (rng >> 16) % ((c0 >> 6) ? 97 : 7);
        if (piece > size - off) piece = size - off;
        size_t used = 0;
        struct kiln_error err;
        int rc = kiln_http_parse_feed(f.p, (const char *)data + off, piece, &used, &err);
        if (used > piece) abort();
        if (rc < 0) {
            int st = kiln_http_parse_status(f.p);
            if (st != 0 && st != 400 && st != 401 && st != 413 && st != 431 && st != 503) abort();
            if (!err.msg[0]) abort();
            break;
        }
        if (rc == KILN_HP_DONE) {
            if (used == 0) abort(); /* a caller looping on DONE would spin */
            size_t blen;
            const char *b = kiln_http_parse_body(f.p, &blen);
            if (!b || blen > lim.max_body_bytes) abort();
        } else if (used != piece) {
            abort(); /* MORE means everything was taken */
        }
        off += used;
    }
    kiln_http_parse_free(f.p);
    return 0;
}
