/*
 * echo: an example lhttpd module, and a template for a module that adds a command.
 *
 * What it does: registers a processor for one command (default "echo") that answers
 * every such message with a message of the same command carrying the same body, like
 * the demo of the original lhttp framework. The reply also carries the message's own
 * headers (so a client sees what the server saw, headers added by filters included, for
 * example the timestamp module's), except the built-in ones that act on a message
 * (subscribe, unsubscribe, publish, upstream, multipart). A multipart message (see
 * PROTOCOL.md) is answered with a listing of its parts instead of the body, which shows
 * how a processor walks the parts without copying them.
 *
 * Configuration (lhttpd.json):
 *
 *     "modules": [{
 *         "path": "/usr/lib/lhttpd/modules/echo.so",
 *         "config": {
 *             "command": "echo",            // the command to answer; default "echo"
 *             "pid_header": "x-worker-pid"  // optional: add the worker's pid as this header
 *         }
 *     }]
 *
 * The same module may be listed twice with different commands: each entry calls init
 * with its own config, and each registration keeps its own state.
 *
 * Build it out of tree against an installed lhttpd:
 *
 *     cc -std=c11 -Wall -Wextra -fPIC -shared -o echo.so echo.c \
 *        $(pkg-config --cflags --libs jansson)
 *
 * To write your own module, copy this file, rename the processor and the descriptor's
 * name, and keep the three rules every module follows:
 *   1. Everything runs on a worker's event loop thread: never block (no sleep, no
 *      blocking I/O, no synchronous network calls) in a callback.
 *   2. Pointers handed to a callback (the message, its headers, its body, its parts) are
 *      borrowed: copy what you need to keep after the callback returns.
 *   3. init runs once, in the master, before workers fork (and again, in a throw-away
 *      process, for `lhttpd -t`): it only reads its config and registers. Open sockets,
 *      files or threads lazily in the workers, for example in on_open.
 */
#define _POSIX_C_SOURCE 200809L

#include <lhttpd/lhttpd.h>

#include <errno.h>
#include <jansson.h> /* lhttpd links jansson: parse the config section with it */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_REPLY_HEADERS 64

/* One registration's settings, allocated by init and passed to callbacks as ud. It
 * lives as long as the process, like the registration that points to it. */
typedef struct {
    char command[65];     /* LHTTP commands are 1 to 64 bytes */
    char pid_header[128]; /* "" when not configured */
} echo_conf_t;

/* Headers that make lhttpd do something; echoing them back would be misleading. */
static int acting_header(const lh_header_t *h)
{
    static const char *const names[] = {"subscribe", "unsubscribe", "publish", "upstream",
                                        "multipart"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (h->key_len == strlen(names[i]) && strncasecmp(h->key, names[i], h->key_len) == 0)
            return 1;
    return 0;
}

/*
 * The body of the answer to a multipart message: for each part, a line
 * "part I: N bytes, H headers" followed by its headers, one "key: value" line each.
 * Returns a malloc'd buffer (the caller frees it) and its length, or NULL.
 */
static char *list_parts(const lh_msg_t *m, size_t *len)
{
    size_t n = lh_msg_part_count(m), need = 1, off = 0;
    lh_part_t p;
    char *out;

    /* Measure first, then write: one allocation, whatever the number of parts. */
    for (size_t i = 0; i < n; i++) {
        if (lh_msg_part(m, i, &p) != 0)
            return NULL;
        need += 64;
        for (size_t k = 0; k < p.num_headers; k++)
            need += p.headers[k].key_len + p.headers[k].value_len + 3;
    }
    out = malloc(need);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        lh_msg_part(m, i, &p);
        /* p.body points into the message: a processor reads it in place, no copy. */
        off += (size_t)snprintf(out + off, need - off, "part %zu: %zu bytes, %zu headers\n", i,
                                p.body_len, p.num_headers);
        for (size_t k = 0; k < p.num_headers; k++)
            off += (size_t)snprintf(out + off, need - off, "%.*s: %.*s\n",
                                    (int)p.headers[k].key_len, p.headers[k].key,
                                    (int)p.headers[k].value_len, p.headers[k].value);
    }
    *len = off;
    return out;
}

/* The processor: runs for every message whose command is ours. */
static void echo_on_message(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    const echo_conf_t *conf = ud;
    lh_header_t hs[MAX_REPLY_HEADERS + 2];
    size_t nh = 0, body_len, nparts_len = 0;
    const char *body = lh_msg_body(m, &body_len);
    char pid[24], nparts[24], *listing = NULL;
    int rc;

    for (size_t i = 0; i < lh_msg_header_count(m) && nh < MAX_REPLY_HEADERS; i++) {
        if (lh_msg_header_at(m, i, &hs[nh]) == 0 && !acting_header(&hs[nh]))
            nh++;
    }
    if (conf->pid_header[0] != '\0') {
        hs[nh].key = conf->pid_header;
        hs[nh].key_len = strlen(conf->pid_header);
        hs[nh].value = pid;
        hs[nh++].value_len = (size_t)snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    }
    if (lh_msg_part_count(m) > 0) {
        listing = list_parts(m, &body_len);
        if (listing == NULL) {
            lh_conn_send_error(c, m, 500, "echo: out of memory");
            return;
        }
        body = listing;
        nparts_len = (size_t)snprintf(nparts, sizeof(nparts), "%zu", lh_msg_part_count(m));
        hs[nh].key = "parts";
        hs[nh].key_len = 5;
        hs[nh].value = nparts;
        hs[nh++].value_len = nparts_len;
    }
    /* lh_conn_send copies everything: the buffers may be freed right after. */
    rc = lh_conn_send(c, conf->command, hs, nh, body, body_len);
    if (rc < 0 && rc != -EPIPE)
        lh_api_log(LH_API_LOG_DEBUG, "echo: conn %llu: send failed: %s",
                   (unsigned long long)lh_conn_id(c), strerror(-rc));
    free(listing);
}

/* Copies the string member key of obj into out, when present. Returns 0, or -1 with err. */
static int conf_string(json_t *obj, const char *key, char *out, size_t cap, char *err,
                       size_t errlen)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL)
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= cap) {
        snprintf(err, errlen, "\"%s\" must be a string of 1 to %zu bytes", key, cap - 1);
        return -1;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/*
 * init: reads the config section, checks it, registers. Returns 0, or non-zero with err
 * saying why: lhttpd then refuses to start (and `lhttpd -t` fails) with that reason.
 */
static int echo_init(const lh_module_ctx_t *ctx, char *err, size_t errlen)
{
    echo_conf_t *conf;
    json_error_t jerr;
    json_t *root, *v;
    const char *key;
    lh_processor_t p = {NULL, echo_on_message, NULL}; /* on_open and on_close: not needed */
    int rc = -1;

    root = json_loadb(ctx->config_json, ctx->config_len, 0, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "config: %s", jerr.text);
        return -1;
    }
    conf = calloc(1, sizeof(*conf));
    if (conf == NULL) {
        snprintf(err, errlen, "out of memory");
        json_decref(root);
        return -1;
    }
    strcpy(conf->command, "echo");
    /* Refuse unknown keys, like lhttpd does for its own: a typo should not pass. */
    json_object_foreach(root, key, v) {
        if (strcmp(key, "command") != 0 && strcmp(key, "pid_header") != 0) {
            snprintf(err, errlen, "config: unknown key \"%s\" (echo takes \"command\" and "
                     "\"pid_header\")", key);
            goto out;
        }
    }
    if (conf_string(root, "command", conf->command, sizeof(conf->command), err, errlen) != 0 ||
        conf_string(root, "pid_header", conf->pid_header, sizeof(conf->pid_header), err,
                    errlen) != 0)
        goto out;
    for (const char *c = conf->pid_header; *c; c++) {
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f || *c == ':') {
            snprintf(err, errlen, "config: \"pid_header\" must be a header name: visible "
                     "ASCII without ':'");
            goto out;
        }
    }
    rc = lh_register_processor(conf->command, &p, conf);
    if (rc != 0) {
        snprintf(err, errlen, "cannot register command \"%s\": %s", conf->command,
                 rc == -EINVAL ? "not a valid LHTTP command" : strerror(-rc));
        goto out;
    }
    lh_api_log(LH_API_LOG_INFO, "echo: answering command \"%s\"", conf->command);
    conf = NULL; /* now owned by the registration */
out:
    free(conf);
    json_decref(root);
    return rc == 0 ? 0 : -1;
}

/* The descriptor lhttpd looks for: API version, name, version, init. */
LH_MODULE("echo", "1.0", echo_init);
