/* test_graph.c — the resource DAG: order, cycles named by address, deep chains. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

static size_t pos(const size_t *order, size_t n, size_t node)
{
    for (size_t i = 0; i < n; i++)
        if (order[i] == node)
            return i;
    return (size_t)-1;
}

static void test_topo_puts_dependencies_first(void **state)
{
    (void)state;
    mle_graph *g = mle_graph_new();
    size_t vpc = mle_graph_add(g, "aws_vpc.main");
    size_t sub = mle_graph_add(g, "aws_subnet.a");
    size_t eks = mle_graph_add(g, "aws_eks_cluster.c");
    assert_int_equal(mle_graph_add(g, "aws_vpc.main"), vpc); /* idempotent */
    mle_graph_edge(g, eks, sub);
    mle_graph_edge(g, sub, vpc);
    mle_graph_edge(g, sub, vpc); /* duplicates ignored */
    assert_int_equal(g->ndeps[sub], 1);
    size_t *order = NULL;
    assert_int_equal(mle_graph_topo(g, &order, NULL), 0);
    assert_true(pos(order, 3, vpc) < pos(order, 3, sub));
    assert_true(pos(order, 3, sub) < pos(order, 3, eks));
    free(order);
    size_t *nr = NULL;
    size_t **r = mle_graph_rdeps(g, &nr);
    assert_int_equal(nr[vpc], 1);
    assert_int_equal(r[vpc][0], sub);
    assert_int_equal(nr[eks], 0);
    mle_graph_rdeps_free(g, r, nr);
    mle_graph_free(g);
}

static void test_cycle_is_named(void **state)
{
    (void)state;
    mle_graph *g = mle_graph_new();
    size_t a = mle_graph_add(g, "x.a"), b = mle_graph_add(g, "x.b"), c = mle_graph_add(g, "x.c");
    mle_graph_add(g, "x.free");
    mle_graph_edge(g, a, b);
    mle_graph_edge(g, b, c);
    mle_graph_edge(g, c, a);
    size_t *order = NULL;
    mle_error *err = NULL;
    assert_int_equal(mle_graph_topo(g, &order, &err), -1);
    assert_non_null(err);
    assert_int_equal(err->code, MLE_E_INVALID);
    assert_non_null(strstr(err->message, "dependency cycle: x.a -> x.b -> x.c -> x.a"));
    mle_error_free(err);
    mle_graph_free(g);
}

static void test_self_cycle(void **state)
{
    (void)state;
    mle_graph *g = mle_graph_new();
    size_t a = mle_graph_add(g, "x.self");
    mle_graph_edge(g, a, a);
    size_t *order = NULL;
    mle_error *err = NULL;
    assert_int_equal(mle_graph_topo(g, &order, &err), -1);
    assert_non_null(strstr(err->message, "x.self -> x.self"));
    mle_error_free(err);
    mle_graph_free(g);
}

/* A 100,000-long chain: the DFS is iterative, so no stack overflow. */
static void test_deep_chain(void **state)
{
    (void)state;
    mle_graph *g = mle_graph_new();
    char name[32];
    size_t n = 100000;
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "r.n%zu", i);
        size_t ix = mle_graph_add(g, name);
        if (i > 0)
            mle_graph_edge(g, ix, ix - 1);
    }
    size_t *order = NULL;
    assert_int_equal(mle_graph_topo(g, &order, NULL), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(order[i], i);
    free(order);
    assert_int_equal(mle_graph_find(g, "r.n77"), 77);
    assert_int_equal(mle_graph_find(g, "r.missing"), (size_t)-1);
    mle_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topo_puts_dependencies_first),
        cmocka_unit_test(test_cycle_is_named),
        cmocka_unit_test(test_self_cycle),
        cmocka_unit_test(test_deep_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
