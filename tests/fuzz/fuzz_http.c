/*
 * libFuzzer target for lh_http_parse_request and the header helpers. Checks, for two
 * sets of limits: the result is a documented one, a head lies inside the buffer and
 * within the limits, and a prefix of the input gives LH_PARSE_AGAIN or the same answer.
 */
#include "lh_http.h"

#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c))                                                                        \
            abort();                                                                     \
    } while (0)

static int inside(const char *buf, size_t n, const char *p, size_t plen)
{
    return p >= buf && plen <= n && (size_t)(p - buf) <= n - plen;
}

static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_head(const char *buf, size_t head, const lh_http_limits_t *lim,
                       const lh_http_request_t *req)
{
    size_t k;
    uint64_t cl;
    const lh_http_header_t *h;
    int r;

    CHECK(head <= lim->max_header_bytes);
    CHECK(req->method_len > 0 && inside(buf, head, req->method, req->method_len));
    for (k = 0; k < req->method_len; k++)
        CHECK(is_tchar((unsigned char)req->method[k]));
    CHECK(req->target_len > 0 && inside(buf, head, req->target, req->target_len));
    CHECK(req->target_len <= lim->max_line);
    for (k = 0; k < req->target_len; k++)
        CHECK((unsigned char)req->target[k] > 0x20 && (unsigned char)req->target[k] < 0x7f);
    /* The path ends the target (with the query), or is the "/" of an empty
     * absolute-form path; the query, when there is one, ends the target. */
    if (req->form == LH_HTTP_ABSOLUTE_FORM && req->path_len == 1 && req->path[0] == '/' &&
        !inside(buf, head, req->path, 1)) {
        CHECK(req->query == NULL || (inside(buf, head, req->query, req->query_len) &&
                                     req->query[-1] == '?'));
    } else {
        CHECK(req->path_len > 0 && req->path >= req->target &&
              req->path + req->path_len <= req->target + req->target_len);
        CHECK(req->form != LH_HTTP_ORIGIN_FORM || req->path == req->target);
        CHECK(req->form == LH_HTTP_ASTERISK_FORM || req->path[0] == '/');
        CHECK(memchr(req->path, '?', req->path_len) == NULL);
        if (req->query)
            CHECK(req->query == req->path + req->path_len + 1);
        else
            CHECK(req->path + req->path_len == req->target + req->target_len);
    }
    if (req->query)
        CHECK(req->query + req->query_len == req->target + req->target_len);
    CHECK(req->form != LH_HTTP_ASTERISK_FORM ||
          (req->target_len == 1 && req->method_len == 7 && memcmp(req->method, "OPTIONS", 7) == 0));
    /* HTTP/1.1 has exactly one valid Host; host is the absolute-form's authority or it. */
    CHECK(req->minor_version == 0 || lh_http_count_header(req, "host") == 1);
    CHECK(lh_http_count_header(req, "host") <= 1);
    if (req->form == LH_HTTP_ABSOLUTE_FORM)
        CHECK(req->host > req->target && req->host_len > 0 &&
              req->host + req->host_len <= req->target + req->target_len &&
              lh_http_valid_host(req->host, req->host_len));
    else
        CHECK(req->host == NULL ? lh_http_count_header(req, "host") == 0
                                : lh_http_valid_host(req->host, req->host_len));
    CHECK(req->minor_version == 0 || req->minor_version == 1);
    CHECK(req->num_headers <= lim->max_headers && req->num_headers <= LH_HTTP_HEADERS_CAP);
    for (k = 0; k < req->num_headers; k++) {
        const lh_http_header_t *f = &req->headers[k];
        size_t j;

        CHECK(f->name_len > 0 && inside(buf, head, f->name, f->name_len));
        CHECK(inside(buf, head, f->value, f->value_len));
        for (j = 0; j < f->name_len; j++)
            CHECK(is_tchar((unsigned char)f->name[j]));
        for (j = 0; j < f->value_len; j++) {
            unsigned char c = (unsigned char)f->value[j];

            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (f->value_len) {
            CHECK(f->value[0] != ' ' && f->value[0] != '\t');
            CHECK(f->value[f->value_len - 1] != ' ' && f->value[f->value_len - 1] != '\t');
        }
        (void)lh_http_has_token(f->value, f->value_len, "upgrade");
    }
    h = lh_http_find_header(req, "host");
    CHECK(h == NULL || (h >= req->headers && h < req->headers + req->num_headers &&
                        lh_strieq(h->name, h->name_len, "host")));
    r = lh_http_content_length(req, &cl);
    CHECK(r == 1 || (r == 0 && cl == 0) || r == LH_PARSE_ERROR);
}

static void run(const char *buf, size_t len, const lh_http_limits_t *lim, size_t split)
{
    static lh_http_request_t req, req2;
    int r = lh_http_parse_request(buf, len, lim, &req), r2;

    if (r > 0) {
        CHECK((size_t)r <= len);
        check_head(buf, (size_t)r, lim, &req);
    } else if (r == LH_PARSE_ERROR) {
        CHECK(req.status == 400 || req.status == 414 || req.status == 431 ||
              req.status == 505);
        CHECK(req.reason != NULL && req.reason[0] != '\0');
    } else {
        CHECK(r == LH_PARSE_AGAIN);
        CHECK(len <= lim->max_header_bytes);
    }

    /* A prefix: AGAIN until the deciding byte, then the same answer. */
    if (split > len)
        split = len;
    r2 = lh_http_parse_request(buf, split, lim, &req2);
    if (r2 != LH_PARSE_AGAIN) {
        CHECK(r2 == r);
        if (r == LH_PARSE_ERROR)
            CHECK(req2.status == req.status);
    } else if (r > 0) {
        CHECK(split < (size_t)r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const lh_http_limits_t big = {8192, 16384, 64};
    static const lh_http_limits_t small = {40, 160, 4};
    const char *buf = (const char *)data;
    size_t split = size ? (size_t)data[size - 1] * size / 256 : 0;

    run(buf, size, &big, split);
    run(buf, size, &small, split);
    return 0;
}
