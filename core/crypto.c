/*
 * crypto.c — owns the core's cryptography over OpenSSL 3: SHA-256, HMAC, hex/base64,
 * RS256/ES256 PEM signing, the CSPRNG, UUIDv4, AES-256-GCM sealing of state secrets and the
 * derivation/parsing of state keys.
 *
 * OpenSSL 3 initialises itself on first use (thread-safe), so there is no init call here.
 */
#include "crypto.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#define SEAL_PREFIX "v1:"
#define SEAL_NONCE 12
#define SEAL_TAG 16

void mle_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    if (EVP_Digest(data ? data : "", len, out, &n, EVP_sha256(), NULL) != 1)
        memset(out, 0, 32);
}

void mle_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                     uint8_t out[32])
{
    /* OpenSSL 3 refuses a NULL key even of length 0; an empty key is legal HMAC. */
    static const uint8_t empty[1];
    unsigned int n = 32;
    if (!HMAC(EVP_sha256(), key ? key : empty, (int)key_len, data ? data : empty, len, out,
              &n))
        memset(out, 0, 32);
}

char *mle_hex(const uint8_t *data, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(n * 2 + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = digits[data[i] >> 4];
        s[2 * i + 1] = digits[data[i] & 15];
    }
    s[2 * n] = '\0';
    return s;
}

char *mle_base64_encode(const void *data, size_t len, int url)
{
    if (len > (size_t)INT32_MAX / 4 * 3)
        return NULL;
    char *s = malloc(4 * ((len + 2) / 3) + 1);
    if (!s)
        return NULL;
    int n = EVP_EncodeBlock((unsigned char *)s, data ? data : (const void *)"", (int)len);
    s[n] = '\0';
    if (!url)
        return s;
    for (char *p = s; *p; p++) {
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
        else if (*p == '=')
            *p = '\0';
    }
    return s;
}

/* Rewrite s into the standard alphabet with padding, as EVP_DecodeBlock wants. Returns the
 * normalised text (caller frees) and the number of padding characters, or NULL when s holds
 * a character outside both alphabets or '=' in the middle. */
static char *b64_normalise(const char *s, size_t *pad)
{
    size_t n = strlen(s);
    char *t = malloc(n + 4);
    if (!t)
        return NULL;
    size_t o = 0, eq = 0;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isspace(c))
            continue;
        if (c == '=') {
            eq++;
            continue;
        }
        if (eq || !(isalnum(c) || c == '+' || c == '/' || c == '-' || c == '_'))
            goto bad;
        t[o++] = c == '-' ? '+' : c == '_' ? '/' : (char)c;
    }
    if (o % 4 == 1 || eq > 2)
        goto bad;
    *pad = (4 - o % 4) % 4;
    if (eq && eq != *pad)
        goto bad;
    for (size_t i = 0; i < *pad; i++)
        t[o++] = '=';
    t[o] = '\0';
    return t;
bad:
    free(t);
    return NULL;
}

uint8_t *mle_base64_decode(const char *s, size_t *out_len)
{
    if (!s)
        return NULL;
    size_t pad = 0;
    char *t = b64_normalise(s, &pad);
    if (!t)
        return NULL;
    size_t tn = strlen(t);
    if (tn > (size_t)INT32_MAX) {
        free(t);
        return NULL;
    }
    uint8_t *out = malloc(tn / 4 * 3 + 1);
    if (!out) {
        free(t);
        return NULL;
    }
    int n = tn ? EVP_DecodeBlock(out, (unsigned char *)t, (int)tn) : 0;
    free(t);
    if (n < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the zero bytes that padding stands for. */
    size_t len = (size_t)n - pad;
    out[len] = '\0';
    if (out_len)
        *out_len = len;
    return out;
}

/* The reason of the newest OpenSSL error on this thread, then an empty queue. */
static const char *ossl_reason(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    if (!e) {
        snprintf(buf, n, "unknown OpenSSL error");
    } else {
        const char *r = ERR_reason_error_string(e);
        snprintf(buf, n, "%s", r ? r : "unknown OpenSSL error");
    }
    ERR_clear_error();
    return buf;
}

/* Never prompt on the terminal for a passphrase: an encrypted key is an input error. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static EVP_PKEY *read_private_key(const char *pem, mle_error **err)
{
    if (!pem) {
        mle_fail(err, MLE_E_INVALID, "signing: no PEM private key given");
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (!bio) {
        mle_fail(err, MLE_E_INTERNAL, "signing: out of memory");
        return NULL;
    }
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (!pkey) {
        char why[256];
        mle_fail(err, MLE_E_INVALID, "signing: cannot read the PEM private key: %s",
                 ossl_reason(why, sizeof why));
        if (err)
            mle_error_set_hint(*err, "give an unencrypted PKCS#8, RSA or EC private key in "
                                     "PEM form (-----BEGIN PRIVATE KEY-----)");
    }
    return pkey;
}

static int key_fits(EVP_PKEY *pkey, mle_sign_alg alg, mle_error **err)
{
    if (alg == MLE_SIGN_RS256) {
        if (EVP_PKEY_is_a(pkey, "RSA"))
            return 0;
        return mle_fail(err, MLE_E_INVALID, "signing RS256: the key is not an RSA key");
    }
    if (alg != MLE_SIGN_ES256)
        return mle_fail(err, MLE_E_INVALID, "signing: unknown algorithm %d", (int)alg);
    char group[64] = "";
    if (!EVP_PKEY_is_a(pkey, "EC") ||
        !EVP_PKEY_get_group_name(pkey, group, sizeof group, NULL))
        return mle_fail(err, MLE_E_INVALID, "signing ES256: the key is not an EC key");
    if (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)
        return mle_fail(err, MLE_E_INVALID,
                        "signing ES256: the key is on curve %s, ES256 needs P-256", group);
    return 0;
}

/* DER ECDSA-Sig-Value -> JOSE r || s, each left-padded to 32 bytes (RFC 7518 §3.4). */
static int der_to_jose(const uint8_t *der, size_t der_len, uint8_t out[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!es)
        return -1;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(es, &r, &s);
    int ok = BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32;
    ECDSA_SIG_free(es);
    return ok ? 0 : -1;
}

static int digest_sign(EVP_PKEY *pkey, const void *data, size_t len, uint8_t **sig,
                       size_t *sig_len, mle_error **err)
{
    char why[256];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t n = 0;
    uint8_t *buf = NULL;
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
        EVP_DigestSign(md, NULL, &n, data, len) != 1 || !(buf = malloc(n)) ||
        EVP_DigestSign(md, buf, &n, data, len) != 1) {
        EVP_MD_CTX_free(md);
        free(buf);
        return mle_fail(err, MLE_E_INTERNAL, "signing failed: %s",
                        ossl_reason(why, sizeof why));
    }
    EVP_MD_CTX_free(md);
    *sig = buf;
    *sig_len = n;
    return 0;
}

int mle_sign_pem(const char *pem, mle_sign_alg alg, const void *data, size_t len,
                 uint8_t **sig, size_t *sig_len, mle_error **err)
{
    *sig = NULL;
    *sig_len = 0;
    EVP_PKEY *pkey = read_private_key(pem, err);
    if (!pkey)
        return -1;
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    if (key_fits(pkey, alg, err) != 0 ||
        digest_sign(pkey, data ? data : "", len, &raw, &raw_len, err) != 0) {
        EVP_PKEY_free(pkey);
        return -1;
    }
    EVP_PKEY_free(pkey);
    if (alg == MLE_SIGN_RS256) {
        *sig = raw;
        *sig_len = raw_len;
        return 0;
    }
    uint8_t *jose = malloc(64);
    if (!jose || der_to_jose(raw, raw_len, jose) != 0) {
        free(raw);
        free(jose);
        return mle_fail(err, MLE_E_INTERNAL, "signing ES256: cannot re-encode the signature");
    }
    free(raw);
    *sig = jose;
    *sig_len = 64;
    return 0;
}

int mle_random_bytes(uint8_t *out, size_t n)
{
    while (n > 0) {
        int chunk = n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
        if (RAND_bytes(out, chunk) != 1)
            return -1;
        out += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

char *mle_uuid4(void)
{
    uint8_t b[16];
    if (mle_random_bytes(b, sizeof b) != 0)
        return NULL;
    b[6] = (uint8_t)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3F) | 0x80); /* variant 10xx */
    char *s = malloc(37);
    if (!s)
        return NULL;
    snprintf(s, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return s;
}

/* One AES-256-GCM pass. enc: encrypt in -> out and write tag; else decrypt and check tag.
 * Returns 0, or -1 (for decryption: the tag did not verify). */
static int gcm_run(int enc, const uint8_t key[32], const uint8_t nonce[SEAL_NONCE],
                   const char *aad, const uint8_t *in, size_t n, uint8_t *out,
                   uint8_t tag[SEAL_TAG])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c)
        return -1;
    int len = 0, ok = 1;
    ok = ok && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce, enc) == 1;
    if (ok && aad && *aad)
        ok = EVP_CipherUpdate(c, NULL, &len, (const uint8_t *)aad, (int)strlen(aad)) == 1;
    for (size_t off = 0; ok && off < n;) {
        int chunk = n - off > (1u << 30) ? (1 << 30) : (int)(n - off);
        ok = EVP_CipherUpdate(c, out + off, &len, in + off, chunk) == 1;
        off += (size_t)chunk;
    }
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEAL_TAG, tag) == 1;
    ok = ok && EVP_CipherFinal_ex(c, out + n, &len) == 1;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEAL_TAG, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    ERR_clear_error();
    return ok ? 0 : -1;
}

char *mle_seal(const uint8_t key[32], const void *pt, size_t n, const char *aad)
{
    if (n > SIZE_MAX / 2)
        return NULL;
    size_t blob_len = SEAL_NONCE + n + SEAL_TAG;
    uint8_t *blob = malloc(blob_len + 1);
    if (!blob)
        return NULL;
    uint8_t *nonce = blob, *ct = blob + SEAL_NONCE, *tag = blob + SEAL_NONCE + n;
    if (mle_random_bytes(nonce, SEAL_NONCE) != 0 ||
        gcm_run(1, key, nonce, aad, pt ? pt : (const void *)"", n, ct, tag) != 0) {
        free(blob);
        return NULL;
    }
    char *b64 = mle_base64_encode(blob, blob_len, 0);
    free(blob);
    if (!b64)
        return NULL;
    char *out = malloc(strlen(SEAL_PREFIX) + strlen(b64) + 1);
    if (out) {
        strcpy(out, SEAL_PREFIX);
        strcat(out, b64);
    }
    free(b64);
    return out;
}

uint8_t *mle_unseal(const uint8_t key[32], const char *sealed, const char *aad, size_t *n,
                    mle_error **err)
{
    if (!sealed || strncmp(sealed, SEAL_PREFIX, strlen(SEAL_PREFIX)) != 0) {
        mle_fail(err, MLE_E_INVALID, "encrypted value: not in the \"v1:\" sealed format");
        return NULL;
    }
    size_t blob_len = 0;
    uint8_t *blob = mle_base64_decode(sealed + strlen(SEAL_PREFIX), &blob_len);
    if (!blob || blob_len < SEAL_NONCE + SEAL_TAG) {
        free(blob);
        mle_fail(err, MLE_E_INVALID, "encrypted value: damaged (bad base64 or too short)");
        return NULL;
    }
    size_t pt_len = blob_len - SEAL_NONCE - SEAL_TAG;
    uint8_t *pt = malloc(pt_len + 1);
    uint8_t tag[SEAL_TAG];
    memcpy(tag, blob + SEAL_NONCE + pt_len, SEAL_TAG);
    if (!pt || gcm_run(0, key, blob, aad, blob + SEAL_NONCE, pt_len, pt, tag) != 0) {
        if (pt)
            OPENSSL_cleanse(pt, pt_len);
        free(pt);
        free(blob);
        mle_fail(err, MLE_E_AUTH,
                 "cannot decrypt a sealed value: the key is wrong or the data was "
                 "tampered with");
        if (err)
            mle_error_set_hint(*err, "use the same state key or passphrase the state was "
                                     "written with");
        return NULL;
    }
    free(blob);
    pt[pt_len] = '\0';
    if (n)
        *n = pt_len;
    return pt;
}

int mle_key_from_passphrase(const char *pass, const uint8_t *salt, size_t salt_len,
                            uint8_t out[32], mle_error **err)
{
    /* N=2^15, r=8 needs 128*r*(N+2) bytes, just over OpenSSL's 32 MiB default maxmem. */
    uint64_t N = 1u << 15, maxmem = 64u * 1024 * 1024;
    uint32_t r = 8, p = 1;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!kctx)
        return mle_fail(err, MLE_E_INTERNAL, "scrypt is not available in this OpenSSL");
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                          (void *)(pass ? pass : ""),
                                          pass ? strlen(pass) : 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                          (void *)(salt ? (const void *)salt : ""),
                                          salt ? salt_len : 0),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &N),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_KDF_derive(kctx, out, 32, params) == 1;
    EVP_KDF_CTX_free(kctx);
    if (ok)
        return 0;
    char why[256];
    return mle_fail(err, MLE_E_INTERNAL, "scrypt key derivation failed: %s",
                    ossl_reason(why, sizeof why));
}

static int hex_key(const char *s, uint8_t out[32])
{
    if (strlen(s) != 64)
        return -1;
    for (size_t i = 0; i < 32; i++) {
        int hi = OPENSSL_hexchar2int((unsigned char)s[2 * i]);
        int lo = OPENSSL_hexchar2int((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int mle_key_from_hex_or_base64(const char *s, uint8_t out[32], mle_error **err)
{
    if (!s)
        return mle_fail(err, MLE_E_INVALID, "state key: none given");
    if (hex_key(s, out) == 0)
        return 0;
    size_t n = 0;
    uint8_t *raw = mle_base64_decode(s, &n);
    if (raw && n == 32) {
        memcpy(out, raw, 32);
        OPENSSL_cleanse(raw, n);
        free(raw);
        return 0;
    }
    int decoded = raw != NULL;
    if (raw)
        OPENSSL_cleanse(raw, n);
    free(raw);
    OPENSSL_cleanse(out, 32);
    if (decoded)
        mle_fail(err, MLE_E_INVALID, "state key: decodes to %zu bytes, a key is 32 bytes", n);
    else
        mle_fail(err, MLE_E_INVALID,
                 "state key: neither 64 hex characters nor base64 (%zu characters)",
                 strlen(s));
    if (err)
        mle_error_set_hint(*err, "generate one with: openssl rand -base64 32");
    return -1;
}
