/*
 * k8s.c — the `kubernetes` driver: any Kubernetes object, built-in or custom, as a
 * `k8s_manifest` resource applied with server-side apply.
 *
 * Everything that talks to the API server (connection, discovery, apply, read, delete, waits,
 * ownership labels, adopt, render) is the shared client in drivers/common/k8s_client.c, which
 * the add-on drivers (karpenter, keda, kyverno) use too. This file is only the glue of the
 * k8s_manifest type: its attributes, how its object is built (the `manifest` attribute as
 * given) and read back (the live object cut to the manifest's shape), and the descriptor.
 * README.md beside this file is the user documentation.
 */
#include <mlengine/driver.h>

#include "k8s_client.h"

/* The object is the manifest itself; the client adds the ownership labels and settles the
 * namespace. Returns a new value (caller owns) or NULL with *err. */
static mle_value *manifest_build(const mle_host *h, const mle_value *config, mle_error **err)
{
    const mle_value *m = config && h->v_kind(config) == MLE_V_OBJECT
                             ? h->v_get(config, "manifest") : NULL;
    if (!m || h->v_kind(m) != MLE_V_OBJECT) {
        *err = h->error_new(h, MLE_E_INVALID, "manifest must be a table (an object decoded "
                            "from YAML or written in Lua)");
        h->error_set_attribute(*err, "manifest");
        return NULL;
    }
    return h->v_deep_copy(m);
}

static void manifest_unbuild(const mle_host *h, const mle_value *obj, mle_value *attrs)
{
    h->v_set(attrs, "manifest", h->v_deep_copy(obj));
}

static const char *const manifest_own_attrs[] = {"manifest", NULL};

static const mle_k8s_glue manifest_glue = {
    .driver = "kubernetes",
    .own_attrs = manifest_own_attrs,
    .build = manifest_build,
    .unbuild = manifest_unbuild,
    .crd = NULL, /* any kind: a kind not served yet is a retryable error (see README) */
    .has_wait = 1,
};

static mle_op_status k8s_create(const mle_host *h, const mle_op *op)
{
    return mle_k8s_create(h, op, &manifest_glue);
}
static mle_op_status k8s_read(const mle_host *h, const mle_op *op)
{
    return mle_k8s_read(h, op, &manifest_glue);
}
static mle_op_status k8s_update(const mle_host *h, const mle_op *op)
{
    return mle_k8s_update(h, op, &manifest_glue);
}
static mle_op_status k8s_delete(const mle_host *h, const mle_op *op)
{
    return mle_k8s_delete(h, op, &manifest_glue);
}
static mle_op_status k8s_import(const mle_host *h, const mle_op *op)
{
    return mle_k8s_import(h, op, &manifest_glue);
}
static mle_op_status k8s_poll(const mle_host *h, const mle_op *op)
{
    return mle_k8s_poll(h, op, &manifest_glue);
}
static mle_op_status k8s_adopt(const mle_host *h, const mle_op *op)
{
    return mle_k8s_adopt(h, op, &manifest_glue);
}
static mle_op_status k8s_render(const mle_host *h, const mle_op *op)
{
    return mle_k8s_render(h, op, &manifest_glue);
}

static int k8s_init(const mle_host *h, const mle_value *options, void **ctx, mle_error **err)
{
    return mle_k8s_init(h, options, "kubernetes", ctx, err);
}

static void k8s_fini(const mle_host *h, void *ctx)
{
    mle_k8s_fini(h, ctx);
}

/* ------------------------------------------------------------------------------------------
 * Descriptor
 * ------------------------------------------------------------------------------------------ */

static const mle_attr_schema k8s_manifest_attrs[] = {
    {"manifest", MLE_T_ANY, 0, MLE_A_REQUIRED, NULL,
     "The object: apiVersion, kind, metadata.name (and metadata.namespace for namespaced "
     "kinds; default: the context's namespace), and its fields, as a table (written in Lua or "
     "decoded with mle.yamldecode). A change is applied in place with server-side apply; a "
     "change of kind, name or namespace moves the object (the old one is deleted)."},
    {"force_conflicts", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false",
     "Apply with force=true: take over fields another field manager (kubectl, a controller) "
     "owns instead of failing with a conflict."},
    {"wait", MLE_T_STRING, 0, MLE_A_OPTIONAL, "\"\"",
     "After applying, wait until: \"established\" (a CustomResourceDefinition's Established "
     "condition), \"active\" (a Namespace's phase), \"available\" (a Deployment's Available "
     "condition for the applied generation); \"\" does not wait. Waits hold no worker."},
    {"wait_timeout", MLE_T_INT, 0, MLE_A_OPTIONAL, "600",
     "Seconds a wait, or a deletion held up by finalizers, may take before the operation "
     "fails."},
    {"delete_propagation", MLE_T_STRING, 0, MLE_A_OPTIONAL, "\"Background\"",
     "propagationPolicy of the delete: Background, Foreground or Orphan."},
    {"uid", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "metadata.uid of the live object."},
    {"resource_version", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL,
     "metadata.resourceVersion as of the last apply, or of the last refresh that found the "
     "stack's fields changed (writes by others to other fields do not move it)."},
    {"live", MLE_T_ANY, 0, MLE_A_COMPUTED, NULL,
     "The fields of the live object that the mlengine field manager owns (from "
     "metadata.managedFields): a field someone else took over disappears from it."},
};

static const mle_resource_type k8s_manifest_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "k8s_manifest",
    .description = "Any Kubernetes object, built-in or custom, applied with server-side apply "
                   "(field manager mlengine) and labelled with the stack's ownership labels.",
    .attrs = k8s_manifest_attrs,
    .n_attrs = sizeof(k8s_manifest_attrs) / sizeof(k8s_manifest_attrs[0]),
    .flags = 0,
    .create = k8s_create,
    .read = k8s_read,
    .update = k8s_update,
    .del = k8s_delete,
    .import = k8s_import,
    .poll = k8s_poll,
    .adopt = k8s_adopt,
    .render = k8s_render,
};

static const mle_resource_type *const k8s_types[] = {&k8s_manifest_type, NULL};

static const mle_option k8s_options[] = {MLE_K8S_OPTIONS};

static const char *const k8s_clouds[] = {"any", NULL};

static const mle_driver k8s_driver = {
    .struct_size = sizeof(mle_driver),
    .abi_major = MLE_ABI_MAJOR,
    .abi_minor = MLE_ABI_MINOR,
    .name = "kubernetes",
    .version = MLE_K8S_VERSION,
    .description = "Kubernetes objects (built-in and custom) through server-side apply",
    .clouds = k8s_clouds,
    .types = k8s_types,
    .options = k8s_options,
    .n_options = sizeof(k8s_options) / sizeof(k8s_options[0]),
    .init = k8s_init,
    .fini = k8s_fini,
};

MLE_EXPORT const mle_driver *mle_driver_entry(void);
MLE_EXPORT const mle_driver *mle_driver_entry(void) { return &k8s_driver; }
