/* cmd_serve.c - `kiln serve`: parse flags, load the config, run the service. */
#include "cli/commands.h"
#include "catalog/catalog_serve.h"
#include "forge/forge_serve.h"
#include "git/git_serve.h"
#include "slurm/slurm_serve.h"
#include "server/serve.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: kiln serve [--listen ADDR:PORT] [--data DIR] [--config FILE]\n"
               "                  [--recipes DIR] [--web DIR] [--allow-anonymous-read]\n"
               "                  [--tls-cert PEM --tls-key PEM] [--log-level LEVEL]\n"
               "                  [--trace FILE]   (placement events, for kiln sim --replay)\n"
               "  defaults: --listen 127.0.0.1:8080 --data ./var --web ./web\n");
}

static int copy(char *dst, size_t n, const char *src, const char *flag)
{
    if (strlen(src) >= n) {
        fprintf(stderr, "kiln serve: %s value is too long\n", flag);
        return -1;
    }
    snprintf(dst, n, "%s", src);
    return 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int cmd_serve(int argc, char **argv)
{
    /* The features kiln serve runs with; the service knows none by name. */
    static const struct kiln_serve_feature *const features[] = {
        &kiln_catalog_feature, &kiln_git_feature, &kiln_slurm_feature, &kiln_forge_feature, NULL};
    struct kiln_serve_config cfg;
    kiln_serve_config_defaults(&cfg);
    cfg.features = features;
    const char *config = NULL;
    /* First pass: the config file, so flags override it. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return KILN_EXIT_OK;
        }
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[i + 1];
    }
    struct kiln_error err = {0};
    if (config && kiln_serve_config_load(&cfg, config, &err)) {
        fprintf(stderr, "kiln serve: %s\n", err.msg);
        kiln_serve_config_free(&cfg);
        return KILN_EXIT_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1, bad = 0;
        if (!strcmp(a, "--allow-anonymous-read")) {
            cfg.allow_anonymous_read = 1;
            takes = 0;
        } else if (!v) {
            fprintf(stderr, "kiln serve: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            kiln_serve_config_free(&cfg);
            return KILN_EXIT_USAGE;
        } else if (!strcmp(a, "--config"))
            ;
        else if (!strcmp(a, "--listen"))
            bad = copy(cfg.listen, sizeof cfg.listen, v, a);
        else if (!strcmp(a, "--data"))
            bad = copy(cfg.data_dir, sizeof cfg.data_dir, v, a);
        else if (!strcmp(a, "--recipes"))
            bad = copy(cfg.recipes_dir, sizeof cfg.recipes_dir, v, a);
        else if (!strcmp(a, "--web"))
            bad = copy(cfg.web_dir, sizeof cfg.web_dir, v, a);
        else if (!strcmp(a, "--tls-cert"))
            bad = copy(cfg.tls_cert, sizeof cfg.tls_cert, v, a);
        else if (!strcmp(a, "--trace"))
            bad = copy(cfg.trace_path, sizeof cfg.trace_path, v, a);
        else if (!strcmp(a, "--tls-key"))
            bad = copy(cfg.tls_key, sizeof cfg.tls_key, v, a);
        else if (!strcmp(a, "--log-level")) {
            if (kiln_log_level_parse(v, &cfg.log_level)) {
                fprintf(stderr, "kiln serve: --log-level must be debug, info, warn or error\n");
                bad = -1;
            }
        } else {
            fprintf(stderr, "kiln serve: unknown option %s\n", a);
            usage(stderr);
            kiln_serve_config_free(&cfg);
            return KILN_EXIT_USAGE;
        }
        if (bad) {
            kiln_serve_config_free(&cfg);
            return KILN_EXIT_USAGE;
        }
        i += takes;
    }
    if (!!cfg.tls_cert[0] != !!cfg.tls_key[0]) {
        fprintf(stderr, "kiln serve: --tls-cert and --tls-key go together\n");
        kiln_serve_config_free(&cfg);
        return KILN_EXIT_USAGE;
    }
    if (!cfg.web_dir[0]) {
        /* The page lives in web/ of the source tree the binary was built in
         * (build/kiln -> ../web), else ./web. */
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = '\0';
            char *slash = strrchr(exe, '/');
            if (slash) *slash = '\0';
            slash = strrchr(exe, '/');
            if (slash) *slash = '\0';
            char web[PATH_MAX + 8];
            snprintf(web, sizeof web, "%s/web", exe);
            size_t wl = strlen(web);
            if (is_dir(web) && wl < sizeof cfg.web_dir) memcpy(cfg.web_dir, web, wl + 1);
        }
        if (!cfg.web_dir[0] && is_dir("web")) snprintf(cfg.web_dir, sizeof cfg.web_dir, "web");
    }
    if (!cfg.recipes_dir[0] && is_dir("recipes"))
        snprintf(cfg.recipes_dir, sizeof cfg.recipes_dir, "recipes");
    /* A client that disconnects mid-write must not kill the service. */
    signal(SIGPIPE, SIG_IGN);
    int rc = kiln_serve_run(&cfg, &err);
    kiln_serve_config_free(&cfg);
    if (rc) {
        fprintf(stderr, "kiln serve: %s\n", err.msg);
        return err.code == KILN_EINVAL ? KILN_EXIT_USAGE : KILN_EXIT_FAIL;
    }
    return KILN_EXIT_OK;
}
