/* fatbin.c - ELF64 reader and CUDA fatbin parser; see fatbin.h. */
#include "kernels-selftest/fatbin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint16_t rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t rd64(const unsigned char *p)
{
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

/* 1 if [off, off+n) lies inside a buffer of len bytes, without overflow. */
static int in_bounds(uint64_t off, uint64_t n, size_t len)
{
    return off <= len && n <= len - off;
}

int kiln_elf_is_elf(const void *data, size_t len)
{
    return data && len >= 4 &&
           memcmp(data,
                  "\x7f"
                  "ELF",
                  4) == 0;
}

int kiln_elf_open(struct kiln_elf *e, const void *data, size_t len, struct kiln_error *err)
{
    const unsigned char *p = data;
    memset(e, 0, sizeof *e);
    if (!kiln_elf_is_elf(data, len))
        return kiln_fail(err, KILN_EPARSE, "not an ELF file (no \\x7fELF magic)");
    if (len < 64)
        return kiln_fail(err, KILN_EPARSE, "truncated ELF header (%zu bytes, need 64)", len);
    if (p[4] != 2)
        return kiln_fail(err, KILN_EUNSUPPORTED, "only 64-bit ELF is supported (class %u)", p[4]);
    if (p[5] != 1) return kiln_fail(err, KILN_EUNSUPPORTED, "only little-endian ELF is supported");
    e->data = p;
    e->len = len;
    e->osabi = p[7];
    e->abiversion = p[8];
    e->type = rd16(p + 16);
    e->machine = rd16(p + 18);
    e->phoff = rd64(p + 32);
    e->shoff = rd64(p + 40);
    e->flags = rd32(p + 48);
    e->phentsize = rd16(p + 54);
    e->phnum = rd16(p + 56);
    e->shentsize = rd16(p + 58);
    e->shnum = rd16(p + 60);
    e->shstrndx = rd16(p + 62);
    if (e->shnum) {
        if (e->shentsize < 64)
            return kiln_fail(err, KILN_EPARSE, "ELF section header size %u is too small",
                             e->shentsize);
        if (!in_bounds(e->shoff, (uint64_t)e->shnum * e->shentsize, len))
            return kiln_fail(err, KILN_EPARSE,
                             "ELF section table (offset %llu, %u entries) runs past the end "
                             "of the file (%zu bytes)",
                             (unsigned long long)e->shoff, e->shnum, len);
        if (e->shstrndx >= e->shnum)
            e->shstrndx = 0; /* no names; tolerated (SHN_UNDEF or SHN_XINDEX) */
    }
    if (e->phnum) {
        if (e->phentsize < 56)
            return kiln_fail(err, KILN_EPARSE, "ELF program header size %u is too small",
                             e->phentsize);
        if (!in_bounds(e->phoff, (uint64_t)e->phnum * e->phentsize, len))
            return kiln_fail(err, KILN_EPARSE,
                             "ELF program header table runs past the end of the file");
    }
    return KILN_OK;
}

/* Raw header of section idx without name lookup or content checks. */
static void raw_section(const struct kiln_elf *e, unsigned idx, struct kiln_elf_section *s)
{
    const unsigned char *h = e->data + e->shoff + (uint64_t)idx * e->shentsize;
    memset(s, 0, sizeof *s);
    s->name = "";
    s->type = rd32(h + 4);
    s->flags = rd64(h + 8);
    s->addr = rd64(h + 16);
    s->offset = rd64(h + 24);
    s->size = rd64(h + 32);
    s->link = rd32(h + 40);
    s->info = rd32(h + 44);
    s->entsize = rd64(h + 56);
}

int kiln_elf_section(const struct kiln_elf *e, unsigned idx, struct kiln_elf_section *out,
                     struct kiln_error *err)
{
    if (idx >= e->shnum)
        return kiln_fail(err, KILN_EINVAL, "ELF section %u does not exist (%u sections)", idx,
                         e->shnum);
    raw_section(e, idx, out);
    uint32_t name_off = rd32(e->data + e->shoff + (uint64_t)idx * e->shentsize);
    if (e->shstrndx) {
        struct kiln_elf_section str;
        raw_section(e, e->shstrndx, &str);
        if (str.type != 8 /* SHT_NOBITS */ && in_bounds(str.offset, str.size, e->len) &&
            name_off < str.size) {
            const char *base = (const char *)e->data + str.offset;
            if (memchr(base + name_off, 0, str.size - name_off))
                out->name = base + name_off;
            else
                return kiln_fail(err, KILN_EPARSE,
                                 "ELF section %u name is not NUL-terminated inside .shstrtab", idx);
        }
    }
    if (out->type != 8 /* SHT_NOBITS */ && out->type != 0 &&
        !in_bounds(out->offset, out->size, e->len))
        return kiln_fail(err, KILN_EPARSE,
                         "ELF section %u (%s) at offset %llu size %llu runs past the end of the "
                         "file (%zu bytes)",
                         idx, out->name, (unsigned long long)out->offset,
                         (unsigned long long)out->size, e->len);
    return KILN_OK;
}

int kiln_elf_find_section(const struct kiln_elf *e, const char *name, struct kiln_elf_section *out,
                          struct kiln_error *err)
{
    for (unsigned i = 1; i < e->shnum; i++) {
        struct kiln_elf_section s;
        int rc = kiln_elf_section(e, i, &s, err);
        if (rc) return rc;
        if (strcmp(s.name, name) == 0) {
            *out = s;
            return KILN_OK;
        }
    }
    return KILN_ENOTFOUND;
}

int kiln_elf_vaddr_to_offset(const struct kiln_elf *e, uint64_t vaddr, uint64_t size, uint64_t *off)
{
    for (unsigned i = 0; i < e->phnum; i++) {
        const unsigned char *h = e->data + e->phoff + (uint64_t)i * e->phentsize;
        if (rd32(h) != 1 /* PT_LOAD */) continue;
        uint64_t p_offset = rd64(h + 8), p_vaddr = rd64(h + 16), p_filesz = rd64(h + 32);
        if (vaddr >= p_vaddr && vaddr - p_vaddr <= p_filesz &&
            size <= p_filesz - (vaddr - p_vaddr)) {
            uint64_t o = p_offset + (vaddr - p_vaddr);
            if (!in_bounds(o, size, e->len)) return KILN_EPARSE;
            *off = o;
            return KILN_OK;
        }
    }
    return KILN_ENOTFOUND;
}

unsigned kiln_elf_cubin_sm(const struct kiln_elf *e)
{
    if (e->machine != KILN_EM_CUDA) return 0;
    /* ABI version 8+ (CUDA 12.x+) keeps the SM in bits 8..15; older
     * toolkits stored it in the low byte. */
    if (e->abiversion >= 8) return (e->flags >> 8) & 0xff;
    return e->flags & 0xff;
}

/* ptxas records its command line ("-arch sm_90a -m 64") in the
 * .note.nv.tkinfo note; e_flags do not tell sm_90 from sm_90a. */
static char cubin_suffix(const struct kiln_elf *e)
{
    struct kiln_elf_section s;
    if (kiln_elf_find_section(e, ".note.nv.tkinfo", &s, NULL) != KILN_OK || s.type == 8) return 0;
    const char *p = (const char *)e->data + s.offset, *end = p + s.size;
    const char *at = memmem(p, s.size, "-arch sm_", 9);
    if (!at) return 0;
    at += 9;
    while (at < end && *at >= '0' && *at <= '9')
        at++;
    if (at < end && (*at == 'a' || *at == 'f')) return *at;
    return 0;
}

/* ---- fatbin ---- */

static int list_push(struct kiln_fatbin_list *l, const struct kiln_fatbin_entry *ent,
                     struct kiln_error *err)
{
    if (l->n >= KILN_FATBIN_MAX_ENTRIES)
        return kiln_fail(err, KILN_ELIMIT, "more than %d fatbin entries", KILN_FATBIN_MAX_ENTRIES);
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        struct kiln_fatbin_entry *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return kiln_fail(err, KILN_ENOMEM, "out of memory listing fatbin entries");
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = *ent;
    return KILN_OK;
}

void kiln_fatbin_list_free(struct kiln_fatbin_list *l)
{
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* An uncompressed cubin payload is itself an ELF: note whether it needs a
 * device link (ET_REL), which matters for -rdc objects. */
static void inspect_cubin_payload(const unsigned char *p, uint64_t n, struct kiln_fatbin_entry *ent)
{
    struct kiln_elf ce;
    if (kiln_elf_open(&ce, p, (size_t)n, NULL) == KILN_OK && ce.machine == KILN_EM_CUDA)
        ent->relocatable = ce.type == 1;
}

int kiln_fatbin_parse(const void *data, size_t len, uint64_t base_off, const char *where,
                      struct kiln_fatbin_list *out, struct kiln_error *err)
{
    const unsigned char *d = data;
    size_t pos = 0;
    int seen = 0;
    while (pos < len) {
        /* Containers are 8-byte aligned; sections pad the tail with zeros. */
        if (len - pos < 16) {
            for (size_t i = pos; i < len; i++)
                if (d[i])
                    return kiln_fail(err, KILN_EPARSE,
                                     "%s: %zu stray bytes after the last fatbin container at "
                                     "offset %llu",
                                     where, len - pos, (unsigned long long)(base_off + pos));
            break;
        }
        uint32_t magic = rd32(d + pos);
        if (magic == 0 && seen) {
            pos += 8;
            continue;
        }
        if (magic != KILN_FATBIN_MAGIC)
            return kiln_fail(err, KILN_EPARSE,
                             "%s: bad fatbin magic 0x%08x at offset %llu (expected 0x%08x)", where,
                             magic, (unsigned long long)(base_off + pos), KILN_FATBIN_MAGIC);
        uint16_t hsize = rd16(d + pos + 6);
        uint64_t fsize = rd64(d + pos + 8);
        if (hsize < 16)
            return kiln_fail(err, KILN_EPARSE,
                             "%s: fatbin header size %u at offset %llu is too small", where, hsize,
                             (unsigned long long)(base_off + pos));
        if (!in_bounds(pos + hsize, fsize, len))
            return kiln_fail(err, KILN_EPARSE,
                             "%s: fatbin container at offset %llu claims %llu bytes but only %zu "
                             "remain (truncated?)",
                             where, (unsigned long long)(base_off + pos), (unsigned long long)fsize,
                             len - pos);
        out->containers++;
        seen = 1;
        size_t p = pos + hsize, end = pos + hsize + (size_t)fsize;
        while (p < end) {
            if (end - p < 64)
                return kiln_fail(
                    err, KILN_EPARSE,
                    "%s: truncated fatbin entry header at offset %llu (%zu bytes left, "
                    "need 64)",
                    where, (unsigned long long)(base_off + p), end - p);
            const unsigned char *h = d + p;
            uint32_t ehsize = rd32(h + 4);
            uint64_t psize = rd64(h + 8);
            if (ehsize < 64 || ehsize > end - p)
                return kiln_fail(err, KILN_EPARSE,
                                 "%s: fatbin entry at offset %llu has a bad header size %u", where,
                                 (unsigned long long)(base_off + p), ehsize);
            if (!in_bounds(p + ehsize, psize, end))
                return kiln_fail(err, KILN_EPARSE,
                                 "%s: fatbin entry at offset %llu claims a %llu-byte payload past "
                                 "the end of its container",
                                 where, (unsigned long long)(base_off + p),
                                 (unsigned long long)psize);
            struct kiln_fatbin_entry ent;
            memset(&ent, 0, sizeof ent);
            ent.kind = rd16(h);
            ent.minor = rd16(h + 24);
            ent.major = rd16(h + 26);
            ent.sm = rd32(h + 28);
            ent.flags = rd64(h + 40);
            ent.offset = base_off + p + ehsize;
            ent.size = psize;
            ent.uncompressed_size = rd64(h + 56);
            if (ent.flags & KILN_FB_FLAG_ZSTD)
                ent.compression = "zstd";
            else if (ent.flags & KILN_FB_FLAG_LZ4)
                ent.compression = "lz4";
            if (!ent.compression) {
                uint32_t csize = rd32(h + 16);
                ent.uncompressed_size = psize;
                (void)csize;
            }
            if (ent.flags & KILN_FB_FLAG_ARCH_SPECIFIC)
                ent.suffix = 'a';
            else if (ent.flags & KILN_FB_FLAG_FAMILY)
                ent.suffix = 'f';
            if (ent.sm > 10000)
                return kiln_fail(err, KILN_EPARSE,
                                 "%s: fatbin entry at offset %llu names an impossible SM %u", where,
                                 (unsigned long long)(base_off + p), ent.sm);
            snprintf(ent.where, sizeof ent.where, "%s", where);
            if (ent.kind == KILN_FB_CUBIN && !ent.compression)
                inspect_cubin_payload(h + ehsize, psize, &ent);
            int rc = list_push(out, &ent, err);
            if (rc) return rc;
            p += ehsize + (size_t)psize;
        }
        pos = end;
    }
    if (!seen) return kiln_fail(err, KILN_EPARSE, "%s: no fatbin container found", where);
    return KILN_OK;
}

/* Fatbins referenced from .nvFatBinSegment: {u32 magic 0x466243b1, u32
 * version, u64 fatbin address, u64 unused}. Used when the .nv_fatbin
 * section is absent (renamed or merged by a linker script). In position
 * independent output the address may only be in a relocation; then the
 * segment scan below finds the fatbin instead. */
static int from_segment_records(const struct kiln_elf *e, const struct kiln_elf_section *seg,
                                struct kiln_fatbin_list *out, int *found, struct kiln_error *err)
{
    for (uint64_t off = 0; off + 24 <= seg->size; off += 24) {
        const unsigned char *r = e->data + seg->offset + off;
        if (rd32(r) != 0x466243b1u) continue;
        uint64_t addr = rd64(r + 8), foff;
        if (!addr || kiln_elf_vaddr_to_offset(e, addr, 16, &foff) != KILN_OK) continue;
        const unsigned char *fb = e->data + foff;
        if (rd32(fb) != KILN_FATBIN_MAGIC) continue;
        uint64_t total = rd16(fb + 6) + rd64(fb + 8);
        if (!in_bounds(foff, total, e->len))
            return kiln_fail(err, KILN_EPARSE,
                             ".nvFatBinSegment points at a fatbin that runs past the end of the "
                             "file");
        int rc = kiln_fatbin_parse(fb, (size_t)total, foff, ".nvFatBinSegment", out, err);
        if (rc) return rc;
        *found = 1;
    }
    return KILN_OK;
}

/* Scan [off, off+n) for containers at 8-byte alignment, used for ELF
 * files without section headers. */
static int scan_range(const struct kiln_elf *e, uint64_t off, uint64_t n,
                      struct kiln_fatbin_list *out, struct kiln_error *err)
{
    if (off >= e->len || n > e->len - off)
        return KILN_OK; /* callers clamp; never trust a wrapped range */
    uint64_t start = (off + 7) & ~(uint64_t)7, end = off + n;
    for (uint64_t p = start; p < end && end - p >= 16; p += 8) {
        const unsigned char *h = e->data + p;
        if (rd32(h) != KILN_FATBIN_MAGIC || rd16(h + 4) != 1 || rd16(h + 6) < 16) continue;
        uint64_t total = (uint64_t)rd16(h + 6) + rd64(h + 8);
        if (rd64(h + 8) > e->len || !in_bounds(p, total, e->len)) continue;
        struct kiln_error sub;
        size_t before = out->n;
        if (kiln_fatbin_parse(h, (size_t)total, p, "segment scan", out, &sub) != KILN_OK) {
            out->n = before; /* a chance match of the magic, not a fatbin */
            continue;
        }
        p = ((p + total + 7) & ~(uint64_t)7) - 8; /* the loop adds 8 */
    }
    (void)err;
    return KILN_OK;
}

int kiln_fatbin_inspect(const void *data, size_t len, struct kiln_fatbin_list *out,
                        struct kiln_error *err)
{
    memset(out, 0, sizeof *out);
    if (len >= 4 && rd32(data) == KILN_FATBIN_MAGIC) {
        int rc = kiln_fatbin_parse(data, len, 0, "fatbin file", out, err);
        if (rc) kiln_fatbin_list_free(out);
        return rc;
    }
    struct kiln_elf e;
    int rc = kiln_elf_open(&e, data, len, err);
    if (rc) return rc;
    if (e.machine == KILN_EM_CUDA) {
        struct kiln_fatbin_entry ent;
        memset(&ent, 0, sizeof ent);
        ent.kind = KILN_FB_CUBIN;
        ent.sm = kiln_elf_cubin_sm(&e);
        ent.suffix = cubin_suffix(&e);
        ent.size = ent.uncompressed_size = len;
        ent.relocatable = e.type == 1;
        snprintf(ent.where, sizeof ent.where, "cubin file");
        out->is_cubin = 1;
        rc = list_push(out, &ent, err);
        if (rc) kiln_fatbin_list_free(out);
        return rc;
    }
    int found = 0;
    struct kiln_elf_section segrec;
    memset(&segrec, 0, sizeof segrec);
    int have_seg = 0;
    for (unsigned i = 1; i < e.shnum; i++) {
        struct kiln_elf_section s;
        rc = kiln_elf_section(&e, i, &s, err);
        if (rc) goto fail;
        if (s.type == 8 /* SHT_NOBITS */) continue;
        if (strcmp(s.name, ".nv_fatbin") == 0 || strcmp(s.name, "__nv_relfatbin") == 0) {
            if (s.size == 0) continue;
            rc = kiln_fatbin_parse(e.data + s.offset, (size_t)s.size, s.offset, s.name, out, err);
            if (rc) goto fail;
            found = 1;
        } else if (strcmp(s.name, ".nvFatBinSegment") == 0) {
            segrec = s;
            have_seg = 1;
        }
    }
    if (!found && have_seg) {
        rc = from_segment_records(&e, &segrec, out, &found, err);
        if (rc) goto fail;
    }
    if (!found && e.shnum == 0) {
        for (unsigned i = 0; i < e.phnum; i++) {
            const unsigned char *h = e.data + e.phoff + (uint64_t)i * e.phentsize;
            if (rd32(h) != 1) continue;
            uint64_t o = rd64(h + 8), n = rd64(h + 32);
            if (o >= e.len) continue;
            if (n > e.len - o) n = e.len - o;
            rc = scan_range(&e, o, n, out, err);
            if (rc) goto fail;
        }
    }
    return KILN_OK;
fail:
    kiln_fatbin_list_free(out);
    return rc;
}

void kiln_fatbin_entry_target(const struct kiln_fatbin_entry *e, char *out, size_t outlen)
{
    const char *pfx = e->kind == KILN_FB_CUBIN   ? "sm_"
                      : e->kind == KILN_FB_PTX   ? "compute_"
                      : e->kind == KILN_FB_LTOIR ? "lto_"
                                                 : "kind?_";
    char sfx[2] = {e->suffix, 0};
    snprintf(out, outlen, "%s%u%s", pfx, e->sm, sfx);
}

int kiln_fatbin_runs_on(const struct kiln_fatbin_entry *e, unsigned sm)
{
    unsigned emaj = e->sm / 10, smaj = sm / 10;
    if (e->kind == KILN_FB_CUBIN) {
        if (e->suffix == 'a') return sm == e->sm;
        return smaj == emaj && sm >= e->sm;
    }
    if (e->kind == KILN_FB_PTX) {
        if (e->suffix == 'a') return sm == e->sm;
        if (e->suffix == 'f') return smaj == emaj && sm >= e->sm;
        return sm >= e->sm;
    }
    return 0; /* LTO-IR needs a link step; it never runs as is */
}

int kiln_fatbin_parse_sm(const char *s, unsigned *sm)
{
    if (!s) return KILN_EINVAL;
    if (strncmp(s, "sm_", 3) == 0)
        s += 3;
    else if (strncmp(s, "compute_", 8) == 0)
        s += 8;
    unsigned v = 0;
    int digits = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (unsigned)(*p - '0');
        if (++digits > 4) return KILN_EINVAL;
    }
    if (!digits) return KILN_EINVAL;
    if (*p == '.') { /* "9.0" */
        p++;
        if (*p < '0' || *p > '9') return KILN_EINVAL;
        v = v * 10 + (unsigned)(*p - '0');
        p++;
    }
    if (*p == 'a' || *p == 'f') p++;
    if (*p || v < 10 || v > 999) return KILN_EINVAL;
    *sm = v;
    return KILN_OK;
}

static const char *kind_word(int kind)
{
    return kind == KILN_FB_CUBIN ? "cubin" : kind == KILN_FB_PTX ? "PTX" : "LTO-IR";
}

int kiln_fatbin_check_sm(const struct kiln_fatbin_list *l, unsigned sm, char *how, size_t howlen,
                         struct kiln_error *err)
{
    char t[32];
    /* Prefer a cubin: PTX only helps after a JIT step at load time. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < l->n; i++) {
            const struct kiln_fatbin_entry *e = &l->v[i];
            if (e->kind != (pass == 0 ? KILN_FB_CUBIN : KILN_FB_PTX)) continue;
            if (!kiln_fatbin_runs_on(e, sm)) continue;
            if (how) {
                kiln_fatbin_entry_target(e, t, sizeof t);
                snprintf(how, howlen, "%s %s%s", kind_word(e->kind), t,
                         pass ? " (JIT-compiled by the driver)" : "");
            }
            return KILN_OK;
        }
    }
    if (l->n == 0)
        return kiln_fail(err, KILN_ENOTFOUND,
                         "no cubin or PTX for sm_%u: the file holds no CUDA device code at all",
                         sm);
    struct kiln_buf b = {0};
    b.max = KILN_ERR_MSG_MAX;
    int rc = kiln_buf_printf(&b, "no cubin or PTX usable on sm_%u: found", sm);
    for (size_t i = 0; i < l->n && rc == KILN_OK; i++) {
        const struct kiln_fatbin_entry *e = &l->v[i];
        int dup = 0;
        for (size_t j = 0; j < i; j++)
            if (l->v[j].kind == e->kind && l->v[j].sm == e->sm && l->v[j].suffix == e->suffix)
                dup = 1;
        if (dup) continue;
        kiln_fatbin_entry_target(e, t, sizeof t);
        const char *note = "";
        if (e->suffix == 'a')
            note = ", arch-specific";
        else if (e->suffix == 'f')
            note = ", family-specific";
        rc = kiln_buf_printf(&b, "%s %s (%s%s)", i ? "," : "", t, kind_word(e->kind), note);
    }
    int out = kiln_fail(err, KILN_ENOTFOUND, "%s", b.data ? b.data : "no usable entry");
    if (rc == KILN_ELIMIT && err && strlen(err->msg) > 4)
        memcpy(err->msg + strlen(err->msg) - 4, " ...", 4);
    kiln_buf_free(&b);
    return out;
}

int kiln_fatbin_summary(const struct kiln_fatbin_list *l, struct kiln_buf *out)
{
    char t[32];
    int first = 1;
    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; i < l->n; i++) {
            const struct kiln_fatbin_entry *e = &l->v[i];
            int want = pass == 0   ? e->kind == KILN_FB_CUBIN
                       : pass == 1 ? e->kind == KILN_FB_PTX
                                   : (e->kind != KILN_FB_CUBIN && e->kind != KILN_FB_PTX);
            if (!want) continue;
            int dup = 0;
            for (size_t j = 0; j < i; j++)
                if (l->v[j].kind == e->kind && l->v[j].sm == e->sm && l->v[j].suffix == e->suffix)
                    dup = 1;
            if (dup) continue;
            kiln_fatbin_entry_target(e, t, sizeof t);
            int rc = kiln_buf_printf(out, "%s%s", first ? "" : " ", t);
            if (rc) return rc;
            first = 0;
        }
    }
    if (first) return kiln_buf_puts(out, "");
    return KILN_OK;
}
