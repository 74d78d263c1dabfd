/*
 * test_value.c — unit tests of core/value.c: the host's v_* functions over jansson and the
 * core's JSON helpers (parse with located errors, canonical text, path lookup).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "host.h"
#include "value.h"

static void test_scalars(void **state)
{
    mle_value *v = mle_v_null();
    assert_int_equal(mle_v_kind(v), MLE_V_NULL);
    mle_v_decref(v);
    assert_int_equal(mle_v_kind(NULL), MLE_V_NULL);

    v = mle_v_bool(7);
    assert_int_equal(mle_v_kind(v), MLE_V_BOOL);
    assert_int_equal(mle_v_bool_of(v), 1);
    mle_v_decref(v);
    v = mle_v_bool(0);
    assert_int_equal(mle_v_bool_of(v), 0);
    mle_v_decref(v);

    v = mle_v_int(INT64_MAX);
    assert_int_equal(mle_v_kind(v), MLE_V_INT);
    assert_true(mle_v_int_of(v) == INT64_MAX);
    assert_true(mle_v_real_of(v) == (double)INT64_MAX);
    mle_v_decref(v);

    v = mle_v_real(-2.75);
    assert_int_equal(mle_v_kind(v), MLE_V_REAL);
    assert_true(mle_v_int_of(v) == -2); /* truncated */
    assert_true(mle_v_real_of(v) == -2.75);
    mle_v_decref(v);

    v = mle_v_real(1e300 * 1e300); /* inf has no JSON form */
    assert_int_equal(mle_v_kind(v), MLE_V_NULL);
    mle_v_decref(v);
    v = mle_v_real(NAN);
    assert_int_equal(mle_v_kind(v), MLE_V_NULL);
    mle_v_decref(v);

    v = mle_v_real(1e30);
    assert_true(mle_v_int_of(v) == INT64_MAX); /* clamped, not undefined behaviour */
    mle_v_decref(v);

    v = mle_v_string("vpc-0abc");
    assert_int_equal(mle_v_kind(v), MLE_V_STRING);
    assert_string_equal(mle_v_str(v), "vpc-0abc");
    assert_true(mle_v_int_of(v) == 0);
    assert_int_equal(mle_v_bool_of(v), 0);
    mle_v_decref(v);
    v = mle_v_string(NULL);
    assert_int_equal(mle_v_kind(v), MLE_V_NULL);
    assert_null(mle_v_str(v));
    mle_v_decref(v);
}

static void test_strings_with_nul_and_bad_utf8(void **state)
{
    mle_value *v = mle_v_stringn("a\0b", 3);
    assert_non_null(v);
    assert_int_equal(json_string_length(MLE_J(v)), 3);
    assert_memory_equal(json_string_value(MLE_J(v)), "a\0b", 3);
    mle_v_decref(v);

    /* Latin-1 "café" and a lone continuation byte: replaced, never NULL. */
    v = mle_v_string("caf\xe9 \x80!");
    assert_non_null(v);
    assert_string_equal(mle_v_str(v), "caf\xEF\xBF\xBD \xEF\xBF\xBD!");
    mle_v_decref(v);

    /* An overlong encoding of '/' and a UTF-16 surrogate are invalid too. */
    v = mle_v_string("\xC0\xAF|\xED\xA0\x80");
    assert_string_equal(mle_v_str(v), "\xEF\xBF\xBD\xEF\xBF\xBD|\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
    mle_v_decref(v);

    v = mle_v_string("h\xC3\xA9llo \xF0\x9F\x9A\x80"); /* valid: kept as is */
    assert_string_equal(mle_v_str(v), "h\xC3\xA9llo \xF0\x9F\x9A\x80");
    mle_v_decref(v);
}

static void test_containers(void **state)
{
    mle_value *arr = mle_v_array();
    assert_int_equal(mle_v_append(arr, mle_v_int(1)), 0);
    assert_int_equal(mle_v_append(arr, mle_v_string("two")), 0);
    assert_int_equal(mle_v_len(arr), 2);
    assert_true(mle_v_int_of(mle_v_at(arr, 0)) == 1);
    assert_string_equal(mle_v_str(mle_v_at(arr, 1)), "two");
    assert_null(mle_v_at(arr, 2));
    assert_null(mle_v_get(arr, "x"));

    mle_value *obj = mle_v_object();
    assert_int_equal(mle_v_set(obj, "zeta", mle_v_int(1)), 0);
    assert_int_equal(mle_v_set(obj, "alpha", arr), 0); /* steals arr */
    assert_int_equal(mle_v_set(obj, "mid", mle_v_bool(1)), 0);
    assert_int_equal(mle_v_len(obj), 3);
    assert_ptr_equal(mle_v_get(obj, "alpha"), arr);
    assert_null(mle_v_get(obj, "nope"));
    assert_null(mle_v_get(obj, NULL));

    /* Wrong container kinds fail and still take the item (no leak under ASan). */
    assert_int_equal(mle_v_append(obj, mle_v_string("leak?")), -1);
    assert_int_equal(mle_v_set(arr, "k", mle_v_string("leak?")), -1);
    assert_int_equal(mle_v_set(obj, NULL, mle_v_string("leak?")), -1);

    /* Insertion order iteration. */
    const char *expect[] = {"zeta", "alpha", "mid"};
    void *it = NULL;
    mle_value *val = NULL;
    const char *k;
    size_t n = 0;
    while ((k = mle_v_next(obj, &it, &val))) {
        assert_true(n < 3);
        assert_string_equal(k, expect[n]);
        assert_ptr_equal(val, mle_v_get(obj, k));
        n++;
    }
    assert_int_equal(n, 3);
    it = NULL;
    assert_null(mle_v_next(arr, &it, &val));
    assert_null(val);

    assert_int_equal(mle_v_del(obj, "mid"), 0);
    assert_int_equal(mle_v_del(obj, "mid"), -1);
    assert_int_equal(mle_v_len(obj), 2);

    mle_value *copy = mle_v_deep_copy(obj);
    assert_ptr_not_equal(copy, obj);
    assert_true(mle_v_equal(copy, obj));
    mle_v_append(mle_v_get(copy, "alpha"), mle_v_null());
    assert_false(mle_v_equal(copy, obj)); /* deep: the original did not change */
    assert_int_equal(mle_v_len(mle_v_get(obj, "alpha")), 2);
    assert_true(mle_v_equal(NULL, NULL));
    assert_false(mle_v_equal(obj, NULL));

    assert_ptr_equal(mle_v_incref(obj), obj);
    mle_v_decref(obj);
    mle_v_decref(obj);
    mle_v_decref(copy);
    mle_v_decref(NULL);
}

static void test_parse_and_canonical(void **state)
{
    mle_error *err = NULL;
    const char *text = "{\"b\": [1, 2.5, \"x\"], \"a\": {\"d\": null, \"c\": true}}";
    json_t *j = mle_json_parse(text, strlen(text), &err);
    assert_non_null(j);
    assert_null(err);
    char *canon = mle_json_canonical(j);
    assert_string_equal(canon, "{\"a\":{\"c\":true,\"d\":null},\"b\":[1,2.5,\"x\"]}");
    free(canon);
    json_decref(j);

    j = mle_json_parse("42", 2, &err); /* any value at the top */
    assert_true(json_is_integer(j));
    canon = mle_json_canonical(j);
    assert_string_equal(canon, "42");
    free(canon);
    json_decref(j);
    assert_null(mle_json_canonical(NULL));

    const char *bad = "{\n  \"a\": 1,\n  \"b\": }";
    j = mle_json_parse(bad, strlen(bad), &err);
    assert_null(j);
    assert_non_null(err);
    assert_int_equal(err->code, MLE_E_INVALID);
    assert_non_null(strstr(err->message, "JSON line 3"));
    mle_error_free(err);
}

static void test_path(void **state)
{
    const char *text = "{\"id\":\"vpc-1\",\"names\":[\"a\",\"b\"],"
                       "\"status\":{\"conditions\":[{\"type\":\"Ready\"}]}}";
    json_t *j = mle_json_parse(text, strlen(text), NULL);
    assert_string_equal(json_string_value(mle_json_path(j, "id")), "vpc-1");
    assert_string_equal(json_string_value(mle_json_path(j, "names.1")), "b");
    assert_string_equal(json_string_value(mle_json_path(j, "status.conditions.0.type")),
                        "Ready");
    assert_ptr_equal(mle_json_path(j, ""), j);
    assert_ptr_equal(mle_json_path(j, NULL), j);
    assert_null(mle_json_path(j, "names.2"));
    assert_null(mle_json_path(j, "names.x"));
    assert_null(mle_json_path(j, "names.-1"));
    assert_null(mle_json_path(j, "id.more"));
    assert_null(mle_json_path(j, "missing.a"));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_strings_with_nul_and_bad_utf8),
        cmocka_unit_test(test_containers),
        cmocka_unit_test(test_parse_and_canonical),
        cmocka_unit_test(test_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
