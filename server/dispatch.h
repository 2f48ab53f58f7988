/* dispatch.h - workers' lease long-polls, answered by the service's one
 * placer.
 *
 * Contract:
 * - The policy is scheduler/placement.h, nothing else: the dispatcher keeps
 *   one long-lived placer and feeds it events read from the store (a job
 *   becomes runnable or leaves the queue, a placed job ends, a worker
 *   registers, asks, drains or is lost) through scheduler/trace.h, the same
 *   events `kiln sim --replay` applies. With a trace path they are written
 *   there, with the decisions, one JSON line each.
 * - A worker's lease request becomes a waiter (worker id + what it offers:
 *   free cores, RAM, GPUs). Each request runs one placement pass over every
 *   waiting worker at once; so does every kiln_dispatch_kick() (submit,
 *   report, register, cancel, retry, drain) and a backoff's expiry - never a
 *   periodic full scan. Only waiting workers take work, one job per request,
 *   so an idle asking worker gets queued work before a busier one asks again.
 * - Leasing is committed by lease_fn (store transaction) before the waiter's
 *   callback sends anything, so a lost response is recovered by the
 *   lease-acknowledgement path in registry.h.
 * - kiln_dispatch_wait_reason() is a kiln_wait_reason_fn (ctx: the
 *   dispatcher): the placer's sentence for why a runnable job is not running.
 * - Runs on the loop thread only.
 */
#ifndef KILN_DISPATCH_H
#define KILN_DISPATCH_H

#include "scheduler/placement.h"
#include "state/jobs.h"
#include "state/registry.h"

#include <jansson.h>
#include <uv.h>

struct kiln_offer {
    int free_cores;      /* <0: not given (use the worker's size) */
    int64_t free_ram_mb; /* <0: not given */
    int gpus_given;      /* 0: all GPUs the store does not have busy */
    int nfree_gpus;
    int free_gpus[KILN_MAX_GPUS];
};

/* One pass over a snapshot with a fresh placer (tests, tools): what the
 * worker w, asking with offer o, would get; *job_id 0 when nothing fits. */
int kiln_dispatch_match(struct kiln_jobs *j, const struct kiln_worker_info *w,
                        const struct kiln_offer *o, double now, int64_t *job_id, int *gpu_index,
                        struct kiln_error *err);

/* Commit the leases of n jobs to one worker (one store transaction,
 * kiln_jobs_lease_batch): each item gets its response object or its own
 * rc and err. */
typedef int (*kiln_lease_fn)(void *ctx, int64_t worker_id, const char *worker_name, size_t n,
                             struct kiln_lease_item *items, struct kiln_error *err);
/* Result for a waiter: status 200 with body (ownership passes), or 204 and
 * NULL when the wait expired. Called exactly once unless unwaited. */
typedef void (*kiln_waiter_cb)(void *arg, int status, json_t *body);

struct kiln_dispatch;
struct kiln_waiter;

/* The policy from the config's `placement:` section (NULL or absent:
 * kiln_policy_default). Keys: host_policy (spread|pack). KILN_EINVAL with a
 * sentence naming a bad value or an unknown key. */
int kiln_dispatch_policy_load(json_t *config, struct kiln_policy *pol, struct kiln_error *err);

/* pol: the placement policy the service runs (copied). trace_path: NULL,
 * or a file to record the placer's events in (truncated). */
int kiln_dispatch_new(uv_loop_t *loop, struct kiln_jobs *j, const struct kiln_policy *pol,
                      const char *trace_path, kiln_lease_fn lease_fn, void *lease_ctx,
                      struct kiln_dispatch **out, struct kiln_error *err);
/* Answers no waiter; closes handles (memory freed once the loop runs them). */
void kiln_dispatch_free(struct kiln_dispatch *d);

/* A worker asks for up to max jobs (1..64) that fit its offer. One
 * placement pass decides them all and one transaction leases them; the
 * answer is {"job": first} and, with max > 1, also "jobs": [all].
 * wi: the worker's row as the caller just read it, or NULL (read here).
 * Returns NULL when cb has already been called (matched at once, wait_ms 0,
 * or an error: 503). Otherwise the waiter handle for kiln_dispatch_unwait. */
struct kiln_waiter *kiln_dispatch_wait(struct kiln_dispatch *d, int64_t worker_id,
                                       const struct kiln_worker_info *wi,
                                       const struct kiln_offer *o, int max, unsigned wait_ms,
                                       kiln_waiter_cb cb, void *arg);
/* The client went away: drop the waiter without calling cb. */
void kiln_dispatch_unwait(struct kiln_dispatch *d, struct kiln_waiter *w);
void kiln_dispatch_kick(struct kiln_dispatch *d);
/* Answer the worker's pending lease (if any) with {"cancel":[job]}. */
void kiln_dispatch_wake_cancel(struct kiln_dispatch *d, int64_t worker_id, int64_t job_id);
/* Mark workers with a pending lease as seen now (they are alive). */
void kiln_dispatch_touch_waiting(struct kiln_dispatch *d, double now);
/* Answer every waiter with 204 (shutdown). */
void kiln_dispatch_flush(struct kiln_dispatch *d);
int kiln_dispatch_waiting(const struct kiln_dispatch *d);

/* ctx is the struct kiln_dispatch. */
void kiln_dispatch_wait_reason(void *dispatch, json_t *job, char *out, size_t outlen);
/* The same sentence from a one-shot pass over a snapshot (tests, tools). */
void kiln_dispatch_reason_once(struct kiln_jobs *j, json_t *job, char *out, size_t outlen);

#endif
