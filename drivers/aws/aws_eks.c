/*
 * aws_eks.c — Kubernetes: aws_eks_cluster, aws_eks_node_group, aws_eks_addon (rest-json).
 *
 * All three are long operations: create, delete and most updates answer IN_PROGRESS with a
 * poll token "<id>|<status awaited>|<deadline>" and the poll reads the status. The idempotency
 * token of the create is passed as clientRequestToken; names are caller-chosen, so adoption
 * after a crash describes the resource by name and checks the ownership tags.
 *
 * aws_eks_addon is written from the EKS model alone: moto does not implement add-ons, so no
 * test here has proven it against a server (see README.md).
 *
 * Part of the aws.c translation unit (see aws_internal.h).
 */

#define EKS_CLUSTER_POLL_MS 30000
#define EKS_CLUSTER_TIMEOUT_S (40 * 60)
#define EKS_NG_POLL_MS 30000
#define EKS_NG_TIMEOUT_S (60 * 60)
#define EKS_ADDON_POLL_MS 15000
#define EKS_ADDON_TIMEOUT_S (30 * 60)

/* Set obj[key] to a copy of s when s is set. */
static void jset_str(const mle_host *h, mle_value *obj, const char *key, const char *s) {
    if (s && *s)
        h->v_set(obj, key, h->v_string(s));
}

/* Set obj[key] to a copy of the config's attr when present. */
static void jset_from(const mle_host *h, mle_value *obj, const char *key, const mle_value *cfg,
                      const char *attr) {
    if (cfg && vhas(h, cfg, attr))
        h->v_set(obj, key, h->v_deep_copy(h->v_get(cfg, attr)));
}

/* clientRequestToken: EKS accepts 1-64 characters. */
static void jset_token(const mle_host *h, mle_value *obj, const mle_op *op) {
    if (op->token && *op->token && strlen(op->token) <= 64)
        h->v_set(obj, "clientRequestToken", h->v_string(op->token));
}

/* "/clusters/<name>[/<sub>/<child>]", names encoded. Caller frees with free(). */
static char *eks_path(const char *cluster, const char *sub, const char *child, const char *tail) {
    aws_buf b = {0};
    buf_puts(&b, "/clusters/");
    buf_put_enc(&b, cluster, 0);
    if (sub) {
        buf_puts(&b, "/");
        buf_puts(&b, sub);
        if (child) {
            buf_puts(&b, "/");
            buf_put_enc(&b, child, 0);
        }
    }
    if (tail)
        buf_puts(&b, tail);
    return buf_take(&b);
}

/* GET a path: 1 with *out (the member `member` of the answer, new reference), 0 when the
 * resource is not found, -1 with *err. */
static int eks_get(const mle_host *h, aws_ctx *c, const mle_op *op, const char *action,
                   const char *path, const char *member, mle_value **out, mle_error **err) {
    mle_error *e = NULL;
    mle_value *r = aws_rest_json(h, c, op, AWS_EKS, action, "GET", path, NULL, NULL, &e);
    if (!r)
        return missing_or_err(h, e, err);
    *out = h->v_get(r, member) ? h->v_incref(h->v_get(r, member)) : NULL;
    h->v_decref(r);
    return *out ? 1 : 0;
}

/* TagResource/UntagResource from state to config on an EKS ARN. */
static int eks_update_tags(const mle_host *h, aws_ctx *c, const mle_op *op, const char *arn,
                           mle_error **err) {
    if (!tags_changed(h, op))
        return 0;
    if (!arn) {
        *err = h->error_new(h, MLE_E_INTERNAL, "aws: %s has no ARN to tag", op->address ? op->address : "?");
        return -1;
    }
    mle_value *set = NULL, *del = NULL;
    tags_diff(h, op, op->state ? h->v_get(op->state, "tags") : NULL, user_tags(h, op), &set, &del);
    aws_buf p = {0};
    buf_puts(&p, "/tags/");
    buf_put_enc(&p, arn, 0);
    mle_value *body = h->v_object();
    h->v_set(body, "tags", set);
    int rc = 0;
    mle_value *r = aws_rest_json(h, c, op, AWS_EKS, "TagResource", "POST", p.p, NULL, body, err);
    h->v_decref(body);
    if (!r)
        rc = -1;
    h->v_decref(r);
    if (rc == 0 && h->v_len(del) > 0) {
        aws_buf q = {0};
        for (size_t i = 0; i < h->v_len(del); i++) {
            if (i)
                buf_puts(&q, "&");
            buf_puts(&q, "tagKeys=");
            buf_put_enc(&q, h->v_str(h->v_at(del, i)), 0);
        }
        r = aws_rest_json(h, c, op, AWS_EKS, "UntagResource", "DELETE", p.p, q.p, NULL, err);
        if (!r)
            rc = -1;
        h->v_decref(r);
        buf_free(&q);
    }
    buf_free(&p);
    h->v_decref(del);
    return rc;
}

/* JSON array of strings -> a copy ordered like the prior attribute. */
static mle_value *json_list_like(const mle_host *h, const mle_value *arr, const mle_value *prior) {
    mle_value *out = h->v_array();
    for (size_t i = 0; i < jl_count(h, arr); i++)
        h->v_append(out, h->v_deep_copy(h->v_at(arr, i)));
    return order_like(h, out, prior);
}

/* How an EKS type describes one of its things, and makes attributes of the description. */
typedef int (*eks_describe_fn)(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                               mle_value **item, mle_error **err);
typedef mle_value *(*eks_attrs_fn)(const mle_host *h, const mle_op *op, const char *id,
                                   const mle_value *item);

/* The fetch of an EKS type: a thing being deleted counts as gone. */
static int eks_fetch_live(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                          mle_value **attrs, mle_error **err, eks_describe_fn describe,
                          eks_attrs_fn attrs_of) {
    mle_value *it = NULL;
    int rc = describe(h, c, op, id, &it, err);
    if (rc <= 0)
        return rc;
    if (str_eq(vstr(h, it, "status"), "DELETING")) {
        h->v_decref(it);
        return 0;
    }
    *attrs = attrs_of(h, op, id, it);
    h->v_decref(it);
    return 1;
}

/* A long EKS resource's answer for its status against the awaited one. `fail_states` end
 * the wait with an error; `ok_states` finish it. */
static mle_op_status eks_status_answer(const mle_host *h, const mle_op *op, const aws_ctx *c,
                                       const char *id, const char *status, const char *awaited,
                                       int64_t deadline, uint32_t poll_ms, mle_value *attrs,
                                       const char *detail) {
    int ok = str_eq(status, awaited) || (str_eq(awaited, "ACTIVE") && str_eq(status, "DEGRADED"));
    if (ok) {
        if (str_eq(status, "DEGRADED"))
            h->log(h, MLE_LOG_WARN, "aws: %s is DEGRADED: %s", op->address ? op->address : id,
                   detail ? detail : "see its health in the EKS console");
        return h->op_done(h, op, id, attrs);
    }
    h->v_decref(attrs);
    if (status && (str_eq(status, "FAILED") || ends_with(status, "_FAILED"))) {
        mle_error *e = h->error_new(h, MLE_E_PROVIDER, "aws: %s (%s) is %s%s%s",
                                    op->address ? op->address : "?", id, status,
                                    detail ? ": " : "", detail ? detail : "");
        h->error_set_provider(e, 0, status, detail);
        return op_fail(h, op, e);
    }
    if (h->now_unix_ms() / 1000 > deadline)
        return poll_timeout(h, op, id, awaited, status);
    return in_progress(h, op, c, id, awaited, deadline, poll_ms);
}

/* ------------------------------------------------------------------------------------------
 * aws_eks_cluster. ID: the cluster name.
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema cluster_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The cluster name."},
    {"name", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The cluster name."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The cluster ARN."},
    {"role_arn", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL,
     "The IAM role the control plane uses (trusts eks.amazonaws.com)."},
    {"version", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_COMPUTED, NULL,
     "Kubernetes version (e.g. 1.30); raising it upgrades the cluster."},
    {"subnet_ids", MLE_T_LIST, MLE_T_STRING, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL,
     "Subnets (at least two zones) for the control plane's network interfaces."},
    {"security_group_ids", MLE_T_LIST, MLE_T_STRING, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, NULL,
     "Extra security groups for those interfaces."},
    {"endpoint_public_access", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "true", "Public API endpoint."},
    {"endpoint_private_access", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false", "Private API endpoint."},
    {"public_access_cidrs", MLE_T_LIST, MLE_T_STRING, MLE_A_OPTIONAL | MLE_A_COMPUTED, NULL,
     "Who may reach the public endpoint."},
    {"enabled_log_types", MLE_T_LIST, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Control plane logs: api, audit, authenticator, controllerManager, scheduler."},
    {"authentication_mode", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_COMPUTED, NULL,
     "API, API_AND_CONFIG_MAP or CONFIG_MAP."},
    {"service_ipv4_cidr", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_COMPUTED | MLE_A_FORCE_NEW,
     NULL, "The Kubernetes service CIDR."},
    {"endpoint", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The API server URL."},
    {"certificate_authority_data", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL,
     "The cluster CA (base64 PEM)."},
    {"oidc_issuer", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL,
     "The cluster's OIDC issuer URL (for aws_iam_openid_connect_provider)."},
    {"cluster_security_group_id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL,
     "The security group EKS made for the cluster."},
    {"vpc_id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The VPC."},
    {"platform_version", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The EKS platform version."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

static mle_value *cluster_attrs_of(const mle_host *h, const mle_op *op, const char *id,
                                   const mle_value *cl) {
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "name", vstr(h, cl, "name"));
    vset_str(h, a, "arn", vstr(h, cl, "arn"));
    vset_str(h, a, "role_arn", vstr(h, cl, "roleArn"));
    vset_str(h, a, "version", vstr(h, cl, "version"));
    mle_value *vpc = vpath(h, cl, "resourcesVpcConfig");
    h->v_set(a, "subnet_ids", json_list_like(h, vpath(h, vpc, "subnetIds"), prior_attr(h, op, "subnet_ids")));
    mle_value *sgs = vpath(h, vpc, "securityGroupIds");
    if (jl_count(h, sgs) || vhas(h, op->config, "security_group_ids"))
        h->v_set(a, "security_group_ids", json_list_like(h, sgs, prior_attr(h, op, "security_group_ids")));
    h->v_set(a, "endpoint_public_access", h->v_bool(vbool(h, vpc, "endpointPublicAccess", 1)));
    h->v_set(a, "endpoint_private_access", h->v_bool(vbool(h, vpc, "endpointPrivateAccess", 0)));
    h->v_set(a, "public_access_cidrs",
             json_list_like(h, vpath(h, vpc, "publicAccessCidrs"), prior_attr(h, op, "public_access_cidrs")));
    mle_value *logs = vpath(h, cl, "logging.clusterLogging");
    mle_value *types = h->v_array();
    for (size_t i = 0; i < jl_count(h, logs); i++) {
        mle_value *ls = h->v_at(logs, i);
        if (!vbool(h, ls, "enabled", 0))
            continue;
        mle_value *ts = h->v_get(ls, "types");
        for (size_t j = 0; j < jl_count(h, ts); j++)
            h->v_append(types, h->v_deep_copy(h->v_at(ts, j)));
    }
    if (h->v_len(types) || vhas(h, op->config, "enabled_log_types"))
        h->v_set(a, "enabled_log_types", order_like(h, types, prior_attr(h, op, "enabled_log_types")));
    else
        h->v_decref(types);
    vset_str(h, a, "authentication_mode", vstr_ne(h, cl, "accessConfig.authenticationMode"));
    vset_str(h, a, "service_ipv4_cidr", vstr_ne(h, cl, "kubernetesNetworkConfig.serviceIpv4Cidr"));
    vset_str(h, a, "endpoint", vstr_ne(h, cl, "endpoint"));
    vset_str(h, a, "certificate_authority_data", vstr_ne(h, cl, "certificateAuthority.data"));
    vset_str(h, a, "oidc_issuer", vstr_ne(h, cl, "identity.oidc.issuer"));
    vset_str(h, a, "cluster_security_group_id", vstr_ne(h, vpc, "clusterSecurityGroupId"));
    vset_str(h, a, "vpc_id", vstr_ne(h, vpc, "vpcId"));
    vset_str(h, a, "platform_version", vstr_ne(h, cl, "platformVersion"));
    h->v_set(a, "tags", tags_from_map(h, vpath(h, cl, "tags")));
    return a;
}

static int cluster_describe(const mle_host *h, aws_ctx *c, const mle_op *op, const char *name,
                            mle_value **cl, mle_error **err) {
    char *p = eks_path(name, NULL, NULL, NULL);
    int rc = eks_get(h, c, op, "DescribeCluster", p, "cluster", cl, err);
    free(p);
    return rc;
}

static int cluster_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                         mle_value **attrs, mle_error **err) {
    return eks_fetch_live(h, c, op, id, attrs, err, cluster_describe, cluster_attrs_of);
}

/* Where a cluster stands against `awaited` (ACTIVE or deleted). */
static mle_op_status cluster_answer(const mle_host *h, const mle_op *op, aws_ctx *c,
                                    const char *id, const char *awaited, int64_t deadline) {
    mle_value *cl = NULL;
    mle_error *e = NULL;
    int rc = cluster_describe(h, c, op, id, &cl, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    if (rc == 0) {
        if (str_eq(awaited, "deleted"))
            return h->op_done(h, op, id, NULL);
        return op_fail(h, op, h->error_new(h, MLE_E_NOT_FOUND, "aws: EKS cluster %s vanished "
                                                               "while being created", id));
    }
    const char *status = vstr(h, cl, "status");
    mle_op_status st;
    if (str_eq(awaited, "deleted")) {
        st = str_eq(status, "FAILED") || h->now_unix_ms() / 1000 <= deadline
                 ? in_progress(h, op, c, id, "deleted", deadline, EKS_CLUSTER_POLL_MS)
                 : poll_timeout(h, op, id, "deleted", status);
    } else {
        mle_value *attrs = str_eq(status, "ACTIVE") ? cluster_attrs_of(h, op, id, cl) : NULL;
        st = eks_status_answer(h, op, c, id, status, "ACTIVE", deadline, EKS_CLUSTER_POLL_MS,
                               attrs, NULL);
    }
    h->v_decref(cl);
    return st;
}

static int cluster_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err);

static mle_op_status cluster_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    const mle_value *cfg = op->config;
    const char *name = vstr(h, cfg, "name");
    mle_value *b = h->v_object();
    jset_str(h, b, "name", name);
    jset_str(h, b, "version", vstr_ne(h, cfg, "version"));
    jset_str(h, b, "roleArn", vstr(h, cfg, "role_arn"));
    mle_value *vpc = h->v_object();
    jset_from(h, vpc, "subnetIds", cfg, "subnet_ids");
    jset_from(h, vpc, "securityGroupIds", cfg, "security_group_ids");
    h->v_set(vpc, "endpointPublicAccess", h->v_bool(vbool(h, cfg, "endpoint_public_access", 1)));
    h->v_set(vpc, "endpointPrivateAccess", h->v_bool(vbool(h, cfg, "endpoint_private_access", 0)));
    jset_from(h, vpc, "publicAccessCidrs", cfg, "public_access_cidrs");
    h->v_set(b, "resourcesVpcConfig", vpc);
    if (vstr_ne(h, cfg, "service_ipv4_cidr")) {
        mle_value *kn = h->v_object();
        jset_str(h, kn, "serviceIpv4Cidr", vstr(h, cfg, "service_ipv4_cidr"));
        h->v_set(b, "kubernetesNetworkConfig", kn);
    }
    if (jl_count(h, h->v_get(cfg, "enabled_log_types"))) {
        mle_value *ls = h->v_object();
        jset_from(h, ls, "types", cfg, "enabled_log_types");
        h->v_set(ls, "enabled", h->v_bool(1));
        mle_value *arr = h->v_array();
        h->v_append(arr, ls);
        mle_value *lg = h->v_object();
        h->v_set(lg, "clusterLogging", arr);
        h->v_set(b, "logging", lg);
    }
    if (vstr_ne(h, cfg, "authentication_mode")) {
        mle_value *ac = h->v_object();
        jset_str(h, ac, "authenticationMode", vstr(h, cfg, "authentication_mode"));
        h->v_set(b, "accessConfig", ac);
    }
    jset_token(h, b, op);
    h->v_set(b, "tags", tags_with_owner(h, op, user_tags(h, op)));
    mle_error *e = NULL;
    mle_value *r = aws_rest_json(h, c, op, AWS_EKS, "CreateCluster", "POST", "/clusters", NULL, b, &e);
    h->v_decref(b);
    char *ours = NULL;
    if (!r && conflict_is_ours(h, c, op, cluster_find_ours, &ours, &e) != 1)
        return op_fail(h, op, e);
    free(ours);
    h->v_decref(r);
    /* Always through poll (moto's cluster is ACTIVE at once; AWS's takes ~10 minutes). */
    return in_progress(h, op, c, name, "ACTIVE", deadline_in(h, c, EKS_CLUSTER_TIMEOUT_S),
                       EKS_CLUSTER_POLL_MS);
}

static mle_op_status cluster_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, cluster_fetch); }

static mle_op_status cluster_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    const mle_value *cfg = op->config;
    int waits = 0;
    /* Tags first: a retry of this update after the update call went through would find an
     * update in progress and fail. */
    if (tags_changed(h, op) && eks_update_tags(h, c, op, op->state ? vstr(h, op->state, "arn") : NULL, &e) != 0)
        return op_fail(h, op, e);
    /* EKS runs one update at a time per cluster: the version first, the config next run. */
    if (attr_changed(h, op, "version") && vstr_ne(h, cfg, "version")) {
        mle_value *b = h->v_object();
        jset_str(h, b, "version", vstr(h, cfg, "version"));
        char *p = eks_path(id, "updates", NULL, NULL);
        mle_value *r = aws_rest_json(h, c, op, AWS_EKS, "UpdateClusterVersion", "POST", p, NULL, b, &e);
        free(p);
        h->v_decref(b);
        if (!r)
            return op_fail(h, op, e);
        h->v_decref(r);
        waits = 1;
    } else if (attr_changed(h, op, "endpoint_public_access") ||
               attr_changed(h, op, "endpoint_private_access") ||
               (vhas(h, cfg, "public_access_cidrs") && attr_changed(h, op, "public_access_cidrs")) ||
               attr_changed(h, op, "enabled_log_types") ||
               (vhas(h, cfg, "authentication_mode") && attr_changed(h, op, "authentication_mode"))) {
        mle_value *b = h->v_object();
        if (attr_changed(h, op, "endpoint_public_access") || attr_changed(h, op, "endpoint_private_access") ||
            attr_changed(h, op, "public_access_cidrs")) {
            mle_value *vpc = h->v_object();
            h->v_set(vpc, "endpointPublicAccess", h->v_bool(vbool(h, cfg, "endpoint_public_access", 1)));
            h->v_set(vpc, "endpointPrivateAccess", h->v_bool(vbool(h, cfg, "endpoint_private_access", 0)));
            jset_from(h, vpc, "publicAccessCidrs", cfg, "public_access_cidrs");
            h->v_set(b, "resourcesVpcConfig", vpc);
        }
        if (attr_changed(h, op, "enabled_log_types")) {
            static const char *const all[] = {"api", "audit", "authenticator", "controllerManager", "scheduler"};
            mle_value *want = h->v_get(cfg, "enabled_log_types");
            mle_value *on = h->v_array(), *off = h->v_array();
            for (size_t i = 0; i < 5; i++) {
                mle_value *s = h->v_string(all[i]);
                h->v_append(array_has(h, want, s) ? on : off, s);
            }
            mle_value *arr = h->v_array();
            mle_value *e1 = h->v_object(), *e2 = h->v_object();
            h->v_set(e1, "types", on);
            h->v_set(e1, "enabled", h->v_bool(1));
            h->v_set(e2, "types", off);
            h->v_set(e2, "enabled", h->v_bool(0));
            h->v_append(arr, e1);
            h->v_append(arr, e2);
            mle_value *lg = h->v_object();
            h->v_set(lg, "clusterLogging", arr);
            h->v_set(b, "logging", lg);
        }
        if (vhas(h, cfg, "authentication_mode") && attr_changed(h, op, "authentication_mode")) {
            mle_value *ac = h->v_object();
            jset_str(h, ac, "authenticationMode", vstr(h, cfg, "authentication_mode"));
            h->v_set(b, "accessConfig", ac);
        }
        char *p = eks_path(id, "update-config", NULL, NULL);
        mle_value *r = aws_rest_json(h, c, op, AWS_EKS, "UpdateClusterConfig", "POST", p, NULL, b, &e);
        free(p);
        h->v_decref(b);
        if (!r)
            return op_fail(h, op, e);
        h->v_decref(r);
        waits = 1;
    }
    if (waits)
        return in_progress(h, op, c, id, "ACTIVE", deadline_in(h, c, EKS_CLUSTER_TIMEOUT_S), EKS_CLUSTER_POLL_MS);
    return created(h, op, c, id, NULL, cluster_fetch);
}

/* The DELETE of an EKS path (p is freed here); gone is NOT_FOUND, else poll for "deleted". */
static mle_op_status eks_delete_at(const mle_host *h, const mle_op *op, aws_ctx *c, char *p,
                                   const char *action, int64_t timeout_s, uint32_t poll_ms) {
    mle_error *e = NULL;
    mle_value *r = aws_rest_json(h, c, op, AWS_EKS, action, "DELETE", p, NULL, NULL, &e);
    free(p);
    if (!r)
        return op_fail_or_gone(h, op, e);
    h->v_decref(r);
    return in_progress(h, op, c, op->id, "deleted", deadline_in(h, c, timeout_s), poll_ms);
}

static mle_op_status cluster_delete(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    if (!need_id(h, op, &e))
        return op_fail(h, op, e);
    return eks_delete_at(h, op, c, eks_path(op->id, NULL, NULL, NULL), "DeleteCluster",
                         EKS_CLUSTER_TIMEOUT_S, EKS_CLUSTER_POLL_MS);
}

static mle_op_status cluster_poll(const mle_host *h, const mle_op *op) {
    return answer_poll(h, op, 256, cluster_fetch, cluster_answer);
}

/* A cluster of that name carrying our ownership tags (and not being deleted). */
static int cluster_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err) {
    const char *name = op->config ? vstr(h, op->config, "name") : NULL;
    if (!name)
        return 0;
    mle_value *cl = NULL;
    int rc = cluster_describe(h, c, op, name, &cl, err);
    if (rc <= 0)
        return rc;
    int ours = tags_map_owned_by(h, op, vpath(h, cl, "tags")) && !str_eq(vstr(h, cl, "status"), "DELETING");
    h->v_decref(cl);
    if (ours)
        *id = xstrdup(name);
    return ours;
}

/* Found mid-creation, it is adopted into the poll rather than reported half-made. */
static mle_op_status cluster_adopt(const mle_host *h, const mle_op *op) {
    return adopt_into_poll(h, op, cluster_find_ours, cluster_answer, "ACTIVE", EKS_CLUSTER_TIMEOUT_S, "EKS cluster");
}

static const mle_resource_type aws_eks_cluster_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_eks_cluster",
    .description = "An EKS cluster (long operation: ~10 minutes to create).",
    .attrs = cluster_attrs,
    .n_attrs = sizeof cluster_attrs / sizeof *cluster_attrs,
    .create = cluster_create,
    .read = cluster_read,
    .update = cluster_update,
    .del = cluster_delete,
    .import = cluster_read,
    .poll = cluster_poll,
    .adopt = cluster_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_eks_node_group. ID: "<cluster>:<node group>".
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema ng_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "<cluster>:<node group>."},
    {"cluster_name", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The cluster."},
    {"node_group_name", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The node group name."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The node group ARN."},
    {"node_role_arn", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL,
     "The nodes' IAM role (worker, CNI and ECR read policies)."},
    {"subnet_ids", MLE_T_LIST, MLE_T_STRING, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "Where nodes run."},
    {"instance_types", MLE_T_LIST, MLE_T_STRING, MLE_A_OPTIONAL | MLE_A_COMPUTED | MLE_A_FORCE_NEW,
     NULL, "EC2 instance types (g5.xlarge for GPUs)."},
    {"ami_type", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_COMPUTED | MLE_A_FORCE_NEW, NULL,
     "AL2023_x86_64_STANDARD, AL2_x86_64_GPU, AL2023_x86_64_NVIDIA, BOTTLEROCKET_x86_64, ..."},
    {"capacity_type", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "\"ON_DEMAND\"",
     "ON_DEMAND or SPOT."},
    {"disk_size", MLE_T_INT, 0, MLE_A_OPTIONAL | MLE_A_COMPUTED | MLE_A_FORCE_NEW, NULL,
     "Root volume GiB."},
    {"min_size", MLE_T_INT, 0, MLE_A_REQUIRED, NULL, "Fewest nodes (0 lets a GPU pool idle)."},
    {"max_size", MLE_T_INT, 0, MLE_A_REQUIRED, NULL, "Most nodes."},
    {"desired_size", MLE_T_INT, 0, MLE_A_OPTIONAL | MLE_A_COMPUTED, NULL,
     "Nodes now; unset starts at min_size and leaves scaling to the autoscaler."},
    {"labels", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL, "Kubernetes node labels."},
    {"taints", MLE_T_LIST, MLE_T_ANY, MLE_A_OPTIONAL, NULL,
     "Kubernetes taints: {key, value, effect = NO_SCHEDULE | NO_EXECUTE | PREFER_NO_SCHEDULE}."},
    {"version", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_COMPUTED, NULL, "Kubernetes version of the nodes."},
    {"release_version", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The AMI release."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

/* Split "<cluster>:<ng>" into copies (free()). 0 or -1. */
static int ng_split(const char *id, char **cluster, char **ng) { return split_at(id, ':', cluster, ng); }

static int ng_describe(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                       mle_value **ng, mle_error **err) {
    char *cl = NULL, *name = NULL;
    if (ng_split(id, &cl, &name) != 0) {
        *err = h->error_new(h, MLE_E_INVALID, "aws: \"%s\" is not a node group ID "
                                              "(<cluster>:<node group>)", id ? id : "");
        return -1;
    }
    char *p = eks_path(cl, "node-groups", name, NULL);
    int rc = eks_get(h, c, op, "DescribeNodegroup", p, "nodegroup", ng, err);
    free(p);
    free(cl);
    free(name);
    return rc;
}

/* A taint as an attribute object: key, effect, and value only when it has one. */
static mle_value *taint_of(const mle_host *h, const mle_value *t) {
    mle_value *o = h->v_object();
    vset_str(h, o, "key", vstr(h, t, "key"));
    if (vstr_ne(h, t, "value"))
        vset_str(h, o, "value", vstr(h, t, "value"));
    vset_str(h, o, "effect", vstr(h, t, "effect"));
    return o;
}

static mle_value *ng_attrs_of(const mle_host *h, const mle_op *op, const char *id,
                              const mle_value *ng) {
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "cluster_name", vstr(h, ng, "clusterName"));
    vset_str(h, a, "node_group_name", vstr(h, ng, "nodegroupName"));
    vset_str(h, a, "arn", vstr(h, ng, "nodegroupArn"));
    vset_str(h, a, "node_role_arn", vstr(h, ng, "nodeRole"));
    h->v_set(a, "subnet_ids", json_list_like(h, vpath(h, ng, "subnets"), prior_attr(h, op, "subnet_ids")));
    h->v_set(a, "instance_types",
             json_list_like(h, vpath(h, ng, "instanceTypes"), prior_attr(h, op, "instance_types")));
    vset_str(h, a, "ami_type", vstr_ne(h, ng, "amiType"));
    vset_str(h, a, "capacity_type", vstr_ne(h, ng, "capacityType") ? vstr(h, ng, "capacityType") : "ON_DEMAND");
    if (vhas(h, ng, "diskSize"))
        h->v_set(a, "disk_size", h->v_int(vint(h, ng, "diskSize", 0)));
    else
        h->v_set(a, "disk_size", h->v_null());
    h->v_set(a, "min_size", h->v_int(vint(h, ng, "scalingConfig.minSize", 0)));
    h->v_set(a, "max_size", h->v_int(vint(h, ng, "scalingConfig.maxSize", 0)));
    h->v_set(a, "desired_size", h->v_int(vint(h, ng, "scalingConfig.desiredSize", 0)));
    mle_value *labels = tags_from_map(h, vpath(h, ng, "labels"));
    if (h->v_len(labels) || vhas(h, op->config, "labels") || vhas(h, op->state, "labels"))
        h->v_set(a, "labels", labels);
    else
        h->v_decref(labels);
    mle_value *ts = vpath(h, ng, "taints");
    mle_value *taints = h->v_array();
    for (size_t i = 0; i < jl_count(h, ts); i++)
        h->v_append(taints, taint_of(h, h->v_at(ts, i)));
    if (h->v_len(taints) || vhas(h, op->config, "taints") || vhas(h, op->state, "taints"))
        h->v_set(a, "taints", order_like(h, taints, prior_attr(h, op, "taints")));
    else
        h->v_decref(taints);
    vset_str(h, a, "version", vstr_ne(h, ng, "version"));
    vset_str(h, a, "release_version", vstr_ne(h, ng, "releaseVersion"));
    h->v_set(a, "tags", tags_from_map(h, vpath(h, ng, "tags")));
    return a;
}

static int ng_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                    mle_value **attrs, mle_error **err) {
    return eks_fetch_live(h, c, op, id, attrs, err, ng_describe, ng_attrs_of);
}

static mle_op_status ng_answer(const mle_host *h, const mle_op *op, aws_ctx *c, const char *id,
                               const char *awaited, int64_t deadline) {
    mle_value *ng = NULL;
    mle_error *e = NULL;
    int rc = ng_describe(h, c, op, id, &ng, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    if (rc == 0) {
        if (str_eq(awaited, "deleted"))
            return h->op_done(h, op, id, NULL);
        return op_fail(h, op, h->error_new(h, MLE_E_NOT_FOUND, "aws: node group %s vanished "
                                                               "while being created", id));
    }
    const char *status = vstr(h, ng, "status");
    mle_op_status st;
    if (str_eq(awaited, "deleted")) {
        if (str_eq(status, "DELETE_FAILED")) {
            st = eks_status_answer(h, op, c, id, status, awaited, deadline, EKS_NG_POLL_MS, NULL, NULL);
        } else {
            st = h->now_unix_ms() / 1000 <= deadline
                     ? in_progress(h, op, c, id, "deleted", deadline, EKS_NG_POLL_MS)
                     : poll_timeout(h, op, id, "deleted", status);
        }
    } else {
        /* The first health issue says why a node group failed or degraded. */
        mle_value *issue = jl_count(h, vpath(h, ng, "health.issues")) ? h->v_at(vpath(h, ng, "health.issues"), 0) : NULL;
        mle_value *attrs = str_eq(status, "ACTIVE") || str_eq(status, "DEGRADED") ? ng_attrs_of(h, op, id, ng) : NULL;
        st = eks_status_answer(h, op, c, id, status, "ACTIVE", deadline, EKS_NG_POLL_MS, attrs,
                               vstr_ne(h, issue, "message"));
    }
    h->v_decref(ng);
    return st;
}

/* taints attribute -> EKS taint list (new array). */
static mle_value *ng_taints_body(const mle_host *h, const mle_value *taints) {
    mle_value *arr = h->v_array();
    for (size_t i = 0; i < jl_count(h, taints); i++) {
        mle_value *t = h->v_at(taints, i);
        mle_value *o = h->v_object();
        jset_str(h, o, "key", vstr(h, t, "key"));
        jset_str(h, o, "value", vstr(h, t, "value"));
        jset_str(h, o, "effect", vstr(h, t, "effect"));
        h->v_append(arr, o);
    }
    return arr;
}

static mle_value *ng_scaling_body(const mle_host *h, const mle_value *cfg) {
    mle_value *sc = h->v_object();
    int64_t min = vint(h, cfg, "min_size", 0), max = vint(h, cfg, "max_size", 1);
    h->v_set(sc, "minSize", h->v_int(min));
    h->v_set(sc, "maxSize", h->v_int(max));
    h->v_set(sc, "desiredSize", h->v_int(vhas(h, cfg, "desired_size") ? vint(h, cfg, "desired_size", min) : min));
    return sc;
}

static int ng_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err);

static mle_op_status ng_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    const mle_value *cfg = op->config;
    const char *cluster = vstr(h, cfg, "cluster_name"), *name = vstr(h, cfg, "node_group_name");
    if (!cluster || !name)
        return op_fail(h, op, err_invalid_attr(h, "node_group_name", "cluster_name and node_group_name are required"));
    int64_t min = vint(h, cfg, "min_size", 0), max = vint(h, cfg, "max_size", 0);
    if (min < 0 || max < 1 || min > max)
        return op_fail(h, op, err_invalid_attr(h, "max_size", "need 0 <= min_size <= max_size and max_size >= 1 "
                                                              "(got %lld..%lld)", (long long)min, (long long)max));
    mle_value *b = h->v_object();
    jset_str(h, b, "nodegroupName", name);
    h->v_set(b, "scalingConfig", ng_scaling_body(h, cfg));
    jset_from(h, b, "subnets", cfg, "subnet_ids");
    jset_from(h, b, "instanceTypes", cfg, "instance_types");
    jset_str(h, b, "amiType", vstr_ne(h, cfg, "ami_type"));
    jset_str(h, b, "capacityType", vstr_ne(h, cfg, "capacity_type"));
    if (vhas(h, cfg, "disk_size"))
        h->v_set(b, "diskSize", h->v_int(vint(h, cfg, "disk_size", 20)));
    jset_str(h, b, "nodeRole", vstr(h, cfg, "node_role_arn"));
    jset_from(h, b, "labels", cfg, "labels");
    if (jl_count(h, h->v_get(cfg, "taints")))
        h->v_set(b, "taints", ng_taints_body(h, h->v_get(cfg, "taints")));
    jset_str(h, b, "version", vstr_ne(h, cfg, "version"));
    jset_token(h, b, op);
    h->v_set(b, "tags", tags_with_owner(h, op, user_tags(h, op)));
    char *p = eks_path(cluster, "node-groups", NULL, NULL);
    mle_error *e = NULL;
    mle_value *r = aws_rest_json(h, c, op, AWS_EKS, "CreateNodegroup", "POST", p, NULL, b, &e);
    free(p);
    h->v_decref(b);
    char *ours = NULL;
    if (!r && conflict_is_ours(h, c, op, ng_find_ours, &ours, &e) != 1)
        return op_fail(h, op, e);
    free(ours);
    h->v_decref(r);
    char *id = xasprintf("%s:%s", cluster, name);
    mle_op_status st = in_progress(h, op, c, id, "ACTIVE", deadline_in(h, c, EKS_NG_TIMEOUT_S), EKS_NG_POLL_MS);
    free(id);
    return st;
}

static mle_op_status ng_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, ng_fetch); }

static mle_op_status ng_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    const mle_value *cfg = op->config;
    char *cl = NULL, *name = NULL;
    if (ng_split(id, &cl, &name) != 0)
        return op_fail(h, op, h->error_new(h, MLE_E_INVALID, "aws: \"%s\" is not a node group ID", id));
    int waits = 0;
    mle_op_status st = MLE_OP_DONE;
    if (tags_changed(h, op) &&
        eks_update_tags(h, c, op, op->state ? vstr(h, op->state, "arn") : NULL, &e) != 0)
        goto fail;
    if (attr_changed(h, op, "version") && vstr_ne(h, cfg, "version")) {
        mle_value *b = h->v_object();
        jset_str(h, b, "version", vstr(h, cfg, "version"));
        char *p = eks_path(cl, "node-groups", name, "/update-version");
        mle_value *r = aws_rest_json(h, c, op, AWS_EKS, "UpdateNodegroupVersion", "POST", p, NULL, b, &e);
        free(p);
        h->v_decref(b);
        if (!r)
            goto fail;
        h->v_decref(r);
        waits = 1;
    } else if (attr_changed(h, op, "min_size") || attr_changed(h, op, "max_size") ||
               (vhas(h, cfg, "desired_size") && attr_changed(h, op, "desired_size")) ||
               attr_changed(h, op, "labels") || attr_changed(h, op, "taints")) {
        mle_value *b = h->v_object();
        if (attr_changed(h, op, "min_size") || attr_changed(h, op, "max_size") ||
            attr_changed(h, op, "desired_size")) {
            mle_value *sc = ng_scaling_body(h, cfg);
            /* Unset desired_size keeps what the autoscaler chose, clamped to the range. */
            if (!vhas(h, cfg, "desired_size")) {
                int64_t d = op->state ? vint(h, op->state, "desired_size", 0) : 0;
                int64_t mn = vint(h, cfg, "min_size", 0), mx = vint(h, cfg, "max_size", 1);
                h->v_set(sc, "desiredSize", h->v_int(d < mn ? mn : d > mx ? mx : d));
            }
            h->v_set(b, "scalingConfig", sc);
        }
        if (attr_changed(h, op, "labels")) {
            mle_value *set = NULL, *del = NULL;
            mle_op fake = *op;
            fake.lineage = NULL;
            fake.address = NULL;
            tags_diff(h, &fake, op->state ? h->v_get(op->state, "labels") : NULL, h->v_get(cfg, "labels"), &set, &del);
            mle_value *lp = h->v_object();
            h->v_set(lp, "addOrUpdateLabels", set);
            h->v_set(lp, "removeLabels", del);
            h->v_set(b, "labels", lp);
        }
        if (attr_changed(h, op, "taints")) {
            mle_value *want = h->v_get(cfg, "taints");
            mle_value *have = op->state ? h->v_get(op->state, "taints") : NULL;
            mle_value *gone = rules_minus(h, have, want);
            mle_value *tp = h->v_object();
            h->v_set(tp, "addOrUpdateTaints", ng_taints_body(h, want));
            h->v_set(tp, "removeTaints", ng_taints_body(h, gone));
            h->v_decref(gone);
            h->v_set(b, "taints", tp);
        }
        char *p = eks_path(cl, "node-groups", name, "/update-config");
        mle_value *r = aws_rest_json(h, c, op, AWS_EKS, "UpdateNodegroupConfig", "POST", p, NULL, b, &e);
        free(p);
        h->v_decref(b);
        if (!r)
            goto fail;
        h->v_decref(r);
        waits = 1;
    }
    free(cl);
    free(name);
    if (waits)
        return in_progress(h, op, c, id, "ACTIVE", deadline_in(h, c, EKS_NG_TIMEOUT_S), EKS_NG_POLL_MS);
    return created(h, op, c, id, NULL, ng_fetch);
fail:
    free(cl);
    free(name);
    st = op_fail(h, op, e);
    return st;
}

/* The delete of a thing in a cluster (ID "cluster:name"); what names it in the error. */
static mle_op_status eks_delete_sub(const mle_host *h, const mle_op *op, const char *what,
                                    const char *coll, const char *action, int64_t timeout_s,
                                    uint32_t poll_ms) {
    AWS_CTX(h, op);
    char *cl = NULL, *name = NULL;
    if (ng_split(op->id, &cl, &name) != 0)
        return op_fail(h, op, h->error_new(h, MLE_E_INVALID, "aws: \"%s\" is not %s",
                                           op->id ? op->id : "", what));
    char *p = eks_path(cl, coll, name, NULL);
    free(cl);
    free(name);
    return eks_delete_at(h, op, c, p, action, timeout_s, poll_ms);
}

static mle_op_status ng_delete(const mle_host *h, const mle_op *op) {
    return eks_delete_sub(h, op, "a node group ID", "node-groups", "DeleteNodegroup", EKS_NG_TIMEOUT_S, EKS_NG_POLL_MS);
}

static mle_op_status ng_poll(const mle_host *h, const mle_op *op) {
    return answer_poll(h, op, 512, ng_fetch, ng_answer);
}

static int ng_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err) {
    const char *cl = op->config ? vstr(h, op->config, "cluster_name") : NULL;
    const char *name = op->config ? vstr(h, op->config, "node_group_name") : NULL;
    if (!cl || !name)
        return 0;
    char *nid = xasprintf("%s:%s", cl, name);
    mle_value *ng = NULL;
    int rc = ng_describe(h, c, op, nid, &ng, err);
    if (rc == 1 && (!tags_map_owned_by(h, op, vpath(h, ng, "tags")) || str_eq(vstr(h, ng, "status"), "DELETING")))
        rc = 0;
    h->v_decref(ng);
    if (rc == 1)
        *id = nid;
    else
        free(nid);
    return rc;
}

static mle_op_status ng_adopt(const mle_host *h, const mle_op *op) {
    return adopt_into_poll(h, op, ng_find_ours, ng_answer, "ACTIVE", EKS_NG_TIMEOUT_S, "node group");
}

static const mle_resource_type aws_eks_node_group_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_eks_node_group",
    .description = "An EKS managed node group (long operation).",
    .attrs = ng_attrs,
    .n_attrs = sizeof ng_attrs / sizeof *ng_attrs,
    .create = ng_create,
    .read = ng_read,
    .update = ng_update,
    .del = ng_delete,
    .import = ng_read,
    .poll = ng_poll,
    .adopt = ng_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_eks_addon. ID: "<cluster>:<addon>". Unproven against moto (not implemented there).
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema addon_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "<cluster>:<addon>."},
    {"cluster_name", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The cluster."},
    {"addon_name", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL,
     "vpc-cni, coredns, kube-proxy, aws-ebs-csi-driver, ..."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The add-on ARN."},
    {"addon_version", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_COMPUTED, NULL,
     "Version; unset takes EKS's default for the cluster version."},
    {"service_account_role_arn", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "IRSA role for the add-on's service account."},
    {"configuration_values", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "JSON text of the add-on's configuration."},
    {"resolve_conflicts", MLE_T_STRING, 0, MLE_A_OPTIONAL, "\"OVERWRITE\"",
     "OVERWRITE, NONE or PRESERVE (applied on create and update)."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

static int addon_describe(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                          mle_value **ad, mle_error **err) {
    char *cl = NULL, *name = NULL;
    if (ng_split(id, &cl, &name) != 0) {
        *err = h->error_new(h, MLE_E_INVALID, "aws: \"%s\" is not an add-on ID (<cluster>:<addon>)",
                            id ? id : "");
        return -1;
    }
    char *p = eks_path(cl, "addons", name, NULL);
    int rc = eks_get(h, c, op, "DescribeAddon", p, "addon", ad, err);
    free(p);
    free(cl);
    free(name);
    return rc;
}

static mle_value *addon_attrs_of(const mle_host *h, const mle_op *op, const char *id,
                                 const mle_value *ad) {
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "cluster_name", vstr(h, ad, "clusterName"));
    vset_str(h, a, "addon_name", vstr(h, ad, "addonName"));
    vset_str(h, a, "arn", vstr(h, ad, "addonArn"));
    vset_str(h, a, "addon_version", vstr_ne(h, ad, "addonVersion"));
    vset_str(h, a, "service_account_role_arn", vstr_ne(h, ad, "serviceAccountRoleArn"));
    vset_str(h, a, "configuration_values", vstr_ne(h, ad, "configurationValues"));
    /* Not part of the add-on's description: it is how we apply, so it stays as asked. */
    vset_str(h, a, "resolve_conflicts", op_str(h, op, "resolve_conflicts") ? op_str(h, op, "resolve_conflicts") : "OVERWRITE");
    h->v_set(a, "tags", tags_from_map(h, vpath(h, ad, "tags")));
    return a;
}

static int addon_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                       mle_value **attrs, mle_error **err) {
    return eks_fetch_live(h, c, op, id, attrs, err, addon_describe, addon_attrs_of);
}

static mle_op_status addon_answer(const mle_host *h, const mle_op *op, aws_ctx *c, const char *id,
                                  const char *awaited, int64_t deadline) {
    mle_value *ad = NULL;
    mle_error *e = NULL;
    int rc = addon_describe(h, c, op, id, &ad, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    if (rc == 0) {
        if (str_eq(awaited, "deleted"))
            return h->op_done(h, op, id, NULL);
        return op_fail(h, op, h->error_new(h, MLE_E_NOT_FOUND, "aws: add-on %s vanished", id));
    }
    const char *status = vstr(h, ad, "status");
    mle_value *issue = jl_count(h, vpath(h, ad, "health.issues")) ? h->v_at(vpath(h, ad, "health.issues"), 0) : NULL;
    mle_op_status st;
    if (str_eq(awaited, "deleted")) {
        st = str_eq(status, "DELETE_FAILED")
                 ? eks_status_answer(h, op, c, id, status, awaited, deadline, EKS_ADDON_POLL_MS, NULL, vstr_ne(h, issue, "message"))
             : h->now_unix_ms() / 1000 <= deadline ? in_progress(h, op, c, id, "deleted", deadline, EKS_ADDON_POLL_MS)
                                                   : poll_timeout(h, op, id, "deleted", status);
    } else {
        mle_value *attrs = str_eq(status, "ACTIVE") || str_eq(status, "DEGRADED") ? addon_attrs_of(h, op, id, ad) : NULL;
        st = eks_status_answer(h, op, c, id, status, "ACTIVE", deadline, EKS_ADDON_POLL_MS, attrs,
                               vstr_ne(h, issue, "message"));
    }
    h->v_decref(ad);
    return st;
}

static int addon_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err);

static mle_op_status addon_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    const mle_value *cfg = op->config;
    const char *cluster = vstr(h, cfg, "cluster_name"), *name = vstr(h, cfg, "addon_name");
    mle_value *b = h->v_object();
    jset_str(h, b, "addonName", name);
    jset_str(h, b, "addonVersion", vstr_ne(h, cfg, "addon_version"));
    jset_str(h, b, "serviceAccountRoleArn", vstr_ne(h, cfg, "service_account_role_arn"));
    jset_str(h, b, "configurationValues", vstr_ne(h, cfg, "configuration_values"));
    jset_str(h, b, "resolveConflicts", vstr_ne(h, cfg, "resolve_conflicts"));
    jset_token(h, b, op);
    h->v_set(b, "tags", tags_with_owner(h, op, user_tags(h, op)));
    char *p = eks_path(cluster, "addons", NULL, NULL);
    mle_error *e = NULL;
    mle_value *r = aws_rest_json(h, c, op, AWS_EKS, "CreateAddon", "POST", p, NULL, b, &e);
    free(p);
    h->v_decref(b);
    char *ours = NULL;
    if (!r && conflict_is_ours(h, c, op, addon_find_ours, &ours, &e) != 1)
        return op_fail(h, op, e);
    free(ours);
    h->v_decref(r);
    char *id = xasprintf("%s:%s", cluster, name);
    mle_op_status st = in_progress(h, op, c, id, "ACTIVE", deadline_in(h, c, EKS_ADDON_TIMEOUT_S), EKS_ADDON_POLL_MS);
    free(id);
    return st;
}

static mle_op_status addon_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, addon_fetch); }

static mle_op_status addon_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    const mle_value *cfg = op->config;
    int waits = 0;
    if (tags_changed(h, op) &&
        eks_update_tags(h, c, op, op->state ? vstr(h, op->state, "arn") : NULL, &e) != 0)
        return op_fail(h, op, e);
    if ((vhas(h, cfg, "addon_version") && attr_changed(h, op, "addon_version")) ||
        attr_changed(h, op, "service_account_role_arn") || attr_changed(h, op, "configuration_values")) {
        char *cl = NULL, *name = NULL;
        if (ng_split(id, &cl, &name) != 0)
            return op_fail(h, op, h->error_new(h, MLE_E_INVALID, "aws: \"%s\" is not an add-on ID", id));
        mle_value *b = h->v_object();
        jset_str(h, b, "addonVersion", vstr_ne(h, cfg, "addon_version"));
        h->v_set(b, "serviceAccountRoleArn", h->v_string(vstr(h, cfg, "service_account_role_arn") ? vstr(h, cfg, "service_account_role_arn") : ""));
        h->v_set(b, "configurationValues", h->v_string(vstr(h, cfg, "configuration_values") ? vstr(h, cfg, "configuration_values") : ""));
        jset_str(h, b, "resolveConflicts", vstr_ne(h, cfg, "resolve_conflicts"));
        jset_token(h, b, op);
        char *p = eks_path(cl, "addons", name, "/update");
        mle_value *r = aws_rest_json(h, c, op, AWS_EKS, "UpdateAddon", "POST", p, NULL, b, &e);
        free(p);
        free(cl);
        free(name);
        h->v_decref(b);
        if (!r)
            return op_fail(h, op, e);
        h->v_decref(r);
        waits = 1;
    }
    if (waits)
        return in_progress(h, op, c, id, "ACTIVE", deadline_in(h, c, EKS_ADDON_TIMEOUT_S), EKS_ADDON_POLL_MS);
    return created(h, op, c, id, NULL, addon_fetch);
}

static mle_op_status addon_delete(const mle_host *h, const mle_op *op) {
    return eks_delete_sub(h, op, "an add-on ID", "addons", "DeleteAddon", EKS_ADDON_TIMEOUT_S, EKS_ADDON_POLL_MS);
}

static mle_op_status addon_poll(const mle_host *h, const mle_op *op) {
    return answer_poll(h, op, 512, addon_fetch, addon_answer);
}

static int addon_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err) {
    const char *cl = op->config ? vstr(h, op->config, "cluster_name") : NULL;
    const char *name = op->config ? vstr(h, op->config, "addon_name") : NULL;
    if (!cl || !name)
        return 0;
    char *aid = xasprintf("%s:%s", cl, name);
    mle_value *ad = NULL;
    int rc = addon_describe(h, c, op, aid, &ad, err);
    if (rc == 1 && !tags_map_owned_by(h, op, vpath(h, ad, "tags")))
        rc = 0;
    h->v_decref(ad);
    if (rc == 1)
        *id = aid;
    else
        free(aid);
    return rc;
}

static mle_op_status addon_adopt(const mle_host *h, const mle_op *op) {
    return adopt_into_poll(h, op, addon_find_ours, addon_answer, "ACTIVE", EKS_ADDON_TIMEOUT_S, NULL);
}

static const mle_resource_type aws_eks_addon_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_eks_addon",
    .description = "An EKS add-on (vpc-cni, coredns, ...). Not provable against moto.",
    .attrs = addon_attrs,
    .n_attrs = sizeof addon_attrs / sizeof *addon_attrs,
    .create = addon_create,
    .read = addon_read,
    .update = addon_update,
    .del = addon_delete,
    .import = addon_read,
    .poll = addon_poll,
    .adopt = addon_adopt,
};
