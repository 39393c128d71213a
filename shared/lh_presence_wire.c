/* A presence answer from NATS, read without trusting it: see lh_presence_wire.h. */
#include "lh_presence_wire.h"

#include <string.h>

/* Reads an unsigned decimal number ending at a space (or, when last, a newline) from
 * *p (before end); at most max. 0, or -1. */
static int number(const char **p, const char *end, char stop, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;

    if (s >= end || *s < '0' || *s > '9')
        return -1;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (v > (max - (uint64_t)(*s - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (s >= end || *s != stop)
        return -1;
    *p = s + 1;
    *out = v;
    return 0;
}

int lh_pres_answer_parse(const char *d, size_t len, lh_pres_answer_t *a)
{
    const char *nl = memchr(d, '\n', len < LH_PRES_HEAD_MAX ? len : LH_PRES_HEAD_MAX), *p = d;
    uint64_t node = 0, v[6];
    static const uint64_t max[6] = {0x7fffffff, LH_PRES_WORKERS_MAX, LH_PRES_COUNT_MAX,
                                    SIZE_MAX / 8, SIZE_MAX, SIZE_MAX};
    size_t rest;

    if (nl == NULL || nl - d < 17 || d[16] != ' ')
        return -1;
    for (int i = 0; i < 16; i++) {
        char c = d[i];
        int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

        if (x < 0)
            return -1;
        node = node << 4 | (uint64_t)x;
    }
    p = d + 17;
    for (int i = 0; i < 6; i++)
        if (number(&p, nl + 1, i < 5 ? ' ' : '\n', max[i], &v[i]) < 0)
            return -1;
    if (p != nl + 1)
        return -1;
    rest = len - (size_t)(p - d);
    /* users * 8 + entry bytes == rest, without overflowing on the way. */
    if (v[3] > rest / 8 || v[5] != rest - (size_t)v[3] * 8)
        return -1;
    if (v[4] > v[5] || (v[5] > 0 && v[4] == 0) || v[4] > v[2] || v[3] > v[2])
        return -1; /* entries: each at least 1 byte; no more entries or users than connections */
    a->node = node;
    a->pid = (int)v[0];
    a->workers = (unsigned)v[1];
    a->count = v[2];
    a->nusers = (size_t)v[3];
    a->nentries = (size_t)v[4];
    a->ebytes = (size_t)v[5];
    a->users = p;
    a->entries = p + a->nusers * 8;
    return 0;
}

size_t lh_pres_entry_len(const char *e, size_t len)
{
    int depth = 0, str = 0;

    if (len == 0 || e[0] != '{')
        return 0;
    for (size_t j = 0; j < len; j++) {
        char ch = e[j];

        if (str) {
            if (ch == '\\')
                j++; /* the escaped byte; past len ends the loop: not whole */
            else if (ch == '"')
                str = 0;
        } else if (ch == '"') {
            str = 1;
        } else if (ch == '{') {
            depth++;
        } else if (ch == '}' && --depth == 0) {
            return j + 1;
        }
    }
    return 0;
}
