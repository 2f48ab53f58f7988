/* trace.h - the placer's inputs as events, so a run can be recorded and
 * replayed through the same placer.
 *
 * Why: the service (server/dispatch.c) and `kiln sim` must run one policy.
 * The service turns what changes in its store (a job becomes runnable, is
 * cancelled or leased elsewhere, a lease ends, a worker registers, asks for
 * work, is lost) into these events and applies each with kiln_trace_apply()
 * to its one long-lived placer; a dispatch event returns the decisions.
 * `kiln serve --trace FILE` writes every event (one JSON object per line,
 * with the time the service read its clock) and the decisions it made;
 * `kiln sim --replay FILE` applies the same events to a fresh placer through
 * the same function (kiln_replay_*) and compares the decisions one by one.
 * If the service ever decides by anything but these inputs and the placer,
 * the replay says where.
 *
 * Contract: pure computation, no I/O, no clock, no globals. A trace line is
 * a JSON object with "ev" one of:
 *   policy   {"mode","aging_per_hour","backfill","host_policy"} (first line;
 *            again when the service starts over with a fresh placer)
 *   worker   {"t","w":{...}}  kiln_placer_set_worker (no running list)
 *   gone     {"t","worker"}   kiln_placer_remove_worker
 *   add      {"t","it":{...}} kiln_placer_add
 *   remove   {"t","job","stage"} kiln_placer_remove (left the queue unplaced)
 *   finish   {"t","job","stage"} kiln_placer_finish (a placed item ended)
 *   dispatch {"t"}            kiln_placer_dispatch; decisions follow
 *   decide   {"job","stage","worker","gpu"} one recorded decision
 */
#ifndef KILN_TRACE_H
#define KILN_TRACE_H

#include "common/err.h"
#include "scheduler/placement.h"

#include <jansson.h>
#include <stddef.h>

enum kiln_trace_kind {
    KILN_TEV_POLICY = 0,
    KILN_TEV_WORKER,
    KILN_TEV_GONE,
    KILN_TEV_ADD,
    KILN_TEV_REMOVE,
    KILN_TEV_FINISH,
    KILN_TEV_DISPATCH,
    KILN_TEV_DECIDE,
};

/* One event; which fields mean something depends on kind. */
struct kiln_trace_event {
    int kind;                  /* enum kiln_trace_kind */
    double t;                  /* the service's clock when it read its inputs */
    struct kiln_policy pol;    /* POLICY */
    struct kiln_pworker w;     /* WORKER (w.running is always NULL) */
    struct kiln_pitem it;      /* ADD */
    int64_t job_id, worker_id; /* REMOVE, FINISH, DECIDE; GONE, DECIDE */
    int stage, gpu_index;      /* REMOVE, FINISH, DECIDE; DECIDE */
};

/* Encode as one trace object (caller owns it); NULL when out of memory. */
json_t *kiln_trace_to_json(const struct kiln_trace_event *ev);
/* Decode one trace object. KILN_EINVAL with a sentence naming the field. */
int kiln_trace_from_json(json_t *o, struct kiln_trace_event *ev, struct kiln_error *err);

/* Apply an input event (not POLICY or DECIDE) to p. For DISPATCH, out gets
 * up to cap decisions and *nout their count; otherwise *nout is 0. REMOVE
 * and FINISH of an item the placer does not hold are no-ops (the service
 * may see a job end that it did not place, e.g. after a restart). */
int kiln_trace_apply(struct kiln_placer *p, const struct kiln_trace_event *ev,
                     struct kiln_assignment *out, size_t cap, size_t *nout, struct kiln_error *err);

/* ---- replay: feed a recorded trace line by line ---- */

struct kiln_replay;

int kiln_replay_new(struct kiln_replay **out, struct kiln_error *err);
void kiln_replay_free(struct kiln_replay *r);
/* Replay under this host policy (enum kiln_host_policy) instead of the one
 * the trace records: "would the other policy have decided the same?". A
 * policy other than the service's must show up as differing decisions,
 * which is how the replay test proves that it compares anything at all. */
void kiln_replay_set_host_policy(struct kiln_replay *r, int host_policy);
/* One trace line. The first must be POLICY (it builds the placer; a later
 * one starts over with a fresh placer, as the service does after an error). A
 * DISPATCH is replayed at once; the DECIDE lines after it are compared with
 * what the replay decided, in order. KILN_EINVAL for a malformed line. */
int kiln_replay_line(struct kiln_replay *r, json_t *line, struct kiln_error *err);
/* Call after the last line (checks the last dispatch's decisions). */
int kiln_replay_end(struct kiln_replay *r, struct kiln_error *err);

struct kiln_replay_stats {
    size_t events;            /* input events applied */
    size_t dispatches;        /* dispatch events replayed */
    size_t decisions;         /* decisions compared */
    size_t mismatches;        /* decisions that differ (or are missing / extra) */
    char first_mismatch[256]; /* "" or a sentence about the first one */
};
void kiln_replay_stats(const struct kiln_replay *r, struct kiln_replay_stats *out);

#endif
