/* cmd_source.c - `kiln source checkout`: the tree of one commit of a
 * repository, for a job to build. The worker runs it as the first step of a
 * git-triggered job, inside the job (its output lands in the job's log and
 * its time counts against the job), so the worker's event loop never waits
 * for git. Mirrors are cached per URL; a lock file serialises jobs that
 * share one. */
#include "cli/commands.h"
#include "common/fsutil.h"
#include "common/hash.h"
#include "git/gitrepo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: kiln source checkout --url URL --commit SHA --dir DIR [--cache DIR]\n"
               "  writes the tree of SHA into DIR, fetching URL into a cached bare mirror\n"
               "  (default cache: $KILN_SOURCE_CACHE, else DIR/../../src-cache)\n");
}

int cmd_source(int argc, char **argv)
{
    const char *url = NULL, *commit = NULL, *dir = NULL, *cache = getenv("KILN_SOURCE_CACHE");
    if (argc < 2 || strcmp(argv[1], "checkout")) {
        int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
        usage(help ? stdout : stderr);
        return help ? KILN_EXIT_OK : KILN_EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        const char **dst = !strcmp(argv[i], "--url")      ? &url
                           : !strcmp(argv[i], "--commit") ? &commit
                           : !strcmp(argv[i], "--dir")    ? &dir
                           : !strcmp(argv[i], "--cache")  ? &cache
                                                          : NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return KILN_EXIT_OK;
        }
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "kiln source: bad argument %s (see --help)\n", argv[i]);
            return KILN_EXIT_USAGE;
        }
        *dst = argv[++i];
    }
    if (!url || !commit || !dir) {
        usage(stderr);
        return KILN_EXIT_USAGE;
    }
    char cdir[4096];
    if (cache && *cache)
        snprintf(cdir, sizeof cdir, "%s", cache);
    else
        snprintf(cdir, sizeof cdir, "%s/../../src-cache", dir);
    if (kiln_mkdir_p(cdir, 0755)) {
        fprintf(stderr, "kiln source: cannot create %s: %s\n", cdir, strerror(errno));
        return KILN_EXIT_FAIL;
    }
    char hex[KILN_SHA256_HEX], mirror[4200], lock[4300];
    kiln_sha256_hex(url, strlen(url), hex);
    snprintf(mirror, sizeof mirror, "%s/%.16s.git", cdir, hex);
    snprintf(lock, sizeof lock, "%s.lock", mirror);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
        fprintf(stderr, "kiln source: cannot lock %s: %s\n", lock, strerror(errno));
        if (lfd >= 0) close(lfd);
        return KILN_EXIT_FAIL;
    }
    struct kiln_error err = {0};
    int rc = kiln_git_init();
    if (!rc && !kiln_git_has_commit(mirror, commit)) {
        fprintf(stderr, "kiln source: fetching %s\n", url);
        rc = kiln_git_fetch(mirror, url, NULL, &err);
        if (!rc && !kiln_git_has_commit(mirror, commit))
            rc = kiln_fail(&err, KILN_ENOTFOUND, "commit %.40s is not in %s (force-pushed away?)",
                           commit, url);
    }
    if (!rc) rc = kiln_git_checkout(mirror, commit, dir, &err);
    kiln_git_shutdown();
    close(lfd);
    if (rc) {
        fprintf(stderr, "kiln source: %s\n", err.msg[0] ? err.msg : kiln_strerror(rc));
        return kiln_err_exit_code(rc);
    }
    fprintf(stderr, "kiln source: %s at %.12s checked out in %s\n", url, commit, dir);
    return KILN_EXIT_OK;
}
