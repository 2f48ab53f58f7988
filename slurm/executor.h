/* executor.h - the Slurm executor's policy: what a kiln stage becomes as a
 * Slurm job, and how Slurm's answers read. Pure: no I/O, no clock, no
 * globals; slurm_serve.c does the running.
 *
 * Why: DESIGN.md "Executors". kiln stays the planner (placement, matrix,
 * catalog, page); a site's Slurm runs the stages. A pool of the config's
 * `slurm:` section is one Slurm partition, seen by kiln's dispatch as one
 * worker ("slurm:<pool>") as large as the partition; Slurm then places each
 * stage on a node.
 *
 * Contract:
 * - kiln_slurm_pool_parse() reads one pool mapping; unknown keys and bad
 *   values are errors naming the key.
 * - kiln_slurm_sbatch_argv() builds the sbatch argv for one leased stage:
 *     --parsable --no-requeue --partition P --job-name kiln-<pool>-<job>-<attempt>
 *     --comment "kiln job=<id> attempt=<n> stage=<stage>" --cpus-per-task <cores>
 *     --mem <ram>M --time <minutes> [--gres gpu:<type>:1] [--constraint a&b]
 *     --output <out_dir>/kiln-%j.out --export ALL <extra args> <script>
 *     <kiln> worker --config <worker_config> --step <job>:<attempt> --step-worker <id>
 *   (--export=ALL of the trimmed environment slurm_cmd.h gives sbatch.)
 *   Every element is one argv entry (no shell ever reads them); user strings
 *   (the job's name, env, command) are not in it at all: the step fetches
 *   its lease from the server. --no-requeue because kiln requeues itself
 *   (as a new attempt, counted as an infrastructure failure).
 * - The job name encodes job and attempt so that after a restart kiln finds
 *   its jobs in squeue (kiln_slurm_name_parse) without any state of its own.
 * - kiln_slurm_reason_text() turns Slurm's pending reason into a sentence.
 */
#ifndef KILN_SLURM_EXECUTOR_H
#define KILN_SLURM_EXECUTOR_H

#include "common/err.h"

#include <jansson.h>
#include <limits.h>
#include <stdint.h>

#define KILN_SLURM_MAX_MAP 16
#define KILN_SLURM_MAX_EXTRA 8
#define KILN_SLURM_MAX_ARGV 48

struct kiln_slurm_pool {
    char name[64];      /* [A-Za-z0-9_.-] */
    char partition[64]; /* "" = the cluster's default */
    char kiln_bin[PATH_MAX];
    char worker_config[PATH_MAX]; /* worker YAML on the nodes: server, token_file, work_dir */
    char out_dir[PATH_MAX];       /* where Slurm writes kiln-%j.out (default /tmp) */
    char platform[64];            /* default x86_64-linux */
    int driver;                   /* driver major the GPU nodes have (default 999: any) */
    unsigned poll_ms;             /* squeue interval (default 1000) */
    int ngpu;
    struct {
        char sm[16];      /* "90" */
        char gres[64];    /* "gpu:h100" -> --gres=gpu:h100:1 */
        char feature[64]; /* "" or a node feature -> --constraint */
    } gpu[KILN_SLURM_MAX_MAP];
    int nisa;
    struct {
        char level[32];   /* kiln ISA level ("avx2") */
        char feature[64]; /* node feature ("x86-64-v3") */
    } isa[KILN_SLURM_MAX_MAP];
    int nextra;
    char extra[KILN_SLURM_MAX_EXTRA][128]; /* more sbatch arguments, one each */
};

int kiln_slurm_pool_parse(json_t *o, struct kiln_slurm_pool *p, struct kiln_error *err);

/* What one stage asks for, from the lease and the job's needs. */
struct kiln_slurm_stage {
    int64_t job, attempt, worker_id;
    const char *stage; /* "build" | "test" */
    int cores;
    int64_t ram_mb;
    double timeout_s;   /* <= 0: the partition's limit */
    const char *gpu_sm; /* "" = none */
    const char *isa;    /* "" = any */
};

struct kiln_slurm_argv {
    const char *argv[KILN_SLURM_MAX_ARGV + 1];
    char text[8192];
};

/* KILN_EINVAL when the stage needs an SM or ISA level the pool does not map. */
int kiln_slurm_sbatch_argv(const struct kiln_slurm_pool *p, const char *script,
                           const struct kiln_slurm_stage *s, struct kiln_slurm_argv *out,
                           struct kiln_error *err);

/* "kiln-<pool>-<job>-<attempt>" */
void kiln_slurm_job_name(const char *pool, int64_t job, int64_t attempt, char *out, size_t n);
/* 1 when name is one of the pool's, with *job and *attempt set. */
int kiln_slurm_name_parse(const char *pool, const char *name, int64_t *job, int64_t *attempt);

/* One line of `squeue -h -o %i|%j|%T|%r|%N`. */
struct kiln_slurm_qjob {
    int64_t slurm_id;
    char name[128];
    char state[32];  /* PENDING, RUNNING, NODE_FAIL... */
    char reason[64]; /* Resources, Priority, None... */
    char nodes[128];
};
/* 0 on a well-formed line. */
int kiln_slurm_qjob_parse(const char *line, struct kiln_slurm_qjob *q);

/* 1 for states in which the stage is gone for a reason outside the job
 * (NODE_FAIL, BOOT_FAIL, PREEMPTED, DEADLINE, REVOKED): requeue it. */
int kiln_slurm_state_infra(const char *state);
/* 1 for any final state (COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, ...). */
int kiln_slurm_state_final(const char *state);

/* Slurm's pending reason ("Resources", "Priority", "ReqNodeNotAvail, ...")
 * as a plain sentence. */
void kiln_slurm_reason_text(const char *reason, char *out, size_t n);

/* One line of `sinfo -h -N -o %N|%c|%m|%G|%f|%t|%P|%C|%a` (node, cpus, MiB,
 * gres, features, short state, partition, CPUs allocated/idle/other/total,
 * partition availability). The last three may be missing (older callers):
 * then partition and avail are "" and cpus_alloc is 0. */
struct kiln_slurm_node {
    char name[64];
    int cpus;
    int64_t ram_mb;
    char gres[128];
    char features[256];
    char state[32];     /* Slurm's short state: idle, mix, alloc, down*, drain... */
    char partition[64]; /* without the default mark '*' */
    int cpus_alloc;
    char avail[16]; /* the partition's: up, down, drain, inact */
};
int kiln_slurm_node_parse(const char *line, struct kiln_slurm_node *n);
/* Slurm's short node state as one word people read: "idle", "mixed",
 * "alloc", "down" (also not responding, '*'), "drain" (draining or
 * drained), or "other" (maint, reserved, booting, unknown...). A node is
 * given work only when the word is idle, mixed or alloc. */
const char *kiln_slurm_node_state_word(const char *state);
/* How many GPUs of GRES type (e.g. "gpu:h100") the node's gres column lists. */
int kiln_slurm_node_gpus(const struct kiln_slurm_node *n, const char *gres);

#endif
