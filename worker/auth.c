/*
 * Identity and channel permissions: the verification keys and rules of a configuration
 * (lh_auth_t), the identity of each connection (lh_ident_t: user id, info, the channels
 * its token lists, when the token expires), and the decisions the namespace rules make
 * for a subscribe or a publish. Tokens are verified by shared/lh_jwt.c; this file reads
 * the key files and keeps the timers.
 *
 * Ownership: a worker owns its lh_auth_t (w->auth), built from its configuration when it
 * starts and rebuilt from the new file when a reload retires it (lh_auth_new with an owned
 * config), so that old connections obey new rules. Each connection owns its identity
 * (c->ident, NULL for an anonymous connection that needs nothing else); the identity is
 * copied out of the token, so it never points into an lh_auth_t.
 *
 * Decisions are taken once per subscribe and once per publish, on the worker the client
 * is connected to, before anything is queued or sent to NATS; nothing is checked per
 * delivery.
 */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lh_jwt.h"
#include "lh_log.h"
#include "lh_ws.h"

_Static_assert((int)LH_AUTH_R_MISSING == (int)LH_JWT_NRESULTS, "auth failure reasons follow lh_jwt's");

#define KEY_FILE_MAX (1024 * 1024)

struct lh_auth_s {
    lh_config_t *own;      /* the config the rules come from, when it is not the worker's */
    const lh_config_t *cfg;
    lh_jwt_keys_t *keys;
    unsigned algs;
    unsigned *ns_label;    /* per cfg->namespaces: lhttpd_permission_denied_total's label */
    int open;              /* anonymous allowed and no namespace rules: nothing to check */
};

struct lh_ident_s {
    lh_conn_t *c;
    char *sub;             /* "" for anonymous, never NULL */
    char *info;            /* compact JSON object, or NULL */
    char **channels;       /* the token's "channels" claim */
    size_t nchannels;
    int64_t exp;           /* 0: never */
    uint8_t kind;          /* LH_ID_* */
    uint8_t refresh_sent;  /* exp passed: "refresh" sent, the grace runs */
    struct event ev;       /* the auth deadline, or exp, then exp + grace */
    int ev_on;
};

/* ---- Keys and rules ------------------------------------------------------------------ */

/* Reads a whole file (at most KEY_FILE_MAX bytes) into a NUL-terminated buffer. */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(KEY_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    n = fread(buf, 1, KEY_FILE_MAX + 1, f);
    if (ferror(f) || n > KEY_FILE_MAX) {
        snprintf(err, errlen, "%s: %s", path, ferror(f) ? strerror(errno) : "larger than 1 MiB");
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static unsigned alg_bits(const lh_strlist_t *l)
{
    static const struct { const char *name; unsigned bit; } t[] = {
        {"HS256", LH_JWT_HS256}, {"HS384", LH_JWT_HS384}, {"HS512", LH_JWT_HS512},
        {"RS256", LH_JWT_RS256}, {"ES256", LH_JWT_ES256}};
    unsigned bits = 0;

    for (size_t i = 0; i < l->n; i++)
        for (size_t k = 0; k < LH_ARRAY_LEN(t); k++)
            if (strcmp(l->items[i], t[k].name) == 0)
                bits |= t[k].bit;
    return bits;
}

/* Adds the key of entry kc to a->keys. Returns 0, or -1 with err. */
static int load_key(lh_auth_t *a, const lh_key_cfg_t *kc, size_t i, char *err, size_t errlen)
{
    const char *path = kc->secret_file ? kc->secret_file
                       : kc->public_key_file ? kc->public_key_file : kc->jwks_file;
    char why[256];
    size_t len = 0;
    char *text = read_file(path, &len, why, sizeof(why));
    int rc;

    if (text == NULL) {
        snprintf(err, errlen, "auth.keys[%zu]: %s", i, why);
        return -1;
    }
    if (kc->secret_file != NULL) {
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
            len--;
        rc = lh_jwt_keys_add_secret(a->keys, kc->kid, text, len, LH_JWT_HS_ALL, why,
                                    sizeof(why));
    } else if (kc->public_key_file != NULL) {
        rc = lh_jwt_keys_add_pem(a->keys, kc->kid, text, len, why, sizeof(why));
    } else {
        rc = lh_jwt_keys_add_jwks(a->keys, text, len, why, sizeof(why)) > 0 ? 0 : -1;
    }
    /* The secret's bytes do not outlive their use. */
    explicit_bzero(text, len);
    free(text);
    if (rc < 0) {
        snprintf(err, errlen, "auth.keys[%zu]: %s: %s", i, path, why);
        return -1;
    }
    return 0;
}

lh_auth_t *lh_auth_new(const lh_config_t *cfg, lh_config_t *own, char *err, size_t errlen)
{
    lh_auth_t *a = calloc(1, sizeof(*a));

    if (a == NULL || (a->keys = lh_jwt_keys_new()) == NULL ||
        (cfg->nnamespaces > 0 &&
         (a->ns_label = calloc(cfg->nnamespaces, sizeof(*a->ns_label))) == NULL)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    a->own = own;
    a->cfg = cfg;
    a->algs = alg_bits(&cfg->auth.algorithms);
    for (size_t i = 0; i < cfg->auth.nkeys; i++)
        if (load_key(a, &cfg->auth.keys[i], i, err, errlen) < 0)
            goto fail;
    for (size_t i = 0; i < cfg->nnamespaces; i++)
        a->ns_label[i] = lh_metrics_ns_index(cfg->namespaces[i].name, cfg->namespaces[i].len);
    a->open = cfg->auth.anonymous && cfg->nnamespaces == 0;
    return a;
fail:
    if (a != NULL)
        a->own = NULL; /* on failure the caller keeps its config */
    lh_auth_free(a);
    return NULL;
}

void lh_auth_free(lh_auth_t *a)
{
    if (a == NULL)
        return;
    lh_jwt_keys_free(a->keys);
    free(a->ns_label);
    lh_config_free(a->own);
    free(a);
}

const lh_config_t *lh_auth_config(const lh_auth_t *a)
{
    return a->cfg;
}

void lh_auth_register_labels(const lh_config_t *cfg)
{
    const char *names[LH_MAX_NAMESPACES];

    for (size_t i = 0; i < cfg->nnamespaces && i < LH_MAX_NAMESPACES; i++)
        names[i] = cfg->namespaces[i].name;
    lh_metrics_ns_register(names, cfg->nnamespaces);
}

void lh_auth_count_failure(unsigned reason)
{
    if (reason > 0 && reason < LH_AUTH_R_N)
        lh_m_inc(LH_M_AUTH_FAIL_BASE + reason);
}

int lh_auth_user_valid(const char *s, size_t len)
{
    return len <= LH_USER_MAX && (len == 0 || lh_lhttp_header_valid("user", 4, s, len));
}

int lh_auth_verify(const lh_auth_t *a, const char *tok, size_t len, lh_jwt_claims_t *out)
{
    const lh_config_t *cfg = a->cfg;
    lh_jwt_rules_t rules = {
        .algs = a->algs,
        .now = (int64_t)time(NULL),
        .leeway_s = cfg->auth.leeway_s,
        .audience = cfg->auth.audience,
        .issuer = cfg->auth.issuer,
        .max_bytes = cfg->auth.max_token_bytes,
        .max_lifetime_s = cfg->auth.max_lifetime_s,
        .require_exp = cfg->auth.require_exp,
    };
    int r;

    if (lh_jwt_keys_count(a->keys) == 0) {
        memset(out, 0, sizeof(*out));
        r = LH_JWT_UNKNOWN_KID; /* no key at all: no token can be valid */
    } else {
        r = lh_jwt_verify(tok, len, a->keys, &rules, out);
    }
    /* The user id goes into headers (sender, user): it must be one header value. */
    if (r == LH_JWT_OK && !lh_auth_user_valid(out->sub, strlen(out->sub))) {
        lh_jwt_claims_free(out);
        r = LH_JWT_BAD_CLAIMS;
    }
    if (r != LH_JWT_OK)
        lh_auth_count_failure((unsigned)r);
    return r;
}

const char *lh_auth_reason_text(int r)
{
    switch (r) {
    case LH_JWT_TOO_BIG: return "token over auth.max_token_bytes";
    case LH_JWT_MALFORMED: return "malformed token";
    case LH_JWT_BAD_ALG: return "token algorithm not accepted";
    case LH_JWT_UNKNOWN_KID: return "no key for this token";
    case LH_JWT_BAD_SIGNATURE: return "bad token signature";
    case LH_JWT_BAD_CLAIMS: return "bad token claims";
    case LH_JWT_EXPIRED: return "token expired";
    case LH_JWT_NOT_YET_VALID: return "token not valid yet";
    case LH_JWT_BAD_AUDIENCE: return "token audience not accepted";
    case LH_JWT_BAD_ISSUER: return "token issuer not accepted";
    case LH_JWT_TOO_LONG_LIVED: return "token lifetime over auth.max_lifetime_s";
    default: return "invalid token";
    }
}

/* ---- Connection identity ------------------------------------------------------------- */

static void ident_clear(lh_ident_t *id)
{
    if (id->ev_on) {
        event_del(&id->ev);
        id->ev_on = 0;
    }
    free(id->sub);
    free(id->info);
    for (size_t i = 0; i < id->nchannels; i++)
        free(id->channels[i]);
    free(id->channels);
    id->sub = id->info = NULL;
    id->channels = NULL;
    id->nchannels = 0;
    id->exp = 0;
    id->refresh_sent = 0;
}

static void ident_timer_cb(evutil_socket_t fd, short what, void *arg);

static lh_ident_t *ident_of(lh_conn_t *c)
{
    lh_ident_t *id = c->ident;

    if (id != NULL)
        return id;
    id = calloc(1, sizeof(*id));
    if (id == NULL)
        return NULL;
    id->c = c;
    evtimer_assign(&id->ev, c->w->base, ident_timer_cb, id);
    c->ident = id;
    return id;
}

static void arm(lh_ident_t *id, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    event_add(&id->ev, &tv);
    id->ev_on = 1;
}

/* The longest the expiry timer is armed for at once: a token that expires later re-arms
 * it when it fires (a far exp times 1000 ms would not fit in 64 bits). */
#define EXPIRY_STEP_S 86400

/* Arms the expiry of a token identity: at exp (in steps of at most EXPIRY_STEP_S), then
 * the grace. */
static void arm_expiry(lh_ident_t *id)
{
    int64_t now = (int64_t)time(NULL);

    if (id->ev_on) {
        event_del(&id->ev);
        id->ev_on = 0;
    }
    if (id->exp == 0)
        return;
    arm(id, id->exp > now ? (uint64_t)(id->exp - now > EXPIRY_STEP_S ? EXPIRY_STEP_S
                                                                     : id->exp - now) * 1000
                          : 0);
}

static void ident_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_ident_t *id = arg;
    lh_conn_t *c = id->c;
    lh_worker_t *w = c->w;
    const lh_config_t *cfg = lh_auth_config(w->auth);

    (void)fd;
    (void)what;
    id->ev_on = 0;
    w->now_ms = lh_now_ms();
    if (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT))
        return;
    if (id->kind == LH_ID_NONE) {
        lh_log(LH_LOG_INFO, "%s: conn %llu: no token within auth.timeout_ms: closing 4401",
               lh_conn_peer_name(c), (unsigned long long)c->id);
        lh_auth_count_failure(LH_AUTH_R_MISSING);
        lh_conn_close_ws(c, LH_WS_CLOSE_UNAUTHORIZED, "authentication required");
        return;
    }
    if (!id->refresh_sent && id->exp - (int64_t)time(NULL) > 1) {
        arm_expiry(id); /* a step of a far expiry */
        return;
    }
    if (!id->refresh_sent) {
        char msg[96];
        int n = snprintf(msg, sizeof(msg), "LHTTP/1.0 refresh\r\nexpires:%" PRId64 "\r\n\r\n",
                         id->exp);

        id->refresh_sent = 1;
        lh_conn_queue_frame(c, LH_WS_OP_TEXT, msg, (size_t)n);
        if (!(c->flags & LH_CF_DEAD))
            arm(id, cfg->auth.expiry_grace_ms);
        return;
    }
    lh_log(LH_LOG_INFO, "%s: conn %llu: user \"%s\": token expired and not refreshed: closing "
           "4401", lh_conn_peer_name(c), (unsigned long long)c->id, id->sub);
    lh_auth_count_failure(LH_AUTH_R_NOT_REFRESHED);
    lh_conn_close_ws(c, LH_WS_CLOSE_UNAUTHORIZED, "token expired");
}

int lh_auth_set_token(lh_conn_t *c, lh_jwt_claims_t *cl)
{
    lh_ident_t *id = ident_of(c);

    if (id == NULL)
        return -ENOMEM;
    ident_clear(id);
    id->kind = LH_ID_TOKEN;
    id->sub = cl->sub;
    id->info = cl->info;
    id->channels = cl->channels;
    id->nchannels = cl->nchannels;
    id->exp = cl->exp;
    memset(cl, 0, sizeof(*cl));
    if (id->sub == NULL && (id->sub = strdup("")) == NULL)
        return -ENOMEM;
    arm_expiry(id);
    return 0;
}

int lh_auth_set_user(lh_conn_t *c, const char *user, size_t ulen, const char *info)
{
    lh_ident_t *id = ident_of(c);

    if (id == NULL)
        return -ENOMEM;
    ident_clear(id);
    id->kind = LH_ID_WEBHOOK;
    id->sub = strndup(user, ulen);
    if (info != NULL)
        id->info = strdup(info);
    if (id->sub == NULL || (info != NULL && id->info == NULL))
        return -ENOMEM;
    return 0;
}

void lh_auth_opened(lh_conn_t *c)
{
    lh_ident_t *id;

    if (c->ident != NULL || lh_auth_config(c->w->auth)->auth.anonymous)
        return;
    /* A connection that must authenticate and has not: only `auth` until the deadline. */
    id = ident_of(c);
    if (id == NULL) {
        lh_conn_close_ws(c, LH_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    id->kind = LH_ID_NONE;
    if ((id->sub = strdup("")) == NULL) {
        lh_conn_close_ws(c, LH_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    arm(id, lh_auth_config(c->w->auth)->auth.timeout_ms);
}

void lh_auth_export(const lh_conn_t *c, lh_hw_t *hw)
{
    const lh_ident_t *id = c->ident;

    if (id == NULL) {
        lh_hw_u8(hw, 0); /* no identity: anonymous, nothing due */
        lh_hw_u8(hw, 0);
        lh_hw_u64(hw, 0);
        lh_hw_str(hw, NULL, 0);
        lh_hw_str(hw, NULL, 0);
        lh_hw_u32(hw, 0);
        return;
    }
    lh_hw_u8(hw, (uint8_t)(id->kind + 1));
    lh_hw_u8(hw, id->refresh_sent);
    lh_hw_u64(hw, (uint64_t)id->exp);
    lh_hw_str(hw, id->sub, id->sub ? strlen(id->sub) : 0);
    lh_hw_str(hw, id->info, id->info ? strlen(id->info) : 0);
    lh_hw_u32(hw, (uint32_t)id->nchannels);
    for (size_t i = 0; i < id->nchannels; i++)
        lh_hw_str(hw, id->channels[i], strlen(id->channels[i]));
}

int lh_auth_adopt(lh_conn_t *c, const lh_ho_rec_t *r)
{
    lh_ident_t *id;
    lh_ho_list_t l = r->claims;
    const char *s;
    size_t n;

    if (r->id_kind == 0)
        return 0;
    if ((id = ident_of(c)) == NULL)
        return -ENOMEM;
    ident_clear(id);
    id->kind = (uint8_t)(r->id_kind - 1);
    id->refresh_sent = r->refresh_sent;
    id->exp = r->exp;
    id->sub = strndup(r->sub ? r->sub : "", r->sub_len);
    if (r->info != NULL)
        id->info = strndup(r->info, r->info_len);
    if (id->sub == NULL || (r->info != NULL && id->info == NULL))
        return -ENOMEM;
    if (l.n > 0 && (id->channels = calloc(l.n, sizeof(*id->channels))) == NULL)
        return -ENOMEM;
    while (lh_handoff_next_claim(&l, &s, &n)) {
        if ((id->channels[id->nchannels] = strndup(s, n)) == NULL)
            return -ENOMEM;
        id->nchannels++;
    }
    if (id->kind == LH_ID_TOKEN) {
        if (id->refresh_sent) /* the grace runs again in full: the old timer is not known */
            arm(id, lh_auth_config(c->w->auth)->auth.expiry_grace_ms);
        else
            arm_expiry(id);
    }
    return 0;
}

void lh_auth_conn_gone(lh_conn_t *c)
{
    if (c->ident == NULL)
        return;
    ident_clear(c->ident);
    free(c->ident);
    c->ident = NULL;
}

int lh_auth_pending(const lh_conn_t *c)
{
    return c->ident != NULL && c->ident->kind == LH_ID_NONE;
}

const char *lh_auth_user(const lh_conn_t *c)
{
    return c->ident != NULL && c->ident->sub != NULL ? c->ident->sub : "";
}

const char *lh_auth_info(const lh_conn_t *c)
{
    return c->ident != NULL ? c->ident->info : NULL;
}

int64_t lh_auth_expires(const lh_conn_t *c)
{
    return c->ident != NULL ? c->ident->exp : 0;
}

int lh_auth_kind(const lh_conn_t *c)
{
    return c->ident != NULL ? c->ident->kind : LH_ID_ANON;
}

/* ---- Namespace rules ----------------------------------------------------------------- */

int lh_auth_open(const lh_auth_t *a)
{
    return a->open;
}

/* The rules of ch's namespace (its first '.'-separated token; "" without a dot), or NULL
 * when the namespace is not configured (anything goes); *label set for the metric. */
static const lh_ns_cfg_t *ns_of(const lh_auth_t *a, const char *ch, size_t len,
                                unsigned *label)
{
    const char *dot = memchr(ch, '.', len);
    size_t nl = dot ? (size_t)(dot - ch) : 0;
    const lh_config_t *cfg = a->cfg;

    for (size_t i = 0; i < cfg->nnamespaces; i++) {
        if (cfg->namespaces[i].len == nl && memcmp(cfg->namespaces[i].name, ch, nl) == 0) {
            if (label != NULL)
                *label = a->ns_label[i];
            return &cfg->namespaces[i];
        }
    }
    return NULL;
}

int lh_auth_stamps(const lh_auth_t *a, const char *ch, size_t len)
{
    const lh_ns_cfg_t *ns = a->open ? NULL : ns_of(a, ch, len, NULL);

    return ns != NULL && ns->stamp_user;
}

static int listed(char *const *list, size_t n, const char *ch, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]) == len && memcmp(list[i], ch, len) == 0)
            return 1;
    return 0;
}

static void count_denied(unsigned action, unsigned label)
{
    lh_m_inc(LH_M_DENIED_BASE + action * (LH_NS_LABELS + 1) + label);
}

/* "not allowed to subscribe to "CH": namespace "NS" RULE" into why. */
static int deny(char *why, size_t cap, unsigned action, const char *rule, const char *ch,
                size_t len, const char *ns)
{
    char q[300];

    snprintf(why, cap, "not allowed to %s \"%s\": namespace \"%s\" %s",
             action == LH_ACT_SUBSCRIBE ? "subscribe to" : "publish to",
             lh_printable(q, sizeof(q), ch, len), ns, rule);
    return LH_PERM_DENY;
}

/* The subscribe rule's decision for c on ch; *label set for the refusal metric. */
static int subscribe_rule(const lh_auth_t *a, const lh_conn_t *c, const char *ch, size_t len,
                          const lh_jwt_claims_t *subtok, char *why, size_t cap,
                          unsigned *label)
{
    const lh_ns_cfg_t *ns = a->open ? NULL : ns_of(a, ch, len, label);
    const char *sub = lh_auth_user(c);
    size_t sl = strlen(sub);

    if (ns == NULL)
        return LH_PERM_ALLOW;
    switch (ns->subscribe) {
    case LH_SUB_ANY:
        return LH_PERM_ALLOW;
    case LH_SUB_AUTHENTICATED:
        if (sl > 0)
            return LH_PERM_ALLOW;
        return deny(why, cap, LH_ACT_SUBSCRIBE,
                    "needs an authenticated user", ch, len, ns->name);
    case LH_SUB_OWNER:
        /* <ns>.<sub> itself, or a channel below it; in the default namespace (channels
         * without a dot) only the channel <sub>. */
        if (ns->len == 0 && sl > 0 && len == sl && memcmp(ch, sub, sl) == 0)
            return LH_PERM_ALLOW;
        if (ns->len > 0 && sl > 0 && len >= ns->len + 1 + sl &&
            memcmp(ch + ns->len + 1, sub, sl) == 0 &&
            (len == ns->len + 1 + sl || ch[ns->len + 1 + sl] == '.'))
            return LH_PERM_ALLOW;
        return deny(why, cap, LH_ACT_SUBSCRIBE,
                    "is for its owner only", ch, len, ns->name);
    case LH_SUB_TOKEN:
        if (c->ident != NULL && listed(c->ident->channels, c->ident->nchannels, ch, len))
            return LH_PERM_ALLOW;
        if (subtok != NULL && listed(subtok->channels, subtok->nchannels, ch, len))
            return LH_PERM_ALLOW;
        return deny(why, cap, LH_ACT_SUBSCRIBE,
                    "needs a token that lists the channel", ch, len, ns->name);
    case LH_SUB_WEBHOOK:
    default:
        return LH_PERM_WEBHOOK;
    }
}

int lh_auth_may_subscribe(const lh_auth_t *a, const lh_conn_t *c, const char *ch, size_t len,
                          const lh_jwt_claims_t *subtok, char *why, size_t cap)
{
    unsigned label = LH_NS_LABELS;
    int d = subscribe_rule(a, c, ch, len, subtok, why, cap, &label);

    if (d == LH_PERM_DENY)
        count_denied(LH_ACT_SUBSCRIBE, label);
    return d;
}

/* A reload re-judging: not counted (lhttpd_permission_denied_total counts clients'
 * requests). */
int lh_auth_judge_subscribe(const lh_auth_t *a, const lh_conn_t *c, const char *ch, size_t len,
                            char *why, size_t cap)
{
    unsigned label;

    return subscribe_rule(a, c, ch, len, NULL, why, cap, &label);
}

/* The publish rule's decision for c on ch; *label set for the refusal metric. */
static int publish_rule(const lh_auth_t *a, const lh_conn_t *c, const char *ch, size_t len,
                        int subscribed, char *why, size_t cap, unsigned *label)
{
    const lh_ns_cfg_t *ns = a->open ? NULL : ns_of(a, ch, len, label);

    if (ns == NULL)
        return LH_PERM_ALLOW;
    switch (ns->publish) {
    case LH_PUB_ANY:
        return LH_PERM_ALLOW;
    case LH_PUB_AUTHENTICATED:
        if (lh_auth_user(c)[0] != '\0')
            return LH_PERM_ALLOW;
        return deny(why, cap, LH_ACT_PUBLISH,
                    "needs an authenticated user", ch, len, ns->name);
    case LH_PUB_SUBSCRIBERS:
        if (subscribed)
            return LH_PERM_ALLOW;
        return deny(why, cap, LH_ACT_PUBLISH,
                    "takes messages from its subscribers only", ch, len, ns->name);
    case LH_PUB_NONE:
        return deny(why, cap, LH_ACT_PUBLISH,
                    "takes messages from the server only", ch, len, ns->name);
    case LH_PUB_WEBHOOK:
    default:
        return LH_PERM_WEBHOOK;
    }
}

int lh_auth_may_publish(const lh_auth_t *a, const lh_conn_t *c, const char *ch, size_t len,
                        int subscribed, char *why, size_t cap)
{
    unsigned label = LH_NS_LABELS;
    int d = publish_rule(a, c, ch, len, subscribed, why, cap, &label);

    if (d == LH_PERM_DENY)
        count_denied(LH_ACT_PUBLISH, label);
    return d;
}

void lh_auth_count_denied(const lh_auth_t *a, unsigned action, const char *ch, size_t len)
{
    unsigned label = LH_NS_LABELS;

    ns_of(a, ch, len, &label);
    count_denied(action, label);
}

const lh_ns_cfg_t *lh_auth_ns(const lh_auth_t *a, const char *ch, size_t len)
{
    return a->open ? NULL : ns_of(a, ch, len, NULL);
}

int lh_auth_rule_same(const lh_auth_t *a, const lh_auth_t *b, const char *ch, size_t len)
{
    const lh_ns_cfg_t *x = ns_of(a, ch, len, NULL), *y = ns_of(b, ch, len, NULL);
    int rx = x ? x->subscribe : LH_SUB_ANY, ry = y ? y->subscribe : LH_SUB_ANY;

    return rx == ry;
}
