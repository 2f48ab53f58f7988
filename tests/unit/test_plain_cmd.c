/* Unit tests for common/plain_cmd (when a command needs no shell) and its
 * use by common/spawn: a plain command runs as its own program, anything
 * else through /bin/sh with sh's messages and exit statuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/plain_cmd.h"
#include "common/spawn.h"

#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int plain(const char *cmd, char *const *env, char **argv, char *path)
{
    static char buf[256];
    return kiln_plain_cmd(cmd, env, buf, sizeof buf, argv, 8, path, PATH_MAX);
}

static void test_plain_words(void **state)
{
    (void)state;
    char *argv[8], path[PATH_MAX];
    char *env[] = {"HOME=/root", "PATH=/nonexistent:/usr/bin:/bin", NULL};
    assert_int_equal(plain("  true  ", env, argv, path), 1);
    assert_string_equal(argv[0], "true");
    assert_null(argv[1]);
    assert_string_equal(path, "/usr/bin/true");
    assert_int_equal(plain("env -u X A=b /bin/true", env, argv, path), 1);
    assert_string_equal(argv[1], "-u");
    assert_string_equal(argv[3], "A=b");
    assert_string_equal(argv[4], "/bin/true");
    assert_null(argv[5]);
    assert_string_equal(path, "/usr/bin/env");
    assert_int_equal(plain("/bin/false", env, argv, path), 1);
    assert_string_equal(path, "/bin/false");
}

static void test_needs_sh(void **state)
{
    (void)state;
    char *argv[8], path[PATH_MAX];
    char *env[] = {"PATH=/usr/bin:/bin", NULL};
    const char *sh[] = {
        "echo $HOME",  "true; false", "true && false", "ls > x",      "ls | wc",
        "ls *",        "ls ~",        "echo 'a b'",    "a\\ b",       "true # c",
        "A=1 true",    "cd /tmp",     "echo hi",       "printf x",    "pwd",
        "kill 1",      "test -e x",   "exit 3",        "if true",     "",
        "   ",         "./build.sh",  "bin/x",         "no-such-cmd", "/nonexistent/x",
        "/etc/passwd", "/usr/bin",    "true\tx",       "true\nfalse", "(true)",
        "sleep 1 &",   "x=$(ls)",     "{ true; }",     "[ -e x ]",    ". ./env",
    };
    for (size_t i = 0; i < sizeof sh / sizeof *sh; i++)
        if (plain(sh[i], env, argv, path) != 0) fail_msg("\"%s\" should need sh", sh[i]);
    /* a relative PATH entry before the program: the child's directory */
    char *rel[] = {"PATH=bin:/usr/bin", NULL}, *empty[] = {"PATH=:/usr/bin", NULL};
    assert_int_equal(plain("true", rel, argv, path), 0);
    assert_int_equal(plain("true", empty, argv, path), 0);
    /* too long or too many words: sh */
    char big[300];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(plain(big, env, argv, path), -1);
    assert_int_equal(plain("true 1 2 3 4 5 6 7 8", env, argv, path), -1);
    /* no PATH at all: /bin:/usr/bin, as sh's default */
    char *nopath[] = {"HOME=/", NULL};
    assert_int_equal(plain("true", nopath, argv, path), 1);
    assert_string_equal(path, "/bin/true");
}

/* A plain command is its own process; sh stays for the rest, and a program
   that cannot be found still gets sh's message and exit status 127. */
static void test_spawn_plain(void **state)
{
    (void)state;
    struct kiln_error err = {0};
    struct kiln_spawn_result r;
    struct kiln_buf out = {0};
    struct kiln_spawn_spec s = {.command = "cat /proc/self/comm", .err_fd = KILN_SPAWN_NULL};
    assert_int_equal(kiln_spawn_capture(&s, 10000, 4096, &out, &r, &err), KILN_OK);
    assert_string_equal(out.data, "cat\n");
    assert_int_equal(r.exit_code, 0);
    kiln_buf_free(&out);

    struct kiln_spawn_spec f = {.command = "false", .out_fd = KILN_SPAWN_NULL};
    assert_int_equal(kiln_spawn_run(&f, 10000, &r, &err), KILN_OK);
    assert_int_equal(r.exit_code, 1);

    struct kiln_spawn_spec nf = {.command = "kiln-no-such-program x", .err_fd = KILN_SPAWN_STDOUT};
    assert_int_equal(kiln_spawn_capture(&nf, 10000, 4096, &out, &r, &err), KILN_OK);
    assert_int_equal(r.exit_code, 127);
    assert_non_null(strstr(out.data, "not found"));
    kiln_buf_free(&out);

    /* pwd is sh's builtin: the logical directory, through sh */
    struct kiln_spawn_spec pw = {.command = "pwd", .cwd = "/", .err_fd = KILN_SPAWN_NULL};
    assert_int_equal(kiln_spawn_capture(&pw, 10000, 4096, &out, &r, &err), KILN_OK);
    assert_string_equal(out.data, "/\n");
    kiln_buf_free(&out);

    /* the environment reaches a plain command as it reaches sh's */
    char *env_add[] = {"KILN_PLAIN_T=yes", NULL};
    struct kiln_spawn_spec e = {
        .command = "printenv KILN_PLAIN_T", .env_add = env_add, .err_fd = KILN_SPAWN_NULL};
    assert_int_equal(kiln_spawn_capture(&e, 10000, 4096, &out, &r, &err), KILN_OK);
    assert_string_equal(out.data, "yes\n");
    kiln_buf_free(&out);
}

/* What a program run without sh sees of PWD is what it sees through sh:
   the environment's PWD when it names the working directory (a symlink's
   path is kept), else the physical directory, also when PWD is absent. */
static void spawn_out(const char *cmd, const char *cwd, char **env, char *out, size_t n)
{
    struct kiln_error err = {0};
    struct kiln_spawn_result r;
    struct kiln_buf b = {0};
    struct kiln_spawn_spec s = {.command = cmd, .cwd = cwd, .env = env, .err_fd = KILN_SPAWN_NULL};
    assert_int_equal(kiln_spawn_capture(&s, 10000, 4096, &b, &r, &err), KILN_OK);
    assert_int_equal(r.exit_code, 0);
    snprintf(out, n, "%s", b.data ? b.data : "");
    kiln_buf_free(&b);
}

static void test_pwd_as_sh(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln-plain-XXXXXX", real[PATH_MAX], link[PATH_MAX];
    assert_non_null(mkdtemp(dir));
    snprintf(real, sizeof real, "%s/real", dir);
    snprintf(link, sizeof link, "%s/link", dir);
    assert_int_equal(mkdir(real, 0755), 0);
    assert_int_equal(symlink(real, link), 0);
    char pwd_link[PATH_MAX + 4], pwd_stale[] = "PWD=/nonexistent";
    snprintf(pwd_link, sizeof pwd_link, "PWD=%s", link);
    char *none[] = {"PATH=/usr/bin:/bin", NULL};
    char *stale[] = {"PATH=/usr/bin:/bin", pwd_stale, NULL};
    char *logical[] = {"PATH=/usr/bin:/bin", pwd_link, NULL};
    char **envs[] = {none, stale, logical};
    const char *want[] = {real, real, link};
    for (int i = 0; i < 3; i++) {
        char direct[PATH_MAX + 8], viash[PATH_MAX + 8], w[PATH_MAX + 8];
        spawn_out("printenv PWD", link, envs[i], direct, sizeof direct);
        spawn_out("printenv PWD;", link, envs[i], viash, sizeof viash); /* ';': through sh */
        snprintf(w, sizeof w, "%s\n", want[i]);
        if (strcmp(direct, viash) || strcmp(direct, w))
            fail_msg("env %d: without sh \"%s\", through sh \"%s\", want \"%s\"", i, direct, viash,
                     w);
    }
    unlink(link);
    rmdir(real);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_words),
        cmocka_unit_test(test_needs_sh),
        cmocka_unit_test(test_spawn_plain),
        cmocka_unit_test(test_pwd_as_sh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
