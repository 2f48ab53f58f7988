/* jobs.h - the job state machine, kept entirely in the SQLite store.
 *
 * Contract:
 * - States: queued -> building -> built -> testing -> tested -> publishing ->
 *   succeeded; or failed (failed_stage + reason), cancelled, superseded.
 *   A job's "stages" list ("build", "test", "publish") says which it has; after
 *   its last stage it is succeeded. built = waiting for its test to be placed;
 *   tested = waiting for the server-side publisher.
 * - Every function that changes a job runs ONE transaction that updates the
 *   row(s) and appends a "job" event per changed job (so SSE sees exactly
 *   what committed). After kill -9 at any point the store is consistent.
 * - attempt grows by one on every lease; a report or log chunk must carry
 *   the current attempt, older ones get KILN_ECONFLICT.
 * - Infrastructure failures (worker lost, lease never acknowledged, timeout,
 *   a report with infra=true) put the job back to wait for its stage with
 *   exponential backoff (not_before), until max_attempts infrastructure
 *   failures, then it fails. A build failure fails the job (no retry).
 * - A job is runnable only when every dependency succeeded; when a job fails
 *   or is cancelled, its waiting dependents fail with failed_stage
 *   "dependency" and a reason naming it. Retrying a job requeues them.
 * - wait_reason of waiting jobs: dependencies and backoff are explained here;
 *   everything about resources comes from the wait_reason callback
 *   (dispatch), so the text always reflects the current farm.
 */
#ifndef KILN_JOBS_H
#define KILN_JOBS_H

#include "common/buf.h"
#include "state/store.h"

#include <jansson.h>
#include <stdint.h>

struct kiln_jobs_policy {
    double backoff_base_s; /* first infra retry after this (default 5) */
    double backoff_max_s;  /* cap (default 600) */
    double lease_ack_s;    /* a leased job missing from heartbeats this long is requeued (30) */
};

/* Writes a plain sentence for a runnable-but-waiting job (resources). */
typedef void (*kiln_wait_reason_fn)(void *ctx, json_t *job, char *out, size_t outlen);

struct kiln_jobs {
    struct kiln_store *st;
    struct kiln_jobs_policy policy;
    kiln_wait_reason_fn wait_reason; /* optional */
    void *wait_ctx;
    /* Optional (issue 17): for a leased job that its executor has not
     * started yet (a Slurm job still pending), the executor's sentence;
     * "" = it runs. */
    kiln_wait_reason_fn exec_reason;
    void *exec_ctx;
};

void kiln_jobs_init(struct kiln_jobs *j, struct kiln_store *st);

/* What a stage needs from a host (test stages need less than builds). */
struct kiln_stage_needs {
    int64_t job;
    char stage[16];
    int cores;
    int64_t ram_mb;
    char platform[64];
    char isa[32];    /* "" = any */
    char gpu_sm[16]; /* "" = no GPU */
    int sm_compat;   /* 1: a newer SM of the same major also fits */
    int driver_min;  /* 0 = any */
    char worker[64]; /* the one worker it may run on; "" = any */
    int priority;
    double created_at;
    double est_s; /* <= 0 unknown */
};
int kiln_jobs_needs(struct kiln_jobs *j, int64_t id, struct kiln_stage_needs *out,
                    struct kiln_error *err);

/* Insert normalized job objects (see jobspec.h) in one transaction. depends
 * entries: integers are existing job ids; strings are job names, resolved
 * first within this batch, then to the newest job of that name on the same
 * branch. A recipe batch (supersede=1) supersedes older waiting jobs of the
 * same name and branch. *ids_out = array of the new ids. */
/* supersede: 0 none; KILN_SUPERSEDE_OWN: older live jobs of the same name,
 * branch and owner (each job's optional "owner", a token id; none = the
 * server); KILN_SUPERSEDE_ANY: whoever owns them (an admin's submission). */
#define KILN_SUPERSEDE_OWN 1
#define KILN_SUPERSEDE_ANY 2
int kiln_jobs_submit(struct kiln_jobs *j, json_t *jobs, int supersede, double now, json_t **ids_out,
                     struct kiln_error *err);

int kiln_jobs_get(struct kiln_jobs *j, int64_t id, json_t **out, struct kiln_error *err);
/* The objects of the jobs in ids (a JSON array of ids), in that order, as
 * kiln_jobs_get gives them, read in two queries; ids with no job are left
 * out. */
int kiln_jobs_get_many(struct kiln_jobs *j, json_t *ids, json_t **out, struct kiln_error *err);
/* The brief form of the same: [{"id","name","state"}, ...] in the order of
 * ids (POST /jobs?brief=1 answers with it), one indexed lookup per id. */
int kiln_jobs_brief_many(struct kiln_jobs *j, json_t *ids, json_t **out, struct kiln_error *err);

struct kiln_jobs_filter {
    const char *state, *recipe, *branch, *name, *q; /* NULL or "" = any */
    int64_t worker_id;                              /* 0 = any */
    int limit;                                      /* 1..1000 (default 100) */
    int64_t before_id;                              /* 0 = newest */
};
/* {"jobs":[...],"next_before_id":N|null,"counts":{"queued":3,...}} newest first. */
int kiln_jobs_list(struct kiln_jobs *j, const struct kiln_jobs_filter *f, json_t **out,
                   struct kiln_error *err);
/* The waiting jobs (queued, built, tested) as one JSON document written
 * into out, for a reader that wants all of them at once (the queue view's
 * exact positions; docs/API.md "GET /queue"):
 *   {"jobs":[{"id","name","recipe","branch","state","stage","priority",
 *     "resources":{"platform","gpu_sm","isa"},"attrs","created_at",
 *     "wait_reason"}...],"total":N,"truncated":bool}
 * (each job a part of the job object of GET /jobs/{id}, same values)
 * in queue order: priority highest first, then oldest first. f's state
 * (one of the waiting states), recipe, branch, name and q filter as in
 * kiln_jobs_list; its limit (1..KILN_QUEUE_MAX, 0 = KILN_QUEUE_MAX) caps
 * the rows; total counts the matching jobs without the cap. Written from
 * the rows without a jansson object per job: 10,000 jobs take a few
 * milliseconds (issue 18). */
#define KILN_QUEUE_MAX 100000
int kiln_jobs_queue(struct kiln_jobs *j, const struct kiln_jobs_filter *f, struct kiln_buf *out,
                    struct kiln_error *err);
/* Count of jobs per state, as an object. */
int kiln_jobs_counts(struct kiln_jobs *j, json_t **out, struct kiln_error *err);

/* Cancel a waiting or running job. *worker_id_out (optional) gets the worker
 * that runs it (0 if none) so the caller can wake it. KILN_ESTATE if finished. */
int kiln_jobs_cancel(struct kiln_jobs *j, int64_t id, double now, int64_t *worker_id_out,
                     struct kiln_error *err);
/* Requeue a failed, cancelled or superseded job from its first stage, and
 * the dependents that failed because of it. */
int kiln_jobs_retry(struct kiln_jobs *j, int64_t id, double now, struct kiln_error *err);

/* Ids of jobs that may be placed now (queued or built, dependencies
 * succeeded, backoff over), best first; up to max. */
int kiln_jobs_runnable(struct kiln_jobs *j, double now, int64_t *ids, int max, int *n,
                       struct kiln_error *err);
/* Same, with each job's stage needs in one query (for placement). */
int kiln_jobs_runnable_needs(struct kiln_jobs *j, double now, struct kiln_stage_needs *out, int max,
                             int *n, struct kiln_error *err);
/* Earliest not_before in the future among waiting jobs (0 if none). */
double kiln_jobs_next_wakeup(struct kiln_jobs *j, double now);

/* Hand job id to a worker (queued -> building or built -> testing), attempt+1.
 * log_base is where this attempt's bytes start in the job's log file.
 * *lease_out = the object for the lease response. */
int kiln_jobs_lease(struct kiln_jobs *j, int64_t id, int64_t worker_id, int gpu_index,
                    int64_t log_base, double now, json_t **lease_out, struct kiln_error *err);

/* One job of a batch lease: job, gpu_index (-1: none) and log_base in; rc,
 * err and lease (the response object, owned by the caller) out. An item
 * with rc already set is skipped. */
struct kiln_lease_item {
    int64_t job;
    int gpu_index;
    int64_t log_base;
    json_t *lease;
    int rc;
    struct kiln_error err;
};
/* Several leases to one worker in one transaction (a savepoint each, so a
 * job that raced with a cancel fails alone, with its rc and err). Returns
 * an error only when the transaction itself failed: then no item is
 * leased and every lease is NULL. */
int kiln_jobs_lease_batch(struct kiln_jobs *j, size_t n, struct kiln_lease_item *items,
                          int64_t worker_id, double now, struct kiln_error *err);

struct kiln_report {
    int64_t attempt;
    const char *stage; /* NULL = the job's current stage */
    int exit_code;
    int signal;
    const char *reason; /* NULL */
    int infra;
    int64_t peak_ram_mb; /* -1 unknown */
    double cpu_s;        /* <0 unknown */
    json_t *selftest;    /* borrowed, may be NULL */
    json_t *outputs;     /* borrowed, may be NULL */
};
/* A worker's result for the current attempt. KILN_ECONFLICT for a stale
 * attempt or a job not running. new_state (optional) gets a static name. */
int kiln_jobs_report(struct kiln_jobs *j, int64_t id, int64_t worker_id,
                     const struct kiln_report *r, double now, const char **new_state,
                     struct kiln_error *err);

/* One report of a batch: the caller fills job and rep (and rc with a
 * negative code to skip an item it refused); the batch fills state (on
 * success) or rc and err. */
struct kiln_report_item {
    int64_t job;
    struct kiln_report rep;
    int rc;
    const char *state;
    struct kiln_error err;
};
/* Several reports of one worker in one transaction (group commit): each runs
 * under its own savepoint, so a stale one fails alone; all that succeeded
 * are durable together when this returns KILN_OK. A non-OK return means
 * none was recorded. */
int kiln_jobs_report_batch(struct kiln_jobs *j, size_t n, struct kiln_report_item *items,
                           int64_t worker_id, double now, struct kiln_error *err);

/* Infrastructure failure of the running attempt: back to waiting with
 * backoff, or failed after max_attempts. Caller holds no transaction. */
int kiln_jobs_infra_fail(struct kiln_jobs *j, int64_t id, const char *reason, double now,
                         struct kiln_error *err);
/* Same, inside the caller's transaction. */
int kiln_jobs_infra_fail_tx(struct kiln_jobs *j, int64_t id, const char *reason, double now,
                            struct kiln_error *err);
/* Requeue every attempt that ran over its timeout; *n gets how many. */
int kiln_jobs_check_timeouts(struct kiln_jobs *j, double now, int *n, struct kiln_error *err);

/* Log bookkeeping for the current attempt (size = whole file size). */
int kiln_jobs_log_state(struct kiln_jobs *j, int64_t id, int64_t *attempt, int64_t *log_base,
                        const char **state, struct kiln_error *err);
int kiln_jobs_log_grew(struct kiln_jobs *j, int64_t id, int64_t offset, int64_t len,
                       int64_t new_size, double now, struct kiln_error *err);

/* Publisher hooks: tested -> publishing, then the result. */
int kiln_jobs_publish_start(struct kiln_jobs *j, int64_t id, double now, struct kiln_error *err);
int kiln_jobs_publish_done(struct kiln_jobs *j, int64_t id, int ok, const char *reason,
                           json_t *artifact, double now, struct kiln_error *err);
/* Ids in state tested (waiting for the publisher), up to max. */
int kiln_jobs_in_state(struct kiln_jobs *j, const char *state, int64_t *ids, int max, int *n,
                       struct kiln_error *err);

/* After a restart: interrupted publishes go back to tested. */
int kiln_jobs_recover(struct kiln_jobs *j, double now, struct kiln_error *err);

/* 1 if state is final (succeeded, failed, cancelled, superseded). */
int kiln_job_state_final(const char *state);
/* Append a "job" event with the job's current object (inside a tx). */
int kiln_jobs_emit(struct kiln_jobs *j, int64_t id, double now, struct kiln_error *err);

#endif
