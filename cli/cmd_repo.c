/* cmd_repo.c - `kiln repo ls|add|fetch`: tracked git repositories. */
#include "cli/cli.h"
#include "cli/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: kiln repo ls\n"
        "       kiln repo add --url URL --recipes PATH[,PATH] [--name N] [--branches "
        "'main,vllm-*']\n"
        "                     [--poll SECONDS] [--auto-publish] [--no-initial-build] [--secret S]\n"
        "       kiln repo fetch ID\n"
        "  --server URL, --token T (admin for add/fetch), --json\n"
        "Repositories can also be listed in the server config under repos:.\n");
}

int cmd_repo(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? KILN_EXIT_USAGE : KILN_EXIT_OK;
    }
    struct kiln_cli cli;
    int rc = kiln_cli_init(&cli, &argc, argv);
    if (rc) return rc;
    const char *sub = argv[1];
    json_t *resp = NULL;
    if (!strcmp(sub, "ls")) {
        rc = kiln_cli_call(&cli, "GET", "/api/v1/repos", NULL, &resp);
        if (!rc && cli.json)
            kiln_cli_print_json(resp);
        else if (!rc) {
            printf("%-16s %-24s %-40s %-6s %s\n", "ID", "NAME", "URL", "POLL", "LAST SEEN");
            size_t i;
            json_t *r;
            json_array_foreach(json_object_get(resp, "repos"), i, r)
            {
                char *last = json_dumps(json_object_get(r, "last_seen"), JSON_COMPACT);
                printf("%-16lld %-24.24s %-40.40s %-6lld %s%s%s\n",
                       (long long)json_integer_value(json_object_get(r, "id")),
                       kiln_cli_str(r, "name", ""), kiln_cli_str(r, "url", ""),
                       (long long)json_integer_value(json_object_get(r, "poll_s")),
                       last ? last : "{}", json_object_get(r, "last_error") ? "  error: " : "",
                       kiln_cli_str(r, "last_error", ""));
                free(last);
            }
        }
    } else if (!strcmp(sub, "add")) {
        json_t *body = json_object();
        for (int i = 2; i < argc && !rc; i++) {
            const char *a = argv[i];
            if (!strcmp(a, "--auto-publish")) {
                json_object_set_new(body, "auto_publish", json_true());
                continue;
            }
            if (!strcmp(a, "--no-initial-build")) {
                json_object_set_new(body, "initial_build", json_false());
                continue;
            }
            if (i + 1 >= argc) {
                fprintf(stderr, "kiln repo add: %s needs a value\n", a);
                rc = KILN_EXIT_USAGE;
                break;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--url"))
                json_object_set_new(body, "url", json_string(v));
            else if (!strcmp(a, "--recipes"))
                json_object_set_new(body, "recipes", json_string(v));
            else if (!strcmp(a, "--name"))
                json_object_set_new(body, "name", json_string(v));
            else if (!strcmp(a, "--branches"))
                json_object_set_new(body, "branches", json_string(v));
            else if (!strcmp(a, "--secret"))
                json_object_set_new(body, "secret", json_string(v));
            else if (!strcmp(a, "--poll"))
                json_object_set_new(body, "poll_s", json_integer(atoi(v)));
            else {
                fprintf(stderr, "kiln repo add: unknown option %s\n", a);
                rc = KILN_EXIT_USAGE;
            }
        }
        if (!rc) rc = kiln_cli_call(&cli, "POST", "/api/v1/repos", body, &resp);
        if (!rc) {
            if (cli.json)
                kiln_cli_print_json(resp);
            else
                printf("tracking %s (id %lld)\n", kiln_cli_str(resp, "name", "?"),
                       (long long)json_integer_value(json_object_get(resp, "id")));
        }
        json_decref(body);
    } else if (!strcmp(sub, "fetch") && argc >= 3) {
        char path[128];
        snprintf(path, sizeof path, "/api/v1/repos/%s/fetch", argv[2]);
        json_t *body = json_object(); /* kiln_cli_call borrows it */
        rc = body ? kiln_cli_call(&cli, "POST", path, body, &resp) : KILN_EXIT_INTERNAL;
        json_decref(body);
        if (!rc) printf("fetch of repository %s started\n", argv[2]);
    } else {
        usage(stderr);
        rc = KILN_EXIT_USAGE;
    }
    json_decref(resp);
    kiln_cli_cleanup(&cli);
    return rc;
}
