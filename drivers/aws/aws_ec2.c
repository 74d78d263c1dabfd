/*
 * aws_ec2.c — the network: aws_vpc, aws_subnet, aws_internet_gateway, aws_eip,
 * aws_nat_gateway, aws_route_table, aws_security_group, and the data source
 * aws_availability_zones. EC2 speaks its own query dialect (see aws_client.c); request
 * member names follow the EC2 model's serialization rule (queryName, else the capitalized
 * locationName, else the member name) and lists are flattened as Name.N.
 *
 * Ownership tags go in the create call (TagSpecification.1); adoption after a crash finds a
 * resource by those tags (Filter tag:mlengine:address + tag:mlengine:stack).
 *
 * Part of the aws.c translation unit (see aws_internal.h).
 */

/* ------------------------------------------------------------------------------------------
 * Shared EC2 helpers.
 * ------------------------------------------------------------------------------------------ */

/* TagSpecification.1 for a create: the user's tags merged with the ownership tags. */
static void ec2_tag_spec(const mle_host *h, aws_form *f, const mle_op *op, const char *rtype) {
    mle_value *t = tags_with_owner(h, op, user_tags(h, op));
    form_add(f, "TagSpecification.1.ResourceType", rtype);
    form_tags(h, f, "TagSpecification.1.Tag", t);
    h->v_decref(t);
}

/* Tags of an EC2 item (its tagSet), without the ownership tags. New reference. */
static mle_value *ec2_tags(const mle_host *h, const mle_value *item) {
    return tags_from_list(h, vpath(h, item, "tagSet"), "item", "key", "value");
}

/* Bring a resource's tags from state to config: CreateTags for new and changed keys (and
 * the ownership tags), DeleteTags for removed ones. 0 or -1 with *err. */
static int ec2_update_tags(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                           mle_error **err) {
    static const query_tagging t = {AWS_EC2, "CreateTags", "DeleteTags", "ResourceId.1", "Tag", "Tag", ".Key"};
    return query_update_tags(h, c, op, &t, id, err);
}

/* Describe one resource by ID: 1 with *item (new reference), 0 when gone, -1 with *err.
 * id_key is the flattened ID member ("VpcId.1"), set the result list ("vpcSet"). */
static int ec2_describe_one(const mle_host *h, aws_ctx *c, const mle_op *op, const char *action,
                            const char *id_key, const char *id, const char *set,
                            mle_value **item, mle_error **err) {
    *item = NULL;
    aws_form f = {0};
    form_add(&f, id_key, id);
    mle_error *e = NULL;
    mle_value *r = aws_query(h, c, op, AWS_EC2, action, &f, &e);
    form_free(&f);
    if (!r)
        return missing_or_err(h, e, err);
    mle_value *list = vpath(h, r, set);
    if (xl_count(h, list, "item") == 0) {
        h->v_decref(r);
        return 0;
    }
    *item = h->v_incref(xl_at(h, list, "item", 0));
    h->v_decref(r);
    return 1;
}

/* Find what an interrupted create made, by its ownership tags. extra_filter (may be NULL)
 * adds one more filter "Name=v1,v2" (e.g. "state=pending,available"). Returns the ID
 * (caller frees with free()) in *id, or NULL when nothing carries the tags. 0 or -1. */
static int ec2_find_owned(const mle_host *h, aws_ctx *c, const mle_op *op, const char *action,
                          const char *set, const char *id_field, const char *extra_name,
                          const char *const *extra_values, char **id, mle_error **err) {
    *id = NULL;
    if (!op->address || !op->lineage)
        return 0;
    aws_form f = {0};
    form_add(&f, "Filter.1.Name", "tag:" AWS_TAG_ADDRESS);
    form_add(&f, "Filter.1.Value.1", op->address);
    form_add(&f, "Filter.2.Name", "tag:" AWS_TAG_STACK);
    form_add(&f, "Filter.2.Value.1", op->lineage);
    if (extra_name) {
        form_add(&f, "Filter.3.Name", extra_name);
        for (int i = 0; extra_values && extra_values[i]; i++)
            form_addf(&f, extra_values[i], "Filter.3.Value.%d", i + 1);
    }
    mle_value *r = aws_query(h, c, op, AWS_EC2, action, &f, err);
    form_free(&f);
    if (!r)
        return -1;
    mle_value *list = vpath(h, r, set);
    size_t n = xl_count(h, list, "item");
    for (size_t i = 0; i < n && !*id; i++) {
        mle_value *it = xl_at(h, list, "item", i);
        /* The filter is the server's; the check is ours (a peer may ignore filters). */
        if (tags_owned_by(h, op, vpath(h, it, "tagSet"), "item", "key", "value"))
            *id = xstrdup(vstr_ne(h, it, id_field));
    }
    if (n > 1)
        h->log(h, MLE_LOG_WARN, "aws: %zu resources carry the ownership tags of %s; adopting %s",
               n, op->address, *id ? *id : "none");
    h->v_decref(r);
    return 0;
}

/* Before an EC2 create that has no idempotency token: what an earlier attempt of this very
 * create made (found by its ownership tags), so a retried create goes on with it instead of
 * making a second one. 0 with *id (NULL when there is none; caller frees), or -1 with *err. */
static int ec2_earlier(const mle_host *h, aws_ctx *c, const mle_op *op, const char *action,
                       const char *set, const char *id_field, const char *extra_name,
                       const char *const *extra_values, char **id, mle_error **err) {
    int rc = ec2_find_owned(h, c, op, action, set, id_field, extra_name, extra_values, id, err);
    if (rc == 0 && *id)
        h->log(h, MLE_LOG_INFO, "aws: %s: going on with %s, made by an earlier attempt of this "
                                "create", op->address ? op->address : "?", *id);
    return rc;
}

/* One EC2 action on one ID whose answer is not needed (Delete*, Attach*, ...). 0 done,
 * 1 the resource is gone (NotFound), -1 with *err. */
static int ec2_simple(const mle_host *h, aws_ctx *c, const mle_op *op, const char *action,
                      aws_form *f, mle_error **err) {
    return query_simple(h, c, op, AWS_EC2, action, f, err);
}

/* The answer of a delete from ec2_simple's result (rc computed before this call: C leaves the
 * order of argument evaluation open, so `e` must already hold the error). */
static mle_op_status ec2_delete_answer(const mle_host *h, const mle_op *op, int rc, mle_error *e) {
    if (rc < 0)
        return op_fail(h, op, e);
    if (rc == 1)
        return h->op_not_found(h, op);
    return h->op_done(h, op, op->id, NULL);
}

/* What the shared create/adopt/delete code needs to know of one EC2 resource type. */
typedef struct ec2_kind {
    const char *describe;                 /* "DescribeVpcs" */
    const char *set;                      /* "vpcSet" */
    const char *id_field;                 /* "vpcId" */
    const char *extra_name;               /* extra filter of ec2_find_owned, or NULL */
    const char *const *extra_values;
    const char *tag_type;                 /* TagSpecification ResourceType ("vpc") */
    const char *create;                   /* "CreateVpc" */
    const char *id_path;                  /* the ID in the create answer ("vpc.vpcId") */
    const char *id_label;                 /* its name in the error when missing ("vpcId") */
    aws_configure_fn configure;
    aws_fetch_fn fetch;
} ec2_kind;

/* A create: go on with what an earlier attempt made, else the create call with the form the
 * caller filled (ownership tags added here; the form is freed either way), then created(). */
static mle_op_status ec2_create(const mle_host *h, const mle_op *op, aws_ctx *c, const ec2_kind *k,
                                aws_form *f) {
    char *id = NULL;
    mle_error *e = NULL;
    if (ec2_earlier(h, c, op, k->describe, k->set, k->id_field, k->extra_name, k->extra_values, &id,
                    &e) != 0) {
        form_free(f);
        return op_fail(h, op, e);
    }
    if (!id) {
        ec2_tag_spec(h, f, op, k->tag_type);
        mle_value *r = aws_query(h, c, op, AWS_EC2, k->create, f, &e);
        form_free(f);
        if (!r)
            return op_fail(h, op, e);
        id = xstrdup(vstr_ne(h, r, k->id_path));
        h->v_decref(r);
        if (!id)
            return op_fail(h, op, h->error_new(h, MLE_E_PROVIDER, "ec2 %s: no %s in the answer",
                                               k->create, k->id_label));
    } else {
        form_free(f);
    }
    mle_op_status st = created(h, op, c, id, k->configure, k->fetch);
    free(id);
    return st;
}

/* Adopt what an interrupted create left, found by its ownership tags. */
static mle_op_status ec2_adopt(const mle_host *h, const mle_op *op, const ec2_kind *k) {
    AWS_CTX(h, op);
    char *id = NULL;
    mle_error *e = NULL;
    if (ec2_find_owned(h, c, op, k->describe, k->set, k->id_field, k->extra_name, k->extra_values,
                       &id, &e) != 0)
        return op_fail(h, op, e);
    mle_op_status st = adopt_id(h, op, c, id, k->configure, k->fetch);
    free(id);
    return st;
}

/* A delete that is one call with the ID as id_key. */
static mle_op_status ec2_delete_simple(const mle_host *h, const mle_op *op, const char *action,
                                       const char *id_key) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    if (!need_id(h, op, &e))
        return op_fail(h, op, e);
    aws_form f = {0};
    form_add(&f, id_key, op->id);
    int drc = ec2_simple(h, c, op, action, &f, &e);
    return ec2_delete_answer(h, op, drc, e);
}

/* An update that only brings the tags along. */
static mle_op_status ec2_update_tags_only(const mle_host *h, const mle_op *op, aws_fetch_fn fetch) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    if (ec2_update_tags(h, c, op, id, &e) != 0)
        return op_fail(h, op, e);
    return created(h, op, c, id, NULL, fetch);
}

/* ARN of an EC2 resource ("vpc", id). Caller frees with free(). */
static char *ec2_arn(const aws_ctx *c, const char *owner, const char *kind, const char *id) {
    const char *part = starts_with(c->region, "cn-")       ? "aws-cn"
                       : starts_with(c->region, "us-gov-") ? "aws-us-gov"
                                                           : "aws";
    return xasprintf("arn:%s:ec2:%s:%s:%s/%s", part, c->region, owner ? owner : "", kind, id);
}

/* ------------------------------------------------------------------------------------------
 * aws_vpc
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema vpc_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The VPC ID (vpc-...)."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The VPC's ARN."},
    {"cidr_block", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL,
     "The IPv4 CIDR block of the VPC, e.g. 10.0.0.0/16."},
    {"instance_tenancy", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "\"default\"",
     "default or dedicated."},
    {"enable_dns_support", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "true",
     "Whether the Amazon DNS server resolves names in the VPC."},
    {"enable_dns_hostnames", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "true",
     "Whether instances get public DNS hostnames (EKS needs true)."},
    {"owner_id", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The owning account."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

static int vpc_dns_attr(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                        const char *attr, int *out, mle_error **err) {
    aws_form f = {0};
    form_add(&f, "VpcId", id);
    form_add(&f, "Attribute", attr);
    mle_value *r = aws_query(h, c, op, AWS_EC2, "DescribeVpcAttribute", &f, err);
    form_free(&f);
    if (!r)
        return -1;
    char path[96];
    snprintf(path, sizeof path, "%s.value", attr);
    *out = vbool(h, r, path, 0);
    h->v_decref(r);
    return 0;
}

static int vpc_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                     mle_value **attrs, mle_error **err) {
    mle_value *it = NULL;
    int rc = ec2_describe_one(h, c, op, "DescribeVpcs", "VpcId.1", id, "vpcSet", &it, err);
    if (rc <= 0)
        return rc;
    int dns_support = 1, dns_hostnames = 0;
    if (vpc_dns_attr(h, c, op, id, "enableDnsSupport", &dns_support, err) != 0 ||
        vpc_dns_attr(h, c, op, id, "enableDnsHostnames", &dns_hostnames, err) != 0) {
        h->v_decref(it);
        return -1;
    }
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    char *arn = ec2_arn(c, vstr(h, it, "ownerId"), "vpc", id);
    vset_str(h, a, "arn", arn);
    free(arn);
    vset_str(h, a, "cidr_block", vstr(h, it, "cidrBlock"));
    vset_str(h, a, "instance_tenancy", vstr_ne(h, it, "instanceTenancy") ? vstr(h, it, "instanceTenancy") : "default");
    h->v_set(a, "enable_dns_support", h->v_bool(dns_support));
    h->v_set(a, "enable_dns_hostnames", h->v_bool(dns_hostnames));
    vset_str(h, a, "owner_id", vstr(h, it, "ownerId"));
    h->v_set(a, "tags", ec2_tags(h, it));
    h->v_decref(it);
    *attrs = a;
    return 1;
}

static int vpc_set_dns(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                       const char *member, int value, mle_error **err) {
    aws_form f = {0};
    form_add(&f, "VpcId", id);
    char key[64];
    snprintf(key, sizeof key, "%s.Value", member);
    form_add_bool(&f, key, value);
    return ec2_simple(h, c, op, "ModifyVpcAttribute", &f, err) < 0 ? -1 : 0;
}

/* The DNS attributes the create call cannot set (AWS defaults: support on, hostnames off;
 * one attribute per call). */
static int vpc_configure(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                         mle_error **err) {
    int rc = 0;
    if (!vbool(h, op->config, "enable_dns_support", 1))
        rc = vpc_set_dns(h, c, op, id, "EnableDnsSupport", 0, err);
    if (rc == 0 && vbool(h, op->config, "enable_dns_hostnames", 1))
        rc = vpc_set_dns(h, c, op, id, "EnableDnsHostnames", 1, err);
    return rc;
}

static const ec2_kind vpc_kind = {
    .describe = "DescribeVpcs",
    .set = "vpcSet",
    .id_field = "vpcId",
    .tag_type = "vpc",
    .create = "CreateVpc",
    .id_path = "vpc.vpcId",
    .id_label = "vpcId",
    .configure = vpc_configure,
    .fetch = vpc_fetch,
};

static mle_op_status vpc_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    aws_form f = {0};
    form_add(&f, "CidrBlock", vstr(h, op->config, "cidr_block"));
    form_add(&f, "InstanceTenancy", vstr_ne(h, op->config, "instance_tenancy"));
    return ec2_create(h, op, c, &vpc_kind, &f);
}

static mle_op_status vpc_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, vpc_fetch); }

static mle_op_status vpc_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    int rc = 0;
    if (attr_changed(h, op, "enable_dns_support"))
        rc = vpc_set_dns(h, c, op, id, "EnableDnsSupport", vbool(h, op->config, "enable_dns_support", 1), &e);
    if (rc == 0 && attr_changed(h, op, "enable_dns_hostnames"))
        rc = vpc_set_dns(h, c, op, id, "EnableDnsHostnames", vbool(h, op->config, "enable_dns_hostnames", 1), &e);
    if (rc == 0)
        rc = ec2_update_tags(h, c, op, id, &e);
    return rc != 0 ? op_fail(h, op, e) : created(h, op, c, id, NULL, vpc_fetch);
}

static mle_op_status vpc_delete(const mle_host *h, const mle_op *op) {
    return ec2_delete_simple(h, op, "DeleteVpc", "VpcId");
}

static mle_op_status vpc_adopt(const mle_host *h, const mle_op *op) { return ec2_adopt(h, op, &vpc_kind); }

static mle_op_status vpc_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, vpc_configure, vpc_fetch); }

static const mle_resource_type aws_vpc_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_vpc",
    .description = "An Amazon VPC.",
    .attrs = vpc_attrs,
    .n_attrs = sizeof vpc_attrs / sizeof *vpc_attrs,
    .create = vpc_create,
    .read = vpc_read,
    .update = vpc_update,
    .del = vpc_delete,
    .import = vpc_read,
    .poll = vpc_poll,
    .adopt = vpc_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_subnet
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema subnet_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The subnet ID (subnet-...)."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The subnet's ARN."},
    {"vpc_id", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The VPC."},
    {"cidr_block", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL,
     "The IPv4 CIDR block, inside the VPC's."},
    {"availability_zone", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_COMPUTED | MLE_A_FORCE_NEW,
     NULL, "The zone (e.g. us-east-1a); AWS picks one when unset."},
    {"availability_zone_id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The zone ID (use1-az1)."},
    {"map_public_ip_on_launch", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false",
     "Give instances launched here a public IPv4 address (public subnets)."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

static int subnet_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                        mle_value **attrs, mle_error **err) {
    mle_value *it = NULL;
    int rc = ec2_describe_one(h, c, op, "DescribeSubnets", "SubnetId.1", id, "subnetSet", &it, err);
    if (rc <= 0)
        return rc;
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    const char *arn = vstr_ne(h, it, "subnetArn");
    char *made = arn ? NULL : ec2_arn(c, vstr(h, it, "ownerId"), "subnet", id);
    vset_str(h, a, "arn", arn ? arn : made);
    free(made);
    vset_str(h, a, "vpc_id", vstr(h, it, "vpcId"));
    vset_str(h, a, "cidr_block", vstr(h, it, "cidrBlock"));
    vset_str(h, a, "availability_zone", vstr(h, it, "availabilityZone"));
    vset_str(h, a, "availability_zone_id", vstr_ne(h, it, "availabilityZoneId"));
    h->v_set(a, "map_public_ip_on_launch", h->v_bool(vbool(h, it, "mapPublicIpOnLaunch", 0)));
    h->v_set(a, "tags", ec2_tags(h, it));
    h->v_decref(it);
    *attrs = a;
    return 1;
}

static int subnet_set_public(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                             int on, mle_error **err) {
    aws_form f = {0};
    form_add(&f, "SubnetId", id);
    form_add_bool(&f, "MapPublicIpOnLaunch.Value", on);
    return ec2_simple(h, c, op, "ModifySubnetAttribute", &f, err) < 0 ? -1 : 0;
}

static int subnet_configure(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                            mle_error **err) {
    return vbool(h, op->config, "map_public_ip_on_launch", 0) ? subnet_set_public(h, c, op, id, 1, err) : 0;
}

static const ec2_kind subnet_kind = {
    .describe = "DescribeSubnets",
    .set = "subnetSet",
    .id_field = "subnetId",
    .tag_type = "subnet",
    .create = "CreateSubnet",
    .id_path = "subnet.subnetId",
    .id_label = "subnetId",
    .configure = subnet_configure,
    .fetch = subnet_fetch,
};

static mle_op_status subnet_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    aws_form f = {0};
    form_add(&f, "VpcId", vstr(h, op->config, "vpc_id"));
    form_add(&f, "CidrBlock", vstr(h, op->config, "cidr_block"));
    form_add(&f, "AvailabilityZone", vstr_ne(h, op->config, "availability_zone"));
    return ec2_create(h, op, c, &subnet_kind, &f);
}

static mle_op_status subnet_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, subnet_fetch); }

static mle_op_status subnet_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    int rc = 0;
    if (attr_changed(h, op, "map_public_ip_on_launch"))
        rc = subnet_set_public(h, c, op, id, vbool(h, op->config, "map_public_ip_on_launch", 0), &e);
    if (rc == 0)
        rc = ec2_update_tags(h, c, op, id, &e);
    return rc != 0 ? op_fail(h, op, e) : created(h, op, c, id, NULL, subnet_fetch);
}

static mle_op_status subnet_delete(const mle_host *h, const mle_op *op) {
    return ec2_delete_simple(h, op, "DeleteSubnet", "SubnetId");
}

static mle_op_status subnet_adopt(const mle_host *h, const mle_op *op) { return ec2_adopt(h, op, &subnet_kind); }

static mle_op_status subnet_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, subnet_configure, subnet_fetch); }

static const mle_resource_type aws_subnet_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_subnet",
    .description = "A subnet of a VPC in one availability zone.",
    .attrs = subnet_attrs,
    .n_attrs = sizeof subnet_attrs / sizeof *subnet_attrs,
    .create = subnet_create,
    .read = subnet_read,
    .update = subnet_update,
    .del = subnet_delete,
    .import = subnet_read,
    .poll = subnet_poll,
    .adopt = subnet_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_internet_gateway (and its attachment to a VPC)
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema igw_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The internet gateway ID (igw-...)."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The gateway's ARN."},
    {"vpc_id", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "The VPC to attach to; changing it detaches and re-attaches."},
    {"owner_id", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The owning account."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

/* The VPC the gateway is attached to (borrowed from item), or NULL. */
static const char *igw_attached_vpc(const mle_host *h, const mle_value *item) {
    mle_value *set = vpath(h, item, "attachmentSet");
    size_t n = xl_count(h, set, "item");
    for (size_t i = 0; i < n; i++) {
        mle_value *a = xl_at(h, set, "item", i);
        const char *st = vstr(h, a, "state");
        if (!st || str_eq(st, "available") || str_eq(st, "attached") || str_eq(st, "attaching"))
            return vstr_ne(h, a, "vpcId");
    }
    return NULL;
}

static int igw_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                     mle_value **attrs, mle_error **err) {
    mle_value *it = NULL;
    int rc = ec2_describe_one(h, c, op, "DescribeInternetGateways", "InternetGatewayId.1", id,
                              "internetGatewaySet", &it, err);
    if (rc <= 0)
        return rc;
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    char *arn = ec2_arn(c, vstr(h, it, "ownerId"), "internet-gateway", id);
    vset_str(h, a, "arn", arn);
    free(arn);
    vset_str(h, a, "vpc_id", igw_attached_vpc(h, it));
    vset_str(h, a, "owner_id", vstr(h, it, "ownerId"));
    h->v_set(a, "tags", ec2_tags(h, it));
    h->v_decref(it);
    *attrs = a;
    return 1;
}

static int igw_attach(const mle_host *h, aws_ctx *c, const mle_op *op, const char *action,
                      const char *id, const char *vpc, mle_error **err) {
    aws_form f = {0};
    form_add(&f, "InternetGatewayId", id);
    form_add(&f, "VpcId", vpc);
    int rc = ec2_simple(h, c, op, action, &f, err);
    return rc < 0 ? -1 : 0;
}

/* Attached to the VPC the config names (and to no other). */
static int igw_configure(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                         mle_error **err) {
    const char *want = vstr_ne(h, op->config, "vpc_id");
    mle_value *it = NULL;
    int rc = ec2_describe_one(h, c, op, "DescribeInternetGateways", "InternetGatewayId.1", id,
                              "internetGatewaySet", &it, err);
    if (rc <= 0) {
        if (rc == 0)
            *err = h->error_new(h, MLE_E_NOT_FOUND, "aws: internet gateway %s not visible yet", id);
        return -1;
    }
    const char *have = igw_attached_vpc(h, it);
    rc = 0;
    if (have && !str_eq(have, want))
        rc = igw_attach(h, c, op, "DetachInternetGateway", id, have, err);
    if (rc == 0 && want && !str_eq(have, want))
        rc = igw_attach(h, c, op, "AttachInternetGateway", id, want, err);
    h->v_decref(it);
    return rc;
}

static const ec2_kind igw_kind = {
    .describe = "DescribeInternetGateways",
    .set = "internetGatewaySet",
    .id_field = "internetGatewayId",
    .tag_type = "internet-gateway",
    .create = "CreateInternetGateway",
    .id_path = "internetGateway.internetGatewayId",
    .id_label = "ID",
    .configure = igw_configure,
    .fetch = igw_fetch,
};

static mle_op_status igw_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    aws_form f = {0};
    return ec2_create(h, op, c, &igw_kind, &f);
}

static mle_op_status igw_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, igw_fetch); }

static mle_op_status igw_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    int rc = 0;
    if (attr_changed(h, op, "vpc_id")) {
        const char *old = op->state ? vstr_ne(h, op->state, "vpc_id") : NULL;
        const char *now = vstr_ne(h, op->config, "vpc_id");
        if (old)
            rc = igw_attach(h, c, op, "DetachInternetGateway", id, old, &e);
        if (rc == 0 && now)
            rc = igw_attach(h, c, op, "AttachInternetGateway", id, now, &e);
    }
    if (rc == 0)
        rc = ec2_update_tags(h, c, op, id, &e);
    return rc != 0 ? op_fail(h, op, e) : created(h, op, c, id, NULL, igw_fetch);
}

static mle_op_status igw_delete(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    if (!need_id(h, op, &e))
        return op_fail(h, op, e);
    /* Detach from whatever it is attached to now, not what state remembers. */
    mle_value *it = NULL;
    int rc = ec2_describe_one(h, c, op, "DescribeInternetGateways", "InternetGatewayId.1", op->id,
                              "internetGatewaySet", &it, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    if (rc == 0)
        return h->op_not_found(h, op);
    const char *vpc = igw_attached_vpc(h, it);
    int arc = vpc ? igw_attach(h, c, op, "DetachInternetGateway", op->id, vpc, &e) : 0;
    h->v_decref(it);
    if (arc != 0)
        return op_fail(h, op, e);
    aws_form f = {0};
    form_add(&f, "InternetGatewayId", op->id);
    int drc = ec2_simple(h, c, op, "DeleteInternetGateway", &f, &e);
    return ec2_delete_answer(h, op, drc, e);
}

static mle_op_status igw_adopt(const mle_host *h, const mle_op *op) { return ec2_adopt(h, op, &igw_kind); }

static mle_op_status igw_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, igw_configure, igw_fetch); }

static const mle_resource_type aws_igw_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_internet_gateway",
    .description = "An internet gateway, attached to a VPC.",
    .attrs = igw_attrs,
    .n_attrs = sizeof igw_attrs / sizeof *igw_attrs,
    .create = igw_create,
    .read = igw_read,
    .update = igw_update,
    .del = igw_delete,
    .import = igw_read,
    .poll = igw_poll,
    .adopt = igw_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_eip
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema eip_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The allocation ID (eipalloc-...)."},
    {"allocation_id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The allocation ID."},
    {"public_ip", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The address."},
    {"domain", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "\"vpc\"", "Always vpc today."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

static int eip_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                     mle_value **attrs, mle_error **err) {
    mle_value *it = NULL;
    int rc = ec2_describe_one(h, c, op, "DescribeAddresses", "AllocationId.1", id, "addressesSet", &it, err);
    if (rc <= 0)
        return rc;
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "allocation_id", vstr(h, it, "allocationId"));
    vset_str(h, a, "public_ip", vstr(h, it, "publicIp"));
    vset_str(h, a, "domain", vstr_ne(h, it, "domain") ? vstr(h, it, "domain") : "vpc");
    h->v_set(a, "tags", ec2_tags(h, it));
    h->v_decref(it);
    *attrs = a;
    return 1;
}

static const ec2_kind eip_kind = {
    .describe = "DescribeAddresses",
    .set = "addressesSet",
    .id_field = "allocationId",
    .tag_type = "elastic-ip",
    .create = "AllocateAddress",
    .id_path = "allocationId",
    .id_label = "allocationId",
    .configure = NULL,
    .fetch = eip_fetch,
};

static mle_op_status eip_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    aws_form f = {0};
    form_add(&f, "Domain", vstr_ne(h, op->config, "domain") ? vstr(h, op->config, "domain") : "vpc");
    return ec2_create(h, op, c, &eip_kind, &f);
}

static mle_op_status eip_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, eip_fetch); }

static mle_op_status eip_update(const mle_host *h, const mle_op *op) { return ec2_update_tags_only(h, op, eip_fetch); }

static mle_op_status eip_delete(const mle_host *h, const mle_op *op) {
    return ec2_delete_simple(h, op, "ReleaseAddress", "AllocationId");
}

static mle_op_status eip_adopt(const mle_host *h, const mle_op *op) { return ec2_adopt(h, op, &eip_kind); }

static mle_op_status eip_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, NULL, eip_fetch); }

static const mle_resource_type aws_eip_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_eip",
    .description = "An Elastic IP address (for a NAT gateway).",
    .attrs = eip_attrs,
    .n_attrs = sizeof eip_attrs / sizeof *eip_attrs,
    .create = eip_create,
    .read = eip_read,
    .update = eip_update,
    .del = eip_delete,
    .import = eip_read,
    .poll = eip_poll,
    .adopt = eip_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_nat_gateway: a long operation both ways (pending -> available, deleting -> deleted).
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema nat_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The NAT gateway ID (nat-...)."},
    {"subnet_id", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL,
     "The (public) subnet it lives in."},
    {"allocation_id", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, NULL,
     "The Elastic IP's allocation ID (public gateways)."},
    {"connectivity_type", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "\"public\"",
     "public or private."},
    {"vpc_id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The VPC."},
    {"public_ip", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The public address."},
    {"private_ip", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The private address."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

#define NAT_POLL_MS 15000
#define NAT_TIMEOUT_S (20 * 60)

/* The gateway's raw item (deleted ones are gone). 1/0/-1 like fetch. */
static int nat_describe(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                        mle_value **item, mle_error **err) {
    int rc = ec2_describe_one(h, c, op, "DescribeNatGateways", "NatGatewayId.1", id,
                              "natGatewaySet", item, err);
    if (rc == 1 && str_eq(vstr(h, *item, "state"), "deleted")) {
        h->v_decref(*item);
        *item = NULL;
        return 0;
    }
    return rc;
}

static mle_value *nat_attrs_of(const mle_host *h, const char *id, const mle_value *it) {
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "subnet_id", vstr(h, it, "subnetId"));
    mle_value *addrs = vpath(h, it, "natGatewayAddressSet");
    mle_value *first = xl_count(h, addrs, "item") ? xl_at(h, addrs, "item", 0) : NULL;
    vset_str(h, a, "allocation_id", vstr_ne(h, first, "allocationId"));
    vset_str(h, a, "connectivity_type", vstr_ne(h, it, "connectivityType") ? vstr(h, it, "connectivityType") : "public");
    vset_str(h, a, "vpc_id", vstr(h, it, "vpcId"));
    vset_str(h, a, "public_ip", vstr_ne(h, first, "publicIp"));
    vset_str(h, a, "private_ip", vstr_ne(h, first, "privateIp"));
    h->v_set(a, "tags", ec2_tags(h, it));
    return a;
}

static int nat_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                     mle_value **attrs, mle_error **err) {
    mle_value *it = NULL;
    int rc = nat_describe(h, c, op, id, &it, err);
    if (rc <= 0)
        return rc;
    *attrs = nat_attrs_of(h, id, it);
    h->v_decref(it);
    return 1;
}

/* Where a gateway stands against what we wait for: DONE/IN_PROGRESS/ERROR. */
static mle_op_status nat_answer(const mle_host *h, const mle_op *op, aws_ctx *c, const char *id,
                                const char *awaited, int64_t deadline) {
    mle_value *it = NULL;
    mle_error *e = NULL;
    int rc = nat_describe(h, c, op, id, &it, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    if (str_eq(awaited, "deleted")) {
        if (rc == 0)
            return h->op_done(h, op, id, NULL);
        char state[32];
        snprintf(state, sizeof state, "%s", vstr(h, it, "state") ? vstr(h, it, "state") : "?");
        h->v_decref(it);
        if (h->now_unix_ms() / 1000 > deadline)
            return poll_timeout(h, op, id, "deleted", state);
        return in_progress(h, op, c, id, "deleted", deadline, NAT_POLL_MS);
    }
    if (rc == 0) {
        if (str_eq(awaited, "available") && h->now_unix_ms() / 1000 <= deadline)
            return in_progress(h, op, c, id, "available", deadline, NAT_POLL_MS);
        return op_fail(h, op, h->error_new(h, MLE_E_NOT_FOUND, "aws: NAT gateway %s vanished "
                                                               "while being created", id));
    }
    const char *state = vstr(h, it, "state");
    mle_op_status st;
    if (str_eq(state, "available")) {
        st = h->op_done(h, op, id, nat_attrs_of(h, id, it));
    } else if (str_eq(state, "failed")) {
        mle_error *fe = h->error_new(h, MLE_E_PROVIDER, "aws: NAT gateway %s failed: %s: %s", id,
                                     vstr_ne(h, it, "failureCode") ? vstr(h, it, "failureCode") : "?",
                                     vstr_ne(h, it, "failureMessage") ? vstr(h, it, "failureMessage") : "");
        h->error_set_provider(fe, 0, vstr_ne(h, it, "failureCode"), vstr_ne(h, it, "failureMessage"));
        h->error_set_hint(fe, "a failed NAT gateway stays visible for an hour; destroy it, fix "
                              "the subnet or Elastic IP, and apply again");
        st = op_fail(h, op, fe);
    } else if (h->now_unix_ms() / 1000 > deadline) {
        st = poll_timeout(h, op, id, "available", state);
    } else {
        st = in_progress(h, op, c, id, "available", deadline, NAT_POLL_MS);
    }
    h->v_decref(it);
    return st;
}

static mle_op_status nat_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    /* The client token would make a retry safe on AWS; moto ignores it, so look first. */
    static const char *const live[] = {"pending", "available", NULL};
    char *earlier = NULL;
    mle_error *e0 = NULL;
    if (ec2_earlier(h, c, op, "DescribeNatGateways", "natGatewaySet", "natGatewayId", "state", live,
                    &earlier, &e0) != 0)
        return op_fail(h, op, e0);
    if (earlier) {
        mle_op_status st0 = in_progress(h, op, c, earlier, "available", deadline_in(h, c, NAT_TIMEOUT_S), NAT_POLL_MS);
        free(earlier);
        return st0;
    }
    aws_form f = {0};
    form_add(&f, "SubnetId", vstr(h, op->config, "subnet_id"));
    form_add(&f, "AllocationId", vstr_ne(h, op->config, "allocation_id"));
    form_add(&f, "ConnectivityType", vstr_ne(h, op->config, "connectivity_type"));
    /* EC2 client tokens are at most 64 ASCII characters. */
    if (op->token && *op->token && strlen(op->token) <= 64)
        form_add(&f, "ClientToken", op->token);
    ec2_tag_spec(h, &f, op, "natgateway");
    mle_error *e = NULL;
    mle_value *r = aws_query(h, c, op, AWS_EC2, "CreateNatGateway", &f, &e);
    form_free(&f);
    if (!r)
        return op_fail(h, op, e);
    char *id = xstrdup(vstr_ne(h, r, "natGateway.natGatewayId"));
    h->v_decref(r);
    if (!id)
        return op_fail(h, op, h->error_new(h, MLE_E_PROVIDER, "ec2 CreateNatGateway: no ID in the answer"));
    /* Always one poll, even when the answer says available (moto does): the scheduler's
     * path for long operations is the same whatever the peer. */
    mle_op_status st = in_progress(h, op, c, id, "available", deadline_in(h, c, NAT_TIMEOUT_S), NAT_POLL_MS);
    free(id);
    return st;
}

static mle_op_status nat_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, nat_fetch); }

static mle_op_status nat_update(const mle_host *h, const mle_op *op) { return ec2_update_tags_only(h, op, nat_fetch); }

static mle_op_status nat_delete(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    if (!need_id(h, op, &e))
        return op_fail(h, op, e);
    aws_form f = {0};
    form_add(&f, "NatGatewayId", op->id);
    int rc = ec2_simple(h, c, op, "DeleteNatGateway", &f, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    if (rc == 1)
        return h->op_not_found(h, op);
    return in_progress(h, op, c, op->id, "deleted", deadline_in(h, c, NAT_TIMEOUT_S), NAT_POLL_MS);
}

static mle_op_status nat_poll(const mle_host *h, const mle_op *op) {
    return answer_poll(h, op, 128, nat_fetch, nat_answer);
}

static mle_op_status nat_adopt(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    char *id = NULL;
    mle_error *e = NULL;
    static const char *const live[] = {"pending", "available", NULL};
    if (ec2_find_owned(h, c, op, "DescribeNatGateways", "natGatewaySet", "natGatewayId", "state",
                       live, &id, &e) != 0)
        return op_fail(h, op, e);
    if (!id)
        return h->op_not_found(h, op);
    /* A gateway still pending is adopted into the poll, not reported half-made. */
    mle_op_status st = nat_answer(h, op, c, id, "available", deadline_in(h, c, NAT_TIMEOUT_S));
    free(id);
    return st;
}

static const mle_resource_type aws_nat_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_nat_gateway",
    .description = "A NAT gateway (long operation: created and deleted asynchronously).",
    .attrs = nat_attrs,
    .n_attrs = sizeof nat_attrs / sizeof *nat_attrs,
    .create = nat_create,
    .read = nat_read,
    .update = nat_update,
    .del = nat_delete,
    .import = nat_read,
    .poll = nat_poll,
    .adopt = nat_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_route_table: routes and subnet associations are part of the table.
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema rt_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The route table ID (rtb-...)."},
    {"vpc_id", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The VPC."},
    {"routes", MLE_T_LIST, MLE_T_ANY, MLE_A_OPTIONAL | MLE_A_COMPUTED, NULL,
     "Routes besides the VPC's local one: {cidr_block = ..., and one target of gateway_id, "
     "nat_gateway_id, transit_gateway_id, vpc_peering_connection_id, network_interface_id}."},
    {"subnet_ids", MLE_T_LIST, MLE_T_STRING, MLE_A_OPTIONAL | MLE_A_COMPUTED, NULL,
     "Subnets associated with this table."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

/* Route attribute key -> EC2 request member / response field. */
static const struct {
    const char *attr, *req, *resp;
} rt_targets[] = {
    {"gateway_id", "GatewayId", "gatewayId"},
    {"nat_gateway_id", "NatGatewayId", "natGatewayId"},
    {"transit_gateway_id", "TransitGatewayId", "transitGatewayId"},
    {"vpc_peering_connection_id", "VpcPeeringConnectionId", "vpcPeeringConnectionId"},
    {"network_interface_id", "NetworkInterfaceId", "networkInterfaceId"},
};

static int rt_fetch_raw(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                        mle_value **item, mle_error **err) {
    return ec2_describe_one(h, c, op, "DescribeRouteTables", "RouteTableId.1", id,
                            "routeTableSet", item, err);
}

/* Routes of a table as attribute objects (new array), without the local route. */
static mle_value *rt_routes(const mle_host *h, const mle_value *item) {
    mle_value *out = h->v_array();
    mle_value *set = vpath(h, item, "routeSet");
    size_t n = xl_count(h, set, "item");
    for (size_t i = 0; i < n; i++) {
        mle_value *r = xl_at(h, set, "item", i);
        const char *dst = vstr_ne(h, r, "destinationCidrBlock");
        if (!dst || str_eq(vstr(h, r, "gatewayId"), "local") ||
            str_eq(vstr(h, r, "origin"), "CreateRouteTable"))
            continue;
        mle_value *o = h->v_object();
        vset_str(h, o, "cidr_block", dst);
        for (size_t t = 0; t < sizeof rt_targets / sizeof *rt_targets; t++)
            if (vstr_ne(h, r, rt_targets[t].resp))
                vset_str(h, o, rt_targets[t].attr, vstr(h, r, rt_targets[t].resp));
        h->v_append(out, o);
    }
    return out;
}

static int rt_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                    mle_value **attrs, mle_error **err) {
    mle_value *it = NULL;
    int rc = rt_fetch_raw(h, c, op, id, &it, err);
    if (rc <= 0)
        return rc;
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    vset_str(h, a, "vpc_id", vstr(h, it, "vpcId"));
    h->v_set(a, "routes", order_like(h, rt_routes(h, it), prior_attr(h, op, "routes")));
    mle_value *subs = h->v_array();
    mle_value *as = vpath(h, it, "associationSet");
    for (size_t i = 0; i < xl_count(h, as, "item"); i++) {
        const char *sn = vstr_ne(h, xl_at(h, as, "item", i), "subnetId");
        if (sn)
            h->v_append(subs, h->v_string(sn));
    }
    h->v_set(a, "subnet_ids", order_like(h, subs, prior_attr(h, op, "subnet_ids")));
    h->v_set(a, "tags", ec2_tags(h, it));
    h->v_decref(it);
    *attrs = a;
    return 1;
}

/* CreateRoute / ReplaceRoute for one route attribute object. */
static int rt_put_route(const mle_host *h, aws_ctx *c, const mle_op *op, const char *action,
                        const char *id, const mle_value *route, mle_error **err) {
    const char *dst = vstr_ne(h, route, "cidr_block");
    if (!dst) {
        *err = err_invalid_attr(h, "routes", "every route needs cidr_block");
        return -1;
    }
    aws_form f = {0};
    form_add(&f, "RouteTableId", id);
    form_add(&f, "DestinationCidrBlock", dst);
    int targets = 0;
    for (size_t t = 0; t < sizeof rt_targets / sizeof *rt_targets; t++) {
        const char *v = vstr_ne(h, route, rt_targets[t].attr);
        if (v) {
            form_add(&f, rt_targets[t].req, v);
            targets++;
        }
    }
    if (targets != 1) {
        form_free(&f);
        *err = err_invalid_attr(h, "routes", "the route to %s needs exactly one target "
                                             "(gateway_id, nat_gateway_id, ...)", dst);
        return -1;
    }
    return ec2_simple(h, c, op, action, &f, err) < 0 ? -1 : 0;
}

static int rt_associate(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                        const char *subnet, mle_error **err) {
    aws_form f = {0};
    form_add(&f, "RouteTableId", id);
    form_add(&f, "SubnetId", subnet);
    return ec2_simple(h, c, op, "AssociateRouteTable", &f, err) < 0 ? -1 : 0;
}

/* The route of `list` (attribute objects) with destination dst, borrowed, or NULL. */
static mle_value *rt_route_for(const mle_host *h, const mle_value *list, const char *dst) {
    for (size_t i = 0; i < jl_count(h, list); i++)
        if (str_eq(vstr(h, h->v_at(list, i), "cidr_block"), dst))
            return h->v_at(list, i);
    return NULL;
}

/* Make the table's routes and associations those of the config, from what AWS has now. */
static int rt_converge(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                       mle_error **err) {
    mle_value *it = NULL;
    int rc = rt_fetch_raw(h, c, op, id, &it, err);
    if (rc <= 0) {
        if (rc == 0)
            *err = h->error_new(h, MLE_E_NOT_FOUND, "aws: route table %s not found", id);
        return -1;
    }
    mle_value *have = rt_routes(h, it);
    mle_value *want = op->config ? h->v_get(op->config, "routes") : NULL;
    int manage_routes = want && h->v_kind(want) == MLE_V_ARRAY;
    rc = 0;
    if (manage_routes) {
        for (size_t i = 0; rc == 0 && i < h->v_len(have); i++) {
            mle_value *r = h->v_at(have, i);
            const char *dst = vstr(h, r, "cidr_block");
            mle_value *w = rt_route_for(h, want, dst);
            if (!w) {
                aws_form f = {0};
                form_add(&f, "RouteTableId", id);
                form_add(&f, "DestinationCidrBlock", dst);
                rc = ec2_simple(h, c, op, "DeleteRoute", &f, err) < 0 ? -1 : 0;
            } else if (!h->v_equal(w, r)) {
                rc = rt_put_route(h, c, op, "ReplaceRoute", id, w, err);
            }
        }
        for (size_t i = 0; rc == 0 && i < h->v_len(want); i++) {
            mle_value *w = h->v_at(want, i);
            if (!rt_route_for(h, have, vstr(h, w, "cidr_block")))
                rc = rt_put_route(h, c, op, "CreateRoute", id, w, err);
        }
    }
    mle_value *subs = op->config ? h->v_get(op->config, "subnet_ids") : NULL;
    if (rc == 0 && subs && h->v_kind(subs) == MLE_V_ARRAY) {
        mle_value *as = vpath(h, it, "associationSet");
        size_t na = xl_count(h, as, "item");
        for (size_t i = 0; rc == 0 && i < na; i++) {
            mle_value *a = xl_at(h, as, "item", i);
            const char *sn = vstr_ne(h, a, "subnetId");
            if (!sn || vbool(h, a, "main", 0))
                continue;
            mle_value *s = h->v_string(sn);
            int keep = array_has(h, subs, s);
            h->v_decref(s);
            if (!keep) {
                aws_form f = {0};
                form_add(&f, "AssociationId", vstr(h, a, "routeTableAssociationId"));
                rc = ec2_simple(h, c, op, "DisassociateRouteTable", &f, err) < 0 ? -1 : 0;
            }
        }
        for (size_t i = 0; rc == 0 && i < h->v_len(subs); i++) {
            const char *sn = h->v_str(h->v_at(subs, i));
            int have_it = 0;
            for (size_t j = 0; j < na; j++)
                have_it |= str_eq(vstr(h, xl_at(h, as, "item", j), "subnetId"), sn);
            if (sn && !have_it)
                rc = rt_associate(h, c, op, id, sn, err);
        }
    }
    h->v_decref(have);
    h->v_decref(it);
    return rc;
}

static const ec2_kind rt_kind = {
    .describe = "DescribeRouteTables",
    .set = "routeTableSet",
    .id_field = "routeTableId",
    .tag_type = "route-table",
    .create = "CreateRouteTable",
    .id_path = "routeTable.routeTableId",
    .id_label = "ID",
    .configure = rt_converge,
    .fetch = rt_fetch,
};

static mle_op_status rt_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    aws_form f = {0};
    form_add(&f, "VpcId", vstr(h, op->config, "vpc_id"));
    if (op->token && *op->token && strlen(op->token) <= 64)
        form_add(&f, "ClientToken", op->token);
    return ec2_create(h, op, c, &rt_kind, &f);
}

static mle_op_status rt_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, rt_fetch); }

static mle_op_status rt_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    if (rt_converge(h, c, op, id, &e) != 0 || ec2_update_tags(h, c, op, id, &e) != 0)
        return op_fail(h, op, e);
    return created(h, op, c, id, NULL, rt_fetch);
}

static mle_op_status rt_delete(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    if (!need_id(h, op, &e))
        return op_fail(h, op, e);
    mle_value *it = NULL;
    int rc = rt_fetch_raw(h, c, op, op->id, &it, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    if (rc == 0)
        return h->op_not_found(h, op);
    mle_value *as = vpath(h, it, "associationSet");
    rc = 0;
    for (size_t i = 0; rc == 0 && i < xl_count(h, as, "item"); i++) {
        mle_value *a = xl_at(h, as, "item", i);
        if (vbool(h, a, "main", 0) || !vstr_ne(h, a, "routeTableAssociationId"))
            continue;
        aws_form f = {0};
        form_add(&f, "AssociationId", vstr(h, a, "routeTableAssociationId"));
        rc = ec2_simple(h, c, op, "DisassociateRouteTable", &f, &e) < 0 ? -1 : 0;
    }
    h->v_decref(it);
    if (rc != 0)
        return op_fail(h, op, e);
    aws_form f = {0};
    form_add(&f, "RouteTableId", op->id);
    int drc = ec2_simple(h, c, op, "DeleteRouteTable", &f, &e);
    return ec2_delete_answer(h, op, drc, e);
}

static mle_op_status rt_adopt(const mle_host *h, const mle_op *op) { return ec2_adopt(h, op, &rt_kind); }

static mle_op_status rt_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, rt_converge, rt_fetch); }

static const mle_resource_type aws_route_table_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_route_table",
    .description = "A route table with its routes and subnet associations.",
    .attrs = rt_attrs,
    .n_attrs = sizeof rt_attrs / sizeof *rt_attrs,
    .create = rt_create,
    .read = rt_read,
    .update = rt_update,
    .del = rt_delete,
    .import = rt_read,
    .poll = rt_poll,
    .adopt = rt_adopt,
};

/* ------------------------------------------------------------------------------------------
 * aws_security_group with its ingress and egress rules.
 *
 * A rule is {protocol, from_port, to_port, cidr_blocks?, ipv6_cidr_blocks?,
 * security_groups?, description?}. AWS groups a group's permissions by (protocol, ports),
 * so write one rule per protocol and port range; "-1" (all) uses ports 0..0.
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema sg_attrs[] = {
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The group ID (sg-...)."},
    {"arn", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_STABLE, NULL, "The group's ARN."},
    {"name", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The group name (unique in the VPC)."},
    {"description", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "\"Managed by mlengine\"",
     "The group description."},
    {"vpc_id", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "The VPC."},
    {"ingress", MLE_T_LIST, MLE_T_ANY, MLE_A_OPTIONAL | MLE_A_COMPUTED, NULL,
     "Inbound rules: {protocol, from_port, to_port, cidr_blocks, ipv6_cidr_blocks, "
     "security_groups, description}, one per protocol and port range."},
    {"egress", MLE_T_LIST, MLE_T_ANY, MLE_A_OPTIONAL | MLE_A_COMPUTED, NULL,
     "Outbound rules, same shape; when unset AWS's default allow-all rule stays."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL,
     "Tags; mlengine adds mlengine:stack and mlengine:address itself."},
};

/* One EC2 IpPermission as a rule attribute object (new). */
static mle_value *sg_rule_of(const mle_host *h, const mle_value *perm) {
    mle_value *o = h->v_object();
    const char *proto = vstr(h, perm, "ipProtocol");
    vset_str(h, o, "protocol", proto ? proto : "-1");
    int all = str_eq(proto, "-1");
    h->v_set(o, "from_port", h->v_int(all ? 0 : vint(h, perm, "fromPort", 0)));
    h->v_set(o, "to_port", h->v_int(all ? 0 : vint(h, perm, "toPort", 0)));
    const char *desc = NULL;
    static const struct {
        const char *set, *field, *attr;
    } lists[] = {{"ipRanges", "cidrIp", "cidr_blocks"},
                 {"ipv6Ranges", "cidrIpv6", "ipv6_cidr_blocks"},
                 {"groups", "groupId", "security_groups"}};
    for (size_t l = 0; l < 3; l++) {
        mle_value *set = vpath(h, perm, lists[l].set);
        size_t n = xl_count(h, set, "item");
        if (!n)
            continue;
        mle_value *arr = h->v_array();
        for (size_t i = 0; i < n; i++) {
            mle_value *x = xl_at(h, set, "item", i);
            if (vstr_ne(h, x, lists[l].field))
                h->v_append(arr, h->v_string(vstr(h, x, lists[l].field)));
            if (!desc)
                desc = vstr_ne(h, x, "description");
        }
        h->v_set(o, lists[l].attr, arr);
    }
    if (desc)
        vset_str(h, o, "description", desc);
    return o;
}

static mle_value *sg_rules(const mle_host *h, const mle_value *item, const char *set) {
    mle_value *out = h->v_array();
    mle_value *perms = vpath(h, item, set);
    for (size_t i = 0; i < xl_count(h, perms, "item"); i++)
        h->v_append(out, sg_rule_of(h, xl_at(h, perms, "item", i)));
    return out;
}

static int sg_fetch_raw(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                        mle_value **item, mle_error **err) {
    return ec2_describe_one(h, c, op, "DescribeSecurityGroups", "GroupId.1", id,
                            "securityGroupInfo", item, err);
}

static int sg_fetch(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                    mle_value **attrs, mle_error **err) {
    mle_value *it = NULL;
    int rc = sg_fetch_raw(h, c, op, id, &it, err);
    if (rc <= 0)
        return rc;
    mle_value *a = h->v_object();
    vset_str(h, a, "id", id);
    const char *arn = vstr_ne(h, it, "securityGroupArn");
    char *made = arn ? NULL : ec2_arn(c, vstr(h, it, "ownerId"), "security-group", id);
    vset_str(h, a, "arn", arn ? arn : made);
    free(made);
    vset_str(h, a, "name", vstr(h, it, "groupName"));
    vset_str(h, a, "description", vstr(h, it, "groupDescription"));
    vset_str(h, a, "vpc_id", vstr(h, it, "vpcId"));
    h->v_set(a, "ingress", order_like(h, sg_rules(h, it, "ipPermissions"), prior_attr(h, op, "ingress")));
    h->v_set(a, "egress", order_like(h, sg_rules(h, it, "ipPermissionsEgress"), prior_attr(h, op, "egress")));
    h->v_set(a, "tags", ec2_tags(h, it));
    h->v_decref(it);
    *attrs = a;
    return 1;
}

/* IpPermissions.<n>.* for one rule object. 0, or -1 with *err on a malformed rule. */
static int sg_form_rule(const mle_host *h, aws_form *f, int n, const mle_value *rule,
                        const char *attr, mle_error **err) {
    const char *proto = vstr_ne(h, rule, "protocol");
    if (!proto) {
        *err = err_invalid_attr(h, attr, "every rule needs protocol (tcp, udp, icmp or -1)");
        return -1;
    }
    char k[96];
    snprintf(k, sizeof k, "IpPermissions.%d.IpProtocol", n);
    form_add(f, k, proto);
    if (!str_eq(proto, "-1")) {
        snprintf(k, sizeof k, "IpPermissions.%d.FromPort", n);
        form_add_int(f, k, vint(h, rule, "from_port", 0));
        snprintf(k, sizeof k, "IpPermissions.%d.ToPort", n);
        form_add_int(f, k, vint(h, rule, "to_port", 0));
    }
    const char *desc = vstr_ne(h, rule, "description");
    static const struct {
        const char *attr, *list, *field;
    } lists[] = {{"cidr_blocks", "IpRanges", "CidrIp"},
                 {"ipv6_cidr_blocks", "Ipv6Ranges", "CidrIpv6"},
                 {"security_groups", "Groups", "GroupId"}};
    int targets = 0;
    for (size_t l = 0; l < 3; l++) {
        mle_value *arr = h->v_get(rule, lists[l].attr);
        for (size_t i = 0; i < jl_count(h, arr); i++) {
            form_addf(f, h->v_str(h->v_at(arr, i)), "IpPermissions.%d.%s.%zu.%s", n, lists[l].list,
                      i + 1, lists[l].field);
            if (desc)
                form_addf(f, desc, "IpPermissions.%d.%s.%zu.Description", n, lists[l].list, i + 1);
            targets++;
        }
    }
    if (!targets) {
        *err = err_invalid_attr(h, attr, "a %s rule needs cidr_blocks, ipv6_cidr_blocks or "
                                         "security_groups", proto);
        return -1;
    }
    return 0;
}

/* Authorize or revoke a set of rules in one call. */
static int sg_rules_call(const mle_host *h, aws_ctx *c, const mle_op *op, const char *action,
                         const char *id, const mle_value *rules, const char *attr,
                         mle_error **err) {
    if (!rules || h->v_len(rules) == 0)
        return 0;
    aws_form f = {0};
    form_add(&f, "GroupId", id);
    for (size_t i = 0; i < h->v_len(rules); i++) {
        if (sg_form_rule(h, &f, (int)i + 1, h->v_at(rules, i), attr, err) != 0) {
            form_free(&f);
            return -1;
        }
    }
    int rc = ec2_simple(h, c, op, action, &f, err);
    return rc < 0 ? -1 : 0;
}

/* Rules of `a` that `b` lacks (new array). */
static mle_value *rules_minus(const mle_host *h, const mle_value *a, const mle_value *b) {
    mle_value *out = h->v_array();
    for (size_t i = 0; i < jl_count(h, a); i++)
        if (!array_has(h, b, h->v_at(a, i)))
            h->v_append(out, h->v_deep_copy(h->v_at(a, i)));
    return out;
}

/* Make the group's rules those of the config (an unset list is left alone). */
static int sg_converge(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                       mle_error **err) {
    mle_value *it = NULL;
    int rc = sg_fetch_raw(h, c, op, id, &it, err);
    if (rc <= 0) {
        if (rc == 0)
            *err = h->error_new(h, MLE_E_NOT_FOUND, "aws: security group %s not found", id);
        return -1;
    }
    static const struct {
        const char *attr, *set, *grant, *revoke;
    } dirs[] = {{"ingress", "ipPermissions", "AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress"},
                {"egress", "ipPermissionsEgress", "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupEgress"}};
    rc = 0;
    for (size_t d = 0; rc == 0 && d < 2; d++) {
        mle_value *want = op->config ? h->v_get(op->config, dirs[d].attr) : NULL;
        if (!want || h->v_kind(want) != MLE_V_ARRAY)
            continue;
        mle_value *have = sg_rules(h, it, dirs[d].set);
        mle_value *gone = rules_minus(h, have, want), *add = rules_minus(h, want, have);
        rc = sg_rules_call(h, c, op, dirs[d].revoke, id, gone, dirs[d].attr, err);
        if (rc == 0)
            rc = sg_rules_call(h, c, op, dirs[d].grant, id, add, dirs[d].attr, err);
        h->v_decref(have);
        h->v_decref(gone);
        h->v_decref(add);
    }
    h->v_decref(it);
    return rc;
}

static const ec2_kind sg_kind = {
    .describe = "DescribeSecurityGroups",
    .set = "securityGroupInfo",
    .id_field = "groupId",
    .tag_type = "security-group",
    .create = "CreateSecurityGroup",
    .id_path = "groupId",
    .id_label = "groupId",
    .configure = sg_converge,
    .fetch = sg_fetch,
};

static mle_op_status sg_create(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    aws_form f = {0};
    form_add(&f, "GroupName", vstr(h, op->config, "name"));
    form_add(&f, "GroupDescription",
             vstr_ne(h, op->config, "description") ? vstr(h, op->config, "description") : "Managed by mlengine");
    form_add(&f, "VpcId", vstr(h, op->config, "vpc_id"));
    return ec2_create(h, op, c, &sg_kind, &f);
}

static mle_op_status sg_read(const mle_host *h, const mle_op *op) { return generic_read(h, op, sg_fetch); }

static mle_op_status sg_update(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    if (sg_converge(h, c, op, id, &e) != 0 || ec2_update_tags(h, c, op, id, &e) != 0)
        return op_fail(h, op, e);
    return created(h, op, c, id, NULL, sg_fetch);
}

static mle_op_status sg_delete(const mle_host *h, const mle_op *op) {
    return ec2_delete_simple(h, op, "DeleteSecurityGroup", "GroupId");
}

static mle_op_status sg_adopt(const mle_host *h, const mle_op *op) { return ec2_adopt(h, op, &sg_kind); }

static mle_op_status sg_poll(const mle_host *h, const mle_op *op) { return generic_poll(h, op, sg_converge, sg_fetch); }

static const mle_resource_type aws_security_group_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_security_group",
    .description = "A VPC security group with its ingress and egress rules.",
    .attrs = sg_attrs,
    .n_attrs = sizeof sg_attrs / sizeof *sg_attrs,
    .create = sg_create,
    .read = sg_read,
    .update = sg_update,
    .del = sg_delete,
    .import = sg_read,
    .poll = sg_poll,
    .adopt = sg_adopt,
};

/* ------------------------------------------------------------------------------------------
 * data source aws_availability_zones
 * ------------------------------------------------------------------------------------------ */
static const mle_attr_schema azs_attrs[] = {
    {"state", MLE_T_STRING, 0, MLE_A_OPTIONAL, "\"available\"",
     "Only zones in this state (available, information, impaired, unavailable)."},
    {"names", MLE_T_LIST, MLE_T_STRING, MLE_A_COMPUTED, NULL, "Zone names, sorted."},
    {"zone_ids", MLE_T_LIST, MLE_T_STRING, MLE_A_COMPUTED, NULL, "Zone IDs, in the order of names."},
    {"region", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The region."},
};

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static mle_op_status azs_read(const mle_host *h, const mle_op *op) {
    AWS_CTX(h, op);
    const char *state = op->config ? vstr_ne(h, op->config, "state") : NULL;
    if (!state)
        state = op->state ? vstr_ne(h, op->state, "state") : NULL;
    aws_form f = {0};
    if (state) {
        form_add(&f, "Filter.1.Name", "state");
        form_add(&f, "Filter.1.Value.1", state);
    }
    mle_error *e = NULL;
    mle_value *r = aws_query(h, c, op, AWS_EC2, "DescribeAvailabilityZones", &f, &e);
    form_free(&f);
    if (!r)
        return op_fail(h, op, e);
    mle_value *list = vpath(h, r, "availabilityZoneInfo");
    size_t n = xl_count(h, list, "item");
    const char **names = calloc(n ? n : 1, sizeof *names);
    const char **ids = calloc(n ? n : 1, sizeof *ids);
    if (!names || !ids)
        abort();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        mle_value *z = xl_at(h, list, "item", i);
        const char *zs = vstr(h, z, "zoneState");
        if (state && zs && !str_eq(zs, state))
            continue;
        if (vstr_ne(h, z, "zoneName"))
            names[k++] = vstr(h, z, "zoneName");
    }
    qsort(names, k, sizeof *names, cmp_cstr);
    mle_value *a = h->v_object();
    mle_value *nv = h->v_array(), *iv = h->v_array();
    for (size_t i = 0; i < k; i++) {
        h->v_append(nv, h->v_string(names[i]));
        for (size_t j = 0; j < n; j++) {
            mle_value *z = xl_at(h, list, "item", j);
            if (str_eq(vstr(h, z, "zoneName"), names[i])) {
                ids[i] = vstr(h, z, "zoneId");
                break;
            }
        }
        h->v_append(iv, h->v_string(ids[i] ? ids[i] : ""));
    }
    vset_str(h, a, "state", state);
    h->v_set(a, "names", nv);
    h->v_set(a, "zone_ids", iv);
    vset_str(h, a, "region", c->region);
    free(names);
    free(ids);
    h->v_decref(r);
    return h->op_done(h, op, c->region, a);
}

static const mle_resource_type aws_availability_zones_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "aws_availability_zones",
    .description = "The availability zones of the driver's region.",
    .attrs = azs_attrs,
    .n_attrs = sizeof azs_attrs / sizeof *azs_attrs,
    .flags = MLE_RT_DATA_SOURCE,
    .read = azs_read,
};
