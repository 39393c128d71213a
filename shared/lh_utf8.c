/*
 * Incremental UTF-8 validation.
 *
 * State encoding: LH_UTF8_ACCEPT (0) and LH_UTF8_REJECT (1) as in the header; inside a
 * character the state is need | lo << 8 | hi << 16, where need (1..3) is the number of
 * continuation bytes still missing and [lo, hi] is the range the next byte must fall in.
 * The range is narrower than 0x80..0xBF only for the first continuation byte after E0
 * (overlongs), ED (surrogates), F0 (overlongs) and F4 (above U+10FFFF). Since lo >= 0x80,
 * such a state is never 0 or 1, and it carries everything needed to resume on the next
 * call wherever the input was split.
 */
#include "lh_utf8.h"

#include <string.h>

#define CONT(need, lo, hi) ((uint32_t)(need) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)

/* The state after lead byte b: ACCEPT for ASCII, REJECT for bytes that cannot start a
 * character (continuations, C0/C1 overlongs, F5..FF), otherwise the continuation state. */
static inline uint32_t lead_state(uint8_t b)
{
    if (b < 0x80)
        return LH_UTF8_ACCEPT;
    if (b < 0xC2)
        return LH_UTF8_REJECT;
    if (b < 0xE0)
        return CONT(1, 0x80, 0xBF);
    if (b == 0xE0)
        return CONT(2, 0xA0, 0xBF);
    if (b == 0xED)
        return CONT(2, 0x80, 0x9F);
    if (b < 0xF0)
        return CONT(2, 0x80, 0xBF);
    if (b == 0xF0)
        return CONT(3, 0x90, 0xBF);
    if (b < 0xF4)
        return CONT(3, 0x80, 0xBF);
    if (b == 0xF4)
        return CONT(3, 0x80, 0x8F);
    return LH_UTF8_REJECT;
}

/* Feeds one continuation byte to a mid-character state. */
static inline uint32_t cont_step(uint32_t state, uint8_t b)
{
    uint32_t need = state & 0xFF, lo = (state >> 8) & 0xFF, hi = state >> 16;

    if (b < lo || b > hi)
        return LH_UTF8_REJECT;
    if (need == 1)
        return LH_UTF8_ACCEPT;
    return CONT(need - 1, 0x80, 0xBF);
}

uint32_t lh_utf8_validate(uint32_t state, const uint8_t *p, size_t len)
{
    size_t i = 0;

    if (state == LH_UTF8_REJECT)
        return LH_UTF8_REJECT;

    /* Finish a character begun in an earlier call. */
    while (state != LH_UTF8_ACCEPT) {
        if (i == len)
            return state;
        state = cont_step(state, p[i++]);
        if (state == LH_UTF8_REJECT)
            return LH_UTF8_REJECT;
    }

    while (i < len) {
        uint32_t need, lo, hi;

        /* ASCII runs, 8 bytes at a time. */
        while (len - i >= 8) {
            uint64_t w;

            memcpy(&w, p + i, 8);
            if (w & UINT64_C(0x8080808080808080))
                break;
            i += 8;
        }
        while (i < len && p[i] < 0x80)
            i++;
        if (i == len)
            break;

        state = lead_state(p[i++]);
        if (state == LH_UTF8_REJECT)
            return LH_UTF8_REJECT;
        need = state & 0xFF;
        if (len - i < need) {
            /* The character continues past the end of this piece. */
            while (i < len) {
                state = cont_step(state, p[i++]);
                if (state == LH_UTF8_REJECT)
                    return LH_UTF8_REJECT;
            }
            return state;
        }
        /* Whole character available: check it without state updates. */
        lo = (state >> 8) & 0xFF;
        hi = state >> 16;
        if (p[i] < lo || p[i] > hi)
            return LH_UTF8_REJECT;
        if (need >= 2 && (p[i + 1] & 0xC0) != 0x80)
            return LH_UTF8_REJECT;
        if (need == 3 && (p[i + 2] & 0xC0) != 0x80)
            return LH_UTF8_REJECT;
        i += need;
    }
    return LH_UTF8_ACCEPT;
}

int lh_utf8_valid(const uint8_t *p, size_t len)
{
    return lh_utf8_validate(LH_UTF8_ACCEPT, p, len) == LH_UTF8_ACCEPT;
}
