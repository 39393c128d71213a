/*
 * The master's control socket (control.h): the server, which the master's poll loop
 * drives, and the client, `lhttpd -s COMMAND`. Used by ExecReload= so that `systemctl
 * reload` returns only when the reload is done, and fails when it failed.
 */
#include "control.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lh_log.h"
#include "worker.h"

#define CLIENT_TIMEOUT_MS 5000 /* to send the command line */

/* ---- The server, in the master ---- */

void lh_control_reply(int fd, const char *fmt, ...)
{
    char buf[1200];
    va_list ap;
    int n;

    if (fd < 0)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    if (send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        lh_log(LH_LOG_DEBUG, "control reply: %s", strerror(errno));
    close(fd);
}

void lh_control_server_init(lh_control_server_t *srv, const lh_control_ops_t *ops, void *arg)
{
    memset(srv, 0, sizeof(*srv));
    srv->fd = -1;
    srv->ops = ops;
    srv->arg = arg;
}

/* Returns the listening fd, -1 when there is none (a warning said why, unless socket(2)
 * itself failed), or -2 when another master answers at path. */
static int listen_at(const char *path)
{
    struct sockaddr_un sa;
    int fd;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        lh_log(LH_LOG_ERR, "control socket %s: another lhttpd master answers there", path);
        close(fd);
        return -2;
    }
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        lh_log(LH_LOG_WARNING, "control socket %s: %s; `lhttpd -s` will not reach this "
               "master (SIGHUP still reloads)", path, strerror(errno));
        close(fd);
        return -1;
    }
    chmod(path, 0600);
    return fd;
}

int lh_control_server_open(lh_control_server_t *srv, const char *path)
{
    int fd = listen_at(path);

    if (fd == -2)
        return -1;
    srv->fd = fd;
    snprintf(srv->path, sizeof(srv->path), "%s", path);
    return 0;
}

static void accept_client(lh_control_server_t *srv)
{
    int fd = accept4(srv->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (fd < 0)
        return;
    if (srv->nclients == LH_ARRAY_LEN(srv->clients)) {
        lh_control_reply(fd, "error busy");
        return;
    }
    srv->clients[srv->nclients].fd = fd;
    srv->clients[srv->nclients].len = 0;
    srv->clients[srv->nclients].deadline_ms = lh_now_ms() + CLIENT_TIMEOUT_MS;
    srv->nclients++;
}

/* Reads client idx; once it has a whole line (or the line is too long, or the client
 * closed), the client leaves the table (the last one takes its index) and its command
 * runs. */
static void read_client(lh_control_server_t *srv, size_t idx)
{
    lh_control_client_t cl = srv->clients[idx];
    ssize_t n = recv(cl.fd, cl.buf + cl.len, sizeof(cl.buf) - 1 - cl.len, 0);
    char *nl;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n > 0)
        cl.len += (size_t)n;
    cl.buf[cl.len] = '\0';
    nl = strchr(cl.buf, '\n');
    if (nl == NULL && n > 0 && cl.len < sizeof(cl.buf) - 1) {
        srv->clients[idx] = cl;
        return; /* more to come */
    }
    srv->clients[idx] = srv->clients[--srv->nclients];
    if (nl == NULL) {
        lh_control_reply(cl.fd, "error expected a command line");
        return;
    }
    *nl = '\0';
    if (strcmp(cl.buf, "reload") == 0)
        srv->ops->reload(cl.fd, srv->arg);
    else if (strcmp(cl.buf, "status") == 0)
        srv->ops->status(cl.fd, srv->arg);
    else if (strcmp(cl.buf, "stop") == 0)
        srv->ops->stop(cl.fd, srv->arg);
    else if (strcmp(cl.buf, "upgrade") == 0)
        srv->ops->upgrade(cl.fd, srv->arg);
    else
        lh_control_reply(cl.fd, "error unknown command \"%.32s\" (reload, status, stop, "
                         "upgrade)", cl.buf);
}

size_t lh_control_server_pollfds(lh_control_server_t *srv, struct pollfd *pfd, int accepting)
{
    size_t n = 0;

    srv->polled_listen = srv->fd >= 0 && accepting;
    if (srv->polled_listen) {
        pfd[n].fd = srv->fd;
        pfd[n++].events = POLLIN;
    }
    srv->polled_clients = srv->nclients;
    for (size_t i = 0; i < srv->polled_clients; i++) {
        pfd[n].fd = srv->clients[i].fd;
        pfd[n++].events = POLLIN;
    }
    return n;
}

size_t lh_control_server_handle(lh_control_server_t *srv, const struct pollfd *pfd)
{
    size_t k = 0, nc = srv->polled_clients;

    if (srv->polled_listen) {
        if (pfd[k].revents)
            accept_client(srv);
        k++;
    }
    /* Walk backwards: read_client may swap the last client into i, and the clients
     * accepted just now (at the end) were not polled. */
    for (size_t i = nc; i-- > 0;)
        if (pfd[k + i].revents && i < srv->nclients)
            read_client(srv, i);
    return k + nc;
}

void lh_control_server_expire(lh_control_server_t *srv)
{
    for (size_t i = srv->nclients; i-- > 0;) {
        if (lh_now_ms() >= srv->clients[i].deadline_ms) {
            int fd = srv->clients[i].fd;

            srv->clients[i] = srv->clients[--srv->nclients];
            lh_control_reply(fd, "error timeout");
        }
    }
}

void lh_control_server_close_fds(lh_control_server_t *srv)
{
    if (srv->fd >= 0)
        close(srv->fd);
    for (size_t i = 0; i < srv->nclients; i++)
        close(srv->clients[i].fd);
    srv->fd = -1;
    srv->nclients = 0;
}

void lh_control_server_drop_clients(lh_control_server_t *srv, const char *msg)
{
    for (size_t i = 0; i < srv->nclients; i++)
        lh_control_reply(srv->clients[i].fd, "error %s", msg);
    srv->nclients = 0;
}

void lh_control_server_close(lh_control_server_t *srv)
{
    int listening = srv->fd >= 0;

    lh_control_server_close_fds(srv);
    if (listening && srv->path[0] != '\0')
        unlink(srv->path);
}

/* ---- The client, `lhttpd -s` ---- */

int lh_control_send(const lh_config_t *cfg, const char *command, unsigned timeout_ms)
{
    struct sockaddr_un sa;
    char buf[4096];
    size_t len = 0;
    uint64_t deadline = lh_now_ms() + timeout_ms;
    int fd;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cfg->control_socket);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "lhttpd: cannot reach the master at %s: %s (is lhttpd running?)\n",
                cfg->control_socket, strerror(errno));
        if (fd >= 0)
            close(fd);
        /* No master to upgrade in place: only a (re)start brings the new binary. */
        return strcmp(command, "upgrade") == 0 ? 3 : 1;
    }
    snprintf(buf, sizeof(buf), "%s\n", command);
    if (send(fd, buf, strlen(buf), MSG_NOSIGNAL) < 0) {
        fprintf(stderr, "lhttpd: control socket: %s\n", strerror(errno));
        close(fd);
        return 1;
    }
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        uint64_t now = lh_now_ms();
        ssize_t n;

        if (now >= deadline) {
            fprintf(stderr, "lhttpd: no answer from the master within %u ms\n", timeout_ms);
            close(fd);
            return 1;
        }
        if (poll(&p, 1, (int)(deadline - now)) < 0 && errno != EINTR)
            break;
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (len += (size_t)n) == sizeof(buf) - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    if (len == 0) {
        fprintf(stderr, "lhttpd: the master closed the control connection without an answer\n");
        return 1;
    }
    if (strncmp(buf, "ok", 2) == 0) {
        printf("lhttpd: %s", buf + (buf[2] == ' ' ? 3 : 2));
        return 0;
    }
    fprintf(stderr, "lhttpd: %s %s", command,
            strncmp(buf, "error ", 6) == 0 ? buf + 6 : buf);
    /* An older master answers "unknown command": it cannot re-exec, a restart can. */
    if (strcmp(command, "upgrade") == 0 && (strncmp(buf, "error incompatible", 18) == 0 ||
                                            strncmp(buf, "error unknown command", 21) == 0))
        return 3;
    return 1;
}
