/*
 * What every layer of a worker process may read, conn.c at the bottom included, without
 * depending on the loop's owner (worker.c): the clock (monotonic, for deadlines and
 * latency) and the worker of this process.
 */
#include "worker.h"

#include <time.h>

lh_worker_t *lh_current_worker;

uint64_t lh_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t lh_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
