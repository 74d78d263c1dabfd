/*
 * secrets.h — secrets at rest: sensitive values are sealed (AES-256-GCM) before they reach
 * the state store and opened when read back.
 *
 * The key comes from, in order: MLENGINE_STATE_KEY (32 bytes as hex or base64),
 * MLENGINE_STATE_KEY_FILE (a file holding such a key), MLENGINE_STATE_PASSPHRASE (scrypt, salt
 * kept in the state), else a key file generated once under
 * $XDG_CONFIG_HOME/mlengine/state.key (mode 0600) and reused by every local state. A state
 * records a sealed check value, so a wrong key is a clear error before anything is read.
 * A sealed value is {"$sealed": "v1:<base64>"} in place of the plain value, bound (AAD) to
 * the resource type and attribute so it cannot be moved elsewhere unnoticed.
 */
#ifndef MLE_CORE_SECRETS_H
#define MLE_CORE_SECRETS_H

#include <jansson.h>
#include "engine.h"
#include "error.h"
#include "state.h"

/* Make the key available (lazily: only when something needs sealing or opening). */
int mle_secrets_key(mle_engine *e, const uint8_t **key, mle_error **err);

/* Copies of attrs/config (new references; NULL in gives NULL out) with every sensitive value
 * sealed: schema-sensitive attributes of `type` plus `extra` names (borrowed array or NULL). */
int mle_secrets_seal_resource(mle_engine *e, const char *type, const json_t *extra,
                              const json_t *attrs, const json_t *config, json_t **attrs_out,
                              json_t **config_out, mle_error **err);
/* Open every sealed value of r->attrs and r->config in place. */
int mle_secrets_open_resource(mle_engine *e, mle_state_resource *r, mle_error **err);

/* Outputs {name: {value, sensitive}}: sensitive values sealed. New reference or NULL. */
json_t *mle_secrets_seal_outputs(mle_engine *e, const json_t *outputs, mle_error **err);
json_t *mle_secrets_open_outputs(mle_engine *e, const json_t *outputs, mle_error **err);

/* {"$sealed": "v1:..."} of any JSON value, bound to aad. New reference or NULL with *err. */
json_t *mle_secrets_seal(mle_engine *e, const json_t *v, const char *aad, mle_error **err);
/* The value a sealed one holds (new reference), or NULL with *err (wrong key, tampered). */
json_t *mle_secrets_open(mle_engine *e, const json_t *sealed, const char *aad, mle_error **err);

/* Is v a sealed value? */
int mle_secrets_is_sealed(const json_t *v);

#endif
