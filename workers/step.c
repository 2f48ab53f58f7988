/* step.c - the Slurm accounting figure a step reports (see step.h). */
#include "workers/step.h"

#include "common/buf.h"
#include "common/spawn.h"
#include "common/units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kiln_step_slurm_peak(uint64_t *bytes, struct kiln_error *err)
{
    *bytes = 0;
    const char *id = getenv("SLURM_JOB_ID");
    if (!id || !*id || strlen(id) > 32 || strspn(id, "0123456789") != strlen(id))
        return kiln_fail(err, KILN_ENOTFOUND, "not inside a Slurm job (no SLURM_JOB_ID)");
    char step[48];
    snprintf(step, sizeof step, "%s.batch", id);
    char *argv[] = {"sstat", "-n", "-P", "-o", "MaxRSS", "-j", step, NULL};
    struct kiln_spawn_spec spec = {.argv = argv, .err_fd = KILN_SPAWN_NULL};
    struct kiln_buf out = {0};
    struct kiln_spawn_result r;
    int rc = kiln_spawn_capture(&spec, 10000, 4096, &out, &r, err);
    if (!rc) rc = kiln_spawn_status(&r, "sstat", err);
    if (rc) {
        kiln_buf_free(&out);
        return rc == KILN_EUNSUPPORTED ? rc : kiln_fail(err, KILN_EIO, "%s", err->msg);
    }
    /* "211884K\n": the first line; Slurm's K/M/G are binary units */
    char line[64] = "";
    if (out.data) snprintf(line, sizeof line, "%.*s", (int)out.len, out.data);
    kiln_buf_free(&out);
    line[strcspn(line, "\r\n|")] = '\0';
    if (!line[0]) return kiln_fail(err, KILN_ENOTFOUND, "sstat has no MaxRSS for %s", step);
    if (kiln_parse_size(line, bytes))
        return kiln_fail(err, KILN_EPARSE, "sstat's MaxRSS '%s' is not a size", line);
    if (!*bytes) return kiln_fail(err, KILN_ENOTFOUND, "sstat's MaxRSS for %s is 0", step);
    return KILN_OK;
}
