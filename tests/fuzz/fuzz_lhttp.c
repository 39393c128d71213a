/*
 * libFuzzer target for the LHTTP codec and channel lists. For two sets of limits: the
 * result is a documented one; on success every pointer lies inside the input, the
 * command, keys and values obey the grammar and the limits, and serializing the message
 * and parsing it again gives the same message. Channel lists in header values are
 * iterated and each name checked against the list.
 */
#include "lh_channel.h"
#include "lh_lhttp.h"

#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c))                                                                        \
            abort();                                                                     \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const char *buf, size_t n, const char *p, size_t plen)
{
    return p != NULL && p >= buf && plen <= n && (size_t)(p - buf) <= n - plen;
}

static int same(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void check_channels(const char *v, size_t vlen)
{
    const char *pos = v, *end = v + vlen, *ch;
    size_t len, k;

    while (lh_channel_next(&pos, end, &ch, &len)) {
        CHECK(len > 0 && inside(v, vlen, ch, len));
        for (k = 0; k < len; k++)
            CHECK(ch[k] != ' ' && ch[k] != '\t');
        if (lh_channel_valid(ch, len, LH_CHANNEL_MAX_LEN)) {
            CHECK(ch[0] != '.' && ch[len - 1] != '.');
            CHECK(memchr(ch, '*', len) == NULL && memchr(ch, '>', len) == NULL);
        }
        CHECK(pos <= end);
    }
    CHECK(pos == end);
}

static void check_one(const char *buf, size_t size, const lh_lhttp_limits_t *lim)
{
    static lh_lhttp_msg_t m, m2;
    const char *reason = NULL, *v;
    size_t i, need, vlen, max_headers;
    char *out;
    int rc;

    rc = lh_lhttp_parse(buf, size, lim, &m, &reason);
    if (rc != 0) {
        CHECK(rc == LH_LHTTP_EINVAL || rc == LH_LHTTP_EHEADERS || rc == LH_LHTTP_ELINE);
        CHECK(reason != NULL && reason[0] != '\0');
        CHECK(lh_lhttp_error_code(rc) == (rc == LH_LHTTP_EINVAL ? 400 : 431));
        return;
    }
    max_headers = lim->max_headers < LH_LHTTP_HEADERS_CAP ? lim->max_headers
                                                          : LH_LHTTP_HEADERS_CAP;
    CHECK(size >= 10 && memcmp(buf, "LHTTP/1.0 ", 10) == 0);
    CHECK(m.command == buf + 10);
    CHECK(lh_lhttp_command_valid(m.command, m.command_len));
    CHECK(10 + m.command_len <= lim->max_line);
    CHECK(m.num_headers <= max_headers);
    for (i = 0; i < m.num_headers; i++) {
        const lh_lhttp_header_t *h = &m.headers[i];

        CHECK(inside(buf, size, h->key, h->key_len));
        CHECK(inside(buf, size, h->value, h->value_len));
        CHECK(h->value >= h->key + h->key_len + 1);
        CHECK(h->key[h->key_len] == ':');
        CHECK((size_t)(h->value + h->value_len - h->key) <= lim->max_line);
        CHECK(lh_lhttp_header_valid(h->key, h->key_len, h->value, h->value_len));
        v = lh_lhttp_header(&m, "x", &vlen);
        CHECK(v == NULL || inside(buf, size, v, vlen));
        check_channels(h->value, h->value_len);
    }
    CHECK(m.body != NULL && inside(buf, size, m.body, m.body_len));
    CHECK(m.body + m.body_len == buf + size);

    /* Round trip: serialize, parse again with the same limits, compare. */
    need = lh_lhttp_serialize(NULL, 0, m.command, m.command_len, m.headers, m.num_headers,
                              m.body, m.body_len);
    CHECK(need <= size + 2 * m.num_headers + 4);
    out = malloc(need ? need : 1);
    CHECK(out != NULL);
    CHECK(lh_lhttp_serialize(out, need, m.command, m.command_len, m.headers, m.num_headers,
                             m.body, m.body_len) == need);
    CHECK(lh_lhttp_parse(out, need, lim, &m2, &reason) == 0);
    CHECK(same(m.command, m.command_len, m2.command, m2.command_len));
    CHECK(m.num_headers == m2.num_headers);
    for (i = 0; i < m.num_headers; i++) {
        CHECK(same(m.headers[i].key, m.headers[i].key_len, m2.headers[i].key,
                   m2.headers[i].key_len));
        CHECK(same(m.headers[i].value, m.headers[i].value_len, m2.headers[i].value,
                   m2.headers[i].value_len));
    }
    CHECK(same(m.body, m.body_len, m2.body, m2.body_len));
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const lh_lhttp_limits_t small = { 4, 40 }, large = { 1000, 1 << 20 };
    /* An exact-size copy, so that reading past the end is caught. */
    char *buf = malloc(size ? size : 1);

    if (buf == NULL)
        return 0;
    if (size > 0)
        memcpy(buf, data, size);
    check_one(buf, size, &small);
    check_one(buf, size, &large);
    free(buf);
    return 0;
}
