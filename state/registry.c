/* registry.c - workers: register, heartbeat, lost detection, listing. */
#include "state/registry.h"

#include "common/isa.h"
#include "state/jobspec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W_COLS                                                                                     \
    "id, name, state, cores, ram_mb, platform, isa_mask, gpus, drain, mem_pressure, "              \
    "COALESCE(disk_free_mb, -1), last_seen, isa_features, labels, registered_at"

static int worker_event(struct kiln_jobs *j, int64_t id, double now, struct kiln_error *err)
{
    json_t *o;
    int rc = kiln_registry_worker_json(j, id, &o, err);
    if (rc) return rc;
    rc = kiln_store_event(j->st, "worker", o, now, err);
    json_decref(o);
    return rc;
}

static int parse_driver_major(const char *s)
{
    return s ? atoi(s) : 0;
}

static void fill_gpus(struct kiln_worker_info *w, json_t *gpus)
{
    size_t i;
    json_t *g;
    w->ngpus = 0;
    json_array_foreach(gpus, i, g)
    {
        if (w->ngpus == KILN_MAX_GPUS) break;
        struct kiln_gpu_info *gi = &w->gpus[w->ngpus++];
        json_t *idx = json_object_get(g, "index");
        gi->index = json_is_integer(idx) ? (int)json_integer_value(idx) : (int)i;
        json_t *sm = json_object_get(g, "sm");
        snprintf(gi->sm, sizeof gi->sm, "%s", json_is_string(sm) ? json_string_value(sm) : "");
        json_t *drv = json_object_get(g, "driver");
        gi->driver_major = json_is_string(drv)    ? parse_driver_major(json_string_value(drv))
                           : json_is_integer(drv) ? (int)json_integer_value(drv)
                                                  : 0;
        gi->memory_mb = json_integer_value(json_object_get(g, "memory_mb"));
    }
}

static void row_to_info(sqlite3_stmt *s, struct kiln_worker_info *w)
{
    memset(w, 0, sizeof *w);
    w->id = sqlite3_column_int64(s, 0);
    snprintf(w->name, sizeof w->name, "%s", (const char *)sqlite3_column_text(s, 1));
    snprintf(w->state, sizeof w->state, "%s", (const char *)sqlite3_column_text(s, 2));
    w->cores = sqlite3_column_int(s, 3);
    w->ram_mb = sqlite3_column_int64(s, 4);
    snprintf(w->platform, sizeof w->platform, "%s", (const char *)sqlite3_column_text(s, 5));
    w->isa_mask = (uint32_t)sqlite3_column_int64(s, 6);
    json_t *g = kiln_store_col_json(s, 7);
    fill_gpus(w, g);
    json_decref(g);
    w->drain = sqlite3_column_int(s, 8);
    w->mem_pressure = sqlite3_column_int(s, 9);
    w->disk_free_mb = sqlite3_column_int64(s, 10);
    w->last_seen = sqlite3_column_double(s, 11);
}

/* Resources the store has committed to running jobs on each worker (a test
 * stage counts as 1 core and at most 4 GiB, as in kiln_jobs_needs). */
static int add_usage(struct kiln_jobs *j, struct kiln_worker_info *w, struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(j->st,
                             "SELECT COALESCE(SUM(CASE WHEN stage = 'test' THEN 1 ELSE cores END), "
                             "0), COALESCE(SUM(CASE WHEN stage = 'test' THEN MIN(ram_mb, 4096) "
                             "ELSE ram_mb END), 0) FROM jobs WHERE worker_id = ? AND state IN "
                             "('building','testing')",
                             &s, err);
    if (rc) return rc;
    sqlite3_bind_int64(s, 1, w->id);
    if (sqlite3_step(s) == SQLITE_ROW) {
        w->cores_used = sqlite3_column_int(s, 0);
        w->ram_used_mb = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    if ((rc = kiln_store_stmt(j->st,
                              "SELECT gpu_index FROM jobs WHERE worker_id = ? AND state = "
                              "'testing' AND gpu_index IS NOT NULL",
                              &s, err)))
        return rc;
    sqlite3_bind_int64(s, 1, w->id);
    while (sqlite3_step(s) == SQLITE_ROW) {
        int gi = sqlite3_column_int(s, 0);
        if (gi >= 0 && gi < 32) w->gpus_used |= 1u << gi;
    }
    sqlite3_reset(s);
    return KILN_OK;
}

int kiln_registry_get(struct kiln_jobs *j, int64_t id, struct kiln_worker_info *out,
                      struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_row_by_id(j->st, "SELECT " W_COLS " FROM workers WHERE id = ?", id,
                                  "worker", &s, err);
    if (rc) return rc;
    row_to_info(s, out);
    sqlite3_reset(s);
    return add_usage(j, out, err);
}

int kiln_registry_all(struct kiln_jobs *j, struct kiln_worker_info **out, int *n,
                      struct kiln_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(j->st, "SELECT " W_COLS " FROM workers ORDER BY id", &s, err);
    if (rc) return rc;
    size_t cap = 0;
    struct kiln_worker_info *arr = NULL;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if ((size_t)*n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            struct kiln_worker_info *na = realloc(arr, nc * sizeof *na);
            if (!na) {
                sqlite3_reset(s);
                free(arr);
                return kiln_fail(err, KILN_ENOMEM, "out of memory");
            }
            arr = na;
            cap = nc;
        }
        row_to_info(s, &arr[(*n)++]);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        free(arr);
        return kiln_store_fail(j->st, rc, err, "listing workers");
    }
    for (int i = 0; i < *n; i++) {
        if ((rc = add_usage(j, &arr[i], err))) {
            free(arr);
            return rc;
        }
    }
    *out = arr;
    return KILN_OK;
}

static json_t *worker_obj(struct kiln_jobs *j, sqlite3_stmt *s, struct kiln_error *err)
{
    struct kiln_worker_info w;
    row_to_info(s, &w);
    json_t *o = json_pack(
        "{s:I,s:s,s:s,s:i,s:I,s:s,s:o,s:o,s:o,s:b,s:b,s:f,s:f}", "id", (json_int_t)w.id, "name",
        w.name, "state", w.state, "cores", w.cores, "ram_mb", (json_int_t)w.ram_mb, "platform",
        w.platform, "gpus", kiln_store_col_json(s, 7), "isa_features", kiln_store_col_json(s, 12),
        "labels", kiln_store_col_json(s, 13), "drain", w.drain, "mem_pressure", w.mem_pressure,
        "last_seen", w.last_seen, "registered_at", sqlite3_column_double(s, 14));
    if (!o) return NULL;
    json_object_set_new(o, "disk_free_mb",
                        w.disk_free_mb >= 0 ? json_integer(w.disk_free_mb) : json_null());
    return o;
}

static int finish_worker(struct kiln_jobs *j, json_t *o, struct kiln_error *err)
{
    struct kiln_worker_info w;
    memset(&w, 0, sizeof w);
    w.id = json_integer_value(json_object_get(o, "id"));
    int rc = add_usage(j, &w, err);
    if (rc) return rc;
    json_object_set_new(o, "cores_used", json_integer(w.cores_used));
    json_object_set_new(o, "ram_used_mb", json_integer(w.ram_used_mb));
    sqlite3_stmt *s;
    if ((rc = kiln_store_stmt(j->st,
                              "SELECT id FROM jobs WHERE worker_id = ? AND state IN "
                              "('building','testing') ORDER BY id",
                              &s, err)))
        return rc;
    sqlite3_bind_int64(s, 1, w.id);
    json_t *jobs = json_array();
    while (sqlite3_step(s) == SQLITE_ROW)
        json_array_append_new(jobs, json_integer(sqlite3_column_int64(s, 0)));
    sqlite3_reset(s);
    json_object_set_new(o, "jobs", jobs ? jobs : json_array());
    return KILN_OK;
}

int kiln_registry_worker_json(struct kiln_jobs *j, int64_t id, json_t **out, struct kiln_error *err)
{
    *out = NULL;
    sqlite3_stmt *s;
    int rc = kiln_store_row_by_id(j->st, "SELECT " W_COLS " FROM workers WHERE id = ?", id,
                                  "worker", &s, err);
    if (rc) return rc;
    json_t *o = worker_obj(j, s, err);
    sqlite3_reset(s);
    if (!o) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    if ((rc = finish_worker(j, o, err))) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return KILN_OK;
}

int kiln_registry_list(struct kiln_jobs *j, json_t **out, struct kiln_error *err)
{
    *out = NULL;
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(j->st, "SELECT " W_COLS " FROM workers ORDER BY name", &s, err);
    if (rc) return rc;
    json_t *arr = json_array();
    if (!arr) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *o = worker_obj(j, s, err);
        if (o) json_array_append_new(arr, o);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        return kiln_store_fail(j->st, rc, err, "listing workers");
    }
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        if ((rc = finish_worker(j, o, err))) {
            json_decref(arr);
            return rc;
        }
    }
    *out = json_pack("{s:o}", "workers", arr);
    return *out ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
}

/* Compare the worker's running list with the store. cancel gets stale
 * entries; jobs the store runs on the worker but the worker omits are
 * requeued when their lease is older than min_age (0 = always). */
static int reconcile(struct kiln_jobs *j, int64_t wid, const char *wname, json_t *running,
                     double now, double min_age, const char *why_fmt, json_t *cancel,
                     struct kiln_error *err)
{
    size_t i;
    json_t *e;
    int rc;
    json_array_foreach(running, i, e)
    {
        json_int_t job = json_integer_value(json_object_get(e, "job"));
        json_int_t attempt = json_integer_value(json_object_get(e, "attempt"));
        sqlite3_stmt *s;
        if ((rc = kiln_store_stmt(j->st,
                                  "SELECT 1 FROM jobs WHERE id = ? AND attempt = ? AND worker_id "
                                  "= ? AND state IN ('building','testing')",
                                  &s, err)))
            return rc;
        sqlite3_bind_int64(s, 1, job);
        sqlite3_bind_int64(s, 2, attempt);
        sqlite3_bind_int64(s, 3, wid);
        int r = sqlite3_step(s);
        sqlite3_reset(s);
        if (r != SQLITE_ROW && job > 0) json_array_append_new(cancel, json_integer(job));
    }
    sqlite3_stmt *s;
    if ((rc = kiln_store_stmt(j->st,
                              "SELECT id, attempt FROM jobs WHERE worker_id = ? AND state IN "
                              "('building','testing') AND stage_started_at <= ?",
                              &s, err)))
        return rc;
    sqlite3_bind_int64(s, 1, wid);
    sqlite3_bind_double(s, 2, min_age > 0 ? now - min_age : 1e300);
    int64_t ids[512];
    int n = 0;
    while (sqlite3_step(s) == SQLITE_ROW && n < 512) {
        int64_t id = sqlite3_column_int64(s, 0), att = sqlite3_column_int64(s, 1);
        int listed = 0;
        json_array_foreach(running, i, e)
        {
            if (json_integer_value(json_object_get(e, "job")) == id &&
                json_integer_value(json_object_get(e, "attempt")) == att)
                listed = 1;
        }
        if (!listed) ids[n++] = id;
    }
    sqlite3_reset(s);
    for (int k = 0; k < n; k++) {
        char why[300];
        snprintf(why, sizeof why, why_fmt, wname);
        if ((rc = kiln_jobs_infra_fail_tx(j, ids[k], why, now, err))) return rc;
    }
    return KILN_OK;
}

static int check_running(json_t *running, struct kiln_error *err)
{
    if (!running || json_is_null(running)) return KILN_OK;
    if (!json_is_array(running) || json_array_size(running) > 512)
        return kiln_fail(err, KILN_EINVAL, "running: must be an array of {job, attempt}");
    size_t i;
    json_t *e;
    json_array_foreach(running, i, e)
    {
        if (!json_is_object(e) || !json_is_integer(json_object_get(e, "job")) ||
            !json_is_integer(json_object_get(e, "attempt")))
            return kiln_fail(err, KILN_EINVAL,
                             "running[%zu]: must be an object with integer job and attempt", i);
    }
    return KILN_OK;
}

int kiln_registry_register(struct kiln_jobs *j, json_t *body, double now, int64_t *id_out,
                           json_t **cancel_out, struct kiln_error *err)
{
    *cancel_out = NULL;
    if (!json_is_object(body)) return kiln_fail(err, KILN_EINVAL, "body must be a JSON object");
    json_t *name = json_object_get(body, "name");
    json_t *cores = json_object_get(body, "cores");
    json_t *ram = json_object_get(body, "ram_mb");
    json_t *platform = json_object_get(body, "platform");
    json_t *isa = json_object_get(body, "isa_features");
    json_t *gpus = json_object_get(body, "gpus");
    json_t *labels = json_object_get(body, "labels");
    json_t *running = json_object_get(body, "running");
    if (!json_is_string(name) || !kiln_jobspec_valid_name(json_string_value(name)) ||
        strlen(json_string_value(name)) >= 128)
        return kiln_fail(err, KILN_EINVAL,
                         "name: must be a worker name of letters, digits, . _ + -");
    if (!json_is_integer(cores) || json_integer_value(cores) < 1 ||
        json_integer_value(cores) > 100000)
        return kiln_fail(err, KILN_EINVAL, "cores: must be a positive integer");
    if (!json_is_integer(ram) || json_integer_value(ram) < 1)
        return kiln_fail(err, KILN_EINVAL, "ram_mb: must be a positive integer");
    if (!json_is_string(platform) || !kiln_jobspec_valid_platform(json_string_value(platform)))
        return kiln_fail(err, KILN_EINVAL, "platform: must look like x86_64-linux");
    uint32_t mask = 0;
    if (isa && !json_is_null(isa)) {
        if (!json_is_array(isa) || json_array_size(isa) > 256)
            return kiln_fail(err, KILN_EINVAL, "isa_features: must be an array of strings");
        size_t i;
        json_t *f;
        json_array_foreach(isa, i, f)
        {
            if (!json_is_string(f))
                return kiln_fail(err, KILN_EINVAL, "isa_features[%zu]: must be a string", i);
            mask |= kiln_isa_feature(json_string_value(f)); /* unknown: not used here */
        }
    }
    if (gpus && !json_is_null(gpus)) {
        if (!json_is_array(gpus) || json_array_size(gpus) > KILN_MAX_GPUS)
            return kiln_fail(err, KILN_EINVAL, "gpus: must be an array of at most %d GPUs",
                             KILN_MAX_GPUS);
        size_t i;
        json_t *g;
        json_array_foreach(gpus, i, g)
        {
            if (!json_is_object(g) || !json_is_string(json_object_get(g, "sm")))
                return kiln_fail(err, KILN_EINVAL, "gpus[%zu]: must be an object with a string sm",
                                 i);
        }
    }
    if (labels && !json_is_null(labels) && !json_is_object(labels))
        return kiln_fail(err, KILN_EINVAL, "labels: must be an object");
    int rc = check_running(running, err);
    if (rc) return rc;
    json_t *cancel = json_array();
    if (!cancel) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    if ((rc = kiln_store_begin(j->st, err))) {
        json_decref(cancel);
        return rc;
    }
    sqlite3_stmt *s;
    if ((rc = kiln_store_stmt(
             j->st,
             "INSERT INTO workers(name, state, cores, ram_mb, platform, isa_features, isa_mask, "
             "gpus, labels, registered_at, last_seen) VALUES (?1, 'online', ?2, ?3, ?4, ?5, ?6, "
             "?7, ?8, ?9, ?9) ON CONFLICT(name) DO UPDATE SET state = CASE WHEN drain THEN "
             "'draining' ELSE 'online' END, cores = ?2, ram_mb = ?3, platform = ?4, "
             "isa_features = ?5, isa_mask = ?6, gpus = ?7, labels = ?8, registered_at = ?9, "
             "last_seen = ?9",
             &s, err)))
        goto fail;
    kiln_store_bind_text(s, 1, json_string_value(name));
    sqlite3_bind_int64(s, 2, json_integer_value(cores));
    sqlite3_bind_int64(s, 3, json_integer_value(ram));
    kiln_store_bind_text(s, 4, json_string_value(platform));
    if (json_is_array(isa))
        kiln_store_bind_json(s, 5, isa);
    else
        sqlite3_bind_text(s, 5, "[]", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, mask);
    if (json_is_array(gpus))
        kiln_store_bind_json(s, 7, gpus);
    else
        sqlite3_bind_text(s, 7, "[]", -1, SQLITE_STATIC);
    if (json_is_object(labels))
        kiln_store_bind_json(s, 8, labels);
    else
        sqlite3_bind_text(s, 8, "{}", -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 9, now);
    if ((rc = kiln_store_step_done(j->st, s, err, "registering a worker"))) goto fail;
    if ((rc = kiln_store_stmt(j->st, "SELECT id FROM workers WHERE name = ?", &s, err))) goto fail;
    kiln_store_bind_text(s, 1, json_string_value(name));
    int64_t id = 0;
    if (sqlite3_step(s) == SQLITE_ROW) id = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (!id) {
        rc = kiln_fail(err, KILN_EDB, "worker row vanished after registering");
        goto fail;
    }
    json_t *empty = json_array();
    rc = reconcile(j, id, json_string_value(name), json_is_array(running) ? running : empty, now, 0,
                   "worker %s restarted without this job", cancel, err);
    json_decref(empty);
    if (rc) goto fail;
    if ((rc = worker_event(j, id, now, err))) goto fail;
    if ((rc = kiln_store_commit(j->st, err))) {
        json_decref(cancel);
        return rc;
    }
    *id_out = id;
    *cancel_out = cancel;
    return KILN_OK;
fail:
    kiln_store_rollback(j->st);
    json_decref(cancel);
    return rc;
}

int kiln_registry_heartbeat(struct kiln_jobs *j, int64_t id, json_t *body, double now,
                            json_t **cancel_out, int *drain_out, struct kiln_error *err)
{
    *cancel_out = NULL;
    if (body && !json_is_null(body) && !json_is_object(body))
        return kiln_fail(err, KILN_EINVAL, "body must be a JSON object");
    json_t *running = json_object_get(body, "running");
    int rc = check_running(running, err);
    if (rc) return rc;
    json_t *disk = json_object_get(body, "disk_free_mb");
    json_t *mp = json_object_get(body, "mem_pressure");
    if (disk && !json_is_null(disk) && !json_is_integer(disk))
        return kiln_fail(err, KILN_EINVAL, "disk_free_mb: must be an integer");
    if (mp && !json_is_null(mp) && !json_is_boolean(mp))
        return kiln_fail(err, KILN_EINVAL, "mem_pressure: must be true or false");
    json_t *cancel = json_array();
    if (!cancel) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    if ((rc = kiln_store_begin(j->st, err))) {
        json_decref(cancel);
        return rc;
    }
    struct kiln_worker_info w;
    if ((rc = kiln_registry_get(j, id, &w, err))) goto fail;
    int mem_pressure = json_is_true(mp);
    int changed =
        !strcmp(w.state, "lost") || !strcmp(w.state, "offline") || mem_pressure != w.mem_pressure;
    sqlite3_stmt *s;
    if ((rc = kiln_store_stmt(j->st,
                              "UPDATE workers SET last_seen = ?, state = CASE WHEN drain THEN "
                              "'draining' ELSE 'online' END, disk_free_mb = COALESCE(?, "
                              "disk_free_mb), mem_pressure = ? WHERE id = ?",
                              &s, err)))
        goto fail;
    sqlite3_bind_double(s, 1, now);
    if (json_is_integer(disk))
        sqlite3_bind_int64(s, 2, json_integer_value(disk));
    else
        sqlite3_bind_null(s, 2);
    sqlite3_bind_int(s, 3, mem_pressure);
    sqlite3_bind_int64(s, 4, id);
    if ((rc = kiln_store_step_done(j->st, s, err, "recording a heartbeat"))) goto fail;
    json_t *empty = json_array();
    rc = reconcile(j, id, w.name, json_is_array(running) ? running : empty, now,
                   j->policy.lease_ack_s,
                   "worker %s never started this job (lease not acknowledged)", cancel, err);
    json_decref(empty);
    if (rc) goto fail;
    /* Peak RAM as the worker sees it, for the page. */
    size_t i;
    json_t *e;
    json_array_foreach(running, i, e)
    {
        json_t *pk = json_object_get(e, "peak_ram_mb");
        if (!json_is_integer(pk)) continue;
        if ((rc = kiln_store_stmt(j->st,
                                  "UPDATE jobs SET peak_ram_mb = ? WHERE id = ? AND worker_id = ? "
                                  "AND attempt = ?",
                                  &s, err)))
            goto fail;
        sqlite3_bind_int64(s, 1, json_integer_value(pk));
        sqlite3_bind_int64(s, 2, json_integer_value(json_object_get(e, "job")));
        sqlite3_bind_int64(s, 3, id);
        sqlite3_bind_int64(s, 4, json_integer_value(json_object_get(e, "attempt")));
        if ((rc = kiln_store_step_done(j->st, s, err, "recording peak RAM"))) goto fail;
    }
    if (changed && (rc = worker_event(j, id, now, err))) goto fail;
    if ((rc = kiln_store_commit(j->st, err))) {
        json_decref(cancel);
        return rc;
    }
    if (drain_out) *drain_out = w.drain;
    *cancel_out = cancel;
    return KILN_OK;
fail:
    kiln_store_rollback(j->st);
    json_decref(cancel);
    return rc;
}

int kiln_registry_check_lost(struct kiln_jobs *j, double now, double lost_after_s, int *n,
                             struct kiln_error *err)
{
    *n = 0;
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(j->st,
                             "SELECT id, name FROM workers WHERE state IN ('online','draining') "
                             "AND last_seen < ? LIMIT 256",
                             &s, err);
    if (rc) return rc;
    sqlite3_bind_double(s, 1, now - lost_after_s);
    int64_t ids[256];
    char names[256][128];
    int cnt = 0;
    while (sqlite3_step(s) == SQLITE_ROW && cnt < 256) {
        ids[cnt] = sqlite3_column_int64(s, 0);
        snprintf(names[cnt], sizeof names[cnt], "%s", (const char *)sqlite3_column_text(s, 1));
        cnt++;
    }
    sqlite3_reset(s);
    for (int i = 0; i < cnt; i++) {
        if ((rc = kiln_store_begin(j->st, err))) return rc;
        if ((rc =
                 kiln_store_stmt(j->st, "UPDATE workers SET state = 'lost' WHERE id = ?", &s, err)))
            goto fail;
        sqlite3_bind_int64(s, 1, ids[i]);
        if ((rc = kiln_store_step_done(j->st, s, err, "marking a worker lost"))) goto fail;
        sqlite3_stmt *q;
        if ((rc = kiln_store_stmt(j->st,
                                  "SELECT id FROM jobs WHERE worker_id = ? AND state IN "
                                  "('building','testing')",
                                  &q, err)))
            goto fail;
        sqlite3_bind_int64(q, 1, ids[i]);
        int64_t jobs[512];
        int nj = 0;
        while (sqlite3_step(q) == SQLITE_ROW && nj < 512)
            jobs[nj++] = sqlite3_column_int64(q, 0);
        sqlite3_reset(q);
        char why[300];
        snprintf(why, sizeof why, "worker %.127s was lost (no heartbeat for %.0f s)", names[i],
                 lost_after_s);
        for (int k = 0; k < nj; k++)
            if ((rc = kiln_jobs_infra_fail_tx(j, jobs[k], why, now, err))) goto fail;
        if ((rc = worker_event(j, ids[i], now, err))) goto fail;
        if ((rc = kiln_store_commit(j->st, err))) return rc;
        (*n)++;
    }
    return KILN_OK;
fail:
    kiln_store_rollback(j->st);
    return rc;
}

int kiln_registry_grace(struct kiln_jobs *j, double now, struct kiln_error *err)
{
    sqlite3_stmt *s;
    int rc = kiln_store_stmt(j->st,
                             "UPDATE workers SET last_seen = ? WHERE state IN "
                             "('online','draining')",
                             &s, err);
    if (rc) return rc;
    sqlite3_bind_double(s, 1, now);
    return kiln_store_step_done(j->st, s, err, "refreshing workers after a restart");
}

int kiln_registry_drain(struct kiln_jobs *j, int64_t id, int drain, double now,
                        struct kiln_error *err)
{
    int rc = kiln_store_begin(j->st, err);
    if (rc) return rc;
    sqlite3_stmt *s;
    if ((rc = kiln_store_stmt(j->st,
                              "UPDATE workers SET drain = ?1, state = CASE WHEN state IN "
                              "('online','draining') THEN (CASE WHEN ?1 THEN 'draining' ELSE "
                              "'online' END) ELSE state END WHERE id = ?2",
                              &s, err)))
        goto fail;
    sqlite3_bind_int(s, 1, drain ? 1 : 0);
    sqlite3_bind_int64(s, 2, id);
    if ((rc = kiln_store_step_done(j->st, s, err, "draining a worker"))) goto fail;
    if (sqlite3_changes(kiln_store_db(j->st)) == 0) {
        rc = kiln_fail(err, KILN_ENOTFOUND, "worker %lld not found", (long long)id);
        goto fail;
    }
    if ((rc = worker_event(j, id, now, err))) goto fail;
    return kiln_store_commit(j->st, err);
fail:
    kiln_store_rollback(j->st);
    return rc;
}

void kiln_registry_touch(struct kiln_jobs *j, int64_t id, double last_seen, double now)
{
    /* Liveness is judged in tens of seconds: a write transaction per lease
     * request (thousands a second with batch leases) buys nothing. */
    if (now - last_seen < 1.0 && now >= last_seen) return;
    sqlite3_stmt *s;
    if (kiln_store_stmt(
            j->st,
            "UPDATE workers SET last_seen = MAX(last_seen, ?) WHERE id = ? AND state IN "
            "('online','draining')",
            &s, NULL))
        return;
    sqlite3_bind_double(s, 1, now);
    sqlite3_bind_int64(s, 2, id);
    sqlite3_step(s);
    sqlite3_reset(s);
}
