/*
 * Unit tests of presence.c on a worker alone in its cluster (NATS unreachable, no peer
 * node, one worker: a query is answered from this worker's table at once): counts,
 * distinct users, the bounded list, the namespace flags; join/leave batching (one event
 * in headers, several in a JSON body, a join and a leave of one connection cancelling).
 */
#include "lh_test.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "lh_log.h"
#include "lh_ws.h"
#include "metrics.h"
#include "worker.h"
#include "worker_fixture.h"

static lh_presence_result_t got;
static char got_list[8192];
static int answers;

static void done(lh_conn_t *c, void *arg, const lh_presence_result_t *r)
{
    (void)c;
    (void)arg;
    got = *r;
    snprintf(got_list, sizeof(got_list), "%.*s", (int)r->list_len, r->list ? r->list : "");
    got.list = got_list;
    answers++;
}

static int start(fixture_t *f, const char *presence, size_t n)
{
    char more[512];

    snprintf(more, sizeof(more),
             ", \"presence\": {%s}, \"namespaces\": {\"room\": {\"presence\": true, "
             "\"join_leave\": true}, \"big\": {\"presence\": true}, \"plain\": {}}",
             presence);
    if (fixture_start_cfg(f, "", more) < 0 || fixture_add(f, n) < 0) {
        LH_CHECK(0);
        fixture_stop(f);
        return -1;
    }
    return 0;
}

static lh_buf_t *queued(const lh_conn_t *c, uint32_t i)
{
    return c->out.items[(c->out.head + i) & (c->out.cap - 1)];
}

/* 1 when c's i-th queued frame contains s. */
static int frame_has(const lh_conn_t *c, uint32_t i, const char *s)
{
    lh_buf_t *b;

    if (i >= c->out.count)
        return 0;
    b = queued(c, i);
    return memmem(b->data, b->len, s, strlen(s)) != NULL;
}

LH_TEST(a_query_counts_connections_and_distinct_users)
{
    fixture_t f;

    if (start(&f, "", 4) < 0)
        return;
    LH_CHECK_INT(lh_auth_set_user(f.conns[0], "ann", 3, "{\"n\":1}"), 0);
    LH_CHECK_INT(lh_auth_set_user(f.conns[1], "bob", 3, NULL), 0);
    LH_CHECK_INT(lh_auth_set_user(f.conns[2], "ann", 3, NULL), 0);
    for (int i = 0; i < 4; i++) /* conns[3] is anonymous */
        LH_CHECK_INT(lh_subscribe(f.conns[i], "big.a", 5), 0);
    LH_CHECK(lh_presence_is(f.w, "big.a", 5));
    LH_CHECK(!lh_presence_is(f.w, "plain.a", 7));
    LH_CHECK(!lh_presence_is(f.w, "nons.a", 6));
    answers = 0;
    LH_CHECK_INT(lh_presence_query(f.conns[3], "big.a", 5, 0, done, NULL), 0);
    LH_CHECK_INT(answers, 1);
    LH_CHECK_INT(got.ok, 1);
    LH_CHECK_INT(got.count, 4);
    LH_CHECK_INT(got.users, 2); /* ann, bob; the anonymous one only in count */
    LH_CHECK_INT(got.truncated, 0);
    LH_CHECK(strstr(got_list, "\"user\":\"ann\",\"info\":{\"n\":1}") != NULL);
    LH_CHECK(strstr(got_list, "\"user\":\"bob\",\"info\":null") != NULL);
    LH_CHECK(strstr(got_list, "\"user\":\"\"") != NULL);
    LH_CHECK(got_list[0] == '[' && got_list[strlen(got_list) - 1] == ']');
    /* Stats, and a channel nobody is in. */
    LH_CHECK_INT(lh_presence_query(f.conns[3], "big.a", 5, 1, done, NULL), 0);
    LH_CHECK_INT(got.stats, 1);
    LH_CHECK_INT(got.count, 4);
    LH_CHECK_INT(lh_presence_query(f.conns[3], "big.empty", 9, 0, done, NULL), 0);
    LH_CHECK_INT(got.count, 0);
    LH_CHECK(strcmp(got_list, "[]") == 0);
    /* An unsubscribe is gone from the next answer. */
    LH_CHECK_INT(lh_unsubscribe(f.conns[1], "big.a", 5), 0);
    LH_CHECK_INT(lh_presence_query(f.conns[3], "big.a", 5, 1, done, NULL), 0);
    LH_CHECK_INT(got.count, 3);
    LH_CHECK_INT(got.users, 1);
    LH_CHECK_INT(answers, 4);
    fixture_stop(&f);
}

LH_TEST(the_list_is_bounded_by_max_list)
{
    fixture_t f;
    char u[16];

    if (start(&f, "\"max_list\": 3", 10) < 0)
        return;
    for (int i = 0; i < 10; i++) {
        snprintf(u, sizeof(u), "u%d", i);
        LH_CHECK_INT(lh_auth_set_user(f.conns[i], u, strlen(u), NULL), 0);
        LH_CHECK_INT(lh_subscribe(f.conns[i], "big.b", 5), 0);
    }
    LH_CHECK_INT(lh_presence_query(f.conns[0], "big.b", 5, 0, done, NULL), 0);
    LH_CHECK_INT(got.count, 10);
    LH_CHECK_INT(got.users, 10);
    LH_CHECK_INT(got.truncated, 1);
    {
        int n = 0;

        for (const char *p = got_list; (p = strstr(p, "\"client\":")) != NULL; p++)
            n++;
        LH_CHECK_INT(n, 3);
    }
    fixture_stop(&f);
}

LH_TEST(join_and_leave_are_batched_and_cancel_out)
{
    fixture_t f;

    if (start(&f, "\"join_leave_delay_ms\": 10000", 4) < 0)
        return;
    LH_CHECK_INT(lh_auth_set_user(f.conns[0], "ann", 3, "{\"n\":1}"), 0);
    LH_CHECK_INT(lh_auth_set_user(f.conns[1], "bob", 3, NULL), 0);
    LH_CHECK_INT(lh_auth_set_user(f.conns[2], "cy", 2, NULL), 0);
    for (int i = 0; i < 3; i++)
        LH_CHECK_INT(lh_subscribe(f.conns[i], "room.j", 6), 0);
    LH_CHECK_INT(lh_unsubscribe(f.conns[2], "room.j", 6), 0); /* cancels its join */
    LH_CHECK_INT(f.conns[0]->out.count, 0); /* held for the delay */
    lh_presence_flush(f.w);
    LH_CHECK_INT(f.conns[0]->out.count, 1);
    LH_CHECK_INT(f.conns[1]->out.count, 1);
    LH_CHECK_INT(f.conns[2]->out.count, 0);
    LH_CHECK(frame_has(f.conns[0], 0, "LHTTP/1.0 join\r\nchannel:room.j\r\ncount:2\r\n\r\n["));
    LH_CHECK(frame_has(f.conns[0], 0, "\"user\":\"ann\""));
    LH_CHECK(frame_has(f.conns[0], 0, "\"user\":\"bob\""));
    LH_CHECK(!frame_has(f.conns[0], 0, "\"user\":\"cy\""));
    /* One leave: in headers. */
    LH_CHECK_INT(lh_unsubscribe(f.conns[1], "room.j", 6), 0);
    lh_presence_flush(f.w);
    LH_CHECK_INT(f.conns[0]->out.count, 2);
    LH_CHECK(frame_has(f.conns[0], 1, "LHTTP/1.0 leave\r\nchannel:room.j\r\nuser:bob\r\nclient:"));
    LH_CHECK(frame_has(f.conns[0], 1, "\r\ninfo:null\r\n\r\n"));
    /* Channels without join_leave send nothing. */
    LH_CHECK_INT(lh_subscribe(f.conns[3], "big.j", 5), 0);
    LH_CHECK_INT(lh_subscribe(f.conns[0], "big.j", 5), 0);
    lh_presence_flush(f.w);
    LH_CHECK_INT(f.conns[3]->out.count, 0);
    LH_CHECK_INT(f.conns[0]->out.count, 2);
    fixture_stop(&f);
}

LH_TEST(a_batch_is_cut_at_join_leave_batch)
{
    fixture_t f;

    if (start(&f, "\"join_leave_delay_ms\": 10000, \"join_leave_batch\": 2", 5) < 0)
        return;
    LH_CHECK_INT(lh_subscribe(f.conns[0], "room.k", 6), 0);
    LH_CHECK_INT(lh_subscribe(f.conns[1], "room.k", 6), 0); /* 2 events: sent at once */
    LH_CHECK_INT(f.conns[0]->out.count, 0); /* from the loop, not from the subscribe */
    event_base_loop(f.w->base, EVLOOP_NONBLOCK); /* sent, and written at the pass's end */
    {
        char got_b[4096];
        ssize_t r = read(f.peers[0], got_b, sizeof(got_b) - 1);

        LH_CHECK(r > 0);
        got_b[r > 0 ? r : 0] = '\0';
        LH_CHECK(r > 0 && memmem(got_b, (size_t)r, "LHTTP/1.0 join\r\nchannel:room.k\r\ncount:2\r\n",
                                 41) != NULL);
    }
    for (int i = 2; i < 5; i++)
        LH_CHECK_INT(lh_subscribe(f.conns[i], "room.k", 6), 0);
    lh_presence_flush(f.w);
    LH_CHECK_INT(f.conns[0]->out.count, 2); /* 2 more, then the last one */
    LH_CHECK(frame_has(f.conns[0], 0, "count:2\r\n"));
    LH_CHECK(frame_has(f.conns[0], 1, "LHTTP/1.0 join\r\nchannel:room.k\r\nuser:\r\n"));
    fixture_stop(&f);
}

/* A leave that fills a batch is not delivered from inside the unsubscribe: a delivery can
 * end a subscriber (a write that fails at once destroys it), and the last one gone frees
 * the channel that the unsubscribe is still working on. Here B's write fails while A's
 * leave is being recorded; A's unsubscribe must come out unharmed (ASan judges). */
LH_TEST(a_full_batch_is_not_delivered_from_inside_an_unsubscribe)
{
    fixture_t f;
    char pad[1500];

    memset(pad, 'x', sizeof(pad));
    if (fixture_start_cfg(&f, "\"send_queue_bytes\": 1000, \"max_message_bytes\": 1000",
                          ", \"presence\": {\"join_leave_delay_ms\": 10000, \"join_leave_batch\": 1},"
                          " \"namespaces\": {\"room\": {\"presence\": true, \"join_leave\": true}}") < 0 ||
        fixture_add(&f, 2) < 0) {
        LH_CHECK(0);
        fixture_stop(&f);
        return;
    }
    LH_CHECK_INT(lh_subscribe(f.conns[0], "room.u", 6), 0);
    LH_CHECK_INT(lh_subscribe(f.conns[1], "room.u", 6), 0);
    lh_presence_flush(f.w);
    lh_worker_flush(f.w);
    /* B: two frames waiting (a backlog over send_queue_bytes), then its peer goes away:
     * the next frame queued to it writes at once, fails, and destroys it. */
    LH_CHECK_INT(lh_conn_queue_frame(f.conns[1], LH_WS_OP_TEXT, pad, sizeof(pad)), 0);
    LH_CHECK_INT(lh_conn_queue_frame(f.conns[1], LH_WS_OP_TEXT, pad, sizeof(pad)), 0);
    close(f.peers[1]);
    f.peers[1] = socket(AF_UNIX, SOCK_STREAM, 0); /* closed by fixture_stop */
    LH_CHECK_INT(lh_unsubscribe(f.conns[0], "room.u", 6), 0);
    LH_CHECK(!(f.conns[1]->flags & LH_CF_DEAD)); /* nothing was delivered yet */
    /* The batch goes out on this loop pass, from the loop. */
    event_base_loop(f.w->base, EVLOOP_NONBLOCK); /* B is destroyed, and freed */
    LH_CHECK(lh_pubsub_chan(f.w, "room.u", 6) == NULL);
    LH_CHECK_INT(f.w->nconns, 1);
    fixture_stop(&f);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lh_log_level = LH_LOG_ERR; /* quiet: NATS is unreachable on purpose */
    (void)fill_socket; /* the fixture's, unused here */
    (void)fixture_begin;
    LH_RUN(a_query_counts_connections_and_distinct_users);
    LH_RUN(the_list_is_bounded_by_max_list);
    LH_RUN(join_and_leave_are_batched_and_cancel_out);
    LH_RUN(a_batch_is_cut_at_join_leave_batch);
    LH_RUN(a_full_batch_is_not_delivered_from_inside_an_unsubscribe);
    nats_CloseAndWait(2000);
    LH_DONE();
}
