/*
 * Node-wide metrics: every worker counts into its own slot of memory shared with the
 * master (one writer per slot, relaxed atomic stores, no locks on the hot path); the
 * process answering /metrics sums all slots plus the "retired" totals into which the
 * master folds a worker's counts when it leaves, so counters never go down.
 */
#ifndef LH_METRICS_H
#define LH_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Counters (monotonic) and gauges, each one uint64 in a slot. */
enum {
    LH_M_WS_ACCEPTED,
    LH_M_MSGS_IN,
    LH_M_MSGS_OUT,
    LH_M_BYTES_IN,
    LH_M_BYTES_OUT,
    LH_M_PUBLISH_WS,
    LH_M_PUBLISH_HTTP,
    LH_M_DELIVERIES,
    LH_M_FRAMES_BUILT,
    LH_M_SLOW_CLOSED,
    LH_M_SLOW_DROPPED,
    LH_M_NATS_MSGS_IN,
    LH_M_NATS_MSGS_OUT,
    LH_M_NATS_BYTES_IN,
    LH_M_NATS_BYTES_OUT,
    LH_M_NATS_RECONNECTS,
    LH_M_NATS_PUBLISH_FAILED,
    LH_M_NATS_PUBLISH_SKIPPED,
    LH_M_NATS_STALLS,
    LH_M_NATS_POSSIBLY_LOST,
    LH_M_NATS_DROPPED,
    LH_M_LHTTP_ERRORS,
    LH_M_TCP_ACCEPTED,
    LH_M_CONN_RESET_EXPIRED,
    /* Closes by code: LH_M_CLOSE_BASE + lh_metrics_close_index(code). */
    LH_M_CLOSE_BASE,
    LH_M_CLOSE_END = LH_M_CLOSE_BASE + 16,
    /* Handshake rejections by reason: LH_M_REJECT_BASE + LH_REJ_*. */
    LH_M_REJECT_BASE = LH_M_CLOSE_END,
    LH_M_REJECT_END = LH_M_REJECT_BASE + 11,
    /* HTTP requests: LH_M_HTTP_BASE + endpoint * LH_HTTP_NSTATUS + status index. */
    LH_M_HTTP_BASE = LH_M_REJECT_END,
    LH_M_HTTP_END = LH_M_HTTP_BASE + 7 * 20,
    /* Upstream requests by result: LH_M_UPSTREAM_BASE + LH_UP_*. */
    LH_M_UPSTREAM_BASE = LH_M_HTTP_END,
    LH_M_UPSTREAM_END = LH_M_UPSTREAM_BASE + 8,
    /* Webhooks by kind and result: LH_M_WEBHOOK_BASE + LH_WH_* * LH_UP_N + LH_UP_*. */
    LH_M_WEBHOOK_BASE = LH_M_UPSTREAM_END,
    LH_M_WEBHOOK_END = LH_M_WEBHOOK_BASE + 5 * 6,
    /* Authentication failures by reason: LH_M_AUTH_FAIL_BASE + LH_AUTH_R_*. */
    LH_M_AUTH_FAIL_BASE = LH_M_WEBHOOK_END,
    LH_M_AUTH_FAIL_END = LH_M_AUTH_FAIL_BASE + 16,
    /* Refused subscribes and publishes: LH_M_DENIED_BASE + action * (LH_NS_LABELS + 1) +
     * the namespace's label index (lh_metrics_ns_index; LH_NS_LABELS: beyond the table). */
    LH_M_DENIED_BASE = LH_M_AUTH_FAIL_END,
    LH_M_DENIED_END = LH_M_DENIED_BASE + 2 * (64 + 1),
    /* Server API requests: disconnect, unsubscribe. */
    LH_M_API_DISCONNECT = LH_M_DENIED_END,
    LH_M_API_UNSUBSCRIBE,
    LH_M_API_DISCONNECTED, /* connections it closed on this worker */
    LH_M_API_UNSUBSCRIBED, /* subscriptions it ended on this worker */
    LH_M_RULES_UNSUBSCRIBED, /* subscriptions a reload's rules ended */
    LH_M_HIST_STORED,        /* history messages stored (acknowledged by JetStream) */
    LH_M_HIST_PUB_FAILED,    /* history publishes refused (503) */
    LH_M_HIST_RECOVERED,     /* recoveries that succeeded */
    LH_M_HIST_NOT_RECOVERED, /* recoveries answered recovered:false */
    LH_M_HIST_READS,         /* history commands */
    LH_M_HIST_READS_JS,      /* messages read back from JetStream */
    LH_M_HIST_SENT,          /* messages sent by recoveries and reads */
    LH_M_HIST_GAPS,          /* messages that arrived ahead of the chain */
    LH_M_HIST_GAP_LOST,      /* gaps that could not be filled */
    /* Histograms: buckets (not cumulative), then sum, then count. */
    LH_M_LAT_BASE,
    LH_M_LAT_END = LH_M_LAT_BASE + 16 + 2,
    LH_M_SIZE_BASE = LH_M_LAT_END,
    LH_M_SIZE_END = LH_M_SIZE_BASE + 12 + 2,
    LH_M_WHLAT_BASE = LH_M_SIZE_END, /* subscribe/publish webhook decisions */
    LH_M_WHLAT_END = LH_M_WHLAT_BASE + 16 + 2,
    LH_M_JSLAT_BASE = LH_M_WHLAT_END, /* JetStream publish acknowledgements */
    LH_M_JSLAT_END = LH_M_JSLAT_BASE + 16 + 2,
    LH_M_TLSLAT_BASE = LH_M_JSLAT_END, /* TLS handshakes that succeeded */
    LH_M_TLSLAT_END = LH_M_TLSLAT_BASE + 16 + 2,
    /* TLS handshakes: LH_M_TLS_HS_BASE + LH_TLS_R_* * LH_TLS_V_N + LH_TLS_V_*. */
    LH_M_TLS_HS_BASE = LH_M_TLSLAT_END,
    LH_M_TLS_HS_END = LH_M_TLS_HS_BASE + 8 * 3,
    /* TLS errors after the handshake: LH_M_TLS_ERR_BASE + LH_TLS_E_*. */
    LH_M_TLS_ERR_BASE = LH_M_TLS_HS_END,
    LH_M_TLS_ERR_END = LH_M_TLS_ERR_BASE + 2,
    LH_M_PRESQ_BASE = LH_M_TLS_ERR_END, /* presence queries: from the command to the answer */
    LH_M_PRESQ_END = LH_M_PRESQ_BASE + 16 + 2,
    LH_M_PRES_QUERIES = LH_M_PRESQ_END, /* presence queries by kind: list, stats */
    LH_M_PRES_QUERIES_STATS,
    LH_M_JOIN_LEAVE_MSGS,    /* join/leave messages this worker built (one per batch) */
    LH_M_JOIN_LEAVE_ENTRIES, /* join/leave events they carried */
    LH_M_PRES_REFUSED_CONN,  /* queries refused: the connection had its share in flight */
    LH_M_PRES_REFUSED_WORKER, /* queries refused: the worker had presence.max_queries */
    LH_M_PRES_BAD_ANSWERS,   /* answers from NATS that were not valid (left out) */
    LH_M_PRES_SHARED,        /* queries answered by a gather of the same query already running */
    /* Connection handoff (handoff.c): connections sent and taken over, records that
     * could not be used, refusals by reason (LH_M_HANDOFF_REFUSED_BASE + LH_HOR_*), and
     * the messages the taking side sent from its buffer or skipped as delivered. */
    LH_M_HANDOFF_SENT,
    LH_M_HANDOFF_ADOPTED,
    LH_M_HANDOFF_FAILED,
    LH_M_HANDOFF_REFUSED_BASE,
    LH_M_HANDOFF_REFUSED_END = LH_M_HANDOFF_REFUSED_BASE + 8,
    LH_M_HANDOFF_REPLAYED = LH_M_HANDOFF_REFUSED_END,
    LH_M_HANDOFF_SKIPPED,
    LH_M_HANDOFF_OVERFLOW,
    LH_M_NCOUNTERS,

    /* Gauges: not folded into the retired totals. */
    LH_G_WS_OPEN = LH_M_NCOUNTERS,
    LH_G_HTTP_OPEN,
    LH_G_SUBSCRIPTIONS,
    LH_G_CHANNELS,
    LH_G_NATS_UP,
    LH_G_SEND_QUEUE_BYTES,
    LH_G_CHANNELS_UNTRACKED,
    LH_G_NATS_PEERS,
    LH_G_PRESENCE_ENTRIES, /* subscriptions to presence channels on this worker */
    LH_M_NVALUES
};

enum { LH_REJ_BAD_REQUEST, LH_REJ_VERSION, LH_REJ_KEY, LH_REJ_ORIGIN, LH_REJ_METHOD,
       LH_REJ_LIMITS, LH_REJ_TIMEOUT, LH_REJ_OVERLOAD, LH_REJ_NOT_UPGRADE, LH_REJ_BACKEND,
       LH_REJ_AUTH, LH_REJ_N };
enum { LH_EP_WEBSOCKET, LH_EP_PUBLISH, LH_EP_LIVEZ, LH_EP_READYZ, LH_EP_METRICS, LH_EP_STATIC,
       LH_EP_OTHER, LH_EP_N };
enum { LH_UP_OK, LH_UP_HTTP_ERROR, LH_UP_REFUSED, LH_UP_TIMEOUT, LH_UP_FAILED, LH_UP_LIMITED,
       LH_UP_N };
enum { LH_WH_COMMAND, LH_WH_CONNECT, LH_WH_DISCONNECT, LH_WH_SUBSCRIBE, LH_WH_PUBLISH,
       LH_WH_N };
/* Authentication failures: the token verdicts (LH_JWT_* but LH_JWT_OK), then these. */
enum { LH_AUTH_R_MISSING = 12, LH_AUTH_R_OTHER_USER, LH_AUTH_R_NOT_REFRESHED,
       LH_AUTH_R_WEBHOOK, LH_AUTH_R_N };
_Static_assert(LH_M_AUTH_FAIL_END - LH_M_AUTH_FAIL_BASE == LH_AUTH_R_N, "auth slots");
#define LH_NS_LABELS 64
enum { LH_ACT_SUBSCRIBE, LH_ACT_PUBLISH };
/* Why a connection was not handed over (lhttpd_handoff_refused_total{reason}). */
enum { LH_HOR_TLS, LH_HOR_HTTP, LH_HOR_UPSTREAM, LH_HOR_MODULE, LH_HOR_BUSY, LH_HOR_TOO_BIG,
       LH_HOR_PEER, LH_HOR_CHANGED, LH_HOR_N };
_Static_assert(LH_M_WEBHOOK_END - LH_M_WEBHOOK_BASE == LH_WH_N * LH_UP_N, "webhook slots");
#define LH_HTTP_NSTATUS 20
/* TLS handshake results (plain_port: a TLS ClientHello on a plain listener), versions
 * and errors after the handshake. */
enum { LH_TLS_R_OK, LH_TLS_R_RESUMED, LH_TLS_R_FAILED, LH_TLS_R_HTTP, LH_TLS_R_TIMEOUT,
       LH_TLS_R_EOF, LH_TLS_R_SNI, LH_TLS_R_PLAIN_PORT, LH_TLS_R_N };
enum { LH_TLS_V_NONE, LH_TLS_V_12, LH_TLS_V_13, LH_TLS_V_N };
enum { LH_TLS_E_RENEG, LH_TLS_E_PROTOCOL, LH_TLS_E_N };
_Static_assert(LH_M_TLS_HS_END - LH_M_TLS_HS_BASE == LH_TLS_R_N * LH_TLS_V_N, "tls slots");
_Static_assert(LH_M_TLS_ERR_END - LH_M_TLS_ERR_BASE == LH_TLS_E_N, "tls error slots");

typedef struct {
    _Atomic uint64_t v[LH_M_NVALUES];
} lh_counters_t;

/* A slot is STARTING from fork until its generation serves (so that during a reload the
 * new and old worker with the same number never both show as active). */
enum { LH_SLOT_FREE = 0, LH_SLOT_ACTIVE, LH_SLOT_DRAINING, LH_SLOT_STARTING };

typedef struct {
    _Atomic int32_t state; /* LH_SLOT_*, written by the master */
    _Atomic int32_t index; /* the worker's number within its generation */
    _Atomic int32_t pid;
    _Atomic uint32_t generation;
    lh_counters_t c;       /* written by the worker only */
} lh_slot_t;

/* Channels each worker publishes (as 64-bit name hashes) for the node-wide distinct
 * count; past this, lhttpd_channels is a lower bound (lhttpd_channels_untracked > 0). */
#define LH_CHAN_TRACK 65536
/* Interest filter: per slot, one-byte counters indexed by a channel's name hash (a
 * counting Bloom filter with one hash). A worker adds 1 for each channel it has and
 * takes it away when the channel goes; another worker reads "maybe has it" (> 0) or
 * "has it not" (0). Collisions can only say "maybe": never a missed delivery, at worst
 * a NATS publish nobody needed. A counter at 255 stays there. */
#define LH_INTEREST_BUCKETS (1u << 18)

/*
 * The shared block: this header, then one slot of each table below per worker process
 * that may be alive at once (max_workers_alive, fixed when the master starts). A worker
 * is only ever started with a slot: the channel table, the interest filter and accept
 * balancing all find the node's workers through their slots. The table pointers are
 * set once by the master before the first fork and point into the same mapping, which
 * every worker inherits at the same address.
 */
typedef struct {
    _Atomic uint32_t seq; /* odd while the master folds a slot into retired */
    _Atomic uint32_t generation;
    _Atomic uint32_t workers_active, workers_draining;
    _Atomic uint64_t reloads_ok, reloads_failed;
    _Atomic uint64_t upgrades_ok, upgrades_failed; /* binary upgrades in place */
    _Atomic uint64_t worker_restarts;
    /* The namespaces that lhttpd_permission_denied_total names: appended by the master
     * (lh_metrics_ns_register, before it forks or tells workers of new rules), read by
     * everyone; a name keeps its index for the life of the node. */
    _Atomic uint32_t nns;
    char ns_names[LH_NS_LABELS][256];
    lh_counters_t retired;
    int nslots;
    lh_slot_t *slots;
    /* Per slot: how many hashes, then the hashes (pages are touched only when used). */
    _Atomic uint32_t *nchan;
    _Atomic uint64_t (*chan)[LH_CHAN_TRACK];
    /* Slots in use (not FREE), one bit each, (nslots + 63) / 64 words. */
    _Atomic uint64_t *used;
    _Atomic uint32_t *interest_dirty;
    _Atomic uint8_t (*interest)[LH_INTEREST_BUCKETS];
} lh_shm_t;

/* The shared block (created by the master before any fork), or a private one. */
extern lh_shm_t *lh_shm;
/* This process's counters: its slot, or a private block when it has none. */
extern lh_counters_t *lh_ctr;
/* This process's slot in lh_shm (lh_metrics_use_slot), -1 when it has none. */
extern int lh_shm_slot;

/* ---- shm.c: the shared block and its slots ---- */

/* Creates the shared block with nslots worker slots (1 .. LH_MAX_WORKERS_ALIVE);
 * 0 or -errno. */
int lh_metrics_init(int nslots);
/* The block's memfd (-1 without one): what a binary upgrade passes to the new image. */
int lh_metrics_shm_fd(void);
/* In a master's new image after exec: maps the block of fd (nslots slots) at addr,
 * where the old image had it (the header's pointers and every worker's mapping point
 * there). 0, or -errno (-EADDRNOTAVAIL: not there, or not of this layout). */
int lh_metrics_attach(int fd, uintptr_t addr, int nslots);
/* The master: gives every namespace of the list (n names) a label index, keeping those
 * that have one. Without shared memory it does nothing. */
void lh_metrics_ns_register(const char *const *names, size_t n);
/* The label index of namespace name[0..len), or LH_NS_LABELS when it has none. */
unsigned lh_metrics_ns_index(const char *name, size_t len);
/* The size of the shared block for nslots slots, in bytes (address space: a page is
 * backed by memory only once a worker touches it). */
size_t lh_metrics_shm_bytes(int nslots);
/* In a worker: use slot i. */
void lh_metrics_use_slot(int i);
/*
 * For accept balancing: this worker's open connections and the average over the active
 * workers of its generation. Returns 0, or -1 when there is no shared block or no peer.
 */
int lh_metrics_load(uint64_t *mine, uint64_t *avg);
/* In the master: a free slot for a new worker (marked starting), or -1 when all
 * lh_shm->nslots are taken (or there is no shared block). */
int lh_metrics_slot_alloc(int index, int pid, unsigned generation);
/* In the master: fold a leaving worker's counters into retired and free its slot. */
void lh_metrics_slot_release(int slot);

/* ---- Counting (inline): this process's counters ---- */

/* Adds n to counter i of this process (single writer: no atomic read-modify-write). */
static inline void lh_m_add(unsigned i, uint64_t n)
{
    _Atomic uint64_t *p = &lh_ctr->v[i];

    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void lh_m_inc(unsigned i)
{
    lh_m_add(i, 1);
}

static inline void lh_m_sub(unsigned i, uint64_t n)
{
    _Atomic uint64_t *p = &lh_ctr->v[i];

    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) - n,
                          memory_order_relaxed);
}

static inline void lh_m_set(unsigned i, uint64_t n)
{
    atomic_store_explicit(&lh_ctr->v[i], n, memory_order_relaxed);
}

static inline uint64_t lh_m_get(unsigned i)
{
    return atomic_load_explicit(&lh_ctr->v[i], memory_order_relaxed);
}

/* ---- shm.c: the node-wide channel table ---- */

/*
 * Distinct-channel tracking (the worker's own slot only). lh_metrics_chan_add returns the
 * entry's index (keep it for removal), or -1 when the slot's table is full; remove swaps
 * the last entry into idx and returns the index that entry had (its owner must update
 * its stored index to idx), or -1 when idx was the last.
 */
int lh_metrics_chan_add(uint64_t hash);
int lh_metrics_chan_remove(int idx);
uint64_t lh_metrics_chan_hash(const char *name, size_t len);

/* ---- interest.c ---- */

/*
 * The node's interest filter (see LH_INTEREST_BUCKETS): this worker gained or lost a
 * channel (hash from lh_metrics_chan_hash); and whether another worker of this node may
 * have it (1), or certainly has not (0). Without a shared block (a worker on its own)
 * there is no other worker: 0.
 */
void lh_interest_add(uint64_t hash);
void lh_interest_remove(uint64_t hash);
int lh_interest_elsewhere(uint64_t hash);

/* ---- metrics.c: labels, histograms, rendering ---- */

/* Index of a close code among the labelled ones. */
unsigned lh_metrics_close_index(unsigned code);
/* Index of an HTTP status among the labelled ones. */
unsigned lh_metrics_status_index(int status);
/* Histogram observations. */
void lh_metrics_observe_latency_ns(uint64_t ns);
void lh_metrics_observe_size(uint64_t bytes);
/* How long a subscribe or publish webhook took to decide. */
void lh_metrics_observe_webhook(uint64_t ns);
/* How long JetStream took to acknowledge a history publish. */
void lh_metrics_observe_js(uint64_t ns);
/* How long a TLS handshake took, accept to Finished. */
void lh_metrics_observe_tls_handshake(uint64_t ns);
/* A presence query answered after ns nanoseconds. */
void lh_metrics_observe_presence(uint64_t ns);

struct lh_worker_s;
/* Renders the whole node's metrics (Prometheus text format 0.0.4) into a malloc'd
 * string; *len set. NULL on out-of-memory. */
char *lh_metrics_render(const struct lh_worker_s *w, size_t *len);

#endif
