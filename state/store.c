/* store.c - SQLite store: open, migrate, statement cache, events, tokens. */
#include "state/store.h"

#include "common/sqlite_open.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define STMT_CACHE_MAX 128

struct cached_stmt {
    const char *sql;
    sqlite3_stmt *stmt;
};

#define CKPT_PAGES 4000         /* the thread's turn (and the inline period) */
#define CKPT_INLINE_PAGES 64000 /* the thread is behind: the commit does it */

/* The checkpoint thread (kiln_store_checkpoints_start). */
struct checkpointer {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int want, stop;
    unsigned long done;
    sqlite3 *db; /* the thread's own connection */
};

struct kiln_store {
    sqlite3 *db;
    struct checkpointer *ck;
    int in_tx;
    /* Inside one transaction nothing but this connection's own event
     * inserts can move the newest event id, so it is read once per
     * transaction: serial changes at every begin, end and event write, and
     * ev_serial says which serial ev_cached was read at (issue 18: listing
     * 10,000 waiting jobs read it 10,000 times). */
    uint64_t serial, ev_serial;
    int64_t ev_cached;
    size_t nstmts;
    struct cached_stmt stmts[STMT_CACHE_MAX];
};

/* Ordered migrations: index i brings the schema from version i to i+1. */
static const char *migrations[] = {
    /* 1: the initial schema */
    "CREATE TABLE workers ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL UNIQUE,"
    " state TEXT NOT NULL DEFAULT 'online',"
    " cores INTEGER NOT NULL DEFAULT 0,"
    " ram_mb INTEGER NOT NULL DEFAULT 0,"
    " platform TEXT NOT NULL DEFAULT '',"
    " isa_features TEXT NOT NULL DEFAULT '[]',"
    " isa_mask INTEGER NOT NULL DEFAULT 0,"
    " gpus TEXT NOT NULL DEFAULT '[]',"
    " labels TEXT NOT NULL DEFAULT '{}',"
    " drain INTEGER NOT NULL DEFAULT 0,"
    " disk_free_mb INTEGER,"
    " mem_pressure INTEGER NOT NULL DEFAULT 0,"
    " registered_at REAL NOT NULL DEFAULT 0,"
    " last_seen REAL NOT NULL DEFAULT 0);"
    "CREATE TABLE jobs ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL,"
    " recipe TEXT, branch TEXT, commit_id TEXT,"
    " state TEXT NOT NULL DEFAULT 'queued',"
    " stage TEXT NOT NULL DEFAULT 'build',"
    " stages TEXT NOT NULL DEFAULT '[\"build\"]',"
    " priority INTEGER NOT NULL DEFAULT 0,"
    " attempt INTEGER NOT NULL DEFAULT 0,"
    " max_attempts INTEGER NOT NULL DEFAULT 3,"
    " infra_failures INTEGER NOT NULL DEFAULT 0,"
    " command TEXT NOT NULL DEFAULT '',"
    " env TEXT NOT NULL DEFAULT '{}',"
    " cores INTEGER NOT NULL DEFAULT 1,"
    " ram_mb INTEGER NOT NULL DEFAULT 1024,"
    " platform TEXT NOT NULL DEFAULT 'x86_64-linux',"
    " isa TEXT, gpu_sm TEXT, sm_compat INTEGER NOT NULL DEFAULT 0,"
    " driver_min INTEGER,"
    " est_duration_s INTEGER,"
    " attrs TEXT NOT NULL DEFAULT '{}',"
    " selftest_spec TEXT, publish_spec TEXT,"
    " worker_id INTEGER REFERENCES workers(id),"
    " gpu_index INTEGER,"
    " failed_stage TEXT, reason TEXT, exit_code INTEGER,"
    " timeout_s INTEGER NOT NULL DEFAULT 14400,"
    " created_at REAL NOT NULL, started_at REAL, finished_at REAL,"
    " stage_started_at REAL, not_before REAL NOT NULL DEFAULT 0,"
    " log_size INTEGER NOT NULL DEFAULT 0, log_base INTEGER NOT NULL DEFAULT 0,"
    " peak_ram_mb INTEGER, cpu_s REAL, selftest TEXT, artifact TEXT, outputs TEXT);"
    "CREATE INDEX jobs_runnable ON jobs(state, priority DESC, id);"
    "CREATE INDEX jobs_worker ON jobs(worker_id);"
    "CREATE INDEX jobs_name ON jobs(name);"
    "CREATE TABLE job_edges ("
    " job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    " needs INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    " PRIMARY KEY (job, needs)) WITHOUT ROWID;"
    "CREATE INDEX job_edges_needs ON job_edges(needs);"
    "CREATE TABLE tokens ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL DEFAULT '',"
    " role TEXT NOT NULL,"
    " hash TEXT NOT NULL UNIQUE,"
    " created_at REAL NOT NULL);"
    "CREATE TABLE events ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " type TEXT NOT NULL,"
    " data TEXT NOT NULL,"
    " at REAL NOT NULL);",
    /* 2: indexes for the hot paths: resources in use per worker, and the
     * earliest backoff end, without scanning job history. */
    "CREATE INDEX jobs_worker_state ON jobs(worker_id, state);"
    "CREATE INDEX jobs_state_not_before ON jobs(state, not_before);",
    /* 3: resource classes of waiting jobs and each class's best jobs come
     * straight from one index (dispatch reads the head of every class). */
    "CREATE INDEX jobs_class ON jobs(state, stage, platform, cores, ram_mb, isa, gpu_sm, "
    "sm_compat, driver_min, priority DESC, id);",
    /* issue 16: who may do what. A token row with worker_id is the
     * credential issued to that worker at registration (the registration
     * token itself has none); jobs remember the token that submitted them;
     * every state-changing request leaves an audit row; webhook delivery
     * ids survive restarts. */
    "ALTER TABLE tokens ADD COLUMN worker_id INTEGER;"
    "CREATE INDEX tokens_worker ON tokens(worker_id);"
    "ALTER TABLE jobs ADD COLUMN owner_token INTEGER;"
    "ALTER TABLE jobs ADD COLUMN secret_env TEXT;"
    "CREATE TABLE audit ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " at REAL NOT NULL,"
    " token_id INTEGER,"
    " role TEXT NOT NULL,"
    " peer TEXT NOT NULL DEFAULT '',"
    " method TEXT NOT NULL,"
    " path TEXT NOT NULL,"
    " outcome TEXT NOT NULL);"
    "CREATE TABLE hook_deliveries ("
    " forge TEXT NOT NULL,"
    " delivery TEXT NOT NULL,"
    " at REAL NOT NULL,"
    " PRIMARY KEY (forge, delivery)) WITHOUT ROWID;",
    /* issue 18: jobs per state, kept by triggers, so the counts every job
     * list carries cost one short read instead of a scan of the history
     * (GROUP BY state over 1,000,000 jobs took 50-280 ms per request). */
    "CREATE TABLE job_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO job_counts SELECT state, COUNT(*) FROM jobs GROUP BY state;"
    "CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN"
    " INSERT INTO job_counts (state, n) VALUES (NEW.state, 1)"
    " ON CONFLICT (state) DO UPDATE SET n = n + 1; END;"
    "CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN"
    " UPDATE job_counts SET n = n - 1 WHERE state = OLD.state; END;"
    "CREATE TRIGGER job_counts_update AFTER UPDATE OF state ON jobs"
    " WHEN OLD.state <> NEW.state BEGIN"
    " UPDATE job_counts SET n = n - 1 WHERE state = OLD.state;"
    " INSERT INTO job_counts (state, n) VALUES (NEW.state, 1)"
    " ON CONFLICT (state) DO UPDATE SET n = n + 1; END;",
    /* issue 18: the jobs of one state newest first (GET /jobs?state=), an
     * index walk instead of a scan of the history. */
    "CREATE INDEX jobs_state_id ON jobs(state, id);",
    /* issue 15 (releases, forge statuses): the jobs of one commit */
    "CREATE INDEX IF NOT EXISTS jobs_commit ON jobs(commit_id, branch);",
    /* issue 16: a token may be scoped to recipes and branches (JSON
     * {"recipes":[glob],"branches":[glob]}; NULL: unscoped). */
    "ALTER TABLE tokens ADD COLUMN scope TEXT;",
    /* issue 17 (Slurm executor): a job may name the one worker it runs on
     * (a Slurm pool's, an agent); NULL = any. Part of the resource class,
     * so the class index carries it before the order columns. */
    "ALTER TABLE jobs ADD COLUMN want_worker TEXT;"
    "DROP INDEX jobs_class;"
    "CREATE INDEX jobs_class ON jobs(state, stage, platform, cores, ram_mb, isa, gpu_sm, "
    "sm_compat, driver_min, want_worker, priority DESC, id);",
    /* issue 18: a job's resource class as one value, so the classes of a
     * state are found by skipping from one to the next in the index (a few
     * probes per class) instead of reading every waiting job on each
     * placement pass: the GROUP BY over the old nine-column index was a
     * quarter of serve's CPU with 2,000 jobs queued. quote() keeps NULL
     * apart from '' and makes the parts unambiguous. */
    "ALTER TABLE jobs ADD COLUMN class_key TEXT GENERATED ALWAYS AS ("
    "quote(stage) || ',' || quote(platform) || ',' || cores || ',' || ram_mb || ',' || "
    "quote(isa) || ',' || quote(gpu_sm) || ',' || sm_compat || ',' || quote(driver_min) || ',' "
    "|| quote(want_worker)) VIRTUAL;"
    "DROP INDEX jobs_class;"
    "CREATE INDEX jobs_class ON jobs(state, class_key, priority DESC, id) WHERE " KILN_SQL_RUNNABLE
    ";"
    /* The indexes only placement and the queue read hold only waiting
     * jobs: a running or finished job's writes skip them, and they stay
     * the size of the queue, not of the history. */
    "DROP INDEX jobs_runnable;"
    "CREATE INDEX jobs_runnable ON jobs(state, priority DESC, id) WHERE " KILN_SQL_WAITING ";"
    "DROP INDEX jobs_state_not_before;"
    "CREATE INDEX jobs_state_not_before ON jobs(state, not_before) WHERE " KILN_SQL_RUNNABLE ";"
    /* Log retention and the log quota read the oldest finished jobs with a
     * log each minute: without an index that was a sort of the whole
     * history (3 s of serve's loop per minute at 100,000 jobs). */
    "CREATE INDEX jobs_logs ON jobs(finished_at, id, log_size) WHERE " KILN_SQL_FINAL_LOGS ";"
    /* jobs_worker_state (worker_id, state) serves every use of it, foreign
     * key checks included: one index less to write on each lease */
    "DROP INDEX IF EXISTS jobs_worker;",
};

int kiln_store_fail(struct kiln_store *st, int rc, struct kiln_error *err, const char *what)
{
    return kiln_fail(err, KILN_EDB, "database error while %s: %s (%d)", what,
                     st && st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc), rc);
}

int kiln_store_step_done(struct kiln_store *st, sqlite3_stmt *s, struct kiln_error *err,
                         const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return kiln_store_fail(st, rc, err, what);
    return KILN_OK;
}

int kiln_store_schema_version(struct kiln_store *st, int *version, struct kiln_error *err)
{
    return kiln_sqlite_version(st->db, version, err);
}

int kiln_store_open(const char *path, struct kiln_store **out, struct kiln_error *err)
{
    *out = NULL;
    struct kiln_store *st = calloc(1, sizeof *st);
    if (!st) return kiln_fail(err, KILN_ENOMEM, "out of memory opening the store");
    int rc = kiln_sqlite_open(path, KILN_SQLITE_ONE_THREAD, migrations,
                              (int)(sizeof migrations / sizeof migrations[0]), &st->db, err);
    if (rc) {
        free(st);
        return rc;
    }
    /* Checkpoint every 4,000 pages (16 MB of WAL) rather than SQLite's
     * 1,000: the hot pages (the live jobs, their indexes) are copied back
     * to the database a quarter as often. */
    /* temp_store=MEMORY: the savepoint journals of a batch (a savepoint
     * per job) stay in memory; in a temp file they were a third of the
     * store's write() calls in bench/dispatch. */
    if ((rc = kiln_sqlite_exec(st->db, "PRAGMA wal_autocheckpoint=4000; PRAGMA temp_store=MEMORY",
                               "tuning checkpoints and temporary storage", err))) {
        sqlite3_close(st->db);
        free(st);
        return rc;
    }
    *out = st;
    return KILN_OK;
}

static void *ckpt_main(void *arg)
{
    struct checkpointer *ck = arg;
    pthread_mutex_lock(&ck->mu);
    for (;;) {
        while (!ck->want && !ck->stop)
            pthread_cond_wait(&ck->cv, &ck->mu);
        if (ck->stop) break;
        ck->want = 0;
        pthread_mutex_unlock(&ck->mu);
        /* SQLITE_BUSY (another checkpoint running) is fine: it is done. */
        int rc = sqlite3_wal_checkpoint_v2(ck->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&ck->mu);
        if (rc == SQLITE_OK) ck->done++;
    }
    pthread_mutex_unlock(&ck->mu);
    return NULL;
}

/* After each commit of the owner's connection (it replaces SQLite's own
 * autocheckpoint): pages = frames now in the WAL. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct checkpointer *ck = arg;
    if (pages >= CKPT_INLINE_PAGES) {
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    } else if (pages >= CKPT_PAGES) {
        pthread_mutex_lock(&ck->mu);
        ck->want = 1;
        pthread_cond_signal(&ck->cv);
        pthread_mutex_unlock(&ck->mu);
    }
    return SQLITE_OK;
}

int kiln_store_checkpoints_start(struct kiln_store *st, struct kiln_error *err)
{
    if (st->ck) return KILN_OK;
    const char *path = sqlite3_db_filename(st->db, "main");
    if (!path || !*path) return kiln_fail(err, KILN_EDB, "the store has no file to checkpoint");
    struct checkpointer *ck = calloc(1, sizeof *ck);
    if (!ck) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    int rc = KILN_EDB;
    int src = sqlite3_open_v2(path, &ck->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        kiln_fail(err, rc, "cannot open %s for checkpoints: %s", path,
                  ck->db ? sqlite3_errmsg(ck->db) : sqlite3_errstr(src));
        goto fail;
    }
    rc = KILN_EIO;
    if (pthread_mutex_init(&ck->mu, NULL)) goto fail_thread;
    if (pthread_cond_init(&ck->cv, NULL)) goto fail_mutex;
    if (pthread_create(&ck->th, NULL, ckpt_main, ck)) goto fail_cond;
    st->ck = ck;
    sqlite3_wal_hook(st->db, on_wal_commit, ck);
    return KILN_OK;
fail_cond:
    pthread_cond_destroy(&ck->cv);
fail_mutex:
    pthread_mutex_destroy(&ck->mu);
fail_thread:
    kiln_fail(err, rc, "cannot start the checkpoint thread");
fail:
    sqlite3_close(ck->db);
    free(ck);
    return rc;
}

unsigned long kiln_store_checkpoints_done(struct kiln_store *st)
{
    if (!st->ck) return 0;
    pthread_mutex_lock(&st->ck->mu);
    unsigned long n = st->ck->done;
    pthread_mutex_unlock(&st->ck->mu);
    return n;
}

static void checkpoints_stop(struct kiln_store *st)
{
    struct checkpointer *ck = st->ck;
    if (!ck) return;
    sqlite3_wal_hook(st->db, NULL, NULL);
    pthread_mutex_lock(&ck->mu);
    ck->stop = 1;
    pthread_cond_signal(&ck->cv);
    pthread_mutex_unlock(&ck->mu);
    pthread_join(ck->th, NULL);
    pthread_cond_destroy(&ck->cv);
    pthread_mutex_destroy(&ck->mu);
    sqlite3_close(ck->db);
    free(ck);
    st->ck = NULL;
}

void kiln_store_close(struct kiln_store *st)
{
    if (!st) return;
    checkpoints_stop(st); /* first: the owner's close is then the last, and cleans the WAL up */
    for (size_t i = 0; i < st->nstmts; i++)
        sqlite3_finalize(st->stmts[i].stmt);
    if (st->db) sqlite3_close(st->db);
    free(st);
}

sqlite3 *kiln_store_db(struct kiln_store *st)
{
    return st->db;
}

int kiln_store_stmt(struct kiln_store *st, const char *sql, sqlite3_stmt **out,
                    struct kiln_error *err)
{
    /* Callers pass string literals: the pointer finds them without a
     * strcmp against every cached statement (a lookup ran on each query). */
    size_t i = 0;
    while (i < st->nstmts && st->stmts[i].sql != sql)
        i++;
    if (i == st->nstmts)
        for (i = 0; i < st->nstmts && strcmp(st->stmts[i].sql, sql); i++)
            ;
    if (i < st->nstmts) {
        sqlite3_reset(st->stmts[i].stmt);
        sqlite3_clear_bindings(st->stmts[i].stmt);
        *out = st->stmts[i].stmt;
        return KILN_OK;
    }
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc != SQLITE_OK) return kiln_store_fail(st, rc, err, "preparing a statement");
    if (st->nstmts == STMT_CACHE_MAX) {
        /* Cache full: a programming error (too many distinct queries), but
         * keep working by evicting the oldest entry. */
        sqlite3_finalize(st->stmts[0].stmt);
        memmove(&st->stmts[0], &st->stmts[1], (STMT_CACHE_MAX - 1) * sizeof st->stmts[0]);
        st->nstmts--;
    }
    st->stmts[st->nstmts].sql = sql;
    st->stmts[st->nstmts].stmt = s;
    st->nstmts++;
    *out = s;
    return KILN_OK;
}

int kiln_store_begin(struct kiln_store *st, struct kiln_error *err)
{
    if (st->in_tx) return kiln_fail(err, KILN_EDB, "nested transaction (internal error)");
    int rc = kiln_sqlite_exec(st->db, "BEGIN IMMEDIATE", "starting a transaction", err);
    st->serial++;
    if (rc == KILN_OK) st->in_tx = 1;
    return rc;
}

int kiln_store_commit(struct kiln_store *st, struct kiln_error *err)
{
    int rc = kiln_sqlite_exec(st->db, "COMMIT", "committing", err);
    st->serial++;
    if (rc) {
        kiln_store_rollback(st);
        return rc;
    }
    st->in_tx = 0;
    return KILN_OK;
}

static void reset_stmts(struct kiln_store *st)
{
    /* Statements still mid-step would keep the transaction open. */
    for (size_t i = 0; i < st->nstmts; i++)
        sqlite3_reset(st->stmts[i].stmt);
}

void kiln_store_rollback(struct kiln_store *st)
{
    if (!st->in_tx) return;
    reset_stmts(st);
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    st->serial++;
    st->in_tx = 0;
}

int kiln_store_savepoint(struct kiln_store *st, struct kiln_error *err)
{
    if (!st->in_tx)
        return kiln_fail(err, KILN_EDB, "savepoint outside a transaction (internal error)");
    return kiln_sqlite_exec(st->db, "SAVEPOINT item", "starting a savepoint", err);
}

void kiln_store_rollback_savepoint(struct kiln_store *st)
{
    reset_stmts(st);
    sqlite3_exec(st->db, "ROLLBACK TO item", NULL, NULL, NULL);
    st->serial++;
}

int kiln_store_release_savepoint(struct kiln_store *st, struct kiln_error *err)
{
    return kiln_sqlite_exec(st->db, "RELEASE item", "ending a savepoint", err);
}

int kiln_store_read_begin(struct kiln_store *st)
{
    if (st->in_tx || kiln_sqlite_exec(st->db, "BEGIN", "starting a read", NULL)) return 0;
    st->serial++;
    st->in_tx = 1;
    return 1;
}

void kiln_store_read_end(struct kiln_store *st, int opened)
{
    if (!opened) return;
    /* Nothing was written: ending the snapshot cannot lose anything. */
    kiln_store_rollback(st);
}

int kiln_store_in_tx(struct kiln_store *st)
{
    return st->in_tx;
}

int kiln_store_bind_text(sqlite3_stmt *s, int idx, const char *t)
{
    return t ? sqlite3_bind_text(s, idx, t, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s, idx);
}

int kiln_store_bind_json(sqlite3_stmt *s, int idx, json_t *v)
{
    if (!v || json_is_null(v)) return sqlite3_bind_null(s, idx);
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t) return SQLITE_NOMEM;
    return sqlite3_bind_text(s, idx, t, -1, free);
}

json_t *kiln_store_col_json(sqlite3_stmt *s, int col)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    if (!t) return json_null();
    json_t *v = json_loads(t, JSON_DECODE_ANY, NULL);
    return v ? v : json_null();
}

int kiln_store_event(struct kiln_store *st, const char *type, json_t *data, double now,
                     struct kiln_error *err)
{
    if (!st->in_tx) return kiln_fail(err, KILN_EDB, "event outside a transaction (internal error)");
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(st, "INSERT INTO events(type, data, at) VALUES (?, ?, ?)", &s, err);
    if (rc) return rc;
    sqlite3_bind_text(s, 1, type, -1, SQLITE_STATIC);
    if (kiln_store_bind_json(s, 2, data) != SQLITE_OK)
        return kiln_fail(err, KILN_ENOMEM, "out of memory serializing an event");
    sqlite3_bind_double(s, 3, now);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    st->serial++;
    if (rc != SQLITE_DONE) return kiln_store_fail(st, rc, err, "appending an event");
    return KILN_OK;
}

int kiln_store_events_after(struct kiln_store *st, int64_t after, int limit,
                            int (*cb)(void *arg, int64_t id, const char *type, const char *data),
                            void *arg, struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(
        st, "SELECT id, type, data FROM events WHERE id > ? ORDER BY id LIMIT ?", &s, err);
    if (rc) return rc;
    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int(s, 2, limit);
    int ret = KILN_OK;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        ret = cb(arg, sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1),
                 (const char *)sqlite3_column_text(s, 2));
        if (ret) break;
    }
    sqlite3_reset(s);
    if (!ret && rc != SQLITE_DONE) return kiln_store_fail(st, rc, err, "reading events");
    return ret;
}

int64_t kiln_store_last_event_id(struct kiln_store *st)
{
    if (st->in_tx && st->ev_serial == st->serial) return st->ev_cached;
    sqlite3_stmt *s;
    if (kiln_store_stmt(st, "SELECT COALESCE(MAX(id), 0) FROM events", &s, NULL)) return 0;
    int64_t id = 0;
    if (sqlite3_step(s) == SQLITE_ROW) id = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    st->ev_cached = id;
    st->ev_serial = st->serial;
    return id;
}

int kiln_store_events_prune(struct kiln_store *st, int64_t keep, struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(st, "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?",
                             &s, err);
    if (rc) return rc;
    sqlite3_bind_int64(s, 1, keep);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    st->serial++;
    if (rc != SQLITE_DONE) return kiln_store_fail(st, rc, err, "pruning events");
    return KILN_OK;
}

int kiln_store_token_add(struct kiln_store *st, enum kiln_role role, const char *name,
                         const char *hash_hex, const char *scope_json, double now,
                         struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(
        st, "INSERT INTO tokens(name, role, hash, created_at, scope) VALUES (?, ?, ?, ?, ?)", &s,
        err);
    if (rc) return rc;
    kiln_store_bind_text(s, 1, name ? name : "");
    kiln_store_bind_text(s, 2, kiln_role_name(role));
    kiln_store_bind_text(s, 3, hash_hex);
    sqlite3_bind_double(s, 4, now);
    if (scope_json)
        kiln_store_bind_text(s, 5, scope_json);
    else
        sqlite3_bind_null(s, 5);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return kiln_store_fail(st, rc, err, "adding a token");
    return KILN_OK;
}

int kiln_store_token_lookup(struct kiln_store *st, const char *hash_hex, enum kiln_role *role,
                            struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(st, "SELECT role FROM tokens WHERE hash = ?", &s, err);
    if (rc) return rc;
    kiln_store_bind_text(s, 1, hash_hex);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(s, 0);
        int prc = kiln_role_parse(r ? r : "", role);
        sqlite3_reset(s);
        if (prc) return kiln_fail(err, KILN_EAUTH, "token has an unknown role");
        return KILN_OK;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) return kiln_fail(err, KILN_EAUTH, "unknown token");
    return kiln_store_fail(st, rc, err, "looking up a token");
}

int kiln_store_token_list(struct kiln_store *st, json_t **out, struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(
        st, "SELECT id, name, role, created_at, hash, scope FROM tokens ORDER BY id", &s, err);
    if (rc) return rc;
    json_t *arr = json_array();
    if (!arr) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char hp[13];
        const char *h = (const char *)sqlite3_column_text(s, 4);
        snprintf(hp, sizeof hp, "%s", h ? h : "");
        json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:f,s:s,s:o}", "id",
                                             (json_int_t)sqlite3_column_int64(s, 0), "name",
                                             (const char *)sqlite3_column_text(s, 1), "role",
                                             (const char *)sqlite3_column_text(s, 2), "created_at",
                                             sqlite3_column_double(s, 3), "hash_prefix", hp,
                                             "scope", kiln_store_col_json(s, 5)));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        return kiln_store_fail(st, rc, err, "listing tokens");
    }
    *out = json_pack("{s:o}", "tokens", arr);
    return *out ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
}

int kiln_store_token_revoke(struct kiln_store *st, int64_t id, struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(st, "DELETE FROM tokens WHERE id = ?", &s, err);
    if (rc) return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return kiln_store_fail(st, rc, err, "revoking a token");
    if (sqlite3_changes(st->db) == 0)
        return kiln_fail(err, KILN_ENOTFOUND, "no token with id %lld", (long long)id);
    return KILN_OK;
}

int kiln_store_row_by_id(struct kiln_store *st, const char *sql, int64_t id, const char *what,
                         sqlite3_stmt **out, struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(st, sql, &s, err);
    if (rc) return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = s;
        return KILN_OK;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return kiln_fail(err, KILN_ENOTFOUND, "%s %lld not found", what, (long long)id);
    char doing[64];
    snprintf(doing, sizeof doing, "reading a %s", what);
    return kiln_store_fail(st, rc, err, doing);
}
