#include "git/gitrepo.h"

#include "common/fsutil.h"

#include <git2.h>
#include <string.h>
#include <sys/stat.h>

static int git_fail(struct kiln_error *err, int code, const char *what)
{
    const git_error *e = git_error_last();
    return kiln_fail(err, code, "%s: %s", what, e && e->message ? e->message : "unknown git error");
}

int kiln_git_init(void)
{
    return git_libgit2_init() < 0 ? KILN_EIO : KILN_OK;
}

void kiln_git_shutdown(void)
{
    git_libgit2_shutdown();
}

static int open_repo(const char *mirror, git_repository **repo, struct kiln_error *err)
{
    if (git_repository_open_bare(repo, mirror) < 0) return git_fail(err, KILN_ENOTFOUND, mirror);
    return KILN_OK;
}

static int cred_cb(git_credential **out, const char *url, const char *user_from_url,
                   unsigned int allowed, void *payload)
{
    const struct kiln_git_cred *c = payload;
    (void)url;
    if (!c) return GIT_PASSTHROUGH;
    if ((allowed & GIT_CREDENTIAL_SSH_KEY) && c->ssh_key)
        return git_credential_ssh_key_new(out, user_from_url ? user_from_url : "git", c->ssh_pubkey,
                                          c->ssh_key, c->passphrase);
    if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && c->token)
        return git_credential_userpass_plaintext_new(out, "x-access-token", c->token);
    return GIT_PASSTHROUGH;
}

int kiln_git_fetch(const char *mirror, const char *url, const struct kiln_git_cred *cred,
                   struct kiln_error *err)
{
    git_repository *repo = NULL;
    struct stat st;
    if (stat(mirror, &st) != 0) {
        int rc = kiln_mkdir_p(mirror, 0755);
        if (rc) return kiln_fail(err, rc, "cannot create %s", mirror);
        if (git_repository_init(&repo, mirror, 1) < 0) return git_fail(err, KILN_EIO, mirror);
    } else if (git_repository_open_bare(&repo, mirror) < 0) {
        return git_fail(err, KILN_EIO, mirror);
    }
    git_remote *remote = NULL;
    int rc = KILN_OK;
    if (git_remote_create_anonymous(&remote, repo, url) < 0) {
        rc = git_fail(err, KILN_EINVAL, url);
    } else {
        git_fetch_options opts;
        git_fetch_options_init(&opts, GIT_FETCH_OPTIONS_VERSION);
        opts.prune = GIT_FETCH_PRUNE;
        opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
        opts.callbacks.credentials = cred_cb;
        opts.callbacks.payload = (void *)cred;
        char spec[] = "+refs/heads/*:refs/heads/*";
        char *specs[] = {spec};
        git_strarray arr = {specs, 1};
        if (git_remote_fetch(remote, &arr, &opts, "kiln fetch") < 0) {
            char what[600];
            snprintf(what, sizeof what, "fetch from %s failed", url);
            rc = git_fail(err, KILN_ENET, what);
        }
        git_remote_free(remote);
    }
    git_repository_free(repo);
    return rc;
}

int kiln_git_branches(const char *mirror, json_t **out, struct kiln_error *err)
{
    git_repository *repo = NULL;
    int rc = open_repo(mirror, &repo, err);
    if (rc) return rc;
    git_branch_iterator *it = NULL;
    json_t *obj = json_object();
    if (!obj) rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    if (!rc && git_branch_iterator_new(&it, repo, GIT_BRANCH_LOCAL) < 0)
        rc = git_fail(err, KILN_EIO, "cannot list branches");
    git_reference *ref = NULL;
    git_branch_t type;
    while (!rc && git_branch_next(&ref, &type, it) == 0) {
        const char *name = NULL;
        git_reference *resolved = NULL;
        if (git_branch_name(&name, ref) == 0 && git_reference_resolve(&resolved, ref) == 0) {
            char hex[KILN_OID_HEX];
            git_oid_tostr(hex, sizeof hex, git_reference_target(resolved));
            if (json_object_set_new(obj, name, json_string(hex))) rc = KILN_ENOMEM;
        }
        git_reference_free(resolved);
        git_reference_free(ref);
    }
    git_branch_iterator_free(it);
    git_repository_free(repo);
    if (rc) {
        json_decref(obj);
        return rc;
    }
    *out = obj;
    return KILN_OK;
}

int kiln_git_resolve(const char *mirror, const char *branch, char oid[KILN_OID_HEX],
                     struct kiln_error *err)
{
    git_repository *repo = NULL;
    int rc = open_repo(mirror, &repo, err);
    if (rc) return rc;
    char refname[512];
    snprintf(refname, sizeof refname, "refs/heads/%s", branch);
    git_oid id;
    if (git_reference_name_to_id(&id, repo, refname) < 0)
        rc = kiln_fail(err, KILN_ENOTFOUND, "branch '%s' not found in %s", branch, mirror);
    else
        git_oid_tostr(oid, KILN_OID_HEX, &id);
    git_repository_free(repo);
    return rc;
}

static int lookup_commit(git_repository *repo, const char *hex, git_commit **out,
                         struct kiln_error *err)
{
    git_oid id;
    if (strlen(hex) != 40 || git_oid_fromstr(&id, hex) < 0)
        return kiln_fail(err, KILN_EINVAL, "'%.60s' is not a commit id", hex);
    if (git_commit_lookup(out, repo, &id) < 0)
        return kiln_fail(err, KILN_ENOTFOUND, "commit %s not found", hex);
    return KILN_OK;
}

int kiln_git_has_commit(const char *mirror, const char *oid)
{
    git_repository *repo = NULL;
    if (git_repository_open_bare(&repo, mirror) < 0) return 0;
    git_commit *c = NULL;
    int ok = lookup_commit(repo, oid, &c, NULL) == KILN_OK;
    git_commit_free(c);
    git_repository_free(repo);
    return ok;
}

int kiln_git_read_file(const char *mirror, const char *commit, const char *path, size_t max,
                       struct kiln_buf *out, struct kiln_error *err)
{
    git_repository *repo = NULL;
    int rc = open_repo(mirror, &repo, err);
    if (rc) return rc;
    git_commit *c = NULL;
    git_tree *tree = NULL;
    git_tree_entry *entry = NULL;
    git_blob *blob = NULL;
    rc = lookup_commit(repo, commit, &c, err);
    if (!rc && git_commit_tree(&tree, c) < 0) rc = git_fail(err, KILN_EIO, "cannot read tree");
    if (!rc && git_tree_entry_bypath(&entry, tree, path) < 0)
        rc = kiln_fail(err, KILN_ENOTFOUND, "%s not found at commit %.12s", path, commit);
    if (!rc && git_tree_entry_type(entry) != GIT_OBJECT_BLOB)
        rc = kiln_fail(err, KILN_EINVAL, "%s is not a file at commit %.12s", path, commit);
    if (!rc && git_blob_lookup(&blob, repo, git_tree_entry_id(entry)) < 0)
        rc = git_fail(err, KILN_EIO, path);
    if (!rc) {
        git_object_size_t n = git_blob_rawsize(blob);
        if (max && n > max)
            rc = kiln_fail(err, KILN_ELIMIT, "%s is larger than %zu bytes", path, max);
        else
            rc = kiln_buf_append(out, git_blob_rawcontent(blob), (size_t)n);
    }
    git_blob_free(blob);
    git_tree_entry_free(entry);
    git_tree_free(tree);
    git_commit_free(c);
    git_repository_free(repo);
    return rc;
}

int kiln_git_list_dir(const char *mirror, const char *commit, const char *dir, json_t **out,
                      struct kiln_error *err)
{
    git_repository *repo = NULL;
    int rc = open_repo(mirror, &repo, err);
    if (rc) return rc;
    git_commit *c = NULL;
    git_tree *root = NULL, *sub = NULL;
    git_tree_entry *e = NULL;
    json_t *arr = json_array();
    if (!arr) rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
    if (!rc) rc = lookup_commit(repo, commit, &c, err);
    if (!rc && git_commit_tree(&root, c) < 0) rc = git_fail(err, KILN_EIO, "cannot read tree");
    git_tree *t = root;
    if (!rc && dir[0]) {
        if (git_tree_entry_bypath(&e, root, dir) < 0 || git_tree_entry_type(e) != GIT_OBJECT_TREE)
            t = NULL; /* no such directory: nothing in it */
        else if (git_tree_lookup(&sub, repo, git_tree_entry_id(e)) < 0)
            rc = git_fail(err, KILN_EIO, dir);
        else
            t = sub;
    }
    for (size_t i = 0; !rc && t && i < git_tree_entrycount(t); i++) {
        const git_tree_entry *x = git_tree_entry_byindex(t, i);
        if (git_tree_entry_type(x) == GIT_OBJECT_BLOB &&
            json_array_append_new(arr, json_string(git_tree_entry_name(x))))
            rc = KILN_ENOMEM;
    }
    git_tree_entry_free(e);
    git_tree_free(sub);
    git_tree_free(root);
    git_commit_free(c);
    git_repository_free(repo);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return KILN_OK;
}

int kiln_git_checkout(const char *mirror, const char *commit, const char *dir,
                      struct kiln_error *err)
{
    git_repository *repo = NULL;
    int rc = open_repo(mirror, &repo, err);
    if (rc) return rc;
    git_commit *c = NULL;
    git_tree *tree = NULL;
    rc = lookup_commit(repo, commit, &c, err);
    if (!rc && git_commit_tree(&tree, c) < 0) rc = git_fail(err, KILN_EIO, "cannot read tree");
    if (!rc && kiln_mkdir_p(dir, 0755)) rc = kiln_fail(err, KILN_EIO, "cannot create %s", dir);
    if (!rc) {
        git_checkout_options opts;
        git_checkout_options_init(&opts, GIT_CHECKOUT_OPTIONS_VERSION);
        /* A bare mirror has no work tree: write into dir, touch no index. */
        opts.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_UPDATE_INDEX;
        opts.target_directory = dir;
        if (git_checkout_tree(repo, (const git_object *)tree, &opts) < 0)
            rc = git_fail(err, KILN_EIO, "checkout");
    }
    git_tree_free(tree);
    git_commit_free(c);
    git_repository_free(repo);
    return rc;
}

static int add_path(json_t *arr, const char *p)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (!strcmp(json_string_value(v), p)) return KILN_OK;
    return json_array_append_new(arr, json_string(p)) ? KILN_ENOMEM : KILN_OK;
}

int kiln_git_changed_files(const char *mirror, const char *old, const char *new_, json_t **out,
                           struct kiln_error *err)
{
    git_repository *repo = NULL;
    int rc = open_repo(mirror, &repo, err);
    if (rc) return rc;
    git_commit *co = NULL, *cn = NULL;
    git_tree *to = NULL, *tn = NULL;
    git_diff *diff = NULL;
    json_t *arr = json_array();
    if (!arr) rc = KILN_ENOMEM;
    if (!rc && old) rc = lookup_commit(repo, old, &co, err);
    if (!rc) rc = lookup_commit(repo, new_, &cn, err);
    if (!rc && co && git_commit_tree(&to, co) < 0) rc = git_fail(err, KILN_EIO, "tree");
    if (!rc && git_commit_tree(&tn, cn) < 0) rc = git_fail(err, KILN_EIO, "tree");
    if (!rc && git_diff_tree_to_tree(&diff, repo, to, tn, NULL) < 0)
        rc = git_fail(err, KILN_EIO, "diff");
    for (size_t i = 0; !rc && i < git_diff_num_deltas(diff); i++) {
        const git_diff_delta *d = git_diff_get_delta(diff, i);
        if (d->old_file.path) rc = add_path(arr, d->old_file.path);
        if (!rc && d->new_file.path) rc = add_path(arr, d->new_file.path);
    }
    git_diff_free(diff);
    git_tree_free(to);
    git_tree_free(tn);
    git_commit_free(co);
    git_commit_free(cn);
    git_repository_free(repo);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return KILN_OK;
}

int kiln_git_is_ancestor(const char *mirror, const char *ancestor, const char *descendant,
                         struct kiln_error *err)
{
    if (!strcmp(ancestor, descendant)) return 1;
    git_repository *repo = NULL;
    int rc = open_repo(mirror, &repo, err);
    if (rc) return rc;
    git_oid a, d;
    if (git_oid_fromstr(&a, ancestor) < 0 || git_oid_fromstr(&d, descendant) < 0) {
        git_repository_free(repo);
        return kiln_fail(err, KILN_EINVAL, "bad commit id");
    }
    int r = git_graph_descendant_of(repo, &d, &a);
    git_repository_free(repo);
    if (r < 0) return git_fail(err, KILN_ENOTFOUND, "ancestry");
    return r ? 1 : 0;
}
