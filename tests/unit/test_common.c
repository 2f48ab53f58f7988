/* Unit tests for common/: buffers, hashing, tokens, files, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "common/json_field.h"
#include "common/json_out.h"
#include "common/spawn.h"
#include "common/token.h"
#include "common/units.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void test_buf_append_and_limit(void **state)
{
    (void)state;
    struct kiln_buf b = {0};
    b.max = 8;
    assert_int_equal(kiln_buf_puts(&b, "abcd"), KILN_OK);
    assert_int_equal(kiln_buf_printf(&b, "%d", 123), KILN_OK);
    assert_string_equal(b.data, "abcd123");
    assert_int_equal(kiln_buf_puts(&b, "xy"), KILN_ELIMIT);
    assert_int_equal(b.len, 7);
    kiln_buf_consume(&b, 4);
    assert_string_equal(b.data, "123");
    kiln_buf_free(&b);
}

/* kiln_json_out_*: whatever the bytes, the text parses; valid UTF-8 comes
 * back as it went in; each byte of an invalid sequence becomes U+FFFD. */
static void test_json_out(void **state)
{
    (void)state;
    struct kiln_buf b = {0};
    assert_int_equal(kiln_json_out_str(&b, "a\"b\\c\n\x01\xc3\xa9"), KILN_OK);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\"");
    kiln_buf_reset(&b);
    assert_int_equal(kiln_json_out_str(&b, NULL), KILN_OK);
    assert_string_equal(b.data, "null");
    kiln_buf_reset(&b);
    /* overlong '/', a lone continuation byte, a surrogate, a cut sequence */
    assert_int_equal(kiln_json_out_str(&b, "\xc0\xaf|\x80|\xed\xa0\x80|\xe2\x82"), KILN_OK);
    assert_string_equal(b.data, "\"\\ufffd\\ufffd|\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\"");
    kiln_buf_reset(&b);
    long long ints[] = {0, 7, -7, 1234567890123LL, -9223372036854775807LL - 1};
    const char *want[] = {"0", "7", "-7", "1234567890123", "-9223372036854775808"};
    for (size_t i = 0; i < 5; i++) {
        kiln_buf_reset(&b);
        assert_int_equal(kiln_json_out_int(&b, ints[i]), KILN_OK);
        assert_string_equal(b.data, want[i]);
    }
    uint32_t x = 12345;
    for (int round = 0; round < 20000; round++) {
        char in[24];
        size_t n = 1 + round % 23;
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            unsigned char c = (unsigned char)(x >> 16);
            in[i] = (char)(c ? c : 'z');
        }
        in[n] = '\0';
        kiln_buf_reset(&b);
        assert_int_equal(kiln_json_out_str(&b, in), KILN_OK);
        json_error_t je;
        json_t *v = json_loads(b.data, JSON_DECODE_ANY, &je);
        if (!v) fail_msg("not JSON: %s (%s)", b.data, je.text);
        json_t *orig = json_stringn(in, n); /* NULL when in is not valid UTF-8 */
        if (orig) assert_true(json_equal(v, orig));
        json_decref(orig);
        json_decref(v);
    }
    kiln_buf_free(&b);
}

static void test_sha256_known_vector(void **state)
{
    (void)state;
    char hex[KILN_SHA256_HEX];
    assert_int_equal(kiln_sha256_hex("abc", 3, hex), KILN_OK);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_hmac_rfc4231_case2(void **state)
{
    (void)state;
    unsigned char out[KILN_SHA256_LEN];
    char hex[KILN_SHA256_HEX];
    const char *msg = "what do ya want for nothing?";
    assert_int_equal(kiln_hmac_sha256("Jefe", 4, msg, strlen(msg), out), KILN_OK);
    kiln_hex(out, sizeof out, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_tokens_and_roles(void **state)
{
    (void)state;
    char t1[KILN_TOKEN_LEN], t2[KILN_TOKEN_LEN];
    assert_int_equal(kiln_token_generate(t1), KILN_OK);
    assert_int_equal(kiln_token_generate(t2), KILN_OK);
    assert_int_equal(strlen(t1), KILN_TOKEN_LEN - 1);
    assert_string_not_equal(t1, t2);
    enum kiln_role r;
    assert_int_equal(kiln_role_parse("worker", &r), KILN_OK);
    assert_int_equal(r, KILN_ROLE_WORKER);
    assert_int_equal(kiln_role_parse("root", &r), KILN_EINVAL);
    assert_true(kiln_role_allows(KILN_ROLE_ADMIN, KILN_ROLE_WORKER));
    assert_true(kiln_role_allows(KILN_ROLE_SUBMIT, KILN_ROLE_READ));
    assert_false(kiln_role_allows(KILN_ROLE_READ, KILN_ROLE_SUBMIT));
    assert_false(kiln_role_allows(KILN_ROLE_WORKER, KILN_ROLE_SUBMIT));
    assert_true(kiln_ct_streq("abc", "abc"));
    assert_false(kiln_ct_streq("abc", "abd"));
}

static void test_atomic_write_and_read_limit(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    assert_int_equal(kiln_path_join(path, sizeof path, dir, "f.txt"), KILN_OK);
    assert_int_equal(kiln_write_file_atomic(path, "hello", 5, 0644), KILN_OK);
    struct kiln_buf b = {0};
    assert_int_equal(kiln_read_file(path, 0, &b), KILN_OK);
    assert_string_equal(b.data, "hello");
    kiln_buf_free(&b);
    assert_int_equal(kiln_read_file(path, 3, &b), KILN_ELIMIT);
    kiln_buf_free(&b);
    assert_int_equal(kiln_read_file("/nonexistent/x", 0, &b), KILN_ENOTFOUND);
    unlink(path);
    rmdir(dir);
}

static void test_error_codes(void **state)
{
    (void)state;
    struct kiln_error e;
    assert_int_equal(kiln_fail(&e, KILN_ENOTFOUND, "job %d", 7), KILN_ENOTFOUND);
    assert_string_equal(e.msg, "job 7");
    assert_int_equal(kiln_err_http_status(KILN_ENOTFOUND), 404);
    assert_int_equal(kiln_err_http_status(KILN_EAUTH), 401);
    assert_string_equal(kiln_code_name(KILN_EPERM), "forbidden");
    /* One map to exit codes: a conflict is 6 whichever command meets it. */
    assert_int_equal(kiln_err_exit_code(KILN_ECONFLICT), KILN_EXIT_CONFLICT);
    assert_int_equal(kiln_err_exit_code(KILN_ESTATE), KILN_EXIT_CONFLICT);
    assert_int_equal(kiln_err_exit_code(KILN_EINVAL), KILN_EXIT_FAIL);
    assert_int_equal(kiln_err_exit_code(KILN_ENOTFOUND), KILN_EXIT_NOTFOUND);
    assert_int_equal(kiln_err_exit_code(-999), KILN_EXIT_INTERNAL);
    for (int c = KILN_OK; c >= KILN_EUNSUPPORTED; c--)
        assert_int_not_equal(kiln_err_exit_code(c), KILN_EXIT_USAGE);
    /* HTTP answers: the body's code wins, else the status. */
    assert_int_equal(kiln_err_from_http(409, "bad_state"), KILN_ESTATE);
    assert_int_equal(kiln_err_exit_code(kiln_err_from_http(409, NULL)), KILN_EXIT_CONFLICT);
    assert_int_equal(kiln_err_exit_code(kiln_err_from_http(500, "internal")), KILN_EXIT_INTERNAL);
    assert_int_equal(kiln_err_exit_code(kiln_err_from_http(403, NULL)), KILN_EXIT_AUTH);
    assert_int_equal(kiln_err_from_http(200, NULL), KILN_OK);
}

static void test_units(void **state)
{
    (void)state;
    uint64_t b;
    assert_int_equal(kiln_parse_size("1G", &b), KILN_OK);
    assert_true(b == 1073741824ull);
    assert_int_equal(kiln_parse_size("512MiB", &b), KILN_OK);
    assert_true(b == 536870912ull);
    assert_int_equal(kiln_parse_size("1.5T", &b), KILN_OK);
    assert_int_equal(kiln_parse_size("12Q", &b), KILN_EINVAL);
    assert_int_equal(kiln_parse_size("", &b), KILN_EINVAL);
    char s[32];
    kiln_format_size(1073741824ull, s, sizeof s);
    assert_string_equal(s, "1 GiB");
    kiln_format_size(2040109465ull, s, sizeof s);
    assert_string_equal(s, "1.9 GiB");
    kiln_format_duration(7980, s, sizeof s);
    assert_string_equal(s, "2h13m");
    kiln_format_duration(65, s, sizeof s);
    assert_string_equal(s, "1m05s");
}

/* Properties only: the wall clock is past 2020 and near time(), the
 * monotonic clock never goes backwards. */
static void test_clock(void **state)
{
    (void)state;
    double w = kiln_clock_wall();
    assert_true(w > 1.58e9);
    assert_true(w - (double)time(NULL) < 2.0 && (double)time(NULL) - w < 2.0);
    double a = kiln_clock_mono(), b = kiln_clock_mono();
    assert_true(b >= a);
}

/* Each reader: default when absent or null, the value when right, and a
 * sentence naming the field when wrong. */
static void test_json_field(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:s,s:i,s:b,s:[],s:n,s:s#,s:s}", "name", "a", "cores", 8, "on", 1,
                          "list", "gone", "nul", "a\0b", (size_t)3, "n", "12");
    struct kiln_error err = {0};
    const char *s;
    long long x;
    int b;
    json_t *a;
    char buf[2];
    assert_int_equal(kiln_json_field_str(o, "name", 1, &s, &err), KILN_OK);
    assert_string_equal(s, "a");
    assert_int_equal(kiln_json_field_str(o, "gone", 0, &s, &err), KILN_OK);
    assert_null(s);
    assert_int_equal(kiln_json_field_str(o, "missing", 1, &s, &err), KILN_EINVAL);
    assert_string_equal(err.msg, "missing: is required");
    assert_int_equal(kiln_json_field_str(o, "cores", 0, &s, &err), KILN_EINVAL);
    assert_string_equal(err.msg, "cores: must be a string");
    assert_int_equal(kiln_json_field_str(o, "nul", 0, &s, &err), KILN_EINVAL);
    assert_int_equal(kiln_json_field_strcpy(o, "name", 1, buf, sizeof buf, &err), KILN_OK);
    assert_string_equal(buf, "a");
    assert_int_equal(kiln_json_field_strcpy(o, "n", 1, buf, sizeof buf, &err), KILN_ELIMIT);
    assert_int_equal(kiln_json_field_int(o, "cores", 1, 16, 1, &x, &err), KILN_OK);
    assert_true(x == 8);
    assert_int_equal(kiln_json_field_int(o, "missing", 1, 16, 3, &x, &err), KILN_OK);
    assert_true(x == 3);
    assert_int_equal(kiln_json_field_int(o, "cores", 1, 4, 1, &x, &err), KILN_EINVAL);
    assert_string_equal(err.msg, "cores: must be an integer from 1 to 4");
    assert_int_equal(kiln_json_field_int(o, "n", 1, 99, 1, &x, &err), KILN_EINVAL);
    assert_int_equal(kiln_json_want_int(json_object_get(o, "n"), "n", 1, 99, 1, &x, &err), KILN_OK);
    assert_true(x == 12);
    assert_int_equal(kiln_json_field_bool(o, "on", 0, &b, &err), KILN_OK);
    assert_int_equal(b, 1);
    assert_int_equal(kiln_json_field_bool(o, "gone", 1, &b, &err), KILN_OK);
    assert_int_equal(b, 1);
    assert_int_equal(kiln_json_field_bool(o, "name", 0, &b, &err), KILN_EINVAL);
    assert_int_equal(kiln_json_field_array(o, "list", 1, &a, &err), KILN_OK);
    assert_non_null(a);
    assert_int_equal(kiln_json_field_array(o, "name", 0, &a, &err), KILN_EINVAL);
    assert_string_equal(err.msg, "name: must be a list");
    assert_string_equal(kiln_json_str(o, "name"), "a");
    assert_null(kiln_json_str(o, "cores"));
    json_decref(o);
}

/* The spawn contract: output, env and cwd reach the program; a program that
 * cannot start reads as 127; a timeout ends the program and the children it
 * started (the grandchild's pipe end closes, so capture returns). */
static void test_spawn(void **state)
{
    (void)state;
    struct kiln_error err = {0};
    struct kiln_spawn_result r;
    struct kiln_buf out = {0};
    char *env[] = {"KILN_SPAWN_T=yes", NULL};
    struct kiln_spawn_spec s = {.command = "echo $KILN_SPAWN_T; pwd; exit 3",
                                .cwd = "/",
                                .env_add = env,
                                .err_fd = KILN_SPAWN_NULL};
    assert_int_equal(kiln_spawn_capture(&s, 10000, 1 << 20, &out, &r, &err), KILN_OK);
    assert_string_equal(out.data, "yes\n/\n");
    assert_int_equal(r.exit_code, 3);
    assert_int_equal(kiln_spawn_status(&r, "t", &err), KILN_EIO);
    assert_string_equal(err.msg, "t failed (exit status 3)");
    kiln_buf_free(&out);

    char *none[] = {"/nonexistent/kiln-spawn-test", NULL};
    struct kiln_spawn_spec n = {.argv = none, .out_fd = KILN_SPAWN_NULL};
    assert_int_equal(kiln_spawn_run(&n, 1000, &r, &err), KILN_OK);
    assert_int_equal(r.exit_code, 127);
    struct kiln_spawn_proc p;
    assert_int_equal(kiln_spawn_start(&n, &p, &err), KILN_EUNSUPPORTED);

    struct kiln_spawn_spec slow = {.command = "sleep 600 & echo started; wait",
                                   .err_fd = KILN_SPAWN_NULL};
    assert_int_equal(kiln_spawn_capture(&slow, 300, 1 << 20, &out, &r, &err), KILN_OK);
    assert_int_equal(r.timed_out, 1);
    assert_string_equal(out.data, "started\n");
    kiln_buf_free(&out);

    struct kiln_spawn_spec big = {.command = "yes", .err_fd = KILN_SPAWN_NULL};
    assert_int_equal(kiln_spawn_capture(&big, 10000, 1000, &out, &r, &err), KILN_ELIMIT);
    kiln_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_append_and_limit),
        cmocka_unit_test(test_json_out),
        cmocka_unit_test(test_sha256_known_vector),
        cmocka_unit_test(test_hmac_rfc4231_case2),
        cmocka_unit_test(test_tokens_and_roles),
        cmocka_unit_test(test_atomic_write_and_read_limit),
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_json_field),
        cmocka_unit_test(test_spawn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
