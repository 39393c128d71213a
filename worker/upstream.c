/*
 * Outgoing HTTP for a worker: `upstream: METHOD URL` messages, webhook commands and the
 * connect/disconnect webhooks. libcurl's multi interface is driven by the worker's
 * libevent loop (curl_multi_socket_action), so nothing here blocks.
 *
 * A client may only name URLs inside upstream.allow: the URL is parsed and normalized by
 * libcurl's URL API and compared by scheme, host, port and path prefix (on a segment
 * boundary), never as a raw string; anything else is refused before a request exists.
 * Redirects are followed by hand, and only to URLs that pass the same check.
 *
 * Every request, webhooks included, takes one of upstream.max_in_flight slots per worker
 * (libcurl's connection pool is capped to the same number). A connect webhook beyond it
 * is refused at once (the handshake gets 503); a disconnect webhook waits in a bounded
 * queue (webhooks.disconnect_queue) for a slot. Kept-alive backend connections are
 * capped (upstream.max_idle_connections), and once nothing has been in flight for
 * upstream.idle_timeout_ms the multi handle is replaced: every idle connection closes
 * and the memory of a burst goes back to the system.
 */
#include "worker.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lh_channel.h"
#include "lh_log.h"
#include "lh_utf8.h"
#include "lh_ws.h"

enum { UP_MESSAGE, UP_WEBHOOK_CMD, UP_CONNECT, UP_DISCONNECT, UP_SUBSCRIBE, UP_PUBLISH };

typedef struct {
    char *scheme, *host, *path;
    long port;
} lh_prefix_t;

typedef struct lh_upreq_s {
    lh_worker_t *w;
    CURL *easy;
    int kind;
    lh_conn_t *c; /* NULL when nobody waits for the answer */
    struct lh_upreq_s *cprev, *cnext; /* the connection's requests */
    struct lh_upreq_s *prev, *next;   /* the worker's requests */
    char *method, *url, *command;
    char *body;
    size_t body_len;
    struct curl_slist *headers;
    char *resp;
    size_t resp_len;
    int too_big;
    char *rcommand; /* X-Lhttp-Command from the answer */
    lh_header_t rh[32];
    size_t nrh;
    unsigned tries, redirects;
    int finishing; /* finish() is answering it: the connection's end only unlinks it */
    int oom;       /* a header could not be added: the request must not start */
    int sock_lost; /* its socket could not be watched: pump_cb fails it */
    struct event *retry_ev;
    /* UP_CONNECT: what the 101 needs once the backend agrees. */
    char accept[29];
    char proto[LH_WS_PROTO_SIZE]; /* the subprotocol as offered, "" for none */
    int echo;
    char *hs_reject; /* reason text */
    /* UP_SUBSCRIBE, UP_PUBLISH: the message waiting for the decision (its bytes, its
     * frame type), the channels asked about, and the webhooks that approved it so far.
     * holding: this request paused the connection's input (LH_CF_HOOK_WAIT). */
    uint8_t *held;
    size_t held_len;
    int held_binary;
    char *channels;
    size_t channels_len;
    uint8_t approved;
    uint8_t holding;
    uint64_t started_ns;
} lh_upreq_t;

/* A disconnect webhook waiting for an in-flight slot: only what its body needs. */
typedef struct lh_updq_s {
    struct lh_updq_s *next;
    unsigned long long id;
    unsigned code;
    char peer[64];
} lh_updq_t;

typedef struct lh_up_s {
    lh_worker_t *w;
    CURLM *multi;        /* NULL after a failed replacement: made again on demand */
    struct event *timer; /* libcurl's timeout */
    struct event *pump;  /* starts queued disconnect webhooks once slots are free */
    struct event *idle;  /* nothing in flight for upstream.idle_timeout_ms */
    lh_prefix_t *allow;
    size_t nallow;
    lh_upreq_t *head; /* all requests */
    size_t inflight;
    lh_updq_t *qhead, *qtail; /* queued disconnect webhooks, oldest first */
    size_t qlen;
    int qdropping; /* the queue is full and a drop was logged */
    int sock_lost; /* some request has sock_lost set */
} lh_up_t;

static lh_up_t *up_of(lh_worker_t *w)
{
    return w->upstream;
}

/* Counts a request's outcome (LH_UP_*): every kind in lhttpd_upstream_requests_total,
 * webhooks also in lhttpd_webhooks_total by kind. */
static void count(int kind, unsigned result)
{
    int k = kind == UP_WEBHOOK_CMD ? LH_WH_COMMAND
            : kind == UP_CONNECT   ? LH_WH_CONNECT
            : kind == UP_DISCONNECT ? LH_WH_DISCONNECT
            : kind == UP_SUBSCRIBE  ? LH_WH_SUBSCRIBE
            : kind == UP_PUBLISH    ? LH_WH_PUBLISH
                                    : -1;

    lh_m_inc(LH_M_UPSTREAM_BASE + result);
    if (k >= 0)
        lh_m_inc(LH_M_WEBHOOK_BASE + (unsigned)k * LH_UP_N + result);
}

/* A request gave back its in-flight slot: a queued disconnect webhook may start, or,
 * with nothing left in flight, the idle clock starts. */
static void put_slot(lh_up_t *up)
{
    up->inflight--;
    if (up->qhead != NULL) {
        event_active(up->pump, EV_TIMEOUT, 0);
    } else if (up->inflight == 0) {
        unsigned ms = up->w->cfg->upstream.idle_timeout_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

        evtimer_add(up->idle, &tv);
    }
}

/* ---- Allow-list ---- */

/* Parses url into its normalized parts. Returns 0, or -1 (not http(s), userinfo, bad). */
static int parse_url(const char *url, lh_prefix_t *out)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *path = NULL, *port = NULL, *user = NULL;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (u == NULL)
        return -1;
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        goto out;
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK)
        goto out; /* "http://allowed@evil/" tricks: no userinfo at all */
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0')
        goto out;
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto out;
    /* Encoded dots and slashes would let a backend that decodes before resolving dot
     * segments see a path outside the prefix: refuse them outright. */
    if (strcasestr(path, "%2e") || strcasestr(path, "%2f") || strcasestr(path, "%5c") ||
        strchr(path, '\\'))
        goto out;
    out->scheme = strdup(scheme);
    out->host = strdup(host);
    out->path = strdup(path);
    out->port = strtol(port, NULL, 10);
    for (char *p = out->host; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p + 32);
    rc = out->scheme && out->host && out->path ? 0 : -1;
out:
    if (rc < 0) { /* out of memory half way: nothing is kept */
        free(out->scheme);
        free(out->host);
        free(out->path);
        memset(out, 0, sizeof(*out));
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(path);
    curl_free(port);
    curl_free(user);
    curl_url_cleanup(u);
    return rc;
}

static void prefix_free(lh_prefix_t *p)
{
    free(p->scheme);
    free(p->host);
    free(p->path);
}

/* 1 when url is inside one of the allowed prefixes; *canon gets the normalized URL. */
static int url_allowed(const lh_up_t *up, const char *url, char **canon)
{
    lh_prefix_t p;
    int ok = 0;

    *canon = NULL;
    if (parse_url(url, &p) < 0)
        return 0;
    for (size_t i = 0; i < up->nallow && !ok; i++) {
        const lh_prefix_t *a = &up->allow[i];
        size_t al = strlen(a->path);

        if (strcmp(a->scheme, p.scheme) != 0 || strcmp(a->host, p.host) != 0 ||
            a->port != p.port || strncmp(a->path, p.path, al) != 0)
            continue;
        /* "/api" allows "/api" and "/api/x", not "/apix". */
        ok = al == 0 || a->path[al - 1] == '/' || p.path[al] == '\0' || p.path[al] == '/';
    }
    if (ok) {
        CURLU *u = curl_url();
        char *s = NULL;

        if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK) {
            *canon = strdup(s);
        }
        curl_free(s);
        curl_url_cleanup(u);
        ok = *canon != NULL;
    }
    prefix_free(&p);
    return ok;
}

/* ---- Requests ---- */

static void req_free(lh_upreq_t *r)
{
    lh_up_t *up = up_of(r->w);

    if (r->easy) {
        curl_multi_remove_handle(up->multi, r->easy);
        curl_easy_cleanup(r->easy);
        put_slot(up);
    }
    if (r->retry_ev)
        event_free(r->retry_ev);
    if (r->holding && r->c != NULL && !(r->c->flags & LH_CF_DEAD)) {
        /* Answered or given up: the connection's next messages may be read again. */
        r->c->flags &= ~LH_CF_HOOK_WAIT;
        lh_conn_resume_later(r->c);
    }
    if (r->c) {
        if (r->cprev)
            r->cprev->cnext = r->cnext;
        else
            r->c->upreqs = r->cnext;
        if (r->cnext)
            r->cnext->cprev = r->cprev;
        r->c->nupreqs--;
    }
    if (r->prev)
        r->prev->next = r->next;
    else
        up->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    curl_slist_free_all(r->headers);
    for (size_t i = 0; i < r->nrh; i++) {
        free((char *)r->rh[i].key);
        free((char *)r->rh[i].value);
    }
    free(r->rcommand);
    free(r->method);
    free(r->url);
    free(r->command);
    free(r->body);
    free(r->resp);
    free(r->held);
    free(r->channels);
    free(r);
}

static size_t write_cb(char *data, size_t size, size_t n, void *arg)
{
    lh_upreq_t *r = arg;
    size_t len = size * n;
    char *p;

    if (r->resp_len + len > r->w->cfg->upstream.max_response_bytes) {
        r->too_big = 1;
        return 0; /* aborts the transfer */
    }
    p = realloc(r->resp, r->resp_len + len + 1);
    if (p == NULL)
        return 0;
    r->resp = p;
    memcpy(r->resp + r->resp_len, data, len);
    r->resp_len += len;
    return len;
}

/* Keeps the answer's headers that carry the prefix: X-Lhttp-Command sets the reply's
 * command, the others become LHTTP headers (prefix removed, lower case). */
static size_t header_cb(char *data, size_t size, size_t n, void *arg)
{
    lh_upreq_t *r = arg;
    size_t len = size * n, pl;
    const char *prefix = r->w->cfg->upstream.header_prefix;
    char *colon, *v, *end;

    pl = strlen(prefix);
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a 100 or a redirect): forget the previous one's. */
        for (size_t i = 0; i < r->nrh; i++) {
            free((char *)r->rh[i].key);
            free((char *)r->rh[i].value);
        }
        r->nrh = 0;
        free(r->rcommand);
        r->rcommand = NULL;
        return len;
    }
    if (len <= pl || strncasecmp(data, prefix, pl) != 0)
        return len;
    colon = memchr(data, ':', len);
    if (colon == NULL)
        return len;
    v = colon + 1;
    end = data + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    /* Out of memory: the transfer is aborted (an answer without one of its headers
     * would be a different answer), and the client gets error 502. */
    if ((size_t)(colon - data) == pl + 7 && strncasecmp(data + pl, "command", 7) == 0) {
        free(r->rcommand);
        r->rcommand = strndup(v, (size_t)(end - v));
        if (r->rcommand == NULL)
            return 0;
    } else if (r->nrh < LH_ARRAY_LEN(r->rh) && colon > data + pl) {
        char *k = strndup(data + pl, (size_t)(colon - data) - pl);
        char *val = k ? strndup(v, (size_t)(end - v)) : NULL;

        if (val == NULL) {
            free(k);
            return 0;
        }
        for (char *p = k; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p + 32);
        r->rh[r->nrh].key = k;
        r->rh[r->nrh].key_len = strlen(k);
        r->rh[r->nrh].value = val;
        r->rh[r->nrh].value_len = (size_t)(end - v);
        r->nrh++;
    }
    return len;
}

static int start_easy(lh_upreq_t *r);

static int idempotent(const char *m)
{
    return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "PUT") || !strcmp(m, "DELETE");
}

static void reply_error(lh_upreq_t *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_error(lh_upreq_t *r, int code, const char *fmt, ...)
{
    char reason[300];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    lh_log(LH_LOG_INFO, "upstream %s %s: %s", r->method ? r->method : "POST",
           r->url ? r->url : "?", reason);
    if (r->c == NULL ||
        (!r->w->cfg->upstream.report_errors && r->kind != UP_SUBSCRIBE && r->kind != UP_PUBLISH))
        return;
    /* Not even the error fits in memory: the client sees its connection end rather than
     * wait for an answer that will never come. */
    if (lh_reply_error(r->c, r->command, r->command ? strlen(r->command) : 0, code,
                               reason) == -ENOMEM &&
        r->c != NULL && !(r->c->flags & LH_CF_DEAD))
        lh_conn_destroy(r->c);
}

static void finish_connect(lh_upreq_t *r, long status, int failed);

/* r cannot go on (out of memory, or libcurl refused it): counted as failed, its client
 * told (a waiting handshake gets 503), and r freed. As in finish(), the connection stays
 * in memory while it is told. */
static void fail_now(lh_upreq_t *r, int code, const char *reason)
{
    lh_conn_t *c = r->c;

    r->finishing = 1;
    if (c != NULL)
        lh_conn_hold(c);
    count(r->kind, LH_UP_FAILED);
    if (r->kind == UP_CONNECT)
        finish_connect(r, 0, 1);
    else
        reply_error(r, code, "%s", reason);
    req_free(r);
    if (c != NULL)
        lh_conn_release(c);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_upreq_t *r = arg;

    if (start_easy(r) < 0)
        fail_now(r, 502, "upstream failed: cannot start the retry");
}

/*
 * A connect webhook's 2xx may name the user instead of a token: a JSON object body
 * {"user": "42", "info": {...}}. It counts only for a connection that presented no token
 * (a verified token is the stronger word). A body that is not a JSON object is ignored,
 * as before; one whose user is not a valid user id refuses the handshake (502). Returns 0
 * to go on, or -1 when the handshake was refused.
 */
static int connect_identity(lh_upreq_t *r, lh_conn_t *c)
{
    json_t *doc, *user, *info;
    char *info_s = NULL;
    int rc = 0;

    if (r->resp_len == 0 || lh_auth_kind(c) == LH_ID_TOKEN)
        return 0;
    doc = json_loadb(r->resp, r->resp_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return 0;
    }
    user = json_object_get(doc, "user");
    info = json_object_get(doc, "info");
    if (user != NULL) {
        /* An empty user id would be anonymous under another name: refused too. */
        if (!json_is_string(user) || json_string_length(user) == 0 ||
            !lh_auth_user_valid(json_string_value(user), json_string_length(user)) ||
            (info != NULL && !json_is_object(info))) {
            lh_auth_count_failure(LH_AUTH_R_WEBHOOK);
            lh_m_inc(LH_M_REJECT_BASE + LH_REJ_BACKEND);
            lh_http_refuse(c, 502, "the connect webhook answered an invalid user or info");
            rc = -1;
        } else {
            info_s = info ? json_dumps(info, JSON_COMPACT) : NULL;
            if (lh_auth_set_user(c, json_string_value(user), json_string_length(user),
                                 info_s) < 0) {
                lh_http_refuse(c, 503, "out of memory");
                rc = -1;
            }
        }
    }
    free(info_s);
    json_decref(doc);
    return rc;
}

/* The handshake a connect webhook held: complete it or refuse it, unless the connection
 * stopped waiting meanwhile (closed, or answered 408 at the handshake deadline). */
static void finish_connect(lh_upreq_t *r, long status, int failed)
{
    lh_conn_t *c = r->c;

    if (c == NULL || (c->flags & LH_CF_DEAD) || !(c->flags & LH_CF_HS_PENDING))
        return;
    if (!failed && status >= 200 && status < 300) {
        if (connect_identity(r, c) < 0)
            return;
        lh_http_upgrade(c, r->accept, r->proto, r->echo);
    } else {
        int st = failed ? 503 : (status == 401 || status == 403 || status == 429) ? (int)status
                                                                                   : 403;

        lh_m_inc(LH_M_REJECT_BASE + LH_REJ_BACKEND);
        lh_http_refuse(c, st, failed ? "connect webhook unavailable"
                                     : "refused by the connect webhook");
    }
}

/* The attempt that just ended is dropped (its easy handle, its in-flight slot, what it
 * received) so that r can start another: after a redirect or before a retry. */
static void reset_attempt(lh_upreq_t *r)
{
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    put_slot(up_of(r->w));
    free(r->resp);
    r->resp = NULL;
    r->resp_len = 0;
}

/* Outcomes of follow_redirect and retry_later. */
enum { NOT_TAKEN = 0, TAKEN = 1, ANSWERED = -1 };

/* A 3xx with a Location, followed by hand, only inside the allow-list: TAKEN when the
 * next attempt started, ANSWERED when the client got an error instead, NOT_TAKEN when
 * this is no redirect to follow. */
static int follow_redirect(lh_upreq_t *r, CURLcode res, long status)
{
    const lh_config_t *cfg = r->w->cfg;
    char *loc = NULL, *canon = NULL;

    if (res != CURLE_OK || status < 300 || status >= 400 || r->kind != UP_MESSAGE)
        return NOT_TAKEN;
    curl_easy_getinfo(r->easy, CURLINFO_REDIRECT_URL, &loc);
    if (loc == NULL)
        return NOT_TAKEN;
    if (r->redirects >= cfg->upstream.max_redirects) {
        count(r->kind, LH_UP_FAILED);
        reply_error(r, 502, "too many redirects");
        return ANSWERED;
    }
    if (!url_allowed(up_of(r->w), loc, &canon)) {
        count(r->kind, LH_UP_REFUSED);
        reply_error(r, 502, "redirect to a URL outside upstream.allow refused");
        return ANSWERED;
    }
    r->redirects++;
    free(r->url);
    r->url = canon;
    if (status == 303 || ((status == 301 || status == 302) && strcmp(r->method, "POST") == 0)) {
        char *get = strdup("GET");

        if (get == NULL) {
            count(r->kind, LH_UP_FAILED);
            reply_error(r, 502, "cannot follow the redirect: out of memory");
            return ANSWERED;
        }
        free(r->method);
        r->method = get;
        free(r->body);
        r->body = NULL;
        r->body_len = 0;
    }
    reset_attempt(r);
    if (start_easy(r) < 0) {
        count(r->kind, LH_UP_FAILED);
        reply_error(r, 502, "cannot follow the redirect: the request did not start");
        return ANSWERED;
    }
    return TAKEN;
}

/* Retries for idempotent methods on connection failures and 502/503/504, after
 * upstream.retry_delay_ms: TAKEN, ANSWERED or NOT_TAKEN as for follow_redirect. */
static int retry_later(lh_upreq_t *r, CURLcode res, long status)
{
    const lh_config_t *cfg = r->w->cfg;
    struct timeval tv = {cfg->upstream.retry_delay_ms / 1000,
                         (cfg->upstream.retry_delay_ms % 1000) * 1000};

    /* A subscribe or publish decision may be asked again: it changes nothing by itself. */
    if ((r->kind != UP_MESSAGE && r->kind != UP_SUBSCRIBE && r->kind != UP_PUBLISH) ||
        (r->kind == UP_MESSAGE && !idempotent(r->method)) || r->tries > cfg->upstream.retries ||
        !(res == CURLE_COULDNT_CONNECT || res == CURLE_GOT_NOTHING || res == CURLE_RECV_ERROR ||
          (res == CURLE_OK && (status == 502 || status == 503 || status == 504))))
        return NOT_TAKEN;
    reset_attempt(r);
    if (r->retry_ev == NULL)
        r->retry_ev = evtimer_new(r->w->base, retry_cb, r);
    if (r->retry_ev == NULL || evtimer_add(r->retry_ev, &tv) < 0) {
        count(r->kind, LH_UP_FAILED);
        reply_error(r, 502, "upstream failed: cannot schedule the retry");
        return ANSWERED;
    }
    return TAKEN;
}

/* The last attempt's outcome, counted and told: a webhook's, or the answer (or error)
 * for the client's message. */
static void finish_perm(lh_upreq_t *r, CURLcode res, long status);

static void answer(lh_upreq_t *r, CURLcode res, long status)
{
    if (r->kind == UP_SUBSCRIBE || r->kind == UP_PUBLISH) {
        finish_perm(r, res, status);
        return;
    }
    if (r->kind == UP_CONNECT || r->kind == UP_DISCONNECT) {
        count(r->kind, res == CURLE_OPERATION_TIMEDOUT     ? LH_UP_TIMEOUT
                       : res != CURLE_OK                  ? LH_UP_FAILED
                       : status >= 200 && status < 300    ? LH_UP_OK
                                                          : LH_UP_HTTP_ERROR);
        if (r->kind == UP_CONNECT)
            finish_connect(r, status, res != CURLE_OK);
        return;
    }
    if (res != CURLE_OK) {
        if (r->too_big) {
            count(r->kind, LH_UP_FAILED);
            reply_error(r, 502, "upstream answer over upstream.max_response_bytes");
        } else if (res == CURLE_OPERATION_TIMEDOUT) {
            count(r->kind, LH_UP_TIMEOUT);
            reply_error(r, 504, "upstream timed out");
        } else {
            count(r->kind, LH_UP_FAILED);
            reply_error(r, 502, "upstream failed: %s", curl_easy_strerror(res));
        }
        return;
    }
    if (status < 200 || status >= 300) {
        count(r->kind, LH_UP_HTTP_ERROR);
        reply_error(r, 502, "upstream answered %ld", status);
        return;
    }
    count(r->kind, LH_UP_OK);
    if (r->c != NULL && (r->resp_len > 0 || r->rcommand != NULL)) {
        const char *cmd = r->rcommand && lh_lhttp_command_valid(r->rcommand, strlen(r->rcommand))
                              ? r->rcommand
                              : r->command;
        int rc = lh_reply_send(r->c, cmd, r->rh, r->nrh, r->resp, r->resp_len);

        if (rc == -EINVAL)
            reply_error(r, 502, "upstream answer has an invalid LHTTP command or header");
        else if (rc == -ENOMEM)
            reply_error(r, 500, "out of memory for the upstream answer");
    }
}

/* A transfer ended: a redirect to follow, a retry to schedule, or the outcome to tell. */
static void finish(lh_upreq_t *r, CURLcode res)
{
    lh_conn_t *c = r->c;
    long status = 0;
    lh_worker_t *w = r->w;
    int next;

    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(up_of(w)->multi, r->easy);
    /* Answering may write to the connection, and a failed write destroys it, and with it
     * the requests listed on it: while this one finishes, the connection's end only
     * unlinks it (r->c becomes NULL, lh_upstream_conn_gone), and the connection's memory
     * stays until the answer is done with it. */
    r->finishing = 1;
    if (c != NULL)
        lh_conn_hold(c);
    next = follow_redirect(r, res, status);
    if (next == NOT_TAKEN)
        next = retry_later(r, res, status);
    if (next == TAKEN) {
        /* r goes on with another attempt. */
        r->finishing = 0;
        if (c != NULL)
            lh_conn_release(c);
        return;
    }
    if (next == NOT_TAKEN)
        answer(r, res, status);
    req_free(r);
    if (c != NULL)
        lh_conn_release(c);
}

static void check_done(lh_up_t *up)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(up->multi, &left)) != NULL) {
        lh_upreq_t *r = NULL;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (r != NULL)
            finish(r, m->data.result);
    }
}

static void event_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_up_t *up = arg;
    int running, flags = (what & EV_READ ? CURL_CSELECT_IN : 0) |
                         (what & EV_WRITE ? CURL_CSELECT_OUT : 0);

    up->w->now_ms = lh_now_ms();
    curl_multi_socket_action(up->multi, fd, flags, &running);
    check_done(up);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_up_t *up = arg;
    int running;

    up->w->now_ms = lh_now_ms();
    curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(up);
}

/* The socket of e's transfer could not be watched (out of memory): without an event the
 * transfer would wait forever, so pump_cb fails it once libcurl has returned. */
static void sock_lost(lh_up_t *up, CURL *e)
{
    lh_upreq_t *r = NULL;

    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
    if (r != NULL)
        r->sock_lost = 1;
    up->sock_lost = 1;
    event_active(up->pump, EV_TIMEOUT, 0);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    lh_up_t *up = userp;
    struct event *ev = socketp;
    short kind;

    if (what == CURL_POLL_REMOVE) {
        if (ev != NULL)
            event_free(ev);
        curl_multi_assign(up->multi, s, NULL);
        return 0;
    }
    kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) |
                   EV_PERSIST);
    if (ev == NULL) {
        ev = event_new(up->w->base, s, kind, event_cb, up);
        if (ev == NULL) {
            sock_lost(up, e);
            return -1;
        }
        curl_multi_assign(up->multi, s, ev);
    } else {
        event_del(ev);
        event_assign(ev, up->w->base, s, kind, event_cb, up);
    }
    if (event_add(ev, NULL) < 0) {
        sock_lost(up, e);
        return -1;
    }
    return 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    lh_up_t *up = userp;

    if (timeout_ms < 0) {
        evtimer_del(up->timer);
    } else {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

        /* Without the timer nothing would drive the transfers: -1 makes libcurl fail
         * them (each is then answered). */
        if (evtimer_add(up->timer, &tv) < 0)
            return -1;
    }
    return 0;
}

/* A multi handle with lhttpd's options: the pool capped to upstream.max_in_flight
 * connections, at most upstream.max_idle_connections kept alive. NULL on failure. */
static CURLM *multi_new(lh_up_t *up)
{
    const lh_config_t *cfg = up->w->cfg;
    CURLM *m = curl_multi_init();

    if (m == NULL)
        return NULL;
    curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(m, CURLMOPT_SOCKETDATA, up);
    curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(m, CURLMOPT_TIMERDATA, up);
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->upstream.max_in_flight);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)cfg->upstream.max_idle_connections);
    return m;
}

/* Nothing in flight or queued for upstream.idle_timeout_ms: the multi handle and with it
 * every kept-alive connection and libcurl's caches go, and freed heap goes back to the
 * system (a burst of webhooks would otherwise leave its high-water mark behind). */
static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_up_t *up = arg;

    if (up->inflight > 0 || up->qhead != NULL)
        return;
    if (up->multi != NULL) {
        curl_multi_cleanup(up->multi);
        evtimer_del(up->timer);
    }
    up->multi = multi_new(up); /* on failure, made again by the next request */
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static int start_easy(lh_upreq_t *r)
{
    lh_up_t *up = up_of(r->w);
    const lh_config_t *cfg = r->w->cfg;
    unsigned timeout = r->kind == UP_MESSAGE ? cfg->upstream.timeout_ms : cfg->webhooks.timeout_ms;
    CURL *e;

    if (r->oom || r->method == NULL)
        return -1;
    if (up->multi == NULL && (up->multi = multi_new(up)) == NULL)
        return -1;
    e = curl_easy_init();
    if (e == NULL)
        return -1;
    r->tries++;
    r->too_big = 0;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(cfg->upstream.connect_timeout_ms < timeout ? cfg->upstream.connect_timeout_ms
                                                                      : timeout));
    curl_easy_setopt(e, CURLOPT_USERAGENT, "lhttpd/" LH_VERSION);
    curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, (long)((cfg->upstream.idle_timeout_ms + 999) / 1000));
    if (!strcmp(r->method, "GET")) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(r->method, "HEAD")) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(r->method, "DELETE")) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        if (strcmp(r->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    }
    r->easy = e;
    up->inflight++;
    if (curl_multi_add_handle(up->multi, e) != CURLM_OK)
        return -1;
    return 0;
}

/* 1 when key can be an HTTP header name (RFC 9110 token). */
static int http_token(const char *s, size_t n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch != '\0' && strchr(extra, ch))))
            return 0;
    }
    return 1;
}

static int add_header(lh_upreq_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int add_header(lh_upreq_t *r, const char *fmt, ...)
{
    char line[8192];
    struct curl_slist *l;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line))
        return 0; /* too long: left out */
    l = curl_slist_append(r->headers, line);
    if (l == NULL) {
        r->oom = 1; /* start_easy refuses r: it would go out without this header */
        return -1;
    }
    r->headers = l;
    return 0;
}

static lh_upreq_t *req_new(lh_worker_t *w, int kind, lh_conn_t *c, const char *method,
                           const char *url)
{
    lh_up_t *up = up_of(w);
    lh_upreq_t *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->w = w;
    r->kind = kind;
    r->method = strdup(method);
    r->url = strdup(url);
    r->next = up->head;
    if (up->head)
        up->head->prev = r;
    up->head = r;
    if (c != NULL) {
        r->c = c;
        r->cnext = c->upreqs;
        if (c->upreqs)
            c->upreqs->cprev = r;
        c->upreqs = r;
        c->nupreqs++;
    }
    add_header(r, "Expect:");
    if (r->method == NULL || r->url == NULL) {
        req_free(r);
        return NULL;
    }
    return r;
}

/* The LHTTP message's headers as prefixed HTTP headers, plus who and what. */
static void add_message_headers(lh_upreq_t *r, lh_conn_t *c, const lh_msg_t *m)
{
    const char *pfx = r->w->cfg->upstream.header_prefix;
    const lh_lhttp_msg_t *lm = m->m;

    add_header(r, "%sCommand: %.*s", pfx, (int)lm->command_len, lm->command);
    add_header(r, "%sConnection-Id: %llu", pfx, (unsigned long long)c->id);
    add_header(r, "%sPeer: %s", pfx, lh_conn_peer_name(c));
    for (size_t i = 0; i < lm->num_headers; i++) {
        const lh_lhttp_header_t h = lm->headers[i];

        /* lhttpd's own headers above cannot be faked by the client's. */
        if (!http_token(h.key, h.key_len) ||
            lh_strieq(h.key, h.key_len, "upstream") || lh_strieq(h.key, h.key_len, "command") ||
            lh_strieq(h.key, h.key_len, "connection-id") || lh_strieq(h.key, h.key_len, "peer"))
            continue;
        add_header(r, "%s%.*s: %.*s", pfx, (int)h.key_len, h.key, (int)h.value_len, h.value);
        if (lh_strieq(h.key, h.key_len, "content-type"))
            add_header(r, "Content-Type: %.*s", (int)h.value_len, h.value);
    }
}

static int limited(lh_conn_t *c, lh_msg_t *m, int kind)
{
    const lh_config_t *cfg = c->w->cfg;

    if (c->nupreqs >= cfg->upstream.max_in_flight_per_conn ||
        up_of(c->w)->inflight >= cfg->upstream.max_in_flight) {
        count(kind, LH_UP_LIMITED);
        lh_reply_error_to(c, m, 429, "too many upstream requests in flight");
        return 1;
    }
    return 0;
}

static void send_message(lh_conn_t *c, lh_msg_t *m, int kind, const char *method,
                         const char *url)
{
    size_t bl = m->m->body_len, cl = m->m->command_len;
    const char *body = m->m->body, *cmd = m->m->command;
    lh_upreq_t *r = req_new(c->w, kind, c, method, url);

    if (r == NULL) {
        count(kind, LH_UP_FAILED);
        lh_reply_error_to(c, m, 500, "out of memory");
        return;
    }
    r->command = strndup(cmd, cl);
    if (strcmp(method, "GET") && strcmp(method, "HEAD") && strcmp(method, "DELETE") && bl > 0) {
        r->body = malloc(bl);
        if (r->body == NULL) {
            count(kind, LH_UP_FAILED);
            lh_reply_error_to(c, m, 500, "out of memory");
            req_free(r);
            return;
        }
        memcpy(r->body, body, bl);
        r->body_len = bl;
    }
    if (!lh_lhttp_header(m->m, "content-type", NULL))
        add_header(r, "Content-Type: %s", lh_utf8_valid((const uint8_t *)body, bl)
                                              ? "text/plain; charset=utf-8"
                                              : "application/octet-stream");
    add_message_headers(r, c, m);
    if (r->command == NULL || start_easy(r) < 0) {
        count(kind, LH_UP_FAILED);
        lh_reply_error_to(c, m, 500, "cannot start the request");
        req_free(r);
    }
}

/* The built-in filter: `upstream: METHOD URL`, and commands bound to webhooks. */
static int upstream_before(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    const lh_config_t *cfg = c->w->cfg;
    size_t vl = 0, cl = m->m->command_len;
    const char *v = lh_lhttp_header(m->m, "upstream", &vl);
    const char *cmd = m->m->command;

    for (size_t i = 0; i < cfg->ncommands; i++) {
        if (strlen(cfg->commands[i].name) == cl && memcmp(cfg->commands[i].name, cmd, cl) == 0) {
            if (!limited(c, m, UP_WEBHOOK_CMD))
                send_message(c, m, UP_WEBHOOK_CMD, "POST", cfg->commands[i].webhook);
            break;
        }
    }
    if (v != NULL) {
        char method[16], url[4096], *canon = NULL;
        const char *sp = memchr(v, ' ', vl);
        size_t ml = sp ? (size_t)(sp - v) : 0, ul;

        if (sp == NULL || ml == 0 || ml >= sizeof(method)) {
            lh_reply_error_to(c, m, 400, "upstream header must be \"METHOD URL\"");
            return LH_FILTER_STOP;
        }
        memcpy(method, v, ml);
        method[ml] = '\0';
        while (sp < v + vl && *sp == ' ')
            sp++;
        ul = (size_t)(v + vl - sp);
        if (ul == 0 || ul >= sizeof(url) || memchr(sp, ' ', ul)) {
            lh_reply_error_to(c, m, 400, "upstream header must be \"METHOD URL\"");
            return LH_FILTER_STOP;
        }
        memcpy(url, sp, ul);
        url[ul] = '\0';
        if (strcmp(method, "GET") && strcmp(method, "POST") && strcmp(method, "PUT") &&
            strcmp(method, "PATCH") && strcmp(method, "DELETE") && strcmp(method, "HEAD")) {
            lh_reply_error_to(c, m, 400, "upstream method must be GET, HEAD, POST, PUT, PATCH "
                                          "or DELETE");
            return LH_FILTER_STOP;
        }
        if (up_of(c->w)->nallow == 0 || !url_allowed(up_of(c->w), url, &canon)) {
            count(UP_MESSAGE, LH_UP_REFUSED);
            lh_log(LH_LOG_INFO, "%s: conn %llu: upstream %s %.200s refused (not in upstream.allow)",
                   lh_conn_peer_name(c), (unsigned long long)c->id, method, url);
            lh_reply_error_to(c, m, 403, up_of(c->w)->nallow == 0
                                              ? "upstream is disabled (upstream.allow is empty)"
                                              : "upstream URL not allowed");
            return LH_FILTER_STOP;
        }
        if (!limited(c, m, UP_MESSAGE))
            send_message(c, m, UP_MESSAGE, method, canon);
        free(canon);
    }
    return LH_FILTER_CONTINUE;
}

void lh_upstream_register(void)
{
    static const lh_filter_t f = {"upstream", NULL, upstream_before, NULL, NULL};

    lh_dispatch_register_filter(&f, NULL);
}

/* ---- Subscribe and publish webhooks ---- */

/* The JSON a subscribe or publish webhook receives. NULL when out of memory. */
static char *perm_body(lh_conn_t *c, const lh_msg_t *m, int kind, const char *list,
                       size_t len)
{
    const char *info = lh_auth_info(c), *pos = list, *ch;
    json_t *doc = json_object(), *chans = json_array(), *info_j = NULL;
    size_t cl;
    char *out = NULL;

    if (doc == NULL || chans == NULL)
        goto done;
    while (lh_channel_next(&pos, list + len, &ch, &cl))
        json_array_append_new(chans, json_stringn(ch, cl));
    if (info != NULL)
        info_j = json_loads(info, 0, NULL);
    json_object_set_new(doc, "connection", json_integer((json_int_t)(c->id & 0x7fffffffffffffffull)));
    json_object_set_new(doc, "user", json_string(lh_auth_user(c)));
    json_object_set_new(doc, "info", info_j ? info_j : json_null());
    json_object_set_new(doc, "channels", chans);
    chans = NULL;
    json_object_set_new(doc, "command", json_stringn(m->m->command, m->m->command_len));
    if (kind == LH_HOOK_PUBLISH) {
        /* The message as the client sent it, minus a subscription token (a credential
         * never travels); a server-stamped sender is added at delivery. A body that is
         * not UTF-8 is left out, flagged: base64 would be a guess at what the backend
         * wants. */
        static lh_lhttp_header_t hs[LH_LHTTP_HEADERS_CAP];
        const lh_lhttp_msg_t *lm = m->m;
        size_t nh = 0, need;
        char *text;

        for (size_t i = 0; i < lm->num_headers; i++)
            if (!lh_strieq(lm->headers[i].key, lm->headers[i].key_len, "subscribe-token"))
                hs[nh++] = lm->headers[i];
        need = lh_lhttp_serialize(NULL, 0, lm->command, lm->command_len, hs, nh, lm->body,
                                  lm->body_len);
        text = malloc(need ? need : 1);
        if (text == NULL)
            goto done;
        lh_lhttp_serialize(text, need, lm->command, lm->command_len, hs, nh, lm->body,
                           lm->body_len);
        if (lh_utf8_valid((const uint8_t *)text, need))
            json_object_set_new(doc, "message", json_stringn(text, need));
        else
            json_object_set_new(doc, "binary", json_true());
        free(text);
    }
    out = json_dumps(doc, JSON_COMPACT);
done:
    json_decref(chans);
    json_decref(doc);
    return out;
}

/* upstream.c's w->perm_hook (see worker.h). */
static int perm_hook(lh_conn_t *c, const lh_msg_t *m, int kind, const char *list, size_t len)
{
    lh_worker_t *w = c->w;
    const lh_config_t *cfg = w->cfg;
    const char *pfx = cfg->upstream.header_prefix;
    /* The URLs come with the rules: a worker retired by a reload follows the new ones. */
    const lh_config_t *rules = lh_auth_config(w->auth);
    const char *url = kind == LH_HOOK_SUBSCRIBE ? rules->webhooks.subscribe
                                                : rules->webhooks.publish;
    int upkind = kind == LH_HOOK_SUBSCRIBE ? UP_SUBSCRIBE : UP_PUBLISH;
    lh_upreq_t *r;

    if (url == NULL)
        return -ENOSYS; /* a reload's rules name a webhook this worker was not given */
    if (up_of(w)->inflight >= cfg->upstream.max_in_flight) {
        count(upkind, LH_UP_LIMITED);
        return -EBUSY;
    }
    r = req_new(w, upkind, c, "POST", url);
    if (r == NULL) {
        count(upkind, LH_UP_FAILED);
        return -ENOMEM;
    }
    r->command = strndup(m->m->command, m->m->command_len);
    r->held = malloc(m->raw_len ? m->raw_len : 1);
    r->channels = strndup(list, len);
    r->body = perm_body(c, m, kind, list, len);
    if (r->command == NULL || r->held == NULL || r->channels == NULL || r->body == NULL) {
        count(upkind, LH_UP_FAILED);
        req_free(r);
        return -ENOMEM;
    }
    memcpy(r->held, m->raw, m->raw_len);
    r->held_len = m->raw_len;
    r->held_binary = m->binary;
    r->channels_len = len;
    r->body_len = strlen(r->body);
    r->approved = (uint8_t)(w->hook_ok | kind);
    r->started_ns = lh_now_ns();
    add_header(r, "Content-Type: application/json");
    add_header(r, "%sEvent: %s", pfx, kind == LH_HOOK_SUBSCRIBE ? "subscribe" : "publish");
    add_header(r, "%sConnection-Id: %llu", pfx, (unsigned long long)c->id);
    add_header(r, "%sPeer: %s", pfx, lh_conn_peer_name(c));
    add_header(r, "%sUser: %s", pfx, lh_auth_user(c));
    /* The channels as a header too, so that a backend can route without reading JSON. */
    add_header(r, "%sChannels: %.*s", pfx, (int)len, list);
    if (start_easy(r) < 0) {
        count(upkind, LH_UP_FAILED);
        req_free(r);
        return -ENOMEM;
    }
    /* Later messages of this connection wait behind this one. */
    r->holding = 1;
    c->flags |= LH_CF_HOOK_WAIT;
    event_del(&c->rev);
    return 0;
}

/* The reason a refusing webhook gave: {"reason": "..."} or its plain-text body. */
static void backend_reason(const lh_upreq_t *r, char *out, size_t cap, const char *dflt)
{
    json_t *doc = r->resp_len ? json_loadb(r->resp, r->resp_len, 0, NULL) : NULL;
    json_t *why = json_is_object(doc) ? json_object_get(doc, "reason") : NULL;
    const char *s = dflt;
    size_t n = strlen(dflt), k = 0;

    if (json_is_string(why)) {
        s = json_string_value(why);
        n = json_string_length(why);
    } else if (doc == NULL && r->resp_len > 0 && lh_utf8_valid((const uint8_t *)r->resp, r->resp_len)) {
        s = r->resp;
        n = r->resp_len;
    }
    /* One header value: no control characters, no blanks at the ends. */
    for (size_t i = 0; i < n && k + 1 < cap && k < 200; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch < 0x20 || ch == 0x7f)
            ch = ' ';
        if (ch == ' ' && (k == 0 || out[k - 1] == ' '))
            continue;
        out[k++] = (char)ch;
    }
    while (k > 0 && out[k - 1] == ' ')
        k--;
    out[k] = '\0';
    if (k == 0)
        snprintf(out, cap, "%s", dflt);
    json_decref(doc);
}

/*
 * A subscribe or publish webhook answered (or failed): 2xx dispatches the held message
 * again with this approval (it may then wait for the other webhook); 401/403 refuse it with
 * the backend's reason; anything else refuses it with 503 (504 on a timeout): no answer
 * is never a yes. The connection's input resumes unless it waits again.
 */
static void finish_perm(lh_upreq_t *r, CURLcode res, long status)
{
    lh_conn_t *c = r->c;
    lh_worker_t *w = r->w;
    int sub = r->kind == UP_SUBSCRIBE;
    char why[256];
    const char *pos, *ch;
    size_t cl;

    count(r->kind, res == CURLE_OPERATION_TIMEDOUT ? LH_UP_TIMEOUT
                   : res != CURLE_OK               ? LH_UP_FAILED
                   : status >= 200 && status < 300 ? LH_UP_OK
                                                   : LH_UP_HTTP_ERROR);
    lh_metrics_observe_webhook(lh_now_ns() - r->started_ns);
    if (c == NULL || (c->flags & LH_CF_DEAD))
        return;
    if (res == CURLE_OK && status >= 200 && status < 300) {
        /* This request no longer holds the input; the message may take a new hold. */
        r->holding = 0;
        c->flags &= ~LH_CF_HOOK_WAIT;
        w->hook_ok = r->approved;
        lh_dispatch_message(c, r->held, r->held_len, r->held_binary);
        w->hook_ok = 0;
        if (!(c->flags & (LH_CF_DEAD | LH_CF_HOOK_WAIT)))
            lh_conn_resume_later(c);
        return;
    }
    if (res == CURLE_OK && (status == 401 || status == 403)) {
        for (pos = r->channels; lh_channel_next(&pos, r->channels + r->channels_len, &ch, &cl);)
            lh_auth_count_denied(w->auth, sub ? LH_ACT_SUBSCRIBE : LH_ACT_PUBLISH, ch, cl);
        backend_reason(r, why, sizeof(why), sub ? "refused by the subscribe webhook"
                                                : "refused by the publish webhook");
        lh_reply_error(c, r->command, strlen(r->command), (int)status, why);
        return;
    }
    lh_reply_error(c, r->command, strlen(r->command), res == CURLE_OPERATION_TIMEDOUT ? 504 : 503,
                   sub ? "subscribe webhook unavailable: not subscribed"
                       : "publish webhook unavailable: not published");
}

/* ---- Connect and disconnect webhooks ---- */

int lh_upstream_connect_hook(lh_conn_t *c, const lh_http_request_t *req, const char *accept,
                             const char *proto, int echo)
{
    const lh_config_t *cfg = c->w->cfg;
    const char *pfx = cfg->upstream.header_prefix;
    lh_upreq_t *r;

    if (cfg->webhooks.connect == NULL)
        return 0;
    if (up_of(c->w)->inflight >= cfg->upstream.max_in_flight) {
        count(UP_CONNECT, LH_UP_LIMITED);
        return -EBUSY;
    }
    r = req_new(c->w, UP_CONNECT, c, "POST", cfg->webhooks.connect);
    if (r == NULL) {
        count(UP_CONNECT, LH_UP_FAILED);
        return -ENOMEM;
    }
    memcpy(r->accept, accept, sizeof(r->accept));
    snprintf(r->proto, sizeof(r->proto), "%s", proto);
    r->echo = echo;
    /* The request's own headers (cookies, authorization...), minus the handshake's. */
    for (size_t i = 0; i < req->num_headers; i++) {
        const lh_http_header_t *h = &req->headers[i];

        /* Never the client's Host (the webhook's own is used) nor anything that could
         * pass for the headers lhttpd adds below. */
        if (lh_strieq(h->name, h->name_len, "host") ||
            (h->name_len >= strlen(pfx) && lh_strieq(h->name, strlen(pfx), pfx)) ||
            lh_strieq(h->name, h->name_len, "connection") ||
            lh_strieq(h->name, h->name_len, "upgrade") ||
            lh_strieq(h->name, h->name_len, "content-length") ||
            lh_strieq(h->name, h->name_len, "transfer-encoding") ||
            lh_strieq(h->name, h->name_len, "expect") ||
            (h->name_len > 14 && lh_strieq(h->name, 14, "sec-websocket-")))
            continue;
        add_header(r, "%.*s: %.*s", (int)h->name_len, h->name, (int)h->value_len, h->value);
    }
    add_header(r, "%sConnection-Id: %llu", pfx, (unsigned long long)c->id);
    add_header(r, "%sPeer: %s", pfx, lh_conn_peer_name(c));
    /* The origin-form path and query, also of an absolute-form target. */
    add_header(r, "%sPath: %.*s%s%.*s", pfx, (int)req->path_len, req->path,
               req->query ? "?" : "", (int)req->query_len, req->query ? req->query : "");
    add_header(r, "%sEvent: connect", pfx);
    if (lh_auth_kind(c) == LH_ID_TOKEN)
        add_header(r, "%sUser: %s", pfx, lh_auth_user(c));
    if (start_easy(r) < 0) {
        count(UP_CONNECT, LH_UP_FAILED);
        req_free(r);
        return -ENOMEM;
    }
    return 1;
}

/* Starts the disconnect webhook for connection id at peer; counted as failed if it
 * cannot start. */
static void send_disconnect(lh_worker_t *w, unsigned long long id, const char *peer,
                            unsigned code)
{
    const lh_config_t *cfg = w->cfg;
    const char *pfx = cfg->upstream.header_prefix;
    lh_upreq_t *r = req_new(w, UP_DISCONNECT, NULL, "POST", cfg->webhooks.disconnect);
    char body[160];
    int n;

    if (r == NULL) {
        count(UP_DISCONNECT, LH_UP_FAILED);
        return;
    }
    n = snprintf(body, sizeof(body), "{\"connection\":%llu,\"peer\":\"%s\",\"code\":%u}", id,
                 peer, code);
    r->body = strndup(body, (size_t)n);
    r->body_len = (size_t)n;
    add_header(r, "Content-Type: application/json");
    add_header(r, "%sConnection-Id: %llu", pfx, id);
    add_header(r, "%sEvent: disconnect", pfx);
    if (r->body == NULL || start_easy(r) < 0) {
        count(UP_DISCONNECT, LH_UP_FAILED);
        req_free(r);
    }
}

/* Fails the requests whose socket could not be watched, then starts queued disconnect
 * webhooks, oldest first, while slots are free. */
static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_up_t *up = arg;

    while (up->sock_lost) {
        up->sock_lost = 0;
        for (lh_upreq_t *r = up->head; r != NULL; r = r->next) {
            if (r->sock_lost && r->easy != NULL) {
                up->sock_lost = 1; /* look again: fail_now changes the list */
                fail_now(r, 502, "upstream failed: out of memory");
                break;
            }
        }
    }

    while (up->qhead != NULL && up->inflight < up->w->cfg->upstream.max_in_flight) {
        lh_updq_t *q = up->qhead;

        up->qhead = q->next;
        if (up->qhead == NULL)
            up->qtail = NULL;
        up->qlen--;
        send_disconnect(up->w, q->id, q->peer, q->code);
        free(q);
    }
    if (up->qhead == NULL)
        up->qdropping = 0;
}

void lh_upstream_disconnect_hook(lh_conn_t *c, unsigned code)
{
    const lh_config_t *cfg = c->w->cfg;
    lh_up_t *up = up_of(c->w);
    lh_updq_t *q;

    if (cfg->webhooks.disconnect == NULL || up == NULL)
        return;
    if (up->qhead == NULL && up->inflight < cfg->upstream.max_in_flight) {
        send_disconnect(c->w, (unsigned long long)c->id, lh_conn_peer_name(c), code);
        return;
    }
    /* Every slot is taken (or others wait already): wait in line, up to the bound. */
    if (up->qlen >= cfg->webhooks.disconnect_queue || (q = malloc(sizeof(*q))) == NULL) {
        count(UP_DISCONNECT, LH_UP_LIMITED);
        if (!up->qdropping)
            lh_log(LH_LOG_WARNING, "disconnect webhooks dropped: %zu wait already "
                   "(webhooks.disconnect_queue %zu)", up->qlen, cfg->webhooks.disconnect_queue);
        up->qdropping = 1;
        return;
    }
    q->next = NULL;
    q->id = (unsigned long long)c->id;
    q->code = code;
    snprintf(q->peer, sizeof(q->peer), "%s", lh_conn_peer_name(c));
    if (up->qtail != NULL)
        up->qtail->next = q;
    else
        up->qhead = q;
    up->qtail = q;
    up->qlen++;
    if (up->inflight < cfg->upstream.max_in_flight)
        event_active(up->pump, EV_TIMEOUT, 0);
}

/* The connection is going away: its answers have nobody to go to. Requests with side
 * effects elsewhere are cancelled too: the client cannot learn their outcome. */
void lh_upstream_conn_gone(lh_conn_t *c)
{
    while (c->upreqs != NULL) {
        lh_upreq_t *r = c->upreqs;

        if (!r->finishing) {
            req_free(r);
            continue;
        }
        /* finish() is answering it further up the stack and frees it there. */
        c->upreqs = r->cnext;
        if (r->cnext)
            r->cnext->cprev = NULL;
        r->cprev = r->cnext = NULL;
        r->c = NULL;
        c->nupreqs--;
    }
}

/* ---- Worker setup ---- */

int lh_upstream_init(lh_worker_t *w)
{
    const lh_config_t *cfg = w->cfg;
    lh_up_t *up = calloc(1, sizeof(*up));

    if (up == NULL)
        return -ENOMEM;
    w->upstream = up;
    w->perm_hook = perm_hook;
    up->w = w;
    up->timer = evtimer_new(w->base, timeout_cb, up);
    up->pump = evtimer_new(w->base, pump_cb, up);
    up->idle = evtimer_new(w->base, idle_cb, up);
    if (up->timer == NULL || up->pump == NULL || up->idle == NULL)
        return -ENOMEM;
    up->multi = multi_new(up);
    if (up->multi == NULL)
        return -ENOMEM;
    up->allow = calloc(cfg->upstream.allow.n + 1, sizeof(*up->allow));
    if (up->allow == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->upstream.allow.n; i++) {
        if (parse_url(cfg->upstream.allow.items[i], &up->allow[up->nallow]) < 0) {
            lh_log(LH_LOG_ERR, "upstream.allow \"%s\": not an http(s) URL; ignored",
                   cfg->upstream.allow.items[i]);
            prefix_free(&up->allow[up->nallow]);
            continue;
        }
        up->nallow++;
    }
    return 0;
}

void lh_upstream_free(lh_worker_t *w)
{
    lh_up_t *up = up_of(w);

    if (up == NULL)
        return;
    while (up->head != NULL)
        req_free(up->head);
    while (up->qhead != NULL) {
        lh_updq_t *q = up->qhead;

        up->qhead = q->next;
        free(q);
    }
    for (size_t i = 0; i < up->nallow; i++)
        prefix_free(&up->allow[i]);
    free(up->allow);
    if (up->timer)
        event_free(up->timer);
    if (up->pump)
        event_free(up->pump);
    if (up->idle)
        event_free(up->idle);
    if (up->multi)
        curl_multi_cleanup(up->multi);
    free(up);
    w->upstream = NULL;
}

void lh_upstream_conn_ended(lh_conn_t *c)
{
    /* A connection handed to another worker is not disconnected: no webhook. */
    if ((c->flags & LH_CF_OPENED) && !(c->flags & LH_CF_HANDOFF))
        lh_upstream_disconnect_hook(c, (c->flags & LH_CF_CLOSE_SENT) ? c->close_code : 1006);
    lh_upstream_conn_gone(c);
}
