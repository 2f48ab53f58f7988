/* log.h - timestamped log lines on stderr.
 *
 * Contract: kiln_log() writes one line "2026-11-26T06:00:00Z LEVEL component: msg"
 * to stderr. The minimum level is a value the caller owns (no global state):
 * pass a struct kiln_logger around, or NULL for "info and above".
 */
#ifndef KILN_LOG_H
#define KILN_LOG_H

enum kiln_log_level { KILN_LOG_DEBUG = 0, KILN_LOG_INFO, KILN_LOG_WARN, KILN_LOG_ERROR };

struct kiln_logger {
    enum kiln_log_level min;
    const char *component; /* e.g. "serve", "worker" */
};

void kiln_log(const struct kiln_logger *lg, enum kiln_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parse "debug|info|warn|error"; returns KILN_OK or KILN_EINVAL. */
int kiln_log_level_parse(const char *s, enum kiln_log_level *out);

#endif
