/*
 * Printing received messages: raw, one JSON object per line (jansson) for scripts, or one
 * short line each (offset, command, channels, body) for people.
 */
#include "lhttpc.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "lh_utf8.h"

/* A JSON string of p[0..len), or NULL when it is not UTF-8 (or out of memory). */
static json_t *utf8_string(const char *p, size_t len)
{
    if (!lh_utf8_valid((const uint8_t *)p, len))
        return NULL;
    return json_stringn(p, len);
}

/* A JSON string holding the base64 of p[0..len), or NULL. */
static json_t *base64_string(const uint8_t *p, size_t len)
{
    size_t cap;
    char *b;
    json_t *j;

    if (len > (size_t)INT32_MAX / 4 * 3)
        return NULL;
    cap = (len + 2) / 3 * 4 + 1;
    b = malloc(cap);
    if (b == NULL)
        return NULL;
    EVP_EncodeBlock((unsigned char *)b, p, (int)len);
    j = json_stringn(b, cap - 1);
    free(b);
    return j;
}

/*
 * Fills obj with command and headers when p[0..len) is an LHTTP message whose command
 * and headers are UTF-8; returns 1 and sets *body. Returns 0 when it is not (nothing set).
 */
static int add_lhttp(json_t *obj, const uint8_t *p, size_t len, const char **body,
                     size_t *body_len)
{
    lh_lhttp_msg_t *m = malloc(sizeof(*m));
    json_t *cmd = NULL, *hs = NULL;
    const char *reason;
    size_t i;
    int ok = 0;

    if (m == NULL || lh_lhttp_parse((const char *)p, len, NULL, m, &reason) != 0)
        goto out;
    cmd = utf8_string(m->command, m->command_len);
    hs = json_array();
    if (cmd == NULL || hs == NULL)
        goto out;
    for (i = 0; i < m->num_headers; i++) {
        json_t *k = utf8_string(m->headers[i].key, m->headers[i].key_len);
        json_t *v = utf8_string(m->headers[i].value, m->headers[i].value_len);
        json_t *pair = json_array();

        if (k == NULL || v == NULL || pair == NULL) {
            json_decref(k);
            json_decref(v);
            json_decref(pair);
            goto out;
        }
        json_array_append_new(pair, k);
        json_array_append_new(pair, v);
        json_array_append_new(hs, pair);
    }
    json_object_set_new(obj, "command", cmd);
    json_object_set_new(obj, "headers", hs);
    cmd = hs = NULL;
    *body = m->body;
    *body_len = m->body_len;
    ok = 1;
out:
    json_decref(cmd);
    json_decref(hs);
    free(m);
    return ok;
}

char *lhc_output_json(int binary, const uint8_t *p, size_t len)
{
    json_t *obj = json_object(), *body;
    const char *b = (const char *)p;
    size_t blen = len;
    char *s = NULL;

    if (obj == NULL)
        return NULL;
    if (!add_lhttp(obj, p, len, &b, &blen)) {
        json_object_set_new(obj, "command", json_null());
        json_object_set_new(obj, "headers", json_array());
        b = (const char *)p;
        blen = len;
    }
    body = utf8_string(b, blen);
    if (body != NULL) {
        json_object_set_new(obj, "body", body);
    } else {
        body = base64_string((const uint8_t *)b, blen);
        if (body == NULL)
            goto out;
        json_object_set_new(obj, "body", body);
        json_object_set_new(obj, "body_base64", json_true());
    }
    json_object_set_new(obj, "binary", json_boolean(binary));
    s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
    json_decref(obj);
    return s;
}

/* Writes p[0..len) on one line: CR, LF, TAB and backslash escaped; "<N bytes>" when it
 * is not UTF-8. */
static void put_escaped(FILE *out, const char *p, size_t len)
{
    if (!lh_utf8_valid((const uint8_t *)p, len)) {
        fprintf(out, "<%zu bytes>", len);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        switch (p[i]) {
        case '\r': fputs("\\r", out); break;
        case '\n': fputs("\\n", out); break;
        case '\t': fputs("\\t", out); break;
        case '\\': fputs("\\\\", out); break;
        default: putc(p[i], out);
        }
    }
}

/* The short form: one line per message (see lhttpc.h). */
static void output_short(FILE *out, const uint8_t *p, size_t len)
{
    lh_lhttp_msg_t *m = malloc(sizeof(*m));
    const char *reason, *off, *pub;
    size_t off_len = 0, pub_len = 0;

    if (m == NULL || lh_lhttp_parse((const char *)p, len, NULL, m, &reason) != 0) {
        fputs("- ? ", out);
        put_escaped(out, (const char *)p, len);
        free(m);
        return;
    }
    off = lh_lhttp_header(m, "offset", &off_len);
    pub = lh_lhttp_header(m, "publish", &pub_len);
    if (off != NULL && pub != NULL)
        put_escaped(out, off, off_len);
    else
        putc('-', out);
    putc(' ', out);
    put_escaped(out, m->command, m->command_len);
    if (pub != NULL) {
        putc(' ', out);
        put_escaped(out, pub, pub_len);
        putc(':', out);
    } else {
        for (size_t i = 0; i < m->num_headers; i++) {
            putc(' ', out);
            put_escaped(out, m->headers[i].key, m->headers[i].key_len);
            putc('=', out);
            put_escaped(out, m->headers[i].value, m->headers[i].value_len);
        }
    }
    if (m->body_len > 0 || pub != NULL) {
        putc(' ', out);
        put_escaped(out, m->body, m->body_len);
    }
    free(m);
}

int lhc_output_message(FILE *out, int format, int binary, const uint8_t *p, size_t len)
{
    if (format == LHC_FORMAT_SHORT) {
        output_short(out, p, len);
    } else if (format == LHC_FORMAT_JSON) {
        char *s = lhc_output_json(binary, p, len);

        if (s == NULL) {
            fprintf(stderr, "lhttpc: out of memory formatting a message\n");
            return -1;
        }
        fputs(s, out);
        free(s);
    } else if (len > 0) {
        fwrite(p, 1, len, out);
    }
    putc('\n', out);
    return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}
