/* catalog_http.c - the catalog's HTTP endpoints (see catalog.h), including
 * the Nix binary cache under /nix-cache/. */
#include "catalog/catalog.h"

#include "http/http.h"
#include "nix/nixcache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#define API "/api/v1/catalog"
#define DL_CHUNK (256 * 1024)
#define DL_HIGH_WATER (1024 * 1024)
#define PUBLISH_MAX (1024 * 1024)

static int err_status(int code)
{
    return kiln_err_http_status(code);
}

static void respond_err(struct kiln_http_req *req, const struct kiln_error *e)
{
    int code = e->code ? e->code : KILN_EIO;
    kiln_http_respond_error(req, err_status(code), kiln_code_name(code), "%s",
                            e->msg[0] ? e->msg : kiln_strerror(code));
}

/* ---------- downloads (blob file, optional single range) ---------- */

struct dl {
    struct kiln_http_req *req;
    uv_loop_t *loop;
    uv_fs_t fs;
    uv_file fd;
    uint64_t off, end; /* [off, end) */
    char *buf;
    int reading, gone, done;
};

static void dl_free(struct dl *d)
{
    if (d->fd >= 0) {
        uv_fs_t c;
        uv_fs_close(NULL, &c, d->fd, NULL);
        uv_fs_req_cleanup(&c);
    }
    free(d->buf);
    free(d);
}

static void dl_pump(struct dl *d);

static void dl_on_close(struct kiln_http_req *req, void *arg)
{
    (void)req;
    struct dl *d = arg;
    d->gone = 1;
    if (!d->reading) dl_free(d);
}

static void dl_on_drain(struct kiln_http_req *req, void *arg)
{
    (void)req;
    struct dl *d = arg;
    if (!d->reading && !d->gone && !d->done) dl_pump(d);
}

static void dl_read_cb(uv_fs_t *fs)
{
    struct dl *d = fs->data;
    ssize_t n = fs->result;
    uv_fs_req_cleanup(fs);
    d->reading = 0;
    if (d->gone) {
        dl_free(d);
        return;
    }
    if (n <= 0) {
        /* The blob shrank under us: end the stream short so the client sees
         * a truncated body rather than a hang. */
        d->done = 1;
        kiln_http_stream_end(d->req);
        dl_free(d);
        return;
    }
    d->off += (uint64_t)n;
    if (kiln_http_stream_write(d->req, d->buf, (size_t)n) != KILN_OK) {
        d->done = 1;
        dl_free(d);
        return;
    }
    if (d->off >= d->end) {
        d->done = 1;
        kiln_http_stream_end(d->req);
        dl_free(d);
        return;
    }
    if (kiln_http_stream_pending(d->req) < DL_HIGH_WATER) dl_pump(d);
    /* else dl_on_drain resumes */
}

static void dl_pump(struct dl *d)
{
    uint64_t want = d->end - d->off;
    if (want > DL_CHUNK) want = DL_CHUNK;
    uv_buf_t b = uv_buf_init(d->buf, (unsigned)want);
    d->fs.data = d;
    d->reading = 1;
    if (uv_fs_read(d->loop, &d->fs, d->fd, &b, 1, (int64_t)d->off, dl_read_cb) != 0) {
        d->reading = 0;
        d->done = 1;
        kiln_http_stream_end(d->req);
        dl_free(d);
    }
}

/* Parse "bytes=a-b", "bytes=a-", "bytes=-n" against size. Returns 1 for a
 * satisfiable range, 0 for no/ignored range, -1 for unsatisfiable. */
int kiln_catalog_parse_range(const char *h, uint64_t size, uint64_t *a, uint64_t *b)
{
    if (!h || strncmp(h, "bytes=", 6)) return 0;
    h += 6;
    if (strchr(h, ',')) return 0; /* multiple ranges: send the whole thing */
    char *end;
    errno = 0;
    if (*h == '-') {
        unsigned long long n = strtoull(h + 1, &end, 10);
        if (errno || *end || end == h + 1) return 0;
        if (n == 0 || size == 0) return -1;
        *a = n >= size ? 0 : size - n;
        *b = size - 1;
        return 1;
    }
    if (*h < '0' || *h > '9') return 0;
    unsigned long long x = strtoull(h, &end, 10);
    if (errno || *end != '-') return 0;
    const char *p = end + 1;
    unsigned long long y;
    if (!*p) {
        y = size ? size - 1 : 0;
    } else {
        if (*p < '0' || *p > '9') return 0;
        y = strtoull(p, &end, 10);
        if (errno || *end) return 0;
        if (y < x) return 0;
        if (y >= size) y = size ? size - 1 : 0;
    }
    if (x >= size) return -1;
    *a = x;
    *b = y;
    return 1;
}

static void send_file(struct kiln_http_req *req, uv_loop_t *loop, const char *path,
                      const char *ctype, const char *extra)
{
    struct dl *d = calloc(1, sizeof *d);
    char *buf = malloc(DL_CHUNK);
    if (!d || !buf) {
        free(d);
        free(buf);
        kiln_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    d->buf = buf;
    d->req = req;
    d->loop = loop;
    d->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) close(fd);
        free(buf);
        free(d);
        kiln_http_respond_error(req, 404, "not_found", "blob is missing from the catalog store");
        return;
    }
    d->fd = fd;
    uint64_t size = (uint64_t)st.st_size, a = 0, b = size ? size - 1 : 0;
    int status = 200;
    int rr = kiln_catalog_parse_range(kiln_http_req_header(req, "Range"), size, &a, &b);
    char hdrs[512];
    if (rr < 0) {
        snprintf(hdrs, sizeof hdrs, "Content-Range: bytes */%" PRIu64 "\r\n", size);
        kiln_http_respond(
            req, 416, "application/json", hdrs,
            "{\"error\":{\"code\":\"invalid\",\"message\":\"range not satisfiable\"}}", 62);
        dl_free(d);
        return;
    }
    if (rr > 0) {
        status = 206;
        snprintf(hdrs, sizeof hdrs,
                 "Accept-Ranges: bytes\r\nContent-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64
                 "\r\n%s",
                 a, b, size, extra ? extra : "");
    } else {
        snprintf(hdrs, sizeof hdrs, "Accept-Ranges: bytes\r\nX-Kiln-Size: %" PRIu64 "\r\n%s", size,
                 extra ? extra : "");
    }
    d->off = a;
    d->end = size ? b + 1 : 0;
    if (kiln_http_stream_begin(req, status, ctype, hdrs) != KILN_OK) {
        dl_free(d);
        return;
    }
    if (d->off >= d->end || !strcmp(kiln_http_req_method(req), "HEAD")) {
        kiln_http_stream_end(req);
        dl_free(d);
        return;
    }
    kiln_http_req_on_close(req, dl_on_close, d);
    kiln_http_stream_on_drain(req, dl_on_drain, d);
    dl_pump(d);
}

/* ---------- uploads ---------- */

struct up {
    struct kiln_catalog *c;
    struct kiln_catalog_upload *u;
    struct kiln_buf body; /* publish JSON */
    int publish;
    /* finishing (fsync + rename) on the thread pool */
    uv_work_t work;
    struct kiln_http_req *req;
    struct kiln_catalog_upload *fin;
    int working, gone, rc;
    char digest[KILN_DIGEST_STR];
    uint64_t size;
    struct kiln_error e;
};

static void up_free(struct up *x)
{
    kiln_catalog_upload_abort(x->u);
    kiln_buf_free(&x->body);
    free(x);
}

static void up_on_close(struct kiln_http_req *req, void *arg)
{
    (void)req;
    up_free(arg); /* client went away: a truncated upload leaves nothing */
}

static int up_on_data(struct kiln_http_req *req, const char *p, size_t n, void *arg)
{
    struct up *x = arg;
    struct kiln_error e = {0};
    int rc =
        x->publish ? kiln_buf_append(&x->body, p, n) : kiln_catalog_upload_write(x->u, p, n, &e);
    if (rc == KILN_OK) return 0;
    if (x->publish) kiln_fail(&e, rc, "publish request body is larger than 1 MiB");
    kiln_http_req_on_close(req, NULL, NULL);
    respond_err(req, &e);
    up_free(x);
    return 1;
}

static void do_publish(struct kiln_catalog *c, struct kiln_http_req *req, const char *body,
                       size_t len)
{
    json_error_t je;
    json_t *in = json_loadb(body ? body : "", len, 0, &je);
    if (!json_is_object(in)) {
        json_decref(in);
        kiln_http_respond_error(req, 400, "parse_error",
                                "publish body must be a JSON object {\"digest\":..,\"meta\":{..}}: "
                                "%s (line %d)",
                                je.text, je.line);
        return;
    }
    const char *digest = json_string_value(json_object_get(in, "digest"));
    json_t *meta = json_object_get(in, "meta");
    struct kiln_error e = {0};
    int64_t id = 0;
    int created = 0;
    if (!digest) {
        kiln_fail(&e, KILN_EINVAL, "publish needs \"digest\":\"sha256:<hex>\"");
    } else if (kiln_catalog_publish(c, meta, digest, &id, &created, &e) == KILN_OK) {
        json_t *entry = NULL;
        if (kiln_catalog_get(c, id, &entry, &e) == KILN_OK) {
            json_object_set_new(entry, "created", json_boolean(created));
            json_decref(in);
            kiln_http_respond_json(req, created ? 201 : 200, entry);
            return;
        }
    }
    json_decref(in);
    respond_err(req, &e);
}

static void fin_work(uv_work_t *w)
{
    struct up *x = w->data;
    x->rc = kiln_catalog_upload_finish(x->fin, x->digest, &x->size, &x->e);
    x->fin = NULL;
}

static void fin_done(uv_work_t *w, int status)
{
    (void)status;
    struct up *x = w->data;
    x->working = 0;
    if (!x->gone) {
        kiln_http_req_on_close(x->req, NULL, NULL);
        if (x->rc != KILN_OK)
            respond_err(x->req, &x->e);
        else
            kiln_http_respond_json(x->req, 201,
                                   json_pack("{s:s,s:I,s:b}", "digest", x->digest, "size",
                                             (json_int_t)x->size, "existed", 0));
    }
    up_free(x);
}

static void fin_on_close(struct kiln_http_req *req, void *arg)
{
    (void)req;
    struct up *x = arg;
    x->gone = 1; /* the blob is still stored (it is complete); fin_done frees */
}

static void up_on_end(struct kiln_http_req *req, void *arg)
{
    struct up *x = arg;
    kiln_http_req_on_close(req, NULL, NULL);
    if (x->publish) {
        do_publish(x->c, req, x->body.data, x->body.len);
        up_free(x);
        return;
    }
    /* fsync of a large blob takes as long as the disk needs: not on the loop */
    x->req = req;
    x->fin = x->u;
    x->u = NULL;
    x->work.data = x;
    kiln_http_req_on_close(req, fin_on_close, x);
    x->working = 1;
    if (uv_queue_work(kiln_catalog_loop(x->c), &x->work, fin_work, fin_done) != 0) {
        fin_work(&x->work);
        fin_done(&x->work, 0);
    }
}

/* Only an admin writes here by hand (the server's publish stage signs what
 * jobs that passed their tests built): a worker's credential must not be
 * able to plant an entry the farm's key then signs. */
static int need_writer(struct kiln_http_req *req, enum kiln_role role)
{
    /* No token at all is 401 even where anonymous reading made role READ. */
    if (role == KILN_ROLE_NONE ||
        (role != KILN_ROLE_ADMIN && !kiln_http_req_header(req, "Authorization"))) {
        kiln_http_respond_error(req, 401, "unauthorized",
                                "uploading to the catalog needs an admin token");
        return 0;
    }
    if (role != KILN_ROLE_ADMIN) {
        kiln_http_respond_error(req, 403, "forbidden",
                                "uploading to the catalog needs an admin token, not %s",
                                kiln_role_name(role));
        return 0;
    }
    return 1;
}

static void blob_put(struct kiln_catalog *c, struct kiln_http_req *req, const char *digest)
{
    char hex[65];
    if (kiln_catalog_parse_digest(digest, hex) != KILN_OK) {
        kiln_http_respond_error(req, 400, "invalid", "blob name must be sha256:<64 hex digits>");
        return;
    }
    int64_t expect = -1;
    const char *cl = kiln_http_req_header(req, "Content-Length");
    if (cl) {
        char *end;
        errno = 0;
        long long v = strtoll(cl, &end, 10);
        if (errno || *end || v < 0) {
            kiln_http_respond_error(req, 400, "invalid", "bad Content-Length");
            return;
        }
        expect = v;
    }
    uint64_t have = 0;
    if (kiln_catalog_blob_have(c, digest, &have)) {
        /* Idempotent: the bytes are already here, nothing to transfer. */
        kiln_http_respond_json(
            req, 200,
            json_pack("{s:s,s:I,s:b}", "digest", digest, "size", (json_int_t)have, "existed", 1));
        return;
    }
    struct up *x = calloc(1, sizeof *x);
    struct kiln_error e = {0};
    if (!x) {
        kiln_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    x->c = c;
    if (kiln_catalog_upload_begin(c, digest, expect, &x->u, &e) != KILN_OK) {
        respond_err(req, &e);
        free(x);
        return;
    }
    if (kiln_http_req_take_body(req, up_on_data, up_on_end, up_on_close, x) != KILN_OK) {
        kiln_http_respond_error(req, 500, "internal", "cannot stream the upload");
        up_free(x);
    }
}

static void publish_post(struct kiln_catalog *c, struct kiln_http_req *req)
{
    struct up *x = calloc(1, sizeof *x);
    if (!x) {
        kiln_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    x->c = c;
    x->publish = 1;
    x->body.max = PUBLISH_MAX;
    if (kiln_http_req_take_body(req, up_on_data, up_on_end, up_on_close, x) != KILN_OK) {
        free(x);
        kiln_http_respond_error(req, 500, "internal", "cannot read the request body");
    }
}

/* ---------- reads ---------- */

static void list(struct kiln_catalog *c, struct kiln_http_req *req)
{
    static const char *keys[] = {"name",   "version", "sm",     "isa",    "cuda",   "platform",
                                 "branch", "recipe",  "digest", "commit", "python", NULL};
    json_t *f = json_object();
    char v[256];
    for (int i = 0; keys[i]; i++) {
        int r = kiln_http_req_param(req, keys[i], v, sizeof v);
        if (r < 0) {
            json_decref(f);
            kiln_http_respond_error(req, 400, "invalid", "bad value for filter %s", keys[i]);
            return;
        }
        if (r == 1 && v[0]) json_object_set_new(f, keys[i], json_string(v));
    }
    if (kiln_http_req_param(req, "limit", v, sizeof v) == 1)
        json_object_set_new(f, "limit", json_integer(atoll(v)));
    json_t *arr = NULL;
    struct kiln_error e = {0};
    int rc = kiln_catalog_list(c, f, &arr, &e);
    json_decref(f);
    if (rc != KILN_OK) {
        respond_err(req, &e);
        return;
    }
    kiln_http_respond_json(req, 200, json_pack("{s:o}", "entries", arr));
}

static int parse_id(const char *s, size_t n, int64_t *id)
{
    if (n == 0 || n > 18) return 0;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    *id = v;
    return v > 0;
}

static void entry_get(struct kiln_catalog *c, struct kiln_http_req *req, int64_t id, int download,
                      uv_loop_t *loop)
{
    json_t *e = NULL;
    struct kiln_error err = {0};
    if (kiln_catalog_get(c, id, &e, &err) != KILN_OK) {
        respond_err(req, &err);
        return;
    }
    int sig_ok = kiln_catalog_entry_signature_ok(c, e);
    if (!download) {
        json_object_set_new(e, "signature_ok", json_boolean(sig_ok));
        kiln_http_respond_json(req, 200, e);
        return;
    }
    if (!sig_ok) {
        json_decref(e);
        kiln_http_respond_error(req, 409, "conflict",
                                "catalog entry %lld fails its signature check; run `kiln catalog "
                                "verify`",
                                (long long)id);
        return;
    }
    char path[PATH_MAX], extra[256];
    const char *digest = json_string_value(json_object_get(e, "digest"));
    kiln_catalog_blob_path(c, digest, path, sizeof path);
    snprintf(extra, sizeof extra,
             "X-Kiln-Digest: %s\r\nContent-Disposition: attachment; filename=\"%s-%s\"\r\n", digest,
             json_string_value(json_object_get(e, "name")),
             json_string_value(json_object_get(e, "version")));
    json_decref(e);
    send_file(req, loop, path, "application/octet-stream", extra);
}

static int nix_cache(struct kiln_catalog *c, struct kiln_http_req *req, const char *rest,
                     int staged, uv_loop_t *loop)
{
    struct kiln_error e = {0};
    struct kiln_buf b = {0};
    if (!strcmp(rest, "nix-cache-info")) {
        if (kiln_catalog_nix_cache_info(c, &b) == KILN_OK)
            kiln_http_respond(req, 200, "text/x-nix-cache-info", NULL, b.data, b.len);
        else
            kiln_http_respond_error(req, 500, "internal", "out of memory");
        kiln_buf_free(&b);
        return 1;
    }
    size_t n = strlen(rest);
    if (n == KILN_NIX_HASHPART_LEN + 8 && !strcmp(rest + KILN_NIX_HASHPART_LEN, ".narinfo")) {
        char hp[KILN_NIX_HASHPART_LEN + 1];
        memcpy(hp, rest, KILN_NIX_HASHPART_LEN);
        hp[KILN_NIX_HASHPART_LEN] = 0;
        if (kiln_catalog_narinfo(c, hp, staged, &b, &e) == KILN_OK)
            kiln_http_respond(req, 200, "text/x-nix-narinfo", NULL, b.data, b.len);
        else
            respond_err(req, &e);
        kiln_buf_free(&b);
        return 1;
    }
    if (!strncmp(rest, "nar/", 4)) {
        char path[PATH_MAX];
        uint64_t size;
        if (kiln_catalog_nar_path(c, rest + 4, staged, path, sizeof path, &size, &e) != KILN_OK) {
            respond_err(req, &e);
            return 1;
        }
        send_file(req, loop, path, "application/x-nix-nar", NULL);
        return 1;
    }
    kiln_http_respond_error(req, 404, "not_found", "no such file in the Nix cache");
    return 1;
}

int kiln_catalog_http(struct kiln_catalog *c, struct kiln_http_req *req, enum kiln_role role,
                      int staged)
{
    const char *path = kiln_http_req_path(req);
    const char *m = kiln_http_req_method(req);
    int is_get = !strcmp(m, "GET") || !strcmp(m, "HEAD");
    uv_loop_t *loop = kiln_catalog_loop(c);
    if (!strncmp(path, "/nix-cache/", 11)) {
        if (!is_get) {
            kiln_http_respond_error(req, 405, "method_not_allowed", "the Nix cache is read-only");
            return 1;
        }
        if (!kiln_role_allows(role, KILN_ROLE_READ)) {
            kiln_http_respond_error(req, 401, "unauthorized", "reading the cache needs a token");
            return 1;
        }
        return nix_cache(c, req, path + 11, staged, loop);
    }
    if (strncmp(path, API, strlen(API)) || (path[strlen(API)] && path[strlen(API)] != '/'))
        return 0;
    const char *rest = path + strlen(API);
    if (*rest == '/') rest++;
    if (is_get && !kiln_role_allows(role, KILN_ROLE_READ)) {
        kiln_http_respond_error(req, 401, "unauthorized", "reading the catalog needs a token");
        return 1;
    }
    if (!*rest) {
        if (is_get) {
            list(c, req);
        } else if (!strcmp(m, "POST")) {
            if (need_writer(req, role)) publish_post(c, req);
        } else {
            kiln_http_respond_error(req, 405, "method_not_allowed", "use GET or POST");
        }
        return 1;
    }
    if (!strncmp(rest, "blobs/", 6)) {
        const char *digest = rest + 6;
        if (is_get) {
            uint64_t size = 0;
            char hex[65];
            if (kiln_catalog_parse_digest(digest, hex) != KILN_OK) {
                kiln_http_respond_error(req, 400, "invalid", "blob name must be sha256:<hex>");
            } else if (kiln_catalog_blob_have(c, digest, &size)) {
                char h[64];
                snprintf(h, sizeof h, "X-Kiln-Size: %" PRIu64 "\r\n", size);
                kiln_http_respond(req, 200, "application/json", h, NULL, 0);
            } else {
                kiln_http_respond_error(req, 404, "not_found", "blob %s is not in the catalog",
                                        digest);
            }
        } else if (!strcmp(m, "PUT") || !strcmp(m, "POST")) {
            if (need_writer(req, role)) blob_put(c, req, digest);
        } else {
            kiln_http_respond_error(req, 405, "method_not_allowed", "use HEAD, GET or PUT");
        }
        return 1;
    }
    const char *slash = strchr(rest, '/');
    int64_t id;
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (!parse_id(rest, idlen, &id)) {
        kiln_http_respond_error(req, 404, "not_found", "no such catalog resource");
        return 1;
    }
    if (!is_get) {
        kiln_http_respond_error(req, 405, "method_not_allowed", "catalog entries are read-only");
        return 1;
    }
    if (!slash) {
        entry_get(c, req, id, 0, loop);
    } else if (!strcmp(slash, "/download")) {
        entry_get(c, req, id, 1, loop);
    } else {
        kiln_http_respond_error(req, 404, "not_found", "no such catalog resource");
    }
    return 1;
}
