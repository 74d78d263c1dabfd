/* test_plan.c — reference resolution: refs, paths into lists, expressions, secrets carried
 * through references, and what stays unknown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "plan.h"

static mle_engine *engine(void)
{
    mle_engine *e = calloc(1, sizeof(*e));
    e->known = json_object();
    e->reg = mle_registry_new();
    return e;
}

static void engine_free(mle_engine *e)
{
    json_decref(e->known);
    mle_registry_free(e->reg);
    free(e);
}

static json_t *J(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    if (!v)
        fail_msg("bad JSON in test: %s", je.text);
    return v;
}

static void test_refs_and_paths(void **s)
{
    (void)s;
    mle_engine *e = engine();
    json_t *attrs = J("{\"id\":\"vpc-1\",\"names\":[\"a\",\"b\"],\"tags\":{\"Name\":\"x\"}}");
    mle_engine_know(e, "aws_vpc.main", "aws_vpc", attrs, NULL);
    json_decref(attrs);
    int unknown = 0, sens = 0;
    json_t *in = J("{\"vpc\":{\"$ref\":{\"address\":\"aws_vpc.main\",\"path\":\"id\"}},"
                   "\"az\":{\"$ref\":{\"address\":\"aws_vpc.main\",\"path\":\"names.1\"}},"
                   "\"n\":{\"$ref\":{\"address\":\"aws_vpc.main\",\"path\":\"tags.Name\"}},"
                   "\"list\":[1,{\"$ref\":{\"address\":\"aws_vpc.main\",\"path\":\"id\"}}]}");
    json_t *out = mle_resolve(e, in, &unknown, &sens);
    assert_int_equal(unknown, 0);
    assert_int_equal(sens, 0);
    json_t *want = J("{\"vpc\":\"vpc-1\",\"az\":\"b\",\"n\":\"x\",\"list\":[1,\"vpc-1\"]}");
    assert_true(json_equal(out, want));
    json_decref(want);
    json_decref(out);
    json_decref(in);
    engine_free(e);
}

static void test_unknowns_stay_markers(void **s)
{
    (void)s;
    mle_engine *e = engine();
    json_t *attrs = J("{\"name\":\"n\"}"); /* a resource about to be created: no id yet */
    mle_engine_know(e, "x.a", "x", attrs, NULL);
    json_decref(attrs);
    int unknown = 0, sens = 0;
    json_t *in = J("{\"$expr\":[\"pre-\",{\"$ref\":{\"address\":\"x.a\",\"path\":\"id\"}},"
                   "\"-\",{\"$ref\":{\"address\":\"x.a\",\"path\":\"name\"}}]}");
    json_t *out = mle_resolve(e, in, &unknown, &sens);
    assert_int_equal(unknown, 1);
    assert_true(mle_marker_is_expr(out));
    /* the known part was resolved inside the expression */
    assert_string_equal(json_string_value(json_array_get(json_object_get(out, "$expr"), 3)),
                        "n");
    json_decref(out);
    json_decref(in);
    unknown = 0;
    in = J("{\"$ref\":{\"address\":\"x.missing\",\"path\":\"id\"}}");
    out = mle_resolve(e, in, &unknown, &sens);
    assert_int_equal(unknown, 1);
    assert_true(mle_marker_is_ref(out));
    json_decref(out);
    json_decref(in);
    engine_free(e);
}

static void test_expressions_format_scalars(void **s)
{
    (void)s;
    mle_engine *e = engine();
    json_t *attrs = J("{\"port\":5432,\"on\":true,\"ratio\":0.5}");
    mle_engine_know(e, "db.a", "db", attrs, NULL);
    json_decref(attrs);
    int unknown = 0, sens = 0;
    json_t *in = J("{\"$expr\":[\"h:\",{\"$ref\":{\"address\":\"db.a\",\"path\":\"port\"}},"
                   "\" \",{\"$ref\":{\"address\":\"db.a\",\"path\":\"on\"}},\" \","
                   "{\"$ref\":{\"address\":\"db.a\",\"path\":\"ratio\"}},7]}");
    json_t *out = mle_resolve(e, in, &unknown, &sens);
    assert_int_equal(unknown, 0);
    assert_string_equal(json_string_value(out), "h:5432 true 0.57");
    json_decref(out);
    json_decref(in);
    engine_free(e);
}

static void test_secrets_flow_through_references(void **s)
{
    (void)s;
    mle_engine *e = engine();
    json_t *attrs = J("{\"result\":\"p4ss\",\"id\":\"i\"}");
    json_t *sens_names = J("[\"result\"]");
    mle_engine_know(e, "random_password.db", "random_password", attrs, sens_names);
    json_decref(attrs);
    json_decref(sens_names);
    int unknown = 0, sens = 0;
    json_t *in = J("{\"$expr\":[\"postgres://u:\",{\"$ref\":{\"address\":\"random_password.db\","
                   "\"path\":\"result\"}},\"@h\"]}");
    json_t *out = mle_resolve(e, in, &unknown, &sens);
    assert_int_equal(sens, 1);
    assert_string_equal(json_string_value(out), "postgres://u:p4ss@h");
    json_decref(out);
    json_decref(in);
    /* the id is not secret */
    sens = 0;
    in = J("{\"$ref\":{\"address\":\"random_password.db\",\"path\":\"id\"}}");
    out = mle_resolve(e, in, &unknown, &sens);
    assert_int_equal(sens, 0);
    json_decref(out);
    json_decref(in);
    /* a literal wrapped as sensitive is unwrapped and flagged */
    sens = 0;
    in = J("{\"$sensitive\":\"lit\"}");
    out = mle_resolve(e, in, &unknown, &sens);
    assert_int_equal(sens, 1);
    assert_string_equal(json_string_value(out), "lit");
    json_decref(out);
    json_decref(in);
    engine_free(e);
}

static void test_backoff_is_bounded_full_jitter(void **s)
{
    (void)s;
    mle_engine e = {.retry_base_ms = 100};
    unsigned seed = 42;
    int64_t max_seen = 0;
    for (int attempt = 1; attempt <= 12; attempt++) {
        int64_t ceiling = 100;
        for (int i = 1; i < attempt && ceiling < 30000; i++)
            ceiling *= 2;
        if (ceiling > 30000)
            ceiling = 30000;
        for (int k = 0; k < 200; k++) {
            int64_t d = mle_backoff_ms(&e, attempt, NULL, &seed);
            assert_true(d >= 0 && d <= ceiling);
            if (d > max_seen)
                max_seen = d;
        }
    }
    assert_true(max_seen > 15000); /* jitter reaches up toward the cap */
    mle_error *err = mle_error_new(MLE_E_THROTTLED, "slow down");
    mle_error_set_retry_after(err, 1234);
    assert_int_equal(mle_backoff_ms(&e, 1, err, &seed), 1234);
    mle_error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refs_and_paths),
        cmocka_unit_test(test_unknowns_stay_markers),
        cmocka_unit_test(test_expressions_format_scalars),
        cmocka_unit_test(test_secrets_flow_through_references),
        cmocka_unit_test(test_backoff_is_bounded_full_jitter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
