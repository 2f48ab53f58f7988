/* nar.c - Nix store paths as NARs, through the nix-store command. */
#include "nix/nar.h"

#include "common/buf.h"
#include "common/hash.h"
#include "common/spawn.h"
#include "nix/nixcache.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int kiln_nar_dump(const char *store_path, kiln_nar_sink sink, void *arg, struct kiln_error *err)
{
    if (!kiln_nix_store_path_valid(store_path, 0))
        return kiln_fail(err, KILN_EINVAL, "%s is not a /nix/store path", store_path);
    char *argv[] = {"nix-store", "--dump", (char *)store_path, NULL};
    struct kiln_spawn_spec sp = {.argv = argv, .out_fd = KILN_SPAWN_PIPE, .err_fd = 2};
    struct kiln_spawn_proc proc;
    int rc = kiln_spawn_start(&sp, &proc, err);
    if (rc != KILN_OK) return rc;
    char *buf = malloc(1 << 20);
    if (!buf) rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    while (rc == KILN_OK) {
        ssize_t r = read(proc.out_fd, buf, 1 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = kiln_fail(err, KILN_EIO, "reading nix-store --dump: %s", strerror(errno));
            break;
        }
        if (r == 0) break;
        rc = sink(arg, buf, (size_t)r, err);
    }
    free(buf);
    close(proc.out_fd);
    if (rc != KILN_OK) kiln_spawn_kill_group(proc.pid, SIGKILL);
    int wrc = kiln_spawn_finish(&proc, 0, "nix-store --dump", rc == KILN_OK ? err : NULL);
    return rc == KILN_OK ? wrc : rc;
}

/* kiln_nar_dump_file's sink: hash and write to the temp file. */
struct to_file {
    EVP_MD_CTX *md;
    int fd;
    const char *path;
    uint64_t total;
};

static int write_hashed(void *arg, const void *data, size_t n, struct kiln_error *err)
{
    struct to_file *t = arg;
    EVP_DigestUpdate(t->md, data, n);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(t->fd, (const char *)data + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return kiln_fail(err, KILN_EIO, "writing %s: %s", t->path, strerror(errno));
        off += (size_t)w;
    }
    t->total += n;
    return KILN_OK;
}

int kiln_nar_dump_file(const char *store_path, const char *tmpdir, char *out_file, size_t outlen,
                       char digest[72], uint64_t *size, struct kiln_error *err)
{
    if (!kiln_nix_store_path_valid(store_path, 0))
        return kiln_fail(err, KILN_EINVAL, "%s is not a /nix/store path", store_path);
    if (snprintf(out_file, outlen, "%s/kiln-nar-XXXXXX", tmpdir) >= (int)outlen)
        return kiln_fail(err, KILN_ELIMIT, "temp dir path too long");
    struct to_file t = {
        .md = EVP_MD_CTX_new(), .fd = mkostemp(out_file, O_CLOEXEC), .path = out_file};
    int rc = KILN_OK;
    if (t.fd < 0)
        rc = kiln_fail(err, KILN_EIO, "cannot create %s: %s", out_file, strerror(errno));
    else if (!t.md || EVP_DigestInit_ex(t.md, EVP_sha256(), NULL) != 1)
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    if (rc == KILN_OK) rc = kiln_nar_dump(store_path, write_hashed, &t, err);
    unsigned char h[32];
    unsigned hl;
    if (rc == KILN_OK && EVP_DigestFinal_ex(t.md, h, &hl) == 1) {
        char hex[65];
        kiln_hex(h, 32, hex);
        snprintf(digest, 72, "sha256:%s", hex);
        if (size) *size = t.total;
    }
    EVP_MD_CTX_free(t.md);
    if (t.fd >= 0) close(t.fd);
    if (rc != KILN_OK && t.fd >= 0) unlink(out_file);
    return rc;
}

/* Everything argv prints (capped at max bytes) into out. */
static int run_capture(char *const argv[], struct kiln_buf *out, size_t max, struct kiln_error *err)
{
    struct kiln_spawn_spec sp = {.argv = argv, .err_fd = 2};
    struct kiln_spawn_result r;
    int rc = kiln_spawn_capture(&sp, 0, max, out, &r, err);
    return rc == KILN_OK ? kiln_spawn_status(&r, argv[0], err) : rc;
}

static int run_lines(char *const argv[], json_t *arr, struct kiln_error *err)
{
    struct kiln_spawn_spec sp = {.argv = argv, .err_fd = 2};
    struct kiln_spawn_result r;
    struct kiln_buf out = {0};
    int rc = kiln_spawn_capture(&sp, 0, 4 << 20, &out, &r, err);
    if (rc == KILN_OK) rc = kiln_spawn_status(&r, argv[0], err);
    char *save = NULL;
    for (char *t = out.data ? strtok_r(out.data, "\n", &save) : NULL; t && rc == KILN_OK;
         t = strtok_r(NULL, "\n", &save))
        if (*t) json_array_append_new(arr, json_string(t));
    kiln_buf_free(&out);
    return rc;
}

int kiln_nar_path_info(const char *store_path, json_t **out, struct kiln_error *err)
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

/* NarHash and NarSize as the local Nix database records them. */
int kiln_nar_hash_size(const char *store_path, char digest[72], uint64_t *size,
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

int kiln_nar_parse_dump_db(char *text, json_t **out, struct kiln_error *err)
{
    json_t *arr = json_array();
    if (!arr) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    char *save = NULL, *line = text ? strtok_r(text, "\n", &save) : NULL;
    int rc = KILN_OK;
    while (line && rc == KILN_OK) {
        const char *path = line, *hash = strtok_r(NULL, "\n", &save);
        const char *size = strtok_r(NULL, "\n", &save);
        /* An empty deriver is an empty line, which strtok would skip: the
         * deriver line is told apart by being a store path or not. */
        char *deriver = strtok_r(NULL, "\n", &save), *count = deriver;
        if (deriver && kiln_nix_store_path_valid(deriver, 0))
            count = strtok_r(NULL, "\n", &save);
        else
            deriver = "";
        char *end = NULL;
        unsigned char raw[32];
        char hex[65], digest[72];
        unsigned long long sz = size ? strtoull(size, &end, 10) : 0;
        long n = count ? strtol(count, NULL, 10) : -1;
        if (!kiln_nix_store_path_valid(path, 0) || !hash || strlen(hash) != 64 ||
            kiln_unhex(hash, raw, 32) != KILN_OK || !end || *end || n < 0 ||
            n > KILN_NIX_MAX_REFS) {
            rc = kiln_fail(err, KILN_EPARSE, "nix-store --dump-db: unexpected record at %.80s",
                           path);
            break;
        }
        kiln_hex(raw, 32, hex);
        snprintf(digest, sizeof digest, "sha256:%s", hex);
        json_t *refs = json_array();
        for (long i = 0; i < n && rc == KILN_OK; i++) {
            const char *r = strtok_r(NULL, "\n", &save);
            if (!r || !kiln_nix_store_path_valid(r, 0))
                rc = kiln_fail(err, KILN_EPARSE, "nix-store --dump-db: bad reference of %.80s",
                               path);
            else
                json_array_append_new(refs, json_string(r));
        }
        json_t *o = json_pack("{s:s,s:s,s:I,s:o,s:s}", "store_path", path, "nar_hash", digest,
                              "nar_size", (json_int_t)sz, "references", refs, "deriver", deriver);
        if (rc == KILN_OK && (!o || json_array_append_new(arr, o)))
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        else if (rc != KILN_OK)
            json_decref(o);
        line = strtok_r(NULL, "\n", &save);
    }
    if (rc != KILN_OK) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return KILN_OK;
}

/* argv = {cmd..., paths..., NULL} for every string in paths. */
static char **argv_with(const char *a0, const char *a1, const char *a2, json_t *paths)
{
    size_t n = json_array_size(paths);
    char **argv = calloc(n + 4, sizeof *argv);
    if (!argv) return NULL;
    size_t k = 0;
    argv[k++] = (char *)a0;
    argv[k++] = (char *)a1;
    if (a2) argv[k++] = (char *)a2;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(paths, i));
        if (!s || !kiln_nix_store_path_valid(s, 0)) {
            free(argv);
            return NULL;
        }
        argv[k++] = (char *)s;
    }
    return argv;
}

int kiln_nar_closure(json_t *paths, json_t **out, struct kiln_error *err)
{
    *out = NULL;
    if (!json_is_array(paths) || !json_array_size(paths))
        return kiln_fail(err, KILN_EINVAL, "no store paths to look up");
    char **argv = argv_with("nix-store", "-q", "-R", paths);
    if (!argv) return kiln_fail(err, KILN_EINVAL, "outputs must be /nix/store paths");
    json_t *closure = json_array();
    int rc = closure ? run_lines(argv, closure, err) : kiln_fail(err, KILN_ENOMEM, "out of memory");
    free(argv);
    struct kiln_buf db = {0};
    if (rc == KILN_OK) {
        argv = argv_with("nix-store", "--dump-db", NULL, closure);
        rc = argv ? run_capture(argv, &db, 256u << 20, err)
                  : kiln_fail(err, KILN_EPARSE, "nix-store -qR printed something odd");
        free(argv);
    }
    if (rc == KILN_OK) rc = kiln_nar_parse_dump_db(db.data, out, err);
    kiln_buf_free(&db);
    json_decref(closure);
    return rc;
}
