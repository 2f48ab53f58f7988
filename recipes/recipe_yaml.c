/* recipe_yaml.c - the first stage of recipes: libyaml events -> a node tree
 * that remembers line:column of every node, with the size, nesting and alias
 * limits of recipe.h; plus the arena, diagnostics and small helpers the
 * compiler and expander share. Everything here is static to the
 * recipes module and reached through recipe_priv.h. */
#include "recipes/recipe_priv.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ---------- arena ---------- */

struct ar_chunk {
    struct ar_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

#define AR_CHUNK 65536u

void *ar_alloc(struct arena *a, size_t n)
{
    n = (n + 15u) & ~(size_t)15u;
    if (n == 0) n = 16;
    struct ar_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > AR_CHUNK ? n : AR_CHUNK;
        c = malloc(sizeof(*c) + cap);
        if (!c) return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
        a->total += cap;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *ar_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = ar_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void ar_reset(struct arena *a)
{
    /* Keep the newest chunk so a per-variant arena stops allocating after
     * the first few variants. */
    struct ar_chunk *c = a->head;
    if (!c) return;
    struct ar_chunk *rest = c->next;
    while (rest) {
        struct ar_chunk *n = rest->next;
        a->total -= rest->cap;
        free(rest);
        rest = n;
    }
    c->next = NULL;
    c->used = 0;
}

void ar_free(struct arena *a)
{
    struct ar_chunk *c = a->head;
    while (c) {
        struct ar_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
    a->total = 0;
}

/* ---------- diagnostics ---------- */

int dg_add(struct diags *d, int code, int line, int col, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (code == 0) code = KILN_EINVAL;
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].line == line && d->v[i].col == col && strcmp(d->v[i].msg, msg) == 0)
            return code;
    if (d->n >= DG_MAX) {
        d->dropped++;
        return code;
    }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 16;
        struct diag *nv = realloc(d->v, nc * sizeof(*nv));
        if (!nv) {
            d->oom = 1;
            return KILN_ENOMEM;
        }
        d->v = nv;
        d->cap = nc;
    }
    struct diag *g = &d->v[d->n];
    char *m = strdup(msg);
    if (!m) {
        d->oom = 1;
        return KILN_ENOMEM;
    }
    g->line = line;
    g->col = col;
    g->code = code;
    g->msg = m;
    g->more = 0;
    g->file = d->file;
    d->n++;
    return code;
}

int dg_once(struct diags *d, int code, int line, int col, const char *fmt, ...)
{
    if (code == 0) code = KILN_EINVAL;
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].line == line && d->v[i].col == col && d->v[i].code == code) {
            d->v[i].more++;
            return code;
        }
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return dg_add(d, code, line, col, "%s", msg);
}

void dg_free(struct diags *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i].msg);
    free(d->v);
    d->v = NULL;
    d->n = d->cap = 0;
}

/* ---------- did you mean ---------- */

static size_t lev(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 99;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = prev + cost;
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

const char *did_you_mean(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t bd = 99;
    size_t wl = strlen(word);
    for (size_t i = 0; i < n; i++) {
        if (!cands[i]) continue;
        size_t d = lev(word, cands[i]);
        if (d < bd) {
            bd = d;
            best = cands[i];
        }
    }
    size_t limit = wl <= 3 ? 1 : (wl <= 6 ? 2 : 3);
    return bd <= limit ? best : NULL;
}

/* ---------- YAML -> node tree ---------- */

struct slot {
    struct node *n;
    struct slot *next;
};

struct frame {
    struct node *n;
    struct slot *first, *last;
    size_t count;
    const char *anchor;
};

struct anchor {
    const char *name;
    struct node *n;
};

struct loader {
    struct arena *a;
    struct diags *d;
    struct frame stack[KILN_RECIPE_MAX_DEPTH + 1];
    int depth;
    size_t nodes; /* nodes in the tree, aliases counted as full copies */
    struct anchor *anchors;
    size_t nanchors, capanchors;
    struct node *root;
};

static int ld_add_anchor(struct loader *L, const char *name, struct node *n)
{
    for (size_t i = 0; i < L->nanchors; i++)
        if (strcmp(L->anchors[i].name, name) == 0) {
            L->anchors[i].n = n; /* YAML allows redefinition: the later wins */
            return 0;
        }
    if (L->nanchors == L->capanchors) {
        size_t nc = L->capanchors ? L->capanchors * 2 : 8;
        struct anchor *na = realloc(L->anchors, nc * sizeof(*na));
        if (!na) return KILN_ENOMEM;
        L->anchors = na;
        L->capanchors = nc;
    }
    L->anchors[L->nanchors].name = name;
    L->anchors[L->nanchors].n = n;
    L->nanchors++;
    return 0;
}

static int ld_attach(struct loader *L, struct node *n, int line, int col)
{
    L->nodes += n->weight;
    if (L->nodes > KILN_RECIPE_MAX_NODES)
        return dg_add(L->d, KILN_ELIMIT, line, col,
                      "the document grows past %lu YAML nodes (aliases count as copies); "
                      "this looks like an alias-expansion bomb and is refused",
                      (unsigned long)KILN_RECIPE_MAX_NODES);
    if (L->depth == 0) {
        if (L->root)
            return dg_add(L->d, KILN_EINVAL, line, col, "a recipe file holds one YAML document");
        L->root = n;
        return 0;
    }
    struct frame *f = &L->stack[L->depth - 1];
    struct slot *s = ar_alloc(L->a, sizeof(*s));
    if (!s) return KILN_ENOMEM;
    s->n = n;
    if (f->last)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    f->count++;
    f->n->weight += n->weight;
    if (f->n->kind == N_MAP && f->count > 2 * 4096)
        return dg_add(L->d, KILN_ELIMIT, f->n->line, f->n->col,
                      "a mapping has more than 4096 keys, more than a recipe needs");
    return 0;
}

static char *ld_anchor_name(struct loader *L, const yaml_char_t *a)
{
    if (!a) return NULL;
    return ar_strndup(L->a, (const char *)a, strlen((const char *)a));
}

static int ld_syntax_error(struct diags *d, const yaml_parser_t *p)
{
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->error == YAML_MEMORY_ERROR)
        return dg_add(d, KILN_ENOMEM, line, col, "out of memory while reading YAML");
    if (p->context)
        return dg_add(d, KILN_EPARSE, line, col, "YAML syntax error: %s %s (line %d)",
                      p->problem ? p->problem : "malformed input", p->context,
                      (int)p->context_mark.line + 1);
    return dg_add(d, KILN_EPARSE, line, col, "YAML syntax error: %s",
                  p->problem ? p->problem : "malformed input");
}

static int ld_scalar(struct loader *L, const yaml_event_t *ev, int line, int col)
{
    struct node *n = ar_alloc(L->a, sizeof(*n));
    char *s =
        n ? ar_strndup(L->a, (const char *)ev->data.scalar.value, ev->data.scalar.length) : NULL;
    if (!s) return KILN_ENOMEM;
    n->kind = N_SCALAR;
    n->line = line;
    n->col = col;
    n->s = s;
    n->len = ev->data.scalar.length;
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    /* A merge key is a key position in a mapping with "<<". */
    if (n->plain && n->len == 2 && !memcmp(n->s, "<<", 2) && L->depth > 0 &&
        L->stack[L->depth - 1].n->kind == N_MAP && L->stack[L->depth - 1].count % 2 == 0)
        return dg_add(L->d, KILN_EINVAL, line, col,
                      "YAML merge keys (<<) are not supported in recipes; put shared "
                      "values in the recipe's attrs (defaults) or in a rule");
    n->style = (int)ev->data.scalar.style;
    n->weight = 1;
    if (ev->data.scalar.anchor) {
        char *an = ld_anchor_name(L, ev->data.scalar.anchor);
        if (!an || ld_add_anchor(L, an, n)) return KILN_ENOMEM;
    }
    return ld_attach(L, n, line, col);
}

/* A sequence or mapping starts: push a frame that collects its children. */
static int ld_open(struct loader *L, const yaml_event_t *ev, int line, int col)
{
    if (L->depth >= KILN_RECIPE_MAX_DEPTH)
        return dg_add(L->d, KILN_ELIMIT, line, col,
                      "YAML nesting is deeper than %d levels, more than a recipe needs",
                      KILN_RECIPE_MAX_DEPTH);
    struct node *n = ar_alloc(L->a, sizeof(*n));
    if (!n) return KILN_ENOMEM;
    n->kind = ev->type == YAML_MAPPING_START_EVENT ? N_MAP : N_SEQ;
    n->line = line;
    n->col = col;
    n->weight = 1;
    struct frame *f = &L->stack[L->depth++];
    memset(f, 0, sizeof(*f));
    f->n = n;
    const yaml_char_t *an = ev->type == YAML_MAPPING_START_EVENT ? ev->data.mapping_start.anchor
                                                                 : ev->data.sequence_start.anchor;
    if (an) {
        f->anchor = ld_anchor_name(L, an);
        if (!f->anchor) return KILN_ENOMEM;
    }
    return 0;
}

/* A sequence or mapping ends: its children become an array, and the node
 * joins its parent. */
static int ld_close(struct loader *L)
{
    struct frame *f = &L->stack[--L->depth];
    struct node *n = f->n;
    n->n = f->count;
    if (f->count) {
        n->kids = ar_alloc(L->a, f->count * sizeof(*n->kids));
        if (!n->kids) return KILN_ENOMEM;
        size_t i = 0;
        for (struct slot *s = f->first; s; s = s->next)
            n->kids[i++] = s->n;
    }
    if (n->kind == N_MAP) n->n /= 2;
    /* Anchors are registered at the end, so an alias inside its own
     * anchored node is "undefined" instead of a cycle. */
    if (f->anchor && ld_add_anchor(L, f->anchor, n)) return KILN_ENOMEM;
    /* The frame's weight was counted child by child; attach only
     * adds the node itself to the document total. */
    size_t w = n->weight;
    n->weight = 1;
    int rc = ld_attach(L, n, n->line, n->col);
    n->weight = w;
    if (rc == 0 && L->depth > 0) L->stack[L->depth - 1].n->weight += w - 1;
    return rc;
}

static int ld_alias(struct loader *L, const yaml_event_t *ev, int line, int col)
{
    const char *name = (const char *)ev->data.alias.anchor;
    struct node *t = NULL;
    for (size_t i = 0; i < L->nanchors; i++)
        if (strcmp(L->anchors[i].name, name) == 0) t = L->anchors[i].n;
    if (!t)
        return dg_add(L->d, KILN_EINVAL, line, col, "alias *%s names no anchor defined before it",
                      name);
    return ld_attach(L, t, line, col);
}

int yaml_load(struct arena *a, struct diags *d, const char *text, size_t len, struct node **root)
{
    *root = NULL;
    if (len > KILN_RECIPE_MAX_BYTES)
        return dg_add(d, KILN_ELIMIT, 1, 1,
                      "the file is %zu bytes; recipes are limited to %u bytes", len,
                      KILN_RECIPE_MAX_BYTES);
    struct loader L;
    memset(&L, 0, sizeof(L));
    L.a = a;
    L.d = d;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return dg_add(d, KILN_ENOMEM, 1, 1, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = 0;
    int done = 0;
    int docs = 0;
    while (!done && rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = ld_syntax_error(d, &p);
            break;
        }
        int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                rc = dg_add(d, KILN_EINVAL, line, col, "a recipe file holds one YAML document");
            break;
        case YAML_SCALAR_EVENT:
            rc = ld_scalar(&L, &ev, line, col);
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            rc = ld_open(&L, &ev, line, col);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            rc = ld_close(&L);
            break;
        case YAML_ALIAS_EVENT:
            rc = ld_alias(&L, &ev, line, col);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    free(L.anchors);
    if (rc == 0 && !L.root)
        rc = dg_add(
            d, KILN_EINVAL, 1, 1,
            "the file is empty; a recipe needs at least 'recipe:' and 'templates: {name: ...}'");
    if (rc == 0) *root = L.root;
    return rc;
}

/* ---------- marks inside scalars ---------- */

/* Line:column (1-based) of byte off of src. */
static void line_col_at(const char *src, size_t off, int *line, int *col)
{
    int ll = 1;
    size_t ls = 0;
    for (size_t k = 0; k < off; k++)
        if (src[k] == '\n') {
            ll++;
            ls = k + 1;
        }
    *line = ll;
    *col = (int)(off - ls) + 1;
}

void scalar_pos(const char *src, size_t srclen, const struct node *n, const char *needle, int *line,
                int *col)
{
    /* libyaml marks the start of a scalar; a template problem is more useful
     * at the exact "{var}". Search the source text from the scalar's start
     * for the first occurrence on this or a later line (block scalars begin
     * on the next line). */
    *line = n->line;
    *col = n->col;
    if (!src || !needle || !*needle) return;
    int l = 1;
    size_t i = 0;
    while (i < srclen && l < n->line) {
        if (src[i] == '\n') l++;
        i++;
    }
    size_t c = 1;
    while (i < srclen && c < (size_t)n->col && src[i] != '\n') {
        i++;
        c++;
    }
    size_t nl = strlen(needle);
    /* Do not wander more than a few hundred lines past the scalar. */
    int lines = 0;
    for (size_t j = i; j + nl <= srclen; j++) {
        if (src[j] == '\n') {
            if (++lines > 400) break;
            continue;
        }
        if (memcmp(src + j, needle, nl) == 0) {
            line_col_at(src, j, line, col);
            return;
        }
    }
}
