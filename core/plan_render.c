/*
 * plan_render.c — owns how a plan is shown: the human diff and the JSON form
 * (schemas/plan.schema.json). Both redact secrets; neither changes the plan.
 */
#include <string.h>

#include "plan.h"
#include "schema.h"

static int item_attr_sensitive(mle_engine *e, const mle_plan_item *it, const char *attr)
{
    return mle_schema_is_secret(mle_registry_type(e->reg, it->type, NULL), it->sensitive, attr);
}

/* Display form of a value: JSON text, "(known after apply)" or "(sensitive)". Caller frees. */
static char *show(const json_t *v, int sensitive)
{
    if (sensitive)
        return strdup("(sensitive)");
    if (!v)
        return strdup("null");
    if (mle_marker_contains(v))
        return strdup("(known after apply)");
    return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static int json_has(const json_t *arr, const char *s)
{
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) if (strcmp(json_string_value(x), s) == 0) return 1;
    return 0;
}

static size_t key_width(const json_t *obj)
{
    size_t w = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) if (strlen(k) > w) w = strlen(k);
    return w;
}

/* A value the user left at the schema's default says nothing to a reviewer. */
static int is_default(const mle_resource_type *rt, const char *k, const json_t *v)
{
    const mle_attr_schema *a = rt ? mle_schema_attr(rt, k) : NULL;
    if (!a || !a->default_json)
        return 0;
    json_t *d = json_loads(a->default_json, JSON_DECODE_ANY, NULL);
    int same = d && json_equal(d, (json_t *)v);
    json_decref(d);
    return same;
}

static void print_create(mle_engine *e, const mle_plan_item *it, FILE *f)
{
    size_t w = key_width(it->config);
    const mle_resource_type *rt = mle_registry_type(e->reg, it->type, NULL);
    const char *k;
    json_t *v;
    json_object_foreach(it->config, k, v) {
        if (is_default(rt, k, v))
            continue;
        char *s = show(v, item_attr_sensitive(e, it, k));
        fprintf(f, "      + %-*s = %s\n", (int)w, k, s);
        free(s);
    }
    for (size_t i = 0; rt && i < rt->n_attrs; i++) {
        const mle_attr_schema *a = &rt->attrs[i];
        if ((a->flags & MLE_A_COMPUTED) && !json_object_get(it->config, a->name))
            fprintf(f, "      + %-*s = (known after apply)\n", (int)w, a->name);
    }
}

static void print_changes(mle_engine *e, const mle_plan_item *it, FILE *f)
{
    size_t w = 0, i;
    json_t *x;
    json_array_foreach(it->changed, i, x) if (strlen(json_string_value(x)) > w)
        w = strlen(json_string_value(x));
    json_array_foreach(it->changed, i, x) {
        const char *k = json_string_value(x);
        int sens = item_attr_sensitive(e, it, k);
        char *before = show(json_object_get(it->before, k), sens);
        json_t *now = json_object_get(it->config, k);
        char *after = now ? show(now, sens) : strdup("null");
        fprintf(f, "      ~ %-*s = %s -> %s%s\n", (int)w, k, before, after,
                json_has(it->force, k) ? "   # forces replacement" : "");
        free(before);
        free(after);
    }
}

static void print_item(mle_engine *e, const mle_plan_item *it, FILE *f)
{
    switch (it->action) {
    case MLE_ACT_CREATE:
        fprintf(f, "  + %s (create)\n", it->address);
        print_create(e, it, f);
        break;
    case MLE_ACT_UPDATE:
        fprintf(f, "  ~ %s (update in place)\n", it->address);
        print_changes(e, it, f);
        break;
    case MLE_ACT_REPLACE:
        fprintf(f, "  %s %s (replace%s)\n", it->cbd ? "+/-" : "-/+", it->address,
                it->cbd ? ", create before destroy" : "");
        print_changes(e, it, f);
        break;
    case MLE_ACT_DELETE:
        fprintf(f, "  - %s (delete)\n", it->address);
        break;
    case MLE_ACT_READ:
        fprintf(f, "  <= %s (read during apply)\n", it->address);
        break;
    case MLE_ACT_ADOPT:
        fprintf(f, "  ? %s (finish interrupted create)\n", it->address);
        break;
    case MLE_ACT_RESUME:
        fprintf(f, "  ? %s (resume interrupted operation)\n", it->address);
        break;
    case MLE_ACT_NOOP:
        return;
    }
    fputc('\n', f);
}

static void print_drift(mle_engine *e, const mle_plan *p, FILE *f)
{
    if (json_array_size(p->drift) == 0)
        return;
    fprintf(f, "Changed outside mlengine (found by refresh):\n\n");
    size_t i;
    json_t *d;
    json_array_foreach(p->drift, i, d) {
        const char *addr = json_string_value(json_object_get(d, "address"));
        if (json_is_true(json_object_get(d, "deleted"))) {
            fprintf(f, "  ! %s was deleted outside mlengine\n\n", addr);
            continue;
        }
        fprintf(f, "  ! %s changed outside mlengine\n", addr);
        json_t *known = json_object_get(e->known, addr);
        const mle_resource_type *rt = mle_registry_type(
            e->reg, json_string_value(json_object_get(known, "type")), NULL);
        const char *k;
        json_t *ch;
        json_object_foreach(json_object_get(d, "changes"), k, ch) {
            int sens = rt && mle_schema_is_sensitive(rt, k);
            char *a = show(json_array_get(ch, 0), sens), *b = show(json_array_get(ch, 1), sens);
            fprintf(f, "      ~ %s = %s -> %s\n", k, a, b);
            free(a);
            free(b);
        }
        fputc('\n', f);
    }
}

void mle_plan_print(mle_engine *e, const mle_plan *p, FILE *f)
{
    print_drift(e, p, f);
    size_t n[MLE_ACT_RESUME + 1] = {0};
    for (size_t i = 0; i < p->n; i++)
        n[p->items[i].action]++;
    if (mle_plan_changes(p) == 0) {
        fprintf(f, "No changes. The infrastructure matches the stack (%zu resources).\n",
                n[MLE_ACT_NOOP]);
        return;
    }
    fprintf(f, "mlengine will perform these actions:\n\n");
    for (size_t i = 0; i < p->n; i++)
        print_item(e, &p->items[i], f);
    fprintf(f, "Plan: %zu to create, %zu to update, %zu to replace, %zu to delete",
            n[MLE_ACT_CREATE], n[MLE_ACT_UPDATE], n[MLE_ACT_REPLACE], n[MLE_ACT_DELETE]);
    if (n[MLE_ACT_READ])
        fprintf(f, ", %zu to read", n[MLE_ACT_READ]);
    fprintf(f, ".\n");
}

/* Attributes for JSON output: secrets redacted, unknowns as null with a list of them. */
static json_t *json_attrs(mle_engine *e, const mle_plan_item *it, const json_t *attrs,
                          json_t *unknown_out)
{
    if (!attrs || json_is_null(attrs))
        return json_null();
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)attrs, k, v) {
        if (item_attr_sensitive(e, it, k))
            json_object_set_new(out, k, json_string("(sensitive)"));
        else if (mle_marker_contains(v)) {
            json_object_set_new(out, k, json_null());
            if (unknown_out)
                json_array_append_new(unknown_out, json_string(k));
        } else
            json_object_set(out, k, v);
    }
    return out;
}

static json_t *item_json(mle_engine *e, const mle_plan_item *it)
{
    json_t *unknown = json_array();
    json_t *j = json_pack("{s:s,s:s,s:s,s:b,s:o,s:o,s:O,s:O,s:o,s:O}", "address", it->address,
                          "type", it->type, "action", mle_action_name(it->action), "data_source",
                          it->data, "before", json_attrs(e, it, it->before, NULL), "after",
                          it->action == MLE_ACT_DELETE ? json_null()
                                                       : json_attrs(e, it, it->config, unknown),
                          "changed", it->changed, "replace_because", it->force, "after_unknown",
                          unknown, "depends_on", it->deps);
    if (it->id)
        json_object_set_new(j, "id", json_string(it->id));
    return j;
}

json_t *mle_plan_json(mle_engine *e, const mle_plan *p)
{
    json_t *changes = json_array();
    size_t n[MLE_ACT_RESUME + 1] = {0};
    for (size_t i = 0; i < p->n; i++) {
        n[p->items[i].action]++;
        json_array_append_new(changes, item_json(e, &p->items[i]));
    }
    json_t *outputs = json_object();
    const char *k;
    json_t *o;
    json_object_foreach(p->outputs, k, o) {
        int sens = json_is_true(json_object_get(o, "sensitive"));
        json_t *v = json_object_get(o, "value");
        json_object_set_new(outputs, k,
                            json_pack("{s:b,s:o}", "sensitive", sens, "value",
                                      sens ? json_string("(sensitive)")
                                           : (mle_marker_contains(v) ? json_null()
                                                                     : json_deep_copy(v))));
    }
    return json_pack("{s:i,s:s,s:I,s:b,s:o,s:O,s:o,s:{s:I,s:I,s:I,s:I,s:I,s:I}}",
                     "format_version", 1, "lineage", p->lineage, "serial",
                     (json_int_t)p->serial, "destroy", p->destroy, "changes", changes, "drift",
                     p->drift, "outputs", outputs, "summary", "create",
                     (json_int_t)n[MLE_ACT_CREATE], "update", (json_int_t)n[MLE_ACT_UPDATE],
                     "replace", (json_int_t)n[MLE_ACT_REPLACE], "delete",
                     (json_int_t)n[MLE_ACT_DELETE], "read", (json_int_t)n[MLE_ACT_READ],
                     "no_op", (json_int_t)n[MLE_ACT_NOOP]);
}
