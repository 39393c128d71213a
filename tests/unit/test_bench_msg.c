/*
 * Unit tests for lhttp-bench's pure parts: the timestamped messages (built, then read
 * back from their trailer; a damaged trailer is refused), the servers' metadata of a
 * channel with history (exactly lhttpd's three headers, exactly nchan's id line), LHTTP
 * header lookup, and the latency histogram (bucket error bound, quantiles, merging). The sources are compiled in here.
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

/* meta_of: lhb_msg_meta on a C string. */
static int meta_of(int target, const char *m, lhb_meta_t *mt)
{
    return lhb_msg_meta(target, (const uint8_t *)m, strlen(m), mt);
}

LH_TEST(test_msg_meta_lhttp)
{
    static const char ok[] = "LHTTP/1.0 m\r\noffset:1207\r\nprev-offset:1185\r\n"
                             "epoch:501401bf2e391477\r\nchannel:b.0\r\npublish:b.0\r\n\r\nbody";
    static const char *const bad[] = {
        /* Not right after the command line, or not in that order. */
        "LHTTP/1.0 m\r\npublish:b.0\r\noffset:2\r\nprev-offset:1\r\nepoch:501401bf2e391477\r\nchannel:b.0\r\n\r\n",
        "LHTTP/1.0 m\r\nprev-offset:1\r\noffset:2\r\nepoch:501401bf2e391477\r\nchannel:b.0\r\n\r\n",
        "LHTTP/1.0 m\r\noffset:2\r\nepoch:501401bf2e391477\r\nprev-offset:1\r\n\r\n",
        /* One missing. */
        "LHTTP/1.0 m\r\noffset:2\r\nprev-offset:1\r\n\r\nbody",
        "LHTTP/1.0 m\r\npublish:b.0\r\n\r\nbody",
        /* Values the server does not write. */
        "LHTTP/1.0 m\r\noffset: 2\r\nprev-offset:1\r\nepoch:501401bf2e391477\r\nchannel:b.0\r\n\r\n",
        "LHTTP/1.0 m\r\noffset:2x\r\nprev-offset:1\r\nepoch:501401bf2e391477\r\nchannel:b.0\r\n\r\n",
        "LHTTP/1.0 m\r\noffset:\r\nprev-offset:1\r\nepoch:501401bf2e391477\r\nchannel:b.0\r\n\r\n",
        "LHTTP/1.0 m\r\noffset:123456789012345678901\r\nprev-offset:1\r\nepoch:501401bf2e391477\r\nchannel:b.0\r\n\r\n",
        "LHTTP/1.0 m\r\noffset:2\r\nprev-offset:1\r\nepoch:501401BF2E391477\r\nchannel:b.0\r\n\r\n",
        "LHTTP/1.0 m\r\noffset:2\r\nprev-offset:1\r\nepoch:501401bf2e39147\r\nchannel:b.0\r\n\r\n",
        "LHTTP/1.0 m\r\noffset:2\r\nprev-offset:1\r\nepoch:501401bf2e3914770\r\nchannel:b.0\r\n\r\n",
        /* An offset that is not after its previous one. */
        "LHTTP/1.0 m\r\noffset:2\r\nprev-offset:2\r\nepoch:501401bf2e391477\r\nchannel:b.0\r\n\r\n",
        "LHTTP/1.0 m\r\noffset:2\r\nprev-offset:3\r\nepoch:501401bf2e391477\r\nchannel:b.0\r\n\r\n",
        /* No channel, an empty one, or not last. */
        "LHTTP/1.0 m\r\noffset:2\r\nprev-offset:1\r\nepoch:501401bf2e391477\r\n\r\n",
        "LHTTP/1.0 m\r\noffset:2\r\nprev-offset:1\r\nepoch:501401bf2e391477\r\nchannel:\r\n\r\n",
        "LHTTP/1.0 m\r\nchannel:b.0\r\noffset:2\r\nprev-offset:1\r\nepoch:501401bf2e391477\r\n\r\n",
        "LHTTP/1.0 m",
    };
    lhb_meta_t mt;

    LH_CHECK_INT(meta_of(LHB_TARGET_LHTTP, ok, &mt), 0);
    LH_CHECK_INT((long)mt.at, 13);
    LH_CHECK_INT((long)mt.len, (long)strlen("offset:1207\r\nprev-offset:1185\r\n"
                                            "epoch:501401bf2e391477\r\nchannel:b.0\r\n"));
    LH_CHECK(mt.offset == 1207 && mt.prev == 1185);
    LH_CHECK(memcmp(mt.epoch, "501401bf2e391477", LHB_EPOCH_LEN) == 0);
    LH_CHECK(mt.chlen == 3 && memcmp(mt.channel, "b.0", 3) == 0);
    /* The first message of a channel. */
    LH_CHECK_INT(meta_of(LHB_TARGET_LHTTP,
                         "LHTTP/1.0 m\r\noffset:1\r\nprev-offset:0\r\nepoch:0000000000000000\r\n"
                         "channel:c\r\n\r\n",
                         &mt), 0);
    LH_CHECK(mt.offset == 1 && mt.prev == 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (meta_of(LHB_TARGET_LHTTP, bad[i], &mt) != -1) {
            printf("# accepted: %s\n", bad[i]);
            lh_t_failed_checks++;
        }
    }
    /* Removing the metadata leaves the message that was sent. */
    {
        uint8_t sent[64], got[200];
        size_t n = lhb_msg_build(sent, sizeof(sent), LHB_TARGET_LHTTP, "b.0", 3, 64,
                                 LHB_KIND_MEASURED, 3, 9);
        static const char hdr[] = "offset:7\r\nprev-offset:5\r\nepoch:0123456789abcdef\r\n"
                                  "channel:b.0\r\n";

        memcpy(got, sent, 13);
        memcpy(got + 13, hdr, sizeof(hdr) - 1);
        memcpy(got + 13 + sizeof(hdr) - 1, sent + 13, n - 13);
        LH_CHECK_INT(lhb_msg_meta(LHB_TARGET_LHTTP, got, n + sizeof(hdr) - 1, &mt), 0);
        LH_CHECK(mt.at == 13 && mt.len == sizeof(hdr) - 1);
        LH_CHECK(memcmp(got + mt.at + mt.len, sent + 13, n - 13) == 0);
    }
}

LH_TEST(test_msg_meta_nchan)
{
    static const char *const bad[] = {
        "body", "id: \n\nbody", "id: 1764783032\n\nbody", "id: :3\n\nbody",
        "id: 1764783032:\n\nbody", "id: 17647x3032:0\n\nbody", "id:1764783032:0\n\nbody",
        "id: 1764783032:0\ncontent-type: text/plain\n\nbody", "id: 1764783032:0\nbody",
        "id: 123456789012345678901234567890123:0\n\nbody",
    };
    lhb_meta_t mt;

    LH_CHECK_INT(meta_of(LHB_TARGET_NCHAN, "id: 1764783032:17\n\nbody", &mt), 0);
    LH_CHECK(mt.at == 0 && mt.len == strlen("id: 1764783032:17\n\n"));
    LH_CHECK(mt.idlen == 13 && memcmp(mt.id, "1764783032:17", 13) == 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (meta_of(LHB_TARGET_NCHAN, bad[i], &mt) != -1) {
            printf("# accepted: %s\n", bad[i]);
            lh_t_failed_checks++;
        }
    }
}

LH_TEST(test_lhttp_header)
{
    static const char m[] = "LHTTP/1.0 subscribed\r\nchannel:h.0\r\nepoch:0123456789abcdef\r\n"
                            "offset:12\r\nrecovered:true\r\n\r\nrecovered:false\r\n";
    const uint8_t *v;
    size_t vl = 0;
    uint64_t x = 0;

    v = lhb_lhttp_header((const uint8_t *)m, sizeof(m) - 1, "channel", &vl);
    LH_CHECK(v != NULL && vl == 3 && memcmp(v, "h.0", 3) == 0);
    v = lhb_lhttp_header((const uint8_t *)m, sizeof(m) - 1, "recovered", &vl);
    LH_CHECK(v != NULL && vl == 4 && memcmp(v, "true", 4) == 0);
    v = lhb_lhttp_header((const uint8_t *)m, sizeof(m) - 1, "offset", &vl);
    LH_CHECK(v != NULL && lhb_parse_u64(v, vl, &x) == 0 && x == 12);
    /* Only the head, only whole names. */
    LH_CHECK(lhb_lhttp_header((const uint8_t *)m, sizeof(m) - 1, "recover", &vl) == NULL);
    LH_CHECK(lhb_lhttp_header((const uint8_t *)m, sizeof(m) - 1, "subscribed", &vl) == NULL);
    LH_CHECK(lhb_lhttp_header((const uint8_t *)"LHTTP/1.0 x\r\na:b\r\n", 18, "a", &vl) == NULL);
    LH_CHECK(lhb_parse_u64((const uint8_t *)"18446744073709551615", 20, &x) == 0 &&
             x == UINT64_MAX);
    LH_CHECK(lhb_parse_u64((const uint8_t *)"18446744073709551616", 20, &x) == -1);
    LH_CHECK(lhb_parse_u64((const uint8_t *)"", 0, &x) == -1);
    LH_CHECK(lhb_parse_u64((const uint8_t *)"-1", 2, &x) == -1);
}

int main(void)
{
    LH_RUN(test_msg_roundtrip);
    LH_RUN(test_msg_trailer_damaged);
    LH_RUN(test_msg_meta_lhttp);
    LH_RUN(test_msg_meta_nchan);
    LH_RUN(test_lhttp_header);
    LH_RUN(test_hist);
    LH_DONE();
}
