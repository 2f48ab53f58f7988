/* Unit tests for recipes/: the vLLM recipe against the hand-written seed
 * table (acceptance 1), the format's features, branches, where, diff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "recipes/recipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *src_path(const char *rel, char *buf, size_t len)
{
    const char *root = getenv("KILN_SRC");
    snprintf(buf, len, "%s/%s", root && *root ? root : ".", rel);
    return buf;
}

static json_t *expand_file(const char *rel, const char *branch, const char *where)
{
    char p[4096];
    json_t *v = NULL;
    struct kiln_error err = {0};
    int rc = kiln_recipe_expand_file(src_path(rel, p, sizeof(p)), branch, where, &v, &err);
    if (rc) fprintf(stderr, "expand %s: %s\n", rel, err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(v);
    return v;
}

static json_t *expand_str(const char *text, const char *branch, const char *where, int want_rc,
                          struct kiln_error *err)
{
    json_t *v = NULL;
    int rc = kiln_recipe_expand_text("inline.yaml", text, strlen(text), branch, where, &v, err);
    if (rc != want_rc) fprintf(stderr, "expand inline: rc %d: %s\n", rc, err->msg);
    assert_int_equal(rc, want_rc);
    return v;
}

static const char *attr(json_t *v, const char *k)
{
    return json_string_value(json_object_get(json_object_get(v, "attrs"), k));
}

static const char *envv(json_t *v, const char *k)
{
    return json_string_value(json_object_get(json_object_get(v, "env"), k));
}

static json_int_t res(json_t *v, const char *k)
{
    return json_integer_value(json_object_get(json_object_get(v, "resources"), k));
}

/* Acceptance 1: exactly the seed's 98 variants, in the table's order, each
 * with name, platform, sm, capability, isa, cuda, driver minimum, env,
 * resources, description and dependencies. */
static void test_vllm_matches_seed_table(void **state)
{
    (void)state;
    char p[4096];
    FILE *f = fopen(src_path("tests/fixtures/recipes/seed-000-variants.txt", p, sizeof(p)), "r");
    assert_non_null(f);
    json_t *arr = expand_file("recipes/vllm.yaml", NULL, NULL);
    assert_int_equal(json_array_size(arr), 98);
    char line[512];
    size_t i = 0, n129 = 0, n128 = 0, arm129 = 0, arm128 = 0;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        line[strcspn(line, "\n")] = '\0';
        char name[128], plat[32], sm[8], cap[8], isa[16], cuda[8], drv[8], cudnn[4];
        int off = 0;
        assert_int_equal(sscanf(line, "%127s %31s %7s %7s %15s %7s %7s %3s %n", name, plat, sm, cap,
                                isa, cuda, drv, cudnn, &off),
                         8);
        const char *gpus = line + off;
        json_t *v = json_array_get(arr, i++);
        assert_non_null(v);
        assert_string_equal(json_string_value(json_object_get(v, "name")), name);
        assert_string_equal(json_string_value(json_object_get(v, "platform")), plat);
        assert_string_equal(json_string_value(json_object_get(v, "recipe")), "vllm");
        assert_string_equal(json_string_value(json_object_get(v, "branch")), "vllm-0.14.0");
        assert_string_equal(attr(v, "sm"), sm);
        assert_string_equal(attr(v, "capability"), cap);
        assert_string_equal(attr(v, "isa"), isa);
        assert_string_equal(attr(v, "cuda"), cuda);
        assert_string_equal(attr(v, "gpus"), gpus);
        assert_string_equal(attr(v, "python"), "3.12");
        assert_string_equal(attr(v, "driver_min"), drv);
        json_t *st = json_object_get(v, "selftest");
        assert_true(json_is_object(st));
        assert_int_equal(json_integer_value(json_object_get(st, "driver_min")), atoi(drv));
        assert_string_equal(json_string_value(json_object_get(st, "sm")), sm);
        assert_string_equal(json_string_value(json_object_get(st, "isa")), isa);
        assert_true(json_is_false(json_object_get(st, "sm_compat")));
        assert_int_equal(json_array_size(json_object_get(st, "checks")), 4);
        /* env: the seed's build parallelism and the cuDNN exception */
        assert_string_equal(envv(v, "NIX_BUILD_CORES"), "16");
        assert_string_equal(envv(v, "MAX_JOBS"), "16");
        if (strcmp(cudnn, "0") == 0)
            assert_string_equal(envv(v, "USE_CUDNN"), "0");
        else
            assert_null(envv(v, "USE_CUDNN"));
        assert_int_equal(res(v, "cores"), 16);
        assert_int_equal(res(v, "ram_mb"), 131072);
        assert_true(res(v, "est_duration_s") > 0);
        char want[256];
        snprintf(want, sizeof(want), "flox build %s", name);
        assert_string_equal(json_string_value(json_object_get(v, "command")), want);
        const char *desc = json_string_value(json_object_get(v, "description"));
        snprintf(want, sizeof(want), "(SM%s) [CUDA %s, custom PyTorch ", sm, cuda);
        assert_non_null(strstr(desc, want));
        assert_non_null(strstr(desc, "vLLM 0.14.0 for NVIDIA "));
        const char *hdr = json_string_value(json_object_get(v, "header"));
        snprintf(want, sizeof(want), "\n# CUDA %s \xe2\x80\x94 Requires NVIDIA driver %s+\n", cuda,
                 drv);
        assert_non_null(strstr(hdr, want));
        /* dependencies: the PyTorch variant of the same SM/ISA/CUDA where
         * one exists (build-pytorch has CUDA 12.9 only) */
        json_t *deps = json_object_get(v, "depends");
        if (strcmp(cuda, "12.9") == 0) {
            snprintf(want, sizeof(want), "pytorch-python313-cuda12_9-sm%s-%s", sm, isa);
            assert_int_equal(json_array_size(deps), 1);
            assert_string_equal(json_string_value(json_array_get(deps, 0)), want);
            n129++;
            if (!strcmp(plat, "aarch64-linux")) arm129++;
        } else {
            assert_int_equal(json_array_size(deps), 0);
            n128++;
            if (!strcmp(plat, "aarch64-linux")) arm128++;
        }
        snprintf(want, sizeof(want), ".flox/pkgs/%s.nix", name);
        assert_string_equal(json_string_value(json_array_get(json_object_get(v, "inputs"), 0)),
                            want);
    }
    fclose(f);
    assert_int_equal(i, 98);
    assert_int_equal(n129, 52);
    assert_int_equal(arm129, 5);
    assert_int_equal(n128, 46);
    assert_int_equal(arm128, 4);
    json_decref(arr);
}

/* The seed's literal description and three-line header for SM90/AVX-512. */
static void test_vllm_seed_header_and_description(void **state)
{
    (void)state;
    json_t *arr = expand_file("recipes/vllm.yaml", NULL, "sm=90,isa=avx512");
    assert_int_equal(json_array_size(arr), 2);
    json_t *v = json_array_get(arr, 0);
    assert_string_equal(json_string_value(json_object_get(v, "description")),
                        "vLLM 0.14.0 for NVIDIA H100/H200/L40S (SM90) [CUDA 12.9, custom "
                        "PyTorch AVX-512]");
    assert_string_equal(json_string_value(json_object_get(v, "header")),
                        "# vLLM 0.14.0 for NVIDIA Hopper (SM90: H100, H200, L40S) \xe2\x80\x94 "
                        "AVX-512\n# CUDA 12.9 \xe2\x80\x94 Requires NVIDIA driver 560+\n# Custom "
                        "PyTorch 2.9.1 built from source (SM90 + AVX-512)");
    v = json_array_get(arr, 1);
    assert_string_equal(json_string_value(json_object_get(v, "description")),
                        "vLLM 0.14.0 for NVIDIA H100/H200/L40S (SM90) [CUDA 12.8, custom "
                        "PyTorch AVX-512]");
    json_decref(arr);
}

static void test_vllm_branches(void **state)
{
    (void)state;
    json_t *arr = expand_file("recipes/vllm.yaml", "main", "sm=90,isa=avx512,cuda=12.9");
    assert_int_equal(json_array_size(arr), 1);
    json_t *v = json_array_get(arr, 0);
    assert_string_equal(json_string_value(json_object_get(v, "branch")), "main");
    assert_string_equal(attr(v, "vllm_version"), "0.15.1");
    assert_string_equal(attr(v, "nixpkgs_pin"), "0182a361324364ae3f436a63005877674cf45efb");
    assert_string_equal(attr(v, "python"), "3.13");
    json_decref(arr);
    arr = expand_file("recipes/vllm.yaml", "vllm-0.13.0", NULL);
    assert_int_equal(json_array_size(arr), 98);
    assert_string_equal(attr(json_array_get(arr, 0), "vllm_version"), "0.13.0");
    assert_string_equal(attr(json_array_get(arr, 0), "nixpkgs_pin"), "ed142ab");
    json_decref(arr);
    arr = expand_file("recipes/vllm.yaml", "vllm-0.14.0", "sm=103");
    assert_int_equal(json_array_size(arr), 6); /* 5 x86 + armv9, CUDA 12.9 only */
    assert_string_equal(attr(json_array_get(arr, 0), "nixpkgs_pin"),
                        "46336d4d6980ae6f136b45c8507b17787eb186a0");
    json_decref(arr);
    /* an unknown branch is a clear error */
    char p[4096];
    struct kiln_error err = {0};
    json_t *none = NULL;
    assert_int_equal(kiln_recipe_expand_file(src_path("recipes/vllm.yaml", p, sizeof(p)), "nope",
                                             NULL, &none, &err),
                     KILN_ENOTFOUND);
    assert_null(none);
    assert_non_null(strstr(err.msg, "has no branch 'nope'"));
}

static void test_vllm_where(void **state)
{
    (void)state;
    json_t *arr = expand_file("recipes/vllm.yaml", NULL, "sm=90|100,platform=aarch64-linux");
    assert_int_equal(json_array_size(arr), 6); /* (90 armv8_2, 90 armv9, 100 armv9) x 2 CUDA */
    json_decref(arr);
    arr = expand_file("recipes/vllm.yaml", NULL, "sm=61");
    assert_int_equal(json_array_size(arr), 4);
    json_decref(arr);
    char p[4096];
    struct kiln_error err = {0};
    json_t *none = NULL;
    assert_int_equal(kiln_recipe_expand_file(src_path("recipes/vllm.yaml", p, sizeof(p)), NULL,
                                             "smm=90", &none, &err),
                     KILN_EINVAL);
    assert_non_null(strstr(err.msg, "did you mean 'sm'"));
}

static void test_pytorch_recipe(void **state)
{
    (void)state;
    json_t *arr = expand_file("recipes/pytorch.yaml", NULL, NULL);
    assert_int_equal(json_array_size(arr), 52 + 7);
    size_t i, cpu = 0;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        assert_int_equal(strncmp(name, "pytorch-python313-", 18), 0);
        assert_string_equal(attr(v, "nixpkgs_pin"), "0182a361324364ae3f436a63005877674cf45efb");
        if (strstr(name, "-cpu-")) {
            cpu++;
            assert_true(json_is_null(json_object_get(json_object_get(v, "selftest"), "sm")));
            assert_int_equal(res(v, "ram_mb"), 32768);
        } else {
            assert_non_null(strstr(name, "-cuda12_9-sm"));
        }
    }
    assert_int_equal(cpu, 7);
    json_decref(arr);
}

static const char *feature_recipe =
    "recipe: feat\n"
    "axes:\n"
    "  sm:\n"
    "    - 61: {capability: '6.1'}\n"
    "    - 75: {capability: '7.5'}\n"
    "    - 90: {capability: '9.0'}\n"
    "  isa: [avx2, avx512, armv9]\n"
    "include:\n"
    "  - {sm: 120, isa: avx2, attrs: {capability: '12.0', extra: yes}}\n"
    "exclude:\n"
    "  - {sm: 61, isa: {ne: avx2}}\n"
    "  - {platform: aarch64-linux, sm: {lt: 90}}\n"
    "attrs: {platform: x86_64-linux, tier: normal, sm_label: 'SM{sm}'}\n"
    "rules:\n"
    "  - when: {isa: armv9}\n"
    "    attrs: {platform: aarch64-linux}\n"
    "  - when: {sm: '>= 90'}\n"
    "    attrs: {tier: big}\n"
    "    resources: {ram_mb: 8192}\n"
    "    env: {BIG: '1'}\n"
    "  - when: {sm: [61, 75]}\n"
    "    selftest: false\n"
    "    publish: false\n"
    "templates:\n"
    "  name: 'feat-sm{sm}-{isa}'\n"
    "  command: 'make SM={sm} CAP={capability} # {{literal}}'\n"
    "resources: {cores: 2, ram_mb: 1024, est_duration_s: '{sm}'}\n"
    "env: {CORES: '2'}\n"
    "depends:\n"
    "  - name: 'feat-sm75-{isa}'\n"
    "    optional: true\n"
    "    when: {sm: {gt: 75}}\n"
    "selftest:\n"
    "  sm: '{sm}'\n"
    "  sm_compat: 'true'\n"
    "  checks: [{command: 'run {name}'}]\n"
    "publish: {target: catalog, tags: ['{sm_label}', 7], signed: true}\n";

static json_t *find(json_t *arr, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!strcmp(json_string_value(json_object_get(v, "name")), name)) return v;
    }
    return NULL;
}

static void test_features(void **state)
{
    (void)state;
    struct kiln_error err = {0};
    json_t *arr = expand_str(feature_recipe, NULL, NULL, 0, &err);
    /* 61:avx2 | 75:avx2,avx512 | 90:avx2,avx512,armv9 | include 120:avx2 */
    assert_int_equal(json_array_size(arr), 7);
    json_t *v = find(arr, "feat-sm61-avx2");
    assert_non_null(v);
    assert_true(json_is_null(json_object_get(v, "selftest")));
    assert_true(json_is_null(json_object_get(v, "publish")));
    assert_string_equal(json_string_value(json_object_get(v, "command")),
                        "make SM=61 CAP=6.1 # {literal}");
    assert_int_equal(res(v, "est_duration_s"), 61);
    assert_int_equal(res(v, "ram_mb"), 1024);
    assert_string_equal(attr(v, "tier"), "normal");
    assert_string_equal(attr(v, "sm_label"), "SM61");
    assert_null(find(arr, "feat-sm75-armv9"));
    v = find(arr, "feat-sm90-armv9");
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "platform")), "aarch64-linux");
    assert_string_equal(attr(v, "tier"), "big");
    assert_int_equal(res(v, "ram_mb"), 8192);
    assert_string_equal(envv(v, "BIG"), "1");
    assert_string_equal(envv(v, "CORES"), "2");
    /* optional dependency: where one exists (sm75 has no armv9) */
    assert_int_equal(json_array_size(json_object_get(v, "depends")), 0);
    v = find(arr, "feat-sm90-avx512");
    assert_string_equal(json_string_value(json_array_get(json_object_get(v, "depends"), 0)),
                        "feat-sm75-avx512");
    json_t *st = json_object_get(v, "selftest");
    assert_true(json_is_true(json_object_get(st, "sm_compat")));
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(st, "checks"), 0), "command")),
                        "run feat-sm90-avx512");
    json_t *pub = json_object_get(v, "publish");
    assert_string_equal(json_string_value(json_object_get(pub, "target")), "catalog");
    assert_string_equal(json_string_value(json_array_get(json_object_get(pub, "tags"), 0)), "SM90");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(pub, "tags"), 1)), 7);
    assert_true(json_is_true(json_object_get(pub, "signed")));
    v = find(arr, "feat-sm120-avx2");
    assert_non_null(v);
    assert_string_equal(attr(v, "extra"), "yes");
    assert_string_equal(attr(v, "capability"), "12.0");
    json_decref(arr);
}

static void test_runtime_undefined_variable(void **state)
{
    (void)state;
    /* {big} exists (a rule sets it) but not for sm=61 */
    const char *t = "recipe: r\n"
                    "axes: {sm: [61, 90]}\n"
                    "rules:\n"
                    "  - when: {sm: 90}\n"
                    "    attrs: {big: 'yes'}\n"
                    "templates: {name: 'r-{sm}-{big}'}\n";
    struct kiln_error err = {0};
    json_t *v = expand_str(t, NULL, NULL, KILN_EINVAL, &err);
    assert_null(v);
    assert_non_null(strstr(err.msg, "inline.yaml:6:27: error: templates.name uses {big}"));
    assert_non_null(strstr(err.msg, "sm=61"));
}

static void test_diff(void **state)
{
    (void)state;
    const char *a = "recipe: d\naxes: {sm: [75, 80, 86]}\nenv: {X: '1'}\n"
                    "templates: {name: 'd-{sm}'}\n";
    const char *b = "recipe: d\naxes: {sm: [80, 86, 90]}\nenv: {X: '1'}\n"
                    "rules: [{when: {sm: 86}, env: {X: '2'}, resources: {cores: 4}}]\n"
                    "templates: {name: 'd-{sm}'}\n";
    struct kiln_error err = {0};
    json_t *x = expand_str(a, NULL, NULL, 0, &err), *y = expand_str(b, NULL, NULL, 0, &err);
    json_t *d = NULL;
    assert_int_equal(kiln_recipe_diff(x, y, &d, &err), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(d, "added"), 0)), "d-90");
    assert_string_equal(json_string_value(json_array_get(json_object_get(d, "removed"), 0)),
                        "d-75");
    json_t *ch = json_object_get(d, "changed");
    assert_int_equal(json_array_size(ch), 1);
    json_t *c = json_array_get(ch, 0);
    assert_string_equal(json_string_value(json_object_get(c, "name")), "d-86");
    json_t *f = json_object_get(c, "fields");
    assert_int_equal(json_array_size(f), 2);
    assert_string_equal(json_string_value(json_array_get(f, 0)), "env.X");
    assert_string_equal(json_string_value(json_array_get(f, 1)), "resources.cores");
    assert_int_equal(json_integer_value(json_object_get(d, "unchanged")), 1);
    json_decref(d);
    json_decref(x);
    json_decref(y);
    /* vllm: 0.14.0 -> main changes versions, not the set of variants */
    x = expand_file("recipes/vllm.yaml", "vllm-0.14.0", NULL);
    y = expand_file("recipes/vllm.yaml", "main", NULL);
    assert_int_equal(kiln_recipe_diff(x, y, &d, &err), 0);
    assert_int_equal(json_array_size(json_object_get(d, "added")), 0);
    assert_int_equal(json_array_size(json_object_get(d, "removed")), 0);
    assert_int_equal(json_array_size(json_object_get(d, "changed")), 98);
    json_decref(d);
    json_decref(x);
    json_decref(y);
}

static void test_name_file(void **state)
{
    (void)state;
    char p[4096], name[64];
    struct kiln_error err = {0};
    assert_int_equal(kiln_recipe_name_file(src_path("recipes/pytorch.yaml", p, sizeof(p)), name,
                                           sizeof(name), &err),
                     0);
    assert_string_equal(name, "pytorch");
    assert_int_equal(kiln_recipe_name_file("/nonexistent/x.yaml", name, sizeof(name), &err),
                     KILN_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/x.yaml:1:1: error: no such recipe file"));
}

static void test_where_from_json(void **state)
{
    (void)state;
    char out[256];
    struct kiln_error err = {0};
    json_t *w = json_loads("{\"sm\":\"90\",\"isa\":[\"avx2\",\"avx512\"],\"n\":7}", 0, NULL);
    assert_int_equal(kiln_recipe_where_from_json(w, out, sizeof(out), &err), 0);
    assert_string_equal(out, "sm=90,isa=avx2|avx512,n=7");
    json_decref(w);
    assert_int_equal(kiln_recipe_where_from_json(NULL, out, sizeof(out), &err), 0);
    assert_string_equal(out, "");
    w = json_loads("{\"sm\":{\"x\":1}}", 0, NULL);
    assert_int_equal(kiln_recipe_where_from_json(w, out, sizeof(out), &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "must be a string"));
    json_decref(w);
    w = json_loads("{\"s=m\":\"1\"}", 0, NULL);
    assert_int_equal(kiln_recipe_where_from_json(w, out, sizeof(out), &err), KILN_EINVAL);
    json_decref(w);
    /* and it feeds expand */
    w = json_loads("{\"sm\":[\"90\",\"100\"],\"platform\":\"aarch64-linux\"}", 0, NULL);
    assert_int_equal(kiln_recipe_where_from_json(w, out, sizeof(out), &err), 0);
    json_decref(w);
    json_t *arr = expand_file("recipes/vllm.yaml", NULL, out);
    assert_int_equal(json_array_size(arr), 6);
    json_decref(arr);
}

static void test_pytorch_cpu_has_no_gpu_attrs(void **state)
{
    (void)state;
    json_t *arr = expand_file("recipes/pytorch.yaml", NULL, "flavor=cpu");
    assert_int_equal(json_array_size(arr), 7);
    json_t *v = json_array_get(arr, 0);
    assert_null(attr(v, "sm"));
    assert_null(attr(v, "cuda"));
    assert_string_equal(json_string_value(json_object_get(v, "name")), "pytorch-python313-cpu-avx");
    assert_int_equal(res(v, "timeout_s"), 43200);
    json_decref(arr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vllm_matches_seed_table),
        cmocka_unit_test(test_vllm_seed_header_and_description),
        cmocka_unit_test(test_vllm_branches),
        cmocka_unit_test(test_vllm_where),
        cmocka_unit_test(test_pytorch_recipe),
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_runtime_undefined_variable),
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_name_file),
        cmocka_unit_test(test_where_from_json),
        cmocka_unit_test(test_pytorch_cpu_has_no_gpu_attrs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
