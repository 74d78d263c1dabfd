/*
 * aws_s3.c — aws_s3_bucket: a bucket with its versioning, default encryption, public access
 * block and tags (rest-xml). Each setting is its own S3 sub-resource (?versioning,
 * ?encryption, ?publicAccessBlock, ?tagging), read and written one by one.
 *
 * Bucket names are caller-chosen; the ownership tags go in the create call
 * (CreateBucketConfiguration.Tags) and again through PutBucketTagging.
 *
 * Part of the aws.c translation unit (see aws_internal.h).
 */

#define S3_NS "http://s3.amazonaws.com/doc/2006-03-01/"

static const mle_attr_schema bucket_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The bucket name."},
    {"bucket", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL,
     "The bucket name (globally unique)."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "arn:aws:s3:::<bucket>."},
    {"region", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "Where the bucket lives."},
    {"versioning", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false",
     "Keep object versions (turning it off suspends versioning)."},
    {"sse_algorithm", MLE_T_STRING, 0, MLE_A_OPTIONAL, "\"AES256\"",
     "Default encryption: AES256 (SSE-S3) or aws:kms."},
    {"kms_master_key_id", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "The KMS key for aws:kms (ARN or ID)."},
    {"bucket_key_enabled", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false", "Use an S3 Bucket Key with KMS."},
    {"block_public_acls", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "true", "Public access block."},
    {"ignore_public_acls", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "true", "Public access block."},
    {"block_public_policy", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "true", "Public access block."},
    {"restrict_public_buckets", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "true", "Public access block."},
    {"force_destroy", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false",
     "Delete every object (and version) when the bucket is destroyed."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

static const char *const pab_attr[] = {"block_public_acls", "ignore_public_acls",
                                       "block_public_policy", "restrict_public_buckets"};
static const char *const pab_xml[] = {"BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                      "RestrictPublicBuckets"};

/* One S3 call whose answer is not needed: 0, 1 when the bucket (or sub-resource) is not
 * there, -1 with *err. */
static int s3_simple(const mle_host *h, aws_ctx *c, const mle_op *op, const char *action,
                     const char *method, const char *bucket, const char *query, const char *body,
                     int checksum, mle_error **err) {
    mle_error *e = NULL;
    mle_value *r = aws_s3(h, c, op, action, method, bucket, query, body, checksum, NULL, &e);
    if (r) {
        h->v_decref(r);
        return 0;
    }
    return gone_or_err(h, e, err);
}

/* GET a sub-resource: 1 with *out, 0 when S3 says it is not configured (NoSuch... /
 * ...NotFoundError), -1 with *err. */
static int s3_get(const mle_host *h, aws_ctx *c, const mle_op *op, const char *action,
                  const char *bucket, const char *query, mle_value **out, mle_error **err) {
    mle_error *e = NULL;
    *out = aws_s3(h, c, op, action, "GET", bucket, query, NULL, 0, NULL, &e);
    if (*out)
        return 1;
    return missing_or_err(h, e, err);
}

/* <Tag><Key>k</Key><Value>v</Value></Tag> for each tag. */
static void buf_put_tags(const mle_host *h, aws_buf *b, const mle_value *tags) {
    void *it = NULL;
    mle_value *v;
    const char *k;
    while ((k = h->v_next(tags, &it, &v))) {
        buf_puts(b, "<Tag><Key>");
        buf_put_xml(b, k);
        buf_puts(b, "</Key><Value>");
        buf_put_xml(b, h->v_str(v));
        buf_puts(b, "</Value></Tag>");
    }
}

static char *tagging_xml(const mle_host *h, const mle_value *tags) {
    aws_buf b = {0};
    buf_puts(&b, "<Tagging xmlns=\"" S3_NS "\"><TagSet>");
    buf_put_tags(h, &b, tags);
    buf_puts(&b, "</TagSet></Tagging>");
    return buf_take(&b);
}

static int s3_put_tags(const mle_host *h, aws_ctx *c, const mle_op *op, const char *bucket,
                       mle_error **err) {
    mle_value *tags = tags_with_owner(h, op, user_tags(h, op));
    char *x = tagging_xml(h, tags);
    h->v_decref(tags);
    int rc = s3_simple(h, c, op, "PutBucketTagging", "PUT", bucket, "tagging", x, 1, err);
    free(x);
    return rc < 0 ? -1 : 0;
}

static int s3_put_versioning(const mle_host *h, aws_ctx *c, const mle_op *op, const char *bucket,
                             int on, mle_error **err) {
    char *x = xasprintf("<VersioningConfiguration xmlns=\"" S3_NS "\"><Status>%s</Status>"
                        "</VersioningConfiguration>", on ? "Enabled" : "Suspended");
    int rc = s3_simple(h, c, op, "PutBucketVersioning", "PUT", bucket, "versioning", x, 1, err);
    free(x);
    return rc < 0 ? -1 : 0;
}

static int s3_put_encryption(const mle_host *h, aws_ctx *c, const mle_op *op, const char *bucket,
                             mle_error **err) {
    const mle_value *cfg = op->config;
    const char *alg = vstr_ne(h, cfg, "sse_algorithm") ? vstr(h, cfg, "sse_algorithm") : "AES256";
    aws_buf b = {0};
    buf_puts(&b, "<ServerSideEncryptionConfiguration xmlns=\"" S3_NS "\"><Rule>"
                 "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>");
    buf_put_xml(&b, alg);
    buf_puts(&b, "</SSEAlgorithm>");
    if (vstr_ne(h, cfg, "kms_master_key_id")) {
        buf_puts(&b, "<KMSMasterKeyID>");
        buf_put_xml(&b, vstr(h, cfg, "kms_master_key_id"));
        buf_puts(&b, "</KMSMasterKeyID>");
    }
    buf_printf(&b, "</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>%s</BucketKeyEnabled>"
                   "</Rule></ServerSideEncryptionConfiguration>",
               vbool(h, cfg, "bucket_key_enabled", 0) ? "true" : "false");
    int rc = s3_simple(h, c, op, "PutBucketEncryption", "PUT", bucket, "encryption", b.p, 1, err);
    buf_free(&b);
    return rc < 0 ? -1 : 0;
}

static int s3_put_pab(const mle_host *h, aws_ctx *c, const mle_op *op, const char *bucket,
                      mle_error **err) {
    aws_buf b = {0};
    buf_puts(&b, "<PublicAccessBlockConfiguration xmlns=\"" S3_NS "\">");
    for (int i = 0; i < 4; i++)
        buf_printf(&b, "<%s>%s</%s>", pab_xml[i], vbool(h, op->config, pab_attr[i], 1) ? "true" : "false",
                   pab_xml[i]);
    buf_puts(&b, "</PublicAccessBlockConfiguration>");
    int rc = s3_simple(h, c, op, "PutPublicAccessBlock", "PUT", bucket, "publicAccessBlock", b.p, 1, err);
    buf_free(&b);
    return rc < 0 ? -1 : 0;
}

/* 1 the bucket exists and we may use it, 0 it does not, -1 with *err. */
static int s3_head(const mle_host *h, aws_ctx *c, const mle_op *op, const char *bucket,
                   mle_error **err) {
    int rc = s3_simple(h, c, op, "HeadBucket", "HEAD", bucket, NULL, NULL, 0, err);
    return rc == 0 ? 1 : rc == 1 ? 0 : -1;
}

/* The bucket's tags, mlengine:* included (new object), or NULL with *err. */
static mle_value *s3_tags_raw(const mle_host *h, aws_ctx *c, const mle_op *op, const char *bucket,
                              mle_error **err) {
    mle_value *r = NULL;
    int rc = s3_get(h, c, op, "GetBucketTagging", bucket, "tagging", &r, err);
    if (rc < 0)
        return NULL;
    mle_value *t = h->v_object();
    mle_value *set = rc ? vpath(h, r, "TagSet") : NULL;
    for (size_t i = 0; i < xl_count(h, set, "Tag"); i++) {
        mle_value *tg = xl_at(h, set, "Tag", i);
        if (vstr(h, tg, "Key"))
            h->v_set(t, vstr(h, tg, "Key"), h->v_string(vstr(h, tg, "Value") ? vstr(h, tg, "Value") : ""));
    }
    h->v_decref(r);
    return t;
}

static int bucket_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                        mle_value **attrs, mle_error **err) {
    int rc = s3_head(h, c, op, id, err);
    if (rc <= 0)
        return rc;
    mle_value *ver = NULL, *enc = NULL, *pab = NULL, *tags = NULL;
    if (s3_get(h, c, op, "GetBucketVersioning", id, "versioning", &ver, err) < 0 ||
        s3_get(h, c, op, "GetBucketEncryption", id, "encryption", &enc, err) < 0 ||
        s3_get(h, c, op, "GetPublicAccessBlock", id, "publicAccessBlock", &pab, err) < 0 ||
        !(tags = s3_tags_raw(h, c, op, id, err))) {
        h->v_decref(ver);
        h->v_decref(enc);
        h->v_decref(pab);
        return -1;
    }
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "bucket", id);
    char *arn = xasprintf("arn:%s:s3:::%s", partition_of(c), id);
    vset_str(h, a, "arn", arn);
    free(arn);
    vset_str(h, a, "region", c->region);
    h->v_set(a, "versioning", h->v_bool(str_eq(vstr(h, ver, "Status"), "Enabled")));
    mle_value *rule = vpath(h, enc, "Rule");
    if (rule && h->v_kind(rule) == MLE_V_ARRAY)
        rule = h->v_at(rule, 0);
    const char *alg = vstr_ne(h, rule, "ApplyServerSideEncryptionByDefault.SSEAlgorithm");
    /* Every bucket is SSE-S3 encrypted since 2023, configured or not. */
    vset_str(h, a, "sse_algorithm", alg ? alg : "AES256");
    vset_str(h, a, "kms_master_key_id", vstr_ne(h, rule, "ApplyServerSideEncryptionByDefault.KMSMasterKeyID"));
    h->v_set(a, "bucket_key_enabled", h->v_bool(vbool(h, rule, "BucketKeyEnabled", 0)));
    for (int i = 0; i < 4; i++)
        h->v_set(a, pab_attr[i], h->v_bool(pab ? vbool(h, pab, pab_xml[i], 0) : 0));
    /* Not a property of the bucket: how we destroy it. */
    mle_value *fd = op_attr(h, op, "force_destroy");
    h->v_set(a, "force_destroy", h->v_bool(fd ? h->v_bool_of(fd) : 0));
    mle_value *user = tags_from_map(h, tags);
    h->v_set(a, "tags", user);
    h->v_decref(tags);
    h->v_decref(ver);
    h->v_decref(enc);
    h->v_decref(pab);
    *attrs = a;
    return 1;
}

/* Every setting the create call cannot carry; each PUT replaces the whole sub-resource, so
 * running this twice is harmless. */
static int bucket_configure(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                            mle_error **err) {
    int rc = s3_put_tags(h, c, op, id, err);
    if (rc == 0 && vbool(h, op->config, "versioning", 0))
        rc = s3_put_versioning(h, c, op, id, 1, err);
    if (rc == 0)
        rc = s3_put_encryption(h, c, op, id, err);
    if (rc == 0)
        rc = s3_put_pab(h, c, op, id, err);
    return rc;
}

static int bucket_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err);

static mle_op_status bucket_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    const char *bucket = vstr(h, op->config, "bucket");
    if (!bucket || !*bucket)
        return op_fail(h, op, err_invalid_attr(h, "bucket", "is required"));
    aws_buf b = {0};
    buf_puts(&b, "<CreateBucketConfiguration xmlns=\"" S3_NS "\">");
    /* us-east-1 is the one region that takes no LocationConstraint. */
    if (!str_eq(c->region, "us-east-1")) {
        buf_puts(&b, "<LocationConstraint>");
        buf_put_xml(&b, c->region);
        buf_puts(&b, "</LocationConstraint>");
    }
    mle_value *tags = tags_with_owner(h, op, user_tags(h, op));
    buf_puts(&b, "<Tags>");
    buf_put_tags(h, &b, tags);
    buf_puts(&b, "</Tags></CreateBucketConfiguration>");
    h->v_decref(tags);
    mle_error *e = NULL;
    mle_value *r = aws_s3(h, c, op, "CreateBucket", "PUT", bucket, NULL, b.p, 0, NULL, &e);
    buf_free(&b);
    char *ours = NULL;
    if (!r && conflict_is_ours(h, c, op, bucket_find_ours, &ours, &e) != 1)
        return op_fail(h, op, e);
    free(ours);
    h->v_decref(r);
    return created(h, op, c, bucket, bucket_configure, bucket_fetch);
}

static mle_op_status bucket_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, bucket_fetch); }

static mle_op_status bucket_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    int rc = 0;
    if (attr_changed(h, op, "versioning"))
        rc = s3_put_versioning(h, c, op, id, vbool(h, op->config, "versioning", 0), &e);
    if (rc == 0 && (attr_changed(h, op, "sse_algorithm") || attr_changed(h, op, "kms_master_key_id") ||
                    attr_changed(h, op, "bucket_key_enabled")))
        rc = s3_put_encryption(h, c, op, id, &e);
    int pab = 0;
    for (int i = 0; i < 4; i++)
        pab |= attr_changed(h, op, pab_attr[i]);
    if (rc == 0 && pab)
        rc = s3_put_pab(h, c, op, id, &e);
    if (rc == 0 && tags_changed(h, op))
        rc = s3_put_tags(h, c, op, id, &e);
    return rc != 0 ? op_fail(h, op, e) : created(h, op, c, id, NULL, bucket_fetch);
}

/* Delete every object version and delete marker, a page (up to 1000) at a time. */
static int s3_empty(const mle_host *h, aws_ctx *c, const mle_op *op, const char *bucket,
                    mle_error **err) {
    for (int page = 0; page < 1000; page++) {
        mle_value *r = NULL;
        int rc = s3_get(h, c, op, "ListObjectVersions", bucket, "versions", &r, err);
        if (rc <= 0)
            return rc < 0 ? -1 : 0;
        aws_buf b = {0};
        buf_puts(&b, "<Delete xmlns=\"" S3_NS "\"><Quiet>true</Quiet>");
        size_t n = 0;
        static const char *const kinds[] = {"Version", "DeleteMarker"};
        for (int kind = 0; kind < 2; kind++) {
            for (size_t i = 0; i < xl_count(h, r, kinds[kind]); i++) {
                mle_value *o = xl_at(h, r, kinds[kind], i);
                buf_puts(&b, "<Object><Key>");
                buf_put_xml(&b, vstr(h, o, "Key"));
                buf_puts(&b, "</Key>");
                if (vstr_ne(h, o, "VersionId") && !str_eq(vstr(h, o, "VersionId"), "null")) {
                    buf_puts(&b, "<VersionId>");
                    buf_put_xml(&b, vstr(h, o, "VersionId"));
                    buf_puts(&b, "</VersionId>");
                }
                buf_puts(&b, "</Object>");
                n++;
            }
        }
        buf_puts(&b, "</Delete>");
        h->v_decref(r);
        if (n == 0) {
            buf_free(&b);
            return 0;
        }
        rc = s3_simple(h, c, op, "DeleteObjects", "POST", bucket, "delete", b.p, 1, err);
        buf_free(&b);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static mle_op_status bucket_delete(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    if (!need_id(h, op, &e))
        return op_fail(h, op, e);
    if (op->state && vbool(h, op->state, "force_destroy", 0) && s3_empty(h, c, op, op->id, &e) != 0)
        return op_fail(h, op, e);
    aws_resp_info info;
    mle_value *r = aws_s3(h, c, op, "DeleteBucket", "DELETE", op->id, NULL, NULL, 0, &info, &e);
    if (!r) {
        if (h->error_code(e) == MLE_E_NOT_FOUND) {
            h->error_free(e);
            return h->op_not_found(h, op);
        }
        if (str_eq(info.code, "BucketNotEmpty")) {
            h->error_free(e);
            e = h->error_new(h, MLE_E_CONFLICT, "aws: bucket %s is not empty", op->id);
            h->error_set_provider(e, info.status, "BucketNotEmpty", "The bucket you tried to delete is not empty");
            h->error_set_hint(e, "empty it first, or set force_destroy = true and apply before destroying");
        }
        return op_fail(h, op, e);
    }
    h->v_decref(r);
    return h->op_done(h, op, op->id, NULL);
}

/* By name: ours when it carries our ownership tags, or when it carries no tags at all (a
 * create interrupted before its tags landed, on a peer that ignores CreateBucket's Tags). */
static int bucket_find_ours(const mle_host *h, aws_ctx *c, const mle_op *op, char **id, mle_error **err) {
    const char *bucket = op->config ? vstr(h, op->config, "bucket") : NULL;
    if (!bucket)
        return 0;
    mle_error *e = NULL;
    int rc = s3_head(h, c, op, bucket, &e);
    if (rc < 0) {
        /* Someone else's bucket answers 403: not ours to adopt. */
        if (h->error_code(e) == MLE_E_PERMISSION) {
            h->error_free(e);
            return 0;
        }
        *err = e;
        return -1;
    }
    if (rc == 0)
        return 0;
    mle_value *t = s3_tags_raw(h, c, op, bucket, err);
    if (!t)
        return -1;
    int ours = h->v_len(t) == 0 || tags_map_owned_by(h, op, t);
    h->v_decref(t);
    if (ours)
        *id = xstrdup(bucket);
    return ours;
}

static mle_op_status bucket_adopt(const mle_host *h, const mle_op *op) {
    return adopt_by(h, op, bucket_find_ours, bucket_configure, bucket_fetch);
}

static mle_op_status bucket_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, bucket_configure, bucket_fetch); }

static const mle_resource_type aws_s3_bucket_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_s3_bucket",
    .description = "An S3 bucket with versioning, default encryption and a public access block.",
    .attrs = bucket_attrs,
    .n_attrs = sizeof bucket_attrs / sizeof *bucket_attrs,
    .create = bucket_create,
    .read = bucket_read,
    .update = bucket_update,
    .del = bucket_delete,
    .import = bucket_read,
    .poll = bucket_poll,
    .adopt = bucket_adopt,
};
