/* api.h - the HTTP API of docs/API.md: router, auth, handlers.
 *
 * Contract:
 * - kiln_api_on_request() is the HTTP server's on_request: it routes
 *   method + path (/api/v1/..., /healthz, /metrics, the page under / and
 *   /web/) to a handler, answering unknown paths 404 and known paths with the
 *   wrong method 405 (with Allow), both as JSON errors.
 * - Auth: "Authorization: Bearer kiln_..." looked up by SHA-256 in the
 *   store. Requests that change state need a token (401 without or with an
 *   unknown one) of a role allowed by common/token.h (403 otherwise). GETs
 *   need a read token unless allow_anonymous_read; a wrong token is always
 *   401. /healthz and the page need none. The finer rules (registration
 *   tokens, worker credentials, job owners) are server/auth.h's; every
 *   state-changing request leaves an audit row (GET /api/v1/audit).
 * - Every handler validates its input and answers with the status that
 *   matches the kiln error code (kiln_err_http_status) and a plain sentence.
 */
#ifndef KILN_API_H
#define KILN_API_H

#include "http/http.h"

void kiln_api_on_request(struct kiln_http_req *req, void *server);
/* on_headers: hands /api/v1/catalog... and /nix-cache/... to the catalog
 * (scheduler/catalog.h) with the caller's role, so uploads stream. */
int kiln_api_on_headers(struct kiln_http_req *req, void *server);

#endif
