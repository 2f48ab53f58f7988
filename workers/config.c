/* config.c - worker configuration file, overrides and sizes. */
#include "workers/config.h"

#include "common/units.h"

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/isa.h"
#include "common/json_field.h"

#include "common/yaml_json.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kiln_worker_config_defaults(struct kiln_worker_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->work_dir, sizeof c->work_dir, "./var/worker");
    c->reserve_ram_mb = 0;
    c->lease_wait_s = 10;
    c->stage_outputs = 1;
    c->stage_stall_s = 20;
    c->min_disk_free_mb = 2048;
    c->keep_job_dirs = 20;
    c->limit_method = KILN_LIMIT_AUTO;
    snprintf(c->log_level, sizeof c->log_level, "info");
}

void kiln_worker_config_free(struct kiln_worker_config *c)
{
    json_decref(c->labels);
    c->labels = NULL;
    json_decref(c->step_lease);
    c->step_lease = NULL;
}

static const char *method_names[] = {"auto", "cgroup2", "cgroup1", "poll"};

int kiln_limit_method_parse(const char *s, enum kiln_limit_method *out)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, method_names[i])) {
            *out = (enum kiln_limit_method)i;
            return KILN_OK;
        }
    return KILN_EINVAL;
}

const char *kiln_limit_method_name(enum kiln_limit_method m)
{
    return (unsigned)m < 4 ? method_names[m] : "?";
}

int kiln_size_parse(const char *s, uint64_t *bytes, struct kiln_error *err)
{
    /* common/units parses the units; a plain number means MiB here (the
     * natural unit of --ram and of RAM settings in the worker's config). */
    char t[64];
    const char *p = s;
    while (isspace((unsigned char)*p))
        p++;
    size_t n = strlen(p);
    while (n && isspace((unsigned char)p[n - 1]))
        n--;
    if (n == 0 || n + 1 >= sizeof t || !(isdigit((unsigned char)*p) || *p == '.'))
        return kiln_fail(err, KILN_EINVAL, "size \"%.40s\" is not a size like 64G or 512M", s);
    memcpy(t, p, n);
    t[n] = '\0';
    if (strspn(t, "0123456789.") == n) strcpy(t + n, "M"); /* n < 63: room for it */
    if (n + 1 >= sizeof t || kiln_parse_size(t, bytes) != KILN_OK)
        return kiln_fail(err, KILN_EINVAL, "size \"%.40s\" is not a size like 64G or 512M", s);
    return KILN_OK;
}

void kiln_size_format(uint64_t bytes, char *out, size_t outlen)
{
    kiln_format_size(bytes, out, outlen);
}

/* Config keys are named "config: <key>" in errors, like every other
 * problem this file reports; the checks themselves are common/json_field's.
 * Numbers may come quoted: YAML users write cores: "8" as often as 8. */
static int get_str(json_t *v, const char *key, char *out, size_t outlen, struct kiln_error *err)
{
    char name[96];
    snprintf(name, sizeof name, "config: %s", key);
    return kiln_json_want_strcpy(v, name, out, outlen, err);
}

static int get_int(json_t *v, const char *key, long lo, long hi, long *out, struct kiln_error *err)
{
    char name[96];
    long long x;
    snprintf(name, sizeof name, "config: %s", key);
    int rc = kiln_json_want_int(v, name, lo, hi, 1, &x, err);
    if (!rc) *out = (long)x;
    return rc;
}

static int get_size_mb(json_t *v, const char *key, long *out, struct kiln_error *err)
{
    uint64_t bytes;
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0)
            return kiln_fail(err, KILN_EINVAL, "config: %s must not be negative", key);
        *out = (long)json_integer_value(v);
        return KILN_OK;
    }
    if (!json_is_string(v))
        return kiln_fail(err, KILN_EINVAL, "config: %s must be a size like \"64G\"", key);
    struct kiln_error e2;
    if (kiln_size_parse(json_string_value(v), &bytes, &e2))
        return kiln_fail(err, KILN_EINVAL, "config: %s: %s", key, e2.msg);
    *out = (long)(bytes >> 20);
    return KILN_OK;
}

static int parse_gpus(struct kiln_worker_config *c, json_t *v, struct kiln_error *err)
{
    c->gpus_set = 1;
    c->ngpus = 0;
    if (json_is_string(v) && !strcmp(json_string_value(v), "none")) return KILN_OK;
    if (!json_is_array(v))
        return kiln_fail(err, KILN_EINVAL, "config: gpus must be \"none\" or a list of GPUs");
    size_t i;
    json_t *g;
    json_array_foreach(v, i, g)
    {
        if (c->ngpus >= KILN_MAX_GPUS)
            return kiln_fail(err, KILN_ELIMIT, "config: more than %d gpus", KILN_MAX_GPUS);
        if (!json_is_object(g))
            return kiln_fail(err, KILN_EINVAL, "config: gpus[%zu] must be a mapping", i);
        struct kiln_gpu *o = &c->gpus[c->ngpus];
        memset(o, 0, sizeof *o);
        o->index = (int)i;
        const char *k;
        json_t *x;
        json_object_foreach(g, k, x)
        {
            long n = 0;
            char key[64];
            snprintf(key, sizeof key, "gpus[%zu].%.30s", i, k);
            int rc;
            if (!strcmp(k, "index")) {
                rc = get_int(x, key, 0, 1024, &n, err);
                o->index = (int)n;
            } else if (!strcmp(k, "name"))
                rc = get_str(x, key, o->name, sizeof o->name, err);
            else if (!strcmp(k, "sm")) {
                if (json_is_integer(x)) {
                    snprintf(o->sm, sizeof o->sm, "%lld", (long long)json_integer_value(x));
                    rc = KILN_OK;
                } else
                    rc = get_str(x, key, o->sm, sizeof o->sm, err);
                for (const char *s = o->sm; !rc && *s; s++)
                    if (!isdigit((unsigned char)*s))
                        rc = kiln_fail(err, KILN_EINVAL, "config: %s must be digits like \"90\"",
                                       key);
                if (!rc && !o->sm[0]) rc = kiln_fail(err, KILN_EINVAL, "config: %s is empty", key);
            } else if (!strcmp(k, "memory_mb")) {
                rc = get_size_mb(x, key, &n, err);
                o->memory_mb = n;
            } else if (!strcmp(k, "driver"))
                rc = get_str(x, key, o->driver, sizeof o->driver, err);
            else
                rc = kiln_fail(err, KILN_EINVAL, "config: unknown key %s", key);
            if (rc) return rc;
        }
        if (!o->sm[0]) return kiln_fail(err, KILN_EINVAL, "config: gpus[%zu] needs an sm", i);
        if (!o->name[0]) {
            char sm[sizeof o->sm];
            memcpy(sm, o->sm, sizeof sm);
            snprintf(o->name, sizeof o->name, "GPU sm_%s", sm);
        }
        c->ngpus++;
    }
    return KILN_OK;
}

static int parse_isa(struct kiln_worker_config *c, json_t *v, struct kiln_error *err)
{
    char bad[64] = "";
    uint32_t mask = 0, m;
    if (json_is_string(v)) {
        /* A level name ("avx512") or a feature list ("avx avx2"). */
        uint32_t lvl = kiln_isa_level_features(json_string_value(v));
        if (lvl)
            mask = lvl;
        else if (kiln_isa_parse_features(json_string_value(v), &mask, bad, sizeof bad))
            return kiln_fail(err, KILN_EINVAL, "config: isa: unknown feature or level \"%s\"", bad);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (!json_is_string(x))
                return kiln_fail(err, KILN_EINVAL, "config: isa[%zu] must be a string", i);
            m = kiln_isa_level_features(json_string_value(x));
            if (!m) m = kiln_isa_feature(json_string_value(x));
            if (!m)
                return kiln_fail(err, KILN_EINVAL,
                                 "config: isa: unknown feature or level \"%.60s\"",
                                 json_string_value(x));
            mask |= m;
        }
    } else
        return kiln_fail(err, KILN_EINVAL, "config: isa must be a list of features");
    c->isa_set = 1;
    c->isa = mask;
    return KILN_OK;
}

static int read_token_file(struct kiln_worker_config *c, const char *path, struct kiln_error *err)
{
    struct kiln_buf b = {0};
    int rc = kiln_read_file(path, 4096, &b);
    if (rc) {
        kiln_buf_free(&b);
        return kiln_fail(err, rc, "config: cannot read token_file %s", path);
    }
    char empty[1] = "";
    char *s = b.data ? b.data : empty;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    while (isspace((unsigned char)*s))
        s++;
    if (!*s || strlen(s) >= sizeof c->token) {
        kiln_buf_free(&b);
        return kiln_fail(err, KILN_EINVAL, "config: token_file %s does not hold a token", path);
    }
    memcpy(c->token, s, strlen(s) + 1);
    kiln_buf_free(&b);
    return KILN_OK;
}

int kiln_worker_config_from_json(struct kiln_worker_config *c, json_t *doc, struct kiln_error *err)
{
    if (json_is_null(doc)) return KILN_OK; /* empty file */
    if (!json_is_object(doc))
        return kiln_fail(err, KILN_EINVAL, "config: the top level must be a mapping");
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v)
    {
        int rc;
        long n = 0;
        if (!strcmp(k, "server"))
            rc = get_str(v, k, c->server, sizeof c->server, err);
        else if (!strcmp(k, "token"))
            rc = get_str(v, k, c->token, sizeof c->token, err);
        else if (!strcmp(k, "token_file")) {
            char path[512];
            rc = get_str(v, k, path, sizeof path, err);
            if (!rc) rc = read_token_file(c, path, err);
        } else if (!strcmp(k, "ca_file"))
            rc = get_str(v, k, c->ca_file, sizeof c->ca_file, err);
        else if (!strcmp(k, "name"))
            rc = get_str(v, k, c->name, sizeof c->name, err);
        else if (!strcmp(k, "source_dir"))
            rc = get_str(v, k, c->source_dir, sizeof c->source_dir, err);
        else if (!strcmp(k, "selftest_dir"))
            rc = get_str(v, k, c->selftest_dir, sizeof c->selftest_dir, err);
        else if (!strcmp(k, "work_dir"))
            rc = get_str(v, k, c->work_dir, sizeof c->work_dir, err);
        else if (!strcmp(k, "log_level"))
            rc = get_str(v, k, c->log_level, sizeof c->log_level, err);
        else if (!strcmp(k, "cores")) {
            rc = get_int(v, k, 1, 100000, &n, err);
            c->cores = (int)n;
        } else if (!strcmp(k, "max_jobs")) {
            rc = get_int(v, k, 1, 10000, &n, err);
            c->max_jobs = (int)n;
        } else if (!strcmp(k, "heartbeat_s")) {
            rc = get_int(v, k, 1, 3600, &n, err);
            c->heartbeat_s = (int)n;
        } else if (!strcmp(k, "keep_job_dirs")) {
            rc = get_int(v, k, -1, 1000000, &n, err);
            c->keep_job_dirs = (int)n;
        } else if (!strcmp(k, "min_disk_free")) {
            rc = get_size_mb(v, k, &c->min_disk_free_mb, err);
        } else if (!strcmp(k, "stage_outputs")) {
            rc = json_is_boolean(v)
                     ? KILN_OK
                     : kiln_fail(err, KILN_EINVAL, "config: stage_outputs must be true or false");
            c->stage_outputs = json_is_true(v);
        } else if (!strcmp(k, "stage_stall_s")) {
            rc = get_int(v, k, 1, 3600, &n, err);
            c->stage_stall_s = (int)n;
        } else if (!strcmp(k, "lease_wait_s")) {
            rc = get_int(v, k, 0, 300, &n, err);
            c->lease_wait_s = (int)n;
        } else if (!strcmp(k, "ram"))
            rc = get_size_mb(v, k, &c->ram_mb, err);
        else if (!strcmp(k, "reserve_ram"))
            rc = get_size_mb(v, k, &c->reserve_ram_mb, err);
        else if (!strcmp(k, "isa"))
            rc = parse_isa(c, v, err);
        else if (!strcmp(k, "gpus"))
            rc = parse_gpus(c, v, err);
        else if (!strcmp(k, "labels")) {
            if (!json_is_object(v)) {
                rc = kiln_fail(err, KILN_EINVAL, "config: labels must be a mapping");
            } else {
                json_decref(c->labels);
                c->labels = json_deep_copy(v);
                rc = c->labels ? KILN_OK : kiln_fail(err, KILN_ENOMEM, "out of memory");
            }
        } else if (!strcmp(k, "limit_method")) {
            char m[32];
            rc = get_str(v, k, m, sizeof m, err);
            if (!rc && kiln_limit_method_parse(m, &c->limit_method))
                rc = kiln_fail(err, KILN_EINVAL,
                               "config: limit_method must be auto, cgroup2, cgroup1 or poll");
        } else
            rc = kiln_fail(err, KILN_EINVAL, "config: unknown key \"%.60s\"", k);
        if (rc) return rc;
    }
    return KILN_OK;
}

int kiln_worker_config_load(struct kiln_worker_config *c, const char *path, struct kiln_error *err)
{
    json_t *doc = NULL;
    int rc = kiln_yaml_to_json(path, NULL, 0, &doc, err);
    if (rc) return rc;
    struct kiln_error e2 = {0};
    int r = kiln_worker_config_from_json(c, doc, &e2);
    json_decref(doc);
    if (r) return kiln_fail(err, r, "%s: %s", path, e2.msg);
    return KILN_OK;
}

void kiln_worker_config_apply(const struct kiln_worker_config *c, struct kiln_host *h)
{
    if (c->name[0]) snprintf(h->hostname, sizeof h->hostname, "%s", c->name);
    if (c->cores > 0) h->cores = c->cores;
    if (c->ram_mb > 0) h->ram_mb = c->ram_mb;
    if (c->reserve_ram_mb > 0)
        h->ram_mb = h->ram_mb > c->reserve_ram_mb ? h->ram_mb - c->reserve_ram_mb : 1;
    if (c->isa_set) h->isa = c->isa;
    if (c->gpus_set) {
        h->ngpus = c->ngpus;
        memcpy(h->gpus, c->gpus, sizeof(struct kiln_gpu) * (size_t)c->ngpus);
        snprintf(h->gpu_source, sizeof h->gpu_source, "config");
        if (c->ngpus)
            snprintf(h->gpu_note, sizeof h->gpu_note, "%d GPU%s declared in the worker config",
                     c->ngpus, c->ngpus == 1 ? "" : "s");
        else
            snprintf(h->gpu_note, sizeof h->gpu_note, "no GPU (the worker config says none)");
    }
}
