/*
 * bench-floor: the least a WebSocket pub/sub server can do, as the baseline row of
 * `make bench` (tests/bench/run.sh, tests/bench/RESULTS.md). It is a measuring
 * instrument, not a server: no limits, no timeouts, no checks beyond what framing needs.
 *
 * It speaks the dialect lhttp-bench already has for nchan: a subscriber is a WebSocket
 * on /sub/<channel>; a publisher is a WebSocket on /pub/<channel> or a POST to
 * /pub/<channel> (answered 201, keep-alive). One process, one thread, epoll. Each
 * message is written to each subscriber of its channel with one send() as soon as it
 * is read, in the order subscribers came: one system call per delivery and nothing
 * else, which is what a server that does not merge messages must pay at the least.
 * A send that would block or is cut short ends the process with an error (the bench
 * sizes its loads so that none does), so a number of this tool never comes from a
 * dropped delivery.
 *
 * usage: bench-floor PORT (listens on 127.0.0.1:PORT)
 */
#include "lh_ws.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEAD 8192
#define MAX_MSG (1u << 20)
#define BUCKETS 65536u

enum { K_HEAD, K_SUB, K_WSPUB, K_HTTP };

typedef struct chan {
    struct chan *next;
    int *subs; /* subscriber fds, in the order they came */
    size_t n, cap;
    size_t nlen;
    char name[];
} chan_t;

typedef struct {
    int open, kind;
    chan_t *ch;
    size_t sub_idx; /* position in ch->subs (K_SUB) */
    uint8_t *in;
    size_t len, cap;
} conn_t;

static chan_t *table[BUCKETS];
static conn_t *conns;
static size_t nconns;
static int ep;
static uint8_t *frame;

__attribute__((format(printf, 1, 2))) static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("bench-floor: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static uint32_t hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static chan_t *chan_get(const char *name, size_t n)
{
    chan_t **b = &table[hash(name, n) & (BUCKETS - 1)];

    for (chan_t *c = *b; c != NULL; c = c->next)
        if (c->nlen == n && memcmp(c->name, name, n) == 0)
            return c;
    chan_t *c = calloc(1, sizeof(*c) + n + 1);
    if (c == NULL)
        die("out of memory");
    memcpy(c->name, name, n);
    c->nlen = n;
    c->next = *b;
    *b = c;
    return c;
}

static void sub_add(int fd, conn_t *c, chan_t *ch)
{
    if (ch->n == ch->cap) {
        ch->cap = ch->cap ? ch->cap * 2 : 4;
        ch->subs = realloc(ch->subs, ch->cap * sizeof(int));
        if (ch->subs == NULL)
            die("out of memory");
    }
    c->sub_idx = ch->n;
    ch->subs[ch->n++] = fd;
}

static void sub_remove(conn_t *c)
{
    chan_t *ch = c->ch;
    size_t i = c->sub_idx;

    /* Keeps the others' order: a channel's subscribers are few or leave together. */
    memmove(ch->subs + i, ch->subs + i + 1, (ch->n - i - 1) * sizeof(int));
    ch->n--;
    for (size_t j = i; j < ch->n; j++)
        conns[ch->subs[j]].sub_idx = j;
}

static void conn_close(int fd)
{
    conn_t *c = &conns[fd];

    if (c->kind == K_SUB && c->ch != NULL)
        sub_remove(c);
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(c->in);
    memset(c, 0, sizeof(*c));
}

/* Small answers (101, 201, pong, close): all at once or the run is void. */
static void send_all(int fd, const void *p, size_t n)
{
    ssize_t r = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

    if (r < 0 && (errno == EPIPE || errno == ECONNRESET))
        return;
    if (r != (ssize_t)n)
        die("an answer of %zu bytes did not fit in the socket (%zd)", n, r);
}

static void deliver(chan_t *ch, const uint8_t *msg, size_t len, int opcode)
{
    size_t hl, n;

    if (ch == NULL || ch->n == 0)
        return;
    hl = lh_ws_build_header(frame, 1, opcode, len, NULL);
    memcpy(frame + hl, msg, len);
    n = hl + len;
    for (size_t i = 0; i < ch->n; i++) {
        ssize_t r = send(ch->subs[i], frame, n, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (r == (ssize_t)n || (r < 0 && (errno == EPIPE || errno == ECONNRESET)))
            continue;
        die("a subscriber's socket was full (%zd of %zu bytes): the load is too high for "
            "a measurement without a send queue", r, n);
    }
}

static const char *header(const char *h, size_t hl, const char *name, size_t *vl)
{
    size_t nl = strlen(name);

    for (const char *p = memchr(h, '\n', hl); p != NULL && p + 1 < h + hl;
         p = memchr(p + 1, '\n', (size_t)(h + hl - p - 1))) {
        const char *line = p + 1, *end = memchr(line, '\r', (size_t)(h + hl - line));

        if (end == NULL || (size_t)(end - line) <= nl || line[nl] != ':' ||
            strncasecmp(line, name, nl) != 0)
            continue;
        line += nl + 1;
        while (line < end && *line == ' ')
            line++;
        *vl = (size_t)(end - line);
        return line;
    }
    return NULL;
}

/* A request head: the upgrade of a subscriber or a publisher, or a POST. Returns the
 * bytes consumed, 0 to wait for more, or -1 to close. */
static long on_head(int fd, conn_t *c, const uint8_t *p, size_t len)
{
    const uint8_t *e = memmem(p, len, "\r\n\r\n", 4);
    const char *h = (const char *)p, *path, *sp, *v;
    size_t hl, pl, vl;
    char accept[29], out[256];

    if (e == NULL)
        return len > MAX_HEAD ? -1 : 0;
    hl = (size_t)(e + 4 - p);
    path = memchr(h, ' ', hl);
    if (path == NULL || (sp = memchr(path + 1, ' ', (size_t)(h + hl - path - 1))) == NULL)
        return -1;
    path++;
    pl = (size_t)(sp - path);
    if (pl > 5 && memcmp(path, "/sub/", 5) == 0 && memcmp(h, "GET ", 4) == 0)
        c->kind = K_SUB;
    else if (pl > 5 && memcmp(path, "/pub/", 5) == 0 && memcmp(h, "GET ", 4) == 0)
        c->kind = K_WSPUB;
    else if (pl > 5 && memcmp(path, "/pub/", 5) == 0 && memcmp(h, "POST ", 5) == 0)
        c->kind = K_HTTP;
    else
        return -1;
    c->ch = chan_get(path + 5, pl - 5);
    if (c->kind == K_HTTP) {
        size_t body;

        if ((v = header(h, hl, "content-length", &vl)) == NULL)
            return -1;
        body = strtoul(v, NULL, 10);
        if (body > MAX_MSG)
            return -1;
        if (len - hl < body)
            return 0;
        deliver(c->ch, p + hl, body, 1);
        static const char created[] = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
        send_all(fd, created, sizeof(created) - 1);
        c->kind = K_HEAD; /* keep-alive: the next request */
        return (long)(hl + body);
    }
    if ((v = header(h, hl, "sec-websocket-key", &vl)) == NULL ||
        lh_ws_accept_key(v, vl, accept) < 0)
        return -1;
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    send_all(fd, out, (size_t)n);
    if (c->kind == K_SUB)
        sub_add(fd, c, c->ch);
    return (long)hl;
}

/* WebSocket frames from a client (masked). Returns the bytes consumed or -1 to close. */
static long on_frames(int fd, conn_t *c, uint8_t *p, size_t len)
{
    size_t off = 0;

    while (off < len) {
        lh_ws_frame_t f;
        uint16_t code;
        const char *reason;
        int hl = lh_ws_parse_header(p + off, len - off, 1, MAX_MSG, &f, &code, &reason);

        if (hl == LH_PARSE_AGAIN)
            break;
        if (hl < 0 || !f.fin)
            return -1; /* a bad frame, or a fragment: not what lhttp-bench sends */
        if (len - off - (size_t)hl < f.payload_len)
            break;
        uint8_t *m = p + off + hl;
        size_t plen = (size_t)f.payload_len;

        lh_ws_mask(m, plen, f.mask, 0);
        if (f.opcode == LH_WS_OP_TEXT || f.opcode == LH_WS_OP_BINARY) {
            if (c->kind == K_WSPUB)
                deliver(c->ch, m, plen, (int)f.opcode);
        } else if (f.opcode == LH_WS_OP_PING) {
            uint8_t pong[LH_WS_MAX_HEADER + 125]; /* control frames: 125 bytes at most */
            size_t n = lh_ws_build_header(pong, 1, LH_WS_OP_PONG, plen, NULL);

            memcpy(pong + n, m, plen);
            send_all(fd, pong, n + plen);
        } else if (f.opcode == LH_WS_OP_CLOSE) {
            static const uint8_t bye[] = {0x88, 2, 0x03, 0xe8};

            send_all(fd, bye, sizeof(bye));
            return -1;
        }
        off += (size_t)hl + plen;
    }
    return (long)off;
}

static void on_read(int fd)
{
    conn_t *c = &conns[fd];
    ssize_t r;
    size_t off = 0;

    if (c->cap - c->len < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 65536;

        if (cap < c->len + 65536)
            cap = c->len + 65536;
        if ((c->in = realloc(c->in, cap)) == NULL)
            die("out of memory");
        c->cap = cap;
    }
    r = recv(fd, c->in + c->len, c->cap - c->len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        conn_close(fd);
        return;
    }
    c->len += (size_t)r;
    while (off < c->len) {
        long used = c->kind == K_HEAD || c->kind == K_HTTP
                        ? on_head(fd, c, c->in + off, c->len - off)
                        : on_frames(fd, c, c->in + off, c->len - off);

        if (used < 0) {
            conn_close(fd);
            return;
        }
        if (used == 0)
            break;
        off += (size_t)used;
    }
    memmove(c->in, c->in + off, c->len - off);
    c->len -= off;
    if (c->len > MAX_MSG + 64)
        conn_close(fd);
}

int main(int argc, char **argv)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct rlimit rl;
    int one = 1, lfd;

    if (argc != 2 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
        fprintf(stderr, "usage: bench-floor PORT (listens on 127.0.0.1:PORT)\n");
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    nconns = rl.rlim_cur > 1048576 ? 1048576 : (size_t)rl.rlim_cur;
    conns = calloc(nconns, sizeof(*conns));
    frame = malloc(MAX_MSG + LH_WS_MAX_HEADER);
    if (conns == NULL || frame == NULL)
        die("out of memory");
    a.sin_port = htons((uint16_t)atoi(argv[1]));
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 4096) < 0)
        die("listen on 127.0.0.1:%s: %s", argv[1], strerror(errno));
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, -1);

        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;

            if (fd != lfd) {
                if (conns[fd].open)
                    on_read(fd);
                continue;
            }
            for (;;) {
                int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (cfd < 0)
                    break;
                if ((size_t)cfd >= nconns) {
                    close(cfd);
                    continue;
                }
                setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                conns[cfd].open = 1;
                struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = cfd};
                epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ce);
            }
        }
    }
}
