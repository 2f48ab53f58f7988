/* Unit tests for catalog/staging (issue 15): plan, a cut upload resumed by
 * offset, signing and serving, a NAR that does not match its NarHash, the
 * claim of another attempt, promotion lookup, retention; and nix/nar's
 * parser of `nix-store --dump-db`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "catalog_fixture.h"

#include "catalog/catalog.h"
#include "catalog/staging.h"
#include "common/hash.h"
#include "nix/nar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define P1 "/nix/store/11111111111111111111111111111111-torchlike"
#define P2 "/nix/store/22222222222222222222222222222222-vllmlike"
#define HP1 "11111111111111111111111111111111"
#define HP2 "22222222222222222222222222222222"

static json_t *info(const char *path, const char *data, const char *ref)
{
    char hex[65], digest[72];
    kiln_sha256_hex(data, strlen(data), hex);
    snprintf(digest, sizeof digest, "sha256:%s", hex);
    return json_pack("{s:s,s:s,s:I,s:[s*],s:s}", "store_path", path, "nar_hash", digest, "nar_size",
                     (json_int_t)strlen(data), "references", ref, "deriver", "");
}

static json_t *plan(struct kiln_catalog *c, json_t *paths, int64_t attempt, int *have)
{
    json_t *missing = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_staging_plan(c, 7, attempt, paths, 1000.0, &missing, have, &err),
                     KILN_OK);
    return missing;
}

/* Upload data[from..to) of hashpart for job 7. */
static int put(struct kiln_catalog *c, const char *hp, int64_t attempt, const char *data,
               size_t from, size_t to, int finish, struct kiln_error *err)
{
    struct kiln_staging_upload *u = NULL;
    uint64_t size = 0;
    int rc = kiln_staging_upload_open(c, hp, 7, attempt, from, &size, &u, err);
    if (rc != KILN_OK) return rc;
    rc = kiln_staging_upload_write(u, data + from, to - from, err);
    if (rc != KILN_OK || !finish) {
        kiln_staging_upload_close(u);
        return rc;
    }
    int frc = kiln_staging_upload_finish(u, err);
    struct kiln_error ce = {0};
    rc = kiln_staging_commit(u, frc == KILN_OK, 2000.0, &ce);
    return frc != KILN_OK ? frc : rc;
}

static void test_resume_sign_serve(void **state)
{
    struct catalog_fx *f = *state;
    const char *d1 = "torch NAR bytes", *d2 = "vllm NAR bytes, a little longer";
    json_t *paths = json_pack("[o,o]", info(P1, d1, NULL), info(P2, d2, P1));
    int have = -1;
    json_t *m = plan(f->c, paths, 1, &have);
    assert_int_equal(have, 0);
    assert_int_equal(json_array_size(m), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(m, 0), "offset")), 0);
    json_decref(m);
    /* Not served while pending. */
    struct kiln_buf b = {0};
    struct kiln_error err = {0};
    assert_int_equal(kiln_catalog_narinfo(f->c, HP2, 1, &b, &err), KILN_ENOTFOUND);
    /* The link is cut after 10 bytes; the plan says where to resume. */
    assert_int_equal(put(f->c, HP2, 1, d2, 0, 10, 0, &err), KILN_OK);
    m = plan(f->c, paths, 1, &have);
    json_t *e2 = json_array_get(m, 1);
    assert_string_equal(json_string_value(json_object_get(e2, "store_path")), P2);
    assert_int_equal(json_integer_value(json_object_get(e2, "offset")), 10);
    json_decref(m);
    /* Past the bytes held: refused with where to resume. */
    assert_int_equal(put(f->c, HP2, 1, d2, 12, strlen(d2), 1, &err), KILN_ECONFLICT);
    /* Another attempt may not write this claim without claiming it. */
    assert_int_equal(put(f->c, HP2, 2, d2, 10, strlen(d2), 1, &err), KILN_ESTATE);
    assert_int_equal(put(f->c, HP2, 1, d2, 10, strlen(d2), 1, &err), KILN_OK);
    assert_int_equal(put(f->c, HP1, 1, d1, 0, strlen(d1), 1, &err), KILN_OK);
    /* Served and signed, with its reference. */
    assert_int_equal(kiln_catalog_narinfo(f->c, HP2, 1, &b, &err), KILN_OK);
    assert_non_null(strstr(b.data, "StorePath: " P2));
    assert_non_null(strstr(b.data, "References: 11111111111111111111111111111111-torchlike"));
    assert_non_null(strstr(b.data, "Sig: kiln-cache-1:"));
    /* Staged, not published: test hosts (staged=1) only; a reader gets
     * neither its narinfo nor its NAR (issue 15: a held release leaks
     * nothing). */
    char nar[64], np[4096];
    uint64_t nsz = 0;
    const char *url = strstr(b.data, "URL: nar/");
    assert_non_null(url);
    snprintf(nar, sizeof nar, "%.*s", (int)strcspn(url + 9, "\n"), url + 9);
    assert_int_equal(kiln_catalog_nar_path(f->c, nar, 1, np, sizeof np, &nsz, &err), KILN_OK);
    assert_int_equal(nsz, strlen(d2));
    assert_int_equal(kiln_catalog_nar_path(f->c, nar, 0, np, sizeof np, &nsz, &err),
                     KILN_ENOTFOUND);
    kiln_buf_reset(&b);
    assert_int_equal(kiln_catalog_narinfo(f->c, HP2, 0, &b, &err), KILN_ENOTFOUND);
    assert_int_equal(kiln_catalog_narinfo(f->c, HP1, 0, &b, &err), KILN_ENOTFOUND);
    /* Published (promoted), P2 is anyone's; so is P1, which it references
     * and which stays only staged: a reader needs the whole closure. */
    char hex2[65], dg2[72];
    kiln_sha256_hex(d2, strlen(d2), hex2);
    snprintf(dg2, sizeof dg2, "sha256:%s", hex2);
    json_t *meta = json_pack("{s:s,s:s,s:{s:s,s:[s],s:s}}", "name", "vllmlike", "version", "1",
                             "nix", "store_path", P2, "references", P1, "deriver", "");
    int64_t id = 0;
    int created = 0;
    assert_int_equal(kiln_catalog_publish(f->c, meta, dg2, &id, &created, &err), KILN_OK);
    json_decref(meta);
    kiln_buf_reset(&b);
    assert_int_equal(kiln_catalog_narinfo(f->c, HP2, 0, &b, &err), KILN_OK);
    kiln_buf_reset(&b);
    assert_int_equal(kiln_catalog_narinfo(f->c, HP1, 0, &b, &err), KILN_OK);
    assert_non_null(strstr(b.data, "StorePath: " P1));
    url = strstr(b.data, "URL: nar/");
    assert_non_null(url);
    snprintf(nar, sizeof nar, "%.*s", (int)strcspn(url + 9, "\n"), url + 9);
    assert_int_equal(kiln_catalog_nar_path(f->c, nar, 0, np, sizeof np, &nsz, &err), KILN_OK);
    kiln_buf_free(&b);
    assert_int_equal(kiln_catalog_verify(f->c, NULL, NULL, &err), 0);
    /* Nothing is asked for twice. */
    m = plan(f->c, paths, 1, &have);
    assert_int_equal(have, 2);
    assert_int_equal(json_array_size(m), 0);
    json_decref(m);
    /* Promotion finds it, with references as basenames. */
    char digest[72];
    uint64_t size = 0;
    json_t *nix = NULL;
    assert_int_equal(kiln_staging_lookup(f->c, P2, digest, &size, &nix, &err), 1);
    assert_int_equal(size, strlen(d2));
    assert_string_equal(json_string_value(json_array_get(json_object_get(nix, "references"), 0)),
                        "11111111111111111111111111111111-torchlike");
    json_decref(nix);
    json_decref(paths);
}

/* A cut upload's running hash carries over to the resume at its offset;
 * one that does not fit is dropped and the file is read back instead. */
static void test_hash_carries_over(void **state)
{
    struct catalog_fx *f = *state;
    const char *d = "0123456789abcdefghijklmnopqrstuvwxyz";
    json_t *paths = json_pack("[o,o]", info(P1, d, NULL), info(P2, d, NULL));
    int have = 0;
    json_decref(plan(f->c, paths, 1, &have));
    struct kiln_error err = {0};
    const char *hps[2] = {HP1, HP2}, *sps[2] = {P1, P2};
    for (int fit = 0; fit < 2; fit++) {
        struct kiln_staging_upload *u = NULL, *v = NULL;
        uint64_t size = 0;
        assert_int_equal(kiln_staging_upload_open(f->c, hps[fit], 7, 1, 0, &size, &u, &err),
                         KILN_OK);
        assert_int_equal(kiln_staging_upload_write(u, d, 12, &err), KILN_OK);
        struct kiln_staging_hash *h = kiln_staging_upload_keep_hash(u);
        assert_non_null(h);
        kiln_staging_upload_close(u);
        uint64_t off = fit ? 12 : 8;
        assert_int_equal(kiln_staging_upload_open(f->c, hps[fit], 7, 1, off, &size, &v, &err),
                         KILN_OK);
        kiln_staging_upload_resume_hash(v, h);
        assert_int_equal(kiln_staging_upload_write(v, d + off, strlen(d) - off, &err), KILN_OK);
        /* Either way the verdict is right: a carried hash that covered
         * other bytes would make this a mismatch. */
        assert_int_equal(kiln_staging_upload_finish(v, &err), KILN_OK);
        assert_int_equal(kiln_staging_commit(v, 1, 2000.0, &err), KILN_OK);
        char digest[72];
        json_t *nix = NULL;
        assert_int_equal(kiln_staging_lookup(f->c, sps[fit], digest, &size, &nix, &err), 1);
        json_decref(nix);
    }
    json_decref(paths);
}

static void test_mismatch_leaves_nothing(void **state)
{
    struct catalog_fx *f = *state;
    json_t *paths = json_pack("[o]", info(P1, "what nix recorded", NULL));
    int have = 0;
    json_decref(plan(f->c, paths, 1, &have));
    struct kiln_error err = {0};
    const char *other = "what is on disk!!"; /* same length, other bytes */
    assert_int_equal(strlen(other), strlen("what nix recorded"));
    assert_int_equal(put(f->c, HP1, 1, other, 0, strlen(other), 1, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "does not match the NarHash"));
    struct kiln_buf b = {0};
    assert_int_equal(kiln_catalog_narinfo(f->c, HP1, 1, &b, &err), KILN_ENOTFOUND);
    char p[256];
    snprintf(p, sizeof p, "%s/catalog/staging", f->dir);
    json_t *list = NULL;
    assert_int_equal(kiln_staging_list(f->c, &list, &err), KILN_OK);
    assert_int_equal(json_array_size(json_object_get(list, "staged")), 0);
    json_decref(list);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", p);
    assert_int_equal(system(cmd), 0);
    /* Too many bytes are refused as they arrive. */
    json_decref(plan(f->c, paths, 1, &have));
    assert_int_equal(put(f->c, HP1, 1, "what nix recorded and more", 0, 26, 0, &err), KILN_ELIMIT);
    json_decref(paths);
}

static void test_retention(void **state)
{
    struct catalog_fx *f = *state;
    json_t *paths = json_pack("[o,o]", info(P1, "one", NULL), info(P2, "two!", NULL));
    int have = 0;
    json_decref(plan(f->c, paths, 1, &have));
    struct kiln_error err = {0};
    assert_int_equal(put(f->c, HP1, 1, "one", 0, 3, 1, &err), KILN_OK);
    assert_int_equal(put(f->c, HP2, 1, "two!", 0, 4, 1, &err), KILN_OK);
    /* Size limit 4 bytes: the oldest unkept goes; a kept one stays. */
    json_t *keep = json_pack("[s]", P1);
    uint64_t n = 0, bytes = 0;
    assert_int_equal(kiln_staging_prune(f->c, 2001.0, 0, 4, keep, &n, &bytes, &err), KILN_OK);
    assert_int_equal(n, 1);
    assert_int_equal(bytes, 4);
    char digest[72];
    uint64_t size;
    json_t *nix = NULL;
    assert_int_equal(kiln_staging_lookup(f->c, P1, digest, &size, &nix, &err), 1);
    json_decref(nix);
    assert_int_equal(kiln_staging_lookup(f->c, P2, digest, &size, &nix, &err), 0);
    /* Age: kept paths survive it too; unkept ones go. */
    assert_int_equal(kiln_staging_prune(f->c, 1e9, 3600, 0, keep, &n, &bytes, &err), KILN_OK);
    assert_int_equal(kiln_staging_lookup(f->c, P1, digest, &size, &nix, &err), 1);
    json_decref(nix);
    json_decref(keep);
    /* By job id: what job 7 staged stays. */
    keep = json_pack("[i]", 7);
    assert_int_equal(kiln_staging_prune(f->c, 1e9, 3600, 0, keep, &n, &bytes, &err), KILN_OK);
    assert_int_equal(n, 0);
    json_decref(keep);
    keep = json_array();
    assert_int_equal(kiln_staging_prune(f->c, 1e9, 3600, 0, keep, &n, &bytes, &err), KILN_OK);
    assert_int_equal(n, 1);
    assert_int_equal(kiln_staging_lookup(f->c, P1, digest, &size, &nix, &err), 0);
    assert_int_equal(kiln_catalog_verify(f->c, NULL, NULL, &err), 0);
    json_decref(keep);
    json_decref(paths);
}

/* Issue 16: which outputs a build may report (kiln_staging_check_outputs). */
static void test_check_outputs(void **state)
{
    struct catalog_fx *f = *state;
    struct kiln_error err = {0};
    int have = 0;
    /* Job 7 plans P1 from a named derivation and stages it. (A path still
     * pending is taken over by the next plan that names it: staging.h.) */
    json_t *p1 = info(P1, "one", NULL);
    json_object_set_new(p1, "deriver",
                        json_string("/nix/store/dddddddddddddddddddddddddddddddd-one.drv"));
    json_t *paths = json_pack("[O]", p1);
    json_decref(plan(f->c, paths, 1, &have));
    assert_int_equal(put(f->c, HP1, 1, "one", 0, 3, 1, &err), KILN_OK);
    json_t *outs = json_pack("[s]", P1);
    assert_int_equal(kiln_staging_check_outputs(f->c, 7, outs, &err), KILN_OK);
    /* Job 8 never planned it: P1 is job 7's. */
    assert_int_equal(kiln_staging_check_outputs(f->c, 8, outs, &err), KILN_ECONFLICT);
    assert_non_null(strstr(err.msg, "staged for job 7"));
    /* Job 8 plans the same path from the same derivation (a second build of
     * it): P1 is its output too. From another derivation it is not. */
    json_t *missing = NULL;
    assert_int_equal(kiln_staging_plan(f->c, 8, 1, paths, 1000.0, &missing, &have, &err), KILN_OK);
    json_decref(missing);
    assert_int_equal(kiln_staging_check_outputs(f->c, 8, outs, &err), KILN_OK);
    json_object_set_new(p1, "deriver",
                        json_string("/nix/store/ffffffffffffffffffffffffffffffff-other.drv"));
    assert_int_equal(kiln_staging_plan(f->c, 9, 1, paths, 1000.0, &missing, &have, &err), KILN_OK);
    json_decref(missing);
    assert_int_equal(kiln_staging_check_outputs(f->c, 9, outs, &err), KILN_ECONFLICT);
    /* A job that planned something reports only what it planned; one that
     * planned nothing (no staging) may name paths staging does not hold. */
    json_t *p2 = json_pack("[s]", P2);
    assert_int_equal(kiln_staging_check_outputs(f->c, 7, p2, &err), KILN_ECONFLICT);
    assert_non_null(strstr(err.msg, "not in job 7's staging plan"));
    assert_int_equal(kiln_staging_check_outputs(f->c, 10, p2, &err), KILN_OK);
    json_decref(p2);
    json_decref(outs);
    json_decref(paths);
    json_decref(p1);
}

static void test_parse_dump_db(void **state)
{
    (void)state;
    char text[] = P2 "\n"
                     "340d1163a6e0c12948aa43a6fff5208c8bd19749fb8acaadb19056372f5201a8\n"
                     "20720\n"
                     "/nix/store/33333333333333333333333333333333-vllmlike.drv\n"
                     "1\n" P1 "\n" P1 "\n"
                     "7d8575afcbf5f8028cb283a1a3dfe110e534e117e46a9a93743c7deef985c961\n"
                     "19584\n"
                     "\n"
                     "0\n";
    json_t *out = NULL;
    struct kiln_error err = {0};
    assert_int_equal(kiln_nar_parse_dump_db(text, &out, &err), KILN_OK);
    assert_int_equal(json_array_size(out), 2);
    json_t *a = json_array_get(out, 0), *b = json_array_get(out, 1);
    assert_string_equal(json_string_value(json_object_get(a, "nar_hash")),
                        "sha256:340d1163a6e0c12948aa43a6fff5208c8bd19749fb8acaadb19056372f5201a8");
    assert_int_equal(json_integer_value(json_object_get(a, "nar_size")), 20720);
    assert_string_equal(json_string_value(json_array_get(json_object_get(a, "references"), 0)), P1);
    assert_string_equal(json_string_value(json_object_get(b, "deriver")), "");
    assert_int_equal(json_array_size(json_object_get(b, "references")), 0);
    json_decref(out);
    char bad[] = P1 "\nnot-a-hash\n12\n\n0\n";
    assert_int_equal(kiln_nar_parse_dump_db(bad, &out, &err), KILN_EPARSE);
    char refs[] =
        P1 "\n340d1163a6e0c12948aa43a6fff5208c8bd19749fb8acaadb19056372f5201a8\n1\n\n3\n" P1 "\n";
    assert_int_equal(kiln_nar_parse_dump_db(refs, &out, &err), KILN_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resume_sign_serve, catalog_fx_setup,
                                        catalog_fx_teardown),
        cmocka_unit_test_setup_teardown(test_hash_carries_over, catalog_fx_setup,
                                        catalog_fx_teardown),
        cmocka_unit_test_setup_teardown(test_mismatch_leaves_nothing, catalog_fx_setup,
                                        catalog_fx_teardown),
        cmocka_unit_test_setup_teardown(test_retention, catalog_fx_setup, catalog_fx_teardown),
        cmocka_unit_test_setup_teardown(test_check_outputs, catalog_fx_setup, catalog_fx_teardown),
        cmocka_unit_test(test_parse_dump_db),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
