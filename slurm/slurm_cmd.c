/* slurm_cmd.c - one Slurm CLI call as a child process on the libuv loop
 * (see slurm_cmd.h). The handles (process, two pipes, a timer) live until
 * the last one is closed; done runs once the process has exited and both
 * pipes reached EOF, so the output is complete. */
#include "slurm/slurm_cmd.h"

#include "common/buf.h"
#include "common/spawn.h"

#include <signal.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#define OUT_CAP (4u << 20)
#define ERR_CAP 4096u

struct run {
    uv_process_t proc;
    uv_pipe_t out, errp;
    uv_timer_t timer;
    struct kiln_buf obuf, ebuf;
    kiln_slurm_cmd_done done;
    void *arg;
    int status;
    int exited, out_eof, err_eof;
    int open_handles;
};

extern char **environ;

/* The child sees only what Slurm's clients need from the service's
 * environment (SLURM_CONF, PATH...): sbatch --export=ALL hands exactly this
 * to the job, so no secret of kiln serve's reaches a job, and slurmd need
 * not load a login environment (which --export=NONE/NIL costs: seconds per
 * job). */
static int env_wanted(const char *kv)
{
    static const char *keep[] = {"PATH=", "HOME=",  "USER=",   "LOGNAME=", "LANG=",  "LC_ALL=",
                                 "TZ=",   "SLURM_", "SQUEUE_", "SBATCH_",  "SINFO_", NULL};
    for (int i = 0; keep[i]; i++)
        if (!strncmp(kv, keep[i], strlen(keep[i]))) return 1;
    return 0;
}

static char **child_env(void)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n += env_wanted(*e);
    char **out = calloc(n + 1, sizeof *out);
    if (!out) return NULL;
    n = 0;
    for (char **e = environ; e && *e; e++)
        if (env_wanted(*e)) out[n++] = *e; /* borrowed: uv_spawn copies before returning */
    return out;
}

static void on_close(uv_handle_t *h)
{
    struct run *r = h->data;
    if (--r->open_handles > 0) return;
    kiln_buf_free(&r->obuf);
    kiln_buf_free(&r->ebuf);
    free(r);
}

static void maybe_finish(struct run *r)
{
    if (!r->exited || !r->out_eof || !r->err_eof) return;
    uv_timer_stop(&r->timer);
    r->done(r->arg, r->status, r->obuf.data ? r->obuf.data : "", r->ebuf.data ? r->ebuf.data : "");
    uv_close((uv_handle_t *)&r->proc, on_close);
    uv_close((uv_handle_t *)&r->out, on_close);
    uv_close((uv_handle_t *)&r->errp, on_close);
    uv_close((uv_handle_t *)&r->timer, on_close);
}

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *b)
{
    (void)h;
    (void)want;
    static const size_t n = 16384;
    b->base = malloc(n);
    b->len = b->base ? n : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct run *r = s->data;
    int is_out = s == (uv_stream_t *)&r->out;
    struct kiln_buf *buf = is_out ? &r->obuf : &r->ebuf;
    size_t cap = is_out ? OUT_CAP : ERR_CAP;
    if (n > 0 && buf->len < cap) {
        size_t take = (size_t)n < cap - buf->len ? (size_t)n : cap - buf->len;
        if (kiln_buf_append(buf, b->base, take)) buf->len = cap; /* out of memory: stop */
    }
    free(b->base);
    if (n < 0) {
        uv_read_stop(s);
        if (is_out)
            r->out_eof = 1;
        else
            r->err_eof = 1;
        maybe_finish(r);
    }
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    struct run *r = p->data;
    r->exited = 1;
    r->status = sig ? 128 + sig : (int)status;
    maybe_finish(r);
}

static void on_timeout(uv_timer_t *t)
{
    struct run *r = t->data;
    if (!r->exited) kiln_spawn_kill_group(r->proc.pid, SIGKILL);
}

int kiln_slurm_cmd_run(uv_loop_t *loop, const char *const *argv, unsigned timeout_ms,
                       kiln_slurm_cmd_done done, void *arg, struct kiln_error *err)
{
    struct run *r = calloc(1, sizeof *r);
    if (!r) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    r->done = done;
    r->arg = arg;
    uv_pipe_init(loop, &r->out, 0);
    uv_pipe_init(loop, &r->errp, 0);
    uv_timer_init(loop, &r->timer);
    r->out.data = r->errp.data = r->timer.data = r->proc.data = r;
    uv_stdio_container_t io[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->out},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->errp},
    };
    char **env = child_env();
    struct kiln_error serr = {0};
    int rc = env ? kiln_spawn_uv(loop, &r->proc, (char **)argv, NULL, env, io, on_exit_cb, &serr)
                 : kiln_fail(&serr, KILN_ENOMEM, "out of memory");
    free(env);
    if (rc) {
        /* libuv wants every handle closed, the failed process's too. */
        r->open_handles = 4;
        uv_close((uv_handle_t *)&r->proc, on_close);
        uv_close((uv_handle_t *)&r->out, on_close);
        uv_close((uv_handle_t *)&r->errp, on_close);
        uv_close((uv_handle_t *)&r->timer, on_close);
        return kiln_fail(err, rc, "%s", serr.msg);
    }
    r->open_handles = 4;
    uv_read_start((uv_stream_t *)&r->out, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&r->errp, on_alloc, on_read);
    if (timeout_ms) uv_timer_start(&r->timer, on_timeout, timeout_ms, 0);
    return KILN_OK;
}
