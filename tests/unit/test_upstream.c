/*
 * Out-of-memory paths of worker/upstream.c, on a real worker: its client connections are
 * socketpair(2) ends, its backend a forked HTTP server on 127.0.0.1. Each scenario runs
 * with the nth allocation failing (tests/unit/lh_failalloc.h), for n = 1, 2, ... until
 * the scenario needs fewer allocations than n; at every n the client must be answered
 * (a frame or an HTTP response, an error being fine) or disconnected, within a deadline,
 * never left waiting, and nothing may crash. Leaks and bad reads on the failure paths are
 * found by the sanitizer build (make SANITIZE=address,undefined).
 *
 * Scenarios: a POST with a body redirected (302) to a GET whose answer has X-Lhttp-*
 * headers (body copy, the method's strdup, the restart after the redirect, the answer's
 * headers); a GET answered 503 twice (the retry timer and the restart of the retry); a
 * handshake through the connect webhook.
 */
#include "lh_test.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "lh_config.h"
#include "lh_test_port.h"
#include "lh_failalloc.h"
#include "worker.h"

static unsigned backend_port;
static pid_t backend_pid = -1;

/* ---- The backend: one request per connection, answered by path ---------------------- */

static void backend_answer(int fd)
{
    char req[8192], *end, *cl;
    size_t len = 0, need = 0;
    const char *ans;
    ssize_t n;

    for (;;) {
        n = read(fd, req + len, sizeof(req) - 1 - len);
        if (n <= 0)
            return;
        len += (size_t)n;
        req[len] = '\0';
        if ((end = strstr(req, "\r\n\r\n")) != NULL) {
            cl = strcasestr(req, "\r\ncontent-length:");
            need = (size_t)(end + 4 - req) + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
            if (len >= need)
                break;
        }
        if (len == sizeof(req) - 1)
            return;
    }
    if (strncmp(req, "POST /api/redir ", 16) == 0)
        ans = "HTTP/1.1 302 Found\r\nLocation: /api/hdr\r\nContent-Length: 0\r\n"
              "Connection: close\r\n\r\n";
    else if (strncmp(req, "GET /api/hdr ", 13) == 0)
        ans = "HTTP/1.1 200 OK\r\nX-Lhttp-Command: got\r\nX-Lhttp-Mark: m1\r\n"
              "Content-Length: 8\r\nConnection: close\r\n\r\nhdr-body";
    else if (strncmp(req, "GET /api/retry ", 15) == 0)
        ans = "HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    else if (strncmp(req, "POST /hook ", 11) == 0)
        ans = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
    else
        ans = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if (write(fd, ans, strlen(ans)) < 0)
        return;
}

/* Forks the backend (before anything is armed: the child never fails an allocation). */
static int backend_start(void)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
        printf("# backend: %s\n", strerror(errno));
        return -1;
    }
    backend_port = ntohs(a.sin_port);
    backend_pid = fork();
    if (backend_pid < 0)
        return -1;
    if (backend_pid == 0) {
        for (;;) {
            int c = accept(fd, NULL, NULL);

            if (c < 0)
                continue;
            backend_answer(c);
            close(c);
        }
    }
    close(fd);
    return 0;
}

/* ---- A worker and a client --------------------------------------------------------- */

typedef struct {
    lh_config_t *cfg;
    lh_worker_t *w;
    int peer; /* the client's end */
    struct event *tick;
} fixture_t;

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

static int fixture_start(fixture_t *f, int connect_hook)
{
    char text[1024], err[256], hook[128] = "";
    struct sockaddr_storage ss;
    struct timeval tv = {0, 20000};
    int sv[2];

    memset(f, 0, sizeof(*f));
    f->peer = -1;
    if (connect_hook)
        snprintf(hook, sizeof(hook), "\"connect\": \"http://127.0.0.1:%u/hook\",", backend_port);
    snprintf(text, sizeof(text),
             "{\"listen\": [\"127.0.0.1:1\"], \"workers\": 1,"
             " \"nats\": {\"servers\": [\"nats://127.0.0.1:%u\"]},"
             " \"upstream\": {\"allow\": [\"http://127.0.0.1:%u/api/\"], \"timeout_ms\": 2000,"
             "   \"retries\": 1, \"retry_delay_ms\": 1},"
             " \"webhooks\": {%s \"timeout_ms\": 2000}}",
             closed_port(), backend_port, hook);
    f->cfg = lh_config_parse(text, strlen(text), err, sizeof(err));
    if (f->cfg == NULL) {
        printf("# config: %s\n", err);
        return -1;
    }
    f->w = lh_worker_new(f->cfg, 0, NULL, 0, 0, -1);
    if (f->w == NULL) {
        printf("# lh_worker_new failed\n");
        return -1;
    }
    /* The loop wakes at least every 20 ms, so that a deadline is always seen. */
    f->tick = event_new(f->w->base, -1, EV_PERSIST, tick_cb, NULL);
    if (f->tick == NULL || event_add(f->tick, &tv) < 0)
        return -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    lh_conn_accepted(f->w, sv[0], (struct sockaddr *)&ss, (socklen_t)sizeof(sa_family_t), 0,
                     lh_http_input, NULL);
    f->peer = sv[1];
    return 0;
}

static void fixture_stop(fixture_t *f)
{
    lh_failalloc_disarm();
    if (f->tick != NULL)
        event_free(f->tick);
    if (f->w != NULL) {
        lh_worker_flush(f->w);
        lh_worker_free(f->w);
    }
    if (f->peer >= 0)
        close(f->peer);
    lh_config_free(f->cfg);
    memset(f, 0, sizeof(*f));
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum { GOT_NOTHING, GOT_ANSWER, GOT_EOF };

/* What a complete answer in buf looks like: an HTTP head (http), else a WebSocket frame
 * from the server. Returns its length, or 0 while incomplete. */
static size_t complete(const unsigned char *buf, size_t len, int http)
{
    size_t pl, hl = 2;

    if (http) {
        const char *e = memmem(buf, len, "\r\n\r\n", 4);

        return e ? (size_t)(e - (const char *)buf) + 4 : 0;
    }
    if (len < 2)
        return 0;
    pl = buf[1] & 0x7f;
    if (pl == 126) {
        if (len < 4)
            return 0;
        pl = (size_t)buf[2] << 8 | buf[3];
        hl = 4;
    } else if (pl == 127) {
        return 0; /* not expected here */
    }
    return len >= hl + pl ? hl + pl : 0;
}

/*
 * Runs the worker's loop until the client has a complete answer (copied into out, at most
 * outsz - 1 bytes, NUL-terminated) or EOF, or ms milliseconds pass. Returns GOT_*.
 */
static int run_until_answer(fixture_t *f, int http, char *out, size_t outsz, long long ms)
{
    unsigned char buf[4096];
    size_t len = 0, n;
    long long deadline = now_ms() + ms;

    out[0] = '\0';
    while (now_ms() < deadline) {
        ssize_t r;

        event_base_loop(f->w->base, EVLOOP_ONCE);
        while ((r = recv(f->peer, buf + len, sizeof(buf) - len, 0)) > 0)
            len += (size_t)r;
        if ((n = complete(buf, len, http)) > 0) {
            size_t skip = http ? 0 : (buf[1] & 0x7f) == 126 ? 4 : 2;
            size_t cp = n - skip < outsz - 1 ? n - skip : outsz - 1;

            memcpy(out, buf + skip, cp);
            out[cp] = '\0';
            return GOT_ANSWER;
        }
        if (r == 0)
            return GOT_EOF;
        if (len == sizeof(buf))
            return GOT_ANSWER; /* something large: an answer all the same */
    }
    return GOT_NOTHING;
}

static int send_all(int fd, const void *p, size_t n)
{
    return write(fd, p, n) == (ssize_t)n ? 0 : -1;
}

static const char handshake[] = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: lhttp\r\n\r\n";

/* Opens the client's WebSocket (no failures armed yet). */
static int ws_open(fixture_t *f)
{
    char out[512];

    if (send_all(f->peer, handshake, sizeof(handshake) - 1) < 0 ||
        run_until_answer(f, 1, out, sizeof(out), 3000) != GOT_ANSWER ||
        strncmp(out, "HTTP/1.1 101 ", 13) != 0) {
        printf("# handshake: %s\n", out);
        return -1;
    }
    return 0;
}

/* Sends text as a masked (with a zero key) text frame. */
static int ws_send(fixture_t *f, const char *text)
{
    unsigned char fr[1024];
    size_t n = strlen(text), hl;

    fr[0] = 0x81;
    if (n < 126) {
        fr[1] = (unsigned char)(0x80 | n);
        hl = 2;
    } else {
        fr[1] = 0x80 | 126;
        fr[2] = (unsigned char)(n >> 8);
        fr[3] = (unsigned char)n;
        hl = 4;
    }
    memset(fr + hl, 0, 4);
    memcpy(fr + hl + 4, text, n);
    return send_all(f->peer, fr, hl + 4 + n);
}

/*
 * One scenario with failure n: a fresh worker and client; the message msg (or, when msg
 * is NULL, a handshake through the connect webhook). Checks that the client is answered
 * or disconnected; with no failure reached (*fired 0), that the answer is want.
 */
static void scenario(unsigned long n, const char *msg, const char *want, int *fired)
{
    fixture_t f;
    char out[1024];
    int got;

    *fired = 0;
    if (fixture_start(&f, msg == NULL) < 0 || (msg != NULL && ws_open(&f) < 0)) {
        LH_CHECK(!"fixture");
        fixture_stop(&f);
        return;
    }
    lh_failalloc_arm(n);
    if (msg != NULL)
        LH_CHECK_INT(ws_send(&f, msg), 0);
    else
        LH_CHECK_INT(send_all(f.peer, handshake, sizeof(handshake) - 1), 0);
    got = run_until_answer(&f, msg == NULL, out, sizeof(out), 6000);
    *fired = lh_failalloc_fired();
    lh_failalloc_disarm();
    if (got == GOT_NOTHING) {
        printf("# allocation %lu failing: the client was left without an answer\n", n);
        LH_CHECK(got != GOT_NOTHING);
    }
    if (!*fired) {
        LH_CHECK_INT(got, GOT_ANSWER);
        if (strncmp(out, want, strlen(want)) != 0) {
            printf("# without a failure: answer \"%s\", expected \"%s\"\n", out, want);
            LH_CHECK(!"answer");
        }
    }
    fixture_stop(&f);
}

/* Runs a scenario with n = 1, 2, ... until no failure is reached. */
static void every_failure(const char *msg, const char *want)
{
    unsigned long n;
    int fired = 1;

    for (n = 1; fired && n < 2000 && lh_t_failed_checks == 0; n++)
        scenario(n, msg, want, &fired);
    printf("# %lu allocations\n", n - 2);
    LH_CHECK(!fired);
}

static char msg_redirect[512], msg_retry[512];

LH_TEST(oom_redirected_post_with_body_and_answer_headers)
{
    every_failure(msg_redirect, "LHTTP/1.0 got\r\nmark:m1\r\n\r\nhdr-body");
}

LH_TEST(oom_retried_get)
{
    every_failure(msg_retry, "LHTTP/1.0 error\r\ncode:502\r\n");
}

LH_TEST(oom_connect_webhook)
{
    every_failure(NULL, "HTTP/1.1 101 ");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    lh_upstream_register();
    if (backend_start() < 0) {
        printf("1..0 # SKIP no backend\n");
        return 0;
    }
    snprintf(msg_redirect, sizeof(msg_redirect),
             "LHTTP/1.0 fetch\r\nupstream: POST http://127.0.0.1:%u/api/redir\r\n\r\n"
             "a body to copy",
             backend_port);
    snprintf(msg_retry, sizeof(msg_retry),
             "LHTTP/1.0 fetch\r\nupstream: GET http://127.0.0.1:%u/api/retry\r\n\r\n",
             backend_port);
    LH_RUN(oom_redirected_post_with_body_and_answer_headers);
    LH_RUN(oom_retried_get);
    LH_RUN(oom_connect_webhook);
    kill(backend_pid, SIGTERM);
    waitpid(backend_pid, NULL, 0);
    curl_global_cleanup();
    LH_DONE();
}
