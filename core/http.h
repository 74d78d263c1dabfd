/*
 * http.h — the host's HTTP client over libcurl, shared by every driver of a run.
 *
 * Connection reuse: a pool of curl easy handles. A request takes an idle handle (or makes
 * one), runs on it, and gives it back; an easy handle keeps its own connection cache, so the
 * next request to the same host on that handle reuses the open (TLS) connection. All handles
 * also share a CURLSH holding the DNS cache and TLS session IDs (with one mutex per shared
 * kind as lock callbacks), so a new handle resumes TLS sessions instead of full handshakes.
 * Connections themselves are not put in the CURLSH: libcurl documents sharing the connection
 * cache between concurrently running threads as unsafe in the versions we build against.
 *
 * Threads: mle_http_do may be called from many threads at once on one client.
 * TLS: peer and host verification are always on. req->ca_pem is trusted in addition to the
 * system store; client_cert_pem/client_key_pem give mutual TLS. Redirects are not followed
 * (a driver sees the 3xx). Only http and https URLs are allowed.
 * Global state: curl_global_init runs once per process, from the first mle_http_client_new
 * (guarded by pthread_once); curl_global_cleanup is never called (the process exit frees it).
 */
#ifndef MLE_CORE_HTTP_H
#define MLE_CORE_HTTP_H

#include <mlengine/driver.h>
#include "error.h"
#include "log.h"

typedef struct mle_http_client mle_http_client;

/* New client. lg (borrowed, may be NULL) receives the DEBUG trace
 * "METHOD url -> status (N ms)", with credential query parameters and registered secrets
 * redacted. Caller frees with mle_http_client_free after the last request. NULL when libcurl
 * cannot be initialised. */
mle_http_client *mle_http_client_new(mle_logger *lg);
void mle_http_client_free(mle_http_client *c);

/* Run one request; blocks for up to req->timeout_ms (0: 60 s; connecting: at most 10 s).
 * Returns 0 with *resp (caller frees with mle_http_response_free) for every HTTP status, or
 * -1 with *err and no response:
 *   MLE_E_TRANSIENT  network errors and timeouts (message: curl's reason and the URL);
 *   MLE_E_INVALID    a malformed URL or scheme, unusable ca/cert/key PEM, or a server
 *                    certificate that does not verify (not retryable: the trust is wrong).
 * req is borrowed; its headers are sent as given (a header with an empty value is sent
 * empty). curl adds no Content-Type and no "Expect: 100-continue". */
int mle_http_do(mle_http_client *c, const mle_http_request *req, mle_http_response **resp,
                mle_error **err);

/* Free a response from mle_http_do (NULL is fine). */
void mle_http_response_free(mle_http_response *resp);

/* The first value (borrowed) of a header by case-insensitive name, or NULL. */
const char *mle_http_header_get(const mle_http_response *resp, const char *name);

#endif
