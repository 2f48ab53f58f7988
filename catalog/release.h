/* release.h - releases: every variant of one commit published at once.
 *
 * A branch or recipe that says `publish: release` wants users to see either
 * all the variants of a commit or none of them. The catalog keeps, per
 * (branch, commit), one release row; entries published for a release carry
 * its id and stay hidden (catalog lists, entry lookups, downloads, narinfos
 * and NARs) until the release is complete.
 *
 * Contract:
 * - Tables in catalog.db: releases(id, branch, commit_id, state, created_at,
 *   completed_at, superseded_by, targets) and entries.release_id (NULL: an
 *   ordinary entry, visible at once), created by the catalog's migrations
 *   (catalog.c).
 * - States: open -> complete, or open -> superseded. Nothing leaves complete
 *   or superseded. An entry is visible iff its release_id is NULL or its
 *   release is complete (KILN_RELEASE_VISIBLE), so completing a release is
 *   ONE UPDATE in one transaction: a reader sees all its entries or none.
 * - kiln_release_open() returns the release of (branch, commit), creating it
 *   when new; a new release supersedes every open release of the same branch
 *   (a newer push), in the same transaction.
 * - Which variants belong to a release, and whether they passed, is the job
 *   store's business (catalog/release_serve.c decides and calls complete).
 * - Functions run on the thread that owns the catalog (the loop).
 */
#ifndef KILN_RELEASE_H
#define KILN_RELEASE_H

#include "catalog/catalog.h"
#include "common/err.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

/* SQL condition: the entry (columns prefixed by p, e.g. "" or "e.") is visible. */
#define KILN_RELEASE_VISIBLE(p)                                                                    \
    "(" p "release_id IS NULL OR " p "release_id IN (SELECT id FROM releases WHERE state = "       \
    "'complete'))"

/* The release of (branch, commit); *created = 1 when this call made it (and
 * superseded the branch's older open releases). branch may be "". */
int kiln_release_open(struct kiln_catalog *c, const char *branch, const char *commit, double now,
                      int64_t *id, int *created, struct kiln_error *err);
/* The release of (branch, commit) if it exists: KILN_OK with *id, or KILN_ENOTFOUND. */
int kiln_release_find(struct kiln_catalog *c, const char *branch, const char *commit, int64_t *id,
                      struct kiln_error *err);
/* open -> complete in one transaction (every entry of it becomes visible).
 * *done = 1 when this call completed it, 0 when it was not open. */
int kiln_release_complete(struct kiln_catalog *c, int64_t id, double now, int *done,
                          struct kiln_error *err);
/* Record what the publish targets did after completion (JSON array). */
int kiln_release_set_targets(struct kiln_catalog *c, int64_t id, json_t *results,
                             struct kiln_error *err);
/* {"id","branch","commit","state","created_at","completed_at","superseded_by",
 *  "targets","entries":[{"id","name","version","digest","size","store_path"}]} */
int kiln_release_get(struct kiln_catalog *c, int64_t id, json_t **out, struct kiln_error *err);
/* Newest first; filters: optional strings "branch", "state", "commit", integer "limit" (100). */
int kiln_release_list(struct kiln_catalog *c, json_t *filters, json_t **out,
                      struct kiln_error *err);

#endif
