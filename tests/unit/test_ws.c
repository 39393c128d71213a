/* Unit tests for shared/lh_ws.c: frame headers, masking, accept key, close payloads. */
#include "lh_test.h"
#include "lh_ws.h"

#include <stdint.h>

#define NOLIMIT UINT64_MAX

/* Parses h[0..n) and returns the result, filling the out-parameters. */
static int parse(const uint8_t *h, size_t n, int require_mask, uint64_t max, lh_ws_frame_t *f,
                 uint16_t *code, const char **why)
{
    *code = 0;
    *why = NULL;
    return lh_ws_parse_header(h, n, require_mask, max, f, code, why);
}

/* Every proper prefix of h[0..n) returns LH_PARSE_AGAIN or (when err) the same error. */
static int prefixes_again(const uint8_t *h, size_t n, int require_mask, uint64_t max,
                          int err, uint16_t err_code)
{
    size_t k;

    for (k = 0; k < n; k++) {
        lh_ws_frame_t f;
        uint16_t code;
        const char *why;
        int r = parse(h, k, require_mask, max, &f, &code, &why);

        if (r == LH_PARSE_AGAIN)
            continue;
        if (!err || r != LH_PARSE_ERROR || code != err_code)
            return 0;
    }
    return 1;
}

/* Expects h[0..n) to be refused with code; checks prefixes too. */
static void expect_error(const uint8_t *h, size_t n, int require_mask, uint64_t max,
                         uint16_t want, int line)
{
    lh_ws_frame_t f;
    uint16_t code;
    const char *why;
    int r = parse(h, n, require_mask, max, &f, &code, &why);

    if (r != LH_PARSE_ERROR || code != want || why == NULL || !*why ||
        !prefixes_again(h, n, require_mask, max, 1, want)) {
        printf("# line %d: r=%d code=%u reason=%s, expected error %u\n", line, r, code,
               why ? why : "(null)", want);
        lh_t_failed_checks++;
    }
}

#define EXPECT_ERROR(h, rm, max, want) \
    expect_error((const uint8_t *)(h), sizeof(h) - 1, rm, max, want, __LINE__)

LH_TEST(test_parse_short_forms)
{
    lh_ws_frame_t f;
    uint16_t code;
    const char *why;
    const uint8_t h1[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d}; /* RFC 6455 5.7 "Hello" */
    const uint8_t h2[] = {0x82, 0x7d};
    const uint8_t h3[] = {0x01, 0x80, 1, 2, 3, 4};

    LH_CHECK_INT(parse(h1, sizeof(h1), 1, NOLIMIT, &f, &code, &why), 6);
    LH_CHECK_INT(f.fin, 1);
    LH_CHECK_INT(f.rsv, 0);
    LH_CHECK_INT(f.opcode, LH_WS_OP_TEXT);
    LH_CHECK_INT(f.masked, 1);
    LH_CHECK_INT(f.payload_len, 5);
    LH_CHECK_INT(f.header_len, 6);
    LH_CHECK(memcmp(f.mask, "\x37\xfa\x21\x3d", 4) == 0);
    LH_CHECK(prefixes_again(h1, sizeof(h1), 1, NOLIMIT, 0, 0));

    LH_CHECK_INT(parse(h2, sizeof(h2), 0, NOLIMIT, &f, &code, &why), 2);
    LH_CHECK_INT(f.opcode, LH_WS_OP_BINARY);
    LH_CHECK_INT(f.masked, 0);
    LH_CHECK_INT(f.payload_len, 125);
    LH_CHECK_INT(f.header_len, 2);

    LH_CHECK_INT(parse(h3, sizeof(h3), 1, NOLIMIT, &f, &code, &why), 6);
    LH_CHECK_INT(f.fin, 0);
    LH_CHECK_INT(f.payload_len, 0);
    LH_CHECK_INT(parse(h3, 0, 1, NOLIMIT, &f, &code, &why), LH_PARSE_AGAIN);
}

LH_TEST(test_parse_16bit_length)
{
    lh_ws_frame_t f;
    uint16_t code;
    const char *why;
    const uint8_t a[] = {0x82, 0xfe, 0x00, 0x7e, 9, 8, 7, 6}; /* 126, smallest */
    const uint8_t b[] = {0x82, 0x7e, 0xff, 0xff};             /* 65535, largest */

    LH_CHECK_INT(parse(a, sizeof(a), 1, NOLIMIT, &f, &code, &why), 8);
    LH_CHECK_INT(f.payload_len, 126);
    LH_CHECK_INT(f.header_len, 8);
    LH_CHECK(memcmp(f.mask, "\x09\x08\x07\x06", 4) == 0);
    LH_CHECK(prefixes_again(a, sizeof(a), 1, NOLIMIT, 0, 0));
    LH_CHECK_INT(parse(b, sizeof(b), 0, NOLIMIT, &f, &code, &why), 4);
    LH_CHECK_INT(f.payload_len, 65535);
    LH_CHECK(prefixes_again(b, sizeof(b), 0, NOLIMIT, 0, 0));
}

LH_TEST(test_parse_64bit_length)
{
    lh_ws_frame_t f;
    uint16_t code;
    const char *why;
    const uint8_t a[] = {0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}; /* 65536 */
    const uint8_t b[] = {0x02, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

    LH_CHECK_INT(parse(a, sizeof(a), 1, NOLIMIT, &f, &code, &why), LH_WS_MAX_HEADER);
    LH_CHECK_INT(f.payload_len, 65536);
    LH_CHECK_INT(f.header_len, 14);
    LH_CHECK(memcmp(f.mask, "\x01\x02\x03\x04", 4) == 0);
    LH_CHECK(prefixes_again(a, sizeof(a), 1, NOLIMIT, 0, 0));
    LH_CHECK_INT(parse(b, sizeof(b), 0, NOLIMIT, &f, &code, &why), 10);
    LH_CHECK_INT(f.payload_len, UINT64_C(0x7fffffffffffffff));
    LH_CHECK_INT(f.fin, 0);
}

LH_TEST(test_parse_control_frames)
{
    lh_ws_frame_t f;
    uint16_t code;
    const char *why;
    const uint8_t close[] = {0x88, 0x80 | 125, 0, 0, 0, 0};
    const uint8_t ping[] = {0x89, 0x80, 0, 0, 0, 0};
    const uint8_t pong[] = {0x8a, 0x00};

    LH_CHECK_INT(parse(close, sizeof(close), 1, NOLIMIT, &f, &code, &why), 6);
    LH_CHECK_INT(f.opcode, LH_WS_OP_CLOSE);
    LH_CHECK_INT(f.payload_len, 125);
    LH_CHECK_INT(parse(ping, sizeof(ping), 1, NOLIMIT, &f, &code, &why), 6);
    LH_CHECK_INT(f.opcode, LH_WS_OP_PING);
    LH_CHECK_INT(parse(pong, sizeof(pong), 0, NOLIMIT, &f, &code, &why), 2);
    LH_CHECK_INT(f.opcode, LH_WS_OP_PONG);
}

LH_TEST(test_parse_protocol_errors)
{
    unsigned op;

    EXPECT_ERROR("\xc1\x80\0\0\0\0", 1, NOLIMIT, 1002); /* RSV1 */
    EXPECT_ERROR("\xa1\x80\0\0\0\0", 1, NOLIMIT, 1002); /* RSV2 */
    EXPECT_ERROR("\x91\x80\0\0\0\0", 1, NOLIMIT, 1002); /* RSV3 */
    for (op = 0; op < 16; op++) {
        uint8_t h[6] = {(uint8_t)(0x80 | op), 0x80, 0, 0, 0, 0};
        lh_ws_frame_t f;
        uint16_t code;
        const char *why;
        int reserved = (op >= 3 && op <= 7) || op >= 0xb;
        int r = parse(h, sizeof(h), 1, NOLIMIT, &f, &code, &why);

        if (reserved) {
            LH_CHECK_INT(r, LH_PARSE_ERROR);
            LH_CHECK_INT(code, 1002);
            /* Refused from the first two bytes already. */
            LH_CHECK_INT(parse(h, 2, 1, NOLIMIT, &f, &code, &why), LH_PARSE_ERROR);
        } else {
            LH_CHECK_INT(r, 6);
        }
    }
    EXPECT_ERROR("\x08\x80\0\0\0\0", 1, NOLIMIT, 1002);        /* fragmented close */
    EXPECT_ERROR("\x09\x80\0\0\0\0", 1, NOLIMIT, 1002);        /* fragmented ping */
    EXPECT_ERROR("\x0a\x00", 0, NOLIMIT, 1002);                /* fragmented pong */
    EXPECT_ERROR("\x89\xfe\x00\x7e\0\0\0\0", 1, NOLIMIT, 1002); /* ping 126 */
    EXPECT_ERROR("\x88\xff\0\0\0\0\0\0\0\x7e\0\0\0\0", 1, NOLIMIT, 1002);
    EXPECT_ERROR("\x81\x05", 1, NOLIMIT, 1002);                 /* unmasked */
    EXPECT_ERROR("\x81\xfe\x00\x7d\0\0\0\0", 1, NOLIMIT, 1002); /* 125 in 16 bits */
    EXPECT_ERROR("\x81\xfe\x00\x00\0\0\0\0", 1, NOLIMIT, 1002);
    EXPECT_ERROR("\x82\x7f\0\0\0\0\0\0\xff\xff", 0, NOLIMIT, 1002); /* 65535 in 64 bits */
    EXPECT_ERROR("\x82\x7f\0\0\0\0\0\0\0\x05", 0, NOLIMIT, 1002);
    EXPECT_ERROR("\x82\x7f\x80\0\0\0\0\0\0\0", 0, NOLIMIT, 1002); /* top bit */
    EXPECT_ERROR("\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xff", 0, NOLIMIT, 1002);
}

LH_TEST(test_parse_too_big)
{
    lh_ws_frame_t f;
    uint16_t code;
    const char *why;
    const uint8_t at[] = {0x82, 0xfe, 0x01, 0x00, 0, 0, 0, 0};   /* 256 */
    const uint8_t over[] = {0x82, 0xfe, 0x01, 0x01, 0, 0, 0, 0}; /* 257 */

    LH_CHECK_INT(parse(at, sizeof(at), 1, 256, &f, &code, &why), 8);
    EXPECT_ERROR("\x82\xfe\x01\x01\0\0\0\0", 1, 256, 1009);
    /* Refused before the mask arrives. */
    LH_CHECK_INT(parse(over, 4, 1, 256, &f, &code, &why), LH_PARSE_ERROR);
    LH_CHECK_INT(code, 1009);
    LH_CHECK_INT(f.payload_len, 257);
    EXPECT_ERROR("\x82\x84\0\0\0\0", 1, 3, 1009);
    EXPECT_ERROR("\x82\x81\0\0\0\0", 1, 0, 1009);
    LH_CHECK_INT(parse((const uint8_t *)"\x82\x80\0\0\0\0", 6, 1, 0, &f, &code, &why), 6);
    EXPECT_ERROR("\x82\x7f\0\0\0\x01\0\0\0\0", 0, UINT32_MAX, 1009);
    /* Protocol errors come first. */
    EXPECT_ERROR("\xc2\x84\0\0\0\0", 1, 3, 1002);
    EXPECT_ERROR("\x82\x04", 1, 3, 1002);
    EXPECT_ERROR("\x82\x7f\x80\0\0\0\0\0\0\0", 0, 3, 1002);
}

/* Byte-at-a-time reference for masking. */
static void ref_mask(uint8_t *d, size_t n, const uint8_t m[4], uint64_t off)
{
    size_t i;

    for (i = 0; i < n; i++)
        d[i] ^= m[(off + i) % 4];
}

LH_TEST(test_mask_vs_reference)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t buf[160], a[160], b[160];
    size_t i, start, n;
    uint64_t off;
    unsigned bad = 0;

    for (i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    for (start = 0; start < 9; start++)           /* unaligned starts */
        for (n = 0; n + start <= 150; n++)        /* every length incl. odd ones */
            for (off = 0; off < 9; off++) {       /* every rotation */
                memcpy(a, buf, sizeof(buf));
                memcpy(b, buf, sizeof(buf));
                lh_ws_mask(a + start, n, mask, off);
                ref_mask(b + start, n, mask, off);
                if (memcmp(a, b, sizeof(a)) != 0) /* also: nothing outside touched */
                    bad++;
            }
    LH_CHECK_INT(bad, 0);
    /* A large offset keeps only its rotation. */
    memcpy(a, buf, 20);
    memcpy(b, buf, 20);
    lh_ws_mask(a, 20, mask, UINT64_C(0xfffffffffffffff3));
    ref_mask(b, 20, mask, 3);
    LH_CHECK(memcmp(a, b, 20) == 0);
}

LH_TEST(test_mask_in_pieces)
{
    static const uint8_t mask[4] = {1, 2, 3, 4};
    uint8_t whole[100], pieces[100];
    size_t i, cut1, cut2;
    unsigned bad = 0;

    for (i = 0; i < sizeof(whole); i++)
        whole[i] = (uint8_t)i;
    lh_ws_mask(whole, sizeof(whole), mask, 0);
    for (cut1 = 0; cut1 <= 40; cut1++)
        for (cut2 = cut1; cut2 <= sizeof(whole); cut2 += 7) {
            for (i = 0; i < sizeof(pieces); i++)
                pieces[i] = (uint8_t)i;
            lh_ws_mask(pieces, cut1, mask, 0);
            lh_ws_mask(pieces + cut1, cut2 - cut1, mask, cut1);
            lh_ws_mask(pieces + cut2, sizeof(pieces) - cut2, mask, cut2);
            if (memcmp(whole, pieces, sizeof(whole)) != 0)
                bad++;
        }
    LH_CHECK_INT(bad, 0);
    /* Masking twice restores the data; the RFC example masks "Hello" to 7f 9f 4d 51 58. */
    {
        uint8_t hello[5] = {'H', 'e', 'l', 'l', 'o'};
        const uint8_t m[4] = {0x37, 0xfa, 0x21, 0x3d};

        lh_ws_mask(hello, 5, m, 0);
        LH_CHECK(memcmp(hello, "\x7f\x9f\x4d\x51\x58", 5) == 0);
        lh_ws_mask(hello, 5, m, 0);
        LH_CHECK(memcmp(hello, "Hello", 5) == 0);
    }
}

LH_TEST(test_build_header)
{
    uint8_t out[LH_WS_MAX_HEADER];
    static const uint8_t mask[4] = {0xa, 0xb, 0xc, 0xd};

    LH_CHECK_INT(lh_ws_build_header(out, 1, LH_WS_OP_TEXT, 5, NULL), 2);
    LH_CHECK(memcmp(out, "\x81\x05", 2) == 0);
    LH_CHECK_INT(lh_ws_build_header(out, 0, LH_WS_OP_BINARY, 125, NULL), 2);
    LH_CHECK(memcmp(out, "\x02\x7d", 2) == 0);
    LH_CHECK_INT(lh_ws_build_header(out, 1, LH_WS_OP_BINARY, 126, NULL), 4);
    LH_CHECK(memcmp(out, "\x82\x7e\x00\x7e", 4) == 0);
    LH_CHECK_INT(lh_ws_build_header(out, 1, LH_WS_OP_BINARY, 65535, NULL), 4);
    LH_CHECK(memcmp(out, "\x82\x7e\xff\xff", 4) == 0);
    LH_CHECK_INT(lh_ws_build_header(out, 1, LH_WS_OP_BINARY, 65536, NULL), 10);
    LH_CHECK(memcmp(out, "\x82\x7f\0\0\0\0\0\x01\0\0", 10) == 0);
    LH_CHECK_INT(lh_ws_build_header(out, 1, LH_WS_OP_CLOSE, 2, mask), 6);
    LH_CHECK(memcmp(out, "\x88\x82\x0a\x0b\x0c\x0d", 6) == 0);
    LH_CHECK_INT(lh_ws_build_header(out, 1, LH_WS_OP_BINARY, UINT64_C(0x123456789a), mask), 14);
    LH_CHECK(memcmp(out, "\x82\xff\0\0\0\x12\x34\x56\x78\x9a\x0a\x0b\x0c\x0d", 14) == 0);
}

LH_TEST(test_build_parse_round_trip)
{
    static const uint64_t lens[] = {0,     1,     125,   126,        127,
                                    65535, 65536, 65537, UINT32_MAX, UINT64_C(0x7fffffffffffffff)};
    static const uint8_t mask[4] = {0xde, 0xad, 0xbe, 0xef};
    static const int ops[] = {LH_WS_OP_CONT, LH_WS_OP_TEXT, LH_WS_OP_BINARY};
    size_t k, o;
    int fin, masked;

    for (k = 0; k < LH_ARRAY_LEN(lens); k++)
        for (o = 0; o < LH_ARRAY_LEN(ops); o++)
            for (fin = 0; fin < 2; fin++)
                for (masked = 0; masked < 2; masked++) {
                    uint8_t out[LH_WS_MAX_HEADER];
                    size_t n = lh_ws_build_header(out, fin, ops[o], lens[k],
                                                  masked ? mask : NULL);
                    lh_ws_frame_t f;
                    uint16_t code;
                    const char *why;

                    LH_CHECK_INT(parse(out, n, masked, NOLIMIT, &f, &code, &why), (int)n);
                    LH_CHECK_INT(f.payload_len, lens[k]);
                    LH_CHECK_INT(f.opcode, ops[o]);
                    LH_CHECK_INT(f.fin, fin);
                    LH_CHECK_INT(f.masked, masked);
                    LH_CHECK_INT(f.header_len, n);
                    if (masked)
                        LH_CHECK(memcmp(f.mask, mask, 4) == 0);
                    LH_CHECK(prefixes_again(out, n, masked, NOLIMIT, 0, 0));
                }
}

LH_TEST(test_accept_key)
{
    char out[29];

    LH_CHECK_INT(lh_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out), 0);
    LH_CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
    LH_CHECK_INT(lh_ws_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", 24, out), 0);
    LH_CHECK(strcmp(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=") == 0);
    /* key_len bounds the key: trailing bytes beyond it are not read. */
    LH_CHECK_INT(lh_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==garbage", 24, out), 0);
    LH_CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
}

LH_TEST(test_accept_key_bad)
{
    static const char *const bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",    /* short */
        "dGhlIHNhbXBsZSBub25jZQ===",  /* long */
        "dGhlIHNhbXBsZSBub25jZQ",     /* no padding */
        "dGhlIHNhbXBsZSBub25jZQAA",   /* 18 bytes, no padding */
        "dGhlIHNhbXBsZSBub25jZ===",   /* wrong padding */
        "dGhlIHNhbXBsZSBub25j ZQ==",  /* space inside */
        " dGhlIHNhbXBsZSBub25jZQ=",   /* leading space, 24 chars */
        "dGhlIHNhbXBsZSBub25jZQ= ",   /* trailing space, 24 chars */
        "dGhlIHNhbXBsZSBub25jZ-==",   /* base64url alphabet */
        "dGhlIHNhbXBsZSBub25jZ_==",
        "dGhlIHNhbXBsZSBub25jZQ=A",
        "dGhlIHNhbXBsZSBub2=jZQ==",
        "dGhlIHNhbXBsZSBub25jZQ\r\n",
        "c2l4dGVlbiBieXRlcyEhIQ==", /* "sixteen bytes!!!" is 16: valid, kept as control */
    };
    char out[29];
    size_t k;

    for (k = 0; k + 1 < LH_ARRAY_LEN(bad); k++) {
        int r = lh_ws_accept_key(bad[k], strlen(bad[k]), out);

        if (r != -1)
            printf("# key \"%s\" accepted\n", bad[k]);
        LH_CHECK_INT(r, -1);
    }
    LH_CHECK_INT(lh_ws_accept_key(bad[k], strlen(bad[k]), out), 0);
    /* A NUL inside the key. */
    LH_CHECK_INT(lh_ws_accept_key("dGhlIHNhbXBsZSBub25j\0Q==", 24, out), -1);
}

LH_TEST(test_close_code_valid)
{
    unsigned c, bad = 0;

    for (c = 0; c < 70000; c++) {
        int want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
                   (c >= 3000 && c <= 4999);

        if (lh_ws_close_code_valid(c) != want)
            bad++;
    }
    LH_CHECK_INT(bad, 0);
    LH_CHECK(!lh_ws_close_code_valid(1004));
    LH_CHECK(!lh_ws_close_code_valid(1005));
    LH_CHECK(!lh_ws_close_code_valid(1006));
    LH_CHECK(!lh_ws_close_code_valid(1015));
    LH_CHECK(!lh_ws_close_code_valid(2999));
    LH_CHECK(!lh_ws_close_code_valid(5000));
    LH_CHECK(lh_ws_close_code_valid(LH_WS_CLOSE_TRY_AGAIN));
    LH_CHECK(lh_ws_close_code_valid(LH_WS_CLOSE_SLOW_CONSUMER));
}

LH_TEST(test_parse_close)
{
    uint16_t code = 0, err = 0;
    const char *reason = NULL;
    size_t rlen = 99;

    LH_CHECK_INT(lh_ws_parse_close(NULL, 0, &code, &reason, &rlen, &err), 0);
    LH_CHECK_INT(code, 1005);
    LH_CHECK_INT(rlen, 0);
    LH_CHECK_INT(lh_ws_parse_close((const uint8_t *)"\x03\xe8", 2, &code, &reason, &rlen, &err),
                 0);
    LH_CHECK_INT(code, 1000);
    LH_CHECK_INT(rlen, 0);
    LH_CHECK_INT(lh_ws_parse_close((const uint8_t *)"\x0f\xa8slow \xc3\xa9", 9, &code, &reason,
                                   &rlen, &err),
                 0);
    LH_CHECK_INT(code, 4008);
    LH_CHECK_MEM(reason, rlen, "slow \xc3\xa9");

    LH_CHECK_INT(lh_ws_parse_close((const uint8_t *)"\x03", 1, &code, &reason, &rlen, &err), -1);
    LH_CHECK_INT(err, 1002);
    err = 0;
    LH_CHECK_INT(lh_ws_parse_close((const uint8_t *)"\x03\xed", 2, &code, &reason, &rlen, &err),
                 -1); /* 1005 */
    LH_CHECK_INT(err, 1002);
    err = 0;
    LH_CHECK_INT(lh_ws_parse_close((const uint8_t *)"\x03\xe7", 2, &code, &reason, &rlen, &err),
                 -1); /* 999 */
    LH_CHECK_INT(err, 1002);
    err = 0;
    LH_CHECK_INT(lh_ws_parse_close((const uint8_t *)"\x13\x88", 2, &code, &reason, &rlen, &err),
                 -1); /* 5000 */
    LH_CHECK_INT(err, 1002);
    err = 0;
    LH_CHECK_INT(lh_ws_parse_close((const uint8_t *)"\x03\xe8\xce\xba\xe1\xbd", 6, &code,
                                   &reason, &rlen, &err),
                 -1); /* truncated UTF-8 */
    LH_CHECK_INT(err, 1007);
    err = 0;
    LH_CHECK_INT(lh_ws_parse_close((const uint8_t *)"\x03\xe8\xed\xa0\x80", 5, &code, &reason,
                                   &rlen, &err),
                 -1); /* surrogate */
    LH_CHECK_INT(err, 1007);
    /* An invalid code is reported before an invalid reason. */
    err = 0;
    LH_CHECK_INT(lh_ws_parse_close((const uint8_t *)"\x03\xee\xff", 3, &code, &reason, &rlen,
                                   &err),
                 -1);
    LH_CHECK_INT(err, 1002);
}

int main(void)
{
    LH_RUN(test_parse_short_forms);
    LH_RUN(test_parse_16bit_length);
    LH_RUN(test_parse_64bit_length);
    LH_RUN(test_parse_control_frames);
    LH_RUN(test_parse_protocol_errors);
    LH_RUN(test_parse_too_big);
    LH_RUN(test_mask_vs_reference);
    LH_RUN(test_mask_in_pieces);
    LH_RUN(test_build_header);
    LH_RUN(test_build_parse_round_trip);
    LH_RUN(test_accept_key);
    LH_RUN(test_accept_key_bad);
    LH_RUN(test_close_code_valid);
    LH_RUN(test_parse_close);
    LH_DONE();
}
