/*
 * LHTTP codec: parse and serialize "LHTTP/1.0 <command>\r\n" + "key:value\r\n"... +
 * "\r\n" + body. Pure and zero-copy: a parsed message points into the caller's buffer.
 * See PROTOCOL.md for the grammar and the error replies.
 */
#ifndef LH_LHTTP_H
#define LH_LHTTP_H

#include "lh_common.h"

#define LH_LHTTP_PROTO "LHTTP/1.0"
/* Upper bound of the header array; lh_lhttp_limits_t.max_headers must not exceed it. */
#define LH_LHTTP_HEADERS_CAP 256

/* Parse errors (negative). */
#define LH_LHTTP_EINVAL (-1)    /* malformed: reply code 400 */
#define LH_LHTTP_EHEADERS (-2)  /* more than max_headers headers: reply code 431 */
#define LH_LHTTP_ELINE (-3)     /* a command or header line over max_line: reply code 431 */

typedef struct {
    const char *key; /* as sent; compare case-insensitively */
    size_t key_len;
    const char *value; /* optional white space around it trimmed; may contain ':' */
    size_t value_len;
} lh_lhttp_header_t;

typedef struct {
    size_t max_headers; /* <= LH_LHTTP_HEADERS_CAP */
    size_t max_line;    /* longest command or header line, without its line end */
} lh_lhttp_limits_t;

typedef struct {
    const char *command;
    size_t command_len;
    lh_lhttp_header_t headers[LH_LHTTP_HEADERS_CAP];
    size_t num_headers;
    const char *body; /* never NULL after a successful parse; may be empty */
    size_t body_len;
} lh_lhttp_msg_t;

/*
 * Parses the whole message buf[0..len). Returns 0, or LH_LHTTP_EINVAL / EHEADERS / ELINE
 * with *reason set to a static human-readable text. Line ends are CRLF or bare LF. The
 * body starts after the first empty line and is taken verbatim (it may contain
 * anything, "publish:x\r\n\r\n" included); a message that ends after its headers, with
 * or without the empty line, has an empty body. A header line without ':' or with an
 * empty key is invalid; an empty value is allowed. The first line must be exactly
 * "LHTTP/1.0", one space and a valid command; a NUL, or a CR not followed by LF, in any
 * line is EINVAL. lim NULL means LH_LHTTP_HEADERS_CAP headers and no line limit; a
 * max_headers above the cap is clamped to it. reason may be NULL.
 */
int lh_lhttp_parse(const char *buf, size_t len, const lh_lhttp_limits_t *lim,
                   lh_lhttp_msg_t *msg, const char **reason);

/* The value of the first header named key (case-insensitive), or NULL; *len set. */
const char *lh_lhttp_header(const lh_lhttp_msg_t *msg, const char *key, size_t *len);

/* The reply code for a parse error (400 or 431). */
int lh_lhttp_error_code(int err);

/*
 * Serializes a message into out (capacity cap) with CRLF line ends and the empty line
 * always present. Returns the full length needed; writes only when it fits (like
 * snprintf, but without a NUL). Headers with key/value pairs from the array.
 */
size_t lh_lhttp_serialize(char *out, size_t cap, const char *command, size_t command_len,
                          const lh_lhttp_header_t *headers, size_t num_headers,
                          const char *body, size_t body_len);

/* 1 when the command is a valid token: 1..64 visible ASCII bytes, no space or ':'. */
int lh_lhttp_command_valid(const char *cmd, size_t len);

/*
 * 1 when a header key is valid (visible ASCII, no ':' or space) and a value can be sent
 * as is: no CR, LF or NUL, and no space or tab at either end (the receiver trims them).
 */
int lh_lhttp_header_valid(const char *key, size_t key_len, const char *value, size_t value_len);

#endif
