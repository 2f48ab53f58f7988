/* farm.h - a described farm (hosts, cores, RAM, CPU features, GPUs) for `kiln sim`.
 *
 * Contract: kiln_farm_parse() reads farm YAML (common/yaml_json.h, bounded)
 * into a struct kiln_farm; kiln_farm_from_json() does the same from a jansson
 * tree. Shape:
 *
 *   hosts:
 *     - name: build            # required; with count > 1 hosts are build-1..N
 *       count: 4               # default 1, at most KILN_FARM_MAX_COUNT
 *       platform: x86_64-linux # default: from the ISA level, else x86_64-linux
 *       cores: 64              # required, > 0
 *       ram: 256GiB            # or ram_mb: 262144; required
 *       isa: avx512bf16        # a recipe ISA level, or a list of levels and
 *                              # feature names ([avx512bf16, avx512_vnni])
 *       speed: 1.0             # relative speed (durations are divided by it)
 *       builds: false          # a test host: takes only test stages
 *       gpus:                  # optional
 *         - {model: H100, sm: "90", driver: 580, count: 8}
 *
 * Errors name the file and the host ("farm.yaml: hosts[2] (h100): cores must be
 * a positive integer"); unknown keys are refused so typos do not go unnoticed.
 * Hosts with count are expanded into separate struct kiln_farm_host entries.
 */
#ifndef KILN_FARM_H
#define KILN_FARM_H

#include "common/err.h"
#include "scheduler/placement.h"

#include <jansson.h>
#include <stddef.h>

#define KILN_FARM_MAX_HOSTS 4096
#define KILN_FARM_MAX_COUNT 1024

struct kiln_farm_host {
    char name[KILN_PLACE_NAME_MAX];
    char kind[KILN_PLACE_NAME_MAX]; /* the YAML entry's name (before -N) */
    char platform[KILN_PLACE_PLATFORM_MAX];
    int cores;
    int64_t ram_mb;
    uint32_t isa;
    double speed;
    int no_builds; /* builds: false - a test host */
    int ngpus;
    struct kiln_pgpu gpus[KILN_PLACE_MAX_GPUS];
    char gpu_model[KILN_PLACE_MAX_GPUS][24];
};

struct kiln_farm {
    struct kiln_farm_host *hosts;
    size_t nhosts;
};

/* text NULL: read the file at name. */
int kiln_farm_parse(const char *name, const char *text, size_t len, struct kiln_farm *out,
                    struct kiln_error *err);
int kiln_farm_from_json(const char *name, const json_t *root, struct kiln_farm *out,
                        struct kiln_error *err);
/* Add n more hosts like the first host whose kind (YAML name) or name is
 * `like` ("what if I add one?"). KILN_ENOTFOUND if there is none. */
int kiln_farm_add_like(struct kiln_farm *f, const char *like, int n, struct kiln_error *err);
/* Fill a placement worker (online, healthy, all free) for host i, id = i+1. */
void kiln_farm_worker(const struct kiln_farm *f, size_t i, struct kiln_pworker *w);
void kiln_farm_free(struct kiln_farm *f);

#endif
