/* placement.h - which ready job stage runs on which worker (and GPU).
 *
 * Contract: pure computation, no I/O, no SQLite, no clock, no globals. The
 * service's dispatcher (scheduler/dispatch.c) and the simulator (scheduler/
 * sim.c) both call it with the same data:
 *
 *   - items: runnable job stages (a build or a test). The caller passes only
 *     items whose dependencies are done; kiln_dag_*() below help the caller
 *     (and the simulator) compute critical paths over the dependency DAG.
 *   - workers: capacity, free resources, ISA features, GPUs, state, and
 *     (optionally) what runs there with its expected end time for backfill.
 *   - a policy: aging rate, backfill on/off, or the FIFO first-fit baseline.
 *
 * Rules it enforces: cores and RAM are never overcommitted. A build needs the
 * item's platform, cores and RAM (and CPU features if the item sets any). A
 * test needs, in addition, a free GPU whose SM matches (exact, or with
 * sm_compat the same major and an equal or newer minor; never for arch-
 * specific targets such as "90a" or "100f"), a driver >= driver_min; one test
 * per GPU. Workers that are not online+healthy take nothing new; a worker
 * with no_builds takes only tests. An item that names a worker (a Slurm
 * pool's, say) runs only there, and waits while that one cannot take it.
 *
 * Order (policy KILN_POLICY_KILN): effective priority = priority +
 * aging_per_hour * hours waited (so nothing starves; the order is time
 * invariant, key = priority - aging * enqueued_at, with enqueued_at rounded
 * down to the minute so a batch submitted together is ordered by slack;
 * pass the job's submission time, not the stage's ready time), then slack,
 * then the older item, then the lower job id. Slack, per build platform and
 * pass: the horizon is how long its online build hosts stay busy with what
 * runs (to its expected end) and what is queued (each item with its whole
 * critical path), over their cores or RAM; a build whose critical path
 * reaches the horizon less the longest queued build is urgent. Urgent items
 * go first, the longer critical path first; the others longest est_s first,
 * so short builds are left for the end. Tests and items without estimates
 * are always urgent (the critical-path order). Each item
 * goes to the feasible worker the host policy prefers: spread (the least
 * loaded one, the default) or pack (the one it leaves the least waste on,
 * best fit); either way builds prefer hosts without GPUs and tests an exact
 * SM over a compatible one.
 * The first item of each resource class that cannot start gets a reservation
 * on the worker where it can start soonest (from running items' end times);
 * lower items may use that worker only if they are estimated to finish before
 * then, or fit beside the reserved resources (backfill). Without end times
 * (no running list, est_s 0) the head waits for that worker to drain and
 * lower items may use only what it will not need (total minus its needs), so
 * they never push its start out. KILN_POLICY_FIFO is the baseline: oldest
 * first, first worker that fits, no reservation, no backfill limits.
 * KILN_POLICY_EASY is the Slurm-like baseline (EASY backfill): oldest first
 * (priority ignored), first worker that fits; only the first item that
 * cannot start (the queue's head) gets a reservation, where it can start
 * soonest, and later items start now only if they end before it or fit
 * beside it (as above). Like the kiln mode, it looks at the head of each
 * resource class only: a shorter item behind a blocked head of the same
 * class waits too.
 *
 * Speed: the incremental placer (kiln_placer_*) keeps queued items in heaps
 * per resource class (stage, platform, cores, RAM, SM, ISA, driver) and, per
 * class, the list of workers that could ever run it, so one dispatch costs
 * about classes x compatible workers, independent of the queue length.
 * kiln_place() is the one-shot form over a snapshot (it builds a placer).
 *
 * Every item left unplaced gets one plain sentence saying why (worked out
 * from the placer's state when asked, after the last dispatch), e.g.
 *   "no online worker with sm_90"
 *   "needs 16 cores and 128 GiB on x86_64-linux; best host has 8 cores and 64 GiB free"
 *   "no worker with driver >= 560 for sm_90"
 *   "no worker with CPU features avx512_bf16"
 */
#ifndef KILN_PLACEMENT_H
#define KILN_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define KILN_PLACE_NAME_MAX 64
#define KILN_PLACE_PLATFORM_MAX 32
#define KILN_PLACE_SM_MAX 8
#define KILN_PLACE_MAX_GPUS 16
#define KILN_PLACE_REASON_MAX 192

enum kiln_pstage {
    KILN_PSTAGE_BUILD = 0,
    KILN_PSTAGE_TEST = 1,
};

/* One runnable stage of a job. */
struct kiln_pitem {
    int64_t job_id;                         /* caller's id; (job_id, stage) is unique */
    int stage;                              /* enum kiln_pstage */
    int priority;                           /* higher runs first */
    double enqueued_at;                     /* seconds (unix or virtual) when it became ready */
    char platform[KILN_PLACE_PLATFORM_MAX]; /* "x86_64-linux"; "" = any */
    int cores;                              /* >= 0 */
    int64_t ram_mb;                         /* >= 0 */
    uint32_t isa;                           /* required CPU features (common/isa.h); 0 = none */
    /* tests only (ignored for builds): */
    char gpu_sm[KILN_PLACE_SM_MAX]; /* "90", "100a"; "" = no GPU needed */
    int sm_compat;                  /* accept same-major newer-minor GPUs */
    int driver_min;                 /* driver major version, e.g. 560; 0 = any */
    /* estimates: */
    double est_s;  /* expected duration; <= 0 unknown (no backfill) */
    double crit_s; /* critical path from this item to the DAG's end,
                      including est_s; 0 = est_s */
    /* the one worker (by name) it may run on, e.g. a Slurm pool's
       "slurm-hpc"; "" = any (the usual placement) */
    char worker[KILN_PLACE_NAME_MAX];
};

struct kiln_pgpu {
    int index;                  /* the worker's GPU index */
    char sm[KILN_PLACE_SM_MAX]; /* "90", "120" */
    int driver;                 /* driver major, e.g. 580 */
    int busy;                   /* a test (or anything) runs on it */
};

/* Something running on a worker, for backfill: when it should end. */
struct kiln_prun {
    int64_t job_id;
    int stage;
    int cores;
    int64_t ram_mb;
    int gpu_index; /* -1 = none */
    double end_at; /* expected end (same clock as enqueued_at) */
};

enum kiln_pworker_state {
    KILN_PW_ONLINE = 0,   /* takes work */
    KILN_PW_DRAINING = 1, /* finishes what it runs, takes nothing new */
    KILN_PW_LOST = 2,     /* heartbeat missed; expected back */
    KILN_PW_OFFLINE = 3,
};

struct kiln_pworker {
    int64_t id;
    char name[KILN_PLACE_NAME_MAX];
    char platform[KILN_PLACE_PLATFORM_MAX];
    int cores_total, cores_free;
    int64_t ram_total_mb, ram_free_mb;
    uint32_t isa; /* CPU features */
    int ngpus;
    struct kiln_pgpu gpus[KILN_PLACE_MAX_GPUS];
    int state;   /* enum kiln_pworker_state */
    int healthy; /* 0 = disk nearly full / memory pressure: no new work */
    /* optional, for backfill: what runs there (caller's array; read only
       during the call that receives it; the placer copies it) */
    const struct kiln_prun *running;
    size_t nrunning;
    int no_builds; /* 1 = a test host: takes only test stages */
    int max_new;   /* most items it takes in one dispatch: 0 = no limit, < 0
                      none now (online but not asking for work). A lease
                      request carries one job, so the service sets 1 for an
                      asking worker: the next item goes to another one. */
};

/* Host choice among the workers where an item can start now (Hydra's
 * "machine sort"): both keep builds off GPU hosts and exact SMs first. */
enum kiln_host_policy {
    KILN_HOST_SPREAD = 0, /* least loaded host: short jobs run side by side on
                             idle hosts; suits farms of equal hosts */
    KILN_HOST_PACK = 1,   /* best fit: fill the busiest host that fits, keep
                             whole hosts free for big items */
};

enum kiln_policy_mode {
    KILN_POLICY_KILN = 0, /* priority+aging, slack, host policy, backfill */
    KILN_POLICY_FIFO = 1, /* baseline: oldest first, first fit */
    KILN_POLICY_EASY = 2, /* baseline: Slurm-like EASY backfill (below) */
};

struct kiln_policy {
    int mode;              /* enum kiln_policy_mode */
    double aging_per_hour; /* priority points gained per hour of waiting */
    int backfill;          /* 1 = reserve for blocked heads + backfill */
    int host_policy;       /* enum kiln_host_policy (KILN mode only) */
};

/* Defaults: KILN mode, aging 1 point/hour, backfill on, spread. */
void kiln_policy_default(struct kiln_policy *pol);
/* "spread" or "pack" -> enum kiln_host_policy; KILN_EINVAL otherwise. */
int kiln_host_policy_parse(const char *name, int *out, struct kiln_error *err);
const char *kiln_host_policy_name(int host_policy);

struct kiln_assignment {
    int64_t job_id;
    int stage;
    int64_t worker_id;
    int gpu_index; /* -1 for builds */
    size_t item;   /* index into the caller's items (kiln_place only) */
    size_t worker; /* index into the caller's workers (kiln_place only) */
};

/* One-shot placement over a snapshot. Does not modify items or workers.
 * out has room for nitems entries; *nout gets the count. reasons, if not
 * NULL, has nitems entries: placed items get "", unplaced ones a sentence.
 * Returns 0, KILN_EINVAL (bad item/worker, message says which), KILN_ENOMEM. */
int kiln_place(const struct kiln_policy *pol, double now, const struct kiln_pitem *items,
               size_t nitems, const struct kiln_pworker *workers, size_t nworkers,
               struct kiln_assignment *out, size_t *nout, char (*reasons)[KILN_PLACE_REASON_MAX],
               struct kiln_error *err);

/* ---- incremental placer (the service keeps one; so does the simulator) ---- */

struct kiln_placer;

int kiln_placer_new(const struct kiln_policy *pol, struct kiln_placer **out,
                    struct kiln_error *err);
void kiln_placer_free(struct kiln_placer *p);
/* The policy it runs. */
void kiln_placer_policy(const struct kiln_placer *p, struct kiln_policy *out);

/* Add or replace a worker (by id). Free resources and GPU busy flags are
 * taken from w as the truth; running (if given) replaces the known running
 * items of this worker. */
int kiln_placer_set_worker(struct kiln_placer *p, const struct kiln_pworker *w,
                           struct kiln_error *err);
/* Forget a worker; its running items are forgotten too. KILN_ENOTFOUND. */
int kiln_placer_remove_worker(struct kiln_placer *p, int64_t worker_id);

/* Queue a ready item. KILN_EEXIST if (job_id, stage) is queued already. */
int kiln_placer_add(struct kiln_placer *p, const struct kiln_pitem *it, struct kiln_error *err);
/* Drop a queued item (cancelled). KILN_ENOTFOUND if not queued. */
int kiln_placer_remove(struct kiln_placer *p, int64_t job_id, int stage);

/* Place what can start now. Assigned items leave the queue; their cores,
 * RAM and GPU are taken from the worker until kiln_placer_finish(). At most
 * cap assignments per call; *nout gets the count (item/worker fields are 0). */
int kiln_placer_dispatch(struct kiln_placer *p, double now, struct kiln_assignment *out, size_t cap,
                         size_t *nout, struct kiln_error *err);
/* Like dispatch, but only for one worker (a lease request): at most cap
 * items for worker_id. It gives the worker the best items it can run now
 * (respecting reservations); it does not hold an item back because another
 * worker would fit it better - call kiln_placer_dispatch() for that and hand
 * each worker its share. */
int kiln_placer_dispatch_worker(struct kiln_placer *p, double now, int64_t worker_id,
                                struct kiln_assignment *out, size_t cap, size_t *nout,
                                struct kiln_error *err);
/* A placed item ended (or was cancelled while running): give back its
 * resources. KILN_ENOTFOUND if the placer did not place it. */
int kiln_placer_finish(struct kiln_placer *p, int64_t job_id, int stage);

/* Why a queued item is not running, as one sentence (as of the last
 * dispatch). KILN_ENOTFOUND if not queued. */
int kiln_placer_reason(struct kiln_placer *p, int64_t job_id, int stage, char *buf, size_t len);
size_t kiln_placer_queued(const struct kiln_placer *p);

/* ---- helpers ---- */

/* 1 if a GPU of SM gpu can run code built for SM need (see rules above). */
int kiln_sm_matches(const char *gpu, const char *need, int sm_compat);
/* Driver major of "580.65.06" (580); 0 if it does not start with a number. */
int kiln_driver_major(const char *version);

/* Dependency DAG in CSR form: node i needs deps[dep_off[i] .. dep_off[i+1]).
 * Critical path of i = est[i] + the longest critical path among the nodes
 * that need i (its dependents), i.e. how long from starting i to the end of
 * everything waiting on it. crit has n entries. KILN_EINVAL on a cycle or an
 * out-of-range dependency (message names the node). */
int kiln_dag_critical_paths(size_t n, const double *est, const size_t *dep_off, const size_t *deps,
                            double *crit, struct kiln_error *err);
/* A topological order (dependencies first) into order[n]. KILN_EINVAL on a
 * cycle. */
int kiln_dag_topo_order(size_t n, const size_t *dep_off, const size_t *deps, size_t *order,
                        struct kiln_error *err);

#endif
