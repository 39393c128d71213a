/*
 * libFuzzer target for the configuration parser: arbitrary text must give either a
 * config whose values are within their documented bounds, or an error of the form
 * "LINE:COL: ..."; never a crash, an overread or a leak.
 */
#include "lh_config.h"

#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c))                                                                        \
            abort();                                                                     \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1 when err starts with "LINE:COL: " (both decimal, at least 1). */
static int well_formed(const char *err)
{
    const char *p = err;
    int part;

    for (part = 0; part < 2; part++) {
        unsigned long v = 0;
        const char *start = p;

        while (*p >= '0' && *p <= '9')
            v = v * 10 + (unsigned long)(*p++ - '0');
        if (p == start || v == 0 || *p != ':')
            return 0;
        p++;
    }
    return *p == ' ' && p[1] != '\0';
}

static void check_list(const lh_strlist_t *l, size_t min, size_t max)
{
    size_t i;

    CHECK(l->n >= min && l->n <= max);
    for (i = 0; i < l->n; i++)
        CHECK(l->items[i] != NULL);
}

static void check_config(const lh_config_t *c)
{
    size_t i;
    char host[1100];
    unsigned port;

    check_list(&c->listen, 1, 64);
    for (i = 0; i < c->listen.n; i++) {
        CHECK(lh_config_split_hostport(c->listen.items[i], host, sizeof(host), &port) == 0);
        CHECK(port >= 1 && port <= 65535);
    }
    CHECK(c->workers >= 0 && c->workers <= 1024);
    check_list(&c->nats.servers, 1, 32);
    for (i = 0; i < c->nats.servers.n; i++)
        CHECK(strncmp(c->nats.servers.items[i], "nats://", 7) == 0);
    CHECK(c->nats.subject_prefix != NULL && strlen(c->nats.subject_prefix) >= 1 &&
          strlen(c->nats.subject_prefix) <= 64);
    CHECK(strpbrk(c->nats.subject_prefix, "*> ") == NULL);
    CHECK(c->nats.name != NULL);
    CHECK(c->nats.reconnect_buffer_bytes >= 1);
    check_list(&c->websocket.paths, 0, 64);
    for (i = 0; i < c->websocket.paths.n; i++)
        CHECK(c->websocket.paths.items[i][0] == '/');
    check_list(&c->websocket.echo_paths, 0, 64);
    check_list(&c->websocket.allowed_origins, 0, 256);
    CHECK(c->websocket.ping_interval_ms >= 1 && c->websocket.close_timeout_ms >= 1);
    CHECK(c->limits.max_message_bytes >= 1 && c->limits.max_message_bytes <= (256u << 20));
    CHECK(c->limits.max_headers >= 1 && c->limits.max_headers <= 256);
    CHECK(c->limits.max_header_line >= 74);
    CHECK(c->limits.max_channel_bytes >= 1 && c->limits.max_channel_bytes <= 255);
    CHECK(c->http.max_headers >= 1 && c->http.max_headers <= 128);
    CHECK(c->publish.token == NULL ||
          (strlen(c->publish.token) >= 1 && strlen(c->publish.token) <= 512));
    CHECK(c->log.level >= 3 && c->log.level <= 7);
    CHECK(c->log.log_bodies == 0 || c->log.log_bodies == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1), err[256];
    lh_config_t *c;

    if (text == NULL)
        return 0;
    if (size > 0)
        memcpy(text, data, size);
    memset(err, 'x', sizeof(err));
    c = lh_config_parse(text, size, err, sizeof(err));
    if (c != NULL) {
        check_config(c);
    } else {
        CHECK(memchr(err, '\0', sizeof(err)) != NULL);
        CHECK(well_formed(err));
    }
    lh_config_free(c);
    /* A tiny error buffer must be respected too. */
    c = lh_config_parse(text, size, err, 3);
    CHECK(c != NULL || strlen(err) <= 2);
    lh_config_free(c);
    free(text);
    return 0;
}
