/* slot_bound.c - the subset-sum bound of slot_bound.h. */
#include "scheduler/slot_bound.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Work the subset-sum table may take, in 64-bit word operations: far above
   any farm of the seed's size (150 tasks, a few hundred words). */
#define SLOT_BOUND_MAX_OPS 200000000.0

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* bits |= bits << s, for a table of nw words (top bits past the end drop) */
static void shift_or(uint64_t *bits, size_t nw, int64_t s)
{
    size_t ws = (size_t)(s / 64);
    unsigned bs = (unsigned)(s % 64);
    for (size_t w = nw; w-- > ws;) {
        uint64_t v = bits[w - ws] << bs;
        if (bs && w > ws) v |= bits[w - ws - 1] >> (64 - bs);
        bits[w] |= v;
    }
}

double kiln_slot_bound(const double *dur, const int64_t *demand, size_t n, const int64_t *cap,
                       size_t ncap)
{
    int64_t u = 0, slots = 0, g = 0, maxd = 0;
    for (size_t j = 0; j < n; j++) {
        if (demand[j] <= 0) return 0;
        u = gcd64(demand[j], u);
    }
    if (!u) return 0;
    for (size_t h = 0; h < ncap; h++)
        if (cap[h] > 0) slots += cap[h] / u;
    if (slots <= 0) return 0;
    double area = 0;
    for (size_t j = 0; j < n; j++) {
        if (!(dur[j] >= 1) || dur[j] > (double)INT32_MAX) return 0;
        int64_t d = (int64_t)dur[j];
        g = gcd64(d, g);
        if (d > maxd) maxd = d;
        area += (double)(demand[j] / u) * (double)d;
    }
    /* in units of g: the smallest reachable sum >= ceil(area / slots / g);
       adding tasks one by one passes that target by less than the longest */
    double avg = area / (double)slots / (double)g;
    int64_t target = (int64_t)avg;
    if ((double)target < avg) target++;
    int64_t top = target + maxd / g;
    size_t nw = (size_t)(top / 64) + 1;
    if ((double)nw * (double)n > SLOT_BOUND_MAX_OPS) return 0;
    uint64_t *bits = calloc(nw, sizeof *bits);
    if (!bits) return 0;
    bits[0] = 1;
    for (size_t j = 0; j < n; j++)
        shift_or(bits, nw, (int64_t)dur[j] / g);
    double out = 0;
    for (int64_t s = target; s <= top; s++)
        if (bits[s / 64] >> (s % 64) & 1) {
            out = (double)(s * g);
            break;
        }
    free(bits);
    return out;
}
