/*
 * test_aws_driver.c — unit tests of the AWS driver's own logic, below the resource types:
 * the credential chain (environment, web identity, shared files, assume role; order and
 * refresh) against a fake STS on loopback, the INI reader, AWS error parsing in every
 * protocol's shape, the error classification, region and endpoint resolution, XML lists,
 * tags and documents.
 *
 * The driver is one translation unit of static functions, so this file includes it whole
 * (drivers/aws/aws.c) and runs with a real host table (mle_host_new: OpenSSL, libcurl,
 * libxml2, jansson inside), as a driver would at run time.
 */
#include "../../drivers/aws/aws.c"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "host.h"
#include "http.h"
#include "log.h"

static mle_logger *g_log;
static mle_http_client *g_http;
static mle_host *g_host;
static char g_tmp[256];

/* ------------------------------------------------------------------------------------------
 * A fake STS: one thread, one connection at a time, canned answers by Action. It records
 * the last request so tests can check what the driver sent (signed or not, which keys).
 * ------------------------------------------------------------------------------------------ */
typedef struct fake_sts {
    int fd;
    int port;
    pthread_t th;
    pthread_mutex_t mu;
    int stop;
    int calls;
    char last_body[8192];
    char last_auth[1024];
    char expiration[64]; /* Expiration the next credentials carry */
} fake_sts;

static fake_sts g_sts;

static void sts_answer(int c, const char *body) {
    char hdr[256];
    snprintf(hdr, sizeof hdr,
             "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n", strlen(body));
    if (write(c, hdr, strlen(hdr)) < 0 || write(c, body, strlen(body)) < 0)
        return;
}

static void *sts_main(void *arg) {
    fake_sts *s = arg;
    for (;;) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        pthread_mutex_lock(&s->mu);
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop) {
            close(c);
            return NULL;
        }
        char buf[16384];
        size_t n = 0;
        ssize_t r;
        size_t want = 0;
        char *body = NULL;
        while (n < sizeof buf - 1 && (r = read(c, buf + n, sizeof buf - 1 - n)) > 0) {
            n += (size_t)r;
            buf[n] = '\0';
            char *eoh = strstr(buf, "\r\n\r\n");
            if (eoh && !body) {
                body = eoh + 4;
                char *cl = strcasestr(buf, "content-length:");
                want = cl ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
            }
            if (body && (size_t)(buf + n - body) >= want)
                break;
        }
        pthread_mutex_lock(&s->mu);
        s->calls++;
        snprintf(s->last_body, sizeof s->last_body, "%s", body ? body : "");
        char *auth = strcasestr(buf, "\r\nauthorization:");
        if (auth) {
            char *e = strstr(auth + 2, "\r\n");
            size_t l = e ? (size_t)(e - auth - 2) : strlen(auth + 2);
            snprintf(s->last_auth, sizeof s->last_auth, "%.*s", (int)l, auth + 2);
        } else {
            s->last_auth[0] = '\0';
        }
        char exp[64];
        snprintf(exp, sizeof exp, "%s", s->expiration);
        int calls = s->calls;
        pthread_mutex_unlock(&s->mu);
        char xml[2048];
        const char *action = body && strstr(body, "Action=AssumeRoleWithWebIdentity") ? "AssumeRoleWithWebIdentity"
                             : body && strstr(body, "Action=AssumeRole") ? "AssumeRole"
                                                                          : "GetCallerIdentity";
        if (strcmp(action, "GetCallerIdentity") == 0)
            snprintf(xml, sizeof xml,
                     "<GetCallerIdentityResponse><GetCallerIdentityResult><Account>111122223333"
                     "</Account><Arn>arn:aws:iam::111122223333:user/t</Arn><UserId>U</UserId>"
                     "</GetCallerIdentityResult></GetCallerIdentityResponse>");
        else
            snprintf(xml, sizeof xml,
                     "<%sResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><%sResult>"
                     "<Credentials><AccessKeyId>ASIA%s%d</AccessKeyId>"
                     "<SecretAccessKey>secret-%d</SecretAccessKey>"
                     "<SessionToken>token-%d</SessionToken><Expiration>%s</Expiration>"
                     "</Credentials></%sResult></%sResponse>",
                     action, action, strcmp(action, "AssumeRole") == 0 ? "ROLE" : "WEB", calls,
                     calls, calls, exp, action, action);
        sts_answer(c, xml);
        close(c);
    }
}

static void sts_start(void) {
    memset(&g_sts, 0, sizeof g_sts);
    pthread_mutex_init(&g_sts.mu, NULL);
    snprintf(g_sts.expiration, sizeof g_sts.expiration, "2099-01-01T00:00:00Z");
    g_sts.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(g_sts.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(g_sts.fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(g_sts.fd, 16) != 0)
        abort();
    socklen_t l = sizeof a;
    getsockname(g_sts.fd, (struct sockaddr *)&a, &l);
    g_sts.port = ntohs(a.sin_port);
    pthread_create(&g_sts.th, NULL, sts_main, &g_sts);
}

static void sts_stop(void) {
    pthread_mutex_lock(&g_sts.mu);
    g_sts.stop = 1;
    pthread_mutex_unlock(&g_sts.mu);
    /* Wake the accept with one last connection. */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_sts.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c, (struct sockaddr *)&a, sizeof a) == 0)
        close(c);
    else
        close(c);
    pthread_join(g_sts.th, NULL);
    close(g_sts.fd);
}

static int sts_calls(void) {
    pthread_mutex_lock(&g_sts.mu);
    int n = g_sts.calls;
    pthread_mutex_unlock(&g_sts.mu);
    return n;
}

/* ------------------------------------------------------------------------------------------
 * Fixtures.
 * ------------------------------------------------------------------------------------------ */
static const char *const env_vars[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_EKS", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_SECRETS_MANAGER", NULL};

static void clean_env(void) {
    for (int i = 0; env_vars[i]; i++)
        unsetenv(env_vars[i]);
    /* No real ~/.aws may leak into a test. */
    setenv("HOME", g_tmp, 1);
}

static char *write_tmp(const char *name, const char *text) {
    char *path = xasprintf("%s/%s", g_tmp, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* A driver context with STS (and every service) on the fake STS. */
static aws_ctx *make_ctx(const char *profile) {
    mle_value *opts = g_host->v_object();
    g_host->v_set(opts, "region", g_host->v_string("eu-west-1"));
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", g_sts.port);
    g_host->v_set(opts, "endpoint_url", g_host->v_string(url));
    if (profile)
        g_host->v_set(opts, "profile", g_host->v_string(profile));
    void *ctx = NULL;
    mle_error *e = NULL;
    int rc = aws_init(g_host, opts, &ctx, &e);
    g_host->v_decref(opts);
    if (rc != 0)
        fail_msg("init: %s", g_host->error_message(e));
    return ctx;
}

static int setup(void **state) {
    (void)state;
    clean_env();
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Credential chain.
 * ------------------------------------------------------------------------------------------ */
static void test_env_credentials(void **state) {
    (void)state;
    setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    setenv("AWS_SESSION_TOKEN", "envtoken", 1);
    aws_ctx *c = make_ctx(NULL);
    aws_creds cr;
    mle_error *e = NULL;
    int before = sts_calls();
    assert_int_equal(creds_get(g_host, c, &cr, &e), 0);
    assert_string_equal(cr.akid, "AKIAENV");
    assert_string_equal(cr.secret, "envsecret");
    assert_string_equal(cr.token, "envtoken");
    assert_int_equal(c->src, AWS_CS_ENV);
    assert_int_equal(sts_calls(), before);
    creds_free(&cr);
    ctx_free(c);
}

/* The environment wins over web identity and profiles, as in the SDKs. */
static void test_env_beats_web_identity_and_profile(void **state) {
    (void)state;
    setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    char *tok = write_tmp("token1", "eyJ.token.sig\n");
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/ci", 1);
    char *cred = write_tmp("cred1", "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = f\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred, 1);
    aws_ctx *c = make_ctx(NULL);
    aws_creds cr;
    mle_error *e = NULL;
    assert_int_equal(creds_get(g_host, c, &cr, &e), 0);
    assert_string_equal(cr.akid, "AKIAENV");
    creds_free(&cr);
    ctx_free(c);
    free(tok);
    free(cred);
}

static void test_web_identity(void **state) {
    (void)state;
    char *tok = write_tmp("token2", "eyJhbGciOi.payload.signature\n");
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/ci", 1);
    setenv("AWS_ROLE_SESSION_NAME", "pipeline-42", 1);
    char *cred = write_tmp("cred2", "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = f\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred, 1); /* loses to web identity */
    aws_ctx *c = make_ctx(NULL);
    aws_creds cr;
    mle_error *e = NULL;
    int before = sts_calls();
    if (creds_get(g_host, c, &cr, &e) != 0)
        fail_msg("%s", g_host->error_message(e));
    assert_int_equal(sts_calls(), before + 1);
    assert_true(starts_with(cr.akid, "ASIAWEB"));
    assert_non_null(cr.token);
    assert_int_equal(c->src, AWS_CS_WEB_IDENTITY);
    assert_true(cr.expires_ms > 0);
    /* Unsigned, with the token, role and session name in the form. */
    assert_string_equal(g_sts.last_auth, "");
    assert_non_null(strstr(g_sts.last_body, "Action=AssumeRoleWithWebIdentity"));
    assert_non_null(strstr(g_sts.last_body, "WebIdentityToken=eyJhbGciOi.payload.signature"));
    assert_non_null(strstr(g_sts.last_body, "RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fci"));
    assert_non_null(strstr(g_sts.last_body, "RoleSessionName=pipeline-42"));
    /* Cached: a second call does not go back to STS. */
    aws_creds cr2;
    assert_int_equal(creds_get(g_host, c, &cr2, &e), 0);
    assert_int_equal(sts_calls(), before + 1);
    assert_string_equal(cr2.akid, cr.akid);
    creds_free(&cr);
    creds_free(&cr2);
    ctx_free(c);
    free(tok);
    free(cred);
}

/* Temporary credentials within 5 minutes of expiry are fetched again (the token file is read
 * afresh: CI runners rotate it). */
static void test_refresh_before_expiry(void **state) {
    (void)state;
    char *tok = write_tmp("token3", "first-token");
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/ci", 1);
    char soon[64];
    time_t t = time(NULL) + 120;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(soon, sizeof soon, "%Y-%m-%dT%H:%M:%SZ", &tm);
    pthread_mutex_lock(&g_sts.mu);
    snprintf(g_sts.expiration, sizeof g_sts.expiration, "%s", soon);
    pthread_mutex_unlock(&g_sts.mu);
    aws_ctx *c = make_ctx(NULL);
    aws_creds a, b;
    mle_error *e = NULL;
    int before = sts_calls();
    assert_int_equal(creds_get(g_host, c, &a, &e), 0);
    free(write_tmp("token3", "second-token"));
    assert_int_equal(creds_get(g_host, c, &b, &e), 0);
    assert_int_equal(sts_calls(), before + 2);
    assert_string_not_equal(a.akid, b.akid);
    assert_non_null(strstr(g_sts.last_body, "WebIdentityToken=second-token"));
    creds_free(&a);
    creds_free(&b);
    ctx_free(c);
    pthread_mutex_lock(&g_sts.mu);
    snprintf(g_sts.expiration, sizeof g_sts.expiration, "2099-01-01T00:00:00Z");
    pthread_mutex_unlock(&g_sts.mu);
    free(tok);
}

static void test_profile_static_and_precedence(void **state) {
    (void)state;
    char *cred = write_tmp("cred4", "# comment\n[dev]\naws_access_key_id = AKIACRED\n"
                                    "aws_secret_access_key = credsecret ; inline comment\n");
    char *conf = write_tmp("conf4", "[profile dev]\naws_access_key_id = AKIACONF\n"
                                    "aws_secret_access_key = confsecret\nregion = ap-south-1\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred, 1);
    setenv("AWS_CONFIG_FILE", conf, 1);
    setenv("AWS_PROFILE", "dev", 1);
    aws_ctx *c = make_ctx(NULL);
    aws_creds cr;
    mle_error *e = NULL;
    assert_int_equal(creds_get(g_host, c, &cr, &e), 0);
    /* The credentials file beats the config file for the same profile. */
    assert_string_equal(cr.akid, "AKIACRED");
    assert_string_equal(cr.secret, "credsecret");
    assert_null(cr.token);
    assert_int_equal(c->src, AWS_CS_PROFILE);
    creds_free(&cr);
    ctx_free(c);
    free(cred);
    free(conf);
}

/* role_arn + source_profile: STS AssumeRole signed with the source profile's keys. */
static void test_profile_assume_role(void **state) {
    (void)state;
    char *cred = write_tmp("cred5", "[base]\naws_access_key_id = AKIABASE\naws_secret_access_key = basesecret\n");
    char *conf = write_tmp("conf5", "[profile app]\nrole_arn = arn:aws:iam::111122223333:role/app\n"
                                    "source_profile = base\nrole_session_name = mle-test\n"
                                    "external_id = ext-1\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred, 1);
    setenv("AWS_CONFIG_FILE", conf, 1);
    aws_ctx *c = make_ctx("app"); /* the driver option `profile` */
    aws_creds cr;
    mle_error *e = NULL;
    if (creds_get(g_host, c, &cr, &e) != 0)
        fail_msg("%s", g_host->error_message(e));
    assert_true(starts_with(cr.akid, "ASIAROLE"));
    assert_int_equal(c->src, AWS_CS_ASSUME_ROLE);
    assert_non_null(strstr(g_sts.last_body, "Action=AssumeRole&"));
    assert_non_null(strstr(g_sts.last_body, "RoleSessionName=mle-test"));
    assert_non_null(strstr(g_sts.last_body, "ExternalId=ext-1"));
    assert_non_null(strstr(g_sts.last_auth, "Credential=AKIABASE/"));
    assert_non_null(strstr(g_sts.last_auth, "/eu-west-1/sts/aws4_request"));
    creds_free(&cr);
    ctx_free(c);
    free(cred);
    free(conf);
}

static void test_nothing_found_lists_what_was_tried(void **state) {
    (void)state;
    aws_ctx *c = make_ctx(NULL);
    aws_creds cr;
    mle_error *e = NULL;
    assert_int_not_equal(creds_get(g_host, c, &cr, &e), 0);
    assert_int_equal(g_host->error_code(e), MLE_E_AUTH);
    const char *m = g_host->error_message(e);
    assert_non_null(strstr(m, "environment"));
    assert_non_null(strstr(m, "web identity"));
    assert_non_null(strstr(m, "profile \"default\""));
    g_host->error_free(e);
    ctx_free(c);
}

static void test_profile_role_without_source(void **state) {
    (void)state;
    char *conf = write_tmp("conf6", "[default]\nrole_arn = arn:aws:iam::1:role/x\n");
    setenv("AWS_CONFIG_FILE", conf, 1);
    aws_ctx *c = make_ctx(NULL);
    aws_creds cr;
    mle_error *e = NULL;
    assert_int_not_equal(creds_get(g_host, c, &cr, &e), 0);
    assert_int_equal(g_host->error_code(e), MLE_E_AUTH);
    assert_non_null(strstr(g_host->error_message(e), "source_profile"));
    g_host->error_free(e);
    ctx_free(c);
    free(conf);
}

/* ------------------------------------------------------------------------------------------
 * INI.
 * ------------------------------------------------------------------------------------------ */
static void test_ini(void **state) {
    (void)state;
    const char *text = "; top comment\n"
                       "[default]\n"
                       "Region = us-east-2\n"
                       "s3 =\n"
                       "  max_concurrent_requests = 20\n"
                       "output=json # trailing\n"
                       "url = http://x/#frag\n"
                       "[profile  prod ]\n"
                       "role_arn=arn:aws:iam::1:role/p\n"
                       "[sso-session corp]\n"
                       "sso_region = eu-west-1\n"
                       "orphan\n";
    mle_value *v = ini_parse(g_host, text, 1);
    assert_string_equal(vstr(g_host, g_host->v_get(v, "default"), "region"), "us-east-2");
    assert_string_equal(vstr(g_host, g_host->v_get(v, "default"), "output"), "json");
    assert_string_equal(vstr(g_host, g_host->v_get(v, "default"), "url"), "http://x/#frag");
    assert_null(g_host->v_get(g_host->v_get(v, "default"), "max_concurrent_requests"));
    assert_string_equal(vstr(g_host, g_host->v_get(v, "prod"), "role_arn"), "arn:aws:iam::1:role/p");
    assert_non_null(g_host->v_get(v, "sso-session corp"));
    g_host->v_decref(v);
    /* In the credentials file "[profile x]" is not special. */
    v = ini_parse(g_host, "[profile x]\na=b\n", 0);
    assert_non_null(g_host->v_get(v, "profile x"));
    g_host->v_decref(v);
}

/* ------------------------------------------------------------------------------------------
 * Error parsing and classification.
 * ------------------------------------------------------------------------------------------ */
static void parse_case(long status, const char *body, const char *hdr_name, const char *hdr_value,
                       const char *want_code, const char *want_msg) {
    mle_http_header hs[1] = {{hdr_name ? hdr_name : "x-none", hdr_value ? hdr_value : ""}};
    mle_http_response r = {.status = status, .headers = hs, .n_headers = 1,
                           .body = (char *)body, .body_len = strlen(body)};
    char code[128], msg[512];
    aws_parse_error(g_host, &r, code, sizeof code, msg, sizeof msg);
    assert_string_equal(code, want_code);
    assert_string_equal(msg, want_msg);
}

static void test_error_parsing(void **state) {
    (void)state;
    /* EC2 */
    parse_case(400, "<?xml version=\"1.0\"?><Response><Errors><Error><Code>InvalidVpcID.NotFound</Code>"
                    "<Message>The vpc ID 'vpc-1' does not exist</Message></Error></Errors>"
                    "<RequestID>r</RequestID></Response>",
               NULL, NULL, "InvalidVpcID.NotFound", "The vpc ID 'vpc-1' does not exist");
    /* query (IAM/STS) */
    parse_case(404, "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error>"
                    "<Type>Sender</Type><Code>NoSuchEntity</Code><Message>Role x not found</Message>"
                    "</Error><RequestId>r</RequestId></ErrorResponse>",
               NULL, NULL, "NoSuchEntity", "Role x not found");
    /* S3 */
    parse_case(404, "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message>"
                    "<BucketName>b</BucketName></Error>",
               NULL, NULL, "NoSuchBucket", "The specified bucket does not exist");
    /* JSON protocol with a namespaced __type */
    parse_case(400, "{\"__type\":\"com.amazonaws.kms#NotFoundException\",\"message\":\"Key 'k' does not exist\"}",
               NULL, NULL, "NotFoundException", "Key 'k' does not exist");
    /* JSON with Message capitalised */
    parse_case(400, "{\"__type\":\"ResourceExistsException\",\"Message\":\"exists\"}", NULL, NULL,
               "ResourceExistsException", "exists");
    /* rest-json: the code in the header only */
    parse_case(404, "{\"message\":\"No cluster found for name: x.\"}", "x-amzn-errortype",
               "ResourceNotFoundException:http://internal.amazon.com/coral/com.amazonaws.eks/",
               "ResourceNotFoundException", "No cluster found for name: x.");
    /* nothing readable */
    parse_case(503, "", NULL, NULL, "", "");
    parse_case(500, "<html>oops", NULL, NULL, "", "");
}

static void classify_case(long status, const char *code, const char *msg, mle_op_kind kind,
                          mle_error_code want) {
    int expired = 0;
    mle_error_code got = aws_classify(status, code, msg, kind, &expired);
    if (got != want)
        fail_msg("classify(%ld, %s, %s, kind %d) = %d, want %d", status, code ? code : "-",
                 msg ? msg : "-", kind, got, want);
}

static void test_classification(void **state) {
    (void)state;
    classify_case(400, "Throttling", "Rate exceeded", MLE_OPK_CREATE, MLE_E_THROTTLED);
    classify_case(400, "ThrottlingException", "", MLE_OPK_READ, MLE_E_THROTTLED);
    classify_case(503, "RequestLimitExceeded", "", MLE_OPK_CREATE, MLE_E_THROTTLED);
    classify_case(429, NULL, NULL, MLE_OPK_CREATE, MLE_E_THROTTLED);
    classify_case(503, "SlowDown", "", MLE_OPK_CREATE, MLE_E_THROTTLED);
    classify_case(503, NULL, NULL, MLE_OPK_CREATE, MLE_E_TRANSIENT);
    classify_case(500, "InternalError", "", MLE_OPK_CREATE, MLE_E_TRANSIENT);
    classify_case(400, "InvalidParameterValue", "bad cidr", MLE_OPK_CREATE, MLE_E_INVALID);
    classify_case(400, "InvalidParameterCombination", "", MLE_OPK_CREATE, MLE_E_INVALID);
    classify_case(400, "ValidationException", "", MLE_OPK_CREATE, MLE_E_INVALID);
    classify_case(403, "AccessDenied", "", MLE_OPK_CREATE, MLE_E_PERMISSION);
    classify_case(403, "UnauthorizedOperation", "", MLE_OPK_CREATE, MLE_E_PERMISSION);
    classify_case(403, "InvalidClientTokenId", "", MLE_OPK_CREATE, MLE_E_AUTH);
    classify_case(403, "SignatureDoesNotMatch", "", MLE_OPK_CREATE, MLE_E_AUTH);
    classify_case(400, "InvalidVpcID.NotFound", "", MLE_OPK_READ, MLE_E_NOT_FOUND);
    classify_case(404, "NoSuchEntity", "", MLE_OPK_READ, MLE_E_NOT_FOUND);
    classify_case(404, "NoSuchBucket", "", MLE_OPK_READ, MLE_E_NOT_FOUND);
    classify_case(404, "ResourceNotFoundException", "", MLE_OPK_READ, MLE_E_NOT_FOUND);
    classify_case(400, "RepositoryNotFoundException", "", MLE_OPK_READ, MLE_E_NOT_FOUND);
    classify_case(404, "NoSuchPublicAccessBlockConfiguration", "", MLE_OPK_READ, MLE_E_NOT_FOUND);
    classify_case(404, "ServerSideEncryptionConfigurationNotFoundError", "", MLE_OPK_READ, MLE_E_NOT_FOUND);
    classify_case(409, "EntityAlreadyExists", "", MLE_OPK_CREATE, MLE_E_CONFLICT);
    classify_case(409, "BucketAlreadyOwnedByYou", "", MLE_OPK_CREATE, MLE_E_CONFLICT);
    /* Deletes wait for their dependents: retryable. */
    classify_case(400, "DependencyViolation", "has dependencies", MLE_OPK_DELETE, MLE_E_TRANSIENT);
    classify_case(409, "ResourceInUseException", "nodegroups attached", MLE_OPK_DELETE, MLE_E_TRANSIENT);
    classify_case(409, "DeleteConflict", "must detach", MLE_OPK_DELETE, MLE_E_TRANSIENT);
    classify_case(400, "DependencyViolation", "", MLE_OPK_CREATE, MLE_E_CONFLICT);
    /* Eventual consistency. */
    classify_case(400, "InvalidParameterException",
                  "Role with arn: arn:aws:iam::1:role/x, could not be assumed because it does not "
                  "exist or the trusted entities that are specified are incorrect.",
                  MLE_OPK_CREATE, MLE_E_TRANSIENT);
    classify_case(400, "InvalidParameterException", "Subnets specified must be in at least two "
                                                    "different AZs", MLE_OPK_CREATE, MLE_E_INVALID);
    classify_case(400, "MalformedPolicyDocument", "Invalid principal in policy", MLE_OPK_CREATE,
                  MLE_E_TRANSIENT);
    classify_case(400, "MalformedPolicyDocument", "Syntax errors in policy", MLE_OPK_CREATE, MLE_E_INVALID);
    classify_case(400, "VpcLimitExceeded", "", MLE_OPK_CREATE, MLE_E_PROVIDER);
    int expired = 0;
    assert_int_equal(aws_classify(400, "ExpiredToken", "", MLE_OPK_READ, &expired), MLE_E_AUTH);
    assert_int_equal(expired, 1);
}

/* The error object: AWS's code and message, status, retry-after. */
static void test_error_object(void **state) {
    (void)state;
    aws_ctx *c = make_ctx(NULL);
    const char *body = "{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}";
    mle_http_header hs[1] = {{"retry-after", "3"}};
    mle_http_response r = {.status = 400, .headers = hs, .n_headers = 1, .body = (char *)body,
                           .body_len = strlen(body)};
    aws_req req = {.svc = AWS_ECR, .action = "CreateRepository"};
    aws_resp_info info;
    mle_error *e = aws_error_from_response(g_host, c, &req, &r, &info);
    assert_int_equal(g_host->error_code(e), MLE_E_THROTTLED);
    assert_true(g_host->error_retryable(e));
    assert_non_null(strstr(g_host->error_message(e), "ecr CreateRepository: ThrottlingException: Rate exceeded"));
    assert_string_equal(info.code, "ThrottlingException");
    assert_int_equal(info.status, 400);
    const struct mle_error *raw = (const struct mle_error *)e;
    assert_string_equal(raw->provider_code, "ThrottlingException");
    assert_string_equal(raw->provider_message, "Rate exceeded");
    assert_int_equal(raw->http_status, 400);
    assert_int_equal(raw->retry_after_ms, 3000);
    g_host->error_free(e);
    /* A validation error is not retryable. */
    const char *b2 = "<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>bad</Message>"
                     "</Error></Errors></Response>";
    mle_http_response r2 = {.status = 400, .body = (char *)b2, .body_len = strlen(b2)};
    aws_req req2 = {.svc = AWS_EC2, .action = "CreateVpc"};
    e = aws_error_from_response(g_host, c, &req2, &r2, NULL);
    assert_int_equal(g_host->error_code(e), MLE_E_INVALID);
    assert_false(g_host->error_retryable(e));
    g_host->error_free(e);
    ctx_free(c);
}

/* ------------------------------------------------------------------------------------------
 * Region and endpoints.
 * ------------------------------------------------------------------------------------------ */
static aws_ctx *init_with(mle_value *opts, mle_error **e) {
    void *ctx = NULL;
    int rc = aws_init(g_host, opts, &ctx, e);
    g_host->v_decref(opts);
    return rc == 0 ? ctx : NULL;
}

static void test_region_resolution(void **state) {
    (void)state;
    mle_error *e = NULL;
    /* nothing: a clear error */
    aws_ctx *c = init_with(g_host->v_object(), &e);
    assert_null(c);
    assert_int_equal(g_host->error_code(e), MLE_E_INVALID);
    assert_non_null(strstr(g_host->error_message(e), "region"));
    g_host->error_free(e);
    /* profile region */
    char *conf = write_tmp("conf7", "[default]\nregion = sa-east-1\n");
    setenv("AWS_CONFIG_FILE", conf, 1);
    c = init_with(g_host->v_object(), &e);
    assert_string_equal(c->region, "sa-east-1");
    ctx_free(c);
    /* AWS_DEFAULT_REGION, then AWS_REGION beat the profile */
    setenv("AWS_DEFAULT_REGION", "eu-north-1", 1);
    c = init_with(g_host->v_object(), &e);
    assert_string_equal(c->region, "eu-north-1");
    ctx_free(c);
    setenv("AWS_REGION", "eu-central-1", 1);
    c = init_with(g_host->v_object(), &e);
    assert_string_equal(c->region, "eu-central-1");
    ctx_free(c);
    /* the driver option beats them all */
    mle_value *o = g_host->v_object();
    g_host->v_set(o, "region", g_host->v_string("us-west-2"));
    c = init_with(o, &e);
    assert_string_equal(c->region, "us-west-2");
    assert_string_equal(c->endpoint[AWS_EKS], "https://eks.us-west-2.amazonaws.com");
    assert_string_equal(c->endpoint[AWS_ECR], "https://api.ecr.us-west-2.amazonaws.com");
    assert_string_equal(c->endpoint[AWS_IAM], "https://iam.amazonaws.com");
    assert_string_equal(iam_signing_region(c->region), "us-east-1");
    ctx_free(c);
    free(conf);
}

static void test_endpoint_resolution(void **state) {
    (void)state;
    mle_error *e = NULL;
    setenv("AWS_REGION", "cn-north-1", 1);
    aws_ctx *c = init_with(g_host->v_object(), &e);
    assert_string_equal(c->endpoint[AWS_EC2], "https://ec2.cn-north-1.amazonaws.com.cn");
    assert_string_equal(c->endpoint[AWS_IAM], "https://iam.cn-north-1.amazonaws.com.cn");
    assert_int_equal(c->custom[AWS_EC2], 0);
    ctx_free(c);
    setenv("AWS_REGION", "us-east-1", 1);
    setenv("AWS_ENDPOINT_URL", "http://global:1/", 1);
    setenv("AWS_ENDPOINT_URL_EKS", "http://eks-only:2", 1);
    setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://sm:3", 1);
    c = init_with(g_host->v_object(), &e);
    assert_string_equal(c->endpoint[AWS_EC2], "http://global:1");
    assert_string_equal(c->endpoint[AWS_EKS], "http://eks-only:2");
    assert_string_equal(c->endpoint[AWS_SM], "http://sm:3");
    assert_int_equal(c->custom[AWS_S3], 1);
    ctx_free(c);
    /* the option endpoint_url beats the environment; `endpoints` beats endpoint_url */
    mle_value *o = g_host->v_object();
    g_host->v_set(o, "endpoint_url", g_host->v_string("http://opt:4"));
    mle_value *m = g_host->v_object();
    g_host->v_set(m, "kms", g_host->v_string("http://kms:5"));
    g_host->v_set(o, "endpoints", m);
    c = init_with(o, &e);
    assert_string_equal(c->endpoint[AWS_EKS], "http://opt:4");
    assert_string_equal(c->endpoint[AWS_KMS], "http://kms:5");
    ctx_free(c);
}

/* ------------------------------------------------------------------------------------------
 * Values: XML lists, tags, documents, poll tokens.
 * ------------------------------------------------------------------------------------------ */
static void test_xml_lists(void **state) {
    (void)state;
    const char *xml = "<R><none/><one><item><k>a</k></item></one>"
                      "<two><item><k>a</k></item><item><k>b</k></item></two></R>";
    mle_error *e = NULL;
    mle_value *v = g_host->v_parse_xml(g_host, xml, strlen(xml), &e);
    assert_non_null(v);
    assert_int_equal(xl_count(g_host, g_host->v_get(v, "none"), "item"), 0);
    assert_int_equal(xl_count(g_host, g_host->v_get(v, "one"), "item"), 1);
    assert_string_equal(vstr(g_host, xl_at(g_host, g_host->v_get(v, "one"), "item", 0), "k"), "a");
    assert_int_equal(xl_count(g_host, g_host->v_get(v, "two"), "item"), 2);
    assert_string_equal(vstr(g_host, xl_at(g_host, g_host->v_get(v, "two"), "item", 1), "k"), "b");
    assert_int_equal(xl_count(g_host, g_host->v_get(v, "missing"), "item"), 0);
    g_host->v_decref(v);
}

static void test_tags(void **state) {
    (void)state;
    mle_op op = {.struct_size = sizeof op, .address = "aws_vpc.main", .lineage = "L-1"};
    mle_value *user = g_host->v_object();
    g_host->v_set(user, "Name", g_host->v_string("x"));
    g_host->v_set(user, "mlengine:stack", g_host->v_string("forged"));
    mle_value *t = tags_with_owner(g_host, &op, user);
    assert_string_equal(vstr(g_host, t, "Name"), "x");
    assert_string_equal(g_host->v_str(g_host->v_get(t, "mlengine:stack")), "L-1");
    assert_string_equal(g_host->v_str(g_host->v_get(t, "mlengine:address")), "aws_vpc.main");
    g_host->v_decref(t);
    /* remote tags drop the ownership ones */
    const char *xml = "<R><tagSet><item><key>Name</key><value>x</value></item>"
                      "<item><key>mlengine:stack</key><value>L-1</value></item>"
                      "<item><key>mlengine:address</key><value>aws_vpc.main</value></item></tagSet></R>";
    mle_error *e = NULL;
    mle_value *v = g_host->v_parse_xml(g_host, xml, strlen(xml), &e);
    mle_value *u = tags_from_list(g_host, g_host->v_get(v, "tagSet"), "item", "key", "value");
    assert_int_equal(g_host->v_len(u), 1);
    assert_true(tags_owned_by(g_host, &op, g_host->v_get(v, "tagSet"), "item", "key", "value"));
    mle_op other = op;
    other.lineage = "L-2";
    assert_false(tags_owned_by(g_host, &other, g_host->v_get(v, "tagSet"), "item", "key", "value"));
    g_host->v_decref(u);
    g_host->v_decref(v);
    /* diff: changed + new in set (with the ownership tags), removed in del */
    mle_value *old = g_host->v_object(), *now = g_host->v_object();
    g_host->v_set(old, "a", g_host->v_string("1"));
    g_host->v_set(old, "b", g_host->v_string("2"));
    g_host->v_set(now, "a", g_host->v_string("9"));
    g_host->v_set(now, "c", g_host->v_string("3"));
    mle_value *set = NULL, *del = NULL;
    assert_int_equal(tags_diff(g_host, &op, old, now, &set, &del), 3);
    assert_string_equal(vstr(g_host, set, "a"), "9");
    assert_string_equal(vstr(g_host, set, "c"), "3");
    assert_non_null(g_host->v_get(set, "mlengine:address"));
    assert_int_equal(g_host->v_len(del), 1);
    assert_string_equal(g_host->v_str(g_host->v_at(del, 0)), "b");
    g_host->v_decref(set);
    g_host->v_decref(del);
    g_host->v_decref(old);
    g_host->v_decref(now);
    g_host->v_decref(user);
}

static void test_documents(void **state) {
    (void)state;
    /* IAM answers URL-encoded JSON; the user's text form is kept when it means the same. */
    const char *prior_text = "{\"Version\": \"2012-10-17\", \"Statement\": []}";
    mle_value *prior = g_host->v_string(prior_text);
    mle_value *a = doc_attr(g_host, "%7B%22Statement%22%3A%5B%5D%2C%22Version%22%3A%222012-10-17%22%7D", prior);
    assert_int_equal(g_host->v_kind(a), MLE_V_STRING);
    assert_string_equal(g_host->v_str(a), prior_text);
    g_host->v_decref(a);
    /* A different remote document comes back parsed. */
    a = doc_attr(g_host, "{\"Version\":\"2008-10-17\"}", prior);
    assert_int_equal(g_host->v_kind(a), MLE_V_OBJECT);
    g_host->v_decref(a);
    g_host->v_decref(prior);
}

static void test_poll_tokens(void **state) {
    (void)state;
    char *t = poll_token("mlops:gpu", "ACTIVE", 1700000000);
    char id[64], aw[16];
    int64_t dl = 0;
    assert_int_equal(poll_parse(t, id, sizeof id, aw, sizeof aw, &dl), 0);
    assert_string_equal(id, "mlops:gpu");
    assert_string_equal(aw, "ACTIVE");
    assert_int_equal(dl, 1700000000);
    free(t);
    assert_int_not_equal(poll_parse("garbage", id, sizeof id, aw, sizeof aw, &dl), 0);
    assert_int_not_equal(poll_parse("|x|1", id, sizeof id, aw, sizeof aw, &dl), 0);
}

static void test_time_parsing(void **state) {
    (void)state;
    mle_value *v = g_host->v_string("2024-05-01T12:00:00Z");
    assert_int_equal(parse_time_ms(g_host, v), 1714564800000LL);
    g_host->v_decref(v);
    v = g_host->v_string("2024-05-01T12:00:00.250Z");
    assert_int_equal(parse_time_ms(g_host, v), 1714564800250LL);
    g_host->v_decref(v);
    v = g_host->v_string("2024-05-01T14:00:00+02:00");
    assert_int_equal(parse_time_ms(g_host, v), 1714564800000LL);
    g_host->v_decref(v);
    v = g_host->v_real(1714564800.5);
    assert_int_equal(parse_time_ms(g_host, v), 1714564800500LL);
    g_host->v_decref(v);
}

/* The driver descriptor: every type has a schema, read, and the ops its flags promise. */
static void test_descriptor(void **state) {
    (void)state;
    const mle_driver *d = mle_driver_entry();
    assert_string_equal(d->name, "aws");
    size_t n = 0;
    for (const mle_resource_type *const *t = d->types; *t; t++, n++) {
        assert_non_null((*t)->read);
        assert_true((*t)->n_attrs > 0);
        if (!((*t)->flags & MLE_RT_DATA_SOURCE)) {
            assert_non_null((*t)->create);
            assert_non_null((*t)->del);
            assert_non_null((*t)->poll);
            assert_non_null((*t)->adopt);
            assert_non_null((*t)->import);
        }
        for (size_t i = 0; i < (*t)->n_attrs; i++)
            assert_non_null((*t)->attrs[i].description);
    }
    assert_int_equal(n, 20);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/mle-aws-unit-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    g_log = mle_logger_new(stderr, MLE_LOG_WARN);
    g_http = mle_http_client_new(g_log);
    mle_host_services svc = {.logger = g_log, .http = g_http};
    g_host = mle_host_new(&svc, "aws");
    sts_start();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_env_credentials, setup),
        cmocka_unit_test_setup(test_env_beats_web_identity_and_profile, setup),
        cmocka_unit_test_setup(test_web_identity, setup),
        cmocka_unit_test_setup(test_refresh_before_expiry, setup),
        cmocka_unit_test_setup(test_profile_static_and_precedence, setup),
        cmocka_unit_test_setup(test_profile_assume_role, setup),
        cmocka_unit_test_setup(test_nothing_found_lists_what_was_tried, setup),
        cmocka_unit_test_setup(test_profile_role_without_source, setup),
        cmocka_unit_test_setup(test_ini, setup),
        cmocka_unit_test_setup(test_error_parsing, setup),
        cmocka_unit_test_setup(test_classification, setup),
        cmocka_unit_test_setup(test_error_object, setup),
        cmocka_unit_test_setup(test_region_resolution, setup),
        cmocka_unit_test_setup(test_endpoint_resolution, setup),
        cmocka_unit_test_setup(test_xml_lists, setup),
        cmocka_unit_test_setup(test_tags, setup),
        cmocka_unit_test_setup(test_documents, setup),
        cmocka_unit_test_setup(test_poll_tokens, setup),
        cmocka_unit_test_setup(test_time_parsing, setup),
        cmocka_unit_test_setup(test_descriptor, setup),
    };
    int failed = cmocka_run_group_tests_name("aws_driver", tests, NULL, NULL);
    sts_stop();
    mle_host_free(g_host);
    mle_http_client_free(g_http);
    mle_logger_free(g_log);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_tmp);
    return failed ? 1 : 0;
}
