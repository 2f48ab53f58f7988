/* Unit tests for `kiln recipe check` (acceptance 2): every kind of problem
 * is reported with file:line:col and a plain sentence; one test each, on the
 * fixtures in tests/fixtures/recipes/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "recipes/recipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Check fixture rel; expect a problem at line:col whose text contains
 * want; return the number of problems. */
static size_t expect_problem(const char *rel, int line, int col, const char *want)
{
    const char *root = getenv("KILN_SRC");
    char p[4096];
    snprintf(p, sizeof(p), "%s/tests/fixtures/recipes/%s", root && *root ? root : ".", rel);
    json_t *probs = NULL;
    struct kiln_error err = {0};
    int rc = kiln_recipe_check_file(p, &probs, &err);
    assert_int_not_equal(rc, 0);
    assert_non_null(probs);
    assert_true(json_array_size(probs) >= 1);
    /* err carries the first problem as one "file:line:col: error: ..." line */
    assert_non_null(strstr(err.msg, ": error: "));
    assert_int_equal(strncmp(err.msg, p, strlen(p)), 0);
    size_t i;
    json_t *v;
    int found = 0;
    json_array_foreach(probs, i, v)
    {
        const char *text = json_string_value(json_object_get(v, "text"));
        fprintf(stderr, "  %s\n", text);
        char prefix[4200];
        snprintf(prefix, sizeof(prefix), "%s:%d:%d: error: ", p, line, col);
        if (json_integer_value(json_object_get(v, "line")) == line &&
            json_integer_value(json_object_get(v, "col")) == col && strstr(text, want) &&
            strncmp(text, prefix, strlen(prefix)) == 0)
            found = 1;
    }
    if (!found) fprintf(stderr, "wanted %d:%d: ...%s...\n", line, col, want);
    assert_true(found);
    size_t n = json_array_size(probs);
    json_decref(probs);
    return n;
}

static void test_yaml_syntax_error(void **state)
{
    (void)state;
    assert_int_equal(expect_problem("bad-syntax.yaml", 4, 10,
                                    "YAML syntax error: did not find expected ',' or ']'"),
                     1);
}

static void test_unknown_key_did_you_mean(void **state)
{
    (void)state;
    assert_int_equal(expect_problem("bad-unknown-key.yaml", 4, 1,
                                    "unknown key 'templtes' in the recipe; did you mean "
                                    "'templates'?"),
                     1);
}

static void test_wrong_type(void **state)
{
    (void)state;
    expect_problem("bad-type.yaml", 7, 10, "'resources.cores' must be a whole number, not 'many'");
}

static void test_undefined_template_variable(void **state)
{
    (void)state;
    /* the column is that of "{iza}" inside the quoted template */
    expect_problem("bad-undefined-var.yaml", 6, 22,
                   "templates.name uses {iza}, which is not an axis or attribute of this "
                   "recipe; did you mean {isa}?");
}

static void test_duplicate_variant_names(void **state)
{
    (void)state;
    expect_problem("bad-duplicate-names.yaml", 7, 9,
                   "two variants are named 'demo-sm75' (sm=75 isa=avx2 and sm=75 isa=avx512)");
}

static void test_dependency_matches_nothing(void **state)
{
    (void)state;
    expect_problem("bad-dep-nothing.yaml", 7, 5,
                   "dependency 'base-sm75' of variant demo-sm75 matches no variant of this "
                   "recipe");
}

static void test_dependency_cycle(void **state)
{
    (void)state;
    expect_problem("bad-dep-cycle.yaml", 12, 5, "dependency cycle: demo-a -> demo-b -> demo-a");
}

static void test_rule_on_unknown_axis(void **state)
{
    (void)state;
    assert_int_equal(expect_problem("bad-rule-axis.yaml", 5, 12,
                                    "rule 'when' names 'smm', which is not an axis or attribute "
                                    "of this recipe; did you mean 'sm'?"),
                     1);
}

static void test_all_problems_listed(void **state)
{
    (void)state;
    assert_int_equal(expect_problem("bad-many.yaml", 13, 3,
                                    "unknown key 'comand' in templates; did you mean 'command'?"),
                     4);
    expect_problem("bad-many.yaml", 7, 12, "names 'ism'");
    expect_problem("bad-many.yaml", 10, 10, "must be a whole number (or a {variable}), not a list");
    expect_problem("bad-many.yaml", 12, 22, "uses {isaa}");
}

static void test_good_recipes_check_clean(void **state)
{
    (void)state;
    const char *root = getenv("KILN_SRC");
    const char *files[] = {"recipes/vllm.yaml", "recipes/pytorch.yaml", "recipes/demo.yaml"};
    for (size_t i = 0; i < 3; i++) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", root && *root ? root : ".", files[i]);
        json_t *probs = NULL;
        struct kiln_error err = {0};
        int rc = kiln_recipe_check_file(p, &probs, &err);
        if (rc) fprintf(stderr, "%s\n", err.msg);
        assert_int_equal(rc, 0);
        assert_int_equal(json_array_size(probs), 0);
        json_decref(probs);
    }
}

static void test_check_text_and_more_kinds(void **state)
{
    (void)state;
    struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"recipe: r\naxes: [a, b]\ntemplates: {name: x}\n", "'axes' must be a mapping"},
        {"recipe: r\naxes: {sm: [1, 1]}\ntemplates: {name: 'x{sm}'}\n",
         "axis 'sm' lists value '1' twice"},
        {"recipe: r\naxes: {sm: [1]}\ntemplates: {name: 'x{sm'}\n", "starts no {variable}"},
        {"recipe: r\naxes: {sm: [1]}\nrules: [{when: {sm: {lesser: 3}}}]\ntemplates: {name: "
         "'x{sm}'}\n",
         "unknown condition operator 'lesser'"},
        {"recipe: r\naxes: {sm: [1]}\ntemplates: {name: 'a b {sm}'}\n", "must be letters, digits"},
        {"recipe: r\naxes: {sm: [1]}\ntemplates: {name: 'x{sm}'}\ndepends: [{name: 'y', "
         "recipe: nothere}]\n",
         "dependency on recipe 'nothere' cannot be resolved"},
        {"recipe: r\naxes: {sm: [1]}\ntemplates: {name: 'x{sm}'}\nselftest: {checks: "
         "[{command: c, timeout_s: soon}]}\n",
         "timeout_s must be a whole number"},
        {"recipe: r\ndefault_branch: dev\nbranches: {main: {}}\naxes: {sm: [1]}\ntemplates: "
         "{name: 'x{sm}'}\n",
         "default_branch 'dev' is not one of the branches"},
        {"- a\n- b\n", "'the recipe file' must be a mapping"},
        {"", "the file is empty"},
        {"recipe: r\n---\nrecipe: s\n", "one YAML document"},
        {"a: *nothing\n", "alias *nothing names no anchor"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *probs = NULL;
        struct kiln_error err = {0};
        int rc =
            kiln_recipe_check_text("t.yaml", cases[i].text, strlen(cases[i].text), &probs, &err);
        int found = 0;
        size_t j;
        json_t *v;
        json_array_foreach(probs, j, v)
        {
            if (strstr(json_string_value(json_object_get(v, "text")), cases[i].want)) found = 1;
        }
        if (!found) fprintf(stderr, "case %zu: wanted '%s', got '%s'\n", i, cases[i].want, err.msg);
        assert_int_not_equal(rc, 0);
        assert_true(found);
        assert_int_equal(strncmp(err.msg, "t.yaml:", 7), 0);
        json_decref(probs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_syntax_error),
        cmocka_unit_test(test_unknown_key_did_you_mean),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_undefined_template_variable),
        cmocka_unit_test(test_duplicate_variant_names),
        cmocka_unit_test(test_dependency_matches_nothing),
        cmocka_unit_test(test_dependency_cycle),
        cmocka_unit_test(test_rule_on_unknown_axis),
        cmocka_unit_test(test_all_problems_listed),
        cmocka_unit_test(test_good_recipes_check_clean),
        cmocka_unit_test(test_check_text_and_more_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
