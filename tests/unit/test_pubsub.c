/*
 * Unit tests for the worker's subscription table and fan-out (worker/pubsub.c), on a real
 * worker whose connections are socketpair(2) ends moved to the WebSocket state by hand.
 * NATS points at a closed port: the worker keeps retrying in the background, never
 * blocks, and the loop is never run, so only the table and the send queues are seen.
 *
 * The table's types come from worker/pubsub.h, the header pubsub.c itself uses, so the
 * white-box checks below read the real layout.
 *
 * The metrics block is created (lh_metrics_init, slot 0) so that the channel table's
 * companion, the node-wide channel hashes in shared memory, is checked too.
 */
#include "lh_test.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "lh_config.h"
#include "lh_log.h"
#include "lh_ws.h"
#include "metrics.h"
#include "worker.h"
#include "pubsub.h"
#include "worker_fixture.h"

static struct lh_pubsub_s *ps_of(lh_worker_t *w)
{
    return (struct lh_pubsub_s *)w->ps;
}

static lh_chan_t *chan_of(const lh_csub_t *s)
{
    return (lh_chan_t *)s->ch;
}

/* The channel named name in w's table (walking every bucket: no hash needed), or NULL. */
static lh_chan_t *table_find(lh_worker_t *w, const char *name)
{
    struct lh_pubsub_s *ps = ps_of(w);
    size_t len = strlen(name);

    for (size_t b = 0; b < ps->nbuckets; b++)
        for (lh_chan_t *ch = ps->buckets[b]; ch != NULL; ch = ch->next)
            if (ch->len == len && memcmp(ch->name, name, len) == 0)
                return ch;
    return NULL;
}

static size_t table_count(lh_worker_t *w)
{
    struct lh_pubsub_s *ps = ps_of(w);
    size_t n = 0;

    for (size_t b = 0; b < ps->nbuckets; b++)
        for (lh_chan_t *ch = ps->buckets[b]; ch != NULL; ch = ch->next)
            n++;
    return n;
}

static int sub(lh_conn_t *c, const char *name)
{
    return lh_subscribe(c, name, strlen(name));
}

static int unsub(lh_conn_t *c, const char *name)
{
    return lh_unsubscribe(c, name, strlen(name));
}

/* 1 when c is subscribed to name according to c's own array. */
static int conn_has(const lh_conn_t *c, const char *name)
{
    size_t len = strlen(name);

    for (uint32_t i = 0; i < c->nsubs; i++) {
        const lh_chan_t *ch = chan_of(&c->subs[i]);

        if (ch->len == len && memcmp(ch->name, name, len) == 0)
            return 1;
    }
    return 0;
}

/* Checks both directions of every link of c: c->subs[i] points at a channel whose
 * subs[pos] is c with idx i. Returns the number of broken links. */
static int conn_links_ok(const lh_conn_t *c)
{
    int bad = 0;

    for (uint32_t i = 0; i < c->nsubs; i++) {
        const lh_chan_t *ch = chan_of(&c->subs[i]);
        uint32_t pos = c->subs[i].pos;

        if (ch == NULL || pos >= ch->nsubs || ch->subs[pos].c != c || ch->subs[pos].idx != i)
            bad++;
        for (uint16_t j = 0; j < i; j++)
            if (c->subs[j].ch == c->subs[i].ch)
                bad++; /* the same channel twice */
    }
    return bad;
}

/* Checks the node-wide channel hashes (slot 0 of the metrics block): one entry per
 * channel, each owned by its channel, holding its name's hash. Returns the number of
 * differences. */
static int metrics_links_ok(lh_worker_t *w)
{
    struct lh_pubsub_s *ps = ps_of(w);
    int bad = 0;

    if (lh_shm == NULL)
        return 0;
    for (size_t b = 0; b < ps->nbuckets; b++) {
        for (lh_chan_t *ch = ps->buckets[b]; ch != NULL; ch = ch->next) {
            if (ch->track < 0 || (size_t)ch->track >= ps->tracked_cap ||
                ps->tracked[ch->track] != ch ||
                lh_shm->chan[0][ch->track] != lh_metrics_chan_hash(ch->name, ch->len))
                bad++;
        }
    }
    if (lh_shm->nchan[0] != ps->nchans || lh_m_get(LH_G_CHANNELS) != ps->nchans)
        bad++;
    return bad;
}

/* Checks every channel of the table: its subscribers point back at it. */
static int table_links_ok(lh_worker_t *w)
{
    struct lh_pubsub_s *ps = ps_of(w);
    size_t subs = 0;
    int bad = 0;

    for (size_t b = 0; b < ps->nbuckets; b++) {
        for (lh_chan_t *ch = ps->buckets[b]; ch != NULL; ch = ch->next) {
            if (ch->nsubs == 0 && ch->busy == 0)
                bad++; /* an empty channel must have been freed */
            for (uint32_t j = 0; j < ch->nsubs; j++) {
                const lh_conn_t *c = ch->subs[j].c;
                uint32_t idx = ch->subs[j].idx;

                if (idx >= c->nsubs || chan_of(&c->subs[idx]) != ch || c->subs[idx].pos != j)
                    bad++;
            }
            subs += ch->nsubs;
        }
    }
    if (subs != ps->nsubscriptions)
        bad++;
    return bad + metrics_links_ok(w);
}

/* Checks c's index of subscriptions by channel (pubsub.c): present from 16 on, at most
 * half full, one entry per subscription, each reachable from its home slot without
 * crossing a free one (what a lookup walks). Returns the number of problems. */
static int index_ok(const lh_conn_t *c)
{
    uint32_t used = 0, mask;
    int bad = 0;

    if (c->subs_ix == NULL)
        return c->nsubs >= 16 ? 1 : 0;
    if (c->subs_ix_cap < 2 * c->nsubs || (c->subs_ix_cap & (c->subs_ix_cap - 1)) != 0)
        return 1;
    mask = c->subs_ix_cap - 1;
    for (uint32_t s = 0; s < c->subs_ix_cap; s++) {
        uint32_t v = c->subs_ix[s], h;
        uint64_t x;

        if (v == 0)
            continue;
        used++;
        if (v - 1 >= c->nsubs) {
            bad++;
            continue;
        }
        x = (uint64_t)(uintptr_t)c->subs[v - 1].ch;
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 33;
        for (h = (uint32_t)x & mask; h != s; h = (h + 1) & mask)
            if (c->subs_ix[h] == 0) {
                bad++;
                break;
            }
    }
    return bad + (used != c->nsubs);
}

/* ---- Tests ---------------------------------------------------------------------------- */

/* One channel with one subscriber: its entry, its bucket, its metrics companion. */
LH_TEST(one_channel_in_the_table)
{
    fixture_t f;
    lh_chan_t *ch, *p;
    struct lh_pubsub_s *ps;
    int found = 0;

    if (fixture_begin(&f, "", 1) < 0)
        return;
    LH_CHECK_INT(sub(f.conns[0], "tables.check"), 0);
    LH_CHECK_INT(f.conns[0]->nsubs, 1);
    ps = ps_of(f.w);
    ch = chan_of(&f.conns[0]->subs[0]);
    if (lh_t_failed_checks || ch == NULL || ch->len != 12 ||
        memcmp(ch->name, "tables.check", 13) != 0 || ch->nsubs != 1 || ch->cap < 1 ||
        ch->subs[0].c != f.conns[0] || ch->subs[0].idx != 0 || f.conns[0]->subs[0].pos != 0) {
        printf("# the channel entry is wrong\n");
        LH_CHECK(0);
        fixture_stop(&f);
        return;
    }
    if (ps->nbuckets < 1 || ps->nbuckets > (1u << 24) ||
        (ps->nbuckets & (ps->nbuckets - 1)) != 0 || ps->buckets == NULL || ps->nchans != 1 ||
        ps->nsubscriptions != 1) {
        printf("# the channel table is wrong\n");
        LH_CHECK(0);
        fixture_stop(&f);
        return;
    }
    p = ps->buckets[ch->hash & (ps->nbuckets - 1)];
    for (int i = 0; p != NULL && i < 8; p = p->next, i++)
        found |= p == ch;
    LH_CHECK(found);
    /* The metrics companion: the channel owns entry 0 of slot 0. */
    LH_CHECK_INT(ch->track, 0);
    LH_CHECK(ps->tracked_cap >= 1 && ps->tracked != NULL && ps->tracked[0] == ch);
    LH_CHECK_INT(lh_shm->nchan[0], 1);
    LH_CHECK(table_find(f.w, "tables.check") == ch);
    fixture_stop(&f);
    /* Every channel left with its subscriber: the shared table is empty again. */
    LH_CHECK_INT(lh_shm->nchan[0], 0);
    LH_CHECK_INT(lh_m_get(LH_G_CHANNELS), 0);
}

LH_TEST(subscribe_is_idempotent)
{
    fixture_t f;

    if (fixture_begin(&f, "", 2) < 0)
        return;
    for (int i = 0; i < 5; i++)
        LH_CHECK_INT(sub(f.conns[0], "room"), 0);
    LH_CHECK_INT(f.conns[0]->nsubs, 1);
    LH_CHECK_INT(sub(f.conns[1], "room"), 0);
    LH_CHECK_INT(sub(f.conns[1], "room"), 0);
    LH_CHECK_INT(f.conns[1]->nsubs, 1);
    LH_CHECK_INT(table_find(f.w, "room")->nsubs, 2);
    LH_CHECK_INT(ps_of(f.w)->nchans, 1);
    LH_CHECK_INT(ps_of(f.w)->nsubscriptions, 2);
    LH_CHECK_INT(conn_links_ok(f.conns[0]) + conn_links_ok(f.conns[1]), 0);
    LH_CHECK_INT(table_links_ok(f.w), 0);
    fixture_stop(&f);
}

LH_TEST(unsubscribe_of_a_channel_not_subscribed)
{
    fixture_t f;

    if (fixture_begin(&f, "", 2) < 0)
        return;
    /* Neither a channel that exists (another connection's) nor one that does not. */
    LH_CHECK_INT(sub(f.conns[0], "a"), 0);
    LH_CHECK_INT(unsub(f.conns[1], "a"), 0);
    LH_CHECK_INT(unsub(f.conns[1], "nowhere"), 0);
    LH_CHECK_INT(unsub(f.conns[0], "nowhere"), 0);
    LH_CHECK_INT(f.conns[0]->nsubs, 1);
    LH_CHECK_INT(f.conns[1]->nsubs, 0);
    LH_CHECK(table_find(f.w, "a") != NULL);
    LH_CHECK(table_find(f.w, "nowhere") == NULL);
    LH_CHECK_INT(ps_of(f.w)->nchans, 1);
    /* Twice: the second is a no-op. */
    LH_CHECK_INT(unsub(f.conns[0], "a"), 0);
    LH_CHECK_INT(unsub(f.conns[0], "a"), 0);
    LH_CHECK_INT(f.conns[0]->nsubs, 0);
    LH_CHECK_INT(ps_of(f.w)->nchans, 0);
    LH_CHECK_INT(table_links_ok(f.w), 0);
    fixture_stop(&f);
}

LH_TEST(invalid_names_and_the_subscription_limit)
{
    fixture_t f;
    char name[16];

    if (fixture_start(&f, "\"max_subscriptions\": 3, \"max_channel_bytes\": 8") < 0 ||
        fixture_add(&f, 1) < 0) {
        LH_CHECK(0);
        fixture_stop(&f);
        return;
    }
    LH_CHECK_INT(sub(f.conns[0], "a.*"), -EINVAL);
    LH_CHECK_INT(sub(f.conns[0], ">"), -EINVAL);
    LH_CHECK_INT(sub(f.conns[0], "a..b"), -EINVAL);
    LH_CHECK_INT(sub(f.conns[0], ".a"), -EINVAL);
    LH_CHECK_INT(sub(f.conns[0], ""), -EINVAL);
    LH_CHECK_INT(sub(f.conns[0], "123456789"), -EINVAL); /* over max_channel_bytes */
    LH_CHECK_INT(lh_publish("a.*", 3, "x", 1), -EINVAL);
    LH_CHECK_INT(f.conns[0]->nsubs, 0);
    LH_CHECK_INT(ps_of(f.w)->nchans, 0);
    LH_CHECK_INT(sub(f.conns[0], "12345678"), 0); /* exactly max_channel_bytes */
    LH_CHECK_INT(sub(f.conns[0], "b"), 0);
    LH_CHECK_INT(sub(f.conns[0], "c"), 0);
    LH_CHECK_INT(sub(f.conns[0], "d"), -ENOSPC);
    LH_CHECK_INT(sub(f.conns[0], "b"), 0); /* already subscribed: not over the limit */
    LH_CHECK_INT(f.conns[0]->nsubs, 3);
    LH_CHECK(table_find(f.w, "d") == NULL);
    LH_CHECK_INT(unsub(f.conns[0], "b"), 0);
    LH_CHECK_INT(sub(f.conns[0], "d"), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "x%d", i);
        LH_CHECK_INT(sub(f.conns[0], name), -ENOSPC);
    }
    LH_CHECK_INT(ps_of(f.w)->nchans, 3);
    LH_CHECK_INT(conn_links_ok(f.conns[0]), 0);
    LH_CHECK_INT(table_links_ok(f.w), 0);
    fixture_stop(&f);
}

LH_TEST(channel_freed_with_its_last_subscriber)
{
    fixture_t f;

    if (fixture_begin(&f, "", 3) < 0)
        return;
    for (size_t i = 0; i < 3; i++)
        LH_CHECK_INT(sub(f.conns[i], "last"), 0);
    LH_CHECK_INT(sub(f.conns[0], "other"), 0);
    LH_CHECK_INT(ps_of(f.w)->nchans, 2);
    LH_CHECK_INT(unsub(f.conns[1], "last"), 0);
    LH_CHECK_INT(table_find(f.w, "last")->nsubs, 2);
    LH_CHECK_INT(unsub(f.conns[0], "last"), 0);
    LH_CHECK_INT(table_find(f.w, "last")->nsubs, 1);
    LH_CHECK(table_find(f.w, "last")->subs[0].c == f.conns[2]);
    LH_CHECK_INT(conn_links_ok(f.conns[2]), 0);
    LH_CHECK_INT(unsub(f.conns[2], "last"), 0);
    LH_CHECK(table_find(f.w, "last") == NULL);
    LH_CHECK_INT(ps_of(f.w)->nchans, 1);
    LH_CHECK_INT(table_count(f.w), 1);
    LH_CHECK_INT(ps_of(f.w)->nsubscriptions, 1);
    /* A channel comes back as new after it was freed. */
    LH_CHECK_INT(sub(f.conns[1], "last"), 0);
    LH_CHECK_INT(table_find(f.w, "last")->nsubs, 1);
    LH_CHECK_INT(table_links_ok(f.w), 0);
    fixture_stop(&f);
}

LH_TEST(conn_gone_drops_every_subscription)
{
    fixture_t f;
    char name[16];

    if (fixture_begin(&f, "", 2) < 0)
        return;
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "g%d", i);
        LH_CHECK_INT(sub(f.conns[0], name), 0);
        if (i % 2 == 0)
            LH_CHECK_INT(sub(f.conns[1], name), 0);
    }
    LH_CHECK_INT(ps_of(f.w)->nchans, 20);
    lh_pubsub_conn_gone(f.conns[0]);
    LH_CHECK_INT(f.conns[0]->nsubs, 0);
    LH_CHECK(f.conns[0]->subs == NULL);
    LH_CHECK_INT(ps_of(f.w)->nchans, 10); /* only the ones conns[1] holds are left */
    LH_CHECK_INT(ps_of(f.w)->nsubscriptions, 10);
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "g%d", i);
        LH_CHECK((table_find(f.w, name) != NULL) == (i % 2 == 0));
    }
    LH_CHECK_INT(conn_links_ok(f.conns[1]), 0);
    LH_CHECK_INT(table_links_ok(f.w), 0);
    /* The connection may subscribe again afterwards. */
    LH_CHECK_INT(sub(f.conns[0], "g1"), 0);
    LH_CHECK_INT(conn_links_ok(f.conns[0]), 0);
    /* lh_conn_destroy drops them too, and leaves the other connection's alone. */
    lh_conn_destroy(f.conns[1]);
    LH_CHECK_INT(ps_of(f.w)->nchans, 1);
    LH_CHECK(table_find(f.w, "g1") != NULL);
    LH_CHECK_INT(table_links_ok(f.w), 0);
    lh_worker_reap(f.w);
    f.conns[1] = NULL;
    fixture_stop(&f);
}

/* xorshift64*: reproducible from the seed printed on failure. */
static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 33) % n;
}

#define MODEL_CONNS 24
#define MODEL_CHANS 40
#define MODEL_MAX 12
#define MODEL_OPS 20000

/* Checks the whole table against the model; returns the number of differences. */
static int model_check(fixture_t *f, uint8_t model[MODEL_CONNS][MODEL_CHANS])
{
    char name[16];
    size_t chans = 0, total = 0;
    int bad = 0;

    for (int k = 0; k < MODEL_CHANS; k++) {
        uint32_t n = 0;
        lh_chan_t *ch;

        snprintf(name, sizeof(name), "m.%d", k);
        for (int i = 0; i < MODEL_CONNS; i++) {
            n += model[i][k];
            if (conn_has(f->conns[i], name) != model[i][k])
                bad++;
        }
        ch = table_find(f->w, name);
        if (n == 0 && ch != NULL)
            bad++; /* should have been freed */
        if (n > 0 && (ch == NULL || ch->nsubs != n))
            bad++;
        chans += n > 0;
        total += n;
    }
    for (int i = 0; i < MODEL_CONNS; i++)
        bad += conn_links_ok(f->conns[i]);
    bad += table_links_ok(f->w);
    if (ps_of(f->w)->nchans != chans || table_count(f->w) != chans)
        bad++;
    if (ps_of(f->w)->nsubscriptions != total)
        bad++;
    return bad;
}

LH_TEST(random_operations_match_a_model)
{
    static uint8_t model[MODEL_CONNS][MODEL_CHANS];
    int nsubs[MODEL_CONNS] = {0};
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    const char *env = getenv("LH_TEST_SEED");
    char limits[64], name[16];
    fixture_t f;
    int op = 0, bad = 0;

    if (env != NULL)
        seed = strtoull(env, NULL, 0);
    rng_state = seed | 1;
    memset(model, 0, sizeof(model));
    snprintf(limits, sizeof(limits), "\"max_subscriptions\": %d", MODEL_MAX);
    if (fixture_start(&f, limits) < 0 || fixture_add(&f, MODEL_CONNS) < 0) {
        LH_CHECK(0);
        fixture_stop(&f);
        return;
    }
    for (op = 0; op < MODEL_OPS && bad == 0; op++) {
        uint32_t what = rnd(100), i = rnd(MODEL_CONNS), k = rnd(MODEL_CHANS);
        lh_conn_t *c = f.conns[i];
        int r, want;

        snprintf(name, sizeof(name), "m.%u", k);
        if (what < 55) {
            want = model[i][k] ? 0 : nsubs[i] >= MODEL_MAX ? -ENOSPC : 0;
            r = sub(c, name);
            if (r == 0 && !model[i][k]) {
                model[i][k] = 1;
                nsubs[i]++;
            }
        } else if (what < 97) {
            want = 0;
            r = unsub(c, name);
            if (model[i][k]) {
                model[i][k] = 0;
                nsubs[i]--;
            }
        } else {
            want = 0;
            r = 0;
            lh_pubsub_conn_gone(c);
            memset(model[i], 0, sizeof(model[i]));
            nsubs[i] = 0;
        }
        if (r != want) {
            printf("# op %d (%u on conn %u, %s): returned %d, expected %d\n", op, what, i,
                   name, r, want);
            bad++;
        }
        bad += model_check(&f, model);
    }
    if (bad)
        printf("# the table and the model differ after op %d; rerun with LH_TEST_SEED=%llu\n",
               op - 1, (unsigned long long)seed);
    LH_CHECK_INT(bad, 0);
    LH_CHECK_INT(op, MODEL_OPS);
    /* Everyone leaves: the table ends empty. */
    for (int i = 0; i < MODEL_CONNS; i++)
        lh_pubsub_conn_gone(f.conns[i]);
    LH_CHECK_INT(ps_of(f.w)->nchans, 0);
    LH_CHECK_INT(ps_of(f.w)->nsubscriptions, 0);
    LH_CHECK_INT(table_count(f.w), 0);
    fixture_stop(&f);
}

/* The queued buffer at position i of c's send queue. */
static lh_buf_t *queued(const lh_conn_t *c, uint32_t i)
{
    return c->out.items[(c->out.head + i) & (c->out.cap - 1)];
}

#define FAN 1000

LH_TEST(fan_out_shares_one_frame)
{
    static const char msg[] = "LHTTP/1.0 chat\r\npublish:fan\r\n\r\nhello, everyone";
    size_t ml = sizeof(msg) - 1;
    uint8_t hdr[LH_WS_MAX_HEADER];
    size_t hl = lh_ws_build_header(hdr, 1, LH_WS_OP_TEXT, ml, NULL);
    uint64_t frames, deliveries, allocated, live;
    lh_buf_t *b;
    fixture_t f;
    long r;
    int same = 0;

    if (fixture_start(&f, "") < 0 || fixture_add(&f, FAN) < 0) {
        LH_CHECK(0);
        fixture_stop(&f);
        return;
    }
    for (size_t i = 0; i < FAN; i++)
        LH_CHECK_INT(sub(f.conns[i], "fan"), 0);
    LH_CHECK_INT(table_find(f.w, "fan")->nsubs, FAN);
    for (size_t i = 0; i < FAN; i++)
        LH_CHECK_INT(f.conns[i]->out.count, 0);
    frames = lh_m_get(LH_M_FRAMES_BUILT);
    deliveries = lh_m_get(LH_M_DELIVERIES);
    allocated = lh_buf_allocated;
    live = lh_buf_live;

    r = lh_publish("fan", 3, msg, ml);

    /* NATS is away but its outage buffer has room: no -EAGAIN. */
    LH_CHECK_INT(r, FAN);
    LH_CHECK_INT(lh_m_get(LH_M_FRAMES_BUILT) - frames, 1);
    LH_CHECK_INT(lh_m_get(LH_M_DELIVERIES) - deliveries, FAN);
    LH_CHECK_INT(lh_buf_allocated - allocated, 1);
    LH_CHECK_INT(lh_buf_live - live, 1);
    b = f.conns[0]->out.count == 1 ? queued(f.conns[0], 0) : NULL;
    LH_CHECK(b != NULL);
    if (b == NULL) {
        fixture_stop(&f);
        return;
    }
    for (size_t i = 0; i < FAN; i++)
        same += f.conns[i]->out.count == 1 && queued(f.conns[i], 0) == b;
    LH_CHECK_INT(same, FAN);
    LH_CHECK_INT(b->refs, FAN); /* one per queue; lh_publish dropped its own */
    LH_CHECK_INT(b->len, hl + ml);
    LH_CHECK(memcmp(b->data, hdr, hl) == 0);
    LH_CHECK(memcmp(b->data + hl, msg, ml) == 0);
    LH_CHECK_INT(f.conns[FAN - 1]->out.bytes, hl + ml);

    /* A second message: one more frame, still shared. */
    r = lh_publish("fan", 3, "x", 1);
    LH_CHECK_INT(r, FAN);
    LH_CHECK_INT(lh_m_get(LH_M_FRAMES_BUILT) - frames, 2);
    LH_CHECK_INT(lh_buf_allocated - allocated, 2);
    same = 0;
    for (size_t i = 0; i < FAN; i++)
        same += f.conns[i]->out.count == 2 && queued(f.conns[i], 1) == queued(f.conns[0], 1);
    LH_CHECK_INT(same, FAN);
    LH_CHECK(queued(f.conns[0], 1) != b);

    /* A channel nobody holds: no frame, no delivery. */
    LH_CHECK_INT(lh_publish("empty", 5, "x", 1), 0);
    LH_CHECK_INT(lh_m_get(LH_M_FRAMES_BUILT) - frames, 2);
    LH_CHECK_INT(lh_buf_allocated - allocated, 2);
    fixture_stop(&f);
    LH_CHECK_INT(lh_buf_live, live);
}

LH_TEST(one_frame_per_message_across_channels)
{
    fixture_t f;
    uint64_t frames;
    lh_buf_t *frame = NULL;
    size_t n;

    if (fixture_begin(&f, "", 3) < 0)
        return;
    LH_CHECK_INT(sub(f.conns[0], "a"), 0);
    LH_CHECK_INT(sub(f.conns[1], "b"), 0);
    LH_CHECK_INT(sub(f.conns[2], "a"), 0);
    LH_CHECK_INT(sub(f.conns[2], "b"), 0);
    frames = lh_m_get(LH_M_FRAMES_BUILT);
    /* What the filter does for "publish: a b": one frame handed along both channels. */
    n = lh_pubsub_deliver_local(f.w, "a", 1, &frame, "m", 1);
    n += lh_pubsub_deliver_local(f.w, "b", 1, &frame, "m", 1);
    LH_CHECK_INT(n, 4);
    LH_CHECK_INT(lh_m_get(LH_M_FRAMES_BUILT) - frames, 1);
    LH_CHECK(frame != NULL);
    if (frame != NULL)
        LH_CHECK_INT(frame->refs, 5); /* ours + four queues */
    /* Subscribed to both: the message twice, the same buffer. */
    LH_CHECK_INT(f.conns[2]->out.count, 2);
    LH_CHECK(queued(f.conns[2], 0) == frame && queued(f.conns[2], 1) == frame);
    lh_buf_unref(frame);
    fixture_stop(&f);
}

LH_TEST(a_full_queue_costs_only_its_owner)
{
    fixture_t f;
    uint64_t deliveries;
    char big[600];
    long r;

    /* 1000 bytes of queue, judged behind the frame being written: a head of 592 bytes
     * and two more behind it are 1184 bytes waiting, over the limit. */
    if (fixture_begin(&f, "\"send_queue_bytes\": 1000", 3) < 0)
        return;
    memset(big, 'z', sizeof(big));
    for (size_t i = 0; i < 3; i++)
        LH_CHECK_INT(sub(f.conns[i], "q"), 0);
    /* conns[1] has three frames waiting already and its socket is full (it does not
     * read): the server's attempt to write before giving up gets EAGAIN. */
    fill_socket(f.conns[1]->fd);
    for (int k = 0; k < 3; k++)
        LH_CHECK_INT(lh_conn_queue_frame(f.conns[1], LH_WS_OP_TEXT, big, sizeof(big) - 10), 0);
    deliveries = lh_m_get(LH_M_DELIVERIES);
    r = lh_publish("q", 1, big, sizeof(big) - 10);
    LH_CHECK_INT(r, 2);
    LH_CHECK_INT(lh_m_get(LH_M_DELIVERIES) - deliveries, 2);
    LH_CHECK_INT(f.conns[0]->out.count, 1);
    LH_CHECK_INT(f.conns[2]->out.count, 1);
    /* The slow one is closing with 4008: its close frame is what is queued now. */
    LH_CHECK(f.conns[1]->flags & LH_CF_CLOSE_SENT);
    LH_CHECK_INT(f.conns[1]->close_code, LH_WS_CLOSE_SLOW_CONSUMER);
    LH_CHECK(f.conns[1]->out.count >= 1 &&
             (queued(f.conns[1], f.conns[1]->out.count - 1)->flags & LH_BUF_CLOSE_FRAME));
    /* It gets nothing more, the others do. */
    r = lh_publish("q", 1, "small", 5);
    LH_CHECK_INT(r, 2);
    LH_CHECK_INT(f.conns[0]->out.count, 2);
    LH_CHECK_INT(f.conns[2]->out.count, 2);
    LH_CHECK_INT(table_links_ok(f.w), 0);
    fixture_stop(&f);
}

/* "Already subscribed?" and unsubscribe go through an index, not a scan of the
 * connection's subscriptions: 65,536 of them (the most limits.max_subscriptions allows),
 * subscribed twice over and unsubscribed in a scattered order, keep every link and the
 * index exact (a scan made this about 2e9 comparisons). */
LH_TEST(many_subscriptions_of_one_connection)
{
    enum { N = 65536 };
    fixture_t f;
    char name[16];
    int bad = 0;

    if (fixture_begin(&f, "\"max_subscriptions\": 65536", 2) < 0)
        return;
    for (uint32_t i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "c%u", i);
        bad += sub(f.conns[0], name) != 0;
        if (i % 3 == 0)
            bad += sub(f.conns[1], name) != 0;
        if (i == 15 || i == 16 || i == 1000)
            bad += index_ok(f.conns[0]);
    }
    LH_CHECK_INT(bad, 0);
    LH_CHECK_INT(f.conns[0]->nsubs, N);
    LH_CHECK_INT(index_ok(f.conns[0]), 0);
    LH_CHECK_INT(index_ok(f.conns[1]), 0);
    /* Again: every one is found, nothing is added. */
    for (uint32_t i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "c%u", i);
        bad += sub(f.conns[0], name) != 0;
    }
    LH_CHECK_INT(bad, 0);
    LH_CHECK_INT(f.conns[0]->nsubs, N);
    LH_CHECK_INT(sub(f.conns[0], "one-more"), -ENOSPC);
    /* Unsubscribe 3/4 of them in a scattered order (a stride prime to N). */
    for (uint32_t k = 0; k < N / 4 * 3; k++) {
        snprintf(name, sizeof(name), "c%u", (k * 40503u) % N);
        bad += unsub(f.conns[0], name) != 0;
        if (k % 4096 == 0)
            bad += index_ok(f.conns[0]);
    }
    LH_CHECK_INT(bad, 0);
    LH_CHECK_INT(f.conns[0]->nsubs, N / 4);
    LH_CHECK_INT(index_ok(f.conns[0]), 0);
    LH_CHECK_INT(table_links_ok(f.w), 0);
    /* The ones left are still found (a resubscribe adds nothing), the others not. */
    for (uint32_t k = N / 4 * 3; k < N; k++) {
        snprintf(name, sizeof(name), "c%u", (k * 40503u) % N);
        bad += sub(f.conns[0], name) != 0;
    }
    LH_CHECK_INT(f.conns[0]->nsubs, N / 4);
    LH_CHECK_INT(sub(f.conns[0], "c0"), 0);
    LH_CHECK_INT(f.conns[0]->nsubs, N / 4 + 1);
    LH_CHECK(conn_has(f.conns[0], "c0"));
    LH_CHECK_INT(index_ok(f.conns[0]), 0);
    /* Down to a few: the index goes, lookups scan again. */
    for (uint32_t i = 0; i <= 18; i += 3) {
        snprintf(name, sizeof(name), "c%u", i);
        bad += sub(f.conns[0], name) != 0;
    }
    for (uint32_t i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "c%u", i);
        if (i % 3 != 0 || i > 18)
            bad += unsub(f.conns[0], name) != 0;
    }
    LH_CHECK_INT(bad, 0);
    LH_CHECK_INT(f.conns[0]->nsubs, 7);
    LH_CHECK(f.conns[0]->subs_ix == NULL);
    LH_CHECK(conn_has(f.conns[0], "c18") && !conn_has(f.conns[0], "c21"));
    LH_CHECK_INT(sub(f.conns[0], "c21"), 0);
    LH_CHECK_INT(sub(f.conns[0], "c18"), 0);
    LH_CHECK_INT(f.conns[0]->nsubs, 8);
    LH_CHECK_INT(table_links_ok(f.w), 0);
    fixture_stop(&f);
}

LH_TEST(closing_connection_cannot_subscribe)
{
    fixture_t f;

    if (fixture_begin(&f, "", 1) < 0)
        return;
    lh_conn_close_ws(f.conns[0], 1000, "bye");
    LH_CHECK_INT(sub(f.conns[0], "late"), -EPIPE);
    LH_CHECK(table_find(f.w, "late") == NULL);
    fixture_stop(&f);
}

/*
 * The node's interest filter: what one worker's channels make another worker see,
 * through the shared block; a worker never sees its own; a saturated counter stays;
 * a released slot is not read, and its counters are cleared before it is used again.
 * Slot 0 is this test's worker (main), slot 1 plays a sibling.
 */
LH_TEST(interest_filter_between_workers)
{
    uint64_t a = lh_metrics_chan_hash("room.a", 6), b = lh_metrics_chan_hash("room.b", 6);
    uint64_t sat = lh_metrics_chan_hash("saturated", 9);
    int other = lh_metrics_slot_alloc(1, (int)getpid(), 1);
    fixture_t f;
    int dirty = 0;

    LH_CHECK_INT(other, 1);
    if (other != 1)
        return;
    /* A subscription in this worker (slot 0) is seen by the sibling, not by itself. */
    if (fixture_begin(&f, "", 2) < 0)
        return;
    LH_CHECK_INT(sub(f.conns[0], "room.a"), 0);
    LH_CHECK_INT(sub(f.conns[1], "room.a"), 0); /* same channel: counted once */
    LH_CHECK_INT(lh_interest_elsewhere(a), 0);
    lh_metrics_use_slot(other);
    LH_CHECK_INT(lh_interest_elsewhere(a), 1);
    LH_CHECK_INT(lh_interest_elsewhere(b), 0);
    lh_metrics_use_slot(0);
    LH_CHECK_INT(lh_unsubscribe(f.conns[0], "room.a", 6), 0);
    lh_metrics_use_slot(other);
    LH_CHECK_INT(lh_interest_elsewhere(a), 1); /* conns[1] still has it */
    lh_metrics_use_slot(0);
    fixture_stop(&f); /* the last subscriber leaves: the channel goes */
    lh_metrics_use_slot(other);
    LH_CHECK_INT(lh_interest_elsewhere(a), 0);

    /* The sibling's channels, seen from slot 0. */
    lh_interest_add(b);
    for (int i = 0; i < 300; i++)
        lh_interest_add(sat);
    for (int i = 0; i < 300; i++)
        lh_interest_remove(sat);
    lh_metrics_use_slot(0);
    LH_CHECK_INT(lh_interest_elsewhere(b), 1);
    LH_CHECK_INT(lh_interest_elsewhere(sat), 1); /* saturated: "maybe" for good */
    LH_CHECK_INT(lh_interest_elsewhere(a), 0);

    /* The sibling dies with its channels: its slot is no longer read... */
    lh_metrics_slot_release(other);
    LH_CHECK_INT(lh_interest_elsewhere(b), 0);
    LH_CHECK_INT(lh_interest_elsewhere(sat), 0);
    /* ...and is clean when the next worker gets it. */
    LH_CHECK_INT(lh_metrics_slot_alloc(1, (int)getpid(), 2), other);
    for (size_t i = 0; i < LH_INTEREST_BUCKETS; i++)
        dirty |= lh_shm->interest[other][i] != 0;
    LH_CHECK_INT(dirty, 0);
    LH_CHECK_INT(lh_interest_elsewhere(b), 0);
    lh_metrics_slot_release(other);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lh_log_level = LH_LOG_ERR; /* quiet: NATS is unreachable on purpose */
    if (lh_metrics_init(128) < 0) {
        printf("# lh_metrics_init failed\n");
        return 1;
    }
    /* Slot 0, as the master gives it to a worker (in use for the interest filter). */
    if (lh_metrics_slot_alloc(0, (int)getpid(), 1) != 0) {
        printf("# lh_metrics_slot_alloc did not give slot 0\n");
        return 1;
    }
    lh_metrics_use_slot(0);
    LH_RUN(one_channel_in_the_table);
    LH_RUN(subscribe_is_idempotent);
    LH_RUN(unsubscribe_of_a_channel_not_subscribed);
    LH_RUN(invalid_names_and_the_subscription_limit);
    LH_RUN(channel_freed_with_its_last_subscriber);
    LH_RUN(conn_gone_drops_every_subscription);
    LH_RUN(random_operations_match_a_model);
    LH_RUN(fan_out_shares_one_frame);
    LH_RUN(one_frame_per_message_across_channels);
    LH_RUN(a_full_queue_costs_only_its_owner);
    LH_RUN(many_subscriptions_of_one_connection);
    LH_RUN(closing_connection_cannot_subscribe);
    LH_RUN(interest_filter_between_workers);
    nats_CloseAndWait(2000); /* cnats's threads and globals, for the leak checker */
    LH_DONE();
}
