/*
 * A minimal unit-test harness printing TAP: each LH_TEST is one test point, "ok N - name"
 * or "not ok N - name" with the failed checks as "#" lines. tests/run.sh counts them.
 */
#ifndef LH_TEST_H
#define LH_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int lh_t_failed_checks; /* failed checks in the current test */
static int lh_t_n, lh_t_fail;

#define LH_CHECK(cond)                                                                   \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            printf("# %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);            \
            lh_t_failed_checks++;                                                        \
        }                                                                                \
    } while (0)

#define LH_CHECK_INT(a, b)                                                               \
    do {                                                                                 \
        long long lh_a_ = (long long)(a), lh_b_ = (long long)(b);                        \
        if (lh_a_ != lh_b_) {                                                            \
            printf("# %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, \
                   lh_a_, #b, lh_b_);                                                    \
            lh_t_failed_checks++;                                                        \
        }                                                                                \
    } while (0)

#define LH_CHECK_MEM(p, plen, s)                                                         \
    do {                                                                                 \
        size_t lh_l_ = strlen(s);                                                        \
        if ((size_t)(plen) != lh_l_ || memcmp((p), (s), lh_l_) != 0) {                   \
            printf("# %s:%d: %s is \"%.*s\", expected \"%s\"\n", __FILE__, __LINE__, #p, \
                   (int)(plen), (const char *)(p), (s));                                 \
            lh_t_failed_checks++;                                                        \
        }                                                                                \
    } while (0)

#define LH_TEST(name) static void name(void)

#define LH_RUN(name)                                                                     \
    do {                                                                                 \
        lh_t_failed_checks = 0;                                                          \
        name();                                                                          \
        lh_t_n++;                                                                        \
        if (lh_t_failed_checks) {                                                        \
            lh_t_fail++;                                                                 \
            printf("not ok %d - %s\n", lh_t_n, #name);                                   \
        } else {                                                                         \
            printf("ok %d - %s\n", lh_t_n, #name);                                       \
        }                                                                                \
        fflush(stdout);                                                                  \
    } while (0)

#define LH_DONE()                                                                        \
    do {                                                                                 \
        printf("1..%d\n", lh_t_n);                                                       \
        return lh_t_fail ? 1 : 0;                                                        \
    } while (0)

#endif
