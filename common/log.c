#include "common/log.h"

#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void kiln_log(const struct kiln_logger *lg, enum kiln_log_level lvl, const char *fmt, ...)
{
    enum kiln_log_level min = lg ? lg->min : KILN_LOG_INFO;
    if (lvl < min) return;
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else
        snprintf(ts, sizeof ts, "%lld", (long long)now);
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s %s %s: %s\n", ts, names[lvl], lg && lg->component ? lg->component : "kiln",
            line);
}

int kiln_log_level_parse(const char *s, enum kiln_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum kiln_log_level)i;
            return KILN_OK;
        }
    }
    return KILN_EINVAL;
}
