/*
 * JWS compact tokens: base64url, the header, the key a kid selects, the signature
 * (libcrypto), the registered claims (jansson). See lh_jwt.h.
 */
#include "lh_jwt.h"

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- base64url ------------------------------------------------------------------------ */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

long lh_jwt_b64url_decode(const char *in, size_t n, uint8_t *out)
{
    size_t o = 0, i;
    uint32_t acc = 0;
    int bits = 0;

    if (n % 4 == 1)
        return -1;
    for (i = 0; i < n; i++) {
        int v = b64val((unsigned char)in[i]);

        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* The bits left over must be zero (a canonical encoding). */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -1;
    return (long)o;
}

size_t lh_jwt_b64url_encode(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;

    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

/* ---- Keys ----------------------------------------------------------------------------- */

typedef struct {
    char *kid; /* NULL: the key for tokens without a kid */
    unsigned algs;
    uint8_t *secret; /* HMAC */
    size_t secret_len;
    EVP_PKEY *pkey; /* RSA or EC P-256 */
} jwt_key_t;

struct lh_jwt_keys_s {
    jwt_key_t *v;
    size_t n, cap;
};

static const char *const reasons[LH_JWT_NRESULTS] = {
    "ok",          "too_big",       "malformed",    "bad_alg",    "unknown_kid",
    "bad_signature", "bad_claims",  "expired",      "not_yet_valid", "bad_audience",
    "bad_issuer",  "too_long_lived"};

const char *lh_jwt_reason(int result)
{
    return result >= 0 && result < LH_JWT_NRESULTS ? reasons[result] : "unknown";
}

lh_jwt_keys_t *lh_jwt_keys_new(void)
{
    return calloc(1, sizeof(lh_jwt_keys_t));
}

void lh_jwt_keys_free(lh_jwt_keys_t *k)
{
    if (k == NULL)
        return;
    for (size_t i = 0; i < k->n; i++) {
        free(k->v[i].kid);
        if (k->v[i].secret != NULL) {
            OPENSSL_cleanse(k->v[i].secret, k->v[i].secret_len);
            free(k->v[i].secret);
        }
        EVP_PKEY_free(k->v[i].pkey);
    }
    free(k->v);
    free(k);
}

size_t lh_jwt_keys_count(const lh_jwt_keys_t *k)
{
    return k ? k->n : 0;
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

/* Appends a key (taking secret and pkey); kid is copied. Returns 0 or -1. */
static int keys_push(lh_jwt_keys_t *k, const char *kid, unsigned algs, uint8_t *secret,
                     size_t slen, EVP_PKEY *pkey)
{
    jwt_key_t *key;

    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        jwt_key_t *v = realloc(k->v, cap * sizeof(*v));

        if (v == NULL)
            return -1;
        k->v = v;
        k->cap = cap;
    }
    key = &k->v[k->n];
    memset(key, 0, sizeof(*key));
    if (kid != NULL && (key->kid = strdup(kid)) == NULL)
        return -1;
    key->algs = algs;
    key->secret = secret;
    key->secret_len = slen;
    key->pkey = pkey;
    k->n++;
    return 0;
}

int lh_jwt_keys_add_secret(lh_jwt_keys_t *k, const char *kid, const void *secret, size_t len,
                           unsigned algs, char *err, size_t errlen)
{
    uint8_t *copy;

    if ((algs & LH_JWT_HS_ALL) == 0 || (algs & ~LH_JWT_HS_ALL) != 0) {
        set_err(err, errlen, "an HMAC secret verifies only HS256, HS384 or HS512");
        return -1;
    }
    if (len < 32) {
        set_err(err, errlen, "an HMAC secret must have at least 32 bytes (RFC 7518 3.2)");
        return -1;
    }
    copy = malloc(len);
    if (copy == NULL) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    memcpy(copy, secret, len);
    if (keys_push(k, kid, algs, copy, len, NULL) < 0) {
        OPENSSL_cleanse(copy, len);
        free(copy);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* The algorithm a public key verifies, or 0 (with err) for a kind this does not take. */
static unsigned pkey_alg(EVP_PKEY *pkey, char *err, size_t errlen)
{
    char group[64];

    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        if (EVP_PKEY_get_bits(pkey) < 2048) {
            set_err(err, errlen, "an RSA key must have at least 2048 bits");
            return 0;
        }
        return LH_JWT_RS256;
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                           sizeof(group), NULL) != 1 ||
            strcmp(group, "prime256v1") != 0) {
            set_err(err, errlen, "an EC key must be on P-256 (for ES256)");
            return 0;
        }
        return LH_JWT_ES256;
    default:
        set_err(err, errlen, "not an RSA or EC P-256 public key");
        return 0;
    }
}

static int add_pkey(lh_jwt_keys_t *k, const char *kid, EVP_PKEY *pkey, char *err,
                    size_t errlen)
{
    unsigned alg = pkey_alg(pkey, err, errlen);

    if (alg == 0) {
        EVP_PKEY_free(pkey);
        return -1;
    }
    if (keys_push(k, kid, alg, NULL, 0, pkey) < 0) {
        EVP_PKEY_free(pkey);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int lh_jwt_keys_add_pem(lh_jwt_keys_t *k, const char *kid, const char *pem, size_t len,
                        char *err, size_t errlen)
{
    BIO *bio;
    EVP_PKEY *pkey;

    if (len > INT32_MAX || (bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (pkey == NULL) {
        set_err(err, errlen, "not a PEM public key (\"-----BEGIN PUBLIC KEY-----\")");
        return -1;
    }
    return add_pkey(k, kid, pkey, err, errlen);
}

/* The bytes of a base64url member of a JWK, malloc'd, with *n; NULL when absent or bad. */
static uint8_t *jwk_bytes(json_t *jwk, const char *name, size_t *n)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    size_t sl = s ? strlen(s) : 0;
    uint8_t *b;
    long r;

    if (s == NULL || sl == 0 || sl > 8192)
        return NULL;
    b = malloc(sl * 3 / 4 + 1);
    if (b == NULL)
        return NULL;
    r = lh_jwt_b64url_decode(s, sl, b);
    if (r <= 0) {
        free(b);
        return NULL;
    }
    *n = (size_t)r;
    return b;
}

/* A public key from a JWK's parameters (OpenSSL 3's EVP_PKEY_fromdata). */
static EVP_PKEY *jwk_pkey(json_t *jwk, const char **why)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    uint8_t *a = NULL, *b = NULL, pub[65];
    size_t al = 0, bl = 0;
    int ok = 0;

    *why = "out of memory";
    if (bld == NULL)
        return NULL;
    if (kty != NULL && strcmp(kty, "RSA") == 0) {
        *why = "an RSA key needs base64url \"n\" and \"e\"";
        a = jwk_bytes(jwk, "n", &al);
        b = jwk_bytes(jwk, "e", &bl);
        if (a == NULL || b == NULL)
            goto out;
        bn_n = BN_bin2bn(a, (int)al, NULL);
        bn_e = BN_bin2bn(b, (int)bl, NULL);
        ok = bn_n != NULL && bn_e != NULL &&
             OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
             OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1;
        ctx = ok ? EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL) : NULL;
    } else if (kty != NULL && strcmp(kty, "EC") == 0) {
        const char *crv = json_string_value(json_object_get(jwk, "crv"));

        *why = "an EC key must be on P-256 with 32-byte base64url \"x\" and \"y\"";
        a = jwk_bytes(jwk, "x", &al);
        b = jwk_bytes(jwk, "y", &bl);
        if (crv == NULL || strcmp(crv, "P-256") != 0 || a == NULL || b == NULL || al != 32 ||
            bl != 32)
            goto out;
        pub[0] = 0x04; /* uncompressed point */
        memcpy(pub + 1, a, 32);
        memcpy(pub + 33, b, 32);
        ok = OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1",
                                             0) == 1 &&
             OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub,
                                              sizeof(pub)) == 1;
        ctx = ok ? EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL) : NULL;
    } else {
        *why = "\"kty\" must be \"RSA\" or \"EC\"";
        goto out;
    }
    params = ok ? OSSL_PARAM_BLD_to_param(bld) : NULL;
    if (ctx == NULL || params == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        *why = "the key's parameters do not make a valid public key";
        pkey = NULL;
    }
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(a);
    free(b);
    return pkey;
}

int lh_jwt_keys_add_jwks(lh_jwt_keys_t *k, const char *json, size_t len, char *err,
                         size_t errlen)
{
    json_error_t je;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    json_t *keys = json_object_get(doc, "keys");
    size_t i, added = 0;
    char what[160];

    if (doc == NULL || !json_is_array(keys)) {
        set_err(err, errlen, "not a JWKS document (an object with a \"keys\" array)");
        json_decref(doc);
        return -1;
    }
    for (i = 0; i < json_array_size(keys); i++) {
        json_t *jwk = json_array_get(keys, i);
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        const char *use = json_string_value(json_object_get(jwk, "use"));
        const char *why;
        EVP_PKEY *pkey;

        if (use != NULL && strcmp(use, "sig") != 0)
            continue; /* an encryption key: not for verifying */
        if (kid == NULL) {
            snprintf(what, sizeof(what), "key %zu has no \"kid\"", i);
            set_err(err, errlen, what);
            json_decref(doc);
            return -1;
        }
        pkey = jwk_pkey(jwk, &why);
        if (pkey == NULL) {
            snprintf(what, sizeof(what), "key %zu (kid %.64s): %s", i, kid, why);
            set_err(err, errlen, what);
            json_decref(doc);
            return -1;
        }
        if (add_pkey(k, kid, pkey, what, sizeof(what)) < 0) {
            char full[400];

            snprintf(full, sizeof(full), "key %zu (kid %.64s): %s", i, kid, what);
            set_err(err, errlen, full);
            json_decref(doc);
            return -1;
        }
        added++;
    }
    json_decref(doc);
    if (added == 0) {
        set_err(err, errlen, "no signing key in the JWKS document");
        return -1;
    }
    return (int)added;
}

/* ---- Verification --------------------------------------------------------------------- */

static unsigned alg_of(const char *s)
{
    static const struct {
        const char *name;
        unsigned alg;
    } algs[] = {{"HS256", LH_JWT_HS256}, {"HS384", LH_JWT_HS384}, {"HS512", LH_JWT_HS512},
                {"RS256", LH_JWT_RS256}, {"ES256", LH_JWT_ES256}};

    for (size_t i = 0; s != NULL && i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strcmp(s, algs[i].name) == 0)
            return algs[i].alg;
    return 0;
}

/* Decodes a base64url part into a malloc'd buffer (NUL-terminated); NULL when bad. */
static uint8_t *part(const char *s, size_t n, size_t *out_len)
{
    uint8_t *b = malloc(n * 3 / 4 + 2);
    long r;

    if (b == NULL)
        return NULL;
    r = lh_jwt_b64url_decode(s, n, b);
    if (r < 0) {
        free(b);
        return NULL;
    }
    b[r] = '\0';
    *out_len = (size_t)r;
    return b;
}

/* A part that must be a JSON object (duplicate names refused: RFC 7515 4, 7519 4). */
static json_t *json_part(const char *s, size_t n, int *dup)
{
    size_t bl;
    uint8_t *b = part(s, n, &bl);
    json_error_t je;
    json_t *j;

    *dup = 0;
    if (b == NULL)
        return NULL;
    j = json_loadb((const char *)b, bl, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL && strstr(je.text, "duplicate") != NULL)
        *dup = 1;
    free(b);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int verify_hmac(const jwt_key_t *key, unsigned alg, const char *in, size_t inl,
                       const uint8_t *sig, size_t sigl)
{
    const EVP_MD *md = alg == LH_JWT_HS256 ? EVP_sha256() : alg == LH_JWT_HS384 ? EVP_sha384()
                                                                              : EVP_sha512();
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned ml = 0;

    if (HMAC(md, key->secret, (int)key->secret_len, (const uint8_t *)in, inl, mac, &ml) ==
        NULL)
        return 0;
    /* The length is public (it is the algorithm's); the bytes are compared in constant
     * time. */
    return sigl == ml && CRYPTO_memcmp(mac, sig, ml) == 0;
}

/* ES256's signature is r || s, 32 bytes each (RFC 7518 3.4); libcrypto verifies DER. */
static uint8_t *es256_der(const uint8_t *sig, size_t sigl, int *derl)
{
    ECDSA_SIG *es;
    BIGNUM *r, *s;
    uint8_t *der = NULL;

    if (sigl != 64 || (es = ECDSA_SIG_new()) == NULL)
        return NULL;
    r = BN_bin2bn(sig, 32, NULL);
    s = BN_bin2bn(sig + 32, 32, NULL);
    if (r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return NULL;
    }
    *derl = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    if (*derl <= 0)
        return NULL;
    return der;
}

static int verify_pkey(const jwt_key_t *key, unsigned alg, const char *in, size_t inl,
                       const uint8_t *sig, size_t sigl)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t *der = NULL;
    int derl = 0, ok = 0;

    if (ctx == NULL)
        return 0;
    if (alg == LH_JWT_ES256) {
        der = es256_der(sig, sigl, &derl);
        if (der == NULL)
            goto out;
        sig = der;
        sigl = (size_t)derl;
    }
    ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
         EVP_DigestVerify(ctx, sig, sigl, (const uint8_t *)in, inl) == 1;
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* The key for (kid, alg): LH_JWT_OK with *out, or BAD_ALG / UNKNOWN_KID. */
static int find_key(const lh_jwt_keys_t *k, const char *kid, unsigned alg,
                    const jwt_key_t **out)
{
    int seen = 0;

    for (size_t i = 0; k != NULL && i < k->n; i++) {
        const jwt_key_t *key = &k->v[i];

        if ((kid == NULL) != (key->kid == NULL) || (kid != NULL && strcmp(kid, key->kid) != 0))
            continue;
        seen = 1;
        if (key->algs & alg) {
            *out = key;
            return LH_JWT_OK;
        }
    }
    return seen ? LH_JWT_BAD_ALG : LH_JWT_UNKNOWN_KID;
}

/* A NumericDate claim (RFC 7519 2): absent (0, ok), a number (ok), else -1. */
static int numeric_date(json_t *claims, const char *name, int64_t *out)
{
    json_t *v = json_object_get(claims, name);

    *out = 0;
    if (v == NULL)
        return 0;
    if (json_is_integer(v)) {
        /* Clamped to +-9e15 s (285 million years), as reals are bounded: the checks
         * below add the leeway and subtract now, which must not overflow. */
        json_int_t x = json_integer_value(v);

        *out = x > 9000000000000000ll ? 9000000000000000ll
               : x < -9000000000000000ll ? -9000000000000000ll : (int64_t)x;
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);

        if (d < -9e15 || d > 9e15)
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    return -1;
}

static int audience_ok(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (json_is_array(aud))
        for (size_t i = 0; i < json_array_size(aud); i++)
            if (json_is_string(json_array_get(aud, i)) &&
                strcmp(json_string_value(json_array_get(aud, i)), want) == 0)
                return 1;
    return 0;
}

/* The claims of a token whose signature is valid, checked against rules, into out. */
static int read_claims(json_t *c, const lh_jwt_rules_t *rules, lh_jwt_claims_t *out)
{
    json_t *sub = json_object_get(c, "sub"), *iss = json_object_get(c, "iss");
    json_t *aud = json_object_get(c, "aud"), *chans = json_object_get(c, "channels");
    json_t *info = json_object_get(c, "info");
    int64_t now = rules->now, lee = (int64_t)rules->leeway_s;

    if ((sub != NULL && !json_is_string(sub)) || (iss != NULL && !json_is_string(iss)) ||
        (aud != NULL && !json_is_string(aud) && !json_is_array(aud)) ||
        (chans != NULL && !json_is_array(chans)) || (info != NULL && !json_is_object(info)) ||
        numeric_date(c, "exp", &out->exp) < 0 || numeric_date(c, "nbf", &out->nbf) < 0 ||
        numeric_date(c, "iat", &out->iat) < 0)
        return LH_JWT_BAD_CLAIMS;
    if (rules->require_exp && json_object_get(c, "exp") == NULL)
        return LH_JWT_BAD_CLAIMS;
    if (json_object_get(c, "exp") != NULL && now >= out->exp + lee)
        return LH_JWT_EXPIRED;
    if ((json_object_get(c, "nbf") != NULL && now + lee < out->nbf) ||
        (json_object_get(c, "iat") != NULL && now + lee < out->iat))
        return LH_JWT_NOT_YET_VALID;
    if (rules->max_lifetime_s > 0 && json_object_get(c, "exp") != NULL &&
        out->exp - now > rules->max_lifetime_s + lee)
        return LH_JWT_TOO_LONG_LIVED;
    if (rules->audience != NULL && (aud == NULL || !audience_ok(aud, rules->audience)))
        return LH_JWT_BAD_AUDIENCE;
    if (rules->issuer != NULL &&
        (iss == NULL || strcmp(json_string_value(iss), rules->issuer) != 0))
        return LH_JWT_BAD_ISSUER;
    for (size_t i = 0; chans != NULL && i < json_array_size(chans); i++)
        if (!json_is_string(json_array_get(chans, i)))
            return LH_JWT_BAD_CLAIMS;
    out->sub = strdup(sub ? json_string_value(sub) : "");
    if (out->sub == NULL)
        return LH_JWT_BAD_CLAIMS;
    if (info != NULL && (out->info = json_dumps(info, JSON_COMPACT)) == NULL)
        return LH_JWT_BAD_CLAIMS;
    if (chans != NULL && json_array_size(chans) > 0) {
        out->channels = calloc(json_array_size(chans), sizeof(char *));
        if (out->channels == NULL)
            return LH_JWT_BAD_CLAIMS;
        for (size_t i = 0; i < json_array_size(chans); i++) {
            out->channels[i] = strdup(json_string_value(json_array_get(chans, i)));
            if (out->channels[i] == NULL)
                return LH_JWT_BAD_CLAIMS;
            out->nchannels++;
        }
    }
    return LH_JWT_OK;
}

void lh_jwt_claims_free(lh_jwt_claims_t *c)
{
    if (c == NULL)
        return;
    free(c->sub);
    free(c->info);
    for (size_t i = 0; i < c->nchannels; i++)
        free(c->channels[i]);
    free(c->channels);
    memset(c, 0, sizeof(*c));
}

int lh_jwt_verify(const char *tok, size_t len, const lh_jwt_keys_t *k,
                  const lh_jwt_rules_t *rules, lh_jwt_claims_t *out)
{
    const char *d1, *d2;
    json_t *hdr = NULL, *claims = NULL;
    const jwt_key_t *key = NULL;
    uint8_t *sig = NULL;
    size_t sigl = 0;
    unsigned alg;
    int dup, r, good;

    memset(out, 0, sizeof(*out));
    if (rules->max_bytes > 0 && len > rules->max_bytes)
        return LH_JWT_TOO_BIG;
    d1 = memchr(tok, '.', len);
    d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)) != NULL ||
        d1 == tok || d2 == d1 + 1 || d2 + 1 == tok + len)
        return LH_JWT_MALFORMED;
    hdr = json_part(tok, (size_t)(d1 - tok), &dup);
    if (hdr == NULL)
        return dup ? LH_JWT_BAD_CLAIMS : LH_JWT_MALFORMED;
    /* No extension this verifier does not know may be critical (RFC 7515 4.1.11). */
    if (json_object_get(hdr, "crit") != NULL) {
        r = LH_JWT_MALFORMED;
        goto out;
    }
    alg = alg_of(json_string_value(json_object_get(hdr, "alg")));
    if (alg == 0 || !(rules->algs & alg)) {
        r = LH_JWT_BAD_ALG;
        goto out;
    }
    if (json_object_get(hdr, "kid") != NULL && !json_is_string(json_object_get(hdr, "kid"))) {
        r = LH_JWT_MALFORMED;
        goto out;
    }
    r = find_key(k, json_string_value(json_object_get(hdr, "kid")), alg, &key);
    if (r != LH_JWT_OK)
        goto out;
    sig = part(d2 + 1, len - (size_t)(d2 + 1 - tok), &sigl);
    if (sig == NULL) {
        r = LH_JWT_MALFORMED;
        goto out;
    }
    good = key->secret != NULL
               ? verify_hmac(key, alg, tok, (size_t)(d2 - tok), sig, sigl)
               : verify_pkey(key, alg, tok, (size_t)(d2 - tok), sig, sigl);
    if (!good) {
        r = LH_JWT_BAD_SIGNATURE;
        goto out;
    }
    claims = json_part(d1 + 1, (size_t)(d2 - d1 - 1), &dup);
    if (claims == NULL) {
        r = dup ? LH_JWT_BAD_CLAIMS : LH_JWT_MALFORMED;
        goto out;
    }
    r = read_claims(claims, rules, out);
    if (r == LH_JWT_OK)
        out->alg = alg;
out:
    if (r != LH_JWT_OK)
        lh_jwt_claims_free(out);
    free(sig);
    json_decref(hdr);
    json_decref(claims);
    return r;
}
