/* staging.c - the staging area's rows and bytes (see staging.h). */
#include "catalog/staging.h"

#include "common/fsutil.h"
#include "common/hash.h"
#include "nix/nixcache.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct kiln_staging_upload {
    struct kiln_catalog *c;
    int fd;
    char hashpart[KILN_NIX_HASHPART_LEN + 1];
    char digest[KILN_DIGEST_STR];
    char part[PATH_MAX];
    uint64_t size, held, synced;
    EVP_MD_CTX *md; /* over every byte since offset 0; NULL for a resumed upload */
};

static int db_fail(struct kiln_catalog *c, struct kiln_error *err)
{
    return kiln_fail(err, KILN_EDB, "catalog database: %s", sqlite3_errmsg(kiln_catalog_db(c)));
}

static int exec(struct kiln_catalog *c, const char *sql, struct kiln_error *err)
{
    return sqlite3_exec(kiln_catalog_db(c), sql, NULL, NULL, NULL) == SQLITE_OK ? KILN_OK
                                                                                : db_fail(c, err);
}

static int part_path(struct kiln_catalog *c, const char *hashpart, const char *digest, char *out,
                     size_t outlen)
{
    int n =
        snprintf(out, outlen, "%s/staging/%s-%s.part", kiln_catalog_dir(c), hashpart, digest + 7);
    return n < 0 || (size_t)n >= outlen ? KILN_ELIMIT : KILN_OK;
}

static uint64_t file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* One path of a plan, checked: digest normalized to sha256:<hex>,
 * references and deriver as basenames ("a b c"). */
struct claim {
    const char *store_path;
    char hashpart[KILN_NIX_HASHPART_LEN + 1];
    char digest[KILN_DIGEST_STR];
    int64_t size;
    struct kiln_buf refs;
    const char *deriver;
};

static int claim_parse(json_t *o, size_t i, struct claim *cl, struct kiln_error *err)
{
    memset(cl, 0, sizeof *cl);
    cl->store_path = json_string_value(json_object_get(o, "store_path"));
    const char *h = json_string_value(json_object_get(o, "nar_hash"));
    json_t *sz = json_object_get(o, "nar_size"), *refs = json_object_get(o, "references");
    const char *drv = json_string_value(json_object_get(o, "deriver"));
    char hex[65];
    unsigned char raw[32];
    if (!cl->store_path || !kiln_nix_store_path_valid(cl->store_path, 0))
        return kiln_fail(err, KILN_EINVAL, "paths[%zu].store_path must be a /nix/store path", i);
    kiln_nix_hashpart(cl->store_path, cl->hashpart);
    if (!h || strncmp(h, "sha256:", 7) ||
        (strlen(h + 7) == 64 ? kiln_unhex(h + 7, raw, 32) : kiln_nix32_decode(h + 7, raw, 32)))
        return kiln_fail(err, KILN_EINVAL, "paths[%zu].nar_hash must be sha256:<hex or nix32>", i);
    kiln_hex(raw, 32, hex);
    snprintf(cl->digest, sizeof cl->digest, "sha256:%s", hex);
    if (!json_is_integer(sz) || json_integer_value(sz) < 0)
        return kiln_fail(err, KILN_EINVAL, "paths[%zu].nar_size must be a byte count", i);
    cl->size = json_integer_value(sz);
    if (refs && !json_is_array(refs))
        return kiln_fail(err, KILN_EINVAL, "paths[%zu].references must be an array", i);
    size_t k;
    json_t *r;
    json_array_foreach(refs, k, r)
    {
        const char *s = json_string_value(r);
        if (!s || !kiln_nix_store_path_valid(s, 0)) {
            kiln_buf_free(&cl->refs);
            return kiln_fail(err, KILN_EINVAL, "paths[%zu].references[%zu] is not a store path", i,
                             k);
        }
        if (kiln_buf_printf(&cl->refs, "%s%s", k ? " " : "", s + strlen(KILN_NIX_STORE_DIR "/")))
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    cl->deriver = "";
    if (drv && *drv) {
        if (!kiln_nix_store_path_valid(drv, 0)) {
            kiln_buf_free(&cl->refs);
            return kiln_fail(err, KILN_EINVAL, "paths[%zu].deriver is not a store path", i);
        }
        cl->deriver = drv + strlen(KILN_NIX_STORE_DIR "/");
    }
    return KILN_OK;
}

/* 1 when hashpart is published or staged already. */
static int have_path(struct kiln_catalog *c, const char *hashpart)
{
    sqlite3_stmt *st = NULL;
    int have = 0;
    if (sqlite3_prepare_v2(kiln_catalog_db(c),
                           "SELECT 1 FROM narinfo WHERE hashpart=?1 UNION ALL"
                           " SELECT 1 FROM staged WHERE hashpart=?1 AND state='staged' LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, hashpart, -1, SQLITE_STATIC);
        have = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return have;
}

/* Record the claim; *offset = bytes already held for the same NAR. */
static int claim_store(struct kiln_catalog *c, struct claim *cl, int64_t job, int64_t attempt,
                       double now, uint64_t *offset, struct kiln_error *err)
{
    sqlite3 *db = kiln_catalog_db(c);
    sqlite3_stmt *st = NULL;
    char old[KILN_DIGEST_STR] = "", part[PATH_MAX];
    if (sqlite3_prepare_v2(db, "SELECT digest FROM staged WHERE hashpart=?1", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(c, err);
    sqlite3_bind_text(st, 1, cl->hashpart, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        snprintf(old, sizeof old, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    /* Another build of the same path with other bytes: its bytes go. */
    if (old[0] && strcmp(old, cl->digest) &&
        part_path(c, cl->hashpart, old, part, sizeof part) == 0)
        unlink(part);
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO staged(hashpart, store_path, digest, nar_size,"
                           " refs, deriver, job_id, attempt, state, created_at)"
                           " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,'pending',?9)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(c, err);
    sqlite3_bind_text(st, 1, cl->hashpart, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, cl->store_path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, cl->digest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, cl->size);
    sqlite3_bind_text(st, 5, cl->refs.data ? cl->refs.data : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, cl->deriver, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, job);
    sqlite3_bind_int64(st, 8, attempt);
    sqlite3_bind_double(st, 9, now);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) return db_fail(c, err);
    *offset = 0;
    if (part_path(c, cl->hashpart, cl->digest, part, sizeof part) == KILN_OK)
        *offset = file_size(part);
    if (*offset > (uint64_t)cl->size) *offset = 0;
    return KILN_OK;
}

/* Remember that job's plan named cl (kiln_staging_check_outputs reads it). */
static int record_use(struct kiln_catalog *c, int64_t job, const struct claim *cl, double now,
                      struct kiln_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(kiln_catalog_db(c),
                           "INSERT OR REPLACE INTO staged_uses(job_id, hashpart, deriver, at)"
                           " VALUES(?1,?2,?3,?4)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(c, err);
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_text(st, 2, cl->hashpart, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, cl->deriver, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, now);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? KILN_OK : db_fail(c, err);
}

int kiln_staging_plan(struct kiln_catalog *c, int64_t job, int64_t attempt, json_t *paths,
                      double now, json_t **missing, int *have, struct kiln_error *err)
{
    *missing = NULL;
    *have = 0;
    if (!json_is_array(paths))
        return kiln_fail(err, KILN_EINVAL, "paths must be an array of store path objects");
    json_t *out = json_array();
    if (!out) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    int rc = exec(c, "BEGIN IMMEDIATE", err);
    size_t i;
    json_t *o;
    json_array_foreach(paths, i, o)
    {
        if (rc != KILN_OK) break;
        struct claim cl;
        if ((rc = claim_parse(o, i, &cl, err)) != KILN_OK) break;
        if ((rc = record_use(c, job, &cl, now, err)) != KILN_OK) {
            kiln_buf_free(&cl.refs);
            break;
        }
        if (have_path(c, cl.hashpart)) {
            (*have)++;
        } else {
            uint64_t off = 0;
            rc = claim_store(c, &cl, job, attempt, now, &off, err);
            if (rc == KILN_OK &&
                json_array_append_new(out, json_pack("{s:s,s:I,s:I}", "store_path", cl.store_path,
                                                     "offset", (json_int_t)off, "nar_size",
                                                     (json_int_t)cl.size)))
                rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        }
        kiln_buf_free(&cl.refs);
    }
    if (rc == KILN_OK) rc = exec(c, "COMMIT", err);
    if (rc != KILN_OK) {
        exec(c, "ROLLBACK", NULL);
        json_decref(out);
        return rc;
    }
    *missing = out;
    return KILN_OK;
}

int kiln_staging_upload_open(struct kiln_catalog *c, const char *hashpart, int64_t job,
                             int64_t attempt, uint64_t offset, uint64_t *size,
                             struct kiln_staging_upload **out, struct kiln_error *err)
{
    *out = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(kiln_catalog_db(c),
                           "SELECT digest, nar_size, job_id, attempt, state FROM staged"
                           " WHERE hashpart=?1",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(c, err);
    sqlite3_bind_text(st, 1, hashpart, -1, SQLITE_STATIC);
    int rc = KILN_OK;
    struct kiln_staging_upload *u = calloc(1, sizeof *u);
    if (!u) rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    if (rc == KILN_OK && sqlite3_step(st) != SQLITE_ROW)
        rc = kiln_fail(err, KILN_ENOTFOUND,
                       "no staging claim for %s: ask first (POST .../plan) with its NarHash",
                       hashpart);
    if (rc == KILN_OK) {
        snprintf(u->digest, sizeof u->digest, "%s", (const char *)sqlite3_column_text(st, 0));
        u->size = (uint64_t)sqlite3_column_int64(st, 1);
        if (!strcmp((const char *)sqlite3_column_text(st, 4), "staged"))
            rc = kiln_fail(err, KILN_EEXIST, "%s is staged already", hashpart);
        else if (sqlite3_column_int64(st, 2) != job || sqlite3_column_int64(st, 3) != attempt)
            rc = kiln_fail(err, KILN_ESTATE,
                           "%s was claimed by job %lld attempt %lld, not job %lld attempt %lld",
                           hashpart, (long long)sqlite3_column_int64(st, 2),
                           (long long)sqlite3_column_int64(st, 3), (long long)job,
                           (long long)attempt);
    }
    sqlite3_finalize(st);
    char dir[PATH_MAX];
    if (rc == KILN_OK) {
        u->c = c;
        snprintf(u->hashpart, sizeof u->hashpart, "%s", hashpart);
        snprintf(dir, sizeof dir, "%s/staging", kiln_catalog_dir(c));
        if (kiln_mkdir_p(dir, 0755) != KILN_OK ||
            part_path(c, hashpart, u->digest, u->part, sizeof u->part) != KILN_OK)
            rc = kiln_fail(err, KILN_EIO, "cannot create %s: %s", dir, strerror(errno));
    }
    if (rc == KILN_OK) {
        u->fd = open(u->part, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        struct stat sb;
        if (u->fd < 0 || fstat(u->fd, &sb) != 0)
            rc = kiln_fail(err, KILN_EIO, "cannot open %s: %s", u->part, strerror(errno));
        else if (offset > (uint64_t)sb.st_size || offset > u->size)
            rc = kiln_fail(err, KILN_ECONFLICT,
                           "offset %llu is past the %llu bytes held; resume from there",
                           (unsigned long long)offset, (unsigned long long)sb.st_size);
        /* Bytes past the offset may be from a connection that was cut (and
         * may still trickle in): the resumed stream replaces them. */
        else if (ftruncate(u->fd, (off_t)offset) != 0 || lseek(u->fd, (off_t)offset, SEEK_SET) < 0)
            rc = kiln_fail(err, KILN_EIO, "cannot resume %s: %s", u->part, strerror(errno));
    }
    if (rc != KILN_OK) {
        if (u && u->fd > 0) close(u->fd);
        free(u);
        return rc;
    }
    u->held = u->synced = offset;
    /* Hashed as it arrives when it starts at 0; a resumed one (whose first
     * bytes came over another connection) is read back whole at the end. */
    if (offset == 0) {
        u->md = EVP_MD_CTX_new();
        if (u->md && EVP_DigestInit_ex(u->md, EVP_sha256(), NULL) != 1) {
            EVP_MD_CTX_free(u->md);
            u->md = NULL;
        }
    }
    *size = u->size;
    *out = u;
    return KILN_OK;
}

struct kiln_staging_hash {
    EVP_MD_CTX *md;
    uint64_t bytes;
    char part[PATH_MAX];
};

struct kiln_staging_hash *kiln_staging_upload_keep_hash(struct kiln_staging_upload *u)
{
    if (!u || !u->md) return NULL;
    struct kiln_staging_hash *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->md = u->md;
    h->bytes = u->held;
    snprintf(h->part, sizeof h->part, "%s", u->part);
    u->md = NULL;
    return h;
}

void kiln_staging_upload_resume_hash(struct kiln_staging_upload *u, struct kiln_staging_hash *h)
{
    if (h && !u->md && h->bytes == u->held && !strcmp(h->part, u->part)) {
        u->md = h->md;
        h->md = NULL;
    }
    kiln_staging_hash_free(h);
}

const char *kiln_staging_upload_part(const struct kiln_staging_upload *u)
{
    return u->part;
}

const char *kiln_staging_hash_part(const struct kiln_staging_hash *h)
{
    return h->part;
}

void kiln_staging_hash_free(struct kiln_staging_hash *h)
{
    if (!h) return;
    EVP_MD_CTX_free(h->md);
    free(h);
}

int kiln_staging_upload_write(struct kiln_staging_upload *u, const void *p, size_t n,
                              struct kiln_error *err)
{
    if (u->held + n > u->size)
        return kiln_fail(err, KILN_ELIMIT,
                         "upload is larger than the NarSize of %llu bytes the worker reported",
                         (unsigned long long)u->size);
    if (u->md && EVP_DigestUpdate(u->md, p, n) != 1) {
        EVP_MD_CTX_free(u->md);
        u->md = NULL; /* read back at the end instead */
    }
    for (const char *q = p; n;) {
        ssize_t w = write(u->fd, q, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return kiln_fail(err, KILN_EIO, "cannot write %s: %s", u->part, strerror(errno));
        q += w;
        n -= (size_t)w;
        u->held += (uint64_t)w;
    }
    /* Start writeback as bytes arrive (as catalog uploads do): the final
     * fsync of a multi-GiB NAR then waits for the last MiBs only. */
    if (u->held - u->synced >= (8u << 20)) {
        sync_file_range(u->fd, (off64_t)u->synced, (off64_t)(u->held - u->synced),
                        SYNC_FILE_RANGE_WRITE);
        u->synced = u->held;
    }
    return KILN_OK;
}

uint64_t kiln_staging_upload_held(const struct kiln_staging_upload *u)
{
    return u->held;
}

uint64_t kiln_staging_upload_size(const struct kiln_staging_upload *u)
{
    return u->size;
}

int kiln_staging_upload_finish(struct kiln_staging_upload *u, struct kiln_error *err)
{
    char hex[65], final[PATH_MAX], dir[PATH_MAX];
    uint64_t got = 0;
    if (fsync(u->fd) != 0) return kiln_fail(err, KILN_EIO, "fsync failed: %s", strerror(errno));
    unsigned char h[32];
    unsigned hl = 0;
    if (u->md && EVP_DigestFinal_ex(u->md, h, &hl) == 1 && hl == 32) {
        kiln_hex(h, 32, hex);
        got = u->held;
    } else if (kiln_sha256_file_hex(u->part, hex, &got) != KILN_OK) {
        /* A resumed upload: hash what is on disk, all of it. */
        return kiln_fail(err, KILN_EIO, "cannot read back %s", u->part);
    }
    if (got != u->size || strcmp(hex, u->digest + 7))
        return kiln_fail(err, KILN_EINVAL,
                         "the NAR of %s does not match the NarHash and NarSize its worker "
                         "reported; nothing was staged (reported %s, %llu bytes; received "
                         "sha256:%s, %llu bytes)",
                         u->hashpart, u->digest, (unsigned long long)u->size, hex,
                         (unsigned long long)got);
    char digest[KILN_DIGEST_STR];
    snprintf(digest, sizeof digest, "sha256:%s", hex);
    snprintf(dir, sizeof dir, "%s/blobs/sha256/%.2s", kiln_catalog_dir(u->c), hex);
    if (kiln_catalog_blob_path(u->c, digest, final, sizeof final) != KILN_OK ||
        kiln_mkdir_p(dir, 0755) != KILN_OK || rename(u->part, final) != 0)
        return kiln_fail(err, KILN_EIO, "cannot move the NAR into the blob store: %s",
                         strerror(errno));
    kiln_fsync_dir_of(final);
    return KILN_OK;
}

void kiln_staging_upload_close(struct kiln_staging_upload *u)
{
    if (!u) return;
    if (u->fd >= 0) close(u->fd);
    EVP_MD_CTX_free(u->md);
    free(u);
}

/* The narinfo of a staged row, for signing and promotion. */
static int row_narinfo(sqlite3_stmt *st, struct kiln_narinfo *ni, struct kiln_error *err)
{
    memset(ni, 0, sizeof *ni);
    char hex[65], refs[65536];
    snprintf(ni->store_path, sizeof ni->store_path, "%s", sqlite3_column_text(st, 0));
    snprintf(hex, sizeof hex, "%s", (const char *)sqlite3_column_text(st, 1) + 7);
    if (kiln_unhex(hex, ni->nar_hash, 32) != KILN_OK)
        return kiln_fail(err, KILN_EPARSE, "staged %s has a bad digest", ni->store_path);
    memcpy(ni->file_hash, ni->nar_hash, 32);
    ni->nar_size = ni->file_size = (uint64_t)sqlite3_column_int64(st, 2);
    snprintf(refs, sizeof refs, "%s", sqlite3_column_text(st, 3));
    char *save = NULL;
    for (char *t = strtok_r(refs, " ", &save); t; t = strtok_r(NULL, " ", &save))
        if (kiln_narinfo_add_ref(ni, t) != KILN_OK) {
            kiln_narinfo_free(ni);
            return kiln_fail(err, KILN_EPARSE, "staged %s has a bad reference", ni->store_path);
        }
    snprintf(ni->deriver, sizeof ni->deriver, "%s", sqlite3_column_text(st, 4));
    return KILN_OK;
}

int kiln_staging_commit(struct kiln_staging_upload *u, int finished_ok, double now,
                        struct kiln_error *err)
{
    struct kiln_catalog *c = u->c;
    sqlite3 *db = kiln_catalog_db(c);
    sqlite3_stmt *st = NULL;
    int rc = KILN_OK;
    if (!finished_ok) {
        /* Nothing of a refused NAR stays: no bytes, no claim, no signature. */
        unlink(u->part);
        if (sqlite3_prepare_v2(db, "DELETE FROM staged WHERE hashpart=?1 AND state='pending'", -1,
                               &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, u->hashpart, -1, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(c, err);
        } else {
            rc = db_fail(c, err);
        }
        sqlite3_finalize(st);
        kiln_staging_upload_close(u);
        return rc;
    }
    struct kiln_narinfo ni;
    if (sqlite3_prepare_v2(db,
                           "SELECT store_path, digest, nar_size, refs, deriver FROM staged"
                           " WHERE hashpart=?1 AND digest=?2",
                           -1, &st, NULL) != SQLITE_OK) {
        kiln_staging_upload_close(u);
        return db_fail(c, err);
    }
    sqlite3_bind_text(st, 1, u->hashpart, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, u->digest, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW)
        rc = kiln_fail(err, KILN_ECONFLICT, "the claim on %s changed during the upload",
                       u->hashpart);
    else
        rc = row_narinfo(st, &ni, err);
    sqlite3_finalize(st);
    if (rc == KILN_OK) {
        rc = kiln_catalog_sign_narinfo(c, &ni, err);
        if (rc == KILN_OK &&
            sqlite3_prepare_v2(db,
                               "UPDATE staged SET state='staged', sig=?1, staged_at=?2"
                               " WHERE hashpart=?3 AND digest=?4",
                               -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, ni.sig, -1, SQLITE_STATIC);
            sqlite3_bind_double(st, 2, now);
            sqlite3_bind_text(st, 3, u->hashpart, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, u->digest, -1, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(c, err);
            sqlite3_finalize(st);
        } else if (rc == KILN_OK) {
            rc = db_fail(c, err);
        }
        kiln_narinfo_free(&ni);
    }
    kiln_staging_upload_close(u);
    return rc;
}

int kiln_staging_lookup(struct kiln_catalog *c, const char *store_path, char digest[72],
                        uint64_t *size, json_t **nix, struct kiln_error *err)
{
    *nix = NULL;
    char hp[KILN_NIX_HASHPART_LEN + 1];
    if (!kiln_nix_store_path_valid(store_path, 0)) return 0;
    kiln_nix_hashpart(store_path, hp);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(kiln_catalog_db(c),
                           "SELECT store_path, digest, nar_size, refs, deriver FROM staged"
                           " WHERE hashpart=?1 AND state='staged' AND store_path=?2",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(c, err);
    sqlite3_bind_text(st, 1, hp, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, store_path, -1, SQLITE_STATIC);
    int found = 0;
    if (sqlite3_step(st) == SQLITE_ROW &&
        kiln_catalog_blob_have(c, (const char *)sqlite3_column_text(st, 1), NULL)) {
        snprintf(digest, 72, "%s", (const char *)sqlite3_column_text(st, 1));
        *size = (uint64_t)sqlite3_column_int64(st, 2);
        json_t *refs = json_array();
        char buf[65536];
        snprintf(buf, sizeof buf, "%s", sqlite3_column_text(st, 3));
        char *save = NULL;
        for (char *t = strtok_r(buf, " ", &save); t && refs; t = strtok_r(NULL, " ", &save))
            json_array_append_new(refs, json_string(t));
        const char *drv = (const char *)sqlite3_column_text(st, 4);
        char drvp[600] = "";
        if (drv && *drv) snprintf(drvp, sizeof drvp, "%s/%s", KILN_NIX_STORE_DIR, drv);
        *nix = json_pack("{s:s,s:o,s:s}", "store_path", store_path, "references", refs, "deriver",
                         drvp);
        found = *nix ? 1 : kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    sqlite3_finalize(st);
    return found;
}

int kiln_staging_have(struct kiln_catalog *c, const char *store_path)
{
    char hp[KILN_NIX_HASHPART_LEN + 1];
    if (!kiln_nix_store_path_valid(store_path, 0)) return 0;
    kiln_nix_hashpart(store_path, hp);
    return have_path(c, hp);
}

/* Mark hashparts (basenames' hash parts in a space-separated list) kept. */
static int keep_add(json_t *kept, const char *list)
{
    char buf[65536];
    snprintf(buf, sizeof buf, "%s", list ? list : "");
    char *save = NULL;
    int added = 0;
    for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char hp[KILN_NIX_HASHPART_LEN + 1];
        if (kiln_nix_hashpart(t, hp) != KILN_OK || json_object_get(kept, hp)) continue;
        json_object_set_new(kept, hp, json_true());
        added++;
    }
    return added;
}

/* keep, its staged closure, and what published narinfos reference. */
static json_t *kept_set(struct kiln_catalog *c, json_t *keep)
{
    json_t *kept = json_object();
    if (!kept) return NULL;
    sqlite3 *db = kiln_catalog_db(c);
    size_t i;
    json_t *v;
    sqlite3_stmt *st = NULL;
    json_array_foreach(keep, i, v)
    {
        const char *s = json_string_value(v);
        if (s && kiln_nix_store_path_valid(s, 0))
            keep_add(kept, s + strlen(KILN_NIX_STORE_DIR "/"));
        /* A job id: what that job staged (a build that has not reported
         * yet has no outputs on record, but its test will need them). */
        if (json_is_integer(v) &&
            sqlite3_prepare_v2(db, "SELECT hashpart FROM staged WHERE job_id=?1", -1, &st, NULL) ==
                SQLITE_OK) {
            sqlite3_bind_int64(st, 1, json_integer_value(v));
            while (sqlite3_step(st) == SQLITE_ROW)
                json_object_set_new(kept, (const char *)sqlite3_column_text(st, 0), json_true());
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    if (sqlite3_prepare_v2(db, "SELECT refs FROM narinfo", -1, &st, NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW)
            keep_add(kept, (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    /* Close over staged references until nothing is added. */
    for (int added = 1; added;) {
        added = 0;
        if (sqlite3_prepare_v2(db, "SELECT hashpart, refs FROM staged WHERE state='staged'", -1,
                               &st, NULL) != SQLITE_OK)
            break;
        while (sqlite3_step(st) == SQLITE_ROW)
            if (json_object_get(kept, (const char *)sqlite3_column_text(st, 0)))
                added += keep_add(kept, (const char *)sqlite3_column_text(st, 1));
        sqlite3_finalize(st);
    }
    return kept;
}

static int drop_row(struct kiln_catalog *c, const char *hashpart, const char *digest,
                    const char *state)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(kiln_catalog_db(c), "DELETE FROM staged WHERE hashpart=?1", -1, &st,
                           NULL) != SQLITE_OK)
        return KILN_EDB;
    sqlite3_bind_text(st, 1, hashpart, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) return KILN_EDB;
    if (!strcmp(state, "pending")) {
        char part[PATH_MAX];
        if (part_path(c, hashpart, digest, part, sizeof part) == KILN_OK) unlink(part);
    } else {
        /* A published entry may hold the same blob: then it stays. */
        kiln_catalog_blob_drop_unreferenced(c, digest);
    }
    return KILN_OK;
}

int kiln_staging_prune(struct kiln_catalog *c, double now, double max_age_s, uint64_t max_bytes,
                       json_t *keep, uint64_t *removed, uint64_t *removed_bytes,
                       struct kiln_error *err)
{
    *removed = *removed_bytes = 0;
    /* Plans are needed only until their job reports; age them out. */
    if (max_age_s > 0) {
        sqlite3_stmt *du = NULL;
        if (sqlite3_prepare_v2(kiln_catalog_db(c), "DELETE FROM staged_uses WHERE at < ?1", -1, &du,
                               NULL) != SQLITE_OK)
            return db_fail(c, err);
        sqlite3_bind_double(du, 1, now - max_age_s);
        int r = sqlite3_step(du);
        sqlite3_finalize(du);
        if (r != SQLITE_DONE) return db_fail(c, err);
    }
    json_t *kept = kept_set(c, keep);
    if (!kept) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    sqlite3_stmt *st = NULL;
    /* Oldest first; promoted paths (a narinfo now serves them) cost the
     * staging area nothing, so their rows simply go. */
    if (sqlite3_prepare_v2(kiln_catalog_db(c),
                           "SELECT hashpart, digest, nar_size, state, COALESCE(staged_at,"
                           " created_at), hashpart IN (SELECT hashpart FROM narinfo) FROM staged"
                           " ORDER BY COALESCE(staged_at, created_at)",
                           -1, &st, NULL) != SQLITE_OK) {
        json_decref(kept);
        return db_fail(c, err);
    }
    json_t *rows = json_array();
    uint64_t total = 0;
    while (rows && sqlite3_step(st) == SQLITE_ROW) {
        json_t *r =
            json_pack("{s:s,s:s,s:I,s:s,s:f,s:b}", "hp", sqlite3_column_text(st, 0), "digest",
                      sqlite3_column_text(st, 1), "size", (json_int_t)sqlite3_column_int64(st, 2),
                      "state", sqlite3_column_text(st, 3), "at", sqlite3_column_double(st, 4),
                      "promoted", sqlite3_column_int(st, 5));
        if (r) json_array_append_new(rows, r);
        if (!sqlite3_column_int(st, 5) &&
            !strcmp((const char *)sqlite3_column_text(st, 3), "staged"))
            total += (uint64_t)sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    int rc = rows ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        const char *hp = json_string_value(json_object_get(r, "hp"));
        const char *state = json_string_value(json_object_get(r, "state"));
        uint64_t size = (uint64_t)json_integer_value(json_object_get(r, "size"));
        int staged = !strcmp(state, "staged"),
            promoted = json_is_true(json_object_get(r, "promoted"));
        double age = now - json_real_value(json_object_get(r, "at"));
        int old = max_age_s > 0 && age > max_age_s;
        int kept_now = json_object_get(kept, hp) != NULL;
        int go;
        if (promoted)
            go = !kept_now || old; /* its narinfo serves it either way */
        else if (!staged)
            go = old; /* an abandoned claim */
        else
            go = !kept_now && (old || (max_bytes > 0 && total > max_bytes));
        if (!go) continue;
        if (drop_row(c, hp, json_string_value(json_object_get(r, "digest")), state) != KILN_OK) {
            rc = db_fail(c, err);
            break;
        }
        if (staged && !promoted) {
            total -= size;
            (*removed)++;
            *removed_bytes += size;
        }
    }
    json_decref(rows);
    json_decref(kept);
    return rc;
}

int kiln_staging_list(struct kiln_catalog *c, json_t **out, struct kiln_error *err)
{
    *out = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(kiln_catalog_db(c),
                           "SELECT store_path, digest, nar_size, job_id, attempt, state,"
                           " staged_at FROM staged ORDER BY created_at",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(c, err);
    json_t *arr = json_array();
    json_int_t bytes = 0;
    while (arr && sqlite3_step(st) == SQLITE_ROW) {
        json_t *o = json_pack(
            "{s:s,s:s,s:I,s:I,s:I,s:s,s:f}", "store_path", sqlite3_column_text(st, 0), "digest",
            sqlite3_column_text(st, 1), "nar_size", (json_int_t)sqlite3_column_int64(st, 2), "job",
            (json_int_t)sqlite3_column_int64(st, 3), "attempt",
            (json_int_t)sqlite3_column_int64(st, 4), "state", sqlite3_column_text(st, 5),
            "staged_at", sqlite3_column_double(st, 6));
        if (o) json_array_append_new(arr, o);
        if (!strcmp((const char *)sqlite3_column_text(st, 5), "staged"))
            bytes += sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    *out = arr ? json_pack("{s:o,s:I}", "staged", arr, "bytes", bytes) : NULL;
    return *out ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
}

/* What the staging area knows of hashpart for job: *published (a narinfo
 * serves it), the job and deriver of its staged row (*holder 0: none), and
 * whether job's own plan named it (*planned, with the deriver it gave). */
struct path_facts {
    int published, planned;
    int64_t holder;
    char holder_drv[256], planned_drv[256];
};

static int path_facts(struct kiln_catalog *c, int64_t job, const char *hashpart,
                      struct path_facts *pf, struct kiln_error *err)
{
    memset(pf, 0, sizeof *pf);
    sqlite3 *db = kiln_catalog_db(c);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT (SELECT COUNT(*) FROM narinfo WHERE hashpart=?1),"
                           " (SELECT job_id FROM staged WHERE hashpart=?1),"
                           " (SELECT deriver FROM staged WHERE hashpart=?1),"
                           " (SELECT deriver FROM staged_uses WHERE job_id=?2 AND hashpart=?1)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(c, err);
    sqlite3_bind_text(st, 1, hashpart, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, job);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return db_fail(c, err);
    }
    pf->published = sqlite3_column_int(st, 0) > 0;
    pf->holder = sqlite3_column_int64(st, 1);
    snprintf(pf->holder_drv, sizeof pf->holder_drv, "%s",
             sqlite3_column_text(st, 2) ? (const char *)sqlite3_column_text(st, 2) : "");
    pf->planned = sqlite3_column_type(st, 3) != SQLITE_NULL;
    snprintf(pf->planned_drv, sizeof pf->planned_drv, "%s",
             pf->planned ? (const char *)sqlite3_column_text(st, 3) : "");
    sqlite3_finalize(st);
    return KILN_OK;
}

int kiln_staging_check_outputs(struct kiln_catalog *c, int64_t job, json_t *outputs,
                               struct kiln_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(kiln_catalog_db(c), "SELECT 1 FROM staged_uses WHERE job_id=?1 LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(c, err);
    sqlite3_bind_int64(st, 1, job);
    int job_planned = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    size_t i;
    json_t *o;
    json_array_foreach(outputs, i, o)
    {
        const char *path = json_string_value(o);
        struct path_facts pf = {0};
        /* Not a store path: staging cannot hold it (nor can a plan name it). */
        if (path && kiln_nix_store_path_valid(path, 0)) {
            char hashpart[33];
            snprintf(hashpart, sizeof hashpart, "%s", path + strlen(KILN_NIX_STORE_DIR "/"));
            int rc = path_facts(c, job, hashpart, &pf, err);
            if (rc != KILN_OK) return rc;
        }
        if (!path) path = "(not a string)";
        if (pf.holder == job) continue;
        if (pf.holder && !pf.published &&
            (!pf.planned || strcmp(pf.planned_drv, pf.holder_drv) || !pf.holder_drv[0]))
            return kiln_fail(err, KILN_ECONFLICT,
                             "output %.200s is staged for job %lld; job %lld's plan did not name "
                             "it from the same derivation, so it may not claim it",
                             path, (long long)pf.holder, (long long)job);
        if (job_planned && !pf.planned)
            return kiln_fail(err, KILN_ECONFLICT,
                             "output %.200s is not in job %lld's staging plan; a build reports "
                             "only the outputs it staged",
                             path, (long long)job);
    }
    return KILN_OK;
}
