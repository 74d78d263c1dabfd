/*
 * yaml.h — YAML (libyaml) to and from JSON values.
 *
 * Scalars: plain scalars that read as null/true/false/integers/floats (YAML 1.2 core schema)
 * become those JSON types; quoted scalars stay strings. Anchors and aliases are resolved;
 * a document nesting deeper than 256 levels or an alias bomb is refused.
 */
#ifndef MLE_CORE_YAML_H
#define MLE_CORE_YAML_H

#include <jansson.h>
#include "error.h"

/* Every document of a (multi-document) stream, as a JSON array. New reference or NULL with
 * *err ("line L column C: problem"). */
json_t *mle_yaml_parse(const char *text, size_t len, mle_error **err);

/* One YAML document for `v` (block style, keys in object order). Caller frees. */
char *mle_yaml_emit(const json_t *v, mle_error **err);

#endif
