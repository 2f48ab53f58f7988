/* store.h - kiln's SQLite store (var/kiln.db).
 *
 * Contract:
 * - kiln_store_open() opens (creating if needed) the database and applies
 *   the ordered migrations it lacks through common/sqlite_open (WAL, foreign
 *   keys, busy timeout, version in PRAGMA user_version, each migration in
 *   one transaction). Tables: jobs, job_edges (job needs job), workers, tokens
 *   (SHA-256 hex + role; worker_id for issued worker credentials), events
 *   (append-only; id = SSE event id), audit, hook_deliveries (state/access.h).
 * - Every query goes through kiln_store_stmt(): prepared once, cached for
 *   the life of the store, handed back reset with bindings cleared.
 * - Every state change runs inside kiln_store_begin()/commit() (BEGIN
 *   IMMEDIATE); kiln_store_event() appends the event row inside the caller's
 *   transaction so the change and its event commit together or not at all.
 * - Single-threaded: one store belongs to one thread (the serve loop, or a
 *   CLI command). Other processes may open the same file (WAL + busy timeout).
 * - Checkpoints: the committing thread copies the WAL back every 4,000
 *   pages, unless kiln_store_checkpoints_start() gave that work to a
 *   thread of the store's own (see there).
 */
#ifndef KILN_STORE_H
#define KILN_STORE_H

#include "common/err.h"
#include "common/token.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

struct kiln_store;

#define KILN_STORE_SCHEMA_VERSION 10

/* The conditions of the partial indexes over waiting jobs: a query that
 * wants jobs_class, jobs_state_not_before (runnable) or jobs_runnable
 * (waiting) must carry the same text, which is how SQLite sees that the
 * index holds every row the query can match. */
#define KILN_SQL_RUNNABLE "state IN ('queued','built')"
#define KILN_SQL_WAITING "state IN ('queued','built','tested')"
/* The live states named one by one: "NOT IN (final states)" made SQLite
 * scan every job ever run; a list of the live states searches the state
 * index instead. */
#define KILN_SQL_UNFINISHED "state IN ('queued','building','built','testing','tested','publishing')"
/* jobs_logs: the finished jobs that still have a log, oldest first (log
 * retention and the log quota, server/logquota.c) */
#define KILN_SQL_FINAL_LOGS                                                                        \
    "log_size > 0 AND state IN ('succeeded','failed','cancelled','superseded')"

int kiln_store_open(const char *path, struct kiln_store **out, struct kiln_error *err);
/* Stops the checkpoint thread, if any, then closes. */
void kiln_store_close(struct kiln_store *st);
/* For a long-running owner (serve): from now on a commit that leaves 4,000
 * pages or more in the WAL wakes a thread with its own connection, which
 * copies them back (PASSIVE: it never waits for, nor blocks, the owner's
 * reads and writes), so the owner's loop no longer stalls for a checkpoint
 * and its fsync. Past 64,000 pages (the thread not keeping up) the commit
 * checkpoints inline, as without it. KILN_EIO/KILN_EDB when the thread or
 * its connection cannot start; the store then checkpoints inline. */
int kiln_store_checkpoints_start(struct kiln_store *st, struct kiln_error *err);
/* How many checkpoints the thread has run (tests). */
unsigned long kiln_store_checkpoints_done(struct kiln_store *st);
sqlite3 *kiln_store_db(struct kiln_store *st);
int kiln_store_schema_version(struct kiln_store *st, int *version, struct kiln_error *err);

/* Cached prepared statement for sql (a string that lives as long as the
 * store, normally a literal). */
int kiln_store_stmt(struct kiln_store *st, const char *sql, sqlite3_stmt **out,
                    struct kiln_error *err);
/* Step a statement that returns no rows (INSERT/UPDATE/DELETE) and reset
 * it; anything but SQLITE_DONE is kiln_store_fail(..., what). */
int kiln_store_step_done(struct kiln_store *st, sqlite3_stmt *s, struct kiln_error *err,
                         const char *what);
/* Map a sqlite result code to KILN_EDB with the database's message. */
int kiln_store_fail(struct kiln_store *st, int rc, struct kiln_error *err, const char *what);
/* Prepare sql (its one parameter is an id), bind id and step. On KILN_OK the
 * statement stands on the row: read it, then sqlite3_reset(). No row gives
 * KILN_ENOTFOUND "<what> <id> not found" (the statement already reset). */
int kiln_store_row_by_id(struct kiln_store *st, const char *sql, int64_t id, const char *what,
                         sqlite3_stmt **out, struct kiln_error *err);

int kiln_store_begin(struct kiln_store *st, struct kiln_error *err);
int kiln_store_commit(struct kiln_store *st, struct kiln_error *err);
void kiln_store_rollback(struct kiln_store *st);
int kiln_store_in_tx(struct kiln_store *st);
/* One read snapshot around several queries: in autocommit every query takes
 * and drops SQLite's file locks (fcntl) on its own, which was most of the
 * cost of listing 1,000 jobs. Returns 1 if it opened a (deferred) read
 * transaction, 0 when one is already open or BEGIN failed (the queries then
 * run in autocommit, as before); pass that to kiln_store_read_end. */
int kiln_store_read_begin(struct kiln_store *st);
void kiln_store_read_end(struct kiln_store *st, int opened);
/* A savepoint inside the open transaction, so one part of a batch can fail
 * alone: rollback_savepoint undoes what came after it, release ends it
 * (always call release, after a rollback_savepoint too). Not nested. */
int kiln_store_savepoint(struct kiln_store *st, struct kiln_error *err);
void kiln_store_rollback_savepoint(struct kiln_store *st);
int kiln_store_release_savepoint(struct kiln_store *st, struct kiln_error *err);

/* Append an event (type "job", "worker", "log", "catalog"); data is
 * borrowed and serialized compactly. Must run inside a transaction. */
int kiln_store_event(struct kiln_store *st, const char *type, json_t *data, double now,
                     struct kiln_error *err);
/* Call cb for up to limit events with id > after, in id order. cb returning
 * non-zero stops early (that value is returned). */
int kiln_store_events_after(struct kiln_store *st, int64_t after, int limit,
                            int (*cb)(void *arg, int64_t id, const char *type, const char *data),
                            void *arg, struct kiln_error *err);
int64_t kiln_store_last_event_id(struct kiln_store *st);
/* Keep only the newest `keep` events. */
int kiln_store_events_prune(struct kiln_store *st, int64_t keep, struct kiln_error *err);

/* Tokens: only the hash is stored. scope_json: the token's scope as
 * compact JSON, checked by kiln_access_token_add (state/access.h), or NULL
 * for none; the one INSERT of a token. */
int kiln_store_token_add(struct kiln_store *st, enum kiln_role role, const char *name,
                         const char *hash_hex, const char *scope_json, double now,
                         struct kiln_error *err);
/* KILN_EAUTH when no token has that hash. */
int kiln_store_token_lookup(struct kiln_store *st, const char *hash_hex, enum kiln_role *role,
                            struct kiln_error *err);
/* {"tokens":[{"id","name","role","created_at","hash_prefix"}]} (never the hash). */
int kiln_store_token_list(struct kiln_store *st, json_t **out, struct kiln_error *err);

/* Remove a token by id; KILN_ENOTFOUND if there is none. */
int kiln_store_token_revoke(struct kiln_store *st, int64_t id, struct kiln_error *err);

/* Small helpers for JSON text columns. */
json_t *kiln_store_col_json(sqlite3_stmt *s, int col);             /* new ref or json_null() */
int kiln_store_bind_json(sqlite3_stmt *s, int idx, json_t *v);     /* NULL -> SQL NULL */
int kiln_store_bind_text(sqlite3_stmt *s, int idx, const char *t); /* NULL -> SQL NULL */

#endif
