/*
 * lhttp-bench: a load generator for lhttpd and for comparable WebSocket pub/sub servers
 * (nchan). Internal interfaces between its files; every symbol carries the prefix lhb_.
 *
 * hist.c  log-linear latency histogram (pure)
 * msg.c   the messages: building a publish, checking a delivery, the servers' metadata (pure)
 * loop.c  one process's event loop: connections, handshakes, frames, subscribers
 * pub.c   publishing over WebSocket or HTTP, at full speed under a window or at a rate;
 *         the phases of a --recover run
 * main.c  options, the processes, the phases and the report
 *
 * Model: the subscribers are split over one or more processes (each under the open-file
 * limit); process 0 also holds the publishers and drives the phases through a shared
 * memory block (lhb_shared_t). A run is: setup (connect, handshake, subscribe), warm-up
 * (a probe to every channel until every subscriber saw one, so no subscription is still
 * in flight), measure (publish), drain (wait for every expected delivery), report.
 * A --recover run replaces measure and drain: park (every subscriber closes), publish
 * (the messages the subscribers miss), recover (every subscriber reconnects at once,
 * resuming from the last message it saw, until each has every message it missed).
 */
#ifndef LHB_BENCH_H
#define LHB_BENCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

struct ssl_st;
struct ssl_session_st;
struct ssl_ctx_st;

#define LHB_MAX_PROCS 32
#define LHB_MAX_SRC 250

/* ---- hist.c ---- */

/* Values (nanoseconds) in buckets of 1/64 of a power of two: at most 1.6% off. */
#define LHB_HIST_SUB 64
#define LHB_HIST_N (60 * LHB_HIST_SUB)

typedef struct {
    uint64_t n[LHB_HIST_N];
    uint64_t count, max, sum;
} lhb_hist_t;

void lhb_hist_add(lhb_hist_t *h, uint64_t v);
void lhb_hist_merge(lhb_hist_t *dst, const lhb_hist_t *src);
/* The value at quantile q (0..1): the upper bound of its bucket, capped at the max. */
uint64_t lhb_hist_quantile(const lhb_hist_t *h, double q);

/* ---- msg.c ---- */

enum { LHB_TARGET_LHTTP = 0, LHB_TARGET_NCHAN = 1 };

/* The trailer that ends every message: kind ('M' measured, 'P' probe), 8 hex digits of
 * the channel's sequence number, 16 hex digits of CLOCK_MONOTONIC nanoseconds. */
#define LHB_TRAILER 25
#define LHB_KIND_MEASURED 'M'
#define LHB_KIND_PROBE 'P'

/* Channel name of index i: prefix then the decimal index. Returns its length. */
size_t lhb_channel_name(char *out, size_t cap, const char *prefix, uint32_t i);

/*
 * Writes into out (capacity cap) the message that subscribers of channel ch receive:
 * for lhttpd an LHTTP message with a publish header, for nchan the bare body; padded so
 * that it is exactly size bytes, and ended by the trailer. Returns size, or 0 when size
 * is too small to hold the head and the trailer.
 */
size_t lhb_msg_build(uint8_t *out, size_t cap, int target, const char *ch, size_t chlen,
                     size_t size, int kind, uint32_t seq, uint64_t t_ns);

/* Smallest size that lhb_msg_build accepts for a channel name of chlen bytes. */
size_t lhb_msg_min_size(int target, size_t chlen);

/* Parses the trailer of a received message. Returns the kind, or 0 when it has none. */
int lhb_msg_trailer(const uint8_t *m, size_t len, uint32_t *seq, uint64_t *t_ns);

/*
 * --server-headers: what a server adds to each delivery of a channel with history.
 * lhttpd inserts "offset:N\r\nprev-offset:P\r\nepoch:E\r\nchannel:CH\r\n" right after
 * the command line; nchan's ws+meta.nchan subprotocol puts "id: TIME:TAG\n\n" before the
 * body.
 */
typedef struct {
    size_t at, len;        /* the server's bytes: m[at .. at + len) */
    uint64_t offset, prev; /* lhttpd: offset, prev-offset */
    const uint8_t *epoch;  /* lhttpd: LHB_EPOCH_LEN hex digits */
    const uint8_t *channel; /* lhttpd: the channel the offset is in, chlen bytes */
    size_t chlen;
    const uint8_t *id;     /* nchan: the message id, idlen bytes */
    size_t idlen;
} lhb_meta_t;

#define LHB_EPOCH_LEN 16
#define LHB_MAX_ID 32 /* the longest nchan message id kept */

/* Finds exactly those bytes in the delivery m, in that order and nothing else. Returns 0
 * and fills mt, or -1 when m does not carry them. */
int lhb_msg_meta(int target, const uint8_t *m, size_t len, lhb_meta_t *mt);

/* The value of header name (lower case, without the colon) in the head of the LHTTP
 * message m, or NULL; *vl is its length. */
const uint8_t *lhb_lhttp_header(const uint8_t *m, size_t len, const char *name, size_t *vl);

/* Parses 1 to 20 decimal digits. Returns 0, or -1 when v is not such a number. */
int lhb_parse_u64(const uint8_t *v, size_t vl, uint64_t *out);

/* The 28-byte Sec-WebSocket-Accept for lhb_ws_key. */
extern const char lhb_ws_key[], lhb_ws_accept[];

/* ---- shared state ---- */

enum {
    LHB_PH_SETUP = 0,
    LHB_PH_HOLD,    /* setup done; process 0 runs --hold-exec */
    LHB_PH_WARMUP,  /* probes until every subscriber saw one */
    LHB_PH_MEASURE, /* publishing */
    LHB_PH_DRAIN,   /* waiting for the last deliveries (--recover: for the publish answers) */
    LHB_PH_PARK,    /* --recover: every subscriber closes its connection */
    LHB_PH_RECOVER, /* --recover: every subscriber reconnects and recovers */
    LHB_PH_DONE,    /* every process writes its final numbers and exits */
    LHB_PH_ABORT
};

/* One process's numbers, in shared memory. Counters read by process 0 during the run
 * are atomic; the rest is written once at the end. */
typedef struct {
    _Atomic uint64_t ready;     /* subscribers subscribed */
    _Atomic uint64_t failed;    /* subscribers that could not connect or subscribe */
    _Atomic uint64_t probed;    /* subscribers that received a probe */
    _Atomic uint64_t delivered; /* measured messages received */
    _Atomic uint64_t last_ns;   /* when the last measured message arrived */
    _Atomic uint64_t setup_done_ns;
    _Atomic int finished;
    _Atomic uint64_t parked;    /* --recover: subscribers whose connection is closed */
    _Atomic uint64_t recovered; /* --recover: subscribers that have recovered (or failed to) */
    _Atomic uint64_t recover_done_ns; /* when the last of this process's recoveries ended */
    uint64_t disorder;   /* measured messages with an unexpected sequence number */
    uint64_t corrupt;    /* deliveries whose bytes are not the message sent */
    uint64_t other;      /* other messages (server error replies and the like) */
    uint64_t closed;     /* connections the server closed during the run */
    uint64_t short_subs; /* subscribers that received fewer messages than published */
    uint64_t long_subs;  /* ... more */
    uint64_t chain;      /* --server-headers: deliveries whose prev-offset (or epoch) is not
                          * the offset (epoch) the subscriber saw last */
    uint64_t not_recovered; /* --recover: recoveries the server refused or left unfinished */
    uint64_t bytes_in;
    char first_error[256];
    lhb_hist_t hist;
} lhb_pstats_t;

typedef struct {
    _Atomic int phase;
    uint32_t nprocs;
    _Atomic uint64_t recover_t0; /* --recover: when the reconnections began */
    lhb_pstats_t ps[LHB_MAX_PROCS];
} lhb_shared_t;

/* ---- options ---- */

typedef struct {
    char host[64];
    uint16_t port;
    char path[256]; /* may contain {ch} */
    int http;       /* http:// (publish with POST) rather than ws:// */
    int tls;        /* wss:// or https:// */
} lhb_url_t;

typedef struct {
    int target;         /* LHB_TARGET_* */
    lhb_url_t sub_url;  /* subscribers */
    lhb_url_t pub_url;  /* publishers; ws:// or http:// */
    int have_pub;
    uint32_t subs;      /* subscriber connections */
    uint32_t channels;  /* subscriber i is on channel i % channels */
    uint64_t msgs;      /* messages to publish (0: use duration) */
    double duration_s;  /* or publish for this long */
    double rate;        /* messages per second; 0 = full speed under the window */
    uint64_t window;    /* messages in flight at most (full speed) */
    uint32_t pub_conns; /* publisher connections */
    uint32_t pipeline;  /* HTTP requests outstanding per publisher connection */
    size_t size;        /* bytes of each delivered message */
    int random;         /* random channel for each message (else round robin) */
    uint32_t nsrc;      /* source addresses 127.0.S.1 .. 127.0.S.nsrc (loopback targets) */
    uint32_t src_net;   /* S: 1 to 250, different from run to run */
    uint32_t procs;     /* generator processes */
    uint32_t connect_conc; /* connections being set up at once, over all processes */
    const char *hold_exec; /* run this (sh -c) once every subscriber is ready */
    int no_publish;
    double drain_s;     /* give up when no delivery arrived for this long */
    double timeout_s;   /* setup and warm-up deadline */
    char prefix[32];    /* channel name prefix */
    const char *pub_token; /* POST publishers send "Authorization: Bearer <it>" (or NULL) */
    /* --token: "Authorization: Bearer <token>\r\n", formatted once for every WebSocket
     * handshake (subscribers and WebSocket publishers); "" without --token. */
    char *ws_auth;
    size_t ws_auth_len;
    /* --pub-subscribe: each WebSocket publisher subscribes to every channel of the run
     * after its handshake (for a "subscribers" publish rule) and discards the copies of
     * the messages it then receives. */
    int pub_subscribe;
    /* --server-headers: deliveries carry the server's metadata of a channel with history
     * (lhb_meta_t), checked and removed before the comparison with what was sent; lhttpd's
     * subscribe gets a subscribed reply per channel; nchan's subscribers ask for the
     * ws+meta.nchan subprotocol. */
    int server_headers;
    /* --recover N: N messages per channel are published while every subscriber is
     * disconnected, then all reconnect at once and recover them (implies server_headers). */
    uint32_t recover;
    int quiet;
    int spin;           /* busy-poll while publishing instead of sleeping in epoll */
    /* wss:// and https://: the client context (certificates are not verified: a load
     * generator measures, it does not trust); --tls-resume reuses one session per
     * process for every later connection. */
    struct ssl_ctx_st *ssl_ctx;
    int tls_resume;
} lhb_opts_t;

/* ---- loop.c ---- */

/* The client context's new-session callback (--tls-resume keeps the newest). */
int lhb_tls_new_session(struct ssl_st *ssl, struct ssl_session_st *sess);
/* Frees the TLS client context and the kept session at exit. */
void lhb_tls_cleanup(const lhb_opts_t *o);

enum { LHB_SUB = 0, LHB_PUB_WS, LHB_PUB_HTTP };
enum { LHB_S_IDLE = 0, LHB_S_CONNECTING, LHB_S_HANDSHAKE, LHB_S_SUBSCRIBING, LHB_S_READY,
       LHB_S_CLOSING, LHB_S_DEAD };

/* One connection. Subscribers keep only what the next read needs: a partial frame. */
typedef struct {
    int fd;
    uint8_t role, state, probed, want_out;
    uint32_t idx;     /* subscriber index, or publisher number */
    uint32_t chan;    /* subscriber: its channel; publisher: the channel it is bound to */
    uint32_t got;     /* measured messages received */
    uint32_t pending; /* HTTP publisher: requests without a response yet */
    uint32_t inlen, incap;
    uint8_t *in;      /* bytes received and not yet consumed */
    uint32_t outlen, outoff, outcap;
    uint8_t *out;     /* bytes to send */
    /* --server-headers: the offset of the last delivery seen (lhttpd), or its message id
     * (nchan), carried over a --recover reconnection. */
    uint64_t last_off;
    uint8_t has_last, done, last_id_len;
    char last_id[LHB_MAX_ID];
    /* TLS: the engine on memory BIOs; out holds plaintext, cout the ciphertext to send. */
    struct ssl_st *ssl;
    uint8_t tls_up;   /* handshake done */
    uint32_t coutlen, coutoff, coutcap;
    uint8_t *cout;
} lhb_conn_t;

typedef struct lhb_loop_s {
    const lhb_opts_t *o;
    lhb_shared_t *sh;
    lhb_pstats_t *st;
    uint32_t proc, first, n;
    uint32_t *chan_counts; /* messages published per channel (process 0 writes) */
    int ep;
    lhb_conn_t *subs, *pubs;
    uint32_t next_connect, connecting, conc, pubs_ready;
    uint8_t *rbuf;
    size_t rcap;
    uint64_t now, t_start;
    uint64_t rng;
    uint64_t delivered; /* this process's count, published to st->delivered per pass */
    uint64_t http_ok, pub_replies;
    uint64_t pub_copies; /* --pub-subscribe: messages a publisher received as a subscriber */
    int check_order;
    int parking;        /* --recover: this process closed its subscribers */
    uint32_t reconnect; /* --recover: the next subscriber to reconnect */
    uint8_t epoch[LHB_EPOCH_LEN]; /* --server-headers, lhttpd: the epoch seen first */
    int has_epoch;
    void *pub; /* pub.c's state (process 0) */
    uint64_t tls_resumed; /* handshakes that resumed a session */
} lhb_loop_t;

/* What process 0 reports about publishing. */
typedef struct {
    uint64_t sent, expected; /* measured messages, and the deliveries they call for */
    uint64_t t0, t_end;      /* first and last measured publish */
    uint64_t probes, http_ok, replies, copies;
    double warmup_s;
    double cpu_s; /* CPU time of process 0 from the first publish to the end */
} lhb_pubres_t;

/* A process's loop over subscribers [first, first + n); process 0 also publishes and
 * fills res. Runs until the phase is DONE or ABORT. Returns 0, or -1 when it could not
 * start. */
int lhb_loop_run(const lhb_opts_t *o, lhb_shared_t *sh, uint32_t proc, uint32_t first,
                 uint32_t n, uint32_t *chan_counts, uint64_t t_start, lhb_pubres_t *res);

uint64_t lhb_now_ns(void);
uint64_t lhb_rand(lhb_loop_t *l);
/* Appends bytes to c's output; lhb_conn_flush writes them. Returns 0 or -1 (no memory). */
int lhb_conn_append(lhb_conn_t *c, const void *data, size_t len);
/* Appends one masked client frame. */
int lhb_conn_frame(lhb_loop_t *l, lhb_conn_t *c, int opcode, const void *data, size_t len);
void lhb_conn_flush(lhb_loop_t *l, lhb_conn_t *c);
/* Records the first error of this process (printf-like) for the report. */
void lhb_error(lhb_loop_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sum of a counter over every process. */
uint64_t lhb_sum_delivered(const lhb_shared_t *sh);

/* ---- pub.c ---- */

int lhb_pub_init(lhb_loop_t *l);
void lhb_pub_free(lhb_loop_t *l);
/* One publishing step of process 0 in the WARMUP, MEASURE and DRAIN phases: sends what
 * the rate or the window allows and moves the phase on. Returns the wait (ns) until the
 * step wants to run again. */
uint64_t lhb_pub_step(lhb_loop_t *l);
/* Fills the report's publishing numbers. */
void lhb_pub_report(lhb_loop_t *l, lhb_pubres_t *res);
/* The path of u with "{ch}" replaced by the channel name. Returns its length, 0 if it
 * does not fit. */
size_t lhb_url_path(const lhb_url_t *u, const char *ch, size_t chlen, char *out, size_t cap);

/* Subscribers of channel c. */
static inline uint32_t lhb_subs_of(const lhb_opts_t *o, uint32_t c)
{
    return o->subs / o->channels + (c < o->subs % o->channels ? 1u : 0u);
}

#endif
