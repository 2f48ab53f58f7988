/* libFuzzer target: job-submission validation (scheduler/jobspec.c). Any
 * input must give a valid spec or a clear error - never a crash or leak. */
#include "state/jobspec.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kiln_jobspec spec;
    struct kiln_error err = {0};
    if (kiln_jobspec_parse((const char *)data, size, &spec, &err) == KILN_OK) {
        /* an ad-hoc submission is one job or a batch of at most the cap */
        size_t n = json_array_size(spec.jobs);
        if (spec.kind == KILN_JOBSPEC_ADHOC && (n < 1 || n > KILN_JOBSPEC_MAX_BATCH))
            __builtin_trap();
        kiln_jobspec_free(&spec);
    } else if (!err.msg[0]) {
        __builtin_trap(); /* every failure names the problem */
    }
    /* The same bytes as a recipe variant. */
    json_t *v = json_loadb((const char *)data, size, 0, NULL);
    if (v) {
        json_t *job = NULL;
        if (kiln_jobspec_from_variant(v, 0, "c0ffee", &job, NULL) == KILN_OK) json_decref(job);
        json_decref(v);
    }
    return 0;
}
