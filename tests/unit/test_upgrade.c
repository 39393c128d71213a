/*
 * Unit tests for the binary upgrade's state (master/upgrade.c, compiled in here): a state
 * written and read back whole, and every kind of bad state refused with a clear reason
 * (never a crash): another format, another layout, cut short, unknown records, numbers
 * out of range, fds that are not open or not the right socket, pids that are not
 * children, duplicates.
 */
#include "lh_test.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "../../master/upgrade.c"

static int tcp_listener(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0)
        return -1;
    return fd;
}

/* A memfd holding text, rewound. */
static int text_fd(const char *text)
{
    int fd = memfd_create("t", MFD_CLOEXEC);

    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        return -1;
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static int reads(const char *text, char *err, size_t errlen)
{
    lh_upgrade_state_t st;
    int rc = lh_upgrade_read(text_fd(text), &st, err, errlen);

    if (rc == 0)
        lh_upgrade_state_free(&st);
    return rc;
}

static pid_t child;
static int sock_fd, chan[2], shm_fd;
static char head[512]; /* the records every valid state needs, up to the procs */

static void fixture(void)
{
    if (child != 0)
        return;
    child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    sock_fd = tcp_listener();
    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, chan);
    lh_metrics_init(4);
    shm_fd = lh_metrics_shm_fd();
    snprintf(head, sizeof(head),
             "lhttpd-upgrade-state %d\nlayout %s\nversion 9.9\nexe -1 /usr/sbin/lhttpd\n"
             "config /etc/lhttpd/lhttpd.json\ngen 3 2 1 0\nshm %d %llx 4\n"
             "sock %d 0 127.0.0.1:1\nsplit 1 0\n",
             LH_UPGRADE_FORMAT, lh_upgrade_layout(), shm_fd,
             (unsigned long long)(uintptr_t)lh_shm, sock_fd);
}

LH_TEST(test_roundtrip)
{
    lh_upgrade_state_t st, got;
    lh_upgrade_proc_t procs[1];
    lh_upgrade_sock_t socks[1];
    int respawn[1] = {1};
    char err[512];
    int fd;

    fixture();
    memset(&st, 0, sizeof(st));
    snprintf(st.version, sizeof(st.version), "1.2.3");
    st.exe = "/opt/a dir/100%\nlhttpd";
    st.exe_fd = -1;
    st.config = "/etc/lhttpd/lhttpd.json";
    st.node_id = 0xfeedfacecafebeefull;
    st.gen = 7;
    st.nworkers = 2;
    st.ready_sent = 1;
    st.reloads_ok = 4;
    st.upgrades_failed = 2;
    st.ctl_fd = -1;
    st.client_fd = -1;
    st.shm_fd = shm_fd;
    st.shm_addr = (uintptr_t)lh_shm;
    st.shm_nslots = 4;
    socks[0] = (lh_upgrade_sock_t){sock_fd, 2, "public"};
    st.socks = socks;
    st.nsocks = st.npub = 1;
    procs[0] = (lh_upgrade_proc_t){child, chan[0], 1, 2, 3, 7, 1000, 2000, 55};
    st.procs = procs;
    st.nprocs = 1;
    st.respawn = respawn;
    st.nrespawn = 1;
    snprintf(st.failed, sizeof(st.failed), "it broke: 100%%");
    fd = lh_upgrade_write(&st);
    LH_CHECK(fd >= 0);
    LH_CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0); /* it must cross the exec */
    LH_CHECK_INT(lh_upgrade_read(fd, &got, err, sizeof(err)), 0);
    if (lh_t_failed_checks) {
        printf("# %s\n", err);
        return;
    }
    LH_CHECK(strcmp(got.version, "1.2.3") == 0);
    LH_CHECK(strcmp(got.exe, st.exe) == 0);
    LH_CHECK(strcmp(got.config, st.config) == 0);
    LH_CHECK(got.node_id == st.node_id);
    LH_CHECK(got.gen == 7 && got.nworkers == 2 && got.ready_sent == 1);
    LH_CHECK(got.reloads_ok == 4 && got.upgrades_failed == 2 && got.upgrades_ok == 0);
    LH_CHECK(got.shm_fd == shm_fd && got.shm_addr == st.shm_addr && got.shm_nslots == 4);
    LH_CHECK(got.nsocks == 1 && got.socks[0].fd == sock_fd && got.socks[0].kind == 2 &&
             strcmp(got.socks[0].key, "public") == 0);
    LH_CHECK(got.nprocs == 1 && got.procs[0].pid == child && got.procs[0].fd == chan[0] &&
             got.procs[0].slot == 1 && got.procs[0].gen == 7 && got.procs[0].state == 2 &&
             got.procs[0].mslot == 3 && got.procs[0].started_ms == 1000 &&
             got.procs[0].hb_ok_ms == 2000 && got.procs[0].conns == 55);
    LH_CHECK(got.nrespawn == 1 && got.respawn[0] == 1);
    LH_CHECK(strcmp(got.failed, "it broke: 100%") == 0);
    lh_upgrade_state_free(&got);
}

/* text (head, then more, then "end") is refused with a reason containing want. */
static void refused(const char *more, const char *want, int with_head)
{
    char text[4096], err[512];

    snprintf(text, sizeof(text), "%s%s", with_head ? head : "", more);
    err[0] = '\0';
    if (reads(text, err, sizeof(err)) == 0) {
        printf("# accepted: %s\n", more);
        lh_t_failed_checks++;
    } else if (strstr(err, want) == NULL) {
        printf("# \"%s\": the reason \"%s\" lacks \"%s\"\n", more, err, want);
        lh_t_failed_checks++;
    }
}

LH_TEST(test_refused)
{
    char buf[600];

    fixture();
    /* The head alone, with its end, is a valid state. */
    snprintf(buf, sizeof(buf), "%send\n", head);
    LH_CHECK_INT(reads(buf, buf, sizeof(buf)), 0);
    refused("", "no end record", 0);
    refused("hello\nend\n", "not an lhttpd upgrade state", 0);
    refused("lhttpd-upgrade-state 3\nend\n", "format 3, this binary reads format 2 only", 0);
    refused("lhttpd-upgrade-state 1x\nend\n", "not an lhttpd upgrade state", 0);
    refused("lhttpd-upgrade-state 2\nlayout shm-1-2\nend\n", "shared memory layout shm-1-2", 0);
    refused("lhttpd-upgrade-state 2\nend\n", "a record is missing", 0);
    refused("", "no end record", 1);
    refused("end", "cut short", 1);
    refused("bogus 1\nend\n", "unknown record \"bogus\"", 1);
    refused("gen 0 2 1 0\nend\n", "bad gen", 1);
    refused("gen 1 99999 1 0\nend\n", "bad gen", 1);
    refused("gen 1 2 1\nend\n", "bad gen", 1);
    refused("gen 1 2 1 0 5\nend\n", "bad gen", 1);
    refused("gen -1 2 1 0\nend\n", "bad gen", 1);
    refused("gen 99999999999999999999 2 1 0\nend\n", "bad gen", 1);
    refused("exe -1 relative/path\nend\n", "bad exe", 1);
    refused("exe 999 /x\nend\n", "exe fd 999 is not open", 1);
    refused("config /a%zz\nend\n", "bad config", 1);
    refused("client 999\nend\n", "control client fd 999 is not open", 1);
    snprintf(buf, sizeof(buf), "ctl %d /x\nend\n", chan[0]);
    refused(buf, "control socket fd", 1); /* a seqpacket socket, not a listener */
    snprintf(buf, sizeof(buf), "sock %d 0 x\nend\n", shm_fd);
    refused(buf, "listening socket fd", 1);
    refused("sock 3 7 x\nend\n", "bad sock", 1);
    refused("split 2 0\nend\n", "1 sockets, but split says 2 public", 1);
    refused("shm 999 1000 4\nend\n", "shared memory fd 999 is not open", 1);
    refused("shm 3 0 4\nend\n", "bad shm", 1);
    snprintf(buf, sizeof(buf), "proc %d %d 0 3 1 0 0 0 0\nend\n", (int)getpid(), chan[0]);
    refused(buf, "is not a child of this master", 1);
    snprintf(buf, sizeof(buf), "proc %d %d 0 3 1 0 0 0 0\nend\n", (int)child, sock_fd);
    refused(buf, "worker channel fd", 1);
    snprintf(buf, sizeof(buf), "proc %d %d 0 3 9 0 0 0 0\nend\n", (int)child, chan[0]);
    refused(buf, "bad proc", 1);
    snprintf(buf, sizeof(buf), "proc %d %d 0 5 1 0 0 0 0\nend\n", (int)child, chan[0]);
    refused(buf, "of generation 5, ahead of 3", 1);
    snprintf(buf, sizeof(buf), "proc %d %d 0 3 1 9 0 0 0\nend\n", (int)child, chan[0]);
    refused(buf, "has slot 9 of 4", 1);
    snprintf(buf, sizeof(buf), "proc %d %d 0 3 1 0 0 0 0\nproc %d -1 1 3 1 1 0 0 0\nend\n",
             (int)child, chan[0], (int)child);
    refused(buf, "listed twice", 1);
    refused("respawn 5\nend\n", "respawn of worker 5 of 2", 1);
    refused("failed %0\nend\n", "bad failed", 1);
    /* A NUL in the middle. */
    {
        char text[1024], err[256];
        size_t n = (size_t)snprintf(text, sizeof(text), "%send\n", head);
        int fd = memfd_create("t", MFD_CLOEXEC);

        text[10] = '\0';
        LH_CHECK(write(fd, text, n) == (ssize_t)n);
        lseek(fd, 0, SEEK_SET);
        LH_CHECK_INT(lh_upgrade_read(fd, &(lh_upgrade_state_t){0}, err, sizeof(err)), -1);
        LH_CHECK(strstr(err, "not text") != NULL);
    }
}

LH_TEST(test_check_verdict)
{
    /* What --upgrade-check answers for this binary's format and another. */
    char fmt[16];
    int save, devnull;

    /* Its answer line ("ok lhttpd ...") must not reach the TAP output. */
    fflush(stdout);
    save = dup(1);
    devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    close(devnull);
    snprintf(fmt, sizeof(fmt), "%d", LH_UPGRADE_FORMAT);
    LH_CHECK_INT(lh_upgrade_check_main(fmt, lh_upgrade_layout()), 0);
    LH_CHECK_INT(lh_upgrade_check_main("0", lh_upgrade_layout()), LH_UPGRADE_EXIT_INCOMPATIBLE);
    LH_CHECK_INT(lh_upgrade_check_main("1x", lh_upgrade_layout()), LH_UPGRADE_EXIT_INCOMPATIBLE);
    LH_CHECK_INT(lh_upgrade_check_main(fmt, "shm-0"), LH_UPGRADE_EXIT_INCOMPATIBLE);
    fflush(stdout);
    dup2(save, 1);
    close(save);
}

int main(void)
{
    LH_RUN(test_roundtrip);
    LH_RUN(test_refused);
    LH_RUN(test_check_verdict);
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    LH_DONE();
}
