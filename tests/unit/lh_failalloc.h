/*
 * lh_failalloc: an allocator that fails on purpose, for unit tests of out-of-memory paths.
 *
 * A test binary that uses it is linked with lh_failalloc.o and
 -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup and
 * --wrap=curl_easy_init,--wrap=event_new (add the binary to FAILALLOC_TESTS in the
 * Makefile). Every call to those functions from the objects of the link (lhttpd's worker
 * and shared code, and the test itself) then goes through the wrappers here, the two
 * library constructors counting as allocations too; calls made inside shared libraries
 * (libcurl, libevent, libc) do not: what is tested is how lhttpd's own code copes with
 * its allocations failing. Only the calls of the thread that armed it count.
 * The wrappers call the real functions (ASan's, in a sanitizer build, so crashes, leaks
 * and out-of-bounds reads on the failure paths are reported as usual).
 *
 * Use: lh_failalloc_arm(n) makes the nth wrapped allocation from now fail (returns NULL,
 * errno ENOMEM), once; the ones after it succeed again. A typical test runs an operation
 * with n = 1, 2, 3... until lh_failalloc_fired() says the failure was not reached (the
 * operation needed fewer allocations), checking at each n that the operation failed
 * cleanly. lh_failalloc_disarm() stops failing; lh_failalloc_calls() counts the wrapped
 * calls since the last arm (or since start). With LH_FAILALLOC_TRACE set in the
 * environment, the stack of each failed call is printed to stderr.
 */
#ifndef LH_FAILALLOC_H
#define LH_FAILALLOC_H

#include <stddef.h>

void lh_failalloc_arm(unsigned long n);
void lh_failalloc_disarm(void);
/* 1 when the armed failure has happened. */
int lh_failalloc_fired(void);
unsigned long lh_failalloc_calls(void);

#endif
