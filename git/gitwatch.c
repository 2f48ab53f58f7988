#include "git/gitwatch.h"

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/spawn.h"
#include "recipes/recipe.h"
#include "git/affected.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct repo {
    struct kiln_repo_conf conf;
    struct kiln_gitwatch *gw;
    json_t *last_seen; /* {"branch": "commit"} */
    json_t *cache;     /* {"branch": {"commit": c, "variants": [...]}}: last expansion */
    char last_error[700];
    uv_timer_t timer;
    int timer_on;
    int fetching;
    int again;        /* a trigger arrived during a fetch */
    int removed;      /* free once the fetch in flight ends */
    int timer_closed; /* uv_close of the timer completed */
    struct repo *next;
};

struct kiln_gitwatch {
    uv_loop_t *loop;
    char data_dir[1024];
    struct kiln_gitwatch_callbacks cb;
    struct repo *repos;
    int stopping;
    int pending; /* fetches in flight */
};

struct scan {
    uv_work_t req;
    struct repo *r;
    struct kiln_repo_conf conf; /* copy: the loop may change the repo meanwhile */
    json_t *last;               /* copy of last_seen */
    json_t *cache;              /* r->cache, read-only here (incref'd) */
    json_t *results;            /* array of push objects */
    char error[600];
    char mirror[1100];
};

int kiln_branch_matches(const char *patterns, const char *branch)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", patterns);
    char *save = NULL;
    for (char *p = strtok_r(buf, ", ", &save); p; p = strtok_r(NULL, ", ", &save))
        if (fnmatch(p, branch, 0) == 0) return 1;
    return 0;
}

static int safe_relpath(const char *p)
{
    if (!*p || p[0] == '/') return 0;
    for (const char *s = p; *s;) {
        size_t n = strcspn(s, "/");
        if ((n == 2 && !strncmp(s, "..", 2)) || n == 0) return 0;
        s += n;
        if (*s == '/') s++;
    }
    return 1;
}

static int write_one(const char *mirror, const char *commit, const char *rel, const char *dir,
                     struct kiln_error *err)
{
    struct kiln_buf text = {0};
    int rc = kiln_git_read_file(mirror, commit, rel, KILN_RECIPE_MAX_BYTES, &text, err);
    char path[2048];
    if (!rc) rc = kiln_path_join(path, sizeof path, dir, rel);
    if (!rc) {
        char parent[2048];
        snprintf(parent, sizeof parent, "%s", path);
        char *slash = strrchr(parent, '/');
        if (slash) *slash = '\0';
        rc = kiln_mkdir_p(parent, 0755);
        /* A scratch copy for one analysis: no fsync needed. */
        FILE *f = rc ? NULL : fopen(path, "w");
        if (!f || (text.len && fwrite(text.data, 1, text.len, f) != text.len)) rc = KILN_EIO;
        if (f && fclose(f) != 0) rc = KILN_EIO;
        if (rc) kiln_fail(err, rc, "cannot write %s", path);
    }
    kiln_buf_free(&text);
    return rc;
}

static int is_yaml(const char *n)
{
    size_t l = strlen(n);
    return (l > 5 && !strcmp(n + l - 5, ".yaml")) || (l > 4 && !strcmp(n + l - 4, ".yml"));
}

/* Write the configured recipe files of one commit into dir, preserving
 * their relative paths, together with the other recipes beside them, so
 * cross-recipe dependencies ("recipe: pytorch") resolve there. */
static int materialize(const char *mirror, const char *commit, const char *recipes, const char *dir,
                       struct kiln_error *err)
{
    char list[1024];
    snprintf(list, sizeof list, "%s", recipes);
    char *save = NULL;
    for (char *p = strtok_r(list, ", ", &save); p; p = strtok_r(NULL, ", ", &save)) {
        if (!safe_relpath(p))
            return kiln_fail(err, KILN_EINVAL, "recipe path '%s' must be relative, without '..'",
                             p);
        int rc = write_one(mirror, commit, p, dir, err);
        if (rc) return rc;
        char parent[1024];
        snprintf(parent, sizeof parent, "%s", p);
        char *slash = strrchr(parent, '/');
        if (slash)
            *slash = '\0';
        else
            parent[0] = '\0';
        json_t *names = NULL;
        if ((rc = kiln_git_list_dir(mirror, commit, parent, &names, err))) return rc;
        size_t i;
        json_t *n;
        json_array_foreach(names, i, n)
        {
            const char *name = json_string_value(n);
            char rel[2048];
            if (!is_yaml(name)) continue;
            snprintf(rel, sizeof rel, "%s%s%s", parent, parent[0] ? "/" : "", name);
            if (!strcmp(rel, p)) continue;
            if ((rc = write_one(mirror, commit, rel, dir, err))) break;
        }
        json_decref(names);
        if (rc) return rc;
    }
    return KILN_OK;
}

static int expand_all(const char *dir, const char *recipes, const char *branch, json_t **out,
                      struct kiln_error *err)
{
    json_t *all = json_array();
    if (!all) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    char list[1024];
    snprintf(list, sizeof list, "%s", recipes);
    char *save = NULL;
    int rc = KILN_OK;
    for (char *p = strtok_r(list, ", ", &save); p && !rc; p = strtok_r(NULL, ", ", &save)) {
        char path[2048];
        json_t *v = NULL;
        rc = kiln_path_join(path, sizeof path, dir, p);
        if (!rc) rc = kiln_recipe_expand_file(path, branch, NULL, &v, err);
        if (!rc && json_array_extend(all, v)) rc = KILN_ENOMEM;
        json_decref(v);
    }
    if (rc) {
        json_decref(all);
        return rc;
    }
    *out = all;
    return KILN_OK;
}

static void rm_rf(const char *dir)
{
    /* Only ever called on directories this module created under DATA/git/tmp;
     * best effort: a leftover tmp dir is cleaned next time. */
    char *argv[] = {"rm", "-rf", "--", (char *)dir, NULL};
    struct kiln_spawn_spec sp = {
        .argv = argv, .out_fd = KILN_SPAWN_NULL, .err_fd = KILN_SPAWN_NULL};
    struct kiln_spawn_result r;
    (void)kiln_spawn_run(&sp, 60000, &r, NULL);
}

static int expand_at(struct scan *s, const char *commit, const char *branch, json_t **out,
                     struct kiln_error *err)
{
    char dir[1300];
    snprintf(dir, sizeof dir, "%s.tmp-%.12s-%ld", s->mirror, commit, (long)getpid());
    int rc = materialize(s->mirror, commit, s->conf.recipes, dir, err);
    if (!rc) rc = expand_all(dir, s->conf.recipes, branch, out, err);
    rm_rf(dir);
    return rc;
}

static void analyse_branch(struct scan *s, const char *branch, const char *new_commit)
{
    const char *old = json_string_value(json_object_get(s->last, branch));
    struct kiln_error err = {0};
    json_t *push = json_pack("{s:s,s:s}", "branch", branch, "new", new_commit);
    if (!push) return;
    if (old) json_object_set_new(push, "old", json_string(old));
    json_t *vars = NULL, *old_vars = NULL, *changed = NULL, *affected = NULL;
    int rc = expand_at(s, new_commit, branch, &vars, &err);
    if (!rc && old && kiln_git_has_commit(s->mirror, old)) {
        struct kiln_error e2;
        /* The previous analysis of this branch usually expanded old already. */
        json_t *c = json_object_get(s->cache, branch);
        const char *cc = json_string_value(json_object_get(c, "commit"));
        if (cc && !strcmp(cc, old))
            old_vars = json_incref(json_object_get(c, "variants"));
        else if (expand_at(s, old, branch, &old_vars, &e2) != KILN_OK)
            old_vars = NULL; /* all new */
        int anc = kiln_git_is_ancestor(s->mirror, old, new_commit, &e2);
        json_object_set_new(push, "forced", json_boolean(anc == 0));
        rc = kiln_git_changed_files(s->mirror, old, new_commit, &changed, &err);
    } else if (!rc && old) {
        json_object_set_new(push, "forced", json_true()); /* old commit is gone */
    }
    if (!rc && !changed) changed = json_array();
    if (!rc) {
        if (!old && !s->conf.initial_build)
            affected = json_object();
        else
            rc = kiln_affected(old_vars, vars, changed, &affected, &err);
    }
    if (rc) {
        json_object_set_new(push, "error", json_string(err.msg));
    } else {
        json_object_set_new(push, "variants", vars);
        json_object_set_new(push, "affected", affected);
        json_object_set_new(push, "changed", changed);
        vars = changed = NULL;
    }
    json_decref(vars);
    json_decref(changed);
    json_decref(old_vars);
    json_array_append_new(s->results, push);
}

static void scan_work(uv_work_t *req)
{
    struct scan *s = req->data;
    struct kiln_error err = {0};
    struct kiln_git_cred cred = {
        .token = s->conf.token[0] ? s->conf.token : NULL,
        .ssh_key = s->conf.ssh_key[0] ? s->conf.ssh_key : NULL,
    };
    if (kiln_git_fetch(s->mirror, s->conf.url, &cred, &err)) {
        snprintf(s->error, sizeof s->error, "%s", err.msg);
        return;
    }
    json_t *branches = NULL;
    if (kiln_git_branches(s->mirror, &branches, &err)) {
        snprintf(s->error, sizeof s->error, "%s", err.msg);
        return;
    }
    const char *b;
    json_t *oid;
    json_object_foreach(branches, b, oid)
    {
        if (!kiln_branch_matches(s->conf.branches, b)) continue;
        const char *old = json_string_value(json_object_get(s->last, b));
        if (old && !strcmp(old, json_string_value(oid))) continue;
        analyse_branch(s, b, json_string_value(oid));
    }
    json_decref(branches);
}

static void schedule(struct repo *r);

static void free_repo(struct repo *r)
{
    json_decref(r->cache);
    json_decref(r->last_seen);
    free(r);
}

static void timer_closed(uv_handle_t *h)
{
    struct repo *r = h->data;
    r->timer_closed = 1;
    if (!r->fetching) free_repo(r);
}

static void maybe_free_watcher(struct kiln_gitwatch *gw)
{
    if (gw->stopping && gw->pending == 0) {
        kiln_git_shutdown();
        free(gw);
    }
}

static void scan_done(uv_work_t *req, int status)
{
    struct scan *s = req->data;
    struct repo *r = s->r;
    struct kiln_gitwatch *gw = r->gw;
    r->fetching = 0;
    gw->pending--;
    if (r->removed) {
        if (r->timer_closed) free_repo(r);
        json_decref(s->cache);
        json_decref(s->last);
        json_decref(s->results);
        free(s);
        maybe_free_watcher(gw);
        return;
    }
    if (status == UV_ECANCELED) goto out;
    r->last_error[0] = '\0';
    if (s->error[0]) {
        snprintf(r->last_error, sizeof r->last_error, "%s", s->error);
        if (gw->cb.on_error) gw->cb.on_error(gw->cb.ctx, r->conf.id, s->error);
    }
    size_t i;
    json_t *p;
    json_array_foreach(s->results, i, p)
    {
        struct kiln_push push = {
            .repo_id = r->conf.id,
            .repo_name = r->conf.name,
            .repo_url = r->conf.url,
            .branch = json_string_value(json_object_get(p, "branch")),
            .old_commit = json_string_value(json_object_get(p, "old")),
            .new_commit = json_string_value(json_object_get(p, "new")),
            .forced = json_is_true(json_object_get(p, "forced")),
            .auto_publish = r->conf.auto_publish,
            .variants = json_object_get(p, "variants"),
            .affected = json_object_get(p, "affected"),
            .changed_files = json_object_get(p, "changed"),
            .error = json_string_value(json_object_get(p, "error")),
        };
        if (push.error) {
            snprintf(r->last_error, sizeof r->last_error, "%s@%.12s: %s", push.branch,
                     push.new_commit, push.error);
            if (gw->cb.on_error) gw->cb.on_error(gw->cb.ctx, r->conf.id, r->last_error);
        }
        int rc = gw->cb.on_push ? gw->cb.on_push(gw->cb.ctx, &push) : 0;
        /* A broken recipe at a commit is acted on (reported) once, not retried forever. */
        if (rc == 0) json_object_set_new(r->last_seen, push.branch, json_string(push.new_commit));
        if (rc == 0 && push.variants)
            json_object_set_new(
                r->cache, push.branch,
                json_pack("{s:s,s:O}", "commit", push.new_commit, "variants", push.variants));
    }
    if (r->again && !gw->stopping) {
        r->again = 0;
        schedule(r);
    }
out:
    json_decref(s->cache);
    json_decref(s->last);
    json_decref(s->results);
    free(s);
}

static void schedule(struct repo *r)
{
    struct kiln_gitwatch *gw = r->gw;
    if (gw->stopping || r->removed) return;
    if (r->fetching) {
        r->again = 1;
        return;
    }
    struct scan *s = calloc(1, sizeof *s);
    if (!s) return;
    s->r = r;
    s->conf = r->conf;
    s->last = json_deep_copy(r->last_seen);
    /* Shared, not copied: the loop only replaces entries after this scan ends. */
    s->cache = json_incref(r->cache);
    s->results = json_array();
    snprintf(s->mirror, sizeof s->mirror, "%s/git/%lld.git", gw->data_dir, (long long)r->conf.id);
    s->req.data = s;
    if (!s->last || !s->results || uv_queue_work(gw->loop, &s->req, scan_work, scan_done) != 0) {
        json_decref(s->cache);
        json_decref(s->last);
        json_decref(s->results);
        free(s);
        return;
    }
    r->fetching = 1;
    gw->pending++;
}

static void on_timer(uv_timer_t *t)
{
    schedule(t->data);
}

int kiln_gitwatch_start(uv_loop_t *loop, const char *data_dir, struct kiln_gitwatch_callbacks cb,
                        struct kiln_gitwatch **out)
{
    struct kiln_gitwatch *gw = calloc(1, sizeof *gw);
    if (!gw) return KILN_ENOMEM;
    gw->loop = loop;
    gw->cb = cb;
    snprintf(gw->data_dir, sizeof gw->data_dir, "%s", data_dir);
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/git", data_dir);
    int rc = kiln_mkdir_p(dir, 0755);
    if (!rc) rc = kiln_git_init();
    if (rc) {
        free(gw);
        return rc;
    }
    *out = gw;
    return KILN_OK;
}

static struct repo *find(struct kiln_gitwatch *gw, int64_t id)
{
    for (struct repo *r = gw->repos; r; r = r->next)
        if (r->conf.id == id) return r;
    return NULL;
}

int kiln_gitwatch_add(struct kiln_gitwatch *gw, const struct kiln_repo_conf *conf,
                      json_t *last_seen, struct kiln_error *err)
{
    if (find(gw, conf->id))
        return kiln_fail(err, KILN_EEXIST, "repository %lld is already tracked",
                         (long long)conf->id);
    if (!conf->url[0]) return kiln_fail(err, KILN_EINVAL, "repository needs a url");
    if (!conf->recipes[0])
        return kiln_fail(err, KILN_EINVAL, "repository needs at least one recipe path");
    struct repo *r = calloc(1, sizeof *r);
    if (!r) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    r->conf = *conf;
    if (!r->conf.branches[0]) snprintf(r->conf.branches, sizeof r->conf.branches, "*");
    r->gw = gw;
    r->last_seen = last_seen ? json_deep_copy(last_seen) : json_object();
    r->cache = json_object();
    if (!r->last_seen || !r->cache || uv_timer_init(gw->loop, &r->timer) != 0) {
        json_decref(r->cache);
        json_decref(r->last_seen);
        free(r);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    r->timer.data = r;
    r->timer_on = 1;
    uint64_t every = (uint64_t)(conf->poll_s > 0 ? conf->poll_s : 0) * 1000;
    uv_timer_start(&r->timer, on_timer, 0, every); /* first scan now */
    r->next = gw->repos;
    gw->repos = r;
    return KILN_OK;
}

int kiln_gitwatch_remove(struct kiln_gitwatch *gw, int64_t repo_id)
{
    for (struct repo **pp = &gw->repos; *pp; pp = &(*pp)->next) {
        struct repo *r = *pp;
        if (r->conf.id != repo_id) continue;
        *pp = r->next;
        r->removed = 1;
        r->timer_on = 0;
        uv_close((uv_handle_t *)&r->timer, timer_closed);
        return KILN_OK;
    }
    return KILN_ENOTFOUND;
}

int kiln_gitwatch_trigger(struct kiln_gitwatch *gw, int64_t repo_id)
{
    struct repo *r = find(gw, repo_id);
    if (!r) return KILN_ENOTFOUND;
    schedule(r);
    return KILN_OK;
}

/* "https://user@host/o/r.git/" -> "host/o/r" */
static void norm_url(const char *in, char *out, size_t n)
{
    const char *p = strstr(in, "://");
    p = p ? p + 3 : in;
    const char *at = strchr(p, '@');
    const char *slash = strchr(p, '/');
    if (at && (!slash || at < slash)) p = at + 1;
    snprintf(out, n, "%s", p);
    size_t l = strlen(out);
    while (l && out[l - 1] == '/')
        out[--l] = '\0';
    if (l > 4 && !strcmp(out + l - 4, ".git")) out[l - 4] = '\0';
    for (char *c = out; *c; c++)
        if (*c == ':') *c = '/'; /* git@host:o/r */
}

int64_t kiln_gitwatch_match(struct kiln_gitwatch *gw, const char *url, const char *name)
{
    char a[1100], b[1100];
    if (url && *url) norm_url(url, a, sizeof a);
    for (struct repo *r = gw->repos; r; r = r->next) {
        if (url && *url) {
            norm_url(r->conf.url, b, sizeof b);
            if (!strcmp(a, b)) return r->conf.id;
        }
        if (name && *name && !strcmp(name, r->conf.name)) return r->conf.id;
    }
    return 0;
}

const struct kiln_repo_conf *kiln_gitwatch_conf(struct kiln_gitwatch *gw, int64_t repo_id)
{
    struct repo *r = find(gw, repo_id);
    return r ? &r->conf : NULL;
}

json_t *kiln_gitwatch_status(struct kiln_gitwatch *gw)
{
    json_t *arr = json_array();
    for (struct repo *r = gw->repos; arr && r; r = r->next) {
        json_array_append_new(
            arr,
            json_pack("{s:I,s:s,s:s,s:s,s:s,s:i,s:b,s:O,s:s?,s:b}", "id", (json_int_t)r->conf.id,
                      "name", r->conf.name, "url", r->conf.url, "branches", r->conf.branches,
                      "recipes", r->conf.recipes, "poll_s", r->conf.poll_s, "auto_publish",
                      r->conf.auto_publish, "last_seen", r->last_seen, "last_error",
                      r->last_error[0] ? r->last_error : NULL, "fetching", r->fetching));
    }
    return json_pack("{s:o}", "repos", arr ? arr : json_array());
}

void kiln_gitwatch_stop(struct kiln_gitwatch *gw)
{
    if (!gw) return;
    gw->stopping = 1;
    while (gw->repos)
        kiln_gitwatch_remove(gw, gw->repos->conf.id);
    /* Fetches in flight finish on their own (libgit2 cannot be interrupted);
     * the last one's done callback frees the watcher. */
    maybe_free_watcher(gw);
}
