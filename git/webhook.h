/* webhook.h - verify and read forge webhooks (GitHub, Gitea/Forgejo, GitLab,
 * generic).
 *
 * Contract: kiln_webhook_parse() is a pure function over the request's
 * headers (through a lookup callback) and raw body. It checks the signature
 * FIRST, in constant time, and only then parses the JSON:
 *   github  X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>,
 *           X-GitHub-Event (push|ping), X-GitHub-Delivery
 *   gitea   X-Gitea-Signature (or X-Forgejo-Signature): <hex HMAC>,
 *           X-Gitea-Event, X-Gitea-Delivery
 *   gitlab  X-Gitlab-Token: <secret> (compared in constant time),
 *           X-Gitlab-Event ("Push Hook"), X-Gitlab-Event-UUID
 *   generic X-Kiln-Signature: sha256=<hex HMAC>, X-Kiln-Event, X-Kiln-Delivery
 * Results: KILN_EAUTH (missing/bad signature: answer 401), KILN_EPARSE (bad
 * body: 400), KILN_OK with the event filled. The payload's commit id is only
 * a hint: the watcher always fetches and resolves the branch itself.
 */
#ifndef KILN_WEBHOOK_H
#define KILN_WEBHOOK_H

#include "common/err.h"

#include <stddef.h>

enum kiln_forge { KILN_FORGE_GITHUB, KILN_FORGE_GITEA, KILN_FORGE_GITLAB, KILN_FORGE_GENERIC };

struct kiln_webhook_event {
    enum kiln_forge forge;
    int is_ping; /* ping / test event: verified, nothing to build */
    int is_push;
    char delivery[128];  /* delivery id for deduplication ("" if none) */
    char repo_url[512];  /* clone URL from the payload (for matching tracked repos) */
    char repo_name[256]; /* "owner/name" */
    char branch[256];    /* from "ref": refs/heads/<branch> */
    char after[64];      /* commit hint (never trusted without a fetch) */
};

/* Parse "github", "gitea", "forgejo", "gitlab", "generic". */
int kiln_forge_parse(const char *s, enum kiln_forge *out);
const char *kiln_forge_name(enum kiln_forge f);

typedef const char *(*kiln_header_fn)(void *arg, const char *name);

int kiln_webhook_parse(enum kiln_forge forge, const char *secret, kiln_header_fn header,
                       void *header_arg, const char *body, size_t len,
                       struct kiln_webhook_event *ev, struct kiln_error *err);

/* Signature header value for a body (used by tests and `kiln repo hook-test`):
 * "sha256=<hex>" for github/generic, "<hex>" for gitea, the secret for gitlab. */
int kiln_webhook_sign(enum kiln_forge forge, const char *secret, const char *body, size_t len,
                      char *out, size_t outlen);

#endif
