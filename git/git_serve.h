/* git_serve.h - the git watcher inside `kiln serve`: tracked repositories
 * from the config's `repos:` section and the API, webhooks, and turning a
 * push into jobs.
 *
 * Contract:
 * - kiln_git_feature (a struct kiln_serve_feature) reads `repos:` (a list) and `hooks:` (a mapping
 *   with an optional shared `secret`) from the config, starts a
 *   kiln_gitwatch, and registers the routes
 *     POST /api/v1/hooks/{github|gitea|forgejo|gitlab|generic}[/{repo}]
 *          (no token: the signature is the credential; 401 when it is
 *          missing or wrong, 200 {"duplicate":true} for a replayed
 *          delivery id, 202 {"repo":id} when a fetch was started)
 *     GET  /api/v1/repos            (read)  tracked repos and their state
 *     POST /api/v1/repos            (admin) track one more repository
 *     POST /api/v1/repos/{id}/fetch (admin) fetch now
 * - A push enqueues exactly the affected variants (kiln_affected) with the
 *   commit, superseding older jobs of the same name and branch. Without
 *   auto_publish the jobs stop after their test stage.
 * - The last commit acted on per branch, the repositories added through the
 *   API and the recent delivery ids live in DATA/git/state.json, written
 *   atomically after the jobs are committed: a crash in between re-runs the
 *   analysis and resubmits the same commit, which supersedes its own twin
 *   rather than running twice.
 */
#ifndef KILN_SERVE_GIT_H
#define KILN_SERVE_GIT_H

#include "git/gitwatch.h"
#include "server/serve.h"

#include <jansson.h>

struct kiln_serve_git;

extern const struct kiln_serve_feature kiln_git_feature;
/* Parse one repo entry (config or API body) into conf; pure. */
int kiln_serve_git_parse_repo(json_t *obj, struct kiln_repo_conf *conf, struct kiln_error *err);

#endif
