/*
 * http.c — owns the host's HTTP client over libcurl: the pool of easy handles and the CURLSH
 * they share (DNS cache, TLS sessions), one request's setup and transfer, the response
 * object, error classification and the redacted DEBUG trace. Design notes are in http.h.
 */
#include "http.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#ifndef MLE_VERSION
#define MLE_VERSION "dev"
#endif

#define DEFAULT_TIMEOUT_MS 60000L
#define CONNECT_TIMEOUT_MS 10000L
#define MAX_IDLE_HANDLES 32
#define MAX_BODY_BYTES ((size_t)512 * 1024 * 1024)

struct mle_http_client {
    mle_logger *lg; /* borrowed */
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    pthread_mutex_t pool_mu;
    CURL *idle[MAX_IDLE_HANDLES];
    size_t n_idle;
};

/* libcurl's global state (and OpenSSL's through it) must be set up once per process before
 * any handle exists, and curl_global_init itself is not thread-safe: pthread_once. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
    (void)h, (void)access;
    mle_http_client *c = ud;
    pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
    (void)h;
    mle_http_client *c = ud;
    pthread_mutex_unlock(&c->share_locks[data]);
}

mle_http_client *mle_http_client_new(mle_logger *lg)
{
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return NULL;
    mle_http_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->lg = lg;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&c->share_locks[i], NULL);
    pthread_mutex_init(&c->pool_mu, NULL);
    c->share = curl_share_init();
    if (!c->share) {
        mle_http_client_free(c);
        return NULL;
    }
    curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return c;
}

void mle_http_client_free(mle_http_client *c)
{
    if (!c)
        return;
    /* Handles first: a share still referenced by a handle refuses to be cleaned up. */
    for (size_t i = 0; i < c->n_idle; i++)
        curl_easy_cleanup(c->idle[i]);
    if (c->share)
        curl_share_cleanup(c->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&c->share_locks[i]);
    pthread_mutex_destroy(&c->pool_mu);
    free(c);
}

static CURL *pool_take(mle_http_client *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->pool_mu);
    if (c->n_idle > 0)
        h = c->idle[--c->n_idle];
    pthread_mutex_unlock(&c->pool_mu);
    return h ? h : curl_easy_init();
}

static void pool_give(mle_http_client *c, CURL *h)
{
    /* Reset drops the request's options, which point into the caller's stack (body, error
     * buffer, header list), but keeps the handle's live connections: the point of pooling. */
    curl_easy_reset(h);
    pthread_mutex_lock(&c->pool_mu);
    if (c->n_idle < MAX_IDLE_HANDLES) {
        c->idle[c->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->pool_mu);
    if (h)
        curl_easy_cleanup(h);
}

void mle_http_response_free(mle_http_response *resp)
{
    if (!resp)
        return;
    for (size_t i = 0; i < resp->n_headers; i++) {
        free((char *)resp->headers[i].name);
        free((char *)resp->headers[i].value);
    }
    free(resp->headers);
    free(resp->body);
    free(resp);
}

const char *mle_http_header_get(const mle_http_response *resp, const char *name)
{
    if (!resp || !name)
        return NULL;
    for (size_t i = 0; i < resp->n_headers; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    return NULL;
}

/* ------------------------------------------------------------------------------------
 * The URL as it may be shown: no userinfo, no fragment, credential query values replaced.
 * ------------------------------------------------------------------------------------ */

/* Query parameters that carry credentials in presigned URLs (AWS SigV4, Azure SAS, OAuth). */
static int sensitive_param(const char *name, size_t n)
{
    static const char *const names[] = {
        "x-amz-security-token", "x-amz-signature", "x-amz-credential", "signature", "sig",
        "token", "access_token", "id_token", "refresh_token", "client_secret", "password",
        "assertion", "client_assertion", "code", "x-goog-signature", "x-goog-credential",
        "api_key", "apikey", "key",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && strncasecmp(names[i], name, n) == 0)
            return 1;
    return 0;
}

static char *redact_query(const char *q)
{
    size_t cap = strlen(q) * 2 + 64;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t o = 0;
    for (const char *p = q; *p;) {
        size_t plen = strcspn(p, "&");
        size_t nlen = strcspn(p, "=&");
        int hide = nlen < plen && sensitive_param(p, nlen);
        size_t keep = hide ? nlen + 1 : plen;
        if (o + keep + 16 >= cap)
            break;
        memcpy(out + o, p, keep);
        o += keep;
        if (hide) {
            memcpy(out + o, "(sensitive)", 11);
            o += 11;
        }
        p += plen;
        if (*p == '&')
            out[o++] = *p++;
    }
    out[o] = '\0';
    return out;
}

static char *display_url_raw(const char *url)
{
    CURLU *u = curl_url();
    char *full = NULL, *q = NULL;
    if (!u || curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
        curl_url_cleanup(u);
        return strndup(url, strcspn(url, "?#"));
    }
    curl_url_set(u, CURLUPART_USER, NULL, 0);
    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
    curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
    if (curl_url_get(u, CURLUPART_QUERY, &q, 0) == CURLUE_OK && q) {
        char *rq = redact_query(q);
        curl_url_set(u, CURLUPART_QUERY, rq ? rq : "", 0);
        free(rq);
        curl_free(q);
    }
    char *out = NULL;
    if (curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK && full)
        out = strdup(full);
    curl_free(full);
    curl_url_cleanup(u);
    return out ? out : strndup(url, strcspn(url, "?#"));
}

static char *display_url(mle_http_client *c, const char *url)
{
    char *raw = display_url_raw(url);
    if (!raw)
        return NULL;
    char *red = mle_redact(c->lg, raw);
    free(raw);
    return red;
}

/* ------------------------------------------------------------------------------------
 * One request.
 * ------------------------------------------------------------------------------------ */

typedef struct xfer {
    char *buf;
    size_t len, cap;
    int too_big;
    char errbuf[CURL_ERROR_SIZE];
} xfer;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;
    if (x->len + n + 1 > MAX_BODY_BYTES) {
        x->too_big = 1;
        return 0;
    }
    if (x->len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < x->len + n + 1)
            cap *= 2;
        char *b = realloc(x->buf, cap);
        if (!b)
            return 0;
        x->buf = b;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, data, n);
    x->len += n;
    return n;
}

static int has_header(const mle_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
            return 1;
    return 0;
}

static int header_ok(const mle_http_header *h)
{
    if (!h->name || !*h->name || strpbrk(h->name, ":\r\n \t"))
        return 0;
    return !h->value || !strpbrk(h->value, "\r\n");
}

static int append_header(struct curl_slist **list, const char *name, const char *value)
{
    char *line = NULL;
    /* "Name;" is curl's spelling of a header sent with an empty value; "Name:" removes it. */
    int r = value && *value ? asprintf(&line, "%s: %s", name, value)
                            : asprintf(&line, "%s;", name);
    if (r < 0)
        return -1;
    struct curl_slist *l = curl_slist_append(*list, line);
    free(line);
    if (!l)
        return -1;
    *list = l;
    return 0;
}

static int sends_body(const mle_http_request *req)
{
    return req->body != NULL || strcmp(req->method, "POST") == 0 ||
           strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0;
}

static int build_headers(const mle_http_request *req, struct curl_slist **out, mle_error **err)
{
    struct curl_slist *l = NULL;
    for (size_t i = 0; i < req->n_headers; i++) {
        const mle_http_header *h = &req->headers[i];
        if (!header_ok(h)) {
            curl_slist_free_all(l);
            return mle_fail(err, MLE_E_INVALID,
                            "HTTP %s: header %zu (%s) has an invalid name or a line break",
                            req->method, i, h->name ? h->name : "(null)");
        }
        if (append_header(&l, h->name, h->value) != 0)
            goto oom;
    }
    /* curl would add these on its own; a signed request must carry only what it signed,
     * and "Expect: 100-continue" costs a round trip and confuses simple servers. */
    struct curl_slist *t = NULL;
    if (!has_header(req, "Expect") && !(t = curl_slist_append(l, "Expect:")))
        goto oom;
    l = t ? t : l;
    t = NULL;
    if (sends_body(req) && !has_header(req, "Content-Type") &&
        !(t = curl_slist_append(l, "Content-Type:")))
        goto oom;
    l = t ? t : l;
    *out = l;
    return 0;
oom:
    curl_slist_free_all(l);
    return mle_fail(err, MLE_E_INTERNAL, "HTTP %s: out of memory building headers",
                    req->method);
}

static void set_blob(CURL *h, CURLoption opt, const char *pem)
{
    struct curl_blob b = {(void *)pem, strlen(pem), CURL_BLOB_COPY};
    curl_easy_setopt(h, opt, &b);
}

static void setup_tls(CURL *h, const mle_http_request *req)
{
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    /* 2 is "verify the name"; since curl 7.66 the value 1 means the same. */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (req->ca_pem && *req->ca_pem)
        set_blob(h, CURLOPT_CAINFO_BLOB, req->ca_pem);
    if (req->client_cert_pem && *req->client_cert_pem) {
        set_blob(h, CURLOPT_SSLCERT_BLOB, req->client_cert_pem);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (req->client_key_pem && *req->client_key_pem) {
        set_blob(h, CURLOPT_SSLKEY_BLOB, req->client_key_pem);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
}

static void setup_method(CURL *h, const mle_http_request *req)
{
    if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        return;
    }
    if (sends_body(req)) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        if (strcmp(req->method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
        return;
    }
    if (strcmp(req->method, "GET") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
}

static void setup(mle_http_client *c, CURL *h, const mle_http_request *req, xfer *x,
                  struct curl_slist *hdrs)
{
    long timeout = req->timeout_ms > 0 ? req->timeout_ms : DEFAULT_TIMEOUT_MS;
    curl_easy_setopt(h, CURLOPT_SHARE, c->share);
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    /* Worker threads: signals (alarm-based DNS timeouts) are not thread-safe. */
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout < CONNECT_TIMEOUT_MS ? timeout : CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "mlengine/" MLE_VERSION);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
    setup_tls(h, req);
    setup_method(h, req);
}

static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    if (d)
        for (char *p = d; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    return d;
}

/* The final response's headers, parsed by libcurl (CURLH_HEADER: no 1xx, no trailers). */
static int collect_headers(CURL *h, mle_http_response *r)
{
    size_t n = 0;
    struct curl_header *ch = NULL;
    while ((ch = curl_easy_nextheader(h, CURLH_HEADER, -1, ch)))
        n++;
    if (n == 0)
        return 0;
    r->headers = calloc(n, sizeof *r->headers);
    if (!r->headers)
        return -1;
    ch = NULL;
    while ((ch = curl_easy_nextheader(h, CURLH_HEADER, -1, ch)) && r->n_headers < n) {
        mle_http_header *dst = &r->headers[r->n_headers];
        dst->name = lower_dup(ch->name);
        dst->value = strdup(ch->value ? ch->value : "");
        r->n_headers++;
        if (!dst->name || !dst->value)
            return -1;
    }
    return 0;
}

static mle_http_response *make_response(CURL *h, xfer *x)
{
    mle_http_response *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (!x->buf && !(x->buf = malloc(1))) {
        free(r);
        return NULL;
    }
    x->buf[x->len] = '\0';
    r->body = x->buf;
    r->body_len = x->len;
    x->buf = NULL;
    if (collect_headers(h, r) != 0) {
        mle_http_response_free(r);
        return NULL;
    }
    return r;
}

/* Which failures are worth a retry: the network and the clock; not a wrong URL or trust.
 * curl reports a garbled status line ("Received HTTP/0.9 when not allowed": a proxy or
 * load balancer out of step on a kept-alive connection) with the same code as an unknown
 * URL scheme; only the first is the network's fault. */
static mle_error_code classify(CURLcode rc, const char *why)
{
    if (rc == CURLE_UNSUPPORTED_PROTOCOL && why && strstr(why, "HTTP/0.9"))
        return MLE_E_TRANSIENT;
    switch (rc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return MLE_E_INVALID;
    default:
        return MLE_E_TRANSIENT;
    }
}

static mle_error *transfer_error(mle_http_client *c, CURLcode rc, const xfer *x,
                                 const char *method, const char *shown, long ms)
{
    if (x->too_big)
        return mle_error_new(MLE_E_PROVIDER, "HTTP %s %s: response body larger than %zu MiB",
                             method, shown, MAX_BODY_BYTES >> 20);
    const char *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    char *safe = mle_redact(c->lg, why);
    mle_error *e = mle_error_new(classify(rc, why), "HTTP %s %s failed after %ld ms: %s", method,
                                 shown, ms, safe ? safe : curl_easy_strerror(rc));
    free(safe);
    if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE)
        mle_error_set_hint(e, "the server's certificate is not trusted: give its CA "
                              "(e.g. the cluster CA) as ca_pem");
    return e;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int valid_method(const char *m)
{
    if (!m || !*m)
        return 0;
    for (; *m; m++)
        if (!isupper((unsigned char)*m) && *m != '-' && *m != '_')
            return 0;
    return 1;
}

/* Copy what the caller's struct_size says it has; newer fields stay zero. */
static int normalise_request(const mle_http_request *in, mle_http_request *out,
                             mle_error **err)
{
    memset(out, 0, sizeof *out);
    if (!in || in->struct_size < offsetof(mle_http_request, url) + sizeof(in->url))
        return mle_fail(err, MLE_E_INVALID, "HTTP request: struct_size %u is too small",
                        in ? in->struct_size : 0);
    size_t n = in->struct_size < sizeof *out ? in->struct_size : sizeof *out;
    memcpy(out, in, n);
    if (!valid_method(out->method))
        return mle_fail(err, MLE_E_INVALID, "HTTP request: invalid method \"%s\"",
                        out->method ? out->method : "(null)");
    if (!out->url || !*out->url)
        return mle_fail(err, MLE_E_INVALID, "HTTP %s: no URL given", out->method);
    if (out->n_headers && !out->headers)
        return mle_fail(err, MLE_E_INVALID, "HTTP %s: n_headers without headers",
                        out->method);
    return 0;
}

int mle_http_do(mle_http_client *c, const mle_http_request *req_in,
                mle_http_response **resp, mle_error **err)
{
    *resp = NULL;
    mle_http_request req;
    if (!c)
        return mle_fail(err, MLE_E_INTERNAL, "HTTP: no client");
    if (normalise_request(req_in, &req, err) != 0)
        return -1;
    struct curl_slist *hdrs = NULL;
    if (build_headers(&req, &hdrs, err) != 0)
        return -1;
    CURL *h = pool_take(c);
    if (!h) {
        curl_slist_free_all(hdrs);
        return mle_fail(err, MLE_E_INTERNAL, "HTTP %s: cannot create a curl handle",
                        req.method);
    }
    xfer x = {0};
    setup(c, h, &req, &x, hdrs);
    int64_t t0 = mono_ms();
    CURLcode rc = curl_easy_perform(h);
    long ms = (long)(mono_ms() - t0);
    char *shown = display_url(c, req.url);
    const char *url = shown ? shown : "(url)";
    int ret = 0;
    if (rc != CURLE_OK) {
        mle_error *e = transfer_error(c, rc, &x, req.method, url, ms);
        mle_log(c->lg, MLE_LOG_DEBUG, "http", "%s %s -> error (%ld ms)", req.method, url, ms);
        if (err)
            *err = e;
        else
            mle_error_free(e);
        ret = -1;
    } else if (!(*resp = make_response(h, &x))) {
        ret = mle_fail(err, MLE_E_INTERNAL, "HTTP %s %s: out of memory", req.method, url);
    } else {
        mle_log(c->lg, MLE_LOG_DEBUG, "http", "%s %s -> %ld (%ld ms)", req.method, url,
                (*resp)->status, ms);
    }
    pool_give(c, h);
    curl_slist_free_all(hdrs);
    free(x.buf);
    free(shown);
    return ret;
}
