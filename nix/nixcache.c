/* nixcache.c - nix32, Nix-format ed25519 keys, narinfo text and signatures. */
#include "nix/nixcache.h"

#include "common/fsutil.h"
#include "common/hash.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char nix32_chars[] = "0123456789abcdfghijklmnpqrsvwxyz";

size_t kiln_nix32_len(size_t n)
{
    return n == 0 ? 0 : (n * 8 - 1) / 5 + 1;
}

void kiln_nix32(const unsigned char *in, size_t n, char *out)
{
    size_t len = kiln_nix32_len(n);
    size_t o = 0;
    for (size_t k = len; k-- > 0;) {
        size_t b = k * 5, i = b / 8, j = b % 8;
        unsigned c = (unsigned)(in[i] >> j);
        if (i + 1 < n) c |= (unsigned)in[i + 1] << (8 - j);
        out[o++] = nix32_chars[c & 0x1f];
    }
    out[o] = 0;
}

int kiln_nix32_decode(const char *s, unsigned char *out, size_t outlen)
{
    size_t len = strlen(s);
    if (len != kiln_nix32_len(outlen)) return KILN_EPARSE;
    memset(out, 0, outlen);
    for (size_t n = 0; n < len; n++) {
        const char *p = strchr(nix32_chars, s[len - n - 1]);
        if (!p || !*p) return KILN_EPARSE;
        unsigned digit = (unsigned)(p - nix32_chars);
        size_t b = n * 5, i = b / 8, j = b % 8;
        out[i] |= (unsigned char)(digit << j);
        if (i + 1 < outlen)
            out[i + 1] |= (unsigned char)(digit >> (8 - j));
        else if (digit >> (8 - j))
            return KILN_EPARSE;
    }
    return KILN_OK;
}

void kiln_base64(const unsigned char *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

int kiln_base64_decode_exact(const char *s, unsigned char *out, size_t outlen)
{
    size_t len = strlen(s);
    if (len == 0 || len % 4 || len > 4096) return KILN_EPARSE;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '+' && s[i] != '/' && s[i] != '=')
            return KILN_EPARSE;
    unsigned char tmp[3 * 4096 / 4 + 4];
    int got = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len);
    if (got < 0) return KILN_EPARSE;
    size_t pad = 0;
    if (s[len - 1] == '=') pad++;
    if (len > 1 && s[len - 2] == '=') pad++;
    if ((size_t)got < pad || (size_t)got - pad != outlen) return KILN_EPARSE;
    memcpy(out, tmp, outlen);
    return KILN_OK;
}

/* --- keys --- */

static int key_name_ok(const char *name, size_t n)
{
    if (n == 0 || n >= 128) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("-._@+", name[i])) return 0;
    return 1;
}

static int pub_from_seed(const unsigned char seed[32], unsigned char pub[32])
{
    EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    if (!pk) return KILN_EIO;
    size_t len = 32;
    int ok = EVP_PKEY_get_raw_public_key(pk, pub, &len) == 1 && len == 32;
    EVP_PKEY_free(pk);
    return ok ? KILN_OK : KILN_EIO;
}

int kiln_nixkey_parse_secret(const char *text, struct kiln_nixkey *k, struct kiln_error *err)
{
    memset(k, 0, sizeof *k);
    const char *colon = strchr(text, ':');
    if (!colon || !key_name_ok(text, (size_t)(colon - text)))
        return kiln_fail(err, KILN_EPARSE, "secret key must look like 'name:base64' (Nix format)");
    memcpy(k->name, text, (size_t)(colon - text));
    char b64[256];
    size_t n = strcspn(colon + 1, " \t\r\n");
    if (n >= sizeof b64) return kiln_fail(err, KILN_EPARSE, "secret key is too long");
    memcpy(b64, colon + 1, n);
    b64[n] = 0;
    unsigned char raw[64];
    if (kiln_base64_decode_exact(b64, raw, 64) != KILN_OK)
        return kiln_fail(err, KILN_EPARSE, "secret key is not base64 of 64 bytes (seed + public)");
    memcpy(k->seed, raw, 32);
    if (pub_from_seed(k->seed, k->pub) != KILN_OK)
        return kiln_fail(err, KILN_EIO, "cannot derive the ed25519 public key");
    if (!kiln_ct_equal(k->pub, raw + 32, 32))
        return kiln_fail(err, KILN_EPARSE, "secret key's public half does not match its seed");
    return KILN_OK;
}

int kiln_nixkey_load(const char *path, struct kiln_nixkey *k, struct kiln_error *err)
{
    struct kiln_buf b = {0};
    int rc = kiln_read_file(path, 4096, &b);
    if (rc != KILN_OK) {
        kiln_buf_free(&b);
        return kiln_fail(err, rc == KILN_ENOTFOUND ? KILN_ENOTFOUND : rc, "cannot read key file %s",
                         path);
    }
    rc = kiln_nixkey_parse_secret(b.data ? b.data : "", k, err);
    kiln_buf_free(&b);
    if (rc != KILN_OK && err) {
        char msg[KILN_ERR_MSG_MAX];
        memcpy(msg, err->msg, sizeof msg);
        kiln_fail(err, rc, "%.200s: %.300s", path, msg);
    }
    return rc;
}

int kiln_nixkey_public_line(const struct kiln_nixkey *k, char *out, size_t outlen)
{
    char b64[64];
    kiln_base64(k->pub, 32, b64);
    int n = snprintf(out, outlen, "%s:%s", k->name, b64);
    return n < 0 || (size_t)n >= outlen ? KILN_ELIMIT : KILN_OK;
}

int kiln_nixkey_load_or_create(const char *path, const char *name, struct kiln_nixkey *k,
                               struct kiln_error *err)
{
    struct stat st;
    if (stat(path, &st) == 0) return kiln_nixkey_load(path, k, err);
    if (errno != ENOENT)
        return kiln_fail(err, KILN_EIO, "cannot stat %s: %s", path, strerror(errno));
    if (!key_name_ok(name, strlen(name))) return kiln_fail(err, KILN_EINVAL, "bad key name");
    memset(k, 0, sizeof *k);
    snprintf(k->name, sizeof k->name, "%s", name);
    if (kiln_random_bytes(k->seed, 32) != KILN_OK || pub_from_seed(k->seed, k->pub) != KILN_OK)
        return kiln_fail(err, KILN_EIO, "cannot generate an ed25519 key");
    unsigned char raw[64];
    memcpy(raw, k->seed, 32);
    memcpy(raw + 32, k->pub, 32);
    char b64[128], line[300], publine[256], pubpath[1100];
    kiln_base64(raw, 64, b64);
    snprintf(line, sizeof line, "%s:%s", k->name, b64);
    kiln_nixkey_public_line(k, publine, sizeof publine);
    if (snprintf(pubpath, sizeof pubpath, "%s.pub", path) >= (int)sizeof pubpath)
        return kiln_fail(err, KILN_ELIMIT, "key path too long");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        if (kiln_mkdir_p(dir, 0700) != KILN_OK)
            return kiln_fail(err, KILN_EIO, "cannot create %s", dir);
    }
    if (kiln_write_file_atomic(pubpath, publine, strlen(publine), 0644) != KILN_OK ||
        kiln_write_file_atomic(path, line, strlen(line), 0600) != KILN_OK)
        return kiln_fail(err, KILN_EIO, "cannot write key file %s", path);
    return KILN_OK;
}

int kiln_ed25519_sign(const struct kiln_nixkey *k, const void *msg, size_t len,
                      unsigned char sig[64])
{
    EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, k->seed, 32);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = KILN_EIO;
    size_t siglen = 64;
    if (pk && ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, pk) == 1 &&
        EVP_DigestSign(ctx, sig, &siglen, msg, len) == 1 && siglen == 64)
        rc = KILN_OK;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pk);
    return rc;
}

int kiln_ed25519_verify(const unsigned char pub[32], const void *msg, size_t len,
                        const unsigned char sig[64])
{
    EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = KILN_EIO;
    if (pk && ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1)
        rc = EVP_DigestVerify(ctx, sig, 64, msg, len) == 1 ? 1 : 0;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pk);
    return rc;
}

/* --- store paths --- */

int kiln_nix_store_path_valid(const char *p, int basename)
{
    const char *prefix = KILN_NIX_STORE_DIR "/";
    if (!basename) {
        if (strncmp(p, prefix, strlen(prefix))) return 0;
        p += strlen(prefix);
    }
    size_t len = strlen(p);
    if (len < KILN_NIX_HASHPART_LEN + 2 || len > KILN_NIX_HASHPART_LEN + 1 + 211) return 0;
    for (size_t i = 0; i < KILN_NIX_HASHPART_LEN; i++)
        if (!p[i] || !strchr(nix32_chars, p[i])) return 0;
    if (p[KILN_NIX_HASHPART_LEN] != '-') return 0;
    const char *name = p + KILN_NIX_HASHPART_LEN + 1;
    if (name[0] == '.') return 0;
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("+-._?=", *c)) return 0;
    return 1;
}

int kiln_nix_hashpart(const char *p, char out[KILN_NIX_HASHPART_LEN + 1])
{
    const char *prefix = KILN_NIX_STORE_DIR "/";
    int base = strncmp(p, prefix, strlen(prefix)) != 0;
    if (!kiln_nix_store_path_valid(p, base)) return KILN_EINVAL;
    if (!base) p += strlen(prefix);
    memcpy(out, p, KILN_NIX_HASHPART_LEN);
    out[KILN_NIX_HASHPART_LEN] = 0;
    return KILN_OK;
}

/* --- narinfo --- */

int kiln_narinfo_add_ref(struct kiln_narinfo *ni, const char *basename)
{
    if (!kiln_nix_store_path_valid(basename, 1)) return KILN_EINVAL;
    if (ni->nrefs >= KILN_NIX_MAX_REFS) return KILN_ELIMIT;
    /* Nix keeps references in a sorted set; the fingerprint depends on it. */
    size_t pos = 0;
    while (pos < ni->nrefs && strcmp(ni->refs[pos], basename) < 0)
        pos++;
    if (pos < ni->nrefs && !strcmp(ni->refs[pos], basename)) return KILN_OK;
    char **nr = realloc(ni->refs, (ni->nrefs + 1) * sizeof *nr);
    if (!nr) return KILN_ENOMEM;
    ni->refs = nr;
    char *dup = strdup(basename);
    if (!dup) return KILN_ENOMEM;
    memmove(&nr[pos + 1], &nr[pos], (ni->nrefs - pos) * sizeof *nr);
    nr[pos] = dup;
    ni->nrefs++;
    return KILN_OK;
}

void kiln_narinfo_free(struct kiln_narinfo *ni)
{
    for (size_t i = 0; i < ni->nrefs; i++)
        free(ni->refs[i]);
    free(ni->refs);
    ni->refs = NULL;
    ni->nrefs = 0;
}

int kiln_narinfo_fingerprint(const struct kiln_narinfo *ni, struct kiln_buf *out)
{
    char h[KILN_NIX32_SHA256_LEN + 1];
    kiln_nix32(ni->nar_hash, 32, h);
    kiln_buf_reset(out);
    int rc = kiln_buf_printf(out, "1;%s;sha256:%s;%llu;", ni->store_path, h,
                             (unsigned long long)ni->nar_size);
    for (size_t i = 0; rc == KILN_OK && i < ni->nrefs; i++)
        rc = kiln_buf_printf(out, "%s" KILN_NIX_STORE_DIR "/%s", i ? "," : "", ni->refs[i]);
    return rc;
}

int kiln_narinfo_sign(struct kiln_narinfo *ni, const struct kiln_nixkey *k)
{
    struct kiln_buf fp = {0};
    int rc = kiln_narinfo_fingerprint(ni, &fp);
    unsigned char sig[64];
    if (rc == KILN_OK) rc = kiln_ed25519_sign(k, fp.data, fp.len, sig);
    kiln_buf_free(&fp);
    if (rc != KILN_OK) return rc;
    char b64[100];
    kiln_base64(sig, 64, b64);
    snprintf(ni->sig, sizeof ni->sig, "%s:%s", k->name, b64);
    return KILN_OK;
}

int kiln_narinfo_verify(const struct kiln_narinfo *ni, const char *keyname,
                        const unsigned char pub[32])
{
    const char *colon = strchr(ni->sig, ':');
    if (!colon || (size_t)(colon - ni->sig) != strlen(keyname) ||
        strncmp(ni->sig, keyname, strlen(keyname)))
        return 0;
    unsigned char sig[64];
    if (kiln_base64_decode_exact(colon + 1, sig, 64) != KILN_OK) return 0;
    struct kiln_buf fp = {0};
    int ok = 0;
    if (kiln_narinfo_fingerprint(ni, &fp) == KILN_OK)
        ok = kiln_ed25519_verify(pub, fp.data, fp.len, sig) == 1;
    kiln_buf_free(&fp);
    return ok;
}

int kiln_narinfo_format(const struct kiln_narinfo *ni, struct kiln_buf *out)
{
    char fh[KILN_NIX32_SHA256_LEN + 1], nh[KILN_NIX32_SHA256_LEN + 1];
    kiln_nix32(ni->file_hash, 32, fh);
    kiln_nix32(ni->nar_hash, 32, nh);
    kiln_buf_reset(out);
    int rc = kiln_buf_printf(out,
                             "StorePath: %s\nURL: nar/%s.nar\nCompression: none\n"
                             "FileHash: sha256:%s\nFileSize: %llu\nNarHash: sha256:%s\n"
                             "NarSize: %llu\nReferences: ",
                             ni->store_path, fh, fh, (unsigned long long)ni->file_size, nh,
                             (unsigned long long)ni->nar_size);
    for (size_t i = 0; rc == KILN_OK && i < ni->nrefs; i++)
        rc = kiln_buf_printf(out, "%s%s", i ? " " : "", ni->refs[i]);
    if (rc == KILN_OK) rc = kiln_buf_puts(out, "\n");
    if (rc == KILN_OK && ni->deriver[0]) rc = kiln_buf_printf(out, "Deriver: %s\n", ni->deriver);
    if (rc == KILN_OK && ni->sig[0]) rc = kiln_buf_printf(out, "Sig: %s\n", ni->sig);
    return rc;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s || !isdigit((unsigned char)*s)) return KILN_EPARSE;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return KILN_EPARSE;
    *out = v;
    return KILN_OK;
}

static int parse_hash(const char *s, unsigned char out[32])
{
    if (strncmp(s, "sha256:", 7)) return KILN_EPARSE;
    s += 7;
    if (strlen(s) == 64) return kiln_unhex(s, out, 32);
    return kiln_nix32_decode(s, out, 32);
}

int kiln_narinfo_parse(const char *text, size_t len, struct kiln_narinfo *ni,
                       struct kiln_error *err)
{
    memset(ni, 0, sizeof *ni);
    if (len > KILN_NARINFO_MAX) return kiln_fail(err, KILN_ELIMIT, "narinfo larger than 64 KiB");
    int have_path = 0, have_nh = 0, have_ns = 0, rc = KILN_OK;
    size_t pos = 0, lineno = 0;
    char line[8192];
    while (pos < len && rc == KILN_OK) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        if (n + 2 >= sizeof line) {
            rc = kiln_fail(err, KILN_ELIMIT, "narinfo line %zu is too long", lineno);
            break;
        }
        memcpy(line, text + pos, n);
        line[n] = 0;
        pos += n + (nl ? 1 : 0);
        if (memchr(line, 0, n)) {
            rc = kiln_fail(err, KILN_EPARSE, "narinfo line %zu contains a NUL byte", lineno);
            break;
        }
        if (n == 0) continue;
        char *sep = strstr(line, ": ");
        if (!sep && n > 0 && line[n - 1] == ':') {
            /* "Key:" with an empty value: make it "Key: " */
            line[n] = ' ';
            line[n + 1] = 0;
            sep = line + n - 1;
        }
        if (!sep) {
            rc = kiln_fail(err, KILN_EPARSE, "narinfo line %zu has no 'Key: value'", lineno);
            break;
        }
        *sep = 0;
        const char *k = line, *v = sep + 2;
        if (!strcmp(k, "StorePath")) {
            if (!kiln_nix_store_path_valid(v, 0))
                rc = kiln_fail(err, KILN_EPARSE, "narinfo line %zu: bad store path", lineno);
            else {
                snprintf(ni->store_path, sizeof ni->store_path, "%s", v);
                have_path = 1;
            }
        } else if (!strcmp(k, "URL")) {
            if (strlen(v) >= sizeof ni->url || strstr(v, ".."))
                rc = kiln_fail(err, KILN_EPARSE, "narinfo line %zu: bad URL", lineno);
            else
                snprintf(ni->url, sizeof ni->url, "%s", v);
        } else if (!strcmp(k, "Compression")) {
            if (strlen(v) >= sizeof ni->compression)
                rc = kiln_fail(err, KILN_EPARSE, "narinfo line %zu: bad compression", lineno);
            else
                snprintf(ni->compression, sizeof ni->compression, "%s", v);
        } else if (!strcmp(k, "FileHash")) {
            if (parse_hash(v, ni->file_hash) != KILN_OK)
                rc = kiln_fail(err, KILN_EPARSE, "narinfo line %zu: bad FileHash", lineno);
        } else if (!strcmp(k, "NarHash")) {
            if (parse_hash(v, ni->nar_hash) != KILN_OK)
                rc = kiln_fail(err, KILN_EPARSE, "narinfo line %zu: bad NarHash", lineno);
            have_nh = 1;
        } else if (!strcmp(k, "FileSize")) {
            if (parse_u64(v, &ni->file_size) != KILN_OK)
                rc = kiln_fail(err, KILN_EPARSE, "narinfo line %zu: bad FileSize", lineno);
        } else if (!strcmp(k, "NarSize")) {
            if (parse_u64(v, &ni->nar_size) != KILN_OK)
                rc = kiln_fail(err, KILN_EPARSE, "narinfo line %zu: bad NarSize", lineno);
            have_ns = 1;
        } else if (!strcmp(k, "References")) {
            char *save = NULL;
            for (char *t = strtok_r((char *)v, " ", &save); t && rc == KILN_OK;
                 t = strtok_r(NULL, " ", &save)) {
                int r = kiln_narinfo_add_ref(ni, t);
                if (r != KILN_OK)
                    rc = kiln_fail(err, r == KILN_ENOMEM ? r : KILN_EPARSE,
                                   "narinfo line %zu: bad reference", lineno);
            }
        } else if (!strcmp(k, "Deriver")) {
            if (strcmp(v, "unknown-deriver") && !kiln_nix_store_path_valid(v, 1))
                rc = kiln_fail(err, KILN_EPARSE, "narinfo line %zu: bad Deriver", lineno);
            else if (strcmp(v, "unknown-deriver"))
                snprintf(ni->deriver, sizeof ni->deriver, "%s", v);
        } else if (!strcmp(k, "Sig")) {
            if (strlen(v) >= sizeof ni->sig)
                rc = kiln_fail(err, KILN_EPARSE, "narinfo line %zu: bad Sig", lineno);
            else if (!ni->sig[0])
                snprintf(ni->sig, sizeof ni->sig, "%s", v);
        }
        /* Other keys (System, CA) are allowed and ignored, as Nix does. */
    }
    if (rc == KILN_OK && (!have_path || !have_nh || !have_ns))
        rc = kiln_fail(err, KILN_EPARSE, "narinfo lacks StorePath, NarHash or NarSize");
    if (rc != KILN_OK) kiln_narinfo_free(ni);
    return rc;
}
