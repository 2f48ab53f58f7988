/* libFuzzer target: arbitrary bytes as a `kiln serve --trace` file, fed line
 * by line to the replay (scheduler/trace.h): the decoder and every placer
 * input it can produce, in any order. */
#include "scheduler/trace.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kiln_replay *r;
    struct kiln_error e;
    if (kiln_replay_new(&r, &e)) return 0;
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n') continue;
        json_error_t je;
        json_t *o = json_loadb((const char *)data + start, i - start, 0, &je);
        start = i + 1;
        if (!o) continue;
        int rc = kiln_replay_line(r, o, &e);
        json_decref(o);
        if (rc) break;
    }
    kiln_replay_end(r, &e);
    struct kiln_replay_stats st;
    kiln_replay_stats(r, &st);
    kiln_replay_free(r);
    return 0;
}
