/* farm.c - farm YAML -> struct kiln_farm (see farm.h). */
#include "scheduler/farm.h"

#include "common/isa.h"
#include "common/json_field.h"
#include "common/units.h"
#include "common/yaml_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kiln_farm_free(struct kiln_farm *f)
{
    if (!f) return;
    free(f->hosts);
    f->hosts = NULL;
    f->nhosts = 0;
}

static int copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= cap) return -1;
    memcpy(dst, s, n + 1);
    return 0;
}

/* isa: a level name, or a list of level and feature names */
static int parse_isa(const json_t *v, uint32_t *out, const char **first_level, char *bad,
                     size_t badlen)
{
    *out = 0;
    const json_t *one = v;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
        if (json_is_array(v)) one = json_array_get(v, i);
        if (!json_is_string(one)) {
            snprintf(bad, badlen, "(not a string)");
            return -1;
        }
        const char *s = json_string_value(one);
        uint32_t f = kiln_isa_level_features(s);
        if (f) {
            if (!*first_level) *first_level = s;
        } else {
            f = kiln_isa_feature(s);
        }
        if (!f) {
            snprintf(bad, badlen, "%s", s);
            return -1;
        }
        *out |= f;
    }
    return 0;
}

/* 0 when v is an integer in [lo, hi] (the one reader in common/json_field;
 * farm.c words its own errors with the host and field names). */
static int get_int(const json_t *v, long long lo, long long hi, long long *out)
{
    return kiln_json_want_int(v, "value", lo, hi, 0, out, NULL) == KILN_OK ? 0 : -1;
}

static int parse_gpus(const char *name, size_t hi, const char *hname, const json_t *gpus,
                      struct kiln_farm_host *h, struct kiln_error *err)
{
    static const char *const keys[] = {"model", "sm", "driver", "count", NULL};
    if (!json_is_array(gpus))
        return kiln_fail(err, KILN_EINVAL, "%s: hosts[%zu] (%s): gpus must be a list", name, hi,
                         hname);
    for (size_t g = 0; g < json_array_size(gpus); g++) {
        const json_t *o = json_array_get(gpus, g);
        if (!json_is_object(o))
            return kiln_fail(err, KILN_EINVAL, "%s: hosts[%zu] (%s): gpus[%zu] must be a mapping",
                             name, hi, hname, g);
        char where[256];
        snprintf(where, sizeof where, "%s: hosts[%zu] (%s): gpus[%zu]", name, hi, hname, g);
        int rc = kiln_json_only_keys(o, keys, where, err);
        if (rc) return rc;
        const json_t *sm = json_object_get(o, "sm");
        char smbuf[16];
        if (json_is_integer(sm) && json_integer_value(sm) > 0 && json_integer_value(sm) < 10000)
            snprintf(smbuf, sizeof smbuf, "%lld", (long long)json_integer_value(sm));
        else if (json_is_string(sm) && strlen(json_string_value(sm)) < sizeof smbuf)
            snprintf(smbuf, sizeof smbuf, "%s", json_string_value(sm));
        else
            smbuf[0] = 0;
        if (!smbuf[0] || strlen(smbuf) >= KILN_PLACE_SM_MAX || !kiln_sm_matches(smbuf, smbuf, 0))
            return kiln_fail(err, KILN_EINVAL,
                             "%s: hosts[%zu] (%s): gpus[%zu]: sm must be like \"90\" or \"120\"",
                             name, hi, hname, g);
        long long drv = 0, cnt = 1;
        const json_t *d = json_object_get(o, "driver");
        if (d) {
            if (json_is_string(d))
                drv = kiln_driver_major(json_string_value(d));
            else if (get_int(d, 0, 100000, &drv))
                drv = -1;
            if (drv <= 0)
                return kiln_fail(err, KILN_EINVAL,
                                 "%s: hosts[%zu] (%s): gpus[%zu]: driver must be like 580 or "
                                 "\"580.65.06\"",
                                 name, hi, hname, g);
        }
        const json_t *c = json_object_get(o, "count");
        if (c && get_int(c, 1, KILN_PLACE_MAX_GPUS, &cnt))
            return kiln_fail(err, KILN_EINVAL,
                             "%s: hosts[%zu] (%s): gpus[%zu]: count must be 1..%d", name, hi, hname,
                             g, KILN_PLACE_MAX_GPUS);
        const json_t *m = json_object_get(o, "model");
        if (m && !json_is_string(m))
            return kiln_fail(err, KILN_EINVAL, "%s: hosts[%zu] (%s): gpus[%zu]: model must be text",
                             name, hi, hname, g);
        for (long long k = 0; k < cnt; k++) {
            if (h->ngpus >= KILN_PLACE_MAX_GPUS)
                return kiln_fail(err, KILN_ELIMIT, "%s: hosts[%zu] (%s): more than %d GPUs", name,
                                 hi, hname, KILN_PLACE_MAX_GPUS);
            struct kiln_pgpu *gp = &h->gpus[h->ngpus];
            gp->index = h->ngpus;
            memcpy(gp->sm, smbuf, sizeof gp->sm);
            gp->sm[sizeof gp->sm - 1] = 0;
            gp->driver = (int)drv;
            gp->busy = 0;
            snprintf(h->gpu_model[h->ngpus], sizeof h->gpu_model[0], "%s",
                     m ? json_string_value(m) : "");
            h->ngpus++;
        }
    }
    return KILN_OK;
}

int kiln_farm_from_json(const char *name, const json_t *root, struct kiln_farm *out,
                        struct kiln_error *err)
{
    static const char *const top_keys[] = {"hosts", "farm", "description", NULL};
    static const char *const keys[] = {"name", "count", "platform", "cores",  "ram", "ram_mb",
                                       "isa",  "speed", "gpus",     "builds", NULL};
    memset(out, 0, sizeof *out);
    if (!json_is_object(root))
        return kiln_fail(err, KILN_EINVAL, "%s: a farm is a mapping with a hosts list", name);
    if (kiln_json_only_keys(root, top_keys, name, err)) return KILN_EINVAL;
    const json_t *hosts = json_object_get(root, "hosts");
    if (!json_is_array(hosts) || !json_array_size(hosts))
        return kiln_fail(err, KILN_EINVAL, "%s: hosts must be a non-empty list", name);
    size_t cap = 0;
    int rc = KILN_OK;
    for (size_t hi = 0; hi < json_array_size(hosts) && !rc; hi++) {
        const json_t *o = json_array_get(hosts, hi);
        struct kiln_farm_host h;
        memset(&h, 0, sizeof h);
        h.speed = 1.0;
        if (!json_is_object(o)) {
            rc = kiln_fail(err, KILN_EINVAL, "%s: hosts[%zu] must be a mapping", name, hi);
            break;
        }
        const json_t *nm = json_object_get(o, "name");
        if (!json_is_string(nm) || copy_str(h.kind, sizeof h.kind - 8, json_string_value(nm))) {
            rc = kiln_fail(err, KILN_EINVAL, "%s: hosts[%zu]: name must be text of 1..%zu bytes",
                           name, hi, sizeof h.kind - 9);
            break;
        }
        const char *hn = h.kind;
        char where[256];
        snprintf(where, sizeof where, "%s: hosts[%zu] (%s)", name, hi, hn);
        if ((rc = kiln_json_only_keys(o, keys, where, err))) break;
        long long count = 1, cores = 0, ram_mb = 0;
        const json_t *v;
        if ((v = json_object_get(o, "count")) && get_int(v, 1, KILN_FARM_MAX_COUNT, &count)) {
            rc = kiln_fail(err, KILN_EINVAL, "%s: hosts[%zu] (%s): count must be 1..%d", name, hi,
                           hn, KILN_FARM_MAX_COUNT);
            break;
        }
        if (get_int(json_object_get(o, "cores"), 1, 1 << 20, &cores)) {
            rc = kiln_fail(err, KILN_EINVAL,
                           "%s: hosts[%zu] (%s): cores must be a positive integer", name, hi, hn);
            break;
        }
        h.cores = (int)cores;
        const json_t *ram = json_object_get(o, "ram"), *rmb = json_object_get(o, "ram_mb");
        if (ram && rmb) {
            rc = kiln_fail(err, KILN_EINVAL, "%s: hosts[%zu] (%s): give ram or ram_mb, not both",
                           name, hi, hn);
            break;
        }
        if (ram) {
            uint64_t bytes = 0;
            if (!json_is_string(ram) || kiln_parse_size(json_string_value(ram), &bytes) ||
                bytes < (1ull << 20) || bytes > (1ull << 60)) {
                rc = kiln_fail(err, KILN_EINVAL,
                               "%s: hosts[%zu] (%s): ram must be a size like \"256GiB\"", name, hi,
                               hn);
                break;
            }
            ram_mb = (long long)(bytes >> 20);
        } else if (get_int(rmb, 1, 1ll << 40, &ram_mb)) {
            rc = kiln_fail(err, KILN_EINVAL,
                           "%s: hosts[%zu] (%s): ram (\"256GiB\") or ram_mb (a positive integer) "
                           "is required",
                           name, hi, hn);
            break;
        }
        h.ram_mb = ram_mb;
        const char *level = NULL;
        if ((v = json_object_get(o, "isa"))) {
            char badn[64];
            if (parse_isa(v, &h.isa, &level, badn, sizeof badn)) {
                rc = kiln_fail(err, KILN_EINVAL,
                               "%s: hosts[%zu] (%s): unknown ISA level or CPU feature \"%s\"", name,
                               hi, hn, badn);
                break;
            }
        }
        if ((v = json_object_get(o, "platform"))) {
            if (!json_is_string(v) ||
                copy_str(h.platform, sizeof h.platform, json_string_value(v))) {
                rc = kiln_fail(err, KILN_EINVAL,
                               "%s: hosts[%zu] (%s): platform must be text like x86_64-linux", name,
                               hi, hn);
                break;
            }
        } else {
            const char *pl = level ? kiln_isa_level_platform(level) : NULL;
            snprintf(h.platform, sizeof h.platform, "%s", pl ? pl : "x86_64-linux");
        }
        if ((v = json_object_get(o, "speed"))) {
            if (!json_is_number(v) || !(json_number_value(v) > 0.01) ||
                json_number_value(v) > 100) {
                rc = kiln_fail(err, KILN_EINVAL,
                               "%s: hosts[%zu] (%s): speed must be a number in (0.01, 100]", name,
                               hi, hn);
                break;
            }
            h.speed = json_number_value(v);
        }
        if ((v = json_object_get(o, "builds"))) {
            if (!json_is_boolean(v)) {
                rc = kiln_fail(err, KILN_EINVAL,
                               "%s: hosts[%zu] (%s): builds must be true or false", name, hi, hn);
                break;
            }
            h.no_builds = json_is_false(v);
        }
        if ((v = json_object_get(o, "gpus")) && !json_is_null(v) &&
            (rc = parse_gpus(name, hi, hn, v, &h, err)))
            break;
        if (out->nhosts + (size_t)count > KILN_FARM_MAX_HOSTS) {
            rc = kiln_fail(err, KILN_ELIMIT, "%s: more than %d hosts", name, KILN_FARM_MAX_HOSTS);
            break;
        }
        if (out->nhosts + (size_t)count > cap) {
            size_t nc = cap ? cap : 16;
            while (nc < out->nhosts + (size_t)count)
                nc *= 2;
            struct kiln_farm_host *n = realloc(out->hosts, nc * sizeof *n);
            if (!n) {
                rc = kiln_fail(err, KILN_ENOMEM, "out of memory reading %s", name);
                break;
            }
            out->hosts = n;
            cap = nc;
        }
        for (long long k = 0; k < count; k++) {
            struct kiln_farm_host *d = &out->hosts[out->nhosts++];
            *d = h;
            if (count > 1)
                snprintf(d->name, sizeof d->name, "%.48s-%d", h.kind, (int)(k + 1) % 10000);
            else
                snprintf(d->name, sizeof d->name, "%s", h.kind);
        }
    }
    if (!rc) {
        for (size_t i = 0; i < out->nhosts && !rc; i++)
            for (size_t j = i + 1; j < out->nhosts; j++)
                if (!strcmp(out->hosts[i].name, out->hosts[j].name)) {
                    rc = kiln_fail(err, KILN_EINVAL, "%s: two hosts are named %s", name,
                                   out->hosts[i].name);
                    break;
                }
    }
    if (rc) kiln_farm_free(out);
    return rc;
}

int kiln_farm_parse(const char *name, const char *text, size_t len, struct kiln_farm *out,
                    struct kiln_error *err)
{
    memset(out, 0, sizeof *out);
    json_t *root = NULL;
    int rc = kiln_yaml_to_json(name, text, len, &root, err);
    if (rc) return rc;
    rc = kiln_farm_from_json(name, root, out, err);
    json_decref(root);
    return rc;
}

int kiln_farm_add_like(struct kiln_farm *f, const char *like, int n, struct kiln_error *err)
{
    if (n < 1 || n > KILN_FARM_MAX_COUNT)
        return kiln_fail(err, KILN_EINVAL, "can add 1..%d hosts at a time", KILN_FARM_MAX_COUNT);
    size_t src = f->nhosts;
    for (size_t i = 0; i < f->nhosts && src == f->nhosts; i++)
        if (!strcmp(f->hosts[i].kind, like) || !strcmp(f->hosts[i].name, like)) src = i;
    if (src == f->nhosts)
        return kiln_fail(err, KILN_ENOTFOUND, "the farm has no host named %s", like);
    if (f->nhosts + (size_t)n > KILN_FARM_MAX_HOSTS)
        return kiln_fail(err, KILN_ELIMIT, "more than %d hosts", KILN_FARM_MAX_HOSTS);
    struct kiln_farm_host *nh = realloc(f->hosts, (f->nhosts + (size_t)n) * sizeof *nh);
    if (!nh) return kiln_fail(err, KILN_ENOMEM, "out of memory adding hosts");
    f->hosts = nh;
    for (int k = 0; k < n; k++) {
        struct kiln_farm_host *d = &f->hosts[f->nhosts];
        *d = f->hosts[src];
        int serial = 0;
        for (;;) {
            serial++;
            snprintf(d->name, sizeof d->name, "%.40s-added%d", d->kind, serial);
            int dup = 0;
            for (size_t i = 0; i < f->nhosts; i++)
                if (!strcmp(f->hosts[i].name, d->name)) dup = 1;
            if (!dup) break;
        }
        f->nhosts++;
    }
    return KILN_OK;
}

void kiln_farm_worker(const struct kiln_farm *f, size_t i, struct kiln_pworker *w)
{
    const struct kiln_farm_host *h = &f->hosts[i];
    memset(w, 0, sizeof *w);
    w->id = (int64_t)i + 1;
    snprintf(w->name, sizeof w->name, "%s", h->name);
    snprintf(w->platform, sizeof w->platform, "%s", h->platform);
    w->cores_total = w->cores_free = h->cores;
    w->ram_total_mb = w->ram_free_mb = h->ram_mb;
    w->isa = h->isa;
    w->ngpus = h->ngpus;
    memcpy(w->gpus, h->gpus, sizeof w->gpus);
    w->state = KILN_PW_ONLINE;
    w->healthy = 1;
    w->no_builds = h->no_builds;
}
