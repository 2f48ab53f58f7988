/* slurm_cmd.h - running one Slurm command (sbatch, squeue, scancel, sinfo)
 * from the service loop without blocking it.
 *
 * Contract:
 * - kiln_slurm_cmd_run() starts argv[0] (found on PATH) with argv as given,
 *   through common/spawn.h's kiln_spawn_uv (own process group): never a
 *   shell, so nothing in an argument is ever interpreted. stdin is
 *   /dev/null; the environment is the service's trimmed to PATH, HOME, USER,
 *   LOGNAME, LANG, LC_ALL, TZ and SLURM_*, SQUEUE_*, SBATCH_*, SINFO_*; stdout is collected (capped
 * at 4 MiB, the rest dropped), stderr is collected (capped at 4 KiB) for the error sentence.
 * - done is called exactly once on the loop thread, with status = the exit
 *   status (or 128+signal, or -1 when it could not start) and both outputs
 *   NUL-terminated; the buffers are freed after done returns.
 * - A command running longer than timeout_ms is killed with its process
 *   group (status 128+9).
 */
#ifndef KILN_SLURM_CMD_H
#define KILN_SLURM_CMD_H

#include "common/err.h"

#include <stddef.h>
#include <uv.h>

typedef void (*kiln_slurm_cmd_done)(void *arg, int status, const char *out, const char *errout);

int kiln_slurm_cmd_run(uv_loop_t *loop, const char *const *argv, unsigned timeout_ms,
                       kiln_slurm_cmd_done done, void *arg, struct kiln_error *err);

#endif
