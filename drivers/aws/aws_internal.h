/*
 * aws_internal.h — what the parts of the AWS driver share: the run context (region,
 * endpoints, credentials), the request layers (one per AWS protocol), the error mapping and
 * the value/tag helpers every resource type uses.
 *
 * The driver is ONE translation unit (aws.c includes every aws_*.c part after this header),
 * so that everything but the entry point is `static` (the house rule) while the code stays
 * split by concern. Only aws.c is compiled; tests include aws.c to reach the static parts.
 *
 * Memory: strings the driver makes for itself are libc-allocated (free with free());
 * strings the host returns (v_to_json, url_encode, base64, ...) are freed with host->free;
 * values are reference counted through host->v_incref/v_decref. Every function that returns
 * a pointer says which.
 */
#ifndef MLE_DRIVERS_AWS_INTERNAL_H
#define MLE_DRIVERS_AWS_INTERNAL_H

#include <mlengine/driver.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aws_sigv4.h"

#define AWS_DRIVER_VERSION "0.1.0"

/* Ownership tags every taggable resource is created with (ARCHITECTURE.md, crash safety). */
#define AWS_TAG_STACK "mlengine:stack"
#define AWS_TAG_ADDRESS "mlengine:address"
#define AWS_TAG_PREFIX "mlengine:"

/* Temporary credentials are replaced this long before they expire. */
#define AWS_CREDS_REFRESH_MS (5 * 60 * 1000)

/* ------------------------------------------------------------------------------------------
 * A growable string (libc). Allocation failure aborts, as host->alloc does: a driver that
 * cannot allocate a few bytes cannot report anything useful either.
 * ------------------------------------------------------------------------------------------ */
typedef struct aws_buf {
    char *p;
    size_t len, cap;
} aws_buf;

/* ------------------------------------------------------------------------------------------
 * Services and protocols.
 * ------------------------------------------------------------------------------------------ */
typedef enum aws_proto {
    AWS_P_QUERY,     /* IAM, STS: form POST, <XResponse><XResult>...</XResult> */
    AWS_P_EC2,       /* EC2: form POST, flattened lists, <XResponse>... without a Result */
    AWS_P_JSON,      /* ECR, Secrets Manager, KMS: X-Amz-Target, application/x-amz-json-1.1 */
    AWS_P_REST_JSON, /* EKS: method + path, JSON bodies */
    AWS_P_REST_XML,  /* S3: method + path + sub-resource query, XML bodies */
} aws_proto;

typedef enum aws_svc {
    AWS_EC2 = 0,
    AWS_IAM,
    AWS_STS,
    AWS_EKS,
    AWS_S3,
    AWS_ECR,
    AWS_SM,
    AWS_KMS,
    AWS_SVC_N
} aws_svc;

typedef struct aws_service {
    const char *key;       /* "ec2": key of the driver option `endpoints` */
    const char *env;       /* "EC2": AWS_ENDPOINT_URL_<env> */
    const char *prefix;    /* endpoint prefix: "api.ecr" */
    const char *signing;   /* SigV4 service name: "ecr" */
    const char *version;   /* API version (query protocols) */
    const char *target;    /* JSON protocol X-Amz-Target prefix */
    aws_proto proto;
} aws_service;

/* ------------------------------------------------------------------------------------------
 * Credentials and the run context.
 * ------------------------------------------------------------------------------------------ */
typedef struct aws_creds {
    char *akid;
    char *secret;
    char *token;        /* NULL for long-lived keys */
    int64_t expires_ms; /* wall clock; 0: does not expire */
} aws_creds;

typedef enum aws_creds_src {
    AWS_CS_NONE = 0,
    AWS_CS_ENV,          /* AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY */
    AWS_CS_WEB_IDENTITY, /* token file + role ARN -> STS AssumeRoleWithWebIdentity */
    AWS_CS_PROFILE,      /* static keys from the shared files */
    AWS_CS_ASSUME_ROLE,  /* profile role_arn + source_profile -> STS AssumeRole */
} aws_creds_src;

typedef struct aws_ctx {
    pthread_mutex_t mu; /* guards creds and the resolved source below */
    char *region;
    char *profile;          /* the shared-file profile in use */
    char *endpoint[AWS_SVC_N]; /* base URL without trailing slash */
    int custom[AWS_SVC_N];     /* endpoint came from configuration (not the default) */
    int s3_path_style;
    uint32_t poll_ms;       /* option poll_interval_ms; 0: per-resource defaults */
    int64_t timeout_s;      /* option operation_timeout_s; 0: per-resource defaults */

    /* Credentials: resolved at the first request, refreshed when temporary. */
    int resolved;
    aws_creds_src src;
    aws_creds creds;
    char *src_desc;       /* "environment", "web identity (role ...)", ... for logs */
    char *account_id;     /* from STS GetCallerIdentity, once (guarded by mu) */
} aws_ctx;

/* ------------------------------------------------------------------------------------------
 * Requests.
 * ------------------------------------------------------------------------------------------ */
typedef struct aws_req {
    aws_svc svc;
    const char *method;       /* default POST */
    const char *path;         /* encoded path; default "/" */
    const char *query;        /* encoded, without '?'; may be NULL */
    const char *bucket;       /* S3: the bucket (virtual-hosted or path-style) */
    const char *content_type;
    const char *target;       /* JSON protocol: full X-Amz-Target */
    const char *body;
    size_t body_len;
    mle_http_header extra[4]; /* extra headers (S3 checksums) */
    size_t n_extra;
    const char *action;       /* "CreateVpc": for messages */
    int unsigned_req;         /* STS AssumeRoleWithWebIdentity is sent without a signature */
    const aws_creds *creds;   /* sign with these instead of the context's (assume role) */
    const mle_op *op;         /* the operation (kind and address shape the error), or NULL */
} aws_req;

/* What came back besides the body: status and the provider's error code, for call sites
 * that must tell two errors of the same class apart. */
typedef struct aws_resp_info {
    long status;
    char code[128];
} aws_resp_info;

/* A form (query protocols): "k=v&k=v", percent-encoded as RFC 3986 wants. */
typedef struct aws_form {
    aws_buf b;
} aws_form;

#endif
