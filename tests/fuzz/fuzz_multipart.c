/*
 * libFuzzer target for multipart messages (shared/lh_multipart.c). The input is either a
 * whole LHTTP message (when it starts with "LHTTP/1.0 "), whose multipart header is
 * checked against its body as lhttpd does, or an offset list up to the first LF followed
 * by a body. For two sets of limits: a failed check gives a one-line printable reason; a
 * passed check gives parts that all parse, lie in order inside the body, end where the
 * next begins (the last at the end of the body), and have valid headers.
 */
#include "lh_lhttp.h"
#include "lh_multipart.h"

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

static long check_one(const char *list, size_t ll, const char *body, size_t bl,
                      const lh_multipart_limits_t *lim)
{
    char why[LH_MULTIPART_REASON_MAX];
    lh_multipart_part_t p;
    const char *prev_end = body;
    long n = lh_multipart_check(list, ll, body, bl, lim, why, sizeof(why));
    size_t wl;

    if (n < 0) {
        CHECK(n == -1);
        wl = strlen(why);
        CHECK(wl > 0 && wl < sizeof(why) - 1);
        for (size_t i = 0; i < wl; i++)
            CHECK(why[i] >= 0x20 && why[i] < 0x7f);
        CHECK(why[wl - 1] != ' ');
        return n;
    }
    CHECK(n >= 1 && (size_t)n <= bl);
    CHECK(lim == NULL || lim->max_parts == 0 || (size_t)n <= lim->max_parts);
    for (long i = 0; i < n; i++) {
        size_t gap;

        CHECK(lh_multipart_part(list, ll, body, bl, (size_t)i, &p) == 0);
        CHECK(p.num_headers <= LH_MULTIPART_HEADERS_MAX);
        CHECK(inside(body, bl, p.body, p.body_len));
        /* Each part starts where the previous one's body ended (the first at the start
         * of the body): with its first header, or with the empty line. */
        if (p.num_headers) {
            CHECK(p.headers[0].key == prev_end);
        } else {
            gap = (size_t)(p.body - prev_end);
            CHECK((gap == 1 && prev_end[0] == '\n') || (gap == 2 && prev_end[0] == '\r' &&
                                                         prev_end[1] == '\n'));
        }
        for (size_t k = 0; k < p.num_headers; k++) {
            const lh_lhttp_header_t *h = &p.headers[k];

            CHECK(inside(body, bl, h->key, h->key_len));
            CHECK(inside(body, bl, h->value, h->value_len));
            CHECK(h->key[h->key_len] == ':');
            CHECK(h->value + h->value_len <= p.body);
            CHECK(lh_lhttp_header_valid(h->key, h->key_len, h->value, h->value_len));
            CHECK(lim == NULL || lim->max_line == 0 ||
                  (size_t)(h->value + h->value_len - h->key) <= lim->max_line);
        }
        CHECK(p.body[-1] == '\n');
        prev_end = p.body + p.body_len;
    }
    CHECK(prev_end == body + bl);
    CHECK(lh_multipart_part(list, ll, body, bl, (size_t)n, &p) == -1);
    return n;
}

static void check_both(const char *list, size_t ll, const char *body, size_t bl)
{
    static const lh_multipart_limits_t small = {4, 16};
    long all = check_one(list, ll, body, bl, NULL);
    long lim = check_one(list, ll, body, bl, &small);

    /* Limits only ever refuse more. */
    CHECK(lim < 0 || lim == all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lh_lhttp_msg_t m;
    /* An exact-size copy, so that reading past the end is caught. */
    char *buf = malloc(size ? size : 1);
    const char *lf, *v;
    size_t vl;

    if (buf == NULL)
        return 0;
    if (size > 0)
        memcpy(buf, data, size);
    if (size >= 10 && memcmp(buf, "LHTTP/1.0 ", 10) == 0) {
        if (lh_lhttp_parse(buf, size, NULL, &m, NULL) == 0 &&
            (v = lh_lhttp_header(&m, "multipart", &vl)) != NULL)
            check_both(v, vl, m.body, m.body_len);
    } else {
        lf = memchr(buf, '\n', size);
        if (lf == NULL)
            check_both(buf, size, buf + size, 0);
        else
            check_both(buf, (size_t)(lf - buf), lf + 1, size - (size_t)(lf - buf) - 1);
    }
    free(buf);
    return 0;
}
