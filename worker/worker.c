/*
 * The worker's event loop: accepting, the per-pass flush of queued output, the timer
 * sweep (handshake, keep-alive, ping, idle and close timeouts) and graceful stop.
 */
#include "worker.h"

#include <event2/thread.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lh_log.h"
#include "lh_ws.h"

#define RBUF_SIZE (256 * 1024)

#define ACCEPT_BATCH 16
#define BALANCE_PAUSE_US 2000 /* a worker ahead of its peers lets them accept first */

static void pause_listeners(lh_worker_t *w, int pause)
{
    if (w->listeners_paused == pause)
        return;
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (pause)
            event_del(&w->listeners[i].ev);
        else
            event_add(&w->listeners[i].ev, NULL);
    }
    w->listeners_paused = pause;
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_worker_t *w = arg;

    if (!w->stopping && !w->draining)
        pause_listeners(w, 0);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    lh_listener_t *l = arg;
    lh_worker_t *w = l->w;

    w->now_ms = lh_now_ms();
    {
        /* Every worker is woken for a new connection; one that already holds more than
         * its share steps back for a moment, so a burst spreads evenly. */
        uint64_t mine, avg;

        if (lh_metrics_load(&mine, &avg) == 0 && mine > avg + 8 + avg / 32) {
            struct timeval tv = {0, BALANCE_PAUSE_US};

            pause_listeners(w, 1);
            event_add(w->accept_resume_ev, &tv);
            return;
        }
    }
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED)
                break;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment instead of spinning. */
                lh_log(LH_LOG_ERR, "accept4: %s; pausing accept for 100 ms", strerror(errno));
                pause_listeners(w, 1);
                struct timeval tv = {0, 100000};
                event_add(w->accept_resume_ev, &tv);
                break;
            }
            lh_log(LH_LOG_ERR, "accept4: %s", strerror(errno));
            break;
        }
        if (w->nconns >= w->cfg->limits.max_connections) {
            static const char busy[] =
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                "Connection: close\r\nRetry-After: 1\r\n\r\n";
            /* Best effort: the socket buffer of a fresh connection takes this. */
            if (write(fd, busy, sizeof(busy) - 1) < 0) {
                /* nothing to do */
            }
            close(fd);
            lh_m_inc(LH_M_REJECT_BASE + LH_REJ_OVERLOAD);
            lh_log(LH_LOG_WARNING, "connection refused: limits.max_connections (%zu) reached",
                   w->cfg->limits.max_connections);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        lh_conn_accepted(w, fd, (struct sockaddr *)&ss, sl, l->admin, lh_http_input, l->tls);
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_worker_t *w = arg;

    lh_worker_end_pass(w);
}

/* Ends every connection at once (shutdown timeout, worker exit). */
static void destroy_all(lh_worker_t *w)
{
    while (w->http_conns.head)
        lh_conn_destroy(w->http_conns.head);
    while (w->ws_conns.head)
        lh_conn_destroy(w->ws_conns.head);
    while (w->closing_conns.head)
        lh_conn_destroy(w->closing_conns.head);
}

/* The sweep: walks the timer lists. WebSocket connections are ordered by their last
 * receive, so the walk stops at the first one that is recent enough. */
static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_worker_t *w = arg;
    const lh_config_t *cfg = w->cfg;
    lh_conn_t *c, *next;

    w->now_ms = lh_now_ms();
    lh_nats_sync_metrics(w);
    for (c = w->http_conns.head; c != NULL; c = next) {
        next = c->next;
        /* last_ms is the deadline for HTTP connections. */
        if (w->now_ms >= c->last_ms) {
            int pending = (c->flags & LH_CF_HS_PENDING) != 0;

            if (pending) {
                /* The connect webhook did not decide within the handshake deadline: it
                 * is no longer waited for, and the client is told. */
                lh_upstream_conn_gone(c);
                c->flags &= ~LH_CF_HS_PENDING;
                event_add(&c->rev, NULL);
            }
            if (c->tls && !c->tls->done) {
                lh_tls_gone(c->tls, 1); /* cut mid-handshake: counted as a timeout */
                lh_conn_destroy(c);
                continue;
            }
            if (c->in_len > 0 || pending) {
                lh_m_inc(LH_M_REJECT_BASE + LH_REJ_TIMEOUT);
                c->flags |= LH_CF_CLOSE_AFTER;
                lh_http_respond(c, 408, NULL, "text/plain", "request timeout\n", 16);
                lh_conn_linger(c);
            } else {
                lh_conn_destroy(c);
            }
        }
    }
    for (c = w->ws_conns.head; c != NULL; c = next) {
        uint64_t silent = w->now_ms - c->last_ms;

        next = c->next;
        if (silent < cfg->websocket.ping_interval_ms && silent < cfg->limits.idle_timeout_ms)
            break;
        if (silent >= cfg->limits.idle_timeout_ms) {
            lh_log(LH_LOG_DEBUG, "conn %llu: idle for %llu ms, closing",
                   (unsigned long long)c->id, (unsigned long long)silent);
            lh_conn_close_ws(c, LH_WS_CLOSE_GOING_AWAY, "idle timeout");
        } else if (!(c->flags & LH_CF_PINGED)) {
            c->flags |= LH_CF_PINGED;
            lh_conn_queue_frame(c, LH_WS_OP_PING, NULL, 0);
        }
    }
    for (c = w->closing_conns.head; c != NULL; c = next) {
        next = c->next;
        if (w->now_ms >= c->last_ms)
            lh_conn_expire(c);
    }
    lh_handoff_tick(w);
    if (w->draining && !w->stopping && w->nconns == 0)
        event_base_loopbreak(w->base);
    else if (w->draining && !w->stopping && w->now_ms >= w->drain_deadline_ms) {
        lh_log(LH_LOG_NOTICE, "drain timeout: asking %zu clients to reconnect", w->nconns);
        lh_worker_stop(w, LH_WS_CLOSE_SERVICE_RESTART, cfg->websocket.close_timeout_ms);
    }
    if (w->stopping && w->nconns == 0)
        event_base_loopbreak(w->base);
    else if (w->stopping && w->now_ms >= w->stop_deadline_ms) {
        lh_log(LH_LOG_WARNING, "shutdown timeout: dropping %zu connections", w->nconns);
        destroy_all(w);
        event_base_loopbreak(w->base);
    }
}

static unsigned sweep_interval_ms(const lh_config_t *cfg)
{
    unsigned m = cfg->websocket.ping_interval_ms;

    if (cfg->limits.idle_timeout_ms < m)
        m = cfg->limits.idle_timeout_ms;
    if (cfg->limits.handshake_timeout_ms < m)
        m = cfg->limits.handshake_timeout_ms;
    if (cfg->websocket.close_timeout_ms < m)
        m = cfg->websocket.close_timeout_ms;
    if (cfg->http.keepalive_timeout_ms < m)
        m = cfg->http.keepalive_timeout_ms;
    m /= 4;
    if (m < 10)
        m = 10;
    if (m > 1000)
        m = 1000;
    return m;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    lh_worker_t *w = arg;

    lh_log(LH_LOG_NOTICE, "%s: stopping gracefully", sig == SIGINT ? "SIGINT" : "SIGTERM");
    lh_worker_stop(w, LH_WS_CLOSE_GOING_AWAY, w->cfg->shutdown_timeout_ms);
}

/*
 * A reload retires this worker: the connections it keeps obey the new configuration's
 * identity rules and namespaces from now on (the rest of its configuration stays: it
 * only drains). The master checked the file a moment ago; if it cannot be read or used
 * now, the rules this worker has stay, and the log says why.
 */
static void reload_rules(lh_worker_t *w)
{
    char err[512];
    lh_config_t *cfg;
    lh_auth_t *a, *old = w->auth;

    if (w->load_config == NULL)
        return;
    cfg = w->load_config(err, sizeof(err));
    a = cfg ? lh_auth_new(cfg, cfg, err, sizeof(err)) : NULL;
    if (a == NULL) {
        lh_config_free(cfg);
        lh_log(LH_LOG_WARNING, "keeping the old identity and namespace rules: %s", err);
        return;
    }
    w->auth = a;
    lh_pubsub_recheck(w, old);
    lh_auth_free(old);
}

/* One datagram from the master into msg (NUL-terminated), and the descriptor that came
 * with it into *pfd (-1: none). */
static ssize_t master_recv(int fd, char *msg, size_t cap, int *pfd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {msg, cap - 1};
    struct msghdr mh = {0};
    ssize_t n;

    *pfd = -1;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof(u.buf);
    n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0)
        return n;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
            cm->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(pfd, CMSG_DATA(cm), sizeof(int));
    msg[n] = '\0';
    return n;
}

/* Messages from the master (one datagram each): "drain", "rules" (a later reload's rules
 * for a worker that drains already), "stop", "hb N", "gone PID" (a sibling worker died
 * without sending its clients' leave events), and with a descriptor "handoff" / "adopt"
 * (our end of a handoff pair: we give, or we take). */
static void master_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_worker_t *w = arg;
    char msg[128];
    int pfd;
    ssize_t n = master_recv(fd, msg, sizeof(msg), &pfd);

    w->now_ms = lh_now_ms();
    if (pfd >= 0 && n > 0 && (strcmp(msg, "handoff") == 0 || strcmp(msg, "adopt") == 0)) {
        /* Before "drain" (the master sends it first): our peer of the next reload. */
        lh_handoff_peer(w, pfd, msg[0] == 'h');
        return;
    }
    if (pfd >= 0)
        close(pfd);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        /* The master is gone: nobody will replace us or route reloads; leave cleanly. */
        lh_log(LH_LOG_WARNING, "master gone; stopping");
        event_del(w->master_ev);
        lh_worker_stop(w, LH_WS_CLOSE_GOING_AWAY, w->cfg->shutdown_timeout_ms);
        return;
    }
    if (strcmp(msg, "drain") == 0) {
        reload_rules(w);
        lh_worker_drain(w);
        lh_handoff_begin(w); /* the connections that can move go to the new generation */
        lh_worker_send_master(w, "draining");
    } else if (strcmp(msg, "rules") == 0) {
        reload_rules(w);
    } else if (strcmp(msg, "stop") == 0) {
        lh_worker_stop(w, LH_WS_CLOSE_GOING_AWAY, w->cfg->shutdown_timeout_ms);
    } else if (strncmp(msg, "gone ", 5) == 0) {
        long pid = strtol(msg + 5, NULL, 10);

        if (pid > 0 && pid <= INT32_MAX)
            lh_presence_worker_gone(w, (int)pid);
    } else if (strncmp(msg, "hb ", 3) == 0) {
        char reply[160];

        snprintf(reply, sizeof(reply), "hb %.100s %zu", msg + 3, w->nconns);
        lh_worker_send_master(w, reply);
    }
}

void lh_worker_send_master(lh_worker_t *w, const char *msg)
{
    if (w->master_fd >= 0 && send(w->master_fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        lh_log(LH_LOG_DEBUG, "send to master: %s", strerror(errno));
}

void lh_worker_drain(lh_worker_t *w)
{
    lh_conn_t *c, *next;

    if (w->draining || w->stopping)
        return;
    w->draining = 1;
    w->drain_deadline_ms = w->now_ms + w->cfg->drain_timeout_ms;
    pause_listeners(w, 1);
    /* Idle keep-alive HTTP connections have nothing to finish. */
    for (c = w->http_conns.head; c != NULL; c = next) {
        next = c->next;
        if (c->in_len == 0 && c->out.count == 0)
            lh_conn_destroy(c);
    }
    lh_log(LH_LOG_INFO, "draining %zu connections (at most %u ms)", w->nconns,
           w->cfg->drain_timeout_ms);
    if (w->nconns == 0)
        event_base_loopbreak(w->base);
}

int lh_worker_listen_tls(lh_worker_t *w, const int *kinds, const char *const *keys)
{
    char err[1024];
    int any = 0;

    for (size_t i = 0; i < w->nlisteners; i++)
        if (keys[i] != NULL && lh_config_tls_of(w->cfg, kinds[i], keys[i]) != NULL)
            any = 1;
    if (!any)
        return 0;
    /* A worker started on its own (tests) loads the certificates itself; under the
     * master they came with the configuration, so that all workers share one set of
     * session ticket keys. The store is a cache of the config's files. */
    if (w->cfg->tls_store == NULL &&
        lh_tls_store_load((lh_config_t *)(uintptr_t)w->cfg, err, sizeof(err)) < 0) {
        lh_log(LH_LOG_ERR, "%s", err);
        return -1;
    }
    if (w->tls_rbuf == NULL) {
        w->tls_rbuf = malloc(w->rbuf_cap);
        w->tls_stage = malloc(16384);
        if (w->tls_rbuf == NULL || w->tls_stage == NULL) {
            lh_log(LH_LOG_ERR, "malloc: out of memory for the TLS buffers");
            return -1;
        }
    }
    for (size_t i = 0; i < w->nlisteners; i++)
        w->listeners[i].tls = keys[i] ? lh_tls_find(w->cfg, kinds[i], keys[i]) : NULL;
    lh_tls_kernel_note();
    return 0;
}

lh_worker_t *lh_worker_new(const lh_config_t *cfg, int index, const int *listen_fds, size_t n,
                           size_t n_admin, int master_fd)
{
    lh_worker_t *w = calloc(1, sizeof(*w));
    struct timeval tv;
    unsigned iv;

    if (w == NULL)
        return NULL;
    w->cfg = cfg;
    w->index = index;
    /* cnats calls into libevent from its own threads (reconnects, flushes). */
    evthread_use_pthreads();
    w->base = event_base_new();
    w->rbuf_cap = RBUF_SIZE;
    w->rbuf = malloc(w->rbuf_cap);
    w->listeners = calloc(n ? n : 1, sizeof(*w->listeners));
    w->master_fd = -1;
    if (w->base == NULL || w->rbuf == NULL || w->listeners == NULL)
        goto fail;
    w->http_limits.max_line = cfg->http.max_request_line;
    w->http_limits.max_header_bytes = cfg->http.max_header_bytes;
    w->http_limits.max_headers = cfg->http.max_headers;
    w->lhttp_limits.max_headers = cfg->limits.max_headers;
    w->lhttp_limits.max_line = cfg->limits.max_header_line;
    w->next_id = ((uint64_t)(unsigned)getpid() << 32) | 1u;
    w->now_ms = lh_now_ms();
    for (size_t i = 0; i < n; i++) {
        lh_listener_t *l = &w->listeners[i];

        l->fd = listen_fds[i];
        l->admin = i >= n - n_admin;
        l->w = w;
        event_assign(&l->ev, w->base, l->fd, EV_READ | EV_PERSIST, accept_cb, l);
        event_add(&l->ev, NULL);
    }
    w->nlisteners = n;
    w->accept_resume_ev = evtimer_new(w->base, accept_resume_cb, w);
    w->flush_ev = event_new(w->base, -1, 0, flush_cb, w);
    w->sweep_ev = event_new(w->base, -1, EV_PERSIST, sweep_cb, w);
    w->sigterm_ev = evsignal_new(w->base, SIGTERM, signal_cb, w);
    w->sigint_ev = evsignal_new(w->base, SIGINT, signal_cb, w);
    w->master_fd = master_fd;
    if (master_fd >= 0)
        w->master_ev = event_new(w->base, master_fd, EV_READ | EV_PERSIST, master_cb, w);
    /* Without any of these the worker would run deaf (no flush, no timers, no signals,
     * no word from the master): it does not start at all, and the master retries. */
    if (w->accept_resume_ev == NULL || w->flush_ev == NULL || w->sweep_ev == NULL ||
        w->sigterm_ev == NULL || w->sigint_ev == NULL ||
        (master_fd >= 0 && w->master_ev == NULL)) {
        lh_log(LH_LOG_ERR, "event_new: out of memory starting the worker");
        goto fail;
    }
    iv = sweep_interval_ms(cfg);
    tv.tv_sec = iv / 1000;
    tv.tv_usec = (iv % 1000) * 1000;
    if (event_add(w->sweep_ev, &tv) < 0 || event_add(w->sigterm_ev, NULL) < 0 ||
        event_add(w->sigint_ev, NULL) < 0 ||
        (w->master_ev != NULL && event_add(w->master_ev, NULL) < 0)) {
        lh_log(LH_LOG_ERR, "event_add: cannot start the worker's events");
        goto fail;
    }
    /* When a connection ends, in this order: the processors' and filters' on_close (they
     * may still look at its subscriptions and send nothing), then its disconnect webhook
     * and pending upstream requests, then its subscriptions, then its identity. */
    if (lh_conn_on_gone(w, lh_dispatch_close) < 0 ||
        lh_conn_on_gone(w, lh_upstream_conn_ended) < 0 ||
        lh_conn_on_gone(w, lh_pubsub_conn_gone) < 0 ||
        lh_conn_on_gone(w, lh_auth_conn_gone) < 0 ||
        lh_conn_on_gone(w, lh_hist_conn_gone) < 0 ||
        lh_conn_on_gone(w, lh_presence_conn_gone) < 0 ||
        lh_conn_on_gone(w, lh_handoff_conn_gone) < 0)
        goto fail;
    {
        char err[512];

        w->auth = lh_auth_new(cfg, NULL, err, sizeof(err));
        if (w->auth == NULL) {
            lh_log(LH_LOG_ERR, "cannot start the worker: %s", err);
            goto fail;
        }
    }
    lh_current_worker = w;
    lh_handoff_init(w);
    if (lh_pubsub_init(w) < 0 || lh_static_load(w) < 0 || lh_upstream_init(w) < 0 ||
        lh_nats_start(w) < 0 || lh_hist_init(w) < 0 || lh_presence_init(w) < 0)
        goto fail;
    return w;
fail:
    lh_worker_free(w);
    return NULL;
}

void lh_worker_stop(lh_worker_t *w, uint16_t code, unsigned timeout_ms)
{
    lh_conn_t *c, *next;

    if (w->stopping)
        return;
    w->stopping = 1;
    w->now_ms = lh_now_ms();
    w->stop_deadline_ms = w->now_ms + timeout_ms;
    pause_listeners(w, 1);
    for (c = w->ws_conns.head; c != NULL; c = next) {
        next = c->next;
        lh_conn_close_ws(c, code, "server stopping");
    }
    for (c = w->http_conns.head; c != NULL; c = next) {
        next = c->next;
        lh_conn_destroy(c);
    }
    lh_log(LH_LOG_INFO, "stopping: closing %zu connections with %u (at most %u ms)", w->nconns,
           code, timeout_ms);
    lh_worker_schedule_end(w); /* the close frames go out at the end of this pass */
    if (w->nconns == 0)
        event_base_loopbreak(w->base);
}

int lh_worker_run(lh_worker_t *w)
{
    event_base_dispatch(w->base);
    return 0;
}

void lh_worker_free(lh_worker_t *w)
{
    if (w == NULL)
        return;
    /* Nothing will be written any more: unlist so that every connection can be freed. */
    while (w->flush_head) {
        lh_conn_t *c = w->flush_head;

        w->flush_head = c->flush_next;
        c->flush_next = NULL;
        c->flags &= ~LH_CF_FLUSH_LISTED;
    }
    destroy_all(w);
    lh_worker_end_pass(w); /* clears the flush and resume lists, frees them all */
    {
        /* A worker that handed its connections over leaves at once: what it published
         * last (its clients' messages, the handoff's end marker) must reach NATS first.
         * Its handoff sockets close first, so that nothing is taken over meanwhile. */
        int gave = w->ho != NULL;

        lh_handoff_free(w);
        if (gave && lh_nats_connected(w))
            lh_nats_flush_at_exit(w, 1000);
    }
    lh_presence_flush(w); /* the last leaves, while NATS can still take them */
    lh_nats_stop(w); /* first: its requests' last callbacks still find the history */
    lh_presence_free(w);
    lh_hist_free(w);
    lh_upstream_free(w);
    lh_pubsub_free(w);
    lh_static_free(w);
    lh_auth_free(w->auth);
    if (lh_current_worker == w)
        lh_current_worker = NULL;
    for (size_t i = 0; i < w->nlisteners; i++)
        event_del(&w->listeners[i].ev);
    if (w->accept_resume_ev)
        event_free(w->accept_resume_ev);
    if (w->flush_ev)
        event_free(w->flush_ev);
    if (w->sweep_ev)
        event_free(w->sweep_ev);
    if (w->sigterm_ev)
        event_free(w->sigterm_ev);
    if (w->sigint_ev)
        event_free(w->sigint_ev);
    if (w->master_ev)
        event_free(w->master_ev);
    if (w->master_fd >= 0)
        close(w->master_fd);
    if (w->base)
        event_base_free(w->base);
    free(w->listeners);
    free(w->rbuf);
    free(w->tls_rbuf);
    free(w->tls_stage);
    free(w);
}
