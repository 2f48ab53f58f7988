/* Unit tests for scheduler/nixcache: nix32 against nix-hash, keys and
 * narinfo signatures against ones made by nix itself (fixtures below were
 * produced with `nix-store --generate-binary-cache-key` and
 * `nix store sign`, Nix 2.8). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/hash.h"
#include "nix/nixcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *fx_sec =
    "test-key-1:8N4sTlk2levuk5KewA5TqHViDdtjcqAOBQHnVbs+bscJd77H6Bx0k2xyxYDWqUM7"
    "xL9hVXdU1Z5RvqxILbHI5w==";
static const char *fx_pub = "test-key-1:CXe+x+gcdJNscsWA1qlDO8S/YVV3VNWeUb6sSC2xyOc=";
static const char *fx_path = "/nix/store/ak0grpkfjcprma2z0ar21lfyjxbv4xbn-kiln-fx";
static const char *fx_narhash = "f9da6a1fac56e5077ea776efc97eb18dd7b20cbb812fd290f431e01b810baebe";
static const char *fx_narhash32 = "1gmf1f0ipq1iyj8d4bw1pc6b5mwdn5zckvvnlxz0granmhgnmnpr";
static const char *fx_ref = "h4s6cjyg0f8f3qqj2fqykwwvpq9gpnl1-kiln-fx-dep";
static const char *fx_sig =
    "test-key-1:hMqZ7lZovkcnxlEU0/unC9PasV3hsYDmVg2W/RlHJffPDtK8C1MnV01x4JEEX2"
    "srLCkbt6d0xLd6Lb1MAAmQBg==";

static void test_nix32_fixtures(void **state)
{
    (void)state;
    unsigned char h[32], back[32];
    char out[KILN_NIX32_SHA256_LEN + 1];
    assert_int_equal(kiln_unhex(fx_narhash, h, 32), KILN_OK);
    kiln_nix32(h, 32, out);
    assert_string_equal(out, fx_narhash32);
    assert_int_equal(kiln_nix32_decode(out, back, 32), KILN_OK);
    assert_memory_equal(h, back, 32);
    memset(h, 0, 32);
    h[31] = 1;
    kiln_nix32(h, 32, out);
    assert_string_equal(out, "0080000000000000000000000000000000000000000000000000");
    memset(h, 0xff, 32);
    kiln_nix32(h, 32, out);
    assert_string_equal(out, "1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
    assert_int_equal(
        kiln_nix32_decode("2zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", back, 32),
        KILN_EPARSE); /* overflows 256 bits */
    assert_int_equal(
        kiln_nix32_decode("e080000000000000000000000000000000000000000000000000", back, 32),
        KILN_EPARSE); /* 'e' is not in the alphabet */
    assert_int_equal(kiln_nix32_decode("00", back, 32), KILN_EPARSE);
}

/* Random hashes against the real nix-hash when it is installed. */
static void test_nix32_vs_nix_hash(void **state)
{
    (void)state;
    if (access("/usr/bin/nix-hash", X_OK) != 0) skip();
    for (int i = 0; i < 5; i++) {
        unsigned char h[32];
        char hex[65], mine[KILN_NIX32_SHA256_LEN + 1], cmd[200], theirs[100] = "";
        kiln_random_bytes(h, 32);
        kiln_hex(h, 32, hex);
        kiln_nix32(h, 32, mine);
        snprintf(cmd, sizeof cmd, "nix-hash --type sha256 --to-base32 %s", hex);
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        assert_non_null(fgets(theirs, sizeof theirs, f));
        pclose(f);
        theirs[strcspn(theirs, "\n")] = 0;
        assert_string_equal(mine, theirs);
    }
}

static void test_key_parse_and_public(void **state)
{
    (void)state;
    struct kiln_nixkey k;
    struct kiln_error err = {0};
    assert_int_equal(kiln_nixkey_parse_secret(fx_sec, &k, &err), KILN_OK);
    assert_string_equal(k.name, "test-key-1");
    char pub[200];
    assert_int_equal(kiln_nixkey_public_line(&k, pub, sizeof pub), KILN_OK);
    assert_string_equal(pub, fx_pub);
    assert_int_equal(kiln_nixkey_parse_secret("nocolon", &k, &err), KILN_EPARSE);
    assert_int_equal(kiln_nixkey_parse_secret("a:AAAA", &k, &err), KILN_EPARSE);
    /* public half that does not belong to the seed */
    char bad[200];
    snprintf(bad, sizeof bad, "%s", fx_sec);
    bad[strlen(bad) - 4] = bad[strlen(bad) - 4] == 'A' ? 'B' : 'A';
    assert_int_not_equal(kiln_nixkey_parse_secret(bad, &k, &err), KILN_OK);
}

static void fixture_narinfo(struct kiln_narinfo *ni)
{
    memset(ni, 0, sizeof *ni);
    snprintf(ni->store_path, sizeof ni->store_path, "%s", fx_path);
    kiln_unhex(fx_narhash, ni->nar_hash, 32);
    memcpy(ni->file_hash, ni->nar_hash, 32);
    ni->nar_size = ni->file_size = 168;
    assert_int_equal(kiln_narinfo_add_ref(ni, fx_ref), KILN_OK);
    snprintf(ni->deriver, sizeof ni->deriver, "nk3d8njxyrf6ixs76iwds3b4q8gjz0dk-kiln-fx.drv");
}

static void test_fingerprint_and_signature_match_nix(void **state)
{
    (void)state;
    struct kiln_nixkey k;
    assert_int_equal(kiln_nixkey_parse_secret(fx_sec, &k, NULL), KILN_OK);
    struct kiln_narinfo ni;
    fixture_narinfo(&ni);
    struct kiln_buf fp = {0};
    assert_int_equal(kiln_narinfo_fingerprint(&ni, &fp), KILN_OK);
    char want[512];
    snprintf(want, sizeof want, "1;%s;sha256:%s;168;/nix/store/%s", fx_path, fx_narhash32, fx_ref);
    assert_string_equal(fp.data, want);
    kiln_buf_free(&fp);
    assert_int_equal(kiln_narinfo_sign(&ni, &k), KILN_OK);
    assert_string_equal(ni.sig, fx_sig); /* ed25519 is deterministic */
    assert_true(kiln_narinfo_verify(&ni, "test-key-1", k.pub));
    assert_false(kiln_narinfo_verify(&ni, "other-key", k.pub));
    ni.nar_size++;
    assert_false(kiln_narinfo_verify(&ni, "test-key-1", k.pub));
    kiln_narinfo_free(&ni);
}

static void test_narinfo_format_parse_roundtrip(void **state)
{
    (void)state;
    struct kiln_nixkey k;
    assert_int_equal(kiln_nixkey_parse_secret(fx_sec, &k, NULL), KILN_OK);
    struct kiln_narinfo ni, back;
    fixture_narinfo(&ni);
    assert_int_equal(kiln_narinfo_sign(&ni, &k), KILN_OK);
    struct kiln_buf t = {0};
    assert_int_equal(kiln_narinfo_format(&ni, &t), KILN_OK);
    assert_non_null(
        strstr(t.data, "URL: nar/1gmf1f0ipq1iyj8d4bw1pc6b5mwdn5zckvvnlxz0granmhgnmnpr.nar\n"));
    assert_non_null(strstr(t.data, "Compression: none\n"));
    assert_non_null(strstr(t.data, "References: h4s6cjyg0f8f3qqj2fqykwwvpq9gpnl1-kiln-fx-dep\n"));
    struct kiln_error err = {0};
    assert_int_equal(kiln_narinfo_parse(t.data, t.len, &back, &err), KILN_OK);
    assert_string_equal(back.store_path, fx_path);
    assert_int_equal(back.nar_size, 168);
    assert_int_equal(back.nrefs, 1);
    assert_true(kiln_narinfo_verify(&back, "test-key-1", k.pub));
    kiln_narinfo_free(&back);
    kiln_narinfo_free(&ni);
    kiln_buf_free(&t);
}

static void test_narinfo_parse_rejects(void **state)
{
    (void)state;
    struct kiln_narinfo ni;
    struct kiln_error err = {0};
    const char *bad[] = {
        "StorePath: /etc/passwd\nNarHash: sha256:00\nNarSize: 1\n",
        "StorePath: /nix/store/ak0grpkfjcprma2z0ar21lfyjxbv4xbn-x\nNarSize: 1\n",
        "StorePath: /nix/store/ak0grpkfjcprma2z0ar21lfyjxbv4xbn-x\nNarHash: sha256:zz\nNarSize: "
        "1\n",
        "StorePath: /nix/store/ak0grpkfjcprma2z0ar21lfyjxbv4xbn-x\nNarHash: sha256:"
        "1gmf1f0ipq1iyj8d4bw1pc6b5mwdn5zckvvnlxz0granmhgnmnpr\nNarSize: -1\n",
        "StorePath: /nix/store/ak0grpkfjcprma2z0ar21lfyjxbv4xbn-x\nReferences: ../../etc\n",
        "garbage",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_not_equal(kiln_narinfo_parse(bad[i], strlen(bad[i]), &ni, &err), KILN_OK);
        assert_true(strlen(err.msg) > 0);
    }
    assert_false(kiln_nix_store_path_valid("/nix/store/ak0grpkfjcprma2z0ar21lfyjxbv4xbn-a/b", 0));
    assert_false(kiln_nix_store_path_valid("/nix/store/ak0grpkfjcprma2z0ar21lfyjxbv4xbn-..", 0));
    assert_true(kiln_nix_store_path_valid(fx_path, 0));
}

static void test_key_create_and_reload(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln-nixkey-XXXXXX", path[200];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/keys/k.sec", dir);
    struct kiln_nixkey a, b;
    assert_int_equal(kiln_nixkey_load_or_create(path, "made-1", &a, NULL), KILN_OK);
    assert_int_equal(kiln_nixkey_load_or_create(path, "ignored", &b, NULL), KILN_OK);
    assert_string_equal(b.name, "made-1");
    assert_memory_equal(a.seed, b.seed, 32);
    unsigned char sig[64];
    assert_int_equal(kiln_ed25519_sign(&a, "hi", 2, sig), KILN_OK);
    assert_int_equal(kiln_ed25519_verify(b.pub, "hi", 2, sig), 1);
    assert_int_equal(kiln_ed25519_verify(b.pub, "ho", 2, sig), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nix32_fixtures),
        cmocka_unit_test(test_nix32_vs_nix_hash),
        cmocka_unit_test(test_key_parse_and_public),
        cmocka_unit_test(test_fingerprint_and_signature_match_nix),
        cmocka_unit_test(test_narinfo_format_parse_roundtrip),
        cmocka_unit_test(test_narinfo_parse_rejects),
        cmocka_unit_test(test_key_create_and_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
