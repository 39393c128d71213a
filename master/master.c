/*
 * The master: forks and supervises generations of workers.
 *
 * Signals only set flags (the handlers are async-signal-safe by construction); the loop
 * waits in ppoll(2) with those signals unblocked only while it waits, so no flag is
 * missed. Workers talk to the master over one SOCK_SEQPACKET pair each:
 *   worker -> master: "ready", "draining", "hb SEQ CONNS"
 *   master -> worker: "drain", "rules" (to a worker draining since an earlier reload:
 *                     read the newest identity and namespace rules), "stop", "hb SEQ"
 * Reload parses the new configuration into a new structure; only if it is whole does a
 * new generation start, and only once it is ready does the old one drain. The control
 * socket is control.c's; this file answers its commands.
 *
 * A binary upgrade (upgrade.h) re-executes the master with its state; the new image
 * adopts the workers and reloads, so the old workers retire exactly as on reload.
 *
 * Read from the bottom: lh_master_run is setup, then a loop of signal flags, deadlines
 * and one ppoll step.
 */
#include "master.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <nats/nats.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "lh_log.h"
#include "module.h"
#include "upgrade.h"
#include "worker.h"

#define MAX_WORKERS LH_MAX_WORKERS
/* Every process holds a worker slot, and there are at most this many slots. */
#define MAX_PROCS LH_MAX_WORKERS_ALIVE
#define DEFAULT_MIN_ALIVE 128   /* max_workers_alive by default: 4 x workers, at least this */
#define QUICK_EXIT_MS 2000      /* a worker dying sooner than this "keeps dying at start" */
#define MAX_BACKOFF_MS 30000
#define READY_TIMEOUT_MS 30000  /* a new generation must be ready within this */
#define HB_INTERVAL_MS 1000
#define HB_DEAD_MS 10000        /* no heartbeat answer for this long: the worker is stuck */

enum { P_STARTING, P_ACTIVE, P_DRAINING, P_STOPPING };
static const char *const state_names[] = {"starting", "active", "draining", "stopping"};

typedef struct {
    pid_t pid;
    int fd; /* the master's end of the channel */
    int slot;
    unsigned gen;
    int state;
    uint64_t started_ms;
    uint64_t hb_ok_ms;
    size_t conns;
    int mslot; /* its slot in the shared block (metrics, channel table, balancing) */
} proc_t;

typedef struct {
    int pending;        /* the slot of the current generation has no worker */
    uint64_t next_ms;   /* when to try again */
    unsigned backoff_ms;
    unsigned quick_fails;
} respawn_t;

static volatile sig_atomic_t got_hup, got_term, got_int, got_chld;

static struct {
    lh_config_t *cfg; /* the current generation's configuration */
    const char *path;
    unsigned gen;
    int nworkers; /* workers of the current generation */
    proc_t procs[MAX_PROCS];
    size_t nprocs;
    respawn_t respawn[MAX_WORKERS];
    int *fds; /* public sockets, then admin sockets */
    int *fd_kind;  /* per fd: 0 a listen address, 1 an admin.listen address, 2 systemd's */
    char **fd_key; /* per fd: its address or systemd name (its TLS is looked up by it) */
    size_t npub, nadmin;
    lh_control_server_t ctl;
    int ready_sent;
    unsigned alive_key; /* max_workers_alive as the file had it at start (0: derived) */

    /* A reload in progress. */
    int reloading;      /* 0, 1 = waiting for the new workers, 2 = for the old to drain */
    int reload_client;  /* fd waiting for the answer, or -1 */
    lh_config_t *new_cfg;
    unsigned new_gen;
    int new_nworkers;
    uint64_t reload_deadline_ms;
    unsigned reloads_ok, reloads_failed;

    int stopping;
    uint64_t stop_deadline_ms;
    uint64_t watchdog_usec;
    uint64_t next_hb_ms, next_watchdog_ms;
    unsigned hb_seq;

    /* Binary upgrade (upgrade.h). */
    char *exe;          /* the path to exec: this binary's, resolved at start */
    int exe_fd;         /* this image's binary, kept open for a way back; -1: none */
    unsigned upgrades_ok, upgrades_failed;
    pid_t check_pid;    /* the new binary's check running, or 0 */
    int check_fd;       /* its output */
    int check_client;   /* the fd waiting for the upgrade's answer, or -1 */
    uint64_t check_deadline_ms;
    int upgrading;      /* this new image's reload is the upgrade's: a failure goes back */
    int back_fd;        /* the old image's binary (upgrading), or -1 */
    char from_version[64];
} M;

static void on_signal(int sig)
{
    switch (sig) {
    case SIGHUP:
        got_hup = 1;
        break;
    case SIGTERM:
        got_term = 1;
        break;
    case SIGINT:
        got_int = 1;
        break;
    case SIGCHLD:
        got_chld = 1;
        break;
    }
}

static uint64_t now_ms(void)
{
    return lh_now_ms();
}

static int ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n > 0 ? (int)(n > MAX_WORKERS ? MAX_WORKERS : n) : 1;
}

static int workers_of(const lh_config_t *cfg)
{
    return cfg->workers > 0 ? cfg->workers : ncpus();
}

/* How many worker processes may be alive at once (the shared block's slots). */
static int alive_max_of(const lh_config_t *cfg)
{
    int n = 4 * workers_of(cfg);

    if (cfg->max_workers_alive > 0)
        return (int)cfg->max_workers_alive;
    if (n < DEFAULT_MIN_ALIVE)
        n = DEFAULT_MIN_ALIVE;
    return n > MAX_PROCS ? MAX_PROCS : n;
}

/* Respawns due for the serving generation: each will take a slot. */
static int respawns_pending(void)
{
    int n = 0;

    for (int i = 0; i < M.nworkers; i++)
        n += M.respawn[i].pending != 0;
    return n;
}

static size_t count(unsigned gen, int state)
{
    size_t n = 0;

    for (size_t i = 0; i < M.nprocs; i++)
        if ((gen == 0 || M.procs[i].gen == gen) && M.procs[i].state == state)
            n++;
    return n;
}

static size_t total_conns(void)
{
    size_t n = 0;

    for (size_t i = 0; i < M.nprocs; i++)
        n += M.procs[i].conns;
    return n;
}

/* Sends STATUS= (and other fields) to systemd; ignored when not under systemd. */
static void notify(const char *fields)
{
    char buf[512];
    size_t active = count(M.gen, P_ACTIVE), draining = count(0, P_DRAINING);

    snprintf(buf, sizeof(buf), "%s%sSTATUS=generation %u; workers %zu active, %zu draining; "
             "%zu connections",
             fields ? fields : "", fields ? "\n" : "", M.gen, active, draining, total_conns());
    sd_notify(0, buf);
}

static void notifyf(const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    sd_notify(0, buf);
}

static void send_to(proc_t *p, const char *msg)
{
    if (p->fd >= 0 && send(p->fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        lh_log(LH_LOG_DEBUG, "send to worker %d (pid %d): %s", p->slot, (int)p->pid,
               strerror(errno));
}

/* Sends msg with the descriptor fd (SCM_RIGHTS) to p. 0, or -1 (logged). */
static int send_fd_to(proc_t *p, const char *msg, int fd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {(void *)(uintptr_t)msg, strlen(msg)};
    struct msghdr mh = {0};
    struct cmsghdr *cm;

    memset(&u, 0, sizeof(u));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof(u.buf);
    cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    if (p->fd < 0 || sendmsg(p->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        lh_log(LH_LOG_WARNING, "handoff: %s to worker %d (pid %d): %s", msg, p->slot,
               (int)p->pid, p->fd < 0 ? "no channel" : strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * Live connection handoff: gives the retiring worker old and the new worker nw the two
 * ends of a SOCK_SEQPACKET pair ("handoff" to old, "adopt" to nw), before old hears
 * "drain". Over it old hands its WebSocket connections to nw (worker/handoff.c); the
 * master keeps no end and no state: a worker that dies only closes its end. On any
 * failure old simply drains as before.
 */
static void handoff_pair(proc_t *old, proc_t *nw)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        lh_log(LH_LOG_WARNING, "handoff: socketpair: %s; worker %d drains", strerror(errno),
               old->slot);
        return;
    }
    if (send_fd_to(nw, "adopt", sv[1]) == 0)
        send_fd_to(old, "handoff", sv[0]);
    close(sv[0]);
    close(sv[1]);
}

/* Pairs every worker the reload retires (gen < new_gen, active) with a worker of the new
 * generation, round robin, when the new configuration has handoff.enabled. */
static void handoff_pairs(void)
{
    proc_t *nws[MAX_PROCS];
    size_t n = 0, k = 0;

    if (M.new_cfg == NULL || !M.new_cfg->handoff.enabled)
        return;
    for (size_t i = 0; i < M.nprocs; i++)
        if (M.procs[i].gen == M.new_gen && M.procs[i].state == P_ACTIVE)
            nws[n++] = &M.procs[i];
    for (size_t i = 0; i < M.nprocs && n > 0; i++) {
        proc_t *p = &M.procs[i];

        if (p->gen < M.new_gen && (p->state == P_ACTIVE || p->state == P_STARTING))
            handoff_pair(p, nws[k++ % n]);
    }
}

/* ---- Workers ---- */

static void child_main(int chan, int slot, const lh_config_t *cfg) __attribute__((noreturn));

/* A retiring worker's new rules come from the file the master just reloaded (without its
 * certificates: lh_config_load_rules). */
static lh_config_t *reload_config(char *err, size_t errlen)
{
    return lh_config_load_rules(M.path, err, errlen);
}

static void child_main(int chan, int slot, const lh_config_t *cfg)
{
    sigset_t none;
    char tag[32];
    lh_worker_t *w;

    sigemptyset(&none);
    signal(SIGHUP, SIG_IGN); /* reload is the master's business */
    signal(SIGCHLD, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    /* Only the master talks to systemd. */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    snprintf(tag, sizeof(tag), "worker %d", slot);
    lh_log_set_tag(tag);
    lh_log_level = cfg->log.level;
    w = lh_worker_new(cfg, slot, M.fds, M.npub + M.nadmin, M.nadmin, chan);
    if (w == NULL) {
        lh_log(LH_LOG_ERR, "cannot start");
        _exit(1);
    }
    if (lh_worker_listen_tls(w, M.fd_kind, (const char *const *)M.fd_key) < 0) {
        lh_log(LH_LOG_ERR, "cannot start");
        _exit(1);
    }
    w->load_config = reload_config;
    lh_worker_send_master(w, "ready");
    lh_worker_run(w);
    lh_worker_free(w);
    /* Waits for cnats's threads (a subscription's close message may still be with its
     * delivery thread), so nothing of it is left behind. */
    nats_CloseAndWait(2000);
    lh_log(LH_LOG_INFO, "exited");
    exit(0);
}

/* Mirrors the master's view into the shared metrics header. */
static void publish_header(void)
{
    if (lh_shm == NULL)
        return;
    atomic_store(&lh_shm->generation, M.gen);
    atomic_store(&lh_shm->workers_active, (uint32_t)count(M.gen, P_ACTIVE));
    atomic_store(&lh_shm->workers_draining, (uint32_t)count(0, P_DRAINING));
    atomic_store(&lh_shm->reloads_ok, M.reloads_ok);
    atomic_store(&lh_shm->reloads_failed, M.reloads_failed);
    atomic_store(&lh_shm->upgrades_ok, M.upgrades_ok);
    atomic_store(&lh_shm->upgrades_failed, M.upgrades_failed);
}

static proc_t *spawn(int slot, unsigned gen, const lh_config_t *cfg)
{
    int sv[2];
    pid_t pid;
    proc_t *p;
    int mslot;

    if (M.nprocs == MAX_PROCS) {
        lh_log(LH_LOG_ERR, "too many worker processes; not starting another");
        return NULL;
    }
    /* Never a worker without a slot: it would be invisible to the others' channel
     * table, so messages between it and them would be lost. */
    mslot = lh_metrics_slot_alloc(slot, 0, gen);
    if (mslot < 0) {
        lh_log(LH_LOG_ERR, "no free worker slot: %zu workers alive, max_workers_alive %d; "
               "not starting worker %d of generation %u", M.nprocs, lh_shm->nslots, slot, gen);
        return NULL;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        lh_log(LH_LOG_ERR, "socketpair: %s", strerror(errno));
        lh_metrics_slot_release(mslot);
        return NULL;
    }
    pid = fork();
    if (pid < 0) {
        lh_log(LH_LOG_ERR, "fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        lh_metrics_slot_release(mslot);
        return NULL;
    }
    if (pid == 0) {
        lh_metrics_use_slot(mslot);
        close(sv[0]);
        lh_control_server_close_fds(&M.ctl);
        if (M.reload_client >= 0)
            close(M.reload_client);
        /* An upgrade's client and check, and the binaries kept for it, are the
         * master's: a worker holding the client would delay its answer's EOF. */
        if (M.check_client >= 0)
            close(M.check_client);
        if (M.check_fd >= 0)
            close(M.check_fd);
        if (M.exe_fd >= 0)
            close(M.exe_fd);
        if (M.back_fd >= 0)
            close(M.back_fd);
        for (size_t i = 0; i < M.nprocs; i++)
            close(M.procs[i].fd);
        child_main(sv[1], slot, cfg);
    }
    close(sv[1]);
    p = &M.procs[M.nprocs++];
    memset(p, 0, sizeof(*p));
    p->pid = pid;
    p->fd = sv[0];
    p->slot = slot;
    p->gen = gen;
    p->state = P_STARTING;
    p->started_ms = p->hb_ok_ms = now_ms();
    p->mslot = mslot;
    atomic_store(&lh_shm->slots[mslot].pid, (int32_t)pid);
    lh_log(LH_LOG_INFO, "worker %d started (pid %d, generation %u)", slot, (int)pid, gen);
    return p;
}

static void proc_remove(proc_t *p)
{
    if (p->fd >= 0)
        close(p->fd);
    lh_metrics_slot_release(p->mslot);
    *p = M.procs[--M.nprocs];
    publish_header();
}

static void upgrade_reload_done(int ok, const char *msg);

static void finish_reload(int ok, const char *fmt, ...)
{
    char msg[1100];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (M.upgrading) {
        /* This reload is a binary upgrade's second half (upgrade_reload_done). */
        M.reloading = 0;
        upgrade_reload_done(ok, msg);
        publish_header();
        return;
    }
    if (ok) {
        M.reloads_ok++;
        lh_log(LH_LOG_NOTICE, "reload done: %s", msg);
        notify("READY=1");
        lh_control_reply(M.reload_client, "ok %s", msg);
    } else {
        M.reloads_failed++;
        lh_log(LH_LOG_ERR, "reload failed: %s", msg);
        notifyf("READY=1\nSTATUS=reload failed (generation %u still serving): %s", M.gen, msg);
        lh_control_reply(M.reload_client, "error %s", msg);
    }
    M.reload_client = -1;
    M.reloading = 0;
    publish_header();
}

static void abort_reload(const char *why)
{
    for (size_t i = 0; i < M.nprocs; i++) {
        if (M.procs[i].gen == M.new_gen) {
            M.procs[i].state = P_STOPPING;
            kill(M.procs[i].pid, SIGKILL);
        }
    }
    lh_config_free(M.new_cfg);
    M.new_cfg = NULL;
    finish_reload(0, "%s", why);
}

/* Logs lh_config_warnings' lines, at start and at each reload. */
static void log_warnings(const lh_config_t *cfg)
{
    char buf[1024];
    const char *p = buf;

    if (lh_config_warnings(cfg, buf, sizeof(buf)) == 0)
        return;
    while (*p) {
        size_t n = strcspn(p, "\n");

        lh_log(LH_LOG_WARNING, "configuration: %.*s", (int)n, p);
        p += n + (p[n] == '\n');
    }
}

/* Warns about what a reload to cfg changes but cannot apply before a restart. */
static void warn_restart_only(const lh_config_t *cfg)
{
    if (!lh_strlist_equal(&cfg->listen, &M.cfg->listen) ||
        !lh_strlist_equal(&cfg->admin.listen, &M.cfg->admin.listen))
        lh_log(LH_LOG_WARNING, "listen addresses changed: they apply at the next restart");
    /* Modules live in the master, which the new workers are forked from. */
    if (!lh_modules_same(cfg))
        lh_log(LH_LOG_WARNING, "modules changed: module changes apply at the next restart; "
               "the new workers keep the %zu modules loaded at start", lh_modules_count());
    if (cfg->max_workers_alive != M.alive_key)
        lh_log(LH_LOG_WARNING, "max_workers_alive changed: it applies at the next restart; "
               "%d until then", lh_shm->nslots);
    if (strcmp(cfg->control_socket, M.cfg->control_socket) != 0)
        lh_log(LH_LOG_WARNING, "control_socket changed: it applies at the next restart; "
               "this master listens at %s until then", M.cfg->control_socket);
}

/*
 * The whole new generation of cfg needs slots next to the live ones (and those that a
 * pending respawn takes); otherwise the reload is refused before anything starts, and
 * the running generations keep serving. Returns 1 when there is room; else 0, with the
 * reload finished as failed.
 */
static int reload_has_room(const lh_config_t *cfg)
{
    int want = workers_of(cfg), taken = (int)M.nprocs + respawns_pending();

    if (want > lh_shm->nslots) {
        finish_reload(0, "workers %d is above max_workers_alive %d, which applies at "
                      "the next restart", want, lh_shm->nslots);
        return 0;
    }
    if (want > lh_shm->nslots - taken) {
        finish_reload(0, "no room for the %d workers of a new generation: %d workers "
                      "alive of max_workers_alive %d (%zu draining until their clients "
                      "leave or drain_timeout_ms %u passes)", want, taken, lh_shm->nslots,
                      count(0, P_DRAINING), M.cfg->drain_timeout_ms);
        return 0;
    }
    return 1;
}

/* Starts a reload, answered on client (-1: none, SIGHUP) when it is done or refused. */
static void start_reload(int client)
{
    char err[1024];
    lh_config_t *cfg;
    struct timespec ts;

    if (M.reloading || M.stopping || M.check_pid > 0) {
        lh_control_reply(client, "error %s",
                         M.stopping ? "stopping" : M.check_pid > 0 ? "an upgrade is in progress"
                         : "a reload is already in progress");
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* An upgrade's reload: the old image said RELOADING=1 already. */
    if (!M.upgrading)
        notifyf("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
                (unsigned long long)ts.tv_sec * 1000000ull +
                    (unsigned long long)ts.tv_nsec / 1000, M.path);
    M.reloading = 1;
    M.reload_client = client;
    lh_log(LH_LOG_NOTICE, "reloading %s", M.path);
    cfg = lh_config_load_file(M.path, err, sizeof(err));
    if (cfg == NULL) {
        finish_reload(0, "%s", err);
        return;
    }
    lh_auth_register_labels(cfg);
    log_warnings(cfg);
    warn_restart_only(cfg);
    if (!reload_has_room(cfg)) {
        lh_config_free(cfg);
        return;
    }
    M.new_cfg = cfg;
    M.new_gen = M.gen + 1;
    M.new_nworkers = workers_of(cfg);
    M.reload_deadline_ms = now_ms() + READY_TIMEOUT_MS;
    for (int i = 0; i < M.new_nworkers; i++) {
        if (spawn(i, M.new_gen, cfg) == NULL) {
            abort_reload("cannot start the new workers");
            return;
        }
    }
}

/* Called whenever a worker changes state: moves a reload along. */
static void reload_progress(void)
{
    if (M.reloading == 1 && count(M.new_gen, P_ACTIVE) == (size_t)M.new_nworkers) {
        /* The new generation accepts: the old one stops accepting and drains, handing
         * its connections over first when it can. */
        handoff_pairs();
        for (size_t i = 0; i < M.nprocs; i++) {
            proc_t *p = &M.procs[i];

            if (p->gen < M.new_gen && (p->state == P_ACTIVE || p->state == P_STARTING)) {
                send_to(p, "drain");
                p->state = P_DRAINING;
                atomic_store(&lh_shm->slots[p->mslot].state, LH_SLOT_DRAINING);
                p->hb_ok_ms = 0; /* "draining" acknowledges */
            } else if (p->gen < M.new_gen && p->state == P_DRAINING) {
                /* Retired by an earlier reload: its connections obey the newest rules. */
                send_to(p, "rules");
            }
        }
        M.reloading = 2;
    }
    if (M.reloading == 2) {
        for (size_t i = 0; i < M.nprocs; i++)
            if (M.procs[i].gen < M.new_gen && M.procs[i].state == P_DRAINING &&
                M.procs[i].hb_ok_ms == 0)
                return; /* not yet acknowledged */
        for (size_t i = 0; i < M.nprocs; i++)
            if (M.procs[i].gen == M.new_gen)
                atomic_store(&lh_shm->slots[M.procs[i].mslot].state, LH_SLOT_ACTIVE);
        lh_config_free(M.cfg);
        M.cfg = M.new_cfg;
        M.new_cfg = NULL;
        M.gen = M.new_gen;
        M.nworkers = M.new_nworkers;
        lh_log_level = M.cfg->log.level;
        memset(M.respawn, 0, sizeof(M.respawn));
        publish_header();
        finish_reload(1, "generation %u serving with %d workers", M.gen, M.nworkers);
    }
}

static void check_ready(void)
{
    if (!M.ready_sent && !M.reloading && count(M.gen, P_ACTIVE) == (size_t)M.nworkers) {
        M.ready_sent = 1;
        lh_log(LH_LOG_NOTICE, "ready: %d workers accepting", M.nworkers);
        notify("READY=1");
    }
}

static void on_worker_msg(proc_t *p)
{
    char msg[128];
    ssize_t n = recv(p->fd, msg, sizeof(msg) - 1, MSG_DONTWAIT);

    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        /* The worker closed its end: it is exiting; SIGCHLD does the rest. */
        close(p->fd);
        p->fd = -1;
        return;
    }
    msg[n] = '\0';
    if (strcmp(msg, "ready") == 0) {
        if (p->state == P_STARTING)
            p->state = P_ACTIVE;
        p->hb_ok_ms = now_ms();
        if (p->gen == M.gen)
            M.respawn[p->slot].pending = 0;
        /* A worker of the serving generation (start, respawn) shows as active now; a new
         * generation's only when the reload commits and the old one is draining. */
        if (p->gen == M.gen && !M.reloading)
            atomic_store(&lh_shm->slots[p->mslot].state, LH_SLOT_ACTIVE);
        publish_header();
        reload_progress();
        check_ready();
    } else if (strcmp(msg, "draining") == 0) {
        p->hb_ok_ms = now_ms();
        reload_progress();
    } else if (strncmp(msg, "hb ", 3) == 0) {
        unsigned seq;
        size_t conns;

        if (sscanf(msg + 3, "%u %zu", &seq, &conns) == 2) {
            if (p->state != P_DRAINING || p->hb_ok_ms != 0)
                p->hb_ok_ms = now_ms();
            p->conns = conns;
        }
    }
}

static void upgrade_check_exited(int status);

static void describe_exit(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "signal %s%s", strsignal(WTERMSIG(status)),
                 WCOREDUMP(status) ? " (core dumped)" : "");
    else
        snprintf(buf, cap, "status %d", status);
}

/* A worker of the serving generation died: schedules its respawn, at once, or with a
 * backoff that doubles while it keeps dying at start. */
static void schedule_respawn(const proc_t *p, pid_t pid, const char *how)
{
    respawn_t *r = &M.respawn[p->slot];
    uint64_t lived = now_ms() - p->started_ms;

    r->pending = 1;
    if (lh_shm != NULL)
        atomic_fetch_add(&lh_shm->worker_restarts, 1);
    if (lived < QUICK_EXIT_MS) {
        r->quick_fails++;
        r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : 100;
        if (r->backoff_ms > MAX_BACKOFF_MS)
            r->backoff_ms = MAX_BACKOFF_MS;
        r->next_ms = now_ms() + r->backoff_ms;
        lh_log(LH_LOG_ERR, "worker %d (pid %d) died %llu ms after start (%s), %u times "
               "in a row; next try in %u ms", p->slot, (int)pid,
               (unsigned long long)lived, how, r->quick_fails, r->backoff_ms);
        notifyf("STATUS=worker %d keeps dying at start (%s); retrying in %u ms",
                p->slot, how, r->backoff_ms);
    } else {
        r->quick_fails = 0;
        r->backoff_ms = 0;
        r->next_ms = now_ms();
        lh_log(LH_LOG_ERR, "worker %d (pid %d) died: %s; replacing it", p->slot,
               (int)pid, how);
    }
}

/*
 * A worker died without saying goodbye (a signal, an error exit): its clients' leave
 * events were never sent. One live worker of this node is told ("gone PID"); it tells the
 * subscribers of join_leave channels, its own and, through NATS, everyone's (presence.c).
 */
static void tell_gone(pid_t pid)
{
    char msg[32];

    snprintf(msg, sizeof(msg), "gone %d", (int)pid);
    for (size_t i = 0; i < M.nprocs; i++) {
        if (M.procs[i].pid != pid && M.procs[i].state == P_ACTIVE) {
            send_to(&M.procs[i], msg);
            return;
        }
    }
}

/* Collects the workers that exited (SIGCHLD): logs how, fails a reload whose new worker
 * died, schedules respawns for the serving generation, and frees their slots. */
static void reap(void)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        char how[96];
        proc_t *p = NULL;

        if (pid == M.check_pid) {
            upgrade_check_exited(status);
            continue;
        }
        for (size_t i = 0; i < M.nprocs; i++)
            if (M.procs[i].pid == pid)
                p = &M.procs[i];
        if (p == NULL)
            continue;
        describe_exit(status, how, sizeof(how));
        if (!M.stopping && p->state != P_STARTING && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            tell_gone(pid);
        if (p->state == P_DRAINING || p->state == P_STOPPING || M.stopping) {
            lh_log(LH_LOG_INFO, "worker %d (pid %d, generation %u) left: %s", p->slot, (int)pid,
                   p->gen, how);
        } else if (M.reloading && p->gen == M.new_gen) {
            lh_log(LH_LOG_ERR, "new worker %d (pid %d) died: %s", p->slot, (int)pid, how);
            proc_remove(p);
            abort_reload("a new worker died while starting");
            continue;
        } else if (p->gen == M.gen) {
            schedule_respawn(p, pid, how);
        }
        proc_remove(p);
    }
}

static void respawn_due(void)
{
    uint64_t now = now_ms();

    if (M.stopping)
        return;
    for (int i = 0; i < M.nworkers; i++) {
        respawn_t *r = &M.respawn[i];

        if (r->pending && now >= r->next_ms) {
            r->pending = 0;
            if (spawn(i, M.gen, M.cfg) == NULL) {
                r->pending = 1;
                r->next_ms = now + 1000;
            }
        }
    }
}

static void heartbeat(void)
{
    uint64_t now = now_ms();
    char msg[32];

    if (now >= M.next_hb_ms) {
        M.next_hb_ms = now + HB_INTERVAL_MS;
        snprintf(msg, sizeof(msg), "hb %u", ++M.hb_seq);
        for (size_t i = 0; i < M.nprocs; i++) {
            proc_t *p = &M.procs[i];

            if (p->state == P_ACTIVE && now - p->hb_ok_ms > HB_DEAD_MS) {
                lh_log(LH_LOG_ERR, "worker %d (pid %d) has not answered for %llu ms; killing it",
                       p->slot, (int)p->pid, (unsigned long long)(now - p->hb_ok_ms));
                kill(p->pid, SIGKILL);
                p->hb_ok_ms = now; /* once */
            }
            send_to(p, msg);
        }
        if (!M.reloading && M.ready_sent)
            notify(NULL);
    }
    if (M.watchdog_usec && now >= M.next_watchdog_ms) {
        int healthy = 1;

        M.next_watchdog_ms = now + M.watchdog_usec / 2000;
        for (size_t i = 0; i < M.nprocs; i++)
            if (M.procs[i].state == P_ACTIVE && now - M.procs[i].hb_ok_ms > 3 * HB_INTERVAL_MS)
                healthy = 0;
        if (healthy)
            sd_notify(0, "WATCHDOG=1");
        else
            lh_log(LH_LOG_WARNING, "a worker misses heartbeats: not petting the watchdog");
    }
}

static void upgrade_check_fail(int incompatible, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void begin_stop(const char *why)
{
    if (M.stopping)
        return;
    M.stopping = 1;
    lh_log(LH_LOG_NOTICE, "%s: stopping gracefully", why);
    notify("STOPPING=1");
    M.stop_deadline_ms = now_ms() + M.cfg->shutdown_timeout_ms + 5000;
    for (size_t i = 0; i < M.nprocs; i++) {
        send_to(&M.procs[i], "stop");
        M.procs[i].state = P_STOPPING;
    }
    if (M.reloading) {
        lh_config_free(M.new_cfg);
        M.new_cfg = NULL;
        finish_reload(0, "stopping");
    }
    if (M.check_pid > 0)
        upgrade_check_fail(0, "stopping");
}

/* ---- Binary upgrade (upgrade.h): the master's side ---- */

static void notify_reloading(const char *what)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    notifyf("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s",
            (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000,
            what);
}

/* The state of this image, borrowing M's strings: free with state_release. */
static int state_fill(lh_upgrade_state_t *st, int exe_fd, int client, const char *failed)
{
    memset(st, 0, sizeof(*st));
    snprintf(st->version, sizeof(st->version), "%s", LH_VERSION);
    st->exe = M.exe;
    st->exe_fd = exe_fd;
    st->config = (char *)M.path;
    st->node_id = lh_node_id;
    st->gen = M.gen;
    st->nworkers = M.nworkers;
    st->ready_sent = M.ready_sent;
    st->alive_key = M.alive_key;
    st->reloads_ok = M.reloads_ok;
    st->reloads_failed = M.reloads_failed;
    st->upgrades_ok = M.upgrades_ok;
    st->upgrades_failed = M.upgrades_failed;
    st->ctl_fd = M.ctl.fd;
    snprintf(st->ctl_path, sizeof(st->ctl_path), "%s", M.ctl.path);
    st->client_fd = client;
    st->shm_fd = lh_metrics_shm_fd();
    st->shm_addr = (uintptr_t)lh_shm;
    st->shm_nslots = lh_shm->nslots;
    st->npub = M.npub;
    st->nadmin = M.nadmin;
    st->nsocks = M.npub + M.nadmin;
    st->socks = calloc(st->nsocks + 1, sizeof(*st->socks));
    st->procs = calloc(M.nprocs + 1, sizeof(*st->procs));
    st->respawn = calloc((size_t)M.nworkers + 1, sizeof(*st->respawn));
    if (st->socks == NULL || st->procs == NULL || st->respawn == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < st->nsocks; i++) {
        st->socks[i].fd = M.fds[i];
        st->socks[i].kind = M.fd_kind[i];
        st->socks[i].key = M.fd_key[i];
    }
    for (size_t i = 0; i < M.nprocs; i++) {
        const proc_t *p = &M.procs[i];

        st->procs[i] = (lh_upgrade_proc_t){p->pid, p->fd, p->slot, p->state, p->mslot, p->gen,
                                           p->started_ms, p->hb_ok_ms, p->conns};
    }
    st->nprocs = M.nprocs;
    for (int i = 0; i < M.nworkers; i++)
        if (M.respawn[i].pending)
            st->respawn[st->nrespawn++] = i;
    if (failed != NULL)
        snprintf(st->failed, sizeof(st->failed), "%s", failed);
    return 0;
}

static void state_release(lh_upgrade_state_t *st)
{
    free(st->socks);
    free(st->procs);
    free(st->respawn);
}

/*
 * Writes st and execs: the binary of target_fd, or st->exe when target_fd is -1.
 * Returns only when that failed: -errno, with every fd as it was.
 */
static int exec_state(lh_upgrade_state_t *st, int target_fd)
{
    int sfd = lh_upgrade_write(st), rc;

    if (sfd < 0)
        return sfd;
    lh_control_server_drop_clients(&M.ctl, "the master is re-executing (binary upgrade); "
                                   "try again");
    lh_upgrade_cloexec(st, 0);
    lh_log(LH_LOG_NOTICE, "re-executing %s%s (%zu workers keep running)", st->exe,
           target_fd >= 0 ? " (the binary this master was upgraded from)" : "", st->nprocs);
    rc = lh_upgrade_exec(st->exe, target_fd, sfd, st->config);
    lh_upgrade_cloexec(st, 1);
    close(sfd);
    return rc;
}

/* An upgrade that failed in this image, with the old workers serving: counts it,
 * answers client and tells systemd that the reload is over. */
static void upgrade_failed(int client, int incompatible, const char *why)
{
    M.upgrades_failed++;
    publish_header();
    lh_log(LH_LOG_ERR, "upgrade failed: %s; lhttpd %s keeps serving (generation %u)", why,
           LH_VERSION, M.gen);
    notifyf("READY=1\nSTATUS=upgrade failed (lhttpd %s, generation %u still serving): %s",
            LH_VERSION, M.gen, why);
    lh_control_reply(client, "error %s%s; lhttpd %s keeps serving (generation %u)",
                     incompatible ? "" : "failed: ", why, LH_VERSION, M.gen);
}

static void upgrade_check_fail(int incompatible, const char *fmt, ...)
{
    char why[900];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (M.check_pid > 0)
        kill(M.check_pid, SIGKILL); /* reaped as an unknown child */
    if (M.check_fd >= 0)
        close(M.check_fd);
    M.check_pid = 0;
    M.check_fd = -1;
    upgrade_failed(M.check_client, incompatible, why);
    M.check_client = -1;
}

/* The check child exited: execs the new binary when it said "ok". */
static void upgrade_check_exited(int status)
{
    char out[800], how[96], err[256];
    ssize_t n = read(M.check_fd, out, sizeof(out) - 1);
    lh_upgrade_state_t st;
    int client, rc;

    out[n > 0 ? n : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    close(M.check_fd);
    M.check_fd = -1;
    M.check_pid = 0;
    describe_exit(status, how, sizeof(how));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || strncmp(out, "ok ", 3) != 0) {
        int incompatible = WIFEXITED(status) &&
                           WEXITSTATUS(status) == LH_UPGRADE_EXIT_INCOMPATIBLE &&
                           strncmp(out, "incompatible", 12) == 0;

        if (incompatible)
            upgrade_check_fail(1, "%s", out);
        else
            upgrade_check_fail(0, "%s: %s (%s)", M.exe, out[0] ? out : "no output", how);
        return;
    }
    lh_log(LH_LOG_NOTICE, "upgrade: %s says %s; re-executing it", M.exe, out);
    client = M.check_client;
    M.check_client = -1;
    rc = state_fill(&st, M.exe_fd, client, NULL);
    if (rc == 0)
        rc = exec_state(&st, -1);
    state_release(&st);
    snprintf(err, sizeof(err), "exec %s: %s", M.exe, strerror(-rc));
    upgrade_failed(client, 0, err);
}

static void control_upgrade(int fd, void *arg)
{
    char err[600], what[300];

    if (M.stopping || M.reloading || M.check_pid > 0) {
        lh_control_reply(fd, "error %s; try again when it is done",
                         M.stopping ? "stopping" : M.check_pid > 0 ? "an upgrade is in progress"
                         : "a reload is in progress");
        return;
    }
    if (M.exe == NULL) {
        lh_control_reply(fd, "error upgrade failed: this master does not know its binary's "
                         "path");
        return;
    }
    snprintf(what, sizeof(what), "upgrading to %s", M.exe);
    notify_reloading(what);
    lh_log(LH_LOG_NOTICE, "upgrade: checking %s", M.exe);
    M.check_client = fd;
    M.check_pid = lh_upgrade_check_start(M.exe, M.path, &M.check_fd, err, sizeof(err));
    if (M.check_pid < 0) {
        M.check_pid = 0;
        M.check_fd = -1;
        upgrade_check_fail(0, "%s", err);
        return;
    }
    M.check_deadline_ms = now_ms() + LH_UPGRADE_CHECK_MS;
}

/* The path and an fd of this image's binary, for a later upgrade and its way back. */
static void own_binary(void)
{
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    const char *del = " (deleted)";

    if (M.exe == NULL && n > 0) {
        buf[n] = '\0';
        if ((size_t)n > strlen(del) && strcmp(buf + n - strlen(del), del) == 0)
            buf[n - strlen(del)] = '\0';
        M.exe = strdup(buf);
    }
    M.exe_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
}

/* The new image's reload ended: the upgrade is done, or this image goes back. */
static void upgrade_reload_done(int ok, const char *msg)
{
    char why[900], err[1100];
    lh_upgrade_state_t st;
    int client = M.reload_client, rc;

    M.upgrading = 0;
    M.reload_client = -1;
    if (ok) {
        M.upgrades_ok++;
        publish_header();
        if (M.back_fd >= 0)
            close(M.back_fd);
        M.back_fd = -1;
        own_binary();
        lh_log(LH_LOG_NOTICE, "upgrade done: lhttpd %s -> %s; %s", M.from_version, LH_VERSION,
               msg);
        notify("READY=1");
        lh_control_reply(client, "ok upgraded lhttpd %s -> %s (pid %d): %s", M.from_version,
                         LH_VERSION, (int)getpid(), msg);
        return;
    }
    if (M.stopping) {
        /* A stop came during the exec or the reload: this image stops (going back would
         * lose the stop, which only this image has seen). */
        upgrade_failed(client, 0, "stopping");
        return;
    }
    snprintf(why, sizeof(why), "lhttpd %s (%.300s): %.500s", LH_VERSION, M.exe, msg);
    lh_log(LH_LOG_ERR, "upgrade: %s; going back to lhttpd %s", why, M.from_version);
    rc = M.back_fd >= 0 ? state_fill(&st, M.back_fd, client, why) : -EBADF;
    if (rc == 0)
        rc = exec_state(&st, M.back_fd);
    if (M.back_fd >= 0)
        state_release(&st);
    snprintf(err, sizeof(err), "%.900s; going back to lhttpd %s failed (%s), so this master "
             "runs lhttpd %s with the old workers", why, M.from_version, strerror(-rc),
             LH_VERSION);
    upgrade_failed(client, 0, err);
}

/* ---- Control socket: the commands (the socket itself is control.c's) ---- */

static void control_reload(int fd, void *arg)
{
    start_reload(fd);
}

static void control_status(int fd, void *arg)
{
    char buf[1024];
    size_t off = 0;

    off += (size_t)snprintf(buf + off, sizeof(buf) - off,
                            "ok generation %u; workers %zu active, %zu draining; "
                            "%zu connections; reloads %u ok, %u failed\n"
                            "binary lhttpd %s (%.300s); upgrades %u ok, %u failed",
                            M.gen, count(M.gen, P_ACTIVE), count(0, P_DRAINING), total_conns(),
                            M.reloads_ok, M.reloads_failed, LH_VERSION,
                            M.exe ? M.exe : "?", M.upgrades_ok, M.upgrades_failed);
    for (size_t i = 0; i < M.nprocs && off < sizeof(buf) - 80; i++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off,
                                "\nworker %d pid %d generation %u %s %zu connections",
                                M.procs[i].slot, (int)M.procs[i].pid, M.procs[i].gen,
                                state_names[M.procs[i].state], M.procs[i].conns);
    lh_control_reply(fd, "%s", buf);
}

static void control_stop(int fd, void *arg)
{
    lh_control_reply(fd, "ok stopping");
    begin_stop("lhttpd -s stop");
}

static const lh_control_ops_t control_ops = {control_reload, control_status, control_stop,
                                             control_upgrade};

/* ---- Sockets ---- */

/* Takes the sockets systemd passed, by name: "admin" is the admin socket, any other
 * name (or none) is public. Returns how many, 0 when systemd passed none. */
static int sockets_from_systemd(void)
{
    char **names = NULL;
    int n = sd_listen_fds_with_names(1, &names);
    int *fds;

    if (n <= 0)
        return n < 0 ? n : 0;
    fds = calloc((size_t)n, sizeof(int));
    M.fd_kind = calloc((size_t)n, sizeof(int));
    M.fd_key = calloc((size_t)n, sizeof(char *));
    if (fds == NULL || M.fd_kind == NULL || M.fd_key == NULL)
        return -ENOMEM;
    /* Public first, then admin: the order the workers expect. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            int fd = SD_LISTEN_FDS_START + i;
            int admin = names && names[i] && strcmp(names[i], "admin") == 0;

            if (admin != pass)
                continue;
            if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
                lh_log(LH_LOG_WARNING, "systemd passed fd %d (%s) that is not a listening "
                       "stream socket; ignoring it", fd, names && names[i] ? names[i] : "?");
                continue;
            }
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            fcntl(fd, F_SETFD, FD_CLOEXEC);
            fds[M.npub + M.nadmin] = fd;
            M.fd_kind[M.npub + M.nadmin] = 2;
            /* The admin socket stays plain; a public one speaks TLS when tls_sockets
             * names it. */
            if (!admin && names && names[i])
                M.fd_key[M.npub + M.nadmin] = strdup(names[i]);
            if (admin)
                M.nadmin++;
            else
                M.npub++;
            lh_log(LH_LOG_INFO, "using %s socket fd %d from systemd", admin ? "admin" : "public",
                   fd);
        }
    }
    if (names) {
        for (int i = 0; i < n; i++)
            free(names[i]);
        free(names);
    }
    M.fds = fds;
    return n;
}

static int sockets_by_hand(const lh_config_t *cfg)
{
    char err[512];
    int *pub = NULL, *adm = NULL;
    size_t np = 0, na = 0;

    if (lh_listen_open(&cfg->listen, &pub, &np, err, sizeof(err)) < 0 ||
        lh_listen_open(&cfg->admin.listen, &adm, &na, err, sizeof(err)) < 0) {
        lh_log(LH_LOG_ERR, "%s", err);
        return -1;
    }
    M.fds = realloc(pub, (np + na + 1) * sizeof(int));
    if (M.fds == NULL)
        return -1;
    memcpy(M.fds + np, adm, na * sizeof(int));
    free(adm);
    M.fd_kind = calloc(np + na + 1, sizeof(int));
    M.fd_key = calloc(np + na + 1, sizeof(char *));
    if (M.fd_kind == NULL || M.fd_key == NULL)
        return -1;
    for (size_t i = 0; i < np + na; i++) {
        M.fd_kind[i] = i < np ? 0 : 1;
        M.fd_key[i] = strdup(i < np ? cfg->listen.items[i] : cfg->admin.listen.items[i - np]);
        if (M.fd_key[i] == NULL)
            return -1;
    }
    M.npub = np;
    M.nadmin = na;
    return 0;
}

/* ---- Start ---- */

/* The handlers only set flags; the signals stay blocked except while ppoll waits. */
static void signals_setup(void)
{
    struct sigaction sa;
    sigset_t block;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&block);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, NULL);
}

/*
 * The registry, before anything is opened, so that a module that fails leaves nothing to
 * undo. Built-ins first, so a module may replace a built-in processor (a later
 * registration wins); module filters before pub/sub and upstream, so that what they add
 * to a message (a timestamp header) is in what gets published or forwarded. Returns 0,
 * or -1 (logged) when a module cannot be loaded.
 */
static int registry_setup(const lh_config_t *cfg)
{
    char err[1024];

    lh_builtin_register();
    if (lh_modules_load(cfg, err, sizeof(err)) != 0) {
        lh_log(LH_LOG_ERR, "%s; not starting", err);
        return -1;
    }
    lh_pubsub_register();
    lh_upstream_register();
    lh_hist_register();
    lh_presence_register();
    lh_node_id_init();
    return 0;
}

/* The shared block, with a slot for each worker that may be alive at once. Returns 0,
 * or -1 (logged). */
static int shm_setup(const lh_config_t *cfg)
{
    int alive = alive_max_of(cfg), rc;

    M.alive_key = cfg->max_workers_alive;
    if (M.nworkers > alive) {
        lh_log(LH_LOG_ERR, "max_workers_alive %d is below workers (%d, \"auto\" on this "
               "host); not starting", alive, M.nworkers);
        return -1;
    }
    /* Without the shared block the workers cannot find each other's channels, so
     * messages between workers would be lost: no start rather than that. */
    rc = lh_metrics_init(alive);
    if (rc < 0) {
        lh_log(LH_LOG_ERR, "shared memory for %d worker slots (%zu bytes): %s; not "
               "starting", alive, lh_metrics_shm_bytes(alive), strerror(-rc));
        return -1;
    }
    lh_log(LH_LOG_INFO, "shared memory: %d worker slots (max_workers_alive), %zu MiB of "
           "address space, used as workers touch it", alive,
           lh_metrics_shm_bytes(alive) >> 20);
    return 0;
}

/* The listening sockets: systemd's if it passed any, else those of cfg. Returns 0, or
 * -1 (logged). */
static int sockets_setup(const lh_config_t *cfg)
{
    int rc = sockets_from_systemd();

    if (rc < 0) {
        lh_log(LH_LOG_ERR, "sd_listen_fds_with_names: %s", strerror(-rc));
        return -1;
    }
    if (rc == 0 && sockets_by_hand(cfg) < 0)
        return -1;
    if (M.npub == 0) {
        lh_log(LH_LOG_ERR, "no public socket to serve on");
        return -1;
    }
    return 0;
}

/* Everything before the loop, ending with the first generation's workers. Returns 0,
 * or -1 (logged) when the master must not start. */
static int master_setup(lh_config_t *cfg, const char *path)
{
    uint64_t usec = 0;

    memset(&M, 0, sizeof(M));
    M.cfg = cfg;
    M.path = path;
    M.gen = 1;
    lh_control_server_init(&M.ctl, &control_ops, NULL);
    M.reload_client = M.check_client = M.check_fd = M.back_fd = -1;
    own_binary();
    lh_log_set_tag("master");
    lh_log_level = cfg->log.level;
    signals_setup();
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any fork or thread */
    if (registry_setup(cfg) < 0)
        return -1;
    M.nworkers = workers_of(cfg);
    if (shm_setup(cfg) < 0)
        return -1;
    lh_auth_register_labels(cfg);
    publish_header();
    if (sockets_setup(cfg) < 0)
        return -1;
    if (lh_control_server_open(&M.ctl, cfg->control_socket) < 0)
        return -1;
    if (sd_watchdog_enabled(0, &usec) > 0)
        M.watchdog_usec = usec;
    lh_log(LH_LOG_NOTICE, "lhttpd %s starting %d workers (pid %d)", LH_VERSION, M.nworkers,
           (int)getpid());
    log_warnings(cfg);
    for (int i = 0; i < M.nworkers; i++) {
        if (spawn(i, M.gen, cfg) == NULL) {
            M.respawn[i].pending = 1;
            M.respawn[i].next_ms = now_ms() + 1000;
        }
    }
    return 0;
}

/* ---- The loop ---- */

static int next_timeout_ms(void)
{
    uint64_t now = now_ms(), next = now + HB_INTERVAL_MS;

    if (M.next_hb_ms < next)
        next = M.next_hb_ms;
    if (M.watchdog_usec && M.next_watchdog_ms < next)
        next = M.next_watchdog_ms;
    for (int i = 0; i < M.nworkers; i++)
        if (M.respawn[i].pending && M.respawn[i].next_ms < next)
            next = M.respawn[i].next_ms;
    if (M.reloading && M.reload_deadline_ms < next)
        next = M.reload_deadline_ms;
    if (M.check_pid > 0 && M.check_deadline_ms < next)
        next = M.check_deadline_ms;
    return next > now ? (int)(next - now) : 0;
}

/* Acts on the flags the signal handlers set. */
static void on_signals(void)
{
    if (got_chld) {
        got_chld = 0;
        reap();
        reload_progress();
    }
    if (got_term || got_int) {
        begin_stop(got_term ? "SIGTERM" : "SIGINT");
        got_term = got_int = 0;
    }
    if (got_hup) {
        got_hup = 0;
        start_reload(-1);
    }
}

/* Acts on what is due: a stop or a reload out of time, respawns, heartbeats. */
static void on_deadlines(void)
{
    if (M.stopping && now_ms() >= M.stop_deadline_ms) {
        lh_log(LH_LOG_WARNING, "workers did not stop in time; killing %zu", M.nprocs);
        for (size_t i = 0; i < M.nprocs; i++)
            kill(M.procs[i].pid, SIGKILL);
        M.stop_deadline_ms = now_ms() + 5000;
    }
    if (M.reloading && now_ms() >= M.reload_deadline_ms)
        abort_reload("the new workers did not become ready in time");
    if (M.check_pid > 0 && now_ms() >= M.check_deadline_ms)
        upgrade_check_fail(0, "%s --upgrade-check did not finish within %d ms", M.exe,
                           LH_UPGRADE_CHECK_MS);
    respawn_due();
    heartbeat();
}

/*
 * One wait: ppoll on the control socket and its clients (not accepting while stopping)
 * and the workers' channels, with the signals unblocked only while it waits and a
 * timeout up to the next deadline; then whatever is readable.
 */
static void poll_step(void)
{
    struct pollfd pfd[LH_CONTROL_POLLFDS + MAX_PROCS];
    proc_t *pp[MAX_PROCS];
    size_t n, np = 0, k;
    struct timespec ts;
    sigset_t empty;
    int t;

    n = lh_control_server_pollfds(&M.ctl, pfd, !M.stopping);
    for (size_t i = 0; i < M.nprocs; i++) {
        if (M.procs[i].fd < 0)
            continue;
        pp[np++] = &M.procs[i];
        pfd[n].fd = M.procs[i].fd;
        pfd[n++].events = POLLIN;
    }
    t = next_timeout_ms();
    if (M.stopping && t > 200)
        t = 200;
    ts.tv_sec = t / 1000;
    ts.tv_nsec = (long)(t % 1000) * 1000000L;
    for (size_t i = 0; i < n; i++)
        pfd[i].revents = 0;
    sigemptyset(&empty);
    if (ppoll(pfd, (nfds_t)n, &ts, &empty) < 0) {
        if (errno != EINTR)
            lh_log(LH_LOG_ERR, "ppoll: %s", strerror(errno));
        return;
    }
    k = lh_control_server_handle(&M.ctl, pfd);
    /* Worker messages: pp[] may be invalidated only by proc_remove, which runs in
     * reap(), not here. */
    for (size_t i = 0; i < np; i++)
        if (pfd[k + i].revents)
            on_worker_msg(pp[i]);
    lh_control_server_expire(&M.ctl);
}

/* After the last worker left: closes what the master opened. */
static void master_teardown(void)
{
    lh_control_server_close(&M.ctl);
    for (size_t i = 0; i < M.npub + M.nadmin; i++)
        close(M.fds[i]);
    for (size_t i = 0; M.fd_key != NULL && i < M.npub + M.nadmin; i++)
        free(M.fd_key[i]);
    free(M.fd_key);
    free(M.fd_kind);
    free(M.fds);
    lh_config_free(M.cfg);
    if (M.exe_fd >= 0)
        close(M.exe_fd);
    free(M.exe);
}

static int master_loop(void)
{
    for (;;) {
        on_signals();
        if (M.stopping && M.nprocs == 0)
            break;
        on_deadlines();
        poll_step();
    }
    lh_log(LH_LOG_NOTICE, "stopped");
    master_teardown();
    return 0;
}

int lh_master_run(lh_config_t *cfg, const char *path)
{
    if (master_setup(cfg, path) < 0)
        return 1;
    return master_loop();
}

/* ---- Start after a binary upgrade's exec (upgrade.h) ---- */

/* M from the state the other image wrote. Returns 0, or -1 with err set. */
static int adopt(lh_config_t *cfg, const char *path, const lh_upgrade_state_t *st, char *err,
                 size_t errlen)
{
    uint64_t usec = 0;
    int rc;

    memset(&M, 0, sizeof(M));
    M.cfg = cfg;
    M.path = path;
    M.gen = st->gen;
    lh_control_server_init(&M.ctl, &control_ops, NULL);
    M.reload_client = M.check_client = M.check_fd = M.back_fd = M.exe_fd = -1;
    lh_log_level = cfg->log.level;
    signals_setup();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    /* The workers of both images must agree on the node's id (NATS messages carry it). */
    lh_node_id = st->node_id;
    rc = lh_metrics_attach(st->shm_fd, st->shm_addr, st->shm_nslots);
    if (rc < 0) {
        snprintf(err, errlen, "cannot map the shared memory back at %#lx: %s",
                 (unsigned long)st->shm_addr, strerror(-rc));
        return -1;
    }
    if (registry_setup(cfg) < 0) {
        snprintf(err, errlen, "a module cannot be loaded (see the log)");
        return -1;
    }
    if ((M.exe = strdup(st->exe)) == NULL)
        goto nomem;
    M.nworkers = st->nworkers;
    M.alive_key = st->alive_key;
    M.ready_sent = st->ready_sent;
    M.reloads_ok = st->reloads_ok;
    M.reloads_failed = st->reloads_failed;
    M.upgrades_ok = st->upgrades_ok;
    M.upgrades_failed = st->upgrades_failed;
    M.fds = calloc(st->nsocks + 1, sizeof(int));
    M.fd_kind = calloc(st->nsocks + 1, sizeof(int));
    M.fd_key = calloc(st->nsocks + 1, sizeof(char *));
    if (M.fds == NULL || M.fd_kind == NULL || M.fd_key == NULL)
        goto nomem;
    for (size_t i = 0; i < st->nsocks; i++) {
        M.fds[i] = st->socks[i].fd;
        M.fd_kind[i] = st->socks[i].kind;
        if (st->socks[i].key != NULL && (M.fd_key[i] = strdup(st->socks[i].key)) == NULL)
            goto nomem;
    }
    M.npub = st->npub;
    M.nadmin = st->nadmin;
    M.ctl.fd = st->ctl_fd;
    snprintf(M.ctl.path, sizeof(M.ctl.path), "%s", st->ctl_path);
    for (size_t i = 0; i < st->nprocs; i++) {
        const lh_upgrade_proc_t *u = &st->procs[i];

        M.procs[i] = (proc_t){u->pid, u->fd, u->slot, u->gen, u->state, u->started_ms,
                              u->hb_ok_ms, u->conns, u->mslot};
    }
    M.nprocs = st->nprocs;
    for (size_t i = 0; i < st->nrespawn; i++) {
        M.respawn[st->respawn[i]].pending = 1;
        M.respawn[st->respawn[i]].next_ms = now_ms();
    }
    if (sd_watchdog_enabled(0, &usec) > 0)
        M.watchdog_usec = usec;
    lh_upgrade_cloexec(st, 1);
    /* A worker that left during the exec is a zombie now: reap it first thing. */
    got_chld = 1;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* The new image cannot serve: back to the old one (st->exe_fd) with the reason. */
static int resume_failed(lh_upgrade_state_t *st, const char *why)
{
    int rc = -EBADF;

    lh_log(LH_LOG_ERR, "upgrade: lhttpd %s cannot take over: %s", LH_VERSION, why);
    if (st->failed[0] == '\0' && st->exe_fd >= 0) {
        snprintf(st->failed, sizeof(st->failed), "lhttpd %s (%s): %s", LH_VERSION, st->exe,
                 why);
        rc = exec_state(st, st->exe_fd);
    }
    /* Nowhere to go: the workers get SIGTERM when this process exits (PDEATHSIG). */
    lh_log(LH_LOG_ERR, "cannot go back to the old binary (%s); the master is lost",
           strerror(-rc));
    lh_upgrade_state_free(st);
    return 1;
}

int lh_master_resume(lh_config_t *cfg, const char *path, int state_fd, const char *cfg_err)
{
    lh_upgrade_state_t st;
    char err[1024];
    int client;

    lh_log_set_tag("master");
    if (lh_upgrade_read(state_fd, &st, err, sizeof(err)) < 0) {
        lh_log(LH_LOG_ERR, "cannot adopt the running workers: %s; exiting", err);
        lh_config_free(cfg);
        return 1;
    }
    if (cfg == NULL && st.failed[0] != '\0') {
        /* The old image back, and the file broke meanwhile: its workers keep their own
         * configuration; the master's defaults only matter for a respawn. */
        lh_log(LH_LOG_ERR, "%s; the master uses the defaults until a reload succeeds",
               cfg_err);
        cfg = lh_config_default();
    }
    if (cfg == NULL)
        return resume_failed(&st, cfg_err);
    if (adopt(cfg, path, &st, err, sizeof(err)) < 0)
        return resume_failed(&st, err);
    client = st.client_fd;
    if (st.failed[0] != '\0') {
        /* Back in the old binary: the upgrade did not happen. */
        M.exe_fd = st.exe_fd;
        lh_log(LH_LOG_NOTICE, "lhttpd %s adopted its %zu workers back (pid %d)", LH_VERSION,
               M.nprocs, (int)getpid());
        upgrade_failed(client, 0, st.failed);
    } else {
        M.back_fd = st.exe_fd;
        M.upgrading = 1;
        snprintf(M.from_version, sizeof(M.from_version), "%s", st.version);
        lh_log(LH_LOG_NOTICE, "lhttpd %s upgraded in place from %s (pid %d): adopted %zu "
               "workers of generation %u; reloading", LH_VERSION, st.version, (int)getpid(),
               M.nprocs, M.gen);
        lh_upgrade_state_free(&st);
        /* The old workers retire exactly as on reload. */
        start_reload(client);
        return master_loop();
    }
    lh_upgrade_state_free(&st);
    return master_loop();
}
