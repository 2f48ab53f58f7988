/* libFuzzer target: the JSON bodies a worker sends (server/worker_body.h),
 * a lease offer and reports, the way the API reads them: the body as an
 * offer, as one report, and each item of its "reports" array as a report.
 * Checks, beside memory safety, that what parses stays in the ranges the
 * contract names. */
#include "server/worker_body.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_report(json_t *o)
{
    struct kiln_report r;
    struct kiln_error err = {0};
    if (kiln_report_parse(o, &r, &err) != KILN_OK) {
        if (!err.msg[0]) abort(); /* a refusal always says why */
        return;
    }
    if (r.exit_code < -1 || r.exit_code > 255 || r.signal < 0 || r.signal > 128) abort();
    if (r.reason && strlen(r.reason) > 4000) abort();
    if (r.selftest && !json_is_object(r.selftest)) abort();
    if (r.outputs && !json_is_array(r.outputs)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *o =
        json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (!o) return 0;
    struct kiln_offer off;
    struct kiln_error err = {0};
    if (kiln_offer_parse(o, &off, &err) == KILN_OK) {
        if (off.free_cores < -1 || off.free_ram_mb < -1) abort();
        if (off.nfree_gpus < 0 || off.nfree_gpus > KILN_MAX_GPUS) abort();
        for (int i = 0; i < off.nfree_gpus; i++)
            if (off.free_gpus[i] < 0 || off.free_gpus[i] > 31) abort();
    } else if (!err.msg[0]) {
        abort();
    }
    check_report(o);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(o, "reports"), i, v) check_report(v);
    json_decref(o);
    return 0;
}
