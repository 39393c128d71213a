/*
 * WebSocket frames on a worker (RFC 6455 sections 5-7): one complete frame at a time,
 * unmasked in place, fragments assembled with UTF-8 checked as they arrive, control
 * frames answered, protocol errors failing the connection with the right close code.
 */
#include "worker.h"

#include <stdlib.h>
#include <string.h>

#include "lh_log.h"
#include "lh_utf8.h"
#include "lh_ws.h"

/* Fails the connection: close frame with code, then lingering close without waiting for
 * the peer's close frame (RFC 6455 section 7.1.7). */
static void ws_fail(lh_conn_t *c, uint16_t code, const char *reason)
{
    lh_log(LH_LOG_INFO, "%s: conn %llu: closing %u: %s", lh_conn_peer(c),
           (unsigned long long)c->id, code, reason);
    lh_conn_close_ws(c, code, reason);
    if (!(c->flags & LH_CF_DEAD))
        lh_conn_linger(c);
}

static void deliver(lh_conn_t *c, uint8_t *data, size_t len, int opcode)
{
    lh_m_inc(LH_M_MSGS_IN);
    lh_metrics_observe_size(len);
    if (c->flags & LH_CF_ECHO) {
        lh_conn_queue_frame(c, opcode, data, len);
        return;
    }
    lh_dispatch_message(c, data, len, opcode == LH_WS_OP_BINARY);
}

static int msg_append(lh_conn_t *c, const uint8_t *p, size_t len)
{
    if (len == 0)
        return 0; /* an empty fragment: nothing to keep (and c->msg may be NULL) */
    if (c->msg_len + len > c->msg_cap) {
        size_t cap = c->msg_cap ? c->msg_cap : 4096;
        uint8_t *m;

        while (cap < c->msg_len + len)
            cap *= 2;
        m = realloc(c->msg, cap);
        if (m == NULL)
            return -1;
        c->msg = m;
        c->msg_cap = cap;
    }
    memcpy(c->msg + c->msg_len, p, len);
    c->msg_len += len;
    return 0;
}

/* One fragment of the message being assembled: UTF-8 checked across fragments for text,
 * then kept. Returns 0, or -1 once the connection has been failed. */
static int frag_add(lh_conn_t *c, const uint8_t *payload, size_t plen)
{
    if (c->frag_opcode == LH_WS_OP_TEXT) {
        c->utf8_state = lh_utf8_validate(c->utf8_state, payload, plen);
        if (c->utf8_state == LH_UTF8_REJECT) {
            ws_fail(c, LH_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
            return -1;
        }
    }
    if (msg_append(c, payload, plen) < 0) {
        ws_fail(c, LH_WS_CLOSE_INTERNAL, "out of memory");
        return -1;
    }
    return 0;
}

static void msg_reset(lh_conn_t *c)
{
    free(c->msg);
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
    c->frag_opcode = 0;
    c->utf8_state = LH_UTF8_ACCEPT;
}

static void on_close_frame(lh_conn_t *c, const uint8_t *p, size_t len)
{
    uint16_t code, err;
    const char *reason;
    size_t rlen;

    if (lh_ws_parse_close(p, len, &code, &reason, &rlen, &err) < 0) {
        ws_fail(c, err, err == LH_WS_CLOSE_INVALID_DATA ? "invalid UTF-8 in close reason"
                                                        : "invalid close frame");
        return;
    }
    if (!(c->flags & LH_CF_CLOSE_SENT)) {
        uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};

        /* Echo the peer's code (RFC 6455 section 5.5.1); an empty close gets an empty one. */
        lh_conn_queue_frame(c, LH_WS_OP_CLOSE, echo, code == LH_WS_CLOSE_NO_STATUS ? 0 : 2);
        c->flags |= LH_CF_CLOSE_SENT;
        c->close_code = code;
    }
    lh_conn_linger(c);
}

ssize_t lh_ws_input(lh_conn_t *c, uint8_t *data, size_t len)
{
    lh_worker_t *w = c->w;
    lh_ws_frame_t f;
    uint16_t code;
    const char *reason;
    uint8_t *payload;
    size_t total, plen;
    int r;

    if (c->state == LH_CONN_LINGER)
        return (ssize_t)len; /* nothing more is read after the close handshake */
    r = lh_ws_parse_header(data, len, 1, w->cfg->limits.max_message_bytes, &f, &code, &reason);
    if (r == LH_PARSE_AGAIN)
        return 0;
    if (r == LH_PARSE_ERROR) {
        ws_fail(c, code, reason);
        return (ssize_t)len;
    }
    plen = (size_t)f.payload_len;
    total = f.header_len + plen;
    if (len < total)
        return 0;
    payload = data + f.header_len;
    lh_ws_mask(payload, plen, f.mask, 0);
    lh_conn_touch(c);

    switch (f.opcode) {
    case LH_WS_OP_PING:
        if (!(c->flags & LH_CF_CLOSE_SENT))
            lh_conn_queue_frame(c, LH_WS_OP_PONG, payload, plen);
        break;
    case LH_WS_OP_PONG:
        break;
    case LH_WS_OP_CLOSE:
        on_close_frame(c, payload, plen);
        break;
    case LH_WS_OP_CONT:
        if (c->state != LH_CONN_WS)
            break; /* closing: data is no longer processed */
        if (c->frag_opcode == 0) {
            ws_fail(c, LH_WS_CLOSE_PROTOCOL, "continuation frame without a message");
            return (ssize_t)len;
        }
        if (c->msg_len + plen > w->cfg->limits.max_message_bytes) {
            ws_fail(c, LH_WS_CLOSE_TOO_BIG, "message too big");
            return (ssize_t)len;
        }
        if (frag_add(c, payload, plen) < 0)
            return (ssize_t)len;
        if (f.fin) {
            int op = c->frag_opcode;

            if (op == LH_WS_OP_TEXT && c->utf8_state != LH_UTF8_ACCEPT) {
                ws_fail(c, LH_WS_CLOSE_INVALID_DATA, "truncated UTF-8 in text message");
                return (ssize_t)len;
            }
            c->busy++;
            deliver(c, c->msg, c->msg_len, op);
            c->busy--;
            if (!(c->flags & LH_CF_DEAD))
                msg_reset(c);
        }
        break;
    default: /* text or binary */
        if (c->state != LH_CONN_WS)
            break;
        if (c->frag_opcode != 0) {
            ws_fail(c, LH_WS_CLOSE_PROTOCOL, "new message inside a fragmented message");
            return (ssize_t)len;
        }
        if (f.fin) {
            if (f.opcode == LH_WS_OP_TEXT && !lh_utf8_valid(payload, plen)) {
                ws_fail(c, LH_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
                return (ssize_t)len;
            }
            deliver(c, payload, plen, (int)f.opcode);
        } else {
            c->frag_opcode = (uint8_t)f.opcode;
            c->utf8_state = LH_UTF8_ACCEPT;
            if (frag_add(c, payload, plen) < 0)
                return (ssize_t)len;
        }
        break;
    }
    if (c->flags & LH_CF_DEAD)
        return -1;
    return (ssize_t)total;
}
