#include "common/yaml_json.h"

#include "common/buf.h"
#include "common/fsutil.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct anchor {
    char *name;
    json_t *value;
    size_t weight; /* nodes in the value, aliases expanded */
};

struct ctx {
    yaml_parser_t parser;
    const char *name;
    struct anchor *anchors;
    size_t nanchors, capanchors;
    size_t nodes; /* expanded node count so far */
    struct kiln_error *err;
};

static int fail_at(struct ctx *c, int code, yaml_mark_t m, const char *what)
{
    return kiln_fail(c->err, code, "%s:%zu:%zu: %s", c->name, m.line + 1, m.column + 1, what);
}

static json_t *scalar_value(const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return json_stringn(s, n);
    if (n == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"))
        return json_null();
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return json_true();
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return json_false();
    char *end = NULL;
    errno = 0;
    long long ll = strtoll(s, &end, 10);
    if (end && *end == '\0' && end != s && errno == 0) return json_integer(ll);
    errno = 0;
    double d = strtod(s, &end);
    if (end && *end == '\0' && end != s && errno == 0 && isfinite(d) &&
        strspn(s, "+-.0123456789eE") == n)
        return json_real(d);
    return json_stringn(s, n);
}

static int remember_anchor(struct ctx *c, const unsigned char *anchor, json_t *v, size_t weight)
{
    if (!anchor) return KILN_OK;
    if (c->nanchors == c->capanchors) {
        size_t cap = c->capanchors ? c->capanchors * 2 : 8;
        struct anchor *a = realloc(c->anchors, cap * sizeof *a);
        if (!a) return kiln_fail(c->err, KILN_ENOMEM, "out of memory");
        c->anchors = a;
        c->capanchors = cap;
    }
    char *name = strdup((const char *)anchor);
    if (!name) return kiln_fail(c->err, KILN_ENOMEM, "out of memory");
    c->anchors[c->nanchors++] = (struct anchor){name, json_incref(v), weight};
    return KILN_OK;
}

static int next_event(struct ctx *c, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&c->parser, ev)) {
        const char *problem = c->parser.problem ? c->parser.problem : "YAML syntax error";
        char msg[300];
        snprintf(msg, sizeof msg, "YAML syntax error: %s", problem);
        return fail_at(c, KILN_EPARSE, c->parser.problem_mark, msg);
    }
    return KILN_OK;
}

/* Parse the node that starts with ev (already pulled). */
static int parse_node(struct ctx *c, yaml_event_t *ev, int depth, json_t **out, size_t *weight);

static int parse_children(struct ctx *c, yaml_event_t *start, int depth, json_t **out,
                          size_t *weight)
{
    int is_map = start->type == YAML_MAPPING_START_EVENT;
    yaml_event_type_t end_type = is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    if (depth >= KILN_YAML_MAX_DEPTH)
        return fail_at(c, KILN_ELIMIT, start->start_mark, "nesting deeper than 64 levels");
    json_t *node = is_map ? json_object() : json_array();
    if (!node) return kiln_fail(c->err, KILN_ENOMEM, "out of memory");
    size_t w = 1;
    int rc = KILN_OK;
    for (;;) {
        yaml_event_t ev;
        if ((rc = next_event(c, &ev))) break;
        if (ev.type == end_type) {
            yaml_event_delete(&ev);
            break;
        }
        if (is_map) {
            if (ev.type != YAML_SCALAR_EVENT) {
                rc = fail_at(c, KILN_EPARSE, ev.start_mark, "mapping keys must be plain strings");
                yaml_event_delete(&ev);
                break;
            }
            char *key = strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
            yaml_mark_t km = ev.start_mark;
            yaml_event_delete(&ev);
            if (!key) {
                rc = kiln_fail(c->err, KILN_ENOMEM, "out of memory");
                break;
            }
            yaml_event_t vev;
            json_t *val = NULL;
            size_t vw = 0;
            if (!(rc = next_event(c, &vev))) rc = parse_node(c, &vev, depth + 1, &val, &vw);
            if (!rc && json_object_get(node, key)) {
                char msg[300];
                snprintf(msg, sizeof msg, "duplicate key '%.200s'", key);
                rc = fail_at(c, KILN_EPARSE, km, msg);
                json_decref(val);
            } else if (!rc && json_object_set_new(node, key, val)) {
                rc = kiln_fail(c->err, KILN_ENOMEM, "out of memory");
            }
            free(key);
            if (rc) break;
            w += vw;
        } else {
            json_t *val = NULL;
            size_t vw = 0;
            if ((rc = parse_node(c, &ev, depth + 1, &val, &vw))) break;
            if (json_array_append_new(node, val)) {
                rc = kiln_fail(c->err, KILN_ENOMEM, "out of memory");
                break;
            }
            w += vw;
        }
    }
    if (rc) {
        json_decref(node);
        return rc;
    }
    *out = node;
    *weight = w;
    return KILN_OK;
}

static int parse_node(struct ctx *c, yaml_event_t *ev, int depth, json_t **out, size_t *weight)
{
    int rc = KILN_OK;
    const unsigned char *anchor = NULL;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        *out = scalar_value(ev);
        *weight = 1;
        if (!*out) rc = kiln_fail(c->err, KILN_ENOMEM, "out of memory");
        anchor = ev->data.scalar.anchor;
        break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        anchor = ev->type == YAML_SEQUENCE_START_EVENT ? ev->data.sequence_start.anchor
                                                       : ev->data.mapping_start.anchor;
        rc = parse_children(c, ev, depth, out, weight);
        break;
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        rc = fail_at(c, KILN_EPARSE, ev->start_mark, "alias to an unknown anchor");
        for (size_t i = c->nanchors; i-- > 0;)
            if (!strcmp(c->anchors[i].name, name)) {
                *out = json_incref(c->anchors[i].value);
                *weight = c->anchors[i].weight;
                rc = KILN_OK;
                break;
            }
        break;
    }
    default:
        rc = fail_at(c, KILN_EPARSE, ev->start_mark, "unexpected YAML event");
    }
    if (!rc) {
        c->nodes += *weight;
        if (c->nodes > KILN_YAML_MAX_NODES || *weight > KILN_YAML_MAX_NODES)
            rc = fail_at(c, KILN_ELIMIT, ev->start_mark,
                         "document expands to more than 1000000 nodes (alias bomb?)");
        else
            rc = remember_anchor(c, anchor, *out, *weight);
        if (rc) {
            /* The caller owns *out only on success: leaving the freed
             * pointer there made kiln_yaml_to_json() free the root twice
             * when the root itself crossed the node limit (fuzz finding,
             * tests/fuzz/corpus/yaml_json/uaf-root-over-node-limit.yaml). */
            json_decref(*out);
            *out = NULL;
        }
    }
    yaml_event_delete(ev);
    return rc;
}

int kiln_yaml_to_json(const char *name, const char *text, size_t len, json_t **out,
                      struct kiln_error *err)
{
    struct kiln_buf file = {0};
    if (!text) {
        int rc = kiln_read_file(name, KILN_YAML_MAX_BYTES, &file);
        if (rc == KILN_ELIMIT)
            return kiln_fail(err, rc, "%s: larger than %u bytes", name, KILN_YAML_MAX_BYTES);
        if (rc) return kiln_fail(err, rc, "%s: cannot read: %s", name, kiln_strerror(rc));
        text = file.data;
        len = file.len;
    } else if (len > KILN_YAML_MAX_BYTES) {
        return kiln_fail(err, KILN_ELIMIT, "%s: larger than %u bytes", name, KILN_YAML_MAX_BYTES);
    }
    struct ctx c = {.name = name ? name : "<yaml>", .err = err};
    if (!yaml_parser_initialize(&c.parser)) {
        kiln_buf_free(&file);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)text, len);
    json_t *root = NULL;
    int rc = KILN_OK;
    yaml_event_t ev;
    /* stream-start, document-start (or stream-end for an empty text) */
    for (;;) {
        if ((rc = next_event(&c, &ev))) break;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        if (t == YAML_STREAM_END_EVENT || t == YAML_DOCUMENT_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (root) {
            rc = fail_at(&c, KILN_EPARSE, ev.start_mark, "more than one document");
            yaml_event_delete(&ev);
            break;
        }
        size_t w = 0;
        if ((rc = parse_node(&c, &ev, 0, &root, &w))) break;
    }
    yaml_parser_delete(&c.parser);
    for (size_t i = 0; i < c.nanchors; i++) {
        free(c.anchors[i].name);
        json_decref(c.anchors[i].value);
    }
    free(c.anchors);
    kiln_buf_free(&file);
    if (rc) {
        json_decref(root);
        return rc;
    }
    *out = root ? root : json_null();
    return KILN_OK;
}
