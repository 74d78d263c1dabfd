/*
 * k8s_client.h — the Kubernetes client every driver that applies Kubernetes objects shares
 * (kubernetes, karpenter, keda, kyverno): compiled into each of them from this one source,
 * never copied.
 *
 * What it does, once for all of them:
 *   - the connection: the driver options (kubeconfig + context, or host + CA + token, or
 *     host + CA + a token provider for EKS, AKS or GKE that fetches and refreshes the token),
 *     read when the first operation needs them, so `mlengine render` works with no cluster;
 *   - API discovery (apiVersion + kind -> resource path and scope), cached per run and
 *     fetched again on a miss;
 *   - server-side apply (field manager "mlengine") of the object a type builds from its
 *     config, with the ownership labels and annotation; a create never takes over an object
 *     that lacks them;
 *   - read for drift (the live values of the fields the stack declares, and the fields the
 *     mlengine field manager owns according to managedFields), delete with a uid
 *     precondition and a propagation policy, import, crash-recovery adopt by label, render;
 *   - waits as in-progress operations the engine polls (no sleeping, no worker held): a CRD
 *     Established, a Namespace Active, a Deployment Available, a deletion held up by
 *     finalizers, and — for a type that names its CRD — the CRD being Established and its kind
 *     served before the custom resource is applied.
 *
 * A driver describes each of its types with an mle_k8s_glue (how the object is built from the
 * resource's attributes and read back into them) and routes the type's operations here with
 * one-line wrappers (see drivers/keda/keda.c for the smallest example).
 *
 * Ownership: every function returning a value or string says who frees it; `const` arguments
 * are borrowed for the call. Thread-safe: the per-run context guards its discovery cache.
 */
#ifndef MLE_DRIVERS_COMMON_K8S_CLIENT_H
#define MLE_DRIVERS_COMMON_K8S_CLIENT_H

#include <mlengine/driver.h>
#include <stddef.h>

#define MLE_K8S_VERSION "0.1.0"
#define MLE_K8S_FIELD_MANAGER "mlengine"
#define MLE_K8S_LABEL_STACK "mlengine.io/stack"
#define MLE_K8S_LABEL_ADDRESS "mlengine.io/address"
#define MLE_K8S_ANNOTATION_ADDRESS "mlengine.io/address"

/* How a type's resource becomes a Kubernetes object and back. Static, one per type. */
typedef struct mle_k8s_glue {
    /* The driver's name ("karpenter"): prefixes log lines and names it in messages. */
    const char *driver;
    /* The type's own attributes (NULL-terminated): copied from the config into state when an
     * apply succeeds ("manifest" for k8s_manifest; "name", "limits", ... for an add-on). */
    const char *const *own_attrs;
    /* The object to apply, built from the resource's config (or its recorded state, which
     * holds the same attributes). Returns a new value (caller owns) or NULL with *err. */
    mle_value *(*build)(const mle_host *h, const mle_value *config, mle_error **err);
    /* The type's own attributes read back from an object (the live object cut to the shape
     * the stack declares, or the whole live object on an import with nothing to compare to),
     * set into attrs (borrowed; the function adds to it). */
    void (*unbuild)(const mle_host *h, const mle_value *obj, mle_value *attrs);
    /* The CRD serving this type's kind ("nodepools.karpenter.sh"), or NULL. When set, create
     * and update answer IN_PROGRESS until that CRD is Established and discovery serves the
     * kind, for at most wait_timeout seconds, then fail naming the CRD. */
    const char *crd;
    /* What installs that CRD, for the timeout's hint ("the Karpenter Helm release"). */
    const char *crd_source;
    /* Non-zero when the type has the `wait` attribute (k8s_manifest). */
    int has_wait;
} mle_k8s_glue;

/* --- the driver: init/fini (the per-run context) --- */

/* Keeps the connection options (borrowed values are copied) for the first operation that
 * needs the API server; never contacts it and never fails for a missing kubeconfig (that is
 * reported by the first operation), so `mlengine render` needs no cluster. `driver` must be a
 * static string. Returns 0 with *ctx (free with mle_k8s_fini). */
int mle_k8s_init(const mle_host *h, const mle_value *options, const char *driver, void **ctx,
                 mle_error **err);
void mle_k8s_fini(const mle_host *h, void *ctx);

/* The connection options every Kubernetes driver takes, as a table initializer:
 *   static const mle_option opts[] = { MLE_K8S_OPTIONS };                                  */
#define MLE_K8S_OPTIONS                                                                      \
    {"kubeconfig", MLE_T_STRING, NULL,                                                       \
     "Path of a kubeconfig file (default: $KUBECONFIG, a colon-separated list, else "        \
     "~/.kube/config).", 0},                                                                 \
    {"context", MLE_T_STRING, NULL, "The kubeconfig context (default: its current-context).", \
     0},                                                                                     \
    {"host", MLE_T_STRING, NULL,                                                             \
     "The API server URL, given directly (a cluster resource's endpoint); set, it is used "  \
     "instead of a kubeconfig.", 0},                                                         \
    {"cluster_ca_certificate", MLE_T_STRING, NULL,                                           \
     "With host: the cluster CA, PEM or base64 of the PEM. TLS is always verified.", 0},     \
    {"token", MLE_T_STRING, NULL, "With host: a bearer token.", 1},                          \
    {"token_provider", MLE_T_STRING, NULL,                                                   \
     "With host: get the bearer token from the managed cluster's cloud identity instead of " \
     "`token`: \"eks\" (AWS credentials from the environment), \"aks\" (Azure AD: "         \
     "workload identity or a client secret), \"gke\" (a Google OAuth access token). "       \
     "Tokens are refreshed before they expire.", 0},                                         \
    {"eks_cluster_name", MLE_T_STRING, NULL,                                                 \
     "With token_provider \"eks\": the EKS cluster's name (the token is bound to it).", 0},  \
    {"aws_region", MLE_T_STRING, NULL,                                                       \
     "With token_provider \"eks\": the cluster's region (default: $AWS_REGION, else "        \
     "$AWS_DEFAULT_REGION).", 0},                                                            \
    {"namespace", MLE_T_STRING, NULL,                                                        \
     "Namespace for namespaced objects whose manifest names none (default: the context's, "  \
     "else \"default\").", 0}

/* The attributes every add-on type has besides its own, as a table initializer (after the
 * type's own entries). */
#define MLE_K8S_ADDON_ATTRS                                                                  \
    {"force_conflicts", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false",                              \
     "Apply with force=true: take over fields another field manager (kubectl, a controller) " \
     "owns instead of failing with a conflict."},                                            \
    {"wait_timeout", MLE_T_INT, 0, MLE_A_OPTIONAL, "600",                                    \
     "Seconds to wait for the type's CustomResourceDefinition to be Established before "     \
     "applying, and for a deletion held up by finalizers."},                                 \
    {"delete_propagation", MLE_T_STRING, 0, MLE_A_OPTIONAL, "\"Background\"",                \
     "propagationPolicy of the delete: Background, Foreground or Orphan."},                  \
    {"uid", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "metadata.uid of the live object."},      \
    {"resource_version", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL,                              \
     "metadata.resourceVersion as of the last apply, or of the last refresh that found the " \
     "stack's fields changed."},                                                             \
    {"live", MLE_T_ANY, 0, MLE_A_COMPUTED, NULL,                                             \
     "The fields of the live object that the mlengine field manager owns (from "             \
     "metadata.managedFields)."}

/* --- the operations: a type's mle_op_fn wrappers call these with its glue --- */
mle_op_status mle_k8s_create(const mle_host *h, const mle_op *op, const mle_k8s_glue *g);
mle_op_status mle_k8s_update(const mle_host *h, const mle_op *op, const mle_k8s_glue *g);
mle_op_status mle_k8s_read(const mle_host *h, const mle_op *op, const mle_k8s_glue *g);
mle_op_status mle_k8s_import(const mle_host *h, const mle_op *op, const mle_k8s_glue *g);
mle_op_status mle_k8s_delete(const mle_host *h, const mle_op *op, const mle_k8s_glue *g);
mle_op_status mle_k8s_poll(const mle_host *h, const mle_op *op, const mle_k8s_glue *g);
mle_op_status mle_k8s_adopt(const mle_host *h, const mle_op *op, const mle_k8s_glue *g);
/* DONE with {"files": {"<kind>-<namespace>-<name>.yaml": YAML}} (lower case; no namespace
 * part for cluster-scoped kinds): the object as it would be applied, ownership labels
 * included. No I/O. */
mle_op_status mle_k8s_render(const mle_host *h, const mle_op *op, const mle_k8s_glue *g);

/* The eight operation wrappers of a type, named <p>_create ... <p>_render, each calling the
 * client with the type's glue; and the matching mle_resource_type member initializers. */
#define MLE_K8S_TYPE_OPS(p, glue)                                                           \
    static mle_op_status p##_create(const mle_host *h, const mle_op *op)                    \
    { return mle_k8s_create(h, op, &(glue)); }                                               \
    static mle_op_status p##_read(const mle_host *h, const mle_op *op)                      \
    { return mle_k8s_read(h, op, &(glue)); }                                                 \
    static mle_op_status p##_update(const mle_host *h, const mle_op *op)                    \
    { return mle_k8s_update(h, op, &(glue)); }                                               \
    static mle_op_status p##_delete(const mle_host *h, const mle_op *op)                    \
    { return mle_k8s_delete(h, op, &(glue)); }                                               \
    static mle_op_status p##_import(const mle_host *h, const mle_op *op)                    \
    { return mle_k8s_import(h, op, &(glue)); }                                               \
    static mle_op_status p##_poll(const mle_host *h, const mle_op *op)                      \
    { return mle_k8s_poll(h, op, &(glue)); }                                                 \
    static mle_op_status p##_adopt(const mle_host *h, const mle_op *op)                     \
    { return mle_k8s_adopt(h, op, &(glue)); }                                                \
    static mle_op_status p##_render(const mle_host *h, const mle_op *op)                    \
    { return mle_k8s_render(h, op, &(glue)); }
#define MLE_K8S_TYPE_OPS_INIT(p)                                                            \
    .create = p##_create, .read = p##_read, .update = p##_update, .del = p##_delete,        \
    .import = p##_import, .poll = p##_poll, .adopt = p##_adopt, .render = p##_render

/* --- building objects from attributes: a table of attribute -> dotted path --- */

typedef struct mle_k8s_field {
    const char *attr; /* "min_replicas" */
    const char *path; /* "spec.minReplicaCount"; keys separated by '.' */
} mle_k8s_field;

/* obj at a dotted path (borrowed), or NULL. */
const mle_value *mle_k8s_get_path(const mle_host *h, const mle_value *obj, const char *path);
/* Set obj at a dotted path, creating the objects on the way; steals val. 0, or -1 when a
 * value on the way is not an object (val is released). */
int mle_k8s_set_path(const mle_host *h, mle_value *obj, const char *path, mle_value *val);
/* A new object {apiVersion, kind} with each non-null attribute of config copied to its path.
 * Caller owns. */
mle_value *mle_k8s_map_build(const mle_host *h, const mle_value *config, const char *api_version,
                             const char *kind, const mle_k8s_field *fields, size_t n);
/* The inverse: each path present in obj set as its attribute in attrs (deep copies). */
void mle_k8s_map_unbuild(const mle_host *h, const mle_value *obj, const mle_k8s_field *fields,
                         size_t n, mle_value *attrs);

#endif /* MLE_DRIVERS_COMMON_K8S_CLIENT_H */
