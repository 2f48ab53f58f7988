/* logs.h - job logs: var/logs/<job>.log, appended idempotently, streamed out.
 *
 * Contract:
 * - kiln_logs_append_at() writes bytes at a file offset the caller computed
 *   (attempt's log_base + the worker's offset): bytes before the current end
 *   are skipped (a resend), an offset past the end is KILN_ECONFLICT with
 *   *size = current size so the worker can resend from there.
 * - kiln_logs_serve() answers GET /jobs/{id}/log: text/plain from an offset,
 *   chunked, through a fixed 64 KiB buffer with backpressure (never the whole
 *   log in memory). With follow it stays open and sends new bytes as
 *   kiln_logs_notify() reports them, until kiln_logs_finish() says the job is
 *   final (or the client leaves).
 * - Loop thread only; file I/O is small positional reads/writes.
 */
#ifndef KILN_LOGS_H
#define KILN_LOGS_H

#include "common/err.h"
#include "http/http.h"

#include <stddef.h>
#include <stdint.h>

struct kiln_logs;

int kiln_logs_new(const char *dir, struct kiln_logs **out, struct kiln_error *err);
/* Ends every open stream and frees. */
void kiln_logs_free(struct kiln_logs *l);

int kiln_logs_size(struct kiln_logs *l, int64_t job, int64_t *size, struct kiln_error *err);
int kiln_logs_append_at(struct kiln_logs *l, int64_t job, int64_t offset, const void *data,
                        size_t len, int64_t *size, struct kiln_error *err);
/* Append a server-written line (attempt markers); *size = new size. */
int kiln_logs_append_line(struct kiln_logs *l, int64_t job, const char *line, int64_t *size,
                          struct kiln_error *err);

/* Delete job's log file (a missing one is fine); open streams of it end. */
int kiln_logs_remove(struct kiln_logs *l, int64_t job, struct kiln_error *err);

/* Stream the log of job from offset; follow=1 keeps it open unless final. */
int kiln_logs_serve(struct kiln_logs *l, struct kiln_http_req *req, int64_t job, int64_t offset,
                    int follow, int final);
void kiln_logs_notify(struct kiln_logs *l, int64_t job);
void kiln_logs_finish(struct kiln_logs *l, int64_t job);
/* End the follow of every stream whose job is_final() says is over (after
 * changes that did not go through a report, e.g. a lost worker's last try). */
void kiln_logs_finish_if(struct kiln_logs *l, int (*is_final)(void *ctx, int64_t job), void *ctx);
int kiln_logs_streams(const struct kiln_logs *l);

#endif
