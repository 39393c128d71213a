/*
 * WebSocket (RFC 6455) framing: header parsing and building, masking, the handshake's
 * accept key, close payloads. Pure: no I/O, no allocation. Message-level state
 * (fragment sequencing, UTF-8 across fragments) is the caller's.
 */
#ifndef LH_WS_H
#define LH_WS_H

#include "lh_common.h"

enum {
    LH_WS_OP_CONT = 0x0,
    LH_WS_OP_TEXT = 0x1,
    LH_WS_OP_BINARY = 0x2,
    LH_WS_OP_CLOSE = 0x8,
    LH_WS_OP_PING = 0x9,
    LH_WS_OP_PONG = 0xA
};

/* Close codes used by lhttpd (see PROTOCOL.md). */
enum {
    LH_WS_CLOSE_NORMAL = 1000,
    LH_WS_CLOSE_GOING_AWAY = 1001,   /* server stopping, or drained after a reload: reconnect */
    LH_WS_CLOSE_PROTOCOL = 1002,
    LH_WS_CLOSE_UNSUPPORTED = 1003,
    LH_WS_CLOSE_NO_STATUS = 1005,    /* never sent on the wire */
    LH_WS_CLOSE_ABNORMAL = 1006,     /* never sent on the wire */
    LH_WS_CLOSE_INVALID_DATA = 1007, /* invalid UTF-8 in a text message or close reason */
    LH_WS_CLOSE_POLICY = 1008,       /* policy refusal: do not reconnect blindly */
    LH_WS_CLOSE_TOO_BIG = 1009,
    LH_WS_CLOSE_INTERNAL = 1011,
    LH_WS_CLOSE_SERVICE_RESTART = 1012, /* drained after a reload: reconnect now */
    LH_WS_CLOSE_TRY_AGAIN = 1013,    /* server overloaded (e.g. too many connections) */
    LH_WS_CLOSE_SLOW_CONSUMER = 4008, /* send queue over limits.send_queue_bytes */
    LH_WS_CLOSE_UNAUTHORIZED = 4401, /* token expired unrefreshed, or none in time */
    LH_WS_CLOSE_API = 4403           /* disconnected by the server API (its default) */
};

/* Largest frame header: 2 + 8 (length) + 4 (mask). */
#define LH_WS_MAX_HEADER 14

typedef struct {
    unsigned fin;        /* 1 on the last frame of a message */
    unsigned rsv;        /* the three RSV bits, as bits 2..0 */
    unsigned opcode;
    unsigned masked;
    uint8_t mask[4];
    uint64_t payload_len;
    size_t header_len;   /* bytes of header, including the mask */
} lh_ws_frame_t;

/*
 * Parses a frame header at buf[0..len). Returns the header length (> 0), LH_PARSE_AGAIN,
 * or LH_PARSE_ERROR with *close_code (1002 protocol error, 1009 too big) and *reason set.
 * Rejects: RSV bits (no extension is negotiated), reserved opcodes, fragmented or
 * over-125-byte control frames, non-minimal length encodings, a 64-bit length with
 * its top bit set, an unmasked frame when require_mask, and payload_len > max_payload
 * (1009). Each check is made as soon as the bytes it needs are present (before the rest
 * of the header arrives), and protocol errors (1002) come before 1009. On
 * LH_PARSE_AGAIN the contents of *f are unspecified.
 */
int lh_ws_parse_header(const uint8_t *buf, size_t len, int require_mask, uint64_t max_payload,
                       lh_ws_frame_t *f, uint16_t *close_code, const char **reason);

/*
 * Unmasks (or masks) data[0..len) in place with mask; offset is the position of data[0]
 * within the frame's payload, so a payload can be unmasked in pieces. Word-at-a-time.
 */
void lh_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

/*
 * Writes a frame header into out (LH_WS_MAX_HEADER bytes) and returns its length.
 * mask NULL = unmasked (server to client); otherwise the 4 mask bytes are written.
 */
size_t lh_ws_build_header(uint8_t *out, int fin, int opcode, uint64_t payload_len,
                          const uint8_t *mask);

/*
 * Computes Sec-WebSocket-Accept for the client's Sec-WebSocket-Key into out (28 chars
 * + NUL). Returns 0, or -1 when the key is not the base64 of exactly 16 bytes.
 */
int lh_ws_accept_key(const char *key, size_t key_len, char out[29]);

/*
 * 1 when a peer may send this code in a close frame: 1000-1003, 1007-1011, the
 * IANA-registered 1012-1014, and 3000-4999.
 */
int lh_ws_close_code_valid(unsigned code);

/*
 * Parses a close frame payload (already unmasked). Returns 0 with *code (1005 and an
 * empty *reason when the payload is empty), *reason and *reason_len set; or -1 with
 * *err_code = 1002 (length 1 or a code a peer may not send) or 1007 (reason is not
 * UTF-8).
 */
int lh_ws_parse_close(const uint8_t *p, size_t len, uint16_t *code, const char **reason,
                      size_t *reason_len, uint16_t *err_code);

#endif
