/*
 * Binary upgrade in place: the state the master passes to itself across execve(2), and
 * the check that runs the new binary before the master execs it.
 *
 * `lhttpd -s upgrade` asks the master (control "upgrade"). The master
 *   1. runs the binary on disk as a child, `EXE --upgrade-check FORMAT --upgrade-layout LAYOUT
 *      -c CONFIG`:
 *      it loads the configuration and its modules as at start and says whether it can
 *      take this master's state (the same FORMAT and LAYOUT, below); a binary that is
 *      missing, not executable, exits or crashes, or refuses, fails the upgrade here and
 *      nothing else changes;
 *   2. writes its state (this file's format) into a memfd, clears FD_CLOEXEC on what the
 *      new image keeps (listening sockets, the control socket and the client waiting for
 *      the answer, the workers' channels, the shared memory, the old binary and the
 *      state itself) and execs EXE --upgrade-state FD -c CONFIG: same PID, same children;
 *   3. the new image reads the state, maps the shared memory where it was, adopts the
 *      workers as the serving generation and reloads: a new generation from the new
 *      binary, the old one retired exactly as on reload;
 *   4. should the new image fail before it serves (the configuration became invalid in
 *      between, the memory cannot be mapped back, the new workers do not become ready),
 *      it execs the old binary back (through the fd the old image kept open, so a
 *      replaced file does not matter) with the same state and the reason: the old image
 *      adopts its workers again and answers the client "error ...".
 * A crash of the new image after the check is the one case not covered: the check runs
 * the same start-up code path (configuration, modules) first, so that is left to bugs.
 *
 * Compatibility rule: a master upgrades in place only to a binary with the same
 * LH_UPGRADE_FORMAT (this file's state, the master <-> worker channel messages, the
 * messages between workers) and the same shared memory layout (lh_upgrade_layout: every
 * size and count of metrics.h). Anything else, the new binary says "incompatible" at
 * the check and `lhttpd -s upgrade` exits 3: the packages then restart the service.
 * Bump LH_UPGRADE_FORMAT whenever any of those messages or this format change.
 *
 * Ownership: the state lives in the master only, between the two images (a memfd that
 * the receiving image closes). The child check is the master's; it is killed after
 * LH_UPGRADE_CHECK_MS.
 */
#ifndef LH_UPGRADE_H
#define LH_UPGRADE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LH_UPGRADE_FORMAT 2 /* 2: the handoff messages ("handoff", "adopt", worker to worker) */
#define LH_UPGRADE_CHECK_MS 15000 /* the new binary's check must finish within this */
#define LH_UPGRADE_EXIT_INCOMPATIBLE 3 /* `-s upgrade` and --upgrade-check: restart instead */

typedef struct {
    pid_t pid;
    int fd, slot, state, mslot;
    unsigned gen;
    uint64_t started_ms, hb_ok_ms;
    size_t conns;
} lh_upgrade_proc_t;

typedef struct {
    int fd, kind;
    char *key; /* NULL: none */
} lh_upgrade_sock_t;

typedef struct {
    char version[64];   /* the version of the image that wrote it */
    char *exe;          /* the path to exec (resolved when the master started) */
    int exe_fd;         /* the writing image's own binary, for the way back (-1: none) */
    char *config;
    uint64_t node_id;
    unsigned gen;
    int nworkers, ready_sent;
    unsigned reloads_ok, reloads_failed, upgrades_ok, upgrades_failed, alive_key;
    int ctl_fd;         /* the control socket (-1: none) */
    char ctl_path[108];
    int client_fd;      /* the client waiting for the answer (-1: none) */
    int shm_fd, shm_nslots;
    uintptr_t shm_addr;
    lh_upgrade_sock_t *socks;
    size_t nsocks, npub, nadmin;
    lh_upgrade_proc_t *procs;
    size_t nprocs;
    int *respawn;       /* slots of the serving generation waiting for a respawn */
    size_t nrespawn;
    char failed[512];   /* set by a new image that hands back to the old one */
} lh_upgrade_state_t;

/* The shared memory layout this binary was built with, one word (no spaces). */
const char *lh_upgrade_layout(void);

/* Writes st into a new memfd, rewound, without FD_CLOEXEC. Returns the fd or -errno. */
int lh_upgrade_write(const lh_upgrade_state_t *st);

/*
 * Reads and validates the state from fd (which it closes): the format, the layout,
 * every number's range, every fd open and of the right kind, every pid a child of this
 * process. Returns 0, or -1 with err set (st then holds nothing to free).
 */
int lh_upgrade_read(int fd, lh_upgrade_state_t *st, char *err, size_t errlen);

void lh_upgrade_state_free(lh_upgrade_state_t *st);

/* Sets or clears FD_CLOEXEC on every fd the state names. */
void lh_upgrade_cloexec(const lh_upgrade_state_t *st, int on);

/*
 * Starts the check of exe as a child (step 1), its output into a pipe. Returns the pid,
 * with *out_fd the pipe's read end (non-blocking), or -1 with err set.
 */
pid_t lh_upgrade_check_start(const char *exe, const char *config, int *out_fd, char *err,
                             size_t errlen);

/*
 * Execs exe (or, when exe_fd >= 0, that fd's binary) with the state in state_fd: argv
 * EXE --upgrade-state FD -c CONFIG. Returns only on failure, -errno.
 */
int lh_upgrade_exec(const char *exe, int exe_fd, int state_fd, const char *config);

/* `lhttpd --upgrade-check FORMAT LAYOUT`: the verdict on a master of that format and
 * layout, after the configuration was checked. Returns the exit status and prints the
 * answer line ("ok lhttpd VERSION" or the reason). */
int lh_upgrade_check_main(const char *format, const char *layout);

#endif
