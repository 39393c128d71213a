/*
 * One generator process: an epoll loop over its subscribers (and, in process 0, the
 * publishers). Connections are set up a bounded number at a time; each is a small
 * state machine: TCP connect, WebSocket handshake, LHTTP subscribe confirmed by a ping's
 * pong (nchan subscribes in the handshake), then frames. Every read is processed from one
 * process-wide buffer; a connection keeps only the partial frame that ends a read.
 *
 * --recover adds two steps to a subscriber's life: parking (a close frame, then the
 * server's close) and reconnecting, with lhttpd's recover header naming the offset and
 * epoch it saw last, or nchan's Last-Event-ID with the message id.
 */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define RBUF_SIZE (256 * 1024)
#define MAX_HEAD 16384
#define MAX_FRAME ((uint64_t)64 << 20)
#define NEVENTS 512

uint64_t lhb_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t lhb_rand(lhb_loop_t *l)
{
    uint64_t x = l->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    l->rng = x;
    return x;
}

void lhb_error(lhb_loop_t *l, const char *fmt, ...)
{
    va_list ap;
    char *e = l->st->first_error;

    if (e[0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(e, sizeof(l->st->first_error), fmt, ap);
    va_end(ap);
    /* Keep the report on one line. */
    for (char *p = e; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = ' ';
}

uint64_t lhb_sum_delivered(const lhb_shared_t *sh)
{
    uint64_t s = 0;

    for (uint32_t i = 0; i < sh->nprocs; i++)
        s += atomic_load_explicit(&sh->ps[i].delivered, memory_order_relaxed);
    return s;
}

static uint64_t sum_of(const lhb_shared_t *sh, size_t field)
{
    uint64_t s = 0;

    for (uint32_t i = 0; i < sh->nprocs; i++)
        s += atomic_load((_Atomic uint64_t *)((char *)&sh->ps[i] + field));
    return s;
}

static void set_phase(lhb_loop_t *l, int phase)
{
    atomic_store(&l->sh->phase, phase);
}

static void conn_close(lhb_conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->tls_up = 0;
    free(c->cout);
    c->cout = NULL;
    c->coutlen = c->coutoff = c->coutcap = 0;
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    c->inlen = c->incap = c->outlen = c->outoff = c->outcap = 0;
    c->state = LHB_S_DEAD;
}

static void start_more(lhb_loop_t *l);
static void recovery_done(lhb_loop_t *l, lhb_conn_t *c, int ok);

/* A connection failed or the server closed it. Before it was ready that is a setup
 * failure; afterwards the server dropped a subscriber (its deliveries will be missing). */
static void conn_fail(lhb_loop_t *l, lhb_conn_t *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_fail(lhb_loop_t *l, lhb_conn_t *c, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    int was = c->state;

    if (c->state == LHB_S_DEAD)
        return;
    if (c->state == LHB_S_CLOSING) {
        /* --recover's parking: whatever ends the connection (the server's close frame,
         * its FIN, a reset) ends it as asked. */
        conn_close(c);
        atomic_fetch_add(&l->st->parked, 1);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    conn_close(c);
    if (c->role == LHB_SUB) {
        if (atomic_load(&l->sh->phase) == LHB_PH_RECOVER)
            recovery_done(l, c, 0);
        if (was < LHB_S_READY) {
            atomic_fetch_add(&l->st->failed, 1);
            l->connecting--;
            lhb_error(l, "subscriber %u: %s", c->idx, what);
        } else {
            l->st->closed++;
            lhb_error(l, "subscriber %u: %s", c->idx, what);
        }
        return;
    }
    l->st->closed++;
    lhb_error(l, "publisher %u: %s", c->idx, what);
    if (atomic_load(&l->sh->phase) < LHB_PH_DONE)
        set_phase(l, LHB_PH_ABORT);
}

int lhb_conn_append(lhb_conn_t *c, const void *data, size_t len)
{
    if (c->outlen + len > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 256;
        uint8_t *p;

        if (c->outoff > 0) {
            /* Reclaim what was written before growing. */
            memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
            c->outlen -= c->outoff;
            c->outoff = 0;
        }
        while (cap < c->outlen + len)
            cap *= 2;
        if (cap > c->outcap) {
            if (cap > UINT32_MAX)
                return -1;
            p = realloc(c->out, cap);
            if (p == NULL)
                return -1;
            c->out = p;
            c->outcap = (uint32_t)cap;
        }
    }
    memcpy(c->out + c->outlen, data, len);
    c->outlen += (uint32_t)len;
    return 0;
}

int lhb_conn_frame(lhb_loop_t *l, lhb_conn_t *c, int opcode, const void *data, size_t len)
{
    uint8_t hdr[14];
    size_t hl = 2;
    uint32_t key = (uint32_t)lhb_rand(l);
    uint8_t mask[4];
    size_t start;

    hdr[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        hdr[1] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        hdr[1] = 0x80 | 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        hl = 4;
    } else {
        hdr[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    memcpy(mask, &key, 4);
    memcpy(hdr + hl, mask, 4);
    hl += 4;
    if (lhb_conn_append(c, hdr, hl) < 0)
        return -1;
    start = c->outlen;
    if (lhb_conn_append(c, data, len) < 0)
        return -1;
    for (size_t i = 0; i < len; i++)
        c->out[start + i] ^= mask[i & 3];
    return 0;
}

static void want_out(lhb_loop_t *l, lhb_conn_t *c, int on)
{
    struct epoll_event ev;

    if (c->want_out == on)
        return;
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(l->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = (uint8_t)on;
}

/* TLS: moves the ciphertext the engine produced into c->cout. Returns 0, or -1. */
static int tls_drain(lhb_conn_t *c)
{
    BIO *w = SSL_get_wbio(c->ssl);
    size_t pend;

    while ((pend = BIO_ctrl_pending(w)) > 0) {
        int r;

        if (c->coutlen + pend > c->coutcap) {
            size_t cap = c->coutcap ? c->coutcap : 4096;
            uint8_t *q;

            while (cap < c->coutlen + pend)
                cap *= 2;
            if (cap > UINT32_MAX || (q = realloc(c->cout, cap)) == NULL)
                return -1;
            c->cout = q;
            c->coutcap = (uint32_t)cap;
        }
        r = BIO_read(w, c->cout + c->coutlen, (int)pend);
        if (r <= 0)
            return -1;
        c->coutlen += (uint32_t)r;
    }
    return 0;
}

void lhb_conn_flush(lhb_loop_t *l, lhb_conn_t *c)
{
    uint8_t **buf = &c->out;
    uint32_t *off = &c->outoff, *len = &c->outlen, *cap = &c->outcap;

    if (c->ssl != NULL) {
        /* Plaintext goes through TLS once the handshake is done; the memory BIO takes it
         * all, so only the ciphertext waits for the socket. */
        if (c->tls_up && c->outoff < c->outlen) {
            if (SSL_write(c->ssl, c->out + c->outoff, (int)(c->outlen - c->outoff)) <= 0) {
                conn_fail(l, c, "SSL_write failed");
                return;
            }
            c->outoff = c->outlen = 0;
        }
        if (tls_drain(c) < 0) {
            conn_fail(l, c, "out of memory");
            return;
        }
        buf = &c->cout;
        off = &c->coutoff;
        len = &c->coutlen;
        cap = &c->coutcap;
    }
    while (*off < *len) {
        ssize_t r = send(c->fd, *buf + *off, *len - *off, MSG_NOSIGNAL);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_fail(l, c, "send: %s", strerror(errno));
            return;
        }
        *off += (uint32_t)r;
    }
    if (*off < *len) {
        want_out(l, c, 1);
        return;
    }
    *off = *len = 0;
    want_out(l, c, 0);
    if (c->role == LHB_SUB) {
        free(*buf);
        *buf = NULL;
        *cap = 0;
    }
}

static int parse_ipv4(const char *host, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

size_t lhb_url_path(const lhb_url_t *u, const char *ch, size_t chlen, char *out, size_t cap)
{
    const char *p = u->path, *m = strstr(p, "{ch}");
    int n;

    if (m == NULL)
        n = snprintf(out, cap, "%s", p);
    else
        n = snprintf(out, cap, "%.*s%.*s%s", (int)(m - p), p, (int)chlen, ch, m + 4);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/*
 * Starts a non-blocking connect from source address 127.0.<src_net>.(1 + n % nsrc).
 * The third byte changes from run to run: a run that follows another against the same
 * server within a second would otherwise search the ephemeral ports past the previous
 * run's TIME_WAIT sockets (reusable only after a second), slowing its connects.
 */
static void conn_start(lhb_loop_t *l, lhb_conn_t *c, const lhb_url_t *u, uint32_t n)
{
    struct sockaddr_in dst, src;
    struct epoll_event ev;
    int one = 1, fd;
    uint32_t host = 1 + n % l->o->nsrc;

    if (parse_ipv4(u->host, &dst) < 0) {
        conn_fail(l, c, "host %s: only IPv4 addresses are supported", u->host);
        return;
    }
    dst.sin_port = htons(u->port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->state = LHB_S_CONNECTING;
        conn_fail(l, c, "socket: %s", strerror(errno));
        return;
    }
    c->fd = fd;
    c->state = LHB_S_CONNECTING;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if ((ntohl(dst.sin_addr.s_addr) >> 24) == 127) {
        /* The port is then chosen at connect, per destination: each source address
         * gives a full ephemeral range. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        memset(&src, 0, sizeof(src));
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000000u | (l->o->src_net << 8) | host);
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            conn_fail(l, c, "bind 127.0.%u.%u: %s", l->o->src_net, host, strerror(errno));
            return;
        }
    }
    if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS) {
        conn_fail(l, c, "connect: %s", strerror(errno));
        return;
    }
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = c;
    c->want_out = 1;
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        conn_fail(l, c, "epoll_ctl: %s", strerror(errno));
}

static void start_more(lhb_loop_t *l)
{
    while (l->next_connect < l->n && l->connecting < l->conc &&
           atomic_load(&l->sh->phase) == LHB_PH_SETUP) {
        lhb_conn_t *c = &l->subs[l->next_connect++];

        l->connecting++;
        conn_start(l, c, &l->o->sub_url, c->idx);
    }
}

static void sub_ready(lhb_loop_t *l, lhb_conn_t *c)
{
    c->state = LHB_S_READY;
    l->connecting--;
    if (atomic_load(&l->sh->phase) == LHB_PH_RECOVER)
        return; /* a reconnection: the setup's numbers are those of the first connection */
    atomic_fetch_add(&l->st->ready, 1);
    atomic_store(&l->st->setup_done_ns, lhb_now_ns());
}

/* --recover: parks every subscriber of this process: a close frame (1000), then the
 * server's answer ends the connection (conn_fail counts it parked). Once per run. */
static void park_all(lhb_loop_t *l)
{
    static const uint8_t normal[2] = {0x03, 0xe8};

    l->parking = 1;
    for (uint32_t i = 0; i < l->n; i++) {
        lhb_conn_t *c = &l->subs[i];

        if (c->state == LHB_S_DEAD) {
            atomic_fetch_add(&l->st->parked, 1); /* already gone, and counted as closed */
            continue;
        }
        c->state = LHB_S_CLOSING;
        if (lhb_conn_frame(l, c, 8, normal, sizeof(normal)) < 0) {
            conn_fail(l, c, "out of memory");
            continue;
        }
        lhb_conn_flush(l, c);
    }
}

/* --recover: reconnects this process's subscribers, conc at a time. */
static void reconnect_more(lhb_loop_t *l)
{
    while (l->reconnect < l->n && l->connecting < l->conc) {
        lhb_conn_t *c = &l->subs[l->reconnect++];

        l->connecting++;
        conn_start(l, c, &l->o->sub_url, c->idx);
    }
}

/* --recover: subscriber c's recovery ended, with every message it missed (ok) or not. */
static void recovery_done(lhb_loop_t *l, lhb_conn_t *c, int ok)
{
    uint64_t t0 = atomic_load(&l->sh->recover_t0);

    if (c->done)
        return;
    c->done = 1;
    if (ok)
        lhb_hist_add(&l->st->hist, l->now > t0 ? l->now - t0 : 0);
    else
        l->st->not_recovered++;
    if (l->now > atomic_load(&l->st->recover_done_ns))
        atomic_store(&l->st->recover_done_ns, l->now);
    atomic_fetch_add(&l->st->recovered, 1);
}

static void conn_transport_up(lhb_loop_t *l, lhb_conn_t *c);

/* --tls-resume: the newest session this process was given (a TLS 1.3 ticket arrives
 * after the handshake, so it is taken when it comes; OpenSSL's client uses a TLS 1.3
 * ticket once, so each resumption takes the ticket the last one brought). */
static SSL_SESSION *resume_session;

int lhb_tls_new_session(struct ssl_st *ssl, struct ssl_session_st *sess)
{
    SSL_SESSION_free(resume_session);
    resume_session = sess;
    return 1; /* kept */
}

void lhb_tls_cleanup(const lhb_opts_t *o)
{
    SSL_SESSION_free(resume_session);
    resume_session = NULL;
    SSL_CTX_free(o->ssl_ctx);
}

/* The TLS handshake, moved on by each read. Returns 0, or -1 when c failed. */
static int tls_handshake(lhb_loop_t *l, lhb_conn_t *c)
{
    int r = SSL_do_handshake(c->ssl), e;

    if (r == 1) {
        c->tls_up = 1;
        if (SSL_session_reused(c->ssl))
            l->tls_resumed++;
        lhb_conn_flush(l, c);
        if (c->state != LHB_S_DEAD)
            conn_transport_up(l, c);
        return c->state == LHB_S_DEAD ? -1 : 0;
    }
    e = SSL_get_error(c->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        char why[256];

        ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        ERR_clear_error();
        conn_fail(l, c, "TLS handshake: %s", why);
        return -1;
    }
    lhb_conn_flush(l, c);
    return c->state == LHB_S_DEAD ? -1 : 0;
}

/* TCP is up: with TLS, start its handshake; else the transport is ready. */
static void conn_connected(lhb_loop_t *l, lhb_conn_t *c)
{
    const lhb_url_t *u = c->role == LHB_SUB ? &l->o->sub_url : &l->o->pub_url;
    BIO *rb, *wb;

    if (!u->tls) {
        conn_transport_up(l, c);
        return;
    }
    c->ssl = SSL_new(l->o->ssl_ctx);
    rb = BIO_new(BIO_s_mem());
    wb = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || rb == NULL || wb == NULL) {
        BIO_free(rb);
        BIO_free(wb);
        conn_fail(l, c, "SSL_new: out of memory");
        return;
    }
    SSL_set_bio(c->ssl, rb, wb);
    SSL_set_connect_state(c->ssl);
    if (l->o->tls_resume && resume_session != NULL)
        SSL_set_session(c->ssl, resume_session);
    c->state = LHB_S_HANDSHAKE;
    want_out(l, c, 0);
    tls_handshake(l, c);
}

/* The transport is up: send the upgrade request (publishers over HTTP are ready at once). */
static void conn_transport_up(lhb_loop_t *l, lhb_conn_t *c)
{
    char req[1200], path[600], ch[64];
    const lhb_url_t *u = c->role == LHB_SUB ? &l->o->sub_url : &l->o->pub_url;
    int nchan_sub = c->role == LHB_SUB && l->o->target == LHB_TARGET_NCHAN;
    size_t chl = lhb_channel_name(ch, sizeof(ch), l->o->prefix, c->chan);
    int n;

    if (c->role == LHB_PUB_HTTP) {
        c->state = LHB_S_READY;
        l->pubs_ready++;
        want_out(l, c, 0);
        return;
    }
    if (lhb_url_path(u, ch, chl, path, sizeof(path)) == 0) {
        conn_fail(l, c, "URL path too long");
        return;
    }
    /* Fits: path < 600, host < 64, the id < LHB_MAX_ID. The Authorization line was
     * formatted once, at start. With --server-headers nchan's subscribers ask for the
     * message ids (ws+meta.nchan) and, reconnecting in a --recover run, resume after the
     * last one they saw. */
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s%s%.*s%s",
                 path, u->host, u->port, lhb_ws_key,
                 nchan_sub && l->o->server_headers ? "Sec-WebSocket-Protocol: ws+meta.nchan\r\n" : "",
                 nchan_sub && c->has_last ? "Last-Event-ID: " : "",
                 nchan_sub && c->has_last ? (int)c->last_id_len : 0, c->last_id,
                 nchan_sub && c->has_last ? "\r\n" : "");
    c->state = LHB_S_HANDSHAKE;
    if (lhb_conn_append(c, req, (size_t)n) < 0 ||
        lhb_conn_append(c, l->o->ws_auth, l->o->ws_auth_len) < 0 ||
        lhb_conn_append(c, "\r\n", 2) < 0) {
        conn_fail(l, c, "out of memory");
        return;
    }
    lhb_conn_flush(l, c);
}

/* The longest subscribe header line a publisher sends: well under lhttpd's default
 * limits.max_header_line (4096). */
#define SUB_LINE_MAX 2048

/*
 * --pub-subscribe: a WebSocket publisher may publish to any channel, so it subscribes to
 * every channel of the run, in as many subscribe messages as keep each header line under
 * SUB_LINE_MAX, then pings; the pong comes after every subscribe was handled. Returns 0,
 * or -1 when the connection failed.
 */
static int pub_subscribe(lhb_loop_t *l, lhb_conn_t *c)
{
    static const char head[] = "LHTTP/1.0 sub\r\nsubscribe:";
    char msg[sizeof(head) + SUB_LINE_MAX + 8], ch[64];
    size_t n = 0;

    c->state = LHB_S_SUBSCRIBING;
    for (uint32_t i = 0; i < l->o->channels; i++) {
        size_t chl = lhb_channel_name(ch, sizeof(ch), l->o->prefix, i);

        if (n > 0 && n + 1 + chl > sizeof(head) - 1 + SUB_LINE_MAX) {
            memcpy(msg + n, "\r\n\r\n", 4);
            if (lhb_conn_frame(l, c, 1, msg, n + 4) < 0)
                goto oom;
            n = 0;
        }
        if (n == 0) {
            memcpy(msg, head, sizeof(head) - 1);
            n = sizeof(head) - 1;
        } else {
            msg[n++] = ' ';
        }
        memcpy(msg + n, ch, chl);
        n += chl;
    }
    memcpy(msg + n, "\r\n\r\n", 4);
    if (lhb_conn_frame(l, c, 1, msg, n + 4) < 0 ||
        lhb_conn_frame(l, c, 1, "LHTTP/1.0 ping", 14) < 0)
        goto oom;
    lhb_conn_flush(l, c);
    return c->state == LHB_S_DEAD ? -1 : 0;
oom:
    conn_fail(l, c, "out of memory");
    return -1;
}

/* Checks the 101 answer; then subscribes (lhttpd, and publishers with --pub-subscribe)
 * or is ready (nchan, publishers). */
static int handshake_done(lhb_loop_t *l, lhb_conn_t *c, const uint8_t *head, size_t hl)
{
    static const char ok[] = "HTTP/1.1 101 ";

    if (hl < sizeof(ok) - 1 || memcmp(head, ok, sizeof(ok) - 1) != 0) {
        const uint8_t *e = memchr(head, '\r', hl);

        conn_fail(l, c, "handshake refused: %.*s", (int)(e ? (size_t)(e - head) : hl),
                  (const char *)head);
        return -1;
    }
    if (memmem(head, hl, lhb_ws_accept, strlen(lhb_ws_accept)) == NULL) {
        conn_fail(l, c, "handshake: wrong or missing Sec-WebSocket-Accept");
        return -1;
    }
    if (c->role != LHB_SUB) {
        if (l->o->pub_subscribe)
            return pub_subscribe(l, c);
        c->state = LHB_S_READY;
        l->pubs_ready++;
        return 0;
    }
    if (l->o->target == LHB_TARGET_NCHAN) {
        sub_ready(l, c);
        return 0;
    }
    /* The pong answers after the subscribe was handled: messages of one connection are
     * processed in order. A --recover reconnection names the offset and epoch it saw
     * last (PROTOCOL.md section 10). */
    {
        char msg[256], ch[64];
        size_t chl = lhb_channel_name(ch, sizeof(ch), l->o->prefix, c->chan);
        int n;

        if (atomic_load(&l->sh->phase) == LHB_PH_RECOVER) {
            if (!c->has_last || !l->has_epoch) {
                conn_fail(l, c, "no offset to recover from");
                return -1;
            }
            n = snprintf(msg, sizeof(msg),
                         "LHTTP/1.0 sub\r\nsubscribe:%.*s\r\nrecover:%.*s,%llu,%.*s\r\n\r\n",
                         (int)chl, ch, (int)chl, ch, (unsigned long long)c->last_off,
                         LHB_EPOCH_LEN, (const char *)l->epoch);
        } else {
            n = snprintf(msg, sizeof(msg), "LHTTP/1.0 sub\r\nsubscribe:%.*s\r\n\r\n",
                         (int)chl, ch);
        }

        c->state = LHB_S_SUBSCRIBING;
        if (lhb_conn_frame(l, c, 1, msg, (size_t)n) < 0 ||
            lhb_conn_frame(l, c, 1, "LHTTP/1.0 ping", 14) < 0) {
            conn_fail(l, c, "out of memory");
            return -1;
        }
        lhb_conn_flush(l, c);
    }
    return c->state == LHB_S_DEAD ? -1 : 0;
}

/* Compares a measured delivery with the message that was published, byte for byte,
 * apart from the server's metadata mt (none without --server-headers). */
static int delivery_intact(lhb_loop_t *l, const lhb_conn_t *c, const uint8_t *m, size_t len,
                           const lhb_meta_t *mt, uint32_t seq, uint64_t t)
{
    uint8_t want[4096];
    char ch[64];
    size_t chl = lhb_channel_name(ch, sizeof(ch), l->o->prefix, c->chan);
    size_t plain = len - mt->len;

    if (plain > sizeof(want))
        return 1; /* too large to rebuild here: the trailer was checked */
    return lhb_msg_build(want, sizeof(want), l->o->target, ch, chl, plain, LHB_KIND_MEASURED,
                         seq, t) == plain &&
           memcmp(want, m, mt->at) == 0 &&
           memcmp(want + mt->at, m + mt->at + mt->len, plain - mt->at) == 0;
}

/* lhttpd's epoch: the first seen is the run's; any other breaks the chain. */
static void check_epoch(lhb_loop_t *l, lhb_conn_t *c, const uint8_t *e)
{
    if (!l->has_epoch) {
        memcpy(l->epoch, e, LHB_EPOCH_LEN);
        l->has_epoch = 1;
    } else if (memcmp(l->epoch, e, LHB_EPOCH_LEN) != 0) {
        l->st->chain++;
        lhb_error(l, "subscriber %u: epoch %.*s, but %.*s before", c->idx, LHB_EPOCH_LEN,
                  (const char *)e, LHB_EPOCH_LEN, (const char *)l->epoch);
    }
}

/*
 * --server-headers: finds the server's metadata of a delivery (a message of the run,
 * either kind) and follows the subscriber's chain: with lhttpd the channel must be the
 * subscriber's and each prev-offset the offset it saw last; with nchan the message id is
 * kept for a --recover resume.
 * Without --server-headers mt is empty. Returns 0, or -1 when the delivery lacks it
 * (counted corrupt).
 */
static int sub_meta(lhb_loop_t *l, lhb_conn_t *c, const uint8_t *m, size_t len, lhb_meta_t *mt)
{
    if (!l->o->server_headers) {
        memset(mt, 0, sizeof(*mt));
        return 0;
    }
    if (lhb_msg_meta(l->o->target, m, len, mt) < 0) {
        l->st->corrupt++;
        lhb_error(l, "subscriber %u: a delivery without the server's headers: %.*s", c->idx,
                  (int)(len > 120 ? 120 : len), (const char *)m);
        return -1;
    }
    if (l->o->target == LHB_TARGET_NCHAN) {
        memcpy(c->last_id, mt->id, mt->idlen);
        c->last_id_len = (uint8_t)mt->idlen;
        c->has_last = 1;
        return 0;
    }
    {
        char ch[64];
        size_t chl = lhb_channel_name(ch, sizeof(ch), l->o->prefix, c->chan);

        if (mt->chlen != chl || memcmp(mt->channel, ch, chl) != 0) {
            l->st->corrupt++;
            lhb_error(l, "subscriber %u: a delivery on %.*s names the channel %.*s", c->idx,
                      (int)chl, ch, (int)mt->chlen, (const char *)mt->channel);
            return -1;
        }
    }
    check_epoch(l, c, mt->epoch);
    if (c->has_last && mt->prev != c->last_off) {
        l->st->chain++;
        lhb_error(l, "subscriber %u: offset %llu comes after %llu, but the last it saw was %llu",
                  c->idx, (unsigned long long)mt->offset, (unsigned long long)mt->prev,
                  (unsigned long long)c->last_off);
    }
    c->last_off = mt->offset;
    c->has_last = 1;
    return 0;
}

/*
 * lhttpd's reply to a subscribe of a history channel (--server-headers). At setup it
 * starts the subscriber's chain at the channel's latest offset; in a --recover
 * reconnection it ends the recovery: recovered:true after every message missed, or
 * anything else (recovered:false, too few messages before it) a failed one.
 */
static void subscribed_reply(lhb_loop_t *l, lhb_conn_t *c, const uint8_t *m, size_t len)
{
    const uint8_t *ch = NULL, *ep, *off, *rec;
    size_t chl = 0, epl = 0, offl = 0, recl = 0, nl;
    char name[64];
    uint64_t offset;

    nl = lhb_channel_name(name, sizeof(name), l->o->prefix, c->chan);
    ch = lhb_lhttp_header(m, len, "channel", &chl);
    ep = lhb_lhttp_header(m, len, "epoch", &epl);
    off = lhb_lhttp_header(m, len, "offset", &offl);
    if (ch == NULL || chl != nl || memcmp(ch, name, nl) != 0 || ep == NULL ||
        epl != LHB_EPOCH_LEN || off == NULL || lhb_parse_u64(off, offl, &offset) < 0) {
        l->st->other++;
        lhb_error(l, "subscriber %u: a subscribed reply without its channel, epoch or offset: "
                  "%.*s", c->idx, (int)(len > 160 ? 160 : len), (const char *)m);
        return;
    }
    check_epoch(l, c, ep);
    if (atomic_load(&l->sh->phase) != LHB_PH_RECOVER) {
        if (!c->has_last) {
            c->last_off = offset;
            c->has_last = 1;
        }
        return;
    }
    rec = lhb_lhttp_header(m, len, "recovered", &recl);
    if (rec == NULL || recl != 4 || memcmp(rec, "true", 4) != 0) {
        lhb_error(l, "subscriber %u: recovery refused: %.*s", c->idx,
                  (int)(len > 160 ? 160 : len), (const char *)m);
        recovery_done(l, c, 0);
        return;
    }
    if (c->got != l->chan_counts[c->chan]) {
        lhb_error(l, "subscriber %u: recovered:true after %u of the %u messages it missed",
                  c->idx, c->got, l->chan_counts[c->chan]);
        recovery_done(l, c, 0);
        return;
    }
    recovery_done(l, c, 1);
}

static void sub_message(lhb_loop_t *l, lhb_conn_t *c, const uint8_t *m, size_t len)
{
    uint32_t seq;
    uint64_t t;
    int kind = lhb_msg_trailer(m, len, &seq, &t);
    lhb_meta_t mt;

    if (kind != 0 && sub_meta(l, c, m, len, &mt) < 0)
        return;
    if (kind == LHB_KIND_MEASURED) {
        c->got++;
        l->delivered++;
        /* A --recover run measures the recoveries instead (recovery_done). */
        if (!l->o->recover)
            lhb_hist_add(&l->st->hist, l->now > t ? l->now - t : 0);
        if (l->check_order && seq != c->got)
            l->st->disorder++;
        if (len - mt.len != l->o->size ||
            ((c->got & 15) == 1 && !delivery_intact(l, c, m, len, &mt, seq, t)))
            l->st->corrupt++;
        /* nchan sends nothing after the messages it resumes: the last one ends it. */
        if (l->o->recover && l->o->target == LHB_TARGET_NCHAN &&
            c->got == l->chan_counts[c->chan])
            recovery_done(l, c, 1);
        return;
    }
    if (kind == LHB_KIND_PROBE) {
        if (!c->probed) {
            c->probed = 1;
            atomic_fetch_add(&l->st->probed, 1);
        }
        return;
    }
    if (c->state == LHB_S_SUBSCRIBING && len >= 14 && memcmp(m, "LHTTP/1.0 pong", 14) == 0) {
        sub_ready(l, c);
        return;
    }
    if (l->o->server_headers && l->o->target == LHB_TARGET_LHTTP && len >= 22 &&
        memcmp(m, "LHTTP/1.0 subscribed\r\n", 22) == 0) {
        subscribed_reply(l, c, m, len);
        return;
    }
    l->st->other++;
    if (c->state == LHB_S_SUBSCRIBING) {
        conn_fail(l, c, "subscribe answered with: %.*s", (int)(len > 160 ? 160 : len),
                  (const char *)m);
        return;
    }
    lhb_error(l, "subscriber %u received an unexpected message: %.*s", c->idx,
              (int)(len > 160 ? 160 : len), (const char *)m);
}

/*
 * A message to a publisher. lhttpd answers a publish only with an error; nchan
 * acknowledges each one. With --pub-subscribe the publisher is also a subscriber: the
 * pong ends its setup, and the copies of the run's messages (a trailer of either kind)
 * are counted apart and dropped, never as deliveries. Anything else is an error reply:
 * counted in `other`, so that the run is not complete and the PROBLEM line quotes it.
 */
static void pub_message(lhb_loop_t *l, lhb_conn_t *c, const uint8_t *m, size_t len)
{
    uint32_t seq;
    uint64_t t;

    if (l->o->pub_subscribe) {
        if (lhb_msg_trailer(m, len, &seq, &t) != 0) {
            l->pub_copies++;
            return;
        }
        if (c->state == LHB_S_SUBSCRIBING) {
            if (len >= 14 && memcmp(m, "LHTTP/1.0 pong", 14) == 0) {
                c->state = LHB_S_READY;
                l->pubs_ready++;
                return;
            }
            l->st->other++;
            conn_fail(l, c, "subscribe answered with: %.*s", (int)(len > 160 ? 160 : len),
                      (const char *)m);
            return;
        }
    }
    l->pub_replies++;
    if (l->o->target == LHB_TARGET_LHTTP) {
        l->st->other++;
        lhb_error(l, "publisher %u received: %.*s", c->idx, (int)(len > 160 ? 160 : len),
                  (const char *)m);
    }
}

/* Handles the complete frames at the start of p. Returns the bytes consumed. */
static size_t frames(lhb_loop_t *l, lhb_conn_t *c, const uint8_t *p, size_t len)
{
    size_t off = 0;

    while (len - off >= 2 && c->state != LHB_S_DEAD) {
        const uint8_t *f = p + off;
        uint64_t plen = f[1] & 127;
        size_t hl = 2;
        int op = f[0] & 15;

        if (f[1] & 0x80) {
            conn_fail(l, c, "the server sent a masked frame");
            return len;
        }
        if (plen == 126) {
            if (len - off < 4)
                break;
            plen = ((uint64_t)f[2] << 8) | f[3];
            hl = 4;
        } else if (plen == 127) {
            if (len - off < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = (plen << 8) | f[2 + i];
            hl = 10;
        }
        if (plen > MAX_FRAME) {
            conn_fail(l, c, "frame of %llu bytes", (unsigned long long)plen);
            return len;
        }
        if (len - off < hl + plen)
            break;
        switch (op) {
        case 0: /* continuation: neither server fragments; the trailer check flags it */
        case 1:
        case 2:
            if (c->role == LHB_SUB)
                sub_message(l, c, f + hl, (size_t)plen);
            else
                pub_message(l, c, f + hl, (size_t)plen);
            break;
        case 9:
            if (lhb_conn_frame(l, c, 10, f + hl, (size_t)plen) == 0)
                lhb_conn_flush(l, c);
            break;
        case 10:
            break;
        case 8: {
            unsigned code = plen >= 2 ? ((unsigned)f[hl] << 8) | f[hl + 1] : 1005;

            conn_fail(l, c, "closed by the server with %u %.*s", code,
                      (int)(plen > 2 ? plen - 2 : 0), (const char *)f + hl + 2);
            return len;
        }
        default:
            conn_fail(l, c, "frame with opcode %d", op);
            return len;
        }
        off += hl + (size_t)plen;
    }
    return off;
}

/* The value of header name (lower case) in an HTTP head, or NULL. */
static const char *find_header(const uint8_t *head, size_t hl, const char *name, size_t *vl)
{
    size_t nl = strlen(name);
    const uint8_t *p = memchr(head, '\n', hl), *end = head + hl;

    while (p != NULL && p + 1 < end) {
        const uint8_t *line = p + 1, *e = memchr(line, '\n', (size_t)(end - line));

        if (e == NULL)
            break;
        if ((size_t)(e - line) > nl && line[nl] == ':' &&
            strncasecmp((const char *)line, name, nl) == 0) {
            const uint8_t *v = line + nl + 1, *ve = e;

            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *vl = (size_t)(ve - v);
            return (const char *)v;
        }
        p = e;
    }
    return NULL;
}

/* Length of a complete chunked body at p, or 0 when more bytes are needed. */
static size_t chunked_len(const uint8_t *p, size_t len)
{
    size_t off = 0;

    for (;;) {
        const uint8_t *e = memmem(p + off, len - off, "\r\n", 2);
        size_t sz;

        if (e == NULL)
            return 0;
        sz = strtoul((const char *)p + off, NULL, 16);
        off = (size_t)(e - p) + 2;
        if (sz == 0) {
            /* No trailers are expected: the final CRLF. */
            return len - off >= 2 ? off + 2 : 0;
        }
        if (len - off < sz + 2)
            return 0;
        off += sz + 2;
    }
}

static size_t http_responses(lhb_loop_t *l, lhb_conn_t *c, const uint8_t *p, size_t len)
{
    size_t off = 0;

    while (off < len && c->state != LHB_S_DEAD) {
        const uint8_t *h = p + off, *e = memmem(h, len - off, "\r\n\r\n", 4);
        size_t hl, bl = 0, vl;
        const char *v;
        int status;

        if (e == NULL) {
            if (len - off > MAX_HEAD)
                conn_fail(l, c, "HTTP answer head too long");
            break;
        }
        hl = (size_t)(e + 4 - h);
        if (hl < 12 || memcmp(h, "HTTP/1.", 7) != 0) {
            conn_fail(l, c, "not an HTTP answer");
            break;
        }
        status = atoi((const char *)h + 9);
        if ((v = find_header(h, hl, "transfer-encoding", &vl)) != NULL && vl == 7 &&
            strncasecmp(v, "chunked", 7) == 0) {
            bl = chunked_len(h + hl, len - off - hl);
            if (bl == 0)
                break;
        } else if ((v = find_header(h, hl, "content-length", &vl)) != NULL) {
            bl = strtoul(v, NULL, 10);
            if (len - off - hl < bl)
                break;
        }
        if (status / 100 == 2) {
            l->http_ok++;
        } else {
            l->st->other++;
            lhb_error(l, "publish answered %.*s", (int)(hl + bl > 200 ? 200 : hl + bl),
                      (const char *)h);
        }
        if (c->pending > 0)
            c->pending--;
        off += hl + bl;
    }
    return off;
}

static size_t consume(lhb_loop_t *l, lhb_conn_t *c, const uint8_t *p, size_t len)
{
    size_t off = 0;

    if (c->role == LHB_PUB_HTTP)
        return http_responses(l, c, p, len);
    if (c->state == LHB_S_HANDSHAKE) {
        const uint8_t *e = memmem(p, len, "\r\n\r\n", 4);

        if (e == NULL) {
            if (len > MAX_HEAD)
                conn_fail(l, c, "handshake answer head too long");
            return 0;
        }
        off = (size_t)(e + 4 - p);
        if (handshake_done(l, c, p, off) < 0)
            return len;
    }
    return off + frames(l, c, p + off, len - off);
}

/*
 * TLS: reads the socket once into the engine, moves the handshake on, and decrypts
 * everything it can to l->rbuf + have (grown as needed, so nothing decrypted stays
 * behind in the engine). Returns the plaintext bytes, -2 when there are none yet, 0 at
 * the end, -1 on an error (errno set).
 */
static ssize_t tls_read(lhb_loop_t *l, lhb_conn_t *c, size_t have)
{
    uint8_t raw[65536];
    ssize_t n = read(c->fd, raw, sizeof(raw));
    size_t got = 0;

    if (n <= 0)
        return n;
    l->st->bytes_in += (uint64_t)n;
    if (BIO_write(SSL_get_rbio(c->ssl), raw, (int)n) != (int)n) {
        errno = ENOMEM;
        return -1;
    }
    if (!c->tls_up && (tls_handshake(l, c) < 0 || !c->tls_up))
        return -2;
    for (;;) {
        int r, e;

        if (l->rcap - have - got < 16384) {
            uint8_t *q = realloc(l->rbuf, l->rcap * 2);

            if (q == NULL) {
                errno = ENOMEM;
                return -1;
            }
            l->rbuf = q;
            l->rcap *= 2;
        }
        r = SSL_read(c->ssl, l->rbuf + have + got, (int)(l->rcap - have - got));
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN)
            return got > 0 ? (ssize_t)got : 0;
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
    if (c->ssl && SSL_get_wbio(c->ssl) && BIO_ctrl_pending(SSL_get_wbio(c->ssl)) > 0)
        lhb_conn_flush(l, c); /* key updates, alerts */
    if (got == 0)
        return -2;
    l->st->bytes_in -= (uint64_t)got; /* counted once below, as plaintext */
    return (ssize_t)got;
}

static void conn_read(lhb_loop_t *l, lhb_conn_t *c)
{
    size_t have = c->inlen, total, used, keep;
    ssize_t n;

    if (have + 65536 > l->rcap) {
        /* A large message is arriving in pieces: room for the carry and a full read. */
        uint8_t *q = realloc(l->rbuf, have + RBUF_SIZE);

        if (q == NULL) {
            conn_fail(l, c, "out of memory");
            return;
        }
        l->rbuf = q;
        l->rcap = have + RBUF_SIZE;
    }
    if (have > 0)
        memcpy(l->rbuf, c->in, have);
    n = c->ssl ? tls_read(l, c, have) : read(c->fd, l->rbuf + have, l->rcap - have);
    if (n == -2 || c->state == LHB_S_DEAD)
        return; /* TLS: nothing decrypted yet */
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_fail(l, c, "read: %s", strerror(errno));
        return;
    }
    if (n == 0) {
        conn_fail(l, c, "the server closed the connection");
        return;
    }
    l->st->bytes_in += (uint64_t)n;
    l->now = lhb_now_ns();
    total = have + (size_t)n;
    used = consume(l, c, l->rbuf, total);
    if (c->state == LHB_S_DEAD)
        return;
    keep = total - used;
    if (keep > c->incap) {
        size_t cap = keep < 256 ? 256 : keep * 2;
        uint8_t *q = realloc(c->in, cap);

        if (q == NULL) {
            conn_fail(l, c, "out of memory");
            return;
        }
        c->in = q;
        c->incap = (uint32_t)cap;
    }
    if (keep > 0)
        memcpy(c->in, l->rbuf + used, keep);
    c->inlen = (uint32_t)keep;
}

static void on_event(lhb_loop_t *l, lhb_conn_t *c, uint32_t events)
{
    if (c->state == LHB_S_DEAD)
        return;
    if (c->state == LHB_S_CONNECTING) {
        int err = 0;
        socklen_t sl = sizeof(err);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
            err = errno;
        if (err != 0) {
            conn_fail(l, c, "connect: %s", strerror(err));
            return;
        }
        if (events & (EPOLLOUT | EPOLLIN))
            conn_connected(l, c);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        conn_read(l, c);
    if (c->state != LHB_S_DEAD && (events & EPOLLOUT))
        lhb_conn_flush(l, c);
}

/* Process 0 between the setup and the publishing: publishers, then --hold-exec. */
static void coordinate_setup(lhb_loop_t *l)
{
    const lhb_opts_t *o = l->o;
    uint64_t ready = sum_of(l->sh, offsetof(lhb_pstats_t, ready));
    uint64_t failed = sum_of(l->sh, offsetof(lhb_pstats_t, failed));
    int need_pubs = o->have_pub && !o->no_publish;

    if (l->now - l->t_start > (uint64_t)(o->timeout_s * 1e9)) {
        lhb_error(l, "setup: %llu of %u subscribers ready after %.0f s",
                  (unsigned long long)ready, o->subs, o->timeout_s);
        set_phase(l, LHB_PH_ABORT);
        return;
    }
    if (ready + failed < o->subs)
        return;
    if (failed > 0) {
        set_phase(l, LHB_PH_ABORT);
        return;
    }
    if (need_pubs && l->pubs[0].state == LHB_S_IDLE) {
        for (uint32_t i = 0; i < o->pub_conns; i++)
            conn_start(l, &l->pubs[i], &o->pub_url, o->subs + i);
        return;
    }
    if (need_pubs && l->pubs_ready < o->pub_conns)
        return;
    if (o->hold_exec) {
        int r;

        set_phase(l, LHB_PH_HOLD);
        fflush(stdout);
        r = system(o->hold_exec);
        if (r != 0 && !o->quiet)
            fprintf(stderr, "lhttp-bench: --hold-exec exited with status %d\n", r);
    }
    set_phase(l, o->no_publish || !need_pubs ? LHB_PH_DONE : LHB_PH_WARMUP);
}

/* Closes every connection and frees the loop's memory. */
static void loop_free(lhb_loop_t *l)
{
    for (uint32_t i = 0; l->subs != NULL && i < l->n; i++)
        if (l->subs[i].state != LHB_S_IDLE)
            conn_close(&l->subs[i]);
    for (uint32_t i = 0; l->pubs != NULL && i < l->o->pub_conns; i++)
        if (l->pubs[i].state != LHB_S_IDLE)
            conn_close(&l->pubs[i]);
    free(l->subs);
    free(l->pubs);
    free(l->rbuf);
    lhb_pub_free(l);
    if (l->ep >= 0)
        close(l->ep);
}

int lhb_loop_run(const lhb_opts_t *o, lhb_shared_t *sh, uint32_t proc, uint32_t first,
                 uint32_t n, uint32_t *chan_counts, uint64_t t_start, lhb_pubres_t *res)
{
    lhb_loop_t L, *l = &L;
    struct epoll_event evs[NEVENTS];
    uint64_t published = 0;

    memset(l, 0, sizeof(*l));
    l->o = o;
    l->sh = sh;
    l->st = &sh->ps[proc];
    l->proc = proc;
    l->first = first;
    l->n = n;
    l->chan_counts = chan_counts;
    l->t_start = t_start;
    l->rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)getpid() << 20) ^ lhb_now_ns();
    l->check_order = o->pub_conns == 1;
    l->conc = o->connect_conc / sh->nprocs;
    if (l->conc == 0)
        l->conc = 1;
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->rcap = RBUF_SIZE;
    l->rbuf = malloc(l->rcap);
    l->subs = calloc(n ? n : 1, sizeof(*l->subs));
    if (l->ep < 0 || l->rbuf == NULL || l->subs == NULL) {
        lhb_error(l, "process %u: out of memory", proc);
        set_phase(l, LHB_PH_ABORT);
        loop_free(l);
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        l->subs[i].fd = -1;
        l->subs[i].role = LHB_SUB;
        l->subs[i].idx = first + i;
        l->subs[i].chan = (first + i) % o->channels;
    }
    if (proc == 0 && o->have_pub && !o->no_publish) {
        l->pubs = calloc(o->pub_conns, sizeof(*l->pubs));
        if (l->pubs == NULL || lhb_pub_init(l) < 0) {
            lhb_error(l, "out of memory");
            set_phase(l, LHB_PH_ABORT);
            loop_free(l);
            return -1;
        }
        for (uint32_t i = 0; i < o->pub_conns; i++) {
            l->pubs[i].fd = -1;
            l->pubs[i].role = o->pub_url.http ? LHB_PUB_HTTP : LHB_PUB_WS;
            l->pubs[i].idx = i;
            l->pubs[i].chan = 0;
        }
    }
    for (;;) {
        int phase = atomic_load(&sh->phase), nev;
        uint64_t wait_ns = 10 * 1000000ull;
        struct timespec ts;

        if (phase >= LHB_PH_DONE)
            break;
        l->now = lhb_now_ns();
        if (phase == LHB_PH_SETUP) {
            start_more(l);
            if (proc == 0)
                coordinate_setup(l);
            if (proc == 0)
                wait_ns = 2 * 1000000ull;
        } else {
            if (phase == LHB_PH_PARK && !l->parking)
                park_all(l);
            if (phase == LHB_PH_RECOVER)
                reconnect_more(l);
            if (proc == 0 && phase >= LHB_PH_WARMUP)
                wait_ns = lhb_pub_step(l);
        }
        if (atomic_load(&sh->phase) >= LHB_PH_DONE)
            break;
        if (o->spin && phase >= LHB_PH_WARMUP)
            wait_ns = 0; /* poll without sleeping: no wake-up for the server to pay */
        ts.tv_sec = (time_t)(wait_ns / 1000000000u);
        ts.tv_nsec = (long)(wait_ns % 1000000000u);
        nev = epoll_pwait2(l->ep, evs, NEVENTS, &ts, NULL);
        if (nev < 0 && errno != EINTR) {
            lhb_error(l, "epoll_pwait2: %s", strerror(errno));
            set_phase(l, LHB_PH_ABORT);
            break;
        }
        l->now = lhb_now_ns();
        for (int i = 0; i < nev; i++)
            on_event(l, evs[i].data.ptr, evs[i].events);
        if (l->delivered != published) {
            published = l->delivered;
            atomic_store_explicit(&l->st->delivered, published, memory_order_relaxed);
            atomic_store_explicit(&l->st->last_ns, l->now, memory_order_relaxed);
        }
    }
    /* Every subscriber against what was published on its channel. */
    for (uint32_t i = 0; i < n; i++) {
        lhb_conn_t *c = &l->subs[i];
        uint32_t want = chan_counts[c->chan];

        if (c->got < want)
            l->st->short_subs++;
        else if (c->got > want)
            l->st->long_subs++;
    }
    atomic_store(&l->st->delivered, l->delivered);
    if (res != NULL && l->pub != NULL)
        lhb_pub_report(l, res);
    atomic_store(&l->st->finished, 1);
    loop_free(l);
    return 0;
}
