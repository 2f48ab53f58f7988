/* main.c - the kiln entry point: dispatches to a subcommand. */
#include "cli/commands.h"
#include "common/sqlite_open.h"

#include <stdio.h>
#include <string.h>

#ifndef KILN_VERSION
#define KILN_VERSION "dev"
#endif

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"serve", cmd_serve, "run the scheduler service (API, page, store)"},
    {"worker", cmd_worker, "run a worker agent on this host (or --detect)"},
    {"submit", cmd_submit, "submit a job or a recipe's variants"},
    {"queue", cmd_queue, "list jobs"},
    {"show", cmd_show, "show one job"},
    {"logs", cmd_logs, "print (or follow with -f) a job's log"},
    {"cancel", cmd_cancel, "cancel a job"},
    {"retry", cmd_retry, "retry a finished job"},
    {"workers", cmd_workers, "list workers"},
    {"drain", cmd_drain, "drain a worker (finish current work, take no more)"},
    {"token", cmd_token, "create or list API tokens (works on the data dir)"},
    {"recipe", cmd_recipe, "expand, check or diff recipes"},
    {"sim", cmd_sim, "simulate placement of recipes on a described farm"},
    {"catalog", cmd_catalog, "list, show, verify or gc published artifacts"},
    {"selftest", cmd_selftest, "inspect artifacts for GPU code (fatbins, symbols)"},
    {"repo", cmd_repo, "track git repositories for automatic builds"},
    {"release", cmd_release, "list releases (a commit's variants at once) and what holds them"},
    {"source", cmd_source, "check out a commit for a job (used by the worker)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: kiln <command> [options]   (kiln <command> --help for details)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nenvironment: KILN_SERVER (default http://127.0.0.1:8080), KILN_TOKEN\n");
    fprintf(f, "exit codes: 0 ok, 1 failed, 2 usage, 3 unreachable, 4 auth, 5 not found,\n"
               "            6 conflict, 7 internal\n");
}

int main(int argc, char **argv)
{
    kiln_sqlite_process_init();
    if (argc < 2) {
        usage(stderr);
        return KILN_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return KILN_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("kiln %s\n", KILN_VERSION);
        return KILN_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "kiln: unknown command '%s' (see kiln --help)\n", argv[1]);
    return KILN_EXIT_USAGE;
}
