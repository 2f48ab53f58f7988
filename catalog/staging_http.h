/* staging_http.h - the staging area's HTTP endpoints, a stream route of
 * `kiln serve` (see staging_http.c for the routes, staging.h for the rules).
 *
 * Contract: kiln_staging_http() is a kiln_stream_fn for the prefix
 * "/api/v1/staging"; ctx is the struct made by kiln_staging_http_new().
 * Uploads stream to disk as they arrive (constant memory); the final check
 * runs on the loop's thread pool. Loop thread only.
 */
#ifndef KILN_CATALOG_STAGING_HTTP_H
#define KILN_CATALOG_STAGING_HTTP_H

#include "catalog/catalog.h"
#include "server/serve.h"

struct kiln_staging_http;

int kiln_staging_http_new(struct kiln_server *srv, struct kiln_catalog *cat,
                          struct kiln_staging_http **out, struct kiln_error *err);
void kiln_staging_http_free(struct kiln_staging_http *h);
int kiln_staging_http(struct kiln_server *srv, struct kiln_http_req *req, enum kiln_role role,
                      void *ctx);

#endif
