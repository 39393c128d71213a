/*
 * Unit tests for the worker's NATS inbox (worker/nats.c), where cnats's delivery thread
 * queues messages for the loop: a message it has no memory to queue is counted, not
 * dropped silently. NATS points at a closed port; the loop is never run.
 *
 * This binary is linked with the failing allocator (lh_failalloc.h, FAILALLOC_TESTS in
 * the Makefile): the inbox's first allocation is made to fail.
 */
#include "lh_test.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nats/nats.h>

#include "lh_config.h"
#include "lh_test_port.h"
#include "lh_failalloc.h"
#include "lh_log.h"
#include "metrics.h"
#include "worker.h"

static natsMsg *msg_new(const char *data)
{
    natsMsg *m = NULL;

    if (natsMsg_Create(&m, "lhttp.room", NULL, data, (int)strlen(data)) != NATS_OK)
        return NULL;
    return m;
}

LH_TEST(a_message_the_inbox_has_no_memory_for_is_counted)
{
    char text[256], err[256];
    lh_config_t *cfg;
    lh_worker_t *w;
    natsMsg *m;

    snprintf(text, sizeof(text),
             "{\"listen\": [\"127.0.0.1:1\"], \"workers\": 1,"
             " \"nats\": {\"servers\": [\"nats://127.0.0.1:%u\"]}}", closed_port());
    cfg = lh_config_parse(text, strlen(text), err, sizeof(err));
    LH_CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    w = lh_worker_new(cfg, 0, NULL, 0, 0, -1);
    LH_CHECK(w != NULL);
    if (w == NULL) {
        lh_config_free(cfg);
        return;
    }
    lh_nats_sync_metrics(w);
    LH_CHECK_INT(lh_ctr->v[LH_M_NATS_DROPPED], 0);

    /* The empty inbox must grow for the first message: that allocation fails. */
    m = msg_new("dropped");
    LH_CHECK(m != NULL);
    lh_failalloc_arm(1);
    LH_CHECK_INT(lh_nats_inbox_put(w, m), -ENOMEM);
    LH_CHECK(lh_failalloc_fired());
    lh_failalloc_disarm();
    lh_nats_sync_metrics(w);
    LH_CHECK_INT(lh_ctr->v[LH_M_NATS_DROPPED], 1);

    /* With memory again the next one is queued, and the count stays. */
    m = msg_new("queued");
    LH_CHECK(m != NULL);
    LH_CHECK_INT(lh_nats_inbox_put(w, m), 0);
    lh_nats_sync_metrics(w);
    LH_CHECK_INT(lh_ctr->v[LH_M_NATS_DROPPED], 1);

    lh_worker_free(w); /* destroys the queued message */
    lh_config_free(cfg);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lh_log_level = LH_LOG_ERR; /* quiet: NATS is unreachable on purpose */
    if (lh_metrics_init(4) < 0) {
        printf("# lh_metrics_init failed\n");
        return 1;
    }
    LH_RUN(a_message_the_inbox_has_no_memory_for_is_counted);
    nats_CloseAndWait(2000); /* cnats's threads and globals, for the leak checker */
    LH_DONE();
}
