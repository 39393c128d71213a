/*
 * The processor and header-filter registry, message dispatch, and the public API that
 * processors, filters and modules call (lhttpd.h).
 */
#include "worker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh_log.h"
#include "lh_utf8.h"
#include "lh_ws.h"

struct lh_msg_s {
    const lh_lhttp_msg_t *m;
    const uint8_t *raw;
    size_t raw_len;
    int binary;
};

typedef struct {
    char *command;
    size_t len;
    lh_processor_t p;
    void *ud;
} proc_entry_t;

typedef struct {
    lh_filter_t f;
    void *ud;
} filter_entry_t;

/* Registered before workers fork, read-only afterwards. */
static proc_entry_t *procs;
static size_t nprocs;
static filter_entry_t *filters;
static size_t nfilters;

int lh_register_processor(const char *command, const lh_processor_t *p, void *ud)
{
    size_t len = command ? strlen(command) : 0;
    proc_entry_t *np;

    if (!lh_lhttp_command_valid(command, len) || p == NULL)
        return -EINVAL;
    for (size_t i = 0; i < nprocs; i++) {
        if (procs[i].len == len && memcmp(procs[i].command, command, len) == 0) {
            procs[i].p = *p;
            procs[i].ud = ud;
            return 0;
        }
    }
    np = realloc(procs, (nprocs + 1) * sizeof(*procs));
    if (np == NULL)
        return -ENOMEM;
    procs = np;
    procs[nprocs].command = strdup(command);
    if (procs[nprocs].command == NULL)
        return -ENOMEM;
    procs[nprocs].len = len;
    procs[nprocs].p = *p;
    procs[nprocs].ud = ud;
    nprocs++;
    return 0;
}

int lh_register_filter(const lh_filter_t *f, void *ud)
{
    filter_entry_t *nf;

    if (f == NULL)
        return -EINVAL;
    nf = realloc(filters, (nfilters + 1) * sizeof(*filters));
    if (nf == NULL)
        return -ENOMEM;
    filters = nf;
    filters[nfilters].f = *f;
    filters[nfilters].ud = ud;
    nfilters++;
    return 0;
}

static const proc_entry_t *find_proc(const char *cmd, size_t len)
{
    for (size_t i = 0; i < nprocs; i++)
        if (procs[i].len == len && memcmp(procs[i].command, cmd, len) == 0)
            return &procs[i];
    return NULL;
}

void lh_dispatch_open(lh_conn_t *c)
{
    c->busy++;
    for (size_t i = 0; i < nfilters && !(c->flags & LH_CF_DEAD); i++)
        if (filters[i].f.on_open)
            filters[i].f.on_open(c, filters[i].ud);
    for (size_t i = 0; i < nprocs && !(c->flags & LH_CF_DEAD); i++)
        if (procs[i].p.on_open)
            procs[i].p.on_open(c, procs[i].ud);
    c->busy--;
}

void lh_dispatch_close(lh_conn_t *c)
{
    for (size_t i = 0; i < nprocs; i++)
        if (procs[i].p.on_close)
            procs[i].p.on_close(c, procs[i].ud);
    for (size_t i = nfilters; i-- > 0;)
        if (filters[i].f.on_close)
            filters[i].f.on_close(c, filters[i].ud);
}

/* The command of a message that failed to parse, when its first line has one. */
static const char *guess_command(const uint8_t *data, size_t len, size_t *cl)
{
    static const char proto[] = LH_LHTTP_PROTO " ";
    size_t pl = sizeof(proto) - 1, i;

    if (len <= pl || memcmp(data, proto, pl) != 0)
        return NULL;
    for (i = pl; i < len && data[i] != '\r' && data[i] != '\n'; i++)
        ;
    if (!lh_lhttp_command_valid((const char *)data + pl, i - pl))
        return NULL;
    *cl = i - pl;
    return (const char *)data + pl;
}

void lh_dispatch_message(lh_conn_t *c, uint8_t *data, size_t len, int binary)
{
    lh_worker_t *w = c->w;
    const char *reason = NULL;
    int r = lh_lhttp_parse((const char *)data, len, &w->lhttp_limits, &w->lmsg, &reason);
    struct lh_msg_s msg;
    const proc_entry_t *p;

    if (r != 0) {
        size_t cl = 0;
        const char *cmd = guess_command(data, len, &cl);
        lh_header_t h[3] = {
            {"code", 4, NULL, 0}, {"reason", 6, reason, strlen(reason)}, {"in-reply-to", 11, cmd, cl}};
        char code[8];

        h[0].value = code;
        h[0].value_len = (size_t)snprintf(code, sizeof(code), "%d", lh_lhttp_error_code(r));
        lh_log(LH_LOG_INFO, "%s: conn %llu: bad LHTTP message: %s", lh_conn_peer(c),
               (unsigned long long)c->id, reason);
        lh_m_inc(LH_M_LHTTP_ERRORS);
        lh_conn_send(c, "error", h, cmd ? 3 : 2, NULL, 0);
        return;
    }
    msg.m = &w->lmsg;
    msg.raw = data;
    msg.raw_len = len;
    msg.binary = binary;
    c->busy++;
    for (size_t i = 0; i < nfilters; i++) {
        if (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT))
            goto out;
        if (filters[i].f.before && filters[i].f.before(c, &msg, filters[i].ud) == LH_FILTER_STOP)
            goto out;
    }
    p = find_proc(msg.m->command, msg.m->command_len);
    if (p != NULL && p->p.on_message && !(c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT)))
        p->p.on_message(c, &msg, p->ud);
    for (size_t i = 0; i < nfilters; i++) {
        if (c->flags & LH_CF_DEAD)
            break;
        if (filters[i].f.after)
            filters[i].f.after(c, &msg, filters[i].ud);
    }
out:
    c->busy--;
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

/* ---- lh_conn_* ---- */

/* A buffer for one unfragmented server frame of len payload bytes; *hl gets the header
 * length, the payload goes at data + *hl. The header is written as text; seal_frame
 * turns it binary when the payload is not UTF-8. */
static lh_buf_t *frame_alloc(size_t len, size_t *hl)
{
    uint8_t hdr[LH_WS_MAX_HEADER];
    lh_buf_t *b;

    *hl = lh_ws_build_header(hdr, 1, LH_WS_OP_TEXT, len, NULL);
    b = lh_buf_new(*hl + len);
    if (b != NULL)
        memcpy(b->data, hdr, *hl);
    return b;
}

/* Fixes the opcode, queues b on c and drops the caller's reference. */
static int seal_frame(lh_conn_t *c, lh_buf_t *b, size_t hl)
{
    int r;

    if (!lh_utf8_valid(b->data + hl, b->len - hl))
        b->data[0] = (uint8_t)(0x80 | LH_WS_OP_BINARY);
    r = lh_conn_queue(c, b);
    if (r == 0)
        lh_m_inc(LH_M_MSGS_OUT);
    lh_buf_unref(b);
    return r;
}

int lh_conn_send(lh_conn_t *c, const char *command, const lh_header_t *headers, size_t n,
                 const void *body, size_t body_len)
{
    lh_lhttp_header_t hs[LH_LHTTP_HEADERS_CAP];
    size_t cl = command ? strlen(command) : 0, need, hl;
    lh_buf_t *b;

    if (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT))
        return -EPIPE;
    if (!lh_lhttp_command_valid(command, cl) || n > LH_LHTTP_HEADERS_CAP)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!lh_lhttp_header_valid(headers[i].key, headers[i].key_len, headers[i].value,
                                   headers[i].value_len))
            return -EINVAL;
        hs[i].key = headers[i].key;
        hs[i].key_len = headers[i].key_len;
        hs[i].value = headers[i].value ? headers[i].value : "";
        hs[i].value_len = headers[i].value_len;
    }
    need = lh_lhttp_serialize(NULL, 0, command, cl, hs, n, body, body_len);
    b = frame_alloc(need, &hl);
    if (b == NULL)
        return -ENOMEM;
    lh_lhttp_serialize((char *)b->data + hl, need, command, cl, hs, n, body, body_len);
    return seal_frame(c, b, hl);
}

int lh_conn_send_raw(lh_conn_t *c, const void *data, size_t len)
{
    lh_buf_t *b;
    size_t hl;

    if (c->flags & (LH_CF_DEAD | LH_CF_CLOSE_SENT))
        return -EPIPE;
    b = frame_alloc(len, &hl);
    if (b == NULL)
        return -ENOMEM;
    memcpy(b->data + hl, data, len);
    return seal_frame(c, b, hl);
}

int lh_conn_send_error(lh_conn_t *c, const lh_msg_t *m, int code, const char *reason)
{
    char cs[12];
    lh_header_t h[3];
    size_t n = 2;

    h[0].key = "code";
    h[0].key_len = 4;
    h[0].value = cs;
    h[0].value_len = (size_t)snprintf(cs, sizeof(cs), "%d", code);
    h[1].key = "reason";
    h[1].key_len = 6;
    h[1].value = reason ? reason : "";
    h[1].value_len = reason ? strlen(reason) : 0;
    if (m != NULL) {
        h[2].key = "in-reply-to";
        h[2].key_len = 11;
        h[2].value = m->m->command;
        h[2].value_len = m->m->command_len;
        n = 3;
    }
    lh_m_inc(LH_M_LHTTP_ERRORS);
    return lh_conn_send(c, "error", h, n, NULL, 0);
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

/* ---- built-in processors ---- */

/* `ping`: answers `pong` with the same body, so clients can measure a round trip. */
static void ping_on_message(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    size_t bl;
    const char *body = lh_msg_body(m, &bl);

    lh_conn_send(c, "pong", NULL, 0, body, bl);
}

void lh_builtin_register(void)
{
    static const lh_processor_t ping = {NULL, ping_on_message, NULL};

    lh_register_processor("ping", &ping, NULL);
}

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
