/* gitwatch.h - watch tracked git repositories and say what a push affects.
 *
 * Contract:
 * - The watcher keeps, per tracked repository, a bare mirror under
 *   DATA/git/<id>.git, a poll timer (poll_s; 0 = webhooks only) and the last
 *   commit it acted on per branch. kiln_gitwatch_trigger() (a webhook) makes
 *   it fetch now. At most one fetch per repository runs at a time; a trigger
 *   during a fetch runs one more fetch afterwards, so no push is missed.
 * - Fetching and analysing run in the libuv thread pool (libgit2 blocks);
 *   callbacks run on the loop thread.
 * - For every branch matching the patterns whose head moved, the watcher
 *   reads the recipe files from the new commit's tree (no checkout), expands
 *   them for that branch, compares with the old commit's expansion and the
 *   changed files (kiln_affected) and calls on_push with the result. A
 *   force-push (old head not an ancestor of the new) is flagged and still
 *   diffed tree-to-tree. The payload of a webhook is never trusted: only
 *   what the fetch brought counts.
 * - on_push returns 0 when it has durably recorded the new head (the
 *   watcher then remembers it); non-zero makes the watcher retry next time.
 */
#ifndef KILN_GITWATCH_H
#define KILN_GITWATCH_H

#include "common/err.h"
#include "git/gitrepo.h"

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

struct kiln_gitwatch;

struct kiln_repo_conf {
    int64_t id;
    char name[128];
    char url[1024];
    char branches[512]; /* comma-separated glob patterns, e.g. "main,vllm-*" */
    char recipes[1024]; /* comma-separated recipe paths inside the repo */
    int poll_s;         /* 0 = no polling */
    int auto_publish;   /* publish what passes without asking */
    int initial_build;  /* on first sight of a branch: 1 build all, 0 record only */
    char token[256];    /* https credential, "" = none */
    char ssh_key[512];  /* ssh credential, "" = none */
    char secret[256];   /* webhook secret */
    /* comma-separated globs of branches published per commit, all variants
     * at once (`publish: release`; catalog/release_serve.h); "" = none */
    char release_branches[512];
};

struct kiln_push {
    int64_t repo_id;
    const char *repo_name;
    const char *repo_url;
    const char *branch;
    const char *old_commit; /* NULL on first sight */
    const char *new_commit;
    int forced;
    int auto_publish;
    json_t *variants; /* all variants of the new commit (borrowed) */
    json_t *affected; /* {name: reason} (borrowed) */
    json_t *changed_files;
    const char *error; /* non-NULL: fetch/expand failed, nothing else valid */
};

struct kiln_gitwatch_callbacks {
    int (*on_push)(void *ctx, const struct kiln_push *push);
    /* optional: a fetch or analysis failed (logged and shown on the page) */
    void (*on_error)(void *ctx, int64_t repo_id, const char *message);
    void *ctx;
};

int kiln_gitwatch_start(uv_loop_t *loop, const char *data_dir, struct kiln_gitwatch_callbacks cb,
                        struct kiln_gitwatch **out);
/* Track a repository; last_seen is {"branch": "commit"} (borrowed) or NULL. */
int kiln_gitwatch_add(struct kiln_gitwatch *gw, const struct kiln_repo_conf *conf,
                      json_t *last_seen, struct kiln_error *err);
int kiln_gitwatch_remove(struct kiln_gitwatch *gw, int64_t repo_id);
/* Fetch now (webhook). KILN_ENOTFOUND if the repo is not tracked. */
int kiln_gitwatch_trigger(struct kiln_gitwatch *gw, int64_t repo_id);
/* Find a tracked repo whose URL or name matches a webhook's repository
 * (URLs compared without scheme, credentials, trailing ".git" or "/").
 * Returns the id or 0. */
int64_t kiln_gitwatch_match(struct kiln_gitwatch *gw, const char *url, const char *name);
const struct kiln_repo_conf *kiln_gitwatch_conf(struct kiln_gitwatch *gw, int64_t repo_id);
/* {"repos":[{id,name,url,branches,recipes,poll_s,last_seen,last_error,fetching}]} */
json_t *kiln_gitwatch_status(struct kiln_gitwatch *gw);
/* Pure: does branch match the comma-separated patterns? */
int kiln_branch_matches(const char *patterns, const char *branch);
void kiln_gitwatch_stop(struct kiln_gitwatch *gw);

#endif
