/* Unit tests for kernels-selftest/fatbin: ELF reader, fatbin container
 * parser, SM compatibility rules, and hostile input. Fixtures are real nvcc
 * 13.0 output (tests/fixtures/selftest/make-fixtures.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/err.h"
#include "kernels-selftest/elfsym.h"
#include "kernels-selftest/fatbin.h"
#include "kernels-selftest/selftest.h"
#include "selftest_fixture.h"

#include <stdlib.h>
#include <string.h>

static void load(const char *name, struct kiln_buf *b)
{
    memset(b, 0, sizeof *b);
    assert_int_equal(fixture_load(name, b), KILN_OK);
    assert_true(b->len > 64);
}

static void summary_of(const struct kiln_fatbin_list *l, char *out, size_t n)
{
    struct kiln_buf s = {0};
    assert_int_equal(kiln_fatbin_summary(l, &s), KILN_OK);
    snprintf(out, n, "%s", s.data ? s.data : "");
    kiln_buf_free(&s);
}

static void test_multi_arch_fatbin(void **state)
{
    (void)state;
    struct kiln_buf b;
    load("multi.fatbin", &b);
    struct kiln_fatbin_list l;
    struct kiln_error err;
    assert_int_equal(kiln_fatbin_inspect(b.data, b.len, &l, &err), KILN_OK);
    assert_int_equal(l.n, 7);
    assert_int_equal(l.containers, 1);
    char s[256];
    summary_of(&l, s, sizeof s);
    assert_string_equal(s, "sm_80 sm_90a sm_100a sm_120f compute_80 compute_90a compute_120f");
    int ptx = 0, zstd = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (l.v[i].kind == KILN_FB_PTX) {
            ptx++;
            assert_int_equal(l.v[i].major, 9); /* PTX ISA 9.0 from nvcc 13.0 */
            assert_int_equal(l.v[i].minor, 0);
        }
        if (l.v[i].compression && strcmp(l.v[i].compression, "zstd") == 0) zstd++;
        assert_true(l.v[i].offset + l.v[i].size <= b.len);
    }
    assert_int_equal(ptx, 3);
    assert_int_equal(zstd, 3);

    char how[96];
    /* sm_90: the arch-specific sm_90a cubin serves it. */
    assert_int_equal(kiln_fatbin_check_sm(&l, 90, how, sizeof how, &err), KILN_OK);
    assert_string_equal(how, "cubin sm_90a");
    /* sm_86: the sm_80 cubin (same major, higher minor). */
    assert_int_equal(kiln_fatbin_check_sm(&l, 86, how, sizeof how, &err), KILN_OK);
    assert_string_equal(how, "cubin sm_80");
    /* sm_121: family cubin sm_120f. */
    assert_int_equal(kiln_fatbin_check_sm(&l, 121, how, sizeof how, &err), KILN_OK);
    assert_string_equal(how, "cubin sm_120f");
    /* sm_103: no cubin; plain compute_80 PTX JITs forward. */
    assert_int_equal(kiln_fatbin_check_sm(&l, 103, how, sizeof how, &err), KILN_OK);
    assert_string_equal(how, "PTX compute_80 (JIT-compiled by the driver)");
    /* sm_75 predates every entry. */
    assert_int_equal(kiln_fatbin_check_sm(&l, 75, how, sizeof how, &err), KILN_ENOTFOUND);
    assert_non_null(strstr(err.msg, "no cubin or PTX usable on sm_75"));
    assert_non_null(strstr(err.msg, "sm_90a (cubin, arch-specific)"));
    assert_non_null(strstr(err.msg, "compute_120f (PTX, family-specific)"));
    kiln_fatbin_list_free(&l);
    kiln_buf_free(&b);
}

static void test_object_files(void **state)
{
    (void)state;
    struct kiln_buf b;
    struct kiln_fatbin_list l;
    struct kiln_error err;
    char s[256], how[96];

    load("sm90_ptx.obj", &b);
    assert_int_equal(kiln_fatbin_inspect(b.data, b.len, &l, &err), KILN_OK);
    summary_of(&l, s, sizeof s);
    assert_string_equal(s, "sm_90 compute_90");
    assert_string_equal(l.v[0].where, ".nv_fatbin");
    /* compute_90 PTX serves newer GPUs through the JIT. */
    assert_int_equal(kiln_fatbin_check_sm(&l, 100, how, sizeof how, &err), KILN_OK);
    assert_string_equal(how, "PTX compute_90 (JIT-compiled by the driver)");
    kiln_fatbin_list_free(&l);
    kiln_buf_free(&b);

    /* The H100 failure of the task: sm_80 cubin only, no PTX. */
    load("sm80_only.obj", &b);
    assert_int_equal(kiln_fatbin_inspect(b.data, b.len, &l, &err), KILN_OK);
    summary_of(&l, s, sizeof s);
    assert_string_equal(s, "sm_80");
    assert_int_equal(kiln_fatbin_check_sm(&l, 90, NULL, 0, &err), KILN_ENOTFOUND);
    assert_string_equal(err.msg, "no cubin or PTX usable on sm_90: found sm_80 (cubin)");
    kiln_fatbin_list_free(&l);
    kiln_buf_free(&b);

    load("sm90_rdc.obj", &b);
    assert_int_equal(kiln_fatbin_inspect(b.data, b.len, &l, &err), KILN_OK);
    assert_true(l.n >= 1);
    assert_string_equal(l.v[0].where, "__nv_relfatbin");
    assert_int_equal(l.v[0].sm, 90);
    kiln_fatbin_list_free(&l);
    kiln_buf_free(&b);
}

static void test_shared_objects(void **state)
{
    (void)state;
    struct kiln_buf b;
    struct kiln_fatbin_list l;
    struct kiln_error err;
    char s[256];
    load("libfp4_good.so", &b);
    assert_int_equal(kiln_fatbin_inspect(b.data, b.len, &l, &err), KILN_OK);
    summary_of(&l, s, sizeof s);
    assert_string_equal(s, "sm_90 sm_120f");
    assert_int_equal(kiln_fatbin_check_sm(&l, 121, NULL, 0, &err), KILN_OK);
    /* Seed 002: a kernel path that exists only for SM100 on an SM121 GPU. */
    assert_int_equal(kiln_fatbin_check_sm(&l, 100, NULL, 0, &err), KILN_ENOTFOUND);
    kiln_fatbin_list_free(&l);
    kiln_buf_free(&b);
}

static void test_bare_cubins(void **state)
{
    (void)state;
    struct kiln_buf b;
    struct kiln_fatbin_list l;
    struct kiln_error err;
    const struct {
        const char *file;
        unsigned sm;
        char suffix;
    } cases[] = {{"sm80.cubin", 80, 0}, {"sm90a.cubin", 90, 'a'}, {"sm120f.cubin", 120, 'f'}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        load(cases[i].file, &b);
        assert_int_equal(kiln_fatbin_inspect(b.data, b.len, &l, &err), KILN_OK);
        assert_int_equal(l.is_cubin, 1);
        assert_int_equal(l.n, 1);
        assert_int_equal(l.v[0].kind, KILN_FB_CUBIN);
        assert_int_equal(l.v[0].sm, cases[i].sm);
        assert_int_equal(l.v[0].suffix, cases[i].suffix);
        kiln_fatbin_list_free(&l);
        kiln_buf_free(&b);
    }
}

static struct kiln_fatbin_entry ent(int kind, unsigned sm, char suffix)
{
    struct kiln_fatbin_entry e;
    memset(&e, 0, sizeof e);
    e.kind = kind;
    e.sm = sm;
    e.suffix = suffix;
    return e;
}

static void test_compat_rules(void **state)
{
    (void)state;
    struct kiln_fatbin_entry e;
    e = ent(KILN_FB_CUBIN, 80, 0);
    assert_true(kiln_fatbin_runs_on(&e, 80));
    assert_true(kiln_fatbin_runs_on(&e, 86));
    assert_false(kiln_fatbin_runs_on(&e, 90)); /* cubins never cross majors */
    assert_false(kiln_fatbin_runs_on(&e, 75));
    e = ent(KILN_FB_CUBIN, 86, 0);
    assert_false(kiln_fatbin_runs_on(&e, 80));
    e = ent(KILN_FB_CUBIN, 90, 'a');
    assert_true(kiln_fatbin_runs_on(&e, 90));
    e = ent(KILN_FB_CUBIN, 100, 'a');
    assert_false(kiln_fatbin_runs_on(&e, 103)); /* arch-specific: that SM only */
    assert_false(kiln_fatbin_runs_on(&e, 121));
    e = ent(KILN_FB_CUBIN, 120, 'f');
    assert_true(kiln_fatbin_runs_on(&e, 121));
    assert_false(kiln_fatbin_runs_on(&e, 100));
    e = ent(KILN_FB_PTX, 80, 0);
    assert_true(kiln_fatbin_runs_on(&e, 90)); /* PTX JITs forward */
    assert_true(kiln_fatbin_runs_on(&e, 121));
    assert_false(kiln_fatbin_runs_on(&e, 75));
    e = ent(KILN_FB_PTX, 90, 'a');
    assert_true(kiln_fatbin_runs_on(&e, 90));
    assert_false(kiln_fatbin_runs_on(&e, 100)); /* 'a' PTX does not JIT forward */
    e = ent(KILN_FB_PTX, 100, 'f');
    assert_true(kiln_fatbin_runs_on(&e, 103));
    assert_false(kiln_fatbin_runs_on(&e, 120));
    e = ent(KILN_FB_LTOIR, 90, 0);
    assert_false(kiln_fatbin_runs_on(&e, 90));
}

static void test_parse_sm(void **state)
{
    (void)state;
    unsigned sm = 0;
    assert_int_equal(kiln_fatbin_parse_sm("90", &sm), KILN_OK);
    assert_int_equal(sm, 90);
    assert_int_equal(kiln_fatbin_parse_sm("sm_90a", &sm), KILN_OK);
    assert_int_equal(sm, 90);
    assert_int_equal(kiln_fatbin_parse_sm("compute_120f", &sm), KILN_OK);
    assert_int_equal(sm, 120);
    assert_int_equal(kiln_fatbin_parse_sm("12.1", &sm), KILN_OK);
    assert_int_equal(sm, 121);
    assert_int_equal(kiln_fatbin_parse_sm("9.0", &sm), KILN_OK);
    assert_int_equal(sm, 90);
    const char *bad[] = {"", "sm_", "x90", "90b", "9", "99999", "9.", "-90", "sm_90aa"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(kiln_fatbin_parse_sm(bad[i], &sm), KILN_EINVAL);
}

/* Every prefix of a real object must parse or fail cleanly (ASan watches). */
static void test_truncated_inputs(void **state)
{
    (void)state;
    const char *files[] = {"sm90_ptx.obj", "multi.fatbin", "sm90a.cubin"};
    for (size_t f = 0; f < 3; f++) {
        struct kiln_buf b;
        load(files[f], &b);
        size_t step = b.len > 4000 ? 7 : 1;
        for (size_t n = 0; n < b.len; n += step) {
            unsigned char *copy = malloc(n ? n : 1);
            assert_non_null(copy);
            memcpy(copy, b.data, n);
            struct kiln_fatbin_list l;
            struct kiln_error err;
            kiln_error_clear(&err);
            int rc = kiln_fatbin_inspect(copy, n, &l, &err);
            if (rc == KILN_OK)
                kiln_fatbin_list_free(&l);
            else
                assert_true(strlen(err.msg) > 0);
            free(copy);
        }
        kiln_buf_free(&b);
    }
}

/* Flip bytes of the fatbin headers: errors, never crashes. */
static void test_corrupted_headers(void **state)
{
    (void)state;
    struct kiln_buf b;
    load("multi.fatbin", &b);
    for (size_t pos = 0; pos < 200; pos++) {
        for (int v = 0; v < 3; v++) {
            unsigned char *copy = malloc(b.len);
            assert_non_null(copy);
            memcpy(copy, b.data, b.len);
            copy[pos] = v == 0 ? 0xff : v == 1 ? 0x00 : (unsigned char)(copy[pos] ^ 0x80);
            struct kiln_fatbin_list l;
            struct kiln_error err;
            if (kiln_fatbin_inspect(copy, b.len, &l, &err) == KILN_OK) kiln_fatbin_list_free(&l);
            free(copy);
        }
    }
    kiln_buf_free(&b);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void test_hostile_sizes(void **state)
{
    (void)state;
    unsigned char fb[16 + 64 + 16];
    memset(fb, 0, sizeof fb);
    put32(fb, KILN_FATBIN_MAGIC);
    fb[4] = 1;
    fb[6] = 16;
    put64(fb + 8, 80);
    unsigned char *e = fb + 16;
    e[0] = 2; /* cubin */
    put32(e + 4, 64);
    put64(e + 8, 16);
    put32(e + 28, 90);
    struct kiln_fatbin_list l;
    struct kiln_error err;
    memset(&l, 0, sizeof l); /* parse appends to a list */
    assert_int_equal(kiln_fatbin_parse(fb, sizeof fb, 0, "test", &l, &err), KILN_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].sm, 90);
    kiln_fatbin_list_free(&l);

    /* Payload size that would wrap around. */
    put64(e + 8, UINT64_MAX - 10);
    memset(&l, 0, sizeof l);
    assert_int_equal(kiln_fatbin_parse(fb, sizeof fb, 0, "test", &l, &err), KILN_EPARSE);
    assert_non_null(strstr(err.msg, "payload"));
    kiln_fatbin_list_free(&l);
    put64(e + 8, 16);

    /* Container size past the end. */
    put64(fb + 8, UINT64_MAX);
    memset(&l, 0, sizeof l);
    assert_int_equal(kiln_fatbin_parse(fb, sizeof fb, 0, "test", &l, &err), KILN_EPARSE);
    assert_non_null(strstr(err.msg, "truncated"));
    kiln_fatbin_list_free(&l);
    put64(fb + 8, 80);

    /* Entry header size 0 would loop forever if accepted. */
    put32(e + 4, 0);
    memset(&l, 0, sizeof l);
    assert_int_equal(kiln_fatbin_parse(fb, sizeof fb, 0, "test", &l, &err), KILN_EPARSE);
    kiln_fatbin_list_free(&l);

    /* Wrong magic. */
    put32(fb, 0x12345678);
    memset(&l, 0, sizeof l);
    assert_int_equal(kiln_fatbin_parse(fb, sizeof fb, 0, "test", &l, &err), KILN_EPARSE);
    assert_non_null(strstr(err.msg, "bad fatbin magic 0x12345678"));
    kiln_fatbin_list_free(&l);
}

static void test_elf_header_errors(void **state)
{
    (void)state;
    struct kiln_elf e;
    struct kiln_error err;
    unsigned char h[64];
    memset(h, 0, sizeof h);
    assert_int_equal(kiln_elf_open(&e, h, sizeof h, &err), KILN_EPARSE);
    memcpy(h,
           "\x7f"
           "ELF",
           4);
    assert_int_equal(kiln_elf_open(&e, h, 20, &err), KILN_EPARSE);
    assert_non_null(strstr(err.msg, "truncated"));
    h[4] = 1; /* 32-bit */
    h[5] = 1;
    assert_int_equal(kiln_elf_open(&e, h, sizeof h, &err), KILN_EUNSUPPORTED);
    h[4] = 2;
    h[5] = 2; /* big-endian */
    assert_int_equal(kiln_elf_open(&e, h, sizeof h, &err), KILN_EUNSUPPORTED);
    h[5] = 1;
    /* Section table far past the end. */
    put64(h + 40, 1u << 30);
    h[58] = 64;
    h[60] = 3;
    assert_int_equal(kiln_elf_open(&e, h, sizeof h, &err), KILN_EPARSE);
    assert_non_null(strstr(err.msg, "section table"));
    /* A host ELF without any fatbin is fine and empty. */
    memset(h + 40, 0, 24);
    struct kiln_fatbin_list l;
    assert_int_equal(kiln_fatbin_inspect(h, sizeof h, &l, &err), KILN_OK);
    assert_int_equal(l.n, 0);
    assert_int_equal(kiln_fatbin_check_sm(&l, 90, NULL, 0, &err), KILN_ENOTFOUND);
    assert_non_null(strstr(err.msg, "no CUDA device code"));
    kiln_fatbin_list_free(&l);
}

/* The input that crashed `kiln selftest inspect` (issue 19): a host ELF
 * whose section 15 is named .nv_fatbin but typed SHT_NULL, with an offset
 * far past the end. SHT_NULL skipped the bounds check. Now a sentence. */
static void test_crash_input_null_section(void **state)
{
    (void)state;
    const char *src = getenv("KILN_SRC");
    char path[4096];
    snprintf(path, sizeof path, "%s%stests/fuzz/corpus/fatbin/oob-read-1-null-section.bin",
             src ? src : "", src ? "/" : "");
    struct kiln_buf b = {0};
    assert_int_equal(kiln_read_file(path, 1u << 20, &b), KILN_OK);
    assert_int_equal(b.len, 43840);
    /* A private copy of exactly b.len bytes, so ASan sees any read past it. */
    unsigned char *copy = malloc(b.len);
    assert_non_null(copy);
    memcpy(copy, b.data, b.len);
    struct kiln_fatbin_list l;
    struct kiln_error err;
    assert_int_equal(kiln_fatbin_inspect(copy, b.len, &l, &err), KILN_EPARSE);
    assert_non_null(strstr(err.msg, "ELF section 15 (.nv_fatbin)"));
    assert_non_null(strstr(err.msg, "runs past the end of the file (43840 bytes)"));
    assert_null(l.v);
    free(copy);
    kiln_buf_free(&b);

    /* The same through the front the CLI and the worker use: a failed file
     * with that sentence, not a crash. */
    const char *paths[] = {path};
    struct kiln_inspect_opts o = {0, NULL, 0};
    json_t *doc = NULL;
    assert_int_equal(kiln_selftest_inspect(paths, 1, &o, &doc, &err), KILN_OK);
    assert_false(json_is_true(json_object_get(doc, "ok")));
    json_t *f0 = json_array_get(json_object_get(doc, "files"), 0);
    const char *why = json_string_value(json_object_get(f0, "error"));
    assert_non_null(why);
    assert_non_null(strstr(why, ".nv_fatbin"));
    json_decref(doc);
}

/* A small host ELF: header, .shstrtab at 256, section table at 512, and
 * section 2 as the caller sets it (section 3 is a string table). */
enum { ELF_LEN = 1024, SHOFF = 512 }; /* .shstrtab 256..312, .strtab 350, .symtab 400 */
static const char shstr[] = "\0.shstrtab\0.nv_fatbin\0.strtab\0.symtab\0.nvFatBinSegment";

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void elf_section(unsigned char *elf, unsigned idx, uint32_t name, uint32_t type,
                        uint64_t off, uint64_t size, uint32_t link, uint64_t entsize)
{
    unsigned char *h = elf + SHOFF + 64 * idx;
    memset(h, 0, 64);
    put32(h, name);
    put32(h + 4, type);
    put64(h + 24, off);
    put64(h + 32, size);
    put32(h + 40, link);
    put64(h + 56, entsize);
}

static void elf_build(unsigned char *elf)
{
    memset(elf, 0, ELF_LEN);
    memcpy(elf,
           "\x7f"
           "ELF",
           4);
    elf[4] = 2;
    elf[5] = 1;
    put16(elf + 16, 3);  /* ET_DYN */
    put16(elf + 18, 62); /* x86-64 */
    put64(elf + 40, SHOFF);
    put16(elf + 58, 64);
    put16(elf + 60, 4);
    put16(elf + 62, 1);
    memcpy(elf + 256, shstr, sizeof shstr);
    elf_section(elf, 1, 1, 3, 256, sizeof shstr, 0, 0);
    elf_section(elf, 3, 22, 3, 350, 8, 0, 0); /* .strtab: "\0vadd\0\0\0" */
    memcpy(elf + 351, "vadd", 4);
}

/* Each offset, size and count a file names is checked, for every section
 * type (SHT_NULL included) and without overflow of offset + size. */
static void test_hostile_elf_tables(void **state)
{
    (void)state;
    unsigned char *elf = malloc(ELF_LEN);
    assert_non_null(elf);
    struct kiln_fatbin_list l;
    struct kiln_error err;
    struct kiln_elf e;
    struct {
        uint32_t type;
        uint64_t off, size;
    } bad[] = {
        {0, 1ull << 62, 16},     /* SHT_NULL far away: the crash of issue 19 */
        {1, UINT64_MAX - 8, 16}, /* offset + size wraps to a small number */
        {1, 1000, 100},          /* straddles the end */
        {1, 16, UINT64_MAX},     /* size alone past the end */
        {7, ELF_LEN + 1, 0},     /* empty, but starts past the end */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        elf_build(elf);
        elf_section(elf, 2, 11, bad[i].type, bad[i].off, bad[i].size, 0, 0);
        assert_int_equal(kiln_fatbin_inspect(elf, ELF_LEN, &l, &err), KILN_EPARSE);
        assert_non_null(strstr(err.msg, "ELF section 2 (.nv_fatbin)"));
        assert_non_null(strstr(err.msg, "runs past the end of the file"));
    }
    /* SHT_NOBITS holds no file bytes: any offset is fine, and it is skipped. */
    elf_build(elf);
    elf_section(elf, 2, 11, 8, UINT64_MAX, UINT64_MAX, 0, 0);
    assert_int_equal(kiln_fatbin_inspect(elf, ELF_LEN, &l, &err), KILN_OK);
    assert_int_equal(l.n, 0);
    kiln_fatbin_list_free(&l);

    /* A section name offset past .shstrtab leaves the section unnamed. */
    elf_build(elf);
    elf_section(elf, 2, 5000, 1, 0, 16, 0, 0);
    assert_int_equal(kiln_elf_open(&e, elf, ELF_LEN, &err), KILN_OK);
    struct kiln_elf_section s;
    assert_int_equal(kiln_elf_section(&e, 2, &s, &err), KILN_OK);
    assert_string_equal(s.name, "");

    /* Symbol tables: a good one, then a name past the strings, a table
     * past the end, and a link to a string table past the end. */
    elf_build(elf);
    elf_section(elf, 2, 30, 2, 400, 48, 3, 24); /* .symtab, 2 entries */
    put32(elf + 400 + 24, 1);                   /* symbol 1: "vadd" */
    put16(elf + 400 + 24 + 6, 5);               /* defined */
    assert_int_equal(kiln_elf_open(&e, elf, ELF_LEN, &err), KILN_OK);
    char *pats[] = {"vadd"};
    int found[1] = {0};
    int rc = kiln_elfsym_expect(&e, pats, 1, found, NULL, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, KILN_OK);
    assert_int_equal(found[0], 1);
    put32(elf + 400 + 24, 8);
    assert_int_equal(kiln_elfsym_expect(&e, pats, 1, (int[]){0}, NULL, &err), KILN_EPARSE);
    assert_non_null(strstr(err.msg, "outside its string table"));
    elf_section(elf, 2, 30, 2, UINT64_MAX - 23, 48, 3, 24);
    assert_int_equal(kiln_elfsym_expect(&e, pats, 1, (int[]){0}, NULL, &err), KILN_EPARSE);
    assert_non_null(strstr(err.msg, "runs past the end"));
    elf_section(elf, 2, 30, 2, 400, 48, 3, 24);
    elf_section(elf, 3, 22, 3, 350, UINT64_MAX - 349, 0, 0);
    assert_int_equal(kiln_elfsym_expect(&e, pats, 1, (int[]){0}, NULL, &err), KILN_EPARSE);
    assert_non_null(strstr(err.msg, "runs past the end"));

    /* Program headers: a PT_LOAD whose offset + delta would wrap. */
    elf_build(elf);
    put64(elf + 32, 64); /* phoff */
    put16(elf + 54, 56);
    put16(elf + 56, 1);
    unsigned char *ph = elf + 64;
    put32(ph, 1);
    put64(ph + 8, UINT64_MAX - 4); /* p_offset */
    put64(ph + 16, 0x1000);        /* p_vaddr */
    put64(ph + 32, 0x100);         /* p_filesz */
    assert_int_equal(kiln_elf_open(&e, elf, ELF_LEN, &err), KILN_OK);
    uint64_t off = 0;
    assert_int_equal(kiln_elf_vaddr_to_offset(&e, 0x1010, 16, &off), KILN_EPARSE);
    free(elf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multi_arch_fatbin),
        cmocka_unit_test(test_object_files),
        cmocka_unit_test(test_shared_objects),
        cmocka_unit_test(test_bare_cubins),
        cmocka_unit_test(test_compat_rules),
        cmocka_unit_test(test_parse_sm),
        cmocka_unit_test(test_truncated_inputs),
        cmocka_unit_test(test_corrupted_headers),
        cmocka_unit_test(test_hostile_sizes),
        cmocka_unit_test(test_elf_header_errors),
        cmocka_unit_test(test_crash_input_null_section),
        cmocka_unit_test(test_hostile_elf_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
