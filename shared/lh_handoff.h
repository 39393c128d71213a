/*
 * The connection handoff records: what a retiring worker sends the worker that takes its
 * WebSocket connections over (one SOCK_SEQPACKET datagram per record, a connection's
 * record with its socket in SCM_RIGHTS). Pure: the writer fills a buffer the caller
 * owns, the parser checks every length against the record and returns pointers into it.
 *
 * A record: "LHHO", the format version (u16, LH_HANDOFF_VERSION), the kind (u8), a zero
 * byte, the body's length (u32), the body. Integers are little-endian. Strings are a
 * length (u16 for channel names, u32 otherwise) and the bytes; an absent string has the
 * length 0xffffffff.
 *   'P' prepare: token (u64), started (u8: 1 when the sender published its start marker
 *       on NATS, 0 without NATS), count (u32), the channel names: the channels the
 *       receiver subscribes to in NATS before it takes any connection. A 'P' with no
 *       name ends the list: the receiver then tells the sender it is subscribed, by a
 *       marker through NATS (ordered after every message it will not see), or by 'R'.
 *   'R' ready (receiver to sender, when it has no NATS connection): token (u64).
 *   'C' a connection: id (u64), ms since its last input (u32), flags (u32,
 *       LH_HO_F_*), barrier (u32: the receiver reads nothing from the connection before
 *       the sender's NATS marker with this number came; 0: no wait), peer address (u16 length, bytes), identity (kind u8, refresh sent
 *       u8, exp i64, sub, info, count u32 and the token's channels), the unread input
 *       (u32 length, bytes), the send queue not yet written (u32 length, bytes), the
 *       subscriptions: count (u32), each a channel name, then the digests (u32 count,
 *       u64 each) of the messages the sender delivered on it since the handoff began.
 *   'E' end: the sender has nothing more to hand over.
 * Compatibility rule: a worker accepts only records of its own version; a worker that
 * gets another version refuses the handoff (its peer drains as before a handoff).
 */
#ifndef LH_HANDOFF_H
#define LH_HANDOFF_H

#include "lh_common.h"

#define LH_HANDOFF_VERSION 1
#define LH_HANDOFF_HEADER 12
#define LH_HANDOFF_ABSENT 0xffffffffu

enum { LH_HO_PREPARE = 'P', LH_HO_READY = 'R', LH_HO_CONN = 'C', LH_HO_END = 'E' };

/* Connection flags carried. */
enum {
    LH_HO_F_ECHO = 1u << 0,   /* an echo path */
    LH_HO_F_PINGED = 1u << 1, /* a keep-alive ping is out */
    LH_HO_F_OPENED = 1u << 2  /* an LHTTP connection (on_open ran) */
};

/* A writer into buf[0..cap): every put past cap sets overflow and writes nothing more. */
typedef struct {
    uint8_t *buf;
    size_t len, cap;
    int overflow;
} lh_hw_t;

void lh_hw_init(lh_hw_t *hw, uint8_t *buf, size_t cap, int kind);
void lh_hw_u8(lh_hw_t *hw, uint8_t v);
void lh_hw_u16(lh_hw_t *hw, uint16_t v);
void lh_hw_u32(lh_hw_t *hw, uint32_t v);
void lh_hw_u64(lh_hw_t *hw, uint64_t v);
void lh_hw_bytes(lh_hw_t *hw, const void *p, size_t n);
/* A u32-length string; s NULL: absent. */
void lh_hw_str(lh_hw_t *hw, const char *s, size_t n);
/* A u16-length channel name. */
void lh_hw_name(lh_hw_t *hw, const char *s, size_t n);
/* Writes the body length into the header. Returns the record's length, or 0 when it did
 * not fit in cap. */
size_t lh_hw_finish(lh_hw_t *hw);

/* A list inside a parsed record (channel names, or subscriptions): walked with
 * lh_handoff_next_*, which cannot fail once the parse succeeded. */
typedef struct {
    const uint8_t *p, *end;
    uint32_t n;
} lh_ho_list_t;

typedef struct {
    const char *name;
    size_t len;
    uint32_t nskip;
    const uint8_t *skip; /* nskip little-endian u64 digests */
} lh_ho_sub_t;

typedef struct {
    int kind;
    /* 'P', 'R' */
    uint64_t token;
    uint8_t started;
    lh_ho_list_t chans;
    /* 'C' */
    uint64_t id;
    uint32_t idle_ms, flags, barrier;
    const uint8_t *peer;
    size_t peer_len;
    uint8_t id_kind, refresh_sent;
    int64_t exp;
    const char *sub, *info; /* NULL when absent (not NUL-terminated) */
    size_t sub_len, info_len;
    lh_ho_list_t claims; /* the token's channels (u32-length strings) */
    const uint8_t *in, *out;
    size_t in_len, out_len;
    lh_ho_list_t subs;
} lh_ho_rec_t;

/*
 * Parses the record buf[0..len) (at most max_len bytes). Returns 0 with *r filled
 * (pointers into buf), or LH_PARSE_ERROR with *why set (a constant text): wrong magic or
 * version, a length that runs past the record, trailing bytes, an unknown kind, a
 * channel name of 0 or more than 255 bytes, a record over max_len.
 */
int lh_handoff_parse(const uint8_t *buf, size_t len, size_t max_len, lh_ho_rec_t *r,
                     const char **why);
/* The next channel name of a 'P' record or claim of a 'C' record; 0 at the end. */
int lh_handoff_next_name(lh_ho_list_t *l, const char **s, size_t *n);
int lh_handoff_next_claim(lh_ho_list_t *l, const char **s, size_t *n);
/* The next subscription of a 'C' record; 0 at the end. */
int lh_handoff_next_sub(lh_ho_list_t *l, lh_ho_sub_t *s);
/* Digest i of s. */
uint64_t lh_handoff_skip_at(const lh_ho_sub_t *s, uint32_t i);
/* The digest of a delivered message (the same in every worker and version 1 build). */
uint64_t lh_handoff_digest(const void *data, size_t len);

#endif
