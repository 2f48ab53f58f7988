/* Unit tests for scheduler/slot_bound: the subset-sum bound on the busiest
 * unit slot, against hand-worked cases and an exhaustive search of every
 * schedule of small task sets (the bound may never exceed the optimum). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "scheduler/slot_bound.h"

#include <stdlib.h>

static void test_hand_worked(void **state)
{
    (void)state;
    /* 3 h, 3 h, 4 h on one host of two 16-core slots: the average is 5 h,
       but no slot can hold 5 h of these; {3, 3} against {4} is 6 h */
    double dur[] = {10800, 10800, 14400};
    int64_t cores[] = {16, 16, 16}, cap[] = {32};
    assert_true(kiln_slot_bound(dur, cores, 3, cap, 1) == 21600);
    /* the seed's x86 builds: 47 of 3 h and 89 of 4 h on 4 hosts of 64 cores
       (16 slots): 497 h / 16 = 31h 04m; 31 h is a sum of 3s and 4s but is
       below the average, so 32 h */
    double seed[136];
    int64_t sc[136], hosts[] = {64, 64, 64, 64};
    for (int i = 0; i < 136; i++) {
        seed[i] = i < 47 ? 10800 : 14400;
        sc[i] = 16;
    }
    assert_true(kiln_slot_bound(seed, sc, 136, hosts, 4) == 32 * 3600.0);
    /* RAM in units of the gcd: 128 GiB builds hold two 64 GiB units */
    int64_t ram[136], ram_hosts[] = {262144, 262144, 262144, 262144};
    for (int i = 0; i < 136; i++)
        ram[i] = i < 47 ? 65536 : 131072;
    /* (47 * 3 + 89 * 2 * 4) / 16 = 53.3 h, the next sum of 3s and 4s is 54 */
    assert_true(kiln_slot_bound(seed, ram, 136, ram_hosts, 4) == 54 * 3600.0);
    /* a remainder of capacity below one unit counts for nothing */
    int64_t odd[] = {31};                                         /* 1.9 slots of 16 cores: one */
    assert_true(kiln_slot_bound(dur, cores, 3, odd, 1) == 36000); /* one slot: all */
}

static void test_no_term(void **state)
{
    (void)state;
    double dur[] = {100, 200};
    int64_t d[] = {1, 1}, cap[] = {0}, zero[] = {0, 1}, two[] = {2};
    assert_true(kiln_slot_bound(dur, d, 0, two, 1) == 0);    /* nothing to do */
    assert_true(kiln_slot_bound(dur, d, 2, cap, 1) == 0);    /* no capacity */
    assert_true(kiln_slot_bound(dur, zero, 2, two, 1) == 0); /* a demand of 0 */
    double frac[] = {0.5, 200};
    assert_true(kiln_slot_bound(frac, d, 2, two, 1) == 0); /* under a second */
}

/* the best makespan of n tasks (unit demand) on m identical slots, by
   trying every assignment */
static double best_makespan(const double *dur, int n, int m)
{
    int total = 1;
    for (int i = 0; i < n; i++)
        total *= m;
    double best = 1e30;
    for (int code = 0; code < total; code++) {
        double load[4] = {0, 0, 0, 0};
        int c = code;
        for (int i = 0; i < n; i++) {
            load[c % m] += dur[i];
            c /= m;
        }
        double mx = 0;
        for (int s = 0; s < m; s++)
            if (load[s] > mx) mx = load[s];
        if (mx < best) best = mx;
    }
    return best;
}

static void test_never_above_optimum(void **state)
{
    (void)state;
    unsigned seed = 12345;
    int tight = 0;
    for (int round = 0; round < 400; round++) {
        int n = 1 + (int)(rand_r(&seed) % 7), m = 1 + (int)(rand_r(&seed) % 3);
        double dur[7];
        int64_t d[7], cap[1] = {16 * m};
        double sum = 0;
        for (int i = 0; i < n; i++) {
            dur[i] = 600.0 * (1 + rand_r(&seed) % 24);
            d[i] = 16;
            sum += dur[i];
        }
        double b = kiln_slot_bound(dur, d, (size_t)n, cap, 1);
        double opt = best_makespan(dur, n, m);
        if (b > opt + 1e-9) fail_msg("round %d: bound %.0f above the optimum %.0f", round, b, opt);
        assert_true(b >= sum / m - 1e-9); /* never below the average */
        tight += b > sum / m + 1e-9;
    }
    assert_true(tight > 0); /* and it does lift the bound sometimes */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_worked),
        cmocka_unit_test(test_no_term),
        cmocka_unit_test(test_never_above_optimum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
