/* stage.h - the worker's side of staging: after a build stage, its output
 * closure goes to the server's staging area as NARs (catalog/staging.h), so
 * a test host elsewhere can substitute it with Nix.
 *
 * Contract:
 * - kiln_stage_outputs() blocks (subprocesses, HTTP): call it from a thread
 *   (uv_queue_work), never on a loop.
 * - One request names the whole closure (path, NarHash, NarSize, references,
 *   deriver from the local Nix database); the server answers which paths it
 *   lacks and from which offset each resumes. Nothing else is sent.
 * - Each missing NAR streams from `nix-store --dump` into one PUT: memory
 *   stays constant (curl's 512 KiB upload buffer); bytes before the offset
 *   are read and dropped, never sent again.
 * - A transport failure (cut link, refused connection, or a stall below
 *   1 KiB/s for stall_s) asks the server again where to resume, with backoff
 *   (1 s doubling to 10 s); it gives up after `retries` tries in a row that
 *   moved no byte, with KILN_ENET (an infrastructure failure).
 * - A refusal ends it with the server's sentence: 422 (the bytes do not hash
 *   to the reported NarHash) as KILN_EINVAL, 409 (the attempt is no longer
 *   current) as KILN_ECONFLICT, others as KILN_EIO.
 * - A server without staging (404 on the plan) is not an error:
 *   res->unsupported = 1 and nothing is sent; the same when no output is in
 *   this host's store (outputs that are not are named in the log).
 * - Progress lines go to o->log (the job's log) when it is not NULL.
 */
#ifndef KILN_WORKERS_STAGE_H
#define KILN_WORKERS_STAGE_H

#include "common/err.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

struct kiln_stage_opts {
    const char *server; /* "http://host:port" */
    const char *token;  /* worker token, may be NULL */
    /* When set, asked before every request for the token to use (the
     * agent's credential may rotate while an upload runs). */
    void (*current_token)(void *arg, char *out, size_t outlen);
    void *token_arg;
    const char *ca_file; /* "" or NULL = system CAs */
    long job, attempt;
    int stall_s; /* default 20 */
    int retries; /* tries without progress before giving up (default 8) */
    FILE *log;
};

struct kiln_stage_result {
    int paths;       /* in the closure */
    int uploaded;    /* NARs sent (some perhaps in several pieces) */
    int resumes;     /* uploads resumed after a transport failure */
    uint64_t bytes;  /* NAR bytes sent */
    int unsupported; /* the server has no staging area */
};

/* outputs: array of /nix/store paths (borrowed). */
int kiln_stage_outputs(const struct kiln_stage_opts *o, json_t *outputs,
                       struct kiln_stage_result *res, struct kiln_error *err);

#endif
