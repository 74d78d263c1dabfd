/*
 * error.h — the core's error object (struct mle_error, opaque to drivers).
 *
 * One convention everywhere: a stable code, a message that says what failed with which input,
 * and where possible a hint. Functions that can fail return non-zero (or NULL) and hand a new
 * error through `mle_error **err` (caller owns; free with mle_error_free). `err` may be NULL
 * when the caller does not want the details.
 */
#ifndef MLE_CORE_ERROR_H
#define MLE_CORE_ERROR_H

#include <mlengine/driver.h>

struct mle_error {
    mle_error_code code;
    char *message;          /* what went wrong, with which input */
    char *hint;             /* how to fix it, or NULL */
    char *attribute;        /* the attribute at fault, or NULL */
    char *address;          /* the resource address, or NULL */
    long http_status;       /* 0 when not from HTTP */
    char *provider_code;    /* the provider's own code ("InvalidVpcID.NotFound"), or NULL */
    char *provider_message; /* the provider's own message, or NULL */
    uint32_t retry_after_ms;
    int has_retry_after;
};

/* New error (caller owns). Never returns NULL (aborts on OOM). */
mle_error *mle_error_new(mle_error_code code, const char *fmt, ...) MLE_PRINTF(2, 3);
mle_error *mle_error_newv(mle_error_code code, const char *fmt, va_list ap);
void mle_error_free(mle_error *e);

/* Set *out to a new error when out is non-NULL; always returns -1 so callers can
 * `return mle_fail(err, MLE_E_INVALID, "...")`. */
int mle_fail(mle_error **out, mle_error_code code, const char *fmt, ...) MLE_PRINTF(3, 4);

/* Prefix the message with context: "loading aws.so: " + old message. */
void mle_error_prefix(mle_error *e, const char *fmt, ...) MLE_PRINTF(2, 3);
void mle_error_set_hint(mle_error *e, const char *hint);
void mle_error_set_attribute(mle_error *e, const char *attribute);
void mle_error_set_address(mle_error *e, const char *address);
void mle_error_set_provider(mle_error *e, long http_status, const char *provider_code,
                            const char *provider_message);
void mle_error_set_retry_after(mle_error *e, uint32_t ms);

/* Retryable: THROTTLED, TRANSIENT, or an explicit retry-after. */
int mle_error_retryable(const mle_error *e);

/* Stable lower-case name of a code ("invalid", "throttled", ...). Static string. */
const char *mle_error_code_name(mle_error_code code);

/* One line for a person: "[address] message (provider: CODE: msg, HTTP 400) attribute: x".
 * The hint, if any, follows on a second line. Caller frees with free(). */
char *mle_error_format(const mle_error *e);

#endif
