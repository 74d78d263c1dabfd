/*
 * plan_file.c — owns saved plans (`plan -out FILE`, `apply FILE`): what is written, with
 * every secret sealed under the state key, and the checks on loading — the right format,
 * the same state (lineage) and a state that has not moved since (serial).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plan.h"
#include "schema.h"
#include "secrets.h"

#define PLAN_MAGIC "mlengine-plan"
#define PLAN_VERSION 1

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* Seal every attribute of obj that is secret for this item (schema or origin). */
static json_t *sealed_attrs(mle_engine *e, const mle_plan_item *it, const json_t *obj,
                            mle_error **err)
{
    if (!obj || json_is_null(obj))
        return json_null();
    json_t *a = NULL, *unused = NULL;
    if (mle_secrets_seal_resource(e, it->type, it->sensitive, obj, NULL, &a, &unused, err) != 0)
        return NULL;
    return a;
}

static json_t *item_to_json(mle_engine *e, const mle_plan_item *it, mle_error **err)
{
    json_t *before = sealed_attrs(e, it, it->before, err);
    json_t *config = before ? sealed_attrs(e, it, it->config, err) : NULL;
    if (!before || !config) {
        json_decref(before);
        return NULL;
    }
    return json_pack("{s:s,s:s,s:s,s:i,s:b,s:b,s:o,s:o,s:o,s:O,s:O,s:O,s:O,s:O*}", "address",
                     it->address, "type", it->type, "driver", it->driver, "action",
                     (int)it->action, "data", it->data, "cbd", it->cbd, "id", str_or_null(it->id),
                     "before", before, "config", config, "changed", it->changed, "force",
                     it->force, "sensitive", it->sensitive, "deps", it->deps, "resume",
                     it->resume);
}

/* Driver options may hold credentials, data sources secrets: each is sealed as one blob. */
static json_t *sealed_blob(mle_engine *e, const json_t *v, const char *aad, mle_error **err)
{
    if (!v || json_object_size(v) == 0)
        return json_object();
    return mle_secrets_seal(e, v, aad, err);
}

static json_t *sealed_outputs(mle_engine *e, const mle_plan *p, mle_error **err)
{
    if (!p->outputs)
        return json_object();
    return mle_secrets_seal_outputs(e, p->outputs, err);
}

static int write_private(const char *path, const char *text, mle_error **err)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0)
        abort();
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        int rc = mle_fail(err, MLE_E_IO, "cannot write plan file %s: %s", path, strerror(errno));
        free(tmp);
        return rc;
    }
    size_t n = strlen(text);
    int ok = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        free(tmp);
        return mle_fail(err, MLE_E_IO, "cannot write plan file %s: %s", path, strerror(errno));
    }
    free(tmp);
    return 0;
}

int mle_plan_save(mle_engine *e, const mle_plan *p, const char *path, mle_error **err)
{
    json_t *items = json_array();
    int rc = 0;
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        json_t *j = item_to_json(e, &p->items[i], err);
        if (!j) {
            rc = -1;
            if (err && !*err)
                mle_fail(err, MLE_E_INTERNAL, "plan item %s cannot be saved as JSON",
                         p->items[i].address ? p->items[i].address : "?");
        } else {
            json_array_append_new(items, j);
        }
    }
    json_t *drivers =
        rc == 0 ? sealed_blob(e, e->stack ? e->stack->drivers : NULL, "plan#drivers", err)
                : NULL;
    json_t *outputs = drivers ? sealed_outputs(e, p, err) : NULL;
    json_t *data = outputs ? sealed_blob(e, p->data, "plan#data", err) : NULL;
    if (!data) {
        json_decref(items);
        json_decref(drivers);
        json_decref(outputs);
        return -1;
    }
    /* The serial is read now: sealing may have recorded the key check in state. */
    json_t *doc = json_pack("{s:s,s:i,s:s,s:I,s:s,s:s?,s:b,s:o,s:o,s:o,s:o,s:O}", "format",
                            PLAN_MAGIC, "version", PLAN_VERSION, "lineage", p->lineage, "serial",
                            (json_int_t)mle_state_serial(e->state), "state",
                            mle_state_path(e->state), "stack", e->stack_path, "destroy",
                            p->destroy, "items", items, "drivers", drivers, "outputs", outputs,
                            "data", data, "drift", p->drift);
    /* "format" first so `apply` can recognise a plan file from its first bytes. */
    char *text = doc ? json_dumps(doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
    if (!text) {
        json_decref(doc);
        return mle_fail(err, MLE_E_INTERNAL, "the plan cannot be saved as JSON");
    }
    rc = write_private(path, text, err);
    free(text);
    json_decref(doc);
    return rc;
}

/* ---------------------------------------------------------------- loading */

static json_t *read_plan_doc(const char *path, mle_error **err)
{
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc) {
        mle_fail(err, MLE_E_INVALID, "%s is not a readable plan file: %s (line %d)", path,
                 je.text, je.line);
        return NULL;
    }
    const char *magic = json_string_value(json_object_get(doc, "format"));
    if (!magic || strcmp(magic, PLAN_MAGIC) != 0) {
        json_decref(doc);
        mle_fail(err, MLE_E_INVALID, "%s is not an mlengine plan file", path);
        return NULL;
    }
    json_int_t v = json_integer_value(json_object_get(doc, "version"));
    if (v != PLAN_VERSION) {
        json_decref(doc);
        mle_fail(err, MLE_E_INVALID, "%s is a plan of format %lld; this mlengine reads format %d",
                 path, (long long)v, PLAN_VERSION);
        return NULL;
    }
    return doc;
}

int mle_plan_peek_state(const char *path, char **state_path, mle_error **err)
{
    json_t *doc = read_plan_doc(path, err);
    if (!doc)
        return -1;
    const char *s = json_string_value(json_object_get(doc, "state"));
    if (!s) {
        json_decref(doc);
        return mle_fail(err, MLE_E_INVALID, "%s: plan file names no state", path);
    }
    *state_path = strdup(s);
    json_decref(doc);
    return 0;
}

static json_t *open_blob(mle_engine *e, const json_t *v, const char *aad, mle_error **err)
{
    if (!mle_secrets_is_sealed(v))
        return v ? json_deep_copy(v) : json_object();
    return mle_secrets_open(e, v, aad, err);
}

static char *dup_str(const json_t *v)
{
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

/* A list of names (attributes, addresses): absent is empty, anything else is refused. */
static json_t *names_from_json(const json_t *j, const char *key, const char *address,
                               mle_error **err)
{
    const json_t *v = json_object_get(j, key);
    if (!v)
        return json_array();
    int ok = json_is_array(v);
    for (size_t i = 0; ok && i < json_array_size(v); i++)
        ok = json_is_string(json_array_get(v, i));
    if (!ok) {
        mle_fail(err, MLE_E_INVALID, "plan file item %s: \"%s\" is not a list of names",
                 address, key);
        return NULL;
    }
    return json_incref((json_t *)v);
}

static int item_from_json(mle_engine *e, const json_t *j, mle_plan_item *it, mle_error **err)
{
    memset(it, 0, sizeof(*it));
    it->address = dup_str(json_object_get(j, "address"));
    it->type = dup_str(json_object_get(j, "type"));
    it->driver = dup_str(json_object_get(j, "driver"));
    if (!it->address || !it->type || !it->driver)
        return mle_fail(err, MLE_E_INVALID, "plan file item without address, type or driver");
    it->action = (mle_action)json_integer_value(json_object_get(j, "action"));
    if (it->action > MLE_ACT_RESUME)
        return mle_fail(err, MLE_E_INVALID, "plan file item %s has an unknown action",
                        it->address);
    it->data = json_is_true(json_object_get(j, "data"));
    it->cbd = json_is_true(json_object_get(j, "cbd"));
    it->id = dup_str(json_object_get(j, "id"));
    if (!(it->changed = names_from_json(j, "changed", it->address, err)) ||
        !(it->force = names_from_json(j, "force", it->address, err)) ||
        !(it->sensitive = names_from_json(j, "sensitive", it->address, err)) ||
        !(it->deps = names_from_json(j, "deps", it->address, err)))
        return -1;
    json_t *r = json_object_get(j, "resume");
    it->resume = json_is_object(r) ? json_incref(r) : NULL;
    mle_state_resource tmp = {.address = it->address, .type = it->type};
    json_t *b = json_object_get(j, "before"), *c = json_object_get(j, "config");
    tmp.attrs = json_is_object(b) ? json_deep_copy(b) : NULL;
    tmp.config = json_is_object(c) ? json_deep_copy(c) : NULL;
    int rc = mle_secrets_open_resource(e, &tmp, err);
    it->before = tmp.attrs;
    it->config = tmp.config;
    return rc;
}

static int check_fresh(mle_engine *e, const json_t *doc, const char *path, mle_error **err)
{
    const char *lineage = json_string_value(json_object_get(doc, "lineage"));
    json_int_t serial = json_integer_value(json_object_get(doc, "serial"));
    if (!lineage || strcmp(lineage, mle_state_lineage(e->state)) != 0)
        return mle_fail(err, MLE_E_CONFLICT,
                        "%s was planned against another state (lineage %s, this state is %s): "
                        "make a new plan",
                        path, lineage ? lineage : "?", mle_state_lineage(e->state));
    if (serial != mle_state_serial(e->state)) {
        mle_fail(err, MLE_E_CONFLICT,
                 "the state changed since %s was planned (serial %lld, now %lld): the plan "
                 "may no longer be right",
                 path, (long long)serial, (long long)mle_state_serial(e->state));
        if (err)
            mle_error_set_hint(*err, "run `mlengine plan -out FILE` again and apply the new "
                                     "plan");
        return -1;
    }
    return 0;
}

/* What references resolve against: state attributes, then data sources read at plan. */
static int know_from_state(mle_engine *e, const json_t *data, mle_error **err)
{
    mle_state_resource *rs = NULL;
    size_t n = 0;
    if (mle_state_list(e->state, &rs, &n, err) != 0)
        return -1;
    json_object_clear(e->known);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (rs[i].status == MLE_RS_PENDING_CREATE)
            continue;
        rc = mle_secrets_open_resource(e, &rs[i], err);
        if (rc == 0)
            mle_engine_know(e, rs[i].address, rs[i].type, rs[i].attrs, NULL);
    }
    mle_state_resources_free(rs, n);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)data, k, v) {
        const char *type = strchr(k, '.') ? strchr(k, '.') + 1 : k;
        char *t = strdup(type);
        char *dot = strchr(t, '.');
        if (dot)
            *dot = 0;
        mle_engine_know(e, k, t, v, NULL);
        free(t);
    }
    return rc;
}

/* The parts apply walks without further checks must have the shape plan_save gives them. */
static int check_shape(const json_t *doc, const char *path, mle_error **err)
{
    const json_t *items = json_object_get(doc, "items");
    const json_t *outputs = json_object_get(doc, "outputs");
    const json_t *drift = json_object_get(doc, "drift");
    const char *bad = NULL;
    if (!json_is_array(items))
        bad = "\"items\" is not a list";
    else if (!json_is_object(outputs))
        bad = "\"outputs\" is not an object";
    else if (drift && !json_is_array(drift))
        bad = "\"drift\" is not a list";
    const char *k;
    json_t *v;
    if (!bad) {
        json_object_foreach((json_t *)outputs, k, v) {
            if (!json_is_object(v))
                bad = "an output is not an object";
        }
    }
    for (size_t i = 0; !bad && i < json_array_size(drift); i++) {
        const json_t *d = json_array_get(drift, i);
        const json_t *changes = json_object_get(d, "changes");
        if (!json_is_string(json_object_get(d, "address")) ||
            (changes && !json_is_object(changes)))
            bad = "a drift entry has no address or changes";
    }
    if (!bad)
        return 0;
    return mle_fail(err, MLE_E_INVALID, "%s is not a valid plan file: %s", path, bad);
}

int mle_plan_load(mle_engine *e, const char *path, mle_plan **out, mle_error **err)
{
    json_t *doc = read_plan_doc(path, err);
    if (!doc)
        return -1;
    if (check_shape(doc, path, err) != 0) {
        json_decref(doc);
        return -1;
    }
    mle_plan *p = calloc(1, sizeof(*p));
    int rc = check_fresh(e, doc, path, err);
    json_t *items = json_object_get(doc, "items");
    if (rc == 0) {
        p->lineage = dup_str(json_object_get(doc, "lineage"));
        p->serial = json_integer_value(json_object_get(doc, "serial"));
        p->destroy = json_is_true(json_object_get(doc, "destroy"));
        p->items = calloc(json_array_size(items) + 1, sizeof(mle_plan_item));
    }
    for (size_t i = 0; rc == 0 && i < json_array_size(items); i++) {
        rc = item_from_json(e, json_array_get(items, i), &p->items[i], err);
        p->n = i + 1;
    }
    json_t *drivers = rc == 0 ? open_blob(e, json_object_get(doc, "drivers"), "plan#drivers",
                                          err)
                              : NULL;
    p->data = drivers ? open_blob(e, json_object_get(doc, "data"), "plan#data", err) : NULL;
    p->outputs = p->data ? mle_secrets_open_outputs(e, json_object_get(doc, "outputs"), err)
                         : NULL;
    p->drift = json_incref(json_object_get(doc, "drift"));
    if (!p->drift)
        p->drift = json_array();
    if (rc == 0 && (!drivers || !p->data || !p->outputs))
        rc = -1;
    if (rc == 0 && (!json_is_object(drivers) || !json_is_object(p->data)))
        rc = mle_fail(err, MLE_E_INVALID, "%s: the drivers or data of the plan file are not "
                      "objects", path);
    if (rc == 0 && !e->stack) {
        /* Apply from a plan file does not evaluate the stack: drivers get their options
         * from the plan, so the run does exactly what was reviewed. */
        e->stack = calloc(1, sizeof(*e->stack));
        e->stack->drivers = json_incref(drivers);
        e->stack->resources = json_array();
        e->stack->outputs = json_incref(p->outputs);
        e->stack->variables = json_object();
        e->stack->hooks = json_array();
    }
    json_decref(drivers);
    if (rc == 0)
        rc = know_from_state(e, p->data, err);
    json_decref(doc);
    if (rc != 0) {
        mle_plan_free(p);
        return -1;
    }
    *out = p;
    return 0;
}
