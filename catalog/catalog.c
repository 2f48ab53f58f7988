/* catalog.c - the embedded catalog: blob store, SQLite index, signatures. */
#include "catalog/catalog.h"
#include "catalog/release.h"
#include "common/clock.h"

#include "common/fsutil.h"
#include "common/hash.h"
#include "common/sqlite_open.h"
#include "nix/nixcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OPEN_ORPHAN_GRACE_S 3600.0

struct kiln_catalog {
    char data_dir[PATH_MAX / 2];
    char dir[PATH_MAX / 2];
    sqlite3 *db;
    struct kiln_nixkey key; /* catalog signing key */
    char key_line[200];
    int have_nix_key;
    struct kiln_nixkey nix_key;
    int crash_at; /* fault injection (tests only; 0 = off) */
    uv_loop_t *loop;
    void (*on_publish)(void *, int64_t);
    void *on_publish_arg;
};

void kiln_catalog_on_publish(struct kiln_catalog *c, void (*cb)(void *arg, int64_t id), void *arg)
{
    c->on_publish = cb;
    c->on_publish_arg = arg;
}

void kiln_catalog_set_loop(struct kiln_catalog *c, uv_loop_t *loop)
{
    c->loop = loop;
}

uv_loop_t *kiln_catalog_loop(struct kiln_catalog *c)
{
    return c->loop ? c->loop : uv_default_loop();
}

struct kiln_catalog_upload {
    struct kiln_catalog *c;
    int fd;
    char tmp[PATH_MAX];
    EVP_MD_CTX *md;
    uint64_t received;
    uint64_t synced; /* bytes handed to writeback so far */
    int64_t expect_size;
    char expect[65]; /* "" = none */
};

/* Crash points for tests/integration/test_catalog_crash.sh: only a binary
 * built with -DKILN_CRASH_POINTS (build/kiln-crashtest) reads KILN_CRASH_AT. */
static void crash_point(const struct kiln_catalog *c, int n)
{
#ifdef KILN_CRASH_POINTS
    if (c->crash_at == n) raise(SIGKILL);
#else
    (void)c;
    (void)n;
#endif
}

int kiln_catalog_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200 || s[0] == '.' || s[0] == '-') return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '+' || ch == '-'))
            return 0;
    }
    return strstr(s, "..") == NULL;
}

int kiln_catalog_parse_digest(const char *s, char hex[65])
{
    if (!s) return KILN_EINVAL;
    if (!strncmp(s, "sha256:", 7)) s += 7;
    if (strlen(s) != 64) return KILN_EINVAL;
    for (int i = 0; i < 64; i++) {
        char ch = s[i];
        if (ch >= 'A' && ch <= 'F') ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return KILN_EINVAL;
        hex[i] = ch;
    }
    hex[64] = 0;
    return KILN_OK;
}

static int db_exec(struct kiln_catalog *c, const char *sql, struct kiln_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        kiln_fail(err, KILN_EDB, "catalog database: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return KILN_EDB;
    }
    return KILN_OK;
}

/* Ordered migrations (common/sqlite_open): index i brings version i to i+1. */
static const char *const migrations[] = {
    /* 1: the initial schema */
    "CREATE TABLE IF NOT EXISTS entries("
    " id INTEGER PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL,"
    " recipe TEXT, branch TEXT, commit_id TEXT, platform TEXT, sm TEXT, capability TEXT,"
    " isa TEXT, cuda TEXT, driver_min INTEGER, python TEXT, store_path TEXT,"
    " size INTEGER NOT NULL, digest TEXT NOT NULL, log_digest TEXT, selftest TEXT,"
    " meta TEXT NOT NULL, signature TEXT NOT NULL, key TEXT NOT NULL,"
    " created_at REAL NOT NULL, UNIQUE(name, version));"
    "CREATE INDEX IF NOT EXISTS entries_digest ON entries(digest);"
    "CREATE TABLE IF NOT EXISTS narinfo("
    " hashpart TEXT PRIMARY KEY, store_path TEXT NOT NULL, digest TEXT NOT NULL,"
    " nar_size INTEGER NOT NULL, refs TEXT NOT NULL, deriver TEXT NOT NULL, sig TEXT NOT NULL,"
    " entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE);"
    "CREATE INDEX IF NOT EXISTS narinfo_digest ON narinfo(digest);",
    /* issue 15: the staging area (catalog/staging.h). A staged row is a
     * narinfo that is not (yet) a catalog entry: state 'pending' = claimed
     * by a build, bytes on the way (no signature, never served); 'staged' =
     * received for that build's attempt, hash checked, signed. */
    "CREATE TABLE IF NOT EXISTS staged("
    " hashpart TEXT PRIMARY KEY, store_path TEXT NOT NULL, digest TEXT NOT NULL,"
    " nar_size INTEGER NOT NULL, refs TEXT NOT NULL, deriver TEXT NOT NULL,"
    " job_id INTEGER NOT NULL, attempt INTEGER NOT NULL, state TEXT NOT NULL,"
    " sig TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, staged_at REAL);"
    "CREATE INDEX IF NOT EXISTS staged_digest ON staged(digest);",
    /* issue 15: releases (catalog/release.h); an entry with a release_id is
     * hidden until that release is complete */
    "CREATE TABLE releases("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, branch TEXT NOT NULL,"
    " commit_id TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open',"
    " created_at REAL NOT NULL, completed_at REAL, superseded_by INTEGER,"
    " targets TEXT, UNIQUE(branch, commit_id));"
    "CREATE INDEX releases_state ON releases(state, branch);"
    "ALTER TABLE entries ADD COLUMN release_id INTEGER REFERENCES releases(id);"
    "CREATE INDEX entries_release ON entries(release_id);",
    /* issue 16: every path a build's staging plan named (claimed or already
     * held), with the deriver it gave, so a report can only name outputs
     * that its own job planned (kiln_staging_check_outputs). */
    "CREATE TABLE staged_uses("
    " job_id INTEGER NOT NULL, hashpart TEXT NOT NULL, deriver TEXT NOT NULL,"
    " at REAL NOT NULL, PRIMARY KEY(job_id, hashpart)) WITHOUT ROWID;",
};

static int blob_path_hex(struct kiln_catalog *c, const char *hex, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/blobs/sha256/%.2s/%s", c->dir, hex, hex);
    return n < 0 || (size_t)n >= outlen ? KILN_ELIMIT : KILN_OK;
}

static int digest_referenced(struct kiln_catalog *c, const char *digest)
{
    sqlite3_stmt *st = NULL;
    int found = 1; /* on error, keep the blob */
    /* A staged NAR is referenced too: gc must not take it from a test host. */
    if (sqlite3_prepare_v2(c->db,
                           "SELECT 1 FROM entries WHERE digest=?1 UNION ALL"
                           " SELECT 1 FROM staged WHERE digest=?1 AND state='staged' LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        found = r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : 1;
    }
    sqlite3_finalize(st);
    return found;
}

/* Remove temp files nobody holds; with grace_s >= 0 also unreferenced blobs. */
static int sweep(struct kiln_catalog *c, double grace_s, uint64_t *files, uint64_t *bytes,
                 json_t *notes)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/blobs/tmp", c->dir);
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char p[PATH_MAX];
            if (snprintf(p, sizeof p, "%s/%s", path, de->d_name) >= (int)sizeof p) continue;
            int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            if (fd < 0) continue;
            struct stat st;
            if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0) {
                if (notes) {
                    json_array_append_new(notes, json_pack("{s:s,s:s}", "file", de->d_name, "note",
                                                           "unfinished upload"));
                } else if (unlink(p) == 0) {
                    if (files) (*files)++;
                    if (bytes) *bytes += (uint64_t)st.st_size;
                }
            }
            close(fd);
        }
        closedir(d);
    }
    if (grace_s < 0) return KILN_OK;
    double now = kiln_clock_wall();
    snprintf(path, sizeof path, "%s/blobs/sha256", c->dir);
    DIR *top = opendir(path);
    if (!top) return KILN_OK;
    struct dirent *de;
    while ((de = readdir(top))) {
        if (strlen(de->d_name) != 2) continue;
        char sub[PATH_MAX];
        if (snprintf(sub, sizeof sub, "%s/%s", path, de->d_name) >= (int)sizeof sub) continue;
        DIR *sd = opendir(sub);
        if (!sd) continue;
        struct dirent *be;
        while ((be = readdir(sd))) {
            char hex[65];
            if (kiln_catalog_parse_digest(be->d_name, hex) != KILN_OK) continue;
            char digest[KILN_DIGEST_STR];
            snprintf(digest, sizeof digest, "sha256:%s", hex);
            if (digest_referenced(c, digest)) continue;
            char p[PATH_MAX];
            if (snprintf(p, sizeof p, "%s/%s", sub, be->d_name) >= (int)sizeof p) continue;
            struct stat st;
            if (stat(p, &st) != 0) continue;
            if (now - (double)st.st_mtime < grace_s) continue;
            if (notes) {
                json_array_append_new(notes, json_pack("{s:s,s:s}", "file", digest, "note",
                                                       "blob no entry references (gc removes it)"));
            } else if (unlink(p) == 0) {
                if (files) (*files)++;
                if (bytes) *bytes += (uint64_t)st.st_size;
            }
        }
        closedir(sd);
    }
    closedir(top);
    return KILN_OK;
}

int kiln_catalog_open(const char *data_dir, struct kiln_catalog **out, struct kiln_error *err)
{
    *out = NULL;
    struct kiln_catalog *c = calloc(1, sizeof *c);
    if (!c) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    int rc = KILN_OK;
    if (snprintf(c->data_dir, sizeof c->data_dir, "%s", data_dir) >= (int)sizeof c->data_dir ||
        snprintf(c->dir, sizeof c->dir, "%s/catalog", data_dir) >= (int)sizeof c->dir) {
        free(c);
        return kiln_fail(err, KILN_ELIMIT, "data dir path too long");
    }
#ifdef KILN_CRASH_POINTS
    const char *ca = getenv("KILN_CRASH_AT");
    c->crash_at = ca ? atoi(ca) : 0;
#endif
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/blobs/tmp", c->dir);
    if (kiln_mkdir_p(p, 0755) != KILN_OK) {
        rc = kiln_fail(err, KILN_EIO, "cannot create %s: %s", p, strerror(errno));
        goto fail;
    }
    snprintf(p, sizeof p, "%s/blobs/sha256", c->dir);
    if (kiln_mkdir_p(p, 0755) != KILN_OK) {
        rc = kiln_fail(err, KILN_EIO, "cannot create %s: %s", p, strerror(errno));
        goto fail;
    }
    snprintf(p, sizeof p, "%s/keys/catalog.ed25519", data_dir);
    if ((rc = kiln_nixkey_load_or_create(p, "kiln-catalog-1", &c->key, err)) != KILN_OK) goto fail;
    kiln_nixkey_public_line(&c->key, c->key_line, sizeof c->key_line);
    snprintf(p, sizeof p, "%s/catalog.db", c->dir);
    if ((rc = kiln_sqlite_open(p, KILN_SQLITE_DURABLE, migrations,
                               (int)(sizeof migrations / sizeof migrations[0]), &c->db, err)) !=
        KILN_OK)
        goto fail;
    sweep(c, OPEN_ORPHAN_GRACE_S, NULL, NULL, NULL);
    *out = c;
    return KILN_OK;
fail:
    if (c->db) sqlite3_close(c->db);
    free(c);
    return rc;
}

void kiln_catalog_close(struct kiln_catalog *c)
{
    if (!c) return;
    sqlite3_close(c->db);
    OPENSSL_cleanse(&c->key, sizeof c->key);
    OPENSSL_cleanse(&c->nix_key, sizeof c->nix_key);
    free(c);
}

/* --- blobs --- */

int kiln_catalog_upload_begin(struct kiln_catalog *c, const char *expect_digest,
                              int64_t expect_size, struct kiln_catalog_upload **out,
                              struct kiln_error *err)
{
    *out = NULL;
    struct kiln_catalog_upload *u = calloc(1, sizeof *u);
    if (!u) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    u->c = c;
    u->fd = -1;
    u->expect_size = expect_size;
    if (expect_digest && kiln_catalog_parse_digest(expect_digest, u->expect) != KILN_OK) {
        free(u);
        return kiln_fail(err, KILN_EINVAL, "digest must be sha256:<64 hex digits>");
    }
    for (int tries = 0; tries < 8 && u->fd < 0; tries++) {
        unsigned char rnd[8];
        char rh[17];
        if (kiln_random_bytes(rnd, sizeof rnd) != KILN_OK) break;
        kiln_hex(rnd, sizeof rnd, rh);
        snprintf(u->tmp, sizeof u->tmp, "%s/blobs/tmp/up-%s", c->dir, rh);
        int fd = open(u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            if (errno == EEXIST) continue;
            break;
        }
        struct stat st;
        /* A sweeper may have taken the file before our lock: then it is gone. */
        if (flock(fd, LOCK_EX) != 0 || fstat(fd, &st) != 0 || st.st_nlink == 0) {
            close(fd);
            continue;
        }
        u->fd = fd;
    }
    if (u->fd < 0) {
        int e = errno;
        free(u);
        return kiln_fail(err, KILN_EIO, "cannot create an upload file in %s/blobs/tmp: %s", c->dir,
                         strerror(e));
    }
    u->md = EVP_MD_CTX_new();
    if (!u->md || EVP_DigestInit_ex(u->md, EVP_sha256(), NULL) != 1) {
        kiln_catalog_upload_abort(u);
        return kiln_fail(err, KILN_ENOMEM, "cannot start hashing");
    }
    crash_point(c, 1);
    *out = u;
    return KILN_OK;
}

uint64_t kiln_catalog_upload_received(const struct kiln_catalog_upload *u)
{
    return u->received;
}

int kiln_catalog_upload_write(struct kiln_catalog_upload *u, const void *p, size_t n,
                              struct kiln_error *err)
{
    if (u->expect_size >= 0 && u->received + n > (uint64_t)u->expect_size)
        return kiln_fail(err, KILN_ELIMIT, "upload is larger than the announced %lld bytes",
                         (long long)u->expect_size);
    if (EVP_DigestUpdate(u->md, p, n) != 1) return kiln_fail(err, KILN_EIO, "hashing failed");
    const char *q = p;
    size_t left = n;
    while (left) {
        ssize_t w = write(u->fd, q, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            return kiln_fail(err, KILN_EIO, "cannot write upload: %s", strerror(errno));
        }
        q += w;
        left -= (size_t)w;
    }
    int first = u->received == 0;
    u->received += n;
    /* Start writeback as the bytes arrive, so the fsync at the end waits for
     * the last few MiB instead of the whole artifact. */
    if (u->received - u->synced >= (8u << 20)) {
        sync_file_range(u->fd, (off64_t)u->synced, (off64_t)(u->received - u->synced),
                        SYNC_FILE_RANGE_WRITE);
        u->synced = u->received;
    }
    if (first) crash_point(u->c, 2);
    return KILN_OK;
}

void kiln_catalog_upload_abort(struct kiln_catalog_upload *u)
{
    if (!u) return;
    if (u->fd >= 0) {
        unlink(u->tmp);
        close(u->fd);
    }
    EVP_MD_CTX_free(u->md);
    free(u);
}

int kiln_catalog_upload_finish(struct kiln_catalog_upload *u, char digest[KILN_DIGEST_STR],
                               uint64_t *size, struct kiln_error *err)
{
    struct kiln_catalog *c = u->c;
    unsigned char h[32];
    unsigned hl = 0;
    char hex[65];
    int rc = KILN_OK;
    if (EVP_DigestFinal_ex(u->md, h, &hl) != 1 || hl != 32) {
        rc = kiln_fail(err, KILN_EIO, "hashing failed");
        goto out;
    }
    kiln_hex(h, 32, hex);
    if (u->expect_size >= 0 && u->received != (uint64_t)u->expect_size) {
        rc = kiln_fail(err, KILN_EINVAL,
                       "upload is truncated: got %llu of %lld bytes; nothing was stored",
                       (unsigned long long)u->received, (long long)u->expect_size);
        goto out;
    }
    if (u->expect[0] && strcmp(u->expect, hex)) {
        rc = kiln_fail(err, KILN_EINVAL,
                       "digest mismatch: expected sha256:%s, the %llu bytes received hash to "
                       "sha256:%s; nothing was stored",
                       u->expect, (unsigned long long)u->received, hex);
        goto out;
    }
    crash_point(c, 3);
    if (fsync(u->fd) != 0) {
        rc = kiln_fail(err, KILN_EIO, "fsync failed: %s", strerror(errno));
        goto out;
    }
    crash_point(c, 4);
    char final[PATH_MAX], dir[PATH_MAX];
    blob_path_hex(c, hex, final, sizeof final);
    snprintf(dir, sizeof dir, "%s/blobs/sha256/%.2s", c->dir, hex);
    if (kiln_mkdir_p(dir, 0755) != KILN_OK) {
        rc = kiln_fail(err, KILN_EIO, "cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    if (rename(u->tmp, final) != 0) {
        rc = kiln_fail(err, KILN_EIO, "cannot move the blob into place: %s", strerror(errno));
        goto out;
    }
    crash_point(c, 5);
    kiln_fsync_dir_of(final);
    close(u->fd);
    u->fd = -1;
    snprintf(digest, KILN_DIGEST_STR, "sha256:%s", hex);
    if (size) *size = u->received;
out:
    kiln_catalog_upload_abort(u);
    return rc;
}

int kiln_catalog_add_file(struct kiln_catalog *c, const char *path, const char *expect_digest,
                          char digest[KILN_DIGEST_STR], uint64_t *size, struct kiln_error *err)
{
    int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
    if (fd < 0) return kiln_fail(err, KILN_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    int64_t expect = -1;
    if (fd && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) expect = (int64_t)st.st_size;
    struct kiln_catalog_upload *u = NULL;
    int rc = kiln_catalog_upload_begin(c, expect_digest, -1, &u, err);
    if (rc != KILN_OK) {
        if (fd) close(fd);
        return rc;
    }
    size_t bufsz = 1 << 20;
    char *buf = malloc(bufsz);
    if (!buf) rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    while (rc == KILN_OK) {
        ssize_t r = read(fd, buf, bufsz);
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = kiln_fail(err, KILN_EIO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break;
        rc = kiln_catalog_upload_write(u, buf, (size_t)r, err);
    }
    free(buf);
    if (fd) close(fd);
    if (rc == KILN_OK && expect >= 0 && u->received != (uint64_t)expect)
        rc = kiln_fail(err, KILN_EIO, "%s changed size while being read", path);
    if (rc != KILN_OK) {
        kiln_catalog_upload_abort(u);
        return rc;
    }
    return kiln_catalog_upload_finish(u, digest, size, err);
}

int kiln_catalog_blob_path(struct kiln_catalog *c, const char *digest, char *out, size_t outlen)
{
    char hex[65];
    if (kiln_catalog_parse_digest(digest, hex) != KILN_OK) return KILN_EINVAL;
    return blob_path_hex(c, hex, out, outlen);
}

int kiln_catalog_blob_have(struct kiln_catalog *c, const char *digest, uint64_t *size)
{
    char p[PATH_MAX];
    struct stat st;
    if (kiln_catalog_blob_path(c, digest, p, sizeof p) != KILN_OK || stat(p, &st) != 0) return 0;
    if (size) *size = (uint64_t)st.st_size;
    return 1;
}

int kiln_catalog_blob_drop_unreferenced(struct kiln_catalog *c, const char *digest)
{
    char p[PATH_MAX], hex[65], d[KILN_DIGEST_STR];
    if (kiln_catalog_parse_digest(digest, hex) != KILN_OK) return KILN_EINVAL;
    snprintf(d, sizeof d, "sha256:%s", hex);
    if (digest_referenced(c, d)) return KILN_ESTATE;
    blob_path_hex(c, hex, p, sizeof p);
    if (unlink(p) != 0) return errno == ENOENT ? KILN_ENOTFOUND : KILN_EIO;
    kiln_fsync_dir_of(p);
    return KILN_OK;
}

/* --- entries --- */

static const char *str_fields[] = {"recipe", "branch",     "commit",     "platform",
                                   "sm",     "capability", "isa",        "cuda",
                                   "python", "store_path", "log_digest", NULL};

static int nix_key(struct kiln_catalog *c, struct kiln_error *err)
{
    if (c->have_nix_key) return KILN_OK;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/keys/nix-cache.sec", c->data_dir);
    int rc = kiln_nixkey_load_or_create(p, "kiln-cache-1", &c->nix_key, err);
    if (rc == KILN_OK) c->have_nix_key = 1;
    return rc;
}

int kiln_catalog_nix_public_key(struct kiln_catalog *c, char *out, size_t outlen,
                                struct kiln_error *err)
{
    int rc = nix_key(c, err);
    return rc ? rc : kiln_nixkey_public_line(&c->nix_key, out, outlen);
}

/* Checks the "nix" object and fills ni (store path, refs, deriver). */
static int nix_info_from_meta(json_t *nix, struct kiln_narinfo *ni, struct kiln_error *err)
{
    memset(ni, 0, sizeof *ni);
    const char *sp = json_string_value(json_object_get(nix, "store_path"));
    if (!json_is_object(nix) || !sp || !kiln_nix_store_path_valid(sp, 0) ||
        strlen(sp) >= sizeof ni->store_path)
        return kiln_fail(err, KILN_EINVAL,
                         "nix.store_path must be a /nix/store/<hash>-<name> path");
    snprintf(ni->store_path, sizeof ni->store_path, "%s", sp);
    json_t *refs = json_object_get(nix, "references");
    if (refs && !json_is_array(refs))
        return kiln_fail(err, KILN_EINVAL, "nix.references must be an array of store paths");
    size_t i;
    json_t *r;
    json_array_foreach(refs, i, r)
    {
        const char *s = json_string_value(r);
        if (s && !strncmp(s, KILN_NIX_STORE_DIR "/", strlen(KILN_NIX_STORE_DIR "/")))
            s += strlen(KILN_NIX_STORE_DIR "/");
        int rc = s ? kiln_narinfo_add_ref(ni, s) : KILN_EINVAL;
        if (rc != KILN_OK) {
            kiln_narinfo_free(ni);
            return kiln_fail(err, rc == KILN_ENOMEM ? rc : KILN_EINVAL,
                             "nix.references[%zu] is not a store path", i);
        }
    }
    const char *drv = json_string_value(json_object_get(nix, "deriver"));
    if (drv && *drv) {
        if (!strncmp(drv, KILN_NIX_STORE_DIR "/", strlen(KILN_NIX_STORE_DIR "/")))
            drv += strlen(KILN_NIX_STORE_DIR "/");
        if (!kiln_nix_store_path_valid(drv, 1)) {
            kiln_narinfo_free(ni);
            return kiln_fail(err, KILN_EINVAL, "nix.deriver is not a store path");
        }
        snprintf(ni->deriver, sizeof ni->deriver, "%s", drv);
    }
    return KILN_OK;
}

static int check_meta(json_t *meta, struct kiln_error *err)
{
    if (!json_is_object(meta)) return kiln_fail(err, KILN_EINVAL, "metadata must be a JSON object");
    const char *name = json_string_value(json_object_get(meta, "name"));
    const char *ver = json_string_value(json_object_get(meta, "version"));
    if (!name || !kiln_catalog_name_valid(name))
        return kiln_fail(err, KILN_EINVAL,
                         "name must be 1-200 characters of A-Z a-z 0-9 . _ + - (no '..', no '/', "
                         "not starting with '.' or '-')");
    if (!ver || !kiln_catalog_name_valid(ver))
        return kiln_fail(err, KILN_EINVAL,
                         "version must be 1-200 characters of A-Z a-z 0-9 . _ + - (no '..', no "
                         "'/')");
    for (int i = 0; str_fields[i]; i++) {
        json_t *v = json_object_get(meta, str_fields[i]);
        if (v && !json_is_null(v) && (!json_is_string(v) || json_string_length(v) > 1024))
            return kiln_fail(err, KILN_EINVAL, "%s must be a string of at most 1024 bytes",
                             str_fields[i]);
    }
    json_t *dm = json_object_get(meta, "driver_min");
    if (dm && !json_is_null(dm) && !json_is_integer(dm))
        return kiln_fail(err, KILN_EINVAL, "driver_min must be an integer");
    return KILN_OK;
}

static char *canonical(json_t *doc)
{
    return json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
}

static int lookup_entry(struct kiln_catalog *c, const char *name, const char *ver, int64_t *id,
                        char digest[KILN_DIGEST_STR])
{
    sqlite3_stmt *st = NULL;
    int rc = KILN_EDB;
    if (sqlite3_prepare_v2(c->db, "SELECT id, digest FROM entries WHERE name=?1 AND version=?2", -1,
                           &st, NULL) != SQLITE_OK)
        return KILN_EDB;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, ver, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        snprintf(digest, KILN_DIGEST_STR, "%s", (const char *)sqlite3_column_text(st, 1));
        rc = KILN_OK;
    } else if (r == SQLITE_DONE) {
        rc = KILN_ENOTFOUND;
    }
    sqlite3_finalize(st);
    return rc;
}

static void bind_opt_text(sqlite3_stmt *st, int idx, json_t *v)
{
    if (json_is_string(v))
        sqlite3_bind_text(st, idx, json_string_value(v), -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, idx);
}

/* The entry's document: meta without id/signature, plus digest and size,
 * plus the signed narinfo's store path when meta has a "nix" section (then
 * *have_nix and *ni are set; the caller frees ni). *canon is the canonical
 * JSON that sigb64 signs. */
static int signed_doc(struct kiln_catalog *c, json_t *meta, const char *digest, const char *hex,
                      uint64_t size, json_t **doc_out, struct kiln_narinfo *ni, int *have_nix,
                      char **canon_out, char sigb64[100], struct kiln_error *err)
{
    int rc;
    *have_nix = 0;
    *canon_out = NULL;
    json_t *doc = json_deep_copy(meta);
    *doc_out = doc;
    if (!doc) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    json_object_del(doc, "id");
    json_object_del(doc, "signature");
    json_object_set_new(doc, "digest", json_string(digest));
    json_object_set_new(doc, "size", json_integer((json_int_t)size));
    json_t *nix = json_object_get(doc, "nix");
    if (nix && !json_is_null(nix)) {
        if ((rc = nix_info_from_meta(nix, ni, err)) != KILN_OK) return rc;
        *have_nix = 1;
        if ((rc = nix_key(c, err)) != KILN_OK) return rc;
        kiln_unhex(hex, ni->nar_hash, 32);
        memcpy(ni->file_hash, ni->nar_hash, 32);
        ni->nar_size = ni->file_size = size;
        if ((rc = kiln_narinfo_sign(ni, &c->nix_key)) != KILN_OK)
            return kiln_fail(err, rc, "cannot sign the narinfo");
        if (!json_object_get(doc, "store_path"))
            json_object_set_new(doc, "store_path", json_string(ni->store_path));
    }
    char *canon = canonical(doc);
    if (!canon) return kiln_fail(err, KILN_ENOMEM, "cannot serialize metadata");
    unsigned char sig[64];
    if ((rc = kiln_ed25519_sign(&c->key, canon, strlen(canon), sig)) != KILN_OK) {
        free(canon);
        return kiln_fail(err, rc, "cannot sign metadata");
    }
    kiln_base64(sig, 64, sigb64);
    *canon_out = canon;
    return KILN_OK;
}

/* INSERT the entry row (inside the caller's transaction). */
static int insert_entry(struct kiln_catalog *c, json_t *doc, const char *digest, uint64_t size,
                        const char *canon, const char *sigb64, int64_t release_id, int64_t *new_id,
                        struct kiln_error *err)
{
    sqlite3_stmt *st = NULL;
    const char *sql =
        "INSERT INTO entries(name, version, recipe, branch, commit_id, platform, sm, capability,"
        " isa, cuda, driver_min, python, store_path, size, digest, log_digest, selftest, meta,"
        " signature, key, created_at, release_id) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,"
        "?13,?14,?15,?16,?17,?18,?19,?20,?21,?22)";
    int rc = KILN_EDB;
    if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) == SQLITE_OK) {
        bind_opt_text(st, 1, json_object_get(doc, "name"));
        bind_opt_text(st, 2, json_object_get(doc, "version"));
        for (int i = 0; i < 10; i++) /* recipe .. python, store_path */
            bind_opt_text(st, 3 + i + (i >= 8 ? 1 : 0), json_object_get(doc, str_fields[i]));
        json_t *dm = json_object_get(doc, "driver_min");
        if (json_is_integer(dm))
            sqlite3_bind_int64(st, 11, json_integer_value(dm));
        else
            sqlite3_bind_null(st, 11);
        sqlite3_bind_int64(st, 14, (sqlite3_int64)size);
        sqlite3_bind_text(st, 15, digest, -1, SQLITE_STATIC);
        bind_opt_text(st, 16, json_object_get(doc, "log_digest"));
        json_t *stt = json_object_get(doc, "selftest");
        char *sts = stt && !json_is_null(stt) ? canonical(stt) : NULL;
        if (sts)
            sqlite3_bind_text(st, 17, sts, -1, free);
        else
            sqlite3_bind_null(st, 17);
        sqlite3_bind_text(st, 18, canon, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 19, sigb64, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 20, c->key_line, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 21, kiln_clock_wall());
        if (release_id > 0)
            sqlite3_bind_int64(st, 22, release_id);
        else
            sqlite3_bind_null(st, 22);
        if (sqlite3_step(st) == SQLITE_DONE) rc = KILN_OK;
    }
    if (rc != KILN_OK) kiln_fail(err, KILN_EDB, "catalog insert failed: %s", sqlite3_errmsg(c->db));
    sqlite3_finalize(st);
    *new_id = sqlite3_last_insert_rowid(c->db);
    return rc;
}

/* Record the entry's narinfo (inside the caller's transaction); a store path
 * already cached with another NAR is a conflict. */
static int insert_narinfo(struct kiln_catalog *c, const struct kiln_narinfo *ni, const char *digest,
                          uint64_t size, int64_t entry_id, struct kiln_error *err)
{
    int rc = KILN_OK;
    char hp[KILN_NIX_HASHPART_LEN + 1];
    kiln_nix_hashpart(ni->store_path, hp);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT digest FROM narinfo WHERE hashpart=?1", -1, &q, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(q, 1, hp, -1, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW &&
            strcmp((const char *)sqlite3_column_text(q, 0), digest))
            rc = kiln_fail(err, KILN_ECONFLICT,
                           "store path %s is already in the cache with a different NAR",
                           ni->store_path);
    }
    sqlite3_finalize(q);
    struct kiln_buf refs = {0};
    for (size_t i = 0; rc == KILN_OK && i < ni->nrefs; i++)
        rc = kiln_buf_printf(&refs, "%s%s", i ? " " : "", ni->refs[i]);
    if (rc == KILN_OK && !refs.data) rc = kiln_buf_puts(&refs, "");
    if (rc == KILN_OK) {
        rc = KILN_EDB;
        if (sqlite3_prepare_v2(c->db,
                               "INSERT OR REPLACE INTO narinfo(hashpart, store_path, digest,"
                               " nar_size, refs, deriver, sig, entry_id)"
                               " VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
                               -1, &q, NULL) == SQLITE_OK) {
            sqlite3_bind_text(q, 1, hp, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 2, ni->store_path, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 3, digest, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 4, (sqlite3_int64)size);
            sqlite3_bind_text(q, 5, refs.data, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 6, ni->deriver, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 7, ni->sig, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 8, entry_id);
            if (sqlite3_step(q) == SQLITE_DONE) rc = KILN_OK;
        }
        if (rc != KILN_OK)
            kiln_fail(err, KILN_EDB, "narinfo insert failed: %s", sqlite3_errmsg(c->db));
        sqlite3_finalize(q);
    }
    kiln_buf_free(&refs);
    return rc;
}

int kiln_catalog_publish(struct kiln_catalog *c, json_t *meta, const char *digest_in, int64_t *id,
                         int *created, struct kiln_error *err)
{
    return kiln_catalog_publish_held(c, meta, digest_in, 0, id, created, err);
}

int kiln_catalog_publish_held(struct kiln_catalog *c, json_t *meta, const char *digest_in,
                              int64_t release_id, int64_t *id, int *created, struct kiln_error *err)
{
    char hex[65], digest[KILN_DIGEST_STR];
    int rc;
    if (created) *created = 0;
    if ((rc = check_meta(meta, err)) != KILN_OK) return rc;
    if (kiln_catalog_parse_digest(digest_in, hex) != KILN_OK)
        return kiln_fail(err, KILN_EINVAL, "digest must be sha256:<64 hex digits>");
    snprintf(digest, sizeof digest, "sha256:%s", hex);
    const char *name = json_string_value(json_object_get(meta, "name"));
    const char *ver = json_string_value(json_object_get(meta, "version"));
    int64_t old_id;
    char old_digest[KILN_DIGEST_STR];
    rc = lookup_entry(c, name, ver, &old_id, old_digest);
    if (rc == KILN_OK) {
        if (strcmp(old_digest, digest))
            return kiln_fail(err, KILN_ECONFLICT,
                             "%s %s is already published with a different digest (%s); publish "
                             "a new version instead",
                             name, ver, old_digest);
        if (id) *id = old_id;
        return KILN_OK;
    }
    if (rc != KILN_ENOTFOUND) return kiln_fail(err, rc, "catalog database: lookup failed");
    uint64_t size;
    if (!kiln_catalog_blob_have(c, digest, &size))
        return kiln_fail(err, KILN_ENOTFOUND, "blob %s is not in the catalog; upload it first",
                         digest);

    json_t *doc;
    struct kiln_narinfo ni;
    int have_nix;
    char *canon = NULL, sigb64[100];
    rc = signed_doc(c, meta, digest, hex, size, &doc, &ni, &have_nix, &canon, sigb64, err);
    if (rc != KILN_OK) goto out_doc;
    crash_point(c, 6);
    if ((rc = db_exec(c, "BEGIN IMMEDIATE", err)) != KILN_OK) goto out_doc;
    crash_point(c, 7);
    /* Re-check inside the write lock: another process may have won the race. */
    rc = lookup_entry(c, name, ver, &old_id, old_digest);
    if (rc == KILN_OK) {
        db_exec(c, "ROLLBACK", NULL);
        if (strcmp(old_digest, digest))
            rc = kiln_fail(err, KILN_ECONFLICT, "%s %s is already published with digest %s", name,
                           ver, old_digest);
        else if (id)
            *id = old_id;
        goto out_doc;
    }
    int64_t new_id;
    rc = insert_entry(c, doc, digest, size, canon, sigb64, release_id, &new_id, err);
    crash_point(c, 8);
    if (rc == KILN_OK && have_nix) rc = insert_narinfo(c, &ni, digest, size, new_id, err);
    crash_point(c, 9);
    if (rc == KILN_OK) rc = db_exec(c, "COMMIT", err);
    if (rc != KILN_OK) {
        db_exec(c, "ROLLBACK", NULL);
        goto out_doc;
    }
    crash_point(c, 10);
    if (id) *id = new_id;
    if (created) *created = 1;
    if (c->on_publish) c->on_publish(c->on_publish_arg, new_id);
out_doc:
    free(canon);
    if (have_nix) kiln_narinfo_free(&ni);
    json_decref(doc);
    return rc;
}

static json_t *col_json(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(st, i));
    case SQLITE_NULL:
        return json_null();
    default:
        return json_string((const char *)sqlite3_column_text(st, i));
    }
}

#define ENTRY_COLS                                                                                 \
    "id, name, version, recipe, branch, commit_id, platform, sm, capability, isa, cuda,"           \
    " driver_min, python, store_path, size, digest, log_digest, selftest, meta, signature, key,"   \
    " created_at"

static json_t *row_entry(sqlite3_stmt *st)
{
    static const char *names[] = {"id",     "name",       "version",  "recipe",     "branch",
                                  "commit", "platform",   "sm",       "capability", "isa",
                                  "cuda",   "driver_min", "python",   "store_path", "size",
                                  "digest", "log_digest", "selftest", "meta",       "signature",
                                  "key",    "created_at"};
    json_t *o = json_object();
    if (!o) return NULL;
    for (int i = 0; i < 22; i++) {
        json_t *v;
        if ((i == 17 || i == 18) && sqlite3_column_type(st, i) == SQLITE_TEXT) {
            v = json_loads((const char *)sqlite3_column_text(st, i), 0, NULL);
            if (!v) v = json_null();
        } else {
            v = col_json(st, i);
        }
        json_object_set_new(o, names[i], v);
    }
    return o;
}

int kiln_catalog_get(struct kiln_catalog *c, int64_t id, json_t **out, struct kiln_error *err)
{
    *out = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            c->db, "SELECT " ENTRY_COLS " FROM entries WHERE id=?1 AND " KILN_RELEASE_VISIBLE(""),
            -1, &st, NULL) != SQLITE_OK)
        return kiln_fail(err, KILN_EDB, "catalog database: %s", sqlite3_errmsg(c->db));
    sqlite3_bind_int64(st, 1, id);
    int r = sqlite3_step(st), rc = KILN_OK;
    if (r == SQLITE_ROW) {
        *out = row_entry(st);
        if (!*out) rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    } else if (r == SQLITE_DONE) {
        rc = kiln_fail(err, KILN_ENOTFOUND, "catalog entry %lld not found", (long long)id);
    } else {
        rc = kiln_fail(err, KILN_EDB, "catalog database: %s", sqlite3_errmsg(c->db));
    }
    sqlite3_finalize(st);
    return rc;
}

int kiln_catalog_list(struct kiln_catalog *c, json_t *filters, json_t **out, struct kiln_error *err)
{
    static const char *fcols[][2] = {
        {"name", "name"},     {"version", "version"},   {"sm", "sm"},         {"isa", "isa"},
        {"cuda", "cuda"},     {"platform", "platform"}, {"branch", "branch"}, {"recipe", "recipe"},
        {"digest", "digest"}, {"commit", "commit_id"},  {"python", "python"}, {NULL, NULL}};
    *out = NULL;
    struct kiln_buf sql = {0};
    int rc = kiln_buf_puts(&sql, json_is_true(json_object_get(filters, "held"))
                                     ? "SELECT " ENTRY_COLS " FROM entries WHERE 1"
                                     : "SELECT " ENTRY_COLS
                                       " FROM entries WHERE " KILN_RELEASE_VISIBLE(""));
    const char *vals[16];
    int nv = 0;
    for (int i = 0; fcols[i][0] && rc == KILN_OK; i++) {
        const char *v = json_string_value(json_object_get(filters, fcols[i][0]));
        if (!v || !*v) continue;
        vals[nv++] = v;
        rc = kiln_buf_printf(&sql, " AND %s=?%d", fcols[i][1], nv);
    }
    json_int_t limit = json_integer_value(json_object_get(filters, "limit"));
    if (limit <= 0 || limit > 10000) limit = 1000;
    if (rc == KILN_OK) rc = kiln_buf_printf(&sql, " ORDER BY id DESC LIMIT %lld", (long long)limit);
    if (rc != KILN_OK) {
        kiln_buf_free(&sql);
        return kiln_fail(err, rc, "out of memory");
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db, sql.data, -1, &st, NULL) != SQLITE_OK) {
        kiln_buf_free(&sql);
        return kiln_fail(err, KILN_EDB, "catalog database: %s", sqlite3_errmsg(c->db));
    }
    kiln_buf_free(&sql);
    for (int i = 0; i < nv; i++)
        sqlite3_bind_text(st, i + 1, vals[i], -1, SQLITE_STATIC);
    json_t *arr = json_array();
    int r;
    while (arr && (r = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *e = row_entry(st);
        if (!e || json_array_append_new(arr, e)) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            break;
        }
    }
    if (!arr)
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    else if (rc == KILN_OK && r != SQLITE_DONE)
        rc = kiln_fail(err, KILN_EDB, "catalog database: %s", sqlite3_errmsg(c->db));
    sqlite3_finalize(st);
    if (rc != KILN_OK) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return KILN_OK;
}

/* Why an entry's stored metadata and signature do not hold, or NULL. */
static const char *entry_sig_problem(struct kiln_catalog *c, json_t *e)
{
    json_t *meta = json_object_get(e, "meta");
    const char *sigb64 = json_string_value(json_object_get(e, "signature"));
    if (!json_is_object(meta)) return "metadata is missing or not JSON";
    if (!sigb64 || !*sigb64) return "entry is unsigned";
    unsigned char sig[64];
    if (kiln_base64_decode_exact(sigb64, sig, 64) != KILN_OK) return "signature is malformed";
    char *canon = canonical(meta);
    if (!canon) return "out of memory";
    int ok = kiln_ed25519_verify(c->key.pub, canon, strlen(canon), sig);
    free(canon);
    if (ok != 1)
        return "signature does not match the metadata (tampered, or signed by another key)";
    const char *cols[] = {"name", "version", "digest", NULL};
    for (int i = 0; cols[i]; i++)
        if (!json_equal(json_object_get(meta, cols[i]), json_object_get(e, cols[i])))
            return "indexed columns differ from the signed metadata";
    if (!json_equal(json_object_get(meta, "size"), json_object_get(e, "size")))
        return "size differs from the signed metadata";
    return NULL;
}

int kiln_catalog_entry_signature_ok(struct kiln_catalog *c, json_t *entry)
{
    return entry_sig_problem(c, entry) == NULL;
}

/* --- Nix cache --- */

int kiln_catalog_nix_cache_info(struct kiln_catalog *c, struct kiln_buf *out)
{
    (void)c;
    kiln_buf_reset(out);
    return kiln_buf_puts(out, "StoreDir: " KILN_NIX_STORE_DIR "\nWantMassQuery: 1\nPriority: 30\n");
}

/* A NAR is served while some visible entry has it: the same store path may
 * be rebuilt into a release that is still held. */
#define NAR_VISIBLE                                                                                \
    "EXISTS (SELECT 1 FROM entries e WHERE e.digest = narinfo.digest AND " KILN_RELEASE_VISIBLE(   \
        "e.") ")"

/* 1 when the staged path whose `by` column (hashpart or digest) is key is in
 * the closure of a visible published path: a published path's references
 * were staged with it and stay only staged (retention keeps them), and a
 * reader substituting the published path needs them. Walks up from the
 * path through staged rows that reference it to a visible narinfo that
 * does: table scans per step (refs are space-separated basenames), run only
 * for a reader asking for a path that is not published itself. */
static int staged_in_published_closure(struct kiln_catalog *c, const char *by, const char *key)
{
    char sql[1200];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE up(b) AS ("
             " SELECT substr(store_path, ?2) FROM staged WHERE %s=?1 AND state='staged'"
             " UNION SELECT substr(s.store_path, ?2) FROM staged s JOIN up ON s.state='staged'"
             " AND instr(' ' || s.refs || ' ', ' ' || up.b || ' ') > 0)"
             " SELECT 1 FROM narinfo JOIN up ON instr(' ' || narinfo.refs || ' ', ' ' || up.b"
             " || ' ') > 0 WHERE " NAR_VISIBLE " LIMIT 1",
             by);
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, (int)strlen(KILN_NIX_STORE_DIR "/") + 1);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return found;
}

/* held: also narinfos of entries held in unfinished releases (verify);
 * staged: also paths staged and not published (test hosts). */
static int load_narinfo(struct kiln_catalog *c, const char *hashpart, int held, int staged,
                        struct kiln_narinfo *ni, char digest[KILN_DIGEST_STR],
                        struct kiln_error *err)
{
    memset(ni, 0, sizeof *ni);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            c->db,
            held ? "SELECT store_path, digest, nar_size, refs, deriver, sig FROM narinfo"
                   " WHERE hashpart=?1 UNION ALL"
                   " SELECT store_path, digest, nar_size, refs, deriver, sig FROM"
                   " staged WHERE hashpart=?1 AND state='staged' AND ?2 LIMIT 1"
                 : "SELECT store_path, digest, nar_size, refs, deriver, sig FROM narinfo"
                   " WHERE hashpart=?1 AND " NAR_VISIBLE " UNION ALL"
                   " SELECT store_path, digest, nar_size, refs, deriver, sig FROM"
                   " staged WHERE hashpart=?1 AND state='staged' AND ?2 LIMIT 1",
            -1, &st, NULL) != SQLITE_OK)
        return kiln_fail(err, KILN_EDB, "catalog database: %s", sqlite3_errmsg(c->db));
    sqlite3_bind_text(st, 1, hashpart, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, staged != 0);
    int r = sqlite3_step(st), rc = KILN_OK;
    if (r == SQLITE_ROW) {
        char hex[65];
        snprintf(ni->store_path, sizeof ni->store_path, "%s", sqlite3_column_text(st, 0));
        snprintf(digest, KILN_DIGEST_STR, "%s", sqlite3_column_text(st, 1));
        if (kiln_catalog_parse_digest(digest, hex) != KILN_OK ||
            kiln_unhex(hex, ni->nar_hash, 32) != KILN_OK)
            rc = kiln_fail(err, KILN_EPARSE, "narinfo %s has a bad digest", hashpart);
        memcpy(ni->file_hash, ni->nar_hash, 32);
        ni->nar_size = ni->file_size = (uint64_t)sqlite3_column_int64(st, 2);
        char refs[65536];
        snprintf(refs, sizeof refs, "%s", sqlite3_column_text(st, 3));
        char *save = NULL;
        for (char *t = strtok_r(refs, " ", &save); t && rc == KILN_OK;
             t = strtok_r(NULL, " ", &save))
            if (kiln_narinfo_add_ref(ni, t) != KILN_OK)
                rc = kiln_fail(err, KILN_EPARSE, "narinfo %s has a bad reference", hashpart);
        snprintf(ni->deriver, sizeof ni->deriver, "%s", sqlite3_column_text(st, 4));
        snprintf(ni->sig, sizeof ni->sig, "%s", sqlite3_column_text(st, 5));
    } else if (r == SQLITE_DONE) {
        rc = kiln_fail(err, KILN_ENOTFOUND, "no narinfo for %s", hashpart);
    } else {
        rc = kiln_fail(err, KILN_EDB, "catalog database: %s", sqlite3_errmsg(c->db));
    }
    sqlite3_finalize(st);
    if (rc != KILN_OK) kiln_narinfo_free(ni);
    return rc;
}

int kiln_catalog_narinfo(struct kiln_catalog *c, const char *hashpart, int staged,
                         struct kiln_buf *out, struct kiln_error *err)
{
    if (strlen(hashpart) != KILN_NIX_HASHPART_LEN)
        return kiln_fail(err, KILN_ENOTFOUND, "no narinfo for %s", hashpart);
    struct kiln_narinfo ni;
    char digest[KILN_DIGEST_STR];
    int rc = load_narinfo(c, hashpart, 0, staged, &ni, digest, err);
    /* A reader gets a staged path that a published one needs. */
    if (rc == KILN_ENOTFOUND && !staged && staged_in_published_closure(c, "hashpart", hashpart))
        rc = load_narinfo(c, hashpart, 0, 1, &ni, digest, err);
    if (rc != KILN_OK) return rc;
    rc = kiln_narinfo_format(&ni, out);
    kiln_narinfo_free(&ni);
    return rc == KILN_OK ? KILN_OK : kiln_fail(err, rc, "out of memory");
}

int kiln_catalog_nar_path(struct kiln_catalog *c, const char *file, int staged, char *out,
                          size_t outlen, uint64_t *size, struct kiln_error *err)
{
    char n32[64];
    size_t len = strlen(file);
    if (len != KILN_NIX32_SHA256_LEN + 4 || strcmp(file + KILN_NIX32_SHA256_LEN, ".nar"))
        return kiln_fail(err, KILN_ENOTFOUND, "no such NAR");
    memcpy(n32, file, KILN_NIX32_SHA256_LEN);
    n32[KILN_NIX32_SHA256_LEN] = 0;
    unsigned char h[32];
    if (kiln_nix32_decode(n32, h, 32) != KILN_OK)
        return kiln_fail(err, KILN_ENOTFOUND, "no such NAR");
    char hex[65], digest[KILN_DIGEST_STR];
    kiln_hex(h, 32, hex);
    snprintf(digest, sizeof digest, "sha256:%s", hex);
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT 1 FROM narinfo WHERE digest=?1 AND " NAR_VISIBLE " UNION ALL"
                           " SELECT 1 FROM staged WHERE digest=?1 AND state='staged' AND ?2"
                           " LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, staged != 0);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    if (!found && !staged) found = staged_in_published_closure(c, "digest", digest);
    if (!found || blob_path_hex(c, hex, out, outlen) != KILN_OK ||
        !kiln_catalog_blob_have(c, digest, size))
        return kiln_fail(err, KILN_ENOTFOUND, "no such NAR");
    return KILN_OK;
}

/* --- maintenance --- */

static void add_problem(json_t *problems, json_t *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_problem(json_t *problems, json_t *id, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_array_append_new(problems,
                          json_pack("{s:O,s:s}", "entry", id ? id : json_null(), "problem", msg));
}

int kiln_catalog_verify(struct kiln_catalog *c, json_t **problems_out, json_t **notes_out,
                        struct kiln_error *err)
{
    json_t *problems = json_array(), *notes = json_array(), *all = NULL;
    int rc = KILN_OK;
    if (!problems || !notes) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto out;
    }
    json_t *filt = json_pack("{s:i,s:b}", "limit", 10000, "held", 1);
    rc = kiln_catalog_list(c, filt, &all, err);
    json_decref(filt);
    if (rc != KILN_OK) goto out;
    size_t i;
    json_t *e;
    json_array_foreach(all, i, e)
    {
        json_t *id = json_object_get(e, "id");
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *ver = json_string_value(json_object_get(e, "version"));
        const char *digest = json_string_value(json_object_get(e, "digest"));
        const char *why = entry_sig_problem(c, e);
        if (why) add_problem(problems, id, "%s %s: %s", name, ver, why);
        char p[PATH_MAX], hex[65];
        uint64_t size = 0;
        if (!digest || kiln_catalog_blob_path(c, digest, p, sizeof p) != KILN_OK) {
            add_problem(problems, id, "%s %s: bad digest", name, ver);
            continue;
        }
        if (kiln_sha256_file_hex(p, hex, &size) != KILN_OK) {
            add_problem(problems, id, "%s %s: blob %s is missing or unreadable", name, ver, digest);
            continue;
        }
        if (strcmp(hex, digest + 7))
            add_problem(problems, id, "%s %s: blob content hashes to sha256:%s, not %s", name, ver,
                        hex, digest);
        if ((json_int_t)size != json_integer_value(json_object_get(e, "size")))
            add_problem(problems, id, "%s %s: blob is %llu bytes, catalog says %lld", name, ver,
                        (unsigned long long)size,
                        (long long)json_integer_value(json_object_get(e, "size")));
    }
    /* narinfos: signature by the cache key, and the NAR they name exists. */
    sqlite3_stmt *st = NULL;
    /* Staged paths (entry null) are served as well, so they are checked alike. */
    if (sqlite3_prepare_v2(c->db,
                           "SELECT hashpart, entry_id FROM narinfo UNION ALL SELECT hashpart, NULL"
                           " FROM staged WHERE state='staged' AND hashpart NOT IN"
                           " (SELECT hashpart FROM narinfo)",
                           -1, &st, NULL) == SQLITE_OK) {
        int have_key = -1; /* loaded on the first narinfo, not created needlessly */
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *hp = (const char *)sqlite3_column_text(st, 0);
            json_t *id = sqlite3_column_type(st, 1) == SQLITE_NULL
                             ? NULL
                             : json_integer(sqlite3_column_int64(st, 1));
            struct kiln_narinfo ni;
            char digest[KILN_DIGEST_STR];
            struct kiln_error e2 = {0};
            if (load_narinfo(c, hp, 1, 1, &ni, digest, &e2) != KILN_OK) {
                add_problem(problems, id, "narinfo %s: %s", hp, e2.msg);
            } else {
                if (have_key < 0) have_key = nix_key(c, NULL) == KILN_OK;
                if (!have_key || !kiln_narinfo_verify(&ni, c->nix_key.name, c->nix_key.pub))
                    add_problem(problems, id, "narinfo %s: signature does not verify", hp);
                uint64_t sz = 0;
                if (!kiln_catalog_blob_have(c, digest, &sz) || sz != ni.nar_size)
                    add_problem(problems, id, "narinfo %s: NAR blob missing or wrong size", hp);
                kiln_narinfo_free(&ni);
            }
            json_decref(id);
        }
    }
    sqlite3_finalize(st);
    sweep(c, 0, NULL, NULL, notes);
out:
    json_decref(all);
    if (rc != KILN_OK) {
        json_decref(problems);
        json_decref(notes);
        return rc;
    }
    int n = (int)json_array_size(problems);
    if (problems_out)
        *problems_out = problems;
    else
        json_decref(problems);
    if (notes_out)
        *notes_out = notes;
    else
        json_decref(notes);
    return n;
}

int kiln_catalog_gc(struct kiln_catalog *c, double grace_s, uint64_t *removed_files,
                    uint64_t *removed_bytes, struct kiln_error *err)
{
    (void)err;
    uint64_t f = 0, b = 0;
    int rc = sweep(c, grace_s < 0 ? 0 : grace_s, &f, &b, NULL);
    if (removed_files) *removed_files = f;
    if (removed_bytes) *removed_bytes = b;
    return rc;
}

/* --- for the staging area (catalog/staging.c), which shares this store --- */

sqlite3 *kiln_catalog_db(struct kiln_catalog *c)
{
    return c->db;
}

const char *kiln_catalog_dir(struct kiln_catalog *c)
{
    return c->dir;
}

int kiln_catalog_sign_narinfo(struct kiln_catalog *c, struct kiln_narinfo *ni,
                              struct kiln_error *err)
{
    int rc = nix_key(c, err);
    if (rc != KILN_OK) return rc;
    rc = kiln_narinfo_sign(ni, &c->nix_key);
    return rc == KILN_OK ? KILN_OK : kiln_fail(err, rc, "cannot sign the narinfo");
}
