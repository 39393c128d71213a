/*
 * The worker's NATS connection: cnats driven by the worker's libevent loop (never a
 * blocking call on it), reconnecting forever with back-off and jitter. Messages arrive on
 * cnats's delivery thread and are handed to the loop through a locked inbox and an
 * event; everything else runs on the loop.
 *
 * A stalled connection (a server that accepts bytes and answers nothing, e.g. stopped) is
 * seen by cnats's PINGs: every nats.stall_timeout_ms / 3, and the connection is replaced
 * once STALL_PINGS_OUT of them are unanswered, so within nats.stall_timeout_ms. What was
 * written into it since the last PONG is lost with it; a probe thread (probe_main) keeps
 * track of which publishes a PONG has confirmed, so that the loss can be counted.
 */
#include "worker.h"

#include <errno.h>
#include <nats/nats.h>
#include <nats/adapters/libevent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "lh_channel.h"
#include "lh_log.h"

/*
 * Presence of other lhttpd nodes ("peers"): every worker publishes "here" on
 * <prefix>.$peers every peer_timeout_ms / 4, and "hello" when its connection comes up,
 * which every other node's workers answer with "here" at once. A node not heard from
 * for peer_timeout_ms (counted only while this worker's own connection is up) is gone.
 * '$' is not a channel byte, so no channel has this subject.
 */
#define PEER_SUBJECT "$peers"
#define PEER_MAGIC "lhttpd-peer 1 "
/* Server API actions travel on the same subject: API_MAGIC, the sender's node id (16 hex
 * digits) and pid, a space, then the JSON. */
#define API_MAGIC "lhttpd-api 1 "
/* Presence queries too (presence.c): PRES_MAGIC then the query; the answers go to the
 * asking worker's reply subject. */
#define PRES_MAGIC "lhttpd-presence 1 "
#define PEERS_MAX 256
#define CONNECT_GRACE_MS 1000
/* PINGs unanswered when cnats declares the connection stale; the ping interval is
 * nats.stall_timeout_ms / (STALL_PINGS_OUT + 1). */
#define STALL_PINGS_OUT 2

uint64_t lh_node_id;

void lh_node_id_init(void)
{
    while (lh_node_id == 0) {
        if (getrandom(&lh_node_id, sizeof(lh_node_id), 0) != sizeof(lh_node_id))
            lh_node_id = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL);
    }
}

typedef struct {
    uint64_t id;
    uint64_t seen_ms;
} lh_peer_t;

/* A request waiting for its reply (lh_nats_request): on the loop only. */
struct lh_nreq_s {
    struct lh_nreq_s *prev, *next; /* by deadline */
    uint64_t token, deadline_ms;
    lh_nats_reply_fn cb;
    lh_nats_gather_fn gather; /* lh_nats_gather: many replies, until it says done */
    void *arg;
};

typedef struct lh_nats_s {
    lh_worker_t *w;
    natsConnection *nc;
    natsOptions *opts;
    pthread_mutex_t mu;
    natsMsg **inbox; /* filled by the delivery thread, drained on the loop */
    size_t inbox_n, inbox_cap;
    struct event *inbox_ev;
    atomic_int up;
    atomic_int closing; /* set before an intended close: no "reconnecting" warning */
    atomic_int closed;  /* cnats gave the connection up (it can, on a stalled first try) */
    pthread_cond_t closed_cv; /* signalled by closed_cb once we close on purpose */
    int closed_seen;          /* under mu */
    int renewing;       /* a thread is building a new connection */
    pthread_t renew_thread;
    natsConnection *renewed; /* handed over by that thread, under mu */
    uint64_t last_warn_ms;   /* publish failures are logged at most once a second */
    atomic_uint_fast64_t reconnects;
    atomic_uint_fast64_t dropped; /* incoming messages the inbox had no memory for */
    uint64_t dropped_logged;      /* on the loop */
    /* What a PONG has confirmed (see probe_main); the fields under mu unless atomic. */
    unsigned stall_ms;            /* nats.stall_timeout_ms */
    pthread_t probe_thread;
    int probe_started;            /* on the loop */
    pthread_cond_t probe_cv;      /* wakes the probe to stop; signals probing cleared */
    natsConnection *probing;      /* the connection the probe is flushing, or NULL */
    atomic_uint_fast64_t published; /* channel messages handed to cnats */
    uint64_t confirmed;           /* published as of the last PING a PONG answered */
    uint64_t link_gen;            /* +1 whenever the connection is lost or replaced */
    uint64_t pong_ms;             /* when a PONG last confirmed the link */
    atomic_uint_fast64_t stalls, possibly_lost;
    char prefix[80];
    size_t plen;
    /* Presence (on the loop, but for announce). */
    int always;                /* nats.publish "always" */
    char peer_subj[96];
    natsSubscription *peer_sub;
    struct event *peer_ev;     /* heartbeat */
    int peer_done;             /* under mu: cnats is finished with peer_sub (stop waits) */
    atomic_int announce;       /* the connection came up: say hello from the loop */
    lh_peer_t peers[PEERS_MAX];
    unsigned npeers;
    uint64_t full_until_ms;    /* the peers table overflowed: publish everything until */
    uint64_t grace_until_ms;   /* (re)connected: publish everything until */
    /* Requests (JetStream's API): replies come to <reply_pfx><token> on reply_sub. */
    char reply_pfx[96];
    size_t rplen;
    natsSubscription *reply_sub; /* made on the first request (only history uses them) */
    int reply_done;            /* under mu, as peer_done */
    int replies_wanted;        /* a request was made: subscribe again after a renewal */
    lh_nreq_t *rq_head, *rq_tail;
    uint64_t rq_next;
    struct event *rq_ev;
} lh_nats_t;

static int peer_subscribe(lh_nats_t *n);
static void peer_announce(lh_nats_t *n);

static lh_nats_t *nats_of(lh_worker_t *w)
{
    return w->nats;
}

/*
 * On the delivery thread: queue the message for the loop. Takes ownership of msg.
 * Returns 0, or -ENOMEM when there was no memory to queue it: then it is destroyed,
 * counted in lhttpd_nats_dropped_total and logged by lh_nats_sync_metrics.
 */
static int inbox_put(lh_nats_t *n, natsMsg *msg)
{
    int wake = 0;

    pthread_mutex_lock(&n->mu);
    if (n->inbox_n == n->inbox_cap) {
        size_t cap = n->inbox_cap ? n->inbox_cap * 2 : 256;
        natsMsg **q = realloc(n->inbox, cap * sizeof(*q));

        if (q == NULL) {
            pthread_mutex_unlock(&n->mu);
            natsMsg_Destroy(msg);
            atomic_fetch_add(&n->dropped, 1);
            return -ENOMEM;
        }
        n->inbox = q;
        n->inbox_cap = cap;
    }
    n->inbox[n->inbox_n++] = msg;
    wake = n->inbox_n == 1;
    pthread_mutex_unlock(&n->mu);
    if (wake)
        event_active(n->inbox_ev, EV_READ, 0);
    return 0;
}

static void msg_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    inbox_put(closure, msg);
}

int lh_nats_inbox_put(lh_worker_t *w, void *msg)
{
    return inbox_put(nats_of(w), msg);
}

/*
 * The probe: every nats.stall_timeout_ms / 3, a PING of its own (natsConnection_
 * FlushTimeout, which blocks, hence a thread) on the current connection; its PONG
 * confirms every publish counted before the PING was written (TCP keeps the order).
 * The loop swaps n->nc only under mu and once the probe is not flushing the old one.
 */
static void *probe_main(void *arg)
{
    lh_nats_t *n = arg;
    unsigned every = n->stall_ms / (STALL_PINGS_OUT + 1);

    pthread_mutex_lock(&n->mu);
    while (!atomic_load(&n->closing)) {
        struct timespec until;
        natsConnection *nc;
        uint64_t gen, sent;
        int ok;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += every / 1000;
        until.tv_nsec += (long)(every % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!atomic_load(&n->closing) &&
               pthread_cond_timedwait(&n->probe_cv, &n->mu, &until) == 0)
            ;
        if (atomic_load(&n->closing) || (nc = n->nc) == NULL)
            continue;
        gen = n->link_gen;
        n->probing = nc;
        pthread_mutex_unlock(&n->mu);
        sent = atomic_load(&n->published);
        ok = natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED &&
             natsConnection_FlushTimeout(nc, n->stall_ms) == NATS_OK;
        pthread_mutex_lock(&n->mu);
        n->probing = NULL;
        pthread_cond_broadcast(&n->probe_cv);
        if (ok && gen == n->link_gen) {
            if (sent > n->confirmed)
                n->confirmed = sent;
            n->pong_ms = lh_now_ms();
        }
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

/*
 * Under mu, when the connection is lost or replaced: what was published since the last
 * PONG may be lost with it. Counts it, starts over, and returns how many.
 */
static uint64_t link_lost_locked(lh_nats_t *n)
{
    uint64_t pub = atomic_load(&n->published);
    uint64_t lost = pub - n->confirmed;

    n->confirmed = pub;
    n->link_gen++;
    atomic_fetch_add(&n->possibly_lost, lost);
    return lost;
}

/* On the loop: deliver what the delivery thread queued, in order. */
/*
 * A new connection when cnats has closed the old one for good. Connecting can block (a
 * server that accepts and never answers), so it happens on a thread of its own, with
 * back-off, and the loop only swaps the finished connection in.
 */
static void *renew_main(void *arg)
{
    lh_nats_t *n = arg;
    unsigned delay_ms = 100;

    while (!atomic_load(&n->closing)) {
        natsConnection *nc = NULL;
        natsStatus s = natsConnection_Connect(&nc, n->opts);

        if (s == NATS_OK || s == NATS_NOT_YET_CONNECTED) {
            pthread_mutex_lock(&n->mu);
            n->renewed = nc;
            pthread_mutex_unlock(&n->mu);
            event_active(n->inbox_ev, EV_READ, 0);
            return NULL;
        }
        for (unsigned waited = 0; waited < delay_ms && !atomic_load(&n->closing); waited += 50)
            usleep(50000);
        if (delay_ms < 2000)
            delay_ms *= 2;
    }
    return NULL;
}

static void renew_check(lh_nats_t *n)
{
    natsConnection *nc;

    if (atomic_load(&n->closing))
        return;
    if (atomic_load(&n->closed) && !n->renewing) {
        lh_log(LH_LOG_WARNING, "NATS: the connection was closed; opening a new one");
        atomic_store(&n->closed, 0);
        n->renewing = 1;
        if (pthread_create(&n->renew_thread, NULL, renew_main, n) != 0) {
            lh_log(LH_LOG_ERR, "NATS: pthread_create: cannot renew the connection");
            n->renewing = 0;
            atomic_store(&n->closed, 1);
        }
        return;
    }
    pthread_mutex_lock(&n->mu);
    nc = n->renewed;
    n->renewed = NULL;
    pthread_mutex_unlock(&n->mu);
    if (nc == NULL)
        return;
    pthread_join(n->renew_thread, NULL);
    n->renewing = 0;
    /* The old connection's subscriptions go with it; every channel subscribes again. */
    if (n->w->nats_up != NULL)
        n->w->nats_up->renewed(n->w, n->nc);
    if (n->peer_sub != NULL) {
        natsSubscription_Destroy(n->peer_sub);
        n->peer_sub = NULL;
    }
    if (n->reply_sub != NULL) {
        natsSubscription_Destroy(n->reply_sub);
        n->reply_sub = NULL;
    }
    {
        natsConnection *old = n->nc;
        uint64_t lost;

        /* The old one is closed: a probe flushing it returns at once. */
        pthread_mutex_lock(&n->mu);
        while (n->probing == old)
            pthread_cond_wait(&n->probe_cv, &n->mu);
        n->nc = nc;
        lost = link_lost_locked(n); /* its outage buffer went with it */
        n->pong_ms = lh_now_ms();
        pthread_mutex_unlock(&n->mu);
        if (lost > 0)
            lh_log(LH_LOG_WARNING, "NATS: %" PRIu64 " message(s) published on the closed "
                   "connection may be lost", lost);
        natsConnection_Destroy(old);
    }
    if (n->w->nats_up != NULL)
        n->w->nats_up->resubscribe(n->w);
    peer_subscribe(n);
    if (natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED) {
        atomic_store(&n->up, 1);
        atomic_store(&n->announce, 1);
        peer_announce(n);
        lh_log(LH_LOG_NOTICE, "NATS: connected (new connection)");
    }
}

static void peer_say(lh_nats_t *n, const char *kind)
{
    char msg[64];
    int len;

    if (n->nc == NULL)
        return;
    len = snprintf(msg, sizeof(msg), PEER_MAGIC "%016" PRIx64 " %s", lh_node_id, kind);
    /* Not counted as messages: lhttpd_nats_messages_total counts channel traffic. */
    natsConnection_Publish(n->nc, n->peer_subj, msg, len);
}

static void peer_gauge(lh_nats_t *n)
{
    lh_m_set(LH_G_NATS_PEERS, n->npeers);
}

int lh_nats_say_gone(lh_worker_t *w, int pid)
{
    lh_nats_t *n = nats_of(w);
    char kind[24];

    if (n == NULL || n->nc == NULL || !atomic_load(&n->up))
        return -ENOTCONN;
    snprintf(kind, sizeof(kind), "gone %d", pid);
    peer_say(n, kind);
    return 0;
}

/* A presence message: "lhttpd-peer 1 <16 hex digits> hello|here|gone PID". Others are
 * ignored. */
static void peer_heard(lh_nats_t *n, const char *data, size_t len)
{
    const size_t ml = sizeof(PEER_MAGIC) - 1;
    uint64_t id = 0;
    const char *kind;
    unsigned i;

    if (len < ml + 17 || memcmp(data, PEER_MAGIC, ml) != 0 || data[ml + 16] != ' ')
        return;
    for (i = 0; i < 16; i++) {
        int v = lh_hexval(data[ml + i]);

        if (v < 0)
            return;
        id = (id << 4) | (uint64_t)v;
    }
    kind = data + ml + 17;
    len -= ml + 17;
    if (len > 5 && len < 16 && memcmp(kind, "gone ", 5) == 0 && id != 0) {
        /* A worker of that node (this one too) died without its clients' leaves. */
        char num[16];
        long pid;

        memcpy(num, kind + 5, len - 5);
        num[len - 5] = '\0';
        pid = strtol(num, NULL, 10);
        if (pid > 0 && pid <= INT32_MAX && n->w->nats_up != NULL &&
            n->w->nats_up->peer_gone != NULL)
            n->w->nats_up->peer_gone(n->w, id, (int)pid);
        return;
    }
    if (id == lh_node_id || id == 0)
        return; /* a sibling worker of this node: its channels are in shared memory */
    for (i = 0; i < n->npeers && n->peers[i].id != id; i++)
        ;
    if (i == n->npeers) {
        if (n->npeers == PEERS_MAX) {
            n->full_until_ms = n->w->now_ms + n->w->cfg->nats.peer_timeout_ms;
        } else {
            n->npeers++;
            lh_log(LH_LOG_INFO, "NATS: lhttpd node %016" PRIx64 " present", id);
        }
    }
    if (i < n->npeers) {
        n->peers[i].id = id;
        n->peers[i].seen_ms = n->w->now_ms;
    }
    peer_gauge(n);
    if (len == 5 && memcmp(kind, "hello", 5) == 0)
        peer_say(n, "here");
}

/* The heartbeat: say "here", forget nodes silent for peer_timeout_ms. */
static void peer_tick(evutil_socket_t fd, short what, void *arg)
{
    lh_nats_t *n = arg;
    lh_worker_t *w = n->w;
    unsigned timeout = w->cfg->nats.peer_timeout_ms;

    w->now_ms = lh_now_ms();
    if (!atomic_load(&n->up)) {
        /* Silence while this worker cannot hear is not theirs: keep them (and keep
         * buffering their messages for the reconnection). */
        for (unsigned i = 0; i < n->npeers; i++)
            n->peers[i].seen_ms = w->now_ms;
        return;
    }
    peer_say(n, "here");
    for (unsigned i = 0; i < n->npeers;) {
        if (w->now_ms - n->peers[i].seen_ms > timeout) {
            uint64_t id = n->peers[i].id;

            lh_log(LH_LOG_INFO, "NATS: lhttpd node %016" PRIx64 " silent for %u ms; gone",
                   id, timeout);
            n->peers[i] = n->peers[--n->npeers];
            if (w->nats_up != NULL && w->nats_up->peer_gone != NULL)
                w->nats_up->peer_gone(w, id, 0);
        } else {
            i++;
        }
    }
    peer_gauge(n);
}

/* On the loop, once the connection is (again) up: hello, and a short grace during which
 * everything is published, until the other nodes' answers are in. */
static void peer_announce(lh_nats_t *n)
{
    if (!atomic_exchange(&n->announce, 0))
        return;
    n->grace_until_ms = lh_now_ms() + CONNECT_GRACE_MS;
    peer_say(n, "hello");
}

int lh_nats_needed(lh_worker_t *w)
{
    lh_nats_t *n = nats_of(w);

    if (n == NULL || n->nc == NULL)
        return 0;
    return n->always || n->npeers > 0 || w->now_ms < n->grace_until_ms ||
           w->now_ms < n->full_until_ms;
}

static void api_heard(lh_worker_t *w, const char *d, size_t len);
static void reply_heard(lh_nats_t *n, const char *token, natsMsg *msg);

static void inbox_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_nats_t *n = arg;
    lh_worker_t *w = n->w;
    natsMsg **q;
    size_t cnt;

    renew_check(n);
    peer_announce(n);
    pthread_mutex_lock(&n->mu);
    q = n->inbox;
    cnt = n->inbox_n;
    n->inbox = NULL;
    n->inbox_n = n->inbox_cap = 0;
    pthread_mutex_unlock(&n->mu);
    w->now_ms = lh_now_ms();
    for (size_t i = 0; i < cnt; i++) {
        const char *subj = natsMsg_GetSubject(q[i]);
        size_t sl = strlen(subj);

        if (n->rplen > 0 && sl > n->rplen && memcmp(subj, n->reply_pfx, n->rplen) == 0) {
            reply_heard(n, subj + n->rplen, q[i]);
            natsMsg_Destroy(q[i]);
            continue;
        }
        if (strcmp(subj, n->peer_subj) == 0) {
            const char *d = natsMsg_GetData(q[i]);
            size_t dl = (size_t)natsMsg_GetDataLength(q[i]);

            if (dl > sizeof(API_MAGIC) - 1 && memcmp(d, API_MAGIC, sizeof(API_MAGIC) - 1) == 0)
                api_heard(w, d + sizeof(API_MAGIC) - 1, dl - (sizeof(API_MAGIC) - 1));
            else if (dl > sizeof(PRES_MAGIC) - 1 &&
                     memcmp(d, PRES_MAGIC, sizeof(PRES_MAGIC) - 1) == 0) {
                if (w->nats_up != NULL && w->nats_up->presence != NULL &&
                    natsMsg_GetReply(q[i]) != NULL)
                    w->nats_up->presence(w, d + sizeof(PRES_MAGIC) - 1,
                                         dl - (sizeof(PRES_MAGIC) - 1), natsMsg_GetReply(q[i]));
            } else
                peer_heard(n, d, dl);
            natsMsg_Destroy(q[i]);
            continue;
        }
        lh_m_inc(LH_M_NATS_MSGS_IN);
        lh_m_add(LH_M_NATS_BYTES_IN, (uint64_t)natsMsg_GetDataLength(q[i]));
        if (sl > n->plen && memcmp(subj, n->prefix, n->plen) == 0) {
            lh_buf_t *frame = NULL;

            if (w->nats_up != NULL)
                w->nats_up->deliver(w, subj + n->plen, sl - n->plen, &frame,
                                    natsMsg_GetData(q[i]), (size_t)natsMsg_GetDataLength(q[i]));
            lh_buf_unref(frame);
        }
        natsMsg_Destroy(q[i]);
    }
    free(q);
}

/* ---- Requests ---------------------------------------------------------------------- */

static void rq_unlink(lh_nats_t *n, lh_nreq_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        n->rq_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        n->rq_tail = r->prev;
}

static void rq_arm(lh_nats_t *n)
{
    struct timeval tv;
    uint64_t now = lh_now_ms(), d;

    if (n->rq_head == NULL) {
        event_del(n->rq_ev);
        return;
    }
    d = n->rq_head->deadline_ms > now ? n->rq_head->deadline_ms - now : 0;
    tv.tv_sec = (time_t)(d / 1000);
    tv.tv_usec = (suseconds_t)(d % 1000) * 1000;
    event_add(n->rq_ev, &tv);
}

/* The timer: every request past its deadline hears "no reply" (NULL). */
static void rq_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_nats_t *n = arg;
    uint64_t now = lh_now_ms();

    (void)fd;
    (void)what;
    n->w->now_ms = now;
    while (n->rq_head != NULL && n->rq_head->deadline_ms <= now) {
        lh_nreq_t *r = n->rq_head;

        rq_unlink(n, r);
        if (r->gather != NULL)
            r->gather(n->w, r->arg, NULL);
        else
            r->cb(n->w, r->arg, NULL);
        free(r);
    }
    rq_arm(n);
}

static void reply_heard(lh_nats_t *n, const char *token, natsMsg *msg)
{
    uint64_t t = strtoull(token, NULL, 10);

    for (lh_nreq_t *r = n->rq_head; r != NULL; r = r->next) {
        if (r->token == t && r->gather != NULL) {
            if (r->gather(n->w, r->arg, msg)) {
                rq_unlink(n, r);
                free(r);
                rq_arm(n);
            }
            return;
        }
        if (r->token == t) {
            rq_unlink(n, r);
            r->cb(n->w, r->arg, msg);
            free(r);
            rq_arm(n);
            return;
        }
    }
    /* Late (timed out already) or cancelled: dropped. */
}

static void reply_subscribe(lh_nats_t *n);

static lh_nreq_t *request(lh_worker_t *w, const char *subj, const char *const *hdrs, size_t nh,
                          const void *data, size_t len, unsigned timeout_ms,
                          lh_nats_reply_fn cb, lh_nats_gather_fn gather, void *arg);

lh_nreq_t *lh_nats_request(lh_worker_t *w, const char *subj, const char *const *hdrs, size_t nh,
                           const void *data, size_t len, unsigned timeout_ms,
                           lh_nats_reply_fn cb, void *arg)
{
    return request(w, subj, hdrs, nh, data, len, timeout_ms, cb, NULL, arg);
}

lh_nreq_t *lh_nats_gather(lh_worker_t *w, const char *query, size_t len, unsigned timeout_ms,
                          lh_nats_gather_fn gather, void *arg)
{
    lh_nats_t *n = nats_of(w);
    char *msg;
    lh_nreq_t *r;

    if (n == NULL || (msg = malloc(len + sizeof(PRES_MAGIC))) == NULL)
        return NULL;
    memcpy(msg, PRES_MAGIC, sizeof(PRES_MAGIC) - 1);
    memcpy(msg + sizeof(PRES_MAGIC) - 1, query, len);
    r = request(w, n->peer_subj, NULL, 0, msg, len + sizeof(PRES_MAGIC) - 1, timeout_ms, NULL,
                gather, arg);
    free(msg);
    return r;
}

int lh_nats_reply(lh_worker_t *w, const char *subj, const void *data, size_t len)
{
    lh_nats_t *n = nats_of(w);

    if (n == NULL || n->nc == NULL)
        return -ENOTCONN;
    if (natsConnection_Publish(n->nc, subj, data, (int)len) != NATS_OK)
        return -EAGAIN;
    return 0;
}

int lh_nats_flush_at_exit(lh_worker_t *w, unsigned timeout_ms)
{
    lh_nats_t *n = nats_of(w);
    uint64_t end = lh_now_ms() + timeout_ms;

    if (n == NULL || n->nc == NULL || !atomic_load(&n->up))
        return -ENOTCONN;
    /* cnats writes from the loop (the libevent adapter): run it, a slice at a time, until
     * what is buffered is written. */
    while (natsConnection_Buffered(n->nc) > 0) {
        struct timeval tv = {0, 10000};

        if (lh_now_ms() >= end)
            return -ETIMEDOUT;
        event_base_loopexit(w->base, &tv);
        event_base_loop(w->base, EVLOOP_ONCE);
    }
    return 0;
}

size_t lh_nats_max_payload(lh_worker_t *w)
{
    lh_nats_t *n = nats_of(w);
    int64_t m = n != NULL && n->nc != NULL ? natsConnection_GetMaxPayload(n->nc) : 0;

    return m > 0 ? (size_t)m : 1024 * 1024;
}

unsigned lh_nats_peer_nodes(lh_worker_t *w)
{
    lh_nats_t *n = nats_of(w);

    return n != NULL ? n->npeers : 0;
}

static lh_nreq_t *request(lh_worker_t *w, const char *subj, const char *const *hdrs, size_t nh,
                          const void *data, size_t len, unsigned timeout_ms,
                          lh_nats_reply_fn cb, lh_nats_gather_fn gather, void *arg)
{
    lh_nats_t *n = nats_of(w);
    char reply[128];
    natsMsg *m = NULL;
    lh_nreq_t *r, *at;
    natsStatus s;

    if (n == NULL || n->nc == NULL || !atomic_load(&n->up) || atomic_load(&n->closing))
        return NULL;
    if (n->reply_sub == NULL) {
        n->replies_wanted = 1;
        reply_subscribe(n);
        if (n->reply_sub == NULL)
            return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->token = ++n->rq_next;
    r->deadline_ms = lh_now_ms() + timeout_ms;
    r->cb = cb;
    r->gather = gather;
    r->arg = arg;
    snprintf(reply, sizeof(reply), "%s%" PRIu64, n->reply_pfx, r->token);
    s = natsMsg_Create(&m, subj, reply, data, (int)len);
    for (size_t i = 0; s == NATS_OK && i + 1 < nh * 2; i += 2)
        s = natsMsgHeader_Set(m, hdrs[i], hdrs[i + 1]);
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(n->nc, m);
    natsMsg_Destroy(m);
    if (s != NATS_OK) {
        free(r);
        return NULL;
    }
    /* Sorted by deadline: almost always at the tail. */
    for (at = n->rq_tail; at != NULL && at->deadline_ms > r->deadline_ms; at = at->prev)
        ;
    r->prev = at;
    r->next = at ? at->next : n->rq_head;
    if (r->next)
        r->next->prev = r;
    else
        n->rq_tail = r;
    if (at)
        at->next = r;
    else
        n->rq_head = r;
    if (n->rq_head == r)
        rq_arm(n);
    return r;
}

/* A server API action: applied unless this worker sent it (it applied it already). */
static void api_heard(lh_worker_t *w, const char *d, size_t len)
{
    char self[48];
    int sl = snprintf(self, sizeof(self), "%016" PRIx64 " %d ", lh_node_id, (int)getpid());

    if (len >= (size_t)sl && memcmp(d, self, (size_t)sl) == 0)
        return;
    /* Skip the origin: two fields. */
    for (int f = 0; f < 2; f++) {
        const char *sp = memchr(d, ' ', len);

        if (sp == NULL)
            return;
        len -= (size_t)(sp + 1 - d);
        d = sp + 1;
    }
    if (w->nats_up != NULL && w->nats_up->api != NULL)
        w->nats_up->api(w, d, len);
}

int lh_nats_publish_api(lh_worker_t *w, const char *json, size_t len)
{
    lh_nats_t *n = nats_of(w);
    char *msg;
    int hl;
    natsStatus s;

    if (n == NULL || n->nc == NULL)
        return -ENOTCONN;
    msg = malloc(len + 64);
    if (msg == NULL)
        return -ENOMEM;
    hl = snprintf(msg, 64, API_MAGIC "%016" PRIx64 " %d ", lh_node_id, (int)getpid());
    memcpy(msg + hl, json, len);
    s = natsConnection_Publish(n->nc, n->peer_subj, msg, (int)(hl + len));
    free(msg);
    if (s != NATS_OK) {
        lh_log(LH_LOG_WARNING, "NATS: server API action not sent: %s", natsStatus_GetText(s));
        return -EAGAIN;
    }
    return 0;
}

/* The link is confirmed now: it has just come up. */
static void link_fresh(lh_nats_t *n)
{
    pthread_mutex_lock(&n->mu);
    n->pong_ms = lh_now_ms();
    pthread_mutex_unlock(&n->mu);
}

static void connected_cb(natsConnection *nc, void *closure)
{
    lh_nats_t *n = closure;

    link_fresh(n);
    atomic_store(&n->up, 1);
    atomic_store(&n->announce, 1);
    event_active(n->inbox_ev, EV_READ, 0);
    lh_log(LH_LOG_NOTICE, "NATS: connected");
}

/*
 * The connection is gone: closed by the server, or declared stale by cnats (no PONG to
 * STALL_PINGS_OUT PINGs). A connection without a PONG for half of nats.stall_timeout_ms
 * was stalled (the probe and cnats each PING every third of it on a live one).
 */
static void disconnected_cb(natsConnection *nc, void *closure)
{
    lh_nats_t *n = closure;
    uint64_t lost, silent;

    if (!atomic_exchange(&n->up, 0) || atomic_load(&n->closing))
        return;
    pthread_mutex_lock(&n->mu);
    lost = link_lost_locked(n);
    silent = lh_now_ms() - n->pong_ms;
    pthread_mutex_unlock(&n->mu);
    if (silent >= n->stall_ms / 2) {
        atomic_fetch_add(&n->stalls, 1);
        lh_log(LH_LOG_WARNING, "NATS: no PONG for %" PRIu64 " ms: the connection is "
               "stalled; reconnecting; %" PRIu64 " message(s) published since the last "
               "PONG may be lost", silent, lost);
    } else if (lost > 0) {
        lh_log(LH_LOG_WARNING, "NATS: disconnected; reconnecting; %" PRIu64 " message(s) "
               "published since the last PONG may be lost", lost);
    } else {
        lh_log(LH_LOG_WARNING, "NATS: disconnected; reconnecting");
    }
}

static void reconnected_cb(natsConnection *nc, void *closure)
{
    lh_nats_t *n = closure;

    link_fresh(n);
    atomic_store(&n->up, 1);
    atomic_store(&n->announce, 1);
    event_active(n->inbox_ev, EV_READ, 0);
    atomic_fetch_add(&n->reconnects, 1);
    lh_log(LH_LOG_NOTICE, "NATS: reconnected; subscriptions restored");
}

static void closed_cb(natsConnection *nc, void *closure)
{
    lh_nats_t *n = closure;

    atomic_store(&n->up, 0);
    if (atomic_load(&n->closing)) {
        /* The last callback cnats makes for this connection: lh_nats_stop may free. */
        pthread_mutex_lock(&n->mu);
        n->closed_seen = 1;
        pthread_cond_signal(&n->closed_cv);
        pthread_mutex_unlock(&n->mu);
        return;
    }
    atomic_store(&n->closed, 1);
    event_active(n->inbox_ev, EV_READ, 0); /* the loop renews it */
}

static void error_cb(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    lh_log(LH_LOG_ERR, "NATS: %s", natsStatus_GetText(err));
}

/* Back-off: 50 ms doubling to 1 s, plus up to 25% jitter so workers do not stampede;
 * the cap keeps a returning NATS noticed (and /readyz green) within about a second. */
static int64_t reconnect_delay_cb(natsConnection *nc, int attempts, void *closure)
{
    int64_t d = 50;

    for (int i = 1; i < attempts && d < 1000; i++)
        d *= 2;
    if (d > 1000)
        d = 1000;
    return d + (int64_t)(random() % (d / 4 + 1));
}

int lh_nats_start(lh_worker_t *w)
{
    const lh_config_t *cfg = w->cfg;
    lh_nats_t *n = calloc(1, sizeof(*n));
    natsStatus s;

    if (n == NULL)
        return -ENOMEM;
    w->nats = n;
    n->w = w;
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->closed_cv, NULL);
    pthread_cond_init(&n->probe_cv, NULL);
    n->stall_ms = cfg->nats.stall_timeout_ms;
    n->pong_ms = lh_now_ms();
    n->plen = (size_t)snprintf(n->prefix, sizeof(n->prefix), "%s.", cfg->nats.subject_prefix);
    snprintf(n->peer_subj, sizeof(n->peer_subj), "%s." PEER_SUBJECT, cfg->nats.subject_prefix);
    {
        /* Replies to this worker's requests: a subject no one else listens on. */
        natsInbox *inbox = NULL;

        if (natsInbox_Create(&inbox) == NATS_OK) {
            n->rplen = (size_t)snprintf(n->reply_pfx, sizeof(n->reply_pfx), "%s.", inbox);
            natsInbox_Destroy(inbox);
        }
    }
    n->always = strcmp(cfg->nats.publish, "always") == 0;
    lh_node_id_init(); /* set by the master already, unless this worker runs on its own */
    n->inbox_ev = event_new(w->base, -1, 0, inbox_cb, n);
    n->rq_ev = evtimer_new(w->base, rq_timeout_cb, n);
    if (n->inbox_ev == NULL || n->rq_ev == NULL)
        return -ENOMEM;
    if (cfg->nats.servers.n == 0) {
        lh_log(LH_LOG_NOTICE, "NATS: no servers configured; pub/sub stays within this worker");
        return 0;
    }
    s = natsOptions_Create(&n->opts);
    if (s == NATS_OK)
        s = natsOptions_SetServers(n->opts, (const char **)cfg->nats.servers.items,
                                   (int)cfg->nats.servers.n);
    if (s == NATS_OK)
        s = natsOptions_SetName(n->opts, cfg->nats.name);
    if (s == NATS_OK)
        s = natsOptions_SetNoEcho(n->opts, true); /* local subscribers are served directly */
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(n->opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetCustomReconnectDelay(n->opts, reconnect_delay_cb, n);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(n->opts, (int)cfg->nats.reconnect_buffer_bytes);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(n->opts, true, connected_cb, n);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(n->opts, disconnected_cb, n);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(n->opts, reconnected_cb, n);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(n->opts, error_cb, n);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(n->opts, closed_cb, n);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(n->opts, 1000);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(n->opts, n->stall_ms / (STALL_PINGS_OUT + 1));
    if (s == NATS_OK)
        s = natsOptions_SetMaxPingsOut(n->opts, STALL_PINGS_OUT);
    if (s == NATS_OK) /* a write into a stalled socket (cnats flushes on the way out) */
        s = natsOptions_SetWriteDeadline(n->opts, n->stall_ms);
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(n->opts, true);
    if (s == NATS_OK)
        s = natsOptions_SetEventLoop(n->opts, w->base, natsLibevent_Attach, natsLibevent_Read,
                                     natsLibevent_Write, natsLibevent_Detach);
    if (s != NATS_OK) {
        lh_log(LH_LOG_ERR, "NATS options: %s", natsStatus_GetText(s));
        return -EINVAL;
    }
    s = natsConnection_Connect(&n->nc, n->opts);
    if (s == NATS_OK) {
        atomic_store(&n->up, 1);
        lh_log(LH_LOG_INFO, "NATS: connected to %s", cfg->nats.servers.items[0]);
    } else if (s == NATS_NOT_YET_CONNECTED) {
        lh_log(LH_LOG_WARNING, "NATS: not reachable yet; retrying in the background");
    } else {
        lh_log(LH_LOG_ERR, "NATS: connect: %s", natsStatus_GetText(s));
        return -EIO;
    }
    if (peer_subscribe(n) < 0)
        return -EIO;
    if (pthread_create(&n->probe_thread, NULL, probe_main, n) != 0) {
        lh_log(LH_LOG_ERR, "NATS: pthread_create: cannot start the PONG probe");
        return -EAGAIN;
    }
    n->probe_started = 1;
    n->peer_ev = event_new(w->base, -1, EV_PERSIST, peer_tick, n);
    if (n->peer_ev == NULL)
        return -ENOMEM;
    {
        unsigned hb = cfg->nats.peer_timeout_ms / 4;
        struct timeval tv = {hb / 1000, (hb % 1000) * 1000};

        event_add(n->peer_ev, &tv);
    }
    if (s == NATS_OK) {
        /* Before this worker accepts anyone: the other nodes learn of it first. */
        atomic_store(&n->announce, 1);
        peer_announce(n);
    }
    return 0;
}

/* On cnats's delivery thread, once the closed peer_sub's last message (and its close
 * notice) has been dispatched: from then on cnats holds nothing of it for us. */
static void peer_complete_cb(void *closure)
{
    lh_nats_t *n = closure;

    pthread_mutex_lock(&n->mu);
    n->peer_done = 1;
    pthread_cond_signal(&n->closed_cv);
    pthread_mutex_unlock(&n->mu);
}

static void reply_complete_cb(void *closure)
{
    lh_nats_t *n = closure;

    pthread_mutex_lock(&n->mu);
    n->reply_done = 1;
    pthread_cond_signal(&n->closed_cv);
    pthread_mutex_unlock(&n->mu);
}

/* The subscription that requests' replies come on (<reply_pfx>*). */
static void reply_subscribe(lh_nats_t *n)
{
    char subj[128];
    natsStatus s;

    snprintf(subj, sizeof(subj), "%s*", n->reply_pfx);
    s = natsConnection_Subscribe(&n->reply_sub, n->nc, subj, msg_cb, n);
    if (s == NATS_OK) {
        pthread_mutex_lock(&n->mu);
        n->reply_done = 0;
        pthread_mutex_unlock(&n->mu);
        s = natsSubscription_SetOnCompleteCB(n->reply_sub, reply_complete_cb, n);
        if (s != NATS_OK) {
            natsSubscription_Destroy(n->reply_sub);
            n->reply_sub = NULL;
        }
    }
    if (s != NATS_OK) {
        lh_log(LH_LOG_ERR, "NATS: subscribe %s: %s", subj, natsStatus_GetText(s));
        n->reply_sub = NULL;
    }
}

static int peer_subscribe(lh_nats_t *n)
{
    natsStatus s;

    if (n->replies_wanted)
        reply_subscribe(n);
    s = natsConnection_Subscribe(&n->peer_sub, n->nc, n->peer_subj, msg_cb, n);

    if (s == NATS_OK) {
        pthread_mutex_lock(&n->mu);
        n->peer_done = 0;
        pthread_mutex_unlock(&n->mu);
        s = natsSubscription_SetOnCompleteCB(n->peer_sub, peer_complete_cb, n);
        if (s != NATS_OK) {
            natsSubscription_Destroy(n->peer_sub);
            n->peer_sub = NULL;
        }
    }
    if (s != NATS_OK) {
        lh_log(LH_LOG_ERR, "NATS: subscribe %s: %s", n->peer_subj, natsStatus_GetText(s));
        n->peer_sub = NULL;
        return -1;
    }
    return 0;
}

void lh_nats_stop(lh_worker_t *w)
{
    lh_nats_t *n = nats_of(w);

    if (n == NULL)
        return;
    atomic_store(&n->closing, 1);
    pthread_mutex_lock(&n->mu);
    pthread_cond_broadcast(&n->probe_cv);
    pthread_mutex_unlock(&n->mu);
    if (n->peer_ev)
        event_free(n->peer_ev);
    /* Nobody hears back any more: the requests still waiting are told "no reply". */
    while (n->rq_head != NULL) {
        lh_nreq_t *r = n->rq_head;

        rq_unlink(n, r);
        if (r->gather != NULL)
            r->gather(w, r->arg, NULL);
        else
            r->cb(w, r->arg, NULL);
        free(r);
    }
    if (n->rq_ev)
        event_free(n->rq_ev);
    if (n->renewing) {
        pthread_join(n->renew_thread, NULL);
        if (n->renewed) {
            natsConnection_Close(n->renewed);
            natsConnection_Destroy(n->renewed);
        }
    }
    if (n->nc) {
        struct timespec until;

        natsConnection_Close(n->nc);
        /* Closed: a probe in natsConnection_FlushTimeout returns at once. */
        if (n->probe_started)
            pthread_join(n->probe_thread, NULL);
        n->probe_started = 0;
        /* cnats runs its callbacks on its own threads, after Close returns: wait for the
         * closed callback and for the presence subscription's completion (its delivery
         * thread is done with it) before freeing what the callbacks use. */
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2;
        pthread_mutex_lock(&n->mu);
        while ((!n->closed_seen || (n->peer_sub != NULL && !n->peer_done) ||
                (n->reply_sub != NULL && !n->reply_done)) &&
               pthread_cond_timedwait(&n->closed_cv, &n->mu, &until) == 0)
            ;
        pthread_mutex_unlock(&n->mu);
        natsSubscription_Destroy(n->peer_sub);
        natsSubscription_Destroy(n->reply_sub);
        natsConnection_Destroy(n->nc);
    }
    natsOptions_Destroy(n->opts);
    pthread_mutex_lock(&n->mu);
    for (size_t i = 0; i < n->inbox_n; i++)
        natsMsg_Destroy(n->inbox[i]);
    free(n->inbox);
    pthread_mutex_unlock(&n->mu);
    if (n->inbox_ev)
        event_free(n->inbox_ev);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->closed_cv);
    pthread_cond_destroy(&n->probe_cv);
    free(n);
    w->nats = NULL;
}

static size_t subject(const lh_nats_t *n, char *out, const char *ch, size_t chlen)
{
    memcpy(out, n->prefix, n->plen);
    memcpy(out + n->plen, ch, chlen);
    out[n->plen + chlen] = '\0';
    return n->plen + chlen;
}

int lh_nats_publish(lh_worker_t *w, const char *ch, size_t chlen, const void *msg, size_t len)
{
    lh_nats_t *n = nats_of(w);
    char subj[sizeof(n->prefix) + LH_CHANNEL_MAX_LEN + 1];
    natsStatus s;

    if (n == NULL || n->nc == NULL)
        return 0;
    subject(n, subj, ch, chlen);
    if (!atomic_load(&n->up) &&
        (size_t)natsConnection_Buffered(n->nc) + len > w->cfg->nats.reconnect_buffer_bytes) {
        /* cnats checks its outage buffer only before appending; keep the cap strict. */
        s = NATS_INSUFFICIENT_BUFFER;
    } else {
        s = natsConnection_Publish(n->nc, subj, msg, (int)len);
    }
    if (s != NATS_OK) {
        lh_m_inc(LH_M_NATS_PUBLISH_FAILED);
        if (w->now_ms - n->last_warn_ms >= 1000) {
            n->last_warn_ms = w->now_ms;
            lh_log(LH_LOG_WARNING, "NATS: publish: %s (further failures counted in "
                   "lhttpd_nats_publish_failures_total)", natsStatus_GetText(s));
        }
        return -EAGAIN;
    }
    atomic_fetch_add(&n->published, 1);
    lh_m_inc(LH_M_NATS_MSGS_OUT);
    lh_m_add(LH_M_NATS_BYTES_OUT, len);
    return 0;
}

void *lh_nats_subscribe(lh_worker_t *w, const char *ch, size_t chlen)
{
    lh_nats_t *n = nats_of(w);
    char subj[sizeof(n->prefix) + LH_CHANNEL_MAX_LEN + 1];
    natsSubscription *sub = NULL;
    natsStatus s;

    if (n == NULL || n->nc == NULL)
        return NULL;
    subject(n, subj, ch, chlen);
    s = natsConnection_Subscribe(&sub, n->nc, subj, msg_cb, n);
    if (s != NATS_OK) {
        lh_log(LH_LOG_ERR, "NATS: subscribe %s: %s", subj, natsStatus_GetText(s));
        return NULL;
    }
    /* The callback only queues; let cnats hold a generous backlog while the loop works. */
    natsSubscription_SetPendingLimits(sub, 1 << 20, 256 << 20);
    return sub;
}

void lh_nats_unsubscribe(lh_worker_t *w, void *sub)
{
    if (sub == NULL)
        return;
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
}

void lh_nats_sync_metrics(lh_worker_t *w)
{
    lh_nats_t *n = nats_of(w);

    if (n != NULL)
        renew_check(n);
    lh_m_set(LH_G_NATS_UP, (uint64_t)lh_nats_connected(w));
    if (n == NULL)
        return;
    lh_m_set(LH_M_NATS_RECONNECTS, atomic_load(&n->reconnects));
    lh_m_set(LH_M_NATS_STALLS, atomic_load(&n->stalls));
    lh_m_set(LH_M_NATS_POSSIBLY_LOST, atomic_load(&n->possibly_lost));
    {
        uint64_t d = atomic_load(&n->dropped);

        lh_m_set(LH_M_NATS_DROPPED, d);
        if (d != n->dropped_logged) {
            lh_log(LH_LOG_ERR, "NATS: %" PRIu64 " incoming message(s) dropped: no memory "
                   "to queue them (lhttpd_nats_dropped_total)", d - n->dropped_logged);
            n->dropped_logged = d;
        }
    }
}

int lh_nats_connected(lh_worker_t *w)
{
    lh_nats_t *n = nats_of(w);

    return n != NULL && n->nc != NULL && atomic_load(&n->up);
}
