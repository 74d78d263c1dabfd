/*
 * test_aws_sigv4.c — runs EVERY case of the official SigV4 test suite
 * ($MLE_SPECS_DIR/aws/sigv4-testsuite/<case>/) through drivers/common/aws_sigv4.c, both
 * header signing and query presigning, and compares the canonical request, the string to
 * sign, the signature and the signed request (Authorization header / presigned query) with
 * the vectors byte for byte. Also a few edge cases the suite does not cover (S3-style paths,
 * input validation).
 *
 * Hashing comes from a real host table (mle_host_new, OpenSSL inside), as in a driver.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "aws_sigv4.h"
#include "host.h"
#include "log.h"

static const mle_host *g_host;
static char g_suite[4096];

/* Whole file as a NUL-terminated string (caller frees), or NULL. */
static char *slurp(const char *dir, const char *name, size_t *len_out) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s/%s", g_suite, dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

/* The vector files carry no meaningful trailing newlines (one may have been added by an
 * editor); a canonical request never ends in one. */
static char *slurp_trim(const char *dir, const char *name) {
    char *s = slurp(dir, name, NULL);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* A parsed request.txt. */
typedef struct vreq {
    char *method;
    char *path;
    char *query; /* NULL when none */
    mle_http_header headers[16];
    size_t n_headers;
    char *body;
    size_t body_len;
    char *raw; /* owns the strings the headers point into */
} vreq;

static void vreq_free(vreq *r) {
    free(r->method);
    free(r->path);
    free(r->query);
    for (size_t i = 0; i < r->n_headers; i++) {
        free((char *)r->headers[i].name);
        free((char *)r->headers[i].value);
    }
    free(r->body);
    free(r->raw);
    memset(r, 0, sizeof *r);
}

static char *dupn(const char *s, size_t n) {
    char *p = malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* "METHOD target HTTP/1.1", headers ("Name:value", continuation lines start with
 * whitespace and are joined with "\n"), blank line, body. The target may hold spaces
 * ("/example space/"), so it runs to the last " HTTP/". */
static int parse_request(const char *dir, vreq *r) {
    memset(r, 0, sizeof *r);
    size_t len = 0;
    r->raw = slurp(dir, "request.txt", &len);
    if (!r->raw)
        return -1;
    char *p = r->raw;
    char *eol = strchr(p, '\n');
    if (!eol)
        eol = p + strlen(p);
    char *sp = memchr(p, ' ', (size_t)(eol - p));
    char *http = NULL;
    for (char *q = p; q && q < eol; q = strstr(q + 1, " HTTP/"))
        if (q > sp && strncmp(q, " HTTP/", 6) == 0 && q < eol)
            http = q;
    if (!sp || !http)
        return -1;
    r->method = dupn(p, (size_t)(sp - p));
    char *target = sp + 1;
    char *qm = memchr(target, '?', (size_t)(http - target));
    if (qm) {
        r->path = dupn(target, (size_t)(qm - target));
        r->query = dupn(qm + 1, (size_t)(http - qm - 1));
    } else {
        r->path = dupn(target, (size_t)(http - target));
    }
    p = *eol ? eol + 1 : eol;
    while (*p && *p != '\n') {
        eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if ((*p == ' ' || *p == '\t') && r->n_headers > 0) {
            /* A folded line continues the previous header's value. */
            mle_http_header *h = &r->headers[r->n_headers - 1];
            size_t ol = strlen(h->value);
            char *v = malloc(ol + 1 + ll + 1);
            memcpy(v, h->value, ol);
            v[ol] = '\n';
            memcpy(v + ol + 1, p, ll);
            v[ol + 1 + ll] = '\0';
            free((char *)h->value);
            h->value = v;
        } else {
            char *colon = memchr(p, ':', ll);
            if (!colon || r->n_headers == 16)
                return -1;
            r->headers[r->n_headers].name = dupn(p, (size_t)(colon - p));
            r->headers[r->n_headers].value = dupn(colon + 1, ll - (size_t)(colon - p) - 1);
            r->n_headers++;
        }
        p += ll;
        if (*p == '\n')
            p++;
    }
    if (*p == '\n') {
        p++;
        r->body_len = len - (size_t)(p - r->raw);
        r->body = dupn(p, r->body_len);
    }
    return 0;
}

typedef struct vctx {
    json_t *ctx;
    mle_aws_credentials creds;
    mle_aws_sigv4_params params;
} vctx;

static int load_context(const char *dir, vctx *c) {
    char *text = slurp(dir, "context.json", NULL);
    if (!text)
        return -1;
    json_error_t je;
    c->ctx = json_loads(text, 0, &je);
    free(text);
    if (!c->ctx)
        return -1;
    json_t *cr = json_object_get(c->ctx, "credentials");
    memset(&c->creds, 0, sizeof c->creds);
    c->creds.access_key_id = json_string_value(json_object_get(cr, "access_key_id"));
    c->creds.secret_access_key = json_string_value(json_object_get(cr, "secret_access_key"));
    c->creds.session_token = json_string_value(json_object_get(cr, "token"));
    memset(&c->params, 0, sizeof c->params);
    c->params.creds = &c->creds;
    c->params.region = json_string_value(json_object_get(c->ctx, "region"));
    c->params.service = json_string_value(json_object_get(c->ctx, "service"));
    c->params.normalize_path = json_is_true(json_object_get(c->ctx, "normalize"));
    c->params.encode_path = 1;
    c->params.add_content_sha256 = json_is_true(json_object_get(c->ctx, "sign_body"));
    c->params.omit_session_token = json_is_true(json_object_get(c->ctx, "omit_session_token"));
    c->params.expires_s = (uint32_t)json_integer_value(json_object_get(c->ctx, "expiration_in_seconds"));
    const char *ts = json_string_value(json_object_get(c->ctx, "timestamp"));
    struct tm tm = {0};
    if (!ts || !strptime(ts, "%Y-%m-%dT%H:%M:%SZ", &tm))
        return -1;
    c->params.time_unix = (int64_t)timegm(&tm);
    return 0;
}

/* The value of "Name:" in a signed-request file (first match), copied, or NULL. */
static char *signed_header(const char *text, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            const char *e = strchr(v, '\n');
            return dupn(v, e ? (size_t)(e - v) : strlen(v));
        }
    }
    return NULL;
}

static void expect_file(const char *dir, const char *file, const char *got) {
    char *want = slurp_trim(dir, file);
    if (!want)
        fail_msg("%s: cannot read %s", dir, file);
    if (!got || strcmp(want, got) != 0) {
        print_error("%s/%s differs\n--- want\n%s\n--- got\n%s\n", dir, file, want,
                    got ? got : "(null)");
        free(want);
        fail();
    }
    free(want);
}

static void test_header_case(void **state) {
    const char *dir = *state;
    vreq r;
    vctx c;
    assert_int_equal(parse_request(dir, &r), 0);
    assert_int_equal(load_context(dir, &c), 0);
    mle_aws_sigv4_request req = {.method = r.method, .path = r.path, .query = r.query,
                                 .headers = r.headers, .n_headers = r.n_headers,
                                 .body = r.body, .body_len = r.body_len};
    mle_aws_sigv4_result out;
    mle_error *err = NULL;
    int rc = mle_aws_sigv4_sign(g_host, &req, &c.params, &out, &err);
    if (rc != 0)
        fail_msg("%s: sign failed: %s", dir, g_host->error_message(err));
    expect_file(dir, "header-canonical-request.txt", out.canonical_request);
    expect_file(dir, "header-string-to-sign.txt", out.string_to_sign);
    expect_file(dir, "header-signature.txt", out.signature);

    /* The signed request: our added headers must be exactly those the vector shows. */
    char *signed_req = slurp(dir, "header-signed-request.txt", NULL);
    assert_non_null(signed_req);
    for (size_t i = 0; i < out.n_add; i++) {
        char *want = signed_header(signed_req, out.add[i].name);
        if (!want || strcmp(want, out.add[i].value) != 0)
            fail_msg("%s: header %s: want %s, got %s", dir, out.add[i].name,
                     want ? want : "(absent)", out.add[i].value);
        free(want);
    }
    char *tok = signed_header(signed_req, "X-Amz-Security-Token");
    int have_tok = 0;
    for (size_t i = 0; i < out.n_add; i++)
        have_tok |= strcmp(out.add[i].name, "X-Amz-Security-Token") == 0;
    assert_int_equal(have_tok, tok != NULL);
    free(tok);
    free(signed_req);
    mle_aws_sigv4_result_free(&out);
    json_decref(c.ctx);
    vreq_free(&r);
}

static void test_query_case(void **state) {
    const char *dir = *state;
    vreq r;
    vctx c;
    assert_int_equal(parse_request(dir, &r), 0);
    assert_int_equal(load_context(dir, &c), 0);
    mle_aws_sigv4_request req = {.method = r.method, .path = r.path, .query = r.query,
                                 .headers = r.headers, .n_headers = r.n_headers,
                                 .body = r.body, .body_len = r.body_len};
    mle_aws_sigv4_result out;
    mle_error *err = NULL;
    int rc = mle_aws_sigv4_presign(g_host, &req, &c.params, &out, &err);
    if (rc != 0)
        fail_msg("%s: presign failed: %s", dir, g_host->error_message(err));
    expect_file(dir, "query-canonical-request.txt", out.canonical_request);
    expect_file(dir, "query-string-to-sign.txt", out.string_to_sign);
    expect_file(dir, "query-signature.txt", out.signature);

    /* The presigned target: "<path>?<query> HTTP/1.1" on the first line. */
    char *signed_req = slurp(dir, "query-signed-request.txt", NULL);
    assert_non_null(signed_req);
    char *qm = strchr(signed_req, '?');
    char *http = strstr(signed_req, " HTTP/");
    assert_non_null(qm);
    assert_non_null(http);
    char *want = dupn(qm + 1, (size_t)(http - qm - 1));
    if (strcmp(want, out.query) != 0)
        fail_msg("%s: presigned query\n want %s\n got  %s", dir, want, out.query);
    free(want);
    free(signed_req);
    mle_aws_sigv4_result_free(&out);
    json_decref(c.ctx);
    vreq_free(&r);
}

/* S3 signs the path exactly as sent: no normalization, no second encoding. */
static void test_s3_path_untouched(void **state) {
    (void)state;
    mle_aws_credentials cr = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL};
    mle_http_header h[] = {{"Host", "127.0.0.1:5000"}};
    mle_aws_sigv4_request req = {.method = "PUT", .path = "/bucket/a%20b//./c", .query = "versioning",
                                 .headers = h, .n_headers = 1};
    mle_aws_sigv4_params p = {.creds = &cr, .region = "us-east-1", .service = "s3",
                              .time_unix = 1440938160, .add_content_sha256 = 1};
    mle_aws_sigv4_result out;
    assert_int_equal(mle_aws_sigv4_sign(g_host, &req, &p, &out, NULL), 0);
    const char *want_prefix = "PUT\n/bucket/a%20b//./c\nversioning=\nhost:127.0.0.1:5000\n"
                              "x-amz-content-sha256:" MLE_AWS_EMPTY_SHA256 "\n";
    assert_memory_equal(out.canonical_request, want_prefix, strlen(want_prefix));
    assert_string_equal(out.signed_headers, "host;x-amz-content-sha256;x-amz-date");
    assert_int_equal(out.n_add, 3);
    mle_aws_sigv4_result_free(&out);
}

/* Non-S3 services encode the path once more: "%20" on the wire is signed as "%2520". */
static void test_double_encode(void **state) {
    (void)state;
    mle_aws_credentials cr = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL};
    mle_http_header h[] = {{"host", "eks.us-east-1.amazonaws.com"}};
    mle_aws_sigv4_request req = {.method = "GET", .path = "/clusters/a%20b", .headers = h,
                                 .n_headers = 1};
    mle_aws_sigv4_params p = {.creds = &cr, .region = "us-east-1", .service = "eks",
                              .time_unix = 1440938160, .normalize_path = 1, .encode_path = 1};
    mle_aws_sigv4_result out;
    assert_int_equal(mle_aws_sigv4_sign(g_host, &req, &p, &out, NULL), 0);
    assert_memory_equal(out.canonical_request, "GET\n/clusters/a%2520b\n\n", 23);
    mle_aws_sigv4_result_free(&out);
}

static void test_invalid_inputs(void **state) {
    (void)state;
    mle_aws_credentials cr = {"AKID", "", NULL};
    mle_http_header h[] = {{"Host", "x"}};
    mle_aws_sigv4_request req = {.method = "GET", .path = "/", .headers = h, .n_headers = 1};
    mle_aws_sigv4_params p = {.creds = &cr, .region = "us-east-1", .service = "sts",
                              .time_unix = 0};
    mle_aws_sigv4_result out;
    mle_error *err = NULL;
    assert_int_not_equal(mle_aws_sigv4_sign(g_host, &req, &p, &out, &err), 0);
    assert_int_equal(g_host->error_code(err), MLE_E_INVALID);
    g_host->error_free(err);
    cr.secret_access_key = "s";
    req.n_headers = 0;
    err = NULL;
    assert_int_not_equal(mle_aws_sigv4_sign(g_host, &req, &p, &out, &err), 0);
    assert_non_null(strstr(g_host->error_message(err), "Host"));
    g_host->error_free(err);
    req.n_headers = 1;
    p.expires_s = 0;
    err = NULL;
    assert_int_not_equal(mle_aws_sigv4_presign(g_host, &req, &p, &out, &err), 0);
    g_host->error_free(err);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    const char *specs = getenv("MLE_SPECS_DIR");
    const char *src = getenv("MLE_SOURCE_DIR");
    int w;
    if (specs && *specs)
        w = snprintf(g_suite, sizeof g_suite, "%s/aws/sigv4-testsuite", specs);
    else
        w = snprintf(g_suite, sizeof g_suite, "%s/../shared/specs/aws/sigv4-testsuite",
                     src ? src : ".");
    if (w < 0 || (size_t)w >= sizeof g_suite) {
        fprintf(stderr, "test_aws_sigv4: MLE_SPECS_DIR is too long\n");
        return 1;
    }
    DIR *d = opendir(g_suite);
    if (!d) {
        fprintf(stderr, "test_aws_sigv4: cannot open the SigV4 vectors at %s: %s "
                        "(set MLE_SPECS_DIR)\n", g_suite, strerror(errno));
        return 1;
    }
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        if (e->d_name[0] == '.')
            continue;
        char probe[8192];
        snprintf(probe, sizeof probe, "%s/%s/context.json", g_suite, e->d_name);
        FILE *f = fopen(probe, "r");
        if (!f)
            continue;
        fclose(f);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "test_aws_sigv4: no vectors under %s\n", g_suite);
        return 1;
    }
    qsort(names, n, sizeof *names, cmp_str);

    mle_logger *lg = mle_logger_new(stderr, MLE_LOG_WARN);
    mle_host_services svc = {.logger = lg, .http = NULL};
    mle_host *host = mle_host_new(&svc, "aws-sigv4-test");
    g_host = host;

    size_t nt = 2 * n + 3;
    struct CMUnitTest *tests = calloc(nt, sizeof *tests);
    char **tnames = calloc(2 * n, sizeof *tnames);
    for (size_t i = 0; i < n; i++) {
        tnames[2 * i] = malloc(strlen(names[i]) + 16);
        sprintf(tnames[2 * i], "header/%s", names[i]);
        tnames[2 * i + 1] = malloc(strlen(names[i]) + 16);
        sprintf(tnames[2 * i + 1], "query/%s", names[i]);
        tests[2 * i] = (struct CMUnitTest){tnames[2 * i], test_header_case, NULL, NULL, names[i]};
        tests[2 * i + 1] = (struct CMUnitTest){tnames[2 * i + 1], test_query_case, NULL, NULL, names[i]};
    }
    tests[2 * n] = (struct CMUnitTest){"s3_path_untouched", test_s3_path_untouched, NULL, NULL, NULL};
    tests[2 * n + 1] = (struct CMUnitTest){"double_encode", test_double_encode, NULL, NULL, NULL};
    tests[2 * n + 2] = (struct CMUnitTest){"invalid_inputs", test_invalid_inputs, NULL, NULL, NULL};
    int failed = _cmocka_run_group_tests("aws_sigv4", tests, nt, NULL, NULL);

    for (size_t i = 0; i < 2 * n; i++)
        free(tnames[i]);
    free(tnames);
    free(tests);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    mle_host_free(host);
    mle_logger_free(lg);
    return failed ? 1 : 0;
}
