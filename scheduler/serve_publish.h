/* serve_publish.h - the publish stage inside `kiln serve`.
 *
 * Contract: kiln_serve_publish_init() creates the catalog's publisher from
 * the config's `publish:` section (targets: S3, commands; the embedded
 * catalog is always one) and installs it as srv->publish, so a job that
 * reaches `tested` is published: its outputs go into the signed catalog
 * (uploaded by the worker, or exported here when they are in this host's
 * Nix store) and then to every matching target. The job succeeds when all
 * targets did, and fails at stage "publish" with the first target's message
 * otherwise. Without a catalog (it could not be opened) publishing is a
 * no-op success, as before. A published entry is announced over SSE.
 */
#ifndef KILN_SERVE_PUBLISH_H
#define KILN_SERVE_PUBLISH_H

#include "scheduler/serve.h"

int kiln_serve_publish_init(struct kiln_server *srv, json_t *config, struct kiln_error *err);
void kiln_serve_publish_stop(struct kiln_server *srv);

#endif
