/* catalog_serve.h - the catalog as a feature of `kiln serve`.
 *
 * Contract: kiln_catalog_feature opens DATA's catalog (a catalog that cannot
 * be opened is logged and the feature stays off: the farm still builds and
 * publishing is a no-op success, as without a catalog), serves
 * /api/v1/catalog and /nix-cache/ (streamed uploads and downloads), and
 * installs the publish stage from the config's `publish:` section (targets:
 * S3, commands; the embedded catalog is always one). A job that reaches
 * `tested` is published: its outputs go into the signed catalog (uploaded by
 * the worker, or imported here when they are in this host's Nix store) and
 * then to every matching target. The job succeeds when all targets did, and
 * fails at stage "publish" with the first target's message otherwise. A
 * published entry is announced over SSE.
 * It also runs the staging area (catalog/staging.h, routes in
 * staging_http.c): outputs staged by build workers are served from
 * /nix-cache, test leases name them with the farm's public key
 * (srv->lease_extra), publishing promotes them, and a timer applies the
 * `staging:` retention (max_age_s, max_size, prune_interval_s), keeping the
 * outputs of jobs in `built` or `testing`.
 */
#ifndef KILN_CATALOG_SERVE_H
#define KILN_CATALOG_SERVE_H

#include "server/serve.h"

extern const struct kiln_serve_feature kiln_catalog_feature;

#endif
