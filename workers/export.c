/* export.c - NAR export through nix-store and uploads to the catalog. */
#include "workers/export.h"

#include "common/buf.h"
#include "common/hash.h"
#include "scheduler/nixcache.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Spawn argv with stdout to a pipe; returns pid and the read end. */
static int spawn_pipe(char *const argv[], pid_t *pid, int *rfd, struct kiln_error *err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return kiln_fail(err, KILN_EIO, "pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    int rc = posix_spawnp(pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return kiln_fail(err, KILN_EUNSUPPORTED, "cannot run %s: %s", argv[0], strerror(rc));
    }
    *rfd = p[0];
    return KILN_OK;
}

static int wait_ok(pid_t pid, const char *what, struct kiln_error *err)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return kiln_fail(err, KILN_EIO, "waitpid: %s", strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return KILN_OK;
    return kiln_fail(err, KILN_EIO, "%s failed (%s %d)", what,
                     WIFEXITED(st) ? "exit status" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

int kiln_export_nar(const char *store_path, const char *tmpdir, char *out_file, size_t outlen,
                    char digest[72], uint64_t *size, struct kiln_error *err)
{
    if (!kiln_nix_store_path_valid(store_path, 0))
        return kiln_fail(err, KILN_EINVAL, "%s is not a /nix/store path", store_path);
    if (snprintf(out_file, outlen, "%s/kiln-nar-XXXXXX", tmpdir) >= (int)outlen)
        return kiln_fail(err, KILN_ELIMIT, "temp dir path too long");
    int fd = mkostemp(out_file, O_CLOEXEC);
    if (fd < 0) return kiln_fail(err, KILN_EIO, "cannot create %s: %s", out_file, strerror(errno));
    char *argv[] = {"nix-store", "--dump", (char *)store_path, NULL};
    pid_t pid;
    int rfd, rc = spawn_pipe(argv, &pid, &rfd, err);
    if (rc != KILN_OK) {
        close(fd);
        unlink(out_file);
        return rc;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    char *buf = malloc(1 << 20);
    uint64_t total = 0;
    if (!md || !buf || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    while (rc == KILN_OK) {
        ssize_t r = read(rfd, buf, 1 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = kiln_fail(err, KILN_EIO, "reading nix-store output: %s", strerror(errno));
            break;
        }
        if (r == 0) break;
        EVP_DigestUpdate(md, buf, (size_t)r);
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(fd, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                rc = kiln_fail(err, KILN_EIO, "writing %s: %s", out_file, strerror(errno));
                break;
            }
            off += w;
        }
        total += (uint64_t)r;
    }
    close(rfd);
    int wrc = wait_ok(pid, "nix-store --dump", rc == KILN_OK ? err : NULL);
    if (rc == KILN_OK) rc = wrc;
    unsigned char h[32];
    unsigned hl;
    if (rc == KILN_OK && EVP_DigestFinal_ex(md, h, &hl) == 1) {
        char hex[65];
        kiln_hex(h, 32, hex);
        snprintf(digest, 72, "sha256:%s", hex);
        if (size) *size = total;
    }
    EVP_MD_CTX_free(md);
    free(buf);
    close(fd);
    if (rc != KILN_OK) unlink(out_file);
    return rc;
}

static int run_lines(char *const argv[], json_t *arr, struct kiln_error *err)
{
    pid_t pid;
    int rfd, rc = spawn_pipe(argv, &pid, &rfd, err);
    if (rc != KILN_OK) return rc;
    struct kiln_buf out = {0};
    out.max = 4 << 20;
    char chunk[8192];
    for (;;) {
        ssize_t r = read(rfd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (kiln_buf_append(&out, chunk, (size_t)r) != KILN_OK) {
            rc = kiln_fail(err, KILN_ELIMIT, "%s printed too much", argv[0]);
            break;
        }
    }
    close(rfd);
    int wrc = wait_ok(pid, argv[0], rc == KILN_OK ? err : NULL);
    if (rc == KILN_OK) rc = wrc;
    char *save = NULL;
    for (char *t = out.data ? strtok_r(out.data, "\n", &save) : NULL; t && rc == KILN_OK;
         t = strtok_r(NULL, "\n", &save))
        if (*t) json_array_append_new(arr, json_string(t));
    kiln_buf_free(&out);
    return rc;
}

int kiln_export_path_info(const char *store_path, json_t **out, struct kiln_error *err)
{
    *out = NULL;
    if (!kiln_nix_store_path_valid(store_path, 0))
        return kiln_fail(err, KILN_EINVAL, "%s is not a /nix/store path", store_path);
    json_t *refs = json_array(), *drv = json_array();
    char *a1[] = {"nix-store", "-q", "--references", (char *)store_path, NULL};
    char *a2[] = {"nix-store", "-q", "--deriver", (char *)store_path, NULL};
    int rc = run_lines(a1, refs, err);
    if (rc == KILN_OK) rc = run_lines(a2, drv, err);
    if (rc != KILN_OK) {
        json_decref(refs);
        json_decref(drv);
        return rc;
    }
    const char *d = json_string_value(json_array_get(drv, 0));
    if (!d || !strcmp(d, "unknown-deriver")) d = "";
    *out = json_pack("{s:s,s:o,s:s}", "store_path", store_path, "references", refs, "deriver", d);
    json_decref(drv);
    return *out ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
}

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

static const char *server_message(struct kiln_buf *b, char *out, size_t outlen)
{
    json_t *j = b->data ? json_loads(b->data, 0, NULL) : NULL;
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    snprintf(out, outlen, "%s", m ? m : (b->data ? b->data : ""));
    json_decref(j);
    return out;
}

/* The body comes from `file`, or from `nix-store --dump store_path` piped
 * straight into the request (no temp file) when file is NULL. */
static int push_impl(const char *server, const char *token, const char *file,
                     const char *store_path, const char *digest, uint64_t size, json_t *meta,
                     json_t **entry, int *sent, struct kiln_error *err)
{
    if (entry) *entry = NULL;
    if (sent) *sent = 0;
    CURL *c = curl_easy_init();
    if (!c) return kiln_fail(err, KILN_ENOMEM, "cannot start libcurl");
    char url[1200], auth[300];
    struct curl_slist *h = NULL, *t;
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
    char msg[400];
    snprintf(url, sizeof url, "%s/api/v1/catalog/blobs/%s", server, digest);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wr_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    CURLcode cr = curl_easy_perform(c);
    if (cr != CURLE_OK) {
        rc = kiln_fail(err, KILN_ENET, "cannot reach %s: %s", server, curl_easy_strerror(cr));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        struct rd r = {-1};
        pid_t pid = -1;
        if (file) {
            r.fd = open(file, O_RDONLY | O_CLOEXEC);
            if (r.fd < 0) {
                rc = kiln_fail(err, KILN_EIO, "cannot open %s: %s", file, strerror(errno));
                goto out;
            }
        } else {
            char *argv[] = {"nix-store", "--dump", (char *)store_path, NULL};
            if ((rc = spawn_pipe(argv, &pid, &r.fd, err)) != KILN_OK) goto out;
        }
        kiln_buf_reset(&resp);
        curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, rd_cb);
        curl_easy_setopt(c, CURLOPT_READDATA, &r);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
        curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
        cr = curl_easy_perform(c);
        close(r.fd);
        if (pid > 0) {
            if (cr != CURLE_OK) kill(pid, SIGKILL);
            struct kiln_error we = {0};
            if (wait_ok(pid, "nix-store --dump", &we) != KILN_OK && cr == CURLE_OK) {
                rc = kiln_fail(err, KILN_EIO, "%s", we.msg);
                goto out;
            }
        }
        if (cr != CURLE_OK) {
            rc = kiln_fail(err, KILN_ENET, "upload to %s failed: %s", server,
                           curl_easy_strerror(cr));
            goto out;
        }
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200 && status != 201) {
            rc = kiln_fail(err,
                           status == 401   ? KILN_EAUTH
                           : status == 403 ? KILN_EPERM
                                           : KILN_EINVAL,
                           "upload refused (%ld): %s", status,
                           server_message(&resp, msg, sizeof msg));
            goto out;
        }
        if (sent) *sent = status == 201;
        curl_easy_setopt(c, CURLOPT_UPLOAD, 0L);
    }
    if (meta) {
        json_t *body = json_pack("{s:s,s:O}", "digest", digest, "meta", meta);
        char *js = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!js) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto out;
        }
        t = curl_slist_append(h, "Content-Type: application/json");
        if (t) h = t;
        kiln_buf_reset(&resp);
        snprintf(url, sizeof url, "%s/api/v1/catalog", server);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, js);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(js));
        cr = curl_easy_perform(c);
        free(js);
        if (cr != CURLE_OK) {
            rc = kiln_fail(err, KILN_ENET, "publish to %s failed: %s", server,
                           curl_easy_strerror(cr));
            goto out;
        }
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200 && status != 201) {
            rc = kiln_fail(err,
                           status == 409   ? KILN_ECONFLICT
                           : status == 401 ? KILN_EAUTH
                           : status == 403 ? KILN_EPERM
                                           : KILN_EINVAL,
                           "publish refused (%ld): %s", status,
                           server_message(&resp, msg, sizeof msg));
            goto out;
        }
        if (entry) *entry = resp.data ? json_loads(resp.data, 0, NULL) : NULL;
    }
out:
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

/* NarHash and NarSize as the local Nix database records them. */
static int nar_hash_size(const char *store_path, char digest[72], uint64_t *size,
                         struct kiln_error *err)
{
    json_t *h = json_array(), *z = json_array();
    char *a1[] = {"nix-store", "-q", "--hash", (char *)store_path, NULL};
    char *a2[] = {"nix-store", "-q", "--size", (char *)store_path, NULL};
    int rc = run_lines(a1, h, err);
    if (rc == KILN_OK) rc = run_lines(a2, z, err);
    const char *hs = json_string_value(json_array_get(h, 0));
    const char *zs = json_string_value(json_array_get(z, 0));
    unsigned char raw[32];
    char hex[65];
    if (rc == KILN_OK) {
        if (!hs || strncmp(hs, "sha256:", 7) ||
            (strlen(hs + 7) == 64 ? kiln_unhex(hs + 7, raw, 32)
                                  : kiln_nix32_decode(hs + 7, raw, 32)) != KILN_OK ||
            !zs || !*zs)
            rc = kiln_fail(err, KILN_EPARSE, "nix-store -q --hash/--size gave unexpected output");
    }
    if (rc == KILN_OK) {
        kiln_hex(raw, 32, hex);
        snprintf(digest, 72, "sha256:%s", hex);
        *size = strtoull(zs, NULL, 10);
    }
    json_decref(h);
    json_decref(z);
    return rc;
}

int kiln_export_store_path(const char *server, const char *token, const char *store_path,
                           json_t *meta_in, json_t **entry, int *sent, struct kiln_error *err)
{
    json_t *nix = NULL;
    int rc = kiln_export_path_info(store_path, &nix, err);
    if (rc != KILN_OK) return rc;
    char file[1024] = "", digest[72];
    uint64_t size;
    struct kiln_error qe = {0};
    if (nar_hash_size(store_path, digest, &size, &qe) != KILN_OK) {
        /* No database answer (foreign store?): dump once to a temp file. */
        const char *tmp = getenv("TMPDIR");
        rc = kiln_export_nar(store_path, tmp && *tmp ? tmp : "/tmp", file, sizeof file, digest,
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

int kiln_export_into_catalog(struct kiln_catalog *c, const char *store_path, char digest[72],
                             uint64_t *size, json_t **nix, struct kiln_error *err)
{
    *nix = NULL;
    int rc = kiln_export_path_info(store_path, nix, err);
    if (rc != KILN_OK) return rc;
    char expect[72];
    uint64_t esize = 0;
    struct kiln_error qe = {0};
    int known = nar_hash_size(store_path, expect, &esize, &qe) == KILN_OK;
    if (known && kiln_catalog_blob_have(c, expect, NULL)) {
        snprintf(digest, 72, "%s", expect); /* already stored: nothing to dump */
        *size = esize;
        return KILN_OK;
    }
    struct kiln_catalog_upload *u = NULL;
    rc = kiln_catalog_upload_begin(c, known ? expect : NULL, known ? (int64_t)esize : -1, &u, err);
    pid_t pid;
    int fd = -1;
    char *argv[] = {"nix-store", "--dump", (char *)store_path, NULL};
    if (rc == KILN_OK) rc = spawn_pipe(argv, &pid, &fd, err);
    if (rc != KILN_OK) {
        kiln_catalog_upload_abort(u);
        json_decref(*nix);
        *nix = NULL;
        return rc;
    }
    char *buf = malloc(1 << 20);
    if (!buf) rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    while (rc == KILN_OK) {
        ssize_t r = read(fd, buf, 1 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = kiln_fail(err, KILN_EIO, "reading nix-store --dump: %s", strerror(errno));
            break;
        }
        if (r == 0) break;
        rc = kiln_catalog_upload_write(u, buf, (size_t)r, err);
    }
    free(buf);
    close(fd);
    if (rc != KILN_OK) kill(pid, SIGKILL);
    int wrc = wait_ok(pid, "nix-store --dump", rc == KILN_OK ? err : NULL);
    if (rc == KILN_OK) rc = wrc;
    if (rc == KILN_OK) return kiln_catalog_upload_finish(u, digest, size, err);
    kiln_catalog_upload_abort(u);
    json_decref(*nix);
    *nix = NULL;
    return rc;
}
