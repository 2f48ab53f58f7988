/* logquota.h - the total size of job logs, kept under a quota (issue 16).
 *
 * Contract:
 * - kiln_logquota_enforce() first removes the logs of jobs that finished
 *   more than retention_s ago (0 = keep), then, while the logs' total is
 *   above quota (0 = no quota), removes the logs of the jobs that finished
 *   longest ago. Only final jobs' logs are removed; a removed log's job keeps
 *   its row with log_size 0 (GET .../log then answers an empty log). Returns
 *   the total that remains in *total and how many logs went in *removed.
 * - The total is SUM(jobs.log_size): one scan per call, so the service calls
 *   it from its housekeeping timer, not per chunk; between calls the caller
 *   adds what it appends and refuses chunks that would pass the quota.
 * - Loop thread; the store's own transaction per removal.
 */
#ifndef KILN_LOGQUOTA_H
#define KILN_LOGQUOTA_H

#include "common/err.h"
#include "server/logs.h"
#include "state/store.h"

#include <stdint.h>

int kiln_logquota_enforce(struct kiln_store *st, struct kiln_logs *logs, int64_t quota,
                          double retention_s, double now, int64_t *total, int *removed,
                          struct kiln_error *err);

#endif
