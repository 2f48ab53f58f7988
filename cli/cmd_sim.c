/* cmd_sim.c - placeholder until the module lands. */
#include "cli/commands.h"

#include <stdio.h>

int cmd_sim(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "kiln %s: not implemented yet\n", argv[0]);
    return KILN_EXIT_INTERNAL;
}
