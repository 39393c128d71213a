/*
 * Unit tests for lhttpc's pure parts: URL parsing, the handshake request and the check
 * of the server's answer, message building and the interactive line grammar, JSON
 * output. The client's sources are compiled in here (they have no main()).
 */
#include "lh_test.h"

#include "../../clients/lhttpc/handshake.c"
#include "../../clients/lhttpc/msg.c"
#include "../../clients/lhttpc/output.c"
#include "../../clients/lhttpc/url.c"

/* The key and accept value of RFC 6455 section 1.3. */
#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

LH_TEST(test_url_ok)
{
    lhc_url_t u;
    const char *err = NULL;

    LH_CHECK_INT(lhc_url_parse("ws://127.0.0.1:8081/ws", &u, &err), 0);
    LH_CHECK(strcmp(u.host, "127.0.0.1") == 0);
    LH_CHECK(strcmp(u.port, "8081") == 0);
    LH_CHECK(strcmp(u.hostport, "127.0.0.1:8081") == 0);
    LH_CHECK(strcmp(u.target, "/ws") == 0);

    LH_CHECK_INT(lhc_url_parse("WS://example.com", &u, &err), 0);
    LH_CHECK(strcmp(u.host, "example.com") == 0);
    LH_CHECK(strcmp(u.port, "80") == 0);
    LH_CHECK(strcmp(u.target, "/") == 0);

    LH_CHECK_INT(lhc_url_parse("ws://[::1]:9000?x=1", &u, &err), 0);
    LH_CHECK(strcmp(u.host, "::1") == 0);
    LH_CHECK(strcmp(u.port, "9000") == 0);
    LH_CHECK(strcmp(u.hostport, "[::1]:9000") == 0);
    LH_CHECK(strcmp(u.target, "/?x=1") == 0);

    LH_CHECK_INT(lhc_url_parse("ws://h:1/a/b?c=d", &u, &err), 0);
    LH_CHECK(strcmp(u.target, "/a/b?c=d") == 0);
    LH_CHECK_INT(u.tls, 0);

    /* wss:// (issue 19): TLS, port 443 by default. */
    LH_CHECK_INT(lhc_url_parse("wss://example.com/ws", &u, &err), 0);
    LH_CHECK_INT(u.tls, 1);
    LH_CHECK(strcmp(u.port, "443") == 0);
    LH_CHECK(strcmp(u.hostport, "example.com") == 0);
    LH_CHECK(strcmp(u.target, "/ws") == 0);
    LH_CHECK_INT(lhc_url_parse("WSS://[::1]:8443", &u, &err), 0);
    LH_CHECK(u.tls == 1 && strcmp(u.port, "8443") == 0 && strcmp(u.host, "::1") == 0);
}

LH_TEST(test_url_bad)
{
    static const char *const bad[] = {
        "wss:/h/",         "http://h/",     "h:80/",          "ws://",       "ws://:80/",
        "ws://h:0/",       "ws://h:65536/", "ws://h:8x/",     "ws://h:/",    "ws://[::1/",
        "ws://[::1]x/",    "ws://u@h/",     "ws://h/#frag",   "ws://h/a b",  "ws://h:123456/",
    };
    size_t i;

    for (i = 0; i < LH_ARRAY_LEN(bad); i++) {
        lhc_url_t u;
        const char *err = NULL;

        if (lhc_url_parse(bad[i], &u, &err) != -1 || err == NULL) {
            printf("# accepted %s\n", bad[i]);
            lh_t_failed_checks++;
        }
    }
}

LH_TEST(test_handshake_request)
{
    lhc_url_t u;
    const char *err;
    char req[1024];
    int n;

    LH_CHECK_INT(lhc_url_parse("ws://h:81/ws?a", &u, &err), 0);
    n = lhc_handshake_request(req, sizeof(req), &u, KEY, "http://o", "chat, x", NULL);
    LH_CHECK(n > 0);
    LH_CHECK(strncmp(req, "GET /ws?a HTTP/1.1\r\nHost: h:81\r\n", 32) == 0);
    LH_CHECK(strstr(req, "\r\nSec-WebSocket-Key: " KEY "\r\n") != NULL);
    LH_CHECK(strstr(req, "\r\nOrigin: http://o\r\n") != NULL);
    LH_CHECK(strstr(req, "\r\nSec-WebSocket-Protocol: chat, x\r\n") != NULL);
    LH_CHECK(n >= 4 && strcmp(req + n - 4, "\r\n\r\n") == 0);
    LH_CHECK(strstr(req, "Authorization") == NULL);
    n = lhc_handshake_request(req, sizeof(req), &u, KEY, NULL, NULL, NULL);
    LH_CHECK(n > 0 && strstr(req, "Origin") == NULL && strstr(req, "Protocol") == NULL);
    LH_CHECK_INT(lhc_handshake_request(req, sizeof(req), &u, KEY, "a\r\nX: y", NULL, NULL), -1);
    LH_CHECK_INT(lhc_handshake_request(req, 40, &u, KEY, NULL, NULL, NULL), -1);
    /* A token goes in the Authorization header, once, and may not inject lines. */
    n = lhc_handshake_request(req, sizeof(req), &u, KEY, NULL, NULL, "aa.bb.cc");
    LH_CHECK(n > 0 && strstr(req, "\r\nAuthorization: Bearer aa.bb.cc\r\n") != NULL);
    LH_CHECK(n > 0 && strstr(strstr(req, "Authorization") + 1, "Authorization") == NULL);
    LH_CHECK(n >= 4 && strcmp(req + n - 4, "\r\n\r\n") == 0);
    LH_CHECK_INT(lhc_handshake_request(req, sizeof(req), &u, KEY, NULL, NULL, "a\nX: y"), -1);
    LH_CHECK_INT(lhc_handshake_request(req, sizeof(req), &u, KEY, NULL, NULL, "a\rb"), -1);
}

LH_TEST(test_handshake_key)
{
    char a[25], b[25];

    LH_CHECK_INT(lhc_handshake_key(a), 0);
    LH_CHECK_INT(lhc_handshake_key(b), 0);
    LH_CHECK_INT(strlen(a), 24);
    LH_CHECK(strcmp(a, b) != 0);
    LH_CHECK(a[22] == '=' && a[23] == '=');
}

LH_TEST(test_head_len)
{
    LH_CHECK_INT(lhc_handshake_head_len("HTTP/1.1 101 x\r\n", 16), 0);
    LH_CHECK_INT(lhc_handshake_head_len("HTTP/1.1 101 x\r\n\r\nab", 20), 18);
    LH_CHECK_INT(lhc_handshake_head_len("HTTP/1.1 101 x\n\nab", 18), 16);
    LH_CHECK_INT(lhc_handshake_head_len("HTTP/1.1 101 x\r\nA: b\r\n\r", 23), 0);
}

/* Runs lhc_handshake_check on head; returns its result, the message in err. */
static int check(const char *head, const char *protocols, char *proto, char *err)
{
    return lhc_handshake_check(head, strlen(head), KEY, protocols, proto, 64, err, 256);
}

LH_TEST(test_handshake_check)
{
    char proto[64], err[256];

    LH_CHECK_INT(check("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
                       NULL, proto, err),
                 0);
    LH_CHECK(proto[0] == '\0');
    LH_CHECK_INT(check("HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, "
                       "upgrade\r\nsec-websocket-accept:" ACCEPT "\r\nSec-WebSocket-Protocol: "
                       "chat\r\n\r\n",
                       "x, chat", proto, err),
                 0);
    LH_CHECK(strcmp(proto, "chat") == 0);

    LH_CHECK_INT(check("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", NULL, proto, err),
                 -1);
    LH_CHECK(strcmp(err, "handshake refused: HTTP/1.1 403 Forbidden") == 0);
    LH_CHECK_INT(check("garbage\r\n\r\n", NULL, proto, err), -1);
    LH_CHECK(strstr(err, "garbage") != NULL);
    LH_CHECK_INT(check("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
                       NULL, proto, err),
                 -1);
    LH_CHECK(strstr(err, "Sec-WebSocket-Accept") != NULL);
    LH_CHECK_INT(check("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                       NULL, proto, err),
                 -1);
    LH_CHECK_INT(check("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " ACCEPT
                       "\r\n\r\n",
                       NULL, proto, err),
                 -1);
    LH_CHECK_INT(check("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: " ACCEPT "\r\nSec-WebSocket-Protocol: y\r\n\r\n",
                       "x", proto, err),
                 -1);
    LH_CHECK_INT(check("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: " ACCEPT "\r\nSec-WebSocket-Protocol: y\r\n\r\n",
                       NULL, proto, err),
                 -1);
    LH_CHECK_INT(check("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: " ACCEPT "\r\nSec-WebSocket-Extensions: "
                       "permessage-deflate\r\n\r\n",
                       NULL, proto, err),
                 -1);
}

/* Serializes m and compares it with want. */
static int serialized_is(const lhc_msg_t *m, const char *want)
{
    size_t len;
    char *s = lhc_msg_serialize(m, &len);
    int ok = s != NULL && len == strlen(want) && memcmp(s, want, len) == 0;

    if (!ok && s != NULL)
        printf("# serialized \"%.*s\"\n", (int)len, s);
    free(s);
    return ok;
}

LH_TEST(test_msg_build)
{
    lhc_msg_t m;
    const char *err = NULL;

    lhc_msg_init(&m);
    LH_CHECK_INT(lhc_msg_set_command(&m, "LHTTP/1.0 chat", 14, &err), 0);
    LH_CHECK(strcmp(m.command, "chat") == 0);
    LH_CHECK_INT(lhc_msg_add_header_line(&m, " to : bob ", 10, &err), 0);
    LH_CHECK_INT(lhc_msg_add_header_line(&m, "url:http://x:1/", 15, &err), 0);
    LH_CHECK_INT(lhc_msg_append_body(&m, "hi", 2, 100), 0);
    LH_CHECK(serialized_is(&m, "LHTTP/1.0 chat\r\nto:bob\r\nurl:http://x:1/\r\n\r\nhi"));
    LH_CHECK_INT(lhc_msg_append_body(&m, "x", 1, 2), -1);
    LH_CHECK_INT(lhc_msg_add_header_line(&m, "novalue", 7, &err), -1);
    LH_CHECK_INT(lhc_msg_add_header_line(&m, ":v", 2, &err), -1);
    LH_CHECK_INT(lhc_msg_add_header_line(&m, "a b:v", 5, &err), -1);
    LH_CHECK_INT(lhc_msg_set_command(&m, "LHTTP/2.0 chat", 14, &err), -1);
    LH_CHECK_INT(lhc_msg_set_command(&m, "two words", 9, &err), -1);
    LH_CHECK_INT(lhc_msg_set_command(&m, "a:b", 3, &err), -1);
    LH_CHECK_INT(lhc_msg_set_command(&m, "", 0, &err), -1);
    LH_CHECK(strcmp(m.command, "chat") == 0);
    lhc_msg_clear(&m);
    LH_CHECK_INT(lhc_msg_set_command(&m, "ping", 4, &err), 0);
    LH_CHECK(serialized_is(&m, "LHTTP/1.0 ping\r\n\r\n"));
    lhc_msg_clear(&m);
}

/* Feeds the lines of text (split at '\n') and returns the last result. */
static int feed(lhc_input_t *in, const char *text)
{
    const char *err = NULL, *p = text;
    int r = 0;

    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);

        r = lhc_input_line(in, p, n, &err);
        if (r != 0)
            return r;
        p += n + (nl != NULL);
    }
    return r;
}

LH_TEST(test_input_grammar)
{
    lhc_input_t in;

    lhc_input_init(&in, 1000);
    LH_CHECK_INT(feed(&in, "\n  \nchat\r\nto:bob\n\nline1\n..\n\nline3\n"), 0);
    LH_CHECK_INT(in.state, LHC_IN_BODY);
    LH_CHECK_INT(feed(&in, ".\n"), 1);
    LH_CHECK(serialized_is(&in.msg, "LHTTP/1.0 chat\r\nto:bob\r\n\r\nline1\n.\n\nline3"));
    lhc_input_reset(&in);

    /* "." in place of a header ends a message without body. */
    LH_CHECK_INT(feed(&in, "LHTTP/1.0 ping\na:1\n.\n"), 1);
    LH_CHECK(serialized_is(&in.msg, "LHTTP/1.0 ping\r\na:1\r\n\r\n"));
    lhc_input_reset(&in);

    /* An empty body: the empty line, then ".". */
    LH_CHECK_INT(feed(&in, "ping\n\n.\n"), 1);
    LH_CHECK(serialized_is(&in.msg, "LHTTP/1.0 ping\r\n\r\n"));
    lhc_input_reset(&in);

    /* Errors drop the message and wait for a command again. */
    LH_CHECK_INT(feed(&in, "bad command\n"), -1);
    LH_CHECK_INT(in.state, LHC_IN_COMMAND);
    LH_CHECK_INT(feed(&in, "chat\nnocolon\n"), -1);
    LH_CHECK_INT(in.state, LHC_IN_COMMAND);
    LH_CHECK(in.msg.command == NULL);
    lhc_input_free(&in);

    /* The body cap holds. */
    lhc_input_init(&in, 5);
    LH_CHECK_INT(feed(&in, "chat\n\nabc\n"), 0);
    LH_CHECK_INT(feed(&in, "d\n"), 0);
    LH_CHECK_INT(feed(&in, "e\n"), -1);
    lhc_input_free(&in);
}

/* Formats p[0..len) as JSON and compares it with want. */
static int json_is(int binary, const char *p, size_t len, const char *want)
{
    char *s = lhc_output_json(binary, (const uint8_t *)p, len);
    int ok = s != NULL && strcmp(s, want) == 0;

    if (!ok)
        printf("# json %s\n", s ? s : "(null)");
    free(s);
    return ok;
}

LH_TEST(test_output_json)
{
    static const char msg[] = "LHTTP/1.0 pong\r\nk:v:w\r\ne:\r\n\r\nhé\"\n";

    LH_CHECK(json_is(0, msg, sizeof(msg) - 1,
                     "{\"command\":\"pong\",\"headers\":[[\"k\",\"v:w\"],[\"e\",\"\"]],"
                     "\"body\":\"h\xc3\xa9\\\"\\n\",\"binary\":false}"));
    LH_CHECK(json_is(0, "not lhttp", 9,
                     "{\"command\":null,\"headers\":[],\"body\":\"not lhttp\",\"binary\":false}"));
    LH_CHECK(json_is(1, "LHTTP/1.0 b\r\n\r\n\xff\x00", 17,
                     "{\"command\":\"b\",\"headers\":[],\"body\":\"/wA=\",\"body_base64\":true,"
                     "\"binary\":true}"));
    LH_CHECK(json_is(1, "LHTTP/1.0 b\xff\r\n\r\nx", 17,
                     "{\"command\":null,\"headers\":[],\"body\":\"TEhUVFAvMS4wIGL/DQoNCng=\","
                     "\"body_base64\":true,\"binary\":true}"));
    LH_CHECK(json_is(1, "a\0b", 3,
                     "{\"command\":null,\"headers\":[],\"body\":\"a\\u0000b\",\"binary\":true}"));
    LH_CHECK(json_is(0, "", 0, "{\"command\":null,\"headers\":[],\"body\":\"\",\"binary\":false}"));
}

int main(void)
{
    LH_RUN(test_url_ok);
    LH_RUN(test_url_bad);
    LH_RUN(test_handshake_request);
    LH_RUN(test_handshake_key);
    LH_RUN(test_head_len);
    LH_RUN(test_handshake_check);
    LH_RUN(test_msg_build);
    LH_RUN(test_input_grammar);
    LH_RUN(test_output_json);
    LH_DONE();
}
