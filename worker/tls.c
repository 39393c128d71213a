/*
 * TLS (OpenSSL 3) for the public and admin listeners: the certificates of a
 * configuration (a store, built once by the master when it loads the file, so every
 * worker forked from it shares the session ticket keys) and one connection's TLS
 * engine. The engine does no I/O: conn.c hands it the ciphertext it received and sends
 * the ciphertext it produced (t->out) through its own send path, so the send queue,
 * batching and limits.send_queue_bytes stay in charge. A custom BIO reads from the
 * caller's buffer without a copy and writes into t->out.
 */
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lh_log.h"

#define EXPIRY_WARN_S (30 * 86400)
#define DEFAULT_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1"

/* One listener's TLS: a context per certificate, ctx[0] the default. */
struct lh_tls_ctx_s {
    const lh_tls_cfg_t *cfg; /* what it was built from (borrowed from the config) */
    SSL_CTX **ctx;
    size_t n;
    int sni_strict;
};

typedef struct {
    char *file;
    int64_t not_after; /* Unix time */
} expiry_t;

struct lh_tls_store_s {
    lh_tls_ctx_t **ctxs; /* every listener's, for freeing */
    size_t nctxs;
    expiry_t *exp;
    size_t nexp;
};

static BIO_METHOD *bio_method;
static int ex_index = -1;

static const char *const result_names[LH_TLS_R_N] = {
    "ok", "resumed", "failed", "http_request", "timeout", "eof", "sni_refused", "plain_port"};
static const char *const version_names[LH_TLS_V_N] = {"", "TLSv1.2", "TLSv1.3"};
static const char *const error_names[LH_TLS_E_N] = {"renegotiation", "protocol"};

/* ---- The BIO: reads the caller's buffer (held bytes first), writes into t->out ---- */

static int out_reserve(lh_tls_t *t, size_t more)
{
    size_t need = t->out_len + more, cap = t->out_cap ? t->out_cap : 4096;
    uint8_t *p;

    if (need <= t->out_cap)
        return 0;
    if (t->out_off > 0) {
        /* What was sent is dead space: reuse it before growing, or a connection that
         * never quite drains would grow t->out by everything it was ever sent. */
        memmove(t->out, t->out + t->out_off, t->out_len - t->out_off);
        t->out_len -= t->out_off;
        t->out_off = 0;
        need = t->out_len + more;
        if (need <= t->out_cap)
            return 0;
    }
    while (cap < need)
        cap *= 2;
    p = realloc(t->out, cap);
    if (p == NULL)
        return -1;
    t->out = p;
    t->out_cap = cap;
    return 0;
}

static int bio_write(BIO *b, const char *data, int len)
{
    lh_tls_t *t = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (out_reserve(t, (size_t)len) < 0)
        return -1;
    memcpy(t->out + t->out_len, data, (size_t)len);
    t->out_len += (size_t)len;
    return len;
}

static int bio_read(BIO *b, char *dst, int len)
{
    lh_tls_t *t = BIO_get_data(b);
    size_t n;

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (t->held_len > t->held_off) {
        n = t->held_len - t->held_off;
        if (n > (size_t)len)
            n = (size_t)len;
        memcpy(dst, t->held + t->held_off, n);
        t->held_off += n;
        if (t->held_off == t->held_len) {
            free(t->held);
            t->held = NULL;
            t->held_len = t->held_off = 0;
        }
        return (int)n;
    }
    if (t->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    n = t->in_len < (size_t)len ? t->in_len : (size_t)len;
    memcpy(dst, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* ---- Contexts ---- */

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = "\x08http/1.1";
    unsigned char *sel;

    if (SSL_select_next_proto(&sel, outlen, h11, sizeof(h11) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no ALPN we speak: go on without one */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Picks the certificate whose names (SAN, else CN, wildcards allowed) match the SNI. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    lh_tls_ctx_t *l = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    lh_tls_t *t = SSL_get_ex_data(ssl, ex_index);

    if (name == NULL)
        return SSL_TLSEXT_ERR_OK; /* no SNI: the default certificate */
    for (size_t i = 0; i < l->n; i++) {
        X509 *x = SSL_CTX_get0_certificate(l->ctx[i]);

        if (x != NULL && X509_check_host(x, name, strlen(name), 0, NULL) == 1) {
            if (i > 0)
                SSL_set_SSL_CTX(ssl, l->ctx[i]);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    if (!l->sni_strict)
        return SSL_TLSEXT_ERR_OK;
    if (t != NULL)
        t->sni_refused = 1;
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* A ClientHello after the handshake (TLS 1.2 renegotiation): refused by OpenSSL
 * (SSL_OP_NO_RENEGOTIATION); noted here so that the connection is closed and counted. */
static void info_cb(const SSL *ssl, int where, int ret)
{
    lh_tls_t *t;

    if (!(where & SSL_CB_HANDSHAKE_START))
        return;
    t = SSL_get_ex_data(ssl, ex_index);
    if (t != NULL && t->done && SSL_version(ssl) < TLS1_3_VERSION)
        t->reneg = 1;
}

static void openssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();

    if (e == 0)
        snprintf(buf, cap, "unknown error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
}

static int64_t not_after_of(X509 *x)
{
    struct tm tm;

    if (x == NULL || !ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

static SSL_CTX *ctx_new(const lh_tls_cfg_t *t, const lh_tls_cert_cfg_t *cert, lh_tls_ctx_t *l,
                        int first, char *err, size_t errlen)
{
    SSL_CTX *x = SSL_CTX_new(TLS_server_method());
    char why[256];

    if (x == NULL) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errlen, "SSL_CTX_new: %s", why);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(x, t->min_version == 0x0304 ? TLS1_3_VERSION
                                                              : TLS1_2_VERSION);
    SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                           SSL_OP_NO_COMPRESSION);
    /* Idle connections give their record buffers back. */
    SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS);
    /* Resumption by tickets (stateless: the workers forked from the master share the
     * keys), no per-process session cache. */
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(x, 1);
    SSL_CTX_set_session_id_context(x, (const unsigned char *)"lhttpd", 6);
    if (SSL_CTX_set_cipher_list(x, t->ciphers ? t->ciphers : DEFAULT_CIPHERS) != 1) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errlen, "ciphers \"%s\": %s", t->ciphers ? t->ciphers : DEFAULT_CIPHERS,
                 why);
        goto fail;
    }
    if (t->ciphersuites != NULL && SSL_CTX_set_ciphersuites(x, t->ciphersuites) != 1) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errlen, "ciphersuites \"%s\": %s", t->ciphersuites, why);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(x, cert->cert_file) != 1) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errlen, "cert_file %s: %s", cert->cert_file, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(x, cert->key_file, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            snprintf(err, errlen, "key_file %s does not match cert_file %s", cert->key_file,
                     cert->cert_file);
            goto fail;
        }
        openssl_reason(why, sizeof(why));
        snprintf(err, errlen, "key_file %s: %s", cert->key_file, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(x) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "key_file %s does not match cert_file %s", cert->key_file,
                 cert->cert_file);
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(x, alpn_cb, NULL);
    SSL_CTX_set_info_callback(x, info_cb);
    if (first) {
        SSL_CTX_set_tlsext_servername_callback(x, sni_cb);
        SSL_CTX_set_tlsext_servername_arg(x, l);
    }
    return x;
fail:
    SSL_CTX_free(x);
    return NULL;
}

static void ctx_free(lh_tls_ctx_t *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        SSL_CTX_free(l->ctx[i]);
    free(l->ctx);
    free(l);
}

void lh_tls_store_free(lh_tls_store_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nctxs; i++)
        ctx_free(s->ctxs[i]);
    free(s->ctxs);
    for (size_t i = 0; i < s->nexp; i++)
        free(s->exp[i].file);
    free(s->exp);
    free(s);
}

static void store_free_cb(void *s)
{
    lh_tls_store_free(s);
}

/* Loads the certificates of t into a new listener context added to s. */
static int store_add(lh_tls_store_t *s, const lh_tls_cfg_t *t, const char *where, char *err,
                     size_t errlen)
{
    lh_tls_ctx_t *l = calloc(1, sizeof(*l)), **nc;
    char why[512];
    int64_t now = (int64_t)time(NULL);

    if (l == NULL || (l->ctx = calloc(t->ncerts, sizeof(*l->ctx))) == NULL) {
        free(l);
        snprintf(err, errlen, "%s: out of memory", where);
        return -1;
    }
    l->sni_strict = t->sni_strict;
    l->cfg = t;
    nc = realloc(s->ctxs, (s->nctxs + 1) * sizeof(*nc));
    if (nc == NULL) {
        ctx_free(l);
        snprintf(err, errlen, "%s: out of memory", where);
        return -1;
    }
    s->ctxs = nc;
    s->ctxs[s->nctxs++] = l;
    for (size_t i = 0; i < t->ncerts; i++) {
        expiry_t *ne;
        int64_t na;

        l->ctx[i] = ctx_new(t, &t->certs[i], l, i == 0, why, sizeof(why));
        if (l->ctx[i] == NULL) {
            snprintf(err, errlen, "%s: %s", where, why);
            return -1;
        }
        l->n = i + 1;
        na = not_after_of(SSL_CTX_get0_certificate(l->ctx[i]));
        if (na != 0 && na < now)
            lh_log(LH_LOG_WARNING, "%s: certificate %s expired %lld days ago", where,
                   t->certs[i].cert_file, (long long)((now - na) / 86400));
        else if (na != 0 && na - now < EXPIRY_WARN_S)
            lh_log(LH_LOG_WARNING, "%s: certificate %s expires in %lld days", where,
                   t->certs[i].cert_file, (long long)((na - now) / 86400));
        for (size_t j = 0; j < s->nexp; j++)
            if (strcmp(s->exp[j].file, t->certs[i].cert_file) == 0)
                goto next;
        ne = realloc(s->exp, (s->nexp + 1) * sizeof(*ne));
        if (ne == NULL) {
            snprintf(err, errlen, "%s: out of memory", where);
            return -1;
        }
        s->exp = ne;
        s->exp[s->nexp].file = strdup(t->certs[i].cert_file);
        s->exp[s->nexp].not_after = na;
        if (s->exp[s->nexp].file == NULL) {
            snprintf(err, errlen, "%s: out of memory", where);
            return -1;
        }
        s->nexp++;
next:;
    }
    return 0;
}

static int global_init(void)
{
    if (bio_method != NULL)
        return 0;
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "lhttpd conn");
    if (bio_method == NULL)
        return -1;
    BIO_meth_set_write(bio_method, bio_write);
    BIO_meth_set_read(bio_method, bio_read);
    BIO_meth_set_ctrl(bio_method, bio_ctrl);
    BIO_meth_set_create(bio_method, bio_create);
    ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    return ex_index < 0 ? -1 : 0;
}

int lh_tls_store_load(lh_config_t *cfg, char *err, size_t errlen)
{
    lh_tls_store_t *s;
    char where[320];
    int rc = 0;

    if (cfg->tls_store != NULL)
        return 0;
    if (global_init() < 0) {
        snprintf(err, errlen, "TLS: cannot set up OpenSSL");
        return -1;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "TLS: out of memory");
        return -1;
    }
    for (size_t i = 0; rc == 0 && i < cfg->listen.n; i++) {
        if (cfg->listen_tls == NULL || cfg->listen_tls[i] == NULL)
            continue;
        snprintf(where, sizeof(where), "listen %s: tls", cfg->listen.items[i]);
        rc = store_add(s, cfg->listen_tls[i], where, err, errlen);
    }
    for (size_t i = 0; rc == 0 && i < cfg->admin.listen.n; i++) {
        if (cfg->admin.listen_tls == NULL || cfg->admin.listen_tls[i] == NULL)
            continue;
        snprintf(where, sizeof(where), "admin.listen %s: tls", cfg->admin.listen.items[i]);
        rc = store_add(s, cfg->admin.listen_tls[i], where, err, errlen);
    }
    for (size_t i = 0; rc == 0 && i < cfg->ntls_sockets; i++) {
        snprintf(where, sizeof(where), "tls_sockets.%s", cfg->tls_sockets[i].name);
        rc = store_add(s, &cfg->tls_sockets[i].tls, where, err, errlen);
    }
    if (rc != 0) {
        lh_tls_store_free(s);
        return -1;
    }
    cfg->tls_store = s;
    cfg->tls_store_free = store_free_cb;
    return 0;
}

lh_tls_ctx_t *lh_tls_find(const lh_config_t *cfg, int kind, const char *key)
{
    const lh_tls_store_t *s = cfg->tls_store;
    const lh_tls_cfg_t *want = lh_config_tls_of(cfg, kind, key);

    if (s == NULL || want == NULL)
        return NULL;
    for (size_t i = 0; i < s->nctxs; i++)
        if (s->ctxs[i]->cfg == want)
            return s->ctxs[i];
    return NULL;
}

void lh_tls_kernel_note(void)
{
    static int said;

    if (said)
        return;
    said = 1;
    /* This build encrypts in user space, through lhttpd's own send queue. */
    lh_log(LH_LOG_INFO, "TLS: kernel TLS offload (kTLS) is not used; records are "
           "encrypted in user space (OpenSSL %s)", OpenSSL_version(OPENSSL_VERSION_STRING));
}

void lh_tls_render_expiry(const lh_config_t *cfg, FILE *f)
{
    const lh_tls_store_t *s = cfg ? cfg->tls_store : NULL;

    fprintf(f, "# HELP lhttpd_tls_certificate_expiry_seconds The notAfter of each certificate "
               "this generation serves, as Unix time.\n"
               "# TYPE lhttpd_tls_certificate_expiry_seconds gauge\n");
    for (size_t i = 0; s != NULL && i < s->nexp; i++)
        fprintf(f, "lhttpd_tls_certificate_expiry_seconds{file=\"%s\"} %lld\n", s->exp[i].file,
                (long long)s->exp[i].not_after);
}

const char *lh_tls_result_name(unsigned i)
{
    return i < LH_TLS_R_N ? result_names[i] : "?";
}

const char *lh_tls_version_name(unsigned i)
{
    return i < LH_TLS_V_N ? version_names[i] : "?";
}

const char *lh_tls_error_name(unsigned i)
{
    return i < LH_TLS_E_N ? error_names[i] : "?";
}

/* ---- One connection ---- */

lh_tls_t *lh_tls_new(lh_tls_ctx_t *l)
{
    lh_tls_t *t = calloc(1, sizeof(*t));
    BIO *b;

    if (t == NULL)
        return NULL;
    t->ssl = SSL_new(l->ctx[0]);
    b = BIO_new(bio_method);
    if (t->ssl == NULL || b == NULL) {
        BIO_free(b);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(b, t);
    SSL_set_bio(t->ssl, b, b);
    SSL_set_ex_data(t->ssl, ex_index, t);
    SSL_set_accept_state(t->ssl);
    t->start_ns = lh_now_ns();
    return t;
}

void lh_tls_free(lh_tls_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t->held);
    free(t->out);
    free(t);
}

static void count_handshake(lh_tls_t *t, unsigned result)
{
    unsigned v = LH_TLS_V_NONE;

    if (t->counted)
        return;
    t->counted = 1;
    if (result == LH_TLS_R_OK || result == LH_TLS_R_RESUMED) {
        v = SSL_version(t->ssl) == TLS1_3_VERSION ? LH_TLS_V_13 : LH_TLS_V_12;
        lh_metrics_observe_tls_handshake(lh_now_ns() - t->start_ns);
    }
    lh_m_inc(LH_M_TLS_HS_BASE + result * LH_TLS_V_N + v);
}

void lh_tls_gone(lh_tls_t *t, int timed_out)
{
    if (t != NULL && !t->done)
        count_handshake(t, timed_out ? LH_TLS_R_TIMEOUT : LH_TLS_R_EOF);
}

int lh_tls_handshake(lh_tls_t *t)
{
    int r = SSL_do_handshake(t->ssl), e;
    unsigned long reason;

    if (r == 1) {
        t->done = 1;
        count_handshake(t, SSL_session_reused(t->ssl) ? LH_TLS_R_RESUMED : LH_TLS_R_OK);
        return 1;
    }
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    reason = ERR_GET_REASON(ERR_peek_error());
    if (reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST) {
        t->http = 1;
        count_handshake(t, LH_TLS_R_HTTP);
    } else if (t->sni_refused) {
        count_handshake(t, LH_TLS_R_SNI);
    } else {
        count_handshake(t, LH_TLS_R_FAILED);
    }
    if (lh_log_level >= LH_LOG_DEBUG) {
        char why[256];

        openssl_reason(why, sizeof(why));
        lh_log(LH_LOG_DEBUG, "TLS handshake failed: %s", why);
    }
    ERR_clear_error();
    t->failed = 1;
    return -1;
}

ssize_t lh_tls_read(lh_tls_t *t, uint8_t *dst, size_t room)
{
    int r = SSL_read(t->ssl, dst, room > INT32_MAX ? INT32_MAX : (int)room), e;

    if (t->reneg) {
        lh_m_inc(LH_M_TLS_ERR_BASE + LH_TLS_E_RENEG);
        t->failed = 1;
        ERR_clear_error();
        return -2;
    }
    if (r > 0)
        return r;
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return -1;
    lh_m_inc(LH_M_TLS_ERR_BASE + LH_TLS_E_PROTOCOL);
    if (lh_log_level >= LH_LOG_DEBUG) {
        char why[256];

        openssl_reason(why, sizeof(why));
        lh_log(LH_LOG_DEBUG, "TLS read failed: %s", why);
    }
    ERR_clear_error();
    t->failed = 1;
    return -2;
}

int lh_tls_write(lh_tls_t *t, const void *data, size_t len)
{
    int r;

    if (len == 0)
        return 0;
    r = SSL_write(t->ssl, data, (int)len);
    if (r != (int)len) {
        ERR_clear_error();
        t->failed = 1;
        return -1;
    }
    return 0;
}

void lh_tls_shutdown(lh_tls_t *t)
{
    if (t->shut || t->failed || !t->done)
        return;
    t->shut = 1;
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

int lh_tls_keep(lh_tls_t *t)
{
    size_t live;
    uint8_t *p;

    if (t->in_len == 0)
        return 0;
    live = t->held_len - t->held_off;
    p = malloc(live + t->in_len);
    if (p == NULL)
        return -1;
    if (live)
        memcpy(p, t->held + t->held_off, live);
    memcpy(p + live, t->in, t->in_len);
    free(t->held);
    t->held = p;
    t->held_off = 0;
    t->held_len = live + t->in_len;
    t->in = NULL;
    t->in_len = 0;
    return 0;
}

int lh_tls_has_input(const lh_tls_t *t)
{
    return t->held_len > t->held_off || SSL_has_pending(t->ssl);
}

void lh_tls_out_sent(lh_tls_t *t, size_t n)
{
    t->out_off += n;
    if (t->out_off >= t->out_len) {
        t->out_off = t->out_len = 0;
        /* An idle connection keeps no output buffer. */
        free(t->out);
        t->out = NULL;
        t->out_cap = 0;
    }
}

int lh_tls_plain_answer(lh_tls_t *t, const char *text, size_t len)
{
    t->out_len = t->out_off = 0;
    if (out_reserve(t, len) < 0)
        return -1;
    memcpy(t->out, text, len);
    t->out_len = len;
    return 0;
}
