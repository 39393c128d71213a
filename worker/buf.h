/*
 * Reference-counted, immutable output buffers: a WebSocket frame (header + payload) is
 * built once into one lh_buf_t and queued on any number of connections without a copy.
 */
#ifndef LH_BUF_H
#define LH_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct lh_buf_s {
    uint32_t refs;
    uint32_t flags; /* LH_BUF_* */
    size_t len;
    uint64_t t_ns;  /* LH_BUF_TIMED: when the message reached this worker */
    uint8_t data[];
} lh_buf_t;

#define LH_BUF_CLOSE_FRAME 1u /* this buffer is a WebSocket close frame */
#define LH_BUF_TIMED 2u       /* a delivery: its write time goes to the latency histogram */

/* A new buffer of len bytes with one reference, or NULL. */
lh_buf_t *lh_buf_new(size_t len);

static inline lh_buf_t *lh_buf_ref(lh_buf_t *b)
{
    b->refs++;
    return b;
}

/* Drops one reference; frees on the last. Accepts NULL. */
void lh_buf_unref(lh_buf_t *b);

/* Total buffers alive in this process: a counter for tests and metrics. */
extern uint64_t lh_buf_live, lh_buf_allocated;

#endif
