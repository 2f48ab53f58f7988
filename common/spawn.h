/* spawn.h - running another program: in its own process group, with a
 * timeout that ends the whole group.
 *
 * Why one file: a command kiln starts (a selftest check, nix-store,
 * nvidia-smi, a publish hook, a job) may start children of its own. Killing
 * only the direct child leaves the grandchildren running and holding pipes
 * open, so every start puts the program in a process group of its own and
 * every kill is sent to that group.
 *
 * Contract, blocking form (CLI commands and threads; never on an event loop):
 * - kiln_spawn_start() runs spec->argv (argv[0] looked up in PATH) or, when
 *   argv is NULL, "/bin/sh -c spec->command" (a command of plain words, as
 *   common/plain_cmd.h defines them, runs as its own program: what sh
 *   would run, with the PWD sh would export, one process start less),
 *   the way posix_spawn does it:
 *   clone(CLONE_VM | CLONE_VFORK), so no copy of the caller's address space
 *   is made (safe in a threaded process, unlike fork, and as cheap for a
 *   large agent as for a small CLI). stdin is /dev/null; handled signals,
 *   SIGPIPE and the signal mask are reset to defaults; spec->env_add ("K=V")
 *   is laid over spec->env (NULL: this process's environment); it runs in
 *   spec->cwd. Before exec the child writes "0" to each file of spec->join
 *   (a cgroup.procs file: "put me in this cgroup", so no process of a job
 *   ever runs outside its limits); a step that fails is KILN_EIO.
 *   stdout goes to out_fd: KILN_SPAWN_NULL (/dev/null), KILN_SPAWN_PIPE (a
 *   pipe whose read end is p->out_fd, for the caller to read and close) or
 *   an open descriptor. stderr goes to err_fd the same way, or
 *   KILN_SPAWN_STDOUT for "where stdout goes". A program that cannot be
 *   started is KILN_EUNSUPPORTED "cannot run X: why".
 * - kiln_spawn_wait() waits up to timeout_ms (<= 0: no limit). On timeout
 *   the group gets SIGTERM, then SIGKILL 2 s later. Either way, what is left
 *   of the group is killed before the child is reaped (the child is not
 *   reaped while its group is signalled, so its pid cannot be reused).
 * - kiln_spawn_run() is start + wait; a program that cannot be started
 *   reads as exit status 127, as in a shell, with the reason written to
 *   stderr's destination, so callers that report outcomes need no second
 *   path. kiln_spawn_capture() is start + read stdout (at most max bytes,
 *   KILN_ELIMIT past it) + wait, all within one timeout.
 * - kiln_spawn_status() turns a result into KILN_OK (exit status 0) or
 *   KILN_EIO "what failed (exit status N)" / "(signal N)" / "timed out".
 * - The program leads a process group of its own (pid = group id); with
 *   spec->new_session a session too (setsid: no controlling terminal, as
 *   the worker's jobs run). The worker watches such a pid on its loop
 *   through a pidfd and reaps it itself instead of calling kiln_spawn_wait().
 *
 * Event-loop form: kiln_spawn_uv() is the one place that calls uv_spawn.
 * It stays a libuv call rather than a thread running the blocking form
 * because its callers (a publish hook with streamed output, a Slurm command)
 * live on the loop and need exit and output callbacks;
 * it sets UV_PROCESS_DETACHED (setsid: own session and process group) and
 * leaves the timeout timer and the pipes to the caller, whose handles they
 * are. kiln_spawn_kill_group() signals such a group (or a blocking one).
 *
 * Isolation form: kiln_spawn_fork_fn() runs a function of this program in a
 * forked copy of it, so that a crash in it (the selftest's inspection of
 * untrusted ELF files) cannot take the caller down. It is a fork, not a
 * clone: the child runs this process's code rather than a program, so it
 * needs its own copy of the memory.
 */
#ifndef KILN_SPAWN_H
#define KILN_SPAWN_H

#include "common/buf.h"
#include "common/err.h"

#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#define KILN_SPAWN_NULL (-1)   /* /dev/null */
#define KILN_SPAWN_PIPE (-2)   /* a pipe to the caller (stdout only) */
#define KILN_SPAWN_STDOUT (-3) /* stderr: wherever stdout goes */

struct kiln_spawn_spec {
    char *const *argv;    /* argv[0] looked up in PATH; NULL: use command */
    const char *command;  /* run as /bin/sh -c command when argv is NULL (plain_cmd.h) */
    const char *cwd;      /* NULL: inherit */
    char *const *env_add; /* extra "K=V" entries, NULL-terminated, may be NULL */
    int out_fd;           /* KILN_SPAWN_NULL, KILN_SPAWN_PIPE or a descriptor */
    int err_fd;           /* KILN_SPAWN_NULL, KILN_SPAWN_STDOUT or a descriptor */
    char *const *env;     /* the whole environment; NULL: this process's */
    char *const *join;    /* files to write "0" to before exec, NULL-terminated, may be NULL */
    int new_session;      /* 1: setsid(); 0: a new process group only */
};

/* One started program; lives from kiln_spawn_start() to kiln_spawn_wait(). */
struct kiln_spawn_proc {
    pid_t pid;     /* also its process group id */
    int out_fd;    /* read end of stdout with KILN_SPAWN_PIPE, else -1 */
    double t0;     /* kiln_clock_mono() at start */
    char what[64]; /* argv[0] or "/bin/sh", for messages */
};

struct kiln_spawn_result {
    int exit_code;   /* -1 when killed by a signal */
    int term_signal; /* 0 unless killed by a signal */
    int timed_out;   /* 1 when the timeout ended it */
    double seconds;  /* wall time from start to exit */
};

int kiln_spawn_start(const struct kiln_spawn_spec *spec, struct kiln_spawn_proc *p,
                     struct kiln_error *err);
int kiln_spawn_wait(struct kiln_spawn_proc *p, long timeout_ms, struct kiln_spawn_result *r,
                    struct kiln_error *err);
int kiln_spawn_run(const struct kiln_spawn_spec *spec, long timeout_ms, struct kiln_spawn_result *r,
                   struct kiln_error *err);
/* spec->out_fd is ignored (stdout is captured into out, which the caller frees). */
int kiln_spawn_capture(const struct kiln_spawn_spec *spec, long timeout_ms, size_t max,
                       struct kiln_buf *out, struct kiln_spawn_result *r, struct kiln_error *err);
int kiln_spawn_status(const struct kiln_spawn_result *r, const char *what, struct kiln_error *err);
/* kiln_spawn_wait() then kiln_spawn_status(): KILN_OK only for exit status 0. */
int kiln_spawn_finish(struct kiln_spawn_proc *p, long timeout_ms, const char *what,
                      struct kiln_error *err);
/* Signal the whole group of pid (and pid itself, in case it left the group). */
void kiln_spawn_kill_group(pid_t pid, int sig);

/* fn(arg, fd) runs in a forked child and must end with _exit(); fd is the
 * write end of a pipe whose read end is *out_fd (close-on-exec, the
 * caller's to read and close). The caller reaps *pid. KILN_EIO when the
 * pipe or the fork fails. */
int kiln_spawn_fork_fn(void (*fn)(void *arg, int fd), void *arg, pid_t *pid, int *out_fd,
                       struct kiln_error *err);

/* Event-loop form; see above. argv[0] is a path or looked up in PATH. */
int kiln_spawn_uv(uv_loop_t *loop, uv_process_t *proc, char **argv, const char *cwd, char **env,
                  uv_stdio_container_t stdio[3], uv_exit_cb on_exit, struct kiln_error *err);

#endif
