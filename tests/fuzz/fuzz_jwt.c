/*
 * libFuzzer target for lh_jwt: the first byte chooses what the rest is: a token verified
 * against fixed keys (an HMAC secret with and without a kid, and a P-256 key from JWKS),
 * a JWKS document, a PEM text, or base64url (decoded, and when valid re-encoded to the
 * same text). Nothing may crash, leak or read out of bounds; a token that verifies must
 * have come with a signature of one of the keys, which a fuzzer cannot forge: any
 * LH_JWT_OK aborts.
 */
#include "lh_jwt.h"

#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c))                                                                        \
            abort();                                                                     \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lh_jwt_keys_t *keys;

static void init(void)
{
    static const char secret[] = "fuzz-secret-fuzz-secret-fuzz-secret!";
    static const char jwks[] =
        "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e\",\"crv\":\"P-256\","
        "\"x\":\"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4\","
        "\"y\":\"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM\"}]}";
    char err[256];

    keys = lh_jwt_keys_new();
    CHECK(keys != NULL);
    CHECK(lh_jwt_keys_add_secret(keys, NULL, secret, strlen(secret), LH_JWT_HS_ALL, err,
                                 sizeof(err)) == 0);
    CHECK(lh_jwt_keys_add_secret(keys, "k1", secret, strlen(secret), LH_JWT_HS256, err,
                                 sizeof(err)) == 0);
    CHECK(lh_jwt_keys_add_jwks(keys, jwks, strlen(jwks), err, sizeof(err)) == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data + 1;
    size_t n = size ? size - 1 : 0;
    char err[256];

    if (keys == NULL)
        init();
    if (size == 0)
        return 0;
    switch (data[0] % 4) {
    case 0: {
        lh_jwt_rules_t r = {LH_JWT_HS_ALL | LH_JWT_RS256 | LH_JWT_ES256, 1800000000, 5,
                            (data[0] & 4) ? "aud" : NULL, (data[0] & 8) ? "iss" : NULL,
                            (data[0] & 16) ? 200 : 0, (data[0] & 32) ? 3600 : 0,
                            (data[0] & 64) != 0};
        lh_jwt_claims_t c;
        int rc = lh_jwt_verify(s, n, keys, &r, &c);

        CHECK(rc > LH_JWT_OK && rc < LH_JWT_NRESULTS);
        CHECK(c.sub == NULL && c.channels == NULL && c.info == NULL);
        CHECK(strcmp(lh_jwt_reason(rc), "unknown") != 0);
        break;
    }
    case 1: {
        lh_jwt_keys_t *k = lh_jwt_keys_new();
        int r = lh_jwt_keys_add_jwks(k, s, n, err, sizeof(err));

        CHECK(r == -1 || (r > 0 && (size_t)r == lh_jwt_keys_count(k)));
        lh_jwt_keys_free(k);
        break;
    }
    case 2: {
        lh_jwt_keys_t *k = lh_jwt_keys_new();

        lh_jwt_keys_add_pem(k, (data[0] & 4) ? "kid" : NULL, s, n, err, sizeof(err));
        lh_jwt_keys_free(k);
        break;
    }
    default: {
        uint8_t *out = malloc(n * 3 / 4 + 1);
        char *back = malloc(n + 4);
        long r;

        CHECK(out != NULL && back != NULL);
        r = lh_jwt_b64url_decode(s, n, out);
        if (r >= 0) {
            CHECK((size_t)r <= n * 3 / 4);
            CHECK(lh_jwt_b64url_encode(out, (size_t)r, back) == n);
            CHECK(memcmp(back, s, n) == 0);
        }
        free(out);
        free(back);
        break;
    }
    }
    return 0;
}
