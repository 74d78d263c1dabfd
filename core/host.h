/*
 * host.h — builds the host-services table (struct mle_host) handed to each driver, and
 * carries an operation's result from the driver back to the scheduler.
 *
 * The table's functions are thin adapters over the core's own modules (value.c over jansson,
 * http.c over libcurl, crypto.c over OpenSSL, xml.c over libxml2, yaml.c over libyaml,
 * log.c for logging and redaction). Inside the core, mle_value IS json_t: the cast is the
 * whole conversion.
 */
#ifndef MLE_CORE_HOST_H
#define MLE_CORE_HOST_H

#include <jansson.h>
#include <mlengine/driver.h>
#include "error.h"
#include "log.h"

/* mle_value <-> json_t: the same object. */
#define MLE_J(v) ((json_t *)(v))
#define MLE_V(j) ((mle_value *)(j))

/* What one driver call produced. The scheduler owns it; op->core points at it during the
 * call and the host's op_* setters fill it. */
typedef struct mle_op_result {
    mle_op_status status;
    int set;            /* a setter was called */
    char *id;           /* DONE: provider ID (owned) */
    json_t *attrs;      /* DONE: attributes (owned reference) */
    char *poll_token;   /* IN_PROGRESS (owned) */
    uint32_t poll_after_ms;
    mle_error *error;   /* ERROR (owned) */
} mle_op_result;

/* Free what the result owns and zero it. */
void mle_op_result_clear(mle_op_result *r);

/* Shared services every host table of a run uses (borrowed by each table). */
typedef struct mle_host_services {
    mle_logger *logger;    /* borrowed */
    struct mle_http_client *http; /* borrowed; from mle_http_client_new */
} mle_host_services;

/* A new host table for the driver named `driver_name` (copied; used as the log source).
 * Caller frees with mle_host_free after the driver's fini. */
mle_host *mle_host_new(const mle_host_services *svc, const char *driver_name);
void mle_host_free(mle_host *h);

/* The driver name a table was made for (borrowed). */
const char *mle_host_driver_name(const mle_host *h);

#endif
