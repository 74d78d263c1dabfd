/*
 * schema.h — everything the core does with a driver's static attribute tables: validate a
 * stack's config, apply defaults, find sensitive attributes, and export JSON Schema.
 */
#ifndef MLE_CORE_SCHEMA_H
#define MLE_CORE_SCHEMA_H

#include <jansson.h>
#include <mlengine/driver.h>
#include "error.h"

/* The attribute named `name` (borrowed), or NULL. */
const mle_attr_schema *mle_schema_attr(const mle_resource_type *t, const char *name);
int mle_schema_is_sensitive(const mle_resource_type *t, const char *name);
/* Is attribute `name` a secret: sensitive in the schema of t (may be NULL), or named in
 * `extra` (borrowed array of names, may be NULL) because of where its value came from? */
int mle_schema_is_secret(const mle_resource_type *t, const json_t *extra, const char *name);

/* Check a config (borrowed) against the type: unknown attributes (naming the closest valid
 * one), missing required ones, computed-only ones set, and the JSON type of every value that
 * is known (markers are checked when resolved). */
int mle_schema_validate(const mle_resource_type *t, const json_t *config, mle_error **err);

/* Fill defaults into config (modified in place) for attributes it does not set. */
void mle_schema_apply_defaults(const mle_resource_type *t, json_t *config);

/* A copy of attrs (new reference) with every sensitive attribute replaced by "(sensitive)". */
json_t *mle_schema_redact(const mle_resource_type *t, const json_t *attrs);

/* JSON Schema (draft 2020-12) of every type of the driver. New reference. */
json_t *mle_schema_export(const mle_driver *d);

/* Edit distance, for "did you mean". */
size_t mle_levenshtein(const char *a, const char *b);

/* Name of an attribute type ("string", "list(string)"). Static or from `buf`. */
const char *mle_schema_type_name(mle_attr_type t, mle_attr_type elem, char *buf, size_t n);

#endif
