/*
 * loader.h — finds driver .so files, loads them (dlopen RTLD_NOW|RTLD_LOCAL), checks their
 * descriptors against the ABI, and keeps the registry of resource types they offer.
 *
 * Search order: --driver-path dirs, MLENGINE_DRIVER_PATH (':'-separated), the build dir (one
 * level of subfolders, since meson builds drivers/<name>/<name>.so), the install dir. A driver
 * name found twice is taken from the first dir (so a user can shadow a built-in); a resource
 * type offered by two different drivers is an error naming both files.
 * Drivers are initialised lazily (mle_registry_init) with the options the stack gives them.
 */
#ifndef MLE_CORE_LOADER_H
#define MLE_CORE_LOADER_H

#include <pthread.h>
#include <jansson.h>
#include <mlengine/driver.h>
#include "error.h"
#include "host.h"

typedef struct mle_loaded_driver {
    char *name;     /* descriptor name */
    char *path;     /* file it came from */
    void *dl;       /* dlopen handle */
    const mle_driver *desc; /* borrowed from the .so */
    mle_host *host; /* made at init */
    void *ctx;      /* from desc->init */
    int initialized;
    pthread_mutex_t init_lock;
} mle_loaded_driver;

typedef struct mle_registry mle_registry;

/* Load every driver in the search path. extra_dirs (borrowed, n entries) come first.
 * Returns 0 and *out (caller frees with mle_registry_free) or -1 with *err (one line). */
int mle_registry_load(const char *const *extra_dirs, size_t n_extra, mle_registry **out,
                      mle_error **err);
/* Load one file (used by the loader and by tests). */
int mle_registry_load_file(mle_registry *reg, const char *path, mle_error **err);
/* An empty registry (caller frees). */
mle_registry *mle_registry_new(void);
void mle_registry_free(mle_registry *reg);

size_t mle_registry_count(const mle_registry *reg);
mle_loaded_driver *mle_registry_at(mle_registry *reg, size_t i); /* borrowed */
mle_loaded_driver *mle_registry_driver(mle_registry *reg, const char *name); /* borrowed */

/* The type named `type` and its driver (borrowed), or NULL. */
const mle_resource_type *mle_registry_type(const mle_registry *reg, const char *type,
                                           mle_loaded_driver **drv);
/* The known type name closest to `type` (borrowed), or NULL when nothing is close. */
const char *mle_registry_suggest(const mle_registry *reg, const char *type);

/* Initialise a driver once per run with its options (borrowed; defaults from its option
 * table are applied first). Thread-safe. */
int mle_registry_init(mle_registry *reg, mle_loaded_driver *drv, const mle_host_services *svc,
                      const json_t *options, mle_error **err);

/* Does this driver support `cloud` ("aws")? "any" supports all. */
int mle_driver_supports_cloud(const mle_driver *d, const char *cloud);

#endif
