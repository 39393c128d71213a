/*
 * A worker: one event loop, its listening sockets, its connections, and everything it
 * owns. All worker state lives in lh_worker_t, so a master can fork any number of them.
 *
 * Layers, bottom up. A file calls only into the layers below it (and, inside the
 * utilities and inside the HTTP group, sideways), never up: what a lower layer must hand
 * to a higher one goes through a function pointer or a hook that the higher one set.
 * tests/lib/check-layers.py checks this on the built objects, in `make check`.
 *
 *   0  buf.c, process.c (clock, lh_current_worker), shm.c, interest.c, metrics.c,
 *      tls.c       certificates and one connection's TLS engine (no I/O: conn.c moves
 *                  its ciphertext)
 *   1  conn.c      sockets, the send queue, flush, close, linger, reap; knows no protocol.
 *                  Input goes to c->input (lh_http_input from accept, lh_ws_input from the
 *                  upgrade on); the end of a connection runs the hooks added with
 *                  lh_conn_on_gone; lh_worker_end_pass ends every loop pass.
 *   2  reply.c     LHTTP replies as frames        nats.c  the NATS connection; incoming
 *                                                         messages go up through w->nats_up
 *   3  dispatch.c  LHTTP messages: filters and processors (pub/sub and upstream are
 *                  filters: dispatch calls them through the registry, never by name)
 *   4  pubsub.c    channels, fan-out              ws.c    WebSocket frames
 *   5  http.c, with admin.c, static.c, upstream.c, publish.c beside it: HTTP requests,
 *                  the upgrade, the admin endpoints, static files, outgoing HTTP, POST /publish
 *   6  api.c       the module API (lhttpd.h): every function of it, over the layers
 *   7  worker.c    the loop, accept, timers, signals: it wires the layers together
 *                  (the input handler, the gone hooks in their order)
 *
 * The pass rule: libevent callbacks handle their events; lh_worker_end_pass runs once at
 * the end of the loop pass (flush_ev), resumes the connections whose input was held
 * back, writes what was queued, and frees the connections that died in the pass. Nothing below a parser ever calls back
 * into it: conn_write never resumes input (it only lists the connection for the end of
 * the pass), so the shared scratch buffers (w->req, w->lmsg, w->rbuf) are never reused
 * while a request or message is being parsed from them.
 */
#ifndef LH_WORKER_H
#define LH_WORKER_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdint.h>
#include <stdio.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "buf.h"
#include "lh_config.h"
#include "lh_handoff.h"
#include "lh_http.h"
#include "lh_jwt.h"
#include "lh_lhttp.h"
#include "lh_multipart.h"
#include "lhttpd.h"
#include "metrics.h"

typedef struct lh_worker_s lh_worker_t;
typedef struct lh_tls_ctx_s lh_tls_ctx_t;
typedef struct lh_tls_store_s lh_tls_store_t;

/* One connection's TLS (tls.c). conn.c reads out[out_off..out_len), the ciphertext
 * to send, and tells lh_tls_out_sent what went. */
typedef struct lh_tls_s {
    struct ssl_st *ssl;
    const uint8_t *in;   /* ciphertext being fed (the caller's buffer, lh_tls_input) */
    size_t in_len;
    uint8_t *held;       /* ciphertext kept across reads (lh_tls_keep), owned */
    size_t held_len, held_off;
    uint8_t *out;        /* ciphertext to send, owned; NULL when empty */
    size_t out_len, out_off, out_cap;
    uint64_t start_ns;   /* accept */
    uint8_t done;        /* handshake finished */
    uint8_t failed;      /* a fatal error: no more TLS on it */
    uint8_t http;        /* the handshake failed because plain HTTP came */
    uint8_t sni_refused, reneg, shut, counted;
} lh_tls_t;

/* What nats.c hands up to the layer above it, pub/sub, which sets these (lh_pubsub_init)
 * before NATS starts, so that nats.c never names pubsub.c: a message from NATS for
 * channel ch, and the connection replaced (forget the old subscriptions), then ready for
 * every channel to subscribe again. */
typedef struct {
    size_t (*deliver)(lh_worker_t *w, const char *ch, size_t chlen, lh_buf_t **frame,
                      const void *msg, size_t len);
    void (*renewed)(lh_worker_t *w, void *old_nc);
    void (*resubscribe)(lh_worker_t *w);
    /* A server API action from another worker or node (JSON, see lh_pubsub_api_apply). */
    void (*api)(lh_worker_t *w, const char *json, size_t len);
    /* A presence query from any worker (this one too): answer on reply (presence.c). */
    void (*presence)(lh_worker_t *w, const char *q, size_t len, const char *reply);
    /* Node node's worker pid died (pid 0: the whole node went silent), without the
     * leave events of its clients (presence.c). */
    void (*peer_gone)(lh_worker_t *w, uint64_t node, int pid);
} lh_nats_up_t;

/* What reads a connection's input in its current state (http.c's lh_http_input, then
 * ws.c's lh_ws_input after the upgrade): returns the bytes it consumed (0: it needs more)
 * or -1 when the connection was closed. */
typedef ssize_t (*lh_conn_input_fn)(lh_conn_t *c, uint8_t *data, size_t len);
/* A "connection gone" hook (lh_conn_on_gone). */
typedef void (*lh_conn_gone_fn)(lh_conn_t *c);
#define LH_CONN_GONE_MAX 8

/* Connection states. */
enum {
    LH_CONN_HTTP = 0, /* reading an HTTP request head (handshake or keep-alive) */
    LH_CONN_WS,       /* WebSocket open */
    LH_CONN_CLOSING,  /* close frame sent, waiting for the peer's close or the timeout */
    LH_CONN_LINGER    /* flushing what is queued, then half-close and wait for EOF */
};

/* Connection flags. */
enum {
    LH_CF_FLUSH_LISTED = 1u << 0, /* on the worker's flush list */
    LH_CF_WRITE_WAIT = 1u << 1,   /* waiting for EV_WRITE */
    LH_CF_ECHO = 1u << 2,         /* an echo path: messages are echoed, not LHTTP */
    LH_CF_PINGED = 1u << 3,       /* a keep-alive ping is out */
    LH_CF_CLOSE_SENT = 1u << 4,   /* our close frame is queued */
    LH_CF_HALF_CLOSED = 1u << 5,  /* shutdown(SHUT_WR) done */
    LH_CF_DEAD = 1u << 6,         /* to be freed once no callback uses it */
    LH_CF_OPENED = 1u << 7,       /* on_open ran: on_close must run */
    LH_CF_KEEPALIVE = 1u << 8,    /* HTTP: keep the connection after this response */
    LH_CF_CLOSE_AFTER = 1u << 9,  /* HTTP: close once the response is written */
    LH_CF_EOF = 1u << 10,         /* the peer closed its side */
    LH_CF_KA_IDLE = 1u << 11,     /* HTTP: idle between keep-alive requests */
    LH_CF_ADMIN = 1u << 12,       /* accepted on the admin socket */
    LH_CF_WS_OPEN = 1u << 13,     /* counted in the open WebSocket gauge */
    LH_CF_HEAD = 1u << 14,        /* HTTP: the request is HEAD, the response has no body */
    LH_CF_HS_PENDING = 1u << 15,  /* handshake waits for the connect webhook; input paused */
    LH_CF_OUT_FULL = 1u << 16,    /* HTTP: answers queued over send_queue_bytes; input paused */
    LH_CF_CONTINUE = 1u << 17,    /* HTTP: "100 Continue" sent for the request being read */
    LH_CF_RESUME_LISTED = 1u << 18, /* on the worker's resume list (end of the pass) */
    LH_CF_HTTP10 = 1u << 19,        /* HTTP: the request being answered is HTTP/1.0 */
    LH_CF_HOOK_WAIT = 1u << 20,     /* a message waits for its subscribe/publish webhook;
                                       input paused, so later messages keep their order */
    LH_CF_SEEN_INPUT = 1u << 21,    /* plain: the first bytes were looked at (a TLS hello?) */
    LH_CF_TLS_OUT_FULL = 1u << 22,  /* TLS: reading made ciphertext the socket does not take
                                     * (KeyUpdate answers); input paused */
    LH_CF_HANDOFF = 1u << 23,       /* handed to or being taken from another worker: its
                                       end here (or its subscribing there) is silent: no
                                       on_close, disconnect webhook, join or leave */
    LH_CF_HANDOFF_NO = 1u << 24,    /* its handoff record did not fit: it drains */
    LH_CF_HO_PAUSED = 1u << 25      /* taken over: its input waits for its old worker's
                                       NATS barrier (what it published there goes first) */
};

/* The send queue: a ring of shared buffers, written with writev. */
typedef struct {
    lh_buf_t **items;
    uint32_t cap, head, count;
    size_t off;   /* bytes of items[head] already written */
    size_t bytes; /* bytes queued and not yet written */
} lh_outq_t;

struct lh_chan_s;
struct lh_ident_s;

/* One of a connection's subscriptions: the channel and this connection's position in
 * the channel's subscriber array, so unsubscribing is O(1). */
typedef struct {
    struct lh_chan_s *ch;
    uint32_t pos;
} lh_csub_t;

typedef struct lh_data_slot_s {
    const void *key;
    void *data;
} lh_data_slot_t;

struct lh_conn_s {
    lh_worker_t *w;
    int fd;
    uint8_t state;
    uint8_t frag_opcode; /* opcode of the fragmented message being assembled, 0 = none */
    uint16_t close_code; /* the close code we sent or echoed */
    uint32_t flags;
    uint32_t utf8_state; /* UTF-8 validation across fragments */
    /* A text frame still arriving, at the start of the input: how many of its payload
     * bytes are already unmasked and UTF-8 checked, and the validator's state after them
     * (so invalid UTF-8 fails at its first byte, not when the frame is complete). */
    uint32_t part_done, part_utf8;
    uint32_t in_len, in_cap;
    uint8_t *in; /* bytes received but not yet processed (partial head or frame) */
    uint8_t *msg; /* fragmented message being assembled */
    size_t msg_len, msg_cap;
    uint64_t id;
    uint64_t last_ms; /* last activity (receive) or deadline base, per state */
    lh_conn_t *prev, *next;  /* on one of the worker's timer lists */
    lh_conn_t *flush_next;   /* on the worker's flush list */
    lh_conn_t *resume_next;  /* on the worker's resume list */
    lh_conn_input_fn input;  /* reads input in the current state */
    lh_outq_t out;
    lh_data_slot_t *slots;
    uint16_t nslots;
    uint32_t nsubs, subs_cap; /* limits.max_subscriptions goes up to 65536 */
    lh_csub_t *subs;
    /* With many subscriptions, an open-addressing index of subs by channel (entries are
     * index + 1, 0 is free; capacity a power of two, at most half full), so that
     * "already subscribed?" and unsubscribe are O(1), not a scan (pubsub.c). */
    uint32_t *subs_ix;
    uint32_t subs_ix_cap;
    struct lh_ident_s *ident;  /* who the client is (auth.c); NULL: anonymous, nothing due */
    uint16_t nhist;            /* history publishes and recoveries waiting (history.c) */
    struct lh_upreq_s *upreqs; /* upstream requests whose answer goes to this client */
    uint16_t nupreqs;
    uint16_t busy; /* callbacks on the stack using this connection */
    uint8_t endpoint; /* LH_EP_* of the current HTTP request, for metrics */
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer_sa;
    char *peer; /* formatted on first use */
    lh_tls_t *tls; /* NULL: a plain connection */
    struct event rev, wev;
};

typedef struct {
    lh_conn_t *head, *tail;
    size_t n;
} lh_conn_list_t;

typedef struct {
    int fd;
    int admin; /* the admin socket: health and metrics only */
    lh_tls_ctx_t *tls; /* NULL: plain */
    struct event ev;
    lh_worker_t *w;
} lh_listener_t;

struct lh_worker_s {
    struct event_base *base;
    const lh_config_t *cfg;
    int index; /* worker number, from 0 */
    lh_listener_t *listeners;
    size_t nlisteners;
    int listeners_paused;
    struct event *accept_resume_ev;

    lh_conn_list_t http_conns;    /* LH_CONN_HTTP */
    lh_conn_list_t ws_conns;      /* LH_CONN_WS, ordered by last receive */
    lh_conn_list_t closing_conns; /* LH_CONN_CLOSING and LH_CONN_LINGER */
    size_t nconns;
    uint64_t next_id;

    lh_conn_t *flush_head; /* connections with output to write this loop pass */
    struct event *flush_ev;
    lh_conn_t *resume_head; /* connections whose held-back input is read at the end of the pass */
    lh_conn_t *reap_head; /* dead connections to free at the end of the pass */
    lh_conn_gone_fn gone[LH_CONN_GONE_MAX]; /* lh_conn_on_gone, in order */
    unsigned ngone;
    int end_scheduled; /* flush_ev is active: lh_worker_end_pass runs at the end of the pass */
    struct event *sweep_ev;
    struct event *sigterm_ev, *sigint_ev;
    int stopping;
    int draining;  /* an older generation: no more accepts, leave when empty */
    uint64_t now_ms;
    uint64_t stop_deadline_ms;
    uint64_t drain_deadline_ms;
    int master_fd; /* channel to the master, -1 when run without one */
    struct event *master_ev;

    uint8_t *rbuf; /* scratch read buffer shared by all connections */
    size_t rbuf_cap;
    uint8_t *tls_rbuf; /* scratch: ciphertext read from TLS connections */
    uint8_t *tls_stage; /* scratch: plaintext gathered from a send queue for one record */
    lh_http_request_t req;  /* scratch: the request being handled */
    lh_lhttp_msg_t lmsg;    /* scratch: the LHTTP message being handled */
    lh_http_limits_t http_limits;
    lh_lhttp_limits_t lhttp_limits;

    struct lh_pubsub_s *ps; /* the channel table (pubsub.c) */
    struct lh_nats_s *nats; /* the NATS connection (nats.c) */
    const lh_nats_up_t *nats_up; /* what NATS hands up to (pubsub.c) */
    struct lh_static_s *statics; /* static.root in memory (static.c) */
    struct lh_up_s *upstream;    /* libcurl multi and requests (upstream.c) */
    struct lh_auth_s *auth;      /* keys and namespace rules (auth.c), owned */
    struct lh_hist_s *hist;      /* history channels on JetStream (history.c); NULL: none */
    struct lh_pres_s *pres;      /* presence queries and join/leave batches (presence.c) */
    lh_conn_t *hist_origin;      /* the client whose publish is being handled, for errors */
    struct lh_hist_batch_s *hist_batch; /* the POST /publish being handled, or NULL */
    unsigned hist_refused;       /* history channels its publish could not reach */
    /* Set by the master: reads the configuration file again, for the rules a retiring
     * worker applies to the connections it keeps (NULL: keep the rules it has). */
    lh_config_t *(*load_config)(char *err, size_t errlen);
    uint8_t hook_ok; /* LH_HOOK_*: the webhooks that approved the message re-dispatched */
    /* Set by upstream.c: asks the subscribe (kind LH_HOOK_SUBSCRIBE) or publish webhook
     * about message m of c for the channels of list[0..len); 0 when c now waits for it
     * (LH_CF_HOOK_WAIT, input paused; the message is dispatched again once approved),
     * -EBUSY over upstream.max_in_flight, another negative value on failure. */
    int (*perm_hook)(lh_conn_t *c, const lh_msg_t *m, int kind, const char *list, size_t len);
    /* The connection handoff (handoff.c, owned); NULL when none runs. */
    struct lh_handoff_s *ho;
    /* Set by handoff.c: a handoff marker with token came through NATS (pubsub.c). */
    /* kind 0: the taker is subscribed; 1: the giver began (start); 2: the giver's last
     * marker (end); barrier: the giver's marker after a batch of connections. */
    void (*ho_marker)(lh_worker_t *w, uint64_t token, int kind, uint32_t barrier);

};

/* The worker of this process (one per process). */
extern lh_worker_t *lh_current_worker;

/* ---- worker.c ---- */
/* A worker on the given sockets (borrowed; n_admin of them, after the public ones, are
 * admin sockets). master_fd: the channel to the master (owned), or -1. */
lh_worker_t *lh_worker_new(const lh_config_t *cfg, int index, const int *listen_fds, size_t n,
                           size_t n_admin, int master_fd);
/* Gives listener i the TLS of kinds[i] / keys[i] (lh_tls_find; keys[i] NULL: plain).
 * Returns 0, or -1 (logged) when the certificates cannot be loaded. */
int lh_worker_listen_tls(lh_worker_t *w, const int *kinds, const char *const *keys);
/* Runs the loop until the worker has stopped. Returns 0. */
int lh_worker_run(lh_worker_t *w);
void lh_worker_free(lh_worker_t *w);
/* Begins a graceful stop: stop accepting, close every client with code, exit when all
 * have left or timeout_ms ran out. */
void lh_worker_stop(lh_worker_t *w, uint16_t code, unsigned timeout_ms);
/* Older generation: stop accepting, serve the connections it has, leave when the last
 * one leaves or after drain_timeout_ms (remaining clients get close 1012). */
void lh_worker_drain(lh_worker_t *w);
/* Sends one datagram to the master (nothing when there is none). */
void lh_worker_send_master(lh_worker_t *w, const char *msg);

/* ---- handoff.c ---- */
/* The master's end of a handoff pair came (fd owned): give 1, we retire and hand our
 * connections over on it once told to drain; give 0, we take connections from it. */
void lh_handoff_peer(lh_worker_t *w, int fd, int give);
/* At the worker's start: it hears the handoff markers from now on. */
void lh_handoff_init(lh_worker_t *w);
/* Told to drain: begins handing over (nothing without a peer). */
void lh_handoff_begin(lh_worker_t *w);
/* The sweep: retries connections that could not move yet, ends a handoff past
 * handoff.timeout_ms. */
void lh_handoff_tick(lh_worker_t *w);
void lh_handoff_free(lh_worker_t *w);
/* The "connection gone" hook: a connection whose input waited for a barrier. */
void lh_handoff_conn_gone(lh_conn_t *c);

/* ---- tls.c ---- */
/* Loads the certificates cfg's TLS listeners name into cfg->tls_store (nothing when it
 * has one already). Returns 0, or -1 with the reason in err (a missing file, a key that
 * does not match its certificate, a bad cipher list). Logs certificates that expire
 * within 30 days. */
int lh_tls_store_load(lh_config_t *cfg, char *err, size_t errlen);
void lh_tls_store_free(lh_tls_store_t *s);
/* The TLS of a listener: kind 0 a listen address, 1 an admin.listen address, 2 a
 * systemd socket name (tls_sockets). NULL: plain. Borrowed from cfg's store. */
lh_tls_ctx_t *lh_tls_find(const lh_config_t *cfg, int kind, const char *key);
/* Says once in the log that records are encrypted in user space (no kTLS). */
void lh_tls_kernel_note(void);
/* lhttpd_tls_certificate_expiry_seconds of cfg's certificates. */
void lh_tls_render_expiry(const lh_config_t *cfg, FILE *f);
const char *lh_tls_result_name(unsigned i);
const char *lh_tls_version_name(unsigned i);
const char *lh_tls_error_name(unsigned i);
/* A connection's TLS on listener l (server side), or NULL. Free with lh_tls_free. */
lh_tls_t *lh_tls_new(lh_tls_ctx_t *l);
void lh_tls_free(lh_tls_t *t);
/* The next ciphertext to read is data[0..len) (borrowed until lh_tls_keep). */
static inline void lh_tls_input(lh_tls_t *t, const uint8_t *data, size_t len)
{
    t->in = data;
    t->in_len = len;
}
/* Copies what the engine did not read of the input into t (the caller's buffer is about
 * to be reused). Returns 0, or -1 out of memory. */
int lh_tls_keep(lh_tls_t *t);
/* 1 when there is ciphertext kept or plaintext decrypted but not yet read. */
int lh_tls_has_input(const lh_tls_t *t);
/* Moves the handshake on: 1 finished (counted), 0 needs more input, -1 failed (counted;
 * t->http says plain HTTP came). Output may be waiting in t->out either way. */
int lh_tls_handshake(lh_tls_t *t);
/* Plaintext into dst: bytes, 0 needs more input, -1 the peer's close_notify, -2 an error
 * (a renegotiation attempt, a bad record; counted). */
ssize_t lh_tls_read(lh_tls_t *t, uint8_t *dst, size_t room);
/* Encrypts data[0..len) into t->out. Returns 0, or -1. */
int lh_tls_write(lh_tls_t *t, const void *data, size_t len);
/* Queues close_notify (once, after a finished handshake). */
void lh_tls_shutdown(lh_tls_t *t);
/* n bytes of t->out were sent. */
void lh_tls_out_sent(lh_tls_t *t, size_t n);
/* Replaces the output with plain text (the 400 for plain HTTP on a TLS port). */
int lh_tls_plain_answer(lh_tls_t *t, const char *text, size_t len);
/* The connection ends: a handshake still under way is counted (timeout or eof). */
void lh_tls_gone(lh_tls_t *t, int timed_out);

/* ---- process.c ---- */
/* Monotonic time (CLOCK_MONOTONIC). */
uint64_t lh_now_ms(void);
uint64_t lh_now_ns(void);

/* ---- conn.c ---- */
/* The client's address as "ip:port" (formatted once; lh_conn_peer of the API). */
const char *lh_conn_peer_name(const lh_conn_t *c);
/* A new connection on fd (owned) whose input goes to input; tls: its listener's TLS,
 * or NULL. Returns it, or NULL (fd closed) when out of memory. */
lh_conn_t *lh_conn_accepted(lh_worker_t *w, int fd, const struct sockaddr *sa, socklen_t salen,
                      int admin, lh_conn_input_fn input, lh_tls_ctx_t *tls);
/* A WebSocket connection on fd (owned) taken over from a retiring worker (handoff.c):
 * id and the peer address are the old worker's, input goes to input. Counted in the
 * open WebSocket gauge, not as accepted. Returns it, or NULL (fd closed) when out of
 * memory. */
lh_conn_t *lh_conn_adopted(lh_worker_t *w, int fd, uint64_t id, const void *sa, size_t salen,
                           lh_conn_input_fn input);
/* Adds fn to what runs when a connection of w ends (lh_conn_destroy), after the hooks
 * added before it. Returns 0, or -ENOSPC beyond LH_CONN_GONE_MAX. */
int lh_conn_on_gone(lh_worker_t *w, lh_conn_gone_fn fn);
/* A callback on c is running: c is not freed before lh_conn_release (it may die, which
 * only marks it). Every hold has its release in the same function. */
static inline void lh_conn_hold(lh_conn_t *c)
{
    c->busy++;
}
static inline void lh_conn_release(lh_conn_t *c)
{
    c->busy--;
}
/* Reads c's held-back input at the end of this pass (never from inside a write or a
 * parser); reading from the socket resumes at once. */
void lh_conn_resume_later(lh_conn_t *c);
/* Ends a loop pass: resumes the listed connections, writes what is queued, frees the
 * connections that died. It runs once per pass of the event loop, after every callback of
 * the pass (flush_ev, activated by lh_worker_schedule_end, as Redis's beforeSleep), so
 * that the messages of all the pass's callbacks go out together: one write per client
 * for a whole burst. Called directly only where no loop runs (worker exit, tests). */
void lh_worker_end_pass(lh_worker_t *w);
/* Makes sure lh_worker_end_pass runs at the end of this pass (queueing, resuming and
 * destroying call it; callbacks need not). */
void lh_worker_schedule_end(lh_worker_t *w);
/* Queues b (takes a reference of its own) and schedules the flush. Returns 0, or:
 *   -EPIPE   c is closing or dead (our close frame is out, or it is half-closed or being
 *            freed), or writing what was queued failed and destroyed it: nothing queued;
 *   -ENOBUFS over limits.send_queue_bytes: c is now being closed with 4008;
 *   -ENOMEM  the queue could not grow: c was destroyed.
 * After any error c may be dead: the caller must not queue to it again in this pass. */
int lh_conn_queue(lh_conn_t *c, lh_buf_t *b);
/* Queues a copy of data as one frame (opcode) or, with opcode -1, raw bytes. */
int lh_conn_queue_frame(lh_conn_t *c, int opcode, const void *data, size_t len);
/* Sends a close frame and moves to CLOSING (WebSocket) or just closes (HTTP). */
void lh_conn_close_ws(lh_conn_t *c, uint16_t code, const char *reason);
/* Moves c to LINGER: write what is queued, half-close, wait for EOF or close_timeout_ms. */
void lh_conn_linger(lh_conn_t *c);
/* Ends the connection now: on_close callbacks, fd closed, freed at the end of the pass. */
void lh_conn_destroy(lh_conn_t *c);
/* Ends c at its close or linger deadline: like lh_conn_destroy, but a connection with
 * bytes still unsent (queued or in the kernel) is reset, so a peer that stopped reading
 * learns at once that it was cut. */
void lh_conn_expire(lh_conn_t *c);
/* Writes queued output for every connection on the flush list. */
void lh_worker_flush(lh_worker_t *w);
void lh_worker_reap(lh_worker_t *w);
void lh_conn_list_remove(lh_conn_list_t *l, lh_conn_t *c);
void lh_conn_list_append(lh_conn_list_t *l, lh_conn_t *c);
/* Moves c to the list for state. */
void lh_conn_set_state(lh_conn_t *c, int state);
/* Marks c as having received something (moves it to the tail of its timer list). */
void lh_conn_touch(lh_conn_t *c);

/* ---- http.c ---- */
/* Completes a validated handshake (101) and opens the WebSocket. */
void lh_http_upgrade(lh_conn_t *c, const char *accept, const char *proto, int echo);
/* Refuses a handshake with status and a reason; the connection closes after it. */
void lh_http_refuse(lh_conn_t *c, int status, const char *reason);
/* Like lh_http_respond, with the body queued by reference. */
void lh_http_respond_buf(lh_conn_t *c, int status, const char *extra, const char *ctype,
                         lh_buf_t *body);
/* Handles received bytes in the HTTP state; returns bytes consumed or -1 if closed. */
ssize_t lh_http_input(lh_conn_t *c, uint8_t *data, size_t len);
/* Queues a complete HTTP response; body may be NULL. extra: more header lines ("K: V\r\n"). */
void lh_http_respond(lh_conn_t *c, int status, const char *extra, const char *ctype,
                     const void *body, size_t body_len);

/* 200 to an OPTIONS request, with "Allow: <allow>" (RFC 9110 9.3.7) and no body. */
void lh_http_options(lh_conn_t *c, const char *allow);

/* ---- admin.c ---- */
/* 1 when the worker has an admin socket (the endpoints and the server API live there). */
int lh_admin_socket_exists(const lh_worker_t *w);
/* Serves /livez, /readyz and /metrics when this connection may see them. Returns 1 when
 * it answered. */
int lh_admin_route(lh_conn_t *c, const lh_http_request_t *req);

/* ---- auth.c ---- */
typedef struct lh_auth_s lh_auth_t;
typedef struct lh_ident_s lh_ident_t;
/* Identity kinds (lh_auth_kind). */
enum { LH_ID_ANON, LH_ID_NONE /* must authenticate, has not */, LH_ID_TOKEN, LH_ID_WEBHOOK };
/* Permission decisions. */
enum { LH_PERM_ALLOW, LH_PERM_DENY, LH_PERM_WEBHOOK };
/* Webhooks that approved a held message (w->hook_ok). */
enum { LH_HOOK_SUBSCRIBE = 1, LH_HOOK_PUBLISH = 2 };
/* The keys (read from their files now) and rules of cfg. own: a config the result takes
 * ownership of (freed with it; cfg must then be own), or NULL when cfg outlives it.
 * Returns NULL with err ("auth.keys[1]: /etc/x.pem: ...") when a key cannot be used. */
lh_auth_t *lh_auth_new(const lh_config_t *cfg, lh_config_t *own, char *err, size_t errlen);
void lh_auth_free(lh_auth_t *a);
/* The config the rules come from. */
const lh_config_t *lh_auth_config(const lh_auth_t *a);
/* The connection handoff: writes c's identity into a 'C' record (kind, refresh sent,
 * exp, sub, info, the token's channels); lh_auth_adopt gives c the identity of record r
 * and arms its expiry. 0, or -ENOMEM. */
void lh_auth_export(const lh_conn_t *c, lh_hw_t *hw);
int lh_auth_adopt(lh_conn_t *c, const lh_ho_rec_t *r);
/* The master: gives cfg's namespaces their metric labels (before workers use them). */
void lh_auth_register_labels(const lh_config_t *cfg);
/* The longest user id; a user id must be a valid LHTTP header value (lh_auth_user_valid). */
#define LH_USER_MAX 255
int lh_auth_user_valid(const char *s, size_t len);
/* Verifies a token under a's keys and rules: LH_JWT_OK with *out filled, or the failure
 * (counted in lhttpd_auth_failures_total); lh_auth_reason_text says it for people. */
int lh_auth_verify(const lh_auth_t *a, const char *tok, size_t len, lh_jwt_claims_t *out);
const char *lh_auth_reason_text(int r);
void lh_auth_count_failure(unsigned reason);
/* c's identity from a verified token (the claims are taken over and zeroed), or from the
 * connect webhook's answer. 0 or -ENOMEM. */
int lh_auth_set_token(lh_conn_t *c, lh_jwt_claims_t *cl);
int lh_auth_set_user(lh_conn_t *c, const char *user, size_t ulen, const char *info);
/* The WebSocket opened: without an identity where auth.anonymous is false, c may only
 * authenticate, within auth.timeout_ms (then 4401). */
void lh_auth_opened(lh_conn_t *c);
/* The "connection gone" hook: frees c's identity and its timer. */
void lh_auth_conn_gone(lh_conn_t *c);
/* 1 while c must authenticate before anything else. */
int lh_auth_pending(const lh_conn_t *c);
/* c's user id ("" for anonymous), info (JSON or NULL), token expiry (0: none), kind. */
const char *lh_auth_user(const lh_conn_t *c);
const char *lh_auth_info(const lh_conn_t *c);
int64_t lh_auth_expires(const lh_conn_t *c);
int lh_auth_kind(const lh_conn_t *c);
/* 1 when a has nothing to check (anonymous allowed, no namespaces). */
int lh_auth_open(const lh_auth_t *a);
/* 1 when deliveries on ch carry the server-set sender header. */
int lh_auth_stamps(const lh_auth_t *a, const char *ch, size_t len);
/* May c subscribe to / publish on ch? LH_PERM_ALLOW, LH_PERM_WEBHOOK (the webhook
 * decides), or LH_PERM_DENY with why (cap bytes) naming the channel, counted in
 * lhttpd_permission_denied_total. subtok: a verified subscription token, or NULL;
 * subscribed: c is (or, by this message, will be) subscribed to ch. */
int lh_auth_may_subscribe(const lh_auth_t *a, const lh_conn_t *c, const char *ch, size_t len,
                          const lh_jwt_claims_t *subtok, char *why, size_t cap);
int lh_auth_may_publish(const lh_auth_t *a, const lh_conn_t *c, const char *ch, size_t len,
                        int subscribed, char *why, size_t cap);
/* lh_auth_may_subscribe without a subscription token and without counting a refusal: a
 * reload re-judging the subscriptions a connection has. */
int lh_auth_judge_subscribe(const lh_auth_t *a, const lh_conn_t *c, const char *ch, size_t len,
                            char *why, size_t cap);
/* Counts a refusal that a webhook made. */
void lh_auth_count_denied(const lh_auth_t *a, unsigned action, const char *ch, size_t len);
/* The rules of ch's namespace, or NULL when none is configured (or a is open). */
const lh_ns_cfg_t *lh_auth_ns(const lh_auth_t *a, const char *ch, size_t len);
/* 1 when ch's subscribe rule is the same under a and b. */
int lh_auth_rule_same(const lh_auth_t *a, const lh_auth_t *b, const char *ch, size_t len);

/* ---- upstream.c ---- */
int lh_upstream_init(lh_worker_t *w);
void lh_upstream_free(lh_worker_t *w);
void lh_upstream_register(void);
/* Cancels c's requests (it is going away). */
void lh_upstream_conn_gone(lh_conn_t *c);
/* The "connection gone" hook: the disconnect webhook (for a connection whose on_open
 * ran), then lh_upstream_conn_gone. */
void lh_upstream_conn_ended(lh_conn_t *c);
/* The WebSocket subprotocol lhttpd selects; the 101 names it as the client spelled it,
 * kept in a char[LH_WS_PROTO_SIZE] ("" when the client offered none). */
#define LH_WS_PROTO "lhttp"
#define LH_WS_PROTO_SIZE sizeof(LH_WS_PROTO)
/* Starts the connect webhook for a valid handshake: 0 when none is configured (go on),
 * 1 when the handshake now waits for it, -EBUSY when upstream.max_in_flight requests are
 * in flight already (answer 503 at once), another negative value on failure. proto: the
 * subprotocol for the 101 (see LH_WS_PROTO; copied). */
int lh_upstream_connect_hook(lh_conn_t *c, const lh_http_request_t *req, const char *accept,
                             const char *proto, int echo);
/* Sends (or queues, up to webhooks.disconnect_queue) the disconnect webhook for c. */
void lh_upstream_disconnect_hook(lh_conn_t *c, unsigned code);

/* ---- static.c ---- */
/* Reads static.root into memory (at worker start, before the loop runs). */
int lh_static_load(lh_worker_t *w);
void lh_static_free(lh_worker_t *w);
/* Answers a plain GET/HEAD (or OPTIONS) from the static files; 0 when static files are
 * off. With only_found, answers only when the file exists (and returns 0 otherwise). */
int lh_static_serve(lh_conn_t *c, const lh_http_request_t *req, int only_found);

/* ---- reply.c ---- */
/* What lh_conn_send and lh_conn_send_raw do (api.c), same returns. */
int lh_reply_send(lh_conn_t *c, const char *command, const lh_header_t *headers, size_t n,
                  const void *body, size_t body_len);
int lh_reply_raw(lh_conn_t *c, const void *data, size_t len);
/* The LHTTP error reply (code, reason, and in-reply-to: cmd when cmd is not NULL),
 * counted in lhttpd_lhttp_errors_total. */
int lh_reply_error(lh_conn_t *c, const char *cmd, size_t cmd_len, int code,
                   const char *reason);
/* The same in reply to message m (NULL: no in-reply-to). */
int lh_reply_error_to(lh_conn_t *c, const lh_msg_t *m, int code, const char *reason);

/* ---- ws.c ---- */
/* Handles received bytes in WebSocket states; returns bytes consumed or -1 if closed. */
ssize_t lh_ws_input(lh_conn_t *c, uint8_t *data, size_t len);

/* ---- pubsub.c ---- */
int lh_pubsub_init(lh_worker_t *w);
/* A header's channel list (names separated by spaces): lh_pubsub_check_list checks
 * every name and returns the count, or -1 at a bad one (bad, badlen set);
 * lh_pubsub_publish_list publishes msg once to each distinct channel of the list (n
 * valid names), keep[i] set when the i-th name was published (keep may be NULL), and
 * returns the local deliveries or -ENOMEM, *again set when NATS could not take one. */
long lh_pubsub_check_list(const lh_config_t *cfg, const char *v, size_t vl,
                          const char **bad, size_t *badlen);
long lh_pubsub_publish_list(lh_worker_t *w, const char *v, size_t vl, long n,
                            const void *msg, size_t msg_len, uint8_t *keep, int *again);
/* What lh_subscribe, lh_unsubscribe and lh_publish (api.c) do; same returns. */
int lh_pubsub_subscribe(lh_conn_t *c, const char *name, size_t len);
int lh_pubsub_unsubscribe(lh_conn_t *c, const char *name, size_t len);
long lh_pubsub_publish(const char *name, size_t len, const void *msg, size_t msg_len);
void lh_pubsub_free(lh_worker_t *w);
/* Drops every subscription of c (on close). */
void lh_pubsub_conn_gone(lh_conn_t *c);
/* The rules changed from old to w->auth (a reload): every subscription they no longer
 * allow ends, with an "unsubscribed" message to its client. */
void lh_pubsub_recheck(lh_worker_t *w, const lh_auth_t *old);
/* A server API action on this worker's connections: {"action":"disconnect","user":U,
 * "code":N,"reason":R} or {"action":"unsubscribe","user":U,"channel":C}. Returns how
 * many connections were closed or subscriptions ended, or -EINVAL for bad JSON. */
long lh_pubsub_api_apply(lh_worker_t *w, const char *json, size_t len);
/* Holds (held 1) or releases c's deliveries on channel: a recovery sends what it missed
 * first. */
void lh_pubsub_hold(lh_conn_t *c, const char *name, size_t len, int held);
/* Channel name's entry in w's table, or NULL (pubsub.h has its type). */
struct lh_chan_s *lh_pubsub_chan(lh_worker_t *w, const char *name, size_t len);
/* Calls fn(ch, arg) for each channel with subscribers on w; fn must not change any
 * subscription (collect, then act). */
void lh_pubsub_each_chan(lh_worker_t *w, void (*fn)(const struct lh_chan_s *ch, void *arg),
                         void *arg);
/* 1 when channel has subscribers on w. */
int lh_pubsub_has_subscribers(lh_worker_t *w, const char *name, size_t len);
/* 1 when c is subscribed to channel. */
int lh_pubsub_subscribed(lh_conn_t *c, const char *name, size_t len);
/* Tells every subscriber of channel that the messages between offsets from and to are
 * missing (they could not be read): `LHTTP/1.0 gap`. */
void lh_pubsub_gap(lh_worker_t *w, const char *name, size_t len, uint64_t from, uint64_t to);
/* Ends c's subscription to channel (when it has one) and tells the client why, in an
 * "unsubscribed" message. Returns 1 when there was one, else 0. */
int lh_pubsub_end(lh_conn_t *c, const char *name, size_t len, const char *reason);
/* Delivers msg to this worker's subscribers of channel (from NATS or local). */
size_t lh_pubsub_deliver_local(lh_worker_t *w, const char *ch, size_t chlen, lh_buf_t **frame,
                               const void *msg, size_t len);
void lh_pubsub_register(void);
/* NATS replaced its connection: forget the old subscriptions, then subscribe again. */
void lh_pubsub_nats_renewed(lh_worker_t *w, void *old_nc);
void lh_pubsub_nats_resubscribe(lh_worker_t *w);

/* The connection handoff (handoff.c) reserves on the taking side the channels its
 * peer lists (subscribed in NATS, what arrives kept for the connections to come, up to
 * handoff.max_buffered) and releases them; lh_pubsub_handoff_log turns on (1) the
 * retiring side's log of what it delivers on prepared channels, or off (0) and frees
 * it. lh_pubsub_adopt_sub: see pubsub.c. */
int lh_pubsub_reserve(lh_worker_t *w, const char *name, size_t len);
void lh_pubsub_unreserve(lh_worker_t *w, const char *name, size_t len, int kept);
/* From now on, what arrives on reserved channel name is kept (the giver's start marker
 * came: everything before it in NATS, the giver delivered). */
void lh_pubsub_keep(lh_worker_t *w, const char *name, size_t len);
void lh_pubsub_handoff_log(lh_worker_t *w, int on);
long lh_pubsub_adopt_sub(lh_conn_t *c, const lh_ho_sub_t *s, uint64_t token);
/* Forgets the skip lists adopted with token (its giver's end marker came). */
void lh_pubsub_clear_skips(lh_worker_t *w, uint64_t token);

/* ---- history.c ---- */
typedef struct lh_hist_s lh_hist_t;
/* A publish of several history channels whose answer waits for all of them (POST
 * /publish): done(b, channel, offset, ok) runs once per channel when it is stored (ok 1,
 * with its offset) or refused (ok 0); the owner counts with outstanding. c is cleared
 * when the connection goes. */
typedef struct lh_hist_batch_s {
    unsigned outstanding, failed;
    lh_conn_t *c;
    void (*done)(struct lh_hist_batch_s *b, const char *ch, size_t len, uint64_t off, int ok);
} lh_hist_batch_t;
/* The history streams of w's configuration (none: w->hist stays NULL). 0 or -ENOMEM. */
int lh_hist_init(lh_worker_t *w);
void lh_hist_free(lh_worker_t *w);
void lh_hist_register(void);
/* 1 when ch is in a namespace with history. */
/* 1 when every history stream has answered or failed to since the worker started (so its
 * history channels serve or refuse at once, instead of waiting): /readyz waits for it. */
int lh_hist_settled(lh_worker_t *w);
int lh_hist_is(lh_worker_t *w, const char *ch, size_t len);
/* Stores msg in ch's history, then delivers it everywhere with its offset; c (may be
 * NULL) hears of a failure (503). 0, -EAGAIN when JetStream is not reachable (nothing
 * done), -EINVAL when msg is not LHTTP, -ENOMEM. */
long lh_hist_publish(lh_conn_t *c, lh_hist_batch_t *b, const char *ch, size_t len,
                     const void *msg, size_t msg_len);
/* A history channel's message from NATS (a delivery with its offset). */
void lh_hist_from_nats(lh_worker_t *w, const char *ch, size_t len, const void *msg,
                       size_t msg_len);
/* c, subscribed to history channel ch (its deliveries held meanwhile), gets the
 * `subscribed` reply and, with recover, what it missed after since in epoch; or, with
 * read, a history read of at most limit messages after since. 0 or -ENOMEM. */
int lh_hist_attach(lh_conn_t *c, const char *ch, size_t len, int recover, uint64_t since,
                   const char *epoch, int read, size_t limit, int hold);
/* The "connection gone" hook: forgets what c was waiting for. */
void lh_hist_conn_gone(lh_conn_t *c);
/* pubsub.c: channel ch has no subscriber on w any more. */
void lh_hist_chan_idle(lh_worker_t *w, const char *ch, size_t len);

/* ---- presence.c ---- */
/* What a presence query found (lh_presence_query): ok 0 when it ran out of memory. list
 * is the JSON array of entries (not with stats), NUL-terminated; all borrowed for the
 * call. */
typedef struct {
    int ok, stats, truncated;
    const char *ch;
    size_t chlen;
    uint64_t count, users;
    const char *list;
    size_t list_len;
} lh_presence_result_t;
/* How a query's asker hears the answer (c held for the call). */
typedef void (*lh_presence_done_fn)(lh_conn_t *c, void *arg, const lh_presence_result_t *r);
int lh_presence_init(lh_worker_t *w);
void lh_presence_free(lh_worker_t *w);
void lh_presence_register(void);
/* The namespace rules of ch (NULL: none configured), and 1 when ch has presence. */
const lh_ns_cfg_t *lh_presence_ns(lh_worker_t *w, const char *ch, size_t len);
int lh_presence_is(lh_worker_t *w, const char *ch, size_t len);
/* Gathers channel ch's presence (stats: only the counts) from every worker of every
 * node, for c: done(c, arg, result) runs later, once, unless c goes first. 0, -EAGAIN
 * when NATS cannot carry the query (and this worker is not alone), -EBUSY when c has
 * presence.max_queries_per_conn in flight, -ENOSPC when the worker has presence.max_queries,
 * -ENOMEM, -EINVAL. */
int lh_presence_query(lh_conn_t *c, const char *ch, size_t len, int stats,
                      lh_presence_done_fn done, void *arg);
/* The "connection gone" hook: its queries answer nobody. */
void lh_presence_conn_gone(lh_conn_t *c);
/* pubsub.c: c's subscription to ch was made / ended (join/leave events). */
void lh_presence_joined(lh_conn_t *c, const char *ch, size_t len);
void lh_presence_left(lh_conn_t *c, const char *ch, size_t len);
/* Sends the join/leave events still held (a stopping worker). */
void lh_presence_flush(lh_worker_t *w);
/* A presence query from NATS (nats_up->presence). */
void lh_presence_query_heard(lh_worker_t *w, const char *q, size_t len, const char *reply);
/* A worker (pid) of node, or the whole node (pid 0), is gone without its clients' leave
 * events: this worker's subscribers of join_leave channels get one leave naming them all
 * (nats_up->peer_gone). */
void lh_presence_peer_gone(lh_worker_t *w, uint64_t node, int pid);
/* The master says sibling worker pid died: the same, and passed on through NATS. */
void lh_presence_worker_gone(lh_worker_t *w, int pid);

/* ---- publish.c ---- */
/* POST /publish: handles body, answers on c. */
void lh_publish_http(lh_conn_t *c, const uint8_t *body, size_t len);
/* POST /api/disconnect and /api/unsubscribe (the server API): answers on c. */
void lh_api_http(lh_conn_t *c, const lh_http_request_t *req, const uint8_t *body, size_t len);
/* 1 when the request carries publish.token (or none is configured); constant time. */
int lh_publish_authorized(const lh_conn_t *c, const lh_http_request_t *req);

/* ---- nats.c ---- */
int lh_nats_start(lh_worker_t *w);
void lh_nats_stop(lh_worker_t *w);
/* Publishes to <prefix>.<channel>; 0, or -EAGAIN when the outage buffer is full. */
int lh_nats_publish(lh_worker_t *w, const char *ch, size_t chlen, const void *msg, size_t len);
/* Starts/stops the NATS subscription for a channel. */
void *lh_nats_subscribe(lh_worker_t *w, const char *ch, size_t chlen);
void lh_nats_unsubscribe(lh_worker_t *w, void *sub);
/* Sends a server API action (JSON) to every other worker of every node, on the
 * <prefix>.$peers subject. 0, -ENOTCONN without a NATS connection, -EAGAIN when NATS
 * could not take it. */
int lh_nats_publish_api(lh_worker_t *w, const char *json, size_t len);
/* A request (JetStream's API, or a publish to a stream) whose reply comes back on the
 * loop: cb(w, arg, msg) with the reply (a natsMsg *, borrowed for the call), or with
 * NULL when none came within timeout_ms (or the worker stops). hdrs: nh name/value
 * pairs. Returns the pending request, or NULL when it cannot be sent (no NATS
 * connection, no memory): cb is then never called. */
typedef struct lh_nreq_s lh_nreq_t;
typedef void (*lh_nats_reply_fn)(lh_worker_t *w, void *arg, void *msg);
lh_nreq_t *lh_nats_request(lh_worker_t *w, const char *subj, const char *const *hdrs, size_t nh,
                           const void *data, size_t len, unsigned timeout_ms,
                           lh_nats_reply_fn cb, void *arg);
/* A presence query (query, len bytes) to every worker of every node, on the
 * <prefix>.$peers subject: gather(w, arg, msg) runs for each answer (a natsMsg *, borrowed)
 * and returns 1 when it has all it waits for (the request ends), 0 to wait for more; at
 * timeout_ms (or when the worker stops) it runs once more with NULL, and the request ends.
 * Returns NULL when the query cannot be sent: gather never runs. */
typedef int (*lh_nats_gather_fn)(lh_worker_t *w, void *arg, void *msg);
lh_nreq_t *lh_nats_gather(lh_worker_t *w, const char *query, size_t len, unsigned timeout_ms,
                          lh_nats_gather_fn gather, void *arg);
/* Publishes data to subj (an answer to a request's reply subject). 0, -ENOTCONN, -EAGAIN. */
int lh_nats_reply(lh_worker_t *w, const char *subj, const void *data, size_t len);
/* Once the loop is over: runs it again, in slices, until cnats has written what was
 * published, at most timeout_ms. 0, -ENOTCONN, -ETIMEDOUT. */
int lh_nats_flush_at_exit(lh_worker_t *w, unsigned timeout_ms);
/* The largest message the NATS server takes (its max_payload; 1 MiB before it said). */
/* Tells every worker of every node that this node's worker pid died (nats_up->peer_gone
 * on each, this one excepted). 0, or -ENOTCONN. */
int lh_nats_say_gone(lh_worker_t *w, int pid);
size_t lh_nats_max_payload(lh_worker_t *w);
/* Other lhttpd nodes heard from within nats.peer_timeout_ms. */
unsigned lh_nats_peer_nodes(lh_worker_t *w);
/* 1 when the NATS connection is up. */
int lh_nats_connected(lh_worker_t *w);
/* Copies the connection state and the NATS counters into this worker's metrics; logs
 * incoming messages dropped since the last call. */
void lh_nats_sync_metrics(lh_worker_t *w);
/*
 * What cnats's delivery thread does with a message (a natsMsg *, ownership taken): queues
 * it for w's loop. 0, or -ENOMEM when no memory was left to queue it: then it is
 * destroyed and counted in lhttpd_nats_dropped_total. Called directly only by tests.
 */
int lh_nats_inbox_put(lh_worker_t *w, void *msg);
/*
 * 1 when a message must go to NATS whatever the channel: nats.publish is "always", or
 * another lhttpd node was heard from on NATS within nats.peer_timeout_ms, or this
 * worker (re)connected less than a second ago and may not have heard from them yet.
 */
int lh_nats_needed(lh_worker_t *w);
/* This node's identity on NATS (random, set by the master before it forks workers, so
 * that the workers of one node know each other's presence messages as their own). */
extern uint64_t lh_node_id;
void lh_node_id_init(void);

/* ---- dispatch.c ---- */

/* A message re-serialized by lh_msg_set_header. Every one is kept until the message has
 * been handled, so pointers handed out before a later call stay valid until then. */
typedef struct lh_msg_owned_s {
    struct lh_msg_owned_s *next;
    char data[];
} lh_msg_owned_t;

/* The message handed to filters and processors (lh_msg_t in lhttpd.h): built by
 * lh_dispatch_message, read through the lh_msg_* functions of api.c. */
struct lh_msg_s {
    lh_lhttp_msg_t *m; /* the worker's scratch message: parsed from raw */
    const uint8_t *raw;
    size_t raw_len;
    int binary;
    lh_worker_t *w;
    size_t nparts;         /* parts of a valid multipart header; 0 without one */
    lh_msg_owned_t *owned; /* lh_msg_set_header's buffers, newest first; raw is the first */
};

/* What lh_register_processor and lh_register_filter (api.c) do. */
int lh_dispatch_register_processor(const char *command, const lh_processor_t *p, void *ud);
int lh_dispatch_register_filter(const lh_filter_t *f, void *ud);
/* The multipart limits of the configuration (limits.max_multipart_parts and
 * max_header_line). */
void lh_dispatch_multipart_limits(const lh_worker_t *w, lh_multipart_limits_t *lim);
/* Runs every processor's and filter's on_open (a WebSocket on an LHTTP path opened). */
void lh_dispatch_open(lh_conn_t *c);
/* The "connection gone" hook: every on_close, when on_open ran (LH_CF_OPENED). */
void lh_dispatch_close(lh_conn_t *c);
/* Handles one complete message (LHTTP on normal paths). */
void lh_dispatch_message(lh_conn_t *c, uint8_t *data, size_t len, int binary);
void lh_builtin_register(void);


#endif
