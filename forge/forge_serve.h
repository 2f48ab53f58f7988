/* forge_serve.h - commit statuses on GitHub, Gitea/Forgejo and GitLab as a
 * feature of `kiln serve`.
 *
 * Contract:
 * - Config section `statuses:` {page_url, retry_base_s (2), retry_max_s
 *   (300), repos: [{url, forge, api, repo, token | token_env}]}: a job whose
 *   attrs.source_url is a listed url (the tracked repository, set by the git
 *   watcher) is reported to that forge: one status per variant (context
 *   "kiln/<job name>", linking to its build page) and one summary per commit
 *   (context "kiln", linking to the queue of its branch).
 * - A status is sent when its forge state (forge_status.h) changes, in the
 *   order the changes committed (the job-change hook of server/serve.h), so
 *   a forge sees pending -> success|failure|error, and pending again after a
 *   retry.
 * - Each forge has its own queue, and one request in flight at a time on
 *   the libuv thread pool (a blocking libcurl call with a 10 s timeout): a
 *   slow or failing forge never blocks the loop, the farm or another forge.
 *   Transport errors, 408, 429 and 5xx are retried in order with exponential
 *   backoff (a uv timer); other 4xx drop that one status (logged).
 * - GET /api/v1/statuses (read) says per forge how many reports wait, how
 *   many were sent, and whether they are late (failing since when, why).
 * - Nothing is persisted: after a restart, states are sent again as jobs
 *   change.
 */
#ifndef KILN_FORGE_SERVE_H
#define KILN_FORGE_SERVE_H

#include "server/serve.h"

extern const struct kiln_serve_feature kiln_forge_feature;

#endif
