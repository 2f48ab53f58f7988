/* elfsym.c - ELF symbol walking and name matching; see elfsym.h.
 *
 * Like fatbin.c, every pointer into the file comes from kiln_bytes_at()
 * (bytes.h) for the bytes then read: the symbol table, each 24-byte entry
 * and the string table are checked again here rather than trusted to
 * kiln_elf_section(), so a change there cannot open a hole here. */
#include "kernels-selftest/elfsym.h"
#include "kernels-selftest/bytes.h"

#include <stdlib.h>
#include <string.h>

#define SYM_SIZE 24 /* sizeof(Elf64_Sym) */

int kiln_elfsym_foreach(const struct kiln_elf *e, kiln_elfsym_cb cb, void *ctx,
                        struct kiln_error *err)
{
    for (unsigned i = 1; i < e->shnum; i++) {
        struct kiln_elf_section s, str;
        int rc = kiln_elf_section(e, i, &s, err);
        if (rc) return rc;
        if (s.type != 2 /* SHT_SYMTAB */ && s.type != 11 /* SHT_DYNSYM */) continue;
        const char *table = s.type == 2 ? ".symtab" : ".dynsym";
        if (s.entsize != SYM_SIZE)
            return kiln_fail(err, KILN_EPARSE, "%s (section %u) has entry size %llu, expected 24",
                             table, i, (unsigned long long)s.entsize);
        if (s.link == 0 || s.link >= e->shnum)
            return kiln_fail(err, KILN_EPARSE, "%s (section %u) links to no string table", table,
                             i);
        rc = kiln_elf_section(e, s.link, &str, err);
        if (rc) return rc;
        if (str.type != 3 /* SHT_STRTAB */)
            return kiln_fail(err, KILN_EPARSE,
                             "%s (section %u) links to section %u, which is not a string table",
                             table, i, s.link);
        uint64_t count = s.size / SYM_SIZE;
        if (count > KILN_ELFSYM_MAX)
            return kiln_fail(err, KILN_ELIMIT, "%s has %llu symbols (limit %d)", table,
                             (unsigned long long)count, KILN_ELFSYM_MAX);
        const char *strs = (const char *)kiln_bytes_at(e->data, e->len, str.offset, str.size);
        if (!strs || !kiln_bytes_at(e->data, e->len, s.offset, count * SYM_SIZE))
            return kiln_fail(err, KILN_EPARSE, "%s (section %u) runs past the end of the file",
                             table, i);
        for (uint64_t k = 1; k < count; k++) {
            const unsigned char *p =
                kiln_bytes_at(e->data, e->len, s.offset + k * SYM_SIZE, SYM_SIZE);
            if (!p) /* inside the table checked above; kept as the one rule */
                return kiln_fail(err, KILN_EPARSE, "%s symbol %llu lies outside the file", table,
                                 (unsigned long long)k);
            uint32_t name = kiln_bytes_le32(p);
            if (name == 0) continue;
            if (name >= str.size)
                return kiln_fail(err, KILN_EPARSE,
                                 "%s symbol %llu has a name offset %u outside its string table",
                                 table, (unsigned long long)k, name);
            if (!memchr(strs + name, 0, str.size - name))
                return kiln_fail(err, KILN_EPARSE,
                                 "%s symbol %llu has a name that is not NUL-terminated", table,
                                 (unsigned long long)k);
            struct kiln_elfsym sym = {
                .name = strs + name,
                .table = table,
                .type = p[4] & 0xf,
                .bind = p[4] >> 4,
                .defined = (p[6] | (p[7] << 8)) != 0,
                .value = kiln_bytes_le64(p + 8),
                .size = kiln_bytes_le64(p + 16),
            };
            rc = cb(ctx, &sym);
            if (rc) return rc;
        }
    }
    return KILN_OK;
}

int kiln_elfsym_match(const char *pattern, const char *sym)
{
    size_t plen = strlen(pattern);
    int star = 0;
    if (plen && pattern[plen - 1] == '*') {
        star = 1;
        plen--;
    }
    if (plen == 0) return 0;
    if (!star && strcmp(pattern, sym) == 0) return 1;
    if (star && strncmp(pattern, sym, plen) == 0) return 1;
    if (strncmp(sym, "_Z", 2) != 0) return 0;
    /* Walk every "<decimal length><name>" in the mangled name. */
    for (const char *p = sym + 2; *p; p++) {
        if (*p < '1' || *p > '9' || (p[-1] >= '0' && p[-1] <= '9')) continue;
        size_t n = 0;
        const char *q = p;
        while (*q >= '0' && *q <= '9' && n < 100000)
            n = n * 10 + (size_t)(*q++ - '0');
        if (strnlen(q, n) < n) continue;
        if ((star ? n >= plen : n == plen) && strncmp(q, pattern, plen) == 0) return 1;
    }
    return 0;
}

int kiln_elfsym_split(const char *list, char ***out, size_t *n, struct kiln_error *err)
{
    *out = NULL;
    *n = 0;
    if (!list || !*list) return kiln_fail(err, KILN_EINVAL, "empty symbol list");
    size_t cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    char **v = calloc(cap, sizeof *v);
    if (!v) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    size_t k = 0;
    const char *p = list;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0 || (len == 1 && *p == '*')) {
            kiln_elfsym_split_free(v, k);
            return kiln_fail(err, KILN_EINVAL, "empty name in symbol list \"%.200s\"", list);
        }
        v[k] = strndup(p, len);
        if (!v[k]) {
            kiln_elfsym_split_free(v, k);
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
        }
        k++;
        if (!c) break;
        p = c + 1;
    }
    *out = v;
    *n = k;
    return KILN_OK;
}

void kiln_elfsym_split_free(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

struct expect_ctx {
    char *const *patterns;
    size_t n;
    int *found;
    char **match;
    size_t left;
    int oom;
};

static int expect_cb(void *vctx, const struct kiln_elfsym *sym)
{
    struct expect_ctx *c = vctx;
    if (!sym->defined) return 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->found[i] || !kiln_elfsym_match(c->patterns[i], sym->name)) continue;
        c->found[i] = 1;
        c->left--;
        if (c->match) {
            c->match[i] = strdup(sym->name);
            if (!c->match[i]) {
                c->oom = 1;
                return 1;
            }
        }
    }
    return c->left == 0 ? 1 : 0; /* everything found: stop early */
}

int kiln_elfsym_expect(const struct kiln_elf *e, char *const *patterns, size_t n, int *found,
                       char **match, struct kiln_error *err)
{
    struct expect_ctx c = {patterns, n, found, match, 0, 0};
    for (size_t i = 0; i < n; i++)
        c.left += !found[i];
    if (c.left == 0) return KILN_OK;
    int rc = kiln_elfsym_foreach(e, expect_cb, &c, err);
    if (c.oom) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    if (rc < 0) return rc;
    return KILN_OK;
}
