/* cmd_worker.c - `kiln worker`: detect this host, or run the worker agent.
 *
 *   kiln worker --detect [--json] [--config FILE] [overrides]
 *   kiln worker --server URL --token T [--config FILE] [--name N] [--cores N]
 *               [--ram SIZE] [--max-jobs N] [--work-dir DIR]
 *               [--limit-method auto|cgroup2|cgroup1|poll]
 *   kiln worker --step JOB:ATTEMPT --step-worker ID [--config FILE] ...
 *               (inside a Slurm job: run that one lease of the executor's
 *               worker ID, stream its log, report, exit; see slurm/)
 * The token may also come from KILN_TOKEN, the server from KILN_SERVER. */
#include "cli/commands.h"

#include "common/httpc.h"
#include "common/log.h"
#include "workers/agent.h"
#include "workers/config.h"
#include "workers/detect.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void worker_usage(FILE *f)
{
    fprintf(f,
            "usage: kiln worker --detect [--json] [--config FILE] [--cores N] [--ram SIZE]\n"
            "       kiln worker --server URL [--token T] [--config FILE] [--name N] [--cores N]\n"
            "                   [--ram SIZE] [--max-jobs N] [--work-dir DIR] [--source-dir DIR]\n"
            "                   [--selftest-dir DIR]\n"
            "                   [--limit-method auto|cgroup2|cgroup1|poll] [--ca-file FILE]\n"
            "                   [--log-level debug|info|warn|error]\n"
            "       kiln worker --step JOB:ATTEMPT --step-worker ID [same options]\n"
            "The token may come from KILN_TOKEN and the server from KILN_SERVER.\n");
}

static int set_str(char *dst, size_t n, const char *v, const char *what)
{
    if (strlen(v) >= n) {
        fprintf(stderr, "kiln worker: %s is too long\n", what);
        return -1;
    }
    snprintf(dst, n, "%s", v);
    return 0;
}

/* Flags are collected first and applied after the config file, so that
 * they win over it. */
struct flags {
    int detect, as_json;
    const char *config, *server, *token, *name, *cores, *ram, *maxjobs, *workdir, *method, *ca,
        *loglevel, *srcdir, *stdir, *step, *stepworker;
};

/* -1: go on; otherwise the exit code (help or a usage error, printed). */
static int parse_flags(int argc, char **argv, struct flags *f)
{
    enum {
        O_DETECT = 256,
        O_JSON,
        O_SERVER,
        O_TOKEN,
        O_CONFIG,
        O_NAME,
        O_CORES,
        O_RAM,
        O_MAXJOBS,
        O_WORKDIR,
        O_SRCDIR,
        O_STDIR,
        O_METHOD,
        O_CA,
        O_LOGLEVEL,
        O_STEP,
        O_STEPWORKER,
        O_HELP
    };
    static const struct option opts[] = {
        {"detect", no_argument, NULL, O_DETECT},
        {"json", no_argument, NULL, O_JSON},
        {"server", required_argument, NULL, O_SERVER},
        {"token", required_argument, NULL, O_TOKEN},
        {"config", required_argument, NULL, O_CONFIG},
        {"name", required_argument, NULL, O_NAME},
        {"cores", required_argument, NULL, O_CORES},
        {"ram", required_argument, NULL, O_RAM},
        {"max-jobs", required_argument, NULL, O_MAXJOBS},
        {"work-dir", required_argument, NULL, O_WORKDIR},
        {"source-dir", required_argument, NULL, O_SRCDIR},
        {"selftest-dir", required_argument, NULL, O_STDIR},
        {"limit-method", required_argument, NULL, O_METHOD},
        {"ca-file", required_argument, NULL, O_CA},
        {"log-level", required_argument, NULL, O_LOGLEVEL},
        {"step", required_argument, NULL, O_STEP},
        {"step-worker", required_argument, NULL, O_STEPWORKER},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    memset(f, 0, sizeof *f);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_DETECT:
            f->detect = 1;
            break;
        case O_JSON:
            f->as_json = 1;
            break;
        case O_SERVER:
            f->server = optarg;
            break;
        case O_TOKEN:
            f->token = optarg;
            break;
        case O_CONFIG:
            f->config = optarg;
            break;
        case O_NAME:
            f->name = optarg;
            break;
        case O_CORES:
            f->cores = optarg;
            break;
        case O_RAM:
            f->ram = optarg;
            break;
        case O_MAXJOBS:
            f->maxjobs = optarg;
            break;
        case O_SRCDIR:
            f->srcdir = optarg;
            break;
        case O_STDIR:
            f->stdir = optarg;
            break;
        case O_WORKDIR:
            f->workdir = optarg;
            break;
        case O_METHOD:
            f->method = optarg;
            break;
        case O_CA:
            f->ca = optarg;
            break;
        case O_LOGLEVEL:
            f->loglevel = optarg;
            break;
        case O_STEP:
            f->step = optarg;
            break;
        case O_STEPWORKER:
            f->stepworker = optarg;
            break;
        case O_HELP:
            worker_usage(stdout);
            return KILN_EXIT_OK;
        default:
            fprintf(stderr, "kiln worker: unknown or incomplete option '%s'\n", argv[optind - 1]);
            worker_usage(stderr);
            return KILN_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kiln worker: unexpected argument '%s'\n", argv[optind]);
        worker_usage(stderr);
        return KILN_EXIT_USAGE;
    }
    return -1;
}

/* A whole number in [lo, hi] from a flag, or -1 after saying what is wrong. */
static long flag_count(const char *v, long lo, long hi, const char *flag)
{
    char *e;
    long n = strtol(v, &e, 10);
    if (*e || e == v || n < lo || n > hi) {
        fprintf(stderr, "kiln worker: %s must be a positive whole number\n", flag);
        return -1;
    }
    return n;
}

/* The environment, then the flags, over what the config file set. */
static int apply_flags(struct kiln_worker_config *cfg, const struct flags *f)
{
    if (!cfg->server[0] && getenv("KILN_SERVER") && !f->detect)
        set_str(cfg->server, sizeof cfg->server, getenv("KILN_SERVER"), "KILN_SERVER");
    if (!cfg->token[0] && getenv("KILN_TOKEN"))
        set_str(cfg->token, sizeof cfg->token, getenv("KILN_TOKEN"), "KILN_TOKEN");
    if ((f->server && set_str(cfg->server, sizeof cfg->server, f->server, "--server")) ||
        (f->token && set_str(cfg->token, sizeof cfg->token, f->token, "--token")) ||
        (f->name && set_str(cfg->name, sizeof cfg->name, f->name, "--name")) ||
        (f->workdir && set_str(cfg->work_dir, sizeof cfg->work_dir, f->workdir, "--work-dir")) ||
        (f->srcdir &&
         set_str(cfg->source_dir, sizeof cfg->source_dir, f->srcdir, "--source-dir")) ||
        (f->stdir &&
         set_str(cfg->selftest_dir, sizeof cfg->selftest_dir, f->stdir, "--selftest-dir")) ||
        (f->ca && set_str(cfg->ca_file, sizeof cfg->ca_file, f->ca, "--ca-file")) ||
        (f->loglevel && set_str(cfg->log_level, sizeof cfg->log_level, f->loglevel, "--log-level")))
        return KILN_EXIT_USAGE;
    long n;
    if (f->cores) {
        if ((n = flag_count(f->cores, 1, 100000, "--cores")) < 0) return KILN_EXIT_USAGE;
        cfg->cores = (int)n;
    }
    if (f->maxjobs) {
        if ((n = flag_count(f->maxjobs, 1, 10000, "--max-jobs")) < 0) return KILN_EXIT_USAGE;
        cfg->max_jobs = (int)n;
    }
    if (f->ram) {
        uint64_t bytes;
        struct kiln_error err = {0};
        if (kiln_size_parse(f->ram, &bytes, &err) || bytes < (1u << 20)) {
            fprintf(stderr, "kiln worker: --ram: %s\n",
                    err.msg[0] ? err.msg : "must be at least 1M");
            return KILN_EXIT_USAGE;
        }
        cfg->ram_mb = (long)(bytes >> 20);
    }
    if (f->method && kiln_limit_method_parse(f->method, &cfg->limit_method)) {
        fprintf(stderr, "kiln worker: --limit-method must be auto, cgroup2, cgroup1 or poll\n");
        return KILN_EXIT_USAGE;
    }
    return KILN_EXIT_OK;
}

/* kiln worker --detect: what this host offers, as text or JSON. */
static int print_detected(const struct kiln_worker_config *cfg, const struct kiln_host *host,
                          int as_json)
{
    if (!as_json) {
        char desc[8192];
        if (kiln_host_describe(host, desc, sizeof desc)) return KILN_EXIT_INTERNAL;
        fputs(desc, stdout);
        return KILN_EXIT_OK;
    }
    json_t *j = kiln_host_to_json(host);
    if (!j || (cfg->labels && json_object_set(j, "labels", cfg->labels))) {
        json_decref(j);
        fprintf(stderr, "kiln worker: out of memory\n");
        return KILN_EXIT_INTERNAL;
    }
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s) return KILN_EXIT_INTERNAL;
    printf("%s\n", s);
    free(s);
    return KILN_EXIT_OK;
}

/* --step JOB:ATTEMPT --step-worker ID: fetch that lease from the server's
 * executor (it kept the lease when it submitted the Slurm job). A lease that
 * is no longer current (cancelled, requeued, already run) answers 409 and
 * the step exits without running anything: a stage never runs twice. */
#define STEP_NOTHING (-1) /* the lease is not current: exit 0 without running */

static int fetch_step_lease(struct kiln_worker_config *cfg, const char *step, const char *wid)
{
    long job = 0, attempt = 0, worker = 0;
    char tail;
    if (!step || !wid || sscanf(step, "%ld:%ld%c", &job, &attempt, &tail) != 2 || job <= 0 ||
        attempt <= 0 || sscanf(wid, "%ld%c", &worker, &tail) != 1 || worker <= 0) {
        fprintf(stderr, "kiln worker: --step JOB:ATTEMPT and --step-worker ID go together\n");
        return KILN_EXIT_USAGE;
    }
    struct kiln_httpc h;
    struct kiln_error err = {0};
    if (kiln_httpc_init(&h, cfg->server, cfg->token)) {
        fprintf(stderr, "kiln worker: out of memory\n");
        return KILN_EXIT_INTERNAL;
    }
    if (cfg->ca_file[0]) snprintf(h.ca_file, sizeof h.ca_file, "%s", cfg->ca_file);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/slurm/lease/%ld/%ld", job, attempt);
    long status = 0;
    json_t *o = NULL;
    /* The server may be restarting: keep asking for up to 5 minutes (the
     * allocation waits; the stage still runs at most once). */
    int rc = KILN_OK;
    for (unsigned waited_ms = 0, pause_ms = 250;; waited_ms += pause_ms, pause_ms *= 2) {
        if (pause_ms > 5000) pause_ms = 5000;
        json_decref(o);
        o = NULL;
        rc = kiln_httpc_json(&h, "GET", path, NULL, 0, &status, &o, &err);
        if (!rc && status < 500) break;
        if (waited_ms >= 300000) break;
        struct timespec ts = {.tv_sec = pause_ms / 1000,
                              .tv_nsec = (long)(pause_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    kiln_httpc_cleanup(&h);
    if (rc) {
        fprintf(stderr, "kiln worker: step %s: %s\n", step, err.msg);
        json_decref(o);
        return KILN_EXIT_UNREACHABLE;
    }
    json_t *jo = json_object_get(o, "job");
    if (status != 200 || !json_is_object(jo)) {
        fprintf(stderr, "kiln worker: step %s: not run: %s\n", step,
                kiln_httpc_error_message(o, status));
        json_decref(o);
        /* 409: not current (any more): nothing to run, and that is fine */
        return status == 409 ? STEP_NOTHING : KILN_EXIT_FAIL;
    }
    /* From here the step acts as the pool's worker, with its credential. */
    const char *cred = json_string_value(json_object_get(o, "credential"));
    if (!cred || strlen(cred) >= sizeof cfg->token) {
        fprintf(stderr, "kiln worker: step %s: the server sent no credential\n", step);
        json_decref(o);
        return KILN_EXIT_FAIL;
    }
    snprintf(cfg->token, sizeof cfg->token, "%s", cred);
    cfg->step_lease = json_incref(jo);
    cfg->step_worker_id = worker;
    json_decref(o);
    return KILN_EXIT_OK;
}

int cmd_worker(int argc, char **argv)
{
    struct flags f;
    int rc = parse_flags(argc, argv, &f);
    if (rc >= 0) return rc;
    struct kiln_worker_config cfg;
    kiln_worker_config_defaults(&cfg);
    struct kiln_error err = {0};
    rc = KILN_EXIT_OK;
    if (f.config && kiln_worker_config_load(&cfg, f.config, &err)) {
        fprintf(stderr, "kiln worker: %s\n", err.msg);
        rc = KILN_EXIT_USAGE;
        goto out;
    }
    if ((rc = apply_flags(&cfg, &f))) goto out;
    enum kiln_log_level lvl;
    if (kiln_log_level_parse(cfg.log_level, &lvl)) {
        fprintf(stderr, "kiln worker: log level must be debug, info, warn or error\n");
        rc = KILN_EXIT_USAGE;
        goto out;
    }

    struct kiln_host host;
    struct kiln_detect_opts dopts = {0};
    dopts.skip_gpus = cfg.gpus_set; /* the config decides: no need to probe */
    if (kiln_detect_host(&host, &dopts, &err)) {
        fprintf(stderr, "kiln worker: detection failed: %s\n", err.msg);
        rc = KILN_EXIT_INTERNAL;
        goto out;
    }
    kiln_worker_config_apply(&cfg, &host);
    if (f.detect) {
        rc = print_detected(&cfg, &host, f.as_json);
        goto out;
    }

    if (!cfg.server[0]) {
        fprintf(stderr, "kiln worker: no server given (--server URL, KILN_SERVER or the config "
                        "file), or use --detect\n");
        rc = KILN_EXIT_USAGE;
        goto out;
    }
    if (!cfg.token[0]) {
        fprintf(stderr, "kiln worker: no worker token given (--token, KILN_TOKEN or token_file "
                        "in the config)\n");
        rc = KILN_EXIT_USAGE;
        goto out;
    }
    struct kiln_logger lg = {.min = lvl, .component = "worker"};
    if ((f.step || f.stepworker) && (rc = fetch_step_lease(&cfg, f.step, f.stepworker))) {
        if (rc == STEP_NOTHING) rc = KILN_EXIT_OK;
        goto out; /* never fall through to a normal agent */
    }
    rc = kiln_agent_run(&cfg, &host, &lg, &err);
    if (rc) {
        fprintf(stderr, "kiln worker: %s\n", err.msg);
        rc = kiln_err_exit_code(rc);
    }
out:
    kiln_worker_config_free(&cfg);
    return rc;
}
