/* executor.c - sbatch arguments, job names, squeue/sinfo lines and Slurm's
 * reasons (see executor.h). Pure functions. */
#include "slurm/executor.h"

#include "common/json_field.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int name_ok(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-') return 0;
    return 1;
}

/* Copies a string field; required fields missing are errors. */
static int str_key(json_t *o, const char *k, char *out, size_t n, int required,
                   struct kiln_error *err)
{
    json_t *v = json_object_get(o, k);
    if (!v) return required ? kiln_fail(err, KILN_EINVAL, "slurm pool: %s is required", k) : 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) >= n ||
        strchr(json_string_value(v), '\n'))
        return kiln_fail(err, KILN_EINVAL, "slurm pool: %s must be a string (at most %zu bytes)", k,
                         n - 1);
    snprintf(out, n, "%s", json_string_value(v));
    return 0;
}

static int parse_gpus(json_t *v, struct kiln_slurm_pool *p, struct kiln_error *err)
{
    const char *sm;
    json_t *e;
    if (!json_is_object(v) || json_object_size(v) > KILN_SLURM_MAX_MAP)
        return kiln_fail(err, KILN_EINVAL,
                         "slurm pool: gpus must map an SM (\"90\") to {gres, feature}");
    json_object_foreach(v, sm, e)
    {
        if (!json_is_object(e) || strlen(sm) >= sizeof p->gpu[0].sm || !name_ok(sm))
            return kiln_fail(err, KILN_EINVAL, "slurm pool: gpus.%s must be {gres, feature}", sm);
        snprintf(p->gpu[p->ngpu].sm, sizeof p->gpu[0].sm, "%s", sm);
        if (str_key(e, "gres", p->gpu[p->ngpu].gres, sizeof p->gpu[0].gres, 0, err) ||
            str_key(e, "feature", p->gpu[p->ngpu].feature, sizeof p->gpu[0].feature, 0, err))
            return KILN_EINVAL;
        if (!p->gpu[p->ngpu].gres[0] && !p->gpu[p->ngpu].feature[0])
            return kiln_fail(err, KILN_EINVAL, "slurm pool: gpus.%s needs gres or feature", sm);
        p->ngpu++;
    }
    return 0;
}

static int parse_isa(json_t *v, struct kiln_slurm_pool *p, struct kiln_error *err)
{
    const char *lvl;
    json_t *e;
    if (!json_is_object(v) || json_object_size(v) > KILN_SLURM_MAX_MAP)
        return kiln_fail(err, KILN_EINVAL,
                         "slurm pool: isa_features must map an ISA level to a node feature");
    json_object_foreach(v, lvl, e)
    {
        if (!json_is_string(e) || strlen(lvl) >= sizeof p->isa[0].level ||
            strlen(json_string_value(e)) >= sizeof p->isa[0].feature ||
            !name_ok(json_string_value(e)))
            return kiln_fail(err, KILN_EINVAL,
                             "slurm pool: isa_features.%s must be a node feature name", lvl);
        snprintf(p->isa[p->nisa].level, sizeof p->isa[0].level, "%s", lvl);
        snprintf(p->isa[p->nisa].feature, sizeof p->isa[0].feature, "%s", json_string_value(e));
        p->nisa++;
    }
    return 0;
}

int kiln_slurm_pool_parse(json_t *o, struct kiln_slurm_pool *p, struct kiln_error *err)
{
    memset(p, 0, sizeof *p);
    snprintf(p->platform, sizeof p->platform, "x86_64-linux");
    snprintf(p->out_dir, sizeof p->out_dir, "/tmp");
    snprintf(p->kiln_bin, sizeof p->kiln_bin, "kiln");
    p->driver = 999;
    p->poll_ms = 1000;
    if (!json_is_object(o)) return kiln_fail(err, KILN_EINVAL, "slurm pool: must be a mapping");
    static const char *const known[] = {"name",    "partition",    "kiln",       "worker_config",
                                        "out_dir", "platform",     "driver",     "poll_ms",
                                        "gpus",    "isa_features", "extra_args", NULL};
    int rc = kiln_json_only_keys(o, known, "slurm pool", err);
    if (rc) return rc;
    json_t *v;
    if (str_key(o, "name", p->name, sizeof p->name, 1, err) ||
        str_key(o, "partition", p->partition, sizeof p->partition, 0, err) ||
        str_key(o, "kiln", p->kiln_bin, sizeof p->kiln_bin, 0, err) ||
        str_key(o, "worker_config", p->worker_config, sizeof p->worker_config, 1, err) ||
        str_key(o, "out_dir", p->out_dir, sizeof p->out_dir, 0, err) ||
        str_key(o, "platform", p->platform, sizeof p->platform, 0, err))
        return KILN_EINVAL;
    if (!name_ok(p->name))
        return kiln_fail(err, KILN_EINVAL, "slurm pool: name may hold only letters, digits, _ . -");
    if (p->partition[0] && !name_ok(p->partition))
        return kiln_fail(err, KILN_EINVAL, "slurm pool: partition is not a partition name");
    if ((v = json_object_get(o, "driver"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100000)
            return kiln_fail(err, KILN_EINVAL, "slurm pool: driver must be a driver major");
        p->driver = (int)json_integer_value(v);
    }
    if ((v = json_object_get(o, "poll_ms"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 100 || json_integer_value(v) > 60000)
            return kiln_fail(err, KILN_EINVAL, "slurm pool: poll_ms must be 100..60000");
        p->poll_ms = (unsigned)json_integer_value(v);
    }
    if ((v = json_object_get(o, "gpus")) && parse_gpus(v, p, err)) return KILN_EINVAL;
    if ((v = json_object_get(o, "isa_features")) && parse_isa(v, p, err)) return KILN_EINVAL;
    if ((v = json_object_get(o, "extra_args"))) {
        size_t i;
        json_t *e;
        if (!json_is_array(v) || json_array_size(v) > KILN_SLURM_MAX_EXTRA)
            return kiln_fail(err, KILN_EINVAL,
                             "slurm pool: extra_args must be a list of at most "
                             "%d sbatch arguments",
                             KILN_SLURM_MAX_EXTRA);
        json_array_foreach(v, i, e)
        {
            if (!json_is_string(e) || strlen(json_string_value(e)) >= sizeof p->extra[0] ||
                json_string_value(e)[0] != '-')
                return kiln_fail(err, KILN_EINVAL,
                                 "slurm pool: extra_args[%zu] must be one --option=value", i);
            snprintf(p->extra[p->nextra++], sizeof p->extra[0], "%s", json_string_value(e));
        }
    }
    return 0;
}

void kiln_slurm_job_name(const char *pool, int64_t job, int64_t attempt, char *out, size_t n)
{
    snprintf(out, n, "kiln-%s-%" PRId64 "-%" PRId64, pool, job, attempt);
}

int kiln_slurm_name_parse(const char *pool, const char *name, int64_t *job, int64_t *attempt)
{
    size_t pl = strlen(pool);
    if (strncmp(name, "kiln-", 5) || strncmp(name + 5, pool, pl) || name[5 + pl] != '-') return 0;
    const char *s = name + 6 + pl;
    char *e;
    long long j = strtoll(s, &e, 10);
    if (e == s || *e != '-' || j <= 0) return 0;
    s = e + 1;
    long long a = strtoll(s, &e, 10);
    if (e == s || *e || a <= 0) return 0;
    *job = j;
    *attempt = a;
    return 1;
}

/* Appends one argv element (copied into out->text). */
static int push(struct kiln_slurm_argv *out, int *n, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int push(struct kiln_slurm_argv *out, int *n, size_t *used, const char *fmt, ...)
{
    if (*n >= KILN_SLURM_MAX_ARGV) return -1;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(out->text + *used, sizeof out->text - *used, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= sizeof out->text - *used) return -1;
    out->argv[(*n)++] = out->text + *used;
    *used += (size_t)w + 1;
    out->argv[*n] = NULL;
    return 0;
}

int kiln_slurm_sbatch_argv(const struct kiln_slurm_pool *p, const char *script,
                           const struct kiln_slurm_stage *s, struct kiln_slurm_argv *out,
                           struct kiln_error *err)
{
    memset(out, 0, sizeof *out);
    const char *gres = "", *constraint[2] = {"", ""};
    if (s->gpu_sm && *s->gpu_sm) {
        int i = 0;
        while (i < p->ngpu && strcmp(p->gpu[i].sm, s->gpu_sm))
            i++;
        if (i == p->ngpu)
            return kiln_fail(err, KILN_EINVAL,
                             "slurm pool %s maps no GRES or node feature for SM %s (gpus: in the "
                             "config)",
                             p->name, s->gpu_sm);
        gres = p->gpu[i].gres;
        constraint[0] = p->gpu[i].feature;
    }
    if (s->isa && *s->isa) {
        int i = 0;
        while (i < p->nisa && strcmp(p->isa[i].level, s->isa))
            i++;
        if (i < p->nisa) constraint[1] = p->isa[i].feature;
        /* an unmapped level: the pool's worker advertises only mapped ones,
         * so dispatch never hands one here; any node will do. */
    }
    char name[160];
    kiln_slurm_job_name(p->name, s->job, s->attempt, name, sizeof name);
    long minutes = s->timeout_s > 0 ? (long)ceil(s->timeout_s / 60.0) + 1 : 0;
    int n = 0;
    size_t used = 0;
    int bad = push(out, &n, &used, "sbatch") || push(out, &n, &used, "--parsable") ||
              push(out, &n, &used, "--no-requeue") ||
              (p->partition[0] && push(out, &n, &used, "--partition=%s", p->partition)) ||
              push(out, &n, &used, "--job-name=%s", name) ||
              push(out, &n, &used, "--comment=kiln job=%" PRId64 " attempt=%" PRId64 " stage=%s",
                   s->job, s->attempt, !strcmp(s->stage, "test") ? "test" : "build") ||
              push(out, &n, &used, "--cpus-per-task=%d", s->cores > 0 ? s->cores : 1) ||
              push(out, &n, &used, "--mem=%" PRId64 "M", s->ram_mb > 0 ? s->ram_mb : 1) ||
              (minutes && push(out, &n, &used, "--time=%ld", minutes)) ||
              (*gres && push(out, &n, &used, "--gres=%s:1", gres)) ||
              ((*constraint[0] || *constraint[1]) &&
               push(out, &n, &used, "--constraint=%s%s%s", constraint[0],
                    *constraint[0] && *constraint[1] ? "&" : "", constraint[1])) ||
              push(out, &n, &used, "--output=%s/kiln-%%j.out", p->out_dir) ||
              push(out, &n, &used, "--export=ALL");
    for (int i = 0; !bad && i < p->nextra; i++)
        bad = push(out, &n, &used, "%s", p->extra[i]);
    bad = bad || push(out, &n, &used, "%s", script) || push(out, &n, &used, "%s", p->kiln_bin) ||
          push(out, &n, &used, "worker") || push(out, &n, &used, "--config") ||
          push(out, &n, &used, "%s", p->worker_config) || push(out, &n, &used, "--step") ||
          push(out, &n, &used, "%" PRId64 ":%" PRId64, s->job, s->attempt) ||
          push(out, &n, &used, "--step-worker") || push(out, &n, &used, "%" PRId64, s->worker_id);
    if (bad) return kiln_fail(err, KILN_ELIMIT, "sbatch arguments too long");
    return 0;
}

/* Splits line at '|' into up to max fields (in place). Returns the count. */
static int split(char *line, char **f, int max)
{
    int n = 0;
    line[strcspn(line, "\r\n")] = '\0';
    f[n++] = line;
    for (char *c = line; *c && n < max; c++)
        if (*c == '|') {
            *c = '\0';
            f[n++] = c + 1;
        }
    return n;
}

int kiln_slurm_qjob_parse(const char *line, struct kiln_slurm_qjob *q)
{
    char buf[1024], *f[5];
    memset(q, 0, sizeof *q);
    if (strlen(line) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", line);
    if (split(buf, f, 5) != 5) return -1;
    char *e;
    long long id = strtoll(f[0], &e, 10);
    if (e == f[0] || (*e && *e != '_') || id <= 0) return -1;
    q->slurm_id = id;
    snprintf(q->name, sizeof q->name, "%s", f[1]);
    snprintf(q->state, sizeof q->state, "%s", f[2]);
    snprintf(q->reason, sizeof q->reason, "%s", f[3]);
    snprintf(q->nodes, sizeof q->nodes, "%s", f[4]);
    return 0;
}

int kiln_slurm_state_infra(const char *s)
{
    static const char *infra[] = {"NODE_FAIL", "BOOT_FAIL", "PREEMPTED",
                                  "DEADLINE",  "REVOKED",   NULL};
    for (int i = 0; infra[i]; i++)
        if (!strcmp(s, infra[i])) return 1;
    return 0;
}

int kiln_slurm_state_final(const char *s)
{
    static const char *fin[] = {"COMPLETED",     "FAILED",    "CANCELLED",    "TIMEOUT",
                                "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",    "PREEMPTED",
                                "DEADLINE",      "REVOKED",   "SPECIAL_EXIT", NULL};
    for (int i = 0; fin[i]; i++)
        if (!strcmp(s, fin[i])) return 1;
    return 0;
}

void kiln_slurm_reason_text(const char *r, char *out, size_t n)
{
    static const struct {
        const char *key, *text;
    } map[] = {
        {"Resources", "every node that could run it is busy; it starts when one frees up"},
        {"Priority", "jobs with a higher priority are ahead of it in the queue"},
        {"ReqNodeNotAvail", "the nodes it needs are down, drained or reserved"},
        {"Dependency", "it waits for another Slurm job"},
        {"PartitionDown", "its partition is down"},
        {"PartitionInactive", "its partition is inactive"},
        {"PartitionNodeLimit", "it asks for more nodes than the partition allows"},
        {"PartitionTimeLimit", "its time limit is above the partition's"},
        {"QOSMaxCpuPerUserLimit", "the user's CPU limit (QOS) is reached"},
        {"AssocGrpCpuLimit", "the account's CPU limit is reached"},
        {"BeginTime", "it may not start yet (begin time)"},
        {"JobHeldUser", "a user put it on hold"},
        {"JobHeldAdmin", "an administrator put it on hold"},
        {"BadConstraints", "no node has the features or GRES it asks for"},
        {"Nodes_required_for_job_are_DOWN", "the nodes it needs are down or drained"},
        {"launch_failed_requeued_held", "its launch failed and Slurm held it"},
        {"None", "Slurm has not scheduled it yet"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strncmp(r, map[i].key, strlen(map[i].key))) {
            snprintf(out, n, "waiting in Slurm (%s): %s", r, map[i].text);
            return;
        }
    snprintf(out, n, "waiting in Slurm: %s", r[0] ? r : "no reason given");
}

int kiln_slurm_node_parse(const char *line, struct kiln_slurm_node *nd)
{
    char buf[1024], *f[9];
    memset(nd, 0, sizeof *nd);
    if (strlen(line) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", line);
    int nf = split(buf, f, 9);
    if ((nf != 6 && nf != 9) || !f[0][0]) return -1;
    char *e;
    long c = strtol(f[1], &e, 10);
    if (e == f[1] || c < 0 || c > 1000000) return -1;
    long long m = strtoll(f[2], &e, 10);
    if (e == f[2] || m < 0) return -1;
    snprintf(nd->name, sizeof nd->name, "%s", f[0]);
    nd->cpus = (int)c;
    nd->ram_mb = m;
    snprintf(nd->gres, sizeof nd->gres, "%s", f[3]);
    snprintf(nd->features, sizeof nd->features, "%s", f[4]);
    snprintf(nd->state, sizeof nd->state, "%s", f[5]);
    if (nf == 9) {
        snprintf(nd->partition, sizeof nd->partition, "%s", f[6]);
        nd->partition[strcspn(nd->partition, "*")] = '\0'; /* the default partition's mark */
        long a = strtol(f[7], &e, 10);                     /* "A/I/O/T" */
        if (e != f[7] && *e == '/' && a >= 0 && a <= c) nd->cpus_alloc = (int)a;
        snprintf(nd->avail, sizeof nd->avail, "%s", f[8]);
    }
    return 0;
}

const char *kiln_slurm_node_state_word(const char *st)
{
    /* Flags follow the state: '*' not responding, '~' powered off, '#'
     * powering up, '!' pending power down, '%' powering down, '$'
     * maintenance, '@' pending reboot, '^' rebooting, '-' planned. */
    if (!strncmp(st, "drain", 5) || !strncmp(st, "drng", 4)) return "drain";
    if (strchr(st, '*') || !strncmp(st, "down", 4) || !strncmp(st, "fail", 4)) return "down";
    if (strchr(st, '~') || strchr(st, '$')) return "other";
    if (!strncmp(st, "mix", 3)) return "mixed";
    if (!strncmp(st, "alloc", 5) || !strncmp(st, "comp", 4)) return "alloc";
    if (!strncmp(st, "idle", 4)) return "idle";
    return "other";
}

int kiln_slurm_node_gpus(const struct kiln_slurm_node *nd, const char *gres)
{
    /* "gpu:h100:2(S:0-1),gpu:a100:1" */
    int total = 0;
    size_t gl = strlen(gres);
    const char *s = nd->gres;
    while (s && *s) {
        if (!strncmp(s, gres, gl) && s[gl] == ':') total += atoi(s + gl + 1);
        s = strchr(s, ',');
        if (s) s++;
    }
    return total;
}
