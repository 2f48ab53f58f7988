/* Unit tests for kernels-selftest/elfsym and the inspect front
 * (kiln_selftest_inspect): symbol matching, seed 003's missing fp4 ops. */
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

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void test_match_rules(void **state)
{
    (void)state;
    assert_true(kiln_elfsym_match("vadd", "vadd"));
    assert_false(kiln_elfsym_match("vadd", "vadd2"));
    assert_false(kiln_elfsym_match("vadd", "my_vadd"));
    /* C++ names: one source-name component of the mangling. */
    assert_true(kiln_elfsym_match("scaled_fp4_quant", "_Z16scaled_fp4_quantRN2at6TensorES1_S1_"));
    assert_true(kiln_elfsym_match("scaled_fp4_quant", "_ZN4vllm16scaled_fp4_quantEv"));
    assert_false(kiln_elfsym_match("scaled_fp4_quant", "_Z20scaled_fp4_quant_oldv"));
    assert_false(kiln_elfsym_match("fp4_quant", "_Z16scaled_fp4_quantv"));
    assert_false(kiln_elfsym_match("scaled_fp4_quant", "scaled_fp4_quant_v2"));
    /* A digit run belongs to one length: "116x" is not "16x". */
    assert_false(kiln_elfsym_match("6Tensor", "_ZN2at6TensorE"));
    /* Prefix patterns. */
    assert_true(kiln_elfsym_match("cutlass_scaled_fp4*", "_Z25cutlass_scaled_fp4_mm_sm120v"));
    assert_true(kiln_elfsym_match("cutlass_*", "cutlass_scaled_fp4_mm"));
    assert_false(kiln_elfsym_match("cutlass_scaled_fp4*", "_Z21cutlass_scaled_fp8_mmv"));
    assert_false(kiln_elfsym_match("*", "anything"));
    /* Truncated or weird manglings never read past the end. */
    assert_false(kiln_elfsym_match("abc", "_Z99ab"));
    assert_false(kiln_elfsym_match("abc", "_Z"));
}

static void test_split(void **state)
{
    (void)state;
    char **v;
    size_t n;
    struct kiln_error err;
    assert_int_equal(kiln_elfsym_split("a, b ,c", &v, &n, &err), KILN_OK);
    assert_int_equal(n, 3);
    assert_string_equal(v[0], "a");
    assert_string_equal(v[1], "b");
    assert_string_equal(v[2], "c");
    kiln_elfsym_split_free(v, n);
    assert_int_equal(kiln_elfsym_split("a,,b", &v, &n, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "empty name"));
    assert_int_equal(kiln_elfsym_split("", &v, &n, &err), KILN_EINVAL);
    assert_int_equal(kiln_elfsym_split("a,", &v, &n, &err), KILN_EINVAL);
}

static int count_cb(void *ctx, const struct kiln_elfsym *s)
{
    int *c = ctx;
    if (strcmp(s->name, "cutlass_scaled_fp4_mm") == 0) {
        assert_true(s->defined);
        assert_int_equal(s->type, 2); /* STT_FUNC */
    }
    (*c)++;
    return 0;
}

static void test_object_symbols(void **state)
{
    (void)state;
    struct kiln_buf b = {0};
    assert_int_equal(fixture_load("sm90_ptx.obj", &b), KILN_OK);
    struct kiln_elf e;
    struct kiln_error err;
    assert_int_equal(kiln_elf_open(&e, b.data, b.len, &err), KILN_OK);
    int count = 0;
    assert_int_equal(kiln_elfsym_foreach(&e, count_cb, &count, &err), KILN_OK);
    assert_true(count > 5);
    char *pats[] = {"cutlass_scaled_fp4_mm", "__cudaRegisterLinkedBinary*", "nope"};
    int found[3] = {0};
    char *match[3] = {0};
    assert_int_equal(kiln_elfsym_expect(&e, pats, 3, found, match, &err), KILN_OK);
    assert_int_equal(found[0], 1);
    assert_string_equal(match[0], "cutlass_scaled_fp4_mm");
    /* Referenced (undefined) in the object: does not count. */
    assert_int_equal(found[1], 0);
    assert_int_equal(found[2], 0);
    free(match[0]);
    kiln_buf_free(&b);
}

static json_t *inspect(const char *file, unsigned sm, const char *syms)
{
    char path[4096];
    fixture_path(file, path, sizeof path);
    const char *paths[] = {path};
    char **v = NULL;
    size_t n = 0;
    struct kiln_error err;
    if (syms) assert_int_equal(kiln_elfsym_split(syms, &v, &n, &err), KILN_OK);
    struct kiln_inspect_opts o = {sm, v, n};
    json_t *doc = NULL;
    assert_int_equal(kiln_selftest_inspect(paths, 1, &o, &doc, &err), KILN_OK);
    kiln_elfsym_split_free(v, n);
    assert_non_null(doc);
    return doc;
}

/* Seed 003: vllm._C without the fp4 functions must fail, naming them. */
static void test_seed003_missing_fp4(void **state)
{
    (void)state;
    json_t *doc = inspect("libfp4_missing.so", 90, "cutlass_scaled_fp4_mm,scaled_fp4_quant");
    assert_false(json_is_true(json_object_get(doc, "ok")));
    json_t *missing = json_object_get(json_object_get(doc, "symbols"), "missing");
    assert_int_equal(json_array_size(missing), 2);
    const char *r = json_string_value(json_array_get(json_object_get(doc, "reasons"), 0));
    assert_non_null(r);
    assert_non_null(strstr(r, "cutlass_scaled_fp4_mm, scaled_fp4_quant"));
    json_decref(doc);

    doc = inspect("libfp4_good.so", 121, "cutlass_scaled_fp4_mm,scaled_fp4_quant");
    assert_true(json_is_true(json_object_get(doc, "ok")));
    json_t *found = json_object_get(json_object_get(doc, "symbols"), "found");
    assert_string_equal(json_string_value(json_object_get(found, "scaled_fp4_quant")),
                        "_Z16scaled_fp4_quantRN2at6TensorES1_S1_");
    json_decref(doc);
}

/* Kernel names live in the cubins inside the fatbin: found there too. */
static void test_kernel_symbols_in_cubins(void **state)
{
    (void)state;
    json_t *doc = inspect("libfp4_good.so", 0, "scaled_fp4_quant_kernel");
    assert_true(json_is_true(json_object_get(doc, "ok")));
    json_decref(doc);
}

/* Seed 002: a library built only for sm_100a fails on sm_121 and says what
 * it found. */
static void test_wrong_arch_report(void **state)
{
    (void)state;
    json_t *doc = inspect("multi.fatbin", 75, NULL);
    assert_false(json_is_true(json_object_get(doc, "ok")));
    json_t *f = json_array_get(json_object_get(doc, "files"), 0);
    json_t *x = json_object_get(f, "expect_sm");
    assert_false(json_is_true(json_object_get(x, "ok")));
    assert_non_null(strstr(json_string_value(json_object_get(x, "reason")), "sm_100a (cubin"));
    assert_int_equal(json_array_size(json_object_get(f, "cubins")), 4);
    assert_int_equal(json_array_size(json_object_get(f, "ptx")), 3);
    json_decref(doc);
}

static void test_unreadable_files(void **state)
{
    (void)state;
    const char *paths[] = {"/nonexistent/kiln/file.so", "/proc/self/status"};
    struct kiln_inspect_opts o = {90, NULL, 0};
    json_t *doc = NULL;
    struct kiln_error err;
    assert_int_equal(kiln_selftest_inspect(paths, 2, &o, &doc, &err), KILN_OK);
    assert_false(json_is_true(json_object_get(doc, "ok")));
    json_t *f0 = json_array_get(json_object_get(doc, "files"), 0);
    assert_non_null(strstr(json_string_value(json_object_get(f0, "error")), "cannot open"));
    json_decref(doc);
    assert_int_equal(kiln_selftest_inspect(paths, 0, &o, &doc, &err), KILN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_rules),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_object_symbols),
        cmocka_unit_test(test_seed003_missing_fp4),
        cmocka_unit_test(test_kernel_symbols_in_cubins),
        cmocka_unit_test(test_wrong_arch_report),
        cmocka_unit_test(test_unreadable_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
