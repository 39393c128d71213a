/* Unit tests for the configuration parser (shared/lh_config.c). */
#include "lh_test.h"

#include "lh_config.h"

static char errbuf[1024];

/* Parses text; returns the error message, or "ok" (freeing the config) when it parsed. */
static const char *err_of(const char *text)
{
    lh_config_t *c;

    errbuf[0] = '\0';
    c = lh_config_parse(text, strlen(text), errbuf, sizeof(errbuf));
    if (c != NULL) {
        lh_config_free(c);
        return "ok";
    }
    return errbuf;
}

#define CHECK_ERR(text, expected)                                                       \
    do {                                                                                 \
        const char *e_ = err_of(text);                                                   \
        LH_CHECK_MEM(e_, strlen(e_), expected);                                          \
    } while (0)

#define CHECK_OK(text) CHECK_ERR(text, "ok")

static lh_config_t *parse(const char *text)
{
    lh_config_t *c = lh_config_parse(text, strlen(text), errbuf, sizeof(errbuf));

    if (c == NULL)
        printf("# unexpected error: %s\n", errbuf);
    return c;
}

static int list_is(const lh_strlist_t *l, size_t n, const char *const *items)
{
    size_t i;

    if (l->n != n)
        return 0;
    for (i = 0; i < n; i++)
        if (strcmp(l->items[i], items[i]) != 0)
            return 0;
    return 1;
}

/* Identity and permissions (issue 17): without an "auth" or "namespaces" key, anyone may
 * connect, subscribe and publish, as before. */
static void check_auth_defaults(const lh_config_t *c)
{
    static const char *const algs[] = { "HS256", "HS384", "HS512", "RS256", "ES256" };

    LH_CHECK_INT(c->auth.anonymous, 1);
    LH_CHECK_INT(c->auth.nkeys, 0);
    LH_CHECK(list_is(&c->auth.algorithms, 5, algs));
    LH_CHECK(c->auth.audience == NULL);
    LH_CHECK(c->auth.issuer == NULL);
    LH_CHECK_INT(c->auth.leeway_s, 5);
    LH_CHECK_INT(c->auth.max_token_bytes, 8192);
    LH_CHECK_INT(c->auth.max_lifetime_s, 0);
    LH_CHECK_INT(c->auth.require_exp, 0);
    LH_CHECK_INT(c->auth.expiry_grace_ms, 10000);
    LH_CHECK_INT(c->auth.timeout_ms, 10000);
    LH_CHECK_INT(c->nnamespaces, 0);
    LH_CHECK(c->webhooks.subscribe == NULL);
    LH_CHECK(c->webhooks.publish == NULL);
}

static void check_defaults(const lh_config_t *c)
{
    static const char *const listen[] = { ":8081" };
    static const char *const servers[] = { "nats://127.0.0.1:4222" };
    static const char *const paths[] = { "/", "/ws" };

    LH_CHECK(list_is(&c->listen, 1, listen));
    LH_CHECK_INT(c->workers, 0);
    LH_CHECK_INT(c->drain_timeout_ms, 300000);
    LH_CHECK_INT(c->shutdown_timeout_ms, 10000);
    LH_CHECK(c->control_socket != NULL &&
             strcmp(c->control_socket, "/run/lhttpd/lhttpd.sock") == 0);
    LH_CHECK_INT(c->admin.listen.n, 0);
    LH_CHECK_INT(c->admin.endpoints_on_public, 1);
    LH_CHECK(list_is(&c->nats.servers, 1, servers));
    LH_CHECK_MEM(c->nats.subject_prefix, strlen(c->nats.subject_prefix), "lhttp");
    LH_CHECK_MEM(c->nats.name, strlen(c->nats.name), "lhttpd");
    LH_CHECK_INT(c->nats.reconnect_buffer_bytes, 8 * 1024 * 1024);
    LH_CHECK(c->nats.publish != NULL && strcmp(c->nats.publish, "auto") == 0);
    LH_CHECK_INT(c->nats.peer_timeout_ms, 5000);
    LH_CHECK_INT(c->nats.stall_timeout_ms, 2000);
    LH_CHECK(list_is(&c->websocket.paths, 2, paths));
    LH_CHECK_INT(c->websocket.echo_paths.n, 0);
    LH_CHECK_INT(c->websocket.allowed_origins.n, 0);
    LH_CHECK_INT(c->websocket.ping_interval_ms, 30000);
    LH_CHECK_INT(c->websocket.close_timeout_ms, 5000);
    LH_CHECK_INT(c->limits.max_message_bytes, 1024 * 1024);
    LH_CHECK_INT(c->limits.max_headers, 32);
    LH_CHECK_INT(c->limits.max_header_line, 4096);
    LH_CHECK_INT(c->limits.send_queue_bytes, 4 * 1024 * 1024);
    LH_CHECK_INT(c->limits.max_connections, 10000);
    LH_CHECK_INT(c->limits.handshake_timeout_ms, 10000);
    LH_CHECK_INT(c->limits.idle_timeout_ms, 60000);
    LH_CHECK_INT(c->limits.max_channel_bytes, 128);
    LH_CHECK_INT(c->limits.max_subscriptions, 256);
    LH_CHECK_INT(c->http.max_request_line, 8192);
    LH_CHECK_INT(c->http.max_header_bytes, 16384);
    LH_CHECK_INT(c->http.max_headers, 64);
    LH_CHECK_INT(c->http.max_body_bytes, 1024 * 1024);
    LH_CHECK_INT(c->http.keepalive_timeout_ms, 15000);
    LH_CHECK(c->publish.token == NULL);
    LH_CHECK_INT(c->log.level, 6);
    LH_CHECK_INT(c->log.log_bodies, 0);
    check_auth_defaults(c);
}

LH_TEST(defaults_from_empty_object)
{
    lh_config_t *c = parse("{}");

    LH_CHECK(c != NULL);
    if (c != NULL)
        check_defaults(c);
    lh_config_free(c);
    c = parse(" \n// nothing but a comment\n{ }\n");
    LH_CHECK(c != NULL);
    if (c != NULL)
        check_defaults(c);
    lh_config_free(c);
}

LH_TEST(config_default)
{
    lh_config_t *c = lh_config_default();

    LH_CHECK(c != NULL);
    if (c != NULL)
        check_defaults(c);
    lh_config_free(c);
    lh_config_free(NULL);
}

LH_TEST(empty_sections_keep_defaults)
{
    lh_config_t *c = parse("{\"listen\":[\":8081\"],\"nats\":{},\"websocket\":{},"
                           "\"limits\":{},\"http\":{},\"publish\":{},\"log\":{}}");

    LH_CHECK(c != NULL);
    if (c != NULL)
        check_defaults(c);
    lh_config_free(c);
}

/* The shipped etc/lhttpd.json must say exactly what the code's defaults are. */
LH_TEST(shipped_config_equals_defaults)
{
    char path[512], *text;
    const char *self = __FILE__, *cut = strstr(self, "tests/unit/test_config.c");
    FILE *f;
    long n;
    lh_config_t *c;

    snprintf(path, sizeof(path), "%.*setc/lhttpd.json", cut ? (int)(cut - self) : 0, self);
    f = fopen(path, "rb");
    LH_CHECK(f != NULL);
    if (f == NULL) {
        printf("# cannot open %s (run from the source tree)\n", path);
        return;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = malloc((size_t)n + 1);
    LH_CHECK_INT(fread(text, 1, (size_t)n, f), n);
    fclose(f);
    c = lh_config_parse(text, (size_t)n, errbuf, sizeof(errbuf));
    LH_CHECK(c != NULL);
    if (c == NULL)
        printf("# %s: %s\n", path, errbuf);
    else
        check_defaults(c);
    lh_config_free(c);
    free(text);
}

LH_TEST(full_config)
{
    static const char *const listen[] = { "127.0.0.1:9000", "[::1]:9001", ":9002" };
    static const char *const servers[] = { "nats://a:4222", "nats://u:p@b.example:4223" };
    static const char *const origins[] = { "https://example.com", "http://localhost:8080" };
    lh_config_t *c = parse(
        "{\n"
        "  \"listen\": [\"127.0.0.1:9000\", \"[::1]:9001\", \":9002\"],\n"
        "  \"workers\": 4,\n"
        "  \"nats\": { \"servers\": [\"nats://a:4222\", \"nats://u:p@b.example:4223\"],\n"
        "            \"subject_prefix\": \"app.lh-1_x\", \"name\": \"edge 1\",\n"
        "            \"reconnect_buffer_bytes\": 1024 },\n"
        "  \"websocket\": { \"paths\": [\"/lhttp\"], \"echo_paths\": [\"/echo\"],\n"
        "                 \"allowed_origins\": [\"https://example.com\", "
        "\"http://localhost:8080\"],\n"
        "                 \"ping_interval_ms\": 1000, \"close_timeout_ms\": 200 },\n"
        "  \"limits\": { \"max_message_bytes\": 65536, \"max_headers\": 256,\n"
        "              \"max_header_line\": 74, \"send_queue_bytes\": 1,\n"
        "              \"max_connections\": 7, \"handshake_timeout_ms\": 3,\n"
        "              \"idle_timeout_ms\": 4, \"max_channel_bytes\": 255,\n"
        "              \"max_subscriptions\": 1 },\n"
        "  \"http\": { \"max_request_line\": 16, \"max_header_bytes\": 1048576,\n"
        "            \"max_headers\": 128, \"max_body_bytes\": 5,\n"
        "            \"keepalive_timeout_ms\": 86400000 },\n"
        "  \"publish\": { \"token\": \"s3cr3t!\" },\n"
        "  \"log\": { \"level\": \"debug\", \"bodies\": true }\n"
        "}\n");

    LH_CHECK(c != NULL);
    if (c == NULL)
        return;
    LH_CHECK(list_is(&c->listen, 3, listen));
    LH_CHECK_INT(c->workers, 4);
    LH_CHECK(list_is(&c->nats.servers, 2, servers));
    LH_CHECK_MEM(c->nats.subject_prefix, strlen(c->nats.subject_prefix), "app.lh-1_x");
    LH_CHECK_MEM(c->nats.name, strlen(c->nats.name), "edge 1");
    LH_CHECK_INT(c->nats.reconnect_buffer_bytes, 1024);
    LH_CHECK_INT(c->websocket.paths.n, 1);
    LH_CHECK_MEM(c->websocket.paths.items[0], strlen(c->websocket.paths.items[0]), "/lhttp");
    LH_CHECK_INT(c->websocket.echo_paths.n, 1);
    LH_CHECK(list_is(&c->websocket.allowed_origins, 2, origins));
    LH_CHECK_INT(c->websocket.ping_interval_ms, 1000);
    LH_CHECK_INT(c->websocket.close_timeout_ms, 200);
    LH_CHECK_INT(c->limits.max_message_bytes, 65536);
    LH_CHECK_INT(c->limits.max_headers, 256);
    LH_CHECK_INT(c->limits.max_header_line, 74);
    LH_CHECK_INT(c->limits.send_queue_bytes, 1);
    LH_CHECK_INT(c->limits.max_connections, 7);
    LH_CHECK_INT(c->limits.handshake_timeout_ms, 3);
    LH_CHECK_INT(c->limits.idle_timeout_ms, 4);
    LH_CHECK_INT(c->limits.max_channel_bytes, 255);
    LH_CHECK_INT(c->limits.max_subscriptions, 1);
    LH_CHECK_INT(c->http.max_request_line, 16);
    LH_CHECK_INT(c->http.max_header_bytes, 1048576);
    LH_CHECK_INT(c->http.max_headers, 128);
    LH_CHECK_INT(c->http.max_body_bytes, 5);
    LH_CHECK_INT(c->http.keepalive_timeout_ms, 86400000);
    LH_CHECK_MEM(c->publish.token, strlen(c->publish.token), "s3cr3t!");
    LH_CHECK_INT(c->log.level, 7);
    LH_CHECK_INT(c->log.log_bodies, 1);
    lh_config_free(c);
}

LH_TEST(listen_key)
{
    CHECK_OK("{\"listen\":[\"localhost:1\", \"0.0.0.0:65535\", \"[fe80::1%eth0]:80\"]}");
    CHECK_ERR("{\"listen\":[]}", "1:11: listen: must have from 1 to 64 entries");
    CHECK_ERR("{\"listen\":\":80\"}", "1:11: listen: must be an array of \"host:port\" "
              "strings or {\"address\": ..., \"tls\": {...}} objects");
    CHECK_ERR("{\"listen\":[80]}", "1:12: listen[0]: must be a \"host:port\" string or an "
              "{\"address\": ..., \"tls\": ...} object");
    CHECK_ERR("{\"listen\":[\":80\", \":0\"]}",
              "1:19: listen[1]: must be \"host:port\", \"[ipv6]:port\" or \":port\" with a port "
              "from 1 to 65535");
    CHECK_ERR("{\"listen\":[\":65536\"]}",
              "1:12: listen[0]: must be \"host:port\", \"[ipv6]:port\" or \":port\" with a port "
              "from 1 to 65535");
    CHECK_ERR("{\"listen\":[\"::1:80\"]}",
              "1:12: listen[0]: must be \"host:port\", \"[ipv6]:port\" or \":port\" with a port "
              "from 1 to 65535");
    CHECK_ERR("{\"listen\":[\"8081\"]}",
              "1:12: listen[0]: must be \"host:port\", \"[ipv6]:port\" or \":port\" with a port "
              "from 1 to 65535");
    CHECK_ERR("{\"listen\":[\":80\", \":80\"]}", "1:19: listen[1]: \":80\" is listed twice");
}

LH_TEST(workers_key)
{
    lh_config_t *c = parse("{\"workers\": \"auto\"}");

    LH_CHECK(c != NULL && c->workers == 0);
    lh_config_free(c);
    c = parse("{\"workers\": 1024}");
    LH_CHECK(c != NULL && c->workers == 1024);
    lh_config_free(c);
    CHECK_ERR("{\"workers\": 0}", "1:13: workers: must be \"auto\" or an integer from 1 to 1024");
    CHECK_ERR("{\"workers\": 1025}",
              "1:13: workers: must be \"auto\" or an integer from 1 to 1024");
    CHECK_ERR("{\"workers\": -1}", "1:13: workers: must be \"auto\" or an integer from 1 to 1024");
    CHECK_ERR("{\"workers\": 2.0}",
              "1:13: workers: must be \"auto\" or an integer from 1 to 1024");
    CHECK_ERR("{\"workers\": \"4\"}",
              "1:13: workers: must be \"auto\" or an integer from 1 to 1024");
    CHECK_ERR("{\"workers\": null}",
              "1:13: workers: must be \"auto\" or an integer from 1 to 1024");
}

LH_TEST(max_workers_alive_key)
{
    lh_config_t *c = parse("{}");

    LH_CHECK(c != NULL && c->max_workers_alive == 0); /* derived by the master */
    lh_config_free(c);
    c = parse("{\"workers\": 2, \"max_workers_alive\": 2}");
    LH_CHECK(c != NULL && c->max_workers_alive == 2);
    lh_config_free(c);
    c = parse("{\"max_workers_alive\": 4096}");
    LH_CHECK(c != NULL && c->max_workers_alive == 4096);
    lh_config_free(c);
    /* With "auto" the master checks it against the CPU count at start. */
    c = parse("{\"workers\": \"auto\", \"max_workers_alive\": 1}");
    LH_CHECK(c != NULL && c->max_workers_alive == 1);
    lh_config_free(c);
    CHECK_ERR("{\"max_workers_alive\": 0}",
              "1:23: max_workers_alive: must be an integer from 1 to 4096");
    CHECK_ERR("{\"max_workers_alive\": 4097}",
              "1:23: max_workers_alive: must be an integer from 1 to 4096");
    CHECK_ERR("{\"workers\": 3, \"max_workers_alive\": 2}",
              "1:37: max_workers_alive: is 2, below workers (3): a generation would not fit");
}

LH_TEST(master_keys)
{
    lh_config_t *c = parse("{\"drain_timeout_ms\": 1, \"shutdown_timeout_ms\": 3600000,"
                           " \"control_socket\": \"/tmp/x.sock\", \"admin\": {\"listen\":"
                           " [\"127.0.0.1:9090\"], \"endpoints_on_public\": false}}");

    LH_CHECK(c != NULL);
    if (c != NULL) {
        LH_CHECK_INT(c->drain_timeout_ms, 1);
        LH_CHECK_INT(c->shutdown_timeout_ms, 3600000);
        LH_CHECK_MEM(c->control_socket, strlen(c->control_socket), "/tmp/x.sock");
        LH_CHECK_INT(c->admin.listen.n, 1);
        LH_CHECK_INT(c->admin.endpoints_on_public, 0);
    }
    lh_config_free(c);
    CHECK_ERR("{\"drain_timeout_ms\": 0}",
              "1:22: drain_timeout_ms: must be an integer from 1 to 86400000");
    CHECK_ERR("{\"shutdown_timeout_ms\": 3600001}",
              "1:25: shutdown_timeout_ms: must be an integer from 1 to 3600000");
    CHECK_ERR("{\"control_socket\": \"x.sock\"}", "1:20: control_socket: must be an absolute path");
    CHECK_ERR("{\"admin\": {\"listen\": [\"9090\"]}}",
              "1:23: admin.listen[0]: must be \"host:port\", \"[ipv6]:port\" or \":port\" with a "
              "port from 1 to 65535");
    CHECK_ERR("{\"admin\": {\"endpoints_on_public\": 1}}",
              "1:35: admin.endpoints_on_public: must be true or false");
}

LH_TEST(nats_section)
{
    CHECK_OK("{\"nats\":{\"servers\":[\"nats://[::1]:4222\"]}}");
    CHECK_ERR("{\"nats\":{\"servers\":[]}}", "1:20: nats.servers: must have from 1 to 32 entries");
    CHECK_ERR("{\"nats\":{\"servers\":[\"tls://a:1\"]}}",
              "1:21: nats.servers[0]: must be \"nats://host:port\" (optionally "
              "\"nats://user:password@host:port\")");
    CHECK_ERR("{\"nats\":{\"servers\":[\"nats://a\"]}}",
              "1:21: nats.servers[0]: must be \"nats://host:port\" (optionally "
              "\"nats://user:password@host:port\")");
    CHECK_ERR("{\"nats\":{\"servers\":[\"nats://:4222\"]}}",
              "1:21: nats.servers[0]: must be \"nats://host:port\" (optionally "
              "\"nats://user:password@host:port\")");
    CHECK_OK("{\"nats\":{\"publish\":\"always\",\"peer_timeout_ms\":1000}}");
    CHECK_OK("{\"nats\":{\"publish\":\"auto\",\"peer_timeout_ms\":3600000}}");
    CHECK_ERR("{\"nats\":{\"publish\":\"never\"}}",
              "1:20: nats.publish: must be \"auto\" or \"always\"");
    CHECK_ERR("{\"nats\":{\"publish\":true}}", "1:20: nats.publish: must be a string");
    CHECK_ERR("{\"nats\":{\"peer_timeout_ms\":999}}",
              "1:28: nats.peer_timeout_ms: must be an integer from 1000 to 3600000");
    CHECK_ERR("{\"nats\":{\"peer_timeout_ms\":3600001}}",
              "1:28: nats.peer_timeout_ms: must be an integer from 1000 to 3600000");
    CHECK_OK("{\"nats\":{\"stall_timeout_ms\":300}}");
    CHECK_OK("{\"nats\":{\"stall_timeout_ms\":3600000}}");
    CHECK_ERR("{\"nats\":{\"stall_timeout_ms\":299}}",
              "1:29: nats.stall_timeout_ms: must be an integer from 300 to 3600000");
    CHECK_ERR("{\"nats\":{\"stall_timeout_ms\":3600001}}",
              "1:29: nats.stall_timeout_ms: must be an integer from 300 to 3600000");
    CHECK_OK("{\"nats\":{\"subject_prefix\":\"a\"}}");
    CHECK_OK("{\"nats\":{\"subject_prefix\":\"a-b.c_d.E9\"}}");
    CHECK_OK("{\"nats\":{\"subject_prefix\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
             "aaaaaaaaaaa\"}}");
    CHECK_ERR("{\"nats\":{\"subject_prefix\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "aaaaaaaaaaaaaa\"}}",
              "1:27: nats.subject_prefix: must be 1 to 64 bytes of NATS tokens [A-Za-z0-9_-] "
              "separated by '.' (no wildcards)");
    CHECK_ERR("{\"nats\":{\"subject_prefix\":\"\"}}",
              "1:27: nats.subject_prefix: must be 1 to 64 bytes of NATS tokens [A-Za-z0-9_-] "
              "separated by '.' (no wildcards)");
    CHECK_ERR("{\"nats\":{\"subject_prefix\":\"a.>\"}}",
              "1:27: nats.subject_prefix: must be 1 to 64 bytes of NATS tokens [A-Za-z0-9_-] "
              "separated by '.' (no wildcards)");
    CHECK_ERR("{\"nats\":{\"subject_prefix\":\"a..b\"}}",
              "1:27: nats.subject_prefix: must be 1 to 64 bytes of NATS tokens [A-Za-z0-9_-] "
              "separated by '.' (no wildcards)");
    CHECK_ERR("{\"nats\":{\"subject_prefix\":\"a.\"}}",
              "1:27: nats.subject_prefix: must be 1 to 64 bytes of NATS tokens [A-Za-z0-9_-] "
              "separated by '.' (no wildcards)");
    CHECK_ERR("{\"nats\":{\"subject_prefix\":\"a b\"}}",
              "1:27: nats.subject_prefix: must be 1 to 64 bytes of NATS tokens [A-Za-z0-9_-] "
              "separated by '.' (no wildcards)");
    CHECK_ERR("{\"nats\":{\"name\":\"\"}}", "1:17: nats.name: must be 1 to 128 bytes");
    CHECK_ERR("{\"nats\":{\"name\":\"a\\nb\"}}",
              "1:17: nats.name: must not contain control characters");
    CHECK_ERR("{\"nats\":{\"name\":7}}", "1:17: nats.name: must be a string");
    CHECK_OK("{\"nats\":{\"reconnect_buffer_bytes\":1073741824}}");
    CHECK_ERR("{\"nats\":{\"reconnect_buffer_bytes\":1073741825}}",
              "1:35: nats.reconnect_buffer_bytes: must be an integer from 1 to 1073741824");
    CHECK_ERR("{\"nats\":[]}", "1:9: nats: must be an object");
}

LH_TEST(websocket_section)
{
    CHECK_OK("{\"websocket\":{\"paths\":[], \"echo_paths\":[\"/\"]}}");
    CHECK_ERR("{\"websocket\":{\"paths\":[\"ws\"]}}",
              "1:24: websocket.paths[0]: must start with '/' (at most 1024 bytes)");
    CHECK_ERR("{\"websocket\":{\"paths\":[\"/a?b\"]}}",
              "1:24: websocket.paths[0]: must be visible ASCII without '?' or '#'");
    CHECK_ERR("{\"websocket\":{\"paths\":[\"/a b\"]}}",
              "1:24: websocket.paths[0]: must be visible ASCII without '?' or '#'");
    CHECK_ERR("{\"websocket\":{\"echo_paths\":[\"/ws\"]}}",
              "1:29: websocket.echo_paths[0]: \"/ws\" is also in websocket.paths; a path is "
              "either LHTTP or echo");
    CHECK_ERR("{\"websocket\":{\"paths\":[\"/a\",\"/a\"]}}",
              "1:29: websocket.paths[1]: \"/a\" is listed twice");
    CHECK_OK("{\"websocket\":{\"allowed_origins\":[\"https://a.example.com\", \"http://[::1]:80\","
             " \"chrome-extension://abc\", \"http://127.0.0.1:8080\", \"HTTPS://Example.COM\"]}}");
    CHECK_ERR("{\"websocket\":{\"allowed_origins\":[\"https://example.com/\"]}}",
              "1:34: websocket.allowed_origins[0]: must be an origin like "
              "\"https://example.com\" or \"http://localhost:8080\": "
              "scheme://host[:port], no path and no trailing '/'");
    CHECK_ERR("{\"websocket\":{\"allowed_origins\":[\"example.com\"]}}",
              "1:34: websocket.allowed_origins[0]: must be an origin like "
              "\"https://example.com\" or \"http://localhost:8080\": "
              "scheme://host[:port], no path and no trailing '/'");
    CHECK_ERR("{\"websocket\":{\"allowed_origins\":[\"https://example.com/app\"]}}",
              "1:34: websocket.allowed_origins[0]: must be an origin like "
              "\"https://example.com\" or \"http://localhost:8080\": "
              "scheme://host[:port], no path and no trailing '/'");
    CHECK_ERR("{\"websocket\":{\"allowed_origins\":[\"https://example.com:0\"]}}",
              "1:34: websocket.allowed_origins[0]: must be an origin like "
              "\"https://example.com\" or \"http://localhost:8080\": "
              "scheme://host[:port], no path and no trailing '/'");
    CHECK_ERR("{\"websocket\":{\"ping_interval_ms\":0}}",
              "1:34: websocket.ping_interval_ms: must be an integer from 1 to 86400000");
    CHECK_ERR("{\"websocket\":{\"close_timeout_ms\":3600001}}",
              "1:34: websocket.close_timeout_ms: must be an integer from 1 to 3600000");
}

LH_TEST(limits_at_and_past_bounds)
{
    CHECK_OK("{\"limits\":{\"max_message_bytes\":268435456}}");
    CHECK_ERR("{\"limits\":{\"max_message_bytes\":268435457}}",
              "1:32: limits.max_message_bytes: must be an integer from 1 to 268435456");
    CHECK_ERR("{\"limits\":{\"max_message_bytes\":0}}",
              "1:32: limits.max_message_bytes: must be an integer from 1 to 268435456");
    CHECK_ERR("{\"limits\":{\"max_message_bytes\":\"1M\"}}",
              "1:32: limits.max_message_bytes: must be an integer from 1 to 268435456");
    CHECK_ERR("{\"limits\":{\"max_message_bytes\":1e3}}",
              "1:32: limits.max_message_bytes: must be an integer from 1 to 268435456");
    CHECK_OK("{\"limits\":{\"max_headers\":256}}");
    CHECK_ERR("{\"limits\":{\"max_headers\":257}}",
              "1:26: limits.max_headers: must be an integer from 1 to 256");
    CHECK_ERR("{\"limits\":{\"max_header_line\":73}}",
              "1:30: limits.max_header_line: must be an integer from 74 to 1048576");
    CHECK_ERR("{\"limits\":{\"max_header_line\":1048577}}",
              "1:30: limits.max_header_line: must be an integer from 74 to 1048576");
    CHECK_ERR("{\"limits\":{\"send_queue_bytes\":1073741825}}",
              "1:31: limits.send_queue_bytes: must be an integer from 1 to 1073741824");
    CHECK_OK("{\"limits\":{\"max_connections\":1000000}}");
    CHECK_ERR("{\"limits\":{\"max_connections\":1000001}}",
              "1:30: limits.max_connections: must be an integer from 1 to 1000000");
    CHECK_ERR("{\"limits\":{\"handshake_timeout_ms\":0}}",
              "1:35: limits.handshake_timeout_ms: must be an integer from 1 to 3600000");
    CHECK_ERR("{\"limits\":{\"idle_timeout_ms\":86400001}}",
              "1:30: limits.idle_timeout_ms: must be an integer from 1 to 86400000");
    CHECK_ERR("{\"limits\":{\"max_channel_bytes\":256}}",
              "1:32: limits.max_channel_bytes: must be an integer from 1 to 255");
    CHECK_ERR("{\"limits\":{\"max_subscriptions\":65537}}",
              "1:32: limits.max_subscriptions: must be an integer from 1 to 65536");
    CHECK_ERR("{\"limits\":{\"max_subscriptions\":true}}",
              "1:32: limits.max_subscriptions: must be an integer from 1 to 65536");
}

LH_TEST(http_at_and_past_bounds)
{
    CHECK_ERR("{\"http\":{\"max_request_line\":15}}",
              "1:29: http.max_request_line: must be an integer from 16 to 1048576");
    CHECK_ERR("{\"http\":{\"max_header_bytes\":1048577}}",
              "1:29: http.max_header_bytes: must be an integer from 16 to 1048576");
    CHECK_OK("{\"http\":{\"max_headers\":128}}");
    CHECK_ERR("{\"http\":{\"max_headers\":129}}",
              "1:24: http.max_headers: must be an integer from 1 to 128");
    CHECK_ERR("{\"http\":{\"max_body_bytes\":268435457}}",
              "1:27: http.max_body_bytes: must be an integer from 1 to 268435456");
    CHECK_ERR("{\"http\":{\"keepalive_timeout_ms\":-5}}",
              "1:33: http.keepalive_timeout_ms: must be an integer from 1 to 86400000");
}

LH_TEST(publish_token)
{
    char big[600];
    lh_config_t *c;

    c = parse("{\"publish\":{\"token\":null}}");
    LH_CHECK(c != NULL && c->publish.token == NULL);
    lh_config_free(c);
    CHECK_OK("{\"publish\":{\"token\":\"x\"}}");
    CHECK_ERR("{\"publish\":{\"token\":\"\"}}",
              "1:21: publish.token: must be null or a string of 1 to 512 visible ASCII "
              "characters");
    CHECK_ERR("{\"publish\":{\"token\":\"a b\"}}",
              "1:21: publish.token: must be null or a string of 1 to 512 visible ASCII "
              "characters");
    CHECK_ERR("{\"publish\":{\"token\":\"\\u00e9\"}}",
              "1:21: publish.token: must be null or a string of 1 to 512 visible ASCII "
              "characters");
    CHECK_ERR("{\"publish\":{\"token\":42}}",
              "1:21: publish.token: must be null or a string of 1 to 512 visible ASCII "
              "characters");
    memset(big, 0, sizeof(big));
    memcpy(big, "{\"publish\":{\"token\":\"", 21);
    memset(big + 21, 't', 512);
    memcpy(big + 21 + 512, "\"}}", 3);
    CHECK_OK(big);
    memset(big + 21, 't', 513);
    memcpy(big + 21 + 513, "\"}}", 3);
    CHECK_ERR(big, "1:21: publish.token: must be null or a string of 1 to 512 visible ASCII "
                   "characters");
}

LH_TEST(log_section)
{
    static const char *const names[] = { "err", "warning", "notice", "info", "debug" };
    char text[64];
    size_t i;

    for (i = 0; i < 5; i++) {
        lh_config_t *c;

        snprintf(text, sizeof(text), "{\"log\":{\"level\":\"%s\"}}", names[i]);
        c = parse(text);
        LH_CHECK(c != NULL);
        if (c != NULL)
            LH_CHECK_INT(c->log.level, 3 + (int)i);
        lh_config_free(c);
    }
    CHECK_ERR("{\"log\":{\"level\":\"INFO\"}}",
              "1:17: log.level: must be one of \"err\", \"warning\", \"notice\", \"info\", "
              "\"debug\"");
    CHECK_ERR("{\"log\":{\"level\":6}}",
              "1:17: log.level: must be one of \"err\", \"warning\", \"notice\", \"info\", "
              "\"debug\"");
    CHECK_OK("{\"log\":{\"bodies\":false}}");
    CHECK_ERR("{\"log\":{\"bodies\":\"yes\"}}", "1:18: log.bodies: must be true or false");
    CHECK_ERR("{\"log\":{\"bodies\":0}}", "1:18: log.bodies: must be true or false");
}

LH_TEST(auth_section)
{
    static const char *const algs[] = { "RS256", "HS512" };
    lh_config_t *c = parse(
        "{\"auth\": {\"anonymous\": false, \"algorithms\": [\"RS256\", \"HS512\"],\n"
        "  \"keys\": [{\"secret_file\": \"/k/s\"}, {\"kid\": \"rs-1\", \"public_key_file\": \"/k/r.pem\"},\n"
        "           {\"jwks_file\": \"/k/jwks.json\"}, {\"secret_file\": \"/k/t\", \"kid\": \"t\"}],\n"
        "  \"audience\": \"https://app.example/\", \"issuer\": \"auth.example\",\n"
        "  \"leeway_s\": 0, \"max_token_bytes\": 64, \"max_lifetime_s\": 315360000,\n"
        "  \"require_exp\": true, \"expiry_grace_ms\": 0, \"timeout_ms\": 1}}");

    LH_CHECK(c != NULL);
    if (c == NULL)
        return;
    LH_CHECK_INT(c->auth.anonymous, 0);
    LH_CHECK(list_is(&c->auth.algorithms, 2, algs));
    LH_CHECK_INT(c->auth.nkeys, 4);
    if (c->auth.nkeys == 4) {
        const lh_key_cfg_t *k = c->auth.keys;

        LH_CHECK(k[0].kid == NULL && k[0].secret_file != NULL &&
                 strcmp(k[0].secret_file, "/k/s") == 0 && k[0].public_key_file == NULL &&
                 k[0].jwks_file == NULL);
        LH_CHECK(k[1].kid != NULL && strcmp(k[1].kid, "rs-1") == 0 &&
                 k[1].public_key_file != NULL && strcmp(k[1].public_key_file, "/k/r.pem") == 0 &&
                 k[1].secret_file == NULL && k[1].jwks_file == NULL);
        LH_CHECK(k[2].kid == NULL && k[2].jwks_file != NULL &&
                 strcmp(k[2].jwks_file, "/k/jwks.json") == 0 && k[2].secret_file == NULL);
        LH_CHECK(k[3].kid != NULL && strcmp(k[3].kid, "t") == 0 && k[3].secret_file != NULL &&
                 strcmp(k[3].secret_file, "/k/t") == 0);
    }
    LH_CHECK(c->auth.audience != NULL && strcmp(c->auth.audience, "https://app.example/") == 0);
    LH_CHECK(c->auth.issuer != NULL && strcmp(c->auth.issuer, "auth.example") == 0);
    LH_CHECK_INT(c->auth.leeway_s, 0);
    LH_CHECK_INT(c->auth.max_token_bytes, 64);
    LH_CHECK_INT(c->auth.max_lifetime_s, 315360000);
    LH_CHECK_INT(c->auth.require_exp, 1);
    LH_CHECK_INT(c->auth.expiry_grace_ms, 0);
    LH_CHECK_INT(c->auth.timeout_ms, 1);
    lh_config_free(c);
    /* null is "not checked". */
    c = parse("{\"auth\": {\"audience\": null, \"issuer\": null}}");
    LH_CHECK(c != NULL && c->auth.audience == NULL && c->auth.issuer == NULL);
    lh_config_free(c);
}

LH_TEST(auth_at_and_past_bounds)
{
    CHECK_OK("{\"auth\":{\"leeway_s\":3600}}");
    CHECK_ERR("{\"auth\":{\"leeway_s\":3601}}",
              "1:21: auth.leeway_s: must be an integer from 0 to 3600");
    CHECK_ERR("{\"auth\":{\"leeway_s\":-1}}",
              "1:21: auth.leeway_s: must be an integer from 0 to 3600");
    CHECK_OK("{\"auth\":{\"max_token_bytes\":65536}}");
    CHECK_ERR("{\"auth\":{\"max_token_bytes\":65537}}",
              "1:28: auth.max_token_bytes: must be an integer from 64 to 65536");
    CHECK_ERR("{\"auth\":{\"max_token_bytes\":63}}",
              "1:28: auth.max_token_bytes: must be an integer from 64 to 65536");
    CHECK_OK("{\"auth\":{\"max_lifetime_s\":0}}");
    CHECK_ERR("{\"auth\":{\"max_lifetime_s\":315360001}}",
              "1:27: auth.max_lifetime_s: must be an integer from 0 to 315360000");
    CHECK_OK("{\"auth\":{\"expiry_grace_ms\":86400000}}");
    CHECK_ERR("{\"auth\":{\"expiry_grace_ms\":86400001}}",
              "1:28: auth.expiry_grace_ms: must be an integer from 0 to 86400000");
    CHECK_OK("{\"auth\":{\"timeout_ms\":3600000}}");
    CHECK_ERR("{\"auth\":{\"timeout_ms\":0}}",
              "1:23: auth.timeout_ms: must be an integer from 1 to 3600000");
    CHECK_ERR("{\"auth\":{\"timeout_ms\":3600001}}",
              "1:23: auth.timeout_ms: must be an integer from 1 to 3600000");
    CHECK_ERR("{\"auth\":{\"timeout_ms\":1.5}}",
              "1:23: auth.timeout_ms: must be an integer from 1 to 3600000");
    CHECK_ERR("{\"auth\":{\"anonymous\":1}}", "1:22: auth.anonymous: must be true or false");
    CHECK_ERR("{\"auth\":{\"require_exp\":\"yes\"}}",
              "1:24: auth.require_exp: must be true or false");
    CHECK_ERR("{\"auth\":\"x\"}", "1:9: auth: must be an object");
    CHECK_ERR("{\"auth\":{\"bogus\":1}}", "1:10: auth.bogus: unknown key");
}

LH_TEST(auth_algorithms_and_claims)
{
    CHECK_OK("{\"auth\":{\"algorithms\":[\"ES256\"]}}");
    CHECK_ERR("{\"auth\":{\"algorithms\":[]}}",
              "1:23: auth.algorithms: must have from 1 to 5 entries");
    CHECK_ERR("{\"auth\":{\"algorithms\":\"HS256\"}}",
              "1:23: auth.algorithms: must be an array of strings");
    CHECK_ERR("{\"auth\":{\"algorithms\":[\"HS256\",\"none\"]}}",
              "1:32: auth.algorithms[1]: must be one of \"HS256\", \"HS384\", \"HS512\", "
              "\"RS256\", \"ES256\"");
    /* Names are case-sensitive (RFC 7518 3.1). */
    CHECK_ERR("{\"auth\":{\"algorithms\":[\"hs256\"]}}",
              "1:24: auth.algorithms[0]: must be one of \"HS256\", \"HS384\", \"HS512\", "
              "\"RS256\", \"ES256\"");
    CHECK_ERR("{\"auth\":{\"algorithms\":[\"HS256\",\"HS256\"]}}",
              "1:32: auth.algorithms[1]: \"HS256\" is listed twice");
    CHECK_ERR("{\"auth\":{\"audience\":\"\"}}",
              "1:21: auth.audience: must be null or a string of 1 to 1024 visible ASCII "
              "characters");
    CHECK_ERR("{\"auth\":{\"audience\":\"a\\u0001\"}}",
              "1:21: auth.audience: must be null or a string of 1 to 1024 visible ASCII "
              "characters");
    CHECK_ERR("{\"auth\":{\"issuer\":42}}",
              "1:19: auth.issuer: must be null or a string of 1 to 1024 visible ASCII "
              "characters");
}

LH_TEST(auth_keys)
{
    char big[4096];
    size_t n;

    CHECK_OK("{\"auth\":{\"keys\":[]}}");
    CHECK_ERR("{\"auth\":{\"keys\":{}}}", "1:17: auth.keys: must be an array of key objects");
    CHECK_ERR("{\"auth\":{\"keys\":[1]}}",
              "1:18: auth.keys[0]: must be an object with \"kid\" and one of \"secret_file\", "
              "\"public_key_file\", \"jwks_file\"");
    CHECK_ERR("{\"auth\":{\"keys\":[{\"kid\":\"a\"}]}}",
              "1:18: auth.keys[0]: needs one of \"secret_file\", \"public_key_file\", "
              "\"jwks_file\"");
    /* The second entry's problem is named with its index and at its position. */
    CHECK_ERR("{\"auth\":{\"keys\":[{\"secret_file\":\"/a\"},\n {\"secret_file\":\"b\"}]}}",
              "2:17: auth.keys[1].secret_file: must be an absolute path");
    CHECK_ERR("{\"auth\":{\"keys\":[{\"public_key_file\":\"\"}]}}",
              "1:37: auth.keys[0].public_key_file: must be an absolute path");
    CHECK_ERR("{\"auth\":{\"keys\":[{\"jwks_file\":7}]}}",
              "1:31: auth.keys[0].jwks_file: must be an absolute path");
    CHECK_ERR("{\"auth\":{\"keys\":[{\"secret_file\":\"/a b\"}]}}",
              "1:33: auth.keys[0].secret_file: must be an absolute path");
    CHECK_ERR("{\"auth\":{\"keys\":[{\"secret_file\":\"/a\",\"public_key_file\":\"/b\"}]}}",
              "1:38: auth.keys[0].public_key_file: a key has one file; \"secret_file\" is set "
              "already");
    CHECK_ERR("{\"auth\":{\"keys\":[{\"jwks_file\":\"/j\",\"kid\":\"x\"}]}}",
              "1:36: auth.keys[0].kid: a JWKS file names its keys' kids itself");
    CHECK_ERR("{\"auth\":{\"keys\":[{\"kid\":\"\",\"secret_file\":\"/x\"}]}}",
              "1:25: auth.keys[0].kid: must be 1 to 1024 visible ASCII bytes");
    CHECK_ERR("{\"auth\":{\"keys\":[{\"kid\":\"a b\",\"secret_file\":\"/x\"}]}}",
              "1:25: auth.keys[0].kid: must be 1 to 1024 visible ASCII bytes");
    CHECK_ERR("{\"auth\":{\"keys\":[{\"kid\":7,\"secret_file\":\"/x\"}]}}",
              "1:25: auth.keys[0].kid: must be 1 to 1024 visible ASCII bytes");
    CHECK_ERR("{\"auth\":{\"keys\":[{\"secret_file\":\"/x\",\"file\":\"/y\"}]}}",
              "1:38: auth.keys[0].file: unknown key (a key takes \"kid\" and one of "
              "\"secret_file\", \"public_key_file\", \"jwks_file\")");
    /* 64 entries fit, 65 do not. */
    n = (size_t)snprintf(big, sizeof(big), "{\"auth\":{\"keys\":[");
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s{\"secret_file\":\"/s\"}", i ? "," : "");
    snprintf(big + n, sizeof(big) - n, "]}}");
    CHECK_OK(big);
    snprintf(big + n, sizeof(big) - n, ",{\"secret_file\":\"/s\"}]}}");
    CHECK_ERR(big, "1:17: auth.keys: at most 64 entries");
    /* anonymous false needs some way to authenticate. */
    CHECK_ERR("{\"auth\":{\"anonymous\":false}}",
              "1:22: auth.anonymous: is false, but there are no auth.keys and no "
              "webhooks.connect: no connection could ever authenticate");
    CHECK_OK("{\"auth\":{\"anonymous\":false,\"keys\":[{\"secret_file\":\"/s\"}]}}");
    CHECK_OK("{\"auth\":{\"anonymous\":false},\"webhooks\":{\"connect\":\"http://h/c\"}}");
}

/* The rules of namespace name in c, or NULL. */
static const lh_ns_cfg_t *ns_named(const lh_config_t *c, const char *name)
{
    for (size_t i = 0; i < c->nnamespaces; i++)
        if (c->namespaces[i].len == strlen(name) && strcmp(c->namespaces[i].name, name) == 0)
            return &c->namespaces[i];
    return NULL;
}

LH_TEST(namespaces_section)
{
    lh_config_t *c = parse(
        "{\"namespaces\": {\n"
        "  \"\": {\"subscribe\": \"any\", \"publish\": \"any\"},\n"
        "  \"chat\": {\"subscribe\": \"authenticated\", \"publish\": \"subscribers\", "
        "\"stamp_user\": true},\n"
        "  \"user\": {\"subscribe\": \"owner\", \"publish\": \"none\"},\n"
        "  \"feed\": {\"subscribe\": \"token\", \"publish\": \"authenticated\", "
        "\"stamp_user\": false},\n"
        "  \"ops\": {\"subscribe\": \"webhook\", \"publish\": \"webhook\"},\n"
        "  \"bare\": {},\n"
        "  \"a-b_c\": {\"publish\": \"none\"}},\n"
        " \"webhooks\": {\"subscribe\": \"http://127.0.0.1:9/sub\", "
        "\"publish\": \"https://hooks.example/pub\"}}");
    const lh_ns_cfg_t *ns;

    LH_CHECK(c != NULL);
    if (c == NULL)
        return;
    LH_CHECK_INT(c->nnamespaces, 7);
    LH_CHECK(c->webhooks.subscribe != NULL &&
             strcmp(c->webhooks.subscribe, "http://127.0.0.1:9/sub") == 0);
    LH_CHECK(c->webhooks.publish != NULL &&
             strcmp(c->webhooks.publish, "https://hooks.example/pub") == 0);
    ns = ns_named(c, "");
    LH_CHECK(ns != NULL && ns->len == 0 && ns->subscribe == LH_SUB_ANY &&
             ns->publish == LH_PUB_ANY && !ns->stamp_user);
    ns = ns_named(c, "chat");
    LH_CHECK(ns != NULL && ns->len == 4 && ns->subscribe == LH_SUB_AUTHENTICATED &&
             ns->publish == LH_PUB_SUBSCRIBERS && ns->stamp_user);
    ns = ns_named(c, "user");
    LH_CHECK(ns != NULL && ns->subscribe == LH_SUB_OWNER && ns->publish == LH_PUB_NONE);
    ns = ns_named(c, "feed");
    LH_CHECK(ns != NULL && ns->subscribe == LH_SUB_TOKEN &&
             ns->publish == LH_PUB_AUTHENTICATED && !ns->stamp_user);
    ns = ns_named(c, "ops");
    LH_CHECK(ns != NULL && ns->subscribe == LH_SUB_WEBHOOK && ns->publish == LH_PUB_WEBHOOK);
    /* What a namespace does not say is "any". */
    ns = ns_named(c, "bare");
    LH_CHECK(ns != NULL && ns->subscribe == LH_SUB_ANY && ns->publish == LH_PUB_ANY &&
             !ns->stamp_user);
    ns = ns_named(c, "a-b_c");
    LH_CHECK(ns != NULL && ns->subscribe == LH_SUB_ANY && ns->publish == LH_PUB_NONE);
    lh_config_free(c);
    c = parse("{\"namespaces\": {}}");
    LH_CHECK(c != NULL && c->nnamespaces == 0);
    lh_config_free(c);
}

LH_TEST(namespaces_errors)
{
    char big[16384];
    size_t n;

    CHECK_ERR("{\"namespaces\":[]}", "1:15: namespaces: must be an object of namespace names");
    CHECK_ERR("{\"namespaces\":{\"chat\":\"any\"}}",
              "1:23: namespaces.chat: must be an object like {\"subscribe\": \"any\", "
              "\"publish\": \"any\"}");
    CHECK_ERR("{\"namespaces\":{\"a.b\":{}}}",
              "1:16: namespaces.a.b: a namespace is \"\" or one channel token (channel "
              "characters, no '.')");
    CHECK_ERR("{\"namespaces\":{\"a*\":{}}}",
              "1:16: namespaces.a*: a namespace is \"\" or one channel token (channel "
              "characters, no '.')");
    CHECK_ERR("{\"namespaces\":{\">\":{}}}",
              "1:16: namespaces.>: a namespace is \"\" or one channel token (channel "
              "characters, no '.')");
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"subscribe\":\"everyone\"}}}",
              "1:36: namespaces.chat.subscribe: must be one of \"any\", \"authenticated\", "
              "\"owner\", \"token\", \"webhook\"");
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"subscribe\":1}}}",
              "1:36: namespaces.chat.subscribe: must be one of \"any\", \"authenticated\", "
              "\"owner\", \"token\", \"webhook\"");
    /* The publish rules are not the subscribe rules. */
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"publish\":\"owner\"}}}",
              "1:34: namespaces.chat.publish: must be one of \"any\", \"authenticated\", "
              "\"subscribers\", \"none\", \"webhook\"");
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"subscribe\":\"subscribers\"}}}",
              "1:36: namespaces.chat.subscribe: must be one of \"any\", \"authenticated\", "
              "\"owner\", \"token\", \"webhook\"");
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"stamp_user\":1}}}",
              "1:37: namespaces.chat.stamp_user: must be true or false");
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"subscrib\":\"any\"}}}",
              "1:24: namespaces.chat.subscrib: unknown key (a namespace takes \"subscribe\", "
              "\"publish\", \"stamp_user\", \"history\", \"presence\", \"join_leave\" and "
              "\"presence_read\")");
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"presence\":1}}}",
              "1:35: namespaces.chat.presence: must be true or false");
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"presence_read\":\"owner\"}}}",
              "1:40: namespaces.chat.presence_read: must be one of \"subscribers\", "
              "\"subscribe\", \"authenticated\", \"any\", \"none\"");
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"join_leave\":true,\"history\":{}}}}",
              "1:23: namespaces.chat: join_leave and history do not go together in one namespace");
    CHECK_ERR("{\"presence\":{\"max_list\":0}}",
              "1:25: presence.max_list: must be an integer from 1 to 100000");
    CHECK_ERR("{\"presence\":{\"max_queries_per_conn\":0}}",
              "1:37: presence.max_queries_per_conn: must be an integer from 1 to 1000");
    CHECK_ERR("{\"presence\":{\"max_queries\":100001}}",
              "1:28: presence.max_queries: must be an integer from 1 to 100000");
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"history\":{\"size\":0}}}}",
              "1:42: namespaces.chat.history.size: must be an integer from 1 to 1000000");
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"history\":{\"ttl_ms\":-1}}}}",
              "1:44: namespaces.chat.history.ttl_ms: must be an integer from 0 (no limit) to "
              "31536000000 (a year)");
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"history\":{\"sise\":1}}}}",
              "1:35: namespaces.chat.history.sise: unknown key (history takes \"size\" and "
              "\"ttl_ms\")");
    CHECK_ERR("{\"namespaces\":{\"chat\":{\"history\":5}}}",
              "1:34: namespaces.chat.history: must be null or an object like {\"size\": 100, "
              "\"ttl_ms\": 86400000}");
    CHECK_ERR("{\"nats\":{\"jetstream\":{\"storage\":\"disk\"}}}",
              "1:33: nats.jetstream.storage: must be \"file\" or \"memory\"");
    CHECK_ERR("{\"nats\":{\"jetstream\":{\"replicas\":6}}}",
              "1:34: nats.jetstream.replicas: must be an integer from 1 to 5");
    CHECK_ERR("{\"nats\":{\"jetstream\":{\"stream\":\"a.b\"}}}",
              "1:32: nats.jetstream.stream: must be 1 to 32 characters of [A-Za-z0-9_-]");
    /* A webhook rule needs its webhook, named at the rule. */
    CHECK_ERR("{\"namespaces\":{\"ops\":{\"subscribe\":\"webhook\"}}}",
              "1:35: namespaces.ops.subscribe: is \"webhook\" but webhooks.subscribe is not "
              "set");
    CHECK_ERR("{\"namespaces\":{\"ops\":{\"publish\":\"webhook\"}},\n"
              " \"webhooks\":{\"subscribe\":\"http://h/s\"}}",
              "1:33: namespaces.ops.publish: is \"webhook\" but webhooks.publish is not set");
    CHECK_OK("{\"namespaces\":{\"ops\":{\"subscribe\":\"webhook\"}},"
             "\"webhooks\":{\"subscribe\":\"http://h/s\"}}");
    CHECK_ERR("{\"webhooks\":{\"subscribe\":\"ftp://x\"}}",
              "1:26: webhooks.subscribe: null, or must be an http:// or https:// URL with a "
              "host");
    CHECK_ERR("{\"webhooks\":{\"publish\":\"\"}}",
              "1:24: webhooks.publish: must be null or a string of 1 to 4096 visible ASCII "
              "characters");
    /* 256 namespaces fit, 257 do not. */
    n = (size_t)snprintf(big, sizeof(big), "{\"namespaces\":{");
    for (int i = 0; i < 256; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"n%d\":{}", i ? "," : "", i);
    snprintf(big + n, sizeof(big) - n, "}}");
    CHECK_OK(big);
    snprintf(big + n, sizeof(big) - n, ",\"n256\":{}}}");
    CHECK_ERR(big, "1:15: namespaces: at most 256 namespaces");
}

LH_TEST(unknown_keys)
{
    CHECK_ERR("{\"limits\":{\"max_mesage_bytes\":1}}",
              "1:12: limits.max_mesage_bytes: unknown key (did you mean "
              "\"max_message_bytes\"?)");
    CHECK_ERR("{\n  \"listen\": [\":1\"],\n  \"wrokers\": 2\n}",
              "3:3: wrokers: unknown key (did you mean \"workers\"?)");
    CHECK_ERR("{\"LIMITS\":{}}", "1:2: LIMITS: unknown key (did you mean \"limits\"?)");
    CHECK_ERR("{\"tls\":{}}", "1:2: tls: unknown key");
    CHECK_ERR("{\"log\":{\"level\":\"info\",\"file\":\"/x\"}}", "1:24: log.file: unknown key");
    /* Odd bytes in a key are shown escaped. */
    CHECK_ERR("{\"a\\\"b\\n\":1}", "1:2: a\\x22b\\x0a: unknown key");
}

LH_TEST(root_must_be_object)
{
    CHECK_ERR("[]", "1:1: the configuration must be a JSON object");
    CHECK_ERR("\n  [1]", "2:3: the configuration must be a JSON object");
}

LH_TEST(syntax_errors)
{
    CHECK_ERR("", "1:1: '[' or '{' expected near end of file");
    CHECK_ERR("{", "1:1: string or '}' expected near end of file");
    CHECK_ERR("{\"listen\":[\":1\",]}", "1:17: unexpected token near ']'");
    CHECK_ERR("{\n  \"workers\": 2,\n}", "3:1: string or '}' expected near '}'");
    CHECK_ERR("{\"workers\": x}", "1:13: invalid token near 'x'");
    CHECK_ERR("{} {}", "1:4: end of file expected near '{'");
    CHECK_ERR("{\n\"log\": {},\n\"log\": {}\n}", "3:5: duplicate object key near '\"log\"'");
    CHECK_ERR("{\"workers\": 99999999999999999999}",
              "1:32: too big integer near '99999999999999999999'");
    CHECK_ERR("{\"nats\":{\"name\":\"a\\u0000b\"}}",
              "1:26: \\u0000 is not allowed without JSON_ALLOW_NUL near '\"a\\u0000b\"'");
    CHECK_ERR("# comment\n{}", "1:1: '[' or '{' expected near '#'");
}

LH_TEST(comments)
{
    lh_config_t *c = parse(
        "// lhttpd configuration\n"
        "{\n"
        "  /* where to listen */ \"listen\": [\":9000\" /* first */, \":9001\"], // two\n"
        "  \"nats\": {\n"
        "    // \"servers\": [\"bogus\"],\n"
        "    \"name\": \"a//b /* not a comment */\",\n"
        "    /* multi\n"
        "       line \" with a quote\n"
        "       comment */\n"
        "    \"subject_prefix\": \"x\"\n"
        "  }\n"
        "}\n"
        "// trailing, without a newline");

    LH_CHECK(c != NULL);
    if (c == NULL)
        return;
    LH_CHECK_INT(c->listen.n, 2);
    LH_CHECK_MEM(c->nats.name, strlen(c->nats.name), "a//b /* not a comment */");
    LH_CHECK_MEM(c->nats.subject_prefix, strlen(c->nats.subject_prefix), "x");
    LH_CHECK_INT(c->nats.servers.n, 1);
    lh_config_free(c);

    CHECK_OK("{\"nats\":{\"name\":\"\\\"//\\\\\"}}//");
    CHECK_OK("{}/**/");
    CHECK_OK("{/***/}");
    CHECK_OK("{}/* \xe2\x82\xac */");
}

LH_TEST(comment_errors)
{
    CHECK_ERR("{\"a\":1 /* x", "1:8: unterminated /* comment");
    CHECK_ERR("{}\n\n  /* x */ /*\n", "3:11: unterminated /* comment");
    CHECK_ERR("{}/", "1:3: end of file expected near '/'");
    /* A comment is white space: it does not join tokens or hide a missing comma. */
    CHECK_ERR("{\"workers\": 1/**/2}", "1:18: '}' expected near '2'");
    CHECK_ERR("{\"workers\": 1 // 2}\n", "2:1: '}' expected near end of file");
}

LH_TEST(value_positions_after_comments_and_utf8)
{
    /* Columns count characters, like jansson: the euro sign is one column. */
    CHECK_ERR("{ /* \xe2\x82\xac\xe2\x82\xac */ \"workers\": 0}",
              "1:23: workers: must be \"auto\" or an integer from 1 to 1024");
    CHECK_ERR("{\"nats\": {\"name\": \"\xe2\x82\xac\", \"subject_prefix\": \"*\"}}",
              "1:42: nats.subject_prefix: must be 1 to 64 bytes of NATS tokens [A-Za-z0-9_-] "
              "separated by '.' (no wildcards)");
    CHECK_ERR("// \xc3\xa9\xc3\xa9\n{\n\t\"limits\": {\n\t\t\"max_headers\": 0 // zero\n\t}\n}",
              "4:18: limits.max_headers: must be an integer from 1 to 256");
    CHECK_ERR("{\"listen\": [\":1\", /* \"x\", */ \"bad\"]}",
              "1:30: listen[1]: must be \"host:port\", \"[ipv6]:port\" or \":port\" with a port "
              "from 1 to 65535");
    /* A key spelled with escapes is the same key. */
    CHECK_ERR("{\"li\\u0073ten\": [\":1\", 5]}", "1:24: listen[1]: must be a \"host:port\" "
              "string or an {\"address\": ..., \"tls\": ...} object");
    /* A byte order mark is skipped and takes no column. */
    CHECK_ERR("\xef\xbb\xbf{\"workers\":0}",
              "1:12: workers: must be \"auto\" or an integer from 1 to 1024");
    /* Values of skipped keys may nest and hold brackets in strings. */
    CHECK_ERR("{\"nats\": {\"servers\": [\"nats://a:1\"], \"name\": \"[{\"},"
              " \"websocket\": {\"paths\": [\"/]}\", \"/x\"], \"ping_interval_ms\": -1}}",
              "1:111: websocket.ping_interval_ms: must be an integer from 1 to 86400000");
}

LH_TEST(error_buffer)
{
    char small[8];
    lh_config_t *c;

    memset(small, 'x', sizeof(small));
    c = lh_config_parse("[]", 2, small, sizeof(small));
    LH_CHECK(c == NULL);
    LH_CHECK_MEM(small, strlen(small), "1:1: th");
    LH_CHECK(lh_config_parse("[]", 2, NULL, 0) == NULL);
    c = lh_config_parse("{} garbage", 2, NULL, 0);
    LH_CHECK(c != NULL);
    lh_config_free(c);
}

LH_TEST(split_hostport)
{
    char host[64];
    unsigned port = 0;

    LH_CHECK_INT(lh_config_split_hostport("example.com:80", host, sizeof(host), &port), 0);
    LH_CHECK_MEM(host, strlen(host), "example.com");
    LH_CHECK_INT(port, 80);
    LH_CHECK_INT(lh_config_split_hostport("[::1]:8081", host, sizeof(host), &port), 0);
    LH_CHECK_MEM(host, strlen(host), "::1");
    LH_CHECK_INT(port, 8081);
    LH_CHECK_INT(lh_config_split_hostport(":65535", host, sizeof(host), &port), 0);
    LH_CHECK_MEM(host, strlen(host), "");
    LH_CHECK_INT(port, 65535);
    LH_CHECK_INT(lh_config_split_hostport("1.2.3.4:1", host, sizeof(host), &port), 0);
    LH_CHECK_MEM(host, strlen(host), "1.2.3.4");
    LH_CHECK_INT(port, 1);
    LH_CHECK_INT(lh_config_split_hostport(":0", host, sizeof(host), &port), -1);
    LH_CHECK_INT(lh_config_split_hostport(":65536", host, sizeof(host), &port), -1);
    LH_CHECK_INT(lh_config_split_hostport(":", host, sizeof(host), &port), -1);
    LH_CHECK_INT(lh_config_split_hostport("host", host, sizeof(host), &port), -1);
    LH_CHECK_INT(lh_config_split_hostport("host:", host, sizeof(host), &port), -1);
    LH_CHECK_INT(lh_config_split_hostport("host:8x", host, sizeof(host), &port), -1);
    LH_CHECK_INT(lh_config_split_hostport("host:+80", host, sizeof(host), &port), -1);
    LH_CHECK_INT(lh_config_split_hostport("::1:80", host, sizeof(host), &port), -1);
    LH_CHECK_INT(lh_config_split_hostport("[::1]80", host, sizeof(host), &port), -1);
    LH_CHECK_INT(lh_config_split_hostport("[::1]", host, sizeof(host), &port), -1);
    LH_CHECK_INT(lh_config_split_hostport("[]:80", host, sizeof(host), &port), -1);
    LH_CHECK_INT(lh_config_split_hostport("a b:80", host, sizeof(host), &port), -1);
    LH_CHECK_INT(lh_config_split_hostport("", host, sizeof(host), &port), -1);
    /* The host must fit, with its NUL. */
    LH_CHECK_INT(lh_config_split_hostport("abcd:1", host, 5, &port), 0);
    LH_CHECK_INT(lh_config_split_hostport("abcde:1", host, 5, &port), -1);
}

LH_TEST(warnings)
{
    char buf[512];
    lh_config_t *c = lh_config_default();

    LH_CHECK_INT(lh_config_warnings(c, buf, sizeof(buf)), 0);
    LH_CHECK(buf[0] == '\0');
    lh_config_free(c);
    /* The defaults (1 MiB messages, 4 MiB queue) are fine; a 16 MiB message is not. */
    c = parse("{\"limits\":{\"max_message_bytes\":16777216}}");
    LH_CHECK(c != NULL);
    if (c != NULL) {
        LH_CHECK_INT(lh_config_warnings(c, buf, sizeof(buf)), 1);
        LH_CHECK(strstr(buf, "limits.max_message_bytes (16777216) exceeds "
                             "limits.send_queue_bytes (4194304)") == buf);
        LH_CHECK_INT(lh_config_warnings(c, buf, 8), 1); /* cut, still terminated */
        LH_CHECK_INT(strlen(buf), 7);
    }
    lh_config_free(c);
    c = parse("{\"limits\":{\"max_message_bytes\":4194304}}");
    LH_CHECK(c != NULL);
    if (c != NULL)
        LH_CHECK_INT(lh_config_warnings(c, buf, sizeof(buf)), 0);
    lh_config_free(c);
}

/* TLS listeners (issue 19): listen entries as objects, their tls, tls_sockets. */
LH_TEST(tls_listen)
{
    lh_config_t *c = parse(
        "{\"listen\": [\":8081\", {\"address\": \"0.0.0.0:8443\", \"tls\": {"
        "\"cert_file\": \"/c.pem\", \"key_file\": \"/k.pem\", \"min_version\": \"1.3\","
        "\"certificates\": [{\"cert_file\": \"/c2.pem\", \"key_file\": \"/k2.pem\"}],"
        "\"ciphers\": \"ECDHE+AESGCM\", \"ciphersuites\": \"TLS_AES_128_GCM_SHA256\","
        "\"sni_strict\": true}}, {\"address\": \":8082\"}],"
        " \"admin\": {\"listen\": [{\"address\": \"127.0.0.1:9090\", \"tls\": "
        "{\"cert_file\": \"/a.pem\", \"key_file\": \"/a.key\"}}]},"
        " \"tls_sockets\": {\"https\": {\"cert_file\": \"/s.pem\", \"key_file\": \"/s.key\"}}}");
    const lh_tls_cfg_t *t;

    LH_CHECK(c != NULL);
    if (c == NULL)
        return;
    LH_CHECK_INT(c->listen.n, 3);
    LH_CHECK(strcmp(c->listen.items[1], "0.0.0.0:8443") == 0);
    LH_CHECK(c->listen_tls[0] == NULL && c->listen_tls[2] == NULL);
    t = lh_config_tls_of(c, 0, "0.0.0.0:8443");
    LH_CHECK(t != NULL && t == c->listen_tls[1]);
    if (t != NULL) {
        LH_CHECK_INT(t->ncerts, 2);
        LH_CHECK(strcmp(t->certs[0].cert_file, "/c.pem") == 0);
        LH_CHECK(strcmp(t->certs[1].key_file, "/k2.pem") == 0);
        LH_CHECK_INT(t->min_version, 0x0304);
        LH_CHECK(strcmp(t->ciphers, "ECDHE+AESGCM") == 0);
        LH_CHECK(strcmp(t->ciphersuites, "TLS_AES_128_GCM_SHA256") == 0);
        LH_CHECK_INT(t->sni_strict, 1);
    }
    LH_CHECK(lh_config_tls_of(c, 0, ":8081") == NULL);
    LH_CHECK(lh_config_tls_of(c, 0, ":9999") == NULL);
    t = lh_config_tls_of(c, 1, "127.0.0.1:9090");
    LH_CHECK(t != NULL && t->min_version == 0x0303 && t->sni_strict == 0 && t->ncerts == 1);
    t = lh_config_tls_of(c, 2, "https");
    LH_CHECK(t != NULL && strcmp(t->certs[0].key_file, "/s.key") == 0);
    LH_CHECK(lh_config_tls_of(c, 2, "http") == NULL);
    lh_config_free(c);

    CHECK_ERR("{\"listen\": [{\"tls\": {}}]}", "1:13: listen[0]: needs \"address\"");
    CHECK_ERR("{\"listen\": [{\"address\": \":1\", \"tsl\": {}}]}",
              "1:31: listen[0].tsl: unknown key (a listen entry takes \"address\" and \"tls\")");
    CHECK_ERR("{\"listen\": [{\"address\": \"x\"}]}",
              "1:25: listen[0].address: must be \"host:port\", \"[ipv6]:port\" or \":port\" "
              "with a port from 1 to 65535");
    CHECK_ERR("{\"listen\": [\":1\", {\"address\": \":1\"}]}",
              "1:31: listen[1].address: \":1\" is listed twice");
    CHECK_ERR("{\"listen\": [{\"address\": \":1\", \"tls\": {\"cert_file\": \"/c\"}}]}",
              "1:38: listen[0].tls: needs \"key_file\"");
    CHECK_ERR("{\"listen\": [{\"address\": \":1\", \"tls\": {\"cert_file\": \"c\", "
              "\"key_file\": \"/k\"}}]}",
              "1:52: listen[0].tls.cert_file: must be an absolute path");
    CHECK_ERR("{\"listen\": [{\"address\": \":1\", \"tls\": {\"cert_file\": \"/c\", "
              "\"key_file\": \"/k\", \"min_version\": \"1.1\"}}]}",
              "1:91: listen[0].tls.min_version: must be \"1.2\" or \"1.3\"");
    CHECK_ERR("{\"listen\": [{\"address\": \":1\", \"tls\": {\"cert_file\": \"/c\", "
              "\"key_file\": \"/k\", \"sni\": 1}}]}",
              "1:76: listen[0].tls.sni: unknown key (tls takes \"cert_file\", \"key_file\", "
              "\"certificates\", \"min_version\", \"ciphers\", \"ciphersuites\", \"sni_strict\")");
    CHECK_ERR("{\"tls_sockets\": {\"admin\": {\"cert_file\": \"/c\", \"key_file\": \"/k\"}}}",
              "1:18: tls_sockets.admin: a socket name is 1 to 255 visible ASCII bytes (the admin "
              "socket is \"admin\" and stays plain)");
}

/* The live connection handoff: on by default, every bound checked. */
LH_TEST(handoff_keys)
{
    lh_config_t *c = parse("{}");

    LH_CHECK(c != NULL);
    if (c != NULL) {
        LH_CHECK_INT(c->handoff.enabled, 0); /* off by default in this release */
        LH_CHECK_INT(c->handoff.timeout_ms, 5000);
        LH_CHECK_INT(c->handoff.max_record_bytes, 1 << 20);
        LH_CHECK_INT(c->handoff.max_buffered, 4096);
        lh_config_free(c);
    }
    c = parse("{\"handoff\": {\"enabled\": false, \"timeout_ms\": 10, "
              "\"max_record_bytes\": 4096, \"max_buffered\": 1}}");
    LH_CHECK(c != NULL);
    if (c != NULL) {
        LH_CHECK_INT(c->handoff.enabled, 0);
        LH_CHECK_INT(c->handoff.timeout_ms, 10);
        LH_CHECK_INT(c->handoff.max_record_bytes, 4096);
        LH_CHECK_INT(c->handoff.max_buffered, 1);
        lh_config_free(c);
    }
    CHECK_ERR("{\"handoff\": {\"timeout_ms\": 9}}",
              "1:28: handoff.timeout_ms: must be an integer from 10 to 3600000");
    CHECK_ERR("{\"handoff\": {\"max_record_bytes\": 4095}}",
              "1:34: handoff.max_record_bytes: must be an integer from 4096 to 67108864");
    CHECK_ERR("{\"handoff\": {\"max_buffered\": 0}}",
              "1:30: handoff.max_buffered: must be an integer from 1 to 1000000");
    CHECK_ERR("{\"handoff\": {\"enabled\": 1}}", "1:25: handoff.enabled: must be true or false");
    CHECK_ERR("{\"handoff\": {\"size\": 1}}", "1:14: handoff.size: unknown key");
}

int main(void)
{
    LH_RUN(defaults_from_empty_object);
    LH_RUN(config_default);
    LH_RUN(empty_sections_keep_defaults);
    LH_RUN(shipped_config_equals_defaults);
    LH_RUN(full_config);
    LH_RUN(listen_key);
    LH_RUN(workers_key);
    LH_RUN(max_workers_alive_key);
    LH_RUN(master_keys);
    LH_RUN(nats_section);
    LH_RUN(websocket_section);
    LH_RUN(limits_at_and_past_bounds);
    LH_RUN(http_at_and_past_bounds);
    LH_RUN(publish_token);
    LH_RUN(auth_section);
    LH_RUN(auth_at_and_past_bounds);
    LH_RUN(auth_algorithms_and_claims);
    LH_RUN(auth_keys);
    LH_RUN(namespaces_section);
    LH_RUN(namespaces_errors);
    LH_RUN(log_section);
    LH_RUN(unknown_keys);
    LH_RUN(root_must_be_object);
    LH_RUN(syntax_errors);
    LH_RUN(comments);
    LH_RUN(comment_errors);
    LH_RUN(value_positions_after_comments_and_utf8);
    LH_RUN(error_buffer);
    LH_RUN(split_hostport);
    LH_RUN(warnings);
    LH_RUN(tls_listen);
    LH_RUN(handoff_keys);
    LH_DONE();
}
