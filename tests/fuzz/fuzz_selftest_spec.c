/* libFuzzer target for kiln_selftest_spec_parse(): the recipe's selftest
 * object arrives from the server in a lease; any JSON must parse or be
 * refused with a sentence. */
#include "kernels-selftest/selftest.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t je;
    json_t *j = json_loadb((const char *)data, size, 0, &je);
    if (!j) return 0;
    struct kiln_selftest_spec s;
    struct kiln_error err;
    if (kiln_selftest_spec_parse(j, &s, &err) == KILN_OK)
        kiln_selftest_spec_free(&s);
    else if (!err.msg[0])
        __builtin_trap(); /* every refusal must say why */
    json_decref(j);
    return 0;
}
