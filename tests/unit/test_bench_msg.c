/*
 * Unit tests for lhttp-bench's pure parts: the timestamped messages (built, then read
 * back from their trailer; a damaged trailer is refused) and the latency histogram
 * (bucket error bound, quantiles, merging). The sources are compiled in here.
 */
#include "lh_test.h"

#include "../../clients/bench/hist.c"
#include "../../clients/bench/msg.c"

LH_TEST(test_msg_roundtrip)
{
    uint8_t m[256];
    uint32_t seq = 0;
    uint64_t t = 0;
    size_t n;

    n = lhb_msg_build(m, sizeof(m), LHB_TARGET_LHTTP, "b1.7", 4, 64, LHB_KIND_MEASURED,
                      0xdeadbeefu, 0x0123456789abcdefull);
    LH_CHECK_INT((long)n, 64);
    LH_CHECK(memcmp(m, "LHTTP/1.0 m\r\npublish:b1.7\r\n\r\n", 29) == 0);
    LH_CHECK_INT(lhb_msg_trailer(m, n, &seq, &t), LHB_KIND_MEASURED);
    LH_CHECK(seq == 0xdeadbeefu);
    LH_CHECK(t == 0x0123456789abcdefull);

    n = lhb_msg_build(m, sizeof(m), LHB_TARGET_NCHAN, "c", 1, LHB_TRAILER, LHB_KIND_PROBE, 0,
                      0);
    LH_CHECK_INT((long)n, LHB_TRAILER);
    LH_CHECK_INT(lhb_msg_trailer(m, n, &seq, &t), LHB_KIND_PROBE);
    LH_CHECK(seq == 0 && t == 0);

    /* Too small for the head and the trailer, or for the buffer. */
    LH_CHECK_INT((long)lhb_msg_build(m, sizeof(m), LHB_TARGET_LHTTP, "b1.7", 4, 40,
                                     LHB_KIND_MEASURED, 1, 1), 0);
    LH_CHECK_INT((long)lhb_msg_build(m, 32, LHB_TARGET_NCHAN, "c", 1, 64, LHB_KIND_MEASURED,
                                     1, 1), 0);
}

LH_TEST(test_msg_trailer_damaged)
{
    uint8_t m[64];
    uint32_t seq = 0;
    uint64_t t = 0;

    LH_CHECK_INT(lhb_msg_trailer(m, LHB_TRAILER - 1, &seq, &t), 0);
    /* Every byte value in every digit position: taken only when it is a lower-case hex
     * digit, and then read as its value. */
    for (int pos = 1; pos < LHB_TRAILER; pos++) {
        for (int b = 0; b < 256; b++) {
            int hex = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f');
            int val = b <= '9' ? b - '0' : b - 'a' + 10, kind;

            lhb_msg_build(m, sizeof(m), LHB_TARGET_NCHAN, "c", 1, 64, LHB_KIND_MEASURED, 0,
                          0);
            m[64 - LHB_TRAILER + pos] = (uint8_t)b;
            kind = lhb_msg_trailer(m, 64, &seq, &t);
            if (kind != (hex ? LHB_KIND_MEASURED : 0) ||
                (hex && pos <= 8 && (seq != (uint32_t)val << (4 * (8 - pos)) || t != 0)) ||
                (hex && pos > 8 && (seq != 0 || t != (uint64_t)val << (4 * (24 - pos))))) {
                printf("# trailer byte %d = 0x%02x: kind %d seq %x time %llx\n", pos, b, kind,
                       seq, (unsigned long long)t);
                lh_t_failed_checks++;
                return;
            }
        }
    }
    /* An unknown kind. */
    lhb_msg_build(m, sizeof(m), LHB_TARGET_NCHAN, "c", 1, 64, LHB_KIND_MEASURED, 5, 99);
    m[64 - LHB_TRAILER] = 'X';
    LH_CHECK_INT(lhb_msg_trailer(m, 64, &seq, &t), 0);
    /* Every digit value decodes in every position. */
    for (int d = 0; d < 16; d++) {
        uint64_t v = 0x1111111111111111ull * (uint64_t)d;

        lhb_msg_build(m, sizeof(m), LHB_TARGET_NCHAN, "c", 1, 64, LHB_KIND_MEASURED,
                      (uint32_t)v, v);
        LH_CHECK_INT(lhb_msg_trailer(m, 64, &seq, &t), LHB_KIND_MEASURED);
        LH_CHECK(seq == (uint32_t)v && t == v);
    }
}

LH_TEST(test_hist)
{
    static lhb_hist_t h, h2;
    static const uint64_t vals[] = {0, 1, 63, 64, 65, 1000, 123456, 999999937, 1ull << 40,
                                    UINT64_MAX / 3};

    /* Each value's bucket top is at least the value and within 1.6% (2^-6) of it. */
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        uint64_t top = bucket_top(bucket_of(vals[i]));

        LH_CHECK(top >= vals[i]);
        LH_CHECK((double)(top - vals[i]) <= (double)vals[i] / 64.0);
    }
    for (uint64_t v = 1; v <= 1000; v++)
        lhb_hist_add(&h, v * 1000);
    LH_CHECK(h.count == 1000 && h.max == 1000000);
    LH_CHECK(lhb_hist_quantile(&h, 0.5) >= 500000 && lhb_hist_quantile(&h, 0.5) <= 508000);
    LH_CHECK(lhb_hist_quantile(&h, 0.99) >= 990000 && lhb_hist_quantile(&h, 0.99) <= 1000000);
    LH_CHECK(lhb_hist_quantile(&h, 1.0) == 1000000);
    lhb_hist_add(&h2, 5000000);
    lhb_hist_merge(&h2, &h);
    LH_CHECK(h2.count == 1001 && h2.max == 5000000);
    LH_CHECK(lhb_hist_quantile(&h2, 1.0) == 5000000);
    memset(&h2, 0, sizeof(h2));
    LH_CHECK(lhb_hist_quantile(&h2, 0.99) == 0);
}

int main(void)
{
    LH_RUN(test_msg_roundtrip);
    LH_RUN(test_msg_trailer_damaged);
    LH_RUN(test_hist);
    LH_DONE();
}
