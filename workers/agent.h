/* agent.h - the worker agent: the protocol loop of docs/API.md.
 *
 * Contract: kiln_agent_run() registers with the server, long-polls for
 * leases, runs jobs (workers/proc.h) within the host's cores, RAM and GPUs,
 * streams their logs by offset, heartbeats, reports results, and reconnects
 * with exponential backoff (capped at 10 s), re-registering the jobs it still
 * runs. It returns after SIGTERM/SIGINT once running jobs have finished and
 * been reported (a second signal kills them and reports them as
 * infrastructure failures so the server requeues them), or with an error
 * when the server rejects the token (KILN_EAUTH/KILN_EPERM). The libuv loop
 * never blocks: HTTP calls run in the libuv thread pool, one easy handle per
 * channel (lease, control, log), never two calls on one handle at once.
 */
#ifndef KILN_WORKERS_AGENT_H
#define KILN_WORKERS_AGENT_H

#include "common/err.h"
#include "common/log.h"
#include "workers/config.h"
#include "workers/detect.h"

int kiln_agent_run(const struct kiln_worker_config *cfg, const struct kiln_host *host,
                   const struct kiln_logger *lg, struct kiln_error *err);

#endif
