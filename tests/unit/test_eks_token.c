/*
 * test_eks_token.c — drivers/common/eks_token.c: the EKS bearer token for fixed credentials
 * (the SigV4 test suite's AKIDEXAMPLE), region us-west-2, cluster "mlops" and a fixed time
 * (2015-08-30T12:36:00Z).
 *
 * The token is decoded here with a decoder of the test's own, its URL is taken apart
 * parameter by parameter, and the signature is compared with one computed independently of
 * aws_sigv4.c: the canonical request for this fixed input is written out literally below,
 * and the string to sign and the HMAC chain are computed with OpenSSL directly. The expected
 * hex values are pinned as well (computed once with Python's hmac/hashlib), so a mistake
 * shared by this file's computation and the code cannot pass either, and so are the whole
 * tokens a reference client's signer makes for the same input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "aws_sigv4.h"
#include "eks_token.h"
#include "host.h"
#include "log.h"

static const mle_host *g_host;

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SESSION_TOKEN "FwoGZXIvYXdzEXAMPLE+session/token=="
#define T_MS 1440938160000LL /* 2015-08-30T12:36:00Z */

/* The canonical query as signed (no X-Amz-Signature), for the two credential cases. */
#define CQ_HEAD                                                                                \
    "Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256"             \
    "&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-west-2%2Fsts%2Faws4_request"                \
    "&X-Amz-Date=20150830T123600Z&X-Amz-Expires=60"
#define CQ_PLAIN CQ_HEAD "&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"
#define CQ_SESSION                                                                             \
    CQ_HEAD "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE%2Bsession%2Ftoken%3D%3D"                 \
            "&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"

/* The canonical requests, literally. */
#define CR_TAIL                                                                                \
    "host:sts.us-west-2.amazonaws.com\n"                                                       \
    "x-k8s-aws-id:mlops\n"                                                                     \
    "\n"                                                                                       \
    "host;x-k8s-aws-id\n"                                                                      \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
static const char CR_PLAIN[] = "GET\n/\n" CQ_PLAIN "\n" CR_TAIL;
static const char CR_SESSION[] = "GET\n/\n" CQ_SESSION "\n" CR_TAIL;

/* The same signatures, from Python's hmac module. */
#define SIG_PLAIN "075a363938ef00087c8aa74301056b806da60ad6f9ca4eb4530536f7f28dd9a2"
#define SIG_SESSION "dda863075679a5b490e5ae5c17870781bb8d736858d006812d302d04a5e8f954"

/* The whole tokens, as the AWS SDK for Go v1's presigner (what aws-iam-authenticator signs
 * with: v4.Signer.Presign of the same GET with the x-k8s-aws-id header, 60 s, same time and
 * credentials) makes them; botocore (`aws eks get-token`) gives the same signatures. */
static const char GO_TOKEN_PLAIN[] =
    "k8s-aws-v1.aHR0cHM6Ly9zdHMudXMtd2VzdC0yLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZ"
    "GVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEEyNTYmWC1Bb"
    "XotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMTUwODMwJTJGdXMtd2VzdC0yJTJGc3RzJTJGYXdzNF9yZ"
    "XF1ZXN0JlgtQW16LURhdGU9MjAxNTA4MzBUMTIzNjAwWiZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNpZ25lZ"
    "EhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZYLUFtei1TaWduYXR1cmU9MDc1YTM2MzkzOGVmMDAwODdjO"
    "GFhNzQzMDEwNTZiODA2ZGE2MGFkNmY5Y2E0ZWI0NTMwNTM2ZjdmMjhkZDlhMg";
static const char GO_TOKEN_SESSION[] =
    "k8s-aws-v1.aHR0cHM6Ly9zdHMudXMtd2VzdC0yLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZ"
    "GVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEEyNTYmWC1Bb"
    "XotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMTUwODMwJTJGdXMtd2VzdC0yJTJGc3RzJTJGYXdzNF9yZ"
    "XF1ZXN0JlgtQW16LURhdGU9MjAxNTA4MzBUMTIzNjAwWiZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNlY3Vya"
    "XR5LVRva2VuPUZ3b0daWEl2WVhkekVYQU1QTEUlMkJzZXNzaW9uJTJGdG9rZW4lM0QlM0QmWC1BbXotU2lnb"
    "mVkSGVhZGVycz1ob3N0JTNCeC1rOHMtYXdzLWlkJlgtQW16LVNpZ25hdHVyZT1kZGE4NjMwNzU2NzlhNWI0O"
    "TBlNWFlNWMxNzg3MDc4MWJiOGQ3MzY4NThkMDA2ODEyZDMwMmQwNGE1ZThmOTU0";

/* ------------------------------------------------------------------------------------------
 * The test's own SigV4: string to sign and the HMAC chain, with OpenSSL.
 * ------------------------------------------------------------------------------------------ */
static void hexify(const unsigned char *d, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void hmac256(const void *key, size_t klen, const char *msg, unsigned char out[32]) {
    unsigned int olen = 32;
    assert_non_null(HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg),
                         out, &olen));
    assert_int_equal(olen, 32);
}

static void expected_signature(const char *canonical_request, char out[65]) {
    unsigned char h[32];
    char hh[65];
    SHA256((const unsigned char *)canonical_request, strlen(canonical_request), h);
    hexify(h, 32, hh);
    char sts[512];
    snprintf(sts, sizeof sts,
             "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-west-2/sts/aws4_request\n%s", hh);
    unsigned char k[32], k2[32];
    const char *k0 = "AWS4" SECRET;
    hmac256(k0, strlen(k0), "20150830", k);
    hmac256(k, 32, "us-west-2", k2);
    hmac256(k2, 32, "sts", k);
    hmac256(k, 32, "aws4_request", k2);
    hmac256(k2, 32, sts, h);
    hexify(h, 32, out);
}

/* ------------------------------------------------------------------------------------------
 * The test's own base64url decoder: the alphabet strictly (no '+', '/', '=' or whitespace).
 * Returns a NUL-terminated string (caller frees) or NULL when s is not base64url.
 * ------------------------------------------------------------------------------------------ */
static int b64url_val(char c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

static char *b64url_decode(const char *s) {
    size_t n = strlen(s);
    if (n % 4 == 1)
        return NULL; /* no unpadded encoding has this length */
    char *out = malloc(n * 3 / 4 + 2);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val(s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    /* Unused trailing bits must be zero (canonical encoding). */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        free(out);
        return NULL;
    }
    out[o] = '\0';
    if (strlen(out) != o) { /* an embedded NUL */
        free(out);
        return NULL;
    }
    return out;
}

/* ------------------------------------------------------------------------------------------
 * Helpers.
 * ------------------------------------------------------------------------------------------ */
static char *make_token(const char *session_token, const char *region, const char *cluster,
                        int64_t now_ms) {
    mle_aws_credentials c = {AKID, SECRET, session_token};
    mle_error *err = NULL;
    char *t = mle_eks_token(g_host, &c, region, cluster, now_ms, &err);
    if (!t)
        fail_msg("mle_eks_token failed: %s", err ? g_host->error_message(err) : "(no error)");
    assert_null(err);
    return t;
}

/* Prefix, alphabet, no padding; returns the decoded URL (caller frees). */
static char *decode_token(const char *token) {
    const char *pfx = "k8s-aws-v1.";
    assert_int_equal(strncmp(token, pfx, strlen(pfx)), 0);
    const char *b = token + strlen(pfx);
    assert_true(strlen(b) > 0);
    assert_null(strchr(b, '='));
    assert_null(strchr(b, '+'));
    assert_null(strchr(b, '/'));
    char *url = b64url_decode(b);
    if (!url)
        fail_msg("token is not unpadded base64url: %s", b);
    return url;
}

/* Splits url's query on '&' and compares the parameters, in order, with want[] (each
 * "Key=value" exactly as in the URL). */
static void expect_url(const char *url, const char *host, const char *const *want, size_t n) {
    char prefix[256];
    snprintf(prefix, sizeof prefix, "https://%s/?", host);
    if (strncmp(url, prefix, strlen(prefix)) != 0)
        fail_msg("URL does not start with %s: %s", prefix, url);
    char *q = strdup(url + strlen(prefix));
    size_t i = 0;
    char *save = NULL;
    for (char *p = strtok_r(q, "&", &save); p; p = strtok_r(NULL, "&", &save), i++) {
        if (i >= n)
            fail_msg("unexpected extra query parameter %s in %s", p, url);
        if (strcmp(p, want[i]) != 0)
            fail_msg("query parameter %zu\n want %s\n got  %s", i, want[i], p);
    }
    free(q);
    if (i != n)
        fail_msg("%zu query parameters, want %zu: %s", i, n, url);
}

/* ------------------------------------------------------------------------------------------
 * Tests.
 * ------------------------------------------------------------------------------------------ */

/* The test's own computation agrees with the pinned values: it is the reference below. */
static void test_reference_signatures(void **state) {
    char sig[65];
    expected_signature(CR_PLAIN, sig);
    assert_string_equal(sig, SIG_PLAIN);
    expected_signature(CR_SESSION, sig);
    assert_string_equal(sig, SIG_SESSION);
}

static void test_token_long_lived(void **state) {
    char *token = make_token(NULL, "us-west-2", "mlops", T_MS);
    char *url = decode_token(token);
    char sig[65], sigp[96];
    expected_signature(CR_PLAIN, sig);
    snprintf(sigp, sizeof sigp, "X-Amz-Signature=%s", sig);
    const char *want[] = {
        "Action=GetCallerIdentity",
        "Version=2011-06-15",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-west-2%2Fsts%2Faws4_request",
        "X-Amz-Date=20150830T123600Z",
        "X-Amz-Expires=60",
        "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
        sigp,
    };
    expect_url(url, "sts.us-west-2.amazonaws.com", want, sizeof want / sizeof *want);
    /* The whole token, byte for byte. */
    char full[1024];
    snprintf(full, sizeof full, "%s",
             "https://sts.us-west-2.amazonaws.com/?" CQ_PLAIN "&X-Amz-Signature=" SIG_PLAIN);
    assert_string_equal(url, full);
    assert_string_equal(token, GO_TOKEN_PLAIN);
    /* An empty session token is no session token. */
    char *t2 = make_token("", "us-west-2", "mlops", T_MS);
    assert_string_equal(t2, token);
    free(t2);
    free(url);
    free(token);
}

static void test_token_session(void **state) {
    char *token = make_token(SESSION_TOKEN, "us-west-2", "mlops", T_MS);
    char *url = decode_token(token);
    char sig[65], sigp[96];
    expected_signature(CR_SESSION, sig);
    snprintf(sigp, sizeof sigp, "X-Amz-Signature=%s", sig);
    const char *want[] = {
        "Action=GetCallerIdentity",
        "Version=2011-06-15",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-west-2%2Fsts%2Faws4_request",
        "X-Amz-Date=20150830T123600Z",
        "X-Amz-Expires=60",
        "X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE%2Bsession%2Ftoken%3D%3D",
        "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
        sigp,
    };
    expect_url(url, "sts.us-west-2.amazonaws.com", want, sizeof want / sizeof *want);
    assert_string_equal(sig, SIG_SESSION);
    assert_string_equal(token, GO_TOKEN_SESSION);
    free(url);
    free(token);
}

/* The signature covers the cluster name (the header the authenticator replays). */
static void test_cluster_bound(void **state) {
    char *a = make_token(NULL, "us-west-2", "mlops", T_MS);
    char *b = make_token(NULL, "us-west-2", "mlops2", T_MS);
    char *ua = decode_token(a), *ub = decode_token(b);
    const char *sa = strstr(ua, "X-Amz-Signature="), *sb = strstr(ub, "X-Amz-Signature=");
    assert_non_null(sa);
    assert_non_null(sb);
    assert_string_not_equal(sa, sb);
    /* Everything else in the URL is the same: the name itself never travels in it. */
    assert_int_equal(sa - ua, sb - ub);
    assert_memory_equal(ua, ub, (size_t)(sa - ua));
    assert_null(strstr(ua, "mlops"));
    free(ua);
    free(ub);
    free(a);
    free(b);
}

/* X-Amz-Date has whole seconds: the milliseconds of the clock do not change the token. */
static void test_subsecond(void **state) {
    char *a = make_token(NULL, "us-west-2", "mlops", T_MS);
    char *b = make_token(NULL, "us-west-2", "mlops", T_MS + 999);
    char *c = make_token(NULL, "us-west-2", "mlops", T_MS + 1000);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    free(a);
    free(b);
    free(c);
}

static void test_china_region(void **state) {
    char *t = make_token(NULL, "cn-north-1", "mlops", T_MS);
    char *url = decode_token(t);
    assert_int_equal(strncmp(url, "https://sts.cn-north-1.amazonaws.com.cn/?Action=", 48), 0);
    assert_non_null(strstr(url, "%2Fcn-north-1%2Fsts%2Faws4_request&"));
    free(url);
    free(t);
}

static void test_expiry(void **state) {
    assert_int_equal(mle_eks_token_expiry_ms(T_MS), T_MS + 14 * 60 * 1000);
    assert_int_equal(mle_eks_token_expiry_ms(0), 840000);
    assert_true(mle_eks_token_expiry_ms(T_MS) < T_MS + MLE_EKS_TOKEN_LIFETIME_MS);
}

static void expect_invalid(const mle_aws_credentials *c, const char *region, const char *cluster,
                           int64_t t) {
    mle_error *err = NULL;
    char *tok = mle_eks_token(g_host, c, region, cluster, t, &err);
    assert_null(tok);
    assert_non_null(err);
    assert_int_equal(g_host->error_code(err), MLE_E_INVALID);
    g_host->error_free(err);
}

static void test_invalid_inputs(void **state) {
    mle_aws_credentials ok = {AKID, SECRET, NULL};
    mle_aws_credentials no_key = {"", SECRET, NULL};
    mle_aws_credentials no_secret = {AKID, NULL, NULL};
    expect_invalid(NULL, "us-west-2", "mlops", T_MS);
    expect_invalid(&no_key, "us-west-2", "mlops", T_MS);
    expect_invalid(&no_secret, "us-west-2", "mlops", T_MS);
    expect_invalid(&ok, NULL, "mlops", T_MS);
    expect_invalid(&ok, "", "mlops", T_MS);
    expect_invalid(&ok, "us-west-2.evil.example", "mlops", T_MS);
    expect_invalid(&ok, "US-WEST-2", "mlops", T_MS);
    expect_invalid(&ok, "us-west-2", NULL, T_MS);
    expect_invalid(&ok, "us-west-2", "", T_MS);
    expect_invalid(&ok, "us-west-2", "ml ops", T_MS);
    expect_invalid(&ok, "us-west-2", "mlops\r\nx-evil: 1", T_MS);
    expect_invalid(&ok, "us-west-2", "mlops", -1);
    /* A NULL err is allowed. */
    assert_null(mle_eks_token(g_host, &ok, "us-west-2", "", T_MS, NULL));
}

/* The field eks_token relies on: aws_sigv4's canonical_query is the query line of the
 * canonical request, for header signing and presigning alike. */
static void test_sigv4_canonical_query(void **state) {
    mle_aws_credentials c = {AKID, SECRET, NULL};
    const mle_http_header hs[] = {{"Host", "example.amazonaws.com"}};
    mle_aws_sigv4_request req = {.method = "GET", .path = "/", .query = "b=2&a=%41&c",
                                 .headers = hs, .n_headers = 1};
    mle_aws_sigv4_params p = {.creds = &c, .region = "us-east-1", .service = "service",
                              .time_unix = T_MS / 1000, .normalize_path = 1, .encode_path = 1,
                              .expires_s = 60};
    for (int presign = 0; presign < 2; presign++) {
        mle_aws_sigv4_result r;
        mle_error *err = NULL;
        int rc = presign ? mle_aws_sigv4_presign(g_host, &req, &p, &r, &err)
                         : mle_aws_sigv4_sign(g_host, &req, &p, &r, &err);
        assert_int_equal(rc, 0);
        assert_non_null(r.canonical_query);
        const char *l2 = strchr(strchr(r.canonical_request, '\n') + 1, '\n') + 1;
        const char *e2 = strchr(l2, '\n');
        assert_int_equal(strlen(r.canonical_query), (size_t)(e2 - l2));
        assert_memory_equal(r.canonical_query, l2, (size_t)(e2 - l2));
        if (presign)
            assert_string_equal(r.canonical_query,
                                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE"
                                "%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date="
                                "20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&"
                                "a=A&b=2&c=");
        else
            assert_string_equal(r.canonical_query, "a=A&b=2&c=");
        mle_aws_sigv4_result_free(&r);
        assert_null(r.canonical_query);
    }
}

int main(void) {
    mle_logger *lg = mle_logger_new(stderr, MLE_LOG_WARN);
    mle_host_services svc = {.logger = lg, .http = NULL};
    mle_host *host = mle_host_new(&svc, "eks-token-test");
    g_host = host;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_signatures),
        cmocka_unit_test(test_token_long_lived),
        cmocka_unit_test(test_token_session),
        cmocka_unit_test(test_cluster_bound),
        cmocka_unit_test(test_subsecond),
        cmocka_unit_test(test_china_region),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_invalid_inputs),
        cmocka_unit_test(test_sigv4_canonical_query),
    };
    int failed = cmocka_run_group_tests_name("eks_token", tests, NULL, NULL);
    mle_host_free(host);
    mle_logger_free(lg);
    return failed ? 1 : 0;
}
