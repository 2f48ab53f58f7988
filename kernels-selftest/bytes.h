/* bytes.h - bounds-checked little-endian reads from a file's bytes.
 *
 * Contract: kiln_bytes_at() is the one way fatbin.c and elfsym.c turn an
 * offset or size read from a file into a pointer. It returns NULL unless
 * [off, off + n) lies inside the len-byte range, computed without overflow
 * (a hostile file's 64-bit offset plus size must not wrap into range). The
 * kiln_bytes_le*() readers take a pointer that kiln_bytes_at() returned for
 * at least their width, so a reader never sees an unchecked address.
 * Header-only: these are a few instructions each and sit in parser loops.
 */
#ifndef KILN_BYTES_H
#define KILN_BYTES_H

#include <stddef.h>
#include <stdint.h>

/* 1 if [off, off + n) lies inside a len-byte range. */
static inline int kiln_bytes_in(uint64_t off, uint64_t n, size_t len)
{
    return off <= len && n <= len - off;
}

/* data + off when [off, off + n) lies inside data[0..len), else NULL. */
static inline const unsigned char *kiln_bytes_at(const void *data, size_t len, uint64_t off,
                                                 uint64_t n)
{
    if (!data || !kiln_bytes_in(off, n, len)) return NULL;
    return (const unsigned char *)data + off;
}

static inline uint16_t kiln_bytes_le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t kiln_bytes_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t kiln_bytes_le64(const unsigned char *p)
{
    return (uint64_t)kiln_bytes_le32(p) | ((uint64_t)kiln_bytes_le32(p + 4) << 32);
}

#endif
