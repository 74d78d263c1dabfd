/*
 * mlengine/driver.h — the whole contract between the mlengine core and a driver.
 *
 * A driver is a shared object that exports exactly one symbol, MLE_DRIVER_ENTRY_SYMBOL,
 * returning a static descriptor (struct mle_driver). It includes only this header and links
 * against nothing of the core: everything it needs from the engine (HTTP, JSON values, crypto,
 * logging, errors, allocation, the clock) comes through the host-services table
 * (struct mle_host) handed to it at init and on every operation.
 *
 * Versioning (the SQLite/Redis model):
 *   - MLE_ABI_MAJOR changes only when an existing field or function changes meaning; the loader
 *     refuses a driver built for another major, naming both versions.
 *   - MLE_ABI_MINOR grows when fields are appended. Every struct that crosses the boundary
 *     starts with `struct_size`; a reader looks at a field only when struct_size says it is
 *     there (use MLE_HAS_FIELD). Fields are only ever appended, never reordered.
 *   - A host function the core lacks is NULL; test before calling anything newer than minor 0.
 *
 * Ownership, everywhere in this header:
 *   - `const T *` arguments are borrowed for the duration of the call.
 *   - A pointer returned through `T **out` belongs to the caller and is released with the
 *     matching host function (value_decref, error_free, free, http_response_free).
 *   - Functions documented as "steals" take over the caller's reference.
 *   - Functions documented as "borrowed" return a pointer valid as long as its parent lives.
 *
 * Threading: the core calls a driver's operations from several worker threads at once. A
 * driver keeps its per-run state in the context it returned from init and protects it
 * itself; host functions are thread-safe. Drivers never sleep and never start threads: a long
 * cloud operation answers MLE_OP_IN_PROGRESS with a poll token and the core calls poll later.
 */
#ifndef MLENGINE_DRIVER_H
#define MLENGINE_DRIVER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MLE_ABI_MAJOR 1
#define MLE_ABI_MINOR 1

/* The one symbol a driver exports: `const struct mle_driver *mle_driver_entry(void);` */
#define MLE_DRIVER_ENTRY_SYMBOL "mle_driver_entry"

#if defined(__GNUC__)
#define MLE_EXPORT __attribute__((visibility("default")))
#define MLE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MLE_EXPORT
#define MLE_PRINTF(f, a)
#endif

/* True when a struct of the given (reported) size contains `field`. */
#define MLE_HAS_FIELD(ptr, type, field)                                                     \
    ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* ---------------------------------------------------------------------------------------
 * Values: JSON-shaped, reference counted, opaque. Built and read only through mle_host.
 * --------------------------------------------------------------------------------------- */
typedef struct mle_value mle_value;

typedef enum mle_value_kind {
    MLE_V_NULL = 0,
    MLE_V_BOOL,
    MLE_V_INT,
    MLE_V_REAL,
    MLE_V_STRING,
    MLE_V_ARRAY,
    MLE_V_OBJECT,
} mle_value_kind;

/* ---------------------------------------------------------------------------------------
 * Errors: an object with a stable code, never matched as a string.
 * --------------------------------------------------------------------------------------- */
typedef struct mle_error mle_error;

typedef enum mle_error_code {
    MLE_OK = 0,
    MLE_E_INTERNAL = 1,    /* a bug: the engine or driver broke its own invariant */
    MLE_E_INVALID = 2,     /* bad input: a value the schema or the API rejects */
    MLE_E_NOT_FOUND = 3,   /* the thing named does not exist */
    MLE_E_AUTH = 4,        /* no usable credentials, or the provider rejected them */
    MLE_E_PERMISSION = 5,  /* credentials valid, action not allowed */
    MLE_E_CONFLICT = 6,    /* already exists, in use, or a state precondition failed */
    MLE_E_THROTTLED = 7,   /* rate limited: retryable */
    MLE_E_TRANSIENT = 8,   /* network error, 5xx, eventual consistency: retryable */
    MLE_E_TIMEOUT = 9,     /* gave up waiting */
    MLE_E_PROVIDER = 10,   /* any other error the provider answered */
    MLE_E_IO = 11,         /* local file or process I/O */
    MLE_E_UNSUPPORTED = 12 /* the driver or cloud does not offer this */
} mle_error_code;

/* ---------------------------------------------------------------------------------------
 * Resource schemas: static tables the core validates, defaults, redacts and exports from.
 * --------------------------------------------------------------------------------------- */
typedef enum mle_attr_type {
    MLE_T_STRING = 1,
    MLE_T_INT,
    MLE_T_NUMBER,
    MLE_T_BOOL,
    MLE_T_LIST, /* elements of elem_type */
    MLE_T_MAP,  /* string keys, values of elem_type */
    MLE_T_ANY,  /* any JSON value (nested documents: policies, manifests) */
} mle_attr_type;

enum mle_attr_flags {
    MLE_A_REQUIRED = 1u << 0,  /* must be set in the stack */
    MLE_A_OPTIONAL = 1u << 1,  /* may be set in the stack */
    MLE_A_COMPUTED = 1u << 2,  /* set by the provider (with OPTIONAL: provider default) */
    MLE_A_FORCE_NEW = 1u << 3, /* a change replaces the resource */
    MLE_A_SENSITIVE = 1u << 4, /* redacted everywhere, encrypted at rest */
    /* Since ABI 1.1: a computed attribute set at create and never changed by an in-place
     * update (an ARN): dependents of an updated resource keep it as a known value. */
    MLE_A_STABLE = 1u << 5,
};

typedef struct mle_attr_schema {
    const char *name;
    mle_attr_type type;
    mle_attr_type elem_type; /* for LIST and MAP; 0 means ANY */
    unsigned flags;          /* mle_attr_flags */
    const char *default_json; /* JSON text of the default, or NULL */
    const char *description;
} mle_attr_schema;

enum mle_type_flags {
    MLE_RT_DATA_SOURCE = 1u << 0,          /* read-only: only `read` is called */
    MLE_RT_CREATE_BEFORE_DESTROY = 1u << 1 /* replace creates the new one first */
};

struct mle_host;
struct mle_op;

typedef enum mle_op_status {
    MLE_OP_DONE = 0,        /* finished; the result holds id and attributes */
    MLE_OP_IN_PROGRESS = 1, /* started; poll again with the result's poll token after delay */
    MLE_OP_NOT_FOUND = 2,   /* read/delete/adopt: the resource does not exist */
    MLE_OP_ERROR = 3,       /* the result holds an error (retryable or fatal, by its code) */
} mle_op_status;

/* An operation function. Called on a worker thread; may do blocking HTTP through the host.
 * Reads its inputs from op (borrowed) and reports through host->op_* setters. */
typedef mle_op_status (*mle_op_fn)(const struct mle_host *host, const struct mle_op *op);

typedef struct mle_resource_type {
    uint32_t struct_size; /* sizeof(struct mle_resource_type) the driver was built with */
    const char *name;     /* "aws_vpc": unique across all loaded drivers */
    const char *description;
    const mle_attr_schema *attrs; /* table of n_attrs entries */
    size_t n_attrs;
    unsigned flags; /* mle_type_flags */

    mle_op_fn create; /* required unless DATA_SOURCE */
    mle_op_fn read;   /* required: refresh, drift, data sources */
    mle_op_fn update; /* NULL: every change is force-new */
    mle_op_fn del;    /* required unless DATA_SOURCE */
    mle_op_fn import; /* optional: op->id is the user-given ID; answer like read */
    mle_op_fn poll;   /* required if any op answers IN_PROGRESS: op->poll_token is set */
    /* Crash recovery: find what a create with op->token / op->address may have made (by
     * idempotency token, ownership tags or caller-chosen name). DONE adopts it, NOT_FOUND
     * drops the intent. NULL: the core cannot adopt and reports the pending intent. */
    mle_op_fn adopt;

    /* --- since ABI 1.1 --- */
    /* Optional. `mlengine render`: answer DONE with attributes {"files": {"name.yaml": text}}
     * — the documents a reviewer reads for op->config (manifests, merged Helm values).
     * Unknown values arrive as the string "(known after apply)". No I/O. */
    mle_op_fn render;
} mle_resource_type;

/* Since ABI 1.1: a cloud the driver does not support and what to use there instead, shown
 * when a stack that targets that cloud (mle.cloud) uses the driver. */
typedef struct mle_cloud_note {
    const char *cloud;   /* "azure" */
    const char *message; /* "use AKS node auto-provisioning (node_provisioning_profile)" */
} mle_cloud_note;

/* One driver option (its configuration, from the stack's `driver "aws" { ... }`). */
typedef struct mle_option {
    const char *name;
    mle_attr_type type;
    const char *default_json;
    const char *description;
    int sensitive;
} mle_option;

typedef struct mle_driver {
    uint32_t struct_size; /* sizeof(struct mle_driver) the driver was built with */
    uint32_t abi_major;   /* MLE_ABI_MAJOR the driver was built with */
    uint32_t abi_minor;
    const char *name;        /* "aws": the file is name.so */
    const char *version;     /* the driver's own version, semver */
    const char *description; /* one line */
    const char *const *clouds; /* NULL-terminated: "aws", "azure", "gcp"; "any" for all */
    const mle_resource_type *const *types; /* NULL-terminated */
    const mle_option *options;             /* table of n_options entries */
    size_t n_options;

    /* Optional. Called once per run before any operation, with the driver's options
     * (defaults applied; borrowed). Returns 0 and sets *ctx (driver-owned), or non-zero with
     * *err set (owned by the core). */
    int (*init)(const struct mle_host *host, const mle_value *options, void **ctx,
                mle_error **err);
    /* Optional. Frees what init made. Called once, after the last operation. */
    void (*fini)(const struct mle_host *host, void *ctx);

    /* --- since ABI 1.1 --- */
    const mle_cloud_note *cloud_notes; /* ends with an entry whose cloud is NULL; may be NULL */
} mle_driver;

typedef const mle_driver *(*mle_driver_entry_fn)(void);

/* ---------------------------------------------------------------------------------------
 * An operation's inputs. Built by the core, borrowed by the driver for the call.
 * --------------------------------------------------------------------------------------- */
typedef enum mle_op_kind {
    MLE_OPK_CREATE = 1,
    MLE_OPK_READ,
    MLE_OPK_UPDATE,
    MLE_OPK_DELETE,
    MLE_OPK_IMPORT,
    MLE_OPK_POLL,
    MLE_OPK_ADOPT,
    MLE_OPK_RENDER, /* since ABI 1.1 */
} mle_op_kind;

typedef struct mle_op {
    uint32_t struct_size;
    mle_op_kind kind;       /* for POLL: what kind is being continued is in poll_kind */
    const char *type;       /* resource type name */
    const char *address;    /* "aws_vpc.main" */
    const char *id;         /* provider ID; NULL on create */
    const mle_value *config; /* desired attributes, defaults applied; NULL on delete/read */
    const mle_value *state;  /* last known attributes; NULL on create */
    const char *token;       /* idempotency token of this create (stable across retries
                                and across a crash) */
    const char *lineage;     /* the stack's state lineage: the ownership identity */
    const char *poll_token;  /* POLL: the token the previous call returned */
    mle_op_kind poll_kind;   /* POLL: CREATE, UPDATE or DELETE */
    void *ctx;               /* what the driver's init returned */
    void *core;              /* the core's own; a driver never reads it */
} mle_op;

/* ---------------------------------------------------------------------------------------
 * HTTP through the host (libcurl): connection reuse, timeouts, TLS verification always on,
 * credentials and registered secrets redacted from logs.
 * --------------------------------------------------------------------------------------- */
typedef struct mle_http_header {
    const char *name;
    const char *value;
} mle_http_header;

typedef struct mle_http_request {
    uint32_t struct_size;
    const char *method; /* "GET", "POST", ... */
    const char *url;
    const mle_http_header *headers; /* n_headers entries */
    size_t n_headers;
    const void *body; /* may be NULL */
    size_t body_len;
    long timeout_ms;   /* 0: the host default (60 s) */
    const char *ca_pem; /* extra trusted CA (PEM text), e.g. a cluster's CA; NULL: system */
    const char *client_cert_pem; /* optional client certificate + key (PEM text) */
    const char *client_key_pem;
} mle_http_request;

typedef struct mle_http_response {
    long status;
    mle_http_header *headers; /* n_headers entries; names lower-cased */
    size_t n_headers;
    char *body; /* NUL-terminated for convenience; body_len excludes the NUL */
    size_t body_len;
} mle_http_response;

typedef enum mle_log_level {
    MLE_LOG_ERROR = 0,
    MLE_LOG_WARN,
    MLE_LOG_INFO,
    MLE_LOG_DEBUG,
} mle_log_level;

typedef enum mle_sign_alg {
    MLE_SIGN_RS256 = 1, /* RSA PKCS#1 v1.5 with SHA-256 */
    MLE_SIGN_ES256,     /* ECDSA P-256 with SHA-256, JOSE (r||s) encoding */
} mle_sign_alg;

/* ---------------------------------------------------------------------------------------
 * The host-services table. One per loaded driver; valid from init until fini.
 * Every function takes the table itself first, so the core knows which driver is calling.
 * --------------------------------------------------------------------------------------- */
typedef struct mle_host {
    uint32_t struct_size;
    uint32_t abi_major;
    uint32_t abi_minor;
    void *core; /* the core's own; a driver never reads it */

    /* --- allocation: what crosses the boundary is allocated and freed by the host --- */
    void *(*alloc)(const struct mle_host *h, size_t n); /* zeroed; aborts on OOM */
    void (*free)(const struct mle_host *h, void *p);
    char *(*strdup)(const struct mle_host *h, const char *s); /* caller frees with free */
    char *(*sprintf)(const struct mle_host *h, const char *fmt, ...) MLE_PRINTF(2, 3);

    /* --- logging: the message is redacted of registered secrets before it is written --- */
    void (*log)(const struct mle_host *h, mle_log_level lvl, const char *fmt, ...)
        MLE_PRINTF(3, 4);

    /* --- errors --- */
    /* New error (caller owns; free with error_free or hand it to op_error, which steals). */
    mle_error *(*error_new)(const struct mle_host *h, mle_error_code code, const char *fmt, ...)
        MLE_PRINTF(3, 4);
    /* Attach what the provider said: HTTP status, its own error code and message. */
    void (*error_set_provider)(mle_error *e, long http_status, const char *provider_code,
                               const char *provider_message);
    void (*error_set_attribute)(mle_error *e, const char *attribute);
    void (*error_set_hint)(mle_error *e, const char *hint);
    void (*error_set_retry_after)(mle_error *e, uint32_t ms); /* makes it retryable */
    mle_error_code (*error_code)(const mle_error *e);
    const char *(*error_message)(const mle_error *e); /* borrowed */
    int (*error_retryable)(const mle_error *e);
    void (*error_free)(mle_error *e);

    /* --- values --- */
    mle_value *(*v_null)(void);
    mle_value *(*v_bool)(int b);
    mle_value *(*v_int)(int64_t i);
    mle_value *(*v_real)(double d);
    mle_value *(*v_string)(const char *s); /* copies s; NULL s gives null */
    mle_value *(*v_stringn)(const char *s, size_t n);
    mle_value *(*v_array)(void);
    mle_value *(*v_object)(void);
    mle_value *(*v_incref)(mle_value *v); /* returns v */
    void (*v_decref)(mle_value *v);       /* NULL is fine */
    mle_value_kind (*v_kind)(const mle_value *v);
    int (*v_bool_of)(const mle_value *v);
    int64_t (*v_int_of)(const mle_value *v);   /* INT, or REAL truncated; else 0 */
    double (*v_real_of)(const mle_value *v);   /* REAL or INT; else 0 */
    const char *(*v_str)(const mle_value *v);  /* borrowed; NULL when not a string */
    size_t (*v_len)(const mle_value *v);       /* array length or object size */
    mle_value *(*v_at)(const mle_value *arr, size_t i);          /* borrowed */
    int (*v_append)(mle_value *arr, mle_value *item);            /* steals item */
    mle_value *(*v_get)(const mle_value *obj, const char *key);  /* borrowed, or NULL */
    int (*v_set)(mle_value *obj, const char *key, mle_value *val); /* steals val */
    int (*v_del)(mle_value *obj, const char *key);
    /* Iterate an object: start with *iter = NULL; returns the key (borrowed) or NULL at end;
     * *val receives the value (borrowed). Keys come in insertion order. */
    const char *(*v_next)(const mle_value *obj, void **iter, mle_value **val);
    mle_value *(*v_deep_copy)(const mle_value *v);
    int (*v_equal)(const mle_value *a, const mle_value *b);
    /* Parse JSON text. Returns a new value (caller owns) or NULL with *err set. */
    mle_value *(*v_parse_json)(const struct mle_host *h, const char *text, size_t len,
                               mle_error **err);
    /* Compact JSON with sorted keys. Caller frees with free. */
    char *(*v_to_json)(const struct mle_host *h, const mle_value *v);
    /* Parse XML into a value: an element becomes an object keyed by child local names, a
     * name seen more than once becomes an array, a text-only element becomes a string, an
     * empty element an empty string. Attributes are dropped; the root element's own name is
     * not kept. Returns a new value or NULL with *err set. (libxml2 inside.) */
    mle_value *(*v_parse_xml)(const struct mle_host *h, const char *text, size_t len,
                              mle_error **err);
    /* Parse one or more YAML documents into an array of values. (libyaml inside.) */
    mle_value *(*v_parse_yaml)(const struct mle_host *h, const char *text, size_t len,
                               mle_error **err);

    /* --- HTTP --- */
    /* Blocking. 0 with *resp set (caller frees with http_response_free) for every HTTP status
     * (a 4xx is a response, not a failure); non-zero with *err (MLE_E_TRANSIENT for network
     * errors and timeouts) when no response was had. */
    int (*http)(const struct mle_host *h, const mle_http_request *req, mle_http_response **resp,
                mle_error **err);
    void (*http_response_free)(const struct mle_host *h, mle_http_response *resp);
    /* Header value (borrowed) by case-insensitive name, or NULL. */
    const char *(*http_header)(const mle_http_response *resp, const char *name);
    /* Percent-encode per RFC 3986 (unreserved kept). Keeps '/' when keep_slash. Caller frees. */
    char *(*url_encode)(const struct mle_host *h, const char *s, int keep_slash);

    /* --- crypto (OpenSSL inside) --- */
    void (*sha256)(const void *data, size_t len, uint8_t out[32]);
    void (*hmac_sha256)(const void *key, size_t key_len, const void *data, size_t len,
                        uint8_t out[32]);
    /* Lower-case hex of n bytes. Caller frees. */
    char *(*hex)(const struct mle_host *h, const uint8_t *data, size_t n);
    /* base64 (url: base64url without padding). Caller frees. */
    char *(*base64_encode)(const struct mle_host *h, const void *data, size_t len, int url);
    /* Decodes either alphabet, padding optional. Returns bytes (caller frees) or NULL. */
    uint8_t *(*base64_decode)(const struct mle_host *h, const char *s, size_t *out_len);
    /* Sign data with a PEM private key. 0 and *sig (caller frees) or non-zero and *err. */
    int (*sign_pem)(const struct mle_host *h, const char *pem, mle_sign_alg alg,
                    const void *data, size_t len, uint8_t **sig, size_t *sig_len,
                    mle_error **err);
    /* Cryptographically random bytes. */
    int (*random_bytes)(uint8_t *out, size_t n);

    /* --- secrets --- */
    /* From now on the string is redacted from every log line, error and HTTP trace. */
    void (*secret_register)(const struct mle_host *h, const char *secret);

    /* --- clock --- */
    int64_t (*now_unix_ms)(void);   /* wall clock */
    int64_t (*monotonic_ms)(void);  /* for durations */

    /* --- operation results: each call replaces what an earlier one set --- */
    /* DONE: id (copied) and attributes (stolen). */
    mle_op_status (*op_done)(const struct mle_host *h, const mle_op *op, const char *id,
                             mle_value *attrs);
    /* IN_PROGRESS: poll token (copied; it is stored in state, so keep it small and free of
     * secrets) and when to poll again. */
    mle_op_status (*op_in_progress)(const struct mle_host *h, const mle_op *op,
                                    const char *poll_token, uint32_t poll_after_ms);
    mle_op_status (*op_not_found)(const struct mle_host *h, const mle_op *op);
    /* ERROR: steals err. Retryable when its code is THROTTLED/TRANSIENT or it has a
     * retry-after. */
    mle_op_status (*op_error)(const struct mle_host *h, const mle_op *op, mle_error *err);

    /* --- since ABI 1.1 (test with MLE_HAS_FIELD before use) --- */
    /* One YAML document for v (block style, keys in object order). Caller frees; NULL and
     * *err on failure. (libyaml inside.) */
    char *(*v_to_yaml)(const struct mle_host *h, const mle_value *v, mle_error **err);
} mle_host;

#ifdef __cplusplus
}
#endif
#endif /* MLENGINE_DRIVER_H */
