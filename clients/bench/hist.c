/*
 * Latency histogram: log-linear buckets (64 per power of two), so any value up to 2^64 ns
 * is kept with at most 1.6% error in a fixed 30 KiB table that processes can add up.
 */
#include "bench.h"

static unsigned bucket_of(uint64_t v)
{
    unsigned e;

    if (v < LHB_HIST_SUB)
        return (unsigned)v;
    e = 63u - (unsigned)__builtin_clzll(v); /* v >= 64, so e >= 6 */
    unsigned b = (e - 5u) * LHB_HIST_SUB + (unsigned)((v >> (e - 6u)) & (LHB_HIST_SUB - 1));
    return b < LHB_HIST_N ? b : LHB_HIST_N - 1;
}

/* The largest value that falls in bucket b. */
static uint64_t bucket_top(unsigned b)
{
    unsigned e, sub;

    if (b < LHB_HIST_SUB)
        return b;
    e = b / LHB_HIST_SUB + 5u;
    sub = b % LHB_HIST_SUB;
    return (((uint64_t)(LHB_HIST_SUB + sub + 1)) << (e - 6u)) - 1;
}

void lhb_hist_add(lhb_hist_t *h, uint64_t v)
{
    h->n[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

void lhb_hist_merge(lhb_hist_t *dst, const lhb_hist_t *src)
{
    for (unsigned i = 0; i < LHB_HIST_N; i++)
        dst->n[i] += src->n[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t lhb_hist_quantile(const lhb_hist_t *h, double q)
{
    uint64_t want, seen = 0;

    if (h->count == 0)
        return 0;
    want = (uint64_t)(q * (double)h->count);
    if (want >= h->count)
        want = h->count - 1;
    for (unsigned i = 0; i < LHB_HIST_N; i++) {
        seen += h->n[i];
        if (seen > want) {
            uint64_t top = bucket_top(i);

            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}
