/* Unit tests for server/logquota: retention, then the total quota, oldest
 * finished jobs first, never a running job's log (issue 16: logs had no
 * total quota and were never removed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/logquota.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
    char dir[64], logs_dir[96];
    struct kiln_store *st;
    struct kiln_logs *logs;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/kiln-lq-XXXXXX");
    if (!f || !mkdtemp(f->dir)) return -1;
    char db[128];
    snprintf(db, sizeof db, "%s/kiln.db", f->dir);
    snprintf(f->logs_dir, sizeof f->logs_dir, "%s/logs", f->dir);
    if (mkdir(f->logs_dir, 0755) || kiln_store_open(db, &f->st, NULL) ||
        kiln_logs_new(f->logs_dir, &f->logs, NULL))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    kiln_logs_free(f->logs);
    kiln_store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd)) { /* best effort */
    }
    free(f);
    return 0;
}

/* A job in state with a log of size bytes, finished at `finished`. */
static void job(struct fx *f, int64_t id, const char *state, double finished, int size)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO jobs(id, name, state, created_at, finished_at, log_size) "
             "VALUES (%lld, 'j', '%s', 0, %f, %d)",
             (long long)id, state, finished, size);
    assert_int_equal(sqlite3_exec(kiln_store_db(f->st), sql, NULL, NULL, NULL), SQLITE_OK);
    char line[128];
    memset(line, 'x', sizeof line);
    line[size < 100 ? size : 100] = '\0';
    int64_t got;
    assert_int_equal(kiln_logs_append_line(f->logs, id, line, &got, NULL), KILN_OK);
}

static int has_log(struct fx *f, int64_t id)
{
    char p[160];
    snprintf(p, sizeof p, "%s/%lld.log", f->logs_dir, (long long)id);
    return access(p, F_OK) == 0;
}

static void test_quota_removes_oldest_finished(void **state)
{
    struct fx *f = *state;
    job(f, 1, "succeeded", 100, 100);
    job(f, 2, "failed", 200, 100);
    job(f, 3, "building", 0, 100);
    job(f, 4, "succeeded", 300, 100);
    int64_t total;
    int removed;
    assert_int_equal(kiln_logquota_enforce(f->st, f->logs, 250, 0, 1000, &total, &removed, NULL),
                     KILN_OK);
    assert_int_equal(removed, 2);
    assert_int_equal(total, 200);
    assert_false(has_log(f, 1));
    assert_false(has_log(f, 2));
    assert_true(has_log(f, 3));
    assert_true(has_log(f, 4));
    /* Under quota: nothing more goes. A running job's log never goes. */
    assert_int_equal(kiln_logquota_enforce(f->st, f->logs, 50, 0, 1000, &total, &removed, NULL),
                     KILN_OK);
    assert_int_equal(removed, 1);
    assert_true(has_log(f, 3));
    assert_int_equal(total, 100);
}

static void test_retention(void **state)
{
    struct fx *f = *state;
    job(f, 1, "succeeded", 100, 10);
    job(f, 2, "cancelled", 900, 10);
    int64_t total;
    int removed;
    assert_int_equal(kiln_logquota_enforce(f->st, f->logs, 0, 500, 1000, &total, &removed, NULL),
                     KILN_OK);
    assert_int_equal(removed, 1);
    assert_false(has_log(f, 1));
    assert_true(has_log(f, 2));
    assert_int_equal(total, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_quota_removes_oldest_finished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
