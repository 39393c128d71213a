/*
 * History channels on NATS JetStream: offsets, one order on every node, recovery and
 * history reads (issue 18). A channel is a history channel when its namespace has a
 * "history" section; every other channel keeps the core-NATS path of pubsub.c untouched.
 *
 * Who owns what. JetStream owns the history and the order: one stream per history
 * namespace (<stream>_<namespace>) stores each message on <prefix>.$h.<channel>, and
 * its stream sequence is the message's offset, the same on every node. Each stored
 * message names the offset of the channel's previous message (the Lhttp-Prev header, and
 * the stream refuses a publish whose expected previous is not the last one:
 * Nats-Expected-Last-Subject-Sequence), so a channel's messages form a chain that every
 * worker can check. A worker owns only caches: per history channel it knows the last
 * offset it delivered and keeps the recent part of the chain (a ring of the frames it
 * delivered), from which most recoveries are served without asking JetStream.
 *
 * Publishing: the message is stored first (one publish in flight per channel and
 * worker, its expected previous the last offset known; a "wrong last sequence" answer
 * names the true one and the publish is tried again). Once stored, the worker delivers it
 * to its own subscribers and sends it on the channel's core-NATS subject, with its
 * offset, to every other worker and node. A receiver delivers a message only when its
 * previous offset is the last one it delivered; a message that skips ahead waits while
 * the missing ones are read from JetStream (two publishers on two nodes, a NATS
 * reconnect), so every subscriber on every node gets the chain in order, once.
 *
 * When JetStream is unreachable (no stream answered, or a publish timed out), a publish
 * to a history channel is refused with 503: nothing is delivered without an offset.
 * Subscriptions go on live; recoveries answer recovered:false.
 */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh_channel.h"
#include "lh_log.h"
#include "lh_utf8.h"
#include "lh_ws.h"
#include "pubsub.h"

#define RETRY_MS 250        /* a stream not ready (and not being asked): ask again */
/* A worker stores the messages a channel got while its previous store was in flight
 * together, as one JetStream message (a batch): item i of the batch with stream
 * sequence S has offset S * OFF_K + i. So a channel takes many messages per round trip,
 * and they go out together (one write per subscriber for the lot). */
#define OFF_K 1024
#define BATCH_BYTES (768 * 1024) /* under nats-server's default max_payload of 1 MiB */
#define BATCH_MAGIC "LHB1 "

/* The items of a stored batch ("LHB1 <n>\n" then "<len>\n<bytes>" each): up to max of
 * them into item/ilen. Returns their number, or -1 when data is not a batch. */
static long batch_items(const uint8_t *data, size_t len, const uint8_t **item, size_t *ilen,
                        size_t max)
{
    const uint8_t *p = data, *end = data + len;
    unsigned long n, k;
    char *e;

    if (len < sizeof(BATCH_MAGIC) || memcmp(data, BATCH_MAGIC, sizeof(BATCH_MAGIC) - 1) != 0)
        return -1;
    p += sizeof(BATCH_MAGIC) - 1;
    n = strtoul((const char *)p, &e, 10);
    if ((const uint8_t *)e >= end || *e != '\n' || n == 0 || n > OFF_K || n > max)
        return -1;
    p = (const uint8_t *)e + 1;
    for (k = 0; k < n; k++) {
        unsigned long l = strtoul((const char *)p, &e, 10);

        if ((const uint8_t *)e >= end || *e != '\n' || l > (size_t)(end - (const uint8_t *)e - 1))
            return -1;
        item[k] = (const uint8_t *)e + 1;
        ilen[k] = l;
        p = item[k] + l;
    }
    return p == end ? (long)n : -1;
}


typedef struct hstream_s {
    const lh_ns_cfg_t *ns;
    char name[64];
    char epoch[17];      /* "" until the stream answered */
    int ready;
    int failed;          /* asked and not answered (so far): publishes fail at once */
    lh_nreq_t *req;
} hstream_t;

/* A stored message as delivered: offset, previous offset, and the frame. */
typedef struct {
    uint64_t off, prev;
    lh_buf_t *frame; /* the WebSocket frame, shared by every delivery */
} hent_t;

/* A message of this worker waiting to be stored. */
typedef struct hpub_s {
    struct hpub_s *next;
    lh_conn_t *c;       /* who to tell of a failure (NULL: nobody), cleared when it goes */
    lh_hist_batch_t *b; /* the POST /publish it is part of, or NULL */
    char cmd[65];
    size_t len;
    uint64_t first_ns;  /* when it was first sent: retries stop after the JetStream timeout */
    uint64_t queued_ns; /* when it was queued: waiting for the stream stops then too */
    uint8_t data[];     /* the message as stored */
} hpub_t;

/* A connection waiting for the recent chain: a recovery or a history read. */
typedef struct hwait_s {
    struct hwait_s *next;
    lh_conn_t *c;
    int read;           /* a history read (else a subscribe) */
    int recover;        /* a subscribe that asked for recovery */
    uint64_t since;     /* recover/read everything after this offset */
    size_t limit;       /* a read: at most this many */
    int held;           /* its subscription's deliveries are held until it is served */
    uint64_t deadline_ms; /* a stream not ready yet is waited for until then */
    int caught;         /* its offset, newer than the chain here, was looked for */
    char epoch[17];
} hwait_t;

typedef struct hchan_s {
    struct hchan_s *next;
    hstream_t *st;
    uint64_t last;      /* newest offset delivered here (0: none known) */
    int last_known;     /* last was learnt (a delivery, a lookup) */
    uint64_t pub_last;  /* the offset of the channel's newest message (the next one's prev) */
    uint64_t pub_last_seq; /* the stream sequence of the batch holding it */
    int pub_known;
    size_t inflight_n;  /* messages (from q_head) in the batch being stored */
    hpub_t *q_head, *q_tail;
    lh_nreq_t *pub_req; /* the publish (or lookup for it) in flight */
    uint64_t pub_started_ns;
    hent_t *ring;       /* the chain's recent part: ring[(head + i) % cap], oldest first */
    uint32_t cap, head, n;
    hent_t *held;       /* offered out of order, waiting for the gap to be filled */
    size_t nheld, held_cap;
    lh_nreq_t *fill_req; /* reading the chain backwards from JetStream */
    uint64_t fill_next;  /* the offset asked for */
    uint64_t fill_stop;  /* stop once the chain reaches this offset */
    hent_t *fill;        /* what the walk read so far, newest first */
    size_t nfill, fill_cap;
    int fill_for_gap;    /* the walk fills a gap (else it serves waiters) */
    size_t fill_max;     /* a walk for waiters reads at most this many */
    hwait_t *waiters;
    size_t len;
    char name[];
} hchan_t;

struct lh_hist_s {
    lh_worker_t *w;
    hstream_t *streams;
    size_t nstreams;
    hchan_t **buckets;
    size_t nbuckets, nchans;
    struct event *retry_ev;
    char hprefix[96]; /* "<prefix>.$h." */
    size_t hplen;
};

static lh_hist_t *hist_of(lh_worker_t *w)
{
    return w->hist;
}

/* ---- Streams ------------------------------------------------------------------------- */

/* The stream of namespace ns: <stream>_<ns> when ns is a valid stream name's tail, else
 * <stream>_x<hash>; <stream>__ for the default namespace. */
static void stream_name(const lh_config_t *cfg, const lh_ns_cfg_t *ns, char *out, size_t cap)
{
    int plain = ns->len > 0;

    for (size_t i = 0; i < ns->len; i++) {
        char c = ns->name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            plain = 0;
    }
    if (ns->len == 0)
        snprintf(out, cap, "%s__", cfg->nats.jetstream.stream);
    else if (plain && ns->len <= 24)
        snprintf(out, cap, "%s_%s", cfg->nats.jetstream.stream, ns->name);
    else
        snprintf(out, cap, "%s_x%016" PRIx64, cfg->nats.jetstream.stream,
                 lh_metrics_chan_hash(ns->name, ns->len));
}

static void stream_ask(lh_hist_t *h, hstream_t *st, int update);
static void serve_stream_waiters(lh_hist_t *h, hstream_t *st);

/* The epoch: a digest of the stream's name and creation time, which changes whenever
 * the stream is deleted and made again. */
static void set_epoch(hstream_t *st, const char *created)
{
    uint64_t x = lh_metrics_chan_hash(st->name, strlen(st->name));

    for (const char *p = created; *p; p++)
        x = (x ^ (unsigned char)*p) * 1099511628211ull;
    snprintf(st->epoch, sizeof(st->epoch), "%016" PRIx64, x);
}

static void stream_reply_cb(lh_worker_t *w, void *arg, void *msg)
{
    hstream_t *st = arg;
    lh_hist_t *h = hist_of(w);
    json_t *doc = NULL, *err;
    const char *created;
    int was = st->ready;

    st->req = NULL;
    if (msg != NULL)
        doc = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
    err = json_object_get(doc, "error");
    if (err != NULL && json_integer_value(json_object_get(err, "err_code")) == 10058 &&
        w->cfg->nats.jetstream.manage) {
        /* It exists with another configuration: update it. */
        json_decref(doc);
        stream_ask(h, st, 1);
        return;
    }
    created = json_string_value(json_object_get(doc, "created"));
    if (created == NULL) {
        int first = !st->failed || was;

        st->ready = 0;
        st->failed = 1;
        if (first) /* once per outage, not at every retry */
            lh_log(LH_LOG_WARNING, "JetStream: stream %s: %s; history channels of namespace "
                   "\"%s\" refuse publishes until it answers", st->name,
                   msg == NULL ? "no answer"
                   : json_string_value(json_object_get(err, "description"))
                       ? json_string_value(json_object_get(err, "description"))
                       : "unexpected answer",
                   st->ns->name);
    } else {
        set_epoch(st, created);
        st->ready = 1;
        st->failed = 0;
        serve_stream_waiters(h, st);
        if (!was)
            lh_log(LH_LOG_INFO, "JetStream: stream %s ready (epoch %s, created %s)", st->name,
                   st->epoch, created);
    }
    json_decref(doc);
}

/* Creates (or updates) the stream, or with nats.jetstream.manage false asks about it. */
static void stream_ask(lh_hist_t *h, hstream_t *st, int update)
{
    lh_worker_t *w = h->w;
    const lh_config_t *cfg = w->cfg;
    char subj[192], filter[192];
    json_t *conf;
    char *body = NULL;

    if (st->req != NULL)
        return;
    if (!cfg->nats.jetstream.manage) {
        snprintf(subj, sizeof(subj), "$JS.API.STREAM.INFO.%s", st->name);
        st->req = lh_nats_request(w, subj, NULL, 0, "", 0, cfg->nats.jetstream.timeout_ms,
                                  stream_reply_cb, st);
        if (st->req == NULL && st->epoch[0] != '\0')
            st->failed = 1; /* NATS is down: it was known, so publishes fail at once */
        return;
    }
    if (st->ns->len == 0)
        snprintf(filter, sizeof(filter), "%s*", h->hprefix);
    else
        snprintf(filter, sizeof(filter), "%s%s.>", h->hprefix, st->ns->name);
    conf = json_pack("{s:s,s:[s],s:s,s:s,s:s,s:I,s:I,s:b,s:i}", "name", st->name, "subjects",
                     filter, "retention", "limits", "discard", "old", "storage",
                     cfg->nats.jetstream.storage, "max_msgs_per_subject",
                     (json_int_t)st->ns->history_size, "max_age",
                     (json_int_t)(st->ns->history_ttl_ms * 1000000ull), "allow_direct", 1,
                     "num_replicas", (int)cfg->nats.jetstream.replicas);
    body = conf ? json_dumps(conf, JSON_COMPACT) : NULL;
    json_decref(conf);
    if (body == NULL)
        return;
    snprintf(subj, sizeof(subj), "$JS.API.STREAM.%s.%s", update ? "UPDATE" : "CREATE",
             st->name);
    st->req = lh_nats_request(w, subj, NULL, 0, body, strlen(body),
                              cfg->nats.jetstream.timeout_ms, stream_reply_cb, st);
    if (st->req == NULL && st->epoch[0] != '\0')
        st->failed = 1; /* NATS is down: it was known, so publishes fail at once */
    free(body);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_hist_t *h = arg;

    (void)fd;
    (void)what;
    for (size_t i = 0; i < h->nstreams; i++) {
        if (!h->streams[i].ready) {
            stream_ask(h, &h->streams[i], 0);
            serve_stream_waiters(h, &h->streams[i]); /* those past their deadline fail */
        }
    }
}

/* ---- Channels ------------------------------------------------------------------------ */

static hstream_t *stream_of(lh_hist_t *h, const char *ch, size_t len)
{
    const char *dot = memchr(ch, '.', len);
    size_t nl = dot ? (size_t)(dot - ch) : 0;

    for (size_t i = 0; i < h->nstreams; i++)
        if (h->streams[i].ns->len == nl && memcmp(h->streams[i].ns->name, ch, nl) == 0)
            return &h->streams[i];
    return NULL;
}

int lh_hist_settled(lh_worker_t *w)
{
    lh_hist_t *h = hist_of(w);

    for (size_t i = 0; h != NULL && i < h->nstreams; i++)
        if (!h->streams[i].ready && !h->streams[i].failed)
            return 0;
    return 1;
}

int lh_hist_is(lh_worker_t *w, const char *ch, size_t len)
{
    lh_hist_t *h = hist_of(w);

    return h != NULL && h->nstreams > 0 && stream_of(h, ch, len) != NULL;
}

static hchan_t *hchan_find(lh_hist_t *h, const char *ch, size_t len, int create)
{
    uint64_t k = lh_metrics_chan_hash(ch, len);
    hchan_t **b = &h->buckets[k & (h->nbuckets - 1)], *x;
    hstream_t *st;

    for (x = *b; x != NULL; x = x->next)
        if (x->len == len && memcmp(x->name, ch, len) == 0)
            return x;
    if (!create || (st = stream_of(h, ch, len)) == NULL)
        return NULL;
    x = calloc(1, sizeof(*x) + len + 1);
    if (x == NULL)
        return NULL;
    memcpy(x->name, ch, len);
    x->len = len;
    x->st = st;
    x->cap = (uint32_t)(st->ns->history_size < h->w->cfg->nats.jetstream.max_read
                            ? st->ns->history_size
                            : h->w->cfg->nats.jetstream.max_read);
    x->next = *b;
    *b = x;
    h->nchans++;
    return x;
}

/* The subject a channel's messages are stored on. */
static void stored_subject(const lh_hist_t *h, const char *ch, size_t len, char *out, size_t cap)
{
    snprintf(out, cap, "%.*s%.*s", (int)h->hplen, h->hprefix, (int)len, ch);
}

/* ---- Messages as delivered -------------------------------------------------------------- */

/* 1 for the headers the server sets on history deliveries (a client's are dropped). */
static int reserved(const char *k, size_t kl)
{
    return lh_strieq(k, kl, "offset") || lh_strieq(k, kl, "prev-offset") ||
           lh_strieq(k, kl, "epoch") || lh_strieq(k, kl, "channel");
}

/*
 * The frame delivered for a stored message: its command line, then offset, prev-offset
 * and epoch, then the rest of the stored message. NULL when out of memory.
 */
static lh_buf_t *delivered_frame(const uint8_t *stored, size_t len, uint64_t off, uint64_t prev,
                                 const char *epoch, const char *ch, size_t chlen)
{
    const uint8_t *nl = memchr(stored, '\n', len);
    size_t first = nl ? (size_t)(nl - stored) + 1 : len, ml, hl;
    char extra[LH_CHANNEL_MAX_LEN + 128];
    uint8_t hdr[LH_WS_MAX_HEADER];
    lh_buf_t *b;
    int n = snprintf(extra, sizeof(extra), "offset:%" PRIu64 "\r\nprev-offset:%" PRIu64
                     "\r\nepoch:%s\r\nchannel:%.*s\r\n", off, prev, epoch, (int)chlen, ch);

    /* The command line keeps its own line end; the headers follow with CRLF. */
    ml = first + (size_t)n + (len - first);
    if (nl == NULL)
        ml += 2;
    hl = lh_ws_build_header(hdr, 1, LH_WS_OP_TEXT, ml, NULL);
    b = lh_buf_new(hl + ml);
    if (b == NULL)
        return NULL;
    memcpy(b->data, hdr, hl);
    {
        uint8_t *p = b->data + hl;

        memcpy(p, stored, first);
        p += first;
        if (nl == NULL) {
            memcpy(p, "\r\n", 2);
            p += 2;
        }
        memcpy(p, extra, (size_t)n);
        p += n;
        memcpy(p, stored + first, len - first);
    }
    /* Text when the bytes are UTF-8, as for every delivery (PROTOCOL.md section 7). */
    if (!lh_utf8_valid(b->data + hl, ml))
        lh_ws_build_header(b->data, 1, LH_WS_OP_BINARY, ml, NULL);
    lh_m_inc(LH_M_FRAMES_BUILT);
    return b;
}

/* The payload of a frame built above. */
static const uint8_t *frame_payload(const lh_buf_t *b, size_t *len)
{
    lh_ws_frame_t f;
    uint16_t code;
    const char *reason;

    if (lh_ws_parse_header(b->data, b->len, 0, b->len, &f, &code, &reason) < 0) {
        *len = 0;
        return b->data;
    }
    *len = (size_t)f.payload_len;
    return b->data + f.header_len;
}

/* ---- The chain: delivering in order ------------------------------------------------------ */

static void ring_push(hchan_t *x, uint64_t off, uint64_t prev, lh_buf_t *frame)
{
    hent_t *e;

    if (x->cap == 0)
        return;
    if (x->ring == NULL && (x->ring = calloc(x->cap, sizeof(*x->ring))) == NULL)
        return; /* no cache: recoveries read from JetStream */
    if (x->n == x->cap) {
        lh_buf_unref(x->ring[x->head].frame);
        x->head = (x->head + 1) % x->cap;
        x->n--;
    }
    e = &x->ring[(x->head + x->n) % x->cap];
    e->off = off;
    e->prev = prev;
    e->frame = lh_buf_ref(frame);
    x->n++;
}

static hent_t *ring_at(hchan_t *x, uint32_t i)
{
    return &x->ring[(x->head + i) % x->cap];
}

/* Delivers one message of the chain to this worker's subscribers (those not waiting for
 * their recovery) and remembers it. */
static void deliver_one(lh_hist_t *h, hchan_t *x, uint64_t off, uint64_t prev, lh_buf_t *frame)
{
    size_t len;
    const uint8_t *p = frame_payload(frame, &len);
    lh_buf_t *f = frame;

    /* This worker follows the chain (its last offset, the cache that serves recoveries)
     * only while it has subscribers to the channel, for only then does NATS bring it
     * every message: a worker that only publishes on it knows nothing it could trust
     * later (a subscribe then learns the chain from JetStream). */
    if (lh_pubsub_deliver_local(h->w, x->name, x->len, &f, p, len) > 0 || x->waiters != NULL ||
        lh_pubsub_has_subscribers(h->w, x->name, x->len)) {
        ring_push(x, off, prev, frame);
        x->last = off;
        x->last_known = 1;
    }
}

static void fill_start(lh_hist_t *h, hchan_t *x, uint64_t from, uint64_t stop, int for_gap);

/* The held messages that now follow the chain, in order. */
static void deliver_held(lh_hist_t *h, hchan_t *x)
{
    int moved = 1;

    while (moved && x->nheld > 0) {
        moved = 0;
        for (size_t i = 0; i < x->nheld; i++) {
            hent_t e = x->held[i];

            if (e.off <= x->last || e.prev < x->last) {
                /* Delivered meanwhile (a duplicate), or naming a predecessor older than
                 * what was delivered after it: a fork of the chain, which only a foreign
                 * publisher on the subject can make. Dropped. */
                if (e.off > x->last)
                    lh_log(LH_LOG_WARNING, "history: channel %s: offset %" PRIu64 " names "
                           "%" PRIu64 " before it, behind %" PRIu64 " delivered: dropped",
                           x->name, e.off, e.prev, x->last);
                lh_buf_unref(e.frame);
                x->held[i] = x->held[--x->nheld];
                moved = 1;
                break;
            }
            if (e.prev == x->last) {
                x->held[i] = x->held[--x->nheld];
                deliver_one(h, x, e.off, e.prev, e.frame);
                lh_buf_unref(e.frame);
                moved = 1;
                break;
            }
        }
    }
    if (x->nheld > 0 && x->fill_req == NULL) {
        /* Still a gap: read it, from the newest held message's previous one down. */
        uint64_t top = 0;

        for (size_t i = 0; i < x->nheld; i++)
            if (x->held[i].off > top)
                top = x->held[i].off;
        for (size_t i = 0; i < x->nheld; i++)
            if (x->held[i].off == top && x->held[i].prev > x->last) {
                fill_start(h, x, x->held[i].prev, x->last, 1);
                break;
            }
    }
}

/* A message of the channel's chain, from this worker's publish or from NATS. Takes a
 * reference of its own to frame. */
static void offer(lh_hist_t *h, hchan_t *x, uint64_t off, uint64_t prev, lh_buf_t *frame)
{
    if (x->last_known && off <= x->last)
        return; /* delivered already */
    if (!x->last_known || prev == x->last) {
        deliver_one(h, x, off, prev, frame);
        deliver_held(h, x);
        return;
    }
    if (x->nheld == x->held_cap) {
        size_t cap = x->held_cap ? x->held_cap * 2 : 8;
        hent_t *p = realloc(x->held, cap * sizeof(*p));

        if (p == NULL)
            return;
        x->held = p;
        x->held_cap = cap;
    }
    x->held[x->nheld++] = (hent_t){off, prev, lh_buf_ref(frame)};
    lh_m_inc(LH_M_HIST_GAPS);
    deliver_held(h, x);
}

/* ---- Reading the chain backwards from JetStream ------------------------------------------- */

/* walked: 1 when a walk for the waiters just reached its end, -1 when it failed, 0 when
 * no walk for them ran. */
static void serve_waiters(lh_hist_t *h, hchan_t *x, int walked);

static void fill_done(lh_hist_t *h, hchan_t *x, int complete)
{
    int for_gap = x->fill_for_gap;

    x->fill_req = NULL;
    if (for_gap) {
        if (!complete && x->nfill == 0) {
            /* The gap cannot be read (JetStream away, or the messages are gone): go on
             * with what follows, and tell the subscribers what they missed. */
            uint64_t lo = x->last;

            for (size_t i = 0; i < x->nheld; i++)
                if (x->held[i].prev > x->last && (lo == x->last || x->held[i].prev < lo))
                    lo = x->held[i].prev;
            lh_log(LH_LOG_WARNING, "history: channel %s: messages after offset %" PRIu64
                   " cannot be read; subscribers are told of the gap", x->name, x->last);
            lh_pubsub_gap(h->w, x->name, x->len, x->last, lo);
            lh_m_inc(LH_M_HIST_GAP_LOST);
            x->last = lo;
        }
        /* Oldest first: the walk read them newest first. */
        for (size_t i = x->nfill; i-- > 0;) {
            if (x->fill[i].prev == x->last || !x->last_known)
                deliver_one(h, x, x->fill[i].off, x->fill[i].prev, x->fill[i].frame);
            lh_buf_unref(x->fill[i].frame);
        }
        x->nfill = 0;
        deliver_held(h, x);
        serve_waiters(h, x, 0);
        return;
    }
    serve_waiters(h, x, complete ? 1 : -1);
}

static int fill_add(hchan_t *x, uint64_t off, uint64_t prev, lh_buf_t *frame)
{
    if (x->nfill == x->fill_cap) {
        size_t cap = x->fill_cap ? x->fill_cap * 2 : 16;
        hent_t *q = realloc(x->fill, cap * sizeof(*q));

        if (q == NULL)
            return -1;
        x->fill = q;
        x->fill_cap = cap;
    }
    x->fill[x->nfill++] = (hent_t){off, prev, frame};
    return 0;
}

static void fill_reply_cb(lh_worker_t *w, void *arg, void *msg)
{
    static const uint8_t *item[OFF_K];
    static size_t ilen[OFF_K];
    hchan_t *x = arg;
    lh_hist_t *h = hist_of(w);
    const char *seq = NULL, *prev = NULL;
    uint64_t base, p0, from = x->fill_next;
    long n;
    int done = 0;

    x->fill_req = NULL;
    if (msg == NULL || natsMsgHeader_Get(msg, "Nats-Sequence", &seq) != NATS_OK ||
        natsMsgHeader_Get(msg, "Lhttp-Prev", &prev) != NATS_OK ||
        (n = batch_items((const uint8_t *)natsMsg_GetData(msg),
                         (size_t)natsMsg_GetDataLength(msg), item, ilen, OFF_K)) < 0) {
        fill_done(h, x, 0);
        return;
    }
    base = strtoull(seq, NULL, 10) * OFF_K;
    p0 = strtoull(prev, NULL, 10);
    /* Newest first, from the offset asked for down to where the walk stops. */
    for (long j = n - 1; j >= 0 && !done; j--) {
        uint64_t o = base + (uint64_t)j, pj = j > 0 ? o - 1 : p0;
        lh_buf_t *frame;

        if (o > from)
            continue;
        if (o <= x->fill_stop) {
            done = 1;
            break;
        }
        frame = delivered_frame(item[j], ilen[j], o, pj, x->st->epoch, x->name, x->len);
        if (frame == NULL || fill_add(x, o, pj, frame) < 0) {
            lh_buf_unref(frame);
            fill_done(h, x, 0);
            return;
        }
        lh_m_inc(LH_M_HIST_READS_JS);
        if (pj <= x->fill_stop || pj == 0)
            done = 1;
    }
    if (done || p0 == 0) {
        fill_done(h, x, 1);
        return;
    }
    if (x->nfill >= w->cfg->nats.jetstream.max_read ||
        (!x->fill_for_gap && x->nfill >= x->fill_max)) {
        fill_done(h, x, 0);
        return;
    }
    fill_start(h, x, p0, x->fill_stop, x->fill_for_gap);
}

/* Reads the stored message at offset from (then its previous, and so on) until the chain
 * reaches stop. */
static void fill_start(lh_hist_t *h, hchan_t *x, uint64_t from, uint64_t stop, int for_gap)
{
    char subj[160], body[64];
    int n;

    x->fill_for_gap = for_gap;
    x->fill_stop = stop;
    x->fill_next = from;
    if (from == 0 || from <= stop) {
        fill_done(h, x, 1);
        return;
    }
    snprintf(subj, sizeof(subj), "$JS.API.DIRECT.GET.%s", x->st->name);
    n = snprintf(body, sizeof(body), "{\"seq\":%" PRIu64 "}", from / OFF_K);
    x->fill_req = lh_nats_request(h->w, subj, NULL, 0, body, (size_t)n,
                                  h->w->cfg->nats.jetstream.timeout_ms, fill_reply_cb, x);
    if (x->fill_req == NULL)
        fill_done(h, x, 0);
}

/* ---- Recoveries and history reads ------------------------------------------------------- */

/* The index in the ring of the first entry after offset since, n when none, or -1 when
 * the ring does not reach back to since. */
static long ring_after(hchan_t *x, uint64_t since)
{
    if (x->last_known && since == x->last)
        return (long)x->n;
    if (x->n == 0 || ring_at(x, 0)->prev > since)
        return -1;
    if (ring_at(x, 0)->prev == since)
        return 0;
    for (uint32_t i = 0; i < x->n; i++)
        if (ring_at(x, i)->off == since)
            return (long)i + 1;
    return -2; /* since is inside the ring's span but not on the chain: not a real offset */
}

static void ring_prepend(hchan_t *x, const hent_t *e)
{
    if (x->n == x->cap || x->cap == 0)
        return;
    if (x->ring == NULL && (x->ring = calloc(x->cap, sizeof(*x->ring))) == NULL)
        return;
    x->head = (x->head + x->cap - 1) % x->cap;
    x->ring[x->head] = (hent_t){e->off, e->prev, lh_buf_ref(e->frame)};
    x->n++;
}

/* Sends the `subscribed` reply (and, for a read, the end of the list). */
static void send_reply(lh_conn_t *c, hchan_t *x, const hwait_t *wt, int recovered, size_t count)
{
    char off[24], cnt[24], name[LH_CHANNEL_MAX_LEN + 1];
    lh_header_t hs[5];
    size_t n = 0;

    memcpy(name, x->name, x->len);
    name[x->len] = '\0';
    snprintf(off, sizeof(off), "%" PRIu64, x->last_known ? x->last : 0);
    hs[n++] = (lh_header_t){"channel", 7, name, x->len};
    hs[n++] = (lh_header_t){"epoch", 5, x->st->epoch, strlen(x->st->epoch)};
    hs[n++] = (lh_header_t){"offset", 6, off, strlen(off)};
    if (wt->read) {
        snprintf(cnt, sizeof(cnt), "%zu", count);
        hs[n++] = (lh_header_t){"count", 5, cnt, strlen(cnt)};
        lh_reply_send(c, "history", hs, n, NULL, 0);
        return;
    }
    if (wt->recover)
        hs[n++] = (lh_header_t){"recovered", 9, recovered ? "true" : "false",
                                recovered ? 4 : 5};
    lh_reply_send(c, "subscribed", hs, n, NULL, 0);
    if (wt->recover)
        lh_m_inc(recovered ? LH_M_HIST_RECOVERED : LH_M_HIST_NOT_RECOVERED);
}

/* 1 when offset since is on the chain that fetched (newest first) covers: the previous
 * of one of its messages, or one of them. Recoveries sharing one read each find their
 * own place in it. */
static int on_chain(const hent_t *fetched, size_t nf, uint64_t since)
{
    for (size_t i = 0; i < nf; i++)
        if (fetched[i].prev == since || fetched[i].off == since)
            return 1;
    return 0;
}

/* How many of fetched are after since. */
static size_t count_after(const hent_t *fetched, size_t nf, uint64_t since)
{
    size_t n = 0;

    for (size_t i = 0; i < nf; i++)
        n += fetched[i].off > since;
    return n;
}

/* How many ring entries are newer than off. */
static size_t count_newer(hchan_t *x, uint64_t off)
{
    size_t n = 0;

    for (uint32_t i = 0; i < x->n; i++)
        n += ring_at(x, i)->off > off;
    return n;
}

/* Queues the chain's part after since to c: what a walk read (fetched, newest first) and
 * then the ring, the last `limit` of them (0: all). Returns how many, or -1 once c
 * cannot take more. */
static long send_after(lh_conn_t *c, hchan_t *x, const hent_t *fetched, size_t nf,
                       uint64_t since, size_t limit)
{
    size_t total = 0, skip, sent = 0;
    uint64_t newest_fetched = nf ? fetched[0].off : 0;

    for (size_t i = 0; i < nf; i++)
        total += fetched[i].off > since;
    for (uint32_t i = 0; i < x->n; i++)
        total += ring_at(x, i)->off > since && ring_at(x, i)->off > newest_fetched;
    skip = limit > 0 && total > limit ? total - limit : 0;
    for (size_t i = nf; i-- > 0;) {
        if (fetched[i].off <= since)
            continue;
        if (skip > 0) {
            skip--;
            continue;
        }
        if (lh_conn_queue(c, fetched[i].frame) < 0)
            return -1;
        sent++;
    }
    for (uint32_t i = 0; i < x->n; i++) {
        hent_t *e = ring_at(x, i);

        if (e->off <= since || e->off <= newest_fetched)
            continue;
        if (skip > 0) {
            skip--;
            continue;
        }
        if (lh_conn_queue(c, e->frame) < 0)
            return -1;
        sent++;
    }
    return (long)sent;
}

/*
 * Serves one waiter from the ring and, when the ring does not reach back far enough,
 * from what a walk read (fetched, newest first, nf of them; walked: 0 no walk ran, 1 it
 * reached its end, -1 it failed). Returns 1 when served, 0 when it needs a walk, 2 when
 * its offset is newer than the chain known here (see catchup_start).
 */
static int serve_one(lh_hist_t *h, hchan_t *x, hwait_t *wt, const hent_t *fetched, size_t nf,
                     int walked)
{
    lh_conn_t *c = wt->c;
    /* The history is the channel's last `size` messages (JetStream may hold more: it
     * counts stored groups), and no recovery sends more than max_read. */
    size_t max = h->w->cfg->nats.jetstream.max_read < x->st->ns->history_size
                     ? h->w->cfg->nats.jetstream.max_read
                     : x->st->ns->history_size;
    long at, sent = 0;
    int ok = 1;

    if (c == NULL)
        return 1; /* it left */
    if (!wt->read && !wt->recover) {
        send_reply(c, x, wt, 1, 0);
        if (wt->held)
            lh_pubsub_hold(c, x->name, x->len, 0);
        return 1;
    }
    at = ring_after(x, wt->since);
    if (wt->read && wt->limit > x->st->ns->history_size)
        wt->limit = x->st->ns->history_size;
    if (wt->read) {
        size_t after = 0;

        for (uint32_t i = 0; i < x->n; i++)
            after += ring_at(x, i)->off > wt->since;
        if (at < 0 && after < wt->limit && walked == 0 && x->st->ready)
            return 0; /* read further back first */
        sent = send_after(c, x, at >= 0 || after >= wt->limit ? NULL : fetched,
                          at >= 0 || after >= wt->limit ? 0 : nf, wt->since, wt->limit);
    } else if (at == -2 && x->last_known && wt->since > x->last && !wt->caught &&
               x->st->ready && strcmp(wt->epoch, x->st->epoch) == 0) {
        return 2; /* newer than the chain here: this worker is behind, not the client */
    } else if (!x->st->ready || strcmp(wt->epoch, x->st->epoch) != 0 || at == -2) {
        ok = 0;
    } else if (at >= 0) {
        if (x->n - (size_t)at > max)
            ok = 0;
        else
            sent = send_after(c, x, NULL, 0, wt->since, 0);
    } else if (x->n >= max) {
        ok = 0; /* the ring holds max already and since is older: more than max missing */
    } else if (walked == 0) {
        return 0; /* a walk is needed */
    } else if (walked > 0 && wt->since < x->fill_stop && !on_chain(fetched, nf, wt->since)) {
        return 0; /* came after that walk began, and needs it to go further back */
    } else if (walked < 0 || nf == 0 || !on_chain(fetched, nf, wt->since) ||
               count_after(fetched, nf, wt->since) + count_newer(x, fetched[0].off) > max) {
        ok = 0; /* the chain does not reach back to since: evicted, expired, or too far */
    } else {
        sent = send_after(c, x, fetched, nf, wt->since, 0);
    }
    if (sent < 0)
        return 1; /* c is going */
    send_reply(c, x, wt, ok, (size_t)sent);
    if (wt->held)
        lh_pubsub_hold(c, x->name, x->len, 0);
    lh_m_add(LH_M_HIST_SENT, (uint64_t)sent);
    return 1;
}

static void waiter_free(hchan_t *x, hwait_t *wt)
{
    hwait_t **pp = &x->waiters;

    if (wt->c != NULL)
        wt->c->nhist--;
    while (*pp != NULL && *pp != wt)
        pp = &(*pp)->next;
    if (*pp == wt)
        *pp = wt->next;
    free(wt);
}

static void lookup_last(lh_hist_t *h, hchan_t *x);
static void catchup_start(lh_hist_t *h, hchan_t *x, uint64_t off);

static void serve_waiters(lh_hist_t *h, hchan_t *x, int walked)
{
    const hent_t *fetched = walked != 0 ? x->fill : NULL;
    size_t nf = walked != 0 ? x->nfill : 0, need = 0;
    uint64_t lowest = UINT64_MAX, ahead = 0;
    hwait_t *wt, *next;
    int r;

    if (x->fill_req != NULL)
        return; /* a walk runs: the waiters are served when it ends */
    if (x->waiters != NULL && !x->st->ready) {
        /* The stream has not answered yet (a worker just started): wait for it, until
         * each waiter's deadline; the stream's answer or retry_cb comes back here. */
        uint64_t now = lh_now_ms();

        for (wt = x->waiters; wt != NULL; wt = next) {
            next = wt->next;
            if (now >= wt->deadline_ms) {
                serve_one(h, x, wt, NULL, 0, -1);
                waiter_free(x, wt);
            }
        }
        return;
    }
    if (x->waiters != NULL && !x->last_known && x->st->ready) {
        lookup_last(h, x);
        return;
    }
    for (wt = x->waiters; wt != NULL; wt = next) {
        next = wt->next;
        if ((r = serve_one(h, x, wt, fetched, nf, walked)) == 2) {
            wt->caught = 1;
            if (wt->since > ahead)
                ahead = wt->since;
        } else if (r) {
            waiter_free(x, wt);
        } else {
            size_t want = wt->read ? wt->limit : h->w->cfg->nats.jetstream.max_read + 1;

            if (wt->since < lowest)
                lowest = wt->since;
            if (want > need)
                need = want;
        }
    }
    /* What the walk read goes into the ring (older than its oldest) while there is room. */
    for (size_t i = 0; i < nf; i++) {
        if (x->n > 0 && ring_at(x, 0)->prev != x->fill[i].off)
            continue;
        ring_prepend(x, &x->fill[i]);
    }
    for (size_t i = 0; i < x->nfill; i++)
        lh_buf_unref(x->fill[i].frame);
    x->nfill = 0;
    if (ahead != 0) {
        /* A client saw an offset this worker has not: read up to it first (the walks
         * for the others come after, from the chain it leaves). */
        catchup_start(h, x, ahead);
    } else if (x->waiters != NULL && lowest != UINT64_MAX && walked >= 0) {
        /* Walk back from the oldest the ring has (or the newest offset) to lowest. */
        uint64_t from = x->n > 0 ? ring_at(x, 0)->prev : x->last;

        x->fill_max = need > x->n ? need - x->n : 1;
        fill_start(h, x, from, lowest, 0);
    } else if (x->waiters != NULL && walked < 0) {
        /* Those still waiting could not be served by this walk: they fail. */
        for (wt = x->waiters; wt != NULL; wt = next) {
            next = wt->next;
            serve_one(h, x, wt, NULL, 0, -1);
            waiter_free(x, wt);
        }
    }
    if (x->nheld > 0)
        deliver_held(h, x);
}

/*
 * A recovering client names an offset newer than the chain this worker knows: the
 * worker learnt the chain from a lookup that raced a store, or missed a live message
 * published before it listened on the channel. The stored message holding that offset
 * is read by its sequence and offered like a live one, so the chain here reaches it (a
 * gap before it is filled as usual), and the waiters are served again. An offset that
 * is not this channel's (another subject, nothing stored) is not caught up to, and its
 * recovery fails as for any offset not on the chain.
 */
static void catchup_reply_cb(lh_worker_t *w, void *arg, void *msg)
{
    static const uint8_t *item[OFF_K];
    static size_t ilen[OFF_K];
    hchan_t *x = arg;
    lh_hist_t *h = hist_of(w);
    const char *seq = NULL, *prev = NULL, *subj = NULL;
    char stored[LH_CHANNEL_MAX_LEN + 100];
    long n;

    x->fill_req = NULL;
    stored_subject(h, x->name, x->len, stored, sizeof(stored));
    if (msg != NULL && natsMsgHeader_Get(msg, "Nats-Sequence", &seq) == NATS_OK &&
        natsMsgHeader_Get(msg, "Nats-Subject", &subj) == NATS_OK && strcmp(subj, stored) == 0 &&
        natsMsgHeader_Get(msg, "Lhttp-Prev", &prev) == NATS_OK &&
        (n = batch_items((const uint8_t *)natsMsg_GetData(msg),
                         (size_t)natsMsg_GetDataLength(msg), item, ilen, OFF_K)) > 0) {
        uint64_t base = strtoull(seq, NULL, 10) * OFF_K, p0 = strtoull(prev, NULL, 10);

        for (long j = 0; j < n; j++) {
            uint64_t o = base + (uint64_t)j;
            lh_buf_t *frame;

            if (o <= x->last)
                continue;
            frame = delivered_frame(item[j], ilen[j], o, j > 0 ? o - 1 : p0, x->st->epoch,
                                    x->name, x->len);
            if (frame != NULL)
                offer(h, x, o, j > 0 ? o - 1 : p0, frame);
            lh_buf_unref(frame);
        }
    }
    serve_waiters(h, x, 0); /* returns at once while a gap before it is being filled */
}

static void catchup_start(lh_hist_t *h, hchan_t *x, uint64_t off)
{
    char subj[160], body[64];
    int n;

    if (x->fill_req != NULL)
        return;
    snprintf(subj, sizeof(subj), "$JS.API.DIRECT.GET.%s", x->st->name);
    n = snprintf(body, sizeof(body), "{\"seq\":%" PRIu64 "}", off / OFF_K);
    lh_m_inc(LH_M_HIST_READS_JS);
    x->fill_req = lh_nats_request(h->w, subj, NULL, 0, body, (size_t)n,
                                  h->w->cfg->nats.jetstream.timeout_ms, catchup_reply_cb, x);
    if (x->fill_req == NULL)
        catchup_reply_cb(h->w, x, NULL);
}

static void lookup_reply_cb(lh_worker_t *w, void *arg, void *msg)
{
    static const uint8_t *item[OFF_K];
    static size_t ilen[OFF_K];
    hchan_t *x = arg;
    lh_hist_t *h = hist_of(w);
    const char *seq = NULL, *prev = NULL;
    long n;

    x->fill_req = NULL;
    if (msg != NULL && natsMsgHeader_Get(msg, "Nats-Sequence", &seq) == NATS_OK &&
        natsMsgHeader_Get(msg, "Lhttp-Prev", &prev) == NATS_OK &&
        (n = batch_items((const uint8_t *)natsMsg_GetData(msg),
                         (size_t)natsMsg_GetDataLength(msg), item, ilen, OFF_K)) > 0) {
        uint64_t base = strtoull(seq, NULL, 10) * OFF_K, p0 = strtoull(prev, NULL, 10);

        /* The newest batch: the ring starts with it (subscribers have it already or will
         * get it from a recovery). */
        for (long j = 0; j < n && !x->last_known; j++) {
            uint64_t o = base + (uint64_t)j;
            lh_buf_t *frame = delivered_frame(item[j], ilen[j], o, j > 0 ? o - 1 : p0,
                                              x->st->epoch, x->name, x->len);

            if (frame != NULL)
                ring_push(x, o, j > 0 ? o - 1 : p0, frame);
            lh_buf_unref(frame);
        }
        if (!x->last_known) {
            x->last = base + (uint64_t)n - 1;
            x->last_known = 1;
        }
    } else if (msg != NULL) {
        const char *status = NULL;

        natsMsgHeader_Get(msg, "Status", &status);
        if (status != NULL && strcmp(status, "404") == 0 && !x->last_known) {
            x->last = 0; /* nothing stored yet */
            x->last_known = 1;
        }
    }
    if (!x->last_known) {
        /* No answer: serve the waiters as failed rather than keep them. */
        hwait_t *wt, *next;

        for (wt = x->waiters; wt != NULL; wt = next) {
            next = wt->next;
            serve_one(h, x, wt, NULL, 0, -1);
            waiter_free(x, wt);
        }
        return;
    }
    serve_waiters(h, x, 0);
}

/* Asks JetStream for the channel's newest message (its offset starts the chain here). */
static void lookup_last(lh_hist_t *h, hchan_t *x)
{
    char subj[160], body[LH_CHANNEL_MAX_LEN + 160], stored[LH_CHANNEL_MAX_LEN + 100];
    int n;

    if (x->fill_req != NULL)
        return;
    snprintf(subj, sizeof(subj), "$JS.API.DIRECT.GET.%s", x->st->name);
    stored_subject(h, x->name, x->len, stored, sizeof(stored));
    n = snprintf(body, sizeof(body), "{\"last_by_subj\":\"%s\"}", stored);
    x->fill_req = lh_nats_request(h->w, subj, NULL, 0, body, (size_t)n,
                                  h->w->cfg->nats.jetstream.timeout_ms, lookup_reply_cb, x);
    if (x->fill_req == NULL)
        lookup_reply_cb(h->w, x, NULL);
}

int lh_hist_attach(lh_conn_t *c, const char *ch, size_t len, int recover, uint64_t since,
                   const char *epoch, int read, size_t limit, int hold)
{
    lh_hist_t *h = hist_of(c->w);
    hchan_t *x = h ? hchan_find(h, ch, len, 1) : NULL;
    hwait_t *wt;

    if (x == NULL)
        return -ENOMEM;
    wt = calloc(1, sizeof(*wt));
    if (wt == NULL)
        return -ENOMEM;
    wt->c = c;
    wt->read = read;
    wt->recover = recover;
    wt->since = since;
    wt->limit = limit;
    snprintf(wt->epoch, sizeof(wt->epoch), "%s", epoch ? epoch : "");
    wt->deadline_ms = lh_now_ms() + c->w->cfg->nats.jetstream.timeout_ms;
    wt->held = !read && hold;
    if (wt->held)
        lh_pubsub_hold(c, ch, len, 1);
    wt->next = x->waiters;
    x->waiters = wt;
    c->nhist++;
    if (read)
        lh_m_inc(LH_M_HIST_READS);
    serve_waiters(h, x, 0);
    return 0;
}

static void pub_pump(lh_hist_t *h, hchan_t *x);

/* Every channel of st with waiters or messages to store: served (st answered) or, past
 * their deadline, failed. */
static void serve_stream_waiters(lh_hist_t *h, hstream_t *st)
{
    for (size_t b = 0; b < h->nbuckets; b++) {
        for (hchan_t *x = h->buckets[b]; x != NULL; x = x->next) {
            if (x->st != st)
                continue;
            if (x->waiters != NULL)
                serve_waiters(h, x, 0);
            if (x->q_head != NULL)
                pub_pump(h, x);
        }
    }
}

/* ---- Publishing ------------------------------------------------------------------------ */

static void pub_pump(lh_hist_t *h, hchan_t *x);

/* Tells p's batch (if any) how p ended, once. */
static void pub_tell(hchan_t *x, hpub_t *p, uint64_t off, int ok)
{
    lh_hist_batch_t *b = p->b;

    p->b = NULL;
    if (b != NULL)
        b->done(b, x->name, x->len, off, ok);
}

static void pub_fail(hchan_t *x, hpub_t *p, const char *why)
{
    pub_tell(x, p, 0, 0);
    if (p->c != NULL)
        lh_reply_error(p->c, p->cmd, strlen(p->cmd), 503, why);
    lh_m_inc(LH_M_HIST_PUB_FAILED);
}

static void pub_pop(hchan_t *x)
{
    hpub_t *p = x->q_head;

    x->q_head = p->next;
    if (x->q_head == NULL)
        x->q_tail = NULL;
    if (p->c != NULL)
        p->c->nhist--;
    free(p);
}

/* Fails the first n waiting messages (a batch that could not be stored). */
static void pub_fail_n(hchan_t *x, size_t n, const char *why)
{
    while (n-- > 0 && x->q_head != NULL) {
        pub_fail(x, x->q_head, why);
        pub_pop(x);
    }
}

static void pub_ack_cb(lh_worker_t *w, void *arg, void *msg)
{
    hchan_t *x = arg;
    lh_hist_t *h = hist_of(w);
    size_t n = x->inflight_n;
    json_t *doc = NULL, *err;
    json_int_t seq;

    x->pub_req = NULL;
    x->inflight_n = 0;
    if (x->q_head == NULL || n == 0)
        return;
    if (msg != NULL)
        doc = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
    err = json_object_get(doc, "error");
    seq = json_integer_value(json_object_get(doc, "seq"));
    if (doc != NULL && err == NULL && seq > 0) {
        uint64_t base = (uint64_t)seq * OFF_K, prev = x->pub_last;

        lh_m_add(LH_M_HIST_STORED, n);
        lh_metrics_observe_js(lh_now_ns() - x->pub_started_ns);
        x->pub_last = base + n - 1;
        x->pub_last_seq = (uint64_t)seq;
        for (size_t i = 0; i < n && x->q_head != NULL; i++) {
            hpub_t *p = x->q_head;
            uint64_t off = base + i, pv = i > 0 ? off - 1 : prev;
            lh_buf_t *frame = delivered_frame(p->data, p->len, off, pv, x->st->epoch, x->name,
                                              x->len);

            if (frame != NULL) {
                size_t len;
                const uint8_t *pl = frame_payload(frame, &len);

                /* To every other worker and node, then here, in the chain's order. */
                lh_nats_publish(w, x->name, x->len, pl, len);
                offer(h, x, off, pv, frame);
                lh_buf_unref(frame);
            }
            pub_tell(x, p, off, 1);
            pub_pop(x);
        }
    } else if (json_integer_value(json_object_get(err, "err_code")) == 10071 &&
               lh_now_ns() - x->q_head->first_ns <
                   (uint64_t)w->cfg->nats.jetstream.timeout_ms * 1000000) {
        /* "wrong last sequence": another publisher came first. The channel's newest
         * message is read again (its batch says its offset), and the batch goes after
         * it. Under a steady race with another node this can repeat; it stops being
         * tried when the JetStream timeout has passed since the first try. */
        x->pub_known = 0;
    } else {
        pub_fail_n(x, n, msg == NULL ? "history unavailable: JetStream did not answer; not "
                                       "published"
                                     : "history unavailable: JetStream refused the message; "
                                       "not published");
        if (msg == NULL) {
            x->st->ready = 0; /* asked again by retry_cb */
            x->st->failed = 1;
        }
        x->pub_known = 0;
    }
    json_decref(doc);
    pub_pump(h, x);
}

static void pub_lookup_cb(lh_worker_t *w, void *arg, void *msg)
{
    static const uint8_t *item[OFF_K];
    static size_t ilen[OFF_K];
    hchan_t *x = arg;
    lh_hist_t *h = hist_of(w);
    const char *seq = NULL, *status = NULL;
    long n;

    x->pub_req = NULL;
    if (msg != NULL && natsMsgHeader_Get(msg, "Nats-Sequence", &seq) == NATS_OK &&
        (n = batch_items((const uint8_t *)natsMsg_GetData(msg),
                         (size_t)natsMsg_GetDataLength(msg), item, ilen, OFF_K)) > 0) {
        x->pub_last_seq = strtoull(seq, NULL, 10);
        x->pub_last = x->pub_last_seq * OFF_K + (uint64_t)n - 1;
        x->pub_known = 1;
    } else if (msg != NULL && natsMsgHeader_Get(msg, "Status", &status) == NATS_OK &&
               strcmp(status, "404") == 0) {
        x->pub_last = x->pub_last_seq = 0;
        x->pub_known = 1;
    }
    if (x->pub_known && x->last_known && x->last > x->pub_last) {
        /* The chain delivered here is ahead of the lookup: the lookup was answered
         * before a store it raced (the stream then refuses this one and it is tried
         * again), or the subject's messages all expired (ttl_ms). The new message names
         * the last one delivered here, which the subscribers here follow; the expected
         * sequence stays what the stream said, so the stream still orders publishers. */
        x->pub_last = x->last;
    } else if (!x->pub_known) {
        pub_fail_n(x, SIZE_MAX, "history unavailable: JetStream did not answer; not "
                                "published");
        return;
    }
    pub_pump(h, x);
}

/* Stores the waiting messages, as many as fit one batch (after learning the channel's
 * newest offset if needed). */
static void pub_pump(lh_hist_t *h, hchan_t *x)
{
    char subj[LH_CHANNEL_MAX_LEN + 120], jsubj[160], body[LH_CHANNEL_MAX_LEN + 160],
        seqs[24], prev[24], head[32];
    const char *hdrs[4];
    size_t n = 0, bytes, hl;
    uint8_t *batch, *q;

    if (x->q_head == NULL || x->pub_req != NULL)
        return;
    if (!x->st->ready) {
        /* Not answered yet (a worker just started, or JetStream is away): the messages
         * wait for it until the JetStream timeout, then fail. */
        uint64_t now = lh_now_ns(), limit = (uint64_t)h->w->cfg->nats.jetstream.timeout_ms *
                                            1000000;

        while (x->q_head != NULL && now - x->q_head->queued_ns >= limit) {
            pub_fail(x, x->q_head, "history unavailable: JetStream is not reachable; not "
                                   "published");
            pub_pop(x);
        }
        return;
    }
    stored_subject(h, x->name, x->len, subj, sizeof(subj));
    if (!x->pub_known) {
        int m = snprintf(body, sizeof(body), "{\"last_by_subj\":\"%s\"}", subj);

        snprintf(jsubj, sizeof(jsubj), "$JS.API.DIRECT.GET.%s", x->st->name);
        x->pub_req = lh_nats_request(h->w, jsubj, NULL, 0, body, (size_t)m,
                                     h->w->cfg->nats.jetstream.timeout_ms, pub_lookup_cb, x);
        if (x->pub_req == NULL)
            pub_lookup_cb(h->w, x, NULL);
        return;
    }
    /* The batch: every waiting message that fits (at least one). */
    bytes = 0;
    for (hpub_t *p = x->q_head; p != NULL && n < OFF_K; p = p->next) {
        if (n > 0 && bytes + p->len + 24 > BATCH_BYTES)
            break;
        bytes += p->len + 24;
        n++;
    }
    batch = malloc(bytes + sizeof(head));
    if (batch == NULL) {
        pub_fail_n(x, n, "history: out of memory; not published");
        pub_pump(h, x);
        return;
    }
    hl = (size_t)snprintf(head, sizeof(head), BATCH_MAGIC "%zu\n", n);
    memcpy(batch, head, hl);
    q = batch + hl;
    {
        hpub_t *p = x->q_head;

        for (size_t i = 0; i < n; i++, p = p->next) {
            q += sprintf((char *)q, "%zu\n", p->len);
            memcpy(q, p->data, p->len);
            q += p->len;
        }
    }
    snprintf(seqs, sizeof(seqs), "%" PRIu64, x->pub_last_seq);
    snprintf(prev, sizeof(prev), "%" PRIu64, x->pub_last);
    hdrs[0] = "Nats-Expected-Last-Subject-Sequence";
    hdrs[1] = seqs;
    hdrs[2] = "Lhttp-Prev";
    hdrs[3] = prev;
    x->pub_started_ns = lh_now_ns();
    if (x->q_head->first_ns == 0)
        x->q_head->first_ns = x->pub_started_ns;
    x->inflight_n = n;
    x->pub_req = lh_nats_request(h->w, subj, hdrs, 2, batch, (size_t)(q - batch),
                                 h->w->cfg->nats.jetstream.timeout_ms, pub_ack_cb, x);
    free(batch);
    if (x->pub_req == NULL)
        pub_ack_cb(h->w, x, NULL);
}

long lh_hist_publish(lh_conn_t *c, lh_hist_batch_t *b, const char *ch, size_t len,
                     const void *msg, size_t msg_len)
{
    lh_worker_t *w = c ? c->w : lh_current_worker;
    lh_hist_t *h = hist_of(w);
    hchan_t *x = h ? hchan_find(h, ch, len, 1) : NULL;
    lh_lhttp_msg_t m;
    static lh_lhttp_header_t hs[LH_LHTTP_HEADERS_CAP];
    size_t nh = 0, need;
    hpub_t *p;

    if (x == NULL)
        return -ENOMEM;
    if (!x->st->ready && x->st->failed)
        return -EAGAIN; /* JetStream did not answer: refused at once */
    /* Stored without any offset header a client wrote: the server sets them. */
    if (lh_lhttp_parse(msg, msg_len, NULL, &m, NULL) != 0)
        return -EINVAL;
    for (size_t i = 0; i < m.num_headers; i++)
        if (!reserved(m.headers[i].key, m.headers[i].key_len))
            hs[nh++] = m.headers[i];
    need = lh_lhttp_serialize(NULL, 0, m.command, m.command_len, hs, nh, m.body, m.body_len);
    p = malloc(sizeof(*p) + need);
    if (p == NULL)
        return -ENOMEM;
    lh_lhttp_serialize((char *)p->data, need, m.command, m.command_len, hs, nh, m.body,
                       m.body_len);
    p->len = need;
    p->next = NULL;
    p->c = c;
    p->b = b;
    p->first_ns = 0;
    p->queued_ns = lh_now_ns();
    if (b != NULL)
        b->outstanding++;
    snprintf(p->cmd, sizeof(p->cmd), "%.*s", (int)m.command_len, m.command);
    if (c != NULL)
        c->nhist++;
    if (x->q_tail)
        x->q_tail->next = p;
    else
        x->q_head = p;
    x->q_tail = p;
    pub_pump(h, x);
    return 0;
}

/* ---- From NATS ----------------------------------------------------------------------- */

void lh_hist_from_nats(lh_worker_t *w, const char *ch, size_t len, const void *msg,
                       size_t msg_len)
{
    lh_hist_t *h = hist_of(w);
    hchan_t *x = h ? hchan_find(h, ch, len, 1) : NULL;
    lh_lhttp_msg_t m;
    const char *v;
    size_t vl;
    uint64_t off, prev;
    lh_buf_t *frame;
    uint8_t hdr[LH_WS_MAX_HEADER];
    size_t hl;

    if (x == NULL || lh_lhttp_parse(msg, msg_len, NULL, &m, NULL) != 0 ||
        (v = lh_lhttp_header(&m, "offset", &vl)) == NULL)
        return; /* not a history delivery (a plain NATS publish): dropped, no offset */
    off = strtoull(v, NULL, 10);
    v = lh_lhttp_header(&m, "prev-offset", &vl);
    prev = v ? strtoull(v, NULL, 10) : 0;
    hl = lh_ws_build_header(hdr, 1, lh_utf8_valid(msg, msg_len) ? LH_WS_OP_TEXT
                                                                : LH_WS_OP_BINARY,
                            msg_len, NULL);
    frame = lh_buf_new(hl + msg_len);
    if (frame == NULL)
        return;
    memcpy(frame->data, hdr, hl);
    memcpy(frame->data + hl, msg, msg_len);
    lh_m_inc(LH_M_FRAMES_BUILT);
    offer(h, x, off, prev, frame);
    lh_buf_unref(frame);
}

/* ---- The history command ----------------------------------------------------------------- */

static void history_on_message(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    const lh_lhttp_msg_t *lm = m->m;
    const char *ch, *v;
    size_t cl, vl;
    char why[512];
    uint64_t since = 0, limit;
    int d;

    (void)ud;
    ch = lh_lhttp_header(lm, "channel", &cl);
    if (ch == NULL || !lh_channel_valid(ch, cl, c->w->cfg->limits.max_channel_bytes)) {
        lh_reply_error_to(c, m, 400, "history needs a channel header with a valid channel");
        return;
    }
    if (!lh_hist_is(c->w, ch, cl)) {
        lh_reply_error_to(c, m, 404, "not a history channel (its namespace keeps none)");
        return;
    }
    v = lh_lhttp_header(lm, "limit", &vl);
    limit = v ? strtoull(v, NULL, 10) : c->w->cfg->nats.jetstream.max_read;
    if (limit == 0 || limit > c->w->cfg->nats.jetstream.max_read)
        limit = c->w->cfg->nats.jetstream.max_read;
    if ((v = lh_lhttp_header(lm, "since", &vl)) != NULL)
        since = strtoull(v, NULL, 10);
    d = lh_auth_may_subscribe(c->w->auth, c, ch, cl, NULL, why, sizeof(why));
    if (d == LH_PERM_DENY || (d == LH_PERM_WEBHOOK && !lh_pubsub_subscribed(c, ch, cl))) {
        if (d == LH_PERM_WEBHOOK)
            snprintf(why, sizeof(why), "history of a webhook-decided channel needs a "
                                       "subscription to it");
        lh_reply_error_to(c, m, 403, why);
        return;
    }
    if (!stream_of(hist_of(c->w), ch, cl)->ready) {
        lh_reply_error_to(c, m, 503, "history unavailable: JetStream is not reachable");
        return;
    }
    if (lh_hist_attach(c, ch, cl, 0, since, NULL, 1, (size_t)limit, 0) < 0)
        lh_reply_error_to(c, m, 500, "out of memory");
}

void lh_hist_register(void)
{
    static const lh_processor_t p = {NULL, history_on_message, NULL};

    lh_dispatch_register_processor("history", &p, NULL);
}

/* ---- Life cycle ------------------------------------------------------------------------ */

static void hchan_drop_cache(hchan_t *x)
{
    for (uint32_t i = 0; i < x->n; i++)
        lh_buf_unref(ring_at(x, i)->frame);
    free(x->ring);
    x->ring = NULL;
    x->n = x->head = 0;
    for (size_t i = 0; i < x->nheld; i++)
        lh_buf_unref(x->held[i].frame);
    x->nheld = 0;
}

void lh_hist_chan_idle(lh_worker_t *w, const char *ch, size_t len)
{
    lh_hist_t *h = hist_of(w);
    hchan_t *x = h ? hchan_find(h, ch, len, 0) : NULL;
    hchan_t **pp;

    if (x == NULL || x->waiters != NULL || x->fill_req != NULL)
        return;
    /* No subscriber here any more: the chain is no longer followed (a later subscribe
     * learns it again); the cache and what waited for a gap go. */
    hchan_drop_cache(x);
    x->last_known = 0;
    x->last = 0;
    if (x->q_head != NULL || x->pub_req != NULL)
        return; /* publishes still to store: the channel stays for them */
    pp = &h->buckets[lh_metrics_chan_hash(ch, len) & (h->nbuckets - 1)];
    while (*pp != x)
        pp = &(*pp)->next;
    *pp = x->next;
    h->nchans--;
    free(x->held);
    free(x->fill);
    free(x);
}

void lh_hist_conn_gone(lh_conn_t *c)
{
    lh_hist_t *h = hist_of(c->w);

    if (h == NULL || c->nhist == 0)
        return;
    for (size_t b = 0; b < h->nbuckets && c->nhist > 0; b++) {
        for (hchan_t *x = h->buckets[b]; x != NULL; x = x->next) {
            for (hpub_t *p = x->q_head; p != NULL; p = p->next) {
                if (p->b != NULL && p->b->c == c) {
                    p->b->c = NULL; /* its answer has nobody to go to */
                    c->nhist--;
                }
                if (p->c == c) {
                    p->c = NULL;
                    c->nhist--;
                }
            }
            for (hwait_t *wt = x->waiters; wt != NULL; wt = wt->next)
                if (wt->c == c) {
                    wt->c = NULL;
                    c->nhist--;
                }
        }
    }
}

int lh_hist_init(lh_worker_t *w)
{
    const lh_config_t *cfg = w->cfg;
    lh_hist_t *h;
    size_t n = 0;
    struct timeval tv = {0, RETRY_MS * 1000};

    for (size_t i = 0; i < cfg->nnamespaces; i++)
        n += cfg->namespaces[i].history_size > 0;
    if (n == 0)
        return 0; /* no history anywhere: nothing of this file runs */
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    w->hist = h;
    h->w = w;
    h->streams = calloc(n, sizeof(*h->streams));
    h->nbuckets = 256;
    h->buckets = calloc(h->nbuckets, sizeof(*h->buckets));
    h->retry_ev = event_new(w->base, -1, EV_PERSIST, retry_cb, h);
    if (h->streams == NULL || h->buckets == NULL || h->retry_ev == NULL)
        return -ENOMEM;
    h->hplen = (size_t)snprintf(h->hprefix, sizeof(h->hprefix), "%s.$h.",
                                cfg->nats.subject_prefix);
    for (size_t i = 0; i < cfg->nnamespaces; i++) {
        if (cfg->namespaces[i].history_size == 0)
            continue;
        h->streams[h->nstreams].ns = &cfg->namespaces[i];
        stream_name(cfg, &cfg->namespaces[i], h->streams[h->nstreams].name,
                    sizeof(h->streams[h->nstreams].name));
        h->nstreams++;
    }
    event_add(h->retry_ev, &tv);
    return 0;
}

void lh_hist_free(lh_worker_t *w)
{
    lh_hist_t *h = hist_of(w);

    if (h == NULL)
        return;
    for (size_t b = 0; b < h->nbuckets; b++) {
        hchan_t *x = h->buckets[b];

        while (x != NULL) {
            hchan_t *next = x->next;

            while (x->q_head != NULL) {
                pub_tell(x, x->q_head, 0, 0);
                pub_pop(x);
            }
            while (x->waiters != NULL)
                waiter_free(x, x->waiters);
            for (uint32_t i = 0; i < x->n; i++)
                lh_buf_unref(ring_at(x, i)->frame);
            for (size_t i = 0; i < x->nheld; i++)
                lh_buf_unref(x->held[i].frame);
            for (size_t i = 0; i < x->nfill; i++)
                lh_buf_unref(x->fill[i].frame);
            free(x->ring);
            free(x->held);
            free(x->fill);
            free(x);
            x = next;
        }
    }
    if (h->retry_ev)
        event_free(h->retry_ev);
    free(h->buckets);
    free(h->streams);
    free(h);
    w->hist = NULL;
}
