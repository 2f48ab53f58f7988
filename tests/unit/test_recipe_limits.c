/* Unit tests for hostile recipes (acceptance 3): alias bombs, deep nesting,
 * a 100 MB file, a matrix of over a million variants, and over-long
 * renders all end in a clear error within 1 s and under 100 MB of memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "recipes/recipe.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Expand text; expect failure with code and a message containing want,
 * within 1 s and with peak RSS growing by less than 100 MB. */
static void expect_refused(const char *text, size_t len, int code, const char *want)
{
    long rss0 = maxrss_kb();
    double t0 = now();
    json_t *v = NULL;
    struct kiln_error err = {0};
    int rc = kiln_recipe_expand_text("hostile.yaml", text, len, NULL, NULL, &v, &err);
    double dt = now() - t0;
    long grew = maxrss_kb() - rss0;
    fprintf(stderr, "  %.3f s, +%ld KiB: %s\n", dt, grew, err.msg);
    assert_int_equal(rc, code);
    assert_null(v);
    assert_non_null(strstr(err.msg, want));
    assert_int_equal(strncmp(err.msg, "hostile.yaml:", 13), 0);
    assert_true(dt < 1.0);
    assert_true(grew < 100 * 1024);
    /* check reports the same problem the same way */
    json_t *probs = NULL;
    rc = kiln_recipe_check_text("hostile.yaml", text, len, &probs, &err);
    assert_int_not_equal(rc, 0);
    assert_true(json_array_size(probs) >= 1);
    json_decref(probs);
}

static void test_billion_laughs(void **state)
{
    (void)state;
    struct kiln_buf b = {0};
    assert_int_equal(kiln_buf_puts(&b, "recipe: lol\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, "
                                       "lol, lol]\n"),
                     0);
    for (int i = 1; i < 10; i++) {
        assert_int_equal(kiln_buf_printf(&b, "l%d: &l%d [", i, i), 0);
        for (int j = 0; j < 9; j++)
            assert_int_equal(kiln_buf_printf(&b, "%s*l%d", j ? ", " : "", i - 1), 0);
        assert_int_equal(kiln_buf_puts(&b, "]\n"), 0);
    }
    expect_refused(b.data, b.len, KILN_ELIMIT, "alias-expansion bomb");
    kiln_buf_free(&b);
}

static void test_alias_fanout_in_sequence(void **state)
{
    (void)state;
    /* one 1000-node anchor referenced 1000 times = a million nodes */
    struct kiln_buf b = {0};
    assert_int_equal(kiln_buf_puts(&b, "recipe: x\nbig: &b ["), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(kiln_buf_puts(&b, i ? ",1" : "1"), 0);
    assert_int_equal(kiln_buf_puts(&b, "]\nuse: ["), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(kiln_buf_puts(&b, i ? ",*b" : "*b"), 0);
    assert_int_equal(kiln_buf_puts(&b, "]\n"), 0);
    expect_refused(b.data, b.len, KILN_ELIMIT, "YAML nodes");
    kiln_buf_free(&b);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 1000000;
    char *t = malloc(2 * depth + 16);
    assert_non_null(t);
    memcpy(t, "x: ", 3);
    memset(t + 3, '[', depth);
    memset(t + 3 + depth, ']', depth);
    expect_refused(t, 3 + 2 * depth, KILN_ELIMIT, "nesting is deeper than 64 levels");
    /* block-style nesting too */
    struct kiln_buf b = {0};
    for (int i = 0; i < 200; i++)
        assert_int_equal(kiln_buf_printf(&b, "%*sk:\n", i, ""), 0);
    expect_refused(b.data, b.len, KILN_ELIMIT, "nesting is deeper than 64 levels");
    kiln_buf_free(&b);
    free(t);
}

static void test_100mb_file_refused_unread(void **state)
{
    (void)state;
    char path[] = "/tmp/kiln-recipe-big.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    /* a real 100 MB file (sparse: the size is what matters) */
    assert_int_equal(ftruncate(fd, 100l * 1024 * 1024), 0);
    assert_int_equal(pwrite(fd, "recipe: big\n", 12, 0), 12);
    close(fd);
    long rss0 = maxrss_kb();
    double t0 = now();
    json_t *v = NULL;
    struct kiln_error err = {0};
    int rc = kiln_recipe_expand_file(path, NULL, NULL, &v, &err);
    double dt = now() - t0;
    fprintf(stderr, "  %.3f s, +%ld KiB: %s\n", dt, maxrss_kb() - rss0, err.msg);
    assert_int_equal(rc, KILN_ELIMIT);
    assert_non_null(strstr(err.msg, "larger than the recipe limit"));
    assert_true(dt < 1.0);
    assert_true(maxrss_kb() - rss0 < 10 * 1024);
    json_t *probs = NULL;
    assert_int_equal(kiln_recipe_check_file(path, &probs, &err), KILN_ELIMIT);
    assert_int_equal(json_array_size(probs), 1);
    json_decref(probs);
    unlink(path);
    /* text over the limit is refused before parsing as well */
    size_t n = KILN_RECIPE_MAX_BYTES + 1;
    char *t = malloc(n);
    assert_non_null(t);
    memset(t, '#', n);
    expect_refused(t, n, KILN_ELIMIT, "limited to");
    free(t);
}

static void test_million_variant_matrix(void **state)
{
    (void)state;
    /* 101 x 100 x 100 = 1,010,000 combinations */
    struct kiln_buf b = {0};
    assert_int_equal(kiln_buf_puts(&b, "recipe: huge\naxes:\n"), 0);
    const char *axes[] = {"a", "b", "c"};
    int sizes[] = {101, 100, 100};
    for (int a = 0; a < 3; a++) {
        assert_int_equal(kiln_buf_printf(&b, "  %s: [", axes[a]), 0);
        for (int i = 0; i < sizes[a]; i++)
            assert_int_equal(kiln_buf_printf(&b, "%s%d", i ? ", " : "", i), 0);
        assert_int_equal(kiln_buf_puts(&b, "]\n"), 0);
    }
    assert_int_equal(kiln_buf_puts(&b, "templates: {name: 'v-{a}-{b}-{c}'}\n"), 0);
    expect_refused(b.data, b.len, KILN_ELIMIT,
                   "the matrix has more than 1000000 combinations (101 x 100 x 100)");
    kiln_buf_free(&b);
}

static void test_too_many_variants_refused_before_building(void **state)
{
    (void)state;
    /* 400 x 400 = 160,000 combinations: under the matrix limit, over the
     * variant limit; refused by counting, before any JSON is built */
    struct kiln_buf b = {0};
    assert_int_equal(kiln_buf_puts(&b, "recipe: big\naxes:\n"), 0);
    for (int a = 0; a < 2; a++) {
        assert_int_equal(kiln_buf_printf(&b, "  %c: [", 'a' + a), 0);
        for (int i = 0; i < 400; i++)
            assert_int_equal(kiln_buf_printf(&b, "%s%d", i ? ", " : "", i), 0);
        assert_int_equal(kiln_buf_puts(&b, "]\n"), 0);
    }
    assert_int_equal(kiln_buf_puts(&b, "exclude: [{a: 0}]\ntemplates: {name: 'v-{a}-{b}'}\n"), 0);
    expect_refused(b.data, b.len, KILN_ELIMIT,
                   "the recipe produces 159600 variants; kiln refuses more than 10000");
    kiln_buf_free(&b);
}

static void test_render_too_long(void **state)
{
    (void)state;
    /* a 4000-char attribute pasted 40 times is past the 64 KiB render limit */
    struct kiln_buf b = {0};
    assert_int_equal(kiln_buf_puts(&b, "recipe: long\naxes: {sm: [1]}\nattrs: {x: '"), 0);
    for (int i = 0; i < 4000; i++)
        assert_int_equal(kiln_buf_puts(&b, "x"), 0);
    assert_int_equal(kiln_buf_puts(&b, "'}\ntemplates: {name: 'n{sm}', command: '"), 0);
    for (int i = 0; i < 40; i++)
        assert_int_equal(kiln_buf_puts(&b, "{x}"), 0);
    assert_int_equal(kiln_buf_puts(&b, "'}\n"), 0);
    expect_refused(b.data, b.len, KILN_ELIMIT, "renders to more than 65536 bytes");
    kiln_buf_free(&b);
}

static void test_garbage_bytes(void **state)
{
    (void)state;
    const char bin[] = "\x00\xff\xfe\x01recipe: \x80\x81";
    json_t *v = NULL;
    struct kiln_error err = {0};
    int rc = kiln_recipe_expand_text("bin.yaml", bin, sizeof(bin) - 1, NULL, NULL, &v, &err);
    assert_int_not_equal(rc, 0);
    assert_null(v);
    assert_int_equal(strncmp(err.msg, "bin.yaml:", 9), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_billion_laughs),
        cmocka_unit_test(test_alias_fanout_in_sequence),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_100mb_file_refused_unread),
        cmocka_unit_test(test_million_variant_matrix),
        cmocka_unit_test(test_too_many_variants_refused_before_building),
        cmocka_unit_test(test_render_too_long),
        cmocka_unit_test(test_garbage_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
