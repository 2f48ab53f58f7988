/* commands.h - the kiln subcommands (like git: one binary, small commands).
 *
 * Contract: each command is `int cmd_X(int argc, char **argv)` where argv[0]
 * is the command name. It returns a process exit code (see docs/cli.md):
 *   0 success, 1 the operation failed (job failed, check found problems),
 *   2 usage error, 3 server unreachable, 4 auth error (401/403),
 *   5 not found, 6 conflict/bad state, 7 internal error.
 * Only main() calls exit(); commands return.
 */
#ifndef KILN_COMMANDS_H
#define KILN_COMMANDS_H

enum {
    KILN_EXIT_OK = 0,
    KILN_EXIT_FAIL = 1,
    KILN_EXIT_USAGE = 2,
    KILN_EXIT_UNREACHABLE = 3,
    KILN_EXIT_AUTH = 4,
    KILN_EXIT_NOTFOUND = 5,
    KILN_EXIT_CONFLICT = 6,
    KILN_EXIT_INTERNAL = 7,
};

int cmd_serve(int argc, char **argv);    /* cli/cmd_serve.c */
int cmd_worker(int argc, char **argv);   /* cli/cmd_worker.c */
int cmd_submit(int argc, char **argv);   /* cli/cmd_jobs.c */
int cmd_queue(int argc, char **argv);    /* cli/cmd_jobs.c */
int cmd_show(int argc, char **argv);     /* cli/cmd_jobs.c */
int cmd_logs(int argc, char **argv);     /* cli/cmd_jobs.c */
int cmd_cancel(int argc, char **argv);   /* cli/cmd_jobs.c */
int cmd_retry(int argc, char **argv);    /* cli/cmd_jobs.c */
int cmd_workers(int argc, char **argv);  /* cli/cmd_jobs.c */
int cmd_drain(int argc, char **argv);    /* cli/cmd_jobs.c */
int cmd_token(int argc, char **argv);    /* cli/cmd_token.c */
int cmd_recipe(int argc, char **argv);   /* cli/cmd_recipe.c */
int cmd_sim(int argc, char **argv);      /* cli/cmd_sim.c */
int cmd_catalog(int argc, char **argv);  /* cli/cmd_catalog.c */
int cmd_selftest(int argc, char **argv); /* cli/cmd_selftest.c */
int cmd_repo(int argc, char **argv);     /* cli/cmd_repo.c */
int cmd_source(int argc, char **argv);   /* cli/cmd_source.c */
int cmd_release(int argc, char **argv);  /* cli/cmd_release.c */

#endif
