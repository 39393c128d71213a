/*
 * The client side of the WebSocket opening handshake (RFC 6455 section 4.1): the
 * upgrade request, and the checks a client must make of the server's answer.
 * Pure except for lhc_handshake_key(), which reads getrandom(2).
 */
#include "lhttpc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>

#include "lh_http.h"
#include "lh_ws.h"

/* Fills buf with len bytes from getrandom(2). Returns 0, or -1 with errno set. */
static int random_bytes(uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(buf, len, 0);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int lhc_handshake_key(char key[25])
{
    uint8_t raw[16];

    if (random_bytes(raw, sizeof(raw)) < 0)
        return -1;
    EVP_EncodeBlock((unsigned char *)key, raw, (int)sizeof(raw));
    key[24] = '\0';
    return 0;
}

/* 1 when s holds CR or LF, which would let a value inject header lines. */
static int has_crlf(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") != NULL;
}

int lhc_handshake_request(char *out, size_t cap, const lhc_url_t *u, const char *key,
                          const char *origin, const char *protocols, const char *token)
{
    int n;

    if (has_crlf(origin) || has_crlf(protocols) || has_crlf(token))
        return -1;
    n = snprintf(out, cap,
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "%s%s%s"
                 "%s%s%s"
                 "%s%s%s"
                 "User-Agent: lhttpc/" LH_VERSION "\r\n"
                 "\r\n",
                 u->target, u->hostport, key, origin ? "Origin: " : "", origin ? origin : "",
                 origin ? "\r\n" : "", protocols ? "Sec-WebSocket-Protocol: " : "",
                 protocols ? protocols : "", protocols ? "\r\n" : "",
                 token ? "Authorization: Bearer " : "", token ? token : "",
                 token ? "\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return n;
}

size_t lhc_handshake_head_len(const char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < len && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Copies s[0..len) into out (cap), replacing control bytes, always NUL-terminated. */
static void copy_printable(char *out, size_t cap, const char *s, size_t len)
{
    size_t i;

    if (cap == 0)
        return;
    if (len >= cap)
        len = cap - 1;
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];

        out[i] = (ch < ' ' || ch == 0x7f) ? '?' : (char)ch;
    }
    out[len] = '\0';
}

/* 1 when the comma-separated list offered holds the token tok[0..len). */
static int list_has(const char *offered, const char *tok, size_t len)
{
    const char *p = offered;

    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        const char *item = lhc_trim(p, &n);

        if (n == len && memcmp(item, tok, len) == 0)
            return 1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

int lhc_handshake_check(const char *head, size_t head_len, const char *key,
                        const char *protocols, char *proto, size_t proto_cap, char *err,
                        size_t err_cap)
{
    const char *end = head + head_len, *line, *eol;
    size_t line_len;
    int status = 0, got_upgrade = 0, got_connection = 0, got_accept = 0;
    char expect[29];

    if (proto_cap > 0)
        proto[0] = '\0';
    eol = memchr(head, '\n', head_len);
    if (eol == NULL)
        eol = end;
    line_len = (size_t)(eol - head);
    if (line_len > 0 && head[line_len - 1] == '\r')
        line_len--;
    if (line_len >= 12 && memcmp(head, "HTTP/1.", 7) == 0 && head[8] == ' ' &&
        head[9] >= '1' && head[9] <= '5' && head[10] >= '0' && head[10] <= '9' &&
        head[11] >= '0' && head[11] <= '9' && (line_len == 12 || head[12] == ' '))
        status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    if (status != 101) {
        char sl[256];

        copy_printable(sl, sizeof(sl), head, line_len);
        snprintf(err, err_cap, "handshake refused: %s", sl);
        return -1;
    }
    if (lh_ws_accept_key(key, strlen(key), expect) < 0) {
        snprintf(err, err_cap, "internal error: bad Sec-WebSocket-Key");
        return -1;
    }
    for (line = eol + 1; line < end; line = eol + 1) {
        const char *colon, *name, *value;
        size_t name_len, value_len;

        eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        line_len = (size_t)(eol - line);
        if (line_len > 0 && line[line_len - 1] == '\r')
            line_len--;
        if (line_len == 0)
            break;
        colon = memchr(line, ':', line_len);
        if (colon == NULL || colon == line) {
            snprintf(err, err_cap, "malformed header line in the server's 101 answer");
            return -1;
        }
        name = line;
        name_len = (size_t)(colon - line);
        value_len = line_len - name_len - 1;
        value = lhc_trim(colon + 1, &value_len);
        if (lh_strieq(name, name_len, "Upgrade")) {
            got_upgrade |= lh_http_has_token(value, value_len, "websocket");
        } else if (lh_strieq(name, name_len, "Connection")) {
            got_connection |= lh_http_has_token(value, value_len, "upgrade");
        } else if (lh_strieq(name, name_len, "Sec-WebSocket-Accept")) {
            if (value_len != 28 || memcmp(value, expect, 28) != 0) {
                snprintf(err, err_cap, "wrong Sec-WebSocket-Accept in the server's answer");
                return -1;
            }
            got_accept = 1;
        } else if (lh_strieq(name, name_len, "Sec-WebSocket-Extensions")) {
            snprintf(err, err_cap, "the server chose an extension that was not offered");
            return -1;
        } else if (lh_strieq(name, name_len, "Sec-WebSocket-Protocol")) {
            if (protocols == NULL || value_len == 0 || !list_has(protocols, value, value_len)) {
                snprintf(err, err_cap, "the server chose a subprotocol that was not offered");
                return -1;
            }
            copy_printable(proto, proto_cap, value, value_len);
        }
    }
    if (!got_upgrade || !got_connection) {
        snprintf(err, err_cap, "the server's 101 answer lacks Upgrade: websocket or "
                               "Connection: Upgrade");
        return -1;
    }
    if (!got_accept) {
        snprintf(err, err_cap, "the server's 101 answer lacks Sec-WebSocket-Accept");
        return -1;
    }
    return 0;
}
