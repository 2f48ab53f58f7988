/* gitrepo.h - blocking git operations on a bare mirror (libgit2).
 *
 * Contract: these functions block (network, disk) and must run in the libuv
 * thread pool, never on the loop. Each call opens and closes the repository,
 * so calls on different mirrors may run in parallel; calls on one mirror are
 * serialized by the caller (gitwatch.c). Commit ids are 40-char hex strings.
 * Nothing is checked out: files are read from the commit's tree.
 * Errors: KILN_ENET (fetch failed: unreachable, auth), KILN_ENOTFOUND
 * (no such branch/commit/path), KILN_EIO; err->msg carries libgit2's message.
 */
#ifndef KILN_GITREPO_H
#define KILN_GITREPO_H

#include "common/buf.h"
#include "common/err.h"

#include <jansson.h>

#define KILN_OID_HEX 41

struct kiln_git_cred {
    const char *token;      /* https: sent as password (user "x-access-token") */
    const char *ssh_key;    /* path to a private key for ssh:// URLs */
    const char *ssh_pubkey; /* optional */
    const char *passphrase; /* optional */
};

/* libgit2 global init/shutdown (reference counted by libgit2 itself). */
int kiln_git_init(void);
void kiln_git_shutdown(void);

/* Create the bare mirror if needed and fetch all branches from url
 * (all refs/heads, pruning deleted ones, forced updates allowed). */
int kiln_git_fetch(const char *mirror, const char *url, const struct kiln_git_cred *cred,
                   struct kiln_error *err);
/* {"branch": "oid", ...} for every branch in the mirror. */
int kiln_git_branches(const char *mirror, json_t **out, struct kiln_error *err);
int kiln_git_resolve(const char *mirror, const char *branch, char oid[KILN_OID_HEX],
                     struct kiln_error *err);
/* Does the mirror have this commit? 1 yes, 0 no. */
int kiln_git_has_commit(const char *mirror, const char *oid);
/* Read path at commit into out (at most max bytes). */
int kiln_git_read_file(const char *mirror, const char *commit, const char *path, size_t max,
                       struct kiln_buf *out, struct kiln_error *err);
/* Names of the files (blobs) directly in dir ("" = root) at commit, as a
 * JSON array of strings; an absent dir gives an empty array. */
int kiln_git_list_dir(const char *mirror, const char *commit, const char *dir, json_t **out,
                      struct kiln_error *err);
/* Write the tree of commit into dir (created if needed): files are
 * written or overwritten, files that are not in the tree are left alone. */
int kiln_git_checkout(const char *mirror, const char *commit, const char *dir,
                      struct kiln_error *err);
/* Paths that differ between the trees of old and new (added, removed,
 * modified, both sides of renames), as a JSON array of strings. old NULL =
 * every file of new. */
int kiln_git_changed_files(const char *mirror, const char *old, const char *new_, json_t **out,
                           struct kiln_error *err);
/* 1 if ancestor is an ancestor of (or equal to) descendant, 0 if not (a
 * force-push), negative on error. */
int kiln_git_is_ancestor(const char *mirror, const char *ancestor, const char *descendant,
                         struct kiln_error *err);

#endif
