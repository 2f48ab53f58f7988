/* cmd_selftest.c - `kiln selftest inspect|host|run`: GPU artifact checks.
 *
 *   kiln selftest inspect FILE... [--expect-sm 90] [--expect-symbols a,b] [--json]
 *   kiln selftest host --sm 90 [--compatible] [--driver-min 560] [--isa avx512]
 *                      [--gpu-sm 90[,90..]] [--driver 580.65.06] [--cpu-isa avx2,fma]
 *                      [--json]
 *   kiln selftest run [--binary PATH] [--check CMD]... [--inspect FILE]...
 *                     [--expect-sm 90] [--expect-symbols a,b] [--timeout SEC]
 *                     [--log FILE] [--out FILE] [-- BINARY-ARGS...]
 *   kiln selftest run --spec SPEC.json [--workdir DIR] [--selftest-dir DIR]
 *                     [--detect-host] [--log FILE] [--out FILE] [-- BINARY-ARGS...]
 * Exit: 0 ok, 1 a check failed (or a file is unreadable/malformed), 2 usage,
 * 7 internal error. Details in docs/GPU-SELFTEST.md.
 */
#include "cli/commands.h"

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/isa.h"
#include "kernels-selftest/checks.h"
#include "kernels-selftest/elfsym.h"
#include "kernels-selftest/fatbin.h"
#include "kernels-selftest/hostcheck.h"
#include "kernels-selftest/selftest.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: kiln selftest inspect FILE... [--expect-sm SM] [--expect-symbols a,b] "
        "[--json] [-v]\n"
        "       kiln selftest host --sm SM [--compatible] [--driver-min N] [--isa LEVEL]\n"
        "                          [--gpu-sm SM[,SM..]] [--driver X.Y] [--cpu-isa f1,f2]"
        " [--json]\n"
        "       kiln selftest run [--binary PATH] [--check CMD]... [--inspect FILE]...\n"
        "                         [--expect-sm SM] [--expect-symbols a,b] [--timeout SEC]\n"
        "                         [--log FILE] [--out FILE] [-- BINARY-ARGS...]\n"
        "       kiln selftest run --spec SPEC.json [--workdir DIR] [--selftest-dir DIR]\n"
        "                         [--detect-host] [--log FILE] [--out FILE] [-- BINARY-ARGS...]\n"
        "inspect lists cubins/PTX in ELF files, cubins and fatbins and checks that the\n"
        "SM can run them and that expected symbols are defined; host checks a host's\n"
        "GPU/driver/CPU facts (detected with nvidia-smi and /proc/cpuinfo unless given);\n"
        "run runs kiln-selftest and check commands and prints one JSON document.\n");
}

static int print_json(json_t *doc, FILE *f)
{
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!s) return KILN_ENOMEM;
    int rc = fputs(s, f) < 0 || fputc('\n', f) == EOF ? KILN_EIO : KILN_OK;
    free(s);
    return rc;
}

static void print_inspect_table(json_t *doc, const struct kiln_inspect_opts *o, int verbose)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(doc, "files"), i, f)
    {
        printf("%s\n", json_string_value(json_object_get(f, "file")));
        const char *error = json_string_value(json_object_get(f, "error"));
        json_t *cubins = json_object_get(f, "cubins");
        if (!cubins) {
            printf("  error:   %s\n", error ? error : "?");
            continue;
        }
        size_t k;
        json_t *v;
        printf("  cubins: ");
        if (json_array_size(cubins) == 0) printf(" (none)");
        json_array_foreach(cubins, k, v) printf(" %s", json_string_value(v));
        printf("\n  ptx:    ");
        if (json_array_size(json_object_get(f, "ptx")) == 0) printf(" (none)");
        json_array_foreach(json_object_get(f, "ptx"), k, v)
            printf(" %s (PTX ISA %s)", json_string_value(json_object_get(v, "target")),
                   json_string_value(json_object_get(v, "isa")));
        printf("\n  entries: %zu in %lld container(s)",
               json_array_size(json_object_get(f, "entries")),
               (long long)json_integer_value(json_object_get(f, "containers")));
        int compressed = 0;
        json_array_foreach(json_object_get(f, "entries"), k, v) compressed +=
            json_is_string(json_object_get(v, "compression"));
        if (compressed) printf(", %d compressed", compressed);
        printf("\n");
        json_array_foreach(json_object_get(f, "entries"), k, v)
        {
            if (!verbose) break;
            const char *comp = json_string_value(json_object_get(v, "compression"));
            printf("    %-5s %-14s %8lld bytes%s%s%s in %s\n",
                   json_string_value(json_object_get(v, "kind")),
                   json_string_value(json_object_get(v, "target")),
                   (long long)json_integer_value(json_object_get(v, "size")), comp ? ", " : "",
                   comp ? comp : "",
                   json_is_true(json_object_get(v, "relocatable")) ? ", relocatable" : "",
                   json_string_value(json_object_get(v, "where")));
        }
        json_t *x = json_object_get(f, "expect_sm");
        if (x) {
            if (json_is_true(json_object_get(x, "ok")))
                printf("  sm_%u:    OK via %s\n", o->expect_sm,
                       json_string_value(json_object_get(x, "how")));
            else
                printf("  sm_%u:    FAIL: %s\n", o->expect_sm,
                       json_string_value(json_object_get(x, "reason")));
        }
        if (error) printf("  error:   %s\n", error);
    }
    json_t *sy = json_object_get(doc, "symbols");
    if (sy) {
        const char *key;
        json_t *v;
        json_object_foreach(json_object_get(sy, "found"), key, v)
            printf("symbol %s: found (%s)\n", key, json_string_value(v));
        size_t k;
        json_array_foreach(json_object_get(sy, "missing"), k, v)
            printf("symbol %s: MISSING\n", json_string_value(v));
    }
    int ok = json_is_true(json_object_get(doc, "ok"));
    if (!ok) {
        size_t k;
        json_t *v;
        json_array_foreach(json_object_get(doc, "reasons"), k, v)
            printf("FAIL: %s\n", json_string_value(v));
    }
    printf("%s\n", ok ? "ok" : "FAILED");
}

static int parse_sm_arg(const char *opt, const char *v, unsigned *sm)
{
    if (kiln_fatbin_parse_sm(v, sm) != KILN_OK) {
        fprintf(stderr, "kiln selftest: %s wants an SM like 90, sm_90 or 9.0, not \"%s\"\n", opt,
                v);
        return -1;
    }
    return 0;
}

static int cmd_inspect(int argc, char **argv)
{
    struct kiln_inspect_opts o = {0, NULL, 0};
    char **syms = NULL;
    size_t nsyms = 0;
    int json = 0, verbose = 0, rc = KILN_EXIT_USAGE;
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    size_t nfiles = 0;
    if (!files) {
        fprintf(stderr, "kiln selftest: out of memory\n");
        return KILN_EXIT_INTERNAL;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            verbose = 1;
        } else if (strcmp(argv[i], "--expect-sm") == 0 && i + 1 < argc) {
            if (parse_sm_arg("--expect-sm", argv[++i], &o.expect_sm)) goto out;
        } else if (strcmp(argv[i], "--expect-symbols") == 0 && i + 1 < argc) {
            struct kiln_error e;
            kiln_elfsym_split_free(syms, nsyms);
            if (kiln_elfsym_split(argv[++i], &syms, &nsyms, &e) != KILN_OK) {
                fprintf(stderr, "kiln selftest: --expect-symbols: %s\n", e.msg);
                goto out;
            }
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            rc = KILN_EXIT_OK;
            goto out;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "kiln selftest inspect: unknown or incomplete option \"%s\"\n",
                    argv[i]);
            goto out;
        } else {
            files[nfiles++] = argv[i];
        }
    }
    if (!nfiles) {
        fprintf(stderr, "kiln selftest inspect: name at least one file\n");
        goto out;
    }
    o.symbols = syms;
    o.nsymbols = nsyms;
    json_t *doc = NULL;
    struct kiln_error e;
    if (kiln_selftest_inspect(files, nfiles, &o, &doc, &e) != KILN_OK) {
        fprintf(stderr, "kiln selftest inspect: %s\n", e.msg);
        rc = KILN_EXIT_INTERNAL;
        goto out;
    }
    if (json)
        print_json(doc, stdout);
    else
        print_inspect_table(doc, &o, verbose);
    rc = json_is_true(json_object_get(doc, "ok")) ? KILN_EXIT_OK : KILN_EXIT_FAIL;
    json_decref(doc);
out:
    kiln_elfsym_split_free(syms, nsyms);
    free(files);
    return rc;
}

/* nvidia-smi facts, when the caller gave none. */
static void detect_gpus(struct kiln_host_facts *h)
{
    char logp[] = "/tmp/kiln-smi-XXXXXX";
    int fd = mkstemp(logp);
    if (fd < 0) return;
    close(fd);
    char *argv[] = {"nvidia-smi", "--query-gpu=compute_cap,driver_version", "--format=csv,noheader",
                    NULL};
    struct kiln_check_spec spec = {
        .name = "nvidia-smi", .argv = argv, .timeout_ms = 15000, .log_path = logp};
    struct kiln_check_result r;
    if (kiln_check_run(&spec, &r, NULL) == KILN_OK && r.passed) {
        struct kiln_buf b = {0};
        if (kiln_read_file(logp, 1 << 20, &b) == KILN_OK) {
            struct kiln_error e;
            if (kiln_hostcheck_parse_smi_csv(b.data, b.len, h, &e) != KILN_OK)
                fprintf(stderr, "kiln selftest host: nvidia-smi output: %s\n", e.msg);
        }
        kiln_buf_free(&b);
    }
    unlink(logp);
}

/* kiln selftest host's flags: what is needed, and host facts given instead
 * of detected. -1: go on; otherwise the exit code. */
static int host_args(int argc, char **argv, struct kiln_host_need *need, struct kiln_host_facts *h,
                     int *json, int *have_gpu, int *have_isa)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            *json = 1;
        } else if (strcmp(a, "--compatible") == 0) {
            need->allow_compatible = 1;
        } else if (strcmp(a, "--sm") == 0 && v) {
            if (parse_sm_arg(a, v, &need->sm)) return KILN_EXIT_USAGE;
            i++;
        } else if (strcmp(a, "--driver-min") == 0 && v) {
            unsigned minor;
            if (kiln_hostcheck_parse_driver(v, &need->driver_min, &minor) != KILN_OK) {
                fprintf(stderr, "kiln selftest host: bad --driver-min \"%s\"\n", v);
                return KILN_EXIT_USAGE;
            }
            i++;
        } else if (strcmp(a, "--isa") == 0 && v) {
            if (!kiln_isa_level_features(v)) {
                fprintf(stderr,
                        "kiln selftest host: unknown ISA level \"%s\" (avx, avx2, avx512, "
                        "avx512bf16, avx512vnni, armv8_2, armv9)\n",
                        v);
                return KILN_EXIT_USAGE;
            }
            need->isa_level = v;
            i++;
        } else if (strcmp(a, "--gpu-sm") == 0 && v) {
            char *copy = strdup(v), *save = NULL;
            if (!copy) return KILN_EXIT_INTERNAL;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                unsigned sm;
                if (parse_sm_arg(a, t, &sm) || h->ngpu >= KILN_HOST_MAX_GPUS) {
                    free(copy);
                    return KILN_EXIT_USAGE;
                }
                h->gpu_sm[h->ngpu++] = sm;
            }
            free(copy);
            *have_gpu = 1;
            i++;
        } else if (strcmp(a, "--driver") == 0 && v) {
            if (kiln_hostcheck_parse_driver(v, &h->driver_major, &h->driver_minor) != KILN_OK) {
                fprintf(stderr, "kiln selftest host: bad --driver \"%s\"\n", v);
                return KILN_EXIT_USAGE;
            }
            h->have_driver = 1;
            i++;
        } else if (strcmp(a, "--cpu-isa") == 0 && v) {
            char bad[64];
            if (kiln_isa_parse_features(v, &h->cpu_isa, bad, sizeof bad) != KILN_OK) {
                fprintf(stderr, "kiln selftest host: unknown CPU feature \"%s\"\n", bad);
                return KILN_EXIT_USAGE;
            }
            *have_isa = 1;
            i++;
        } else if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return KILN_EXIT_OK;
        } else {
            fprintf(stderr, "kiln selftest host: unknown or incomplete option \"%s\"\n", a);
            return KILN_EXIT_USAGE;
        }
    }
    return -1;
}

/* The verdict, as text or JSON. */
static int host_verdict(const struct kiln_host_facts *h, int rc, const struct kiln_error *e,
                        int json)
{
    char isa[256] = "";
    kiln_isa_feature_list(h->cpu_isa, isa, sizeof isa);
    if (json) {
        json_t *sms = json_array();
        for (size_t i = 0; sms && i < h->ngpu; i++)
            json_array_append_new(sms, json_integer(h->gpu_sm[i]));
        char drv[32] = "";
        if (h->have_driver) snprintf(drv, sizeof drv, "%u.%02u", h->driver_major, h->driver_minor);
        json_t *doc =
            json_pack("{s:b,s:s?,s:{s:o,s:s?,s:s}}", "ok", rc == KILN_OK, "reason",
                      rc == KILN_OK ? NULL : e->msg, "host", "gpu_sm", sms ? sms : json_array(),
                      "driver", h->have_driver ? drv : NULL, "cpu_features", isa);
        if (!doc) {
            fprintf(stderr, "kiln selftest host: out of memory\n");
            return KILN_EXIT_INTERNAL;
        }
        print_json(doc, stdout);
        json_decref(doc);
    } else if (rc == KILN_OK) {
        printf("ok: host qualifies\n");
    } else {
        printf("FAIL: %s\n", e->msg);
    }
    return rc == KILN_OK ? KILN_EXIT_OK : KILN_EXIT_FAIL;
}

static int cmd_host(int argc, char **argv)
{
    struct kiln_host_need need = {0};
    struct kiln_host_facts h;
    memset(&h, 0, sizeof h);
    int json = 0, have_gpu = 0, have_isa = 0;
    int x = host_args(argc, argv, &need, &h, &json, &have_gpu, &have_isa);
    if (x >= 0) return x;
    if (!need.sm && !need.driver_min && !need.isa_level) {
        fprintf(stderr, "kiln selftest host: give at least one of --sm, --driver-min, --isa\n");
        return KILN_EXIT_USAGE;
    }
    if (!have_gpu && (need.sm || need.driver_min)) {
        unsigned dmaj = h.driver_major, dmin = h.driver_minor;
        int had = h.have_driver;
        detect_gpus(&h);
        if (had) { /* an explicit --driver wins over nvidia-smi */
            h.driver_major = dmaj;
            h.driver_minor = dmin;
            h.have_driver = 1;
        }
    }
    if (!have_isa && need.isa_level) {
        struct kiln_buf b = {0};
        if (kiln_read_file("/proc/cpuinfo", 64u << 20, &b) == KILN_OK)
            h.cpu_isa = kiln_hostcheck_parse_cpuinfo(b.data, b.len);
        kiln_buf_free(&b);
    }
    struct kiln_error e;
    kiln_error_clear(&e);
    int rc = kiln_hostcheck(&h, &need, &e);
    if (rc != KILN_OK && rc != KILN_ECONFLICT) {
        fprintf(stderr, "kiln selftest host: %s\n", e.msg);
        return KILN_EXIT_USAGE;
    }
    return host_verdict(&h, rc, &e, json);
}

static int emit_doc(json_t *doc, const char *outp)
{
    print_json(doc, stdout);
    int rc = json_is_true(json_object_get(doc, "ok")) ? KILN_EXIT_OK : KILN_EXIT_FAIL;
    if (outp) {
        char *s = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (!s || kiln_write_file_atomic(outp, s, strlen(s), 0644) != KILN_OK) {
            fprintf(stderr, "kiln selftest run: cannot write %s\n", outp);
            rc = KILN_EXIT_INTERNAL;
        }
        free(s);
    }
    return rc;
}

/* --spec: the recipe's selftest object (or a variant holding one under
 * "selftest"), as the worker gets it in a lease. */
static int run_spec_mode(const char *specp, const char *stdir, char *const *binary_args,
                         const char *workdir, int detect_host, const char *logp, const char *outp)
{
    json_error_t je;
    json_t *root = json_load_file(specp, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        fprintf(stderr, "kiln selftest run: %s:%d:%d: %s\n", specp, je.line, je.column, je.text);
        return KILN_EXIT_USAGE;
    }
    json_t *sp = json_object_get(root, "selftest");
    if (!json_is_object(sp)) sp = root;
    struct kiln_selftest_spec spec;
    struct kiln_error e;
    if (kiln_selftest_spec_parse(sp, &spec, &e) != KILN_OK) {
        fprintf(stderr, "kiln selftest run: %s: %s\n", specp, e.msg);
        json_decref(root);
        return KILN_EXIT_USAGE;
    }
    json_decref(root);
    struct kiln_host_facts facts;
    memset(&facts, 0, sizeof facts);
    if (detect_host) {
        detect_gpus(&facts);
        struct kiln_buf b = {0};
        if (kiln_read_file("/proc/cpuinfo", 64u << 20, &b) == KILN_OK)
            facts.cpu_isa = kiln_hostcheck_parse_cpuinfo(b.data, b.len);
        kiln_buf_free(&b);
    }
    json_t *doc = NULL;
    int rc;
    if (kiln_selftest_run_spec(&spec, detect_host ? &facts : NULL, stdir, binary_args, workdir,
                               logp, &doc, &e) != KILN_OK) {
        fprintf(stderr, "kiln selftest run: %s\n", e.msg);
        rc = KILN_EXIT_INTERNAL;
    } else {
        rc = emit_doc(doc, outp);
        json_decref(doc);
    }
    kiln_selftest_spec_free(&spec);
    return rc;
}

static int cmd_run(int argc, char **argv)
{
    struct kiln_selftest_opts o;
    memset(&o, 0, sizeof o);
    const char **checks = calloc((size_t)argc + 1, sizeof *checks);
    const char **inspect = calloc((size_t)argc + 1, sizeof *inspect);
    char **syms = NULL;
    size_t nsyms = 0;
    const char *outp = NULL, *specp = NULL, *stdir = NULL;
    int detect_host = 0;
    const char *workdir = NULL;
    int rc = KILN_EXIT_USAGE;
    if (!checks || !inspect) {
        rc = KILN_EXIT_INTERNAL;
        goto out;
    }
    o.checks = checks;
    o.inspect = inspect;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) {
            o.binary_args = &argv[i + 1];
            break;
        } else if (strcmp(a, "--binary") == 0 && v) {
            o.binary = v;
            i++;
        } else if (strcmp(a, "--spec") == 0 && v) {
            specp = v;
            i++;
        } else if (strcmp(a, "--workdir") == 0 && v) {
            workdir = v;
            i++;
        } else if (strcmp(a, "--selftest-dir") == 0 && v) {
            stdir = v;
            i++;
        } else if (strcmp(a, "--detect-host") == 0) {
            detect_host = 1;
        } else if (strcmp(a, "--check") == 0 && v) {
            checks[o.nchecks++] = v;
            i++;
        } else if (strcmp(a, "--inspect") == 0 && v) {
            inspect[o.ninspect++] = v;
            i++;
        } else if (strcmp(a, "--expect-sm") == 0 && v) {
            if (parse_sm_arg(a, v, &o.inspect_opts.expect_sm)) goto out;
            i++;
        } else if (strcmp(a, "--expect-symbols") == 0 && v) {
            struct kiln_error e;
            kiln_elfsym_split_free(syms, nsyms);
            if (kiln_elfsym_split(v, &syms, &nsyms, &e) != KILN_OK) {
                fprintf(stderr, "kiln selftest run: --expect-symbols: %s\n", e.msg);
                goto out;
            }
            i++;
        } else if (strcmp(a, "--timeout") == 0 && v) {
            char *end;
            double s = strtod(v, &end);
            if (*end || !(s > 0 && s <= 86400)) {
                fprintf(stderr, "kiln selftest run: bad --timeout \"%s\" (seconds)\n", v);
                goto out;
            }
            o.timeout_ms = (long)(s * 1000);
            i++;
        } else if (strcmp(a, "--log") == 0 && v) {
            o.log_path = v;
            i++;
        } else if (strcmp(a, "--out") == 0 && v) {
            outp = v;
            i++;
        } else if (strcmp(a, "--help") == 0) {
            usage(stdout);
            rc = KILN_EXIT_OK;
            goto out;
        } else {
            fprintf(stderr, "kiln selftest run: unknown or incomplete option \"%s\"\n", a);
            goto out;
        }
    }
    if (specp) {
        if (o.binary || o.nchecks || o.ninspect || o.inspect_opts.expect_sm || nsyms) {
            fprintf(stderr, "kiln selftest run: --spec replaces --binary, --check, --inspect and "
                            "--expect-*\n");
            goto out;
        }
        rc = run_spec_mode(specp, stdir, o.binary_args, workdir, detect_host, o.log_path, outp);
        goto out;
    }
    if (workdir || stdir || detect_host) {
        fprintf(stderr,
                "kiln selftest run: --workdir, --selftest-dir and --detect-host need --spec\n");
        goto out;
    }
    if ((o.inspect_opts.expect_sm || nsyms) && !o.ninspect) {
        fprintf(stderr, "kiln selftest run: --expect-sm/--expect-symbols need --inspect FILE\n");
        goto out;
    }
    o.inspect_opts.symbols = syms;
    o.inspect_opts.nsymbols = nsyms;
    json_t *doc = NULL;
    struct kiln_error e;
    if (kiln_selftest_run(&o, &doc, &e) != KILN_OK) {
        fprintf(stderr, "kiln selftest run: %s\n", e.msg);
        rc = e.code == KILN_EINVAL ? KILN_EXIT_USAGE : KILN_EXIT_INTERNAL;
        goto out;
    }
    rc = emit_doc(doc, outp);
    json_decref(doc);
out:
    kiln_elfsym_split_free(syms, nsyms);
    free(checks);
    free(inspect);
    return rc;
}

int cmd_selftest(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? KILN_EXIT_USAGE : KILN_EXIT_OK;
    }
    if (strcmp(argv[1], "inspect") == 0) return cmd_inspect(argc - 1, argv + 1);
    if (strcmp(argv[1], "host") == 0) return cmd_host(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
    fprintf(stderr, "kiln selftest: unknown subcommand \"%s\" (inspect, host, run)\n", argv[1]);
    return KILN_EXIT_USAGE;
}
