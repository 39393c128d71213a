/*
 * The benchmark's messages. Every message ends with a fixed-size trailer carrying its
 * kind, its channel sequence number and its send time, so a subscriber reads latency
 * and order from a fixed offset without scanning; the bytes before it are fully
 * determined by the channel, so a delivery can be compared byte for byte.
 */
#include "bench.h"

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

static int get_hex(const uint8_t *p, int digits, uint64_t *v)
{
    uint64_t r = 0;

    for (int i = 0; i < digits; i++) {
        uint8_t c = p[i];

        if (c >= '0' && c <= '9')
            r = (r << 4) | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            r = (r << 4) | (uint64_t)(c - 'a' + 10);
        else
            return -1;
    }
    *v = r;
    return 0;
}

int lhb_msg_trailer(const uint8_t *m, size_t len, uint32_t *seq, uint64_t *t_ns)
{
    const uint8_t *t;
    uint64_t s;

    if (len < LHB_TRAILER)
        return 0;
    t = m + len - LHB_TRAILER;
    if (t[0] != LHB_KIND_MEASURED && t[0] != LHB_KIND_PROBE)
        return 0;
    if (get_hex(t + 1, 8, &s) < 0 || get_hex(t + 9, 16, t_ns) < 0)
        return 0;
    *seq = (uint32_t)s;
    return t[0];
}
