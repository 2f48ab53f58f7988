#include "git/webhook.h"

#include "common/hash.h"
#include "common/json_field.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *forge_names[] = {"github", "gitea", "gitlab", "generic"};

int kiln_forge_parse(const char *s, enum kiln_forge *out)
{
    if (!strcmp(s, "forgejo")) {
        *out = KILN_FORGE_GITEA;
        return KILN_OK;
    }
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, forge_names[i])) {
            *out = (enum kiln_forge)i;
            return KILN_OK;
        }
    return KILN_EINVAL;
}

const char *kiln_forge_name(enum kiln_forge f)
{
    return (unsigned)f < 4 ? forge_names[f] : "?";
}

int kiln_webhook_sign(enum kiln_forge forge, const char *secret, const char *body, size_t len,
                      char *out, size_t outlen)
{
    if (forge == KILN_FORGE_GITLAB) {
        if (strlen(secret) >= outlen) return KILN_ELIMIT;
        strcpy(out, secret);
        return KILN_OK;
    }
    unsigned char mac[KILN_SHA256_LEN];
    char hex[KILN_SHA256_HEX];
    int rc = kiln_hmac_sha256(secret, strlen(secret), body, len, mac);
    if (rc) return rc;
    kiln_hex(mac, sizeof mac, hex);
    int n = snprintf(out, outlen, "%s%s", forge == KILN_FORGE_GITEA ? "" : "sha256=", hex);
    return n < 0 || (size_t)n >= outlen ? KILN_ELIMIT : KILN_OK;
}

static const char *first_header(kiln_header_fn h, void *arg, const char *a, const char *b)
{
    const char *v = h(arg, a);
    if (!v && b) v = h(arg, b);
    return v;
}

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

int kiln_webhook_parse(enum kiln_forge forge, const char *secret, kiln_header_fn header, void *harg,
                       const char *body, size_t len, struct kiln_webhook_event *ev,
                       struct kiln_error *err)
{
    memset(ev, 0, sizeof *ev);
    ev->forge = forge;
    if (!secret || !*secret)
        return kiln_fail(err, KILN_EAUTH,
                         "no webhook secret is configured for %s; refusing unsigned hooks",
                         kiln_forge_name(forge));
    const char *sig = NULL, *event = NULL, *delivery = NULL;
    switch (forge) {
    case KILN_FORGE_GITHUB:
        sig = header(harg, "X-Hub-Signature-256");
        event = header(harg, "X-GitHub-Event");
        delivery = header(harg, "X-GitHub-Delivery");
        break;
    case KILN_FORGE_GITEA:
        sig = first_header(header, harg, "X-Gitea-Signature", "X-Forgejo-Signature");
        event = first_header(header, harg, "X-Gitea-Event", "X-Forgejo-Event");
        delivery = first_header(header, harg, "X-Gitea-Delivery", "X-Forgejo-Delivery");
        break;
    case KILN_FORGE_GITLAB:
        sig = header(harg, "X-Gitlab-Token");
        event = header(harg, "X-Gitlab-Event");
        delivery = first_header(header, harg, "X-Gitlab-Event-UUID", "Idempotency-Key");
        break;
    case KILN_FORGE_GENERIC:
        sig = header(harg, "X-Kiln-Signature");
        event = header(harg, "X-Kiln-Event");
        delivery = header(harg, "X-Kiln-Delivery");
        break;
    }
    if (!sig || !*sig)
        return kiln_fail(err, KILN_EAUTH, "missing webhook signature header for %s",
                         kiln_forge_name(forge));
    char want[128];
    int rc = kiln_webhook_sign(forge, secret, body, len, want, sizeof want);
    if (rc) return kiln_fail(err, rc, "cannot compute signature");
    if (!kiln_ct_streq(sig, want))
        return kiln_fail(err, KILN_EAUTH, "webhook signature does not match");
    copy(ev->delivery, sizeof ev->delivery, delivery);
    if (event && (!strcasecmp(event, "ping") || !strcasecmp(event, "System Hook"))) {
        ev->is_ping = 1;
        return KILN_OK;
    }
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return kiln_fail(err, KILN_EPARSE, "webhook body is not a JSON object (line %d: %s)",
                         jerr.line, jerr.text);
    }
    const char *ref = kiln_json_str(root, "ref");
    json_t *repo = json_object_get(root, forge == KILN_FORGE_GITLAB ? "project" : "repository");
    if (json_object_get(root, "zen") ||
        (forge == KILN_FORGE_GENERIC && event && !strcmp(event, "ping"))) {
        ev->is_ping = 1;
    } else if (!ref || strncmp(ref, "refs/heads/", 11) != 0) {
        /* Tag pushes and other events: verified but nothing to do. */
        ev->is_push = 0;
    } else {
        ev->is_push = 1;
        copy(ev->branch, sizeof ev->branch, ref + 11);
    }
    copy(ev->after, sizeof ev->after,
         kiln_json_str(root, forge == KILN_FORGE_GITLAB ? "checkout_sha" : "after"));
    if (!ev->after[0]) copy(ev->after, sizeof ev->after, kiln_json_str(root, "after"));
    const char *url = NULL;
    if (forge == KILN_FORGE_GITLAB)
        url = kiln_json_str(repo, "git_http_url");
    else
        url = kiln_json_str(repo, "clone_url");
    if (!url) url = kiln_json_str(repo, "url");
    copy(ev->repo_url, sizeof ev->repo_url, url);
    copy(ev->repo_name, sizeof ev->repo_name,
         kiln_json_str(repo, forge == KILN_FORGE_GITLAB ? "path_with_namespace" : "full_name"));
    json_decref(root);
    return KILN_OK;
}
