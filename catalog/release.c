/* release.c - the release rows of the catalog and their one-transaction
 * completion (see release.h). */
#include "catalog/release.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int db_fail(sqlite3 *db, struct kiln_error *err, const char *what)
{
    return kiln_fail(err, KILN_EDB, "catalog database (%s): %s", what, sqlite3_errmsg(db));
}

static int exec(sqlite3 *db, const char *sql, struct kiln_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return KILN_OK;
    kiln_fail(err, KILN_EDB, "catalog database: %s", msg ? msg : "error");
    sqlite3_free(msg);
    return KILN_EDB;
}

int kiln_release_find(struct kiln_catalog *c, const char *branch, const char *commit, int64_t *id,
                      struct kiln_error *err)
{
    sqlite3 *db = kiln_catalog_db(c);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT id FROM releases WHERE branch = ?1 AND commit_id = ?2", -1,
                           &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "finding a release");
    sqlite3_bind_text(st, 1, branch ? branch : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, commit, -1, SQLITE_STATIC);
    int r = sqlite3_step(st), rc = KILN_OK;
    if (r == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    else if (r == SQLITE_DONE)
        rc = kiln_fail(err, KILN_ENOTFOUND, "no release for %s@%.12s", branch, commit);
    else
        rc = db_fail(db, err, "finding a release");
    sqlite3_finalize(st);
    return rc;
}

/* Runs sql with ?1 = a, ?2 = b, ?3 = c2, ?4 = now (unused numbers stay unbound). */
static int step_one(sqlite3 *db, const char *sql, int64_t a, const char *b, const char *c2,
                    double now, struct kiln_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return db_fail(db, err, sql);
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, c2, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, now);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? KILN_OK : db_fail(db, err, "changing a release");
}

int kiln_release_open(struct kiln_catalog *c, const char *branch, const char *commit, double now,
                      int64_t *id, int *created, struct kiln_error *err)
{
    sqlite3 *db = kiln_catalog_db(c);
    if (created) *created = 0;
    if (!branch) branch = "";
    if (!commit || !*commit) return kiln_fail(err, KILN_EINVAL, "a release needs a commit");
    int rc = kiln_release_find(c, branch, commit, id, err);
    if (rc != KILN_ENOTFOUND) return rc;
    kiln_error_clear(err);
    if ((rc = exec(db, "BEGIN IMMEDIATE", err))) return rc;
    /* Another process may have created it between the lookup and the lock. */
    rc = kiln_release_find(c, branch, commit, id, err);
    if (rc == KILN_OK) return exec(db, "COMMIT", err);
    kiln_error_clear(err);
    rc = step_one(db, "INSERT INTO releases(branch, commit_id, created_at) VALUES (?2, ?3, ?4)", 0,
                  branch, commit, now, err);
    if (!rc) {
        *id = sqlite3_last_insert_rowid(db);
        /* A newer commit on the branch: the unfinished ones will never ship. */
        rc = step_one(db,
                      "UPDATE releases SET state = 'superseded', superseded_by = ?1, "
                      "completed_at = ?4 WHERE branch = ?2 AND commit_id <> ?3 AND state = 'open'",
                      *id, branch, commit, now, err);
    }
    if (!rc) rc = exec(db, "COMMIT", err);
    if (rc) {
        exec(db, "ROLLBACK", NULL);
        return rc;
    }
    if (created) *created = 1;
    return KILN_OK;
}

int kiln_release_complete(struct kiln_catalog *c, int64_t id, double now, int *done,
                          struct kiln_error *err)
{
    sqlite3 *db = kiln_catalog_db(c);
    *done = 0;
    int rc = exec(db, "BEGIN IMMEDIATE", err);
    if (rc) return rc;
    /* The whole publication is this one row: every entry's visibility
     * follows its release's state (KILN_RELEASE_VISIBLE). */
    rc = step_one(db,
                  "UPDATE releases SET state = 'complete', completed_at = ?4 WHERE id = ?1 AND "
                  "state = 'open'",
                  id, "", "", now, err);
    if (!rc) *done = sqlite3_changes(db) == 1;
    if (!rc) rc = exec(db, "COMMIT", err);
    if (rc) {
        exec(db, "ROLLBACK", NULL);
        *done = 0;
    }
    return rc;
}

int kiln_release_set_targets(struct kiln_catalog *c, int64_t id, json_t *results,
                             struct kiln_error *err)
{
    sqlite3 *db = kiln_catalog_db(c);
    char *text = json_dumps(results, JSON_COMPACT);
    if (!text) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    sqlite3_stmt *st = NULL;
    int rc = KILN_OK;
    if (sqlite3_prepare_v2(db, "UPDATE releases SET targets = ?2 WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK) {
        rc = db_fail(db, err, "recording release targets");
    } else {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(db, err, "recording release targets");
    }
    sqlite3_finalize(st);
    free(text);
    return rc;
}

#define REL_COLS "id, branch, commit_id, state, created_at, completed_at, superseded_by, targets"

static json_t *row_release(sqlite3_stmt *st)
{
    json_t *targets = NULL;
    if (sqlite3_column_type(st, 7) == SQLITE_TEXT)
        targets = json_loads((const char *)sqlite3_column_text(st, 7), 0, NULL);
    json_t *o = json_pack(
        "{s:I,s:s,s:s,s:s,s:f,s:o,s:o,s:o}", "id", (json_int_t)sqlite3_column_int64(st, 0),
        "branch", (const char *)sqlite3_column_text(st, 1), "commit",
        (const char *)sqlite3_column_text(st, 2), "state", (const char *)sqlite3_column_text(st, 3),
        "created_at", sqlite3_column_double(st, 4), "completed_at",
        sqlite3_column_type(st, 5) == SQLITE_NULL ? json_null()
                                                  : json_real(sqlite3_column_double(st, 5)),
        "superseded_by",
        sqlite3_column_type(st, 6) == SQLITE_NULL ? json_null()
                                                  : json_integer(sqlite3_column_int64(st, 6)),
        "targets", targets ? targets : json_null());
    return o;
}

static int entries_of(sqlite3 *db, int64_t id, json_t **out, struct kiln_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, name, version, digest, size, store_path FROM entries WHERE "
                           "release_id = ?1 ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "listing a release's entries");
    sqlite3_bind_int64(st, 1, id);
    json_t *arr = json_array();
    int r;
    while (arr && (r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *sp = (const char *)sqlite3_column_text(st, 5);
        json_array_append_new(arr,
                              json_pack("{s:I,s:s,s:s,s:s,s:I,s:s?}", "id",
                                        (json_int_t)sqlite3_column_int64(st, 0), "name",
                                        (const char *)sqlite3_column_text(st, 1), "version",
                                        (const char *)sqlite3_column_text(st, 2), "digest",
                                        (const char *)sqlite3_column_text(st, 3), "size",
                                        (json_int_t)sqlite3_column_int64(st, 4), "store_path", sp));
    }
    int rc = !arr               ? kiln_fail(err, KILN_ENOMEM, "out of memory")
             : r != SQLITE_DONE ? db_fail(db, err, "listing a release's entries")
                                : KILN_OK;
    sqlite3_finalize(st);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return KILN_OK;
}

int kiln_release_get(struct kiln_catalog *c, int64_t id, json_t **out, struct kiln_error *err)
{
    sqlite3 *db = kiln_catalog_db(c);
    *out = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT " REL_COLS " FROM releases WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(db, err, "reading a release");
    sqlite3_bind_int64(st, 1, id);
    int r = sqlite3_step(st), rc = KILN_OK;
    json_t *o = NULL;
    if (r == SQLITE_ROW) {
        if (!(o = row_release(st))) rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    } else if (r == SQLITE_DONE) {
        rc = kiln_fail(err, KILN_ENOTFOUND, "release %lld not found", (long long)id);
    } else {
        rc = db_fail(db, err, "reading a release");
    }
    sqlite3_finalize(st);
    json_t *entries = NULL;
    if (!rc && !(rc = entries_of(db, id, &entries, err)))
        json_object_set_new(o, "entries", entries);
    if (rc) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return KILN_OK;
}

int kiln_release_list(struct kiln_catalog *c, json_t *filters, json_t **out, struct kiln_error *err)
{
    sqlite3 *db = kiln_catalog_db(c);
    *out = NULL;
    json_int_t limit = json_integer_value(json_object_get(filters, "limit"));
    if (limit <= 0 || limit > 1000) limit = 100;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT " REL_COLS " FROM releases WHERE (?1 IS NULL OR branch = ?1) "
                           "AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR commit_id = ?3) "
                           "ORDER BY id DESC LIMIT ?4",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "listing releases");
    static const char *keys[] = {"branch", "state", "commit"};
    for (int i = 0; i < 3; i++) {
        const char *v = json_string_value(json_object_get(filters, keys[i]));
        if (v && *v)
            sqlite3_bind_text(st, i + 1, v, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, i + 1);
    }
    sqlite3_bind_int64(st, 4, limit);
    json_t *arr = json_array();
    int r;
    while (arr && (r = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *o = row_release(st);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            arr = NULL;
        }
    }
    int rc = !arr               ? kiln_fail(err, KILN_ENOMEM, "out of memory")
             : r != SQLITE_DONE ? db_fail(db, err, "listing releases")
                                : KILN_OK;
    sqlite3_finalize(st);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    assert(json_is_array(arr));
    *out = arr;
    return KILN_OK;
}
