/* hostcheck.c - host suitability decisions; see hostcheck.h. */
#include "kernels-selftest/hostcheck.h"

#include "common/buf.h"
#include "common/isa.h"
#include "kernels-selftest/fatbin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int sm_ok(unsigned have, unsigned want, int compat)
{
    if (have == want) return 1;
    return compat && have / 10 == want / 10 && have > want;
}

int kiln_hostcheck(const struct kiln_host_facts *h, const struct kiln_host_need *n,
                   struct kiln_error *err)
{
    struct kiln_buf b = {0};
    b.max = KILN_ERR_MSG_MAX - 1;
    int bad = 0, rc = KILN_OK;
    if (n->sm) {
        int ok = 0;
        for (size_t i = 0; i < h->ngpu; i++)
            ok |= sm_ok(h->gpu_sm[i], n->sm, n->allow_compatible);
        if (!ok) {
            bad++;
            if (h->ngpu == 0) {
                rc = kiln_buf_printf(&b, "needs a GPU with sm_%u but this host has no GPU", n->sm);
            } else {
                rc = kiln_buf_printf(&b, "needs a GPU with sm_%u%s but this host has", n->sm,
                                     n->allow_compatible ? " (or a compatible one)" : "");
                for (size_t i = 0; i < h->ngpu && rc == KILN_OK; i++)
                    rc = kiln_buf_printf(&b, "%s sm_%u", i ? "," : "", h->gpu_sm[i]);
            }
        }
    }
    if (n->driver_min && rc == KILN_OK) {
        if (!h->have_driver) {
            rc = kiln_buf_printf(&b, "%sneeds NVIDIA driver >= %u but no driver was found",
                                 bad++ ? "; " : "", n->driver_min);
        } else if (h->driver_major < n->driver_min) {
            rc =
                kiln_buf_printf(&b, "%sneeds NVIDIA driver >= %u but this host has %u.%02u",
                                bad++ ? "; " : "", n->driver_min, h->driver_major, h->driver_minor);
        }
    }
    if (n->isa_level && rc == KILN_OK) {
        uint32_t need = kiln_isa_level_features(n->isa_level);
        if (!need) {
            kiln_buf_free(&b);
            return kiln_fail(err, KILN_EINVAL, "unknown ISA level \"%.64s\"", n->isa_level);
        }
        if (!kiln_isa_satisfies(h->cpu_isa, need)) {
            char missing[256];
            kiln_isa_feature_list(need & ~h->cpu_isa, missing, sizeof missing);
            rc = kiln_buf_printf(&b, "%sneeds CPU ISA %s but this CPU lacks %s", bad++ ? "; " : "",
                                 n->isa_level, missing);
        }
    }
    if (rc == KILN_ENOMEM) {
        kiln_buf_free(&b);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    if (bad) {
        kiln_fail(err, KILN_ECONFLICT, "%s", b.data ? b.data : "host does not qualify");
        kiln_buf_free(&b);
        return KILN_ECONFLICT;
    }
    kiln_buf_free(&b);
    return KILN_OK;
}

int kiln_hostcheck_parse_driver(const char *s, unsigned *major, unsigned *minor)
{
    unsigned v[2] = {0, 0};
    int k = 0, digits = 0;
    while (*s == ' ')
        s++;
    for (; *s; s++) {
        if (*s >= '0' && *s <= '9') {
            if (++digits > 6) return KILN_EINVAL;
            if (k < 2) v[k] = v[k] * 10 + (unsigned)(*s - '0');
        } else if (*s == '.' && digits) {
            k++;
            digits = 0;
        } else if (*s == ' ' || *s == '\n' || *s == '\r') {
            break;
        } else {
            return KILN_EINVAL;
        }
    }
    if (k == 0 && digits == 0) return KILN_EINVAL;
    if (v[0] == 0) return KILN_EINVAL;
    *major = v[0];
    *minor = v[1];
    return KILN_OK;
}

int kiln_hostcheck_parse_smi_csv(const char *text, size_t len, struct kiln_host_facts *h,
                                 struct kiln_error *err)
{
    size_t pos = 0;
    unsigned lineno = 0;
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        lineno++;
        char buf[128];
        if (ll == 0 || (ll == 1 && line[0] == '\r')) continue;
        if (ll >= sizeof buf)
            return kiln_fail(err, KILN_EPARSE, "nvidia-smi line %u is too long", lineno);
        memcpy(buf, line, ll);
        buf[ll] = 0;
        char *comma = strchr(buf, ',');
        if (!comma)
            return kiln_fail(err, KILN_EPARSE,
                             "nvidia-smi line %u: expected \"compute_cap, driver_version\"",
                             lineno);
        *comma = 0;
        unsigned sm, maj, min;
        const char *cap = buf;
        while (*cap == ' ')
            cap++;
        if (kiln_fatbin_parse_sm(cap, &sm) != KILN_OK || !strchr(cap, '.'))
            return kiln_fail(err, KILN_EPARSE, "nvidia-smi line %u: bad compute capability \"%s\"",
                             lineno, cap);
        if (kiln_hostcheck_parse_driver(comma + 1, &maj, &min) != KILN_OK)
            return kiln_fail(err, KILN_EPARSE, "nvidia-smi line %u: bad driver version", lineno);
        if (h->ngpu >= KILN_HOST_MAX_GPUS)
            return kiln_fail(err, KILN_ELIMIT, "more than %d GPUs", KILN_HOST_MAX_GPUS);
        h->gpu_sm[h->ngpu++] = sm;
        h->driver_major = maj;
        h->driver_minor = min;
        h->have_driver = 1;
    }
    return KILN_OK;
}

uint32_t kiln_hostcheck_parse_cpuinfo(const char *text, size_t len)
{
    uint32_t bits = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        if (!((ll > 5 && strncmp(line, "flags", 5) == 0) ||
              (ll > 8 && strncmp(line, "Features", 8) == 0)))
            continue;
        const char *colon = memchr(line, ':', ll);
        if (!colon) continue;
        const char *p = colon + 1, *end = line + ll;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
            const char *w = p;
            while (p < end && *p != ' ' && *p != '\t')
                p++;
            char name[64];
            size_t wl = (size_t)(p - w);
            if (wl == 0 || wl >= sizeof name) continue;
            memcpy(name, w, wl);
            name[wl] = 0;
            bits |= kiln_isa_feature(name);
        }
        if (bits) break; /* every CPU lists the same flags; the first line is enough */
    }
    return bits;
}
