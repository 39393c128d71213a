/*
 * The connection handoff records (see lh_handoff.h). Pure: no I/O, no allocation.
 */
#include "lh_handoff.h"

#include <string.h>

void lh_hw_init(lh_hw_t *hw, uint8_t *buf, size_t cap, int kind)
{
    hw->buf = buf;
    hw->len = 0;
    hw->cap = cap;
    hw->overflow = 0;
    lh_hw_bytes(hw, "LHHO", 4);
    lh_hw_u16(hw, LH_HANDOFF_VERSION);
    lh_hw_u8(hw, (uint8_t)kind);
    lh_hw_u8(hw, 0);
    lh_hw_u32(hw, 0); /* the body length, set by lh_hw_finish */
}

void lh_hw_bytes(lh_hw_t *hw, const void *p, size_t n)
{
    if (hw->overflow || n > hw->cap - hw->len) {
        hw->overflow = 1;
        return;
    }
    if (n > 0)
        memcpy(hw->buf + hw->len, p, n);
    hw->len += n;
}

static void put_le(lh_hw_t *hw, uint64_t v, unsigned n)
{
    uint8_t b[8];

    for (unsigned i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    lh_hw_bytes(hw, b, n);
}

void lh_hw_u8(lh_hw_t *hw, uint8_t v)
{
    put_le(hw, v, 1);
}

void lh_hw_u16(lh_hw_t *hw, uint16_t v)
{
    put_le(hw, v, 2);
}

void lh_hw_u32(lh_hw_t *hw, uint32_t v)
{
    put_le(hw, v, 4);
}

void lh_hw_u64(lh_hw_t *hw, uint64_t v)
{
    put_le(hw, v, 8);
}

void lh_hw_str(lh_hw_t *hw, const char *s, size_t n)
{
    if (s == NULL) {
        lh_hw_u32(hw, LH_HANDOFF_ABSENT);
        return;
    }
    if (n >= LH_HANDOFF_ABSENT) {
        hw->overflow = 1;
        return;
    }
    lh_hw_u32(hw, (uint32_t)n);
    lh_hw_bytes(hw, s, n);
}

void lh_hw_name(lh_hw_t *hw, const char *s, size_t n)
{
    if (n == 0 || n > 255) {
        hw->overflow = 1;
        return;
    }
    lh_hw_u16(hw, (uint16_t)n);
    lh_hw_bytes(hw, s, n);
}

size_t lh_hw_finish(lh_hw_t *hw)
{
    size_t body = hw->len - LH_HANDOFF_HEADER;

    if (hw->overflow || hw->len < LH_HANDOFF_HEADER || body > UINT32_MAX)
        return 0;
    for (unsigned i = 0; i < 4; i++)
        hw->buf[8 + i] = (uint8_t)(body >> (8 * i));
    return hw->len;
}

/* ---- Parsing --------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
    int bad;
} rd_t;

static uint64_t get_le(rd_t *r, unsigned n)
{
    uint64_t v = 0;

    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return 0;
    }
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    return v;
}

static const uint8_t *get_bytes(rd_t *r, size_t n)
{
    const uint8_t *p = r->p;

    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    r->p += n;
    return p;
}

/* A u32-length string, or absent (*s NULL). */
static void get_str(rd_t *r, const char **s, size_t *n)
{
    uint32_t l = (uint32_t)get_le(r, 4);

    *s = NULL;
    *n = 0;
    if (r->bad || l == LH_HANDOFF_ABSENT)
        return;
    *s = (const char *)get_bytes(r, l);
    *n = *s ? l : 0;
}

static void get_name(rd_t *r, const char **s, size_t *n)
{
    uint16_t l = (uint16_t)get_le(r, 2);

    if (l == 0 || l > 255)
        r->bad = 1;
    *s = (const char *)get_bytes(r, l);
    *n = *s ? l : 0;
}

/* Skips a list of count entries (each checked by one call of each), recording it. */
static void get_list(rd_t *r, lh_ho_list_t *l, int kind)
{
    uint32_t n = (uint32_t)get_le(r, 4);
    const char *s;
    size_t sl;

    l->p = r->p;
    l->n = n;
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        if (kind == 'n') {
            get_name(r, &s, &sl);
        } else if (kind == 's') {
            get_str(r, &s, &sl);
            if (s == NULL)
                r->bad = 1; /* a claim is never absent */
        } else {
            uint32_t k;

            get_name(r, &s, &sl);
            k = (uint32_t)get_le(r, 4);
            if (k > (size_t)(r->end - r->p) / 8)
                r->bad = 1;
            else
                get_bytes(r, (size_t)k * 8);
        }
    }
    l->end = r->p;
}

int lh_handoff_parse(const uint8_t *buf, size_t len, size_t max_len, lh_ho_rec_t *out,
                     const char **why)
{
    rd_t r = {buf, buf + len, 0};
    uint32_t body;

    memset(out, 0, sizeof(*out));
    if (len > max_len) {
        *why = "record over handoff.max_record_bytes";
        return LH_PARSE_ERROR;
    }
    if (len < LH_HANDOFF_HEADER || memcmp(buf, "LHHO", 4) != 0) {
        *why = "not a handoff record";
        return LH_PARSE_ERROR;
    }
    r.p += 4;
    if (get_le(&r, 2) != LH_HANDOFF_VERSION) {
        *why = "another handoff format version";
        return LH_PARSE_ERROR;
    }
    out->kind = (int)get_le(&r, 1);
    get_le(&r, 1);
    body = (uint32_t)get_le(&r, 4);
    if (body != len - LH_HANDOFF_HEADER) {
        *why = "the record's length does not match its header";
        return LH_PARSE_ERROR;
    }
    switch (out->kind) {
    case LH_HO_PREPARE:
        out->token = get_le(&r, 8);
        out->started = (uint8_t)get_le(&r, 1);
        get_list(&r, &out->chans, 'n');
        break;
    case LH_HO_CONN:
        out->id = get_le(&r, 8);
        out->idle_ms = (uint32_t)get_le(&r, 4);
        out->flags = (uint32_t)get_le(&r, 4);
        out->barrier = (uint32_t)get_le(&r, 4);
        out->peer_len = (size_t)get_le(&r, 2);
        out->peer = get_bytes(&r, out->peer_len);
        out->id_kind = (uint8_t)get_le(&r, 1);
        out->refresh_sent = (uint8_t)get_le(&r, 1);
        out->exp = (int64_t)get_le(&r, 8);
        get_str(&r, &out->sub, &out->sub_len);
        get_str(&r, &out->info, &out->info_len);
        get_list(&r, &out->claims, 's');
        out->in_len = (size_t)get_le(&r, 4);
        out->in = get_bytes(&r, out->in_len);
        out->out_len = (size_t)get_le(&r, 4);
        out->out = get_bytes(&r, out->out_len);
        get_list(&r, &out->subs, 'S');
        break;
    case LH_HO_READY:
        out->token = get_le(&r, 8);
        break;
    case LH_HO_END:
        break;
    default:
        *why = "an unknown handoff record kind";
        return LH_PARSE_ERROR;
    }
    if (r.bad) {
        *why = "a length runs past the end of the record";
        return LH_PARSE_ERROR;
    }
    if (r.p != r.end) {
        *why = "bytes after the end of the record";
        return LH_PARSE_ERROR;
    }
    return 0;
}

int lh_handoff_next_name(lh_ho_list_t *l, const char **s, size_t *n)
{
    rd_t r = {l->p, l->end, 0};

    if (l->n == 0)
        return 0;
    get_name(&r, s, n);
    l->p = r.p;
    l->n--;
    return !r.bad;
}

int lh_handoff_next_claim(lh_ho_list_t *l, const char **s, size_t *n)
{
    rd_t r = {l->p, l->end, 0};

    if (l->n == 0)
        return 0;
    get_str(&r, s, n);
    l->p = r.p;
    l->n--;
    return !r.bad && *s != NULL;
}

int lh_handoff_next_sub(lh_ho_list_t *l, lh_ho_sub_t *s)
{
    rd_t r = {l->p, l->end, 0};

    if (l->n == 0)
        return 0;
    get_name(&r, &s->name, &s->len);
    s->nskip = (uint32_t)get_le(&r, 4);
    s->skip = get_bytes(&r, (size_t)s->nskip * 8);
    l->p = r.p;
    l->n--;
    return !r.bad;
}

uint64_t lh_handoff_skip_at(const lh_ho_sub_t *s, uint32_t i)
{
    rd_t r = {s->skip + (size_t)i * 8, s->skip + (size_t)s->nskip * 8, 0};

    return i < s->nskip ? get_le(&r, 8) : 0;
}

uint64_t lh_handoff_digest(const void *data, size_t len)
{
    /* FNV-1a, 64 bits, then a final mix: a stable function both sides compute. */
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ len;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}
