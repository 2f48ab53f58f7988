/* jobs_fixture.h - a fresh store + job state machine in a temp file, for the
 * unit tests of state/ (test_jobs, test_submit): one setup and teardown so
 * each test file does not grow its own. */
#ifndef KILN_TEST_JOBS_FIXTURE_H
#define KILN_TEST_JOBS_FIXTURE_H

#include "state/jobs.h"
#include "state/store.h"

#include <stdio.h>
#include <unistd.h>

struct jobs_fx {
    char path[64];
    struct kiln_store *st;
    struct kiln_jobs j;
};

/* 0 when the store is open in a new temp file, -1 otherwise. */
static inline int jobs_fx_open(struct jobs_fx *f)
{
    snprintf(f->path, sizeof f->path, "/tmp/kiln-jobs-XXXXXX");
    int fd = mkstemp(f->path);
    if (fd < 0) return -1;
    close(fd);
    unlink(f->path);
    struct kiln_error err = {0};
    if (kiln_store_open(f->path, &f->st, &err)) return -1;
    kiln_jobs_init(&f->j, f->st);
    return 0;
}

/* Close the store and remove its files (the database, -wal and -shm). */
static inline void jobs_fx_close(struct jobs_fx *f)
{
    kiln_store_close(f->st);
    char b[80];
    unlink(f->path);
    snprintf(b, sizeof b, "%s-wal", f->path);
    unlink(b);
    snprintf(b, sizeof b, "%s-shm", f->path);
    unlink(b);
}

#endif
