/* cmd_sim.c - `kiln sim`: how long will these variants take on my hosts?
 *
 *   kiln sim --farm FARM.yaml RECIPE... [--deps RECIPE]... [--variants FILE.json]...
 *            [--branch B] [--where sm=90] [--svg OUT.svg] [--policy kiln|fifo|easy]
 *            [--add HOST[:N]] [--deps-build-only] [--no-backfill]
 *            [--host-policy spread|pack] [--json]
 *   kiln sim --replay TRACE [--host-policy spread|pack]   (a `kiln serve --trace` file)
 *
 * Runs the placement code (scheduler/placement.h) on a virtual clock
 * (scheduler/sim.h) once with each policy, so the kiln policy is always
 * printed beside the two baselines: FIFO first-fit and Slurm-like EASY
 * backfill (oldest first; the head that cannot start gets a reservation,
 * later jobs start only if they do not delay it).
 * --deps RECIPE adds only the variants of RECIPE that the others depend on
 * (e.g. the custom PyTorch builds of the vLLM variants). --add HOST:N
 * answers "what if I add N more hosts like HOST?". A dependent build waits
 * for its dependency's build and test; --deps-build-only waits for the build
 * alone.
 * --replay feeds the placer events the service recorded to a fresh placer
 * (scheduler/trace.h) and compares every decision with the service's;
 * with --host-policy the replay runs that policy instead of the recorded one
 * (would the other policy have decided the same? it must not, or the
 * replay would prove nothing).
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
    fprintf(stderr,
            "usage: kiln sim --farm FARM.yaml RECIPE... [--deps RECIPE]... "
            "[--variants FILE.json]...\n"
            "                [--branch B] [--where sm=90,isa=avx512] [--svg OUT.svg]\n"
            "                [--policy kiln|fifo|easy] [--add HOST[:N]] [--deps-build-only]\n"
            "                [--no-backfill] [--host-policy spread|pack] [--json]\n"
            "       kiln sim --replay TRACE [--host-policy spread|pack]\n");
}

/* Replay a service trace line by line through the same placer; host_policy
 * -1 keeps the recorded one. */
static int replay(const char *path, int host_policy)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "kiln sim: cannot read %s\n", path);
        return KILN_EXIT_INTERNAL;
    }
    struct kiln_replay *r = NULL;
    struct kiln_error err = {0};
    int rc = kiln_replay_new(&r, &err);
    if (!rc && host_policy >= 0) kiln_replay_set_host_policy(r, host_policy);
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

/* What the command line asks for. */
struct sim_args {
    const char *farm_path, *branch, *where, *svg, *add, *replay;
    const char *recipes[MAX_INPUTS], *deps[MAX_INPUTS], *vfiles[MAX_INPUTS];
    size_t nrec, ndep, nvf;
    int json_out;
    int host_policy; /* -1: not given */
    struct kiln_sim_opts opts;
    int add_n;
    char add_host[KILN_PLACE_NAME_MAX];
};

/* One option that takes a value; KILN_EXIT_OK or an exit code. */
static int parse_valued(struct sim_args *a, const char *opt, const char *val)
{
    if (!strcmp(opt, "--replay")) {
        a->replay = val;
    } else if (!strcmp(opt, "--host-policy")) {
        struct kiln_error e = {0};
        if (kiln_host_policy_parse(val, &a->opts.policy.host_policy, &e)) {
            fprintf(stderr, "kiln sim: --%s\n", e.msg);
            return KILN_EXIT_USAGE;
        }
        a->host_policy = a->opts.policy.host_policy;
    } else if (!strcmp(opt, "--farm")) {
        a->farm_path = val;
    } else if (!strcmp(opt, "--branch")) {
        a->branch = val;
    } else if (!strcmp(opt, "--where")) {
        a->where = val;
    } else if (!strcmp(opt, "--svg")) {
        a->svg = val;
    } else if (!strcmp(opt, "--add")) {
        a->add = val;
    } else if (!strcmp(opt, "--policy")) {
        if (!strcmp(val, "kiln")) {
            a->opts.policy.mode = KILN_POLICY_KILN;
        } else if (!strcmp(val, "fifo")) {
            a->opts.policy.mode = KILN_POLICY_FIFO;
        } else if (!strcmp(val, "easy")) {
            a->opts.policy.mode = KILN_POLICY_EASY;
        } else {
            fprintf(stderr, "kiln sim: --policy is kiln, fifo or easy, not %s\n", val);
            return KILN_EXIT_USAGE;
        }
    } else { /* --deps or --variants */
        int isdep = !strcmp(opt, "--deps");
        if ((isdep ? a->ndep : a->nvf) >= MAX_INPUTS) {
            fprintf(stderr, "kiln sim: too many %s files\n", opt);
            return KILN_EXIT_USAGE;
        }
        if (isdep)
            a->deps[a->ndep++] = val;
        else
            a->vfiles[a->nvf++] = val;
    }
    return KILN_EXIT_OK;
}

/* --add HOST or HOST:N into add_host and add_n; KILN_EXIT_OK or usage. */
static int parse_add(struct sim_args *a)
{
    a->add_n = 1;
    if (!a->add) return KILN_EXIT_OK;
    const char *colon = strchr(a->add, ':');
    size_t nl = colon ? (size_t)(colon - a->add) : strlen(a->add);
    if (!nl || nl >= sizeof a->add_host ||
        (colon && (sscanf(colon + 1, "%d", &a->add_n) != 1 || a->add_n < 1 || a->add_n > 1000))) {
        fprintf(stderr, "kiln sim: --add takes HOST or HOST:N (N = 1..1000)\n");
        return KILN_EXIT_USAGE;
    }
    memcpy(a->add_host, a->add, nl);
    a->add_host[nl] = 0;
    return KILN_EXIT_OK;
}

/* The command line into a; -1 to go on, else the exit code to return. */
static int parse_args(int argc, char **argv, struct sim_args *a)
{
    static const char *const valued[] = {"--replay", "--host-policy", "--farm", "--branch",
                                         "--where",  "--svg",         "--add",  "--policy",
                                         "--deps",   "--variants",    NULL};
    memset(a, 0, sizeof *a);
    a->host_policy = -1;
    kiln_sim_opts_default(&a->opts);
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        int takes = 0;
        for (size_t k = 0; valued[k] && !takes; k++)
            takes = !strcmp(opt, valued[k]);
        if (takes) {
            if (i + 1 >= argc) {
                fprintf(stderr, "kiln sim: %s needs a value\n", opt);
                usage();
                return KILN_EXIT_USAGE;
            }
            int rc = parse_valued(a, opt, argv[++i]);
            if (rc != KILN_EXIT_OK) return rc;
        } else if (!strcmp(opt, "--no-backfill")) {
            a->opts.policy.backfill = 0;
        } else if (!strcmp(opt, "--deps-build-only")) {
            a->opts.deps_wait_test = 0;
        } else if (!strcmp(opt, "--json")) {
            a->json_out = 1;
        } else if (!strcmp(opt, "-h") || !strcmp(opt, "--help")) {
            usage();
            return KILN_EXIT_OK;
        } else if (opt[0] == '-') {
            fprintf(stderr, "kiln sim: unknown option %s\n", opt);
            usage();
            return KILN_EXIT_USAGE;
        } else if (a->nrec >= MAX_INPUTS) {
            fprintf(stderr, "kiln sim: too many recipes\n");
            return KILN_EXIT_USAGE;
        } else {
            a->recipes[a->nrec++] = opt;
        }
    }
    if (a->replay) return replay(a->replay, a->host_policy);
    if (!a->farm_path || (!a->nrec && !a->nvf)) {
        fprintf(stderr, "kiln sim: give --farm FARM.yaml and at least one recipe or --variants\n");
        usage();
        return KILN_EXIT_USAGE;
    }
    int rc = parse_add(a);
    return rc == KILN_EXIT_OK ? -1 : rc;
}

/* The recipes' variants into all, the --deps recipes' into depv, then the
 * --variants files into all. KILN_EXIT_OK or the exit code (reason printed;
 * KILN_EXIT_INTERNAL silently for out of memory). */
static int load_variants(const struct sim_args *a, json_t *all, json_t *depv,
                         struct kiln_error *err)
{
    for (size_t i = 0; i < a->nrec + a->ndep; i++) {
        int main_recipe = i < a->nrec;
        const char *path = main_recipe ? a->recipes[i] : a->deps[i - a->nrec];
        json_t *v = NULL;
        if (kiln_recipe_expand_file(path, a->branch, main_recipe ? a->where : NULL, &v, err)) {
            fprintf(stderr, "kiln sim: %s\n", err->msg);
            return KILN_EXIT_FAIL;
        }
        int bad = append_all(main_recipe ? all : depv, v);
        json_decref(v);
        if (bad) return KILN_EXIT_INTERNAL;
    }
    for (size_t i = 0; i < a->nvf; i++) {
        json_error_t je;
        json_t *v = json_load_file(a->vfiles[i], 0, &je);
        if (!v || !json_is_array(v)) {
            if (v)
                fprintf(stderr, "kiln sim: %s: expected a JSON array of variants\n", a->vfiles[i]);
            else
                fprintf(stderr, "kiln sim: %s:%d:%d: %s\n", a->vfiles[i], je.line, je.column,
                        je.text);
            json_decref(v);
            return KILN_EXIT_USAGE;
        }
        int bad = append_all(all, v);
        json_decref(v);
        if (bad) return KILN_EXIT_INTERNAL;
    }
    return KILN_EXIT_OK;
}

#define NPOLICIES 3 /* kiln, fifo, easy: every run prints all three */

static const char *policy_label(int mode)
{
    return mode == KILN_POLICY_KILN ? "kiln" : mode == KILN_POLICY_FIFO ? "fifo" : "easy";
}

/* runs[0]: the chosen policy; runs[1..2]: the other two, in the order kiln,
 * fifo, easy; runs[3] (with --add): the chosen policy on the farm with the
 * added hosts. KILN_EXIT_OK or the exit code (reason printed). */
static int run_all(const struct sim_args *a, const struct kiln_farm *farm, json_t *all,
                   struct kiln_farm *farm2, struct run runs[NPOLICIES + 1], size_t *nruns,
                   struct kiln_error *err)
{
    static const int modes[NPOLICIES] = {KILN_POLICY_KILN, KILN_POLICY_FIFO, KILN_POLICY_EASY};
    size_t n = 0;
    for (int k = -1; k < NPOLICIES; k++) {
        struct kiln_sim_opts o = a->opts;
        if (k >= 0) {
            if (modes[k] == a->opts.policy.mode) continue;
            o.policy.mode = modes[k];
        }
        runs[n].label = policy_label(o.policy.mode);
        if (kiln_sim_run(farm, all, &o, &runs[n++].r, err)) {
            fprintf(stderr, "kiln sim: %s\n", err->msg);
            return err->code == KILN_ENOMEM ? KILN_EXIT_INTERNAL : KILN_EXIT_USAGE;
        }
    }
    *nruns = NPOLICIES;
    if (!a->add) return KILN_EXIT_OK;
    farm2->hosts = malloc(farm->nhosts * sizeof *farm2->hosts);
    if (!farm2->hosts) return KILN_EXIT_INTERNAL;
    memcpy(farm2->hosts, farm->hosts, farm->nhosts * sizeof *farm2->hosts);
    farm2->nhosts = farm->nhosts;
    if (kiln_farm_add_like(farm2, a->add_host, a->add_n, err) ||
        kiln_sim_run(farm2, all, &a->opts, &runs[NPOLICIES].r, err)) {
        fprintf(stderr, "kiln sim: %s\n", err->msg);
        return KILN_EXIT_USAGE;
    }
    runs[NPOLICIES].label = "added";
    *nruns = NPOLICIES + 1;
    return KILN_EXIT_OK;
}

/* The Gantt chart of runs[0] into a->svg; KILN_OK or the reason printed. */
static int write_svg(const struct sim_args *a, const struct kiln_farm *farm, const struct run *run)
{
    struct kiln_buf b = {0};
    char title[256];
    snprintf(title, sizeof title, "%zu tasks on %zu hosts, policy %s", run->r.ntasks, farm->nhosts,
             run->label);
    int wrc = kiln_sim_svg(farm, &run->r, title, &b);
    if (!wrc) wrc = kiln_write_file_atomic(a->svg, b.data, b.len, 0644);
    kiln_buf_free(&b);
    if (wrc) fprintf(stderr, "kiln sim: cannot write %s: %s\n", a->svg, kiln_strerror(wrc));
    return wrc;
}

/* --json: the chosen run with the comparisons (and added hosts) inside:
 * "comparison" is the first of the other policies (kiln, else fifo), as
 * before the EASY baseline came; "comparisons" has both others. */
static int print_json(const struct sim_args *a, const struct run *runs, size_t nruns,
                      size_t nvariants)
{
    json_t *o = kiln_sim_json(&runs[0].r, 1);
    json_t *base = kiln_sim_json(&runs[1].r, 0);
    json_t *base2 = kiln_sim_json(&runs[2].r, 0);
    json_t *list = json_array();
    json_t *more = nruns > NPOLICIES ? kiln_sim_json(&runs[NPOLICIES].r, 0) : NULL;
    if (!o || !base || !base2 || !list || (nruns > NPOLICIES && !more)) {
        json_decref(o);
        json_decref(base);
        json_decref(base2);
        json_decref(list);
        json_decref(more);
        return KILN_ENOMEM;
    }
    json_object_set_new(o, "policy", json_string(runs[0].label));
    json_object_set_new(base, "policy", json_string(runs[1].label));
    json_object_set_new(base2, "policy", json_string(runs[2].label));
    json_array_append(list, base);
    json_array_append_new(list, base2);
    json_object_set_new(o, "comparison", base);
    json_object_set_new(o, "comparisons", list);
    if (more) {
        json_object_set_new(more, "added", json_string(a->add));
        json_object_set_new(o, "with_added_hosts", more);
    }
    json_object_set_new(o, "variants", json_integer((json_int_t)nvariants));
    char *s = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    if (!s) return KILN_ENOMEM;
    puts(s);
    free(s);
    return KILN_OK;
}

/* What a policy's line says after its ratio. */
static const char *policy_note(const char *label)
{
    if (!strcmp(label, "fifo")) return "  (baseline: oldest first, first host that fits)";
    if (!strcmp(label, "easy"))
        return "  (baseline: Slurm-like EASY backfill, oldest first, head reserved)";
    return "";
}

/* The table for people: the three policies against the bound, the hosts,
 * and what the added hosts would change. */
static void print_text(const struct sim_args *a, const struct kiln_farm *farm,
                       const struct run *runs, size_t nruns, size_t nvariants, size_t n_main)
{
    const struct kiln_sim_result *r = &runs[0].r;
    char t1[32], t2[32];
    printf("kiln sim: %zu variants (%zu requested, %zu dependencies), %zu tasks on %zu hosts\n",
           nvariants, n_main, nvariants - n_main, r->ntasks, farm->nhosts);
    printf("\n%-8s %10s %12s %7s\n", "policy", "makespan", "lower bound", "ratio");
    for (size_t i = 0; i < NPOLICIES; i++) {
        hm(runs[i].r.makespan, t1, sizeof t1);
        hm(runs[i].r.lower_bound, t2, sizeof t2);
        printf("%-8s %10s %12s %7.3f%s\n", runs[i].label, t1, t2,
               runs[i].r.lower_bound > 0 ? runs[i].r.makespan / runs[i].r.lower_bound : 1.0,
               policy_note(runs[i].label));
    }
    hm(r->lb_chain, t1, sizeof t1);
    hm(r->lb_longest, t2, sizeof t2);
    printf("lower bound = %s (longest chain %s, longest task %s)\n", r->bound_what, t1, t2);
    if (r->missing_deps)
        printf("note: %zu dependencies are not in the set and count as already built\n",
               r->missing_deps);
    printf("\n");
    print_hosts(r);
    if (nruns > NPOLICIES) {
        const struct kiln_sim_result *r2 = &runs[NPOLICIES].r;
        double d = r2->makespan - r->makespan;
        hm(r2->makespan, t1, sizeof t1);
        hm(d < 0 ? -d : d, t2, sizeof t2);
        printf("\nwith %d more host%s like %s: makespan %s (%s%s, %+.1f%%), lower bound ", a->add_n,
               a->add_n > 1 ? "s" : "", a->add_host, t1, d < 0 ? "-" : "+", t2,
               r->makespan > 0 ? 100 * d / r->makespan : 0.0);
        hm(r2->lower_bound, t1, sizeof t1);
        printf("%s\n", t1);
    }
    if (a->svg) printf("\nGantt chart: %s\n", a->svg);
}

/* KILN_EXIT_FAIL, with the first 20 named, when some tasks can never run. */
static int report_unplaceable(const struct kiln_sim_result *r)
{
    if (!r->nunplaceable) return KILN_EXIT_OK;
    fprintf(stderr, "kiln sim: %zu tasks can never run on this farm:\n", r->nunplaceable);
    size_t shown = 0;
    for (size_t i = 0; i < r->ntasks && shown < 20; i++)
        if (r->tasks[i].host < 0) {
            fprintf(stderr, "  %s %s: %s\n", r->tasks[i].name,
                    r->tasks[i].stage == KILN_PSTAGE_TEST ? "test" : "build", r->tasks[i].reason);
            shown++;
        }
    return KILN_EXIT_FAIL;
}

int cmd_sim(int argc, char **argv)
{
    struct sim_args a;
    int code = parse_args(argc, argv, &a);
    if (code >= 0) return code;
    code = KILN_EXIT_INTERNAL;
    struct kiln_error err = {0};
    struct kiln_farm farm = {0}, farm2 = {0};
    json_t *all = json_array(), *depv = json_array();
    struct run runs[NPOLICIES + 1];
    memset(runs, 0, sizeof runs);
    size_t nruns = 0;
    if (!all || !depv) goto out;
    if (kiln_farm_parse(a.farm_path, NULL, 0, &farm, &err)) {
        fprintf(stderr, "kiln sim: %s\n", err.msg);
        code = KILN_EXIT_USAGE;
        goto out;
    }
    code = load_variants(&a, all, depv, &err);
    if (code != KILN_EXIT_OK) goto out;
    code = KILN_EXIT_INTERNAL;
    size_t n_main = json_array_size(all);
    if (add_needed(all, depv)) goto out;
    code = run_all(&a, &farm, all, &farm2, runs, &nruns, &err);
    if (code != KILN_EXIT_OK) goto out;
    code = KILN_EXIT_INTERNAL;
    if (a.svg && write_svg(&a, &farm, &runs[0])) goto out;
    if (a.json_out) {
        if (print_json(&a, runs, nruns, json_array_size(all))) goto out;
    } else {
        print_text(&a, &farm, runs, nruns, json_array_size(all), n_main);
    }
    code = report_unplaceable(&runs[0].r);
out:
    if (code == KILN_EXIT_INTERNAL && !err.msg[0]) fprintf(stderr, "kiln sim: out of memory\n");
    for (size_t i = 0; i < NPOLICIES + 1; i++)
        kiln_sim_result_free(&runs[i].r);
    kiln_farm_free(&farm);
    kiln_farm_free(&farm2);
    json_decref(all);
    json_decref(depv);
    return code;
}
