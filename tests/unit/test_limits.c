/* Unit tests for workers/proc and workers/limits: exit codes and reasons,
 * log capture, timeouts, killing the whole process group, stragglers, CPU
 * time, and a child that touches 2 GiB under a 1 GiB limit killed and
 * reported as a RAM-limit failure with cgroup v1, cgroup v2 (where
 * available) and the forced polling fallback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "workers/limits.h"
#include "workers/proc.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct run {
    int done;
    struct kiln_proc_result r;
    pid_t pid;
};

static void on_done(struct kiln_proc *p, const struct kiln_proc_result *r, void *arg)
{
    struct run *run = arg;
    run->done = 1;
    run->r = *r;
    kiln_proc_free(p);
}

struct ctx {
    char self[1024];
    char dir[256];
};

/* Runs command to completion; kill_after_ms > 0 kills it with a reason. */
static void run_cmd(struct ctx *c, const struct kiln_limits *lim, const char *cmd, double timeout_s,
                    uint64_t ram, int kill_after_ms, char **env, struct run *run)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char log[512];
    snprintf(log, sizeof log, "%s/job.log", c->dir);
    unlink(log);
    struct kiln_proc_spec s = {.command = cmd,
                               .env = env ? env : environ,
                               .cwd = c->dir,
                               .log_path = log,
                               .timeout_s = timeout_s,
                               .ram_bytes = ram,
                               .name = "test-job",
                               .limits = lim};
    struct kiln_proc *p = NULL;
    struct kiln_error err = {0};
    memset(run, 0, sizeof *run);
    int rc = kiln_proc_start(&loop, &s, on_done, run, &p, &err);
    if (rc) fprintf(stderr, "start failed: %s\n", err.msg);
    assert_int_equal(rc, KILN_OK);
    run->pid = kiln_proc_pid(p);
    uint64_t t0 = uv_hrtime();
    int killed = 0;
    while (!run->done) {
        uv_run(&loop, UV_RUN_ONCE);
        if (kill_after_ms > 0 && !killed && uv_hrtime() - t0 > (uint64_t)kill_after_ms * 1000000) {
            kiln_proc_kill(p, "cancelled by the server", 0);
            killed = 1;
        }
        assert_true(uv_hrtime() - t0 < 60ull * 1000000000);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A loop that needs a timer to wake for kill_after_ms. */
static void keepalive_cb(uv_timer_t *t)
{
    (void)t;
}

static char *read_log(struct ctx *c)
{
    char log[512];
    snprintf(log, sizeof log, "%s/job.log", c->dir);
    struct kiln_buf b = {0};
    assert_int_equal(kiln_read_file(log, 1 << 20, &b), KILN_OK);
    char *s = kiln_buf_steal(&b);
    return s ? s : strdup("");
}

static int setup(void **state)
{
    struct ctx *c = *state;
    snprintf(c->dir, sizeof c->dir, "/tmp/kiln-limits-XXXXXX");
    return mkdtemp(c->dir) ? 0 : -1;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void poll_limits(struct kiln_limits *l)
{
    struct kiln_error err = {0};
    assert_int_equal(kiln_limits_init(l, KILN_LIMIT_POLL, "t", &err), KILN_OK);
    assert_int_equal(l->method, KILN_LIMIT_POLL);
}

static void test_exit_and_log(void **state)
{
    struct ctx *c = *state;
    struct kiln_limits l;
    poll_limits(&l);
    struct run r;
    char *env[] = {(char *)"FOO=bar baz", (char *)"PATH=/usr/bin:/bin", NULL};
    run_cmd(c, &l, "echo out $FOO; echo err >&2; pwd; exit 3", 0, 0, 0, env, &r);
    assert_int_equal(r.r.exit_code, 3);
    assert_int_equal(r.r.term_signal, 0);
    assert_string_equal(r.r.reason, "exited with status 3");
    char *log = read_log(c);
    assert_non_null(strstr(log, "out bar baz\n"));
    assert_non_null(strstr(log, "err\n"));
    assert_non_null(strstr(log, c->dir));
    free(log);
    run_cmd(c, &l, "true", 0, 0, 0, NULL, &r);
    assert_int_equal(r.r.exit_code, 0);
    assert_string_equal(r.r.reason, "");
}

static void test_timeout_kills_group(void **state)
{
    struct ctx *c = *state;
    struct kiln_limits l;
    poll_limits(&l);
    struct run r;
    time_t t0 = time(NULL);
    run_cmd(c, &l, "sleep 30 & sleep 30 & wait", 0.5, 0, 0, NULL, &r);
    assert_true(time(NULL) - t0 < 10);
    assert_int_equal(r.r.timed_out, 1);
    assert_string_equal(r.r.reason, "timed out after 0.5 s");
    /* nothing of the group is left */
    assert_int_equal(kill(-r.pid, 0), -1);
}

static void test_cancel_kills_group(void **state)
{
    struct ctx *c = *state;
    struct kiln_limits l;
    poll_limits(&l);
    struct run r;
    uv_loop_t dummy;
    (void)dummy;
    (void)keepalive_cb;
    time_t t0 = time(NULL);
    /* the sample timer wakes the loop every 200 ms, so the kill happens */
    run_cmd(c, &l, "sleep 30 & (sleep 40; echo never) & wait", 0, 0, 300, NULL, &r);
    assert_true(time(NULL) - t0 < 5);
    assert_int_equal(r.r.killed, 1);
    assert_string_equal(r.r.reason, "cancelled by the server");
    assert_int_equal(kill(-r.pid, 0), -1);
}

static void test_stragglers_killed(void **state)
{
    struct ctx *c = *state;
    struct kiln_limits l;
    poll_limits(&l);
    struct run r;
    run_cmd(c, &l, "sleep 60 & echo started", 0, 0, 0, NULL, &r);
    assert_int_equal(r.r.exit_code, 0);
    assert_int_equal(kill(-r.pid, 0), -1);
}

static void test_cpu_time(void **state)
{
    struct ctx *c = *state;
    struct kiln_limits l;
    poll_limits(&l);
    struct run r;
    run_cmd(c, &l, "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 0.3", 0, 0, 0, NULL,
            &r);
    assert_int_equal(r.r.exit_code, 0);
    assert_true(r.r.cpu_s > 0.05);
    assert_true(r.r.peak_ram > 0);
}

static void hog_test(struct ctx *c, const struct kiln_limits *l)
{
    struct run r;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "exec '%s' --hog 2048", c->self);
    run_cmd(c, l, cmd, 60, 1ull << 30, 0, NULL, &r);
    fprintf(stderr, "method %s: %s\n", kiln_limit_method_name(l->method), r.r.reason);
    assert_int_equal(r.r.ram_exceeded, 1);
    assert_int_not_equal(r.r.exit_code, 0);
    assert_non_null(strstr(r.r.reason, "exceeded its RAM limit of 1 GiB, peak "));
    assert_true(r.r.peak_ram >= (900ull << 20));
    char *log = read_log(c);
    assert_null(strstr(log, "hog done"));
    free(log);
}

static void test_ram_poll(void **state)
{
    struct kiln_limits l;
    poll_limits(&l);
    hog_test(*state, &l);
}

static void test_ram_cgroup1(void **state)
{
    struct kiln_limits l;
    struct kiln_error err = {0};
    if (kiln_limits_init(&l, KILN_LIMIT_CGROUP1, "t", &err)) {
        printf("SKIP cgroup v1 not available here: %s\n", err.msg);
        skip();
    }
    hog_test(*state, &l);
    /* the same limit does not hurt a job that stays below it */
    struct run r;
    run_cmd(*state, &l, "echo small", 0, 1ull << 30, 0, NULL, &r);
    assert_int_equal(r.r.exit_code, 0);
    assert_int_equal(r.r.ram_exceeded, 0);
    kiln_limits_cleanup(&l);
}

/* A job cgroup left by a worker that died (kill -9) is emptied and removed
 * when the next worker starts. */
static void test_stale_cgroup_reaped(void **state)
{
    (void)state;
    struct kiln_limits l;
    struct kiln_error err = {0};
    if (kiln_limits_init(&l, KILN_LIMIT_CGROUP1, "t", &err)) {
        printf("SKIP cgroup v1 not available here: %s\n", err.msg);
        skip();
    }
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    char dir[700], pidtxt[32];
    snprintf(dir, sizeof dir, "%s/%d-7-1", l.mem_base, (int)dead);
    assert_int_equal(mkdir(dir, 0755), 0);
    pid_t orphan = fork();
    assert_true(orphan >= 0);
    if (orphan == 0) {
        execl("/bin/sleep", "sleep", "60", (char *)NULL);
        _exit(127);
    }
    char procs[760];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    FILE *f = fopen(procs, "w");
    assert_non_null(f);
    snprintf(pidtxt, sizeof pidtxt, "%d", (int)orphan);
    fputs(pidtxt, f);
    assert_int_equal(fclose(f), 0);
    struct kiln_limits l2;
    assert_int_equal(kiln_limits_init(&l2, KILN_LIMIT_CGROUP1, "t", &err), KILN_OK);
    int st = 0;
    assert_int_equal(waitpid(orphan, &st, 0), orphan);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(access(dir, F_OK), -1);
    kiln_limits_cleanup(&l2);
}

static void test_ram_cgroup2(void **state)
{
    struct kiln_limits l;
    struct kiln_error err = {0};
    if (kiln_limits_init(&l, KILN_LIMIT_CGROUP2, "t", &err)) {
        printf("SKIP cgroup v2 not available here (%s)\n", err.msg);
        skip();
    }
    hog_test(*state, &l);
    kiln_limits_cleanup(&l);
}

static void test_parse_stat(void **state)
{
    (void)state;
    pid_t pid, ppid, sid;
    uint64_t rss, ticks;
    const char *s = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 "
                    "12345 1000000 256 18446744073709551615\n";
    assert_int_equal(kiln_limits_parse_stat(s, &pid, &ppid, &sid, &rss, &ticks), KILN_OK);
    assert_int_equal(pid, 4242);
    assert_int_equal(ppid, 1);
    assert_int_equal(sid, 4242);
    assert_int_equal(rss, 256);
    assert_int_equal(ticks, 13);
    assert_int_equal(kiln_limits_parse_stat("garbage", &pid, &ppid, &sid, &rss, &ticks),
                     KILN_EPARSE);
    assert_int_equal(kiln_limits_parse_stat("12 (x) S 1 2", &pid, &ppid, &sid, &rss, &ticks),
                     KILN_EPARSE);
}

static void test_bad_spec(void **state)
{
    struct ctx *c = *state;
    struct kiln_limits l;
    poll_limits(&l);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct kiln_proc *p;
    struct kiln_error err = {0};
    struct kiln_proc_spec s = {.command = "true", .log_path = "/nonexistent/dir/log", .limits = &l};
    assert_int_equal(kiln_proc_start(&loop, &s, on_done, NULL, &p, &err), KILN_EIO);
    assert_non_null(strstr(err.msg, "cannot open log"));
    s.log_path = NULL;
    assert_int_equal(kiln_proc_start(&loop, &s, on_done, NULL, &p, &err), KILN_EINVAL);
    char log[300];
    snprintf(log, sizeof log, "%s/x.log", c->dir);
    s.log_path = log;
    s.cwd = "/nonexistent/cwd";
    /* a bad cwd makes uv_spawn fail: an error, no crash, no leak */
    assert_int_equal(kiln_proc_start(&loop, &s, on_done, NULL, &p, &err), KILN_EIO);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static int hog(long mb)
{
    size_t chunk = 64u << 20;
    for (long got = 0; got < mb; got += 64) {
        char *p = malloc(chunk);
        if (!p) return 2;
        memset(p, 1, chunk);
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
        /* never freed: the point is to hold it */
        __asm__ volatile("" : : "r"(p) : "memory");
    }
    printf("hog done\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--hog")) return hog(atol(argv[2]));
    struct ctx c;
    memset(&c, 0, sizeof c);
    if (!realpath(argv[0], c.self)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_exit_and_log, setup, teardown, &c),
        cmocka_unit_test_prestate_setup_teardown(test_timeout_kills_group, setup, teardown, &c),
        cmocka_unit_test_prestate_setup_teardown(test_cancel_kills_group, setup, teardown, &c),
        cmocka_unit_test_prestate_setup_teardown(test_stragglers_killed, setup, teardown, &c),
        cmocka_unit_test_prestate_setup_teardown(test_cpu_time, setup, teardown, &c),
        cmocka_unit_test_prestate_setup_teardown(test_ram_poll, setup, teardown, &c),
        cmocka_unit_test_prestate_setup_teardown(test_ram_cgroup1, setup, teardown, &c),
        cmocka_unit_test_prestate_setup_teardown(test_ram_cgroup2, setup, teardown, &c),
        cmocka_unit_test(test_stale_cgroup_reaped),
        cmocka_unit_test(test_parse_stat),
        cmocka_unit_test_prestate_setup_teardown(test_bad_spec, setup, teardown, &c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
