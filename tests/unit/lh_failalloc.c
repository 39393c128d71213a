/* The failing allocator of lh_failalloc.h: wrappers for the linker's --wrap. */
#include "lh_failalloc.h"

#include <errno.h>
#include <execinfo.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
CURL *__real_curl_easy_init(void);
CURL *__wrap_curl_easy_init(void);
struct event *__real_event_new(struct event_base *b, evutil_socket_t fd, short what,
                               event_callback_fn cb, void *arg);
struct event *__wrap_event_new(struct event_base *b, evutil_socket_t fd, short what,
                               event_callback_fn cb, void *arg);

/* Per thread: only the arming thread's calls count (cnats has threads of its own). */
static _Thread_local unsigned long calls, fail_at; /* fail_at 0: never */
static _Thread_local int fired;

void lh_failalloc_arm(unsigned long n)
{
    calls = 0;
    fired = 0;
    fail_at = n;
}

void lh_failalloc_disarm(void)
{
    fail_at = 0;
}

int lh_failalloc_fired(void)
{
    return fired;
}

unsigned long lh_failalloc_calls(void)
{
    return calls;
}

/* 1 when this call is the one to fail. */
static int fail_now(void)
{
    calls++;
    if (fail_at != 0 && calls == fail_at) {
        fired = 1;
        if (getenv("LH_FAILALLOC_TRACE") != NULL) {
            void *bt[32];
            int n = backtrace(bt, 32);

            (void)!write(2, "lh_failalloc: failing here:\n", 29);
            backtrace_symbols_fd(bt, n, 2);
        }
        errno = ENOMEM;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
    return fail_now() ? NULL : __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return fail_now() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return fail_now() ? NULL : __real_strndup(s, n);
}

CURL *__wrap_curl_easy_init(void)
{
    return fail_now() ? NULL : __real_curl_easy_init();
}

struct event *__wrap_event_new(struct event_base *b, evutil_socket_t fd, short what,
                               event_callback_fn cb, void *arg)
{
    return fail_now() ? NULL : __real_event_new(b, fd, what, cb, arg);
}
