/*
 * The interest table: for each worker slot, a small counting filter of the channels it
 * has subscribers for (buckets of channel hashes, in the shared block). Pub/sub asks
 * lh_interest_elsewhere before publishing a channel to NATS: when no other worker of the
 * node may want it, and no other node either (nats.c), the publish stays local. A bucket
 * that saturates stays "maybe" (a false positive only costs a NATS publish); a worker's
 * table is cleared when its slot is given to a new worker.
 */
#include "metrics.h"

#include "worker.h"

static size_t interest_bucket(uint64_t hash)
{
    return (size_t)((hash ^ (hash >> 29)) & (LH_INTEREST_BUCKETS - 1));
}

void lh_interest_add(uint64_t hash)
{
    _Atomic uint8_t *b;
    uint8_t v;

    if (lh_shm == NULL || lh_shm_slot < 0)
        return;
    atomic_store_explicit(&lh_shm->interest_dirty[lh_shm_slot], 1, memory_order_relaxed);
    b = &lh_shm->interest[lh_shm_slot][interest_bucket(hash)];
    v = atomic_load_explicit(b, memory_order_relaxed);
    if (v < 255)
        atomic_store_explicit(b, (uint8_t)(v + 1), memory_order_release);
}

void lh_interest_remove(uint64_t hash)
{
    _Atomic uint8_t *b;
    uint8_t v;

    if (lh_shm == NULL || lh_shm_slot < 0)
        return;
    b = &lh_shm->interest[lh_shm_slot][interest_bucket(hash)];
    v = atomic_load_explicit(b, memory_order_relaxed);
    if (v > 0 && v < 255) /* 255: saturated, no longer counts exactly; stays "maybe" */
        atomic_store_explicit(b, (uint8_t)(v - 1), memory_order_release);
}

int lh_interest_elsewhere(uint64_t hash)
{
    size_t bucket = interest_bucket(hash);

    if (lh_shm == NULL || lh_shm_slot < 0)
        return 0;
    for (int w = 0; w < (lh_shm->nslots + 63) / 64; w++) {
        uint64_t bits = atomic_load_explicit(&lh_shm->used[w], memory_order_acquire);

        if (w == lh_shm_slot / 64)
            bits &= ~(1ull << (lh_shm_slot % 64));
        while (bits != 0) {
            int i = w * 64 + __builtin_ctzll(bits);

            bits &= bits - 1;
            if (atomic_load_explicit(&lh_shm->interest[i][bucket], memory_order_acquire) > 0)
                return 1;
        }
    }
    return 0;
}

