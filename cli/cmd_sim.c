/* cmd_sim.c - `kiln sim`: how long will these variants take on my hosts?
 *
 *   kiln sim --farm FARM.yaml RECIPE... [--deps RECIPE]... [--variants FILE.json]...
 *            [--branch B] [--where sm=90] [--svg OUT.svg] [--policy kiln|fifo]
 *            [--add HOST[:N]] [--deps-build-only] [--no-backfill]
 *            [--host-policy spread|pack] [--json]
 *   kiln sim --replay TRACE   (a `kiln serve --trace` file)
 *
 * Runs the placement code (scheduler/placement.h) on a virtual clock
 * (scheduler/sim.h) once with the chosen policy and once with the other,
 * so the kiln policy is always printed beside the FIFO first-fit baseline.
 * --deps RECIPE adds only the variants of RECIPE that the others depend on
 * (e.g. the custom PyTorch builds of the vLLM variants). --add HOST:N
 * answers "what if I add N more hosts like HOST?". A dependent build waits
 * for its dependency's build and test; --deps-build-only waits for the build
 * alone.
 * --replay feeds the placer events the service recorded to a fresh placer
 * (scheduler/trace.h) and compares every decision with the service's.
 * Exit: 0 done (replay: all decisions identical), 1 some tasks can never run
 * on this farm (replay: a decision differs), 2 usage, 7 error.
 */
#include "cli/commands.h"

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/units.h"
#include "recipes/recipe.h"
#include "scheduler/farm.h"
#include "scheduler/sim.h"
#include "scheduler/trace.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUTS 64

static void usage(void)
{
    fprintf(stderr, "usage: kiln sim --farm FARM.yaml RECIPE... [--deps RECIPE]... "
                    "[--variants FILE.json]...\n"
                    "                [--branch B] [--where sm=90,isa=avx512] [--svg OUT.svg]\n"
                    "                [--policy kiln|fifo] [--add HOST[:N]] [--deps-build-only]\n"
                    "                [--no-backfill] [--host-policy spread|pack] [--json]\n"
                    "       kiln sim --replay TRACE\n");
}

/* Replay a service trace line by line through the same placer. */
static int replay(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "kiln sim: cannot read %s\n", path);
        return KILN_EXIT_INTERNAL;
    }
    struct kiln_replay *r = NULL;
    struct kiln_error err = {0};
    int rc = kiln_replay_new(&r, &err);
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    while (!rc && getline(&line, &cap, f) > 0) {
        lineno++;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o) {
            rc = kiln_fail(&err, KILN_EINVAL, "not JSON: %s", je.text);
        } else {
            rc = kiln_replay_line(r, o, &err);
            json_decref(o);
        }
    }
    if (!rc) rc = kiln_replay_end(r, &err);
    free(line);
    fclose(f);
    if (rc) {
        fprintf(stderr, "kiln sim: %s:%ld: %s\n", path, lineno, err.msg);
        kiln_replay_free(r);
        return rc == KILN_EINVAL ? KILN_EXIT_USAGE : KILN_EXIT_INTERNAL;
    }
    struct kiln_replay_stats st;
    kiln_replay_stats(r, &st);
    kiln_replay_free(r);
    printf("replayed %zu events, %zu dispatches, %zu decisions\n", st.events, st.dispatches,
           st.decisions);
    if (st.mismatches) {
        printf("DIFFERENT: %zu decision(s) differ from the service's; first: %s\n", st.mismatches,
               st.first_mismatch);
        return 1;
    }
    printf("identical: every decision matches the service's\n");
    return 0;
}

static void hm(double s, char *out, size_t n)
{
    int m = (int)(s / 60 + 0.5);
    snprintf(out, n, "%dh %02dm", m / 60, m % 60);
}

static int append_all(json_t *dst, json_t *src)
{
    size_t i;
    json_t *v;
    json_array_foreach(src, i, v)
    {
        if (json_array_append(dst, v)) return -1;
    }
    return 0;
}

/* Keep the dependency variants that some kept variant needs (transitively). */
static int add_needed(json_t *all, json_t *deps)
{
    size_t nd = json_array_size(deps);
    char *keep = calloc(nd ? nd : 1, 1);
    if (!keep) return -1;
    int changed = 1;
    size_t scan_from = 0;
    while (changed) {
        changed = 0;
        size_t n_all = json_array_size(all);
        for (size_t i = scan_from; i < n_all; i++) {
            json_t *d = json_object_get(json_array_get(all, i), "depends");
            size_t k;
            json_t *dn;
            json_array_foreach(d, k, dn)
            {
                const char *name = json_string_value(dn);
                if (!name) continue;
                for (size_t j = 0; j < nd; j++) {
                    const char *cand =
                        json_string_value(json_object_get(json_array_get(deps, j), "name"));
                    if (!keep[j] && cand && !strcmp(cand, name)) {
                        keep[j] = 1;
                        if (json_array_append(all, json_array_get(deps, j))) {
                            free(keep);
                            return -1;
                        }
                        changed = 1;
                    }
                }
            }
        }
        scan_from = n_all;
    }
    free(keep);
    return 0;
}

struct run {
    struct kiln_sim_result r;
    const char *label;
};

static void print_hosts(const struct kiln_sim_result *r)
{
    printf("%-14s %5s %8s %9s %9s %9s %6s\n", "host", "cores", "ram", "cpu-util", "ram-peak",
           "gpu-util", "tasks");
    for (size_t h = 0; h < r->nhosts; h++) {
        const struct kiln_sim_host *s = &r->hosts[h];
        char ram[32], peak[32], gpu[16];
        kiln_format_size((uint64_t)s->ram_mb << 20, ram, sizeof ram);
        kiln_format_size((uint64_t)s->ram_peak_mb << 20, peak, sizeof peak);
        if (s->ngpus)
            snprintf(gpu, sizeof gpu, "%.1f%%", 100 * s->gpu_util);
        else
            snprintf(gpu, sizeof gpu, "-");
        printf("%-14s %5d %8s %8.1f%% %9s %9s %6zu\n", s->name, s->cores, ram, 100 * s->util, peak,
               gpu, s->tasks);
    }
}

int cmd_sim(int argc, char **argv)
{
    const char *farm_path = NULL, *branch = NULL, *where = NULL, *svg = NULL, *add = NULL;
    const char *recipes[MAX_INPUTS], *deps[MAX_INPUTS], *vfiles[MAX_INPUTS];
    size_t nrec = 0, ndep = 0, nvf = 0;
    int json_out = 0;
    struct kiln_sim_opts opts;
    kiln_sim_opts_default(&opts);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDVAL                                                                                    \
    do {                                                                                           \
        if (!val) {                                                                                \
            fprintf(stderr, "kiln sim: %s needs a value\n", a);                                    \
            usage();                                                                               \
            return KILN_EXIT_USAGE;                                                                \
        }                                                                                          \
        i++;                                                                                       \
    } while (0)
        if (!strcmp(a, "--replay")) {
            NEEDVAL;
            return replay(val);
        } else if (!strcmp(a, "--host-policy")) {
            NEEDVAL;
            struct kiln_error e = {0};
            if (kiln_host_policy_parse(val, &opts.policy.host_policy, &e)) {
                fprintf(stderr, "kiln sim: --%s\n", e.msg);
                return KILN_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--farm")) {
            NEEDVAL;
            farm_path = val;
        } else if (!strcmp(a, "--branch")) {
            NEEDVAL;
            branch = val;
        } else if (!strcmp(a, "--where")) {
            NEEDVAL;
            where = val;
        } else if (!strcmp(a, "--svg")) {
            NEEDVAL;
            svg = val;
        } else if (!strcmp(a, "--add")) {
            NEEDVAL;
            add = val;
        } else if (!strcmp(a, "--policy")) {
            NEEDVAL;
            if (!strcmp(val, "kiln"))
                opts.policy.mode = KILN_POLICY_KILN;
            else if (!strcmp(val, "fifo"))
                opts.policy.mode = KILN_POLICY_FIFO;
            else {
                fprintf(stderr, "kiln sim: --policy is kiln or fifo, not %s\n", val);
                return KILN_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--deps") || !strcmp(a, "--variants")) {
            NEEDVAL;
            int isdep = !strcmp(a, "--deps");
            if ((isdep ? ndep : nvf) >= MAX_INPUTS) {
                fprintf(stderr, "kiln sim: too many %s files\n", a);
                return KILN_EXIT_USAGE;
            }
            if (isdep)
                deps[ndep++] = val;
            else
                vfiles[nvf++] = val;
        } else if (!strcmp(a, "--no-backfill")) {
            opts.policy.backfill = 0;
        } else if (!strcmp(a, "--deps-build-only")) {
            opts.deps_wait_test = 0;
        } else if (!strcmp(a, "--json")) {
            json_out = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return KILN_EXIT_OK;
        } else if (a[0] == '-') {
            fprintf(stderr, "kiln sim: unknown option %s\n", a);
            usage();
            return KILN_EXIT_USAGE;
        } else {
            if (nrec >= MAX_INPUTS) {
                fprintf(stderr, "kiln sim: too many recipes\n");
                return KILN_EXIT_USAGE;
            }
            recipes[nrec++] = a;
        }
#undef NEEDVAL
    }
    if (!farm_path || (!nrec && !nvf)) {
        fprintf(stderr, "kiln sim: give --farm FARM.yaml and at least one recipe or --variants\n");
        usage();
        return KILN_EXIT_USAGE;
    }
    int add_n = 1;
    char add_host[KILN_PLACE_NAME_MAX] = "";
    if (add) {
        const char *colon = strchr(add, ':');
        size_t nl = colon ? (size_t)(colon - add) : strlen(add);
        if (!nl || nl >= sizeof add_host ||
            (colon && (sscanf(colon + 1, "%d", &add_n) != 1 || add_n < 1 || add_n > 1000))) {
            fprintf(stderr, "kiln sim: --add takes HOST or HOST:N (N = 1..1000)\n");
            return KILN_EXIT_USAGE;
        }
        memcpy(add_host, add, nl);
        add_host[nl] = 0;
    }

    int code = KILN_EXIT_INTERNAL;
    struct kiln_error err = {0};
    struct kiln_farm farm = {0}, farm2 = {0};
    json_t *all = json_array(), *depv = json_array();
    struct run runs[3];
    memset(runs, 0, sizeof runs);
    size_t nruns = 0;
    size_t n_main = 0;
    if (!all || !depv) goto out;
    if (kiln_farm_parse(farm_path, NULL, 0, &farm, &err)) {
        fprintf(stderr, "kiln sim: %s\n", err.msg);
        code = KILN_EXIT_USAGE;
        goto out;
    }
    for (size_t i = 0; i < nrec + ndep; i++) {
        const char *path = i < nrec ? recipes[i] : deps[i - nrec];
        json_t *v = NULL;
        if (kiln_recipe_expand_file(path, branch, i < nrec ? where : NULL, &v, &err)) {
            fprintf(stderr, "kiln sim: %s\n", err.msg);
            code = KILN_EXIT_FAIL;
            goto out;
        }
        int bad = append_all(i < nrec ? all : depv, v);
        json_decref(v);
        if (bad) goto out;
    }
    for (size_t i = 0; i < nvf; i++) {
        json_error_t je;
        json_t *v = json_load_file(vfiles[i], 0, &je);
        if (!v || !json_is_array(v)) {
            if (v)
                fprintf(stderr, "kiln sim: %s: expected a JSON array of variants\n", vfiles[i]);
            else
                fprintf(stderr, "kiln sim: %s:%d:%d: %s\n", vfiles[i], je.line, je.column, je.text);
            json_decref(v);
            code = KILN_EXIT_USAGE;
            goto out;
        }
        int bad = append_all(all, v);
        json_decref(v);
        if (bad) goto out;
    }
    n_main = json_array_size(all);
    if (add_needed(all, depv)) goto out;

    /* the chosen policy first, then the other one as the comparison */
    struct kiln_sim_opts o2 = opts;
    o2.policy.mode = opts.policy.mode == KILN_POLICY_KILN ? KILN_POLICY_FIFO : KILN_POLICY_KILN;
    runs[0].label = opts.policy.mode == KILN_POLICY_KILN ? "kiln" : "fifo";
    runs[1].label = o2.policy.mode == KILN_POLICY_KILN ? "kiln" : "fifo";
    if (kiln_sim_run(&farm, all, &opts, &runs[0].r, &err) ||
        kiln_sim_run(&farm, all, &o2, &runs[1].r, &err)) {
        fprintf(stderr, "kiln sim: %s\n", err.msg);
        code = err.code == KILN_ENOMEM ? KILN_EXIT_INTERNAL : KILN_EXIT_USAGE;
        goto out;
    }
    nruns = 2;
    if (add) {
        farm2.hosts = malloc(farm.nhosts * sizeof *farm2.hosts);
        if (!farm2.hosts) goto out;
        memcpy(farm2.hosts, farm.hosts, farm.nhosts * sizeof *farm2.hosts);
        farm2.nhosts = farm.nhosts;
        if (kiln_farm_add_like(&farm2, add_host, add_n, &err) ||
            kiln_sim_run(&farm2, all, &opts, &runs[2].r, &err)) {
            fprintf(stderr, "kiln sim: %s\n", err.msg);
            code = KILN_EXIT_USAGE;
            goto out;
        }
        runs[2].label = "added";
        nruns = 3;
    }
    const struct kiln_sim_result *r = &runs[0].r;
    if (svg) {
        struct kiln_buf b = {0};
        char title[256];
        snprintf(title, sizeof title, "%zu tasks on %zu hosts, policy %s", r->ntasks, farm.nhosts,
                 runs[0].label);
        int wrc = kiln_sim_svg(&farm, r, title, &b);
        if (!wrc) wrc = kiln_write_file_atomic(svg, b.data, b.len, 0644);
        if (wrc) {
            fprintf(stderr, "kiln sim: cannot write %s: %s\n", svg, kiln_strerror(wrc));
            kiln_buf_free(&b);
            goto out;
        }
        kiln_buf_free(&b);
    }
    if (json_out) {
        json_t *o = kiln_sim_json(r, 1);
        json_t *base = kiln_sim_json(&runs[1].r, 0);
        json_t *more = nruns > 2 ? kiln_sim_json(&runs[2].r, 0) : NULL;
        if (!o || !base || (nruns > 2 && !more)) {
            json_decref(o);
            json_decref(base);
            json_decref(more);
            goto out;
        }
        json_object_set_new(o, "policy", json_string(runs[0].label));
        json_object_set_new(base, "policy", json_string(runs[1].label));
        json_object_set_new(o, "comparison", base);
        if (more) {
            json_object_set_new(more, "added", json_string(add));
            json_object_set_new(o, "with_added_hosts", more);
        }
        json_object_set_new(o, "variants", json_integer((json_int_t)json_array_size(all)));
        char *s = json_dumps(o, JSON_INDENT(2));
        json_decref(o);
        if (!s) goto out;
        puts(s);
        free(s);
    } else {
        char a[32], b[32];
        printf("kiln sim: %zu variants (%zu requested, %zu dependencies), %zu tasks on %zu hosts\n",
               json_array_size(all), n_main, json_array_size(all) - n_main, r->ntasks, farm.nhosts);
        printf("\n%-8s %10s %12s %7s\n", "policy", "makespan", "lower bound", "ratio");
        for (size_t i = 0; i < 2; i++) {
            hm(runs[i].r.makespan, a, sizeof a);
            hm(runs[i].r.lower_bound, b, sizeof b);
            printf("%-8s %10s %12s %7.3f%s\n", runs[i].label, a, b,
                   runs[i].r.lower_bound > 0 ? runs[i].r.makespan / runs[i].r.lower_bound : 1.0,
                   i ? "  (baseline: oldest first, first host that fits)" : "");
        }
        char c1[32], c2[32];
        hm(r->lb_chain, c1, sizeof c1);
        hm(r->lb_longest, c2, sizeof c2);
        printf("lower bound = %s (longest chain %s, longest task %s)\n", r->bound_what, c1, c2);
        if (r->missing_deps)
            printf("note: %zu dependencies are not in the set and count as already built\n",
                   r->missing_deps);
        printf("\n");
        print_hosts(r);
        if (nruns > 2) {
            double d = runs[2].r.makespan - r->makespan;
            hm(runs[2].r.makespan, a, sizeof a);
            hm(d < 0 ? -d : d, b, sizeof b);
            printf("\nwith %d more host%s like %s: makespan %s (%s%s, %+.1f%%), lower bound ",
                   add_n, add_n > 1 ? "s" : "", add_host, a, d < 0 ? "-" : "+", b,
                   r->makespan > 0 ? 100 * d / r->makespan : 0.0);
            hm(runs[2].r.lower_bound, a, sizeof a);
            printf("%s\n", a);
        }
        if (svg) printf("\nGantt chart: %s\n", svg);
    }
    code = KILN_EXIT_OK;
    if (r->nunplaceable) {
        fprintf(stderr, "kiln sim: %zu tasks can never run on this farm:\n", r->nunplaceable);
        size_t shown = 0;
        for (size_t i = 0; i < r->ntasks && shown < 20; i++)
            if (r->tasks[i].host < 0) {
                fprintf(stderr, "  %s %s: %s\n", r->tasks[i].name,
                        r->tasks[i].stage == KILN_PSTAGE_TEST ? "test" : "build",
                        r->tasks[i].reason);
                shown++;
            }
        code = KILN_EXIT_FAIL;
    }
out:
    if (code == KILN_EXIT_INTERNAL && !err.msg[0]) fprintf(stderr, "kiln sim: out of memory\n");
    for (size_t i = 0; i < 3; i++)
        kiln_sim_result_free(&runs[i].r);
    kiln_farm_free(&farm);
    kiln_farm_free(&farm2);
    json_decref(all);
    json_decref(depv);
    return code;
}
