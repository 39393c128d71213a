/*
 * The master process: command line, configuration loading, listening sockets, and (with
 * the process-model work) forking and supervising workers.
 */
#ifndef LH_MASTER_H
#define LH_MASTER_H

#include <stddef.h>

#include "lh_config.h"

/* Reads and parses the config file. Returns the config, or NULL with err set to
 * "FILE:LINE:COL: problem" (or "FILE: reason" when it cannot be read). */
lh_config_t *lh_config_load_file(const char *path, char *err, size_t errlen);

/* Opens every `listen` address. Returns 0 with *fds_out (malloc'd) and *n_out, or -1. */
int lh_listen_open(const lh_config_t *cfg, int **fds_out, size_t *n_out, char *err,
                   size_t errlen);

#endif
