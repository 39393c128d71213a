/*
 * Publishing over HTTP: POST the LHTTP message to the server's /publish endpoint with
 * libcurl. A blocking curl_easy_perform() is fine here: this is the CLI, not the
 * server's event loop.
 */
#include "lhttpc.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "lh_http.h"

#define ANSWER_MAX ((size_t)1 << 20) /* keep at most this much of the server's answer */

typedef struct {
    char *p;
    size_t len, cap;
} answer_t;

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    answer_t *a = arg;
    size_t n = size * nmemb, keep = n;

    if (a->len + keep > ANSWER_MAX)
        keep = ANSWER_MAX - a->len;
    if (keep > 0) {
        if (a->len + keep + 1 > a->cap) {
            size_t cap = a->len + keep + 1 > 2 * a->cap ? a->len + keep + 1 : 2 * a->cap;
            char *b = realloc(a->p, cap);

            if (b == NULL)
                return 0;
            a->p = b;
            a->cap = cap;
        }
        memcpy(a->p + a->len, data, keep);
        a->len += keep;
        a->p[a->len] = '\0';
    }
    return n;
}

/* Prints the answer with a final newline, to out. */
static void print_answer(FILE *out, const answer_t *a)
{
    if (a->len == 0)
        return;
    fwrite(a->p, 1, a->len, out);
    if (a->p[a->len - 1] != '\n')
        putc('\n', out);
    fflush(out);
}

int lhc_http_publish(const lhc_http_opts_t *o, const char *msg, size_t len)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL, *h;
    answer_t a = { NULL, 0, 0 };
    char *auth = NULL;
    long status = 0;
    int rc = LHC_EXIT_CONN;
    CURLcode cr;
    CURL *curl;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "lhttpc: curl_global_init failed\n");
        return LHC_EXIT_CONN;
    }
    curl = curl_easy_init();
    if (curl == NULL) {
        fprintf(stderr, "lhttpc: curl_easy_init failed\n");
        goto out;
    }
    /* No "Expect: 100-continue" round trip; the body is one LHTTP message. */
    h = curl_slist_append(hdrs, "Expect:");
    if (h != NULL)
        hdrs = h;
    h = curl_slist_append(hdrs, "Content-Type: text/plain; charset=utf-8");
    if (h != NULL)
        hdrs = h;
    if (o->token != NULL) {
        size_t n = strlen(o->token) + sizeof("Authorization: Bearer ");

        if (strpbrk(o->token, "\r\n") != NULL) {
            fprintf(stderr, "lhttpc: the token holds CR or LF\n");
            rc = LHC_EXIT_USAGE;
            goto out;
        }
        auth = malloc(n);
        if (auth == NULL)
            goto out;
        snprintf(auth, n, "Authorization: Bearer %s", o->token);
        h = curl_slist_append(hdrs, auth);
        if (h == NULL)
            goto out;
        hdrs = h;
    }
    curl_easy_setopt(curl, CURLOPT_URL, o->url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, msg);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "lhttpc/" LH_VERSION);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    if (o->cacert != NULL)
        curl_easy_setopt(curl, CURLOPT_CAINFO, o->cacert);
    if (o->insecure) {
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (o->timeout_ms > 0)
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    cr = curl_easy_perform(curl);
    if (cr != CURLE_OK) {
        fprintf(stderr, "lhttpc: POST %s: %s\n", o->url,
                errbuf[0] ? errbuf : curl_easy_strerror(cr));
        rc = cr == CURLE_OPERATION_TIMEDOUT ? LHC_EXIT_TIMEOUT
             : cr == CURLE_URL_MALFORMAT || cr == CURLE_UNSUPPORTED_PROTOCOL
                 ? LHC_EXIT_USAGE
                 : LHC_EXIT_CONN;
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
        if (!o->quiet)
            print_answer(stdout, &a);
        rc = LHC_EXIT_OK;
    } else {
        fprintf(stderr, "lhttpc: POST %s: HTTP %ld %s\n", o->url, status,
                lh_http_status_text((int)status));
        print_answer(stderr, &a);
        rc = LHC_EXIT_PUBLISH;
    }
out:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    free(auth);
    free(a.p);
    return rc;
}
