/*
 * LHTTP replies: a message serialized once into one WebSocket frame (text when its bytes
 * are UTF-8, binary otherwise) and queued on the connection. What the built-in filters,
 * the processors and upstream answers send, and what lh_conn_send and its siblings of the
 * module API (api.c) are. Sits on conn.c; knows nothing of dispatch or pub/sub.
 */
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh_utf8.h"
#include "lh_ws.h"

/* A buffer for one unfragmented server frame of len payload bytes; *hl gets the header
 * length, the payload goes at data + *hl. The header is written as text; seal_frame
 * turns it binary when the payload is not UTF-8. */
static lh_buf_t *frame_alloc(size_t len, size_t *hl)
{
    uint8_t hdr[LH_WS_MAX_HEADER];
    lh_buf_t *b;

    *hl = lh_ws_build_header(hdr, 1, LH_WS_OP_TEXT, len, NULL);
    b = lh_buf_new(*hl + len);
    if (b != NULL)
        memcpy(b->data, hdr, *hl);
    return b;
}

/* Fixes the opcode, queues b on c and drops the caller's reference. */
static int seal_frame(lh_conn_t *c, lh_buf_t *b, size_t hl)
{
    int r;

    if (!lh_utf8_valid(b->data + hl, b->len - hl))
        b->data[0] = (uint8_t)(0x80 | LH_WS_OP_BINARY);
    r = lh_conn_queue(c, b);
    if (r == 0)
        lh_m_inc(LH_M_MSGS_OUT);
    lh_buf_unref(b);
    return r;
}

int lh_reply_send(lh_conn_t *c, const char *command, const lh_header_t *headers, size_t n,
                  const void *body, size_t body_len)
{
    lh_lhttp_header_t hs[LH_LHTTP_HEADERS_CAP];
    size_t cl = command ? strlen(command) : 0, need, hl;
    lh_buf_t *b;

    if (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT))
        return -EPIPE;
    if (!lh_lhttp_command_valid(command, cl) || n > LH_LHTTP_HEADERS_CAP)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!lh_lhttp_header_valid(headers[i].key, headers[i].key_len, headers[i].value,
                                   headers[i].value_len))
            return -EINVAL;
        hs[i].key = headers[i].key;
        hs[i].key_len = headers[i].key_len;
        hs[i].value = headers[i].value ? headers[i].value : "";
        hs[i].value_len = headers[i].value_len;
    }
    need = lh_lhttp_serialize(NULL, 0, command, cl, hs, n, body, body_len);
    b = frame_alloc(need, &hl);
    if (b == NULL)
        return -ENOMEM;
    lh_lhttp_serialize((char *)b->data + hl, need, command, cl, hs, n, body, body_len);
    return seal_frame(c, b, hl);
}

int lh_reply_raw(lh_conn_t *c, const void *data, size_t len)
{
    lh_buf_t *b;
    size_t hl;

    if (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT))
        return -EPIPE;
    b = frame_alloc(len, &hl);
    if (b == NULL)
        return -ENOMEM;
    memcpy(b->data + hl, data, len);
    return seal_frame(c, b, hl);
}

int lh_reply_error(lh_conn_t *c, const char *cmd, size_t cmd_len, int code,
                   const char *reason)
{
    char cs[12];
    lh_header_t h[3] = {
        {"code", 4, cs, (size_t)snprintf(cs, sizeof(cs), "%d", code)},
        {"reason", 6, reason ? reason : "", reason ? strlen(reason) : 0},
        {"in-reply-to", 11, cmd, cmd_len},
    };

    lh_m_inc(LH_M_LHTTP_ERRORS);
    return lh_reply_send(c, "error", h, cmd ? 3 : 2, NULL, 0);
}

int lh_reply_error_to(lh_conn_t *c, const lh_msg_t *m, int code, const char *reason)
{
    return lh_reply_error(c, m ? m->m->command : NULL, m ? m->m->command_len : 0, code,
                          reason);
}
