/*
 * Unit tests for the bottom layer, worker/conn.c, on its own: the send queue's limit, the
 * pass rule (input held back is resumed at the end of the pass, never from inside a write),
 * the "connection gone" hooks, and hold/release. Connections are socketpair ends of a real
 * worker (worker_fixture.h); their input goes to a recording handler of this file, so
 * nothing above conn.c runs unless a test wants it.
 */
#include "lh_test.h"

#include <signal.h>

#include <nats/nats.h>

#include "lh_failalloc.h"
#include "lh_log.h"
#include "lh_ws.h"
#include "metrics.h"
#include "worker.h"
#include "worker_fixture.h"

/* ---- A recording input handler ------------------------------------------------------- */

static size_t input_calls, input_bytes;
static int in_write; /* set while the test is inside a flush: input must not run then */
static int input_during_write;

static ssize_t record_input(lh_conn_t *c, uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    input_calls++;
    input_bytes += len;
    if (in_write)
        input_during_write++;
    return (ssize_t)len;
}

/* ---- "connection gone" hooks --------------------------------------------------------- */

static lh_conn_t *gone_seen[4];
static size_t ngone_seen;
static uint32_t gone_nsubs; /* the connection's subscriptions when the test hook ran */

static void gone_hook(lh_conn_t *c)
{
    if (ngone_seen < LH_ARRAY_LEN(gone_seen))
        gone_seen[ngone_seen] = c;
    ngone_seen++;
    gone_nsubs = c->nsubs;
}

/* ---- Tests ---------------------------------------------------------------------------- */

/* The limit judges what waits behind the message being written (issue: a 16 MiB echo
 * through a 4 MiB queue cut a client that kept up). */
LH_TEST(queue_limit_judges_the_backlog_behind_the_head)
{
    static uint8_t big[3000], small[100];
    fixture_t f;
    lh_conn_t *c;

    if (fixture_begin(&f, "\"send_queue_bytes\": 1000", 1) < 0)
        return;
    c = f.conns[0];
    fill_socket(f.conns[0]->fd); /* the peer does not read: nothing is written */
    /* Larger than the whole limit, on an empty queue: accepted. */
    LH_CHECK_INT(lh_conn_queue_frame(c, LH_WS_OP_BINARY, big, sizeof(big)), 0);
    /* Behind it, with nothing else waiting: accepted (a pong behind a big echo). */
    LH_CHECK_INT(lh_conn_queue_frame(c, LH_WS_OP_PONG, small, 10), 0);
    LH_CHECK_INT(lh_conn_queue_frame(c, LH_WS_OP_BINARY, small, sizeof(small)), 0);
    LH_CHECK_INT(c->out.count, 3);
    /* 114 bytes wait behind the head: under 1000, one more big one is accepted... */
    LH_CHECK_INT(lh_conn_queue_frame(c, LH_WS_OP_BINARY, big, sizeof(big)), 0);
    /* ...and then the backlog is over the limit: 4008. */
    LH_CHECK_INT(lh_conn_queue_frame(c, LH_WS_OP_BINARY, small, sizeof(small)), -ENOBUFS);
    LH_CHECK(c->flags & LH_CF_CLOSE_SENT);
    LH_CHECK_INT(c->close_code, LH_WS_CLOSE_SLOW_CONSUMER);
    fixture_stop(&f);
}

/* Input held back is read at the end of the pass: lh_conn_resume_later and the write
 * that drains a full HTTP queue only list the connection. */
LH_TEST(held_input_is_resumed_at_the_end_of_the_pass_only)
{
    static const char held[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    fixture_t f;
    lh_conn_t *c;

    if (fixture_begin(&f, "", 1) < 0)
        return;
    c = f.conns[0];
    c->input = record_input;
    c->in = malloc(sizeof(held));
    LH_CHECK(c->in != NULL);
    if (c->in == NULL) {
        fixture_stop(&f);
        return;
    }
    memcpy(c->in, held, sizeof(held) - 1);
    c->in_len = c->in_cap = (uint32_t)(sizeof(held) - 1);
    input_calls = input_bytes = 0;
    lh_conn_resume_later(c);
    lh_conn_resume_later(c); /* listed once */
    LH_CHECK_INT(input_calls, 0);
    LH_CHECK(c->flags & LH_CF_RESUME_LISTED);
    lh_worker_end_pass(f.w);
    LH_CHECK_INT(input_calls, 1);
    LH_CHECK_INT(input_bytes, sizeof(held) - 1);
    LH_CHECK(!(c->flags & LH_CF_RESUME_LISTED));
    LH_CHECK_INT(c->in_len, 0);

    /* A paused HTTP connection (answers over the limit) whose queue drains: the write
     * does not parse; the end of the pass does. */
    memcpy(c->in, held, sizeof(held) - 1);
    c->in_len = (uint32_t)(sizeof(held) - 1);
    lh_conn_set_state(c, LH_CONN_HTTP);
    c->flags |= LH_CF_OUT_FULL;
    LH_CHECK_INT(lh_conn_queue_frame(c, -1, "HTTP/1.1 204 No Content\r\n\r\n", 27), 0);
    input_calls = 0;
    in_write = 1;
    lh_worker_flush(f.w); /* writes the answer: the queue is under the limit again */
    in_write = 0;
    LH_CHECK_INT(input_calls, 0);
    LH_CHECK(!(c->flags & LH_CF_OUT_FULL));
    LH_CHECK(c->flags & LH_CF_RESUME_LISTED);
    lh_worker_end_pass(f.w);
    LH_CHECK_INT(input_calls, 1);
    LH_CHECK_INT(input_during_write, 0);
    fixture_stop(&f);
}

/* A connection that dies while listed for resuming is skipped and still freed. */
LH_TEST(a_connection_dead_while_listed_is_skipped)
{
    fixture_t f;
    lh_conn_t *c;

    if (fixture_begin(&f, "", 1) < 0)
        return;
    c = f.conns[0];
    c->input = record_input;
    c->in = malloc(8);
    LH_CHECK(c->in != NULL);
    if (c->in == NULL) {
        fixture_stop(&f);
        return;
    }
    memcpy(c->in, "abcdefgh", 8);
    c->in_len = c->in_cap = 8;
    input_calls = 0;
    lh_conn_resume_later(c);
    lh_conn_destroy(c);
    LH_CHECK(f.w->reap_head == c); /* dead, not freed while listed */
    lh_worker_end_pass(f.w);
    LH_CHECK_INT(input_calls, 0);
    LH_CHECK(f.w->reap_head == NULL); /* freed (ASan sees the rest) */
    fixture_stop(&f);
}

/* The hooks run once per connection, in registration order: a hook added after the
 * worker's own sees the subscriptions already dropped by pub/sub's. */
LH_TEST(gone_hooks_run_once_in_order)
{
    fixture_t f;
    lh_conn_t *c;

    if (fixture_begin(&f, "", 2) < 0)
        return;
    LH_CHECK_INT(f.w->ngone, 7); /* dispatch, upstream, pub/sub, auth, history, presence,
                                    handoff */
    LH_CHECK_INT(lh_conn_on_gone(f.w, gone_hook), 0);
    for (unsigned i = f.w->ngone; i < LH_CONN_GONE_MAX; i++)
        LH_CHECK_INT(lh_conn_on_gone(f.w, gone_hook), 0);
    LH_CHECK_INT(lh_conn_on_gone(f.w, gone_hook), -ENOSPC);
    f.w->ngone = 8; /* keep one test hook */
    c = f.conns[0];
    LH_CHECK_INT(lh_subscribe(c, "a", 1), 0);
    LH_CHECK_INT(c->nsubs, 1);
    ngone_seen = 0;
    gone_nsubs = 99;
    lh_conn_destroy(c);
    lh_conn_destroy(c); /* a second destroy is a no-op */
    LH_CHECK_INT(ngone_seen, 1);
    LH_CHECK(gone_seen[0] == c);
    LH_CHECK_INT(gone_nsubs, 0);
    lh_worker_end_pass(f.w);
    fixture_stop(&f);
    LH_CHECK_INT(ngone_seen, 2); /* the other one, at the worker's end */
}

/* A held connection that dies stays allocated until it is released. */
LH_TEST(a_held_connection_outlives_its_death_until_released)
{
    fixture_t f;
    lh_conn_t *c;

    if (fixture_begin(&f, "", 1) < 0)
        return;
    c = f.conns[0];
    lh_conn_hold(c);
    lh_conn_destroy(c);
    lh_worker_end_pass(f.w);
    LH_CHECK(f.w->reap_head == c);
    LH_CHECK(c->flags & LH_CF_DEAD); /* still readable: not freed */
    lh_conn_release(c);
    lh_worker_end_pass(f.w);
    LH_CHECK(f.w->reap_head == NULL);
    fixture_stop(&f);
}

/* lh_worker_new with each of its allocations failing in turn (event_new included: it
 * used to add a NULL event): it returns NULL and frees what it made, or a whole worker. */
LH_TEST(worker_start_survives_every_allocation_failure)
{
    fixture_t f;
    unsigned long n;
    int made = 0;

    if (fixture_begin(&f, "", 0) < 0)
        return;
    for (n = 1; n < 2000; n++) {
        lh_worker_t *w2;
        int fired;

        lh_failalloc_arm(n);
        w2 = lh_worker_new(f.cfg, 0, NULL, 0, 0, -1);
        fired = lh_failalloc_fired();
        lh_failalloc_disarm();
        if (w2 != NULL) {
            made++;
            lh_worker_free(w2);
        }
        if (!fired)
            break; /* it needed fewer than n allocations: all were tried */
    }
    printf("# lh_worker_new: %lu allocations, each made to fail once\n", n - 1);
    LH_CHECK(n > 5 && n < 2000);
    LH_CHECK(made >= 1);
    lh_current_worker = f.w;
    fixture_stop(&f);
}

/* Queueing without memory: no frame (nothing happens) or no room in the ring (the
 * connection ends); neither leaks nor crashes. */
LH_TEST(queueing_without_memory)
{
    fixture_t f;

    if (fixture_begin(&f, "", 2) < 0)
        return;
    lh_failalloc_arm(1); /* the frame's buffer */
    LH_CHECK_INT(lh_conn_queue_frame(f.conns[0], LH_WS_OP_TEXT, "x", 1), -ENOMEM);
    lh_failalloc_disarm();
    LH_CHECK(!(f.conns[0]->flags & LH_CF_DEAD));
    lh_failalloc_arm(2); /* the ring's first allocation */
    LH_CHECK_INT(lh_conn_queue_frame(f.conns[1], LH_WS_OP_TEXT, "x", 1), -ENOMEM);
    LH_CHECK(lh_failalloc_fired());
    lh_failalloc_disarm();
    LH_CHECK(f.conns[1]->flags & LH_CF_DEAD);
    lh_worker_end_pass(f.w);
    fixture_stop(&f);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lh_log_level = LH_LOG_ERR; /* quiet: NATS is unreachable on purpose */
    if (lh_metrics_init(4) < 0 || lh_metrics_slot_alloc(0, (int)getpid(), 1) != 0) {
        printf("# metrics\n");
        return 1;
    }
    lh_metrics_use_slot(0);
    LH_RUN(queue_limit_judges_the_backlog_behind_the_head);
    LH_RUN(held_input_is_resumed_at_the_end_of_the_pass_only);
    LH_RUN(a_connection_dead_while_listed_is_skipped);
    LH_RUN(gone_hooks_run_once_in_order);
    LH_RUN(a_held_connection_outlives_its_death_until_released);
    LH_RUN(worker_start_survives_every_allocation_failure);
    LH_RUN(queueing_without_memory);
    nats_CloseAndWait(2000);
    LH_DONE();
}
