/*
 * Unit tests for clients/lhttpc/token.c (`lhttpc token`): tokens minted there with each
 * algorithm (HS256, HS384, HS512 from a secret, RS256 and ES256 from PEM private keys
 * made here with libcrypto) must pass the server's verifier, shared/lh_jwt.c, with their
 * kid and every claim; and what it must refuse: a short secret, a key that cannot sign the
 * algorithm asked for, keys lhttpd would not take, bad --info, bad command lines.
 * The client's source is compiled in here (it has no main()).
 */
#include "lh_test.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "../../clients/lhttpc/token.c"

#define NOW 1800000000

static const char secret[] = "0123456789abcdef0123456789abcdef!";

/* The rules of a server at NOW that wants aud "chat" and iss "https://id.example". */
static lh_jwt_rules_t rules(void)
{
    lh_jwt_rules_t r;

    memset(&r, 0, sizeof(r));
    r.algs = LH_JWT_HS_ALL | LH_JWT_RS256 | LH_JWT_ES256;
    r.now = NOW;
    r.leeway_s = 5;
    r.audience = "chat";
    r.issuer = "https://id.example";
    return r;
}

/* Every claim, as `lhttpc token --kid k1 --sub 42 --exp-in 600 ...` at NOW - 10. */
static lhc_token_claims_t all_claims(void)
{
    lhc_token_claims_t c;

    memset(&c, 0, sizeof(c));
    c.kid = "k1";
    c.sub = "42";
    c.aud = "chat";
    c.iss = "https://id.example";
    c.has = LHC_TOKEN_EXP | LHC_TOKEN_NBF | LHC_TOKEN_IAT;
    c.exp = NOW + 600;
    c.nbf = NOW - 10;
    c.iat = NOW - 10;
    c.channels = " feed.a  user.42\tb ";
    c.info = "{\"name\":\"Zo\xc3\xab\",\"roles\":[\"admin\"],\"n\":1}";
    return c;
}

static int verify(const char *tok, const lh_jwt_keys_t *k, const lh_jwt_rules_t *r)
{
    lh_jwt_claims_t c;
    int rc = lh_jwt_verify(tok, strlen(tok), k, r, &c);

    lh_jwt_claims_free(&c);
    return rc;
}

/* Part i (0, 1, 2) of a compact token, decoded into out (cap 8192); its length or -1. */
static long part_of(const char *tok, int i, char *out)
{
    const char *p = tok, *e;
    long n;

    while (i-- > 0) {
        p = strchr(p, '.');
        if (p == NULL)
            return -1;
        p++;
    }
    e = strchr(p, '.');
    if (e == NULL)
        e = p + strlen(p);
    if ((size_t)(e - p) > 8000)
        return -1;
    n = lh_jwt_b64url_decode(p, (size_t)(e - p), (uint8_t *)out);
    if (n >= 0)
        out[n] = '\0';
    return n;
}

/* 1 when tok is three non-empty base64url parts separated by dots. */
static int compact_form(const char *tok)
{
    size_t dots = 0, run = 0;

    for (const char *p = tok; *p != '\0'; p++) {
        if (*p == '.') {
            if (run == 0)
                return 0;
            dots++;
            run = 0;
        } else if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                   (*p >= '0' && *p <= '9') || *p == '-' || *p == '_') {
            run++;
        } else {
            return 0;
        }
    }
    return dots == 2 && run > 0;
}

/* Checks the claims of all_claims() in a verified token. */
static void check_all_claims(const char *tok, const lh_jwt_keys_t *k, unsigned alg)
{
    lh_jwt_rules_t r = rules();
    lh_jwt_claims_t c;

    LH_CHECK_INT(lh_jwt_verify(tok, strlen(tok), k, &r, &c), LH_JWT_OK);
    LH_CHECK(c.sub != NULL && strcmp(c.sub, "42") == 0);
    LH_CHECK_INT(c.exp, NOW + 600);
    LH_CHECK_INT(c.nbf, NOW - 10);
    LH_CHECK_INT(c.iat, NOW - 10);
    LH_CHECK_INT(c.alg, alg);
    LH_CHECK_INT(c.nchannels, 3);
    LH_CHECK(c.nchannels == 3 && strcmp(c.channels[0], "feed.a") == 0 &&
             strcmp(c.channels[1], "user.42") == 0 && strcmp(c.channels[2], "b") == 0);
    LH_CHECK(c.info != NULL &&
             strcmp(c.info, "{\"name\":\"Zo\xc3\xab\",\"roles\":[\"admin\"],\"n\":1}") == 0);
    lh_jwt_claims_free(&c);
    /* aud and iss are in it: a server wanting others refuses it. */
    r.audience = "chatroom";
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_AUDIENCE);
    r = rules();
    r.issuer = "https://evil.example";
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_BAD_ISSUER);
    /* exp is in it: after it, the token is refused. */
    r = rules();
    r.now = NOW + 700;
    LH_CHECK_INT(verify(tok, k, &r), LH_JWT_EXPIRED);
}

/* The private key of key as PEM text: PKCS #8, the traditional form, or encrypted. */
enum { PKCS8, TRADITIONAL, ENCRYPTED, PUBLIC };

static char *pem_of(EVP_PKEY *key, int form)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *copy = NULL;
    long n;
    int ok = 0;

    if (b == NULL)
        return NULL;
    switch (form) {
    case PKCS8:
        ok = PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
        break;
    case TRADITIONAL:
        ok = PEM_write_bio_PrivateKey_traditional(b, key, NULL, NULL, 0, NULL, NULL);
        break;
    case ENCRYPTED:
        ok = PEM_write_bio_PrivateKey(b, key, EVP_aes_256_cbc(), NULL, 0, NULL, "pass");
        break;
    default:
        ok = PEM_write_bio_PUBKEY(b, key);
        break;
    }
    if (ok == 1) {
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

LH_TEST(hmac_tokens_verify_with_kid_and_every_claim)
{
    static const unsigned hs[] = { LH_JWT_HS256, LH_JWT_HS384, LH_JWT_HS512 };
    static const char *const want_hdr[] = {
        "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}",
        "{\"alg\":\"HS384\",\"typ\":\"JWT\",\"kid\":\"k1\"}",
        "{\"alg\":\"HS512\",\"typ\":\"JWT\",\"kid\":\"k1\"}",
    };
    static const long sig_len[] = { 32, 48, 64 };
    lhc_token_claims_t c = all_claims();
    lhc_token_key_t key;
    lh_jwt_keys_t *k = lh_jwt_keys_new(), *other = lh_jwt_keys_new();
    lh_jwt_rules_t r = rules();
    char err[256], buf[8192];

    LH_CHECK_INT(lhc_token_key_secret(&key, secret, strlen(secret), err, sizeof(err)), 0);
    LH_CHECK_INT(lh_jwt_keys_add_secret(k, "k1", secret, strlen(secret), LH_JWT_HS_ALL, err,
                                        sizeof(err)), 0);
    LH_CHECK_INT(lh_jwt_keys_add_secret(other, "k2", secret, strlen(secret), LH_JWT_HS_ALL,
                                        err, sizeof(err)), 0);
    for (size_t i = 0; i < 3; i++) {
        char *tok = lhc_token_mint(&key, hs[i], &c, err, sizeof(err));

        LH_CHECK(tok != NULL);
        if (tok == NULL) {
            printf("# %s\n", err);
            continue;
        }
        LH_CHECK(compact_form(tok));
        LH_CHECK(part_of(tok, 0, buf) > 0 && strcmp(buf, want_hdr[i]) == 0);
        LH_CHECK_INT(part_of(tok, 2, buf), sig_len[i]);
        check_all_claims(tok, k, hs[i]);
        /* The kid selects the key: under another kid it is unknown. */
        LH_CHECK_INT(verify(tok, other, &r), LH_JWT_UNKNOWN_KID);
        free(tok);
    }
    /* The default algorithm of a secret is HS256; without kid or claims, a bare token. */
    {
        lhc_token_claims_t none;
        lh_jwt_keys_t *kidless = lh_jwt_keys_new();
        lh_jwt_claims_t cl;
        char *tok;

        memset(&none, 0, sizeof(none));
        tok = lhc_token_mint(&key, 0, &none, err, sizeof(err));
        LH_CHECK(tok != NULL && part_of(tok, 0, buf) > 0 &&
                 strcmp(buf, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}") == 0);
        LH_CHECK(tok != NULL && part_of(tok, 1, buf) == 2 && strcmp(buf, "{}") == 0);
        lh_jwt_keys_add_secret(kidless, NULL, secret, strlen(secret), LH_JWT_HS256, err,
                               sizeof(err));
        r = rules();
        r.audience = r.issuer = NULL;
        LH_CHECK(tok != NULL && lh_jwt_verify(tok, strlen(tok), kidless, &r, &cl) == LH_JWT_OK);
        LH_CHECK(cl.sub != NULL && cl.sub[0] == '\0' && cl.alg == LH_JWT_HS256);
        lh_jwt_claims_free(&cl);
        /* Signed with another secret, it does not verify. */
        lh_jwt_keys_free(kidless);
        kidless = lh_jwt_keys_new();
        lh_jwt_keys_add_secret(kidless, NULL, "another secret of more than 32 bytes", 36,
                               LH_JWT_HS256, err, sizeof(err));
        LH_CHECK(tok != NULL && verify(tok, kidless, &r) == LH_JWT_BAD_SIGNATURE);
        lh_jwt_keys_free(kidless);
        free(tok);
    }
    lhc_token_key_clear(&key);
    lhc_token_key_clear(&key); /* twice: a cleared key is empty */
    lh_jwt_keys_free(k);
    lh_jwt_keys_free(other);
}

LH_TEST(a_secret_is_its_bytes_without_trailing_cr_lf_and_32_of_them)
{
    lhc_token_claims_t c;
    lhc_token_key_t key;
    lh_jwt_keys_t *k = lh_jwt_keys_new(), *raw = lh_jwt_keys_new();
    lh_jwt_rules_t r = rules();
    char err[256], file[64], *tok;

    memset(&c, 0, sizeof(c));
    c.sub = "7";
    r.audience = r.issuer = NULL;
    /* A file as an editor writes it: the secret, then CR LF (and an extra newline). */
    snprintf(file, sizeof(file), "%s\r\n\n", secret);
    LH_CHECK_INT(lhc_token_key_secret(&key, file, strlen(file), err, sizeof(err)), 0);
    LH_CHECK_INT(key.secret_len, strlen(secret));
    tok = lhc_token_mint(&key, LH_JWT_HS256, &c, err, sizeof(err));
    lh_jwt_keys_add_secret(k, NULL, secret, strlen(secret), LH_JWT_HS256, err, sizeof(err));
    lh_jwt_keys_add_secret(raw, NULL, file, strlen(file), LH_JWT_HS256, err, sizeof(err));
    LH_CHECK(tok != NULL && verify(tok, k, &r) == LH_JWT_OK);
    LH_CHECK(tok != NULL && verify(tok, raw, &r) == LH_JWT_BAD_SIGNATURE);
    free(tok);
    lhc_token_key_clear(&key);
    /* A CR or LF inside the secret is part of it. */
    {
        static const char inner[] = "\n0123456789abcdef\r\n0123456789abcde\n";

        LH_CHECK_INT(lhc_token_key_secret(&key, inner, strlen(inner), err, sizeof(err)), 0);
        LH_CHECK_INT(key.secret_len, strlen(inner) - 1);
        LH_CHECK(key.secret != NULL && key.secret[0] == '\n' && key.secret[17] == '\r');
    }
    lhc_token_key_clear(&key);
    /* 32 bytes are enough; 31 (the line ends do not count) are refused, saying why. */
    LH_CHECK_INT(lhc_token_key_secret(&key, secret, 32, err, sizeof(err)), 0);
    lhc_token_key_clear(&key);
    err[0] = '\0';
    LH_CHECK_INT(lhc_token_key_secret(&key, "0123456789abcdef0123456789abcde\r\n\r\n", 35, err,
                                      sizeof(err)), -1);
    LH_CHECK(strstr(err, "31 bytes") != NULL && strstr(err, "32") != NULL);
    LH_CHECK_INT(key.kind, LHC_KEY_NONE);
    LH_CHECK_INT(lhc_token_key_secret(&key, "\r\n", 2, err, sizeof(err)), -1);
    /* A key that failed to load signs nothing. */
    LH_CHECK(lhc_token_mint(&key, 0, &c, err, sizeof(err)) == NULL);
    lh_jwt_keys_free(k);
    lh_jwt_keys_free(raw);
}

LH_TEST(rs256_and_es256_from_pem_private_keys)
{
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ec2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char *rsa_priv = rsa ? pem_of(rsa, PKCS8) : NULL, *rsa_pub = rsa ? pem_of(rsa, PUBLIC) : NULL;
    char *ec_priv = ec ? pem_of(ec, TRADITIONAL) : NULL, *ec_pub = ec ? pem_of(ec, PUBLIC) : NULL;
    char *ec2_pub = ec2 ? pem_of(ec2, PUBLIC) : NULL;
    lhc_token_claims_t c = all_claims();
    lhc_token_key_t rk, ek;
    lh_jwt_keys_t *k = lh_jwt_keys_new(), *wrong = lh_jwt_keys_new();
    lh_jwt_rules_t r = rules();
    char err[256], buf[8192], *tok;

    memset(&rk, 0, sizeof(rk));
    memset(&ek, 0, sizeof(ek));
    LH_CHECK(rsa_priv != NULL && rsa_pub != NULL && ec_priv != NULL && ec_pub != NULL &&
             ec2_pub != NULL);
    if (rsa_priv == NULL || rsa_pub == NULL || ec_priv == NULL || ec_pub == NULL ||
        ec2_pub == NULL)
        goto out;
    LH_CHECK(strstr(ec_priv, "BEGIN EC PRIVATE KEY") != NULL); /* the traditional form */
    LH_CHECK_INT(lhc_token_key_pem(&rk, rsa_priv, strlen(rsa_priv), err, sizeof(err)), 0);
    LH_CHECK_INT(rk.kind, LHC_KEY_RSA);
    LH_CHECK_INT(lhc_token_key_pem(&ek, ec_priv, strlen(ec_priv), err, sizeof(err)), 0);
    LH_CHECK_INT(ek.kind, LHC_KEY_EC);
    LH_CHECK_INT(lh_jwt_keys_add_pem(k, "k1", rsa_pub, strlen(rsa_pub), err, sizeof(err)), 0);
    LH_CHECK_INT(lh_jwt_keys_add_pem(k, "e1", ec_pub, strlen(ec_pub), err, sizeof(err)), 0);
    LH_CHECK_INT(lh_jwt_keys_add_pem(wrong, "e1", ec2_pub, strlen(ec2_pub), err, sizeof(err)),
                 0);

    /* RSA: RS256 by default. */
    tok = lhc_token_mint(&rk, 0, &c, err, sizeof(err));
    LH_CHECK(tok != NULL);
    if (tok != NULL) {
        LH_CHECK(compact_form(tok));
        LH_CHECK(part_of(tok, 0, buf) > 0 &&
                 strcmp(buf, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}") == 0);
        LH_CHECK_INT(part_of(tok, 2, buf), 256);
        check_all_claims(tok, k, LH_JWT_RS256);
        free(tok);
    }
    /* EC: ES256 by default, the signature r || s in 64 bytes (not DER). */
    c.kid = "e1";
    for (int i = 0; i < 20; i++) { /* DER lengths vary from signature to signature */
        tok = lhc_token_mint(&ek, i % 2 ? LH_JWT_ES256 : 0, &c, err, sizeof(err));
        LH_CHECK(tok != NULL);
        if (tok == NULL)
            break;
        LH_CHECK(part_of(tok, 0, buf) > 0 &&
                 strcmp(buf, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"e1\"}") == 0);
        LH_CHECK_INT(part_of(tok, 2, buf), 64);
        LH_CHECK_INT(verify(tok, k, &r), LH_JWT_OK);
        LH_CHECK_INT(verify(tok, wrong, &r), LH_JWT_BAD_SIGNATURE);
        if (i == 0)
            check_all_claims(tok, k, LH_JWT_ES256);
        free(tok);
    }
    /* Each key signs its own algorithm only. */
    for (unsigned a = LH_JWT_HS256; a <= LH_JWT_ES256; a <<= 1) {
        char *t1 = lhc_token_mint(&rk, a, &c, err, sizeof(err));
        int refused = t1 == NULL;

        LH_CHECK(refused == (a != LH_JWT_RS256));
        if (refused)
            LH_CHECK(strstr(err, "cannot sign") != NULL && strstr(err, alg_name(a)) != NULL);
        free(t1);
        t1 = lhc_token_mint(&ek, a, &c, err, sizeof(err));
        LH_CHECK((t1 == NULL) == (a != LH_JWT_ES256));
        free(t1);
    }
    {
        lhc_token_key_t sk;

        LH_CHECK_INT(lhc_token_key_secret(&sk, secret, strlen(secret), err, sizeof(err)), 0);
        LH_CHECK(lhc_token_mint(&sk, LH_JWT_RS256, &c, err, sizeof(err)) == NULL);
        LH_CHECK(strstr(err, "HMAC secret cannot sign RS256") != NULL);
        LH_CHECK(lhc_token_mint(&sk, LH_JWT_ES256, &c, err, sizeof(err)) == NULL);
        lhc_token_key_clear(&sk);
    }
out:
    lhc_token_key_clear(&rk);
    lhc_token_key_clear(&ek);
    lh_jwt_keys_free(k);
    lh_jwt_keys_free(wrong);
    free(rsa_priv);
    free(rsa_pub);
    free(ec_priv);
    free(ec_pub);
    free(ec2_pub);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec2);
}

LH_TEST(keys_lhttpd_would_not_take_are_refused)
{
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    static const struct {
        int key, form;
        const char *why;
    } cases[] = {
        { 0, PKCS8, "2048" },           { 1, PKCS8, "P-256" },
        { 2, PKCS8, "ED25519" },        { 3, ENCRYPTED, "passphrase" },
        { 3, PUBLIC, "public key" },
    };
    EVP_PKEY *keys[] = { small, p384, ed, ec };
    lhc_token_key_t k;
    char err[256];

    LH_CHECK(small != NULL && p384 != NULL && ed != NULL && ec != NULL);
    for (size_t i = 0; i < LH_ARRAY_LEN(cases); i++) {
        char *pem = keys[cases[i].key] ? pem_of(keys[cases[i].key], cases[i].form) : NULL;

        LH_CHECK(pem != NULL);
        if (pem == NULL)
            continue;
        err[0] = '\0';
        LH_CHECK_INT(lhc_token_key_pem(&k, pem, strlen(pem), err, sizeof(err)), -1);
        if (strstr(err, cases[i].why) == NULL) {
            printf("# case %zu: \"%s\" does not say %s\n", i, err, cases[i].why);
            lh_t_failed_checks++;
        }
        LH_CHECK(k.kind == LHC_KEY_NONE && k.pkey == NULL);
        free(pem);
    }
    LH_CHECK_INT(lhc_token_key_pem(&k, "not a key", 9, err, sizeof(err)), -1);
    LH_CHECK(strstr(err, "not a PEM private key") != NULL);
    LH_CHECK_INT(lhc_token_key_pem(&k, "", 0, err, sizeof(err)), -1);
    EVP_PKEY_free(small);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(ec);
}

LH_TEST(claims_that_cannot_be_put_in_a_token)
{
    lhc_token_claims_t c;
    lhc_token_key_t key;
    char err[256], *tok;

    lhc_token_key_secret(&key, secret, strlen(secret), err, sizeof(err));
    memset(&c, 0, sizeof(c));
    c.info = "[1,2]";
    LH_CHECK((tok = lhc_token_mint(&key, 0, &c, err, sizeof(err))) == NULL);
    free(tok);
    LH_CHECK(strstr(err, "info must be a JSON object") != NULL);
    c.info = "{\"a\":1,\"a\":2}"; /* lhttpd refuses duplicate names */
    LH_CHECK((tok = lhc_token_mint(&key, 0, &c, err, sizeof(err))) == NULL);
    free(tok);
    c.info = "{\"a\":";
    LH_CHECK((tok = lhc_token_mint(&key, 0, &c, err, sizeof(err))) == NULL);
    free(tok);
    c.info = NULL;
    c.sub = "\xff";
    LH_CHECK((tok = lhc_token_mint(&key, 0, &c, err, sizeof(err))) == NULL);
    free(tok);
    LH_CHECK(strstr(err, "sub is not UTF-8") != NULL);
    /* An empty channels list is an empty array. */
    c.sub = NULL;
    c.channels = "  ";
    tok = lhc_token_mint(&key, 0, &c, err, sizeof(err));
    {
        char buf[8192];

        LH_CHECK(tok != NULL && part_of(tok, 1, buf) > 0 &&
                 strcmp(buf, "{\"channels\":[]}") == 0);
    }
    free(tok);
    lhc_token_key_clear(&key);
}

/*
 * Parses a command line (words separated by '|', after "token") with what it prints
 * (usage errors, --help) sent to /dev/null instead of the TAP output.
 */
static int parse(const char *line, lhc_token_req_t *r)
{
    char copy[1024], *argv[32];
    int argc = 0, rc;
    FILE *saved_err = stderr, *saved_out = stdout, *null = fopen("/dev/null", "w");

    snprintf(copy, sizeof(copy), "token|%s", line);
    for (char *p = strtok(copy, "|"); p != NULL && argc < 31; p = strtok(NULL, "|"))
        argv[argc++] = p;
    argv[argc] = NULL;
    fflush(stdout);
    if (null != NULL)
        stderr = stdout = null;
    rc = lhc_token_parse_args(argc, argv, 1000, r);
    stderr = saved_err;
    stdout = saved_out;
    if (null != NULL)
        fclose(null);
    return rc;
}

LH_TEST(command_line)
{
    lhc_token_req_t r;

    LH_CHECK_INT(parse("--secret-file|s|--exp-in|60|--sub|42|--kid|k", &r), -1);
    LH_CHECK(r.secret_file != NULL && strcmp(r.secret_file, "s") == 0 && r.key_file == NULL);
    LH_CHECK_INT(r.alg, 0);
    LH_CHECK_INT(r.claims.has, LHC_TOKEN_EXP | LHC_TOKEN_IAT);
    LH_CHECK_INT(r.claims.exp, 1060);
    LH_CHECK_INT(r.claims.iat, 1000); /* iat defaults to now */
    LH_CHECK(r.claims.sub != NULL && strcmp(r.claims.sub, "42") == 0);
    LH_CHECK(r.claims.kid != NULL && strcmp(r.claims.kid, "k") == 0);
    LH_CHECK_INT(parse("--key-file|k.pem|--exp-in|-60|--no-iat|--alg|ES256", &r), -1);
    LH_CHECK_INT(r.claims.has, LHC_TOKEN_EXP);
    LH_CHECK_INT(r.claims.exp, 940);
    LH_CHECK_INT(r.alg, LH_JWT_ES256);
    LH_CHECK_INT(parse("--key-file|k.pem|--exp|2000|--nbf|900|--iat|950|--aud|a|--iss|i|"
                       "--channels|x y|--info|{\"k\":[1]}|--alg|RS256", &r), -1);
    LH_CHECK_INT(r.claims.has, LHC_TOKEN_EXP | LHC_TOKEN_NBF | LHC_TOKEN_IAT);
    LH_CHECK(r.claims.exp == 2000 && r.claims.nbf == 900 && r.claims.iat == 950);
    LH_CHECK(r.claims.aud != NULL && r.claims.iss != NULL && r.claims.channels != NULL &&
             r.claims.info != NULL && strcmp(r.claims.info, "{\"k\":[1]}") == 0);
    LH_CHECK_INT(parse("--secret-file|s|--alg|HS512", &r), -1);
    LH_CHECK_INT(r.alg, LH_JWT_HS512);
    LH_CHECK_INT(parse("--help", &r), 0);

    /* Usage errors: exit status 2. */
    static const char *const bad[] = {
        "",                                    /* no key */
        "--secret-file|s|--key-file|k",        /* two keys */
        "--secret-file|s|--alg|RS256",         /* a secret does not sign RS256 */
        "--secret-file|s|--alg|ES256",
        "--key-file|k|--alg|HS256",            /* a PEM key does not sign HS256 */
        "--secret-file|s|--alg|none",
        "--secret-file|s|--alg|hs256",
        "--secret-file|s|--exp-in|5|--exp|7",
        "--secret-file|s|--exp-in|soon",
        "--secret-file|s|--exp|-5",
        "--secret-file|s|--exp|1e9",
        "--secret-file|s|--nbf|+5",
        "--secret-file|s|--iat|5|--no-iat",
        "--secret-file|s|--info|[1]",
        "--secret-file|s|--info|{\"a\":1,\"a\":2}",
        "--secret-file|s|--info|nope",
        "--secret-file|s|--kid|",
        "--secret-file|s|--sub|\xc3",
        "--secret-file|s|extra",
        "--secret-file|s|--bogus",
        "--secret-file",
    };
    for (size_t i = 0; i < LH_ARRAY_LEN(bad); i++) {
        int rc = parse(bad[i], &r);

        if (rc != LHC_EXIT_USAGE) {
            printf("# '%s': %d, expected 2\n", bad[i], rc);
            lh_t_failed_checks++;
        }
    }
}

int main(void)
{
    LH_RUN(hmac_tokens_verify_with_kid_and_every_claim);
    LH_RUN(a_secret_is_its_bytes_without_trailing_cr_lf_and_32_of_them);
    LH_RUN(rs256_and_es256_from_pem_private_keys);
    LH_RUN(keys_lhttpd_would_not_take_are_refused);
    LH_RUN(claims_that_cannot_be_put_in_a_token);
    LH_RUN(command_line);
    LH_DONE();
}
