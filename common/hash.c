#include "common/hash.h"

#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>
#include <unistd.h>

void kiln_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int nib(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int kiln_unhex(const char *hex, unsigned char *out, size_t outlen)
{
    if (strlen(hex) != 2 * outlen) return KILN_EPARSE;
    for (size_t i = 0; i < outlen; i++) {
        int hi = nib(hex[2 * i]), lo = nib(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return KILN_EPARSE;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return KILN_OK;
}

int kiln_sha256(const void *p, size_t n, unsigned char out[KILN_SHA256_LEN])
{
    unsigned int len = 0;
    if (!EVP_Digest(p, n, out, &len, EVP_sha256(), NULL)) return KILN_EIO;
    return KILN_OK;
}

int kiln_sha256_hex(const void *p, size_t n, char out[KILN_SHA256_HEX])
{
    unsigned char d[KILN_SHA256_LEN];
    int rc = kiln_sha256(p, n, d);
    if (rc) return rc;
    kiln_hex(d, sizeof d, out);
    return KILN_OK;
}

int kiln_sha256_file_hex(const char *path, char out[KILN_SHA256_HEX], uint64_t *size_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? KILN_ENOTFOUND : KILN_EIO;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        close(fd);
        return KILN_ENOMEM;
    }
    int rc = KILN_OK;
    uint64_t total = 0;
    unsigned char buf[65536];
    if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) rc = KILN_EIO;
    while (!rc) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = KILN_EIO;
            break;
        }
        if (r == 0) break;
        total += (uint64_t)r;
        if (!EVP_DigestUpdate(ctx, buf, (size_t)r)) rc = KILN_EIO;
    }
    unsigned char d[KILN_SHA256_LEN];
    unsigned int len = 0;
    if (!rc && !EVP_DigestFinal_ex(ctx, d, &len)) rc = KILN_EIO;
    EVP_MD_CTX_free(ctx);
    close(fd);
    if (rc) return rc;
    kiln_hex(d, sizeof d, out);
    if (size_out) *size_out = total;
    return KILN_OK;
}

int kiln_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
                     unsigned char out[KILN_SHA256_LEN])
{
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &len)) return KILN_EIO;
    return KILN_OK;
}

int kiln_random_bytes(unsigned char *out, size_t n)
{
    return RAND_bytes(out, (int)n) == 1 ? KILN_OK : KILN_EIO;
}

int kiln_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

int kiln_ct_streq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb) return 0;
    return kiln_ct_equal(a, b, la);
}
