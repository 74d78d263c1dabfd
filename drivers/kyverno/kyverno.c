/*
 * kyverno.c — the `kyverno` driver: a Kyverno ClusterPolicy (kyverno.io/v1) from a document
 * (a policies/ YAML file through mle.yamldecode, or scripts/mlops/policies.lua, whose registry
 * substitution happens in Lua), applied with server-side apply through the shared Kubernetes
 * client (drivers/common/k8s_client.c): the same connection options, ownership labels, drift,
 * delete, import, adopt and render as k8s_manifest. The policy waits, polled by the engine,
 * for its CRD to be Established (the Kyverno Helm release installs it).
 *
 * The CRD is github.com/kyverno/kyverno v1.19's config/crds/kyverno/kyverno.io_clusterpolicies.
 */
#include <mlengine/driver.h>

#include <string.h>

#include "k8s_client.h"

#define POLICY_API "kyverno.io/v1"
#define POLICY_KIND "ClusterPolicy"

/* The policy document as given, with apiVersion and kind filled in when it leaves them out;
 * a document of another kind is refused (it belongs in k8s_manifest). Caller owns. */
static mle_value *policy_build(const mle_host *h, const mle_value *config, mle_error **err)
{
    const mle_value *doc = config && h->v_kind(config) == MLE_V_OBJECT
                               ? h->v_get(config, "policy") : NULL;
    if (!doc || h->v_kind(doc) != MLE_V_OBJECT) {
        *err = h->error_new(h, MLE_E_INVALID, "policy must be a table: a ClusterPolicy "
                            "document (e.g. mle.yamldecode(mle.file(\"policies/x.yaml\")))");
        h->error_set_attribute(*err, "policy");
        return NULL;
    }
    const mle_value *av = h->v_get(doc, "apiVersion"), *kind = h->v_get(doc, "kind");
    const char *avs = av ? h->v_str(av) : NULL, *ks = kind ? h->v_str(kind) : NULL;
    if ((avs && strcmp(avs, POLICY_API) != 0) || (ks && strcmp(ks, POLICY_KIND) != 0)) {
        *err = h->error_new(h, MLE_E_INVALID, "policy is a %s %s, not a " POLICY_API " "
                            POLICY_KIND, avs ? avs : "?", ks ? ks : "?");
        h->error_set_hint(*err, "declare other Kyverno kinds (Policy, PolicyException) with "
                                "k8s_manifest");
        h->error_set_attribute(*err, "policy");
        return NULL;
    }
    mle_value *m = h->v_deep_copy(doc);
    if (!avs)
        h->v_set(m, "apiVersion", h->v_string(POLICY_API));
    if (!ks)
        h->v_set(m, "kind", h->v_string(POLICY_KIND));
    return m;
}

static void policy_unbuild(const mle_host *h, const mle_value *obj, mle_value *attrs)
{
    h->v_set(attrs, "policy", h->v_deep_copy(obj));
}

static const char *const policy_own[] = {"policy", NULL};

static const mle_k8s_glue policy_glue = {
    .driver = "kyverno",
    .own_attrs = policy_own,
    .build = policy_build,
    .unbuild = policy_unbuild,
    .crd = "clusterpolicies.kyverno.io",
    .crd_source = "the Kyverno Helm release, e.g. addons.kyverno{} of scripts/mlops/addons.lua",
};

MLE_K8S_TYPE_OPS(policy, policy_glue)

static const mle_attr_schema policy_attrs[] = {
    {"policy", MLE_T_ANY, 0, MLE_A_REQUIRED, NULL,
     "The ClusterPolicy document: metadata.name and spec (rules, validationFailureAction, "
     "...); apiVersion/kind default to kyverno.io/v1 ClusterPolicy. Registry and other "
     "substitutions are done in Lua before it gets here."},
    MLE_K8S_ADDON_ATTRS,
};

static const mle_resource_type policy_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "kyverno_cluster_policy",
    .description = "A Kyverno ClusterPolicy (kyverno.io/v1), applied once its CRD is "
                   "established.",
    .attrs = policy_attrs,
    .n_attrs = sizeof(policy_attrs) / sizeof(policy_attrs[0]),
    MLE_K8S_TYPE_OPS_INIT(policy),
};

static int kyverno_init(const mle_host *h, const mle_value *options, void **ctx,
                        mle_error **err)
{
    return mle_k8s_init(h, options, "kyverno", ctx, err);
}

static void kyverno_fini(const mle_host *h, void *ctx)
{
    mle_k8s_fini(h, ctx);
}

static const mle_resource_type *const kyverno_types[] = {&policy_type, NULL};
static const mle_option kyverno_options[] = {MLE_K8S_OPTIONS};
static const char *const kyverno_clouds[] = {"any", NULL}; /* aws, azure, gcp */

static const mle_driver kyverno_driver = {
    .struct_size = sizeof(mle_driver),
    .abi_major = MLE_ABI_MAJOR,
    .abi_minor = MLE_ABI_MINOR,
    .name = "kyverno",
    .version = MLE_K8S_VERSION,
    .description = "Kyverno ClusterPolicies through server-side apply",
    .clouds = kyverno_clouds,
    .types = kyverno_types,
    .options = kyverno_options,
    .n_options = sizeof(kyverno_options) / sizeof(kyverno_options[0]),
    .init = kyverno_init,
    .fini = kyverno_fini,
};

MLE_EXPORT const mle_driver *mle_driver_entry(void);
MLE_EXPORT const mle_driver *mle_driver_entry(void) { return &kyverno_driver; }
