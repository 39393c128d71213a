/*
 * Loadable modules: dlopen, version check, init. Runs in the master only (at start, and
 * for `lhttpd -t`), before any worker forks, which is why it lives in master/; what a
 * module's init registers is then in every worker's registry, and its code is mapped in
 * every worker, because fork copies both. No worker code calls into this file.
 *
 * A module is refused, with a message saying what to do, when it cannot be loaded (a
 * missing file, a missing library, an unresolved symbol: RTLD_NOW finds those now, not
 * on the first message), when it exports no descriptor, when the descriptor was built
 * against another LH_API_VERSION, or when its init fails. Only api_version is read
 * before the version is known to match: it is the descriptor's first field in every
 * version of the API.
 */
#include "module.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh_log.h"
#include "lhttpd.h"

#define MAX_MODULES 64 /* the configuration allows at most this many */

typedef struct {
    void *handle;
    const lh_module_t *desc;
    char *path;
    char *config_json;
} loaded_t;

/* Loaded for the life of the process: never dlclosed, so that no registered callback
 * can point into unmapped code. */
static loaded_t loaded[MAX_MODULES];
static size_t nloaded;

/* dlerror's text usually repeats the path first; say it once. */
static const char *dl_reason(const char *path)
{
    const char *e = dlerror();
    size_t pl = strlen(path);

    if (e == NULL)
        return "unknown error";
    if (strncmp(e, path, pl) == 0 && e[pl] == ':' && e[pl + 1] == ' ')
        return e + pl + 2;
    return e;
}

static int load_one(const lh_module_cfg_t *mc, char *err, size_t errlen)
{
    char merr[512];
    lh_module_ctx_t ctx;
    const lh_module_t *d;
    void *h;
    int rc;

    if (nloaded == MAX_MODULES) {
        snprintf(err, errlen, "module %s: more than %d modules", mc->path, MAX_MODULES);
        return -1;
    }
    dlerror();
    h = dlopen(mc->path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *why = dl_reason(mc->path);
        const char *sym = strstr(why, "undefined symbol: lh_");

        if (sym != NULL) {
            /* The binary exports only the LH_API functions: an lh_ symbol it does not
             * resolve is an internal one (or one from another version). */
            sym += strlen("undefined symbol: ");
            snprintf(err, errlen, "module %s: cannot load it: %s (%.*s is not part of "
                     "lhttpd's module API: a module may call only the functions of "
                     "<lhttpd/lhttpd.h>)", mc->path, why, (int)strcspn(sym, " ,;:()"), sym);
        } else {
            snprintf(err, errlen, "module %s: cannot load it: %s", mc->path, why);
        }
        return -1;
    }
    d = dlsym(h, LH_MODULE_SYMBOL);
    if (d == NULL) {
        snprintf(err, errlen, "module %s: no \"%s\" symbol: not an lhttpd module (define "
                 "one with LH_MODULE(name, version, init) from <lhttpd/lhttpd.h>)", mc->path,
                 LH_MODULE_SYMBOL);
        dlclose(h);
        return -1;
    }
    if (d->api_version != LH_API_VERSION) {
        snprintf(err, errlen, "module %s: built for lhttpd API %lu, this lhttpd speaks API "
                 "%d; rebuild it against this version's <lhttpd/lhttpd.h>", mc->path,
                 (unsigned long)d->api_version, LH_API_VERSION);
        dlclose(h);
        return -1;
    }
    if (d->init == NULL) {
        snprintf(err, errlen, "module %s: its descriptor has no init function", mc->path);
        dlclose(h);
        return -1;
    }
    ctx.path = mc->path;
    ctx.config_json = mc->config_json;
    ctx.config_len = strlen(mc->config_json);
    merr[0] = '\0';
    rc = d->init(&ctx, merr, sizeof(merr));
    merr[sizeof(merr) - 1] = '\0';
    if (rc != 0) {
        /* Its init may have registered something already: keep it mapped. */
        snprintf(err, errlen, "module %s (%s): init failed: %s", mc->path,
                 d->name ? d->name : "unnamed", merr[0] ? merr : "no reason given");
        return -1;
    }
    loaded[nloaded].handle = h;
    loaded[nloaded].desc = d;
    loaded[nloaded].path = strdup(mc->path);
    loaded[nloaded].config_json = strdup(mc->config_json);
    nloaded++;
    lh_log(LH_LOG_INFO, "module %s %s loaded from %s (API %d)", d->name ? d->name : "unnamed",
           d->version ? d->version : "?", mc->path, LH_API_VERSION);
    return 0;
}

int lh_modules_load(const lh_config_t *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nmodules; i++)
        if (load_one(&cfg->modules[i], err, errlen) != 0)
            return -1;
    return 0;
}

size_t lh_modules_count(void)
{
    return nloaded;
}

static int same_str(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

int lh_modules_same(const lh_config_t *cfg)
{
    if (cfg->nmodules != nloaded)
        return 0;
    for (size_t i = 0; i < nloaded; i++)
        if (!same_str(cfg->modules[i].path, loaded[i].path) ||
            !same_str(cfg->modules[i].config_json, loaded[i].config_json))
            return 0;
    return 1;
}
