/* export.c - the worker's uploads of NARs to the server. */
#include "workers/export.h"

#include "common/buf.h"
#include "common/hash.h"
#include "common/spawn.h"
#include "nix/nar.h"
#include "nix/nixcache.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct rd {
    int fd;
};

static size_t rd_cb(char *p, size_t size, size_t n, void *arg)
{
    struct rd *r = arg;
    for (;;) {
        ssize_t got = read(r->fd, p, size * n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return CURL_READFUNC_ABORT;
        return (size_t)got;
    }
}

static size_t wr_cb(char *p, size_t size, size_t n, void *arg)
{
    struct kiln_buf *b = arg;
    return kiln_buf_append(b, p, size * n) == KILN_OK ? size * n : 0;
}

/* A refusal from the kiln server as an error: the code its body names (or
 * its status means, common/err's one map) and its message. */
static int refused(long status, const struct kiln_buf *b, const char *what, struct kiln_error *err)
{
    json_t *j = b->data ? json_loads(b->data, 0, NULL) : NULL;
    json_t *e = json_object_get(j, "error");
    const char *m = json_string_value(json_object_get(e, "message"));
    int code = kiln_err_from_http(status, json_string_value(json_object_get(e, "code")));
    kiln_fail(err, code, "%s refused (%ld): %.400s", what, status,
              m ? m : (b->data ? b->data : ""));
    json_decref(j);
    return code;
}

/* PUT the blob (its HEAD said it is missing). The body comes from `file`,
 * or from `nix-store --dump store_path` piped straight into the request (no
 * temp file) when file is NULL. *sent: 1 when the server stored new bytes. */
static int upload_blob(CURL *c, const char *server, const char *file, const char *store_path,
                       uint64_t size, struct kiln_buf *resp, int *sent, struct kiln_error *err)
{
    struct rd r = {-1};
    struct kiln_spawn_proc proc = {.pid = -1};
    int rc;
    if (file) {
        r.fd = open(file, O_RDONLY | O_CLOEXEC);
        if (r.fd < 0) return kiln_fail(err, KILN_EIO, "cannot open %s: %s", file, strerror(errno));
    } else {
        char *argv[] = {"nix-store", "--dump", (char *)store_path, NULL};
        struct kiln_spawn_spec sp = {.argv = argv, .out_fd = KILN_SPAWN_PIPE, .err_fd = 2};
        if ((rc = kiln_spawn_start(&sp, &proc, err)) != KILN_OK) return rc;
        r.fd = proc.out_fd;
    }
    kiln_buf_reset(resp);
    curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, rd_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &r);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    CURLcode cr = curl_easy_perform(c);
    close(r.fd);
    if (proc.pid > 0) {
        if (cr != CURLE_OK) kiln_spawn_kill_group(proc.pid, SIGKILL);
        struct kiln_error we = {0};
        if (kiln_spawn_finish(&proc, 0, "nix-store --dump", &we) != KILN_OK && cr == CURLE_OK)
            return kiln_fail(err, KILN_EIO, "%s", we.msg);
    }
    if (cr != CURLE_OK)
        return kiln_fail(err, KILN_ENET, "upload to %s failed: %s", server, curl_easy_strerror(cr));
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 && status != 201) return refused(status, resp, "upload", err);
    if (sent) *sent = status == 201;
    curl_easy_setopt(c, CURLOPT_UPLOAD, 0L);
    return KILN_OK;
}

/* POST the catalog entry for digest; *entry = the server's answer. */
static int publish_meta(CURL *c, struct curl_slist **h, const char *server, const char *digest,
                        json_t *meta, struct kiln_buf *resp, json_t **entry, struct kiln_error *err)
{
    json_t *body = json_pack("{s:s,s:O}", "digest", digest, "meta", meta);
    char *js = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!js) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    struct curl_slist *t = curl_slist_append(*h, "Content-Type: application/json");
    if (t) *h = t;
    kiln_buf_reset(resp);
    char url[1200];
    snprintf(url, sizeof url, "%s/api/v1/catalog", server);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *h);
    curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, js);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(js));
    CURLcode cr = curl_easy_perform(c);
    free(js);
    if (cr != CURLE_OK)
        return kiln_fail(err, KILN_ENET, "publish to %s failed: %s", server,
                         curl_easy_strerror(cr));
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 && status != 201) return refused(status, resp, "publish", err);
    if (entry) *entry = resp->data ? json_loads(resp->data, 0, NULL) : NULL;
    return KILN_OK;
}

/* HEAD the blob, upload it when the server lacks it, then publish meta. */
static int push_impl(const char *server, const char *token, const char *file,
                     const char *store_path, const char *digest, uint64_t size, json_t *meta,
                     json_t **entry, int *sent, struct kiln_error *err)
{
    if (entry) *entry = NULL;
    if (sent) *sent = 0;
    CURL *c = curl_easy_init();
    if (!c) return kiln_fail(err, KILN_ENOMEM, "cannot start libcurl");
    char url[1200], auth[300];
    struct curl_slist *h = NULL;
    if (token && *token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h = curl_slist_append(NULL, auth);
    }
    /* Expect: 100-continue stays on (curl's default for large bodies): the
     * server refuses a bad token or digest before the bytes are sent. */
    struct kiln_buf resp = {0};
    resp.max = 1 << 20;
    long status = 0;
    int rc = KILN_OK;
    snprintf(url, sizeof url, "%s/api/v1/catalog/blobs/%s", server, digest);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wr_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    CURLcode cr = curl_easy_perform(c);
    if (cr != CURLE_OK)
        rc = kiln_fail(err, KILN_ENET, "cannot reach %s: %s", server, curl_easy_strerror(cr));
    if (!rc) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (!rc && status != 200) rc = upload_blob(c, server, file, store_path, size, &resp, sent, err);
    if (!rc && meta) rc = publish_meta(c, &h, server, digest, meta, &resp, entry, err);
    kiln_buf_free(&resp);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

int kiln_export_push(const char *server, const char *token, const char *file, const char *digest_in,
                     json_t *meta, json_t **entry, int *sent, struct kiln_error *err)
{
    char digest[72], hex[65];
    struct stat st;
    if (stat(file, &st) != 0)
        return kiln_fail(err, KILN_EIO, "cannot stat %s: %s", file, strerror(errno));
    if (digest_in) {
        snprintf(digest, sizeof digest, "%s", digest_in);
    } else {
        if (kiln_sha256_file_hex(file, hex, NULL) != KILN_OK)
            return kiln_fail(err, KILN_EIO, "cannot hash %s", file);
        snprintf(digest, sizeof digest, "sha256:%s", hex);
    }
    return push_impl(server, token, file, NULL, digest, (uint64_t)st.st_size, meta, entry, sent,
                     err);
}

int kiln_export_store_path(const char *server, const char *token, const char *store_path,
                           json_t *meta_in, json_t **entry, int *sent, struct kiln_error *err)
{
    json_t *nix = NULL;
    int rc = kiln_nar_path_info(store_path, &nix, err);
    if (rc != KILN_OK) return rc;
    char file[1024] = "", digest[72];
    uint64_t size;
    struct kiln_error qe = {0};
    if (kiln_nar_hash_size(store_path, digest, &size, &qe) != KILN_OK) {
        /* No database answer (foreign store?): dump once to a temp file. */
        const char *tmp = getenv("TMPDIR");
        rc = kiln_nar_dump_file(store_path, tmp && *tmp ? tmp : "/tmp", file, sizeof file, digest,
                                &size, err);
        if (rc != KILN_OK) {
            json_decref(nix);
            return rc;
        }
    }
    json_t *meta = meta_in ? json_deep_copy(meta_in) : json_object();
    const char *base = store_path + strlen(KILN_NIX_STORE_DIR "/");
    if (!json_object_get(meta, "name"))
        json_object_set_new(meta, "name", json_string(base + KILN_NIX_HASHPART_LEN + 1));
    if (!json_object_get(meta, "version")) {
        char hp[KILN_NIX_HASHPART_LEN + 1];
        kiln_nix_hashpart(store_path, hp);
        json_object_set_new(meta, "version", json_string(hp));
    }
    json_object_set_new(meta, "nix", nix);
    /* The server checks the streamed NAR against Nix's own NarHash. */
    rc = push_impl(server, token, file[0] ? file : NULL, store_path, digest, size, meta, entry,
                   sent, err);
    json_decref(meta);
    if (file[0]) unlink(file);
    return rc;
}
