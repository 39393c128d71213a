/*
 * POST /publish: the HTTP way for a backend to publish. The body is JSON (one message to
 * one or more channels, see README.md); each channel is published as a WebSocket client's
 * publish would be (pubsub.c), and the answer says how many local deliveries each got.
 * publish.token, when set, is required as a bearer token (compared in constant time).
 */
#include "worker.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh_channel.h"
#include "lh_log.h"

static void respond_json(lh_conn_t *c, int status, json_t *j, const char *extra)
{
    char *s = json_dumps(j, JSON_COMPACT);
    size_t n = s ? strlen(s) : 0;

    json_decref(j);
    if (s == NULL) {
        lh_http_respond(c, 500, NULL, NULL, NULL, 0);
        return;
    }
    {
        char *t = realloc(s, n + 2);

        if (t == NULL) {
            free(s);
            lh_http_respond(c, 500, NULL, NULL, NULL, 0);
            return;
        }
        s = t;
    }
    s[n++] = '\n';
    lh_http_respond(c, status, extra, "application/json", s, n);
    free(s);
}

/* A POST /publish whose answer waits for its history channels to be stored. */
typedef struct {
    lh_hist_batch_t b;
    json_t *offsets;  /* channel -> offset */
    char *head;       /* the answer as it would be without history, less its closing '}' */
    size_t head_len;
    int again;        /* NATS could not take a plain channel's message */
} pending_t;

/*
 * The answer to a successful POST /publish: {"channels":[...],"local_deliveries":N} and a
 * newline, as jansson printed it, formatted here because it is written for every publish:
 * every name in the list passed lh_channel_valid, and none of its characters needs
 * escaping in a JSON string.
 */
static void respond_published(lh_conn_t *c, const char *v, size_t vl, const uint8_t *keep,
                              size_t local, pending_t *pend)
{
    static const char head[] = "{\"channels\":[";
    char stack[512], *out = stack, *p;
    size_t cap = 3 * vl + 64, cl, i = 0; /* a name costs at most 2 bytes more than its share */
    const char *pos = v, *ch;
    int first = 1;

    if (cap > sizeof(stack) || pend != NULL) {
        out = malloc(cap);
        if (out == NULL) {
            lh_http_respond(c, 500, NULL, NULL, NULL, 0);
            return;
        }
    }
    memcpy(out, head, sizeof(head) - 1);
    p = out + sizeof(head) - 1;
    while (lh_channel_next(&pos, v + vl, &ch, &cl)) {
        if (!keep[i++])
            continue; /* named again: listed once, as it was published once */
        if (!first)
            *p++ = ',';
        first = 0;
        *p++ = '"';
        memcpy(p, ch, cl);
        p += cl;
        *p++ = '"';
    }
    p += snprintf(p, cap - (size_t)(p - out), "],\"local_deliveries\":%zu}\n", local);
    if (pend != NULL) {
        /* The answer waits for the history channels' offsets, added before its '}'. */
        pend->head = out;
        pend->head_len = (size_t)(p - out) - 2;
        return;
    }
    lh_http_respond(c, 200, NULL, "application/json", out, (size_t)(p - out));
    if (out != stack)
        free(out);
}

static void publish_error(lh_conn_t *c, int status, const char *reason)
{
    lh_log(LH_LOG_INFO, "%s: POST /publish: %d: %s", lh_conn_peer_name(c), status, reason);
    respond_json(c, status, json_pack("{s:s}", "error", reason), NULL);
}

static void pending_done(lh_hist_batch_t *b, const char *ch, size_t len, uint64_t off, int ok)
{
    pending_t *p = (pending_t *)b;
    lh_conn_t *c = b->c;

    if (ok) {
        char name[LH_CHANNEL_MAX_LEN + 1];

        memcpy(name, ch, len);
        name[len] = '\0';
        json_object_set_new(p->offsets, name, json_integer((json_int_t)off));
    } else {
        b->failed++;
    }
    if (--b->outstanding > 0)
        return;
    if (c != NULL) {
        char *offs = json_dumps(p->offsets, JSON_COMPACT);

        c->nhist--;
        c->flags &= ~LH_CF_HOOK_WAIT;
        if (offs == NULL) {
            lh_http_respond(c, 500, NULL, NULL, NULL, 0);
        } else if (b->failed > 0 || p->again) {
            respond_json(c, 503, json_pack("{s:s,s:o}", "error",
                                           b->failed ? "history unavailable: JetStream did not "
                                                       "store the message for every history "
                                                       "channel"
                                                     : "NATS unavailable and its outage buffer "
                                                       "is full; delivered only to this "
                                                       "worker's subscribers",
                                           "offsets", json_deep_copy(p->offsets)), NULL);
        } else {
            size_t n = p->head_len + strlen(offs) + 16;
            char *out = malloc(n);

            if (out == NULL) {
                lh_http_respond(c, 500, NULL, NULL, NULL, 0);
            } else {
                int m = snprintf(out, n, "%.*s,\"offsets\":%s}\n", (int)p->head_len, p->head,
                                 offs);

                lh_http_respond(c, 200, NULL, "application/json", out, (size_t)m);
                free(out);
            }
        }
        free(offs);
        lh_conn_resume_later(c);
    }
    json_decref(p->offsets);
    free(p->head);
    free(p);
}

void lh_publish_http(lh_conn_t *c, const uint8_t *body, size_t len)
{
    lh_worker_t *w = c->w;
    const char *reason = NULL, *v, *bad = NULL;
    size_t vl, badlen = 0, local = 0;
    lh_lhttp_msg_t *m = &w->lmsg;
    uint8_t keep_stack[64], *keep;
    int again = 0;
    long n, delivered;
    pending_t *pend = NULL;

    if (lh_lhttp_parse((const char *)body, len, &w->lhttp_limits, m, &reason) != 0) {
        char r[300];

        snprintf(r, sizeof(r), "body is not an LHTTP message: %s", reason);
        publish_error(c, 400, r);
        return;
    }
    v = lh_lhttp_header(m, "publish", &vl);
    if (v == NULL) {
        publish_error(c, 400, "the message has no publish header");
        return;
    }
    n = lh_pubsub_check_list(w->cfg, v, vl, &bad, &badlen);
    if (n <= 0) {
        char r[400], q[300];

        if (n == 0)
            snprintf(r, sizeof(r), "publish header names no channel");
        else
            snprintf(r, sizeof(r), "invalid channel name \"%s\"",
                     lh_printable(q, sizeof(q), bad, badlen));
        publish_error(c, 400, r);
        return;
    }
    lh_m_inc(LH_M_PUBLISH_HTTP);
    keep = n > (long)sizeof(keep_stack) ? malloc((size_t)n) : keep_stack;
    if (w->hist != NULL && (pend = calloc(1, sizeof(*pend))) != NULL) {
        pend->b.c = c;
        pend->b.done = pending_done;
        pend->offsets = json_object();
        w->hist_batch = &pend->b;
    }
    w->hist_refused = 0;
    delivered = keep ? lh_pubsub_publish_list(w, v, vl, n, body, len, keep, &again) : -ENOMEM;
    w->hist_batch = NULL;
    if (pend != NULL && pend->b.outstanding == 0) {
        json_decref(pend->offsets);
        free(pend);
        pend = NULL;
    }
    if (delivered < 0 || (pend != NULL && pend->offsets == NULL)) {
        if (keep != keep_stack)
            free(keep);
        if (pend != NULL) {
            pend->b.c = NULL; /* answered here; the stores still report to it */
            pend->again = again;
        }
        publish_error(c, 500, "out of memory");
        return;
    }
    local = (size_t)delivered;
    /* No flush here: the deliveries go out at the end of this loop pass with those of
     * every other publish handled in it, one writev per subscriber. */
    if (pend != NULL)
        pend->b.failed += w->hist_refused;
    if (pend != NULL) {
        /* Answered once every history channel is stored (pending_done); the connection's
         * next request waits meanwhile. */
        pend->again = again;
        respond_published(c, v, vl, keep, local, pend);
        if (pend->head == NULL) {
            pend->b.c = NULL; /* answered 500 already */
        } else {
            c->nhist++;
            c->flags |= LH_CF_HOOK_WAIT;
            event_del(&c->rev);
        }
    } else if (w->hist_refused > 0) {
        publish_error(c, 503, "history unavailable: JetStream is not reachable; not "
                              "published to the history channels");
    } else if (again) {
        publish_error(c, 503, "NATS unavailable and its outage buffer is full; delivered "
                              "only to this worker's subscribers");
    } else {
        respond_published(c, v, vl, keep, local, NULL);
    }
    if (keep != keep_stack)
        free(keep);
}

/* ---- The server API ---- */

static void api_error(lh_conn_t *c, int status, const char *reason)
{
    lh_log(LH_LOG_INFO, "%s: server API: %d: %s", lh_conn_peer_name(c), status, reason);
    respond_json(c, status, json_pack("{s:s}", "error", reason), NULL);
}

/*
 * POST /api/disconnect {"user": "42", "code": 4403, "reason": "..."} closes every
 * connection of the user; POST /api/unsubscribe {"user": "42", "channel": "chat.x"} ends
 * its subscriptions to the channel. Applied on this worker at once, and on every other
 * worker of every node through NATS. Answers {"ok": true, "here": N} with N the
 * connections or subscriptions of this worker; 503 when NATS could not carry it on
 * (this worker's part is done all the same).
 */
/* A presence query of the server API is answered. */
static void presence_done(lh_conn_t *c, void *arg, const lh_presence_result_t *r)
{
    json_t *j;

    (void)arg;
    c->flags &= ~LH_CF_HOOK_WAIT;
    lh_conn_resume_later(c);
    if (c->flags & LH_CF_DEAD)
        return;
    if (!r->ok) {
        api_error(c, 500, "presence: out of memory");
        return;
    }
    j = json_pack("{s:s%,s:I,s:I}", "channel", r->ch, r->chlen, "count", (json_int_t)r->count,
                  "users", (json_int_t)r->users);
    if (j != NULL && !r->stats) {
        json_t *list = json_loadb(r->list, r->list_len, 0, NULL);

        json_object_set_new(j, "truncated", json_boolean(r->truncated));
        json_object_set_new(j, "presence", list ? list : json_array());
    }
    respond_json(c, j ? 200 : 500, j ? j : json_pack("{s:s}", "error", "out of memory"), NULL);
}

/*
 * GET /api/presence?channel=CH and /api/presence-stats?channel=CH: what the presence and
 * presence-stats commands answer, as JSON ({"channel", "count", "users", and with the list
 * "truncated" and "presence": [...]}). No namespace's presence_read applies: the caller
 * holds the server API's credentials.
 */
static void presence_api(lh_conn_t *c, const lh_http_request_t *req, int stats)
{
    const char *q = req->query, *end = q ? q + req->query_len : NULL;
    char ch[LH_CHANNEL_MAX_LEN + 1];
    size_t n = 0;
    int found = 0, r;

    while (q != NULL && q < end && !found) {
        const char *amp = memchr(q, '&', (size_t)(end - q)), *pe = amp ? amp : end;

        if (pe - q >= 8 && memcmp(q, "channel=", 8) == 0) {
            found = 1;
            for (const char *p = q + 8; p < pe; p++) {
                int hi, lo;

                if (n + 1 >= sizeof(ch)) {
                    found = -1;
                    break;
                }
                if (*p != '%') {
                    ch[n++] = *p == '+' ? ' ' : *p;
                    continue;
                }
                if (pe - p < 3 || (hi = lh_hexval(p[1])) < 0 || (lo = lh_hexval(p[2])) < 0) {
                    found = -1;
                    break;
                }
                ch[n++] = (char)(hi * 16 + lo);
                p += 2;
            }
        }
        q = pe + 1;
    }
    if (found != 1 || !lh_channel_valid(ch, n, c->w->cfg->limits.max_channel_bytes)) {
        api_error(c, 400, "needs ?channel= with a valid channel name");
        return;
    }
    if (!lh_presence_is(c->w, ch, n)) {
        api_error(c, 404, "not a presence channel (its namespace has no presence)");
        return;
    }
    /* The connection's next request waits for the answer (which may come at once). */
    c->flags |= LH_CF_HOOK_WAIT;
    event_del(&c->rev);
    r = lh_presence_query(c, ch, n, stats, presence_done, NULL);
    if (r < 0) {
        c->flags &= ~LH_CF_HOOK_WAIT;
        lh_conn_resume_later(c);
    }
    if (r == -EBUSY || r == -ENOSPC)
        api_error(c, 429, "too many presence queries in flight (presence.max_queries): try again");
    else if (r == -EAGAIN)
        api_error(c, 503, "presence unavailable: NATS is not reachable");
    else if (r < 0)
        api_error(c, 500, "presence: out of memory");
}

void lh_api_http(lh_conn_t *c, const lh_http_request_t *req, const uint8_t *body, size_t len)
{
    static const char *const known[] = {"user", "code", "reason", "channel"};
    lh_worker_t *w = c->w;
    int disc = lh_http_path_is(req, "/api/disconnect");
    json_error_t jerr;
    json_t *doc, *user, *code, *reason, *chan, *v, *norm;
    const char *key;
    char *out;
    long n;
    int rc;

    if (lh_http_path_is(req, "/api/presence") || lh_http_path_is(req, "/api/presence-stats")) {
        presence_api(c, req, lh_http_path_is(req, "/api/presence-stats"));
        return;
    }
    if (!disc && !lh_http_path_is(req, "/api/unsubscribe")) {
        api_error(c, 404, "no such API call (POST /api/disconnect or /api/unsubscribe, "
                          "GET /api/presence or /api/presence-stats)");
        return;
    }
    doc = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        api_error(c, 400, "the body must be a JSON object");
        return;
    }
    json_object_foreach(doc, key, v) {
        size_t i;

        for (i = 0; i < LH_ARRAY_LEN(known) && strcmp(key, known[i]) != 0; i++)
            ;
        if (i == LH_ARRAY_LEN(known) || (disc && i == 3) || (!disc && (i == 1))) {
            char why[200];

            snprintf(why, sizeof(why), "unknown key \"%.100s\"", key);
            json_decref(doc);
            api_error(c, 400, why);
            return;
        }
    }
    user = json_object_get(doc, "user");
    code = json_object_get(doc, "code");
    reason = json_object_get(doc, "reason");
    chan = json_object_get(doc, "channel");
    if (!json_is_string(user) || json_string_length(user) == 0 ||
        !lh_auth_user_valid(json_string_value(user), json_string_length(user))) {
        json_decref(doc);
        api_error(c, 400, "\"user\" must be a user id (a non-empty string)");
        return;
    }
    if (code != NULL && (!json_is_integer(code) || json_integer_value(code) < 4000 ||
                         json_integer_value(code) > 4999)) {
        json_decref(doc);
        api_error(c, 400, "\"code\" must be a close code from 4000 to 4999");
        return;
    }
    /* A close reason is at most 123 bytes (RFC 6455 5.5); a header value one line. */
    if (reason != NULL && (!json_is_string(reason) || json_string_length(reason) > 123 ||
                           !lh_auth_user_valid(json_string_value(reason),
                                               json_string_length(reason)))) {
        json_decref(doc);
        api_error(c, 400, "\"reason\" must be a string of at most 123 bytes on one line");
        return;
    }
    if (!disc && (!json_is_string(chan) ||
                  !lh_channel_valid(json_string_value(chan), json_string_length(chan),
                                    w->cfg->limits.max_channel_bytes))) {
        json_decref(doc);
        api_error(c, 400, "\"channel\" must be a valid channel name");
        return;
    }
    norm = json_pack("{s:s,s:O}", "action", disc ? "disconnect" : "unsubscribe", "user", user);
    if (norm != NULL && code != NULL)
        json_object_set(norm, "code", code);
    if (norm != NULL && reason != NULL)
        json_object_set(norm, "reason", reason);
    if (norm != NULL && chan != NULL)
        json_object_set(norm, "channel", chan);
    json_decref(doc);
    out = norm ? json_dumps(norm, JSON_COMPACT) : NULL;
    json_decref(norm);
    if (out == NULL) {
        api_error(c, 500, "out of memory");
        return;
    }
    lh_m_inc(disc ? LH_M_API_DISCONNECT : LH_M_API_UNSUBSCRIBE);
    n = lh_pubsub_api_apply(w, out, strlen(out));
    rc = lh_nats_publish_api(w, out, strlen(out));
    free(out);
    if (rc < 0) {
        api_error(c, 503, "NATS unavailable: applied on this worker only");
        return;
    }
    respond_json(c, 200, json_pack("{s:b,s:I}", "ok", 1, "here", (json_int_t)(n > 0 ? n : 0)),
                 NULL);
}

int lh_publish_authorized(const lh_conn_t *c, const lh_http_request_t *req)
{
    const char *tok = c->w->cfg->publish.token;
    const lh_http_header_t *h;
    size_t tl;

    if (tok == NULL)
        return 1;
    h = lh_http_find_header(req, "authorization");
    tl = strlen(tok);
    if (h == NULL || h->value_len != 7 + tl || !lh_strieq(h->value, 7, "bearer "))
        return 0;
    return CRYPTO_memcmp(h->value + 7, tok, tl) == 0;
}
