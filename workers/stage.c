/* stage.c - upload a build's output closure to the server's staging area
 * (see stage.h; the server's side is catalog/staging.h). */
#include "workers/stage.h"

#include "common/buf.h"
#include "common/httpc.h"
#include "common/spawn.h"
#include "nix/nar.h"
#include "nix/nixcache.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SKIP_BUF (256 * 1024)

static void say(const struct kiln_stage_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(const struct kiln_stage_opts *o, const char *fmt, ...)
{
    if (!o->log) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("[kiln stage] ", o->log);
    vfprintf(o->log, fmt, ap);
    fputc('\n', o->log);
    fflush(o->log);
    va_end(ap);
}

/* The NAR stream: exactly `left` bytes from nix-store --dump. */
struct src {
    int fd;
    uint64_t left;
    int short_read; /* the dump ended before NarSize: the path changed on disk */
};

static size_t src_read(char *p, size_t size, size_t n, void *arg)
{
    struct src *s = arg;
    size_t want = size * n;
    if (want > s->left) want = (size_t)s->left;
    if (!want) return 0;
    for (;;) {
        ssize_t got = read(s->fd, p, want);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return CURL_READFUNC_ABORT;
        if (got == 0) {
            s->short_read = 1;
            return CURL_READFUNC_ABORT;
        }
        s->left -= (uint64_t)got;
        return (size_t)got;
    }
}

static size_t sink_write(char *p, size_t size, size_t n, void *arg)
{
    struct kiln_buf *b = arg;
    return kiln_buf_append(b, p, size * n) == KILN_OK ? size * n : 0;
}

/* Read and drop n bytes of fd (the part the server already holds). */
static int skip_bytes(int fd, uint64_t n, struct kiln_error *err)
{
    char *buf = n ? malloc(SKIP_BUF) : NULL;
    if (n && !buf) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    while (n) {
        ssize_t r = read(fd, buf, n < SKIP_BUF ? (size_t)n : SKIP_BUF);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            return kiln_fail(err, KILN_EIO,
                             "nix-store --dump ended before the resume offset: the store path "
                             "changed on disk");
        }
        n -= (uint64_t)r;
    }
    free(buf);
    return KILN_OK;
}

/* The token for the next request. */
static void token_now(const struct kiln_stage_opts *o, char *out, size_t outlen)
{
    if (o->current_token)
        o->current_token(o->token_arg, out, outlen);
    else
        snprintf(out, outlen, "%s", o->token ? o->token : "");
}

enum put_outcome { PUT_DONE, PUT_RETRY, PUT_REFUSED };

/* Stall detection: no byte moved for stall_s while sending is a cut link.
 * Once all bytes are sent the server checks the whole NAR (seconds for many
 * GiB), so the answer gets up to ANSWER_WAIT_S. */
#define ANSWER_WAIT_S 900
struct watch {
    int stall_s;
    curl_off_t last;
    time_t since;
};

static int watch_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                    curl_off_t ulnow)
{
    struct watch *w = arg;
    (void)dltotal;
    time_t now = time(NULL);
    if (ulnow != w->last || dlnow > 0) {
        w->last = ulnow;
        w->since = now;
        return 0;
    }
    int done = ultotal > 0 && ulnow >= ultotal;
    return now - w->since > (done ? ANSWER_WAIT_S : w->stall_s);
}

/* One PUT of path's NAR from offset. Transport failures are PUT_RETRY. */
static enum put_outcome put_nar(const struct kiln_stage_opts *o, const char *path, uint64_t offset,
                                uint64_t size, uint64_t *sent, struct kiln_error *err)
{
    *sent = 0;
    char hp[KILN_NIX_HASHPART_LEN + 1], url[1024], auth[300];
    kiln_nix_hashpart(path, hp);
    snprintf(url, sizeof url, "%s/api/v1/staging/%ld/nar/%s?attempt=%ld&offset=%llu", o->server,
             o->job, hp, o->attempt, (unsigned long long)offset);
    char *argv[] = {"nix-store", "--dump", (char *)path, NULL};
    struct kiln_spawn_spec sp = {.argv = argv, .out_fd = KILN_SPAWN_PIPE, .err_fd = 2};
    struct kiln_spawn_proc proc;
    struct src s = {.fd = -1, .left = size - offset};
    if (kiln_spawn_start(&sp, &proc, err) != KILN_OK) return PUT_REFUSED;
    s.fd = proc.out_fd;
    enum put_outcome out = PUT_REFUSED;
    CURL *c = NULL;
    struct curl_slist *h = NULL;
    struct kiln_buf resp = {0};
    resp.max = 1 << 20;
    if (skip_bytes(s.fd, offset, err) != KILN_OK) goto done;
    c = curl_easy_init();
    if (!c) {
        kiln_fail(err, KILN_ENOMEM, "cannot start libcurl");
        goto done;
    }
    char tok[160];
    token_now(o, tok, sizeof tok);
    if (tok[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
        h = curl_slist_append(NULL, auth);
    }
    struct curl_slist *t = curl_slist_append(h, "Content-Type: application/x-nix-nar");
    if (t) h = t;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, src_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &s);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(size - offset));
    curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    /* A cut link shows as silence, not an error: a stall is a failure. */
    struct watch wd = {.stall_s = o->stall_s > 0 ? o->stall_s : 20, .since = time(NULL)};
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, watch_cb);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &wd);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    if (o->ca_file && *o->ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
    CURLcode cr = curl_easy_perform(c);
    curl_off_t up = 0;
    curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &up);
    *sent = (uint64_t)up;
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (s.short_read) {
        kiln_fail(err, KILN_EIO,
                  "nix-store --dump %s gave fewer bytes than its NarSize %llu: the store path "
                  "changed on disk",
                  path, (unsigned long long)size);
        goto done;
    }
    /* No final answer (a "100 Continue" is not one): the link failed. */
    if (cr != CURLE_OK && status < 200) {
        kiln_fail(err, KILN_ENET, "upload of %s: %s", path, curl_easy_strerror(cr));
        out = PUT_RETRY;
        goto done;
    }
    json_t *j = resp.data ? json_loads(resp.data, 0, NULL) : NULL;
    const char *msg = kiln_httpc_error_message(j, status);
    const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    if (status == 200 || status == 201) {
        out = PUT_DONE;
    } else if (status == 202 || status >= 500 || status == 401 ||
               (status == 409 && code && !strcmp(code, "busy"))) {
        /* 401: the credential rotated (re-registration) while we sent. */
        kiln_fail(err, KILN_ENET, "upload of %s: HTTP %ld: %s", path, status, msg);
        out = PUT_RETRY;
    } else {
        kiln_fail(err,
                  status == 422   ? KILN_EINVAL
                  : status == 409 ? KILN_ECONFLICT
                  : status == 401 ? KILN_EAUTH
                                  : KILN_EIO,
                  "refused (HTTP %ld): %s", status, msg);
    }
    json_decref(j);
done:
    close(s.fd);
    kiln_spawn_kill_group(proc.pid, SIGKILL); /* done or not, the dump is not needed any more */
    kiln_spawn_finish(&proc, 0, "nix-store --dump", NULL);
    kiln_buf_free(&resp);
    curl_slist_free_all(h);
    if (c) curl_easy_cleanup(c);
    return out;
}

/* Ask the server what it lacks: *missing [{store_path, offset, nar_size}]. */
static int plan(struct kiln_httpc *hc, const struct kiln_stage_opts *o, json_t *infos,
                json_t **missing, int *unsupported, struct kiln_error *err)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v1/staging/%ld/plan?attempt=%ld", o->job, o->attempt);
    json_t *body = json_pack("{s:O}", "paths", infos), *resp = NULL;
    long status = 0;
    token_now(o, hc->token, sizeof hc->token);
    *missing = NULL;
    *unsupported = 0;
    int rc = body ? kiln_httpc_json(hc, "POST", path, body, 120000, &status, &resp, err)
                  : kiln_fail(err, KILN_ENOMEM, "out of memory");
    json_decref(body);
    if (rc != KILN_OK) return rc;
    /* An older server, or a stand-in without staging: not an error (the
     * staging routes answer a gone job with 409, never 404). */
    if (status == 404) {
        *unsupported = 1;
        json_decref(resp);
        return KILN_OK;
    }
    if (status != 200 || !json_is_array(json_object_get(resp, "missing"))) {
        rc = kiln_fail(err,
                       status == 409                    ? KILN_ECONFLICT
                       : status >= 500 || status == 401 ? KILN_ENET
                                                        : KILN_EIO,
                       "staging plan refused (HTTP %ld): %s", status,
                       kiln_httpc_error_message(resp, status));
        json_decref(resp);
        return rc;
    }
    *missing = json_incref(json_object_get(resp, "missing"));
    json_decref(resp);
    return KILN_OK;
}

static void nap(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The info object of path in infos (for re-asking one path). */
static json_t *info_of(json_t *infos, const char *path)
{
    size_t i;
    json_t *v;
    json_array_foreach(infos, i, v)
    {
        const char *p = json_string_value(json_object_get(v, "store_path"));
        if (p && !strcmp(p, path)) return v;
    }
    return NULL;
}

/* Send one path, resuming after transport failures. */
static int send_path(struct kiln_httpc *hc, const struct kiln_stage_opts *o, json_t *infos,
                     const char *path, uint64_t offset, uint64_t size,
                     struct kiln_stage_result *res, struct kiln_error *err)
{
    int idle = 0, backoff = 1000, retries = o->retries > 0 ? o->retries : 8;
    for (;;) {
        uint64_t sent = 0;
        say(o, "%s %s: %llu of %llu bytes from offset %llu", offset ? "resuming" : "sending", path,
            (unsigned long long)(size - offset), (unsigned long long)size,
            (unsigned long long)offset);
        enum put_outcome r = put_nar(o, path, offset, size, &sent, err);
        res->bytes += sent;
        if (r == PUT_DONE) {
            res->uploaded++;
            say(o, "staged %s (%llu bytes)", path, (unsigned long long)size);
            return KILN_OK;
        }
        if (r == PUT_REFUSED) return err->code ? err->code : KILN_EIO;
        /* Ask where to resume: the server knows how much it holds. */
        say(o, "%s; asking the server where to resume", err->msg);
        json_t *one = json_pack("[O]", info_of(infos, path)), *missing = NULL;
        int unsupported = 0, found = 0;
        uint64_t prev = offset;
        for (int tries = 0;; tries++) {
            nap(backoff);
            backoff = backoff * 2 > 10000 ? 10000 : backoff * 2;
            struct kiln_error pe = {0};
            int prc = plan(hc, o, one, &missing, &unsupported, &pe);
            if (prc == KILN_OK) break;
            if (prc != KILN_ENET && prc != KILN_ETIMEOUT) {
                json_decref(one);
                *err = pe;
                return prc;
            }
            if (tries + idle >= retries) {
                json_decref(one);
                return kiln_fail(err, KILN_ENET, "gave up staging %s: %s", path, pe.msg);
            }
        }
        json_decref(one);
        json_t *m = json_array_get(missing, 0);
        if (m) {
            offset = (uint64_t)json_integer_value(json_object_get(m, "offset"));
            found = 1;
        }
        json_decref(missing);
        if (!found) { /* the server has it now */
            res->uploaded++;
            return KILN_OK;
        }
        res->resumes++;
        if (offset > prev) {
            idle = 0;
            backoff = 1000;
        } else if (++idle >= retries) {
            return kiln_fail(err, KILN_ENET, "gave up staging %s after %d tries without progress",
                             path, idle);
        }
    }
}

int kiln_stage_outputs(const struct kiln_stage_opts *o, json_t *outputs,
                       struct kiln_stage_result *res, struct kiln_error *err)
{
    memset(res, 0, sizeof *res);
    json_t *infos = NULL, *missing = NULL, *present = json_array();
    if (!present) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    /* An output the job named but this host's store lacks cannot be staged
     * (nor tested elsewhere): said in the log, not a staging failure. */
    size_t k;
    json_t *v;
    json_array_foreach(outputs, k, v)
    {
        const char *p = json_string_value(v);
        if (p && access(p, F_OK) == 0)
            json_array_append(present, v);
        else
            say(o, "%s is not in this host's store; not staged", p ? p : "(not a string)");
    }
    if (!json_array_size(present)) {
        json_decref(present);
        res->unsupported = 1;
        return KILN_OK;
    }
    int rc = kiln_nar_closure(present, &infos, err);
    json_decref(present);
    if (rc != KILN_OK) return rc;
    res->paths = (int)json_array_size(infos);
    struct kiln_httpc hc;
    if (kiln_httpc_init(&hc, o->server, o->token) != KILN_OK) {
        json_decref(infos);
        return kiln_fail(err, KILN_ENOMEM, "cannot start the HTTP client");
    }
    if (o->ca_file && *o->ca_file) snprintf(hc.ca_file, sizeof hc.ca_file, "%s", o->ca_file);
    rc = plan(&hc, o, infos, &missing, &res->unsupported, err);
    if (rc == KILN_OK && !res->unsupported)
        say(o, "closure of %d path%s; the server lacks %zu", res->paths, res->paths == 1 ? "" : "s",
            json_array_size(missing));
    size_t i;
    json_t *m;
    json_array_foreach(missing, i, m)
    {
        if (rc != KILN_OK) break;
        rc = send_path(&hc, o, infos, json_string_value(json_object_get(m, "store_path")),
                       (uint64_t)json_integer_value(json_object_get(m, "offset")),
                       (uint64_t)json_integer_value(json_object_get(m, "nar_size")), res, err);
    }
    if (rc != KILN_OK) say(o, "staging failed: %s", err->msg);
    json_decref(missing);
    json_decref(infos);
    kiln_httpc_cleanup(&hc);
    return rc;
}
