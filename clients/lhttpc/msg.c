/*
 * LHTTP messages built by lhttpc: from command-line options, or line by line from what
 * the user types in interactive mode. Pure; the codec itself is shared/lh_lhttp.c.
 */
#include "lhttpc.h"

#include <stdlib.h>
#include <string.h>

void lhc_msg_init(lhc_msg_t *m)
{
    memset(m, 0, sizeof(*m));
}

void lhc_msg_clear(lhc_msg_t *m)
{
    size_t i;

    for (i = 0; i < m->num_headers; i++) {
        free(m->headers[i].key);
        free(m->headers[i].value);
    }
    free(m->headers);
    free(m->command);
    free(m->body);
    lhc_msg_init(m);
}

static char *dup_n(const char *s, size_t len)
{
    char *p = malloc(len + 1);

    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

const char *lhc_trim(const char *s, size_t *len)
{
    while (*len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        (*len)--;
    }
    while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t'))
        (*len)--;
    return s;
}

int lhc_msg_set_command(lhc_msg_t *m, const char *s, size_t len, const char **err)
{
    static const char proto[] = LH_LHTTP_PROTO;
    const size_t plen = sizeof(proto) - 1;
    char *cmd;

    s = lhc_trim(s, &len);
    if (len >= plen && memcmp(s, proto, plen) == 0 &&
        (len == plen || s[plen] == ' ' || s[plen] == '\t')) {
        s += plen;
        len -= plen;
        s = lhc_trim(s, &len);
    } else if (len >= 6 && memcmp(s, "LHTTP/", 6) == 0) {
        *err = "unsupported protocol version; lhttpc speaks " LH_LHTTP_PROTO;
        return -1;
    }
    if (!lh_lhttp_command_valid(s, len)) {
        *err = "invalid command: 1 to 64 visible ASCII characters, no space or ':'";
        return -1;
    }
    cmd = dup_n(s, len);
    if (cmd == NULL) {
        *err = "out of memory";
        return -1;
    }
    free(m->command);
    m->command = cmd;
    return 0;
}

int lhc_msg_add_header(lhc_msg_t *m, const char *key, size_t key_len, const char *value,
                       size_t value_len, const char **err)
{
    lhc_kv_t *kv;

    if (!lh_lhttp_header_valid(key, key_len, value, value_len)) {
        *err = "invalid header: the key must be visible ASCII without ':' or space, the "
               "value must not hold CR or LF";
        return -1;
    }
    if (m->num_headers >= LH_LHTTP_HEADERS_CAP) {
        *err = "too many headers";
        return -1;
    }
    if (m->num_headers == m->cap_headers) {
        size_t cap = m->cap_headers ? m->cap_headers * 2 : 8;

        kv = realloc(m->headers, cap * sizeof(*kv));
        if (kv == NULL) {
            *err = "out of memory";
            return -1;
        }
        m->headers = kv;
        m->cap_headers = cap;
    }
    kv = &m->headers[m->num_headers];
    kv->key = dup_n(key, key_len);
    kv->value = dup_n(value, value_len);
    if (kv->key == NULL || kv->value == NULL) {
        free(kv->key);
        free(kv->value);
        *err = "out of memory";
        return -1;
    }
    m->num_headers++;
    return 0;
}

int lhc_msg_add_header_line(lhc_msg_t *m, const char *s, size_t len, const char **err)
{
    const char *colon = memchr(s, ':', len), *key, *value;
    size_t key_len, value_len;

    if (colon == NULL) {
        *err = "a header line is key:value";
        return -1;
    }
    key_len = (size_t)(colon - s);
    key = lhc_trim(s, &key_len);
    value_len = len - (size_t)(colon - s) - 1;
    value = lhc_trim(colon + 1, &value_len);
    return lhc_msg_add_header(m, key, key_len, value, value_len, err);
}

int lhc_msg_append_body(lhc_msg_t *m, const char *p, size_t len, size_t max)
{
    if (len > max || m->body_len > max - len)
        return -1;
    if (m->body_len + len > m->body_cap) {
        size_t cap = m->body_cap ? m->body_cap : 256;
        char *b;

        while (cap < m->body_len + len)
            cap = cap > SIZE_MAX / 2 ? m->body_len + len : cap * 2;
        b = realloc(m->body, cap);
        if (b == NULL)
            return -1;
        m->body = b;
        m->body_cap = cap;
    }
    if (len > 0)
        memcpy(m->body + m->body_len, p, len);
    m->body_len += len;
    return 0;
}

char *lhc_msg_serialize(const lhc_msg_t *m, size_t *len)
{
    lh_lhttp_header_t hs[LH_LHTTP_HEADERS_CAP];
    size_t i, need;
    char *out;

    for (i = 0; i < m->num_headers; i++) {
        hs[i].key = m->headers[i].key;
        hs[i].key_len = strlen(m->headers[i].key);
        hs[i].value = m->headers[i].value;
        hs[i].value_len = strlen(m->headers[i].value);
    }
    need = lh_lhttp_serialize(NULL, 0, m->command, strlen(m->command), hs, m->num_headers,
                              m->body ? m->body : "", m->body_len);
    out = malloc(need ? need : 1);
    if (out == NULL)
        return NULL;
    *len = lh_lhttp_serialize(out, need, m->command, strlen(m->command), hs, m->num_headers,
                              m->body ? m->body : "", m->body_len);
    return out;
}

void lhc_input_init(lhc_input_t *in, size_t max_body)
{
    memset(in, 0, sizeof(*in));
    in->state = LHC_IN_COMMAND;
    in->max = max_body;
    lhc_msg_init(&in->msg);
}

void lhc_input_free(lhc_input_t *in)
{
    lhc_msg_clear(&in->msg);
}

void lhc_input_reset(lhc_input_t *in)
{
    lhc_msg_clear(&in->msg);
    in->state = LHC_IN_COMMAND;
    in->body_lines = 0;
}

int lhc_input_line(lhc_input_t *in, const char *line, size_t len, const char **err)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    switch (in->state) {
    case LHC_IN_COMMAND:
        line = lhc_trim(line, &len);
        if (len == 0)
            return 0;
        if (lhc_msg_set_command(&in->msg, line, len, err) < 0)
            goto fail;
        in->state = LHC_IN_HEADERS;
        return 0;
    case LHC_IN_HEADERS:
        if (len == 0) {
            in->state = LHC_IN_BODY;
            return 0;
        }
        if (len == 1 && line[0] == '.')
            return 1;
        if (lhc_msg_add_header_line(&in->msg, line, len, err) < 0)
            goto fail;
        return 0;
    default:
        if (len == 1 && line[0] == '.')
            return 1;
        if (len == 2 && line[0] == '.' && line[1] == '.')
            len = 1;
        if ((in->body_lines > 0 && lhc_msg_append_body(&in->msg, "\n", 1, in->max) < 0) ||
            lhc_msg_append_body(&in->msg, line, len, in->max) < 0) {
            *err = "body too long or out of memory";
            goto fail;
        }
        in->body_lines++;
        return 0;
    }
fail:
    lhc_input_reset(in);
    return -1;
}
