/*
 * Publishing (process 0). Warm-up: a probe to every channel, repeated each second, until
 * every subscriber has seen one. Measure: messages with a send timestamp, either at a
 * fixed rate (spread evenly in time) or at full speed under a window: at most `window`
 * messages' worth of deliveries may be outstanding, so the run measures how fast the
 * server delivers rather than how deep its queues are. Drain: wait for the last
 * deliveries, or until none arrived for drain_s.
 *
 * --recover N: after the warm-up every subscriber parks (closes its connection); then N
 * messages go to each channel over HTTP, whose answers say they are stored; then every
 * subscriber reconnects at once, resuming after the last message it saw, and the run
 * ends when each has recovered (or failed to), or nothing moved for drain_s.
 */
#include "bench.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define STEP_BUDGET 2048  /* messages per step, so that reads are not starved */
#define PROBE_ROUND_NS 1000000000ull

typedef struct {
    uint64_t sent, expected, t0, t_end;
    uint64_t wdeliv; /* the window in deliveries */
    uint64_t warm_start, round_start, last_progress, last_delivered, probes;
    uint64_t park_start, last_answered, last_recovered;
    uint32_t rr, next_pub, probe_next;
    int started;
    double cpu0, cpu1; /* process CPU seconds at the first publish and at the end */
    uint8_t *mbuf;
    size_t mcap;
} pub_t;

int lhb_pub_init(lhb_loop_t *l)
{
    const lhb_opts_t *o = l->o;
    pub_t *p = calloc(1, sizeof(*p));
    uint64_t per = o->subs / o->channels;

    if (p == NULL)
        return -1;
    p->mcap = o->size + 64;
    p->mbuf = malloc(p->mcap);
    if (p->mbuf == NULL) {
        free(p);
        return -1;
    }
    p->wdeliv = o->window * (per > 0 ? per : 1);
    l->pub = p;
    return 0;
}

void lhb_pub_free(lhb_loop_t *l)
{
    pub_t *p = l->pub;

    if (p != NULL) {
        free(p->mbuf);
        free(p);
        l->pub = NULL;
    }
}

/* A publisher that can take one more message for channel ch, or NULL. */
static lhb_conn_t *pick(lhb_loop_t *l, pub_t *p, uint32_t ch)
{
    const lhb_opts_t *o = l->o;

    for (uint32_t k = 0; k < o->pub_conns; k++) {
        uint32_t i = (p->next_pub + k) % o->pub_conns;
        lhb_conn_t *c = &l->pubs[i];

        if (c->state != LHB_S_READY)
            continue;
        if (c->role == LHB_PUB_HTTP && c->pending >= o->pipeline)
            continue;
        if (c->role == LHB_PUB_WS && o->target == LHB_TARGET_NCHAN && c->chan != ch)
            continue;
        p->next_pub = i + 1;
        return c;
    }
    return NULL;
}

/* Queues one message for channel ch on a publisher. Returns 1, or 0 when no publisher
 * can take it now. */
static int publish(lhb_loop_t *l, pub_t *p, uint32_t ch, int kind, uint32_t seq)
{
    const lhb_opts_t *o = l->o;
    char name[64], head[1500], path[600];
    size_t nl = lhb_channel_name(name, sizeof(name), o->prefix, ch), len;
    lhb_conn_t *c = pick(l, p, ch);
    int r;

    if (c == NULL)
        return 0;
    len = lhb_msg_build(p->mbuf, p->mcap, o->target, name, nl, o->size, kind, seq,
                        lhb_now_ns());
    if (c->role == LHB_PUB_WS) {
        r = lhb_conn_frame(l, c, 1, p->mbuf, len);
    } else {
        int hl;

        lhb_url_path(&o->pub_url, name, nl, path, sizeof(path));
        /* Fits: path < 600, host < 64, pub_token <= 512 bytes. */
        hl = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: %s:%u\r\n%s%s%sContent-Length: %zu\r\n\r\n",
                      path, o->pub_url.host, o->pub_url.port,
                      o->pub_token ? "Authorization: Bearer " : "",
                      o->pub_token ? o->pub_token : "", o->pub_token ? "\r\n" : "", len);
        r = lhb_conn_append(c, head, (size_t)hl);
        if (r == 0)
            r = lhb_conn_append(c, p->mbuf, len);
        c->pending++;
    }
    if (r < 0) {
        lhb_error(l, "publisher: out of memory");
        atomic_store(&l->sh->phase, LHB_PH_ABORT);
        return 0;
    }
    return 1;
}

static void flush_all(lhb_loop_t *l)
{
    for (uint32_t i = 0; i < l->o->pub_conns; i++) {
        lhb_conn_t *c = &l->pubs[i];

        if (c->state == LHB_S_READY && c->outlen > c->outoff)
            lhb_conn_flush(l, c);
    }
}

static uint64_t sum_probed(const lhb_shared_t *sh)
{
    uint64_t s = 0;

    for (uint32_t i = 0; i < sh->nprocs; i++)
        s += atomic_load(&sh->ps[i].probed);
    return s;
}

static uint32_t http_pending(const lhb_loop_t *l)
{
    uint32_t n = 0;

    for (uint32_t i = 0; i < l->o->pub_conns; i++)
        n += l->pubs[i].pending;
    return n;
}

static double cpu_now(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t warmup(lhb_loop_t *l, pub_t *p)
{
    const lhb_opts_t *o = l->o;
    uint64_t now = l->now;

    if (!p->started) {
        p->started = 1;
        p->warm_start = p->round_start = now;
    }
    while (p->probe_next < o->channels && publish(l, p, p->probe_next, LHB_KIND_PROBE, 0)) {
        p->probe_next++;
        p->probes++;
        if (p->probes % STEP_BUDGET == 0)
            break;
    }
    flush_all(l);
    if (p->probe_next == o->channels && sum_probed(l->sh) >= o->subs) {
        p->started = 0;
        if (o->recover) {
            p->park_start = now;
            atomic_store(&l->sh->phase, LHB_PH_PARK);
            return 0;
        }
        p->cpu0 = cpu_now();
        p->t0 = lhb_now_ns();
        atomic_store(&l->sh->phase, LHB_PH_MEASURE);
        return 0;
    }
    if (now - p->warm_start > (uint64_t)(o->timeout_s * 1e9)) {
        lhb_error(l, "warm-up: %llu of %u subscribers received a probe within %.0f s",
                  (unsigned long long)sum_probed(l->sh), o->subs, o->timeout_s);
        atomic_store(&l->sh->phase, LHB_PH_ABORT);
        return 0;
    }
    if (p->probe_next == o->channels && now - p->round_start > PROBE_ROUND_NS) {
        p->probe_next = 0; /* some subscription was late: probe every channel again */
        p->round_start = now;
    }
    return p->probe_next < o->channels ? 0 : 1000000;
}

static uint64_t measure(lhb_loop_t *l, pub_t *p)
{
    const lhb_opts_t *o = l->o;
    uint64_t now = l->now, due = UINT64_MAX, delivered = lhb_sum_delivered(l->sh);
    int budget = STEP_BUDGET, blocked = 0;

    if (o->rate > 0)
        due = (uint64_t)(o->rate * (double)(now - p->t0) / 1e9) + 1;
    while (budget-- > 0 && (o->msgs == 0 || p->sent < o->msgs) && p->sent < due) {
        uint32_t ch;

        /* (--recover: nothing is delivered while publishing; the HTTP answers pace it.) */
        if (o->rate <= 0 && !o->recover && p->expected - delivered >= p->wdeliv) {
            blocked = 1;
            break;
        }
        ch = o->random ? (uint32_t)(lhb_rand(l) % o->channels) : p->rr++ % o->channels;
        if (!publish(l, p, ch, LHB_KIND_MEASURED, l->chan_counts[ch] + 1)) {
            blocked = 1;
            break;
        }
        l->chan_counts[ch]++;
        p->sent++;
        p->expected += lhb_subs_of(o, ch);
    }
    flush_all(l);
    if ((o->msgs > 0 && p->sent >= o->msgs) ||
        (o->msgs == 0 && now - p->t0 >= (uint64_t)(o->duration_s * 1e9))) {
        p->t_end = now;
        p->last_progress = now;
        p->last_delivered = delivered;
        atomic_store(&l->sh->phase, LHB_PH_DRAIN);
        return 0;
    }
    if (o->rate > 0) {
        uint64_t next = p->t0 + (uint64_t)((double)p->sent * 1e9 / o->rate);

        return next > now ? next - now : 0;
    }
    /* Window full: deliveries wake this loop when its own subscribers read; others'
     * are polled. */
    return blocked ? 200000 : 0;
}

static uint64_t sum_of(const lhb_shared_t *sh, size_t field)
{
    uint64_t s = 0;

    for (uint32_t i = 0; i < sh->nprocs; i++)
        s += atomic_load((_Atomic uint64_t *)((char *)&sh->ps[i] + field));
    return s;
}

/* --recover: waits until every subscriber's connection is closed, then publishes. */
static uint64_t park(lhb_loop_t *l, pub_t *p)
{
    uint64_t parked = sum_of(l->sh, offsetof(lhb_pstats_t, parked));

    if (parked >= l->o->subs) {
        p->cpu0 = cpu_now();
        p->t0 = lhb_now_ns();
        atomic_store(&l->sh->phase, LHB_PH_MEASURE);
        return 0;
    }
    if (l->now - p->park_start > (uint64_t)(l->o->timeout_s * 1e9)) {
        lhb_error(l, "park: the server closed %llu of %u subscribers within %.0f s",
                  (unsigned long long)parked, l->o->subs, l->o->timeout_s);
        atomic_store(&l->sh->phase, LHB_PH_ABORT);
        return 0;
    }
    return 1000000;
}

/* --recover, after the publishing: once every message is stored (answered), the
 * subscribers reconnect; then waits for their recoveries. */
static uint64_t recover_drain(lhb_loop_t *l, pub_t *p)
{
    uint64_t done, moved;
    int phase = atomic_load(&l->sh->phase);

    if (phase == LHB_PH_DRAIN) {
        if (http_pending(l) == 0) {
            atomic_store(&l->sh->recover_t0, lhb_now_ns());
            p->last_progress = l->now;
            atomic_store(&l->sh->phase, LHB_PH_RECOVER);
            return 0;
        }
        if (l->http_ok != p->last_answered) {
            p->last_answered = l->http_ok;
            p->last_progress = l->now;
        } else if (l->now - p->last_progress > (uint64_t)(l->o->drain_s * 1e9)) {
            lhb_error(l, "drain: %u publish requests never answered", http_pending(l));
            atomic_store(&l->sh->phase, LHB_PH_ABORT);
        }
        return 1000000;
    }
    done = sum_of(l->sh, offsetof(lhb_pstats_t, recovered));
    moved = done + lhb_sum_delivered(l->sh);
    if (moved != p->last_recovered) {
        p->last_recovered = moved;
        p->last_progress = l->now;
    }
    if (done >= l->o->subs ||
        l->now - p->last_progress > (uint64_t)(l->o->drain_s * 1e9)) {
        if (done < l->o->subs)
            lhb_error(l, "recover: %llu of %u subscribers recovered, nothing moved for %.1f s",
                      (unsigned long long)done, l->o->subs, l->o->drain_s);
        p->cpu1 = cpu_now();
        atomic_store(&l->sh->phase, LHB_PH_DONE);
        return 0;
    }
    return 1000000;
}

static uint64_t drain(lhb_loop_t *l, pub_t *p)
{
    uint64_t delivered = lhb_sum_delivered(l->sh);

    if (l->o->recover)
        return recover_drain(l, p);

    if (delivered != p->last_delivered) {
        p->last_delivered = delivered;
        p->last_progress = l->now;
    }
    if (delivered >= p->expected && http_pending(l) == 0) {
        p->cpu1 = cpu_now();
        atomic_store(&l->sh->phase, LHB_PH_DONE);
        return 0;
    }
    if (l->now - p->last_progress > (uint64_t)(l->o->drain_s * 1e9)) {
        if (http_pending(l) > 0)
            lhb_error(l, "drain: %u publish requests never answered", http_pending(l));
        p->cpu1 = cpu_now();
        atomic_store(&l->sh->phase, LHB_PH_DONE);
        return 0;
    }
    return 1000000;
}

uint64_t lhb_pub_step(lhb_loop_t *l)
{
    pub_t *p = l->pub;

    switch (atomic_load(&l->sh->phase)) {
    case LHB_PH_WARMUP:
        return warmup(l, p);
    case LHB_PH_MEASURE:
        return measure(l, p);
    case LHB_PH_DRAIN:
    case LHB_PH_RECOVER:
        return drain(l, p);
    case LHB_PH_PARK:
        return park(l, p);
    default:
        return 10000000;
    }
}

void lhb_pub_report(lhb_loop_t *l, lhb_pubres_t *res)
{
    pub_t *p = l->pub;

    res->sent = p->sent;
    res->expected = p->expected;
    res->t0 = p->t0;
    res->t_end = p->t_end;
    res->probes = p->probes;
    res->http_ok = l->http_ok;
    res->replies = l->pub_replies;
    res->copies = l->pub_copies;
    res->cpu_s = p->cpu1 > p->cpu0 ? p->cpu1 - p->cpu0 : 0;
    res->warmup_s = p->t0 > p->warm_start && p->warm_start ? (double)(p->t0 - p->warm_start) / 1e9 : 0;
}
