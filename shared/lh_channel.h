/*
 * Channel names and channel lists. A channel is 1..max_len bytes of [A-Za-z0-9] and
 * _ - = @ + ~ : ; in dot-separated tokens with no empty token (no leading, trailing or
 * doubled '.'); so no NATS wildcard ('*', '>'), no white space and no way out of the
 * subject prefix. Pure.
 */
#ifndef LH_CHANNEL_H
#define LH_CHANNEL_H

#include "lh_common.h"

#define LH_CHANNEL_MAX_LEN 255 /* hard upper bound of limits.max_channel_bytes */

/* 1 when s[0..len) is a valid channel name no longer than max_len (which is clamped
 * to LH_CHANNEL_MAX_LEN). */
int lh_channel_valid(const char *s, size_t len, size_t max_len);

/*
 * Iterates a space-separated list (runs of spaces and tabs are one separator; leading
 * and trailing spaces ignored). *pos starts at list; each call sets *ch and *ch_len to
 * the next name (never empty) and returns 1, or returns 0 at the end, leaving *ch and
 * *ch_len alone. Does not validate names.
 */
int lh_channel_next(const char **pos, const char *end, const char **ch, size_t *ch_len);

#endif
