/*
 * vars.c — owns gathering variable values from the environment, var files and the command
 * line. A var file is untrusted input: it is parsed by jansson or libyaml only, and anything
 * but a map of names is refused.
 */
#include "vars.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yaml.h"

static void vars_from_env(json_t *vars)
{
    extern char **environ;
    for (char **env = environ; *env; env++) {
        if (strncmp(*env, "MLENGINE_VAR_", 13) != 0)
            continue;
        const char *eq = strchr(*env, '=');
        if (!eq || eq == *env + 13)
            continue;
        char *name = strndup(*env + 13, (size_t)(eq - *env - 13));
        json_object_set_new(vars, name, json_string(eq + 1));
        free(name);
    }
}

static int has_ext(const char *p, const char *ext)
{
    size_t n = strlen(p), m = strlen(ext);
    return n > m && strcmp(p + n - m, ext) == 0;
}

json_t *mle_vars_parse(const char *name, const char *text, size_t len, mle_error **err)
{
    json_t *doc = NULL;
    if (has_ext(name, ".json")) {
        json_error_t je;
        doc = json_loadb(text, len, 0, &je);
        if (!doc)
            mle_fail(err, MLE_E_INVALID, "--var-file %s:%d:%d: %s", name, je.line, je.column,
                     je.text);
    } else {
        json_t *docs = mle_yaml_parse(text, len, err);
        if (docs && json_array_size(docs) == 1)
            doc = json_incref(json_array_get(docs, 0));
        else if (docs)
            mle_fail(err, MLE_E_INVALID, "--var-file %s: expected exactly one YAML document",
                     name);
        else if (err && *err)
            mle_error_prefix(*err, "--var-file %s: ", name);
        json_decref(docs);
    }
    if (!doc)
        return NULL;
    if (!json_is_object(doc)) {
        json_decref(doc);
        mle_fail(err, MLE_E_INVALID, "--var-file %s: expected a map of name: value", name);
        return NULL;
    }
    return doc;
}

static char *slurp(const char *path, size_t *len, mle_error **err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        mle_fail(err, MLE_E_IO, "--var-file %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, k;
    char chunk[8192];
    *len = 0;
    while ((k = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (*len + k + 1 > cap) {
            cap = (*len + k + 1) * 2;
            buf = realloc(buf, cap);
            if (!buf)
                abort();
        }
        memcpy(buf + *len, chunk, k);
        *len += k;
    }
    fclose(f);
    if (!buf)
        buf = calloc(1, 1);
    buf[*len] = 0;
    return buf;
}

json_t *mle_vars_collect(const char *const *files, size_t nfiles, const char *const *pairs,
                         size_t npairs, mle_error **err)
{
    json_t *vars = json_object();
    vars_from_env(vars);
    for (size_t i = 0; i < nfiles; i++) {
        size_t len = 0;
        char *text = slurp(files[i], &len, err);
        json_t *doc = text ? mle_vars_parse(files[i], text, len, err) : NULL;
        free(text);
        if (!doc) {
            json_decref(vars);
            return NULL;
        }
        json_object_update(vars, doc);
        json_decref(doc);
    }
    for (size_t i = 0; i < npairs; i++) {
        const char *eq = strchr(pairs[i], '=');
        if (!eq || eq == pairs[i]) {
            json_decref(vars);
            mle_fail(err, MLE_E_INVALID, "--var %s: expected NAME=VALUE", pairs[i]);
            return NULL;
        }
        char *name = strndup(pairs[i], (size_t)(eq - pairs[i]));
        json_object_set_new(vars, name, json_string(eq + 1));
        free(name);
    }
    return vars;
}
