/* Unit tests for shared/lh_http.c: request heads, every error status, limits, helpers. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_ANONYMOUS */
#endif
#include "lh_test.h"
#include "lh_http.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static const lh_http_limits_t lim_default = {8192, 16384, 64};

/*
 * Every parse reads its input from the end of a mapping followed by an inaccessible
 * page, so reading one byte past len faults.
 */
#define ARENA (256 * 1024)
static unsigned char *arena;
static size_t pagesz;

static void arena_init(void)
{
    pagesz = (size_t)sysconf(_SC_PAGESIZE);
    arena = mmap(NULL, ARENA + pagesz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
    if (arena == MAP_FAILED || mprotect(arena + ARENA, pagesz, PROT_NONE) != 0) {
        perror("mmap");
        exit(1);
    }
}

static const char *guard(const char *s, size_t n)
{
    char *p = (char *)arena + ARENA - n;

    if (n > ARENA)
        abort();
    if (n)
        memcpy(p, s, n);
    return p;
}

static int parse_n(const char *s, size_t n, const lh_http_limits_t *lim, lh_http_request_t *req)
{
    memset(req, 0xa5, sizeof(*req));
    return lh_http_parse_request(guard(s, n), n, lim, req);
}

static int parse(const char *s, const lh_http_limits_t *lim, lh_http_request_t *req)
{
    return parse_n(s, strlen(s), lim, req);
}

/*
 * Parses s[0..n) and every prefix. The whole must give want (a length > 0, AGAIN, or
 * ERROR with status). A prefix must give AGAIN until it holds the deciding byte, then
 * the same answer as the whole; a complete head never depends on later bytes.
 */
static void expect_n(const char *s, size_t n, const lh_http_limits_t *lim, int want,
                     int status, int line)
{
    static lh_http_request_t req;
    size_t k;
    int r, decided = 0;

    r = parse_n(s, n, lim, &req);
    if (r != want || (r == LH_PARSE_ERROR && req.status != status) ||
        (r == LH_PARSE_ERROR && (req.reason == NULL || !*req.reason))) {
        printf("# line %d: got %d (status %d, %s), expected %d (status %d)\n", line, r,
               r == LH_PARSE_ERROR ? req.status : 0,
               r == LH_PARSE_ERROR ? req.reason : "-", want, status);
        lh_t_failed_checks++;
        return;
    }
    for (k = 0; k < n; k++) {
        r = parse_n(s, k, lim, &req);
        if (r == LH_PARSE_AGAIN && !decided)
            continue;
        if (r != want || (r == LH_PARSE_ERROR && req.status != status) ||
            (want > 0 && (size_t)want > k)) {
            printf("# line %d: prefix %zu of %zu gave %d (status %d)\n", line, k, n, r,
                   r == LH_PARSE_ERROR ? req.status : 0);
            lh_t_failed_checks++;
            return;
        }
        decided = 1;
    }
}

#define EXPECT(s, lim, want, status) expect_n(s, strlen(s), lim, want, status, __LINE__)
#define EXPECT_OK(s) EXPECT(s, &lim_default, (int)strlen(s), 0)
#define EXPECT_ERR(s, status) EXPECT(s, &lim_default, LH_PARSE_ERROR, status)

LH_TEST(test_simple_get)
{
    static const char r[] = "GET /chat?room=1 HTTP/1.1\r\n"
                            "Host: example.com\r\n"
                            "Upgrade:websocket\r\n"
                            "Connection:   keep-alive, Upgrade  \r\n"
                            "X-Empty:\r\n"
                            "X-Tabs:\t a\tb \t\r\n"
                            "\r\n";
    lh_http_request_t req;

    LH_CHECK_INT(parse(r, &lim_default, &req), strlen(r));
    LH_CHECK_MEM(req.method, req.method_len, "GET");
    LH_CHECK_MEM(req.target, req.target_len, "/chat?room=1");
    LH_CHECK_MEM(req.path, req.path_len, "/chat");
    LH_CHECK_MEM(req.query, req.query_len, "room=1");
    LH_CHECK_INT(req.minor_version, 1);
    LH_CHECK_INT(req.num_headers, 5);
    LH_CHECK_MEM(req.headers[0].name, req.headers[0].name_len, "Host");
    LH_CHECK_MEM(req.headers[0].value, req.headers[0].value_len, "example.com");
    LH_CHECK_MEM(req.headers[1].name, req.headers[1].name_len, "Upgrade");
    LH_CHECK_MEM(req.headers[1].value, req.headers[1].value_len, "websocket");
    LH_CHECK_MEM(req.headers[2].value, req.headers[2].value_len, "keep-alive, Upgrade");
    LH_CHECK_MEM(req.headers[3].name, req.headers[3].name_len, "X-Empty");
    LH_CHECK_INT(req.headers[3].value_len, 0);
    LH_CHECK_MEM(req.headers[4].value, req.headers[4].value_len, "a\tb");
    EXPECT_OK(r);
}

LH_TEST(test_methods_and_targets)
{
    lh_http_request_t req;

    EXPECT_OK("POST /x HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_OK("!#$%&'*+-.^_`|~09azAZ /a HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_OK("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_OK("GET http://example.com:80/a/b?c#d HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_OK("GET /!$&'()*+,;=:@-._~%20\"<>[]\\^`{|} HTTP/1.1\r\nHost: x\r\n\r\n");

    LH_CHECK_INT(parse("GET /a?b=c?d HTTP/1.0\r\n\r\n", &lim_default, &req), 25);
    LH_CHECK_INT(req.minor_version, 0);
    LH_CHECK_MEM(req.path, req.path_len, "/a");
    LH_CHECK_MEM(req.query, req.query_len, "b=c?d");
    LH_CHECK_INT(req.num_headers, 0);

    LH_CHECK(parse("GET /? HTTP/1.1\r\nHost: x\r\n\r\n", &lim_default, &req) > 0);
    LH_CHECK_MEM(req.path, req.path_len, "/");
    LH_CHECK(req.query != NULL);
    LH_CHECK_INT(req.query_len, 0);

    LH_CHECK(parse("GET /plain HTTP/1.1\r\nHost: x\r\n\r\n", &lim_default, &req) > 0);
    LH_CHECK_MEM(req.path, req.path_len, "/plain");
    LH_CHECK(req.query == NULL);
    LH_CHECK_INT(req.query_len, 0);
    LH_CHECK_INT(req.form, LH_HTTP_ORIGIN_FORM);
    LH_CHECK_MEM(req.host, req.host_len, "x");

    /* Neither origin-form nor absolute-form nor "*" (RFC 9112 3.2). */
    EXPECT_ERR("GET ?x HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_ERR("GET a/b HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_ERR("CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

/* The method is classified once, by the parser (case-sensitive, RFC 9110 9.1); the path
 * helper compares the whole path. */
LH_TEST(test_method_ids_and_path_is)
{
    static const struct {
        const char *head;
        int id;
    } cases[] = {
        {"GET / HTTP/1.0\r\n\r\n", LH_HTTP_GET},
        {"HEAD / HTTP/1.0\r\n\r\n", LH_HTTP_HEAD},
        {"POST / HTTP/1.0\r\n\r\n", LH_HTTP_POST},
        {"OPTIONS / HTTP/1.0\r\n\r\n", LH_HTTP_OPTIONS},
        {"get / HTTP/1.0\r\n\r\n", LH_HTTP_OTHER},
        {"GETS / HTTP/1.0\r\n\r\n", LH_HTTP_OTHER},
        {"PUT / HTTP/1.0\r\n\r\n", LH_HTTP_OTHER},
        {"OPTION / HTTP/1.0\r\n\r\n", LH_HTTP_OTHER},
    };
    lh_http_request_t req;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        LH_CHECK(parse(cases[i].head, &lim_default, &req) > 0);
        LH_CHECK_INT(req.method_id, cases[i].id);
    }
    LH_CHECK(parse("GET /publish?x HTTP/1.0\r\n\r\n", &lim_default, &req) > 0);
    LH_CHECK(lh_http_path_is(&req, "/publish"));
    LH_CHECK(!lh_http_path_is(&req, "/publis"));
    LH_CHECK(!lh_http_path_is(&req, "/publish/"));
    LH_CHECK(!lh_http_path_is(&req, "/publish?x"));
}

/* RFC 9112 3.2.2: the absolute-form; its path routes, its authority replaces Host. */
LH_TEST(test_absolute_form)
{
    lh_http_request_t req;

    LH_CHECK(parse("GET http://127.0.0.1:8081/livez?x=1 HTTP/1.1\r\nHost: other\r\n\r\n",
                   &lim_default, &req) > 0);
    LH_CHECK_INT(req.form, LH_HTTP_ABSOLUTE_FORM);
    LH_CHECK_MEM(req.target, req.target_len, "http://127.0.0.1:8081/livez?x=1");
    LH_CHECK_MEM(req.path, req.path_len, "/livez");
    LH_CHECK_MEM(req.query, req.query_len, "x=1");
    LH_CHECK_MEM(req.host, req.host_len, "127.0.0.1:8081");

    LH_CHECK(parse("GET HTTPS://[::1]:1/a/b HTTP/1.0\r\n\r\n", &lim_default, &req) > 0);
    LH_CHECK_MEM(req.path, req.path_len, "/a/b");
    LH_CHECK(req.query == NULL);
    LH_CHECK_MEM(req.host, req.host_len, "[::1]:1");

    /* An empty path is "/". */
    LH_CHECK(parse("GET http://example.com HTTP/1.1\r\nHost: x\r\n\r\n", &lim_default,
                   &req) > 0);
    LH_CHECK_MEM(req.path, req.path_len, "/");
    LH_CHECK(req.query == NULL);
    LH_CHECK_MEM(req.host, req.host_len, "example.com");
    LH_CHECK(parse("GET http://example.com?q HTTP/1.1\r\nHost: x\r\n\r\n", &lim_default,
                   &req) > 0);
    LH_CHECK_MEM(req.path, req.path_len, "/");
    LH_CHECK_MEM(req.query, req.query_len, "q");
    EXPECT_OK("GET http://example.com HTTP/1.1\r\nHost: x\r\n\r\n");

    /* Still HTTP/1.1: Host is required and must be valid (RFC 9112 3.2). */
    EXPECT_ERR("GET http://example.com/ HTTP/1.1\r\n\r\n", 400);
    EXPECT_ERR("GET http://example.com/ HTTP/1.1\r\nHost: [x\r\n\r\n", 400);
    /* Not http(s), no host, userinfo, a bad host or port: decided at the target. */
    EXPECT_ERR("GET ftp://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_ERR("GET http:/a HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_ERR("GET http:// HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_ERR("GET http:///a HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_ERR("GET http://:80/a HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_ERR("GET http://u:p@example.com/ HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_ERR("GET http://[::1/a HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_ERR("GET http://x:8o/a HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_ERR("GET http://x#y/ HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT("GET http://u@x/", &lim_default, LH_PARSE_AGAIN, 0);
    EXPECT("GET http://u@x/ ", &lim_default, LH_PARSE_ERROR, 400);
}

/* RFC 9112 3.2.4: "*" only for OPTIONS. */
LH_TEST(test_asterisk_form)
{
    lh_http_request_t req;

    LH_CHECK(parse("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", &lim_default, &req) > 0);
    LH_CHECK_INT(req.form, LH_HTTP_ASTERISK_FORM);
    LH_CHECK_MEM(req.path, req.path_len, "*");
    LH_CHECK(req.query == NULL);
    EXPECT_ERR("GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_ERR("M-SEARCH * HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_ERR("options * HTTP/1.1\r\nHost: x\r\n\r\n", 400); /* methods are case-sensitive */
    EXPECT_ERR("OPTIONS ** HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    EXPECT_OK("OPTIONS /x HTTP/1.1\r\nHost: x\r\n\r\n");
}

/* RFC 9112 3.2: Host in HTTP/1.1 (exactly one, valid); HTTP/1.0 may leave it out. */
LH_TEST(test_host)
{
    lh_http_request_t req;

    EXPECT_ERR("GET / HTTP/1.1\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.1\nX-Host: a\n\n", 400);
    EXPECT_ERR("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.0\r\nHost: [::1\r\n\r\n", 400);
    LH_CHECK_INT(parse("GET / HTTP/1.1\r\n\r\n", &lim_default, &req), LH_PARSE_ERROR);
    LH_CHECK(strstr(req.reason, "missing Host") != NULL);
    LH_CHECK_INT(parse("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", &lim_default, &req),
                 LH_PARSE_ERROR);
    LH_CHECK(strstr(req.reason, "invalid Host") != NULL);

    LH_CHECK(parse("GET / HTTP/1.0\r\n\r\n", &lim_default, &req) > 0);
    LH_CHECK(req.host == NULL);
    LH_CHECK(parse("GET / HTTP/1.0\r\nhOsT:  example.com:80 \r\n\r\n", &lim_default,
                   &req) > 0);
    LH_CHECK_MEM(req.host, req.host_len, "example.com:80");
    /* An empty Host is valid: a URI with no authority (RFC 9112 3.2). */
    LH_CHECK(parse("GET / HTTP/1.1\r\nHost:\r\n\r\n", &lim_default, &req) > 0);
    LH_CHECK(req.host != NULL);
    LH_CHECK_INT(req.host_len, 0);
}

LH_TEST(test_valid_host)
{
    static const char *good[] = {
        "", "example.com", "example.com:8081", "EXAMPLE.com.", "127.0.0.1", "127.0.0.1:1",
        "x:", "a-b_c~d.e", "%41%6a", "!$&'()*+,;=", "999.1.1.1", "[::1]", "[::1]:8081",
        "[::]", "[2001:db8::1]", "[1:2:3:4:5:6:7:8]", "[::ffff:1.2.3.4]:80", "[v7.x:y]",
        "[VF.a]", "x:0000000000000000000080",
    };
    static const char *bad[] = {
        "[::1", "::1", "::1:80", "a b", "a\tb", "x:y", "x:80:80", "x:-1", "x: 80", "user@x",
        "u:p@x", "x/y", "x?y", "x#y", "%zz", "%4", "%", "[::g]", "[::1]x", "[::1]:x",
        "[::1]]", "[]", "[1:2:3:4:5:6:7:8:9]", "[1::2::3]", "[12345::]", "[::1%25eth0]",
        "[v.x]", "[v7.]", "[v7x]", "[vz.x]", "[v7.x/y]", "x]", "[", "\"x\"", "x\\y",
        "caf\xc3\xa9", "<x>", "x^y", "x|y", "x{y}", "`x`",
    };
    size_t k;

    for (k = 0; k < LH_ARRAY_LEN(good); k++)
        if (!lh_http_valid_host(good[k], strlen(good[k]))) {
            printf("# valid host refused: \"%s\"\n", good[k]);
            lh_t_failed_checks++;
        }
    for (k = 0; k < LH_ARRAY_LEN(bad); k++)
        if (lh_http_valid_host(bad[k], strlen(bad[k]))) {
            printf("# invalid host accepted: \"%s\"\n", bad[k]);
            lh_t_failed_checks++;
        }
    /* Only n bytes are read: a valid prefix of an invalid string. */
    LH_CHECK(lh_http_valid_host("[::1]x", 5));
    LH_CHECK(lh_http_valid_host("x y", 1));
    LH_CHECK(!lh_http_valid_host("[::1]", 4));
}

LH_TEST(test_pipelined)
{
    static const char two[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                              "GET /2 HTTP/1.1\r\nHost: b\r\n\r\n";
    lh_http_request_t req;
    size_t first = strlen("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
    int r = parse(two, &lim_default, &req);

    LH_CHECK_INT(r, first);
    LH_CHECK_MEM(req.target, req.target_len, "/1");
    LH_CHECK_INT(parse(two + first, &lim_default, &req), strlen(two) - first);
    LH_CHECK_MEM(req.target, req.target_len, "/2");
    LH_CHECK_MEM(req.headers[0].value, req.headers[0].value_len, "b");
    /* The body or the next request after the head is not looked at. */
    EXPECT("GET / HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02garbage", &lim_default, 27, 0);
    EXPECT("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", &lim_default, 47, 0);
}

LH_TEST(test_bare_lf)
{
    lh_http_request_t req;

    EXPECT_OK("GET / HTTP/1.1\nHost: x\n\n");
    EXPECT_OK("GET / HTTP/1.1\r\nHost: x\n\r\n");
    EXPECT_OK("GET / HTTP/1.1\nHost: x\r\n\n");
    LH_CHECK(parse("GET / HTTP/1.1\nHost: x \n\n", &lim_default, &req) > 0);
    LH_CHECK_MEM(req.headers[0].value, req.headers[0].value_len, "x");
}

LH_TEST(test_leading_empty_lines)
{
    lh_http_request_t req;

    EXPECT_OK("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_OK("\r\n\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    LH_CHECK_INT(parse("\r\nGET /x HTTP/1.0\r\n\r\n", &lim_default, &req), 21);
    LH_CHECK_MEM(req.method, req.method_len, "GET");
    EXPECT("\r\n\r\n", &lim_default, LH_PARSE_AGAIN, 0);
    EXPECT_ERR("\rGET / HTTP/1.1\r\n\r\n", 400);
}

LH_TEST(test_header_values)
{
    lh_http_request_t req;
    static const char obs[] = "GET / HTTP/1.0\r\nX-Obs: caf\xc3\xa9 \xff\x80\r\n\r\n";

    LH_CHECK(parse(obs, &lim_default, &req) > 0);
    LH_CHECK_MEM(req.headers[0].value, req.headers[0].value_len, "caf\xc3\xa9 \xff\x80");
    EXPECT_OK(obs);
    LH_CHECK(parse("GET / HTTP/1.0\r\nA: \t \r\nB:x y  z\r\n\r\n", &lim_default, &req) > 0);
    LH_CHECK_INT(req.headers[0].value_len, 0);
    LH_CHECK_MEM(req.headers[1].value, req.headers[1].value_len, "x y  z");
    /* Value pointers stay inside the buffer even when empty. */
    LH_CHECK(req.headers[0].value >= (const char *)arena &&
             req.headers[0].value <= (const char *)arena + ARENA);
    EXPECT_OK("GET / HTTP/1.1\r\nHost: x\r\nX: \"quoted, \\\"string\\\"\" (comment) ~!@#$%^&*\r\n\r\n");
}

LH_TEST(test_errors_request_line)
{
    EXPECT_ERR(" GET / HTTP/1.1\r\n\r\n", 400);        /* empty method */
    EXPECT_ERR("G@T / HTTP/1.1\r\n\r\n", 400);         /* not a token */
    EXPECT_ERR("GE(T / HTTP/1.1\r\n\r\n", 400);
    EXPECT_ERR("G\x80T / HTTP/1.1\r\n\r\n", 400);
    EXPECT_ERR("GET\t/ HTTP/1.1\r\n\r\n", 400);
    EXPECT_ERR("GET  / HTTP/1.1\r\n\r\n", 400);        /* double space: empty target */
    EXPECT_ERR("GET / \x01 HTTP/1.1\r\n\r\n", 400);
    EXPECT_ERR("GET /a\x01 HTTP/1.1\r\n\r\n", 400);    /* control in target */
    EXPECT_ERR("GET /a\x7f HTTP/1.1\r\n\r\n", 400);
    EXPECT_ERR("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", 400); /* raw UTF-8 in target */
    EXPECT_ERR("GET /a\tb HTTP/1.1\r\n\r\n", 400);
    EXPECT_ERR("GET /\r\n\r\n", 400);                  /* HTTP/0.9 */
    EXPECT_ERR("GET\r\n\r\n", 400);
    EXPECT_ERR("GET / \r\n\r\n", 400);                 /* empty version */
    EXPECT_ERR("GET / HTTP/1.1 \r\n\r\n", 400);        /* trailing space */
    EXPECT_ERR("GET / HTTP/1.1x\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/11\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/11.1\r\n\r\n", 400);
    EXPECT_ERR("GET / http/1.1\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1,1\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTPS/1.1\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/a.b\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.1\rX\n\r\n", 400);        /* bare CR */
    expect_n("GET / HTTP/1.1\0\r\n\r\n", 19, &lim_default, LH_PARSE_ERROR, 400, __LINE__);
    EXPECT(" ", &lim_default, LH_PARSE_ERROR, 400);
}

LH_TEST(test_errors_version)
{
    EXPECT_ERR("GET / HTTP/2.0\r\n\r\n", 505);
    EXPECT_ERR("GET / HTTP/1.2\r\n\r\n", 505);
    EXPECT_ERR("GET / HTTP/1.9\r\n\r\n", 505);
    EXPECT_ERR("GET / HTTP/0.9\r\n\r\n", 505);
    EXPECT_ERR("GET / HTTP/3.0\nHost: x\n\n", 505);
    EXPECT_ERR("GET / HTTP/9.9\r\n\r\n", 505);
}

LH_TEST(test_errors_headers)
{
    EXPECT_ERR("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400);  /* obs-fold */
    EXPECT_ERR("GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);           /* space first */
    EXPECT_ERR("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);           /* space before : */
    EXPECT_ERR("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.1\r\n: a\r\n\r\n", 400);                /* empty name */
    EXPECT_ERR("GET / HTTP/1.1\r\nX(y): a\r\n\r\n", 400);            /* not a token */
    EXPECT_ERR("GET / HTTP/1.1\r\nX\x01y: a\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.1\r\nX\xc3\xa9: a\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.1\r\nNoColon\n\n", 400);
    EXPECT_ERR("GET / HTTP/1.1\r\nX: a\x01 b\r\n\r\n", 400);         /* control in value */
    EXPECT_ERR("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.1\r\nX: a\x1b[0m\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400);            /* bare CR in value */
    EXPECT_ERR("GET / HTTP/1.1\r\nX: a\r\n\rX", 400);                /* bare CR, end line */
    EXPECT_ERR("GET / HTTP/1.1\r\nX:\r \r\n\r\n", 400);
    /* RFC 9112 3.2: more than one Host field line (whatever their values, any case). */
    EXPECT_ERR("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nhOST: b\r\n\r\n", 400);
    EXPECT_ERR("GET / HTTP/1.0\nHost: a\nHost: b\n\n", 400);
    {
        static const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";

        expect_n(nul, sizeof(nul) - 1, &lim_default, LH_PARSE_ERROR, 400, __LINE__);
    }
}

/* A request line of exactly n bytes (without its line end): "GET /aaa... HTTP/1.0" (1.0:
 * no Host needed). */
static size_t make_line(char *out, size_t n)
{
    size_t t = n - strlen("GET  HTTP/1.0");

    memcpy(out, "GET /", 5);
    memset(out + 5, 'a', t - 1);
    memcpy(out + 4 + t, " HTTP/1.0", 9);
    return n;
}

LH_TEST(test_limit_request_line)
{
    static char buf[512];
    lh_http_limits_t lim = {100, 4096, 10};
    size_t n = make_line(buf, 100);

    /* Exactly at the cap, complete and incomplete. */
    memcpy(buf + n, "\r\n\r\n", 5);
    EXPECT(buf, &lim, (int)n + 4, 0);
    expect_n(buf, n, &lim, LH_PARSE_AGAIN, 0, __LINE__);
    expect_n(buf, n + 1, &lim, LH_PARSE_AGAIN, 0, __LINE__);
    memcpy(buf + n, "\n\n", 3);
    EXPECT(buf, &lim, (int)n + 2, 0);

    /* One past the cap, complete and incomplete. */
    n = make_line(buf, 101);
    memcpy(buf + n, "\r\n\r\n", 5);
    EXPECT(buf, &lim, LH_PARSE_ERROR, 414);
    expect_n(buf, 100, &lim, LH_PARSE_AGAIN, 0, __LINE__);
    expect_n(buf, 101, &lim, LH_PARSE_ERROR, 414, __LINE__);

    /* No line end within max_line bytes, whatever part of the line is long. */
    memset(buf, 'G', 200);
    expect_n(buf, 100, &lim, LH_PARSE_AGAIN, 0, __LINE__);
    expect_n(buf, 101, &lim, LH_PARSE_ERROR, 414, __LINE__);
    memcpy(buf, "GET / ", 6);
    memset(buf + 6, 'H', 100);
    expect_n(buf, 101, &lim, LH_PARSE_ERROR, 400, __LINE__); /* bad version found first */

    /* Leading empty lines do not count towards the request line. */
    memcpy(buf, "\r\n\r\n", 4);
    n = make_line(buf + 4, 100);
    memcpy(buf + 4 + n, "\r\n\r\n", 5);
    EXPECT(buf, &lim, (int)n + 8, 0);

    /* A bad byte before the cap is a 400, after it a 414. */
    n = make_line(buf, 101);
    buf[50] = '\x01';
    expect_n(buf, n, &lim, LH_PARSE_ERROR, 400, __LINE__);
    n = make_line(buf, 101);
    buf[100] = '\x01';
    expect_n(buf, n, &lim, LH_PARSE_ERROR, 414, __LINE__);
}

/* A head of exactly n bytes: request line (HTTP/1.0: no Host needed), "X: vvv" fields,
 * final CRLF. */
static size_t make_head(char *out, size_t n, size_t nfields)
{
    size_t used = 0, k;
    static const char rl[] = "GET / HTTP/1.0\r\n";

    memcpy(out, rl, sizeof(rl) - 1);
    used = sizeof(rl) - 1;
    for (k = 0; k < nfields; k++) {
        size_t left = n - used - 2, flen = (left / (nfields - k)); /* "X:v\r\n" >= 5 */

        memcpy(out + used, "X:", 2);
        memset(out + used + 2, 'v', flen - 4);
        memcpy(out + used + flen - 2, "\r\n", 2);
        used += flen;
    }
    memcpy(out + used, "\r\n", 3);
    return used + 2;
}

LH_TEST(test_limit_head_bytes)
{
    static char buf[2048];
    lh_http_limits_t lim = {100, 1000, 64};
    size_t n;

    n = make_head(buf, 1000, 3);
    LH_CHECK_INT(n, 1000);
    LH_CHECK_INT(strlen(buf), 1000);
    EXPECT(buf, &lim, 1000, 0);                             /* exactly at the cap */
    expect_n(buf, 999, &lim, LH_PARSE_AGAIN, 0, __LINE__);  /* incomplete at the cap */

    n = make_head(buf, 1001, 3);
    LH_CHECK_INT(n, 1001);
    EXPECT(buf, &lim, LH_PARSE_ERROR, 431);                 /* one past */
    expect_n(buf, 1000, &lim, LH_PARSE_AGAIN, 0, __LINE__);
    expect_n(buf, 1001, &lim, LH_PARSE_ERROR, 431, __LINE__);

    /* Bare-LF head at the cap, then one more byte. */
    n = make_head(buf, 999, 3);
    buf[n - 2] = '\n';
    buf[n - 1] = '\0';
    EXPECT(buf, &lim, 998, 0);

    /* A head that never ends: 431 once the cap is passed, inside a value. */
    memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
    memset(buf + 19, 'v', 1100);
    expect_n(buf, 1000, &lim, LH_PARSE_AGAIN, 0, __LINE__);
    expect_n(buf, 1001, &lim, LH_PARSE_ERROR, 431, __LINE__);
    expect_n(buf, 1100, &lim, LH_PARSE_ERROR, 431, __LINE__);

    /* Only empty lines. */
    memset(buf, '\n', 1100);
    expect_n(buf, 1000, &lim, LH_PARSE_AGAIN, 0, __LINE__);
    expect_n(buf, 1001, &lim, LH_PARSE_ERROR, 431, __LINE__);

    /* The CR of the final CRLF fits, its LF does not. */
    n = make_head(buf, 1001, 2);
    expect_n(buf, 1000, &lim, LH_PARSE_AGAIN, 0, __LINE__);
    LH_CHECK_INT(buf[999], '\r');

    /* A limit smaller than the request line. */
    lim.max_header_bytes = 10;
    EXPECT("GET / HTTP/1.1\r\n\r\n", &lim, LH_PARSE_ERROR, 431);
    lim.max_header_bytes = 0;
    EXPECT("GET / HTTP/1.1\r\n\r\n", &lim, LH_PARSE_ERROR, 431);
}

LH_TEST(test_limit_header_count)
{
    static char buf[8192];
    lh_http_limits_t lim = {100, 8000, 10};
    lh_http_request_t req;
    size_t n, k;
    char *p;

    n = make_head(buf, 200, 10);
    EXPECT(buf, &lim, (int)n, 0);
    LH_CHECK_INT(parse(buf, &lim, &req), n);
    LH_CHECK_INT(req.num_headers, 10);
    expect_n(buf, n - 2, &lim, LH_PARSE_AGAIN, 0, __LINE__); /* 10 fields, no end yet */

    n = make_head(buf, 200, 11);
    EXPECT(buf, &lim, LH_PARSE_ERROR, 431);
    /* The first byte of the 11th field decides. */
    p = buf;
    for (k = 0; k < 11; k++)
        p = strchr(p, '\n') + 1;
    expect_n(buf, (size_t)(p - buf), &lim, LH_PARSE_AGAIN, 0, __LINE__);
    expect_n(buf, (size_t)(p - buf) + 1, &lim, LH_PARSE_ERROR, 431, __LINE__);

    lim.max_headers = 0;
    EXPECT("GET / HTTP/1.0\r\n\r\n", &lim, 18, 0);
    EXPECT("GET / HTTP/1.0\r\nHost: a\r\n\r\n", &lim, LH_PARSE_ERROR, 431);

    /* max_headers above the array size is clamped to LH_HTTP_HEADERS_CAP. */
    lim.max_headers = 1000;
    n = make_head(buf, 8000, LH_HTTP_HEADERS_CAP);
    LH_CHECK_INT(parse(buf, &lim, &req), n);
    LH_CHECK_INT(req.num_headers, LH_HTTP_HEADERS_CAP);
    make_head(buf, 8000, LH_HTTP_HEADERS_CAP + 1);
    EXPECT(buf, &lim, LH_PARSE_ERROR, 431);
}

LH_TEST(test_incomplete)
{
    EXPECT("", &lim_default, LH_PARSE_AGAIN, 0);
    EXPECT("G", &lim_default, LH_PARSE_AGAIN, 0);
    EXPECT("GET / HTTP/1.1", &lim_default, LH_PARSE_AGAIN, 0);
    EXPECT("GET / HTTP/1.1\r", &lim_default, LH_PARSE_AGAIN, 0);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\n", &lim_default, LH_PARSE_AGAIN, 0);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\n\r", &lim_default, LH_PARSE_AGAIN, 0);
}

/*
 * Single-byte mutations of a valid request: whatever the answer, every prefix agrees
 * with it (expect_n), pointers stay in the buffer and statuses are documented ones.
 */
LH_TEST(test_mutations)
{
    static const char base[] = "GET /a?b HTTP/1.1\r\nHost: h\r\nX-Y:  z \r\n\r\nbody";
    static const unsigned char bytes[] = {0, '\t', '\n', '\r', ' ', ':', '?', 'x', 0x7f, 0x80};
    lh_http_limits_t lim = {18, 40, 2};
    char buf[sizeof(base)];
    size_t pos, b;
    lh_http_request_t req;
    unsigned bad = 0;

    for (pos = 0; pos < sizeof(base) - 1; pos++)
        for (b = 0; b < sizeof(bytes); b++) {
            int r;
            size_t k;

            memcpy(buf, base, sizeof(base));
            buf[pos] = (char)bytes[b];
            r = parse_n(buf, sizeof(base) - 1, &lim, &req);
            expect_n(buf, sizeof(base) - 1, &lim, r,
                     r == LH_PARSE_ERROR ? req.status : 0, __LINE__);
            if (r == LH_PARSE_ERROR && req.status != 400 && req.status != 414 &&
                req.status != 431 && req.status != 505)
                bad++;
            if (r > 0)
                for (k = 0; k < req.num_headers; k++)
                    if (req.headers[k].name + req.headers[k].name_len >
                            (const char *)arena + ARENA ||
                        req.headers[k].value + req.headers[k].value_len >
                            (const char *)arena + ARENA - (sizeof(base) - 1) + (size_t)r)
                        bad++;
        }
    LH_CHECK_INT(bad, 0);
}

LH_TEST(test_find_header)
{
    lh_http_request_t req;

    LH_CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n", &lim_default,
                   &req) > 0);
    LH_CHECK(lh_http_find_header(&req, "host") == &req.headers[0]);
    LH_CHECK(lh_http_find_header(&req, "HOST") == &req.headers[0]);
    LH_CHECK(lh_http_find_header(&req, "X-DUP") == &req.headers[1]);
    LH_CHECK(lh_http_find_header(&req, "hos") == NULL);
    LH_CHECK_INT(lh_http_count_header(&req, "x-dup"), 2);
    LH_CHECK_INT(lh_http_count_header(&req, "Host"), 1);
    LH_CHECK_INT(lh_http_count_header(&req, "hos"), 0);
    LH_CHECK(lh_http_find_header(&req, "hostx") == NULL);
    LH_CHECK(lh_http_find_header(&req, "") == NULL);
}

LH_TEST(test_has_token)
{
#define HT(v, t) lh_http_has_token(v, strlen(v), t)
    LH_CHECK(HT("Upgrade", "upgrade"));
    LH_CHECK(HT("keep-alive, Upgrade", "upgrade"));
    LH_CHECK(HT("keep-alive,Upgrade", "UPGRADE"));
    LH_CHECK(HT(" \tupgrade\t ,x", "upgrade"));
    LH_CHECK(HT(",,upgrade,,", "upgrade"));
    LH_CHECK(HT("a, b ,c", "b"));
    LH_CHECK(!HT("upgrades", "upgrade"));
    LH_CHECK(!HT("upgrade2, xupgrade", "upgrade"));
    LH_CHECK(!HT("up grade", "upgrade"));
    LH_CHECK(!HT("", "upgrade"));
    LH_CHECK(!HT(" , ,", "upgrade"));
    LH_CHECK(!HT("a,b", ""));
    LH_CHECK(!lh_http_has_token("upgrade", 6, "upgrade"));
    LH_CHECK(lh_http_has_token("close,x", 5, "close"));
#undef HT
}

static int clen(const char *head, uint64_t *out)
{
    lh_http_request_t req;

    if (parse(head, &lim_default, &req) <= 0)
        return -99;
    return lh_http_content_length(&req, out);
}

LH_TEST(test_content_length)
{
    uint64_t v = 7;

    LH_CHECK_INT(clen("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &v), 0);
    LH_CHECK_INT(v, 0);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: 42\r\n\r\n", &v), 1);
    LH_CHECK_INT(v, 42);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\ncontent-length:0\r\n\r\n", &v), 1);
    LH_CHECK_INT(v, 0);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: 007\r\n\r\n", &v), 1);
    LH_CHECK_INT(v, 7);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: 18446744073709551615\r\n\r\n", &v), 1);
    LH_CHECK(v == UINT64_MAX);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: 5\r\nX: y\r\nCONTENT-LENGTH: 5\r\n\r\n",
                      &v),
                 1);
    LH_CHECK_INT(v, 5);

    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: 18446744073709551616\r\n\r\n", &v),
                 LH_PARSE_ERROR);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: 99999999999999999999\r\n\r\n", &v),
                 LH_PARSE_ERROR);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", &v),
                 LH_PARSE_ERROR);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: +5\r\n\r\n", &v), LH_PARSE_ERROR);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: -5\r\n\r\n", &v), LH_PARSE_ERROR);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length:\r\n\r\n", &v), LH_PARSE_ERROR);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: 5 5\r\n\r\n", &v), LH_PARSE_ERROR);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: 5, 5\r\n\r\n", &v), LH_PARSE_ERROR);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: 0x10\r\n\r\n", &v), LH_PARSE_ERROR);
    LH_CHECK_INT(clen("POST / HTTP/1.0\r\nContent-Length: 1e3\r\n\r\n", &v), LH_PARSE_ERROR);
}

LH_TEST(test_status_text)
{
    static const int codes[] = {101, 200, 204, 206, 301, 302, 304, 400, 401, 403, 404,
                                405, 408, 411, 413, 414, 415, 416, 426, 429, 431, 500,
                                501, 502, 503, 504, 505};
    size_t k;

    for (k = 0; k < LH_ARRAY_LEN(codes); k++)
        LH_CHECK(strcmp(lh_http_status_text(codes[k]), "Unknown") != 0);
    LH_CHECK(strcmp(lh_http_status_text(404), "Not Found") == 0);
    LH_CHECK(strcmp(lh_http_status_text(101), "Switching Protocols") == 0);
    LH_CHECK(strcmp(lh_http_status_text(431), "Request Header Fields Too Large") == 0);
    LH_CHECK(strcmp(lh_http_status_text(505), "HTTP Version Not Supported") == 0);
    LH_CHECK(strcmp(lh_http_status_text(0), "Unknown") == 0);
    LH_CHECK(strcmp(lh_http_status_text(299), "Unknown") == 0);
    LH_CHECK(strcmp(lh_http_status_text(-1), "Unknown") == 0);
}

int main(void)
{
    arena_init();
    LH_RUN(test_simple_get);
    LH_RUN(test_methods_and_targets);
    LH_RUN(test_method_ids_and_path_is);
    LH_RUN(test_absolute_form);
    LH_RUN(test_asterisk_form);
    LH_RUN(test_host);
    LH_RUN(test_valid_host);
    LH_RUN(test_pipelined);
    LH_RUN(test_bare_lf);
    LH_RUN(test_leading_empty_lines);
    LH_RUN(test_header_values);
    LH_RUN(test_errors_request_line);
    LH_RUN(test_errors_version);
    LH_RUN(test_errors_headers);
    LH_RUN(test_limit_request_line);
    LH_RUN(test_limit_head_bytes);
    LH_RUN(test_limit_header_count);
    LH_RUN(test_incomplete);
    LH_RUN(test_mutations);
    LH_RUN(test_find_header);
    LH_RUN(test_has_token);
    LH_RUN(test_content_length);
    LH_RUN(test_status_text);
    LH_DONE();
}
