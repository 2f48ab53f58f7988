/* Unit tests for scheduler/catalog: upload, publish (idempotent, conflicts),
 * bad input leaves nothing behind, verify catches tampering, gc. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "catalog_fixture.h"

#include "common/hash.h"
#include "catalog/catalog.h"

#include <dirent.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static int upload(struct kiln_catalog *c, const char *data, const char *expect, int64_t size,
                  char digest[KILN_DIGEST_STR], struct kiln_error *err)
{
    struct kiln_catalog_upload *u;
    int rc = kiln_catalog_upload_begin(c, expect, size, &u, err);
    if (rc) return rc;
    size_t n = strlen(data);
    if ((rc = kiln_catalog_upload_write(u, data, n / 2, err)) ||
        (rc = kiln_catalog_upload_write(u, data + n / 2, n - n / 2, err))) {
        kiln_catalog_upload_abort(u);
        return rc;
    }
    uint64_t got;
    return kiln_catalog_upload_finish(u, digest, &got, err);
}

static json_t *meta(const char *name, const char *ver)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:{s:b}}", "name", name, "version", ver, "sm",
                     "90", "isa", "avx512", "cuda", "12.9", "platform", "x86_64-linux",
                     "driver_min", 560, "selftest", "passed", 1);
}

static void count_cb(void *arg, int64_t id)
{
    (void)id;
    (*(int *)arg)++;
}

static void test_publish_idempotent_and_conflict(void **state)
{
    struct catalog_fx *f = *state;
    int hooks = 0;
    kiln_catalog_on_publish(f->c, count_cb, &hooks);
    struct kiln_error err = {0};
    char d1[KILN_DIGEST_STR], d2[KILN_DIGEST_STR], hex[65], want[KILN_DIGEST_STR];
    kiln_sha256_hex("hello world", 11, hex);
    snprintf(want, sizeof want, "sha256:%s", hex);
    assert_int_equal(upload(f->c, "hello world", want, 11, d1, &err), KILN_OK);
    assert_string_equal(d1, want);
    json_t *m = meta("vllm-sm90", "1.0");
    int64_t id1, id2;
    int created;
    assert_int_equal(kiln_catalog_publish(f->c, m, d1, &id1, &created, &err), KILN_OK);
    assert_int_equal(created, 1);
    assert_int_equal(kiln_catalog_publish(f->c, m, d1, &id2, &created, &err), KILN_OK);
    assert_int_equal(created, 0);
    assert_int_equal(id1, id2);
    assert_int_equal(hooks, 1); /* the no-op did not fire the hook */
    assert_int_equal(upload(f->c, "other bytes", NULL, -1, d2, &err), KILN_OK);
    assert_int_equal(kiln_catalog_publish(f->c, m, d2, &id2, &created, &err), KILN_ECONFLICT);
    assert_non_null(strstr(err.msg, "different digest"));
    json_decref(m);

    json_t *e;
    assert_int_equal(kiln_catalog_get(f->c, id1, &e, &err), KILN_OK);
    assert_string_equal(json_string_value(json_object_get(e, "sm")), "90");
    assert_int_equal(json_integer_value(json_object_get(e, "size")), 11);
    assert_true(kiln_catalog_entry_signature_ok(f->c, e));
    json_decref(e);

    json_t *filt = json_pack("{s:s}", "isa", "avx512"), *list;
    assert_int_equal(kiln_catalog_list(f->c, filt, &list, &err), KILN_OK);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    json_decref(filt);
    filt = json_pack("{s:s}", "isa", "avx2");
    assert_int_equal(kiln_catalog_list(f->c, filt, &list, &err), KILN_OK);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    json_decref(filt);

    json_t *problems, *notes;
    assert_int_equal(kiln_catalog_verify(f->c, &problems, &notes, &err), 0);
    assert_int_equal(json_array_size(notes), 1); /* the "other bytes" blob */
    json_decref(problems);
    json_decref(notes);
    uint64_t files, bytes;
    assert_int_equal(kiln_catalog_gc(f->c, 0, &files, &bytes, &err), KILN_OK);
    assert_int_equal(files, 1);
    assert_int_equal(bytes, 11);
    assert_true(kiln_catalog_blob_have(f->c, d1, NULL));
}

static void test_bad_input_leaves_nothing(void **state)
{
    struct catalog_fx *f = *state;
    struct kiln_error err = {0};
    char d[KILN_DIGEST_STR], tmpdir[128], shadir[128];
    snprintf(tmpdir, sizeof tmpdir, "%s/catalog/blobs/tmp", f->dir);
    snprintf(shadir, sizeof shadir, "%s/catalog/blobs/sha256", f->dir);
    const char *wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(upload(f->c, "payload", wrong, 7, d, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "digest mismatch"));
    assert_int_equal(upload(f->c, "payload", NULL, 100, d, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "truncated"));
    assert_int_equal(upload(f->c, "payload", NULL, 3, d, &err), KILN_ELIMIT);
    assert_int_equal(upload(f->c, "payload", "sha256:xyz", -1, d, &err), KILN_EINVAL);
    assert_int_equal(count_files(tmpdir), 0);
    assert_int_equal(count_files(shadir), 0);

    assert_int_equal(upload(f->c, "payload", NULL, 7, d, &err), KILN_OK);
    const char *bad_names[] = {"../../etc/passwd", "a/b", "..", ".hidden", "", "x y", NULL};
    for (int i = 0; bad_names[i]; i++) {
        json_t *m = meta(bad_names[i], "1");
        assert_int_equal(kiln_catalog_publish(f->c, m, d, NULL, NULL, &err), KILN_EINVAL);
        json_decref(m);
    }
    json_t *m = meta("ok", "1");
    assert_int_equal(kiln_catalog_publish(f->c, m, wrong, NULL, NULL, &err), KILN_ENOTFOUND);
    json_object_set_new(m, "driver_min", json_string("x"));
    assert_int_equal(kiln_catalog_publish(f->c, m, d, NULL, NULL, &err), KILN_EINVAL);
    json_object_set_new(m, "driver_min", json_integer(1));
    json_object_set_new(m, "nix", json_pack("{s:s}", "store_path", "/etc/shadow"));
    assert_int_equal(kiln_catalog_publish(f->c, m, d, NULL, NULL, &err), KILN_EINVAL);
    json_decref(m);
    json_t *list;
    assert_int_equal(kiln_catalog_list(f->c, NULL, &list, &err), KILN_OK);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
}

static void test_verify_detects_tampering(void **state)
{
    struct catalog_fx *f = *state;
    struct kiln_error err = {0};
    char d[KILN_DIGEST_STR], p[512];
    assert_int_equal(upload(f->c, "blob one", NULL, -1, d, &err), KILN_OK);
    json_t *m = meta("t", "1");
    int64_t id;
    assert_int_equal(kiln_catalog_publish(f->c, m, d, &id, NULL, &err), KILN_OK);
    json_decref(m);
    json_t *problems;
    assert_int_equal(kiln_catalog_verify(f->c, &problems, NULL, &err), 0);
    json_decref(problems);

    /* unsigned, wrongly signed, altered metadata: via a second connection */
    snprintf(p, sizeof p, "%s/catalog/catalog.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE entries SET meta=replace(meta,'\"90\"','\"80\"')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(kiln_catalog_verify(f->c, &problems, NULL, &err), 1);
    assert_non_null(
        strstr(json_string_value(json_object_get(json_array_get(problems, 0), "problem")),
               "signature does not match"));
    json_decref(problems);
    assert_int_equal(sqlite3_exec(db, "UPDATE entries SET signature=''", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(kiln_catalog_verify(f->c, &problems, NULL, &err), 1);
    assert_non_null(strstr(
        json_string_value(json_object_get(json_array_get(problems, 0), "problem")), "unsigned"));
    json_decref(problems);
    sqlite3_close(db);

    /* corrupt blob */
    assert_int_equal(kiln_catalog_blob_path(f->c, d, p, sizeof p), KILN_OK);
    FILE *fp = fopen(p, "w");
    fputs("blob 0ne", fp);
    fclose(fp);
    assert_int_equal(kiln_catalog_verify(f->c, &problems, NULL, &err), 2);
    json_decref(problems);
}

static void test_nix_entry_narinfo(void **state)
{
    struct catalog_fx *f = *state;
    struct kiln_error err = {0};
    char d[KILN_DIGEST_STR];
    assert_int_equal(upload(f->c, "nar bytes", NULL, -1, d, &err), KILN_OK);
    json_t *m = meta("nixy", "1");
    json_object_set_new(
        m, "nix",
        json_pack("{s:s,s:[s],s:s}", "store_path",
                  "/nix/store/ak0grpkfjcprma2z0ar21lfyjxbv4xbn-kiln-fx", "references",
                  "/nix/store/h4s6cjyg0f8f3qqj2fqykwwvpq9gpnl1-kiln-fx-dep", "deriver",
                  "/nix/store/nk3d8njxyrf6ixs76iwds3b4q8gjz0dk-kiln-fx.drv"));
    assert_int_equal(kiln_catalog_publish(f->c, m, d, NULL, NULL, &err), KILN_OK);
    json_decref(m);
    struct kiln_buf t = {0};
    assert_int_equal(kiln_catalog_narinfo(f->c, "ak0grpkfjcprma2z0ar21lfyjxbv4xbn", 0, &t, &err),
                     KILN_OK);
    assert_non_null(
        strstr(t.data, "StorePath: /nix/store/ak0grpkfjcprma2z0ar21lfyjxbv4xbn-kiln-fx\n"));
    assert_non_null(strstr(t.data, "References: h4s6cjyg0f8f3qqj2fqykwwvpq9gpnl1-kiln-fx-dep\n"));
    assert_non_null(strstr(t.data, "Sig: kiln-cache-1:"));
    char *url = strstr(t.data, "URL: nar/");
    assert_non_null(url);
    char file[80];
    snprintf(file, sizeof file, "%.56s", url + 9);
    char p[512];
    uint64_t size;
    assert_int_equal(kiln_catalog_nar_path(f->c, file, 0, p, sizeof p, &size, &err), KILN_OK);
    assert_int_equal(size, 9);
    kiln_buf_free(&t);
    assert_int_equal(kiln_catalog_narinfo(f->c, "00000000000000000000000000000000", 0, &t, &err),
                     KILN_ENOTFOUND);
    kiln_buf_free(&t);
    json_t *problems;
    assert_int_equal(kiln_catalog_verify(f->c, &problems, NULL, &err), 0);
    json_decref(problems);
}

static void test_parse_range(void **state)
{
    (void)state;
    uint64_t a, b;
    assert_int_equal(kiln_catalog_parse_range("bytes=0-9", 100, &a, &b), 1);
    assert_true(a == 0 && b == 9);
    assert_int_equal(kiln_catalog_parse_range("bytes=90-", 100, &a, &b), 1);
    assert_true(a == 90 && b == 99);
    assert_int_equal(kiln_catalog_parse_range("bytes=-10", 100, &a, &b), 1);
    assert_true(a == 90 && b == 99);
    assert_int_equal(kiln_catalog_parse_range("bytes=50-1000", 100, &a, &b), 1);
    assert_true(a == 50 && b == 99);
    assert_int_equal(kiln_catalog_parse_range("bytes=100-", 100, &a, &b), -1);
    assert_int_equal(kiln_catalog_parse_range("bytes=-0", 100, &a, &b), -1);
    assert_int_equal(kiln_catalog_parse_range("bytes=0-1,5-6", 100, &a, &b), 0);
    assert_int_equal(kiln_catalog_parse_range("bytes=9-1", 100, &a, &b), 0);
    assert_int_equal(kiln_catalog_parse_range("items=0-1", 100, &a, &b), 0);
    assert_int_equal(kiln_catalog_parse_range("bytes=x-1", 100, &a, &b), 0);
    assert_int_equal(kiln_catalog_parse_range("bytes=99999999999999999999999-", 100, &a, &b), 0);
    assert_int_equal(kiln_catalog_parse_range(NULL, 100, &a, &b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_idempotent_and_conflict, catalog_fx_setup,
                                        catalog_fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_leaves_nothing, catalog_fx_setup,
                                        catalog_fx_teardown),
        cmocka_unit_test_setup_teardown(test_verify_detects_tampering, catalog_fx_setup,
                                        catalog_fx_teardown),
        cmocka_unit_test_setup_teardown(test_nix_entry_narinfo, catalog_fx_setup,
                                        catalog_fx_teardown),
        cmocka_unit_test(test_parse_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
