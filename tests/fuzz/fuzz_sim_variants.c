/* libFuzzer target: arbitrary bytes as the variant JSON `kiln sim --variants`
 * reads, simulated on a small fixed farm. */
#include "scheduler/farm.h"
#include "scheduler/sim.h"

#include <stddef.h>
#include <stdint.h>

static const char FARM[] = "hosts:\n"
                           "  - {name: b, count: 2, cores: 32, ram: 128GiB, isa: avx512}\n"
                           "  - {name: a, cores: 16, ram: 64GiB, isa: armv9}\n"
                           "  - name: g\n"
                           "    cores: 8\n"
                           "    ram: 64GiB\n"
                           "    isa: [avx512bf16, avx512vnni]\n"
                           "    builds: false\n"
                           "    gpus: [{sm: 90, driver: 580}, {sm: 86, driver: 550}]\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kiln_farm f;
    struct kiln_error e;
    if (size > 1 << 20) return 0;
    if (kiln_farm_parse("farm.yaml", FARM, sizeof FARM - 1, &f, &e)) return 0;
    json_t *v = json_loadb((const char *)data, size, 0, NULL);
    if (v) {
        struct kiln_sim_result r;
        if (!kiln_sim_run(&f, v, NULL, &r, &e)) {
            json_t *j = kiln_sim_json(&r, 1);
            json_decref(j);
            kiln_sim_result_free(&r);
        }
        json_decref(v);
    }
    kiln_farm_free(&f);
    return 0;
}
