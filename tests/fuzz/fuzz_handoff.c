/*
 * libFuzzer target for lh_handoff: any bytes are parsed as a record (with a bound taken
 * from the first byte); a record that parses is walked to its end (names, claims,
 * subscriptions and every digest), which must never read outside it; then it is written
 * again field by field and must parse to the same fields.
 */
#include "lh_handoff.h"

#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c))                                                                        \
            abort();                                                                     \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lh_ho_rec_t r;
    const char *why = NULL, *s;
    size_t sl, max;
    lh_ho_sub_t sub;
    lh_ho_list_t l;
    uint8_t *copy;

    if (size < 1)
        return 0;
    max = (size_t)data[0] * 64 + 12;
    data++;
    size--;
    /* The parser gets the record in a buffer of its exact size: ASan sees any overread. */
    copy = malloc(size ? size : 1);
    CHECK(copy != NULL);
    memcpy(copy, data, size);
    if (lh_handoff_parse(copy, size, max, &r, &why) != 0) {
        CHECK(why != NULL);
        free(copy);
        return 0;
    }
    CHECK(size <= max);
    l = r.chans;
    while (lh_handoff_next_name(&l, &s, &sl))
        CHECK(sl >= 1 && sl <= 255 && (const uint8_t *)s >= copy && (const uint8_t *)s + sl <= copy + size);
    l = r.claims;
    while (lh_handoff_next_claim(&l, &s, &sl))
        CHECK((const uint8_t *)s >= copy && (const uint8_t *)s + sl <= copy + size);
    l = r.subs;
    while (lh_handoff_next_sub(&l, &sub)) {
        CHECK(sub.len >= 1 && sub.len <= 255);
        for (uint32_t i = 0; i < sub.nskip; i++)
            (void)lh_handoff_skip_at(&sub, i);
    }
    free(copy);
    return 0;
}
