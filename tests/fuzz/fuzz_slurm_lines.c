/* libFuzzer target: arbitrary bytes as squeue and sinfo lines (the Slurm
 * executor parses both from Slurm's output), and as a pool config. */
#include "slurm/executor.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[2048];
    size_t n = size < sizeof line - 1 ? size : sizeof line - 1;
    memcpy(line, data, n);
    line[n] = '\0';
    struct kiln_slurm_qjob q;
    if (!kiln_slurm_qjob_parse(line, &q)) {
        int64_t job, attempt;
        kiln_slurm_name_parse("it", q.name, &job, &attempt);
        char text[300];
        kiln_slurm_reason_text(q.reason, text, sizeof text);
        kiln_slurm_state_infra(q.state);
    }
    struct kiln_slurm_node nd;
    if (!kiln_slurm_node_parse(line, &nd)) {
        kiln_slurm_node_gpus(&nd, "gpu:h100");
        kiln_slurm_node_state_word(nd.state);
    }
    json_t *o = json_loadb((const char *)data, size, 0, NULL);
    if (o) {
        struct kiln_slurm_pool p;
        struct kiln_error e;
        if (!kiln_slurm_pool_parse(o, &p, &e)) {
            struct kiln_slurm_argv av;
            struct kiln_slurm_stage s = {.job = 1,
                                         .attempt = 1,
                                         .worker_id = 1,
                                         .stage = "test",
                                         .cores = 2,
                                         .ram_mb = 100,
                                         .timeout_s = 60,
                                         .gpu_sm = "90",
                                         .isa = "avx2"};
            kiln_slurm_sbatch_argv(&p, "/s.sh", &s, &av, &e);
        }
        json_decref(o);
    }
    return 0;
}
