#include "common/buf.h"

#include "common/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kiln_buf_reserve(struct kiln_buf *b, size_t extra)
{
    if (b->max && b->len + extra > b->max) return KILN_ELIMIT;
    if (extra > (size_t)-1 / 2 - b->len) return KILN_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return KILN_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return KILN_ENOMEM;
    b->data = p;
    b->cap = cap;
    return KILN_OK;
}

int kiln_buf_append(struct kiln_buf *b, const void *p, size_t n)
{
    int rc = kiln_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return KILN_OK;
}

int kiln_buf_puts(struct kiln_buf *b, const char *s)
{
    return kiln_buf_append(b, s, strlen(s));
}

int kiln_buf_vprintf(struct kiln_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return KILN_EINVAL;
    int rc = kiln_buf_reserve(b, (size_t)n);
    if (rc) return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return KILN_OK;
}

int kiln_buf_printf(struct kiln_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = kiln_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void kiln_buf_consume(struct kiln_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data) b->data[b->len] = '\0';
}

void kiln_buf_reset(struct kiln_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void kiln_buf_free(struct kiln_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *kiln_buf_steal(struct kiln_buf *b)
{
    char *p = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
