/*
 * The benchmark's messages. Every message ends with a fixed-size trailer carrying its
 * kind, its channel sequence number and its send time, so a subscriber reads latency
 * and order from a fixed offset without scanning; the bytes before it are fully
 * determined by the channel, so a delivery can be compared byte for byte.
 */
#include "bench.h"

#include <endian.h>
#include <stdio.h>
#include <string.h>

/* RFC 6455's sample key and its accept value: the server's answer is checked against it. */
const char lhb_ws_key[] = "dGhlIHNhbXBsZSBub25jZQ==";
const char lhb_ws_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

static const char lhttp_head1[] = "LHTTP/1.0 m\r\npublish:";
static const char lhttp_head2[] = "\r\n\r\n";
#define HEAD_LEN(chlen) (sizeof(lhttp_head1) - 1 + (chlen) + sizeof(lhttp_head2) - 1)

size_t lhb_channel_name(char *out, size_t cap, const char *prefix, uint32_t i)
{
    int n = snprintf(out, cap, "%s%u", prefix, i);

    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

size_t lhb_msg_min_size(int target, size_t chlen)
{
    return (target == LHB_TARGET_LHTTP ? HEAD_LEN(chlen) : 0) + LHB_TRAILER;
}

static void put_hex(uint8_t *p, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";

    for (int i = digits - 1; i >= 0; i--) {
        p[i] = (uint8_t)hex[v & 15];
        v >>= 4;
    }
}

size_t lhb_msg_build(uint8_t *out, size_t cap, int target, const char *ch, size_t chlen,
                     size_t size, int kind, uint32_t seq, uint64_t t_ns)
{
    size_t off = 0;

    if (size < lhb_msg_min_size(target, chlen) || size > cap)
        return 0;
    if (target == LHB_TARGET_LHTTP) {
        memcpy(out, lhttp_head1, sizeof(lhttp_head1) - 1);
        off = sizeof(lhttp_head1) - 1;
        memcpy(out + off, ch, chlen);
        off += chlen;
        memcpy(out + off, lhttp_head2, sizeof(lhttp_head2) - 1);
        off += sizeof(lhttp_head2) - 1;
    }
    memset(out + off, '.', size - LHB_TRAILER - off);
    off = size - LHB_TRAILER;
    out[off] = (uint8_t)kind;
    put_hex(out + off + 1, seq, 8);
    put_hex(out + off + 9, t_ns, 16);
    return size;
}

#define ONES 0x0101010101010101ull

/* Decodes the 8 lower-case hex digits at p into *v; -1 when one is not such a digit.
 * Every delivery passes here three times, so the 8 bytes are checked and converted at
 * once in one 64-bit word (no branch per digit, which random digits would mispredict
 * half the time): the generator's own CPU per delivery is what limits the 2-worker runs
 * on a small machine. Each test adds a constant to every byte below 0x80, which never
 * carries into the next byte, and reads the top bit. */
static int hex8(const uint8_t *p, uint32_t *v)
{
    uint64_t x, digit, letter, d;

    memcpy(&x, p, 8);
    x = le64toh(x); /* p[0] in the low byte */
    digit = (x + 0x50 * ONES) & ~(x + 0x46 * ONES);  /* 0x30 <= byte <= 0x39 */
    letter = (x + 0x1f * ONES) & ~(x + 0x19 * ONES); /* 0x61 <= byte <= 0x66 */
    if ((x & 0x80 * ONES) != 0 || ((digit | letter) & 0x80 * ONES) != 0x80 * ONES)
        return -1;
    /* Each byte's value (its low nibble, plus 9 for a letter), then the nibbles of p[0],
     * p[1], ... gathered from the most significant down. */
    d = (x & 0x0f * ONES) + 9 * ((x >> 6) & ONES);
    d = ((d << 4) | (d >> 8)) & 0x00ff00ff00ff00ffull;
    d = ((d << 8) | (d >> 16)) & 0x0000ffff0000ffffull;
    *v = (uint32_t)((d << 16) | (d >> 32));
    return 0;
}

int lhb_msg_trailer(const uint8_t *m, size_t len, uint32_t *seq, uint64_t *t_ns)
{
    const uint8_t *t;
    uint32_t s, hi, lo;

    if (len < LHB_TRAILER)
        return 0;
    t = m + len - LHB_TRAILER;
    if (t[0] != LHB_KIND_MEASURED && t[0] != LHB_KIND_PROBE)
        return 0;
    if (hex8(t + 1, &s) < 0 || hex8(t + 9, &hi) < 0 || hex8(t + 17, &lo) < 0)
        return 0;
    *seq = s;
    *t_ns = (uint64_t)hi << 32 | lo;
    return t[0];
}
