#include "common/units.h"

#include "common/err.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int kiln_parse_size(const char *s, uint64_t *bytes)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0) || !isfinite(v)) return KILN_EINVAL;
    while (*end == ' ')
        end++;
    double mul = 1;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'B':
            mul = 1;
            break;
        case 'K':
            mul = 1024.0;
            break;
        case 'M':
            mul = 1024.0 * 1024;
            break;
        case 'G':
            mul = 1024.0 * 1024 * 1024;
            break;
        case 'T':
            mul = 1024.0 * 1024 * 1024 * 1024;
            break;
        default:
            return KILN_EINVAL;
        }
        end++;
        if (mul > 1) {
            if (*end == 'i' || *end == 'I') end++;
            if (*end == 'B' || *end == 'b') end++;
        }
        if (*end) return KILN_EINVAL;
    }
    double r = v * mul;
    if (r > 1.8e19) return KILN_EINVAL;
    *bytes = (uint64_t)llround(r);
    return KILN_OK;
}

void kiln_format_size(uint64_t bytes, char *out, size_t outlen)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int i = 0;
    while (v >= 1024 && i < 5) {
        v /= 1024;
        i++;
    }
    if (i == 0 || fabs(v - round(v)) < 0.05 || v >= 100)
        snprintf(out, outlen, "%.0f %s", v, u[i]);
    else
        snprintf(out, outlen, "%.1f %s", v, u[i]);
}

void kiln_format_duration(double seconds, char *out, size_t outlen)
{
    if (!(seconds >= 0)) seconds = 0;
    long s = (long)(seconds + 0.5);
    if (s < 60)
        snprintf(out, outlen, "%lds", s);
    else if (s < 3600)
        snprintf(out, outlen, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(out, outlen, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
}
