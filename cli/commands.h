/* commands.h - the kiln subcommands (like git: one binary, small commands).
 *
 * Contract: each command is `int cmd_X(int argc, char **argv)` where argv[0]
 * is the command name. It returns a process exit code, KILN_EXIT_* in
 * common/err.h; a failing library call's code becomes one through
 * kiln_err_exit_code(), so every command maps errors the same way.
 * Only main() calls exit(); commands return.
 */
#ifndef KILN_COMMANDS_H
#define KILN_COMMANDS_H

#include "common/err.h" /* KILN_EXIT_* and kiln_err_exit_code(), the one map */

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
