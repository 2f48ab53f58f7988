/* cmd_catalog.c - `kiln catalog`: inspect and maintain the embedded catalog
 * on the data dir, publish into it, push to a server, export Nix paths,
 * upload to S3, and serve the catalog alone over HTTP (tests, mirrors). */
#include "cli/commands.h"

#include "common/err.h"
#include "common/hash.h"
#include "catalog/catalog.h"
#include "http/http.h"
#include "catalog/publish.h"
#include "catalog/s3.h"
#include "workers/export.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: kiln catalog <command> [options]\n"
               "  ls      [--data DIR] [--json] [--name N] [--version V] [--sm S] [--isa I]\n"
               "          [--cuda C] [--platform P] [--branch B]  list entries\n"
               "  show    ID [--data DIR]                   one entry as JSON\n"
               "  verify  [--data DIR] [--json]             rehash blobs, check signatures\n"
               "  gc      [--data DIR] [--grace SECONDS]    remove unfinished uploads and\n"
               "                                            unreferenced blobs (grace 3600)\n"
               "  publish FILE --name N --version V [--meta JSON] [--digest D] [--data DIR]\n"
               "  push    FILE --server URL --name N --version V [--meta JSON]\n"
               "  export  STOREPATH --server URL [--name N] [--version V] [--meta JSON]\n"
               "  serve   [--data DIR] [--addr A] [--port P] [--port-file F]\n"
               "          (uploads need KILN_CATALOG_TOKEN as bearer token)\n"
               "  s3-put  FILE KEY --endpoint URL --bucket B [--region R] [--part-size BYTES]\n"
               "          [--threshold BYTES]  (KILN_S3_ACCESS_KEY, KILN_S3_SECRET_KEY)\n"
               "  key     [--data DIR]                      print the cache's public key\n"
               "  targets ID --config FILE [--data DIR]     run the publish targets of FILE\n"
               "          (JSON {\"targets\":[...]}, see docs/catalog.md) for entry ID\n"
               "--data defaults to $KILN_DATA or ./var; --server to $KILN_SERVER;\n"
               "the token comes from $KILN_TOKEN.\n");
}

struct opts {
    const char *data, *name, *version, *meta, *digest, *server, *addr, *port_file;
    const char *endpoint, *bucket, *region, *config;
    const char *f_sm, *f_isa, *f_cuda, *f_platform, *f_branch;
    int json, port;
    double grace;
    uint64_t part_size, threshold;
    int nargs;
    char *args[4];
};

static int parse(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"data", 1, 0, 'd'},      {"name", 1, 0, 'n'},   {"version", 1, 0, 'v'},
        {"meta", 1, 0, 'm'},      {"digest", 1, 0, 'D'}, {"server", 1, 0, 's'},
        {"addr", 1, 0, 'a'},      {"port", 1, 0, 'p'},   {"port-file", 1, 0, 'P'},
        {"json", 0, 0, 'j'},      {"grace", 1, 0, 'g'},  {"endpoint", 1, 0, 'e'},
        {"bucket", 1, 0, 'b'},    {"region", 1, 0, 'r'}, {"part-size", 1, 0, 'S'},
        {"threshold", 1, 0, 'T'}, {"sm", 1, 0, 1},       {"isa", 1, 0, 2},
        {"cuda", 1, 0, 3},        {"platform", 1, 0, 4}, {"branch", 1, 0, 5},
        {"config", 1, 0, 'c'},    {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->data = getenv("KILN_DATA");
    if (!o->data || !*o->data) o->data = "var";
    o->server = getenv("KILN_SERVER");
    if (!o->server || !*o->server) o->server = "http://127.0.0.1:8080";
    o->addr = "127.0.0.1";
    o->port = 8081;
    o->grace = 3600;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "hj", lo, NULL)) != -1) {
        switch (ch) {
        case 'd':
            o->data = optarg;
            break;
        case 'n':
            o->name = optarg;
            break;
        case 'v':
            o->version = optarg;
            break;
        case 'm':
            o->meta = optarg;
            break;
        case 'D':
            o->digest = optarg;
            break;
        case 's':
            o->server = optarg;
            break;
        case 'a':
            o->addr = optarg;
            break;
        case 'p':
            o->port = atoi(optarg);
            break;
        case 'P':
            o->port_file = optarg;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'g':
            o->grace = atof(optarg);
            break;
        case 'c':
            o->config = optarg;
            break;
        case 'e':
            o->endpoint = optarg;
            break;
        case 'b':
            o->bucket = optarg;
            break;
        case 'r':
            o->region = optarg;
            break;
        case 'S':
            o->part_size = strtoull(optarg, NULL, 10);
            break;
        case 'T':
            o->threshold = strtoull(optarg, NULL, 10);
            break;
        case 1:
            o->f_sm = optarg;
            break;
        case 2:
            o->f_isa = optarg;
            break;
        case 3:
            o->f_cuda = optarg;
            break;
        case 4:
            o->f_platform = optarg;
            break;
        case 5:
            o->f_branch = optarg;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (o->nargs >= 4) {
            usage(stderr);
            return -1;
        }
        o->args[o->nargs++] = argv[i];
    }
    return 0;
}

/* KILN_EXIT_OK, or the exit code for why the catalog cannot be opened. */
static int open_cat(struct opts *o, struct kiln_catalog **c)
{
    struct kiln_error err = {0};
    int rc = kiln_catalog_open(o->data, c, &err);
    if (rc != KILN_OK) fprintf(stderr, "kiln catalog: %s\n", err.msg);
    return kiln_err_exit_code(rc);
}

static json_t *build_meta(struct opts *o, struct kiln_error *err)
{
    json_t *m;
    if (o->meta) {
        json_error_t je;
        m = json_loads(o->meta, 0, &je);
        if (!json_is_object(m)) {
            json_decref(m);
            kiln_fail(err, KILN_EPARSE, "--meta must be a JSON object: %s", je.text);
            return NULL;
        }
    } else {
        m = json_object();
    }
    if (o->name) json_object_set_new(m, "name", json_string(o->name));
    if (o->version) json_object_set_new(m, "version", json_string(o->version));
    return m;
}

static int do_ls(struct opts *o)
{
    struct kiln_catalog *c;
    int orc = open_cat(o, &c);
    if (orc) return orc;
    json_t *f = json_object();
    const char *keys[] = {"name", "sm", "isa", "cuda", "platform", "branch", "version"};
    const char *vals[] = {o->name,       o->f_sm,     o->f_isa,  o->f_cuda,
                          o->f_platform, o->f_branch, o->version};
    for (int i = 0; i < 7; i++)
        if (vals[i]) json_object_set_new(f, keys[i], json_string(vals[i]));
    json_t *arr;
    struct kiln_error err = {0};
    int rc = kiln_catalog_list(c, f, &arr, &err);
    json_decref(f);
    if (rc != KILN_OK) {
        fprintf(stderr, "kiln catalog ls: %s\n", err.msg);
        kiln_catalog_close(c);
        return kiln_err_exit_code(rc);
    }
    if (o->json) {
        json_dumpf(arr, stdout, JSON_INDENT(2));
        putchar('\n');
    } else {
        printf("%-5s %-40s %-16s %-6s %-8s %-6s %12s  %s\n", "ID", "NAME", "VERSION", "SM", "ISA",
               "CUDA", "SIZE", "DIGEST");
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e)
        {
            const char *d = json_string_value(json_object_get(e, "digest"));
            printf("%-5lld %-40s %-16s %-6s %-8s %-6s %12lld  %.19s\n",
                   (long long)json_integer_value(json_object_get(e, "id")),
                   json_string_value(json_object_get(e, "name")),
                   json_string_value(json_object_get(e, "version")),
                   json_string_value(json_object_get(e, "sm")) ?: "-",
                   json_string_value(json_object_get(e, "isa")) ?: "-",
                   json_string_value(json_object_get(e, "cuda")) ?: "-",
                   (long long)json_integer_value(json_object_get(e, "size")), d ? d : "");
        }
    }
    json_decref(arr);
    kiln_catalog_close(c);
    return KILN_EXIT_OK;
}

static int do_show(struct opts *o)
{
    if (o->nargs != 1) {
        usage(stderr);
        return KILN_EXIT_USAGE;
    }
    struct kiln_catalog *c;
    int orc = open_cat(o, &c);
    if (orc) return orc;
    json_t *e;
    struct kiln_error err = {0};
    int rc = kiln_catalog_get(c, atoll(o->args[0]), &e, &err);
    if (rc == KILN_OK) {
        json_object_set_new(e, "signature_ok", json_boolean(kiln_catalog_entry_signature_ok(c, e)));
        json_dumpf(e, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(e);
    } else {
        fprintf(stderr, "kiln catalog show: %s\n", err.msg);
    }
    kiln_catalog_close(c);
    return kiln_err_exit_code(rc);
}

static int do_verify(struct opts *o)
{
    struct kiln_catalog *c;
    int orc = open_cat(o, &c);
    if (orc) return orc;
    json_t *problems = NULL, *notes = NULL;
    struct kiln_error err = {0};
    int n = kiln_catalog_verify(c, &problems, &notes, &err);
    if (n < 0) {
        fprintf(stderr, "kiln catalog verify: %s\n", err.msg);
        kiln_catalog_close(c);
        return kiln_err_exit_code(n);
    }
    json_t *all = NULL;
    json_t *f = json_pack("{s:i}", "limit", 10000);
    kiln_catalog_list(c, f, &all, NULL);
    json_decref(f);
    size_t entries = json_array_size(all);
    json_decref(all);
    if (o->json) {
        json_t *out = json_pack("{s:I,s:O,s:O,s:b}", "entries", (json_int_t)entries, "problems",
                                problems, "notes", notes, "ok", n == 0);
        json_dumpf(out, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(out);
    } else {
        size_t i;
        json_t *p;
        json_array_foreach(problems, i, p)
            printf("PROBLEM %s\n", json_string_value(json_object_get(p, "problem")));
        json_array_foreach(notes, i, p)
            printf("note    %s: %s\n", json_string_value(json_object_get(p, "file")),
                   json_string_value(json_object_get(p, "note")));
        printf("%zu entries checked, %d problem%s\n", entries, n, n == 1 ? "" : "s");
    }
    json_decref(problems);
    json_decref(notes);
    kiln_catalog_close(c);
    return n == 0 ? KILN_EXIT_OK : KILN_EXIT_FAIL;
}

static int do_gc(struct opts *o)
{
    struct kiln_catalog *c;
    int orc = open_cat(o, &c);
    if (orc) return orc;
    uint64_t files = 0, bytes = 0;
    struct kiln_error err = {0};
    int rc = kiln_catalog_gc(c, o->grace, &files, &bytes, &err);
    if (rc == KILN_OK)
        printf("removed %" PRIu64 " files, %" PRIu64 " bytes\n", files, bytes);
    else
        fprintf(stderr, "kiln catalog gc: %s\n", err.msg);
    kiln_catalog_close(c);
    return kiln_err_exit_code(rc);
}

static int do_publish(struct opts *o)
{
    if (o->nargs != 1) {
        usage(stderr);
        return KILN_EXIT_USAGE;
    }
    struct kiln_error err = {0};
    json_t *meta = build_meta(o, &err);
    if (!meta) {
        fprintf(stderr, "kiln catalog publish: %s\n", err.msg);
        return KILN_EXIT_USAGE;
    }
    struct kiln_catalog *c;
    int orc = open_cat(o, &c);
    if (orc) {
        json_decref(meta);
        return orc;
    }
    char digest[KILN_DIGEST_STR];
    uint64_t size = 0;
    int64_t id = 0;
    int created = 0;
    int had = o->digest && kiln_catalog_blob_have(c, o->digest, NULL);
    int rc = kiln_catalog_add_file(c, o->args[0], o->digest, digest, &size, &err);
    if (rc == KILN_OK) {
        if (!o->digest) had = -1; /* unknown before hashing; decide below */
        rc = kiln_catalog_publish(c, meta, digest, &id, &created, &err);
        /* A refused publish leaves the catalog as it was: drop the bytes we
         * just added unless some entry uses them. */
        if (rc != KILN_OK && had != 1) kiln_catalog_blob_drop_unreferenced(c, digest);
    }
    if (rc == KILN_OK)
        printf("%s %lld %s %s %s\n", created ? "published" : "unchanged", (long long)id,
               json_string_value(json_object_get(meta, "name")),
               json_string_value(json_object_get(meta, "version")), digest);
    else
        fprintf(stderr, "kiln catalog publish: %s\n", err.msg);
    json_decref(meta);
    kiln_catalog_close(c);
    return kiln_err_exit_code(rc);
}

static int do_push(struct opts *o, int export)
{
    if (o->nargs != 1) {
        usage(stderr);
        return KILN_EXIT_USAGE;
    }
    struct kiln_error err = {0};
    json_t *meta = build_meta(o, &err);
    if (!meta) {
        fprintf(stderr, "kiln catalog: %s\n", err.msg);
        return KILN_EXIT_USAGE;
    }
    json_t *entry = NULL;
    int sent = 0, rc;
    const char *token = getenv("KILN_TOKEN");
    if (export)
        rc = kiln_export_store_path(o->server, token, o->args[0], meta, &entry, &sent, &err);
    else
        rc = kiln_export_push(o->server, token, o->args[0], o->digest, meta, &entry, &sent, &err);
    json_decref(meta);
    if (rc != KILN_OK) {
        fprintf(stderr, "kiln catalog %s: %s\n", export ? "export" : "push", err.msg);
        return kiln_err_exit_code(rc);
    }
    printf("%s %lld %s %s (%s)\n",
           json_is_true(json_object_get(entry, "created")) ? "published" : "unchanged",
           (long long)json_integer_value(json_object_get(entry, "id")),
           json_string_value(json_object_get(entry, "name")),
           json_string_value(json_object_get(entry, "digest")),
           sent ? "bytes sent" : "server already had the bytes");
    json_decref(entry);
    return KILN_EXIT_OK;
}

/* ---- serve ---- */

struct srv {
    struct kiln_catalog *c;
    const char *token;
};

static int srv_headers(struct kiln_http_req *req, void *ctx)
{
    struct srv *s = ctx;
    enum kiln_role role = KILN_ROLE_READ;
    const char *a = kiln_http_req_header(req, "Authorization");
    /* A standalone catalog has one writer credential, its operator's: it
     * writes as an admin does in kiln serve (the only role that may). */
    if (a && !strncmp(a, "Bearer ", 7) && s->token && *s->token && kiln_ct_streq(a + 7, s->token))
        role = KILN_ROLE_ADMIN;
    else if (a)
        role = KILN_ROLE_NONE; /* a wrong token is refused, not downgraded */
    /* A standalone catalog stages nothing: published paths only. */
    if (!kiln_catalog_http(s->c, req, role, 0))
        kiln_http_respond_error(req, 404, "not_found", "no such path");
    return 0;
}

static void srv_request(struct kiln_http_req *req, void *ctx)
{
    (void)ctx;
    kiln_http_respond_error(req, 404, "not_found", "no such path");
}

static void on_signal(uv_signal_t *h, int sig)
{
    (void)sig;
    uv_stop(h->loop);
}

static int do_serve(struct opts *o)
{
    signal(SIGPIPE, SIG_IGN);
    struct srv s = {0};
    int orc = open_cat(o, &s.c);
    if (orc) return orc;
    s.token = getenv("KILN_CATALOG_TOKEN");
    uv_loop_t *loop = uv_default_loop();
    kiln_catalog_set_loop(s.c, loop);
    struct kiln_http_server *hs;
    struct kiln_http_callbacks cb = {srv_headers, srv_request, &s};
    int rc = kiln_http_server_start(loop, o->addr, o->port, NULL, NULL, cb, &hs);
    if (rc != KILN_OK) {
        fprintf(stderr, "kiln catalog serve: cannot listen on %s:%d\n", o->addr, o->port);
        kiln_catalog_close(s.c);
        return KILN_EXIT_INTERNAL;
    }
    int port = kiln_http_server_port(hs);
    if (o->port_file) {
        FILE *f = fopen(o->port_file, "w");
        if (f) {
            fprintf(f, "%d\n", port);
            fclose(f);
        }
    }
    char pub[200] = "";
    kiln_catalog_nix_public_key(s.c, pub, sizeof pub, NULL);
    fprintf(stderr, "kiln catalog serve: http://%s:%d/ (nix cache /nix-cache, key %s)\n", o->addr,
            port, pub);
    uv_signal_t sigs[2];
    int sn[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(loop, &sigs[i]);
        uv_signal_start(&sigs[i], on_signal, sn[i]);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    kiln_http_server_stop(hs);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&sigs[i], NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    kiln_catalog_close(s.c);
    return KILN_EXIT_OK;
}

/* ---- s3-put ---- */

struct s3run {
    int rc;
    char msg[512];
    uint64_t last;
};

static void s3_progress(void *arg, uint64_t done, uint64_t total)
{
    struct s3run *r = arg;
    if (done - r->last >= (16u << 20) || done == total) {
        fprintf(stderr, "s3: %" PRIu64 "/%" PRIu64 " bytes\n", done, total);
        r->last = done;
    }
}

static void s3_done(void *arg, int rc, const char *msg)
{
    struct s3run *r = arg;
    r->rc = rc;
    snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : "");
}

static int do_s3(struct opts *o)
{
    if (o->nargs != 2 || !o->endpoint || !o->bucket) {
        usage(stderr);
        return KILN_EXIT_USAGE;
    }
    struct kiln_s3_cfg cfg = {0};
    const char *ak = getenv("KILN_S3_ACCESS_KEY"), *sk = getenv("KILN_S3_SECRET_KEY");
    snprintf(cfg.endpoint, sizeof cfg.endpoint, "%s", o->endpoint);
    snprintf(cfg.bucket, sizeof cfg.bucket, "%s", o->bucket);
    snprintf(cfg.region, sizeof cfg.region, "%s", o->region ? o->region : "us-east-1");
    snprintf(cfg.access_key, sizeof cfg.access_key, "%s", ak ? ak : "");
    snprintf(cfg.secret_key, sizeof cfg.secret_key, "%s", sk ? sk : "");
    cfg.part_size = o->part_size;
    cfg.multipart_threshold = o->threshold;
    uv_loop_t *loop = uv_default_loop();
    struct kiln_s3_client *cl;
    struct kiln_error err = {0};
    struct s3run r = {.rc = 1};
    if (kiln_s3_client_new(loop, &cl, &err) != KILN_OK ||
        kiln_s3_put_file(cl, &cfg, o->args[1], o->args[0], NULL, s3_progress, s3_done, &r, &err) !=
            KILN_OK) {
        fprintf(stderr, "kiln catalog s3-put: %s\n", err.msg);
        return kiln_err_exit_code(err.code);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    kiln_s3_client_free(cl);
    uv_run(loop, UV_RUN_DEFAULT);
    if (r.rc != KILN_OK) {
        fprintf(stderr, "kiln catalog s3-put: %s\n", r.msg);
        return kiln_err_exit_code(r.rc);
    }
    printf("%s s3://%s/%s\n", r.msg, cfg.bucket, o->args[1]);
    return KILN_EXIT_OK;
}

static int do_key(struct opts *o)
{
    struct kiln_catalog *c;
    int orc = open_cat(o, &c);
    if (orc) return orc;
    char pub[200];
    struct kiln_error err = {0};
    int rc = kiln_catalog_nix_public_key(c, pub, sizeof pub, &err);
    if (rc == KILN_OK)
        printf("%s\n", pub);
    else
        fprintf(stderr, "kiln catalog key: %s\n", err.msg);
    kiln_catalog_close(c);
    return kiln_err_exit_code(rc);
}

struct trun {
    int called, rc;
    json_t *results;
};

static void targets_done(void *arg, int rc, json_t *results)
{
    struct trun *t = arg;
    t->called = 1;
    t->rc = rc;
    t->results = json_incref(results);
}

static int do_targets(struct opts *o)
{
    if (o->nargs != 1 || !o->config) {
        usage(stderr);
        return KILN_EXIT_USAGE;
    }
    json_error_t je;
    json_t *cfg = json_load_file(o->config, 0, &je);
    if (!cfg) {
        fprintf(stderr, "kiln catalog targets: %s:%d:%d: %s\n", o->config, je.line, je.column,
                je.text);
        return KILN_EXIT_USAGE;
    }
    struct kiln_catalog *c;
    int orc = open_cat(o, &c);
    if (orc) {
        json_decref(cfg);
        return orc;
    }
    uv_loop_t *loop = uv_default_loop();
    struct kiln_publisher *p = NULL;
    struct kiln_error err = {0};
    struct trun t = {0};
    int rc = kiln_publisher_new(loop, c, cfg, &p, &err);
    json_decref(cfg);
    if (rc == KILN_OK) rc = kiln_publisher_run(p, atoll(o->args[0]), targets_done, &t, &err);
    if (rc != KILN_OK) {
        fprintf(stderr, "kiln catalog targets: %s\n", err.msg);
        kiln_publisher_free(p);
        uv_run(loop, UV_RUN_DEFAULT);
        kiln_catalog_close(c);
        return kiln_err_exit_code(rc);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    kiln_publisher_free(p);
    uv_run(loop, UV_RUN_DEFAULT);
    kiln_catalog_close(c);
    size_t i;
    json_t *r;
    json_array_foreach(t.results, i, r) printf(
        "target %lld (%s): %s: %s\n", (long long)json_integer_value(json_object_get(r, "target")),
        json_string_value(json_object_get(r, "type")),
        json_is_true(json_object_get(r, "ok")) ? "ok" : "FAILED",
        json_string_value(json_object_get(r, "message")));
    json_decref(t.results);
    return t.called && t.rc == KILN_OK ? KILN_EXIT_OK : kiln_err_exit_code(t.rc ? t.rc : KILN_EIO);
}

int cmd_catalog(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? KILN_EXIT_USAGE : KILN_EXIT_OK;
    }
    const char *sub = argv[1];
    struct opts o;
    int pr = parse(argc - 1, argv + 1, &o);
    if (pr) return pr > 0 ? KILN_EXIT_OK : KILN_EXIT_USAGE;
    if (!strcmp(sub, "ls")) return do_ls(&o);
    if (!strcmp(sub, "show")) return do_show(&o);
    if (!strcmp(sub, "verify")) return do_verify(&o);
    if (!strcmp(sub, "gc")) return do_gc(&o);
    if (!strcmp(sub, "publish")) return do_publish(&o);
    if (!strcmp(sub, "push")) return do_push(&o, 0);
    if (!strcmp(sub, "export")) return do_push(&o, 1);
    if (!strcmp(sub, "serve")) return do_serve(&o);
    if (!strcmp(sub, "s3-put")) return do_s3(&o);
    if (!strcmp(sub, "key")) return do_key(&o);
    if (!strcmp(sub, "targets")) return do_targets(&o);
    fprintf(stderr, "kiln catalog: unknown command '%s'\n", sub);
    usage(stderr);
    return KILN_EXIT_USAGE;
}
