/* token.h - bearer tokens and roles.
 *
 * Contract: a token is "kiln_" + 48 hex chars of randomness. Only its SHA-256
 * (hex) is ever stored. Roles are ordered by what they may do:
 *   read   - GET anything
 *   submit - read + submit/cancel/retry jobs
 *   worker - read + worker endpoints (register, lease, heartbeat, log, report);
 *            a worker token made by hand only registers, and the server
 *            issues each worker its own bound credential (server/auth.h)
 *   admin  - everything (tokens, drain, repos, catalog admin)
 * kiln_role_allows(have, need) says whether a token of role `have` may do
 * what needs role `need`.
 */
#ifndef KILN_TOKEN_H
#define KILN_TOKEN_H

#include "common/hash.h"

#define KILN_TOKEN_LEN 54 /* "kiln_" + 48 hex + NUL */

enum kiln_role {
    KILN_ROLE_NONE = 0,
    KILN_ROLE_READ,
    KILN_ROLE_SUBMIT,
    KILN_ROLE_WORKER,
    KILN_ROLE_ADMIN
};

const char *kiln_role_name(enum kiln_role r);
/* Returns KILN_OK or KILN_EINVAL for an unknown name. */
int kiln_role_parse(const char *s, enum kiln_role *out);
int kiln_role_allows(enum kiln_role have, enum kiln_role need);

int kiln_token_generate(char out[KILN_TOKEN_LEN]);
int kiln_token_hash(const char *token, char out[KILN_SHA256_HEX]);

#endif
