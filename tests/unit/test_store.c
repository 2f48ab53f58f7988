/* Unit tests for scheduler/store: migrations, statement cache, events, tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/token.h"
#include "state/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *tmpdb(void)
{
    static char tmpl[64];
    snprintf(tmpl, sizeof tmpl, "/tmp/kiln-store-XXXXXX");
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    close(fd);
    unlink(tmpl);
    return tmpl;
}

static void cleanup(const char *p)
{
    char b[128];
    unlink(p);
    snprintf(b, sizeof b, "%s-wal", p);
    unlink(b);
    snprintf(b, sizeof b, "%s-shm", p);
    unlink(b);
}

static void test_open_migrate_reopen(void **state)
{
    (void)state;
    const char *p = tmpdb();
    struct kiln_store *st;
    struct kiln_error err = {0};
    assert_int_equal(kiln_store_open(p, &st, &err), KILN_OK);
    int v;
    assert_int_equal(kiln_store_schema_version(st, &v, &err), KILN_OK);
    assert_int_equal(v, KILN_STORE_SCHEMA_VERSION);
    kiln_store_close(st);
    /* Reopening applies nothing and keeps the version. */
    assert_int_equal(kiln_store_open(p, &st, &err), KILN_OK);
    assert_int_equal(kiln_store_schema_version(st, &v, &err), KILN_OK);
    assert_int_equal(v, KILN_STORE_SCHEMA_VERSION);
    /* WAL and foreign keys are on. */
    sqlite3_stmt *s;
    assert_int_equal(kiln_store_stmt(st, "PRAGMA journal_mode", &s, &err), KILN_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_reset(s);
    assert_int_equal(kiln_store_stmt(st, "PRAGMA foreign_keys", &s, &err), KILN_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 1);
    sqlite3_reset(s);
    kiln_store_close(st);
    cleanup(p);
}

/* A new database at p, then sql run on it raw (to make it look older). */
static void create_then(const char *p, const char *sql)
{
    struct kiln_store *st;
    struct kiln_error err = {0};
    assert_int_equal(kiln_store_open(p, &st, &err), KILN_OK);
    assert_int_equal(sqlite3_exec(kiln_store_db(st), sql, NULL, NULL, NULL), SQLITE_OK);
    kiln_store_close(st);
}

/* Reopen p: it must come up at the current version; returns the count a
 * COUNT(*) query gives then. */
static int reopen_count(const char *p, const char *count_sql)
{
    struct kiln_store *st;
    struct kiln_error err = {0};
    assert_int_equal(kiln_store_open(p, &st, &err), KILN_OK);
    int v;
    assert_int_equal(kiln_store_schema_version(st, &v, &err), KILN_OK);
    assert_int_equal(v, KILN_STORE_SCHEMA_VERSION);
    sqlite3_stmt *s;
    assert_int_equal(kiln_store_stmt(st, count_sql, &s, &err), KILN_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int n = sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    kiln_store_close(st);
    return n;
}

static void test_migrates_old_schema(void **state)
{
    (void)state;
    const char *p = tmpdb();
    /* Make it a version-1 database again. */
    create_then(p, "DROP INDEX jobs_worker_state; DROP INDEX jobs_state_not_before; "
                   "DROP INDEX jobs_class; "
                   /* issue 18's class key and log index */
                   "DROP INDEX jobs_logs; ALTER TABLE jobs DROP COLUMN class_key; "
                   /* issue 17's migration */
                   "ALTER TABLE jobs DROP COLUMN want_worker; "
                   /* issue 16's migration */
                   "DROP INDEX tokens_worker; ALTER TABLE tokens DROP COLUMN worker_id; "
                   "ALTER TABLE jobs DROP COLUMN owner_token; "
                   "ALTER TABLE jobs DROP COLUMN secret_env; "
                   "DROP TABLE audit; DROP TABLE hook_deliveries; "
                   "ALTER TABLE tokens DROP COLUMN scope; "
                   /* issue 18's migrations */
                   "DROP TABLE job_counts; DROP TRIGGER job_counts_insert; "
                   "DROP TRIGGER job_counts_delete; DROP TRIGGER job_counts_update; "
                   "DROP INDEX jobs_state_id; PRAGMA user_version = 1");
    assert_int_equal(reopen_count(p, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' "
                                     "AND name IN ('jobs_worker_state', 'jobs_state_not_before')"),
                     2);
    cleanup(p);
}

static void test_newer_schema_refused(void **state)
{
    (void)state;
    const char *p = tmpdb();
    struct kiln_store *st;
    struct kiln_error err = {0};
    create_then(p, "PRAGMA user_version = 99");
    assert_int_equal(kiln_store_open(p, &st, &err), KILN_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "newer"));
    cleanup(p);
}

/* A database from before common/sqlite_open kept its version in a
 * schema_version table: it opens at that version, with the table gone. */
static void test_adopts_old_version_table(void **state)
{
    (void)state;
    const char *p = tmpdb();
    char sql[160];
    snprintf(sql, sizeof sql,
             "CREATE TABLE schema_version (version INTEGER NOT NULL);"
             "INSERT INTO schema_version VALUES (%d); PRAGMA user_version = 0",
             KILN_STORE_SCHEMA_VERSION);
    create_then(p, sql);
    assert_int_equal(
        reopen_count(p, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'schema_version'"), 0);
    cleanup(p);
}

static void test_stmt_cache_reuses(void **state)
{
    (void)state;
    const char *p = tmpdb();
    struct kiln_store *st;
    struct kiln_error err = {0};
    assert_int_equal(kiln_store_open(p, &st, &err), KILN_OK);
    sqlite3_stmt *a, *b;
    assert_int_equal(kiln_store_stmt(st, "SELECT 1", &a, &err), KILN_OK);
    assert_int_equal(kiln_store_stmt(st, "SELECT 1", &b, &err), KILN_OK);
    assert_ptr_equal(a, b);
    assert_int_equal(kiln_store_stmt(st, "SELECT nope FROM nothing", &a, &err), KILN_EDB);
    assert_non_null(strstr(err.msg, "nothing"));
    kiln_store_close(st);
    cleanup(p);
}

/* With the checkpoint thread started, commits past 4,000 WAL pages wake
 * it and it copies them back (its count goes up: with the hook set and no
 * thread, nothing would checkpoint until 64,000 pages), and closing stops
 * it so that the last close still removes the WAL. */
static void test_checkpoints_off_the_loop(void **state)
{
    (void)state;
    const char *p = tmpdb();
    struct kiln_store *st;
    struct kiln_error err = {0};
    assert_int_equal(kiln_store_open(p, &st, &err), KILN_OK);
    assert_int_equal(kiln_store_checkpoints_start(st, &err), KILN_OK);
    assert_int_equal(kiln_store_checkpoints_start(st, &err), KILN_OK); /* once is enough */
    sqlite3 *db = kiln_store_db(st);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE scratch(b BLOB)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_stmt *ins;
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO scratch VALUES (zeroblob(1048576))", -1, &ins, NULL),
        SQLITE_OK);
    for (int i = 0; i < 40; i++) { /* 40 commits of 1 MiB: 10,000+ pages */
        assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
        sqlite3_reset(ins);
        if (i % 8 == 7)
            assert_int_equal(sqlite3_exec(db, "DELETE FROM scratch", 0, 0, 0), SQLITE_OK);
    }
    sqlite3_finalize(ins);
    for (int i = 0; i < 1000 && kiln_store_checkpoints_done(st) == 0; i++)
        usleep(10000);
    assert_true(kiln_store_checkpoints_done(st) >= 1);
    kiln_store_close(st); /* stops the thread, then the last close removes the WAL */
    char wal[128];
    snprintf(wal, sizeof wal, "%s-wal", p);
    assert_int_equal(access(wal, F_OK), -1);
    cleanup(p);
}

struct collected {
    int n;
    int64_t last;
};

static int collect(void *arg, int64_t id, const char *type, const char *data)
{
    struct collected *c = arg;
    c->n++;
    c->last = id;
    assert_string_equal(type, "job");
    assert_non_null(strstr(data, "\"x\""));
    return 0;
}

static void test_events_commit_and_rollback(void **state)
{
    (void)state;
    const char *p = tmpdb();
    struct kiln_store *st;
    struct kiln_error err = {0};
    assert_int_equal(kiln_store_open(p, &st, &err), KILN_OK);
    json_t *d = json_pack("{s:i}", "x", 1);
    /* Outside a transaction: refused. */
    assert_int_equal(kiln_store_event(st, "job", d, 1.0, &err), KILN_EDB);
    assert_int_equal(kiln_store_begin(st, &err), KILN_OK);
    assert_int_equal(kiln_store_event(st, "job", d, 1.0, &err), KILN_OK);
    assert_int_equal(kiln_store_event(st, "job", d, 1.0, &err), KILN_OK);
    assert_int_equal(kiln_store_commit(st, &err), KILN_OK);
    assert_int_equal(kiln_store_begin(st, &err), KILN_OK);
    /* The newest id is read once per transaction, yet always current:
     * this connection's own writes and a savepoint's undo move it. */
    assert_int_equal(kiln_store_last_event_id(st), 2);
    assert_int_equal(kiln_store_event(st, "job", d, 1.0, &err), KILN_OK);
    assert_int_equal(kiln_store_last_event_id(st), 3);
    assert_int_equal(kiln_store_savepoint(st, &err), KILN_OK);
    assert_int_equal(kiln_store_event(st, "job", d, 1.0, &err), KILN_OK);
    assert_int_equal(kiln_store_last_event_id(st), 4);
    kiln_store_rollback_savepoint(st);
    assert_int_equal(kiln_store_release_savepoint(st, &err), KILN_OK);
    assert_int_equal(kiln_store_last_event_id(st), 3);
    kiln_store_rollback(st);
    assert_int_equal(kiln_store_last_event_id(st), 2);
    /* a read snapshot reads it once too; leaving it forgets */
    int opened = kiln_store_read_begin(st);
    assert_int_equal(opened, 1);
    assert_int_equal(kiln_store_read_begin(st), 0); /* one is open */
    assert_int_equal(kiln_store_last_event_id(st), 2);
    kiln_store_read_end(st, opened);
    assert_false(kiln_store_in_tx(st));
    struct collected c = {0};
    assert_int_equal(kiln_store_events_after(st, 0, 10, collect, &c, &err), KILN_OK);
    assert_int_equal(c.n, 2);
    c.n = 0;
    assert_int_equal(kiln_store_events_after(st, 1, 10, collect, &c, &err), KILN_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.last, 2);
    assert_int_equal(kiln_store_events_prune(st, 1, &err), KILN_OK);
    c.n = 0;
    assert_int_equal(kiln_store_events_after(st, 0, 10, collect, &c, &err), KILN_OK);
    assert_int_equal(c.n, 1);
    json_decref(d);
    kiln_store_close(st);
    cleanup(p);
}

static void test_tokens(void **state)
{
    (void)state;
    const char *p = tmpdb();
    struct kiln_store *st;
    struct kiln_error err = {0};
    assert_int_equal(kiln_store_open(p, &st, &err), KILN_OK);
    char tok[KILN_TOKEN_LEN], h[KILN_SHA256_HEX];
    assert_int_equal(kiln_token_generate(tok), KILN_OK);
    assert_int_equal(kiln_token_hash(tok, h), KILN_OK);
    assert_int_equal(kiln_store_token_add(st, KILN_ROLE_SUBMIT, "ci", h, NULL, 1.0, &err), KILN_OK);
    enum kiln_role r = KILN_ROLE_NONE;
    assert_int_equal(kiln_store_token_lookup(st, h, &r, &err), KILN_OK);
    assert_int_equal(r, KILN_ROLE_SUBMIT);
    assert_int_equal(kiln_store_token_lookup(st, "00", &r, &err), KILN_EAUTH);
    json_t *list;
    assert_int_equal(kiln_store_token_list(st, &list, &err), KILN_OK);
    json_t *t0 = json_array_get(json_object_get(list, "tokens"), 0);
    assert_string_equal(json_string_value(json_object_get(t0, "role")), "submit");
    char *dump = json_dumps(list, 0);
    assert_null(strstr(dump, h));
    free(dump);
    json_int_t tid = json_integer_value(json_object_get(t0, "id"));
    json_decref(list);
    assert_int_equal(kiln_store_token_revoke(st, tid, &err), KILN_OK);
    assert_int_equal(kiln_store_token_lookup(st, h, &r, &err), KILN_EAUTH);
    assert_int_equal(kiln_store_token_revoke(st, tid, &err), KILN_ENOTFOUND);
    kiln_store_close(st);
    cleanup(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_migrate_reopen),
        cmocka_unit_test(test_migrates_old_schema),
        cmocka_unit_test(test_newer_schema_refused),
        cmocka_unit_test(test_adopts_old_version_table),
        cmocka_unit_test(test_stmt_cache_reuses),
        cmocka_unit_test(test_checkpoints_off_the_loop),
        cmocka_unit_test(test_events_commit_and_rollback),
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
