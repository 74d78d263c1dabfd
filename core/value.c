/*
 * value.c — owns the host's v_* JSON-value functions over jansson (mle_value is json_t) and
 * the core's JSON helpers: parsing with located errors, canonical text, path lookup.
 */
#include "value.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

mle_value *mle_v_null(void)
{
    return MLE_V(json_null());
}

mle_value *mle_v_bool(int b)
{
    return MLE_V(json_boolean(b));
}

mle_value *mle_v_int(int64_t i)
{
    return MLE_V(json_integer((json_int_t)i));
}

mle_value *mle_v_real(double d)
{
    if (!isfinite(d))
        return MLE_V(json_null());
    return MLE_V(json_real(d));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when it is invalid.
 * Rejects overlong forms, surrogates and code points above U+10FFFF, as jansson does. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (len == 0 || c > 0xF4 || len > n)
        return 0;
    uint32_t cp = c & (0x3F >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Bytes that are not UTF-8 (a Latin-1 file, a binary API answer) must not make a string
 * constructor return NULL to a driver that cannot expect it: replace them with U+FFFD. */
static json_t *string_sanitized(const char *s, size_t n)
{
    char *buf = malloc(n * 3 + 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq_len((const unsigned char *)s + i, n - i);
        if (l == 0) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(buf + o, s + i, l);
        o += l;
        i += l;
    }
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j;
}

mle_value *mle_v_stringn(const char *s, size_t n)
{
    if (!s)
        return MLE_V(json_null());
    json_t *j = json_stringn(s, n);
    if (!j)
        j = string_sanitized(s, n);
    return MLE_V(j);
}

mle_value *mle_v_string(const char *s)
{
    if (!s)
        return MLE_V(json_null());
    return mle_v_stringn(s, strlen(s));
}

mle_value *mle_v_array(void)
{
    return MLE_V(json_array());
}

mle_value *mle_v_object(void)
{
    return MLE_V(json_object());
}

mle_value *mle_v_incref(mle_value *v)
{
    return MLE_V(json_incref(MLE_J(v)));
}

void mle_v_decref(mle_value *v)
{
    json_decref(MLE_J(v));
}

mle_value_kind mle_v_kind(const mle_value *v)
{
    const json_t *j = (const json_t *)v;
    if (!j)
        return MLE_V_NULL;
    switch (json_typeof(j)) {
    case JSON_OBJECT: return MLE_V_OBJECT;
    case JSON_ARRAY: return MLE_V_ARRAY;
    case JSON_STRING: return MLE_V_STRING;
    case JSON_INTEGER: return MLE_V_INT;
    case JSON_REAL: return MLE_V_REAL;
    case JSON_TRUE:
    case JSON_FALSE: return MLE_V_BOOL;
    case JSON_NULL: return MLE_V_NULL;
    }
    return MLE_V_NULL;
}

int mle_v_bool_of(const mle_value *v)
{
    return json_is_true((const json_t *)v) ? 1 : 0;
}

int64_t mle_v_int_of(const mle_value *v)
{
    const json_t *j = (const json_t *)v;
    if (json_is_integer(j))
        return (int64_t)json_integer_value(j);
    if (!json_is_real(j))
        return 0;
    double d = json_real_value(j);
    /* Out-of-range conversion is undefined behaviour in C: clamp first. */
    if (d >= 9223372036854775807.0)
        return INT64_MAX;
    if (d <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)d;
}

double mle_v_real_of(const mle_value *v)
{
    const json_t *j = (const json_t *)v;
    if (json_is_number(j))
        return json_number_value(j);
    return 0;
}

const char *mle_v_str(const mle_value *v)
{
    return json_string_value((const json_t *)v);
}

size_t mle_v_len(const mle_value *v)
{
    const json_t *j = (const json_t *)v;
    if (json_is_array(j))
        return json_array_size(j);
    if (json_is_object(j))
        return json_object_size(j);
    return 0;
}

mle_value *mle_v_at(const mle_value *arr, size_t i)
{
    return MLE_V(json_array_get((const json_t *)arr, i));
}

mle_value *mle_v_get(const mle_value *obj, const char *key)
{
    if (!key)
        return NULL;
    return MLE_V(json_object_get((const json_t *)obj, key));
}

const char *mle_v_next(const mle_value *obj, void **iter, mle_value **val)
{
    json_t *j = (json_t *)obj;
    if (val)
        *val = NULL;
    if (!json_is_object(j) || !iter)
        return NULL;
    void *it = *iter ? json_object_iter_next(j, *iter) : json_object_iter(j);
    if (!it)
        return NULL;
    *iter = it;
    if (val)
        *val = MLE_V(json_object_iter_value(it));
    return json_object_iter_key(it);
}

int mle_v_append(mle_value *arr, mle_value *item)
{
    if (!json_is_array(MLE_J(arr)) || !item) {
        json_decref(MLE_J(item));
        return -1;
    }
    return json_array_append_new(MLE_J(arr), MLE_J(item)) == 0 ? 0 : -1;
}

int mle_v_set(mle_value *obj, const char *key, mle_value *val)
{
    if (!json_is_object(MLE_J(obj)) || !key || !val) {
        json_decref(MLE_J(val));
        return -1;
    }
    return json_object_set_new(MLE_J(obj), key, MLE_J(val)) == 0 ? 0 : -1;
}

int mle_v_del(mle_value *obj, const char *key)
{
    if (!key)
        return -1;
    return json_object_del(MLE_J(obj), key) == 0 ? 0 : -1;
}

mle_value *mle_v_deep_copy(const mle_value *v)
{
    return MLE_V(json_deep_copy((const json_t *)v));
}

int mle_v_equal(const mle_value *a, const mle_value *b)
{
    if (!a || !b)
        return a == b;
    return json_equal((const json_t *)a, (const json_t *)b) ? 1 : 0;
}

json_t *mle_json_parse(const char *text, size_t len, mle_error **err)
{
    if (!text) {
        mle_fail(err, MLE_E_INVALID, "JSON: no text to parse");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j)
        mle_fail(err, MLE_E_INVALID, "JSON line %d column %d: %s", je.line, je.column,
                 je.text);
    return j;
}

char *mle_json_canonical(const json_t *v)
{
    if (!v)
        return NULL;
    return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

/* One path step: an object key, or an array index written in decimal. */
static json_t *path_step(const json_t *v, const char *seg, size_t n)
{
    if (json_is_object(v)) {
        char *key = strndup(seg, n);
        if (!key)
            return NULL;
        json_t *r = json_object_get(v, key);
        free(key);
        return r;
    }
    if (!json_is_array(v) || n == 0 || n > 18)
        return NULL;
    size_t idx = 0;
    for (size_t i = 0; i < n; i++) {
        if (seg[i] < '0' || seg[i] > '9')
            return NULL;
        idx = idx * 10 + (size_t)(seg[i] - '0');
    }
    return json_array_get(v, idx);
}

json_t *mle_json_path(const json_t *v, const char *path)
{
    if (!path || !*path)
        return (json_t *)v;
    const char *p = path;
    while (v) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        v = path_step(v, p, n);
        if (!dot)
            return (json_t *)v;
        p = dot + 1;
    }
    return NULL;
}
