/* events.c - SSE subscribers fed from the store's events table. */
#include "server/events.h"

#include "common/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HIGH_WATER (256 * 1024)
#define BATCH 200

struct sub {
    struct kiln_events *e;
    struct sub *next, *prev;
    struct kiln_http_req *req;
    int64_t cursor;
    int in_pump;
};

struct kiln_events {
    struct kiln_store *st;
    struct sub *subs;
    int nsubs;
    uv_timer_t keepalive;
    struct kiln_buf out;
    int64_t known_last; /* newest event id fanned out or seen at subscribe */
};

static void unlink_sub(struct kiln_events *e, struct sub *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        e->subs = s->next;
    if (s->next) s->next->prev = s->prev;
    e->nsubs--;
}

struct pump_ctx {
    struct sub *s;
    int rows;
    int failed;
};

static int write_event(void *arg, int64_t id, const char *type, const char *data)
{
    struct pump_ctx *pc = arg;
    struct kiln_events *e = pc->s->e;
    kiln_buf_reset(&e->out);
    if (kiln_buf_printf(&e->out, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)id, type,
                        data ? data : "null")) {
        pc->failed = 1;
        return 1;
    }
    if (kiln_http_stream_write(pc->s->req, e->out.data, e->out.len)) {
        pc->failed = 1;
        return 1;
    }
    pc->s->cursor = id;
    if (id > e->known_last) e->known_last = id;
    pc->rows++;
    return 0;
}

static void pump(struct kiln_events *e, struct sub *s)
{
    if (s->in_pump) return;
    s->in_pump = 1;
    for (;;) {
        if (kiln_http_stream_pending(s->req) >= HIGH_WATER) break; /* on_drain resumes */
        struct pump_ctx pc = {s, 0, 0};
        kiln_store_events_after(e->st, s->cursor, BATCH, write_event, &pc, NULL);
        if (pc.failed || pc.rows < BATCH) break;
    }
    s->in_pump = 0;
}

static void on_drain(struct kiln_http_req *req, void *arg)
{
    struct sub *s = arg;
    (void)req;
    /* Drain fires after every completed write; only a subscriber that fell
     * behind has rows to read (new rows come with kiln_events_notify). */
    if (s->cursor < s->e->known_last) pump(s->e, s);
}

static void on_close(struct kiln_http_req *req, void *arg)
{
    struct sub *s = arg;
    (void)req;
    unlink_sub(s->e, s);
    free(s);
}

static void on_keepalive(uv_timer_t *t)
{
    struct kiln_events *e = t->data;
    for (struct sub *s = e->subs; s; s = s->next)
        kiln_http_stream_write(s->req, ": keep-alive\n\n", sizeof ": keep-alive\n\n" - 1);
}

int kiln_events_new(uv_loop_t *loop, struct kiln_store *st, unsigned keepalive_ms,
                    struct kiln_events **out, struct kiln_error *err)
{
    struct kiln_events *e = calloc(1, sizeof *e);
    if (!e) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    e->st = st;
    e->out.max = 64u << 20;
    if (uv_timer_init(loop, &e->keepalive)) {
        free(e);
        return kiln_fail(err, KILN_EIO, "cannot create the keep-alive timer");
    }
    e->keepalive.data = e;
    if (!keepalive_ms) keepalive_ms = 15000;
    uv_timer_start(&e->keepalive, on_keepalive, keepalive_ms, keepalive_ms);
    *out = e;
    return KILN_OK;
}

static void closed(uv_handle_t *h)
{
    struct kiln_events *e = h->data;
    kiln_buf_free(&e->out);
    free(e);
}

void kiln_events_free(struct kiln_events *e)
{
    if (!e) return;
    while (e->subs) {
        struct sub *s = e->subs;
        unlink_sub(e, s);
        kiln_http_req_on_close(s->req, NULL, NULL);
        kiln_http_stream_end(s->req);
        free(s);
    }
    uv_timer_stop(&e->keepalive);
    uv_close((uv_handle_t *)&e->keepalive, closed);
}

int kiln_events_subscribe(struct kiln_events *e, struct kiln_http_req *req, int64_t last_id)
{
    struct sub *s = calloc(1, sizeof *s);
    if (!s) {
        kiln_http_respond_error(req, 503, "out_of_memory", "out of memory");
        return KILN_ENOMEM;
    }
    s->e = e;
    s->req = req;
    int64_t newest = kiln_store_last_event_id(e->st);
    if (newest > e->known_last) e->known_last = newest;
    s->cursor = last_id >= 0 ? last_id : newest;
    if (kiln_http_stream_begin(req, 200, "text/event-stream",
                               "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n")) {
        free(s);
        return KILN_EIO;
    }
    /* Tell EventSource how soon to reconnect, and flush headers now. */
    static const char hello[] = "retry: 2000\n: connected\n\n";
    kiln_http_stream_write(req, hello, sizeof hello - 1);
    s->next = e->subs;
    if (e->subs) e->subs->prev = s;
    e->subs = s;
    e->nsubs++;
    kiln_http_req_on_close(req, on_close, s);
    kiln_http_stream_on_drain(req, on_drain, s);
    pump(e, s);
    return KILN_OK;
}

struct shared_ctx {
    struct kiln_events *e;
    int64_t last;
    int rows, failed;
};

static int append_event(void *arg, int64_t id, const char *type, const char *data)
{
    struct shared_ctx *sc = arg;
    if (kiln_buf_printf(&sc->e->out, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)id, type,
                        data ? data : "null")) {
        sc->failed = 1;
        return 1;
    }
    sc->last = id;
    sc->rows++;
    return 0;
}

/* Every subscriber that is up to date (cursor at the newest position any
 * has, no backlog) gets the same bytes: the new rows are read and formatted
 * once, not once per client. With 1,000 live pages that is one query
 * instead of 1,000 per change (issue 18). The rest catch up one by one. */
void kiln_events_notify(struct kiln_events *e)
{
    int64_t head = -1;
    for (struct sub *s = e->subs; s; s = s->next)
        if (s->cursor > head) head = s->cursor;
    for (int more = head >= 0; more;) {
        kiln_buf_reset(&e->out);
        struct shared_ctx sc = {e, head, 0, 0};
        kiln_store_events_after(e->st, head, BATCH, append_event, &sc, NULL);
        if (sc.failed || sc.rows == 0) break;
        for (struct sub *s = e->subs, *next; s; s = next) {
            next = s->next; /* a failed write may close and unlink s */
            if (s->cursor != head || s->in_pump || kiln_http_stream_pending(s->req) >= HIGH_WATER)
                continue;
            if (kiln_http_stream_write_now(s->req, e->out.data, e->out.len) == KILN_OK)
                s->cursor = sc.last;
        }
        head = sc.last;
        if (head > e->known_last) e->known_last = head;
        more = sc.rows == BATCH;
    }
    struct sub *s = e->subs;
    while (s) {
        struct sub *next = s->next;
        if (s->cursor != head) pump(e, s);
        s = next;
    }
}

int kiln_events_subscribers(const struct kiln_events *e)
{
    return e->nsubs;
}
