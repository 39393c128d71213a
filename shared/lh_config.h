/*
 * Configuration: one JSON document (see etc/lhttpd.json and lhttpd.json(5)), parsed and
 * validated into an immutable lh_config_t. Pure: the caller reads the file. Unknown keys
 * are errors, so typos are caught by `lhttpd -t`.
 */
#ifndef LH_CONFIG_H
#define LH_CONFIG_H

#include "lh_common.h"

typedef struct {
    char **items;
    size_t n;
} lh_strlist_t;

typedef struct {
    char *name;    /* an LHTTP command */
    char *webhook; /* http(s) URL every message with that command is POSTed to */
} lh_command_cfg_t;

typedef struct {
    char *path;        /* shared object */
    char *config_json; /* its "config" section as compact JSON ("{}" when absent) */
} lh_module_cfg_t;

/* A verification key of auth.keys: exactly one of the three files is set. */
typedef struct {
    char *kid;             /* NULL: the key of tokens without a kid (never with jwks_file) */
    char *secret_file;     /* HMAC secret: the file's bytes, trailing CR/LF removed */
    char *public_key_file; /* PEM: RSA (RS256) or EC P-256 (ES256) */
    char *jwks_file;       /* a JWKS document: its keys with their kids */
} lh_key_cfg_t;

/* Namespace rules (namespaces.NAME.subscribe / .publish). */
enum { LH_SUB_ANY, LH_SUB_AUTHENTICATED, LH_SUB_OWNER, LH_SUB_TOKEN, LH_SUB_WEBHOOK };
enum { LH_PUB_ANY, LH_PUB_AUTHENTICATED, LH_PUB_SUBSCRIBERS, LH_PUB_NONE, LH_PUB_WEBHOOK };
/* Who may ask a presence channel's presence (namespaces.NAME.presence_read). */
enum { LH_PRES_SUBSCRIBERS, LH_PRES_SUBSCRIBE, LH_PRES_AUTHENTICATED, LH_PRES_ANY,
       LH_PRES_NONE };
#define LH_MAX_NAMESPACES 256

typedef struct {
    char *name;  /* "" is the default namespace (channels without a '.') */
    size_t len;
    int subscribe;  /* LH_SUB_* */
    int publish;    /* LH_PUB_* */
    int stamp_user; /* deliveries carry the server-set "sender" header */
    size_t history_size;     /* history: messages kept per channel; 0 = no history */
    unsigned long long history_ttl_ms; /* history: a message's longest stay; 0 = none */
    int presence;      /* "presence": its channels answer presence and presence-stats */
    int join_leave;    /* "join_leave": subscribers hear join and leave messages */
    int presence_read; /* LH_PRES_*: who may ask, default "subscribers" */
} lh_ns_cfg_t;

/* TLS of a listener (a "listen" entry's "tls", or a "tls_sockets" entry). */
typedef struct {
    char *cert_file; /* PEM chain, the leaf first */
    char *key_file;  /* PEM private key */
} lh_tls_cert_cfg_t;

typedef struct {
    lh_tls_cert_cfg_t *certs; /* certs[0]: cert_file/key_file, the default; then
                                 "certificates", chosen by SNI from their names */
    size_t ncerts;
    int min_version;    /* 0x0303 (TLS 1.2, the default) or 0x0304 (TLS 1.3) */
    char *ciphers;      /* TLS 1.2 cipher list (OpenSSL syntax); NULL: OpenSSL's default */
    char *ciphersuites; /* TLS 1.3 suites; NULL: OpenSSL's default */
    int sni_strict;     /* 1: an SNI name matching no certificate is refused */
} lh_tls_cfg_t;

/* "tls_sockets": a socket systemd passes with FileDescriptorName=name speaks TLS. */
typedef struct {
    char *name;
    lh_tls_cfg_t tls;
} lh_tls_socket_cfg_t;

/* Worker processes per generation, and alive at once over all generations (the serving
 * one, a starting one and those still draining after reloads). */
#define LH_MAX_WORKERS 1024
#define LH_MAX_WORKERS_ALIVE (4 * LH_MAX_WORKERS)

typedef struct lh_config_s {
    lh_strlist_t listen; /* "host:port", "[v6]:port" or ":port" */
    lh_tls_cfg_t **listen_tls; /* listen.n entries: the TLS of each, NULL when plain */
    lh_tls_socket_cfg_t *tls_sockets; /* "tls_sockets": {"NAME": {tls}} */
    size_t ntls_sockets;
    /* The certificates loaded for this configuration (worker/tls.c's lh_tls_store_t,
     * set by whoever loads them; freed with the config through tls_store_free). */
    void *tls_store;
    void (*tls_store_free)(void *store);
    int workers;         /* 1..1024; 0 means "auto" (number of CPUs), the default */
    unsigned max_workers_alive;   /* 1..LH_MAX_WORKERS_ALIVE; 0 (the default) means 4 x
                                     workers, at least 128; fixed at start */
    unsigned drain_timeout_ms;    /* old generation after a reload, default 300000 */
    unsigned shutdown_timeout_ms; /* clients' grace on stop, default 10000 */
    char *control_socket;         /* master's control socket, default /run/lhttpd/lhttpd.sock */

    struct {
        lh_strlist_t listen;     /* admin sockets opened by hand (systemd: the "admin" socket) */
        lh_tls_cfg_t **listen_tls; /* listen.n entries, NULL when plain (the default) */
        int endpoints_on_public; /* serve /livez /readyz /metrics on the public socket when
                                    there is no admin socket, default 1 */
    } admin;

    struct {
        lh_strlist_t servers; /* nats://host:port */
        char *subject_prefix; /* default "lhttp" */
        char *name;           /* connection name shown by nats-server, default "lhttpd" */
        size_t reconnect_buffer_bytes; /* publishes kept during an outage, default 8 MiB */
        char *publish;        /* "auto" (only when another worker or node needs it) or
                                 "always", default "auto" */
        unsigned peer_timeout_ms; /* another node is gone after this silence, default 5000 */
        unsigned stall_timeout_ms; /* a connection with no PONG this long is stalled and
                                      replaced, default 2000 */
        struct {
            char *stream;        /* name prefix of the history streams, default "LHTTP" */
            char *storage;       /* "file" (default) or "memory" */
            unsigned replicas;   /* 1..5, default 1 */
            int manage;          /* create and update the streams at start, default 1;
                                    0: only check that they exist */
            unsigned timeout_ms; /* a JetStream request's deadline, default 2000 */
            size_t max_read;     /* messages one history read or recovery returns at most,
                                    default 1000 */
        } jetstream;
    } nats;

    struct {
        lh_strlist_t paths;           /* default ["/", "/ws"] */
        lh_strlist_t echo_paths;      /* default [] */
        lh_strlist_t allowed_origins; /* default [] = any origin */
        unsigned ping_interval_ms;    /* silence before the server pings, default 30000 */
        unsigned close_timeout_ms;    /* wait for the peer's close frame, default 5000 */
    } websocket;

    struct {
        size_t max_message_bytes;  /* WebSocket message (all fragments), default 1 MiB */
        size_t max_headers;        /* LHTTP headers per message, default 32 */
        size_t max_header_line;    /* LHTTP command/header line, default 4096 */
        size_t send_queue_bytes;   /* per connection, default 4 MiB */
        size_t max_connections;    /* per worker, default 10000 */
        unsigned handshake_timeout_ms; /* HTTP head + upgrade must finish, default 10000 */
        unsigned idle_timeout_ms;  /* no frame from the client for this long: dropped, default 60000 */
        size_t max_channel_bytes;  /* default 128, at most 255 */
        size_t max_subscriptions;  /* channels per connection, default 256 */
        size_t max_multipart_parts; /* parts in one multipart message, default 64 */
    } limits;

    struct {
        size_t max_request_line;   /* 414 beyond, default 8192 */
        size_t max_header_bytes;   /* 431 beyond, default 16384 */
        size_t max_headers;        /* 431 beyond, default 64 */
        size_t max_body_bytes;     /* POST /publish body, 413 beyond, default 1 MiB */
        unsigned keepalive_timeout_ms; /* idle keep-alive HTTP connection, default 15000 */
    } http;

    struct {
        char *token; /* NULL = /publish needs no token */
    } publish;

    struct {
        lh_strlist_t allow;          /* URL prefixes a client may name; empty = disabled */
        unsigned timeout_ms;         /* whole exchange, default 5000 */
        unsigned connect_timeout_ms; /* default 2000 */
        size_t max_in_flight_per_conn; /* default 8: beyond, error 429 */
        size_t max_in_flight;        /* per worker, default 1024: beyond, error 429 */
        unsigned retries;            /* extra tries for GET/HEAD/PUT/DELETE, default 1 */
        unsigned retry_delay_ms;     /* before a retry, default 100 */
        char *header_prefix;         /* LHTTP headers as HTTP headers, default "X-Lhttp-" */
        int report_errors;           /* non-2xx and failures get an LHTTP error, default 1 */
        size_t max_response_bytes;   /* default 1 MiB: beyond, error 502 */
        unsigned max_redirects;      /* followed only inside the allow-list, default 3 */
        size_t max_idle_connections; /* kept-alive backend connections kept, default 64 */
        unsigned idle_timeout_ms;    /* idle backend connections closed after, default 30000 */
    } upstream;

    struct {
        char *connect;       /* POSTed before a handshake completes; non-2xx refuses it */
        char *disconnect;    /* POSTed when a client leaves (best effort) */
        char *subscribe;     /* decides subscriptions to "webhook" namespaces */
        char *publish;       /* decides publications to "webhook" namespaces */
        unsigned timeout_ms; /* default 3000 */
        size_t disconnect_queue; /* waiting for an in-flight slot, per worker, default 65536 */
    } webhooks;

    struct {
        int anonymous;          /* connections without a token allowed, default 1 */
        lh_key_cfg_t *keys;     /* verification keys, in order */
        size_t nkeys;
        lh_strlist_t algorithms; /* accepted, default all of HS256 HS384 HS512 RS256 ES256 */
        char *audience;         /* NULL: aud not checked */
        char *issuer;           /* NULL: iss not checked */
        unsigned leeway_s;      /* clock skew allowed for exp, nbf, iat, default 5 */
        size_t max_token_bytes; /* default 8192 */
        unsigned max_lifetime_s; /* exp at most this far ahead; 0 (default) = any */
        int require_exp;        /* tokens without exp refused, default 0 */
        unsigned expiry_grace_ms; /* after exp, time to refresh before 4401, default 10000 */
        unsigned timeout_ms;    /* anonymous off: time to send `auth`, default 10000 */
    } auth;

    struct {
        size_t max_list;          /* entries one presence answer lists at most, default 1000 */
        unsigned node_timeout_ms; /* a query waits this long for the workers it expects;
                                     those silent are left out, default 500 */
        unsigned join_leave_delay_ms; /* join/leave events of a channel within this time
                                         go out together, default 100 */
        size_t join_leave_batch;  /* entries in one batched join/leave at most, default 1000 */
        unsigned max_queries_per_conn; /* queries one connection has in flight at most, 8 */
        unsigned max_queries;     /* queries one worker gathers at once at most, 1024 */
    } presence;

    struct {
        int enabled;             /* hand WebSocket connections to the new generation on
                                    reload, default true */
        unsigned timeout_ms;     /* the whole handoff of one old worker at most, default 5000 */
        size_t max_record_bytes; /* one connection's record at most, default 1 MiB */
        size_t max_buffered;     /* messages the new worker keeps per channel until the
                                    connections arrive, default 4096 */
    } handoff;

    lh_ns_cfg_t *namespaces; /* "namespaces": {"NAME": {...}}; unlisted ones allow anything */
    size_t nnamespaces;

    lh_command_cfg_t *commands; /* "commands": {"NAME": {"webhook": URL}} */
    size_t ncommands;
    lh_module_cfg_t *modules; /* "modules": [{"path": ..., "config": {...}}] */
    size_t nmodules;

    struct {
        char *root;          /* NULL = no static files */
        size_t cache_bytes;  /* files are served from memory, read at worker start */
        unsigned max_age_s;  /* Cache-Control max-age for non-HTML files, default 300 */
    } static_files;

    struct {
        int level;      /* syslog level 0..7, default 6 (info) */
        int log_bodies; /* include message bodies in debug logs, default 0 */
    } log;
} lh_config_t;

/*
 * Parses and validates text[0..len) (JSON with // and block comments; text need not be
 * NUL-terminated). Returns a new config (free with lh_config_free), or NULL with err
 * (capacity errlen; may be NULL) holding one line "LINE:COL: problem", 1-based, columns
 * in characters: for a JSON syntax error, the position jansson reports; for a bad
 * value, the position of that value in the text and the key path
 * ("3:26: limits.max_message_bytes: must be an integer from 1 to 268435456"); for an
 * unknown key, its position ("1:12: unknown key \"limits.max_mesage_bytes\" (did you
 * mean ...?)"). Only the first error is reported. Bounds: see lhttpd.json(5).
 */
lh_config_t *lh_config_parse(const char *text, size_t len, char *err, size_t errlen);

/* A config with every default (as if parsed from "{}"). */
lh_config_t *lh_config_default(void);

/* Frees cfg; accepts NULL. */
void lh_config_free(lh_config_t *cfg);

/*
 * Combinations that are valid but probably not what was meant: writes one line per
 * warning ("limits.max_message_bytes (...) exceeds ...", no trailing newline on the last)
 * into buf (capacity cap, always NUL-terminated when cap > 0, cut if too small) and
 * returns how many there are. `lhttpd -t` prints them; the master logs them at start.
 */
size_t lh_config_warnings(const lh_config_t *cfg, char *buf, size_t cap);

/*
 * Splits "host:port" / "[v6]:port" / ":port" into host (brackets removed; "" for
 * ":port"; NUL-terminated, must fit hostcap; host NULL skips it) and port 1..65535.
 * Returns 0, or -1 when s is not of that form (a bare v6 address needs brackets).
 */
int lh_config_split_hostport(const char *s, char *host, size_t hostcap, unsigned *port);

/* The TLS of the listen (admin 0) or admin.listen (admin 1) entry with address addr, or
 * of the tls_sockets entry named addr (admin 2); NULL when plain or not found. */
const lh_tls_cfg_t *lh_config_tls_of(const lh_config_t *cfg, int admin, const char *addr);

/* 1 when both lists hold the same strings in the same order. */
int lh_strlist_equal(const lh_strlist_t *a, const lh_strlist_t *b);

#endif
