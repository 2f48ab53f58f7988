/* forge_status.h - commit statuses as each forge documents them: which
 * state a job shows, and the request that says so.
 *
 * Contract (pure: no I/O, no clock, no globals):
 * - Forges: GitHub (POST {api}/repos/{owner}/{repo}/statuses/{sha}, body
 *   {state, target_url, description, context}; api defaults to
 *   https://api.github.com), Gitea and Forgejo (POST
 *   {api}/api/v1/repos/{owner}/{repo}/statuses/{sha}, same body), GitLab
 *   (POST {api}/api/v4/projects/{id}/statuses/{sha}, body {state, name,
 *   target_url, description}; the project is its numeric id or its path,
 *   URL-encoded here).
 * - kiln's own states are pending, success, failure and error (GitHub's
 *   words); GitLab gets pending, success, failed and canceled.
 * - A job waiting or running is pending, succeeded is success, failed is
 *   failure, cancelled or superseded is error. The summary of a commit is
 *   failure once a job of it failed, else pending while one is unfinished,
 *   else success (error when every unfinished-looking job was cancelled).
 */
#ifndef KILN_FORGE_STATUS_H
#define KILN_FORGE_STATUS_H

#include "common/err.h"

#include <jansson.h>
#include <stddef.h>

enum kiln_forge_kind { KILN_FORGE_GITHUB, KILN_FORGE_GITEA, KILN_FORGE_GITLAB };

struct kiln_forge_target {
    enum kiln_forge_kind kind;
    char url[1024];  /* the tracked repository's url (matches a job's attrs.source_url) */
    char api[512];   /* forge base URL, no trailing slash */
    char repo[256];  /* "owner/name" (GitLab: project id or "group/project") */
    char token[256]; /* "" = none */
};

/* One entry of the `statuses.repos` config list (see docs/operations.md);
 * a token_env names an environment variable read here (env may be NULL:
 * getenv). */
int kiln_forge_target_parse(json_t *o, struct kiln_forge_target *t,
                            const char *(*env)(const char *name), struct kiln_error *err);

/* "pending" | "success" | "failure" | "error" for a job state. */
const char *kiln_forge_job_state(const char *job_state);
/* The summary state of a commit's jobs (array of job objects). */
const char *kiln_forge_summary_state(json_t *jobs, char *description, size_t len);

/* A commit's jobs counted by forge state, kept up to date one job change at
 * a time (forge_serve.c), so a summary costs O(1) instead of rereading the
 * commit's jobs on every change. */
struct kiln_forge_tally {
    size_t n, ok, failed, error; /* n - ok - failed - error are unfinished */
};
/* One job moves from forge state `was` (NULL: not counted yet) to `now`. */
void kiln_forge_tally_move(struct kiln_forge_tally *t, const char *was, const char *now);
/* The summary state and description of a tally (the rule above). */
const char *kiln_forge_tally_summary(const struct kiln_forge_tally *t, char *description,
                                     size_t len);

/* Path (appended to t->api) and body of one status. */
int kiln_forge_status_request(const struct kiln_forge_target *t, const char *sha, const char *state,
                              const char *context, const char *description, const char *target_url,
                              char *path, size_t pathlen, json_t **body, struct kiln_error *err);

#endif
