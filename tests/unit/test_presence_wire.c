/* Unit tests for presence answers read from NATS (shared/lh_presence_wire.c): a valid
 * answer, and every way an answer from anyone on NATS could lie about its sizes. */
#include "lh_test.h"

#include <stdio.h>

#include "lh_presence_wire.h"

/* head + users (8 bytes each, 'u') + entries into out; returns the length. */
static size_t answer(char *out, size_t cap, const char *head, size_t nusers, const char *ents)
{
    size_t n = (size_t)snprintf(out, cap, "%s", head);

    for (size_t i = 0; i < nusers * 8 && n < cap; i++)
        out[n++] = 'u';
    for (const char *e = ents; *e && n < cap; e++)
        out[n++] = *e;
    return n;
}

LH_TEST(a_valid_answer_is_read_whole)
{
    char b[512];
    const char *ents = "{\"client\":\"a\",\"info\":{\"x\":\"}\\\"\"}},{\"client\":\"b\"}";
    char head[128];
    lh_pres_answer_t a;
    size_t n;

    snprintf(head, sizeof(head), "00000000000000ff 123 2 5 2 2 %zu\n", strlen(ents));
    n = answer(b, sizeof(b), head, 2, ents);
    LH_CHECK_INT(lh_pres_answer_parse(b, n, &a), 0);
    LH_CHECK(a.node == 0xff);
    LH_CHECK_INT(a.pid, 123);
    LH_CHECK_INT(a.workers, 2);
    LH_CHECK_INT(a.count, 5);
    LH_CHECK_INT(a.nusers, 2);
    LH_CHECK_INT(a.nentries, 2);
    LH_CHECK_INT(a.ebytes, strlen(ents));
    LH_CHECK(a.users == b + strlen(head));
    LH_CHECK(a.entries == a.users + 16);
    /* Entries: a brace inside a string and an escaped quote do not end the first. */
    LH_CHECK_INT(lh_pres_entry_len(a.entries, a.ebytes), strlen(ents) - strlen(",{\"client\":\"b\"}"));
    LH_CHECK_INT(lh_pres_entry_len("{\"a\":1}", 7), 7);
    /* Stats only: no users, no entries. */
    n = answer(b, sizeof(b), "0123456789abcdef 1 1 0 0 0 0\n", 0, "");
    LH_CHECK_INT(lh_pres_answer_parse(b, n, &a), 0);
    LH_CHECK_INT(a.count, 0);
}

LH_TEST(sizes_that_do_not_add_up_are_refused)
{
    char b[512];
    lh_pres_answer_t a;
    size_t n;
    static const char *const bad[] = {
        "00000000000000ff 1 1 5 2 0 0\n",                    /* users claimed, not there */
        "00000000000000ff 1 1 5 0 1 3\n",                    /* 3 entry bytes claimed */
        "00000000000000ff 1 1 5 2305843009213693953 0 0\n",  /* users * 8 wraps to 8 */
        "00000000000000ff 1 1 5 0 0 18446744073709551615\n", /* entry bytes wrap */
        "00000000000000ff 1 1 5 0 0 99999999999999999999\n", /* overflows */
        "00000000000000ff 1 1 5 -1 0 0\n",                   /* a sign */
        "00000000000000ff 1 1 5 1 0\n",                      /* a field short */
        "00000000000000ff 1 1 5 1 0 0 7\n",                  /* one too many */
        "00000000000000fg 1 1 5 0 0 0\n",                    /* not hex */
        "ff 1 1 5 0 0 0\n",                                  /* a short node id */
        "00000000000000ff 1 1 5 0 0 0",                      /* no newline */
        "00000000000000ff 1 99999 5 0 0 0\n",                /* workers beyond bounds */
        "00000000000000ff 1 1 1 3 0 0\n",                    /* more users than count */
        "00000000000000ff 1 1  5 0 0 0\n",                   /* two spaces */
        "",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = answer(b, sizeof(b), bad[i], 0, "");
        if (lh_pres_answer_parse(b, n, &a) != -1)
            printf("# accepted: %s\n", bad[i]);
        LH_CHECK_INT(lh_pres_answer_parse(b, n, &a), -1);
    }
    /* The right total, but with bytes past the message: the length must match exactly. */
    n = answer(b, sizeof(b), "00000000000000ff 1 1 5 1 0 0\n", 1, "");
    LH_CHECK_INT(lh_pres_answer_parse(b, n, &a), 0);
    LH_CHECK_INT(lh_pres_answer_parse(b, n - 1, &a), -1);
    LH_CHECK_INT(lh_pres_answer_parse(b, n + 1, &a), -1);
    /* A head longer than LH_PRES_HEAD_MAX is not looked for. */
    memset(b, '0', 300);
    b[300] = '\n';
    LH_CHECK_INT(lh_pres_answer_parse(b, 301, &a), -1);
}

LH_TEST(an_entry_that_does_not_end_is_not_one)
{
    LH_CHECK_INT(lh_pres_entry_len("", 0), 0);
    LH_CHECK_INT(lh_pres_entry_len("x{}", 3), 0);
    LH_CHECK_INT(lh_pres_entry_len("{\"a\":{}", 7), 0);
    LH_CHECK_INT(lh_pres_entry_len("{\"a\\", 4), 0); /* an escape at the very end */
    LH_CHECK_INT(lh_pres_entry_len("{\"}\"", 4), 0);
    LH_CHECK_INT(lh_pres_entry_len("{}garbage", 9), 2);
}

int main(void)
{
    LH_RUN(a_valid_answer_is_read_whole);
    LH_RUN(sizes_that_do_not_add_up_are_refused);
    LH_RUN(an_entry_that_does_not_end_is_not_one);
    LH_DONE();
}
