/* Unit tests for workers/retain: the newest `keep` directories handed over
 * stay, older ones go with everything under them (a symlink inside is
 * removed, its target kept), -1 keeps all, and a directory never handed
 * over is never touched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "workers/retain.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char base[] = "/tmp/kiln-retain-XXXXXX";

static void make_job(int i, char *out)
{
    char p[PATH_MAX];
    snprintf(out, PATH_MAX, "%s/jobs/%d-1", base, i);
    assert_int_equal(mkdir(out, 0755), 0);
    snprintf(p, sizeof p, "%s/sub", out);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/sub/file", out);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/result", out); /* like nix-build's result link */
    char target[PATH_MAX];
    snprintf(target, sizeof target, "%s/keepme", base);
    assert_int_equal(symlink(target, p), 0);
}

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static void test_keep_newest(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(base));
    char p[PATH_MAX], dirs[6][PATH_MAX];
    snprintf(p, sizeof p, "%s/jobs", base);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/keepme", base);
    assert_int_equal(mkdir(p, 0755), 0);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct kiln_retain r;
    kiln_retain_init(&r, &loop, 2);
    for (int i = 0; i < 5; i++) {
        make_job(i, dirs[i]);
        kiln_retain_add(&r, dirs[i]);
    }
    make_job(5, dirs[5]); /* never handed over */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.removing, 0);
    for (int i = 0; i < 3; i++)
        if (exists(dirs[i])) fail_msg("%s is still there", dirs[i]);
    for (int i = 3; i < 6; i++)
        if (!exists(dirs[i])) fail_msg("%s is gone", dirs[i]);
    assert_true(exists(p)); /* the links' target */
    kiln_retain_free(&r);

    /* -1 keeps everything */
    kiln_retain_init(&r, &loop, -1);
    for (int i = 3; i < 6; i++)
        kiln_retain_add(&r, dirs[i]);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 3; i < 6; i++)
        assert_true(exists(dirs[i]));
    kiln_retain_free(&r);

    /* 0 removes at once; a directory already gone is no error */
    kiln_retain_init(&r, &loop, 0);
    kiln_retain_add(&r, dirs[3]);
    kiln_retain_add(&r, dirs[0]); /* removed above */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_false(exists(dirs[3]));
    assert_true(exists(dirs[4]));
    kiln_retain_free(&r);
    assert_int_equal(uv_loop_close(&loop), 0);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_newest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
