/*
 * lhttpd: command line and process start.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control.h"
#include "lh_log.h"
#include "master.h"
#include "module.h"
#include "upgrade.h"
#include "worker.h"

#ifndef LH_DEFAULT_CONFIG
#define LH_DEFAULT_CONFIG "/etc/lhttpd/lhttpd.json"
#endif

/* Prints lh_config_warnings' lines to stderr, each as "lhttpd: warning: ...". */
static void print_warnings(const char *lines)
{
    while (*lines) {
        size_t n = strcspn(lines, "\n");

        fprintf(stderr, "lhttpd: warning: %.*s\n", (int)n, lines);
        lines += n + (lines[n] == '\n');
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: lhttpd [-c FILE] [-t | -s reload|upgrade|stop|status]\n"
            "       lhttpd --help | --version\n"
            "\n"
            "A WebSocket server for the LHTTP protocol with pub/sub through NATS.\n"
            "\n"
            "  -c, --config FILE  configuration file (default " LH_DEFAULT_CONFIG ")\n"
            "  -t, --test         check the configuration and exit: 0 when valid, else\n"
            "                     print FILE:LINE:COL: problem and exit 1\n"
            "  -s, --signal CMD   ask the running master (through control_socket):\n"
            "                     reload  apply the configuration; returns when the new\n"
            "                             workers serve, exit 1 if the reload failed\n"
            "                     upgrade re-execute the binary the master started from\n"
            "                             (the one on disk now), same PID, sockets and\n"
            "                             clients; new workers from it, the old ones\n"
            "                             retire as on reload. Exit 0 when it serves, 1\n"
            "                             when it failed (the old one keeps serving), 3\n"
            "                             when it cannot be done in place: restart then\n"
            "                     stop    stop gracefully\n"
            "                     status  print generation, workers, connections, the\n"
            "                             binary and the upgrades\n"
            "  -h, --help         show this help and exit\n"
            "  -v, --version      show the version and exit\n"
            "\n"
            "  --upgrade-check N --upgrade-layout L, --upgrade-state FD: used by the\n"
            "                     master itself during an upgrade (see lhttpd(8))\n"
            "\n"
            "Signals to the master: SIGHUP reloads; SIGTERM or SIGINT stop gracefully\n"
            "(clients get close 1001 and shutdown_timeout_ms to leave).\n"
            "Logs go to stderr with systemd <N> level prefixes.\n"
            "See lhttpd(8) and lhttpd.json(5).\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"signal", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'v'},
        {"upgrade-check", required_argument, NULL, 'U'},
        {"upgrade-layout", required_argument, NULL, 'L'},
        {"upgrade-state", required_argument, NULL, 'S'},
        {NULL, 0, NULL, 0},
    };
    const char *path = LH_DEFAULT_CONFIG, *command = NULL;
    const char *up_check = NULL, *up_layout = "", *up_state = NULL;
    int test = 0, c, rc;
    char err[1024];
    lh_config_t *cfg;

    while ((c = getopt_long(argc, argv, "c:ts:hv", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 's':
            command = optarg;
            if (strcmp(command, "reload") != 0 && strcmp(command, "stop") != 0 &&
                strcmp(command, "status") != 0 && strcmp(command, "upgrade") != 0) {
                fprintf(stderr, "lhttpd: -s takes reload, upgrade, stop or status\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'v':
            printf("lhttpd %s\n", LH_VERSION);
            return 0;
        case 'U':
            up_check = optarg;
            break;
        case 'L':
            up_layout = optarg;
            break;
        case 'S':
            up_state = optarg;
            break;
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
    /* Every mode checks the configuration first: `-s reload` with a broken file fails
     * here, with the reason, before the master is even asked. */
    cfg = lh_config_load_file(path, err, sizeof(err));
    if (up_state != NULL) {
        char *end;
        long fd = strtol(up_state, &end, 10);

        if (*end != '\0' || fd < 3 || fd > 1 << 20) {
            fprintf(stderr, "lhttpd: --upgrade-state takes the state's fd\n");
            lh_config_free(cfg);
            return 2;
        }
        return lh_master_resume(cfg, path, (int)fd, err);
    }
    if (cfg == NULL && command != NULL && strcmp(command, "reload") != 0 &&
        strcmp(command, "upgrade") != 0) {
        /* A broken file must not keep an operator from stopping or inspecting the
         * running master: fall back to the default control socket. */
        fprintf(stderr, "%s\nlhttpd: using the default control socket\n", err);
        cfg = lh_config_default();
    }
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (test || up_check != NULL) {
        /* Modules are loaded and initialized as at start (an init only registers), so
         * a missing file, a wrong API version or a bad module config fails here. */
        lh_log_level = LH_LOG_WARNING;
        if (lh_modules_load(cfg, err, sizeof(err)) != 0) {
            fprintf(stderr, "%s\n", err);
            lh_config_free(cfg);
            return 1;
        }
        if (up_check != NULL) {
            /* The master runs this before it execs this binary (upgrade.h): the
             * configuration and its modules load, and the formats agree. */
            lh_config_free(cfg);
            return lh_upgrade_check_main(up_check, up_layout);
        }
        if (lh_config_warnings(cfg, err, sizeof(err)) > 0)
            print_warnings(err);
        if (cfg->nmodules > 0)
            printf("lhttpd: configuration %s is valid (%zu modules loaded)\n", path,
                   cfg->nmodules);
        else
            printf("lhttpd: configuration %s is valid\n", path);
        lh_config_free(cfg);
        return 0;
    }
    if (command != NULL) {
        /* A reload waits up to 30 s for its workers; an upgrade adds its check (15 s)
         * and the new image's start. */
        rc = lh_control_send(cfg, command, strcmp(command, "reload") == 0 ? 120000
                             : strcmp(command, "upgrade") == 0 ? 180000 : 10000);
        lh_config_free(cfg);
        return rc;
    }
    return lh_master_run(cfg, path);
}
