/* cmd_jobs.c - placeholder until the module lands. */
#include "cli/commands.h"

#include <stdio.h>

int cmd_submit(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "kiln %s: not implemented yet\n", argv[0]);
    return KILN_EXIT_INTERNAL;
}

int cmd_queue(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "kiln %s: not implemented yet\n", argv[0]);
    return KILN_EXIT_INTERNAL;
}

int cmd_show(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "kiln %s: not implemented yet\n", argv[0]);
    return KILN_EXIT_INTERNAL;
}

int cmd_logs(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "kiln %s: not implemented yet\n", argv[0]);
    return KILN_EXIT_INTERNAL;
}

int cmd_cancel(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "kiln %s: not implemented yet\n", argv[0]);
    return KILN_EXIT_INTERNAL;
}

int cmd_retry(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "kiln %s: not implemented yet\n", argv[0]);
    return KILN_EXIT_INTERNAL;
}

int cmd_workers(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "kiln %s: not implemented yet\n", argv[0]);
    return KILN_EXIT_INTERNAL;
}

int cmd_drain(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "kiln %s: not implemented yet\n", argv[0]);
    return KILN_EXIT_INTERNAL;
}
