/*
 * lhttpd: command line and process start.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lh_log.h"
#include "master.h"
#include "worker.h"

#ifndef LH_DEFAULT_CONFIG
#define LH_DEFAULT_CONFIG "/etc/lhttpd/lhttpd.json"
#endif
#define MAX_CONFIG_BYTES (4 * 1024 * 1024)

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: lhttpd [-c FILE] [-t]\n"
            "       lhttpd --help | --version\n"
            "\n"
            "A WebSocket server for the LHTTP protocol with pub/sub through NATS.\n"
            "\n"
            "  -c, --config FILE  configuration file (default " LH_DEFAULT_CONFIG ")\n"
            "  -t, --test         check the configuration and exit: 0 when valid, else\n"
            "                     print FILE:LINE:COL: problem and exit 1\n"
            "  -h, --help         show this help and exit\n"
            "  -v, --version      show the version and exit\n"
            "\n"
            "Signals: SIGTERM or SIGINT stop gracefully (clients get close 1001).\n"
            "Logs go to stderr with systemd <N> level prefixes.\n"
            "See lhttpd(8) and lhttpd.json(5).\n");
}

lh_config_t *lh_config_load_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *text;
    size_t len;
    char perr[512];
    lh_config_t *cfg;

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    text = malloc(MAX_CONFIG_BYTES + 1);
    if (text == NULL) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    len = fread(text, 1, MAX_CONFIG_BYTES + 1, f);
    if (ferror(f) || len > MAX_CONFIG_BYTES) {
        snprintf(err, errlen, "%s: %s", path,
                 ferror(f) ? strerror(errno) : "larger than 4 MiB");
        fclose(f);
        free(text);
        return NULL;
    }
    fclose(f);
    cfg = lh_config_parse(text, len, perr, sizeof(perr));
    free(text);
    if (cfg == NULL)
        snprintf(err, errlen, "%s:%s", path, perr);
    return cfg;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    const char *path = LH_DEFAULT_CONFIG;
    int test = 0, c;
    char err[1024];
    lh_config_t *cfg;
    int *fds = NULL;
    size_t nfds = 0;
    lh_worker_t *w;

    while ((c = getopt_long(argc, argv, "c:thv", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'v':
            printf("lhttpd %s\n", LH_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lhttpd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    cfg = lh_config_load_file(path, err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (test) {
        printf("lhttpd: configuration %s is valid\n", path);
        lh_config_free(cfg);
        return 0;
    }
    lh_log_level = cfg->log.level;
    signal(SIGPIPE, SIG_IGN);
    if (lh_listen_open(cfg, &fds, &nfds, err, sizeof(err)) < 0) {
        lh_log(LH_LOG_ERR, "%s", err);
        lh_config_free(cfg);
        return 1;
    }
    lh_builtin_register();
    lh_pubsub_register();
    w = lh_worker_new(cfg, 0, fds, nfds);
    if (w == NULL) {
        lh_log(LH_LOG_ERR, "cannot create the worker: out of memory");
        return 1;
    }
    lh_log(LH_LOG_NOTICE, "lhttpd %s started (pid %d)", LH_VERSION, (int)getpid());
    lh_worker_run(w);
    lh_worker_free(w);
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    free(fds);
    lh_config_free(cfg);
    lh_log(LH_LOG_NOTICE, "stopped");
    return 0;
}
