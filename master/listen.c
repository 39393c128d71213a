/*
 * Listening sockets: opened by the master from `listen` when systemd passes none.
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lh_log.h"

#define BACKLOG 4096

static int open_one(const char *spec, char *err, size_t errlen)
{
    char host[256];
    unsigned port;
    char portstr[8];
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1, rc, saved = 0;

    if (lh_config_split_hostport(spec, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen, "listen \"%s\": not host:port", spec);
        return -1;
    }
    snprintf(portstr, sizeof(portstr), "%u", port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    /* ":port" means every address: the IPv6 wildcard also takes IPv4 when it can. */
    rc = getaddrinfo(host[0] ? host : "::", portstr, &hints, &res);
    if (rc != 0 && host[0] == '\0')
        rc = getaddrinfo("0.0.0.0", portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "listen \"%s\": %s", spec, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int one = 1, zero = 0;

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6 && host[0] == '\0')
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, BACKLOG) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errlen, "listen \"%s\": %s", spec, strerror(saved));
    return fd;
}

int lh_listen_open(const lh_strlist_t *addrs, int **fds_out, size_t *n_out, char *err,
                   size_t errlen)
{
    int *fds = calloc(addrs->n ? addrs->n : 1, sizeof(int));
    size_t n = 0;

    if (fds == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < addrs->n; i++) {
        int fd = open_one(addrs->items[i], err, errlen);

        if (fd < 0) {
            while (n > 0)
                close(fds[--n]);
            free(fds);
            return -1;
        }
        fds[n++] = fd;
        lh_log(LH_LOG_INFO, "listening on %s", addrs->items[i]);
    }
    *fds_out = fds;
    *n_out = n;
    return 0;
}
