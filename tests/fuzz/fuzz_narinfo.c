/* libFuzzer target: narinfo text (kiln_narinfo_parse), then format and
 * fingerprint whatever parsed, and the nix32 decoder. */
#include "nix/nixcache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kiln_narinfo ni;
    struct kiln_error err = {0};
    if (kiln_narinfo_parse((const char *)data, size, &ni, &err) == KILN_OK) {
        struct kiln_buf b = {0};
        kiln_narinfo_format(&ni, &b);
        kiln_narinfo_fingerprint(&ni, &b);
        static const unsigned char pub[32] = {1};
        kiln_narinfo_verify(&ni, "k", pub);
        kiln_buf_free(&b);
        kiln_narinfo_free(&ni);
    }
    char s[128];
    size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, data, n);
    s[n] = 0;
    unsigned char out[32];
    kiln_nix32_decode(s, out, 32);
    unsigned char raw[64];
    kiln_base64_decode_exact(s, raw, 64);
    struct kiln_nixkey k;
    kiln_nixkey_parse_secret(s, &k, &err);
    return 0;
}
