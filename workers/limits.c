/* limits.c - cgroup v2 / v1 / polling RAM limits, peak RAM and CPU time.
 *
 * Why three methods: the farm's hosts run anything from current systemd
 * (v2, Delegate=yes) to older v1 distributions and containers where no
 * cgroup is writable; the job must stay inside its RAM limit everywhere, so
 * the last resort is watching the process tree and killing it ourselves. */
#include "workers/limits.h"

#include "common/buf.h"
#include "common/fsutil.h"
#include "workers/detect.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_str(const char *dir, const char *file, const char *s)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", dir, file) >= (int)sizeof p) return -ENAMETOOLONG;
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    size_t n = strlen(s);
    ssize_t w = write(fd, s, n);
    int e = w < 0 ? -errno : ((size_t)w == n ? 0 : -EIO);
    if (close(fd) != 0 && !e) e = -errno;
    return e;
}

static int read_text(const char *dir, const char *file, char *out, size_t outlen)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", dir, file) >= (int)sizeof p) return -ENAMETOOLONG;
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t r = read(fd, out, outlen - 1);
    int e = r < 0 ? -errno : 0;
    close(fd);
    if (e) return e;
    out[r] = '\0';
    return 0;
}

static int read_u64(const char *dir, const char *file, uint64_t *v)
{
    char t[64];
    int e = read_text(dir, file, t, sizeof t);
    if (e) return e;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(t, &end, 10);
    if (end == t || errno) return -EINVAL;
    *v = x;
    return 0;
}

/* "key value" lines (memory.events, cpu.stat, memory.oom_control). */
static int read_keyed(const char *dir, const char *file, const char *key, uint64_t *v)
{
    char t[4096];
    int e = read_text(dir, file, t, sizeof t);
    if (e) return e;
    size_t kl = strlen(key);
    for (char *p = t; *p;) {
        if (!strncmp(p, key, kl) && p[kl] == ' ') {
            *v = strtoull(p + kl + 1, NULL, 10);
            return 0;
        }
        char *nl = strchr(p, '\n');
        if (!nl) break;
        p = nl + 1;
    }
    return -ENOENT;
}

static int own_path(const char *controller, char *out, size_t outlen)
{
    struct kiln_buf b = {0};
    int rc = kiln_read_file("/proc/self/cgroup", 1 << 16, &b);
    if (!rc) rc = kiln_detect_parse_proc_cgroup(b.data ? b.data : "", controller, out, outlen);
    kiln_buf_free(&b);
    if (!rc && !strcmp(out, "/")) out[0] = '\0';
    return rc;
}

static void kill_listed(const char *dir);

/* Job cgroups are named "<agent pid>-<job>-<attempt>". Ones whose agent is
 * gone (kill -9, crash) may still hold a build the server has requeued
 * elsewhere: kill what is left in them and remove them. */
static void reap_stale(const char *base)
{
    DIR *d = opendir(base);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (end == de->d_name || *end != '-' || pid <= 0 || pid == (long)getpid()) continue;
        char comm[64] = "", p[PATH_MAX];
        snprintf(p, sizeof p, "/proc/%ld", pid);
        if (read_text(p, "comm", comm, sizeof comm) == 0 && !strncmp(comm, "kiln", 4)) continue;
        if (snprintf(p, sizeof p, "%s/%s", base, de->d_name) >= (int)sizeof p) continue;
        for (int i = 0; i < 20 && rmdir(p) != 0 && errno == EBUSY; i++) {
            kill_listed(p);
            usleep(50000);
        }
    }
    closedir(d);
}

static int try_v2(struct kiln_limits *l, struct kiln_error *err)
{
    const char *mnt = "/sys/fs/cgroup";
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/cgroup.controllers", mnt);
    if (access(p, F_OK) != 0) mnt = "/sys/fs/cgroup/unified";
    char own[PATH_MAX / 2], dir[PATH_MAX], ctl[256];
    if (own_path("", own, sizeof own))
        return kiln_fail(err, KILN_EUNSUPPORTED, "this process is in no cgroup v2 hierarchy");
    snprintf(dir, sizeof dir, "%s%s", mnt, own);
    if (read_text(dir, "cgroup.controllers", ctl, sizeof ctl) || !strstr(ctl, "memory"))
        return kiln_fail(err, KILN_EUNSUPPORTED,
                         "cgroup v2 has no memory controller for this process (%s)", dir);
    /* "No internal processes": a cgroup with processes cannot hand
     * controllers to children, so the agent moves into a leaf of its own
     * first (what systemd's Delegate=yes expects). */
    int e = write_str(dir, "cgroup.subtree_control", "+memory");
    if (e == -EBUSY) {
        char leaf[PATH_MAX];
        if (snprintf(leaf, sizeof leaf, "%s/kiln-agent-%d", dir, (int)getpid()) >= (int)sizeof leaf)
            return kiln_fail(err, KILN_ELIMIT, "cgroup path too long");
        if (mkdir(leaf, 0755) != 0 && errno != EEXIST)
            return kiln_fail(err, KILN_EPERM, "cannot create %s: %s", leaf, strerror(errno));
        char pid[32];
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        if ((e = write_str(leaf, "cgroup.procs", pid)) != 0) {
            rmdir(leaf);
            return kiln_fail(err, KILN_EPERM, "cannot move the worker into %s: %s", leaf,
                             strerror(-e));
        }
        e = write_str(dir, "cgroup.subtree_control", "+memory");
        /* Other processes of the delegated cgroup (the shell that started
         * the worker, a supervisor) still block it: move them into the
         * leaf too. Moving is harmless to them; nothing is killed. */
        for (int round = 0; e == -EBUSY && round < 3; round++) {
            char procs[PATH_MAX + 16];
            snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
            FILE *f = fopen(procs, "r");
            if (!f) break;
            char line[32];
            while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = '\0';
                if (line[0]) write_str(leaf, "cgroup.procs", line); /* may have exited */
            }
            fclose(f);
            e = write_str(dir, "cgroup.subtree_control", "+memory");
        }
    }
    if (e)
        return kiln_fail(err, KILN_EPERM, "cannot enable the memory controller in %s: %s", dir,
                         strerror(-e));
    write_str(dir, "cgroup.subtree_control", "+cpu"); /* CPU stats work without it */
    if (snprintf(l->mem_base, sizeof l->mem_base, "%s/kiln", dir) >= (int)sizeof l->mem_base)
        return kiln_fail(err, KILN_ELIMIT, "cgroup path too long");
    if (mkdir(l->mem_base, 0755) != 0 && errno != EEXIST)
        return kiln_fail(err, KILN_EPERM, "cannot create %s: %s", l->mem_base, strerror(errno));
    if ((e = write_str(l->mem_base, "cgroup.subtree_control", "+memory")) != 0)
        return kiln_fail(err, KILN_EPERM, "cannot enable memory in %s: %s", l->mem_base,
                         strerror(-e));
    l->cpu_base[0] = '\0';
    reap_stale(l->mem_base);
    l->method = KILN_LIMIT_CGROUP2;
    snprintf(l->note, sizeof l->note, "cgroup v2 under %.200s", l->mem_base);
    return KILN_OK;
}

static int v1_base(const char *controller, const char *mntname, char *out, size_t outlen)
{
    char own[PATH_MAX / 2], mnt[PATH_MAX];
    if (own_path(controller, own, sizeof own)) return KILN_ENOTFOUND;
    snprintf(mnt, sizeof mnt, "/sys/fs/cgroup/%s", mntname);
    if (access(mnt, W_OK) != 0) return KILN_EPERM;
    if (snprintf(out, outlen, "%s%s/kiln", mnt, own) >= (int)outlen) return KILN_ELIMIT;
    if (mkdir(out, 0755) != 0 && errno != EEXIST) return KILN_EPERM;
    return KILN_OK;
}

static int try_v1(struct kiln_limits *l, struct kiln_error *err)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "/sys/fs/cgroup/memory/memory.limit_in_bytes");
    if (access(p, F_OK) != 0)
        return kiln_fail(err, KILN_EUNSUPPORTED,
                         "no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory");
    if (v1_base("memory", "memory", l->mem_base, sizeof l->mem_base))
        return kiln_fail(err, KILN_EPERM, "the cgroup v1 memory hierarchy is not writable");
    if (v1_base("cpuacct", "cpuacct", l->cpu_base, sizeof l->cpu_base) &&
        v1_base("cpuacct", "cpu,cpuacct", l->cpu_base, sizeof l->cpu_base))
        l->cpu_base[0] = '\0';
    reap_stale(l->mem_base);
    if (l->cpu_base[0]) reap_stale(l->cpu_base);
    l->method = KILN_LIMIT_CGROUP1;
    snprintf(l->note, sizeof l->note, "cgroup v1 under %.200s", l->mem_base);
    return KILN_OK;
}

int kiln_limits_init(struct kiln_limits *l, enum kiln_limit_method want, const char *tag,
                     struct kiln_error *err)
{
    (void)tag;
    memset(l, 0, sizeof *l);
    struct kiln_error e2 = {0}, e1 = {0};
    if (want == KILN_LIMIT_CGROUP2 || want == KILN_LIMIT_AUTO) {
        if (try_v2(l, &e2) == KILN_OK) return KILN_OK;
        if (want == KILN_LIMIT_CGROUP2) return kiln_fail(err, KILN_EUNSUPPORTED, "%s", e2.msg);
    }
    if (want == KILN_LIMIT_CGROUP1 || want == KILN_LIMIT_AUTO) {
        if (try_v1(l, &e1) == KILN_OK) return KILN_OK;
        if (want == KILN_LIMIT_CGROUP1) return kiln_fail(err, KILN_EUNSUPPORTED, "%s", e1.msg);
    }
    l->method = KILN_LIMIT_POLL;
    if (want == KILN_LIMIT_POLL)
        snprintf(l->note, sizeof l->note, "polling the process tree's RSS (forced)");
    else
        snprintf(l->note, sizeof l->note, "polling the process tree's RSS (%.100s; %.100s)", e2.msg,
                 e1.msg);
    return KILN_OK;
}

void kiln_limits_cleanup(struct kiln_limits *l)
{
    /* Shared with other workers on the host: only goes when empty. */
    if (l->mem_base[0]) rmdir(l->mem_base);
    if (l->cpu_base[0]) rmdir(l->cpu_base);
}

int kiln_limits_job_create(const struct kiln_limits *l, struct kiln_job_limits *j, const char *name,
                           uint64_t ram_bytes, struct kiln_error *err)
{
    memset(j, 0, sizeof *j);
    j->lim = l;
    j->ram_limit = ram_bytes;
    if (l->method == KILN_LIMIT_POLL) return KILN_OK;
    if (snprintf(j->mem_dir, sizeof j->mem_dir, "%s/%s", l->mem_base, name) >=
        (int)sizeof j->mem_dir)
        return kiln_fail(err, KILN_ELIMIT, "cgroup path too long");
    if (mkdir(j->mem_dir, 0755) != 0) {
        if (errno != EEXIST)
            return kiln_fail(err, KILN_EIO, "cannot create cgroup %s: %s", j->mem_dir,
                             strerror(errno));
    }
    j->created = 1;
    char v[32];
    int e = 0;
    if (ram_bytes) {
        snprintf(v, sizeof v, "%llu", (unsigned long long)ram_bytes);
        if (l->method == KILN_LIMIT_CGROUP2) {
            e = write_str(j->mem_dir, "memory.max", v);
            write_str(j->mem_dir, "memory.swap.max", "0"); /* absent without swap: fine */
            write_str(j->mem_dir, "memory.oom.group", "1");
        } else {
            e = write_str(j->mem_dir, "memory.limit_in_bytes", v);
            /* memsw must be >= the memory limit; equal means no swap. */
            int e2 = write_str(j->mem_dir, "memory.memsw.limit_in_bytes", v);
            (void)e2;
        }
        if (e) {
            rmdir(j->mem_dir);
            j->created = 0;
            return kiln_fail(err, KILN_EIO, "cannot set the RAM limit in %s: %s", j->mem_dir,
                             strerror(-e));
        }
    }
    if (l->cpu_base[0]) {
        if (snprintf(j->cpu_dir, sizeof j->cpu_dir, "%s/%s", l->cpu_base, name) >=
                (int)sizeof j->cpu_dir ||
            (mkdir(j->cpu_dir, 0755) != 0 && errno != EEXIST))
            j->cpu_dir[0] = '\0'; /* CPU time falls back to sampling */
    }
    return KILN_OK;
}

int kiln_limits_job_dirs(const struct kiln_job_limits *j, const char *files[2])
{
    int n = 0;
    if (j->created) files[n++] = j->mem_dir;
    if (j->cpu_dir[0]) files[n++] = j->cpu_dir;
    return n;
}

int kiln_limits_parse_stat(const char *text, pid_t *pid, pid_t *ppid, pid_t *sid,
                           uint64_t *rss_pages, uint64_t *cpu_ticks)
{
    char *e;
    errno = 0;
    long p = strtol(text, &e, 10);
    if (e == text || errno || p <= 0) return KILN_EPARSE;
    /* comm may hold spaces and parentheses: fields resume after the last ')' */
    const char *rp = strrchr(text, ')');
    if (!rp) return KILN_EPARSE;
    const char *s = rp + 1;
    unsigned long long f[22];
    int n = 0;
    while (*s && n < 22) {
        while (*s == ' ')
            s++;
        if (!*s || *s == '\n') break;
        if (n == 0) { /* state letter */
            f[n++] = 0;
            while (*s && *s != ' ')
                s++;
            continue;
        }
        errno = 0;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno) return KILN_EPARSE;
        f[n++] = (unsigned long long)v;
        s = end;
    }
    if (n < 22) return KILN_EPARSE;
    *pid = (pid_t)p;
    *ppid = (pid_t)f[1];
    *sid = (pid_t)f[3];
    *cpu_ticks = f[11] + f[12] + f[13] + f[14];
    *rss_pages = (long long)f[21] < 0 ? 0 : f[21];
    return KILN_OK;
}

struct pinfo {
    pid_t pid, ppid, sid;
    uint64_t rss, ticks;
    int in;
};

int kiln_limits_tree_usage(const char *proc_root, pid_t sid, uint64_t *rss, double *cpu_s,
                           int *nprocs)
{
    DIR *d = opendir(proc_root);
    if (!d) return KILN_EIO;
    struct pinfo *v = NULL;
    size_t n = 0, cap = 0;
    int rc = KILN_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0])) continue;
        char p[PATH_MAX], t[1024];
        snprintf(p, sizeof p, "%s/%s", proc_root, de->d_name);
        if (read_text(p, "stat", t, sizeof t)) continue; /* gone meanwhile */
        struct pinfo pi = {0};
        if (kiln_limits_parse_stat(t, &pi.pid, &pi.ppid, &pi.sid, &pi.rss, &pi.ticks)) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            struct pinfo *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                rc = KILN_ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        pi.in = pi.sid == sid;
        v[n++] = pi;
    }
    closedir(d);
    if (rc) {
        free(v);
        return rc;
    }
    /* Descendants that left the session (setsid) still count. */
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < n; i++) {
            if (v[i].in) continue;
            for (size_t k = 0; k < n; k++)
                if (v[k].in && v[k].pid == v[i].ppid) {
                    v[i].in = 1;
                    changed = 1;
                    break;
                }
        }
    }
    uint64_t sum = 0, ticks = 0;
    int cnt = 0;
    long page = sysconf(_SC_PAGESIZE), hz = sysconf(_SC_CLK_TCK);
    for (size_t i = 0; i < n; i++)
        if (v[i].in) {
            sum += v[i].rss * (uint64_t)(page > 0 ? page : 4096);
            ticks += v[i].ticks;
            cnt++;
        }
    free(v);
    *rss = sum;
    *cpu_s = (double)ticks / (double)(hz > 0 ? hz : 100);
    if (nprocs) *nprocs = cnt;
    return KILN_OK;
}

int kiln_limits_job_sample(struct kiln_job_limits *j)
{
    const struct kiln_limits *l = j->lim;
    uint64_t v = 0;
    if (l->method == KILN_LIMIT_POLL || !j->created) {
        uint64_t rss;
        double cpu;
        if (j->sid > 0 && kiln_limits_tree_usage("/proc", j->sid, &rss, &cpu, NULL) == KILN_OK) {
            if (rss > j->peak) j->peak = rss;
            if (cpu > j->cpu_s) j->cpu_s = cpu;
            if (j->ram_limit && rss > j->ram_limit) j->exceeded = 1;
        }
        return j->exceeded;
    }
    if (l->method == KILN_LIMIT_CGROUP2) {
        if (read_u64(j->mem_dir, "memory.peak", &v) == 0 ||
            read_u64(j->mem_dir, "memory.current", &v) == 0)
            if (v > j->peak) j->peak = v;
        if (read_keyed(j->mem_dir, "memory.events", "oom_kill", &v) == 0 && v > 0) j->exceeded = 1;
        if (read_keyed(j->mem_dir, "cpu.stat", "usage_usec", &v) == 0) j->cpu_s = (double)v / 1e6;
    } else {
        if (read_u64(j->mem_dir, "memory.max_usage_in_bytes", &v) == 0 && v > j->peak) j->peak = v;
        if (read_keyed(j->mem_dir, "memory.oom_control", "oom_kill", &v) == 0 && v > 0)
            j->exceeded = 1;
        else if (j->ram_limit && read_u64(j->mem_dir, "memory.failcnt", &v) == 0 && v > 0 &&
                 read_keyed(j->mem_dir, "memory.oom_control", "under_oom", &v) == 0 && v > 0)
            j->exceeded = 1; /* old kernels without the oom_kill counter */
        if (j->cpu_dir[0] && read_u64(j->cpu_dir, "cpuacct.usage", &v) == 0)
            j->cpu_s = (double)v / 1e9;
    }
    if (!j->cpu_dir[0] && l->method == KILN_LIMIT_CGROUP1 && j->sid > 0) {
        uint64_t rss;
        double cpu;
        if (kiln_limits_tree_usage("/proc", j->sid, &rss, &cpu, NULL) == KILN_OK && cpu > j->cpu_s)
            j->cpu_s = cpu;
    }
    return j->exceeded;
}

static void kill_listed(const char *dir)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/cgroup.procs", dir);
    FILE *f = fopen(p, "re");
    if (!f) return;
    long pid;
    while (fscanf(f, "%ld", &pid) == 1)
        if (pid > 0) kill((pid_t)pid, SIGKILL);
    fclose(f);
}

void kiln_limits_job_kill(struct kiln_job_limits *j)
{
    if (j->sid > 0) kill(-j->sid, SIGKILL);
    if (j->created) {
        if (j->lim->method != KILN_LIMIT_CGROUP2 || write_str(j->mem_dir, "cgroup.kill", "1") != 0)
            kill_listed(j->mem_dir);
    }
    if (j->cpu_dir[0]) kill_listed(j->cpu_dir);
}

int kiln_limits_job_alive(const struct kiln_job_limits *j)
{
    if (j->created) {
        char t[64];
        if (read_text(j->mem_dir, "cgroup.procs", t, sizeof t) == 0) return t[0] != '\0';
    }
    return j->sid > 0 && kill(-j->sid, 0) == 0;
}

void kiln_limits_job_destroy(struct kiln_job_limits *j)
{
    if (j->created) {
        rmdir(j->mem_dir);
        j->created = 0;
    }
    if (j->cpu_dir[0]) {
        rmdir(j->cpu_dir);
        j->cpu_dir[0] = '\0';
    }
}
