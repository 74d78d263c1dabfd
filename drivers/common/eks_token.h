/*
 * eks_token.h — the bearer token an Amazon EKS cluster's API server accepts: a presigned STS
 * GetCallerIdentity URL, the way aws-iam-authenticator (`token -i`) and `aws eks get-token`
 * build it.
 *
 * The token is "k8s-aws-v1." followed by the base64url encoding, without padding, of
 *
 *   https://sts.<region>.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15
 *       &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=<key id>%2F<date>%2F<region>%2Fsts%2Faws4_request
 *       &X-Amz-Date=<YYYYMMDDTHHMMSSZ>&X-Amz-Expires=60[&X-Amz-Security-Token=<token>]
 *       &X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=<hex>
 *
 * (one line; the parameters in canonical order with the signature last, as the AWS SDK for Go
 * lays a presigned URL out). The request is a SigV4 query-presigned GET for the service "sts"
 * whose signed headers are `host` and `x-k8s-aws-id: <cluster name>`: the API server's
 * authenticator replays the URL to STS with that header, so a token made for one cluster is
 * refused by another. China regions ("cn-...") use sts.<region>.amazonaws.com.cn.
 *
 * Signing is drivers/common/aws_sigv4.c's (mle_aws_sigv4_presign): nothing is signed here.
 *
 * Lifetime: STS accepts a presigned GetCallerIdentity for 15 minutes after X-Amz-Date,
 * whatever X-Amz-Expires says (60 is what every client sends and what old authenticators
 * check for). Clients refresh after 14 minutes, as aws-iam-authenticator and the AWS CLI do:
 * see mle_eks_token_expiry_ms.
 *
 * The token is a credential for those 15 minutes: the caller registers it with
 * host->secret_register before it can reach a log line.
 *
 * Thread-safe: no state. Never does I/O.
 */
#ifndef MLE_DRIVERS_COMMON_EKS_TOKEN_H
#define MLE_DRIVERS_COMMON_EKS_TOKEN_H

#include <mlengine/driver.h>
#include <stdint.h>

#include "aws_sigv4.h"

#define MLE_EKS_TOKEN_PREFIX "k8s-aws-v1."
/* The header that binds a token to one cluster (signed, never sent by the client). */
#define MLE_EKS_CLUSTER_ID_HEADER "x-k8s-aws-id"
/* How long STS honours the presigned URL, counted from its X-Amz-Date. */
#define MLE_EKS_TOKEN_LIFETIME_MS (15 * 60 * 1000LL)
/* How long a client uses one: a minute less, so a token never expires mid-request. */
#define MLE_EKS_TOKEN_REFRESH_MS (14 * 60 * 1000LL)

/* The bearer token for cluster_name (the EKS cluster name, or the cluster ID of a local
 * cluster on Outposts), signed with creds (borrowed; session_token NULL or "" for long-lived
 * keys, otherwise sent as X-Amz-Security-Token and signed) for region at now_unix_ms (the
 * signing time; sub-second digits are dropped, as X-Amz-Date has none).
 *
 * Returns the token, which the caller frees with free(), or NULL with *err (caller owns) set:
 * MLE_E_INVALID when the credentials, region or cluster name are missing or malformed (a
 * region is lower-case letters, digits and '-'; a cluster name is printable ASCII without
 * spaces), MLE_E_INTERNAL when out of memory. */
char *mle_eks_token(const mle_host *h, const mle_aws_credentials *creds, const char *region,
                    const char *cluster_name, int64_t now_unix_ms, mle_error **err);

/* When to stop using a token issued (signed) at issued_ms: issued_ms + 14 minutes. */
int64_t mle_eks_token_expiry_ms(int64_t issued_ms);

#endif
