/*
 * Reading the configuration file: at start, for `lhttpd -t` and `lhttpd -s` (main.c), and
 * at each reload (master.c). The parsing itself is shared/lh_config.c's; this file only
 * reads the file, with a cap on its size.
 */
#include "master.h"
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_BYTES (4 * 1024 * 1024)

static lh_config_t *load(const char *path, int with_tls, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *text;
    size_t len;
    char perr[512];
    lh_config_t *cfg;
    lh_auth_t *a;

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    text = malloc(MAX_CONFIG_BYTES + 1);
    if (text == NULL) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    len = fread(text, 1, MAX_CONFIG_BYTES + 1, f);
    if (ferror(f) || len > MAX_CONFIG_BYTES) {
        snprintf(err, errlen, "%s: %s", path,
                 ferror(f) ? strerror(errno) : "larger than 4 MiB");
        fclose(f);
        free(text);
        return NULL;
    }
    fclose(f);
    cfg = lh_config_parse(text, len, perr, sizeof(perr));
    free(text);
    if (cfg == NULL) {
        snprintf(err, errlen, "%s:%s", path, perr);
        return NULL;
    }
    /* The key files auth.keys names must be there and usable: a start, a reload or
     * `lhttpd -t` with a missing or bad key fails here, with the reason. */
    a = lh_auth_new(cfg, NULL, perr, sizeof(perr));
    if (a == NULL) {
        snprintf(err, errlen, "%s: %s", path, perr);
        lh_config_free(cfg);
        return NULL;
    }
    lh_auth_free(a);
    /* Likewise the TLS certificates and keys: loaded here, once per configuration, so
     * that the workers forked with it share them (and their session ticket keys). */
    if (with_tls && lh_tls_store_load(cfg, perr, sizeof(perr)) < 0) {
        snprintf(err, errlen, "%s: %s", path, perr);
        lh_config_free(cfg);
        return NULL;
    }
    return cfg;
}

lh_config_t *lh_config_load_file(const char *path, char *err, size_t errlen)
{
    return load(path, 1, err, errlen);
}

/*
 * The rules of the file, for a draining worker that takes a later reload's identity and
 * namespace rules (master.c's reload_config): everything but the TLS certificates. The
 * worker serves no new connection, so it needs none; the master has checked them
 * already; and reading them again here would cost its event loop the key parsing and
 * would reject the rules whenever a renewal is caught between its cert and key file.
 */
lh_config_t *lh_config_load_rules(const char *path, char *err, size_t errlen)
{
    return load(path, 0, err, errlen);
}
