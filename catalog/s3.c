/* s3.c - SigV4 signer and S3 uploads on libcurl multi + libuv. */
#include "catalog/s3.h"

#include "common/buf.h"
#include "common/hash.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void kiln_s3_cfg_defaults(struct kiln_s3_cfg *cfg)
{
    if (!cfg->region[0]) snprintf(cfg->region, sizeof cfg->region, "us-east-1");
    if (!cfg->part_size) cfg->part_size = 8ull << 20;
    if (!cfg->multipart_threshold) cfg->multipart_threshold = 64ull << 20;
    if (!cfg->max_retries) cfg->max_retries = 4;
    if (!cfg->backoff_ms) cfg->backoff_ms = 200;
}

int kiln_s3_uri_encode(const char *in, int keep_slash, char *out, size_t outlen)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
            (keep_slash && *p == '/')) {
            if (o + 1 >= outlen) return KILN_ELIMIT;
            out[o++] = (char)*p;
        } else {
            if (o + 3 >= outlen) return KILN_ELIMIT;
            snprintf(out + o, 4, "%%%02X", *p);
            o += 3;
        }
    }
    if (o >= outlen) return KILN_ELIMIT;
    out[o] = 0;
    return KILN_OK;
}

int kiln_s3_key_valid(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > 1024 || key[0] == '/' || strstr(key, "..") || strstr(key, "//")) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f) return 0;
    return 1;
}

int kiln_s3_xml_value(const char *xml, size_t len, const char *tag, char *out, size_t outlen)
{
    char open[80], close[80];
    if (snprintf(open, sizeof open, "<%s>", tag) >= (int)sizeof open) return KILN_EINVAL;
    snprintf(close, sizeof close, "</%s>", tag);
    const char *a = memmem(xml, len, open, strlen(open));
    if (!a) return KILN_ENOTFOUND;
    a += strlen(open);
    const char *b = memmem(a, len - (size_t)(a - xml), close, strlen(close));
    if (!b) return KILN_EPARSE;
    size_t n = (size_t)(b - a);
    if (n >= outlen) return KILN_ELIMIT;
    memcpy(out, a, n);
    out[n] = 0;
    /* The only entity S3 puts in these values is &quot; (ETags). */
    char *q;
    while ((q = strstr(out, "&quot;"))) {
        *q = '"';
        memmove(q + 1, q + 6, strlen(q + 6) + 1);
    }
    return KILN_OK;
}

struct hdr_kv {
    char name[64];
    const char *value;
};

static int cmp_hdr(const void *a, const void *b)
{
    return strcmp(((const struct hdr_kv *)a)->name, ((const struct hdr_kv *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    kiln_hmac_sha256(key, klen, msg, strlen(msg), out);
}

int kiln_s3_sign(const struct kiln_s3_cfg *cfg, const char *method, const char *path,
                 const char *query, const struct kiln_s3_header *hdrs, size_t nhdrs,
                 const char *payload, const char *amz_date, char *auth, size_t authlen,
                 struct kiln_error *err)
{
    if (nhdrs == 0 || nhdrs > 32 || strlen(amz_date) != 16)
        return kiln_fail(err, KILN_EINVAL, "SigV4: bad headers or date");
    struct hdr_kv kv[32];
    for (size_t i = 0; i < nhdrs; i++) {
        size_t n = strlen(hdrs[i].name);
        if (n == 0 || n >= sizeof kv[i].name) return kiln_fail(err, KILN_EINVAL, "bad header");
        for (size_t j = 0; j <= n; j++)
            kv[i].name[j] = (char)tolower((unsigned char)hdrs[i].name[j]);
        kv[i].value = hdrs[i].value;
    }
    qsort(kv, nhdrs, sizeof kv[0], cmp_hdr);
    struct kiln_buf creq = {0}, signed_h = {0}, q = {0};
    int rc = KILN_OK;
    /* canonical query: parameters sorted, each "name=value" */
    char *qcopy = strdup(query ? query : "");
    char *parts[64];
    size_t np = 0;
    if (!qcopy) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    char *save = NULL;
    for (char *t = strtok_r(qcopy, "&", &save); t && np < 64; t = strtok_r(NULL, "&", &save))
        parts[np++] = t;
    qsort(parts, np, sizeof parts[0], cmp_str);
    for (size_t i = 0; i < np && rc == KILN_OK; i++)
        rc =
            kiln_buf_printf(&q, "%s%s%s", i ? "&" : "", parts[i], strchr(parts[i], '=') ? "" : "=");
    if (rc == KILN_OK && !q.data) rc = kiln_buf_puts(&q, "");
    if (rc == KILN_OK) rc = kiln_buf_printf(&creq, "%s\n%s\n%s\n", method, path, q.data);
    for (size_t i = 0; i < nhdrs && rc == KILN_OK; i++) {
        const char *v = kv[i].value;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        rc = kiln_buf_printf(&creq, "%s:%.*s\n", kv[i].name, (int)vl, v);
        if (rc == KILN_OK) rc = kiln_buf_printf(&signed_h, "%s%s", i ? ";" : "", kv[i].name);
    }
    if (rc == KILN_OK) rc = kiln_buf_printf(&creq, "\n%s\n%s", signed_h.data, payload);
    free(qcopy);
    if (rc != KILN_OK) {
        kiln_buf_free(&creq);
        kiln_buf_free(&signed_h);
        kiln_buf_free(&q);
        return kiln_fail(err, rc, "out of memory");
    }
    char chash[65], date[9], scope[256], sts[512];
    kiln_sha256_hex(creq.data, creq.len, chash);
    memcpy(date, amz_date, 8);
    date[8] = 0;
    snprintf(scope, sizeof scope, "%s/%s/s3/aws4_request", date, cfg->region);
    snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, chash);
    char k0[200];
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    snprintf(k0, sizeof k0, "AWS4%s", cfg->secret_key);
    hmac(k0, strlen(k0), date, k1);
    hmac(k1, 32, cfg->region, k2);
    hmac(k2, 32, "s3", k3);
    hmac(k3, 32, "aws4_request", k4);
    hmac(k4, 32, sts, sig);
    OPENSSL_cleanse(k0, sizeof k0);
    char sighex[65];
    kiln_hex(sig, 32, sighex);
    int n =
        snprintf(auth, authlen, "AWS4-HMAC-SHA256 Credential=%s/%s,SignedHeaders=%s,Signature=%s",
                 cfg->access_key, scope, signed_h.data, sighex);
    kiln_buf_free(&creq);
    kiln_buf_free(&signed_h);
    kiln_buf_free(&q);
    if (n < 0 || (size_t)n >= authlen)
        return kiln_fail(err, KILN_ELIMIT, "SigV4: output too small");
    return KILN_OK;
}

/* ------------------------------------------------------------------ */
/* The client: curl multi driven by uv_poll + uv_timer.                */

enum st { ST_PUT, ST_CREATE, ST_PART, ST_COMPLETE, ST_ABORT };

struct upload {
    struct kiln_s3_client *cl;
    struct upload *next;
    struct kiln_s3_cfg cfg;
    char key[1025];
    char url_path[3600]; /* "/bucket/encoded-key" */
    char host[256];
    char path[1024];
    int fd;
    uint64_t size;
    char sha[65];
    kiln_s3_progress_cb progress;
    kiln_s3_done_cb done;
    void *arg;
    enum st st;
    char upload_id[512];
    uint32_t nparts, part;
    char (*etags)[130];
    /* the request in flight */
    CURL *easy;
    struct curl_slist *hdrs;
    struct kiln_buf resp;
    char etag[130];
    uint64_t off, len, sent;
    struct kiln_buf body; /* in-memory request body (Complete) */
    char part_hash[65];
    int attempt;
    uv_timer_t retry;
    uv_work_t work;
    int work_busy;
    uint64_t acked;
    int fail_rc;
    char fail_msg[512];
    int closing;
};

struct sockctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct kiln_s3_client *cl;
};

struct kiln_s3_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct upload *uploads;
    int freeing;
    int open_handles;
};

static void maybe_free_client(struct kiln_s3_client *cl)
{
    if (cl->freeing && cl->open_handles == 0 && !cl->uploads) {
        curl_multi_cleanup(cl->multi);
        free(cl);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct kiln_s3_client *cl = h->data;
    cl->open_handles--;
    maybe_free_client(cl);
}

static void check_done(struct kiln_s3_client *cl);

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sockctx *s = (struct sockctx *)p;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(s->cl->multi, s->fd, flags, &running);
    check_done(s->cl);
}

static void on_timer(uv_timer_t *t)
{
    struct kiln_s3_client *cl = t->data;
    int running;
    curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(cl);
}

static int cb_timer(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    struct kiln_s3_client *cl = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&cl->timer);
    else
        uv_timer_start(&cl->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static void sock_closed(uv_handle_t *h)
{
    struct sockctx *s = (struct sockctx *)h;
    struct kiln_s3_client *cl = s->cl;
    free(s);
    cl->open_handles--;
    maybe_free_client(cl);
}

static int cb_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)e;
    struct kiln_s3_client *cl = userp;
    struct sockctx *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            curl_multi_assign(cl->multi, fd, NULL);
            uv_close((uv_handle_t *)&s->poll, sock_closed);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return -1;
        s->fd = fd;
        s->cl = cl;
        if (uv_poll_init_socket(cl->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        cl->open_handles++;
        curl_multi_assign(cl->multi, fd, s);
    }
    int ev = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev |= UV_WRITABLE;
    uv_poll_start(&s->poll, ev, on_poll);
    return 0;
}

int kiln_s3_client_new(uv_loop_t *loop, struct kiln_s3_client **out, struct kiln_error *err)
{
    *out = NULL;
    struct kiln_s3_client *cl = calloc(1, sizeof *cl);
    if (!cl) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    cl->loop = loop;
    cl->multi = curl_multi_init();
    if (!cl->multi || uv_timer_init(loop, &cl->timer) != 0) {
        if (cl->multi) curl_multi_cleanup(cl->multi);
        free(cl);
        return kiln_fail(err, KILN_EIO, "cannot set up the S3 client");
    }
    cl->open_handles = 1;
    cl->timer.data = cl;
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, cb_socket);
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, cb_timer);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
    *out = cl;
    return KILN_OK;
}

static void finish(struct upload *u, int rc, const char *msg);

void kiln_s3_client_free(struct kiln_s3_client *cl)
{
    if (!cl) return;
    cl->freeing = 1;
    /* finish() unlinks an upload only once its timer handle is closed, so
     * walk the list (finish is idempotent) instead of popping from it. */
    for (struct upload *u = cl->uploads, *next; u; u = next) {
        next = u->next;
        finish(u, KILN_ESTATE, "the S3 client was shut down");
    }
    uv_timer_stop(&cl->timer);
    uv_close((uv_handle_t *)&cl->timer, on_handle_closed);
}

/* --- one upload --- */

static void start_request(struct upload *u);

static void upload_unlink(struct upload *u)
{
    struct upload **pp = &u->cl->uploads;
    while (*pp && *pp != u)
        pp = &(*pp)->next;
    if (*pp) *pp = u->next;
}

static void upload_retry_closed(uv_handle_t *h)
{
    struct upload *u = h->data;
    struct kiln_s3_client *cl = u->cl;
    upload_unlink(u);
    if (u->fd >= 0) close(u->fd);
    free(u->etags);
    free(u);
    maybe_free_client(cl);
}

static void drop_easy(struct upload *u)
{
    if (u->easy) {
        curl_multi_remove_handle(u->cl->multi, u->easy);
        curl_easy_cleanup(u->easy);
        u->easy = NULL;
    }
    curl_slist_free_all(u->hdrs);
    u->hdrs = NULL;
}

static void finish(struct upload *u, int rc, const char *msg)
{
    if (u->closing) return;
    u->closing = 1;
    drop_easy(u);
    kiln_buf_free(&u->resp);
    kiln_buf_free(&u->body);
    if (u->done) u->done(u->arg, rc, msg);
    uv_timer_stop(&u->retry);
    if (u->work_busy) return; /* after_work closes */
    uv_close((uv_handle_t *)&u->retry, upload_retry_closed);
}

static void fail(struct upload *u, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct upload *u, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->fail_msg, sizeof u->fail_msg, fmt, ap);
    va_end(ap);
    u->fail_rc = rc;
    if ((u->st == ST_PART || u->st == ST_COMPLETE) && u->upload_id[0]) {
        /* Best effort: do not leave parts behind on the server. */
        u->st = ST_ABORT;
        u->attempt = 0;
        start_request(u);
        return;
    }
    finish(u, rc, u->fail_msg);
}

static void hash_work(uv_work_t *w)
{
    struct upload *u = w->data;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char h[32];
    unsigned hl = 0;
    char buf[65536];
    uint64_t left = u->len, off = u->off;
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    while (ok && left) {
        size_t want = left < sizeof buf ? (size_t)left : sizeof buf;
        ssize_t r = pread(u->fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            ok = 0;
            break;
        }
        ok = EVP_DigestUpdate(md, buf, (size_t)r) == 1;
        off += (uint64_t)r;
        left -= (uint64_t)r;
    }
    ok = ok && EVP_DigestFinal_ex(md, h, &hl) == 1;
    EVP_MD_CTX_free(md);
    if (ok)
        kiln_hex(h, 32, u->part_hash);
    else
        u->part_hash[0] = 0;
}

static void hash_done(uv_work_t *w, int status)
{
    struct upload *u = w->data;
    u->work_busy = 0;
    if (u->closing) {
        uv_close((uv_handle_t *)&u->retry, upload_retry_closed);
        return;
    }
    if (status != 0 || !u->part_hash[0]) {
        fail(u, KILN_EIO, "cannot read %s to hash it", u->path);
        return;
    }
    start_request(u);
}

/* Hash [off, off+len) on the thread pool, then send it. */
static void hash_then_send(struct upload *u)
{
    u->work.data = u;
    u->work_busy = 1;
    if (uv_queue_work(u->cl->loop, &u->work, hash_work, hash_done) != 0) {
        u->work_busy = 0;
        fail(u, KILN_EIO, "cannot queue hashing work");
    }
}

static void start_part(struct upload *u)
{
    u->st = ST_PART;
    u->attempt = 0;
    u->off = (uint64_t)(u->part - 1) * u->cfg.part_size;
    u->len = u->size - u->off < u->cfg.part_size ? u->size - u->off : u->cfg.part_size;
    hash_then_send(u);
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    struct upload *u = arg;
    size_t want = size * nitems;
    if (u->st == ST_COMPLETE) {
        size_t left = u->body.len - (size_t)u->sent;
        if (want > left) want = left;
        memcpy(buf, u->body.data + u->sent, want);
        u->sent += want;
        return want;
    }
    uint64_t left = u->len - u->sent;
    if (want > left) want = (size_t)left;
    if (want == 0) return 0;
    ssize_t r;
    do
        r = pread(u->fd, buf, want, (off_t)(u->off + u->sent));
    while (r < 0 && errno == EINTR);
    if (r <= 0) return CURL_READFUNC_ABORT;
    u->sent += (uint64_t)r;
    return (size_t)r;
}

static size_t write_cb(char *p, size_t size, size_t n, void *arg)
{
    struct upload *u = arg;
    if (u->resp.len + size * n > (1 << 20)) return 0; /* S3 replies are small */
    return kiln_buf_append(&u->resp, p, size * n) == KILN_OK ? size * n : 0;
}

static size_t header_cb(char *p, size_t size, size_t n, void *arg)
{
    struct upload *u = arg;
    size_t len = size * n;
    if (len > 5 && !strncasecmp(p, "etag:", 5)) {
        const char *v = p + 5;
        while (*v == ' ')
            v++;
        size_t vl = len - (size_t)(v - p);
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        if (vl < sizeof u->etag) {
            memcpy(u->etag, v, vl);
            u->etag[vl] = 0;
        }
    }
    return len;
}

static int xfer_cb(void *arg, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
    (void)dlt;
    (void)dln;
    (void)ult;
    struct upload *u = arg;
    if (u->progress && (u->st == ST_PUT || u->st == ST_PART) && uln > 0)
        u->progress(u->arg, u->acked + (uint64_t)uln, u->size);
    return 0;
}

static const char empty_hash[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* The method, query and payload hash of the request for u's state (for
 * COMPLETE, the XML body that lists the parts, and its hash). KILN_OK or
 * KILN_ENOMEM. */
static int request_target(struct upload *u, char *query, size_t qlen, const char **method,
                          const char **payload)
{
    char idenc[600];
    *method = "PUT";
    *payload = u->part_hash;
    if (u->upload_id[0]) kiln_s3_uri_encode(u->upload_id, 0, idenc, sizeof idenc);
    switch (u->st) {
    case ST_PUT:
        break;
    case ST_CREATE:
        *method = "POST";
        *payload = empty_hash;
        snprintf(query, qlen, "uploads=");
        break;
    case ST_PART:
        snprintf(query, qlen, "partNumber=%u&uploadId=%s", u->part, idenc);
        break;
    case ST_COMPLETE: {
        *method = "POST";
        kiln_buf_reset(&u->body);
        int rc = kiln_buf_puts(&u->body, "<CompleteMultipartUpload>");
        for (uint32_t i = 0; i < u->nparts && rc == KILN_OK; i++)
            rc =
                kiln_buf_printf(&u->body, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>",
                                i + 1, u->etags[i]);
        if (rc == KILN_OK) rc = kiln_buf_puts(&u->body, "</CompleteMultipartUpload>");
        if (rc != KILN_OK) return KILN_ENOMEM;
        kiln_sha256_hex(u->body.data, u->body.len, u->part_hash);
        snprintf(query, qlen, "uploadId=%s", idenc);
        break;
    }
    case ST_ABORT:
        *method = "DELETE";
        *payload = empty_hash;
        snprintf(query, qlen, "uploadId=%s", idenc);
        break;
    }
    return KILN_OK;
}

/* The signed header lines (SigV4, signed now) into *out, for the caller to
 * free with curl_slist_free_all. KILN_OK or the error in err. */
static int signed_headers(struct upload *u, const char *method, const char *query,
                          const char *payload, struct curl_slist **out, struct kiln_error *err)
{
    char amz[20], auth[600];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz, sizeof amz, "%Y%m%dT%H%M%SZ", &tm);
    struct kiln_s3_header h[] = {
        {"host", u->host}, {"x-amz-content-sha256", payload}, {"x-amz-date", amz}};
    int rc = kiln_s3_sign(&u->cfg, method, u->url_path, query, h, 3, payload, amz, auth,
                          sizeof auth, err);
    if (rc != KILN_OK) return rc;
    char ha[700], hd[64], hs[100];
    snprintf(ha, sizeof ha, "Authorization: %s", auth);
    snprintf(hd, sizeof hd, "x-amz-date: %s", amz);
    snprintf(hs, sizeof hs, "x-amz-content-sha256: %s", payload);
    struct curl_slist *l = NULL, *t;
    const char *lines[] = {ha, hd, hs, "Expect:", NULL};
    for (int i = 0; lines[i]; i++) {
        t = curl_slist_append(l, lines[i]);
        if (!t) {
            curl_slist_free_all(l);
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
        }
        l = t;
    }
    if (u->st == ST_COMPLETE) {
        t = curl_slist_append(l, "Content-Type: application/xml");
        if (t) l = t;
    }
    *out = l;
    return KILN_OK;
}

/* The options of one request on e: callbacks, timeouts, and the body that
 * u's state sends. */
static void set_request_options(struct upload *u, CURL *e, const char *url)
{
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, u->hdrs);
    curl_easy_setopt(e, CURLOPT_PRIVATE, u);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, u);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, u);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, xfer_cb);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, u);
    if (u->st == ST_PUT || u->st == ST_PART) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(e, CURLOPT_READDATA, u);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)u->len);
    } else if (u->st == ST_COMPLETE) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(e, CURLOPT_READDATA, u);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u->body.len);
    } else if (u->st == ST_CREATE) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
}

/* Sends the request for u's state (from scratch: a retry sends it again). */
static void start_request(struct upload *u)
{
    char query[700] = "", url[4700];
    const char *method, *payload;
    drop_easy(u);
    kiln_buf_reset(&u->resp);
    u->etag[0] = 0;
    u->sent = 0;
    if (request_target(u, query, sizeof query, &method, &payload) != KILN_OK) {
        fail(u, KILN_ENOMEM, "out of memory");
        return;
    }
    struct kiln_error err = {0};
    if (signed_headers(u, method, query, payload, &u->hdrs, &err) != KILN_OK) {
        finish(u, err.code, err.msg);
        return;
    }
    snprintf(url, sizeof url, "%s%s%s%s", u->cfg.endpoint, u->url_path, query[0] ? "?" : "", query);
    CURL *e = curl_easy_init();
    if (!e) {
        finish(u, KILN_ENOMEM, "out of memory");
        return;
    }
    u->easy = e;
    set_request_options(u, e, url);
    if (curl_multi_add_handle(u->cl->multi, e) != CURLM_OK) {
        drop_easy(u);
        finish(u, KILN_EIO, "cannot start the transfer");
    }
}

static void on_retry(uv_timer_t *t)
{
    start_request(t->data);
}

static void request_done(struct upload *u, CURLcode res)
{
    long status = 0;
    curl_easy_getinfo(u->easy, CURLINFO_RESPONSE_CODE, &status);
    int transient = res != CURLE_OK || status >= 500 || status == 408 || status == 429;
    int ok = res == CURLE_OK && status >= 200 && status < 300;
    /* S3 may answer 200 with an <Error> body for CompleteMultipartUpload. */
    if (ok && u->st == ST_COMPLETE && u->resp.data && strstr(u->resp.data, "<Error>")) {
        ok = 0;
        transient = strstr(u->resp.data, "InternalError") != NULL;
    }
    if (!ok) {
        char code[128] = "", msg[256] = "";
        if (u->resp.data) {
            kiln_s3_xml_value(u->resp.data, u->resp.len, "Code", code, sizeof code);
            kiln_s3_xml_value(u->resp.data, u->resp.len, "Message", msg, sizeof msg);
        }
        if (u->st == ST_ABORT) {
            finish(u, u->fail_rc, u->fail_msg);
            return;
        }
        if (transient && u->attempt < u->cfg.max_retries) {
            uint64_t delay = (uint64_t)u->cfg.backoff_ms << u->attempt;
            u->attempt++;
            drop_easy(u);
            uv_timer_start(&u->retry, on_retry, delay, 0);
            return;
        }
        if (res != CURLE_OK)
            fail(u, KILN_ENET, "S3 %s %s: %s", u->cfg.endpoint, u->key, curl_easy_strerror(res));
        else
            fail(u, status == 403 || status == 401 ? KILN_EAUTH : KILN_ENET,
                 "S3 answered %ld %s%s%s for %s", status, code, msg[0] ? ": " : "", msg, u->key);
        return;
    }
    switch (u->st) {
    case ST_PUT:
        u->acked = u->size;
        if (u->progress) u->progress(u->arg, u->acked, u->size);
        finish(u, KILN_OK, "uploaded");
        return;
    case ST_CREATE:
        if (kiln_s3_xml_value(u->resp.data ? u->resp.data : "", u->resp.len, "UploadId",
                              u->upload_id, sizeof u->upload_id) != KILN_OK ||
            !u->upload_id[0]) {
            fail(u, KILN_EPARSE, "S3 CreateMultipartUpload reply has no UploadId");
            return;
        }
        drop_easy(u);
        u->part = 1;
        start_part(u);
        return;
    case ST_PART:
        if (!u->etag[0]) {
            fail(u, KILN_EPARSE, "S3 UploadPart %u reply has no ETag", u->part);
            return;
        }
        snprintf(u->etags[u->part - 1], sizeof u->etags[0], "%s", u->etag);
        u->acked += u->len;
        if (u->progress) u->progress(u->arg, u->acked, u->size);
        drop_easy(u);
        if (u->part < u->nparts) {
            u->part++;
            start_part(u);
        } else {
            u->st = ST_COMPLETE;
            u->attempt = 0;
            start_request(u);
        }
        return;
    case ST_COMPLETE:
        finish(u, KILN_OK, "uploaded (multipart)");
        return;
    case ST_ABORT:
        finish(u, u->fail_rc, u->fail_msg);
        return;
    }
}

static void check_done(struct kiln_s3_client *cl)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(cl->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        struct upload *u = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&u);
        if (u && u->easy == m->easy_handle) request_done(u, m->data.result);
    }
}

int kiln_s3_put_file(struct kiln_s3_client *cl, const struct kiln_s3_cfg *cfg, const char *key,
                     const char *path, const char *sha256_hex, kiln_s3_progress_cb progress,
                     kiln_s3_done_cb done, void *arg, struct kiln_error *err)
{
    if (!kiln_s3_key_valid(key))
        return kiln_fail(err, KILN_EINVAL, "S3 key must be 1-1024 bytes, no '..', no leading '/'");
    if (!cfg->bucket[0] || !cfg->endpoint[0])
        return kiln_fail(err, KILN_EINVAL, "S3 target needs an endpoint and a bucket");
    struct upload *u = calloc(1, sizeof *u);
    if (!u) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    u->cl = cl;
    u->cfg = *cfg;
    kiln_s3_cfg_defaults(&u->cfg);
    snprintf(u->key, sizeof u->key, "%s", key);
    snprintf(u->path, sizeof u->path, "%s", path);
    const char *hs = strstr(cfg->endpoint, "://");
    hs = hs ? hs + 3 : cfg->endpoint;
    size_t hl = strcspn(hs, "/");
    if (hl == 0 || hl >= sizeof u->host) {
        free(u);
        return kiln_fail(err, KILN_EINVAL, "S3 endpoint %s has no host", cfg->endpoint);
    }
    memcpy(u->host, hs, hl);
    char bk[400], ky[3100];
    if (kiln_s3_uri_encode(cfg->bucket, 0, bk, sizeof bk) != KILN_OK ||
        kiln_s3_uri_encode(key, 1, ky, sizeof ky) != KILN_OK) {
        free(u);
        return kiln_fail(err, KILN_ELIMIT, "S3 bucket or key too long");
    }
    snprintf(u->url_path, sizeof u->url_path, "/%s/%s", bk, ky);
    u->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (u->fd < 0 || fstat(u->fd, &st) != 0) {
        int e = errno;
        if (u->fd >= 0) close(u->fd);
        free(u);
        return kiln_fail(err, KILN_EIO, "cannot open %s: %s", path, strerror(e));
    }
    u->size = (uint64_t)st.st_size;
    u->progress = progress;
    u->done = done;
    u->arg = arg;
    if (uv_timer_init(cl->loop, &u->retry) != 0) {
        close(u->fd);
        free(u);
        return kiln_fail(err, KILN_EIO, "cannot create a timer");
    }
    u->retry.data = u;
    u->next = cl->uploads;
    cl->uploads = u;
    if (u->size <= u->cfg.multipart_threshold) {
        u->st = ST_PUT;
        u->off = 0;
        u->len = u->size;
        if (sha256_hex && strlen(sha256_hex) == 64) {
            snprintf(u->part_hash, sizeof u->part_hash, "%s", sha256_hex);
            start_request(u);
        } else {
            hash_then_send(u);
        }
        return KILN_OK;
    }
    u->nparts = (uint32_t)((u->size + u->cfg.part_size - 1) / u->cfg.part_size);
    if (u->nparts > 10000) {
        u->done = NULL;
        finish(u, KILN_ELIMIT, "too many parts");
        return kiln_fail(err, KILN_ELIMIT, "file needs more than 10000 parts; raise part_size");
    }
    u->etags = calloc(u->nparts, sizeof *u->etags);
    if (!u->etags) {
        u->done = NULL;
        finish(u, KILN_ENOMEM, "out of memory");
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    u->st = ST_CREATE;
    start_request(u);
    return KILN_OK;
}
