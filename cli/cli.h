/* cli.h - what the client-side commands share: finding the server and the
 * token (flags, then KILN_SERVER / KILN_TOKEN), calling the API, turning HTTP
 * statuses into the exit codes of cli/commands.h, and printing tables.
 */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include "common/httpc.h"

#include <jansson.h>

struct kiln_cli {
    struct kiln_httpc http;
    int json; /* --json: print raw JSON for scripts */
    const char *cmd;
};

/* Pull --server/--token/--json/--ca out of argv (compacting it), set up the
 * client. Returns KILN_EXIT_OK or KILN_EXIT_USAGE/INTERNAL after printing. */
int kiln_cli_init(struct kiln_cli *cli, int *argc, char **argv);
void kiln_cli_cleanup(struct kiln_cli *cli);
/* JSON call; on transport error or HTTP status >= 400 prints a sentence to
 * stderr and returns the exit code; on success returns 0 and *out. */
int kiln_cli_call(struct kiln_cli *cli, const char *method, const char *path, json_t *body,
                  json_t **out);
/* Exit status for an HTTP error answer (body may be NULL): the code it
 * names, else its status, through kiln_err_exit_code(). */
int kiln_cli_exit_for_status(long status, json_t *body);
/* Print a JSON value to stdout, indented. */
void kiln_cli_print_json(json_t *j);
/* Small helpers for tables. */
const char *kiln_cli_str(json_t *obj, const char *key, const char *dflt);
void kiln_cli_age(double t, char *out, size_t n);

#endif
