/*
 * Configuration parser. Three steps, all pure:
 *
 *   1. strip_comments() blanks out // and block comments (outside strings), keeping
 *      every newline and the character column of everything else, so that jansson's
 *      line:column for a syntax error is right for the original text;
 *   2. jansson parses the result (duplicate keys are errors);
 *   3. a table of known keys (one row per key: type, bounds, default, check) turns the
 *      JSON into an lh_config_t. A value that does not fit is reported at its position,
 *      which locate() finds by scanning the blanked text along the key path, since
 *      jansson does not keep positions.
 *
 * Adding a key: a field in lh_config_t, a row in one of the tables below, a line in
 * etc/lhttpd.json and a paragraph in packaging/man/lhttpd.json.5.
 */
#include "lh_config.h"

#include "lh_channel.h"
#include "lh_http.h"
#include "lh_lhttp.h"

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define SECOND_MS 1000ull
#define HOUR_MS (3600ull * SECOND_MS)
#define DAY_MS (24ull * HOUR_MS)

#define MAX_PATH_DEPTH 8     /* key paths are at most section.key[index] today */
#define LIST_ITEM_MAX 1024   /* longest entry of any string list */

/* ---- Comment removal ---------------------------------------------------------------- */

static int utf8_continuation(unsigned char c)
{
    return c >= 0x80 && c <= 0xbf;
}

/*
 * Copies the JSON-with-comments in[0..len) to out (capacity len) with every comment
 * replaced by spaces: newlines stay, and UTF-8 continuation bytes inside comments are
 * dropped so that each character of a comment becomes exactly one space (jansson counts
 * columns in characters). A leading UTF-8 byte order mark is dropped too. Strings are
 * copied verbatim, "//" in them included. Returns the length written, or -1 for an
 * unterminated block comment, with *at set to the offset of its '/' in out.
 */
static long strip_comments(const char *in, size_t len, char *out, size_t *at)
{
    size_t i = 0, o = 0;
    int in_string = 0;

    if (len >= 3 && memcmp(in, "\xef\xbb\xbf", 3) == 0)
        i = 3;
    while (i < len) {
        char c = in[i];

        if (in_string) {
            out[o++] = c;
            i++;
            if (c == '\\' && i < len) {
                out[o++] = in[i++];
            } else if (c == '"' || c == '\n') {
                /* A newline ends a broken string too; jansson will report it. */
                in_string = 0;
            }
        } else if (c == '"') {
            in_string = 1;
            out[o++] = c;
            i++;
        } else if (c == '/' && i + 1 < len && in[i + 1] == '/') {
            while (i < len && in[i] != '\n') {
                if (!utf8_continuation((unsigned char)in[i]))
                    out[o++] = ' ';
                i++;
            }
        } else if (c == '/' && i + 1 < len && in[i + 1] == '*') {
            size_t start = o;

            out[o++] = ' ';
            out[o++] = ' ';
            i += 2;
            for (;;) {
                if (i >= len) {
                    *at = start;
                    return -1;
                }
                if (in[i] == '*' && i + 1 < len && in[i + 1] == '/') {
                    out[o++] = ' ';
                    out[o++] = ' ';
                    i += 2;
                    break;
                }
                if (in[i] == '\n')
                    out[o++] = '\n';
                else if (!utf8_continuation((unsigned char)in[i]))
                    out[o++] = ' ';
                i++;
            }
        } else {
            out[o++] = c;
            i++;
        }
    }
    return (long)o;
}

/* ---- Positions ---------------------------------------------------------------------- */

/* One step of a key path: an object key, or (key NULL) an array index. */
typedef struct {
    const char *key;
    size_t index;
} path_el_t;

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* i at an opening quote; returns the offset just past the closing quote. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return len;
}

/* Returns the offset just past the value starting at i. */
static size_t skip_value(const char *s, size_t len, size_t i)
{
    size_t depth = 0;

    if (i >= len)
        return len;
    if (s[i] == '"')
        return skip_string(s, len, i);
    if (s[i] != '{' && s[i] != '[') {
        while (i < len && strchr(",}] \t\r\n", s[i]) == NULL)
            i++;
        return i;
    }
    while (i < len) {
        if (s[i] == '"') {
            i = skip_string(s, len, i);
            continue;
        }
        if (s[i] == '{' || s[i] == '[') {
            depth++;
        } else if (s[i] == '}' || s[i] == ']') {
            if (--depth == 0)
                return i + 1;
        }
        i++;
    }
    return len;
}

/* Reads 4 hex digits at s[i..]; -1 when they are not there. */
static long hex4(const char *s, size_t len, size_t i)
{
    long v = 0;
    size_t k;

    if (i + 4 > len)
        return -1;
    for (k = 0; k < 4; k++) {
        int h = lh_hexval(s[i + k]);

        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/*
 * Decodes one character of the JSON string body at s[*i] into out (UTF-8, up to 4
 * bytes) and advances *i. Returns the number of bytes, or 0 at the closing quote or on
 * a malformed escape.
 */
static size_t decode_char(const char *s, size_t len, size_t *i, char out[4])
{
    long cp;

    if (*i >= len || s[*i] == '"')
        return 0;
    if (s[*i] != '\\') {
        out[0] = s[(*i)++];
        return 1;
    }
    if (*i + 1 >= len)
        return 0;
    switch (s[*i + 1]) {
    case '"': case '\\': case '/':
        out[0] = s[*i + 1];
        *i += 2;
        return 1;
    case 'b': out[0] = '\b'; *i += 2; return 1;
    case 'f': out[0] = '\f'; *i += 2; return 1;
    case 'n': out[0] = '\n'; *i += 2; return 1;
    case 'r': out[0] = '\r'; *i += 2; return 1;
    case 't': out[0] = '\t'; *i += 2; return 1;
    case 'u':
        break;
    default:
        return 0;
    }
    cp = hex4(s, len, *i + 2);
    if (cp < 0)
        return 0;
    *i += 6;
    if (cp >= 0xd800 && cp <= 0xdbff && *i + 1 < len && s[*i] == '\\' && s[*i + 1] == 'u') {
        long lo = hex4(s, len, *i + 2);

        if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            *i += 6;
        }
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* 1 when the JSON string at s[i] (its opening quote) decodes to key. */
static int string_equals(const char *s, size_t len, size_t i, const char *key)
{
    size_t klen = strlen(key), k = 0, n;
    char buf[4];

    i++;
    while ((n = decode_char(s, len, &i, buf)) > 0) {
        if (n > klen - k || memcmp(key + k, buf, n) != 0)
            return 0;
        k += n;
    }
    return k == klen && i < len && s[i] == '"';
}

/*
 * Finds the offset in the (comment-free, syntactically valid) JSON text s of the value
 * at path, or of the last key of path when want_key. Returns 0 (the start) when the
 * path is not there, which only a bug can cause.
 */
static size_t locate(const char *s, size_t len, const path_el_t *path, size_t depth,
                     int want_key)
{
    size_t i = skip_ws(s, len, 0), d;

    for (d = 0; d < depth; d++) {
        const path_el_t *el = &path[d];
        int found = 0;

        if (i >= len)
            return 0;
        if (el->key != NULL) {
            if (s[i] != '{')
                return 0;
            i = skip_ws(s, len, i + 1);
            while (i < len && s[i] == '"') {
                size_t key_at = i;
                int match = string_equals(s, len, i, el->key);

                i = skip_ws(s, len, skip_string(s, len, i));
                if (i >= len || s[i] != ':')
                    return 0;
                i = skip_ws(s, len, i + 1);
                if (match) {
                    if (want_key && d + 1 == depth)
                        return key_at;
                    found = 1;
                    break;
                }
                i = skip_ws(s, len, skip_value(s, len, i));
                if (i < len && s[i] == ',')
                    i = skip_ws(s, len, i + 1);
            }
        } else {
            size_t k;

            if (s[i] != '[')
                return 0;
            i = skip_ws(s, len, i + 1);
            for (k = 0; i < len && s[i] != ']'; k++) {
                if (k == el->index) {
                    found = 1;
                    break;
                }
                i = skip_ws(s, len, skip_value(s, len, i));
                if (i < len && s[i] == ',')
                    i = skip_ws(s, len, i + 1);
            }
        }
        if (!found)
            return 0;
    }
    return i;
}

/* Converts an offset in s to a 1-based line and column, counting characters like jansson. */
static void line_col(const char *s, size_t off, unsigned *line, unsigned *col)
{
    size_t i;

    *line = 1;
    *col = 1;
    for (i = 0; i < off; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if (!utf8_continuation((unsigned char)s[i])) {
            (*col)++;
        }
    }
}

/* ---- Validation context and errors ------------------------------------------------- */

typedef struct {
    const char *text; /* the comment-free text that jansson parsed */
    size_t len;
    path_el_t path[MAX_PATH_DEPTH];
    size_t depth;
    char *err;
    size_t errlen;
} ctx_t;

/* Appends the printable form of the current key path ("nats.servers[1]") to buf. */
static void path_string(const ctx_t *c, char *buf, size_t cap)
{
    size_t d, used = 0;

    buf[0] = '\0';
    for (d = 0; d < c->depth && used < cap; d++) {
        int n;

        if (c->path[d].key == NULL) {
            n = snprintf(buf + used, cap - used, "[%zu]", c->path[d].index);
        } else {
            const unsigned char *k = (const unsigned char *)c->path[d].key;

            n = 0;
            if (d > 0)
                n = snprintf(buf + used, cap - used, ".");
            /* Keys come from the file: show odd bytes escaped, so the message stays one line. */
            for (; *k != '\0' && n >= 0 && used + (size_t)n < cap; k++) {
                int m;

                if (*k < 0x20 || *k == 0x7f || *k == '"' || *k == '\\')
                    m = snprintf(buf + used + n, cap - used - n, "\\x%02x", *k);
                else
                    m = snprintf(buf + used + n, cap - used - n, "%c", *k);
                if (m < 0)
                    break;
                n += m;
            }
        }
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (used >= cap)
        buf[cap - 1] = '\0';
}

static void set_err(char *err, size_t errlen, unsigned line, unsigned col, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%u:%u: %s", line, col, msg);
}

/*
 * Reports a problem with the value (or, when at_key, the key) at the current path:
 * "LINE:COL: path: problem", or "LINE:COL: problem" when bare. Returns -1.
 */
PRINTF_LIKE(4, 5)
static int fail_at(ctx_t *c, int at_key, int bare, const char *fmt, ...)
{
    char path[256], problem[512], msg[800];
    unsigned line, col;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    line_col(c->text, locate(c->text, c->len, c->path, c->depth, at_key), &line, &col);
    path_string(c, path, sizeof(path));
    if (bare || c->depth == 0)
        snprintf(msg, sizeof(msg), "%s", problem);
    else
        snprintf(msg, sizeof(msg), "%s: %s", path, problem);
    set_err(c->err, c->errlen, line, col, msg);
    return -1;
}

#define fail(c, ...) fail_at((c), 0, 0, __VA_ARGS__)

static int oom(ctx_t *c)
{
    set_err(c->err, c->errlen, 1, 1, "out of memory");
    return -1;
}

static void push_key(ctx_t *c, const char *key)
{
    if (c->depth < MAX_PATH_DEPTH) {
        c->path[c->depth].key = key;
        c->path[c->depth].index = 0;
    }
    c->depth++;
}

static void push_index(ctx_t *c, size_t index)
{
    if (c->depth < MAX_PATH_DEPTH) {
        c->path[c->depth].key = NULL;
        c->path[c->depth].index = index;
    }
    c->depth++;
}

static void pop(ctx_t *c)
{
    c->depth--;
}

/* ---- Checks for string values ------------------------------------------------------ */

/* A check returns NULL when s[0..len) is acceptable, else the problem in words. */
typedef const char *(*check_fn)(const char *s, size_t len);

static int is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int all_visible(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

/* Parses a decimal port 1..65535 from s[0..len); 0 when it is not one. */
static unsigned parse_port(const char *s, size_t len)
{
    unsigned v = 0;
    size_t i;

    if (len == 0 || len > 5)
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= 65535 ? v : 0;
}

/* 1 when s[0..len) can be a host name or IPv4 address. */
static int host_name_ok(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if (!is_alnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_')
            return 0;
    return 1;
}

/* 1 when s[0..len) can be the inside of "[...]": an IPv6 address, maybe with a zone. */
static int host_v6_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || memchr(s, ':', len) == NULL)
        return 0;
    for (i = 0; i < len; i++)
        if (!is_alnum((unsigned char)s[i]) && s[i] != ':' && s[i] != '.' && s[i] != '%' &&
            s[i] != '-' && s[i] != '_')
            return 0;
    return 1;
}

/*
 * Splits s[0..len) = "host:port", "[v6]:port" or ":port". Sets *host and *host_len
 * (brackets removed) and *port. Returns 0 or -1.
 */
static int split_hostport(const char *s, size_t len, const char **host, size_t *host_len,
                          unsigned *port)
{
    const char *colon;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);

        if (close == NULL || close + 1 >= s + len || close[1] != ':')
            return -1;
        *host = s + 1;
        *host_len = (size_t)(close - s - 1);
        if (!host_v6_ok(*host, *host_len))
            return -1;
        colon = close + 1;
    } else {
        colon = memchr(s, ':', len);
        if (colon == NULL)
            return -1;
        *host = s;
        *host_len = (size_t)(colon - s);
        if (!host_name_ok(*host, *host_len))
            return -1;
    }
    *port = parse_port(colon + 1, (size_t)(s + len - colon - 1));
    return *port == 0 ? -1 : 0;
}

int lh_config_split_hostport(const char *s, char *host, size_t hostcap, unsigned *port)
{
    const char *h;
    size_t hlen;
    unsigned p;

    if (s == NULL || split_hostport(s, strlen(s), &h, &hlen, &p) != 0)
        return -1;
    if (host != NULL) {
        if (hlen >= hostcap)
            return -1;
        memcpy(host, h, hlen);
        host[hlen] = '\0';
    }
    if (port != NULL)
        *port = p;
    return 0;
}

static const char *check_listen(const char *s, size_t len)
{
    const char *h;
    size_t hlen;
    unsigned port;

    if (len > LIST_ITEM_MAX || split_hostport(s, len, &h, &hlen, &port) != 0)
        return "must be \"host:port\", \"[ipv6]:port\" or \":port\" with a port from 1 to 65535";
    return NULL;
}

static const char *check_nats_url(const char *s, size_t len)
{
    static const char bad[] = "must be \"nats://host:port\" (optionally "
                              "\"nats://user:password@host:port\")";
    const char *hp, *at, *h;
    size_t hlen;
    unsigned port;

    if (len > LIST_ITEM_MAX || len < 7 || memcmp(s, "nats://", 7) != 0 || !all_visible(s, len))
        return bad;
    hp = s + 7;
    /* Credentials end at the last '@'. */
    for (at = s + len; at > hp && at[-1] != '@'; at--)
        ;
    if (at > hp)
        hp = at;
    if (split_hostport(hp, (size_t)(s + len - hp), &h, &hlen, &port) != 0 || hlen == 0)
        return bad;
    return NULL;
}

static const char *check_subject_prefix(const char *s, size_t len)
{
    static const char bad[] = "must be 1 to 64 bytes of NATS tokens [A-Za-z0-9_-] separated "
                              "by '.' (no wildcards)";
    size_t i;

    if (len == 0 || len > 64 || s[0] == '.' || s[len - 1] == '.')
        return bad;
    for (i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (s[i - 1] == '.')
                return bad;
        } else if (!is_alnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-') {
            return bad;
        }
    }
    return NULL;
}

static const char *check_name(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > 128)
        return "must be 1 to 128 bytes";
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return "must not contain control characters";
    return NULL;
}

static const char *check_nats_publish(const char *s, size_t len)
{
    if ((len == 4 && memcmp(s, "auto", 4) == 0) || (len == 6 && memcmp(s, "always", 6) == 0))
        return NULL;
    return "must be \"auto\" or \"always\"";
}

static const char *check_ws_path(const char *s, size_t len)
{
    if (len == 0 || len > LIST_ITEM_MAX || s[0] != '/')
        return "must start with '/' (at most 1024 bytes)";
    if (!all_visible(s, len) || memchr(s, '?', len) != NULL || memchr(s, '#', len) != NULL)
        return "must be visible ASCII without '?' or '#'";
    return NULL;
}

static const char *check_origin(const char *s, size_t len)
{
    static const char bad[] = "must be an origin like \"https://example.com\" or "
                              "\"http://localhost:8080\": scheme://host[:port], no path "
                              "and no trailing '/'";
    const char *p = s, *end = s + len, *host, *colon;
    size_t hlen;

    if (len == 0 || len > LIST_ITEM_MAX)
        return bad;
    /* RFC 3986 scheme: a letter, then letters, digits, '+', '-', '.'. */
    while (p < end && (((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z') ||
                       (p > s && ((*p >= '0' && *p <= '9') || *p == '+' || *p == '-' ||
                                  *p == '.'))))
        p++;
    if (p == s || end - p < 4 || memcmp(p, "://", 3) != 0)
        return bad;
    host = p + 3;
    if (*host == '[') {
        const char *close = memchr(host, ']', (size_t)(end - host));

        if (close == NULL || !host_v6_ok(host + 1, (size_t)(close - host - 1)))
            return bad;
        colon = close + 1 < end ? close + 1 : NULL;
        if (colon != NULL && *colon != ':')
            return bad;
        hlen = (size_t)(close + 1 - host);
    } else {
        colon = memchr(host, ':', (size_t)(end - host));
        hlen = (size_t)((colon != NULL ? colon : end) - host);
        if (hlen == 0 || !host_name_ok(host, hlen))
            return bad;
    }
    if (colon != NULL && parse_port(colon + 1, (size_t)(end - colon - 1)) == 0)
        return bad;
    return NULL;
}

static const char *check_socket_path(const char *s, size_t len)
{
    if (len == 0 || s[0] != '/')
        return "must be an absolute path";
    if (len >= 108)
        return "must be shorter than 108 bytes (a Unix socket path)";
    if (!all_visible(s, len))
        return "must be visible ASCII";
    return NULL;
}

/* ---- The key table ----------------------------------------------------------------- */

enum kind {
    K_SECTION, /* an object: sub */
    K_SIZE,    /* integer min..max into size_t */
    K_MS,      /* integer min..max into unsigned (milliseconds) */
    K_STRING,  /* string, checked by check, into char * */
    K_LIST,    /* array of min..max strings, each checked by check, into lh_strlist_t */
    K_LISTEN,  /* as K_LIST, but an entry may be {"address": ..., "tls": {...}} */
    K_TLS_SOCKETS, /* {"NAME": {tls}} into cfg->tls_sockets */
    K_BOOL,    /* true/false into int */
    K_WORKERS, /* integer min..max, or "auto" = 0, into int */
    K_LEVEL,   /* a syslog level name into int 3..7 */
    K_TOKEN,   /* null, or a string of min..max visible ASCII bytes, into char * */
    K_COMMANDS, /* {"NAME": {"webhook": URL}} into cfg->commands */
    K_MODULES,  /* [{"path": ..., "config": {...}}] into cfg->modules */
    K_KEYS,     /* [{"kid": ..., "secret_file" | "public_key_file" | "jwks_file": ...}] */
    K_NAMESPACES /* {"NAME": {"subscribe": ..., "publish": ..., "stamp_user": ...}} */
};

typedef struct field {
    const char *name;
    enum kind kind;
    size_t off;                /* offset of the value in lh_config_t */
    unsigned long long min;    /* integers: smallest value; lists: fewest entries */
    unsigned long long max;    /* integers: largest value; lists: most entries */
    unsigned long long def;    /* integers and booleans: the default */
    const char *def_str;       /* strings: default (NULL = none); lists: space-separated */
    check_fn check;            /* strings and list entries */
    const struct field *sub;   /* sections: their fields, ended by a NULL name */
} field_t;

#define OFF(member) offsetof(lh_config_t, member)
#define INT_FIELD(name, kind, member, min, max, def) \
    { name, kind, OFF(member), min, max, def, NULL, NULL, NULL }
#define STR_FIELD(name, kind, member, min, max, def, check) \
    { name, kind, OFF(member), min, max, 0, def, check, NULL }
#define SECTION(name, sub) { name, K_SECTION, 0, 0, 0, 0, NULL, NULL, sub }
#define END { NULL, K_SECTION, 0, 0, 0, 0, NULL, NULL, NULL }

static const char *check_stream(const char *s, size_t len)
{
    if (len == 0 || len > 32)
        return "must be 1 to 32 characters of [A-Za-z0-9_-]";
    for (size_t i = 0; i < len; i++)
        if (!is_alnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return "must be 1 to 32 characters of [A-Za-z0-9_-]";
    return NULL;
}

static const char *check_storage(const char *s, size_t len)
{
    if ((len == 4 && memcmp(s, "file", 4) == 0) || (len == 6 && memcmp(s, "memory", 6) == 0))
        return NULL;
    return "must be \"file\" or \"memory\"";
}

static const field_t jetstream_fields[] = {
    STR_FIELD("stream", K_STRING, nats.jetstream.stream, 0, 0, "LHTTP", check_stream),
    STR_FIELD("storage", K_STRING, nats.jetstream.storage, 0, 0, "file", check_storage),
    INT_FIELD("replicas", K_MS, nats.jetstream.replicas, 1, 5, 1),
    INT_FIELD("manage", K_BOOL, nats.jetstream.manage, 0, 1, 1),
    INT_FIELD("timeout_ms", K_MS, nats.jetstream.timeout_ms, 10, HOUR_MS, 2000),
    INT_FIELD("max_read", K_SIZE, nats.jetstream.max_read, 1, 100000, 1000),
    END
};

static const field_t nats_fields[] = {
    STR_FIELD("servers", K_LIST, nats.servers, 1, 32, "nats://127.0.0.1:4222", check_nats_url),
    STR_FIELD("subject_prefix", K_STRING, nats.subject_prefix, 0, 0, "lhttp",
              check_subject_prefix),
    STR_FIELD("name", K_STRING, nats.name, 0, 0, "lhttpd", check_name),
    INT_FIELD("reconnect_buffer_bytes", K_SIZE, nats.reconnect_buffer_bytes, 1, GiB, 8 * MiB),
    STR_FIELD("publish", K_STRING, nats.publish, 0, 0, "auto", check_nats_publish),
    INT_FIELD("peer_timeout_ms", K_MS, nats.peer_timeout_ms, 1000, HOUR_MS, 5000),
    INT_FIELD("stall_timeout_ms", K_MS, nats.stall_timeout_ms, 300, HOUR_MS, 2000),
    SECTION("jetstream", jetstream_fields),
    END
};

static const field_t websocket_fields[] = {
    STR_FIELD("paths", K_LIST, websocket.paths, 0, 64, "/ /ws", check_ws_path),
    STR_FIELD("echo_paths", K_LIST, websocket.echo_paths, 0, 64, "", check_ws_path),
    STR_FIELD("allowed_origins", K_LIST, websocket.allowed_origins, 0, 256, "", check_origin),
    INT_FIELD("ping_interval_ms", K_MS, websocket.ping_interval_ms, 1, DAY_MS, 30000),
    INT_FIELD("close_timeout_ms", K_MS, websocket.close_timeout_ms, 1, HOUR_MS, 5000),
    END
};

static const field_t limits_fields[] = {
    INT_FIELD("max_message_bytes", K_SIZE, limits.max_message_bytes, 1, 256 * MiB, MiB),
    INT_FIELD("max_headers", K_SIZE, limits.max_headers, 1, LH_LHTTP_HEADERS_CAP, 32),
    /* 74 = "LHTTP/1.0 " plus the longest command: every valid command line fits. */
    INT_FIELD("max_header_line", K_SIZE, limits.max_header_line, 74, MiB, 4096),
    INT_FIELD("send_queue_bytes", K_SIZE, limits.send_queue_bytes, 1, GiB, 4 * MiB),
    INT_FIELD("max_connections", K_SIZE, limits.max_connections, 1, 1000000, 10000),
    INT_FIELD("handshake_timeout_ms", K_MS, limits.handshake_timeout_ms, 1, HOUR_MS, 10000),
    INT_FIELD("idle_timeout_ms", K_MS, limits.idle_timeout_ms, 1, DAY_MS, 60000),
    INT_FIELD("max_channel_bytes", K_SIZE, limits.max_channel_bytes, 1, LH_CHANNEL_MAX_LEN, 128),
    INT_FIELD("max_subscriptions", K_SIZE, limits.max_subscriptions, 1, 65536, 256),
    INT_FIELD("max_multipart_parts", K_SIZE, limits.max_multipart_parts, 1, 4096, 64),
    END
};

static const field_t http_fields[] = {
    /* 16: "GET / HTTP/1.1" is 14 bytes. */
    INT_FIELD("max_request_line", K_SIZE, http.max_request_line, 16, MiB, 8192),
    INT_FIELD("max_header_bytes", K_SIZE, http.max_header_bytes, 16, MiB, 16384),
    INT_FIELD("max_headers", K_SIZE, http.max_headers, 1, LH_HTTP_HEADERS_CAP, 64),
    INT_FIELD("max_body_bytes", K_SIZE, http.max_body_bytes, 1, 256 * MiB, MiB),
    INT_FIELD("keepalive_timeout_ms", K_MS, http.keepalive_timeout_ms, 1, DAY_MS, 15000),
    END
};

static const field_t publish_fields[] = {
    STR_FIELD("token", K_TOKEN, publish.token, 1, 512, NULL, NULL),
    END
};

static const char *check_http_url(const char *s, size_t len)
{
    static const char bad[] = "must be an http:// or https:// URL with a host";
    size_t skip;

    if (len > 7 && strncmp(s, "http://", 7) == 0)
        skip = 7;
    else if (len > 8 && strncmp(s, "https://", 8) == 0)
        skip = 8;
    else
        return bad;
    if (!all_visible(s, len) || s[skip] == '/' || s[skip] == '\0')
        return bad;
    return NULL;
}

static const char *check_header_prefix(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return "must be 1 to 64 bytes";
    for (size_t i = 0; i < len; i++)
        if (!is_alnum((unsigned char)s[i]) && s[i] != '-')
            return "must be letters, digits and '-' (an HTTP header name prefix)";
    return NULL;
}

static const field_t upstream_fields[] = {
    STR_FIELD("allow", K_LIST, upstream.allow, 0, 256, "", check_http_url),
    INT_FIELD("timeout_ms", K_MS, upstream.timeout_ms, 1, HOUR_MS, 5000),
    INT_FIELD("connect_timeout_ms", K_MS, upstream.connect_timeout_ms, 1, HOUR_MS, 2000),
    INT_FIELD("max_in_flight_per_conn", K_SIZE, upstream.max_in_flight_per_conn, 1, 65536, 8),
    INT_FIELD("max_in_flight", K_SIZE, upstream.max_in_flight, 1, 1000000, 1024),
    INT_FIELD("retries", K_MS, upstream.retries, 0, 10, 1),
    INT_FIELD("retry_delay_ms", K_MS, upstream.retry_delay_ms, 0, HOUR_MS, 100),
    STR_FIELD("header_prefix", K_STRING, upstream.header_prefix, 0, 0, "X-Lhttp-",
              check_header_prefix),
    INT_FIELD("report_errors", K_BOOL, upstream.report_errors, 0, 1, 1),
    INT_FIELD("max_response_bytes", K_SIZE, upstream.max_response_bytes, 1, 256 * MiB, MiB),
    INT_FIELD("max_redirects", K_MS, upstream.max_redirects, 0, 20, 3),
    INT_FIELD("max_idle_connections", K_SIZE, upstream.max_idle_connections, 1, 65536, 64),
    INT_FIELD("idle_timeout_ms", K_MS, upstream.idle_timeout_ms, 1, HOUR_MS, 30000),
    END
};

static const field_t webhooks_fields[] = {
    STR_FIELD("connect", K_TOKEN, webhooks.connect, 1, 4096, NULL, check_http_url),
    STR_FIELD("disconnect", K_TOKEN, webhooks.disconnect, 1, 4096, NULL, check_http_url),
    STR_FIELD("subscribe", K_TOKEN, webhooks.subscribe, 1, 4096, NULL, check_http_url),
    STR_FIELD("publish", K_TOKEN, webhooks.publish, 1, 4096, NULL, check_http_url),
    INT_FIELD("timeout_ms", K_MS, webhooks.timeout_ms, 1, HOUR_MS, 3000),
    INT_FIELD("disconnect_queue", K_SIZE, webhooks.disconnect_queue, 0, 1000000, 65536),
    END
};

static const char *const alg_names[] = {"HS256", "HS384", "HS512", "RS256", "ES256"};

static const char *check_alg(const char *s, size_t len)
{
    for (size_t i = 0; i < LH_ARRAY_LEN(alg_names); i++)
        if (strlen(alg_names[i]) == len && memcmp(alg_names[i], s, len) == 0)
            return NULL;
    return "must be one of \"HS256\", \"HS384\", \"HS512\", \"RS256\", \"ES256\"";
}

static const char *check_claim(const char *s, size_t len)
{
    if (len == 0 || len > 1024)
        return "must be 1 to 1024 bytes";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return "must not contain control characters";
    return NULL;
}

static const field_t auth_fields[] = {
    INT_FIELD("anonymous", K_BOOL, auth.anonymous, 0, 1, 1),
    { "keys", K_KEYS, 0, 0, 0, 0, NULL, NULL, NULL },
    STR_FIELD("algorithms", K_LIST, auth.algorithms, 1, 5, "HS256 HS384 HS512 RS256 ES256",
              check_alg),
    STR_FIELD("audience", K_TOKEN, auth.audience, 1, 1024, NULL, check_claim),
    STR_FIELD("issuer", K_TOKEN, auth.issuer, 1, 1024, NULL, check_claim),
    INT_FIELD("leeway_s", K_MS, auth.leeway_s, 0, 3600, 5),
    INT_FIELD("max_token_bytes", K_SIZE, auth.max_token_bytes, 64, 65536, 8192),
    INT_FIELD("max_lifetime_s", K_MS, auth.max_lifetime_s, 0, 10u * 365 * 86400, 0),
    INT_FIELD("require_exp", K_BOOL, auth.require_exp, 0, 1, 0),
    INT_FIELD("expiry_grace_ms", K_MS, auth.expiry_grace_ms, 0, DAY_MS, 10000),
    INT_FIELD("timeout_ms", K_MS, auth.timeout_ms, 1, HOUR_MS, 10000),
    END
};

static const field_t static_fields[] = {
    STR_FIELD("root", K_TOKEN, static_files.root, 1, 4096, NULL, NULL),
    INT_FIELD("cache_bytes", K_SIZE, static_files.cache_bytes, 1, GiB, 32 * MiB),
    INT_FIELD("max_age_s", K_MS, static_files.max_age_s, 0, 31536000, 300),
    END
};

static const field_t log_fields[] = {
    INT_FIELD("level", K_LEVEL, log.level, 3, 7, 6),
    INT_FIELD("bodies", K_BOOL, log.log_bodies, 0, 1, 0),
    END
};

static const field_t admin_fields[] = {
    STR_FIELD("listen", K_LISTEN, admin.listen, 0, 16, "", check_listen),
    INT_FIELD("endpoints_on_public", K_BOOL, admin.endpoints_on_public, 0, 1, 1),
    END
};

static const field_t presence_fields[] = {
    INT_FIELD("max_list", K_SIZE, presence.max_list, 1, 100000, 1000),
    INT_FIELD("node_timeout_ms", K_MS, presence.node_timeout_ms, 10, 60000, 500),
    INT_FIELD("join_leave_delay_ms", K_MS, presence.join_leave_delay_ms, 0, 10000, 100),
    INT_FIELD("join_leave_batch", K_SIZE, presence.join_leave_batch, 1, 100000, 1000),
    INT_FIELD("max_queries_per_conn", K_MS, presence.max_queries_per_conn, 1, 1000, 8),
    INT_FIELD("max_queries", K_MS, presence.max_queries, 1, 100000, 1024),
    END
};

static const field_t handoff_fields[] = {
    INT_FIELD("enabled", K_BOOL, handoff.enabled, 0, 1, 0),
    INT_FIELD("timeout_ms", K_MS, handoff.timeout_ms, 10, HOUR_MS, 5000),
    INT_FIELD("max_record_bytes", K_SIZE, handoff.max_record_bytes, 4096, 64 << 20, 1 << 20),
    INT_FIELD("max_buffered", K_SIZE, handoff.max_buffered, 1, 1000000, 4096),
    END
};

static const field_t top_fields[] = {
    STR_FIELD("listen", K_LISTEN, listen, 1, 64, ":8081", check_listen),
    { "tls_sockets", K_TLS_SOCKETS, 0, 0, 0, 0, NULL, NULL, NULL },
    INT_FIELD("workers", K_WORKERS, workers, 1, LH_MAX_WORKERS, 0),
    INT_FIELD("max_workers_alive", K_MS, max_workers_alive, 1, LH_MAX_WORKERS_ALIVE, 0),
    INT_FIELD("drain_timeout_ms", K_MS, drain_timeout_ms, 1, DAY_MS, 300000),
    INT_FIELD("shutdown_timeout_ms", K_MS, shutdown_timeout_ms, 1, HOUR_MS, 10000),
    STR_FIELD("control_socket", K_STRING, control_socket, 0, 0, "/run/lhttpd/lhttpd.sock",
              check_socket_path),
    SECTION("admin", admin_fields),
    SECTION("nats", nats_fields),
    SECTION("websocket", websocket_fields),
    SECTION("limits", limits_fields),
    SECTION("http", http_fields),
    SECTION("publish", publish_fields),
    SECTION("upstream", upstream_fields),
    SECTION("webhooks", webhooks_fields),
    SECTION("auth", auth_fields),
    SECTION("presence", presence_fields),
    SECTION("handoff", handoff_fields),
    { "namespaces", K_NAMESPACES, 0, 0, 0, 0, NULL, NULL, NULL },
    { "commands", K_COMMANDS, 0, 0, 0, 0, NULL, NULL, NULL },
    { "modules", K_MODULES, 0, 0, 0, 0, NULL, NULL, NULL },
    SECTION("static", static_fields),
    SECTION("log", log_fields),
    END
};

static const char *const level_names[] = { "err", "warning", "notice", "info", "debug" };

/* ---- Applying values ---------------------------------------------------------------- */

static void *at(lh_config_t *cfg, const field_t *f)
{
    return (char *)cfg + f->off;
}

static void list_free(lh_strlist_t *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static char *dup_n(const char *s, size_t len)
{
    char *p = malloc(len + 1);

    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

/* Sets every field of the table (recursively) to its default. Returns 0 or -1 (memory). */
static int set_defaults(lh_config_t *cfg, const field_t *fields)
{
    const field_t *f;

    for (f = fields; f->name != NULL; f++) {
        switch (f->kind) {
        case K_SECTION:
            if (set_defaults(cfg, f->sub) != 0)
                return -1;
            break;
        case K_SIZE:
            *(size_t *)at(cfg, f) = (size_t)f->def;
            break;
        case K_MS:
            *(unsigned *)at(cfg, f) = (unsigned)f->def;
            break;
        case K_BOOL:
        case K_WORKERS:
        case K_LEVEL:
            *(int *)at(cfg, f) = (int)f->def;
            break;
        case K_COMMANDS:
        case K_MODULES:
        case K_KEYS:
        case K_NAMESPACES:
        case K_TLS_SOCKETS:
            break; /* none by default (calloc'ed) */
        case K_STRING:
        case K_TOKEN:
            if (f->def_str != NULL) {
                char **p = at(cfg, f);

                *p = dup_n(f->def_str, strlen(f->def_str));
                if (*p == NULL)
                    return -1;
            }
            break;
        case K_LIST:
        case K_LISTEN: {
            lh_strlist_t *l = at(cfg, f);
            const char *p = f->def_str, *end = p + strlen(p), *item;
            size_t len, n = 0;

            while (lh_channel_next(&p, end, &item, &len))
                n++;
            if (n == 0)
                break;
            l->items = calloc(n, sizeof(*l->items));
            if (l->items == NULL)
                return -1;
            for (p = f->def_str; lh_channel_next(&p, end, &item, &len); l->n++) {
                l->items[l->n] = dup_n(item, len);
                if (l->items[l->n] == NULL)
                    return -1;
            }
            break;
        }
        }
    }
    return 0;
}

static int apply_object(ctx_t *c, json_t *obj, const field_t *fields, lh_config_t *cfg);

static int apply_integer(ctx_t *c, json_t *v, const field_t *f, lh_config_t *cfg)
{
    json_int_t x;

    if (f->kind == K_WORKERS && json_is_string(v) && strcmp(json_string_value(v), "auto") == 0) {
        *(int *)at(cfg, f) = 0;
        return 0;
    }
    if (!json_is_integer(v) || (x = json_integer_value(v)) < 0 ||
        (unsigned long long)x < f->min || (unsigned long long)x > f->max) {
        if (f->kind == K_WORKERS)
            return fail(c, "must be \"auto\" or an integer from %llu to %llu", f->min, f->max);
        return fail(c, "must be an integer from %llu to %llu", f->min, f->max);
    }
    if (f->kind == K_SIZE)
        *(size_t *)at(cfg, f) = (size_t)x;
    else if (f->kind == K_MS)
        *(unsigned *)at(cfg, f) = (unsigned)x;
    else
        *(int *)at(cfg, f) = (int)x;
    return 0;
}

static int apply_string(ctx_t *c, json_t *v, const field_t *f, lh_config_t *cfg)
{
    char **p = at(cfg, f), *copy;
    const char *s, *problem;
    size_t len;

    if (f->kind == K_TOKEN && json_is_null(v)) {
        free(*p);
        *p = NULL;
        return 0;
    }
    if (!json_is_string(v)) {
        if (f->kind == K_TOKEN)
            return fail(c, "must be null or a string of %llu to %llu visible ASCII characters",
                        f->min, f->max);
        return fail(c, "must be a string");
    }
    s = json_string_value(v);
    len = json_string_length(v);
    if (f->kind == K_TOKEN) {
        if (len < f->min || len > f->max || !all_visible(s, len))
            return fail(c, "must be null or a string of %llu to %llu visible ASCII characters",
                        f->min, f->max);
        if (f->check != NULL && (problem = f->check(s, len)) != NULL)
            return fail(c, "null, or %s", problem);
    } else if ((problem = f->check(s, len)) != NULL) {
        return fail(c, "%s", problem);
    }
    copy = dup_n(s, len);
    if (copy == NULL)
        return oom(c);
    free(*p);
    *p = copy;
    return 0;
}

static int apply_list(ctx_t *c, json_t *v, const field_t *f, lh_config_t *cfg)
{
    lh_strlist_t *l = at(cfg, f), fresh = { NULL, 0 };
    size_t i, j, n;
    const char *problem;

    if (!json_is_array(v))
        return fail(c, "must be an array of strings");
    n = json_array_size(v);
    if (n < f->min || n > f->max) {
        if (f->min == 0)
            return fail(c, "must have at most %llu entries", f->max);
        return fail(c, "must have from %llu to %llu entries", f->min, f->max);
    }
    if (n > 0) {
        fresh.items = calloc(n, sizeof(*fresh.items));
        if (fresh.items == NULL)
            return oom(c);
    }
    for (i = 0; i < n; i++) {
        json_t *item = json_array_get(v, i);
        const char *s;
        size_t len;
        int rc = 0;

        push_index(c, i);
        if (!json_is_string(item)) {
            rc = fail(c, "must be a string");
        } else {
            s = json_string_value(item);
            len = json_string_length(item);
            if ((problem = f->check(s, len)) != NULL)
                rc = fail(c, "%s", problem);
            for (j = 0; rc == 0 && j < i; j++)
                if (strcmp(fresh.items[j], s) == 0)
                    rc = fail(c, "\"%s\" is listed twice", s);
            if (rc == 0 && (fresh.items[i] = dup_n(s, len)) == NULL)
                rc = oom(c);
        }
        pop(c);
        if (rc != 0) {
            fresh.n = i;
            list_free(&fresh);
            return -1;
        }
        fresh.n = i + 1;
    }
    list_free(l);
    *l = fresh;
    return 0;
}

/* "commands": {"NAME": {"webhook": "http://..."}} */
static int apply_commands(ctx_t *c, json_t *v, lh_config_t *cfg)
{
    const char *name;
    json_t *cmd;
    size_t n = 0;

    if (!json_is_object(v))
        return fail(c, "must be an object of command names");
    cfg->commands = calloc(json_object_size(v) + 1, sizeof(*cfg->commands));
    if (cfg->commands == NULL)
        return oom(c);
    json_object_foreach(v, name, cmd) {
        json_t *hook;
        const char *why;

        push_key(c, name);
        if (!lh_lhttp_command_valid(name, strlen(name))) {
            int rc = fail_at(c, 1, 0, "not a valid LHTTP command name");

            pop(c);
            return rc;
        }
        if (!json_is_object(cmd)) {
            int rc = fail(c, "must be an object like {\"webhook\": \"http://...\"}");

            pop(c);
            return rc;
        }
        hook = json_object_get(cmd, "webhook");
        if (json_object_size(cmd) != 1 || hook == NULL) {
            int rc = fail(c, "must hold exactly one key, \"webhook\"");

            pop(c);
            return rc;
        }
        push_key(c, "webhook");
        why = json_is_string(hook) ? check_http_url(json_string_value(hook),
                                                    json_string_length(hook))
                                   : "must be a string";
        if (why != NULL) {
            int rc = fail(c, "%s", why);

            pop(c);
            pop(c);
            return rc;
        }
        pop(c);
        pop(c);
        cfg->commands[n].name = strdup(name);
        cfg->commands[n].webhook = strdup(json_string_value(hook));
        n++;
        cfg->ncommands = n;
        if (cfg->commands[n - 1].name == NULL || cfg->commands[n - 1].webhook == NULL)
            return oom(c);
    }
    return 0;
}

/* "modules": [{"path": "/usr/lib/lhttpd/modules/x.so", "config": {...}}] */
static int apply_modules(ctx_t *c, json_t *v, lh_config_t *cfg)
{
    size_t i;
    json_t *m;

    if (!json_is_array(v))
        return fail(c, "must be an array of {\"path\": ..., \"config\": {...}}");
    if (json_array_size(v) > 64)
        return fail(c, "at most 64 modules");
    cfg->modules = calloc(json_array_size(v) + 1, sizeof(*cfg->modules));
    if (cfg->modules == NULL)
        return oom(c);
    json_array_foreach(v, i, m) {
        json_t *path, *conf;
        const char *key;
        json_t *val;
        int rc = 0;

        push_index(c, i);
        if (!json_is_object(m)) {
            rc = fail(c, "must be an object with \"path\" and an optional \"config\"");
            pop(c);
            return rc;
        }
        json_object_foreach(m, key, val) {
            if (strcmp(key, "path") != 0 && strcmp(key, "config") != 0) {
                push_key(c, key);
                rc = fail_at(c, 1, 0, "unknown key (a module takes \"path\" and \"config\")");
                pop(c);
                pop(c);
                return rc;
            }
        }
        path = json_object_get(m, "path");
        conf = json_object_get(m, "config");
        push_key(c, "path");
        if (!json_is_string(path) || json_string_length(path) == 0 ||
            json_string_value(path)[0] != '/')
            rc = fail(c, "must be the absolute path of a shared object");
        pop(c);
        if (rc == 0 && conf != NULL && !json_is_object(conf)) {
            push_key(c, "config");
            rc = fail(c, "must be an object");
            pop(c);
        }
        pop(c);
        if (rc != 0)
            return rc;
        cfg->modules[i].path = strdup(json_string_value(path));
        cfg->modules[i].config_json =
            conf ? json_dumps(conf, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
        cfg->nmodules = i + 1;
        if (cfg->modules[i].path == NULL || cfg->modules[i].config_json == NULL)
            return oom(c);
    }
    return 0;
}

/* Reports a problem at the current path's sub-key key (its value). Returns -1. */
static int fail_sub(ctx_t *c, const char *key, int at_key, const char *msg)
{
    int rc;

    push_key(c, key);
    rc = fail_at(c, at_key, 0, "%s", msg);
    pop(c);
    return rc;
}

/* "keys": [{"kid": "k1", "secret_file": "/etc/lhttpd/jwt.secret"}, ...] */
static int apply_keys(ctx_t *c, json_t *v, lh_config_t *cfg)
{
    static const char *const files[3] = {"secret_file", "public_key_file", "jwks_file"};
    size_t i;
    json_t *k;

    if (!json_is_array(v))
        return fail(c, "must be an array of key objects");
    if (json_array_size(v) > 64)
        return fail(c, "at most 64 entries");
    cfg->auth.keys = calloc(json_array_size(v) + 1, sizeof(*cfg->auth.keys));
    if (cfg->auth.keys == NULL)
        return oom(c);
    json_array_foreach(v, i, k) {
        lh_key_cfg_t *kc = &cfg->auth.keys[i];
        char **slot[3] = {&kc->secret_file, &kc->public_key_file, &kc->jwks_file};
        const char *key, *which = NULL;
        json_t *val;
        int rc = 0;

        cfg->auth.nkeys = i + 1;
        push_index(c, i);
        if (!json_is_object(k)) {
            rc = fail(c, "must be an object with \"kid\" and one of \"secret_file\", "
                         "\"public_key_file\", \"jwks_file\"");
            pop(c);
            return rc;
        }
        json_object_foreach(k, key, val) {
            size_t f;

            for (f = 0; f < 3 && strcmp(key, files[f]) != 0; f++)
                ;
            if (f == 3 && strcmp(key, "kid") != 0) {
                rc = fail_sub(c, key, 1, "unknown key (a key takes \"kid\" and one of "
                                         "\"secret_file\", \"public_key_file\", \"jwks_file\")");
                break;
            }
            if (!json_is_string(val) || json_string_length(val) == 0 ||
                json_string_length(val) > 1024 ||
                !all_visible(json_string_value(val), json_string_length(val)) ||
                (f < 3 && json_string_value(val)[0] != '/')) {
                rc = fail_sub(c, key, 0, f < 3 ? "must be an absolute path"
                                               : "must be 1 to 1024 visible ASCII bytes");
                break;
            }
            if (f < 3) {
                if (which != NULL) {
                    char msg[96];

                    snprintf(msg, sizeof(msg), "a key has one file; \"%s\" is set already",
                             which);
                    rc = fail_sub(c, key, 1, msg);
                    break;
                }
                which = files[f];
                *slot[f] = strdup(json_string_value(val));
                if (*slot[f] == NULL)
                    rc = oom(c);
            } else if ((kc->kid = strdup(json_string_value(val))) == NULL) {
                rc = oom(c);
            }
            if (rc != 0)
                break;
        }
        if (rc == 0 && which == NULL)
            rc = fail(c, "needs one of \"secret_file\", \"public_key_file\", \"jwks_file\"");
        if (rc == 0 && kc->jwks_file != NULL && kc->kid != NULL)
            rc = fail_sub(c, "kid", 1, "a JWKS file names its keys' kids itself");
        pop(c);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- TLS ---- */

static void tls_cfg_clear(lh_tls_cfg_t *t)
{
    for (size_t i = 0; i < t->ncerts; i++) {
        free(t->certs[i].cert_file);
        free(t->certs[i].key_file);
    }
    free(t->certs);
    free(t->ciphers);
    free(t->ciphersuites);
    memset(t, 0, sizeof(*t));
}

static void tls_list_free(lh_tls_cfg_t **l, size_t n)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        if (l[i] != NULL) {
            tls_cfg_clear(l[i]);
            free(l[i]);
        }
    }
    free(l);
}

/* A file path of a TLS section: absolute, visible ASCII. Returns a copy, or NULL
 * (reported) when it is not one. */
static char *tls_path(ctx_t *c, json_t *obj, const char *key, int *rc)
{
    json_t *v = json_object_get(obj, key);
    char *p;

    if (v == NULL) {
        *rc = fail(c, "needs \"%s\"", key);
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 1024 ||
        !all_visible(json_string_value(v), json_string_length(v)) ||
        json_string_value(v)[0] != '/') {
        *rc = fail_sub(c, key, 0, "must be an absolute path");
        return NULL;
    }
    p = strdup(json_string_value(v));
    if (p == NULL)
        *rc = oom(c);
    return p;
}

/* One certificate and its key: {"cert_file": ..., "key_file": ...}, at obj. */
static int tls_cert(ctx_t *c, json_t *obj, lh_tls_cert_cfg_t *out, int more_keys_ok)
{
    const char *key;
    json_t *val;
    int rc = 0;

    if (!more_keys_ok) {
        json_object_foreach(obj, key, val) {
            if (strcmp(key, "cert_file") != 0 && strcmp(key, "key_file") != 0)
                return fail_sub(c, key, 1, "unknown key (a certificate takes \"cert_file\" "
                                           "and \"key_file\")");
        }
    }
    out->cert_file = tls_path(c, obj, "cert_file", &rc);
    if (out->cert_file == NULL)
        return rc;
    out->key_file = tls_path(c, obj, "key_file", &rc);
    return out->key_file == NULL ? rc : 0;
}

/* "tls": {"cert_file", "key_file", "certificates": [...], "min_version", "ciphers",
 * "ciphersuites", "sni_strict"} into t (zeroed; cleared by the caller on failure). */
static int apply_tls(ctx_t *c, json_t *v, lh_tls_cfg_t *t)
{
    static const char *const keys[] = {"cert_file", "key_file", "certificates", "min_version",
                                       "ciphers", "ciphersuites", "sni_strict"};
    json_t *certs, *val;
    const char *key;
    size_t n = 1, i;
    int rc;

    if (!json_is_object(v))
        return fail(c, "must be an object with \"cert_file\" and \"key_file\"");
    json_object_foreach(v, key, val) {
        for (i = 0; i < LH_ARRAY_LEN(keys) && strcmp(key, keys[i]) != 0; i++)
            ;
        if (i == LH_ARRAY_LEN(keys))
            return fail_sub(c, key, 1, "unknown key (tls takes \"cert_file\", \"key_file\", "
                                       "\"certificates\", \"min_version\", \"ciphers\", "
                                       "\"ciphersuites\", \"sni_strict\")");
    }
    certs = json_object_get(v, "certificates");
    if (certs != NULL) {
        if (!json_is_array(certs) || json_array_size(certs) > 64)
            return fail_sub(c, "certificates", 0, "must be an array of at most 64 "
                            "{\"cert_file\", \"key_file\"} objects");
        n += json_array_size(certs);
    }
    t->certs = calloc(n, sizeof(*t->certs));
    if (t->certs == NULL)
        return oom(c);
    t->ncerts = 1;
    if ((rc = tls_cert(c, v, &t->certs[0], 1)) != 0)
        return rc;
    for (i = 1; i < n; i++) {
        json_t *e = json_array_get(certs, i - 1);

        push_key(c, "certificates");
        push_index(c, i - 1);
        t->ncerts = i + 1;
        rc = json_is_object(e) ? tls_cert(c, e, &t->certs[i], 0)
                               : fail(c, "must be {\"cert_file\": ..., \"key_file\": ...}");
        pop(c);
        pop(c);
        if (rc != 0)
            return rc;
    }
    t->min_version = 0x0303;
    if ((val = json_object_get(v, "min_version")) != NULL) {
        const char *s = json_is_string(val) ? json_string_value(val) : "";

        if (strcmp(s, "1.2") == 0)
            t->min_version = 0x0303;
        else if (strcmp(s, "1.3") == 0)
            t->min_version = 0x0304;
        else
            return fail_sub(c, "min_version", 0, "must be \"1.2\" or \"1.3\"");
    }
    for (i = 0; i < 2; i++) {
        const char *k = i == 0 ? "ciphers" : "ciphersuites";
        char **slot = i == 0 ? &t->ciphers : &t->ciphersuites;

        if ((val = json_object_get(v, k)) == NULL)
            continue;
        if (!json_is_string(val) || json_string_length(val) == 0 ||
            json_string_length(val) > 1024 ||
            !all_visible(json_string_value(val), json_string_length(val)))
            return fail_sub(c, k, 0, "must be 1 to 1024 visible ASCII bytes (OpenSSL syntax)");
        if ((*slot = strdup(json_string_value(val))) == NULL)
            return oom(c);
    }
    if ((val = json_object_get(v, "sni_strict")) != NULL) {
        if (!json_is_boolean(val))
            return fail_sub(c, "sni_strict", 0, "must be true or false");
        t->sni_strict = json_is_true(val);
    }
    return 0;
}

/* "listen": ["host:port", {"address": "host:port", "tls": {...}}, ...] */
static int apply_listen(ctx_t *c, json_t *v, const field_t *f, lh_config_t *cfg)
{
    lh_strlist_t *l = at(cfg, f), fresh = { NULL, 0 };
    lh_tls_cfg_t ***slot = f->off == OFF(listen) ? &cfg->listen_tls : &cfg->admin.listen_tls;
    lh_tls_cfg_t **tls = NULL;
    size_t i, j, n;
    int rc = 0;

    if (!json_is_array(v))
        return fail(c, "must be an array of \"host:port\" strings or "
                       "{\"address\": ..., \"tls\": {...}} objects");
    n = json_array_size(v);
    if (n < f->min || n > f->max) {
        if (f->min == 0)
            return fail(c, "must have at most %llu entries", f->max);
        return fail(c, "must have from %llu to %llu entries", f->min, f->max);
    }
    fresh.items = calloc(n + 1, sizeof(*fresh.items));
    tls = calloc(n + 1, sizeof(*tls));
    if (fresh.items == NULL || tls == NULL) {
        free(fresh.items);
        free(tls);
        return oom(c);
    }
    for (i = 0; rc == 0 && i < n; i++) {
        json_t *item = json_array_get(v, i), *addr = item, *t = NULL;
        const char *problem, *key;
        json_t *val;
        int obj = json_is_object(item);

        push_index(c, i);
        if (obj) {
            json_object_foreach(item, key, val) {
                if (strcmp(key, "address") != 0 && strcmp(key, "tls") != 0) {
                    rc = fail_sub(c, key, 1, "unknown key (a listen entry takes \"address\" "
                                             "and \"tls\")");
                    break;
                }
            }
            addr = json_object_get(item, "address");
            t = json_object_get(item, "tls");
            if (rc == 0 && addr == NULL)
                rc = fail(c, "needs \"address\"");
        } else if (!json_is_string(item)) {
            rc = fail(c, "must be a \"host:port\" string or an {\"address\": ..., \"tls\": ...} "
                         "object");
        }
        if (rc == 0) {
            if (obj)
                push_key(c, "address");
            if (!json_is_string(addr)) {
                rc = fail(c, "must be a string");
            } else if ((problem = check_listen(json_string_value(addr),
                                               json_string_length(addr))) != NULL) {
                rc = fail(c, "%s", problem);
            }
            for (j = 0; rc == 0 && j < i; j++)
                if (strcmp(fresh.items[j], json_string_value(addr)) == 0)
                    rc = fail(c, "\"%s\" is listed twice", json_string_value(addr));
            if (rc == 0 && (fresh.items[i] = strdup(json_string_value(addr))) == NULL)
                rc = oom(c);
            if (rc == 0)
                fresh.n = i + 1;
            if (obj)
                pop(c);
        }
        if (rc == 0 && t != NULL && !json_is_null(t)) {
            push_key(c, "tls");
            tls[i] = calloc(1, sizeof(*tls[i]));
            rc = tls[i] == NULL ? oom(c) : apply_tls(c, t, tls[i]);
            pop(c);
        }
        pop(c);
    }
    if (rc != 0) {
        list_free(&fresh);
        tls_list_free(tls, n);
        return -1;
    }
    tls_list_free(*slot, l->n);
    list_free(l);
    *l = fresh;
    *slot = tls;
    return 0;
}

/* "tls_sockets": {"https": {"cert_file": ..., "key_file": ...}} */
static int apply_tls_sockets(ctx_t *c, json_t *v, lh_config_t *cfg)
{
    const char *name;
    json_t *t;

    if (!json_is_object(v) || json_object_size(v) > 64)
        return fail(c, "must be an object of at most 64 socket names, each with its tls");
    cfg->tls_sockets = calloc(json_object_size(v) + 1, sizeof(*cfg->tls_sockets));
    if (cfg->tls_sockets == NULL)
        return oom(c);
    json_object_foreach(v, name, t) {
        lh_tls_socket_cfg_t *e = &cfg->tls_sockets[cfg->ntls_sockets++];
        int rc;

        push_key(c, name);
        if (strlen(name) == 0 || strlen(name) > 255 || !all_visible(name, strlen(name)) ||
            strcmp(name, "admin") == 0)
            rc = fail_at(c, 1, 0, "a socket name is 1 to 255 visible ASCII bytes (the admin "
                                  "socket is \"admin\" and stays plain)");
        else if ((e->name = strdup(name)) == NULL)
            rc = oom(c);
        else
            rc = apply_tls(c, t, &e->tls);
        pop(c);
        if (rc != 0)
            return rc;
    }
    return 0;
}

const lh_tls_cfg_t *lh_config_tls_of(const lh_config_t *cfg, int admin, const char *addr)
{
    const lh_strlist_t *l = admin ? &cfg->admin.listen : &cfg->listen;
    lh_tls_cfg_t **t = admin ? cfg->admin.listen_tls : cfg->listen_tls;

    if (admin == 2) {
        for (size_t i = 0; i < cfg->ntls_sockets; i++)
            if (strcmp(cfg->tls_sockets[i].name, addr) == 0)
                return &cfg->tls_sockets[i].tls;
        return NULL;
    }
    for (size_t i = 0; t != NULL && i < l->n; i++)
        if (strcmp(l->items[i], addr) == 0)
            return t[i];
    return NULL;
}

static const char *const sub_rules[] = {"any", "authenticated", "owner", "token", "webhook"};
static const char *const pub_rules[] = {"any", "authenticated", "subscribers", "none",
                                        "webhook"};

static const char *const pres_rules[] = {"subscribers", "subscribe", "authenticated", "any",
                                         "none"};

static int rule_index(json_t *v, const char *const *names, size_t n)
{
    for (size_t i = 0; json_is_string(v) && i < n; i++)
        if (strcmp(json_string_value(v), names[i]) == 0)
            return (int)i;
    return -1;
}

/* "history": {"size": 100, "ttl_ms": 86400000}, or null for none. */
static int apply_history(ctx_t *c, json_t *v, lh_ns_cfg_t *nc)
{
    const char *key;
    json_t *val;

    if (json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return fail(c, "must be null or an object like {\"size\": 100, \"ttl_ms\": 86400000}");
    nc->history_size = 100;
    json_object_foreach(v, key, val) {
        json_int_t x = json_is_integer(val) ? json_integer_value(val) : -1;

        if (strcmp(key, "size") == 0) {
            if (x < 1 || x > 1000000)
                return fail_sub(c, key, 0, "must be an integer from 1 to 1000000");
            nc->history_size = (size_t)x;
        } else if (strcmp(key, "ttl_ms") == 0) {
            if (x < 0 || (unsigned long long)x > 365 * DAY_MS)
                return fail_sub(c, key, 0, "must be an integer from 0 (no limit) to "
                                           "31536000000 (a year)");
            nc->history_ttl_ms = (unsigned long long)x;
        } else {
            return fail_sub(c, key, 1, "unknown key (history takes \"size\" and \"ttl_ms\")");
        }
    }
    return 0;
}

/* "namespaces": {"chat": {"subscribe": "authenticated", "publish": "subscribers"}} */
static int apply_namespaces(ctx_t *c, json_t *v, lh_config_t *cfg)
{
    const char *name;
    json_t *ns;
    size_t n = 0;

    if (!json_is_object(v))
        return fail(c, "must be an object of namespace names");
    if (json_object_size(v) > LH_MAX_NAMESPACES)
        return fail(c, "at most %d namespaces", LH_MAX_NAMESPACES);
    cfg->namespaces = calloc(json_object_size(v) + 1, sizeof(*cfg->namespaces));
    if (cfg->namespaces == NULL)
        return oom(c);
    json_object_foreach(v, name, ns) {
        lh_ns_cfg_t *nc = &cfg->namespaces[n];
        size_t len = strlen(name);
        const char *key;
        json_t *val;
        int rc = 0;

        push_key(c, name);
        if (len > 0 && (!lh_channel_valid(name, len, LH_CHANNEL_MAX_LEN) ||
                        memchr(name, '.', len) != NULL)) {
            rc = fail_at(c, 1, 0, "a namespace is \"\" or one channel token (channel "
                                  "characters, no '.')");
        } else if (!json_is_object(ns)) {
            rc = fail(c, "must be an object like {\"subscribe\": \"any\", \"publish\": \"any\"}");
        }
        if (rc == 0) {
            nc->name = strdup(name);
            nc->len = len;
            cfg->nnamespaces = ++n;
            if (nc->name == NULL)
                rc = oom(c);
        }
        json_object_foreach(ns, key, val) {
            if (rc != 0)
                break;
            if (strcmp(key, "subscribe") == 0) {
                nc->subscribe = rule_index(val, sub_rules, LH_ARRAY_LEN(sub_rules));
                if (nc->subscribe < 0)
                    rc = fail_sub(c, key, 0, "must be one of \"any\", \"authenticated\", "
                                             "\"owner\", \"token\", \"webhook\"");
            } else if (strcmp(key, "publish") == 0) {
                nc->publish = rule_index(val, pub_rules, LH_ARRAY_LEN(pub_rules));
                if (nc->publish < 0)
                    rc = fail_sub(c, key, 0, "must be one of \"any\", \"authenticated\", "
                                             "\"subscribers\", \"none\", \"webhook\"");
            } else if (strcmp(key, "stamp_user") == 0) {
                if (!json_is_boolean(val))
                    rc = fail_sub(c, key, 0, "must be true or false");
                nc->stamp_user = json_is_true(val);
            } else if (strcmp(key, "presence") == 0 || strcmp(key, "join_leave") == 0) {
                if (!json_is_boolean(val))
                    rc = fail_sub(c, key, 0, "must be true or false");
                *(key[0] == 'p' ? &nc->presence : &nc->join_leave) = json_is_true(val);
            } else if (strcmp(key, "presence_read") == 0) {
                nc->presence_read = rule_index(val, pres_rules, LH_ARRAY_LEN(pres_rules));
                if (nc->presence_read < 0)
                    rc = fail_sub(c, key, 0, "must be one of \"subscribers\", \"subscribe\", "
                                             "\"authenticated\", \"any\", \"none\"");
            } else if (strcmp(key, "history") == 0) {
                push_key(c, key);
                rc = apply_history(c, val, nc);
                pop(c);
            } else {
                rc = fail_sub(c, key, 1, "unknown key (a namespace takes \"subscribe\", "
                                         "\"publish\", \"stamp_user\", \"history\", "
                                         "\"presence\", \"join_leave\" and "
                                         "\"presence_read\")");
            }
        }
        if (rc == 0 && nc->join_leave && nc->history_size > 0)
            rc = fail(c, "join_leave and history do not go together in one namespace");
        pop(c);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int apply_field(ctx_t *c, json_t *v, const field_t *f, lh_config_t *cfg)
{
    size_t i;

    switch (f->kind) {
    case K_SECTION:
        return apply_object(c, v, f->sub, cfg);
    case K_SIZE:
    case K_MS:
    case K_WORKERS:
        return apply_integer(c, v, f, cfg);
    case K_STRING:
    case K_TOKEN:
        return apply_string(c, v, f, cfg);
    case K_LIST:
        return apply_list(c, v, f, cfg);
    case K_LISTEN:
        return apply_listen(c, v, f, cfg);
    case K_TLS_SOCKETS:
        return apply_tls_sockets(c, v, cfg);
    case K_BOOL:
        if (!json_is_boolean(v))
            return fail(c, "must be true or false");
        *(int *)at(cfg, f) = json_is_true(v);
        return 0;
    case K_COMMANDS:
        return apply_commands(c, v, cfg);
    case K_MODULES:
        return apply_modules(c, v, cfg);
    case K_KEYS:
        return apply_keys(c, v, cfg);
    case K_NAMESPACES:
        return apply_namespaces(c, v, cfg);
    case K_LEVEL:
        for (i = 0; json_is_string(v) && i < LH_ARRAY_LEN(level_names); i++) {
            if (strcmp(json_string_value(v), level_names[i]) == 0) {
                *(int *)at(cfg, f) = 3 + (int)i;
                return 0;
            }
        }
        return fail(c, "must be one of \"err\", \"warning\", \"notice\", \"info\", \"debug\"");
    }
    return fail(c, "internal error: unknown field kind");
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

/*
 * Edit distance of a and b ignoring ASCII case, or a large number when either is long;
 * for "did you mean" suggestions.
 */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j, row[65];

    if (la > 64 || lb > 64)
        return 99;
    for (j = 0; j <= lb; j++)
        row[j] = j;
    for (i = 1; i <= la; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (lower(a[i - 1]) != lower(b[j - 1]));

            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

static int unknown_key(ctx_t *c, const char *key, const field_t *fields)
{
    const field_t *f, *best = NULL;
    size_t best_d = 3;

    for (f = fields; f->name != NULL; f++) {
        size_t d = distance(key, f->name);

        if (d < best_d) {
            best_d = d;
            best = f;
        }
    }
    if (best != NULL)
        return fail_at(c, 1, 0, "unknown key (did you mean \"%s\"?)", best->name);
    return fail_at(c, 1, 0, "unknown key");
}

/* Applies every member of obj, in document order, so the first error is the first in the file. */
static int apply_object(ctx_t *c, json_t *obj, const field_t *fields, lh_config_t *cfg)
{
    const char *key;
    json_t *v;

    if (!json_is_object(obj))
        return fail(c, c->depth == 0 ? "the configuration must be a JSON object"
                                     : "must be an object");
    json_object_foreach(obj, key, v) {
        const field_t *f;
        int rc;

        for (f = fields; f->name != NULL && strcmp(f->name, key) != 0; f++)
            ;
        push_key(c, key);
        rc = f->name == NULL ? unknown_key(c, key, fields) : apply_field(c, v, f, cfg);
        pop(c);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Checks that need more than one key. */
static int cross_checks(ctx_t *c, const lh_config_t *cfg)
{
    size_t i, j;
    int rc = 0;

    if (cfg->max_workers_alive != 0 && cfg->workers > 0 &&
        cfg->max_workers_alive < (unsigned)cfg->workers) {
        push_key(c, "max_workers_alive");
        rc = fail(c, "is %u, below workers (%d): a generation would not fit",
                  cfg->max_workers_alive, cfg->workers);
        pop(c);
        return rc;
    }
    for (i = 0; i < cfg->nnamespaces; i++) {
        const lh_ns_cfg_t *ns = &cfg->namespaces[i];

        if ((ns->subscribe == LH_SUB_WEBHOOK && cfg->webhooks.subscribe == NULL) ||
            (ns->publish == LH_PUB_WEBHOOK && cfg->webhooks.publish == NULL)) {
            int sub = ns->subscribe == LH_SUB_WEBHOOK && cfg->webhooks.subscribe == NULL;

            push_key(c, "namespaces");
            push_key(c, ns->name);
            push_key(c, sub ? "subscribe" : "publish");
            rc = fail(c, "is \"webhook\" but webhooks.%s is not set",
                      sub ? "subscribe" : "publish");
            pop(c);
            pop(c);
            pop(c);
            return rc;
        }
    }
    if (!cfg->auth.anonymous && cfg->auth.nkeys == 0 && cfg->webhooks.connect == NULL) {
        push_key(c, "auth");
        push_key(c, "anonymous");
        rc = fail(c, "is false, but there are no auth.keys and no webhooks.connect: no "
                     "connection could ever authenticate");
        pop(c);
        pop(c);
        return rc;
    }
    push_key(c, "websocket");
    push_key(c, "echo_paths");
    for (i = 0; rc == 0 && i < cfg->websocket.echo_paths.n; i++) {
        for (j = 0; rc == 0 && j < cfg->websocket.paths.n; j++) {
            if (strcmp(cfg->websocket.echo_paths.items[i], cfg->websocket.paths.items[j]) == 0) {
                push_index(c, i);
                rc = fail(c, "\"%s\" is also in websocket.paths; a path is either LHTTP or echo",
                          cfg->websocket.paths.items[j]);
                pop(c);
            }
        }
    }
    pop(c);
    pop(c);
    return rc;
}

/* ---- Public functions -------------------------------------------------------------- */

lh_config_t *lh_config_parse(const char *text, size_t len, char *err, size_t errlen)
{
    ctx_t c;
    lh_config_t *cfg;
    json_error_t jerr;
    json_t *root;
    char *clean;
    long clean_len;
    size_t bad = 0;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    memset(&c, 0, sizeof(c));
    c.err = err;
    c.errlen = errlen;

    clean = malloc(len > 0 ? len : 1);
    if (clean == NULL) {
        set_err(err, errlen, 1, 1, "out of memory");
        return NULL;
    }
    clean_len = strip_comments(text, len, clean, &bad);
    if (clean_len < 0) {
        unsigned line, col;

        line_col(clean, bad, &line, &col);
        set_err(err, errlen, line, col, "unterminated /* comment");
        free(clean);
        return NULL;
    }
    root = json_loadb(clean, (size_t)clean_len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        set_err(err, errlen, jerr.line > 0 ? (unsigned)jerr.line : 1,
                jerr.column > 0 ? (unsigned)jerr.column : 1, jerr.text);
        free(clean);
        return NULL;
    }
    c.text = clean;
    c.len = (size_t)clean_len;

    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL || set_defaults(cfg, top_fields) != 0) {
        oom(&c);
        lh_config_free(cfg);
        cfg = NULL;
    } else if (apply_object(&c, root, top_fields, cfg) != 0 || cross_checks(&c, cfg) != 0) {
        lh_config_free(cfg);
        cfg = NULL;
    }
    json_decref(root);
    free(clean);
    return cfg;
}

lh_config_t *lh_config_default(void)
{
    return lh_config_parse("{}", 2, NULL, 0);
}

/* Frees every string and list that the table names. */
static void free_fields(lh_config_t *cfg, const field_t *fields)
{
    const field_t *f;

    for (f = fields; f->name != NULL; f++) {
        if (f->kind == K_SECTION) {
            free_fields(cfg, f->sub);
        } else if (f->kind == K_STRING || f->kind == K_TOKEN) {
            char **p = at(cfg, f);

            free(*p);
            *p = NULL;
        } else if (f->kind == K_LIST || f->kind == K_LISTEN) {
            list_free(at(cfg, f));
        }
    }
}

void lh_config_free(lh_config_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->ncommands; i++) {
        free(cfg->commands[i].name);
        free(cfg->commands[i].webhook);
    }
    free(cfg->commands);
    for (size_t i = 0; i < cfg->nmodules; i++) {
        free(cfg->modules[i].path);
        free(cfg->modules[i].config_json);
    }
    free(cfg->modules);
    for (size_t i = 0; i < cfg->auth.nkeys; i++) {
        free(cfg->auth.keys[i].kid);
        free(cfg->auth.keys[i].secret_file);
        free(cfg->auth.keys[i].public_key_file);
        free(cfg->auth.keys[i].jwks_file);
    }
    free(cfg->auth.keys);
    for (size_t i = 0; i < cfg->nnamespaces; i++)
        free(cfg->namespaces[i].name);
    free(cfg->namespaces);
    tls_list_free(cfg->listen_tls, cfg->listen.n);
    tls_list_free(cfg->admin.listen_tls, cfg->admin.listen.n);
    for (size_t i = 0; i < cfg->ntls_sockets; i++) {
        free(cfg->tls_sockets[i].name);
        tls_cfg_clear(&cfg->tls_sockets[i].tls);
    }
    free(cfg->tls_sockets);
    if (cfg->tls_store != NULL && cfg->tls_store_free != NULL)
        cfg->tls_store_free(cfg->tls_store);
    free_fields(cfg, top_fields);
    free(cfg);
}

int lh_strlist_equal(const lh_strlist_t *a, const lh_strlist_t *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return 0;
    return 1;
}

size_t lh_config_warnings(const lh_config_t *cfg, char *buf, size_t cap)
{
    size_t n = 0, used = 0;
    int needs_user = 0;

    if (cap > 0)
        buf[0] = '\0';
    for (size_t i = 0; i < cfg->nnamespaces; i++) {
        const lh_ns_cfg_t *ns = &cfg->namespaces[i];

        needs_user |= ns->subscribe == LH_SUB_AUTHENTICATED || ns->subscribe == LH_SUB_OWNER ||
                      ns->subscribe == LH_SUB_TOKEN || ns->publish == LH_PUB_AUTHENTICATED;
    }
    if (needs_user && cfg->auth.nkeys == 0 && cfg->webhooks.connect == NULL) {
        int r = snprintf(buf + used, cap > used ? cap - used : 0,
                         "%snamespaces name rules that need a user (authenticated, owner, "
                         "token), but there are no auth.keys and no webhooks.connect: no "
                         "connection will ever have one, and those channels refuse everyone",
                         n > 0 ? "\n" : "");
        if (r > 0)
            used += (size_t)r;
        if (cap > 0 && used >= cap)
            used = cap - 1;
        n++;
    }
    if (cfg->limits.max_message_bytes > cfg->limits.send_queue_bytes) {
        /* One message larger than the queue is always accepted (the limit judges what
         * waits behind the message being written), but a burst of such messages to one
         * client, or their echoes, still adds up beyond it before the first is out. */
        int r = snprintf(buf + used, cap > used ? cap - used : 0,
                         "%slimits.max_message_bytes (%zu) exceeds limits.send_queue_bytes "
                         "(%zu): a burst of three messages that large to one client closes "
                         "it with 4008 even when it reads at full speed (the third finds "
                         "the second waiting behind the one being written); make "
                         "send_queue_bytes a few times max_message_bytes",
                         n > 0 ? "\n" : "", cfg->limits.max_message_bytes,
                         cfg->limits.send_queue_bytes);
        if (r > 0)
            used += (size_t)r;
        if (cap > 0 && used >= cap)
            used = cap - 1;
        n++;
    }
    return n;
}
