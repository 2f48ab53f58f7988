/* slurm_serve.h - the Slurm executor inside `kiln serve`.
 *
 * Contract:
 * - kiln_slurm_feature (a struct kiln_serve_feature) reads the config's
 *   `slurm:` section, {pools: [pool, ...]} (see executor.h for a pool's keys).
 *   Without it the feature does nothing and the agent executor runs all.
 * - Each pool registers as one worker, "slurm:<pool>", whose size is the sum
 *   of its partition's nodes (from sinfo) and whose GPUs are the nodes' GRES
 *   mapped back to SMs; its labels list the nodes and their states, so the
 *   Workers view (GET /api/v1/workers) shows the partition. kiln's dispatch
 *   leases stages to it like to any worker (long-poll waiter in-process).
 * - A leased stage becomes one Slurm job (kiln_slurm_sbatch_argv). The lease
 *   is kept in DATA/slurm/leases/<job>-<attempt>.json; inside the allocation
 *   `kiln worker --step` fetches it (GET /api/v1/slurm/lease/{job}/{attempt},
 *   worker token), runs it under the agent's code, streams the log and
 *   reports exactly like an agent. A lease that is not current any more
 *   answers 409: a stage never runs twice.
 * - The pool heartbeats for its worker (running = its Slurm jobs), polls
 *   squeue every poll_ms, and:
 *     cancel / supersede / a stale attempt   -> scancel (a cancel wakes the
 *       pool's lease wait at once, so the scancel follows within
 *       milliseconds);
 *     NODE_FAIL, BOOT_FAIL, PREEMPTED...      -> infrastructure failure
 *       (requeued with backoff as a new attempt, counted in max_attempts);
 *     OUT_OF_MEMORY without a report          -> failed, "killed by Slurm";
 *     any other end without a report, or a job gone from squeue -> infra.
 * - After a restart the pool lists its Slurm jobs by name
 *   (kiln-<pool>-<job>-<attempt>) and registers with them as its running
 *   list: the registry requeues leases that never reached Slurm and names
 *   Slurm jobs of stale attempts, which are cancelled. Nothing is lost or
 *   run twice, and no state of the executor's own is needed for this.
 * - A leased stage whose Slurm job is pending shows Slurm's reason as its
 *   wait_reason (jobs.h exec_reason).
 * - GET /api/v1/slurm (read): pools, nodes and tracked Slurm jobs.
 */
#ifndef KILN_SLURM_SERVE_H
#define KILN_SLURM_SERVE_H

#include "server/serve.h"

extern const struct kiln_serve_feature kiln_slurm_feature;

#endif
