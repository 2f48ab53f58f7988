/* logs.c - log files and log streaming (GET .../log, follow). */
#include "server/logs.h"

#include "common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define HIGH_WATER (256 * 1024)

struct stream {
    struct kiln_logs *l;
    struct stream *next, *prev;
    struct kiln_http_req *req;
    int64_t job;
    int64_t offset;
    int follow;
    int in_pump;
};

struct kiln_logs {
    char dir[PATH_MAX];
    struct stream *streams;
    int nstreams;
    char *buf; /* the one fixed read buffer */
};

static int log_path(struct kiln_logs *l, int64_t job, char *out, size_t n)
{
    int w = snprintf(out, n, "%s/%lld.log", l->dir, (long long)job);
    return (w < 0 || (size_t)w >= n) ? KILN_ELIMIT : KILN_OK;
}

int kiln_logs_new(const char *dir, struct kiln_logs **out, struct kiln_error *err)
{
    struct kiln_logs *l = calloc(1, sizeof *l);
    if (!l || !(l->buf = malloc(CHUNK))) {
        free(l);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    if (strlen(dir) >= sizeof l->dir - 32) {
        free(l->buf);
        free(l);
        return kiln_fail(err, KILN_ELIMIT, "log directory path is too long");
    }
    snprintf(l->dir, sizeof l->dir, "%s", dir);
    if (kiln_mkdir_p(dir, 0755)) {
        kiln_fail(err, KILN_EIO, "cannot create log directory %s: %s", dir, strerror(errno));
        free(l->buf);
        free(l);
        return KILN_EIO;
    }
    *out = l;
    return KILN_OK;
}

static void unlink_stream(struct kiln_logs *l, struct stream *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        l->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    l->nstreams--;
}

void kiln_logs_free(struct kiln_logs *l)
{
    if (!l) return;
    while (l->streams) {
        struct stream *s = l->streams;
        unlink_stream(l, s);
        kiln_http_req_on_close(s->req, NULL, NULL);
        kiln_http_stream_end(s->req);
        free(s);
    }
    free(l->buf);
    free(l);
}

int kiln_logs_size(struct kiln_logs *l, int64_t job, int64_t *size, struct kiln_error *err)
{
    char p[PATH_MAX];
    if (log_path(l, job, p, sizeof p)) return kiln_fail(err, KILN_ELIMIT, "log path too long");
    struct stat st;
    if (stat(p, &st) < 0) {
        if (errno == ENOENT) {
            *size = 0;
            return KILN_OK;
        }
        return kiln_fail(err, KILN_EIO, "cannot stat %s: %s", p, strerror(errno));
    }
    *size = st.st_size;
    return KILN_OK;
}

static int open_log(struct kiln_logs *l, int64_t job, int flags, int *fd, struct kiln_error *err)
{
    char p[PATH_MAX];
    if (log_path(l, job, p, sizeof p)) return kiln_fail(err, KILN_ELIMIT, "log path too long");
    *fd = open(p, flags | O_CLOEXEC, 0644);
    if (*fd < 0) {
        if (errno == ENOENT) return KILN_ENOTFOUND;
        return kiln_fail(err, KILN_EIO, "cannot open %s: %s", p, strerror(errno));
    }
    return KILN_OK;
}

static int write_all(int fd, const char *p, size_t n, off_t at)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, at);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        at += w;
    }
    return 0;
}

int kiln_logs_append_at(struct kiln_logs *l, int64_t job, int64_t offset, const void *data,
                        size_t len, int64_t *size, struct kiln_error *err)
{
    int fd;
    int rc = open_log(l, job, O_RDWR | O_CREAT, &fd, err);
    if (rc) return rc;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return kiln_fail(err, KILN_EIO, "cannot stat the log of job %lld: %s", (long long)job,
                         strerror(errno));
    }
    int64_t cur = st.st_size;
    *size = cur;
    if (offset < 0 || offset > cur) {
        close(fd);
        return kiln_fail(err, KILN_ECONFLICT,
                         "log offset %lld is past the end of what the server has (%lld)",
                         (long long)offset, (long long)cur);
    }
    int64_t skip = cur - offset;
    if ((int64_t)len > skip) {
        if (write_all(fd, (const char *)data + skip, len - (size_t)skip, (off_t)cur) < 0) {
            int e = errno;
            /* A partial write would leave bytes the worker thinks are not
             * there; cut back so offsets stay exact. */
            if (ftruncate(fd, (off_t)cur) < 0) { /* nothing more to do */
            }
            close(fd);
            return kiln_fail(err, KILN_EIO, "cannot write the log of job %lld: %s", (long long)job,
                             strerror(e));
        }
        *size = offset + (int64_t)len;
    }
    close(fd);
    return KILN_OK;
}

int kiln_logs_append_line(struct kiln_logs *l, int64_t job, const char *line, int64_t *size,
                          struct kiln_error *err)
{
    int64_t cur;
    int rc = kiln_logs_size(l, job, &cur, err);
    if (rc) return rc;
    return kiln_logs_append_at(l, job, cur, line, strlen(line), size, err);
}

int kiln_logs_marker(char *out, size_t n, int64_t attempt, const char *stage, const char *worker,
                     int after_bytes)
{
    int w = snprintf(out, n, "%s--- kiln: attempt %lld (%s) on worker %s ---\n",
                     after_bytes ? "\n" : "", (long long)attempt, stage, worker);
    return w < 0 || (size_t)w >= n ? -1 : w;
}

int kiln_logs_open_attempt(struct kiln_logs *l, int64_t job, int64_t base, int64_t attempt,
                           const char *stage, const char *worker, struct kiln_error *err)
{
    int64_t have, size;
    int rc = kiln_logs_size(l, job, &have, err);
    if (rc || have >= base) return rc;
    char line[300];
    int len = kiln_logs_marker(line, sizeof line, attempt, stage, worker, have > 0);
    /* Any other gap is not ours to fill: the append answers it as a conflict. */
    if (len < 0 || have + len != base) return KILN_OK;
    return kiln_logs_append_at(l, job, have, line, (size_t)len, &size, err);
}

static void stream_done(struct kiln_logs *l, struct stream *s)
{
    unlink_stream(l, s);
    kiln_http_req_on_close(s->req, NULL, NULL);
    kiln_http_stream_end(s->req);
    free(s);
}

/* Send what the file has past s->offset, up to the high-water mark. Returns
 * 1 if the stream was finished and freed. */
static int pump(struct kiln_logs *l, struct stream *s)
{
    if (s->in_pump) return 0;
    s->in_pump = 1;
    int fd = -1;
    int rc = open_log(l, s->job, O_RDONLY, &fd, NULL);
    int eof = 0;
    if (rc == KILN_OK) {
        while (kiln_http_stream_pending(s->req) < HIGH_WATER) {
            ssize_t n = pread(fd, l->buf, CHUNK, (off_t)s->offset);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                eof = 1;
                break;
            }
            if (kiln_http_stream_write(s->req, l->buf, (size_t)n)) {
                eof = 1; /* client gone: finish */
                s->follow = 0;
                break;
            }
            s->offset += n;
        }
        close(fd);
    } else {
        eof = 1; /* no log yet */
    }
    s->in_pump = 0;
    if (eof && !s->follow) {
        stream_done(l, s);
        return 1;
    }
    return 0;
}

static void on_drain(struct kiln_http_req *req, void *arg)
{
    struct stream *s = arg;
    (void)req;
    pump(s->l, s);
}

static void on_close(struct kiln_http_req *req, void *arg)
{
    struct stream *s = arg;
    (void)req;
    unlink_stream(s->l, s);
    free(s);
}

int kiln_logs_serve(struct kiln_logs *l, struct kiln_http_req *req, int64_t job, int64_t offset,
                    int follow, int final)
{
    struct stream *s = calloc(1, sizeof *s);
    if (!s) return kiln_http_respond_error(req, 503, "out_of_memory", "out of memory"), KILN_ENOMEM;
    s->l = l;
    s->req = req;
    s->job = job;
    s->offset = offset < 0 ? 0 : offset;
    s->follow = follow && !final;
    if (kiln_http_stream_begin(req, 200, "text/plain; charset=utf-8",
                               "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n")) {
        free(s);
        return KILN_EIO;
    }
    s->next = l->streams;
    if (l->streams) l->streams->prev = s;
    l->streams = s;
    l->nstreams++;
    kiln_http_req_on_close(req, on_close, s);
    kiln_http_stream_on_drain(req, on_drain, s);
    pump(l, s);
    return KILN_OK;
}

void kiln_logs_notify(struct kiln_logs *l, int64_t job)
{
    struct stream *s = l->streams;
    while (s) {
        struct stream *next = s->next;
        if (s->job == job) pump(l, s);
        s = next;
    }
}

void kiln_logs_finish(struct kiln_logs *l, int64_t job)
{
    struct stream *s = l->streams;
    while (s) {
        struct stream *next = s->next;
        if (s->job == job) {
            s->follow = 0;
            pump(l, s);
        }
        s = next;
    }
}

void kiln_logs_finish_if(struct kiln_logs *l, int (*is_final)(void *ctx, int64_t job), void *ctx)
{
    struct stream *s = l->streams;
    while (s) {
        struct stream *next = s->next;
        if (s->follow && is_final(ctx, s->job)) {
            s->follow = 0;
            pump(l, s);
        }
        s = next;
    }
}

int kiln_logs_streams(const struct kiln_logs *l)
{
    return l->nstreams;
}

int kiln_logs_remove(struct kiln_logs *l, int64_t job, struct kiln_error *err)
{
    char p[PATH_MAX];
    if (log_path(l, job, p, sizeof p)) return kiln_fail(err, KILN_ELIMIT, "log path too long");
    kiln_logs_finish(l, job);
    if (unlink(p) != 0 && errno != ENOENT)
        return kiln_fail(err, KILN_EIO, "cannot remove %s: %s", p, strerror(errno));
    return KILN_OK;
}
