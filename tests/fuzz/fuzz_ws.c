/*
 * libFuzzer target for lh_ws: header parsing under both masking rules (a parsed header
 * must rebuild to the same bytes), unmasking in two pieces against a byte-wise
 * reference, close payloads, and build/parse round trips for lengths from the input.
 */
#include "lh_ws.h"
#include "lh_utf8.h"

#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c))                                                                        \
            abort();                                                                     \
    } while (0)

static uint8_t a[1 << 16], b[1 << 16];

static void check_header(const uint8_t *data, size_t size, int require_mask, uint64_t max)
{
    lh_ws_frame_t f;
    uint16_t code = 0;
    const char *why = NULL;
    int r = lh_ws_parse_header(data, size, require_mask, max, &f, &code, &why);
    uint8_t out[LH_WS_MAX_HEADER];
    size_t avail, cut, i;

    if (r == LH_PARSE_AGAIN) {
        CHECK(size < LH_WS_MAX_HEADER);
        return;
    }
    if (r == LH_PARSE_ERROR) {
        CHECK(code == LH_WS_CLOSE_PROTOCOL || code == LH_WS_CLOSE_TOO_BIG);
        CHECK(why != NULL && why[0] != '\0');
        return;
    }
    CHECK(r >= 2 && (size_t)r <= size && (size_t)r <= LH_WS_MAX_HEADER);
    CHECK((size_t)r == f.header_len);
    CHECK(f.rsv == 0 && f.fin <= 1 && f.masked <= 1);
    CHECK(f.opcode <= 2 || (f.opcode >= 8 && f.opcode <= 10));
    CHECK(f.payload_len <= max && !(f.payload_len >> 63));
    CHECK(!(f.opcode & 8) || (f.fin && f.payload_len <= 125));
    CHECK(!require_mask || f.masked);
    /* Only minimal encodings are accepted, so building gives back the same bytes. */
    CHECK(lh_ws_build_header(out, (int)f.fin, (int)f.opcode, f.payload_len,
                             f.masked ? f.mask : NULL) == (size_t)r);
    CHECK(memcmp(out, data, (size_t)r) == 0);

    if (!f.masked)
        return;
    avail = size - (size_t)r;
    if (avail > f.payload_len)
        avail = (size_t)f.payload_len;
    if (avail > sizeof(a))
        avail = sizeof(a);
    memcpy(a, data + r, avail);
    memcpy(b, data + r, avail);
    cut = avail ? data[size - 1] % (avail + 1) : 0;
    lh_ws_mask(a, cut, f.mask, 0);
    lh_ws_mask(a + cut, avail - cut, f.mask, cut);
    for (i = 0; i < avail; i++)
        b[i] ^= f.mask[i % 4];
    CHECK(memcmp(a, b, avail) == 0);
}

static void check_close(const uint8_t *data, size_t size)
{
    uint16_t code = 0, err = 0;
    const char *reason = NULL;
    size_t rlen = 0;

    if (size > 125)
        size = 125;
    if (lh_ws_parse_close(data, size, &code, &reason, &rlen, &err) == 0) {
        if (size == 0) {
            CHECK(code == LH_WS_CLOSE_NO_STATUS && rlen == 0);
        } else {
            CHECK(size >= 2 && lh_ws_close_code_valid(code));
            CHECK(code == (data[0] << 8 | data[1]));
            CHECK(reason == (const char *)data + 2 && rlen == size - 2);
            CHECK(lh_utf8_valid((const uint8_t *)reason, rlen));
        }
    } else {
        CHECK(err == LH_WS_CLOSE_PROTOCOL || err == LH_WS_CLOSE_INVALID_DATA);
    }
}

static void check_build(const uint8_t *data, size_t size)
{
    uint8_t out[LH_WS_MAX_HEADER], m[4] = {0};
    uint64_t len = 0;
    size_t n, i;
    lh_ws_frame_t f;
    uint16_t code;
    const char *why;
    int opcode, fin, masked;

    for (i = 0; i < 8 && i < size; i++)
        len = len << 8 | data[i];
    if (size > 8)
        len >>= data[8] % 64; /* spread over all three length forms */
    len &= ~(UINT64_C(1) << 63);
    opcode = size > 9 ? (data[9] % 2 ? LH_WS_OP_BINARY : LH_WS_OP_TEXT) : LH_WS_OP_CONT;
    fin = size > 9 ? data[9] >> 7 : 1;
    masked = size > 10 ? data[10] & 1 : 0;
    if (size > 14)
        memcpy(m, data + 11, 4);
    n = lh_ws_build_header(out, fin, opcode, len, masked ? m : NULL);
    CHECK(n <= LH_WS_MAX_HEADER);
    CHECK(lh_ws_parse_header(out, n, masked, UINT64_MAX, &f, &code, &why) == (int)n);
    CHECK(f.payload_len == len && f.opcode == (unsigned)opcode && f.fin == (unsigned)fin);
    CHECK(f.masked == (unsigned)masked && f.header_len == n);
    CHECK(!masked || memcmp(f.mask, m, 4) == 0);
    for (i = 0; i < n; i++)
        CHECK(lh_ws_parse_header(out, i, masked, UINT64_MAX, &f, &code, &why) ==
              LH_PARSE_AGAIN);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_header(data, size, 0, UINT64_MAX);
    check_header(data, size, 1, UINT64_MAX);
    check_header(data, size, 1, 1000);
    check_close(data, size);
    check_build(data, size);
    return 0;
}
