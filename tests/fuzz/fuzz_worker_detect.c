/* libFuzzer target for the worker's text parsers: /proc/cpuinfo, meminfo,
 * nvidia-smi CSV, cgroup files, /proc/self/cgroup, /proc/<pid>/stat, sizes
 * and the worker config (JSON form). The first byte picks the parser. */
#include "workers/config.h"
#include "workers/detect.h"
#include "workers/limits.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned which = data[0] % 8;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char *s = malloc(len + 1); /* NUL-terminated copy for the C-string parsers */
    if (!s) return 0;
    memcpy(s, text, len);
    s[len] = '\0';
    struct kiln_error err;
    switch (which) {
    case 0: {
        uint32_t isa;
        int n;
        kiln_detect_parse_cpuinfo(text, len, &isa, &n, &err);
        break;
    }
    case 1: {
        uint64_t b;
        kiln_detect_parse_meminfo(text, len, &b, &err);
        kiln_detect_parse_mem_limit(s, &b, &err);
        break;
    }
    case 2: {
        struct kiln_gpu g[4];
        int n;
        kiln_detect_parse_smi_csv(text, len, g, 4, &n, &err);
        break;
    }
    case 3: {
        double c;
        kiln_detect_parse_cpu_max(s, &c, &err);
        char *nl = strchr(s, '\n');
        if (nl) {
            *nl = '\0';
            kiln_detect_parse_cfs(s, nl + 1, &c, &err);
        }
        break;
    }
    case 4: {
        char out[256];
        kiln_detect_parse_proc_cgroup(s, "memory", out, sizeof out);
        kiln_detect_parse_proc_cgroup(s, "", out, sizeof out);
        break;
    }
    case 5: {
        pid_t a, b, c;
        uint64_t r, t;
        kiln_limits_parse_stat(s, &a, &b, &c, &r, &t);
        break;
    }
    case 6: {
        uint64_t b;
        char out[32];
        if (kiln_size_parse(s, &b, &err) == KILN_OK) kiln_size_format(b, out, sizeof out);
        break;
    }
    default: {
        json_t *doc = json_loadb(text, len, 0, NULL);
        if (doc) {
            struct kiln_worker_config c;
            kiln_worker_config_defaults(&c);
            /* token_file would read arbitrary paths: not from fuzz input */
            if (!json_is_object(doc) || !json_object_get(doc, "token_file"))
                kiln_worker_config_from_json(&c, doc, &err);
            kiln_worker_config_free(&c);
            json_decref(doc);
        }
        break;
    }
    }
    free(s);
    return 0;
}
