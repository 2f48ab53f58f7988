/* sqlite_open.h - opening a kiln SQLite database and bringing its schema up
 * to date, the same way for every database (state/store's kiln.db, the
 * catalog's catalog.db).
 *
 * Contract:
 * - kiln_sqlite_open() opens (creating if needed) path with WAL, foreign
 *   keys on, extended result codes and one busy timeout
 *   (KILN_SQLITE_BUSY_MS), then applies the migrations the database lacks.
 * - The schema version lives in PRAGMA user_version: migrations[i] brings
 *   version i to i+1, and each runs in its own BEGIN IMMEDIATE transaction
 *   together with the version bump, so a crash leaves a whole version. A
 *   database newer than the migrations is refused (KILN_EUNSUPPORTED,
 *   "... newer than this kiln ...") rather than written to.
 * - Databases written before this file kept the version in a one-row
 *   `schema_version` table; on open that number moves to user_version and
 *   the table is dropped, in one transaction, so they keep working.
 * - synchronous is NORMAL unless KILN_SQLITE_DURABLE is given (FULL): WAL
 *   with NORMAL can lose the last commits on power loss but never corrupts;
 *   the catalog asks for FULL because a published entry is a promise.
 * - KILN_SQLITE_ONE_THREAD opens the connection without SQLite's mutexes,
 *   for a connection that only one thread ever uses.
 * - kiln_sqlite_process_init(), called by main() before any database is
 *   opened, turns off SQLite's memory statistics, which kiln never reads:
 *   with them on, every allocation SQLite makes takes a process-wide mutex
 *   (7% of serve's CPU per job in bench/dispatch).
 */
#ifndef KILN_SQLITE_OPEN_H
#define KILN_SQLITE_OPEN_H

#include "common/err.h"

#include <sqlite3.h>

/* Why 10 s: CLI commands (kiln catalog publish, kiln token add) write to the
 * same files as the running service; waiting out one of its transactions
 * beats failing the command. */
#define KILN_SQLITE_BUSY_MS 10000

enum {
    KILN_SQLITE_DURABLE = 1 << 0,    /* synchronous=FULL */
    KILN_SQLITE_ONE_THREAD = 1 << 1, /* SQLITE_OPEN_NOMUTEX */
};

void kiln_sqlite_process_init(void);

int kiln_sqlite_open(const char *path, int flags, const char *const *migrations, int nmigrations,
                     sqlite3 **out, struct kiln_error *err);
/* The schema version (PRAGMA user_version). */
int kiln_sqlite_version(sqlite3 *db, int *version, struct kiln_error *err);
/* sqlite3_exec() with "database error while <what>: <message>" on failure. */
int kiln_sqlite_exec(sqlite3 *db, const char *sql, const char *what, struct kiln_error *err);

#endif
