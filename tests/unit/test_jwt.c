/*
 * Unit tests for shared/lh_jwt.c: base64url, tokens minted here with libcrypto (HS256,
 * HS384, HS512, RS256 and ES256, keys from PEM and JWKS), and the ways a token must be
 * refused: a changed byte, "alg": "none", an algorithm the key or the rules do not allow
 * (HMAC with a public key as its secret), an unknown kid, and each claim check.
 */
#include "lh_test.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <time.h>

#include "lh_jwt.h"

static const char secret_a[] = "0123456789abcdef0123456789abcdef-a";
static const char secret_b[] = "0123456789abcdef0123456789abcdef-b";

/* Signs in[0..n) into sig (*sl bytes): an HMAC with secret (md), or key's signature
 * (ES256 in the JWS form: r || s). Returns 0 or -1. */
static int sign(const EVP_MD *md, const char *secret, EVP_PKEY *key, int es256,
                const char *in, size_t n, uint8_t *sig, size_t *sl)
{
    if (secret != NULL) {
        unsigned l = 0;

        if (HMAC(md, secret, (int)strlen(secret), (const uint8_t *)in, n, sig, &l) == NULL)
            return -1;
        *sl = l;
        return 0;
    }
    {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        uint8_t der[1024];
        size_t dl = sizeof(der);
        int ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
                 EVP_DigestSign(ctx, der, &dl, (const uint8_t *)in, n) == 1;

        EVP_MD_CTX_free(ctx);
        if (!ok)
            return -1;
        if (!es256) {
            memcpy(sig, der, dl);
            *sl = dl;
            return 0;
        }
        {
            const uint8_t *p = der;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);

            if (es == NULL)
                return -1;
            BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
            ECDSA_SIG_free(es);
            *sl = 64;
            return 0;
        }
    }
}

/* A token from JSON texts, signed as sign() does; into out (cap 4096). */
static char *mint(char *out, const char *hdr, const char *claims, const EVP_MD *md,
                  const char *secret, EVP_PKEY *key, int es256)
{
    uint8_t sig[1024];
    size_t sl = 0, o;

    o = lh_jwt_b64url_encode((const uint8_t *)hdr, strlen(hdr), out);
    out[o++] = '.';
    o += lh_jwt_b64url_encode((const uint8_t *)claims, strlen(claims), out + o);
    if (sign(md, secret, key, es256, out, o, sig, &sl) < 0) {
        strcpy(out, "sign-failed");
        return out;
    }
    out[o++] = '.';
    lh_jwt_b64url_encode(sig, sl, out + o);
    return out;
}

static lh_jwt_rules_t rules_now(void)
{
    lh_jwt_rules_t r;

    memset(&r, 0, sizeof(r));
    r.algs = LH_JWT_HS_ALL | LH_JWT_RS256 | LH_JWT_ES256;
    r.now = 1800000000;
    r.leeway_s = 5;
    return r;
}

static int verify(const char *tok, const lh_jwt_keys_t *k, const lh_jwt_rules_t *r)
{
    lh_jwt_claims_t c;
    int rc = lh_jwt_verify(tok, strlen(tok), k, r, &c);

    lh_jwt_claims_free(&c);
    return rc;
}

static char *pem_of(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *copy = NULL;
    long n;

    if (b != NULL && PEM_write_bio_PUBKEY(b, key) == 1) {
        n = BIO_get_mem_data(b, &data);
        copy = malloc((size_t)n + 1);
        if (copy != NULL) {
            memcpy(copy, data, (size_t)n);
            copy[n] = '\0';
        }
    }
    BIO_free(b);
    return copy;
}

/* ---- Tests ---------------------------------------------------------------------------- */

LH_TEST(base64url)
{
    uint8_t out[64];
    char enc[64];

    LH_CHECK_INT(lh_jwt_b64url_decode("", 0, out), 0);
    LH_CHECK_INT(lh_jwt_b64url_decode("QQ", 2, out), 1);
    LH_CHECK(out[0] == 'A');
    LH_CHECK_INT(lh_jwt_b64url_decode("QUI", 3, out), 2);
    LH_CHECK_INT(lh_jwt_b64url_decode("QUJD", 4, out), 3);
    LH_CHECK_INT(lh_jwt_b64url_decode("-_8", 3, out), 2);
    LH_CHECK(out[0] == 0xfb && out[1] == 0xff);
    LH_CHECK_INT(lh_jwt_b64url_decode("QQ==", 4, out), -1); /* no padding */
    LH_CHECK_INT(lh_jwt_b64url_decode("Q+", 2, out), -1);   /* base64, not base64url */
    LH_CHECK_INT(lh_jwt_b64url_decode("QUJDR", 5, out), -1); /* 5 chars: not a length */
    LH_CHECK_INT(lh_jwt_b64url_decode("QR", 2, out), -1);   /* stray low bits */
    LH_CHECK_INT(lh_jwt_b64url_encode((const uint8_t *)"ABC", 3, enc), 4);
    LH_CHECK(strcmp(enc, "QUJD") == 0);
    LH_CHECK_INT(lh_jwt_b64url_encode((const uint8_t *)"\xfb\xff", 2, enc), 3);
    LH_CHECK(strcmp(enc, "-_8") == 0);
}

LH_TEST(hmac_tokens_and_claims)
{
    char tok[4096], err[256];
    lh_jwt_keys_t *k = lh_jwt_keys_new();
    lh_jwt_rules_t r = rules_now();
    lh_jwt_claims_t c;

    LH_CHECK_INT(lh_jwt_keys_add_secret(k, NULL, secret_a, strlen(secret_a), LH_JWT_HS_ALL,
                                        err, sizeof(err)), 0);
    mint(tok, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
         "{\"sub\":\"42\",\"exp\":1800000100,\"iat\":1800000000,\"channels\":[\"feed.a\",\"b\"],"
         "\"info\":{\"name\":\"Ada\"}}",
         EVP_sha256(), secret_a, NULL, 0);
    LH_CHECK_INT(lh_jwt_verify(tok, strlen(tok), k, &r, &c), LH_JWT_OK);
    LH_CHECK(c.sub != NULL && strcmp(c.sub, "42") == 0);
    LH_CHECK_INT(c.exp, 1800000100);
    LH_CHECK_INT(c.nchannels, 2);
    LH_CHECK(c.nchannels == 2 && strcmp(c.channels[1], "b") == 0);
    LH_CHECK(c.info != NULL && strcmp(c.info, "{\"name\":\"Ada\"}") == 0);
    LH_CHECK_INT(c.alg, LH_JWT_HS256);
    lh_jwt_claims_free(&c);
    mint(tok, "{\"alg\":\"HS384\"}", "{}", EVP_sha384(), secret_a, NULL, 0);
    LH_CHECK_INT(lh_jwt_verify(tok, strlen(tok), k, &r, &c), LH_JWT_OK);
    LH_CHECK(c.sub != NULL && c.sub[0] == '\0'); /* anonymous claims: empty sub */
    lh_jwt_claims_free(&c);
    mint(tok, "{\"alg\":\"HS512\"}", "{\"sub\":\"x\"}", EVP_sha512(), secret_a, NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_OK);
    /* Signed with another secret. */
    mint(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"42\"}", EVP_sha256(), secret_b, NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_SIGNATURE);
    /* The rules pin the algorithms. */
    r.algs = LH_JWT_HS256;
    mint(tok, "{\"alg\":\"HS512\"}", "{\"sub\":\"x\"}", EVP_sha512(), secret_a, NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_ALG);
    lh_jwt_keys_free(k);
}

LH_TEST(a_changed_byte_anywhere_is_refused)
{
    char tok[4096], bad[4096], err[256];
    lh_jwt_keys_t *k = lh_jwt_keys_new();
    lh_jwt_rules_t r = rules_now();
    size_t n;
    int wrong = 0;

    lh_jwt_keys_add_secret(k, NULL, secret_a, strlen(secret_a), LH_JWT_HS256, err,
                           sizeof(err));
    mint(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"42\",\"exp\":1800000100}", EVP_sha256(),
         secret_a, NULL, 0);
    n = strlen(tok);
    for (size_t i = 0; i < n; i++) {
        int rc;

        if (tok[i] == '.')
            continue;
        memcpy(bad, tok, n + 1);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        rc = verify(bad, k, &r);
        if (rc == LH_JWT_OK)
            wrong++;
    }
    LH_CHECK_INT(wrong, 0);
    /* Cut anywhere: refused too. */
    for (size_t i = 0; i < n; i++)
        if (lh_jwt_verify(tok, i, k, &r, &(lh_jwt_claims_t){0}) == LH_JWT_OK)
            wrong++;
    LH_CHECK_INT(wrong, 0);
    lh_jwt_keys_free(k);
}

LH_TEST(alg_none_and_malformed)
{
    char tok[4096], err[256], h[64], p[64];
    lh_jwt_keys_t *k = lh_jwt_keys_new();
    lh_jwt_rules_t r = rules_now();

    lh_jwt_keys_add_secret(k, NULL, secret_a, strlen(secret_a), LH_JWT_HS_ALL, err,
                           sizeof(err));
    lh_jwt_b64url_encode((const uint8_t *)"{\"alg\":\"none\"}", 14, h);
    lh_jwt_b64url_encode((const uint8_t *)"{\"sub\":\"42\"}", 12, p);
    snprintf(tok, sizeof(tok), "%s.%s.", h, p);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_MALFORMED); /* no signature at all */
    snprintf(tok, sizeof(tok), "%s.%s.c2ln", h, p);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_ALG);
    lh_jwt_b64url_encode((const uint8_t *)"{\"alg\":\"None\"}", 14, h);
    snprintf(tok, sizeof(tok), "%s.%s.c2ln", h, p);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_ALG);
    lh_jwt_b64url_encode((const uint8_t *)"{\"typ\":\"JWT\"}", 13, h);
    snprintf(tok, sizeof(tok), "%s.%s.c2ln", h, p);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_ALG); /* no alg */
    LH_CHECK_INT(verify("", k, &r), LH_JWT_MALFORMED);
    LH_CHECK_INT(verify("a.b", k, &r), LH_JWT_MALFORMED);
    LH_CHECK_INT(verify("a.b.c.d", k, &r), LH_JWT_MALFORMED);
    LH_CHECK_INT(verify("..", k, &r), LH_JWT_MALFORMED);
    LH_CHECK_INT(verify("!!.!!.!!", k, &r), LH_JWT_MALFORMED);
    mint(tok, "[\"alg\",\"HS256\"]", "{}", EVP_sha256(), secret_a, NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_MALFORMED); /* a header that is not an object */
    mint(tok, "{\"alg\":\"HS256\"}", "[1,2]", EVP_sha256(), secret_a, NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_MALFORMED);
    mint(tok, "{\"alg\":\"HS256\",\"crit\":[\"x\"],\"x\":1}", "{}", EVP_sha256(), secret_a,
         NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_MALFORMED);
    mint(tok, "{\"alg\":\"HS256\",\"alg\":\"HS256\"}", "{}", EVP_sha256(), secret_a, NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_CLAIMS); /* duplicate header names */
    mint(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"sub\":\"b\"}", EVP_sha256(), secret_a,
         NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_CLAIMS); /* duplicate claims */
    r.max_bytes = 20;
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_TOO_BIG);
    lh_jwt_keys_free(k);
}

LH_TEST(claim_checks)
{
    char tok[4096], err[256], body[512];
    lh_jwt_keys_t *k = lh_jwt_keys_new();
    lh_jwt_rules_t r = rules_now();
    static const struct {
        const char *claims;
        int want;
    } cases[] = {
        {"{\"exp\":1799999990}", LH_JWT_EXPIRED},      /* 10 s ago, leeway 5 */
        {"{\"exp\":1799999996}", LH_JWT_OK},           /* 4 s ago: within the leeway */
        {"{\"exp\":1800000000}", LH_JWT_OK},
        {"{\"exp\":1799999995}", LH_JWT_EXPIRED},      /* exactly at exp + leeway */
        {"{\"nbf\":1800000010}", LH_JWT_NOT_YET_VALID},
        {"{\"nbf\":1800000004}", LH_JWT_OK},
        {"{\"iat\":1800000600}", LH_JWT_NOT_YET_VALID},
        {"{\"exp\":\"1800000100\"}", LH_JWT_BAD_CLAIMS}, /* a NumericDate is a number */
        {"{\"exp\":1800000100.5}", LH_JWT_OK},
        {"{\"sub\":42}", LH_JWT_BAD_CLAIMS},
        {"{\"channels\":\"a\"}", LH_JWT_BAD_CLAIMS},
        {"{\"channels\":[\"a\",1]}", LH_JWT_BAD_CLAIMS},
        {"{\"info\":[1]}", LH_JWT_BAD_CLAIMS},
        {"{\"aud\":7}", LH_JWT_BAD_CLAIMS},
    };

    lh_jwt_keys_add_secret(k, NULL, secret_a, strlen(secret_a), LH_JWT_HS256, err,
                           sizeof(err));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc;

        mint(tok, "{\"alg\":\"HS256\"}", cases[i].claims, EVP_sha256(), secret_a, NULL, 0);
        rc = verify(tok, k, &r);
        if (rc != cases[i].want)
            printf("# %s: %s, expected %s\n", cases[i].claims, lh_jwt_reason(rc),
                   lh_jwt_reason(cases[i].want));
        LH_CHECK_INT(rc, cases[i].want);
    }
    /* Audience and issuer, when configured. */
    r.audience = "chat";
    r.issuer = "https://id.example";
    snprintf(body, sizeof(body), "{\"aud\":\"chat\",\"iss\":\"https://id.example\"}");
    LH_CHECK_INT(verify(mint(tok, "{\"alg\":\"HS256\"}", body, EVP_sha256(), secret_a, NULL, 0),
                        k, &r), LH_JWT_OK);
    snprintf(body, sizeof(body), "{\"aud\":[\"x\",\"chat\"],\"iss\":\"https://id.example\"}");
    LH_CHECK_INT(verify(mint(tok, "{\"alg\":\"HS256\"}", body, EVP_sha256(), secret_a, NULL, 0),
                        k, &r), LH_JWT_OK);
    snprintf(body, sizeof(body), "{\"aud\":\"chatroom\",\"iss\":\"https://id.example\"}");
    LH_CHECK_INT(verify(mint(tok, "{\"alg\":\"HS256\"}", body, EVP_sha256(), secret_a, NULL, 0),
                        k, &r), LH_JWT_BAD_AUDIENCE);
    snprintf(body, sizeof(body), "{\"iss\":\"https://id.example\"}");
    LH_CHECK_INT(verify(mint(tok, "{\"alg\":\"HS256\"}", body, EVP_sha256(), secret_a, NULL, 0),
                        k, &r), LH_JWT_BAD_AUDIENCE);
    snprintf(body, sizeof(body), "{\"aud\":\"chat\",\"iss\":\"https://evil.example\"}");
    LH_CHECK_INT(verify(mint(tok, "{\"alg\":\"HS256\"}", body, EVP_sha256(), secret_a, NULL, 0),
                        k, &r), LH_JWT_BAD_ISSUER);
    /* exp required, and a longest lifetime. */
    r = rules_now();
    r.require_exp = 1;
    r.max_lifetime_s = 3600;
    LH_CHECK_INT(verify(mint(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"a\"}", EVP_sha256(),
                             secret_a, NULL, 0), k, &r), LH_JWT_BAD_CLAIMS);
    LH_CHECK_INT(verify(mint(tok, "{\"alg\":\"HS256\"}", "{\"exp\":1800003600}", EVP_sha256(),
                             secret_a, NULL, 0), k, &r), LH_JWT_OK);
    LH_CHECK_INT(verify(mint(tok, "{\"alg\":\"HS256\"}", "{\"exp\":1800009999}", EVP_sha256(),
                             secret_a, NULL, 0), k, &r), LH_JWT_TOO_LONG_LIVED);
    lh_jwt_keys_free(k);
}

LH_TEST(kid_selects_the_key)
{
    char tok[4096], err[256];
    lh_jwt_keys_t *k = lh_jwt_keys_new();
    lh_jwt_rules_t r = rules_now();

    LH_CHECK_INT(lh_jwt_keys_add_secret(k, "a", secret_a, strlen(secret_a), LH_JWT_HS256, err,
                                        sizeof(err)), 0);
    LH_CHECK_INT(lh_jwt_keys_add_secret(k, "b", secret_b, strlen(secret_b), LH_JWT_HS256, err,
                                        sizeof(err)), 0);
    mint(tok, "{\"alg\":\"HS256\",\"kid\":\"b\"}", "{}", EVP_sha256(), secret_b, NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_OK);
    mint(tok, "{\"alg\":\"HS256\",\"kid\":\"a\"}", "{}", EVP_sha256(), secret_b, NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_SIGNATURE); /* kid a: a's secret only */
    mint(tok, "{\"alg\":\"HS256\",\"kid\":\"c\"}", "{}", EVP_sha256(), secret_b, NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_UNKNOWN_KID);
    mint(tok, "{\"alg\":\"HS256\"}", "{}", EVP_sha256(), secret_b, NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_UNKNOWN_KID); /* no kid-less key */
    mint(tok, "{\"alg\":\"HS256\",\"kid\":7}", "{}", EVP_sha256(), secret_b, NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_MALFORMED);
    LH_CHECK_INT(lh_jwt_keys_count(k), 2);
    lh_jwt_keys_free(k);
}

LH_TEST(rsa_and_ec_keys_from_pem_and_the_confusion_attack)
{
    char tok[4096], err[256];
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *rsa_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    char *rsa_pem = rsa ? pem_of(rsa) : NULL, *ec_pem = ec ? pem_of(ec) : NULL;
    char *small_pem = rsa_small ? pem_of(rsa_small) : NULL;
    char *p384_pem = ec384 ? pem_of(ec384) : NULL;
    lh_jwt_keys_t *k = lh_jwt_keys_new();
    lh_jwt_rules_t r = rules_now();

    LH_CHECK(rsa_pem != NULL && ec_pem != NULL && small_pem != NULL && p384_pem != NULL);
    if (rsa_pem == NULL || ec_pem == NULL || small_pem == NULL || p384_pem == NULL)
        goto out;
    LH_CHECK_INT(lh_jwt_keys_add_pem(k, "r", rsa_pem, strlen(rsa_pem), err, sizeof(err)), 0);
    LH_CHECK_INT(lh_jwt_keys_add_pem(k, "e", ec_pem, strlen(ec_pem), err, sizeof(err)), 0);
    LH_CHECK_INT(lh_jwt_keys_add_pem(k, NULL, rsa_pem, strlen(rsa_pem), err, sizeof(err)), 0);
    mint(tok, "{\"alg\":\"RS256\",\"kid\":\"r\"}", "{\"sub\":\"42\"}", NULL, NULL, rsa, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_OK);
    mint(tok, "{\"alg\":\"ES256\",\"kid\":\"e\"}", "{\"sub\":\"42\"}", NULL, NULL, ec, 1);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_OK);
    /* The EC key verifies ES256 only, the RSA key RS256 only. */
    mint(tok, "{\"alg\":\"RS256\",\"kid\":\"e\"}", "{\"sub\":\"42\"}", NULL, NULL, rsa, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_ALG);
    /* HMAC with the public key's PEM as the secret (the classic confusion): refused. */
    mint(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"admin\"}", EVP_sha256(), rsa_pem, NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_ALG);
    mint(tok, "{\"alg\":\"HS256\",\"kid\":\"r\"}", "{\"sub\":\"admin\"}", EVP_sha256(), rsa_pem,
         NULL, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_ALG);
    /* An ES256 signature of the wrong length, and one of another key. */
    mint(tok, "{\"alg\":\"ES256\",\"kid\":\"e\"}", "{\"sub\":\"42\"}", NULL, NULL, rsa, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_SIGNATURE);
    /* Keys this does not take. */
    LH_CHECK_INT(lh_jwt_keys_add_pem(k, "s", small_pem, strlen(small_pem), err, sizeof(err)),
                 -1);
    LH_CHECK(strstr(err, "2048") != NULL);
    LH_CHECK_INT(lh_jwt_keys_add_pem(k, "p", p384_pem, strlen(p384_pem), err, sizeof(err)),
                 -1);
    LH_CHECK(strstr(err, "P-256") != NULL);
    LH_CHECK_INT(lh_jwt_keys_add_pem(k, "x", "not a key", 9, err, sizeof(err)), -1);
    LH_CHECK_INT(lh_jwt_keys_add_secret(k, "short", "0123", 4, LH_JWT_HS256, err, sizeof(err)),
                 -1);
    LH_CHECK_INT(lh_jwt_keys_add_secret(k, "rs", secret_a, strlen(secret_a), LH_JWT_RS256, err,
                                        sizeof(err)), -1);
    LH_CHECK_INT(lh_jwt_keys_count(k), 3);
out:
    lh_jwt_keys_free(k);
    free(rsa_pem);
    free(ec_pem);
    free(small_pem);
    free(p384_pem);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa_small);
    EVP_PKEY_free(ec384);
}

/* A JWKS document with the keys' public parameters, base64url. */
static int jwks_of(EVP_PKEY *rsa, EVP_PKEY *ec, char *out, size_t cap)
{
    BIGNUM *n = NULL, *e = NULL;
    uint8_t nb[512], eb[16], pub[65];
    char ns[700], es[32], xs[64], ys[64];
    size_t pl = 0;
    int nl, el;

    if (EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
        EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_E, &e) != 1 ||
        EVP_PKEY_get_octet_string_param(ec, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &pl) !=
            1 ||
        pl != 65) {
        BN_free(n);
        BN_free(e);
        return -1;
    }
    nl = BN_bn2bin(n, nb);
    el = BN_bn2bin(e, eb);
    BN_free(n);
    BN_free(e);
    lh_jwt_b64url_encode(nb, (size_t)nl, ns);
    lh_jwt_b64url_encode(eb, (size_t)el, es);
    lh_jwt_b64url_encode(pub + 1, 32, xs);
    lh_jwt_b64url_encode(pub + 33, 32, ys);
    snprintf(out, cap,
             "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r1\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"},"
             "{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"},"
             "{\"kty\":\"RSA\",\"kid\":\"enc\",\"use\":\"enc\",\"n\":\"%s\",\"e\":\"%s\"}]}",
             ns, es, xs, ys, ns, es);
    return 0;
}

LH_TEST(jwks)
{
    char tok[4096], err[256], doc[4096];
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    lh_jwt_keys_t *k = lh_jwt_keys_new();
    lh_jwt_rules_t r = rules_now();

    LH_CHECK(rsa != NULL && ec != NULL && jwks_of(rsa, ec, doc, sizeof(doc)) == 0);
    if (rsa == NULL || ec == NULL)
        goto out;
    LH_CHECK_INT(lh_jwt_keys_add_jwks(k, doc, strlen(doc), err, sizeof(err)), 2);
    mint(tok, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", "{\"sub\":\"1\"}", NULL, NULL, rsa, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_OK);
    mint(tok, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", "{\"sub\":\"1\"}", NULL, NULL, ec, 1);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_OK);
    mint(tok, "{\"alg\":\"RS256\",\"kid\":\"enc\"}", "{\"sub\":\"1\"}", NULL, NULL, rsa, 0);
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_UNKNOWN_KID); /* an encryption key: skipped */
    /* Documents refused with the reason. */
#define ADD_JWKS(text) lh_jwt_keys_add_jwks(k, (text), strlen(text), err, sizeof(err))
    LH_CHECK_INT(ADD_JWKS("[]"), -1);
    LH_CHECK(strstr(err, "keys") != NULL);
    LH_CHECK_INT(ADD_JWKS("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}"), -1);
    LH_CHECK(strstr(err, "kid") != NULL);
    LH_CHECK_INT(ADD_JWKS("{\"keys\":[{\"kty\":\"oct\",\"kid\":\"o\"}]}"), -1);
    LH_CHECK(strstr(err, "kty") != NULL);
    LH_CHECK_INT(ADD_JWKS("{\"keys\":[{\"kty\":\"EC\",\"kid\":\"x\",\"crv\":\"P-256\","
                          "\"x\":\"AA\",\"y\":\"AA\"}]}"), -1);
    LH_CHECK(strstr(err, "P-256") != NULL);
    LH_CHECK_INT(ADD_JWKS("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"small\",\"n\":\"AQAB\","
                          "\"e\":\"AQAB\"}]}"), -1); /* a 17-bit modulus */
    LH_CHECK_INT(ADD_JWKS("{\"keys\":[]}"), -1);
    LH_CHECK_INT(ADD_JWKS("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\",\"kid\":\"b\"}]}"),
                 -1); /* duplicate names */
#undef ADD_JWKS
    LH_CHECK_INT(lh_jwt_keys_count(k), 2);
out:
    lh_jwt_keys_free(k);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

int main(void)
{
    LH_RUN(base64url);
    LH_RUN(hmac_tokens_and_claims);
    LH_RUN(a_changed_byte_anywhere_is_refused);
    LH_RUN(alg_none_and_malformed);
    LH_RUN(claim_checks);
    LH_RUN(kid_selects_the_key);
    LH_RUN(rsa_and_ec_keys_from_pem_and_the_confusion_attack);
    LH_RUN(jwks);
    LH_DONE();
}
