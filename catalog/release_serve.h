/* release_serve.h - releases in `kiln serve`: which jobs make a release, when
 * it completes, what holds it, and GET /api/v1/releases[/{id}].
 *
 * Contract:
 * - A job is part of a release when its publish spec says so
 *   ({"release": true}: a recipe's `publish: release`, or a tracked branch
 *   whose repo says `publish: release`) and it has a commit. The release is
 *   (branch, commit): every such job of that commit on that branch.
 * - The publish stage of such a job puts its outputs into the catalog held
 *   in the release (kiln_release_serve_for_job gives the id) and runs no
 *   target. When every job of the release has succeeded, the release
 *   completes in one catalog transaction, then the publish targets run for
 *   each of its entries (results kept on the release).
 * - A failed, cancelled or superseded job holds the release; retrying it
 *   (same job) and passing completes it. The first job seen for a newer
 *   commit of the branch opens a new release, which supersedes the older
 *   open ones: their entries are never shown.
 * - Driven by the job-change hook (server/serve.h); at start, open releases
 *   are re-checked and completed ones whose targets never ran run them.
 */
#ifndef KILN_RELEASE_SERVE_H
#define KILN_RELEASE_SERVE_H

#include "catalog/catalog.h"
#include "catalog/publish.h"
#include "server/serve.h"

struct kiln_release_serve;

int kiln_release_serve_new(struct kiln_server *srv, struct kiln_catalog *cat,
                           struct kiln_publisher *pub, struct kiln_release_serve **out,
                           struct kiln_error *err);
/* Before the publisher is freed: pending target runs report to nobody. */
void kiln_release_serve_free(struct kiln_release_serve *rs);
/* 1 when the job (object of docs/API.md) belongs to a release. */
int kiln_release_job_wants(json_t *job);
/* *release_id = the job's release (opened if new), or 0 when it has none. */
int kiln_release_serve_for_job(struct kiln_release_serve *rs, json_t *job, int64_t *release_id,
                               struct kiln_error *err);

#endif
