/*
 * value.h — the host's JSON-value functions (the v_* entries of struct mle_host) over
 * jansson, plus a few helpers the core uses on the same values.
 *
 * Inside the core mle_value IS json_t (MLE_J/MLE_V in host.h). The mle_v_* functions have
 * exactly the signatures of the host table's entries so host.c stores them directly.
 *
 * Ownership follows driver.h: "new" returns a reference the caller owns (release with
 * mle_v_decref / json_decref); "borrowed" stays valid while the parent lives; "steals" takes
 * over the caller's reference even when the call fails. All functions accept NULL values and
 * then answer the neutral result (0, NULL, MLE_V_NULL). Thread-safe as jansson is: distinct
 * values may be used from distinct threads; one value is not locked.
 */
#ifndef MLE_CORE_VALUE_H
#define MLE_CORE_VALUE_H

#include <jansson.h>
#include <mlengine/driver.h>
#include "error.h"

/* --- constructors: each returns a new value (caller owns) --- */
mle_value *mle_v_null(void);
mle_value *mle_v_bool(int b);
mle_value *mle_v_int(int64_t i);
/* A non-finite d (NaN, ±inf) has no JSON form: it gives null. */
mle_value *mle_v_real(double d);
/* Copies s; NULL s gives null. Invalid UTF-8 sequences are replaced by U+FFFD, so the
 * result is never NULL for a non-NULL s (JSON strings must be UTF-8). */
mle_value *mle_v_string(const char *s);
/* As mle_v_string for n bytes (may contain NUL). NULL s gives null. */
mle_value *mle_v_stringn(const char *s, size_t n);
mle_value *mle_v_array(void);
mle_value *mle_v_object(void);

/* --- references --- */
mle_value *mle_v_incref(mle_value *v); /* returns v */
void mle_v_decref(mle_value *v);       /* NULL is fine */

/* --- reading --- */
mle_value_kind mle_v_kind(const mle_value *v); /* NULL reads as MLE_V_NULL */
int mle_v_bool_of(const mle_value *v);         /* 1 for true, else 0 */
int64_t mle_v_int_of(const mle_value *v);      /* INT, or REAL truncated; else 0 */
double mle_v_real_of(const mle_value *v);      /* REAL or INT; else 0 */
const char *mle_v_str(const mle_value *v);     /* borrowed; NULL when not a string */
size_t mle_v_len(const mle_value *v);          /* array length or object size; else 0 */
mle_value *mle_v_at(const mle_value *arr, size_t i);         /* borrowed, or NULL */
mle_value *mle_v_get(const mle_value *obj, const char *key); /* borrowed, or NULL */
/* Object iteration in insertion order: start with *iter = NULL; returns the key (borrowed)
 * and sets *val (borrowed), or NULL at the end. Do not modify obj while iterating. */
const char *mle_v_next(const mle_value *obj, void **iter, mle_value **val);

/* --- writing: 0 on success, -1 when the container has the wrong kind --- */
int mle_v_append(mle_value *arr, mle_value *item);            /* steals item */
int mle_v_set(mle_value *obj, const char *key, mle_value *val); /* steals val */
int mle_v_del(mle_value *obj, const char *key);                 /* -1 when absent */

/* --- whole values --- */
mle_value *mle_v_deep_copy(const mle_value *v); /* new, or NULL for NULL */
int mle_v_equal(const mle_value *a, const mle_value *b); /* 1 when equal (NULL == NULL) */

/* Parse JSON text (any value at the top, NUL bytes in strings allowed). New value (caller
 * owns) or NULL with *err (MLE_E_INVALID "JSON line L column C: problem"). */
json_t *mle_json_parse(const char *text, size_t len, mle_error **err);

/* Compact JSON with sorted keys: the canonical form for hashing and comparing. Any value may
 * be at the top. Caller frees with free(); NULL only for a NULL v. */
char *mle_json_canonical(const json_t *v);

/* The value at a dot-separated path inside v: object keys, and 0-based decimal indexes for
 * arrays ("names.0", "status.conditions.2.type"). An empty path or NULL is v itself.
 * Borrowed, or NULL when any step is missing. (The "$ref" marker paths of lua_rt.h.) */
json_t *mle_json_path(const json_t *v, const char *path);

#endif
