/*
 * render.h — `mlengine render`: every document the stack would apply (manifests, merged
 * Helm values), one file per object under DIR/<address>/, for review in a pull request.
 */
#ifndef MLE_CORE_RENDER_H
#define MLE_CORE_RENDER_H

#include "engine.h"
#include "plan.h"

/* Ask each resource type that can render (ABI 1.1) for its documents and write them.
 * *nfiles receives the count. */
int mle_render(mle_engine *e, const mle_plan *p, const char *dir, size_t *nfiles,
               mle_error **err);

#endif
