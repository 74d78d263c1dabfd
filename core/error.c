/*
 * error.c — owns the core's error object (struct mle_error): creation, decoration with
 * provider details, hints and retry-after, the retryable rule, and the one-line rendering.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* OOM inside error reporting has no better recovery than stopping: aborting is the rule the
 * header promises ("never returns NULL"). */
static char *err_strdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static char *err_vasprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt ? fmt : "", ap) < 0)
        abort();
    return s;
}

static void replace_str(char **slot, const char *s)
{
    char *d = err_strdup(s);
    free(*slot);
    *slot = d;
}

mle_error *mle_error_newv(mle_error_code code, const char *fmt, va_list ap)
{
    mle_error *e = calloc(1, sizeof *e);
    if (!e)
        abort();
    e->code = code;
    e->message = err_vasprintf(fmt, ap);
    return e;
}

mle_error *mle_error_new(mle_error_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mle_error *e = mle_error_newv(code, fmt, ap);
    va_end(ap);
    return e;
}

void mle_error_free(mle_error *e)
{
    if (!e)
        return;
    free(e->message);
    free(e->hint);
    free(e->attribute);
    free(e->address);
    free(e->provider_code);
    free(e->provider_message);
    free(e);
}

int mle_fail(mle_error **out, mle_error_code code, const char *fmt, ...)
{
    if (!out)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    *out = mle_error_newv(code, fmt, ap);
    va_end(ap);
    return -1;
}

void mle_error_prefix(mle_error *e, const char *fmt, ...)
{
    if (!e)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *prefix = err_vasprintf(fmt, ap);
    va_end(ap);
    char *msg = NULL;
    if (asprintf(&msg, "%s%s", prefix, e->message ? e->message : "") < 0)
        abort();
    free(prefix);
    free(e->message);
    e->message = msg;
}

void mle_error_set_hint(mle_error *e, const char *hint)
{
    if (e)
        replace_str(&e->hint, hint);
}

void mle_error_set_attribute(mle_error *e, const char *attribute)
{
    if (e)
        replace_str(&e->attribute, attribute);
}

void mle_error_set_address(mle_error *e, const char *address)
{
    if (e)
        replace_str(&e->address, address);
}

void mle_error_set_provider(mle_error *e, long http_status, const char *provider_code,
                            const char *provider_message)
{
    if (!e)
        return;
    e->http_status = http_status;
    replace_str(&e->provider_code, provider_code);
    replace_str(&e->provider_message, provider_message);
}

void mle_error_set_retry_after(mle_error *e, uint32_t ms)
{
    if (!e)
        return;
    e->retry_after_ms = ms;
    e->has_retry_after = 1;
}

int mle_error_retryable(const mle_error *e)
{
    if (!e)
        return 0;
    return e->code == MLE_E_THROTTLED || e->code == MLE_E_TRANSIENT || e->has_retry_after;
}

const char *mle_error_code_name(mle_error_code code)
{
    switch (code) {
    case MLE_OK: return "ok";
    case MLE_E_INTERNAL: return "internal";
    case MLE_E_INVALID: return "invalid";
    case MLE_E_NOT_FOUND: return "not_found";
    case MLE_E_AUTH: return "auth";
    case MLE_E_PERMISSION: return "permission";
    case MLE_E_CONFLICT: return "conflict";
    case MLE_E_THROTTLED: return "throttled";
    case MLE_E_TRANSIENT: return "transient";
    case MLE_E_TIMEOUT: return "timeout";
    case MLE_E_PROVIDER: return "provider";
    case MLE_E_IO: return "io";
    case MLE_E_UNSUPPORTED: return "unsupported";
    }
    return "unknown";
}

/* The "(provider: CODE: msg, HTTP 400)" part, or NULL when the error has no provider data. */
static char *format_provider(const mle_error *e)
{
    const char *code = e->provider_code;
    const char *msg = e->provider_message;
    if (!code && !msg && e->http_status == 0)
        return NULL;
    char *out = NULL;
    char status[32] = "";
    if (e->http_status)
        snprintf(status, sizeof status, "HTTP %ld", e->http_status);
    int r = asprintf(&out, " (provider: %s%s%s%s%s)", code ? code : "",
                     code && msg ? ": " : "", msg ? msg : "",
                     (code || msg) && e->http_status ? ", " : "", status);
    if (r < 0)
        abort();
    return out;
}

char *mle_error_format(const mle_error *e)
{
    if (!e)
        return err_strdup("(no error)");
    char *prov = format_provider(e);
    char *out = NULL;
    int r = asprintf(&out, "%s%s%s%s%s%s%s", e->address ? "[" : "",
                     e->address ? e->address : "", e->address ? "] " : "",
                     e->message ? e->message : mle_error_code_name(e->code), prov ? prov : "",
                     e->attribute ? " attribute: " : "", e->attribute ? e->attribute : "");
    free(prov);
    if (r < 0)
        abort();
    if (!e->hint)
        return out;
    char *with_hint = NULL;
    if (asprintf(&with_hint, "%s\n  hint: %s", out, e->hint) < 0)
        abort();
    free(out);
    return with_hint;
}
