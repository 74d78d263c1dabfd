/*
 * keda.c — the `keda` driver: KEDA's ScaledObject (keda.sh/v1alpha1) as a typed resource —
 * e.g. scale a KServe predictor or an Argo workflow's consumer on a Prometheus query —
 * applied with server-side apply through the shared Kubernetes client
 * (drivers/common/k8s_client.c): the same connection options, ownership labels, drift,
 * delete, import, adopt and render as k8s_manifest. The ScaledObject waits, polled by the
 * engine, for its CRD to be Established (the KEDA Helm release installs it).
 *
 * Field names follow github.com/kedacore/keda/v2 v2.21 (config/crd/bases).
 */
#include <mlengine/driver.h>

#include "k8s_client.h"

static const mle_k8s_field scaled_object_fields[] = {
    {"name", "metadata.name"},
    {"namespace", "metadata.namespace"},
    {"scale_target", "spec.scaleTargetRef"},
    {"min_replicas", "spec.minReplicaCount"},
    {"max_replicas", "spec.maxReplicaCount"},
    {"polling_interval", "spec.pollingInterval"},
    {"cooldown_period", "spec.cooldownPeriod"},
    {"triggers", "spec.triggers"},
    {"fallback", "spec.fallback"},
    {"advanced", "spec.advanced"},
};
#define N_FIELDS (sizeof(scaled_object_fields) / sizeof(scaled_object_fields[0]))

static mle_value *scaled_object_build(const mle_host *h, const mle_value *config,
                                      mle_error **err)
{
    (void)err;
    return mle_k8s_map_build(h, config, "keda.sh/v1alpha1", "ScaledObject",
                             scaled_object_fields, N_FIELDS);
}

static void scaled_object_unbuild(const mle_host *h, const mle_value *obj, mle_value *attrs)
{
    mle_k8s_map_unbuild(h, obj, scaled_object_fields, N_FIELDS, attrs);
}

static const char *const scaled_object_own[] = {
    "name", "namespace", "scale_target", "min_replicas", "max_replicas", "polling_interval",
    "cooldown_period", "triggers", "fallback", "advanced", NULL};

static const mle_k8s_glue scaled_object_glue = {
    .driver = "keda",
    .own_attrs = scaled_object_own,
    .build = scaled_object_build,
    .unbuild = scaled_object_unbuild,
    .crd = "scaledobjects.keda.sh",
    .crd_source = "the KEDA Helm release, e.g. addons.keda{} of scripts/mlops/addons.lua",
};

MLE_K8S_TYPE_OPS(scaled_object, scaled_object_glue)

static const mle_attr_schema scaled_object_attrs[] = {
    {"name", MLE_T_STRING, 0, MLE_A_REQUIRED, NULL, "metadata.name of the ScaledObject."},
    {"namespace", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "Its namespace, the workload's (default: the connection's namespace)."},
    {"scale_target", MLE_T_MAP, MLE_T_ANY, MLE_A_REQUIRED, NULL,
     "The workload to scale (spec.scaleTargetRef): {name, kind, apiVersion}; kind defaults "
     "to Deployment. Any resource with a /scale subresource (a KServe InferenceService's "
     "Deployment, an Argo Rollout)."},
    {"min_replicas", MLE_T_INT, 0, MLE_A_OPTIONAL, NULL,
     "spec.minReplicaCount (0 lets KEDA scale to zero)."},
    {"max_replicas", MLE_T_INT, 0, MLE_A_OPTIONAL, NULL, "spec.maxReplicaCount."},
    {"polling_interval", MLE_T_INT, 0, MLE_A_OPTIONAL, NULL,
     "Seconds between trigger checks (spec.pollingInterval)."},
    {"cooldown_period", MLE_T_INT, 0, MLE_A_OPTIONAL, NULL,
     "Seconds after the last active trigger before scaling to zero."},
    {"triggers", MLE_T_LIST, MLE_T_ANY, MLE_A_REQUIRED, NULL,
     "Scalers, each {type, metadata = {...}, authenticationRef = {name}}: e.g. {type = "
     "\"prometheus\", metadata = {serverAddress = ..., query = ..., threshold = \"10\"}}. "
     "metadata values are strings."},
    {"fallback", MLE_T_MAP, MLE_T_ANY, MLE_A_OPTIONAL, NULL,
     "spec.fallback: {failureThreshold, replicas} when the scaler fails."},
    {"advanced", MLE_T_MAP, MLE_T_ANY, MLE_A_OPTIONAL, NULL,
     "spec.advanced: the HPA's behavior, restoreToOriginalReplicaCount, ..."},
    MLE_K8S_ADDON_ATTRS,
};

static const mle_resource_type scaled_object_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "keda_scaled_object",
    .description = "A KEDA ScaledObject (keda.sh/v1alpha1): event-driven autoscaling of a "
                   "workload, applied once its CRD is established.",
    .attrs = scaled_object_attrs,
    .n_attrs = sizeof(scaled_object_attrs) / sizeof(scaled_object_attrs[0]),
    MLE_K8S_TYPE_OPS_INIT(scaled_object),
};

static int keda_init(const mle_host *h, const mle_value *options, void **ctx, mle_error **err)
{
    return mle_k8s_init(h, options, "keda", ctx, err);
}

static void keda_fini(const mle_host *h, void *ctx)
{
    mle_k8s_fini(h, ctx);
}

static const mle_resource_type *const keda_types[] = {&scaled_object_type, NULL};
static const mle_option keda_options[] = {MLE_K8S_OPTIONS};
static const char *const keda_clouds[] = {"any", NULL}; /* aws, azure, gcp */

static const mle_driver keda_driver = {
    .struct_size = sizeof(mle_driver),
    .abi_major = MLE_ABI_MAJOR,
    .abi_minor = MLE_ABI_MINOR,
    .name = "keda",
    .version = MLE_K8S_VERSION,
    .description = "KEDA ScaledObjects through server-side apply",
    .clouds = keda_clouds,
    .types = keda_types,
    .options = keda_options,
    .n_options = sizeof(keda_options) / sizeof(keda_options[0]),
    .init = keda_init,
    .fini = keda_fini,
};

MLE_EXPORT const mle_driver *mle_driver_entry(void);
MLE_EXPORT const mle_driver *mle_driver_entry(void) { return &keda_driver; }
