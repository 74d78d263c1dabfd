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
#include "schema.h"

#define UNKNOWN "(known after apply)"

#define SECRET "(sensitive)"

static json_t *review_value(mle_engine *e, const json_t *v);

/* A reference reads as its value, "(known after apply)", or "(sensitive)". */
static json_t *review_ref(mle_engine *e, const json_t *v)
{
    int unknown = 0, sens = 0;
    json_t *r = mle_resolve(e, v, &unknown, &sens);
    if (unknown || sens) {
        json_decref(r);
        return json_string(unknown ? UNKNOWN : SECRET);
    }
    return r;
}

/* An expression reads as its text with a placeholder in each gap; one secret part makes
 * the whole text secret (a password inside a URL). */
static json_t *review_expr(mle_engine *e, const json_t *v)
{
    size_t len = 0, i;
    char *buf = calloc(1, 1);
    json_t *part, *out = NULL;
    json_array_foreach(json_object_get(v, "$expr"), i, part) {
        json_t *p = review_value(e, part);
        char num[64];
        const char *s = num;
        if (json_is_string(p))
            s = json_string_value(p);
        else if (json_is_integer(p))
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(p));
        else if (json_is_real(p))
            snprintf(num, sizeof(num), "%.17g", json_real_value(p));
        else
            snprintf(num, sizeof(num), "%s", json_is_true(p) ? "true" : "false");
        if (strcmp(s, SECRET) == 0)
            out = json_string(SECRET);
        size_t n = strlen(s);
        buf = realloc(buf, len + n + 1);
        memcpy(buf + len, s, n + 1);
        len += n;
        json_decref(p);
    }
    if (!out)
        out = json_string(buf);
    free(buf);
    return out;
}

/* The stack's own config, as a reviewer should read it: references resolved where known,
 * placeholders where not, and every secret — marked, or reached through a reference —
 * shown as "(sensitive)" and never in the clear. */
static json_t *review_value(mle_engine *e, const json_t *v)
{
    if (mle_marker_is_expr(v))
        return review_expr(e, v);
    if (mle_marker_is_ref(v))
        return review_ref(e, v);
    if (json_is_object(v) && json_object_size(v) == 1 && json_object_get(v, "$sensitive"))
        return json_string(SECRET);
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) json_object_set_new(out, k, review_value(e, x));
        return out;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(out, review_value(e, x));
        return out;
    }
    return json_deep_copy(v);
}

static const json_t *declared_config(mle_engine *e, const char *address)
{
    size_t i;
    json_t *r;
    json_array_foreach(e->stack->resources, i, r) {
        if (strcmp(json_string_value(json_object_get(r, "address")), address) == 0)
            return json_object_get(r, "config");
    }
    return NULL;
}

static json_t *review_config(mle_engine *e, const mle_plan_item *it,
                             const mle_resource_type *rt)
{
    const json_t *raw = declared_config(e, it->address);
    json_t *out = review_value(e, raw ? raw : it->config);
    mle_schema_apply_defaults(rt, out);
    for (size_t i = 0; i < rt->n_attrs; i++)
        if ((rt->attrs[i].flags & MLE_A_SENSITIVE) && json_object_get(out, rt->attrs[i].name))
            json_object_set_new(out, rt->attrs[i].name, json_string(SECRET));
    return out;
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
    json_t *config = review_config(e, it, c.rt);
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
