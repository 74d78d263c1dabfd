/*
 * hello_driver.c — a third-party driver built outside mlengine's build with nothing but
 * include/mlengine/driver.h: the proof of the "header only" promise. It keeps its
 * resources as files named by their ID under the directory given by its `dir` option.
 * Built with -DABI_BUMP=1 it claims the next ABI major, which the loader must refuse.
 */
#include <mlengine/driver.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef ABI_BUMP
#define ABI_BUMP 0
#endif

typedef struct ctx {
    char dir[512];
} ctx;

static int hello_init(const mle_host *h, const mle_value *options, void **out, mle_error **err)
{
    (void)err; /* nothing here can fail */
    ctx *c = h->alloc(h, sizeof(ctx));
    const char *dir = h->v_str(h->v_get(options, "dir"));
    snprintf(c->dir, sizeof(c->dir), "%s", dir ? dir : ".");
    *out = c;
    return 0;
}

static void hello_fini(const mle_host *h, void *c) { h->free(h, c); }

static void path_of(const mle_op *op, const char *id, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", ((ctx *)op->ctx)->dir, id);
}

static mle_value *attrs_of(const mle_host *h, const char *id, const char *greeting)
{
    mle_value *a = h->v_object();
    h->v_set(a, "id", h->v_string(id));
    h->v_set(a, "greeting", h->v_string(greeting));
    return a;
}

static mle_op_status hello_create(const mle_host *h, const mle_op *op)
{
    const char *greeting = h->v_str(h->v_get(op->config, "greeting"));
    char id[64], path[600];
    snprintf(id, sizeof(id), "hello-%.8s", op->token);
    path_of(op, id, path, sizeof(path));
    FILE *f = fopen(path, "w");
    if (!f)
        return h->op_error(h, op, h->error_new(h, MLE_E_IO, "cannot write %s", path));
    fputs(greeting, f);
    fclose(f);
    h->log(h, MLE_LOG_INFO, "created %s", id);
    return h->op_done(h, op, id, attrs_of(h, id, greeting));
}

static mle_op_status hello_read(const mle_host *h, const mle_op *op)
{
    char path[600], buf[256] = "";
    path_of(op, op->id, path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (!f)
        return h->op_not_found(h, op);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    return h->op_done(h, op, op->id, attrs_of(h, op->id, buf));
}

static mle_op_status hello_delete(const mle_host *h, const mle_op *op)
{
    char path[600];
    path_of(op, op->id, path, sizeof(path));
    if (unlink(path) != 0)
        return h->op_not_found(h, op);
    return h->op_done(h, op, op->id, NULL);
}

static const mle_attr_schema hello_attrs[] = {
    {"greeting", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL, "What to say."},
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The file name."},
};

static const mle_resource_type hello_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "hello_greeting",
    .description = "A greeting written to a file.",
    .attrs = hello_attrs,
    .n_attrs = sizeof(hello_attrs) / sizeof(hello_attrs[0]),
    .create = hello_create,
    .read = hello_read,
    .del = hello_delete,
};

static const mle_resource_type *const hello_types[] = {&hello_type, NULL};
static const char *const hello_clouds[] = {"any", NULL};
static const mle_option hello_options[] = {
    {"dir", MLE_T_STRING, "\".\"", "Where greetings are written.", 0},
};

static const mle_driver hello_driver = {
    .struct_size = sizeof(mle_driver),
    .abi_major = MLE_ABI_MAJOR + ABI_BUMP,
    .abi_minor = MLE_ABI_MINOR,
    .name = "hello",
    .version = "1.0.0",
    .description = "A driver built from the public header alone",
    .clouds = hello_clouds,
    .types = hello_types,
    .options = hello_options,
    .n_options = 1,
    .init = hello_init,
    .fini = hello_fini,
};

MLE_EXPORT const mle_driver *mle_driver_entry(void) { return &hello_driver; }
