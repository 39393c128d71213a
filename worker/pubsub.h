/*
 * The worker's channel table (pubsub.c). Private to the worker; in a header so that unit
 * tests can check its invariants.
 */
#ifndef LH_PUBSUB_H
#define LH_PUBSUB_H

#include "worker.h"

typedef struct {
    lh_conn_t *c;
    uint32_t idx;  /* this channel's index in c->subs */
    uint32_t held; /* deliveries wait: a history recovery sends what was missed first */
    /* Handed over (handoff.c): digests of messages its old worker delivered that this
     * worker has not had yet; each cancels one delivery, until the handoff's end marker
     * (token) says no more can come. */
    uint32_t nskip;
    uint64_t *skip;
    uint64_t skip_token;
} lh_chsub_t;

typedef struct lh_chan_s {
    struct lh_chan_s *next; /* hash chain */
    uint64_t hash;
    uint64_t node_hash; /* lh_metrics_chan_hash: the same in every worker */
    lh_chsub_t *subs;
    uint32_t nsubs, cap;
    uint32_t busy; /* a fan-out is iterating subs: removal waits */
    int track;     /* index in the node-wide channel table (metrics), -1 if untracked */
    int presence;  /* its namespace had presence when it was made (lhttpd_presence_entries) */
    void *nsub;    /* the NATS subscription */
    /* Connection handoff (handoff.c). The retiring side logs the digests of what it
     * delivers on a channel it listed for its peer (ho_prepared); the taking side keeps
     * what arrives on a channel its peers reserved until their connections come. */
    uint32_t ho_reserved;       /* peers that reserved it (the entry stays while > 0) */
    uint32_t ho_live;           /* of them, those whose giver's start marker came: what
                                   arrives from then on is kept */
    uint8_t ho_prepared;        /* listed in this worker's prepare records */
    uint8_t ho_overflow;        /* the log or the buffer was full: exactly-once is lost */
    uint64_t *ho_log;           /* digests delivered since the handoff began */
    uint32_t ho_nlog, ho_logcap;
    struct lh_ho_ent_s *ho_buf; /* messages kept for connections still to come */
    uint32_t ho_nbuf, ho_bufcap;
    uint32_t nskipping; /* subscribers with skip lists */
    size_t len;
    char name[];
} lh_chan_t;

struct lh_pubsub_s {
    lh_chan_t **tracked; /* tracked[i] owns entry i of this worker's metrics table */
    size_t tracked_cap;
    lh_chan_t **buckets;
    size_t nbuckets, nchans;
    uint64_t seed; /* random per worker: channel names come from clients */
    size_t nsubscriptions;
    int ho_logging; /* a handoff runs: prepared channels log what they deliver */
};

/* A message kept for handed-over connections: the shared frame and its digest. */
typedef struct lh_ho_ent_s {
    lh_buf_t *frame;
    uint64_t digest;
} lh_ho_ent_t;

#endif
