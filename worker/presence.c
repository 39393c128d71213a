/*
 * Presence and join/leave (namespaces with "presence" / "join_leave").
 *
 * Who owns the state: each worker owns the presence entries of its own connections, and
 * they are nothing but its subscriptions (pubsub.c's channel table): an entry is born with
 * a subscription and dies with it, so there is no second copy to keep in step, to expire
 * or to replay after a restart. A presence query is gathered: the asking worker sends it
 * on <prefix>.$peers (every worker of every node listens there) and each worker answers
 * from its own table, on the asker's reply subject, with its count, its distinct users
 * (as 64-bit hashes) and at most presence.max_list entries. The asker knows how many
 * answers to wait for: one node per lhttpd node heard on NATS (nats.c's peers, plus its
 * own), and from each node as many workers as that node's answers say are alive (its
 * active and draining slots in shared memory). It answers as soon as all are in, or at
 * presence.node_timeout_ms with what came. So:
 *   - a leave is gone at once (the subscription is gone from its worker's table);
 *   - a worker or node that dies (SIGKILL) takes its entries with it at once: nobody
 *     answers for it (queries wait for it until node_timeout_ms, while nats.c still counts
 *     the node as a peer, or the master has not yet freed the dead worker's slot);
 *   - a reload flaps nothing: a draining worker keeps its connections, their
 *     subscriptions, and answers for them until they leave;
 *   - when NATS is unreachable a query fails with 503 (unless this worker is the whole
 *     cluster: one worker, no peer node), since the others cannot be asked.
 *
 * Join and leave: a subscription made or ended on a join_leave channel is an event; the
 * events of a channel are held for presence.join_leave_delay_ms and then published
 * together like any message of the channel (to this worker's subscribers and, through
 * NATS, everyone else's): one message carries one event in headers, or several in a JSON
 * body (count: header). A join followed by the same connection's leave within the delay
 * cancels out; a batch is sent early once it holds presence.join_leave_batch events.
 * A storm of N leaves on one channel so costs about N / join_leave_batch messages (plus
 * one per delay window), each delivered once to every subscriber, not N.
 */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <nats/nats.h>

#include "lh_channel.h"
#include "lh_log.h"
#include "lh_presence_wire.h"
#include "pubsub.h"

/* Bytes of entries one worker's answer carries at most (NATS's default max_payload is 1
 * MiB; the user hashes come on top). */
#define ANSWER_ENTRY_BYTES (512 * 1024)
/* Distinct users one worker's answer carries at most (8 bytes each). */
#define ANSWER_USERS_MAX 60000
#define NODES_MAX 300
#define ANSWERS_MAX 2048
#define JL_BUCKETS 1024

enum { EV_JOIN, EV_LEAVE };

/* One join or leave: its connection (c->id, for cancelling), its JSON entry and its
 * header lines (user, client, info) for a message of one event. */
typedef struct {
    uint64_t cid;
    char *json, *hdr;
} jl_ev_t;

/* The events of one channel waiting to go out. */
typedef struct jl_s {
    struct jl_s *next; /* hash chain */
    struct jl_s *pnext; /* pending list */
    jl_ev_t *ev[2];     /* joins and leaves */
    size_t n[2], cap[2];
    size_t len;
    char name[];
} jl_t;

/* One who waits for a query's answer. */
typedef struct {
    lh_conn_t *c; /* NULL once gone */
    lh_presence_done_fn done;
    void *arg;
} asker_t;

/* A query being gathered. Askers of the same channel and kind while it runs share it. */
typedef struct presq_s {
    struct presq_s *prev, *next;
    asker_t *askers;
    unsigned nask, askcap;
    int stats;
    size_t max; /* presence.max_list */
    char ch[LH_CHANNEL_MAX_LEN + 1];
    size_t chlen;
    uint64_t started_ns;
    uint64_t count;
    uint64_t *uset; /* open addressing, 0 = free */
    size_t ucap, un;
    int uzero; /* a user whose hash is 0 */
    char *list;
    size_t llen, lcap, nlisted;
    int truncated;
    struct {
        uint64_t node;
        unsigned expect, got;
    } *nodes; /* grown as nodes answer, to NODES_MAX */
    unsigned nnodes, nodecap;
    struct {
        uint64_t node;
        int pid;
    } *seen; /* grown as workers answer, to ANSWERS_MAX */
    unsigned nseen, seencap;
    int finished;
} presq_t;

struct lh_pres_s {
    presq_t *qhead;
    unsigned nq; /* queries on qhead */
    jl_t *buckets[JL_BUCKETS];
    jl_t *pending;
    struct event *jl_ev;
    int jl_armed;
};

static struct lh_pres_s *pres_of(lh_worker_t *w)
{
    return w->pres;
}

/* ---- Namespace flags ---------------------------------------------------------------- */

const lh_ns_cfg_t *lh_presence_ns(lh_worker_t *w, const char *ch, size_t len)
{
    const lh_ns_cfg_t *ns = w->auth != NULL ? lh_auth_ns(w->auth, ch, len) : NULL;

    return ns;
}

int lh_presence_is(lh_worker_t *w, const char *ch, size_t len)
{
    const lh_ns_cfg_t *ns = lh_presence_ns(w, ch, len);

    return ns != NULL && ns->presence;
}

/* ---- Small buffers ---------------------------------------------------------------------- */

static int grow(char **p, size_t *cap, size_t need)
{
    size_t c = *cap ? *cap : 256;
    char *q;

    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    if ((q = realloc(*p, c)) == NULL)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

/* Appends s as a JSON string (quoted, escaped) to *p. */
static int put_json_str(char **p, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);

    if (grow(p, cap, *len + n * 6 + 3) < 0)
        return -ENOMEM;
    (*p)[(*len)++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch == '"' || ch == '\\') {
            (*p)[(*len)++] = '\\';
            (*p)[(*len)++] = (char)ch;
        } else if (ch < 0x20) {
            *len += (size_t)snprintf(*p + *len, 7, "\\u%04x", ch);
        } else {
            (*p)[(*len)++] = (char)ch;
        }
    }
    (*p)[(*len)++] = '"';
    return 0;
}

static void client_id(const lh_conn_t *c, char *out, size_t cap)
{
    snprintf(out, cap, "%016" PRIx64 "-%d-%" PRIu64, lh_node_id, (int)getpid(), c->id);
}

/* {"client":"..","user":"..","info":{..}|null,"node":".."} of c appended to *p. */
static int put_entry(char **p, size_t *len, size_t *cap, const lh_conn_t *c)
{
    char id[64], node[20];
    const char *info = lh_auth_info(c);

    client_id(c, id, sizeof(id));
    snprintf(node, sizeof(node), "%016" PRIx64, lh_node_id);
    if (grow(p, cap, *len + 64) < 0)
        return -ENOMEM;
    memcpy(*p + *len, "{\"client\":", 10);
    *len += 10;
    if (put_json_str(p, len, cap, id) < 0 || grow(p, cap, *len + 16) < 0)
        return -ENOMEM;
    memcpy(*p + *len, ",\"user\":", 8);
    *len += 8;
    if (put_json_str(p, len, cap, lh_auth_user(c)) < 0)
        return -ENOMEM;
    if (info == NULL)
        info = "null";
    if (grow(p, cap, *len + strlen(info) + 40) < 0)
        return -ENOMEM;
    *len += (size_t)sprintf(*p + *len, ",\"info\":%s,\"node\":", info);
    if (put_json_str(p, len, cap, node) < 0 || grow(p, cap, *len + 2) < 0)
        return -ENOMEM;
    (*p)[(*len)++] = '}';
    return 0;
}

/* ---- A worker's answer -------------------------------------------------------------- */

/* Adds h to an open-addressing set (0 is "free": a hash of 0 is noted in *zero). Returns
 * 1 when new, 0 when there, -ENOMEM. */
static int uset_add(uint64_t **set, size_t *cap, size_t *n, int *zero, uint64_t h)
{
    size_t i;

    if (h == 0) {
        int was = *zero;

        *zero = 1;
        if (!was)
            (*n)++;
        return !was;
    }
    if ((*n + 1) * 2 > *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        uint64_t *ns = calloc(nc, sizeof(*ns));

        if (ns == NULL)
            return -ENOMEM;
        for (size_t k = 0; k < *cap; k++) {
            if ((*set)[k] == 0)
                continue;
            for (i = (size_t)((*set)[k] * 0x9E3779B97F4A7C15ull) & (nc - 1); ns[i] != 0;
                 i = (i + 1) & (nc - 1))
                ;
            ns[i] = (*set)[k];
        }
        free(*set);
        *set = ns;
        *cap = nc;
    }
    for (i = (size_t)(h * 0x9E3779B97F4A7C15ull) & (*cap - 1); (*set)[i] != 0;
         i = (i + 1) & (*cap - 1))
        if ((*set)[i] == h)
            return 0;
    (*set)[i] = h;
    (*n)++;
    return 1;
}

/*
 * The live workers of this node: every slot in use (1 without shared memory). Starting
 * ones count too: during a reload the new generation's slots say "starting" until the
 * old one drains, while its workers already answer; counting only active and draining
 * ones let two answers of four complete a query (a reload's counts dipped). A worker
 * that starts and cannot answer yet costs a query node_timeout_ms, not a wrong count.
 */
static unsigned node_workers(void)
{
    unsigned n = 0;

    if (lh_shm == NULL)
        return 1;
    for (int i = 0; i < lh_shm->nslots; i++)
        n += atomic_load(&lh_shm->slots[i].state) != LH_SLOT_FREE;
    return n ? n : 1;
}

/*
 * This worker's answer to a query for channel ch: the line "<node> <pid> <workers>
 * <count> <users> <entries> <entries bytes>\n", then users 8-byte hashes, then the
 * entries (JSON objects separated by commas). *out is malloc'd. 0 or -ENOMEM.
 */
static int local_answer(lh_worker_t *w, const char *ch, size_t len, int stats, size_t max,
                        char **out, size_t *outlen)
{
    lh_chan_t *x = lh_pubsub_chan(w, ch, len);
    uint64_t *set = NULL;
    size_t cap = 0, nu = 0, count = 0, nent = 0, elen = 0, ecap = 0, hl, total;
    /* Half of what NATS carries for the users, half for the entries (less the head). */
    size_t half = (lh_nats_max_payload(w) - 512) / 2;
    size_t umax = half / 8 < ANSWER_USERS_MAX ? half / 8 : ANSWER_USERS_MAX;
    size_t emax = half - 200 < ANSWER_ENTRY_BYTES ? half - 200 : ANSWER_ENTRY_BYTES;
    int zero = 0, rc = 0, full = stats;
    char *ents = NULL, head[160], *buf;

    for (uint32_t i = 0; x != NULL && i < x->nsubs && rc == 0; i++) {
        const lh_conn_t *c = x->subs[i].c;
        const char *u = lh_auth_user(c);

        /* A connection on its way out (its close sent or its peer gone) is not listed: it
         * may take close_timeout_ms to end, and its leave comes then. */
        if (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT | LH_CF_EOF))
            continue;
        count++;
        if (u[0] != '\0' && nu < umax &&
            uset_add(&set, &cap, &nu, &zero, lh_metrics_chan_hash(u, strlen(u))) < 0)
            rc = -ENOMEM;
        if (!full && nent < max) {
            size_t before = elen;

            if (nent > 0 && grow(&ents, &ecap, elen + 1) == 0)
                ents[elen++] = ',';
            if (put_entry(&ents, &elen, &ecap, c) < 0)
                rc = -ENOMEM;
            if (elen > emax) {
                elen = before; /* it does not fit: the list ends before it */
                full = 1;
            } else {
                nent++;
            }
        }
    }
    hl = (size_t)snprintf(head, sizeof(head), "%016" PRIx64 " %d %u %zu %zu %zu %zu\n",
                          lh_node_id, (int)getpid(), node_workers(), count, nu, nent, elen);
    total = hl + nu * 8 + elen;
    buf = rc == 0 ? malloc(total) : NULL;
    if (buf == NULL) {
        free(set);
        free(ents);
        return -ENOMEM;
    }
    memcpy(buf, head, hl);
    {
        size_t k = 0;

        if (zero)
            memset(buf + hl + 8 * k++, 0, 8);
        for (size_t i = 0; i < cap; i++)
            if (set[i] != 0)
                memcpy(buf + hl + 8 * k++, &set[i], 8);
    }
    if (elen > 0)
        memcpy(buf + hl + nu * 8, ents, elen);
    free(set);
    free(ents);
    *out = buf;
    *outlen = total;
    return 0;
}

/* A query from NATS: "<L|S> <max> <channel>". */
static void query_heard(lh_worker_t *w, const char *q, size_t len, const char *reply)
{
    char *ans;
    size_t alen;
    const char *sp1, *sp2;
    unsigned long max;

    if (len < 5 || (q[0] != 'L' && q[0] != 'S') || q[1] != ' ')
        return;
    sp1 = q + 1;
    sp2 = memchr(sp1 + 1, ' ', len - 2);
    if (sp2 == NULL)
        return;
    max = strtoul(sp1 + 1, NULL, 10);
    if (max > w->cfg->presence.max_list)
        max = w->cfg->presence.max_list;
    len -= (size_t)(sp2 + 1 - q);
    if (!lh_channel_valid(sp2 + 1, len, LH_CHANNEL_MAX_LEN))
        return;
    if (local_answer(w, sp2 + 1, len, q[0] == 'S', max, &ans, &alen) < 0)
        return;
    if (lh_nats_reply(w, reply, ans, alen) < 0 && q[0] == 'L') {
        /* Refused (too large for this server after all?): the counts still go. */
        lh_log(LH_LOG_WARNING, "presence: an answer of %zu bytes was refused; sending the "
               "counts alone", alen);
        free(ans);
        if (local_answer(w, sp2 + 1, len, 1, max, &ans, &alen) < 0)
            return;
        lh_nats_reply(w, reply, ans, alen);
    }
    free(ans);
}

/* ---- Gathering ---------------------------------------------------------------------- */

static void q_unlink(lh_worker_t *w, presq_t *q)
{
    struct lh_pres_s *p = pres_of(w);

    if (q->prev)
        q->prev->next = q->next;
    else
        p->qhead = q->next;
    if (q->next)
        q->next->prev = q->prev;
    p->nq--;
}

static void q_free(presq_t *q)
{
    free(q->askers);
    free(q->nodes);
    free(q->seen);
    free(q->uset);
    free(q->list);
    free(q);
}

/* Merges one answer; 0, or -EINVAL for a malformed one (left out whole: nothing of it is
 * counted), or -ENOMEM. */
static int q_merge(presq_t *q, const char *d, size_t len)
{
    lh_pres_answer_t a;
    unsigned i;

    if (lh_pres_answer_parse(d, len, &a) < 0) {
        lh_m_inc(LH_M_PRES_BAD_ANSWERS);
        return -EINVAL;
    }
    for (i = 0; i < q->nseen; i++)
        if (q->seen[i].node == a.node && q->seen[i].pid == a.pid)
            return 0; /* twice (cannot happen on one NATS connection; harmless) */
    if (q->nseen == q->seencap && q->nseen < ANSWERS_MAX) {
        unsigned nc = q->seencap ? q->seencap * 2 : 8;
        void *ns = realloc(q->seen, nc * sizeof(*q->seen));

        if (ns == NULL)
            return -ENOMEM;
        q->seen = ns;
        q->seencap = nc;
    }
    if (q->nseen < q->seencap) {
        q->seen[q->nseen].node = a.node;
        q->seen[q->nseen++].pid = a.pid;
    }
    for (i = 0; i < q->nnodes && q->nodes[i].node != a.node; i++)
        ;
    if (i == q->nnodes && q->nnodes == q->nodecap && q->nnodes < NODES_MAX) {
        unsigned nc = q->nodecap ? q->nodecap * 2 : 4;
        void *nn = realloc(q->nodes, nc * sizeof(*q->nodes));

        if (nn == NULL)
            return -ENOMEM;
        q->nodes = nn;
        q->nodecap = nc;
    }
    if (i == q->nnodes && q->nnodes < q->nodecap) {
        q->nodes[i].node = a.node;
        q->nodes[i].expect = 0;
        q->nodes[i].got = 0;
        q->nnodes++;
    }
    if (i < q->nnodes) {
        q->nodes[i].got++;
        if (a.workers > q->nodes[i].expect)
            q->nodes[i].expect = a.workers;
    }
    q->count += a.count;
    for (size_t k = 0; k < a.nusers; k++) {
        uint64_t h;

        memcpy(&h, a.users + 8 * k, 8);
        if (uset_add(&q->uset, &q->ucap, &q->un, &q->uzero, h) < 0)
            return -ENOMEM;
    }
    /* Entries are whole objects separated by commas; take as many as fit max, and stop
     * at the first thing that is not one. */
    {
        const char *e = a.entries;
        size_t left = a.ebytes;

        for (size_t k = 0; k < a.nentries && q->nlisted < q->max; k++) {
            size_t j = lh_pres_entry_len(e, left);

            if (j == 0)
                break;
            if (grow(&q->list, &q->lcap, q->llen + j + 2) < 0)
                return -ENOMEM;
            if (q->nlisted > 0)
                q->list[q->llen++] = ',';
            memcpy(q->list + q->llen, e, j);
            q->llen += j;
            q->nlisted++;
            if (j < left && e[j] == ',')
                j++;
            e += j;
            left -= j;
        }
    }
    return 0;
}

/* 1 when every expected worker answered. */
static int q_complete(lh_worker_t *w, const presq_t *q)
{
    if (q->nnodes < 1 + lh_nats_peer_nodes(w))
        return 0;
    for (unsigned i = 0; i < q->nnodes; i++)
        if (q->nodes[i].got < q->nodes[i].expect)
            return 0;
    return 1;
}

static void q_finish(lh_worker_t *w, presq_t *q, int ok)
{
    lh_presence_result_t r;
    char *list = NULL;

    q->finished = 1;
    q_unlink(w, q);
    lh_metrics_observe_presence(lh_now_ns() - q->started_ns);
    {
        memset(&r, 0, sizeof(r));
        r.ok = ok;
        r.ch = q->ch;
        r.chlen = q->chlen;
        r.stats = q->stats;
        r.count = q->count;
        r.users = q->un;
        r.truncated = q->count > q->nlisted;
        if (!q->stats) {
            list = malloc(q->llen + 3);
            if (list != NULL) {
                list[0] = '[';
                if (q->llen)
                    memcpy(list + 1, q->list, q->llen);
                list[q->llen + 1] = ']';
                list[q->llen + 2] = '\0';
                r.list = list;
                r.list_len = q->llen + 2;
            } else {
                r.ok = 0;
            }
        }
        for (unsigned i = 0; i < q->nask; i++) {
            lh_conn_t *c = q->askers[i].c;

            if (c == NULL)
                continue;
            lh_conn_hold(c);
            q->askers[i].done(c, q->askers[i].arg, &r);
            lh_conn_release(c);
        }
        free(list);
    }
    q_free(q);
}

static int add_asker(presq_t *q, lh_conn_t *c, lh_presence_done_fn done, void *arg)
{
    if (q->nask == q->askcap) {
        unsigned nc = q->askcap ? q->askcap * 2 : 1;
        asker_t *na = realloc(q->askers, nc * sizeof(*na));

        if (na == NULL)
            return -ENOMEM;
        q->askers = na;
        q->askcap = nc;
    }
    q->askers[q->nask++] = (asker_t){c, done, arg};
    return 0;
}

/* An answer (or NULL at the deadline) for q. */
static int q_gather(lh_worker_t *w, void *arg, void *msg)
{
    presq_t *q = arg;

    if (msg == NULL) {
        q_finish(w, q, 1);
        return 1;
    }
    if (q_merge(q, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg)) == -ENOMEM) {
        q_finish(w, q, 0);
        return 1;
    }
    if (q_complete(w, q)) {
        q_finish(w, q, 1);
        return 1;
    }
    return 0;
}

int lh_presence_query(lh_conn_t *c, const char *ch, size_t len, int stats,
                      lh_presence_done_fn done, void *arg)
{
    lh_worker_t *w = c->w;
    struct lh_pres_s *p = pres_of(w);
    presq_t *q;
    char query[LH_CHANNEL_MAX_LEN + 32], *ans = NULL;
    size_t alen;
    int ql;

    if (p == NULL || len > LH_CHANNEL_MAX_LEN)
        return -EINVAL;
    /* Bounded: a query holds memory until its deadline, whatever the asker does. */
    {
        unsigned mine = 0;
        presq_t *same = NULL;

        for (presq_t *o = p->qhead; o != NULL; o = o->next) {
            for (unsigned i = 0; i < o->nask; i++)
                mine += o->askers[i].c == c;
            if (o->stats == stats && o->chlen == len && memcmp(o->ch, ch, len) == 0)
                same = o;
        }
        if (mine >= w->cfg->presence.max_queries_per_conn) {
            lh_m_inc(LH_M_PRES_REFUSED_CONN);
            return -EBUSY;
        }
        if (same != NULL) {
            /* The same question is being gathered: wait for its answer (begun at most
             * node_timeout_ms ago) rather than ask every worker again. */
            if (add_asker(same, c, done, arg) < 0)
                return -ENOMEM;
            lh_m_inc(stats ? LH_M_PRES_QUERIES_STATS : LH_M_PRES_QUERIES);
            lh_m_inc(LH_M_PRES_SHARED);
            return 0;
        }
    }
    if (p->nq >= w->cfg->presence.max_queries) { /* a gathering more would be one too many */
        lh_m_inc(LH_M_PRES_REFUSED_WORKER);
        return -ENOSPC;
    }
    if ((q = calloc(1, sizeof(*q))) == NULL)
        return -ENOMEM;
    if (add_asker(q, c, done, arg) < 0) {
        free(q);
        return -ENOMEM;
    }
    q->stats = stats;
    q->max = w->cfg->presence.max_list;
    memcpy(q->ch, ch, len);
    q->chlen = len;
    q->started_ns = lh_now_ns();
    q->next = p->qhead;
    if (p->qhead)
        p->qhead->prev = q;
    p->qhead = q;
    p->nq++;
    lh_m_inc(stats ? LH_M_PRES_QUERIES_STATS : LH_M_PRES_QUERIES);
    /* This worker's own part first (NATS does not echo a query to its sender): when it
     * is the whole cluster, that is the answer. */
    if (local_answer(w, ch, len, stats, w->cfg->presence.max_list, &ans, &alen) < 0 ||
        q_merge(q, ans, alen) == -ENOMEM) {
        free(ans);
        q_unlink(w, q);
        q_free(q);
        return -ENOMEM;
    }
    free(ans);
    if (q_complete(w, q)) {
        q_finish(w, q, 1);
        return 0;
    }
    ql = snprintf(query, sizeof(query), "%c %zu %.*s", stats ? 'S' : 'L',
                  w->cfg->presence.max_list, (int)len, ch);
    if (lh_nats_gather(w, query, (size_t)ql, w->cfg->presence.node_timeout_ms, q_gather, q) ==
        NULL) {
        q_unlink(w, q);
        q_free(q);
        return -EAGAIN;
    }
    return 0;
}

void lh_presence_conn_gone(lh_conn_t *c)
{
    struct lh_pres_s *p = pres_of(c->w);

    for (presq_t *q = p ? p->qhead : NULL; q != NULL; q = q->next)
        for (unsigned i = 0; i < q->nask; i++)
            if (q->askers[i].c == c)
                q->askers[i].c = NULL;
}

/* ---- The presence and presence-stats commands -------------------------------------- */

static void reply_done(lh_conn_t *c, void *arg, const lh_presence_result_t *r)
{
    char count[24], users[24], chname[LH_CHANNEL_MAX_LEN + 1];
    lh_header_t h[4];

    (void)arg;
    if (c->flags & LH_CF_DEAD)
        return;
    if (!r->ok) {
        lh_reply_error(c, r->stats ? "presence-stats" : "presence",
                       r->stats ? 14 : 8, 500, "presence: out of memory");
        return;
    }
    memcpy(chname, r->ch, r->chlen);
    chname[r->chlen] = '\0';
    snprintf(count, sizeof(count), "%" PRIu64, r->count);
    snprintf(users, sizeof(users), "%" PRIu64, r->users);
    h[0] = (lh_header_t){"channel", 7, chname, r->chlen};
    h[1] = (lh_header_t){"count", 5, count, strlen(count)};
    h[2] = (lh_header_t){"users", 5, users, strlen(users)};
    if (r->stats) {
        lh_reply_send(c, "presence-stats", h, 3, NULL, 0);
        return;
    }
    h[3] = (lh_header_t){"truncated", 9, r->truncated ? "true" : "false",
                         r->truncated ? 4 : 5};
    lh_reply_send(c, "presence", h, 4, r->list, r->list_len);
}

/* May c read ch's presence? 0, or an error reply was sent. */
static int may_read(lh_conn_t *c, lh_msg_t *m, const lh_ns_cfg_t *ns, const char *ch,
                    size_t cl)
{
    char why[512], q[300];
    int d;

    switch (ns->presence_read) {
    case LH_PRES_ANY:
        return 0;
    case LH_PRES_AUTHENTICATED:
        if (lh_auth_user(c)[0] != '\0')
            return 0;
        snprintf(why, sizeof(why), "presence of \"%s\" needs an authenticated user",
                 lh_printable(q, sizeof(q), ch, cl));
        break;
    case LH_PRES_SUBSCRIBE:
        d = lh_auth_may_subscribe(c->w->auth, c, ch, cl, NULL, why, sizeof(why));
        if (d == LH_PERM_ALLOW || lh_pubsub_subscribed(c, ch, cl))
            return 0;
        if (d == LH_PERM_WEBHOOK)
            snprintf(why, sizeof(why), "presence of a webhook-decided channel needs a "
                                       "subscription to it");
        break;
    case LH_PRES_NONE:
        snprintf(why, sizeof(why), "presence of \"%s\" is for the server API only",
                 lh_printable(q, sizeof(q), ch, cl));
        break;
    case LH_PRES_SUBSCRIBERS:
    default:
        if (lh_pubsub_subscribed(c, ch, cl))
            return 0;
        snprintf(why, sizeof(why), "presence of \"%s\" is for its subscribers",
                 lh_printable(q, sizeof(q), ch, cl));
        break;
    }
    lh_reply_error_to(c, m, 403, why);
    return -1;
}

static void on_presence(lh_conn_t *c, lh_msg_t *m, int stats)
{
    const char *ch;
    size_t cl;
    const lh_ns_cfg_t *ns;
    int r;

    ch = lh_lhttp_header(m->m, "channel", &cl);
    if (ch == NULL || !lh_channel_valid(ch, cl, c->w->cfg->limits.max_channel_bytes)) {
        lh_reply_error_to(c, m, 400, stats ? "presence-stats needs a channel header with a "
                                             "valid channel"
                                           : "presence needs a channel header with a valid "
                                             "channel");
        return;
    }
    ns = lh_presence_ns(c->w, ch, cl);
    if (ns == NULL || !ns->presence) {
        lh_reply_error_to(c, m, 404, "not a presence channel (its namespace has no presence)");
        return;
    }
    if (may_read(c, m, ns, ch, cl) < 0)
        return;
    r = lh_presence_query(c, ch, cl, stats, reply_done, NULL);
    if (r == -EBUSY)
        lh_reply_error_to(c, m, 429, "too many presence queries in flight on this connection "
                                     "(presence.max_queries_per_conn)");
    else if (r == -ENOSPC)
        lh_reply_error_to(c, m, 429, "too many presence queries in flight on this worker "
                                     "(presence.max_queries): try again");
    else if (r == -EAGAIN)
        lh_reply_error_to(c, m, 503, "presence unavailable: NATS is not reachable");
    else if (r < 0)
        lh_reply_error_to(c, m, 500, "presence: out of memory");
}

static void presence_on_message(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    on_presence(c, m, 0);
}

static void stats_on_message(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    on_presence(c, m, 1);
}

void lh_presence_register(void)
{
    static const lh_processor_t p = {NULL, presence_on_message, NULL};
    static const lh_processor_t s = {NULL, stats_on_message, NULL};

    lh_dispatch_register_processor("presence", &p, NULL);
    lh_dispatch_register_processor("presence-stats", &s, NULL);
}

/* ---- Join and leave ------------------------------------------------------------------ */

static size_t jl_bucket(const char *name, size_t len)
{
    return (size_t)(lh_metrics_chan_hash(name, len) & (JL_BUCKETS - 1));
}

/* Publishes one message on channel x->name: locally and, when someone else may want it,
 * through NATS (as pubsub's publish does, without history: join_leave excludes it). */
static void jl_publish(lh_worker_t *w, const jl_t *x, const char *msg, size_t len)
{
    lh_buf_t *frame = NULL;

    lh_pubsub_deliver_local(w, x->name, x->len, &frame, msg, len);
    lh_buf_unref(frame);
    if (lh_nats_needed(w) || lh_interest_elsewhere(lh_metrics_chan_hash(x->name, x->len)))
        lh_nats_publish(w, x->name, x->len, msg, len);
    lh_m_inc(LH_M_JOIN_LEAVE_MSGS);
}

/* One message for events [from, to) of kind k of x. */
static void jl_send(lh_worker_t *w, jl_t *x, int k, size_t from, size_t to)
{
    const char *cmd = k == EV_JOIN ? "join" : "leave";
    char *b = NULL;
    size_t len = 0, cap = 0;

    if (to - from == 1) {
        /* One event: in headers. */
        if (grow(&b, &cap, 64 + x->len + strlen(x->ev[k][from].hdr)) == 0) {
            len = (size_t)sprintf(b, "LHTTP/1.0 %s\r\nchannel:%.*s\r\n%s\r\n", cmd,
                                  (int)x->len, x->name, x->ev[k][from].hdr);
            jl_publish(w, x, b, len);
        }
        free(b);
        return;
    }
    if (grow(&b, &cap, 128 + x->len) < 0)
        return;
    len = (size_t)sprintf(b, "LHTTP/1.0 %s\r\nchannel:%.*s\r\ncount:%zu\r\n\r\n[", cmd,
                          (int)x->len, x->name, to - from);
    for (size_t i = from; i < to; i++) {
        size_t el = strlen(x->ev[k][i].json);

        if (grow(&b, &cap, len + el + 2) < 0) {
            free(b);
            return;
        }
        if (i > from)
            b[len++] = ',';
        memcpy(b + len, x->ev[k][i].json, el);
        len += el;
    }
    b[len++] = ']';
    jl_publish(w, x, b, len);
    free(b);
}

static void jl_flush_one(lh_worker_t *w, jl_t *x)
{
    size_t batch = w->cfg->presence.join_leave_batch;

    /* Leaves first: a connection that left and came back within the delay did so in
     * that order (a join then a leave cancel out). */
    for (int k = EV_LEAVE; k >= EV_JOIN; k--) {
        for (size_t i = 0; i < x->n[k]; i += batch)
            jl_send(w, x, k, i, i + batch < x->n[k] ? i + batch : x->n[k]);
        lh_m_add(LH_M_JOIN_LEAVE_ENTRIES, x->n[k]);
        for (size_t i = 0; i < x->n[k]; i++) {
            free(x->ev[k][i].json);
            free(x->ev[k][i].hdr);
        }
        x->n[k] = 0;
    }
}

static void jl_free(jl_t *x)
{
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < x->n[k]; i++) {
            free(x->ev[k][i].json);
            free(x->ev[k][i].hdr);
        }
        free(x->ev[k]);
    }
    free(x);
}

static void jl_flush_all(lh_worker_t *w)
{
    struct lh_pres_s *p = pres_of(w);
    jl_t *x;

    p->jl_armed = 0;
    while ((x = p->pending) != NULL) {
        jl_t **pp = &p->buckets[jl_bucket(x->name, x->len)];

        p->pending = x->pnext;
        while (*pp != x)
            pp = &(*pp)->next;
        *pp = x->next;
        jl_flush_one(w, x);
        jl_free(x);
    }
}

static void jl_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    lh_worker_t *w = arg;

    w->now_ms = lh_now_ms();
    jl_flush_all(w);
}

/* "user:U\r\nclient:ID\r\ninfo:JSON\r\n" of c (malloc'd), or NULL. The user id is a
 * valid header value (auth.c checks it) and info is compact JSON, on one line: any CR or
 * LF it could hold would be whitespace, and becomes a space. */
static char *event_headers(const lh_conn_t *c)
{
    const char *info = lh_auth_info(c), *user = lh_auth_user(c);
    char id[64], *h;
    size_t n;

    client_id(c, id, sizeof(id));
    if (info == NULL)
        info = "null";
    n = strlen(user) + strlen(id) + strlen(info) + 32;
    if ((h = malloc(n)) == NULL)
        return NULL;
    n = (size_t)snprintf(h, n, "user:%s\r\nclient:%s\r\ninfo:", user, id);
    for (const char *s = info; *s != '\0'; s++)
        h[n++] = *s == '\r' || *s == '\n' ? ' ' : *s;
    memcpy(h + n, "\r\n", 3);
    return h;
}

static void jl_event(lh_conn_t *c, const char *name, size_t len, int k)
{
    lh_worker_t *w = c->w;
    struct lh_pres_s *p = pres_of(w);
    size_t b = jl_bucket(name, len), elen = 0, ecap = 0;
    jl_t *x;
    char *e = NULL, *h;

    if (p == NULL || p->jl_ev == NULL)
        return;
    for (x = p->buckets[b]; x != NULL && (x->len != len || memcmp(x->name, name, len)); x = x->next)
        ;
    if (k == EV_LEAVE && x != NULL) {
        /* Its join has not gone out yet: both cancel. */
        for (size_t i = 0; i < x->n[EV_JOIN]; i++) {
            if (x->ev[EV_JOIN][i].cid == c->id) {
                free(x->ev[EV_JOIN][i].json);
                free(x->ev[EV_JOIN][i].hdr);
                /* Keep the order of the others. */
                memmove(&x->ev[EV_JOIN][i], &x->ev[EV_JOIN][i + 1],
                        (x->n[EV_JOIN] - i - 1) * sizeof(jl_ev_t));
                x->n[EV_JOIN]--;
                return;
            }
        }
    }
    if (x == NULL) {
        if ((x = calloc(1, sizeof(*x) + len + 1)) == NULL)
            return;
        memcpy(x->name, name, len);
        x->len = len;
        x->next = p->buckets[b];
        p->buckets[b] = x;
        x->pnext = p->pending;
        p->pending = x;
    }
    if (x->n[k] == x->cap[k]) {
        size_t nc = x->cap[k] ? x->cap[k] * 2 : 8;
        jl_ev_t *ne = realloc(x->ev[k], nc * sizeof(*ne));

        if (ne == NULL)
            return;
        x->ev[k] = ne;
        x->cap[k] = nc;
    }
    if (put_entry(&e, &elen, &ecap, c) < 0 || grow(&e, &ecap, elen + 1) < 0 ||
        (h = event_headers(c)) == NULL) {
        free(e);
        return;
    }
    e[elen] = '\0';
    x->ev[k][x->n[k]].json = e;
    x->ev[k][x->n[k]].hdr = h;
    x->ev[k][x->n[k]++].cid = c->id;
    if (x->n[k] >= w->cfg->presence.join_leave_batch) {
        /* A full batch goes out on this loop pass, but never from here: the caller is
         * changing a channel's subscriber list, and a delivery can end a subscriber (a
         * write that fails destroys it), the last of which frees the channel. */
        event_del(p->jl_ev);
        event_active(p->jl_ev, EV_TIMEOUT, 1);
        p->jl_armed = 1;
        return;
    }
    if (!p->jl_armed) {
        struct timeval tv = {(time_t)(w->cfg->presence.join_leave_delay_ms / 1000),
                             (suseconds_t)(w->cfg->presence.join_leave_delay_ms % 1000) * 1000};

        event_add(p->jl_ev, &tv);
        p->jl_armed = 1;
    }
}

void lh_presence_joined(lh_conn_t *c, const char *ch, size_t len)
{
    const lh_ns_cfg_t *ns = lh_presence_ns(c->w, ch, len);

    /* A connection moving between workers stays present: no join, no leave. */
    if (ns != NULL && ns->join_leave && !(c->flags & LH_CF_HANDOFF))
        jl_event(c, ch, len, EV_JOIN);
}

void lh_presence_left(lh_conn_t *c, const char *ch, size_t len)
{
    const lh_ns_cfg_t *ns = lh_presence_ns(c->w, ch, len);

    if (ns != NULL && ns->join_leave && !(c->flags & LH_CF_HANDOFF))
        jl_event(c, ch, len, EV_LEAVE);
}

/* ---- Leaves nobody sent: a worker or node that died --------------------------------- */

typedef struct {
    lh_worker_t *w;
    char **names;
    size_t n, cap;
    int failed;
} jl_names_t;

static void collect_jl(const lh_chan_t *ch, void *arg)
{
    jl_names_t *l = arg;
    const lh_ns_cfg_t *ns = lh_presence_ns(l->w, ch->name, ch->len);
    char *s;

    if (ns == NULL || !ns->join_leave || l->failed)
        return;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        char **nn = realloc(l->names, nc * sizeof(*nn));

        if (nn == NULL) {
            l->failed = 1;
            return;
        }
        l->names = nn;
        l->cap = nc;
    }
    if ((s = malloc(ch->len + 1)) == NULL) {
        l->failed = 1;
        return;
    }
    memcpy(s, ch->name, ch->len);
    s[ch->len] = '\0';
    l->names[l->n++] = s;
}

/*
 * Every client whose id starts with prefix ("<node>-" or "<node>-<pid>-") left without a
 * leave event: each join_leave channel with subscribers here gets one leave, to this
 * worker's subscribers only (every worker of every node does the same for its own), with
 * a "gone" header instead of a user: a member list drops the clients that match.
 */
static void gone_leaves(lh_worker_t *w, const char *prefix)
{
    jl_names_t l = {w, NULL, 0, 0, 0};
    char msg[LH_CHANNEL_MAX_LEN + 128];

    /* Pending events first: a join of one of those clients not sent yet is dropped by the
     * client's list all the same, and the order stays join, then leave. */
    jl_flush_all(w);
    lh_pubsub_each_chan(w, collect_jl, &l);
    for (size_t i = 0; i < l.n; i++) {
        lh_buf_t *frame = NULL;
        int n = snprintf(msg, sizeof(msg), "LHTTP/1.0 leave\r\nchannel:%s\r\ngone:%s\r\n\r\n",
                         l.names[i], prefix);

        lh_pubsub_deliver_local(w, l.names[i], strlen(l.names[i]), &frame, msg, (size_t)n);
        lh_buf_unref(frame);
        lh_m_inc(LH_M_JOIN_LEAVE_MSGS);
        free(l.names[i]);
    }
    if (l.n > 0 || l.failed)
        lh_log(l.failed ? LH_LOG_WARNING : LH_LOG_INFO, "presence: clients %s* gone without "
               "leaving: told the subscribers of %zu join_leave channel%s%s", prefix, l.n,
               l.n == 1 ? "" : "s", l.failed ? " (out of memory: not all)" : "");
    free(l.names);
}

void lh_presence_peer_gone(lh_worker_t *w, uint64_t node, int pid)
{
    char prefix[48];

    if (pres_of(w) == NULL)
        return;
    if (pid > 0)
        snprintf(prefix, sizeof(prefix), "%016" PRIx64 "-%d-", node, pid);
    else
        snprintf(prefix, sizeof(prefix), "%016" PRIx64 "-", node);
    gone_leaves(w, prefix);
}

void lh_presence_worker_gone(lh_worker_t *w, int pid)
{
    if (pid == (int)getpid())
        return;
    lh_presence_peer_gone(w, lh_node_id, pid);
    if (lh_nats_say_gone(w, pid) < 0)
        lh_log(LH_LOG_WARNING, "presence: NATS is down: the other workers and nodes are not "
               "told that worker %d left without its leave events", pid);
}

/* ---- Life cycle ------------------------------------------------------------------------ */

int lh_presence_init(lh_worker_t *w)
{
    struct lh_pres_s *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return -ENOMEM;
    p->jl_ev = evtimer_new(w->base, jl_timer_cb, w);
    if (p->jl_ev == NULL) {
        free(p);
        return -ENOMEM;
    }
    w->pres = p;
    return 0;
}

void lh_presence_free(lh_worker_t *w)
{
    struct lh_pres_s *p = pres_of(w);

    if (p == NULL)
        return;
    /* What is still pending goes out (a stopping worker's last leaves). */
    jl_flush_all(w);
    while (p->qhead != NULL) {
        presq_t *q = p->qhead;

        q_unlink(w, q);
        q_free(q);
    }
    event_free(p->jl_ev);
    free(p);
    w->pres = NULL;
}

void lh_presence_query_heard(lh_worker_t *w, const char *q, size_t len, const char *reply)
{
    query_heard(w, q, len, reply);
}

void lh_presence_flush(lh_worker_t *w)
{
    struct lh_pres_s *p = pres_of(w);

    if (p == NULL)
        return;
    if (p->pending != NULL) {
        uint64_t before = lh_ctr->v[LH_M_JOIN_LEAVE_ENTRIES];
        int r;

        jl_flush_all(w);
        /* The worker is leaving: make sure its last leaves reach NATS first. */
        r = lh_nats_flush_at_exit(w, 1000);
        lh_log(r == 0 ? LH_LOG_INFO : LH_LOG_WARNING, "presence: %llu join/leave events sent "
               "on the way out%s", (unsigned long long)(lh_ctr->v[LH_M_JOIN_LEAVE_ENTRIES] - before),
               r == 0 ? "" : r == -ENOTCONN ? " (NATS not connected: lost)" : " (NATS flush timed out)");
    }
}
