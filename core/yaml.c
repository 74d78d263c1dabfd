/*
 * yaml.c — owns YAML <-> JSON over libyaml: building JSON values from the parser's event
 * stream (YAML 1.2 core-schema scalars, anchors/aliases with caps against alias bombs, "<<"
 * merge keys, nesting limit) and emitting one document from a JSON value.
 */
#include "yaml.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* libyaml's header is <yaml.h>, but core/yaml.h (this module's interface) has the same name
 * and the core directory is on the include path, so <yaml.h> finds ours. Reaching libyaml
 * through "<includedir>/../include/yaml.h" skips the core directory (its parent has no
 * include/yaml.h) and lands on libyaml in /usr/include, /usr/local/include or a pkg-config
 * -I.../include. Renaming core/yaml.h would make this plain <yaml.h> again. */
#include <../include/yaml.h>

#define MLE_YAML_MAX_DEPTH 256
/* Nodes in the whole result, and nodes produced by expanding aliases: a "billion laughs"
 * document is a few hundred bytes that expand into millions of nodes. */
#define MLE_YAML_MAX_NODES 1000000
#define MLE_YAML_MAX_ALIAS_NODES 100000

/* ------------------------------------------------------------------------------------
 * Scalars: the YAML 1.2 core schema for plain scalars.
 * ------------------------------------------------------------------------------------ */

static int all_in(const char *s, const char *set)
{
    return *s && s[strspn(s, set)] == '\0';
}

static int eq_any(const char *s, const char *a, const char *b, const char *c)
{
    return strcmp(s, a) == 0 || strcmp(s, b) == 0 || strcmp(s, c) == 0;
}

/* [-+]?[0-9]+, 0o[0-7]+, 0x[0-9a-fA-F]+. Sets *out; 1 when s is an integer that fits. */
static int core_int(const char *s, long long *out, int *overflow)
{
    int base = 10;
    const char *digits = s;
    if (strncmp(s, "0o", 2) == 0) {
        base = 8, digits = s + 2;
        if (!all_in(digits, "01234567"))
            return 0;
    } else if (strncmp(s, "0x", 2) == 0) {
        base = 16, digits = s + 2;
        if (!all_in(digits, "0123456789abcdefABCDEF"))
            return 0;
    } else {
        const char *d = (*s == '-' || *s == '+') ? s + 1 : s;
        if (!all_in(d, "0123456789"))
            return 0;
    }
    errno = 0;
    *out = strtoll(digits, NULL, base);
    *overflow = errno == ERANGE;
    return 1;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int core_float_syntax(const char *s)
{
    const char *p = (*s == '-' || *s == '+') ? s + 1 : s;
    size_t int_digits = strspn(p, "0123456789");
    p += int_digits;
    size_t frac_digits = 0;
    if (*p == '.') {
        p++;
        frac_digits = strspn(p, "0123456789");
        p += frac_digits;
    }
    if (int_digits == 0 && frac_digits == 0)
        return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        size_t exp_digits = strspn(p, "0123456789");
        if (exp_digits == 0)
            return 0;
        p += exp_digits;
    }
    return *p == '\0';
}

/* What a plain scalar means. Values JSON cannot hold (.inf, .nan, integers beyond 64 bits)
 * stay strings rather than lose information. */
static json_t *resolve_plain(const char *s, size_t len)
{
    if (len == 0 || eq_any(s, "~", "null", "Null") || strcmp(s, "NULL") == 0)
        return json_null();
    if (eq_any(s, "true", "True", "TRUE"))
        return json_true();
    if (eq_any(s, "false", "False", "FALSE"))
        return json_false();
    long long i = 0;
    int overflow = 0;
    if (core_int(s, &i, &overflow))
        return overflow ? json_stringn(s, len) : json_integer((json_int_t)i);
    if (core_float_syntax(s)) {
        double d = strtod(s, NULL);
        if (isfinite(d))
            return json_real(d);
    }
    return json_stringn(s, len);
}

static json_t *resolve_scalar(const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    if (tag && (strcmp(tag, YAML_STR_TAG) == 0 || strcmp(tag, "!") == 0))
        return json_stringn(s, len);
    /* An explicit core tag (!!int "5") asks for resolution whatever the quoting. */
    int core_tag = tag && (strcmp(tag, YAML_INT_TAG) == 0 || strcmp(tag, YAML_FLOAT_TAG) == 0 ||
                           strcmp(tag, YAML_BOOL_TAG) == 0 || strcmp(tag, YAML_NULL_TAG) == 0);
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE && !core_tag)
        return json_stringn(s, len);
    if (strlen(s) != len) /* a NUL inside: only a string can hold it */
        return json_stringn(s, len);
    return resolve_plain(s, len);
}

/* ------------------------------------------------------------------------------------
 * Building values from events.
 * ------------------------------------------------------------------------------------ */

typedef struct frame {
    json_t *node;     /* the container being filled (owned) */
    char *anchor;     /* its anchor name (owned), or NULL */
    size_t nodes;     /* nodes in this subtree so far, itself included */
    int is_map;
    char *key;        /* mapping: the key waiting for its value (owned), or NULL */
    int key_is_merge; /* the waiting key is a plain "<<" */
    json_t *explicit; /* mapping: keys written out (a set), to refuse duplicates */
} frame;

typedef struct anchor {
    char *name;
    json_t *v;
    size_t nodes;
} anchor;

typedef struct builder {
    frame stack[MLE_YAML_MAX_DEPTH];
    size_t depth;
    anchor *anchors;
    size_t n_anchors, cap_anchors;
    size_t total_nodes, alias_nodes;
    json_t *docs;
    json_t *root;
    yaml_mark_t mark; /* where the current event starts */
    mle_error **err;
} builder;

static int fail_at(builder *b, const char *fmt, const char *arg)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    return mle_fail(b->err, MLE_E_INVALID, "YAML line %zu column %zu: %s", b->mark.line + 1,
                    b->mark.column + 1, msg);
}

static void anchors_clear(builder *b)
{
    for (size_t i = 0; i < b->n_anchors; i++) {
        free(b->anchors[i].name);
        json_decref(b->anchors[i].v);
    }
    b->n_anchors = 0;
}

static const anchor *anchor_find(const builder *b, const char *name)
{
    /* Newest first: a re-defined anchor refers to its latest definition. */
    for (size_t i = b->n_anchors; i > 0; i--)
        if (strcmp(b->anchors[i - 1].name, name) == 0)
            return &b->anchors[i - 1];
    return NULL;
}

static int anchor_add(builder *b, const char *name, json_t *v, size_t nodes)
{
    if (!name)
        return 0;
    if (b->n_anchors == b->cap_anchors) {
        size_t cap = b->cap_anchors ? b->cap_anchors * 2 : 16;
        anchor *a = realloc(b->anchors, cap * sizeof *a);
        if (!a)
            return fail_at(b, "out of memory", NULL);
        b->anchors = a;
        b->cap_anchors = cap;
    }
    char *n = strdup(name);
    if (!n)
        return fail_at(b, "out of memory", NULL);
    b->anchors[b->n_anchors++] = (anchor){n, json_incref(v), nodes};
    return 0;
}

static void frame_free(frame *f)
{
    json_decref(f->node);
    json_decref(f->explicit);
    free(f->anchor);
    free(f->key);
    memset(f, 0, sizeof *f);
}

/* "<<: *base" or "<<: [*a, *b]": copy in keys not already present (earlier sources and
 * keys written before win; keys written after override). */
static int merge_into(builder *b, frame *f, json_t *src)
{
    if (json_is_array(src)) {
        size_t i;
        json_t *item;
        json_array_foreach(src, i, item)
            if (merge_into(b, f, item) != 0)
                return -1;
        return 0;
    }
    if (!json_is_object(src))
        return fail_at(b, "a merge key (<<) needs a mapping or a list of mappings", NULL);
    const char *k;
    json_t *v;
    json_object_foreach(src, k, v)
        if (!json_object_get(f->node, k))
            json_object_set(f->node, k, v);
    return 0;
}

static int set_in_map(builder *b, frame *f, json_t *v)
{
    char *key = f->key;
    int merge = f->key_is_merge;
    f->key = NULL;
    f->key_is_merge = 0;
    int rc = 0;
    if (merge) {
        rc = merge_into(b, f, v);
    } else if (json_object_get(f->explicit, key)) {
        rc = fail_at(b, "duplicate key \"%s\"", key);
    } else {
        json_object_set_new(f->explicit, key, json_true());
        json_object_set(f->node, key, v);
    }
    free(key);
    json_decref(v);
    return rc;
}

/* Text of a mapping key given as a value (a scalar through an alias). */
static char *key_text(const json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_object(v) || json_is_array(v))
        return NULL;
    return json_dumps(v, JSON_ENCODE_ANY);
}

/* Hand a finished node (stolen) to its parent, or make it the document's root. */
static int deliver(builder *b, json_t *v, size_t nodes)
{
    if (!v)
        return fail_at(b, "a scalar that is not valid UTF-8", NULL);
    if (b->depth == 0) {
        json_decref(b->root);
        b->root = v;
        return 0;
    }
    frame *f = &b->stack[b->depth - 1];
    f->nodes += nodes;
    if (!f->is_map) {
        json_array_append_new(f->node, v);
        return 0;
    }
    if (f->key)
        return set_in_map(b, f, v);
    f->key = key_text(v);
    json_decref(v);
    if (!f->key)
        return fail_at(b, "mapping keys must be scalars", NULL);
    return 0;
}

static int count_nodes(builder *b, size_t nodes, int via_alias)
{
    b->total_nodes += nodes;
    if (b->total_nodes > MLE_YAML_MAX_NODES)
        return fail_at(b, "the document expands to more than %s nodes", "1000000");
    if (!via_alias)
        return 0;
    b->alias_nodes += nodes;
    if (b->alias_nodes > MLE_YAML_MAX_ALIAS_NODES)
        return fail_at(b, "aliases expand to more than %s nodes (an alias bomb?)", "100000");
    return 0;
}

static int on_scalar(builder *b, const yaml_event_t *ev)
{
    if (count_nodes(b, 1, 0) != 0)
        return -1;
    frame *f = b->depth ? &b->stack[b->depth - 1] : NULL;
    if (f && f->is_map && !f->key) {
        /* Keys keep their text as written: "1: a" is the key "1". */
        f->key = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        f->key_is_merge = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                          strcmp(f->key ? f->key : "", "<<") == 0;
        f->nodes++;
        return f->key ? 0 : fail_at(b, "out of memory", NULL);
    }
    json_t *v = resolve_scalar(ev);
    if (v && anchor_add(b, (const char *)ev->data.scalar.anchor, v, 1) != 0) {
        json_decref(v);
        return -1;
    }
    return deliver(b, v, 1);
}

static int on_alias(builder *b, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    const anchor *a = anchor_find(b, name);
    if (!a)
        return fail_at(b, "alias *%s names no anchor defined before it", name);
    if (count_nodes(b, a->nodes, 1) != 0)
        return -1;
    json_t *copy = json_deep_copy(a->v);
    if (!copy)
        return fail_at(b, "out of memory", NULL);
    return deliver(b, copy, a->nodes);
}

static int on_start(builder *b, const yaml_event_t *ev, int is_map)
{
    frame *parent = b->depth ? &b->stack[b->depth - 1] : NULL;
    if (parent && parent->is_map && !parent->key)
        return fail_at(b, "mapping keys must be scalars", NULL);
    if (b->depth >= MLE_YAML_MAX_DEPTH)
        return fail_at(b, "nesting deeper than %s levels", "256");
    if (count_nodes(b, 1, 0) != 0)
        return -1;
    const yaml_char_t *anc = is_map ? ev->data.mapping_start.anchor
                                    : ev->data.sequence_start.anchor;
    frame *f = &b->stack[b->depth++];
    *f = (frame){.node = is_map ? json_object() : json_array(), .nodes = 1, .is_map = is_map};
    f->explicit = is_map ? json_object() : NULL;
    f->anchor = anc ? strdup((const char *)anc) : NULL;
    if (!f->node || (is_map && !f->explicit) || (anc && !f->anchor))
        return fail_at(b, "out of memory", NULL);
    return 0;
}

static int on_end(builder *b)
{
    frame *f = &b->stack[--b->depth];
    json_t *v = json_incref(f->node);
    size_t nodes = f->nodes;
    int rc = anchor_add(b, f->anchor, v, nodes);
    frame_free(f);
    if (rc != 0) {
        json_decref(v);
        return -1;
    }
    return deliver(b, v, nodes);
}

static int on_event(builder *b, const yaml_event_t *ev)
{
    b->mark = ev->start_mark;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        anchors_clear(b); /* anchors are local to their document */
        json_decref(b->root);
        b->root = NULL;
        return 0;
    case YAML_DOCUMENT_END_EVENT: {
        json_t *doc = b->root ? b->root : json_null();
        b->root = NULL;
        return json_array_append_new(b->docs, doc) == 0 ? 0 : fail_at(b, "out of memory", NULL);
    }
    case YAML_SCALAR_EVENT: return on_scalar(b, ev);
    case YAML_ALIAS_EVENT: return on_alias(b, ev);
    case YAML_SEQUENCE_START_EVENT: return on_start(b, ev, 0);
    case YAML_MAPPING_START_EVENT: return on_start(b, ev, 1);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: return on_end(b);
    default: return 0;
    }
}

static void builder_free(builder *b)
{
    while (b->depth > 0)
        frame_free(&b->stack[--b->depth]);
    anchors_clear(b);
    free(b->anchors);
    json_decref(b->root);
    json_decref(b->docs);
}

static void parser_failed(const yaml_parser_t *p, mle_error **err)
{
    const yaml_mark_t *m = &p->problem_mark;
    if (p->context)
        mle_fail(err, MLE_E_INVALID, "YAML line %zu column %zu: %s %s", m->line + 1,
                 m->column + 1, p->problem ? p->problem : "syntax error", p->context);
    else
        mle_fail(err, MLE_E_INVALID, "YAML line %zu column %zu: %s", m->line + 1,
                 m->column + 1, p->problem ? p->problem : "syntax error");
}

json_t *mle_yaml_parse(const char *text, size_t len, mle_error **err)
{
    if (!text) {
        mle_fail(err, MLE_E_INVALID, "YAML: no text to parse");
        return NULL;
    }
    builder *b = calloc(1, sizeof *b);
    yaml_parser_t p;
    if (!b || !yaml_parser_initialize(&p)) {
        free(b);
        mle_fail(err, MLE_E_INTERNAL, "YAML: out of memory");
        return NULL;
    }
    b->err = err;
    b->docs = json_array();
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int ok = b->docs != NULL, done = 0;
    while (ok && !done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            parser_failed(&p, err);
            ok = 0;
            break;
        }
        ok = on_event(b, &ev) == 0;
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    json_t *docs = ok ? json_incref(b->docs) : NULL;
    builder_free(b);
    free(b);
    return docs;
}

/* ------------------------------------------------------------------------------------
 * Emitting.
 * ------------------------------------------------------------------------------------ */

typedef struct outbuf {
    char *buf;
    size_t len, cap;
} outbuf;

static int write_out(void *ud, unsigned char *data, size_t n)
{
    outbuf *o = ud;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 1024;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *nb = realloc(o->buf, cap);
        if (!nb)
            return 0;
        o->buf = nb;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, data, n);
    o->len += n;
    o->buf[o->len] = '\0';
    return 1;
}

static int emit(yaml_emitter_t *em, yaml_event_t *ev)
{
    return yaml_emitter_emit(em, ev) ? 0 : -1;
}

static int emit_scalar(yaml_emitter_t *em, const char *s, size_t n, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)n, 1, 1, style))
        return -1;
    return emit(em, &ev);
}

/* A string must come back as a string: quote it when its plain form would read as another
 * type; multi-line text goes in a literal block (libyaml falls back when it cannot). */
/* Plain scalars that YAML 1.1 readers (helm, kubectl, PyYAML) take for something other than
 * a string although YAML 1.2 does not: booleans like "on" and "no", numbers with '_',
 * base-60 like "12:30", octal like "0755". Quoting them costs nothing and keeps them
 * strings for every reader. */
static int yaml11_ambiguous(const char *s, size_t n)
{
    static const char *const words[] = {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No",
                                        "NO", "on", "On", "ON", "off", "Off", "OFF", "=",
                                        NULL};
    for (const char *const *w = words; *w; w++)
        if (strcmp(s, *w) == 0)
            return 1;
    if (n == 0)
        return 0;
    size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (i >= n || !(isdigit((unsigned char)s[i]) || s[i] == '.'))
        return 0;
    /* digits with '_', ':' or a leading 0: a 1.1 number (int, float, base 60, octal) */
    int special = 0;
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '_' || c == ':')
            special = 1;
        else if (!isdigit(c) && c != '.' && c != 'e' && c != 'E' && c != '-' && c != '+' &&
                 c != 'x' && c != 'o' && !isxdigit(c))
            return 0;
    }
    return special || (s[0] == '0' && n > 1);
}

static int emit_string(yaml_emitter_t *em, const char *s, size_t n)
{
    json_t *as_plain = strlen(s) == n ? resolve_plain(s, n) : NULL;
    int needs_quotes = !as_plain || !json_is_string(as_plain) || strcmp(s, "<<") == 0 ||
                       yaml11_ambiguous(s, n);
    json_decref(as_plain);
    yaml_scalar_style_t style = needs_quotes ? YAML_DOUBLE_QUOTED_SCALAR_STYLE
                                : memchr(s, '\n', n) ? YAML_LITERAL_SCALAR_STYLE
                                                     : YAML_ANY_SCALAR_STYLE;
    return emit_scalar(em, s, n, style);
}

/* Shortest text that reads back as the same double, always with a '.' or exponent so it
 * reads back as a float and not an integer. */
static void real_text(double d, char *buf, size_t n)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    if (!strpbrk(buf, ".eE"))
        strncat(buf, ".0", n - strlen(buf) - 1);
}

static int emit_value(yaml_emitter_t *em, const json_t *v, int depth);

static int emit_object(yaml_emitter_t *em, const json_t *v, int depth)
{
    yaml_event_t ev;
    yaml_mapping_style_t st = json_object_size(v) ? YAML_BLOCK_MAPPING_STYLE
                                                  : YAML_FLOW_MAPPING_STYLE;
    if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, st) || emit(em, &ev) != 0)
        return -1;
    const char *k;
    json_t *item;
    json_object_foreach((json_t *)v, k, item) {
        if (emit_string(em, k, strlen(k)) != 0 || emit_value(em, item, depth + 1) != 0)
            return -1;
    }
    if (!yaml_mapping_end_event_initialize(&ev))
        return -1;
    return emit(em, &ev);
}

static int emit_array(yaml_emitter_t *em, const json_t *v, int depth)
{
    yaml_event_t ev;
    yaml_sequence_style_t st = json_array_size(v) ? YAML_BLOCK_SEQUENCE_STYLE
                                                  : YAML_FLOW_SEQUENCE_STYLE;
    if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, st) || emit(em, &ev) != 0)
        return -1;
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        if (emit_value(em, item, depth + 1) != 0)
            return -1;
    }
    if (!yaml_sequence_end_event_initialize(&ev))
        return -1;
    return emit(em, &ev);
}

static int emit_value(yaml_emitter_t *em, const json_t *v, int depth)
{
    char num[64];
    if (depth > MLE_YAML_MAX_DEPTH)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT: return emit_object(em, v, depth);
    case JSON_ARRAY: return emit_array(em, v, depth);
    case JSON_STRING: return emit_string(em, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return emit_scalar(em, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
    case JSON_REAL:
        real_text(json_real_value(v), num, sizeof num);
        return emit_scalar(em, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
    case JSON_TRUE: return emit_scalar(em, "true", 4, YAML_PLAIN_SCALAR_STYLE);
    case JSON_FALSE: return emit_scalar(em, "false", 5, YAML_PLAIN_SCALAR_STYLE);
    case JSON_NULL: return emit_scalar(em, "null", 4, YAML_PLAIN_SCALAR_STYLE);
    }
    return -1;
}

static int emit_document(yaml_emitter_t *em, const json_t *v)
{
    yaml_event_t ev;
    if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) || emit(em, &ev) != 0)
        return -1;
    if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) ||
        emit(em, &ev) != 0)
        return -1;
    if (emit_value(em, v, 1) != 0)
        return -1;
    if (!yaml_document_end_event_initialize(&ev, 1) || emit(em, &ev) != 0)
        return -1;
    if (!yaml_stream_end_event_initialize(&ev) || emit(em, &ev) != 0)
        return -1;
    return yaml_emitter_flush(em) ? 0 : -1;
}

char *mle_yaml_emit(const json_t *v, mle_error **err)
{
    if (!v) {
        mle_fail(err, MLE_E_INVALID, "YAML: no value to emit");
        return NULL;
    }
    yaml_emitter_t em;
    outbuf out = {0};
    if (!yaml_emitter_initialize(&em)) {
        mle_fail(err, MLE_E_INTERNAL, "YAML: out of memory");
        return NULL;
    }
    yaml_emitter_set_output(&em, write_out, &out);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1); /* never fold long lines */
    int rc = emit_document(&em, v);
    if (rc != 0)
        mle_fail(err, MLE_E_INVALID, "YAML: cannot emit the value: %s",
                 em.problem ? em.problem : "nesting deeper than 256 levels or out of memory");
    yaml_emitter_delete(&em);
    if (rc != 0) {
        free(out.buf);
        return NULL;
    }
    return out.buf;
}
