/*
 * Binary upgrade in place (upgrade.h): the state format, its validation, the check
 * child and the exec. The master's own structures stay in master.c, which fills and
 * adopts an lh_upgrade_state_t.
 *
 * The format is text, one record a line, fields separated by one space; a field that
 * may hold spaces (a path, an address) is the rest of its line, with '%' and newlines
 * written %25 and %0A:
 *   lhttpd-upgrade-state FORMAT
 *   layout LAYOUT
 *   version VERSION
 *   exe FD PATH            exe_fd (-1) and the path to exec
 *   config PATH
 *   node HEX
 *   gen GEN NWORKERS READY_SENT ALIVE_KEY
 *   counts RELOADS_OK RELOADS_FAILED UPGRADES_OK UPGRADES_FAILED
 *   ctl FD [PATH]
 *   client FD
 *   shm FD ADDR NSLOTS
 *   sock FD KIND [KEY]     public ones first, then admin: npub and nadmin count them
 *   split NPUB NADMIN
 *   proc PID FD SLOT GEN STATE MSLOT STARTED_MS HB_OK_MS CONNS
 *   respawn SLOT
 *   failed REASON          only on the way back to the old image
 *   end
 */
#include "upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "lh_config.h"
#include "metrics.h"

#define STATE_MAX (1u << 20) /* 4096 workers of ~100 bytes each fit with room */

const char *lh_upgrade_layout(void)
{
    static char buf[160];

    if (buf[0] == '\0')
        snprintf(buf, sizeof(buf), "shm-%zu-%zu-%d-%d-%d-%u-%d-%d", sizeof(lh_shm_t),
                 sizeof(lh_slot_t), (int)LH_M_NVALUES, (int)LH_M_NCOUNTERS, LH_CHAN_TRACK,
                 LH_INTEREST_BUCKETS, LH_NS_LABELS, LH_MAX_WORKERS_ALIVE);
    return buf;
}

/* ---- Writing ---- */

static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '%')
            fputs("%25", f);
        else if (*s == '\n')
            fputs("%0A", f);
        else
            fputc(*s, f);
    }
}

int lh_upgrade_write(const lh_upgrade_state_t *st)
{
    int fd = memfd_create("lhttpd-upgrade-state", 0), e;
    FILE *f;

    if (fd < 0)
        return -errno;
    f = fdopen(dup(fd), "w");
    if (f == NULL) {
        e = errno;
        close(fd);
        return -e;
    }
    fprintf(f, "lhttpd-upgrade-state %d\nlayout %s\nversion %s\n", LH_UPGRADE_FORMAT,
            lh_upgrade_layout(), st->version);
    fprintf(f, "exe %d ", st->exe_fd);
    put_escaped(f, st->exe);
    fputs("\nconfig ", f);
    put_escaped(f, st->config);
    fprintf(f, "\nnode %016llx\ngen %u %d %d %u\ncounts %u %u %u %u\nctl %d ",
            (unsigned long long)st->node_id, st->gen, st->nworkers, st->ready_sent,
            st->alive_key, st->reloads_ok, st->reloads_failed, st->upgrades_ok,
            st->upgrades_failed, st->ctl_fd);
    put_escaped(f, st->ctl_path);
    fprintf(f, "\nclient %d\nshm %d %llx %d\n", st->client_fd, st->shm_fd,
            (unsigned long long)st->shm_addr, st->shm_nslots);
    for (size_t i = 0; i < st->nsocks; i++) {
        fprintf(f, "sock %d %d ", st->socks[i].fd, st->socks[i].kind);
        put_escaped(f, st->socks[i].key ? st->socks[i].key : "");
        fputc('\n', f);
    }
    fprintf(f, "split %zu %zu\n", st->npub, st->nadmin);
    for (size_t i = 0; i < st->nprocs; i++) {
        const lh_upgrade_proc_t *p = &st->procs[i];

        fprintf(f, "proc %d %d %d %u %d %d %llu %llu %zu\n", (int)p->pid, p->fd, p->slot,
                p->gen, p->state, p->mslot, (unsigned long long)p->started_ms,
                (unsigned long long)p->hb_ok_ms, p->conns);
    }
    for (size_t i = 0; i < st->nrespawn; i++)
        fprintf(f, "respawn %d\n", st->respawn[i]);
    if (st->failed[0] != '\0') {
        fputs("failed ", f);
        put_escaped(f, st->failed);
        fputc('\n', f);
    }
    fputs("end\n", f);
    if (fclose(f) != 0) {
        e = errno;
        close(fd);
        return -e;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* ---- Reading ---- */

typedef struct {
    char *err;
    size_t errlen;
    int line;
} rd_t;

static int fail(rd_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(rd_t *r, const char *fmt, ...)
{
    char msg[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(r->err, r->errlen, "upgrade state, line %d: %s", r->line, msg);
    return -1;
}

/* Unescapes the rest of a line in place. Returns 0, or -1 on a bad escape. */
static int unescape(char *s)
{
    char *o = s;

    for (; *s; s++) {
        if (*s != '%') {
            *o++ = *s;
        } else if (strncmp(s, "%25", 3) == 0) {
            *o++ = '%';
            s += 2;
        } else if (strncmp(s, "%0A", 3) == 0) {
            *o++ = '\n';
            s += 2;
        } else {
            return -1;
        }
    }
    *o = '\0';
    return 0;
}

/* The next space-separated number of *s, in [lo, hi], in base; advances *s past it
 * and one space. Returns 0 or -1. */
static int num(char **s, long long lo, long long hi, int base, long long *out)
{
    char *end;
    long long v;

    if (**s == '\0' || **s == ' ')
        return -1;
    errno = 0;
    v = strtoll(*s, &end, base);
    if (errno != 0 || (*end != ' ' && *end != '\0') || v < lo || v > hi)
        return -1;
    *s = end + (*end == ' ');
    *out = v;
    return 0;
}

/* Like num, for the unsigned 64-bit values (node id, address, times). */
static int unum(char **s, int base, unsigned long long *out)
{
    char *end;

    if (**s == '\0' || **s == ' ' || **s == '-')
        return -1;
    errno = 0;
    *out = strtoull(*s, &end, base);
    if (errno != 0 || (*end != ' ' && *end != '\0'))
        return -1;
    *s = end + (*end == ' ');
    return 0;
}

/* fd must be open and, with type != 0, a socket of that type (listening when listening
 * is 1). */
static int check_fd(rd_t *r, const char *what, int fd, int type, int listening)
{
    if (fcntl(fd, F_GETFD) < 0)
        return fail(r, "%s fd %d is not open", what, fd);
    if (type != 0 && sd_is_socket(fd, AF_UNSPEC, type, listening) <= 0)
        return fail(r, "%s fd %d is not the socket it should be", what, fd);
    return 0;
}

/* pid must be a child of this process (a zombie is one still). */
static int is_child(pid_t pid)
{
    char path[64], buf[512], *p;
    FILE *f;
    int ppid = -1;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "re");
    if (f == NULL)
        return 0;
    if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL)
        sscanf(p + 1, " %*c %d", &ppid);
    fclose(f);
    return ppid == (int)getpid();
}

void lh_upgrade_state_free(lh_upgrade_state_t *st)
{
    free(st->exe);
    free(st->config);
    for (size_t i = 0; i < st->nsocks; i++)
        free(st->socks[i].key);
    free(st->socks);
    free(st->procs);
    free(st->respawn);
    memset(st, 0, sizeof(*st));
}

static int grow(void **arr, size_t n, size_t size)
{
    void *p;

    if ((n & (n - 1)) != 0 && n != 0)
        return 0; /* room up to the next power of two */
    p = realloc(*arr, (n ? 2 * n : 8) * size);
    if (p == NULL)
        return -1;
    *arr = p;
    return 0;
}

/* One record (the line, keyword cut off) into st. Returns 0, 1 at "end", or -1. */
static int record(rd_t *r, const char *kw, char *s, lh_upgrade_state_t *st, unsigned *seen)
{
    long long a, b, c, d, e, g;
    unsigned long long u, v, w;

    if (strcmp(kw, "layout") == 0) {
        if (strcmp(s, lh_upgrade_layout()) != 0)
            return fail(r, "shared memory layout %s, this binary has %s", s,
                        lh_upgrade_layout());
        *seen |= 1;
    } else if (strcmp(kw, "version") == 0) {
        snprintf(st->version, sizeof(st->version), "%s", s);
    } else if (strcmp(kw, "exe") == 0) {
        if (num(&s, -1, INT_MAX, 10, &a) < 0 || unescape(s) < 0 || s[0] != '/')
            return fail(r, "bad exe");
        if (a >= 0 && check_fd(r, "exe", (int)a, 0, 0) < 0)
            return -1;
        st->exe_fd = (int)a;
        free(st->exe);
        if ((st->exe = strdup(s)) == NULL)
            return fail(r, "out of memory");
        *seen |= 2;
    } else if (strcmp(kw, "config") == 0) {
        if (unescape(s) < 0 || s[0] == '\0')
            return fail(r, "bad config");
        free(st->config);
        if ((st->config = strdup(s)) == NULL)
            return fail(r, "out of memory");
        *seen |= 4;
    } else if (strcmp(kw, "node") == 0) {
        if (unum(&s, 16, &u) < 0 || *s != '\0')
            return fail(r, "bad node id");
        st->node_id = u;
    } else if (strcmp(kw, "gen") == 0) {
        if (num(&s, 1, UINT_MAX, 10, &a) < 0 || num(&s, 1, LH_MAX_WORKERS, 10, &b) < 0 ||
            num(&s, 0, 1, 10, &c) < 0 || num(&s, 0, LH_MAX_WORKERS_ALIVE, 10, &d) < 0 ||
            *s != '\0')
            return fail(r, "bad gen");
        st->gen = (unsigned)a;
        st->nworkers = (int)b;
        st->ready_sent = (int)c;
        st->alive_key = (unsigned)d;
        *seen |= 8;
    } else if (strcmp(kw, "counts") == 0) {
        if (num(&s, 0, UINT_MAX, 10, &a) < 0 || num(&s, 0, UINT_MAX, 10, &b) < 0 ||
            num(&s, 0, UINT_MAX, 10, &c) < 0 || num(&s, 0, UINT_MAX, 10, &d) < 0 || *s)
            return fail(r, "bad counts");
        st->reloads_ok = (unsigned)a;
        st->reloads_failed = (unsigned)b;
        st->upgrades_ok = (unsigned)c;
        st->upgrades_failed = (unsigned)d;
    } else if (strcmp(kw, "ctl") == 0) {
        if (num(&s, -1, INT_MAX, 10, &a) < 0 || unescape(s) < 0 ||
            strlen(s) >= sizeof(st->ctl_path))
            return fail(r, "bad ctl");
        if (a >= 0 && check_fd(r, "control socket", (int)a, SOCK_STREAM, 1) < 0)
            return -1;
        st->ctl_fd = (int)a;
        snprintf(st->ctl_path, sizeof(st->ctl_path), "%s", s);
    } else if (strcmp(kw, "client") == 0) {
        if (num(&s, -1, INT_MAX, 10, &a) < 0 || *s != '\0')
            return fail(r, "bad client");
        if (a >= 0 && check_fd(r, "control client", (int)a, SOCK_STREAM, 0) < 0)
            return -1;
        st->client_fd = (int)a;
    } else if (strcmp(kw, "shm") == 0) {
        if (num(&s, 0, INT_MAX, 10, &a) < 0 || unum(&s, 16, &u) < 0 ||
            num(&s, 1, LH_MAX_WORKERS_ALIVE, 10, &b) < 0 || *s != '\0' || u == 0)
            return fail(r, "bad shm");
        if (check_fd(r, "shared memory", (int)a, 0, 0) < 0)
            return -1;
        st->shm_fd = (int)a;
        st->shm_addr = (uintptr_t)u;
        st->shm_nslots = (int)b;
        *seen |= 16;
    } else if (strcmp(kw, "sock") == 0) {
        if (num(&s, 0, INT_MAX, 10, &a) < 0 || num(&s, 0, 2, 10, &b) < 0 || unescape(s) < 0)
            return fail(r, "bad sock");
        if (check_fd(r, "listening socket", (int)a, SOCK_STREAM, 1) < 0)
            return -1;
        if (st->nsocks >= 4096 || grow((void **)&st->socks, st->nsocks, sizeof(*st->socks)))
            return fail(r, "too many sockets");
        st->socks[st->nsocks].fd = (int)a;
        st->socks[st->nsocks].kind = (int)b;
        st->socks[st->nsocks].key = s[0] ? strdup(s) : NULL;
        if (s[0] && st->socks[st->nsocks].key == NULL)
            return fail(r, "out of memory");
        st->nsocks++;
    } else if (strcmp(kw, "split") == 0) {
        if (num(&s, 0, 4096, 10, &a) < 0 || num(&s, 0, 4096, 10, &b) < 0 || *s != '\0')
            return fail(r, "bad split");
        st->npub = (size_t)a;
        st->nadmin = (size_t)b;
        *seen |= 32;
    } else if (strcmp(kw, "proc") == 0) {
        lh_upgrade_proc_t *p;

        if (num(&s, 1, INT_MAX, 10, &a) < 0 || num(&s, -1, INT_MAX, 10, &b) < 0 ||
            num(&s, 0, LH_MAX_WORKERS - 1, 10, &c) < 0 || num(&s, 1, UINT_MAX, 10, &d) < 0 ||
            num(&s, 0, 3, 10, &e) < 0 || num(&s, 0, LH_MAX_WORKERS_ALIVE - 1, 10, &g) < 0 ||
            unum(&s, 10, &u) < 0 || unum(&s, 10, &v) < 0 || unum(&s, 10, &w) < 0 || *s)
            return fail(r, "bad proc");
        if (!is_child((pid_t)a))
            return fail(r, "pid %lld is not a child of this master", a);
        if (b >= 0 && check_fd(r, "worker channel", (int)b, SOCK_SEQPACKET, 0) < 0)
            return -1;
        for (size_t i = 0; i < st->nprocs; i++)
            if (st->procs[i].pid == (pid_t)a || st->procs[i].mslot == (int)g ||
                (b >= 0 && st->procs[i].fd == (int)b))
                return fail(r, "worker pid %lld listed twice", a);
        if (st->nprocs >= LH_MAX_WORKERS_ALIVE ||
            grow((void **)&st->procs, st->nprocs, sizeof(*st->procs)))
            return fail(r, "too many workers");
        p = &st->procs[st->nprocs++];
        p->pid = (pid_t)a;
        p->fd = (int)b;
        p->slot = (int)c;
        p->gen = (unsigned)d;
        p->state = (int)e;
        p->mslot = (int)g;
        p->started_ms = u;
        p->hb_ok_ms = v;
        p->conns = (size_t)w;
    } else if (strcmp(kw, "respawn") == 0) {
        if (num(&s, 0, LH_MAX_WORKERS - 1, 10, &a) < 0 || *s != '\0')
            return fail(r, "bad respawn");
        if (st->nrespawn >= LH_MAX_WORKERS ||
            grow((void **)&st->respawn, st->nrespawn, sizeof(*st->respawn)))
            return fail(r, "too many respawns");
        st->respawn[st->nrespawn++] = (int)a;
    } else if (strcmp(kw, "failed") == 0) {
        if (unescape(s) < 0)
            return fail(r, "bad failed");
        snprintf(st->failed, sizeof(st->failed), "%s", s);
    } else if (strcmp(kw, "end") == 0) {
        return 1;
    } else {
        return fail(r, "unknown record \"%.40s\"", kw);
    }
    return 0;
}

/* What the records must agree on once all are read. */
static int check_whole(rd_t *r, lh_upgrade_state_t *st)
{
    if (st->npub + st->nadmin != st->nsocks || st->npub == 0)
        return fail(r, "%zu sockets, but split says %zu public and %zu admin", st->nsocks,
                    st->npub, st->nadmin);
    for (size_t i = 0; i < st->nprocs; i++) {
        if (st->procs[i].mslot >= st->shm_nslots)
            return fail(r, "worker pid %d has slot %d of %d", (int)st->procs[i].pid,
                        st->procs[i].mslot, st->shm_nslots);
        if (st->procs[i].gen > st->gen + 1)
            return fail(r, "worker pid %d of generation %u, ahead of %u",
                        (int)st->procs[i].pid, st->procs[i].gen, st->gen);
    }
    for (size_t i = 0; i < st->nrespawn; i++)
        if (st->respawn[i] >= st->nworkers)
            return fail(r, "respawn of worker %d of %d", st->respawn[i], st->nworkers);
    return 0;
}

int lh_upgrade_read(int fd, lh_upgrade_state_t *st, char *err, size_t errlen)
{
    rd_t r = {err, errlen, 0};
    char *buf = malloc(STATE_MAX + 1), *line, *next;
    size_t len = 0;
    unsigned seen = 0;
    ssize_t n;
    int rc = -1, done = 0;

    memset(st, 0, sizeof(*st));
    st->exe_fd = st->ctl_fd = st->client_fd = st->shm_fd = -1;
    if (buf == NULL) {
        close(fd);
        snprintf(err, errlen, "upgrade state: out of memory");
        return -1;
    }
    while (len < STATE_MAX && (n = read(fd, buf + len, STATE_MAX - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "upgrade state: read: %s", strerror(errno));
            goto out;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) {
        snprintf(err, errlen, "upgrade state: not text");
        goto out;
    }
    for (line = buf; line != NULL && *line && !done; line = next) {
        char *sp;
        int k;

        r.line++;
        next = strchr(line, '\n');
        if (next == NULL) {
            fail(&r, "cut short");
            goto out;
        }
        *next++ = '\0';
        if (r.line == 1) {
            int v;
            char c;

            if (sscanf(line, "lhttpd-upgrade-state %d%c", &v, &c) != 1) {
                fail(&r, "not an lhttpd upgrade state");
                goto out;
            }
            if (v != LH_UPGRADE_FORMAT) {
                fail(&r, "format %d, this binary reads format %d only", v,
                     LH_UPGRADE_FORMAT);
                goto out;
            }
            continue;
        }
        sp = strchr(line, ' ');
        if (sp != NULL)
            *sp = '\0';
        k = record(&r, line, sp ? sp + 1 : line + strlen(line), st, &seen);
        if (k < 0)
            goto out;
        done = k == 1;
    }
    if (!done) {
        fail(&r, "no end record: cut short");
        goto out;
    }
    if (seen != 63) {
        fail(&r, "a record is missing (layout, exe, config, gen, shm or split)");
        goto out;
    }
    if (check_whole(&r, st) < 0)
        goto out;
    rc = 0;
out:
    free(buf);
    close(fd);
    if (rc < 0)
        lh_upgrade_state_free(st);
    return rc;
}

static void set_cloexec(int fd, int on)
{
    int fl;

    if (fd < 0 || (fl = fcntl(fd, F_GETFD)) < 0)
        return;
    fcntl(fd, F_SETFD, on ? fl | FD_CLOEXEC : fl & ~FD_CLOEXEC);
}

void lh_upgrade_cloexec(const lh_upgrade_state_t *st, int on)
{
    set_cloexec(st->exe_fd, on);
    set_cloexec(st->ctl_fd, on);
    set_cloexec(st->client_fd, on);
    set_cloexec(st->shm_fd, on);
    for (size_t i = 0; i < st->nsocks; i++)
        set_cloexec(st->socks[i].fd, on);
    for (size_t i = 0; i < st->nprocs; i++)
        set_cloexec(st->procs[i].fd, on);
}

/* ---- The check and the exec ---- */

/* A child about to exec: default signals, none blocked, no systemd notification. */
static void child_reset(void)
{
    sigset_t none;

    signal(SIGHUP, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

pid_t lh_upgrade_check_start(const char *exe, const char *config, int *out_fd, char *err,
                             size_t errlen)
{
    char format[16];
    int p[2];
    pid_t pid;

    /* The common failures get a plain reason before anything forks. */
    if (access(exe, X_OK) < 0) {
        snprintf(err, errlen, "%s: %s", exe, strerror(errno));
        return -1;
    }
    if (pipe2(p, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    snprintf(format, sizeof(format), "%d", LH_UPGRADE_FORMAT);
    pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);

        child_reset();
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(p[1], 1);
        dup2(p[1], 2);
        execl(exe, exe, "--upgrade-check", format, "--upgrade-layout", lh_upgrade_layout(),
              "-c", config, (char *)NULL);
        dprintf(1, "cannot execute %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    *out_fd = p[0];
    return pid;
}

int lh_upgrade_exec(const char *exe, int exe_fd, int state_fd, const char *config)
{
    char fdbuf[16];
    char *argv[7];
    extern char **environ;

    snprintf(fdbuf, sizeof(fdbuf), "%d", state_fd);
    argv[0] = (char *)exe;
    argv[1] = "--upgrade-state";
    argv[2] = fdbuf;
    argv[3] = "-c";
    argv[4] = (char *)config;
    argv[5] = NULL;
    if (exe_fd >= 0)
        fexecve(exe_fd, argv, environ);
    else
        execv(exe, argv);
    return -errno;
}

int lh_upgrade_check_main(const char *format, const char *layout)
{
    char *end;
    long v = strtol(format, &end, 10);

    if (*end != '\0' || v != LH_UPGRADE_FORMAT) {
        printf("incompatible: the running master has upgrade format %s, lhttpd %s has %d: "
               "restart instead\n", format, LH_VERSION, LH_UPGRADE_FORMAT);
        return LH_UPGRADE_EXIT_INCOMPATIBLE;
    }
    if (strcmp(layout, lh_upgrade_layout()) != 0) {
        printf("incompatible: the shared memory layout changed (%s, lhttpd %s has %s): "
               "restart instead\n", layout, LH_VERSION, lh_upgrade_layout());
        return LH_UPGRADE_EXIT_INCOMPATIBLE;
    }
    printf("ok lhttpd %s\n", LH_VERSION);
    return 0;
}
