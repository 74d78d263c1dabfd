/*
 * aws_sigv4.c — AWS Signature Version 4 (header signing and query presigning).
 *
 * Owns the canonical request, the string to sign and the signing-key derivation. Hashes and
 * HMACs come from the host (OpenSSL in the core); everything else here is string building.
 * Memory: internal buffers and every string of a result are libc-allocated (a result is freed
 * with mle_aws_sigv4_result_free), so nothing here is mixed with host allocations.
 */
#include "aws_sigv4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------------------------
 * A growable string. An allocation failure is remembered and reported once, at sb_take.
 * ------------------------------------------------------------------------------------------ */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

static void sb_putc(sbuf *b, char c) { sb_putn(b, &c, 1); }

/* The built string (caller frees with free), or NULL after an allocation failure. */
static char *sb_take(sbuf *b) {
    if (b->oom) {
        free(b->p);
        b->p = NULL;
        return NULL;
    }
    if (!b->p)
        sb_putn(b, "", 0);
    char *p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

static void sb_free(sbuf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------------------------------
 * Encoding helpers.
 * ------------------------------------------------------------------------------------------ */
static int is_unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

static void sb_uri_encode(sbuf *b, const char *s, size_t len, int keep_slash) {
    static const char hexd[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            sb_putc(b, (char)c);
        } else {
            char e[3] = {'%', hexd[c >> 4], hexd[c & 15]};
            sb_putn(b, e, 3);
        }
    }
}

/* Caller frees with free(). */
char *mle_aws_uri_encode(const char *s, size_t len, int keep_slash) {
    sbuf b = {0};
    sb_uri_encode(&b, s, len, keep_slash);
    return sb_take(&b);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..len) into b. A '%' not followed by two hex digits stays literal ('+'
 * is not a space in SigV4's view of a query). */
static void sb_uri_decode(sbuf *b, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            sb_putc(b, (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
            i += 2;
        } else {
            sb_putc(b, s[i]);
        }
    }
}

static void to_hex(const uint8_t *d, size_t n, char *out) {
    static const char hexd[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexd[d[i] >> 4];
        out[2 * i + 1] = hexd[d[i] & 15];
    }
    out[2 * n] = '\0';
}

void mle_aws_amz_date(int64_t time_unix, char out[17]) {
    time_t t = (time_t)time_unix;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* ------------------------------------------------------------------------------------------
 * Canonical path.
 * ------------------------------------------------------------------------------------------ */
static void canonical_path(sbuf *b, const char *path, int normalize, int encode) {
    if (!path || !*path)
        path = "/";
    if (!normalize) {
        if (encode)
            sb_uri_encode(b, path, strlen(path), 1);
        else
            sb_puts(b, path);
        return;
    }
    /* Resolve "." and "..", drop empty segments (RFC 3986 section 5.2.4 plus the SigV4 rule
     * that "//" collapses). Segments are (start, length) pairs into path. */
    size_t n = 1;
    for (const char *p = path; *p; p++)
        n += *p == '/';
    const char **seg = malloc(n * sizeof *seg);
    size_t *seglen = malloc(n * sizeof *seglen);
    if (!seg || !seglen) {
        free(seg);
        free(seglen);
        b->oom = 1;
        return;
    }
    size_t ns = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        const char *s = p;
        while (*p && *p != '/')
            p++;
        size_t l = (size_t)(p - s);
        if (l == 0 || (l == 1 && s[0] == '.'))
            continue;
        if (l == 2 && s[0] == '.' && s[1] == '.') {
            if (ns > 0)
                ns--;
            continue;
        }
        seg[ns] = s;
        seglen[ns] = l;
        ns++;
    }
    size_t plen = strlen(path);
    /* A trailing slash is meaningful ("/example/"); one produced by "." or ".." is not. */
    int trailing = plen > 0 && path[plen - 1] == '/';
    sb_putc(b, '/');
    for (size_t i = 0; i < ns; i++) {
        if (i > 0)
            sb_putc(b, '/');
        if (encode)
            sb_uri_encode(b, seg[i], seglen[i], 0);
        else
            sb_putn(b, seg[i], seglen[i]);
    }
    if (trailing && ns > 0)
        sb_putc(b, '/');
    free(seg);
    free(seglen);
}

/* ------------------------------------------------------------------------------------------
 * Canonical query: a list of (encoded key, encoded value) pairs, sorted.
 * ------------------------------------------------------------------------------------------ */
typedef struct qparam {
    char *k;
    char *v;
} qparam;

typedef struct qlist {
    qparam *a;
    size_t n, cap;
    int oom;
} qlist;

/* Takes ownership of k and v (both libc strings). */
static void ql_add(qlist *q, char *k, char *v) {
    if (!k || !v || q->oom) {
        free(k);
        free(v);
        q->oom = 1;
        return;
    }
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        qparam *a = realloc(q->a, cap * sizeof *a);
        if (!a) {
            free(k);
            free(v);
            q->oom = 1;
            return;
        }
        q->a = a;
        q->cap = cap;
    }
    q->a[q->n].k = k;
    q->a[q->n].v = v;
    q->n++;
}

/* Adds a parameter whose key and value are raw (not encoded). */
static void ql_add_raw(qlist *q, const char *k, const char *v) {
    ql_add(q, mle_aws_uri_encode(k, strlen(k), 0), mle_aws_uri_encode(v, strlen(v), 0));
}

/* Decode-then-encode each parameter of a query string, so "%E1%88%B4" and the raw UTF-8
 * both come out as "%E1%88%B4". */
static void ql_parse(qlist *q, const char *query) {
    if (!query)
        return;
    const char *p = query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            size_t klen = eq ? (size_t)(eq - p) : len;
            sbuf kd = {0}, vd = {0};
            sb_uri_decode(&kd, p, klen);
            if (eq)
                sb_uri_decode(&vd, eq + 1, len - klen - 1);
            char *k = sb_take(&kd), *v = sb_take(&vd);
            if (k && v)
                ql_add(q, mle_aws_uri_encode(k, strlen(k), 0), mle_aws_uri_encode(v, strlen(v), 0));
            else
                q->oom = 1;
            free(k);
            free(v);
        }
        p += len;
        if (*p == '&')
            p++;
    }
}

static int qparam_cmp(const void *a, const void *b) {
    const qparam *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

static void ql_write(sbuf *b, qlist *q) {
    if (q->n > 1) /* qsort(NULL, 0, ...) is undefined */
        qsort(q->a, q->n, sizeof *q->a, qparam_cmp);
    for (size_t i = 0; i < q->n; i++) {
        if (i > 0)
            sb_putc(b, '&');
        sb_puts(b, q->a[i].k);
        sb_putc(b, '=');
        sb_puts(b, q->a[i].v);
    }
}

static void ql_free(qlist *q) {
    for (size_t i = 0; i < q->n; i++) {
        free(q->a[i].k);
        free(q->a[i].v);
    }
    free(q->a);
    q->a = NULL;
    q->n = q->cap = 0;
}

/* ------------------------------------------------------------------------------------------
 * Canonical headers.
 * ------------------------------------------------------------------------------------------ */
typedef struct hentry {
    char *name;  /* lower-cased, owned */
    char *value; /* trimmed and collapsed, owned */
    size_t order;
} hentry;

typedef struct hlist {
    hentry *a;
    size_t n, cap;
    int oom;
} hlist;

/* Headers that proxies and clients rewrite on the way, so a signature over them breaks;
 * the AWS SDKs leave them out too. */
static int header_unsigned(const char *lname) {
    static const char *const skip[] = {"authorization", "user-agent",        "expect",
                                       "connection",    "transfer-encoding", "x-amzn-trace-id",
                                       "keep-alive",    "te",                "upgrade"};
    for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
        if (strcmp(lname, skip[i]) == 0)
            return 1;
    return 0;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

/* Trim, and collapse every run of whitespace (line folds included) to one space. */
static char *header_value_canon(const char *v) {
    sbuf b = {0};
    if (!v)
        v = "";
    while (is_ws(*v))
        v++;
    int pending = 0;
    for (; *v; v++) {
        if (is_ws(*v)) {
            pending = 1;
            continue;
        }
        if (pending)
            sb_putc(&b, ' ');
        pending = 0;
        sb_putc(&b, *v);
    }
    return sb_take(&b);
}

static void hl_add(hlist *h, const char *name, const char *value) {
    if (h->oom)
        return;
    size_t nl = strlen(name);
    char *ln = malloc(nl + 1);
    if (!ln) {
        h->oom = 1;
        return;
    }
    for (size_t i = 0; i <= nl; i++) {
        char c = name[i];
        ln[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    if (header_unsigned(ln)) {
        free(ln);
        return;
    }
    char *cv = header_value_canon(value);
    if (cv && h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        hentry *a = realloc(h->a, cap * sizeof *a);
        if (a) {
            h->a = a;
            h->cap = cap;
        }
    }
    if (!cv || h->n == h->cap) {
        free(ln);
        free(cv);
        h->oom = 1;
        return;
    }
    h->a[h->n].name = ln;
    h->a[h->n].value = cv;
    h->a[h->n].order = h->n;
    h->n++;
}

static int hentry_cmp(const void *a, const void *b) {
    const hentry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Writes "name:v1,v2\n" lines into canon and "a;b" into signed_names. */
static void hl_write(hlist *h, sbuf *canon, sbuf *signed_names) {
    if (h->n > 1)
        qsort(h->a, h->n, sizeof *h->a, hentry_cmp);
    for (size_t i = 0; i < h->n;) {
        size_t j = i;
        if (signed_names->len > 0)
            sb_putc(signed_names, ';');
        sb_puts(signed_names, h->a[i].name);
        sb_puts(canon, h->a[i].name);
        sb_putc(canon, ':');
        for (; j < h->n && strcmp(h->a[j].name, h->a[i].name) == 0; j++) {
            if (j > i)
                sb_putc(canon, ',');
            sb_puts(canon, h->a[j].value);
        }
        sb_putc(canon, '\n');
        i = j;
    }
}

static void hl_free(hlist *h) {
    for (size_t i = 0; i < h->n; i++) {
        free(h->a[i].name);
        free(h->a[i].value);
    }
    free(h->a);
    h->a = NULL;
    h->n = h->cap = 0;
}

static const char *find_header(const mle_aws_sigv4_request *req, const char *name) {
    for (size_t i = 0; i < req->n_headers; i++)
        if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * The signature.
 * ------------------------------------------------------------------------------------------ */
static char *dupstr(const char *s) {
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p)
        memcpy(p, s, n + 1);
    return p;
}

/* hex(HMAC(kSigning, string_to_sign)) into sig_hex (65 bytes). */
static void compute_signature(const mle_host *host, const mle_aws_sigv4_params *pr,
                              const char *date8, const char *sts, char sig_hex[65]) {
    const char *secret = pr->creds->secret_access_key;
    size_t sl = strlen(secret);
    char *k0 = malloc(sl + 5);
    uint8_t k[32], k2[32];
    if (!k0) {
        sig_hex[0] = '\0';
        return;
    }
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, sl + 1);
    host->hmac_sha256(k0, sl + 4, date8, strlen(date8), k);
    /* The secret must not outlive its use in a heap block nobody clears. */
    memset(k0, 0, sl + 4);
    free(k0);
    host->hmac_sha256(k, 32, pr->region, strlen(pr->region), k2);
    host->hmac_sha256(k2, 32, pr->service, strlen(pr->service), k);
    host->hmac_sha256(k, 32, "aws4_request", 12, k2);
    uint8_t sig[32];
    host->hmac_sha256(k2, 32, sts, strlen(sts), sig);
    to_hex(sig, 32, sig_hex);
    memset(k, 0, sizeof k);
    memset(k2, 0, sizeof k2);
}

static int check_inputs(const mle_host *host, const mle_aws_sigv4_request *req,
                        const mle_aws_sigv4_params *pr, int presign, mle_error **err) {
    const char *what = NULL;
    if (!req || !req->method || !*req->method)
        what = "no HTTP method";
    else if (!pr || !pr->creds || !pr->creds->access_key_id || !*pr->creds->access_key_id ||
             !pr->creds->secret_access_key || !*pr->creds->secret_access_key)
        what = "no credentials (access key ID and secret access key)";
    else if (!pr->region || !*pr->region)
        what = "no region";
    else if (!pr->service || !*pr->service)
        what = "no service name";
    else if (!find_header(req, "host"))
        what = "no Host header among the headers to sign";
    else if (presign && (pr->expires_s < 1 || pr->expires_s > 604800))
        what = "X-Amz-Expires must be between 1 and 604800 seconds";
    if (!what)
        return 0;
    if (err)
        *err = host->error_new(host, MLE_E_INVALID, "SigV4 signing: %s", what);
    return -1;
}

static int oom(const mle_host *host, mle_error **err) {
    if (err)
        *err = host->error_new(host, MLE_E_INTERNAL, "SigV4 signing: out of memory");
    return -1;
}

/* The one path both modes share. */
static int sign_common(const mle_host *host, const mle_aws_sigv4_request *req,
                       const mle_aws_sigv4_params *pr, int presign, mle_aws_sigv4_result *out,
                       mle_error **err) {
    memset(out, 0, sizeof *out);
    if (check_inputs(host, req, pr, presign, err))
        return -1;

    char amz_date[17], date8[9];
    mle_aws_amz_date(pr->time_unix, amz_date);
    memcpy(date8, amz_date, 8);
    date8[8] = '\0';
    const char *token = pr->creds->session_token && *pr->creds->session_token
                            ? pr->creds->session_token
                            : NULL;
    int sign_token = token && !pr->omit_session_token;

    char payload_hex[65];
    const char *payload = pr->payload_hash;
    if (!payload) {
        uint8_t h[32];
        host->sha256(req->body ? req->body : "", req->body ? req->body_len : 0, h);
        to_hex(h, 32, payload_hex);
        payload = payload_hex;
    }

    sbuf scope = {0};
    sb_puts(&scope, date8);
    sb_putc(&scope, '/');
    sb_puts(&scope, pr->region);
    sb_putc(&scope, '/');
    sb_puts(&scope, pr->service);
    sb_puts(&scope, "/aws4_request");

    /* Headers to sign. */
    hlist hl = {0};
    for (size_t i = 0; i < req->n_headers; i++) {
        const char *n = req->headers[i].name;
        /* The signer owns these: a stale copy from the caller must not be signed twice. */
        if (!presign && (strcasecmp(n, "x-amz-date") == 0 ||
                         strcasecmp(n, "x-amz-security-token") == 0 ||
                         (pr->add_content_sha256 && strcasecmp(n, "x-amz-content-sha256") == 0)))
            continue;
        hl_add(&hl, n, req->headers[i].value);
    }
    if (!presign) {
        hl_add(&hl, "x-amz-date", amz_date);
        if (sign_token)
            hl_add(&hl, "x-amz-security-token", token);
        if (pr->add_content_sha256)
            hl_add(&hl, "x-amz-content-sha256", payload);
    }
    sbuf canon_h = {0}, signed_h = {0};
    hl_write(&hl, &canon_h, &signed_h);
    char *signed_names = sb_take(&signed_h);
    char *scope_s = sb_take(&scope);

    /* Query. */
    qlist ql = {0};
    ql_parse(&ql, req->query);
    char expires[16];
    snprintf(expires, sizeof expires, "%u", (unsigned)pr->expires_s);
    if (presign && scope_s && signed_names) {
        sbuf cred = {0};
        sb_puts(&cred, pr->creds->access_key_id);
        sb_putc(&cred, '/');
        sb_puts(&cred, scope_s);
        char *cred_s = sb_take(&cred);
        ql_add_raw(&ql, "X-Amz-Algorithm", "AWS4-HMAC-SHA256");
        if (cred_s)
            ql_add_raw(&ql, "X-Amz-Credential", cred_s);
        else
            ql.oom = 1;
        ql_add_raw(&ql, "X-Amz-Date", amz_date);
        ql_add_raw(&ql, "X-Amz-Expires", expires);
        if (sign_token)
            ql_add_raw(&ql, "X-Amz-Security-Token", token);
        ql_add_raw(&ql, "X-Amz-SignedHeaders", signed_names);
        free(cred_s);
    }

    sbuf cr = {0};
    sb_puts(&cr, req->method);
    sb_putc(&cr, '\n');
    canonical_path(&cr, req->path, pr->normalize_path, pr->encode_path);
    sb_putc(&cr, '\n');
    sbuf cq = {0};
    ql_write(&cq, &ql);
    char *canonical_query = sb_take(&cq);
    if (canonical_query)
        sb_puts(&cr, canonical_query);
    sb_putc(&cr, '\n');
    if (canon_h.p)
        sb_puts(&cr, canon_h.p);
    sb_putc(&cr, '\n');
    if (signed_names)
        sb_puts(&cr, signed_names);
    sb_putc(&cr, '\n');
    sb_puts(&cr, payload);
    int failed = hl.oom || ql.oom || canon_h.oom || !signed_names || !scope_s || !canonical_query;
    sb_free(&canon_h);
    hl_free(&hl);
    ql_free(&ql);
    char *canonical = sb_take(&cr);
    if (failed || !canonical) {
        free(canonical);
        free(canonical_query);
        free(signed_names);
        free(scope_s);
        return oom(host, err);
    }

    uint8_t crh[32];
    char crh_hex[65];
    host->sha256(canonical, strlen(canonical), crh);
    to_hex(crh, 32, crh_hex);
    sbuf sts = {0};
    sb_puts(&sts, "AWS4-HMAC-SHA256\n");
    sb_puts(&sts, amz_date);
    sb_putc(&sts, '\n');
    sb_puts(&sts, scope_s);
    sb_putc(&sts, '\n');
    sb_puts(&sts, crh_hex);
    char *sts_s = sb_take(&sts);
    char sig[65] = "";
    if (sts_s)
        compute_signature(host, pr, date8, sts_s, sig);

    out->canonical_request = canonical;
    out->string_to_sign = sts_s;
    out->signature = dupstr(sig);
    out->amz_date = dupstr(amz_date);
    out->payload_hash = dupstr(payload);
    out->signed_headers = signed_names;
    out->canonical_query = canonical_query;
    failed = !sts_s || !sig[0] || !out->signature || !out->amz_date || !out->payload_hash;

    if (!failed && !presign) {
        sbuf auth = {0};
        sb_puts(&auth, "AWS4-HMAC-SHA256 Credential=");
        sb_puts(&auth, pr->creds->access_key_id);
        sb_putc(&auth, '/');
        sb_puts(&auth, scope_s);
        sb_puts(&auth, ", SignedHeaders=");
        sb_puts(&auth, signed_names);
        sb_puts(&auth, ", Signature=");
        sb_puts(&auth, sig);
        out->add[out->n_add].name = "X-Amz-Date";
        out->add[out->n_add++].value = dupstr(amz_date);
        if (token) {
            out->add[out->n_add].name = "X-Amz-Security-Token";
            out->add[out->n_add++].value = dupstr(token);
        }
        if (pr->add_content_sha256) {
            out->add[out->n_add].name = "x-amz-content-sha256";
            out->add[out->n_add++].value = dupstr(payload);
        }
        out->add[out->n_add].name = "Authorization";
        out->add[out->n_add++].value = sb_take(&auth);
        for (size_t i = 0; i < out->n_add; i++)
            failed |= out->add[i].value == NULL;
    } else if (!failed) {
        /* The query as sent: the caller's own parameters untouched, then ours, encoded. */
        sbuf q = {0};
        if (req->query && *req->query) {
            sb_puts(&q, req->query);
            sb_putc(&q, '&');
        }
        sb_puts(&q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
        sb_uri_encode(&q, pr->creds->access_key_id, strlen(pr->creds->access_key_id), 0);
        sb_puts(&q, "%2F");
        sb_uri_encode(&q, scope_s, strlen(scope_s), 0);
        sb_puts(&q, "&X-Amz-Date=");
        sb_puts(&q, amz_date);
        sb_puts(&q, "&X-Amz-SignedHeaders=");
        sb_uri_encode(&q, signed_names, strlen(signed_names), 0);
        sb_puts(&q, "&X-Amz-Expires=");
        sb_puts(&q, expires);
        if (token) {
            sb_puts(&q, "&X-Amz-Security-Token=");
            sb_uri_encode(&q, token, strlen(token), 0);
        }
        sb_puts(&q, "&X-Amz-Signature=");
        sb_puts(&q, sig);
        out->query = sb_take(&q);
        failed = out->query == NULL;
    }
    free(scope_s);
    if (failed) {
        mle_aws_sigv4_result_free(out);
        return oom(host, err);
    }
    return 0;
}

int mle_aws_sigv4_sign(const mle_host *host, const mle_aws_sigv4_request *req,
                       const mle_aws_sigv4_params *params, mle_aws_sigv4_result *out,
                       mle_error **err) {
    return sign_common(host, req, params, 0, out, err);
}

int mle_aws_sigv4_presign(const mle_host *host, const mle_aws_sigv4_request *req,
                          const mle_aws_sigv4_params *params, mle_aws_sigv4_result *out,
                          mle_error **err) {
    return sign_common(host, req, params, 1, out, err);
}

void mle_aws_sigv4_result_free(mle_aws_sigv4_result *r) {
    if (!r)
        return;
    free(r->canonical_request);
    free(r->string_to_sign);
    free(r->signature);
    free(r->amz_date);
    free(r->payload_hash);
    free(r->signed_headers);
    for (size_t i = 0; i < r->n_add; i++)
        free((char *)r->add[i].value);
    free(r->query);
    free(r->canonical_query);
    memset(r, 0, sizeof *r);
}
