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
/* Append a server-written line; *size = new size. */
int kiln_logs_append_line(struct kiln_logs *l, int64_t job, const char *line, int64_t *size,
                          struct kiln_error *err);

/* The line that opens an attempt in the job's log ("--- kiln: attempt N
 * (stage) on worker W ---"), after a blank line when the file has bytes
 * already. Returns its length, or -1 when it does not fit in n. */
int kiln_logs_marker(char *out, size_t n, int64_t attempt, const char *stage, const char *worker,
                     int after_bytes);
/* Write the attempt's marker if the file still stops where the marker
 * belongs (base - marker length). The marker is written lazily, just before
 * the attempt's first byte, so an attempt that prints nothing creates no
 * file (a file create per lease was the top cost of the lease path on ext4).
 * The lease already fixed log_base as "size then + marker length". */
int kiln_logs_open_attempt(struct kiln_logs *l, int64_t job, int64_t base, int64_t attempt,
                           const char *stage, const char *worker, struct kiln_error *err);

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
