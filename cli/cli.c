#include "cli/cli.h"

#include "cli/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int kiln_cli_init(struct kiln_cli *cli, int *argc, char **argv)
{
    memset(cli, 0, sizeof *cli);
    cli->cmd = argv[0];
    const char *server = getenv("KILN_SERVER");
    const char *token = getenv("KILN_TOKEN");
    const char *ca = getenv("KILN_CA_FILE");
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (!strcmp(a, "--server"))
            dst = &server;
        else if (!strcmp(a, "--token"))
            dst = &token;
        else if (!strcmp(a, "--ca"))
            dst = &ca;
        if (dst) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "kiln %s: %s needs a value\n", cli->cmd, a);
                return KILN_EXIT_USAGE;
            }
            *dst = argv[++i];
            continue;
        }
        if (!strncmp(a, "--server=", 9)) {
            server = a + 9;
            continue;
        }
        if (!strncmp(a, "--token=", 8)) {
            token = a + 8;
            continue;
        }
        if (!strcmp(a, "--json")) {
            cli->json = 1;
            continue;
        }
        argv[out++] = argv[i];
    }
    *argc = out;
    argv[out] = NULL;
    if (!server || !*server) server = "http://127.0.0.1:8080";
    if (kiln_httpc_init(&cli->http, server, token) != KILN_OK) {
        fprintf(stderr, "kiln %s: bad server URL or token\n", cli->cmd);
        return KILN_EXIT_USAGE;
    }
    if (ca) snprintf(cli->http.ca_file, sizeof cli->http.ca_file, "%s", ca);
    return KILN_EXIT_OK;
}

void kiln_cli_cleanup(struct kiln_cli *cli)
{
    kiln_httpc_cleanup(&cli->http);
}

int kiln_cli_exit_for_status(long status, json_t *body)
{
    json_t *e = json_object_get(body, "error");
    return kiln_err_exit_code(
        kiln_err_from_http(status, json_string_value(json_object_get(e, "code"))));
}

int kiln_cli_call(struct kiln_cli *cli, const char *method, const char *path, json_t *body,
                  json_t **out)
{
    long status = 0;
    json_t *resp = NULL;
    struct kiln_error err = {0};
    int rc = kiln_httpc_json(&cli->http, method, path, body, 0, &status, &resp, &err);
    if (rc) {
        fprintf(stderr, "kiln %s: %s\n", cli->cmd, err.msg);
        return KILN_EXIT_UNREACHABLE;
    }
    if (status >= 400) {
        fprintf(stderr, "kiln %s: %s (HTTP %ld)\n", cli->cmd,
                kiln_httpc_error_message(resp, status), status);
        int code = kiln_cli_exit_for_status(status, resp);
        json_decref(resp);
        return code;
    }
    if (out)
        *out = resp;
    else
        json_decref(resp);
    return KILN_EXIT_OK;
}

void kiln_cli_print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) {
        puts(s);
        free(s);
    }
}

const char *kiln_cli_str(json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : dflt;
}

void kiln_cli_age(double t, char *out, size_t n)
{
    if (t <= 0) {
        snprintf(out, n, "-");
        return;
    }
    double d = (double)time(NULL) - t;
    if (d < 0) d = 0;
    if (d < 120)
        snprintf(out, n, "%.0fs", d);
    else if (d < 7200)
        snprintf(out, n, "%.0fm", d / 60);
    else if (d < 172800)
        snprintf(out, n, "%.0fh", d / 3600);
    else
        snprintf(out, n, "%.0fd", d / 86400);
}
