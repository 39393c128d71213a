/*
 * Health and metrics endpoints: /livez, /readyz and /metrics. They are served on the
 * admin socket when there is one; otherwise on the public socket unless
 * admin.endpoints_on_public is false.
 */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lh_admin_socket_exists(const lh_worker_t *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i].admin)
            return 1;
    return 0;
}


/* /readyz: this worker accepts clients, its NATS connection is up, it is not stopping, and
 * its history streams have answered (or failed to) since it started. */
static void readyz(lh_conn_t *c, const lh_http_request_t *req)
{
    lh_worker_t *w = c->w;
    int accepting = !w->draining && !w->stopping && !w->listeners_paused;
    int nats = lh_nats_connected(w);
    int hist = lh_hist_settled(w);
    int ok = accepting && nats && hist;
    int verbose = req->query && req->query_len >= 7 && memcmp(req->query, "verbose", 7) == 0;
    int json = verbose && req->query_len == 12 && memcmp(req->query, "verbose=json", 12) == 0;
    char body[512];
    int n;

    if (!verbose) {
        n = snprintf(body, sizeof(body), "%s\n", ok ? "ok" : "not ready");
        lh_http_respond(c, ok ? 200 : 503, NULL, "text/plain; charset=utf-8", body, (size_t)n);
        return;
    }
    if (json)
        n = snprintf(body, sizeof(body),
                     "{\"status\":\"%s\",\"checks\":{\"accepting\":%s,\"nats\":%s,"
                     "\"history\":%s,\"stopping\":%s,\"draining\":%s},\"worker\":%d}\n",
                     ok ? "ok" : "not ready", accepting ? "true" : "false",
                     nats ? "true" : "false", hist ? "true" : "false",
                     w->stopping ? "true" : "false",
                     w->draining ? "true" : "false", w->index);
    else
        n = snprintf(body, sizeof(body),
                     "[%s] accepting\n[%s] nats\n[%s] history\n[%s] not stopping\n"
                     "[%s] not draining\nworker %d: %s\n",
                     accepting ? "+" : "-", nats ? "+" : "-", hist ? "+" : "-",
                     w->stopping ? "-" : "+",
                     w->draining ? "-" : "+", w->index, ok ? "ok" : "not ready");
    lh_http_respond(c, ok ? 200 : 503, NULL,
                    json ? "application/json" : "text/plain; charset=utf-8", body, (size_t)n);
}

int lh_admin_route(lh_conn_t *c, const lh_http_request_t *req)
{
    lh_worker_t *w = c->w;
    int ep;

    if (lh_http_path_is(req, "/livez"))
        ep = LH_EP_LIVEZ;
    else if (lh_http_path_is(req, "/readyz"))
        ep = LH_EP_READYZ;
    else if (lh_http_path_is(req, "/metrics"))
        ep = LH_EP_METRICS;
    else
        return 0;
    if (!(c->flags & LH_CF_ADMIN) && (lh_admin_socket_exists(w) || !w->cfg->admin.endpoints_on_public))
        return 0; /* not served here: the caller answers 404 */
    c->endpoint = (uint8_t)ep;
    if (req->method_id == LH_HTTP_OPTIONS) {
        lh_http_options(c, "GET, HEAD, OPTIONS");
        return 1;
    }
    if (req->method_id != LH_HTTP_GET && req->method_id != LH_HTTP_HEAD) {
        lh_http_respond(c, 405, "Allow: GET, HEAD, OPTIONS\r\n", "text/plain; charset=utf-8",
                        "use GET\n", 8);
        return 1;
    }
    if (ep == LH_EP_LIVEZ) {
        /* Answered from the event loop: that it runs is all this says. */
        lh_http_respond(c, 200, NULL, "text/plain; charset=utf-8", "ok\n", 3);
    } else if (ep == LH_EP_READYZ) {
        readyz(c, req);
    } else {
        size_t len = 0;
        char *text;

        lh_nats_sync_metrics(w);
        text = lh_metrics_render(w, &len);
        if (text == NULL) {
            lh_http_respond(c, 500, NULL, NULL, NULL, 0);
        } else {
            lh_http_respond(c, 200, NULL, "text/plain; version=0.0.4; charset=utf-8", text, len);
            free(text);
        }
    }
    return 1;
}
