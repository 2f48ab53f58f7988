/* retain.c - a worker's kept job directories (retain.h). */
#include "workers/retain.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct removal {
    uv_work_t req;
    struct kiln_retain *r;
    int err; /* first errno, 0 when all went */
    char dir[];
};

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int rc = flag == FTW_DP ? rmdir(path) : unlink(path);
    return rc == 0 || errno == ENOENT ? 0 : errno;
}

static void work(uv_work_t *req)
{
    struct removal *m = req->data;
    /* depth first, physical (a symlink is removed, not followed), few fds */
    int rc = nftw(m->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    m->err = rc == 0 ? 0 : rc > 0 ? rc : (errno ? errno : EIO);
    if (m->err == ENOENT) m->err = 0;
}

static void after(uv_work_t *req, int status)
{
    struct removal *m = req->data;
    struct kiln_retain *r = m->r;
    r->removing--;
    int e = status ? ECANCELED : m->err;
    if (e && r->on_error) r->on_error(r->arg, m->dir, e);
    free(m);
}

static void remove_dir(struct kiln_retain *r, char *dir)
{
    size_t len = strlen(dir);
    struct removal *m = malloc(sizeof *m + len + 1);
    if (!m) {
        if (r->on_error) r->on_error(r->arg, dir, ENOMEM);
        free(dir);
        return;
    }
    memcpy(m->dir, dir, len + 1);
    free(dir);
    m->r = r;
    m->err = 0;
    m->req.data = m;
    if (uv_queue_work(r->loop, &m->req, work, after) != 0) {
        if (r->on_error) r->on_error(r->arg, m->dir, EAGAIN);
        free(m);
        return;
    }
    r->removing++;
}

void kiln_retain_init(struct kiln_retain *r, uv_loop_t *loop, int keep)
{
    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->keep = keep;
}

void kiln_retain_add(struct kiln_retain *r, const char *dir)
{
    if (r->keep < 0) return;
    char *copy = strdup(dir);
    if (!copy) return; /* kept: nothing is lost */
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        char **d = realloc(r->dirs, cap * sizeof *d);
        if (!d) {
            free(copy);
            return;
        }
        r->dirs = d;
        r->cap = cap;
    }
    r->dirs[r->n++] = copy;
    while (r->n > (size_t)r->keep) {
        char *oldest = r->dirs[0];
        memmove(r->dirs, r->dirs + 1, (r->n - 1) * sizeof *r->dirs);
        r->n--;
        remove_dir(r, oldest);
    }
}

void kiln_retain_free(struct kiln_retain *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->dirs[i]);
    free(r->dirs);
    memset(r, 0, sizeof *r);
}
