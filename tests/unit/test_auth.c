/*
 * Unit tests for worker/auth.c and the rules in pubsub.c: the namespace decisions for
 * every rule and edge of a name (owner prefixes, the default namespace, unlisted
 * namespaces), identities from a token's claims and from a webhook, the user id's
 * limits, and messages through dispatch: all-or-nothing lists, the subscribers rule with
 * a subscribe in the same message, stamp_user replacing a forged sender, and a
 * subscription token never delivered.
 */
#include "lh_test.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nats/nats.h>

#include "lh_config.h"
#include "lh_jwt.h"
#include "lh_log.h"
#include "metrics.h"
#include "worker.h"
#include "worker_fixture.h"

#define LH_CHECK_STR(a, b) LH_CHECK(strcmp((a), (b)) == 0)

static const char namespaces[] =
    ", \"namespaces\": {"
    "  \"\": {\"subscribe\": \"owner\", \"publish\": \"any\"},"
    "  \"user\": {\"subscribe\": \"owner\", \"publish\": \"none\"},"
    "  \"chat\": {\"subscribe\": \"authenticated\", \"publish\": \"subscribers\","
    "            \"stamp_user\": true},"
    "  \"feed\": {\"subscribe\": \"token\", \"publish\": \"authenticated\"},"
    "  \"ops\": {\"subscribe\": \"webhook\", \"publish\": \"webhook\"}},"
    " \"webhooks\": {\"subscribe\": \"http://127.0.0.1:1/s\","
    "                \"publish\": \"http://127.0.0.1:1/p\"}";

static int start(fixture_t *f, size_t n)
{
    if (fixture_start_cfg(f, "", namespaces) < 0 || fixture_add(f, n) < 0) {
        LH_CHECK(0);
        fixture_stop(f);
        return -1;
    }
    return 0;
}

static int may_sub(lh_conn_t *c, const char *ch, const lh_jwt_claims_t *st)
{
    char why[256];

    return lh_auth_may_subscribe(c->w->auth, c, ch, strlen(ch), st, why, sizeof(why));
}

static int may_pub(lh_conn_t *c, const char *ch, int subscribed)
{
    char why[256];

    return lh_auth_may_publish(c->w->auth, c, ch, strlen(ch), subscribed, why, sizeof(why));
}

/* A token identity for user sub with the channels claim chans (NULL-terminated). */
static int set_token(lh_conn_t *c, const char *sub, const char *const *chans)
{
    lh_jwt_claims_t cl;
    size_t n = 0;

    memset(&cl, 0, sizeof(cl));
    while (chans && chans[n])
        n++;
    cl.sub = strdup(sub);
    cl.channels = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        cl.channels[i] = strdup(chans[i]);
    cl.nchannels = n;
    return lh_auth_set_token(c, &cl);
}

LH_TEST(owner_rule_edges)
{
    fixture_t f;
    lh_conn_t *c;

    if (start(&f, 2) < 0)
        return;
    c = f.conns[0];
    LH_CHECK_INT(set_token(c, "42", NULL), 0);
    LH_CHECK_INT(may_sub(c, "user.42", NULL), LH_PERM_ALLOW);
    LH_CHECK_INT(may_sub(c, "user.42.inbox", NULL), LH_PERM_ALLOW);
    LH_CHECK_INT(may_sub(c, "user.420", NULL), LH_PERM_DENY);  /* not a prefix match */
    LH_CHECK_INT(may_sub(c, "user.4", NULL), LH_PERM_DENY);
    LH_CHECK_INT(may_sub(c, "user.43", NULL), LH_PERM_DENY);
    LH_CHECK_INT(may_sub(c, "users.42", NULL), LH_PERM_ALLOW); /* namespace "users": unlisted */
    /* The default namespace's owner rule: the channel named as the user. */
    LH_CHECK_INT(may_sub(c, "42", NULL), LH_PERM_ALLOW);
    LH_CHECK_INT(may_sub(c, "43", NULL), LH_PERM_DENY);
    /* Anonymous: nobody's owner. */
    LH_CHECK_INT(may_sub(f.conns[1], "user.42", NULL), LH_PERM_DENY);
    LH_CHECK_STR(lh_auth_user(f.conns[1]), "");
    fixture_stop(&f);
}

LH_TEST(authenticated_token_and_webhook_rules)
{
    static const char *const chans[] = {"feed.a", "feed.b.c", NULL};
    fixture_t f;
    lh_conn_t *c, *anon;
    lh_jwt_claims_t st;

    if (start(&f, 2) < 0)
        return;
    c = f.conns[0];
    anon = f.conns[1];
    LH_CHECK_INT(set_token(c, "u1", chans), 0);
    LH_CHECK_INT(may_sub(c, "chat.room", NULL), LH_PERM_ALLOW);
    LH_CHECK_INT(may_sub(anon, "chat.room", NULL), LH_PERM_DENY);
    LH_CHECK_INT(may_sub(c, "feed.a", NULL), LH_PERM_ALLOW);
    LH_CHECK_INT(may_sub(c, "feed.b.c", NULL), LH_PERM_ALLOW);
    LH_CHECK_INT(may_sub(c, "feed.b", NULL), LH_PERM_DENY); /* listed exactly, no prefix */
    LH_CHECK_INT(may_sub(anon, "feed.a", NULL), LH_PERM_DENY);
    /* A subscription token lists it. */
    memset(&st, 0, sizeof(st));
    st.channels = (char *[]){"feed.z"};
    st.nchannels = 1;
    LH_CHECK_INT(may_sub(anon, "feed.z", &st), LH_PERM_ALLOW);
    LH_CHECK_INT(may_sub(anon, "feed.y", &st), LH_PERM_DENY);
    LH_CHECK_INT(may_sub(c, "ops.x", NULL), LH_PERM_WEBHOOK);
    LH_CHECK_INT(may_pub(c, "ops.x", 0), LH_PERM_WEBHOOK);
    LH_CHECK_INT(may_pub(anon, "feed.a", 1), LH_PERM_DENY);
    LH_CHECK_INT(may_pub(c, "feed.a", 0), LH_PERM_ALLOW);
    LH_CHECK_INT(may_pub(c, "user.u1", 1), LH_PERM_DENY); /* none: the server only */
    LH_CHECK_INT(may_pub(c, "chat.room", 0), LH_PERM_DENY);
    LH_CHECK_INT(may_pub(c, "chat.room", 1), LH_PERM_ALLOW);
    LH_CHECK_INT(may_pub(anon, "other.x", 0), LH_PERM_ALLOW);
    LH_CHECK_INT(lh_auth_stamps(c->w->auth, "chat.room", 9), 1);
    LH_CHECK_INT(lh_auth_stamps(c->w->auth, "feed.a", 6), 0);
    fixture_stop(&f);
}

LH_TEST(user_ids_and_webhook_identity)
{
    fixture_t f;
    char big[LH_USER_MAX + 2];

    if (start(&f, 1) < 0)
        return;
    LH_CHECK_INT(lh_auth_user_valid("42", 2), 1);
    LH_CHECK_INT(lh_auth_user_valid("", 0), 1);
    LH_CHECK_INT(lh_auth_user_valid("a\r\nsender:x", 12), 0);
    LH_CHECK_INT(lh_auth_user_valid("a\0b", 3), 0);
    LH_CHECK_INT(lh_auth_user_valid(" a", 2), 0);
    memset(big, 'u', sizeof(big));
    LH_CHECK_INT(lh_auth_user_valid(big, LH_USER_MAX), 1);
    LH_CHECK_INT(lh_auth_user_valid(big, LH_USER_MAX + 1), 0);
    LH_CHECK_INT(lh_auth_set_user(f.conns[0], "alice", 5, "{\"n\":1}"), 0);
    LH_CHECK_STR(lh_auth_user(f.conns[0]), "alice");
    LH_CHECK_STR(lh_auth_info(f.conns[0]), "{\"n\":1}");
    LH_CHECK_INT(lh_auth_kind(f.conns[0]), LH_ID_WEBHOOK);
    LH_CHECK_INT(lh_auth_expires(f.conns[0]), 0);
    fixture_stop(&f);
}

/* Reads what peer received (whole frames are small here) into buf; the payloads' text. */
static size_t drain(int peer, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t r;

    while (n < cap - 1 && (r = read(peer, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    /* Frames from the server are unmasked text: the payloads read as text, with their
     * 2-byte headers between them; replace the header bytes so strstr works. */
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = '.';
    return n;
}

static void send_msg(lh_conn_t *c, const char *text)
{
    size_t n = strlen(text);
    uint8_t *copy = malloc(n);

    memcpy(copy, text, n);
    lh_dispatch_message(c, copy, n, 0);
    free(copy);
    lh_worker_end_pass(c->w);
}

LH_TEST(messages_through_the_rules)
{
    fixture_t f;
    lh_conn_t *pub, *sub;
    char out[8192];

    if (start(&f, 2) < 0)
        return;
    pub = f.conns[0];
    sub = f.conns[1];
    LH_CHECK_INT(set_token(pub, "p", NULL), 0);
    LH_CHECK_INT(set_token(sub, "s", NULL), 0);
    send_msg(sub, "LHTTP/1.0 x\r\nsubscribe:chat.r\r\n\r\n");
    LH_CHECK_INT(sub->nsubs, 1);
    /* Not subscribed: the subscribers rule refuses, nothing reaches sub. */
    send_msg(pub, "LHTTP/1.0 x\r\npublish:chat.r\r\n\r\nnope");
    drain(f.peers[0], out, sizeof(out));
    LH_CHECK(strstr(out, "code:403") != NULL);
    LH_CHECK(strstr(out, "namespace \"chat\" takes messages from its subscribers only") != NULL);
    drain(f.peers[1], out, sizeof(out));
    LH_CHECK(strstr(out, "nope") == NULL);
    /* Subscribe and publish in one message: allowed; the forged sender is replaced. */
    send_msg(pub, "LHTTP/1.0 x\r\nsubscribe:chat.r\r\npublish:chat.r\r\nsender:s\r\n\r\nhi");
    drain(f.peers[1], out, sizeof(out));
    LH_CHECK(strstr(out, "sender:p\r\n\r\nhi") != NULL);
    LH_CHECK(strstr(out, "sender:s") == NULL);
    /* All or nothing: one refused channel, nothing subscribed, nothing published. */
    send_msg(pub, "LHTTP/1.0 x\r\nsubscribe:chat.b user.q\r\npublish:chat.r\r\n\r\nmixed");
    LH_CHECK_INT(pub->nsubs, 1);
    drain(f.peers[1], out, sizeof(out));
    LH_CHECK(strstr(out, "mixed") == NULL);
    drain(f.peers[0], out, sizeof(out));
    LH_CHECK(strstr(out, "not allowed to subscribe to \"user.q\"") != NULL);
    /* An unsubscribe in the same message counts too. */
    send_msg(pub, "LHTTP/1.0 x\r\nunsubscribe:chat.r\r\npublish:chat.r\r\n\r\ngone");
    drain(f.peers[1], out, sizeof(out));
    LH_CHECK(strstr(out, "gone") == NULL);
    LH_CHECK_INT(pub->nsubs, 1); /* refused as a whole: still subscribed */
    fixture_stop(&f);
}

LH_TEST(subscription_token_is_never_delivered)
{
    fixture_t f;
    lh_conn_t *a, *b;
    char out[8192];

    if (start(&f, 2) < 0)
        return;
    a = f.conns[0];
    b = f.conns[1];
    send_msg(b, "LHTTP/1.0 x\r\nsubscribe:other.c\r\n\r\n");
    /* An invalid subscription token refuses with 401 (there are no keys here). */
    send_msg(a, "LHTTP/1.0 x\r\nsubscribe:other.d\r\nsubscribe-token:a.b.c\r\n"
                "publish:other.c\r\n\r\nbody");
    drain(f.peers[0], out, sizeof(out));
    LH_CHECK(strstr(out, "code:401") != NULL);
    drain(f.peers[1], out, sizeof(out));
    LH_CHECK(strstr(out, "body") == NULL);
    /* Without subscribe, the header is not looked at, but never travels either. */
    send_msg(a, "LHTTP/1.0 x\r\nsubscribe-token:secret\r\npublish:other.c\r\n\r\nbody2");
    drain(f.peers[1], out, sizeof(out));
    LH_CHECK(strstr(out, "body2") != NULL);
    LH_CHECK(strstr(out, "secret") == NULL);
    fixture_stop(&f);
}

LH_TEST(auth_command_without_keys_and_pending_connections)
{
    fixture_t f;
    char out[8192];

    if (start(&f, 1) < 0)
        return;
    send_msg(f.conns[0], "LHTTP/1.0 auth\r\n\r\n");
    drain(f.peers[0], out, sizeof(out));
    LH_CHECK(strstr(out, "code:400") != NULL);
    send_msg(f.conns[0], "LHTTP/1.0 auth\r\ntoken:x.y.z\r\n\r\n");
    drain(f.peers[0], out, sizeof(out));
    LH_CHECK(strstr(out, "code:401") != NULL);
    LH_CHECK_STR(lh_auth_user(f.conns[0]), "");
    fixture_stop(&f);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lh_log_level = LH_LOG_ERR;
    lh_builtin_register();
    lh_pubsub_register();
    (void)fixture_begin; /* the fixture's helpers this file does not use */
    (void)fill_socket;
    LH_RUN(owner_rule_edges);
    LH_RUN(authenticated_token_and_webhook_rules);
    LH_RUN(user_ids_and_webhook_identity);
    LH_RUN(messages_through_the_rules);
    LH_RUN(subscription_token_is_never_delivered);
    LH_RUN(auth_command_without_keys_and_pending_connections);
    nats_CloseAndWait(2000);
    LH_DONE();
}
