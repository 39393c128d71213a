/*
 * Unit tests for shared/lh_common.c: lh_printable, which quotes a client's bytes in an
 * error text (valid UTF-8 and JSON-safe whatever the input, cut before overflowing).
 */
#include "lh_test.h"

#include "lh_common.h"

LH_TEST(test_printable)
{
    char out[64];

    LH_CHECK(strcmp(lh_printable(out, sizeof(out), "a.b-c", 5), "a.b-c") == 0);
    LH_CHECK(strcmp(lh_printable(out, sizeof(out), "", 0), "") == 0);
    LH_CHECK(strcmp(lh_printable(out, sizeof(out), "\xff\xfe", 2), "\\xff\\xfe") == 0);
    LH_CHECK(strcmp(lh_printable(out, sizeof(out), "a\0b", 3), "a\\x00b") == 0);
    LH_CHECK(strcmp(lh_printable(out, sizeof(out), "q\"s\\", 4), "q\\\"s\\\\") == 0);
    LH_CHECK(strcmp(lh_printable(out, sizeof(out), "\r\n\x7f", 3), "\\x0d\\x0a\\x7f") == 0);
    /* UTF-8 is quoted too: the output is plain ASCII. */
    LH_CHECK(strcmp(lh_printable(out, sizeof(out), "\xc3\xa9", 2), "\\xc3\\xa9") == 0);
}

LH_TEST(test_printable_cut)
{
    char out[8], big[300];
    char in[100];

    memset(in, 'x', sizeof(in));
    /* 8 bytes: at most 4 characters of input, then "...", then the NUL. */
    LH_CHECK(strcmp(lh_printable(out, sizeof(out), in, sizeof(in)), "xxxx...") == 0);
    LH_CHECK(strcmp(lh_printable(out, sizeof(out), "xxxx", 4), "xxxx") == 0);
    /* An escape is never cut in half. */
    LH_CHECK(strcmp(lh_printable(out, sizeof(out), "a\xff\xff", 3), "a...") == 0);
    LH_CHECK(strcmp(lh_printable(out, 4, "abcdef", 6), "...") == 0);
    lh_printable(out, 1, "abc", 3);
    LH_CHECK(out[0] == '\0');
    /* Every byte value, long input: never more than cap - 1 characters, all printable. */
    for (int b = 0; b < 256; b++) {
        memset(in, b, sizeof(in));
        lh_printable(big, sizeof(big), in, sizeof(in));
        LH_CHECK(strlen(big) < sizeof(big));
        for (const char *p = big; *p; p++)
            if (*p < 0x20 || *p > 0x7e) {
                LH_CHECK(!"a byte that is not printable ASCII");
                return;
            }
    }
}

int main(void)
{
    LH_RUN(test_printable);
    LH_RUN(test_printable_cut);
    LH_DONE();
}
