/* slot_bound.h - how loaded the busiest of K unit slots must be.
 *
 * Contract: pure computation, no I/O, no globals. n tasks share a group of
 * ncap hosts of one resource (cores, RAM, or GPUs counted as one each).
 * Task j lasts dur[j] seconds and holds demand[j] of its host's cap[h] for
 * its whole run. In units of u, the gcd of the demands, task j holds
 * units[j] = demand[j] / u and the hosts have K = sum of floor(cap[h] / u)
 * units. Tasks on one host never hold more than its floor(cap / u) units
 * at once, so in any schedule the
 * tasks can be given fixed unit slots (at each start, in start order, enough
 * units are free), so every slot's load is the sum of a subset of dur[] and
 * the loads add up to A = sum(units[j] * dur[j]). The busiest slot therefore
 * carries at least the smallest subset sum of dur[] that is >= A / K, and no
 * schedule ends before that (at speed 1).
 *
 * kiln_slot_bound() returns that subset sum in seconds (durations rounded
 * down to whole seconds, which keeps it a bound), or 0 when there is nothing
 * to bound or the subset-sum table would be too large (it is never wrong,
 * only weaker). It is what lifts the seed's bound from work / cores (31h 04m)
 * to 32 h: 47 builds of 3 h and 89 of 4 h on 16 slots of 16 cores cannot
 * leave every slot at 31h 04m, and no mix of 3s and 4s makes exactly 31h 04m.
 */
#ifndef KILN_SLOT_BOUND_H
#define KILN_SLOT_BOUND_H

#include <stddef.h>
#include <stdint.h>

double kiln_slot_bound(const double *dur, const int64_t *demand, size_t n, const int64_t *cap,
                       size_t ncap);

#endif
