#include "common/httpc.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kiln_httpc_init(struct kiln_httpc *c, const char *base_url, const char *token)
{
    memset(c, 0, sizeof *c);
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/')
        n--;
    if (n == 0 || n >= sizeof c->base_url) return KILN_EINVAL;
    memcpy(c->base_url, base_url, n);
    c->base_url[n] = '\0';
    if (token) {
        if (strlen(token) >= sizeof c->token) return KILN_EINVAL;
        strcpy(c->token, token);
    }
    c->connect_timeout_ms = 5000;
    c->timeout_ms = 30000;
    c->max_body = 64u << 20;
    /* curl_global_init is done lazily by curl_easy_init (thread-safe since
     * libcurl 7.84 when built with threadsafe init, which Debian's is). */
    c->curl = curl_easy_init();
    return c->curl ? KILN_OK : KILN_ENOMEM;
}

void kiln_httpc_cleanup(struct kiln_httpc *c)
{
    if (c->curl) curl_easy_cleanup(c->curl);
    c->curl = NULL;
}

void kiln_httpc_resp_free(struct kiln_httpc_resp *resp)
{
    kiln_buf_free(&resp->body);
}

struct sink {
    struct kiln_buf *buf;
    int (*on_data)(const char *, size_t, void *);
    void *arg;
    int overflow;
};

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    struct sink *s = ud;
    size_t n = size * nmemb;
    if (s->on_data) return s->on_data(p, n, s->arg) ? 0 : n;
    if (kiln_buf_append(s->buf, p, n) != KILN_OK) {
        s->overflow = 1;
        return 0;
    }
    return n;
}

static int map_curl_error(CURLcode cc, const char *url, const char *detail, struct kiln_error *err)
{
    int code = cc == CURLE_OPERATION_TIMEDOUT ? KILN_ETIMEOUT : KILN_ENET;
    return kiln_fail(err, code, "cannot reach %s: %s", url,
                     detail && *detail ? detail : curl_easy_strerror(cc));
}

static int perform(struct kiln_httpc *c, const char *method, const char *path,
                   const char *content_type, const void *body, size_t len, long timeout_ms,
                   struct sink *sink, long *status, char *ctype, size_t ctlen,
                   struct kiln_error *err)
{
    CURL *h = c->curl;
    if (!h) return kiln_fail(err, KILN_EINVAL, "http client not initialised");
    char url[2048];
    if (snprintf(url, sizeof url, "%s%s", c->base_url, path) >= (int)sizeof url)
        return kiln_fail(err, KILN_EINVAL, "URL too long");
    curl_easy_reset(h);
    struct curl_slist *hdrs = NULL, *tmp;
    char line[256];
    char errbuf[CURL_ERROR_SIZE];
    errbuf[0] = '\0';
    int rc = KILN_OK;
    if (c->token[0]) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", c->token);
        if (!(tmp = curl_slist_append(hdrs, line))) goto nomem;
        hdrs = tmp;
    }
    if (content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", content_type);
        if (!(tmp = curl_slist_append(hdrs, line))) goto nomem;
        hdrs = tmp;
    }
    /* No "Expect: 100-continue" round trip for uploads. */
    if (!(tmp = curl_slist_append(hdrs, "Expect:"))) goto nomem;
    hdrs = tmp;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                     timeout_ms < 0 ? 0L : (timeout_ms ? timeout_ms : c->timeout_ms));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
    if (c->ca_file[0]) curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    if (!strcmp(method, "GET")) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(method, "HEAD")) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? (const char *)body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
    }
    CURLcode cc = curl_easy_perform(h);
    if (sink->overflow) {
        rc =
            kiln_fail(err, KILN_ELIMIT, "response from %s larger than %zu bytes", url, c->max_body);
    } else if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && sink->on_data)) {
        rc = map_curl_error(cc, url, errbuf, err);
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
        if (ctype && ctlen) {
            char *ct = NULL;
            curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
            snprintf(ctype, ctlen, "%s", ct ? ct : "");
        }
    }
    curl_slist_free_all(hdrs);
    return rc;
nomem:
    curl_slist_free_all(hdrs);
    return kiln_fail(err, KILN_ENOMEM, "out of memory");
}

int kiln_httpc_request(struct kiln_httpc *c, const char *method, const char *path,
                       const char *content_type, const void *body, size_t len, long timeout_ms,
                       struct kiln_httpc_resp *resp, struct kiln_error *err)
{
    resp->body.max = c->max_body;
    struct sink s = {.buf = &resp->body};
    int rc = perform(c, method, path, content_type, body, len, timeout_ms, &s, &resp->status,
                     resp->content_type, sizeof resp->content_type, err);
    if (!rc && !resp->body.data) rc = kiln_buf_append(&resp->body, "", 0);
    return rc;
}

int kiln_httpc_json(struct kiln_httpc *c, const char *method, const char *path, json_t *body,
                    long timeout_ms, long *status, json_t **out, struct kiln_error *err)
{
    char *text = NULL;
    if (body && !(text = json_dumps(body, JSON_COMPACT)))
        return kiln_fail(err, KILN_ENOMEM, "cannot serialize request");
    struct kiln_httpc_resp resp = {0};
    int rc = kiln_httpc_request(c, method, path, text ? "application/json" : NULL, text,
                                text ? strlen(text) : 0, timeout_ms, &resp, err);
    free(text);
    if (out) *out = NULL;
    if (!rc) {
        *status = resp.status;
        if (out && resp.body.len) *out = json_loadb(resp.body.data, resp.body.len, 0, NULL);
    }
    kiln_httpc_resp_free(&resp);
    return rc;
}

int kiln_httpc_stream(struct kiln_httpc *c, const char *path,
                      int (*on_data)(const char *p, size_t n, void *arg), void *arg, long *status,
                      struct kiln_error *err)
{
    struct sink s = {.on_data = on_data, .arg = arg};
    return perform(c, "GET", path, NULL, NULL, 0, -1, &s, status, NULL, 0, err);
}

const char *kiln_httpc_error_message(json_t *obj, long status)
{
    json_t *e = obj ? json_object_get(obj, "error") : NULL;
    const char *m = e ? json_string_value(json_object_get(e, "message")) : NULL;
    if (m) return m;
    switch (status) {
    case 401:
        return "unauthorized: missing or invalid token (set KILN_TOKEN or --token)";
    case 403:
        return "forbidden: this token's role may not do that";
    case 404:
        return "not found";
    case 409:
        return "conflict with the current state";
    default:
        return status >= 500 ? "server error" : "request failed";
    }
}
