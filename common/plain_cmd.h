/* plain_cmd.h - when a shell command needs no shell.
 *
 * Contract: kiln_plain_cmd() says whether `/bin/sh -c cmd` would only split
 * cmd at spaces and run the program its first word names, and if so fills
 * argv (pointers into buf, NULL-terminated) and path (the program, found
 * the way sh finds it: an absolute name as is, else the first executable
 * regular file in env's PATH, or /bin:/usr/bin without one). Plain means:
 *   - only letters, digits, spaces and - _ . / , : + @ % =, so nothing to
 *     quote, expand, glob, redirect, pipe, chain or comment;
 *   - no '=' in the first word (an assignment, not a program);
 *   - the first word is no shell reserved word and no builtin of dash
 *     except true and false without arguments (cd, echo, printf, pwd,
 *     kill, test and the rest behave differently from, or have no,
 *     programs of their name; `true --help` prints coreutils' help);
 *   - the program exists and may be executed (otherwise sh runs the
 *     command, so its error message and exit status stay sh's);
 *   - no relative name is involved (a "./x" program, or an empty or
 *     relative PATH entry before the program is found): those name the
 *     child's working directory, which is not the caller's.
 * Returns 1 (plain), 0 (needs sh) or -1 (too long for buf or argv: sh).
 * No allocation; the only system calls are stat/access of the candidates.
 * Why: spawn.h runs a command string through sh, which costs a process
 * start of its own per job; a no-op job (`true`) through /bin/sh costs
 * about 12% more CPU than /bin/true.
 */
#ifndef KILN_PLAIN_CMD_H
#define KILN_PLAIN_CMD_H

#include <stddef.h>

int kiln_plain_cmd(const char *cmd, char *const *env, char *buf, size_t bufn, char **argv,
                   size_t maxargs, char *path, size_t pathn);

#endif
