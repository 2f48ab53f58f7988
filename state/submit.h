/* submit.h - recipe submissions: expand a recipe into variant jobs.
 *
 * Contract: kiln_submit_recipe() expands spec's recipe (recipes_dir/<name>.yaml
 * or the inline recipe_yaml) for spec's branch and where filter, turns each
 * variant into a job (jobspec.h) and submits them all in one transaction,
 * superseding older waiting jobs of the same name and branch. A variant
 * dependency (a name) resolves to a job in the same batch, else to a live
 * (not failed/cancelled/superseded) job of that name on the branch, else the
 * variant is looked up in the other recipes of recipes_dir and submitted in
 * the same batch ahead of its dependents (so "vllm sm90" brings "pytorch
 * sm90" with it). *ids_out = new job ids (dependencies first).
 * kiln_submit_expand() is the expansion alone (GET /recipes/{name}/expand).
 */
#ifndef KILN_SUBMIT_H
#define KILN_SUBMIT_H

#include "state/jobs.h"
#include "state/jobspec.h"

int kiln_submit_expand(const char *recipes_dir, const char *name, const char *yaml,
                       const char *branch, const char *where, json_t **variants,
                       struct kiln_error *err);
/* "k=v,k=v" from a where object; KILN_EINVAL for keys/values with , = | */
int kiln_submit_where_string(json_t *where, char *out, size_t outlen, struct kiln_error *err);
int kiln_submit_recipe(struct kiln_jobs *j, const char *recipes_dir,
                       const struct kiln_jobspec *spec, double now, json_t **ids_out,
                       struct kiln_error *err);

#endif
