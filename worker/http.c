/*
 * HTTP/1.1 on a worker: request routing, keep-alive, error responses, and the WebSocket
 * opening handshake (RFC 6455 section 4.2).
 */
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh_log.h"
#include "lh_ws.h"

/* 1 when the request's path is one of l's. */
static int path_in(const lh_strlist_t *l, const lh_http_request_t *req)
{
    for (size_t i = 0; i < l->n; i++)
        if (lh_http_path_is(req, l->items[i]))
            return 1;
    return 0;
}

/* Builds and queues a response: the head, then the body, either copied from body or, when
 * shared is given, queued by reference (static files). */
static void respond(lh_conn_t *c, int status, const char *extra, const char *ctype,
                    const void *body, size_t body_len, lh_buf_t *shared)
{
    lh_worker_t *w = c->w;
    char head[1024], clen[40] = "";
    int close_after = (c->flags & LH_CF_CLOSE_AFTER) || !(c->flags & LH_CF_KEEPALIVE) ||
                      w->stopping || w->draining;
    /* HTTP/1.0 closes unless told otherwise (RFC 9112 9.3): say when it stays open. */
    const char *conn = close_after             ? "Connection: close\r\n"
                       : c->flags & LH_CF_HTTP10 ? "Connection: keep-alive\r\n"
                                                 : "";
    int no_body = status == 304 || status == 204 || (c->flags & LH_CF_HEAD);
    int n;
    lh_buf_t *b;

    if (shared != NULL)
        body_len = shared->len;
    if (status != 304 && status != 204)
        snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", body_len);
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\nServer: lhttpd\r\n%s%s%s%s%s%s\r\n", status,
                 lh_http_status_text(status), clen, ctype ? "Content-Type: " : "",
                 ctype ? ctype : "", ctype ? "\r\n" : "",
                 conn, extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof(head)) {
        n = snprintf(head, sizeof(head), "HTTP/1.1 500 Internal Server Error\r\n"
                                         "Content-Length: 0\r\nConnection: close\r\n\r\n");
        body_len = 0;
        shared = NULL;
        close_after = 1;
    }
    lh_m_inc(LH_M_HTTP_BASE + c->endpoint * LH_HTTP_NSTATUS + lh_metrics_status_index(status));
    b = lh_buf_new((size_t)n + (shared || no_body ? 0 : body_len));
    if (b == NULL) {
        lh_conn_destroy(c);
        return;
    }
    memcpy(b->data, head, (size_t)n);
    if (!shared && !no_body && body_len)
        memcpy(b->data + n, body, body_len);
    lh_conn_queue(c, b);
    lh_buf_unref(b);
    if (shared && !no_body && shared->len > 0)
        lh_conn_queue(c, shared);
    if (close_after) {
        lh_conn_linger(c);
    } else {
        c->flags |= LH_CF_KA_IDLE;
        c->last_ms = w->now_ms + w->cfg->http.keepalive_timeout_ms;
    }
}

void lh_http_respond(lh_conn_t *c, int status, const char *extra, const char *ctype,
                     const void *body, size_t body_len)
{
    respond(c, status, extra, ctype, body, body_len, NULL);
}

void lh_http_respond_buf(lh_conn_t *c, int status, const char *extra, const char *ctype,
                         lh_buf_t *body)
{
    respond(c, status, extra, ctype, NULL, 0, body);
}

void lh_http_options(lh_conn_t *c, const char *allow)
{
    char extra[128];

    snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
    lh_http_respond(c, 200, extra, NULL, NULL, 0);
}


/* An error response with a one-line plain-text reason; the connection closes after it. */
static void respond_error(lh_conn_t *c, int status, const char *reason, const char *extra);

/* A refused WebSocket handshake: counted by reason, then answered like any error. */
static void reject(lh_conn_t *c, int why, int status, const char *reason, const char *extra)
{
    lh_m_inc(LH_M_REJECT_BASE + (unsigned)why);
    respond_error(c, status, reason, extra);
}

static void respond_error(lh_conn_t *c, int status, const char *reason, const char *extra)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "%s\n", reason);

    c->flags |= LH_CF_CLOSE_AFTER;
    lh_log(LH_LOG_INFO, "%s: HTTP %d: %s", lh_conn_peer_name(c), status, reason);
    lh_http_respond(c, status, extra, "text/plain; charset=utf-8", body, (size_t)n);
}

/* 401 to a POST /publish without the right bearer token; the connection then closes. */
static void refuse_token(lh_conn_t *c)
{
    static const char body[] = "{\"error\":\"missing or wrong bearer token\"}\n";

    c->flags |= LH_CF_CLOSE_AFTER;
    lh_http_respond(c, 401, "WWW-Authenticate: Bearer realm=\"lhttpd\"\r\n", "application/json",
                    body, sizeof(body) - 1);
}

static int origin_allowed(const lh_config_t *cfg, const lh_http_header_t *origin)
{
    if (cfg->websocket.allowed_origins.n == 0 || origin == NULL)
        return 1;
    for (size_t i = 0; i < cfg->websocket.allowed_origins.n; i++)
        if (lh_strieq(origin->value, origin->value_len, cfg->websocket.allowed_origins.items[i]))
            return 1;
    return 0;
}

/*
 * The token a handshake presents: "Authorization: Bearer <token>", or else the first
 * "token" parameter of the query (browsers cannot set headers on a WebSocket),
 * percent-decoded into buf (cap bytes). Returns its length, 0 when there is none, -1
 * when the query's token does not fit, or -2 when it is badly percent-encoded.
 */
static long handshake_token(const lh_http_request_t *req, char *buf, size_t cap,
                            const char **tok)
{
    const lh_http_header_t *h = lh_http_find_header(req, "authorization");
    const char *q = req->query, *end = req->query ? req->query + req->query_len : NULL;

    if (h != NULL && h->value_len > 7 && lh_strieq(h->value, 7, "bearer ")) {
        size_t i = 7;

        while (i < h->value_len && h->value[i] == ' ')
            i++;
        *tok = h->value + i;
        return (long)(h->value_len - i);
    }
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q)), *pe = amp ? amp : end;
        size_t n = 0;

        if (pe - q >= 6 && memcmp(q, "token=", 6) == 0) {
            for (const char *p = q + 6; p < pe; p++) {
                int hi, lo;

                if (n + 1 >= cap)
                    return -1;
                if (*p != '%') {
                    buf[n++] = *p == '+' ? ' ' : *p;
                    continue;
                }
                if (pe - p < 3 || (hi = lh_hexval(p[1])) < 0 || (lo = lh_hexval(p[2])) < 0)
                    return -2;
                buf[n++] = (char)(hi * 16 + lo);
                p += 2;
            }
            *tok = buf;
            return (long)n;
        }
        q = pe + 1;
    }
    return 0;
}

/* Verifies the handshake's token, if it has one, and gives c its identity. Returns 0 to
 * go on, or -1 when the handshake was refused (401: a token presented and invalid is
 * never taken for anonymous). */
static int handshake_identity(lh_conn_t *c, const lh_http_request_t *req)
{
    const lh_config_t *acfg = lh_auth_config(c->w->auth);
    size_t cap = acfg->auth.max_token_bytes + 2;
    char stackbuf[1024], *buf = cap <= sizeof(stackbuf) ? stackbuf : malloc(cap);
    char extra[200];
    const char *tok = NULL;
    lh_jwt_claims_t cl;
    long n;
    int r;

    /* Without auth.keys there are no tokens to verify: an Authorization header is the
     * connect webhook's business, as it always was. */
    if (acfg->auth.nkeys == 0) {
        if (buf != stackbuf)
            free(buf);
        return 0;
    }
    if (buf == NULL) {
        reject(c, LH_REJ_AUTH, 503, "out of memory", NULL);
        return -1;
    }
    n = handshake_token(req, buf, cap, &tok);
    if (n == 0) {
        if (buf != stackbuf)
            free(buf);
        return 0; /* anonymous, or it authenticates with its first message */
    }
    r = n == -1 ? LH_JWT_TOO_BIG : n < 0 ? LH_JWT_MALFORMED
                                         : lh_auth_verify(c->w->auth, tok, (size_t)n, &cl);
    if (n < 0)
        lh_auth_count_failure((unsigned)r);
    if (buf != stackbuf)
        free(buf);
    if (r != LH_JWT_OK) {
        snprintf(extra, sizeof(extra),
                 "WWW-Authenticate: Bearer realm=\"lhttpd\", error=\"invalid_token\", "
                 "error_description=\"%s\"\r\n", lh_auth_reason_text(r));
        reject(c, LH_REJ_AUTH, 401, lh_auth_reason_text(r), extra);
        return -1;
    }
    if (lh_auth_set_token(c, &cl) < 0) {
        lh_jwt_claims_free(&cl);
        reject(c, LH_REJ_AUTH, 503, "out of memory", NULL);
        return -1;
    }
    return 0;
}

/* Validates an upgrade request and switches the connection to WebSocket. */
static void handshake(lh_conn_t *c, const lh_http_request_t *req, int echo)
{
    lh_worker_t *w = c->w;
    const lh_http_header_t *h;
    char accept[29];
    char proto[LH_WS_PROTO_SIZE] = "";
    const char *tok;

    if (req->minor_version != 1) {
        reject(c, LH_REJ_BAD_REQUEST, 400, "WebSocket needs HTTP/1.1", NULL);
        return;
    }
    /* That an HTTP/1.1 request has one valid Host is the parser's check (a 400 counted
     * under limits); an absolute-form target's authority stands for it. */
    h = lh_http_find_header(req, "connection");
    if (h == NULL || !lh_http_has_token(h->value, h->value_len, "upgrade")) {
        reject(c, LH_REJ_BAD_REQUEST, 400, "Connection must include Upgrade", NULL);
        return;
    }
    /* RFC 6455 11.3.1 and 11.3.5: neither may appear twice in a request. */
    if (lh_http_count_header(req, "sec-websocket-key") > 1 ||
        lh_http_count_header(req, "sec-websocket-version") > 1) {
        reject(c, LH_REJ_BAD_REQUEST, 400,
               "Sec-WebSocket-Key and Sec-WebSocket-Version may appear only once", NULL);
        return;
    }
    h = lh_http_find_header(req, "sec-websocket-version");
    if (h == NULL || h->value_len != 2 || memcmp(h->value, "13", 2) != 0) {
        reject(c, LH_REJ_VERSION, 426, "unsupported WebSocket version",
               "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n");
        return;
    }
    h = lh_http_find_header(req, "sec-websocket-key");
    if (h == NULL || lh_ws_accept_key(h->value, h->value_len, accept) < 0) {
        reject(c, LH_REJ_KEY, 400, "missing or invalid Sec-WebSocket-Key", NULL);
        return;
    }
    if (!origin_allowed(w->cfg, lh_http_find_header(req, "origin"))) {
        reject(c, LH_REJ_ORIGIN, 403, "origin not allowed", NULL);
        return;
    }
    h = lh_http_find_header(req, "sec-websocket-protocol");
    /* RFC 6455 4.2.2: the answer names the subprotocol exactly as the client offered it. */
    if (h != NULL && (tok = lh_http_token_at(h->value, h->value_len, LH_WS_PROTO)) != NULL)
        memcpy(proto, tok, sizeof(proto) - 1);
    if (!echo && handshake_identity(c, req) < 0)
        return;
    switch (lh_upstream_connect_hook(c, req, accept, proto, echo)) {
    case 0:
        lh_http_upgrade(c, accept, proto, echo);
        break;
    case 1:
        /* The backend decides: hold the input until it answers. */
        c->flags |= LH_CF_HS_PENDING;
        event_del(&c->rev);
        break;
    case -EBUSY:
        /* upstream.max_in_flight requests already: refused at once, not queued (each
         * waiting handshake would hold a descriptor and a backend connection). */
        reject(c, LH_REJ_BACKEND, 503, "too many connect webhooks in flight",
               "Retry-After: 1\r\n");
        break;
    default:
        reject(c, LH_REJ_BACKEND, 503, "connect webhook unavailable", NULL);
        break;
    }
}

void lh_http_refuse(lh_conn_t *c, int status, const char *reason)
{
    /* Reading was paused while the webhook decided: resume it, so the lingering close
     * sees the client's EOF instead of holding the slot until close_timeout_ms. */
    if (c->flags & LH_CF_HS_PENDING)
        event_add(&c->rev, NULL);
    c->flags &= ~LH_CF_HS_PENDING;
    respond_error(c, status, reason, NULL);
}

void lh_http_upgrade(lh_conn_t *c, const char *accept, const char *proto, int echo)
{
    lh_worker_t *w = c->w;
    char resp[256];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     accept, proto[0] ? "Sec-WebSocket-Protocol: " : "", proto,
                     proto[0] ? "\r\n" : "");
    int pending = (c->flags & LH_CF_HS_PENDING) != 0;

    /* The 101 first: if it cannot be queued (out of memory), the client sees its
     * connection end instead of waiting for an answer, and no WebSocket opens. */
    if (lh_conn_queue_frame(c, -1, resp, (size_t)n) < 0) {
        if (!(c->flags & LH_CF_DEAD))
            lh_conn_destroy(c);
        return;
    }
    c->flags &= ~(LH_CF_KA_IDLE | LH_CF_HS_PENDING);
    c->flags |= LH_CF_WS_OPEN;
    lh_m_sub(LH_G_HTTP_OPEN, 1);
    lh_m_inc(LH_G_WS_OPEN);
    lh_m_inc(LH_M_WS_ACCEPTED);
    lh_m_inc(LH_M_HTTP_BASE + LH_EP_WEBSOCKET * LH_HTTP_NSTATUS + lh_metrics_status_index(101));
    lh_conn_set_state(c, LH_CONN_WS);
    c->input = lh_ws_input; /* from the next byte on, input is WebSocket frames */
    c->last_ms = w->now_ms;
    if (echo) {
        c->flags |= LH_CF_ECHO;
    } else {
        c->flags |= LH_CF_OPENED;
        lh_auth_opened(c);
        lh_dispatch_open(c);
    }
    if (pending && !(c->flags & LH_CF_DEAD))
        lh_conn_resume_later(c); /* what the client sent after its handshake */
}

/* The request's connection handling (RFC 9112 9.3): keep-alive by default in 1.1, on
 * request in 1.0; HEAD answers carry no body. */
static void connection_flags(lh_conn_t *c, const lh_http_request_t *req)
{
    const lh_http_header_t *h = lh_http_find_header(req, "connection");

    c->flags &= ~(LH_CF_KEEPALIVE | LH_CF_CLOSE_AFTER | LH_CF_HEAD | LH_CF_HTTP10);
    if (req->method_id == LH_HTTP_HEAD)
        c->flags |= LH_CF_HEAD;
    if (req->minor_version == 0)
        c->flags |= LH_CF_HTTP10;
    if (req->minor_version == 1)
        c->flags |= (h && lh_http_has_token(h->value, h->value_len, "close")) ? 0 : LH_CF_KEEPALIVE;
    else
        c->flags |= (h && lh_http_has_token(h->value, h->value_len, "keep-alive")) ? LH_CF_KEEPALIVE : 0;
}

/* A head that is whole but whose body is not all there yet: answers "100 Continue" when
 * the client waits for it (RFC 9110 10.1.1), or refuses a publish that would be refused
 * anyway, before its body. Returns 1 when the request was answered (refused). */
static int body_pending(lh_conn_t *c, const lh_http_request_t *req)
{
    const lh_http_header_t *h = lh_http_find_header(req, "expect");

    if (h == NULL || req->minor_version != 1 || (c->flags & LH_CF_CONTINUE) ||
        !lh_strieq(h->value, h->value_len, "100-continue"))
        return 0;
    if (lh_http_path_is(req, "/publish") && !lh_publish_authorized(c, req)) {
        c->endpoint = LH_EP_PUBLISH;
        refuse_token(c);
        return 1;
    }
    c->flags |= LH_CF_CONTINUE;
    lh_conn_queue_frame(c, -1, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

/* A WebSocket path: the handshake, or the page that opens it, or the reason not. */
static void route_websocket(lh_conn_t *c, lh_http_request_t *req, uint64_t clen, int echo)
{
    const lh_http_header_t *h = lh_http_find_header(req, "upgrade");
    int upgrade = h != NULL && lh_http_has_token(h->value, h->value_len, "websocket");

    c->endpoint = LH_EP_WEBSOCKET;
    if (!upgrade && lh_static_serve(c, req, 1)) {
        /* A plain GET or HEAD on a WebSocket path: the page that opens the WebSocket (or
         * OPTIONS on it: GET, HEAD, OPTIONS). */
    } else if (req->method_id == LH_HTTP_OPTIONS) {
        lh_http_options(c, "GET, OPTIONS");
    } else if (req->method_id != LH_HTTP_GET) {
        reject(c, LH_REJ_METHOD, 405, "method not allowed", "Allow: GET, OPTIONS\r\n");
    } else if (!upgrade) {
        lh_m_inc(LH_M_REJECT_BASE + LH_REJ_NOT_UPGRADE);
        lh_http_respond(c, 426, "Upgrade: websocket\r\nConnection: Upgrade\r\n",
                        "text/plain; charset=utf-8", "WebSocket upgrade required\n", 27);
    } else if (clen > 0) {
        reject(c, LH_REJ_BAD_REQUEST, 400, "a WebSocket handshake has no body", NULL);
    } else {
        handshake(c, req, echo);
    }
}

/* POST /publish. */
static void route_publish(lh_conn_t *c, const lh_http_request_t *req, const uint8_t *body,
                          size_t body_len)
{
    c->endpoint = LH_EP_PUBLISH;
    if (req->method_id == LH_HTTP_OPTIONS)
        lh_http_options(c, "POST, OPTIONS");
    else if (req->method_id != LH_HTTP_POST)
        respond_error(c, 405, "use POST", "Allow: POST, OPTIONS\r\n");
    else if (!lh_publish_authorized(c, req))
        refuse_token(c);
    else
        lh_publish_http(c, body, body_len);
}

/* The server API (publish.c): on the admin socket when there is one, else on the public
 * one, where it needs publish.token to be set (without it nobody could be told apart). */
static void route_api(lh_conn_t *c, const lh_http_request_t *req, const uint8_t *body,
                      size_t body_len)
{
    int get = lh_http_path_is(req, "/api/presence") || lh_http_path_is(req, "/api/presence-stats");

    c->endpoint = LH_EP_OTHER;
    if (req->method_id == LH_HTTP_OPTIONS)
        lh_http_options(c, get ? "GET, OPTIONS" : "POST, OPTIONS");
    else if (get && req->method_id != LH_HTTP_GET)
        respond_error(c, 405, "use GET", "Allow: GET, OPTIONS\r\n");
    else if (!get && req->method_id != LH_HTTP_POST)
        respond_error(c, 405, "use POST", "Allow: POST, OPTIONS\r\n");
    else if (!(c->flags & LH_CF_ADMIN) && c->w->cfg->publish.token == NULL)
        respond_error(c, 403, "the server API on the public socket needs publish.token", NULL);
    else if (!lh_publish_authorized(c, req))
        refuse_token(c);
    else
        lh_api_http(c, req, body, body_len);
}

/* Routing a whole request (head and body): the admin endpoints, the WebSocket paths,
 * POST /publish, static files, 404. */
static void route(lh_conn_t *c, lh_http_request_t *req, const uint8_t *body, uint64_t clen)
{
    const lh_config_t *cfg = c->w->cfg;
    int echo;

    if (req->form == LH_HTTP_ASTERISK_FORM) {
        /* OPTIONS * (the parser takes "*" for no other method): the server's methods. */
        lh_http_options(c, (c->flags & LH_CF_ADMIN) ? "GET, HEAD, OPTIONS"
                                                    : "GET, HEAD, POST, OPTIONS");
        return;
    }
    if (lh_admin_route(c, req))
        return;
    if (req->path_len >= 5 && memcmp(req->path, "/api/", 5) == 0 &&
        ((c->flags & LH_CF_ADMIN) || !lh_admin_socket_exists(c->w))) {
        route_api(c, req, body, (size_t)clen);
        return;
    }
    if (c->flags & LH_CF_ADMIN) {
        lh_http_respond(c, 404, NULL, "text/plain; charset=utf-8", "not found\n", 10);
        return;
    }
    echo = path_in(&cfg->websocket.echo_paths, req);
    if (echo || path_in(&cfg->websocket.paths, req)) {
        route_websocket(c, req, clen, echo);
        return;
    }
    if (lh_http_path_is(req, "/publish")) {
        route_publish(c, req, body, (size_t)clen);
        return;
    }
    if (!lh_static_serve(c, req, 0))
        lh_http_respond(c, 404, NULL, "text/plain; charset=utf-8", "not found\n", 10);
}

/* Framing: a request is its head (parsed into the worker's scratch w->req) and
 * Content-Length bytes of body; nothing is routed before both are here. */
ssize_t lh_http_input(lh_conn_t *c, uint8_t *data, size_t len)
{
    lh_worker_t *w = c->w;
    lh_http_request_t *req = &w->req;
    uint64_t clen = 0;
    size_t total;
    int r;

    if (c->flags & LH_CF_KA_IDLE) {
        /* A new request starts on a kept-alive connection: it gets the handshake
         * timeout to finish its head. */
        c->flags &= ~LH_CF_KA_IDLE;
        c->last_ms = w->now_ms + w->cfg->limits.handshake_timeout_ms;
    }
    r = lh_http_parse_request((const char *)data, len, &w->http_limits, req);
    c->endpoint = LH_EP_OTHER;
    if (r == LH_PARSE_AGAIN)
        return 0;
    if (r == LH_PARSE_ERROR) {
        lh_m_inc(LH_M_REJECT_BASE + LH_REJ_LIMITS);
        respond_error(c, req->status, req->reason, NULL);
        return (ssize_t)len;
    }
    connection_flags(c, req);
    if (lh_http_find_header(req, "transfer-encoding") != NULL) {
        respond_error(c, 411, "Transfer-Encoding is not supported; send Content-Length", NULL);
        return (ssize_t)len;
    }
    if (lh_http_content_length(req, &clen) < 0) {
        respond_error(c, 400, "invalid Content-Length", NULL);
        return (ssize_t)len;
    }
    if (clen > w->cfg->http.max_body_bytes) {
        respond_error(c, 413, "request body too large", NULL);
        return (ssize_t)len;
    }
    total = (size_t)r + (size_t)clen;
    if (len < total)
        return body_pending(c, req) ? (ssize_t)len : 0;
    c->flags &= ~LH_CF_CONTINUE;
    route(c, req, data + r, clen);
    return (ssize_t)total;
}
