/*
 * Connections: reading into the worker's shared buffer, the send queue of shared frames
 * written with one send/sendmsg per loop pass, close and lingering close, and freeing a
 * connection only when no callback on the stack still uses it.
 */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lh_log.h"
#include "lh_utf8.h"
#include "lh_ws.h"

#define WRITE_IOV 64
#define READ_ROUNDS 4
#define TLS_STAGE 16384
#define TLS_OUT_LOW (256 * 1024) /* ciphertext prepared ahead of the socket, at most;
                                  * also the most that reading may leave unsent */

void lh_conn_list_append(lh_conn_list_t *l, lh_conn_t *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->n++;
}

void lh_conn_list_remove(lh_conn_list_t *l, lh_conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    l->n--;
}

static lh_conn_list_t *list_of(lh_conn_t *c)
{
    switch (c->state) {
    case LH_CONN_HTTP:
        return &c->w->http_conns;
    case LH_CONN_WS:
        return &c->w->ws_conns;
    default:
        return &c->w->closing_conns;
    }
}

void lh_conn_set_state(lh_conn_t *c, int state)
{
    if (c->state == state)
        return;
    lh_conn_list_remove(list_of(c), c);
    c->state = (uint8_t)state;
    lh_conn_list_append(list_of(c), c);
}

void lh_conn_touch(lh_conn_t *c)
{
    c->flags &= ~LH_CF_PINGED;
    if (c->state != LH_CONN_WS)
        return;
    c->last_ms = c->w->now_ms;
    if (c->w->ws_conns.tail != c) {
        lh_conn_list_remove(&c->w->ws_conns, c);
        lh_conn_list_append(&c->w->ws_conns, c);
    }
}

static void schedule_flush(lh_conn_t *c);

void lh_conn_linger(lh_conn_t *c)
{
    if (c->flags & LH_CF_DEAD)
        return;
    if (c->state != LH_CONN_LINGER) {
        lh_conn_set_state(c, LH_CONN_LINGER);
        c->last_ms = c->w->now_ms + c->w->cfg->websocket.close_timeout_ms;
    }
    /* The half-close happens once the queue is empty: now, or after the flush. */
    schedule_flush(c);
}

void lh_worker_schedule_end(lh_worker_t *w)
{
    if (w->end_scheduled || w->flush_ev == NULL)
        return;
    w->end_scheduled = 1;
    event_active(w->flush_ev, 0, 0);
}

static void schedule_flush(lh_conn_t *c)
{
    lh_worker_t *w = c->w;

    if (c->flags & (LH_CF_FLUSH_LISTED | LH_CF_WRITE_WAIT))
        return;
    c->flags |= LH_CF_FLUSH_LISTED;
    lh_worker_schedule_end(w);
    c->flush_next = w->flush_head;
    w->flush_head = c;
}

/*
 * Appends b to the ring. A fan-out queues one message per subscriber per publish, so a
 * subscriber gets as many entries in one loop pass as there were publishes in it: the
 * ring grows fourfold (4, 16, 64, 256...), in place with realloc when its items are
 * contiguous (a drained ring restarts at 0), so a pass of n messages costs about
 * log4(n) reallocations instead of log2(n) malloc-copy-free rounds.
 */
static int outq_push(lh_outq_t *q, lh_buf_t *b)
{
    if (q->count == q->cap) {
        uint32_t ncap = q->cap == 0 ? 4 : q->cap < (UINT32_C(1) << 29) ? q->cap * 4 : q->cap * 2;
        lh_buf_t **items;

        if (q->cap >= (UINT32_C(1) << 31))
            return -ENOMEM;
        if (q->head == 0) {
            items = realloc(q->items, ncap * sizeof(*items));
            if (items == NULL)
                return -ENOMEM;
        } else {
            items = malloc(ncap * sizeof(*items));
            if (items == NULL)
                return -ENOMEM;
            for (uint32_t i = 0; i < q->count; i++)
                items[i] = q->items[(q->head + i) & (q->cap - 1)];
            free(q->items);
            q->head = 0;
        }
        q->items = items;
        q->cap = ncap;
    }
    q->items[(q->head + q->count) & (q->cap - 1)] = b;
    q->count++;
    q->bytes += b->len;
    lh_m_add(LH_G_SEND_QUEUE_BYTES, b->len);
    return 0;
}

static void outq_clear(lh_outq_t *q, int keep_partial_head)
{
    uint32_t keep = (keep_partial_head && q->count > 0 && q->off > 0) ? 1 : 0;

    for (uint32_t i = keep; i < q->count; i++) {
        lh_buf_t *b = q->items[(q->head + i) & (q->cap - 1)];
        size_t unwritten = b->len - (i == 0 ? q->off : 0); /* the head may be half out */

        q->bytes -= unwritten;
        lh_m_sub(LH_G_SEND_QUEUE_BYTES, unwritten);
        lh_buf_unref(b);
    }
    q->count = keep;
    if (!keep) {
        q->off = 0;
        q->bytes = 0;
        free(q->items);
        q->items = NULL;
        q->cap = 0;
        q->head = 0;
    }
}

/* A client that does not read: drop what it has not started to receive, close 4008. */
static void conn_overflow(lh_conn_t *c)
{
    lh_log(LH_LOG_WARNING, "conn %llu: send queue over %zu bytes, closing",
           (unsigned long long)c->id, c->w->cfg->limits.send_queue_bytes);
    lh_m_inc(LH_M_SLOW_CLOSED);
    lh_m_add(LH_M_SLOW_DROPPED, c->out.count - (c->out.off > 0 ? 1u : 0u) + 1);
    outq_clear(&c->out, 1);
    lh_conn_close_ws(c, LH_WS_CLOSE_SLOW_CONSUMER, "send queue full");
    if (c->state == LH_CONN_CLOSING) {
        /* It does not read: do not wait for its close frame either. */
        lh_conn_linger(c);
    }
}

static int conn_write(lh_conn_t *c);
static int out_pending(const lh_conn_t *c);

/*
 * The backlog that limits.send_queue_bytes judges: what waits behind the message at the
 * head of the queue, the one the socket is working on. A client that reads at full
 * speed is never cut by the size of one message (a 16 MiB echo through a 4 MiB queue),
 * nor by a small message queued while a big one is still being written; a client that
 * does not read lets messages pile up behind the head and is cut. One client holds at
 * most that head, plus send_queue_bytes, plus the last message accepted.
 */
static size_t outq_backlog(const lh_outq_t *q)
{
    if (q->count == 0)
        return 0;
    return q->bytes - (q->items[q->head]->len - q->off);
}

int lh_conn_queue(lh_conn_t *c, lh_buf_t *b)
{
    int is_close = (b->flags & LH_BUF_CLOSE_FRAME) != 0;

    if (c->flags & (LH_CF_DEAD | LH_CF_HALF_CLOSED))
        return -EPIPE;
    if ((c->flags & LH_CF_CLOSE_SENT) && !is_close)
        return -EPIPE;
    if (!is_close && c->state != LH_CONN_HTTP &&
        outq_backlog(&c->out) >= c->w->cfg->limits.send_queue_bytes) {
        /* The queue only looks full because this loop pass has not written yet (a burst
         * from NATS, say): write now, unless the socket already said it is full. */
        if (!(c->flags & LH_CF_WRITE_WAIT) && conn_write(c) < 0)
            return -EPIPE;
        if (outq_backlog(&c->out) >= c->w->cfg->limits.send_queue_bytes) {
            conn_overflow(c);
            return -ENOBUFS;
        }
    }
    if (outq_push(&c->out, b) < 0) {
        lh_conn_destroy(c);
        return -ENOMEM;
    }
    lh_buf_ref(b);
    schedule_flush(c);
    return 0;
}

int lh_conn_queue_frame(lh_conn_t *c, int opcode, const void *data, size_t len)
{
    uint8_t hdr[LH_WS_MAX_HEADER];
    size_t hl = opcode >= 0 ? lh_ws_build_header(hdr, 1, opcode, len, NULL) : 0;
    lh_buf_t *b = lh_buf_new(hl + len);
    int r;

    if (b == NULL)
        return -ENOMEM;
    memcpy(b->data, hdr, hl);
    if (len)
        memcpy(b->data + hl, data, len);
    if (opcode == LH_WS_OP_CLOSE)
        b->flags |= LH_BUF_CLOSE_FRAME;
    r = lh_conn_queue(c, b);
    lh_buf_unref(b);
    return r;
}

void lh_conn_close_ws(lh_conn_t *c, uint16_t code, const char *reason)
{
    uint8_t payload[125];
    size_t rl = reason ? strlen(reason) : 0;
    lh_worker_t *w = c->w;

    if (c->flags & LH_CF_DEAD)
        return;
    if (c->state == LH_CONN_HTTP) {
        lh_conn_destroy(c);
        return;
    }
    if (c->flags & LH_CF_CLOSE_SENT)
        return;
    if (rl > sizeof(payload) - 2)
        rl = sizeof(payload) - 2;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    memcpy(payload + 2, reason, rl);
    lh_conn_queue_frame(c, LH_WS_OP_CLOSE, payload, rl + 2);
    c->flags |= LH_CF_CLOSE_SENT;
    c->close_code = code;
    /* A handler may be closing the connection while its message, assembled in c->msg,
     * is still being dispatched: then the buffer stays until the dispatch is over. */
    if (c->busy == 0) {
        free(c->msg);
        c->msg = NULL;
        c->msg_cap = 0;
    }
    c->msg_len = 0;
    c->frag_opcode = 0;
    if (c->state == LH_CONN_WS)
        lh_conn_set_state(c, LH_CONN_CLOSING);
    c->last_ms = w->now_ms + w->cfg->websocket.close_timeout_ms;
}

/* Formats the peer address once, on first use. */
const char *lh_conn_peer_name(const lh_conn_t *cc)
{
    lh_conn_t *c = (lh_conn_t *)cc;
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    char tmp[INET6_ADDRSTRLEN + 16];

    if (c->peer)
        return c->peer;
    if (c->peer_sa.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &c->peer_sa.in4.sin_addr, ip, sizeof(ip));
        port = ntohs(c->peer_sa.in4.sin_port);
        snprintf(tmp, sizeof(tmp), "%s:%u", ip, port);
    } else if (c->peer_sa.sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &c->peer_sa.in6.sin6_addr, ip, sizeof(ip));
        port = ntohs(c->peer_sa.in6.sin6_port);
        snprintf(tmp, sizeof(tmp), "[%s]:%u", ip, port);
    } else {
        snprintf(tmp, sizeof(tmp), "local");
    }
    c->peer = strdup(tmp);
    return c->peer ? c->peer : "?";
}

/*
 * Ends a connection whose close or linger deadline passed. What is still unsent (in our
 * queue or in the kernel's send buffer) is for a peer that did not read it in
 * close_timeout_ms: a plain close would leave the kernel sending it, FIN last, for as
 * long as that peer keeps its window nearly shut, so the client would never learn that
 * it was cut. Then the connection is reset (SO_LINGER 0) instead; a peer that has read
 * everything gets the ordinary FIN.
 */
void lh_conn_expire(lh_conn_t *c)
{
    int unsent = 0;

    if (c->flags & LH_CF_DEAD)
        return;
    if (out_pending(c) || ioctl(c->fd, SIOCOUTQ, &unsent) < 0 || unsent > 0) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0)
            lh_m_inc(LH_M_CONN_RESET_EXPIRED);
    }
    lh_conn_destroy(c);
}

void lh_conn_destroy(lh_conn_t *c)
{
    lh_worker_t *w = c->w;

    if (c->flags & LH_CF_DEAD)
        return;
    c->flags |= LH_CF_DEAD;
    if (c->tls)
        lh_tls_gone(c->tls, 0);
    /* The layers above say goodbye, in the order they registered (lh_worker_new). */
    lh_conn_hold(c);
    for (unsigned i = 0; i < w->ngone; i++)
        w->gone[i](c);
    lh_conn_release(c);
    lh_conn_list_remove(list_of(c), c);
    event_del(&c->rev);
    event_del(&c->wev);
    close(c->fd);
    c->fd = -1;
    outq_clear(&c->out, 0);
    /* c->in and c->msg may hold the message being dispatched further up the stack (a
     * write that fails inside a handler destroys the connection): they are freed with
     * the connection, in lh_worker_reap, once nothing runs on it. */
    c->in_len = 0;
    c->msg_len = 0;
    w->nconns--;
    if (w->nconns == 0 && (w->stopping || w->draining))
        event_base_loopbreak(w->base); /* the last client left: no need to wait a tick */
    if (c->flags & LH_CF_WS_OPEN) {
        lh_m_sub(LH_G_WS_OPEN, 1);
        if (!(c->flags & LH_CF_HANDOFF)) /* handed over: not closed for the client */
            lh_m_inc(LH_M_CLOSE_BASE + lh_metrics_close_index((c->flags & LH_CF_CLOSE_SENT)
                                                                  ? c->close_code : 1006));
    } else {
        lh_m_sub(LH_G_HTTP_OPEN, 1);
    }
    c->next = w->reap_head;
    w->reap_head = c;
    lh_worker_schedule_end(w); /* freed at the end of this loop pass */
}

int lh_conn_on_gone(lh_worker_t *w, lh_conn_gone_fn fn)
{
    if (w->ngone == LH_CONN_GONE_MAX)
        return -ENOSPC;
    w->gone[w->ngone++] = fn;
    return 0;
}

void lh_conn_resume_later(lh_conn_t *c)
{
    lh_worker_t *w = c->w;

    if (c->flags & (LH_CF_DEAD | LH_CF_RESUME_LISTED))
        return;
    event_add(&c->rev, NULL);
    if (c->in_len == 0 && !(c->tls && lh_tls_has_input(c->tls)))
        return; /* nothing held back: the socket's next input comes by read_cb */
    c->flags |= LH_CF_RESUME_LISTED;
    c->resume_next = w->resume_head;
    w->resume_head = c;
    lh_worker_schedule_end(w);
}

static void conn_process_held(lh_conn_t *c);

void lh_worker_end_pass(lh_worker_t *w)
{
    w->end_scheduled = 0;
    /* Resuming queues answers, which the flush writes; a write can list a connection for
     * resuming again (its queue went under the limit): until both lists are empty. This
     * runs from flush_ev, never inside an input handler, so resuming cannot re-enter a
     * parse. */
    do {
        while (w->resume_head) {
            lh_conn_t *c = w->resume_head;

            w->resume_head = c->resume_next;
            c->resume_next = NULL;
            c->flags &= ~LH_CF_RESUME_LISTED;
            if (!(c->flags & LH_CF_DEAD))
                conn_process_held(c);
        }
        lh_worker_flush(w);
    } while (w->resume_head);
    lh_worker_reap(w);
}

void lh_worker_reap(lh_worker_t *w)
{
    lh_conn_t **pp = &w->reap_head;

    while (*pp) {
        lh_conn_t *c = *pp;

        if (c->busy || (c->flags & (LH_CF_FLUSH_LISTED | LH_CF_RESUME_LISTED))) {
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        free(c->in);
        free(c->msg);
        free(c->slots);
        free(c->peer);
        lh_tls_free(c->tls);
        free(c);
    }
}

/* n bytes of the queue's head are out (sent, or encrypted into the TLS output). */
static void outq_consume(lh_outq_t *q, size_t n)
{
    uint64_t now_ns = 0;

    lh_m_sub(LH_G_SEND_QUEUE_BYTES, (uint64_t)n);
    q->bytes -= n;
    while (n > 0) {
        lh_buf_t *b = q->items[q->head];
        size_t rest = b->len - q->off;

        if (n < rest) {
            q->off += n;
            break;
        }
        n -= rest;
        q->off = 0;
        q->head = (q->head + 1) & (q->cap - 1);
        q->count--;
        if (b->flags & LH_BUF_TIMED) {
            if (now_ns == 0)
                now_ns = lh_now_ns();
            lh_metrics_observe_latency_ns(now_ns - b->t_ns);
        }
        lh_buf_unref(b);
    }
}

/* Bytes that still have to reach the socket: the queue, and TLS's ciphertext. */
static int out_pending(const lh_conn_t *c)
{
    return c->out.count > 0 || (c->tls != NULL && c->tls->out_len > c->tls->out_off);
}

/* After a write: resume a paused reader, wait for EV_WRITE while something is left,
 * half-close a lingering connection once everything is out. Returns 0, or -1 if
 * destroyed. */
static int write_done(lh_conn_t *c)
{
    lh_outq_t *q = &c->out;

    if ((c->flags & LH_CF_OUT_FULL) && q->bytes < c->w->cfg->limits.send_queue_bytes) {
        c->flags &= ~LH_CF_OUT_FULL;
        /* The requests held back are read at the end of the pass, never from here: a
         * write can happen while a request is being parsed (w->req in use). */
        lh_conn_resume_later(c);
    }
    if ((c->flags & LH_CF_TLS_OUT_FULL) && c->tls->out_len - c->tls->out_off < TLS_OUT_LOW) {
        c->flags &= ~LH_CF_TLS_OUT_FULL;
        lh_conn_resume_later(c); /* the ciphertext held back is decrypted from the pass end */
    }
    if (out_pending(c)) {
        if (!(c->flags & LH_CF_WRITE_WAIT)) {
            c->flags |= LH_CF_WRITE_WAIT;
            event_add(&c->wev, NULL);
        }
        return 0;
    }
    if (c->flags & LH_CF_WRITE_WAIT) {
        c->flags &= ~LH_CF_WRITE_WAIT;
        event_del(&c->wev);
    }
    q->head = 0; /* empty: the next growth can realloc in place */
    if (q->cap > 16) {
        free(q->items);
        q->items = NULL;
        q->cap = 0;
    }
    if (c->state == LH_CONN_LINGER && !(c->flags & LH_CF_HALF_CLOSED)) {
        /* Everything is out: half-close and wait for the peer's EOF, so that our last
         * bytes are not lost to a reset. */
        c->flags |= LH_CF_HALF_CLOSED;
        shutdown(c->fd, SHUT_WR);
        if (c->flags & LH_CF_EOF) {
            lh_conn_destroy(c);
            return -1;
        }
    }
    return 0;
}

/* Writes as much of the queue as the socket takes. Returns 0, or -1 if destroyed. */
static int plain_write(lh_conn_t *c)
{
    lh_outq_t *q = &c->out;

    while (q->count > 0) {
        struct iovec iov[WRITE_IOV];
        int n = 0;
        size_t total = 0;
        ssize_t r;

        for (uint32_t i = 0; i < q->count && n < WRITE_IOV; i++, n++) {
            lh_buf_t *b = q->items[(q->head + i) & (q->cap - 1)];
            size_t skip = i == 0 ? q->off : 0;

            iov[n].iov_base = b->data + skip;
            iov[n].iov_len = b->len - skip;
            total += iov[n].iov_len;
        }
        /* send/sendmsg rather than writev: the socket path, without the file layer's
         * position lock and write notifications (about a tenth of a delivery's cost). */
        if (n == 1) {
            r = send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        } else {
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};

            r = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            lh_log(LH_LOG_DEBUG, "conn %llu: send: %s", (unsigned long long)c->id,
                   strerror(errno));
            lh_conn_destroy(c);
            return -1;
        }
        lh_m_add(LH_M_BYTES_OUT, (uint64_t)r);
        outq_consume(q, (size_t)r);
        if ((size_t)r < total)
            break;
    }
    return write_done(c);
}

/*
 * Encrypts up to one record (TLS_STAGE bytes) of the queue's plaintext: small messages
 * (a fan-out's deliveries) are gathered into the worker's stage first, so that many of
 * them share one record and one encryption call. The queue is walked first and consumed
 * once: outq_consume reads the clock for the latency metric once per call, and once per
 * delivery was 15% of a TLS fan-out's CPU. Returns 0, or -1.
 */
static int tls_encrypt(lh_conn_t *c)
{
    lh_outq_t *q = &c->out;
    uint8_t *stage = c->w->tls_stage;
    size_t n = 0, i = q->head, off = q->off, left = q->count;

    while (n < TLS_STAGE && left > 0) {
        lh_buf_t *b = q->items[i];
        size_t take = b->len - off;

        if (take > TLS_STAGE - n)
            take = TLS_STAGE - n;
        memcpy(stage + n, b->data + off, take);
        n += take;
        off += take;
        if (off == b->len) {
            off = 0;
            i = (i + 1) & (q->cap - 1);
            left--;
        }
    }
    outq_consume(q, n);
    return lh_tls_write(c->tls, stage, n);
}

/* The TLS write path: plaintext from the queue is encrypted as the socket takes it, so
 * the queue (and limits.send_queue_bytes) still holds the backlog, and the ciphertext
 * of many messages goes out in one send. Returns 0, or -1 if destroyed. */
static int tls_write(lh_conn_t *c)
{
    lh_tls_t *t = c->tls;
    lh_outq_t *q = &c->out;

    if (t->failed && q->count > 0)
        outq_clear(q, 0); /* nothing more can be encrypted */
    for (;;) {
        size_t pend;
        ssize_t r;

        while (t->done && !t->failed && !t->shut && q->count > 0 &&
               t->out_len - t->out_off < TLS_OUT_LOW) {
            if (tls_encrypt(c) < 0) {
                lh_conn_destroy(c);
                return -1;
            }
        }
        pend = t->out_len - t->out_off;
        if (pend == 0) {
            if (c->state == LH_CONN_LINGER && !(c->flags & LH_CF_HALF_CLOSED) && t->done &&
                !t->shut && !t->failed && q->count == 0) {
                lh_tls_shutdown(t); /* close_notify before the FIN */
                continue;
            }
            break;
        }
        r = send(c->fd, t->out + t->out_off, pend, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            lh_log(LH_LOG_DEBUG, "conn %llu: send: %s", (unsigned long long)c->id,
                   strerror(errno));
            lh_conn_destroy(c);
            return -1;
        }
        lh_m_add(LH_M_BYTES_OUT, (uint64_t)r);
        lh_tls_out_sent(t, (size_t)r);
        if ((size_t)r < pend)
            break;
    }
    return write_done(c);
}

static int conn_write(lh_conn_t *c)
{
    return c->tls ? tls_write(c) : plain_write(c);
}

void lh_worker_flush(lh_worker_t *w)
{
    while (w->flush_head) {
        lh_conn_t *c = w->flush_head;

        w->flush_head = c->flush_next;
        c->flush_next = NULL;
        c->flags &= ~LH_CF_FLUSH_LISTED;
        if (!(c->flags & LH_CF_DEAD))
            conn_write(c);
    }
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_conn_t *c = arg;

    c->w->now_ms = lh_now_ms();
    c->flags &= ~LH_CF_WRITE_WAIT;
    event_del(&c->wev);
    conn_write(c);
}

/* Feeds data to the state's handler until it needs more. Returns bytes consumed. */
static size_t conn_process(lh_conn_t *c, uint8_t *data, size_t len)
{
    size_t off = 0;

    while (off < len &&
           !(c->flags & (LH_CF_DEAD | LH_CF_HS_PENDING | LH_CF_OUT_FULL | LH_CF_HOOK_WAIT))) {
        ssize_t r;

        if (c->state == LH_CONN_HTTP &&
            c->out.bytes >= c->w->cfg->limits.send_queue_bytes) {
            /* A client that pipelines requests and does not read the answers: no more
             * requests from it until they are written (conn_write resumes it). */
            c->flags |= LH_CF_OUT_FULL;
            event_del(&c->rev);
            break;
        }
        r = c->input(c, data + off, len - off);
        if (r <= 0)
            break;
        off += (size_t)r;
    }
    return off;
}

/* The most a connection may hold unprocessed: one request head and body, or one frame. */
static size_t in_limit(const lh_conn_t *c)
{
    const lh_config_t *cfg = c->w->cfg;

    if (c->state == LH_CONN_HTTP)
        return cfg->http.max_header_bytes + cfg->http.max_body_bytes + 1;
    return cfg->limits.max_message_bytes + LH_WS_MAX_HEADER;
}

static int in_reserve(lh_conn_t *c, size_t need)
{
    size_t cap = c->in_cap ? c->in_cap : 4096;
    uint8_t *p;

    if (need <= c->in_cap)
        return 0;
    while (cap < need)
        cap *= 2;
    if (cap > in_limit(c) && need <= in_limit(c))
        cap = in_limit(c);
    if (cap > UINT32_MAX)
        return -1;
    p = realloc(c->in, cap);
    if (p == NULL)
        return -1;
    c->in = p;
    c->in_cap = (uint32_t)cap;
    return 0;
}

/* Where the next read goes: the shared scratch buffer when nothing is held back (most
 * reads: a whole frame or request at once, processed in place), else the end of c->in,
 * grown as needed but never past in_limit. Returns 0, or -1 once c was destroyed. */
static int read_target(lh_conn_t *c, uint8_t **dst, size_t *room)
{
    size_t lim;

    if (c->in_len == 0) {
        *dst = c->w->rbuf;
        *room = c->w->rbuf_cap;
        return 0;
    }
    lim = in_limit(c);
    if (c->in_len >= lim) {
        /* The handler accepted a prefix this long and still wants more: only a bug
         * could lead here, but never grow without bound. */
        lh_log(LH_LOG_ERR, "conn %llu: input over %zu bytes unprocessed",
               (unsigned long long)c->id, lim);
        lh_conn_close_ws(c, LH_WS_CLOSE_TOO_BIG, "message too big");
        lh_conn_destroy(c);
        return -1;
    }
    if (c->in_cap - c->in_len < 4096 &&
        in_reserve(c, c->in_len + (c->in_len < 65536 ? c->in_len : 65536)) < 0) {
        lh_conn_destroy(c);
        return -1;
    }
    *dst = c->in + c->in_len;
    *room = c->in_cap - c->in_len;
    if (*room > lim - c->in_len)
        *room = lim - c->in_len;
    return 0;
}

/* The peer closed its side (recv returned 0). */
static void read_eof(lh_conn_t *c)
{
    c->flags |= LH_CF_EOF;
    /* The peer is gone or half-closed; a WebSocket client that left without a close
     * frame is done. An HTTP client that half-closed still gets its response, then the
     * connection ends. */
    if (!out_pending(c) || c->state == LH_CONN_WS || c->state == LH_CONN_CLOSING ||
        (c->flags & LH_CF_HALF_CLOSED)) {
        lh_conn_destroy(c);
        return;
    }
    event_del(&c->rev);
    if (c->state == LH_CONN_HTTP)
        lh_conn_linger(c);
}

/* Hands c->in to the input handler and keeps what it did not consume, at the start. */
static void process_in(lh_conn_t *c)
{
    size_t used = conn_process(c, c->in, c->in_len);

    if (!(c->flags & LH_CF_DEAD) && used > 0) {
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= (uint32_t)used;
    }
}

/* Processes n bytes just read into dst (read_target's choice) and keeps what the handler
 * did not consume in c->in. Returns 0, or -1 once c was destroyed. */
static int read_consume(lh_conn_t *c, uint8_t *dst, size_t n)
{
    size_t used;

    if (dst == c->w->rbuf) {
        used = conn_process(c, dst, n);
        if (used < n && !(c->flags & LH_CF_DEAD)) {
            size_t rest = n - used;

            if (in_reserve(c, rest) < 0) {
                lh_conn_destroy(c);
                return -1;
            }
            memcpy(c->in, dst + used, rest);
            c->in_len = (uint32_t)rest;
        }
        return 0;
    }
    c->in_len += (uint32_t)n;
    process_in(c);
    if (!(c->flags & LH_CF_DEAD) && c->in_len == 0) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    return 0;
}

static void tls_read(lh_conn_t *c);
static int plain_port_hello(lh_conn_t *c, const uint8_t *p, size_t n);

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_conn_t *c = arg;
    lh_worker_t *w = c->w;

    w->now_ms = lh_now_ms();
    if (c->tls) {
        tls_read(c);
        return;
    }
    lh_conn_hold(c);
    for (int round = 0; round < READ_ROUNDS && !(c->flags & LH_CF_DEAD); round++) {
        uint8_t *dst;
        size_t room;
        ssize_t n;

        if (read_target(c, &dst, &room) < 0)
            break;
        n = recv(c->fd, dst, room, 0); /* the socket path, as send */
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                lh_log(LH_LOG_DEBUG, "conn %llu: read: %s", (unsigned long long)c->id,
                       strerror(errno));
                lh_conn_destroy(c);
            }
            break;
        }
        if (n == 0) {
            read_eof(c);
            break;
        }
        lh_m_add(LH_M_BYTES_IN, (uint64_t)n);
        if (!(c->flags & LH_CF_SEEN_INPUT) && plain_port_hello(c, dst, (size_t)n))
            break;
        if (read_consume(c, dst, (size_t)n) < 0)
            break;
        if ((size_t)n < room || (c->flags & LH_CF_OUT_FULL))
            break;
    }
    lh_conn_release(c);
}

#define PAUSED \
    (LH_CF_DEAD | LH_CF_HS_PENDING | LH_CF_OUT_FULL | LH_CF_HOOK_WAIT | LH_CF_TLS_OUT_FULL)
#define TLS_HELD_MAX (256 * 1024) /* ciphertext kept while input is paused, at most */

/* The first bytes on a plain listener are a TLS ClientHello (a record of type 22,
 * version 3.x): the client is told, in plain HTTP, and the connection closes. Returns 1
 * when that was it. */
static int plain_port_hello(lh_conn_t *c, const uint8_t *p, size_t n)
{
    static const char msg[] =
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 52\r\n"
        "Connection: close\r\n\r\nThis port speaks plain HTTP: use http:// or ws://.\r\n";

    c->flags |= LH_CF_SEEN_INPUT;
    if (n < 3 || p[0] != 0x16 || p[1] != 0x03)
        return 0;
    lh_m_inc(LH_M_TLS_HS_BASE + LH_TLS_R_PLAIN_PORT * LH_TLS_V_N + LH_TLS_V_NONE);
    lh_log(LH_LOG_DEBUG, "conn %llu: a TLS hello on a plain listener", (unsigned long long)c->id);
    c->flags |= LH_CF_CLOSE_AFTER;
    if (lh_conn_queue_frame(c, -1, msg, sizeof(msg) - 1) == 0)
        lh_conn_linger(c);
    else
        lh_conn_destroy(c);
    return 1;
}

/*
 * Moves a TLS connection's input along: the handshake, then plaintext to the state's
 * handler (through read_target and read_consume, as a plain read) until the engine
 * needs more ciphertext or the input is paused. Returns 0, or -1 when c is done for.
 */
static int tls_pump(lh_conn_t *c)
{
    lh_tls_t *t = c->tls;

    if (t->failed)
        return -1;
    if (!t->done) {
        int r = lh_tls_handshake(t);

        if (r < 0) {
            static const char msg[] =
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                "Content-Length: 47\r\nConnection: close\r\n\r\n"
                "This port speaks TLS: use https:// or wss://.\r\n";

            if (t->http)
                lh_tls_plain_answer(t, msg, sizeof(msg) - 1);
            /* The alert (or the 400) goes out, then the half-close. */
            lh_conn_linger(c);
            return -1;
        }
        if (t->out_len > t->out_off)
            schedule_flush(c);
        if (r == 0)
            return 0;
    }
    while (!(c->flags & PAUSED)) {
        uint8_t *dst;
        size_t room;
        ssize_t n;

        if (t->out_len - t->out_off >= TLS_OUT_LOW) {
            /* Reading makes output of its own (a KeyUpdate is answered by one, whatever
             * the send queue holds): a client that asks for it and does not read would
             * grow t->out without bound. Stop reading it until the socket takes the
             * ciphertext (write_done resumes); the rest waits in t->held, then in the
             * kernel. */
            c->flags |= LH_CF_TLS_OUT_FULL;
            break;
        }
        if (read_target(c, &dst, &room) < 0)
            return -1;
        n = lh_tls_read(t, dst, room);
        if (n > 0) {
            if (read_consume(c, dst, (size_t)n) < 0)
                return -1;
            continue;
        }
        if (n == 0)
            break;
        if (n == -1) {
            read_eof(c); /* close_notify */
            return -1;
        }
        lh_conn_destroy(c);
        return -1;
    }
    if (!(c->flags & LH_CF_DEAD) && t->out_len > t->out_off)
        schedule_flush(c); /* tickets, alerts, key updates */
    return 0;
}

static void tls_read(lh_conn_t *c)
{
    lh_worker_t *w = c->w;
    lh_tls_t *t = c->tls;

    lh_conn_hold(c);
    for (int round = 0; round < READ_ROUNDS && !(c->flags & LH_CF_DEAD); round++) {
        ssize_t n;

        if ((c->flags & PAUSED) && t->held_len - t->held_off >= TLS_HELD_MAX) {
            /* Paused and holding enough: the socket keeps the rest (resumed by
             * lh_conn_resume_later). */
            event_del(&c->rev);
            break;
        }
        n = recv(c->fd, w->tls_rbuf, w->rbuf_cap, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                lh_log(LH_LOG_DEBUG, "conn %llu: read: %s", (unsigned long long)c->id,
                       strerror(errno));
                lh_conn_destroy(c);
            }
            break;
        }
        if (n == 0) {
            read_eof(c);
            break;
        }
        lh_m_add(LH_M_BYTES_IN, (uint64_t)n);
        if (t->failed)
            continue; /* lingering after a failed handshake: only the EOF matters */
        lh_tls_input(t, w->tls_rbuf, (size_t)n);
        if (tls_pump(c) < 0) {
            lh_tls_input(t, NULL, 0);
            break;
        }
        if (lh_tls_keep(t) < 0) {
            lh_conn_destroy(c);
            break;
        }
        if ((size_t)n < w->rbuf_cap)
            break;
    }
    lh_conn_release(c);
}

/* The input held back while c was paused (a pending handshake, a full queue). */
static void conn_process_held(lh_conn_t *c)
{
    if (c->in_len == 0 && !(c->tls && lh_tls_has_input(c->tls)))
        return;
    lh_conn_hold(c);
    if (c->in_len > 0)
        process_in(c);
    if (c->tls && !(c->flags & PAUSED))
        tls_pump(c);
    lh_conn_release(c);
}

lh_conn_t *lh_conn_adopted(lh_worker_t *w, int fd, uint64_t id, const void *sa, size_t salen,
                           lh_conn_input_fn input)
{
    lh_conn_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        lh_log(LH_LOG_ERR, "calloc: out of memory; dropping a handed-over connection");
        close(fd);
        return NULL;
    }
    c->w = w;
    c->fd = fd;
    c->id = id;
    if (salen <= sizeof(c->peer_sa))
        memcpy(&c->peer_sa, sa, salen);
    c->state = LH_CONN_WS;
    c->input = input;
    c->flags = LH_CF_WS_OPEN;
    c->last_ms = w->now_ms;
    event_assign(&c->rev, w->base, fd, EV_READ | EV_PERSIST, read_cb, c);
    event_assign(&c->wev, w->base, fd, EV_WRITE | EV_PERSIST, write_cb, c);
    event_add(&c->rev, NULL);
    lh_conn_list_append(&w->ws_conns, c);
    w->nconns++;
    lh_m_inc(LH_G_WS_OPEN);
    return c;
}

lh_conn_t *lh_conn_accepted(lh_worker_t *w, int fd, const struct sockaddr *sa, socklen_t salen,
                            int admin, lh_conn_input_fn input, lh_tls_ctx_t *tls)
{
    lh_conn_t *c = calloc(1, sizeof(*c));

    if (c != NULL && tls != NULL && (c->tls = lh_tls_new(tls)) == NULL) {
        free(c);
        c = NULL;
    }
    if (c == NULL) {
        lh_log(LH_LOG_ERR, "calloc: out of memory; dropping a connection");
        close(fd);
        return NULL;
    }
    c->w = w;
    c->fd = fd;
    c->id = w->next_id++;
    if ((size_t)salen <= sizeof(c->peer_sa))
        memcpy(&c->peer_sa, sa, (size_t)salen);
    c->state = LH_CONN_HTTP;
    c->input = input;
    if (admin)
        c->flags |= LH_CF_ADMIN;
    c->last_ms = w->now_ms + w->cfg->limits.handshake_timeout_ms;
    event_assign(&c->rev, w->base, fd, EV_READ | EV_PERSIST, read_cb, c);
    event_assign(&c->wev, w->base, fd, EV_WRITE | EV_PERSIST, write_cb, c);
    event_add(&c->rev, NULL);
    lh_conn_list_append(&w->http_conns, c);
    w->nconns++;
    lh_m_inc(LH_M_TCP_ACCEPTED);
    lh_m_inc(LH_G_HTTP_OPEN);
    return c;
}
