/*
 * engine.c — owns a run's context: setting it up in the right order (logger, HTTP, drivers,
 * state and its lock, the stack), tearing it down, and the table of known values.
 */
#include "engine.h"

#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "http.h"
#include "plan.h"
#include "schema.h"

void mle_engine_know(mle_engine *e, const char *address, const char *type,
                     const json_t *attrs, const json_t *extra_sensitive)
{
    json_t *k = json_object();
    json_object_set_new(k, "type", json_string(type));
    /* Shared, not copied: nothing modifies an attributes object in place once it is known
     * (they are replaced whole), and copying every resource's attributes was a large part of
     * a no-op plan's time and memory (tests/bench/run). */
    json_object_set_new(k, "attrs", attrs ? json_incref((json_t *)attrs) : json_object());
    if (extra_sensitive && json_array_size(extra_sensitive) > 0)
        json_object_set_new(k, "sensitive", json_deep_copy(extra_sensitive));
    json_object_set_new(e->known, address, k);
}

void mle_engine_forget(mle_engine *e, const char *address)
{
    json_object_del(e->known, address);
}

const mle_resource_type *mle_engine_type(mle_engine *e, const char *type,
                                         mle_loaded_driver **drv, mle_error **err)
{
    const mle_resource_type *rt = mle_registry_type(e->reg, type, drv);
    if (rt)
        return rt;
    const char *near = mle_registry_suggest(e->reg, type);
    mle_fail(err, MLE_E_INVALID, "unknown resource type \"%s\"%s%s%s", type,
             near ? " (did you mean \"" : "", near ? near : "", near ? "\"?)" : "");
    if (err)
        mle_error_set_hint(*err, "`mlengine drivers` lists the types of every driver found");
    return NULL;
}

/* The stack's options for a driver with references resolved as far as they are known.
 * New reference; *unknown when some are not known yet. Values that came from secrets are
 * registered for redaction: a token taken from a cluster must never reach a log. */
static json_t *driver_options_now(mle_engine *e, const char *name, int *unknown)
{
    json_t *raw = e->stack ? json_object_get(e->stack->drivers, name) : NULL;
    json_t *out = json_object();
    const char *k;
    json_t *v;
    *unknown = 0;
    json_object_foreach(raw, k, v) {
        int sens = 0;
        json_t *r = mle_resolve(e, v, unknown, &sens);
        if (sens && json_is_string(r))
            mle_logger_add_secret(e->log, json_string_value(r));
        json_object_set_new(out, k, r);
    }
    return out;
}

int mle_engine_driver_deferred(mle_engine *e, mle_loaded_driver *drv)
{
    if (drv->initialized)
        return 0;
    int unknown = 0;
    json_decref(driver_options_now(e, drv->name, &unknown));
    return unknown;
}

int mle_engine_driver_ready(mle_engine *e, mle_loaded_driver *drv, mle_error **err)
{
    if (drv->initialized)
        return 0;
    int unknown = 0;
    json_t *opts = driver_options_now(e, drv->name, &unknown);
    int rc;
    if (unknown)
        rc = mle_fail(err, MLE_E_INVALID,
                      "driver %s: its options refer to values not known yet (a resource "
                      "that has not been applied, or failed)",
                      drv->name);
    else
        rc = mle_registry_init(e->reg, drv, &e->svc, opts, err);
    json_decref(opts);
    return rc;
}

/* Addresses the stack's options for a driver refer to, added to the set `deps`. */
void mle_engine_driver_refs(mle_engine *e, const char *name, json_t *deps)
{
    json_t *raw = e->stack ? json_object_get(e->stack->drivers, name) : NULL;
    mle_collect_refs(raw, deps);
}

int mle_engine_has_hook(const mle_engine *e, const char *name)
{
    if (!e->lua || !e->stack)
        return 0;
    size_t i;
    json_t *h;
    json_array_foreach(e->stack->hooks, i, h) if (strcmp(json_string_value(h), name) == 0) return 1;
    return 0;
}

int mle_engine_hook(mle_engine *e, const char *name, json_t *ctx, mle_error **err)
{
    int rc = 0;
    if (mle_engine_has_hook(e, name)) {
        json_object_set_new(ctx, "hook", json_string(name));
        rc = mle_lua_run_hook(e->lua, name, ctx, e->stack_dir, err);
        if (rc != 0 && err && *err)
            mle_error_prefix(*err, "%s hook%s: ", name, rc == 1 ? " vetoed" : " failed");
    }
    json_decref(ctx);
    return rc;
}

/* Called by the Lua runtime for every declaration, so errors carry the stack's line. */
static int validate_decl(void *ud, const char *type, int data_source, const json_t *config,
                         mle_error **err)
{
    mle_engine *e = ud;
    const mle_resource_type *rt = mle_engine_type(e, type, NULL, err);
    if (!rt)
        return -1;
    int is_data = (rt->flags & MLE_RT_DATA_SOURCE) != 0;
    if (is_data != (data_source != 0))
        return mle_fail(err, MLE_E_INVALID, "%s is a %s: declare it with mlengine.%s", type,
                        is_data ? "data source" : "resource", is_data ? "data" : "resource");
    return mle_schema_validate(rt, config, err);
}

/* The note a driver gives for a cloud it does not support, or NULL. */
static const char *cloud_note(const mle_driver *d, const char *cloud)
{
    if (!MLE_HAS_FIELD(d, mle_driver, cloud_notes) || !d->cloud_notes)
        return NULL;
    for (const mle_cloud_note *n = d->cloud_notes; n->cloud; n++)
        if (strcmp(n->cloud, cloud) == 0)
            return n->message;
    return NULL;
}

static char *clouds_list(const mle_driver *d)
{
    char *out = strdup("");
    for (const char *const *c = d->clouds; c && *c; c++) {
        char *next = NULL;
        if (asprintf(&next, "%s%s%s", out, *out ? ", " : "", *c) < 0)
            abort();
        free(out);
        out = next;
    }
    return out;
}

/* A stack that names its cloud (mle.cloud) may only use drivers for that cloud: an add-on
 * that does not exist there is refused before anything is planned, with the driver's own
 * word on what to use instead. */
static int check_clouds(mle_engine *e, mle_error **err)
{
    const char *cloud = e->stack->cloud;
    size_t i;
    json_t *r;
    if (!cloud)
        return 0;
    json_array_foreach(e->stack->resources, i, r) {
        mle_loaded_driver *drv = NULL;
        const char *type = json_string_value(json_object_get(r, "type"));
        if (!mle_registry_type(e->reg, type, &drv) ||
            mle_driver_supports_cloud(drv->desc, cloud))
            continue;
        char *list = clouds_list(drv->desc);
        const char *note = cloud_note(drv->desc, cloud);
        mle_fail(err, MLE_E_UNSUPPORTED,
                 "%s: %s (driver %s) is not available on %s: the driver supports %s%s%s",
                 json_string_value(json_object_get(r, "where")), type, drv->name, cloud, list,
                 note ? ". " : "", note ? note : "");
        free(list);
        return -1;
    }
    return 0;
}

static int set_paths(mle_engine *e, const char *stack_path, mle_error **err)
{
    char buf[PATH_MAX];
    if (!realpath(stack_path, buf)) {
        mle_fail(err, MLE_E_NOT_FOUND, "stack file %s not found", stack_path);
        if (err)
            mle_error_set_hint(*err, "give the stack file as the first argument, or run "
                                     "where stack.lua is");
        return -1;
    }
    e->stack_path = strdup(buf);
    e->stack_dir = strdup(dirname(buf));
    return 0;
}

static const char *scripts_dir(void)
{
    struct stat st;
    if (stat(MLE_SOURCE_SCRIPTS_DIR, &st) == 0)
        return MLE_SOURCE_SCRIPTS_DIR;
    return MLE_INSTALL_SCRIPTS_DIR;
}

static int eval_stack(mle_engine *e, const mle_engine_opts *o, mle_error **err)
{
    mle_lua_opts lo = {
        .stack_path = e->stack_path,
        .scripts_dir = scripts_dir(),
        .vars = o->vars,
        .validate = validate_decl,
        .validate_ud = e,
    };
    e->lua = mle_lua_new(&lo, err);
    if (!e->lua)
        return -1;
    if (o->hooks_file && mle_lua_load_hooks(e->lua, o->hooks_file, err) != 0)
        return -1;
    if (mle_lua_eval(e->lua, &e->stack, err) != 0 || check_clouds(e, err) != 0)
        return -1;
    /* Secret variables stay out of every log line from here on. */
    const char *k;
    json_t *v;
    json_object_foreach(e->stack->variables, k, v) {
        json_t *val = json_object_get(v, "value");
        if (json_is_true(json_object_get(v, "sensitive")) && json_is_string(val))
            mle_logger_add_secret(e->log, json_string_value(val));
    }
    return 0;
}

static char *default_state_path(const mle_engine *e)
{
    char *p = NULL;
    if (asprintf(&p, "%s/.mlengine/state.db", e->stack_dir ? e->stack_dir : ".") < 0)
        abort();
    return p;
}

static int open_state(mle_engine *e, const mle_engine_opts *o, mle_error **err)
{
    char *path = o->state_path ? strdup(o->state_path) : default_state_path(e);
    if (o->create_state && !o->state_path) {
        char *dir = strdup(path);
        mkdir(dirname(dir), 0700);
        free(dir);
    }
    int rc = mle_state_open(path, o->create_state, &e->state, err);
    free(path);
    if (rc != 0)
        return -1;
    if (o->lock_command && mle_state_lock(e->state, o->lock_command, NULL, err) != 0)
        return -1;
    if (mle_state_lock_takeover(e->state))
        mle_log(e->log, MLE_LOG_WARN, NULL, "%s", mle_state_lock_takeover(e->state));
    return 0;
}

int mle_engine_open(const mle_engine_opts *o, mle_engine **out, mle_error **err)
{
    mle_engine *e = calloc(1, sizeof(*e));
    if (!e)
        abort();
    static volatile sig_atomic_t never;
    e->interrupted = o->interrupted ? o->interrupted : &never;
    e->log = mle_logger_new(stderr, o->log_level);
    e->http = mle_http_client_new(e->log);
    e->svc.logger = e->log;
    e->svc.http = e->http;
    e->known = json_object();
    e->vars = o->vars ? json_incref(o->vars) : json_object();
    e->parallelism = o->parallelism > 0 ? o->parallelism : MLE_DEFAULT_PARALLELISM;
    e->progress = o->progress;
    e->out = stdout;
    *out = e;
    if (o->stack_path && set_paths(e, o->stack_path, err) != 0)
        return -1;
    if (mle_registry_load(o->driver_dirs, o->n_driver_dirs, &e->reg, err) != 0)
        return -1;
    /* The stack first: a stack that does not evaluate never touches the state. */
    if (o->stack_path && eval_stack(e, o, err) != 0)
        return -1;
    if (o->open_state && open_state(e, o, err) != 0)
        return -1;
    return 0;
}

void mle_engine_close(mle_engine *e)
{
    if (!e)
        return;
    if (e->state) {
        mle_state_unlock(e->state, NULL);
        mle_state_close(e->state);
    }
    mle_stack_free(e->stack);
    mle_lua_free(e->lua);
    mle_registry_free(e->reg);
    mle_http_client_free(e->http);
    json_decref(e->known);
    json_decref(e->vars);
    mle_logger_free(e->log);
    free(e->stack_path);
    free(e->stack_dir);
    free(e);
}
