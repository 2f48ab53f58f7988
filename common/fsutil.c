#include "common/fsutil.h"

#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int kiln_mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) return KILN_EINVAL;
    /* Most calls find the parents there already: one mkdir, not one per
     * component (a worker makes a directory for every job). */
    if (mkdir(path, mode) == 0 || errno == EEXIST) return KILN_OK;
    if (errno != ENOENT) return KILN_EIO;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, mode) != 0 && errno != EEXIST) return KILN_EIO;
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST) return KILN_EIO;
    return KILN_OK;
}

int kiln_read_file(const char *path, size_t max, struct kiln_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? KILN_ENOTFOUND : KILN_EIO;
    char chunk[65536];
    int rc = KILN_OK;
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = KILN_EIO;
            break;
        }
        if (r == 0) break;
        if (max && out->len + (size_t)r > max) {
            rc = KILN_ELIMIT;
            break;
        }
        rc = kiln_buf_append(out, chunk, (size_t)r);
        if (rc) break;
    }
    close(fd);
    if (!rc && !out->data) rc = kiln_buf_append(out, "", 0);
    return rc;
}

int kiln_fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof dir) return KILN_EINVAL;
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return KILN_EIO;
    int rc = fsync(fd) == 0 ? KILN_OK : KILN_EIO;
    close(fd);
    return rc;
}

int kiln_write_file_atomic(const char *path, const void *data, size_t n, mode_t mode)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return KILN_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return KILN_EIO;
    const char *p = data;
    size_t left = n;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            close(fd);
            unlink(tmp);
            return KILN_EIO;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return KILN_EIO;
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return KILN_EIO;
    }
    return kiln_fsync_dir_of(path);
}

int kiln_path_join(char *out, size_t outlen, const char *a, const char *b)
{
    size_t la = strlen(a);
    int sep = la > 0 && a[la - 1] != '/';
    int n = snprintf(out, outlen, "%s%s%s", a, sep ? "/" : "", b);
    if (n < 0 || (size_t)n >= outlen) return KILN_ELIMIT;
    return KILN_OK;
}
