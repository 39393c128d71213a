/*
 * lhttpd's public C API: what processors, header filters and loadable modules use.
 * Installed as <lhttpd/lhttpd.h>. Everything runs on the worker's event loop thread; no
 * function here blocks. Pointers handed to callbacks are borrowed for the duration of the
 * callback only.
 */
#ifndef LHTTPD_H
#define LHTTPD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the functions of this API: the only symbols the lhttpd binary exports (it is
 * built with -fvisibility=hidden), so a module can call nothing else. */
#if defined(__GNUC__)
#define LH_API __attribute__((visibility("default")))
#else
#define LH_API
#endif

/* Bumped on any incompatible change; a module built for another version is refused. */
#define LH_API_VERSION 1

typedef struct lh_conn_s lh_conn_t; /* one WebSocket client connection */
typedef struct lh_msg_s lh_msg_t;   /* one incoming LHTTP message */

typedef struct {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
} lh_header_t;

/* ---- Reading a message (borrowed; valid during the callback) ---- */

LH_API const char *lh_msg_command(const lh_msg_t *m, size_t *len);
/* First header named key, case-insensitive; NULL when absent. */
LH_API const char *lh_msg_header(const lh_msg_t *m, const char *key, size_t *len);
LH_API size_t lh_msg_header_count(const lh_msg_t *m);
/* The i-th header (0-based); returns 0, or -1 when i is out of range. */
LH_API int lh_msg_header_at(const lh_msg_t *m, size_t i, lh_header_t *out);
LH_API const char *lh_msg_body(const lh_msg_t *m, size_t *len);
/* The message exactly as the client sent it. */
LH_API const char *lh_msg_raw(const lh_msg_t *m, size_t *len);

/*
 * Replaces (or adds) header key in m for everything that runs after the caller: later
 * filters, the processor, pub/sub (so a filter can stamp every published message) and
 * upstream. The message is re-serialized once per call. Returns 0, -EINVAL for an invalid
 * key or value, -E2BIG over the message limits, -ENOMEM.
 */
LH_API int lh_msg_set_header(lh_msg_t *m, const char *key, const char *value);

/* ---- Multipart messages (`multipart: o1 o2 ...`, see PROTOCOL.md) ---- */

#define LH_PART_HEADERS_MAX 32

typedef struct {
    lh_header_t headers[LH_PART_HEADERS_MAX];
    size_t num_headers;
    const char *body; /* points into the message: no copy */
    size_t body_len;
} lh_part_t;

/* Number of parts; 0 when the message has no multipart header. A message whose
 * multipart header is invalid never reaches processors (the client gets error 400). */
LH_API size_t lh_msg_part_count(const lh_msg_t *m);
/* Fills out with part i. Returns 0, or -1 when i is out of range. */
LH_API int lh_msg_part(const lh_msg_t *m, size_t i, lh_part_t *out);

/* ---- Acting on a connection ---- */

/* A number unique within the node's lifetime, for logs and backends. */
LH_API uint64_t lh_conn_id(const lh_conn_t *c);
/* The client's address as "ip:port". */
LH_API const char *lh_conn_peer(const lh_conn_t *c);

/*
 * Sends an LHTTP message (serialized once, queued without blocking). Returns 0, or a
 * negative errno: -EPIPE when the connection is closing, -ENOBUFS when the send queue is
 * over limits.send_queue_bytes (the connection is then closed with 4008), -EINVAL for an
 * invalid command or header, -ENOMEM when the message could not be queued (out of memory;
 * the connection may have been ended then, as when a write fails).
 */
LH_API int lh_conn_send(lh_conn_t *c, const char *command, const lh_header_t *headers, size_t n,
                 const void *body, size_t body_len);
/* Sends bytes as one WebSocket text message, as is. Same returns as lh_conn_send. */
LH_API int lh_conn_send_raw(lh_conn_t *c, const void *data, size_t len);
/*
 * Sends an LHTTP error reply ("LHTTP/1.0 error" with code, reason and, when m is given,
 * in-reply-to: its command). The connection stays open.
 */
LH_API int lh_conn_send_error(lh_conn_t *c, const lh_msg_t *m, int code, const char *reason);
/* Starts the close handshake with code and reason (reason may be NULL). */
LH_API void lh_conn_close(lh_conn_t *c, uint16_t code, const char *reason);

/*
 * Per-connection slot for one module's state: a pointer owned by the module, which must
 * free it in its on_close. Keyed by the address of anything the module owns.
 */
LH_API void *lh_conn_get_data(const lh_conn_t *c, const void *key);
LH_API int lh_conn_set_data(lh_conn_t *c, const void *key, void *data);

/* ---- Pub/sub: channels across workers and nodes, through NATS ---- */

/*
 * Subscribes c to channel (see PROTOCOL.md for valid names). Idempotent. Returns 0,
 * -EINVAL for an invalid name, -ENOSPC over limits.max_subscriptions, -ENOMEM, or
 * -EPIPE when c is closing (its close frame is out) or dead: nothing was subscribed.
 */
LH_API int lh_subscribe(lh_conn_t *c, const char *channel, size_t len);
/* Unsubscribes c from channel; 0 also when it was not subscribed. */
LH_API int lh_unsubscribe(lh_conn_t *c, const char *channel, size_t len);
/*
 * Publishes msg (a whole LHTTP message, delivered byte for byte) to channel: at once to
 * this worker's subscribers, and through NATS to every other worker and node. Returns the
 * number of local deliveries (>= 0), -EINVAL for an invalid name, or -EAGAIN when NATS is
 * unreachable and its outage buffer (nats.reconnect_buffer_bytes) is full; local
 * subscribers still got the message then.
 */
LH_API long lh_publish(const char *channel, size_t len, const void *msg, size_t msg_len);

/* ---- Processors: behaviour for one command ---- */

typedef struct {
    /* Every processor's on_open runs when a WebSocket connection opens. */
    void (*on_open)(lh_conn_t *c, void *ud);
    /* Runs for each message whose command is the processor's. */
    void (*on_message)(lh_conn_t *c, lh_msg_t *m, void *ud);
    /* Every processor's on_close runs when the connection ends, however it ends. */
    void (*on_close)(lh_conn_t *c, void *ud);
} lh_processor_t;

/* Registers p (copied) for command; a later registration for the same command wins.
 * Returns 0, -EINVAL for an invalid command, -ENOMEM. */
LH_API int lh_register_processor(const char *command, const lh_processor_t *p, void *ud);

/* ---- Header filters: run on every message, whatever its command ---- */

enum { LH_FILTER_CONTINUE = 0, LH_FILTER_STOP = 1 };

typedef struct {
    const char *name;
    void (*on_open)(lh_conn_t *c, void *ud);
    /* Before the processor; LH_FILTER_STOP ends processing of this message (the filter
     * has replied or decided to drop it). Runs for unknown commands too. */
    int (*before)(lh_conn_t *c, lh_msg_t *m, void *ud);
    /* After the processor (or after the filters when no processor matched). */
    void (*after)(lh_conn_t *c, lh_msg_t *m, void *ud);
    void (*on_close)(lh_conn_t *c, void *ud);
} lh_filter_t;

/* Appends f (copied) to the filter chain; filters run in registration order. */
LH_API int lh_register_filter(const lh_filter_t *f, void *ud);

/* ---- Logging (to the journal, with the worker's tag) ---- */

enum { LH_API_LOG_ERR = 3, LH_API_LOG_WARNING = 4, LH_API_LOG_NOTICE = 5, LH_API_LOG_INFO = 6,
       LH_API_LOG_DEBUG = 7 };
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
LH_API void lh_api_log(int level, const char *fmt, ...);

/* ---- Loadable modules ---- */

typedef struct {
    const char *path;        /* the shared object */
    const char *config_json; /* the module's "config" section as compact JSON ("{}") */
    size_t config_len;
} lh_module_ctx_t;

typedef struct {
    uint32_t api_version; /* LH_API_VERSION the module was built against */
    const char *name;
    const char *version;
    /*
     * Runs once in the master, before workers fork (so every worker, of every generation,
     * inherits what it registers): register processors and filters here. Returns 0, or
     * non-zero with err (errlen bytes) saying why lhttpd must not start.
     */
    int (*init)(const lh_module_ctx_t *ctx, char *err, size_t errlen);
} lh_module_t;

/* A module exports exactly one lh_module_t under this name (extern and visible, so that
 * it is exported from C++ and with -fvisibility=hidden too): */
#define LH_MODULE_SYMBOL "lhttpd_module"
#if defined(__GNUC__)
#define LH_MODULE_EXPORT __attribute__((visibility("default")))
#else
#define LH_MODULE_EXPORT
#endif
extern LH_MODULE_EXPORT const lh_module_t lhttpd_module;
#define LH_MODULE(name, version, init) \
    LH_MODULE_EXPORT const lh_module_t lhttpd_module = {LH_API_VERSION, (name), (version), (init)}

#ifdef __cplusplus
}
#endif
#endif
