/* logquota.c - log retention and the total log quota (server/logquota.h). */
#include "server/logquota.h"

#include <stdio.h>

/* Both queries walk jobs_logs (finished jobs with a log) and the state
 * index for the rest, never the whole history. */
static int total_size(struct kiln_store *st, int64_t *total, struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(
        st,
        "SELECT (SELECT COALESCE(SUM(log_size), 0) FROM jobs INDEXED BY "
        "jobs_logs WHERE " KILN_SQL_FINAL_LOGS
        ") + (SELECT COALESCE(SUM(log_size), 0) FROM jobs WHERE " KILN_SQL_UNFINISHED ")",
        &s, err);
    if (rc) return rc;
    rc = sqlite3_step(s);
    *total = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? KILN_OK : kiln_store_fail(st, rc, err, "summing log sizes");
}

/* Remove one job's log: the file, then its size in the row. */
static int drop(struct kiln_store *st, struct kiln_logs *logs, int64_t job, struct kiln_error *err)
{
    int rc = kiln_logs_remove(logs, job, err);
    if (rc) return rc;
    sqlite3_stmt *s;
    if ((rc = kiln_store_stmt(st, "UPDATE jobs SET log_size = 0, log_base = 0 WHERE id = ?", &s,
                              err)))
        return rc;
    sqlite3_bind_int64(s, 1, job);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? KILN_OK : kiln_store_fail(st, rc, err, "forgetting a removed log");
}

/* Up to 64 final jobs with a log, oldest finished first (before `before`,
 * when before > 0). */
static int oldest(struct kiln_store *st, double before, int64_t ids[64], int64_t sizes[64], int *n,
                  struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(
        st,
        "SELECT id, log_size FROM jobs INDEXED BY jobs_logs WHERE " KILN_SQL_FINAL_LOGS
        " AND (? <= 0 OR finished_at < ?) ORDER BY finished_at, id LIMIT 64",
        &s, err);
    if (rc) return rc;
    sqlite3_bind_double(s, 1, before);
    sqlite3_bind_double(s, 2, before);
    *n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < 64) {
        ids[*n] = sqlite3_column_int64(s, 0);
        sizes[(*n)++] = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? KILN_OK
                                                 : kiln_store_fail(st, rc, err, "finding old logs");
}

/* Drop logs ids[0..n) (stopping once *total is at most quota, when quota
 * > 0) in one transaction: a round of 64 is one commit, not 64. A file is
 * removed before its row forgets it, so a crash or a failed commit leaves
 * rows naming logs already gone (the next round drops them again), never a
 * log no row counts. */
static int drop_round(struct kiln_store *st, struct kiln_logs *logs, const int64_t *ids,
                      const int64_t *sizes, int n, int64_t quota, int64_t *total, int *removed,
                      struct kiln_error *err)
{
    int rc = kiln_store_begin(st, err);
    if (rc) return rc;
    for (int i = 0; i < n && (quota <= 0 || *total > quota); i++) {
        if ((rc = drop(st, logs, ids[i], err))) {
            kiln_store_rollback(st);
            return rc;
        }
        *total -= sizes[i];
        (*removed)++;
    }
    return kiln_store_commit(st, err);
}

int kiln_logquota_enforce(struct kiln_store *st, struct kiln_logs *logs, int64_t quota,
                          double retention_s, double now, int64_t *total, int *removed,
                          struct kiln_error *err)
{
    *removed = 0;
    int64_t ids[64], sizes[64], ignored = 0;
    int n, rc;
    /* Retention: a bounded number of rounds per call; the next tick goes on. */
    for (int round = 0; retention_s > 0 && round < 16; round++) {
        if ((rc = oldest(st, now - retention_s, ids, sizes, &n, err)) ||
            (rc = drop_round(st, logs, ids, sizes, n, 0, &ignored, removed, err)))
            return rc;
        if (n < 64) break;
    }
    if ((rc = total_size(st, total, err))) return rc;
    for (int round = 0; quota > 0 && *total > quota && round < 16; round++) {
        if ((rc = oldest(st, 0, ids, sizes, &n, err))) return rc;
        if (n == 0) break; /* only running jobs' logs left: chunks get refused */
        if ((rc = drop_round(st, logs, ids, sizes, n, quota, total, removed, err))) return rc;
    }
    return KILN_OK;
}
