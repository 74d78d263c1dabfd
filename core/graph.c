/*
 * graph.c — owns the resource DAG: storage, cycle detection (iterative DFS, so a 10,000-deep
 * chain cannot overflow the C stack) and topological order.
 */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p && n)
        abort();
    return p;
}

mle_graph *mle_graph_new(void)
{
    mle_graph *g = calloc(1, sizeof(*g));
    if (!g)
        abort();
    g->index = json_object();
    return g;
}

void mle_graph_free(mle_graph *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++) {
        free(g->addr[i]);
        free(g->deps[i]);
    }
    free(g->addr);
    free(g->deps);
    free(g->ndeps);
    free(g->capdeps);
    json_decref(g->index);
    free(g);
}

size_t mle_graph_find(const mle_graph *g, const char *address)
{
    json_t *ix = json_object_get(g->index, address);
    return ix ? (size_t)json_integer_value(ix) : (size_t)-1;
}

size_t mle_graph_add(mle_graph *g, const char *address)
{
    size_t i = mle_graph_find(g, address);
    if (i != (size_t)-1)
        return i;
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 64;
        g->addr = xrealloc(g->addr, g->cap * sizeof(char *));
        g->deps = xrealloc(g->deps, g->cap * sizeof(size_t *));
        g->ndeps = xrealloc(g->ndeps, g->cap * sizeof(size_t));
        g->capdeps = xrealloc(g->capdeps, g->cap * sizeof(size_t));
    }
    i = g->n++;
    g->addr[i] = strdup(address);
    g->deps[i] = NULL;
    g->ndeps[i] = g->capdeps[i] = 0;
    json_object_set_new(g->index, address, json_integer((json_int_t)i));
    return i;
}

void mle_graph_edge(mle_graph *g, size_t from, size_t to)
{
    for (size_t k = 0; k < g->ndeps[from]; k++)
        if (g->deps[from][k] == to)
            return;
    if (g->ndeps[from] == g->capdeps[from]) {
        g->capdeps[from] = g->capdeps[from] ? g->capdeps[from] * 2 : 4;
        g->deps[from] = xrealloc(g->deps[from], g->capdeps[from] * sizeof(size_t));
    }
    g->deps[from][g->ndeps[from]++] = to;
}

/* "a -> b -> a" from the DFS stack, starting where `back` was entered. */
static void cycle_error(const mle_graph *g, const size_t *stack, size_t depth, size_t back,
                        mle_error **err)
{
    size_t start = 0;
    while (stack[start] != back)
        start++;
    size_t len = 32;
    for (size_t k = start; k < depth; k++)
        len += strlen(g->addr[stack[k]]) + 4;
    len += strlen(g->addr[back]);
    char *msg = calloc(1, len);
    if (!msg)
        abort();
    for (size_t k = start; k < depth; k++) {
        strcat(msg, g->addr[stack[k]]);
        strcat(msg, " -> ");
    }
    strcat(msg, g->addr[back]);
    mle_fail(err, MLE_E_INVALID, "dependency cycle: %s", msg);
    if (err)
        mle_error_set_hint(*err, "break the cycle: one of these must not refer to the next");
    free(msg);
}

enum { WHITE = 0, GREY, BLACK };

int mle_graph_topo(const mle_graph *g, size_t **order, mle_error **err)
{
    unsigned char *color = calloc(g->n + 1, 1);
    size_t *stack = malloc((g->n + 1) * sizeof(size_t));
    size_t *next = calloc(g->n + 1, sizeof(size_t)); /* next dep to visit per node */
    size_t *out = malloc((g->n + 1) * sizeof(size_t));
    size_t nout = 0;
    int rc = 0;
    if (!color || !stack || !next || !out)
        abort();
    for (size_t root = 0; root < g->n && rc == 0; root++) {
        if (color[root] != WHITE)
            continue;
        size_t depth = 0;
        stack[depth++] = root;
        color[root] = GREY;
        while (depth > 0 && rc == 0) {
            size_t v = stack[depth - 1];
            if (next[v] < g->ndeps[v]) {
                size_t w = g->deps[v][next[v]++];
                if (color[w] == GREY) {
                    cycle_error(g, stack, depth, w, err);
                    rc = -1;
                } else if (color[w] == WHITE) {
                    color[w] = GREY;
                    stack[depth++] = w;
                }
                continue;
            }
            color[v] = BLACK;
            out[nout++] = v;
            depth--;
        }
    }
    free(color);
    free(stack);
    free(next);
    if (rc != 0) {
        free(out);
        return -1;
    }
    *order = out;
    return 0;
}

size_t **mle_graph_rdeps(const mle_graph *g, size_t **nrdeps)
{
    size_t *cnt = calloc(g->n + 1, sizeof(size_t));
    size_t **r = calloc(g->n + 1, sizeof(size_t *));
    if (!cnt || !r)
        abort();
    for (size_t i = 0; i < g->n; i++)
        for (size_t k = 0; k < g->ndeps[i]; k++)
            cnt[g->deps[i][k]]++;
    for (size_t i = 0; i < g->n; i++) {
        r[i] = malloc((cnt[i] + 1) * sizeof(size_t));
        if (!r[i])
            abort();
        cnt[i] = 0;
    }
    for (size_t i = 0; i < g->n; i++)
        for (size_t k = 0; k < g->ndeps[i]; k++) {
            size_t t = g->deps[i][k];
            r[t][cnt[t]++] = i;
        }
    *nrdeps = cnt;
    return r;
}

void mle_graph_rdeps_free(const mle_graph *g, size_t **rdeps, size_t *nrdeps)
{
    for (size_t i = 0; i < g->n; i++)
        free(rdeps[i]);
    free(rdeps);
    free(nrdeps);
}
