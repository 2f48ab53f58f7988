/* jobs.c - job state machine over the store (one transaction per change). */
#include "state/jobs.h"

#include "common/clock.h"
#include "common/json_field.h"
#include "common/json_out.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JOB_COLS                                                                                   \
    "j.id, j.name, j.recipe, j.branch, j.commit_id, j.state, j.stage, j.stages, j.priority, "      \
    "j.attempt, j.max_attempts, j.command, j.env, j.cores, j.ram_mb, j.platform, j.isa, "          \
    "j.gpu_sm, j.driver_min, j.attrs, j.worker_id, w.name, j.failed_stage, j.reason, "             \
    "j.exit_code, j.timeout_s, j.created_at, j.started_at, j.finished_at, j.log_size, "            \
    "j.peak_ram_mb, j.cpu_s, j.selftest, j.artifact, j.not_before, j.selftest_spec, "              \
    "j.publish_spec, j.gpu_index, j.est_duration_s, j.stage_started_at, j.infra_failures, "        \
    "j.outputs, j.sm_compat, j.want_worker "
#define JOB_FROM " FROM jobs j LEFT JOIN workers w ON w.id = j.worker_id "

enum {
    C_ID,
    C_NAME,
    C_RECIPE,
    C_BRANCH,
    C_COMMIT,
    C_STATE,
    C_STAGE,
    C_STAGES,
    C_PRIORITY,
    C_ATTEMPT,
    C_MAX_ATTEMPTS,
    C_COMMAND,
    C_ENV,
    C_CORES,
    C_RAM,
    C_PLATFORM,
    C_ISA,
    C_GPU_SM,
    C_DRIVER_MIN,
    C_ATTRS,
    C_WORKER_ID,
    C_WORKER,
    C_FAILED_STAGE,
    C_REASON,
    C_EXIT_CODE,
    C_TIMEOUT,
    C_CREATED,
    C_STARTED,
    C_FINISHED,
    C_LOG_SIZE,
    C_PEAK_RAM,
    C_CPU_S,
    C_SELFTEST,
    C_ARTIFACT,
    C_NOT_BEFORE,
    C_SELFTEST_SPEC,
    C_PUBLISH_SPEC,
    C_GPU_INDEX,
    C_EST,
    C_STAGE_STARTED,
    C_INFRA,
    C_OUTPUTS,
    C_SM_COMPAT,
    C_WANT_WORKER
};

static const char *final_states[] = {"succeeded", "failed", "cancelled", "superseded"};

int kiln_job_state_final(const char *state)
{
    for (size_t i = 0; i < sizeof final_states / sizeof final_states[0]; i++)
        if (!strcmp(state, final_states[i])) return 1;
    return 0;
}

void kiln_jobs_init(struct kiln_jobs *j, struct kiln_store *st)
{
    memset(j, 0, sizeof *j);
    j->st = st;
    j->policy.backoff_base_s = 5;
    j->policy.backoff_max_s = 600;
    j->policy.lease_ack_s = 30;
}

static const char *col_text(sqlite3_stmt *s, int c)
{
    return (const char *)sqlite3_column_text(s, c);
}

static json_t *col_str_or_null(sqlite3_stmt *s, int c)
{
    const char *t = col_text(s, c);
    return t ? json_string(t) : json_null();
}

static json_t *col_int_or_null(sqlite3_stmt *s, int c)
{
    return sqlite3_column_type(s, c) == SQLITE_NULL
               ? json_null()
               : json_integer((json_int_t)sqlite3_column_int64(s, c));
}

static json_t *col_real_or_null(sqlite3_stmt *s, int c)
{
    return sqlite3_column_type(s, c) == SQLITE_NULL ? json_null()
                                                    : json_real(sqlite3_column_double(s, c));
}

/* The unfinished dependencies of one job, for its wait_reason: how many,
 * and the first one's name. pending_note() takes its edges one by one in
 * dependency-id order; the one rule of what counts: a dependency that is
 * gone or succeeded does not. */
struct pending {
    int64_t job;
    int count;
    char first[256];
};

static void pending_note(struct pending *p, const char *name, const char *state)
{
    if (!state || !strcmp(state, "succeeded")) return;
    if (p->count++ == 0) snprintf(p->first, sizeof p->first, "%s", name ? name : "?");
}

static json_t *row_to_json(struct kiln_jobs *j, sqlite3_stmt *s, double now)
{
    json_t *o = json_object();
    if (!o) return NULL;
    int64_t id = sqlite3_column_int64(s, C_ID);
    const char *state = col_text(s, C_STATE) ? col_text(s, C_STATE) : "queued";
    json_object_set_new(o, "id", json_integer((json_int_t)id));
    json_object_set_new(o, "name", col_str_or_null(s, C_NAME));
    json_object_set_new(o, "recipe", col_str_or_null(s, C_RECIPE));
    json_object_set_new(o, "branch", col_str_or_null(s, C_BRANCH));
    json_object_set_new(o, "commit", col_str_or_null(s, C_COMMIT));
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "stage", col_str_or_null(s, C_STAGE));
    json_object_set_new(o, "priority", json_integer(sqlite3_column_int64(s, C_PRIORITY)));
    json_object_set_new(o, "attempt", json_integer(sqlite3_column_int64(s, C_ATTEMPT)));
    json_object_set_new(o, "max_attempts", json_integer(sqlite3_column_int64(s, C_MAX_ATTEMPTS)));
    json_object_set_new(o, "command", col_str_or_null(s, C_COMMAND));
    json_object_set_new(o, "env", kiln_store_col_json(s, C_ENV));
    json_t *res = json_object();
    if (res) {
        json_object_set_new(res, "cores", json_integer(sqlite3_column_int64(s, C_CORES)));
        json_object_set_new(res, "ram_mb", json_integer(sqlite3_column_int64(s, C_RAM)));
        json_object_set_new(res, "platform", col_str_or_null(s, C_PLATFORM));
        json_object_set_new(res, "isa", col_str_or_null(s, C_ISA));
        json_object_set_new(res, "gpu_sm", col_str_or_null(s, C_GPU_SM));
        json_object_set_new(res, "driver_min", col_int_or_null(s, C_DRIVER_MIN));
        json_object_set_new(res, "est_duration_s", col_int_or_null(s, C_EST));
        /* the one worker it may run on (null: any) */
        json_object_set_new(res, "worker", col_str_or_null(s, C_WANT_WORKER));
        json_object_set_new(o, "resources", res);
    }
    json_object_set_new(o, "attrs", kiln_store_col_json(s, C_ATTRS));
    json_object_set_new(o, "stages", kiln_store_col_json(s, C_STAGES));
    json_object_set_new(o, "worker", col_str_or_null(s, C_WORKER));
    json_object_set_new(o, "worker_id", col_int_or_null(s, C_WORKER_ID));
    json_object_set_new(o, "gpu_index", col_int_or_null(s, C_GPU_INDEX));
    json_object_set_new(o, "failed_stage", col_str_or_null(s, C_FAILED_STAGE));
    json_object_set_new(o, "reason", col_str_or_null(s, C_REASON));
    json_object_set_new(o, "exit_code", col_int_or_null(s, C_EXIT_CODE));
    json_object_set_new(o, "timeout_s", json_integer(sqlite3_column_int64(s, C_TIMEOUT)));
    json_object_set_new(o, "created_at", col_real_or_null(s, C_CREATED));
    json_object_set_new(o, "started_at", col_real_or_null(s, C_STARTED));
    json_object_set_new(o, "finished_at", col_real_or_null(s, C_FINISHED));
    json_object_set_new(o, "stage_started_at", col_real_or_null(s, C_STAGE_STARTED));
    json_object_set_new(o, "log_size", json_integer(sqlite3_column_int64(s, C_LOG_SIZE)));
    json_object_set_new(o, "peak_ram_mb", col_int_or_null(s, C_PEAK_RAM));
    json_object_set_new(o, "cpu_s", col_real_or_null(s, C_CPU_S));
    json_object_set_new(o, "selftest", kiln_store_col_json(s, C_SELFTEST));
    json_object_set_new(o, "artifact", kiln_store_col_json(s, C_ARTIFACT));
    json_object_set_new(o, "outputs", kiln_store_col_json(s, C_OUTPUTS));
    json_object_set_new(o, "selftest_spec", kiln_store_col_json(s, C_SELFTEST_SPEC));
    json_object_set_new(o, "publish_spec", kiln_store_col_json(s, C_PUBLISH_SPEC));
    json_object_set_new(o, "infra_failures", json_integer(sqlite3_column_int64(s, C_INFRA)));
    json_object_set_new(o, "sm_compat", json_boolean(sqlite3_column_int(s, C_SM_COMPAT)));
    double not_before = sqlite3_column_double(s, C_NOT_BEFORE);
    json_object_set_new(o, "not_before", not_before > 0 ? json_real(not_before) : json_null());
    (void)now;
    return o;
}

/* Why a job in a waiting state (queued, built, tested) waits: its pending
 * dependencies (first, count), its backoff (not_before, reason), else the
 * placer (wait_reason callback, given job: an object with at least "id" and
 * "stage"). Returns 0 and leaves out empty when only the placer could say
 * and placer is 0. */
static int waiting_text(struct kiln_jobs *j, json_t *job, const char *state, double not_before,
                        const char *reason, const char *first, int count, double now, int placer,
                        char *out, size_t len)
{
    out[0] = '\0';
    if (!strcmp(state, "tested"))
        snprintf(out, len, "waiting for the publisher");
    else if (count == 1)
        snprintf(out, len, "waiting for %s", first);
    else if (count > 1)
        snprintf(out, len, "waiting for %s and %d more dependencies", first, count - 1);
    else if (not_before > now)
        snprintf(out, len, "retrying in %.0f s after: %s", ceil(not_before - now),
                 reason ? reason : "an infrastructure failure");
    else if (j->wait_reason && !placer)
        return 0;
    else if (j->wait_reason)
        j->wait_reason(j->wait_ctx, job, out, len);
    else
        snprintf(out, len, "waiting for a worker to ask for work");
    return 1;
}

static int is_waiting(const char *state)
{
    return state &&
           (!strcmp(state, "queued") || !strcmp(state, "built") || !strcmp(state, "tested"));
}

/* wait_reason for a job object (state already set). Without `placer` the
 * placer is not asked (events: asking it costs a placement pass per event,
 * the largest cost of a batch submit); a job only it could explain then has
 * wait_reason null, "not placed yet", and GET /jobs/{id} has the reason. */
static void add_wait_reason(struct kiln_jobs *j, json_t *o, double now, int placer,
                            const char *first, int count)
{
    const char *state = json_string_value(json_object_get(o, "state"));
    char why[512] = "";
    if (state && j->exec_reason && (!strcmp(state, "building") || !strcmp(state, "testing")))
        j->exec_reason(j->exec_ctx, o, why, sizeof why);
    else if (is_waiting(state) &&
             !waiting_text(j, o, state, json_real_value(json_object_get(o, "not_before")),
                           json_string_value(json_object_get(o, "reason")), first, count, now,
                           placer, why, sizeof why))
        why[0] = '\0';
    json_object_set_new(o, "wait_reason", why[0] ? json_string(why) : json_null());
}

static int job_json(struct kiln_jobs *j, sqlite3_stmt *s, double now, json_t **out,
                    struct kiln_error *err)
{
    json_t *o = row_to_json(j, s, now);
    if (!o) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    *out = o;
    return KILN_OK;
}

/* The parts of job objects that are not in their row: "depends" and
 * "wait_reason". jobs is an array of objects from row_to_json, newest
 * (highest id) first. One query reads the edges of all of them (a list of
 * 1,000 jobs used to run three queries per job). */
static int finish_json(struct kiln_jobs *j, json_t *jobs, double now, int placer,
                       struct kiln_error *err)
{
    size_t n = json_array_size(jobs);
    if (n == 0) return KILN_OK;
    struct pending *pd = calloc(n, sizeof *pd);
    json_t *ids = json_array();
    char *ids_txt = NULL;
    int rc = KILN_OK;
    if (!pd || !ids) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(jobs, i);
        json_t *deps = json_array();
        if (!deps || json_object_set_new(o, "depends", deps) ||
            json_array_append(ids, json_object_get(o, "id"))) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto done;
        }
    }
    sqlite3_stmt *s;
    if (n == 1) { /* one job (an event's): no id list to build and unpack */
        if ((rc = kiln_store_stmt(j->st,
                                  "SELECT e.job, e.needs, d.name, d.state FROM job_edges e "
                                  "LEFT JOIN jobs d ON d.id = e.needs WHERE e.job = ?1 "
                                  "ORDER BY e.needs",
                                  &s, err)))
            goto done;
        sqlite3_bind_int64(s, 1, json_integer_value(json_array_get(ids, 0)));
    } else {
        if (!(ids_txt = json_dumps(ids, JSON_COMPACT))) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto done;
        }
        if ((rc = kiln_store_stmt(j->st,
                                  "SELECT e.job, e.needs, d.name, d.state FROM job_edges e "
                                  "LEFT JOIN jobs d ON d.id = e.needs WHERE e.job IN "
                                  "(SELECT value FROM json_each(?1)) ORDER BY e.job DESC, e.needs",
                                  &s, err)))
            goto done;
        sqlite3_bind_text(s, 1, ids_txt, -1, SQLITE_STATIC);
    }
    size_t i = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t job = sqlite3_column_int64(s, 0);
        while (i < n && json_integer_value(json_object_get(json_array_get(jobs, i), "id")) > job)
            i++;
        json_t *o = json_array_get(jobs, i);
        if (i == n || json_integer_value(json_object_get(o, "id")) != job) continue;
        json_array_append_new(json_object_get(o, "depends"),
                              json_integer(sqlite3_column_int64(s, 1)));
        pending_note(&pd[i], col_text(s, 2), col_text(s, 3));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        rc = kiln_store_fail(j->st, rc, err, "reading dependencies");
        goto done;
    }
    rc = KILN_OK;
    for (i = 0; i < n; i++)
        add_wait_reason(j, json_array_get(jobs, i), now, placer, pd[i].first, pd[i].count);
done:
    free(pd);
    free(ids_txt);
    json_decref(ids);
    return rc;
}

static int get_at(struct kiln_jobs *j, int64_t id, double now, int placer, json_t **out,
                  struct kiln_error *err)
{
    sqlite3_stmt *s;
    *out = NULL;
    int rc = kiln_store_stmt(j->st, "SELECT " JOB_COLS JOB_FROM "WHERE j.id = ?", &s, err);
    if (rc) return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return kiln_fail(err, KILN_ENOTFOUND, "job %lld not found", (long long)id);
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return kiln_store_fail(j->st, rc, err, "reading a job");
    }
    json_t *o = NULL;
    rc = job_json(j, s, now, &o, err);
    sqlite3_reset(s);
    if (rc) return rc;
    json_t *one = json_pack("[o]", o);
    if (!one) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    if (!(rc = finish_json(j, one, now, placer, err))) *out = json_incref(o);
    json_decref(one);
    return rc;
}

int kiln_jobs_get(struct kiln_jobs *j, int64_t id, json_t **out, struct kiln_error *err)
{
    return get_at(j, id, kiln_clock_wall(), 1, out, err);
}

static int cmp_i64_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

int kiln_jobs_brief_many(struct kiln_jobs *j, json_t *ids, json_t **out, struct kiln_error *err)
{
    *out = NULL;
    json_t *res = json_array();
    if (!res) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        sqlite3_stmt *s;
        int rc = kiln_store_row_by_id(j->st, "SELECT name, state FROM jobs WHERE id = ?",
                                      json_integer_value(v), "job", &s, err);
        if (rc == KILN_ENOTFOUND) continue; /* left out, as get_many does */
        if (rc) {
            json_decref(res);
            return rc;
        }
        json_t *o = json_pack("{s:I,s:s?,s:s?}", "id", (json_int_t)json_integer_value(v), "name",
                              col_text(s, 0), "state", col_text(s, 1));
        sqlite3_reset(s);
        if (!o || json_array_append_new(res, o)) {
            json_decref(res);
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
        }
    }
    *out = res;
    return KILN_OK;
}

int kiln_jobs_get_many(struct kiln_jobs *j, json_t *ids, json_t **out, struct kiln_error *err)
{
    *out = NULL;
    double now = kiln_clock_wall();
    char *txt = json_dumps(ids, JSON_COMPACT);
    json_t *rows = json_array();
    sqlite3_stmt *s = NULL;
    int rc = txt && rows ? kiln_store_stmt(j->st,
                                           "SELECT " JOB_COLS JOB_FROM
                                           "WHERE j.id IN (SELECT value FROM json_each(?1)) "
                                           "ORDER BY j.id DESC",
                                           &s, err)
                         : kiln_fail(err, KILN_ENOMEM, "out of memory");
    if (!rc) {
        sqlite3_bind_text(s, 1, txt, -1, SQLITE_STATIC);
        json_t *o = NULL;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            if (job_json(j, s, now, &o, err) || json_array_append_new(rows, o)) break;
        sqlite3_reset(s);
        rc = rc == SQLITE_DONE  ? KILN_OK
             : rc == SQLITE_ROW ? kiln_fail(err, KILN_ENOMEM, "out of memory")
                                : kiln_store_fail(j->st, rc, err, "reading jobs");
    }
    /* the parts not in the row, for all of them in one query */
    if (!rc) rc = finish_json(j, rows, now, 1, err);
    json_t *res = rc ? NULL : json_array();
    if (!rc && !res) rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    size_t n = json_array_size(rows), i;
    int64_t *by_id = n ? malloc(n * sizeof *by_id) : NULL; /* the rows' ids, newest first */
    if (!rc && n && !by_id) rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    for (i = 0; !rc && i < n; i++)
        by_id[i] = json_integer_value(json_object_get(json_array_get(rows, i), "id"));
    json_t *v;
    json_array_foreach(rc ? NULL : ids, i, v)
    { /* in the order asked; an id with no job is left out */
        int64_t id = json_integer_value(v);
        int64_t *hit = n ? bsearch(&id, by_id, n, sizeof id, cmp_i64_desc) : NULL;
        if (hit && json_array_append(res, json_array_get(rows, (size_t)(hit - by_id))))
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    free(by_id);
    free(txt);
    json_decref(rows);
    if (rc) {
        json_decref(res);
        return rc;
    }
    *out = res;
    return KILN_OK;
}

/* The job's event; *keep (if not NULL) gets the job object it carries. */
static int emit_keep(struct kiln_jobs *j, int64_t id, double now, json_t **keep,
                     struct kiln_error *err)
{
    json_t *o = NULL;
    int rc = get_at(j, id, now, 0, &o, err);
    if (rc) return rc;
    /* Internal bookkeeping stays out of the event stream. */
    rc = kiln_store_event(j->st, "job", o, now, err);
    if (!rc && keep)
        *keep = o;
    else
        json_decref(o);
    return rc;
}

int kiln_jobs_emit(struct kiln_jobs *j, int64_t id, double now, struct kiln_error *err)
{
    return emit_keep(j, id, now, NULL, err);
}

#define NEEDS_COLS                                                                                 \
    "stage, cores, ram_mb, platform, isa, gpu_sm, sm_compat, driver_min, priority, created_at, "   \
    "est_duration_s, id, want_worker"

static void needs_from_row(sqlite3_stmt *s, struct kiln_stage_needs *n)
{
    memset(n, 0, sizeof *n);
    n->job = sqlite3_column_int64(s, 11);
    snprintf(n->stage, sizeof n->stage, "%s", col_text(s, 0) ? col_text(s, 0) : "build");
    n->cores = sqlite3_column_int(s, 1);
    n->ram_mb = sqlite3_column_int64(s, 2);
    snprintf(n->platform, sizeof n->platform, "%s", col_text(s, 3) ? col_text(s, 3) : "");
    snprintf(n->isa, sizeof n->isa, "%s", col_text(s, 4) ? col_text(s, 4) : "");
    snprintf(n->gpu_sm, sizeof n->gpu_sm, "%s", col_text(s, 5) ? col_text(s, 5) : "");
    n->sm_compat = sqlite3_column_int(s, 6);
    n->driver_min = sqlite3_column_int(s, 7);
    n->priority = sqlite3_column_int(s, 8);
    n->created_at = sqlite3_column_double(s, 9);
    n->est_s = sqlite3_column_double(s, 10);
    snprintf(n->worker, sizeof n->worker, "%s", col_text(s, 12) ? col_text(s, 12) : "");
    if (!strcmp(n->stage, "test")) {
        /* A smoke test loads the artifact and runs kernels: it needs the GPU
         * and the CPU ISA, not the build's parallelism. */
        n->cores = 1;
        if (n->ram_mb > 4096) n->ram_mb = 4096;
    } else {
        /* Builds compile for the target SM/ISA; any host of the platform can. */
        n->gpu_sm[0] = '\0';
        n->isa[0] = '\0';
        n->driver_min = 0;
    }
}

int kiln_jobs_needs(struct kiln_jobs *j, int64_t id, struct kiln_stage_needs *n,
                    struct kiln_error *err)
{
    sqlite3_stmt *s;
    memset(n, 0, sizeof *n);
    int rc = kiln_store_row_by_id(j->st, "SELECT " NEEDS_COLS " FROM jobs WHERE id = ?", id, "job",
                                  &s, err);
    if (rc) return rc;
    needs_from_row(s, n);
    sqlite3_reset(s);
    return KILN_OK;
}

#define PER_CLASS 8
#define MAX_CLASSES 128

int kiln_jobs_runnable_needs(struct kiln_jobs *j, double now, struct kiln_stage_needs *out, int max,
                             int *n, struct kiln_error *err)
{
    *n = 0;
    /* The head (best PER_CLASS runnable jobs) of every resource class: that
     * is all placement needs - the rest of a class waits behind its head -
     * and a class no host can run never hides the others behind it. The
     * classes come from skipping through the jobs_class index (state,
     * class_key, ...) one class at a time, so the cost grows with the
     * number of classes, not with the queue; each head is an index walk in
     * priority order. */
    static const char *states[] = {"built", "queued"};
    for (int si = 0; si < 2 && *n < max; si++) {
        sqlite3_stmt *cls;
        int rc = kiln_store_stmt(
            j->st,
            "WITH RECURSIVE k(key) AS (SELECT (SELECT class_key FROM jobs INDEXED BY jobs_class "
            "WHERE " KILN_SQL_RUNNABLE " AND state = ?1 ORDER BY class_key LIMIT 1) UNION ALL "
            "SELECT (SELECT class_key FROM jobs INDEXED BY jobs_class WHERE " KILN_SQL_RUNNABLE
            " AND state = ?1 AND class_key > k.key ORDER BY class_key LIMIT 1) FROM k WHERE k.key "
            "IS NOT NULL LIMIT ?2) SELECT key FROM k WHERE key IS NOT NULL",
            &cls, err);
        if (rc) return rc;
        sqlite3_bind_text(cls, 1, states[si], -1, SQLITE_STATIC);
        sqlite3_bind_int(cls, 2, MAX_CLASSES + 1);
        char key[MAX_CLASSES][512]; /* a key is at most ~400 bytes (jobspec.c bounds) */
        int nc = 0;
        while (nc < MAX_CLASSES && (rc = sqlite3_step(cls)) == SQLITE_ROW) {
            const char *k = col_text(cls, 0);
            /* never true with jobspec's bounds; a cut key would match nothing */
            if (k && strlen(k) < sizeof key[nc]) snprintf(key[nc++], sizeof key[0], "%s", k);
        }
        sqlite3_reset(cls);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            return kiln_store_fail(j->st, rc, err, "listing job classes");
        for (int k = 0; k < nc && *n < max; k++) {
            sqlite3_stmt *s;
            if ((rc = kiln_store_stmt(
                     j->st,
                     "SELECT " NEEDS_COLS
                     " FROM jobs j INDEXED BY jobs_class WHERE " KILN_SQL_RUNNABLE
                     " AND state = ?1 AND class_key = ?2 AND "
                     "not_before <= ?3 AND NOT EXISTS (SELECT 1 FROM job_edges e JOIN jobs d ON "
                     "d.id = e.needs WHERE e.job = j.id AND d.state != 'succeeded') ORDER BY "
                     "priority DESC, id LIMIT ?4",
                     &s, err)))
                return rc;
            sqlite3_bind_text(s, 1, states[si], -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 2, key[k], -1, SQLITE_STATIC);
            sqlite3_bind_double(s, 3, now);
            sqlite3_bind_int(s, 4, PER_CLASS);
            while (*n < max && (rc = sqlite3_step(s)) == SQLITE_ROW)
                needs_from_row(s, &out[(*n)++]);
            sqlite3_reset(s);
            if (rc != SQLITE_DONE && rc != SQLITE_ROW)
                return kiln_store_fail(j->st, rc, err, "finding runnable jobs");
        }
    }
    return KILN_OK;
}

/* Resolve a depends entry to a job id. batch_names/batch_ids: jobs created
 * earlier in this submission. */
static int resolve_dep(struct kiln_jobs *j, json_t *d, const char *branch, json_t *batch,
                       int64_t *out, struct kiln_error *err)
{
    if (json_is_integer(d)) {
        sqlite3_stmt *s;
        int rc = kiln_store_stmt(j->st, "SELECT id FROM jobs WHERE id = ?", &s, err);
        if (rc) return rc;
        sqlite3_bind_int64(s, 1, json_integer_value(d));
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc == SQLITE_DONE)
            return kiln_fail(err, KILN_EINVAL, "depends: job %lld does not exist",
                             (long long)json_integer_value(d));
        if (rc != SQLITE_ROW) return kiln_store_fail(j->st, rc, err, "resolving a dependency");
        *out = json_integer_value(d);
        return KILN_OK;
    }
    if (!json_is_string(d))
        return kiln_fail(err, KILN_EINVAL, "depends: entries must be ids or names");
    json_t *id = json_object_get(batch, json_string_value(d));
    if (id) {
        *out = json_integer_value(id);
        return KILN_OK;
    }
    sqlite3_stmt *s;
    int rc =
        kiln_store_stmt(j->st,
                        "SELECT id FROM jobs WHERE name = ? AND (branch IS ? OR ? IS NULL) "
                        "AND state NOT IN ('failed','cancelled','superseded') ORDER BY id DESC "
                        "LIMIT 1",
                        &s, err);
    if (rc) return rc;
    kiln_store_bind_text(s, 1, json_string_value(d));
    kiln_store_bind_text(s, 2, branch);
    kiln_store_bind_text(s, 3, branch);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        return KILN_OK;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return kiln_fail(err, KILN_EINVAL,
                         "depends: no job named %.200s to depend on (submit it first or in the "
                         "same request)",
                         json_string_value(d));
    return kiln_store_fail(j->st, rc, err, "resolving a dependency");
}

static int supersede_older(struct kiln_jobs *j, const char *name, const char *branch, int64_t keep,
                           int mode, json_t *owner, double now, struct kiln_error *err)
{
    /* Running attempts are superseded too: the next heartbeat tells the
     * worker that the job is no longer building and it kills the process
     * group, so an outdated commit stops using the host at once. */
    sqlite3_stmt *s;
    int64_t ids[256];
    int n = 0;
    int rc = kiln_store_stmt(j->st,
                             "SELECT id FROM jobs WHERE name = ? AND branch IS ? AND id != ? AND "
                             "state IN ('queued','built','tested','building','testing') AND "
                             "(? OR owner_token IS ?) LIMIT 256",
                             &s, err);
    if (rc) return rc;
    kiln_store_bind_text(s, 1, name);
    kiln_store_bind_text(s, 2, branch);
    sqlite3_bind_int64(s, 3, keep);
    sqlite3_bind_int(s, 4, mode == KILN_SUPERSEDE_ANY);
    if (json_is_integer(owner))
        sqlite3_bind_int64(s, 5, json_integer_value(owner));
    else
        sqlite3_bind_null(s, 5);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < 256)
        ids[n++] = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    for (int i = 0; i < n; i++) {
        sqlite3_stmt *u;
        if ((rc = kiln_store_stmt(j->st,
                                  "UPDATE jobs SET state = 'superseded', finished_at = ?, "
                                  "reason = ? WHERE id = ?",
                                  &u, err)))
            return rc;
        char why[64];
        snprintf(why, sizeof why, "superseded by job %lld", (long long)keep);
        sqlite3_bind_double(u, 1, now);
        kiln_store_bind_text(u, 2, why);
        sqlite3_bind_int64(u, 3, ids[i]);
        if ((rc = kiln_store_step_done(j->st, u, err, "superseding a job"))) return rc;
        if ((rc = kiln_jobs_emit(j, ids[i], now, err))) return rc;
    }
    return KILN_OK;
}

static int fail_dependents(struct kiln_jobs *j, int64_t id, double now, struct kiln_error *err);

/* INSERT one job object (jobspec.h) as queued; *id = its new id. */
static int insert_job(struct kiln_jobs *j, json_t *job, double now, int64_t *id,
                      struct kiln_error *err)
{
    int rc;
    sqlite3_stmt *s;
    rc = kiln_store_stmt(
        j->st,
        "INSERT INTO jobs(name, recipe, branch, commit_id, state, stage, stages, priority, "
        "max_attempts, command, env, cores, ram_mb, platform, isa, gpu_sm, sm_compat, "
        "driver_min, est_duration_s, attrs, selftest_spec, publish_spec, timeout_s, "
        "created_at, owner_token, secret_env, want_worker) "
        "VALUES (?,?,?,?,'queued','build',?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        &s, err);
    if (rc) return rc;
    json_t *selftest = json_object_get(job, "selftest");
    kiln_store_bind_text(s, 1, kiln_json_str(job, "name"));
    kiln_store_bind_text(s, 2, kiln_json_str(job, "recipe"));
    kiln_store_bind_text(s, 3, kiln_json_str(job, "branch"));
    kiln_store_bind_text(s, 4, kiln_json_str(job, "commit"));
    kiln_store_bind_json(s, 5, json_object_get(job, "stages"));
    sqlite3_bind_int64(s, 6, json_integer_value(json_object_get(job, "priority")));
    sqlite3_bind_int64(s, 7,
                       json_integer_value(json_object_get(job, "max_attempts")) > 0
                           ? json_integer_value(json_object_get(job, "max_attempts"))
                           : 3);
    kiln_store_bind_text(s, 8, kiln_json_str(job, "command"));
    kiln_store_bind_json(s, 9, json_object_get(job, "env"));
    sqlite3_bind_int64(s, 10, json_integer_value(json_object_get(job, "cores")));
    sqlite3_bind_int64(s, 11, json_integer_value(json_object_get(job, "ram_mb")));
    kiln_store_bind_text(s, 12, kiln_json_str(job, "platform"));
    kiln_store_bind_text(s, 13, kiln_json_str(job, "isa"));
    kiln_store_bind_text(s, 14, kiln_json_str(job, "gpu_sm"));
    sqlite3_bind_int(s, 15, json_is_true(json_object_get(selftest, "sm_compat")));
    json_t *dm = json_object_get(selftest, "driver_min");
    if (json_is_integer(dm))
        sqlite3_bind_int64(s, 16, json_integer_value(dm));
    else
        sqlite3_bind_null(s, 16);
    json_t *est = json_object_get(job, "est_duration_s");
    if (json_is_integer(est) && json_integer_value(est) > 0)
        sqlite3_bind_int64(s, 17, json_integer_value(est));
    else
        sqlite3_bind_null(s, 17);
    kiln_store_bind_json(s, 18, json_object_get(job, "attrs"));
    kiln_store_bind_json(s, 19, selftest);
    kiln_store_bind_json(s, 20, json_object_get(job, "publish"));
    sqlite3_bind_int64(s, 21,
                       json_integer_value(json_object_get(job, "timeout_s")) > 0
                           ? json_integer_value(json_object_get(job, "timeout_s"))
                           : 14400);
    sqlite3_bind_double(s, 22, now);
    if (json_is_integer(json_object_get(job, "owner")))
        sqlite3_bind_int64(s, 23, json_integer_value(json_object_get(job, "owner")));
    else
        sqlite3_bind_null(s, 23);
    kiln_store_bind_json(s, 24, json_object_get(job, "secret_env"));
    const char *want = kiln_json_str(job, "worker");
    if (want && *want)
        sqlite3_bind_text(s, 25, want, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, 25); /* any worker: the class stays the one it was */
    if ((rc = kiln_store_step_done(j->st, s, err, "inserting a job"))) return rc;
    *id = sqlite3_last_insert_rowid(kiln_store_db(j->st));
    return KILN_OK;
}

/* The job's depends as edges: names resolve within the batch first. */
static int add_edges(struct kiln_jobs *j, json_t *job, int64_t id, json_t *batch,
                     struct kiln_error *err)
{
    int rc;
    json_t *deps = json_object_get(job, "depends");
    size_t k;
    json_t *d;
    json_array_foreach(deps, k, d)
    {
        int64_t need = 0;
        if ((rc = resolve_dep(j, d, kiln_json_str(job, "branch"), batch, &need, err))) return rc;
        if (need == id) {
            rc = kiln_fail(err, KILN_EINVAL, "depends: job %s depends on itself",
                           kiln_json_str(job, "name"));
            return rc;
        }
        sqlite3_stmt *e;
        if ((rc = kiln_store_stmt(
                 j->st, "INSERT OR IGNORE INTO job_edges(job, needs) VALUES (?, ?)", &e, err)))
            return rc;
        sqlite3_bind_int64(e, 1, id);
        sqlite3_bind_int64(e, 2, need);
        if ((rc = kiln_store_step_done(j->st, e, err, "adding a dependency"))) return rc;
    }
    return KILN_OK;
}

int kiln_jobs_submit(struct kiln_jobs *j, json_t *jobs, int supersede, double now, json_t **ids_out,
                     struct kiln_error *err)
{
    *ids_out = NULL;
    if (!json_is_array(jobs) || json_array_size(jobs) == 0)
        return kiln_fail(err, KILN_EINVAL, "nothing to submit");
    json_t *ids = json_array();
    json_t *batch = json_object();
    if (!ids || !batch) {
        json_decref(ids);
        json_decref(batch);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    int rc = kiln_store_begin(j->st, err);
    if (rc) goto out;
    size_t i;
    json_t *job;
    json_array_foreach(jobs, i, job)
    {
        int64_t id;
        if ((rc = insert_job(j, job, now, &id, err))) goto fail;
        json_array_append_new(ids, json_integer(id));
        if (kiln_json_str(job, "name"))
            json_object_set_new(batch, kiln_json_str(job, "name"), json_integer(id));
        if ((rc = add_edges(j, job, id, batch, err))) goto fail;
        if (supersede && kiln_json_str(job, "name") &&
            (rc = supersede_older(j, kiln_json_str(job, "name"), kiln_json_str(job, "branch"), id,
                                  supersede, json_object_get(job, "owner"), now, err)))
            goto fail;
    }
    /* Events after all edges exist so wait reasons are right; a dependency
     * that already failed fails the new job at once. */
    json_array_foreach(ids, i, job)
    {
        if ((rc = kiln_jobs_emit(j, json_integer_value(job), now, err))) goto fail;
    }
    json_array_foreach(ids, i, job)
    {
        /* Dependencies that are already failed/cancelled doom the job. */
        sqlite3_stmt *s;
        if ((rc = kiln_store_stmt(j->st,
                                  "SELECT d.id FROM job_edges e JOIN jobs d ON d.id = e.needs "
                                  "WHERE e.job = ? AND d.state IN "
                                  "('failed','cancelled','superseded') LIMIT 1",
                                  &s, err)))
            goto fail;
        sqlite3_bind_int64(s, 1, json_integer_value(job));
        int r = sqlite3_step(s);
        int64_t bad = r == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
        sqlite3_reset(s);
        if (bad && (rc = fail_dependents(j, bad, now, err))) goto fail;
    }
    if ((rc = kiln_store_commit(j->st, err))) goto out;
    *ids_out = ids;
    ids = NULL;
    goto out;
fail:
    kiln_store_rollback(j->st);
out:
    json_decref(ids);
    json_decref(batch);
    return rc;
}

/* Fail (recursively) every waiting job that depends on id. */
static int fail_dependents(struct kiln_jobs *j, int64_t id, double now, struct kiln_error *err)
{
    int64_t queue[1024];
    int head = 0, tail = 0;
    queue[tail++] = id;
    int rc = KILN_OK;
    while (head < tail) {
        int64_t cur = queue[head++];
        char name[256] = "?", state[32] = "failed";
        sqlite3_stmt *s;
        if ((rc = kiln_store_stmt(j->st, "SELECT name, state FROM jobs WHERE id = ?", &s, err)))
            return rc;
        sqlite3_bind_int64(s, 1, cur);
        if (sqlite3_step(s) == SQLITE_ROW) {
            snprintf(name, sizeof name, "%s", col_text(s, 0) ? col_text(s, 0) : "?");
            snprintf(state, sizeof state, "%s", col_text(s, 1) ? col_text(s, 1) : "failed");
        }
        sqlite3_reset(s);
        int64_t deps[256];
        int nd = 0;
        if ((rc = kiln_store_stmt(j->st,
                                  "SELECT e.job FROM job_edges e JOIN jobs d ON d.id = e.job "
                                  "WHERE e.needs = ? AND d.state IN ('queued','built') LIMIT 256",
                                  &s, err)))
            return rc;
        sqlite3_bind_int64(s, 1, cur);
        while (sqlite3_step(s) == SQLITE_ROW && nd < 256)
            deps[nd++] = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        for (int i = 0; i < nd; i++) {
            char why[400];
            snprintf(why, sizeof why, "dependency %s %s", name,
                     !strcmp(state, "cancelled")    ? "was cancelled"
                     : !strcmp(state, "superseded") ? "was superseded"
                                                    : "failed");
            sqlite3_stmt *u;
            if ((rc = kiln_store_stmt(j->st,
                                      "UPDATE jobs SET state = 'failed', failed_stage = "
                                      "'dependency', reason = ?, finished_at = ?, "
                                      "worker_id = NULL WHERE id = ?",
                                      &u, err)))
                return rc;
            kiln_store_bind_text(u, 1, why);
            sqlite3_bind_double(u, 2, now);
            sqlite3_bind_int64(u, 3, deps[i]);
            if ((rc = kiln_store_step_done(j->st, u, err, "failing a dependent"))) return rc;
            if ((rc = kiln_jobs_emit(j, deps[i], now, err))) return rc;
            if (tail < (int)(sizeof queue / sizeof queue[0])) queue[tail++] = deps[i];
        }
    }
    return KILN_OK;
}

int kiln_jobs_counts(struct kiln_jobs *j, json_t **out, struct kiln_error *err)
{
    sqlite3_stmt *s;
    /* job_counts is kept by triggers (store.c, issue 18): no history scan. */
    int rc = kiln_store_stmt(j->st, "SELECT state, n FROM job_counts", &s, err);
    if (rc) return rc;
    json_t *c = json_object();
    if (!c) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    static const char *all[] = {"queued",     "building",  "built",  "testing",   "tested",
                                "publishing", "succeeded", "failed", "cancelled", "superseded"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        json_object_set_new(c, all[i], json_integer(0));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        json_object_set_new(c, col_text(s, 0), json_integer(sqlite3_column_int64(s, 1)));
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        json_decref(c);
        return kiln_store_fail(j->st, rc, err, "counting jobs");
    }
    *out = c;
    return KILN_OK;
}

static int list_in(struct kiln_jobs *j, const struct kiln_jobs_filter *f, json_t **out,
                   struct kiln_error *err)
{
    *out = NULL;
    int limit = f->limit > 0 ? f->limit : 100;
    if (limit > 1000) limit = 1000;
    sqlite3_stmt *s;
#define LIST_REST                                                                                  \
    "(?2 IS NULL OR j.recipe = ?2) AND (?3 IS NULL OR j.branch = ?3) AND "                         \
    "(?4 IS NULL OR j.name = ?4) AND "                                                             \
    "(?5 IS NULL OR instr(j.name, ?5) > 0 OR instr(COALESCE(j.reason,''), ?5) > 0) AND "           \
    "(?6 = 0 OR j.id < ?6) AND (?7 = 0 OR j.worker_id = ?7) ORDER BY j.id DESC LIMIT ?8"
    /* With a state, "j.state = ?1" lets SQLite walk jobs_state_id newest
     * first; the optional form cannot use an index and scanned the whole
     * history for a state with few jobs (1.7 s at 1,000,000; issue 18). */
    int with_state = f->state && f->state[0];
    int rc =
        kiln_store_stmt(j->st,
                        with_state ? "SELECT " JOB_COLS JOB_FROM "WHERE j.state = ?1 AND " LIST_REST
                                   : "SELECT " JOB_COLS JOB_FROM
                                     "WHERE (?1 IS NULL OR j.state = ?1) AND " LIST_REST,
                        &s, err);
#undef LIST_REST
    if (rc) return rc;
    kiln_store_bind_text(s, 1, f->state && f->state[0] ? f->state : NULL);
    kiln_store_bind_text(s, 2, f->recipe && f->recipe[0] ? f->recipe : NULL);
    kiln_store_bind_text(s, 3, f->branch && f->branch[0] ? f->branch : NULL);
    kiln_store_bind_text(s, 4, f->name && f->name[0] ? f->name : NULL);
    kiln_store_bind_text(s, 5, f->q && f->q[0] ? f->q : NULL);
    sqlite3_bind_int64(s, 6, f->before_id > 0 ? f->before_id : 0);
    sqlite3_bind_int64(s, 7, f->worker_id);
    sqlite3_bind_int(s, 8, limit + 1);
    json_t *arr = json_array();
    if (!arr) {
        sqlite3_reset(s);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    double now = kiln_clock_wall();
    int n = 0;
    int more = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == limit) {
            more = 1;
            break;
        }
        json_t *o = NULL;
        if ((rc = job_json(j, s, now, &o, err))) {
            sqlite3_reset(s);
            json_decref(arr);
            return rc;
        }
        json_array_append_new(arr, o);
        n++;
    }
    sqlite3_reset(s);
    if (!more && rc != SQLITE_DONE) {
        json_decref(arr);
        return kiln_store_fail(j->st, rc, err, "listing jobs");
    }
    if ((rc = finish_json(j, arr, now, 1, err))) {
        json_decref(arr);
        return rc;
    }
    json_t *counts;
    if ((rc = kiln_jobs_counts(j, &counts, err))) {
        json_decref(arr);
        return rc;
    }
    json_t *next = json_null();
    if (more && n > 0)
        next = json_integer(json_integer_value(json_object_get(json_array_get(arr, n - 1), "id")));
    *out = json_pack("{s:o,s:o,s:o}", "jobs", arr, "next_before_id", next, "counts", counts);
    return *out ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
}

int kiln_jobs_list(struct kiln_jobs *j, const struct kiln_jobs_filter *f, json_t **out,
                   struct kiln_error *err)
{
    int opened = kiln_store_read_begin(j->st);
    int rc = list_in(j, f, out, err);
    kiln_store_read_end(j->st, opened);
    return rc;
}

/* ---- the whole queue in one answer (kiln_jobs_queue) ---- */

struct pending_set {
    struct pending *v;
    size_t n, cap;
};

/* The unfinished dependencies of every waiting job that has any
 * dependency, by job id ascending. */
static int read_pending(struct kiln_jobs *j, struct pending_set *ps, struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(j->st,
                             "SELECT e.job, d.name, d.state FROM jobs w JOIN job_edges e ON "
                             "e.job = w.id LEFT JOIN jobs d ON d.id = e.needs WHERE w.state IN "
                             "('queued','built') ORDER BY e.job, e.needs",
                             &s, err);
    if (rc) return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t job = sqlite3_column_int64(s, 0);
        if (!ps->n || ps->v[ps->n - 1].job != job) {
            if (ps->n == ps->cap) {
                size_t cap = ps->cap ? ps->cap * 2 : 64;
                struct pending *v = realloc(ps->v, cap * sizeof *v);
                if (!v) {
                    sqlite3_reset(s);
                    return kiln_fail(err, KILN_ENOMEM, "out of memory");
                }
                ps->v = v;
                ps->cap = cap;
            }
            ps->v[ps->n++] = (struct pending){.job = job};
        }
        pending_note(&ps->v[ps->n - 1], col_text(s, 1), col_text(s, 2));
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? KILN_OK : kiln_store_fail(j->st, rc, err, "reading dependencies");
}

static const struct pending *find_pending(const struct pending_set *ps, int64_t job)
{
    size_t lo = 0, hi = ps->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ps->v[mid].job < job)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ps->n && ps->v[lo].job == job ? &ps->v[lo] : NULL;
}

enum {
    Q_ID,
    Q_NAME,
    Q_RECIPE,
    Q_BRANCH,
    Q_STATE,
    Q_STAGE,
    Q_PRIO,
    Q_PLATFORM,
    Q_SM,
    Q_ISA,
    Q_ATTRS,
    Q_CREATED,
    Q_NOT_BEFORE,
    Q_REASON
};

/* A time column (seconds) to the millisecond, or null: %.17g cost more
 * than the rest of a row. */
static int out_time(struct kiln_buf *b, sqlite3_stmt *s, int col)
{
    if (sqlite3_column_type(s, col) == SQLITE_NULL) return kiln_buf_puts(b, "null");
    double t = sqlite3_column_double(s, col);
    long long ms = llround(fabs(t) * 1000.0);
    int rc = t < 0 && ms ? kiln_buf_puts(b, "-") : KILN_OK;
    if (!rc) rc = kiln_json_out_int(b, ms / 1000);
    int frac = (int)(ms % 1000);
    if (!rc && frac) {
        char f[5] = {'.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
                     (char)('0' + frac % 10), 0};
        rc = kiln_buf_puts(b, f);
    }
    return rc;
}

/* ,"key":"value" after an earlier step's rc (nothing once one failed). */
static int field_str(struct kiln_buf *b, int rc, const char *key, const char *v)
{
    if (!rc) rc = kiln_buf_puts(b, key);
    if (!rc) rc = kiln_json_out_str(b, v);
    return rc;
}

/* One row as a JSON object; probe is the {"id","stage"} object the
 * placer's wait_reason callback reads, reused row after row. */
static int queue_row(struct kiln_jobs *j, sqlite3_stmt *s, const struct pending_set *ps,
                     json_t *probe, double now, struct kiln_buf *b)
{
    int64_t id = sqlite3_column_int64(s, Q_ID);
    const char *state = col_text(s, Q_STATE) ? col_text(s, Q_STATE) : "queued";
    const char *stage = col_text(s, Q_STAGE);
    const struct pending *pd = find_pending(ps, id);
    char why[512];
    if (json_object_set_new(probe, "id", json_integer(id)) ||
        json_object_set_new(probe, "stage", stage ? json_string(stage) : json_null()))
        return KILN_ENOMEM;
    waiting_text(j, probe, state, sqlite3_column_double(s, Q_NOT_BEFORE), col_text(s, Q_REASON),
                 pd ? pd->first : "", pd ? pd->count : 0, now, 1, why, sizeof why);
    const char *attrs = col_text(s, Q_ATTRS);
    int rc = kiln_buf_puts(b, "{\"id\":");
    if (!rc) rc = kiln_json_out_int(b, id);
    rc = field_str(b, rc, ",\"name\":", col_text(s, Q_NAME));
    rc = field_str(b, rc, ",\"recipe\":", col_text(s, Q_RECIPE));
    rc = field_str(b, rc, ",\"branch\":", col_text(s, Q_BRANCH));
    rc = field_str(b, rc, ",\"state\":", state);
    rc = field_str(b, rc, ",\"stage\":", stage);
    if (!rc) rc = kiln_buf_puts(b, ",\"priority\":");
    if (!rc) rc = kiln_json_out_int(b, sqlite3_column_int64(s, Q_PRIO));
    rc = field_str(b, rc, ",\"resources\":{\"platform\":", col_text(s, Q_PLATFORM));
    rc = field_str(b, rc, ",\"gpu_sm\":", col_text(s, Q_SM));
    rc = field_str(b, rc, ",\"isa\":", col_text(s, Q_ISA));
    /* attrs is JSON text that kiln wrote (kiln_store_bind_json) */
    if (!rc) rc = kiln_buf_puts(b, "},\"attrs\":");
    if (!rc) rc = kiln_buf_puts(b, attrs && attrs[0] ? attrs : "null");
    if (!rc) rc = kiln_buf_puts(b, ",\"created_at\":");
    if (!rc) rc = out_time(b, s, Q_CREATED);
    if (!rc) rc = kiln_buf_puts(b, ",\"wait_reason\":");
    if (!rc) rc = kiln_json_out_str(b, why[0] ? why : NULL);
    if (!rc) rc = kiln_buf_puts(b, "}");
    return rc;
}

static int queue_in(struct kiln_jobs *j, const struct kiln_jobs_filter *f, struct kiln_buf *out,
                    struct kiln_error *err)
{
    int limit = f->limit > 0 && f->limit < KILN_QUEUE_MAX ? f->limit : KILN_QUEUE_MAX;
    struct pending_set ps = {0};
    json_t *probe = json_object();
    int rc = probe ? read_pending(j, &ps, err) : kiln_fail(err, KILN_ENOMEM, "out of memory");
    sqlite3_stmt *s = NULL;
    /* One state at a time: "state = ?" walks jobs_runnable (state,
     * priority DESC, id) in order; "state IN (...)" made SQLite sort all
     * 10,000 rows first. */
    if (!rc)
        rc = kiln_store_stmt(
            j->st,
            "SELECT id, name, recipe, branch, state, stage, priority, platform, gpu_sm, isa, "
            "attrs, created_at, not_before, reason FROM jobs INDEXED BY jobs_runnable "
            "WHERE " KILN_SQL_WAITING
            " AND state = ?1 AND (?2 IS NULL OR recipe = ?2) AND (?3 IS NULL OR branch = ?3) "
            "AND (?4 IS NULL OR name = ?4) AND "
            "(?5 IS NULL OR instr(name, ?5) > 0 OR instr(COALESCE(reason,''), ?5) > 0) "
            "ORDER BY priority DESC, id",
            &s, err);
    if (rc) goto done;
    double now = kiln_clock_wall();
    long long total = 0;
    rc = kiln_buf_puts(out, "{\"jobs\":[");
    static const char *const states[] = {"queued", "built", "tested"};
    for (size_t k = 0; !rc && k < sizeof states / sizeof states[0]; k++) {
        if (f->state && f->state[0] && strcmp(f->state, states[k])) continue;
        sqlite3_bind_text(s, 1, states[k], -1, SQLITE_STATIC);
        kiln_store_bind_text(s, 2, f->recipe && f->recipe[0] ? f->recipe : NULL);
        kiln_store_bind_text(s, 3, f->branch && f->branch[0] ? f->branch : NULL);
        kiln_store_bind_text(s, 4, f->name && f->name[0] ? f->name : NULL);
        kiln_store_bind_text(s, 5, f->q && f->q[0] ? f->q : NULL);
        int step = SQLITE_DONE;
        while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
            if (total++ >= limit) continue; /* counted, not written */
            if (total > 1) rc = kiln_buf_puts(out, ",");
            if (!rc) rc = queue_row(j, s, &ps, probe, now, out);
        }
        sqlite3_reset(s);
        if (rc) {
            rc = kiln_fail(err, rc, rc == KILN_ELIMIT ? "queue answer too large" : "out of memory");
            goto done;
        }
        if (step != SQLITE_DONE) {
            rc = kiln_store_fail(j->st, step, err, "reading the queue");
            goto done;
        }
    }
    if (!rc && kiln_buf_printf(out, "],\"total\":%lld,\"truncated\":%s}", total,
                               total > limit ? "true" : "false"))
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
done:
    free(ps.v);
    json_decref(probe);
    return rc;
}

int kiln_jobs_queue(struct kiln_jobs *j, const struct kiln_jobs_filter *f, struct kiln_buf *out,
                    struct kiln_error *err)
{
    if (f->state && f->state[0] && !is_waiting(f->state))
        return kiln_fail(err, KILN_EINVAL,
                         "state '%.32s' is not a waiting state (queued, built or tested)",
                         f->state);
    int opened = kiln_store_read_begin(j->st);
    int rc = queue_in(j, f, out, err);
    kiln_store_read_end(j->st, opened);
    return rc;
}

/* Current state, stage, attempt and worker of a job. */
struct jrow {
    char state[16];
    char stage[16];
    char name[256];
    int64_t attempt;
    int64_t worker_id;
    int64_t max_attempts;
    int64_t infra_failures;
    json_t *stages;
};

static int load_row(struct kiln_jobs *j, int64_t id, struct jrow *r, struct kiln_error *err)
{
    sqlite3_stmt *s;
    memset(r, 0, sizeof *r);
    int rc =
        kiln_store_row_by_id(j->st,
                             "SELECT state, stage, attempt, COALESCE(worker_id, 0), max_attempts, "
                             "infra_failures, stages, name FROM jobs WHERE id = ?",
                             id, "job", &s, err);
    if (rc) return rc;
    snprintf(r->state, sizeof r->state, "%s", col_text(s, 0) ? col_text(s, 0) : "");
    snprintf(r->stage, sizeof r->stage, "%s", col_text(s, 1) ? col_text(s, 1) : "");
    r->attempt = sqlite3_column_int64(s, 2);
    r->worker_id = sqlite3_column_int64(s, 3);
    r->max_attempts = sqlite3_column_int64(s, 4);
    r->infra_failures = sqlite3_column_int64(s, 5);
    r->stages = kiln_store_col_json(s, 6);
    snprintf(r->name, sizeof r->name, "%s", col_text(s, 7) ? col_text(s, 7) : "");
    sqlite3_reset(s);
    return KILN_OK;
}

static void free_row(struct jrow *r)
{
    json_decref(r->stages);
    r->stages = NULL;
}

static int running_state(const char *state)
{
    return !strcmp(state, "building") || !strcmp(state, "testing");
}

int kiln_jobs_cancel(struct kiln_jobs *j, int64_t id, double now, int64_t *worker_id_out,
                     struct kiln_error *err)
{
    if (worker_id_out) *worker_id_out = 0;
    int rc = kiln_store_begin(j->st, err);
    if (rc) return rc;
    struct jrow r;
    if ((rc = load_row(j, id, &r, err))) goto fail;
    if (kiln_job_state_final(r.state)) {
        rc = kiln_fail(err, KILN_ESTATE, "job %lld is already %s", (long long)id, r.state);
        goto fail;
    }
    if (worker_id_out && running_state(r.state)) *worker_id_out = r.worker_id;
    sqlite3_stmt *s;
    if ((rc =
             kiln_store_stmt(j->st,
                             "UPDATE jobs SET state = 'cancelled', reason = 'cancelled by a user', "
                             "failed_stage = NULL, finished_at = ? WHERE id = ?",
                             &s, err)))
        goto fail;
    sqlite3_bind_double(s, 1, now);
    sqlite3_bind_int64(s, 2, id);
    if ((rc = kiln_store_step_done(j->st, s, err, "cancelling a job"))) goto fail;
    if ((rc = kiln_jobs_emit(j, id, now, err))) goto fail;
    if ((rc = fail_dependents(j, id, now, err))) goto fail;
    free_row(&r);
    return kiln_store_commit(j->st, err);
fail:
    free_row(&r);
    kiln_store_rollback(j->st);
    return rc;
}

static int requeue_dependents(struct kiln_jobs *j, int64_t id, double now, struct kiln_error *err)
{
    int64_t queue[1024];
    int head = 0, tail = 0;
    queue[tail++] = id;
    int rc;
    while (head < tail) {
        int64_t cur = queue[head++];
        int64_t deps[256];
        int nd = 0;
        sqlite3_stmt *s;
        if ((rc = kiln_store_stmt(j->st,
                                  "SELECT e.job FROM job_edges e JOIN jobs d ON d.id = e.job "
                                  "WHERE e.needs = ? AND d.state = 'failed' AND "
                                  "d.failed_stage = 'dependency' LIMIT 256",
                                  &s, err)))
            return rc;
        sqlite3_bind_int64(s, 1, cur);
        while (sqlite3_step(s) == SQLITE_ROW && nd < 256)
            deps[nd++] = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        for (int i = 0; i < nd; i++) {
            sqlite3_stmt *u;
            if ((rc = kiln_store_stmt(j->st,
                                      "UPDATE jobs SET state = 'queued', stage = 'build', "
                                      "failed_stage = NULL, reason = NULL, finished_at = NULL, "
                                      "not_before = 0 WHERE id = ?",
                                      &u, err)))
                return rc;
            sqlite3_bind_int64(u, 1, deps[i]);
            if ((rc = kiln_store_step_done(j->st, u, err, "requeueing a dependent"))) return rc;
            if ((rc = kiln_jobs_emit(j, deps[i], now, err))) return rc;
            if (tail < (int)(sizeof queue / sizeof queue[0])) queue[tail++] = deps[i];
        }
    }
    return KILN_OK;
}

int kiln_jobs_retry(struct kiln_jobs *j, int64_t id, double now, struct kiln_error *err)
{
    int rc = kiln_store_begin(j->st, err);
    if (rc) return rc;
    struct jrow r;
    if ((rc = load_row(j, id, &r, err))) goto fail;
    if (strcmp(r.state, "failed") && strcmp(r.state, "cancelled") &&
        strcmp(r.state, "superseded")) {
        rc = kiln_fail(err, KILN_ESTATE,
                       "job %lld is %s; only failed, cancelled or superseded jobs can be retried",
                       (long long)id, r.state);
        goto fail;
    }
    sqlite3_stmt *s;
    if ((rc = kiln_store_stmt(j->st,
                              "UPDATE jobs SET state = 'queued', stage = 'build', failed_stage = "
                              "NULL, reason = NULL, exit_code = NULL, finished_at = NULL, "
                              "not_before = 0, infra_failures = 0, worker_id = NULL, gpu_index = "
                              "NULL WHERE id = ?",
                              &s, err)))
        goto fail;
    sqlite3_bind_int64(s, 1, id);
    if ((rc = kiln_store_step_done(j->st, s, err, "retrying a job"))) goto fail;
    if ((rc = kiln_jobs_emit(j, id, now, err))) goto fail;
    if ((rc = requeue_dependents(j, id, now, err))) goto fail;
    free_row(&r);
    return kiln_store_commit(j->st, err);
fail:
    free_row(&r);
    kiln_store_rollback(j->st);
    return rc;
}

int kiln_jobs_runnable(struct kiln_jobs *j, double now, int64_t *ids, int max, int *n,
                       struct kiln_error *err)
{
    sqlite3_stmt *s;
    *n = 0;
    int rc = kiln_store_stmt(
        j->st,
        "SELECT id FROM jobs j WHERE " KILN_SQL_RUNNABLE " AND not_before <= ? AND "
        "NOT EXISTS (SELECT 1 FROM job_edges e JOIN jobs d ON d.id = e.needs WHERE e.job = j.id "
        "AND d.state != 'succeeded') ORDER BY priority DESC, id LIMIT ?",
        &s, err);
    if (rc) return rc;
    sqlite3_bind_double(s, 1, now);
    sqlite3_bind_int(s, 2, max);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < max)
        ids[(*n)++] = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return kiln_store_fail(j->st, rc, err, "finding runnable jobs");
    return KILN_OK;
}

double kiln_jobs_next_wakeup(struct kiln_jobs *j, double now)
{
    double t = 0;
    static const char *states[] = {"queued", "built"};
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *s;
        if (kiln_store_stmt(j->st,
                            "SELECT MIN(not_before) FROM jobs INDEXED BY jobs_state_not_before "
                            "WHERE " KILN_SQL_RUNNABLE " AND state = ? AND not_before > ?",
                            &s, NULL))
            return 0;
        sqlite3_bind_text(s, 1, states[i], -1, SQLITE_STATIC);
        sqlite3_bind_double(s, 2, now);
        if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
            double v = sqlite3_column_double(s, 0);
            if (t == 0 || v < t) t = v;
        }
        sqlite3_reset(s);
    }
    return t;
}

/* One lease inside the caller's transaction: the state change, its event,
 * and the lease object built from the same job object the event carries. */
static int lease_tx(struct kiln_jobs *j, int64_t id, int64_t worker_id, int gpu_index,
                    int64_t log_base, double now, json_t **lease_out, struct kiln_error *err)
{
    *lease_out = NULL;
    struct jrow r;
    int rc = load_row(j, id, &r, err);
    if (rc) return rc;
    const char *next;
    if (!strcmp(r.state, "queued"))
        next = "building";
    else if (!strcmp(r.state, "built"))
        next = "testing";
    else {
        rc = kiln_fail(err, KILN_ESTATE, "job %lld is %s, not waiting", (long long)id, r.state);
        free_row(&r);
        return rc;
    }
    free_row(&r);
    sqlite3_stmt *s;
    if ((rc = kiln_store_stmt(j->st,
                              "UPDATE jobs SET state = ?, attempt = attempt + 1, worker_id = ?, "
                              "gpu_index = ?, started_at = COALESCE(started_at, ?), "
                              "stage_started_at = ?, log_base = ? WHERE id = ?",
                              &s, err)))
        return rc;
    sqlite3_bind_text(s, 1, next, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, worker_id);
    if (gpu_index >= 0)
        sqlite3_bind_int(s, 3, gpu_index);
    else
        sqlite3_bind_null(s, 3);
    sqlite3_bind_double(s, 4, now);
    sqlite3_bind_double(s, 5, now);
    sqlite3_bind_int64(s, 6, log_base);
    sqlite3_bind_int64(s, 7, id);
    if ((rc = kiln_store_step_done(j->st, s, err, "leasing a job"))) return rc;
    json_t *o = NULL;
    if ((rc = emit_keep(j, id, now, &o, err))) return rc;
    struct kiln_stage_needs nd;
    if ((rc = kiln_jobs_needs(j, id, &nd, err))) {
        json_decref(o);
        return rc;
    }
    json_t *lease = json_pack(
        "{s:O,s:O,s:O,s:O,s:O,s:O,s:i,s:I,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "id",
        json_object_get(o, "id"), "attempt", json_object_get(o, "attempt"), "stage",
        json_object_get(o, "stage"), "name", json_object_get(o, "name"), "command",
        json_object_get(o, "command"), "env", json_object_get(o, "env"), "cores", nd.cores,
        "ram_mb", (json_int_t)nd.ram_mb, "timeout_s", json_object_get(o, "timeout_s"), "gpu_index",
        json_object_get(o, "gpu_index"), "selftest", json_object_get(o, "selftest_spec"), "attrs",
        json_object_get(o, "attrs"), "outputs", json_object_get(o, "outputs"), "publish",
        json_object_get(o, "publish_spec"), "platform",
        json_object_get(json_object_get(o, "resources"), "platform"), "commit",
        json_object_get(o, "commit"));
    json_decref(o);
    if (!lease) return kiln_fail(err, KILN_ENOMEM, "out of memory building the lease");
    *lease_out = lease;
    return KILN_OK;
}

int kiln_jobs_lease_batch(struct kiln_jobs *j, size_t n, struct kiln_lease_item *items,
                          int64_t worker_id, double now, struct kiln_error *err)
{
    for (size_t i = 0; i < n; i++)
        items[i].lease = NULL;
    int rc = kiln_store_begin(j->st, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        struct kiln_lease_item *it = &items[i];
        if (it->rc) continue; /* refused before it got here: its err says why */
        if ((rc = kiln_store_savepoint(j->st, err))) goto fail;
        it->rc =
            lease_tx(j, it->job, worker_id, it->gpu_index, it->log_base, now, &it->lease, &it->err);
        if (it->rc) kiln_store_rollback_savepoint(j->st);
        if ((rc = kiln_store_release_savepoint(j->st, err))) goto fail;
    }
    /* The worker hears of no lease before this commit. */
    if ((rc = kiln_store_commit(j->st, err))) goto drop;
    return KILN_OK;
fail:
    kiln_store_rollback(j->st);
drop:
    for (size_t i = 0; i < n; i++) {
        json_decref(items[i].lease);
        items[i].lease = NULL;
    }
    return rc;
}

int kiln_jobs_lease(struct kiln_jobs *j, int64_t id, int64_t worker_id, int gpu_index,
                    int64_t log_base, double now, json_t **lease_out, struct kiln_error *err)
{
    struct kiln_lease_item it = {.job = id, .gpu_index = gpu_index, .log_base = log_base};
    int rc = kiln_jobs_lease_batch(j, 1, &it, worker_id, now, err);
    if (!rc && it.rc) {
        *err = it.err;
        rc = it.rc;
    }
    *lease_out = it.lease;
    return rc;
}

/* Next stage after `stage` in the stages array, or NULL. */
static const char *next_stage(json_t *stages, const char *stage)
{
    size_t i;
    json_t *v;
    json_array_foreach(stages, i, v)
    {
        if (json_is_string(v) && !strcmp(json_string_value(v), stage)) {
            json_t *n = json_array_get(stages, i + 1);
            return json_is_string(n) ? json_string_value(n) : NULL;
        }
    }
    return NULL;
}

int kiln_jobs_infra_fail_tx(struct kiln_jobs *j, int64_t id, const char *reason, double now,
                            struct kiln_error *err)
{
    struct jrow r;
    int rc = load_row(j, id, &r, err);
    if (rc) return rc;
    if (!running_state(r.state)) {
        free_row(&r);
        return KILN_OK; /* already moved on: nothing to requeue */
    }
    sqlite3_stmt *s;
    if (r.infra_failures + 1 >= r.max_attempts) {
        char why[600];
        snprintf(why, sizeof why, "gave up after %lld infrastructure failures; last: %s",
                 (long long)(r.infra_failures + 1), reason);
        if ((rc = kiln_store_stmt(j->st,
                                  "UPDATE jobs SET state = 'failed', failed_stage = stage, reason "
                                  "= ?, finished_at = ?, infra_failures = infra_failures + 1 "
                                  "WHERE id = ?",
                                  &s, err)))
            goto out;
        kiln_store_bind_text(s, 1, why);
        sqlite3_bind_double(s, 2, now);
        sqlite3_bind_int64(s, 3, id);
        if ((rc = kiln_store_step_done(j->st, s, err, "failing a job"))) goto out;
        if ((rc = kiln_jobs_emit(j, id, now, err))) goto out;
        rc = fail_dependents(j, id, now, err);
        goto out;
    }
    double delay = j->policy.backoff_base_s * pow(2.0, (double)r.infra_failures);
    if (delay > j->policy.backoff_max_s) delay = j->policy.backoff_max_s;
    if ((rc = kiln_store_stmt(j->st,
                              "UPDATE jobs SET state = CASE stage WHEN 'build' THEN 'queued' ELSE "
                              "'built' END, reason = ?, not_before = ?, infra_failures = "
                              "infra_failures + 1 WHERE id = ?",
                              &s, err)))
        goto out;
    kiln_store_bind_text(s, 1, reason);
    sqlite3_bind_double(s, 2, now + delay);
    sqlite3_bind_int64(s, 3, id);
    if ((rc = kiln_store_step_done(j->st, s, err, "requeueing a job"))) goto out;
    rc = kiln_jobs_emit(j, id, now, err);
out:
    free_row(&r);
    return rc;
}

int kiln_jobs_infra_fail(struct kiln_jobs *j, int64_t id, const char *reason, double now,
                         struct kiln_error *err)
{
    int rc = kiln_store_begin(j->st, err);
    if (rc) return rc;
    if ((rc = kiln_jobs_infra_fail_tx(j, id, reason, now, err))) {
        kiln_store_rollback(j->st);
        return rc;
    }
    return kiln_store_commit(j->st, err);
}

/* One report inside the caller's transaction; on failure the caller rolls
 * back (the whole transaction, or the report's savepoint in a batch). */
static int report_tx(struct kiln_jobs *j, int64_t id, int64_t worker_id,
                     const struct kiln_report *rep, double now, const char **new_state,
                     struct kiln_error *err)
{
    struct jrow r;
    int rc = load_row(j, id, &r, err);
    if (rc) return rc;
    if (!running_state(r.state) || rep->attempt != r.attempt ||
        (worker_id && r.worker_id != worker_id)) {
        rc = kiln_fail(err, KILN_ECONFLICT,
                       "report for job %lld attempt %lld is stale (job is %s, attempt %lld)",
                       (long long)id, (long long)rep->attempt, r.state, (long long)r.attempt);
        goto fail;
    }
    if (rep->stage && rep->stage[0] && strcmp(rep->stage, r.stage)) {
        rc = kiln_fail(err, KILN_ECONFLICT, "report is for stage %s but job %lld is in stage %s",
                       rep->stage, (long long)id, r.stage);
        goto fail;
    }
    sqlite3_stmt *s;
    const char *state;
    int ok = rep->exit_code == 0 && rep->signal == 0 && !rep->infra;
    const char *nx = ok ? next_stage(r.stages, r.stage) : NULL;
    /* What the worker measured; on success the next state too, in the same
     * write of the row (a failure takes its own path below). */
#define REPORT_SET                                                                                 \
    "UPDATE jobs SET exit_code = ?1, peak_ram_mb = COALESCE(?2, peak_ram_mb), cpu_s = "            \
    "COALESCE(?3, cpu_s), selftest = COALESCE(?4, selftest), outputs = COALESCE(?5, outputs)"
    if ((rc =
             kiln_store_stmt(j->st,
                             ok ? REPORT_SET ", state = ?7, stage = COALESCE(?8, stage), reason = "
                                             "NULL, not_before = 0, finished_at = CASE WHEN ?8 "
                                             "IS NULL THEN ?9 END, infra_failures = 0 WHERE id = ?6"
                                : REPORT_SET " WHERE id = ?6",
                             &s, err)))
        goto fail;
#undef REPORT_SET
    sqlite3_bind_int(s, 1, rep->signal ? 128 + rep->signal : rep->exit_code);
    if (rep->peak_ram_mb >= 0)
        sqlite3_bind_int64(s, 2, rep->peak_ram_mb);
    else
        sqlite3_bind_null(s, 2);
    if (rep->cpu_s >= 0)
        sqlite3_bind_double(s, 3, rep->cpu_s);
    else
        sqlite3_bind_null(s, 3);
    kiln_store_bind_json(s, 4, rep->selftest);
    kiln_store_bind_json(s, 5, rep->outputs);
    sqlite3_bind_int64(s, 6, id);
    state = !ok ? NULL : !nx ? "succeeded" : !strcmp(nx, "test") ? "built" : "tested";
    /* "tested": next is publish, which the server's publisher takes */
    if (ok) {
        sqlite3_bind_text(s, 7, state, -1, SQLITE_STATIC);
        kiln_store_bind_text(s, 8, nx);
        sqlite3_bind_double(s, 9, now);
    }
    if ((rc = kiln_store_step_done(j->st, s, err, "recording a report"))) goto fail;
    if (ok) {
        if ((rc = kiln_jobs_emit(j, id, now, err))) goto fail;
    } else if (rep->infra) {
        char why[600];
        snprintf(why, sizeof why, "%s",
                 rep->reason && rep->reason[0] ? rep->reason
                                               : "the worker reported an infrastructure failure");
        if ((rc = kiln_jobs_infra_fail_tx(j, id, why, now, err))) goto fail;
        struct jrow r2;
        if ((rc = load_row(j, id, &r2, err))) goto fail;
        state = !strcmp(r2.state, "queued")  ? "queued"
                : !strcmp(r2.state, "built") ? "built"
                                             : "failed";
        free_row(&r2);
    } else {
        char why[600];
        if (rep->reason && rep->reason[0])
            snprintf(why, sizeof why, "%s", rep->reason);
        else if (rep->signal)
            snprintf(why, sizeof why, "%s killed by signal %d", r.stage, rep->signal);
        else
            snprintf(why, sizeof why, "%s exited with code %d", r.stage, rep->exit_code);
        if ((rc = kiln_store_stmt(j->st,
                                  "UPDATE jobs SET state = 'failed', failed_stage = stage, reason "
                                  "= ?, finished_at = ? WHERE id = ?",
                                  &s, err)))
            goto fail;
        kiln_store_bind_text(s, 1, why);
        sqlite3_bind_double(s, 2, now);
        sqlite3_bind_int64(s, 3, id);
        if ((rc = kiln_store_step_done(j->st, s, err, "failing a job"))) goto fail;
        if ((rc = kiln_jobs_emit(j, id, now, err))) goto fail;
        if ((rc = fail_dependents(j, id, now, err))) goto fail;
        state = "failed";
    }
    free_row(&r);
    if (new_state) *new_state = state;
    return KILN_OK;
fail:
    free_row(&r);
    return rc;
}

int kiln_jobs_report(struct kiln_jobs *j, int64_t id, int64_t worker_id,
                     const struct kiln_report *rep, double now, const char **new_state,
                     struct kiln_error *err)
{
    int rc = kiln_store_begin(j->st, err);
    if (rc) return rc;
    if ((rc = report_tx(j, id, worker_id, rep, now, new_state, err))) {
        kiln_store_rollback(j->st);
        return rc;
    }
    return kiln_store_commit(j->st, err);
}

int kiln_jobs_report_batch(struct kiln_jobs *j, size_t n, struct kiln_report_item *items,
                           int64_t worker_id, double now, struct kiln_error *err)
{
    int rc = kiln_store_begin(j->st, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        struct kiln_report_item *it = &items[i];
        if (it->rc) continue; /* refused before it got here: its err says why */
        it->state = NULL;
        if ((rc = kiln_store_savepoint(j->st, err))) goto fail;
        it->rc = report_tx(j, it->job, worker_id, &it->rep, now, &it->state, &it->err);
        if (it->rc) {
            it->state = NULL;
            kiln_store_rollback_savepoint(j->st);
        }
        if ((rc = kiln_store_release_savepoint(j->st, err))) goto fail;
    }
    /* Nobody hears of any report before this commit: a crash before it
     * loses the whole batch, and the worker sends it again. */
    return kiln_store_commit(j->st, err);
fail:
    kiln_store_rollback(j->st);
    return rc;
}

int kiln_jobs_check_timeouts(struct kiln_jobs *j, double now, int *n, struct kiln_error *err)
{
    *n = 0;
    sqlite3_stmt *s;
    int64_t ids[256];
    int64_t tmo[256];
    int cnt = 0;
    int rc = kiln_store_stmt(j->st,
                             "SELECT id, timeout_s FROM jobs WHERE state IN ('building','testing') "
                             "AND stage_started_at + timeout_s < ? LIMIT 256",
                             &s, err);
    if (rc) return rc;
    sqlite3_bind_double(s, 1, now);
    while (sqlite3_step(s) == SQLITE_ROW && cnt < 256) {
        ids[cnt] = sqlite3_column_int64(s, 0);
        tmo[cnt++] = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    for (int i = 0; i < cnt; i++) {
        char why[128];
        snprintf(why, sizeof why, "timed out after %lld s", (long long)tmo[i]);
        if ((rc = kiln_jobs_infra_fail(j, ids[i], why, now, err))) return rc;
        (*n)++;
    }
    return KILN_OK;
}

int kiln_jobs_log_state(struct kiln_jobs *j, int64_t id, int64_t *attempt, int64_t *log_base,
                        const char **state, struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc =
        kiln_store_stmt(j->st, "SELECT attempt, log_base, state FROM jobs WHERE id = ?", &s, err);
    if (rc) return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        if (rc == SQLITE_DONE)
            return kiln_fail(err, KILN_ENOTFOUND, "job %lld not found", (long long)id);
        return kiln_store_fail(j->st, rc, err, "reading a job");
    }
    if (attempt) *attempt = sqlite3_column_int64(s, 0);
    if (log_base) *log_base = sqlite3_column_int64(s, 1);
    if (state) {
        const char *t = col_text(s, 2) ? col_text(s, 2) : "";
        static const char *names[] = {"queued",    "building",   "built",     "testing",
                                      "tested",    "publishing", "succeeded", "failed",
                                      "cancelled", "superseded"};
        *state = "queued";
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (!strcmp(t, names[i])) *state = names[i];
    }
    sqlite3_reset(s);
    return KILN_OK;
}

int kiln_jobs_log_grew(struct kiln_jobs *j, int64_t id, int64_t offset, int64_t len,
                       int64_t new_size, double now, struct kiln_error *err)
{
    int rc = kiln_store_begin(j->st, err);
    if (rc) return rc;
    sqlite3_stmt *s;
    if ((rc = kiln_store_stmt(j->st, "UPDATE jobs SET log_size = ? WHERE id = ?", &s, err)))
        goto fail;
    sqlite3_bind_int64(s, 1, new_size);
    sqlite3_bind_int64(s, 2, id);
    if ((rc = kiln_store_step_done(j->st, s, err, "recording the log size"))) goto fail;
    json_t *ev = json_pack("{s:I,s:I,s:I}", "job", (json_int_t)id, "offset", (json_int_t)offset,
                           "len", (json_int_t)len);
    if (!ev) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto fail;
    }
    rc = kiln_store_event(j->st, "log", ev, now, err);
    json_decref(ev);
    if (rc) goto fail;
    return kiln_store_commit(j->st, err);
fail:
    kiln_store_rollback(j->st);
    return rc;
}

int kiln_jobs_publish_start(struct kiln_jobs *j, int64_t id, double now, struct kiln_error *err)
{
    int rc = kiln_store_begin(j->st, err);
    if (rc) return rc;
    sqlite3_stmt *s;
    if ((rc = kiln_store_stmt(j->st,
                              "UPDATE jobs SET state = 'publishing', stage = 'publish', "
                              "stage_started_at = ? WHERE id = ? AND state = 'tested'",
                              &s, err)))
        goto fail;
    sqlite3_bind_double(s, 1, now);
    sqlite3_bind_int64(s, 2, id);
    if ((rc = kiln_store_step_done(j->st, s, err, "starting a publish"))) goto fail;
    if (sqlite3_changes(kiln_store_db(j->st)) == 0) {
        rc = kiln_fail(err, KILN_ESTATE, "job %lld is not waiting to be published", (long long)id);
        goto fail;
    }
    if ((rc = kiln_jobs_emit(j, id, now, err))) goto fail;
    return kiln_store_commit(j->st, err);
fail:
    kiln_store_rollback(j->st);
    return rc;
}

int kiln_jobs_publish_done(struct kiln_jobs *j, int64_t id, int ok, const char *reason,
                           json_t *artifact, double now, struct kiln_error *err)
{
    int rc = kiln_store_begin(j->st, err);
    if (rc) return rc;
    sqlite3_stmt *s;
    if ((rc = kiln_store_stmt(j->st,
                              "UPDATE jobs SET state = ?, failed_stage = CASE WHEN ? THEN NULL "
                              "ELSE 'publish' END, reason = ?, artifact = COALESCE(?, artifact), "
                              "finished_at = ? WHERE id = ? AND state = 'publishing'",
                              &s, err)))
        goto fail;
    sqlite3_bind_text(s, 1, ok ? "succeeded" : "failed", -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, ok);
    kiln_store_bind_text(s, 3, ok ? NULL : (reason ? reason : "publishing failed"));
    kiln_store_bind_json(s, 4, artifact);
    sqlite3_bind_double(s, 5, now);
    sqlite3_bind_int64(s, 6, id);
    if ((rc = kiln_store_step_done(j->st, s, err, "finishing a publish"))) goto fail;
    if (sqlite3_changes(kiln_store_db(j->st)) == 0) {
        rc = kiln_fail(err, KILN_ESTATE, "job %lld is not being published", (long long)id);
        goto fail;
    }
    if ((rc = kiln_jobs_emit(j, id, now, err))) goto fail;
    if (!ok && (rc = fail_dependents(j, id, now, err))) goto fail;
    return kiln_store_commit(j->st, err);
fail:
    kiln_store_rollback(j->st);
    return rc;
}

int kiln_jobs_in_state(struct kiln_jobs *j, const char *state, int64_t *ids, int max, int *n,
                       struct kiln_error *err)
{
    sqlite3_stmt *s;
    *n = 0;
    int rc =
        kiln_store_stmt(j->st, "SELECT id FROM jobs WHERE state = ? ORDER BY id LIMIT ?", &s, err);
    if (rc) return rc;
    kiln_store_bind_text(s, 1, state);
    sqlite3_bind_int(s, 2, max);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < max)
        ids[(*n)++] = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return kiln_store_fail(j->st, rc, err, "listing jobs by state");
    return KILN_OK;
}

int kiln_jobs_recover(struct kiln_jobs *j, double now, struct kiln_error *err)
{
    int64_t ids[256];
    int n = 0;
    int rc = kiln_jobs_in_state(j, "publishing", ids, 256, &n, err);
    if (rc || n == 0) return rc;
    if ((rc = kiln_store_begin(j->st, err))) return rc;
    for (int i = 0; i < n; i++) {
        sqlite3_stmt *s;
        if ((rc = kiln_store_stmt(j->st, "UPDATE jobs SET state = 'tested' WHERE id = ?", &s, err)))
            goto fail;
        sqlite3_bind_int64(s, 1, ids[i]);
        if ((rc = kiln_store_step_done(j->st, s, err, "recovering a publish"))) goto fail;
        if ((rc = kiln_jobs_emit(j, ids[i], now, err))) goto fail;
    }
    return kiln_store_commit(j->st, err);
fail:
    kiln_store_rollback(j->st);
    return rc;
}
