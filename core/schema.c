/*
 * schema.c — owns validation, defaulting, redaction and JSON Schema export of resource
 * attribute tables. The tables are the drivers' static data; nothing here allocates them.
 */
#include "schema.h"

#include <stdlib.h>
#include <string.h>

#include "lua_rt.h"

const mle_attr_schema *mle_schema_attr(const mle_resource_type *t, const char *name)
{
    for (size_t i = 0; i < t->n_attrs; i++)
        if (strcmp(t->attrs[i].name, name) == 0)
            return &t->attrs[i];
    return NULL;
}

int mle_schema_is_sensitive(const mle_resource_type *t, const char *name)
{
    const mle_attr_schema *a = mle_schema_attr(t, name);
    return a && (a->flags & MLE_A_SENSITIVE);
}

int mle_schema_is_secret(const mle_resource_type *t, const json_t *extra, const char *name)
{
    if (t && mle_schema_is_sensitive(t, name))
        return 1;
    size_t i;
    json_t *x;
    json_array_foreach(extra, i, x) if (strcmp(json_string_value(x), name) == 0) return 1;
    return 0;
}

size_t mle_levenshtein(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    size_t *row = malloc((m + 1) * sizeof(size_t));
    if (!row)
        abort();
    for (size_t j = 0; j <= m; j++)
        row[j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    size_t d = row[m];
    free(row);
    return d;
}

const char *mle_schema_type_name(mle_attr_type t, mle_attr_type elem, char *buf, size_t n)
{
    static const char *names[] = {"?", "string", "int", "number", "bool", "list", "map", "any"};
    if (t < MLE_T_STRING || t > MLE_T_ANY)
        return "?";
    if (t != MLE_T_LIST && t != MLE_T_MAP)
        return names[t];
    snprintf(buf, n, "%s(%s)", names[t], elem ? names[elem] : "any");
    return buf;
}

static const char *closest_attr(const mle_resource_type *t, const char *name)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < t->n_attrs; i++) {
        if (!(t->attrs[i].flags & (MLE_A_REQUIRED | MLE_A_OPTIONAL)))
            continue;
        size_t d = mle_levenshtein(name, t->attrs[i].name);
        if (d < best_d) {
            best_d = d;
            best = t->attrs[i].name;
        }
    }
    return best && best_d <= strlen(name) / 3 + 1 ? best : NULL;
}

/* Does a known JSON value fit the type? Markers fit anything (checked once resolved). */
static int fits(mle_attr_type t, mle_attr_type elem, const json_t *v)
{
    if (mle_marker_is_ref(v) || mle_marker_is_expr(v))
        return 1;
    if (json_is_object(v) && json_object_get(v, "$sensitive") && json_object_size(v) == 1)
        return fits(t, elem, json_object_get(v, "$sensitive"));
    switch (t) {
    case MLE_T_STRING:
        return json_is_string(v);
    case MLE_T_INT:
        return json_is_integer(v);
    case MLE_T_NUMBER:
        return json_is_number(v);
    case MLE_T_BOOL:
        return json_is_boolean(v);
    case MLE_T_LIST: {
        if (!json_is_array(v))
            return 0;
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) if (elem && !fits(elem, 0, e)) return 0;
        return 1;
    }
    case MLE_T_MAP: {
        if (!json_is_object(v))
            return 0;
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)v, k, e) if (elem && !fits(elem, 0, e)) return 0;
        return 1;
    }
    case MLE_T_ANY:
        return 1;
    }
    return 0;
}

static int check_one(const mle_resource_type *t, const char *key, const json_t *v,
                     mle_error **err)
{
    const mle_attr_schema *a = mle_schema_attr(t, key);
    if (!a) {
        const char *near = closest_attr(t, key);
        int rc = mle_fail(err, MLE_E_INVALID, "%s has no attribute \"%s\"%s%s%s", t->name, key,
                          near ? " (did you mean \"" : "", near ? near : "", near ? "\"?)" : "");
        if (err)
            mle_error_set_attribute(*err, key);
        return rc;
    }
    if (!(a->flags & (MLE_A_REQUIRED | MLE_A_OPTIONAL))) {
        int rc = mle_fail(err, MLE_E_INVALID,
                          "%s.%s is computed by the provider and cannot be set", t->name, key);
        if (err)
            mle_error_set_attribute(*err, key);
        return rc;
    }
    if (!json_is_null(v) && !fits(a->type, a->elem_type, v)) {
        char buf[32];
        int rc = mle_fail(err, MLE_E_INVALID, "%s.%s must be %s", t->name, key,
                          mle_schema_type_name(a->type, a->elem_type, buf, sizeof(buf)));
        if (err)
            mle_error_set_attribute(*err, key);
        return rc;
    }
    return 0;
}

int mle_schema_validate(const mle_resource_type *t, const json_t *config, mle_error **err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)config, key, v) if (check_one(t, key, v, err) != 0) return -1;
    for (size_t i = 0; i < t->n_attrs; i++) {
        const mle_attr_schema *a = &t->attrs[i];
        if (!(a->flags & MLE_A_REQUIRED))
            continue;
        json_t *given = json_object_get(config, a->name);
        if (!given || json_is_null(given)) {
            int rc = mle_fail(err, MLE_E_INVALID, "%s requires attribute \"%s\"", t->name,
                              a->name);
            if (err) {
                mle_error_set_attribute(*err, a->name);
                if (a->description)
                    mle_error_set_hint(*err, a->description);
            }
            return rc;
        }
    }
    return 0;
}

void mle_schema_apply_defaults(const mle_resource_type *t, json_t *config)
{
    for (size_t i = 0; i < t->n_attrs; i++) {
        const mle_attr_schema *a = &t->attrs[i];
        if (!a->default_json || json_object_get(config, a->name))
            continue;
        json_t *def = json_loads(a->default_json, JSON_DECODE_ANY, NULL);
        if (def)
            json_object_set_new(config, a->name, def);
    }
}

json_t *mle_schema_redact(const mle_resource_type *t, const json_t *attrs)
{
    json_t *out = json_deep_copy(attrs);
    if (!json_is_object(out))
        return out;
    for (size_t i = 0; i < t->n_attrs; i++)
        if ((t->attrs[i].flags & MLE_A_SENSITIVE) && json_object_get(out, t->attrs[i].name))
            json_object_set_new(out, t->attrs[i].name, json_string("(sensitive)"));
    return out;
}

static json_t *type_schema(mle_attr_type t, mle_attr_type elem)
{
    switch (t) {
    case MLE_T_STRING:
        return json_pack("{s:s}", "type", "string");
    case MLE_T_INT:
        return json_pack("{s:s}", "type", "integer");
    case MLE_T_NUMBER:
        return json_pack("{s:s}", "type", "number");
    case MLE_T_BOOL:
        return json_pack("{s:s}", "type", "boolean");
    case MLE_T_LIST:
        return json_pack("{s:s,s:o}", "type", "array", "items",
                         elem ? type_schema(elem, 0) : json_object());
    case MLE_T_MAP:
        return json_pack("{s:s,s:o}", "type", "object", "additionalProperties",
                         elem ? type_schema(elem, 0) : json_object());
    case MLE_T_ANY:
        return json_object();
    }
    return json_object();
}

static json_t *attr_schema(const mle_attr_schema *a)
{
    json_t *s = type_schema(a->type, a->elem_type);
    if (a->description)
        json_object_set_new(s, "description", json_string(a->description));
    if (a->default_json) {
        json_t *d = json_loads(a->default_json, JSON_DECODE_ANY, NULL);
        if (d)
            json_object_set_new(s, "default", d);
    }
    if (!(a->flags & (MLE_A_REQUIRED | MLE_A_OPTIONAL)))
        json_object_set_new(s, "readOnly", json_true());
    if (a->flags & MLE_A_SENSITIVE)
        json_object_set_new(s, "writeOnly", json_true());
    if (a->flags & MLE_A_FORCE_NEW)
        json_object_set_new(s, "x-mlengine-force-new", json_true());
    if (a->flags & MLE_A_SENSITIVE)
        json_object_set_new(s, "x-mlengine-sensitive", json_true());
    return s;
}

static json_t *resource_schema(const mle_resource_type *t)
{
    json_t *props = json_object(), *req = json_array();
    for (size_t i = 0; i < t->n_attrs; i++) {
        json_object_set_new(props, t->attrs[i].name, attr_schema(&t->attrs[i]));
        if (t->attrs[i].flags & MLE_A_REQUIRED)
            json_array_append_new(req, json_string(t->attrs[i].name));
    }
    json_t *s = json_pack("{s:s,s:o,s:o,s:b}", "type", "object", "properties", props,
                          "required", req, "additionalProperties", 0);
    if (t->description)
        json_object_set_new(s, "description", json_string(t->description));
    if (t->flags & MLE_RT_DATA_SOURCE)
        json_object_set_new(s, "x-mlengine-data-source", json_true());
    return s;
}

json_t *mle_schema_export(const mle_driver *d)
{
    json_t *defs = json_object();
    for (const mle_resource_type *const *t = d->types; *t; t++)
        json_object_set_new(defs, (*t)->name, resource_schema(*t));
    json_t *clouds = json_array();
    for (const char *const *c = d->clouds; c && *c; c++)
        json_array_append_new(clouds, json_string(*c));
    char id[256];
    snprintf(id, sizeof(id), "urn:mlengine:driver:%s", d->name);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o}", "$schema",
                     "https://json-schema.org/draft/2020-12/schema", "$id", id, "title",
                     d->name, "description", d->description ? d->description : "",
                     "x-mlengine-driver-version", d->version ? d->version : "",
                     "x-mlengine-clouds", clouds, "$defs", defs);
}
