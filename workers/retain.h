/* retain.h - how many finished jobs' directories a worker keeps.
 *
 * Contract:
 * - A job's directory that its job left files in (spare.h recycles the
 *   empty ones) is handed to kiln_retain_add() once the job is reported.
 *   The newest `keep` of them stay, for a look after the fact; each one
 *   beyond that, the oldest first, is removed with everything under it
 *   (symlinks are removed, never followed) on libuv's thread pool, so a
 *   large tree never holds up the loop.
 * - keep < 0 keeps every directory (kiln before 2026-12-07); 0 removes each
 *   one as soon as it is handed over.
 * - Only directories handed over by this process are ever removed: agents
 *   that share a work_dir, and directories an earlier run left, are never
 *   touched (an earlier run's stay until someone removes them).
 * - A removal that fails is logged through the callback and not retried.
 * - Loop thread only. kiln_retain_free() after the loop has run to its end
 *   (every removal done).
 */
#ifndef KILN_WORKERS_RETAIN_H
#define KILN_WORKERS_RETAIN_H

#include <stddef.h>
#include <uv.h>

struct kiln_retain {
    uv_loop_t *loop;
    int keep;
    char **dirs; /* oldest first */
    size_t n, cap;
    size_t removing;                                     /* removals queued, not done */
    void (*on_error)(void *arg, const char *dir, int e); /* may be NULL */
    void *arg;
};

void kiln_retain_init(struct kiln_retain *r, uv_loop_t *loop, int keep);
/* Hand over dir (copied). A copy that cannot be made leaves dir kept. */
void kiln_retain_add(struct kiln_retain *r, const char *dir);
void kiln_retain_free(struct kiln_retain *r);

#endif
