/* Unit tests for scheduler/publish: templates (shell quoting), matching,
 * configuration errors, command targets on a real loop (success, failure,
 * timeout) and an S3 target that cannot connect. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/fsutil.h"
#include "catalog/catalog.h"
#include "catalog/publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_template(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:s,s:s,s:i,s:n}", "name", "vllm-sm90", "evil", "a'b; rm -rf /", "size",
                          42, "commit");
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
    json_t *e = json_pack("{s:s,s:s,s:{s:s}}", "recipe", "vllm", "branch", "release-1", "meta",
                          "flavor", "cu129");
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
        "{\"targets\":[{\"type\":\"s3\",\"endpoint\":\"http://"
        "x\",\"bucket\":\"b\",\"key\":\"{x\"}]}",
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
             "{\"type\":\"command\",\"command\":\"echo {name} {version} {hex} > %s/out; cat {path} "
             ">> %s/out\"},"
             "{\"type\":\"command\",\"match\":{\"branch\":\"dev\"},\"command\":\"touch %s/never\"},"
             "{\"type\":\"command\",\"command\":\"echo boom; exit 3\"},"
             "{\"type\":\"command\",\"command\":\"sleep 30\",\"timeout_s\":1},"
             "{\"type\":\"s3\",\"endpoint\":\"http://"
             "127.0.0.1:1\",\"bucket\":\"b\",\"max_retries\":1,\"backoff_ms\":10}"
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

/* Freeing the publisher while a command runs kills it and reports once. */
static void test_free_while_running(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln-pub2-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct kiln_catalog *cat;
    assert_int_equal(kiln_catalog_open(dir, &cat, NULL), KILN_OK);
    char f[256], digest[KILN_DIGEST_STR];
    snprintf(f, sizeof f, "%s/art", dir);
    assert_int_equal(kiln_write_file_atomic(f, "x", 1, 0644), KILN_OK);
    assert_int_equal(kiln_catalog_add_file(cat, f, NULL, digest, NULL, NULL), KILN_OK);
    json_t *meta = json_pack("{s:s,s:s}", "name", "n", "version", "1");
    int64_t id;
    assert_int_equal(kiln_catalog_publish(cat, meta, digest, &id, NULL, NULL), KILN_OK);
    json_decref(meta);
    json_t *c = json_loads("{\"targets\":[{\"type\":\"command\",\"command\":\"sleep 30\"},"
                           "{\"type\":\"s3\",\"endpoint\":\"http://127.0.0.1:1\",\"bucket\":\"b\","
                           "\"max_retries\":3,\"backoff_ms\":5000}]}",
                           0, NULL);
    struct kiln_publisher *p;
    assert_int_equal(kiln_publisher_new(uv_default_loop(), cat, c, &p, NULL), KILN_OK);
    json_decref(c);
    struct result r = {0};
    assert_int_equal(kiln_publisher_run(p, id, on_done, &r, NULL), KILN_OK);
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    kiln_publisher_free(p);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    assert_int_equal(r.called, 1);
    assert_int_not_equal(r.rc, KILN_OK);
    json_decref(r.results);
    kiln_catalog_close(cat);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_job_meta(void **state)
{
    (void)state;
    json_t *job = json_pack(
        "{s:I,s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s},s:{s:s,s:I},s:n}", "id", (json_int_t)12, "name",
        "vllm-python312-cuda12_9-sm90-avx512", "recipe", "vllm", "branch", "main", "commit",
        "0123456789abcdef0123456789abcdef01234567", "attrs", "sm", "90", "isa", "avx512", "cuda",
        "12.9", "resources", "platform", "x86_64-linux", "driver_min", (json_int_t)560, "selftest");
    json_t *m = kiln_publish_job_meta(job);
    assert_string_equal(json_string_value(json_object_get(m, "version")), "0123456789ab");
    assert_string_equal(json_string_value(json_object_get(m, "sm")), "90");
    assert_string_equal(json_string_value(json_object_get(m, "platform")), "x86_64-linux");
    assert_int_equal(json_integer_value(json_object_get(m, "driver_min")), 560);
    assert_null(json_object_get(m, "selftest")); /* null dropped */
    json_decref(m);
    json_object_set_new(job, "commit", json_null());
    m = kiln_publish_job_meta(job);
    assert_string_equal(json_string_value(json_object_get(m, "version")), "job12");
    json_decref(m);
    json_decref(job);
}

static void run_job(struct kiln_publisher *p, json_t *job, struct result *r)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(kiln_publish_job(p, job, on_done, r, NULL), KILN_OK);
    assert_int_equal(r->called, 0); /* always asynchronous */
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    assert_int_equal(r->called, 1);
}

/* A finished job's outputs are exported from this host's store into the
 * catalog (with narinfo), then the targets run; a second publish reuses the
 * entry; a missing output fails with a sentence. */
static void test_publish_job(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln-pubjob-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct kiln_catalog *cat;
    assert_int_equal(kiln_catalog_open(dir, &cat, NULL), KILN_OK);
    char cfg[512];
    snprintf(
        cfg, sizeof cfg,
        "{\"targets\":[{\"type\":\"command\",\"command\":\"echo {name} {version} >> %s/cmd\"}]}",
        dir);
    json_t *c = json_loads(cfg, 0, NULL);
    struct kiln_publisher *p;
    assert_int_equal(kiln_publisher_new(uv_default_loop(), cat, c, &p, NULL), KILN_OK);
    json_decref(c);
    struct result r;
    json_t *job = json_pack("{s:I,s:s,s:s,s:[]}", "id", (json_int_t)7, "name", "demo-a", "branch",
                            "main", "outputs");
    run_job(p, job, &r);
    assert_int_equal(r.rc, KILN_OK);
    assert_non_null(strstr(json_string_value(json_object_get(r.results, "message")), "nothing"));
    json_decref(r.results);
    json_object_set_new(job, "outputs",
                        json_pack("[s]", "/nix/store/00000000000000000000000000000000-gone"));
    run_job(p, job, &r);
    assert_int_equal(r.rc, KILN_ENOTFOUND);
    assert_non_null(strstr(json_string_value(json_object_get(r.results, "message")),
                           "neither staged nor in this host's Nix store"));
    json_decref(r.results);

    char path[512] = "";
    if (access("/usr/bin/nix-build", X_OK) == 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "cd %s && echo 'derivation { name = \"kiln-pubjob-%d\"; system = "
                 "builtins.currentSystem; builder = \"/bin/sh\"; args = [\"-c\" \"echo %d > "
                 "$out\"]; }' > d.nix && nix-build d.nix --option substituters '' --option "
                 "sandbox false --no-out-link 2>/dev/null",
                 dir, (int)getpid(), (int)getpid());
        FILE *f = popen(cmd, "r");
        if (f) {
            if (!fgets(path, sizeof path, f)) path[0] = 0;
            pclose(f);
        }
        path[strcspn(path, "\n")] = 0;
    }
    if (path[0]) {
        json_object_set_new(job, "outputs", json_pack("[s]", path));
        run_job(p, job, &r);
        assert_int_equal(r.rc, KILN_OK);
        json_t *a = json_object_get(r.results, "artifact");
        assert_non_null(a);
        int64_t id = json_integer_value(json_object_get(a, "catalog_id"));
        json_decref(r.results);
        struct kiln_buf ni = {0};
        char hp[33];
        snprintf(hp, sizeof hp, "%.32s", path + strlen("/nix/store/"));
        assert_int_equal(kiln_catalog_narinfo(cat, hp, 0, &ni, NULL), KILN_OK);
        kiln_buf_free(&ni);
        run_job(p, job, &r); /* again: the entry exists, nothing exported */
        assert_int_equal(r.rc, KILN_OK);
        assert_int_equal(json_integer_value(
                             json_object_get(json_object_get(r.results, "artifact"), "catalog_id")),
                         id);
        json_decref(r.results);
        char cmdout[1024];
        snprintf(cmdout, sizeof cmdout, "%s/cmd", dir);
        struct kiln_buf b = {0};
        assert_int_equal(kiln_read_file(cmdout, 4096, &b), KILN_OK);
        assert_string_equal(b.data, "demo-a job7\ndemo-a job7\n");
        kiln_buf_free(&b);
        json_t *probs;
        assert_int_equal(kiln_catalog_verify(cat, &probs, NULL, NULL), 0);
        json_decref(probs);
        snprintf(cmdout, sizeof cmdout, "nix-store --delete %s >/dev/null 2>&1", path);
        if (system(cmdout) != 0) { /* still referenced: fine */
        }
    }
    json_decref(job);
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
        cmocka_unit_test(test_template),           cmocka_unit_test(test_match),
        cmocka_unit_test(test_config_errors),      cmocka_unit_test(test_command_targets),
        cmocka_unit_test(test_free_while_running), cmocka_unit_test(test_job_meta),
        cmocka_unit_test(test_publish_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
