/*
 * `lhttpd -s COMMAND`: the client side of the master's control socket. Used by
 * ExecReload= so that `systemctl reload` returns only when the reload is done, and fails
 * when it failed.
 */
#include "master.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

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
        return 1;
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
    return 1;
}
