/* jobs_commit.c - the jobs of one commit (see jobs_commit.h). */
#include "state/jobs_commit.h"

#include <sqlite3.h>
#include <stdlib.h>

int kiln_jobs_of_commit(struct kiln_jobs *j, const char *branch, const char *commit, json_t **out,
                        struct kiln_error *err)
{
    *out = NULL;
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(j->st,
                             "SELECT id FROM jobs WHERE commit_id = ?1 AND "
                             "COALESCE(branch, '') = COALESCE(?2, '') ORDER BY id LIMIT 10000",
                             &s, err);
    if (rc) return rc;
    kiln_store_bind_text(s, 1, commit);
    kiln_store_bind_text(s, 2, branch);
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            int64_t *g = realloc(ids, (cap = cap ? cap * 2 : 64) * sizeof *ids);
            if (!g) {
                sqlite3_reset(s);
                free(ids);
                return kiln_fail(err, KILN_ENOMEM, "out of memory");
            }
            ids = g;
        }
        ids[n++] = sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        free(ids);
        return kiln_store_fail(j->st, rc, err, "listing the jobs of a commit");
    }
    json_t *arr = json_array();
    rc = arr ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *o = NULL;
        rc = kiln_jobs_get(j, ids[i], &o, err);
        if (rc == KILN_ENOTFOUND) { /* deleted meanwhile */
            kiln_error_clear(err);
            rc = KILN_OK;
            continue;
        }
        if (!rc && json_array_append_new(arr, o)) rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    free(ids);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return KILN_OK;
}
