/* registry.h - the worker registry (workers table) and the agent protocol's
 * register / heartbeat / lost-worker logic.
 *
 * Contract:
 * - Workers are identified by name; re-registering keeps the id. Register
 *   and heartbeat compare the worker's `running` list with the store: an
 *   entry whose job is still running on this worker with the same attempt
 *   stays attached; any other entry is returned in *cancel. A job the store
 *   thinks runs on the worker but that the worker does not list is requeued
 *   as an infrastructure failure (after register at once; after a heartbeat
 *   once the lease is older than policy.lease_ack_s, which is how a lease
 *   whose response never arrived comes back).
 * - kiln_registry_check_lost() marks workers silent for lost_after_s as lost
 *   and requeues their jobs. kiln_registry_grace() gives every known worker
 *   a fresh last_seen after a server restart so they can reconnect.
 * - Each change runs in one transaction with a "worker" event.
 */
#ifndef KILN_REGISTRY_H
#define KILN_REGISTRY_H

#include "state/jobs.h"

#include <jansson.h>
#include <stdint.h>

#define KILN_MAX_GPUS 16

struct kiln_gpu_info {
    int index;
    char sm[16];
    int driver_major;
    int64_t memory_mb;
};

struct kiln_worker_info {
    int64_t id;
    char name[128];
    char state[16]; /* online, draining, lost, offline */
    int cores;
    int64_t ram_mb;
    char platform[64];
    uint32_t isa_mask;
    int ngpus;
    struct kiln_gpu_info gpus[KILN_MAX_GPUS];
    int drain;
    int mem_pressure;
    int64_t disk_free_mb; /* -1 unknown */
    double last_seen;
    int cores_used; /* by jobs the store has running on it */
    int64_t ram_used_mb;
    uint32_t gpus_used; /* bit per gpu index */
};

int kiln_registry_register(struct kiln_jobs *j, json_t *body, double now, int64_t *id_out,
                           json_t **cancel_out, struct kiln_error *err);
/* KILN_ENOTFOUND for an unknown id (the worker must register again). */
int kiln_registry_heartbeat(struct kiln_jobs *j, int64_t id, json_t *body, double now,
                            json_t **cancel_out, int *drain_out, struct kiln_error *err);
int kiln_registry_check_lost(struct kiln_jobs *j, double now, double lost_after_s, int *n,
                             struct kiln_error *err);
/* The worker is alive (a lease request). last_seen: what the caller just
 * read; a mark under a second old is left as it is (no write). */
void kiln_registry_touch(struct kiln_jobs *j, int64_t id, double last_seen, double now);
int kiln_registry_grace(struct kiln_jobs *j, double now, struct kiln_error *err);
int kiln_registry_drain(struct kiln_jobs *j, int64_t id, int drain, double now,
                        struct kiln_error *err);
int kiln_registry_get(struct kiln_jobs *j, int64_t id, struct kiln_worker_info *out,
                      struct kiln_error *err);
/* All workers (caller frees *out with free()). */
int kiln_registry_all(struct kiln_jobs *j, struct kiln_worker_info **out, int *n,
                      struct kiln_error *err);
/* {"workers":[...]} as in docs/API.md. */
int kiln_registry_list(struct kiln_jobs *j, json_t **out, struct kiln_error *err);
int kiln_registry_worker_json(struct kiln_jobs *j, int64_t id, json_t **out,
                              struct kiln_error *err);

#endif
