/*
 * LHTTP codec. The parser walks the message once, line by line, and never copies or
 * allocates: the command, header keys and values and the body point into the caller's
 * buffer. The grammar is in PROTOCOL.md.
 */
#include "lh_lhttp.h"

#include <stdint.h>
#include <string.h>

#define PROTO_LEN (sizeof(LH_LHTTP_PROTO) - 1)
#define COMMAND_MAX 64

static int visible(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

/*
 * Finds the line that starts at p (before end). Sets *eol to the end of its content
 * (before CRLF or LF) and returns the start of the next line, which is end when the
 * line is the last one and has no line end. Lines longer than max_line give ELINE; a
 * NUL or a CR that is not part of the line end gives EINVAL. *err is 0 on success.
 */
static const char *next_line(const char *p, const char *end, size_t max_line,
                             const char **eol, int *err, const char **reason)
{
    size_t avail = (size_t)(end - p), window = avail, n;
    const char *lf, *c;

    /* Look no further than the longest allowed line plus CRLF. */
    if (max_line < SIZE_MAX - 2 && window > max_line + 2)
        window = max_line + 2;
    lf = memchr(p, '\n', window);
    if (lf == NULL) {
        if (window < avail) {
            *err = LH_LHTTP_ELINE;
            *reason = "line too long";
            return NULL;
        }
        *eol = end;
    } else {
        *eol = (lf > p && lf[-1] == '\r') ? lf - 1 : lf;
    }
    n = (size_t)(*eol - p);
    if (n > max_line) {
        *err = LH_LHTTP_ELINE;
        *reason = "line too long";
        return NULL;
    }
    for (c = p; c < *eol; c++) {
        if (*c == '\0' || *c == '\r') {
            *err = LH_LHTTP_EINVAL;
            *reason = *c == '\0' ? "NUL byte in a line" : "CR not followed by LF";
            return NULL;
        }
    }
    *err = 0;
    return lf == NULL ? end : lf + 1;
}

int lh_lhttp_command_valid(const char *cmd, size_t len)
{
    size_t i;

    if (len == 0 || len > COMMAND_MAX)
        return 0;
    for (i = 0; i < len; i++)
        if (!visible((unsigned char)cmd[i]) || cmd[i] == ':')
            return 0;
    return 1;
}

int lh_lhttp_header_valid(const char *key, size_t key_len, const char *value, size_t value_len)
{
    size_t i;

    if (key_len == 0)
        return 0;
    for (i = 0; i < key_len; i++)
        if (!visible((unsigned char)key[i]) || key[i] == ':')
            return 0;
    for (i = 0; i < value_len; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            return 0;
    /* White space at either end would be trimmed by the receiver. */
    if (value_len > 0 && (value[0] == ' ' || value[0] == '\t' ||
                          value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
        return 0;
    return 1;
}

/* Splits the header line [p, eol) into h. Returns 0, or EINVAL with *reason set. */
static int parse_header(const char *p, const char *eol, lh_lhttp_header_t *h,
                        const char **reason)
{
    const char *c = p, *v, *ve;

    while (c < eol && *c != ':') {
        if (!visible((unsigned char)*c)) {
            *reason = "invalid character in a header key";
            return LH_LHTTP_EINVAL;
        }
        c++;
    }
    if (c == eol) {
        *reason = "header line without ':'";
        return LH_LHTTP_EINVAL;
    }
    if (c == p) {
        *reason = "empty header key";
        return LH_LHTTP_EINVAL;
    }
    v = c + 1;
    ve = eol;
    while (v < ve && (*v == ' ' || *v == '\t'))
        v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
    h->key = p;
    h->key_len = (size_t)(c - p);
    h->value = v;
    h->value_len = (size_t)(ve - v);
    return 0;
}

int lh_lhttp_parse(const char *buf, size_t len, const lh_lhttp_limits_t *lim,
                   lh_lhttp_msg_t *msg, const char **reason)
{
    const char *end = buf + len, *p = buf, *eol, *next;
    size_t max_headers = LH_LHTTP_HEADERS_CAP, max_line = SIZE_MAX;
    const char *dummy;
    int err;

    if (reason == NULL)
        reason = &dummy;
    if (lim != NULL) {
        if (lim->max_headers < max_headers)
            max_headers = lim->max_headers;
        max_line = lim->max_line;
    }
    msg->num_headers = 0;
    msg->command = NULL;
    msg->command_len = 0;
    msg->body = end;
    msg->body_len = 0;

    if (len == 0) {
        *reason = "empty message";
        return LH_LHTTP_EINVAL;
    }
    next = next_line(p, end, max_line, &eol, &err, reason);
    if (next == NULL)
        return err;
    if ((size_t)(eol - p) < PROTO_LEN + 1 || memcmp(p, LH_LHTTP_PROTO, PROTO_LEN) != 0 ||
        p[PROTO_LEN] != ' ') {
        *reason = "first line is not \"LHTTP/1.0 <command>\"";
        return LH_LHTTP_EINVAL;
    }
    msg->command = p + PROTO_LEN + 1;
    msg->command_len = (size_t)(eol - msg->command);
    if (!lh_lhttp_command_valid(msg->command, msg->command_len)) {
        *reason = "invalid command";
        return LH_LHTTP_EINVAL;
    }

    for (p = next; p < end; p = next) {
        next = next_line(p, end, max_line, &eol, &err, reason);
        if (next == NULL)
            return err;
        if (eol == p) {
            /* The empty line: the body is everything after it. */
            msg->body = next;
            msg->body_len = (size_t)(end - next);
            return 0;
        }
        if (msg->num_headers == max_headers) {
            *reason = "too many headers";
            return LH_LHTTP_EHEADERS;
        }
        err = parse_header(p, eol, &msg->headers[msg->num_headers], reason);
        if (err != 0)
            return err;
        msg->num_headers++;
    }
    return 0;
}

const char *lh_lhttp_header(const lh_lhttp_msg_t *msg, const char *key, size_t *len)
{
    size_t i;

    for (i = 0; i < msg->num_headers; i++) {
        const lh_lhttp_header_t *h = &msg->headers[i];

        if (lh_strieq(h->key, h->key_len, key)) {
            if (len != NULL)
                *len = h->value_len;
            return h->value;
        }
    }
    if (len != NULL)
        *len = 0;
    return NULL;
}

int lh_lhttp_error_code(int err)
{
    switch (err) {
    case LH_LHTTP_EHEADERS:
    case LH_LHTTP_ELINE:
        return 431;
    default:
        return 400;
    }
}

/* Appends n bytes at *pos when they fit; always advances *pos (saturating). */
static void put(char *out, size_t cap, size_t *pos, const char *s, size_t n)
{
    if (*pos <= cap && n <= cap - *pos && n > 0)
        memcpy(out + *pos, s, n);
    *pos = n > SIZE_MAX - *pos ? SIZE_MAX : *pos + n;
}

size_t lh_lhttp_serialize(char *out, size_t cap, const char *command, size_t command_len,
                          const lh_lhttp_header_t *headers, size_t num_headers,
                          const char *body, size_t body_len)
{
    size_t need = 0, pos = 0, i;

    /* First the length, so that nothing is written when it does not fit. */
    need = PROTO_LEN + 1 + command_len + 2;
    for (i = 0; i < num_headers && need != SIZE_MAX; i++) {
        size_t h = headers[i].key_len + 1 + headers[i].value_len + 2;

        need = h > SIZE_MAX - need ? SIZE_MAX : need + h;
    }
    need = need > SIZE_MAX - 2 ? SIZE_MAX : need + 2;
    need = body_len > SIZE_MAX - need ? SIZE_MAX : need + body_len;
    if (need > cap || out == NULL)
        return need;

    put(out, cap, &pos, LH_LHTTP_PROTO " ", PROTO_LEN + 1);
    put(out, cap, &pos, command, command_len);
    put(out, cap, &pos, "\r\n", 2);
    for (i = 0; i < num_headers; i++) {
        put(out, cap, &pos, headers[i].key, headers[i].key_len);
        put(out, cap, &pos, ":", 1);
        put(out, cap, &pos, headers[i].value, headers[i].value_len);
        put(out, cap, &pos, "\r\n", 2);
    }
    put(out, cap, &pos, "\r\n", 2);
    put(out, cap, &pos, body, body_len);
    return pos;
}
