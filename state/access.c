/* access.c - principals, worker credentials, job owners, audit rows and
 * webhook delivery ids in the store (state/access.h). */
#include "state/access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int step_done(struct kiln_store *st, sqlite3_stmt *s, struct kiln_error *err,
                     const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return kiln_store_fail(st, rc, err, what);
    return KILN_OK;
}

int kiln_access_identify(struct kiln_store *st, const char *hash_hex, struct kiln_principal *out,
                         struct kiln_error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(
        st, "SELECT id, role, COALESCE(worker_id, 0), scope IS NOT NULL FROM tokens WHERE hash = ?",
        &s, err);
    if (rc) return rc;
    kiln_store_bind_text(s, 1, hash_hex);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(s, 1);
        int prc = kiln_role_parse(r ? r : "", &out->role);
        out->token_id = sqlite3_column_int64(s, 0);
        out->worker_id = sqlite3_column_int64(s, 2);
        out->scoped = sqlite3_column_int(s, 3);
        sqlite3_reset(s);
        if (prc) {
            memset(out, 0, sizeof *out);
            return kiln_fail(err, KILN_EAUTH, "token has an unknown role");
        }
        return KILN_OK;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) return kiln_fail(err, KILN_EAUTH, "unknown token");
    return kiln_store_fail(st, rc, err, "looking up a token");
}

/* 1 when l is absent or an array of 1..KILN_ACCESS_SCOPE_MAX short strings. */
static int scope_list_ok(const json_t *l)
{
    if (!l) return 1;
    if (!json_is_array(l) || !json_array_size(l) || json_array_size(l) > KILN_ACCESS_SCOPE_MAX)
        return 0;
    size_t i;
    const json_t *v;
    json_array_foreach(l, i, v)
    {
        const char *g = json_string_value(v);
        if (!g || !*g || strlen(g) >= 128) return 0;
    }
    return 1;
}

int kiln_access_token_add(struct kiln_store *st, enum kiln_role role, const char *name,
                          const char *hash_hex, const json_t *scope, double now,
                          struct kiln_error *err)
{
    char *text = NULL;
    if (scope) {
        const json_t *r = json_object_get(scope, "recipes"),
                     *b = json_object_get(scope, "branches");
        if (!json_is_object(scope) || json_object_size(scope) != (size_t)(!!r + !!b) || !(r || b) ||
            !scope_list_ok(r) || !scope_list_ok(b))
            return kiln_fail(err, KILN_EINVAL,
                             "a token scope is {\"recipes\":[glob],\"branches\":[glob]} with 1 "
                             "to %d globs of under 128 characters per list",
                             KILN_ACCESS_SCOPE_MAX);
        if (!(text = json_dumps(scope, JSON_COMPACT | JSON_SORT_KEYS)))
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(
        st, "INSERT INTO tokens(name, role, hash, created_at, scope) VALUES (?, ?, ?, ?, ?)", &s,
        err);
    if (!rc) {
        kiln_store_bind_text(s, 1, name ? name : "");
        kiln_store_bind_text(s, 2, kiln_role_name(role));
        kiln_store_bind_text(s, 3, hash_hex);
        sqlite3_bind_double(s, 4, now);
        if (text)
            kiln_store_bind_text(s, 5, text);
        else
            sqlite3_bind_null(s, 5);
        rc = step_done(st, s, err, "adding a token");
    }
    free(text);
    return rc;
}

int kiln_access_token_scope(struct kiln_store *st, int64_t token_id, json_t **out,
                            struct kiln_error *err)
{
    *out = NULL;
    sqlite3_stmt *s;
    int rc = kiln_store_row_by_id(st, "SELECT scope FROM tokens WHERE id = ?", token_id, "token",
                                  &s, err);
    if (rc) return rc;
    int scoped = sqlite3_column_type(s, 0) != SQLITE_NULL;
    if (scoped) {
        *out = kiln_store_col_json(s, 0);
        /* A scope that does not parse must not widen into no scope. */
        if (!json_is_object(*out)) {
            json_decref(*out);
            *out = json_pack("{s:[]}", "recipes");
        }
    }
    sqlite3_reset(s);
    if (!scoped) return KILN_OK;
    return *out ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
}

int kiln_access_job_place(struct kiln_store *st, int64_t job, char recipe[128], char branch[128],
                          struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_row_by_id(
        st, "SELECT COALESCE(recipe, ''), COALESCE(branch, '') FROM jobs WHERE id = ?", job, "job",
        &s, err);
    if (rc) return rc;
    snprintf(recipe, 128, "%s", (const char *)sqlite3_column_text(s, 0));
    snprintf(branch, 128, "%s", (const char *)sqlite3_column_text(s, 1));
    sqlite3_reset(s);
    return KILN_OK;
}

int kiln_access_issue_worker_credential(struct kiln_store *st, int64_t worker_id,
                                        const char *worker_name, double now,
                                        char out[KILN_TOKEN_LEN], struct kiln_error *err)
{
    char hash[KILN_SHA256_HEX];
    int rc = kiln_token_generate(out);
    if (!rc) rc = kiln_token_hash(out, hash);
    if (rc) return kiln_fail(err, rc, "cannot make a worker credential");
    if ((rc = kiln_store_begin(st, err))) return rc;
    sqlite3_stmt *s;
    if ((rc = kiln_store_stmt(st, "DELETE FROM tokens WHERE worker_id = ?", &s, err))) goto fail;
    sqlite3_bind_int64(s, 1, worker_id);
    if ((rc = step_done(st, s, err, "rotating a worker credential"))) goto fail;
    if ((rc = kiln_store_stmt(st,
                              "INSERT INTO tokens(name, role, hash, created_at, worker_id) "
                              "VALUES (?, 'worker', ?, ?, ?)",
                              &s, err)))
        goto fail;
    char name[160];
    snprintf(name, sizeof name, "worker:%.128s", worker_name ? worker_name : "");
    kiln_store_bind_text(s, 1, name);
    kiln_store_bind_text(s, 2, hash);
    sqlite3_bind_double(s, 3, now);
    sqlite3_bind_int64(s, 4, worker_id);
    if ((rc = step_done(st, s, err, "storing a worker credential"))) goto fail;
    return kiln_store_commit(st, err);
fail:
    kiln_store_rollback(st);
    return rc;
}

int kiln_access_worker_by_name(struct kiln_store *st, const char *name, int64_t *id, char state[16],
                               struct kiln_error *err)
{
    *id = 0;
    state[0] = '\0';
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(st, "SELECT id, state FROM workers WHERE name = ?", &s, err);
    if (rc) return rc;
    kiln_store_bind_text(s, 1, name);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        const char *t = (const char *)sqlite3_column_text(s, 1);
        snprintf(state, 16, "%s", t ? t : "");
        rc = SQLITE_DONE;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return kiln_store_fail(st, rc, err, "looking up a worker");
    return KILN_OK;
}

int kiln_access_job(struct kiln_store *st, int64_t job, int64_t *owner_token, int64_t *worker_id,
                    struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_row_by_id(
        st, "SELECT COALESCE(owner_token, 0), COALESCE(worker_id, 0) FROM jobs WHERE id = ?", job,
        "job", &s, err);
    if (rc) return rc;
    if (owner_token) *owner_token = sqlite3_column_int64(s, 0);
    if (worker_id) *worker_id = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    return KILN_OK;
}

int kiln_access_job_secrets(struct kiln_store *st, int64_t job, json_t **out,
                            struct kiln_error *err)
{
    *out = NULL;
    sqlite3_stmt *s;
    int rc =
        kiln_store_row_by_id(st, "SELECT secret_env FROM jobs WHERE id = ?", job, "job", &s, err);
    if (rc) return rc;
    json_t *o = kiln_store_col_json(s, 0);
    sqlite3_reset(s);
    if (!json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    *out = o;
    return o ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
}

int kiln_access_audit(struct kiln_store *st, const struct kiln_principal *p, const char *peer,
                      const char *method, const char *path, const char *outcome, double now,
                      struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(st,
                             "INSERT INTO audit(at, token_id, role, peer, method, path, outcome) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             &s, err);
    if (rc) return rc;
    sqlite3_bind_double(s, 1, now);
    if (p->token_id)
        sqlite3_bind_int64(s, 2, p->token_id);
    else
        sqlite3_bind_null(s, 2);
    kiln_store_bind_text(s, 3, p->token_id ? kiln_role_name(p->role) : "anonymous");
    kiln_store_bind_text(s, 4, peer ? peer : "");
    kiln_store_bind_text(s, 5, method);
    kiln_store_bind_text(s, 6, path);
    kiln_store_bind_text(s, 7, outcome);
    if ((rc = step_done(st, s, err, "writing the audit log"))) return rc;
    /* Prune in steps of 1000 so the log stays bounded without a timer. */
    int64_t id = sqlite3_last_insert_rowid(kiln_store_db(st));
    if (id % 1000 != 0) return KILN_OK;
    if ((rc = kiln_store_stmt(st, "DELETE FROM audit WHERE id <= ?", &s, err))) return rc;
    sqlite3_bind_int64(s, 1, id - KILN_ACCESS_AUDIT_KEEP);
    return step_done(st, s, err, "pruning the audit log");
}

int kiln_access_audit_list(struct kiln_store *st, int64_t before_id, int limit, json_t **out,
                           struct kiln_error *err)
{
    *out = NULL;
    sqlite3_stmt *s;
    int rc =
        kiln_store_stmt(st,
                        "SELECT id, at, token_id, role, peer, method, path, outcome FROM audit "
                        "WHERE (? = 0 OR id < ?) ORDER BY id DESC LIMIT ?",
                        &s, err);
    if (rc) return rc;
    sqlite3_bind_int64(s, 1, before_id);
    sqlite3_bind_int64(s, 2, before_id);
    sqlite3_bind_int(s, 3, limit + 1);
    json_t *arr = json_array();
    if (!arr) {
        sqlite3_reset(s);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    int n = 0;
    int64_t last = 0, next = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == limit) {
            next = last;
            break;
        }
        last = sqlite3_column_int64(s, 0);
        json_t *tok = sqlite3_column_type(s, 2) == SQLITE_NULL
                          ? json_null()
                          : json_integer(sqlite3_column_int64(s, 2));
        json_t *o = json_pack("{s:I,s:f,s:o,s:s,s:s,s:s,s:s,s:s}", "id", (json_int_t)last, "at",
                              sqlite3_column_double(s, 1), "token_id", tok, "role",
                              (const char *)sqlite3_column_text(s, 3), "peer",
                              (const char *)sqlite3_column_text(s, 4), "method",
                              (const char *)sqlite3_column_text(s, 5), "path",
                              (const char *)sqlite3_column_text(s, 6), "outcome",
                              (const char *)sqlite3_column_text(s, 7));
        if (!o || json_array_append_new(arr, o)) {
            sqlite3_reset(s);
            json_decref(arr);
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
        }
        n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        json_decref(arr);
        return kiln_store_fail(st, rc, err, "reading the audit log");
    }
    *out = json_pack("{s:o,s:o}", "audit", arr, "next_before_id",
                     next ? json_integer(next) : json_null());
    return *out ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
}

int kiln_access_delivery_seen(struct kiln_store *st, const char *forge, const char *delivery,
                              double now, double keep_s, struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(st, "DELETE FROM hook_deliveries WHERE at < ?", &s, err);
    if (rc) return rc;
    sqlite3_bind_double(s, 1, now - keep_s);
    if ((rc = step_done(st, s, err, "pruning webhook deliveries"))) return rc;
    if ((rc = kiln_store_stmt(
             st, "INSERT OR IGNORE INTO hook_deliveries(forge, delivery, at) VALUES (?, ?, ?)", &s,
             err)))
        return rc;
    kiln_store_bind_text(s, 1, forge);
    kiln_store_bind_text(s, 2, delivery);
    sqlite3_bind_double(s, 3, now);
    if ((rc = step_done(st, s, err, "remembering a webhook delivery"))) return rc;
    if (sqlite3_changes(kiln_store_db(st)) == 0)
        return kiln_fail(err, KILN_EEXIST, "webhook delivery %.100s was already received",
                         delivery);
    return KILN_OK;
}
