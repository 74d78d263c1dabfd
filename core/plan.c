/*
 * plan.c — owns planning: reference resolution, the desired-vs-state diff, refresh and
 * drift, targets, and the human and JSON renderings of a plan.
 */
#include "plan.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "graph.h"
#include "schema.h"
#include "secrets.h"

const char *mle_action_name(mle_action a)
{
    static const char *names[] = {"no-op", "create", "update", "replace",
                                  "delete", "read",   "adopt",  "resume"};
    return a <= MLE_ACT_RESUME ? names[a] : "?";
}

/* ---------------------------------------------------------------- known values */

static int attr_is_sensitive(mle_engine *e, const json_t *known, const char *attr)
{
    const char *type = json_string_value(json_object_get(known, "type"));
    return mle_schema_is_secret(mle_registry_type(e->reg, type, NULL),
                                json_object_get(known, "sensitive"), attr);
}

/* Walk "names.0.x" inside attrs. Borrowed result or NULL. */
static json_t *walk_path(json_t *v, const char *path, char *first, size_t first_n)
{
    char *copy = strdup(path), *save = NULL;
    int at_first = 1;
    for (char *seg = strtok_r(copy, ".", &save); seg && v; seg = strtok_r(NULL, ".", &save)) {
        if (at_first) {
            snprintf(first, first_n, "%s", seg);
            at_first = 0;
        }
        if (json_is_array(v)) {
            char *end;
            long ix = strtol(seg, &end, 10);
            v = (*end || ix < 0) ? NULL : json_array_get(v, (size_t)ix);
        } else if (json_is_object(v)) {
            v = json_object_get(v, seg);
        } else {
            v = NULL;
        }
    }
    free(copy);
    return v;
}

static json_t *resolve_ref(mle_engine *e, const json_t *ref, int *unknown, int *sensitive)
{
    json_t *r = json_object_get(ref, "$ref");
    const char *addr = json_string_value(json_object_get(r, "address"));
    const char *path = json_string_value(json_object_get(r, "path"));
    json_t *known = addr ? json_object_get(e->known, addr) : NULL;
    char first[256] = "";
    json_t *v = known && path ? walk_path(json_object_get(known, "attrs"), path, first,
                                          sizeof(first))
                              : NULL;
    if (!v || mle_marker_contains(v)) {
        *unknown = 1;
        return json_deep_copy(ref);
    }
    if (attr_is_sensitive(e, known, first))
        *sensitive = 1;
    return json_deep_copy(v);
}

static void append_scalar(char **buf, size_t *len, const json_t *v)
{
    char tmp[64];
    const char *s = tmp;
    char *dumped = NULL;
    if (json_is_string(v))
        s = json_string_value(v);
    else if (json_is_integer(v))
        snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(tmp, sizeof(tmp), "%.17g", json_real_value(v));
    else if (json_is_boolean(v))
        s = json_is_true(v) ? "true" : "false";
    else
        s = dumped = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    size_t n = strlen(s);
    *buf = realloc(*buf, *len + n + 1);
    if (!*buf)
        abort();
    memcpy(*buf + *len, s, n + 1);
    *len += n;
    free(dumped);
}

static json_t *resolve_expr(mle_engine *e, const json_t *expr, int *unknown, int *sensitive)
{
    json_t *parts = json_object_get(expr, "$expr");
    json_t *out = json_array();
    int local_unknown = 0;
    size_t i;
    json_t *p;
    json_array_foreach(parts, i, p) {
        json_array_append_new(out, mle_resolve(e, p, &local_unknown, sensitive));
    }
    if (local_unknown) {
        *unknown = 1;
        return json_pack("{s:o}", "$expr", out);
    }
    char *buf = strdup(""); /* "" when there are no parts */
    size_t len = 0;
    if (!buf)
        abort();
    json_array_foreach(out, i, p) append_scalar(&buf, &len, p);
    json_decref(out);
    json_t *s = json_string(buf);
    free(buf);
    return s;
}

json_t *mle_resolve(mle_engine *e, const json_t *v, int *unknown, int *sensitive)
{
    if (json_is_object(v)) {
        if (mle_marker_is_ref(v))
            return resolve_ref(e, v, unknown, sensitive);
        if (mle_marker_is_expr(v))
            return resolve_expr(e, v, unknown, sensitive);
        json_t *inner = json_object_get(v, "$sensitive");
        if (inner && json_object_size(v) == 1) {
            *sensitive = 1;
            return mle_resolve(e, inner, unknown, sensitive);
        }
        json_t *out = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
            json_object_set_new(out, k, mle_resolve(e, x, unknown, sensitive));
        return out;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(out, mle_resolve(e, x, unknown,
                                                                            sensitive));
        return out;
    }
    return json_deep_copy(v);
}

void mle_collect_refs(const json_t *v, json_t *deps)
{
    if (json_is_object(v)) {
        if (mle_marker_is_ref(v)) {
            const char *a = json_string_value(
                json_object_get(json_object_get(v, "$ref"), "address"));
            if (a)
                json_object_set_new(deps, a, json_true());
            return;
        }
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) mle_collect_refs(x, deps);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) mle_collect_refs(x, deps);
    }
}

/* ---------------------------------------------------------------- plan items */

static mle_plan_item *new_item(mle_plan *p, const char *address, const char *type,
                               const char *driver)
{
    p->items = realloc(p->items, (p->n + 1) * sizeof(*p->items));
    if (!p->items)
        abort();
    mle_plan_item *it = &p->items[p->n++];
    memset(it, 0, sizeof(*it));
    it->address = strdup(address);
    it->type = strdup(type);
    it->driver = strdup(driver ? driver : "");
    it->changed = json_array();
    it->force = json_array();
    it->sensitive = json_array();
    it->deps = json_array();
    return it;
}

static void item_clear(mle_plan_item *it)
{
    free(it->address);
    free(it->type);
    free(it->driver);
    free(it->id);
    json_decref(it->before);
    json_decref(it->config);
    json_decref(it->changed);
    json_decref(it->force);
    json_decref(it->sensitive);
    json_decref(it->deps);
    json_decref(it->resume);
}

void mle_plan_free(mle_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        item_clear(&p->items[i]);
    free(p->items);
    free(p->lineage);
    json_decref(p->outputs);
    json_decref(p->drift);
    json_decref(p->data);
    free(p);
}

size_t mle_plan_changes(const mle_plan *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        n += p->items[i].action != MLE_ACT_NOOP;
    return n;
}

/* Has the value of attribute `a` changed from `old` to `now`? A null and an absent value
 * are the same; for sensitive values the comparison is on the plain values. */
static int differs(const json_t *old, const json_t *now)
{
    if ((!old || json_is_null(old)) && (!now || json_is_null(now)))
        return 0;
    if (!old || !now)
        return 1;
    return !json_equal((json_t *)old, (json_t *)now);
}

typedef struct plan_ctx {
    mle_engine *e;
    mle_plan *p;
    json_t *rows;      /* address -> state row as JSON {"type","driver","id","attrs","config",
                          "deps","status"} */
    json_t *desired;   /* address -> 1 */
    const mle_plan_opts *o;
} plan_ctx;

static void diff_attrs(const mle_resource_type *rt, mle_plan_item *it, const json_t *now,
                       const json_t *before, const json_t *prev_config)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)now, k, v) {
        const mle_attr_schema *a = mle_schema_attr(rt, k);
        int changed = mle_marker_contains(v) || differs(json_object_get(before, k), v);
        if (!changed)
            continue;
        json_array_append_new(it->changed, json_string(k));
        if (a && (a->flags & MLE_A_FORCE_NEW))
            json_array_append_new(it->force, json_string(k));
    }
    json_object_foreach((json_t *)prev_config, k, v) {
        if (json_object_get(now, k))
            continue;
        const mle_attr_schema *a = mle_schema_attr(rt, k);
        if (!a || (a->flags & MLE_A_COMPUTED) || !differs(json_object_get(before, k), NULL))
            continue;
        json_array_append_new(it->changed, json_string(k));
        if (a->flags & MLE_A_FORCE_NEW)
            json_array_append_new(it->force, json_string(k));
    }
}

/* Attributes we can already state for a resource about to change: for an update, its
 * state overlaid with the known parts of its new config, less what the provider computes
 * (an update may change those, unless the schema says MLE_A_STABLE; "id" never changes in
 * place); for a create or replace, only
 * the known parts of its config. What is left out reads as "(known after apply)". */
static json_t *projected_attrs(const mle_resource_type *rt, const json_t *before,
                               const json_t *config, int keep_before)
{
    json_t *out = keep_before && before ? json_deep_copy(before) : json_object();
    for (size_t i = 0; keep_before && i < rt->n_attrs; i++) {
        const mle_attr_schema *a = &rt->attrs[i];
        if ((a->flags & MLE_A_COMPUTED) && !(a->flags & (MLE_A_REQUIRED | MLE_A_OPTIONAL)) &&
            !(a->flags & MLE_A_STABLE) && strcmp(a->name, "id") != 0)
            json_object_del(out, a->name);
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)config, k, v) {
        if (mle_marker_contains(v))
            json_object_del(out, k);
        else
            json_object_set(out, k, v);
    }
    return out;
}

static int read_data_now(plan_ctx *c, mle_plan_item *it, const mle_resource_type *rt,
                         mle_loaded_driver *drv, mle_error **err)
{
    mle_call call;
    memset(&call, 0, sizeof(call));
    call.rt = rt;
    call.drv = drv;
    call.op.struct_size = sizeof(mle_op);
    call.op.kind = MLE_OPK_READ;
    call.op.type = it->type;
    call.op.address = it->address;
    call.op.config = MLE_V(it->config);
    call.op.lineage = c->p->lineage;
    mle_call_many(c->e, &call, 1);
    if (call.result.status != MLE_OP_DONE) {
        mle_error *e = call.result.error;
        call.result.error = NULL;
        if (!e)
            e = mle_error_new(MLE_E_NOT_FOUND, "data source found nothing");
        mle_error_prefix(e, "reading %s: ", it->address);
        mle_op_result_clear(&call.result);
        if (err)
            *err = e;
        else
            mle_error_free(e);
        return -1;
    }
    mle_engine_know(c->e, it->address, it->type, call.result.attrs, it->sensitive);
    json_object_set(c->p->data, it->address, call.result.attrs);
    mle_op_result_clear(&call.result);
    return 0;
}

/* Edges come from the stack's own config: a reference already resolved at plan time is
 * still an ordering constraint (a role must exist before its policy is attached). */
static void add_config_deps(mle_engine *e, mle_plan_item *it, const json_t *res)
{
    json_t *set = json_object();
    mle_collect_refs(json_object_get(res, "config"), set);
    mle_engine_driver_refs(e, it->driver, set);
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(res, "depends_on"), i, d)
        json_object_set_new(set, json_string_value(d), json_true());
    const char *k;
    json_t *v;
    json_object_foreach(set, k, v) json_array_append_new(it->deps, json_string(k));
    json_decref(set);
}

/* Resolve each top-level attribute on its own so sensitivity is tracked per attribute. */
static json_t *resolve_config(mle_engine *e, const json_t *config, json_t *sensitive_out)
{
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)config, k, v) {
        int unknown = 0, sens = 0;
        json_object_set_new(out, k, mle_resolve(e, v, &unknown, &sens));
        if (sens)
            json_array_append_new(sensitive_out, json_string(k));
    }
    return out;
}

static int plan_desired(plan_ctx *c, const json_t *res, mle_error **err)
{
    mle_engine *e = c->e;
    const char *address = json_string_value(json_object_get(res, "address"));
    const char *type = json_string_value(json_object_get(res, "type"));
    mle_loaded_driver *drv = NULL;
    const mle_resource_type *rt = mle_engine_type(e, type, &drv, err);
    if (!rt)
        return -1;
    /* Drivers are configured at plan time, as Terraform configures providers: a driver
     * that cannot work here (no credentials, a missing CLI) fails the plan, never half way
     * through an apply. One whose options wait for resources of this apply (a cluster's
     * endpoint) is configured when those exist. */
    int deferred = mle_engine_driver_deferred(e, drv);
    if (!deferred && mle_engine_driver_ready(e, drv, err) != 0)
        return -1;
    mle_plan_item *it = new_item(c->p, address, type, drv->name);
    it->data = json_is_true(json_object_get(res, "data"));
    json_t *cfg = json_deep_copy(json_object_get(res, "config"));
    mle_schema_apply_defaults(rt, cfg);
    it->config = resolve_config(e, cfg, it->sensitive);
    json_decref(cfg);
    add_config_deps(e, it, res);
    json_object_set_new(c->desired, address, json_true());

    if (it->data) {
        if (!mle_marker_contains(it->config) && !c->o->destroy && !deferred) {
            it->action = MLE_ACT_NOOP;
            return read_data_now(c, it, rt, drv, err);
        }
        it->action = MLE_ACT_READ;
        return 0;
    }
    json_t *row = json_object_get(c->rows, address);
    json_t *before = row ? json_object_get(row, "attrs") : NULL;
    if (!row || json_integer_value(json_object_get(row, "status")) == MLE_RS_PENDING_CREATE) {
        it->action = MLE_ACT_CREATE;
        json_t *proj = projected_attrs(rt, NULL, it->config, 0);
        mle_engine_know(e, address, type, proj, it->sensitive);
        json_decref(proj);
        return 0;
    }
    it->id = json_string_value(json_object_get(row, "id"))
                 ? strdup(json_string_value(json_object_get(row, "id")))
                 : NULL;
    it->before = json_incref(before);
    it->cbd = (rt->flags & MLE_RT_CREATE_BEFORE_DESTROY) != 0;
    diff_attrs(rt, it, it->config, before, json_object_get(row, "config"));
    if (json_array_size(it->force) > 0 ||
        (json_array_size(it->changed) > 0 && rt->update == NULL)) {
        if (json_array_size(it->force) == 0)
            json_array_extend(it->force, it->changed);
        it->action = MLE_ACT_REPLACE;
    } else {
        it->action = json_array_size(it->changed) ? MLE_ACT_UPDATE : MLE_ACT_NOOP;
    }
    if (it->action != MLE_ACT_NOOP) {
        json_t *proj = projected_attrs(rt, before, it->config, it->action == MLE_ACT_UPDATE);
        mle_engine_know(e, address, type, proj, it->sensitive);
        json_decref(proj);
    }
    return 0;
}

static void plan_delete(plan_ctx *c, const char *address, json_t *row)
{
    mle_plan_item *it = new_item(c->p, address, json_string_value(json_object_get(row, "type")),
                                 json_string_value(json_object_get(row, "driver")));
    it->action = MLE_ACT_DELETE;
    const char *id = json_string_value(json_object_get(row, "id"));
    it->id = id ? strdup(id) : NULL;
    it->before = json_incref(json_object_get(row, "attrs"));
    it->config = json_incref(json_object_get(row, "config"));
}

/* A delete waits for everything being deleted or replaced that depended on it. */
static void orient_delete_deps(plan_ctx *c)
{
    mle_plan *p = c->p;
    for (size_t i = 0; i < p->n; i++) {
        mle_plan_item *d = &p->items[i];
        if (d->action != MLE_ACT_DELETE && d->action != MLE_ACT_REPLACE)
            continue;
        for (size_t j = 0; j < p->n; j++) {
            mle_plan_item *x = &p->items[j];
            if (j == i || x->action != MLE_ACT_DELETE)
                continue;
            json_t *row = json_object_get(c->rows, x->address);
            size_t k;
            json_t *dep;
            json_array_foreach(json_object_get(row, "deps"), k, dep)
                if (strcmp(json_string_value(dep), d->address) == 0)
                    json_array_append_new(d->deps, json_string(x->address));
        }
    }
}

/* ---------------------------------------------------------------- state rows */

static json_t *rows_json(mle_state_resource *rs, size_t n)
{
    json_t *rows = json_object();
    for (size_t i = 0; i < n; i++) {
        mle_state_resource *r = &rs[i];
        json_t *row = json_pack("{s:s,s:s,s:I}", "type", r->type, "driver",
                                r->driver ? r->driver : "", "status", (json_int_t)r->status);
        if (r->id)
            json_object_set_new(row, "id", json_string(r->id));
        json_object_set(row, "attrs", r->attrs ? r->attrs : json_null());
        json_object_set(row, "config", r->config ? r->config : json_null());
        json_object_set_new(row, "deps", r->deps ? json_incref(r->deps) : json_array());
        json_object_set_new(rows, r->address, row);
    }
    return rows;
}

static void know_state(mle_engine *e, json_t *rows)
{
    const char *addr;
    json_t *row;
    json_object_foreach(rows, addr, row) {
        if (json_integer_value(json_object_get(row, "status")) == MLE_RS_PENDING_CREATE)
            continue;
        mle_engine_know(e, addr, json_string_value(json_object_get(row, "type")),
                        json_object_get(row, "attrs"), NULL);
    }
}

/* ---------------------------------------------------------------- refresh and drift */

/* Drift is shown, saved in plan files and handed to hooks: secrets are redacted here,
 * once, so no later path can leak them. */
static json_t *drift_value(const mle_resource_type *rt, const json_t *sealed, const char *k,
                           json_t *v)
{
    if (mle_schema_is_secret(rt, sealed, k) && v && !json_is_null(v))
        return json_string("(sensitive)");
    return v ? json_incref(v) : json_null();
}

static void record_drift(plan_ctx *c, const char *addr, json_t *row, json_t *fresh)
{
    json_t *old = json_object_get(row, "attrs");
    json_t *sealed = json_object_get(row, "sealed");
    const mle_resource_type *rt =
        mle_registry_type(c->e->reg, json_string_value(json_object_get(row, "type")), NULL);
    json_t *changes = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(fresh, k, v) if (differs(json_object_get(old, k), v))
        json_object_set_new(changes, k,
                            json_pack("[oo]", drift_value(rt, sealed, k, json_object_get(old, k)),
                                      drift_value(rt, sealed, k, v)));
    json_object_foreach(old, k, v) if (!json_object_get(fresh, k) && !json_is_null(v))
        json_object_set_new(changes, k, json_pack("[on]", drift_value(rt, sealed, k, v)));
    if (json_object_size(changes) > 0)
        json_array_append_new(c->p->drift, json_pack("{s:s,s:b,s:o}", "address", addr,
                                                     "deleted", 0, "changes", changes));
    else
        json_decref(changes);
}

static int refresh(plan_ctx *c, mle_error **err)
{
    mle_engine *e = c->e;
    size_t n = json_object_size(c->rows), k = 0;
    mle_call *calls = calloc(n + 1, sizeof(mle_call));
    const char **addrs = calloc(n + 1, sizeof(char *));
    const char *addr;
    json_t *row;
    int rc = 0;
    json_object_foreach(c->rows, addr, row) {
        if (json_integer_value(json_object_get(row, "status")) != MLE_RS_OK)
            continue;
        mle_loaded_driver *drv = NULL;
        const mle_resource_type *rt =
            mle_engine_type(e, json_string_value(json_object_get(row, "type")), &drv, err);
        if (rt && mle_engine_driver_deferred(e, drv))
            continue; /* its driver waits for this apply: nothing to read it with yet */
        if (!rt || mle_engine_driver_ready(e, drv, err) != 0) {
            rc = -1;
            break;
        }
        mle_call *cl = &calls[k];
        addrs[k++] = addr;
        cl->rt = rt;
        cl->drv = drv;
        cl->op.struct_size = sizeof(mle_op);
        cl->op.kind = MLE_OPK_READ;
        cl->op.type = rt->name;
        cl->op.address = addr;
        cl->op.id = json_string_value(json_object_get(row, "id"));
        cl->op.state = MLE_V(json_object_get(row, "attrs"));
        cl->op.config = MLE_V(json_object_get(row, "config"));
        cl->op.lineage = c->p->lineage;
    }
    if (rc == 0)
        mle_call_many(e, calls, k);
    for (size_t i = 0; i < k && rc == 0; i++) {
        mle_call *cl = &calls[i];
        row = json_object_get(c->rows, addrs[i]);
        if (cl->result.status == MLE_OP_NOT_FOUND) {
            json_array_append_new(c->p->drift, json_pack("{s:s,s:b,s:{}}", "address",
                                                         addrs[i], "deleted", 1, "changes"));
            json_object_del(c->rows, addrs[i]);
        } else if (cl->result.status == MLE_OP_DONE) {
            record_drift(c, addrs[i], row, cl->result.attrs);
            json_object_set(row, "attrs", cl->result.attrs);
        } else {
            mle_error *x = cl->result.error;
            cl->result.error = NULL;
            if (!x)
                x = mle_error_new(MLE_E_INTERNAL, "read answered in progress");
            mle_error_prefix(x, "refreshing %s: ", addrs[i]);
            if (err)
                *err = x;
            else
                mle_error_free(x);
            rc = -1;
        }
    }
    for (size_t i = 0; i < k; i++)
        mle_op_result_clear(&calls[i].result);
    free(calls);
    free(addrs);
    return rc;
}

/* ---------------------------------------------------------------- targets */

static int is_target(const json_t *targets, const char *addr)
{
    size_t i;
    json_t *t;
    json_array_foreach(targets, i, t) {
        const char *s = json_string_value(t);
        size_t n = strlen(s);
        /* "sim_resource.a" targets itself; "module" prefixes are not a thing yet. */
        if (strncmp(addr, s, n) == 0 && (addr[n] == 0 || addr[n] == '['))
            return 1;
    }
    return 0;
}

/* Keep targets, plus what they depend on (apply) or what depends on them (destroy). */
static void apply_targets(plan_ctx *c)
{
    mle_plan *p = c->p;
    json_t *keep = json_object();
    for (size_t i = 0; i < p->n; i++)
        if (is_target(c->o->targets, p->items[i].address))
            json_object_set_new(keep, p->items[i].address, json_true());
    for (int grew = 1; grew;) {
        grew = 0;
        for (size_t i = 0; i < p->n; i++) {
            mle_plan_item *it = &p->items[i];
            size_t k;
            json_t *d;
            json_array_foreach(it->deps, k, d) {
                const char *da = json_string_value(d);
                /* deps point "waits for": keep what a kept item waits for when applying,
                 * and for deletes the waiting relation already points at dependents. */
                if (json_object_get(keep, it->address) && !json_object_get(keep, da)) {
                    json_object_set_new(keep, da, json_true());
                    grew = 1;
                }
            }
        }
    }
    for (size_t i = 0; i < p->n; i++)
        if (!json_object_get(keep, p->items[i].address) && !p->items[i].data)
            p->items[i].action = MLE_ACT_NOOP;
    json_decref(keep);
}

/* ---------------------------------------------------------------- build */

static int desired_order(mle_engine *e, size_t **order, mle_error **err)
{
    json_t *res = e->stack->resources;
    mle_graph *g = mle_graph_new();
    size_t i;
    json_t *r;
    json_array_foreach(res, i, r) mle_graph_add(g, json_string_value(json_object_get(r, "address")));
    int rc = 0;
    json_array_foreach(res, i, r) {
        json_t *set = json_object();
        mle_collect_refs(json_object_get(r, "config"), set);
        mle_loaded_driver *drv = NULL;
        if (mle_registry_type(e->reg, json_string_value(json_object_get(r, "type")), &drv))
            mle_engine_driver_refs(e, drv->name, set);
        size_t k;
        json_t *d;
        json_array_foreach(json_object_get(r, "depends_on"), k, d)
            json_object_set_new(set, json_string_value(d), json_true());
        const char *a;
        json_t *v;
        json_object_foreach(set, a, v) {
            size_t to = mle_graph_find(g, a);
            if (to == (size_t)-1) {
                rc = mle_fail(err, MLE_E_INVALID, "%s (%s) refers to %s, which the stack does "
                              "not declare",
                              json_string_value(json_object_get(r, "address")),
                              json_string_value(json_object_get(r, "where")), a);
                break;
            }
            mle_graph_edge(g, i, to);
        }
        json_decref(set);
        if (rc)
            break;
    }
    if (rc == 0)
        rc = mle_graph_topo(g, order, err);
    mle_graph_free(g);
    return rc;
}

int mle_stack_check(mle_engine *e, mle_error **err)
{
    size_t *order = NULL;
    int rc = desired_order(e, &order, err);
    free(order);
    return rc;
}

static int load_rows(plan_ctx *c, mle_error **err)
{
    mle_state_resource *rs = NULL;
    size_t n = 0;
    if (mle_state_list(c->e->state, &rs, &n, err) != 0)
        return -1;
    json_t *sealed = json_object();
    for (size_t i = 0; i < n; i++) {
        /* Remember what was sealed: a value secret by origin is redacted in drift too. */
        json_t *names = json_array();
        const char *k;
        json_t *v;
        json_object_foreach(rs[i].attrs, k, v) if (mle_secrets_is_sealed(v))
            json_array_append_new(names, json_string(k));
        json_object_set_new(sealed, rs[i].address, names);
        if (mle_secrets_open_resource(c->e, &rs[i], err) != 0) {
            mle_state_resources_free(rs, n);
            json_decref(sealed);
            return -1;
        }
    }
    c->rows = rows_json(rs, n);
    const char *addr;
    json_t *names;
    json_object_foreach(sealed, addr, names)
        json_object_set(json_object_get(c->rows, addr), "sealed", names);
    json_decref(sealed);
    mle_state_resources_free(rs, n);
    return 0;
}

int mle_plan_build(mle_engine *e, const mle_plan_opts *o, mle_plan **out, mle_error **err)
{
    mle_plan *p = calloc(1, sizeof(*p));
    if (!p)
        abort();
    p->lineage = strdup(mle_state_lineage(e->state));
    p->serial = mle_state_serial(e->state);
    p->destroy = o->destroy;
    p->drift = json_array();
    p->data = json_object();
    p->outputs = json_incref(e->stack ? e->stack->outputs : NULL);
    plan_ctx c = {.e = e, .p = p, .desired = json_object(), .o = o};
    size_t *order = NULL;
    int rc = load_rows(&c, err);
    if (rc == 0 && o->refresh)
        rc = refresh(&c, err);
    if (rc == 0) {
        json_object_clear(e->known);
        know_state(e, c.rows);
    }
    if (rc == 0 && !o->destroy)
        rc = desired_order(e, &order, err);
    for (size_t i = 0; rc == 0 && !o->destroy && i < json_array_size(e->stack->resources); i++)
        rc = plan_desired(&c, json_array_get(e->stack->resources, order[i]), err);
    free(order);
    if (rc == 0) {
        const char *addr;
        json_t *row;
        json_object_foreach(c.rows, addr, row) if (!json_object_get(c.desired, addr))
            plan_delete(&c, addr, row);
        orient_delete_deps(&c);
        if (o->targets && json_array_size(o->targets) > 0)
            apply_targets(&c);
    }
    json_decref(c.rows);
    json_decref(c.desired);
    if (rc != 0) {
        mle_plan_free(p);
        return -1;
    }
    *out = p;
    return 0;
}
