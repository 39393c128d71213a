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
};

#endif
