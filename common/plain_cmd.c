/* plain_cmd.c - when a shell command needs no shell (plain_cmd.h). */
#include "common/plain_cmd.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* dash's builtins and the shell's reserved words, true and false left out:
   without arguments their programs do exactly what the builtins do (with
   some, coreutils' answer --help and --version; the builtins ignore them). */
static const char *const NEEDS_SH[] = {
    ".",      ":",       "[",        "alias",    "bg",     "break", "case",    "cd",
    "chdir",  "command", "continue", "do",       "done",   "echo",  "elif",    "else",
    "esac",   "eval",    "exec",     "exit",     "export", "fc",    "fg",      "fi",
    "for",    "getopts", "hash",     "if",       "in",     "jobs",  "kill",    "local",
    "printf", "pwd",     "read",     "readonly", "return", "set",   "shift",   "test",
    "then",   "times",   "trap",     "type",     "ulimit", "umask", "unalias", "unset",
    "until",  "wait",    "while",    "!",        "{",      "}",     NULL};

static int plain_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("-_./,:+@%=", ch) != NULL;
}

/* access() first: most PATH entries miss, and a miss then costs one call */
static int runnable(const char *p)
{
    struct stat st;
    return access(p, X_OK) == 0 && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *path_of(char *const *env)
{
    for (size_t i = 0; env && env[i]; i++)
        if (!strncmp(env[i], "PATH=", 5)) return env[i] + 5;
    return "/bin:/usr/bin";
}

int kiln_plain_cmd(const char *cmd, char *const *env, char *buf, size_t bufn, char **argv,
                   size_t maxargs, char *path, size_t pathn)
{
    size_t len = strlen(cmd);
    if (len + 1 > bufn || maxargs < 2) return -1;
    for (size_t i = 0; i < len; i++)
        if (cmd[i] != ' ' && !plain_char(cmd[i])) return 0;
    memcpy(buf, cmd, len + 1);
    size_t n = 0;
    for (char *s = buf; *s;) {
        while (*s == ' ')
            *s++ = '\0';
        if (!*s) break;
        if (n + 1 >= maxargs) return -1;
        argv[n++] = s;
        while (*s && *s != ' ')
            s++;
    }
    argv[n] = NULL;
    if (!n || strchr(argv[0], '=')) return 0;
    if (n > 1 && (!strcmp(argv[0], "true") || !strcmp(argv[0], "false"))) return 0;
    for (size_t k = 0; NEEDS_SH[k]; k++)
        if (!strcmp(argv[0], NEEDS_SH[k])) return 0;
    /* A relative name is looked up in the child's working directory, not
       ours: sh does that. */
    if (strchr(argv[0], '/')) {
        if (argv[0][0] != '/') return 0;
        if ((size_t)snprintf(path, pathn, "%s", argv[0]) >= pathn) return -1;
        return runnable(path);
    }
    /* sh's PATH search: each entry in turn (an empty or relative one is the
       child's working directory again: sh) */
    for (const char *d = path_of(env);;) {
        const char *end = strchr(d, ':');
        size_t dl = end ? (size_t)(end - d) : strlen(d);
        if (d[0] != '/' || !dl) return 0;
        int w = snprintf(path, pathn, "%.*s/%s", (int)dl, d, argv[0]);
        if (w > 0 && (size_t)w < pathn && runnable(path)) return 1;
        if (!end) return 0;
        d = end + 1;
    }
}
