#include "git/git_serve.h"

#include "common/buf.h"
#include "common/clock.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "common/json_field.h"
#include "state/access.h"
#include "git/gitwatch.h"
#include "state/jobspec.h"
#include "state/submit.h"
#include "git/webhook.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kiln_serve_git {
    struct kiln_server *srv;
    struct kiln_gitwatch *gw;
    char hooks_secret[256];
    char state_path[4200];
    json_t *
        state; /* {"last":{repo_id:{branch:commit}}, "api_repos":[...]} (delivery ids: the store) */
};

/* --- config --- */

/* A string field, or a list of strings joined with commas (branches:
 * [main, "release-1"] reads like branches: "main,release-1"). */
static int str_field(json_t *o, const char *k, char *out, size_t n, int required,
                     struct kiln_error *err)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_array(v)) return kiln_json_field_strcpy(o, k, required, out, n, err);
    struct kiln_buf b = {0};
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e)) {
            kiln_buf_free(&b);
            return kiln_fail(err, KILN_EINVAL, "%s: must list strings", k);
        }
        kiln_buf_printf(&b, "%s%s", i ? "," : "", json_string_value(e));
    }
    int too_long = b.len >= n;
    if (!too_long) snprintf(out, n, "%s", b.data ? b.data : "");
    kiln_buf_free(&b);
    if (too_long) return kiln_fail(err, KILN_ELIMIT, "%s: is too long", k);
    return KILN_OK;
}

static int64_t stable_id(const char *name)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: the id names the mirror dir */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (int64_t)(h & 0x7fffffffffffull) + 1;
}

/* publish: each (default) | release (every tracked branch) |
 * {release: glob or [globs]} (those branches). */
static int parse_publish(json_t *o, struct kiln_repo_conf *c, struct kiln_error *err)
{
    json_t *p = json_object_get(o, "publish");
    if (!p || json_is_null(p)) return KILN_OK;
    const char *s = json_string_value(p);
    if (s && !strcmp(s, "each")) return KILN_OK;
    if (s && !strcmp(s, "release")) {
        snprintf(c->release_branches, sizeof c->release_branches, "*");
        return KILN_OK;
    }
    if (json_is_object(p) && json_object_size(p) == 1 && json_object_get(p, "release"))
        return str_field(p, "release", c->release_branches, sizeof c->release_branches, 1, err);
    return kiln_fail(err, KILN_EINVAL,
                     "repos: publish must be 'each', 'release' or {release: [branch globs]}");
}

static int is_release_branch(const struct kiln_repo_conf *c, const char *branch)
{
    char pats[sizeof c->release_branches];
    snprintf(pats, sizeof pats, "%s", c ? c->release_branches : "");
    char *save = NULL;
    for (char *t = strtok_r(pats, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (fnmatch(t, branch, 0) == 0) return 1;
    return 0;
}

/* A release branch publishes (whatever auto_publish says), per commit. */
static int make_release_job(json_t *job)
{
    json_t *spec = json_object_get(job, "publish");
    spec = json_is_object(spec) ? json_deep_copy(spec) : json_object();
    if (!spec || json_object_set_new(spec, "release", json_true()) ||
        json_object_set_new(job, "publish", spec))
        return KILN_ENOMEM;
    json_t *stages = json_object_get(job, "stages");
    size_t i;
    json_t *st;
    json_array_foreach(stages, i, st) if (!strcmp(json_string_value(st), "publish")) return KILN_OK;
    return json_array_append_new(stages, json_string("publish")) ? KILN_ENOMEM : KILN_OK;
}

int kiln_serve_git_parse_repo(json_t *o, struct kiln_repo_conf *c, struct kiln_error *err)
{
    static const char *const known[] = {"name",    "url",          "branches",      "recipes",
                                        "poll_s",  "auto_publish", "initial_build", "token",
                                        "ssh_key", "secret",       "publish",       NULL};
    memset(c, 0, sizeof *c);
    if (!json_is_object(o))
        return kiln_fail(err, KILN_EINVAL, "repos: each entry must be a mapping");
    int rc = kiln_json_only_keys(o, known, "repos", err);
    if (rc) return rc;
    long long poll_s;
    int auto_publish, initial_build;
    if ((rc = str_field(o, "url", c->url, sizeof c->url, 1, err)) ||
        (rc = str_field(o, "recipes", c->recipes, sizeof c->recipes, 1, err)) ||
        (rc = str_field(o, "name", c->name, sizeof c->name, 0, err)) ||
        (rc = str_field(o, "branches", c->branches, sizeof c->branches, 0, err)) ||
        (rc = str_field(o, "token", c->token, sizeof c->token, 0, err)) ||
        (rc = str_field(o, "ssh_key", c->ssh_key, sizeof c->ssh_key, 0, err)) ||
        (rc = str_field(o, "secret", c->secret, sizeof c->secret, 0, err)) ||
        (rc = kiln_json_field_int(o, "poll_s", 0, 86400, 60, &poll_s, err)) ||
        (rc = kiln_json_field_bool(o, "auto_publish", 0, &auto_publish, err)) ||
        (rc = kiln_json_field_bool(o, "initial_build", 1, &initial_build, err))) {
        char why[KILN_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err ? err->msg : "");
        return kiln_fail(err, rc, "repos: %s", why);
    }
    if (!c->name[0]) snprintf(c->name, sizeof c->name, "%.127s", c->url);
    if (!c->branches[0]) snprintf(c->branches, sizeof c->branches, "*");
    c->poll_s = (int)poll_s; /* 0: webhooks only */
    c->auto_publish = auto_publish;
    c->initial_build = initial_build;
    if ((rc = parse_publish(o, c, err))) return rc;
    c->id = stable_id(c->name);
    return KILN_OK;
}

/* --- state file --- */

static int save_state(struct kiln_serve_git *g)
{
    char *text = json_dumps(g->state, JSON_INDENT(1) | JSON_SORT_KEYS);
    if (!text) return KILN_ENOMEM;
    int rc = kiln_write_file_atomic(g->state_path, text, strlen(text), 0600);
    free(text);
    if (rc)
        kiln_log(&g->srv->log, KILN_LOG_ERROR, "cannot write %s: %s", g->state_path,
                 kiln_strerror(rc));
    return rc;
}

static json_t *last_of(struct kiln_serve_git *g, int64_t id)
{
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)id);
    json_t *last = json_object_get(g->state, "last");
    json_t *r = json_object_get(last, key);
    if (!r) {
        r = json_object();
        json_object_set_new(last, key, r);
    }
    return r;
}

/* --- push -> jobs --- */

static int on_push(void *ctx, const struct kiln_push *p)
{
    struct kiln_serve_git *g = ctx;
    struct kiln_server *s = g->srv;
    if (p->error) {
        kiln_log(&s->log, KILN_LOG_WARN, "repo %s %s@%.12s: %s", p->repo_name, p->branch,
                 p->new_commit, p->error);
        json_object_set_new(last_of(g, p->repo_id), p->branch, json_string(p->new_commit));
        return save_state(g);
    }
    /* The affected variants become jobs under the one dependency rule
     * (state/submit.h): a dependency outside this push resolves to a live
     * job of that name; one kiln is not building is taken as provided
     * (published), so nothing outside the push is pulled in. */
    json_t *batch = json_array(), *jobs = NULL;
    struct kiln_error err = {0};
    int release_branch = is_release_branch(kiln_gitwatch_conf(g->gw, p->repo_id), p->branch);
    int rc = batch ? KILN_OK : KILN_ENOMEM;
    size_t i;
    json_t *v;
    json_array_foreach(p->variants, i, v)
    {
        const char *name = kiln_json_str(v, "name");
        if (!rc && name && json_object_get(p->affected, name)) json_array_append(batch, v);
    }
    struct kiln_submit_plan_opts o = {
        .branch = p->branch, .commit = p->new_commit, .missing_ok = 1};
    if (!rc) rc = kiln_submit_plan(&s->jobs, batch, &o, &jobs, &err);
    json_decref(batch);
    json_array_foreach(rc ? NULL : jobs, i, v)
    {
        /* Workers build the pushed commit itself: they check out source_url
         * at the job's commit (kiln source checkout) instead of running in a
         * fixed source dir. */
        json_t *attrs = json_object_get(v, "attrs");
        if (json_is_object(attrs) && p->repo_url) {
            /* A copy: the job shares the variant's attrs, and the variants
             * are kept to diff the next push against. */
            attrs = json_deep_copy(attrs);
            json_object_set_new(attrs, "source_url", json_string(p->repo_url));
            json_object_set_new(v, "attrs", attrs);
        }
        if (release_branch) {
            if (make_release_job(v)) rc = kiln_fail(&err, KILN_ENOMEM, "out of memory");
        } else if (!p->auto_publish) {
            json_t *stages = json_object_get(v, "stages"), *ns = json_array();
            size_t si;
            json_t *st;
            json_array_foreach(stages, si, st) if (strcmp(json_string_value(st), "publish"))
                json_array_append(ns, st);
            json_object_set_new(v, "stages", ns);
        }
    }
    json_t *ids = NULL;
    if (!rc && json_array_size(jobs))
        rc = kiln_jobs_submit(&s->jobs, jobs, KILN_SUPERSEDE_OWN, kiln_clock_wall(), &ids, &err);
    if (rc) {
        kiln_log(&s->log, KILN_LOG_ERROR, "repo %s %s@%.12s: cannot enqueue: %s", p->repo_name,
                 p->branch, p->new_commit, err.msg);
    } else {
        kiln_log(&s->log, KILN_LOG_INFO, "repo %s %s %.12s..%.12s%s: %zu of %zu variants affected",
                 p->repo_name, p->branch, p->old_commit ? p->old_commit : "(none)", p->new_commit,
                 p->forced ? " (force-push)" : "", json_array_size(jobs),
                 json_array_size(p->variants));
        json_object_set_new(last_of(g, p->repo_id), p->branch, json_string(p->new_commit));
        rc = save_state(g);
        s->m.jobs_submitted += json_array_size(jobs);
        kiln_serve_changed(s);
    }
    json_decref(ids);
    json_decref(jobs);
    return rc;
}

static void on_error(void *ctx, int64_t repo_id, const char *message)
{
    struct kiln_serve_git *g = ctx;
    kiln_log(&g->srv->log, KILN_LOG_WARN, "repo %lld: %s", (long long)repo_id, message);
}

/* --- HTTP --- */

static const char *req_header(void *arg, const char *name)
{
    return kiln_http_req_header(arg, name);
}

/* Replays are caught by the signed content, not only by the delivery id a
 * forge sends beside it (unsigned, so anyone replaying a captured hook can
 * change it): the body's digest and the delivery id are both remembered in
 * the store, which outlives restarts, for HOOK_REPLAY_KEEP_S. None of the
 * supported forges signs a timestamp, so there is no time window to check.
 * Returns KILN_OK for a fresh hook, KILN_EEXIST for a replay. */
#define HOOK_REPLAY_KEEP_S (30 * 86400.0)
static int hook_replayed(struct kiln_server *s, enum kiln_forge forge, const char *delivery,
                         const char *body, size_t len, struct kiln_error *err)
{
    char key[8 + KILN_SHA256_HEX];
    memcpy(key, "sha256:", 7);
    int rc = kiln_sha256_hex(body, len, key + 7);
    if (rc) return kiln_fail(err, rc, "cannot hash the hook body");
    double now = kiln_clock_wall();
    rc =
        kiln_access_delivery_seen(s->st, kiln_forge_name(forge), key, now, HOOK_REPLAY_KEEP_S, err);
    if (!rc && delivery[0])
        rc = kiln_access_delivery_seen(s->st, kiln_forge_name(forge), delivery, now,
                                       HOOK_REPLAY_KEEP_S, err);
    return rc;
}

static void h_hook(struct kiln_server *s, struct kiln_http_req *req, void *ctx)
{
    struct kiln_serve_git *g = ctx;
    const char *path = kiln_http_req_path(req);
    /* The route is a prefix: "/api/v1/hooks" alone names no forge. */
    if (strncmp(path, "/api/v1/hooks/", 14) || !path[14]) {
        kiln_http_respond_error(req, 404, "not_found",
                                "post hooks to /api/v1/hooks/<forge>[/<repository>] (forge: "
                                "github, gitea, forgejo, gitlab, generic)");
        return;
    }
    const char *rest = path + strlen("/api/v1/hooks/");
    char forge_s[32] = "", repo_name[256] = "";
    const char *slash = strchr(rest, '/');
    snprintf(forge_s, sizeof forge_s, "%.*s", (int)(slash ? slash - rest : (long)strlen(rest)),
             rest);
    if (slash) snprintf(repo_name, sizeof repo_name, "%s", slash + 1);
    enum kiln_forge forge;
    if (kiln_forge_parse(forge_s, &forge)) {
        kiln_http_respond_error(
            req, 404, "not_found",
            "unknown webhook kind '%s' (github, gitea, forgejo, gitlab, generic)", forge_s);
        return;
    }
    int64_t by_path = repo_name[0] ? kiln_gitwatch_match(g->gw, NULL, repo_name) : 0;
    if (repo_name[0] && !by_path) {
        kiln_http_respond_error(req, 404, "not_found", "no tracked repository named '%s'",
                                repo_name);
        return;
    }
    const struct kiln_repo_conf *pc = by_path ? kiln_gitwatch_conf(g->gw, by_path) : NULL;
    const char *secret = pc && pc->secret[0] ? pc->secret : g->hooks_secret;
    size_t len = 0;
    const char *body = kiln_http_req_body(req, &len);
    struct kiln_webhook_event ev;
    struct kiln_error err = {0};
    int rc = kiln_webhook_parse(forge, secret, req_header, req, body ? body : "", len, &ev, &err);
    if (rc) {
        s->m.auth_failures += rc == KILN_EAUTH;
        kiln_http_respond_error(req, kiln_err_http_status(rc), kiln_code_name(rc), "%s", err.msg);
        return;
    }
    int64_t id = by_path ? by_path : kiln_gitwatch_match(g->gw, ev.repo_url, ev.repo_name);
    const struct kiln_repo_conf *mc = id && !by_path ? kiln_gitwatch_conf(g->gw, id) : NULL;
    if (mc && mc->secret[0]) {
        /* Verified with the global secret only: a repository with its own
         * secret is checked against that one alone. */
        s->m.auth_failures++;
        kiln_http_respond_error(req, 401, "unauthorized",
                                "repository %s has its own secret; send its hooks to "
                                "/api/v1/hooks/%s/<its name>",
                                ev.repo_name[0] ? ev.repo_name : ev.repo_url, forge_s);
        return;
    }
    rc = hook_replayed(s, forge, ev.delivery, body ? body : "", len, &err);
    if (rc == KILN_EEXIST) {
        kiln_http_respond_json(req, 200,
                               json_pack("{s:b,s:s}", "duplicate", 1, "delivery", ev.delivery));
        return;
    }
    if (rc) {
        kiln_http_respond_error(req, kiln_err_http_status(rc), kiln_code_name(rc), "%s", err.msg);
        return;
    }
    if (ev.is_ping || !ev.is_push) {
        kiln_http_respond_json(req, 200, json_pack("{s:b}", "ok", 1));
        return;
    }
    if (!id) {
        kiln_http_respond_error(req, 404, "not_found", "the pushed repository (%s) is not tracked",
                                ev.repo_url[0] ? ev.repo_url : ev.repo_name);
        return;
    }
    /* The payload's commit is a hint only: the watcher fetches and resolves. */
    kiln_gitwatch_trigger(g->gw, id);
    kiln_http_respond_json(req, 202,
                           json_pack("{s:I,s:s}", "repo", (json_int_t)id, "branch", ev.branch));
}

static void h_repos_get(struct kiln_server *s, struct kiln_http_req *req, void *ctx)
{
    struct kiln_serve_git *g = ctx;
    (void)s;
    const char *path = kiln_http_req_path(req);
    if (strcmp(path, "/api/v1/repos") && strcmp(path, "/api/v1/repos/")) {
        kiln_http_respond_error(req, 404, "not_found", "no such resource %s", path);
        return;
    }
    kiln_http_respond_json(req, 200, kiln_gitwatch_status(g->gw));
}

static void h_repos_post(struct kiln_server *s, struct kiln_http_req *req, void *ctx)
{
    struct kiln_serve_git *g = ctx;
    const char *path = kiln_http_req_path(req);
    long long id = 0;
    char tail[16] = "";
    if (sscanf(path, "/api/v1/repos/%lld/%15s", &id, tail) == 2 && !strcmp(tail, "fetch")) {
        if (kiln_gitwatch_trigger(g->gw, id)) {
            kiln_http_respond_error(req, 404, "not_found", "repository %lld is not tracked", id);
            return;
        }
        kiln_http_respond_json(req, 202, json_pack("{s:I}", "repo", (json_int_t)id));
        return;
    }
    if (strcmp(path, "/api/v1/repos")) {
        kiln_http_respond_error(req, 404, "not_found", "no such resource %s", path);
        return;
    }
    size_t len = 0;
    const char *body = kiln_http_req_body(req, &len);
    json_error_t jerr;
    json_t *o = json_loadb(body ? body : "", len, 0, &jerr);
    struct kiln_repo_conf conf;
    struct kiln_error err = {0};
    int rc = o ? kiln_serve_git_parse_repo(o, &conf, &err)
               : kiln_fail(&err, KILN_EPARSE, "body is not JSON: %s", jerr.text);
    if (!rc) rc = kiln_gitwatch_add(g->gw, &conf, NULL, &err);
    if (!rc) {
        json_array_append(json_object_get(g->state, "api_repos"), o);
        rc = save_state(g);
        if (rc) kiln_fail(&err, rc, "cannot record the repository");
    }
    json_decref(o);
    if (rc) {
        kiln_http_respond_error(req, kiln_err_http_status(rc), kiln_code_name(rc), "%s", err.msg);
        return;
    }
    kiln_http_respond_json(req, 201,
                           json_pack("{s:I,s:s}", "id", (json_int_t)conf.id, "name", conf.name));
}

static void git_stop(struct kiln_serve_git *g);

static int git_init(struct kiln_server *s, json_t *config, struct kiln_serve_git **out,
                    struct kiln_error *err)
{
    struct kiln_serve_git *g = calloc(1, sizeof *g);
    if (!g) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    g->srv = s;
    json_t *hooks = json_object_get(config, "hooks");
    const char *sec = json_string_value(json_object_get(hooks, "secret"));
    if (sec) snprintf(g->hooks_secret, sizeof g->hooks_secret, "%s", sec);
    snprintf(g->state_path, sizeof g->state_path, "%s/git/state.json", s->cfg.data_dir);
    int rc = KILN_OK;
    struct kiln_buf text = {0};
    if (kiln_read_file(g->state_path, 64u << 20, &text) == KILN_OK)
        g->state = json_loadb(text.data, text.len, 0, NULL);
    kiln_buf_free(&text);
    if (!json_is_object(g->state)) {
        json_decref(g->state);
        g->state = json_object();
    }
    static const char *parts[] = {"last", "api_repos"};
    for (int i = 0; i < 2; i++)
        if (!json_object_get(g->state, parts[i]))
            json_object_set_new(g->state, parts[i], i == 0 ? json_object() : json_array());
    struct kiln_gitwatch_callbacks cb = {.on_push = on_push, .on_error = on_error, .ctx = g};
    if ((rc = kiln_gitwatch_start(s->loop, s->cfg.data_dir, cb, &g->gw))) {
        json_decref(g->state);
        free(g);
        return kiln_fail(err, rc, "cannot start the git watcher");
    }
    json_t *lists[2] = {json_object_get(config, "repos"), json_object_get(g->state, "api_repos")};
    for (int l = 0; l < 2 && !rc; l++) {
        if (lists[l] && !json_is_array(lists[l])) {
            rc = kiln_fail(err, KILN_EINVAL, "config: repos must be a list of repositories");
            break;
        }
        size_t i;
        json_t *o;
        json_array_foreach(lists[l], i, o)
        {
            struct kiln_repo_conf conf;
            if ((rc = kiln_serve_git_parse_repo(o, &conf, err))) break;
            if (kiln_gitwatch_conf(g->gw, conf.id)) continue; /* listed in both */
            if ((rc = kiln_gitwatch_add(g->gw, &conf, last_of(g, conf.id), err))) break;
        }
    }
    if (!rc) rc = kiln_serve_add_route(s, "POST", "/api/v1/hooks", KILN_ROLE_NONE, h_hook, g);
    if (!rc) rc = kiln_serve_add_route(s, "GET", "/api/v1/repos", KILN_ROLE_READ, h_repos_get, g);
    if (!rc)
        rc = kiln_serve_add_route(s, "POST", "/api/v1/repos", KILN_ROLE_ADMIN, h_repos_post, g);
    if (rc) {
        git_stop(g);
        return rc;
    }
    *out = g;
    return KILN_OK;
}

static void git_stop(struct kiln_serve_git *g)
{
    if (!g) return;
    kiln_gitwatch_stop(g->gw);
    json_decref(g->state);
    free(g);
}

static int feature_init(struct kiln_server *srv, json_t *config, void **state,
                        struct kiln_error *err)
{
    struct kiln_serve_git *g = NULL;
    int rc = git_init(srv, config, &g, err);
    *state = g;
    return rc;
}

static void feature_stop(struct kiln_server *srv, void *state)
{
    (void)srv;
    git_stop(state);
}

static const char *const sections[] = {"repos", "hooks", NULL};

/* Stopped (watcher closed, state freed) before the loop ends: nothing is
 * left for cleanup. */
const struct kiln_serve_feature kiln_git_feature = {
    .name = "git",
    .config_sections = sections,
    .init = feature_init,
    .stop = feature_stop,
    .cleanup = NULL,
};
