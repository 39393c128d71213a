/*
 * Multipart LHTTP messages: a `multipart: o1 o2 ...` header lists byte offsets into the
 * body, and each offset starts a part that runs to the next offset (or the end of the
 * body). A part is header lines, an empty line, and the part's body. The grammar is in
 * PROTOCOL.md ("Multipart messages").
 *
 * Pure and zero-copy, like the LHTTP codec: nothing here allocates, logs or keeps state;
 * a parsed part points into the caller's body. The offset list is scanned again on every
 * call instead of being stored, so a message needs no memory per part.
 */
#ifndef LH_MULTIPART_H
#define LH_MULTIPART_H

#include "lh_common.h"
#include "lh_lhttp.h"

/* Most headers in one part (lhttpd.h's LH_PART_HEADERS_MAX is the same number). */
#define LH_MULTIPART_HEADERS_MAX 32
/* Room for any reason lh_multipart_check writes. */
#define LH_MULTIPART_REASON_MAX 160

typedef struct {
    size_t max_parts; /* limits.max_multipart_parts; 0 means no limit */
    size_t max_line;  /* longest part header line without its line end; 0 means no limit */
} lh_multipart_limits_t;

typedef struct {
    lh_lhttp_header_t headers[LH_MULTIPART_HEADERS_MAX]; /* keys and values point into body */
    size_t num_headers;
    const char *body; /* the part's body, inside the message body */
    size_t body_len;
} lh_multipart_part_t;

/*
 * Validates the value of a multipart header (list, list_len bytes) against the message
 * body: every offset, and the header block of every part. Use it once per message, before
 * anything reads a part. Returns the number of parts (1 or more), or -1 with a one-line,
 * NUL-terminated reason in reason[0..reasonlen) (LH_MULTIPART_REASON_MAX is always
 * enough) that names the offset or part at fault. lim NULL means no limits. reason may
 * be NULL.
 */
long lh_multipart_check(const char *list, size_t list_len, const char *body, size_t body_len,
                        const lh_multipart_limits_t *lim, char *reason, size_t reasonlen);

/*
 * Fills out with part i (0-based) of a message whose list passed lh_multipart_check.
 * Returns 0, or -1 when i is out of range or the list or part is invalid (never after a
 * successful check with the same arguments). Costs one scan of the list and of the
 * part's header block; nothing is copied.
 */
int lh_multipart_part(const char *list, size_t list_len, const char *body, size_t body_len,
                      size_t i, lh_multipart_part_t *out);

#endif
