/*
 * aws_util.c — small helpers every part of the AWS driver uses: strings, reading values,
 * walking lists as the host's XML parser shapes them, tags (ownership + user), forms, times.
 *
 * Part of the aws.c translation unit (see aws_internal.h).
 */
#include <time.h>

/* ------------------------------------------------------------------------------------------
 * Strings (libc; OOM aborts).
 * ------------------------------------------------------------------------------------------ */
static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

/* Copy of s (caller frees with free()), or NULL when s is NULL. */
static char *xstrdup(const char *s) {
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *p = xmalloc(n + 1);
    memcpy(p, s, n + 1);
    return p;
}

/* Formatted string; caller frees with free(). */
static char *xasprintf(const char *fmt, ...) MLE_PRINTF(1, 2);
static char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = NULL;
    if (vasprintf(&p, fmt, ap) < 0)
        abort();
    va_end(ap);
    return p;
}

/* Frees a secret after wiping it, so keys do not linger in freed heap blocks. */
static void free_secret(char *s) {
    if (!s)
        return;
    volatile char *v = s;
    while (*v)
        *v++ = 0;
    free(s);
}

static void buf_putn(aws_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            abort();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_puts(aws_buf *b, const char *s) { buf_putn(b, s, strlen(s)); }

static void buf_printf(aws_buf *b, const char *fmt, ...) MLE_PRINTF(2, 3);
static void buf_printf(aws_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = NULL;
    if (vasprintf(&p, fmt, ap) < 0)
        abort();
    va_end(ap);
    buf_puts(b, p);
    free(p);
}

/* The built string (caller frees with free()); the buffer is left empty. */
static char *buf_take(aws_buf *b) {
    if (!b->p)
        buf_putn(b, "", 0);
    char *p = b->p;
    memset(b, 0, sizeof *b);
    return p;
}

static void buf_free(aws_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* XML text escaping for the few XML bodies S3 takes. */
static void buf_put_xml(aws_buf *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': buf_puts(b, "&lt;"); break;
        case '>': buf_puts(b, "&gt;"); break;
        case '&': buf_puts(b, "&amp;"); break;
        case '"': buf_puts(b, "&quot;"); break;
        case '\'': buf_puts(b, "&apos;"); break;
        default: buf_putn(b, s, 1);
        }
    }
}

/* RFC 3986 encoding (unreserved kept), as every AWS protocol wants it in forms, paths and
 * queries. Appends to b. */
static void buf_put_enc(aws_buf *b, const char *s, int keep_slash) {
    char *e = mle_aws_uri_encode(s, strlen(s), keep_slash);
    if (!e)
        abort();
    buf_puts(b, e);
    free(e);
}

/* Split "<a><sep><b>" at the first sep into copies (free()); both parts non-empty. 0 or -1. */
static int split_at(const char *id, char sep, char **a, char **b) {
    const char *at = id ? strchr(id, sep) : NULL;
    if (!at || at == id || !at[1])
        return -1;
    *a = xmalloc((size_t)(at - id) + 1);
    memcpy(*a, id, (size_t)(at - id));
    (*a)[at - id] = '\0';
    *b = xstrdup(at + 1);
    return 0;
}

static int str_eq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

static int starts_with(const char *s, const char *prefix) {
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = s ? strlen(s) : 0, m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* ------------------------------------------------------------------------------------------
 * Reading values. All returns are borrowed from the value they were read from.
 * ------------------------------------------------------------------------------------------ */

/* The member at a dotted path ("vpc.tagSet"), or NULL. */
static mle_value *vpath(const mle_host *h, const mle_value *v, const char *path) {
    char key[128];
    while (v && path && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof key || h->v_kind(v) != MLE_V_OBJECT)
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        v = h->v_get(v, key);
        path = dot ? dot + 1 : NULL;
    }
    return (mle_value *)v;
}

/* The string at a path; NULL when absent, null or not a string. */
static const char *vstr(const mle_host *h, const mle_value *v, const char *path) {
    mle_value *x = vpath(h, v, path);
    return x ? h->v_str(x) : NULL;
}

/* A non-empty string at a path, or NULL. */
static const char *vstr_ne(const mle_host *h, const mle_value *v, const char *path) {
    const char *s = vstr(h, v, path);
    return s && *s ? s : NULL;
}

/* A boolean at a path: JSON true/false, or the XML text "true"/"false". */
static int vbool(const mle_host *h, const mle_value *v, const char *path, int dflt) {
    mle_value *x = vpath(h, v, path);
    if (!x)
        return dflt;
    switch (h->v_kind(x)) {
    case MLE_V_BOOL: return h->v_bool_of(x);
    case MLE_V_STRING: return str_eq(h->v_str(x), "true") ? 1 : str_eq(h->v_str(x), "false") ? 0 : dflt;
    case MLE_V_INT: return h->v_int_of(x) != 0;
    default: return dflt;
    }
}

/* An integer at a path: JSON number or XML text. */
static int64_t vint(const mle_host *h, const mle_value *v, const char *path, int64_t dflt) {
    mle_value *x = vpath(h, v, path);
    if (!x)
        return dflt;
    switch (h->v_kind(x)) {
    case MLE_V_INT:
    case MLE_V_REAL: return h->v_int_of(x);
    case MLE_V_STRING: {
        const char *s = h->v_str(x);
        char *end = NULL;
        long long n = strtoll(s, &end, 10);
        return end && end != s && *end == '\0' ? (int64_t)n : dflt;
    }
    default: return dflt;
    }
}

/* Present and not null. */
static int vhas(const mle_host *h, const mle_value *v, const char *key) {
    mle_value *x = v && h->v_kind(v) == MLE_V_OBJECT ? h->v_get(v, key) : NULL;
    return x && h->v_kind(x) != MLE_V_NULL;
}

/* The attribute `key` of the config if set, else of the state (the attributes a delete or
 * read must work from). Borrowed, or NULL. */
static mle_value *op_attr(const mle_host *h, const mle_op *op, const char *key) {
    if (op->config && vhas(h, op->config, key))
        return h->v_get(op->config, key);
    if (op->state && vhas(h, op->state, key))
        return h->v_get(op->state, key);
    return NULL;
}

static const char *op_str(const mle_host *h, const mle_op *op, const char *key) {
    mle_value *v = op_attr(h, op, key);
    return v ? h->v_str(v) : NULL;
}

/* Set obj[key] = string s (copied), or null when s is NULL. */
static void vset_str(const mle_host *h, mle_value *obj, const char *key, const char *s) {
    h->v_set(obj, key, s ? h->v_string(s) : h->v_null());
}

/* ------------------------------------------------------------------------------------------
 * Lists as host->v_parse_xml shapes them: <set><item/><item/></set> is {"item": [..]},
 * <set><item/></set> is {"item": {..}}, <set/> is "". So a list of one and an empty list
 * look different from a list of two; these two functions hide that.
 * ------------------------------------------------------------------------------------------ */
static size_t xl_count(const mle_host *h, const mle_value *list, const char *item) {
    if (!list || h->v_kind(list) != MLE_V_OBJECT)
        return 0;
    mle_value *it = h->v_get(list, item);
    if (!it)
        return 0;
    return h->v_kind(it) == MLE_V_ARRAY ? h->v_len(it) : 1;
}

/* Borrowed. */
static mle_value *xl_at(const mle_host *h, const mle_value *list, const char *item, size_t i) {
    mle_value *it = h->v_get(list, item);
    if (h->v_kind(it) == MLE_V_ARRAY)
        return h->v_at(it, i);
    return i == 0 ? it : NULL;
}

/* JSON arrays (the JSON protocols): length 0 when not an array. */
static size_t jl_count(const mle_host *h, const mle_value *arr) {
    return arr && h->v_kind(arr) == MLE_V_ARRAY ? h->v_len(arr) : 0;
}

/* ------------------------------------------------------------------------------------------
 * Time.
 * ------------------------------------------------------------------------------------------ */

/* ISO 8601 as AWS writes it ("2024-05-01T12:00:00Z", "...:00.123Z", "+00:00"), or an epoch
 * number (JSON protocols). Milliseconds since the epoch, or 0 when unreadable. */
static int64_t parse_time_ms(const mle_host *h, const mle_value *v) {
    if (!v)
        return 0;
    if (h->v_kind(v) == MLE_V_INT || h->v_kind(v) == MLE_V_REAL)
        return (int64_t)(h->v_real_of(v) * 1000.0);
    const char *s = h->v_str(v);
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!rest)
        return 0;
    int64_t ms = (int64_t)timegm(&tm) * 1000;
    if (*rest == '.') {
        rest++;
        int64_t frac = 0, scale = 100;
        for (; *rest >= '0' && *rest <= '9'; rest++, scale /= 10)
            frac += (*rest - '0') * scale;
        ms += frac;
    }
    if ((*rest == '+' || *rest == '-') && strlen(rest) >= 6) {
        int off = ((rest[1] - '0') * 10 + (rest[2] - '0')) * 60 + (rest[4] - '0') * 10 +
                  (rest[5] - '0');
        ms -= (*rest == '+' ? 1 : -1) * (int64_t)off * 60000;
    }
    return ms;
}

/* ------------------------------------------------------------------------------------------
 * Forms (query protocols).
 * ------------------------------------------------------------------------------------------ */
static void form_add(aws_form *f, const char *key, const char *val) {
    if (!val)
        return;
    if (f->b.len)
        buf_putn(&f->b, "&", 1);
    buf_put_enc(&f->b, key, 0);
    buf_putn(&f->b, "=", 1);
    buf_put_enc(&f->b, val, 0);
}

/* Key from a format: form_addf(f, "vpc-1", "ResourceId.%d", 1). */
static void form_addf(aws_form *f, const char *val, const char *keyfmt, ...) MLE_PRINTF(3, 4);
static void form_addf(aws_form *f, const char *val, const char *keyfmt, ...) {
    if (!val)
        return;
    va_list ap;
    va_start(ap, keyfmt);
    char *k = NULL;
    if (vasprintf(&k, keyfmt, ap) < 0)
        abort();
    va_end(ap);
    form_add(f, k, val);
    free(k);
}

static void form_add_bool(aws_form *f, const char *key, int b) { form_add(f, key, b ? "true" : "false"); }

static void form_add_int(aws_form *f, const char *key, int64_t n) {
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long)n);
    form_add(f, key, s);
}

static void form_free(aws_form *f) { buf_free(&f->b); }

/* ------------------------------------------------------------------------------------------
 * Tags.
 *
 * The user's `tags` attribute is a map. Every create sends it merged with the ownership tags
 * (mlengine:stack = lineage, mlengine:address = address); reads return the remote tags
 * WITHOUT the mlengine:* ones, so ownership never shows as drift, and updates never remove
 * them.
 * ------------------------------------------------------------------------------------------ */

/* New object: the user's tags (may be NULL) plus the ownership tags of op. */
static mle_value *tags_with_owner(const mle_host *h, const mle_op *op, const mle_value *user) {
    mle_value *t = h->v_object();
    if (user && h->v_kind(user) == MLE_V_OBJECT) {
        void *it = NULL;
        mle_value *v;
        const char *k;
        while ((k = h->v_next(user, &it, &v)))
            if (h->v_str(v) && !starts_with(k, AWS_TAG_PREFIX))
                h->v_set(t, k, h->v_string(h->v_str(v)));
    }
    if (op->lineage && *op->lineage)
        h->v_set(t, AWS_TAG_STACK, h->v_string(op->lineage));
    if (op->address && *op->address)
        h->v_set(t, AWS_TAG_ADDRESS, h->v_string(op->address));
    return t;
}

/* The user's tags of an op as desired (config), borrowed, or NULL. */
static const mle_value *user_tags(const mle_host *h, const mle_op *op) {
    mle_value *t = op->config ? h->v_get(op->config, "tags") : NULL;
    return t && h->v_kind(t) == MLE_V_OBJECT ? t : NULL;
}

/* New object from a list of {<kname>: k, <vname>: v} items, without mlengine:* keys. Works on
 * XML lists (item name given) and JSON arrays (item NULL). */
static mle_value *tags_from_list(const mle_host *h, const mle_value *list, const char *item,
                                 const char *kname, const char *vname) {
    mle_value *t = h->v_object();
    size_t n = item ? xl_count(h, list, item) : jl_count(h, list);
    for (size_t i = 0; i < n; i++) {
        mle_value *e = item ? xl_at(h, list, item, i) : h->v_at(list, i);
        const char *k = vstr(h, e, kname), *v = vstr(h, e, vname);
        if (k && !starts_with(k, AWS_TAG_PREFIX))
            h->v_set(t, k, h->v_string(v ? v : ""));
    }
    return t;
}

/* New object from a JSON map of tags (EKS), without mlengine:* keys. */
static mle_value *tags_from_map(const mle_host *h, const mle_value *map) {
    mle_value *t = h->v_object();
    if (!map || h->v_kind(map) != MLE_V_OBJECT)
        return t;
    void *it = NULL;
    mle_value *v;
    const char *k;
    while ((k = h->v_next(map, &it, &v)))
        if (!starts_with(k, AWS_TAG_PREFIX) && h->v_str(v))
            h->v_set(t, k, h->v_string(h->v_str(v)));
    return t;
}

/* Whether the remote tags carry both ownership tags of op (adoption must not take a
 * resource of another stack or another address). */
static int tags_owned_by(const mle_host *h, const mle_op *op, const mle_value *list,
                         const char *item, const char *kname, const char *vname) {
    int stack = 0, addr = 0;
    size_t n = item ? xl_count(h, list, item) : jl_count(h, list);
    for (size_t i = 0; i < n; i++) {
        mle_value *e = item ? xl_at(h, list, item, i) : h->v_at(list, i);
        const char *k = vstr(h, e, kname), *v = vstr(h, e, vname);
        stack |= str_eq(k, AWS_TAG_STACK) && str_eq(v, op->lineage);
        addr |= str_eq(k, AWS_TAG_ADDRESS) && str_eq(v, op->address);
    }
    return stack && addr;
}

static int tags_map_owned_by(const mle_host *h, const mle_op *op, const mle_value *map) {
    return str_eq(vstr(h, map, AWS_TAG_STACK), op->lineage) &&
           map && h->v_kind(map) == MLE_V_OBJECT && h->v_get(map, AWS_TAG_ADDRESS) &&
           str_eq(h->v_str(h->v_get(map, AWS_TAG_ADDRESS)), op->address);
}

/* Tag changes from `old` to `now` (both maps of user tags; either may be NULL):
 * *set = keys to add or change (new object), *del = keys to remove (new array). The
 * ownership tags are always in *set (they are put back if someone removed them). Returns
 * the number of changes, ownership tags not counted. */
static size_t tags_diff(const mle_host *h, const mle_op *op, const mle_value *old,
                        const mle_value *now, mle_value **set, mle_value **del) {
    size_t changes = 0;
    *set = tags_with_owner(h, op, NULL);
    *del = h->v_array();
    void *it = NULL;
    mle_value *v;
    const char *k;
    if (now && h->v_kind(now) == MLE_V_OBJECT) {
        while ((k = h->v_next(now, &it, &v))) {
            if (starts_with(k, AWS_TAG_PREFIX) || !h->v_str(v))
                continue;
            mle_value *ov = old && h->v_kind(old) == MLE_V_OBJECT ? h->v_get(old, k) : NULL;
            if (!ov || !str_eq(h->v_str(ov), h->v_str(v)))
                changes++;
            h->v_set(*set, k, h->v_string(h->v_str(v)));
        }
    }
    it = NULL;
    if (old && h->v_kind(old) == MLE_V_OBJECT) {
        while ((k = h->v_next(old, &it, &v))) {
            if (starts_with(k, AWS_TAG_PREFIX))
                continue;
            if (!now || h->v_kind(now) != MLE_V_OBJECT || !h->v_get(now, k)) {
                h->v_append(*del, h->v_string(k));
                changes++;
            }
        }
    }
    return changes;
}

/* The tags attribute has changed between state and config. */
static int tags_changed(const mle_host *h, const mle_op *op) {
    mle_value *a = op->state ? h->v_get(op->state, "tags") : NULL;
    mle_value *b = op->config ? h->v_get(op->config, "tags") : NULL;
    int ea = !a || h->v_kind(a) != MLE_V_OBJECT || h->v_len(a) == 0;
    int eb = !b || h->v_kind(b) != MLE_V_OBJECT || h->v_len(b) == 0;
    if (ea && eb)
        return 0;
    return ea != eb || !h->v_equal(a, b);
}

/* An attribute differs between state and config (absent and null are the same). */
static int attr_changed(const mle_host *h, const mle_op *op, const char *key) {
    mle_value *a = op->state ? h->v_get(op->state, key) : NULL;
    mle_value *b = op->config ? h->v_get(op->config, key) : NULL;
    int na = !a || h->v_kind(a) == MLE_V_NULL, nb = !b || h->v_kind(b) == MLE_V_NULL;
    if (na || nb)
        return na != nb;
    return !h->v_equal(a, b);
}

/* ------------------------------------------------------------------------------------------
 * Documents (IAM policies): the user may give a JSON string or a table. The attribute keeps
 * the user's own form while the remote document means the same, so formatting never shows
 * as a change.
 * ------------------------------------------------------------------------------------------ */

/* Parse a document given as text (new reference) or copy one given as a value. NULL when
 * the text is not JSON. */
static mle_value *doc_value(const mle_host *h, const mle_value *v) {
    if (!v)
        return NULL;
    if (h->v_kind(v) == MLE_V_STRING) {
        const char *s = h->v_str(v);
        mle_error *e = NULL;
        mle_value *p = h->v_parse_json(h, s, strlen(s), &e);
        if (!p)
            h->error_free(e);
        return p;
    }
    return h->v_deep_copy(v);
}

/* JSON text of a document attribute (string as is, value serialized). Caller frees with
 * free(). */
static char *doc_text(const mle_host *h, const mle_value *v) {
    if (!v)
        return NULL;
    if (h->v_kind(v) == MLE_V_STRING)
        return xstrdup(h->v_str(v));
    char *j = h->v_to_json(h, v);
    char *s = xstrdup(j);
    h->free(h, j);
    return s;
}

/* Percent-decode (IAM returns policy documents URL-encoded). Caller frees with free(). */
static char *url_decode(const char *s) {
    aws_buf b = {0};
    for (; s && *s; s++) {
        if (*s == '%' && s[1] && s[2]) {
            char hx[3] = {s[1], s[2], 0};
            char *end = NULL;
            long c = strtol(hx, &end, 16);
            if (end && *end == '\0') {
                char ch = (char)c;
                buf_putn(&b, &ch, 1);
                s += 2;
                continue;
            }
        }
        if (*s == '+') {
            buf_putn(&b, "+", 1);
            continue;
        }
        buf_putn(&b, s, 1);
    }
    return buf_take(&b);
}

/* The attribute value for a remote document (text, maybe URL-encoded): the user's `prior`
 * form when it means the same document, else the remote document parsed (or as text when
 * it is not JSON). New reference. */
static mle_value *doc_attr(const mle_host *h, const char *remote_text, const mle_value *prior) {
    if (!remote_text)
        return prior ? h->v_deep_copy(prior) : h->v_null();
    mle_error *e = NULL;
    mle_value *remote = h->v_parse_json(h, remote_text, strlen(remote_text), &e);
    if (!remote) {
        h->error_free(e);
        e = NULL;
        char *dec = url_decode(remote_text);
        remote = h->v_parse_json(h, dec, strlen(dec), &e);
        if (!remote) {
            h->error_free(e);
            mle_value *s = h->v_string(dec);
            free(dec);
            return s;
        }
        free(dec);
    }
    mle_value *p = doc_value(h, prior);
    int same = p && h->v_equal(p, remote);
    h->v_decref(p);
    if (same) {
        h->v_decref(remote);
        return h->v_deep_copy(prior);
    }
    return remote;
}
