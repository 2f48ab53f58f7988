/* Unit tests for kernels-selftest/checks (runner, timeouts, CUDA error
 * reasons), kernels-selftest/hostcheck and kiln_selftest_run() with a
 * stand-in selftest binary (no GPU needed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/isa.h"
#include "kernels-selftest/checks.h"
#include "kernels-selftest/hostcheck.h"
#include "kernels-selftest/selftest.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void test_classify(void **state)
{
    (void)state;
    char r[KILN_CHECK_REASON_MAX];
    const char *o1 = "loading\nRuntimeError: CUDA error: no kernel image is available for "
                     "execution on the device\n";
    assert_int_equal(kiln_check_classify(o1, strlen(o1), r, sizeof r), 1);
    assert_non_null(strstr(r, "no kernel image is available"));
    const char *o2 = "RuntimeError: No supported CUDA architectures found for major versions [10]\n"
                     "later: an illegal memory access was encountered\n";
    assert_int_equal(kiln_check_classify(o2, strlen(o2), r, sizeof r), 1);
    /* The first error wins and the architectures are quoted. */
    assert_non_null(strstr(r, "only for other GPU architectures"));
    assert_non_null(strstr(r, "major versions [10]"));
    const char *o3 = "CUDA error: an illegal memory access was encountered";
    assert_int_equal(kiln_check_classify(o3, strlen(o3), r, sizeof r), 1);
    assert_string_equal(r, "a kernel made an illegal memory access");
    const char *o4 = "RuntimeError: Error Internal";
    assert_int_equal(kiln_check_classify(o4, strlen(o4), r, sizeof r), 1);
    assert_non_null(strstr(r, "Error Internal"));
    const char *o5 = "all good\n";
    assert_int_equal(kiln_check_classify(o5, strlen(o5), r, sizeof r), 0);
    /* Binary junk in the quoted line stays printable. */
    const char o6[] = "No supported CUDA architectures found for major versions \x01\xff[10]";
    assert_int_equal(kiln_check_classify(o6, sizeof o6 - 1, r, sizeof r), 1);
    for (const char *p = r; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
}

static char logpath[64];

static int setup_log(void **state)
{
    (void)state;
    snprintf(logpath, sizeof logpath, "/tmp/kiln-test-checks-XXXXXX");
    int fd = mkstemp(logpath);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

static int teardown_log(void **state)
{
    (void)state;
    unlink(logpath);
    return 0;
}

static void run_sh(const char *cmd, long timeout_ms, struct kiln_check_result *r)
{
    struct kiln_check_spec s = {
        .name = "t", .command = cmd, .timeout_ms = timeout_ms, .log_path = logpath};
    struct kiln_error err;
    assert_int_equal(kiln_check_run(&s, r, &err), KILN_OK);
}

static void test_run_pass_fail(void **state)
{
    (void)state;
    struct kiln_check_result r;
    run_sh("echo hello", 10000, &r);
    assert_int_equal(r.passed, 1);
    assert_int_equal(r.exit_code, 0);
    run_sh("exit 3", 10000, &r);
    assert_int_equal(r.passed, 0);
    assert_string_equal(r.reason, "exited with status 3");
    run_sh("echo 'CUDA error: an illegal memory access was encountered' >&2; exit 1", 10000, &r);
    assert_int_equal(r.passed, 0);
    assert_string_equal(r.reason, "a kernel made an illegal memory access");
    /* The next failure must not be blamed on the earlier command's output
     * in the same log (seen on the GPU machine before this was fixed). */
    run_sh("exit 4", 10000, &r);
    assert_string_equal(r.reason, "exited with status 4");
    run_sh("kill -SEGV $$", 10000, &r);
    assert_int_equal(r.term_signal, SIGSEGV);
    assert_non_null(strstr(r.reason, "killed by signal 11"));
    struct kiln_buf b = {0};
    assert_int_equal(kiln_read_file(logpath, 1 << 20, &b), KILN_OK);
    assert_non_null(strstr(b.data, "hello\n"));
    kiln_buf_free(&b);

    char *argv[] = {"/nonexistent/kiln-selftest", NULL};
    struct kiln_check_spec s = {.name = "t", .argv = argv, .timeout_ms = 5000, .log_path = logpath};
    struct kiln_error err;
    assert_int_equal(kiln_check_run(&s, &r, &err), KILN_OK);
    assert_int_equal(r.exit_code, 127);
    assert_non_null(strstr(r.reason, "could not be started"));
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_timeouts(void **state)
{
    (void)state;
    struct kiln_check_result r;
    double t0 = now();
    run_sh("sleep 30", 300, &r);
    assert_true(now() - t0 < 5);
    assert_int_equal(r.timed_out, 1);
    assert_int_equal(r.passed, 0);
    assert_non_null(strstr(r.reason, "timed out after 0.3 s"));
    /* A check that ignores SIGTERM is killed 2 s later. */
    t0 = now();
    run_sh("trap '' TERM; echo 'no kernel image is available for execution on the device'; "
           "while :; do sleep 1; done",
           300, &r);
    assert_true(now() - t0 < 6);
    assert_int_equal(r.timed_out, 1);
    assert_int_equal(r.term_signal, SIGKILL);
    assert_non_null(strstr(r.reason, "before that: no kernel image"));
}

static void test_leftover_children_killed(void **state)
{
    (void)state;
    char pidfile[] = "/tmp/kiln-test-pid-XXXXXX";
    int fd = mkstemp(pidfile);
    assert_true(fd >= 0);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "sleep 30 & echo $! > %s; exit 0", pidfile);
    struct kiln_check_result r;
    run_sh(cmd, 10000, &r);
    assert_int_equal(r.passed, 1);
    struct kiln_buf b = {0};
    assert_int_equal(kiln_read_file(pidfile, 100, &b), KILN_OK);
    pid_t pid = (pid_t)atoi(b.data);
    kiln_buf_free(&b);
    unlink(pidfile);
    assert_true(pid > 1);
    /* Gone (or a zombie waiting for init) within a second. */
    int gone = 0;
    for (int i = 0; i < 100 && !gone; i++) {
        char p[64], st[512] = "";
        snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(p, "r");
        if (!f) {
            gone = 1;
            break;
        }
        if (fgets(st, sizeof st, f) && strstr(st, ") Z ")) gone = 1;
        fclose(f);
        if (!gone) {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
    }
    assert_true(gone);
}

static void test_hostcheck(void **state)
{
    (void)state;
    struct kiln_host_facts h;
    memset(&h, 0, sizeof h);
    h.gpu_sm[h.ngpu++] = 90;
    h.have_driver = 1;
    h.driver_major = 580;
    h.driver_minor = 65;
    h.cpu_isa = kiln_isa_level_features("avx512");
    struct kiln_error err;
    struct kiln_host_need n = {90, 0, 560, "avx512"};
    assert_int_equal(kiln_hostcheck(&h, &n, &err), KILN_OK);
    n.sm = 89;
    assert_int_equal(kiln_hostcheck(&h, &n, &err), KILN_ECONFLICT);
    assert_string_equal(err.msg, "needs a GPU with sm_89 but this host has sm_90");
    n.sm = 121;
    n.driver_min = 590;
    n.isa_level = "avx512bf16";
    assert_int_equal(kiln_hostcheck(&h, &n, &err), KILN_ECONFLICT);
    assert_non_null(strstr(err.msg, "sm_121"));
    assert_non_null(strstr(err.msg, "driver >= 590 but this host has 580.65"));
    assert_non_null(strstr(err.msg, "lacks avx512_bf16"));
    /* Binary-compatible SMs only when allowed. */
    h.gpu_sm[0] = 121;
    struct kiln_host_need c = {120, 0, 0, NULL};
    assert_int_equal(kiln_hostcheck(&h, &c, &err), KILN_ECONFLICT);
    c.allow_compatible = 1;
    assert_int_equal(kiln_hostcheck(&h, &c, &err), KILN_OK);
    h.ngpu = 0;
    assert_int_equal(kiln_hostcheck(&h, &c, &err), KILN_ECONFLICT);
    assert_non_null(strstr(err.msg, "has no GPU"));
    struct kiln_host_need bad = {0, 0, 0, "avx9000"};
    assert_int_equal(kiln_hostcheck(&h, &bad, &err), KILN_EINVAL);
}

static void test_host_parsers(void **state)
{
    (void)state;
    unsigned maj, min;
    assert_int_equal(kiln_hostcheck_parse_driver("580.65.06", &maj, &min), KILN_OK);
    assert_int_equal(maj, 580);
    assert_int_equal(min, 65);
    assert_int_equal(kiln_hostcheck_parse_driver("560", &maj, &min), KILN_OK);
    assert_int_equal(maj, 560);
    assert_int_equal(kiln_hostcheck_parse_driver("abc", &maj, &min), KILN_EINVAL);
    assert_int_equal(kiln_hostcheck_parse_driver("", &maj, &min), KILN_EINVAL);
    assert_int_equal(kiln_hostcheck_parse_driver("9999999", &maj, &min), KILN_EINVAL);

    struct kiln_host_facts h;
    memset(&h, 0, sizeof h);
    struct kiln_error err;
    const char *csv = "9.0, 580.159.04\n12.1, 580.159.04\n";
    assert_int_equal(kiln_hostcheck_parse_smi_csv(csv, strlen(csv), &h, &err), KILN_OK);
    assert_int_equal(h.ngpu, 2);
    assert_int_equal(h.gpu_sm[1], 121);
    assert_int_equal(h.driver_major, 580);
    const char *bad = "[N/A], 580\n";
    assert_int_equal(kiln_hostcheck_parse_smi_csv(bad, strlen(bad), &h, &err), KILN_EPARSE);
    assert_non_null(strstr(err.msg, "line 1"));

    const char *cpu = "processor : 0\nflags\t\t: fpu sse avx avx2 fma f16c avx512f avx512dq "
                      "avx512vl avx512bw avx512_vnni\n";
    uint32_t bits = kiln_hostcheck_parse_cpuinfo(cpu, strlen(cpu));
    assert_true(kiln_isa_satisfies(bits, kiln_isa_level_features("avx512vnni")));
    assert_false(kiln_isa_satisfies(bits, kiln_isa_level_features("avx512bf16")));
    const char *arm = "Features\t: fp asimd fphp asimddp sve2 bf16 i8mm\n";
    bits = kiln_hostcheck_parse_cpuinfo(arm, strlen(arm));
    assert_true(kiln_isa_satisfies(bits, kiln_isa_level_features("armv9")));
}

/* kiln_selftest_run with a shell script standing in for kiln-selftest. */
static void test_selftest_run_document(void **state)
{
    (void)state;
    char script[] = "/tmp/kiln-test-fake-selftest-XXXXXX";
    int fd = mkstemp(script);
    assert_true(fd >= 0);
    const char *body =
        "#!/bin/sh\n"
        "# fake kiln-selftest: --json-file PATH\n"
        "echo 'kernel vector_add FAIL'\n"
        "cat > \"$2\" <<'EOF'\n"
        "{\"tool\":\"kiln-selftest\",\"ok\":false,\"kernels\":[{\"name\":\"vector_add\","
        "\"status\":\"fail\",\"reason\":\"no kernel image is available for execution on the "
        "device: built for sm_80, this GPU is sm_90\"}]}\n"
        "EOF\n"
        "exit 1\n";
    assert_true(write(fd, body, strlen(body)) == (ssize_t)strlen(body));
    close(fd);
    chmod(script, 0755);
    const char *checks[] = {"true", "echo 'No supported CUDA architectures found for major "
                                    "versions [10]' >&2; exit 1"};
    struct kiln_selftest_opts o;
    memset(&o, 0, sizeof o);
    o.binary = script;
    o.timeout_ms = 10000;
    o.log_path = logpath;
    o.checks = checks;
    o.nchecks = 2;
    json_t *doc = NULL;
    struct kiln_error err;
    assert_int_equal(kiln_selftest_run(&o, &doc, &err), KILN_OK);
    assert_false(json_is_true(json_object_get(doc, "ok")));
    json_t *reasons = json_object_get(doc, "reasons");
    assert_int_equal(json_array_size(reasons), 2);
    assert_non_null(strstr(json_string_value(json_array_get(reasons, 0)),
                           "selftest vector_add failed: no kernel image"));
    assert_non_null(strstr(json_string_value(json_array_get(reasons, 1)), "major versions [10]"));
    json_t *checks_a = json_object_get(doc, "checks");
    assert_true(json_is_true(json_object_get(json_array_get(checks_a, 0), "ok")));
    assert_false(json_is_true(json_object_get(json_array_get(checks_a, 1), "ok")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(doc, "selftest"), "tool")),
        "kiln-selftest");
    json_decref(doc);
    unlink(script);

    memset(&o, 0, sizeof o);
    assert_int_equal(kiln_selftest_run(&o, &doc, &err), KILN_EINVAL);
}

/* Inspection runs in a child: a crash there fails the run with a plain
 * reason and leaves this process running. The crash is real: the hook
 * truncates the second file after the child mapped it, so the parser's
 * first read of it raises SIGBUS (a build output rewritten under the
 * inspector does the same). */
static void truncate_victim(const char *path, void *arg)
{
    if (strcmp(path, (const char *)arg) == 0) assert_int_equal(truncate(path, 0), 0);
}

static void copy_fixture(const char *name, char *tmpl)
{
    struct kiln_buf b = {0};
    char src[4096];
    snprintf(src, sizeof src, "%s%stests/fixtures/selftest/%s",
             getenv("KILN_SRC") ? getenv("KILN_SRC") : "", getenv("KILN_SRC") ? "/" : "", name);
    assert_int_equal(kiln_read_file(src, 16u << 20, &b), KILN_OK);
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    assert_true(write(fd, b.data, b.len) == (ssize_t)b.len);
    close(fd);
    kiln_buf_free(&b);
}

static void test_inspection_crash_isolated(void **state)
{
    (void)state;
    char good[] = "/tmp/kiln-test-inspect-good-XXXXXX";
    char victim[] = "/tmp/kiln-test-inspect-victim-XXXXXX";
    copy_fixture("sm80.cubin", good);
    copy_fixture("multi.fatbin", victim);
    const char *files[] = {good, victim};
    struct kiln_selftest_opts o;
    memset(&o, 0, sizeof o);
    o.timeout_ms = 60000;
    o.log_path = logpath;
    o.inspect = files;
    o.ninspect = 2;
    json_t *doc = NULL;
    struct kiln_error err;

    /* Without the hook: the child's report comes back whole. */
    assert_int_equal(kiln_selftest_run(&o, &doc, &err), KILN_OK);
    assert_true(json_is_true(json_object_get(doc, "ok")));
    json_t *ins = json_object_get(doc, "inspect");
    assert_int_equal(json_array_size(json_object_get(ins, "files")), 2);
    assert_null(json_object_get(ins, "crashed"));
    json_decref(doc);

    /* With it: a failed artifact, not an error of the run. */
    o.inspect_hook = truncate_victim;
    o.inspect_hook_arg = victim;
    assert_int_equal(kiln_selftest_run(&o, &doc, &err), KILN_OK);
    assert_false(json_is_true(json_object_get(doc, "ok")));
    char want[128];
    snprintf(want, sizeof want, "inspection crashed on %s", victim);
    json_t *reasons = json_object_get(doc, "reasons");
    assert_int_equal(json_array_size(reasons), 1);
    assert_string_equal(json_string_value(json_array_get(reasons, 0)), want);
    json_t *crashed = json_object_get(json_object_get(doc, "inspect"), "crashed");
    assert_string_equal(json_string_value(json_object_get(crashed, "file")), victim);
    /* SIGBUS, unless a sanitizer turned it into its own report and exit. */
    json_int_t sig = json_integer_value(json_object_get(crashed, "signal"));
    assert_true(sig == SIGBUS || sig == 0);
    json_decref(doc);
    unlink(good);
    unlink(victim);
}

static void test_spec_parse(void **state)
{
    (void)state;
    json_error_t je;
    json_t *j =
        json_loads("{\"sm\":\"12.1\",\"sm_compat\":true,\"isa\":\"avx512\",\"driver_min\":560,"
                   "\"checks\":[{\"name\":\"import\",\"command\":\"true\",\"timeout_s\":1.5},"
                   "{\"command\":\"false\"}],\"expect_symbols\":[\"scaled_fp4_quant\"],"
                   "\"artifact_globs\":[\"lib/*.so\"],\"future_key\":1}",
                   0, &je);
    assert_non_null(j);
    struct kiln_selftest_spec s;
    struct kiln_error err;
    assert_int_equal(kiln_selftest_spec_parse(j, &s, &err), KILN_OK);
    assert_int_equal(s.sm, 121);
    assert_int_equal(s.sm_compat, 1);
    assert_string_equal(s.isa, "avx512");
    assert_int_equal(s.driver_min, 560);
    assert_int_equal(s.nchecks, 2);
    assert_string_equal(s.check_names[0], "import");
    assert_null(s.check_names[1]);
    assert_int_equal(s.check_timeouts_ms[0], 1500);
    assert_int_equal(s.check_timeouts_ms[1], 0);
    assert_int_equal(s.nsymbols, 1);
    assert_int_equal(s.nglobs, 1);
    kiln_selftest_spec_free(&s);
    json_decref(j);

    const char *bad[] = {
        "[]",
        "{\"sm\":\"banana\"}",
        "{\"sm\":true}",
        "{\"isa\":\"avx9000\"}",
        "{\"driver_min\":-1}",
        "{\"checks\":{}}",
        "{\"checks\":[{\"name\":\"x\"}]}",
        "{\"checks\":[{\"command\":\"true\",\"timeout_s\":0}]}",
        "{\"expect_symbols\":[\"\"]}",
        "{\"artifact_globs\":\"x\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        j = json_loads(bad[i], 0, &je);
        assert_non_null(j);
        kiln_error_clear(&err);
        assert_int_not_equal(kiln_selftest_spec_parse(j, &s, &err), KILN_OK);
        assert_true(strlen(err.msg) > 0);
        json_decref(j);
    }
    /* Template-expanded values: strings, and empty strings for "none". */
    j = json_loads("{\"sm\":\"\",\"isa\":\"\",\"driver_min\":\"\"}", 0, &je);
    assert_int_equal(kiln_selftest_spec_parse(j, &s, &err), KILN_OK);
    assert_int_equal(s.sm, 0);
    assert_null(s.isa);
    assert_int_equal(s.driver_min, 0);
    kiln_selftest_spec_free(&s);
    json_decref(j);
    j = json_loads("{\"sm\":\"120a\",\"driver_min\":\"580.65\"}", 0, &je);
    assert_int_equal(kiln_selftest_spec_parse(j, &s, &err), KILN_OK);
    assert_int_equal(s.sm, 120);
    assert_int_equal(s.driver_min, 580);
    kiln_selftest_spec_free(&s);
    json_decref(j);
    j = json_loads("{\"sm\":90}", 0, &je);
    assert_int_equal(kiln_selftest_spec_parse(j, &s, &err), KILN_OK);
    assert_int_equal(s.sm, 90);
    kiln_selftest_spec_free(&s);
    json_decref(j);
}

/* The worker's entry point: host facts, missing binary, checks, globs. */
static void test_run_spec(void **state)
{
    (void)state;
    json_error_t je;
    json_t *j = json_loads("{\"sm\":\"90\",\"driver_min\":560,\"checks\":[{\"name\":\"imp\","
                           "\"command\":\"echo ok\"}],\"expect_symbols\":[\"scaled_fp4_quant\"],"
                           "\"artifact_globs\":[\"libfp4_*.so\"]}",
                           0, &je);
    struct kiln_selftest_spec s;
    struct kiln_error err;
    assert_int_equal(kiln_selftest_spec_parse(j, &s, &err), KILN_OK);
    json_decref(j);
    char fixdir[4096];
    const char *src = getenv("KILN_SRC");
    snprintf(fixdir, sizeof fixdir, "%s%stests/fixtures/selftest", src ? src : "", src ? "/" : "");
    struct kiln_host_facts h;
    memset(&h, 0, sizeof h);
    h.gpu_sm[h.ngpu++] = 90;
    h.have_driver = 1;
    h.driver_major = 580;
    json_t *doc = NULL;
    assert_int_equal(kiln_selftest_run_spec(&s, &h, NULL, NULL, fixdir, logpath, &doc, &err),
                     KILN_OK);
    /* Both libraries match the glob; the missing one lacks the symbol but
     * the good one has it: symbols are searched across files. */
    assert_true(json_is_true(json_object_get(doc, "ok")));
    assert_int_equal(json_array_size(json_object_get(json_object_get(doc, "inspect"), "files")), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(doc, "checks"), 0), "name")),
                        "imp");
    json_decref(doc);

    /* Old driver, missing selftest binary, globs that match nothing. */
    h.driver_major = 550;
    assert_int_equal(kiln_selftest_run_spec(&s, &h, "/nonexistent-kiln-bin", NULL,
                                            "/nonexistent-kiln-work", logpath, &doc, &err),
                     KILN_OK);
    assert_false(json_is_true(json_object_get(doc, "ok")));
    char *all = json_dumps(json_object_get(doc, "reasons"), 0);
    assert_non_null(all);
    assert_non_null(strstr(all, "driver >= 560 but this host has 550"));
    assert_non_null(strstr(all, "no GPU selftest binary /nonexistent-kiln-bin/kiln-selftest-sm90"));
    assert_non_null(strstr(all, "no artifact file matches"));
    free(all);
    json_decref(doc);
    kiln_selftest_spec_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test_setup_teardown(test_run_pass_fail, setup_log, teardown_log),
        cmocka_unit_test_setup_teardown(test_timeouts, setup_log, teardown_log),
        cmocka_unit_test_setup_teardown(test_leftover_children_killed, setup_log, teardown_log),
        cmocka_unit_test(test_hostcheck),
        cmocka_unit_test(test_host_parsers),
        cmocka_unit_test_setup_teardown(test_selftest_run_document, setup_log, teardown_log),
        cmocka_unit_test_setup_teardown(test_inspection_crash_isolated, setup_log, teardown_log),
        cmocka_unit_test(test_spec_parse),
        cmocka_unit_test_setup_teardown(test_run_spec, setup_log, teardown_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
