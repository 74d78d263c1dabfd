/*
 * secrets.c — owns the state key (where it comes from, checking it) and sealing/opening the
 * sensitive values that pass between the engine and the state store.
 */
#include "secrets.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "schema.h"

#define CHECK_PLAIN "mlengine-state-key-check"

static char *read_small_file(const char *path, mle_error **err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        mle_fail(err, MLE_E_IO, "cannot read state key file %s: %s", path, strerror(errno));
        return NULL;
    }
    char buf[512];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = 0;
    return strdup(buf);
}

static char *default_key_path(void)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    char *p = NULL;
    if (xdg && *xdg) {
        if (asprintf(&p, "%s/mlengine/state.key", xdg) < 0)
            abort();
    } else {
        if (asprintf(&p, "%s/.config/mlengine/state.key", home && *home ? home : ".") < 0)
            abort();
    }
    return p;
}

static void mkdirs_for(const char *path)
{
    char *d = strdup(path);
    for (char *s = d + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        mkdir(d, 0700);
        *s = '/';
    }
    free(d);
}

/* First use on this machine: make a key file only the user can read. */
static char *generate_key_file(mle_engine *e, const char *path, mle_error **err)
{
    uint8_t key[32];
    if (mle_random_bytes(key, sizeof(key)) != 0) {
        mle_fail(err, MLE_E_INTERNAL, "no random bytes for a state key");
        return NULL;
    }
    char *hex = mle_hex(key, sizeof(key));
    mkdirs_for(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        free(hex);
        if (errno == EEXIST)
            return read_small_file(path, err);
        mle_fail(err, MLE_E_IO, "cannot create state key file %s: %s", path, strerror(errno));
        return NULL;
    }
    int ok = write(fd, hex, 64) == 64 && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        free(hex);
        mle_fail(err, MLE_E_IO, "cannot write state key file %s", path);
        return NULL;
    }
    mle_log(e->log, MLE_LOG_WARN, NULL,
            "generated a state encryption key at %s: back it up; without it the secrets in "
            "your state cannot be read (set MLENGINE_STATE_KEY in CI)",
            path);
    return hex;
}

static int key_from_passphrase(mle_engine *e, const char *pass, uint8_t out[32],
                               mle_error **err)
{
    char *salt_b64 = mle_state_meta_get(e->state, "kdf_salt");
    uint8_t salt[16];
    size_t n = 0;
    if (salt_b64) {
        uint8_t *s = mle_base64_decode(salt_b64, &n);
        if (!s || n != sizeof(salt)) {
            free(s);
            free(salt_b64);
            return mle_fail(err, MLE_E_INVALID, "state holds a malformed key salt");
        }
        memcpy(salt, s, sizeof(salt));
        free(s);
        free(salt_b64);
    } else {
        if (mle_random_bytes(salt, sizeof(salt)) != 0)
            return mle_fail(err, MLE_E_INTERNAL, "no random bytes for a key salt");
        char *b = mle_base64_encode(salt, sizeof(salt), 0);
        int rc = mle_state_meta_set(e->state, "kdf_salt", b, err);
        free(b);
        if (rc != 0)
            return -1;
    }
    return mle_key_from_passphrase(pass, salt, sizeof(salt), out, err);
}

static int load_key(mle_engine *e, uint8_t out[32], mle_error **err)
{
    const char *env = getenv("MLENGINE_STATE_KEY");
    if (env && *env)
        return mle_key_from_hex_or_base64(env, out, err);
    const char *file = getenv("MLENGINE_STATE_KEY_FILE");
    const char *pass = getenv("MLENGINE_STATE_PASSPHRASE");
    if (!file && pass && *pass)
        return key_from_passphrase(e, pass, out, err);
    char *path = file && *file ? strdup(file) : default_key_path();
    char *text = NULL;
    char *check = mle_state_meta_get(e->state, "key_check");
    if (access(path, R_OK) == 0 || (file && *file)) {
        text = read_small_file(path, err);
    } else if (check) {
        /* Secrets sealed elsewhere: a fresh key could never open them. */
        mle_fail(err, MLE_E_AUTH, "the state %s holds sealed secrets and no key is set",
                 mle_state_path(e->state));
        if (err)
            mle_error_set_hint(*err, "set MLENGINE_STATE_KEY, MLENGINE_STATE_KEY_FILE or "
                                     "MLENGINE_STATE_PASSPHRASE to the key it was written with");
    } else {
        text = generate_key_file(e, path, err);
    }
    free(check);
    int rc = text ? mle_key_from_hex_or_base64(text, out, err) : -1;
    if (rc != 0 && err && *err)
        mle_error_prefix(*err, "state key from %s: ", path);
    free(text);
    free(path);
    return rc;
}

/* The state remembers a value sealed with its key: a different key fails here, clearly. */
static int check_key(mle_engine *e, const uint8_t key[32], mle_error **err)
{
    char *check = mle_state_meta_get(e->state, "key_check");
    if (!check) {
        char *sealed = mle_seal(key, CHECK_PLAIN, strlen(CHECK_PLAIN), "key_check");
        int rc = mle_state_meta_set(e->state, "key_check", sealed, err);
        free(sealed);
        return rc;
    }
    size_t n = 0;
    uint8_t *plain = mle_unseal(key, check, "key_check", &n, NULL);
    free(check);
    int ok = plain && n == strlen(CHECK_PLAIN) && memcmp(plain, CHECK_PLAIN, n) == 0;
    free(plain);
    if (ok)
        return 0;
    mle_fail(err, MLE_E_AUTH,
             "the state %s holds secrets sealed with another key: this key cannot open them",
             mle_state_path(e->state));
    if (err)
        mle_error_set_hint(*err, "set MLENGINE_STATE_KEY (or MLENGINE_STATE_KEY_FILE / "
                                 "MLENGINE_STATE_PASSPHRASE) to the key this state was "
                                 "written with");
    return -1;
}

int mle_secrets_key(mle_engine *e, const uint8_t **key, mle_error **err)
{
    if (!e->state_key_loaded) {
        if (load_key(e, e->state_key, err) != 0 || check_key(e, e->state_key, err) != 0)
            return -1;
        e->state_key_loaded = 1;
    }
    *key = e->state_key;
    return 0;
}

int mle_secrets_is_sealed(const json_t *v)
{
    return json_is_object(v) && json_object_size(v) == 1 &&
           json_is_string(json_object_get(v, "$sealed"));
}

static char *aad_for(const char *address, const char *attr)
{
    char *a = NULL;
    if (asprintf(&a, "%s#%s", address ? address : "", attr) < 0)
        abort();
    return a;
}

json_t *mle_secrets_seal(mle_engine *e, const json_t *v, const char *aad, mle_error **err)
{
    const uint8_t *key;
    if (mle_secrets_key(e, &key, err) != 0)
        return NULL;
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    char *sealed = mle_seal(key, text, strlen(text), aad);
    json_t *out = json_pack("{s:s}", "$sealed", sealed);
    free(text);
    free(sealed);
    return out;
}

json_t *mle_secrets_open(mle_engine *e, const json_t *v, const char *aad, mle_error **err)
{
    const uint8_t *key;
    if (mle_secrets_key(e, &key, err) != 0)
        return NULL;
    size_t n = 0;
    uint8_t *plain =
        mle_unseal(key, json_string_value(json_object_get(v, "$sealed")), aad, &n, err);
    if (!plain)
        return NULL;
    json_t *out = json_loadb((const char *)plain, n, JSON_DECODE_ANY, NULL);
    free(plain);
    if (!out)
        mle_fail(err, MLE_E_INVALID, "a sealed value is not JSON");
    return out;
}

/* Replace obj[k] by its sealed or opened form (aad "<scope>#<k>"). */
static int transform(mle_engine *e, json_t *obj, const char *k, const char *scope, int seal,
                     mle_error **err)
{
    char *aad = aad_for(scope, k);
    json_t *v = json_object_get(obj, k);
    json_t *out = seal ? mle_secrets_seal(e, v, aad, err) : mle_secrets_open(e, v, aad, err);
    free(aad);
    if (!out)
        return -1;
    json_object_set_new(obj, k, out);
    return 0;
}

static int seal_fields(mle_engine *e, const mle_resource_type *rt, const char *type,
                       const json_t *extra, json_t *obj, mle_error **err)
{
    if (!json_is_object(obj))
        return 0;
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(obj, tmp, k, v) {
        if (json_is_null(v) || mle_secrets_is_sealed(v) || !mle_schema_is_secret(rt, extra, k))
            continue;
        if (transform(e, obj, k, type, 1, err) != 0)
            return -1;
    }
    return 0;
}

/* The AAD binds a sealed value to its resource type and attribute — what a swap would
 * change — not to the address, which moves with `state mv`. */
int mle_secrets_seal_resource(mle_engine *e, const char *type, const json_t *extra,
                              const json_t *attrs, const json_t *config, json_t **attrs_out,
                              json_t **config_out, mle_error **err)
{
    const mle_resource_type *rt = mle_registry_type(e->reg, type, NULL);
    *attrs_out = attrs ? json_deep_copy(attrs) : NULL;
    *config_out = config ? json_deep_copy(config) : NULL;
    if (seal_fields(e, rt, type, extra, *attrs_out, err) != 0 ||
        seal_fields(e, rt, type, extra, *config_out, err) != 0) {
        json_decref(*attrs_out);
        json_decref(*config_out);
        return -1;
    }
    return 0;
}

static int open_fields(mle_engine *e, const char *type, json_t *obj, mle_error **err)
{
    if (!json_is_object(obj))
        return 0;
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(obj, tmp, k, v) {
        if (mle_secrets_is_sealed(v) && transform(e, obj, k, type, 0, err) != 0)
            return -1;
    }
    return 0;
}

int mle_secrets_open_resource(mle_engine *e, mle_state_resource *r, mle_error **err)
{
    if (open_fields(e, r->type, r->attrs, err) != 0 ||
        open_fields(e, r->type, r->config, err) != 0) {
        if (err && *err)
            mle_error_prefix(*err, "%s: ", r->address);
        return -1;
    }
    return 0;
}

/* Outputs: only the "value" of each entry is ever sealed. */
static json_t *outputs_transform(mle_engine *e, const json_t *outputs, int seal,
                                 mle_error **err)
{
    json_t *out = json_deep_copy(outputs);
    const char *k;
    json_t *o;
    json_object_foreach(out, k, o) {
        json_t *v = json_object_get(o, "value");
        int want = seal ? json_is_true(json_object_get(o, "sensitive")) && v &&
                              !mle_secrets_is_sealed(v)
                        : mle_secrets_is_sealed(v);
        if (!want)
            continue;
        char *aad = aad_for("output", k);
        json_t *t = seal ? mle_secrets_seal(e, v, aad, err) : mle_secrets_open(e, v, aad, err);
        free(aad);
        if (!t) {
            json_decref(out);
            return NULL;
        }
        json_object_set_new(o, "value", t);
    }
    return out;
}

json_t *mle_secrets_seal_outputs(mle_engine *e, const json_t *outputs, mle_error **err)
{
    return outputs_transform(e, outputs, 1, err);
}

json_t *mle_secrets_open_outputs(mle_engine *e, const json_t *outputs, mle_error **err)
{
    return outputs_transform(e, outputs, 0, err);
}
