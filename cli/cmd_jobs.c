/* cmd_jobs.c - client commands over the HTTP API: submit, queue, show, logs,
 * cancel, retry, workers, drain. Tables for people, --json for scripts. */
#include "cli/cli.h"
#include "cli/commands.h"
#include "common/buf.h"
#include "common/fsutil.h"
#include "common/units.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMMON_OPTS                                                                                \
    "  --server URL   server (default $KILN_SERVER or http://127.0.0.1:8080)\n"                    \
    "  --token T      API token (default $KILN_TOKEN)\n"                                           \
    "  --json         print JSON for scripts\n"

static int want_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

static int parse_id(const char *cmd, const char *s, long long *id)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (!end || *end || v <= 0) {
        fprintf(stderr, "kiln %s: '%s' is not a job id (a positive number)\n", cmd, s);
        return KILN_EXIT_USAGE;
    }
    *id = v;
    return KILN_EXIT_OK;
}

static void print_job_row(json_t *j)
{
    char age[16];
    json_t *res = json_object_get(j, "resources");
    const char *why = kiln_cli_str(j, "wait_reason", NULL);
    if (!why) why = kiln_cli_str(j, "reason", "");
    kiln_cli_age(json_real_value(json_object_get(j, "created_at")) +
                     (double)json_integer_value(json_object_get(j, "created_at")),
                 age, sizeof age);
    printf("%-6lld %-11s %-46.46s %-5lld %-12.12s %-5s %s\n",
           (long long)json_integer_value(json_object_get(j, "id")), kiln_cli_str(j, "state", "?"),
           kiln_cli_str(j, "name", ""),
           (long long)json_integer_value(json_object_get(res, "cores")),
           kiln_cli_str(j, "worker", "-"), age, why);
}

static void print_job_header(void)
{
    printf("%-6s %-11s %-46s %-5s %-12s %-5s %s\n", "ID", "STATE", "NAME", "CORES", "WORKER", "AGE",
           "WHY");
}

static int add_env(json_t *env, const char *kv, const char *cmd)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        fprintf(stderr, "kiln %s: --env wants NAME=VALUE, got '%s'\n", cmd, kv);
        return KILN_EXIT_USAGE;
    }
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(eq - kv), kv);
    json_object_set_new(env, name, json_string(eq + 1));
    return KILN_EXIT_OK;
}

/* A job name from its command: the characters names allow, others as '-'
 * ("make -j4 all" -> "make-j4-all"), at most outlen-1 long. */
static void default_name(const char *cmd, char *out, size_t outlen)
{
    size_t n = 0;
    for (const char *p = cmd; *p && n + 1 < outlen; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '+' || c == '-';
        if (!ok) c = '-';
        if (c == '-' && (n == 0 || out[n - 1] == '-')) continue;
        out[n++] = c;
    }
    while (n && out[n - 1] == '-')
        n--;
    out[n] = '\0';
    if (!n || !((out[0] >= 'a' && out[0] <= 'z') || (out[0] >= 'A' && out[0] <= 'Z') ||
                (out[0] >= '0' && out[0] <= '9')))
        snprintf(out, outlen, "job");
}

/* --where sm=90,isa=avx2 into body.where. */
static int parse_where(const char *v, json_t *body)
{
    int rc = KILN_EXIT_OK;
    json_t *w = json_object();
    char *copy = strdup(v), *save = NULL;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            fprintf(stderr, "kiln submit: --where wants key=value[,key=value], got '%s'\n", tok);
            rc = KILN_EXIT_USAGE;
            break;
        }
        *eq = '\0';
        json_object_set_new(w, tok, json_string(eq + 1));
    }
    free(copy);
    json_object_set_new(body, "where", w);
    return rc;
}

/* One `--flag value` of kiln submit into the request body. */
static int submit_option(const char *a, const char *v, json_t *body, json_t *env,
                         const char **recipe)
{
    if (!strcmp(a, "--name"))
        json_object_set_new(body, "name", json_string(v));
    else if (!strcmp(a, "--cores"))
        json_object_set_new(body, "cores", json_integer(atoll(v)));
    else if (!strcmp(a, "--priority"))
        json_object_set_new(body, "priority", json_integer(atoll(v)));
    else if (!strcmp(a, "--timeout"))
        json_object_set_new(body, "timeout_s", json_integer(atoll(v)));
    else if (!strcmp(a, "--platform"))
        json_object_set_new(body, "platform", json_string(v));
    else if (!strcmp(a, "--worker"))
        json_object_set_new(body, "worker", json_string(v));
    else if (!strcmp(a, "--branch"))
        json_object_set_new(body, "branch", json_string(v));
    else if (!strcmp(a, "--recipe"))
        *recipe = v;
    else if (!strcmp(a, "--env"))
        return add_env(env, v, "submit");
    else if (!strcmp(a, "--where"))
        return parse_where(v, body);
    else if (!strcmp(a, "--ram")) {
        uint64_t bytes;
        if (kiln_parse_size(v, &bytes)) {
            fprintf(stderr, "kiln submit: --ram '%s' is not a size like 4G or 512M\n", v);
            return KILN_EXIT_USAGE;
        }
        json_object_set_new(body, "ram_mb", json_integer((json_int_t)(bytes >> 20)));
    } else {
        fprintf(stderr, "kiln submit: unknown option %s (see --help)\n", a);
        return KILN_EXIT_USAGE;
    }
    return KILN_EXIT_OK;
}

/* What the job runs: a recipe (a file is sent inline, a bare name refers to
 * the server's recipes) or the command. */
static int what_to_run(json_t *body, const char *recipe, const struct kiln_buf *command)
{
    if (recipe && (strchr(recipe, '/') || strstr(recipe, ".yaml") || strstr(recipe, ".yml"))) {
        struct kiln_buf text = {0};
        int frc = kiln_read_file(recipe, 16u << 20, &text);
        if (frc) {
            fprintf(stderr, "kiln submit: cannot read recipe %s: %s\n", recipe, kiln_strerror(frc));
            kiln_buf_free(&text);
            return KILN_EXIT_USAGE;
        }
        json_object_set_new(body, "recipe_yaml", json_string(text.data));
        json_object_set_new(body, "recipe_file", json_string(recipe));
        kiln_buf_free(&text);
        return KILN_EXIT_OK;
    }
    if (recipe) {
        json_object_set_new(body, "recipe", json_string(recipe));
        return KILN_EXIT_OK;
    }
    if (!command->len) {
        fprintf(stderr,
                "kiln submit: nothing to run: give -- COMMAND... or --recipe (see --help)\n");
        return KILN_EXIT_USAGE;
    }
    json_object_set_new(body, "command", json_string(command->data));
    if (!json_object_get(body, "name")) {
        char name[65];
        default_name(command->data, name, sizeof name);
        json_object_set_new(body, "name", json_string(name));
    }
    return KILN_EXIT_OK;
}

int cmd_submit(int argc, char **argv)
{
    if (want_help(argc, argv)) {
        printf("usage: kiln submit [options] -- COMMAND...         an ad-hoc job\n"
               "       kiln submit --recipe NAME|FILE [--branch B] [--where sm=90,isa=avx2]\n"
               "options:\n"
               "  --name N       job name (default: the command)\n"
               "  --cores N      cores (NIX_BUILD_CORES/MAX_JOBS; default 1)\n"
               "  --ram SIZE     RAM limit, e.g. 4G (default 1G)\n"
               "  --platform P   x86_64-linux (default) or aarch64-linux\n"
               "  --worker W     run only on worker W (a Slurm pool's is slurm-POOL)\n"
               "  --priority N   higher runs first (default 0)\n"
               "  --timeout SEC  kill after SEC seconds\n"
               "  --env K=V      environment (repeatable)\n"
               "  --recipe R     a recipe name known to the server, or a YAML file sent "
               "inline\n" COMMON_OPTS "prints the created jobs; exit 0 when accepted\n");
        return KILN_EXIT_OK;
    }
    struct kiln_cli cli;
    int rc = kiln_cli_init(&cli, &argc, argv);
    if (rc) return rc;
    json_t *body = json_object(), *env = json_object();
    if (!body || !env) {
        json_decref(body);
        json_decref(env);
        kiln_cli_cleanup(&cli);
        return KILN_EXIT_INTERNAL;
    }
    struct kiln_buf command = {0};
    const char *recipe = NULL;
    int i = 1;
    while (i < argc && rc == KILN_EXIT_OK) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (a[0] != '-') break;
        if (i + 1 >= argc) {
            fprintf(stderr, "kiln submit: %s needs a value (see --help)\n", a);
            rc = KILN_EXIT_USAGE;
            break;
        }
        rc = submit_option(a, argv[i + 1], body, env, &recipe);
        i += 2; /* the option and its value */
    }
    for (; i < argc && rc == KILN_EXIT_OK; i++) {
        if (command.len) kiln_buf_puts(&command, " ");
        kiln_buf_puts(&command, argv[i]);
    }
    if (rc == KILN_EXIT_OK) rc = what_to_run(body, recipe, &command);
    if (json_object_size(env)) json_object_set(body, "env", env);
    json_decref(env);
    kiln_buf_free(&command);
    json_t *resp = NULL;
    if (rc == KILN_EXIT_OK) rc = kiln_cli_call(&cli, "POST", "/api/v1/jobs", body, &resp);
    json_decref(body);
    if (rc == KILN_EXIT_OK && cli.json) {
        kiln_cli_print_json(resp);
    } else if (rc == KILN_EXIT_OK) {
        json_t *jobs = json_object_get(resp, "jobs");
        size_t k;
        json_t *j;
        print_job_header();
        json_array_foreach(jobs, k, j) print_job_row(j);
        fprintf(stderr, "%zu job(s) submitted\n", json_array_size(jobs));
    }
    json_decref(resp);
    kiln_cli_cleanup(&cli);
    return rc;
}

int cmd_queue(int argc, char **argv)
{
    if (want_help(argc, argv)) {
        printf("usage: kiln queue [--state S] [--recipe R] [--branch B] [--name SUBSTR] [--limit "
               "N]\n" COMMON_OPTS
               "lists jobs, newest first, with the reason each queued job waits\n");
        return KILN_EXIT_OK;
    }
    struct kiln_cli cli;
    int rc = kiln_cli_init(&cli, &argc, argv);
    if (rc) return rc;
    struct kiln_buf path = {0};
    kiln_buf_puts(&path, "/api/v1/jobs?");
    for (int i = 1; i < argc; i++) {
        static const char *keys[] = {"--state", "--recipe", "--branch", "--name", "--limit", "--q"};
        int known = 0;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            if (strcmp(argv[i], keys[k])) continue;
            known = 1;
            if (i + 1 >= argc) {
                fprintf(stderr, "kiln queue: %s needs a value\n", argv[i]);
                rc = KILN_EXIT_USAGE;
                break;
            }
            char *esc = curl_easy_escape(NULL, argv[i + 1], 0);
            kiln_buf_printf(&path, "%s=%s&", keys[k] + 2, esc ? esc : "");
            curl_free(esc);
            i++;
        }
        if (!known && rc == KILN_EXIT_OK) {
            fprintf(stderr, "kiln queue: unknown option %s (see --help)\n", argv[i]);
            rc = KILN_EXIT_USAGE;
        }
        if (rc) break;
    }
    json_t *resp = NULL;
    if (rc == KILN_EXIT_OK) rc = kiln_cli_call(&cli, "GET", path.data, NULL, &resp);
    if (rc == KILN_EXIT_OK) {
        if (cli.json) {
            kiln_cli_print_json(resp);
        } else {
            json_t *counts = json_object_get(resp, "counts");
            const char *k;
            json_t *v;
            int first = 1;
            json_object_foreach(counts, k, v)
            {
                printf("%s%s %lld", first ? "" : ", ", k, (long long)json_integer_value(v));
                first = 0;
            }
            if (!first) printf("\n\n");
            print_job_header();
            size_t idx;
            json_t *j;
            json_array_foreach(json_object_get(resp, "jobs"), idx, j) print_job_row(j);
        }
    }
    json_decref(resp);
    kiln_buf_free(&path);
    kiln_cli_cleanup(&cli);
    return rc;
}

static void show_kv(const char *k, json_t *v)
{
    if (!v || json_is_null(v)) return;
    if (json_is_string(v)) {
        printf("%-14s %s\n", k, json_string_value(v));
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%-14s %s\n", k, s ? s : "?");
        free(s);
    }
}

int cmd_show(int argc, char **argv)
{
    if (want_help(argc, argv) || argc < 2) {
        printf("usage: kiln show JOB_ID\n" COMMON_OPTS);
        return argc < 2 ? KILN_EXIT_USAGE : KILN_EXIT_OK;
    }
    struct kiln_cli cli;
    int rc = kiln_cli_init(&cli, &argc, argv);
    if (rc) return rc;
    long long id = 0;
    if (argc < 2) rc = KILN_EXIT_USAGE;
    if (!rc) rc = parse_id("show", argv[1], &id);
    json_t *j = NULL;
    char path[64];
    snprintf(path, sizeof path, "/api/v1/jobs/%lld", id);
    if (!rc) rc = kiln_cli_call(&cli, "GET", path, NULL, &j);
    if (!rc) {
        if (cli.json) {
            kiln_cli_print_json(j);
        } else {
            static const char *keys[] = {
                "id",          "name",    "state",     "stage",    "failed_stage", "reason",
                "wait_reason", "recipe",  "branch",    "commit",   "priority",     "attempt",
                "worker",      "command", "resources", "env",      "depends",      "exit_code",
                "peak_ram_mb", "cpu_s",   "selftest",  "artifact", "created_at",   "started_at",
                "finished_at", "log_size"};
            for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
                show_kv(keys[k], json_object_get(j, keys[k]));
        }
    }
    json_decref(j);
    kiln_cli_cleanup(&cli);
    return rc;
}

static int write_stdout(const char *p, size_t n, void *arg)
{
    (void)arg;
    if (fwrite(p, 1, n, stdout) != n) return 1;
    fflush(stdout);
    return 0;
}

int cmd_logs(int argc, char **argv)
{
    if (want_help(argc, argv) || argc < 2) {
        printf("usage: kiln logs JOB_ID [-f|--follow] [--offset N]\n" COMMON_OPTS
               "-f keeps printing new output until the job finishes\n");
        return argc < 2 ? KILN_EXIT_USAGE : KILN_EXIT_OK;
    }
    struct kiln_cli cli;
    int rc = kiln_cli_init(&cli, &argc, argv);
    if (rc) return rc;
    long long id = 0, offset = 0;
    int follow = 0;
    const char *idarg = NULL;
    for (int i = 1; i < argc && !rc; i++) {
        if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--follow"))
            follow = 1;
        else if (!strcmp(argv[i], "--offset") && i + 1 < argc)
            offset = atoll(argv[++i]);
        else if (argv[i][0] != '-' && !idarg)
            idarg = argv[i];
        else {
            fprintf(stderr, "kiln logs: unexpected argument %s (see --help)\n", argv[i]);
            rc = KILN_EXIT_USAGE;
        }
    }
    if (!rc && !idarg) {
        fprintf(stderr, "kiln logs: which job? (kiln logs JOB_ID)\n");
        rc = KILN_EXIT_USAGE;
    }
    if (!rc) rc = parse_id("logs", idarg, &id);
    if (!rc) {
        char path[128];
        snprintf(path, sizeof path, "/api/v1/jobs/%lld/log?offset=%lld%s", id, offset,
                 follow ? "&follow=1" : "");
        long status = 0;
        struct kiln_error err = {0};
        int hrc = kiln_httpc_stream(&cli.http, path, write_stdout, NULL, &status, &err);
        if (hrc) {
            fprintf(stderr, "kiln logs: %s\n", err.msg);
            rc = KILN_EXIT_UNREACHABLE;
        } else if (status >= 400) {
            fprintf(stderr, "kiln logs: job %lld: HTTP %ld\n", id, status);
            rc = kiln_cli_exit_for_status(status, NULL);
        }
    }
    kiln_cli_cleanup(&cli);
    return rc;
}

static int job_action(int argc, char **argv, const char *action)
{
    if (want_help(argc, argv) || argc < 2) {
        printf("usage: kiln %s JOB_ID...\n" COMMON_OPTS, action);
        return argc < 2 ? KILN_EXIT_USAGE : KILN_EXIT_OK;
    }
    struct kiln_cli cli;
    int rc = kiln_cli_init(&cli, &argc, argv);
    if (rc) return rc;
    for (int i = 1; i < argc; i++) {
        long long id;
        int r = parse_id(action, argv[i], &id);
        json_t *j = NULL;
        if (!r) {
            char path[96];
            snprintf(path, sizeof path, "/api/v1/jobs/%lld/%s", id, action);
            json_t *body = json_object(); /* kiln_cli_call borrows it */
            r = body ? kiln_cli_call(&cli, "POST", path, body, &j) : KILN_EXIT_INTERNAL;
            json_decref(body);
        }
        if (!r) {
            if (cli.json)
                kiln_cli_print_json(j);
            else
                printf("job %lld: %s\n", id, kiln_cli_str(j, "state", "ok"));
        }
        json_decref(j);
        if (r && !rc) rc = r;
    }
    kiln_cli_cleanup(&cli);
    return rc;
}

int cmd_cancel(int argc, char **argv)
{
    return job_action(argc, argv, "cancel");
}

int cmd_retry(int argc, char **argv)
{
    return job_action(argc, argv, "retry");
}

int cmd_workers(int argc, char **argv)
{
    if (want_help(argc, argv)) {
        printf("usage: kiln workers\n" COMMON_OPTS);
        return KILN_EXIT_OK;
    }
    struct kiln_cli cli;
    int rc = kiln_cli_init(&cli, &argc, argv);
    if (rc) return rc;
    json_t *resp = NULL;
    rc = kiln_cli_call(&cli, "GET", "/api/v1/workers", NULL, &resp);
    if (!rc && cli.json) kiln_cli_print_json(resp);
    if (!rc && !cli.json) {
        printf("%-4s %-16s %-9s %-14s %-7s %-19s %-9s %s\n", "ID", "NAME", "STATE", "PLATFORM",
               "CORES", "RAM", "SEEN", "GPUS");
        size_t i;
        json_t *w;
        json_array_foreach(json_object_get(resp, "workers"), i, w)
        {
            char used[16], total[16], cores[16], ram[40], seen[16], gpus[128] = "";
            kiln_format_size((uint64_t)json_integer_value(json_object_get(w, "ram_used_mb")) << 20,
                             used, sizeof used);
            kiln_format_size((uint64_t)json_integer_value(json_object_get(w, "ram_mb")) << 20,
                             total, sizeof total);
            snprintf(cores, sizeof cores, "%lld/%lld",
                     (long long)json_integer_value(json_object_get(w, "cores_used")),
                     (long long)json_integer_value(json_object_get(w, "cores")));
            snprintf(ram, sizeof ram, "%s/%s", used, total);
            json_t *ls = json_object_get(w, "last_seen");
            kiln_cli_age(json_is_real(ls) ? json_real_value(ls) : (double)json_integer_value(ls),
                         seen, sizeof seen);
            size_t g;
            json_t *gpu;
            json_array_foreach(json_object_get(w, "gpus"), g, gpu)
            {
                size_t l = strlen(gpus);
                snprintf(gpus + l, sizeof gpus - l, "%ssm_%s", l ? "," : "",
                         kiln_cli_str(gpu, "sm", "?"));
            }
            printf("%-4lld %-16.16s %-9s %-14s %-7s %-19s %-9s %s\n",
                   (long long)json_integer_value(json_object_get(w, "id")),
                   kiln_cli_str(w, "name", ""), kiln_cli_str(w, "state", "?"),
                   kiln_cli_str(w, "platform", ""), cores, ram, seen, gpus[0] ? gpus : "-");
        }
    }
    json_decref(resp);
    kiln_cli_cleanup(&cli);
    return rc;
}

int cmd_drain(int argc, char **argv)
{
    if (want_help(argc, argv) || argc < 2) {
        printf("usage: kiln drain WORKER_ID [--undo]\n" COMMON_OPTS
               "the worker finishes what it runs and takes no new work (--undo resumes)\n");
        return argc < 2 ? KILN_EXIT_USAGE : KILN_EXIT_OK;
    }
    struct kiln_cli cli;
    int rc = kiln_cli_init(&cli, &argc, argv);
    if (rc) return rc;
    int undo = 0;
    const char *id = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--undo"))
            undo = 1;
        else
            id = argv[i];
    }
    long long wid = 0;
    if (!id) {
        fprintf(stderr, "kiln drain: which worker? (kiln drain WORKER_ID)\n");
        rc = KILN_EXIT_USAGE;
    }
    if (!rc) rc = parse_id("drain", id, &wid);
    json_t *resp = NULL, *body = json_pack("{s:b}", "drain", !undo);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/workers/%lld/drain", wid);
    if (!rc) rc = kiln_cli_call(&cli, "POST", path, body, &resp);
    if (!rc) {
        if (cli.json)
            kiln_cli_print_json(resp);
        else
            printf("worker %lld: %s\n", wid, undo ? "accepting work" : "draining");
    }
    json_decref(body);
    json_decref(resp);
    kiln_cli_cleanup(&cli);
    return rc;
}
