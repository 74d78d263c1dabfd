/*
 * render.c — owns `mlengine render`: the drivers say what a resource's documents are; this
 * writes them under the output folder, never outside it.
 */
#include "render.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apply.h"

#define UNKNOWN "(known after apply)"

/* An expression with unknown parts reads as its text with a placeholder in each gap. */
static json_t *expr_text(const json_t *v)
{
    size_t len = 0, i;
    char *buf = calloc(1, 1);
    json_t *part;
    json_array_foreach(json_object_get(v, "$expr"), i, part) {
        char num[64];
        const char *s = UNKNOWN;
        if (json_is_string(part))
            s = json_string_value(part);
        else if (json_is_integer(part))
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(part)), s = num;
        else if (json_is_real(part))
            snprintf(num, sizeof(num), "%.17g", json_real_value(part)), s = num;
        size_t n = strlen(s);
        buf = realloc(buf, len + n + 1);
        memcpy(buf + len, s, n + 1);
        len += n;
    }
    json_t *out = json_string(buf);
    free(buf);
    return out;
}

/* Markers that could not be resolved become a readable placeholder. */
static json_t *placeholders(const json_t *v)
{
    if (mle_marker_is_expr(v))
        return expr_text(v);
    if (mle_marker_is_ref(v))
        return json_string(UNKNOWN);
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) json_object_set_new(out, k, placeholders(x));
        return out;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(out, placeholders(x));
        return out;
    }
    return json_deep_copy(v);
}

static int mkdir_p(const char *path)
{
    char *p = strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

/* A file name a driver gave must stay a plain name inside the resource's folder. */
static int safe_name(const char *name)
{
    return *name && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static int write_file(const char *dir, const char *address, const char *name,
                      const char *text, mle_error **err)
{
    char *folder = NULL, *path = NULL;
    if (asprintf(&folder, "%s/%s", dir, address) < 0 || asprintf(&path, "%s/%s", folder, name) < 0)
        abort();
    int rc = 0;
    FILE *f = NULL;
    if (mkdir_p(folder) != 0 || !(f = fopen(path, "w")))
        rc = mle_fail(err, MLE_E_IO, "cannot write %s: %s", path, strerror(errno));
    if (f) {
        fputs(text, f);
        if (fclose(f) != 0)
            rc = mle_fail(err, MLE_E_IO, "cannot write %s: %s", path, strerror(errno));
    }
    free(folder);
    free(path);
    return rc;
}

static int render_item(mle_engine *e, const mle_plan_item *it, const char *dir, size_t *nfiles,
                       mle_error **err)
{
    mle_call c;
    memset(&c, 0, sizeof(c));
    c.rt = mle_engine_type(e, it->type, &c.drv, err);
    if (!c.rt)
        return -1;
    if (!MLE_HAS_FIELD(c.rt, mle_resource_type, render) || !c.rt->render)
        return 0;
    if (mle_engine_driver_ready(e, c.drv, err) != 0)
        return -1;
    json_t *config = placeholders(it->config);
    c.op.kind = MLE_OPK_RENDER;
    c.op.type = it->type;
    c.op.address = it->address;
    c.op.config = MLE_V(config);
    c.op.state = MLE_V(it->before);
    mle_call_run(e, &c);
    int rc = 0;
    if (c.result.status != MLE_OP_DONE) {
        if (err) {
            *err = c.result.error ? c.result.error
                                  : mle_error_new(MLE_E_INTERNAL, "%s: render gave nothing",
                                                  it->address);
            c.result.error = NULL;
        }
        rc = -1;
    }
    const char *name;
    json_t *text;
    json_object_foreach(json_object_get(c.result.attrs, "files"), name, text) {
        if (rc != 0)
            break;
        if (!safe_name(name) || !json_is_string(text)) {
            rc = mle_fail(err, MLE_E_INTERNAL, "%s: driver %s rendered an invalid file \"%s\"",
                          it->address, c.drv->name, name);
            break;
        }
        rc = write_file(dir, it->address, name, json_string_value(text), err);
        *nfiles += rc == 0;
    }
    mle_op_result_clear(&c.result);
    json_decref(config);
    return rc;
}

int mle_render(mle_engine *e, const mle_plan *p, const char *dir, size_t *nfiles,
               mle_error **err)
{
    *nfiles = 0;
    if (mkdir_p(dir) != 0)
        return mle_fail(err, MLE_E_IO, "cannot create %s: %s", dir, strerror(errno));
    for (size_t i = 0; i < p->n; i++) {
        const mle_plan_item *it = &p->items[i];
        if (it->action == MLE_ACT_DELETE || it->data)
            continue;
        if (render_item(e, it, dir, nfiles, err) != 0)
            return -1;
    }
    return 0;
}
