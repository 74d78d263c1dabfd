/*
 * test_crypto.c — unit tests of core/crypto.c against published vectors (FIPS 180-2 SHA-256,
 * RFC 4231 HMAC, RFC 4648 base64), signatures verified back with OpenSSL using the public
 * half of keys generated here, AES-GCM sealing (round trip, wrong key, tampering, wrong aad),
 * scrypt against Python's hashlib.scrypt, and state-key parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "crypto.h"

static void assert_hex(const uint8_t *b, size_t n, const char *expect)
{
    char *h = mle_hex(b, n);
    assert_string_equal(h, expect);
    free(h);
}

static void test_sha256_vectors(void **state)
{
    uint8_t d[32];
    mle_sha256("abc", 3, d);
    assert_hex(d, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    mle_sha256("", 0, d);
    assert_hex(d, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    mle_sha256(two, strlen(two), d);
    assert_hex(d, 32, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_hmac_rfc4231(void **state)
{
    uint8_t out[32];
    uint8_t k1[20];
    memset(k1, 0x0b, sizeof k1);
    mle_hmac_sha256(k1, sizeof k1, "Hi There", 8, out); /* test case 1 */
    assert_hex(out, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    const char *d2 = "what do ya want for nothing?"; /* test case 2 */
    mle_hmac_sha256("Jefe", 4, d2, strlen(d2), out);
    assert_hex(out, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    uint8_t k3[20], d3[50]; /* test case 3 */
    memset(k3, 0xaa, sizeof k3);
    memset(d3, 0xdd, sizeof d3);
    mle_hmac_sha256(k3, sizeof k3, d3, sizeof d3, out);
    assert_hex(out, 32, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

    uint8_t k6[131]; /* test case 6: a key longer than the block */
    memset(k6, 0xaa, sizeof k6);
    const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    mle_hmac_sha256(k6, sizeof k6, d6, strlen(d6), out);
    assert_hex(out, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    mle_hmac_sha256(NULL, 0, "", 0, out); /* empty key and message */
    assert_hex(out, 32, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void test_hex(void **state)
{
    const uint8_t b[] = {0x00, 0x01, 0xab, 0xff};
    assert_hex(b, 4, "0001abff");
    assert_hex(b, 0, "");
}

static void test_base64_rfc4648(void **state)
{
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
                                      "Zm9vYmFy"};
    static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *s = mle_base64_encode(in[i], strlen(in[i]), 0);
        assert_string_equal(s, std[i]);
        free(s);
        s = mle_base64_encode(in[i], strlen(in[i]), 1);
        assert_string_equal(s, url[i]);
        free(s);
        for (int variant = 0; variant < 2; variant++) {
            size_t n = 99;
            uint8_t *d = mle_base64_decode(variant ? url[i] : std[i], &n);
            assert_non_null(d);
            assert_int_equal(n, strlen(in[i]));
            assert_memory_equal(d, in[i], n);
            assert_int_equal(d[n], 0); /* NUL after the bytes */
            free(d);
        }
    }
}

static void test_base64_alphabets_and_errors(void **state)
{
    const uint8_t b[] = {0xfb, 0xff, 0xbf};
    char *s = mle_base64_encode(b, 3, 0);
    assert_string_equal(s, "+/+/");
    free(s);
    s = mle_base64_encode(b, 3, 1);
    assert_string_equal(s, "-_-_");
    free(s);
    size_t n = 0;
    uint8_t *d = mle_base64_decode("-_-_", &n);
    assert_int_equal(n, 3);
    assert_memory_equal(d, b, 3);
    free(d);
    d = mle_base64_decode("Zm9v\nYmFy\n", &n); /* line-wrapped input */
    assert_int_equal(n, 6);
    assert_memory_equal(d, "foobar", 6);
    free(d);
    assert_null(mle_base64_decode("Zm9v!", &n));
    assert_null(mle_base64_decode("Z", &n));       /* impossible length */
    assert_null(mle_base64_decode("Zg=x", &n));    /* '=' in the middle */
    assert_null(mle_base64_decode("Zg===", &n));   /* too much padding */
    assert_null(mle_base64_decode("Zm8==", &n));   /* padding that does not fit */
    assert_null(mle_base64_decode(NULL, &n));
}

/* ---- signatures ---- */

static char *key_pem(EVP_PKEY *k, int traditional)
{
    BIO *b = BIO_new(BIO_s_mem());
    int ok = traditional ? PEM_write_bio_PrivateKey_traditional(b, k, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    assert_int_equal(ok, 1);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

static int verify_der(EVP_PKEY *k, const void *data, size_t n, const uint8_t *sig,
                      size_t sig_len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
             EVP_DigestVerify(md, sig, sig_len, data, n) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

/* JOSE r||s back to DER so OpenSSL can verify it. */
static int verify_jose(EVP_PKEY *k, const void *data, size_t n, const uint8_t sig[64])
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    int ok = verify_der(k, data, n, der, (size_t)der_len);
    OPENSSL_free(der);
    return ok;
}

static void test_es256(void **state)
{
    const char *jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtbGVuZ2luZSJ9";
    for (int traditional = 0; traditional < 2; traditional++) {
        EVP_PKEY *k = EVP_EC_gen("P-256");
        assert_non_null(k);
        char *pem = key_pem(k, traditional);
        uint8_t *sig = NULL;
        size_t sig_len = 0;
        mle_error *err = NULL;
        assert_int_equal(mle_sign_pem(pem, MLE_SIGN_ES256, jwt, strlen(jwt), &sig, &sig_len,
                                      &err), 0);
        assert_null(err);
        assert_int_equal(sig_len, 64);
        assert_true(verify_jose(k, jwt, strlen(jwt), sig));
        assert_false(verify_jose(k, "other", 5, sig));
        free(sig);

        /* The wrong algorithm for this key is an input error. */
        assert_int_equal(mle_sign_pem(pem, MLE_SIGN_RS256, jwt, strlen(jwt), &sig, &sig_len,
                                      &err), -1);
        assert_int_equal(err->code, MLE_E_INVALID);
        assert_null(sig);
        mle_error_free(err);
        free(pem);
        EVP_PKEY_free(k);
    }
}

static void test_es256_refuses_other_curves(void **state)
{
    EVP_PKEY *k = EVP_EC_gen("P-384");
    char *pem = key_pem(k, 0);
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    mle_error *err = NULL;
    assert_int_equal(mle_sign_pem(pem, MLE_SIGN_ES256, "x", 1, &sig, &sig_len, &err), -1);
    assert_int_equal(err->code, MLE_E_INVALID);
    assert_non_null(strstr(err->message, "P-256"));
    mle_error_free(err);
    free(pem);
    EVP_PKEY_free(k);
}

static void test_rs256(void **state)
{
    EVP_PKEY *k = EVP_RSA_gen(2048);
    assert_non_null(k);
    const char *msg = "header.payload";
    for (int traditional = 0; traditional < 2; traditional++) {
        char *pem = key_pem(k, traditional);
        uint8_t *sig = NULL;
        size_t sig_len = 0;
        mle_error *err = NULL;
        assert_int_equal(mle_sign_pem(pem, MLE_SIGN_RS256, msg, strlen(msg), &sig, &sig_len,
                                      &err), 0);
        assert_int_equal(sig_len, 256);
        assert_true(verify_der(k, msg, strlen(msg), sig, sig_len));
        assert_false(verify_der(k, "header.payloaX", strlen(msg), sig, sig_len));
        /* PKCS#1 v1.5 is deterministic: same key, same message, same signature. */
        uint8_t *sig2 = NULL;
        size_t sig2_len = 0;
        assert_int_equal(mle_sign_pem(pem, MLE_SIGN_RS256, msg, strlen(msg), &sig2, &sig2_len,
                                      NULL), 0);
        assert_memory_equal(sig, sig2, sig_len);
        free(sig);
        free(sig2);
        assert_int_equal(mle_sign_pem(pem, MLE_SIGN_ES256, msg, strlen(msg), &sig, &sig_len,
                                      &err), -1);
        assert_int_equal(err->code, MLE_E_INVALID);
        mle_error_free(err);
        free(pem);
    }
    EVP_PKEY_free(k);
}

static void test_sign_bad_keys(void **state)
{
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    mle_error *err = NULL;
    assert_int_equal(mle_sign_pem("not a key", MLE_SIGN_RS256, "x", 1, &sig, &sig_len, &err),
                     -1);
    assert_int_equal(err->code, MLE_E_INVALID);
    assert_non_null(err->hint);
    mle_error_free(err);

    /* An encrypted key must fail at once, never prompt on the terminal. */
    EVP_PKEY *k = EVP_EC_gen("P-256");
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, k, EVP_aes_256_cbc(), "pw", 2, NULL,
                                                   NULL), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *pem = strndup(data, (size_t)n);
    BIO_free(b);
    assert_int_equal(mle_sign_pem(pem, MLE_SIGN_ES256, "x", 1, &sig, &sig_len, &err), -1);
    assert_int_equal(err->code, MLE_E_INVALID);
    mle_error_free(err);
    free(pem);
    EVP_PKEY_free(k);
}

/* ---- random, uuid ---- */

static void test_random_and_uuid(void **state)
{
    uint8_t a[32] = {0}, b[32] = {0};
    assert_int_equal(mle_random_bytes(a, sizeof a), 0);
    assert_int_equal(mle_random_bytes(b, sizeof b), 0);
    assert_memory_not_equal(a, b, sizeof a);

    char *u1 = mle_uuid4(), *u2 = mle_uuid4();
    assert_non_null(u1);
    assert_int_equal(strlen(u1), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(u1[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", u1[i]));
    }
    assert_int_equal(u1[14], '4');
    assert_non_null(strchr("89ab", u1[19]));
    assert_string_not_equal(u1, u2);
    free(u1);
    free(u2);
}

/* ---- sealing ---- */

static void test_seal_round_trip(void **state)
{
    uint8_t key[32];
    memset(key, 0x42, sizeof key);
    const char *pt = "db-password: hunter2-but-longer";
    char *s1 = mle_seal(key, pt, strlen(pt), "aws_db_instance.main");
    char *s2 = mle_seal(key, pt, strlen(pt), "aws_db_instance.main");
    assert_non_null(s1);
    assert_int_equal(strncmp(s1, "v1:", 3), 0);
    assert_string_not_equal(s1, s2); /* fresh nonce each time */
    assert_null(strstr(s1, "hunter2"));

    size_t n = 0;
    mle_error *err = NULL;
    uint8_t *out = mle_unseal(key, s1, "aws_db_instance.main", &n, &err);
    assert_non_null(out);
    assert_null(err);
    assert_int_equal(n, strlen(pt));
    assert_memory_equal(out, pt, n);
    assert_int_equal(out[n], 0);
    free(out);

    /* Layout: base64(nonce12 || ciphertext || tag16). */
    size_t raw_len = 0;
    uint8_t *raw = mle_base64_decode(s1 + 3, &raw_len);
    assert_int_equal(raw_len, 12 + strlen(pt) + 16);
    free(raw);
    free(s1);
    free(s2);

    char *empty = mle_seal(key, "", 0, NULL);
    out = mle_unseal(key, empty, NULL, &n, &err);
    assert_non_null(out);
    assert_int_equal(n, 0);
    free(out);
    free(empty);
}

static void expect_auth_failure(const uint8_t key[32], const char *sealed, const char *aad)
{
    size_t n = 0;
    mle_error *err = NULL;
    assert_null(mle_unseal(key, sealed, aad, &n, &err));
    assert_non_null(err);
    assert_int_equal(err->code, MLE_E_AUTH);
    assert_non_null(strstr(err->message, "wrong"));
    mle_error_free(err);
}

static void test_seal_wrong_key_tamper_aad(void **state)
{
    uint8_t key[32], other[32];
    assert_int_equal(mle_random_bytes(key, 32), 0);
    memcpy(other, key, 32);
    other[31] ^= 1;
    const char *pt = "{\"token\":\"s3cr3t\"}";
    char *sealed = mle_seal(key, pt, strlen(pt), "k8s_secret.app");

    expect_auth_failure(other, sealed, "k8s_secret.app");
    expect_auth_failure(key, sealed, "k8s_secret.other"); /* moved to another resource */
    expect_auth_failure(key, sealed, NULL);

    /* Flip one bit in the ciphertext, then in the tag. */
    size_t raw_len = 0;
    uint8_t *raw = mle_base64_decode(sealed + 3, &raw_len);
    for (int where = 0; where < 2; where++) {
        size_t at = where == 0 ? 12 + 3 : raw_len - 1;
        raw[at] ^= 0x01;
        char *b64 = mle_base64_encode(raw, raw_len, 0);
        char *tampered = malloc(strlen(b64) + 4);
        strcpy(tampered, "v1:");
        strcat(tampered, b64);
        expect_auth_failure(key, tampered, "k8s_secret.app");
        raw[at] ^= 0x01;
        free(b64);
        free(tampered);
    }
    free(raw);

    mle_error *err = NULL;
    size_t n;
    assert_null(mle_unseal(key, "v2:abcd", NULL, &n, &err));
    assert_int_equal(err->code, MLE_E_INVALID);
    mle_error_free(err);
    assert_null(mle_unseal(key, "v1:c2hvcnQ=", NULL, &n, &err)); /* shorter than nonce+tag */
    assert_int_equal(err->code, MLE_E_INVALID);
    mle_error_free(err);
    free(sealed);
}

/* ---- keys ---- */

static void test_scrypt_known_answer(void **state)
{
    /* Reference: Python hashlib.scrypt(pw, salt=..., n=32768, r=8, p=1, dklen=32). */
    uint8_t out[32];
    mle_error *err = NULL;
    const char *salt = "mlengine-salt-16";
    assert_int_equal(mle_key_from_passphrase("correct horse battery staple",
                                             (const uint8_t *)salt, strlen(salt), out, &err),
                     0);
    assert_hex(out, 32, "1bdfc71b0f45f9a77cf176b3f51faee9d5cefe6996772297217a4fd2cd44a788");
    const char *salt2 = "0123456789abcdef";
    assert_int_equal(mle_key_from_passphrase("", (const uint8_t *)salt2, 16, out, &err), 0);
    assert_hex(out, 32, "d4f2fa2b95276c6570f423a94ac4fe6751b3b2132de1204b43916a3f47e1dd04");
}

static void test_key_parsing(void **state)
{
    uint8_t expect[32], out[32];
    for (int i = 0; i < 32; i++)
        expect[i] = (uint8_t)(i * 7 + 1);
    char *hex = mle_hex(expect, 32);
    char *b64 = mle_base64_encode(expect, 32, 0);
    char *b64url = mle_base64_encode(expect, 32, 1);
    mle_error *err = NULL;

    assert_int_equal(mle_key_from_hex_or_base64(hex, out, &err), 0);
    assert_memory_equal(out, expect, 32);
    for (char *p = hex; *p; p++) /* upper-case hex too */
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 32);
    assert_int_equal(mle_key_from_hex_or_base64(hex, out, &err), 0);
    assert_memory_equal(out, expect, 32);
    assert_int_equal(mle_key_from_hex_or_base64(b64, out, &err), 0);
    assert_memory_equal(out, expect, 32);
    assert_int_equal(mle_key_from_hex_or_base64(b64url, out, &err), 0);
    assert_memory_equal(out, expect, 32);

    /* 16 bytes of base64: the wrong size; the message must not echo the key. */
    const char *short_key = "c2l4dGVlbiBieXRlIGtleQ=="; /* "sixteen byte key" */
    assert_int_equal(mle_key_from_hex_or_base64(short_key, out, &err), -1);
    assert_int_equal(err->code, MLE_E_INVALID);
    assert_null(strstr(err->message, short_key));
    assert_non_null(strstr(err->message, "16 bytes"));
    mle_error_free(err);
    assert_int_equal(mle_key_from_hex_or_base64("zz not a key", out, &err), -1);
    assert_int_equal(err->code, MLE_E_INVALID);
    mle_error_free(err);
    assert_int_equal(mle_key_from_hex_or_base64(NULL, out, &err), -1);
    mle_error_free(err);
    free(hex);
    free(b64);
    free(b64url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base64_rfc4648),
        cmocka_unit_test(test_base64_alphabets_and_errors),
        cmocka_unit_test(test_es256),
        cmocka_unit_test(test_es256_refuses_other_curves),
        cmocka_unit_test(test_rs256),
        cmocka_unit_test(test_sign_bad_keys),
        cmocka_unit_test(test_random_and_uuid),
        cmocka_unit_test(test_seal_round_trip),
        cmocka_unit_test(test_seal_wrong_key_tamper_aad),
        cmocka_unit_test(test_scrypt_known_answer),
        cmocka_unit_test(test_key_parsing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
