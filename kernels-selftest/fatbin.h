/* fatbin.h - ELF64 reader and CUDA fatbin inspection (no CUDA needed).
 *
 * Contract: everything works on a byte range the caller owns (a read or
 * mmap'ed file) and never reads outside it; malformed or truncated input
 * gives KILN_EPARSE (or KILN_EUNSUPPORTED for 32-bit / big-endian ELF) with a
 * sentence naming the offset and the problem, never a crash.
 *
 * kiln_fatbin_inspect() accepts
 *   - a host ELF (object file, shared object, executable): fatbins are found
 *     in the .nv_fatbin and __nv_relfatbin (-rdc) sections, through the
 *     pointer in .nvFatBinSegment, or - when section headers are stripped -
 *     by scanning the loadable segments for the container magic;
 *   - a raw fatbin file (nvcc -fatbin);
 *   - a bare cubin (nvcc -cubin, ELF machine EM_CUDA), listed as one entry.
 * A fatbin container starts with magic 0xBA55ED50 (u32 magic, u16 version,
 * u16 header size, u64 size of the entries that follow). Each entry has a
 * header (u16 kind: 1 PTX, 2 ELF cubin, 4 LTO-IR; u32 header size; u64 padded
 * payload size; u32 compressed size at 16; u16 minor, u16 major at 24 (the
 * PTX ISA version for PTX); u32 SM at 28; u64 flags at 40; u64 uncompressed
 * size at 56). Flags: 0x1 64-bit, 0x2 debug, 0x10 Linux, 0x2000 LZ4,
 * 0x8000 zstd compressed payload, 0x100000 arch-specific target ("sm_90a":
 * runs on exactly that SM), 0x200000 family-specific target ("sm_120f":
 * runs within the family). These were read off nvcc 13.0 output.
 *
 * Compatibility rules used by kiln_fatbin_runs_on():
 *   cubin sm_XY      runs on sm_XZ with Z >= Y (same major)
 *   cubin sm_XYf     same as above (family)
 *   cubin sm_XYa     runs on sm_XY only
 *   PTX compute_XY   the driver JITs it for any SM >= XY
 *   PTX compute_XYf  JITs for SM of the same major with minor >= Y
 *   PTX compute_XYa  JITs for sm_XY only
 */
#ifndef KILN_FATBIN_H
#define KILN_FATBIN_H

#include "common/buf.h"
#include "common/err.h"

#include <stddef.h>
#include <stdint.h>

/* ---- ELF64 little-endian reader ---- */

#define KILN_EM_CUDA 190

struct kiln_elf {
    const unsigned char *data;
    size_t len;
    uint16_t type;    /* ET_REL 1, ET_EXEC 2, ET_DYN 3 */
    uint16_t machine; /* 62 x86-64, 183 aarch64, 190 CUDA */
    uint32_t flags;
    uint8_t osabi, abiversion;
    uint64_t shoff, phoff;
    uint16_t shnum, shentsize, shstrndx, phnum, phentsize;
};

struct kiln_elf_section {
    const char *name; /* NUL-terminated inside the file, "" when unnamed */
    uint32_t type;
    uint64_t flags, addr, offset, size, entsize;
    uint32_t link, info;
};

/* 1 if data starts with the ELF magic. */
int kiln_elf_is_elf(const void *data, size_t len);
/* Validate the ELF header and table bounds. */
int kiln_elf_open(struct kiln_elf *e, const void *data, size_t len, struct kiln_error *err);
/* Section idx (0 <= idx < shnum); bounds of its contents are checked
 * unless it is SHT_NOBITS. */
int kiln_elf_section(const struct kiln_elf *e, unsigned idx, struct kiln_elf_section *out,
                     struct kiln_error *err);
/* First section with this name: KILN_OK, KILN_ENOTFOUND, or a parse error. */
int kiln_elf_find_section(const struct kiln_elf *e, const char *name, struct kiln_elf_section *out,
                          struct kiln_error *err);
/* File offset of virtual address [vaddr, vaddr+size) via PT_LOAD headers. */
int kiln_elf_vaddr_to_offset(const struct kiln_elf *e, uint64_t vaddr, uint64_t size,
                             uint64_t *off);
/* "sm_90" from a cubin's e_flags (SM in bits 8..15 for ABI version 8+, in
 * bits 0..7 for older cubins); 0 when not a cubin. */
unsigned kiln_elf_cubin_sm(const struct kiln_elf *e);

/* ---- fatbin ---- */

#define KILN_FATBIN_MAGIC 0xBA55ED50u

enum kiln_fatbin_kind {
    KILN_FB_PTX = 1,
    KILN_FB_CUBIN = 2,
    KILN_FB_LTOIR = 4,
};

enum {
    KILN_FB_FLAG_64BIT = 0x1,
    KILN_FB_FLAG_DEBUG = 0x2,
    KILN_FB_FLAG_LZ4 = 0x2000,
    KILN_FB_FLAG_ZSTD = 0x8000,
    KILN_FB_FLAG_ARCH_SPECIFIC = 0x100000,
    KILN_FB_FLAG_FAMILY = 0x200000,
};

struct kiln_fatbin_entry {
    int kind;                /* enum kiln_fatbin_kind or another raw kind */
    unsigned sm;             /* 90 for sm_90 / compute_90 */
    char suffix;             /* 0, 'a' (arch-specific) or 'f' (family) */
    unsigned major, minor;   /* PTX ISA version for PTX entries */
    const char *compression; /* NULL, "lz4" or "zstd" */
    uint64_t flags;
    uint64_t offset; /* payload offset in the inspected buffer */
    uint64_t size;   /* payload bytes as stored */
    uint64_t uncompressed_size;
    int relocatable; /* cubin is ET_REL (-rdc, needs a device link) */
    char where[32];  /* section or source it came from */
};

struct kiln_fatbin_list {
    struct kiln_fatbin_entry *v;
    size_t n, cap;
    unsigned containers;
    int is_cubin; /* the input itself was a bare cubin */
};

/* Limits that keep hostile input cheap. */
#define KILN_FATBIN_MAX_ENTRIES 65536

/* Find and list every fatbin entry in data (see the top of this file). A
 * host ELF without any fatbin gives KILN_OK with n == 0. */
int kiln_fatbin_inspect(const void *data, size_t len, struct kiln_fatbin_list *out,
                        struct kiln_error *err);
/* Parse consecutive fatbin containers occupying data[0..len) (trailing zero
 * padding allowed); entry offsets are relative to base_off + the position in
 * data. */
int kiln_fatbin_parse(const void *data, size_t len, uint64_t base_off, const char *where,
                      struct kiln_fatbin_list *out, struct kiln_error *err);
void kiln_fatbin_list_free(struct kiln_fatbin_list *l);

/* "sm_90a", "compute_120f", "lto_90"... into out. */
void kiln_fatbin_entry_target(const struct kiln_fatbin_entry *e, char *out, size_t outlen);
/* 1 if the entry can run on (cubin) or be JIT-compiled for (PTX) this SM. */
int kiln_fatbin_runs_on(const struct kiln_fatbin_entry *e, unsigned sm);
/* Parse "90", "sm_90", "9.0", "sm_90a" into 90 (suffix ignored). */
int kiln_fatbin_parse_sm(const char *s, unsigned *sm);
/* KILN_OK if some entry serves sm. Otherwise KILN_ENOTFOUND and err says
 * what was found instead ("no cubin or PTX for sm_90: found sm_80 (cubin),
 * sm_100a (cubin), compute_100a (PTX, arch-specific: JITs only for
 * sm_100)"). how (may be NULL) receives "cubin sm_90" or "PTX compute_80 (JIT)". */
int kiln_fatbin_check_sm(const struct kiln_fatbin_list *l, unsigned sm, char *how, size_t howlen,
                         struct kiln_error *err);
/* Space-separated targets, cubins first then PTX: "sm_80 sm_90a compute_90a". */
int kiln_fatbin_summary(const struct kiln_fatbin_list *l, struct kiln_buf *out);

#endif
