/*
 * One worker's answer to a presence query, as it travels on NATS (worker/presence.c
 * writes it; the asking worker reads answers from every worker of every node):
 *
 *   "<node: 16 hex digits> <pid> <workers> <count> <users> <entries> <entry bytes>\n"
 *   then <users> distinct user hashes of 8 bytes each,
 *   then <entry bytes> of entries: JSON objects separated by commas.
 *
 * Anything on NATS can answer a query, so the reader trusts nothing: the numbers are
 * decimal without sign, within bounds, and add up to the message's length exactly. Pure.
 */
#ifndef LH_PRESENCE_WIRE_H
#define LH_PRESENCE_WIRE_H

#include "lh_common.h"

#include <stdint.h>

#define LH_PRES_HEAD_MAX 200            /* bytes of the first line, its newline included */
#define LH_PRES_WORKERS_MAX 4096        /* a node's live workers */
#define LH_PRES_COUNT_MAX 1000000000000ull /* connections one worker can report */

typedef struct {
    uint64_t node;
    int pid;
    unsigned workers;
    uint64_t count;
    size_t nusers, nentries, ebytes;
    const char *users;   /* nusers * 8 bytes (not aligned) */
    const char *entries; /* ebytes */
} lh_pres_answer_t;

/* Parses d[0..len) into *a (pointers into d). 0, or -1 when it is not a whole, valid answer. */
int lh_pres_answer_parse(const char *d, size_t len, lh_pres_answer_t *a);

/*
 * The length of the JSON object that e[0..len) starts with: from its '{' to its closing
 * '}' (braces counted outside strings, escapes skipped). 0 when e does not start with '{'
 * or the object does not end within len.
 */
size_t lh_pres_entry_len(const char *e, size_t len);

#endif
