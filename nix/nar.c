/* nar.c - Nix store paths as NARs, through the nix-store command. */
#include "nix/nar.h"

#include "common/buf.h"
#include "common/hash.h"
#include "nix/nixcache.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Spawn argv with stdout to a pipe; returns pid and the read end. */
int kiln_nar_spawn_read(char *const argv[], pid_t *pid, int *rfd, struct kiln_error *err)
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

int kiln_nar_wait(pid_t pid, const char *what, struct kiln_error *err)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return kiln_fail(err, KILN_EIO, "waitpid: %s", strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return KILN_OK;
    return kiln_fail(err, KILN_EIO, "%s failed (%s %d)", what,
                     WIFEXITED(st) ? "exit status" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

int kiln_nar_dump_file(const char *store_path, const char *tmpdir, char *out_file, size_t outlen,
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
    int rfd, rc = kiln_nar_spawn_read(argv, &pid, &rfd, err);
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
    int wrc = kiln_nar_wait(pid, "nix-store --dump", rc == KILN_OK ? err : NULL);
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
    int rfd, rc = kiln_nar_spawn_read(argv, &pid, &rfd, err);
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
    int wrc = kiln_nar_wait(pid, argv[0], rc == KILN_OK ? err : NULL);
    if (rc == KILN_OK) rc = wrc;
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
