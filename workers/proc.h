/* proc.h - running one job: a shell command in its own session and process
 * group, output appended to a log file, under a timeout and a RAM limit.
 *
 * Contract:
 * - kiln_proc_start() spawns `/bin/sh -c COMMAND` through common/spawn (in
 *   its own session, so the job's process group id is its pid), stdin from
 *   /dev/null, stdout and stderr appended to spec->log_path (the log is
 *   spooled on disk, never held in memory; the agent uploads it by offset).
 *   Under a cgroup method the first process joins the job's cgroups before
 *   it execs the shell. The worker must not reap children with a SIGCHLD
 *   handler of its own (waitpid(-1)): each job's exit is read on its pidfd.
 * - Every 200 ms the job is sampled (workers/limits.h); over its RAM limit or
 *   past its timeout the whole group is SIGKILLed. When the main process
 *   exits, any process left in its group/cgroup is killed too.
 * - done(p, result, arg) runs once, on the loop, when the job is over. The
 *   result carries exit code or signal, peak RAM, CPU time and a plain
 *   reason ("exceeded its RAM limit of 1 GiB, peak 1.9 GiB", "timed out
 *   after 600 s", "exited with status 2", or the reason given to kill).
 * - kiln_proc_kill() may be called any time before done; kiln_proc_free()
 *   after done (it closes the handles and frees asynchronously).
 */
#ifndef KILN_WORKERS_PROC_H
#define KILN_WORKERS_PROC_H

#include "common/err.h"
#include "workers/limits.h"

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct kiln_proc;

struct kiln_proc_spec {
    const char *command;
    char **env; /* "K=V" strings, NULL-terminated: the whole environment */
    const char *cwd;
    const char *log_path;
    double timeout_s;   /* 0 = none */
    uint64_t ram_bytes; /* 0 = none */
    const char *name;   /* unique cgroup name for this run */
    const struct kiln_limits *limits;
};

struct kiln_proc_result {
    int exit_code;   /* -1 when killed by a signal */
    int term_signal; /* 0 when it exited */
    int timed_out;
    int ram_exceeded;
    int killed; /* kiln_proc_kill() was called */
    int infra;  /* the kill was an infrastructure failure (worker shutdown) */
    uint64_t peak_ram;
    double cpu_s;
    double wall_s;
    char reason[256]; /* "" on success */
};

typedef void (*kiln_proc_done_cb)(struct kiln_proc *p, const struct kiln_proc_result *r, void *arg);

int kiln_proc_start(uv_loop_t *loop, const struct kiln_proc_spec *spec, kiln_proc_done_cb done,
                    void *arg, struct kiln_proc **out, struct kiln_error *err);
void kiln_proc_kill(struct kiln_proc *p, const char *reason, int infra);
pid_t kiln_proc_pid(const struct kiln_proc *p);
uint64_t kiln_proc_peak(const struct kiln_proc *p);
void kiln_proc_free(struct kiln_proc *p);

#endif
