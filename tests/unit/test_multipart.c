/*
 * Unit tests for shared/lh_multipart.c: valid offset lists and parts, every kind of
 * hostile offset list and part, the limits, and a seeded random walk checking that no
 * input is read out of bounds and that valid parts always tile the body.
 *
 * Then the public API over it in worker/dispatch.c, on a fake worker and connection
 * (no loop, no socket: what is sent stays in the connection's send queue, where the
 * tests read it): messages go through lh_dispatch_message to a test filter that calls
 * lh_msg_part and lh_msg_set_header; a refused message never reaches it and gets its
 * error reply.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_ANONYMOUS */
#endif
#include "lh_test.h"
#include "lh_multipart.h"

#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lh_config.h"
#include "lh_log.h"
#include "worker.h"

/*
 * The list and the body are each read from the end of a mapping followed by an
 * inaccessible page, so reading one byte past either faults.
 */
#define ARENA (256 * 1024)
static unsigned char *arena[2];
static size_t pagesz;

static void arena_init(void)
{
    pagesz = (size_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < 2; i++) {
        arena[i] = mmap(NULL, ARENA + pagesz, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (arena[i] == MAP_FAILED || mprotect(arena[i] + ARENA, pagesz, PROT_NONE) != 0) {
            perror("mmap");
            exit(1);
        }
    }
}

static const char *guard(int which, const char *s, size_t n)
{
    char *p = (char *)arena[which] + ARENA - n;

    if (n > ARENA)
        abort();
    if (n)
        memcpy(p, s, n);
    return p;
}

static const char *L, *Bd; /* the guarded list and body of the last check */
static size_t Ll, Bl;
static char why[LH_MULTIPART_REASON_MAX];

/* Checks list against a body of n bytes (may hold NULs), both guarded. */
static long check_n(const char *list, const char *body, size_t n, const lh_multipart_limits_t *lim)
{
    Ll = strlen(list);
    Bl = n;
    L = guard(0, list, Ll);
    Bd = guard(1, body, n);
    memset(why, 'x', sizeof(why));
    return lh_multipart_check(L, Ll, Bd, Bl, lim, why, sizeof(why));
}

static long check(const char *list, const char *body)
{
    static const lh_multipart_limits_t lim = {64, 4096};

    return check_n(list, body, strlen(body), &lim);
}

static int part(size_t i, lh_multipart_part_t *p)
{
    memset(p, 0xa5, sizeof(*p));
    return lh_multipart_part(L, Ll, Bd, Bl, i, p);
}

/* The reason of the last failed check contains text. */
#define CHECK_WHY(text)                                                                  \
    do {                                                                                 \
        if (strstr(why, (text)) == NULL) {                                               \
            printf("# %s:%d: reason \"%s\" does not contain \"%s\"\n", __FILE__,         \
                   __LINE__, why, (text));                                               \
            lh_t_failed_checks++;                                                        \
        }                                                                                \
    } while (0)

/* A reason is one short line of visible ASCII and spaces, fit for a header value. */
static int reason_ok(void)
{
    size_t n = strnlen(why, sizeof(why));

    if (n == 0 || n >= sizeof(why) - 1 || why[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (why[i] < 0x20 || why[i] > 0x7e)
            return 0;
    return 1;
}

/* ---- valid ---- */

LH_TEST(single_part)
{
    lh_multipart_part_t p;

    LH_CHECK_INT(check("0", "content-type: text/plain\r\n\r\nhello"), 1);
    LH_CHECK_INT(part(0, &p), 0);
    LH_CHECK_INT(p.num_headers, 1);
    LH_CHECK_MEM(p.headers[0].key, p.headers[0].key_len, "content-type");
    LH_CHECK_MEM(p.headers[0].value, p.headers[0].value_len, "text/plain");
    LH_CHECK_MEM(p.body, p.body_len, "hello");
    LH_CHECK_INT(part(1, &p), -1);
}

LH_TEST(two_parts_zero_copy)
{
    const char *body = "name:a\r\n\r\nfirst" "name:b\nx:\n\nsecond\r\n";
    lh_multipart_part_t p;

    LH_CHECK_INT(check("0 15", body), 2);
    LH_CHECK_INT(part(0, &p), 0);
    LH_CHECK_INT(p.num_headers, 1);
    LH_CHECK_MEM(p.headers[0].value, p.headers[0].value_len, "a");
    LH_CHECK_MEM(p.body, p.body_len, "first");
    /* Pointers into the caller's body, not copies. */
    LH_CHECK(p.body == Bd + 10);
    LH_CHECK(p.headers[0].key == Bd);
    LH_CHECK_INT(part(1, &p), 0);
    LH_CHECK_INT(p.num_headers, 2);
    LH_CHECK_MEM(p.headers[0].value, p.headers[0].value_len, "b");
    LH_CHECK_MEM(p.headers[1].key, p.headers[1].key_len, "x");
    LH_CHECK_INT(p.headers[1].value_len, 0);
    LH_CHECK_MEM(p.body, p.body_len, "second\r\n");
    LH_CHECK(p.body == Bd + 15 + 11);
    LH_CHECK_INT(part(2, &p), -1);
    LH_CHECK_INT(part(SIZE_MAX, &p), -1);
}

LH_TEST(separators_are_runs_of_blanks)
{
    lh_multipart_part_t p;

    LH_CHECK_INT(check("  0 \t  3\t\t6   ", "\nab\ncd\nef"), 3);
    LH_CHECK_INT(part(0, &p), 0);
    LH_CHECK_MEM(p.body, p.body_len, "ab");
    LH_CHECK_INT(part(1, &p), 0);
    LH_CHECK_MEM(p.body, p.body_len, "cd");
    LH_CHECK_INT(part(2, &p), 0);
    LH_CHECK_MEM(p.body, p.body_len, "ef");
}

LH_TEST(parts_without_headers_or_body)
{
    lh_multipart_part_t p;

    /* "\r\n" alone: no headers, empty body; then "\n" alone; then headers, empty body. */
    LH_CHECK_INT(check("0 2 3", "\r\n\nk:v\r\n\r\n"), 3);
    LH_CHECK_INT(part(0, &p), 0);
    LH_CHECK_INT(p.num_headers, 0);
    LH_CHECK_INT(p.body_len, 0);
    LH_CHECK_INT(part(1, &p), 0);
    LH_CHECK_INT(p.num_headers, 0);
    LH_CHECK_INT(p.body_len, 0);
    LH_CHECK_INT(part(2, &p), 0);
    LH_CHECK_INT(p.num_headers, 1);
    LH_CHECK_INT(p.body_len, 0);
}

LH_TEST(part_body_is_verbatim)
{
    static const char body[] = "k:v\n\nx:y\r\n\r\n\0\r\xff" "\n\nz";
    lh_multipart_part_t p;

    LH_CHECK_INT(check_n("0 16", body, sizeof(body) - 1, NULL), 2);
    LH_CHECK_INT(part(0, &p), 0);
    LH_CHECK_INT(p.num_headers, 1);
    LH_CHECK_INT(p.body_len, 11);
    LH_CHECK(memcmp(p.body, "x:y\r\n\r\n\0\r\xff", 10) == 0);
    LH_CHECK_INT(part(1, &p), 0);
    LH_CHECK_INT(p.num_headers, 0);
    LH_CHECK_MEM(p.body, p.body_len, "z");
}

LH_TEST(header_values_trimmed_keys_verbatim)
{
    lh_multipart_part_t p;

    LH_CHECK_INT(check("0", "Content-Type: \t a:b c \t\r\nE:\r\n\r\n"), 1);
    LH_CHECK_INT(part(0, &p), 0);
    LH_CHECK_INT(p.num_headers, 2);
    LH_CHECK_MEM(p.headers[0].key, p.headers[0].key_len, "Content-Type");
    LH_CHECK_MEM(p.headers[0].value, p.headers[0].value_len, "a:b c");
    LH_CHECK_MEM(p.headers[1].key, p.headers[1].key_len, "E");
    LH_CHECK_INT(p.headers[1].value_len, 0);
}

LH_TEST(zero_is_not_a_leading_zero)
{
    LH_CHECK_INT(check("0 1", "\n\n"), 2);
}

/* ---- hostile offset lists ---- */

LH_TEST(empty_list)
{
    LH_CHECK_INT(check("", "\nx"), -1);
    CHECK_WHY("lists no offset");
    LH_CHECK(reason_ok());
    LH_CHECK_INT(check(" \t ", "\nx"), -1);
    CHECK_WHY("lists no offset");
}

LH_TEST(not_decimal)
{
    static const char *const bad[] = {"-1", "+0", "0x10", "1e3", "1.5", "0,5", "abc",
                                      "0 -0", "0 5a", "\xc2\xbd", "\x01", "0 \x7f"};

    for (size_t i = 0; i < LH_ARRAY_LEN(bad); i++) {
        LH_CHECK_INT(check(bad[i], "\nabcdefghijklmnop"), -1);
        CHECK_WHY("is not a decimal number");
        LH_CHECK(reason_ok());
    }
    LH_CHECK_INT(check("0 x", "\nabc"), -1);
    CHECK_WHY("\"x\"");
}

LH_TEST(leading_zero)
{
    LH_CHECK_INT(check("00", "\nabc"), -1);
    CHECK_WHY("leading zero");
    LH_CHECK_INT(check("0 01", "\nabc"), -1);
    CHECK_WHY("\"01\" has a leading zero");
}

LH_TEST(first_offset_must_be_zero)
{
    LH_CHECK_INT(check("1", "x\n\n"), -1);
    CHECK_WHY("first multipart offset must be 0, not 1");
    LH_CHECK(reason_ok());
}

LH_TEST(duplicates_and_order)
{
    LH_CHECK_INT(check("0 2 2", "\n\n\n\n"), -1);
    CHECK_WHY("offset 2 appears twice");
    LH_CHECK_INT(check("0 0", "\n\n"), -1);
    CHECK_WHY("offset 0 appears twice");
    LH_CHECK_INT(check("0 3 2", "\n\n\n\n"), -1);
    CHECK_WHY("out of order: 2 after 3");
    LH_CHECK(reason_ok());
}

LH_TEST(beyond_the_body)
{
    /* At the end of the body: a part needs at least its empty line. */
    LH_CHECK_INT(check("0 3", "\nab"), -1);
    CHECK_WHY("offset 3 is not inside the body (3 bytes)");
    LH_CHECK_INT(check("0 4", "\nab"), -1);
    CHECK_WHY("offset 4 is not inside the body");
    LH_CHECK_INT(check("0", ""), -1);
    CHECK_WHY("offset 0 is not inside the body (0 bytes)");
    LH_CHECK(reason_ok());
}

LH_TEST(huge_numbers_do_not_overflow)
{
    static const char *const huge[] = {
        "0 18446744073709551615", /* SIZE_MAX on 64 bits */
        "0 18446744073709551616", /* SIZE_MAX + 1 */
        "0 36893488147419103232", /* wraps to 0 when multiplied carelessly */
        "0 18446744073709551617", /* wraps to 1 */
        "0 99999999999999999999999999999999999999999999999999999999999999999999",
    };

    for (size_t i = 0; i < LH_ARRAY_LEN(huge); i++) {
        LH_CHECK_INT(check(huge[i], "\nabcdef"), -1);
        CHECK_WHY("is not inside the body (7 bytes)");
        LH_CHECK(reason_ok());
    }
    /* A long token is quoted shortened. */
    LH_CHECK_INT(check(huge[4], "\nabcdef"), -1);
    CHECK_WHY("...");
}

LH_TEST(max_parts)
{
    lh_multipart_limits_t lim = {3, 0};
    lh_multipart_part_t p;

    LH_CHECK_INT(check_n("0 1 2", "\n\n\n", 3, &lim), 3);
    LH_CHECK_INT(check_n("0 1 2 3", "\n\n\n\n", 4, &lim), -1);
    CHECK_WHY("more than 3 multipart parts (limits.max_multipart_parts)");
    /* No limit at all. */
    LH_CHECK_INT(check_n("0 1 2 3", "\n\n\n\n", 4, NULL), 4);
    LH_CHECK_INT(part(3, &p), 0);
    LH_CHECK_INT(part(4, &p), -1);
}

LH_TEST(many_parts)
{
    static char body[4096], list[4096 * 6];
    lh_multipart_limits_t lim = {4096, 0};
    lh_multipart_part_t p;
    size_t off = 0;

    for (size_t i = 0; i < sizeof(body); i++) {
        body[i] = '\n';
        off += (size_t)sprintf(list + off, i ? " %zu" : "%zu", i);
    }
    LH_CHECK_INT(check_n(list, body, sizeof(body), &lim), 4096);
    LH_CHECK_INT(part(4095, &p), 0);
    LH_CHECK_INT(p.body_len, 0);
    LH_CHECK(p.body == Bd + 4096);
}

/* ---- hostile parts ---- */

LH_TEST(part_without_header_end)
{
    LH_CHECK_INT(check("0", "k:v"), -1);
    CHECK_WHY("part 0 (bytes 0 to 2) has no empty line after its headers");
    LH_CHECK_INT(check("0", "k:v\r\n"), -1);
    CHECK_WHY("no empty line");
    LH_CHECK_INT(check("0", "k:v\r\n\r"), -1);
    CHECK_WHY("no empty line");
    /* The empty line that would end part 0's headers lies in part 1. */
    LH_CHECK_INT(check("0 4", "k:v\n\nbody"), -1);
    CHECK_WHY("part 0 (bytes 0 to 3) has no empty line");
    /* The second part is the one without. */
    LH_CHECK_INT(check("0 2", "\nxk:v\n"), -1);
    CHECK_WHY("part 1 (bytes 2 to 5) has no empty line");
    LH_CHECK(reason_ok());
}

LH_TEST(bad_part_header_lines)
{
    static const struct {
        const char *body;
        size_t len;
        const char *why;
    } bad[] = {
        {"nocolon\n\n", 9, "without ':'"},
        {":v\n\n", 4, "empty header key"},
        {"a key:v\n\n", 9, "invalid character in a header key"},
        {" k:v\n\n", 6, "invalid character in a header key"},
        {"k\x80:v\n\n", 7, "invalid character in a header key"},
        {"k:v\0w\n\n", 7, "NUL byte"},
        {"k:v\rw\n\n", 7, "CR not followed by LF"},
        {"k:v\r\r\n\n", 7, "CR not followed by LF"},
    };

    for (size_t i = 0; i < LH_ARRAY_LEN(bad); i++) {
        LH_CHECK_INT(check_n("0", bad[i].body, bad[i].len, NULL), -1);
        CHECK_WHY(bad[i].why);
        CHECK_WHY("multipart part 0");
        LH_CHECK(reason_ok());
    }
}

LH_TEST(part_header_cap)
{
    char body[1024];
    size_t n = 0;
    lh_multipart_part_t p;

    for (int i = 0; i < LH_MULTIPART_HEADERS_MAX; i++)
        n += (size_t)sprintf(body + n, "h%d:%d\n", i, i);
    strcpy(body + n, "\nbody");
    LH_CHECK_INT(check("0", body), 1);
    LH_CHECK_INT(part(0, &p), 0);
    LH_CHECK_INT(p.num_headers, LH_MULTIPART_HEADERS_MAX);
    LH_CHECK_MEM(p.headers[31].key, p.headers[31].key_len, "h31");
    LH_CHECK_MEM(p.body, p.body_len, "body");
    n += (size_t)sprintf(body + n, "one:more\n");
    strcpy(body + n, "\nbody");
    LH_CHECK_INT(check("0", body), -1);
    CHECK_WHY("more than 32 headers");
}

LH_TEST(part_header_line_limit)
{
    lh_multipart_limits_t lim = {64, 8};

    LH_CHECK_INT(check_n("0", "k:123456\r\n\r\n", 12, &lim), 1);
    LH_CHECK_INT(check_n("0", "k:1234567\r\n\r\n", 13, &lim), -1);
    CHECK_WHY("longer than limits.max_header_line");
}

LH_TEST(reason_buffer_small_or_missing)
{
    char small[8];
    const char *list = "0 7";
    lh_multipart_part_t p;

    LH_CHECK_INT(lh_multipart_check(list, 3, "\nabc", 4, NULL, small, sizeof(small)), -1);
    LH_CHECK_INT(strlen(small), 7);
    LH_CHECK_INT(lh_multipart_check(list, 3, "\nabc", 4, NULL, NULL, 0), -1);
    /* lh_multipart_part refuses what check refuses, whatever i. */
    LH_CHECK_INT(lh_multipart_part(list, 3, "\nabc", 4, 0, &p), -1);
    LH_CHECK_INT(lh_multipart_part("x", 1, "\nabc", 4, 0, &p), -1);
    LH_CHECK_INT(lh_multipart_part("", 0, "\nabc", 4, 0, &p), -1);
}

/*
 * Seeded random lists and bodies, built from the pieces that matter (digits, blanks,
 * line ends, colons): nothing faults (guard pages, sanitizers), every reason is a valid
 * one-line text, and when a list passes, its parts tile the body exactly and each
 * parses.
 */
LH_TEST(random_inputs)
{
    static const char list_alpha[] = "0123456789 \t-x";
    static const char body_alpha[] = "\r\n\n\n:k v\0";
    uint64_t seed = 0x6c68747470646d70ull;
    char list[64], body[64];
    lh_multipart_limits_t lim = {8, 16};
    int valid = 0;

    for (int iter = 0; iter < 200000; iter++) {
        size_t ll, bl, sum;
        long n;

        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        ll = (seed >> 33) % 12;
        bl = (seed >> 40) % 24;
        for (size_t i = 0; i < ll; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            /* Favour small increasing numbers so that some lists are valid. */
            list[i] = (seed >> 60) < 6 ? list_alpha[(seed >> 33) % (sizeof(list_alpha) - 1)]
                                       : ((seed >> 60) & 1 ? ' ' : (char)('0' + (seed >> 33) % 10));
        }
        list[ll] = '\0';
        if ((iter & 3) == 0 && bl > 0) /* a common valid shape */
            snprintf(list, sizeof(list), "0 %zu", (size_t)(seed >> 20) % bl);
        for (size_t i = 0; i < bl; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            body[i] = body_alpha[(seed >> 33) % (sizeof(body_alpha) - 1)];
        }
        n = check_n(list, body, bl, &lim);
        if (n < 0) {
            if (!reason_ok()) {
                printf("# bad reason \"%s\" for list \"%s\"\n", why, list);
                lh_t_failed_checks++;
                return;
            }
            continue;
        }
        valid++;
        sum = 0;
        for (long i = 0; i < n; i++) {
            lh_multipart_part_t p;

            if (part((size_t)i, &p) != 0) {
                printf("# part %ld of a valid list \"%s\" does not parse\n", i, list);
                lh_t_failed_checks++;
                return;
            }
            if (i + 1 == n) /* the last part ends at the end of the body */
                LH_CHECK(p.body + p.body_len == Bd + Bl);
            sum += p.body_len;
        }
        LH_CHECK(sum <= Bl);
        LH_CHECK_INT(part((size_t)n, &(lh_multipart_part_t){0}), -1);
    }
    /* The generator must reach valid lists too, or the loop proves little. */
    LH_CHECK(valid > 1000);
}

/* ---- lh_msg_part and lh_msg_set_header through lh_dispatch_message ---- */

static lh_worker_t *W;
static lh_conn_t *C;
static lh_config_t *CFG;
static void (*hook)(lh_msg_t *m); /* what the test filter runs */
static int hook_runs;

static int test_before(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    hook_runs++;
    if (hook)
        hook(m);
    return LH_FILTER_STOP; /* no processor, nothing sent */
}

/* A worker with these limits and one connection; the test filter registered once. */
static void fake(size_t max_headers, size_t max_line, size_t max_message, size_t max_parts)
{
    static int registered;
    static const lh_filter_t f = {"test", NULL, test_before, NULL, NULL};

    if (!registered) {
        lh_register_filter(&f, NULL);
        registered = 1;
        lh_log_level = LH_LOG_ERR;
    }
    lh_config_free(CFG);
    free(W);
    free(C);
    CFG = lh_config_default();
    CFG->limits.max_headers = max_headers;
    CFG->limits.max_header_line = max_line;
    CFG->limits.max_message_bytes = max_message;
    CFG->limits.max_multipart_parts = max_parts;
    W = calloc(1, sizeof(*W));
    C = calloc(1, sizeof(*C));
    W->cfg = CFG;
    W->lhttp_limits.max_headers = max_headers;
    W->lhttp_limits.max_line = max_line;
    C->w = W;
    C->id = 1;
    C->peer = strdup("test");
    C->state = LH_CONN_WS;
    C->flags = LH_CF_FLUSH_LISTED; /* "a flush is due": sends just queue */
}

/* Pops the oldest message sent on the fake connection into out (NUL-terminated, the
 * WebSocket header skipped). Returns 0, or -1 when nothing was sent. */
static int take_sent(char *out, size_t cap)
{
    lh_outq_t *q = &C->out;
    lh_buf_t *b;
    size_t hl, n;

    if (q->count == 0)
        return -1;
    b = q->items[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->count--;
    q->bytes -= b->len;
    hl = (b->data[1] & 0x7f) < 126 ? 2 : 4;
    n = b->len - hl < cap - 1 ? b->len - hl : cap - 1;
    memcpy(out, b->data + hl, n);
    out[n] = '\0';
    lh_buf_unref(b);
    return 0;
}

static void fake_free(void)
{
    char junk[64];

    while (take_sent(junk, sizeof(junk)) == 0)
        ;
    free(C->out.items);
    lh_config_free(CFG);
    free(C->peer);
    free(W);
    free(C);
    CFG = NULL;
    W = NULL;
    C = NULL;
}

/* Dispatches s (a writable copy) with fn as the filter's hook. */
static void dispatch(const char *s, void (*fn)(lh_msg_t *m))
{
    size_t n = strlen(s);
    uint8_t *copy = malloc(n + 1);

    memcpy(copy, s, n + 1);
    hook = fn;
    hook_runs = 0;
    lh_dispatch_message(C, copy, n, 0);
    free(copy);
}

#define CHECK_RAW(m, text)                                                               \
    do {                                                                                 \
        size_t rl_;                                                                      \
        const char *r_ = lh_msg_raw((m), &rl_);                                          \
        LH_CHECK_MEM(r_, rl_, (text));                                                   \
    } while (0)

static void parts_hook(lh_msg_t *m)
{
    lh_part_t p;
    size_t bl;
    const char *body = lh_msg_body(m, &bl);

    LH_CHECK_INT(lh_msg_part_count(m), 2);
    LH_CHECK_INT(lh_msg_part(m, 0, &p), 0);
    LH_CHECK_INT(p.num_headers, 1);
    LH_CHECK_MEM(p.headers[0].key, p.headers[0].key_len, "name");
    LH_CHECK_MEM(p.headers[0].value, p.headers[0].value_len, "a");
    LH_CHECK_MEM(p.body, p.body_len, "one");
    LH_CHECK(p.body >= body && p.body + p.body_len <= body + bl); /* in place */
    LH_CHECK_INT(lh_msg_part(m, 1, &p), 0);
    LH_CHECK_INT(p.num_headers, 0);
    LH_CHECK_MEM(p.body, p.body_len, "two");
    LH_CHECK_INT(lh_msg_part(m, 2, &p), -1);
    LH_CHECK_INT(lh_msg_part(m, SIZE_MAX, &p), -1);
}

static void no_parts_hook(lh_msg_t *m)
{
    lh_part_t p;

    LH_CHECK_INT(lh_msg_part_count(m), 0);
    LH_CHECK_INT(lh_msg_part(m, 0, &p), -1);
}

LH_TEST(api_parts)
{
    char sent[256];

    fake(32, 4096, 1 << 20, 64);
    dispatch("LHTTP/1.0 x\r\nmultipart: 0 13\r\n\r\nname:a\r\n\r\none\ntwo", parts_hook);
    LH_CHECK_INT(hook_runs, 1);
    LH_CHECK_INT(take_sent(sent, sizeof(sent)), -1);
    dispatch("LHTTP/1.0 x\r\nk:v\r\n\r\nbody", no_parts_hook);
    LH_CHECK_INT(hook_runs, 1);
    fake_free();
}

LH_TEST(api_refused_multipart_reaches_no_filter)
{
    static const char *const bad[][2] = {
        {"LHTTP/1.0 x\r\nmultipart: 0 3 2\r\n\r\n\n\n\n\n", "offsets out of order: 2 after 3"},
        {"LHTTP/1.0 x\r\nmultipart:\r\n\r\n\n", "lists no offset"},
        {"LHTTP/1.0 x\r\nmultipart: 0 18446744073709551616\r\n\r\n\nab",
         "offset 18446744073709551616 is not inside the body (3 bytes)"},
        {"LHTTP/1.0 x\r\nmultipart: 0\r\n\r\nno line end", "part 0 (bytes 0 to 10) has no empty line"},
        {"LHTTP/1.0 x\r\nmultipart: 0\r\n\r\nno colon\n\n", "invalid character in a header key"},
        {"LHTTP/1.0 x\r\nmultipart: 0\r\n\r\nk:v\r\n", "has no empty line after its headers"},
        {"LHTTP/1.0 x\r\nmultipart: 0 1 2\r\n\r\n\n\n\n", "more than 2 multipart parts"},
    };
    static const char head[] = "LHTTP/1.0 error\r\ncode:400\r\nreason:";
    uint64_t errors = lh_m_get(LH_M_LHTTP_ERRORS);
    char sent[256];

    fake(32, 4096, 1 << 20, 2);
    for (size_t i = 0; i < LH_ARRAY_LEN(bad); i++) {
        dispatch(bad[i][0], NULL);
        LH_CHECK_INT(hook_runs, 0);
        LH_CHECK_INT(take_sent(sent, sizeof(sent)), 0);
        LH_CHECK(strncmp(sent, head, strlen(head)) == 0);
        LH_CHECK(strstr(sent, bad[i][1]) != NULL);
        LH_CHECK(strstr(sent, "\r\nin-reply-to:x\r\n\r\n") != NULL);
        if (strstr(sent, bad[i][1]) == NULL)
            printf("# sent: %s\n", sent);
    }
    LH_CHECK_INT(lh_m_get(LH_M_LHTTP_ERRORS) - errors, LH_ARRAY_LEN(bad));
    /* The connection carries on. */
    dispatch("LHTTP/1.0 x\r\nmultipart: 0 1\r\n\r\n\n\n", NULL);
    LH_CHECK_INT(hook_runs, 1);
    LH_CHECK_INT(take_sent(sent, sizeof(sent)), -1);
    fake_free();
}

static void set_hook(lh_msg_t *m)
{
    size_t vl, bl;
    const char *before = lh_msg_header(m, "a", &vl), *body, *value;

    /* Replace the first "A" where it stands; the later "a" is dropped; keys compare
     * ignoring case and the new key is written as given. */
    LH_CHECK_INT(lh_msg_set_header(m, "a", "new"), 0);
    CHECK_RAW(m, "LHTTP/1.0 cmd\r\nk:1\r\na:new\r\nz:2\r\n\r\nbody\nk:x\n");
    LH_CHECK_INT(lh_msg_header_count(m), 3);
    /* Append; an empty value (NULL) is allowed. */
    LH_CHECK_INT(lh_msg_set_header(m, "x-added", "v w"), 0);
    LH_CHECK_INT(lh_msg_set_header(m, "empty", NULL), 0);
    CHECK_RAW(m, "LHTTP/1.0 cmd\r\nk:1\r\na:new\r\nz:2\r\nx-added:v w\r\nempty:\r\n\r\n"
                 "body\nk:x\n");
    value = lh_msg_header(m, "X-ADDED", &vl);
    LH_CHECK_MEM(value, vl, "v w");
    body = lh_msg_body(m, &bl);
    LH_CHECK_MEM(body, bl, "body\nk:x\n");
    LH_CHECK_MEM(lh_msg_command(m, &vl), vl, "cmd");
    /* What the message said before is still readable until it has been handled. */
    LH_CHECK_MEM(before, 2, "A1");
}

LH_TEST(api_set_header)
{
    fake(32, 4096, 1 << 20, 64);
    dispatch("LHTTP/1.0 cmd\nk: 1\nA:A1\nz:2\na:again\n\nbody\nk:x\n", set_hook);
    LH_CHECK_INT(hook_runs, 1);
    fake_free();
}

static void invalid_hook(lh_msg_t *m)
{
    size_t l0, l1;
    const char *raw0 = lh_msg_raw(m, &l0);

    LH_CHECK_INT(lh_msg_set_header(m, NULL, "v"), -EINVAL);
    LH_CHECK_INT(lh_msg_set_header(m, "", "v"), -EINVAL);
    LH_CHECK_INT(lh_msg_set_header(m, "a b", "v"), -EINVAL);
    LH_CHECK_INT(lh_msg_set_header(m, "a:b", "v"), -EINVAL);
    LH_CHECK_INT(lh_msg_set_header(m, "k", "line\r\nbreak"), -EINVAL);
    LH_CHECK_INT(lh_msg_set_header(m, "k", "lf\n"), -EINVAL);
    LH_CHECK_INT(lh_msg_set_header(m, "k", " leading"), -EINVAL);
    LH_CHECK_INT(lh_msg_set_header(m, "k", "trailing\t"), -EINVAL);
    /* A multipart header must fit the body, as a client's must. */
    LH_CHECK_INT(lh_msg_set_header(m, "Multipart", "0 99"), -EINVAL);
    LH_CHECK_INT(lh_msg_part_count(m), 0);
    /* Nothing changed. */
    LH_CHECK(lh_msg_raw(m, &l1) == raw0 && l1 == l0);
    LH_CHECK_INT(lh_msg_set_header(m, "multipart", "0 3"), 0);
    LH_CHECK_INT(lh_msg_part_count(m), 2);
}

LH_TEST(api_set_header_invalid)
{
    fake(32, 4096, 1 << 20, 64);
    dispatch("LHTTP/1.0 c\r\n\r\n\nab\ncd", invalid_hook);
    LH_CHECK_INT(hook_runs, 1);
    fake_free();
}

static void limits_hook(lh_msg_t *m)
{
    char v[100];
    size_t rl;

    /* max_headers 2: replacing is fine, a third header is not. */
    LH_CHECK_INT(lh_msg_set_header(m, "b", "2"), 0);
    LH_CHECK_INT(lh_msg_set_header(m, "c", "3"), -E2BIG);
    /* max_header_line 80: "a:" and 78 bytes is the longest line. */
    memset(v, 'x', 79);
    v[79] = '\0';
    LH_CHECK_INT(lh_msg_set_header(m, "a", v), -E2BIG);
    v[78] = '\0';
    LH_CHECK_INT(lh_msg_set_header(m, "a", v), 0);
    lh_msg_raw(m, &rl);
    LH_CHECK_INT(rl, 102);
    /* max_message_bytes 110: b's value may grow by 8 bytes, not 9. */
    LH_CHECK_INT(lh_msg_set_header(m, "b", "123456789"), 0);
    LH_CHECK_INT(lh_msg_set_header(m, "b", "1234567890"), -E2BIG);
    lh_msg_raw(m, &rl);
    LH_CHECK_INT(rl, 110);
}

LH_TEST(api_set_header_limits)
{
    fake(2, 80, 110, 64);
    dispatch("LHTTP/1.0 c\r\na:1\r\nb:1\r\n\r\n", limits_hook);
    LH_CHECK_INT(hook_runs, 1);
    fake_free();
}

int main(void)
{
    arena_init();
    LH_RUN(single_part);
    LH_RUN(two_parts_zero_copy);
    LH_RUN(separators_are_runs_of_blanks);
    LH_RUN(parts_without_headers_or_body);
    LH_RUN(part_body_is_verbatim);
    LH_RUN(header_values_trimmed_keys_verbatim);
    LH_RUN(zero_is_not_a_leading_zero);
    LH_RUN(empty_list);
    LH_RUN(not_decimal);
    LH_RUN(leading_zero);
    LH_RUN(first_offset_must_be_zero);
    LH_RUN(duplicates_and_order);
    LH_RUN(beyond_the_body);
    LH_RUN(huge_numbers_do_not_overflow);
    LH_RUN(max_parts);
    LH_RUN(many_parts);
    LH_RUN(part_without_header_end);
    LH_RUN(bad_part_header_lines);
    LH_RUN(part_header_cap);
    LH_RUN(part_header_line_limit);
    LH_RUN(reason_buffer_small_or_missing);
    LH_RUN(random_inputs);
    LH_RUN(api_parts);
    LH_RUN(api_refused_multipart_reaches_no_filter);
    LH_RUN(api_set_header);
    LH_RUN(api_set_header_invalid);
    LH_RUN(api_set_header_limits);
    LH_DONE();
}
