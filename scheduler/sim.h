/* sim.h - `kiln sim`: the placement code on a virtual clock over a described farm.
 *
 * Contract: kiln_sim_run() takes a farm (scheduler/farm.h) and variants in
 * the "Variant JSON" shape of docs/API.md (an array, as recipe expand
 * returns) and plays the whole queue out with scheduler/placement.h's placer:
 * no I/O, no wall clock, deterministic.
 *
 * Model (written down in docs/BENCHMARKS.md, "Model"):
 *   - every variant is a build task, then (if it has a selftest) a test task;
 *     both are placed separately through the same placer the service uses.
 *   - a build waits for the variants it depends on (by name; names not in
 *     the set count as already built): for their builds, and with
 *     opts.deps_wait_test (the default) for their tests too - a vLLM build
 *     takes hours of 16 cores and 128 GiB, so it should not start on a
 *     custom PyTorch whose GPU smoke test has not passed yet.
 *   - build: resources.cores / ram_mb on the variant's platform, duration
 *     resources.est_duration_s (default 3600) divided by the host's speed.
 *     The estimate is what the recipe says a build takes at its own
 *     NIX_BUILD_CORES, so cores do not rescale it.
 *   - test: selftest sm / sm_compat / isa / driver_min on the variant's
 *     platform, holding opts.test_cores and opts.test_ram_mb; duration
 *     selftest.est_duration_s or opts.test_est_s.
 *   - all variants are submitted at t = 0 in the given order (job ids follow
 *     it), which is what the FIFO baseline orders by.
 *
 * Lower bound: the max of (a) per platform, build core-seconds over the
 * platform's core capacity and RAM-seconds over its RAM capacity (speed-
 * weighted), (b) per GPU SM, test seconds over the GPUs that can run them,
 * each of (a) and (b) plus the shortest chain that follows any task of the
 * group (crit_s - est_s at the fastest speed; the group's last task ends no
 * earlier than work / capacity and its dependents run after it; 0 when some
 * task cannot run), (c) the longest dependency chain, (d) the longest task.
 * In (a) and (b), work / capacity is raised to what the busiest slot must
 * carry in whole tasks (scheduler/slot_bound.h: the smallest sum of the
 * group's durations that reaches the group's slot-seconds over its slots),
 * at the fastest speed.
 * No schedule can beat it; makespan / bound says how close placement got.
 */
#ifndef KILN_SIM_H
#define KILN_SIM_H

#include "common/buf.h"
#include "common/err.h"
#include "scheduler/farm.h"
#include "scheduler/placement.h"

#include <jansson.h>
#include <stddef.h>

#define KILN_SIM_MAX_TASKS 20000

struct kiln_sim_opts {
    struct kiln_policy policy;
    int deps_wait_test;     /* dependents wait for the dependency's test too */
    double test_est_s;      /* default test duration (600) */
    int test_cores;         /* cores a test holds (4) */
    int64_t test_ram_mb;    /* RAM a test holds (16384) */
    double default_build_s; /* when est_duration_s is missing (3600) */
};

void kiln_sim_opts_default(struct kiln_sim_opts *o);

struct kiln_sim_task {
    char name[160]; /* variant name */
    int stage;      /* KILN_PSTAGE_BUILD / _TEST */
    size_t variant; /* index in the variant array */
    int host;       /* index in farm->hosts, -1 never placed */
    int gpu;        /* GPU index on the host, -1 none */
    int cores;
    int64_t ram_mb;
    double est_s;      /* nominal duration */
    double start, end; /* virtual seconds */
    double crit_s;
    char reason[KILN_PLACE_REASON_MAX]; /* why it never ran ("" if it did) */
};

struct kiln_sim_host {
    char name[KILN_PLACE_NAME_MAX];
    int cores;
    int64_t ram_mb;
    int ngpus;
    double core_s; /* core-seconds used */
    double gpu_s;  /* GPU-seconds used */
    int64_t ram_peak_mb;
    int cores_peak;
    double util; /* core_s / (cores * makespan) */
    double gpu_util;
    size_t tasks;
};

struct kiln_sim_result {
    double makespan;
    double lower_bound;
    char bound_what[160]; /* which term of the bound binds, in words */
    double lb_chain, lb_longest, lb_work;
    size_t ntasks, nplaced, nunplaceable, missing_deps;
    struct kiln_sim_task *tasks;
    size_t nhosts;
    struct kiln_sim_host *hosts;
    size_t ndispatch; /* dispatch calls made */
};

int kiln_sim_run(const struct kiln_farm *farm, const json_t *variants,
                 const struct kiln_sim_opts *opts, struct kiln_sim_result *out,
                 struct kiln_error *err);
void kiln_sim_result_free(struct kiln_sim_result *r);

/* Gantt chart: one row per host (builds in lanes) and one per GPU. */
int kiln_sim_svg(const struct kiln_farm *farm, const struct kiln_sim_result *r, const char *title,
                 struct kiln_buf *out);
/* {"makespan_s":..,"lower_bound_s":..,"ratio":..,"hosts":[...],"tasks":[...]} */
json_t *kiln_sim_json(const struct kiln_sim_result *r, int with_tasks);

#endif
