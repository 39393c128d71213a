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
    lh_log(LH_LOG_INFO, "%s: conn %llu: closing %u: %s", lh_conn_peer_name(c),
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

/* One fragment of the message being assembled: UTF-8 checked across fragments for text
 * (its first `checked` bytes were, while it arrived: c->utf8_state is the state after
 * them), then kept. Returns 0, or -1 once the connection has been failed. */
static int frag_add(lh_conn_t *c, const uint8_t *payload, size_t plen, size_t checked)
{
    if (c->frag_opcode == LH_WS_OP_TEXT) {
        c->utf8_state = lh_utf8_validate(c->utf8_state, payload + checked, plen - checked);
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

/* 1 when f carries text: a text frame, or a continuation of a text message. */
static int is_text_data(const lh_conn_t *c, const lh_ws_frame_t *f)
{
    return (f->opcode == LH_WS_OP_TEXT && c->frag_opcode == 0) ||
           (f->opcode == LH_WS_OP_CONT && c->frag_opcode == LH_WS_OP_TEXT);
}

/*
 * A text frame of which only avail payload bytes have arrived: unmasks and checks those
 * not seen yet, so a message with invalid UTF-8 fails at its first invalid byte, even in
 * the middle of a frame (what strict conformance suites expect), instead of after the
 * whole frame was received. Each byte is unmasked and checked once, whether the frame
 * comes in one read or in many. Returns -1 once the connection has been failed.
 */
static int check_partial(lh_conn_t *c, const lh_ws_frame_t *f, uint8_t *payload,
                         size_t avail)
{
    size_t done = c->part_done;

    if (avail <= done)
        return 0;
    if (done == 0)
        c->part_utf8 = f->opcode == LH_WS_OP_TEXT ? LH_UTF8_ACCEPT : c->utf8_state;
    lh_ws_mask(payload + done, avail - done, f->mask, done);
    c->part_utf8 = lh_utf8_validate(c->part_utf8, payload + done, avail - done);
    c->part_done = (uint32_t)avail;
    if (c->part_utf8 == LH_UTF8_REJECT) {
        c->part_done = 0;
        ws_fail(c, LH_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
        return -1;
    }
    return 0;
}

ssize_t lh_ws_input(lh_conn_t *c, uint8_t *data, size_t len)
{
    lh_worker_t *w = c->w;
    lh_ws_frame_t f;
    uint16_t code;
    const char *reason;
    uint8_t *payload;
    size_t total, plen, done;
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
    payload = data + f.header_len;
    if (len < total) {
        if (c->state == LH_CONN_WS && is_text_data(c, &f) &&
            check_partial(c, &f, payload, len - f.header_len) < 0)
            return (c->flags & LH_CF_DEAD) ? -1 : (ssize_t)len;
        return 0;
    }
    /* What check_partial saw is unmasked already; c->part_utf8 is the state after it. */
    done = c->part_done;
    c->part_done = 0;
    lh_ws_mask(payload + done, plen - done, f.mask, done);
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
        if (done > 0)
            c->utf8_state = c->part_utf8;
        if (frag_add(c, payload, plen, done) < 0)
            return (ssize_t)len;
        if (f.fin) {
            int op = c->frag_opcode;

            if (op == LH_WS_OP_TEXT && c->utf8_state != LH_UTF8_ACCEPT) {
                ws_fail(c, LH_WS_CLOSE_INVALID_DATA, "truncated UTF-8 in text message");
                return (ssize_t)len;
            }
            lh_conn_hold(c);
            deliver(c, c->msg, c->msg_len, op);
            lh_conn_release(c);
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
            if (f.opcode == LH_WS_OP_TEXT &&
                (done > 0 ? lh_utf8_validate(c->part_utf8, payload + done, plen - done) !=
                                LH_UTF8_ACCEPT
                          : !lh_utf8_valid(payload, plen))) {
                ws_fail(c, LH_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
                return (ssize_t)len;
            }
            deliver(c, payload, plen, (int)f.opcode);
        } else {
            c->frag_opcode = (uint8_t)f.opcode;
            c->utf8_state = done > 0 ? c->part_utf8 : LH_UTF8_ACCEPT;
            if (frag_add(c, payload, plen, done) < 0)
                return (ssize_t)len;
        }
        break;
    }
    if (c->flags & LH_CF_DEAD)
        return -1;
    return (ssize_t)total;
}
