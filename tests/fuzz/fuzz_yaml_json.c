/* libFuzzer target: arbitrary bytes through the YAML -> JSON reader. */
#include "common/yaml_json.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = NULL;
    struct kiln_error e;
    if (kiln_yaml_to_json("fuzz.yaml", (const char *)data, size, &j, &e) == KILN_OK) json_decref(j);
    return 0;
}
