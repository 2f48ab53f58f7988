/* spare.h - a worker's recycled job directories and log spool files.
 *
 * Contract:
 * - Every job gets a fresh empty directory (work_dir/jobs/<id>-<attempt>)
 *   and a fresh empty log spool file (work_dir/logs/<id>-<attempt>.log).
 *   Making them allocates two inodes per job; on a journal-less ext4 each
 *   new inode scans past recently deleted ones, which made up 40% of the
 *   worker's CPU on no-op jobs (docs/BENCHMARKS.md, e2e). So a dropped
 *   job's directory, if its job left it empty, and its log, once sent, go
 *   to work_dir/spare-<worker name>, and the next job renames them into place: rename()
 *   allocates no inode.
 * - take: 1 when path now names an empty directory (or an empty file) from
 *   the pool, 0 when the pool had none or the rename failed (the caller
 *   makes one as before; what the pool held stays in it).
 * - give: never loses anything: a directory that is not empty, a full pool
 *   or a failed rename leaves path where it is, as before the pool existed;
 *   give_dir returns 1 when the pool took the directory, 0 when it is left.
 * - Pool entries are named by their place in the pool (d0.., l0..), so a
 *   restarted worker renames over what an earlier one left (at most
 *   KILN_SPARE_MAX of each).
 * - Loop thread only; no allocation.
 */
#ifndef KILN_WORKERS_SPARE_H
#define KILN_WORKERS_SPARE_H

#include <limits.h>

#define KILN_SPARE_MAX 64

struct kiln_spare {
    char dir[PATH_MAX]; /* work_dir/spare-<tag>; "" = no pool (every take is 0) */
    int ndirs, nlogs;
};

/* Makes work_dir/spare-<tag> (agents sharing a work dir each have their
 * own); without it, or with tag NULL, the pool stays off (s->dir ""). */
void kiln_spare_init(struct kiln_spare *s, const char *work_dir, const char *tag);
int kiln_spare_take_dir(struct kiln_spare *s, const char *path);
int kiln_spare_take_log(struct kiln_spare *s, const char *path);
int kiln_spare_give_dir(struct kiln_spare *s, const char *path);
void kiln_spare_give_log(struct kiln_spare *s, const char *path);

#endif
