/*
 * aws_misc.c — the JSON-protocol services: aws_ecr_repository, aws_secretsmanager_secret
 * and aws_kms_key. Each request is one JSON document to POST / with X-Amz-Target
 * (aws_client.c); tags go in the create call.
 *
 * Part of the aws.c translation unit (see aws_internal.h).
 */

/* [{<kname>: k, <vname>: v}, ...] from a tags object (new array). */
static mle_value *json_tag_list(const mle_host *h, const mle_value *tags, const char *kname,
                                const char *vname) {
    mle_value *arr = h->v_array();
    void *it = NULL;
    mle_value *v;
    const char *k;
    while (tags && (k = h->v_next(tags, &it, &v))) {
        mle_value *o = h->v_object();
        h->v_set(o, kname, h->v_string(k));
        h->v_set(o, vname, h->v_string(h->v_str(v) ? h->v_str(v) : ""));
        h->v_append(arr, o);
    }
    return arr;
}

/* A JSON call whose answer is not needed: 0, 1 when the resource is not found, -1. */
static int json_simple(const mle_host *h, aws_ctx *c, const mle_op *op, aws_svc svc,
                       const char *operation, mle_value *body, mle_error **err) {
    mle_error *e = NULL;
    mle_value *r = aws_json(h, c, op, svc, operation, body, &e);
    h->v_decref(body);
    if (r) {
        h->v_decref(r);
        return 0;
    }
    return gone_or_err(h, e, err);
}

/* A JSON call that may find nothing: 1 with *out, 0 not found, -1 with *err. Steals body. */
static int json_get(const mle_host *h, aws_ctx *c, const mle_op *op, aws_svc svc,
                    const char *operation, mle_value *body, mle_value **out, mle_error **err) {
    mle_error *e = NULL;
    *out = aws_json(h, c, op, svc, operation, body, &e);
    h->v_decref(body);
    if (*out)
        return 1;
    return missing_or_err(h, e, err);
}

/* Tag/untag from state to config through <svc>.TagResource / UntagResource. id_key names the
 * resource member ("resourceArn", "SecretId", "KeyId"), tags_key/untag_key the lists. */
static int json_update_tags(const mle_host *h, aws_ctx *c, const mle_op *op, aws_svc svc,
                            const char *id_key, const char *id, const char *tags_key,
                            const char *untag_key, const char *kname, const char *vname,
                            mle_error **err) {
    if (!tags_changed(h, op))
        return 0;
    mle_value *set = NULL, *del = NULL;
    tags_diff(h, op, op->state ? h->v_get(op->state, "tags") : NULL, user_tags(h, op), &set, &del);
    mle_value *b = h->v_object();
    h->v_set(b, id_key, h->v_string(id));
    h->v_set(b, tags_key, json_tag_list(h, set, kname, vname));
    h->v_decref(set);
    int rc = json_simple(h, c, op, svc, "TagResource", b, err) < 0 ? -1 : 0;
    if (rc == 0 && h->v_len(del) > 0) {
        b = h->v_object();
        h->v_set(b, id_key, h->v_string(id));
        h->v_set(b, untag_key, h->v_incref(del));
        rc = json_simple(h, c, op, svc, "UntagResource", b, err) < 0 ? -1 : 0;
    }
    h->v_decref(del);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * aws_ecr_repository. ID: the repository name.
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema ecr_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The repository name."},
    {"name", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The repository name."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The repository ARN."},
    {"registry_id", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The registry (account) ID."},
    {"repository_url", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "Where to docker push."},
    {"image_tag_mutability", MLE_T_STRING, 0, MLE_A_OPTIONAL, "\"MUTABLE\"", "MUTABLE or IMMUTABLE."},
    {"scan_on_push", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false", "Scan images for CVEs when pushed."},
    {"encryption_type", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "\"AES256\"", "AES256 or KMS."},
    {"kms_key", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, NULL, "KMS key for encryption_type KMS."},
    {"force_delete", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false", "Destroy even when images remain."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

static int ecr_describe(const mle_host *h, aws_ctx *c, const mle_op *op, const char *name,
                        mle_value **repo, mle_error **err) {
    mle_value *b = h->v_object();
    mle_value *names = h->v_array();
    h->v_append(names, h->v_string(name));
    h->v_set(b, "repositoryNames", names);
    mle_value *r = NULL;
    int rc = json_get(h, c, op, AWS_ECR, "DescribeRepositories", b, &r, err);
    if (rc <= 0)
        return rc;
    mle_value *list = h->v_get(r, "repositories");
    *repo = jl_count(h, list) ? h->v_incref(h->v_at(list, 0)) : NULL;
    h->v_decref(r);
    return *repo ? 1 : 0;
}

/* All tags of an ARN (ECR ListTagsForResource), mlengine:* included; NULL with *err. */
static mle_value *ecr_tags_raw(const mle_host *h, aws_ctx *c, const mle_op *op, const char *arn,
                               mle_error **err) {
    mle_value *b = h->v_object();
    h->v_set(b, "resourceArn", h->v_string(arn));
    mle_value *r = aws_json(h, c, op, AWS_ECR, "ListTagsForResource", b, err);
    h->v_decref(b);
    if (!r)
        return NULL;
    mle_value *t = h->v_incref(h->v_get(r, "tags") ? h->v_get(r, "tags") : NULL);
    mle_value *out = t ? t : h->v_array();
    h->v_decref(r);
    return out;
}

static int ecr_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                     mle_value **attrs, mle_error **err) {
    mle_value *repo = NULL;
    int rc = ecr_describe(h, c, op, id, &repo, err);
    if (rc <= 0)
        return rc;
    mle_value *tags = ecr_tags_raw(h, c, op, vstr(h, repo, "repositoryArn"), err);
    if (!tags) {
        h->v_decref(repo);
        return -1;
    }
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "name", vstr(h, repo, "repositoryName"));
    vset_str(h, a, "arn", vstr(h, repo, "repositoryArn"));
    vset_str(h, a, "registry_id", vstr(h, repo, "registryId"));
    vset_str(h, a, "repository_url", vstr(h, repo, "repositoryUri"));
    vset_str(h, a, "image_tag_mutability", vstr_ne(h, repo, "imageTagMutability") ? vstr(h, repo, "imageTagMutability") : "MUTABLE");
    h->v_set(a, "scan_on_push", h->v_bool(vbool(h, repo, "imageScanningConfiguration.scanOnPush", 0)));
    vset_str(h, a, "encryption_type",
             vstr_ne(h, repo, "encryptionConfiguration.encryptionType") ? vstr(h, repo, "encryptionConfiguration.encryptionType") : "AES256");
    vset_str(h, a, "kms_key", vstr_ne(h, repo, "encryptionConfiguration.kmsKey"));
    mle_value *fd = op_attr(h, op, "force_delete");
    h->v_set(a, "force_delete", h->v_bool(fd ? h->v_bool_of(fd) : 0));
    h->v_set(a, "tags", tags_from_list(h, tags, NULL, "Key", "Value"));
    h->v_decref(tags);
    h->v_decref(repo);
    *attrs = a;
    return 1;
}

static int ecr_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err);

static mle_op_status ecr_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    const mle_value *cfg = op->config;
    const char *name = vstr(h, cfg, "name");
    mle_value *b = h->v_object();
    h->v_set(b, "repositoryName", h->v_string(name));
    mle_value *tags = tags_with_owner(h, op, user_tags(h, op));
    h->v_set(b, "tags", json_tag_list(h, tags, "Key", "Value"));
    h->v_decref(tags);
    jset_str(h, b, "imageTagMutability", vstr_ne(h, cfg, "image_tag_mutability"));
    mle_value *scan = h->v_object();
    h->v_set(scan, "scanOnPush", h->v_bool(vbool(h, cfg, "scan_on_push", 0)));
    h->v_set(b, "imageScanningConfiguration", scan);
    mle_value *enc = h->v_object();
    jset_str(h, enc, "encryptionType", vstr_ne(h, cfg, "encryption_type") ? vstr(h, cfg, "encryption_type") : "AES256");
    jset_str(h, enc, "kmsKey", vstr_ne(h, cfg, "kms_key"));
    h->v_set(b, "encryptionConfiguration", enc);
    mle_error *e = NULL;
    mle_value *r = aws_json(h, c, op, AWS_ECR, "CreateRepository", b, &e);
    h->v_decref(b);
    char *ours = NULL;
    if (!r && conflict_is_ours(h, c, op, ecr_find_ours, &ours, &e) != 1)
        return op_fail(h, op, e);
    free(ours);
    h->v_decref(r);
    return created(h, op, c, name, NULL, ecr_fetch);
}

static mle_op_status ecr_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, ecr_fetch); }

static mle_op_status ecr_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    const mle_value *cfg = op->config;
    int rc = 0;
    if (attr_changed(h, op, "image_tag_mutability")) {
        mle_value *b = h->v_object();
        h->v_set(b, "repositoryName", h->v_string(id));
        h->v_set(b, "imageTagMutability", h->v_string(vstr_ne(h, cfg, "image_tag_mutability") ? vstr(h, cfg, "image_tag_mutability") : "MUTABLE"));
        rc = json_simple(h, c, op, AWS_ECR, "PutImageTagMutability", b, &e) < 0 ? -1 : 0;
    }
    if (rc == 0 && attr_changed(h, op, "scan_on_push")) {
        mle_value *b = h->v_object();
        h->v_set(b, "repositoryName", h->v_string(id));
        mle_value *scan = h->v_object();
        h->v_set(scan, "scanOnPush", h->v_bool(vbool(h, cfg, "scan_on_push", 0)));
        h->v_set(b, "imageScanningConfiguration", scan);
        rc = json_simple(h, c, op, AWS_ECR, "PutImageScanningConfiguration", b, &e) < 0 ? -1 : 0;
    }
    if (rc == 0 && tags_changed(h, op))
        rc = json_update_tags(h, c, op, AWS_ECR, "resourceArn", op->state ? vstr(h, op->state, "arn") : "",
                              "tags", "tagKeys", "Key", "Value", &e);
    return rc != 0 ? op_fail(h, op, e) : created(h, op, c, id, NULL, ecr_fetch);
}

static mle_op_status ecr_delete(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    if (!need_id(h, op, &e))
        return op_fail(h, op, e);
    mle_value *b = h->v_object();
    h->v_set(b, "repositoryName", h->v_string(op->id));
    if (op->state && vbool(h, op->state, "force_delete", 0))
        h->v_set(b, "force", h->v_bool(1));
    int rc = json_simple(h, c, op, AWS_ECR, "DeleteRepository", b, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    return rc == 1 ? h->op_not_found(h, op) : h->op_done(h, op, op->id, NULL);
}

static int ecr_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err) {
    const char *name = op->config ? vstr(h, op->config, "name") : NULL;
    if (!name)
        return 0;
    mle_value *repo = NULL;
    int rc = ecr_describe(h, c, op, name, &repo, err);
    if (rc <= 0)
        return rc;
    mle_value *tags = ecr_tags_raw(h, c, op, vstr(h, repo, "repositoryArn"), err);
    h->v_decref(repo);
    if (!tags)
        return -1;
    int ours = tags_owned_by(h, op, tags, NULL, "Key", "Value");
    h->v_decref(tags);
    if (ours)
        *id = xstrdup(name);
    return ours;
}

static mle_op_status ecr_adopt(const mle_host *h, const mle_op *op) {
    return adopt_by(h, op, ecr_find_ours, NULL, ecr_fetch);
}

static mle_op_status ecr_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, NULL, ecr_fetch); }

static const mle_resource_type aws_ecr_repository_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_ecr_repository",
    .description = "An ECR container image repository.",
    .attrs = ecr_attrs,
    .n_attrs = sizeof ecr_attrs / sizeof *ecr_attrs,
    .create = ecr_create,
    .read = ecr_read,
    .update = ecr_update,
    .del = ecr_delete,
    .import = ecr_read,
    .poll = ecr_poll,
    .adopt = ecr_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_secretsmanager_secret (with its value). ID: the ARN.
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema secret_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The secret ARN."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The secret ARN."},
    {"name", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The secret name."},
    {"description", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL, "A description."},
    {"kms_key_id", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "The KMS key that encrypts it (default: aws/secretsmanager)."},
    {"secret_string", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_SENSITIVE, NULL,
     "The value (a new version when it changes). Redacted everywhere."},
    {"recovery_window_in_days", MLE_T_INT, 0, MLE_A_OPTIONAL, "30",
     "Days a destroyed secret can be restored (7-30); 0 deletes at once."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

/* A Secrets Manager client token is 32-64 characters; shorter tokens are padded with a
 * fixed suffix, so the same op token always gives the same client token. Caller frees. */
static char *sm_token(const char *tok, const char *salt) {
    if (!tok || !*tok)
        return NULL;
    char *t = xasprintf("%s-%s-mlengine-00000000000000000000000000000000", tok, salt);
    if (strlen(t) > 64)
        t[64] = '\0';
    return t;
}

/* A fresh ClientRequestToken for UpdateSecret/PutSecretValue: the SDKs always send one (the
 * model marks it idempotencyToken) and moto refuses a new version without it. Random, so it
 * says nothing about the value. Caller frees with free(). */
static char *sm_fresh_token(const mle_host *h) {
    uint8_t r[16];
    if (h->random_bytes(r, sizeof r) != 0)
        memset(r, 0, sizeof r);
    char *hx = h->hex(h, r, sizeof r);
    char *t = xstrdup(hx);
    h->free(h, hx);
    return t;
}

static int secret_describe(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                           mle_value **d, mle_error **err) {
    mle_value *b = h->v_object();
    h->v_set(b, "SecretId", h->v_string(id));
    int rc = json_get(h, c, op, AWS_SM, "DescribeSecret", b, d, err);
    if (rc == 1 && vhas(h, *d, "DeletedDate")) {
        /* Scheduled for deletion: gone as far as the stack is concerned. */
        h->v_decref(*d);
        *d = NULL;
        return 0;
    }
    return rc;
}

static int secret_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                        mle_value **attrs, mle_error **err) {
    mle_value *d = NULL;
    int rc = secret_describe(h, c, op, id, &d, err);
    if (rc <= 0)
        return rc;
    mle_value *b = h->v_object();
    h->v_set(b, "SecretId", h->v_string(id));
    mle_value *val = NULL;
    rc = json_get(h, c, op, AWS_SM, "GetSecretValue", b, &val, err);
    if (rc < 0) {
        h->v_decref(d);
        return -1;
    }
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "arn", vstr(h, d, "ARN"));
    vset_str(h, a, "name", vstr(h, d, "Name"));
    vset_str(h, a, "description", vstr_ne(h, d, "Description"));
    /* AWS reports the default key as absent; keep the user's spelling of a key they set. */
    const char *kms = vstr_ne(h, d, "KmsKeyId");
    const char *prior_kms = op_str(h, op, "kms_key_id");
    vset_str(h, a, "kms_key_id", kms && prior_kms && ends_with(kms, prior_kms) ? prior_kms : kms);
    const char *s = val ? vstr(h, val, "SecretString") : NULL;
    if (s && strlen(s) >= 4)
        h->secret_register(h, s);
    vset_str(h, a, "secret_string", s);
    mle_value *rw = op_attr(h, op, "recovery_window_in_days");
    h->v_set(a, "recovery_window_in_days", h->v_int(rw ? h->v_int_of(rw) : 30));
    h->v_set(a, "tags", tags_from_list(h, vpath(h, d, "Tags"), NULL, "Key", "Value"));
    h->v_decref(val);
    h->v_decref(d);
    *attrs = a;
    return 1;
}

static int secret_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err);
static int secret_configure(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                            mle_error **err);

static mle_op_status secret_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    const mle_value *cfg = op->config;
    const char *value = vstr(h, cfg, "secret_string");
    if (value && strlen(value) >= 4)
        h->secret_register(h, value);
    mle_value *b = h->v_object();
    h->v_set(b, "Name", h->v_string(vstr(h, cfg, "name")));
    char *tok = sm_token(op->token, "v1");
    jset_str(h, b, "ClientRequestToken", tok);
    free(tok);
    jset_str(h, b, "Description", vstr_ne(h, cfg, "description"));
    jset_str(h, b, "KmsKeyId", vstr_ne(h, cfg, "kms_key_id"));
    if (value)
        h->v_set(b, "SecretString", h->v_string(value));
    mle_value *tags = tags_with_owner(h, op, user_tags(h, op));
    h->v_set(b, "Tags", json_tag_list(h, tags, "Key", "Value"));
    h->v_decref(tags);
    mle_error *e = NULL;
    mle_value *r = aws_json(h, c, op, AWS_SM, "CreateSecret", b, &e);
    h->v_decref(b);
    return created_from(h, op, c, r, e, secret_find_ours, "ARN", "secretsmanager CreateSecret", "ARN",
                        secret_configure, secret_fetch);
}

/* The value the config asks for (a secret found from an earlier attempt may lack it). */
static int secret_configure(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                            mle_error **err) {
    const char *want = op->config ? vstr(h, op->config, "secret_string") : NULL;
    if (!want)
        return 0;
    mle_value *b = h->v_object();
    h->v_set(b, "SecretId", h->v_string(id));
    mle_value *val = NULL;
    int rc = json_get(h, c, op, AWS_SM, "GetSecretValue", b, &val, err);
    if (rc < 0)
        return -1;
    int same = rc == 1 && str_eq(vstr(h, val, "SecretString"), want);
    h->v_decref(val);
    if (same)
        return 0;
    b = h->v_object();
    h->v_set(b, "SecretId", h->v_string(id));
    h->v_set(b, "SecretString", h->v_string(want));
    char *tok = sm_fresh_token(h);
    h->v_set(b, "ClientRequestToken", h->v_string(tok));
    free(tok);
    return json_simple(h, c, op, AWS_SM, "PutSecretValue", b, err) < 0 ? -1 : 0;
}

static mle_op_status secret_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, secret_fetch); }

static mle_op_status secret_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    const mle_value *cfg = op->config;
    int rc = 0;
    if (attr_changed(h, op, "description") || attr_changed(h, op, "kms_key_id")) {
        mle_value *b = h->v_object();
        h->v_set(b, "SecretId", h->v_string(id));
        h->v_set(b, "Description", h->v_string(vstr(h, cfg, "description") ? vstr(h, cfg, "description") : ""));
        jset_str(h, b, "KmsKeyId", vstr_ne(h, cfg, "kms_key_id"));
        char *tok = sm_fresh_token(h);
        h->v_set(b, "ClientRequestToken", h->v_string(tok));
        free(tok);
        rc = json_simple(h, c, op, AWS_SM, "UpdateSecret", b, &e) < 0 ? -1 : 0;
    }
    if (rc == 0 && attr_changed(h, op, "secret_string") && vstr(h, cfg, "secret_string")) {
        const char *value = vstr(h, cfg, "secret_string");
        if (strlen(value) >= 4)
            h->secret_register(h, value);
        mle_value *b = h->v_object();
        h->v_set(b, "SecretId", h->v_string(id));
        h->v_set(b, "SecretString", h->v_string(value));
        char *tok = sm_fresh_token(h);
        h->v_set(b, "ClientRequestToken", h->v_string(tok));
        free(tok);
        rc = json_simple(h, c, op, AWS_SM, "PutSecretValue", b, &e) < 0 ? -1 : 0;
    }
    if (rc == 0 && tags_changed(h, op))
        rc = json_update_tags(h, c, op, AWS_SM, "SecretId", id, "Tags", "TagKeys", "Key", "Value", &e);
    return rc != 0 ? op_fail(h, op, e) : created(h, op, c, id, NULL, secret_fetch);
}

static mle_op_status secret_delete(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    if (!need_id(h, op, &e))
        return op_fail(h, op, e);
    int64_t days = op->state ? vint(h, op->state, "recovery_window_in_days", 30) : 30;
    mle_value *b = h->v_object();
    h->v_set(b, "SecretId", h->v_string(op->id));
    if (days == 0)
        h->v_set(b, "ForceDeleteWithoutRecovery", h->v_bool(1));
    else
        h->v_set(b, "RecoveryWindowInDays", h->v_int(days));
    int rc = json_simple(h, c, op, AWS_SM, "DeleteSecret", b, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    return rc == 1 ? h->op_not_found(h, op) : h->op_done(h, op, op->id, NULL);
}

static int secret_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err) {
    const char *name = op->config ? vstr(h, op->config, "name") : NULL;
    if (!name)
        return 0;
    mle_value *d = NULL;
    int rc = secret_describe(h, c, op, name, &d, err);
    if (rc <= 0)
        return rc;
    int ours = tags_owned_by(h, op, vpath(h, d, "Tags"), NULL, "Key", "Value") && vstr_ne(h, d, "ARN");
    if (ours)
        *id = xstrdup(vstr(h, d, "ARN"));
    h->v_decref(d);
    return ours;
}

static mle_op_status secret_adopt(const mle_host *h, const mle_op *op) {
    return adopt_by(h, op, secret_find_ours, secret_configure, secret_fetch);
}

static mle_op_status secret_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, secret_configure, secret_fetch); }

static const mle_resource_type aws_secret_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_secretsmanager_secret",
    .description = "A Secrets Manager secret and its current value (sensitive).",
    .attrs = secret_attrs,
    .n_attrs = sizeof secret_attrs / sizeof *secret_attrs,
    .create = secret_create,
    .read = secret_read,
    .update = secret_update,
    .del = secret_delete,
    .import = secret_read,
    .poll = secret_poll,
    .adopt = secret_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_kms_key. ID: the key ID.
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema kms_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The key ID."},
    {"key_id", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The key ID."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The key ARN."},
    {"description", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL, "A description."},
    {"key_usage", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "\"ENCRYPT_DECRYPT\"",
     "ENCRYPT_DECRYPT, SIGN_VERIFY, GENERATE_VERIFY_MAC."},
    {"key_spec", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "\"SYMMETRIC_DEFAULT\"",
     "SYMMETRIC_DEFAULT, RSA_2048, ECC_NIST_P256, ..."},
    {"enable_key_rotation", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false", "Yearly automatic rotation."},
    {"policy", MLE_T_ANY, 0, MLE_A_OPTIONAL | MLE_A_COMPUTED, NULL,
     "The key policy (table or JSON text); unset keeps KMS's default."},
    {"deletion_window_in_days", MLE_T_INT, 0, MLE_A_OPTIONAL, "30",
     "Days between destroy and the key's deletion (7-30)."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

static mle_value *kms_keyid_body(const mle_host *h, const char *id) {
    mle_value *b = h->v_object();
    h->v_set(b, "KeyId", h->v_string(id));
    return b;
}

/* All tags of a key (TagKey/TagValue items), following Truncated/NextMarker. */
static mle_value *kms_tags_raw(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                               mle_error **err) {
    mle_value *all = h->v_array();
    char *marker = NULL;
    for (int page = 0; page < 50; page++) {
        mle_value *b = kms_keyid_body(h, id);
        if (marker)
            h->v_set(b, "Marker", h->v_string(marker));
        free(marker);
        marker = NULL;
        mle_value *r = aws_json(h, c, op, AWS_KMS, "ListResourceTags", b, err);
        h->v_decref(b);
        if (!r) {
            h->v_decref(all);
            return NULL;
        }
        mle_value *ts = h->v_get(r, "Tags");
        for (size_t i = 0; i < jl_count(h, ts); i++)
            h->v_append(all, h->v_deep_copy(h->v_at(ts, i)));
        if (vbool(h, r, "Truncated", 0) && vstr_ne(h, r, "NextMarker"))
            marker = xstrdup(vstr(h, r, "NextMarker"));
        h->v_decref(r);
        if (!marker)
            break;
    }
    free(marker);
    return all;
}

static int kms_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                     mle_value **attrs, mle_error **err) {
    mle_value *d = NULL;
    int rc = json_get(h, c, op, AWS_KMS, "DescribeKey", kms_keyid_body(h, id), &d, err);
    if (rc <= 0)
        return rc;
    mle_value *md = h->v_get(d, "KeyMetadata");
    const char *state = vstr(h, md, "KeyState");
    if (str_eq(state, "PendingDeletion") || str_eq(state, "PendingReplicaDeletion")) {
        h->v_decref(d);
        return 0;
    }
    mle_value *rot = NULL, *pol = NULL, *tags = NULL;
    if (json_get(h, c, op, AWS_KMS, "GetKeyRotationStatus", kms_keyid_body(h, id), &rot, err) < 0) {
        h->v_decref(d);
        return -1;
    }
    mle_value *pb = kms_keyid_body(h, id);
    h->v_set(pb, "PolicyName", h->v_string("default"));
    if (json_get(h, c, op, AWS_KMS, "GetKeyPolicy", pb, &pol, err) < 0 ||
        !(tags = kms_tags_raw(h, c, op, id, err))) {
        h->v_decref(d);
        h->v_decref(rot);
        h->v_decref(pol);
        return -1;
    }
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "key_id", vstr(h, md, "KeyId"));
    vset_str(h, a, "arn", vstr(h, md, "Arn"));
    vset_str(h, a, "description", vstr_ne(h, md, "Description"));
    vset_str(h, a, "key_usage", vstr_ne(h, md, "KeyUsage") ? vstr(h, md, "KeyUsage") : "ENCRYPT_DECRYPT");
    const char *spec = vstr_ne(h, md, "KeySpec");
    if (!spec)
        spec = vstr_ne(h, md, "CustomerMasterKeySpec");
    vset_str(h, a, "key_spec", spec ? spec : "SYMMETRIC_DEFAULT");
    h->v_set(a, "enable_key_rotation", h->v_bool(rot ? vbool(h, rot, "KeyRotationEnabled", 0) : 0));
    h->v_set(a, "policy", doc_attr(h, pol ? vstr(h, pol, "Policy") : NULL, prior_attr(h, op, "policy")));
    mle_value *dw = op_attr(h, op, "deletion_window_in_days");
    h->v_set(a, "deletion_window_in_days", h->v_int(dw ? h->v_int_of(dw) : 30));
    h->v_set(a, "tags", tags_from_list(h, tags, NULL, "TagKey", "TagValue"));
    h->v_decref(tags);
    h->v_decref(pol);
    h->v_decref(rot);
    h->v_decref(d);
    *attrs = a;
    return 1;
}

static int kms_set_rotation(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id, int on,
                            mle_error **err) {
    return json_simple(h, c, op, AWS_KMS, on ? "EnableKeyRotation" : "DisableKeyRotation",
                       kms_keyid_body(h, id), err) < 0 ? -1 : 0;
}

static int kms_configure(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                         mle_error **err) {
    return vbool(h, op->config, "enable_key_rotation", 0) ? kms_set_rotation(h, c, op, id, 1, err) : 0;
}

static mle_op_status kms_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    const mle_value *cfg = op->config;
    mle_value *b = h->v_object();
    jset_str(h, b, "Description", vstr_ne(h, cfg, "description"));
    jset_str(h, b, "KeyUsage", vstr_ne(h, cfg, "key_usage"));
    jset_str(h, b, "KeySpec", vstr_ne(h, cfg, "key_spec"));
    char *pol = vhas(h, cfg, "policy") ? doc_text(h, h->v_get(cfg, "policy")) : NULL;
    jset_str(h, b, "Policy", pol);
    free(pol);
    mle_value *tags = tags_with_owner(h, op, user_tags(h, op));
    h->v_set(b, "Tags", json_tag_list(h, tags, "TagKey", "TagValue"));
    h->v_decref(tags);
    mle_error *e = NULL;
    mle_value *r = aws_json(h, c, op, AWS_KMS, "CreateKey", b, &e);
    h->v_decref(b);
    return created_from(h, op, c, r, e, NULL, "KeyMetadata.KeyId", "kms CreateKey", "KeyId", kms_configure,
                        kms_fetch);
}

static mle_op_status kms_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, kms_fetch); }

static mle_op_status kms_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    const mle_value *cfg = op->config;
    int rc = 0;
    if (attr_changed(h, op, "description")) {
        mle_value *b = kms_keyid_body(h, id);
        h->v_set(b, "Description", h->v_string(vstr(h, cfg, "description") ? vstr(h, cfg, "description") : ""));
        rc = json_simple(h, c, op, AWS_KMS, "UpdateKeyDescription", b, &e) < 0 ? -1 : 0;
    }
    if (rc == 0 && attr_changed(h, op, "enable_key_rotation"))
        rc = kms_set_rotation(h, c, op, id, vbool(h, cfg, "enable_key_rotation", 0), &e);
    if (rc == 0 && vhas(h, cfg, "policy") && attr_changed(h, op, "policy")) {
        mle_value *b = kms_keyid_body(h, id);
        char *pol = doc_text(h, h->v_get(cfg, "policy"));
        h->v_set(b, "PolicyName", h->v_string("default"));
        h->v_set(b, "Policy", h->v_string(pol));
        free(pol);
        rc = json_simple(h, c, op, AWS_KMS, "PutKeyPolicy", b, &e) < 0 ? -1 : 0;
    }
    if (rc == 0 && tags_changed(h, op))
        rc = json_update_tags(h, c, op, AWS_KMS, "KeyId", id, "Tags", "TagKeys", "TagKey", "TagValue", &e);
    return rc != 0 ? op_fail(h, op, e) : created(h, op, c, id, NULL, kms_fetch);
}

static mle_op_status kms_delete(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    if (!need_id(h, op, &e))
        return op_fail(h, op, e);
    int64_t days = op->state ? vint(h, op->state, "deletion_window_in_days", 30) : 30;
    if (days < 7)
        days = 7;
    if (days > 30)
        days = 30;
    mle_value *b = kms_keyid_body(h, op->id);
    h->v_set(b, "PendingWindowInDays", h->v_int(days));
    aws_resp_info info;
    mle_value *r = aws_json_info(h, c, op, AWS_KMS, "ScheduleKeyDeletion", b, &info, &e);
    h->v_decref(b);
    if (!r) {
        if (h->error_code(e) == MLE_E_NOT_FOUND) {
            h->error_free(e);
            return h->op_not_found(h, op);
        }
        /* Already pending deletion: the goal is reached. */
        if (str_eq(info.code, "KMSInvalidStateException")) {
            mle_value *d = NULL;
            mle_error *e2 = NULL;
            int rc = json_get(h, c, op, AWS_KMS, "DescribeKey", kms_keyid_body(h, op->id), &d, &e2);
            int pending = rc == 1 && str_eq(vstr(h, d, "KeyMetadata.KeyState"), "PendingDeletion");
            h->v_decref(d);
            if (e2)
                h->error_free(e2);
            if (pending) {
                h->error_free(e);
                return h->op_done(h, op, op->id, NULL);
            }
        }
        return op_fail(h, op, e);
    }
    h->v_decref(r);
    return h->op_done(h, op, op->id, NULL);
}

/* KMS keys have no names: look through the account's keys for our ownership tags. Only
 * after a crash, and bounded (20 pages of 100 keys). */
static mle_op_status kms_adopt(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    char *marker = NULL, *found = NULL;
    for (int page = 0; page < 20 && !found; page++) {
        mle_value *b = h->v_object();
        h->v_set(b, "Limit", h->v_int(100));
        if (marker)
            h->v_set(b, "Marker", h->v_string(marker));
        free(marker);
        marker = NULL;
        mle_value *r = aws_json(h, c, op, AWS_KMS, "ListKeys", b, &e);
        h->v_decref(b);
        if (!r)
            return op_fail(h, op, e);
        mle_value *keys = h->v_get(r, "Keys");
        for (size_t i = 0; i < jl_count(h, keys) && !found; i++) {
            const char *kid = vstr(h, h->v_at(keys, i), "KeyId");
            mle_value *tags = kid ? kms_tags_raw(h, c, op, kid, &e) : NULL;
            if (!tags) {
                /* Keys of other principals may refuse; skip them. */
                if (e)
                    h->error_free(e);
                e = NULL;
                continue;
            }
            if (tags_owned_by(h, op, tags, NULL, "TagKey", "TagValue"))
                found = xstrdup(kid);
            h->v_decref(tags);
        }
        if (vbool(h, r, "Truncated", 0) && vstr_ne(h, r, "NextMarker"))
            marker = xstrdup(vstr(h, r, "NextMarker"));
        h->v_decref(r);
        if (!marker)
            break;
    }
    free(marker);
    mle_op_status st = adopt_id(h, op, c, found, kms_configure, kms_fetch);
    free(found);
    return st;
}

static mle_op_status kms_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, kms_configure, kms_fetch); }

static const mle_resource_type aws_kms_key_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_kms_key",
    .description = "A KMS key (destroy schedules its deletion).",
    .attrs = kms_attrs,
    .n_attrs = sizeof kms_attrs / sizeof *kms_attrs,
    .create = kms_create,
    .read = kms_read,
    .update = kms_update,
    .del = kms_delete,
    .import = kms_read,
    .poll = kms_poll,
    .adopt = kms_adopt,
};
