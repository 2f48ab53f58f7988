/* config.h - the worker's configuration: file, flags and host overrides.
 *
 * Contract:
 * - struct kiln_worker_config holds everything `kiln worker` needs. Zeroed
 *   plus kiln_worker_config_defaults() is a valid config (no server yet).
 * - kiln_worker_config_load() reads a YAML (or JSON) file:
 *     server: https://kiln.example.org     token_file: /etc/kiln/worker.token
 *     name: build-1   cores: 32   ram: 200G   max_jobs: 4   work_dir: /var/lib/kiln-worker
 *     isa: [avx, avx2, fma, f16c]   gpus: none | [{index: 0, name: .., sm: "90", memory_mb: ..,
 * driver: ..}] labels: {rack: a1}   limit_method: auto|cgroup2|cgroup1|poll   ca_file: ..
 *     heartbeat_s: 5   lease_wait_s: 10   reserve_ram: 2G   log_level: info
 *     min_disk_free: 2G   (no new job while work_dir or /nix/store has less)
 *     keep_job_dirs: 20   (finished jobs' directories with files kept, newest
 *       first; older ones are removed; -1 keeps all; workers/retain.h)
 *     source_dir: /srv/recipes-checkout  (commands run from here: recipe
 *       commands are relative to their repository root)
 *     selftest_dir: /usr/local/lib/kiln/selftest  (kiln-selftest-smNN)
 *   Unknown keys and bad values are errors naming the key.
 * - Command-line flags are applied after the file, so they win.
 * - kiln_worker_config_apply() lays the overrides over a detected host.
 * - Sizes: "512M", "200G", "1.5GiB", "1024" (plain number = MiB).
 */
#ifndef KILN_WORKERS_CONFIG_H
#define KILN_WORKERS_CONFIG_H

#include "common/err.h"
#include "workers/detect.h"

#include <jansson.h>
#include <stdint.h>

enum kiln_limit_method {
    KILN_LIMIT_AUTO = 0,
    KILN_LIMIT_CGROUP2,
    KILN_LIMIT_CGROUP1,
    KILN_LIMIT_POLL,
};

struct kiln_worker_config {
    char server[512];
    char token[128];
    char ca_file[512];
    char name[128];
    char work_dir[512];
    char source_dir[512];   /* "" = each job runs in its own dir under work_dir */
    char selftest_dir[512]; /* kiln-selftest-smNN binaries; "" = <kiln dir>/selftest */
    int cores;              /* 0 = detected */
    long ram_mb;            /* 0 = detected */
    long reserve_ram_mb;    /* kept back for the OS and the worker itself */
    int max_jobs;           /* 0 = as cores and RAM allow */
    int isa_set;            /* isa below overrides detection */
    uint32_t isa;
    int gpus_set; /* gpus below override detection (ngpus may be 0: "none") */
    int ngpus;
    struct kiln_gpu gpus[KILN_MAX_GPUS];
    json_t *labels; /* object, owned; NULL = none */
    enum kiln_limit_method limit_method;
    int heartbeat_s;       /* 0 = server's */
    int lease_wait_s;      /* long-poll length */
    long min_disk_free_mb; /* take no job below this free space */
    int keep_job_dirs;     /* finished jobs' dirs with files kept (20); -1 all */
    int stage_outputs;     /* 1 (default): stage build outputs on the server (workers/stage.h) */
    int stage_stall_s;     /* a staging upload silent this long is retried (20) */
    char log_level[16];
    /* Step mode (issue 17, the Slurm executor): run exactly this one lease
     * (the object a lease answer carries as "job") for worker step_worker_id,
     * then exit. No register, heartbeat or lease: the server's executor
     * speaks for the worker; this process only streams the log and reports.
     * Cores come from the cluster's grant (SLURM_CPUS_PER_TASK), the RAM limit
     * is the cluster's to enforce. NULL = the normal agent. Owned. */
    json_t *step_lease;
    long step_worker_id;
};

void kiln_worker_config_defaults(struct kiln_worker_config *c);
void kiln_worker_config_free(struct kiln_worker_config *c);
/* Fill c from a parsed config document (an object). */
int kiln_worker_config_from_json(struct kiln_worker_config *c, json_t *doc, struct kiln_error *err);
int kiln_worker_config_load(struct kiln_worker_config *c, const char *path, struct kiln_error *err);
/* Apply overrides (cores, ram, isa, gpus) to a detected host. */
void kiln_worker_config_apply(const struct kiln_worker_config *c, struct kiln_host *h);

int kiln_limit_method_parse(const char *s, enum kiln_limit_method *out);
const char *kiln_limit_method_name(enum kiln_limit_method m);

/* "200G" -> bytes. Plain numbers are MiB. */
int kiln_size_parse(const char *s, uint64_t *bytes, struct kiln_error *err);
/* bytes -> "1 GiB", "1.9 GiB", "512 MiB", "300 KiB", "12 B". */
void kiln_size_format(uint64_t bytes, char *out, size_t outlen);

#endif
