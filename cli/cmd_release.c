/* cmd_release.c - `kiln release ls|show`: releases (all variants of a commit
 * published at once) and what holds an unfinished one. */
#include "cli/cli.h"
#include "cli/commands.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kiln release ls [--branch B] [--state open|held|pending|complete|superseded]\n"
            "       kiln release show ID\n"
            "  --server URL, --token T, --json\n"
            "A release is every variant of one commit of a branch whose recipe or repo says\n"
            "'publish: release': none is visible until all passed. A failed variant holds it\n"
            "(retry it with kiln retry JOB); a newer commit supersedes it.\n");
}

/* "job 12 rel-b failed at build: exit status 1" */
static void print_holder(json_t *v, const char *indent)
{
    printf("%sjob %lld %s %s%s%s: %s\n", indent,
           (long long)json_integer_value(json_object_get(v, "job")), kiln_cli_str(v, "name", "?"),
           kiln_cli_str(v, "state", "?"), json_object_get(v, "failed_stage") ? " at " : "",
           kiln_cli_str(v, "failed_stage", ""), kiln_cli_str(v, "reason", "(no reason given)"));
}

static int release_ls(struct kiln_cli *cli, int argc, char **argv)
{
    char path[512] = "/api/v1/releases?limit=100";
    for (int i = 2; i < argc; i += 2) { /* an option and its value */
        if (i + 1 >= argc || (strcmp(argv[i], "--branch") && strcmp(argv[i], "--state"))) {
            fprintf(stderr, "kiln release ls: unknown option %s (see --help)\n", argv[i]);
            return KILN_EXIT_USAGE;
        }
        char *esc = curl_easy_escape(NULL, argv[i + 1], 0);
        size_t l = strlen(path);
        snprintf(path + l, sizeof path - l, "&%s=%s", argv[i] + 2, esc ? esc : "");
        curl_free(esc);
    }
    json_t *resp = NULL;
    int rc = kiln_cli_call(cli, "GET", path, NULL, &resp);
    if (rc) return rc;
    if (cli->json) {
        kiln_cli_print_json(resp);
        json_decref(resp);
        return KILN_EXIT_OK;
    }
    printf("%-6s %-10s %-20s %-12s %-9s %s\n", "ID", "STATUS", "BRANCH", "COMMIT", "PASSED",
           "HELD BY");
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(resp, "releases"), i, r)
    {
        char passed[32];
        snprintf(passed, sizeof passed, "%lld/%lld",
                 (long long)json_integer_value(json_object_get(r, "variants_passed")),
                 (long long)json_integer_value(json_object_get(r, "variants_total")));
        json_t *held = json_object_get(r, "held_by");
        printf("%-6lld %-10s %-20.20s %-12.12s %-9s",
               (long long)json_integer_value(json_object_get(r, "id")),
               kiln_cli_str(r, "status", "?"), kiln_cli_str(r, "branch", ""),
               kiln_cli_str(r, "commit", ""), passed);
        if (!json_array_size(held)) printf(" -\n");
        size_t k;
        json_t *v;
        json_array_foreach(held, k, v) print_holder(v, k ? "       " : " ");
    }
    json_decref(resp);
    return KILN_EXIT_OK;
}

static int release_show(struct kiln_cli *cli, int argc, char **argv)
{
    char *end = NULL;
    long long id = argc == 3 ? strtoll(argv[2], &end, 10) : 0;
    if (id <= 0 || !end || *end) {
        fprintf(stderr, "kiln release show: wants one release id (a positive number)\n");
        return KILN_EXIT_USAGE;
    }
    char path[64];
    snprintf(path, sizeof path, "/api/v1/releases/%lld", id);
    json_t *r = NULL;
    int rc = kiln_cli_call(cli, "GET", path, NULL, &r);
    if (rc) return rc;
    if (cli->json) {
        kiln_cli_print_json(r);
        json_decref(r);
        return KILN_EXIT_OK;
    }
    printf("release %lld: %s  %s@%s\n", id, kiln_cli_str(r, "status", "?"),
           kiln_cli_str(r, "branch", ""), kiln_cli_str(r, "commit", ""));
    printf("variants passed: %lld of %lld\n",
           (long long)json_integer_value(json_object_get(r, "variants_passed")),
           (long long)json_integer_value(json_object_get(r, "variants_total")));
    if (json_integer_value(json_object_get(r, "superseded_by")))
        printf("superseded by release %lld (a newer commit)\n",
               (long long)json_integer_value(json_object_get(r, "superseded_by")));
    json_t *held = json_object_get(r, "held_by");
    if (json_array_size(held)) printf("held by:\n");
    size_t i;
    json_t *v;
    json_array_foreach(held, i, v) print_holder(v, "  ");
    printf("variants:\n");
    json_array_foreach(json_object_get(r, "variants"), i, v)
        printf("  job %-6lld %-40s %s\n", (long long)json_integer_value(json_object_get(v, "job")),
               kiln_cli_str(v, "name", "?"), kiln_cli_str(v, "state", "?"));
    printf("entries (%s):\n",
           !strcmp(kiln_cli_str(r, "state", ""), "complete") ? "published" : "held, not visible");
    json_array_foreach(json_object_get(r, "entries"), i, v)
        printf("  %-6lld %s %s %s\n", (long long)json_integer_value(json_object_get(v, "id")),
               kiln_cli_str(v, "name", "?"), kiln_cli_str(v, "version", "?"),
               kiln_cli_str(v, "store_path", ""));
    json_decref(r);
    return KILN_EXIT_OK;
}

int cmd_release(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? KILN_EXIT_USAGE : KILN_EXIT_OK;
    }
    struct kiln_cli cli;
    int rc = kiln_cli_init(&cli, &argc, argv);
    if (rc) return rc;
    if (!strcmp(argv[1], "ls"))
        rc = release_ls(&cli, argc, argv);
    else if (!strcmp(argv[1], "show"))
        rc = release_show(&cli, argc, argv);
    else {
        fprintf(stderr, "kiln release: unknown subcommand '%s' (ls, show)\n", argv[1]);
        rc = KILN_EXIT_USAGE;
    }
    kiln_cli_cleanup(&cli);
    return rc;
}
