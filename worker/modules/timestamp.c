/*
 * timestamp: an example lhttpd module, and a template for a header filter.
 *
 * What it does: stamps every incoming LHTTP message, whatever its command, with a header
 * (default "x-server-time") holding the time the server received it, in milliseconds
 * since the Unix epoch. A header of that name sent by the client is replaced, so clients
 * cannot forge it. Filters run in registration order and modules register before the
 * built-in pub/sub filter, so the header is in everything that follows: other filters,
 * the processor, upstream requests, and the messages published to channels, which
 * subscribers on every worker and node receive with the stamp.
 *
 * Configuration (lhttpd.json):
 *
 *     "modules": [{
 *         "path": "/usr/lib/lhttpd/modules/timestamp.so",
 *         "config": { "header": "x-server-time" }   // optional; this is the default
 *     }]
 *
 * Messages published over HTTP (POST /publish) do not pass through header filters and
 * are not stamped.
 *
 * Build it out of tree against an installed lhttpd:
 *
 *     cc -std=c11 -Wall -Wextra -fPIC -shared -o timestamp.so timestamp.c \
 *        $(pkg-config --cflags --libs jansson)
 *
 * To write your own filter, copy this file. A filter's callbacks:
 *   before    runs before the message's processor, for every message (unknown commands
 *             too). Read or change the message; return LH_FILTER_STOP to end its
 *             processing (after replying with lh_conn_send_error, say), or
 *             LH_FILTER_CONTINUE.
 *   after     runs after the processor: logging, accounting.
 *   on_open, on_close   run for every connection: per-connection state goes in
 *             lh_conn_set_data and is freed in on_close.
 * Like every callback, they run on a worker's event loop and must not block. Each
 * lh_msg_set_header re-serializes the message once (its cost is the message's size),
 * so set all your headers in one filter call at most once each.
 */
#define _POSIX_C_SOURCE 200809L

#include <lhttpd/lhttpd.h>

#include <errno.h>
#include <jansson.h> /* lhttpd links jansson: parse the config section with it */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Allocated by init, passed to the callbacks as ud; lives as long as the process. */
typedef struct {
    char header[128];
} stamp_conf_t;

static int stamp_before(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    const stamp_conf_t *conf = ud;
    struct timespec ts;
    char ms[24];
    int rc;

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(ms, sizeof(ms), "%llu",
             (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000ull);
    rc = lh_msg_set_header(m, conf->header, ms);
    if (rc != 0) {
        /* -E2BIG: the message is at limits.max_message_bytes or max_headers. Stamping is
         * best effort: let the message through unstamped rather than refuse it. */
        lh_api_log(LH_API_LOG_DEBUG, "timestamp: conn %llu: not stamped: %s",
                   (unsigned long long)lh_conn_id(c), strerror(-rc));
    }
    return LH_FILTER_CONTINUE;
}

/* 1 when name is a valid LHTTP header key of at most max bytes (see PROTOCOL.md). */
static int header_name_ok(const char *name, size_t max)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] <= ' ' || (unsigned char)name[i] >= 0x7f || name[i] == ':')
            return 0;
    return 1;
}

static int stamp_init(const lh_module_ctx_t *ctx, char *err, size_t errlen)
{
    lh_filter_t f = {"timestamp", NULL, stamp_before, NULL, NULL};
    stamp_conf_t *conf;
    json_error_t jerr;
    json_t *root, *v;
    const char *key, *name = "x-server-time";
    int rc;

    root = json_loadb(ctx->config_json, ctx->config_len, 0, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "config: %s", jerr.text);
        return -1;
    }
    json_object_foreach(root, key, v) {
        if (strcmp(key, "header") != 0) {
            snprintf(err, errlen, "config: unknown key \"%s\" (timestamp takes \"header\")",
                     key);
            json_decref(root);
            return -1;
        }
    }
    v = json_object_get(root, "header");
    if (v != NULL)
        name = json_string_value(v); /* NULL when not a string: refused below */
    if (!header_name_ok(name, sizeof(conf->header) - 1)) {
        snprintf(err, errlen, "config: \"header\" must be a header name: 1 to %zu bytes of "
                 "visible ASCII without ':'", sizeof(conf->header) - 1);
        json_decref(root);
        return -1;
    }
    conf = calloc(1, sizeof(*conf));
    if (conf == NULL) {
        snprintf(err, errlen, "out of memory");
        json_decref(root);
        return -1;
    }
    memcpy(conf->header, name, strlen(name) + 1);
    json_decref(root); /* name pointed into it: copied above */
    rc = lh_register_filter(&f, conf);
    if (rc != 0) {
        snprintf(err, errlen, "cannot register the filter: %s", strerror(-rc));
        free(conf);
        return -1;
    }
    lh_api_log(LH_API_LOG_INFO, "timestamp: stamping every message with \"%s\"", conf->header);
    return 0;
}

LH_MODULE("timestamp", "1.0", stamp_init);
