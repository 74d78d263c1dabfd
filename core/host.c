/*
 * host.c — owns the host-services table handed to each driver (struct mle_host): the thin
 * adapters from the public ABI to the core's modules, the per-driver private part (services
 * and driver name), and the operation-result setters.
 */
#include "host.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "http.h"
#include "value.h"
#include "xml.h"
#include "yaml.h"

/* The table and its private part in one allocation: h->core points at the whole. */
typedef struct host_core {
    mle_host table;
    mle_host_services svc;
    char *driver_name;
} host_core;

static host_core *core_of(const mle_host *h)
{
    return h ? (host_core *)h->core : NULL;
}

static mle_logger *logger_of(const mle_host *h)
{
    host_core *hc = core_of(h);
    return hc ? hc->svc.logger : NULL;
}

/* ---- allocation: OOM has no recovery a driver could attempt, so it aborts ---- */

static void *h_alloc(const mle_host *h, size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p)
        abort();
    return p;
}

static void h_free(const mle_host *h, void *p)
{
    free(p);
}

static char *h_strdup(const mle_host *h, const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static char *h_sprintf(const mle_host *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0)
        abort();
    return s;
}

static void h_log(const mle_host *h, mle_log_level lvl, const char *fmt, ...)
{
    host_core *hc = core_of(h);
    if (!hc)
        return;
    va_list ap;
    va_start(ap, fmt);
    mle_logv(hc->svc.logger, lvl, hc->driver_name, fmt, ap);
    va_end(ap);
}

/* ---- errors: the message is redacted when made, because it outlives the call ---- */

static mle_error *h_error_new(const mle_host *h, mle_error_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mle_error *e = mle_error_newv(code, fmt, ap);
    va_end(ap);
    mle_logger *lg = logger_of(h);
    if (!lg)
        return e;
    char *red = mle_redact(lg, e->message);
    if (red) {
        free(e->message);
        e->message = red;
    }
    return e;
}

static mle_error_code h_error_code(const mle_error *e)
{
    return e ? e->code : MLE_OK;
}

static const char *h_error_message(const mle_error *e)
{
    return e ? e->message : NULL;
}

/* ---- parsers that take the table only to match the ABI ---- */

static mle_value *h_parse_json(const mle_host *h, const char *text, size_t len,
                               mle_error **err)
{
    return MLE_V(mle_json_parse(text, len, err));
}

static char *h_to_json(const mle_host *h, const mle_value *v)
{
    return mle_json_canonical((const json_t *)v);
}

static mle_value *h_parse_xml(const mle_host *h, const char *text, size_t len,
                              mle_error **err)
{
    return MLE_V(mle_xml_parse(text, len, err));
}

static char *h_to_yaml(const mle_host *h, const mle_value *v, mle_error **err)
{
    (void)h;
    return mle_yaml_emit(MLE_J(v), err);
}

static mle_value *h_parse_yaml(const mle_host *h, const char *text, size_t len,
                               mle_error **err)
{
    return MLE_V(mle_yaml_parse(text, len, err));
}

/* ---- HTTP ---- */

static int h_http(const mle_host *h, const mle_http_request *req, mle_http_response **resp,
                  mle_error **err)
{
    host_core *hc = core_of(h);
    *resp = NULL;
    if (!hc || !hc->svc.http)
        return mle_fail(err, MLE_E_UNSUPPORTED, "HTTP is not available to this driver");
    return mle_http_do(hc->svc.http, req, resp, err);
}

static void h_http_response_free(const mle_host *h, mle_http_response *resp)
{
    mle_http_response_free(resp);
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 3986 §2.3 by hand: curl_easy_escape has no way to keep '/', which S3 keys need. */
static char *h_url_encode(const mle_host *h, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!s)
        s = "";
    char *out = malloc(strlen(s) * 3 + 1);
    if (!out)
        abort();
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (unreserved(*p) || (keep_slash && *p == '/')) {
            out[o++] = (char)*p;
            continue;
        }
        out[o++] = '%';
        out[o++] = hex[*p >> 4];
        out[o++] = hex[*p & 15];
    }
    out[o] = '\0';
    return out;
}

/* ---- crypto adapters ---- */

static char *h_hex(const mle_host *h, const uint8_t *data, size_t n)
{
    char *s = mle_hex(data, n);
    if (!s)
        abort();
    return s;
}

static char *h_base64_encode(const mle_host *h, const void *data, size_t len, int url)
{
    char *s = mle_base64_encode(data, len, url);
    if (!s)
        abort();
    return s;
}

static uint8_t *h_base64_decode(const mle_host *h, const char *s, size_t *out_len)
{
    return mle_base64_decode(s, out_len);
}

static int h_sign_pem(const mle_host *h, const char *pem, mle_sign_alg alg, const void *data,
                      size_t len, uint8_t **sig, size_t *sig_len, mle_error **err)
{
    return mle_sign_pem(pem, alg, data, len, sig, sig_len, err);
}

static void h_secret_register(const mle_host *h, const char *secret)
{
    mle_logger_add_secret(logger_of(h), secret);
}

/* ---- clock ---- */

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t h_now_unix_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

static int64_t h_monotonic_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

/* ---- operation results ---- */

void mle_op_result_clear(mle_op_result *r)
{
    if (!r)
        return;
    free(r->id);
    json_decref(r->attrs);
    free(r->poll_token);
    mle_error_free(r->error);
    memset(r, 0, sizeof *r);
}

/* The result slot of op, emptied for the new answer; NULL when the core gave none. */
static mle_op_result *result_of(const mle_op *op, mle_op_status status)
{
    mle_op_result *r = op ? (mle_op_result *)op->core : NULL;
    if (!r)
        return NULL;
    mle_op_result_clear(r);
    r->status = status;
    r->set = 1;
    return r;
}

static mle_op_status h_op_done(const mle_host *h, const mle_op *op, const char *id,
                               mle_value *attrs)
{
    mle_op_result *r = result_of(op, MLE_OP_DONE);
    if (!r) {
        json_decref(MLE_J(attrs));
        return MLE_OP_DONE;
    }
    r->id = id ? h_strdup(h, id) : NULL;
    r->attrs = attrs ? MLE_J(attrs) : json_object();
    return MLE_OP_DONE;
}

static mle_op_status h_op_in_progress(const mle_host *h, const mle_op *op,
                                      const char *poll_token, uint32_t poll_after_ms)
{
    mle_op_result *r = result_of(op, MLE_OP_IN_PROGRESS);
    if (!r)
        return MLE_OP_IN_PROGRESS;
    r->poll_token = h_strdup(h, poll_token ? poll_token : "");
    r->poll_after_ms = poll_after_ms;
    return MLE_OP_IN_PROGRESS;
}

static mle_op_status h_op_not_found(const mle_host *h, const mle_op *op)
{
    result_of(op, MLE_OP_NOT_FOUND);
    return MLE_OP_NOT_FOUND;
}

static mle_op_status h_op_error(const mle_host *h, const mle_op *op, mle_error *err)
{
    mle_op_result *r = result_of(op, MLE_OP_ERROR);
    if (!err)
        err = mle_error_new(MLE_E_INTERNAL, "driver %s reported an error without details",
                            mle_host_driver_name(h) ? mle_host_driver_name(h) : "(unknown)");
    if (!r) {
        mle_error_free(err);
        return MLE_OP_ERROR;
    }
    if (!err->address && op->address)
        mle_error_set_address(err, op->address);
    r->error = err;
    return MLE_OP_ERROR;
}

/* ---- the table ---- */

static void fill_table(mle_host *t)
{
    *t = (mle_host){
        .struct_size = sizeof(mle_host),
        .abi_major = MLE_ABI_MAJOR,
        .abi_minor = MLE_ABI_MINOR,
        .alloc = h_alloc,
        .free = h_free,
        .strdup = h_strdup,
        .sprintf = h_sprintf,
        .log = h_log,
        .error_new = h_error_new,
        .error_set_provider = mle_error_set_provider,
        .error_set_attribute = mle_error_set_attribute,
        .error_set_hint = mle_error_set_hint,
        .error_set_retry_after = mle_error_set_retry_after,
        .error_code = h_error_code,
        .error_message = h_error_message,
        .error_retryable = mle_error_retryable,
        .error_free = mle_error_free,
        .v_null = mle_v_null,
        .v_bool = mle_v_bool,
        .v_int = mle_v_int,
        .v_real = mle_v_real,
        .v_string = mle_v_string,
        .v_stringn = mle_v_stringn,
        .v_array = mle_v_array,
        .v_object = mle_v_object,
        .v_incref = mle_v_incref,
        .v_decref = mle_v_decref,
        .v_kind = mle_v_kind,
        .v_bool_of = mle_v_bool_of,
        .v_int_of = mle_v_int_of,
        .v_real_of = mle_v_real_of,
        .v_str = mle_v_str,
        .v_len = mle_v_len,
        .v_at = mle_v_at,
        .v_append = mle_v_append,
        .v_get = mle_v_get,
        .v_set = mle_v_set,
        .v_del = mle_v_del,
        .v_next = mle_v_next,
        .v_deep_copy = mle_v_deep_copy,
        .v_equal = mle_v_equal,
        .v_parse_json = h_parse_json,
        .v_to_json = h_to_json,
        .v_parse_xml = h_parse_xml,
        .v_parse_yaml = h_parse_yaml,
        .v_to_yaml = h_to_yaml,
        .http = h_http,
        .http_response_free = h_http_response_free,
        .http_header = mle_http_header_get,
        .url_encode = h_url_encode,
        .sha256 = mle_sha256,
        .hmac_sha256 = mle_hmac_sha256,
        .hex = h_hex,
        .base64_encode = h_base64_encode,
        .base64_decode = h_base64_decode,
        .sign_pem = h_sign_pem,
        .random_bytes = mle_random_bytes,
        .secret_register = h_secret_register,
        .now_unix_ms = h_now_unix_ms,
        .monotonic_ms = h_monotonic_ms,
        .op_done = h_op_done,
        .op_in_progress = h_op_in_progress,
        .op_not_found = h_op_not_found,
        .op_error = h_op_error,
    };
}

mle_host *mle_host_new(const mle_host_services *svc, const char *driver_name)
{
    host_core *hc = calloc(1, sizeof *hc);
    if (!hc)
        return NULL;
    hc->driver_name = strdup(driver_name ? driver_name : "");
    if (!hc->driver_name) {
        free(hc);
        return NULL;
    }
    if (svc)
        hc->svc = *svc;
    fill_table(&hc->table);
    hc->table.core = hc;
    return &hc->table;
}

void mle_host_free(mle_host *h)
{
    host_core *hc = core_of(h);
    if (!hc)
        return;
    free(hc->driver_name);
    free(hc);
}

const char *mle_host_driver_name(const mle_host *h)
{
    host_core *hc = core_of(h);
    return hc ? hc->driver_name : NULL;
}
