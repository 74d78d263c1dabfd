/*
 * test_host.c — unit tests of core/host.c: every entry of the host table is filled, the
 * adapters reach the right modules, log lines carry the driver name, errors and logs are
 * redacted of registered secrets, url_encode follows RFC 3986, and the op_* setters fill
 * (and replace) the mle_op_result that op->core points at.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host.h"

typedef struct fixture {
    FILE *logf;
    mle_logger *lg;
    mle_host *h;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx->logf = tmpfile();
    fx->lg = mle_logger_new(fx->logf, MLE_LOG_DEBUG);
    mle_host_services svc = {.logger = fx->lg, .http = NULL};
    fx->h = mle_host_new(&svc, "aws");
    *state = fx;
    return fx->h ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    mle_host_free(fx->h);
    mle_logger_free(fx->lg);
    fclose(fx->logf);
    free(fx);
    return 0;
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

static void test_table_is_complete(void **state)
{
    fixture *fx = *state;
    const mle_host *h = fx->h;
    assert_int_equal(h->struct_size, sizeof(mle_host));
    assert_int_equal(h->abi_major, MLE_ABI_MAJOR);
    assert_int_equal(h->abi_minor, MLE_ABI_MINOR);
    assert_non_null(h->core);
    assert_string_equal(mle_host_driver_name(h), "aws");
    /* Everything after `core` is a function pointer, and none may be NULL. */
    typedef void (*fnptr)(void);
    size_t first = offsetof(mle_host, alloc);
    assert_int_equal((sizeof(mle_host) - first) % sizeof(fnptr), 0);
    size_t n = (sizeof(mle_host) - first) / sizeof(fnptr);
    assert_true(n >= 60);
    for (size_t i = 0; i < n; i++) {
        fnptr f;
        memcpy(&f, (const char *)h + first + i * sizeof f, sizeof f);
        if (!f)
            fail_msg("host table entry %zu (byte offset %zu) is NULL", i,
                     first + i * sizeof f);
    }
    assert_true(MLE_HAS_FIELD(h, mle_host, op_error));
}

static void test_alloc_and_strings(void **state)
{
    const mle_host *h = ((fixture *)*state)->h;
    unsigned char *p = h->alloc(h, 64);
    for (int i = 0; i < 64; i++)
        assert_int_equal(p[i], 0);
    h->free(h, p);
    h->free(h, NULL);
    char *s = h->strdup(h, "subnet-1");
    assert_string_equal(s, "subnet-1");
    h->free(h, s);
    assert_null(h->strdup(h, NULL));
    s = h->sprintf(h, "%s/%d", "10.0.0.0", 16);
    assert_string_equal(s, "10.0.0.0/16");
    h->free(h, s);
}

static void test_log_uses_driver_name_and_redacts(void **state)
{
    fixture *fx = *state;
    const mle_host *h = fx->h;
    h->secret_register(h, "AKIAIOSFODNN7EXAMPLE");
    h->log(h, MLE_LOG_INFO, "using key %s for %s", "AKIAIOSFODNN7EXAMPLE", "eu-west-1");
    char *out = log_text(fx);
    assert_non_null(strstr(out, " INFO [aws] using key (sensitive) for eu-west-1\n"));
    assert_null(strstr(out, "AKIAIOSFODNN7EXAMPLE"));
    free(out);

    /* Errors made through the host are redacted too: they outlive the call. */
    mle_error *e = h->error_new(h, MLE_E_AUTH, "key %s was rejected", "AKIAIOSFODNN7EXAMPLE");
    assert_int_equal(h->error_code(e), MLE_E_AUTH);
    assert_string_equal(h->error_message(e), "key (sensitive) was rejected");
    assert_false(h->error_retryable(e));
    h->error_free(e);
}

static void test_error_functions(void **state)
{
    const mle_host *h = ((fixture *)*state)->h;
    mle_error *e = h->error_new(h, MLE_E_PROVIDER, "DescribeVpcs failed");
    h->error_set_provider(e, 400, "InvalidVpcID.NotFound", "The vpc ID does not exist");
    h->error_set_attribute(e, "vpc_id");
    h->error_set_hint(e, "check the ID");
    assert_int_equal(e->http_status, 400);
    assert_string_equal(e->provider_code, "InvalidVpcID.NotFound");
    assert_string_equal(e->attribute, "vpc_id");
    assert_string_equal(e->hint, "check the ID");
    assert_false(h->error_retryable(e));
    h->error_set_retry_after(e, 2000);
    assert_true(h->error_retryable(e));
    h->error_free(e);
    e = h->error_new(h, MLE_E_THROTTLED, "RequestLimitExceeded");
    assert_true(h->error_retryable(e));
    h->error_free(e);
    assert_int_equal(h->error_code(NULL), MLE_OK);
    assert_null(h->error_message(NULL));
}

static void test_values_through_table(void **state)
{
    const mle_host *h = ((fixture *)*state)->h;
    mle_value *o = h->v_object();
    h->v_set(o, "b", h->v_int(2));
    h->v_set(o, "a", h->v_string("x"));
    char *json = h->v_to_json(h, o);
    assert_string_equal(json, "{\"a\":\"x\",\"b\":2}"); /* sorted, compact */
    h->free(h, json);
    mle_error *err = NULL;
    mle_value *back = h->v_parse_json(h, "{\"b\":2,\"a\":\"x\"}", 15, &err);
    assert_true(h->v_equal(o, back));
    h->v_decref(back);
    h->v_decref(o);
    assert_null(h->v_parse_json(h, "{", 1, &err));
    assert_int_equal(h->error_code(err), MLE_E_INVALID);
    h->error_free(err);

    const char *xml = "<R><vpcId>vpc-1</vpcId></R>";
    mle_value *x = h->v_parse_xml(h, xml, strlen(xml), &err);
    assert_string_equal(h->v_str(h->v_get(x, "vpcId")), "vpc-1");
    h->v_decref(x);
    const char *yaml = "a: 1\n---\nb: [true]\n";
    mle_value *y = h->v_parse_yaml(h, yaml, strlen(yaml), &err);
    assert_int_equal(h->v_len(y), 2);
    assert_int_equal(h->v_kind(h->v_at(h->v_get(h->v_at(y, 1), "b"), 0)), MLE_V_BOOL);
    h->v_decref(y);
}

static void test_crypto_through_table(void **state)
{
    const mle_host *h = ((fixture *)*state)->h;
    uint8_t d[32];
    h->sha256("abc", 3, d);
    char *hex = h->hex(h, d, 32);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    h->free(h, hex);
    h->hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, d);
    hex = h->hex(h, d, 32);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    h->free(h, hex);
    char *b = h->base64_encode(h, "foob", 4, 1);
    assert_string_equal(b, "Zm9vYg");
    size_t n = 0;
    uint8_t *raw = h->base64_decode(h, b, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(raw, "foob", 4);
    h->free(h, raw);
    h->free(h, b);
    uint8_t r1[16], r2[16];
    assert_int_equal(h->random_bytes(r1, 16), 0);
    assert_int_equal(h->random_bytes(r2, 16), 0);
    assert_memory_not_equal(r1, r2, 16);
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    mle_error *err = NULL;
    assert_int_equal(h->sign_pem(h, "junk", MLE_SIGN_ES256, "x", 1, &sig, &sig_len, &err), -1);
    assert_int_equal(h->error_code(err), MLE_E_INVALID);
    h->error_free(err);
}

static void test_url_encode(void **state)
{
    const mle_host *h = ((fixture *)*state)->h;
    struct {
        const char *in;
        int keep_slash;
        const char *out;
    } cases[] = {
        {"AZaz09-._~", 0, "AZaz09-._~"},
        {"a b+c", 0, "a%20b%2Bc"},
        {"path/to/key.txt", 1, "path/to/key.txt"},
        {"path/to/key.txt", 0, "path%2Fto%2Fkey.txt"},
        {"k=v&x=*", 0, "k%3Dv%26x%3D%2A"},
        {"caf\xC3\xA9", 0, "caf%C3%A9"},
        {"", 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = h->url_encode(h, cases[i].in, cases[i].keep_slash);
        assert_string_equal(s, cases[i].out);
        h->free(h, s);
    }
}

static void test_clock_and_http_stub(void **state)
{
    const mle_host *h = ((fixture *)*state)->h;
    int64_t now = h->now_unix_ms();
    assert_true(now > 1700000000000LL); /* after 2023 */
    int64_t a = h->monotonic_ms(), b = h->monotonic_ms();
    assert_true(b >= a);

    /* No HTTP client in the services: a clear error, not a crash. */
    mle_http_request req = {.struct_size = sizeof req, .method = "GET", .url = "http://x/"};
    mle_http_response *resp = (mle_http_response *)1;
    mle_error *err = NULL;
    assert_int_not_equal(h->http(h, &req, &resp, &err), 0);
    assert_null(resp);
    assert_int_equal(h->error_code(err), MLE_E_UNSUPPORTED);
    h->error_free(err);
    h->http_response_free(h, NULL);

    mle_http_header hdrs[] = {{"content-type", "text/xml"}, {"x-amzn-requestid", "r-1"}};
    mle_http_response r = {.status = 200, .headers = hdrs, .n_headers = 2};
    assert_string_equal(h->http_header(&r, "Content-Type"), "text/xml");
    assert_string_equal(h->http_header(&r, "X-Amzn-RequestId"), "r-1");
    assert_null(h->http_header(&r, "etag"));
}

static void test_op_results(void **state)
{
    const mle_host *h = ((fixture *)*state)->h;
    mle_op_result res = {0};
    mle_op op = {.struct_size = sizeof op, .kind = MLE_OPK_CREATE, .type = "aws_vpc",
                 .address = "aws_vpc.main", .core = &res};

    assert_int_equal(h->op_in_progress(h, &op, "vpc-1:available", 5000), MLE_OP_IN_PROGRESS);
    assert_true(res.set);
    assert_int_equal(res.status, MLE_OP_IN_PROGRESS);
    assert_string_equal(res.poll_token, "vpc-1:available");
    assert_int_equal(res.poll_after_ms, 5000);

    /* A later call replaces the earlier answer entirely (no leak under ASan). */
    mle_value *attrs = h->v_object();
    h->v_set(attrs, "cidr_block", h->v_string("10.0.0.0/16"));
    char id[] = "vpc-1";
    assert_int_equal(h->op_done(h, &op, id, attrs), MLE_OP_DONE);
    id[0] = 'X'; /* copied */
    assert_int_equal(res.status, MLE_OP_DONE);
    assert_string_equal(res.id, "vpc-1");
    assert_ptr_equal(res.attrs, MLE_J(attrs)); /* stolen, not copied */
    assert_null(res.poll_token);

    mle_error *e = h->error_new(h, MLE_E_THROTTLED, "RequestLimitExceeded");
    assert_int_equal(h->op_error(h, &op, e), MLE_OP_ERROR);
    assert_int_equal(res.status, MLE_OP_ERROR);
    assert_ptr_equal(res.error, e);
    assert_null(res.id);
    assert_null(res.attrs);
    assert_string_equal(res.error->address, "aws_vpc.main");

    assert_int_equal(h->op_not_found(h, &op), MLE_OP_NOT_FOUND);
    assert_int_equal(res.status, MLE_OP_NOT_FOUND);
    assert_null(res.error);

    assert_int_equal(h->op_error(h, &op, NULL), MLE_OP_ERROR);
    assert_int_equal(res.error->code, MLE_E_INTERNAL);
    assert_non_null(strstr(res.error->message, "aws"));

    assert_int_equal(h->op_done(h, &op, NULL, NULL), MLE_OP_DONE);
    assert_null(res.id);
    assert_true(json_is_object(res.attrs));
    mle_op_result_clear(&res);
    assert_false(res.set);
    assert_null(res.attrs);

    /* Without a result slot the setters still take ownership and answer the status. */
    op.core = NULL;
    assert_int_equal(h->op_done(h, &op, "x", h->v_object()), MLE_OP_DONE);
    assert_int_equal(h->op_error(h, &op, h->error_new(h, MLE_E_IO, "x")), MLE_OP_ERROR);
    assert_int_equal(h->op_in_progress(h, &op, "t", 1), MLE_OP_IN_PROGRESS);
    mle_op_result_clear(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_table_is_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_and_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_uses_driver_name_and_redacts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_functions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_values_through_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crypto_through_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_encode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock_and_http_stub, setup, teardown),
        cmocka_unit_test_setup_teardown(test_op_results, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
