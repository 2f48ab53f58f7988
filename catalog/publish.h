/* publish.h - where a published artifact goes besides the embedded catalog.
 *
 * Contract:
 * - Configuration is JSON (the server's YAML through kiln_yaml_to_json):
 *     {"targets": [
 *        {"type": "s3", "match": {"recipe": "vllm", "branch": ["main", "release-*"]},
 *         "endpoint": "https://s3.example", "bucket": "b", "region": "us-east-1",
 *         "access_key_env": "KILN_S3_ACCESS_KEY", "secret_key_env": "KILN_S3_SECRET_KEY",
 *         "key": "{name}/{version}/{hex}", "part_size": 8388608},
 *        {"type": "command", "match": {"branch": "main"},
 *         "command": "flox publish {name}", "timeout_s": 600}]}
 *   The embedded catalog is always a target (the entry exists before
 *   kiln_publisher_run is called). "match" keys are entry fields (recipe,
 *   branch, name, sm, isa, cuda, platform...), values a glob or a list of
 *   globs; no match object = every entry. Secrets come from the environment
 *   (variables named in the config), never from the config file itself.
 * - Templates: {field} is replaced by the entry's field (name, version,
 *   recipe, branch, commit, platform, sm, capability, isa, cuda, python,
 *   store_path, digest, hex, size, id, path = the blob file). In commands
 *   every value is shell-quoted; an unknown {field} is an error at
 *   configuration time where possible, at run time otherwise. "{{" is "{".
 * - kiln_publisher_run() starts every matching target concurrently on the
 *   loop (S3 via scheduler/s3.h, commands via uv_spawn of /bin/sh -c in their
 *   own process group, killed at timeout_s) and calls done once with an
 *   array of {"target": i, "type": .., "ok": bool, "message": ..}; rc is 0
 *   when all succeeded, else the first failure's code. Nothing blocks.
 */
#ifndef KILN_PUBLISH_H
#define KILN_PUBLISH_H

#include "common/buf.h"
#include "common/err.h"
#include "catalog/catalog.h"

#include <jansson.h>
#include <uv.h>

struct kiln_publisher;

typedef void (*kiln_publish_done_cb)(void *arg, int rc, json_t *results /* borrowed */);

int kiln_publisher_new(uv_loop_t *loop, struct kiln_catalog *cat, json_t *config,
                       struct kiln_publisher **out, struct kiln_error *err);
/* Pending runs finish with KILN_ESTATE; run the loop afterwards. */
void kiln_publisher_free(struct kiln_publisher *p);

int kiln_publisher_run(struct kiln_publisher *p, int64_t entry_id, kiln_publish_done_cb done,
                       void *arg, struct kiln_error *err);

/* Publish a finished job (the job object of docs/API.md): the catalog entry
 * is name = job name, version = attrs.version, else the commit's first 12
 * characters, else "job<id>"; metadata from the job (recipe, branch, commit,
 * platform, sm, capability, isa, cuda, python, driver_min, selftest, attrs,
 * job id). If that entry exists (the worker uploaded it with
 * kiln_export_store_path and kiln_publish_job_meta) only the other targets
 * run; else each of job.outputs that is in this host's Nix store is exported
 * into the catalog on the thread pool (extra outputs as "<name>-out<k>"), a
 * missing one fails the publish with a sentence saying so. No outputs and no
 * entry: nothing to publish, success. done gets {"artifact":{catalog_id,
 * digest,size,name}|absent, "artifacts":[...], "targets":[...], "message"}
 * (for kiln_serve_publish_done). Always completes asynchronously. */
int kiln_publish_job(struct kiln_publisher *p, json_t *job, kiln_publish_done_cb done, void *arg,
                     struct kiln_error *err);
/* Same, for a job of a release (catalog/release.h): its entries are held in
 * release_id (hidden) and no target runs; the release runs them when it
 * completes (kiln_publisher_run per entry). */
int kiln_publish_job_held(struct kiln_publisher *p, json_t *job, int64_t release_id,
                          kiln_publish_done_cb done, void *arg, struct kiln_error *err);
/* The catalog metadata kiln_publish_job uses (new reference). */
json_t *kiln_publish_job_meta(json_t *job);

/* Expand {field} from vars (object of strings/numbers) into out. */
int kiln_publish_template(const char *tmpl, json_t *vars, int shell_quote, struct kiln_buf *out,
                          struct kiln_error *err);
/* 1 when entry matches the target's "match" object. */
int kiln_publish_match(json_t *match, json_t *entry);

#endif
