/* submit.h - recipe submissions: expand a recipe into variant jobs.
 *
 * Contract: kiln_submit_recipe() expands spec's recipe (recipes_dir/<name>.yaml
 * or the inline recipe_yaml) for spec's branch and where filter, turns each
 * variant into a job (jobspec.h) and submits them all in one transaction,
 * owned by spec->owner, superseding older waiting jobs of the same name and
 * branch that have the same owner (any owner's when spec->owner_is_admin). A variant
 * dependency (a name) resolves to a job in the same batch, else to a live
 * (not failed/cancelled/superseded) job of that name on the branch, else the
 * variant is looked up in the other recipes of recipes_dir and submitted in
 * the same batch ahead of its dependents (so "vllm sm90" brings "pytorch
 * sm90" with it). *ids_out = new job ids (dependencies first).
 * kiln_submit_expand() is the expansion alone (GET /recipes/{name}/expand).
 *
 * kiln_submit_plan() is the one place variants become jobs, for recipe
 * submissions and git pushes alike, with one dependency rule. Each name in a
 * variant's depends resolves, in order, to:
 *   1. a variant of the batch;
 *   2. a live job of that name on o->branch (not failed, cancelled or
 *      superseded; any branch when NULL), which kiln_jobs_submit() links;
 *   3. a variant of that name from o->pool (called at most once, lazily),
 *      added to the batch ahead of its dependents, its own depends resolved
 *      the same way;
 *   4. else, with o->missing_ok, nothing: the name leaves the jobs' depends
 *      (taken as provided outside kiln, e.g. published); without it,
 *      KILN_EINVAL "variant A depends on B, which is neither submitted nor
 *      <pool_name>".
 * *jobs = job objects (jobspec.h), pulled-in dependencies first.
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
struct kiln_submit_plan_opts {
    const char *branch; /* where live jobs are looked for (NULL: any branch) */
    const char *commit; /* the jobs' commit (may be NULL) */
    int priority;
    int (*pool)(void *arg, json_t **variants); /* NULL: no pool */
    void *pool_arg;
    const char *pool_name; /* ends the error sentence, e.g. "in any recipe of DIR" */
    int missing_ok;
};

int kiln_submit_plan(struct kiln_jobs *j, json_t *variants, const struct kiln_submit_plan_opts *o,
                     json_t **jobs, struct kiln_error *err);
int kiln_submit_recipe(struct kiln_jobs *j, const char *recipes_dir,
                       const struct kiln_jobspec *spec, double now, json_t **ids_out,
                       struct kiln_error *err);

#endif
