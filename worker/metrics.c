/*
 * Metrics: histogram observations, the label indices, and the Prometheus text rendering
 * (any worker answering /metrics) of the counters in the shared block (shm.c).
 */
#include "metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

static const unsigned close_codes[] = {1000, 1001, 1002, 1003, 1005, 1006, 1007,
                                       1008, 1009, 1011, 1012, 1013, 4008, 4401, 4403};
static const int statuses[] = {101, 200, 204, 304, 400, 401, 403, 404, 405, 408,
                               411, 413, 414, 415, 426, 429, 431, 500, 503};
static const char *const handoff_reasons[LH_HOR_N] = {
    "tls", "http", "upstream", "module", "busy", "too_big", "peer", "changed"
};

static const char *const reject_names[LH_REJ_N] = {
    "bad_request", "version", "key", "origin", "method", "limits", "timeout", "overload",
    "not_upgrade", "backend", "auth"};
static const char *const endpoint_names[LH_EP_N] = {
    "websocket", "publish", "livez", "readyz", "metrics", "static", "other"};
static const char *const upstream_names[LH_UP_N] = {
    "ok", "http_error", "refused", "timeout", "failed", "limited"};
static const char *const webhook_names[LH_WH_N] = {"command", "connect", "disconnect",
                                                   "subscribe", "publish"};
static const char *const auth_reasons[LH_AUTH_R_N] = {
    "ok", "too_big", "malformed", "bad_alg", "unknown_kid", "bad_signature", "bad_claims",
    "expired", "not_yet_valid", "bad_audience", "bad_issuer", "too_long_lived", "missing",
    "other_user", "not_refreshed", "webhook"};
/* Latency buckets in seconds, as nanoseconds. */
static const uint64_t lat_ns[] = {50000,    100000,   250000,    500000,    1000000,
                                  2500000,  5000000,  10000000,  25000000,  50000000,
                                  100000000, 250000000, 500000000, 1000000000, 2500000000u};
static const uint64_t size_b[] = {64, 256, 1024, 4096, 16384, 65536, 262144, 1048576,
                                  4194304, 16777216, 67108864};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Distinct channels over every active worker: the union of their hash tables. */
static uint64_t distinct_channels(void)
{
    size_t total = 0, k = 0;
    uint64_t *all, distinct = 0;

    if (lh_shm == NULL)
        return lh_m_get(LH_G_CHANNELS);
    for (int i = 0; i < lh_shm->nslots; i++)
        if (atomic_load(&lh_shm->slots[i].state) != LH_SLOT_FREE)
            total += atomic_load_explicit(&lh_shm->nchan[i], memory_order_acquire);
    all = malloc((total + 1) * sizeof(*all));
    if (all == NULL)
        return 0;
    for (int i = 0; i < lh_shm->nslots; i++) {
        uint32_t n;

        if (atomic_load(&lh_shm->slots[i].state) == LH_SLOT_FREE)
            continue;
        n = atomic_load_explicit(&lh_shm->nchan[i], memory_order_acquire);
        for (uint32_t j = 0; j < n && k < total; j++)
            all[k++] = atomic_load_explicit(&lh_shm->chan[i][j], memory_order_relaxed);
    }
    qsort(all, k, sizeof(*all), cmp_u64);
    for (size_t i = 0; i < k; i++)
        if (i == 0 || all[i] != all[i - 1])
            distinct++;
    free(all);
    return distinct;
}

unsigned lh_metrics_close_index(unsigned code)
{
    for (unsigned i = 0; i < LH_ARRAY_LEN(close_codes); i++)
        if (close_codes[i] == code)
            return i;
    return LH_ARRAY_LEN(close_codes); /* "other" */
}

unsigned lh_metrics_status_index(int status)
{
    for (unsigned i = 0; i < LH_ARRAY_LEN(statuses); i++)
        if (statuses[i] == status)
            return i;
    return LH_ARRAY_LEN(statuses); /* "other" */
}

static void observe(unsigned base, const uint64_t *bounds, unsigned nb, uint64_t v)
{
    unsigned i = 0;

    while (i < nb && v > bounds[i])
        i++;
    lh_m_inc(base + i);
    lh_m_add(base + nb + 1, v);
    lh_m_inc(base + nb + 2);
}

void lh_metrics_observe_latency_ns(uint64_t ns)
{
    observe(LH_M_LAT_BASE, lat_ns, LH_ARRAY_LEN(lat_ns), ns);
}

void lh_metrics_observe_webhook(uint64_t ns)
{
    observe(LH_M_WHLAT_BASE, lat_ns, LH_ARRAY_LEN(lat_ns), ns);
}

void lh_metrics_observe_tls_handshake(uint64_t ns)
{
    observe(LH_M_TLSLAT_BASE, lat_ns, LH_ARRAY_LEN(lat_ns), ns);
}

void lh_metrics_observe_js(uint64_t ns)
{
    observe(LH_M_JSLAT_BASE, lat_ns, LH_ARRAY_LEN(lat_ns), ns);
}

void lh_metrics_observe_presence(uint64_t ns)
{
    observe(LH_M_PRESQ_BASE, lat_ns, LH_ARRAY_LEN(lat_ns), ns);
}

void lh_metrics_observe_size(uint64_t bytes)
{
    observe(LH_M_SIZE_BASE, size_b, LH_ARRAY_LEN(size_b), bytes);
}

/* ---- Rendering ---- */

/* What one worker in use shows on its own lines. */
typedef struct {
    uint64_t ws, chans, peers, pres;
    int idx, state, nats;
} worker_row_t;

typedef struct {
    uint64_t v[LH_M_NVALUES];
    uint32_t generation, active, draining;
    uint64_t reloads_ok, reloads_failed, upgrades_ok, upgrades_failed, restarts;
    int nslots;        /* rows filled */
    worker_row_t w[];  /* one per slot of the shared block (1 without one) */
} snapshot_t;

static size_t snapshot_size(void)
{
    return sizeof(snapshot_t) + (size_t)(lh_shm ? lh_shm->nslots : 1) * sizeof(worker_row_t);
}

static void snapshot(snapshot_t *s)
{
    memset(s, 0, snapshot_size());
    if (lh_shm == NULL) {
        for (unsigned k = 0; k < LH_M_NVALUES; k++)
            s->v[k] = atomic_load_explicit(&lh_ctr->v[k], memory_order_relaxed);
        s->generation = 1;
        s->active = 1;
        s->w[0].nats = (int)s->v[LH_G_NATS_UP];
        s->w[0].peers = s->v[LH_G_NATS_PEERS];
        s->w[0].ws = s->v[LH_G_WS_OPEN];
        s->w[0].chans = s->v[LH_G_CHANNELS];
        s->w[0].pres = s->v[LH_G_PRESENCE_ENTRIES];
        s->nslots = 1;
        return;
    }
    for (int tries = 0; tries < 1000; tries++) {
        uint32_t seq = atomic_load_explicit(&lh_shm->seq, memory_order_acquire);

        if (seq & 1)
            continue;
        memset(s, 0, snapshot_size());
        for (unsigned k = 0; k < LH_M_NCOUNTERS; k++)
            s->v[k] = atomic_load_explicit(&lh_shm->retired.v[k], memory_order_relaxed);
        for (int i = 0; i < lh_shm->nslots; i++) {
            lh_slot_t *sl = &lh_shm->slots[i];
            worker_row_t *r = &s->w[s->nslots];
            int st = atomic_load(&sl->state);

            if (st == LH_SLOT_FREE)
                continue;
            for (unsigned k = 0; k < LH_M_NVALUES; k++)
                s->v[k] += atomic_load_explicit(&sl->c.v[k], memory_order_relaxed);
            r->idx = atomic_load(&sl->index);
            r->state = st;
            r->nats = (int)atomic_load_explicit(&sl->c.v[LH_G_NATS_UP], memory_order_relaxed);
            r->peers = atomic_load_explicit(&sl->c.v[LH_G_NATS_PEERS], memory_order_relaxed);
            r->ws = atomic_load_explicit(&sl->c.v[LH_G_WS_OPEN], memory_order_relaxed);
            r->chans = atomic_load_explicit(&sl->c.v[LH_G_CHANNELS], memory_order_relaxed);
            r->pres = atomic_load_explicit(&sl->c.v[LH_G_PRESENCE_ENTRIES],
                                           memory_order_relaxed);
            s->nslots++;
        }
        s->generation = atomic_load(&lh_shm->generation);
        s->active = atomic_load(&lh_shm->workers_active);
        s->draining = atomic_load(&lh_shm->workers_draining);
        s->reloads_ok = atomic_load(&lh_shm->reloads_ok);
        s->reloads_failed = atomic_load(&lh_shm->reloads_failed);
        s->upgrades_ok = atomic_load(&lh_shm->upgrades_ok);
        s->upgrades_failed = atomic_load(&lh_shm->upgrades_failed);
        s->restarts = atomic_load(&lh_shm->worker_restarts);
        if (atomic_load_explicit(&lh_shm->seq, memory_order_acquire) == seq)
            return;
    }
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
    head(f, name, type, help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static const char *state_name(int st)
{
    return st == LH_SLOT_DRAINING ? "draining" : st == LH_SLOT_STARTING ? "starting" : "active";
}

static void histogram(FILE *f, const char *name, const char *help, const uint64_t *v,
                      const uint64_t *bounds, unsigned nb, double scale)
{
    uint64_t cum = 0;

    head(f, name, "histogram", help);
    for (unsigned i = 0; i < nb; i++) {
        cum += v[i];
        fprintf(f, "%s_bucket{le=\"%.10g\"} %llu\n", name, (double)bounds[i] * scale,
                (unsigned long long)cum);
    }
    cum += v[nb];
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    fprintf(f, "%s_sum %.9g\n", name, (double)v[nb + 1] * scale);
    fprintf(f, "%s_count %llu\n", name, (unsigned long long)v[nb + 2]);
}

char *lh_metrics_render(const struct lh_worker_s *w, size_t *len)
{
    snapshot_t *s = malloc(snapshot_size());
    char *buf = NULL;
    FILE *f;

    if (s == NULL)
        return NULL;
    snapshot(s);
    f = open_memstream(&buf, len);
    if (f == NULL) {
        free(s);
        return NULL;
    }
    head(f, "lhttpd_build_info", "gauge", "Build information; the value is always 1.");
    fprintf(f, "lhttpd_build_info{version=\"%s\"} 1\n", LH_VERSION);
    head(f, "lhttpd_workers", "gauge", "Worker processes by state.");
    fprintf(f, "lhttpd_workers{state=\"active\"} %u\nlhttpd_workers{state=\"draining\"} %u\n",
            s->active, s->draining);
    one(f, "lhttpd_config_generation", "gauge",
        "Configuration generation now serving new connections (1 at start, +1 per reload).",
        s->generation);
    head(f, "lhttpd_reloads_total", "counter", "Reloads by result.");
    fprintf(f, "lhttpd_reloads_total{result=\"success\"} %llu\n"
               "lhttpd_reloads_total{result=\"failure\"} %llu\n",
            (unsigned long long)s->reloads_ok, (unsigned long long)s->reloads_failed);
    head(f, "lhttpd_upgrades_total", "counter", "Binary upgrades in place by result.");
    fprintf(f, "lhttpd_upgrades_total{result=\"success\"} %llu\n"
               "lhttpd_upgrades_total{result=\"failure\"} %llu\n",
            (unsigned long long)s->upgrades_ok, (unsigned long long)s->upgrades_failed);
    one(f, "lhttpd_worker_restarts_total", "counter",
        "Workers that died unexpectedly and were replaced.", s->restarts);
    one(f, "lhttpd_websocket_connections", "gauge", "Open WebSocket connections.",
        s->v[LH_G_WS_OPEN]);
    head(f, "lhttpd_worker_websocket_connections", "gauge",
         "Open WebSocket connections per worker process.");
    for (int i = 0; i < s->nslots; i++)
        fprintf(f, "lhttpd_worker_websocket_connections{worker=\"%d\",state=\"%s\"} %llu\n",
                s->w[i].idx, state_name(s->w[i].state), (unsigned long long)s->w[i].ws);
    one(f, "lhttpd_http_connections", "gauge",
        "Open connections not (yet) upgraded to WebSocket.", s->v[LH_G_HTTP_OPEN]);
    one(f, "lhttpd_tcp_connections_accepted_total", "counter", "TCP connections accepted.",
        s->v[LH_M_TCP_ACCEPTED]);
    one(f, "lhttpd_websocket_connections_accepted_total", "counter",
        "WebSocket handshakes completed.", s->v[LH_M_WS_ACCEPTED]);
    head(f, "lhttpd_websocket_connections_closed_total", "counter",
         "WebSocket connections closed, by close code (1006: no close frame).");
    for (unsigned i = 0; i <= LH_ARRAY_LEN(close_codes); i++) {
        char code[16];

        if (i < LH_ARRAY_LEN(close_codes))
            snprintf(code, sizeof(code), "%u", close_codes[i]);
        else
            snprintf(code, sizeof(code), "other");
        fprintf(f, "lhttpd_websocket_connections_closed_total{code=\"%s\"} %llu\n", code,
                (unsigned long long)s->v[LH_M_CLOSE_BASE + i]);
    }
    head(f, "lhttpd_handshakes_rejected_total", "counter",
         "Connections refused before or during the WebSocket handshake, by reason.");
    for (unsigned i = 0; i < LH_REJ_N; i++)
        fprintf(f, "lhttpd_handshakes_rejected_total{reason=\"%s\"} %llu\n", reject_names[i],
                (unsigned long long)s->v[LH_M_REJECT_BASE + i]);
    one(f, "lhttpd_lhttp_messages_received_total", "counter",
        "WebSocket messages received from clients.", s->v[LH_M_MSGS_IN]);
    one(f, "lhttpd_lhttp_messages_sent_total", "counter",
        "WebSocket messages queued to clients (replies and deliveries).", s->v[LH_M_MSGS_OUT]);
    one(f, "lhttpd_lhttp_errors_total", "counter", "LHTTP error replies sent.",
        s->v[LH_M_LHTTP_ERRORS]);
    one(f, "lhttpd_received_bytes_total", "counter", "Bytes read from client sockets.",
        s->v[LH_M_BYTES_IN]);
    one(f, "lhttpd_sent_bytes_total", "counter", "Bytes written to client sockets.",
        s->v[LH_M_BYTES_OUT]);
    head(f, "lhttpd_publishes_total", "counter", "Messages published, by source.");
    fprintf(f, "lhttpd_publishes_total{source=\"websocket\"} %llu\n"
               "lhttpd_publishes_total{source=\"http\"} %llu\n",
            (unsigned long long)s->v[LH_M_PUBLISH_WS], (unsigned long long)s->v[LH_M_PUBLISH_HTTP]);
    one(f, "lhttpd_deliveries_total", "counter",
        "Messages queued to subscribers (one per subscriber and channel).", s->v[LH_M_DELIVERIES]);
    one(f, "lhttpd_frames_built_total", "counter",
        "Delivery frames built: one per message and channel per worker, shared by all its "
        "subscribers.", s->v[LH_M_FRAMES_BUILT]);
    one(f, "lhttpd_slow_consumer_closes_total", "counter",
        "Clients closed (4008) because their send queue exceeded limits.send_queue_bytes.",
        s->v[LH_M_SLOW_CLOSED]);
    one(f, "lhttpd_slow_consumer_dropped_messages_total", "counter",
        "Messages dropped from the queues of clients closed for a full send queue.",
        s->v[LH_M_SLOW_DROPPED]);
    one(f, "lhttpd_close_deadline_resets_total", "counter",
        "Connections reset at their close deadline (websocket.close_timeout_ms) because the "
        "peer had not read what was still unsent.", s->v[LH_M_CONN_RESET_EXPIRED]);
    one(f, "lhttpd_send_queue_bytes", "gauge", "Bytes queued to clients and not yet written.",
        s->v[LH_G_SEND_QUEUE_BYTES]);
    one(f, "lhttpd_subscriptions", "gauge", "Client subscriptions (client x channel).",
        s->v[LH_G_SUBSCRIPTIONS]);
    one(f, "lhttpd_channels", "gauge",
        "Distinct channels with at least one subscriber on the node (all workers).",
        distinct_channels() + s->v[LH_G_CHANNELS_UNTRACKED]);
    head(f, "lhttpd_worker_channels", "gauge",
         "Channels with subscribers in each worker process (one NATS subscription each).");
    for (int i = 0; i < s->nslots; i++)
        fprintf(f, "lhttpd_worker_channels{worker=\"%d\",state=\"%s\"} %llu\n", s->w[i].idx,
                state_name(s->w[i].state), (unsigned long long)s->w[i].chans);
    one(f, "lhttpd_channels_untracked", "gauge",
        "Channels past a worker's tracking table (LH_CHAN_TRACK); lhttpd_channels then "
        "counts them once per worker.", s->v[LH_G_CHANNELS_UNTRACKED]);
    head(f, "lhttpd_nats_connected", "gauge", "1 when the worker's NATS connection is up.");
    for (int i = 0; i < s->nslots; i++)
        fprintf(f, "lhttpd_nats_connected{worker=\"%d\",state=\"%s\"} %d\n", s->w[i].idx,
                state_name(s->w[i].state), s->w[i].nats ? 1 : 0);
    one(f, "lhttpd_nats_reconnects_total", "counter", "NATS reconnections.",
        s->v[LH_M_NATS_RECONNECTS]);
    head(f, "lhttpd_nats_messages_total", "counter", "Messages to and from NATS.");
    fprintf(f, "lhttpd_nats_messages_total{direction=\"in\"} %llu\n"
               "lhttpd_nats_messages_total{direction=\"out\"} %llu\n",
            (unsigned long long)s->v[LH_M_NATS_MSGS_IN], (unsigned long long)s->v[LH_M_NATS_MSGS_OUT]);
    head(f, "lhttpd_nats_bytes_total", "counter", "Payload bytes to and from NATS.");
    fprintf(f, "lhttpd_nats_bytes_total{direction=\"in\"} %llu\n"
               "lhttpd_nats_bytes_total{direction=\"out\"} %llu\n",
            (unsigned long long)s->v[LH_M_NATS_BYTES_IN], (unsigned long long)s->v[LH_M_NATS_BYTES_OUT]);
    one(f, "lhttpd_nats_publish_failures_total", "counter",
        "Publishes NATS refused (outage buffer full).", s->v[LH_M_NATS_PUBLISH_FAILED]);
    one(f, "lhttpd_nats_publishes_skipped_total", "counter",
        "Messages not published to NATS because no other worker of this node had their "
        "channel and no other lhttpd node was connected (nats.publish \"auto\").",
        s->v[LH_M_NATS_PUBLISH_SKIPPED]);
    one(f, "lhttpd_nats_stalls_total", "counter",
        "NATS connections found stalled (no PONG within nats.stall_timeout_ms) and replaced.",
        s->v[LH_M_NATS_STALLS]);
    one(f, "lhttpd_nats_possibly_lost_total", "counter",
        "Messages published to NATS that no PONG had confirmed when their connection was "
        "lost or stalled: they may never have reached NATS.", s->v[LH_M_NATS_POSSIBLY_LOST]);
    one(f, "lhttpd_nats_dropped_total", "counter",
        "Messages from NATS a worker dropped because it had no memory to queue them.",
        s->v[LH_M_NATS_DROPPED]);
    head(f, "lhttpd_nats_peer_nodes", "gauge",
         "Other lhttpd nodes each worker heard from on NATS within nats.peer_timeout_ms.");
    for (int i = 0; i < s->nslots; i++)
        fprintf(f, "lhttpd_nats_peer_nodes{worker=\"%d\",state=\"%s\"} %llu\n", s->w[i].idx,
                state_name(s->w[i].state), (unsigned long long)s->w[i].peers);
    head(f, "lhttpd_http_requests_total", "counter", "HTTP requests by endpoint and status.");
    for (unsigned e = 0; e < LH_EP_N; e++) {
        for (unsigned i = 0; i <= LH_ARRAY_LEN(statuses); i++) {
            uint64_t v = s->v[LH_M_HTTP_BASE + e * LH_HTTP_NSTATUS + i];
            char st[16];

            if (v == 0)
                continue;
            if (i < LH_ARRAY_LEN(statuses))
                snprintf(st, sizeof(st), "%d", statuses[i]);
            else
                snprintf(st, sizeof(st), "other");
            fprintf(f, "lhttpd_http_requests_total{endpoint=\"%s\",status=\"%s\"} %llu\n",
                    endpoint_names[e], st, (unsigned long long)v);
        }
    }
    head(f, "lhttpd_upstream_requests_total", "counter", "Upstream HTTP requests by result.");
    for (unsigned i = 0; i < LH_UP_N; i++)
        fprintf(f, "lhttpd_upstream_requests_total{result=\"%s\"} %llu\n", upstream_names[i],
                (unsigned long long)s->v[LH_M_UPSTREAM_BASE + i]);
    head(f, "lhttpd_webhooks_total", "counter",
         "Webhook requests (also counted in lhttpd_upstream_requests_total) by kind and result.");
    for (unsigned k = 0; k < LH_WH_N; k++)
        for (unsigned i = 0; i < LH_UP_N; i++)
            fprintf(f, "lhttpd_webhooks_total{kind=\"%s\",result=\"%s\"} %llu\n",
                    webhook_names[k], upstream_names[i],
                    (unsigned long long)s->v[LH_M_WEBHOOK_BASE + k * LH_UP_N + i]);
    head(f, "lhttpd_auth_failures_total", "counter",
         "Tokens refused and connections closed for want of one, by reason.");
    for (unsigned i = 1; i < LH_AUTH_R_N; i++)
        fprintf(f, "lhttpd_auth_failures_total{reason=\"%s\"} %llu\n", auth_reasons[i],
                (unsigned long long)s->v[LH_M_AUTH_FAIL_BASE + i]);
    head(f, "lhttpd_permission_denied_total", "counter",
         "Subscribes and publishes refused by the namespace rules or their webhook.");
    for (unsigned a = 0; a < 2; a++) {
        uint32_t nns = lh_shm ? atomic_load(&lh_shm->nns) : 0;

        for (unsigned i = 0; i <= LH_NS_LABELS; i++) {
            uint64_t v = s->v[LH_M_DENIED_BASE + a * (LH_NS_LABELS + 1) + i];

            if (i < LH_NS_LABELS && i >= nns)
                continue;
            if (i == LH_NS_LABELS && v == 0)
                continue;
            fprintf(f, "lhttpd_permission_denied_total{action=\"%s\",namespace=\"%s\"} %llu\n",
                    a == LH_ACT_SUBSCRIBE ? "subscribe" : "publish",
                    i < LH_NS_LABELS ? lh_shm->ns_names[i] : "(other)", (unsigned long long)v);
        }
    }
    head(f, "lhttpd_api_requests_total", "counter", "Server API requests handled, by action.");
    fprintf(f, "lhttpd_api_requests_total{action=\"disconnect\"} %llu\n",
            (unsigned long long)s->v[LH_M_API_DISCONNECT]);
    fprintf(f, "lhttpd_api_requests_total{action=\"unsubscribe\"} %llu\n",
            (unsigned long long)s->v[LH_M_API_UNSUBSCRIBE]);
    head(f, "lhttpd_handoff_total", "counter",
         "WebSocket connections handed to a new generation on reload, by result: sent "
         "(by a retiring worker), adopted (by the new one), failed (a record it could not "
         "use: the connection is closed).");
    fprintf(f, "lhttpd_handoff_total{result=\"sent\"} %llu\n",
            (unsigned long long)s->v[LH_M_HANDOFF_SENT]);
    fprintf(f, "lhttpd_handoff_total{result=\"adopted\"} %llu\n",
            (unsigned long long)s->v[LH_M_HANDOFF_ADOPTED]);
    fprintf(f, "lhttpd_handoff_total{result=\"failed\"} %llu\n",
            (unsigned long long)s->v[LH_M_HANDOFF_FAILED]);
    head(f, "lhttpd_handoff_refused_total", "counter",
         "Connections a retiring worker kept (they drain, then 1012), by reason.");
    for (unsigned i = 0; i < LH_HOR_N; i++)
        fprintf(f, "lhttpd_handoff_refused_total{reason=\"%s\"} %llu\n", handoff_reasons[i],
                (unsigned long long)s->v[LH_M_HANDOFF_REFUSED_BASE + i]);
    head(f, "lhttpd_handoff_messages_total", "counter",
         "Messages a worker taking connections kept for them: sent to them (the old "
         "worker had not), skipped (the old worker had delivered them), dropped (over "
         "handoff.max_buffered).");
    fprintf(f, "lhttpd_handoff_messages_total{result=\"sent\"} %llu\n",
            (unsigned long long)s->v[LH_M_HANDOFF_REPLAYED]);
    fprintf(f, "lhttpd_handoff_messages_total{result=\"skipped\"} %llu\n",
            (unsigned long long)s->v[LH_M_HANDOFF_SKIPPED]);
    fprintf(f, "lhttpd_handoff_messages_total{result=\"dropped\"} %llu\n",
            (unsigned long long)s->v[LH_M_HANDOFF_OVERFLOW]);
    head(f, "lhttpd_server_disconnects_total", "counter",
         "Connections closed by the server API.");
    fprintf(f, "lhttpd_server_disconnects_total %llu\n",
            (unsigned long long)s->v[LH_M_API_DISCONNECTED]);
    head(f, "lhttpd_server_unsubscribes_total", "counter",
         "Subscriptions ended by the server: by the server API, or by a reload's rules.");
    fprintf(f, "lhttpd_server_unsubscribes_total{cause=\"api\"} %llu\n",
            (unsigned long long)s->v[LH_M_API_UNSUBSCRIBED]);
    fprintf(f, "lhttpd_server_unsubscribes_total{cause=\"rules\"} %llu\n",
            (unsigned long long)s->v[LH_M_RULES_UNSUBSCRIBED]);
    histogram(f, "lhttpd_delivery_latency_seconds",
              "From the moment a worker has a message (from a client, /publish or NATS) to "
              "the moment it is written to a subscriber's socket.",
              &s->v[LH_M_LAT_BASE], lat_ns, LH_ARRAY_LEN(lat_ns), 1e-9);
    histogram(f, "lhttpd_message_size_bytes", "Size of WebSocket messages received.",
              &s->v[LH_M_SIZE_BASE], size_b, LH_ARRAY_LEN(size_b), 1.0);
    head(f, "lhttpd_history_messages_total", "counter",
         "History channels' messages: stored (acknowledged by JetStream), refused (503), "
         "read back from JetStream, sent by recoveries and history reads.");
    fprintf(f, "lhttpd_history_messages_total{event=\"stored\"} %llu\n",
            (unsigned long long)s->v[LH_M_HIST_STORED]);
    fprintf(f, "lhttpd_history_messages_total{event=\"refused\"} %llu\n",
            (unsigned long long)s->v[LH_M_HIST_PUB_FAILED]);
    fprintf(f, "lhttpd_history_messages_total{event=\"read_from_jetstream\"} %llu\n",
            (unsigned long long)s->v[LH_M_HIST_READS_JS]);
    fprintf(f, "lhttpd_history_messages_total{event=\"resent\"} %llu\n",
            (unsigned long long)s->v[LH_M_HIST_SENT]);
    head(f, "lhttpd_history_recoveries_total", "counter", "Recoveries by outcome.");
    fprintf(f, "lhttpd_history_recoveries_total{recovered=\"true\"} %llu\n",
            (unsigned long long)s->v[LH_M_HIST_RECOVERED]);
    fprintf(f, "lhttpd_history_recoveries_total{recovered=\"false\"} %llu\n",
            (unsigned long long)s->v[LH_M_HIST_NOT_RECOVERED]);
    head(f, "lhttpd_history_reads_total", "counter", "History commands.");
    fprintf(f, "lhttpd_history_reads_total %llu\n", (unsigned long long)s->v[LH_M_HIST_READS]);
    head(f, "lhttpd_history_gaps_total", "counter",
         "History messages that arrived ahead of their channel's chain (the missing ones "
         "were read from JetStream), and gaps that could not be filled.");
    fprintf(f, "lhttpd_history_gaps_total{filled=\"yes\"} %llu\n",
            (unsigned long long)s->v[LH_M_HIST_GAPS]);
    fprintf(f, "lhttpd_history_gaps_total{filled=\"no\"} %llu\n",
            (unsigned long long)s->v[LH_M_HIST_GAP_LOST]);
    histogram(f, "lhttpd_jetstream_publish_seconds",
              "From a history publish to JetStream's acknowledgement.",
              &s->v[LH_M_JSLAT_BASE], lat_ns, LH_ARRAY_LEN(lat_ns), 1e-9);
    histogram(f, "lhttpd_webhook_decision_seconds",
              "How long the subscribe and publish webhooks took to decide (answers, "
              "refusals, failures and timeouts alike).",
              &s->v[LH_M_WHLAT_BASE], lat_ns, LH_ARRAY_LEN(lat_ns), 1e-9);
    head(f, "lhttpd_tls_handshakes_total", "counter",
         "TLS handshakes by result (ok, resumed, failed, http_request: plain HTTP on a TLS "
         "listener, timeout, eof, sni_refused, plain_port: a TLS hello on a plain listener) "
         "and negotiated version.");
    for (unsigned r = 0; r < LH_TLS_R_N; r++)
        for (unsigned v = 0; v < LH_TLS_V_N; v++) {
            uint64_t n = s->v[LH_M_TLS_HS_BASE + r * LH_TLS_V_N + v];

            if (n == 0 && !((r == LH_TLS_R_OK || r == LH_TLS_R_RESUMED) ? v != 0 : v == 0))
                continue;
            fprintf(f, "lhttpd_tls_handshakes_total{result=\"%s\",version=\"%s\"} %llu\n",
                    lh_tls_result_name(r), lh_tls_version_name(v), (unsigned long long)n);
        }
    head(f, "lhttpd_tls_errors_total", "counter",
         "TLS connections closed after the handshake for a renegotiation attempt or a "
         "protocol error (a bad or oversized record).");
    for (unsigned i = 0; i < LH_TLS_E_N; i++)
        fprintf(f, "lhttpd_tls_errors_total{reason=\"%s\"} %llu\n", lh_tls_error_name(i),
                (unsigned long long)s->v[LH_M_TLS_ERR_BASE + i]);
    histogram(f, "lhttpd_tls_handshake_seconds",
              "From accept to the end of a successful TLS handshake.",
              &s->v[LH_M_TLSLAT_BASE], lat_ns, LH_ARRAY_LEN(lat_ns), 1e-9);
    lh_tls_render_expiry(w ? w->cfg : NULL, f);
    head(f, "lhttpd_presence_entries", "gauge",
         "Subscriptions to presence channels each worker holds (its share of presence).");
    for (int i = 0; i < s->nslots; i++)
        fprintf(f, "lhttpd_presence_entries{worker=\"%d\",state=\"%s\"} %llu\n", s->w[i].idx,
                state_name(s->w[i].state), (unsigned long long)s->w[i].pres);
    head(f, "lhttpd_presence_queries_total", "counter",
         "Presence queries (presence and presence-stats commands, GET /api/presence and "
         "/api/presence-stats) this node gathered.");
    fprintf(f, "lhttpd_presence_queries_total{kind=\"list\"} %llu\n"
               "lhttpd_presence_queries_total{kind=\"stats\"} %llu\n",
            (unsigned long long)s->v[LH_M_PRES_QUERIES],
            (unsigned long long)s->v[LH_M_PRES_QUERIES_STATS]);
    head(f, "lhttpd_presence_queries_refused_total", "counter",
         "Presence queries refused with 429: the connection had presence.max_queries_per_conn "
         "in flight, or the worker presence.max_queries.");
    fprintf(f, "lhttpd_presence_queries_refused_total{reason=\"connection\"} %llu\n"
               "lhttpd_presence_queries_refused_total{reason=\"worker\"} %llu\n",
            (unsigned long long)s->v[LH_M_PRES_REFUSED_CONN],
            (unsigned long long)s->v[LH_M_PRES_REFUSED_WORKER]);
    one(f, "lhttpd_presence_queries_shared_total", "counter",
        "Presence queries that waited for the same query's gathering, already running, "
        "instead of asking every worker again.", s->v[LH_M_PRES_SHARED]);
    one(f, "lhttpd_presence_bad_answers_total", "counter",
        "Answers to presence queries, from NATS, that were malformed (left out of the result).",
        s->v[LH_M_PRES_BAD_ANSWERS]);
    histogram(f, "lhttpd_presence_query_seconds",
              "From a presence query to its answer (gathered from every worker of every node).",
              &s->v[LH_M_PRESQ_BASE], lat_ns, LH_ARRAY_LEN(lat_ns), 1e-9);
    one(f, "lhttpd_join_leave_messages_total", "counter",
        "join and leave messages built (one per batch; each is delivered to every "
        "subscriber of its channel).", s->v[LH_M_JOIN_LEAVE_MSGS]);
    one(f, "lhttpd_join_leave_events_total", "counter",
        "Joins and leaves those messages carried.", s->v[LH_M_JOIN_LEAVE_ENTRIES]);
    fclose(f);
    free(s);
    (void)w;
    return buf;
}
