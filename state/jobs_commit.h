/* jobs_commit.h - the jobs built for one commit of a branch (what a release
 * is made of, what a forge status summarises).
 *
 * Contract: read-only queries over the job store; the job objects are those
 * of kiln_jobs_get (docs/API.md), oldest first.
 */
#ifndef KILN_JOBS_COMMIT_H
#define KILN_JOBS_COMMIT_H

#include "state/jobs.h"

/* Every job whose branch and commit match (branch NULL or "" = jobs with no
 * branch); *out = array. */
int kiln_jobs_of_commit(struct kiln_jobs *j, const char *branch, const char *commit, json_t **out,
                        struct kiln_error *err);

#endif
