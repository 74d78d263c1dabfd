/*
 * aws_client.c — the request/response layer: endpoints, SigV4 signing, sending through the
 * host's HTTP, and the ONE place where AWS errors become mle_error objects. On top of it,
 * one thin layer per protocol (query, ec2, json, rest-json, rest-xml) shared by every
 * resource type.
 *
 * Part of the aws.c translation unit (see aws_internal.h).
 */

static const aws_service aws_services[AWS_SVC_N] = {
    [AWS_EC2] = {"ec2", "EC2", "ec2", "ec2", "2016-11-15", NULL, AWS_P_EC2},
    [AWS_IAM] = {"iam", "IAM", "iam", "iam", "2010-05-08", NULL, AWS_P_QUERY},
    [AWS_STS] = {"sts", "STS", "sts", "sts", "2011-06-15", NULL, AWS_P_QUERY},
    [AWS_EKS] = {"eks", "EKS", "eks", "eks", "2017-11-01", NULL, AWS_P_REST_JSON},
    [AWS_S3] = {"s3", "S3", "s3", "s3", "2006-03-01", NULL, AWS_P_REST_XML},
    [AWS_ECR] = {"ecr", "ECR", "api.ecr", "ecr", "2015-09-21",
                 "AmazonEC2ContainerRegistry_V20150921", AWS_P_JSON},
    [AWS_SM] = {"secretsmanager", "SECRETS_MANAGER", "secretsmanager", "secretsmanager",
                "2017-10-17", "secretsmanager", AWS_P_JSON},
    [AWS_KMS] = {"kms", "KMS", "kms", "kms", "2014-11-01", "TrentService", AWS_P_JSON},
};

/* forward: aws_creds.c */
static int creds_get(const mle_host *h, aws_ctx *c, aws_creds *out, mle_error **err);
static void creds_free(aws_creds *cr);
static void creds_invalidate(aws_ctx *c);

/* ------------------------------------------------------------------------------------------
 * Endpoints.
 * ------------------------------------------------------------------------------------------ */

/* DNS suffix of the region's partition. */
static const char *partition_suffix(const char *region) {
    return starts_with(region, "cn-") ? "amazonaws.com.cn" : "amazonaws.com";
}

/* IAM is global: one endpoint per partition, signed for the partition's home region. */
static const char *iam_signing_region(const char *region) {
    if (starts_with(region, "cn-"))
        return "cn-north-1";
    if (starts_with(region, "us-gov-"))
        return "us-gov-west-1";
    return "us-east-1";
}

/* The default endpoint of a service in a region. Caller frees with free(). */
static char *default_endpoint(aws_svc svc, const char *region) {
    const char *sfx = partition_suffix(region);
    if (svc == AWS_IAM) {
        if (starts_with(region, "cn-"))
            return xstrdup("https://iam.cn-north-1.amazonaws.com.cn");
        if (starts_with(region, "us-gov-"))
            return xstrdup("https://iam.us-gov.amazonaws.com");
        return xstrdup("https://iam.amazonaws.com");
    }
    return xasprintf("https://%s.%s.%s", aws_services[svc].prefix, region, sfx);
}

/* Resolve every service's endpoint, in this order: the option `endpoints` (a map by service
 * key), the option `endpoint_url`, AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, the default.
 * `options` is borrowed. */
static void endpoints_resolve(const mle_host *h, aws_ctx *c, const mle_value *options) {
    const mle_value *map = options ? h->v_get(options, "endpoints") : NULL;
    const char *all = vstr_ne(h, options, "endpoint_url");
    for (int s = 0; s < AWS_SVC_N; s++) {
        const char *url = NULL;
        char env[64];
        if (map && h->v_kind(map) == MLE_V_OBJECT && h->v_get(map, aws_services[s].key))
            url = h->v_str(h->v_get(map, aws_services[s].key));
        if (!url || !*url)
            url = all;
        if (!url || !*url) {
            snprintf(env, sizeof env, "AWS_ENDPOINT_URL_%s", aws_services[s].env);
            url = getenv(env);
        }
        if (!url || !*url)
            url = getenv("AWS_ENDPOINT_URL");
        free(c->endpoint[s]);
        if (url && *url) {
            c->endpoint[s] = xstrdup(url);
            size_t n = strlen(c->endpoint[s]);
            while (n > 0 && c->endpoint[s][n - 1] == '/')
                c->endpoint[s][--n] = '\0';
            c->custom[s] = 1;
        } else {
            c->endpoint[s] = default_endpoint((aws_svc)s, c->region);
            c->custom[s] = 0;
        }
    }
}

/* Split "scheme://authority/base" into its parts (pointers into url; lengths out). */
static int url_split(const char *url, const char **scheme_end, const char **auth,
                     size_t *auth_len, const char **base) {
    const char *p = strstr(url, "://");
    if (!p)
        return -1;
    *scheme_end = p;
    *auth = p + 3;
    const char *slash = strchr(*auth, '/');
    *auth_len = slash ? (size_t)(slash - *auth) : strlen(*auth);
    *base = slash ? slash : "";
    return *auth_len > 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------
 * Errors: the one mapping from AWS's answers to mle_error.
 * ------------------------------------------------------------------------------------------ */

/* The error code and message of a failed response, in whatever shape the protocol uses:
 *   EC2:       <Response><Errors><Error><Code/><Message/></Error></Errors>...
 *   query:     <ErrorResponse><Error><Type/><Code/><Message/></Error>...
 *   S3:        <Error><Code/><Message/>...</Error>
 *   JSON:      {"__type": "ns#Code", "message": "..."} (or "Message")
 *   rest-json: the same, or the x-amzn-ErrorType header "Code:uri".
 * code/msg receive NUL-terminated copies (possibly empty). */
static void aws_parse_error(const mle_host *h, const mle_http_response *resp, char *code,
                            size_t ncode, char *msg, size_t nmsg) {
    code[0] = msg[0] = '\0';
    const char *c = NULL, *m = NULL;
    mle_value *v = NULL;
    const char *b = resp->body;
    while (b && (*b == ' ' || *b == '\n' || *b == '\r' || *b == '\t'))
        b++;
    mle_error *e = NULL;
    if (b && *b == '<')
        v = h->v_parse_xml(h, resp->body, resp->body_len, &e);
    else if (b && *b == '{')
        v = h->v_parse_json(h, resp->body, resp->body_len, &e);
    if (!v && e)
        h->error_free(e);
    if (v && h->v_kind(v) == MLE_V_OBJECT) {
        mle_value *err = vpath(h, v, "Errors.Error");
        if (err && h->v_kind(err) == MLE_V_ARRAY)
            err = h->v_at(err, 0);
        if (!err)
            err = vpath(h, v, "Error");
        if (!err || h->v_kind(err) != MLE_V_OBJECT)
            err = v;
        c = vstr_ne(h, err, "Code");
        if (!c)
            c = vstr_ne(h, err, "code");
        if (!c)
            c = vstr_ne(h, err, "__type");
        m = vstr_ne(h, err, "Message");
        if (!m)
            m = vstr_ne(h, err, "message");
    }
    const char *hdr = h->http_header(resp, "x-amzn-errortype");
    if (!c && hdr && *hdr)
        c = hdr;
    if (c) {
        /* "com.amazonaws.kms#NotFoundException" and "Code:http://..." carry the code in
         * one part only. */
        const char *hash = strrchr(c, '#');
        if (hash)
            c = hash + 1;
        size_t n = strcspn(c, ":");
        if (n >= ncode)
            n = ncode - 1;
        memcpy(code, c, n);
        code[n] = '\0';
    }
    if (m)
        snprintf(msg, nmsg, "%s", m);
    h->v_decref(v);
}

static int code_in(const char *code, const char *const *list) {
    for (; *list; list++)
        if (strcmp(code, *list) == 0)
            return 1;
    return 0;
}

static int contains_ci(const char *s, const char *needle) { return s && strcasestr(s, needle) != NULL; }

/* Classify an AWS error. `kind` is the operation's kind (a delete waits for dependents).
 * *temp_creds_expired is set when refreshing temporary credentials is the cure. */
static mle_error_code aws_classify(long status, const char *code, const char *message,
                                   mle_op_kind kind, int *temp_creds_expired) {
    static const char *const throttled[] = {
        "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
        "TooManyRequestsException", "RequestThrottled", "RequestThrottledException", "SlowDown",
        "ProvisionedThroughputExceededException", "EC2ThrottledException",
        "BandwidthLimitExceeded", "PriorRequestNotComplete", "TransactionInProgressException",
        NULL};
    static const char *const transient[] = {
        "InternalError", "InternalFailure", "InternalServerError", "InternalServerException",
        "ServiceUnavailable", "ServiceUnavailableException", "ServerException",
        "RequestTimeout", "RequestTimeoutException", "IDPCommunicationError",
        "OperationAborted", "ConcurrentModification", "ConcurrentModificationException",
        "KMSInternalException", "DependencyTimeoutException", "Unavailable", NULL};
    static const char *const auth[] = {
        "InvalidClientTokenId", "SignatureDoesNotMatch", "AuthFailure", "IncompleteSignature",
        "MissingAuthenticationToken", "InvalidAccessKeyId", "UnrecognizedClientException",
        "InvalidSignatureException", "RequestExpired", "RequestTimeTooSkewed",
        "InvalidToken", "MissingAuthenticationTokenException", "InvalidIdentityToken",
        "ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired", NULL};
    static const char *const permission[] = {
        "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden",
        "UnauthorizedException", "OptInRequired", "AllAccessDisabled", NULL};
    static const char *const invalid[] = {
        "ValidationException", "ValidationError", "MalformedPolicyDocument",
        "MalformedPolicyDocumentException", "InvalidInput", "MissingParameter",
        "InvalidArgument", "MalformedXML", "InvalidBucketName", "InvalidRequest",
        "InvalidParameterException", "InvalidParameterValue", "InvalidParameterCombination",
        "InvalidRequestException", "UnsupportedOperation", "InvalidAction",
        "InvalidParameterValueException", "InvalidTagException", "InvalidTagParameterException",
        "InvalidLocationConstraint", "IllegalLocationConstraintException",
        "InvalidSubnet.Range", "InvalidVpc.Range", "InvalidSubnet.Conflict",
        "UnsupportedAvailabilityZoneException", "InvalidKeyUsageException",
        "InvalidArnException", "MalformedCertificate", "InvalidEncryptionAlgorithmException",
        "UnsupportedDocumentEncoding", "InvalidPermission.Malformed", NULL};
    static const char *const dependents[] = {
        "DependencyViolation", "ResourceInUseException", "ResourceInUse", "DeleteConflict",
        "InvalidIPAddress.InUse", "InvalidStateException", "IncorrectState",
        "InvalidDependencyViolation", NULL};
    static const char *const conflict[] = {
        "EntityAlreadyExists", "AlreadyExists", "AlreadyExistsException",
        "ResourceExistsException", "BucketAlreadyExists", "BucketAlreadyOwnedByYou",
        "RepositoryAlreadyExistsException", "InvalidGroup.Duplicate",
        "InvalidPermission.Duplicate", "RouteAlreadyExists", "ConflictException",
        "Conflict", "IncorrectInstanceState", "InvalidVpcState",
        "Resource.AlreadyAssociated", "EntityTemporarilyUnmodifiable", NULL};
    static const char *const not_found[] = {
        "NoSuchEntity", "ResourceNotFoundException", "NotFoundException",
        "NotFound", "Gateway.NotAttached", "InvalidAssociationID.NotFound", NULL};

    *temp_creds_expired = 0;
    if (code && *code) {
        if (code_in(code, throttled))
            return MLE_E_THROTTLED;
        if (code_in(code, transient))
            return MLE_E_TRANSIENT;
        if (str_eq(code, "ExpiredToken") || str_eq(code, "ExpiredTokenException") ||
            str_eq(code, "TokenRefreshRequired") || str_eq(code, "RequestExpired")) {
            *temp_creds_expired = 1;
            return MLE_E_AUTH;
        }
        if (code_in(code, auth))
            return MLE_E_AUTH;
        if (code_in(code, permission))
            return MLE_E_PERMISSION;
        /* Eventual consistency: EKS cannot yet assume a role IAM made seconds ago, and IAM
         * refuses a trust policy naming an OIDC provider or role it has only just made.
         * Both heal by themselves: retryable. */
        if ((str_eq(code, "InvalidParameterException") && contains_ci(message, "role")) ||
            (str_eq(code, "MalformedPolicyDocument") && contains_ci(message, "principal")) ||
            (str_eq(code, "InvalidParameterValue") && contains_ci(message, "not yet")))
            return MLE_E_TRANSIENT;
        if (code_in(code, dependents))
            return kind == MLE_OPK_DELETE ? MLE_E_TRANSIENT : MLE_E_CONFLICT;
        if (ends_with(code, "NotFound") || ends_with(code, ".NotFound") ||
            ends_with(code, "NotFoundException") || ends_with(code, "NotFoundError") ||
            starts_with(code, "NoSuch") || code_in(code, not_found))
            return MLE_E_NOT_FOUND;
        if (code_in(code, invalid) || starts_with(code, "InvalidParameter") ||
            starts_with(code, "Malformed") ||
            (starts_with(code, "Invalid") && ends_with(code, ".Malformed")))
            return MLE_E_INVALID;
        if (code_in(code, conflict) || ends_with(code, "AlreadyExists") ||
            ends_with(code, ".Duplicate") || ends_with(code, "AlreadyExistsException"))
            return MLE_E_CONFLICT;
        if (ends_with(code, "LimitExceeded") || ends_with(code, "LimitExceededException") ||
            str_eq(code, "LimitExceeded") || str_eq(code, "ServiceQuotaExceededException"))
            return MLE_E_PROVIDER;
    }
    if (status == 429)
        return MLE_E_THROTTLED;
    if (status >= 500)
        return MLE_E_TRANSIENT;
    if (status == 404)
        return MLE_E_NOT_FOUND;
    if (status == 403)
        return MLE_E_PERMISSION;
    if (status == 401)
        return MLE_E_AUTH;
    if (status == 409)
        return MLE_E_CONFLICT;
    if (status == 400)
        return MLE_E_INVALID;
    return MLE_E_PROVIDER;
}

/* What to tell a person beyond AWS's own words. Static string or NULL. */
static const char *aws_hint(mle_error_code ec, const char *code) {
    if (str_eq(code, "RequestTimeTooSkewed") || str_eq(code, "SignatureDoesNotMatch"))
        return "check the machine's clock and the secret access key";
    if (ec == MLE_E_AUTH)
        return "check the AWS credentials (environment, web identity, or the profile in "
               "~/.aws/credentials) and that they have not expired";
    if (ec == MLE_E_PERMISSION)
        return "the credentials are valid but their IAM policy does not allow this action";
    if (ec == MLE_E_THROTTLED)
        return "AWS is rate limiting this account; the engine retries with backoff";
    return NULL;
}

/* The mle_error for a failed response (caller owns). info (may be NULL) receives status
 * and code. */
static mle_error *aws_error_from_response(const mle_host *h, aws_ctx *c, const aws_req *r,
                                          const mle_http_response *resp, aws_resp_info *info) {
    char code[128], msg[1024];
    aws_parse_error(h, resp, code, sizeof code, msg, sizeof msg);
    if (!code[0]) {
        /* Bodiless answers (S3 HEAD) say it with the status alone. */
        if (resp->status == 404)
            snprintf(code, sizeof code, "%s", r->svc == AWS_S3 ? "NoSuchBucket" : "NotFound");
        else if (resp->status == 301)
            snprintf(code, sizeof code, "PermanentRedirect");
    }
    if (info) {
        info->status = resp->status;
        snprintf(info->code, sizeof info->code, "%s", code);
    }
    int expired = 0;
    mle_op_kind kind = r->op ? r->op->kind : MLE_OPK_READ;
    if (kind == MLE_OPK_POLL && r->op)
        kind = r->op->poll_kind;
    mle_error_code ec = aws_classify(resp->status, code, msg, kind, &expired);
    /* Only requests signed with the context's own credentials may drop them: the STS
     * calls that resolve credentials run under the context's lock with their own. */
    if (expired && c && !r->creds && !r->unsigned_req && c->src != AWS_CS_ENV &&
        c->src != AWS_CS_PROFILE) {
        /* Temporary credentials ran out under us: drop them, and the retry signs with
         * fresh ones. */
        creds_invalidate(c);
        ec = MLE_E_TRANSIENT;
    }
    const char *svc = aws_services[r->svc].key;
    mle_error *e;
    if (ec == MLE_E_TRANSIENT && (str_eq(code, "DependencyViolation") ||
                                  str_eq(code, "ResourceInUseException") ||
                                  str_eq(code, "DeleteConflict")))
        e = h->error_new(h, ec, "%s %s: %s: %s (HTTP %ld); waiting for dependent resources to "
                                "go before retrying",
                         svc, r->action ? r->action : "?", code, msg, resp->status);
    else
        e = h->error_new(h, ec, "%s %s: %s%s%s (HTTP %ld)", svc, r->action ? r->action : "?",
                         code[0] ? code : "error", msg[0] ? ": " : "", msg, resp->status);
    h->error_set_provider(e, resp->status, code[0] ? code : NULL, msg[0] ? msg : NULL);
    const char *hint = aws_hint(ec, code);
    if (ec == MLE_E_TRANSIENT && (str_eq(code, "DependencyViolation") ||
                                  str_eq(code, "ResourceInUseException") ||
                                  str_eq(code, "DeleteConflict")))
        hint = "something still uses it (often made outside this stack: load balancer network "
               "interfaces, pods' ENIs, attached policies); when the retries run out, remove "
               "that and run destroy again";
    if (resp->status == 301)
        hint = "the bucket lives in another region: set the driver's region to it";
    if (hint)
        h->error_set_hint(e, hint);
    const char *ra = h->http_header(resp, "retry-after");
    if (ra && (ec == MLE_E_THROTTLED || ec == MLE_E_TRANSIENT)) {
        long secs = strtol(ra, NULL, 10);
        if (secs > 0 && secs < 3600)
            h->error_set_retry_after(e, (uint32_t)secs * 1000u);
    }
    if (ec == MLE_E_THROTTLED || ec == MLE_E_TRANSIENT)
        h->log(h, MLE_LOG_WARN, "aws: %s %s%s%s: %s (HTTP %ld) is retryable; the engine will retry",
               svc, r->action ? r->action : "?", r->op && r->op->address ? " for " : "",
               r->op && r->op->address ? r->op->address : "", code[0] ? code : "error",
               resp->status);
    return e;
}

/* ------------------------------------------------------------------------------------------
 * Sending.
 * ------------------------------------------------------------------------------------------ */

/* Sign and send one request. 0 with *out (2xx; caller frees with host->http_response_free),
 * or -1 with *err (caller owns) — an AWS error already mapped, or a network error
 * (TRANSIENT, from the host). info may be NULL. */
static int aws_send(const mle_host *h, aws_ctx *c, const aws_req *r, mle_http_response **out,
                    aws_resp_info *info, mle_error **err) {
    *out = NULL;
    if (info) {
        info->status = 0;
        info->code[0] = '\0';
    }
    const aws_service *svc = &aws_services[r->svc];
    const char *endpoint = c->endpoint[r->svc];
    const char *scheme_end, *auth, *base;
    size_t auth_len;
    if (!endpoint || url_split(endpoint, &scheme_end, &auth, &auth_len, &base) != 0) {
        *err = h->error_new(h, MLE_E_INVALID, "aws: endpoint \"%s\" for %s is not a URL",
                            endpoint ? endpoint : "", svc->key);
        h->error_set_hint(*err, "endpoint_url and AWS_ENDPOINT_URL* take scheme://host[:port]");
        return -1;
    }
    /* S3 buckets are virtual-hosted on AWS's own endpoint; path-style against a custom one
     * (moto, LocalStack, VPC endpoints) or when the bucket name has dots (TLS names). */
    int vhost = r->svc == AWS_S3 && r->bucket && !c->custom[AWS_S3] && !c->s3_path_style &&
                !strchr(r->bucket, '.');
    aws_buf hostb = {0}, path = {0}, url = {0};
    if (vhost) {
        buf_puts(&hostb, r->bucket);
        buf_puts(&hostb, ".");
    }
    buf_putn(&hostb, auth, auth_len);
    buf_puts(&path, base);
    if (r->svc == AWS_S3 && r->bucket && !vhost) {
        buf_puts(&path, "/");
        buf_put_enc(&path, r->bucket, 0);
    }
    /* Path-style bucket operations address "/bucket" itself (the model's "/{Bucket}"). */
    if (!(r->svc == AWS_S3 && r->bucket && !vhost && (!r->path || str_eq(r->path, "/"))))
        buf_puts(&path, r->path && *r->path ? r->path : "/");
    buf_putn(&url, endpoint, (size_t)(scheme_end - endpoint));
    buf_puts(&url, "://");
    buf_puts(&url, hostb.p);
    buf_puts(&url, path.p);
    if (r->query && *r->query) {
        buf_puts(&url, "?");
        buf_puts(&url, r->query);
    }

    mle_http_header hdr[16];
    size_t nh = 0;
    hdr[nh++] = (mle_http_header){"Host", hostb.p};
    if (r->content_type)
        hdr[nh++] = (mle_http_header){"Content-Type", r->content_type};
    if (r->target)
        hdr[nh++] = (mle_http_header){"X-Amz-Target", r->target};
    for (size_t i = 0; i < r->n_extra && nh < 8; i++)
        hdr[nh++] = r->extra[i];
    size_t n_signed = nh;

    aws_creds cr = {0};
    const aws_creds *use = r->creds;
    mle_aws_sigv4_result sig;
    memset(&sig, 0, sizeof sig);
    int rc = -1;
    mle_http_response *resp = NULL;
    if (!r->unsigned_req) {
        if (!use) {
            if (creds_get(h, c, &cr, err) != 0)
                goto done;
            use = &cr;
        }
        mle_aws_credentials sc = {use->akid, use->secret, use->token};
        mle_aws_sigv4_request sr = {.method = r->method ? r->method : "POST",
                                    .path = path.p,
                                    .query = r->query,
                                    .headers = hdr,
                                    .n_headers = n_signed,
                                    .body = r->body,
                                    .body_len = r->body ? r->body_len : 0};
        int s3 = r->svc == AWS_S3;
        mle_aws_sigv4_params sp = {.creds = &sc,
                                   .region = r->svc == AWS_IAM ? iam_signing_region(c->region)
                                                               : c->region,
                                   .service = svc->signing,
                                   .time_unix = h->now_unix_ms() / 1000,
                                   .normalize_path = !s3,
                                   .encode_path = !s3,
                                   .add_content_sha256 = s3};
        if (mle_aws_sigv4_sign(h, &sr, &sp, &sig, err) != 0)
            goto done;
        for (size_t i = 0; i < sig.n_add && nh < 16; i++)
            hdr[nh++] = sig.add[i];
    }
    hdr[nh++] = (mle_http_header){"User-Agent", "mlengine-aws/" AWS_DRIVER_VERSION};

    mle_http_request hr;
    memset(&hr, 0, sizeof hr);
    hr.struct_size = sizeof hr;
    hr.method = r->method ? r->method : "POST";
    hr.url = url.p;
    hr.headers = hdr;
    hr.n_headers = nh;
    hr.body = r->body;
    hr.body_len = r->body ? r->body_len : 0;
    int64_t t0 = h->monotonic_ms();
    if (h->http(h, &hr, &resp, err) != 0) {
        resp = NULL;
        goto done;
    }
    h->log(h, MLE_LOG_DEBUG, "aws: %s %s -> HTTP %ld (%lld ms)", svc->key,
           r->action ? r->action : hr.method, resp->status,
           (long long)(h->monotonic_ms() - t0));
    if (info)
        info->status = resp->status;
    if (resp->status >= 200 && resp->status < 300) {
        *out = resp;
        resp = NULL;
        rc = 0;
    } else {
        *err = aws_error_from_response(h, c, r, resp, info);
    }
done:
    if (resp)
        h->http_response_free(h, resp);
    mle_aws_sigv4_result_free(&sig);
    creds_free(&cr);
    buf_free(&hostb);
    buf_free(&path);
    buf_free(&url);
    return rc;
}

/* Parse a response body: XML or JSON by its first byte; an empty body is an empty object.
 * New reference, or NULL with *err. */
static mle_value *parse_body(const mle_host *h, const aws_req *r, const mle_http_response *resp,
                             int xml, mle_error **err) {
    const char *b = resp->body;
    size_t n = resp->body_len;
    while (n > 0 && (*b == ' ' || *b == '\n' || *b == '\r' || *b == '\t')) {
        b++;
        n--;
    }
    if (n == 0)
        return h->v_object();
    mle_error *pe = NULL;
    mle_value *v = xml ? h->v_parse_xml(h, b, n, &pe) : h->v_parse_json(h, b, n, &pe);
    if (!v) {
        *err = h->error_new(h, MLE_E_PROVIDER, "%s %s: unreadable %s response: %s",
                            aws_services[r->svc].key, r->action ? r->action : "?",
                            xml ? "XML" : "JSON", pe ? h->error_message(pe) : "?");
        if (pe)
            h->error_free(pe);
        return NULL;
    }
    if (h->v_kind(v) != MLE_V_OBJECT) {
        /* A text-only root (e.g. <LocationConstraint>us-west-2</LocationConstraint>) comes
         * back as a string: wrap it so callers always get an object. */
        mle_value *o = h->v_object();
        h->v_set(o, "_text", v);
        v = o;
    }
    return v;
}

/* ------------------------------------------------------------------------------------------
 * Protocol layers.
 * ------------------------------------------------------------------------------------------ */

/* Query and EC2 protocols: POST Action=...&Version=...&<form>. Returns the result (IAM/STS:
 * the <ActionResult> element; EC2: the whole response) as a new reference, or NULL with
 * *err. `form` may be NULL. */
static mle_value *aws_query(const mle_host *h, aws_ctx *c, const mle_op *op, aws_svc svc,
                            const char *action, const aws_form *form, mle_error **err) {
    aws_buf body = {0};
    buf_puts(&body, "Action=");
    buf_put_enc(&body, action, 0);
    buf_puts(&body, "&Version=");
    buf_puts(&body, aws_services[svc].version);
    if (form && form->b.len) {
        buf_puts(&body, "&");
        buf_puts(&body, form->b.p);
    }
    aws_req r = {.svc = svc,
                 .method = "POST",
                 .path = "/",
                 .content_type = "application/x-www-form-urlencoded; charset=utf-8",
                 .body = body.p,
                 .body_len = body.len,
                 .action = action,
                 .op = op};
    mle_http_response *resp = NULL;
    int rc = aws_send(h, c, &r, &resp, NULL, err);
    buf_free(&body);
    if (rc != 0)
        return NULL;
    mle_value *v = parse_body(h, &r, resp, 1, err);
    h->http_response_free(h, resp);
    if (!v || aws_services[svc].proto == AWS_P_EC2)
        return v;
    char key[128];
    snprintf(key, sizeof key, "%sResult", action);
    mle_value *res = h->v_get(v, key);
    if (!res || h->v_kind(res) != MLE_V_OBJECT)
        return v; /* actions without output: the response itself */
    res = h->v_incref(res);
    h->v_decref(v);
    return res;
}

/* Send a JSON-answered request whose body (host-allocated, may be NULL) is freed here;
 * the parsed answer (new reference) or NULL with *err. */
static mle_value *send_json(const mle_host *h, aws_ctx *c, const aws_req *r, char *body,
                            aws_resp_info *info, mle_error **err) {
    mle_http_response *resp = NULL;
    int rc = aws_send(h, c, r, &resp, info, err);
    if (body)
        h->free(h, body);
    if (rc != 0)
        return NULL;
    mle_value *v = parse_body(h, r, resp, 0, err);
    h->http_response_free(h, resp);
    return v;
}

/* JSON protocol: POST with X-Amz-Target: <prefix>.<operation>. `in` may be NULL ({}).
 * Returns the parsed answer (new reference) or NULL with *err; *info (may be NULL) gets the
 * status and AWS's error code. */
static mle_value *aws_json_info(const mle_host *h, aws_ctx *c, const mle_op *op, aws_svc svc,
                                const char *operation, const mle_value *in, aws_resp_info *info,
                                mle_error **err) {
    char *body = in ? h->v_to_json(h, in) : NULL;
    char target[160];
    snprintf(target, sizeof target, "%s.%s", aws_services[svc].target, operation);
    aws_req r = {.svc = svc,
                 .method = "POST",
                 .path = "/",
                 .content_type = "application/x-amz-json-1.1",
                 .target = target,
                 .body = body ? body : "{}",
                 .body_len = body ? strlen(body) : 2,
                 .action = operation,
                 .op = op};
    return send_json(h, c, &r, body, info, err);
}

/* aws_json_info without the status and code. */
static mle_value *aws_json(const mle_host *h, aws_ctx *c, const mle_op *op, aws_svc svc,
                           const char *operation, const mle_value *in, mle_error **err) {
    return aws_json_info(h, c, op, svc, operation, in, NULL, err);
}

/* rest-json (EKS): method + encoded path (+ query), JSON body or none. Returns the parsed
 * answer (new reference) or NULL with *err; *info (may be NULL) gets status and code. */
static mle_value *aws_rest_json(const mle_host *h, aws_ctx *c, const mle_op *op, aws_svc svc,
                                const char *action, const char *method, const char *path,
                                const char *query, const mle_value *in, mle_error **err) {
    char *body = in ? h->v_to_json(h, in) : NULL;
    aws_req r = {.svc = svc,
                 .method = method,
                 .path = path,
                 .query = query,
                 .content_type = body ? "application/json" : NULL,
                 .body = body,
                 .body_len = body ? strlen(body) : 0,
                 .action = action,
                 .op = op};
    return send_json(h, c, &r, body, NULL, err);
}

/* rest-xml (S3): method on a bucket with a sub-resource query ("versioning", "tagging"),
 * optional XML body. Operations whose model says the payload checksum is required get
 * x-amz-checksum-sha256 (S3 takes it in place of Content-MD5). Returns the parsed answer
 * (new reference; {} for an empty body) or NULL with *err; info may be NULL. */
static mle_value *aws_s3(const mle_host *h, aws_ctx *c, const mle_op *op, const char *action,
                         const char *method, const char *bucket, const char *query,
                         const char *xml_body, int checksum, aws_resp_info *info,
                         mle_error **err) {
    aws_req r = {.svc = AWS_S3,
                 .method = method,
                 .path = "/",
                 .query = query,
                 .bucket = bucket,
                 .content_type = xml_body ? "application/xml" : NULL,
                 .body = xml_body,
                 .body_len = xml_body ? strlen(xml_body) : 0,
                 .action = action,
                 .op = op};
    char *sum = NULL;
    if (checksum && xml_body) {
        uint8_t d[32];
        h->sha256(xml_body, strlen(xml_body), d);
        sum = h->base64_encode(h, d, sizeof d, 0);
        r.extra[r.n_extra++] = (mle_http_header){"x-amz-checksum-sha256", sum};
        r.extra[r.n_extra++] = (mle_http_header){"x-amz-sdk-checksum-algorithm", "SHA256"};
    }
    mle_http_response *resp = NULL;
    int rc = aws_send(h, c, &r, &resp, info, err);
    if (sum)
        h->free(h, sum);
    if (rc != 0)
        return NULL;
    mle_value *v = parse_body(h, &r, resp, 1, err);
    h->http_response_free(h, resp);
    return v;
}
