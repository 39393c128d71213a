/*
 * The processor and header-filter registry and message dispatch: a WebSocket message
 * is parsed as LHTTP, runs through the filters and reaches its command's processor. The
 * functions that processors, filters and modules call are in api.c.
 */
#include "worker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh_log.h"
#include "lh_multipart.h"
#include "lh_utf8.h"
#include "lh_ws.h"

_Static_assert(LH_PART_HEADERS_MAX == LH_MULTIPART_HEADERS_MAX,
               "lhttpd.h and lh_multipart.h disagree on the headers of a part");

typedef struct {
    char *command;
    size_t len;
    lh_processor_t p;
    void *ud;
} proc_entry_t;

typedef struct {
    lh_filter_t f;
    void *ud;
} filter_entry_t;

/* Registered before workers fork, read-only afterwards. */
static proc_entry_t *procs;
static size_t nprocs;
static filter_entry_t *filters;
static size_t nfilters;

int lh_dispatch_register_processor(const char *command, const lh_processor_t *p, void *ud)
{
    size_t len = command ? strlen(command) : 0;
    proc_entry_t *np;

    if (!lh_lhttp_command_valid(command, len) || p == NULL)
        return -EINVAL;
    for (size_t i = 0; i < nprocs; i++) {
        if (procs[i].len == len && memcmp(procs[i].command, command, len) == 0) {
            procs[i].p = *p;
            procs[i].ud = ud;
            return 0;
        }
    }
    np = realloc(procs, (nprocs + 1) * sizeof(*procs));
    if (np == NULL)
        return -ENOMEM;
    procs = np;
    procs[nprocs].command = strdup(command);
    if (procs[nprocs].command == NULL)
        return -ENOMEM;
    procs[nprocs].len = len;
    procs[nprocs].p = *p;
    procs[nprocs].ud = ud;
    nprocs++;
    return 0;
}

int lh_dispatch_register_filter(const lh_filter_t *f, void *ud)
{
    filter_entry_t *nf;

    if (f == NULL)
        return -EINVAL;
    nf = realloc(filters, (nfilters + 1) * sizeof(*filters));
    if (nf == NULL)
        return -ENOMEM;
    filters = nf;
    filters[nfilters].f = *f;
    filters[nfilters].ud = ud;
    nfilters++;
    return 0;
}

static const proc_entry_t *find_proc(const char *cmd, size_t len)
{
    for (size_t i = 0; i < nprocs; i++)
        if (procs[i].len == len && memcmp(procs[i].command, cmd, len) == 0)
            return &procs[i];
    return NULL;
}

void lh_dispatch_open(lh_conn_t *c)
{
    lh_conn_hold(c);
    for (size_t i = 0; i < nfilters && !(c->flags & LH_CF_DEAD); i++)
        if (filters[i].f.on_open)
            filters[i].f.on_open(c, filters[i].ud);
    for (size_t i = 0; i < nprocs && !(c->flags & LH_CF_DEAD); i++)
        if (procs[i].p.on_open)
            procs[i].p.on_open(c, procs[i].ud);
    lh_conn_release(c);
}

void lh_dispatch_close(lh_conn_t *c)
{
    if (!(c->flags & LH_CF_OPENED) || (c->flags & LH_CF_HANDOFF))
        return; /* an HTTP connection, an echo path (no on_open ran), or handed over */
    for (size_t i = 0; i < nprocs; i++)
        if (procs[i].p.on_close)
            procs[i].p.on_close(c, procs[i].ud);
    for (size_t i = nfilters; i-- > 0;)
        if (filters[i].f.on_close)
            filters[i].f.on_close(c, filters[i].ud);
}

/* The command of a message that failed to parse, when its first line has one. */
static const char *guess_command(const uint8_t *data, size_t len, size_t *cl)
{
    static const char proto[] = LH_LHTTP_PROTO " ";
    size_t pl = sizeof(proto) - 1, i;

    if (len <= pl || memcmp(data, proto, pl) != 0)
        return NULL;
    for (i = pl; i < len && data[i] != '\r' && data[i] != '\n'; i++)
        ;
    if (!lh_lhttp_command_valid((const char *)data + pl, i - pl))
        return NULL;
    *cl = i - pl;
    return (const char *)data + pl;
}

void lh_dispatch_multipart_limits(const lh_worker_t *w, lh_multipart_limits_t *lim)
{
    lim->max_parts = w->cfg->limits.max_multipart_parts;
    lim->max_line = w->cfg->limits.max_header_line;
}

/*
 * Validates the multipart header of a parsed message, if it has one, and counts its
 * parts. An invalid one gets error 400 naming the problem (the connection stays open)
 * and returns -1: the message then reaches no filter and no processor.
 */
static int check_multipart(lh_conn_t *c, struct lh_msg_s *msg)
{
    char reason[LH_MULTIPART_REASON_MAX];
    lh_multipart_limits_t lim;
    size_t vl;
    const char *v = lh_lhttp_header(msg->m, "multipart", &vl);
    long n;

    if (v == NULL)
        return 0;
    lh_dispatch_multipart_limits(msg->w, &lim);
    n = lh_multipart_check(v, vl, msg->m->body, msg->m->body_len, &lim, reason, sizeof(reason));
    if (n < 0) {
        lh_log(LH_LOG_INFO, "%s: conn %llu: bad multipart message: %s", lh_conn_peer_name(c),
               (unsigned long long)c->id, reason);
        lh_reply_error_to(c, msg, 400, reason);
        return -1;
    }
    msg->nparts = (size_t)n;
    return 0;
}

/*
 * The built-in `auth` command: a token for a connection without one, or a fresher token
 * for the same user. Handled before any filter or processor (its token never reaches a
 * module, a webhook or a channel): the reply is `auth` with the user id and expiry, or
 * error 401 (the token is invalid: the connection keeps what it had) or 403 (the token
 * names another user).
 */
static void auth_command(lh_conn_t *c, const lh_lhttp_msg_t *lm, lh_msg_t *m)
{
    lh_jwt_claims_t cl;
    const char *tok, *user;
    size_t tl;
    char exp[24], why[160];
    lh_header_t h[2];
    int r;

    tok = lh_lhttp_header(lm, "token", &tl);
    if (tok == NULL || tl == 0) {
        lh_auth_count_failure(LH_AUTH_R_MISSING);
        lh_reply_error_to(c, m, 400, "auth needs a token header");
        return;
    }
    r = lh_auth_verify(c->w->auth, tok, tl, &cl);
    if (r != LH_JWT_OK) {
        lh_log(LH_LOG_INFO, "%s: conn %llu: auth refused: %s", lh_conn_peer_name(c),
               (unsigned long long)c->id, lh_jwt_reason(r));
        lh_reply_error_to(c, m, 401, lh_auth_reason_text(r));
        return;
    }
    if (lh_auth_kind(c) == LH_ID_TOKEN || lh_auth_kind(c) == LH_ID_WEBHOOK) {
        if (strcmp(cl.sub, lh_auth_user(c)) != 0) {
            lh_auth_count_failure(LH_AUTH_R_OTHER_USER);
            snprintf(why, sizeof(why), "the token is for another user than this "
                                       "connection's");
            lh_jwt_claims_free(&cl);
            lh_reply_error_to(c, m, 403, why);
            return;
        }
    }
    if (lh_auth_set_token(c, &cl) < 0) {
        lh_jwt_claims_free(&cl);
        lh_reply_error_to(c, m, 500, "out of memory");
        return;
    }
    user = lh_auth_user(c);
    snprintf(exp, sizeof(exp), "%lld", (long long)lh_auth_expires(c));
    h[0] = (lh_header_t){"user", 4, user, strlen(user)};
    h[1] = (lh_header_t){"expires", 7, exp, strlen(exp)};
    lh_reply_send(c, "auth", h, 2, NULL, 0);
}

void lh_dispatch_message(lh_conn_t *c, uint8_t *data, size_t len, int binary)
{
    lh_worker_t *w = c->w;
    const char *reason = NULL;
    int r = lh_lhttp_parse((const char *)data, len, &w->lhttp_limits, &w->lmsg, &reason);
    struct lh_msg_s msg;
    const proc_entry_t *p;

    if (r != 0) {
        size_t cl = 0;
        const char *cmd = guess_command(data, len, &cl);

        lh_log(LH_LOG_INFO, "%s: conn %llu: bad LHTTP message: %s", lh_conn_peer_name(c),
               (unsigned long long)c->id, reason);
        lh_reply_error(c, cmd, cl, lh_lhttp_error_code(r), reason);
        return;
    }
    if (lh_log_enabled(LH_LOG_DEBUG)) {
        /* One line per message at debug level; the body only with log.bodies (it may
         * hold what users would not want in a journal). */
        if (w->cfg->log.log_bodies)
            lh_log(LH_LOG_DEBUG, "conn %llu: %.*s, %zu headers, body %zu bytes: %.*s",
                   (unsigned long long)c->id, (int)w->lmsg.command_len, w->lmsg.command,
                   w->lmsg.num_headers, w->lmsg.body_len,
                   (int)(w->lmsg.body_len > 512 ? 512 : w->lmsg.body_len), w->lmsg.body);
        else
            lh_log(LH_LOG_DEBUG, "conn %llu: %.*s, %zu headers, body %zu bytes",
                   (unsigned long long)c->id, (int)w->lmsg.command_len, w->lmsg.command,
                   w->lmsg.num_headers, w->lmsg.body_len);
    }
    msg.m = &w->lmsg;
    msg.raw = data;
    msg.raw_len = len;
    msg.binary = binary;
    msg.w = w;
    msg.nparts = 0;
    msg.owned = NULL;
    if (check_multipart(c, &msg) != 0)
        return;
    if (w->lmsg.command_len == 4 && memcmp(w->lmsg.command, "auth", 4) == 0) {
        auth_command(c, &w->lmsg, &msg);
        return;
    }
    if (lh_auth_pending(c)) {
        lh_reply_error_to(c, &msg, 401, "authentication required: send auth with a token "
                                        "first");
        return;
    }
    lh_conn_hold(c);
    for (size_t i = 0; i < nfilters; i++) {
        if (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT))
            goto out;
        if (filters[i].f.before && filters[i].f.before(c, &msg, filters[i].ud) == LH_FILTER_STOP)
            goto out;
    }
    p = find_proc(msg.m->command, msg.m->command_len);
    if (p != NULL && p->p.on_message && !(c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT)))
        p->p.on_message(c, &msg, p->ud);
    for (size_t i = 0; i < nfilters; i++) {
        if (c->flags & LH_CF_DEAD)
            break;
        if (filters[i].f.after)
            filters[i].f.after(c, &msg, filters[i].ud);
    }
out:
    lh_conn_release(c);
    while (msg.owned != NULL) {
        lh_msg_owned_t *o = msg.owned;

        msg.owned = o->next;
        free(o);
    }
}

/* ---- built-in processors ---- */

/* `ping`: answers `pong` with the same body, so clients can measure a round trip. */
static void ping_on_message(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    lh_reply_send(c, "pong", NULL, 0, m->m->body, m->m->body_len);
}

void lh_builtin_register(void)
{
    static const lh_processor_t ping = {NULL, ping_on_message, NULL};

    lh_dispatch_register_processor("ping", &ping, NULL);
}
