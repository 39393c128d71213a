/*
 * Channels: the worker's subscription table, local fan-out of one shared frame per
 * message, the built-in subscribe/unsubscribe/publish header filter, and what the pub/sub
 * API (api.c) and POST /publish (publish.c) call.
 *
 * Fan-out: a message for a channel is framed once (lh_buf_t) and the same buffer is
 * queued, by reference, on every subscriber: 1000 subscribers cost 1000 pointer pushes
 * and one copy (LH_M_FRAMES_BUILT counts the copies, LH_M_DELIVERIES the pushes).
 */
#include "worker.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lh_channel.h"
#include "lh_log.h"
#include "lh_utf8.h"
#include "lh_ws.h"
#include "lh_handoff.h"
#include "pubsub.h"

/* A seeded 64-bit hash (multiply-xorshift over 8-byte words). */
static uint64_t chan_hash(uint64_t seed, const char *s, size_t n)
{
    uint64_t h = seed ^ (n * 0x9E3779B97F4A7C15ull);

    while (n >= 8) {
        uint64_t k;

        memcpy(&k, s, 8);
        h ^= k * 0xff51afd7ed558ccdull;
        h = ((h << 31) | (h >> 33)) * 0xc4ceb9fe1a85ec53ull;
        s += 8;
        n -= 8;
    }
    if (n > 0) {
        uint64_t k = 0;

        memcpy(&k, s, n);
        h ^= k * 0xff51afd7ed558ccdull;
        h = ((h << 31) | (h >> 33)) * 0xc4ceb9fe1a85ec53ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* NATS hands a channel's message up: a history channel's goes through its chain. */
static size_t deliver_from_nats(lh_worker_t *w, const char *ch, size_t chlen, lh_buf_t **frame,
                                const void *msg, size_t len)
{
    if (w->hist != NULL && lh_hist_is(w, ch, chlen)) {
        lh_hist_from_nats(w, ch, chlen, msg, len);
        return 0;
    }
    return lh_pubsub_deliver_local(w, ch, chlen, frame, msg, len);
}

static void api_from_nats(lh_worker_t *w, const char *json, size_t len)
{
    if (lh_pubsub_api_apply(w, json, len) < 0)
        lh_log(LH_LOG_WARNING, "NATS: a server API action that is not valid JSON; ignored");
}

int lh_pubsub_init(lh_worker_t *w)
{
    static const lh_nats_up_t up = {deliver_from_nats, lh_pubsub_nats_renewed,
                                    lh_pubsub_nats_resubscribe, api_from_nats,
                                    lh_presence_query_heard, lh_presence_peer_gone};
    struct lh_pubsub_s *ps = calloc(1, sizeof(*ps));

    if (ps == NULL)
        return -ENOMEM;
    ps->nbuckets = 64;
    ps->buckets = calloc(ps->nbuckets, sizeof(*ps->buckets));
    if (ps->buckets == NULL) {
        free(ps);
        return -ENOMEM;
    }
    if (getrandom(&ps->seed, sizeof(ps->seed), 0) != sizeof(ps->seed))
        ps->seed = (uint64_t)lh_now_ms() * 0x9E3779B97F4A7C15ull;
    w->ps = ps;
    w->nats_up = &up;
    return 0;
}

static void ho_buf_clear(lh_chan_t *ch);

void lh_pubsub_free(lh_worker_t *w)
{
    struct lh_pubsub_s *ps = w->ps;

    if (ps == NULL)
        return;
    for (size_t i = 0; i < ps->nbuckets; i++) {
        lh_chan_t *ch = ps->buckets[i], *next;

        for (; ch != NULL; ch = next) {
            next = ch->next;
            lh_nats_unsubscribe(w, ch->nsub);
            ho_buf_clear(ch);
            free(ch->ho_log);
            free(ch->subs);
            free(ch);
        }
    }
    free(ps->buckets);
    free(ps->tracked);
    free(ps);
    w->ps = NULL;
}

static lh_chan_t *chan_find(struct lh_pubsub_s *ps, const char *name, size_t len, uint64_t h)
{
    lh_chan_t *ch = ps->buckets[h & (ps->nbuckets - 1)];

    for (; ch != NULL; ch = ch->next)
        if (ch->hash == h && ch->len == len && memcmp(ch->name, name, len) == 0)
            return ch;
    return NULL;
}

static void chan_grow(struct lh_pubsub_s *ps)
{
    size_t nb = ps->nbuckets * 2;
    lh_chan_t **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return; /* stay at the current size: slower, still correct */
    for (size_t i = 0; i < ps->nbuckets; i++) {
        lh_chan_t *ch = ps->buckets[i], *next;

        for (; ch != NULL; ch = next) {
            next = ch->next;
            ch->next = b[ch->hash & (nb - 1)];
            b[ch->hash & (nb - 1)] = ch;
        }
    }
    free(ps->buckets);
    ps->buckets = b;
    ps->nbuckets = nb;
}

/* No subscriber and no handoff peer waiting for it: the entry can go. */
static int chan_idle(const lh_chan_t *ch)
{
    return ch->nsubs == 0 && ch->ho_reserved == 0;
}

static void ho_buf_clear(lh_chan_t *ch)
{
    for (uint32_t i = 0; i < ch->ho_nbuf; i++)
        lh_buf_unref(ch->ho_buf[i].frame);
    free(ch->ho_buf);
    ch->ho_buf = NULL;
    ch->ho_nbuf = ch->ho_bufcap = 0;
}

static void chan_remove(lh_worker_t *w, lh_chan_t *ch)
{
    struct lh_pubsub_s *ps = w->ps;
    lh_chan_t **pp = &ps->buckets[ch->hash & (ps->nbuckets - 1)];

    while (*pp != ch)
        pp = &(*pp)->next;
    *pp = ch->next;
    ps->nchans--;
    lh_m_sub(LH_G_CHANNELS, 1);
    lh_interest_remove(ch->node_hash);
    if (ch->track >= 0) {
        int moved = lh_metrics_chan_remove(ch->track);

        if (moved >= 0) {
            ps->tracked[ch->track] = ps->tracked[moved];
            ps->tracked[ch->track]->track = ch->track;
        }
    } else if (lh_shm != NULL) {
        lh_m_sub(LH_G_CHANNELS_UNTRACKED, 1);
    }
    lh_nats_unsubscribe(w, ch->nsub);
    if (w->hist != NULL)
        lh_hist_chan_idle(w, ch->name, ch->len);
    ho_buf_clear(ch);
    free(ch->ho_log);
    free(ch->subs);
    free(ch);
}

/* ---- A connection's subscriptions by channel --------------------------------------- */

/* Below this many subscriptions a scan of c->subs is as fast as an index and costs no
 * memory; from it on, c->subs_ix indexes them. */
#define SUBS_INDEX_MIN 16
#define SUBS_NONE UINT32_MAX

static uint32_t ix_home(const lh_conn_t *c, const lh_chan_t *ch)
{
    uint64_t x = (uint64_t)(uintptr_t)ch;

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (uint32_t)x & (c->subs_ix_cap - 1);
}

/* The slot of c->subs_ix holding ch, or SUBS_NONE. */
static uint32_t ix_slot(const lh_conn_t *c, const lh_chan_t *ch)
{
    uint32_t mask = c->subs_ix_cap - 1;

    for (uint32_t s = ix_home(c, ch);; s = (s + 1) & mask) {
        uint32_t v = c->subs_ix[s];

        if (v == 0)
            return SUBS_NONE;
        if (c->subs[v - 1].ch == ch)
            return s;
    }
}

static void ix_put(lh_conn_t *c, uint32_t i)
{
    uint32_t mask = c->subs_ix_cap - 1, s = ix_home(c, c->subs[i].ch);

    while (c->subs_ix[s] != 0)
        s = (s + 1) & mask;
    c->subs_ix[s] = i + 1;
}

/* Rebuilds the index for capacity cap (a power of two over twice nsubs), or drops it
 * when that fails: lookups then scan, which is slower but never wrong. */
static void ix_rebuild(lh_conn_t *c, uint32_t cap)
{
    uint32_t *ix = calloc(cap, sizeof(*ix));

    free(c->subs_ix);
    c->subs_ix = ix;
    c->subs_ix_cap = ix ? cap : 0;
    if (ix == NULL)
        return;
    for (uint32_t i = 0; i < c->nsubs; i++)
        ix_put(c, i);
}

/* Index of ch in c->subs, or SUBS_NONE: O(1) with the index, a short scan without. */
static uint32_t csub_find(const lh_conn_t *c, const lh_chan_t *ch)
{
    if (c->subs_ix != NULL) {
        uint32_t s = ix_slot(c, ch);

        return s == SUBS_NONE ? SUBS_NONE : c->subs_ix[s] - 1;
    }
    for (uint32_t i = 0; i < c->nsubs; i++)
        if (c->subs[i].ch == ch)
            return i;
    return SUBS_NONE;
}

/* c->subs[c->nsubs - 1] was just added. */
static void ix_added(lh_conn_t *c)
{
    if (c->nsubs < SUBS_INDEX_MIN)
        return;
    if (c->subs_ix == NULL || c->nsubs * 2 > c->subs_ix_cap) {
        uint32_t cap = 64;

        while (cap < c->nsubs * 2)
            cap *= 2;
        ix_rebuild(c, cap);
        return;
    }
    ix_put(c, c->nsubs - 1);
}

/* Removes c->subs[i] from the index (linear probing: the entries after it in its run
 * that may move back are moved back, so no tombstones are needed). */
static void ix_remove(lh_conn_t *c, uint32_t i)
{
    uint32_t mask, s, j;

    if (c->subs_ix == NULL)
        return;
    mask = c->subs_ix_cap - 1;
    s = ix_slot(c, c->subs[i].ch);
    if (s == SUBS_NONE)
        return;
    c->subs_ix[s] = 0;
    for (j = (s + 1) & mask; c->subs_ix[j] != 0; j = (j + 1) & mask) {
        uint32_t k = ix_home(c, c->subs[c->subs_ix[j] - 1].ch);

        /* The entry at j may fill the hole at s when its home is not in (s, j]. */
        if (s <= j ? (k <= s || k > j) : (k <= s && k > j)) {
            c->subs_ix[s] = c->subs_ix[j];
            c->subs_ix[j] = 0;
            s = j;
        }
    }
}

/* c->subs[from] moved to c->subs[to] (to < from): its index entry follows. */
static void ix_moved(lh_conn_t *c, uint32_t from, uint32_t to)
{
    uint32_t s;

    if (c->subs_ix == NULL)
        return;
    s = ix_slot(c, c->subs[to].ch);
    if (s != SUBS_NONE && c->subs_ix[s] == from + 1)
        c->subs_ix[s] = to + 1;
}

/* A new, empty entry for channel name (hash h) in w's table, subscribed in NATS; NULL
 * when out of memory. */
static lh_chan_t *chan_create(lh_worker_t *w, const char *name, size_t len, uint64_t h)
{
    struct lh_pubsub_s *ps = w->ps;
    lh_chan_t *ch = calloc(1, sizeof(*ch) + len + 1);

    if (ch == NULL)
        return NULL;
    memcpy(ch->name, name, len);
    ch->len = len;
    ch->hash = h;
    if (ps->nchans >= ps->nbuckets)
        chan_grow(ps);
    ch->next = ps->buckets[h & (ps->nbuckets - 1)];
    ps->buckets[h & (ps->nbuckets - 1)] = ch;
    ps->nchans++;
    lh_m_inc(LH_G_CHANNELS);
    ch->node_hash = lh_metrics_chan_hash(name, len);
    /* Before the NATS subscription and before the client hears "subscribed": from
     * here on, the node's other workers publish this channel to NATS. */
    lh_interest_add(ch->node_hash);
    ch->track = lh_metrics_chan_add(ch->node_hash);
    if (ch->track >= 0 && (size_t)ch->track >= ps->tracked_cap) {
        size_t cap = ps->tracked_cap ? ps->tracked_cap * 2 : 64;
        lh_chan_t **t = realloc(ps->tracked, cap * sizeof(*t));

        if (t == NULL) {
            lh_metrics_chan_remove(ch->track);
            ch->track = -1;
        } else {
            ps->tracked = t;
            ps->tracked_cap = cap;
        }
    }
    if (ch->track >= 0)
        ps->tracked[ch->track] = ch;
    else if (lh_shm != NULL)
        lh_m_inc(LH_G_CHANNELS_UNTRACKED);
    ch->nsub = lh_nats_subscribe(w, name, len);
    ch->presence = lh_presence_is(w, name, len);
    return ch;
}

int lh_pubsub_subscribe(lh_conn_t *c, const char *name, size_t len)
{
    lh_worker_t *w = c->w;
    struct lh_pubsub_s *ps = w->ps;
    uint64_t h;
    lh_chan_t *ch;

    if (!lh_channel_valid(name, len, w->cfg->limits.max_channel_bytes))
        return -EINVAL;
    if (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT))
        return -EPIPE;
    h = chan_hash(ps->seed, name, len);
    ch = chan_find(ps, name, len, h);
    if (ch != NULL && csub_find(c, ch) != SUBS_NONE)
        return 0; /* already subscribed */
    if (c->nsubs >= w->cfg->limits.max_subscriptions)
        return -ENOSPC;
    if (c->nsubs == c->subs_cap) {
        uint32_t cap = c->subs_cap ? c->subs_cap * 2 : 4;
        lh_csub_t *s = realloc(c->subs, cap * sizeof(*s));

        if (s == NULL)
            return -ENOMEM;
        c->subs = s;
        c->subs_cap = cap;
    }
    if (ch == NULL && (ch = chan_create(w, name, len, h)) == NULL)
        return -ENOMEM;
    if (ch->nsubs == ch->cap) {
        uint32_t cap = ch->cap ? ch->cap * 2 : 4;
        lh_chsub_t *s = realloc(ch->subs, cap * sizeof(*s));

        if (s == NULL) {
            if (chan_idle(ch))
                chan_remove(w, ch);
            return -ENOMEM;
        }
        ch->subs = s;
        ch->cap = cap;
    }
    ch->subs[ch->nsubs].c = c;
    ch->subs[ch->nsubs].idx = c->nsubs;
    ch->subs[ch->nsubs].held = 0;
    ch->subs[ch->nsubs].nskip = 0;
    ch->subs[ch->nsubs].skip = NULL;
    c->subs[c->nsubs].ch = ch;
    c->subs[c->nsubs].pos = ch->nsubs;
    ch->nsubs++;
    c->nsubs++;
    ix_added(c);
    ps->nsubscriptions++;
    lh_m_inc(LH_G_SUBSCRIPTIONS);
    if (ch->presence) {
        lh_m_inc(LH_G_PRESENCE_ENTRIES);
        lh_presence_joined(c, name, len);
    }
    return 0;
}

/* Removes c's i-th subscription; O(1) by swapping with the last on both sides. */
static void unsubscribe_at(lh_conn_t *c, uint32_t i)
{
    lh_chan_t *ch = c->subs[i].ch;
    uint32_t pos = c->subs[i].pos;

    if (ch->subs[pos].skip != NULL) {
        free(ch->subs[pos].skip);
        ch->subs[pos].skip = NULL;
        ch->subs[pos].nskip = 0;
        ch->nskipping--;
    }
    /* Channel side: move the last subscriber into pos. */
    ch->nsubs--;
    if (pos != ch->nsubs) {
        ch->subs[pos] = ch->subs[ch->nsubs];
        ch->subs[pos].c->subs[ch->subs[pos].idx].pos = pos;
    }
    /* Connection side: move the last subscription into i. */
    ix_remove(c, i);
    c->nsubs--;
    if (i != c->nsubs) {
        c->subs[i] = c->subs[c->nsubs];
        c->subs[i].ch->subs[c->subs[i].pos].idx = i;
        ix_moved(c, c->nsubs, i);
    }
    if (c->nsubs < SUBS_INDEX_MIN / 2 && c->subs_ix != NULL) {
        free(c->subs_ix); /* few enough to scan again */
        c->subs_ix = NULL;
        c->subs_ix_cap = 0;
    }
    c->w->ps->nsubscriptions--;
    lh_m_sub(LH_G_SUBSCRIPTIONS, 1);
    if (ch->presence) {
        lh_m_sub(LH_G_PRESENCE_ENTRIES, 1);
        lh_presence_left(c, ch->name, ch->len);
    }
    if (chan_idle(ch) && ch->busy == 0)
        chan_remove(c->w, ch);
}

int lh_pubsub_unsubscribe(lh_conn_t *c, const char *name, size_t len)
{
    struct lh_pubsub_s *ps = c->w->ps;
    lh_chan_t *ch = chan_find(ps, name, len, chan_hash(ps->seed, name, len));
    uint32_t i = ch != NULL ? csub_find(c, ch) : SUBS_NONE;

    if (i != SUBS_NONE)
        unsubscribe_at(c, i);
    return 0;
}

void lh_pubsub_conn_gone(lh_conn_t *c)
{
    while (c->nsubs > 0)
        unsubscribe_at(c, c->nsubs - 1);
    free(c->subs);
    c->subs = NULL;
    c->subs_cap = 0;
    free(c->subs_ix);
    c->subs_ix = NULL;
    c->subs_ix_cap = 0;
}

/*
 * The handoff's view of a delivery on ch: the retiring side logs its digest (the taking
 * side skips it), the taking side keeps the frame for the connections still to come.
 * Both are bounded (handoff.max_buffered): past it the channel is marked, and the
 * connections that take it hear of a gap instead of a silent loss.
 */
static void ho_note(lh_worker_t *w, lh_chan_t *ch, lh_buf_t *frame, const void *msg,
                    size_t len)
{
    uint64_t d = lh_handoff_digest(msg, len);
    size_t max = w->cfg->handoff.max_buffered;

    if (w->ps->ho_logging && ch->ho_prepared) {
        if (ch->ho_nlog == ch->ho_logcap && ch->ho_nlog < max) {
            uint32_t cap = ch->ho_logcap ? ch->ho_logcap * 2 : 16;
            uint64_t *l = realloc(ch->ho_log, cap * sizeof(*l));

            if (l != NULL) {
                ch->ho_log = l;
                ch->ho_logcap = cap;
            }
        }
        if (ch->ho_nlog < ch->ho_logcap && ch->ho_nlog < max)
            ch->ho_log[ch->ho_nlog++] = d;
        else
            ch->ho_overflow = 1;
    }
    if (ch->ho_live > 0) {
        if (ch->ho_nbuf == ch->ho_bufcap && ch->ho_nbuf < max) {
            uint32_t cap = ch->ho_bufcap ? ch->ho_bufcap * 2 : 16;
            lh_ho_ent_t *b = realloc(ch->ho_buf, cap * sizeof(*b));

            if (b != NULL) {
                ch->ho_buf = b;
                ch->ho_bufcap = cap;
            }
        }
        if (ch->ho_nbuf < ch->ho_bufcap && ch->ho_nbuf < max) {
            ch->ho_buf[ch->ho_nbuf].frame = lh_buf_ref(frame);
            ch->ho_buf[ch->ho_nbuf++].digest = d;
        } else {
            ch->ho_overflow = 1;
            lh_m_inc(LH_M_HANDOFF_OVERFLOW);
        }
    }
}

/* Removes entry k of s's skip list. */
static void skip_drop(lh_chan_t *ch, lh_chsub_t *s, uint32_t k)
{
    s->skip[k] = s->skip[--s->nskip];
    if (s->nskip == 0) {
        free(s->skip);
        s->skip = NULL;
        ch->nskipping--;
    }
}

/* The fan-out while some subscribers came by a handoff: a subscriber whose old worker
 * delivered this message already (its digest d is in its skip list) does not get it
 * again. */
static size_t deliver_skipping(lh_chan_t *ch, lh_buf_t *frame, uint64_t d)
{
    size_t n = 0;

    for (uint32_t i = ch->nsubs; i-- > 0;) {
        lh_chsub_t *s;
        uint32_t k;

        if (i >= ch->nsubs)
            continue;
        s = &ch->subs[i];
        for (k = 0; k < s->nskip && s->skip[k] != d; k++)
            ;
        if (k < s->nskip) {
            skip_drop(ch, s, k);
            lh_m_inc(LH_M_HANDOFF_SKIPPED);
            continue;
        }
        if (!s->held && lh_conn_queue(s->c, frame) == 0)
            n++;
    }
    return n;
}

size_t lh_pubsub_deliver_local(lh_worker_t *w, const char *name, size_t len, lh_buf_t **frame,
                               const void *msg, size_t msg_len)
{
    lh_chan_t *ch = chan_find(w->ps, name, len, chan_hash(w->ps->seed, name, len));
    size_t n = 0;

    if (ch == NULL || chan_idle(ch))
        return 0;
    if (*frame == NULL) {
        uint8_t hdr[LH_WS_MAX_HEADER];
        int op = lh_utf8_valid(msg, msg_len) ? LH_WS_OP_TEXT : LH_WS_OP_BINARY;
        size_t hl = lh_ws_build_header(hdr, 1, op, msg_len, NULL);

        *frame = lh_buf_new(hl + msg_len);
        if (*frame == NULL)
            return 0;
        memcpy((*frame)->data, hdr, hl);
        memcpy((*frame)->data + hl, msg, msg_len);
        (*frame)->flags |= LH_BUF_TIMED;
        (*frame)->t_ns = lh_now_ns();
        lh_m_inc(LH_M_FRAMES_BUILT);
    }
    if ((w->ps->ho_logging && ch->ho_prepared) || ch->ho_reserved > 0)
        ho_note(w, ch, *frame, msg, msg_len);
    /* Downwards: a subscriber destroyed here (out of memory) swaps the last, already
     * served, one into its place; busy keeps the channel alive meanwhile. */
    ch->busy++;
    if (ch->nskipping > 0)
        n += deliver_skipping(ch, *frame, lh_handoff_digest(msg, msg_len));
    else
        for (uint32_t i = ch->nsubs; i-- > 0;) {
            if (i < ch->nsubs && !ch->subs[i].held && lh_conn_queue(ch->subs[i].c, *frame) == 0)
                n++;
        }
    if (--ch->busy == 0 && chan_idle(ch))
        chan_remove(w, ch);
    lh_m_add(LH_M_DELIVERIES, n);
    lh_m_add(LH_M_MSGS_OUT, n);
    return n;
}

/*
 * Publishes msg to one channel; *frame is built on first use and shared. The message
 * goes to NATS only when someone else may need it ("the NATS hop only between
 * workers"): another worker of this node with the channel (the interest filter in
 * shared memory), another lhttpd node on the same NATS (lh_nats_needed), or always
 * with nats.publish "always".
 */
static long publish_one(lh_worker_t *w, const char *name, size_t len, const void *msg,
                        size_t msg_len, lh_buf_t **frame)
{
    long n;

    if (w->hist != NULL && lh_hist_is(w, name, len)) {
        /* Stored first; delivered with its offset once JetStream has it. */
        long r = lh_hist_publish(w->hist_origin, w->hist_batch, name, len, msg, msg_len);

        if (r == -EAGAIN || r == -EINVAL)
            w->hist_refused++;
        return r == -ENOMEM ? -ENOMEM : 0;
    }
    n = (long)lh_pubsub_deliver_local(w, name, len, frame, msg, msg_len);

    if (!lh_nats_needed(w) && !lh_interest_elsewhere(lh_metrics_chan_hash(name, len))) {
        lh_m_inc(LH_M_NATS_PUBLISH_SKIPPED);
        return n;
    }
    if (lh_nats_publish(w, name, len, msg, msg_len) < 0)
        return -EAGAIN;
    return n;
}

void lh_pubsub_nats_renewed(lh_worker_t *w, void *old_nc)
{
    struct lh_pubsub_s *ps = w->ps;

    for (size_t i = 0; i < ps->nbuckets; i++) {
        for (lh_chan_t *ch = ps->buckets[i]; ch != NULL; ch = ch->next) {
            lh_nats_unsubscribe(w, ch->nsub);
            ch->nsub = NULL;
        }
    }
}

void lh_pubsub_nats_resubscribe(lh_worker_t *w)
{
    struct lh_pubsub_s *ps = w->ps;

    for (size_t i = 0; i < ps->nbuckets; i++)
        for (lh_chan_t *ch = ps->buckets[i]; ch != NULL; ch = ch->next)
            if (ch->nsub == NULL)
                ch->nsub = lh_nats_subscribe(w, ch->name, ch->len);
}

long lh_pubsub_publish(const char *name, size_t len, const void *msg, size_t msg_len)
{
    lh_worker_t *w = lh_current_worker;
    lh_buf_t *frame = NULL;
    long r;

    if (w == NULL)
        return -EPIPE;
    if (!lh_channel_valid(name, len, w->cfg->limits.max_channel_bytes))
        return -EINVAL;
    r = publish_one(w, name, len, msg, msg_len, &frame);
    lh_buf_unref(frame);
    return r;
}

/* Checks every name of a header's channel list. Returns the count, or -1 at a bad name
 * (bad and badlen set). */
long lh_pubsub_check_list(const lh_config_t *cfg, const char *v, size_t vl,
                          const char **bad, size_t *badlen)
{
    const char *pos = v, *ch;
    size_t cl;
    long n = 0;

    while (lh_channel_next(&pos, v + vl, &ch, &cl)) {
        if (!lh_channel_valid(ch, cl, cfg->limits.max_channel_bytes)) {
            *bad = ch;
            *badlen = cl;
            return -1;
        }
        n++;
    }
    return n;
}

typedef struct {
    uint64_t h;
    const char *p;
    size_t len, idx;
} name_ref_t;

static int name_ref_cmp(const void *a, const void *b)
{
    const name_ref_t *x = a, *y = b;
    int r;

    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    r = memcmp(x->p, y->p, x->len);
    if (r != 0)
        return r;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/*
 * Publishes msg once to each distinct channel of the list v (n valid names, as
 * lh_pubsub_check_list counted them), in the list's order: a channel named twice gets the message
 * once, so a client cannot multiply its message by repeating a name. keep (n bytes, or
 * NULL when the caller does not need it) is set to which names were published: 1 for
 * the first of each. Returns the local deliveries, or -ENOMEM; sets *again when a
 * channel's message could not go to NATS.
 */
long lh_pubsub_publish_list(lh_worker_t *w, const char *v, size_t vl, long n,
                            const void *msg, size_t msg_len, uint8_t *keep, int *again)
{
    name_ref_t names_stack[16], *names = names_stack;
    uint8_t keep_stack[16];
    lh_buf_t *frame = NULL;
    const char *pos = v, *ch;
    size_t cl, k = 0;
    long local = 0;

    if (n > (long)LH_ARRAY_LEN(names_stack)) {
        /* One block: the names, then (when the caller has none) the keep flags. */
        names = malloc((size_t)n * (sizeof(*names) + (keep == NULL)));
        if (names == NULL)
            return -ENOMEM;
        if (keep == NULL)
            keep = (uint8_t *)(names + n);
    } else if (keep == NULL) {
        keep = keep_stack;
    }
    if (n == 1) {
        keep[0] = 1; /* the usual case: nothing to compare */
        k = 1;
    } else {
        while (k < (size_t)n && lh_channel_next(&pos, v + vl, &ch, &cl)) {
            names[k] = (name_ref_t){chan_hash(w->ps->seed, ch, cl), ch, cl, k};
            k++;
        }
        /* Sorted by name then position, the first of each run of equal names is the
         * first in the list. */
        qsort(names, k, sizeof(*names), name_ref_cmp);
        for (size_t i = 0; i < k; i++)
            keep[names[i].idx] = i == 0 || names[i].h != names[i - 1].h ||
                                 names[i].len != names[i - 1].len ||
                                 memcmp(names[i].p, names[i - 1].p, names[i].len) != 0;
    }
    pos = v;
    for (size_t i = 0; i < k && lh_channel_next(&pos, v + vl, &ch, &cl); i++) {
        long r;

        if (!keep[i])
            continue;
        r = publish_one(w, ch, cl, msg, msg_len, &frame);
        if (r == -EAGAIN)
            *again = 1;
        else if (r > 0)
            local += r;
    }
    lh_buf_unref(frame);
    if (names != names_stack)
        free(names);
    return local;
}

static void send_bad_channel(lh_conn_t *c, lh_msg_t *m, const char *name, size_t len)
{
    char reason[400], q[300];

    snprintf(reason, sizeof(reason), "invalid channel name \"%s\"",
             lh_printable(q, sizeof(q), name, len));
    lh_reply_error_to(c, m, 400, reason);
}

/* 1 when ch appears in the channel list v[0..vl). */
static int in_list(const char *v, size_t vl, const char *ch, size_t cl)
{
    const char *pos = v, *x;
    size_t xl;

    while (v != NULL && lh_channel_next(&pos, v + vl, &x, &xl))
        if (xl == cl && memcmp(x, ch, cl) == 0)
            return 1;
    return 0;
}

/* 1 when c is subscribed to ch (before this message's changes). */
static int subscribed_now(lh_conn_t *c, const char *ch, size_t cl)
{
    struct lh_pubsub_s *ps = c->w->ps;
    lh_chan_t *x = chan_find(ps, ch, cl, chan_hash(ps->seed, ch, cl));

    return x != NULL && csub_find(c, x) != SUBS_NONE;
}

/* A growing space-separated channel list (the channels a webhook must decide). */
typedef struct {
    char *p;
    size_t len, cap;
} list_t;

static int list_add(list_t *l, const char *ch, size_t cl)
{
    if (l->len + cl + 1 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char *p;

        while (cap < l->len + cl + 1)
            cap *= 2;
        if ((p = realloc(l->p, cap)) == NULL)
            return -1;
        l->p = p;
        l->cap = cap;
    }
    if (l->len > 0)
        l->p[l->len++] = ' ';
    memcpy(l->p + l->len, ch, cl);
    l->len += cl;
    return 0;
}

/*
 * The namespace rules for one message, before anything of it takes effect: every channel
 * of its subscribe and publish lists (v[1], v[2]) must be allowed, or the whole message is
 * refused with 403 naming the first channel refused. Channels whose namespace leaves it to
 * a webhook are asked in one request per list (the subscribe list first); the message then
 * waits and is dispatched again once approved (w->hook_ok). Returns 0 to go on, or -1
 * when the message was answered or is waiting.
 */
static int check_rules(lh_conn_t *c, lh_msg_t *m, const char *const v[3], const size_t vl[3])
{
    lh_worker_t *w = c->w;
    const lh_auth_t *a = w->auth;
    lh_jwt_claims_t subtok, *st = NULL;
    list_t hook[2] = {{NULL, 0, 0}, {NULL, 0, 0}};
    const char *pos, *ch, *tv;
    size_t cl, tl;
    char why[512];
    int rc = 0;

    memset(&subtok, 0, sizeof(subtok));
    if (v[1] != NULL && (tv = lh_lhttp_header(m->m, "subscribe-token", &tl)) != NULL) {
        int r = lh_auth_verify(a, tv, tl, &subtok);

        if (r != LH_JWT_OK) {
            snprintf(why, sizeof(why), "subscription token refused: %s", lh_auth_reason_text(r));
            lh_reply_error_to(c, m, 401, why);
            return -1;
        }
        if (strcmp(subtok.sub ? subtok.sub : "", lh_auth_user(c)) != 0) {
            lh_auth_count_failure(LH_AUTH_R_OTHER_USER);
            lh_jwt_claims_free(&subtok);
            lh_reply_error_to(c, m, 401, "subscription token refused: it is for another user");
            return -1;
        }
        st = &subtok;
    }
    for (pos = v[1]; rc == 0 && v[1] && lh_channel_next(&pos, v[1] + vl[1], &ch, &cl);) {
        int d = lh_auth_may_subscribe(a, c, ch, cl, st, why, sizeof(why));

        if (d == LH_PERM_DENY) {
            lh_reply_error_to(c, m, 403, why);
            rc = -1;
        } else if (d == LH_PERM_WEBHOOK && !(w->hook_ok & LH_HOOK_SUBSCRIBE) &&
                   list_add(&hook[0], ch, cl) < 0) {
            lh_reply_error_to(c, m, 500, "out of memory");
            rc = -1;
        }
    }
    for (pos = v[2]; rc == 0 && v[2] && lh_channel_next(&pos, v[2] + vl[2], &ch, &cl);) {
        int will = in_list(v[1], vl[1], ch, cl) ||
                   (subscribed_now(c, ch, cl) && !in_list(v[0], vl[0], ch, cl));
        int d = lh_auth_may_publish(a, c, ch, cl, will, why, sizeof(why));

        if (d == LH_PERM_DENY) {
            lh_reply_error_to(c, m, 403, why);
            rc = -1;
        } else if (d == LH_PERM_WEBHOOK && !(w->hook_ok & LH_HOOK_PUBLISH) &&
                   list_add(&hook[1], ch, cl) < 0) {
            lh_reply_error_to(c, m, 500, "out of memory");
            rc = -1;
        }
    }
    lh_jwt_claims_free(&subtok);
    for (int k = 0; rc == 0 && k < 2; k++) {
        int r;

        if (hook[k].len == 0)
            continue;
        r = w->perm_hook ? w->perm_hook(c, m, k == 0 ? LH_HOOK_SUBSCRIBE : LH_HOOK_PUBLISH,
                                        hook[k].p, hook[k].len)
                         : -ENOSYS;
        if (r == -EBUSY)
            lh_reply_error_to(c, m, 503, k == 0 ? "subscribe webhook busy: try again"
                                                : "publish webhook busy: try again");
        else if (r < 0)
            lh_reply_error_to(c, m, 500, "cannot ask the webhook");
        rc = -1; /* waiting for the webhook, or answered */
    }
    free(hook[0].p);
    free(hook[1].p);
    return rc;
}

/*
 * What one message's publish list delivers: the raw message, byte for byte, except that
 * a subscription token never travels, and that channels of stamp_user namespaces get a
 * copy whose "sender" header is the publisher's user id (any "sender" the client wrote is
 * dropped first). Publishes to every channel of the list; returns what
 * lh_pubsub_publish_list does.
 */
static long publish_message(lh_conn_t *c, lh_msg_t *m, const char *v, size_t vl, long n,
                            int *again)
{
    static lh_lhttp_header_t hs[LH_LHTTP_HEADERS_CAP + 1];
    lh_worker_t *w = c->w;
    const lh_lhttp_msg_t *lm = m->m;
    const char *raw = (const char *)m->raw, *pos, *ch, *user;
    size_t rawlen = m->raw_len, cl, nh = 0, need;
    list_t stamped = {NULL, 0, 0}, plain = {NULL, 0, 0};
    char *copy[2] = {NULL, NULL};
    int has_token = lh_lhttp_header(lm, "subscribe-token", &cl) != NULL, any_stamp = 0;
    long r = 0, local = 0;

    if (!lh_auth_open(w->auth)) {
        for (pos = v; lh_channel_next(&pos, v + vl, &ch, &cl);)
            any_stamp |= lh_auth_stamps(w->auth, ch, cl);
    }
    if (!any_stamp && !has_token)
        return lh_pubsub_publish_list(w, v, vl, n, raw, rawlen, NULL, again);
    /* Split the list: stamped channels get one copy, the others (if the token must go)
     * another. */
    for (pos = v; lh_channel_next(&pos, v + vl, &ch, &cl);) {
        if (list_add(any_stamp && lh_auth_stamps(w->auth, ch, cl) ? &stamped : &plain, ch,
                     cl) < 0) {
            r = -ENOMEM;
            goto out;
        }
    }
    user = lh_auth_user(c);
    for (int k = 0; k < 2; k++) {
        list_t *l = k == 0 ? &stamped : &plain;

        if (l->len == 0)
            continue;
        nh = 0;
        for (size_t i = 0; i < lm->num_headers; i++) {
            const lh_lhttp_header_t *h = &lm->headers[i];

            if (lh_strieq(h->key, h->key_len, "subscribe-token") ||
                (k == 0 && lh_strieq(h->key, h->key_len, "sender")))
                continue;
            hs[nh++] = *h;
        }
        if (k == 0)
            hs[nh++] = (lh_lhttp_header_t){"sender", 6, user, strlen(user)};
        need = lh_lhttp_serialize(NULL, 0, lm->command, lm->command_len, hs, nh, lm->body,
                                  lm->body_len);
        if ((copy[k] = malloc(need)) == NULL) {
            r = -ENOMEM;
            goto out;
        }
        lh_lhttp_serialize(copy[k], need, lm->command, lm->command_len, hs, nh, lm->body,
                           lm->body_len);
        r = lh_pubsub_publish_list(w, l->p, l->len,
                                   lh_pubsub_check_list(w->cfg, l->p, l->len, &pos, &cl),
                                   copy[k], need, NULL, again);
        if (r < 0)
            goto out;
        local += r;
    }
    r = local;
out:
    free(stamped.p);
    free(plain.p);
    free(copy[0]);
    free(copy[1]);
    return r;
}

static void attach_history(lh_conn_t *c, lh_msg_t *m, const char *v, size_t vl,
                           const uint8_t *fresh);

/*
 * The built-in header filter: unsubscribe, then subscribe, then publish (the raw
 * message, byte for byte, to each listed channel). Any invalid name rejects the whole
 * message with an error reply before anything is done, and so does a channel that the
 * namespace rules refuse (403).
 */
static int pubsub_before(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    static const char *const keys[3] = {"unsubscribe", "subscribe", "publish"};
    const lh_config_t *cfg = c->w->cfg;
    const char *v[3], *bad = NULL, *pos, *ch;
    size_t vl[3], badlen = 0, cl;
    long n[3];
    int again = 0;

    (void)ud;
    for (int k = 0; k < 3; k++) {
        v[k] = lh_lhttp_header(m->m, keys[k], &vl[k]);
        if (v[k] == NULL)
            continue;
        n[k] = lh_pubsub_check_list(cfg, v[k], vl[k], &bad, &badlen);
        if (n[k] < 0) {
            send_bad_channel(c, m, bad, badlen);
            return LH_FILTER_STOP;
        }
        if (n[k] == 0) {
            char what[64];

            snprintf(what, sizeof(what), "%s header names no channel", keys[k]);
            lh_reply_error_to(c, m, 400, what);
            return LH_FILTER_STOP;
        }
    }
    if ((v[1] || v[2]) && !lh_auth_open(c->w->auth) && check_rules(c, m, v, vl) < 0)
        return LH_FILTER_STOP;
    if (v[0]) {
        for (pos = v[0]; lh_channel_next(&pos, v[0] + vl[0], &ch, &cl);)
            lh_pubsub_unsubscribe(c, ch, cl);
    }
    if (v[1]) {
        uint32_t before = c->nsubs;
        uint8_t fresh_stack[64], *fresh = fresh_stack;
        size_t k = 0;

        if (c->w->hist != NULL && n[1] > (long)sizeof(fresh_stack) &&
            (fresh = malloc((size_t)n[1])) == NULL) {
            lh_reply_error_to(c, m, 500, "subscribe failed: out of memory");
            return LH_FILTER_STOP;
        }
        for (pos = v[1]; lh_channel_next(&pos, v[1] + vl[1], &ch, &cl); k++) {
            int r;

            if (c->w->hist != NULL)
                fresh[k] = !subscribed_now(c, ch, cl);
            r = lh_pubsub_subscribe(c, ch, cl);

            if (r < 0 && r != -EPIPE) {
                char what[160];

                /* All or nothing: the subscriptions this header made so far (the last
                 * ones of c->subs, in order) are undone. */
                while (c->nsubs > before)
                    unsubscribe_at(c, c->nsubs - 1);
                if (r == -ENOSPC) {
                    snprintf(what, sizeof(what),
                             "too many subscriptions (limits.max_subscriptions is %u); "
                             "none of this message's was made",
                             (unsigned)cfg->limits.max_subscriptions);
                    lh_reply_error_to(c, m, 429, what);
                } else {
                    lh_reply_error_to(c, m, 500, "subscribe failed");
                }
                if (fresh != fresh_stack)
                    free(fresh);
                return LH_FILTER_STOP;
            }
        }
        if (c->w->hist != NULL)
            attach_history(c, m, v[1], vl[1], fresh);
        if (fresh != fresh_stack)
            free(fresh);
    }
    if (v[2]) {
        long pr;

        lh_m_inc(LH_M_PUBLISH_WS);
        c->w->hist_origin = c;
        c->w->hist_refused = 0;
        pr = publish_message(c, m, v[2], vl[2], n[2], &again);
        c->w->hist_origin = NULL;
        if (pr == -ENOMEM) {
            lh_reply_error_to(c, m, 500, "publish failed: out of memory");
            return LH_FILTER_STOP;
        }
        if (c->w->hist_refused > 0)
            lh_reply_error_to(c, m, 503, "history unavailable: JetStream is not reachable; "
                                          "not published to the history channels");
        if (again)
            lh_reply_error_to(c, m, 503, "NATS unavailable and its outage buffer is full; "
                                          "not delivered beyond this server");
    }
    return LH_FILTER_CONTINUE;
}

/*
 * The history channels a subscribe list just subscribed (fresh[i] for the i-th name)
 * get their `subscribed` reply, and, when the message's recover header names them
 * ("channel,offset,epoch" entries), what they missed first.
 */
static void attach_history(lh_conn_t *c, lh_msg_t *m, const char *v, size_t vl,
                           const uint8_t *fresh)
{
    const char *rv = lh_lhttp_header(m->m, "recover", NULL), *pos = v, *ch;
    size_t rl = 0, cl, k = 0;

    if (rv != NULL)
        lh_lhttp_header(m->m, "recover", &rl);
    for (; lh_channel_next(&pos, v + vl, &ch, &cl); k++) {
        const char *rp = rv, *e;
        size_t el;
        uint64_t since = 0;
        char epoch[17] = "";
        int recover = 0;

        if (!lh_hist_is(c->w, ch, cl))
            continue;
        if (!fresh[k]) {
            /* Subscribed already: its messages flow; it gets its reply (no recovery: what
             * it would recover it has). */
            if (lh_hist_attach(c, ch, cl, 0, 0, NULL, 0, 0, 0) < 0)
                lh_reply_error_to(c, m, 500, "history: out of memory");
            continue;
        }
        /* The entries are separated like a channel list; each is channel,offset,epoch. */
        while (rv != NULL && lh_channel_next(&rp, rv + rl, &e, &el)) {
            const char *c1 = memchr(e, ',', el), *c2;

            if (c1 == NULL || (size_t)(c1 - e) != cl || memcmp(e, ch, cl) != 0)
                continue;
            c2 = memchr(c1 + 1, ',', (size_t)(e + el - c1 - 1));
            since = strtoull(c1 + 1, NULL, 10);
            if (c2 != NULL && (size_t)(e + el - c2 - 1) < sizeof(epoch)) {
                memcpy(epoch, c2 + 1, (size_t)(e + el - c2 - 1));
                epoch[e + el - c2 - 1] = '\0';
            }
            recover = 1;
            break;
        }
        if (lh_hist_attach(c, ch, cl, recover, since, epoch, 0, 0, 1) < 0)
            lh_reply_error_to(c, m, 500, "history: out of memory");
    }
}

void lh_pubsub_hold(lh_conn_t *c, const char *name, size_t len, int held)
{
    struct lh_pubsub_s *ps = c->w->ps;
    lh_chan_t *ch = chan_find(ps, name, len, chan_hash(ps->seed, name, len));
    uint32_t i = ch != NULL ? csub_find(c, ch) : SUBS_NONE;

    if (i != SUBS_NONE)
        ch->subs[c->subs[i].pos].held = (uint32_t)held;
}

void lh_pubsub_each_chan(lh_worker_t *w, void (*fn)(const lh_chan_t *ch, void *arg), void *arg)
{
    struct lh_pubsub_s *ps = w->ps;

    for (size_t i = 0; ps != NULL && i < ps->nbuckets; i++)
        for (const lh_chan_t *ch = ps->buckets[i]; ch != NULL; ch = ch->next)
            if (ch->nsubs > 0)
                fn(ch, arg);
}

lh_chan_t *lh_pubsub_chan(lh_worker_t *w, const char *name, size_t len)
{
    return chan_find(w->ps, name, len, chan_hash(w->ps->seed, name, len));
}

int lh_pubsub_has_subscribers(lh_worker_t *w, const char *name, size_t len)
{
    lh_chan_t *ch = chan_find(w->ps, name, len, chan_hash(w->ps->seed, name, len));

    return ch != NULL && !chan_idle(ch);
}

int lh_pubsub_subscribed(lh_conn_t *c, const char *name, size_t len)
{
    return subscribed_now(c, name, len);
}

void lh_pubsub_gap(lh_worker_t *w, const char *name, size_t len, uint64_t from, uint64_t to)
{
    lh_chan_t *ch = chan_find(w->ps, name, len, chan_hash(w->ps->seed, name, len));
    char text[LH_CHANNEL_MAX_LEN + 128];
    int n;

    if (ch == NULL)
        return;
    n = snprintf(text, sizeof(text), "LHTTP/1.0 gap\r\nchannel:%.*s\r\nfrom:%llu\r\nto:%llu"
                 "\r\n\r\n", (int)len, name, (unsigned long long)from, (unsigned long long)to);
    ch->busy++;
    for (uint32_t i = ch->nsubs; i-- > 0;)
        if (i < ch->nsubs)
            lh_conn_queue_frame(ch->subs[i].c, LH_WS_OP_TEXT, text, (size_t)n);
    if (--ch->busy == 0 && chan_idle(ch))
        chan_remove(w, ch);
}

/* ---- Subscriptions the server ends ---- */

int lh_pubsub_end(lh_conn_t *c, const char *name, size_t len, const char *reason)
{
    struct lh_pubsub_s *ps = c->w->ps;
    lh_chan_t *ch = chan_find(ps, name, len, chan_hash(ps->seed, name, len));
    uint32_t i = ch != NULL ? csub_find(c, ch) : SUBS_NONE;
    lh_header_t h[2] = {{"channel", 7, NULL, len}, {"reason", 6, reason, strlen(reason)}};
    char chname[LH_CHANNEL_MAX_LEN + 1];

    if (i == SUBS_NONE)
        return 0;
    memcpy(chname, name, len); /* the channel's name goes with it */
    chname[len] = '\0';
    h[0].value = chname;
    unsubscribe_at(c, i);
    lh_reply_send(c, "unsubscribed", h, 2, NULL, 0);
    return 1;
}

long lh_pubsub_api_apply(lh_worker_t *w, const char *json, size_t len)
{
    json_t *doc = json_loadb(json, len, 0, NULL);
    const char *action = json_string_value(json_object_get(doc, "action"));
    json_t *user = json_object_get(doc, "user");
    const char *reason = json_string_value(json_object_get(doc, "reason"));
    const char *chan = json_string_value(json_object_get(doc, "channel"));
    json_int_t code = json_integer_value(json_object_get(doc, "code"));
    int disc = action != NULL && strcmp(action, "disconnect") == 0;
    lh_conn_t *c, *next;
    long n = 0;

    if (action != NULL && strcmp(action, "handoff") == 0) {
        /* A worker taking our connections is subscribed (handoff.c): NATS brought this
         * after every message it will not see itself. */
        const char *tok = json_string_value(json_object_get(doc, "token"));

        if (tok != NULL && w->ho_marker != NULL)
            w->ho_marker(w, strtoull(tok, NULL, 16),
                         json_is_true(json_object_get(doc, "end"))     ? 2
                         : json_is_true(json_object_get(doc, "start")) ? 1
                                                                       : 0,
                         (uint32_t)json_integer_value(json_object_get(doc, "barrier")));
        json_decref(doc);
        return 0;
    }
    if (!json_is_string(user) || json_string_length(user) == 0 || action == NULL ||
        (!disc && (strcmp(action, "unsubscribe") != 0 || chan == NULL ||
                   !lh_channel_valid(chan, strlen(chan), LH_CHANNEL_MAX_LEN)))) {
        json_decref(doc);
        return -EINVAL;
    }
    if (code < 4000 || code > 4999)
        code = LH_WS_CLOSE_API;
    for (c = w->ws_conns.head; c != NULL; c = next) {
        next = c->next; /* a close moves c to the closing list */
        if (strcmp(lh_auth_user(c), json_string_value(user)) != 0 ||
            (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT)))
            continue;
        if (disc) {
            lh_log(LH_LOG_INFO, "%s: conn %llu: user \"%s\" disconnected by the server API",
                   lh_conn_peer_name(c), (unsigned long long)c->id, lh_auth_user(c));
            lh_conn_close_ws(c, (uint16_t)code, reason ? reason : "disconnected by the server");
            n++;
        } else {
            lh_conn_hold(c);
            n += lh_pubsub_end(c, chan, strlen(chan),
                               reason ? reason : "unsubscribed by the server");
            lh_conn_release(c);
        }
    }
    lh_m_add(disc ? LH_M_API_DISCONNECTED : LH_M_API_UNSUBSCRIBED, (uint64_t)n);
    json_decref(doc);
    return n;
}

void lh_pubsub_recheck(lh_worker_t *w, const lh_auth_t *old)
{
    char why[512];

    for (lh_conn_t *c = w->ws_conns.head; c != NULL; c = c->next) {
        lh_conn_hold(c);
        /* Downwards: ending subscription i moves the last one into its place. */
        for (uint32_t i = c->nsubs; i-- > 0 && !(c->flags & LH_CF_DEAD);) {
            lh_chan_t *ch;
            int d;

            if (i >= c->nsubs)
                continue;
            ch = c->subs[i].ch;
            d = lh_auth_judge_subscribe(w->auth, c, ch->name, ch->len, why, sizeof(why));
            /* A webhook's or a subscription token's yes stands while the rule stays. */
            if (d == LH_PERM_ALLOW ||
                (d != LH_PERM_ALLOW && lh_auth_rule_same(old, w->auth, ch->name, ch->len) &&
                 lh_auth_judge_subscribe(old, c, ch->name, ch->len, why, sizeof(why)) !=
                     LH_PERM_ALLOW)) {
                continue;
            }
            if (d != LH_PERM_WEBHOOK) /* the reason of the new rules, not the old */
                lh_auth_judge_subscribe(w->auth, c, ch->name, ch->len, why, sizeof(why));
            if (d == LH_PERM_WEBHOOK)
                snprintf(why, sizeof(why), "the subscribe rule of this channel changed: "
                                           "subscribe again");
            lh_m_inc(LH_M_RULES_UNSUBSCRIBED);
            lh_pubsub_end(c, ch->name, ch->len, why);
        }
        lh_conn_release(c);
    }
}

void lh_pubsub_register(void)
{
    static const lh_filter_t f = {"pubsub", NULL, pubsub_before, NULL, NULL};

    lh_dispatch_register_filter(&f, NULL);
}

/* ---- Connection handoff (handoff.c) ------------------------------------------------- */

int lh_pubsub_reserve(lh_worker_t *w, const char *name, size_t len)
{
    struct lh_pubsub_s *ps = w->ps;
    uint64_t h;
    lh_chan_t *ch;

    if (!lh_channel_valid(name, len, LH_CHANNEL_MAX_LEN))
        return -EINVAL;
    h = chan_hash(ps->seed, name, len);
    ch = chan_find(ps, name, len, h);
    if (ch == NULL && (ch = chan_create(w, name, len, h)) == NULL)
        return -ENOMEM;
    ch->ho_reserved++;
    return 0;
}

void lh_pubsub_keep(lh_worker_t *w, const char *name, size_t len)
{
    lh_chan_t *ch = chan_find(w->ps, name, len, chan_hash(w->ps->seed, name, len));

    if (ch != NULL && ch->ho_live < ch->ho_reserved)
        ch->ho_live++;
}

void lh_pubsub_unreserve(lh_worker_t *w, const char *name, size_t len, int kept)
{
    lh_chan_t *ch = chan_find(w->ps, name, len, chan_hash(w->ps->seed, name, len));

    if (ch == NULL || ch->ho_reserved == 0)
        return;
    if (kept && ch->ho_live > 0)
        ch->ho_live--;
    if (--ch->ho_reserved > 0)
        return;
    ch->ho_live = 0;
    ho_buf_clear(ch);
    ch->ho_overflow = 0;
    if (chan_idle(ch) && ch->busy == 0)
        chan_remove(w, ch);
}

void lh_pubsub_handoff_log(lh_worker_t *w, int on)
{
    struct lh_pubsub_s *ps = w->ps;

    ps->ho_logging = on;
    if (on)
        return;
    for (size_t i = 0; i < ps->nbuckets; i++) {
        for (lh_chan_t *ch = ps->buckets[i]; ch != NULL; ch = ch->next) {
            free(ch->ho_log);
            ch->ho_log = NULL;
            ch->ho_nlog = ch->ho_logcap = 0;
            ch->ho_prepared = 0;
            if (ch->ho_reserved == 0)
                ch->ho_overflow = 0;
        }
    }
}

/*
 * c (adopted, LH_CF_HANDOFF set so that presence sends no join) takes the subscription s
 * from its old worker: subscribed here, then sent what this worker kept for it that the
 * old worker did not deliver (the digests s lists, each matching once), in the order
 * this worker had them; from then on, live deliveries. Returns the messages sent from
 * the buffer, or a negative errno from the subscribe.
 */
long lh_pubsub_adopt_sub(lh_conn_t *c, const lh_ho_sub_t *s, uint64_t token)
{
    lh_worker_t *w = c->w;
    lh_chan_t *ch;
    lh_chsub_t *cs;
    uint64_t *skip = NULL;
    uint32_t nskip = s->nskip;
    long sent = 0;
    int r = lh_pubsub_subscribe(c, s->name, s->len);

    if (r < 0)
        return r;
    ch = chan_find(w->ps, s->name, s->len, chan_hash(w->ps->seed, s->name, s->len));
    if (ch == NULL)
        return 0;
    if (nskip > 0) {
        if ((skip = malloc(nskip * sizeof(*skip))) == NULL)
            return -ENOMEM;
        for (uint32_t k = 0; k < nskip; k++)
            skip[k] = lh_handoff_skip_at(s, k);
    }
    ch->busy++;
    for (uint32_t i = 0; i < ch->ho_nbuf && !(c->flags & LH_CF_DEAD); i++) {
        uint32_t k;

        for (k = 0; k < nskip && skip[k] != ch->ho_buf[i].digest; k++)
            ;
        if (k < nskip) {
            skip[k] = skip[--nskip];
            lh_m_inc(LH_M_HANDOFF_SKIPPED);
            continue;
        }
        if (lh_conn_queue(c, ch->ho_buf[i].frame) == 0) {
            sent++;
            lh_m_inc(LH_M_HANDOFF_REPLAYED);
        }
    }
    /* What is left may still come through NATS here: skipped when it does. */
    cs = NULL;
    if (!(c->flags & LH_CF_DEAD)) {
        uint32_t i = csub_find(c, ch);

        if (i != SUBS_NONE)
            cs = &ch->subs[c->subs[i].pos];
    }
    lh_log(LH_LOG_DEBUG, "handoff: conn %llu adopted on %.*s: %u kept, %u listed, %ld sent, "
           "%u left to skip", (unsigned long long)c->id, (int)s->len, s->name, ch->ho_nbuf,
           s->nskip, sent, nskip);
    if (cs != NULL && nskip > 0) {
        cs->skip = skip;
        cs->nskip = nskip;
        cs->skip_token = token;
        ch->nskipping++;
        skip = NULL;
    }
    free(skip);
    if (--ch->busy == 0 && chan_idle(ch))
        chan_remove(w, ch);
    return sent;
}

void lh_pubsub_clear_skips(lh_worker_t *w, uint64_t token)
{
    struct lh_pubsub_s *ps = w->ps;

    for (size_t i = 0; i < ps->nbuckets; i++) {
        for (lh_chan_t *ch = ps->buckets[i]; ch != NULL; ch = ch->next) {
            for (uint32_t k = 0; k < ch->nsubs && ch->nskipping > 0; k++) {
                lh_chsub_t *s = &ch->subs[k];

                if (s->skip != NULL && s->skip_token == token) {
                    free(s->skip);
                    s->skip = NULL;
                    s->nskip = 0;
                    ch->nskipping--;
                }
            }
        }
    }
}
