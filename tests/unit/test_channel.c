/* Unit tests for channel names and channel lists (shared/lh_channel.c). */
#include "lh_test.h"

#include "lh_channel.h"
#include "lh_lhttp.h"

static int valid(const char *s)
{
    return lh_channel_valid(s, strlen(s), 128);
}

/* Splits list into names joined by '|', e.g. "a|b|c", into out. Returns the count. */
static int split(const char *list, char *out, size_t cap)
{
    const char *pos = list, *end = list + strlen(list), *ch;
    size_t len, used = 0;
    int n = 0;

    out[0] = '\0';
    while (lh_channel_next(&pos, end, &ch, &len)) {
        if (used + len + 2 > cap)
            break;
        if (n > 0)
            out[used++] = '|';
        memcpy(out + used, ch, len);
        used += len;
        out[used] = '\0';
        n++;
    }
    return n;
}

LH_TEST(valid_names)
{
    LH_CHECK(valid("a"));
    LH_CHECK(valid("chat"));
    LH_CHECK(valid("room.42"));
    LH_CHECK(valid("a.b.c"));
    LH_CHECK(valid("A-Z_a-z.0-9"));
    LH_CHECK(valid("user@example=+~:;x"));
    LH_CHECK(valid("::;;"));
}

LH_TEST(invalid_bytes)
{
    LH_CHECK(!valid("a*"));
    LH_CHECK(!valid(">"));
    LH_CHECK(!valid("a.>"));
    LH_CHECK(!valid("a b"));
    LH_CHECK(!valid("a\tb"));
    LH_CHECK(!valid("a/b"));
    LH_CHECK(!valid("a,b"));
    LH_CHECK(!valid("a$b"));
    LH_CHECK(!valid("caf\xc3\xa9"));
    LH_CHECK(!valid("a\r"));
    LH_CHECK(!lh_channel_valid("a\0b", 3, 128));
}

LH_TEST(empty_tokens)
{
    LH_CHECK(!valid(""));
    LH_CHECK(!valid("."));
    LH_CHECK(!valid(".a"));
    LH_CHECK(!valid("a."));
    LH_CHECK(!valid("a..b"));
    LH_CHECK(!valid("a.b..c"));
    LH_CHECK(!valid(".."));
}

LH_TEST(length_limit)
{
    char s[LH_CHANNEL_MAX_LEN + 2];

    memset(s, 'x', sizeof(s));
    LH_CHECK(lh_channel_valid(s, 10, 10));
    LH_CHECK(!lh_channel_valid(s, 11, 10));
    LH_CHECK(lh_channel_valid(s, 1, 1));
    LH_CHECK(!lh_channel_valid(s, 1, 0));
    LH_CHECK(lh_channel_valid(s, LH_CHANNEL_MAX_LEN, LH_CHANNEL_MAX_LEN));
    LH_CHECK(!lh_channel_valid(s, LH_CHANNEL_MAX_LEN + 1, LH_CHANNEL_MAX_LEN));
    /* max_len above the hard bound is clamped to it. */
    LH_CHECK(lh_channel_valid(s, LH_CHANNEL_MAX_LEN, 100000));
    LH_CHECK(!lh_channel_valid(s, LH_CHANNEL_MAX_LEN + 1, 100000));
}

LH_TEST(list_single)
{
    char out[256];

    LH_CHECK_INT(split("chat", out, sizeof(out)), 1);
    LH_CHECK_MEM(out, strlen(out), "chat");
}

LH_TEST(list_runs_of_spaces)
{
    char out[256];

    LH_CHECK_INT(split("a  b   c", out, sizeof(out)), 3);
    LH_CHECK_MEM(out, strlen(out), "a|b|c");
}

LH_TEST(list_tabs)
{
    char out[256];

    LH_CHECK_INT(split("a\tb \t c\t\td", out, sizeof(out)), 4);
    LH_CHECK_MEM(out, strlen(out), "a|b|c|d");
}

LH_TEST(list_leading_trailing_spaces)
{
    char out[256];

    LH_CHECK_INT(split("   a b  ", out, sizeof(out)), 2);
    LH_CHECK_MEM(out, strlen(out), "a|b");
    LH_CHECK_INT(split("\t a\t", out, sizeof(out)), 1);
    LH_CHECK_MEM(out, strlen(out), "a");
}

LH_TEST(list_empty)
{
    char out[256];
    const char *s = "", *pos = s, *ch = NULL;
    size_t len = 7;

    LH_CHECK_INT(split("", out, sizeof(out)), 0);
    LH_CHECK_INT(split("    ", out, sizeof(out)), 0);
    LH_CHECK_INT(split(" \t \t", out, sizeof(out)), 0);
    LH_CHECK_INT(lh_channel_next(&pos, s, &ch, &len), 0);
    LH_CHECK(ch == NULL);
    LH_CHECK_INT(len, 7);
}

LH_TEST(list_does_not_validate)
{
    char out[256];

    LH_CHECK_INT(split("a* b..c", out, sizeof(out)), 2);
    LH_CHECK_MEM(out, strlen(out), "a*|b..c");
}

LH_TEST(list_end_bound_respected)
{
    const char *s = "ab cd", *pos = s, *ch;
    size_t len;

    /* Only "ab c" is given: the iterator must stop at end. */
    LH_CHECK_INT(lh_channel_next(&pos, s + 4, &ch, &len), 1);
    LH_CHECK_MEM(ch, len, "ab");
    LH_CHECK_INT(lh_channel_next(&pos, s + 4, &ch, &len), 1);
    LH_CHECK_MEM(ch, len, "c");
    LH_CHECK_INT(lh_channel_next(&pos, s + 4, &ch, &len), 0);
    LH_CHECK_INT(lh_channel_next(&pos, s + 4, &ch, &len), 0);
}

LH_TEST(defect_double_space_in_channel_list)
{
    lh_lhttp_limits_t lim = { 8, 1024 };
    lh_lhttp_msg_t m;
    const char *msg = "LHTTP/1.0 chat\r\nsubscribe: a  b\t\tc.d  \r\n\r\n";
    const char *v, *pos, *ch;
    size_t vlen, len;
    int n = 0;

    LH_CHECK_INT(lh_lhttp_parse(msg, strlen(msg), &lim, &m, NULL), 0);
    v = lh_lhttp_header(&m, "subscribe", &vlen);
    LH_CHECK(v != NULL);
    if (v == NULL)
        return;
    pos = v;
    while (lh_channel_next(&pos, v + vlen, &ch, &len)) {
        LH_CHECK(len > 0);
        LH_CHECK(lh_channel_valid(ch, len, 128));
        n++;
    }
    LH_CHECK_INT(n, 3);
}

int main(void)
{
    LH_RUN(valid_names);
    LH_RUN(invalid_bytes);
    LH_RUN(empty_tokens);
    LH_RUN(length_limit);
    LH_RUN(list_single);
    LH_RUN(list_runs_of_spaces);
    LH_RUN(list_tabs);
    LH_RUN(list_leading_trailing_spaces);
    LH_RUN(list_empty);
    LH_RUN(list_does_not_validate);
    LH_RUN(list_end_bound_respected);
    LH_RUN(defect_double_space_in_channel_list);
    LH_DONE();
}
