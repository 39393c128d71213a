/*
 * Loadable modules (the "modules" configuration key, lhttpd.json(5)): shared objects the
 * master loads before any worker forks. Each exports one lh_module_t named
 * LH_MODULE_SYMBOL (see lhttpd.h); its init registers processors and header filters,
 * which every worker of every generation inherits through fork.
 */
#ifndef LH_MODULE_H
#define LH_MODULE_H

#include <stddef.h>

#include "lh_config.h"

/*
 * Loads the modules of cfg in order: dlopen (RTLD_NOW | RTLD_LOCAL), the descriptor
 * symbol, its api_version, then init with the module's config section; logs each module
 * loaded at info level. Modules stay loaded for the life of the process (a reload keeps
 * them). Call once, before workers fork. Returns 0, or -1 with err holding one line
 * "module PATH: problem"; modules loaded before the failing one stay loaded, and the
 * caller is expected to exit.
 */
int lh_modules_load(const lh_config_t *cfg, char *err, size_t errlen);

/* The number of modules loaded. */
size_t lh_modules_count(void);

/* 1 when cfg lists the modules that are loaded, same paths and configs in the same order. */
int lh_modules_same(const lh_config_t *cfg);

#endif
