/*
 * The client's WebSocket connection: TCP connect, the opening handshake, masked frames
 * out, frames in (fragments reassembled, UTF-8 of text checked, pings answered), and
 * the close handshake. Blocking style: one non-blocking socket, waits are ppoll(2) with
 * a deadline. Errors are printed here, where the context is known.
 */
#include "lhttpc.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lh_utf8.h"
#include "lh_ws.h"

#define HEAD_MAX 16384         /* cap of the server's handshake answer */
#define READ_MIN 65536         /* read at least this much room at a time */
#define MASK_CHUNK 65536       /* payload bytes masked per write */
#define CONNECT_WAIT_MS 10000  /* connect + handshake limit when there is no -w */

volatile sig_atomic_t lhc_stop_signal;

static sigset_t wait_mask;
static int have_wait_mask;

struct lhc_conn {
    int fd;
    int64_t deadline;
    uint64_t max_message;
    uint8_t *rbuf; /* bytes read and not yet parsed are rbuf[rstart..rend) */
    size_t rstart, rend, rcap;
    size_t need;   /* bytes from rstart the next frame needs, when known */
    uint8_t *msg;  /* a fragmented message being reassembled */
    size_t msg_len, msg_cap;
    int in_msg, msg_binary;
    uint32_t utf8;
    int close_sent, closed;
    uint8_t *scratch; /* MASK_CHUNK bytes for masking outgoing payload */
    SSL_CTX *ssl_ctx; /* wss:// */
    SSL *ssl;
    int want_write;   /* TLS needs the socket writable before it can read on */
};

/* The transport: the socket, or TLS over it. Like send/recv: -1 with errno EAGAIN when
 * it would block (*want says for what: POLLIN or POLLOUT), 0 from tr_recv at the end. */
static ssize_t tr_io(lhc_conn_t *c, void *buf, size_t len, int writing, short *want)
{
    int r, e;

    *want = writing ? POLLOUT : POLLIN;
    if (c->ssl == NULL)
        return writing ? send(c->fd, buf, len, MSG_NOSIGNAL) : recv(c->fd, buf, len, 0);
    if (len > INT_MAX)
        len = INT_MAX;
    ERR_clear_error();
    errno = 0;
    r = writing ? SSL_write(c->ssl, buf, (int)len) : SSL_read(c->ssl, buf, (int)len);
    if (r > 0)
        return r;
    e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
        return 0;
    if (e == SSL_ERROR_SSL)
        errno = EPROTO;
    return -1;
}

static ssize_t tr_send(lhc_conn_t *c, const void *buf, size_t len, short *want)
{
    return tr_io(c, (void *)(uintptr_t)buf, len, 1, want);
}

static ssize_t tr_recv(lhc_conn_t *c, void *buf, size_t len, short *want)
{
    return tr_io(c, buf, len, 0, want);
}

/* Decrypted bytes wait inside TLS: read them before polling the socket. */
static int tr_pending(const lhc_conn_t *c)
{
    return c->ssl != NULL && SSL_pending(c->ssl) > 0;
}

int64_t lhc_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void lhc_conn_set_wait_mask(const sigset_t *mask)
{
    have_wait_mask = mask != NULL;
    if (mask != NULL)
        wait_mask = *mask;
}

/* ppoll(2) until deadline (-1: none). Returns poll's result; 0 means the deadline passed. */
static int wait_fds(struct pollfd *pfd, nfds_t n, int64_t deadline)
{
    struct timespec ts, *tsp = NULL;

    if (deadline >= 0) {
        int64_t left = deadline - lhc_now_ms();

        if (left < 0)
            left = 0;
        ts.tv_sec = (time_t)(left / 1000);
        ts.tv_nsec = (long)(left % 1000) * 1000000;
        tsp = &ts;
    }
    return ppoll(pfd, n, tsp, have_wait_mask ? &wait_mask : NULL);
}

/* getrandom(2) for a frame's mask. Returns 0, or -1 with errno set. */
static int random_mask(uint8_t mask[4])
{
    size_t got = 0;

    while (got < 4) {
        ssize_t n = getrandom(mask + got, 4 - got, 0);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

/*
 * Writes p[0..len) whole. Returns 0, LHC_EXIT_TIMEOUT at the deadline, or LHC_EXIT_CONN
 * on an error or a stop signal (errno set; EINTR for the signal).
 */
static int write_all(lhc_conn_t *c, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        short want;
        ssize_t n = tr_send(c, p, len, &want);
        struct pollfd pfd;
        int r;

        if (n >= 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return LHC_EXIT_CONN;
        pfd.fd = c->fd;
        pfd.events = want;
        r = wait_fds(&pfd, 1, c->deadline);
        if (r == 0)
            return LHC_EXIT_TIMEOUT;
        if (r < 0 && errno == EINTR && lhc_stop_signal)
            return LHC_EXIT_CONN;
        if (r < 0 && errno != EINTR)
            return LHC_EXIT_CONN;
    }
    return 0;
}

/* Reports a failed write_all() and returns its status. */
static int write_failed(int r, const char *what)
{
    if (r == LHC_EXIT_TIMEOUT)
        fprintf(stderr, "lhttpc: timed out sending %s\n", what);
    else if (errno == EINTR)
        fprintf(stderr, "lhttpc: interrupted while sending %s\n", what);
    else
        fprintf(stderr, "lhttpc: sending %s: %s\n", what, strerror(errno));
    return r;
}

/* Sends one masked frame; the payload is masked in MASK_CHUNK pieces. */
static int send_frame(lhc_conn_t *c, int fin, int opcode, const void *payload, size_t len)
{
    uint8_t hdr[LH_WS_MAX_HEADER], mask[4];
    const uint8_t *p = payload;
    size_t hlen, off = 0;
    int r;

    if (random_mask(mask) < 0) {
        fprintf(stderr, "lhttpc: getrandom: %s\n", strerror(errno));
        return LHC_EXIT_CONN;
    }
    hlen = lh_ws_build_header(hdr, fin, opcode, len, mask);
    if (len <= MASK_CHUNK - hlen) {
        /* Small frames go out in one send(). */
        memcpy(c->scratch, hdr, hlen);
        if (len > 0)
            memcpy(c->scratch + hlen, p, len);
        lh_ws_mask(c->scratch + hlen, len, mask, 0);
        return write_all(c, c->scratch, hlen + len);
    }
    r = write_all(c, hdr, hlen);
    while (r == 0 && off < len) {
        size_t n = len - off < MASK_CHUNK ? len - off : MASK_CHUNK;

        memcpy(c->scratch, p + off, n);
        lh_ws_mask(c->scratch, n, mask, off);
        r = write_all(c, c->scratch, n);
        off += n;
    }
    return r;
}

/* Sends a close frame with code (0: no payload) unless one was sent. */
static int send_close(lhc_conn_t *c, unsigned code)
{
    uint8_t b[2];

    if (c->close_sent)
        return 0;
    c->close_sent = 1;
    b[0] = (uint8_t)(code >> 8);
    b[1] = (uint8_t)code;
    return send_frame(c, 1, LH_WS_OP_CLOSE, b, code ? 2 : 0);
}

/*
 * After a send failed because the server went away: looks briefly for the close frame it
 * may have sent first (a server refusing a message says why), and reports it. Returns 1
 * when one was found.
 */
static int peer_closed(lhc_conn_t *c)
{
    int64_t saved = c->deadline;
    int err = errno, found = 0;
    lhc_event_t ev;

    c->close_sent = 1; /* nothing more can be sent */
    c->deadline = lhc_now_ms() + 500;
    while (lhc_conn_next(c, -1, &ev) == LHC_EV_MESSAGE)
        continue;
    if (ev.type == LHC_EV_CLOSED && ev.code != LH_WS_CLOSE_ABNORMAL) {
        lhc_report_close(&ev);
        found = 1;
    }
    c->deadline = saved;
    errno = err;
    return found;
}

int lhc_conn_send(lhc_conn_t *c, int binary, const void *p, size_t len, size_t frag)
{
    const uint8_t *b = p;
    size_t off = 0;
    int r, opcode = binary ? LH_WS_OP_BINARY : LH_WS_OP_TEXT;

    if (frag == 0 || frag >= len)
        frag = len ? len : 1;
    do {
        size_t n = len - off < frag ? len - off : frag;

        r = send_frame(c, off + n == len, opcode, b + off, n);
        opcode = LH_WS_OP_CONT;
        off += n;
    } while (r == 0 && off < len);
    if (r == LHC_EXIT_CONN && (errno == EPIPE || errno == ECONNRESET) && peer_closed(c))
        return LHC_EXIT_CLOSED;
    if (r != 0)
        return write_failed(r, "a message");
    return 0;
}

/* Connects to one address before deadline. Returns the fd, or -1 (errno set; ETIMEDOUT). */
static int connect_one(const struct addrinfo *ai, int64_t deadline)
{
    int fd, one = 1, err = 0, r;
    socklen_t elen = sizeof(err);
    struct pollfd pfd;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        goto done;
    if (errno != EINPROGRESS)
        goto fail;
    pfd.fd = fd;
    pfd.events = POLLOUT;
    do {
        r = wait_fds(&pfd, 1, deadline);
    } while (r < 0 && errno == EINTR && !lhc_stop_signal);
    if (r == 0)
        errno = ETIMEDOUT;
    if (r <= 0)
        goto fail;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
        goto fail;
    if (err != 0) {
        errno = err;
        goto fail;
    }
done:
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
fail:
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

void lhc_conn_free(lhc_conn_t *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl);
    SSL_CTX_free(c->ssl_ctx);
    if (c->fd >= 0)
        close(c->fd);
    free(c->rbuf);
    free(c->msg);
    free(c->scratch);
    free(c);
}

void lhc_conn_set_deadline(lhc_conn_t *c, int64_t deadline)
{
    c->deadline = deadline;
}

/* Status for a failure at a deadline: 3 when it was the user's -w, 1 otherwise. */
static int timeout_status(const lhc_conn_opts_t *o)
{
    return o->deadline >= 0 ? LHC_EXIT_TIMEOUT : LHC_EXIT_CONN;
}

/* Sends the upgrade request and checks the answer; leftover bytes stay in rbuf. */
static int handshake(lhc_conn_t *c, const lhc_url_t *u, const lhc_conn_opts_t *o)
{
    char key[25], err[512], proto[256], *req;
    size_t head = 0, cap = 8192 + (o->token ? strlen(o->token) : 0);
    int n, r;

    if (lhc_handshake_key(key) < 0) {
        fprintf(stderr, "lhttpc: getrandom: %s\n", strerror(errno));
        return LHC_EXIT_CONN;
    }
    req = malloc(cap);
    if (req == NULL) {
        fprintf(stderr, "lhttpc: out of memory\n");
        return LHC_EXIT_CONN;
    }
    n = lhc_handshake_request(req, cap, u, key, o->origin, o->protocols, o->token);
    if (n < 0) {
        free(req);
        fprintf(stderr, "lhttpc: the handshake request is too long or holds CR/LF\n");
        return LHC_EXIT_USAGE;
    }
    r = write_all(c, req, (size_t)n);
    free(req);
    if (r == LHC_EXIT_TIMEOUT)
        r = timeout_status(o);
    if (r != 0)
        return write_failed(r, "the handshake");
    while ((head = lhc_handshake_head_len((char *)c->rbuf, c->rend)) == 0) {
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN, .revents = 0 };
        ssize_t got;
        short want = POLLIN;

        if (c->rend >= HEAD_MAX) {
            fprintf(stderr, "lhttpc: the server's handshake answer is over %d bytes\n",
                    HEAD_MAX);
            return LHC_EXIT_CONN;
        }
        pfd.events = want;
        r = tr_pending(c) ? 1 : wait_fds(&pfd, 1, c->deadline);
        if (r == 0) {
            fprintf(stderr, "lhttpc: timed out waiting for the handshake answer\n");
            return timeout_status(o);
        }
        if (r < 0) {
            if (errno == EINTR && !lhc_stop_signal)
                continue;
            fprintf(stderr, "lhttpc: waiting for the handshake answer: %s\n",
                    errno == EINTR ? "interrupted" : strerror(errno));
            return LHC_EXIT_CONN;
        }
        got = tr_recv(c, c->rbuf + c->rend, HEAD_MAX - c->rend, &want);
        if (got == 0) {
            fprintf(stderr, "lhttpc: the server closed the connection during the "
                            "handshake\n");
            return LHC_EXIT_CONN;
        }
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            fprintf(stderr, "lhttpc: reading the handshake answer: %s\n", strerror(errno));
            return LHC_EXIT_CONN;
        }
        c->rend += (size_t)got;
    }
    if (lhc_handshake_check((char *)c->rbuf, head, key, o->protocols, proto, sizeof(proto),
                            err, sizeof(err)) < 0) {
        fprintf(stderr, "lhttpc: %s\n", err);
        return LHC_EXIT_CONN;
    }
    c->rstart = head;
    return 0;
}

static void tls_error(const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char buf[256];

    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
        fprintf(stderr, "lhttpc: %s: %s\n", what, buf);
    } else {
        fprintf(stderr, "lhttpc: %s: %s\n", what, errno ? strerror(errno) : "failed");
    }
    ERR_clear_error();
}

/*
 * The TLS handshake of a wss:// connection: the server's certificate is verified against
 * the system's CAs (or o->cacert) and the URL's host unless o->insecure; SNI names the
 * host unless it is an IP address. Returns 0, or an exit status after printing why.
 */
static int tls_start(lhc_conn_t *c, const lhc_url_t *u, const lhc_conn_opts_t *o)
{
    static const unsigned char alpn[] = "\x08http/1.1";
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, u->host, ip) == 1 || inet_pton(AF_INET6, u->host, ip) == 1;

    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (c->ssl_ctx == NULL) {
        tls_error("SSL_CTX_new");
        return LHC_EXIT_CONN;
    }
    SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
    if (o->cacert != NULL) {
        if (SSL_CTX_load_verify_locations(c->ssl_ctx, o->cacert, NULL) != 1) {
            tls_error(o->cacert);
            return LHC_EXIT_USAGE;
        }
    } else if (SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1) {
        tls_error("the system's CA certificates");
        return LHC_EXIT_CONN;
    }
    SSL_CTX_set_verify(c->ssl_ctx, o->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    c->ssl = SSL_new(c->ssl_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        tls_error("SSL_new");
        return LHC_EXIT_CONN;
    }
    SSL_set_alpn_protos(c->ssl, alpn, sizeof(alpn) - 1);
    if (!is_ip)
        SSL_set_tlsext_host_name(c->ssl, u->host);
    if (!o->insecure) {
        if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), u->host) != 1
                  : SSL_set1_host(c->ssl, u->host) != 1) {
            tls_error("setting the name to verify");
            return LHC_EXIT_CONN;
        }
    }
    for (;;) {
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN, .revents = 0 };
        int r, e;

        ERR_clear_error();
        r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            long v = SSL_get_verify_result(c->ssl);

            if (v != X509_V_OK) {
                fprintf(stderr, "lhttpc: TLS with %s: certificate verify failed: %s (use "
                        "--cacert FILE, or --insecure)\n", u->hostport,
                        X509_verify_cert_error_string(v));
                ERR_clear_error();
            } else {
                tls_error("TLS handshake");
            }
            return LHC_EXIT_CONN;
        }
        pfd.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        r = wait_fds(&pfd, 1, c->deadline);
        if (r == 0) {
            fprintf(stderr, "lhttpc: timed out in the TLS handshake\n");
            return timeout_status(o);
        }
        if (r < 0 && !(errno == EINTR && !lhc_stop_signal)) {
            fprintf(stderr, "lhttpc: TLS handshake: %s\n",
                    errno == EINTR ? "interrupted" : strerror(errno));
            return LHC_EXIT_CONN;
        }
    }
}

lhc_conn_t *lhc_conn_open(const lhc_url_t *u, const lhc_conn_opts_t *o, int *status)
{
    struct addrinfo hints, *res = NULL, *ai;
    lhc_conn_t *c;
    int r, err = 0;

    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->scratch = malloc(MASK_CHUNK)) == NULL ||
        (c->rbuf = malloc(READ_MIN > HEAD_MAX ? READ_MIN : HEAD_MAX)) == NULL) {
        fprintf(stderr, "lhttpc: out of memory\n");
        lhc_conn_free(c);
        *status = LHC_EXIT_CONN;
        return NULL;
    }
    c->fd = -1;
    c->rcap = READ_MIN > HEAD_MAX ? READ_MIN : HEAD_MAX;
    c->max_message = o->max_message;
    c->deadline = o->deadline >= 0 ? o->deadline : lhc_now_ms() + CONNECT_WAIT_MS;
    c->utf8 = LH_UTF8_ACCEPT;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r = getaddrinfo(u->host, u->port, &hints, &res);
    if (r != 0) {
        fprintf(stderr, "lhttpc: cannot resolve %s: %s\n", u->host, gai_strerror(r));
        *status = LHC_EXIT_CONN;
        lhc_conn_free(c);
        return NULL;
    }
    for (ai = res; ai != NULL && c->fd < 0; ai = ai->ai_next) {
        c->fd = connect_one(ai, c->deadline);
        if (c->fd < 0)
            err = errno;
    }
    freeaddrinfo(res);
    if (c->fd < 0) {
        fprintf(stderr, "lhttpc: connect to %s: %s\n", u->hostport,
                err == EINTR ? "interrupted" : strerror(err));
        *status = err == ETIMEDOUT ? timeout_status(o) : LHC_EXIT_CONN;
        lhc_conn_free(c);
        return NULL;
    }
    r = u->tls ? tls_start(c, u, o) : 0;
    if (r == 0)
        r = handshake(c, u, o);
    if (r != 0) {
        *status = r;
        lhc_conn_free(c);
        return NULL;
    }
    c->deadline = o->deadline;
    return c;
}

/* Fails the connection for a protocol error of the server's: close with code, report. */
static int protocol_error(lhc_conn_t *c, lhc_event_t *ev, unsigned code, const char *why)
{
    fprintf(stderr, "lhttpc: protocol error from the server: %s (closing with %u)\n", why,
            code);
    send_close(c, code);
    c->closed = 1;
    ev->type = LHC_EV_ERROR;
    ev->status = LHC_EXIT_CONN;
    return 1;
}

/* Appends p[0..len) to the message being reassembled; -1 when over the cap. */
static int msg_append(lhc_conn_t *c, const uint8_t *p, size_t len)
{
    if (len > c->max_message || c->msg_len > c->max_message - len)
        return -1;
    if (c->msg_len + len > c->msg_cap) {
        size_t cap = c->msg_cap ? c->msg_cap : READ_MIN;
        uint8_t *m;

        while (cap < c->msg_len + len)
            cap *= 2;
        if (cap > c->max_message)
            cap = (size_t)c->max_message;
        m = realloc(c->msg, cap);
        if (m == NULL)
            return -1;
        c->msg = m;
        c->msg_cap = cap;
    }
    if (len > 0)
        memcpy(c->msg + c->msg_len, p, len);
    c->msg_len += len;
    return 0;
}

/* Handles the server's close frame: answers it (unless we started) and reports it. */
static int on_close(lhc_conn_t *c, const uint8_t *p, size_t len, lhc_event_t *ev)
{
    uint16_t code, err_code;
    const char *reason;
    size_t reason_len, i;

    if (lh_ws_parse_close(p, len, &code, &reason, &reason_len, &err_code) < 0)
        return protocol_error(c, ev, err_code,
                              err_code == LH_WS_CLOSE_INVALID_DATA
                                  ? "close reason is not UTF-8"
                                  : "invalid close frame");
    /* Echo the code, as RFC 6455 section 5.5.1 suggests; 1005 means "no code". */
    send_close(c, code == LH_WS_CLOSE_NO_STATUS ? 0 : code);
    c->closed = 1;
    ev->type = LHC_EV_CLOSED;
    ev->code = code;
    if (reason_len >= sizeof(ev->reason))
        reason_len = sizeof(ev->reason) - 1;
    for (i = 0; i < reason_len; i++)
        ev->reason[i] = (unsigned char)reason[i] < ' ' ? '?' : reason[i];
    ev->reason[reason_len] = '\0';
    return 1;
}

/*
 * Parses the frames in rbuf until one gives an event. Returns 1 with ev filled, or 0
 * when more bytes are needed (c->need says how many from rstart, when known).
 */
static int process(lhc_conn_t *c, lhc_event_t *ev)
{
    for (;;) {
        size_t avail = c->rend - c->rstart, total;
        lh_ws_frame_t f;
        uint16_t code = 0;
        const char *reason = "";
        uint8_t *payload;
        int r;

        c->need = 0;
        if (avail == 0)
            return 0;
        r = lh_ws_parse_header(c->rbuf + c->rstart, avail, 0, c->max_message, &f, &code,
                               &reason);
        if (r == LH_PARSE_AGAIN)
            return 0;
        if (r < 0)
            return protocol_error(c, ev, code, reason);
        if (f.masked)
            return protocol_error(c, ev, LH_WS_CLOSE_PROTOCOL, "masked frame");
        total = f.header_len + (size_t)f.payload_len;
        if (avail < total) {
            c->need = total;
            return 0;
        }
        payload = c->rbuf + c->rstart + f.header_len;
        c->rstart += total;
        switch (f.opcode) {
        case LH_WS_OP_PING:
            if (!c->close_sent) {
                r = send_frame(c, 1, LH_WS_OP_PONG, payload, (size_t)f.payload_len);
                if (r != 0) {
                    write_failed(r, "a pong");
                    ev->type = LHC_EV_ERROR;
                    ev->status = r;
                    return 1;
                }
            }
            continue;
        case LH_WS_OP_PONG:
            continue;
        case LH_WS_OP_CLOSE:
            return on_close(c, payload, (size_t)f.payload_len, ev);
        case LH_WS_OP_TEXT:
        case LH_WS_OP_BINARY:
            if (c->in_msg)
                return protocol_error(c, ev, LH_WS_CLOSE_PROTOCOL,
                                      "a new message before the last one's final fragment");
            c->msg_binary = f.opcode == LH_WS_OP_BINARY;
            c->utf8 = LH_UTF8_ACCEPT;
            c->msg_len = 0;
            if (!c->msg_binary)
                c->utf8 = lh_utf8_validate(c->utf8, payload, (size_t)f.payload_len);
            if (c->utf8 == LH_UTF8_REJECT)
                return protocol_error(c, ev, LH_WS_CLOSE_INVALID_DATA,
                                      "a text message is not UTF-8");
            if (f.fin) {
                if (c->utf8 != LH_UTF8_ACCEPT)
                    return protocol_error(c, ev, LH_WS_CLOSE_INVALID_DATA,
                                          "a text message is not UTF-8");
                /* Whole in one frame: hand out the bytes where they lie. */
                ev->type = LHC_EV_MESSAGE;
                ev->binary = c->msg_binary;
                ev->data = payload;
                ev->len = (size_t)f.payload_len;
                return 1;
            }
            c->in_msg = 1;
            if (msg_append(c, payload, (size_t)f.payload_len) < 0)
                return protocol_error(c, ev, LH_WS_CLOSE_TOO_BIG, "message too big");
            continue;
        case LH_WS_OP_CONT:
            if (!c->in_msg)
                return protocol_error(c, ev, LH_WS_CLOSE_PROTOCOL,
                                      "a continuation frame outside a message");
            if (msg_append(c, payload, (size_t)f.payload_len) < 0)
                return protocol_error(c, ev, LH_WS_CLOSE_TOO_BIG, "message too big");
            if (!c->msg_binary)
                c->utf8 = lh_utf8_validate(c->utf8, payload, (size_t)f.payload_len);
            if (c->utf8 == LH_UTF8_REJECT || (f.fin && c->utf8 != LH_UTF8_ACCEPT))
                return protocol_error(c, ev, LH_WS_CLOSE_INVALID_DATA,
                                      "a text message is not UTF-8");
            if (!f.fin)
                continue;
            c->in_msg = 0;
            ev->type = LHC_EV_MESSAGE;
            ev->binary = c->msg_binary;
            ev->data = c->msg;
            ev->len = c->msg_len;
            return 1;
        default:
            return protocol_error(c, ev, LH_WS_CLOSE_PROTOCOL, "unknown opcode");
        }
    }
}

/* Makes room in rbuf for the next read. Returns 0, or -1 when out of memory. */
static int make_room(lhc_conn_t *c)
{
    size_t have = c->rend - c->rstart, want = have + READ_MIN;

    if (c->need > have)
        want = c->need;
    if (c->rstart > 0 && c->rcap - c->rstart < want) {
        memmove(c->rbuf, c->rbuf + c->rstart, have);
        c->rstart = 0;
        c->rend = have;
    }
    if (c->rcap - c->rstart < want) {
        size_t cap = c->rcap;
        uint8_t *b;

        while (cap - c->rstart < want)
            cap *= 2;
        b = realloc(c->rbuf, cap);
        if (b == NULL)
            return -1;
        c->rbuf = b;
        c->rcap = cap;
    }
    return 0;
}

int lhc_conn_next(lhc_conn_t *c, int extra_fd, lhc_event_t *ev)
{
    memset(ev, 0, sizeof(*ev));
    for (;;) {
        struct pollfd pfd[2];
        ssize_t n;
        int r;

        if (c->closed) {
            ev->type = LHC_EV_CLOSED;
            ev->code = LH_WS_CLOSE_ABNORMAL;
            snprintf(ev->reason, sizeof(ev->reason), "(connection already closed)");
            return ev->type;
        }
        if (c->rstart == c->rend)
            c->rstart = c->rend = 0;
        if (process(c, ev))
            return ev->type;
        pfd[0].fd = c->fd;
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        pfd[1].fd = extra_fd;
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;
        if (c->want_write)
            pfd[0].events = POLLOUT;
        if (tr_pending(c)) {
            r = 1;
            pfd[0].revents = POLLIN;
        } else {
            r = wait_fds(pfd, extra_fd >= 0 ? 2 : 1, c->deadline);
        }
        if (r == 0) {
            ev->type = LHC_EV_TIMEOUT;
            return ev->type;
        }
        if (r < 0) {
            if (errno == EINTR) {
                ev->type = LHC_EV_SIGNAL;
                return ev->type;
            }
            fprintf(stderr, "lhttpc: poll: %s\n", strerror(errno));
            ev->type = LHC_EV_ERROR;
            ev->status = LHC_EXIT_CONN;
            return ev->type;
        }
        if (pfd[0].revents == 0) {
            ev->type = LHC_EV_FD;
            return ev->type;
        }
        if (make_room(c) < 0) {
            fprintf(stderr, "lhttpc: out of memory for a %zu-byte frame\n", c->need);
            ev->type = LHC_EV_ERROR;
            ev->status = LHC_EXIT_CONN;
            return ev->type;
        }
        {
            short want;

            n = tr_recv(c, c->rbuf + c->rend, c->rcap - c->rend, &want);
            c->want_write = n < 0 && errno == EAGAIN && want == POLLOUT;
        }
        if (n > 0) {
            c->rend += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        c->closed = 1;
        ev->type = LHC_EV_CLOSED;
        ev->code = LH_WS_CLOSE_ABNORMAL;
        snprintf(ev->reason, sizeof(ev->reason), "(%s)",
                 n == 0 ? "connection closed without a close frame" : strerror(errno));
        return ev->type;
    }
}

int lhc_conn_close(lhc_conn_t *c, unsigned code, int wait_ms,
                   void (*on_message)(void *arg, const lhc_event_t *ev), void *arg)
{
    lhc_event_t ev;
    int r;

    if (c->closed)
        return 0;
    r = send_close(c, code);
    if (r != 0) {
        /* The server may be gone already; nothing left to tell it. */
        return 1;
    }
    c->deadline = lhc_now_ms() + wait_ms;
    for (;;) {
        switch (lhc_conn_next(c, -1, &ev)) {
        case LHC_EV_MESSAGE:
            if (on_message != NULL)
                on_message(arg, &ev);
            continue;
        case LHC_EV_CLOSED:
            return 0;
        case LHC_EV_ERROR:
            return ev.status;
        case LHC_EV_SIGNAL:
            if (!lhc_stop_signal)
                continue;
            return 1;
        default:
            return 1;
        }
    }
}

void lhc_report_close(const lhc_event_t *ev)
{
    if (ev->reason[0] != '\0')
        fprintf(stderr, "closed: %u %s\n", ev->code, ev->reason);
    else
        fprintf(stderr, "closed: %u\n", ev->code);
}
