/*
 * aws_iam.c — identity: aws_iam_role, aws_iam_policy, aws_iam_role_policy_attachment,
 * aws_iam_openid_connect_provider, and the data source aws_caller_identity (STS).
 *
 * IAM speaks the query protocol (lists as Name.member.N, <member> items in answers) through
 * the global endpoint, signed for us-east-1 (aws_client.c). IAM names are caller-chosen, so
 * adoption after a crash looks the resource up by name and checks the ownership tags.
 *
 * Part of the aws.c translation unit (see aws_internal.h).
 */

/* Tags.member.N for a create: the user's tags and the ownership tags. */
static void iam_form_tags(const mle_host *h, aws_form *f, const mle_value *tags) {
    form_tags(h, f, "Tags.member", tags);
}

/* Tag/Untag an IAM resource from state to config. id_key/id name it ("RoleName", name). */
static int iam_update_tags(const mle_host *h, aws_ctx *c, const mle_op *op, const char *tag_action,
                           const char *untag_action, const char *id_key, const char *id,
                           mle_error **err) {
    const query_tagging t = {AWS_IAM, tag_action, untag_action, id_key, "Tags.member", "TagKeys.member", ""};
    return query_update_tags(h, c, op, &t, id, err);
}

/* One IAM call whose answer is not needed. 0 done, 1 NoSuchEntity, -1 with *err. */
static int iam_simple(const mle_host *h, aws_ctx *c, const mle_op *op, const char *action,
                      aws_form *f, mle_error **err) {
    return query_simple(h, c, op, AWS_IAM, action, f, err);
}

/* The account ID of the credentials in use (cached; borrowed from the context). */
static const char *account_id(const mle_host *h, aws_ctx *c, const mle_op *op, mle_error **err) {
    pthread_mutex_lock(&c->mu);
    const char *have = c->account_id;
    pthread_mutex_unlock(&c->mu);
    if (have)
        return have;
    mle_value *r = aws_query(h, c, op, AWS_STS, "GetCallerIdentity", NULL, err);
    if (!r)
        return NULL;
    pthread_mutex_lock(&c->mu);
    if (!c->account_id)
        c->account_id = xstrdup(vstr_ne(h, r, "Account"));
    have = c->account_id;
    pthread_mutex_unlock(&c->mu);
    h->v_decref(r);
    if (!have)
        *err = h->error_new(h, MLE_E_PROVIDER, "sts GetCallerIdentity: no Account in the answer");
    return have;
}

static const char *partition_of(const aws_ctx *c) {
    return starts_with(c->region, "cn-") ? "aws-cn" : starts_with(c->region, "us-gov-") ? "aws-us-gov" : "aws";
}

/* ------------------------------------------------------------------------------------------
 * aws_iam_role
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema role_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The role name."},
    {"name", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The role name."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The role's ARN."},
    {"unique_id", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The stable role ID (AROA...)."},
    {"path", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "\"/\"", "The IAM path."},
    {"assume_role_policy", MLE_T_ANY, 0, MLE_A_REQUIRED, NULL,
     "The trust policy: a table or JSON text."},
    {"description", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL, "A description."},
    {"max_session_duration", MLE_T_INT, 0, MLE_A_OPTIONAL, "3600",
     "Longest session in seconds (3600-43200)."},
    {"permissions_boundary", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, NULL,
     "ARN of a permissions boundary policy."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

static int role_get(const mle_host *h, aws_ctx *c, const mle_op *op, const char *name,
                    mle_value **role, mle_error **err) {
    aws_form f = {0};
    form_add(&f, "RoleName", name);
    mle_error *e = NULL;
    mle_value *r = aws_query(h, c, op, AWS_IAM, "GetRole", &f, &e);
    form_free(&f);
    if (!r)
        return missing_or_err(h, e, err);
    *role = h->v_incref(vpath(h, r, "Role"));
    h->v_decref(r);
    return *role ? 1 : 0;
}

static int role_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                      mle_value **attrs, mle_error **err) {
    mle_value *ro = NULL;
    int rc = role_get(h, c, op, id, &ro, err);
    if (rc <= 0)
        return rc;
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "name", vstr(h, ro, "RoleName"));
    vset_str(h, a, "arn", vstr(h, ro, "Arn"));
    vset_str(h, a, "unique_id", vstr(h, ro, "RoleId"));
    vset_str(h, a, "path", vstr_ne(h, ro, "Path") ? vstr(h, ro, "Path") : "/");
    h->v_set(a, "assume_role_policy",
             doc_attr(h, vstr(h, ro, "AssumeRolePolicyDocument"), prior_attr(h, op, "assume_role_policy")));
    vset_str(h, a, "description", vstr_ne(h, ro, "Description"));
    h->v_set(a, "max_session_duration", h->v_int(vint(h, ro, "MaxSessionDuration", 3600)));
    vset_str(h, a, "permissions_boundary", vstr_ne(h, ro, "PermissionsBoundary.PermissionsBoundaryArn"));
    h->v_set(a, "tags", tags_from_list(h, vpath(h, ro, "Tags"), "member", "Key", "Value"));
    h->v_decref(ro);
    *attrs = a;
    return 1;
}

static int role_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err);

static mle_op_status role_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    const char *name = vstr(h, op->config, "name");
    char *doc = doc_text(h, h->v_get(op->config, "assume_role_policy"));
    if (!doc)
        return op_fail(h, op, err_invalid_attr(h, "assume_role_policy", "is required"));
    aws_form f = {0};
    form_add(&f, "RoleName", name);
    form_add(&f, "Path", vstr_ne(h, op->config, "path"));
    form_add(&f, "AssumeRolePolicyDocument", doc);
    form_add(&f, "Description", vstr_ne(h, op->config, "description"));
    if (vhas(h, op->config, "max_session_duration"))
        form_add_int(&f, "MaxSessionDuration", vint(h, op->config, "max_session_duration", 3600));
    form_add(&f, "PermissionsBoundary", vstr_ne(h, op->config, "permissions_boundary"));
    mle_value *tags = tags_with_owner(h, op, user_tags(h, op));
    iam_form_tags(h, &f, tags);
    h->v_decref(tags);
    free(doc);
    mle_error *e = NULL;
    mle_value *r = aws_query(h, c, op, AWS_IAM, "CreateRole", &f, &e);
    form_free(&f);
    char *id = NULL;
    if (!r && conflict_is_ours(h, c, op, role_find_ours, &id, &e) != 1)
        return op_fail(h, op, e);
    h->v_decref(r);
    free(id);
    return created(h, op, c, name, NULL, role_fetch);
}

static mle_op_status role_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, role_fetch); }

static mle_op_status role_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    int rc = 0;
    if (attr_changed(h, op, "assume_role_policy")) {
        char *doc = doc_text(h, h->v_get(op->config, "assume_role_policy"));
        aws_form f = {0};
        form_add(&f, "RoleName", id);
        form_add(&f, "PolicyDocument", doc);
        free(doc);
        rc = iam_simple(h, c, op, "UpdateAssumeRolePolicy", &f, &e) < 0 ? -1 : 0;
    }
    if (rc == 0 && (attr_changed(h, op, "description") || attr_changed(h, op, "max_session_duration"))) {
        aws_form f = {0};
        form_add(&f, "RoleName", id);
        form_add(&f, "Description", vstr(h, op->config, "description") ? vstr(h, op->config, "description") : "");
        if (vhas(h, op->config, "max_session_duration"))
            form_add_int(&f, "MaxSessionDuration", vint(h, op->config, "max_session_duration", 3600));
        rc = iam_simple(h, c, op, "UpdateRole", &f, &e) < 0 ? -1 : 0;
    }
    if (rc == 0)
        rc = iam_update_tags(h, c, op, "TagRole", "UntagRole", "RoleName", id, &e);
    return rc != 0 ? op_fail(h, op, e) : created(h, op, c, id, NULL, role_fetch);
}

static mle_op_status role_delete(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    if (!need_id(h, op, &e))
        return op_fail(h, op, e);
    aws_form f = {0};
    form_add(&f, "RoleName", op->id);
    int rc = iam_simple(h, c, op, "DeleteRole", &f, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    return rc == 1 ? h->op_not_found(h, op) : h->op_done(h, op, op->id, NULL);
}

/* A role of that name is ours only when it carries our ownership tags: a name clash with a
 * stranger's role must not become adoption. */
static int role_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err) {
    const char *name = op->config ? vstr(h, op->config, "name") : NULL;
    if (!name)
        return 0;
    mle_value *ro = NULL;
    int rc = role_get(h, c, op, name, &ro, err);
    if (rc <= 0)
        return rc;
    int ours = tags_owned_by(h, op, vpath(h, ro, "Tags"), "member", "Key", "Value");
    h->v_decref(ro);
    if (ours)
        *id = xstrdup(name);
    return ours;
}

static mle_op_status role_adopt(const mle_host *h, const mle_op *op) {
    return adopt_by(h, op, role_find_ours, NULL, role_fetch);
}

static mle_op_status role_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, NULL, role_fetch); }

static const mle_resource_type aws_iam_role_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_iam_role",
    .description = "An IAM role with its trust policy.",
    .attrs = role_attrs,
    .n_attrs = sizeof role_attrs / sizeof *role_attrs,
    .create = role_create,
    .read = role_read,
    .update = role_update,
    .del = role_delete,
    .import = role_read,
    .poll = role_poll,
    .adopt = role_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_iam_policy (customer managed). ID: the ARN.
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema policy_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The policy ARN."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The policy ARN."},
    {"name", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The policy name."},
    {"path", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "\"/\"", "The IAM path."},
    {"description", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, NULL,
     "A description (IAM cannot change it)."},
    {"policy", MLE_T_ANY, 0, MLE_A_REQUIRED, NULL,
     "The policy document: a table or JSON text. A change makes a new default version."},
    {"policy_id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The stable policy ID (ANPA...)."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

static int policy_get(const mle_host *h, aws_ctx *c, const mle_op *op, const char *arn,
                      mle_value **pol, mle_error **err) {
    aws_form f = {0};
    form_add(&f, "PolicyArn", arn);
    mle_error *e = NULL;
    mle_value *r = aws_query(h, c, op, AWS_IAM, "GetPolicy", &f, &e);
    form_free(&f);
    if (!r)
        return missing_or_err(h, e, err);
    *pol = h->v_incref(vpath(h, r, "Policy"));
    h->v_decref(r);
    return *pol ? 1 : 0;
}

static int policy_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                        mle_value **attrs, mle_error **err) {
    mle_value *p = NULL;
    int rc = policy_get(h, c, op, id, &p, err);
    if (rc <= 0)
        return rc;
    aws_form f = {0};
    form_add(&f, "PolicyArn", id);
    form_add(&f, "VersionId", vstr(h, p, "DefaultVersionId"));
    mle_value *v = aws_query(h, c, op, AWS_IAM, "GetPolicyVersion", &f, err);
    form_free(&f);
    if (!v) {
        h->v_decref(p);
        return -1;
    }
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "arn", vstr(h, p, "Arn"));
    vset_str(h, a, "name", vstr(h, p, "PolicyName"));
    vset_str(h, a, "path", vstr_ne(h, p, "Path") ? vstr(h, p, "Path") : "/");
    vset_str(h, a, "description", vstr_ne(h, p, "Description"));
    h->v_set(a, "policy", doc_attr(h, vstr(h, v, "PolicyVersion.Document"), prior_attr(h, op, "policy")));
    vset_str(h, a, "policy_id", vstr(h, p, "PolicyId"));
    h->v_set(a, "tags", tags_from_list(h, vpath(h, p, "Tags"), "member", "Key", "Value"));
    h->v_decref(v);
    h->v_decref(p);
    *attrs = a;
    return 1;
}

static int policy_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err);

static mle_op_status policy_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    char *doc = doc_text(h, h->v_get(op->config, "policy"));
    if (!doc)
        return op_fail(h, op, err_invalid_attr(h, "policy", "is required"));
    aws_form f = {0};
    form_add(&f, "PolicyName", vstr(h, op->config, "name"));
    form_add(&f, "Path", vstr_ne(h, op->config, "path"));
    form_add(&f, "PolicyDocument", doc);
    form_add(&f, "Description", vstr_ne(h, op->config, "description"));
    mle_value *tags = tags_with_owner(h, op, user_tags(h, op));
    iam_form_tags(h, &f, tags);
    h->v_decref(tags);
    free(doc);
    mle_error *e = NULL;
    mle_value *r = aws_query(h, c, op, AWS_IAM, "CreatePolicy", &f, &e);
    form_free(&f);
    return created_from(h, op, c, r, e, policy_find_ours, "Policy.Arn", "iam CreatePolicy", "Arn", NULL,
                        policy_fetch);
}

static mle_op_status policy_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, policy_fetch); }

/* Versions other than the default, oldest first would be nicer; IAM keeps at most five,
 * so before adding one, delete one non-default version when five exist. */
static int policy_make_room(const mle_host *h, aws_ctx *c, const mle_op *op, const char *arn,
                            mle_error **err) {
    aws_form f = {0};
    form_add(&f, "PolicyArn", arn);
    mle_value *r = aws_query(h, c, op, AWS_IAM, "ListPolicyVersions", &f, err);
    form_free(&f);
    if (!r)
        return -1;
    mle_value *vs = vpath(h, r, "Versions");
    size_t n = xl_count(h, vs, "member");
    int rc = 0;
    if (n >= 5) {
        for (size_t i = n; i-- > 0;) {
            mle_value *v = xl_at(h, vs, "member", i);
            if (vbool(h, v, "IsDefaultVersion", 0))
                continue;
            aws_form d = {0};
            form_add(&d, "PolicyArn", arn);
            form_add(&d, "VersionId", vstr(h, v, "VersionId"));
            rc = iam_simple(h, c, op, "DeletePolicyVersion", &d, err) < 0 ? -1 : 0;
            break;
        }
    }
    h->v_decref(r);
    return rc;
}

static mle_op_status policy_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    int rc = 0;
    if (attr_changed(h, op, "policy")) {
        rc = policy_make_room(h, c, op, id, &e);
        if (rc == 0) {
            char *doc = doc_text(h, h->v_get(op->config, "policy"));
            aws_form f = {0};
            form_add(&f, "PolicyArn", id);
            form_add(&f, "PolicyDocument", doc);
            form_add(&f, "SetAsDefault", "true");
            free(doc);
            rc = iam_simple(h, c, op, "CreatePolicyVersion", &f, &e) < 0 ? -1 : 0;
        }
    }
    if (rc == 0)
        rc = iam_update_tags(h, c, op, "TagPolicy", "UntagPolicy", "PolicyArn", id, &e);
    return rc != 0 ? op_fail(h, op, e) : created(h, op, c, id, NULL, policy_fetch);
}

static mle_op_status policy_delete(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    if (!need_id(h, op, &e))
        return op_fail(h, op, e);
    /* IAM refuses to delete a policy that still has non-default versions. */
    aws_form f = {0};
    form_add(&f, "PolicyArn", op->id);
    mle_value *r = aws_query(h, c, op, AWS_IAM, "ListPolicyVersions", &f, &e);
    form_free(&f);
    if (!r)
        return op_fail_or_gone(h, op, e);
    mle_value *vs = vpath(h, r, "Versions");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < xl_count(h, vs, "member"); i++) {
        mle_value *v = xl_at(h, vs, "member", i);
        if (vbool(h, v, "IsDefaultVersion", 0))
            continue;
        aws_form d = {0};
        form_add(&d, "PolicyArn", op->id);
        form_add(&d, "VersionId", vstr(h, v, "VersionId"));
        rc = iam_simple(h, c, op, "DeletePolicyVersion", &d, &e) < 0 ? -1 : 0;
    }
    h->v_decref(r);
    if (rc != 0)
        return op_fail(h, op, e);
    aws_form d = {0};
    form_add(&d, "PolicyArn", op->id);
    rc = iam_simple(h, c, op, "DeletePolicy", &d, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    return rc == 1 ? h->op_not_found(h, op) : h->op_done(h, op, op->id, NULL);
}

static int policy_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err) {
    const char *name = op->config ? vstr(h, op->config, "name") : NULL;
    if (!name)
        return 0;
    const char *acct = account_id(h, c, op, err);
    if (!acct)
        return -1;
    const char *path = vstr_ne(h, op->config, "path");
    char *arn = xasprintf("arn:%s:iam::%s:policy%s%s", partition_of(c), acct, path ? path : "/", name);
    mle_value *p = NULL;
    int rc = policy_get(h, c, op, arn, &p, err);
    if (rc == 1 && !tags_owned_by(h, op, vpath(h, p, "Tags"), "member", "Key", "Value"))
        rc = 0;
    h->v_decref(p);
    if (rc == 1)
        *id = arn;
    else
        free(arn);
    return rc;
}

static mle_op_status policy_adopt(const mle_host *h, const mle_op *op) {
    return adopt_by(h, op, policy_find_ours, NULL, policy_fetch);
}

static mle_op_status policy_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, NULL, policy_fetch); }

static const mle_resource_type aws_iam_policy_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_iam_policy",
    .description = "A customer-managed IAM policy.",
    .attrs = policy_attrs,
    .n_attrs = sizeof policy_attrs / sizeof *policy_attrs,
    .create = policy_create,
    .read = policy_read,
    .update = policy_update,
    .del = policy_delete,
    .import = policy_read,
    .poll = policy_poll,
    .adopt = policy_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_iam_role_policy_attachment. ID: "<role>/<policy ARN>" (role names have no '/').
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema rpa_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "<role>/<policy ARN>."},
    {"role", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The role name."},
    {"policy_arn", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL,
     "The managed policy to attach."},
};

/* Split an attachment ID. 0, or -1 when malformed. role/arn are copies (free()). */
static int rpa_split(const char *id, char **role, char **arn) { return split_at(id, '/', role, arn); }

/* 1 attached, 0 not (or the role is gone), -1 error. Follows IsTruncated/Marker. */
static int rpa_attached(const mle_host *h, aws_ctx *c, const mle_op *op, const char *role,
                        const char *arn, mle_error **err) {
    char *marker = NULL;
    for (int page = 0; page < 100; page++) {
        aws_form f = {0};
        form_add(&f, "RoleName", role);
        form_add(&f, "Marker", marker);
        mle_error *e = NULL;
        mle_value *r = aws_query(h, c, op, AWS_IAM, "ListAttachedRolePolicies", &f, &e);
        form_free(&f);
        free(marker);
        marker = NULL;
        if (!r)
            return missing_or_err(h, e, err);
        mle_value *ps = vpath(h, r, "AttachedPolicies");
        for (size_t i = 0; i < xl_count(h, ps, "member"); i++) {
            if (str_eq(vstr(h, xl_at(h, ps, "member", i), "PolicyArn"), arn)) {
                h->v_decref(r);
                return 1;
            }
        }
        if (vbool(h, r, "IsTruncated", 0) && vstr_ne(h, r, "Marker"))
            marker = xstrdup(vstr(h, r, "Marker"));
        h->v_decref(r);
        if (!marker)
            return 0;
    }
    free(marker);
    return 0;
}

static int rpa_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                     mle_value **attrs, mle_error **err) {
    char *role = NULL, *arn = NULL;
    if (rpa_split(id, &role, &arn) != 0) {
        *err = h->error_new(h, MLE_E_INVALID, "aws: \"%s\" is not an attachment ID "
                                              "(<role>/<policy ARN>)", id ? id : "");
        return -1;
    }
    int rc = rpa_attached(h, c, op, role, arn, err);
    if (rc == 1) {
        mle_value *a = h->v_object();
        vset_str(h, a, "id", id);
        vset_str(h, a, "role", role);
        vset_str(h, a, "policy_arn", arn);
        *attrs = a;
    }
    free(role);
    free(arn);
    return rc;
}

static mle_op_status rpa_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    const char *role = vstr(h, op->config, "role"), *arn = vstr(h, op->config, "policy_arn");
    aws_form f = {0};
    form_add(&f, "RoleName", role);
    form_add(&f, "PolicyArn", arn);
    mle_error *e = NULL;
    mle_value *r = aws_query(h, c, op, AWS_IAM, "AttachRolePolicy", &f, &e);
    form_free(&f);
    if (!r)
        return op_fail(h, op, e);
    h->v_decref(r);
    char *id = xasprintf("%s/%s", role, arn);
    mle_op_status st = created(h, op, c, id, NULL, rpa_fetch);
    free(id);
    return st;
}

static mle_op_status rpa_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, rpa_fetch); }

static mle_op_status rpa_delete(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    char *role = NULL, *arn = NULL;
    if (rpa_split(op->id, &role, &arn) != 0)
        return op_fail(h, op, h->error_new(h, MLE_E_INVALID, "aws: \"%s\" is not an attachment ID",
                                           op->id ? op->id : ""));
    aws_form f = {0};
    form_add(&f, "RoleName", role);
    form_add(&f, "PolicyArn", arn);
    free(role);
    free(arn);
    mle_error *e = NULL;
    int rc = iam_simple(h, c, op, "DetachRolePolicy", &f, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    return rc == 1 ? h->op_not_found(h, op) : h->op_done(h, op, op->id, NULL);
}

/* An attachment has no tags; attaching twice is harmless, so adopting the one that exists
 * is right whoever made it. */
static mle_op_status rpa_adopt(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    const char *role = op->config ? vstr(h, op->config, "role") : NULL;
    const char *arn = op->config ? vstr(h, op->config, "policy_arn") : NULL;
    if (!role || !arn)
        return h->op_not_found(h, op);
    char *id = xasprintf("%s/%s", role, arn);
    mle_op_status st = adopt_id(h, op, c, id, NULL, rpa_fetch);
    free(id);
    return st;
}

static mle_op_status rpa_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, NULL, rpa_fetch); }

static const mle_resource_type aws_iam_rpa_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_iam_role_policy_attachment",
    .description = "A managed policy attached to a role.",
    .attrs = rpa_attrs,
    .n_attrs = sizeof rpa_attrs / sizeof *rpa_attrs,
    .create = rpa_create,
    .read = rpa_read,
    .update = NULL,
    .del = rpa_delete,
    .import = rpa_read,
    .poll = rpa_poll,
    .adopt = rpa_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_iam_openid_connect_provider (the cluster's OIDC issuer, for IRSA). ID: the ARN.
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema oidc_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The provider ARN."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The provider ARN."},
    {"url", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL,
     "The issuer URL (https://...), e.g. an EKS cluster's oidc_issuer."},
    {"client_id_list", MLE_T_LIST, MLE_T_STRING, MLE_A_REQUIRED, NULL,
     "Audiences (sts.amazonaws.com for IRSA)."},
    {"condition_prefix", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL,
     "The issuer without https://, as IAM condition keys name it (<prefix>:sub, <prefix>:aud) "
     "in an IRSA role's trust policy."},
    {"thumbprint_list", MLE_T_LIST, MLE_T_STRING, MLE_A_OPTIONAL | MLE_A_COMPUTED, NULL,
     "SHA-1 thumbprints of the issuer's CA (IAM no longer needs them for well-known CAs)."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

/* "https://x/y" and "x/y" name the same issuer; IAM answers without the scheme. */
static const char *strip_https(const char *u) {
    return starts_with(u, "https://") ? u + 8 : u;
}

static mle_value *string_list(const mle_host *h, const mle_value *xml_list) {
    mle_value *arr = h->v_array();
    for (size_t i = 0; i < xl_count(h, xml_list, "member"); i++) {
        const char *s = h->v_str(xl_at(h, xml_list, "member", i));
        if (s)
            h->v_append(arr, h->v_string(s));
    }
    return arr;
}

static int oidc_get(const mle_host *h, aws_ctx *c, const mle_op *op, const char *arn,
                    mle_value **out, mle_error **err) {
    aws_form f = {0};
    form_add(&f, "OpenIDConnectProviderArn", arn);
    mle_error *e = NULL;
    mle_value *r = aws_query(h, c, op, AWS_IAM, "GetOpenIDConnectProvider", &f, &e);
    form_free(&f);
    if (!r)
        return missing_or_err(h, e, err);
    *out = r;
    return 1;
}

static int oidc_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                      mle_value **attrs, mle_error **err) {
    mle_value *r = NULL;
    int rc = oidc_get(h, c, op, id, &r, err);
    if (rc <= 0)
        return rc;
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "arn", id);
    const char *url = vstr(h, r, "Url");
    const char *prior = op_str(h, op, "url");
    if (url && prior && str_eq(strip_https(prior), strip_https(url))) {
        vset_str(h, a, "url", prior);
    } else if (url) {
        char *u = starts_with(url, "https://") ? xstrdup(url) : xasprintf("https://%s", url);
        vset_str(h, a, "url", u);
        free(u);
    }
    if (url)
        vset_str(h, a, "condition_prefix", strip_https(url));
    h->v_set(a, "client_id_list", order_like(h, string_list(h, vpath(h, r, "ClientIDList")),
                                             prior_attr(h, op, "client_id_list")));
    h->v_set(a, "thumbprint_list", order_like(h, string_list(h, vpath(h, r, "ThumbprintList")),
                                              prior_attr(h, op, "thumbprint_list")));
    h->v_set(a, "tags", tags_from_list(h, vpath(h, r, "Tags"), "member", "Key", "Value"));
    h->v_decref(r);
    *attrs = a;
    return 1;
}

static int oidc_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err);

static mle_op_status oidc_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    aws_form f = {0};
    form_add(&f, "Url", vstr(h, op->config, "url"));
    mle_value *ids = h->v_get(op->config, "client_id_list");
    for (size_t i = 0; i < jl_count(h, ids); i++)
        form_addf(&f, h->v_str(h->v_at(ids, i)), "ClientIDList.member.%zu", i + 1);
    mle_value *tps = h->v_get(op->config, "thumbprint_list");
    for (size_t i = 0; i < jl_count(h, tps); i++)
        form_addf(&f, h->v_str(h->v_at(tps, i)), "ThumbprintList.member.%zu", i + 1);
    mle_value *tags = tags_with_owner(h, op, user_tags(h, op));
    iam_form_tags(h, &f, tags);
    h->v_decref(tags);
    mle_error *e = NULL;
    mle_value *r = aws_query(h, c, op, AWS_IAM, "CreateOpenIDConnectProvider", &f, &e);
    form_free(&f);
    return created_from(h, op, c, r, e, oidc_find_ours, "OpenIDConnectProviderArn",
                        "iam CreateOpenIDConnectProvider", "ARN", NULL, oidc_fetch);
}

static mle_op_status oidc_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, oidc_fetch); }

static mle_op_status oidc_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    int rc = 0;
    if (attr_changed(h, op, "thumbprint_list") && vhas(h, op->config, "thumbprint_list")) {
        aws_form f = {0};
        form_add(&f, "OpenIDConnectProviderArn", id);
        mle_value *tps = h->v_get(op->config, "thumbprint_list");
        for (size_t i = 0; i < jl_count(h, tps); i++)
            form_addf(&f, h->v_str(h->v_at(tps, i)), "ThumbprintList.member.%zu", i + 1);
        rc = iam_simple(h, c, op, "UpdateOpenIDConnectProviderThumbprint", &f, &e) < 0 ? -1 : 0;
    }
    if (rc == 0 && attr_changed(h, op, "client_id_list")) {
        mle_value *want = h->v_get(op->config, "client_id_list");
        mle_value *have = op->state ? h->v_get(op->state, "client_id_list") : NULL;
        for (size_t i = 0; rc == 0 && i < jl_count(h, have); i++) {
            if (array_has(h, want, h->v_at(have, i)))
                continue;
            aws_form f = {0};
            form_add(&f, "OpenIDConnectProviderArn", id);
            form_add(&f, "ClientID", h->v_str(h->v_at(have, i)));
            rc = iam_simple(h, c, op, "RemoveClientIDFromOpenIDConnectProvider", &f, &e) < 0 ? -1 : 0;
        }
        for (size_t i = 0; rc == 0 && i < jl_count(h, want); i++) {
            if (array_has(h, have, h->v_at(want, i)))
                continue;
            aws_form f = {0};
            form_add(&f, "OpenIDConnectProviderArn", id);
            form_add(&f, "ClientID", h->v_str(h->v_at(want, i)));
            rc = iam_simple(h, c, op, "AddClientIDToOpenIDConnectProvider", &f, &e) < 0 ? -1 : 0;
        }
    }
    if (rc == 0)
        rc = iam_update_tags(h, c, op, "TagOpenIDConnectProvider", "UntagOpenIDConnectProvider",
                             "OpenIDConnectProviderArn", id, &e);
    return rc != 0 ? op_fail(h, op, e) : created(h, op, c, id, NULL, oidc_fetch);
}

static mle_op_status oidc_delete(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    if (!need_id(h, op, &e))
        return op_fail(h, op, e);
    aws_form f = {0};
    form_add(&f, "OpenIDConnectProviderArn", op->id);
    int rc = iam_simple(h, c, op, "DeleteOpenIDConnectProvider", &f, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    return rc == 1 ? h->op_not_found(h, op) : h->op_done(h, op, op->id, NULL);
}

/* The provider's ARN ends with the issuer without its scheme; one issuer has at most one
 * provider per account, so the list finds it. */
static int oidc_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err) {
    const char *url = op->config ? vstr(h, op->config, "url") : NULL;
    if (!url)
        return 0;
    mle_value *r = aws_query(h, c, op, AWS_IAM, "ListOpenIDConnectProviders", NULL, err);
    if (!r)
        return -1;
    char *suffix = xasprintf(":oidc-provider/%s", strip_https(url));
    char *arn = NULL;
    mle_value *l = vpath(h, r, "OpenIDConnectProviderList");
    for (size_t i = 0; i < xl_count(h, l, "member") && !arn; i++) {
        const char *a = vstr(h, xl_at(h, l, "member", i), "Arn");
        if (a && ends_with(a, suffix))
            arn = xstrdup(a);
    }
    free(suffix);
    h->v_decref(r);
    if (!arn)
        return 0;
    mle_value *p = NULL;
    int rc = oidc_get(h, c, op, arn, &p, err);
    if (rc == 1 && !tags_owned_by(h, op, vpath(h, p, "Tags"), "member", "Key", "Value"))
        rc = 0;
    h->v_decref(p);
    if (rc == 1)
        *id = arn;
    else
        free(arn);
    return rc;
}

static mle_op_status oidc_adopt(const mle_host *h, const mle_op *op) {
    return adopt_by(h, op, oidc_find_ours, NULL, oidc_fetch);
}

static mle_op_status oidc_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, NULL, oidc_fetch); }

static const mle_resource_type aws_iam_oidc_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_iam_openid_connect_provider",
    .description = "An IAM OIDC identity provider (an EKS cluster's issuer, for IRSA).",
    .attrs = oidc_attrs,
    .n_attrs = sizeof oidc_attrs / sizeof *oidc_attrs,
    .create = oidc_create,
    .read = oidc_read,
    .update = oidc_update,
    .del = oidc_delete,
    .import = oidc_read,
    .poll = oidc_poll,
    .adopt = oidc_adopt,
};

/* ------------------------------------------------------------------------------------------
 * data source aws_caller_identity
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema caller_attrs[] = {
    {"account_id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The account ID."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The caller's ARN."},
    {"user_id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The caller's unique ID."},
    {"partition", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "aws, aws-cn or aws-us-gov."},
    {"region", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The driver's region."},
};

static mle_op_status caller_read(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    mle_value *r = aws_query(h, c, op, AWS_STS, "GetCallerIdentity", NULL, &e);
    if (!r)
        return op_fail(h, op, e);
    const char *acct = vstr_ne(h, r, "Account");
    if (!acct) {
        h->v_decref(r);
        return op_fail(h, op, h->error_new(h, MLE_E_PROVIDER, "sts GetCallerIdentity: no Account"));
    }
    mle_value *a = h->v_object();
    vset_str(h, a, "account_id", acct);
    vset_str(h, a, "arn", vstr(h, r, "Arn"));
    vset_str(h, a, "user_id", vstr(h, r, "UserId"));
    vset_str(h, a, "partition", partition_of(c));
    vset_str(h, a, "region", c->region);
    mle_op_status st = h->op_done(h, op, acct, a);
    h->v_decref(r);
    return st;
}

static const mle_resource_type aws_caller_identity_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_caller_identity",
    .description = "Who the driver's credentials are (account ID, ARN).",
    .attrs = caller_attrs,
    .n_attrs = sizeof caller_attrs / sizeof *caller_attrs,
    .flags = MLE_RT_DATA_SOURCE,
    .read = caller_read,
};
