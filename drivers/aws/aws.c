/*
 * aws.c — the AWS driver: its descriptor, options, init/fini, and the one exported symbol.
 *
 * The driver is one translation unit: this file includes every part (aws_*.c) so that all
 * but mle_driver_entry is static (STYLE.md) while the code stays split by concern:
 *   aws_util.c    strings, values, XML lists, tags, forms, documents
 *   aws_client.c  endpoints, SigV4, sending, the AWS error mapping, the protocol layers
 *   aws_creds.c   the credential chain and the INI reader
 *   aws_ops.c     read/poll/adopt plumbing shared by the resource types
 *   aws_ec2.c     VPC, subnet, internet gateway, EIP, NAT gateway, route table, security
 *                 group, availability zones
 *   aws_iam.c     IAM role, policy, attachment, OIDC provider; caller identity
 *   aws_eks.c     EKS cluster, node group, add-on
 *   aws_s3.c      S3 bucket
 *   aws_misc.c    ECR repository, Secrets Manager secret, KMS key
 * See README.md beside this file for the user-facing documentation.
 */
#include "aws_internal.h"

#include "aws_util.c"
#include "aws_client.c"
#include "aws_creds.c"
#include "aws_ops.c"
#include "aws_ec2.c"
#include "aws_iam.c"
#include "aws_eks.c"
#include "aws_s3.c"
#include "aws_misc.c"

static const mle_option aws_options[] = {
    {"region", MLE_T_STRING, NULL,
     "The region (e.g. us-east-1). Unset: AWS_REGION, AWS_DEFAULT_REGION, then the profile's "
     "region.", 0},
    {"profile", MLE_T_STRING, NULL,
     "The shared-file profile to use when the environment has no credentials (default: "
     "AWS_PROFILE, else \"default\").", 0},
    {"endpoint_url", MLE_T_STRING, NULL,
     "One endpoint for every service (moto, LocalStack). Unset: AWS_ENDPOINT_URL_<SERVICE>, "
     "AWS_ENDPOINT_URL, then AWS's own.", 0},
    {"endpoints", MLE_T_MAP, NULL,
     "Per-service endpoints by key (ec2, iam, sts, eks, s3, ecr, secretsmanager, kms); beat "
     "endpoint_url.", 0},
    {"s3_force_path_style", MLE_T_BOOL, "false",
     "Address S3 buckets as /bucket on the endpoint (always so on a custom endpoint).", 0},
    {"poll_interval_ms", MLE_T_INT, "0",
     "How soon long operations are polled again; 0 keeps each type's own pace (15-30 s).", 0},
    {"operation_timeout_s", MLE_T_INT, "0",
     "Give up on a long operation after this long; 0 keeps each type's own limit.", 0},
};

static const mle_resource_type *const aws_types[] = {
    &aws_vpc_type,
    &aws_subnet_type,
    &aws_igw_type,
    &aws_eip_type,
    &aws_nat_type,
    &aws_route_table_type,
    &aws_security_group_type,
    &aws_availability_zones_type,
    &aws_iam_role_type,
    &aws_iam_policy_type,
    &aws_iam_rpa_type,
    &aws_iam_oidc_type,
    &aws_caller_identity_type,
    &aws_eks_cluster_type,
    &aws_eks_node_group_type,
    &aws_eks_addon_type,
    &aws_s3_bucket_type,
    &aws_ecr_repository_type,
    &aws_secret_type,
    &aws_kms_key_type,
    NULL,
};

static const char *const aws_clouds[] = {"aws", NULL};

/* The region from the profile in the shared config file, or NULL (caller frees). */
static char *profile_region(const mle_host *h, aws_ctx *c) {
    aws_files f;
    files_load(h, &f);
    mle_value *p = profile_get(h, &f, profile_name(c));
    char *r = xstrdup(vstr_ne(h, p, "region"));
    h->v_decref(p);
    files_free(h, &f);
    return r;
}

static void ctx_free(aws_ctx *c) {
    if (!c)
        return;
    free(c->region);
    free(c->profile);
    for (int s = 0; s < AWS_SVC_N; s++)
        free(c->endpoint[s]);
    creds_free(&c->creds);
    free(c->src_desc);
    free(c->account_id);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static int aws_init(const mle_host *h, const mle_value *options, void **ctx, mle_error **err) {
    aws_ctx *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    pthread_mutex_init(&c->mu, NULL);
    c->profile = xstrdup(vstr_ne(h, options, "profile"));
    const char *r = vstr_ne(h, options, "region");
    if (!r)
        r = getenv("AWS_REGION");
    if (!r || !*r)
        r = getenv("AWS_DEFAULT_REGION");
    c->region = r && *r ? xstrdup(r) : profile_region(h, c);
    if (!c->region) {
        *err = h->error_new(h, MLE_E_INVALID, "aws: no region: set the driver option region, "
                                              "AWS_REGION, or region in the profile \"%s\"",
                            profile_name(c));
        h->error_set_attribute(*err, "region");
        ctx_free(c);
        return -1;
    }
    c->s3_path_style = vbool(h, options, "s3_force_path_style", 0);
    int64_t pm = vint(h, options, "poll_interval_ms", 0);
    c->poll_ms = pm > 0 && pm < 3600 * 1000 ? (uint32_t)pm : 0;
    c->timeout_s = vint(h, options, "operation_timeout_s", 0);
    endpoints_resolve(h, c, options);
    for (int s = 0; s < AWS_SVC_N; s++)
        if (c->custom[s])
            h->log(h, MLE_LOG_DEBUG, "aws: %s endpoint %s", aws_services[s].key, c->endpoint[s]);
    *ctx = c;
    return 0;
}

static void aws_fini(const mle_host *h, void *ctx) {
    (void)h;
    ctx_free(ctx);
}

static const mle_driver aws_driver = {
    .struct_size = sizeof(mle_driver),
    .abi_major = MLE_ABI_MAJOR,
    .abi_minor = MLE_ABI_MINOR,
    .name = "aws",
    .version = AWS_DRIVER_VERSION,
    .description = "Amazon Web Services: VPC, EKS, IAM, S3, ECR, Secrets Manager, KMS",
    .clouds = aws_clouds,
    .types = aws_types,
    .options = aws_options,
    .n_options = sizeof aws_options / sizeof *aws_options,
    .init = aws_init,
    .fini = aws_fini,
};

MLE_EXPORT const mle_driver *mle_driver_entry(void);
MLE_EXPORT const mle_driver *mle_driver_entry(void) { return &aws_driver; }
