/*
 * libFuzzer target for lh_utf8: validation split at a point taken from the first byte
 * equals whole validation, and both agree with a slow reference decoder.
 */
#include "lh_utf8.h"

#include <stdlib.h>

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c))                                                                        \
            abort();                                                                     \
    } while (0)

/* Decodes each code point the obvious way; 1 when p[0..len) is complete, valid UTF-8. */
static int ref_valid(const uint8_t *p, size_t len)
{
    size_t i = 0, n, k;

    while (i < len) {
        uint32_t cp, min;
        uint8_t c = p[i];

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0)
            n = 2, cp = c & 0x1Fu, min = 0x80;
        else if ((c & 0xF0) == 0xE0)
            n = 3, cp = c & 0x0Fu, min = 0x800;
        else if ((c & 0xF8) == 0xF0)
            n = 4, cp = c & 0x07u, min = 0x10000;
        else
            return 0;
        if (len - i < n)
            return 0;
        for (k = 1; k < n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t whole, split, s;
    size_t cut, i;

    if (size == 0)
        return 0;
    cut = data[0] % (size + 1);
    whole = lh_utf8_validate(LH_UTF8_ACCEPT, data, size);
    split = lh_utf8_validate(lh_utf8_validate(LH_UTF8_ACCEPT, data, cut), data + cut, size - cut);
    CHECK((whole == LH_UTF8_ACCEPT) == (split == LH_UTF8_ACCEPT));
    CHECK((whole == LH_UTF8_REJECT) == (split == LH_UTF8_REJECT));
    CHECK((whole == LH_UTF8_ACCEPT) == ref_valid(data, size));
    CHECK(lh_utf8_valid(data, size) == ref_valid(data, size));

    /* Byte at a time, on short inputs. */
    if (size <= 64) {
        s = LH_UTF8_ACCEPT;
        for (i = 0; i < size; i++)
            s = lh_utf8_validate(s, data + i, 1);
        CHECK((s == LH_UTF8_ACCEPT) == (whole == LH_UTF8_ACCEPT));
        CHECK((s == LH_UTF8_REJECT) == (whole == LH_UTF8_REJECT));
    }
    return 0;
}
