/*
 * ws:// URL parsing for lhttpc. Pure.
 */
#include "lhttpc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Copies s[0..len) into out (cap) with a NUL, or returns -1 when it does not fit. */
static int copy(char *out, size_t cap, const char *s, size_t len)
{
    if (len >= cap)
        return -1;
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

int lhc_url_parse(const char *s, lhc_url_t *u, const char **err)
{
    const char *auth, *end, *host, *host_end, *port = NULL, *p;
    size_t port_len = 0, i;

    memset(u, 0, sizeof(*u));
    if (strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0) {
        *err = "an http:// URL needs --http (POST publish); WebSocket URLs are ws:// or wss://";
        return -1;
    }
    if (strncasecmp(s, "wss://", 6) == 0) {
        u->tls = 1;
        auth = s + 6;
    } else if (strncasecmp(s, "ws://", 5) == 0) {
        auth = s + 5;
    } else {
        *err = "the URL must start with ws:// or wss://";
        return -1;
    }
    end = auth + strcspn(auth, "/?#");
    if (memchr(auth, '@', (size_t)(end - auth)) != NULL) {
        *err = "user information in the URL is not supported";
        return -1;
    }
    if (*auth == '[') {
        host = auth + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (host_end == NULL) {
            *err = "unterminated [ in the URL's host";
            return -1;
        }
        p = host_end + 1;
    } else {
        host = auth;
        host_end = memchr(auth, ':', (size_t)(end - auth));
        if (host_end == NULL)
            host_end = end;
        p = host_end;
    }
    if (p < end) {
        if (*p != ':') {
            *err = "unexpected text after the URL's host";
            return -1;
        }
        port = p + 1;
        port_len = (size_t)(end - port);
    }
    if (host_end == host) {
        *err = "the URL has no host";
        return -1;
    }
    if (copy(u->host, sizeof(u->host), host, (size_t)(host_end - host)) < 0) {
        *err = "the URL's host is too long";
        return -1;
    }
    if (port != NULL) {
        unsigned long v = 0;

        if (port_len == 0 || port_len > 5) {
            *err = "the URL's port must be a number from 1 to 65535";
            return -1;
        }
        for (i = 0; i < port_len; i++) {
            if (port[i] < '0' || port[i] > '9') {
                *err = "the URL's port must be a number from 1 to 65535";
                return -1;
            }
            v = v * 10 + (unsigned long)(port[i] - '0');
        }
        if (v < 1 || v > 65535) {
            *err = "the URL's port must be a number from 1 to 65535";
            return -1;
        }
        snprintf(u->port, sizeof(u->port), "%lu", v);
    } else {
        memcpy(u->port, u->tls ? "443" : "80", u->tls ? 4 : 3);
    }
    if (copy(u->hostport, sizeof(u->hostport), auth, (size_t)(end - auth)) < 0) {
        *err = "the URL's host is too long";
        return -1;
    }
    if (strchr(end, '#') != NULL) {
        *err = "a WebSocket URL must not have a #fragment";
        return -1;
    }
    for (p = end; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || (unsigned char)*p == 0x7f) {
            *err = "the URL's path holds a space or control character; percent-encode it";
            return -1;
        }
    }
    if (*end == '\0') {
        memcpy(u->target, "/", 2);
    } else if (*end == '?') {
        if (strlen(end) + 1 >= sizeof(u->target)) {
            *err = "the URL's path is too long";
            return -1;
        }
        u->target[0] = '/';
        memcpy(u->target + 1, end, strlen(end) + 1);
    } else if (copy(u->target, sizeof(u->target), end, strlen(end)) < 0) {
        *err = "the URL's path is too long";
        return -1;
    }
    return 0;
}
