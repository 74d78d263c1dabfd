/*
 * crypto.h — the core's cryptography over OpenSSL 3: digests, HMAC, hex and base64, PEM
 * signing for JWTs (RS256, ES256), random bytes and UUIDv4, and the state-encryption
 * primitives (AES-256-GCM sealing, scrypt key derivation, key parsing).
 *
 * Every function is thread-safe and does no I/O. Buffers returned are malloc'd: the caller
 * frees them with free(). Secrets that pass through temporary buffers are wiped with
 * OPENSSL_cleanse before those buffers are freed.
 */
#ifndef MLE_CORE_CRYPTO_H
#define MLE_CORE_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include <mlengine/driver.h>
#include "error.h"

/* SHA-256 of len bytes. */
void mle_sha256(const void *data, size_t len, uint8_t out[32]);
/* HMAC-SHA-256 (RFC 2104). key may be NULL when key_len is 0. */
void mle_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                     uint8_t out[32]);

/* Lower-case hex of n bytes, NUL-terminated. Caller frees; NULL only on OOM. */
char *mle_hex(const uint8_t *data, size_t n);

/* base64 (RFC 4648 §4, padded) or, when url, base64url without padding (§5). Caller frees;
 * NULL only on OOM. */
char *mle_base64_encode(const void *data, size_t len, int url);
/* Decodes either alphabet (even mixed), padding optional, ASCII whitespace ignored.
 * Returns the bytes with an extra NUL after them (not counted in *out_len) so text decodes
 * can be used as a string; caller frees. NULL when s is not base64. */
uint8_t *mle_base64_decode(const char *s, size_t *out_len);

/* Sign data with a PEM private key (PKCS#8, traditional RSA or SEC1 EC; unencrypted).
 *   MLE_SIGN_RS256: RSASSA-PKCS1-v1_5 with SHA-256; *sig is the modulus-sized signature.
 *   MLE_SIGN_ES256: ECDSA P-256 with SHA-256 in the JOSE encoding: 64 bytes r || s.
 * 0 with *sig (caller frees) and *sig_len, or -1 with *err (MLE_E_INVALID: unreadable or
 * encrypted key, or a key that does not fit the algorithm). */
int mle_sign_pem(const char *pem, mle_sign_alg alg, const void *data, size_t len,
                 uint8_t **sig, size_t *sig_len, mle_error **err);

/* n bytes from OpenSSL's CSPRNG. 0 on success, -1 when the generator failed. */
int mle_random_bytes(uint8_t *out, size_t n);

/* A random (version 4, RFC 9562) UUID, lower-case "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".
 * Caller frees; NULL only when the random generator failed or on OOM. */
char *mle_uuid4(void);

/* --- state encryption --- */

/* AES-256-GCM with a fresh random 96-bit nonce. aad (may be NULL) is authenticated, not
 * stored: the same aad must be given to mle_unseal (state uses the resource address, so a
 * sealed value cannot be moved to another resource). Returns "v1:" + base64(nonce12 ||
 * ciphertext || tag16); caller frees. NULL only when OpenSSL or the RNG failed, or OOM. */
char *mle_seal(const uint8_t key[32], const void *pt, size_t n, const char *aad);

/* Open what mle_seal produced. Returns the plaintext with an extra NUL after it (not counted
 * in *n); caller frees. NULL with *err: MLE_E_INVALID when the text is not a "v1:" sealed
 * value, MLE_E_AUTH when the key is wrong or the data (or aad) was tampered with. */
uint8_t *mle_unseal(const uint8_t key[32], const char *sealed, const char *aad, size_t *n,
                    mle_error **err);

/* scrypt (N=2^15, r=8, p=1) of a passphrase into a 32-byte key. Use a random salt of at least
 * 16 bytes stored next to the data. 0 on success, -1 with *err (MLE_E_INTERNAL). Takes about
 * 0.1 s and 32 MiB by design. */
int mle_key_from_passphrase(const char *pass, const uint8_t *salt, size_t salt_len,
                            uint8_t out[32], mle_error **err);

/* A 32-byte key given as 64 hex characters or as base64/base64url. 0, or -1 with *err
 * (MLE_E_INVALID; the message never contains the key). */
int mle_key_from_hex_or_base64(const char *s, uint8_t out[32], mle_error **err);

#endif
