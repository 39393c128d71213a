/*
 * HTTP/1.x request-head parser: pure, zero-copy (pointers into the caller's buffer),
 * no allocation, no I/O. The caller re-parses from the start when more bytes arrive.
 */
#ifndef LH_HTTP_H
#define LH_HTTP_H

#include "lh_common.h"

/* Upper bound of the header array; lh_http_limits_t.max_headers must not exceed it. */
#define LH_HTTP_HEADERS_CAP 128

typedef struct {
    const char *name;
    size_t name_len;
    const char *value; /* optional white space around it already trimmed */
    size_t value_len;
} lh_http_header_t;

typedef struct {
    size_t max_line;         /* request line (without its line end) longer than this: 414 */
    size_t max_header_bytes; /* whole head (every line end and the final empty line
                                included; capped at INT_MAX) longer: 431 */
    size_t max_headers;      /* more header fields than this: 431 (capped at
                                LH_HTTP_HEADERS_CAP) */
} lh_http_limits_t;

/* The forms of request-target that an origin server accepts (RFC 9112 3.2). */
enum {
    LH_HTTP_ORIGIN_FORM,   /* "/path?query" */
    LH_HTTP_ABSOLUTE_FORM, /* "http://authority/path?query" (http or https) */
    LH_HTTP_ASTERISK_FORM  /* "*", OPTIONS only */
};

/* Methods the server knows by name (lh_http_request_t.method_id); any other valid
 * method is LH_HTTP_OTHER, its name in method. Methods are case-sensitive. */
enum {
    LH_HTTP_OTHER = 0,
    LH_HTTP_GET,
    LH_HTTP_HEAD,
    LH_HTTP_POST,
    LH_HTTP_OPTIONS
};

typedef struct {
    const char *method;
    size_t method_len;
    int method_id; /* LH_HTTP_GET ... or LH_HTTP_OTHER: classified once, by the parser */
    const char *target; /* request-target as sent */
    size_t target_len;
    int form;         /* LH_HTTP_*_FORM */
    const char *path; /* the target's path (without the scheme and authority of the
                         absolute-form), up to '?'; "*" for the asterisk-form; the
                         static string "/" when an absolute-form has an empty path */
    size_t path_len;
    const char *query; /* after '?', NULL when there is none */
    size_t query_len;
    const char *host;  /* the authority of an absolute-form target (it replaces Host,
                          RFC 9112 3.2.2), else the Host field's value; NULL when there
                          is neither (HTTP/1.0 without Host) */
    size_t host_len;
    int minor_version; /* HTTP/1.<minor>: 0 or 1 */
    lh_http_header_t headers[LH_HTTP_HEADERS_CAP];
    size_t num_headers;
    int status;         /* on LH_PARSE_ERROR: 400, 414, 431 or 505 (501 is left to the
                           caller, for what it does not implement) */
    const char *reason; /* on LH_PARSE_ERROR: a static, human-readable reason */
} lh_http_request_t;

/*
 * Parses the request head in buf[0..len). Returns the length of the head including
 * its final empty line (> 0), LH_PARSE_AGAIN if the head is incomplete but valid so
 * far and within limits, or LH_PARSE_ERROR with req->status and req->reason set.
 * Limits are enforced on incomplete input too, so a client cannot grow a head forever.
 * Accepts CRLF line ends and, leniently, bare LF; rejects obs-fold, NUL and control
 * bytes in names/values, whitespace before the colon, and methods/targets that are
 * not tokens/visible ASCII. The target must be in origin-form, absolute-form (http or
 * https, a valid host, no userinfo) or, for OPTIONS only, asterisk-form. RFC 9112 3.2:
 * an HTTP/1.1 request without Host, a Host that is not a valid host[:port], or more
 * than one Host field line is a 400 (HTTP/1.0 may leave Host out). Empty lines before the request line are skipped (RFC 9112
 * 2.2) and counted in the head. Each byte is judged when it arrives, so a prefix of
 * any input gives LH_PARSE_AGAIN or the same result as the whole input; when a request
 * line passes both limits at the same byte, 414 wins.
 */
int lh_http_parse_request(const char *buf, size_t len, const lh_http_limits_t *lim,
                          lh_http_request_t *req);

/* 1 when the request's path is exactly p (a NUL-terminated string). */
int lh_http_path_is(const lh_http_request_t *req, const char *p);

/* 1 when s[0..n) is uri-host [":" port] (RFC 3986 3.2.2, 3.2.3): a reg-name (IPv4
 * included, percent-encoding allowed, possibly empty), or an IPv6 address or IPvFuture
 * in brackets; the port is digits, possibly none. 0 otherwise. */
int lh_http_valid_host(const char *s, size_t n);

/* The first header named name (case-insensitive), or NULL. */
const lh_http_header_t *lh_http_find_header(const lh_http_request_t *req, const char *name);

/* How many header field lines are named name (case-insensitive). */
size_t lh_http_count_header(const lh_http_request_t *req, const char *name);

/* 1 when the comma-separated list value[0..len) holds token (case-insensitive). */
int lh_http_has_token(const char *value, size_t len, const char *token);
/* The first element of the list equal to token (ASCII case-insensitive), as it is
 * spelled in value (strlen(token) bytes), or NULL. */
const char *lh_http_token_at(const char *value, size_t len, const char *token);

/*
 * Reads Content-Length: returns 0 and sets *out to 0 when absent, 1 with *out set when
 * present and valid, LH_PARSE_ERROR when malformed or given twice with different values.
 */
int lh_http_content_length(const lh_http_request_t *req, uint64_t *out);

/* The standard reason phrase for an HTTP status ("Not Found"), or "Unknown". */
const char *lh_http_status_text(int status);

#endif
