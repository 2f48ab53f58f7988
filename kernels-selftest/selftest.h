/* selftest.h - the kernels-selftest front: inspect artifacts, run the GPU
 * selftest and recipe checks, and describe the outcome as one JSON document.
 *
 * Contract: the worker (and `kiln selftest`) call these; they never exit and
 * never print. Both return KILN_OK whenever they produced a document, also
 * when the document says the artifact failed ("ok": false, with "reasons":
 * plain sentences); they return an error only for bad arguments or when no
 * document could be made (out of memory).
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
 * to log_path, plus kiln_selftest_inspect() when files are given. Document:
 *   {"ok":bool,"reasons":[..],"selftest":{..kiln-selftest JSON..}|null,
 *    "selftest_run":{"exit_code","timed_out","seconds","reason"},
 *    "checks":[{"name","command","ok","exit_code","timed_out","seconds","reason"}],
 *    "inspect":{..}?}
 */
#ifndef KILN_SELFTEST_H
#define KILN_SELFTEST_H

#include "common/err.h"

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
    const char *binary;        /* kiln-selftest-smXX; NULL: no GPU selftest */
    char *const *binary_args;  /* extra args (e.g. "--device", "1"), NULL-terminated or NULL */
    long timeout_ms;           /* per command; <= 0: 120 s */
    const char *log_path;      /* NULL: a temporary file, removed afterwards */
    const char *const *checks; /* shell commands, may be NULL */
    size_t nchecks;
    const char *const *inspect; /* files to inspect, may be NULL */
    size_t ninspect;
    struct kiln_inspect_opts inspect_opts;
};

int kiln_selftest_run(const struct kiln_selftest_opts *o, json_t **out, struct kiln_error *err);

#endif
