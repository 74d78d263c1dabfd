/*
 * test_http.c — unit tests of core/http.c against a real HTTP(S) server on loopback
 * (tests/unit/http_peer.py, started here with python3): methods, bodies and headers both
 * ways, 4xx as responses, connection refused and timeouts as MLE_E_TRANSIENT, connection
 * reuse, many threads at once, the redacted DEBUG trace, and TLS with an in-memory CA and a
 * client certificate (certificates generated here with OpenSSL).
 *
 * A peer that cannot start fails the test loudly; nothing here is ever skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "http.h"
#include "log.h"

/* ------------------------------------------------------------------------------------
 * The peer process.
 * ------------------------------------------------------------------------------------ */

typedef struct peer {
    pid_t pid;
    int stdin_fd; /* closing it ends the peer */
    int port;
} peer;

static char *peer_script(void)
{
    const char *src = getenv("MLE_SOURCE_DIR");
    char *path = NULL;
    if (src && *src) {
        if (asprintf(&path, "%s/tests/unit/http_peer.py", src) < 0)
            return NULL;
        return path;
    }
    /* Outside meson test: next to this source file. */
    const char *me = __FILE__;
    const char *slash = strrchr(me, '/');
    if (asprintf(&path, "%.*s/http_peer.py", slash ? (int)(slash - me) : 1,
                 slash ? me : ".") < 0)
        return NULL;
    return path;
}

/* Start http_peer.py with extra arguments (NULL-terminated); fails the test if it does not
 * print its port within 15 s. */
static peer peer_start(const char *const *extra)
{
    char *script = peer_script();
    if (!script || access(script, R_OK) != 0)
        fail_msg("http peer: cannot read %s (set MLE_SOURCE_DIR to the source tree)",
                 script ? script : "(null)");
    int out[2], in[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(in), 0);
    const char *argv[16] = {"python3", script};
    int argc = 2;
    for (; extra && *extra && argc < 15; extra++)
        argv[argc++] = *extra;
    argv[argc] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execvp("python3", (char *const *)argv);
        fprintf(stderr, "http peer: cannot exec python3: %s\n", strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    free(script);
    char line[32] = "";
    size_t n = 0;
    struct pollfd pfd = {.fd = out[0], .events = POLLIN};
    while (n < sizeof line - 1 && !strchr(line, '\n')) {
        if (poll(&pfd, 1, 15000) <= 0)
            break;
        ssize_t r = read(out[0], line + n, sizeof line - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        line[n] = '\0';
    }
    close(out[0]);
    int port = atoi(line);
    if (port <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("http peer (python3 tests/unit/http_peer.py) did not start: it printed "
                 "\"%s\"; is python3 installed?", line);
    }
    return (peer){pid, in[1], port};
}

static void peer_stop(peer *p)
{
    if (p->pid <= 0)
        return;
    close(p->stdin_fd);
    kill(p->pid, SIGTERM);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

/* ------------------------------------------------------------------------------------
 * A self-signed certificate for 127.0.0.1, written where python can read it.
 * ------------------------------------------------------------------------------------ */

typedef struct cert_files {
    char cert_path[128], key_path[128];
    char *cert_pem, *key_pem;
} cert_files;

typedef struct tls_files {
    char dir[64];
    cert_files good;  /* names 127.0.0.1 and localhost */
    cert_files wrong; /* names only other.example */
} tls_files;

static char *bio_string(BIO *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

static void add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A self-signed P-256 certificate (its own CA) for the given subjectAltName, written to
 * <dir>/<stem>.cert.pem and <dir>/<stem>.key.pem. */
static void make_cert(const char *dir, const char *stem, const char *san, cert_files *out)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)stem, -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, NID_key_usage, "critical,digitalSignature,keyCertSign");
    add_ext(x, NID_subject_alt_name, san);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);

    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    out->cert_pem = bio_string(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    out->key_pem = bio_string(b);
    X509_free(x);
    EVP_PKEY_free(key);
    snprintf(out->cert_path, sizeof out->cert_path, "%s/%s.cert.pem", dir, stem);
    snprintf(out->key_path, sizeof out->key_path, "%s/%s.key.pem", dir, stem);
    write_file(out->cert_path, out->cert_pem);
    write_file(out->key_path, out->key_pem);
}

static void make_certs(tls_files *t)
{
    strcpy(t->dir, "/tmp/mle-http-test-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    make_cert(t->dir, "good", "IP:127.0.0.1,DNS:localhost", &t->good);
    make_cert(t->dir, "wrong", "DNS:other.example", &t->wrong);
}

static void remove_cert(cert_files *c)
{
    if (c->cert_path[0])
        unlink(c->cert_path);
    if (c->key_path[0])
        unlink(c->key_path);
    free(c->cert_pem);
    free(c->key_pem);
}

static void remove_certs(tls_files *t)
{
    if (!t->dir[0])
        return;
    remove_cert(&t->good);
    remove_cert(&t->wrong);
    rmdir(t->dir);
}

/* ------------------------------------------------------------------------------------
 * Fixture: one plain peer, one HTTPS peer, one mutual-TLS peer, a client and its log.
 * ------------------------------------------------------------------------------------ */

typedef struct fixture {
    peer plain, tls, mtls, wrongname;
    tls_files cert;
    FILE *logf;
    mle_logger *lg;
    mle_http_client *c;
} fixture;

static int group_setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    *state = fx; /* before anything can fail, so the teardown sees what was started */
    make_certs(&fx->cert);
    const cert_files *good = &fx->cert.good, *wrong = &fx->cert.wrong;
    fx->plain = peer_start(NULL);
    const char *tls_args[] = {"--tls", good->cert_path, good->key_path, NULL};
    fx->tls = peer_start(tls_args);
    const char *mtls_args[] = {"--tls", good->cert_path, good->key_path, "--client-ca",
                               good->cert_path, NULL};
    fx->mtls = peer_start(mtls_args);
    const char *wrong_args[] = {"--tls", wrong->cert_path, wrong->key_path, NULL};
    fx->wrongname = peer_start(wrong_args);
    fx->logf = tmpfile();
    fx->lg = mle_logger_new(fx->logf, MLE_LOG_DEBUG);
    fx->c = mle_http_client_new(fx->lg);
    return fx->c ? 0 : -1;
}

static int group_teardown(void **state)
{
    fixture *fx = *state;
    if (!fx)
        return 0;
    mle_http_client_free(fx->c);
    mle_logger_free(fx->lg);
    if (fx->logf)
        fclose(fx->logf);
    peer_stop(&fx->plain);
    peer_stop(&fx->tls);
    peer_stop(&fx->mtls);
    peer_stop(&fx->wrongname);
    remove_certs(&fx->cert);
    free(fx);
    return 0;
}

static char *url_of(const peer *p, int tls, const char *path)
{
    char *u = NULL;
    assert_true(asprintf(&u, "%s://127.0.0.1:%d%s", tls ? "https" : "http", p->port, path) > 0);
    return u;
}

/* Run a request that must get a response; returns it (caller frees). */
static mle_http_response *must_do(fixture *fx, const mle_http_request *req)
{
    mle_http_response *resp = NULL;
    mle_error *err = NULL;
    if (mle_http_do(fx->c, req, &resp, &err) != 0)
        fail_msg("%s %s failed: %s", req->method, req->url, err ? err->message : "?");
    assert_non_null(resp);
    return resp;
}

static json_t *echo_of(const mle_http_response *resp)
{
    json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
    if (!j)
        fail_msg("peer answered non-JSON: %s", resp->body);
    return j;
}

static const char *echoed_header(json_t *echo, const char *name)
{
    return json_string_value(json_object_get(json_object_get(echo, "headers"), name));
}

/* ------------------------------------------------------------------------------------
 * Tests.
 * ------------------------------------------------------------------------------------ */

static void test_get_with_headers(void **state)
{
    fixture *fx = *state;
    char *url = url_of(&fx->plain, 0, "/echo/get?Action=DescribeVpcs");
    mle_http_header hdrs[] = {{"X-Custom", "value 1"}, {"X-Empty", ""},
                              {"Accept", "application/json"}};
    mle_http_request req = {.struct_size = sizeof req, .method = "GET", .url = url,
                            .headers = hdrs, .n_headers = 3};
    mle_http_response *resp = must_do(fx, &req);
    assert_int_equal(resp->status, 200);
    assert_int_equal(resp->body[resp->body_len], '\0');
    json_t *echo = echo_of(resp);
    assert_string_equal(json_string_value(json_object_get(echo, "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(echo, "path")),
                        "/echo/get?Action=DescribeVpcs");
    assert_string_equal(echoed_header(echo, "x-custom"), "value 1");
    assert_string_equal(echoed_header(echo, "x-empty"), "");
    assert_string_equal(echoed_header(echo, "accept"), "application/json");
    assert_non_null(strstr(echoed_header(echo, "user-agent"), "mlengine/"));
    json_decref(echo);

    /* Response header names arrive lower-cased; repeated headers are all kept. */
    assert_string_equal(mle_http_header_get(resp, "X-MIXED-CASE"), "Yes");
    int multi = 0, mixed_seen = 0;
    for (size_t i = 0; i < resp->n_headers; i++) {
        for (const char *p = resp->headers[i].name; *p; p++)
            assert_false(*p >= 'A' && *p <= 'Z');
        if (strcmp(resp->headers[i].name, "x-multi") == 0)
            multi++;
        if (strcmp(resp->headers[i].name, "x-mixed-case") == 0)
            mixed_seen = 1;
    }
    assert_int_equal(multi, 2);
    assert_true(mixed_seen);
    assert_string_equal(mle_http_header_get(resp, "content-type"), "application/json");
    assert_null(mle_http_header_get(resp, "x-absent"));
    mle_http_response_free(resp);
    free(url);
}

static void test_post_put_delete_head(void **state)
{
    fixture *fx = *state;
    char *url = url_of(&fx->plain, 0, "/echo/x");
    const char *body = "Action=DescribeVpcs&Version=2016-11-15";
    mle_http_request req = {.struct_size = sizeof req, .method = "POST", .url = url,
                            .body = body, .body_len = strlen(body)};
    mle_http_response *resp = must_do(fx, &req);
    json_t *echo = echo_of(resp);
    assert_string_equal(json_string_value(json_object_get(echo, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(echo, "body")), body);
    /* curl added neither a Content-Type nor an Expect header on its own. */
    assert_null(echoed_header(echo, "content-type"));
    assert_null(echoed_header(echo, "expect"));
    json_decref(echo);
    mle_http_response_free(resp);

    /* A large body with our Content-Type, no 100-continue round trip. */
    size_t big_len = 200000;
    char *big = malloc(big_len + 1);
    memset(big, 'b', big_len);
    big[big_len] = '\0';
    mle_http_header ct[] = {{"Content-Type", "application/octet-stream"}};
    req = (mle_http_request){.struct_size = sizeof req, .method = "PUT", .url = url,
                             .headers = ct, .n_headers = 1, .body = big, .body_len = big_len};
    resp = must_do(fx, &req);
    echo = echo_of(resp);
    assert_string_equal(json_string_value(json_object_get(echo, "method")), "PUT");
    assert_string_equal(json_string_value(json_object_get(echo, "body")), big);
    assert_string_equal(echoed_header(echo, "content-type"), "application/octet-stream");
    json_decref(echo);
    mle_http_response_free(resp);
    free(big);

    req = (mle_http_request){.struct_size = sizeof req, .method = "POST", .url = url};
    resp = must_do(fx, &req); /* POST with no body: Content-Length 0 */
    echo = echo_of(resp);
    assert_string_equal(echoed_header(echo, "content-length"), "0");
    json_decref(echo);
    mle_http_response_free(resp);

    req = (mle_http_request){.struct_size = sizeof req, .method = "DELETE", .url = url};
    resp = must_do(fx, &req);
    echo = echo_of(resp);
    assert_string_equal(json_string_value(json_object_get(echo, "method")), "DELETE");
    json_decref(echo);
    mle_http_response_free(resp);

    req = (mle_http_request){.struct_size = sizeof req, .method = "HEAD", .url = url};
    resp = must_do(fx, &req);
    assert_int_equal(resp->status, 200);
    assert_int_equal(resp->body_len, 0);
    assert_string_equal(resp->body, "");
    mle_http_response_free(resp);
    free(url);
}

static void test_error_statuses_are_responses(void **state)
{
    fixture *fx = *state;
    const int codes[] = {404, 400, 403, 409, 500, 503};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char path[32];
        snprintf(path, sizeof path, "/status/%d", codes[i]);
        char *url = url_of(&fx->plain, 0, path);
        mle_http_request req = {.struct_size = sizeof req, .method = "GET", .url = url};
        mle_http_response *resp = must_do(fx, &req);
        assert_int_equal(resp->status, codes[i]);
        char expect[32];
        snprintf(expect, sizeof expect, "status %d", codes[i]);
        assert_string_equal(resp->body, expect);
        mle_http_response_free(resp);
        free(url);
    }
}

static void test_big_body(void **state)
{
    fixture *fx = *state;
    char *url = url_of(&fx->plain, 0, "/big?n=3000000");
    mle_http_request req = {.struct_size = sizeof req, .method = "GET", .url = url};
    mle_http_response *resp = must_do(fx, &req);
    assert_int_equal(resp->body_len, 3000000);
    assert_int_equal(resp->body[0], 'x');
    assert_int_equal(resp->body[2999999], 'x');
    assert_int_equal(resp->body[3000000], '\0');
    mle_http_response_free(resp);
    free(url);
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s); /* nobody listens there now */
    return ntohs(a.sin_port);
}

static void test_connection_refused_is_transient(void **state)
{
    fixture *fx = *state;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/nothing", free_port());
    mle_http_request req = {.struct_size = sizeof req, .method = "GET", .url = url};
    mle_http_response *resp = NULL;
    mle_error *err = NULL;
    assert_int_equal(mle_http_do(fx->c, &req, &resp, &err), -1);
    assert_null(resp);
    assert_non_null(err);
    assert_int_equal(err->code, MLE_E_TRANSIENT);
    assert_true(mle_error_retryable(err));
    assert_non_null(strstr(err->message, url)); /* the URL */
    assert_non_null(strstr(err->message, "onnect")); /* curl's reason */
    mle_error_free(err);
}

static void test_timeout_is_transient(void **state)
{
    fixture *fx = *state;
    char *url = url_of(&fx->plain, 0, "/slow?ms=3000");
    mle_http_request req = {.struct_size = sizeof req, .method = "GET", .url = url,
                            .timeout_ms = 300};
    mle_http_response *resp = NULL;
    mle_error *err = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(mle_http_do(fx->c, &req, &resp, &err), -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms < 2500);
    assert_int_equal(err->code, MLE_E_TRANSIENT);
    assert_non_null(strstr(err->message, "timed out"));
    mle_error_free(err);
    free(url);
}

static void test_invalid_requests(void **state)
{
    fixture *fx = *state;
    char *url = url_of(&fx->plain, 0, "/echo");
    mle_http_response *resp = NULL;
    mle_error *err = NULL;

    mle_http_header bad[] = {{"X-Injected", "a\r\nX-Evil: 1"}};
    mle_http_request req = {.struct_size = sizeof req, .method = "GET", .url = url,
                            .headers = bad, .n_headers = 1};
    assert_int_equal(mle_http_do(fx->c, &req, &resp, &err), -1);
    assert_int_equal(err->code, MLE_E_INVALID);
    mle_error_free(err);

    req = (mle_http_request){.struct_size = 8, .method = "GET", .url = url};
    assert_int_equal(mle_http_do(fx->c, &req, &resp, &err), -1);
    assert_int_equal(err->code, MLE_E_INVALID);
    mle_error_free(err);

    req = (mle_http_request){.struct_size = sizeof req, .method = "get me", .url = url};
    assert_int_equal(mle_http_do(fx->c, &req, &resp, &err), -1);
    assert_int_equal(err->code, MLE_E_INVALID);
    mle_error_free(err);

    req = (mle_http_request){.struct_size = sizeof req, .method = "GET",
                             .url = "file:///etc/passwd"};
    assert_int_equal(mle_http_do(fx->c, &req, &resp, &err), -1);
    assert_int_equal(err->code, MLE_E_INVALID);
    assert_null(resp);
    mle_error_free(err);
    free(url);

    /* A request struct from an older driver (shorter struct_size) still works. */
    url = url_of(&fx->plain, 0, "/echo/old");
    req = (mle_http_request){.struct_size = offsetof(mle_http_request, timeout_ms),
                             .method = "GET", .url = url,
                             .ca_pem = "garbage beyond the caller's struct_size"};
    resp = must_do(fx, &req);
    assert_int_equal(resp->status, 200);
    mle_http_response_free(resp);
    free(url);
}

static void test_connection_reuse(void **state)
{
    fixture *fx = *state;
    char *url = url_of(&fx->plain, 0, "/echo/reuse");
    mle_http_request req = {.struct_size = sizeof req, .method = "GET", .url = url};
    json_int_t ports[3];
    for (int i = 0; i < 3; i++) {
        mle_http_response *resp = must_do(fx, &req);
        json_t *echo = echo_of(resp);
        ports[i] = json_integer_value(json_object_get(echo, "client_port"));
        json_decref(echo);
        mle_http_response_free(resp);
    }
    /* Same client port: the same TCP connection carried all three requests. */
    assert_true(ports[0] > 0);
    assert_true(ports[0] == ports[1] && ports[1] == ports[2]);
    free(url);
}

#define N_THREADS 8
#define N_REQS 25

typedef struct worker {
    fixture *fx;
    int id;
    int ok;
} worker;

static void *http_worker(void *p)
{
    worker *w = p;
    char *url = url_of(&w->fx->plain, 0, "/echo/threads");
    for (int i = 0; i < N_REQS; i++) {
        char body[64];
        snprintf(body, sizeof body, "thread=%d&req=%d", w->id, i);
        mle_http_request req = {.struct_size = sizeof req, .method = "POST", .url = url,
                                .body = body, .body_len = strlen(body)};
        mle_http_response *resp = NULL;
        if (mle_http_do(w->fx->c, &req, &resp, NULL) != 0)
            continue;
        json_t *echo = json_loadb(resp->body, resp->body_len, 0, NULL);
        const char *got = json_string_value(json_object_get(echo, "body"));
        if (resp->status == 200 && got && strcmp(got, body) == 0)
            w->ok++;
        json_decref(echo);
        mle_http_response_free(resp);
    }
    free(url);
    return NULL;
}

static void test_many_threads(void **state)
{
    fixture *fx = *state;
    pthread_t th[N_THREADS];
    worker w[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (worker){fx, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, http_worker, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].ok, N_REQS);
    }
}

static char *log_text(fixture *fx)
{
    fflush(fx->logf);
    long n = ftell(fx->logf);
    char *s = calloc(1, (size_t)n + 1);
    rewind(fx->logf);
    assert_int_equal(fread(s, 1, (size_t)n, fx->logf), (size_t)n);
    fseek(fx->logf, 0, SEEK_END);
    return s;
}

static void test_debug_trace_is_redacted(void **state)
{
    fixture *fx = *state;
    mle_logger_add_secret(fx->lg, "db-password-9876");
    char *url = url_of(&fx->plain, 0,
                       "/echo/db-password-9876?X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE"
                       "&Action=DescribeVpcs&X-Amz-Signature=abcdef0123");
    mle_http_header hdrs[] = {
        {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261124/us-east-1/ec2/"
                          "aws4_request, SignedHeaders=host, Signature=5d672d79c15b13162d9279b0"},
        {"X-Amz-Security-Token", "FwoGZXIvYXdzHEADERTOKEN"},
    };
    mle_http_request req = {.struct_size = sizeof req, .method = "GET", .url = url,
                            .headers = hdrs, .n_headers = 2};
    mle_http_response *resp = must_do(fx, &req);
    json_t *echo = echo_of(resp); /* the server did get the real values */
    assert_string_equal(echoed_header(echo, "x-amz-security-token"), "FwoGZXIvYXdzHEADERTOKEN");
    json_decref(echo);
    mle_http_response_free(resp);

    char *log = log_text(fx);
    char expect[256];
    snprintf(expect, sizeof expect,
             "DEBUG [http] GET http://127.0.0.1:%d/echo/(sensitive)?X-Amz-Security-Token="
             "(sensitive)&Action=DescribeVpcs&X-Amz-Signature=(sensitive) -> 200 (",
             fx->plain.port);
    if (!strstr(log, expect))
        fail_msg("trace line not found; log was:\n%s", log);
    assert_null(strstr(log, "db-password-9876"));
    assert_null(strstr(log, "FwoGZXIvYXdz"));
    assert_null(strstr(log, "AWS4-HMAC"));
    assert_null(strstr(log, "AKIDEXAMPLE"));
    assert_null(strstr(log, "abcdef0123"));
    free(log);
    free(url);
}

static void test_tls_needs_the_ca(void **state)
{
    fixture *fx = *state;
    char *url = url_of(&fx->tls, 1, "/echo/tls");
    mle_http_request req = {.struct_size = sizeof req, .method = "GET", .url = url};
    mle_http_response *resp = NULL;
    mle_error *err = NULL;
    /* Not in the system store: verification must refuse it. */
    assert_int_equal(mle_http_do(fx->c, &req, &resp, &err), -1);
    assert_null(resp);
    assert_int_equal(err->code, MLE_E_INVALID);
    assert_non_null(err->hint);
    assert_non_null(strstr(err->hint, "ca_pem"));
    mle_error_free(err);

    req.ca_pem = fx->cert.good.cert_pem;
    resp = must_do(fx, &req);
    assert_int_equal(resp->status, 200);
    json_t *echo = echo_of(resp);
    assert_string_equal(json_string_value(json_object_get(echo, "path")), "/echo/tls");
    json_decref(echo);
    mle_http_response_free(resp);

    /* Trust does not leak from one request to the next on a reused handle. */
    req.ca_pem = NULL;
    assert_int_equal(mle_http_do(fx->c, &req, &resp, &err), -1);
    assert_int_equal(err->code, MLE_E_INVALID);
    mle_error_free(err);
    free(url);
}

static void test_tls_hostname_is_verified(void **state)
{
    fixture *fx = *state;
    /* A trusted certificate for another name: host verification must refuse it. */
    char *url = url_of(&fx->wrongname, 1, "/echo/name");
    mle_http_request req = {.struct_size = sizeof req, .method = "GET", .url = url,
                            .ca_pem = fx->cert.wrong.cert_pem};
    mle_http_response *resp = NULL;
    mle_error *err = NULL;
    assert_int_equal(mle_http_do(fx->c, &req, &resp, &err), -1);
    assert_null(resp);
    assert_int_equal(err->code, MLE_E_INVALID);
    mle_error_free(err);
    free(url);

    /* The DNS name in the good certificate works as well as its IP address. */
    assert_true(asprintf(&url, "https://localhost:%d/echo/name", fx->tls.port) > 0);
    req = (mle_http_request){.struct_size = sizeof req, .method = "GET", .url = url,
                             .ca_pem = fx->cert.good.cert_pem};
    if (mle_http_do(fx->c, &req, &resp, &err) != 0)
        fail_msg("https://localhost with the CA failed: %s", err->message);
    assert_int_equal(resp->status, 200);
    mle_http_response_free(resp);
    free(url);
}

static void test_mutual_tls(void **state)
{
    fixture *fx = *state;
    char *url = url_of(&fx->mtls, 1, "/echo/mtls");
    mle_http_request req = {.struct_size = sizeof req, .method = "GET", .url = url,
                            .ca_pem = fx->cert.good.cert_pem};
    mle_http_response *resp = NULL;
    mle_error *err = NULL;
    assert_int_equal(mle_http_do(fx->c, &req, &resp, &err), -1); /* no client certificate */
    assert_null(resp);
    mle_error_free(err);

    req.client_cert_pem = fx->cert.good.cert_pem;
    req.client_key_pem = fx->cert.good.key_pem;
    resp = must_do(fx, &req);
    assert_int_equal(resp->status, 200);
    mle_http_response_free(resp);
    free(url);
}

int main(void)
{
    /* Loopback only: a proxy from the environment must not get in the way. */
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_with_headers),
        cmocka_unit_test(test_post_put_delete_head),
        cmocka_unit_test(test_error_statuses_are_responses),
        cmocka_unit_test(test_big_body),
        cmocka_unit_test(test_connection_refused_is_transient),
        cmocka_unit_test(test_timeout_is_transient),
        cmocka_unit_test(test_invalid_requests),
        cmocka_unit_test(test_connection_reuse),
        cmocka_unit_test(test_many_threads),
        cmocka_unit_test(test_debug_trace_is_redacted),
        cmocka_unit_test(test_tls_needs_the_ca),
        cmocka_unit_test(test_tls_hostname_is_verified),
        cmocka_unit_test(test_mutual_tls),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
