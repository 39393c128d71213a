/*
 * Static files (static.root): read once into memory when the worker starts, then served
 * from there. No disk I/O ever happens on the event loop, and only files found by a walk
 * of the root that follows no symbolic link can be served: an encoded "..", a symlink or
 * an absolute path has nothing to match. Changes on disk show after a reload.
 */
#include "worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lh_log.h"

#define MAX_DEPTH 16

typedef struct lh_file_s {
    char *path; /* "/dir/name", as requested */
    lh_buf_t *body;
    const char *ctype;
    char etag[40];
    char last_modified[40];
    int html;
    struct lh_file_s *next;
} lh_file_t;

struct lh_static_s {
    lh_file_t **buckets;
    size_t nbuckets, nfiles, bytes, skipped;
};

static const struct {
    const char *ext, *type;
} types[] = {
    {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},   {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"}, {"json", "application/json"},
    {"map", "application/json"},          {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"}, {"svg", "image/svg+xml"},
    {"png", "image/png"},                 {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},               {"gif", "image/gif"},
    {"webp", "image/webp"},               {"ico", "image/x-icon"},
    {"wasm", "application/wasm"},         {"woff2", "font/woff2"},
    {"woff", "font/woff"},                {"ts", "text/plain; charset=utf-8"},
    {"webmanifest", "application/manifest+json"},
};

static const char *content_type(const char *name, int *html)
{
    const char *dot = strrchr(name, '.');

    *html = 0;
    if (dot != NULL) {
        for (size_t i = 0; i < LH_ARRAY_LEN(types); i++) {
            if (strcasecmp(dot + 1, types[i].ext) == 0) {
                *html = strncmp(types[i].type, "text/html", 9) == 0;
                return types[i].type;
            }
        }
    }
    return "application/octet-stream";
}

static size_t path_hash(const char *s, size_t n)
{
    size_t h = 14695981039346656037ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void add_file(struct lh_static_s *st, const char *path, int fd, const struct stat *sb,
                     size_t cap)
{
    lh_file_t *f;
    size_t h, got = 0;
    struct tm tm;

    if (st->bytes + (size_t)sb->st_size > cap) {
        st->skipped++;
        return;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return;
    f->path = strdup(path);
    f->body = lh_buf_new((size_t)sb->st_size);
    if (f->path == NULL || f->body == NULL) {
        free(f->path);
        lh_buf_unref(f->body);
        free(f);
        return;
    }
    while (got < (size_t)sb->st_size) {
        ssize_t n = read(fd, f->body->data + got, (size_t)sb->st_size - got);

        if (n <= 0)
            break;
        got += (size_t)n;
    }
    f->body->len = got;
    f->ctype = content_type(path, &f->html);
    snprintf(f->etag, sizeof(f->etag), "\"%llx-%llx\"", (unsigned long long)got,
             (unsigned long long)sb->st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)sb->st_mtim.tv_nsec);
    gmtime_r(&sb->st_mtim.tv_sec, &tm);
    strftime(f->last_modified, sizeof(f->last_modified), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    h = path_hash(path, strlen(path)) & (st->nbuckets - 1);
    f->next = st->buckets[h];
    st->buckets[h] = f;
    st->nfiles++;
    st->bytes += got;
}

/* Walks dfd (owned) without following symbolic links; skips dot files. */
static void walk(struct lh_static_s *st, int dfd, const char *prefix, int depth, size_t cap)
{
    DIR *d = fdopendir(dfd);
    struct dirent *e;

    if (d == NULL) {
        close(dfd);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        struct stat sb;
        int fd;

        if (e->d_name[0] == '.')
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", prefix, e->d_name) >= (int)sizeof(path))
            continue;
        fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
            continue; /* symlinks fail here (ELOOP) and are not served */
        if (fstat(fd, &sb) < 0) {
            close(fd);
        } else if (S_ISDIR(sb.st_mode) && depth < MAX_DEPTH) {
            walk(st, fd, path, depth + 1, cap);
        } else {
            if (S_ISREG(sb.st_mode))
                add_file(st, path, fd, &sb, cap);
            close(fd);
        }
    }
    closedir(d);
}

int lh_static_load(lh_worker_t *w)
{
    const lh_config_t *cfg = w->cfg;
    struct lh_static_s *st;
    int fd;

    if (cfg->static_files.root == NULL)
        return 0;
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    st->nbuckets = 1024;
    st->buckets = calloc(st->nbuckets, sizeof(*st->buckets));
    if (st->buckets == NULL) {
        free(st);
        return -ENOMEM;
    }
    w->statics = st;
    fd = open(cfg->static_files.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        lh_log(LH_LOG_ERR, "static.root %s: %s; serving no static files",
               cfg->static_files.root, strerror(errno));
        return 0;
    }
    walk(st, fd, "", 0, cfg->static_files.cache_bytes);
    if (st->skipped)
        lh_log(LH_LOG_WARNING, "static.root %s: %zu files do not fit static.cache_bytes (%zu) "
               "and are not served", cfg->static_files.root, st->skipped,
               cfg->static_files.cache_bytes);
    lh_log(LH_LOG_INFO, "static.root %s: %zu files, %zu bytes", cfg->static_files.root,
           st->nfiles, st->bytes);
    return 0;
}

void lh_static_free(lh_worker_t *w)
{
    struct lh_static_s *st = w->statics;

    if (st == NULL)
        return;
    for (size_t i = 0; i < st->nbuckets; i++) {
        lh_file_t *f = st->buckets[i], *next;

        for (; f != NULL; f = next) {
            next = f->next;
            free(f->path);
            lh_buf_unref(f->body);
            free(f);
        }
    }
    free(st->buckets);
    free(st);
    w->statics = NULL;
}

/* Percent-decodes p into out (cap bytes). Returns the length, or -1 when malformed or
 * when it decodes to a NUL or a ".." segment. */
static long decode_path(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        char ch = p[i];

        if (ch == '%') {
            int a, b;

            if (i + 2 >= n)
                return -1;
            a = lh_hexval(p[i + 1]);
            b = lh_hexval(p[i + 2]);
            if (a < 0 || b < 0)
                return -1;
            ch = (char)(a * 16 + b);
            i += 2;
        }
        if (ch == '\0' || ch == '\\' || o + 1 >= cap)
            return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    if (strstr(out, "/../") || (o >= 3 && strcmp(out + o - 3, "/..") == 0) ||
        strstr(out, "/./") || strstr(out, "//"))
        return -1;
    return (long)o;
}

static const lh_file_t *lookup(const struct lh_static_s *st, const char *path, size_t n)
{
    const lh_file_t *f = st->buckets[path_hash(path, n) & (st->nbuckets - 1)];

    for (; f != NULL; f = f->next)
        if (strlen(f->path) == n && memcmp(f->path, path, n) == 0)
            return f;
    return NULL;
}

int lh_static_serve(lh_conn_t *c, const lh_http_request_t *req, int only_found)
{
    const struct lh_static_s *st = c->w->statics;
    const lh_http_header_t *inm;
    const lh_file_t *f;
    char path[4096 + 16], extra[512];
    long n;
    int get = req->method_id == LH_HTTP_GET;
    int head = req->method_id == LH_HTTP_HEAD;
    int options = req->method_id == LH_HTTP_OPTIONS;

    if (st == NULL)
        return 0;
    if (only_found && !get && !head && !options)
        return 0;
    c->endpoint = LH_EP_STATIC;
    if (!get && !head && !options) {
        lh_http_respond(c, 405, "Allow: GET, HEAD, OPTIONS\r\n", "text/plain; charset=utf-8",
                        "method not allowed\n", 19);
        return 1;
    }
    n = decode_path(req->path, req->path_len, path, sizeof(path) - 16);
    if (only_found && (n <= 0 || path[0] != '/'))
        return 0;
    if (n <= 0 || path[0] != '/') {
        c->flags |= LH_CF_CLOSE_AFTER;
        lh_http_respond(c, 400, NULL, "text/plain; charset=utf-8", "bad path\n", 9);
        return 1;
    }
    if (path[n - 1] == '/') {
        memcpy(path + n, "index.html", 11);
        n += 10;
    }
    f = lookup(st, path, (size_t)n);
    if (f == NULL && only_found)
        return 0;
    if (f == NULL) {
        lh_http_respond(c, 404, NULL, "text/plain; charset=utf-8", "not found\n", 10);
        return 1;
    }
    if (options) {
        lh_http_options(c, "GET, HEAD, OPTIONS");
        return 1;
    }
    snprintf(extra, sizeof(extra), "ETag: %s\r\nLast-Modified: %s\r\nCache-Control: %s%u\r\n"
             "X-Content-Type-Options: nosniff\r\n",
             f->etag, f->last_modified, f->html ? "no-cache, max-age=" : "public, max-age=",
             f->html ? 0 : c->w->cfg->static_files.max_age_s);
    inm = lh_http_find_header(req, "if-none-match");
    if (inm != NULL && inm->value_len == strlen(f->etag) &&
        memcmp(inm->value, f->etag, inm->value_len) == 0) {
        lh_http_respond(c, 304, extra, NULL, NULL, 0);
        return 1;
    }
    lh_http_respond_buf(c, 200, extra, f->ctype, f->body);
    return 1;
}
