/* Unit tests for the worker's recycled job directories and log spool files
 * (workers/spare.h): a take hands out an empty directory or an empty file
 * by rename, a give never loses anything (a directory with files, a full
 * pool and a pool that is off leave the path as it was), and a restarted
 * worker's pool renames over what the earlier one left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "workers/spare.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
    char root[64];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->root, sizeof f->root, "/tmp/kiln-spare-XXXXXX");
    if (!f || !mkdtemp(f->root)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->root);
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

static void path(const struct fx *f, const char *name, char *out)
{
    snprintf(out, 256, "%s/%s", f->root, name);
}

static void write_file(const char *p, const char *text)
{
    FILE *o = fopen(p, "w");
    assert_non_null(o);
    fputs(text, o);
    fclose(o);
}

static off_t size_of(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size : -1;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_dir_round_trip(void **state)
{
    struct fx *f = *state;
    struct kiln_spare s;
    char a[256], b[256], c[256];
    kiln_spare_init(&s, f->root, "w1");
    assert_string_not_equal(s.dir, "");
    path(f, "a", a);
    path(f, "b", b);
    path(f, "c", c);
    assert_int_equal(kiln_spare_take_dir(&s, b), 0); /* empty pool */
    assert_false(is_dir(b));
    assert_int_equal(mkdir(a, 0755), 0);
    kiln_spare_give_dir(&s, a);
    assert_false(is_dir(a));
    assert_int_equal(s.ndirs, 1);
    assert_int_equal(kiln_spare_take_dir(&s, b), 1);
    assert_true(is_dir(b));
    assert_int_equal(s.ndirs, 0);
    /* A directory its job left files in stays where it is. */
    char inside[300];
    snprintf(inside, sizeof inside, "%s/result", b);
    write_file(inside, "x");
    kiln_spare_give_dir(&s, b);
    assert_true(is_dir(b));
    assert_int_equal(size_of(inside), 1);
    assert_int_equal(s.ndirs, 0);
    assert_int_equal(kiln_spare_take_dir(&s, c), 0);
}

static void test_log_is_emptied(void **state)
{
    struct fx *f = *state;
    struct kiln_spare s;
    char l1[256], l2[256];
    kiln_spare_init(&s, f->root, "w1");
    path(f, "1-1.log", l1);
    path(f, "2-1.log", l2);
    write_file(l1, "the whole log of job 1\n");
    kiln_spare_give_log(&s, l1);
    assert_int_equal(size_of(l1), -1);
    assert_int_equal(kiln_spare_take_log(&s, l2), 1);
    assert_int_equal(size_of(l2), 0); /* job 2 never sees job 1's lines */
    /* A missing log is not an error, and adds nothing. */
    kiln_spare_give_log(&s, l1);
    assert_int_equal(s.nlogs, 0);
}

static void test_full_pool_and_off(void **state)
{
    struct fx *f = *state;
    struct kiln_spare s;
    char p[256];
    kiln_spare_init(&s, f->root, "w1");
    for (int i = 0; i <= KILN_SPARE_MAX; i++) {
        char name[32];
        snprintf(name, sizeof name, "d%d", i);
        path(f, name, p);
        assert_int_equal(mkdir(p, 0755), 0);
        kiln_spare_give_dir(&s, p);
    }
    assert_int_equal(s.ndirs, KILN_SPARE_MAX);
    assert_true(is_dir(p)); /* the one past the pool's size stays */
    /* Without a tag (a name unfit for a path) the pool is off. */
    struct kiln_spare off;
    kiln_spare_init(&off, f->root, NULL);
    assert_string_equal(off.dir, "");
    kiln_spare_give_dir(&off, p);
    assert_true(is_dir(p));
    assert_int_equal(kiln_spare_take_dir(&off, p), 0);
}

static void test_restart_renames_over_leftovers(void **state)
{
    struct fx *f = *state;
    struct kiln_spare s, again;
    char a[256], b[256];
    kiln_spare_init(&s, f->root, "w1");
    path(f, "a", a);
    path(f, "b", b);
    assert_int_equal(mkdir(a, 0755), 0);
    kiln_spare_give_dir(&s, a); /* spare-w1/d0 is left when the worker stops */
    kiln_spare_init(&again, f->root, "w1");
    assert_int_equal(again.ndirs, 0);
    assert_int_equal(mkdir(b, 0755), 0);
    kiln_spare_give_dir(&again, b); /* over the empty leftover */
    assert_false(is_dir(b));
    assert_int_equal(again.ndirs, 1);
    assert_int_equal(kiln_spare_take_dir(&again, a), 1);
    assert_true(is_dir(a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dir_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_is_emptied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_pool_and_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_renames_over_leftovers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
