/* import.c - put a path of this host's Nix store into the catalog's blob
 * store, checked against the NarHash that Nix recorded. */
#include "catalog/catalog.h"

#include "nix/nar.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int upload_sink(void *arg, const void *data, size_t n, struct kiln_error *err)
{
    return kiln_catalog_upload_write(arg, data, n, err);
}

int kiln_catalog_import_path(struct kiln_catalog *c, const char *store_path, char digest[72],
                             uint64_t *size, json_t **nix, struct kiln_error *err)
{
    *nix = NULL;
    int rc = kiln_nar_path_info(store_path, nix, err);
    if (rc != KILN_OK) return rc;
    char expect[72];
    uint64_t esize = 0;
    struct kiln_error qe = {0};
    int known = kiln_nar_hash_size(store_path, expect, &esize, &qe) == KILN_OK;
    if (known && kiln_catalog_blob_have(c, expect, NULL)) {
        snprintf(digest, 72, "%s", expect); /* already stored: nothing to dump */
        *size = esize;
        return KILN_OK;
    }
    struct kiln_catalog_upload *u = NULL;
    rc = kiln_catalog_upload_begin(c, known ? expect : NULL, known ? (int64_t)esize : -1, &u, err);
    if (rc == KILN_OK) rc = kiln_nar_dump(store_path, upload_sink, u, err);
    if (rc == KILN_OK) return kiln_catalog_upload_finish(u, digest, size, err);
    kiln_catalog_upload_abort(u);
    json_decref(*nix);
    *nix = NULL;
    return rc;
}
