/*
 * `lhttpc token`: mints JSON Web Tokens (RFC 7519) in the JWS compact form (RFC 7515)
 * for lhttpd's auth, for tests, demos and operators. HS256/384/512 with a secret read
 * from a file as lhttpd reads it, RS256 and ES256 with a PEM private key, through
 * libcrypto; the header and the claims are built with jansson. The server side of the
 * same format is shared/lh_jwt.c, which tests/unit/test_token.c verifies these tokens with.
 */
#include "lhttpc.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "lh_jwt.h"
#include "lh_utf8.h"

#define SECRET_FILE_MAX ((size_t)64 << 10) /* a secret file larger than this is a mistake */
#define KEY_FILE_MAX ((size_t)1 << 20)
#define SERVER_MAX_TOKEN 8192 /* lhttpd's default auth.max_token_bytes */
#define UNIX_MAX 253402300799LL /* 9999-12-31T23:59:59Z */

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen,
                                                          const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const struct {
    const char *name;
    unsigned alg;
} algs[] = { { "HS256", LH_JWT_HS256 }, { "HS384", LH_JWT_HS384 }, { "HS512", LH_JWT_HS512 },
             { "RS256", LH_JWT_RS256 }, { "ES256", LH_JWT_ES256 } };

unsigned lhc_token_alg(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strcmp(name, algs[i].name) == 0)
            return algs[i].alg;
    return 0;
}

static const char *alg_name(unsigned alg)
{
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (algs[i].alg == alg)
            return algs[i].name;
    return "?";
}

/* ---- Keys ------------------------------------------------------------------------------ */

void lhc_token_key_clear(lhc_token_key_t *k)
{
    if (k->secret != NULL) {
        OPENSSL_cleanse(k->secret, k->secret_len);
        free(k->secret);
    }
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof(*k));
}

int lhc_token_key_secret(lhc_token_key_t *k, const void *data, size_t len, char *err,
                         size_t errlen)
{
    const uint8_t *p = data;

    memset(k, 0, sizeof(*k));
    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    if (len < LHC_TOKEN_MIN_SECRET) {
        set_err(err, errlen,
                "the secret has %zu bytes (without trailing CR/LF); at least %d are needed "
                "(RFC 7518 3.2), e.g. from: openssl rand -hex 32",
                len, LHC_TOKEN_MIN_SECRET);
        return -1;
    }
    k->secret = malloc(len);
    if (k->secret == NULL) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    memcpy(k->secret, p, len);
    k->secret_len = len;
    k->kind = LHC_KEY_SECRET;
    return 0;
}

/* A passphrase prompt that never asks: an encrypted key is refused, not waited on. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

int lhc_token_key_pem(lhc_token_key_t *k, const char *pem, size_t len, char *err,
                      size_t errlen)
{
    char group[64];
    EVP_PKEY *pkey;
    BIO *bio;

    memset(k, 0, sizeof(*k));
    if (len > INT32_MAX || (bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (pkey == NULL) {
        if (memmem(pem, len, "ENCRYPTED", 9) != NULL)
            set_err(err, errlen, "the private key is protected by a passphrase; give an "
                                 "unencrypted one (openssl pkey -in KEY -out PLAIN)");
        else if (memmem(pem, len, "PUBLIC KEY-----", 15) != NULL)
            set_err(err, errlen, "a public key: signing needs the private key (lhttpd's "
                                 "auth.keys take the public one)");
        else
            set_err(err, errlen, "not a PEM private key (\"-----BEGIN PRIVATE KEY-----\")");
        return -1;
    }
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        if (EVP_PKEY_get_bits(pkey) < 2048) {
            set_err(err, errlen, "an RSA key of %d bits: lhttpd takes 2048 bits or more",
                    EVP_PKEY_get_bits(pkey));
            break;
        }
        k->kind = LHC_KEY_RSA;
        break;
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                           sizeof(group), NULL) != 1 ||
            strcmp(group, "prime256v1") != 0) {
            set_err(err, errlen, "an EC key must be on P-256 (prime256v1) for ES256");
            break;
        }
        k->kind = LHC_KEY_EC;
        break;
    default:
        set_err(err, errlen, "the key is %s: only RSA (RS256) and EC P-256 (ES256) keys sign",
                EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "unknown");
        break;
    }
    if (k->kind == LHC_KEY_NONE) {
        EVP_PKEY_free(pkey);
        return -1;
    }
    k->pkey = pkey;
    return 0;
}

unsigned lhc_token_default_alg(const lhc_token_key_t *k)
{
    switch (k->kind) {
    case LHC_KEY_SECRET:
        return LH_JWT_HS256;
    case LHC_KEY_RSA:
        return LH_JWT_RS256;
    case LHC_KEY_EC:
        return LH_JWT_ES256;
    default:
        return 0;
    }
}

/* 1 when k signs with alg. */
static int key_signs(const lhc_token_key_t *k, unsigned alg)
{
    switch (k->kind) {
    case LHC_KEY_SECRET:
        return (alg & LH_JWT_HS_ALL) != 0;
    case LHC_KEY_RSA:
        return alg == LH_JWT_RS256;
    case LHC_KEY_EC:
        return alg == LH_JWT_ES256;
    default:
        return 0;
    }
}

static const char *key_kind_name(const lhc_token_key_t *k)
{
    return k->kind == LHC_KEY_SECRET ? "an HMAC secret"
           : k->kind == LHC_KEY_RSA  ? "an RSA key"
           : k->kind == LHC_KEY_EC   ? "an EC P-256 key"
                                     : "no key";
}

/* ---- Minting --------------------------------------------------------------------------- */

/*
 * Signs in[0..n) with k and alg into a new buffer (*sl bytes); ES256 in the JWS form
 * r || s. Returns it, or NULL when libcrypto failed.
 */
static uint8_t *sign(const lhc_token_key_t *k, unsigned alg, const char *in, size_t n,
                     size_t *sl)
{
    uint8_t *sig = NULL, *der = NULL;
    EVP_MD_CTX *ctx = NULL;
    size_t dl = 0;

    if (k->kind == LHC_KEY_SECRET) {
        const EVP_MD *md = alg == LH_JWT_HS256   ? EVP_sha256()
                           : alg == LH_JWT_HS384 ? EVP_sha384()
                                                 : EVP_sha512();
        unsigned ml = 0;

        if (k->secret_len > INT_MAX || (sig = malloc(EVP_MAX_MD_SIZE)) == NULL)
            return NULL;
        if (HMAC(md, k->secret, (int)k->secret_len, (const uint8_t *)in, n, sig, &ml) == NULL) {
            free(sig);
            return NULL;
        }
        *sl = ml;
        return sig;
    }
    /* RS256 (PKCS #1 v1.5, the RSA default) and ES256 both hash with SHA-256. */
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) != 1 ||
        EVP_DigestSign(ctx, NULL, &dl, (const uint8_t *)in, n) != 1 ||
        (der = malloc(dl)) == NULL ||
        EVP_DigestSign(ctx, der, &dl, (const uint8_t *)in, n) != 1)
        goto out;
    if (k->kind == LHC_KEY_RSA) {
        sig = der;
        der = NULL;
        *sl = dl;
    } else {
        /* libcrypto gives ECDSA-Sig-Value in DER; JWS wants r and s as 32 bytes each. */
        const uint8_t *p = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);

        if (es != NULL && (sig = malloc(64)) != NULL &&
            (BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) != 32 ||
             BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) != 32)) {
            free(sig);
            sig = NULL;
        }
        ECDSA_SIG_free(es);
        *sl = 64;
    }
out:
    free(der);
    EVP_MD_CTX_free(ctx);
    return sig;
}

/* Sets a string member; 0, or -1 with err when s is not UTF-8 (or out of memory). */
static int set_string(json_t *o, const char *name, const char *s, char *err, size_t errlen)
{
    if (json_object_set_new(o, name, json_string(s)) < 0) {
        set_err(err, errlen, "%s is not UTF-8", name);
        return -1;
    }
    return 0;
}

/* The payload of claims c, or NULL with err. */
static json_t *payload_of(const lhc_token_claims_t *c, char *err, size_t errlen)
{
    json_t *p = json_object();

    if (p == NULL)
        goto oom;
    if ((c->iss != NULL && set_string(p, "iss", c->iss, err, errlen) < 0) ||
        (c->sub != NULL && set_string(p, "sub", c->sub, err, errlen) < 0) ||
        (c->aud != NULL && set_string(p, "aud", c->aud, err, errlen) < 0))
        goto fail;
    if (((c->has & LHC_TOKEN_EXP) && json_object_set_new(p, "exp", json_integer(c->exp)) < 0) ||
        ((c->has & LHC_TOKEN_NBF) && json_object_set_new(p, "nbf", json_integer(c->nbf)) < 0) ||
        ((c->has & LHC_TOKEN_IAT) && json_object_set_new(p, "iat", json_integer(c->iat)) < 0))
        goto oom;
    if (c->channels != NULL) {
        json_t *a = json_array();
        const char *s = c->channels;

        if (a == NULL || json_object_set_new(p, "channels", a) < 0)
            goto oom;
        while (*s != '\0') {
            size_t n = strcspn(s, " \t");

            if (n > 0 && json_array_append_new(a, json_stringn(s, n)) < 0) {
                set_err(err, errlen, "channels is not UTF-8");
                goto fail;
            }
            s += n;
            s += strspn(s, " \t");
        }
    }
    if (c->info != NULL) {
        json_error_t je;
        json_t *info = json_loads(c->info, JSON_REJECT_DUPLICATES, &je);

        if (info == NULL || !json_is_object(info)) {
            set_err(err, errlen, "info must be a JSON object%s%s", info ? "" : ": ",
                    info ? "" : je.text);
            json_decref(info);
            goto fail;
        }
        if (json_object_set_new(p, "info", info) < 0)
            goto oom;
    }
    return p;
oom:
    set_err(err, errlen, "out of memory");
fail:
    json_decref(p);
    return NULL;
}

/* The base64url of the compact JSON text of j, in a new string (*len bytes), or NULL. */
static char *b64_json(json_t *j, size_t *len)
{
    char *text = json_dumps(j, JSON_COMPACT), *out = NULL;
    size_t n;

    if (text == NULL)
        return NULL;
    n = strlen(text);
    out = malloc((n + 2) / 3 * 4 + 1);
    if (out != NULL)
        *len = lh_jwt_b64url_encode((const uint8_t *)text, n, out);
    free(text);
    return out;
}

char *lhc_token_mint(const lhc_token_key_t *k, unsigned alg, const lhc_token_claims_t *c,
                     char *err, size_t errlen)
{
    json_t *hdr = NULL, *pl = NULL;
    char *h64 = NULL, *p64 = NULL, *out = NULL;
    uint8_t *sig = NULL;
    size_t hl = 0, pll = 0, sl = 0, o;

    if (alg == 0)
        alg = lhc_token_default_alg(k);
    if (k->kind == LHC_KEY_NONE || !key_signs(k, alg)) {
        set_err(err, errlen, "%s cannot sign %s (%s)", key_kind_name(k), alg_name(alg),
                k->kind == LHC_KEY_SECRET ? "HS256, HS384 or HS512"
                : k->kind == LHC_KEY_RSA  ? "RS256 only"
                : k->kind == LHC_KEY_EC   ? "ES256 only"
                                          : "none");
        return NULL;
    }
    hdr = json_pack("{s:s, s:s}", "alg", alg_name(alg), "typ", "JWT");
    if (hdr == NULL || (c->kid != NULL && set_string(hdr, "kid", c->kid, err, errlen) < 0))
        goto fail;
    pl = payload_of(c, err, errlen);
    if (pl == NULL)
        goto fail;
    h64 = b64_json(hdr, &hl);
    p64 = b64_json(pl, &pll);
    if (h64 == NULL || p64 == NULL)
        goto oom;
    /* header "." payload, signed, then "." signature. */
    out = malloc(hl + 1 + pll + 1 + (4096 + 2) / 3 * 4 + 1);
    if (out == NULL)
        goto oom;
    memcpy(out, h64, hl);
    out[hl] = '.';
    memcpy(out + hl + 1, p64, pll);
    o = hl + 1 + pll;
    out[o] = '\0';
    sig = sign(k, alg, out, o, &sl);
    if (sig == NULL || sl > 4096) {
        set_err(err, errlen, "signing with %s failed (libcrypto)", alg_name(alg));
        goto fail;
    }
    out[o++] = '.';
    lh_jwt_b64url_encode(sig, sl, out + o);
    free(sig);
    free(h64);
    free(p64);
    json_decref(hdr);
    json_decref(pl);
    return out;
oom:
    set_err(err, errlen, "out of memory");
fail:
    free(out);
    free(sig);
    free(h64);
    free(p64);
    json_decref(hdr);
    json_decref(pl);
    return NULL;
}

/* ---- The command ----------------------------------------------------------------------- */

void lhc_token_usage(FILE *out)
{
    fputs("Token (lhttpc token): prints a signed JWT for lhttpd's auth, then a newline.\n"
          "  --secret-file FILE sign with HMAC; the secret is the file's bytes without\n"
          "                     trailing CR/LF, at least 32 of them (as lhttpd reads it)\n"
          "  --key-file PEM     sign with a private key: RSA of 2048 bits or more, or EC\n"
          "                     P-256 (give exactly one of --secret-file and --key-file)\n"
          "  --alg ALG          HS256, HS384 or HS512 with a secret, RS256 with RSA, ES256\n"
          "                     with EC (default: HS256, RS256 or ES256 from the key)\n"
          "  --kid KID          put kid in the header (selects the key among auth.keys)\n"
          "  --sub USER         the user id (sub claim)\n"
          "  --exp-in SECONDS   exp = now + SECONDS (negative: an expired token)\n"
          "  --exp UNIX         exp as seconds since the epoch (not with --exp-in)\n"
          "  --nbf UNIX         nbf: not valid before\n"
          "  --iat UNIX         iat: issued at (default: now)\n"
          "  --no-iat           no iat claim\n"
          "  --aud AUDIENCE     aud claim\n"
          "  --iss ISSUER       iss claim\n"
          "  --channels \"A B\"   channels claim: the channel names, separated by spaces\n"
          "  --info JSON        info claim: a JSON object\n"
          "  Exit status: 0 printed; 1 the key cannot be read or cannot sign ALG;\n"
          "  2 usage error.\n",
          out);
}

/* Prints the error and the hint on stderr; returns LHC_EXIT_USAGE. */
__attribute__((format(printf, 1, 2))) static int token_usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "lhttpc token: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'lhttpc token --help'.\n");
    return LHC_EXIT_USAGE;
}

/* A decimal integer in [min, max] (with an optional sign). Returns 0, or -1. */
static int parse_int(const char *s, long long min, long long max, int64_t *out)
{
    char *end;
    long long v;

    if (*s == '\0' || (*s != '-' && *s != '+' && (*s < '0' || *s > '9')))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

enum {
    T_SECRET_FILE = 256,
    T_KEY_FILE,
    T_ALG,
    T_KID,
    T_SUB,
    T_EXP_IN,
    T_EXP,
    T_NBF,
    T_IAT,
    T_NO_IAT,
    T_AUD,
    T_ISS,
    T_CHANNELS,
    T_INFO
};

int lhc_token_parse_args(int argc, char **argv, int64_t now, lhc_token_req_t *r)
{
    static const struct option longopts[] = {
        { "secret-file", required_argument, NULL, T_SECRET_FILE },
        { "key-file", required_argument, NULL, T_KEY_FILE },
        { "alg", required_argument, NULL, T_ALG },
        { "kid", required_argument, NULL, T_KID },
        { "sub", required_argument, NULL, T_SUB },
        { "exp-in", required_argument, NULL, T_EXP_IN },
        { "exp", required_argument, NULL, T_EXP },
        { "nbf", required_argument, NULL, T_NBF },
        { "iat", required_argument, NULL, T_IAT },
        { "no-iat", no_argument, NULL, T_NO_IAT },
        { "aud", required_argument, NULL, T_AUD },
        { "iss", required_argument, NULL, T_ISS },
        { "channels", required_argument, NULL, T_CHANNELS },
        { "info", required_argument, NULL, T_INFO },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    lhc_token_claims_t *c = &r->claims;
    int ch, exp_in = 0, exp_at = 0;
    int64_t v;

    memset(r, 0, sizeof(*r));
    optind = 0; /* glibc: start over (the unit test parses several command lines) */
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (ch) {
        case T_SECRET_FILE:
            r->secret_file = optarg;
            break;
        case T_KEY_FILE:
            r->key_file = optarg;
            break;
        case T_ALG:
            r->alg = lhc_token_alg(optarg);
            if (r->alg == 0)
                return token_usage_error("--alg is HS256, HS384, HS512, RS256 or ES256, "
                                         "not '%s'", optarg);
            break;
        case T_KID:
            if (*optarg == '\0')
                return token_usage_error("%s", "--kid wants a non-empty key id");
            c->kid = optarg;
            break;
        case T_SUB:
            c->sub = optarg;
            break;
        case T_EXP_IN:
            if (parse_int(optarg, -UNIX_MAX, UNIX_MAX, &v) < 0 || now + v < 0 ||
                now + v > UNIX_MAX)
                return token_usage_error("--exp-in wants seconds, not '%s'", optarg);
            c->exp = now + v;
            c->has |= LHC_TOKEN_EXP;
            exp_in = 1;
            break;
        case T_EXP:
        case T_NBF:
        case T_IAT:
            if (parse_int(optarg, 0, UNIX_MAX, &v) < 0 || optarg[0] == '-' ||
                optarg[0] == '+')
                return token_usage_error("--%s wants seconds since the epoch, not '%s'",
                                         ch == T_EXP ? "exp" : ch == T_NBF ? "nbf" : "iat",
                                         optarg);
            if (ch == T_EXP) {
                c->exp = v;
                c->has |= LHC_TOKEN_EXP;
                exp_at = 1;
            } else if (ch == T_NBF) {
                c->nbf = v;
                c->has |= LHC_TOKEN_NBF;
            } else {
                c->iat = v;
                c->has |= LHC_TOKEN_IAT;
            }
            break;
        case T_NO_IAT:
            r->no_iat = 1;
            break;
        case T_AUD:
            c->aud = optarg;
            break;
        case T_ISS:
            c->iss = optarg;
            break;
        case T_CHANNELS:
            c->channels = optarg;
            break;
        case T_INFO: {
            json_error_t je;
            json_t *j = json_loads(optarg, JSON_REJECT_DUPLICATES, &je);
            int ok = j != NULL && json_is_object(j);

            json_decref(j);
            if (!ok)
                return token_usage_error("--info must be a JSON object%s%s",
                                         j != NULL ? "" : ": ", j != NULL ? "" : je.text);
            c->info = optarg;
            break;
        }
        case 'h':
            fputs("usage: lhttpc token (--secret-file FILE | --key-file PEM) [OPTIONS]\n", stdout);
            lhc_token_usage(stdout);
            return LHC_EXIT_OK;
        case ':':
            return token_usage_error("option %s needs a value", argv[optind - 1]);
        default:
            return token_usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return token_usage_error("unexpected argument '%s'", argv[optind]);
    /* JSON strings are UTF-8: refuse here what the token could not hold. */
    {
        const char *text[] = { c->kid, c->sub, c->aud, c->iss, c->channels };

        for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
            if (text[i] != NULL && !lh_utf8_valid((const uint8_t *)text[i], strlen(text[i])))
                return token_usage_error("'%s' is not UTF-8", text[i]);
    }
    if ((r->secret_file == NULL) == (r->key_file == NULL))
        return token_usage_error("%s", "give the key: --secret-file FILE or --key-file PEM "
                                       "(one of them)");
    if (r->alg != 0 && r->secret_file != NULL && (r->alg & LH_JWT_HS_ALL) == 0)
        return token_usage_error("--alg %s signs with a private key: use --key-file, not "
                                 "--secret-file", alg_name(r->alg));
    if (r->alg != 0 && r->key_file != NULL && (r->alg & LH_JWT_HS_ALL) != 0)
        return token_usage_error("--alg %s signs with a secret: use --secret-file, not "
                                 "--key-file", alg_name(r->alg));
    if (exp_in && exp_at)
        return token_usage_error("%s", "give --exp-in or --exp, not both");
    if (r->no_iat && (c->has & LHC_TOKEN_IAT))
        return token_usage_error("%s", "give --iat or --no-iat, not both");
    if (!r->no_iat && !(c->has & LHC_TOKEN_IAT)) {
        c->iat = now;
        c->has |= LHC_TOKEN_IAT;
    }
    return -1;
}

/* Reads a whole file of at most max bytes (NUL-terminated). NULL with err when not. */
static char *slurp(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t n = 0;
    char *buf;

    if (fd < 0) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(max + 2);
    if (buf == NULL) {
        close(fd);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, max + 1 - n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            set_err(err, errlen, "%s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max) {
            set_err(err, errlen, "%s: larger than %zu bytes: not a key file", path, max);
            goto fail;
        }
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    close(fd);
    OPENSSL_cleanse(buf, n);
    free(buf);
    return NULL;
}

int lhc_token_main(int argc, char **argv)
{
    lhc_token_key_t key;
    lhc_token_req_t r;
    char err[512], *data, *tok;
    size_t len = 0;
    int status, rc;

    status = lhc_token_parse_args(argc, argv, (int64_t)time(NULL), &r);
    if (status >= 0)
        return status;
    data = slurp(r.secret_file ? r.secret_file : r.key_file,
                 r.secret_file ? SECRET_FILE_MAX : KEY_FILE_MAX, &len, err, sizeof(err));
    if (data == NULL) {
        fprintf(stderr, "lhttpc token: %s\n", err);
        return LHC_EXIT_KEY;
    }
    if (r.secret_file != NULL)
        rc = lhc_token_key_secret(&key, data, len, err, sizeof(err));
    else
        rc = lhc_token_key_pem(&key, data, len, err, sizeof(err));
    OPENSSL_cleanse(data, len);
    free(data);
    if (rc < 0) {
        fprintf(stderr, "lhttpc token: %s: %s\n", r.secret_file ? r.secret_file : r.key_file,
                err);
        return LHC_EXIT_KEY;
    }
    tok = lhc_token_mint(&key, r.alg, &r.claims, err, sizeof(err));
    lhc_token_key_clear(&key);
    if (tok == NULL) {
        fprintf(stderr, "lhttpc token: %s\n", err);
        return LHC_EXIT_KEY;
    }
    if (strlen(tok) > SERVER_MAX_TOKEN)
        fprintf(stderr, "lhttpc token: note: %zu bytes, more than lhttpd takes by default "
                        "(auth.max_token_bytes %d)\n", strlen(tok), SERVER_MAX_TOKEN);
    status = printf("%s\n", tok) < 0 || fflush(stdout) != 0 ? LHC_EXIT_KEY : LHC_EXIT_OK;
    if (status != LHC_EXIT_OK)
        fprintf(stderr, "lhttpc token: writing the token: %s\n", strerror(errno));
    free(tok);
    return status;
}
