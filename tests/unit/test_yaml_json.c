/* Unit tests for common/yaml_json: types, errors with positions, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/yaml_json.h"

#include <string.h>
#include <time.h>

static json_t *parse_ok(const char *text)
{
    json_t *j = NULL;
    struct kiln_error e = {0};
    int rc = kiln_yaml_to_json("t.yaml", text, strlen(text), &j, &e);
    if (rc) fail_msg("unexpected error: %s", e.msg);
    return j;
}

static void test_types(void **state)
{
    (void)state;
    json_t *j = parse_ok("a: 1\nb: 2.5\nc: true\nd: ~\ne: \"7\"\nf: [x, 'y']\ng: {h: i}\n");
    assert_int_equal(json_integer_value(json_object_get(j, "a")), 1);
    assert_true(json_is_real(json_object_get(j, "b")));
    assert_true(json_is_true(json_object_get(j, "c")));
    assert_true(json_is_null(json_object_get(j, "d")));
    assert_string_equal(json_string_value(json_object_get(j, "e")), "7");
    assert_int_equal(json_array_size(json_object_get(j, "f")), 2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "g"), "h")), "i");
    json_decref(j);
}

static void test_syntax_error_has_position(void **state)
{
    (void)state;
    json_t *j = NULL;
    struct kiln_error e = {0};
    const char *bad = "a: 1\nb: [1, 2\nc: 3\n";
    assert_int_equal(kiln_yaml_to_json("f.yaml", bad, strlen(bad), &j, &e), KILN_EPARSE);
    assert_non_null(strstr(e.msg, "f.yaml:"));
    assert_non_null(strstr(e.msg, "YAML syntax error"));
}

static void test_duplicate_key(void **state)
{
    (void)state;
    json_t *j = NULL;
    struct kiln_error e = {0};
    const char *bad = "a: 1\na: 2\n";
    assert_int_equal(kiln_yaml_to_json("f.yaml", bad, strlen(bad), &j, &e), KILN_EPARSE);
    assert_non_null(strstr(e.msg, "f.yaml:2:1: duplicate key 'a'"));
}

static void test_alias_bomb_refused_fast(void **state)
{
    (void)state;
    struct kiln_buf b = {0};
    kiln_buf_puts(&b, "a: &a [x, x, x, x, x, x, x, x, x]\n");
    for (char c = 'b'; c <= 'j'; c++)
        kiln_buf_printf(&b, "%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n", c, c, c - 1,
                        c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
    clock_t t0 = clock();
    json_t *j = NULL;
    struct kiln_error e = {0};
    assert_int_equal(kiln_yaml_to_json("bomb.yaml", b.data, b.len, &j, &e), KILN_ELIMIT);
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 1.0);
    assert_non_null(strstr(e.msg, "alias bomb"));
    kiln_buf_free(&b);
}

/* The root itself crosses the node limit (its children stay below it):
 * refused once, freed once (a fuzz finding: the root was freed twice). */
static void test_root_over_node_limit(void **state)
{
    (void)state;
    struct kiln_buf b = {0};
    kiln_buf_puts(&b, "[&a [x, x, x, x, x, x, x, x, x]");
    for (char c = 'b'; c <= 'e'; c++)
        kiln_buf_printf(&b, ", &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]", c, c - 1, c - 1,
                        c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
    for (int i = 0; i < 12; i++)
        kiln_buf_puts(&b, ", *e");
    kiln_buf_puts(&b, "]\n");
    json_t *j = NULL;
    struct kiln_error e = {0};
    assert_int_equal(kiln_yaml_to_json("root.yaml", b.data, b.len, &j, &e), KILN_ELIMIT);
    assert_null(j);
    assert_non_null(strstr(e.msg, "root.yaml:1:1: document expands to more than"));
    kiln_buf_free(&b);
}

static void test_deep_nesting_refused(void **state)
{
    (void)state;
    struct kiln_buf b = {0};
    for (int i = 0; i < 10000; i++)
        kiln_buf_puts(&b, "[");
    json_t *j = NULL;
    struct kiln_error e = {0};
    assert_int_equal(kiln_yaml_to_json("deep.yaml", b.data, b.len, &j, &e), KILN_ELIMIT);
    assert_non_null(strstr(e.msg, "nesting"));
    kiln_buf_free(&b);
}

static void test_missing_file(void **state)
{
    (void)state;
    json_t *j = NULL;
    struct kiln_error e = {0};
    assert_int_equal(kiln_yaml_to_json("/nonexistent.yaml", NULL, 0, &j, &e), KILN_ENOTFOUND);
    assert_non_null(strstr(e.msg, "/nonexistent.yaml"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_syntax_error_has_position),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_alias_bomb_refused_fast),
        cmocka_unit_test(test_root_over_node_limit),
        cmocka_unit_test(test_deep_nesting_refused),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
