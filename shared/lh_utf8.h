/*
 * Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, max U+10FFFF).
 * Pure; the state lets a sequence split across WebSocket fragments be checked.
 */
#ifndef LH_UTF8_H
#define LH_UTF8_H

#include "lh_common.h"

#define LH_UTF8_ACCEPT 0u  /* at a character boundary, everything valid so far */
#define LH_UTF8_REJECT 1u  /* invalid; stays invalid */

/*
 * Feeds p[0..len) to the validator in state (start with LH_UTF8_ACCEPT) and returns the
 * new state: LH_UTF8_ACCEPT, LH_UTF8_REJECT, or another value meaning "inside a
 * character, valid so far" (that value encodes all that is needed to resume, so the
 * input may be split anywhere). state must be LH_UTF8_ACCEPT or a value returned by this
 * function. Fast path for ASCII runs.
 */
uint32_t lh_utf8_validate(uint32_t state, const uint8_t *p, size_t len);

/* 1 when p[0..len) is complete, valid UTF-8. */
int lh_utf8_valid(const uint8_t *p, size_t len);

#endif
