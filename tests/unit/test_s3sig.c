/* Unit tests for scheduler/s3: the SigV4 signer against the examples AWS
 * publishes in "Signature Calculations for the Authorization Header:
 * Transferring Payload in a Single Chunk (AWS Signature Version 4)"
 * (examplebucket, AKIAIOSFODNN7EXAMPLE, 20130524T000000Z), plus helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "catalog/s3.h"

#include <stdio.h>
#include <string.h>

static const char *empty_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static void aws_cfg(struct kiln_s3_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->region, sizeof cfg->region, "us-east-1");
    snprintf(cfg->access_key, sizeof cfg->access_key, "AKIAIOSFODNN7EXAMPLE");
    snprintf(cfg->secret_key, sizeof cfg->secret_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
}

/* Example "GET Object": Range: bytes=0-9 on /test.txt. */
static void test_aws_get_object_example(void **state)
{
    (void)state;
    struct kiln_s3_cfg cfg;
    aws_cfg(&cfg);
    struct kiln_s3_header h[] = {{"Host", "examplebucket.s3.amazonaws.com"},
                                 {"Range", "bytes=0-9"},
                                 {"x-amz-content-sha256", empty_hash},
                                 {"x-amz-date", "20130524T000000Z"}};
    char auth[600];
    struct kiln_error err = {0};
    assert_int_equal(kiln_s3_sign(&cfg, "GET", "/test.txt", "", h, 4, empty_hash,
                                  "20130524T000000Z", auth, sizeof auth, &err),
                     KILN_OK);
    assert_string_equal(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/"
                              "s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;"
                              "x-amz-date,Signature="
                              "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

/* Example "GET Bucket Lifecycle": query parameter without a value. */
static void test_aws_get_lifecycle_example(void **state)
{
    (void)state;
    struct kiln_s3_cfg cfg;
    aws_cfg(&cfg);
    struct kiln_s3_header h[] = {{"Host", "examplebucket.s3.amazonaws.com"},
                                 {"x-amz-content-sha256", empty_hash},
                                 {"x-amz-date", "20130524T000000Z"}};
    char auth[600];
    assert_int_equal(kiln_s3_sign(&cfg, "GET", "/", "lifecycle", h, 3, empty_hash,
                                  "20130524T000000Z", auth, sizeof auth, NULL),
                     KILN_OK);
    assert_non_null(
        strstr(auth, "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"));
}

/* Example "Get Bucket (List Objects)": query parameters get sorted. */
static void test_aws_list_objects_example(void **state)
{
    (void)state;
    struct kiln_s3_cfg cfg;
    aws_cfg(&cfg);
    struct kiln_s3_header h[] = {{"Host", "examplebucket.s3.amazonaws.com"},
                                 {"x-amz-content-sha256", empty_hash},
                                 {"x-amz-date", "20130524T000000Z"}};
    char auth[600];
    assert_int_equal(kiln_s3_sign(&cfg, "GET", "/", "prefix=J&max-keys=2", h, 3, empty_hash,
                                  "20130524T000000Z", auth, sizeof auth, NULL),
                     KILN_OK);
    assert_non_null(
        strstr(auth, "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"));
}

static void test_uri_encode_and_keys(void **state)
{
    (void)state;
    char out[100];
    assert_int_equal(kiln_s3_uri_encode("a b/c$d~e", 1, out, sizeof out), KILN_OK);
    assert_string_equal(out, "a%20b/c%24d~e");
    assert_int_equal(kiln_s3_uri_encode("a/b", 0, out, sizeof out), KILN_OK);
    assert_string_equal(out, "a%2Fb");
    assert_int_equal(kiln_s3_uri_encode("abcdef", 0, out, 4), KILN_ELIMIT);
    assert_true(kiln_s3_key_valid("vllm/1.0/sha256-abc"));
    assert_false(kiln_s3_key_valid("../x"));
    assert_false(kiln_s3_key_valid("/abs"));
    assert_false(kiln_s3_key_valid(""));
    assert_false(kiln_s3_key_valid("a\nb"));
}

static void test_xml_value(void **state)
{
    (void)state;
    const char *x = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>b</Bucket>"
                    "<UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>";
    char out[64];
    assert_int_equal(kiln_s3_xml_value(x, strlen(x), "UploadId", out, sizeof out), KILN_OK);
    assert_string_equal(out, "VXBsb2FkIElE");
    assert_int_equal(kiln_s3_xml_value(x, strlen(x), "Nope", out, sizeof out), KILN_ENOTFOUND);
    const char *e = "<ETag>&quot;abc&quot;</ETag>";
    assert_int_equal(kiln_s3_xml_value(e, strlen(e), "ETag", out, sizeof out), KILN_OK);
    assert_string_equal(out, "\"abc\"");
    assert_int_equal(kiln_s3_xml_value("<A>unterminated", 15, "A", out, sizeof out), KILN_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aws_get_object_example),
        cmocka_unit_test(test_aws_get_lifecycle_example),
        cmocka_unit_test(test_aws_list_objects_example),
        cmocka_unit_test(test_uri_encode_and_keys),
        cmocka_unit_test(test_xml_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
