/* selftest.c - inspect artifacts and run the GPU selftest; see selftest.h. */
#include "kernels-selftest/selftest.h"

#include "kernels-selftest/checks.h"
#include "kernels-selftest/elfsym.h"
#include "kernels-selftest/fatbin.h"
#include "common/isa.h"
#include "common/spawn.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct mapped {
    void *data;
    size_t len;
};

static int map_file(const char *path, struct mapped *m, struct kiln_error *err)
{
    m->data = NULL;
    m->len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kiln_fail(err, errno == ENOENT ? KILN_ENOTFOUND : KILN_EIO, "cannot open %s: %s",
                         path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return kiln_fail(err, KILN_EIO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return kiln_fail(err, KILN_EINVAL, "%s is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return kiln_fail(err, KILN_EPARSE, "%s is empty", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return kiln_fail(err, KILN_EIO, "cannot map %s: %s", path, strerror(e));
    m->data = p;
    m->len = (size_t)st.st_size;
    return KILN_OK;
}

static void unmap_file(struct mapped *m)
{
    if (m->data) munmap(m->data, m->len);
    m->data = NULL;
}

/* json_array_append_new etc. return -1 on allocation failure; collect it. */
struct jctx {
    int oom;
};

static json_t *jstr(struct jctx *c, const char *s)
{
    json_t *v = json_string(s ? s : "");
    if (!v) v = json_stringn("?", 1); /* invalid UTF-8 from a hostile file */
    if (!v) c->oom = 1;
    return v;
}

static void jset(struct jctx *c, json_t *o, const char *k, json_t *v)
{
    if (!v || json_object_set_new(o, k, v) != 0) c->oom = 1;
}

static void jpush(struct jctx *c, json_t *a, json_t *v)
{
    if (!v || json_array_append_new(a, v) != 0) c->oom = 1;
}

static json_t *entry_json(struct jctx *c, const struct kiln_fatbin_entry *e)
{
    char t[32];
    kiln_fatbin_entry_target(e, t, sizeof t);
    json_t *o = json_object();
    if (!o) {
        c->oom = 1;
        return NULL;
    }
    jset(c, o, "kind",
         jstr(c, e->kind == KILN_FB_CUBIN ? "cubin"
                 : e->kind == KILN_FB_PTX ? "ptx"
                                          : "other"));
    jset(c, o, "target", jstr(c, t));
    jset(c, o, "sm", json_integer(e->sm));
    char sfx[2] = {e->suffix, 0};
    jset(c, o, "suffix", jstr(c, sfx));
    if (e->kind == KILN_FB_PTX) {
        char isa[32];
        snprintf(isa, sizeof isa, "%u.%u", e->major, e->minor);
        jset(c, o, "ptx_isa", jstr(c, isa));
    }
    jset(c, o, "compression", e->compression ? jstr(c, e->compression) : json_null());
    jset(c, o, "size", json_integer((json_int_t)e->size));
    jset(c, o, "relocatable", json_boolean(e->relocatable));
    jset(c, o, "where", jstr(c, e->where));
    return o;
}

static int add_reason(struct jctx *c, json_t *reasons, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int add_reason(struct jctx *c, json_t *reasons, const char *fmt, ...)
{
    char buf[KILN_ERR_MSG_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    jpush(c, reasons, jstr(c, buf));
    return 0;
}

/* Check symbols in the host ELF and in each uncompressed cubin it carries. */
static int symbols_in(const void *data, size_t len, const struct kiln_fatbin_list *l,
                      const struct kiln_inspect_opts *o, int *found, char **match,
                      struct kiln_error *err)
{
    struct kiln_elf e;
    if (kiln_elf_is_elf(data, len)) {
        int rc = kiln_elf_open(&e, data, len, err);
        if (rc) return rc;
        rc = kiln_elfsym_expect(&e, o->symbols, o->nsymbols, found, match, err);
        if (rc) return rc;
    }
    for (size_t i = 0; l && i < l->n; i++) {
        const struct kiln_fatbin_entry *en = &l->v[i];
        if (en->kind != KILN_FB_CUBIN || en->compression || l->is_cubin) continue;
        if (en->offset > len || en->size > len - en->offset) continue;
        struct kiln_elf ce;
        struct kiln_error sub;
        if (kiln_elf_open(&ce, (const unsigned char *)data + en->offset, (size_t)en->size, &sub))
            continue; /* a broken embedded cubin shows up in the listing, not here */
        if (kiln_elfsym_expect(&ce, o->symbols, o->nsymbols, found, match, &sub) == KILN_ENOMEM)
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    return KILN_OK;
}

/* The file's device code: cubins and PTX by target (each once), and every
 * entry as found. */
static void list_targets(struct jctx *c, json_t *f, const struct kiln_fatbin_list *l)
{
    json_t *cubins = json_array(), *ptx = json_array(), *entries = json_array();
    jset(c, f, "cubins", cubins);
    jset(c, f, "ptx", ptx);
    jset(c, f, "entries", entries);
    jset(c, f, "containers", json_integer(l->containers));
    char t[32];
    for (size_t k = 0; k < l->n && cubins && ptx && entries; k++) {
        const struct kiln_fatbin_entry *en = &l->v[k];
        kiln_fatbin_entry_target(en, t, sizeof t);
        jpush(c, entries, entry_json(c, en));
        int dup = 0;
        for (size_t j = 0; j < k; j++)
            dup |= l->v[j].kind == en->kind && l->v[j].sm == en->sm && l->v[j].suffix == en->suffix;
        if (dup) continue;
        if (en->kind == KILN_FB_CUBIN) {
            jpush(c, cubins, jstr(c, t));
        } else if (en->kind == KILN_FB_PTX) {
            char isa[32];
            snprintf(isa, sizeof isa, "%u.%u", en->major, en->minor);
            jpush(c, ptx, json_pack("{s:s,s:s}", "target", t, "isa", isa));
        }
    }
}

/* Can the file's code run on o->expect_sm? 1 yes, 0 no (reason added). */
static int file_runs_on(struct jctx *c, json_t *f, const struct kiln_fatbin_list *l,
                        const struct kiln_inspect_opts *o, const char *path, json_t *reasons)
{
    char how[96] = "";
    struct kiln_error se;
    kiln_error_clear(&se);
    int src = kiln_fatbin_check_sm(l, o->expect_sm, how, sizeof how, &se);
    json_t *x = json_object();
    jset(c, f, "expect_sm", x);
    if (x) {
        jset(c, x, "sm", json_integer(o->expect_sm));
        jset(c, x, "ok", json_boolean(src == KILN_OK));
        jset(c, x, src == KILN_OK ? "how" : "reason", jstr(c, src == KILN_OK ? how : se.msg));
    }
    if (src == KILN_OK) return 1;
    add_reason(c, reasons, "%s: %s", path, se.msg);
    return 0;
}

/* What inspect_files() tells whoever watches it (inspect_isolated()). */
struct inspect_watch {
    int progress_fd; /* "F<index>\n" before each file is opened */
    void (*hook)(const char *path, void *arg);
    void *hook_arg;
};

/* One file into f: 1 passed, 0 failed (reasons added), KILN_ENOMEM.
 * found/match collect the expected symbols across files; w (may be NULL)
 * gets its hook called once the file is mapped. */
static int inspect_file(struct jctx *c, json_t *f, const char *path,
                        const struct kiln_inspect_opts *o, const struct inspect_watch *w,
                        int *found, char **match, json_t *reasons, int *any_device)
{
    jset(c, f, "file", jstr(c, path));
    struct mapped m;
    struct kiln_error fe;
    kiln_error_clear(&fe);
    int frc = map_file(path, &m, &fe);
    if (frc == KILN_OK && w && w->hook) w->hook(path, w->hook_arg);
    struct kiln_fatbin_list l;
    memset(&l, 0, sizeof l);
    if (frc == KILN_OK) frc = kiln_fatbin_inspect(m.data, m.len, &l, &fe);
    if (frc != KILN_OK) {
        jset(c, f, "ok", json_false());
        jset(c, f, "error", jstr(c, fe.msg));
        add_reason(c, reasons, "%s: %s", path, fe.msg);
        unmap_file(&m);
        return 0;
    }
    int fok = 1;
    list_targets(c, f, &l);
    if (l.n) *any_device = 1;
    if (o->expect_sm && l.n) fok &= file_runs_on(c, f, &l, o, path, reasons);
    if (o->nsymbols) {
        struct kiln_error ye;
        kiln_error_clear(&ye);
        int yrc = symbols_in(m.data, m.len, &l, o, found, match, &ye);
        if (yrc == KILN_ENOMEM) {
            kiln_fatbin_list_free(&l);
            unmap_file(&m);
            return KILN_ENOMEM;
        }
        if (yrc) {
            fok = 0;
            jset(c, f, "error", jstr(c, ye.msg));
            add_reason(c, reasons, "%s: symbol table: %s", path, ye.msg);
        }
    }
    jset(c, f, "ok", json_boolean(fok));
    kiln_fatbin_list_free(&l);
    unmap_file(&m);
    return fok;
}

/* doc.symbols: which expected symbols were found where, which are missing.
 * 1 when all were found, else 0 (reason added). */
static int symbols_report(struct jctx *c, json_t *doc, const struct kiln_inspect_opts *o,
                          const int *found, char *const *match, json_t *reasons)
{
    json_t *sy = json_object(), *fo = json_object(), *mi = json_array();
    jset(c, doc, "symbols", sy);
    if (sy) {
        jset(c, sy, "found", fo);
        jset(c, sy, "missing", mi);
    }
    int sok = 1;
    char missing[KILN_ERR_MSG_MAX] = "";
    size_t ml = 0;
    for (size_t k = 0; k < o->nsymbols && fo && mi; k++) {
        if (found[k]) {
            jset(c, fo, o->symbols[k], jstr(c, match[k]));
        } else {
            sok = 0;
            jpush(c, mi, jstr(c, o->symbols[k]));
            if (ml < sizeof missing)
                ml += (size_t)snprintf(missing + ml, sizeof missing - ml, "%s%s", ml ? ", " : "",
                                       o->symbols[k]);
        }
    }
    if (sy) jset(c, sy, "ok", json_boolean(sok));
    if (!sok)
        add_reason(c, reasons, "expected symbols missing (no defined symbol matches): %s", missing);
    return sok;
}

static int inspect_files(const char *const *paths, size_t npaths,
                         const struct kiln_inspect_opts *opts, const struct inspect_watch *w,
                         json_t **out, struct kiln_error *err)
{
    *out = NULL;
    if (npaths == 0) return kiln_fail(err, KILN_EINVAL, "no files to inspect");
    struct kiln_inspect_opts none = {0, NULL, 0};
    const struct kiln_inspect_opts *o = opts ? opts : &none;
    struct jctx c = {0};
    json_t *doc = json_object(), *files = json_array(), *reasons = json_array();
    int *found = o->nsymbols ? calloc(o->nsymbols, sizeof *found) : NULL;
    char **match = o->nsymbols ? calloc(o->nsymbols, sizeof *match) : NULL;
    int ok = 1, any_device = 0, rc = KILN_OK;
    if (!doc || !files || !reasons || (o->nsymbols && (!found || !match))) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < npaths; i++) {
        json_t *f = json_object();
        jpush(&c, files, f);
        if (!f) break;
        if (w && dprintf(w->progress_fd, "F%zu\n", i) < 0) {
            rc = kiln_fail(err, KILN_EIO, "cannot report progress: %s", strerror(errno));
            goto out;
        }
        int fok = inspect_file(&c, f, paths[i], o, w, found, match, reasons, &any_device);
        if (fok < 0) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto out;
        }
        ok &= fok;
    }
    if (o->expect_sm && !any_device) {
        ok = 0;
        add_reason(&c, reasons,
                   "no cubin or PTX for sm_%u: none of the files holds CUDA device code",
                   o->expect_sm);
    }
    if (o->nsymbols) ok &= symbols_report(&c, doc, o, found, match, reasons);
    jset(&c, doc, "ok", json_boolean(ok));
    jset(&c, doc, "reasons", reasons);
    reasons = NULL;
    jset(&c, doc, "files", files);
    files = NULL;
    if (c.oom) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory building the inspection report");
        goto out;
    }
    *out = doc;
    doc = NULL;
out:
    json_decref(doc);
    json_decref(files);
    json_decref(reasons);
    if (match)
        for (size_t k = 0; k < o->nsymbols; k++)
            free(match[k]);
    free(match);
    free(found);
    return rc;
}

int kiln_selftest_inspect(const char *const *paths, size_t npaths,
                          const struct kiln_inspect_opts *opts, json_t **out,
                          struct kiln_error *err)
{
    return inspect_files(paths, npaths, opts, NULL, out, err);
}

/* ---- inspection in a child process ----
 *
 * The parsers are fuzzed and bounds-checked, but a worker must not take a
 * missed bug (or a file truncated while it is mapped: SIGBUS) for a broken
 * machine. kiln_selftest_run() therefore inspects in a forked child that
 * writes, over a pipe, "F<index>\n" before each file and then either
 * "J<report JSON>" (exit 0) or "E<code> <sentence>" (exit 1, an error such
 * as out of memory). A child killed by a signal, or still running at the
 * timeout, becomes a failed inspection naming the file it was on.
 * Trade-off: fork without exec from a process that may have other threads;
 * the child only maps files, parses, and uses malloc and jansson (glibc
 * keeps malloc usable after fork), then leaves with _exit(). */

#define INSPECT_REPORT_MAX (64u << 20)

static void inspect_child(void *arg, int fd)
{
    const struct kiln_selftest_opts *o = arg;
    /* Die of a fault here, where the parent sees it: a handler inherited
     * from the parent (a test runner's longjmp, a daemon's crash report)
     * would run the parent's code in this child instead. */
    const int faults[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        signal(faults[i], SIG_DFL);
    struct inspect_watch w = {fd, o->inspect_hook, o->inspect_hook_arg};
    json_t *doc = NULL;
    struct kiln_error e;
    kiln_error_clear(&e);
    int rc = inspect_files(o->inspect, o->ninspect, &o->inspect_opts, &w, &doc, &e);
    if (rc) {
        dprintf(fd, "E%d %s", rc, e.msg);
        _exit(1);
    }
    if (dprintf(fd, "J") < 0 || json_dumpfd(doc, fd, JSON_COMPACT) != 0) _exit(1);
    _exit(0);
}

/* Read the child's pipe to EOF or until timeout_ms; 1 if it timed out. */
static int read_child(int fd, long timeout_ms, struct kiln_buf *b, struct kiln_error *err, int *rc)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char chunk[65536];
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (spent >= timeout_ms) return 1;
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, (int)(timeout_ms - spent));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            *rc = kiln_fail(err, KILN_EIO, "poll failed: %s", strerror(errno));
            return 0;
        }
        if (n == 0) continue; /* the deadline check above ends it */
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            *rc = kiln_fail(err, KILN_EIO, "reading the inspection report: %s", strerror(errno));
            return 0;
        }
        if (r == 0) return 0;
        if (b->len + (size_t)r > INSPECT_REPORT_MAX) {
            *rc = kiln_fail(err, KILN_ELIMIT, "the inspection report is larger than %u bytes",
                            INSPECT_REPORT_MAX);
            return 0;
        }
        if (kiln_buf_append(b, chunk, (size_t)r)) {
            *rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            return 0;
        }
    }
}

/* The report for an inspection that did not finish: ok false, one reason. */
static int unfinished_report(const char *file, const char *reason, int sig, json_t **out,
                             struct kiln_error *err)
{
    *out =
        json_pack("{s:b,s:[s],s:[{s:s,s:b,s:s}],s:{s:s,s:i}}", "ok", 0, "reasons", reason, "files",
                  "file", file, "ok", 0, "error", reason, "crashed", "file", file, "signal", sig);
    return *out ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
}

static int inspect_isolated(const struct kiln_selftest_opts *o, long timeout_ms, json_t **out,
                            struct kiln_error *err)
{
    *out = NULL;
    pid_t pid;
    int fd;
    int rc = kiln_spawn_fork_fn(inspect_child, (void *)o, &pid, &fd, err);
    if (rc) return rc;
    struct kiln_buf b = {0};
    int timed_out = read_child(fd, timeout_ms, &b, err, &rc);
    close(fd);
    if (timed_out || rc) kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            if (!rc) rc = kiln_fail(err, KILN_EIO, "waitpid failed: %s", strerror(errno));
            break;
        }
    if (rc) goto out;
    /* Which file it was on: the last "F<index>" before any J or E. */
    const char *file = NULL, *body = NULL;
    char kind = 0;
    for (size_t at = 0; at < b.len && !kind;) {
        const char *p = b.data + at;
        if (*p == 'F') {
            unsigned long idx = strtoul(p + 1, NULL, 10);
            if (idx < o->ninspect) file = o->inspect[idx];
            const char *nl = memchr(p, '\n', b.len - at);
            at = nl ? (size_t)(nl - b.data) + 1 : b.len;
        } else {
            kind = *p;
            body = p + 1;
        }
    }
    size_t body_len = body ? b.len - (size_t)(body - b.data) : 0;
    char reason[KILN_ERR_MSG_MAX];
    if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0 && kind == 'J') {
        json_error_t je;
        *out = json_loadb(body, body_len, 0, &je);
        if (json_is_object(*out)) goto out;
        json_decref(*out);
        *out = NULL;
    } else if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 1 && kind == 'E') {
        /* "E<negative code> <sentence>", as inspect_child() writes it. */
        char *end = NULL;
        long code = strtol(body, &end, 10);
        if (code < 0 && code > -1000 && end < body + body_len && *end == ' ') {
            size_t n = body_len - (size_t)(end + 1 - body);
            rc = kiln_fail(err, (int)code, "%.*s", (int)(n < 400 ? n : 400), end + 1);
        } else {
            rc = kiln_fail(err, KILN_EIO, "the inspection failed without a readable error");
        }
        goto out;
    }
    /* No report: killed by a signal, or (under ASan, which turns SIGSEGV
     * into a report and exit status 1) exited without one. Both are a
     * crash of the inspector on that file. */
    const char *name = file ? file : "(before its first file)";
    if (timed_out)
        snprintf(reason, sizeof reason, "inspection timed out on %s after %ld s", name,
                 timeout_ms / 1000);
    else
        snprintf(reason, sizeof reason, "inspection crashed on %s", name);
    rc = unfinished_report(name, reason, WIFSIGNALED(status) ? WTERMSIG(status) : 0, out, err);
out:
    kiln_buf_free(&b);
    return rc;
}

static json_t *check_json(struct jctx *c, const char *name, const char *cmd,
                          const struct kiln_check_result *r)
{
    json_t *o = json_object();
    if (!o) {
        c->oom = 1;
        return NULL;
    }
    jset(c, o, "name", jstr(c, name));
    if (cmd) jset(c, o, "command", jstr(c, cmd));
    jset(c, o, "ok", json_boolean(r->passed));
    jset(c, o, "exit_code", json_integer(r->exit_code));
    if (r->term_signal) jset(c, o, "signal", json_integer(r->term_signal));
    jset(c, o, "timed_out", json_boolean(r->timed_out));
    jset(c, o, "seconds", json_real(r->seconds));
    jset(c, o, "reason", r->passed ? json_null() : jstr(c, r->reason));
    return o;
}

/* Why the selftest binary failed: its own per-kernel reasons are more
 * precise than the log classification. */
static void binary_reasons(struct jctx *c, json_t *st, const struct kiln_check_result *r,
                           json_t *reasons)
{
    json_t *ks = st ? json_object_get(st, "kernels") : NULL;
    size_t idx;
    json_t *k;
    int named = 0;
    json_array_foreach(ks, idx, k)
    {
        const char *status = json_string_value(json_object_get(k, "status"));
        if (status && strcmp(status, "fail") == 0) {
            const char *why = json_string_value(json_object_get(k, "reason"));
            const char *kname = json_string_value(json_object_get(k, "name"));
            add_reason(c, reasons, "selftest %s failed: %s", kname ? kname : "?",
                       why ? why : "no reason given");
            named++;
        }
    }
    const char *fatal = st ? json_string_value(json_object_get(st, "error")) : NULL;
    if (fatal)
        add_reason(c, reasons, "selftest could not run: %s", fatal);
    else if (!named)
        add_reason(c, reasons, "selftest failed: %s", r->reason);
}

/* The selftest binary, writing its JSON report to jsontmp: doc gets
 * selftest_run and selftest; *ok drops to 0 when it failed. */
static int run_binary(struct jctx *c, const struct kiln_selftest_opts *o, const char *log,
                      long timeout, char *jsontmp, json_t *doc, json_t *reasons, int *ok,
                      struct kiln_error *err)
{
    size_t nextra = 0;
    for (char *const *a = o->binary_args; a && *a; a++)
        nextra++;
    char **argv = calloc(nextra + 4, sizeof *argv);
    if (!argv) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    argv[0] = (char *)o->binary;
    argv[1] = (char *)"--json-file";
    argv[2] = jsontmp;
    for (size_t i = 0; i < nextra; i++)
        argv[3 + i] = o->binary_args[i];
    struct kiln_check_spec spec = {.name = "kiln-selftest",
                                   .argv = argv,
                                   .timeout_ms = timeout,
                                   .log_path = log,
                                   .cwd = o->cwd};
    struct kiln_check_result r;
    int rc = kiln_check_run(&spec, &r, err);
    free(argv);
    if (rc) return rc;
    jset(c, doc, "selftest_run", check_json(c, "kiln-selftest", o->binary, &r));
    json_error_t je;
    json_t *st = json_load_file(jsontmp, 0, &je);
    if (st && !json_is_object(st)) {
        json_decref(st);
        st = NULL;
    }
    jset(c, doc, "selftest", st ? st : json_null());
    if (!r.passed) {
        *ok = 0;
        binary_reasons(c, st, &r, reasons);
    }
    return KILN_OK;
}

int kiln_selftest_run(const struct kiln_selftest_opts *o, json_t **out, struct kiln_error *err)
{
    *out = NULL;
    if (!o->binary && o->nchecks == 0 && o->ninspect == 0)
        return kiln_fail(err, KILN_EINVAL,
                         "nothing to run: give a selftest binary, checks or files");
    struct jctx c = {0};
    json_t *doc = json_object(), *reasons = json_array(), *checks = json_array();
    char logtmp[] = "/tmp/kiln-selftest-log-XXXXXX";
    char jsontmp[] = "/tmp/kiln-selftest-json-XXXXXX";
    int have_logtmp = 0, have_jsontmp = 0, ok = 1, rc = KILN_OK;
    const char *log = o->log_path;
    long timeout = o->timeout_ms > 0 ? o->timeout_ms : 120000;
    if (!doc || !reasons || !checks) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto out;
    }
    if (!log) {
        int fd = mkstemp(logtmp);
        if (fd < 0) {
            rc = kiln_fail(err, KILN_EIO, "cannot create a temporary log: %s", strerror(errno));
            goto out;
        }
        close(fd);
        have_logtmp = 1;
        log = logtmp;
    }
    if (o->binary) {
        int fd = mkstemp(jsontmp);
        if (fd < 0) {
            rc = kiln_fail(err, KILN_EIO, "cannot create a temporary file: %s", strerror(errno));
            goto out;
        }
        close(fd);
        have_jsontmp = 1;
        if ((rc = run_binary(&c, o, log, timeout, jsontmp, doc, reasons, &ok, err))) goto out;
    }
    json_t *carr = checks;
    jset(&c, doc, "checks", checks);
    checks = NULL; /* owned by doc now */
    if (c.oom) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < o->nchecks; i++) {
        char name[64];
        if (o->check_names && o->check_names[i] && o->check_names[i][0])
            snprintf(name, sizeof name, "%s", o->check_names[i]);
        else
            snprintf(name, sizeof name, "check-%zu", i + 1);
        long ct =
            o->check_timeouts_ms && o->check_timeouts_ms[i] > 0 ? o->check_timeouts_ms[i] : timeout;
        struct kiln_check_spec spec = {.name = name,
                                       .command = o->checks[i],
                                       .timeout_ms = ct,
                                       .log_path = log,
                                       .cwd = o->cwd};
        struct kiln_check_result r;
        rc = kiln_check_run(&spec, &r, err);
        if (rc) goto out;
        jpush(&c, carr, check_json(&c, name, o->checks[i], &r));
        if (!r.passed) {
            ok = 0;
            add_reason(&c, reasons, "%s (%s) failed: %s", name, o->checks[i], r.reason);
        }
    }
    if (o->ninspect) {
        json_t *ins = NULL;
        rc = inspect_isolated(o, timeout, &ins, err);
        if (rc) goto out;
        if (!json_is_true(json_object_get(ins, "ok"))) {
            ok = 0;
            size_t idx;
            json_t *v;
            json_array_foreach(json_object_get(ins, "reasons"), idx, v)
                jpush(&c, reasons, json_incref(v));
        }
        jset(&c, doc, "inspect", ins);
    }
    if (o->log_path) jset(&c, doc, "log", jstr(&c, o->log_path));
    jset(&c, doc, "ok", json_boolean(ok));
    jset(&c, doc, "reasons", reasons);
    reasons = NULL;
    if (c.oom) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory building the result");
        goto out;
    }
    *out = doc;
    doc = NULL;
out:
    if (have_logtmp) unlink(logtmp);
    if (have_jsontmp) unlink(jsontmp);
    json_decref(doc);
    json_decref(reasons);
    json_decref(checks);
    return rc;
}

/* ---- the recipe's selftest spec ---- */

void kiln_selftest_spec_free(struct kiln_selftest_spec *s)
{
    for (size_t i = 0; i < s->nchecks; i++) {
        if (s->check_names) free(s->check_names[i]);
        if (s->check_commands) free(s->check_commands[i]);
    }
    free(s->check_names);
    free(s->check_commands);
    free(s->check_timeouts_ms);
    for (size_t i = 0; i < s->nsymbols; i++)
        free(s->symbols[i]);
    free(s->symbols);
    for (size_t i = 0; i < s->nglobs; i++)
        free(s->globs[i]);
    free(s->globs);
    free(s->isa);
    memset(s, 0, sizeof *s);
}

/* An array of non-empty strings (key may be absent). */
static int string_list(const json_t *spec, const char *key, char ***out, size_t *n,
                       struct kiln_error *err)
{
    const json_t *a = json_object_get(spec, key);
    *out = NULL;
    *n = 0;
    if (!a || json_is_null(a)) return KILN_OK;
    if (!json_is_array(a))
        return kiln_fail(err, KILN_EINVAL, "selftest.%s must be a list of strings", key);
    size_t len = json_array_size(a);
    if (len > KILN_SELFTEST_SPEC_MAX_ITEMS)
        return kiln_fail(err, KILN_ELIMIT, "selftest.%s has %zu items (limit %d)", key, len,
                         KILN_SELFTEST_SPEC_MAX_ITEMS);
    if (len == 0) return KILN_OK;
    char **v = calloc(len, sizeof *v);
    if (!v) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    for (size_t i = 0; i < len; i++) {
        const char *str = json_string_value(json_array_get(a, i));
        if (!str || !str[0]) {
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return kiln_fail(err, KILN_EINVAL, "selftest.%s[%zu] must be a non-empty string", key,
                             i);
        }
        v[i] = strdup(str);
        if (!v[i]) {
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return kiln_fail(err, KILN_ENOMEM, "out of memory");
        }
    }
    *out = v;
    *n = len;
    return KILN_OK;
}

int kiln_selftest_spec_parse(const json_t *spec, struct kiln_selftest_spec *out,
                             struct kiln_error *err)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(spec))
        return kiln_fail(err, KILN_EINVAL, "the selftest spec must be a JSON object");
    int rc = KILN_OK;
    const json_t *v = json_object_get(spec, "sm");
    if (v && !json_is_null(v)) {
        char buf[32];
        if (json_is_integer(v))
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        else if (json_is_string(v))
            snprintf(buf, sizeof buf, "%s", json_string_value(v));
        else
            snprintf(buf, sizeof buf, "?");
        /* Templates expand "{sm}" to "" for variants without a GPU. */
        if (buf[0] && kiln_fatbin_parse_sm(buf, &out->sm) != KILN_OK) {
            rc = kiln_fail(err, KILN_EINVAL, "selftest.sm must name an SM like \"90\" or \"12.1\"");
            goto fail;
        }
    }
    out->sm_compat = json_is_true(json_object_get(spec, "sm_compat"));
    v = json_object_get(spec, "isa");
    if (v && !json_is_null(v)) {
        const char *isa = json_string_value(v);
        if (isa && !isa[0])
            isa = NULL; /* "{isa}" expanded to nothing */
        else if (!isa || !kiln_isa_level_features(isa)) {
            rc = kiln_fail(err, KILN_EINVAL, "selftest.isa is not a known ISA level");
            goto fail;
        }
        out->isa = isa ? strdup(isa) : NULL;
        if (isa && !out->isa) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto fail;
        }
    }
    v = json_object_get(spec, "driver_min");
    if (v && !json_is_null(v)) {
        /* A number, or a string from a template ("560", "580.65", ""). */
        unsigned maj = 0, min = 0;
        const char *ds = json_string_value(v);
        int okd = json_is_integer(v) ? json_integer_value(v) >= 0 && json_integer_value(v) <= 100000
                  : ds ? (!ds[0] || kiln_hostcheck_parse_driver(ds, &maj, &min) == KILN_OK)
                       : 0;
        if (!okd) {
            rc = kiln_fail(err, KILN_EINVAL, "selftest.driver_min must be a driver major version");
            goto fail;
        }
        out->driver_min = json_is_integer(v) ? (unsigned)json_integer_value(v) : maj;
    }
    v = json_object_get(spec, "checks");
    if (v && !json_is_null(v)) {
        if (!json_is_array(v)) {
            rc = kiln_fail(err, KILN_EINVAL, "selftest.checks must be a list");
            goto fail;
        }
        size_t n = json_array_size(v);
        if (n > KILN_SELFTEST_SPEC_MAX_ITEMS) {
            rc = kiln_fail(err, KILN_ELIMIT, "selftest.checks has %zu items", n);
            goto fail;
        }
        if (n) {
            out->check_names = calloc(n, sizeof *out->check_names);
            out->check_commands = calloc(n, sizeof *out->check_commands);
            out->check_timeouts_ms = calloc(n, sizeof *out->check_timeouts_ms);
            if (!out->check_names || !out->check_commands || !out->check_timeouts_ms) {
                rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
                goto fail;
            }
        }
        for (size_t i = 0; i < n; i++) {
            const json_t *c = json_array_get(v, i);
            const char *cmd = json_string_value(json_object_get(c, "command"));
            const char *name = json_string_value(json_object_get(c, "name"));
            const json_t *to = json_object_get(c, "timeout_s");
            if (!json_is_object(c) || !cmd || !cmd[0]) {
                rc = kiln_fail(err, KILN_EINVAL, "selftest.checks[%zu] needs a \"command\"", i);
                goto fail;
            }
            if (to && !json_is_null(to) &&
                (!json_is_number(to) || !(json_number_value(to) > 0) ||
                 json_number_value(to) > 86400)) {
                rc = kiln_fail(err, KILN_EINVAL,
                               "selftest.checks[%zu].timeout_s must be between 0 and 86400", i);
                goto fail;
            }
            out->nchecks = i + 1;
            out->check_commands[i] = strdup(cmd);
            if (name) out->check_names[i] = strdup(name);
            if (!out->check_commands[i] || (name && !out->check_names[i])) {
                rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
                goto fail;
            }
            out->check_timeouts_ms[i] =
                to && json_is_number(to) ? (long)(json_number_value(to) * 1000.0) : 0;
        }
    }
    rc = string_list(spec, "expect_symbols", &out->symbols, &out->nsymbols, err);
    if (rc) goto fail;
    rc = string_list(spec, "artifact_globs", &out->globs, &out->nglobs, err);
    if (rc) goto fail;
    return KILN_OK;
fail:
    kiln_selftest_spec_free(out);
    return rc;
}

struct strvec {
    char **v;
    size_t n, cap;
};

static int strvec_push(struct strvec *sv, const char *s)
{
    if (sv->n == sv->cap) {
        size_t nc = sv->cap ? sv->cap * 2 : 16;
        char **nv = realloc(sv->v, nc * sizeof *nv);
        if (!nv) return KILN_ENOMEM;
        sv->v = nv;
        sv->cap = nc;
    }
    sv->v[sv->n] = strdup(s);
    if (!sv->v[sv->n]) return KILN_ENOMEM;
    sv->n++;
    return KILN_OK;
}

static void strvec_free(struct strvec *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    memset(sv, 0, sizeof *sv);
}

int kiln_selftest_run_spec(const struct kiln_selftest_spec *spec,
                           const struct kiln_host_facts *facts, const char *selftest_dir,
                           char *const *binary_args, const char *workdir, const char *log_path,
                           json_t **out, struct kiln_error *err)
{
    *out = NULL;
    struct strvec files = {0};
    char binary[4096] = "";
    int rc = KILN_OK, missing_binary = 0;
    struct jctx c = {0};
    json_t *host = NULL, *doc = NULL;
    if (facts) {
        struct kiln_host_need need = {spec->sm, spec->sm_compat, spec->driver_min, spec->isa};
        struct kiln_error he;
        kiln_error_clear(&he);
        int hrc = kiln_hostcheck(facts, &need, &he);
        if (hrc != KILN_OK && hrc != KILN_ECONFLICT) return kiln_fail(err, hrc, "%s", he.msg);
        host =
            json_pack("{s:b,s:s?}", "ok", hrc == KILN_OK, "reason", hrc == KILN_OK ? NULL : he.msg);
        if (!host) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    if (selftest_dir && spec->sm) {
        snprintf(binary, sizeof binary, "%s/kiln-selftest-sm%u", selftest_dir, spec->sm);
        if (access(binary, X_OK) != 0) missing_binary = 1;
    }
    for (size_t g = 0; g < spec->nglobs; g++) {
        {
            char pat[4096];
            if (spec->globs[g][0] == '/' || !workdir)
                snprintf(pat, sizeof pat, "%s", spec->globs[g]);
            else
                snprintf(pat, sizeof pat, "%s/%s", workdir, spec->globs[g]);
            glob_t gl;
            memset(&gl, 0, sizeof gl);
            int grc = glob(pat, 0, NULL, &gl);
            for (size_t k = 0; grc == 0 && k < gl.gl_pathc && rc == KILN_OK; k++) {
                if (files.n >= KILN_SELFTEST_SPEC_MAX_ITEMS * 10) break;
                if (strvec_push(&files, gl.gl_pathv[k]) != KILN_OK)
                    rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            }
            globfree(&gl);
            if (rc) goto out;
        }
    }
    struct kiln_selftest_opts o;
    memset(&o, 0, sizeof o);
    o.binary = binary[0] && !missing_binary ? binary : NULL;
    o.binary_args = binary_args;
    o.log_path = log_path;
    o.cwd = workdir;
    o.checks = (const char *const *)spec->check_commands;
    o.check_names = (const char *const *)spec->check_names;
    o.check_timeouts_ms = spec->check_timeouts_ms;
    o.nchecks = spec->nchecks;
    o.inspect = (const char *const *)files.v;
    o.ninspect = files.n;
    o.inspect_opts.expect_sm = spec->sm;
    o.inspect_opts.symbols = spec->symbols;
    o.inspect_opts.nsymbols = spec->nsymbols;
    if (o.binary || o.nchecks || o.ninspect) {
        rc = kiln_selftest_run(&o, &doc, err);
        if (rc) goto out;
    } else {
        doc = json_pack("{s:b,s:[],s:[]}", "ok", 1, "reasons", "checks");
        if (!doc) {
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
            goto out;
        }
    }
    json_t *reasons = json_object_get(doc, "reasons");
    int ok = json_is_true(json_object_get(doc, "ok"));
    if (host) {
        if (!json_is_true(json_object_get(host, "ok"))) {
            ok = 0;
            add_reason(&c, reasons, "host: %s", json_string_value(json_object_get(host, "reason")));
        }
        jset(&c, doc, "host", host);
        host = NULL;
    }
    if (missing_binary) {
        ok = 0;
        add_reason(&c, reasons, "no GPU selftest binary %s (build it with make selftest SM=%u)",
                   binary, spec->sm);
    }
    if ((spec->nglobs || spec->nsymbols) && files.n == 0) {
        ok = 0;
        add_reason(&c, reasons,
                   "no artifact file matches the selftest's artifact_globs, so "
                   "nothing could be inspected");
    }
    jset(&c, doc, "ok", json_boolean(ok));
    if (c.oom) {
        rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto out;
    }
    *out = doc;
    doc = NULL;
out:
    json_decref(doc);
    json_decref(host);
    strvec_free(&files);
    return rc;
}
