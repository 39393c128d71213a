/*
 * A fixture for unit tests of the worker's layers: a real worker (NATS at a closed port:
 * it retries in the background and never blocks; the loop runs only when a test runs it)
 * and connections on socketpair(2) ends, moved to the WebSocket state by hand. Included
 * by the tests that need it (static functions: one copy per test binary).
 */
#ifndef LH_WORKER_FIXTURE_H
#define LH_WORKER_FIXTURE_H

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lh_config.h"
#include "lh_test_port.h"
#include "worker.h"

/* ---- Fixture: a worker and WebSocket connections on socketpairs ----------------------- */

typedef struct {
    lh_config_t *cfg;
    lh_worker_t *w;
    lh_conn_t **conns;
    int *peers; /* our end of each socketpair */
    size_t n;
} fixture_t;

/* Starts a worker with limits (a JSON fragment of "limits" members, may be "") and more
 * top-level members (a JSON fragment starting with ',', or ""). */
static int fixture_start_cfg(fixture_t *f, const char *limits, const char *more)
{
    char text[4096], err[256];

    memset(f, 0, sizeof(*f));
    snprintf(text, sizeof(text),
             "{\"listen\": [\"127.0.0.1:1\"], \"workers\": 1,"
             " \"nats\": {\"servers\": [\"nats://127.0.0.1:%u\"]},"
             " \"limits\": {%s}%s}",
             closed_port(), limits, more);
    f->cfg = lh_config_parse(text, strlen(text), err, sizeof(err));
    if (f->cfg == NULL) {
        printf("# config: %s\n", err);
        return -1;
    }
    f->w = lh_worker_new(f->cfg, 0, NULL, 0, 0, -1);
    if (f->w == NULL) {
        printf("# lh_worker_new failed\n");
        lh_config_free(f->cfg);
        f->cfg = NULL;
        return -1;
    }
    return 0;
}

/* Starts a worker with limits (a JSON fragment of "limits" members, may be ""). */
static int fixture_start(fixture_t *f, const char *limits)
{
    return fixture_start_cfg(f, limits, "");
}

/* Adds n WebSocket connections. Returns 0 or -1. */
static int fixture_add(fixture_t *f, size_t n)
{
    lh_conn_t **nc = realloc(f->conns, (f->n + n) * sizeof(*nc));
    int *np = realloc(f->peers, (f->n + n) * sizeof(*np));
    struct sockaddr_storage ss;

    if (nc != NULL)
        f->conns = nc;
    if (np != NULL)
        f->peers = np;
    if (nc == NULL || np == NULL)
        return -1;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    for (size_t i = 0; i < n; i++) {
        int sv[2];
        lh_conn_t *c;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
            printf("# socketpair: %s\n", strerror(errno));
            return -1;
        }
        lh_conn_accepted(f->w, sv[0], (struct sockaddr *)&ss, (socklen_t)sizeof(sa_family_t), 0,
                     lh_http_input, NULL);
        c = f->w->http_conns.tail;
        if (c == NULL || c->fd != sv[0]) {
            printf("# the new connection is not at the tail of http_conns\n");
            close(sv[1]);
            return -1;
        }
        lh_conn_set_state(c, LH_CONN_WS);
        f->conns[f->n] = c;
        f->peers[f->n] = sv[1];
        f->n++;
    }
    return 0;
}

/* fixture_start and fixture_add(n) in one: 0, or -1 after a failed check (the fixture
 * is stopped then, and the test returns). */
static int fixture_begin(fixture_t *f, const char *limits, size_t n);

/* Writes what is queued (to the socketpairs), frees the worker and everything else.
 * The flush comes first: lh_worker_free does not free a connection that is still on the
 * flush list (lh_worker_reap skips LH_CF_FLUSH_LISTED), so without it every connection
 * with queued output would leak. */
static void fixture_stop(fixture_t *f)
{
    if (f->w != NULL) {
        lh_worker_flush(f->w);
        lh_worker_free(f->w);
    }
    for (size_t i = 0; i < f->n; i++)
        close(f->peers[i]);
    free(f->conns);
    free(f->peers);
    lh_config_free(f->cfg);
    memset(f, 0, sizeof(*f));
}

/* Fills fd's socket buffer so that the next write would block: a client that stopped
 * reading long ago. */
static void fill_socket(int fd)
{
    static char junk[4096];

    while (write(fd, junk, sizeof(junk)) > 0)
        ;
}

static int fixture_begin(fixture_t *f, const char *limits, size_t n)
{
    if (fixture_start(f, limits) < 0 || (n > 0 && fixture_add(f, n) < 0)) {
        LH_CHECK(0);
        fixture_stop(f);
        return -1;
    }
    return 0;
}

#endif
