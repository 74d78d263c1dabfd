/*
 * karpenter.c — the `karpenter` driver: Karpenter's NodePool (karpenter.sh/v1) and
 * EC2NodeClass (karpenter.k8s.aws/v1) as typed resources, applied with server-side apply
 * through the shared Kubernetes client (drivers/common/k8s_client.c): the same connection
 * options, ownership labels, drift, delete, import, adopt and render as k8s_manifest.
 *
 * Karpenter runs only on AWS: the driver says so (clouds) and names the managed equivalents
 * on Azure and GCP (cloud_notes), so a stack with mle.cloud("azure") is refused before
 * anything is planned. The controller itself (its Helm release and IRSA role) is declared in
 * Lua: scripts/mlops/addons.lua. Each custom resource waits, polled by the engine, for its CRD
 * to be Established, so the CRDs the Helm release installs need no sleeps.
 *
 * Field names follow the CRDs of github.com/aws/karpenter-provider-aws v1.15 (pkg/apis/crds).
 */
#include <mlengine/driver.h>

#include "k8s_client.h"

/* ---- karpenter_node_pool ---- */

static const mle_k8s_field node_pool_fields[] = {
    {"name", "metadata.name"},
    {"node_class", "spec.template.spec.nodeClassRef.name"},
    {"requirements", "spec.template.spec.requirements"},
    {"taints", "spec.template.spec.taints"},
    {"startup_taints", "spec.template.spec.startupTaints"},
    {"expire_after", "spec.template.spec.expireAfter"},
    {"labels", "spec.template.metadata.labels"},
    {"limits", "spec.limits"},
    {"disruption", "spec.disruption"},
    {"weight", "spec.weight"},
};
#define N_NODE_POOL_FIELDS (sizeof(node_pool_fields) / sizeof(node_pool_fields[0]))

/* The NodePool; nodeClassRef also names the EC2NodeClass's group and kind, which Karpenter
 * on AWS requires and which never vary. Caller owns the result. */
static mle_value *node_pool_build(const mle_host *h, const mle_value *config, mle_error **err)
{
    (void)err;
    mle_value *m = mle_k8s_map_build(h, config, "karpenter.sh/v1", "NodePool", node_pool_fields,
                                     N_NODE_POOL_FIELDS);
    mle_k8s_set_path(h, m, "spec.template.spec.nodeClassRef.group",
                     h->v_string("karpenter.k8s.aws"));
    mle_k8s_set_path(h, m, "spec.template.spec.nodeClassRef.kind", h->v_string("EC2NodeClass"));
    return m;
}

static void node_pool_unbuild(const mle_host *h, const mle_value *obj, mle_value *attrs)
{
    mle_k8s_map_unbuild(h, obj, node_pool_fields, N_NODE_POOL_FIELDS, attrs);
}

static const char *const node_pool_own[] = {"name", "node_class", "requirements", "taints",
                                            "startup_taints", "expire_after", "labels",
                                            "limits", "disruption", "weight", NULL};

static const mle_k8s_glue node_pool_glue = {
    .driver = "karpenter",
    .own_attrs = node_pool_own,
    .build = node_pool_build,
    .unbuild = node_pool_unbuild,
    .crd = "nodepools.karpenter.sh",
    .crd_source = "the Karpenter Helm release, e.g. addons.karpenter{} of scripts/mlops/addons.lua",
};

MLE_K8S_TYPE_OPS(node_pool, node_pool_glue)

static const mle_attr_schema node_pool_attrs[] = {
    {"name", MLE_T_STRING, 0, MLE_A_REQUIRED, NULL, "metadata.name of the NodePool."},
    {"node_class", MLE_T_STRING, 0, MLE_A_REQUIRED, NULL,
     "Name of the EC2NodeClass its nodes are launched with (spec.template.spec.nodeClassRef; "
     "group karpenter.k8s.aws, kind EC2NodeClass)."},
    {"requirements", MLE_T_LIST, MLE_T_ANY, MLE_A_REQUIRED, NULL,
     "Node selector requirements, each {key, operator, values} (and optionally minValues): "
     "e.g. {key = \"karpenter.sh/capacity-type\", operator = \"In\", values = {\"spot\"}}."},
    {"taints", MLE_T_LIST, MLE_T_ANY, MLE_A_OPTIONAL, NULL,
     "Taints of the nodes, each {key, value, effect} (e.g. nvidia.com/gpu NoSchedule)."},
    {"startup_taints", MLE_T_LIST, MLE_T_ANY, MLE_A_OPTIONAL, NULL,
     "Taints a node starts with and a daemon removes (spec.template.spec.startupTaints)."},
    {"expire_after", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "How long a node lives before it is replaced (\"720h\", or \"Never\")."},
    {"labels", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Labels of the nodes (spec.template.metadata.labels)."},
    {"limits", MLE_T_MAP, MLE_T_ANY, MLE_A_OPTIONAL, NULL,
     "Capacity the pool may provision in total: cpu, memory, nvidia.com/gpu (spec.limits)."},
    {"disruption", MLE_T_MAP, MLE_T_ANY, MLE_A_OPTIONAL, NULL,
     "spec.disruption: consolidationPolicy (WhenEmpty, WhenEmptyOrUnderutilized), "
     "consolidateAfter, budgets."},
    {"weight", MLE_T_INT, 0, MLE_A_OPTIONAL, NULL,
     "Priority among NodePools (1-100; higher is tried first)."},
    MLE_K8S_ADDON_ATTRS,
};

static const mle_resource_type node_pool_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "karpenter_node_pool",
    .description = "A Karpenter NodePool (karpenter.sh/v1): which nodes Karpenter may launch, "
                   "applied with server-side apply once its CRD is established.",
    .attrs = node_pool_attrs,
    .n_attrs = sizeof(node_pool_attrs) / sizeof(node_pool_attrs[0]),
    MLE_K8S_TYPE_OPS_INIT(node_pool),
};

/* ---- karpenter_ec2_node_class ---- */

static const mle_k8s_field node_class_fields[] = {
    {"name", "metadata.name"},
    {"role", "spec.role"},
    {"instance_profile", "spec.instanceProfile"},
    {"subnet_selector_terms", "spec.subnetSelectorTerms"},
    {"security_group_selector_terms", "spec.securityGroupSelectorTerms"},
    {"ami_selector_terms", "spec.amiSelectorTerms"},
    {"ami_family", "spec.amiFamily"},
    {"tags", "spec.tags"},
    {"block_device_mappings", "spec.blockDeviceMappings"},
    {"metadata_options", "spec.metadataOptions"},
    {"user_data", "spec.userData"},
};
#define N_NODE_CLASS_FIELDS (sizeof(node_class_fields) / sizeof(node_class_fields[0]))

static mle_value *node_class_build(const mle_host *h, const mle_value *config, mle_error **err)
{
    (void)err;
    return mle_k8s_map_build(h, config, "karpenter.k8s.aws/v1", "EC2NodeClass",
                             node_class_fields, N_NODE_CLASS_FIELDS);
}

static void node_class_unbuild(const mle_host *h, const mle_value *obj, mle_value *attrs)
{
    mle_k8s_map_unbuild(h, obj, node_class_fields, N_NODE_CLASS_FIELDS, attrs);
}

static const char *const node_class_own[] = {
    "name", "role", "instance_profile", "subnet_selector_terms", "security_group_selector_terms",
    "ami_selector_terms", "ami_family", "tags", "block_device_mappings", "metadata_options",
    "user_data", NULL};

static const mle_k8s_glue node_class_glue = {
    .driver = "karpenter",
    .own_attrs = node_class_own,
    .build = node_class_build,
    .unbuild = node_class_unbuild,
    .crd = "ec2nodeclasses.karpenter.k8s.aws",
    .crd_source = "the Karpenter Helm release, e.g. addons.karpenter{} of scripts/mlops/addons.lua",
};

MLE_K8S_TYPE_OPS(node_class, node_class_glue)

static const mle_attr_schema node_class_attrs[] = {
    {"name", MLE_T_STRING, 0, MLE_A_REQUIRED, NULL, "metadata.name of the EC2NodeClass."},
    {"role", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "IAM role name of the nodes (Karpenter makes the instance profile); exactly one of role "
     "and instance_profile."},
    {"instance_profile", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "An existing instance profile instead of role."},
    {"subnet_selector_terms", MLE_T_LIST, MLE_T_ANY, MLE_A_REQUIRED, NULL,
     "Subnets, each term {tags = {...}} or {id = \"subnet-...\"}; terms are ORed."},
    {"security_group_selector_terms", MLE_T_LIST, MLE_T_ANY, MLE_A_REQUIRED, NULL,
     "Security groups, each term {tags = {...}}, {id = ...} or {name = ...}."},
    {"ami_selector_terms", MLE_T_LIST, MLE_T_ANY, MLE_A_REQUIRED, NULL,
     "AMIs, e.g. {{alias = \"al2023@v20240807\"}} (family@version), or {tags}/{id}/{name}."},
    {"ami_family", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "AL2023, Bottlerocket, ...; implied by an alias."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL, "Tags of the instances and volumes."},
    {"block_device_mappings", MLE_T_LIST, MLE_T_ANY, MLE_A_OPTIONAL, NULL,
     "Volumes, each {deviceName, ebs = {volumeSize, volumeType, encrypted, ...}}."},
    {"metadata_options", MLE_T_MAP, MLE_T_ANY, MLE_A_OPTIONAL, NULL,
     "Instance metadata service options (httpTokens, httpPutResponseHopLimit, ...)."},
    {"user_data", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL, "Extra user data for the nodes."},
    MLE_K8S_ADDON_ATTRS,
};

static const mle_resource_type node_class_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "karpenter_ec2_node_class",
    .description = "A Karpenter EC2NodeClass (karpenter.k8s.aws/v1): how nodes are launched on "
                   "EC2 (role, subnets, security groups, AMI, volumes).",
    .attrs = node_class_attrs,
    .n_attrs = sizeof(node_class_attrs) / sizeof(node_class_attrs[0]),
    MLE_K8S_TYPE_OPS_INIT(node_class),
};

/* ---- the driver ---- */

static int karpenter_init(const mle_host *h, const mle_value *options, void **ctx,
                          mle_error **err)
{
    return mle_k8s_init(h, options, "karpenter", ctx, err);
}

static void karpenter_fini(const mle_host *h, void *ctx)
{
    mle_k8s_fini(h, ctx);
}

static const mle_resource_type *const karpenter_types[] = {&node_pool_type, &node_class_type,
                                                           NULL};

static const mle_option karpenter_options[] = {MLE_K8S_OPTIONS};

static const char *const karpenter_clouds[] = {"aws", NULL};

/* What to use instead where Karpenter does not run: the managed, Karpenter-like provisioner
 * of each cloud. */
static const mle_cloud_note karpenter_notes[] = {
    {"azure", "Karpenter runs only on AWS; on AKS use node auto-provisioning (Node "
              "Autoprovisioning, the managed Karpenter-based provisioner: "
              "azure_kubernetes_cluster node_provisioning_profile mode Auto)"},
    {"gcp", "Karpenter runs only on AWS; on GKE use node auto-provisioning (cluster "
            "autoscaling with auto-provisioning enabled)"},
    {NULL, NULL},
};

static const mle_driver karpenter_driver = {
    .struct_size = sizeof(mle_driver),
    .abi_major = MLE_ABI_MAJOR,
    .abi_minor = MLE_ABI_MINOR,
    .name = "karpenter",
    .version = MLE_K8S_VERSION,
    .description = "Karpenter NodePools and EC2NodeClasses (AWS) through server-side apply",
    .clouds = karpenter_clouds,
    .types = karpenter_types,
    .options = karpenter_options,
    .n_options = sizeof(karpenter_options) / sizeof(karpenter_options[0]),
    .init = karpenter_init,
    .fini = karpenter_fini,
    .cloud_notes = karpenter_notes,
};

MLE_EXPORT const mle_driver *mle_driver_entry(void);
MLE_EXPORT const mle_driver *mle_driver_entry(void) { return &karpenter_driver; }
