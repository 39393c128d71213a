/*
 * Common definitions for lhttpd's pure code: parser return values and small helpers.
 * Nothing here does I/O.
 */
#ifndef LH_COMMON_H
#define LH_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Parser results: a parser returns bytes consumed (> 0), or one of these. */
#define LH_PARSE_ERROR (-1) /* the input is invalid; an out-parameter says why */
#define LH_PARSE_AGAIN (-2) /* the input is a valid prefix; call again with more */

#define LH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The value of a hexadecimal digit, or -1. */
int lh_hexval(char c);

/* Case-insensitive ASCII comparison of a (len bytes) with the NUL-terminated b. */
int lh_strieq(const char *a, size_t len, const char *b);

/* Writes the n bytes at s into out (cap bytes, NUL-terminated) for quoting a client's
 * bytes in an error text: printable ASCII as is, '"' and '\\' escaped, every other byte
 * as \xHH, so the text is valid UTF-8 and JSON-safe whatever the input. Stops before
 * overflowing (ending with "..." when it cut). Returns out. */
char *lh_printable(char *out, size_t cap, const char *s, size_t n);

#endif
