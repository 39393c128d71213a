/*
 * The master's shared memory block, mapped before the workers fork: one slot per live
 * worker (its counters, its state, its generation), the node-wide table of channel hashes
 * (for lhttpd_channels across workers) and the interest tables (interest.c). The master
 * owns the slots (lh_metrics_slot_alloc/release); each worker writes only its own slot,
 * and reads the others' (accept balancing, /metrics, interest). A worker without the
 * block (unit tests, lh_shm NULL) counts into a private copy.
 */
#include "metrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "worker.h"

lh_shm_t *lh_shm;
static lh_counters_t private_counters;
lh_counters_t *lh_ctr = &private_counters;

/* Offsets of the tables in the shared block: small ones on cache lines, the large ones
 * (touched page by page) on pages. */
typedef struct {
    size_t slots, nchan, used, dirty, chan, interest, total;
} layout_t;

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

static layout_t layout(int nslots)
{
    size_t n = (size_t)nslots, page = 4096;
    layout_t l;

    l.slots = round_up(sizeof(lh_shm_t), 64);
    l.nchan = round_up(l.slots + n * sizeof(lh_slot_t), 64);
    l.used = round_up(l.nchan + n * sizeof(_Atomic uint32_t), 64);
    l.dirty = round_up(l.used + (n + 63) / 64 * sizeof(_Atomic uint64_t), 64);
    l.chan = round_up(l.dirty + n * sizeof(_Atomic uint32_t), page);
    l.interest = round_up(l.chan + n * sizeof(_Atomic uint64_t[LH_CHAN_TRACK]), page);
    l.total = round_up(l.interest + n * sizeof(_Atomic uint8_t[LH_INTEREST_BUCKETS]), page);
    return l;
}

size_t lh_metrics_shm_bytes(int nslots)
{
    return layout(nslots).total;
}

/* The block is a memfd, not an anonymous mapping, so that the master can keep it across
 * a binary upgrade (exec): the fd survives, and the new image maps it at the same
 * address (lh_metrics_attach), where the header's table pointers point. */
static int shm_fd = -1;

static void set_tables(char *p, int nslots)
{
    layout_t l = layout(nslots);

    lh_shm->slots = (lh_slot_t *)(p + l.slots);
    lh_shm->nchan = (_Atomic uint32_t *)(p + l.nchan);
    lh_shm->used = (_Atomic uint64_t *)(p + l.used);
    lh_shm->interest_dirty = (_Atomic uint32_t *)(p + l.dirty);
    lh_shm->chan = (_Atomic uint64_t(*)[LH_CHAN_TRACK])(p + l.chan);
    lh_shm->interest = (_Atomic uint8_t(*)[LH_INTEREST_BUCKETS])(p + l.interest);
}

int lh_metrics_init(int nslots)
{
    layout_t l;
    char *p;
    int fd, e;

    if (nslots < 1 || nslots > LH_MAX_WORKERS_ALIVE)
        return -EINVAL;
    l = layout(nslots);
    fd = memfd_create("lhttpd-shm", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)l.total) < 0) {
        e = errno;
        close(fd);
        return -e;
    }
    /* MAP_NORESERVE: only the pages the workers touch count (a slot that is never used
     * costs address space only), so a large max_workers_alive does not trip the
     * kernel's overcommit check. */
    p = mmap(NULL, l.total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
        e = errno;
        close(fd);
        return -e;
    }
    shm_fd = fd;
    lh_shm = (lh_shm_t *)p; /* zero-filled by the kernel */
    lh_shm->nslots = nslots;
    set_tables(p, nslots);
    return 0;
}

int lh_metrics_shm_fd(void)
{
    return shm_fd;
}

int lh_metrics_attach(int fd, uintptr_t addr, int nslots)
{
    layout_t l;
    struct stat st;
    lh_shm_t *h;
    char *p;

    if (nslots < 1 || nslots > LH_MAX_WORKERS_ALIVE || addr == 0 || addr % 4096 != 0)
        return -EINVAL;
    l = layout(nslots);
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size != l.total)
        return -EINVAL; /* not a block of this layout */
    p = mmap((void *)addr, l.total, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_NORESERVE | MAP_FIXED_NOREPLACE, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    h = (lh_shm_t *)p;
    /* Older kernels ignore MAP_FIXED_NOREPLACE and may map elsewhere; and the header
     * must describe this very layout, or the workers' pointers would disagree. */
    if ((uintptr_t)p != addr || h->nslots != nslots ||
        (char *)h->slots != p + l.slots || (char *)h->interest != p + l.interest) {
        munmap(p, l.total);
        return -EADDRNOTAVAIL;
    }
    lh_shm = h;
    shm_fd = fd;
    return 0;
}

static long ns_find(const char *name, size_t len)
{
    uint32_t n = atomic_load_explicit(&lh_shm->nns, memory_order_acquire);

    for (uint32_t i = 0; i < n && i < LH_NS_LABELS; i++)
        if (strlen(lh_shm->ns_names[i]) == len && memcmp(lh_shm->ns_names[i], name, len) == 0)
            return (long)i;
    return -1;
}

void lh_metrics_ns_register(const char *const *names, size_t n)
{
    if (lh_shm == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = atomic_load_explicit(&lh_shm->nns, memory_order_relaxed);
        size_t len = strlen(names[i]);

        if (ns_find(names[i], len) >= 0 || k >= LH_NS_LABELS || len >= 256)
            continue;
        memcpy(lh_shm->ns_names[k], names[i], len + 1);
        atomic_store_explicit(&lh_shm->nns, k + 1, memory_order_release);
    }
}

unsigned lh_metrics_ns_index(const char *name, size_t len)
{
    long i;

    if (lh_shm == NULL || (i = ns_find(name, len)) < 0)
        return LH_NS_LABELS;
    return (unsigned)i;
}

int lh_shm_slot = -1;

void lh_metrics_use_slot(int i)
{
    if (lh_shm != NULL && i >= 0 && i < lh_shm->nslots) {
        lh_ctr = &lh_shm->slots[i].c;
        lh_shm_slot = i;
    }
}

uint64_t lh_metrics_chan_hash(const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: the same in every worker */

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211ull;
    return h;
}

int lh_metrics_chan_add(uint64_t hash)
{
    uint32_t n;

    if (lh_shm == NULL || lh_shm_slot < 0)
        return -1;
    n = atomic_load_explicit(&lh_shm->nchan[lh_shm_slot], memory_order_relaxed);
    if (n >= LH_CHAN_TRACK)
        return -1;
    atomic_store_explicit(&lh_shm->chan[lh_shm_slot][n], hash, memory_order_relaxed);
    atomic_store_explicit(&lh_shm->nchan[lh_shm_slot], n + 1, memory_order_release);
    return (int)n;
}

int lh_metrics_chan_remove(int idx)
{
    uint32_t last;

    if (lh_shm == NULL || lh_shm_slot < 0 || idx < 0)
        return -1;
    last = atomic_load_explicit(&lh_shm->nchan[lh_shm_slot], memory_order_relaxed) - 1;
    if ((uint32_t)idx != last)
        atomic_store_explicit(&lh_shm->chan[lh_shm_slot][idx],
                              atomic_load_explicit(&lh_shm->chan[lh_shm_slot][last],
                                                   memory_order_relaxed),
                              memory_order_relaxed);
    atomic_store_explicit(&lh_shm->nchan[lh_shm_slot], last, memory_order_release);
    return (uint32_t)idx != last ? (int)last : -1;
}

int lh_metrics_load(uint64_t *mine, uint64_t *avg)
{
    uint64_t total = 0, n = 0;
    uint32_t gen;

    if (lh_shm == NULL || lh_shm_slot < 0)
        return -1;
    gen = atomic_load_explicit(&lh_shm->slots[lh_shm_slot].generation, memory_order_relaxed);
    /* Runs at every accept: only the slots in use, not the whole table. */
    for (int w = 0; w < (lh_shm->nslots + 63) / 64; w++) {
        uint64_t bits = atomic_load_explicit(&lh_shm->used[w], memory_order_acquire);

        while (bits != 0) {
            lh_slot_t *s = &lh_shm->slots[w * 64 + __builtin_ctzll(bits)];

            bits &= bits - 1;
            if (atomic_load_explicit(&s->state, memory_order_relaxed) != LH_SLOT_ACTIVE ||
                atomic_load_explicit(&s->generation, memory_order_relaxed) != gen)
                continue;
            total += atomic_load_explicit(&s->c.v[LH_G_WS_OPEN], memory_order_relaxed) +
                     atomic_load_explicit(&s->c.v[LH_G_HTTP_OPEN], memory_order_relaxed);
            n++;
        }
    }
    if (n < 2)
        return -1;
    *mine = lh_m_get(LH_G_WS_OPEN) + lh_m_get(LH_G_HTTP_OPEN);
    *avg = total / n;
    return 0;
}

int lh_metrics_slot_alloc(int index, int pid, unsigned generation)
{
    if (lh_shm == NULL)
        return -1;
    for (int i = 0; i < lh_shm->nslots; i++) {
        lh_slot_t *s = &lh_shm->slots[i];

        if (atomic_load(&s->state) == LH_SLOT_FREE) {
            for (unsigned k = 0; k < LH_M_NVALUES; k++)
                atomic_store_explicit(&s->c.v[k], 0, memory_order_relaxed);
            atomic_store(&s->index, index);
            atomic_store(&s->pid, pid);
            atomic_store(&s->generation, generation);
            atomic_store(&lh_shm->nchan[i], 0);
            if (atomic_load(&lh_shm->interest_dirty[i])) {
                /* What the slot's previous worker left (it may have died with channels). */
                memset((void *)lh_shm->interest[i], 0, sizeof(lh_shm->interest[i]));
                atomic_store(&lh_shm->interest_dirty[i], 0);
            }
            atomic_fetch_or(&lh_shm->used[i / 64], 1ull << (i % 64));
            atomic_store(&s->state, LH_SLOT_STARTING);
            return i;
        }
    }
    return -1;
}

void lh_metrics_slot_release(int slot)
{
    lh_slot_t *s;

    if (lh_shm == NULL || slot < 0 || slot >= lh_shm->nslots)
        return;
    s = &lh_shm->slots[slot];
    /* Seqlock: readers retry while seq is odd or changed, so they never see the counts
     * both in the slot and in retired, or in neither. */
    atomic_fetch_add_explicit(&lh_shm->seq, 1, memory_order_acq_rel);
    for (unsigned k = 0; k < LH_M_NCOUNTERS; k++) {
        uint64_t v = atomic_load_explicit(&s->c.v[k], memory_order_relaxed);

        atomic_fetch_add_explicit(&lh_shm->retired.v[k], v, memory_order_relaxed);
    }
    atomic_store(&lh_shm->nchan[slot], 0);
    atomic_fetch_and(&lh_shm->used[slot / 64], ~(1ull << (slot % 64)));
    atomic_store(&s->state, LH_SLOT_FREE);
    atomic_fetch_add_explicit(&lh_shm->seq, 1, memory_order_acq_rel);
}

