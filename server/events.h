/* events.h - the Server-Sent Events hub behind GET /api/v1/events.
 *
 * Contract:
 * - Events are rows of the store's events table, appended in the same
 *   transaction as the change they describe (kiln_store_event); their id is
 *   the SSE id. After committing, callers run kiln_events_notify() and every
 *   subscriber is sent the rows past its cursor ("id:", "event:", "data:").
 * - A subscriber starts after Last-Event-ID (header, or ?last_event_id=) and
 *   so receives everything after it that is still retained; without one it
 *   starts at the current end. Slow clients are paced by backpressure: their
 *   cursor waits and they catch up from the store, so memory stays bounded.
 * - A ": keep-alive" comment goes to every subscriber every keepalive_ms.
 */
#ifndef KILN_EVENTS_H
#define KILN_EVENTS_H

#include "http/http.h"
#include "state/store.h"

#include <stdint.h>
#include <uv.h>

struct kiln_events;

int kiln_events_new(uv_loop_t *loop, struct kiln_store *st, unsigned keepalive_ms,
                    struct kiln_events **out, struct kiln_error *err);
/* Ends every stream; memory is freed once the loop closes the timer. */
void kiln_events_free(struct kiln_events *e);
/* last_id < 0: start at the current end. */
int kiln_events_subscribe(struct kiln_events *e, struct kiln_http_req *req, int64_t last_id);
void kiln_events_notify(struct kiln_events *e);
int kiln_events_subscribers(const struct kiln_events *e);

#endif
