/* Unit tests for the LHTTP codec (shared/lh_lhttp.c). */
#include "lh_test.h"

#include "lh_lhttp.h"

static const lh_lhttp_limits_t lim = { 32, 4096 };
static lh_lhttp_msg_t m;

/* Parses a NUL-terminated string with the default test limits. */
static int parse(const char *s, const char **reason)
{
    return lh_lhttp_parse(s, strlen(s), &lim, &m, reason);
}

static int parse_lim(const char *s, size_t max_headers, size_t max_line)
{
    lh_lhttp_limits_t l = { max_headers, max_line };
    const char *reason = NULL;

    return lh_lhttp_parse(s, strlen(s), &l, &m, &reason);
}

/* Builds a message of n headers "h<i>:v" on its own heap buffer (caller frees). */
static char *many_headers(size_t n)
{
    char *s = malloc(64 + n * 16), *p = s;
    size_t i;

    p += sprintf(p, "LHTTP/1.0 x\r\n");
    for (i = 0; i < n; i++)
        p += sprintf(p, "h%zu:v\r\n", i);
    sprintf(p, "\r\nbody");
    return s;
}

LH_TEST(basic_crlf)
{
    const char *r = NULL;

    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nsubscribe:a b\r\npublish:c\r\n\r\nhello", &r), 0);
    LH_CHECK_MEM(m.command, m.command_len, "chat");
    LH_CHECK_INT(m.num_headers, 2);
    LH_CHECK_MEM(m.headers[0].key, m.headers[0].key_len, "subscribe");
    LH_CHECK_MEM(m.headers[0].value, m.headers[0].value_len, "a b");
    LH_CHECK_MEM(m.headers[1].key, m.headers[1].key_len, "publish");
    LH_CHECK_MEM(m.headers[1].value, m.headers[1].value_len, "c");
    LH_CHECK_MEM(m.body, m.body_len, "hello");
}

LH_TEST(basic_bare_lf)
{
    LH_CHECK_INT(parse("LHTTP/1.0 chat\nk:v\n\nbody\r\n", NULL), 0);
    LH_CHECK_MEM(m.command, m.command_len, "chat");
    LH_CHECK_INT(m.num_headers, 1);
    LH_CHECK_MEM(m.headers[0].value, m.headers[0].value_len, "v");
    LH_CHECK_MEM(m.body, m.body_len, "body\r\n");
}

LH_TEST(mixed_line_ends)
{
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\na:1\nb:2\r\n\nbody", NULL), 0);
    LH_CHECK_INT(m.num_headers, 2);
    LH_CHECK_MEM(m.headers[1].value, m.headers[1].value_len, "2");
    LH_CHECK_MEM(m.body, m.body_len, "body");
}

LH_TEST(defect_no_headers)
{
    LH_CHECK_INT(parse("LHTTP/1.0 ping\r\n\r\nhi", NULL), 0);
    LH_CHECK_MEM(m.command, m.command_len, "ping");
    LH_CHECK_INT(m.num_headers, 0);
    LH_CHECK_MEM(m.body, m.body_len, "hi");

    LH_CHECK_INT(parse("LHTTP/1.0 ping\n\n", NULL), 0);
    LH_CHECK_INT(m.num_headers, 0);
    LH_CHECK(m.body != NULL);
    LH_CHECK_INT(m.body_len, 0);
}

LH_TEST(command_line_only)
{
    /* With and without the line end: no headers, empty (non-NULL) body. */
    LH_CHECK_INT(parse("LHTTP/1.0 ping", NULL), 0);
    LH_CHECK_MEM(m.command, m.command_len, "ping");
    LH_CHECK_INT(m.num_headers, 0);
    LH_CHECK(m.body != NULL);
    LH_CHECK_INT(m.body_len, 0);

    LH_CHECK_INT(parse("LHTTP/1.0 ping\r\n", NULL), 0);
    LH_CHECK_MEM(m.command, m.command_len, "ping");
    LH_CHECK(m.body != NULL);
    LH_CHECK_INT(m.body_len, 0);

    LH_CHECK_INT(parse("LHTTP/1.0 ping\n", NULL), 0);
    LH_CHECK_INT(m.body_len, 0);
}

LH_TEST(header_only_without_empty_line)
{
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nsubscribe:a\r\n", NULL), 0);
    LH_CHECK_INT(m.num_headers, 1);
    LH_CHECK_MEM(m.headers[0].value, m.headers[0].value_len, "a");
    LH_CHECK(m.body != NULL);
    LH_CHECK_INT(m.body_len, 0);

    /* Last header without its line end. */
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nsubscribe:a\r\nunsubscribe:b", NULL), 0);
    LH_CHECK_INT(m.num_headers, 2);
    LH_CHECK_MEM(m.headers[1].value, m.headers[1].value_len, "b");
    LH_CHECK_INT(m.body_len, 0);
}

LH_TEST(header_only_with_empty_line)
{
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nsubscribe:a\r\n\r\n", NULL), 0);
    LH_CHECK_INT(m.num_headers, 1);
    LH_CHECK(m.body != NULL);
    LH_CHECK_INT(m.body_len, 0);

    LH_CHECK_INT(parse("LHTTP/1.0 chat\nsubscribe:a\n\n", NULL), 0);
    LH_CHECK_INT(m.num_headers, 1);
    LH_CHECK_INT(m.body_len, 0);
}

LH_TEST(defect_empty_value)
{
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\npublish:\r\nx:   \r\n\r\nb", NULL), 0);
    LH_CHECK_INT(m.num_headers, 2);
    LH_CHECK_MEM(m.headers[0].key, m.headers[0].key_len, "publish");
    LH_CHECK_INT(m.headers[0].value_len, 0);
    LH_CHECK(m.headers[0].value != NULL);
    LH_CHECK_MEM(m.headers[1].key, m.headers[1].key_len, "x");
    LH_CHECK_INT(m.headers[1].value_len, 0);
    LH_CHECK_MEM(m.body, m.body_len, "b");
}

LH_TEST(defect_body_contains_header_text)
{
    const char *s = "LHTTP/1.0 chat\r\npublish:a\r\n\r\npublish:x\r\n\r\nsubscribe:y\n";

    LH_CHECK_INT(parse(s, NULL), 0);
    LH_CHECK_INT(m.num_headers, 1);
    LH_CHECK_MEM(m.headers[0].value, m.headers[0].value_len, "a");
    LH_CHECK_MEM(m.body, m.body_len, "publish:x\r\n\r\nsubscribe:y\n");

    /* No headers at all and a body that looks like headers. */
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\n\r\npublish:x\r\n\r\n", NULL), 0);
    LH_CHECK_INT(m.num_headers, 0);
    LH_CHECK_MEM(m.body, m.body_len, "publish:x\r\n\r\n");
}

LH_TEST(defect_double_space_in_channel_list)
{
    /* The value keeps its inner spaces verbatim; lh_channel_next splits it. */
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nsubscribe:  a  b\t c  \r\n\r\n", NULL), 0);
    LH_CHECK_MEM(m.headers[0].value, m.headers[0].value_len, "a  b\t c");
}

LH_TEST(value_with_colons_and_spaces)
{
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nupstream:  POST http://h:8080/x?a=b:c \t\r\n"
                       "k::v:\r\n\r\n", NULL), 0);
    LH_CHECK_INT(m.num_headers, 2);
    LH_CHECK_MEM(m.headers[0].value, m.headers[0].value_len, "POST http://h:8080/x?a=b:c");
    LH_CHECK_MEM(m.headers[1].key, m.headers[1].key_len, "k");
    LH_CHECK_MEM(m.headers[1].value, m.headers[1].value_len, ":v:");
}

LH_TEST(value_inner_tabs_kept)
{
    LH_CHECK_INT(parse("LHTTP/1.0 c\r\nk:\ta\tb \r\n", NULL), 0);
    LH_CHECK_MEM(m.headers[0].value, m.headers[0].value_len, "a\tb");
}

LH_TEST(bad_key)
{
    const char *r = NULL;

    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nbad key:x\r\n\r\n", &r), LH_LHTTP_EINVAL);
    LH_CHECK(r != NULL);
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\n key:x\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nkey :x\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nk\tey:x\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\n:x\r\n\r\n", &r), LH_LHTTP_EINVAL);
    LH_CHECK_MEM(r, strlen(r), "empty header key");
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nnocolon\r\n\r\n", &r), LH_LHTTP_EINVAL);
    LH_CHECK_MEM(r, strlen(r), "header line without ':'");
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nk\x7f:x\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nk\xc3\xa9:x\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nnocolon", NULL), LH_LHTTP_EINVAL);
}

LH_TEST(key_case_insensitive_lookup)
{
    size_t n = 99;
    const char *v;

    LH_CHECK_INT(parse("LHTTP/1.0 chat\r\nPublish:a\r\npublish:b\r\n\r\n", NULL), 0);
    v = lh_lhttp_header(&m, "PUBLISH", &n);
    LH_CHECK(v != NULL);
    LH_CHECK_MEM(v, n, "a");
    LH_CHECK(lh_lhttp_header(&m, "publis", &n) == NULL);
    LH_CHECK_INT(n, 0);
    LH_CHECK(lh_lhttp_header(&m, "publishx", NULL) == NULL);
    /* The key is kept as sent. */
    LH_CHECK_MEM(m.headers[0].key, m.headers[0].key_len, "Publish");
}

LH_TEST(first_line_protocol)
{
    const char *r = NULL;

    LH_CHECK_INT(parse("LHTTP/1.1 chat\r\n\r\n", &r), LH_LHTTP_EINVAL);
    LH_CHECK(r != NULL);
    LH_CHECK_INT(parse("lhttp/1.0 chat\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("HTTP/1.0 chat\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 \r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0\tchat\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0  chat\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 chat \r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 ch at\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 ch:at\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse(" LHTTP/1.0 chat\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("\r\nLHTTP/1.0 chat\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("", &r), LH_LHTTP_EINVAL);
    LH_CHECK_INT(lh_lhttp_parse("LHTTP/1.0 chat", 0, &lim, &m, &r), LH_LHTTP_EINVAL);
}

LH_TEST(command_length)
{
    char s[128];

    memset(s, 0, sizeof(s));
    memcpy(s, "LHTTP/1.0 ", 10);
    memset(s + 10, 'c', 64);
    LH_CHECK_INT(parse(s, NULL), 0);
    LH_CHECK_INT(m.command_len, 64);
    s[10 + 64] = 'c';
    LH_CHECK_INT(parse(s, NULL), LH_LHTTP_EINVAL);
    LH_CHECK(lh_lhttp_command_valid("a", 1));
    LH_CHECK(lh_lhttp_command_valid("!~", 2));
    LH_CHECK(!lh_lhttp_command_valid("", 0));
    LH_CHECK(!lh_lhttp_command_valid("a:b", 3));
    LH_CHECK(!lh_lhttp_command_valid("a b", 3));
    LH_CHECK(!lh_lhttp_command_valid("\xc3\xa9", 2));
}

LH_TEST(nul_and_lone_cr_rejected)
{
    static const char nul_value[] = "LHTTP/1.0 c\r\nk:a\0b\r\n\r\n";
    static const char nul_cmd[] = "LHTTP/1.0 c\0d\r\n\r\n";
    static const char nul_body[] = "LHTTP/1.0 c\r\n\r\na\0b";
    const char *r = NULL;

    LH_CHECK_INT(lh_lhttp_parse(nul_value, sizeof(nul_value) - 1, &lim, &m, &r), LH_LHTTP_EINVAL);
    LH_CHECK_INT(lh_lhttp_parse(nul_cmd, sizeof(nul_cmd) - 1, &lim, &m, &r), LH_LHTTP_EINVAL);
    /* The body is verbatim: a NUL there is fine. */
    LH_CHECK_INT(lh_lhttp_parse(nul_body, sizeof(nul_body) - 1, &lim, &m, &r), 0);
    LH_CHECK_INT(m.body_len, 3);
    LH_CHECK_INT(parse("LHTTP/1.0 c\r\nk:a\rb\r\n\r\n", &r), LH_LHTTP_EINVAL);
    LH_CHECK_MEM(r, strlen(r), "CR not followed by LF");
    LH_CHECK_INT(parse("LHTTP/1.0 c\rk:v\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 c\r", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 c\r\nk:v\r", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 c\r\n\r", NULL), LH_LHTTP_EINVAL);
    LH_CHECK_INT(parse("LHTTP/1.0 c\r\r\n\r\n", NULL), LH_LHTTP_EINVAL);
    /* A CR in the body is the body's business. */
    LH_CHECK_INT(parse("LHTTP/1.0 c\r\n\r\n\r", NULL), 0);
    LH_CHECK_MEM(m.body, m.body_len, "\r");
}

LH_TEST(binary_body)
{
    static const char msg[] = "LHTTP/1.0 bin\r\n\r\n\x00\xff\r\n\r\n\x80\n\x01";
    size_t len = sizeof(msg) - 1;

    LH_CHECK_INT(lh_lhttp_parse(msg, len, &lim, &m, NULL), 0);
    LH_CHECK_INT(m.body_len, 9);
    LH_CHECK(m.body == msg + 17);
    LH_CHECK(memcmp(m.body, "\x00\xff\r\n\r\n\x80\n\x01", 9) == 0);
}

LH_TEST(utf8_value)
{
    LH_CHECK_INT(parse("LHTTP/1.0 c\r\nname:J\xc3\xbcrgen \xe2\x82\xac\r\n\r\n", NULL), 0);
    LH_CHECK_MEM(m.headers[0].value, m.headers[0].value_len, "J\xc3\xbcrgen \xe2\x82\xac");
}

LH_TEST(max_headers_at_cap)
{
    char *s = many_headers(32);

    LH_CHECK_INT(parse(s, NULL), 0);
    LH_CHECK_INT(m.num_headers, 32);
    LH_CHECK_MEM(m.body, m.body_len, "body");
    free(s);
}

LH_TEST(max_headers_one_past_cap)
{
    char *s = many_headers(33);
    const char *r = NULL;

    LH_CHECK_INT(parse(s, &r), LH_LHTTP_EHEADERS);
    LH_CHECK_MEM(r, strlen(r), "too many headers");
    free(s);
}

LH_TEST(max_headers_zero)
{
    LH_CHECK_INT(parse_lim("LHTTP/1.0 c\r\n\r\nbody", 0, 100), 0);
    LH_CHECK_INT(parse_lim("LHTTP/1.0 c\r\nk:v\r\n\r\nbody", 0, 100), LH_LHTTP_EHEADERS);
}

LH_TEST(max_headers_hard_cap)
{
    char *s = many_headers(LH_LHTTP_HEADERS_CAP);

    /* A limit above the array size is clamped to it. */
    LH_CHECK_INT(parse_lim(s, 100000, 4096), 0);
    LH_CHECK_INT(m.num_headers, LH_LHTTP_HEADERS_CAP);
    free(s);
    s = many_headers(LH_LHTTP_HEADERS_CAP + 1);
    LH_CHECK_INT(parse_lim(s, 100000, 4096), LH_LHTTP_EHEADERS);
    LH_CHECK_INT(lh_lhttp_parse(s, strlen(s), NULL, &m, NULL), LH_LHTTP_EHEADERS);
    free(s);
}

LH_TEST(max_line_at_cap)
{
    /* "k:" + 18 bytes = 20; command line "LHTTP/1.0 abcdefghij" = 20. */
    LH_CHECK_INT(parse_lim("LHTTP/1.0 abcdefghij\r\nk:123456789012345678\r\n\r\nb", 8, 20), 0);
    LH_CHECK_INT(parse_lim("LHTTP/1.0 abcdefghij\nk:123456789012345678\n\nb", 8, 20), 0);
    /* At the end of the message, without a line end. */
    LH_CHECK_INT(parse_lim("LHTTP/1.0 abcdefghij\r\nk:123456789012345678", 8, 20), 0);
    LH_CHECK_INT(parse_lim("LHTTP/1.0 abcdefghij", 8, 20), 0);
    /* The body is not a line. */
    LH_CHECK_INT(parse_lim("LHTTP/1.0 abcdefghij\r\n\r\n0123456789012345678901234567890",
                           8, 20), 0);
}

LH_TEST(max_line_one_past_cap)
{
    const char *r = NULL;
    lh_lhttp_limits_t l = { 8, 20 };
    const char *s = "LHTTP/1.0 abcdefghij\r\nk:1234567890123456789\r\n\r\nb";

    LH_CHECK_INT(lh_lhttp_parse(s, strlen(s), &l, &m, &r), LH_LHTTP_ELINE);
    LH_CHECK_MEM(r, strlen(r), "line too long");
    LH_CHECK_INT(parse_lim("LHTTP/1.0 abcdefghij\nk:1234567890123456789\n\nb", 8, 20),
                 LH_LHTTP_ELINE);
    LH_CHECK_INT(parse_lim("LHTTP/1.0 abcdefghij\r\nk:1234567890123456789", 8, 20),
                 LH_LHTTP_ELINE);
    LH_CHECK_INT(parse_lim("LHTTP/1.0 abcdefghijk\r\n\r\n", 8, 20), LH_LHTTP_ELINE);
    LH_CHECK_INT(parse_lim("LHTTP/1.0 abcdefghijk", 8, 20), LH_LHTTP_ELINE);
    LH_CHECK_INT(parse_lim("LHTTP/1.0 abcdefghijklmnopqrstuvwxyz\r\n\r\n", 8, 20),
                 LH_LHTTP_ELINE);
}

LH_TEST(error_codes)
{
    LH_CHECK_INT(lh_lhttp_error_code(LH_LHTTP_EINVAL), 400);
    LH_CHECK_INT(lh_lhttp_error_code(LH_LHTTP_EHEADERS), 431);
    LH_CHECK_INT(lh_lhttp_error_code(LH_LHTTP_ELINE), 431);
}

LH_TEST(header_valid)
{
    LH_CHECK(lh_lhttp_header_valid("k", 1, "", 0));
    LH_CHECK(lh_lhttp_header_valid("k", 1, "a: b", 4));
    LH_CHECK(!lh_lhttp_header_valid("", 0, "v", 1));
    LH_CHECK(!lh_lhttp_header_valid("a b", 3, "v", 1));
    LH_CHECK(!lh_lhttp_header_valid("a:b", 3, "v", 1));
    LH_CHECK(!lh_lhttp_header_valid("k", 1, "a\r\nb", 4));
    LH_CHECK(!lh_lhttp_header_valid("k", 1, "a\nb", 3));
    LH_CHECK(!lh_lhttp_header_valid("k", 1, "a\0b", 3));
    LH_CHECK(!lh_lhttp_header_valid("k", 1, " v", 2));
    LH_CHECK(!lh_lhttp_header_valid("k", 1, "v\t", 2));
}

/* Serializes, parses back, and checks the result equals the input. */
static void round_trip(const char *cmd, const lh_lhttp_header_t *h, size_t n, const char *body,
                       size_t body_len)
{
    char buf[1024];
    size_t len, i;
    int rc;

    len = lh_lhttp_serialize(buf, sizeof(buf), cmd, strlen(cmd), h, n, body, body_len);
    LH_CHECK(len <= sizeof(buf));
    rc = lh_lhttp_parse(buf, len, NULL, &m, NULL);
    LH_CHECK_INT(rc, 0);
    if (rc != 0)
        return;
    LH_CHECK_MEM(m.command, m.command_len, cmd);
    LH_CHECK_INT(m.num_headers, n);
    for (i = 0; i < n && i < m.num_headers; i++) {
        LH_CHECK(m.headers[i].key_len == h[i].key_len &&
                 memcmp(m.headers[i].key, h[i].key, h[i].key_len) == 0);
        LH_CHECK(m.headers[i].value_len == h[i].value_len &&
                 memcmp(m.headers[i].value, h[i].value, h[i].value_len) == 0);
    }
    LH_CHECK(m.body_len == body_len && memcmp(m.body, body, body_len) == 0);
}

LH_TEST(serialize_format)
{
    lh_lhttp_header_t h[2] = { { "publish", 7, "a b", 3 }, { "x", 1, "", 0 } };
    char buf[64];
    size_t len;

    len = lh_lhttp_serialize(buf, sizeof(buf), "chat", 4, h, 2, "hi", 2);
    LH_CHECK_MEM(buf, len, "LHTTP/1.0 chat\r\npublish:a b\r\nx:\r\n\r\nhi");
    len = lh_lhttp_serialize(buf, sizeof(buf), "pong", 4, NULL, 0, NULL, 0);
    LH_CHECK_MEM(buf, len, "LHTTP/1.0 pong\r\n\r\n");
}

LH_TEST(serialize_too_small)
{
    lh_lhttp_header_t h[1] = { { "k", 1, "v", 1 } };
    char buf[32];
    size_t need;

    memset(buf, '#', sizeof(buf));
    need = lh_lhttp_serialize(buf, 10, "chat", 4, h, 1, "body", 4);
    LH_CHECK_INT(need, strlen("LHTTP/1.0 chat\r\nk:v\r\n\r\nbody"));
    LH_CHECK(buf[0] == '#' && buf[9] == '#' && buf[10] == '#');
    LH_CHECK_INT(lh_lhttp_serialize(NULL, 0, "chat", 4, h, 1, "body", 4), need);
    LH_CHECK_INT(lh_lhttp_serialize(buf, need, "chat", 4, h, 1, "body", 4), need);
    LH_CHECK_MEM(buf, need, "LHTTP/1.0 chat\r\nk:v\r\n\r\nbody");
}

LH_TEST(serialize_round_trip)
{
    lh_lhttp_header_t h[4] = {
        { "subscribe", 9, "a b.c", 5 },
        { "upstream", 8, "GET http://x:1/y", 16 },
        { "empty", 5, "", 0 },
        { "Publish", 7, "q\tr", 3 },
    };
    static const char bin[] = "\0\r\n\r\npublish:x\r\n\r\n\xff";

    round_trip("chat", h, 4, "hello", 5);
    round_trip("c", NULL, 0, "", 0);
    round_trip("c", h, 1, "", 0);
    round_trip("c", NULL, 0, bin, sizeof(bin) - 1);
    round_trip("~!#", h + 2, 2, "\n", 1);
}

int main(void)
{
    LH_RUN(basic_crlf);
    LH_RUN(basic_bare_lf);
    LH_RUN(mixed_line_ends);
    LH_RUN(defect_no_headers);
    LH_RUN(command_line_only);
    LH_RUN(header_only_without_empty_line);
    LH_RUN(header_only_with_empty_line);
    LH_RUN(defect_empty_value);
    LH_RUN(defect_body_contains_header_text);
    LH_RUN(defect_double_space_in_channel_list);
    LH_RUN(value_with_colons_and_spaces);
    LH_RUN(value_inner_tabs_kept);
    LH_RUN(bad_key);
    LH_RUN(key_case_insensitive_lookup);
    LH_RUN(first_line_protocol);
    LH_RUN(command_length);
    LH_RUN(nul_and_lone_cr_rejected);
    LH_RUN(binary_body);
    LH_RUN(utf8_value);
    LH_RUN(max_headers_at_cap);
    LH_RUN(max_headers_one_past_cap);
    LH_RUN(max_headers_zero);
    LH_RUN(max_headers_hard_cap);
    LH_RUN(max_line_at_cap);
    LH_RUN(max_line_one_past_cap);
    LH_RUN(error_codes);
    LH_RUN(header_valid);
    LH_RUN(serialize_format);
    LH_RUN(serialize_too_small);
    LH_RUN(serialize_round_trip);
    LH_DONE();
}
