/*
 * lhttp-bench: options, the generator processes, and the report. See bench.h for the
 * model and tests/bench/RESULTS.md for how `make bench` uses it.
 */
#include "bench.h"

#include <openssl/ssl.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
    OPT_PIPELINE = 256,
    OPT_RANDOM,
    OPT_SRC,
    OPT_PROCS,
    OPT_CONC,
    OPT_HOLD_EXEC,
    OPT_NO_PUBLISH,
    OPT_DRAIN,
    OPT_TIMEOUT,
    OPT_PREFIX,
    OPT_SPIN,
    OPT_TLS_RESUME,
    OPT_TOKEN,
    OPT_PUB_TOKEN,
    OPT_PUB_SUBSCRIBE,
    OPT_SERVER_HEADERS,
    OPT_RECOVER
};

/* The longest --token: lhttpd's largest auth.max_token_bytes. */
#define MAX_TOKEN 65536
/* The longest --pub-token: lhttpd's publish.token. */
#define MAX_PUB_TOKEN 512
/* --pub-subscribe: each publisher's subscribe messages are built at its handshake, so
 * the channels are capped (lhttpd's limits.max_subscriptions is 256 by default). */
#define MAX_PUB_SUB_CHANNELS 65536

static void usage(FILE *f)
{
    fputs("usage: lhttp-bench [options]\n"
          "Opens WebSocket subscribers on a pub/sub server, publishes timestamped messages\n"
          "and reports deliveries per second, latency and whether every delivery arrived.\n"
          "\n"
          "  -t, --target NAME     lhttpd (LHTTP subscribe/publish) or nchan    [lhttpd]\n"
          "  -u, --url URL         subscribers' ws://IP:PORT/PATH (wss:// for TLS, not\n"
          "                        verified: a load generator); {ch} in PATH is\n"
          "                        replaced by the channel          [ws://127.0.0.1:8081/]\n"
          "  -p, --pub URL         publish over ws:// (WebSocket messages) or http://\n"
          "                        (wss://, https:// with TLS)\n"
          "                        (one POST per message); {ch} as in -u   [the -u URL]\n"
          "  -n, --subs N          subscriber connections                       [100]\n"
          "  -c, --channels N      channels; subscriber i is on channel i mod N   [1]\n"
          "  -m, --msgs N          messages to publish                       [10000]\n"
          "  -d, --duration S      publish for S seconds instead of -m N\n"
          "  -r, --rate R          messages per second; 0: full speed under -w     [0]\n"
          "  -w, --window N        full speed: messages in flight at most      [1000]\n"
          "  -k, --pub-conns N     publisher connections                          [1]\n"
          "      --pipeline N      HTTP requests outstanding per connection       [1]\n"
          "      --token T         every WebSocket handshake (subscribers, WebSocket\n"
          "                        publishers) sends 'Authorization: Bearer T': a JWT\n"
          "                        for lhttpd's auth (lhttpc token)          [none]\n"
          "      --pub-token T     HTTP publishers send 'Authorization: Bearer T'\n"
          "                        (lhttpd's publish.token)                  [none]\n"
          "      --pub-subscribe   each WebSocket publisher subscribes to every channel\n"
          "                        after its handshake, as a 'subscribers' publish rule\n"
          "                        needs, and drops its copies of the messages\n"
          "  -s, --size BYTES      size of each delivered message, without what\n"
          "                        --server-headers accepts                   [64]\n"
          "      --random          a random channel for each message (else in turn)\n"
          "      --src N           source addresses 127.0.S.1 to 127.0.S.N, S chosen\n"
          "                        at random for each run (loopback)       [as needed]\n"
          "      --procs N         generator processes                    [as needed]\n"
          "      --conc N          connections being set up at once             [500]\n"
          "      --hold-exec CMD   once every subscriber is ready, run CMD (sh -c)\n"
          "                        while holding the connections\n"
          "      --no-publish      only set up the subscribers (connection rate)\n"
          "      --drain S         give up when no delivery arrived for S seconds  [5]\n"
          "      --timeout S       deadline of the setup, of the warm-up and of\n"
          "                        --recover's disconnections                 [60]\n"
          "      --prefix P        channel name prefix                  [b<random>.]\n"
          "      --spin            busy-poll while publishing (a core of its own)\n"
          "      --tls-resume      wss:// and https://: every connection of a process after\n"
          "                        its first resumes a TLS session (the newest ticket)\n"
          "      --server-headers  channels with history: accept exactly the server's\n"
          "                        metadata on each delivery and remove it before the\n"
          "                        byte-for-byte check: lhttpd's offset, prev-offset,\n"
          "                        epoch and channel headers after the command line\n"
          "                        (each prev-offset must be the offset seen before\n"
          "                        it) and its subscribed replies; for nchan, the id\n"
          "                        line of the ws+meta.nchan subprotocol, asked for\n"
          "      --recover N       after the warm-up every subscriber disconnects, N\n"
          "                        messages go to each channel (over http://), then\n"
          "                        they reconnect, --conc at a time, resuming after\n"
          "                        the last message seen (lhttpd: recover header;\n"
          "                        nchan: Last-Event-ID), until each has the N\n"
          "                        messages; reports the time until every one has\n"
          "                        recovered (implies --server-headers)\n"
          "  -q, --quiet           print only the RESULT line\n"
          "  -V, --version         print the version and exit\n"
          "  -h, --help            print this help and exit\n"
          "\n"
          "The last line is 'RESULT key=value ...' for scripts. Exit status: 0 when every\n"
          "expected delivery arrived intact, 1 otherwise, 2 for a bad command line.\n",
          f);
}

static int parse_url(const char *s, lhb_url_t *u)
{
    const char *p, *colon, *slash;
    size_t hl;
    long port;

    memset(u, 0, sizeof(*u));
    if (strncmp(s, "ws://", 5) == 0) {
        p = s + 5;
    } else if (strncmp(s, "http://", 7) == 0) {
        p = s + 7;
        u->http = 1;
    } else if (strncmp(s, "wss://", 6) == 0) {
        p = s + 6;
        u->tls = 1;
    } else if (strncmp(s, "https://", 8) == 0) {
        p = s + 8;
        u->http = 1;
        u->tls = 1;
    } else {
        return -1;
    }
    slash = strchr(p, '/');
    if (slash == NULL)
        slash = p + strlen(p);
    colon = memchr(p, ':', (size_t)(slash - p));
    hl = (size_t)((colon ? colon : slash) - p);
    if (hl == 0 || hl >= sizeof(u->host))
        return -1;
    memcpy(u->host, p, hl);
    port = colon ? strtol(colon + 1, NULL, 10) : u->tls ? 443 : 80;
    if (port <= 0 || port > 65535)
        return -1;
    u->port = (uint16_t)port;
    if (strlen(*slash ? slash : "/") >= sizeof(u->path))
        return -1;
    strcpy(u->path, *slash ? slash : "/");
    return 0;
}

/* 1 when s has 1 to max bytes, all visible ASCII: nothing that could end a header line. */
static int visible_ascii(const char *s, size_t max)
{
    size_t n = strlen(s);

    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return n > 0 && n <= max;
}

static int num(const char *s, double lo, double hi, double *v)
{
    char *e;

    errno = 0;
    *v = strtod(s, &e);
    return errno == 0 && e != s && *e == '\0' && *v >= lo && *v <= hi ? 0 : -1;
}

static int bad(const char *opt, const char *arg)
{
    fprintf(stderr, "lhttp-bench: bad value for %s: %s\n", opt, arg);
    return -1;
}

static int parse_opts(int argc, char **argv, lhb_opts_t *o)
{
    static const struct option longs[] = {
        {"target", required_argument, NULL, 't'},
        {"url", required_argument, NULL, 'u'},
        {"pub", required_argument, NULL, 'p'},
        {"subs", required_argument, NULL, 'n'},
        {"channels", required_argument, NULL, 'c'},
        {"msgs", required_argument, NULL, 'm'},
        {"duration", required_argument, NULL, 'd'},
        {"rate", required_argument, NULL, 'r'},
        {"window", required_argument, NULL, 'w'},
        {"pub-conns", required_argument, NULL, 'k'},
        {"pipeline", required_argument, NULL, OPT_PIPELINE},
        {"size", required_argument, NULL, 's'},
        {"random", no_argument, NULL, OPT_RANDOM},
        {"src", required_argument, NULL, OPT_SRC},
        {"procs", required_argument, NULL, OPT_PROCS},
        {"conc", required_argument, NULL, OPT_CONC},
        {"hold-exec", required_argument, NULL, OPT_HOLD_EXEC},
        {"no-publish", no_argument, NULL, OPT_NO_PUBLISH},
        {"drain", required_argument, NULL, OPT_DRAIN},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"spin", no_argument, NULL, OPT_SPIN},
        {"tls-resume", no_argument, NULL, OPT_TLS_RESUME},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"pub-token", required_argument, NULL, OPT_PUB_TOKEN},
        {"pub-subscribe", no_argument, NULL, OPT_PUB_SUBSCRIBE},
        {"server-headers", no_argument, NULL, OPT_SERVER_HEADERS},
        {"recover", required_argument, NULL, OPT_RECOVER},
        {"version", no_argument, NULL, 'V'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *sub = "ws://127.0.0.1:8081/", *pub = NULL, *token = NULL;
    int ch, timed = 0;
    double v;

    memset(o, 0, sizeof(*o));
    o->subs = 100;
    o->channels = 1;
    o->msgs = 10000;
    o->window = 1000;
    o->pub_conns = 1;
    o->pipeline = 1;
    o->size = 64;
    o->connect_conc = 500;
    o->drain_s = 5;
    o->timeout_s = 60;
    snprintf(o->prefix, sizeof(o->prefix), "b%x.", (unsigned)getpid() & 0xfff);
    while ((ch = getopt_long(argc, argv, "t:u:p:n:c:m:d:r:w:k:s:qhV", longs, NULL)) != -1) {
        switch (ch) {
        case 't':
            if (strcmp(optarg, "lhttpd") == 0 || strcmp(optarg, "lhttp") == 0)
                o->target = LHB_TARGET_LHTTP;
            else if (strcmp(optarg, "nchan") == 0)
                o->target = LHB_TARGET_NCHAN;
            else
                return bad("--target", optarg);
            break;
        case 'u':
            sub = optarg;
            break;
        case 'p':
            pub = optarg;
            break;
        case 'n':
            if (num(optarg, 1, 1000000, &v) < 0)
                return bad("--subs", optarg);
            o->subs = (uint32_t)v;
            break;
        case 'c':
            if (num(optarg, 1, 10000000, &v) < 0)
                return bad("--channels", optarg);
            o->channels = (uint32_t)v;
            break;
        case 'm':
            if (num(optarg, 1, 1e12, &v) < 0)
                return bad("--msgs", optarg);
            o->msgs = (uint64_t)v;
            break;
        case 'd':
            if (num(optarg, 0.001, 86400, &v) < 0)
                return bad("--duration", optarg);
            o->duration_s = v;
            o->msgs = 0;
            timed = 1;
            break;
        case 'r':
            if (num(optarg, 0, 1e9, &v) < 0)
                return bad("--rate", optarg);
            o->rate = v;
            timed |= v > 0;
            break;
        case 'w':
            if (num(optarg, 1, 1e9, &v) < 0)
                return bad("--window", optarg);
            o->window = (uint64_t)v;
            break;
        case 'k':
            if (num(optarg, 1, 10000, &v) < 0)
                return bad("--pub-conns", optarg);
            o->pub_conns = (uint32_t)v;
            break;
        case OPT_PIPELINE:
            if (num(optarg, 1, 100000, &v) < 0)
                return bad("--pipeline", optarg);
            o->pipeline = (uint32_t)v;
            break;
        case 's':
            if (num(optarg, 1, 16 << 20, &v) < 0)
                return bad("--size", optarg);
            o->size = (size_t)v;
            break;
        case OPT_RANDOM:
            o->random = 1;
            break;
        case OPT_SRC:
            if (num(optarg, 1, LHB_MAX_SRC, &v) < 0)
                return bad("--src", optarg);
            o->nsrc = (uint32_t)v;
            break;
        case OPT_PROCS:
            if (num(optarg, 1, LHB_MAX_PROCS, &v) < 0)
                return bad("--procs", optarg);
            o->procs = (uint32_t)v;
            break;
        case OPT_CONC:
            if (num(optarg, 1, 1000000, &v) < 0)
                return bad("--conc", optarg);
            o->connect_conc = (uint32_t)v;
            break;
        case OPT_HOLD_EXEC:
            o->hold_exec = optarg;
            break;
        case OPT_NO_PUBLISH:
            o->no_publish = 1;
            break;
        case OPT_DRAIN:
            if (num(optarg, 0.01, 3600, &v) < 0)
                return bad("--drain", optarg);
            o->drain_s = v;
            break;
        case OPT_TIMEOUT:
            if (num(optarg, 0.1, 86400, &v) < 0)
                return bad("--timeout", optarg);
            o->timeout_s = v;
            break;
        case OPT_PREFIX:
            if (strlen(optarg) >= sizeof(o->prefix))
                return bad("--prefix", optarg);
            strcpy(o->prefix, optarg);
            break;
        case OPT_SPIN:
            o->spin = 1;
            break;
        case OPT_TLS_RESUME:
            o->tls_resume = 1;
            break;
        case OPT_TOKEN:
            if (!visible_ascii(optarg, MAX_TOKEN))
                return bad("--token (1 to 65536 visible ASCII characters)", optarg);
            token = optarg;
            break;
        case OPT_PUB_TOKEN:
            /* As lhttpd takes its publish.token. */
            if (!visible_ascii(optarg, MAX_PUB_TOKEN))
                return bad("--pub-token (1 to 512 visible ASCII characters)", optarg);
            o->pub_token = optarg;
            break;
        case OPT_PUB_SUBSCRIBE:
            o->pub_subscribe = 1;
            break;
        case OPT_SERVER_HEADERS:
            o->server_headers = 1;
            break;
        case OPT_RECOVER:
            /* A subscriber's count of messages is 32 bits. */
            if (num(optarg, 1, 1000000, &v) < 0)
                return bad("--recover", optarg);
            o->recover = (uint32_t)v;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'V':
            printf("lhttp-bench %s\n", LH_VERSION);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lhttp-bench: unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    if (parse_url(sub, &o->sub_url) < 0 || o->sub_url.http)
        return bad("--url (ws://IPv4:PORT/PATH)", sub);
    if (pub == NULL && o->target == LHB_TARGET_NCHAN && !o->no_publish) {
        fprintf(stderr, "lhttp-bench: nchan needs --pub (its publisher location)\n");
        return -1;
    }
    if (parse_url(pub ? pub : sub, &o->pub_url) < 0)
        return bad("--pub (ws:// or http://IPv4:PORT/PATH)", pub);
    o->have_pub = 1;
    if (o->sub_url.tls || o->pub_url.tls) {
        o->ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (o->ssl_ctx == NULL) {
            fprintf(stderr, "lhttp-bench: SSL_CTX_new failed\n");
            return -1;
        }
        SSL_CTX_set_verify(o->ssl_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_session_cache_mode(o->ssl_ctx, SSL_SESS_CACHE_CLIENT |
                                                    SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(o->ssl_ctx, lhb_tls_new_session);
    }
    if (o->target == LHB_TARGET_NCHAN && !o->pub_url.http && o->channels > 1 && !o->no_publish) {
        fprintf(stderr, "lhttp-bench: an nchan WebSocket publisher is bound to one channel; "
                        "publish to several over http://\n");
        return -1;
    }
    if (o->pub_subscribe && (o->target != LHB_TARGET_LHTTP || o->pub_url.http)) {
        fprintf(stderr, "lhttp-bench: --pub-subscribe is for lhttpd's WebSocket publishers\n");
        return -1;
    }
    if (o->recover) {
        /* Parked subscribers receive nothing: only an answered publish says it is stored. */
        if (!o->pub_url.http || o->no_publish || o->pub_subscribe || timed) {
            fprintf(stderr, "lhttp-bench: --recover publishes over http://, N messages to "
                            "each channel (not with -d, -r, --no-publish, --pub-subscribe)\n");
            return -1;
        }
        o->server_headers = 1;
        o->msgs = (uint64_t)o->recover * o->channels;
    }
    if (o->pub_subscribe && o->channels > MAX_PUB_SUB_CHANNELS) {
        fprintf(stderr, "lhttp-bench: --pub-subscribe takes at most %u channels\n",
                MAX_PUB_SUB_CHANNELS);
        return -1;
    }
    {
        char name[64];
        size_t chl = lhb_channel_name(name, sizeof(name), o->prefix, o->channels - 1);

        if (o->size < lhb_msg_min_size(o->target, chl)) {
            fprintf(stderr, "lhttp-bench: --size must be at least %zu for these channel names\n",
                    lhb_msg_min_size(o->target, chl));
            return -1;
        }
    }
    /* The handshake's header line, once for every connection of every process. */
    o->ws_auth_len = token ? sizeof("Authorization: Bearer \r\n") - 1 + strlen(token) : 0;
    o->ws_auth = malloc(o->ws_auth_len + 1);
    if (o->ws_auth == NULL) {
        fprintf(stderr, "lhttp-bench: out of memory\n");
        return -1;
    }
    if (token != NULL)
        snprintf(o->ws_auth, o->ws_auth_len + 1, "Authorization: Bearer %s\r\n", token);
    else
        o->ws_auth[0] = '\0';
    return 0;
}

/* Raises the open-file limit to its maximum; returns how many connections one process
 * may hold. */
static uint32_t per_process_capacity(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1000;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000)
        return 1000000;
    return rl.rlim_cur > 200 ? (uint32_t)rl.rlim_cur - 100 : 100;
}

static void report(const lhb_opts_t *o, lhb_shared_t *sh, const lhb_pubres_t *res,
                   uint64_t t_start, int aborted)
{
    lhb_hist_t *h = calloc(1, sizeof(*h));
    uint64_t ready = 0, failed = 0, delivered = 0, t_last = 0, setup_end = 0;
    uint64_t disorder = 0, corrupt = 0, other = 0, closed = 0, shorts = 0, longs = 0;
    uint64_t chain = 0, recovered = 0, not_recovered = 0, t_recovered = 0;
    uint64_t t_recover0 = atomic_load(&sh->recover_t0);
    const char *err = "";
    double setup_s, span, mps = 0, dps = 0;
    int complete;

    if (h == NULL)
        return;
    for (uint32_t i = 0; i < sh->nprocs; i++) {
        lhb_pstats_t *s = &sh->ps[i];

        ready += s->ready;
        failed += s->failed;
        delivered += s->delivered;
        if (s->last_ns > t_last)
            t_last = s->last_ns;
        if (s->setup_done_ns > setup_end)
            setup_end = s->setup_done_ns;
        disorder += s->disorder;
        corrupt += s->corrupt;
        other += s->other;
        closed += s->closed;
        shorts += s->short_subs;
        longs += s->long_subs;
        chain += s->chain;
        recovered += s->recovered;
        not_recovered += s->not_recovered;
        if (s->recover_done_ns > t_recovered)
            t_recovered = s->recover_done_ns;
        if (err[0] == '\0' && s->first_error[0] != '\0')
            err = s->first_error;
        lhb_hist_merge(h, &s->hist);
    }
    setup_s = setup_end > t_start ? (double)(setup_end - t_start) / 1e9 : 0;
    span = t_last > res->t0 ? (double)(t_last - res->t0) / 1e9 : 0;
    if (o->recover) /* from the reconnections to the last recovery */
        span = t_recover0 && t_recovered > t_recover0 ? (double)(t_recovered - t_recover0) / 1e9 : 0;
    if (span > 0) {
        mps = (double)res->sent / span;
        dps = (double)delivered / span;
    }
    complete = !aborted && failed == 0 && delivered == res->expected && disorder == 0 &&
               corrupt == 0 && closed == 0 && shorts == 0 && longs == 0 && chain == 0 &&
               (o->target == LHB_TARGET_NCHAN || other == 0) &&
               (!o->recover || (recovered == o->subs && not_recovered == 0));
    if (!o->quiet) {
        printf("setup:    %llu of %u subscribers in %.3f s (%.0f/s), %llu failed\n",
               (unsigned long long)ready, o->subs, setup_s, setup_s > 0 ? (double)ready / setup_s : 0,
               (unsigned long long)failed);
        if (!o->no_publish) {
            printf("warm-up:  %llu probes in %.3f s\n", (unsigned long long)res->probes,
                   res->warmup_s);
            printf("publish:  %llu messages in %.3f s (%s)\n", (unsigned long long)res->sent,
                   res->t_end > res->t0 ? (double)(res->t_end - res->t0) / 1e9 : 0,
                   o->recover ? "while the subscribers were away, each answered"
                   : o->rate > 0 ? "fixed rate" : "full speed under the window");
            if (o->pub_subscribe)
                printf("copies:   %llu messages came back to the publishers (dropped)\n",
                       (unsigned long long)res->copies);
            printf("deliver:  %llu of %llu expected deliveries in %.3f s%s\n",
                   (unsigned long long)delivered, (unsigned long long)res->expected, span,
                   complete ? ", all intact" : "");
            if (o->recover)
                printf("recover:  %llu of %u subscribers recovered %u messages each, %llu "
                       "refused or unfinished, all within %.3f s of reconnecting\n",
                       (unsigned long long)(recovered - not_recovered), o->subs, o->recover,
                       (unsigned long long)not_recovered, span);
            printf("rate:     %.0f messages/s, %.0f deliveries/s\n", mps, dps);
            printf("%s p50 %.1f us, p90 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
                   o->recover ? "recovered:" : "latency: ",
                   lhb_hist_quantile(h, 0.50) / 1e3, lhb_hist_quantile(h, 0.90) / 1e3,
                   lhb_hist_quantile(h, 0.99) / 1e3, lhb_hist_quantile(h, 0.999) / 1e3,
                   h->max / 1e3);
        }
    }
    if (!complete) {
        char replies[64] = "";

        /* lhttpd answers a publish only to refuse it. */
        if (o->target == LHB_TARGET_LHTTP && res->replies > 0)
            snprintf(replies, sizeof(replies), "%llu error replies to publishers; ",
                     (unsigned long long)res->replies);
        char more[160] = "";

        if (o->server_headers)
            snprintf(more, sizeof(more), ", %llu off the offset chain", (unsigned long long)chain);
        if (o->recover)
            snprintf(more + strlen(more), sizeof(more) - strlen(more),
                     ", %llu of %u recovered, %llu refused or unfinished",
                     (unsigned long long)(recovered - not_recovered), o->subs,
                     (unsigned long long)not_recovered);
        printf("PROBLEM:  %s%s%s%llu failed, %llu closed, %llu short, %llu long, %llu out of "
               "order, %llu corrupt, %llu other%s; first error: %s\n",
               aborted ? "aborted; " : "",
               delivered != res->expected ? "deliveries missing; " : "", replies,
               (unsigned long long)failed, (unsigned long long)closed,
               (unsigned long long)shorts, (unsigned long long)longs,
               (unsigned long long)disorder, (unsigned long long)corrupt,
               (unsigned long long)other, more, err[0] ? err : "none");
    }
    printf("RESULT target=%s subs=%u channels=%u size=%zu pub=%s setup_s=%.4f setup_rate=%.0f "
           "failed=%llu published=%llu expected=%llu delivered=%llu span_s=%.4f "
           "msgs_per_s=%.0f deliveries_per_s=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f "
           "p999_us=%.1f max_us=%.1f gen_cpu=%.2f procs=%u pub_replies=%llu pub_copies=%llu "
           "server_headers=%d chain=%llu recover=%u recover_s=%.4f recovered=%llu "
           "not_recovered=%llu complete=%d\n",
           o->target == LHB_TARGET_NCHAN ? "nchan" : "lhttpd", o->subs, o->channels, o->size,
           o->pub_url.http ? "http" : "ws", setup_s, setup_s > 0 ? (double)ready / setup_s : 0,
           (unsigned long long)failed, (unsigned long long)res->sent,
           (unsigned long long)res->expected, (unsigned long long)delivered, span, mps, dps,
           lhb_hist_quantile(h, 0.50) / 1e3, lhb_hist_quantile(h, 0.90) / 1e3,
           lhb_hist_quantile(h, 0.99) / 1e3, lhb_hist_quantile(h, 0.999) / 1e3, h->max / 1e3,
           span > 0 ? res->cpu_s / span : 0, sh->nprocs, (unsigned long long)res->replies,
           (unsigned long long)res->copies, o->server_headers, (unsigned long long)chain,
           o->recover, o->recover ? span : 0, (unsigned long long)(recovered - not_recovered),
           (unsigned long long)not_recovered, complete);
    fflush(stdout);
    free(h);
    if (!complete)
        exit(1);
}

int main(int argc, char **argv)
{
    lhb_opts_t o;
    lhb_shared_t *sh;
    uint32_t *counts, cap, total;
    lhb_pubres_t res;
    uint64_t t_start;
    pid_t kids[LHB_MAX_PROCS];
    int aborted;

    if (parse_opts(argc, argv, &o) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    cap = per_process_capacity();
    total = o.subs + o.pub_conns;
    if (o.procs == 0)
        o.procs = (total + cap - 1) / cap;
    if (o.procs > LHB_MAX_PROCS || (uint64_t)o.subs / o.procs + o.pub_conns > cap) {
        fprintf(stderr, "lhttp-bench: %u connections need more than %u processes of %u "
                        "connections (the open-file limit)\n", total, LHB_MAX_PROCS, cap);
        lhb_tls_cleanup(&o);
        return 2;
    }
    if (o.nsrc == 0)
        o.nsrc = 1 + total / 25000; /* an ephemeral port range is about 28000 ports */
    o.src_net = 1 + (uint32_t)((lhb_now_ns() / 1000) ^ (uint64_t)getpid()) % 250;
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    counts = mmap(NULL, (size_t)o.channels * sizeof(*counts), PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || counts == MAP_FAILED) {
        perror("lhttp-bench: mmap");
        lhb_tls_cleanup(&o);
        return 1;
    }
    sh->nprocs = o.procs;
    atomic_store(&sh->phase, LHB_PH_SETUP);
    if (!o.quiet) {
        printf("lhttp-bench: %s, %u subscribers on %u channel%s (ws://%s:%u%s), %zu-byte "
               "messages, publish %s://%s:%u%s, %u generator process%s\n",
               o.target == LHB_TARGET_NCHAN ? "nchan" : "lhttpd", o.subs, o.channels,
               o.channels == 1 ? "" : "s", o.sub_url.host, o.sub_url.port, o.sub_url.path,
               o.size, o.pub_url.http ? "http" : "ws", o.pub_url.host, o.pub_url.port,
               o.pub_url.path, o.procs, o.procs == 1 ? "" : "es");
        fflush(stdout);
    }
    t_start = lhb_now_ns();
    for (uint32_t p = 1; p < o.procs; p++) {
        uint32_t first = (uint32_t)((uint64_t)o.subs * p / o.procs);
        uint32_t last = (uint32_t)((uint64_t)o.subs * (p + 1) / o.procs);

        kids[p] = fork();
        if (kids[p] < 0) {
            perror("lhttp-bench: fork");
            atomic_store(&sh->phase, LHB_PH_ABORT);
            o.procs = p;
            break;
        }
        if (kids[p] == 0) {
            lhb_loop_run(&o, sh, p, first, last - first, counts, t_start, NULL);
            _exit(0);
        }
    }
    memset(&res, 0, sizeof(res));
    lhb_loop_run(&o, sh, 0, 0, (uint32_t)((uint64_t)o.subs / o.procs), counts, t_start, &res);
    aborted = atomic_load(&sh->phase) == LHB_PH_ABORT;
    for (uint32_t p = 1; p < o.procs; p++) {
        int st;

        if (waitpid(kids[p], &st, 0) > 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            fprintf(stderr, "lhttp-bench: generator process %u died\n", p);
            aborted = 1;
        }
    }
    report(&o, sh, &res, t_start, aborted);
    lhb_tls_cleanup(&o);
    free(o.ws_auth);
    return 0;
}
