/* cmd_recipe.c - `kiln recipe expand|check|diff`: recipes from the command
 * line, without a server (recipes/recipe.h does the work). */
#include "cli/commands.h"
#include "recipes/recipe.h"

#include <stdio.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr,
            "usage: kiln recipe expand FILE [--branch B] [--where sm=90,isa=avx512] [--json]\n"
            "       kiln recipe check FILE...\n"
            "       kiln recipe diff OLD NEW [--branch B] [--json]\n");
    return KILN_EXIT_USAGE;
}

struct opts {
    const char *files[2];
    int nfiles;
    const char *branch;
    const char *where;
    int json;
};

static int parse_opts(int argc, char **argv, int maxfiles, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--branch") || !strcmp(a, "--where")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "kiln recipe: %s needs a value\n", a);
                return -1;
            }
            if (a[2] == 'b')
                o->branch = argv[++i];
            else
                o->where = argv[++i];
        } else if (!strncmp(a, "--branch=", 9)) {
            o->branch = a + 9;
        } else if (!strncmp(a, "--where=", 8)) {
            o->where = a + 8;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "kiln recipe: unknown option %s\n", a);
            return -1;
        } else if (o->nfiles < maxfiles) {
            o->files[o->nfiles++] = a;
        } else {
            fprintf(stderr, "kiln recipe: too many arguments\n");
            return -1;
        }
    }
    return 0;
}

static const char *sattr(json_t *v, const char *k)
{
    const char *s = json_string_value(json_object_get(json_object_get(v, "attrs"), k));
    return s ? s : "-";
}

static void print_table(json_t *arr)
{
    size_t i, w = 4;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        size_t l = strlen(json_string_value(json_object_get(v, "name")));
        if (l > w) w = l;
    }
    printf("%-*s  %-13s  %-5s  %-10s  %-5s  %6s  %8s  %s\n", (int)w, "NAME", "PLATFORM", "SM",
           "ISA", "CUDA", "CORES", "RAM_MB", "DEPENDS");
    json_array_foreach(arr, i, v)
    {
        json_t *res = json_object_get(v, "resources");
        json_t *deps = json_object_get(v, "depends");
        printf("%-*s  %-13s  %-5s  %-10s  %-5s  %6lld  %8lld  %s\n", (int)w,
               json_string_value(json_object_get(v, "name")),
               json_string_value(json_object_get(v, "platform")), sattr(v, "sm"), sattr(v, "isa"),
               sattr(v, "cuda"), (long long)json_integer_value(json_object_get(res, "cores")),
               (long long)json_integer_value(json_object_get(res, "ram_mb")),
               json_array_size(deps) ? json_string_value(json_array_get(deps, 0)) : "-");
    }
    printf("%zu variants\n", json_array_size(arr));
}

static int do_expand(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, 1, &o) || o.nfiles != 1) return usage();
    json_t *arr = NULL;
    struct kiln_error err = {0};
    int rc = kiln_recipe_expand_file(o.files[0], o.branch, o.where, &arr, &err);
    if (rc) {
        fprintf(stderr, "%s\n", err.msg);
        return kiln_err_exit_code(rc);
    }
    if (o.json) {
        if (json_dumpf(arr, stdout, JSON_INDENT(2)) == 0) fputc('\n', stdout);
    } else {
        print_table(arr);
    }
    json_decref(arr);
    return fflush(stdout) == 0 ? KILN_EXIT_OK : KILN_EXIT_INTERNAL;
}

static int do_check(int argc, char **argv)
{
    if (argc < 3) return usage();
    int bad = 0;
    for (int i = 2; i < argc; i++) {
        if (argv[i][0] == '-') return usage();
        json_t *probs = NULL;
        struct kiln_error err = {0};
        int rc = kiln_recipe_check_file(argv[i], &probs, &err);
        if (rc == 0) {
            printf("%s: ok\n", argv[i]);
        } else {
            size_t j;
            json_t *p;
            json_array_foreach(probs, j, p)
            {
                fprintf(stderr, "%s\n", json_string_value(json_object_get(p, "text")));
            }
            if (json_array_size(probs) == 0) fprintf(stderr, "%s\n", err.msg);
            fprintf(stderr, "%s: %zu problem%s\n", argv[i], json_array_size(probs),
                    json_array_size(probs) == 1 ? "" : "s");
            bad = 1;
        }
        json_decref(probs);
    }
    return bad ? KILN_EXIT_FAIL : KILN_EXIT_OK;
}

static int do_diff(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, 2, &o) || o.nfiles != 2) return usage();
    json_t *a = NULL, *b = NULL, *d = NULL;
    struct kiln_error err = {0};
    int rc = kiln_recipe_expand_file(o.files[0], o.branch, o.where, &a, &err);
    if (rc == 0) rc = kiln_recipe_expand_file(o.files[1], o.branch, o.where, &b, &err);
    if (rc == 0) rc = kiln_recipe_diff(a, b, &d, &err);
    if (rc) {
        fprintf(stderr, "%s\n", err.msg);
        json_decref(a);
        json_decref(b);
        return kiln_err_exit_code(rc);
    }
    if (o.json) {
        if (json_dumpf(d, stdout, JSON_INDENT(2)) == 0) fputc('\n', stdout);
    } else {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(d, "added"), i, v)
        {
            printf("+ %s\n", json_string_value(v));
        }
        json_array_foreach(json_object_get(d, "removed"), i, v)
        {
            printf("- %s\n", json_string_value(v));
        }
        json_array_foreach(json_object_get(d, "changed"), i, v)
        {
            printf("~ %s:", json_string_value(json_object_get(v, "name")));
            size_t j;
            json_t *f;
            json_array_foreach(json_object_get(v, "fields"), j, f)
            {
                printf(" %s", json_string_value(f));
            }
            printf("\n");
        }
        printf("%zu added, %zu removed, %zu changed, %lld unchanged\n",
               json_array_size(json_object_get(d, "added")),
               json_array_size(json_object_get(d, "removed")),
               json_array_size(json_object_get(d, "changed")),
               (long long)json_integer_value(json_object_get(d, "unchanged")));
    }
    json_decref(a);
    json_decref(b);
    json_decref(d);
    return fflush(stdout) == 0 ? KILN_EXIT_OK : KILN_EXIT_INTERNAL;
}

int cmd_recipe(int argc, char **argv)
{
    if (argc < 2) return usage();
    if (!strcmp(argv[1], "expand")) return do_expand(argc, argv);
    if (!strcmp(argv[1], "check")) return do_check(argc, argv);
    if (!strcmp(argv[1], "diff")) return do_diff(argc, argv);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage();
        return KILN_EXIT_OK;
    }
    fprintf(stderr, "kiln recipe: unknown subcommand '%s'\n", argv[1]);
    return usage();
}
