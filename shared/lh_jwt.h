/*
 * lh_jwt: verifying JSON Web Tokens in the JWS compact form (RFC 7519, RFC 7515), for
 * connection identity. Pure: the keys are handed in as bytes (a secret, a PEM text, a
 * JWKS document), nothing here reads a file, logs or keeps global state. Signatures are
 * checked with OpenSSL's libcrypto (HMAC compared in constant time); the claims are read
 * with jansson.
 *
 * The accepted algorithms are pinned twice: by the rules (the configuration's list) and by
 * each key (an HMAC secret verifies only HS256/384/512, an RSA key only RS256, a P-256 key
 * only ES256), so "alg": "none" and HMAC-with-a-public-key confusion cannot pass.
 */
#ifndef LH_JWT_H
#define LH_JWT_H

#include <stddef.h>
#include <stdint.h>

/* Algorithms (bit masks). */
enum {
    LH_JWT_HS256 = 1u << 0,
    LH_JWT_HS384 = 1u << 1,
    LH_JWT_HS512 = 1u << 2,
    LH_JWT_RS256 = 1u << 3,
    LH_JWT_ES256 = 1u << 4,
    LH_JWT_HS_ALL = LH_JWT_HS256 | LH_JWT_HS384 | LH_JWT_HS512
};

/* Results of lh_jwt_verify (lh_jwt_reason names them, for logs and metric labels). */
enum {
    LH_JWT_OK = 0,
    LH_JWT_TOO_BIG,        /* over rules.max_bytes */
    LH_JWT_MALFORMED,      /* not three base64url parts, or a part is not a JSON object */
    LH_JWT_BAD_ALG,        /* alg missing, "none", not allowed, or not this key's kind */
    LH_JWT_UNKNOWN_KID,    /* no key for the token's kid (or none without a kid) */
    LH_JWT_BAD_SIGNATURE,
    LH_JWT_BAD_CLAIMS,     /* a claim of the wrong type, duplicate names, no exp if required */
    LH_JWT_EXPIRED,
    LH_JWT_NOT_YET_VALID,  /* nbf (or iat) in the future, beyond the leeway */
    LH_JWT_BAD_AUDIENCE,
    LH_JWT_BAD_ISSUER,
    LH_JWT_TOO_LONG_LIVED, /* exp further than rules.max_lifetime_s from now */
    LH_JWT_NRESULTS
};

/* "ok", "too_big", "malformed", "bad_alg", "unknown_kid", "bad_signature", "bad_claims",
 * "expired", "not_yet_valid", "bad_audience", "bad_issuer", "too_long_lived". */
const char *lh_jwt_reason(int result);

/* A set of verification keys, each with an optional kid. */
typedef struct lh_jwt_keys_s lh_jwt_keys_t;

lh_jwt_keys_t *lh_jwt_keys_new(void);
/* Frees k; accepts NULL. */
void lh_jwt_keys_free(lh_jwt_keys_t *k);
/* Number of keys in k. */
size_t lh_jwt_keys_count(const lh_jwt_keys_t *k);
/*
 * Adds an HMAC secret (copied; at least 32 bytes, RFC 7518 3.2) for the HS algorithms in
 * algs, under kid (copied; NULL: the key for tokens without a kid). Returns 0, or -1 with
 * err (errlen bytes) saying why.
 */
int lh_jwt_keys_add_secret(lh_jwt_keys_t *k, const char *kid, const void *secret, size_t len,
                           unsigned algs, char *err, size_t errlen);
/* Adds a public key from PEM text: RSA (at least 2048 bits) verifies RS256, EC P-256
 * verifies ES256; under kid as above. Returns 0, or -1 with err. */
int lh_jwt_keys_add_pem(lh_jwt_keys_t *k, const char *kid, const char *pem, size_t len,
                        char *err, size_t errlen);
/* Adds every key of a JWKS document (RFC 7517: "keys", each RSA with n and e or EC P-256
 * with x and y, each with its kid). Returns the number added (> 0), or -1 with err. */
int lh_jwt_keys_add_jwks(lh_jwt_keys_t *k, const char *json, size_t len, char *err,
                         size_t errlen);

/* What a token must satisfy besides its signature. */
typedef struct {
    unsigned algs;          /* accepted algorithms (LH_JWT_*) */
    int64_t now;            /* seconds since the epoch */
    unsigned leeway_s;      /* for exp, nbf, iat */
    const char *audience;   /* when set: aud must be it, or an array containing it */
    const char *issuer;     /* when set: iss must be it */
    size_t max_bytes;       /* the longest token accepted; 0: no limit */
    int64_t max_lifetime_s; /* exp at most this far from now; 0: no limit */
    int require_exp;        /* a token without exp is refused */
} lh_jwt_rules_t;

/* What a valid token says (strings malloc'd; free with lh_jwt_claims_free). */
typedef struct {
    char *sub;        /* "" when absent */
    int64_t exp;      /* 0 when absent */
    int64_t nbf, iat; /* 0 when absent */
    char *info;       /* the "info" object as compact JSON, NULL when absent */
    char **channels;  /* the "channels" array of strings */
    size_t nchannels;
    unsigned alg;     /* the algorithm it was signed with (LH_JWT_*) */
} lh_jwt_claims_t;

void lh_jwt_claims_free(lh_jwt_claims_t *c);

/*
 * Verifies the token tok[0..len): its form, its header (alg allowed by rules and by the
 * key its kid selects), its signature, then its claims against rules. Returns LH_JWT_OK
 * with *out filled (the caller frees it with lh_jwt_claims_free), or an LH_JWT_* result,
 * *out then zeroed. Never reads past len; the time a bad signature takes does not depend
 * on how many of its bytes were right.
 */
int lh_jwt_verify(const char *tok, size_t len, const lh_jwt_keys_t *k,
                  const lh_jwt_rules_t *rules, lh_jwt_claims_t *out);

/*
 * base64url (RFC 4648 section 5, no padding): lh_jwt_b64url_decode writes the bytes of
 * in[0..n) to out (room for n * 3 / 4 + 1) and returns their count, or -1 for a byte
 * outside the alphabet, padding, or a length that cannot be base64 (n % 4 == 1).
 * lh_jwt_b64url_encode writes the encoding of in[0..n) to out (room for (n + 2) / 3 * 4
 * + 1, NUL-terminated) and returns its length.
 */
long lh_jwt_b64url_decode(const char *in, size_t n, uint8_t *out);
size_t lh_jwt_b64url_encode(const uint8_t *in, size_t n, char *out);

#endif
