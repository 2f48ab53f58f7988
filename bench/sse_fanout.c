/* bench/sse_fanout.c - C live-view clients on GET /api/v1/events, and how
 * long a state change takes to reach the last of them.
 *
 * Each round submits one job (a state change: the job's "queued" event) and
 * waits until every client has read an event id at least as new; the
 * round's figure is submit start -> arrival at the LAST client. p50/p99
 * over the rounds. Baseline in the same run: the same with one client, so
 * the ratio is the cost of the fan-out itself. One reader thread reads all
 * sockets with epoll and timestamps each client's arrival.
 *
 *   build/bench/sse_fanout URL SUBMIT_TOKEN [C=1000] [ROUNDS=100]
 * (the server must allow anonymous reads: kiln serve --allow-anonymous-read)
 */
#include "common/httpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct client {
    int fd;
    int state; /* 0 line start, 1 in a line, 2..4 matched "id:" prefix, 5 in the id */
    long cur;
    atomic_long max_id;
    double seen_at; /* when max_id first reached the round's target */
};

struct fan {
    struct client *c;
    int n;
    atomic_long target;
    atomic_int stop;
    int ep;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void scan(struct fan *f, struct client *c, const char *p, ssize_t n, double t)
{
    static const char pre[] = "id:";
    for (ssize_t i = 0; i < n; i++) {
        char ch = p[i];
        if (c->state == 5) {
            if (ch >= '0' && ch <= '9') {
                c->cur = c->cur * 10 + (ch - '0');
                continue;
            }
            if (ch == ' ' && c->cur == 0) continue;
            if (c->cur > atomic_load(&c->max_id)) {
                atomic_store(&c->max_id, c->cur);
                if (c->cur >= atomic_load(&f->target) && c->seen_at == 0) c->seen_at = t;
            }
            c->state = ch == '\n' ? 0 : 1;
            continue;
        }
        if (ch == '\n') {
            c->state = 0;
        } else if (c->state == 0 || (c->state >= 2 && c->state < 5)) {
            int k = c->state == 0 ? 0 : c->state - 1;
            if (ch == pre[k]) {
                c->state = k + 2 == 4 ? 5 : k + 2;
                if (c->state == 5) c->cur = 0;
            } else {
                c->state = 1;
            }
        }
    }
}

static void *reader(void *arg)
{
    struct fan *f = arg;
    struct epoll_event ev[256];
    char buf[65536];
    while (!atomic_load(&f->stop)) {
        int k = epoll_wait(f->ep, ev, 256, 50);
        double t = now_s();
        for (int i = 0; i < k; i++) {
            struct client *c = ev[i].data.ptr;
            for (;;) {
                ssize_t r = read(c->fd, buf, sizeof buf);
                if (r > 0) {
                    scan(f, c, buf, r, t);
                    continue;
                }
                if (r == 0) epoll_ctl(f->ep, EPOLL_CTL_DEL, c->fd, NULL);
                break;
            }
        }
    }
    return NULL;
}

static int connect_one(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    static const char req[] = "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Accept: text/event-stream\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1) ||
        fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs ROUNDS rounds with n clients; fills p50/p99 in ms. */
static int run(const char *url, const char *token, int port, int n, int rounds, double *p50,
               double *p99)
{
    struct fan f = {.n = n};
    f.c = calloc((size_t)n, sizeof *f.c);
    f.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!f.c || f.ep < 0) return -1;
    for (int i = 0; i < n; i++) {
        f.c[i].fd = connect_one(port);
        if (f.c[i].fd < 0) {
            fprintf(stderr, "sse_fanout: connection %d failed: %s\n", i, strerror(errno));
            return -1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &f.c[i]};
        epoll_ctl(f.ep, EPOLL_CTL_ADD, f.c[i].fd, &ev);
    }
    atomic_store(&f.target, 1L << 62);
    pthread_t th;
    pthread_create(&th, NULL, reader, &f);
    usleep(300000); /* every stream open */
    struct kiln_httpc h;
    kiln_httpc_init(&h, url, token);
    double *lat = calloc((size_t)rounds, sizeof *lat);
    long last = 0;
    for (int i = 0; i < n; i++)
        if (atomic_load(&f.c[i].max_id) > last) last = atomic_load(&f.c[i].max_id);
    int rc = 0;
    for (int r = 0; r < rounds && !rc; r++) {
        for (int i = 0; i < n; i++)
            f.c[i].seen_at = 0;
        atomic_store(&f.target, last + 1);
        double t0 = now_s();
        json_t *in = json_pack("{s:s,s:s}", "name", "sse-bench", "command", "true"), *out = NULL;
        long st;
        if (kiln_httpc_json(&h, "POST", "/api/v1/jobs", in, 0, &st, &out, NULL) || st != 201) {
            fprintf(stderr, "sse_fanout: submit failed (%ld)\n", st);
            rc = -1;
        }
        json_decref(in);
        json_decref(out);
        double end = t0 + 10;
        for (;;) {
            int all = 1;
            for (int i = 0; i < n && all; i++)
                if (f.c[i].seen_at == 0) all = 0;
            if (all) break;
            if (now_s() > end) {
                fprintf(stderr, "sse_fanout: not every client saw the event within 10 s\n");
                rc = -1;
                break;
            }
            usleep(200);
        }
        double worst = 0;
        for (int i = 0; i < n; i++) {
            if (f.c[i].seen_at > worst) worst = f.c[i].seen_at;
            if (atomic_load(&f.c[i].max_id) > last) last = atomic_load(&f.c[i].max_id);
        }
        lat[r] = (worst - t0) * 1000;
        usleep(5000);
    }
    atomic_store(&f.stop, 1);
    pthread_join(th, NULL);
    kiln_httpc_cleanup(&h);
    for (int i = 0; i < n; i++)
        close(f.c[i].fd);
    close(f.ep);
    qsort(lat, (size_t)rounds, sizeof *lat, cmp);
    *p50 = lat[rounds / 2];
    *p99 = lat[(rounds * 99) / 100 >= rounds ? rounds - 1 : (rounds * 99) / 100];
    free(lat);
    free(f.c);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sse_fanout URL SUBMIT_TOKEN [CLIENTS=1000] [ROUNDS=100]\n");
        return 2;
    }
    int n = argc > 3 ? atoi(argv[3]) : 1000, rounds = argc > 4 ? atoi(argv[4]) : 100;
    const char *port_s = strrchr(argv[1], ':');
    int port = port_s ? atoi(port_s + 1) : 0;
    if (n < 1 || rounds < 2 || port <= 0) {
        fprintf(stderr, "sse_fanout: bad arguments\n");
        return 2;
    }
    struct rlimit rl = {(rlim_t)n + 64, (rlim_t)n + 64};
    setrlimit(RLIMIT_NOFILE, &rl);
    double b50, b99, k50, k99;
    if (run(argv[1], argv[2], port, 1, rounds, &b50, &b99) ||
        run(argv[1], argv[2], port, n, rounds, &k50, &k99))
        return 1;
    printf("sse_fanout: 1 client  state change -> arrival p50 %.2f ms p99 %.2f ms\n", b50, b99);
    printf("sse_fanout: %d clients state change -> last client p50 %.2f ms p99 %.2f ms "
           "(target p99 < 50 ms: %s)\n",
           n, k50, k99, k99 < 50 ? "met" : "missed");
    printf("sse_fanout: ratio p99 %d clients / 1 client = %.2f\n", n, k99 / (b99 > 0 ? b99 : 1e-3));
    return 0;
}
