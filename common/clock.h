/* clock.h - kiln's one clock: wall time for records, monotonic time for
 * measuring how long something took.
 *
 * Contract: kiln_clock_wall() returns seconds since the Unix epoch (UTC) as a
 * double, for timestamps that are stored, compared across processes or shown
 * to people (job created_at, lease expiry, catalog entries). It can jump when
 * the system clock is set. kiln_clock_mono() returns seconds from an
 * unspecified start that never goes backwards, for durations and deadlines
 * inside one process (timeouts, benchmarks); its values mean nothing outside
 * that process. Neither function fails: clock_gettime() on these clocks only
 * fails for an invalid clock id, which both are not. No globals, no I/O.
 */
#ifndef KILN_CLOCK_H
#define KILN_CLOCK_H

/* Seconds since the epoch (CLOCK_REALTIME), with sub-second precision. */
double kiln_clock_wall(void);
/* Seconds on CLOCK_MONOTONIC: only differences between two calls mean anything. */
double kiln_clock_mono(void);

#endif
