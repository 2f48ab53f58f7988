/* auth.c - authorisation rules (server/auth.h). */
#include "server/auth.h"

#include <fnmatch.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int kiln_auth_identify(struct kiln_store *st, const char *h, struct kiln_principal *p,
                       struct kiln_error *err)
{
    memset(p, 0, sizeof *p);
    if (!h) return KILN_OK;
    const char *tok = h + 7;
    char basic[256];
    if (!strncasecmp(h, "Basic ", 6)) {
        /* Nix reaches /nix-cache with a netrc: Basic user:token, the token
         * as the password (issue 15). */
        const char *b64 = h + 6;
        while (*b64 == ' ')
            b64++;
        size_t n = strlen(b64);
        int got = n && n <= 4 * (sizeof basic - 1) / 3
                      ? EVP_DecodeBlock((unsigned char *)basic, (const unsigned char *)b64, (int)n)
                      : -1;
        char *colon = got >= 0 ? (basic[got] = '\0', strchr(basic, ':')) : NULL;
        if (!colon) return kiln_fail(err, KILN_EAUTH, "the Basic credentials are malformed");
        tok = colon + 1;
    } else if (strncasecmp(h, "Bearer ", 7)) {
        return kiln_fail(err, KILN_EAUTH, "the Authorization header must be Bearer kiln_...");
    }
    while (*tok == ' ')
        tok++;
    if (strncmp(tok, "kiln_", 5) || strlen(tok) != KILN_TOKEN_LEN - 1)
        return kiln_fail(err, KILN_EAUTH, "the bearer token is not a kiln token");
    char hash[KILN_SHA256_HEX];
    if (kiln_token_hash(tok, hash)) return kiln_fail(err, KILN_EAUTH, "cannot hash the token");
    struct kiln_error e2 = {0};
    int rc = kiln_access_identify(st, hash, p, &e2);
    if (rc == KILN_EAUTH)
        return kiln_fail(err, KILN_EAUTH,
                         "the bearer token is not valid (kiln token create makes one)");
    if (rc && err) *err = e2;
    return rc;
}

int kiln_auth_is_registration(const struct kiln_principal *p)
{
    return p->token_id && p->role == KILN_ROLE_WORKER && p->worker_id == 0;
}

int kiln_auth_route(const struct kiln_principal *p, enum kiln_role need, int anon_read,
                    int is_register, struct kiln_error *err)
{
    if (need == KILN_ROLE_NONE) return KILN_OK;
    if (!p->token_id) {
        if (need == KILN_ROLE_READ && anon_read) return KILN_OK;
        return kiln_fail(err, KILN_EAUTH,
                         "this needs a token: send Authorization: Bearer kiln_...");
    }
    if (kiln_auth_is_registration(p) && !is_register)
        return kiln_fail(err, KILN_EPERM,
                         "a registration token may only register a worker; use the credential "
                         "the registration returned");
    if (!kiln_role_allows(p->role, need))
        return kiln_fail(err, KILN_EPERM, "a %s token may not do this (needs %s)",
                         kiln_role_name(p->role), kiln_role_name(need));
    return KILN_OK;
}

int kiln_auth_job_owner(struct kiln_store *st, const struct kiln_principal *p, int64_t job,
                        struct kiln_error *err)
{
    int64_t owner = 0;
    int rc = kiln_access_job(st, job, &owner, NULL, err);
    if (rc) return rc;
    int mine = p->role == KILN_ROLE_SUBMIT && owner && owner == p->token_id;
    if (p->role == KILN_ROLE_ADMIN || mine) {
        if (!p->scoped) return KILN_OK;
        char recipe[128], branch[128];
        if ((rc = kiln_access_job_place(st, job, recipe, branch, err))) return rc;
        return kiln_auth_scope(st, p, recipe, branch, err);
    }
    return kiln_fail(err, KILN_EPERM,
                     "job %lld was submitted by %s; only that token or an admin may change it",
                     (long long)job, owner ? "another token" : "the server");
}

/* 1 when name matches one glob of list, or list is absent (no limit). */
static int scope_admits(const json_t *list, const char *name)
{
    if (!list) return 1;
    size_t i;
    const json_t *g;
    json_array_foreach(list, i, g)
    {
        const char *pat = json_string_value(g);
        if (pat && fnmatch(pat, name, 0) == 0) return 1;
    }
    return 0;
}

/* "cuda-*, main" from a list of globs, for the refusal's sentence. */
static void scope_text(const json_t *list, char *out, size_t cap)
{
    size_t used = 0, i;
    const json_t *g;
    out[0] = '\0';
    json_array_foreach(list, i, g)
    {
        int n = snprintf(out + used, cap - used, "%s%s", i ? ", " : "", json_string_value(g));
        if (n < 0 || (size_t)n >= cap - used) break;
        used += (size_t)n;
    }
}

int kiln_auth_scope(struct kiln_store *st, const struct kiln_principal *p, const char *recipe,
                    const char *branch, struct kiln_error *err)
{
    if (!p->scoped) return KILN_OK;
    json_t *scope;
    int rc = kiln_access_token_scope(st, p->token_id, &scope, err);
    if (rc) return rc;
    if (!scope) return KILN_OK;
    const json_t *r = json_object_get(scope, "recipes"), *b = json_object_get(scope, "branches");
    if (!scope_admits(r, recipe)) {
        char globs[512];
        scope_text(r, globs, sizeof globs);
        rc = kiln_fail(err, KILN_EPERM,
                       "this token is scoped to recipes [%s]; %s%.128s%s is outside its scope",
                       globs, recipe[0] ? "recipe '" : "a job with no recipe", recipe,
                       recipe[0] ? "'" : "");
    } else if (!scope_admits(b, branch)) {
        char globs[512];
        scope_text(b, globs, sizeof globs);
        rc = kiln_fail(err, KILN_EPERM,
                       "this token is scoped to branches [%s]; %s%.128s%s is outside its scope",
                       globs, branch[0] ? "branch '" : "a job with no branch", branch,
                       branch[0] ? "'" : "");
    }
    json_decref(scope);
    return rc;
}

int kiln_auth_worker_self(const struct kiln_principal *p, int64_t worker_id, struct kiln_error *err)
{
    if (p->worker_id && p->worker_id == worker_id) return KILN_OK;
    return kiln_fail(err, KILN_EPERM, "only worker %lld's own credential may act as worker %lld",
                     (long long)worker_id, (long long)worker_id);
}

int kiln_auth_job_worker(struct kiln_store *st, const struct kiln_principal *p, int64_t job,
                         struct kiln_error *err)
{
    if (!p->worker_id)
        return kiln_fail(err, KILN_EPERM, "only a worker's credential may send logs and reports");
    int64_t holder = 0;
    int rc = kiln_access_job(st, job, NULL, &holder, err);
    if (rc) return rc;
    if (holder != p->worker_id)
        return kiln_fail(err, KILN_ECONFLICT,
                         "job %lld's current attempt is not leased to worker %lld", (long long)job,
                         (long long)p->worker_id);
    return KILN_OK;
}

int kiln_auth_register(struct kiln_store *st, const struct kiln_principal *p, const char *name,
                       int replace, struct kiln_error *err)
{
    if (p->role != KILN_ROLE_WORKER && p->role != KILN_ROLE_ADMIN)
        return kiln_fail(err, KILN_EPERM, "registering a worker needs a worker token");
    int64_t id;
    char state[16];
    int rc = kiln_access_worker_by_name(st, name, &id, state, err);
    if (rc) return rc;
    if (p->worker_id && p->worker_id != id)
        return kiln_fail(err, KILN_EPERM,
                         "this credential belongs to worker %lld; it may not register as %.128s",
                         (long long)p->worker_id, name);
    if (!id || !strcmp(state, "lost") || !strcmp(state, "offline")) return KILN_OK;
    if (p->worker_id == id) return KILN_OK;
    if (p->role == KILN_ROLE_ADMIN && replace) return KILN_OK;
    return kiln_fail(err, KILN_ECONFLICT,
                     "worker %.128s is %s; a second registration under its name is refused until "
                     "it is lost (or an admin passes ?replace=1)",
                     name, state);
}

int kiln_auth_audited(const char *method, const char *path)
{
    if (!strcmp(method, "GET") || !strcmp(method, "HEAD")) return 0;
    static const char *const quiet[] = {"/heartbeat", "/lease", "/log"};
    if (!strncmp(path, "/api/v1/workers/", 16) || !strncmp(path, "/api/v1/jobs/", 13)) {
        const char *last = strrchr(path, '/');
        for (size_t i = 0; last && i < sizeof quiet / sizeof quiet[0]; i++)
            if (!strcmp(last, quiet[i])) return 0;
    }
    return 1;
}
