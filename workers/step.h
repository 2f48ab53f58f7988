/* step.h - what `kiln worker --step` (one kiln stage run inside a Slurm
 * allocation; slurm/slurm_serve.c submits it) asks of the cluster around it.
 *
 * Why: kiln's own peak-RAM sampling sees only the command's process tree;
 * the cluster's accounting (jobacct_gather, sampled every
 * JobAcctGatherFrequency) is the figure a site's admins see and bill, and
 * it works without slurmdbd while the job runs (sstat), which it still does
 * when the step reports: the step is the batch script's process.
 *
 * Contract:
 * - kiln_step_slurm_peak() runs `sstat -n -P -o MaxRSS -j <SLURM_JOB_ID>.batch`
 *   as an argv (no shell), with the process's environment (SLURM_CONF...),
 *   and a 10 s timeout. Blocking: call it on a thread, never on the loop.
 *   *bytes = the batch step's MaxRSS. KILN_ENOTFOUND when SLURM_JOB_ID is
 *   not set or Slurm has no figure (accounting gather off: empty or 0),
 *   KILN_EIO when sstat fails, KILN_EPARSE on an answer it cannot read.
 */
#ifndef KILN_WORKERS_STEP_H
#define KILN_WORKERS_STEP_H

#include "common/err.h"

#include <stdint.h>

int kiln_step_slurm_peak(uint64_t *bytes, struct kiln_error *err);

#endif
