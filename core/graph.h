/*
 * graph.h — the resource graph: nodes named by address, edges "A depends on B", cycle
 * detection that names the cycle, and topological order.
 */
#ifndef MLE_CORE_GRAPH_H
#define MLE_CORE_GRAPH_H

#include <stddef.h>
#include <jansson.h>
#include "error.h"

typedef struct mle_graph {
    size_t n, cap;
    char **addr;       /* owned */
    size_t **deps;     /* deps[i]: indexes node i depends on */
    size_t *ndeps, *capdeps;
    json_t *index;     /* address -> node index */
} mle_graph;

mle_graph *mle_graph_new(void);
void mle_graph_free(mle_graph *g);
/* Index of the node, adding it when new. */
size_t mle_graph_add(mle_graph *g, const char *address);
/* Index, or (size_t)-1. */
size_t mle_graph_find(const mle_graph *g, const char *address);
/* `from` depends on `to` (duplicates ignored). */
void mle_graph_edge(mle_graph *g, size_t from, size_t to);
/* Topological order (dependencies first) into *order (caller frees, n entries), or -1 with
 * an MLE_E_INVALID error "dependency cycle: a -> b -> c -> a". */
int mle_graph_topo(const mle_graph *g, size_t **order, mle_error **err);
/* Reverse adjacency: for each node, the nodes that depend on it. Caller frees with
 * mle_graph_rdeps_free. */
size_t **mle_graph_rdeps(const mle_graph *g, size_t **nrdeps);
void mle_graph_rdeps_free(const mle_graph *g, size_t **rdeps, size_t *nrdeps);

#endif
