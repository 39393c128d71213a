/*
 * Multipart messages: the offset list of a `multipart:` header and the parts it
 * delimits. See lh_multipart.h and PROTOCOL.md. The offsets come from the client, so
 * every one is checked before it is used as an index: digits only, no overflow, inside
 * the body, starting at 0, strictly increasing, and no more of them than the limit.
 */
#include "lh_multipart.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define TOKEN_SHOWN 24 /* bytes of a bad offset quoted in a reason */

/* Walks an offset list. */
typedef struct {
    const char *pos, *end;
    size_t body_len;
    size_t prev;  /* the offset read last */
    size_t count; /* offsets read so far */
    size_t max_parts;
} scan_t;

static int visible(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Copies up to TOKEN_SHOWN bytes of a client's token into out (NUL-terminated), with
 * anything but visible ASCII shown as '?', so a reason is always a valid header value. */
static void show_token(char *out, const char *t, size_t len)
{
    size_t n = len > TOKEN_SHOWN ? TOKEN_SHOWN : len, i;

    for (i = 0; i < n; i++)
        out[i] = visible((unsigned char)t[i]) && t[i] != '"' ? t[i] : '?';
    if (n < len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/*
 * Reads the next offset of the list into *off. Returns 1, 0 at the end of the list, or -1
 * with the problem written to reason (when it is not NULL).
 */
static int next_offset(scan_t *s, size_t *off, char *reason, size_t rl)
{
    char shown[TOKEN_SHOWN + 4];
    const char *t, *c;
    size_t v = 0, tl;
    int big = 0;

    while (s->pos < s->end && blank(*s->pos))
        s->pos++;
    if (s->pos == s->end)
        return 0;
    t = s->pos;
    while (s->pos < s->end && !blank(*s->pos))
        s->pos++;
    tl = (size_t)(s->pos - t);
    show_token(shown, t, tl);
    for (c = t; c < s->pos; c++) {
        size_t d = (size_t)(unsigned char)*c - '0';

        if (*c < '0' || *c > '9') {
            if (reason)
                snprintf(reason, rl, "multipart offset \"%s\" is not a decimal number", shown);
            return -1;
        }
        /* Stop accumulating past the body length: no overflow, whatever the length. */
        if (big || v > (SIZE_MAX - d) / 10 || v * 10 + d > s->body_len)
            big = 1;
        else
            v = v * 10 + d;
    }
    if (tl > 1 && t[0] == '0') {
        if (reason)
            snprintf(reason, rl, "multipart offset \"%s\" has a leading zero", shown);
        return -1;
    }
    if (big || v >= s->body_len) {
        if (reason)
            snprintf(reason, rl, "multipart offset %s is not inside the body (%zu bytes)",
                     shown, s->body_len);
        return -1;
    }
    if (s->count == 0 && v != 0) {
        if (reason)
            snprintf(reason, rl, "the first multipart offset must be 0, not %zu", v);
        return -1;
    }
    if (s->count > 0 && v <= s->prev) {
        if (reason) {
            if (v == s->prev)
                snprintf(reason, rl, "multipart offset %zu appears twice", v);
            else
                snprintf(reason, rl, "multipart offsets out of order: %zu after %zu", v,
                         s->prev);
        }
        return -1;
    }
    if (s->max_parts != 0 && s->count == s->max_parts) {
        if (reason)
            snprintf(reason, rl, "more than %zu multipart parts (limits.max_multipart_parts)",
                     s->max_parts);
        return -1;
    }
    s->prev = v;
    s->count++;
    *off = v;
    return 1;
}

/*
 * Parses one part, p[0..len): header lines (like LHTTP's: key ':' value, CRLF or LF), the
 * empty line, then the part body. Returns 0, or -1 with *why set to a static text.
 */
static int parse_part(const char *p, size_t len, size_t max_line, lh_multipart_part_t *out,
                      const char **why)
{
    size_t i = 0;

    out->num_headers = 0;
    for (;;) {
        const char *lf = memchr(p + i, '\n', len - i), *c, *k, *v, *ve, *eol;

        if (lf == NULL) {
            *why = "has no empty line after its headers";
            return -1;
        }
        eol = (lf > p + i && lf[-1] == '\r') ? lf - 1 : lf;
        if (eol == p + i) {
            out->body = lf + 1;
            out->body_len = len - (size_t)(lf + 1 - p);
            return 0;
        }
        if (max_line != 0 && (size_t)(eol - (p + i)) > max_line) {
            *why = "has a header line longer than limits.max_header_line";
            return -1;
        }
        for (c = p + i; c < eol; c++) {
            if (*c == '\0' || *c == '\r') {
                *why = *c == '\0' ? "has a NUL byte in a header line"
                                  : "has a CR not followed by LF in a header line";
                return -1;
            }
        }
        for (k = c = p + i; c < eol && *c != ':'; c++) {
            if (!visible((unsigned char)*c)) {
                *why = "has an invalid character in a header key";
                return -1;
            }
        }
        if (c == eol) {
            *why = "has a header line without ':'";
            return -1;
        }
        if (c == k) {
            *why = "has an empty header key";
            return -1;
        }
        if (out->num_headers == LH_MULTIPART_HEADERS_MAX) {
            *why = "has more than 32 headers";
            return -1;
        }
        for (v = c + 1; v < eol && blank(*v); v++)
            ;
        for (ve = eol; ve > v && blank(ve[-1]); ve--)
            ;
        out->headers[out->num_headers].key = k;
        out->headers[out->num_headers].key_len = (size_t)(c - k);
        out->headers[out->num_headers].value = v;
        out->headers[out->num_headers].value_len = (size_t)(ve - v);
        out->num_headers++;
        i = (size_t)(lf + 1 - p);
    }
}

long lh_multipart_check(const char *list, size_t list_len, const char *body, size_t body_len,
                        const lh_multipart_limits_t *lim, char *reason, size_t reasonlen)
{
    scan_t s = {list, list + list_len, body_len, 0, 0, lim ? lim->max_parts : 0};
    size_t max_line = lim ? lim->max_line : 0, start = 0, off;
    lh_multipart_part_t part;
    const char *why;
    char dummy[LH_MULTIPART_REASON_MAX];
    int r;

    if (reason == NULL || reasonlen == 0) {
        reason = dummy;
        reasonlen = sizeof(dummy);
    }
    reason[0] = '\0';
    /* Each offset ends the part before it; the end of the body ends the last one. */
    while ((r = next_offset(&s, &off, reason, reasonlen)) != 0) {
        if (r < 0)
            return -1;
        if (s.count > 1 &&
            parse_part(body + start, off - start, max_line, &part, &why) != 0) {
            snprintf(reason, reasonlen, "multipart part %zu (bytes %zu to %zu) %s",
                     s.count - 2, start, off - 1, why);
            return -1;
        }
        start = off;
    }
    if (s.count == 0) {
        snprintf(reason, reasonlen, "the multipart header lists no offset");
        return -1;
    }
    if (parse_part(body + start, body_len - start, max_line, &part, &why) != 0) {
        snprintf(reason, reasonlen, "multipart part %zu (bytes %zu to %zu) %s", s.count - 1,
                 start, body_len - 1, why);
        return -1;
    }
    return (long)s.count;
}

int lh_multipart_part(const char *list, size_t list_len, const char *body, size_t body_len,
                      size_t i, lh_multipart_part_t *out)
{
    scan_t s = {list, list + list_len, body_len, 0, 0, 0};
    size_t start = 0, end = body_len, off;
    const char *why;
    int r;

    if (i >= SIZE_MAX - 2)
        return -1;
    while ((r = next_offset(&s, &off, NULL, 0)) != 0) {
        if (r < 0)
            return -1;
        if (s.count == i + 1) {
            start = off;
        } else if (s.count == i + 2) {
            end = off;
            break;
        }
    }
    if (s.count < i + 1)
        return -1;
    return parse_part(body + start, end - start, 0, out, &why);
}
