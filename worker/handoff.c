/*
 * Live connection handoff: a retiring worker (a reload) gives its WebSocket connections
 * to a worker of the new generation instead of draining them; the client sees nothing.
 *
 * The master pairs each retiring worker with one new worker: a SOCK_SEQPACKET pair whose
 * ends come with "handoff" (to the giver) and "adopt" (to the taker). Then:
 *   1. giver, once told to drain: logs the digest of every message it delivers on the
 *      channels of its connections (pubsub.c), and sends 'P' records naming them.
 *   2. taker: reserves those channels (subscribed in NATS; what arrives on them is kept,
 *      up to handoff.max_buffered per channel), then publishes a marker on the peers'
 *      NATS subject after its SUBs. NATS brings the marker to the giver after every
 *      message published before the taker's SUBs took effect, and those are the only
 *      messages the taker does not have (without NATS, the taker answers 'R' at once).
 *   3. giver, at the marker: each connection that is at a message boundary goes in a
 *      'C' record with its socket (SCM_RIGHTS): identity, the unsent send queue, its
 *      subscriptions each with the digests the giver delivered since step 1. Then the
 *      giver forgets it silently (LH_CF_HANDOFF: no close, no leave, no webhook).
 *   4. taker: adopts the socket, re-checks each subscription under its rules, sends the
 *      kept messages whose digest the giver did not list (each listed digest cancels one
 *      kept message), in its order; then live deliveries.
 * A connection that cannot move (TLS, an upstream request or webhook in flight, a
 * module's data, a message half received, not authenticated yet) stays and drains as
 * before; the giver retries the transient cases until handoff.timeout_ms, then counts
 * each by reason (lhttpd_handoff_refused_total) and ends with 'E'.
 *
 * Exactly once: a message published after the taker's SUBs is in both workers' streams,
 * delivered by the giver (listed) or not (kept, sent by the taker); one published before
 * is in the giver's only, ahead of the marker, so delivered before the connection moves.
 * The digest is of the message's bytes: two byte-identical messages on one channel, one
 * published just before the taker subscribed and one while the connection moves, can be
 * taken for one another (the second is not sent). History messages carry their offset,
 * so they never collide.
 *
 * Ownership: the giver owns its connections until sendmsg took the record; from then on
 * the taker does (the kernel holds the socket in flight). A worker killed mid-handoff
 * loses only the connections it owned; its peer sees EOF and releases what it reserved.
 * Nothing here blocks: the channel is non-blocking, records wait in a queue on EAGAIN.
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lh_channel.h"
#include "lh_log.h"
#include "lh_ws.h"
#include "pubsub.h"

#define PREP_RECORD_MAX 65536 /* one 'P' record at most (well under a socket buffer) */

enum { G_NONE, G_WAIT, G_SEND, G_DONE };

typedef struct qrec_s {
    struct qrec_s *next;
    size_t len;
    uint8_t data[];
} qrec_t;

typedef struct peer_s {
    struct peer_s *next;
    lh_worker_t *w;
    int fd;
    int give; /* 1: we hand over on it (old side); 0: we take (new side) */
    struct event *rev, *wev;
    int wev_on;
    qrec_t *q, **qtail; /* records waiting for room in the socket (giver) */
    char **names;       /* taker: the channels reserved for this peer */
    size_t nnames, cap;
    uint64_t deadline_ms;
    uint64_t token;   /* taker: the giver's, from its 'P' records */
    int got_end;      /* taker: 'E' came (or the giver is gone): every connection is here */
    int heard_end;    /* taker: the giver's end marker came through NATS */
    int no_nats;      /* taker: no marker will come (we answered 'R') */
    uint32_t barrier; /* taker: the giver's last barrier heard */
    int prepared;     /* taker: the empty 'P' came: every channel is reserved */
    int started;      /* taker: the giver's start marker came (or it has no NATS) */
    int keeping;      /* taker: its channels keep what arrives (lh_pubsub_keep) */
    struct paused_s *paused; /* taker: adopted connections waiting for a barrier */
    size_t npaused, paused_cap;
} peer_t;

typedef struct paused_s {
    lh_conn_t *c;
    uint32_t barrier;
} paused_t;

struct lh_handoff_s {
    peer_t *give;  /* the one peer we hand over to, or NULL */
    int state;     /* G_* of the giving side */
    uint64_t token;
    uint64_t deadline_ms;
    uint32_t batch; /* giver: the barrier number of the connections being sent */
    int started;    /* giver: its start marker went to NATS */
    peer_t *takes; /* peers we take from */
    uint64_t heard[16]; /* start markers heard before their peer's 'P' (a ring) */
    unsigned nheard;
    uint8_t *rec;  /* scratch: one record, handoff.max_record_bytes */
    size_t rec_cap;
};

/* w's handoff state, made on first use; with_rec: with its record buffer. */
static struct lh_handoff_s *ho_of(lh_worker_t *w, int with_rec)
{
    if (w->ho == NULL && (w->ho = calloc(1, sizeof(*w->ho))) == NULL)
        return NULL;
    if (with_rec && w->ho->rec == NULL) {
        w->ho->rec_cap = w->cfg->handoff.max_record_bytes;
        if ((w->ho->rec = malloc(w->ho->rec_cap + 1)) == NULL)
            return NULL;
    }
    return w->ho;
}

static void peer_free(peer_t *p)
{
    lh_worker_t *w = p->w;

    for (size_t i = 0; i < p->nnames; i++) {
        lh_pubsub_unreserve(w, p->names[i], strlen(p->names[i]), p->keeping);
        free(p->names[i]);
    }
    free(p->names);
    while (p->q) {
        qrec_t *r = p->q;

        p->q = r->next;
        free(r);
    }
    if (p->rev)
        event_free(p->rev);
    if (p->wev)
        event_free(p->wev);
    if (p->fd >= 0)
        close(p->fd);
    free(p->paused);
    free(p);
}

/* The adopted connections of p whose barrier is at most upto read again. */
static void resume_paused(peer_t *p, uint32_t upto)
{
    size_t k = 0;

    if (upto > p->barrier)
        p->barrier = upto;
    for (size_t i = 0; i < p->npaused; i++) {
        lh_conn_t *c = p->paused[i].c;

        if (p->paused[i].barrier > p->barrier) {
            p->paused[k++] = p->paused[i];
            continue;
        }
        c->flags &= ~LH_CF_HO_PAUSED;
        if (!(c->flags & LH_CF_DEAD))
            event_add(&c->rev, NULL);
    }
    p->npaused = k;
}

void lh_handoff_conn_gone(lh_conn_t *c)
{
    struct lh_handoff_s *ho = c->w->ho;

    if (!(c->flags & LH_CF_HO_PAUSED) || ho == NULL)
        return;
    c->flags &= ~LH_CF_HO_PAUSED;
    for (peer_t *p = ho->takes; p != NULL; p = p->next)
        for (size_t i = 0; i < p->npaused; i++)
            if (p->paused[i].c == c) {
                p->paused[i] = p->paused[--p->npaused];
                return;
            }
}

static void take_free(lh_worker_t *w, peer_t *p)
{
    peer_t **pp = &w->ho->takes;

    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    resume_paused(p, UINT32_MAX);
    lh_pubsub_clear_skips(w, p->token);
    peer_free(p);
}

/* Every connection of the giver is here (or never will be): what was reserved for them
 * goes, the socket closes. Their skip lists stay until the giver's end marker comes by
 * NATS (after every message the giver delivered), or handoff.timeout_ms. */
static void take_close(lh_worker_t *w, peer_t *p, const char *why)
{
    lh_log(LH_LOG_INFO, "handoff: taking from a retiring worker ended: %s", why);
    for (size_t i = 0; i < p->nnames; i++) {
        lh_pubsub_unreserve(w, p->names[i], strlen(p->names[i]), p->keeping);
        free(p->names[i]);
    }
    p->nnames = 0;
    if (p->rev) {
        event_free(p->rev);
        p->rev = NULL;
    }
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    p->got_end = 1;
    p->deadline_ms = w->now_ms + w->cfg->handoff.timeout_ms;
    if (strcmp(why, "all handed over") != 0)
        resume_paused(p, UINT32_MAX); /* the giver is gone: no barrier will come */
    if (p->heard_end || p->no_nats)
        take_free(w, p);
}

/* ---- Sending (both sides send records; only the giver sends sockets) ---------------- */

/* Sends record data (with fd when >= 0). 0, -EAGAIN (nothing sent), -EMSGSIZE, or
 * another negative errno (the peer is gone). */
static int send_rec(peer_t *p, const uint8_t *data, size_t len, int fd)
{
    struct iovec iov = {(void *)(uintptr_t)data, len};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {0};

    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (fd >= 0) {
        struct cmsghdr *cm;

        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof(u.buf);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    }
    if (sendmsg(p->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return -EAGAIN;
        if (errno == EMSGSIZE || errno == ENOBUFS)
            return -EMSGSIZE;
        return -errno;
    }
    return 0;
}

static void want_write(peer_t *p, int on)
{
    if (on && !p->wev_on)
        event_add(p->wev, NULL);
    else if (!on && p->wev_on)
        event_del(p->wev);
    p->wev_on = on;
}

/* Sends the queued records; 0 when the queue is empty, -EAGAIN, or the error. */
static int flush_queue(peer_t *p)
{
    while (p->q) {
        qrec_t *r = p->q;
        int e = send_rec(p, r->data, r->len, -1);

        if (e == -EAGAIN) {
            want_write(p, 1);
            return e;
        }
        if (e < 0)
            return e;
        p->q = r->next;
        if (p->q == NULL)
            p->qtail = &p->q;
        free(r);
    }
    return 0;
}

/* Queues a record without a socket behind the ones waiting. 0 or -ENOMEM. */
static int queue_rec(peer_t *p, const uint8_t *data, size_t len)
{
    qrec_t *r = malloc(sizeof(*r) + len);

    if (r == NULL)
        return -ENOMEM;
    r->next = NULL;
    r->len = len;
    memcpy(r->data, data, len);
    *p->qtail = r;
    p->qtail = &r->next;
    return 0;
}

/* ---- The giving side ------------------------------------------------------------------ */

/* Why c cannot be handed over now: LH_HOR_*, or -1 when it can. transient set when it
 * may become possible (a message, request or authentication that finishes). */
static int refusal(const lh_conn_t *c, int *transient, int prepared)
{
    *transient = 0;
    if (c->tls != NULL)
        return LH_HOR_TLS;
    if (c->flags & LH_CF_HANDOFF_NO)
        return LH_HOR_TOO_BIG;
    if (c->nslots > 0)
        return LH_HOR_MODULE;
    for (uint32_t i = 0; i < c->nsubs && prepared; i++)
        if (!c->subs[i].ch->ho_prepared)
            return LH_HOR_CHANGED; /* subscribed after the channels were listed */
    *transient = 1;
    if (c->nupreqs > 0 || (c->flags & (LH_CF_HOOK_WAIT | LH_CF_HS_PENDING)))
        return LH_HOR_UPSTREAM;
    if (c->frag_opcode != 0 || c->msg_len > 0 || c->in_len > 0 || c->part_done > 0 ||
        c->nhist > 0 || (c->flags & LH_CF_RESUME_LISTED) || lh_auth_kind(c) == LH_ID_NONE)
        return LH_HOR_BUSY;
    return -1;
}

static size_t peer_len(const lh_conn_t *c)
{
    if (c->peer_sa.sa.sa_family == AF_INET)
        return sizeof(c->peer_sa.in4);
    if (c->peer_sa.sa.sa_family == AF_INET6)
        return sizeof(c->peer_sa.in6);
    return 0;
}

/* c's 'C' record into ho->rec; its length, or 0 when over handoff.max_record_bytes. */
static size_t conn_record(struct lh_handoff_s *ho, const lh_conn_t *c, uint64_t now_ms,
                          uint32_t barrier)
{
    lh_hw_t hw;
    uint32_t flags = 0;
    size_t pl = peer_len(c), total = 0;

    if (c->flags & LH_CF_ECHO)
        flags |= LH_HO_F_ECHO;
    if (c->flags & LH_CF_PINGED)
        flags |= LH_HO_F_PINGED;
    if (c->flags & LH_CF_OPENED)
        flags |= LH_HO_F_OPENED;
    lh_hw_init(&hw, ho->rec, ho->rec_cap, LH_HO_CONN);
    lh_hw_u64(&hw, c->id);
    lh_hw_u32(&hw, now_ms > c->last_ms ? (uint32_t)(now_ms - c->last_ms) : 0);
    lh_hw_u32(&hw, flags);
    lh_hw_u32(&hw, barrier);
    lh_hw_u16(&hw, (uint16_t)pl);
    lh_hw_bytes(&hw, &c->peer_sa, pl);
    lh_auth_export(c, &hw);
    lh_hw_u32(&hw, 0); /* unread input: none, a connection moves at a message boundary */
    lh_hw_u32(&hw, (uint32_t)c->out.bytes);
    for (uint32_t i = 0; i < c->out.count; i++) {
        const lh_buf_t *b = c->out.items[(c->out.head + i) & (c->out.cap - 1)];
        size_t off = i == 0 ? c->out.off : 0;

        lh_hw_bytes(&hw, b->data + off, b->len - off);
        total += b->len - off;
    }
    if (total != c->out.bytes)
        return 0;
    lh_hw_u32(&hw, c->nsubs);
    for (uint32_t i = 0; i < c->nsubs; i++) {
        const lh_chan_t *ch = c->subs[i].ch;

        lh_hw_name(&hw, ch->name, ch->len);
        lh_hw_u32(&hw, ch->ho_nlog);
        for (uint32_t k = 0; k < ch->ho_nlog; k++)
            lh_hw_u64(&hw, ch->ho_log[k]);
    }
    return lh_hw_finish(&hw);
}

/* Ends the giving: 'E', the refusals counted by reason, the log off. */
static void give_finish(lh_worker_t *w, const char *why)
{
    struct lh_handoff_s *ho = w->ho;
    unsigned counts[LH_HOR_N] = {0};
    peer_t *p = ho->give;
    int transient;

    if (ho->state == G_DONE)
        return;
    ho->state = G_DONE;
    if (p != NULL) {
        lh_hw_t hw;
        size_t n;
        char json[112];
        int jl = snprintf(json, sizeof(json),
                          "{\"action\":\"handoff\",\"token\":\"%016" PRIx64 "\",\"end\":true}",
                          ho->token);

        /* After every message we delivered, on our NATS connection: the taker forgets
         * the skip lists once it has this (and 'E'). */
        lh_nats_publish_api(w, json, (size_t)jl);
        lh_hw_init(&hw, ho->rec, ho->rec_cap, LH_HO_END);
        n = lh_hw_finish(&hw);
        if (flush_queue(p) == 0 && n > 0)
            send_rec(p, ho->rec, n, -1);
    }
    for (lh_conn_t *c = w->ws_conns.head; c != NULL; c = c->next) {
        int r = refusal(c, &transient, 1);

        if (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT))
            continue;
        counts[r < 0 ? LH_HOR_PEER : r]++;
    }
    counts[LH_HOR_HTTP] += (unsigned)w->http_conns.n;
    for (lh_conn_t *c = w->ws_conns.head; c != NULL; c = c->next) {
        if (c->flags & LH_CF_HO_PAUSED) { /* it stays: it reads again */
            c->flags &= ~LH_CF_HO_PAUSED;
            if (!(c->flags & LH_CF_DEAD))
                event_add(&c->rev, NULL);
        }
    }
    for (unsigned i = 0; i < LH_HOR_N; i++)
        lh_m_add(LH_M_HANDOFF_REFUSED_BASE + i, counts[i]);
    lh_log(LH_LOG_NOTICE, "handoff: done (%s); %zu connections stay and drain "
           "(tls %u, http %u, upstream %u, module %u, busy %u, too big %u, peer %u, changed %u)",
           why, w->nconns, counts[LH_HOR_TLS], counts[LH_HOR_HTTP], counts[LH_HOR_UPSTREAM],
           counts[LH_HOR_MODULE], counts[LH_HOR_BUSY], counts[LH_HOR_TOO_BIG],
           counts[LH_HOR_PEER], counts[LH_HOR_CHANGED]);
    lh_pubsub_handoff_log(w, 0);
    if (p != NULL) {
        ho->give = NULL;
        peer_free(p);
    }
}

/* Hands over every connection that can move now. */
static void give_some(lh_worker_t *w)
{
    struct lh_handoff_s *ho = w->ho;
    peer_t *p = ho->give;
    lh_conn_t *c, *next;
    int waiting = 0, transient, e;
    uint32_t barrier = lh_nats_connected(w) ? ho->batch : 0;
    unsigned sent = 0;

    if (ho->state != G_SEND || p == NULL)
        return;
    e = flush_queue(p);
    if (e == -EAGAIN)
        return;
    if (e < 0) {
        lh_log(LH_LOG_WARNING, "handoff: the new worker is gone: %s", strerror(-e));
        ho->give = NULL;
        peer_free(p);
        give_finish(w, "the new worker is gone");
        return;
    }
    for (c = w->ws_conns.head; c != NULL; c = next) {
        size_t len;
        int r;

        next = c->next;
        if (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT))
            continue;
        r = refusal(c, &transient, 1);
        if (r >= 0) {
            waiting += transient;
            if (transient && c->in_len == 0 && c->msg_len == 0 && c->frag_opcode == 0 &&
                lh_auth_kind(c) != LH_ID_NONE && !(c->flags & LH_CF_HO_PAUSED)) {
                /* What it waits for (a history publish, a webhook) finishes sooner if it
                 * sends nothing more meanwhile: its input waits in the socket, and
                 * goes along with it. (Not a half-received message, nor one still to
                 * authenticate: those need their input.) */
                event_del(&c->rev);
                c->flags |= LH_CF_HO_PAUSED;
            }
            continue;
        }
        len = conn_record(ho, c, w->now_ms, barrier);
        e = len == 0 ? -EMSGSIZE : send_rec(p, ho->rec, len, c->fd);
        if (e == -EAGAIN) {
            want_write(p, 1);
            break;
        }
        if (e == -EMSGSIZE) {
            /* Stays: drains like a connection that cannot move. */
            lh_log(LH_LOG_INFO, "%s: conn %llu: its handoff record (%zu bytes queued) is "
                   "over handoff.max_record_bytes or the socket's buffer; it drains",
                   lh_conn_peer_name(c), (unsigned long long)c->id, c->out.bytes);
            c->flags |= LH_CF_HANDOFF_NO;
            continue;
        }
        if (e < 0) {
            lh_log(LH_LOG_WARNING, "handoff: sendmsg: %s; the rest drains", strerror(-e));
            ho->give = NULL;
            peer_free(p);
            give_finish(w, "the new worker is gone");
            return;
        }
        lh_m_inc(LH_M_HANDOFF_SENT);
        lh_log(LH_LOG_DEBUG, "handoff: conn %llu sent (%u subscriptions, %zu bytes queued)",
               (unsigned long long)c->id, c->nsubs, c->out.bytes);
        sent++;
        c->flags |= LH_CF_HANDOFF;
        lh_conn_destroy(c); /* silent: the new worker has it */
    }
    if (sent > 0 && barrier > 0) {
        /* After what these connections published here, on our NATS connection: the new
         * worker reads their input only once it has heard it, so that their messages
         * keep their order for every subscriber. */
        char json[112];
        int jl = snprintf(json, sizeof(json),
                          "{\"action\":\"handoff\",\"token\":\"%016" PRIx64 "\",\"barrier\":%u}",
                          ho->token, barrier);

        lh_nats_publish_api(w, json, (size_t)jl);
        ho->batch++;
    }
    if (p->wev_on)
        return; /* the socket is full: the rest when it has room */
    if (waiting == 0)
        give_finish(w, "every connection that can move has");
}

static void give_write_cb(evutil_socket_t fd, short what, void *arg)
{
    peer_t *p = arg;

    (void)fd;
    (void)what;
    want_write(p, 0);
    p->w->now_ms = lh_now_ms();
    give_some(p->w);
}

static void give_read_cb(evutil_socket_t fd, short what, void *arg)
{
    peer_t *p = arg;
    lh_worker_t *w = p->w;
    struct lh_handoff_s *ho = w->ho;
    uint8_t buf[64];
    lh_ho_rec_t r;
    const char *why;
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

    (void)what;
    w->now_ms = lh_now_ms();
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        ho->give = NULL;
        peer_free(p);
        give_finish(w, "the new worker is gone");
        return;
    }
    if (lh_handoff_parse(buf, (size_t)n, sizeof(buf), &r, &why) == 0 && r.kind == LH_HO_READY &&
        ho->state == G_WAIT && r.token == ho->token) {
        ho->state = G_SEND;
        give_some(w);
    }
}

static void go_ready(lh_worker_t *w, peer_t *p);

static void marker_heard(lh_worker_t *w, uint64_t token, int kind, uint32_t barrier)
{
    struct lh_handoff_s *ho = kind == 1 ? ho_of(w, 0) : w->ho;
    int end = kind == 2;

    if (ho == NULL)
        return;
    lh_log(LH_LOG_DEBUG, "handoff: marker %d (barrier %u) of %016" PRIx64 " heard", kind,
           barrier, token);
    if (kind == 1) {
        /* May come before the master's "adopt" does: kept for the peer's 'P'. */
        for (peer_t *p = ho->takes; p != NULL; p = p->next) {
            if (p->token == token && p->prepared) {
                p->started = 1;
                go_ready(w, p);
                return;
            }
        }
        ho->heard[ho->nheard++ % LH_ARRAY_LEN(ho->heard)] = token; /* before its 'P' */
        return;
    }
    if (end || barrier > 0) {
        for (peer_t *p = ho->takes; p != NULL; p = p->next) {
            if (p->token != token)
                continue;
            resume_paused(p, end ? UINT32_MAX : barrier);
            if (end) {
                p->heard_end = 1;
                if (p->got_end)
                    take_free(w, p);
            }
            return;
        }
        return;
    }
    if (ho->state != G_WAIT || token != ho->token)
        return;
    lh_log(LH_LOG_DEBUG, "handoff: the new worker is subscribed; handing over");
    ho->state = G_SEND;
    give_some(w);
}

/* Queues the 'P' records: every channel of the connections that may move, then an
 * empty 'P'. 0, or -ENOMEM. */
static int prepare(lh_worker_t *w, peer_t *p, int started)
{
    struct lh_handoff_s *ho = w->ho;
    size_t cap = ho->rec_cap < PREP_RECORD_MAX ? ho->rec_cap : PREP_RECORD_MAX;
    lh_hw_t hw;
    size_t count_at, n;
    uint32_t count = 0;
    int transient;

    for (int last = 0; last < 2; last++) {
        lh_hw_init(&hw, ho->rec, cap, LH_HO_PREPARE);
        lh_hw_u64(&hw, ho->token);
        lh_hw_u8(&hw, (uint8_t)started);
        count_at = hw.len;
        lh_hw_u32(&hw, 0);
        count = 0;
        for (lh_conn_t *c = w->ws_conns.head; c != NULL && !last; c = c->next) {
            int r = refusal(c, &transient, 0);

            if ((r >= 0 && !transient) || (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT)))
                continue;
            for (uint32_t i = 0; i < c->nsubs; i++) {
                lh_chan_t *ch = c->subs[i].ch;

                if (ch->ho_prepared)
                    continue;
                if (hw.len + 2 + ch->len > cap) {
                    for (unsigned k = 0; k < 4; k++)
                        hw.buf[count_at + k] = (uint8_t)(count >> (8 * k));
                    n = lh_hw_finish(&hw);
                    if (n == 0 || queue_rec(p, ho->rec, n) < 0)
                        return -ENOMEM;
                    lh_hw_init(&hw, ho->rec, cap, LH_HO_PREPARE);
                    lh_hw_u64(&hw, ho->token);
                    lh_hw_u8(&hw, (uint8_t)started);
                    lh_hw_u32(&hw, 0);
                    count = 0;
                }
                lh_hw_name(&hw, ch->name, ch->len);
                ch->ho_prepared = 1;
                count++;
            }
        }
        if (last || count > 0) {
            for (unsigned k = 0; k < 4; k++)
                hw.buf[count_at + k] = (uint8_t)(count >> (8 * k));
            n = lh_hw_finish(&hw);
            if (n == 0 || queue_rec(p, ho->rec, n) < 0)
                return -ENOMEM;
        }
    }
    return 0;
}

/*
 * The start marker: from here on we log what we deliver, and our NATS messages before
 * it reach the taker before it, so the taker keeps none of them (we delivered them).
 * Sent again at each sweep until the taker answers: a taker whose subscription to the
 * peers' subject was not in place yet hears a later one, which cuts as well (what came
 * before it we delivered or logged). 0, or the error of lh_nats_publish_api.
 */
static int publish_start(lh_worker_t *w)
{
    char json[112];
    int jl = snprintf(json, sizeof(json),
                      "{\"action\":\"handoff\",\"token\":\"%016" PRIx64 "\",\"start\":true}",
                      w->ho->token);

    return lh_nats_publish_api(w, json, (size_t)jl);
}

void lh_handoff_begin(lh_worker_t *w)
{
    struct lh_handoff_s *ho = w->ho;
    peer_t *p = ho ? ho->give : NULL;
    int e, started;

    if (p == NULL || ho->state != G_NONE)
        return;
    if (getrandom(&ho->token, sizeof(ho->token), GRND_NONBLOCK) != sizeof(ho->token))
        ho->token = ((uint64_t)(unsigned)getpid() << 32) ^ lh_now_ns();
    ho->deadline_ms = w->now_ms + w->cfg->handoff.timeout_ms;
    ho->state = G_WAIT;
    ho->batch = 1;
    lh_pubsub_handoff_log(w, 1);
    started = ho->started = publish_start(w) == 0;
    if (prepare(w, p, started) < 0) {
        give_finish(w, "out of memory");
        return;
    }
    e = flush_queue(p);
    if (e < 0 && e != -EAGAIN) {
        ho->give = NULL;
        peer_free(p);
        give_finish(w, "the new worker is gone");
        return;
    }
    lh_log(LH_LOG_INFO, "handoff: offering %zu WebSocket connections to the new generation",
           w->ws_conns.n);
}

/* ---- The taking side -------------------------------------------------------------- */

static int remember(peer_t *p, const char *s, size_t n)
{
    if (p->nnames == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        char **v = realloc(p->names, cap * sizeof(*v));

        if (v == NULL)
            return -ENOMEM;
        p->names = v;
        p->cap = cap;
    }
    if ((p->names[p->nnames] = strndup(s, n)) == NULL)
        return -ENOMEM;
    p->nnames++;
    return 0;
}

/* The channels of r reserved; at the empty 'P', the marker. 0, or -ENOMEM. */
static int take_prepare(lh_worker_t *w, peer_t *p, const lh_ho_rec_t *r)
{
    lh_ho_list_t l = r->chans;
    const char *s;
    size_t n;

    p->token = r->token;
    if (l.n > 0) {
        while (lh_handoff_next_name(&l, &s, &n)) {
            if (!lh_channel_valid(s, n, LH_CHANNEL_MAX_LEN))
                continue;
            if (lh_pubsub_reserve(w, s, n) < 0)
                return -ENOMEM;
            if (remember(p, s, n) < 0) {
                lh_pubsub_unreserve(w, s, n, 0);
                return -ENOMEM;
            }
            if (p->keeping) /* a late 'P' (never sent so): keep at once */
                lh_pubsub_keep(w, s, n);
        }
        return 0;
    }
    p->prepared = 1;
    p->started = !r->started; /* no start marker will come */
    for (unsigned i = 0; i < LH_ARRAY_LEN(w->ho->heard) && i < w->ho->nheard; i++)
        if (w->ho->heard[i] == r->token)
            p->started = 1;
    go_ready(w, p);
    return 0;
}

/*
 * Once every channel is reserved and the giver's start marker came: keep what arrives
 * from now on (what came before the marker, the giver delivered, for NATS brought it
 * there before the marker too), then tell the giver we are ready.
 */
static void go_ready(lh_worker_t *w, peer_t *p)
{
    char json[96];
    int jl;

    if (!p->prepared || !p->started || p->keeping)
        return;
    p->keeping = 1;
    lh_log(LH_LOG_DEBUG, "handoff: %zu channels reserved for %016" PRIx64 ", keeping; ready",
           p->nnames, p->token);
    for (size_t i = 0; i < p->nnames; i++)
        lh_pubsub_keep(w, p->names[i], strlen(p->names[i]));
    /* After our SUBs on the same NATS connection: the server handles them first. */
    jl = snprintf(json, sizeof(json), "{\"action\":\"handoff\",\"token\":\"%016" PRIx64 "\"}",
                  p->token);
    if (lh_nats_publish_api(w, json, (size_t)jl) < 0) {
        /* No NATS: nothing comes by it that we could miss; say so directly. */
        lh_hw_t hw;
        uint8_t buf[32];
        size_t len;

        lh_hw_init(&hw, buf, sizeof(buf), LH_HO_READY);
        lh_hw_u64(&hw, p->token);
        len = lh_hw_finish(&hw);
        p->no_nats = 1;
        send_rec(p, buf, len, -1); /* the giver waits for it or times out */
    }
}

/* Takes the connection of record r on fd (owned). */
static void adopt(lh_worker_t *w, peer_t *p, const lh_ho_rec_t *r, int fd, uint64_t token)
{
    lh_conn_t *c = lh_conn_adopted(w, fd, r->id, r->peer, r->peer_len, lh_ws_input);
    lh_ho_list_t l = r->subs;
    lh_ho_sub_t s;
    char why[512];

    if (c == NULL) {
        lh_m_inc(LH_M_HANDOFF_FAILED);
        return;
    }
    lh_conn_hold(c);
    c->flags |= LH_CF_HANDOFF;
    if (r->flags & LH_HO_F_ECHO)
        c->flags |= LH_CF_ECHO;
    if (r->flags & LH_HO_F_PINGED)
        c->flags |= LH_CF_PINGED;
    if (r->flags & LH_HO_F_OPENED)
        c->flags |= LH_CF_OPENED;
    if (lh_auth_adopt(c, r) < 0 ||
        (r->out_len > 0 && lh_conn_queue_frame(c, -1, r->out, r->out_len) < 0)) {
        lh_m_inc(LH_M_HANDOFF_FAILED);
        c->flags &= ~LH_CF_HANDOFF;
        lh_conn_close_ws(c, LH_WS_CLOSE_INTERNAL, "out of memory");
        lh_conn_release(c);
        return;
    }
    while (!(c->flags & LH_CF_DEAD) && lh_handoff_next_sub(&l, &s)) {
        int d = lh_auth_judge_subscribe(w->auth, c, s.name, s.len, why, sizeof(why));
        long n;

        if (d == LH_PERM_DENY) {
            /* The new rules refuse it: it ends as on a reload, with "unsubscribed". */
            if (lh_pubsub_subscribe(c, s.name, s.len) == 0) {
                c->flags &= ~LH_CF_HANDOFF;
                lh_m_inc(LH_M_RULES_UNSUBSCRIBED);
                lh_pubsub_end(c, s.name, s.len, why);
                c->flags |= LH_CF_HANDOFF;
            }
            continue;
        }
        /* A webhook's or a token's yes stands: the old worker checked the rule already. */
        n = lh_pubsub_adopt_sub(c, &s, token);
        if (n < 0)
            lh_log(LH_LOG_WARNING, "%s: conn %llu: handed-over subscription to %.*s "
                   "lost: %s", lh_conn_peer_name(c), (unsigned long long)c->id, (int)s.len,
                   s.name, strerror((int)-n));
    }
    c->flags &= ~LH_CF_HANDOFF;
    lh_m_inc(LH_M_HANDOFF_ADOPTED);
    if (r->barrier > p->barrier && !(c->flags & LH_CF_DEAD)) {
        /* What it published on its old worker must reach NATS before what it publishes
         * here: its input waits for the old worker's barrier. */
        if (p->npaused == p->paused_cap) {
            size_t cap = p->paused_cap ? p->paused_cap * 2 : 64;
            paused_t *v = realloc(p->paused, cap * sizeof(*v));

            if (v != NULL) {
                p->paused = v;
                p->paused_cap = cap;
            }
        }
        if (p->npaused < p->paused_cap) {
            event_del(&c->rev);
            c->flags |= LH_CF_HO_PAUSED;
            p->paused[p->npaused].c = c;
            p->paused[p->npaused++].barrier = r->barrier;
        }
    }
    lh_conn_release(c);
}

static void take_read_cb(evutil_socket_t fd, short what, void *arg)
{
    peer_t *p = arg;
    lh_worker_t *w = p->w;
    struct lh_handoff_s *ho = w->ho;

    (void)what;
    w->now_ms = lh_now_ms();
    for (int i = 0; i < 64; i++) {
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } u;
        struct iovec iov = {ho->rec, ho->rec_cap + 1};
        struct msghdr mh = {0};
        struct cmsghdr *cm;
        ssize_t n;
        int cfd = -1;
        lh_ho_rec_t r;
        const char *why;

        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof(u.buf);
        n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            take_close(w, p, n == 0 ? "the retiring worker is gone" : strerror(errno));
            return;
        }
        for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
                cm->cmsg_len >= CMSG_LEN(sizeof(int))) {
                size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

                for (size_t k = 0; k < nfd; k++) {
                    int x;

                    memcpy(&x, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
                    if (cfd < 0)
                        cfd = x;
                    else
                        close(x); /* one socket per record */
                }
            }
        }
        p->deadline_ms = w->now_ms + 2 * (uint64_t)w->cfg->handoff.timeout_ms;
        if (mh.msg_flags & MSG_TRUNC) {
            /* Over our handoff.max_record_bytes: that connection ends (as after a crash),
             * the others still come. */
            lh_log(LH_LOG_ERR, "handoff: a record over handoff.max_record_bytes (%zu): "
                   "its connection is closed", ho->rec_cap);
            if (cfd >= 0) {
                lh_m_inc(LH_M_HANDOFF_FAILED);
                close(cfd);
            }
            continue;
        }
        if ((mh.msg_flags & MSG_CTRUNC) ||
            lh_handoff_parse(ho->rec, (size_t)n, ho->rec_cap, &r, &why) < 0) {
            if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
                why = "truncated";
            lh_log(LH_LOG_ERR, "handoff: a bad record from the retiring worker: %s", why);
            if (cfd >= 0) {
                lh_m_inc(LH_M_HANDOFF_FAILED);
                close(cfd); /* the client sees its connection end, as after a crash */
            }
            take_close(w, p, "bad record");
            return;
        }
        if (r.kind == LH_HO_CONN && cfd >= 0) {
            adopt(w, p, &r, cfd, p->token);
            continue;
        }
        if (cfd >= 0)
            close(cfd);
        if (r.kind == LH_HO_PREPARE) {
            if (take_prepare(w, p, &r) < 0) {
                take_close(w, p, "out of memory");
                return;
            }
        } else if (r.kind == LH_HO_END) {
            take_close(w, p, "all handed over");
            return;
        }
    }
}

/* ---- From the master, the sweep, the end -------------------------------------------- */

void lh_handoff_peer(lh_worker_t *w, int fd, int give)
{
    struct lh_handoff_s *ho = ho_of(w, 1);
    peer_t *p = ho && ho->rec ? calloc(1, sizeof(*p)) : NULL;
    int sz = (int)(w->cfg->handoff.max_record_bytes * 2);

    if (p == NULL || (give && ho->give != NULL)) {
        lh_log(LH_LOG_ERR, "handoff: %s; its connections drain",
               p ? "a second peer to hand over to" : "out of memory");
        free(p);
        close(fd);
        return;
    }
    p->w = w;
    p->fd = fd;
    p->give = give;
    p->qtail = &p->q;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)); /* capped by wmem_max */
    p->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, give ? give_read_cb : take_read_cb, p);
    p->wev = event_new(w->base, fd, EV_WRITE, give_write_cb, p);
    if (p->rev == NULL || p->wev == NULL || event_add(p->rev, NULL) < 0) {
        lh_log(LH_LOG_ERR, "handoff: event_new: out of memory; its connections drain");
        peer_free(p);
        return;
    }
    p->deadline_ms = w->now_ms + 2 * (uint64_t)w->cfg->handoff.timeout_ms +
                     60000; /* the taker waits for the old generation to be told to drain */
    if (give) {
        ho->give = p;
        ho->state = G_NONE;
    } else {
        p->next = ho->takes;
        ho->takes = p;
    }
}

void lh_handoff_init(lh_worker_t *w)
{
    w->ho_marker = marker_heard;
}

void lh_handoff_tick(lh_worker_t *w)
{
    struct lh_handoff_s *ho = w->ho;
    peer_t *p, *next;

    if (ho == NULL)
        return;
    if ((ho->state == G_WAIT || ho->state == G_SEND) && w->now_ms >= ho->deadline_ms)
        give_finish(w, ho->state == G_WAIT ? "the new worker did not answer in time"
                                           : "handoff.timeout_ms");
    else if (ho->state == G_WAIT && ho->started)
        publish_start(w);
    else if (ho->state == G_SEND && ho->give != NULL && !ho->give->wev_on)
        give_some(w); /* the transient refusals may have cleared */
    for (p = ho->takes; p != NULL; p = next) {
        next = p->next;
        if (w->now_ms < p->deadline_ms)
            continue;
        if (p->got_end)
            take_free(w, p);
        else
            take_close(w, p, "timed out");
    }
}

void lh_handoff_free(lh_worker_t *w)
{
    struct lh_handoff_s *ho = w->ho;

    if (ho == NULL)
        return;
    if (ho->give)
        peer_free(ho->give);
    while (ho->takes) {
        peer_t *p = ho->takes;

        ho->takes = p->next;
        peer_free(p);
    }
    free(ho->rec);
    free(ho);
    w->ho = NULL;
    w->ho_marker = NULL;
}
