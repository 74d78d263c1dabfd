/*
 * test_error.c — unit tests of core/error.c: creation, decoration, the retryable rule,
 * code names and the one-line rendering.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"

static void test_new_formats_message(void **state)
{
    mle_error *e = mle_error_new(MLE_E_INVALID, "cidr %s is not valid (%d)", "10.0.0.0/33", 33);
    assert_int_equal(e->code, MLE_E_INVALID);
    assert_string_equal(e->message, "cidr 10.0.0.0/33 is not valid (33)");
    assert_null(e->hint);
    assert_null(e->provider_code);
    assert_int_equal(e->http_status, 0);
    mle_error_free(e);
    mle_error_free(NULL);
}

static void test_fail_sets_out_and_returns_minus_one(void **state)
{
    mle_error *e = NULL;
    assert_int_equal(mle_fail(&e, MLE_E_NOT_FOUND, "no vpc %s", "vpc-1"), -1);
    assert_non_null(e);
    assert_int_equal(e->code, MLE_E_NOT_FOUND);
    assert_string_equal(e->message, "no vpc vpc-1");
    mle_error_free(e);
    assert_int_equal(mle_fail(NULL, MLE_E_INTERNAL, "ignored"), -1);
}

static void test_prefix_and_setters(void **state)
{
    mle_error *e = mle_error_new(MLE_E_IO, "file not found");
    mle_error_prefix(e, "loading %s: ", "aws.so");
    assert_string_equal(e->message, "loading aws.so: file not found");
    mle_error_set_hint(e, "check --driver-path");
    mle_error_set_hint(e, "check MLE_DRIVER_PATH");
    assert_string_equal(e->hint, "check MLE_DRIVER_PATH");
    mle_error_set_attribute(e, "cidr_block");
    mle_error_set_address(e, "aws_vpc.main");
    mle_error_set_provider(e, 400, "InvalidParameterValue", "bad cidr");
    assert_int_equal(e->http_status, 400);
    assert_string_equal(e->provider_code, "InvalidParameterValue");
    assert_string_equal(e->provider_message, "bad cidr");
    mle_error_set_provider(e, 404, NULL, NULL);
    assert_null(e->provider_code);
    assert_null(e->provider_message);
    mle_error_set_hint(e, NULL);
    assert_null(e->hint);
    mle_error_free(e);
}

static void test_retryable(void **state)
{
    mle_error *e = mle_error_new(MLE_E_PROVIDER, "x");
    assert_false(mle_error_retryable(e));
    mle_error_set_retry_after(e, 1500);
    assert_true(mle_error_retryable(e));
    assert_int_equal(e->retry_after_ms, 1500);
    mle_error_free(e);
    e = mle_error_new(MLE_E_THROTTLED, "slow down");
    assert_true(mle_error_retryable(e));
    mle_error_free(e);
    e = mle_error_new(MLE_E_TRANSIENT, "reset");
    assert_true(mle_error_retryable(e));
    mle_error_free(e);
    e = mle_error_new(MLE_E_AUTH, "denied");
    assert_false(mle_error_retryable(e));
    mle_error_free(e);
    assert_false(mle_error_retryable(NULL));
}

static void test_code_names(void **state)
{
    assert_string_equal(mle_error_code_name(MLE_OK), "ok");
    assert_string_equal(mle_error_code_name(MLE_E_INVALID), "invalid");
    assert_string_equal(mle_error_code_name(MLE_E_THROTTLED), "throttled");
    assert_string_equal(mle_error_code_name(MLE_E_NOT_FOUND), "not_found");
    assert_string_equal(mle_error_code_name(MLE_E_UNSUPPORTED), "unsupported");
    assert_string_equal(mle_error_code_name((mle_error_code)999), "unknown");
}

static void test_format(void **state)
{
    mle_error *e = mle_error_new(MLE_E_PROVIDER, "create failed");
    char *s = mle_error_format(e);
    assert_string_equal(s, "create failed");
    free(s);
    mle_error_set_address(e, "aws_vpc.main");
    mle_error_set_provider(e, 400, "InvalidVpcID.NotFound", "The vpc ID 'vpc-1' does not exist");
    mle_error_set_attribute(e, "vpc_id");
    s = mle_error_format(e);
    assert_string_equal(s, "[aws_vpc.main] create failed (provider: InvalidVpcID.NotFound: "
                           "The vpc ID 'vpc-1' does not exist, HTTP 400) attribute: vpc_id");
    free(s);
    mle_error_set_hint(e, "check the id");
    s = mle_error_format(e);
    assert_non_null(strstr(s, "attribute: vpc_id\n  hint: check the id"));
    free(s);
    mle_error_set_provider(e, 503, NULL, NULL);
    mle_error_set_hint(e, NULL);
    mle_error_set_attribute(e, NULL);
    s = mle_error_format(e);
    assert_string_equal(s, "[aws_vpc.main] create failed (provider: HTTP 503)");
    free(s);
    mle_error_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_formats_message),
        cmocka_unit_test(test_fail_sets_out_and_returns_minus_one),
        cmocka_unit_test(test_prefix_and_setters),
        cmocka_unit_test(test_retryable),
        cmocka_unit_test(test_code_names),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
