/*
 * libFuzzer target for presence answers from NATS (shared/lh_presence_wire.c): any bytes
 * give either -1 or an answer whose parts lie inside the input and add up to its length;
 * walking its entries as worker/presence.c does never leaves them. Never a crash or an
 * overread.
 */
#include "lh_presence_wire.h"

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
    char *d = malloc(size ? size : 1); /* exactly size bytes: ASan sees any overread */
    lh_pres_answer_t a;

    if (d == NULL)
        return 0;
    if (size)
        memcpy(d, data, size);
    if (lh_pres_answer_parse(d, size, &a) == 0) {
        const char *e = a.entries;
        size_t left = a.ebytes;
        uint64_t sum = 0;

        CHECK(a.users > d && a.users <= d + size);
        CHECK((size_t)(a.users - d) + a.nusers * 8 + a.ebytes == size);
        CHECK(a.entries == a.users + a.nusers * 8);
        CHECK(a.nentries <= a.ebytes && a.nusers <= a.count && a.nentries <= a.count);
        CHECK(a.workers <= LH_PRES_WORKERS_MAX && a.count <= LH_PRES_COUNT_MAX);
        for (size_t k = 0; k < a.nusers; k++) {
            uint64_t h;

            memcpy(&h, a.users + 8 * k, 8);
            sum += h;
        }
        for (size_t k = 0; k < a.nentries; k++) {
            size_t j = lh_pres_entry_len(e, left);

            if (j == 0)
                break;
            CHECK(j <= left && e[0] == '{' && e[j - 1] == '}');
            if (j < left && e[j] == ',')
                j++;
            e += j;
            left -= j;
        }
        (void)sum;
    } else {
        /* The entry walker alone, on the raw bytes. */
        size_t j = lh_pres_entry_len(d, size);

        CHECK(j <= size);
        CHECK(j == 0 || (d[0] == '{' && d[j - 1] == '}'));
    }
    free(d);
    return 0;
}
