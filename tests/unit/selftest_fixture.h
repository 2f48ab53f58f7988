/* selftest_fixture.h - load the nvcc-built fixtures of tests/fixtures/selftest
 * (see make-fixtures.sh there) for the kernels-selftest unit tests. */
#ifndef KILN_TEST_SELFTEST_FIXTURE_H
#define KILN_TEST_SELFTEST_FIXTURE_H

#include "common/buf.h"
#include "common/fsutil.h"

#include <stdio.h>
#include <stdlib.h>

/* Path of a fixture: relative to the repo root (where check.sh runs), or
 * under $KILN_SRC. */
static inline void fixture_path(const char *name, char *out, size_t outlen)
{
    const char *src = getenv("KILN_SRC");
    snprintf(out, outlen, "%s%stests/fixtures/selftest/%s", src ? src : "", src ? "/" : "", name);
}

/* Whole fixture into b; 0 on success. */
static inline int fixture_load(const char *name, struct kiln_buf *b)
{
    char path[4096];
    fixture_path(name, path, sizeof path);
    b->max = 0;
    return kiln_read_file(path, 16u << 20, b);
}

#endif
