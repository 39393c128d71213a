/* Unit tests for shared/lh_utf8.c: Markus Kuhn-style cases, splits, a reference decoder. */
#include "lh_test.h"
#include "lh_utf8.h"

#include <stdint.h>

#define V(s) lh_utf8_valid((const uint8_t *)(s), sizeof(s) - 1)

/*
 * Reference validator: decodes each code point the slow, obvious way and checks the
 * RFC 3629 rules on the value. Returns 1 when valid and complete.
 */
static int ref_valid(const uint8_t *p, size_t len)
{
    size_t i = 0;

    while (i < len) {
        uint32_t cp, min;
        size_t n, k;
        uint8_t b = p[i];

        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            n = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            n = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            n = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len - i < n)
            return 0;
        for (k = 1; k < n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n;
    }
    return 1;
}

/* Validation fed in two pieces split at every position equals whole validation. */
static int split_agrees(const uint8_t *p, size_t len)
{
    uint32_t whole = lh_utf8_validate(LH_UTF8_ACCEPT, p, len);
    size_t cut;

    for (cut = 0; cut <= len; cut++) {
        uint32_t s = lh_utf8_validate(LH_UTF8_ACCEPT, p, cut);

        s = lh_utf8_validate(s, p + cut, len - cut);
        if ((s == LH_UTF8_ACCEPT) != (whole == LH_UTF8_ACCEPT) ||
            (s == LH_UTF8_REJECT) != (whole == LH_UTF8_REJECT))
            return 0;
    }
    return 1;
}

/* Byte-at-a-time validation equals whole validation. */
static int bytewise_agrees(const uint8_t *p, size_t len)
{
    uint32_t whole = lh_utf8_validate(LH_UTF8_ACCEPT, p, len), s = LH_UTF8_ACCEPT;
    size_t i;

    for (i = 0; i < len; i++)
        s = lh_utf8_validate(s, p + i, 1);
    return (s == LH_UTF8_ACCEPT) == (whole == LH_UTF8_ACCEPT) &&
           (s == LH_UTF8_REJECT) == (whole == LH_UTF8_REJECT);
}

LH_TEST(test_empty_and_ascii)
{
    LH_CHECK(lh_utf8_valid(NULL, 0));
    LH_CHECK(V(""));
    LH_CHECK(V("a"));
    LH_CHECK(V("hello, world: a longer ASCII run to exercise the 8-byte path"));
    LH_CHECK(V("\x00\x7f"));
    LH_CHECK_INT(lh_utf8_validate(LH_UTF8_ACCEPT, (const uint8_t *)"abc", 3), LH_UTF8_ACCEPT);
}

LH_TEST(test_valid_multibyte)
{
    LH_CHECK(V("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")); /* Kuhn 1: greek kosme */
    LH_CHECK(V("\xc2\x80"));                                     /* U+0080 */
    LH_CHECK(V("\xdf\xbf"));                                     /* U+07FF */
    LH_CHECK(V("\xe0\xa0\x80"));                                 /* U+0800 */
    LH_CHECK(V("\xed\x9f\xbf"));                                 /* U+D7FF */
    LH_CHECK(V("\xee\x80\x80"));                                 /* U+E000 */
    LH_CHECK(V("\xef\xbf\xbd"));                                 /* U+FFFD */
    LH_CHECK(V("\xef\xbf\xbf"));                                 /* U+FFFF (noncharacter) */
    LH_CHECK(V("\xf0\x90\x80\x80"));                             /* U+10000 */
    LH_CHECK(V("\xf4\x8f\xbf\xbf"));                             /* U+10FFFF */
    LH_CHECK(V("\xf3\xbf\xbf\xbf"));
    LH_CHECK(V("ascii then \xe2\x82\xac euro then more ascii text \xf0\x9f\x98\x80"));
}

LH_TEST(test_overlongs)
{
    LH_CHECK(!V("\xc0\x80"));             /* NUL, 2 bytes */
    LH_CHECK(!V("\xc0\xaf"));             /* '/' */
    LH_CHECK(!V("\xc1\xbf"));             /* U+007F, 2 bytes */
    LH_CHECK(!V("\xe0\x80\x80"));         /* NUL, 3 bytes */
    LH_CHECK(!V("\xe0\x80\xaf"));
    LH_CHECK(!V("\xe0\x9f\xbf"));         /* U+07FF, 3 bytes */
    LH_CHECK(!V("\xf0\x80\x80\x80"));     /* NUL, 4 bytes */
    LH_CHECK(!V("\xf0\x80\x80\xaf"));
    LH_CHECK(!V("\xf0\x8f\xbf\xbf"));     /* U+FFFF, 4 bytes */
    LH_CHECK(!V("\xf8\x88\x80\x80\x80")); /* 5-byte forms */
    LH_CHECK(!V("\xfc\x84\x80\x80\x80\x80"));
}

LH_TEST(test_surrogates)
{
    LH_CHECK(!V("\xed\xa0\x80"));                 /* U+D800 */
    LH_CHECK(!V("\xed\xad\xbf"));                 /* U+DB7F */
    LH_CHECK(!V("\xed\xae\x80"));                 /* U+DB80 */
    LH_CHECK(!V("\xed\xaf\xbf"));                 /* U+DBFF */
    LH_CHECK(!V("\xed\xb0\x80"));                 /* U+DC00 */
    LH_CHECK(!V("\xed\xbe\x80"));                 /* U+DF80 */
    LH_CHECK(!V("\xed\xbf\xbf"));                 /* U+DFFF */
    LH_CHECK(!V("\xed\xa0\x80\xed\xb0\x80"));     /* paired */
    LH_CHECK(!V("\xed\xaf\xbf\xed\xbf\xbf"));
}

LH_TEST(test_out_of_range)
{
    LH_CHECK(!V("\xf4\x90\x80\x80")); /* U+110000 */
    LH_CHECK(!V("\xf4\xbf\xbf\xbf"));
    LH_CHECK(!V("\xf5\x80\x80\x80"));
    LH_CHECK(!V("\xf7\xbf\xbf\xbf"));
    LH_CHECK(!V("\xfe"));
    LH_CHECK(!V("\xff"));
    LH_CHECK(!V("\xfe\xfe\xff\xff"));
}

LH_TEST(test_bad_continuations)
{
    LH_CHECK(!V("\x80"));
    LH_CHECK(!V("\xbf"));
    LH_CHECK(!V("\x80\xbf\x80\xbf"));
    LH_CHECK(!V("\xc2\x41"));          /* lead then ASCII */
    LH_CHECK(!V("\xe1\x80\x41"));
    LH_CHECK(!V("\xf1\x80\x80\x41"));
    LH_CHECK(!V("\xc2\xc2\x80"));      /* lead then lead */
    LH_CHECK(!V("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"));
    LH_CHECK(!V("abcdefgh\x80"));      /* right after an 8-byte ASCII word */
    LH_CHECK(!V("abcdefg\xc2"));
}

LH_TEST(test_truncated)
{
    static const char *const cases[] = {"\xc2", "\xe0", "\xe0\xa0", "\xe1\x80", "\xf0\x90",
                                        "\xf0\x90\x80", "\xf4\x8f\xbf", "abc\xf1\x80\x80"};
    size_t k;

    for (k = 0; k < LH_ARRAY_LEN(cases); k++) {
        const uint8_t *p = (const uint8_t *)cases[k];
        size_t n = strlen(cases[k]);
        uint32_t s = lh_utf8_validate(LH_UTF8_ACCEPT, p, n);

        /* Incomplete: neither accepted nor rejected, and completing it makes it valid. */
        LH_CHECK(s != LH_UTF8_ACCEPT && s != LH_UTF8_REJECT);
        LH_CHECK(!lh_utf8_valid(p, n));
    }
    /* Completing a truncated sequence in the next call. */
    LH_CHECK_INT(lh_utf8_validate(lh_utf8_validate(0, (const uint8_t *)"\xf0\x90", 2),
                                  (const uint8_t *)"\x80\x80", 2),
                 LH_UTF8_ACCEPT);
    /* Truncated then a new lead byte, across calls. */
    LH_CHECK_INT(lh_utf8_validate(lh_utf8_validate(0, (const uint8_t *)"\xe2\x82", 2),
                                  (const uint8_t *)"\xe2", 1),
                 LH_UTF8_REJECT);
}

LH_TEST(test_reject_is_sticky)
{
    uint32_t s = lh_utf8_validate(LH_UTF8_ACCEPT, (const uint8_t *)"\xff", 1);

    LH_CHECK_INT(s, LH_UTF8_REJECT);
    LH_CHECK_INT(lh_utf8_validate(s, (const uint8_t *)"abc", 3), LH_UTF8_REJECT);
    LH_CHECK_INT(lh_utf8_validate(s, NULL, 0), LH_UTF8_REJECT);
}

/* The narrowed first-continuation ranges must survive a split right after the lead byte. */
LH_TEST(test_split_after_lead)
{
    static const char *const cases[] = {"\xe0\x9f\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf",
                                        "\xed\xa0\x80", "\xf0\x8f\xbf\xbf", "\xf0\x90\x80\x80",
                                        "\xf4\x8f\xbf\xbf", "\xf4\x90\x80\x80"};
    size_t k;

    for (k = 0; k < LH_ARRAY_LEN(cases); k++) {
        const uint8_t *p = (const uint8_t *)cases[k];
        size_t n = strlen(cases[k]);
        uint32_t s = lh_utf8_validate(LH_UTF8_ACCEPT, p, 1);

        s = lh_utf8_validate(s, p + 1, n - 1);
        LH_CHECK_INT(s == LH_UTF8_ACCEPT, ref_valid(p, n));
    }
}

LH_TEST(test_split_every_position)
{
    static const char *const cases[] = {
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
        "0123456789abcdef\xf0\x9f\x98\x80-0123456789abcdef\xe2\x82\xac",
        "0123456789\xed\xa0\x80 surrogate",
        "trailing lead \xf4\x8f\xbf",
        "\xf4\x90\x80\x80 out of range",
        "\xc0\x80 overlong and \xe0\x80\xaf and more",
        "ok ascii long enough for two words and a tail",
    };
    size_t k;

    for (k = 0; k < LH_ARRAY_LEN(cases); k++) {
        const uint8_t *p = (const uint8_t *)cases[k];
        size_t n = strlen(cases[k]);

        LH_CHECK(split_agrees(p, n));
        LH_CHECK(bytewise_agrees(p, n));
        LH_CHECK_INT(lh_utf8_valid(p, n), ref_valid(p, n));
    }
}

/* Every 1-, 2- and 3-byte sequence, and 4-byte sequences over interesting bytes. */
LH_TEST(test_exhaustive_vs_reference)
{
    static const uint8_t probe[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
                                    0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec,
                                    0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff};
    uint8_t b[4];
    unsigned x, y, z, w, bad = 0, badsplit = 0;

    for (x = 0; x < 256; x++) {
        b[0] = (uint8_t)x;
        if (lh_utf8_valid(b, 1) != ref_valid(b, 1))
            bad++;
        for (y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            if (lh_utf8_valid(b, 2) != ref_valid(b, 2))
                bad++;
            for (z = 0; z < 256; z++) {
                b[2] = (uint8_t)z;
                if (lh_utf8_valid(b, 3) != ref_valid(b, 3))
                    bad++;
            }
        }
    }
    for (x = 0; x < 256; x++)
        for (y = 0; y < LH_ARRAY_LEN(probe); y++)
            for (z = 0; z < LH_ARRAY_LEN(probe); z++)
                for (w = 0; w < LH_ARRAY_LEN(probe); w++) {
                    b[0] = (uint8_t)x, b[1] = probe[y], b[2] = probe[z], b[3] = probe[w];
                    if (lh_utf8_valid(b, 4) != ref_valid(b, 4))
                        bad++;
                    if (!split_agrees(b, 4))
                        badsplit++;
                }
    LH_CHECK_INT(bad, 0);
    LH_CHECK_INT(badsplit, 0);
}

/* Pseudo-random mostly-valid text: whole, split and reference agree. */
LH_TEST(test_random_vs_reference)
{
    uint32_t seed = 12345;
    uint8_t buf[64];
    unsigned iter, bad = 0;

    for (iter = 0; iter < 20000; iter++) {
        size_t n = 0, i, len;

        seed = seed * 1103515245u + 12345u;
        len = (seed >> 16) % sizeof(buf);
        while (n < len) {
            static const char *const pieces[] = {"a", "bcdefghi", "\xc3\xa9", "\xe2\x82\xac",
                                                 "\xf0\x9f\x98\x80", "\xed\x9f\xbf", "\x80",
                                                 "\xf4\x90", "\xe0\x9f"};
            const char *s;

            seed = seed * 1103515245u + 12345u;
            s = pieces[(seed >> 16) % LH_ARRAY_LEN(pieces)];
            for (i = 0; s[i] && n < len; i++)
                buf[n++] = (uint8_t)s[i];
        }
        if (lh_utf8_valid(buf, n) != ref_valid(buf, n) || !split_agrees(buf, n))
            bad++;
    }
    LH_CHECK_INT(bad, 0);
}

int main(void)
{
    LH_RUN(test_empty_and_ascii);
    LH_RUN(test_valid_multibyte);
    LH_RUN(test_overlongs);
    LH_RUN(test_surrogates);
    LH_RUN(test_out_of_range);
    LH_RUN(test_bad_continuations);
    LH_RUN(test_truncated);
    LH_RUN(test_reject_is_sticky);
    LH_RUN(test_split_after_lead);
    LH_RUN(test_split_every_position);
    LH_RUN(test_exhaustive_vs_reference);
    LH_RUN(test_random_vs_reference);
    LH_DONE();
}
