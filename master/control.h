/*
 * The master's control socket, both sides: the server the master runs on
 * control_socket (a Unix stream socket, mode 0600), and the client, `lhttpd -s COMMAND`.
 *
 * The protocol: the client sends one line, "reload", "status", "stop" or "upgrade"; the
 * master answers one line (status: several), "ok ..." or "error ...", and closes. A
 * reload is answered when it is done, so `systemctl reload` (ExecReload=) returns only
 * then, and fails when the reload failed. An upgrade is answered by the new image of the
 * master once its workers serve (the client's fd crosses the exec), or by the old one
 * when it failed; "error incompatible: ..." means it cannot be done in place.
 *
 * The server knows the protocol's framing and its command names, not the master's state:
 * it hands each command, with the client's fd, to the master through lh_control_ops_t.
 */
#ifndef LH_CONTROL_H
#define LH_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "lh_config.h"

struct pollfd;

#define LH_CONTROL_MAX_CLIENTS 8 /* connected at once; one more gets "error busy" */
#define LH_CONTROL_POLLFDS (1 + LH_CONTROL_MAX_CLIENTS) /* the most pollfds it adds */

/*
 * What the master does for each command. Each takes ownership of fd, the client's
 * connection, and must answer it exactly once with lh_control_reply (which closes it),
 * now or later (reload answers when the reload is done).
 */
typedef struct {
    void (*reload)(int fd, void *arg);
    void (*status)(int fd, void *arg);
    void (*stop)(int fd, void *arg);
    void (*upgrade)(int fd, void *arg);
} lh_control_ops_t;

typedef struct {
    int fd;
    char buf[64];
    size_t len;
    uint64_t deadline_ms; /* a client without a whole line by then gets "error timeout" */
} lh_control_client_t;

typedef struct {
    int fd; /* the listening socket, or -1 */
    char path[108]; /* where it listens (sun_path): what is unlinked at exit */
    lh_control_client_t clients[LH_CONTROL_MAX_CLIENTS];
    size_t nclients;
    const lh_control_ops_t *ops;
    void *arg;
    /* What the last lh_control_server_pollfds put in the array. */
    int polled_listen;
    size_t polled_clients;
} lh_control_server_t;

/* Sets srv up without a socket (fd -1, no clients); ops (borrowed) and arg are what
 * lh_control_server_handle calls the commands with. */
void lh_control_server_init(lh_control_server_t *srv, const lh_control_ops_t *ops, void *arg);

/*
 * Listens on path (replacing a stale socket file; mode 0600). Returns 0 when listening,
 * or when it cannot listen (logged as a warning: `lhttpd -s` will not reach this master,
 * SIGHUP still reloads) with srv->fd -1; returns -1 when another master answers at path,
 * which is logged and means this master must not start.
 */
int lh_control_server_open(lh_control_server_t *srv, const char *path);

/*
 * Fills pfd (room for LH_CONTROL_POLLFDS) with the listening socket, when accepting is
 * true, and the connected clients. Returns how many it filled. lh_control_server_handle
 * reads the same entries after the poll.
 */
size_t lh_control_server_pollfds(lh_control_server_t *srv, struct pollfd *pfd, int accepting);

/*
 * After a poll: accepts a new client, reads the clients that have input and runs each
 * whole command line through the ops (an unknown one is answered here), from the entries
 * lh_control_server_pollfds filled at pfd. Returns how many entries those were.
 */
size_t lh_control_server_handle(lh_control_server_t *srv, const struct pollfd *pfd);

/* Answers "error timeout" to the clients that did not send a line in time. */
void lh_control_server_expire(lh_control_server_t *srv);

/* In a forked child: closes the listening socket and the clients' fds, so that the
 * child holds none of them; the socket file stays. */
void lh_control_server_close_fds(lh_control_server_t *srv);

/* Before the master execs itself: answers "error MSG" to the clients that have not sent
 * their command yet (they would lose their connection at the exec). */
void lh_control_server_drop_clients(lh_control_server_t *srv, const char *msg);

/* At exit: closes the listening socket and the clients' fds, and unlinks the path it
 * was opened at when a socket was listening (not today's control_socket: a reload may
 * have changed that, and the file there is not this master's). */
void lh_control_server_close(lh_control_server_t *srv);

/*
 * Sends one line, formatted, to fd and closes fd; fd -1 (no client to answer: a reload
 * from SIGHUP) does nothing. The line is cut at about 1200 bytes. Never blocks.
 */
void lh_control_reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * `lhttpd -s COMMAND`: sends COMMAND ("reload", "stop", "status") to the running master
 * through cfg->control_socket and prints its answer. Waits up to timeout_ms. Returns the
 * exit status: 0 when the master says "ok", 1 otherwise; for "upgrade", 3 when the master
 * says it cannot upgrade in place (incompatible, or a master that knows no "upgrade"),
 * or when no master answers at the control socket: then only a (re)start brings the new
 * binary.
 */
int lh_control_send(const lh_config_t *cfg, const char *command, unsigned timeout_ms);

#endif
