/* jobspec.c - submission validation (pure; fuzzed by tests/fuzz/fuzz_submit.c). */
#include "state/jobspec.h"

#include "common/json_field.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAME 200
#define MAX_COMMAND (64 * 1024)
#define MAX_ENV 256
#define MAX_ENV_VALUE 8192
#define MAX_DEPENDS 1000

int kiln_jobspec_valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME) return 0;
    if (!isalnum((unsigned char)s[0])) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.' && c != '+') return 0;
    }
    return 1;
}

int kiln_jobspec_valid_platform(const char *s)
{
    /* "<arch>-<os>", as Nix spells systems. */
    size_t n = strlen(s);
    const char *dash = strchr(s, '-');
    if (n == 0 || n > 31 || !dash || dash == s || !dash[1]) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!islower(c) && !isdigit(c) && c != '_' && c != '-') return 0;
    }
    return 1;
}

static int valid_env_key(const char *k)
{
    if (!k[0] || strlen(k) > 128) return 0;
    if (!isalpha((unsigned char)k[0]) && k[0] != '_') return 0;
    for (const char *p = k; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_') return 0;
    return 1;
}

static int valid_short(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c == 0x7f) return 0;
    }
    return 1;
}

static int check_env(json_t *env, const char *field, struct kiln_error *err)
{
    if (!json_is_object(env))
        return kiln_fail(err, KILN_EINVAL, "%s: must be an object of strings", field);
    if (json_object_size(env) > MAX_ENV)
        return kiln_fail(err, KILN_EINVAL, "%s: at most %d variables", field, MAX_ENV);
    const char *k;
    json_t *v;
    json_object_foreach(env, k, v)
    {
        if (!valid_env_key(k))
            return kiln_fail(err, KILN_EINVAL, "%s: '%.64s' is not a valid variable name", field,
                             k);
        /* A secret: {"secret": "value"} or {"secret_ref": "NAME"} (issue 16). */
        json_t *sv = json_object_get(v, "secret"), *sr = json_object_get(v, "secret_ref");
        if (json_is_object(v) && json_object_size(v) == 1 && (sv || sr)) {
            if (sr && (!json_is_string(sr) || !valid_env_key(json_string_value(sr))))
                return kiln_fail(err, KILN_EINVAL, "%s.%s.secret_ref: must be a secret's name",
                                 field, k);
            if (sv && (!json_is_string(sv) || json_string_length(sv) > MAX_ENV_VALUE ||
                       json_string_length(sv) < 4 ||
                       strlen(json_string_value(sv)) != json_string_length(sv)))
                return kiln_fail(err, KILN_EINVAL,
                                 "%s.%s.secret: must be a string of 4 to %d bytes", field, k,
                                 MAX_ENV_VALUE);
            continue;
        }
        if (!json_is_string(v) || json_string_length(v) > MAX_ENV_VALUE ||
            strlen(json_string_value(v)) != json_string_length(v))
            return kiln_fail(err, KILN_EINVAL,
                             "%s.%s: must be a string of at most %d bytes, or {\"secret\": ...} "
                             "or {\"secret_ref\": NAME}",
                             field, k, MAX_ENV_VALUE);
    }
    return KILN_OK;
}

/* Move the job's secret env values to "secret_env" (stored apart, handed to
 * the job only) and leave KILN_JOBSPEC_SECRET_MARK in "env" (shown). */
static int split_secrets(json_t *job, struct kiln_error *err)
{
    json_t *env = json_object_get(job, "env");
    json_t *pub = json_deep_copy(env), *sec = json_object();
    if (!pub || !sec) {
        json_decref(pub);
        json_decref(sec);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    const char *k;
    json_t *v;
    json_object_foreach(env, k, v)
    {
        if (!json_is_object(v)) continue;
        json_object_set(sec, k, v);
        json_object_set_new(pub, k, json_string(KILN_JOBSPEC_SECRET_MARK));
    }
    json_object_set_new(job, "env", pub);
    if (json_object_size(sec))
        json_object_set_new(job, "secret_env", sec);
    else
        json_decref(sec);
    return KILN_OK;
}

static int check_attrs(json_t *attrs, struct kiln_error *err)
{
    if (!json_is_object(attrs)) return kiln_fail(err, KILN_EINVAL, "attrs: must be an object");
    if (json_object_size(attrs) > 256)
        return kiln_fail(err, KILN_EINVAL, "attrs: at most 256 attributes");
    return KILN_OK;
}

static int parse_adhoc(json_t *o, struct kiln_jobspec *out, struct kiln_error *err)
{
    static const char *const allowed[] = {
        "name",  "command",   "cores",        "ram_mb",  "platform", "priority",
        "env",   "timeout_s", "max_attempts", "depends", "isa",      "gpu_sm",
        "attrs", "branch",    "commit",       "worker",  NULL};
    int rc = kiln_json_only_keys(o, allowed, NULL, err);
    if (rc) return rc;
    const char *name, *command, *platform, *isa, *gpu_sm, *branch, *commit, *worker;
    long long cores, ram_mb, priority, timeout_s, max_attempts;
    if ((rc = kiln_json_field_str(o, "name", 1, &name, err)) ||
        (rc = kiln_json_field_str(o, "command", 1, &command, err)) ||
        (rc = kiln_json_field_str(o, "platform", 0, &platform, err)) ||
        (rc = kiln_json_field_str(o, "isa", 0, &isa, err)) ||
        (rc = kiln_json_field_str(o, "gpu_sm", 0, &gpu_sm, err)) ||
        (rc = kiln_json_field_str(o, "branch", 0, &branch, err)) ||
        (rc = kiln_json_field_str(o, "commit", 0, &commit, err)) ||
        (rc = kiln_json_field_str(o, "worker", 0, &worker, err)) ||
        (rc = kiln_json_field_int(o, "cores", 1, 4096, 1, &cores, err)) ||
        (rc = kiln_json_field_int(o, "ram_mb", 1, 64LL * 1024 * 1024, 1024, &ram_mb, err)) ||
        (rc = kiln_json_field_int(o, "priority", -1000, 1000, 0, &priority, err)) ||
        (rc = kiln_json_field_int(o, "timeout_s", 1, 7 * 24 * 3600, 14400, &timeout_s, err)) ||
        (rc = kiln_json_field_int(o, "max_attempts", 1, 20, 3, &max_attempts, err)))
        return rc;
    if (!kiln_jobspec_valid_name(name))
        return kiln_fail(err, KILN_EINVAL,
                         "name: must be 1-%d characters of letters, digits, '.', '_', '+' or '-', "
                         "starting with a letter or digit",
                         MAX_NAME);
    if (!command[0] || strlen(command) > MAX_COMMAND)
        return kiln_fail(err, KILN_EINVAL, "command: must be 1 to %d bytes", MAX_COMMAND);
    if (!platform) platform = "x86_64-linux";
    if (!kiln_jobspec_valid_platform(platform))
        return kiln_fail(err, KILN_EINVAL, "platform: must look like x86_64-linux");
    if (isa && !valid_short(isa, 32))
        return kiln_fail(err, KILN_EINVAL, "isa: must be a short ISA level name like avx2");
    if (gpu_sm && !valid_short(gpu_sm, 7))
        return kiln_fail(err, KILN_EINVAL, "gpu_sm: must be a short SM like \"90\"");
    if (branch && !valid_short(branch, 128))
        return kiln_fail(err, KILN_EINVAL, "branch: must be 1-128 visible characters");
    if (commit && !valid_short(commit, 64))
        return kiln_fail(err, KILN_EINVAL, "commit: must be 1-64 visible characters");
    if (worker && !valid_short(worker, 63))
        return kiln_fail(
            err, KILN_EINVAL,
            "worker: must be a worker's name (1-63 visible characters), e.g. slurm-hpc");
    json_t *env = json_object_get(o, "env");
    if (env && !json_is_null(env) && (rc = check_env(env, "env", err))) return rc;
    json_t *attrs = json_object_get(o, "attrs");
    if (attrs && !json_is_null(attrs) && (rc = check_attrs(attrs, err))) return rc;
    json_t *deps = json_object_get(o, "depends");
    if (deps && !json_is_null(deps)) {
        if (!json_is_array(deps) || json_array_size(deps) > MAX_DEPENDS)
            return kiln_fail(err, KILN_EINVAL, "depends: must be an array of at most %d job ids",
                             MAX_DEPENDS);
        size_t i;
        json_t *d;
        json_array_foreach(deps, i, d)
        {
            if (!json_is_integer(d) || json_integer_value(d) < 1)
                return kiln_fail(err, KILN_EINVAL, "depends[%zu]: must be a positive job id", i);
        }
    }
    json_t *envc = env && !json_is_null(env) ? json_incref(env) : json_object();
    json_t *depc = deps && !json_is_null(deps) ? json_incref(deps) : json_array();
    json_t *attrc = attrs && !json_is_null(attrs) ? json_incref(attrs) : json_object();
    json_t *job = json_pack(
        "{s:s,s:s,s:I,s:I,s:s,s:I,s:o,s:I,s:I,s:o,s:s?,s:s?,s:o,s:[s],s:s?,s:s?,s:n,s:n,s:n}",
        "name", name, "command", command, "cores", (json_int_t)cores, "ram_mb", (json_int_t)ram_mb,
        "platform", platform, "priority", (json_int_t)priority, "env", envc, "timeout_s",
        (json_int_t)timeout_s, "max_attempts", (json_int_t)max_attempts, "depends", depc, "isa",
        isa, "gpu_sm", gpu_sm, "attrs", attrc, "stages", "build", "branch", branch, "commit",
        commit, "recipe", "selftest", "publish");
    if (!job) return kiln_fail(err, KILN_ENOMEM, "out of memory building the job");
    if (worker && json_object_set_new(job, "worker", json_string(worker))) {
        json_decref(job);
        return kiln_fail(err, KILN_ENOMEM, "out of memory building the job");
    }
    if ((rc = split_secrets(job, err))) {
        json_decref(job);
        return rc;
    }
    out->jobs = json_array();
    if (!out->jobs || json_array_append_new(out->jobs, job)) {
        json_decref(job);
        return kiln_fail(err, KILN_ENOMEM, "out of memory building the job");
    }
    out->kind = KILN_JOBSPEC_ADHOC;
    return KILN_OK;
}

/* {"jobs":[ad-hoc, ...]}: several ad-hoc jobs in one request, submitted in
 * one transaction (the control plane's submit side of group commit). */
static int parse_adhoc_batch(json_t *o, struct kiln_jobspec *out, struct kiln_error *err)
{
    static const char *const allowed[] = {"jobs", NULL};
    int rc = kiln_json_only_keys(o, allowed, NULL, err);
    if (rc) return rc;
    json_t *list = json_object_get(o, "jobs");
    size_t n = json_array_size(list);
    if (!json_is_array(list) || n == 0 || n > KILN_JOBSPEC_MAX_BATCH)
        return kiln_fail(err, KILN_EINVAL, "jobs: must be an array of 1 to %d ad-hoc jobs",
                         KILN_JOBSPEC_MAX_BATCH);
    json_t *all = json_array();
    if (!all) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        struct kiln_jobspec one = {0};
        json_t *item = json_array_get(list, i);
        if (!json_is_object(item))
            rc = kiln_fail(err, KILN_EINVAL, "jobs[%zu]: must be an ad-hoc job object", i);
        else if ((rc = parse_adhoc(item, &one, err)) == KILN_OK && json_array_extend(all, one.jobs))
            rc = kiln_fail(err, KILN_ENOMEM, "out of memory");
        json_decref(one.jobs);
        if (rc) {
            if (err && strncmp(err->msg, "jobs[", 5)) {
                char why[sizeof err->msg];
                snprintf(why, sizeof why, "%s", err->msg);
                kiln_fail(err, rc, "jobs[%zu]: %s", i, why);
            }
            json_decref(all);
            return rc;
        }
    }
    out->jobs = all;
    out->kind = KILN_JOBSPEC_ADHOC;
    return KILN_OK;
}

static int parse_recipe(json_t *o, struct kiln_jobspec *out, struct kiln_error *err)
{
    static const char *const allowed[] = {"recipe", "recipe_yaml", "branch", "commit",
                                          "where",  "priority",    NULL};
    int rc = kiln_json_only_keys(o, allowed, NULL, err);
    if (rc) return rc;
    const char *recipe, *yaml, *branch, *commit;
    long long priority;
    if ((rc = kiln_json_field_str(o, "recipe", 0, &recipe, err)) ||
        (rc = kiln_json_field_str(o, "recipe_yaml", 0, &yaml, err)) ||
        (rc = kiln_json_field_str(o, "branch", 0, &branch, err)) ||
        (rc = kiln_json_field_str(o, "commit", 0, &commit, err)) ||
        (rc = kiln_json_field_int(o, "priority", -1000, 1000, 0, &priority, err)))
        return rc;
    if (recipe && yaml)
        return kiln_fail(err, KILN_EINVAL, "recipe_yaml: give either recipe or recipe_yaml");
    if (recipe && (!kiln_jobspec_valid_name(recipe) || strlen(recipe) >= sizeof out->recipe))
        return kiln_fail(err, KILN_EINVAL, "recipe: not a valid recipe name");
    if (yaml && (!yaml[0] || strlen(yaml) > KILN_JOBSPEC_MAX_BODY))
        return kiln_fail(err, KILN_EINVAL, "recipe_yaml: must be 1 byte to 1 MiB of YAML");
    if (!branch) branch = "main";
    if (!valid_short(branch, sizeof out->branch - 1))
        return kiln_fail(err, KILN_EINVAL, "branch: must be 1-127 visible characters");
    if (commit && !valid_short(commit, sizeof out->commit - 1))
        return kiln_fail(err, KILN_EINVAL, "commit: must be 1-63 visible characters");
    json_t *where = json_object_get(o, "where");
    if (where && !json_is_null(where)) {
        if (!json_is_object(where) || json_object_size(where) > 64)
            return kiln_fail(err, KILN_EINVAL, "where: must be an object of strings");
        const char *k;
        json_t *v;
        json_object_foreach(where, k, v)
        {
            if (!json_is_string(v) && !json_is_integer(v))
                return kiln_fail(err, KILN_EINVAL, "where.%.64s: must be a string", k);
        }
        out->where = json_deep_copy(where);
    } else {
        out->where = json_object();
    }
    if (!out->where) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    snprintf(out->recipe, sizeof out->recipe, "%s", recipe ? recipe : "");
    snprintf(out->branch, sizeof out->branch, "%s", branch);
    snprintf(out->commit, sizeof out->commit, "%s", commit ? commit : "");
    if (yaml && !(out->recipe_yaml = strdup(yaml)))
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    out->priority = (int)priority;
    out->kind = KILN_JOBSPEC_RECIPE;
    return KILN_OK;
}

int kiln_jobspec_parse(const char *body, size_t len, struct kiln_jobspec *out,
                       struct kiln_error *err)
{
    memset(out, 0, sizeof *out);
    if (!body || len == 0)
        return kiln_fail(err, KILN_EINVAL, "request body is empty; expected a JSON object");
    if (len > KILN_JOBSPEC_MAX_BODY)
        return kiln_fail(err, KILN_ELIMIT, "request body is larger than %d bytes",
                         KILN_JOBSPEC_MAX_BODY);
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return kiln_fail(err, KILN_EPARSE, "body is not valid JSON: %s at line %d column %d",
                         je.text, je.line, je.column);
    int rc;
    if (!json_is_object(o))
        rc = kiln_fail(err, KILN_EINVAL, "body must be a JSON object");
    else if (json_object_get(o, "recipe") || json_object_get(o, "recipe_yaml"))
        rc = parse_recipe(o, out, err);
    else if (json_object_get(o, "jobs"))
        rc = parse_adhoc_batch(o, out, err);
    else
        rc = parse_adhoc(o, out, err);
    json_decref(o);
    if (rc) kiln_jobspec_free(out);
    return rc;
}

void kiln_jobspec_free(struct kiln_jobspec *spec)
{
    json_decref(spec->jobs);
    json_decref(spec->where);
    free(spec->recipe_yaml);
    memset(spec, 0, sizeof *spec);
}

int kiln_jobspec_from_variant(json_t *variant, int priority, const char *commit, json_t **out,
                              struct kiln_error *err)
{
    *out = NULL;
    if (!json_is_object(variant)) return kiln_fail(err, KILN_EINVAL, "variant: not an object");
    const char *name = kiln_json_str(variant, "name");
    const char *command = kiln_json_str(variant, "command");
    if (!name || !kiln_jobspec_valid_name(name))
        return kiln_fail(err, KILN_EINVAL, "variant name is missing or not valid");
    if (!command || !command[0])
        return kiln_fail(err, KILN_EINVAL, "variant %s has no command", name);
    const char *platform = kiln_json_str(variant, "platform");
    if (!platform) platform = "x86_64-linux";
    json_t *res = json_object_get(variant, "resources");
    json_t *attrs = json_object_get(variant, "attrs");
    json_t *env = json_object_get(variant, "env");
    json_t *selftest = json_object_get(variant, "selftest");
    json_t *publish = json_object_get(variant, "publish");
    json_t *deps = json_object_get(variant, "depends");
    json_int_t cores = json_integer_value(json_object_get(res, "cores"));
    json_int_t ram = json_integer_value(json_object_get(res, "ram_mb"));
    json_int_t timeout = json_integer_value(json_object_get(res, "timeout_s"));
    json_int_t est = json_integer_value(json_object_get(res, "est_duration_s"));
    if (cores <= 0) cores = 1;
    if (ram <= 0) ram = 1024;
    if (timeout <= 0) timeout = 14400;
    if (env && !json_is_null(env)) {
        int rc = check_env(env, "env", err);
        if (rc) return rc;
    }
    json_t *stages = json_pack("[s]", "build");
    if (!stages) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    /* `publish: release` (recipes.md): published with the rest of its commit. */
    json_t *release_spec = NULL;
    if (json_is_string(publish) && !strcmp(json_string_value(publish), "release"))
        publish = release_spec = json_pack("{s:b}", "release", 1);
    if (json_is_object(selftest)) json_array_append_new(stages, json_string("test"));
    if (json_is_object(publish)) json_array_append_new(stages, json_string("publish"));
    const char *isa = kiln_json_str(attrs, "isa");
    /* A selftest's sm says which GPU its test stage needs; null there means
     * none (a CPU-only variant such as demo's sm=cpu), never the sm
     * attribute. Without a selftest the attribute is only a label. */
    const char *sm =
        json_is_object(selftest) ? kiln_json_str(selftest, "sm") : kiln_json_str(attrs, "sm");
    json_t *job = json_pack(
        "{s:s,s:s,s:I,s:I,s:s,s:I,s:o,s:I,s:I,s:o,s:s?,s:s?,s:o,s:o,s:s?,s:s?,s:s?,s:o,s:o,s:I}",
        "name", name, "command", command, "cores", cores, "ram_mb", ram, "platform", platform,
        "priority", (json_int_t)priority, "env",
        json_is_object(env) ? json_incref(env) : json_object(), "timeout_s", timeout,
        "max_attempts", (json_int_t)3, "depends",
        json_is_array(deps) ? json_incref(deps) : json_array(), "isa", isa, "gpu_sm", sm, "attrs",
        json_is_object(attrs) ? json_incref(attrs) : json_object(), "stages", stages, "branch",
        kiln_json_str(variant, "branch"), "commit", commit && commit[0] ? commit : NULL, "recipe",
        kiln_json_str(variant, "recipe"), "selftest",
        json_is_object(selftest) ? json_incref(selftest) : json_null(), "publish",
        json_is_object(publish) ? json_incref(publish) : json_null(), "est_duration_s", est);
    json_decref(release_spec);
    if (!job) return kiln_fail(err, KILN_ENOMEM, "out of memory building job for %s", name);
    int rc = split_secrets(job, err);
    if (rc) {
        json_decref(job);
        return rc;
    }
    *out = job;
    return KILN_OK;
}
