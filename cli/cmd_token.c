/* cmd_token.c - `kiln token create|list`: works on the data dir's store
 * directly (no server needed), so the first admin token can be made. */
#include "cli/commands.h"
#include "common/fsutil.h"
#include "common/token.h"
#include "state/access.h"
#include "state/store.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kiln token create --role read|submit|worker|admin [--name NAME] [--data DIR]\n"
            "                         [--recipe GLOB]... [--branch GLOB]...\n"
            "       kiln token list [--data DIR]\n"
            "       kiln token revoke --id N [--data DIR]\n"
            "  The token is printed once; only its SHA-256 is stored.\n"
            "  --recipe and --branch (repeatable, fnmatch globs) scope a submit token:\n"
            "  it may submit, cancel and retry only jobs of those recipes and branches.\n");
}

static int open_store(const char *data, struct kiln_store **st)
{
    char path[PATH_MAX];
    struct kiln_error err = {0};
    if (kiln_mkdir_p(data, 0755)) {
        fprintf(stderr, "kiln token: cannot create %s: %s\n", data, strerror(errno));
        return KILN_EXIT_FAIL;
    }
    if (kiln_path_join(path, sizeof path, data, "kiln.db")) {
        fprintf(stderr, "kiln token: data path is too long\n");
        return KILN_EXIT_USAGE;
    }
    int rc = kiln_store_open(path, st, &err);
    if (rc) {
        fprintf(stderr, "kiln token: %s\n", err.msg);
        return kiln_err_exit_code(rc);
    }
    return KILN_EXIT_OK;
}

/* Collect --recipe and --branch values into scope's "recipes" and
 * "branches" lists (the option loop in cmd_token checks the rest). */
static int scope_options(int argc, char **argv, json_t *scope)
{
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *key = !strcmp(argv[i], "--recipe")   ? "recipes"
                          : !strcmp(argv[i], "--branch") ? "branches"
                                                         : NULL;
        if (!key) continue;
        json_t *list = json_object_get(scope, key);
        if (!list) {
            list = json_array();
            if (!list || json_object_set_new(scope, key, list)) {
                fprintf(stderr, "kiln token: out of memory\n");
                return KILN_EXIT_INTERNAL;
            }
        }
        if (json_array_append_new(list, json_string(argv[i + 1]))) {
            fprintf(stderr, "kiln token: %s must be UTF-8\n", argv[i]);
            return KILN_EXIT_USAGE;
        }
    }
    return KILN_EXIT_OK;
}

static int token_create(const char *data, const char *role, const char *name, const json_t *scope)
{
    enum kiln_role r;
    if (!role || kiln_role_parse(role, &r)) {
        fprintf(stderr, "kiln token create: --role must be read, submit, worker or admin\n");
        return KILN_EXIT_USAGE;
    }
    if (scope && r != KILN_ROLE_SUBMIT) {
        fprintf(stderr, "kiln token create: --recipe and --branch scope submit tokens only\n");
        return KILN_EXIT_USAGE;
    }
    if (strlen(name) > 100) {
        fprintf(stderr, "kiln token create: --name is too long\n");
        return KILN_EXIT_USAGE;
    }
    char tok[KILN_TOKEN_LEN], hash[KILN_SHA256_HEX];
    if (kiln_token_generate(tok) || kiln_token_hash(tok, hash)) {
        fprintf(stderr, "kiln token create: no randomness available\n");
        return KILN_EXIT_INTERNAL;
    }
    struct kiln_store *st;
    struct kiln_error err = {0};
    int rc = open_store(data, &st);
    if (rc) return rc;
    if ((rc = kiln_access_token_add(st, r, name, hash, scope, (double)time(NULL), &err))) {
        fprintf(stderr, "kiln token create: %s\n", err.msg);
        kiln_store_close(st);
        return kiln_err_exit_code(rc);
    }
    kiln_store_close(st);
    printf("%s\n", tok);
    fprintf(stderr, "kiln token: created a %s%s token%s%s; it is shown only this once\n",
            scope ? "scoped " : "", kiln_role_name(r), name[0] ? " named " : "", name);
    return KILN_EXIT_OK;
}

int cmd_token(int argc, char **argv)
{
    int help = 0;
    for (int i = 1; i < argc; i++)
        help |= !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
    if (argc < 2 || help) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? KILN_EXIT_USAGE : KILN_EXIT_OK;
    }
    const char *sub = argv[1], *data = "./var", *role = NULL, *name = "", *id = NULL;
    json_t *scope = json_object();
    if (!scope) {
        fprintf(stderr, "kiln token: out of memory\n");
        return KILN_EXIT_INTERNAL;
    }
    int rc = scope_options(argc, argv, scope);
    if (rc) {
        json_decref(scope);
        return rc;
    }
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "kiln token: %s needs a value\n", argv[i]);
            json_decref(scope);
            return KILN_EXIT_USAGE;
        }
        if (!strcmp(argv[i], "--data"))
            data = argv[++i];
        else if (!strcmp(argv[i], "--role"))
            role = argv[++i];
        else if (!strcmp(argv[i], "--name"))
            name = argv[++i];
        else if (!strcmp(argv[i], "--id"))
            id = argv[++i];
        else if (!strcmp(argv[i], "--recipe") || !strcmp(argv[i], "--branch"))
            ++i; /* read by scope_options */
        else {
            fprintf(stderr, "kiln token: unknown option %s\n", argv[i]);
            usage(stderr);
            json_decref(scope);
            return KILN_EXIT_USAGE;
        }
    }
    if (!strcmp(sub, "create")) {
        rc = token_create(data, role, name, json_object_size(scope) ? scope : NULL);
        json_decref(scope);
        return rc;
    }
    size_t scoped = json_object_size(scope);
    json_decref(scope);
    if (scoped) {
        fprintf(stderr, "kiln token %s: --recipe and --branch belong to create\n", sub);
        return KILN_EXIT_USAGE;
    }
    struct kiln_store *st;
    struct kiln_error err = {0};
    if (!strcmp(sub, "list")) {
        if ((rc = open_store(data, &st))) return rc;
        json_t *list;
        if ((rc = kiln_store_token_list(st, &list, &err))) {
            fprintf(stderr, "kiln token list: %s\n", err.msg);
            kiln_store_close(st);
            return kiln_err_exit_code(rc);
        }
        kiln_store_close(st);
        printf("%-5s %-8s %-14s %s\n", "ID", "ROLE", "HASH", "NAME");
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(list, "tokens"), i, t)
        {
            json_t *sc = json_object_get(t, "scope");
            char *scope_txt = json_is_object(sc) ? json_dumps(sc, JSON_COMPACT) : NULL;
            printf("%-5lld %-8s %-14s %s%s%s\n",
                   (long long)json_integer_value(json_object_get(t, "id")),
                   json_string_value(json_object_get(t, "role")),
                   json_string_value(json_object_get(t, "hash_prefix")),
                   json_string_value(json_object_get(t, "name")), scope_txt ? " scope=" : "",
                   scope_txt ? scope_txt : "");
            free(scope_txt);
        }
        json_decref(list);
        return KILN_EXIT_OK;
    }
    if (!strcmp(sub, "revoke")) {
        char *end = NULL;
        long long v = id ? strtoll(id, &end, 10) : 0;
        if (!id || !*id || *end || v <= 0) {
            fprintf(stderr, "kiln token revoke: --id must be a token id (see kiln token list)\n");
            return KILN_EXIT_USAGE;
        }
        if ((rc = open_store(data, &st))) return rc;
        rc = kiln_store_token_revoke(st, v, &err);
        kiln_store_close(st);
        if (rc) {
            fprintf(stderr, "kiln token revoke: %s\n", err.msg);
            return kiln_err_exit_code(rc);
        }
        fprintf(stderr, "kiln token: revoked token %lld\n", v);
        return KILN_EXIT_OK;
    }
    fprintf(stderr, "kiln token: unknown subcommand '%s'\n", sub);
    usage(stderr);
    return KILN_EXIT_USAGE;
}
