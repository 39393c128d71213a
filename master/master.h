/*
 * The master process: command line, configuration loading, listening sockets (from
 * systemd or opened by hand), forking and supervising workers, reload, stop, and the
 * systemd notification protocol. The master never serves clients.
 */
#ifndef LH_MASTER_H
#define LH_MASTER_H

#include <stddef.h>

#include "lh_config.h"

/* Reads and parses the config file (config_file.c; at most 4 MiB). Returns the config,
 * or NULL with err set to "FILE:LINE:COL: problem" (or "FILE: reason" when it cannot be
 * read). */
lh_config_t *lh_config_load_file(const char *path, char *err, size_t errlen);
/* The same without the TLS certificates (tls_store stays NULL): for draining workers. */
lh_config_t *lh_config_load_rules(const char *path, char *err, size_t errlen);

/* Opens every address of addrs. Returns 0 with *fds_out (malloc'd) and *n_out, or -1. */
int lh_listen_open(const lh_strlist_t *addrs, int **fds_out, size_t *n_out, char *err,
                   size_t errlen);

/* Runs the master with cfg (owned) loaded from path. Returns the exit status. */
int lh_master_run(lh_config_t *cfg, const char *path);

/* Runs the master's new image after a binary upgrade's exec (upgrade.h), from the state
 * in state_fd; cfg (owned) is NULL when path did not load, cfg_err saying why (then the
 * image goes back to the old binary). Returns the exit status. */
int lh_master_resume(lh_config_t *cfg, const char *path, int state_fd, const char *cfg_err);

#endif
