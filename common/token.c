#include "common/token.h"

#include "common/err.h"

#include <string.h>

static const char *role_names[] = {"none", "read", "submit", "worker", "admin"};

const char *kiln_role_name(enum kiln_role r)
{
    return (r >= KILN_ROLE_NONE && r <= KILN_ROLE_ADMIN) ? role_names[r] : "none";
}

int kiln_role_parse(const char *s, enum kiln_role *out)
{
    for (int i = KILN_ROLE_READ; i <= KILN_ROLE_ADMIN; i++) {
        if (strcmp(s, role_names[i]) == 0) {
            *out = (enum kiln_role)i;
            return KILN_OK;
        }
    }
    return KILN_EINVAL;
}

int kiln_role_allows(enum kiln_role have, enum kiln_role need)
{
    if (have == KILN_ROLE_NONE) return need == KILN_ROLE_NONE;
    if (have == KILN_ROLE_ADMIN || need == KILN_ROLE_NONE || need == KILN_ROLE_READ) return 1;
    return have == need;
}

int kiln_token_generate(char out[KILN_TOKEN_LEN])
{
    unsigned char raw[24];
    int rc = kiln_random_bytes(raw, sizeof raw);
    if (rc) return rc;
    memcpy(out, "kiln_", 5);
    kiln_hex(raw, sizeof raw, out + 5);
    return KILN_OK;
}

int kiln_token_hash(const char *token, char out[KILN_SHA256_HEX])
{
    return kiln_sha256_hex(token, strlen(token), out);
}
