/* libFuzzer target: arbitrary bytes as a farm file; a farm that parses is
 * then simulated with a small fixed variant set (placement over odd farms). */
#include "scheduler/farm.h"
#include "scheduler/sim.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kiln_farm f;
    struct kiln_error e;
    if (kiln_farm_parse("fuzz.yaml", (const char *)data, size, &f, &e)) return 0;
    json_t *v = json_loads(
        "[{\"name\":\"t\",\"platform\":\"x86_64-linux\",\"resources\":{\"cores\":8,"
        "\"ram_mb\":8192,\"est_duration_s\":60}},"
        "{\"name\":\"v\",\"platform\":\"x86_64-linux\",\"depends\":[\"t\"],"
        "\"resources\":{\"cores\":16,\"ram_mb\":65536,\"est_duration_s\":90},"
        "\"selftest\":{\"sm\":\"90\",\"sm_compat\":true,\"isa\":\"avx2\",\"driver_min\":560}},"
        "{\"name\":\"a\",\"platform\":\"aarch64-linux\",\"resources\":{\"cores\":4,"
        "\"ram_mb\":1024},\"selftest\":{\"sm\":\"100a\",\"isa\":\"armv9\"}}]",
        0, NULL);
    if (v) {
        struct kiln_sim_result r;
        if (!kiln_sim_run(&f, v, NULL, &r, &e)) {
            struct kiln_buf b = {0};
            kiln_sim_svg(&f, &r, "fuzz", &b);
            kiln_buf_free(&b);
            kiln_sim_result_free(&r);
        }
        json_decref(v);
    }
    kiln_farm_free(&f);
    return 0;
}
