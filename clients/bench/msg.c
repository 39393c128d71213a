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

int lhb_parse_u64(const uint8_t *v, size_t vl, uint64_t *out)
{
    uint64_t x = 0;

    if (vl == 0 || vl > 20)
        return -1;
    for (size_t i = 0; i < vl; i++) {
        if (v[i] < '0' || v[i] > '9' || x > (UINT64_MAX - (v[i] - '0')) / 10)
            return -1;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return 0;
}

/* One header line "name:VALUE\r\n" at p (at most end): VALUE's start and length, and the
 * line's length; 0 when p does not start such a line. */
static size_t header_line(const uint8_t *p, const uint8_t *end, const char *name,
                          const uint8_t **v, size_t *vl)
{
    size_t nl = strlen(name);
    const uint8_t *e;

    if ((size_t)(end - p) < nl + 3 || memcmp(p, name, nl) != 0 || p[nl] != ':')
        return 0;
    e = memmem(p + nl + 1, (size_t)(end - p) - nl - 1, "\r\n", 2);
    if (e == NULL)
        return 0;
    *v = p + nl + 1;
    *vl = (size_t)(e - *v);
    return (size_t)(e + 2 - p);
}

static int lower_hex(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return 0;
    return 1;
}

/* lhttpd: the four lines right after the command line, in the order PROTOCOL.md gives
 * them, no spaces (the server writes them so). */
static int lhttp_meta(const uint8_t *m, size_t len, lhb_meta_t *mt)
{
    const uint8_t *end = m + len, *p, *v;
    size_t n, vl;

    p = memmem(m, len < 64 ? len : 64, "\r\n", 2);
    if (p == NULL)
        return -1;
    p += 2;
    mt->at = (size_t)(p - m);
    if ((n = header_line(p, end, "offset", &v, &vl)) == 0 || lhb_parse_u64(v, vl, &mt->offset) < 0)
        return -1;
    p += n;
    if ((n = header_line(p, end, "prev-offset", &v, &vl)) == 0 ||
        lhb_parse_u64(v, vl, &mt->prev) < 0)
        return -1;
    p += n;
    if ((n = header_line(p, end, "epoch", &v, &vl)) == 0 || vl != LHB_EPOCH_LEN ||
        !lower_hex(v, vl))
        return -1;
    mt->epoch = v;
    p += n;
    if ((n = header_line(p, end, "channel", &v, &vl)) == 0 || vl == 0)
        return -1;
    mt->channel = v;
    mt->chlen = vl;
    p += n;
    mt->len = (size_t)(p - m) - mt->at;
    return mt->offset > mt->prev ? 0 : -1;
}

/* nchan's ws+meta.nchan: "id: TIME:TAG\n\n" before the body (a content-type line comes
 * only with a publisher's Content-Type, which lhttp-bench never sends). */
static int nchan_meta(const uint8_t *m, size_t len, lhb_meta_t *mt)
{
    const uint8_t *e, *colon;

    if (len < 8 || memcmp(m, "id: ", 4) != 0)
        return -1;
    e = memmem(m + 4, len - 4, "\n\n", 2);
    if (e == NULL || e == m + 4 || (size_t)(e - m - 4) > LHB_MAX_ID)
        return -1;
    colon = memchr(m + 4, ':', (size_t)(e - m - 4));
    if (colon == NULL || colon == m + 4 || colon + 1 == e)
        return -1;
    for (const uint8_t *p = m + 4; p < e; p++)
        if (p != colon && (*p < '0' || *p > '9'))
            return -1;
    mt->at = 0;
    mt->len = (size_t)(e + 2 - m);
    mt->id = m + 4;
    mt->idlen = (size_t)(e - m - 4);
    return 0;
}

int lhb_msg_meta(int target, const uint8_t *m, size_t len, lhb_meta_t *mt)
{
    memset(mt, 0, sizeof(*mt));
    return target == LHB_TARGET_LHTTP ? lhttp_meta(m, len, mt) : nchan_meta(m, len, mt);
}

const uint8_t *lhb_lhttp_header(const uint8_t *m, size_t len, const char *name, size_t *vl)
{
    const uint8_t *end, *p = memmem(m, len, "\r\n", 2), *v;

    end = memmem(m, len, "\r\n\r\n", 4);
    if (p == NULL || end == NULL)
        return NULL;
    end += 2; /* the last header line's CRLF */
    for (p += 2; p < end;) {
        const uint8_t *e = memmem(p, (size_t)(end - p), "\r\n", 2);
        size_t n;

        if (e == NULL)
            return NULL;
        if ((n = header_line(p, end, name, &v, vl)) != 0)
            return v;
        p = e + 2;
    }
    return NULL;
}
