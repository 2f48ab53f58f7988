/* fatbin.c - ELF64 reader and CUDA fatbin parser; see fatbin.h.
 *
 * Every offset, size and count in the input is hostile until checked: each
 * pointer into the file comes from kiln_bytes_at() (bytes.h) for exactly the
 * bytes then read, so a wrong table offset, a wrapped offset + size or a
 * count past the end gives KILN_EPARSE instead of a read outside the file. */
#include "kernels-selftest/fatbin.h"
#include "kernels-selftest/bytes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define rd16 kiln_bytes_le16
#define rd32 kiln_bytes_le32
#define rd64 kiln_bytes_le64

#define SHT_NOBITS 8
#define PT_LOAD 1

/* [off, off + n) of the ELF file, or NULL when it is not inside the file. */
static const unsigned char *elf_at(const struct kiln_elf *e, uint64_t off, uint64_t n)
{
    return kiln_bytes_at(e->data, e->len, off, n);
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
        if (!kiln_bytes_in(e->shoff, (uint64_t)e->shnum * e->shentsize, len))
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
        if (!kiln_bytes_in(e->phoff, (uint64_t)e->phnum * e->phentsize, len))
            return kiln_fail(err, KILN_EPARSE,
                             "ELF program header table (offset %llu, %u entries) runs past the "
                             "end of the file (%zu bytes)",
                             (unsigned long long)e->phoff, e->phnum, len);
    }
    return KILN_OK;
}

/* Header of section idx (64 bytes) or program header idx (56 bytes); NULL
 * only if e was not checked by kiln_elf_open(). */
static const unsigned char *section_header(const struct kiln_elf *e, unsigned idx)
{
    if (idx >= e->shnum) return NULL;
    return elf_at(e, e->shoff + (uint64_t)idx * e->shentsize, 64);
}

static const unsigned char *program_header(const struct kiln_elf *e, unsigned idx)
{
    if (idx >= e->phnum) return NULL;
    return elf_at(e, e->phoff + (uint64_t)idx * e->phentsize, 56);
}

/* Raw fields of a section header, without name lookup or content checks. */
static void raw_section(const unsigned char *h, struct kiln_elf_section *s)
{
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
    const unsigned char *h = section_header(e, idx);
    if (!h)
        return kiln_fail(err, KILN_EINVAL, "ELF section %u does not exist (%u sections)", idx,
                         e->shnum);
    raw_section(h, out);
    uint32_t name_off = rd32(h);
    const unsigned char *sh = e->shstrndx ? section_header(e, e->shstrndx) : NULL;
    if (sh) {
        struct kiln_elf_section str;
        raw_section(sh, &str);
        const unsigned char *base = str.type != SHT_NOBITS ? elf_at(e, str.offset, str.size) : NULL;
        if (base && name_off < str.size) {
            if (!memchr(base + name_off, 0, str.size - name_off))
                return kiln_fail(err, KILN_EPARSE,
                                 "ELF section %u name is not NUL-terminated inside .shstrtab", idx);
            out->name = (const char *)base + name_off;
        }
    }
    /* Only SHT_NOBITS occupies no file bytes. Every other type, SHT_NULL
     * included, is checked: a caller looks sections up by name, and a
     * crafted "SHT_NULL .nv_fatbin" pointing anywhere once crashed the
     * inspector (tests/fuzz/corpus/fatbin/oob-read-1-null-section.bin). */
    if (out->type != SHT_NOBITS && !kiln_bytes_in(out->offset, out->size, e->len))
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
        const unsigned char *h = program_header(e, i);
        if (!h) return KILN_EPARSE;
        if (rd32(h) != PT_LOAD) continue;
        uint64_t p_offset = rd64(h + 8), p_vaddr = rd64(h + 16), p_filesz = rd64(h + 32);
        if (vaddr >= p_vaddr && vaddr - p_vaddr <= p_filesz &&
            size <= p_filesz - (vaddr - p_vaddr)) {
            uint64_t delta = vaddr - p_vaddr;
            if (p_offset > UINT64_MAX - delta) return KILN_EPARSE; /* wrapped */
            uint64_t o = p_offset + delta;
            if (!elf_at(e, o, size)) return KILN_EPARSE;
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
    if (kiln_elf_find_section(e, ".note.nv.tkinfo", &s, NULL) != KILN_OK || s.type == SHT_NOBITS)
        return 0;
    const char *p = (const char *)elf_at(e, s.offset, s.size);
    if (!p) return 0;
    const char *end = p + s.size;
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

/* Entries of one container, data[p..end); end <= len was checked. */
static int parse_entries(const unsigned char *d, size_t p, size_t end, uint64_t base_off,
                         const char *where, struct kiln_fatbin_list *out, struct kiln_error *err)
{
    while (p < end) {
        const unsigned char *h = kiln_bytes_at(d, end, p, 64);
        if (!h)
            return kiln_fail(err, KILN_EPARSE,
                             "%s: truncated fatbin entry header at offset %llu (%zu bytes left, "
                             "need 64)",
                             where, (unsigned long long)(base_off + p), end - p);
        uint32_t ehsize = rd32(h + 4);
        uint64_t psize = rd64(h + 8);
        if (ehsize < 64 || ehsize > end - p)
            return kiln_fail(err, KILN_EPARSE,
                             "%s: fatbin entry at offset %llu has a bad header size %u", where,
                             (unsigned long long)(base_off + p), ehsize);
        const unsigned char *payload = kiln_bytes_at(d, end, p + ehsize, psize);
        if (!payload)
            return kiln_fail(err, KILN_EPARSE,
                             "%s: fatbin entry at offset %llu claims a %llu-byte payload past "
                             "the end of its container",
                             where, (unsigned long long)(base_off + p), (unsigned long long)psize);
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
        if (!ent.compression) ent.uncompressed_size = psize;
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
            inspect_cubin_payload(payload, psize, &ent);
        int rc = list_push(out, &ent, err);
        if (rc) return rc;
        p += ehsize + (size_t)psize; /* <= end, checked by kiln_bytes_at above */
    }
    return KILN_OK;
}

int kiln_fatbin_parse(const void *data, size_t len, uint64_t base_off, const char *where,
                      struct kiln_fatbin_list *out, struct kiln_error *err)
{
    const unsigned char *d = data;
    size_t pos = 0;
    int seen = 0;
    while (pos < len) {
        /* Containers are 8-byte aligned; sections pad the tail with zeros. */
        const unsigned char *c = kiln_bytes_at(d, len, pos, 16);
        if (!c) {
            for (size_t i = pos; i < len; i++)
                if (d[i])
                    return kiln_fail(err, KILN_EPARSE,
                                     "%s: %zu stray bytes after the last fatbin container at "
                                     "offset %llu",
                                     where, len - pos, (unsigned long long)(base_off + pos));
            break;
        }
        uint32_t magic = rd32(c);
        if (magic == 0 && seen) {
            pos += 8;
            continue;
        }
        if (magic != KILN_FATBIN_MAGIC)
            return kiln_fail(err, KILN_EPARSE,
                             "%s: bad fatbin magic 0x%08x at offset %llu (expected 0x%08x)", where,
                             magic, (unsigned long long)(base_off + pos), KILN_FATBIN_MAGIC);
        uint16_t hsize = rd16(c + 6);
        uint64_t fsize = rd64(c + 8);
        if (hsize < 16)
            return kiln_fail(err, KILN_EPARSE,
                             "%s: fatbin header size %u at offset %llu is too small", where, hsize,
                             (unsigned long long)(base_off + pos));
        if (!kiln_bytes_at(d, len, (uint64_t)pos + hsize, fsize))
            return kiln_fail(err, KILN_EPARSE,
                             "%s: fatbin container at offset %llu claims %llu bytes but only %zu "
                             "remain (truncated?)",
                             where, (unsigned long long)(base_off + pos), (unsigned long long)fsize,
                             len - pos);
        out->containers++;
        seen = 1;
        size_t end = pos + hsize + (size_t)fsize;
        int rc = parse_entries(d, pos + hsize, end, base_off, where, out, err);
        if (rc) return rc;
        pos = end;
    }
    if (!seen) return kiln_fail(err, KILN_EPARSE, "%s: no fatbin container found", where);
    return KILN_OK;
}

/* Size of the fatbin container whose 16-byte header is at h, or
 * UINT64_MAX when the header's size fields wrap. */
static uint64_t container_size(const unsigned char *h)
{
    uint64_t hsize = rd16(h + 6), fsize = rd64(h + 8);
    return fsize > UINT64_MAX - hsize ? UINT64_MAX : hsize + fsize;
}

/* Fatbins referenced from .nvFatBinSegment: {u32 magic 0x466243b1, u32
 * version, u64 fatbin address, u64 unused}. Used when the .nv_fatbin
 * section is absent (renamed or merged by a linker script). In position
 * independent output the address may only be in a relocation; then the
 * segment scan below finds the fatbin instead. */
static int from_segment_records(const struct kiln_elf *e, const struct kiln_elf_section *seg,
                                struct kiln_fatbin_list *out, int *found, struct kiln_error *err)
{
    for (uint64_t off = 0; seg->size >= 24 && off <= seg->size - 24; off += 24) {
        const unsigned char *r = elf_at(e, seg->offset + off, 24);
        if (!r)
            return kiln_fail(err, KILN_EPARSE,
                             ".nvFatBinSegment record at offset %llu runs past the end of the "
                             "file",
                             (unsigned long long)off);
        if (rd32(r) != 0x466243b1u) continue;
        uint64_t addr = rd64(r + 8), foff;
        if (!addr || kiln_elf_vaddr_to_offset(e, addr, 16, &foff) != KILN_OK) continue;
        const unsigned char *fb = elf_at(e, foff, 16);
        if (!fb || rd32(fb) != KILN_FATBIN_MAGIC) continue;
        uint64_t total = container_size(fb);
        if (!elf_at(e, foff, total))
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
static void scan_range(const struct kiln_elf *e, uint64_t off, uint64_t n,
                       struct kiln_fatbin_list *out)
{
    if (!elf_at(e, off, n)) return; /* callers clamp; never trust a wrapped range */
    uint64_t start = (off + 7) & ~(uint64_t)7, end = off + n;
    for (uint64_t p = start; p < end && end - p >= 16; p += 8) {
        const unsigned char *h = elf_at(e, p, 16);
        if (!h || rd32(h) != KILN_FATBIN_MAGIC || rd16(h + 4) != 1 || rd16(h + 6) < 16) continue;
        uint64_t total = container_size(h);
        if (!elf_at(e, p, total)) continue;
        struct kiln_error sub;
        size_t before = out->n;
        if (kiln_fatbin_parse(h, (size_t)total, p, "segment scan", out, &sub) != KILN_OK) {
            out->n = before; /* a chance match of the magic, not a fatbin */
            continue;
        }
        p = ((p + total + 7) & ~(uint64_t)7) - 8; /* the loop adds 8 */
    }
}

/* A bare cubin: the whole file is one entry. */
static int inspect_cubin(const struct kiln_elf *e, struct kiln_fatbin_list *out,
                         struct kiln_error *err)
{
    struct kiln_fatbin_entry ent;
    memset(&ent, 0, sizeof ent);
    ent.kind = KILN_FB_CUBIN;
    ent.sm = kiln_elf_cubin_sm(e);
    ent.suffix = cubin_suffix(e);
    ent.size = ent.uncompressed_size = e->len;
    ent.relocatable = e->type == 1;
    snprintf(ent.where, sizeof ent.where, "cubin file");
    out->is_cubin = 1;
    return list_push(out, &ent, err);
}

/* A host ELF: fatbin sections first, then .nvFatBinSegment records, then
 * (no section headers at all) a scan of the loadable segments. */
static int inspect_host(const struct kiln_elf *e, struct kiln_fatbin_list *out,
                        struct kiln_error *err)
{
    int found = 0, have_seg = 0, rc;
    struct kiln_elf_section segrec;
    memset(&segrec, 0, sizeof segrec);
    for (unsigned i = 1; i < e->shnum; i++) {
        struct kiln_elf_section s;
        rc = kiln_elf_section(e, i, &s, err);
        if (rc) return rc;
        if (s.type == SHT_NOBITS) continue;
        if (strcmp(s.name, ".nv_fatbin") == 0 || strcmp(s.name, "__nv_relfatbin") == 0) {
            if (s.size == 0) continue;
            const unsigned char *fb = elf_at(e, s.offset, s.size);
            if (!fb) /* kiln_elf_section() checked it; kept as the one rule */
                return kiln_fail(err, KILN_EPARSE, "%s runs past the end of the file", s.name);
            rc = kiln_fatbin_parse(fb, (size_t)s.size, s.offset, s.name, out, err);
            if (rc) return rc;
            found = 1;
        } else if (strcmp(s.name, ".nvFatBinSegment") == 0) {
            segrec = s;
            have_seg = 1;
        }
    }
    if (!found && have_seg) {
        rc = from_segment_records(e, &segrec, out, &found, err);
        if (rc) return rc;
    }
    if (!found && e->shnum == 0) {
        for (unsigned i = 0; i < e->phnum; i++) {
            const unsigned char *h = program_header(e, i);
            if (!h || rd32(h) != PT_LOAD) continue;
            uint64_t o = rd64(h + 8), n = rd64(h + 32);
            if (o >= e->len) continue;
            if (n > e->len - o) n = e->len - o;
            scan_range(e, o, n, out);
        }
    }
    return KILN_OK;
}

int kiln_fatbin_inspect(const void *data, size_t len, struct kiln_fatbin_list *out,
                        struct kiln_error *err)
{
    memset(out, 0, sizeof *out);
    const unsigned char *head = kiln_bytes_at(data, len, 0, 4);
    int rc;
    if (head && rd32(head) == KILN_FATBIN_MAGIC) {
        rc = kiln_fatbin_parse(data, len, 0, "fatbin file", out, err);
    } else {
        struct kiln_elf e;
        rc = kiln_elf_open(&e, data, len, err);
        if (rc) return rc;
        rc = e.machine == KILN_EM_CUDA ? inspect_cubin(&e, out, err) : inspect_host(&e, out, err);
    }
    if (rc) kiln_fatbin_list_free(out);
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
