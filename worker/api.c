/*
 * The module API: every function of lhttpd.h is defined here, and only these are
 * exported from the lhttpd binary (it is built with -fvisibility=hidden; LH_API marks
 * them). Reviewing a change of the API, or an LH_API_VERSION bump, means reading this
 * file and lhttpd.h. The message accessors and the per-connection data slots are the
 * real thing; the rest are calls into the layer that owns each (reply.c, conn.c,
 * dispatch.c, pubsub.c). The worker's own layers never call these: they call those
 * layers' internal names, so that api.c stays on top (worker.h, check-layers.py).
 */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh_log.h"
#include "lh_multipart.h"

/* ---- lh_conn_id, lh_conn_peer ---- */

const char *lh_conn_peer(const lh_conn_t *c)
{
    return lh_conn_peer_name(c);
}

uint64_t lh_conn_id(const lh_conn_t *c)
{
    return c->id;
}

/* ---- lh_msg_* ---- */

const char *lh_msg_command(const lh_msg_t *m, size_t *len)
{
    if (len)
        *len = m->m->command_len;
    return m->m->command;
}

const char *lh_msg_header(const lh_msg_t *m, const char *key, size_t *len)
{
    size_t l = 0;
    const char *v = lh_lhttp_header(m->m, key, &l);

    if (len)
        *len = l;
    return v;
}

size_t lh_msg_header_count(const lh_msg_t *m)
{
    return m->m->num_headers;
}

int lh_msg_header_at(const lh_msg_t *m, size_t i, lh_header_t *out)
{
    if (i >= m->m->num_headers)
        return -1;
    out->key = m->m->headers[i].key;
    out->key_len = m->m->headers[i].key_len;
    out->value = m->m->headers[i].value;
    out->value_len = m->m->headers[i].value_len;
    return 0;
}

const char *lh_msg_body(const lh_msg_t *m, size_t *len)
{
    if (len)
        *len = m->m->body_len;
    return m->m->body;
}

const char *lh_msg_raw(const lh_msg_t *m, size_t *len)
{
    if (len)
        *len = m->raw_len;
    return (const char *)m->raw;
}

/*
 * The headers of m with key set to value: the first header named key (ignoring case) is
 * replaced where it stands and later ones are dropped, or the header is appended. Then
 * the message is serialized into a buffer of its own and parsed again, so that everything
 * after the caller sees the new message, lh_msg_raw included.
 */
int lh_msg_set_header(lh_msg_t *m, const char *key, const char *value)
{
    static lh_lhttp_header_t hs[LH_LHTTP_HEADERS_CAP]; /* the worker's thread only */
    const lh_worker_t *w = m->w;
    const lh_lhttp_msg_t *lm = m->m;
    size_t kl = key ? strlen(key) : 0, vl, n = 0, need, nparts = m->nparts;
    const char *reason = NULL;
    int replaced = 0;
    lh_msg_owned_t *o;

    if (value == NULL)
        value = "";
    vl = strlen(value);
    if (key == NULL || !lh_lhttp_header_valid(key, kl, value, vl))
        return -EINVAL;
    if (kl + 1 + vl > w->lhttp_limits.max_line)
        return -E2BIG;
    for (size_t i = 0; i < lm->num_headers; i++) {
        const lh_lhttp_header_t *h = &lm->headers[i];

        if (!lh_strieq(h->key, h->key_len, key)) {
            hs[n++] = *h;
        } else if (!replaced) {
            replaced = 1;
            hs[n].key = key;
            hs[n].key_len = kl;
            hs[n].value = value;
            hs[n++].value_len = vl;
        }
    }
    if (!replaced) {
        if (n == LH_LHTTP_HEADERS_CAP)
            return -E2BIG;
        hs[n].key = key;
        hs[n].key_len = kl;
        hs[n].value = value;
        hs[n++].value_len = vl;
    }
    if (n > w->lhttp_limits.max_headers)
        return -E2BIG;
    if (lh_strieq(key, kl, "multipart")) {
        lh_multipart_limits_t lim;
        long np;

        lh_dispatch_multipart_limits(w, &lim);
        np = lh_multipart_check(value, vl, lm->body, lm->body_len, &lim, NULL, 0);
        if (np < 0)
            return -EINVAL;
        nparts = (size_t)np;
    }
    need = lh_lhttp_serialize(NULL, 0, lm->command, lm->command_len, hs, n, lm->body,
                              lm->body_len);
    if (need > w->cfg->limits.max_message_bytes)
        return -E2BIG;
    o = malloc(sizeof(*o) + need);
    if (o == NULL)
        return -ENOMEM;
    lh_lhttp_serialize(o->data, need, lm->command, lm->command_len, hs, n, lm->body,
                       lm->body_len);
    if (lh_lhttp_parse(o->data, need, &w->lhttp_limits, m->m, &reason) != 0) {
        /* Cannot happen: every line was checked above. Put the message back. */
        lh_log(LH_LOG_ERR, "lh_msg_set_header: re-parse failed: %s", reason);
        lh_lhttp_parse((const char *)m->raw, m->raw_len, &w->lhttp_limits, m->m, NULL);
        free(o);
        return -EINVAL;
    }
    o->next = m->owned;
    m->owned = o;
    m->raw = (const uint8_t *)o->data;
    m->raw_len = need;
    m->nparts = nparts;
    return 0;
}

size_t lh_msg_part_count(const lh_msg_t *m)
{
    return m->nparts;
}

int lh_msg_part(const lh_msg_t *m, size_t i, lh_part_t *out)
{
    lh_multipart_part_t p;
    size_t vl;
    const char *v;

    if (out == NULL || i >= m->nparts)
        return -1;
    v = lh_lhttp_header(m->m, "multipart", &vl);
    if (v == NULL || lh_multipart_part(v, vl, m->m->body, m->m->body_len, i, &p) != 0)
        return -1;
    for (size_t k = 0; k < p.num_headers; k++) {
        out->headers[k].key = p.headers[k].key;
        out->headers[k].key_len = p.headers[k].key_len;
        out->headers[k].value = p.headers[k].value;
        out->headers[k].value_len = p.headers[k].value_len;
    }
    out->num_headers = p.num_headers;
    out->body = p.body;
    out->body_len = p.body_len;
    return 0;
}

/* ---- lh_conn_* ---- */

int lh_conn_send(lh_conn_t *c, const char *command, const lh_header_t *headers, size_t n,
                 const void *body, size_t body_len)
{
    return lh_reply_send(c, command, headers, n, body, body_len);
}

int lh_conn_send_raw(lh_conn_t *c, const void *data, size_t len)
{
    return lh_reply_raw(c, data, len);
}

int lh_conn_send_error(lh_conn_t *c, const lh_msg_t *m, int code, const char *reason)
{
    return lh_reply_error_to(c, m, code, reason);
}

void lh_conn_close(lh_conn_t *c, uint16_t code, const char *reason)
{
    lh_conn_close_ws(c, code, reason);
}

void *lh_conn_get_data(const lh_conn_t *c, const void *key)
{
    for (uint16_t i = 0; i < c->nslots; i++)
        if (c->slots[i].key == key)
            return c->slots[i].data;
    return NULL;
}

int lh_conn_set_data(lh_conn_t *c, const void *key, void *data)
{
    lh_data_slot_t *ns;

    for (uint16_t i = 0; i < c->nslots; i++) {
        if (c->slots[i].key == key) {
            c->slots[i].data = data;
            return 0;
        }
    }
    if (c->nslots == UINT16_MAX)
        return -ENOSPC;
    ns = realloc(c->slots, (c->nslots + 1u) * sizeof(*ns));
    if (ns == NULL)
        return -ENOMEM;
    c->slots = ns;
    c->slots[c->nslots].key = key;
    c->slots[c->nslots].data = data;
    c->nslots++;
    return 0;
}

/* ---- Pub/sub (pubsub.c) ---- */

int lh_subscribe(lh_conn_t *c, const char *channel, size_t len)
{
    return lh_pubsub_subscribe(c, channel, len);
}

int lh_unsubscribe(lh_conn_t *c, const char *channel, size_t len)
{
    return lh_pubsub_unsubscribe(c, channel, len);
}

long lh_publish(const char *channel, size_t len, const void *msg, size_t msg_len)
{
    return lh_pubsub_publish(channel, len, msg, msg_len);
}

/* ---- Processors and filters (dispatch.c) ---- */

int lh_register_processor(const char *command, const lh_processor_t *p, void *ud)
{
    return lh_dispatch_register_processor(command, p, ud);
}

int lh_register_filter(const lh_filter_t *f, void *ud)
{
    return lh_dispatch_register_filter(f, ud);
}

/* ---- Logging ---- */

void lh_api_log(int level, const char *fmt, ...)
{
    char line[1500];
    va_list ap;

    if (!lh_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    lh_log(level, "%s", line);
}
