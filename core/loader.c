/*
 * loader.c — owns driver discovery, dlopen, descriptor checks and the type registry.
 *
 * The descriptor check follows nginx and Redis: a driver built for another ABI major is
 * refused with both versions named; a descriptor smaller than the fields we read is refused;
 * fields beyond the driver's struct_size are never read.
 */
#include "loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "schema.h"

struct mle_registry {
    mle_loaded_driver **drivers;
    size_t n, cap;
    json_t *types; /* type name -> integer index into drivers (a hash map) */
};

/* The smallest descriptor we accept: every field of ABI 1.0. */
#define MLE_DRIVER_MIN_SIZE (offsetof(mle_driver, fini) + sizeof(((mle_driver *)0)->fini))
#define MLE_TYPE_MIN_SIZE (offsetof(mle_resource_type, adopt) + sizeof(void *))

mle_registry *mle_registry_new(void)
{
    mle_registry *reg = calloc(1, sizeof(*reg));
    if (!reg)
        abort();
    reg->types = json_object();
    return reg;
}

static void loaded_free(mle_loaded_driver *d)
{
    if (!d)
        return;
    if (d->initialized && d->desc->fini)
        d->desc->fini(d->host, d->ctx);
    if (d->host)
        mle_host_free(d->host);
    /* dlclose is skipped on purpose: a driver's static destructors may run after its
     * threads' last use, and unloading buys nothing in a process that is about to exit. */
    pthread_mutex_destroy(&d->init_lock);
    free(d->name);
    free(d->path);
    free(d);
}

void mle_registry_free(mle_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++)
        loaded_free(reg->drivers[i]);
    free(reg->drivers);
    json_decref(reg->types);
    free(reg);
}

size_t mle_registry_count(const mle_registry *reg) { return reg->n; }

mle_loaded_driver *mle_registry_at(mle_registry *reg, size_t i)
{
    return i < reg->n ? reg->drivers[i] : NULL;
}

mle_loaded_driver *mle_registry_driver(mle_registry *reg, const char *name)
{
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->drivers[i]->name, name) == 0)
            return reg->drivers[i];
    return NULL;
}

const mle_resource_type *mle_registry_type(const mle_registry *reg, const char *type,
                                           mle_loaded_driver **drv)
{
    json_t *ix = json_object_get(reg->types, type);
    if (!ix)
        return NULL;
    mle_loaded_driver *d = reg->drivers[json_integer_value(ix)];
    if (drv)
        *drv = d;
    for (const mle_resource_type *const *t = d->desc->types; *t; t++)
        if (strcmp((*t)->name, type) == 0)
            return *t;
    return NULL;
}

const char *mle_registry_suggest(const mle_registry *reg, const char *type)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    const char *key;
    json_t *v;
    json_object_foreach(reg->types, key, v) {
        size_t d = mle_levenshtein(type, key);
        if (d < best_d) {
            best_d = d;
            best = key;
        }
    }
    /* Beyond a third of the name it is a different word, not a typo. */
    if (!best || best_d > strlen(type) / 3 + 1)
        return NULL;
    return best;
}

int mle_driver_supports_cloud(const mle_driver *d, const char *cloud)
{
    if (!d->clouds)
        return 1;
    for (const char *const *c = d->clouds; *c; c++)
        if (strcmp(*c, "any") == 0 || strcmp(*c, cloud) == 0)
            return 1;
    return 0;
}

static int check_types(const mle_driver *desc, const char *path, mle_error **err)
{
    if (!desc->types)
        return mle_fail(err, MLE_E_INVALID, "%s: driver '%s' offers no resource types", path,
                        desc->name);
    for (const mle_resource_type *const *t = desc->types; *t; t++) {
        const mle_resource_type *rt = *t;
        if (rt->struct_size < MLE_TYPE_MIN_SIZE)
            return mle_fail(err, MLE_E_INVALID,
                            "%s: resource type descriptor too small (%u bytes, need %zu)", path,
                            rt->struct_size, (size_t)MLE_TYPE_MIN_SIZE);
        if (!rt->name || !rt->read)
            return mle_fail(err, MLE_E_INVALID, "%s: a resource type lacks a name or read",
                            path);
        if (!(rt->flags & MLE_RT_DATA_SOURCE) && (!rt->create || !rt->del))
            return mle_fail(err, MLE_E_INVALID, "%s: resource type %s lacks create or delete",
                            path, rt->name);
    }
    return 0;
}

static int check_descriptor(const mle_driver *desc, const char *path, mle_error **err)
{
    if (desc->struct_size < MLE_DRIVER_MIN_SIZE)
        return mle_fail(err, MLE_E_INVALID,
                        "%s: driver descriptor too small (%u bytes, ABI %d.%d needs %zu)", path,
                        desc->struct_size, MLE_ABI_MAJOR, MLE_ABI_MINOR,
                        (size_t)MLE_DRIVER_MIN_SIZE);
    if (desc->abi_major != MLE_ABI_MAJOR) {
        mle_fail(err, MLE_E_INVALID,
                 "%s: driver built for ABI %u.%u, this mlengine speaks ABI %d.%d", path,
                 desc->abi_major, desc->abi_minor, MLE_ABI_MAJOR, MLE_ABI_MINOR);
        if (err)
            mle_error_set_hint(*err, "rebuild the driver against this mlengine's "
                                     "include/mlengine/driver.h");
        return -1;
    }
    if (!desc->name || !*desc->name)
        return mle_fail(err, MLE_E_INVALID, "%s: driver descriptor has no name", path);
    return check_types(desc, path, err);
}

static int register_types(mle_registry *reg, mle_loaded_driver *d, mle_error **err)
{
    for (const mle_resource_type *const *t = d->desc->types; *t; t++) {
        json_t *ix = json_object_get(reg->types, (*t)->name);
        if (ix) {
            mle_loaded_driver *other = reg->drivers[json_integer_value(ix)];
            return mle_fail(err, MLE_E_CONFLICT,
                            "resource type %s is offered by two drivers: %s and %s",
                            (*t)->name, other->path, d->path);
        }
    }
    for (const mle_resource_type *const *t = d->desc->types; *t; t++)
        json_object_set_new(reg->types, (*t)->name, json_integer((json_int_t)reg->n));
    return 0;
}

static void registry_push(mle_registry *reg, mle_loaded_driver *d)
{
    if (reg->n == reg->cap) {
        reg->cap = reg->cap ? reg->cap * 2 : 8;
        reg->drivers = realloc(reg->drivers, reg->cap * sizeof(*reg->drivers));
        if (!reg->drivers)
            abort();
    }
    reg->drivers[reg->n++] = d;
}

static const mle_driver *open_driver(const char *path, void **dl_out, mle_error **err)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl)
        return mle_fail(err, MLE_E_INVALID, "%s: not a loadable shared object: %s", path,
                        dlerror()), NULL;
    void *sym = dlsym(dl, MLE_DRIVER_ENTRY_SYMBOL);
    if (!sym) {
        dlclose(dl);
        mle_fail(err, MLE_E_INVALID, "%s: not an mlengine driver (no %s symbol)", path,
                 MLE_DRIVER_ENTRY_SYMBOL);
        return NULL;
    }
    mle_driver_entry_fn entry;
    memcpy(&entry, &sym, sizeof(entry)); /* ISO C forbids the direct cast */
    const mle_driver *desc = entry();
    if (!desc) {
        dlclose(dl);
        mle_fail(err, MLE_E_INVALID, "%s: %s returned no descriptor", path,
                 MLE_DRIVER_ENTRY_SYMBOL);
        return NULL;
    }
    *dl_out = dl;
    return desc;
}

int mle_registry_load_file(mle_registry *reg, const char *path, mle_error **err)
{
    void *dl = NULL;
    const mle_driver *desc = open_driver(path, &dl, err);
    if (!desc)
        return -1;
    if (check_descriptor(desc, path, err) != 0) {
        dlclose(dl);
        return -1;
    }
    if (mle_registry_driver(reg, desc->name))
        return 0; /* shadowed by a driver of the same name found earlier in the path */
    mle_loaded_driver *d = calloc(1, sizeof(*d));
    if (!d)
        abort();
    d->name = strdup(desc->name);
    d->path = strdup(path);
    d->dl = dl;
    d->desc = desc;
    pthread_mutex_init(&d->init_lock, NULL);
    if (register_types(reg, d, err) != 0) {
        loaded_free(d);
        return -1;
    }
    registry_push(reg, d);
    return 0;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Names sorted so that loading order (and so error messages) never depends on readdir. */
static int sorted_entries(const char *dir, char ***names, size_t *n)
{
    struct dirent **list = NULL;
    int k = scandir(dir, &list, NULL, alphasort);
    if (k < 0)
        return -1;
    *names = calloc((size_t)k + 1, sizeof(char *));
    *n = 0;
    for (int i = 0; i < k; i++) {
        if (list[i]->d_name[0] != '.')
            (*names)[(*n)++] = strdup(list[i]->d_name);
        free(list[i]);
    }
    free(list);
    return 0;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int load_dir(mle_registry *reg, const char *dir, int depth, mle_error **err)
{
    char **names;
    size_t n;
    if (sorted_entries(dir, &names, &n) != 0)
        return 0; /* a missing search dir is normal (e.g. not installed) */
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, names[i]) < 0)
            abort();
        if (has_suffix(names[i], ".so") && !is_dir(p))
            rc = mle_registry_load_file(reg, p, err);
        else if (depth > 0 && is_dir(p))
            rc = load_dir(reg, p, depth - 1, err);
        free(p);
    }
    free_names(names, n);
    return rc;
}

static int load_env_path(mle_registry *reg, mle_error **err)
{
    const char *env = getenv("MLENGINE_DRIVER_PATH");
    if (!env || !*env)
        return 0;
    char *copy = strdup(env), *save = NULL;
    int rc = 0;
    for (char *d = strtok_r(copy, ":", &save); d && rc == 0; d = strtok_r(NULL, ":", &save))
        rc = load_dir(reg, d, 0, err);
    free(copy);
    return rc;
}

int mle_registry_load(const char *const *extra_dirs, size_t n_extra, mle_registry **out,
                      mle_error **err)
{
    mle_registry *reg = mle_registry_new();
    int rc = 0;
    for (size_t i = 0; i < n_extra && rc == 0; i++) {
        if (!is_dir(extra_dirs[i]))
            rc = mle_fail(err, MLE_E_NOT_FOUND, "--driver-path %s: no such directory",
                          extra_dirs[i]);
        else
            rc = load_dir(reg, extra_dirs[i], 0, err);
    }
    if (rc == 0)
        rc = load_env_path(reg, err);
    if (rc == 0)
        rc = load_dir(reg, MLE_BUILD_DRIVER_DIR, 1, err);
    if (rc == 0)
        rc = load_dir(reg, MLE_INSTALL_DRIVER_DIR, 0, err);
    if (rc != 0) {
        mle_registry_free(reg);
        return -1;
    }
    *out = reg;
    return 0;
}

/* Options given by the stack, over the defaults of the driver's option table. */
static json_t *driver_options(const mle_driver *d, const json_t *given, mle_error **err)
{
    json_t *opts = given ? json_deep_copy(given) : json_object();
    for (size_t i = 0; i < d->n_options; i++) {
        const mle_option *o = &d->options[i];
        if (json_object_get(opts, o->name) || !o->default_json)
            continue;
        json_t *def = json_loads(o->default_json, JSON_DECODE_ANY, NULL);
        if (def)
            json_object_set_new(opts, o->name, def);
    }
    const char *key;
    json_t *v;
    json_object_foreach(opts, key, v) {
        int known = 0;
        for (size_t i = 0; i < d->n_options; i++)
            known |= strcmp(d->options[i].name, key) == 0;
        if (!known) {
            json_decref(opts);
            mle_fail(err, MLE_E_INVALID, "driver %s has no option \"%s\"", d->name, key);
            return NULL;
        }
    }
    return opts;
}

int mle_registry_init(mle_registry *reg, mle_loaded_driver *drv, const mle_host_services *svc,
                      const json_t *options, mle_error **err)
{
    (void)reg;
    int rc = 0;
    pthread_mutex_lock(&drv->init_lock);
    if (drv->initialized)
        goto out;
    json_t *opts = driver_options(drv->desc, options, err);
    if (!opts) {
        rc = -1;
        goto out;
    }
    drv->host = mle_host_new(svc, drv->name);
    if (drv->desc->init) {
        mle_error *e = NULL;
        if (drv->desc->init(drv->host, MLE_V(opts), &drv->ctx, &e) != 0) {
            if (!e)
                e = mle_error_new(MLE_E_INTERNAL, "init failed without saying why");
            mle_error_prefix(e, "driver %s: ", drv->name);
            if (err)
                *err = e;
            else
                mle_error_free(e);
            rc = -1;
        }
    }
    json_decref(opts);
    drv->initialized = rc == 0;
out:
    pthread_mutex_unlock(&drv->init_lock);
    return rc;
}
