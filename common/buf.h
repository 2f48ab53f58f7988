/* buf.h - growable byte buffer.
 *
 * Contract: a zeroed struct kiln_buf is an empty buffer. data is always
 * NUL-terminated after a successful append (the NUL is not counted in len),
 * so text can be used as a C string. Appends return KILN_OK or KILN_ENOMEM and
 * leave the buffer unchanged on failure. max (0 = unlimited) caps len; an
 * append past it returns KILN_ELIMIT, which is how request bodies, logs read
 * into memory and file reads stay bounded.
 */
#ifndef KILN_BUF_H
#define KILN_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct kiln_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};

int kiln_buf_append(struct kiln_buf *b, const void *p, size_t n);
int kiln_buf_puts(struct kiln_buf *b, const char *s);
int kiln_buf_printf(struct kiln_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int kiln_buf_vprintf(struct kiln_buf *b, const char *fmt, va_list ap);
int kiln_buf_reserve(struct kiln_buf *b, size_t extra);
/* Drop the first n bytes (consumed input). */
void kiln_buf_consume(struct kiln_buf *b, size_t n);
void kiln_buf_reset(struct kiln_buf *b);
void kiln_buf_free(struct kiln_buf *b);
/* Hand over ownership of data (NUL-terminated, possibly NULL when empty). */
char *kiln_buf_steal(struct kiln_buf *b);

#endif
