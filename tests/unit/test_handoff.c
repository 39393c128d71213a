/* Unit tests for the connection handoff records (shared/lh_handoff.c). */
#include "lh_test.h"

#include "lh_handoff.h"

/* A 'C' record with two subscriptions (the second with two digests), an identity and a
 * send queue; its length. */
static size_t conn_record(uint8_t *buf, size_t cap)
{
    lh_hw_t hw;

    lh_hw_init(&hw, buf, cap, LH_HO_CONN);
    lh_hw_u64(&hw, 0x1122334455667788ull);
    lh_hw_u32(&hw, 1234);
    lh_hw_u32(&hw, LH_HO_F_OPENED | LH_HO_F_PINGED);
    lh_hw_u32(&hw, 3);
    lh_hw_u16(&hw, 4);
    lh_hw_bytes(&hw, "\x02\x00\x1f\x90", 4);
    lh_hw_u8(&hw, 3);
    lh_hw_u8(&hw, 1);
    lh_hw_u64(&hw, (uint64_t)-5);
    lh_hw_str(&hw, "alice", 5);
    lh_hw_str(&hw, NULL, 0);
    lh_hw_u32(&hw, 2);
    lh_hw_str(&hw, "room.a", 6);
    lh_hw_str(&hw, "room.*", 6);
    lh_hw_u32(&hw, 0);
    lh_hw_u32(&hw, 3);
    lh_hw_bytes(&hw, "\x81\x01x", 3);
    lh_hw_u32(&hw, 2);
    lh_hw_name(&hw, "chat", 4);
    lh_hw_u32(&hw, 0);
    lh_hw_name(&hw, "room.a", 6);
    lh_hw_u32(&hw, 2);
    lh_hw_u64(&hw, 7);
    lh_hw_u64(&hw, 0xffffffffffffffffull);
    return lh_hw_finish(&hw);
}

LH_TEST(conn_round_trip)
{
    uint8_t buf[512];
    size_t n = conn_record(buf, sizeof(buf));
    lh_ho_rec_t r;
    lh_ho_sub_t s;
    const char *why = NULL, *str;
    size_t sl;

    LH_CHECK(n > LH_HANDOFF_HEADER);
    LH_CHECK_INT(lh_handoff_parse(buf, n, 4096, &r, &why), 0);
    LH_CHECK_INT(r.kind, LH_HO_CONN);
    LH_CHECK(r.id == 0x1122334455667788ull);
    LH_CHECK_INT(r.idle_ms, 1234);
    LH_CHECK_INT(r.flags, LH_HO_F_OPENED | LH_HO_F_PINGED);
    LH_CHECK_INT(r.barrier, 3);
    LH_CHECK_INT(r.peer_len, 4);
    LH_CHECK_INT(r.id_kind, 3);
    LH_CHECK_INT(r.refresh_sent, 1);
    LH_CHECK(r.exp == -5);
    LH_CHECK(r.sub_len == 5 && memcmp(r.sub, "alice", 5) == 0);
    LH_CHECK(r.info == NULL);
    LH_CHECK(lh_handoff_next_claim(&r.claims, &str, &sl) && sl == 6 && !memcmp(str, "room.a", 6));
    LH_CHECK(lh_handoff_next_claim(&r.claims, &str, &sl) && sl == 6 && !memcmp(str, "room.*", 6));
    LH_CHECK(!lh_handoff_next_claim(&r.claims, &str, &sl));
    LH_CHECK_INT(r.in_len, 0);
    LH_CHECK(r.out_len == 3 && memcmp(r.out, "\x81\x01x", 3) == 0);
    LH_CHECK(lh_handoff_next_sub(&r.subs, &s));
    LH_CHECK(s.len == 4 && memcmp(s.name, "chat", 4) == 0 && s.nskip == 0);
    LH_CHECK(lh_handoff_next_sub(&r.subs, &s));
    LH_CHECK(s.len == 6 && s.nskip == 2);
    LH_CHECK(lh_handoff_skip_at(&s, 0) == 7);
    LH_CHECK(lh_handoff_skip_at(&s, 1) == 0xffffffffffffffffull);
    LH_CHECK(!lh_handoff_next_sub(&r.subs, &s));
}

LH_TEST(prepare_ready_end)
{
    uint8_t buf[128];
    lh_hw_t hw;
    lh_ho_rec_t r;
    const char *why, *s;
    size_t n, sl;

    lh_hw_init(&hw, buf, sizeof(buf), LH_HO_PREPARE);
    lh_hw_u64(&hw, 42);
    lh_hw_u8(&hw, 1);
    lh_hw_u32(&hw, 2);
    lh_hw_name(&hw, "a", 1);
    lh_hw_name(&hw, "b.c", 3);
    n = lh_hw_finish(&hw);
    LH_CHECK_INT(lh_handoff_parse(buf, n, 4096, &r, &why), 0);
    LH_CHECK(r.kind == LH_HO_PREPARE && r.token == 42 && r.started == 1 && r.chans.n == 2);
    LH_CHECK(lh_handoff_next_name(&r.chans, &s, &sl) && sl == 1 && s[0] == 'a');
    LH_CHECK(lh_handoff_next_name(&r.chans, &s, &sl) && sl == 3 && !memcmp(s, "b.c", 3));
    LH_CHECK(!lh_handoff_next_name(&r.chans, &s, &sl));
    lh_hw_init(&hw, buf, sizeof(buf), LH_HO_READY);
    lh_hw_u64(&hw, 9);
    n = lh_hw_finish(&hw);
    LH_CHECK_INT(lh_handoff_parse(buf, n, 4096, &r, &why), 0);
    LH_CHECK(r.kind == LH_HO_READY && r.token == 9);
    lh_hw_init(&hw, buf, sizeof(buf), LH_HO_END);
    n = lh_hw_finish(&hw);
    LH_CHECK_INT(n, LH_HANDOFF_HEADER);
    LH_CHECK_INT(lh_handoff_parse(buf, n, 4096, &r, &why), 0);
    LH_CHECK_INT(r.kind, LH_HO_END);
}

/* Every truncation of a valid record, and every byte changed in its lengths, is refused
 * or parsed within bounds; none reads past the record (ASan would say). */
LH_TEST(truncated_and_corrupt)
{
    uint8_t buf[512], copy[512];
    size_t n = conn_record(buf, sizeof(buf));
    lh_ho_rec_t r;
    const char *why;

    for (size_t k = 0; k < n; k++) {
        why = NULL;
        memcpy(copy, buf, k);
        LH_CHECK_INT(lh_handoff_parse(copy, k, 4096, &r, &why), LH_PARSE_ERROR);
        LH_CHECK(why != NULL);
    }
    for (size_t k = 0; k < n; k++) {
        memcpy(copy, buf, n);
        copy[k] ^= 0x80;
        if (lh_handoff_parse(copy, n, 4096, &r, &why) == 0 && r.kind == LH_HO_CONN) {
            lh_ho_sub_t s;

            while (lh_handoff_next_sub(&r.subs, &s))
                for (uint32_t i = 0; i < s.nskip; i++)
                    (void)lh_handoff_skip_at(&s, i);
        }
    }
}

LH_TEST(refusals)
{
    uint8_t buf[512];
    size_t n = conn_record(buf, sizeof(buf));
    lh_ho_rec_t r;
    const char *why;

    /* Over max_len. */
    LH_CHECK_INT(lh_handoff_parse(buf, n, n - 1, &r, &why), LH_PARSE_ERROR);
    LH_CHECK(strcmp(why, "record over handoff.max_record_bytes") == 0);
    /* Another version. */
    buf[4] = 2;
    LH_CHECK_INT(lh_handoff_parse(buf, n, 4096, &r, &why), LH_PARSE_ERROR);
    LH_CHECK(strcmp(why, "another handoff format version") == 0);
    buf[4] = 1;
    /* Bad magic, unknown kind. */
    buf[0] = 'X';
    LH_CHECK_INT(lh_handoff_parse(buf, n, 4096, &r, &why), LH_PARSE_ERROR);
    LH_CHECK(strcmp(why, "not a handoff record") == 0);
    buf[0] = 'L';
    buf[6] = 'Z';
    LH_CHECK_INT(lh_handoff_parse(buf, n, 4096, &r, &why), LH_PARSE_ERROR);
    LH_CHECK(strcmp(why, "an unknown handoff record kind") == 0);
    buf[6] = LH_HO_CONN;
    /* A byte after the body. */
    buf[n] = 0;
    buf[8]++;
    LH_CHECK_INT(lh_handoff_parse(buf, n + 1, 4096, &r, &why), LH_PARSE_ERROR);
    LH_CHECK(strcmp(why, "bytes after the end of the record") == 0);
    buf[8]--;
    LH_CHECK_INT(lh_handoff_parse(buf, n, 4096, &r, &why), 0);
}

LH_TEST(writer_bounds)
{
    uint8_t buf[20];
    lh_hw_t hw;

    lh_hw_init(&hw, buf, sizeof(buf), LH_HO_PREPARE);
    lh_hw_u64(&hw, 1);
    LH_CHECK(!hw.overflow);
    lh_hw_u32(&hw, 1); /* 24 > 20 */
    LH_CHECK(hw.overflow);
    LH_CHECK_INT(lh_hw_finish(&hw), 0);
    /* A channel name of 0 or over 255 bytes cannot be written. */
    {
        uint8_t big[512];
        char name[300];

        memset(name, 'a', sizeof(name));
        lh_hw_init(&hw, big, sizeof(big), LH_HO_PREPARE);
        lh_hw_name(&hw, name, 256);
        LH_CHECK(hw.overflow);
        lh_hw_init(&hw, big, sizeof(big), LH_HO_PREPARE);
        lh_hw_name(&hw, name, 0);
        LH_CHECK(hw.overflow);
    }
}

LH_TEST(digest_stable)
{
    /* The same bytes give the same digest on both sides; close inputs differ. */
    LH_CHECK(lh_handoff_digest("seq 1", 5) == lh_handoff_digest("seq 1", 5));
    LH_CHECK(lh_handoff_digest("seq 1", 5) != lh_handoff_digest("seq 2", 5));
    LH_CHECK(lh_handoff_digest("", 0) != lh_handoff_digest("\0", 1));
}

int main(void)
{
    LH_RUN(conn_round_trip);
    LH_RUN(prepare_ready_end);
    LH_RUN(truncated_and_corrupt);
    LH_RUN(refusals);
    LH_RUN(writer_bounds);
    LH_RUN(digest_stable);
    LH_DONE();
}
