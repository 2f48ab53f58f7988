/* worker_body.h - the JSON bodies a worker sends: lease offers and reports.
 *
 * Contract: pure parsing of a jansson value, no I/O. Each returns KILN_OK
 * or KILN_EINVAL with a sentence naming the bad field (the API answers it
 * as a 400), and never reads past what the value holds, whatever it is
 * (tests/fuzz/fuzz_worker_body.c).
 *
 * kiln_offer_parse(): what a worker offers in a lease request's body,
 * or beside its reports (POST /workers/{id}/reports?lease=N): free_cores,
 * free_ram_mb and free_gpus (at most KILN_MAX_GPUS indexes, 0-31), each
 * optional (absent or null: not given, -1 / gpus_given 0).
 *
 * kiln_report_parse(): one report's fields (POST /jobs/{id}/report, or an
 * item of POST /workers/{id}/reports): attempt (required), exit_code -1..255,
 * signal 0..128, peak_ram_mb, cpu_s, stage, reason (at most 4000 bytes),
 * infra, selftest (object or null), outputs (array). r borrows strings and
 * objects from o, which must outlive it.
 */
#ifndef KILN_WORKER_BODY_H
#define KILN_WORKER_BODY_H

#include "common/err.h"
#include "server/dispatch.h"
#include "state/jobs.h"

#include <jansson.h>

int kiln_offer_parse(json_t *o, struct kiln_offer *off, struct kiln_error *err);
int kiln_report_parse(json_t *o, struct kiln_report *r, struct kiln_error *err);

#endif
