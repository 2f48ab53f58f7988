/* logquota.c - log retention and the total log quota (server/logquota.h). */
#include "server/logquota.h"

#include <stdio.h>

#define FINAL "state IN ('succeeded','failed','cancelled','superseded')"

static int total_size(struct kiln_store *st, int64_t *total, struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(st, "SELECT COALESCE(SUM(log_size), 0) FROM jobs", &s, err);
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
    int rc = kiln_store_stmt(st,
                             "SELECT id, log_size FROM jobs WHERE log_size > 0 AND " FINAL
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

int kiln_logquota_enforce(struct kiln_store *st, struct kiln_logs *logs, int64_t quota,
                          double retention_s, double now, int64_t *total, int *removed,
                          struct kiln_error *err)
{
    *removed = 0;
    int64_t ids[64], sizes[64];
    int n, rc;
    /* Retention: a bounded number of rounds per call; the next tick goes on. */
    for (int round = 0; retention_s > 0 && round < 16; round++) {
        if ((rc = oldest(st, now - retention_s, ids, sizes, &n, err))) return rc;
        for (int i = 0; i < n; i++) {
            if ((rc = drop(st, logs, ids[i], err))) return rc;
            (*removed)++;
        }
        if (n < 64) break;
    }
    if ((rc = total_size(st, total, err))) return rc;
    for (int round = 0; quota > 0 && *total > quota && round < 16; round++) {
        if ((rc = oldest(st, 0, ids, sizes, &n, err))) return rc;
        if (n == 0) break; /* only running jobs' logs left: chunks get refused */
        for (int i = 0; i<n && * total> quota; i++) {
            if ((rc = drop(st, logs, ids[i], err))) return rc;
            *total -= sizes[i];
            (*removed)++;
        }
    }
    return KILN_OK;
}
