/*
 * HTTP/1.x request-head parser (RFC 9112) and small header helpers. Pure: pointers into
 * the caller's buffer, no allocation, no I/O, no global state.
 *
 * The parser makes one pass over the bytes and decides at each byte, so an input that
 * is refused is refused as soon as the offending byte arrives, and a prefix of any input
 * gives either LH_PARSE_AGAIN or the same answer as the whole. It never looks at bytes
 * past the head limit: whatever is there makes the head too large.
 */
#include "lh_http.h"

#include <arpa/inet.h>
#include <limits.h>
#include <string.h>

#define C_TCHAR 1 /* RFC 9110 tchar: methods and field names */
#define C_VCHAR 2 /* visible ASCII: request-target, version */
#define C_FIELD 4 /* field-value bytes: HTAB, SP, VCHAR, obs-text */

static const unsigned char cls[256] = {
    /* 00 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0,
    /* 10 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 20 */ 4, 7, 6, 7, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6,
    /* 30 */ 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6,
    /* 40 */ 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    /* 50 */ 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 7, 7,
    /* 60 */ 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    /* 70 */ 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 7, 6, 7, 0,
    /* 80 */ 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    /* 90 */ 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    /* a0 */ 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    /* b0 */ 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    /* c0 */ 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    /* d0 */ 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    /* e0 */ 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    /* f0 */ 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

static int fail(lh_http_request_t *req, int status, const char *reason)
{
    req->status = status;
    req->reason = reason;
    return LH_PARSE_ERROR;
}

/*
 * The scan reached end, the last byte it may look at, inside the head. If the buffer
 * holds more, the head is longer than the limit; otherwise wait for more bytes.
 */
static int incomplete(size_t end, size_t len, lh_http_request_t *req)
{
    if (end < len)
        return fail(req, 431, "request head too large");
    return LH_PARSE_AGAIN;
}

/*
 * A request-line scan stopped at its bound i = min(lmax, end). Returns 414 when the
 * line's content goes past lmax, the result of incomplete() at end, or 0 when p[i] is
 * a line end that the grammar should look at.
 */
static int line_bound(const unsigned char *p, size_t i, size_t lmax, size_t end, size_t len,
                      lh_http_request_t *req)
{
    if (i == lmax && i < len && p[i] != '\r' && p[i] != '\n')
        return fail(req, 414, "request line too long");
    if (i == end)
        return incomplete(end, len, req);
    return 0;
}

/* The checks that need the whole head (RFC 9112 3.2): exactly one valid Host field in
 * HTTP/1.1, at most one in HTTP/1.0. Sets req->host unless the target gave it. Returns
 * n, or LH_PARSE_ERROR. */
static int head_done(lh_http_request_t *req, int n)
{
    const lh_http_header_t *h;

    if (lh_http_count_header(req, "host") > 1)
        return fail(req, 400, "more than one Host header field");
    h = lh_http_find_header(req, "host");
    if (h == NULL && req->minor_version == 1)
        return fail(req, 400, "missing Host header field");
    if (h != NULL && !lh_http_valid_host(h->value, h->value_len))
        return fail(req, 400, "invalid Host header field");
    if (h != NULL && req->host == NULL) {
        req->host = h->value;
        req->host_len = h->value_len;
    }
    return n;
}

static int is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* RFC 3986 unreserved and sub-delims: the bytes of a reg-name besides "%" HEXDIG HEXDIG. */
static int is_regname(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
           (c != 0 && strchr("-._~!$&'()*+,;=", c) != NULL);
}

/* The inside of an IP-literal: IPv6address or IPvFuture (RFC 3986 3.2.2). */
static int ip_literal(const char *s, size_t n)
{
    char a[INET6_ADDRSTRLEN];
    unsigned char bin[16];
    size_t i = 1;

    if (n > 0 && (s[0] == 'v' || s[0] == 'V')) {
        /* "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ) */
        while (i < n && is_hex((unsigned char)s[i]))
            i++;
        if (i == 1 || i == n || s[i] != '.' || i + 1 == n)
            return 0;
        for (i++; i < n; i++)
            if (s[i] != ':' && !is_regname((unsigned char)s[i]))
                return 0;
        return 1;
    }
    if (n == 0 || n >= sizeof(a))
        return 0;
    memcpy(a, s, n);
    a[n] = '\0';
    return inet_pton(AF_INET6, a, bin) == 1;
}

/* The method's LH_HTTP_* id. */
static int method_id(const char *m, size_t n)
{
    static const struct {
        const char *name;
        size_t len;
        int id;
    } known[] = {{"GET", 3, LH_HTTP_GET}, {"HEAD", 4, LH_HTTP_HEAD}, {"POST", 4, LH_HTTP_POST},
                 {"OPTIONS", 7, LH_HTTP_OPTIONS}};

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (n == known[i].len && memcmp(m, known[i].name, n) == 0)
            return known[i].id;
    return LH_HTTP_OTHER;
}

int lh_http_path_is(const lh_http_request_t *req, const char *p)
{
    size_t n = strlen(p);

    return req->path_len == n && memcmp(req->path, p, n) == 0;
}

int lh_http_valid_host(const char *s, size_t n)
{
    size_t i = 0;

    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);

        if (close == NULL || !ip_literal(s + 1, (size_t)(close - s) - 1))
            return 0;
        i = (size_t)(close - s) + 1;
    } else {
        while (i < n && s[i] != ':') {
            if (s[i] == '%') {
                if (n - i < 3 || !is_hex((unsigned char)s[i + 1]) ||
                    !is_hex((unsigned char)s[i + 2]))
                    return 0;
                i += 3;
            } else if (is_regname((unsigned char)s[i])) {
                i++;
            } else {
                return 0;
            }
        }
    }
    if (i == n)
        return 1;
    if (s[i] != ':')
        return 0;
    for (i++; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* 1 when t[0..n) starts with the lower-case prefix p (ASCII case-insensitive). */
static int has_prefix(const char *t, size_t n, const char *p)
{
    size_t k = strlen(p);

    return n >= k && lh_strieq(t, k, p);
}

/*
 * Sorts the request-target into its form (RFC 9112 3.2) and sets path and query; for
 * the absolute-form, host is its authority. Returns 0, or LH_PARSE_ERROR.
 */
static int parse_target(lh_http_request_t *req)
{
    const char *t = req->target, *p = t, *q;
    size_t n = req->target_len, skip = 0;

    req->host = NULL;
    req->host_len = 0;
    req->form = LH_HTTP_ORIGIN_FORM;
    if (n == 1 && t[0] == '*') {
        /* RFC 9112 3.2.4: only OPTIONS applies to the server as a whole. */
        if (req->method_id != LH_HTTP_OPTIONS)
            return fail(req, 400, "request target \"*\" is for OPTIONS only");
        req->form = LH_HTTP_ASTERISK_FORM;
        req->path = t;
        req->path_len = 1;
        req->query = NULL;
        req->query_len = 0;
        return 0;
    }
    if (t[0] != '/') {
        const char *a;

        if (has_prefix(t, n, "http://"))
            skip = 7;
        else if (has_prefix(t, n, "https://"))
            skip = 8;
        else
            return fail(req, 400, "invalid request target");
        a = t + skip;
        p = a;
        while (p < t + n && *p != '/' && *p != '?')
            p++;
        /* RFC 9110 4.2.1 and 4.2.4: an http URI has a host, and no userinfo. */
        if (p == a || *a == ':' || !lh_http_valid_host(a, (size_t)(p - a)))
            return fail(req, 400, "invalid authority in request target");
        req->form = LH_HTTP_ABSOLUTE_FORM;
        req->host = a;
        req->host_len = (size_t)(p - a);
    }
    n -= (size_t)(p - t);
    q = memchr(p, '?', n);
    req->path = p;
    if (q) {
        req->path_len = (size_t)(q - p);
        req->query = q + 1;
        req->query_len = n - req->path_len - 1;
    } else {
        req->path_len = n;
        req->query = NULL;
        req->query_len = 0;
    }
    if (req->path_len == 0) {
        /* "http://host" or "http://host?q": the path is "/" (RFC 9112 3.2.1). */
        req->path = "/";
        req->path_len = 1;
    }
    return 0;
}

/* "HTTP/1.0" or "HTTP/1.1" sets the minor version; another HTTP/d.d is 505. */
static int parse_version(const unsigned char *v, size_t n, lh_http_request_t *req)
{
    if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return fail(req, 400, "invalid HTTP version");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return fail(req, 505, "HTTP version not supported");
    req->minor_version = v[7] - '0';
    return 0;
}

int lh_http_parse_request(const char *buf, size_t len, const lh_http_limits_t *lim,
                          lh_http_request_t *req)
{
    const unsigned char *p = (const unsigned char *)buf;
    size_t hmax = lim->max_header_bytes < INT_MAX ? lim->max_header_bytes : INT_MAX;
    size_t max_headers = lim->max_headers < LH_HTTP_HEADERS_CAP ? lim->max_headers
                                                                 : LH_HTTP_HEADERS_CAP;
    size_t end = len < hmax ? len : hmax; /* bytes of the head we may look at */
    size_t i = 0, s, lmax, lb;
    int r;

    req->num_headers = 0;
    req->status = 0;
    req->reason = NULL;

    /* RFC 9112 2.2: ignore empty lines before the request line (a stray CRLF after a
     * body). They count towards the head limit. */
    for (;;) {
        if (i == end)
            return incomplete(end, len, req);
        if (p[i] == '\n') {
            i++;
            continue;
        }
        if (p[i] != '\r')
            break;
        if (i + 1 == end)
            return incomplete(end, len, req);
        if (p[i + 1] != '\n')
            return fail(req, 400, "bare CR");
        i += 2;
    }

    /* Request line: content bytes at positions >= lmax make it too long. */
    lmax = lim->max_line < len - i ? i + lim->max_line : len;
    lb = lmax < end ? lmax : end;

    s = i;
    while (i < lb && (cls[p[i]] & C_TCHAR))
        i++;
    if (i == lb && (r = line_bound(p, i, lmax, end, len, req)) != 0)
        return r;
    if (p[i] != ' ' || i == s)
        return fail(req, 400, "invalid method");
    req->method = buf + s;
    req->method_len = i - s;
    req->method_id = method_id(req->method, req->method_len);
    i++;

    s = i;
    while (i < lb && (cls[p[i]] & C_VCHAR))
        i++;
    if (i == lb && (r = line_bound(p, i, lmax, end, len, req)) != 0)
        return r;
    if (p[i] != ' ' || i == s)
        return fail(req, 400, "invalid request target");
    req->target = buf + s;
    req->target_len = i - s;
    if (parse_target(req) != 0)
        return LH_PARSE_ERROR;
    i++;

    s = i;
    while (i < lb && (cls[p[i]] & C_VCHAR) && i - s < 8)
        i++;
    if (i == lb && (r = line_bound(p, i, lmax, end, len, req)) != 0)
        return r;
    if (p[i] != '\r' && p[i] != '\n')
        return fail(req, 400, "invalid HTTP version");
    if (parse_version(p + s, i - s, req) != 0)
        return LH_PARSE_ERROR;
    if (p[i] == '\r') {
        if (++i == end)
            return incomplete(end, len, req);
        if (p[i] != '\n')
            return fail(req, 400, "bare CR");
    }
    i++;

    /* Header fields, up to the empty line. */
    for (;;) {
        lh_http_header_t *h;
        size_t e;

        if (i == end)
            return incomplete(end, len, req);
        if (p[i] == '\r') {
            if (i + 1 == end)
                return incomplete(end, len, req);
            if (p[i + 1] != '\n')
                return fail(req, 400, "bare CR");
            return head_done(req, (int)(i + 2));
        }
        if (p[i] == '\n')
            return head_done(req, (int)(i + 1));
        if (p[i] == ' ' || p[i] == '\t')
            return fail(req, 400, "obsolete line folding");
        if (req->num_headers == max_headers)
            return fail(req, 431, "too many header fields");

        s = i;
        while (i < end && (cls[p[i]] & C_TCHAR))
            i++;
        if (i == end)
            return incomplete(end, len, req);
        if (p[i] != ':') {
            if (p[i] == ' ' || p[i] == '\t')
                return fail(req, 400, "whitespace before colon");
            return fail(req, 400, "invalid header name");
        }
        if (i == s)
            return fail(req, 400, "empty header name");
        h = &req->headers[req->num_headers];
        h->name = buf + s;
        h->name_len = i - s;
        i++;

        while (i < end && (p[i] == ' ' || p[i] == '\t'))
            i++;
        s = i;
        while (i < end && (cls[p[i]] & C_FIELD))
            i++;
        if (i == end)
            return incomplete(end, len, req);
        e = i;
        if (p[i] == '\r') {
            if (++i == end)
                return incomplete(end, len, req);
            if (p[i] != '\n')
                return fail(req, 400, "bare CR");
        } else if (p[i] != '\n') {
            return fail(req, 400, "control character in header value");
        }
        i++;
        while (e > s && (p[e - 1] == ' ' || p[e - 1] == '\t'))
            e--;
        h->value = buf + s;
        h->value_len = e - s;
        req->num_headers++;
    }
}

size_t lh_http_count_header(const lh_http_request_t *req, const char *name)
{
    size_t n = 0;

    for (size_t k = 0; k < req->num_headers; k++)
        if (lh_strieq(req->headers[k].name, req->headers[k].name_len, name))
            n++;
    return n;
}

const lh_http_header_t *lh_http_find_header(const lh_http_request_t *req, const char *name)
{
    size_t k;

    for (k = 0; k < req->num_headers; k++)
        if (lh_strieq(req->headers[k].name, req->headers[k].name_len, name))
            return &req->headers[k];
    return NULL;
}

int lh_http_has_token(const char *value, size_t len, const char *token)
{
    return lh_http_token_at(value, len, token) != NULL;
}

const char *lh_http_token_at(const char *value, size_t len, const char *token)
{
    size_t i = 0;

    for (;;) {
        size_t s, e;

        while (i < len && (value[i] == ' ' || value[i] == '\t'))
            i++;
        s = i;
        while (i < len && value[i] != ',')
            i++;
        e = i;
        while (e > s && (value[e - 1] == ' ' || value[e - 1] == '\t'))
            e--;
        if (e > s && lh_strieq(value + s, e - s, token))
            return value + s;
        if (i == len)
            return NULL;
        i++; /* the comma */
    }
}

int lh_http_content_length(const lh_http_request_t *req, uint64_t *out)
{
    uint64_t first = 0;
    int found = 0;
    size_t k;

    *out = 0;
    for (k = 0; k < req->num_headers; k++) {
        const lh_http_header_t *h = &req->headers[k];
        uint64_t v = 0;
        size_t i;

        if (!lh_strieq(h->name, h->name_len, "content-length"))
            continue;
        if (h->value_len == 0)
            return LH_PARSE_ERROR;
        for (i = 0; i < h->value_len; i++) {
            unsigned d = (unsigned char)h->value[i] - (unsigned)'0';

            if (d > 9 || v > (UINT64_MAX - d) / 10)
                return LH_PARSE_ERROR;
            v = v * 10 + d;
        }
        if (found && v != first)
            return LH_PARSE_ERROR;
        first = v;
        found = 1;
    }
    *out = first;
    return found;
}

const char *lh_http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
