/* jobspec.h - validation of job submissions (POST /api/v1/jobs bodies).
 *
 * Contract: pure functions, no I/O. kiln_jobspec_parse() turns a request
 * body into a validated submission or fails with KILN_EPARSE (not JSON) /
 * KILN_EINVAL and a sentence naming the bad field ("cores: must be an
 * integer from 1 to 4096"). Two kinds of submission:
 *   ad-hoc  {"name","command",cores,ram_mb,platform,priority,env,timeout_s,
 *            max_attempts,depends:[ids],isa,gpu_sm,attrs}
 *   recipe  {"recipe" | "recipe_yaml", "branch", "commit", "where":{k:v}, "priority"}
 *   batch   {"jobs":[ad-hoc, ...]} (1 to KILN_JOBSPEC_MAX_BATCH ad-hoc jobs,
 *            submitted together in one transaction; a bad one fails them all)
 * An ad-hoc submission yields spec->jobs, an array with one normalized job
 * (a batch: one per item, in order)
 * object (every field present, defaults filled in), the same shape
 * kiln_jobspec_from_variant() makes from a recipe variant, which is what
 * kiln_jobs_submit() consumes.
 */
#ifndef KILN_JOBSPEC_H
#define KILN_JOBSPEC_H

#include "common/err.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum kiln_jobspec_kind { KILN_JOBSPEC_ADHOC = 1, KILN_JOBSPEC_RECIPE = 2 };

#define KILN_JOBSPEC_MAX_BODY (1024 * 1024)
#define KILN_JOBSPEC_MAX_BATCH 1000

/* Env values may be secrets: {"secret": "value"} or {"secret_ref": "NAME"}
 * (a secret kept on the server, see server/secrets.h). A normalized job keeps
 * them in "secret_env" (stored apart, handed to the job only) and shows this
 * mark in "env" instead. */
#define KILN_JOBSPEC_SECRET_MARK "(secret)"

struct kiln_jobspec {
    enum kiln_jobspec_kind kind;
    json_t *jobs;      /* ADHOC: array of normalized job objects */
    char recipe[128];  /* RECIPE: recipe name ("" with recipe_yaml) */
    char branch[128];  /* RECIPE: default "main" */
    char commit[64];   /* RECIPE: optional commit id */
    char *recipe_yaml; /* RECIPE: inline recipe text or NULL */
    json_t *where;     /* RECIPE: object of string filters, never NULL after parse */
    int priority;
    /* Set by the server, never parsed from the body: the submitting token
     * (0: the server itself) and whether it may supersede anyone's jobs. */
    int64_t owner;
    int owner_is_admin;
};

int kiln_jobspec_parse(const char *body, size_t len, struct kiln_jobspec *out,
                       struct kiln_error *err);
void kiln_jobspec_free(struct kiln_jobspec *spec);

/* Normalized job object from a recipe variant (docs/API.md "Variant JSON"). */
int kiln_jobspec_from_variant(json_t *variant, int priority, const char *commit, json_t **out,
                              struct kiln_error *err);

/* Validation helpers shared with other handlers. */
int kiln_jobspec_valid_name(const char *s);
int kiln_jobspec_valid_platform(const char *s);

#endif
