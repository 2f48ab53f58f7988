/* libFuzzer target: `nix-store --dump-db` text (kiln_nar_parse_dump_db),
 * which the worker reads to describe a closure to the staging area. */
#include "nix/nar.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    json_t *out = NULL;
    struct kiln_error err = {0};
    if (kiln_nar_parse_dump_db(text, &out, &err) == KILN_OK) json_decref(out);
    free(text);
    return 0;
}
