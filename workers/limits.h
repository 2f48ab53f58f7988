/* limits.h - keeping one job inside its RAM limit and measuring it.
 *
 * Contract:
 * - kiln_limits_init() picks the method once per worker: cgroup v2 (a child
 *   cgroup with memory.max and memory.swap.max=0), cgroup v1 (memory/<own
 *   cgroup>/kiln-<tag>/<job>: memory.limit_in_bytes, memory.memsw.limit_in_bytes
 *   where swap accounting exists, plus a cpuacct group for CPU time), or,
 *   where neither is writable, polling the job's process tree RSS. AUTO
 *   tries v2, then v1, then polling; naming a method forces it (tests).
 * - A job's cgroup is created before the job starts; the job's first process
 *   writes itself into <dir>/cgroup.procs of each kiln_limits_job_dirs()
 *   before it execs the command, so no child escapes the limit.
 * - kiln_limits_job_sample() (called every 100-250 ms) updates peak RAM and
 *   CPU time and returns 1 once the job has exceeded its limit (kernel
 *   oom_kill under cgroups; RSS sum over the limit when polling, after which
 *   the caller kills the group).
 * - kiln_limits_job_kill() SIGKILLs the process group and every process left
 *   in the job's cgroup. kiln_limits_job_destroy() removes the cgroup.
 */
#ifndef KILN_WORKERS_LIMITS_H
#define KILN_WORKERS_LIMITS_H

#include "common/err.h"
#include "workers/config.h"

#include <stdint.h>
#include <sys/types.h>

struct kiln_limits {
    enum kiln_limit_method method; /* resolved: never AUTO */
    char mem_base[512];            /* v1 memory or v2 dir that holds job cgroups */
    char cpu_base[512];            /* v1 cpuacct dir for jobs ("" = none) */
    char note[256];                /* why this method (plain sentence) */
};

struct kiln_job_limits {
    const struct kiln_limits *lim;
    char mem_dir[600];
    char cpu_dir[600];
    uint64_t ram_limit; /* bytes, 0 = none */
    pid_t sid;          /* the job's session = process group id */
    uint64_t peak;      /* bytes */
    double cpu_s;
    int exceeded;
    int created;
};

int kiln_limits_init(struct kiln_limits *l, enum kiln_limit_method want, const char *tag,
                     struct kiln_error *err);
/* Removes the worker's (empty) base cgroups. */
void kiln_limits_cleanup(struct kiln_limits *l);

int kiln_limits_job_create(const struct kiln_limits *l, struct kiln_job_limits *j, const char *name,
                           uint64_t ram_bytes, struct kiln_error *err);
/* The cgroup dirs the job's first process must join (0..2). */
int kiln_limits_job_dirs(const struct kiln_job_limits *j, const char *dirs[2]);
int kiln_limits_job_sample(struct kiln_job_limits *j);
void kiln_limits_job_kill(struct kiln_job_limits *j);
/* 1 while any process of the job is still alive. */
int kiln_limits_job_alive(const struct kiln_job_limits *j);
void kiln_limits_job_destroy(struct kiln_job_limits *j);

/* Poll-method helpers, exposed for tests: RSS and CPU time of the processes
 * in session sid (and their descendants), from proc_root ("/proc"). */
int kiln_limits_tree_usage(const char *proc_root, pid_t sid, uint64_t *rss, double *cpu_s,
                           int *nprocs);
/* Parse one /proc/<pid>/stat line. */
int kiln_limits_parse_stat(const char *text, pid_t *pid, pid_t *ppid, pid_t *sid,
                           uint64_t *rss_pages, uint64_t *cpu_ticks);

#endif
