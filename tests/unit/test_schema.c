/* test_schema.c — validation with "did you mean", defaults, redaction, JSON Schema export. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "schema.h"

static const mle_attr_schema attrs[] = {
    {"cidr_block", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The CIDR."},
    {"enable_dns", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "true", "DNS support."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL, "Tags."},
    {"ports", MLE_T_LIST, MLE_T_INT, MLE_A_OPTIONAL, NULL, "Ports."},
    {"password", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_SENSITIVE, NULL, "Secret."},
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The ID."},
};

static const mle_resource_type vpc = {
    .struct_size = sizeof(mle_resource_type),
    .name = "t_vpc",
    .attrs = attrs,
    .n_attrs = sizeof(attrs) / sizeof(attrs[0]),
};

static int validate_text(const char *json, mle_error **err)
{
    json_t *c = json_loads(json, 0, NULL);
    assert_non_null(c);
    int rc = mle_schema_validate(&vpc, c, err);
    json_decref(c);
    return rc;
}

static void expect_error(const char *json, const char *needle)
{
    mle_error *err = NULL;
    assert_int_equal(validate_text(json, &err), -1);
    assert_non_null(err);
    if (!strstr(err->message, needle))
        fail_msg("\"%s\" not in \"%s\"", needle, err->message);
    mle_error_free(err);
}

static void test_valid_configs(void **s)
{
    (void)s;
    assert_int_equal(validate_text("{\"cidr_block\":\"10.0.0.0/16\"}", NULL), 0);
    assert_int_equal(validate_text("{\"cidr_block\":\"x\",\"tags\":{\"a\":\"b\"},\"ports\":[1,2]}",
                                   NULL),
                     0);
    /* references are checked when resolved */
    assert_int_equal(
        validate_text("{\"cidr_block\":{\"$ref\":{\"address\":\"a.b\",\"path\":\"c\"}}}", NULL),
        0);
    assert_int_equal(validate_text("{\"cidr_block\":\"x\",\"password\":{\"$sensitive\":\"p\"}}",
                                   NULL),
                     0);
}

static void test_errors(void **s)
{
    (void)s;
    expect_error("{}", "requires attribute \"cidr_block\"");
    expect_error("{\"cidr_block\":\"x\",\"cidr_blok\":1}", "did you mean \"cidr_block\"");
    expect_error("{\"cidr_block\":\"x\",\"zzzzzzzzzz\":1}", "has no attribute \"zzzzzzzzzz\"");
    expect_error("{\"cidr_block\":\"x\",\"id\":\"i\"}", "computed by the provider");
    expect_error("{\"cidr_block\":5}", "must be string");
    expect_error("{\"cidr_block\":\"x\",\"ports\":[1,\"2\"]}", "must be list(int)");
    expect_error("{\"cidr_block\":\"x\",\"tags\":{\"a\":1}}", "must be map(string)");
    mle_error *err = NULL;
    validate_text("{\"cidr_block\":\"x\",\"cidr_blok\":1}", &err);
    assert_string_equal(err->attribute, "cidr_blok");
    mle_error_free(err);
}

static void test_defaults_and_redaction(void **s)
{
    (void)s;
    json_t *c = json_pack("{s:s,s:s}", "cidr_block", "x", "password", "hunter22");
    mle_schema_apply_defaults(&vpc, c);
    assert_true(json_is_true(json_object_get(c, "enable_dns")));
    json_t *r = mle_schema_redact(&vpc, c);
    assert_string_equal(json_string_value(json_object_get(r, "password")), "(sensitive)");
    assert_string_equal(json_string_value(json_object_get(r, "cidr_block")), "x");
    assert_string_equal(json_string_value(json_object_get(c, "password")), "hunter22");
    json_decref(r);
    json_decref(c);
}

static void test_export(void **s)
{
    (void)s;
    const mle_resource_type *types[] = {&vpc, NULL};
    const char *clouds[] = {"aws", NULL};
    mle_driver d = {.struct_size = sizeof(d), .name = "t", .version = "1.2.3",
                    .description = "test", .clouds = clouds, .types = types};
    json_t *j = mle_schema_export(&d);
    json_t *props = json_object_get(json_object_get(json_object_get(j, "$defs"), "t_vpc"),
                                    "properties");
    assert_string_equal(json_string_value(json_object_get(json_object_get(props, "ports"),
                                                          "type")),
                        "array");
    assert_true(json_is_true(json_object_get(json_object_get(props, "password"), "writeOnly")));
    assert_true(json_is_true(json_object_get(json_object_get(props, "id"), "readOnly")));
    assert_true(json_is_true(
        json_object_get(json_object_get(props, "cidr_block"), "x-mlengine-force-new")));
    json_t *req = json_object_get(json_object_get(json_object_get(j, "$defs"), "t_vpc"),
                                  "required");
    assert_int_equal(json_array_size(req), 1);
    json_decref(j);
}

static void test_levenshtein(void **s)
{
    (void)s;
    assert_int_equal(mle_levenshtein("aws_vpc", "aws_vpc"), 0);
    assert_int_equal(mle_levenshtein("aws_vcp", "aws_vpc"), 2);
    assert_int_equal(mle_levenshtein("", "abc"), 3);
    assert_int_equal(mle_levenshtein("kitten", "sitting"), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_configs),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_defaults_and_redaction),
        cmocka_unit_test(test_export),
        cmocka_unit_test(test_levenshtein),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
