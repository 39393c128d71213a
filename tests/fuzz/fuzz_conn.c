/*
 * libFuzzer target for the connection layer: an input's bytes reach a real worker
 * connection through a socketpair, in chunks the input chooses, so the read path,
 * lh_http_input, lh_ws_input, dispatch, pub/sub (subscribe, publish to itself), the
 * echo path and the send queue all run as they do for a client, state carried from one
 * read to the next. The pure-parser targets cannot reach that state; the use-after-free
 * bugs found in the past lived there.
 *
 * Input: byte 0 chooses the opening (bit 0: a valid upgrade to the LHTTP path is sent
 * first, bit 1: to the echo path instead), whether the peer reads what the server sends
 * (bit 2 set: it never does, so the send queue fills and the 4008 path runs) and the
 * chunk size (bits 4-7: 1, 2, 3, 7, 16, 61, 256, 1024, 4096 or all at once); bit 3 puts
 * the connection on a TLS listener (a P-256 certificate made at start), so the bytes go
 * through the TLS engine and conn.c's TLS read and write paths (no upgrade is sent
 * first then: it would be plain text); the rest is what the client sends. Limits are
 * small so that they are crossed often.
 */
#include "worker.h"

#include <errno.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "lh_log.h"
#include "metrics.h"

static lh_worker_t *w;
static lh_config_t *cfg;
static lh_tls_ctx_t *tls_ctx;
static char cert_path[] = "/tmp/fuzz_conn_cert_XXXXXX", key_path[] = "/tmp/fuzz_conn_key_XXXXXX";

/* A self-signed P-256 certificate for CN=fuzz into cert_path and key_path. */
static void make_cert(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    FILE *f;
    int fd;

    if (k == NULL || x == NULL)
        abort();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    if (X509_sign(x, k, EVP_sha256()) <= 0)
        abort();
    if ((fd = mkstemp(cert_path)) < 0 || (f = fdopen(fd, "w")) == NULL ||
        PEM_write_X509(f, x) != 1 || fclose(f) != 0)
        abort();
    if ((fd = mkstemp(key_path)) < 0 || (f = fdopen(fd, "w")) == NULL ||
        PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1 || fclose(f) != 0)
        abort();
    X509_free(x);
    EVP_PKEY_free(k);
}

static const char upgrade_fmt[] = "GET %s HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char fmt[] =
        "{\"listen\": [\"127.0.0.1:1\", {\"address\": \"127.0.0.1:2\", \"tls\": "
        "{\"cert_file\": \"%s\", \"key_file\": \"%s\"}}], \"workers\": 1,"
        " \"auth\": {\"keys\": [{\"secret_file\": \"%s\"}], \"max_token_bytes\": 1024},"
        " \"namespaces\": {\"u\": {\"subscribe\": \"owner\", \"publish\": \"none\"},"
        "  \"a\": {\"subscribe\": \"authenticated\", \"publish\": \"subscribers\"},"
        "  \"t\": {\"subscribe\": \"token\", \"publish\": \"authenticated\","
        "   \"stamp_user\": true},"
        "  \"s\": {\"subscribe\": \"any\", \"publish\": \"any\", \"stamp_user\": true},"
        "  \"h\": {\"history\": {\"size\": 8}}},"
        " \"nats\": {\"servers\": [\"nats://127.0.0.1:1\"]},"
        " \"websocket\": {\"echo_paths\": [\"/echo\"]},"
        " \"limits\": {\"max_message_bytes\": 4096, \"send_queue_bytes\": 8192,"
        "  \"max_subscriptions\": 8, \"max_headers\": 8, \"max_header_line\": 256,"
        "  \"max_multipart_parts\": 4},"
        " \"http\": {\"max_request_line\": 512, \"max_header_bytes\": 2048,"
        "  \"max_headers\": 16, \"max_body_bytes\": 4096}}";
    /* The key the corpus's tokens are signed with (tests/fuzz/corpus/fuzz_conn/auth-*). */
    static const char secret[] = "fuzz-conn-secret-of-32-bytes-min";
    char err[512], path[] = "/tmp/fuzz_conn_secret_XXXXXX", text[2048];
    int fd;

    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    lh_log_level = 0; /* client errors are logged at info: quiet */
    fd = mkstemp(path);
    if (fd < 0 || write(fd, secret, sizeof(secret) - 1) != (ssize_t)(sizeof(secret) - 1)) {
        fprintf(stderr, "fuzz_conn: cannot write the secret file\n");
        abort();
    }
    close(fd);
    make_cert();
    snprintf(text, sizeof(text), fmt, cert_path, key_path, path);
    cfg = lh_config_parse(text, strlen(text), err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "fuzz_conn: config: %s\n", err);
        abort();
    }
    if (lh_tls_store_load(cfg, err, sizeof(err)) < 0 ||
        (tls_ctx = lh_tls_find(cfg, 0, "127.0.0.1:2")) == NULL) {
        fprintf(stderr, "fuzz_conn: TLS: %s\n", err);
        abort();
    }
    unlink(cert_path);
    unlink(key_path);
    if (lh_metrics_init(4) < 0 || lh_metrics_slot_alloc(0, (int)getpid(), 1) != 0) {
        fprintf(stderr, "fuzz_conn: metrics\n");
        abort();
    }
    lh_metrics_use_slot(0);
    lh_builtin_register();
    lh_pubsub_register();
    w = lh_worker_new(cfg, 0, NULL, 0, 0, -1);
    unlink(path); /* read by lh_worker_new: no longer needed */
    if (w == NULL) {
        fprintf(stderr, "fuzz_conn: lh_worker_new failed\n");
        abort();
    }
    /* What lh_worker_listen_tls allocates for a worker with a TLS listener. */
    w->tls_rbuf = malloc(w->rbuf_cap);
    w->tls_stage = malloc(16384);
    if (w->tls_rbuf == NULL || w->tls_stage == NULL)
        abort();
    return 0;
}

/* Runs the loop until nothing is pending, reading (and dropping) what the server sent
 * unless the peer is one that does not read. */
static void pump(int peer, int reads)
{
    uint8_t sink[65536];

    for (int i = 0; i < 4; i++) {
        event_base_loop(w->base, EVLOOP_NONBLOCK);
        if (reads)
            while (read(peer, sink, sizeof(sink)) > 0)
                ;
    }
}

static void end_all(void)
{
    while (w->http_conns.head)
        lh_conn_destroy(w->http_conns.head);
    while (w->ws_conns.head)
        lh_conn_destroy(w->ws_conns.head);
    while (w->closing_conns.head)
        lh_conn_destroy(w->closing_conns.head);
    lh_worker_flush(w);
    lh_worker_reap(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[16] = {1, 2, 3, 7, 16, 61, 256, 1024, 4096, 0,
                                      0, 0, 0, 0, 0, 0};
    struct sockaddr_storage ss;
    char head[512];
    size_t chunk, off = 0;
    int sv[2], reads, flags;

    if (size == 0)
        return 0;
    flags = data[0];
    data++;
    size--;
    chunk = chunks[flags >> 4];
    if (chunk == 0)
        chunk = size ? size : 1;
    reads = !(flags & 4);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return 0;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    w->now_ms = lh_now_ms();
    lh_conn_accepted(w, sv[0], (struct sockaddr *)&ss, (socklen_t)sizeof(sa_family_t), 0,
                     lh_http_input, (flags & 8) ? tls_ctx : NULL);
    if ((flags & 3) && !(flags & 8)) {
        int n = snprintf(head, sizeof(head), upgrade_fmt, (flags & 2) ? "/echo" : "/");

        if (write(sv[1], head, (size_t)n) != n)
            goto out;
        pump(sv[1], reads);
    }
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        ssize_t r = write(sv[1], data + off, n);

        if (r <= 0) {
            if (r < 0 && errno == EAGAIN) {
                pump(sv[1], reads);
                r = write(sv[1], data + off, n);
            }
            if (r <= 0)
                break; /* the server closed, or does not read */
        }
        off += (size_t)r;
        pump(sv[1], reads);
    }
    /* The client leaves: the server sees EOF (or had closed already). */
    shutdown(sv[1], SHUT_WR);
    pump(sv[1], reads);
out:
    close(sv[1]);
    pump(sv[1], 0);
    end_all();
    return 0;
}
