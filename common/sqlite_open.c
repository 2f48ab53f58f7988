/* sqlite_open.c - open + migrate for every kiln database; see sqlite_open.h. */
#include "common/sqlite_open.h"

#include <stdio.h>

int kiln_sqlite_exec(sqlite3 *db, const char *sql, const char *what, struct kiln_error *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK) return KILN_OK;
    kiln_fail(err, KILN_EDB, "database error while %s: %s", what, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return KILN_EDB;
}

static int read_int(sqlite3 *db, const char *sql, int *out, int *found, struct kiln_error *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW) *out = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) return KILN_OK;
    return kiln_fail(err, KILN_EDB, "database error while reading the schema version: %s",
                     sqlite3_errmsg(db));
}

int kiln_sqlite_version(sqlite3 *db, int *version, struct kiln_error *err)
{
    int found;
    *version = 0;
    return read_int(db, "PRAGMA user_version", version, &found, err);
}

static int set_version(sqlite3 *db, int v, struct kiln_error *err)
{
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v);
    return kiln_sqlite_exec(db, sql, "recording the schema version", err);
}

/* The old marker: a `schema_version` table. Move its number to user_version
 * and drop it, in one transaction. */
static int adopt_old_marker(sqlite3 *db, struct kiln_error *err)
{
    int n = 0, found, v = 0, rc;
    if ((rc = read_int(db,
                       "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = "
                       "'schema_version'",
                       &n, &found, err)) ||
        !n)
        return rc;
    if ((rc = kiln_sqlite_exec(db, "BEGIN IMMEDIATE", "starting a transaction", err))) return rc;
    if (!(rc = read_int(db, "SELECT version FROM schema_version LIMIT 1", &v, &found, err)) &&
        !(rc = set_version(db, found ? v : 0, err)) &&
        !(rc = kiln_sqlite_exec(db, "DROP TABLE schema_version", "dropping schema_version", err)))
        return kiln_sqlite_exec(db, "COMMIT", "committing", err);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int migrate(sqlite3 *db, const char *path, const char *const *migrations, int n,
                   struct kiln_error *err)
{
    int rc = adopt_old_marker(db, err);
    if (rc) return rc;
    for (;;) {
        int v;
        if ((rc = kiln_sqlite_exec(db, "BEGIN IMMEDIATE", "starting a transaction", err)))
            return rc;
        if ((rc = kiln_sqlite_version(db, &v, err))) goto fail;
        if (v > n) {
            rc = kiln_fail(err, KILN_EUNSUPPORTED,
                           "database %s has schema version %d, newer than this kiln (%d); "
                           "upgrade kiln",
                           path, v, n);
            goto fail;
        }
        if (v == n) break;
        if ((rc = kiln_sqlite_exec(db, migrations[v], "migrating the schema", err)) ||
            (rc = set_version(db, v + 1, err)))
            goto fail;
        if ((rc = kiln_sqlite_exec(db, "COMMIT", "committing a migration", err))) goto fail;
    }
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return KILN_OK;
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

void kiln_sqlite_process_init(void)
{
    /* SQLITE_MISUSE after sqlite3_initialize (a second call): then it is
     * only slower, never wrong. */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int kiln_sqlite_open(const char *path, int flags, const char *const *migrations, int nmigrations,
                     sqlite3 **out, struct kiln_error *err)
{
    sqlite3 *db = NULL;
    *out = NULL;
    int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (flags & KILN_SQLITE_ONE_THREAD) oflags |= SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &db, oflags, NULL);
    if (rc != SQLITE_OK) {
        kiln_fail(err, KILN_EDB, "cannot open database %s: %s", path,
                  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return KILN_EDB;
    }
    sqlite3_busy_timeout(db, KILN_SQLITE_BUSY_MS);
    sqlite3_extended_result_codes(db, 1);
    if ((rc = kiln_sqlite_exec(db, "PRAGMA journal_mode=WAL", "enabling WAL", err)) ||
        (rc = kiln_sqlite_exec(db, "PRAGMA foreign_keys=ON", "enabling foreign keys", err)) ||
        (rc = kiln_sqlite_exec(db,
                               flags & KILN_SQLITE_DURABLE ? "PRAGMA synchronous=FULL"
                                                           : "PRAGMA synchronous=NORMAL",
                               "setting synchronous", err)) ||
        (rc = migrate(db, path, migrations, nmigrations, err))) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return KILN_OK;
}
