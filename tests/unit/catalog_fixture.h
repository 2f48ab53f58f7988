/* catalog_fixture.h - a fresh catalog (blob store + SQLite index) in a temp
 * directory, for the unit tests of catalog/ (test_catalog, test_staging,
 * test_release): one cmocka setup and teardown so each test file does not
 * grow its own. Include it after <cmocka.h>. */
#ifndef KILN_TEST_CATALOG_FIXTURE_H
#define KILN_TEST_CATALOG_FIXTURE_H

#include "catalog/catalog.h"

#include <stdio.h>
#include <stdlib.h>

struct catalog_fx {
    char dir[64];
    struct kiln_catalog *c;
};

/* cmocka setup: *state is a struct catalog_fx with the catalog open. */
static inline int catalog_fx_setup(void **state)
{
    struct catalog_fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/kiln-cat-XXXXXX");
    struct kiln_error err = {0};
    if (!mkdtemp(f->dir) || kiln_catalog_open(f->dir, &f->c, &err) != KILN_OK) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

/* cmocka teardown: closes the catalog and removes its directory. */
static inline int catalog_fx_teardown(void **state)
{
    struct catalog_fx *f = *state;
    kiln_catalog_close(f->c);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    int rc = system(cmd) == 0 ? 0 : -1;
    free(f);
    return rc;
}

#endif
