/* spare.c - recycled job directories and log spool files (spare.h). */
#include "workers/spare.h"

#include "common/fsutil.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void kiln_spare_init(struct kiln_spare *s, const char *work_dir, const char *tag)
{
    memset(s, 0, sizeof *s);
    if (!tag ||
        snprintf(s->dir, sizeof s->dir, "%s/spare-%s", work_dir, tag) >= (int)sizeof s->dir ||
        kiln_mkdir_p(s->dir, 0755))
        s->dir[0] = '\0';
}

static int entry(const struct kiln_spare *s, char kind, int n, char *out, size_t cap)
{
    return snprintf(out, cap, "%s/%c%d", s->dir, kind, n) < (int)cap;
}

static int take(struct kiln_spare *s, char kind, int *count, const char *path)
{
    char from[PATH_MAX + 16];
    if (!s->dir[0] || *count == 0 || !entry(s, kind, *count - 1, from, sizeof from)) return 0;
    if (rename(from, path) != 0) return 0;
    (*count)--;
    return 1;
}

static int give(struct kiln_spare *s, char kind, int *count, const char *path)
{
    char to[PATH_MAX + 16];
    if (!s->dir[0] || *count == KILN_SPARE_MAX || !entry(s, kind, *count, to, sizeof to)) return 0;
    if (rename(path, to) != 0) return 0;
    (*count)++;
    return 1;
}

int kiln_spare_take_dir(struct kiln_spare *s, const char *path)
{
    return take(s, 'd', &s->ndirs, path);
}

int kiln_spare_take_log(struct kiln_spare *s, const char *path)
{
    return take(s, 'l', &s->nlogs, path);
}

static int dir_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

int kiln_spare_give_dir(struct kiln_spare *s, const char *path)
{
    return dir_empty(path) && give(s, 'd', &s->ndirs, path);
}

void kiln_spare_give_log(struct kiln_spare *s, const char *path)
{
    /* Emptied before it moves: a take hands out an empty file. A log that
     * cannot be emptied stays where it is. */
    if (truncate(path, 0) == 0) give(s, 'l', &s->nlogs, path);
}
