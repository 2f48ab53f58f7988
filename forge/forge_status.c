/* forge_status.c - request shapes and state mapping (see forge_status.h). */
#include "forge/forge_status.h"

#include "common/json_field.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int copy_str(json_t *o, const char *k, char *out, size_t n, int required,
                    struct kiln_error *err)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) {
        if (required) return kiln_fail(err, KILN_EINVAL, "statuses.repos: '%s' is required", k);
        return KILN_OK;
    }
    if (!json_is_string(v) || strlen(json_string_value(v)) >= n)
        return kiln_fail(err, KILN_EINVAL, "statuses.repos: '%s' must be a string under %zu bytes",
                         k, n);
    snprintf(out, n, "%s", json_string_value(v));
    return KILN_OK;
}

int kiln_forge_target_parse(json_t *o, struct kiln_forge_target *t,
                            const char *(*env)(const char *name), struct kiln_error *err)
{
    static const char *const known[] = {"url", "forge", "api", "repo", "token", "token_env", NULL};
    memset(t, 0, sizeof *t);
    if (!json_is_object(o))
        return kiln_fail(err, KILN_EINVAL, "statuses.repos: each entry must be a mapping");
    char forge[32] = "";
    int rc = kiln_json_only_keys(o, known, "statuses.repos", err);
    if (rc) return rc;
    if ((rc = copy_str(o, "url", t->url, sizeof t->url, 1, err)) ||
        (rc = copy_str(o, "forge", forge, sizeof forge, 1, err)) ||
        (rc = copy_str(o, "api", t->api, sizeof t->api, 0, err)) ||
        (rc = copy_str(o, "repo", t->repo, sizeof t->repo, 1, err)) ||
        (rc = copy_str(o, "token", t->token, sizeof t->token, 0, err)))
        return rc;
    if (!strcmp(forge, "github"))
        t->kind = KILN_FORGE_GITHUB;
    else if (!strcmp(forge, "gitea") || !strcmp(forge, "forgejo"))
        t->kind = KILN_FORGE_GITEA;
    else if (!strcmp(forge, "gitlab"))
        t->kind = KILN_FORGE_GITLAB;
    else
        return kiln_fail(err, KILN_EINVAL,
                         "statuses.repos: forge '%s' is not github, gitea, forgejo or gitlab",
                         forge);
    if (!t->api[0]) {
        if (t->kind != KILN_FORGE_GITHUB)
            return kiln_fail(err, KILN_EINVAL,
                             "statuses.repos: %s needs 'api' (the forge's base URL)", forge);
        snprintf(t->api, sizeof t->api, "https://api.github.com");
    }
    size_t al = strlen(t->api);
    while (al && t->api[al - 1] == '/')
        t->api[--al] = 0;
    char env_name[128] = "";
    if ((rc = copy_str(o, "token_env", env_name, sizeof env_name, 0, err))) return rc;
    if (env_name[0]) {
        const char *tok = env ? env(env_name) : getenv(env_name);
        if (!tok || !*tok)
            return kiln_fail(err, KILN_EINVAL, "statuses.repos: $%s (token_env) is not set",
                             env_name);
        if (strlen(tok) >= sizeof t->token)
            return kiln_fail(err, KILN_EINVAL, "statuses.repos: $%s is too long", env_name);
        snprintf(t->token, sizeof t->token, "%s", tok);
    }
    if (t->kind != KILN_FORGE_GITLAB && !strchr(t->repo, '/'))
        return kiln_fail(err, KILN_EINVAL, "statuses.repos: repo '%s' must be owner/name", t->repo);
    return KILN_OK;
}

const char *kiln_forge_job_state(const char *s)
{
    if (!s) return "pending";
    if (!strcmp(s, "succeeded")) return "success";
    if (!strcmp(s, "failed")) return "failure";
    if (!strcmp(s, "cancelled") || !strcmp(s, "superseded")) return "error";
    return "pending";
}

static size_t *tally_slot(struct kiln_forge_tally *t, const char *state)
{
    if (!strcmp(state, "success")) return &t->ok;
    if (!strcmp(state, "failure")) return &t->failed;
    if (!strcmp(state, "error")) return &t->error;
    return NULL; /* pending: n minus the others */
}

void kiln_forge_tally_move(struct kiln_forge_tally *t, const char *was, const char *now)
{
    size_t *s;
    if (!was)
        t->n++;
    else if ((s = tally_slot(t, was)) && *s)
        (*s)--;
    if ((s = tally_slot(t, now))) (*s)++;
}

const char *kiln_forge_tally_summary(const struct kiln_forge_tally *t, char *desc, size_t len)
{
    size_t done = t->ok + t->failed + t->error;
    size_t running = t->n > done ? t->n - done : 0;
    snprintf(desc, len, "kiln: %zu of %zu variants passed, %zu failed, %zu unfinished", t->ok, t->n,
             t->failed, running);
    if (t->failed) return "failure";
    if (running) return "pending";
    return t->error ? "error" : "success";
}

const char *kiln_forge_summary_state(json_t *jobs, char *desc, size_t len)
{
    struct kiln_forge_tally t = {0};
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j)
    {
        kiln_forge_tally_move(&t, NULL,
                              kiln_forge_job_state(json_string_value(json_object_get(j, "state"))));
    }
    return kiln_forge_tally_summary(&t, desc, len);
}

/* GitLab names the states differently, and takes the project path encoded. */
static const char *gitlab_state(const char *s)
{
    if (!strcmp(s, "failure")) return "failed";
    if (!strcmp(s, "error")) return "canceled";
    return s;
}

int kiln_forge_status_request(const struct kiln_forge_target *t, const char *sha, const char *state,
                              const char *context, const char *description, const char *target_url,
                              char *path, size_t pathlen, json_t **body, struct kiln_error *err)
{
    *body = NULL;
    if (strspn(sha, "0123456789abcdef") != strlen(sha) || strlen(sha) < 7 || strlen(sha) > 64)
        return kiln_fail(err, KILN_EINVAL, "'%s' is not a commit id", sha);
    int n;
    if (t->kind == KILN_FORGE_GITLAB) {
        char proj[3 * sizeof t->repo];
        size_t o = 0;
        for (const unsigned char *c = (const unsigned char *)t->repo; *c; c++) {
            int plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                        (*c >= '0' && *c <= '9') || strchr("-._~", *c);
            o += (size_t)snprintf(proj + o, sizeof proj - o, plain ? "%c" : "%%%02X", *c);
        }
        n = snprintf(path, pathlen, "/api/v4/projects/%s/statuses/%s", proj, sha);
        *body = json_pack("{s:s,s:s,s:s,s:s}", "state", gitlab_state(state), "name", context,
                          "target_url", target_url, "description", description);
    } else {
        n = snprintf(path, pathlen, "%s/repos/%s/statuses/%s",
                     t->kind == KILN_FORGE_GITEA ? "/api/v1" : "", t->repo, sha);
        *body = json_pack("{s:s,s:s,s:s,s:s}", "state", state, "target_url", target_url,
                          "description", description, "context", context);
    }
    if (n < 0 || (size_t)n >= pathlen) {
        json_decref(*body);
        *body = NULL;
        return kiln_fail(err, KILN_ELIMIT, "status path too long");
    }
    return *body ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
}
