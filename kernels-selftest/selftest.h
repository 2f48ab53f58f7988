/* selftest.h - the kernels-selftest front: inspect artifacts, run the GPU
 * selftest and recipe checks, and describe the outcome as one JSON document.
 *
 * Contract: the worker (and `kiln selftest`) call these; they never exit and
 * never print. They block until every command finished or was killed at
 * its timeout (minutes for a real selftest), so an event loop calls them
 * from a worker thread (uv_queue_work), never on the loop thread. Both return KILN_OK whenever they
 * produced a document, also when the document says the artifact failed ("ok": false, with
 * "reasons": plain sentences); they return an error only for bad arguments or when no document
 * could be made (out of memory).
 *
 * kiln_selftest_inspect(): for each file (ELF .so/executable/object, cubin or
 * raw fatbin) list cubins and PTX; with expect_sm, every file that holds
 * device code must have a cubin or PTX usable on that SM (and at least one
 * file must hold device code); with symbols, every pattern must match a
 * defined symbol of some file (host .symtab/.dynsym or an uncompressed cubin
 * inside it; matching rules in elfsym.h). Document:
 *   {"ok":bool,"reasons":[..],"files":[{"file","ok","error"?,"cubins":[..],
 *    "ptx":[{"target","isa"}],"entries":[..],"expect_sm"?:{"sm","ok","how"|"reason"}}],
 *    "symbols"?:{"ok","found":{pattern:symbol},"missing":[..]}}
 *
 * kiln_selftest_run(): runs `binary --json-file TMP` (kiln-selftest, see
 * kselftest.cu) with a timeout, then each check command, all output appended
 * to log_path, plus kiln_selftest_inspect() when files are given. The
 * inspection runs in a child process under the same timeout: if it dies by
 * a signal or hangs, the document fails with the plain reason "inspection
 * crashed on FILE" (or "inspection timed out on FILE after N s") and
 * "inspect":{"crashed":{"file","signal"}} - a verdict on the artifact, not
 * an error of the machine (KILN_OK is still returned). Document:
 *   {"ok":bool,"reasons":[..],"selftest":{..kiln-selftest JSON..}|null,
 *    "selftest_run":{"exit_code","timed_out","seconds","reason"},
 *    "checks":[{"name","command","ok","exit_code","timed_out","seconds","reason"}],
 *    "inspect":{..}?}
 */
#ifndef KILN_SELFTEST_H
#define KILN_SELFTEST_H

#include "common/err.h"
#include "kernels-selftest/hostcheck.h"

#include <jansson.h>
#include <stddef.h>

struct kiln_inspect_opts {
    unsigned expect_sm;   /* 0: no SM expectation */
    char *const *symbols; /* patterns, may be NULL */
    size_t nsymbols;
};

int kiln_selftest_inspect(const char *const *paths, size_t npaths,
                          const struct kiln_inspect_opts *opts, json_t **out,
                          struct kiln_error *err);

struct kiln_selftest_opts {
    const char *binary;             /* kiln-selftest-smXX; NULL: no GPU selftest */
    char *const *binary_args;       /* extra args (e.g. "--device", "1"), NULL-terminated or NULL */
    long timeout_ms;                /* per command; <= 0: 120 s */
    const char *log_path;           /* NULL: a temporary file, removed afterwards */
    const char *cwd;                /* where the binary and checks run; NULL: inherit */
    const char *const *checks;      /* shell commands, may be NULL */
    const char *const *check_names; /* names for the document, may be NULL */
    const long *check_timeouts_ms;  /* per check (<= 0: timeout_ms), may be NULL */
    size_t nchecks;
    const char *const *inspect; /* files to inspect, may be NULL */
    size_t ninspect;
    struct kiln_inspect_opts inspect_opts;
    /* Test seam, NULL in production: called in the inspection child with
     * each file's path once the file is mapped, before it is parsed. The
     * unit test truncates the file there, so the parser meets a real
     * SIGBUS, and checks the "inspection crashed on FILE" verdict. */
    void (*inspect_hook)(const char *path, void *arg);
    void *inspect_hook_arg;
};

int kiln_selftest_run(const struct kiln_selftest_opts *o, json_t **out, struct kiln_error *err);

/* The recipe's selftest spec as the lease carries it (docs/API.md):
 *   {"sm":"90","sm_compat":false,"isa":"avx512","driver_min":560,
 *    "checks":[{"name":"import","command":"...","timeout_s":120}],
 *    "expect_symbols":["scaled_fp4_quant"],"artifact_globs":["lib/python3.12/site-packages/vllm/_C*.so"]}
 * (sm and driver_min may be strings or numbers; every key is optional
 * except that a non-object is an error). Unknown keys are ignored. */
struct kiln_selftest_spec {
    unsigned sm; /* 0: none */
    int sm_compat;
    char *isa; /* NULL: none */
    unsigned driver_min;
    size_t nchecks;
    char **check_names, **check_commands;
    long *check_timeouts_ms;
    char **symbols;
    size_t nsymbols;
    char **globs;
    size_t nglobs;
};

#define KILN_SELFTEST_SPEC_MAX_ITEMS 1000

int kiln_selftest_spec_parse(const json_t *spec, struct kiln_selftest_spec *out,
                             struct kiln_error *err);
void kiln_selftest_spec_free(struct kiln_selftest_spec *s);

/* What the worker calls for a test-stage job: check the host facts against
 * the spec (facts may be NULL to skip), run `selftest_dir/kiln-selftest-smNN`
 * for the spec's SM (when selftest_dir is given; a missing binary is a
 * failure naming it) with binary_args (e.g. --device N), run the checks in
 * workdir, and inspect the files matching artifact_globs (relative to
 * workdir unless absolute, e.g. "result-NAME/lib/python3.12/site-packages/
 * vllm/_C.abi3.so": the worker makes the result-NAME link to the build's
 * output first) with the spec's SM and expected symbols; no match while
 * globs or symbols are given is a failure. Document as kiln_selftest_run()
 * plus "host": {"ok","reason"}. Template-expanded empty strings ("sm": "",
 * "isa": "", "driver_min": "") mean "none". */
int kiln_selftest_run_spec(const struct kiln_selftest_spec *spec,
                           const struct kiln_host_facts *facts, const char *selftest_dir,
                           char *const *binary_args, const char *workdir, const char *log_path,
                           json_t **out, struct kiln_error *err);

#endif
