/* Unit tests for scheduler/publish: templates (shell quoting), matching,
 * configuration errors, command targets on a real loop (success, failure,
 * timeout) and an S3 target that cannot connect. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/fsutil.h"
#include "scheduler/catalog.h"
#include "scheduler/publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_template(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:s,s:s,s:i,s:n}", "name", "vllm-sm90", "evil", "a'b; rm -rf /",
                          "size", 42, "commit");
    struct kiln_buf b = {0};
    assert_int_equal(kiln_publish_template("flox publish {name} {size}", v, 1, &b, NULL), KILN_OK);
    assert_string_equal(b.data, "flox publish 'vllm-sm90' '42'");
    assert_int_equal(kiln_publish_template("x {evil}", v, 1, &b, NULL), KILN_OK);
    assert_string_equal(b.data, "x 'a'\\''b; rm -rf /'");
    assert_int_equal(kiln_publish_template("{name}/{{literal}/{commit}", v, 0, &b, NULL), KILN_OK);
    assert_string_equal(b.data, "vllm-sm90/{literal}/");
    struct kiln_error err = {0};
    assert_int_equal(kiln_publish_template("{nope}", v, 0, &b, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "{nope}"));
    assert_int_equal(kiln_publish_template("{name", v, 0, &b, &err), KILN_EINVAL);
    kiln_buf_free(&b);
    json_decref(v);
}

static void test_match(void **state)
{
    (void)state;
    json_t *e = json_pack("{s:s,s:s,s:{s:s}}", "recipe", "vllm", "branch", "release-1",
                          "meta", "flavor", "cu129");
    json_t *m1 = json_pack("{s:s,s:[s,s]}", "recipe", "vllm", "branch", "main", "release-*");
    json_t *m2 = json_pack("{s:s}", "branch", "main");
    json_t *m3 = json_pack("{s:s}", "flavor", "cu12*");
    assert_true(kiln_publish_match(m1, e));
    assert_false(kiln_publish_match(m2, e));
    assert_true(kiln_publish_match(m3, e));
    assert_true(kiln_publish_match(NULL, e));
    json_decref(e);
    json_decref(m1);
    json_decref(m2);
    json_decref(m3);
}

static void test_config_errors(void **state)
{
    (void)state;
    const char *bad[] = {
        "{\"targets\":{}}",
        "{\"targets\":[{\"command\":\"x\"}]}",
        "{\"targets\":[{\"type\":\"ftp\"}]}",
        "{\"targets\":[{\"type\":\"command\"}]}",
        "{\"targets\":[{\"type\":\"command\",\"command\":\"flox publish {nmae}\"}]}",
        "{\"targets\":[{\"type\":\"s3\",\"bucket\":\"b\"}]}",
        "{\"targets\":[{\"type\":\"s3\",\"endpoint\":\"http://x\",\"bucket\":\"b\",\"key\":\"{x\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *c = json_loads(bad[i], 0, NULL);
        struct kiln_publisher *p = NULL;
        struct kiln_error err = {0};
        assert_int_equal(kiln_publisher_new(uv_default_loop(), NULL, c, &p, &err), KILN_EINVAL);
        assert_null(p);
        assert_true(strlen(err.msg) > 0);
        json_decref(c);
    }
}

struct result {
    int called, rc;
    json_t *results;
};

static void on_done(void *arg, int rc, json_t *results)
{
    struct result *r = arg;
    r->called++;
    r->rc = rc;
    r->results = json_deep_copy(results);
}

static void test_command_targets(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln-pub-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct kiln_catalog *cat;
    assert_int_equal(kiln_catalog_open(dir, &cat, NULL), KILN_OK);
    char f[256], digest[KILN_DIGEST_STR];
    snprintf(f, sizeof f, "%s/art", dir);
    assert_int_equal(kiln_write_file_atomic(f, "artifact", 8, 0644), KILN_OK);
    uint64_t size;
    assert_int_equal(kiln_catalog_add_file(cat, f, NULL, digest, &size, NULL), KILN_OK);
    json_t *meta = json_pack("{s:s,s:s,s:s,s:s}", "name", "vllm-sm90", "version", "1.0", "branch",
                             "main", "recipe", "vllm");
    int64_t id;
    assert_int_equal(kiln_catalog_publish(cat, meta, digest, &id, NULL, NULL), KILN_OK);
    json_decref(meta);
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "{\"targets\":["
             "{\"type\":\"command\",\"command\":\"echo {name} {version} {hex} > %s/out; cat {path} >> %s/out\"},"
             "{\"type\":\"command\",\"match\":{\"branch\":\"dev\"},\"command\":\"touch %s/never\"},"
             "{\"type\":\"command\",\"command\":\"echo boom; exit 3\"},"
             "{\"type\":\"command\",\"command\":\"sleep 30\",\"timeout_s\":1},"
             "{\"type\":\"s3\",\"endpoint\":\"http://127.0.0.1:1\",\"bucket\":\"b\",\"max_retries\":1,\"backoff_ms\":10}"
             "]}",
             dir, dir, dir);
    json_t *c = json_loads(cfg, 0, NULL);
    assert_non_null(c);
    struct kiln_publisher *p;
    struct kiln_error err = {0};
    assert_int_equal(kiln_publisher_new(uv_default_loop(), cat, c, &p, &err), KILN_OK);
    json_decref(c);
    struct result r = {0};
    assert_int_equal(kiln_publisher_run(p, id, on_done, &r, &err), KILN_OK);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    if (r.called != 1) fprintf(stderr, "called=%d\n", r.called);
    assert_int_equal(r.called, 1);
    assert_int_not_equal(r.rc, KILN_OK);
    assert_int_equal(json_array_size(r.results), 4); /* the dev-only target did not run */
    size_t i;
    json_t *x;
    int ok = 0, exit3 = 0, timeout = 0, s3fail = 0;
    json_array_foreach(r.results, i, x)
    {
        const char *m = json_string_value(json_object_get(x, "message"));
        int t = (int)json_integer_value(json_object_get(x, "target"));
        if (t == 0 && json_is_true(json_object_get(x, "ok"))) ok = 1;
        if (t == 2 && strstr(m, "status 3") && strstr(m, "boom")) exit3 = 1;
        if (t == 3 && strstr(m, "timed out")) timeout = 1;
        if (t == 4 && !json_is_true(json_object_get(x, "ok"))) s3fail = 1;
    }
    if (!(ok && exit3 && timeout && s3fail)) json_dumpf(r.results, stderr, JSON_INDENT(1));
    assert_true(ok && exit3 && timeout && s3fail);
    json_decref(r.results);
    char out[256];
    snprintf(out, sizeof out, "%s/out", dir);
    struct kiln_buf b = {0};
    assert_int_equal(kiln_read_file(out, 4096, &b), KILN_OK);
    char want[256];
    snprintf(want, sizeof want, "vllm-sm90 1.0 %s\nartifact", digest + 7);
    assert_string_equal(b.data, want);
    kiln_buf_free(&b);
    snprintf(out, sizeof out, "%s/never", dir);
    assert_int_not_equal(access(out, F_OK), 0);
    kiln_publisher_free(p);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    kiln_catalog_close(cat);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_command_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
