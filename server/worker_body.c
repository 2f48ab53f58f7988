/* worker_body.c - the JSON bodies a worker sends (worker_body.h). */
#include "server/worker_body.h"

#include "common/json_field.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

int kiln_offer_parse(json_t *o, struct kiln_offer *off, struct kiln_error *err)
{
    *off = (struct kiln_offer){.free_cores = -1, .free_ram_mb = -1};
    long long cores, ram, g;
    json_t *gpus, *v;
    size_t i;
    int rc;
    if ((rc = kiln_json_field_int(o, "free_cores", 0, INT_MAX, -1, &cores, err)) ||
        (rc = kiln_json_field_int(o, "free_ram_mb", 0, INT64_MAX, -1, &ram, err)) ||
        (rc = kiln_json_field_array(o, "free_gpus", 0, &gpus, err)))
        return rc;
    if (json_array_size(gpus) > KILN_MAX_GPUS)
        return kiln_fail(err, KILN_EINVAL, "free_gpus: at most %d GPU indexes", KILN_MAX_GPUS);
    json_array_foreach(gpus, i, v)
    {
        if ((rc = kiln_json_want_int(v, "free_gpus[]", 0, 31, 0, &g, err))) return rc;
        off->free_gpus[off->nfree_gpus++] = (int)g;
    }
    off->gpus_given = gpus != NULL;
    off->free_cores = (int)cores;
    off->free_ram_mb = ram;
    return KILN_OK;
}

int kiln_report_parse(json_t *o, struct kiln_report *r, struct kiln_error *err)
{
    *r = (struct kiln_report){.peak_ram_mb = -1, .cpu_s = -1};
    long long attempt, code, sig, peak;
    int infra;
    const char *stage, *reason;
    json_t *cpu = json_object_get(o, "cpu_s");
    json_t *selftest = json_object_get(o, "selftest"), *outputs;
    int rc = 0;
    if (!json_is_object(o))
        rc = kiln_fail(err, KILN_EINVAL, "a report must be a JSON object");
    else if (!json_is_integer(json_object_get(o, "attempt")))
        rc = kiln_fail(err, KILN_EINVAL, "attempt: is required and must be an integer");
    else if ((rc = kiln_json_field_int(o, "attempt", INT64_MIN, INT64_MAX, 0, &attempt, err)) ||
             (rc = kiln_json_field_int(o, "exit_code", -1, 255, 0, &code, err)) ||
             (rc = kiln_json_field_int(o, "signal", 0, 128, 0, &sig, err)) ||
             (rc = kiln_json_field_int(o, "peak_ram_mb", INT64_MIN, INT64_MAX, -1, &peak, err)) ||
             (rc = kiln_json_field_str(o, "stage", 0, &stage, err)) ||
             (rc = kiln_json_field_str(o, "reason", 0, &reason, err)) ||
             (rc = kiln_json_field_bool(o, "infra", 0, &infra, err)) ||
             (rc = kiln_json_field_array(o, "outputs", 0, &outputs, err)))
        ;
    else if (reason && strlen(reason) > 4000)
        rc = kiln_fail(err, KILN_EINVAL, "reason: must be a string of at most 4000 bytes");
    else if (cpu && !json_is_null(cpu) && !json_is_number(cpu))
        rc = kiln_fail(err, KILN_EINVAL, "cpu_s: must be a number");
    else if (selftest && !json_is_null(selftest) && !json_is_object(selftest))
        rc = kiln_fail(err, KILN_EINVAL, "selftest: must be an object or null");
    if (rc) return rc;
    r->attempt = attempt;
    r->stage = stage;
    r->exit_code = (int)code;
    r->signal = (int)sig;
    r->reason = reason;
    r->infra = infra;
    r->peak_ram_mb = peak;
    r->cpu_s = cpu && json_is_number(cpu) ? json_number_value(cpu) : -1;
    r->selftest = json_is_object(selftest) ? selftest : NULL;
    r->outputs = json_is_array(outputs) ? outputs : NULL;
    return KILN_OK;
}
