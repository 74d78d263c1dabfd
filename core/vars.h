/*
 * vars.h — the values of a stack's variables, gathered from where users set them:
 * MLENGINE_VAR_<name> in the environment, --var-file FILE (JSON, or YAML), --var NAME=VALUE.
 * Later sources win, in that order (Terraform's precedence).
 */
#ifndef MLE_CORE_VARS_H
#define MLE_CORE_VARS_H

#include <stddef.h>
#include <jansson.h>
#include "error.h"

/* Variables from the text of a var file (untrusted input). `name` is used in messages and
 * picks the parser: ".json" jansson, anything else YAML (one document, a map). New
 * reference (an object) or NULL with *err. */
json_t *mle_vars_parse(const char *name, const char *text, size_t len, mle_error **err);

/* Everything, merged: environment, then files (read from disk), then NAME=VALUE pairs.
 * New reference or NULL with *err. */
json_t *mle_vars_collect(const char *const *files, size_t nfiles, const char *const *pairs,
                         size_t npairs, mle_error **err);

#endif
