/*
 * eks_token.c — EKS bearer tokens: a presigned STS GetCallerIdentity URL, base64url-encoded.
 *
 * Only the request is described here; aws_sigv4.c signs it. Memory: the token and every
 * intermediate string are libc-allocated, except the host's base64 text (freed with h->free).
 */
#include "eks_token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Latest signing time X-Amz-Date can express: 9999-12-31T23:59:59Z. */
#define MAX_UNIX_MS 253402300799999LL

static int region_ok(const char *r) {
    if (!r || !*r || strlen(r) > 64 || *r == '-')
        return 0;
    for (const char *p = r; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
    return 1;
}

/* The value travels in a signed header: printable ASCII without spaces, so header
 * canonicalisation (trim, collapse) leaves it as given. EKS names and Outposts IDs fit. */
static int cluster_ok(const char *c) {
    if (!c || !*c || strlen(c) > 256)
        return 0;
    for (const unsigned char *p = (const unsigned char *)c; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return 0;
    return 1;
}

static char *invalid(const mle_host *h, mle_error **err, const char *what) {
    if (err)
        *err = h->error_new(h, MLE_E_INVALID, "EKS token: %s", what);
    return NULL;
}

char *mle_eks_token(const mle_host *h, const mle_aws_credentials *creds, const char *region,
                    const char *cluster_name, int64_t now_unix_ms, mle_error **err) {
    if (!creds || !creds->access_key_id || !*creds->access_key_id ||
        !creds->secret_access_key || !*creds->secret_access_key)
        return invalid(h, err, "no AWS credentials (access key ID and secret access key)");
    if (!region_ok(region))
        return invalid(h, err, "the region must be an AWS region name such as us-west-2");
    if (!cluster_ok(cluster_name))
        return invalid(h, err, "the cluster name must be non-empty printable ASCII without "
                               "spaces");
    if (now_unix_ms < 0 || now_unix_ms > MAX_UNIX_MS)
        return invalid(h, err, "the signing time is out of range");

    /* The regional STS endpoint (what both reference clients use when given a region). */
    const char *sfx = strncmp(region, "cn-", 3) == 0 ? "amazonaws.com.cn" : "amazonaws.com";
    char host[128];
    snprintf(host, sizeof host, "sts.%s.%s", region, sfx);

    const mle_http_header headers[] = {
        {"host", host},
        {MLE_EKS_CLUSTER_ID_HEADER, cluster_name},
    };
    mle_aws_sigv4_request req = {
        .method = "GET",
        .path = "/",
        .query = "Action=GetCallerIdentity&Version=2011-06-15",
        .headers = headers,
        .n_headers = sizeof headers / sizeof *headers,
    };
    mle_aws_sigv4_params params = {
        .creds = creds,
        .region = region,
        .service = "sts",
        .time_unix = now_unix_ms / 1000,
        .normalize_path = 1,
        .encode_path = 1,
        .payload_hash = MLE_AWS_EMPTY_SHA256,
        .expires_s = 60,
    };
    mle_aws_sigv4_result sig;
    if (mle_aws_sigv4_presign(h, &req, &params, &sig, err) != 0)
        return NULL;

    /* The canonical query (sorted, as signed), then the signature: the SDK for Go's layout. */
    size_t ulen = strlen("https://") + strlen(host) + strlen("/?") + strlen(sig.canonical_query) +
                  strlen("&X-Amz-Signature=") + strlen(sig.signature);
    char *url = malloc(ulen + 1);
    if (!url) {
        mle_aws_sigv4_result_free(&sig);
        if (err)
            *err = h->error_new(h, MLE_E_INTERNAL, "EKS token: out of memory");
        return NULL;
    }
    snprintf(url, ulen + 1, "https://%s/?%s&X-Amz-Signature=%s", host, sig.canonical_query,
             sig.signature);
    mle_aws_sigv4_result_free(&sig);

    char *b64 = h->base64_encode(h, url, ulen, 1);
    /* The URL is the credential itself, until it expires. */
    explicit_bzero(url, ulen);
    free(url);
    size_t plen = strlen(MLE_EKS_TOKEN_PREFIX), blen = b64 ? strlen(b64) : 0;
    char *token = b64 ? malloc(plen + blen + 1) : NULL;
    if (token) {
        memcpy(token, MLE_EKS_TOKEN_PREFIX, plen);
        memcpy(token + plen, b64, blen + 1);
    }
    if (b64) {
        explicit_bzero(b64, blen);
        h->free(h, b64);
    }
    if (!token && err)
        *err = h->error_new(h, MLE_E_INTERNAL, "EKS token: out of memory");
    return token;
}

int64_t mle_eks_token_expiry_ms(int64_t issued_ms) { return issued_ms + MLE_EKS_TOKEN_REFRESH_MS; }
