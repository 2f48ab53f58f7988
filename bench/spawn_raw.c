/* bench/spawn_raw.c - the machine's own limit for no-op jobs: how many
 * `true` processes per second posix_spawn + waitpid can run, with P spawner
 * threads (one per core a worker would use). bench/e2e_noop.sh runs this in
 * the same run as kiln and divides by it.
 *
 *   build/bench/spawn_raw [N=1000] [P=1] [PROG=/bin/true]
 *
 * Prints one line: "spawn_raw N P SECONDS JOBS_PER_S CPU_MS_PER_JOB" (the
 * last: user+system time of the spawner and its children, per job).
 */
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

struct ctx {
    atomic_int left;
    const char *prog;
    atomic_int failed;
};

static void *spawner(void *arg)
{
    struct ctx *c = arg;
    char *argv[] = {(char *)c->prog, NULL};
    while (atomic_fetch_sub(&c->left, 1) > 0) {
        pid_t pid;
        int st;
        if (posix_spawn(&pid, c->prog, NULL, NULL, argv, environ) != 0 ||
            waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            atomic_fetch_add(&c->failed, 1);
            return NULL;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000, p = argc > 2 ? atoi(argv[2]) : 1;
    if (n <= 0 || p <= 0 || p > 256) {
        fprintf(stderr, "usage: spawn_raw [N>0] [P 1..256] [PROG]\n");
        return 2;
    }
    struct ctx c = {.prog = argc > 3 ? argv[3] : "/bin/true"};
    atomic_init(&c.left, n);
    atomic_init(&c.failed, 0);
    pthread_t th[256];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < p; i++)
        if (pthread_create(&th[i], NULL, spawner, &c)) {
            perror("pthread_create");
            return 1;
        }
    for (int i = 0; i < p; i++)
        pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (atomic_load(&c.failed)) {
        fprintf(stderr, "spawn_raw: spawning %s failed\n", c.prog);
        return 1;
    }
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    double cpu = (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec +
                          kids.ru_stime.tv_sec) +
                 (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec +
                          kids.ru_stime.tv_usec) /
                     1e6;
    printf("spawn_raw %d %d %.4f %.1f %.3f\n", n, p, s, n / s, cpu / n * 1000);
    return 0;
}
