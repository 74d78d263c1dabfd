/*
 * aws_sigv4.h — AWS Signature Version 4: header signing (the Authorization header every AWS
 * API call carries) and query presigning (a URL that carries its own signature, as the EKS
 * bearer token of the kubernetes driver does).
 *
 * Shared by drivers (linked statically into each that needs it), so it knows nothing of any
 * driver: it takes a request description and credentials, and hands back the canonical
 * request, the string to sign, the signature and what to add to the request. Hashing and HMAC
 * come from the host-services table (OpenSSL in the core); the rest is string work.
 *
 * The rules are those of the AWS SigV4 specification, and the behaviour is pinned by the
 * official test-suite vectors (tests/unit/test_aws_sigv4.c runs every one of them):
 *   - path: with normalize_path, "." and ".." segments are resolved and empty segments
 *     dropped (a trailing slash is kept); with encode_path, the path is URI-encoded once more
 *     ('/' kept). S3 wants neither: it signs the path exactly as sent.
 *   - query: each parameter is decoded, then re-encoded per RFC 3986 (unreserved kept,
 *     upper-case hex), and the list is sorted by key, then value; "k" alone becomes "k=".
 *   - headers: names lower-cased, values trimmed with runs of whitespace (line folds too)
 *     collapsed to one space, duplicates joined with ',' in order, sorted by name.
 *
 * Thread-safe: no state. Never blocks.
 */
#ifndef MLE_DRIVERS_COMMON_AWS_SIGV4_H
#define MLE_DRIVERS_COMMON_AWS_SIGV4_H

#include <mlengine/driver.h>
#include <stdint.h>

/* The hash of an empty payload: the payload hash of every GET. */
#define MLE_AWS_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* S3 only: a payload that is not hashed (x-amz-content-sha256: UNSIGNED-PAYLOAD). */
#define MLE_AWS_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

/* Credentials (borrowed by the signer for the call). */
typedef struct mle_aws_credentials {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL or "" when the credentials are long-lived */
} mle_aws_credentials;

/* What to sign. All pointers borrowed for the call. */
typedef struct mle_aws_sigv4_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* the path as it will be sent ("/", "/clusters/x"); never NULL */
    const char *query;  /* the query as it will be sent, without '?'; NULL or "" for none */
    /* The headers that will be sent and must be signed; must include "host" (any case),
     * whose value is host[:port] exactly as sent. Authorization, User-Agent, Expect and a few
     * hop-by-hop headers are never signed, whatever is passed here. */
    const mle_http_header *headers;
    size_t n_headers;
    const void *body; /* NULL when there is none */
    size_t body_len;
} mle_aws_sigv4_request;

/* How to sign. */
typedef struct mle_aws_sigv4_params {
    const mle_aws_credentials *creds;
    const char *region;  /* "us-east-1" */
    const char *service; /* signing name: "ec2", "eks", "s3", "sts", "iam", ... */
    int64_t time_unix;   /* the signing time, seconds since the epoch (UTC) */
    int normalize_path;  /* 1 for every service but S3 */
    int encode_path;     /* 1 for every service but S3 */
    /* Header signing: also send (and sign) x-amz-content-sha256 with the payload hash. S3
     * requires it; other services accept it. */
    int add_content_sha256;
    /* Session token is sent but not signed (some services want it added after signing). */
    int omit_session_token;
    /* The payload hash to sign (e.g. MLE_AWS_UNSIGNED_PAYLOAD); NULL: SHA-256 of body. */
    const char *payload_hash;
    uint32_t expires_s; /* presigning: X-Amz-Expires, 1..604800 */
} mle_aws_sigv4_params;

/* What signing produced. Every string is owned by the result; release them all with
 * mle_aws_sigv4_result_free. */
typedef struct mle_aws_sigv4_result {
    char *canonical_request;
    char *string_to_sign;
    char *signature;      /* lower-case hex */
    char *amz_date;       /* "20150830T123600Z" */
    char *payload_hash;   /* what was signed as the payload hash */
    char *signed_headers; /* "host;x-amz-date" */
    /* Header signing: the headers the caller adds to the request, in this order:
     * X-Amz-Date, X-Amz-Security-Token (when there is a token), x-amz-content-sha256 (when
     * add_content_sha256), Authorization. names are static strings, values owned. */
    mle_http_header add[4];
    size_t n_add;
    /* Presigning: the complete query string to send (the request's own parameters, then
     * X-Amz-Algorithm ... X-Amz-Signature), without '?'. NULL after header signing. */
    char *query;
    /* The canonical query string, exactly as signed: every parameter decoded, re-encoded and
     * sorted (presigning: the X-Amz-* parameters included, X-Amz-Signature not). Presigning
     * callers may send it followed by "&X-Amz-Signature=<signature>" instead of out->query:
     * the same parameters in sorted order, the layout of the AWS SDK for Go's presigned URLs
     * (and so of EKS bearer tokens). */
    char *canonical_query;
} mle_aws_sigv4_result;

/* Header signing. Returns 0 and fills *out (release with mle_aws_sigv4_result_free), or
 * non-zero with *err (caller owns) on an invalid request (missing host header, credentials,
 * region or service). Never does I/O. */
int mle_aws_sigv4_sign(const mle_host *host, const mle_aws_sigv4_request *req,
                       const mle_aws_sigv4_params *params, mle_aws_sigv4_result *out,
                       mle_error **err);

/* Query presigning: like mle_aws_sigv4_sign, but the signature travels in the query (see
 * out->query) and the request's headers are signed as given (no X-Amz-Date header). */
int mle_aws_sigv4_presign(const mle_host *host, const mle_aws_sigv4_request *req,
                          const mle_aws_sigv4_params *params, mle_aws_sigv4_result *out,
                          mle_error **err);

/* Frees every string of a result and zeroes it. NULL is fine. */
void mle_aws_sigv4_result_free(mle_aws_sigv4_result *r);

/* RFC 3986 percent-encoding as SigV4 wants it: unreserved (A-Z a-z 0-9 - _ . ~) kept, every
 * other byte as %XX with upper-case hex; '/' kept when keep_slash. Returns a string the
 * caller frees with free(), or NULL on allocation failure. */
char *mle_aws_uri_encode(const char *s, size_t len, int keep_slash);

/* Format a Unix time as the SigV4 timestamp "YYYYMMDDTHHMMSSZ" into out (17 bytes). */
void mle_aws_amz_date(int64_t time_unix, char out[17]);

#endif
