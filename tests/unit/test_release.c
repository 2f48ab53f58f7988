/* Unit tests for catalog/release.c: entries held in a release are invisible
 * (get, list, narinfo) until it completes in one transaction; a newer commit
 * supersedes the branch's open release; complete is once only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "catalog_fixture.h"

#include "catalog/catalog.h"
#include "catalog/release.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A blob with text, published as name/ver held in release rel (0: none). */
static int64_t put(struct kiln_catalog *c, const char *name, const char *ver, int64_t rel)
{
    struct kiln_error err = {0};
    struct kiln_catalog_upload *u;
    char text[128], digest[KILN_DIGEST_STR];
    uint64_t size;
    snprintf(text, sizeof text, "%s %s", name, ver);
    assert_int_equal(kiln_catalog_upload_begin(c, NULL, -1, &u, &err), KILN_OK);
    assert_int_equal(kiln_catalog_upload_write(u, text, strlen(text), &err), KILN_OK);
    assert_int_equal(kiln_catalog_upload_finish(u, digest, &size, &err), KILN_OK);
    json_t *m = json_pack("{s:s,s:s,s:s}", "name", name, "version", ver, "branch", "main");
    int64_t id = 0;
    assert_int_equal(kiln_catalog_publish_held(c, m, digest, rel, &id, NULL, &err), KILN_OK);
    json_decref(m);
    return id;
}

static size_t visible(struct kiln_catalog *c)
{
    json_t *l = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_catalog_list(c, NULL, &l, &err), KILN_OK);
    size_t n = json_array_size(l);
    json_decref(l);
    return n;
}

static void test_held_until_complete(void **state)
{
    struct catalog_fx *f = *state;
    struct kiln_error err = {0};
    int64_t r1, again;
    int created, done;
    assert_int_equal(kiln_release_open(f->c, "main", "aaaa111", 1.0, &r1, &created, &err), KILN_OK);
    assert_int_equal(created, 1);
    assert_int_equal(kiln_release_open(f->c, "main", "aaaa111", 2.0, &again, &created, &err),
                     KILN_OK);
    assert_int_equal(again, r1);
    assert_int_equal(created, 0);
    put(f->c, "plain", "1", 0);
    int64_t a = put(f->c, "v-a", "aaaa111", r1), b = put(f->c, "v-b", "aaaa111", r1);
    assert_int_equal(visible(f->c), 1); /* only the ordinary entry */
    json_t *e = NULL;
    assert_int_equal(kiln_catalog_get(f->c, a, &e, &err), KILN_ENOTFOUND);
    json_t *rel = NULL;
    assert_int_equal(kiln_release_get(f->c, r1, &rel, &err), KILN_OK);
    assert_string_equal(json_string_value(json_object_get(rel, "state")), "open");
    assert_int_equal(json_array_size(json_object_get(rel, "entries")), 2);
    json_decref(rel);
    json_t *held = json_pack("{s:b}", "held", 1), *l = NULL;
    assert_int_equal(kiln_catalog_list(f->c, held, &l, &err), KILN_OK);
    assert_int_equal(json_array_size(l), 3); /* maintenance sees them */
    json_decref(l);
    json_decref(held);

    assert_int_equal(kiln_release_complete(f->c, r1, 3.0, &done, &err), KILN_OK);
    assert_int_equal(done, 1);
    assert_int_equal(visible(f->c), 3);
    assert_int_equal(kiln_catalog_get(f->c, b, &e, &err), KILN_OK);
    json_decref(e);
    assert_int_equal(kiln_release_complete(f->c, r1, 4.0, &done, &err), KILN_OK);
    assert_int_equal(done, 0); /* once only */
}

static void test_newer_commit_supersedes(void **state)
{
    struct catalog_fx *f = *state;
    struct kiln_error err = {0};
    int64_t r1, r2, other;
    int created, done;
    assert_int_equal(kiln_release_open(f->c, "main", "c1c1c1c", 1.0, &r1, NULL, &err), KILN_OK);
    assert_int_equal(kiln_release_open(f->c, "dev", "d1d1d1d", 1.0, &other, NULL, &err), KILN_OK);
    put(f->c, "v-a", "c1c1c1c", r1);
    assert_int_equal(kiln_release_open(f->c, "main", "c2c2c2c", 2.0, &r2, &created, &err), KILN_OK);
    assert_int_equal(created, 1);
    json_t *rel = NULL;
    assert_int_equal(kiln_release_get(f->c, r1, &rel, &err), KILN_OK);
    assert_string_equal(json_string_value(json_object_get(rel, "state")), "superseded");
    assert_int_equal(json_integer_value(json_object_get(rel, "superseded_by")), r2);
    json_decref(rel);
    assert_int_equal(kiln_release_get(f->c, other, &rel, &err), KILN_OK); /* other branch */
    assert_string_equal(json_string_value(json_object_get(rel, "state")), "open");
    json_decref(rel);
    assert_int_equal(kiln_release_complete(f->c, r1, 3.0, &done, &err), KILN_OK);
    assert_int_equal(done, 0); /* a superseded release never completes */
    assert_int_equal(visible(f->c), 0);
    json_t *filt = json_pack("{s:s}", "state", "superseded"), *l = NULL;
    assert_int_equal(kiln_release_list(f->c, filt, &l, &err), KILN_OK);
    assert_int_equal(json_array_size(l), 1);
    json_decref(l);
    json_decref(filt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_held_until_complete, catalog_fx_setup,
                                        catalog_fx_teardown),
        cmocka_unit_test_setup_teardown(test_newer_commit_supersedes, catalog_fx_setup,
                                        catalog_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
