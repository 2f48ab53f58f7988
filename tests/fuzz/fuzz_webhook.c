/* libFuzzer target: webhook bodies and signature headers. The first byte
 * picks the forge; the signature is computed over the rest so the JSON
 * parsing path is reached, and a second pass uses a broken signature. */
#include "git/webhook.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

struct h {
    const char *sig_name;
    char sig[128];
};

static const char *hget(void *arg, const char *name)
{
    struct h *h = arg;
    if (!strcasecmp(name, h->sig_name)) return h->sig;
    if (strstr(name, "Event")) return "push";
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const char *names[] = {"X-Hub-Signature-256", "X-Gitea-Signature", "X-Gitlab-Token",
                                  "X-Kiln-Signature"};
    enum kiln_forge f = (enum kiln_forge)(data[0] % 4);
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct h h = {names[f], ""};
    struct kiln_webhook_event ev;
    struct kiln_error err;
    if (kiln_webhook_sign(f, "secret", body, len, h.sig, sizeof h.sig) == KILN_OK)
        kiln_webhook_parse(f, "secret", hget, &h, body, len, &ev, &err);
    h.sig[0] ^= 1;
    kiln_webhook_parse(f, "secret", hget, &h, body, len, &ev, &err);
    return 0;
}
