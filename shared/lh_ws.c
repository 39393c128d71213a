/*
 * WebSocket (RFC 6455) framing. Pure: no I/O, no allocation, no global state.
 */
#include "lh_ws.h"
#include "lh_utf8.h"

#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int fail(uint16_t *close_code, const char **reason, uint16_t code, const char *why)
{
    *close_code = code;
    *reason = why;
    return LH_PARSE_ERROR;
}

/*
 * Checks are made as soon as the bytes they need are present, so a bad frame is refused
 * before the rest of its header arrives; protocol errors (1002) come before size (1009).
 */
int lh_ws_parse_header(const uint8_t *buf, size_t len, int require_mask, uint64_t max_payload,
                       lh_ws_frame_t *f, uint16_t *close_code, const char **reason)
{
    unsigned len7;
    size_t ext, hlen;
    uint64_t plen;

    if (len < 2)
        return LH_PARSE_AGAIN;
    f->fin = buf[0] >> 7;
    f->rsv = (buf[0] >> 4) & 7u;
    f->opcode = buf[0] & 0x0Fu;
    f->masked = buf[1] >> 7;
    len7 = buf[1] & 0x7Fu;

    if (f->rsv)
        return fail(close_code, reason, LH_WS_CLOSE_PROTOCOL, "reserved bits set");
    if ((f->opcode >= 0x3 && f->opcode <= 0x7) || f->opcode >= 0xB)
        return fail(close_code, reason, LH_WS_CLOSE_PROTOCOL, "reserved opcode");
    if (f->opcode & 0x8) {
        if (!f->fin)
            return fail(close_code, reason, LH_WS_CLOSE_PROTOCOL, "fragmented control frame");
        if (len7 > 125)
            return fail(close_code, reason, LH_WS_CLOSE_PROTOCOL, "control frame too long");
    }
    if (require_mask && !f->masked)
        return fail(close_code, reason, LH_WS_CLOSE_PROTOCOL, "unmasked frame");

    ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    if (len < 2 + ext)
        return LH_PARSE_AGAIN;
    if (len7 == 126) {
        plen = (uint64_t)buf[2] << 8 | buf[3];
        if (plen < 126)
            return fail(close_code, reason, LH_WS_CLOSE_PROTOCOL, "non-minimal length");
    } else if (len7 == 127) {
        size_t i;

        plen = 0;
        for (i = 0; i < 8; i++)
            plen = plen << 8 | buf[2 + i];
        if (plen >> 63)
            return fail(close_code, reason, LH_WS_CLOSE_PROTOCOL, "length top bit set");
        if (plen < 65536)
            return fail(close_code, reason, LH_WS_CLOSE_PROTOCOL, "non-minimal length");
    } else {
        plen = len7;
    }
    f->payload_len = plen;
    if (plen > max_payload)
        return fail(close_code, reason, LH_WS_CLOSE_TOO_BIG, "frame too big");

    hlen = 2 + ext + (f->masked ? 4 : 0);
    if (len < hlen)
        return LH_PARSE_AGAIN;
    if (f->masked)
        memcpy(f->mask, buf + 2 + ext, 4);
    else
        memset(f->mask, 0, 4);
    f->header_len = hlen;
    return (int)hlen;
}

/*
 * XORs 8 bytes at a time with the mask repeated twice and rotated to offset; memcpy
 * keeps the unaligned loads and stores defined (compilers turn it into plain moves).
 * Building the word from bytes makes it independent of endianness.
 */
void lh_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
    uint8_t m8[8];
    uint64_t m;
    size_t i = 0;
    unsigned k, r = (unsigned)(offset & 3);

    for (k = 0; k < 8; k++)
        m8[k] = mask[(r + k) & 3];
    memcpy(&m, m8, 8);

    for (; len - i >= 32; i += 32) {
        uint64_t w[4];

        memcpy(w, data + i, 32);
        w[0] ^= m, w[1] ^= m, w[2] ^= m, w[3] ^= m;
        memcpy(data + i, w, 32);
    }
    for (; len - i >= 8; i += 8) {
        uint64_t w;

        memcpy(&w, data + i, 8);
        w ^= m;
        memcpy(data + i, &w, 8);
    }
    /* i is a multiple of 8, so byte i uses m8[i & 7] = mask[(offset + i) & 3]. */
    for (; i < len; i++)
        data[i] ^= m8[i & 7];
}

size_t lh_ws_build_header(uint8_t *out, int fin, int opcode, uint64_t payload_len,
                          const uint8_t *mask)
{
    size_t n;

    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (payload_len < 126) {
        out[1] = (uint8_t)payload_len;
        n = 2;
    } else if (payload_len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        n = 4;
    } else {
        int i;

        out[1] = 127;
        for (i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        out[1] |= 0x80;
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

static int is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

/*
 * The base64 of 16 bytes is exactly 22 alphabet characters and "==". The format is
 * checked here because EVP_DecodeBlock skips surrounding white space and does not
 * report padding; the decode then confirms it.
 */
int lh_ws_accept_key(const char *key, size_t key_len, char out[29])
{
    unsigned char cat[24 + sizeof(ws_guid) - 1];
    unsigned char raw[18], digest[SHA_DIGEST_LENGTH];
    size_t i;

    if (key_len != 24 || key[22] != '=' || key[23] != '=')
        return -1;
    for (i = 0; i < 22; i++)
        if (!is_b64((unsigned char)key[i]))
            return -1;
    if (EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18)
        return -1;

    memcpy(cat, key, 24);
    memcpy(cat + 24, ws_guid, sizeof(ws_guid) - 1);
    SHA1(cat, sizeof(cat), digest);
    if (EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH) != 28)
        return -1;
    return 0;
}

/* 1012-1014 are registered with IANA (service restart, try again later, bad gateway). */
int lh_ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int lh_ws_parse_close(const uint8_t *p, size_t len, uint16_t *code, const char **reason,
                      size_t *reason_len, uint16_t *err_code)
{
    uint16_t c;

    if (len == 0) {
        *code = LH_WS_CLOSE_NO_STATUS;
        *reason = "";
        *reason_len = 0;
        return 0;
    }
    if (len == 1) {
        *err_code = LH_WS_CLOSE_PROTOCOL;
        return -1;
    }
    c = (uint16_t)(p[0] << 8 | p[1]);
    if (!lh_ws_close_code_valid(c)) {
        *err_code = LH_WS_CLOSE_PROTOCOL;
        return -1;
    }
    if (!lh_utf8_valid(p + 2, len - 2)) {
        *err_code = LH_WS_CLOSE_INVALID_DATA;
        return -1;
    }
    *code = c;
    *reason = (const char *)(p + 2);
    *reason_len = len - 2;
    return 0;
}
