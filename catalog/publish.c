/* publish.c - publish targets (S3, command) run on the loop after an entry
 * is in the embedded catalog. */
#include "catalog/publish.h"

#include "catalog/staging.h"

#include "catalog/s3.h"
#include "catalog/catalog.h"
#include "common/spawn.h"

#include <fnmatch.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct kiln_publisher {
    uv_loop_t *loop;
    struct kiln_catalog *cat;
    json_t *targets;
    struct kiln_s3_client *s3;
    struct run *runs;
    int freeing; /* freed when the last run finishes */
};

struct run;

struct job {
    struct run *run;
    int index;
    const char *type;
    int done;
    /* command */
    uv_process_t proc;
    uv_pipe_t out;
    uv_timer_t timer;
    int handles; /* open uv handles */
    int killed, exited, eof;
    int64_t exit_status;
    int term_signal;
    struct kiln_buf output; /* last bytes of stdout+stderr */
    char out_buf[4096];
};

struct run {
    struct kiln_publisher *p;
    struct run *next;
    json_t *entry;
    json_t *results;
    struct job *jobs;
    int njobs, pending, rc;
    kiln_publish_done_cb done;
    void *arg;
};

static int append_quoted(struct kiln_buf *out, const char *v)
{
    int rc = kiln_buf_puts(out, "'");
    for (const char *c = v; rc == KILN_OK && *c; c++)
        rc = *c == '\'' ? kiln_buf_puts(out, "'\\''") : kiln_buf_append(out, c, 1);
    return rc == KILN_OK ? kiln_buf_puts(out, "'") : rc;
}

int kiln_publish_template(const char *t, json_t *vars, int quote, struct kiln_buf *out,
                          struct kiln_error *err)
{
    kiln_buf_reset(out);
    int rc = kiln_buf_puts(out, "");
    while (rc == KILN_OK && *t) {
        if (t[0] == '{' && t[1] == '{') {
            rc = kiln_buf_puts(out, "{");
            t += 2;
            continue;
        }
        if (*t != '{') {
            rc = kiln_buf_append(out, t++, 1);
            continue;
        }
        const char *end = strchr(t, '}');
        if (!end || end - t - 1 <= 0 || end - t - 1 > 64)
            return kiln_fail(err, KILN_EINVAL,
                             "template has an unclosed or empty '{' near \"%.20s\"", t);
        char name[80];
        memcpy(name, t + 1, (size_t)(end - t - 1));
        name[end - t - 1] = 0;
        json_t *v = json_object_get(vars, name);
        char num[64];
        const char *s = json_string_value(v);
        if (json_is_integer(v)) {
            snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
            s = num;
        } else if (json_is_real(v)) {
            snprintf(num, sizeof num, "%g", json_real_value(v));
            s = num;
        }
        if (!s) {
            if (v && json_is_null(v))
                s = "";
            else
                return kiln_fail(err, KILN_EINVAL, "template uses {%s}, which is not a field",
                                 name);
        }
        rc = quote ? append_quoted(out, s) : kiln_buf_puts(out, s);
        t = end + 1;
    }
    return rc == KILN_OK ? KILN_OK : kiln_fail(err, rc, "out of memory");
}

static int match_one(json_t *pat, const char *val)
{
    if (json_is_string(pat)) return val && fnmatch(json_string_value(pat), val, 0) == 0;
    if (json_is_array(pat)) {
        size_t i;
        json_t *x;
        json_array_foreach(pat, i, x) if (match_one(x, val)) return 1;
    }
    return 0;
}

int kiln_publish_match(json_t *match, json_t *entry)
{
    if (!match || json_is_null(match)) return 1;
    const char *k;
    json_t *pat;
    json_object_foreach(match, k, pat)
    {
        json_t *v = json_object_get(entry, k);
        if (!v) v = json_object_get(json_object_get(entry, "meta"), k);
        char num[64];
        const char *s = json_string_value(v);
        if (json_is_integer(v)) {
            snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
            s = num;
        }
        if (!match_one(pat, s)) return 0;
    }
    return 1;
}

/* Template variables: top-level fields of the entry and its metadata. */
static json_t *vars_of(struct kiln_catalog *cat, json_t *entry)
{
    json_t *v = json_object();
    const char *k;
    json_t *x;
    json_object_foreach(json_object_get(entry, "meta"), k,
                        x) if (json_is_string(x) || json_is_number(x)) json_object_set(v, k, x);
    json_object_foreach(entry, k, x) if (json_is_string(x) || json_is_number(x) || json_is_null(x))
        json_object_set(v, k, x);
    const char *d = json_string_value(json_object_get(entry, "digest"));
    char path[PATH_MAX];
    if (d) {
        json_object_set_new(v, "hex", json_string(d + 7));
        if (kiln_catalog_blob_path(cat, d, path, sizeof path) == KILN_OK)
            json_object_set_new(v, "path", json_string(path));
    }
    return v;
}

static int check_target(json_t *t, int i, struct kiln_error *err)
{
    const char *type = json_string_value(json_object_get(t, "type"));
    if (!json_is_object(t) || !type)
        return kiln_fail(err, KILN_EINVAL, "publish target %d needs a \"type\" (s3 or command)", i);
    json_t *m = json_object_get(t, "match");
    if (m && !json_is_object(m))
        return kiln_fail(err, KILN_EINVAL, "publish target %d: match must be a mapping", i);
    /* Probe templates with every known field set, to catch typos early. */
    json_t *probe = json_object();
    const char *fields[] = {"id",     "name",     "version",    "recipe",     "branch",
                            "commit", "platform", "sm",         "capability", "isa",
                            "cuda",   "python",   "store_path", "digest",     "hex",
                            "size",   "path",     "driver_min", NULL};
    for (int f = 0; fields[f]; f++)
        json_object_set_new(probe, fields[f], json_string("x"));
    struct kiln_buf b = {0};
    int rc = KILN_OK;
    if (!strcmp(type, "command")) {
        const char *cmd = json_string_value(json_object_get(t, "command"));
        if (!cmd || !*cmd)
            rc = kiln_fail(err, KILN_EINVAL, "publish target %d (command) needs \"command\"", i);
        else if (kiln_publish_template(cmd, probe, 1, &b, err) != KILN_OK)
            rc = KILN_EINVAL;
    } else if (!strcmp(type, "s3")) {
        const char *need[] = {"endpoint", "bucket", NULL};
        for (int f = 0; need[f] && rc == KILN_OK; f++)
            if (!json_string_value(json_object_get(t, need[f])))
                rc = kiln_fail(err, KILN_EINVAL, "publish target %d (s3) needs \"%s\"", i, need[f]);
        const char *key = json_string_value(json_object_get(t, "key"));
        if (rc == KILN_OK && key && kiln_publish_template(key, probe, 0, &b, err) != KILN_OK)
            rc = KILN_EINVAL;
    } else {
        rc = kiln_fail(err, KILN_EINVAL, "publish target %d: unknown type \"%s\" (s3 or command)",
                       i, type);
    }
    kiln_buf_free(&b);
    json_decref(probe);
    return rc;
}

int kiln_publisher_new(uv_loop_t *loop, struct kiln_catalog *cat, json_t *config,
                       struct kiln_publisher **out, struct kiln_error *err)
{
    *out = NULL;
    json_t *targets = json_object_get(config, "targets");
    if (config && !json_is_null(config) && !json_is_object(config))
        return kiln_fail(err, KILN_EINVAL, "publish configuration must be a mapping");
    if (targets && !json_is_array(targets))
        return kiln_fail(err, KILN_EINVAL, "publish.targets must be a list");
    size_t i;
    json_t *t;
    json_array_foreach(targets, i, t)
    {
        int rc = check_target(t, (int)i, err);
        if (rc != KILN_OK) return rc;
    }
    struct kiln_publisher *p = calloc(1, sizeof *p);
    if (!p) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    p->loop = loop;
    p->cat = cat;
    p->targets = targets ? json_incref(targets) : json_array();
    *out = p;
    return KILN_OK;
}

static void run_finish_if_done(struct run *r)
{
    if (r->pending > 0) return;
    for (int i = 0; i < r->njobs; i++)
        if (r->jobs[i].handles > 0) return; /* wait for handle closes */
    struct run **pp = &r->p->runs;
    while (*pp && *pp != r)
        pp = &(*pp)->next;
    if (*pp) *pp = r->next;
    if (r->done) r->done(r->arg, r->rc, r->results);
    for (int i = 0; i < r->njobs; i++)
        kiln_buf_free(&r->jobs[i].output);
    free(r->jobs);
    json_decref(r->entry);
    json_decref(r->results);
    struct kiln_publisher *p = r->p;
    free(r);
    if (p->freeing && !p->runs) {
        json_decref(p->targets);
        free(p);
    }
}

static void job_result(struct job *j, int rc, const char *msg)
{
    if (j->done) return;
    j->done = 1;
    struct run *r = j->run;
    json_array_append_new(r->results,
                          json_pack("{s:i,s:s,s:b,s:s}", "target", j->index, "type", j->type, "ok",
                                    rc == KILN_OK, "message", msg ? msg : ""));
    if (rc != KILN_OK && r->rc == KILN_OK) r->rc = rc;
    r->pending--;
}

/* --- command target --- */

static void cmd_handle_closed(uv_handle_t *h)
{
    struct job *j = h->data;
    j->handles--;
    run_finish_if_done(j->run);
}

static void cmd_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)sz;
    struct job *j = h->data;
    *b = uv_buf_init(j->out_buf, sizeof j->out_buf);
}

static void cmd_report(struct job *j)
{
    char msg[1200];
    const char *tail = j->output.data ? j->output.data : "";
    size_t tl = strlen(tail);
    if (tl > 800) tail += tl - 800;
    if (j->killed)
        snprintf(msg, sizeof msg, "command timed out and was killed; output: %s", tail);
    else if (j->term_signal)
        snprintf(msg, sizeof msg, "command killed by signal %d; output: %s", j->term_signal, tail);
    else if (j->exit_status)
        snprintf(msg, sizeof msg, "command exited with status %lld; output: %s",
                 (long long)j->exit_status, tail);
    else
        snprintf(msg, sizeof msg, "ok; output: %s", tail);
    job_result(j,
               j->killed                          ? KILN_ETIMEOUT
               : j->term_signal || j->exit_status ? KILN_EIO
                                                  : KILN_OK,
               msg);
}

static void cmd_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct job *j = s->data;
    if (n > 0) {
        if (j->output.len + (size_t)n > 16384) kiln_buf_consume(&j->output, j->output.len / 2);
        kiln_buf_append(&j->output, b->base, (size_t)n);
        return;
    }
    if (n < 0 && !j->eof) {
        j->eof = 1;
        uv_close((uv_handle_t *)&j->out, cmd_handle_closed);
        if (j->exited) cmd_report(j); /* report once both the exit and EOF are in */
    }
}

static void cmd_exit(uv_process_t *pr, int64_t status, int sig)
{
    struct job *j = pr->data;
    j->exit_status = status;
    j->term_signal = sig;
    j->exited = 1;
    uv_timer_stop(&j->timer);
    uv_close((uv_handle_t *)&j->timer, cmd_handle_closed);
    uv_close((uv_handle_t *)pr, cmd_handle_closed);
    if (j->eof) cmd_report(j);
}

static void cmd_timeout(uv_timer_t *t)
{
    struct job *j = t->data;
    j->killed = 1;
    uv_kill(-j->proc.pid, SIGKILL);
}

static int start_command(struct job *j, json_t *t, json_t *vars, struct kiln_error *err)
{
    struct run *r = j->run;
    struct kiln_buf cmd = {0};
    int rc =
        kiln_publish_template(json_string_value(json_object_get(t, "command")), vars, 1, &cmd, err);
    if (rc != KILN_OK) {
        kiln_buf_free(&cmd);
        return rc;
    }
    uv_pipe_init(r->p->loop, &j->out, 0);
    j->out.data = j;
    j->handles++;
    uv_timer_init(r->p->loop, &j->timer);
    j->timer.data = j;
    j->handles++;
    /* stderr joins stdout so the report shows both */
    struct kiln_buf full = {0};
    if (kiln_buf_printf(&full, "exec 2>&1; %s", cmd.data) != KILN_OK) {
        kiln_buf_free(&cmd);
        uv_close((uv_handle_t *)&j->out, cmd_handle_closed);
        uv_close((uv_handle_t *)&j->timer, cmd_handle_closed);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    char *args[] = {"/bin/sh", "-c", full.data, NULL};
    uv_stdio_container_t io[3];
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[1].data.stream = (uv_stream_t *)&j->out;
    io[2].flags = UV_IGNORE;
    j->proc.data = j;
    rc = kiln_spawn_uv(r->p->loop, &j->proc, args, NULL, NULL, io, cmd_exit, err);
    kiln_buf_free(&cmd);
    kiln_buf_free(&full);
    if (rc != KILN_OK) {
        uv_close((uv_handle_t *)&j->out, cmd_handle_closed);
        uv_close((uv_handle_t *)&j->timer, cmd_handle_closed);
        return rc;
    }
    j->handles++;
    json_int_t to = json_integer_value(json_object_get(t, "timeout_s"));
    uv_timer_start(&j->timer, cmd_timeout, (uint64_t)(to > 0 ? to : 600) * 1000, 0);
    uv_read_start((uv_stream_t *)&j->out, cmd_alloc, cmd_read);
    return KILN_OK;
}

/* --- s3 target --- */

static void s3_done(void *arg, int rc, const char *msg)
{
    struct job *j = arg;
    job_result(j, rc, msg);
    run_finish_if_done(j->run);
}

static int start_s3(struct job *j, json_t *t, json_t *vars, struct kiln_error *err)
{
    struct kiln_publisher *p = j->run->p;
    if (!p->s3) {
        int rc = kiln_s3_client_new(p->loop, &p->s3, err);
        if (rc != KILN_OK) return rc;
    }
    struct kiln_s3_cfg cfg = {0};
    const char *ak_env = json_string_value(json_object_get(t, "access_key_env"));
    const char *sk_env = json_string_value(json_object_get(t, "secret_key_env"));
    const char *ak = getenv(ak_env ? ak_env : "KILN_S3_ACCESS_KEY");
    const char *sk = getenv(sk_env ? sk_env : "KILN_S3_SECRET_KEY");
    const char *region = json_string_value(json_object_get(t, "region"));
    snprintf(cfg.endpoint, sizeof cfg.endpoint, "%s",
             json_string_value(json_object_get(t, "endpoint")));
    snprintf(cfg.bucket, sizeof cfg.bucket, "%s", json_string_value(json_object_get(t, "bucket")));
    snprintf(cfg.region, sizeof cfg.region, "%s", region ? region : "us-east-1");
    snprintf(cfg.access_key, sizeof cfg.access_key, "%s", ak ? ak : "");
    snprintf(cfg.secret_key, sizeof cfg.secret_key, "%s", sk ? sk : "");
    cfg.part_size = (uint64_t)json_integer_value(json_object_get(t, "part_size"));
    cfg.multipart_threshold =
        (uint64_t)json_integer_value(json_object_get(t, "multipart_threshold"));
    cfg.max_retries = (int)json_integer_value(json_object_get(t, "max_retries"));
    cfg.backoff_ms = (unsigned)json_integer_value(json_object_get(t, "backoff_ms"));
    const char *kt = json_string_value(json_object_get(t, "key"));
    struct kiln_buf key = {0};
    int rc = kiln_publish_template(kt ? kt : "{name}/{version}/{hex}", vars, 0, &key, err);
    const char *path = json_string_value(json_object_get(vars, "path"));
    const char *hex = json_string_value(json_object_get(vars, "hex"));
    if (rc == KILN_OK)
        rc = kiln_s3_put_file(p->s3, &cfg, key.data, path ? path : "", hex, NULL, s3_done, j, err);
    kiln_buf_free(&key);
    return rc;
}

int kiln_publisher_run(struct kiln_publisher *p, int64_t entry_id, kiln_publish_done_cb done,
                       void *arg, struct kiln_error *err)
{
    json_t *entry = NULL;
    int rc = kiln_catalog_get(p->cat, entry_id, &entry, err);
    if (rc != KILN_OK) return rc;
    struct run *r = calloc(1, sizeof *r);
    size_t nt = json_array_size(p->targets);
    if (!r || !(r->jobs = calloc(nt ? nt : 1, sizeof *r->jobs))) {
        free(r);
        json_decref(entry);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    r->p = p;
    r->entry = entry;
    r->results = json_array();
    r->done = done;
    r->arg = arg;
    r->next = p->runs;
    p->runs = r;
    json_t *vars = vars_of(p->cat, entry);
    r->pending = 1; /* held until every target started */
    for (size_t i = 0; i < nt; i++) {
        json_t *t = json_array_get(p->targets, i);
        if (!kiln_publish_match(json_object_get(t, "match"), entry)) continue;
        struct job *j = &r->jobs[r->njobs++];
        j->run = r;
        j->index = (int)i;
        j->type = json_string_value(json_object_get(t, "type"));
        r->pending++;
        struct kiln_error e = {0};
        int src = !strcmp(j->type, "s3") ? start_s3(j, t, vars, &e) : start_command(j, t, vars, &e);
        if (src != KILN_OK) job_result(j, src, e.msg);
    }
    json_decref(vars);
    r->pending--;
    run_finish_if_done(r);
    return KILN_OK;
}

void kiln_publisher_free(struct kiln_publisher *p)
{
    if (!p) return;
    for (struct run *r = p->runs; r; r = r->next)
        for (int i = 0; i < r->njobs; i++)
            if (!r->jobs[i].done && r->jobs[i].proc.pid > 0) uv_kill(-r->jobs[i].proc.pid, SIGKILL);
    kiln_s3_client_free(p->s3); /* its uploads report KILN_ESTATE now */
    p->s3 = NULL;
    if (p->runs) {
        p->freeing = 1; /* commands still closing: the last run frees p */
        return;
    }
    json_decref(p->targets);
    free(p);
}

/* ---------------- publishing a finished job ---------------- */

json_t *kiln_publish_job_meta(json_t *job)
{
    json_t *attrs = json_object_get(job, "attrs");
    json_t *res = json_object_get(job, "resources");
    const char *commit = json_string_value(json_object_get(job, "commit"));
    const char *ver = json_string_value(json_object_get(attrs, "version"));
    char vbuf[64];
    if (!ver) {
        if (commit && strlen(commit) >= 7)
            snprintf(vbuf, sizeof vbuf, "%.12s", commit);
        else
            snprintf(vbuf, sizeof vbuf, "job%lld",
                     (long long)json_integer_value(json_object_get(job, "id")));
        ver = vbuf;
    }
    json_t *m = json_pack("{s:O?,s:s,s:O?,s:O?,s:O?,s:I}", "name", json_object_get(job, "name"),
                          "version", ver, "recipe", json_object_get(job, "recipe"), "branch",
                          json_object_get(job, "branch"), "commit", json_object_get(job, "commit"),
                          "job", json_integer_value(json_object_get(job, "id")));
    if (!m) return NULL;
    static const char *from_attrs[] = {"sm", "capability", "isa", "cuda", "python", NULL};
    for (int i = 0; from_attrs[i]; i++) {
        json_t *v = json_object_get(attrs, from_attrs[i]);
        if (json_is_string(v)) json_object_set(m, from_attrs[i], v);
    }
    if (!json_object_get(m, "sm") && json_is_string(json_object_get(res, "gpu_sm")))
        json_object_set(m, "sm", json_object_get(res, "gpu_sm"));
    if (json_is_string(json_object_get(res, "platform")))
        json_object_set(m, "platform", json_object_get(res, "platform"));
    json_t *dm = json_object_get(res, "driver_min");
    if (!json_is_integer(dm))
        dm = json_object_get(json_object_get(job, "selftest_spec"), "driver_min");
    if (json_is_integer(dm)) json_object_set(m, "driver_min", dm);
    json_t *st = json_object_get(job, "selftest");
    if (st && !json_is_null(st)) json_object_set(m, "selftest", st);
    if (json_is_object(attrs)) json_object_set(m, "attrs", attrs);
    /* Drop nulls so the signed document only has what is known. */
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(m, tmp, k, v) if (json_is_null(v)) json_object_del(m, k);
    return m;
}

struct pjob {
    struct kiln_publisher *p;
    json_t *meta, *outputs, *artifacts;
    size_t next;
    uv_work_t work;
    char path[1024];
    char digest[KILN_DIGEST_STR];
    uint64_t size;
    json_t *nix;
    int rc;
    struct kiln_error e;
    int64_t first_id;
    int64_t release_id; /* > 0: held in that release, no targets now */
    kiln_publish_done_cb done;
    void *arg;
};

static void pjob_finish(struct pjob *pj, int rc, const char *msg, json_t *targets)
{
    json_t *tg = targets ? targets : json_array();
    json_t *out = json_pack("{s:O,s:O,s:s}", "artifacts", pj->artifacts, "targets", tg, "message",
                            msg ? msg : "");
    json_t *first = json_array_get(pj->artifacts, 0);
    if (out && first) json_object_set(out, "artifact", first);
    if (pj->done) pj->done(pj->arg, rc, out);
    json_decref(out);
    json_decref(tg);
    json_decref(pj->meta);
    json_decref(pj->outputs);
    json_decref(pj->artifacts);
    json_decref(pj->nix);
    free(pj);
}

static void pjob_targets_done(void *arg, int rc, json_t *results)
{
    struct pjob *pj = arg;
    pjob_finish(pj, rc, rc == KILN_OK ? "published" : "a publish target failed",
                json_incref(results));
}

static void pjob_after_entries(struct pjob *pj)
{
    if (!json_array_size(pj->artifacts)) {
        pjob_finish(pj, KILN_OK, "nothing to publish: the job reported no outputs", NULL);
        return;
    }
    if (pj->release_id > 0) {
        pjob_finish(pj, KILN_OK, "held for its release: published when every variant passed",
                    NULL);
        return;
    }
    struct kiln_error e = {0};
    if (kiln_publisher_run(pj->p, pj->first_id, pjob_targets_done, pj, &e) != KILN_OK)
        pjob_finish(pj, e.code, e.msg, NULL);
}

static void pjob_next(struct pjob *pj);

static void pjob_export_work(uv_work_t *w)
{
    struct pjob *pj = w->data;
    pj->rc =
        kiln_catalog_import_path(pj->p->cat, pj->path, pj->digest, &pj->size, &pj->nix, &pj->e);
}

static void pjob_export_done(uv_work_t *w, int status)
{
    struct pjob *pj = w->data;
    if (status != 0 && pj->rc == KILN_OK) pj->rc = kiln_fail(&pj->e, KILN_EIO, "export cancelled");
    if (pj->rc != KILN_OK) {
        char msg[KILN_ERR_MSG_MAX + 1100];
        snprintf(msg, sizeof msg, "exporting %s: %s", pj->path, pj->e.msg);
        pjob_finish(pj, pj->rc, msg, NULL);
        return;
    }
    json_t *m = json_deep_copy(pj->meta);
    size_t k = pj->next - 1;
    if (k > 0) {
        char name[256];
        snprintf(name, sizeof name, "%s-out%zu", json_string_value(json_object_get(m, "name")), k);
        json_object_set_new(m, "name", json_string(name));
    }
    json_object_set_new(m, "nix", pj->nix);
    pj->nix = NULL;
    int64_t id = 0;
    struct kiln_error e = {0};
    int rc = kiln_catalog_publish_held(pj->p->cat, m, pj->digest, pj->release_id, &id, NULL, &e);
    if (rc == KILN_OK) {
        json_array_append_new(pj->artifacts,
                              json_pack("{s:I,s:s,s:I,s:O}", "catalog_id", (json_int_t)id, "digest",
                                        pj->digest, "size", (json_int_t)pj->size, "name",
                                        json_object_get(m, "name")));
        if (!pj->first_id) pj->first_id = id;
    }
    json_decref(m);
    if (rc != KILN_OK) {
        pjob_finish(pj, rc, e.msg, NULL);
        return;
    }
    pjob_next(pj);
}

static void pjob_next(struct pjob *pj)
{
    if (pj->next >= json_array_size(pj->outputs)) {
        pjob_after_entries(pj);
        return;
    }
    const char *path = json_string_value(json_array_get(pj->outputs, pj->next++));
    /* Staged by the build's worker: promoted as it is, no second upload. */
    struct kiln_error se = {0};
    if (path && strlen(path) < sizeof pj->path &&
        kiln_staging_lookup(pj->p->cat, path, pj->digest, &pj->size, &pj->nix, &se) == 1) {
        snprintf(pj->path, sizeof pj->path, "%s", path);
        pj->rc = KILN_OK;
        pj->work.data = pj;
        pjob_export_done(&pj->work, 0);
        return;
    }
    if (!path || strlen(path) >= sizeof pj->path || access(path, F_OK) != 0) {
        char msg[1200];
        snprintf(msg, sizeof msg,
                 "output %s is neither staged nor in this host's Nix store; the build's "
                 "worker stages it (workers/stage.h)",
                 path ? path : "(not a string)");
        pjob_finish(pj, KILN_ENOTFOUND, msg, NULL);
        return;
    }
    snprintf(pj->path, sizeof pj->path, "%s", path);
    pj->work.data = pj;
    if (uv_queue_work(pj->p->loop, &pj->work, pjob_export_work, pjob_export_done) != 0)
        pjob_finish(pj, KILN_EIO, "cannot queue the export", NULL);
}

static void pjob_start_cb(uv_work_t *w)
{
    (void)w;
}

static void pjob_started(uv_work_t *w, int status)
{
    (void)status;
    pjob_next(w->data);
}

int kiln_publish_job(struct kiln_publisher *p, json_t *job, kiln_publish_done_cb done, void *arg,
                     struct kiln_error *err)
{
    return kiln_publish_job_held(p, job, 0, done, arg, err);
}

int kiln_publish_job_held(struct kiln_publisher *p, json_t *job, int64_t release_id,
                          kiln_publish_done_cb done, void *arg, struct kiln_error *err)
{
    json_t *meta = kiln_publish_job_meta(job);
    if (!meta) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    const char *name = json_string_value(json_object_get(meta, "name"));
    if (!name || !kiln_catalog_name_valid(name)) {
        json_decref(meta);
        return kiln_fail(err, KILN_EINVAL, "job name '%s' cannot be a catalog name",
                         name ? name : "");
    }
    struct pjob *pj = calloc(1, sizeof *pj);
    if (!pj) {
        json_decref(meta);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    pj->p = p;
    pj->release_id = release_id;
    pj->meta = meta;
    pj->done = done;
    pj->arg = arg;
    pj->artifacts = json_array();
    json_t *outs = json_object_get(job, "outputs");
    pj->outputs = json_is_array(outs) ? json_incref(outs) : json_array();
    /* Already published (the worker uploaded it, or a retry)? Then only the
     * other targets run. */
    json_t *f = json_pack("{s:s,s:O}", "name", name, "version", json_object_get(meta, "version"));
    json_t *found = NULL;
    if (kiln_catalog_list(p->cat, f, &found, NULL) == KILN_OK && json_array_size(found)) {
        json_t *e = json_array_get(found, 0);
        pj->first_id = json_integer_value(json_object_get(e, "id"));
        json_array_append_new(pj->artifacts,
                              json_pack("{s:O,s:O,s:O,s:O}", "catalog_id", json_object_get(e, "id"),
                                        "digest", json_object_get(e, "digest"), "size",
                                        json_object_get(e, "size"), "name",
                                        json_object_get(e, "name")));
        json_decref(pj->outputs);
        pj->outputs = json_array(); /* nothing to export */
    }
    json_decref(found);
    json_decref(f);
    /* Always answer asynchronously: callers may hold state while calling. */
    pj->work.data = pj;
    if (uv_queue_work(p->loop, &pj->work, pjob_start_cb, pjob_started) != 0) {
        pjob_finish(pj, KILN_EIO, "cannot queue the publish", NULL);
    }
    return KILN_OK;
}
