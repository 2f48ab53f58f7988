/* agent.h - the worker agent: the protocol loop of docs/API.md.
 *
 * Contract: kiln_agent_run() registers with the server, long-polls for
 * leases, runs jobs (workers/proc.h) within the host's cores, RAM and GPUs,
 * streams their logs by offset, heartbeats, stages a successful build's
 * outputs on the server before reporting it (workers/stage.h, on the
 * thread pool), has a test stage fetch its inputs by Nix substitution from
 * the server's cache first (the lease's "substitute"), reports results,
 * and reconnects with exponential backoff (capped at 10 s), re-registering
 * the jobs it still runs. It returns after SIGTERM/SIGINT once running jobs have finished and
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

#include <jansson.h>

/* What a job's environment is built from (see kiln_agent_job_env). */
struct kiln_job_env_info {
    int cores;
    int gpu_index;     /* -1 = none */
    int host_has_gpus; /* 1: a job without a GPU gets CUDA_VISIBLE_DEVICES="" */
    long job_id, attempt;
    const char *stage, *work_dir, *worker;
    const char *report_file; /* NULL = none */
};

/* A job's environment: base (the agent's own) without KILN_TOKEN, then the
 * job's env object, then NIX_BUILD_CORES = MAX_JOBS = cores, NIX_CONFIG with
 * "cores = N" appended, CUDA_VISIBLE_DEVICES, KILN_JOB_ID, KILN_ATTEMPT,
 * KILN_STAGE, KILN_WORK_DIR, KILN_WORKER, KILN_REPORT_FILE (where the job may
 * write {"outputs":[...],"selftest":{...}} for its report). NULL-terminated, NULL when out of
 * memory; free with kiln_agent_env_free(). */
char **kiln_agent_job_env(char **base, json_t *job_env, const struct kiln_job_env_info *info);
void kiln_agent_env_free(char **env);

int kiln_agent_run(const struct kiln_worker_config *cfg, const struct kiln_host *host,
                   const struct kiln_logger *lg, struct kiln_error *err);

#endif
