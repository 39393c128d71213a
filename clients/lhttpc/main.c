/*
 * lhttpc: command-line client for lhttpd. Parses the options, builds the message of the
 * chosen mode, and runs one session: connect, send, print what arrives, close.
 */
#include "lhttpc.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lh_channel.h"
#include "lh_utf8.h"
#include "lh_ws.h"

#define CLOSE_WAIT_MS 2000      /* how long to wait for the server's close echo */
#define SEND_TIMEOUT_MS 5000    /* default -w for send, --raw and --http publish */
#define STDIN_CHUNK 65536

enum { MODE_INTERACTIVE, MODE_RAW, MODE_SEND, MODE_LISTEN, MODE_SUBSCRIBE, MODE_PUBLISH };

enum {
    OPT_FORMAT = 256,
    OPT_BINARY,
    OPT_RAW,
    OPT_VERSION,
    OPT_HTTP,
    OPT_TOKEN,
    OPT_MAX_SIZE,
    OPT_FRAGMENT,
    OPT_DATA_RAW,
    OPT_SINCE,
    OPT_EPOCH,
    OPT_HISTORY,
    OPT_CACERT
};

#define EPOCH_MAX 64 /* the longest epoch --epoch takes (lhttpd's are 16 hex digits) */

typedef struct {
    int mode;
    const char *url;
    char **args; /* after the mode word */
    int nargs;
    long count;      /* -n; -1 when not given */
    long timeout_ms; /* -w; -1 when not given, 0 for none */
    int format;
    const char *origin;
    const char *protocols;
    int binary;
    int quiet;
    int http;
    const char *token;
    uint64_t max_size;
    size_t fragment;
    const char *command; /* -c */
    const char *data;    /* -d */
    const char *file;    /* -f */
    int data_raw;        /* -d came from --data-raw */
    lhc_msg_t headers;   /* -H, collected in a message for their validation */
    long long since;     /* --since; -1 when not given */
    const char *epoch;   /* --epoch */
    long history;        /* --history N; 0 when not given */
    const char *cacert;  /* --cacert */
    int insecure;        /* -k, --insecure */
} opts_t;

/* Per CHANNEL of subscribe: where to recover from, learnt from a history read. */
typedef struct {
    char epoch[EPOCH_MAX + 1];
    unsigned long long offset;
    int recover; /* 0: subscribe without a recover entry (no history there) */
} chanpos_t;

typedef struct {
    const opts_t *o;
    lhc_conn_t *c;
    long received;
    long want; /* exit 0 after this many messages; 0: no limit */
    int tty;   /* interactive with a terminal: prompts */
    int prompt_shown;
    lhc_input_t input;
    char *line; /* stdin bytes not yet split into lines */
    size_t line_len, line_cap;
    long line_no;
    int stdin_open;
    int refused; /* publish: an error reply arrived */
    int pre;     /* subscribe: the CHANNEL whose history read is answered next; -1: none */
    chanpos_t *pos;
} session_t;

static void usage(FILE *out)
{
    fputs("usage: lhttpc [OPTIONS] URL             interactive: type messages, see replies\n"
          "       lhttpc [OPTIONS] URL send COMMAND [-H KEY:VALUE]... [-d BODY | -f FILE]\n"
          "       lhttpc [OPTIONS] URL listen      print what arrives\n"
          "       lhttpc [OPTIONS] URL subscribe CHANNEL... [--since OFFSET [--epoch E] |\n"
          "                                        --history N]\n"
          "       lhttpc [OPTIONS] URL publish CHANNEL... [-c COMMAND] [-H KEY:VALUE]...\n"
          "                                        [-d BODY | -f FILE]\n"
          "       lhttpc [OPTIONS] --http URL publish CHANNEL... [...]   POST to /publish\n"
          "       lhttpc [OPTIONS] URL presence CHANNEL     who is in CHANNEL (its presence\n"
          "                                        reply: count, users, the JSON list)\n"
          "       lhttpc [OPTIONS] URL presence-stats CHANNEL   only the counts\n"
          "       lhttpc [OPTIONS] --raw URL < MESSAGE   send stdin as one message\n"
          "       lhttpc token (--secret-file FILE | --key-file PEM) [TOKEN OPTIONS]\n"
          "                                        print a JWT (see Token below)\n"
          "\n"
          "URL is ws://HOST[:PORT][/PATH] or wss://HOST[:PORT][/PATH] (TLS), or with\n"
          "--http, http(s)://HOST:PORT/publish.\n"
          "\n"
          "Options:\n"
          "  -n N               exit 0 after N received messages (send: default 1)\n"
          "  -w, --timeout MS   give up after MS milliseconds, counted from the start, with\n"
          "                     exit status 3 (default: 5000 for send, --raw and --http;\n"
          "                     forever otherwise; 0: forever)\n"
          "  --format raw|json|short\n"
          "                     raw: each message as received, then a newline (default);\n"
          "                     json: one object per line:\n"
          "                     {\"command\",\"headers\":[[k,v],...],\"body\",\"binary\"};\n"
          "                     short: one line per message: OFFSET COMMAND CHANNELS: BODY\n"
          "                     for a publication (OFFSET: its offset header on a history\n"
          "                     channel, else -); - COMMAND key=value... BODY for others\n"
          "  -o ORIGIN          send Origin: ORIGIN\n"
          "  -p PROTO           send Sec-WebSocket-Protocol: PROTO (a comma-separated list)\n"
          "  --token TOKEN      send Authorization: Bearer TOKEN: in the WebSocket\n"
          "                     handshake (a JWT for lhttpd's auth), or with --http in the\n"
          "                     POST (lhttpd's publish.token; default: $LHTTPC_TOKEN)\n"
          "  --binary           send messages in binary frames (default: text)\n"
          "  --raw              send stdin verbatim as one message (no checks), then act\n"
          "                     as send\n"
          "  --fragment BYTES   send messages in fragments of at most BYTES\n"
          "  --max-size BYTES   largest message sent or accepted (default 64 MiB)\n"
          "  --cacert FILE      wss:// and https://: trust the CA certificates in FILE (PEM)\n"
          "                     instead of the system's\n"
          "  -k, --insecure     wss:// and https://: do not verify the server's certificate\n"
          "  -q                 quiet: no banner, no notes, no --http answer on stdout\n"
          "  -h, --help         this text\n"
          "  --version          print the version\n"
          "Message options (send, publish):\n"
          "  -H KEY:VALUE       add a header (repeatable)\n"
          "  -d BODY            the body; -d @FILE reads FILE, -d @- reads stdin\n"
          "  --data-raw BODY    the body, taken literally even when it starts with @\n"
          "  -f FILE            the body from FILE\n"
          "  -c COMMAND         publish: the command (default publish)\n"
          "History options (subscribe, on channels whose namespace keeps history):\n"
          "  --since OFFSET     recover: get every message after OFFSET first (then live\n"
          "                     ones), for each CHANNEL; the subscribed reply says\n"
          "                     recovered:true, or recovered:false when that cannot be\n"
          "                     done (then nothing old comes)\n"
          "  --epoch E          the epoch OFFSET belongs to (as printed with it); without\n"
          "                     it, the channel's current epoch, read from the server first\n"
          "  --history N        print the last N messages and the history reply of each\n"
          "                     CHANNEL first, then subscribe from where they end (no gap,\n"
          "                     no duplicate); -n counts them too\n"
          "\n"
          "Interactive mode: a command line (\"chat\" or \"LHTTP/1.0 chat\"), header lines\n"
          "key:value, an empty line, body lines, and a line \".\" sends (\"..\" stands for a\n"
          "body line \".\"). Received messages are printed as they arrive. End of input\n"
          "closes the connection, unless -n asks to wait for more messages.\n"
          "\n",
          out);
    lhc_token_usage(out);
    fputs("\n"
          "Exit status: 0 ok; 1 connection, handshake or WebSocket protocol failure;\n"
          "2 usage or invalid input; 3 timeout; 4 the server closed the connection\n"
          "(\"closed: CODE REASON\" on stderr); 5 publish refused: HTTP publish answered\n"
          "with a non-2xx status, or WebSocket publish got an LHTTP error reply;\n"
          "128+N stopped by signal N.\n",
          out);
}

/* Prints "lhttpc: " + the message + a hint on stderr; returns LHC_EXIT_USAGE. */
__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "lhttpc: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'lhttpc --help'.\n");
    return LHC_EXIT_USAGE;
}

/* Parses a decimal number in [min, max]. Returns 0, or -1. */
static int parse_num(const char *s, long long min, long long max, long long *out)
{
    char *end;
    long long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/*
 * Reads all of fd into a new buffer (capped at max bytes). Returns it with *len set,
 * or NULL after printing why.
 */
static char *read_all(int fd, const char *name, uint64_t max, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap), *b;

    if (buf == NULL)
        goto oom;
    for (;;) {
        ssize_t r;

        if (n == cap) {
            cap *= 2;
            b = realloc(buf, cap);
            if (b == NULL)
                goto oom;
            buf = b;
        }
        r = read(fd, buf + n, cap - n);
        if (r == 0)
            break;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "lhttpc: reading %s: %s\n", name, strerror(errno));
            free(buf);
            return NULL;
        }
        n += (size_t)r;
        if (n > max) {
            fprintf(stderr, "lhttpc: %s is larger than --max-size (%llu bytes)\n", name,
                    (unsigned long long)max);
            free(buf);
            return NULL;
        }
    }
    *len = n;
    return buf;
oom:
    fprintf(stderr, "lhttpc: out of memory reading %s\n", name);
    free(buf);
    return NULL;
}

/* Reads a file ("-" is stdin) whole. */
static char *read_file(const char *path, uint64_t max, size_t *len)
{
    int fd;
    char *buf;

    if (strcmp(path, "-") == 0)
        return read_all(0, "stdin", max, len);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "lhttpc: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    buf = read_all(fd, path, max, len);
    close(fd);
    return buf;
}

/*
 * Builds the message of send or publish into a new buffer. Returns it with *len set,
 * or NULL with *status set after printing why.
 */
static char *build_message(opts_t *o, size_t *len, int *status)
{
    lhc_msg_t *m = &o->headers;
    const char *err = NULL, *cmd;
    char *body = NULL, *out = NULL;
    size_t body_len = 0, i;

    *status = LHC_EXIT_USAGE;
    if (o->mode == MODE_SEND)
        cmd = o->args[0];
    else
        cmd = o->command ? o->command : "publish";
    if (lhc_msg_set_command(m, cmd, strlen(cmd), &err) < 0) {
        usage_error("%s", err);
        return NULL;
    }
    if (o->mode == MODE_PUBLISH) {
        /* The publish header goes first: "publish:CH1 CH2". */
        char *list;
        size_t n = 0, off = 0;
        int k;

        for (k = 0; k < o->nargs; k++)
            n += strlen(o->args[k]) + 1;
        list = malloc(n + 1);
        if (list == NULL) {
            *status = LHC_EXIT_CONN;
            return NULL;
        }
        for (k = 0; k < o->nargs; k++)
            off += (size_t)sprintf(list + off, "%s%s", k ? " " : "", o->args[k]);
        if (lhc_msg_add_header(m, "publish", 7, list, off, &err) < 0) {
            free(list);
            usage_error("%s", err);
            return NULL;
        }
        free(list);
        /* Move it in front of the -H headers. */
        for (i = m->num_headers - 1; i > 0; i--) {
            lhc_kv_t t = m->headers[i];

            m->headers[i] = m->headers[i - 1];
            m->headers[i - 1] = t;
        }
    }
    if (o->file != NULL) {
        body = read_file(o->file, o->max_size, &body_len);
        if (body == NULL)
            return NULL;
    } else if (o->data != NULL && !o->data_raw && o->data[0] == '@') {
        body = read_file(o->data + 1, o->max_size, &body_len);
        if (body == NULL)
            return NULL;
    } else if (o->data != NULL) {
        body_len = strlen(o->data);
        body = malloc(body_len + 1);
        if (body != NULL)
            memcpy(body, o->data, body_len + 1);
    }
    if (body_len > 0 && (body == NULL || lhc_msg_append_body(m, body, body_len, SIZE_MAX) < 0)) {
        fprintf(stderr, "lhttpc: out of memory\n");
        free(body);
        *status = LHC_EXIT_CONN;
        return NULL;
    }
    free(body);
    out = lhc_msg_serialize(m, len);
    if (out == NULL) {
        fprintf(stderr, "lhttpc: out of memory\n");
        *status = LHC_EXIT_CONN;
        return NULL;
    }
    if (*len > o->max_size) {
        fprintf(stderr, "lhttpc: the message is larger than --max-size\n");
        free(out);
        return NULL;
    }
    if (!o->binary && !lh_utf8_valid((const uint8_t *)out, *len)) {
        fprintf(stderr, "lhttpc: the message is not UTF-8; send it with --binary\n");
        free(out);
        return NULL;
    }
    return out;
}

static void stop_handler(int sig)
{
    lhc_stop_signal = sig;
}

/* Installs the stop handler and blocks SIGINT/SIGTERM outside of conn.c's waits. */
static void setup_signals(void)
{
    struct sigaction sa;
    sigset_t block, old;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = stop_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &old);
    sigdelset(&old, SIGINT);
    sigdelset(&old, SIGTERM);
    lhc_conn_set_wait_mask(&old);
}

/* Clears a shown prompt so that a message prints on a clean line. */
static void clear_prompt(session_t *s)
{
    if (s->prompt_shown) {
        fputs("\r\033[K", stderr);
        s->prompt_shown = 0;
    }
}

static void show_prompt(session_t *s)
{
    static const char *const prompts[] = { "command> ", "header> ", "body> " };

    if (!s->tty || !s->stdin_open || s->prompt_shown)
        return;
    fputs(prompts[s->input.state], stderr);
    fflush(stderr);
    s->prompt_shown = 1;
}

/*
 * 1 when p[0..len) is an LHTTP error reply. In publish mode the server sends nothing
 * else, so one that arrives before the close handshake refused the publish.
 */
static int is_error_reply(const uint8_t *p, size_t len)
{
    lh_lhttp_msg_t *m = malloc(sizeof(*m));
    const char *reason;
    int r;

    if (m == NULL)
        return 0;
    r = lh_lhttp_parse((const char *)p, len, NULL, m, &reason) == 0 &&
        lh_strieq(m->command, m->command_len, "error");
    free(m);
    return r;
}

/* Prints a received message, unless -n has been reached. */
static void print_message(void *arg, const lhc_event_t *ev)
{
    session_t *s = arg;

    if (s->want > 0 && s->received >= s->want)
        return;
    clear_prompt(s);
    s->received++;
    if (lhc_output_message(stdout, s->o->format, ev->binary, ev->data, ev->len) < 0)
        fprintf(stderr, "lhttpc: writing to stdout: %s\n", strerror(errno));
    if (s->o->mode == MODE_PUBLISH && !s->refused)
        s->refused = is_error_reply(ev->data, ev->len);
}

/* Sends one message of the session; returns 0 or an exit status. */
static int send_message(session_t *s, const char *p, size_t len)
{
    return lhc_conn_send(s->c, s->o->binary, p, len, s->o->fragment);
}

/* "LHTTP/1.0 history" asking for the last `limit` messages of ch, in a new buffer (NULL
 * when out of memory). */
static char *history_read(const char *ch, long limit, size_t *len)
{
    lhc_msg_t m;
    char lim[24];
    const char *err;
    char *out = NULL;

    lhc_msg_init(&m);
    snprintf(lim, sizeof(lim), "%ld", limit);
    if (lhc_msg_set_command(&m, "history", 7, &err) == 0 &&
        lhc_msg_add_header(&m, "channel", 7, ch, strlen(ch), &err) == 0 &&
        lhc_msg_add_header(&m, "limit", 5, lim, strlen(lim), &err) == 0)
        out = lhc_msg_serialize(&m, len);
    lhc_msg_clear(&m);
    return out;
}

/*
 * The message of subscribe mode: "subscribe:" with every CHANNEL and, for recovery,
 * "recover:" with a channel,offset,epoch entry per channel: from pos (learnt by history
 * reads) when given, else from --since and --epoch for every channel (none without
 * --since). A new buffer, or NULL when out of memory.
 */
static char *subscribe_message(const opts_t *o, const chanpos_t *pos, size_t *len)
{
    size_t n = 1, off = 0, roff = 0;
    char *list, *rec, *out = NULL;
    const char *err;
    lhc_msg_t m;
    int k;

    for (k = 0; k < o->nargs; k++)
        n += strlen(o->args[k]) + 1;
    list = malloc(n);
    rec = malloc(n + (size_t)o->nargs * (EPOCH_MAX + 24));
    lhc_msg_init(&m);
    if (list == NULL || rec == NULL || lhc_msg_set_command(&m, "subscribe", 9, &err) < 0)
        goto out;
    for (k = 0; k < o->nargs; k++) {
        off += (size_t)sprintf(list + off, "%s%s", k ? " " : "", o->args[k]);
        if (pos != NULL ? pos[k].recover : o->since >= 0)
            roff += (size_t)sprintf(rec + roff, "%s%s,%llu,%s", roff ? " " : "", o->args[k],
                                    pos != NULL ? pos[k].offset : (unsigned long long)o->since,
                                    pos != NULL ? pos[k].epoch : o->epoch);
    }
    if (lhc_msg_add_header(&m, "subscribe", 9, list, off, &err) == 0 &&
        (roff == 0 || lhc_msg_add_header(&m, "recover", 7, rec, roff, &err) == 0))
        out = lhc_msg_serialize(&m, len);
out:
    free(list);
    free(rec);
    lhc_msg_clear(&m);
    return out;
}

/* 1 when m's header key is value (exactly). */
static int header_is(const lh_lhttp_msg_t *m, const char *key, const char *value)
{
    size_t vl;
    const char *v = lh_lhttp_header(m, key, &vl);

    return v != NULL && vl == strlen(value) && memcmp(v, value, vl) == 0;
}

/*
 * Subscribe mode's history reads, one CHANNEL at a time before the subscribe: a message
 * of the read is printed with --history (and dropped when the read only asks for the
 * epoch of --since); the read's reply (printed with --history) gives the channel's epoch
 * and latest offset; an error reply to it (printed: 404 for a channel without history)
 * leaves the channel without recovery. After the last channel, the subscribe goes out.
 * Returns 0, or an exit status.
 */
static int pre_message(session_t *s, const lhc_event_t *ev)
{
    const opts_t *o = s->o;
    lh_lhttp_msg_t *m = malloc(sizeof(*m));
    const char *reason, *v, *ch = o->args[s->pre];
    size_t vl, len;
    int done = 0, print = o->history > 0, r;
    char *next;

    if (m == NULL) {
        fprintf(stderr, "lhttpc: out of memory\n");
        return LHC_EXIT_CONN;
    }
    if (lh_lhttp_parse((const char *)ev->data, ev->len, NULL, m, &reason) == 0 &&
        lh_lhttp_header(m, "publish", &vl) == NULL) {
        if (lh_strieq(m->command, m->command_len, "history") && header_is(m, "channel", ch)) {
            chanpos_t *p = &s->pos[s->pre];

            v = lh_lhttp_header(m, "epoch", &vl);
            if (v != NULL && vl > 0 && vl <= EPOCH_MAX) {
                memcpy(p->epoch, v, vl);
                p->epoch[vl] = '\0';
                p->recover = 1;
            }
            v = lh_lhttp_header(m, "offset", &vl);
            p->offset = o->since >= 0 ? (unsigned long long)o->since
                        : v != NULL ? strtoull(v, NULL, 10) : 0;
            done = 1;
        } else if (lh_strieq(m->command, m->command_len, "error") &&
                   header_is(m, "in-reply-to", "history")) {
            done = 1;
            print = 1;
        }
    }
    free(m);
    if (print)
        print_message(s, ev);
    if (!done)
        return 0;
    if (++s->pre < o->nargs) {
        next = history_read(o->args[s->pre], o->history > 0 ? o->history : 1, &len);
    } else {
        next = subscribe_message(o, s->pos, &len);
        s->pre = -1;
    }
    if (next == NULL) {
        fprintf(stderr, "lhttpc: out of memory\n");
        return LHC_EXIT_CONN;
    }
    r = send_message(s, next, len);
    free(next);
    return r;
}

/* Closes cleanly (close 1000, waiting briefly for the echo) and returns status. */
static int finish(session_t *s, int status)
{
    clear_prompt(s);
    if (lhc_conn_close(s->c, LH_WS_CLOSE_NORMAL, CLOSE_WAIT_MS, print_message, s) == 1 &&
        !s->o->quiet && status == LHC_EXIT_OK)
        fprintf(stderr, "lhttpc: note: the server did not answer the close\n");
    return status;
}


/*
 * Handles one typed line of interactive mode. Returns 0, or an exit status to stop
 * with (a grammar error when stdin is not a terminal, or a send failure).
 */
static int on_line(session_t *s, const char *line, size_t len)
{
    const char *err = NULL;
    char *msg;
    size_t msg_len;
    int r;

    s->line_no++;
    r = lhc_input_line(&s->input, line, len, &err);
    if (r < 0) {
        clear_prompt(s);
        if (s->tty) {
            fprintf(stderr, "lhttpc: %s; start again with a command line\n", err);
            return 0;
        }
        fprintf(stderr, "lhttpc: stdin line %ld: %s\n", s->line_no, err);
        return LHC_EXIT_USAGE;
    }
    if (r == 0)
        return 0;
    msg = lhc_msg_serialize(&s->input.msg, &msg_len);
    lhc_input_reset(&s->input);
    if (msg == NULL) {
        fprintf(stderr, "lhttpc: out of memory\n");
        return LHC_EXIT_CONN;
    }
    if (!s->o->binary && !lh_utf8_valid((const uint8_t *)msg, msg_len)) {
        free(msg);
        clear_prompt(s);
        fprintf(stderr, "lhttpc: the message is not UTF-8 (use --binary); not sent\n");
        return s->tty ? 0 : LHC_EXIT_USAGE;
    }
    r = send_message(s, msg, msg_len);
    free(msg);
    return r;
}

/*
 * Reads what stdin has and feeds its lines. Returns 0, -1 at the end of input (after
 * sending a message left unfinished), or an exit status.
 */
static int on_stdin(session_t *s)
{
    size_t start = 0, i;
    ssize_t n;
    int r;

    if (s->line_cap - s->line_len < STDIN_CHUNK) {
        size_t cap = s->line_cap ? s->line_cap * 2 : 2 * STDIN_CHUNK;
        char *b;

        if (cap > s->o->max_size + 2 * STDIN_CHUNK) {
            fprintf(stderr, "lhttpc: stdin line longer than --max-size\n");
            return LHC_EXIT_USAGE;
        }
        b = realloc(s->line, cap);
        if (b == NULL) {
            fprintf(stderr, "lhttpc: out of memory\n");
            return LHC_EXIT_CONN;
        }
        s->line = b;
        s->line_cap = cap;
    }
    n = read(0, s->line + s->line_len, s->line_cap - s->line_len);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return 0;
        fprintf(stderr, "lhttpc: reading stdin: %s\n", strerror(errno));
        return LHC_EXIT_CONN;
    }
    s->prompt_shown = 0; /* the user ended a line, or input came from a pipe */
    if (n == 0) {
        s->stdin_open = 0;
        if (s->line_len > 0 && (r = on_line(s, s->line, s->line_len)) != 0)
            return r;
        s->line_len = 0;
        if (s->input.state != LHC_IN_COMMAND) {
            /* The end of input ends the message being typed, and sends it. */
            r = on_line(s, ".", 1);
            if (r != 0)
                return r;
        }
        if (s->tty)
            fputc('\n', stderr);
        return -1;
    }
    s->line_len += (size_t)n;
    for (i = 0; i < s->line_len; i++) {
        if (s->line[i] != '\n')
            continue;
        r = on_line(s, s->line + start, i - start);
        if (r != 0)
            return r;
        start = i + 1;
    }
    memmove(s->line, s->line + start, s->line_len - start);
    s->line_len -= start;
    return 0;
}

/* The receive loop of every WebSocket mode. Returns the exit status. */
static int run(session_t *s)
{
    lhc_event_t ev;
    int r;

    for (;;) {
        if (s->want > 0 && s->received >= s->want)
            return finish(s, LHC_EXIT_OK);
        show_prompt(s);
        switch (lhc_conn_next(s->c, s->stdin_open ? 0 : -1, &ev)) {
        case LHC_EV_MESSAGE:
            if (s->pre < 0) {
                print_message(s, &ev);
            } else if ((r = pre_message(s, &ev)) != 0) {
                return finish(s, r);
            }
            break;
        case LHC_EV_FD:
            r = on_stdin(s);
            if (r > 0)
                return finish(s, r);
            if (r < 0 && s->want == 0)
                return finish(s, LHC_EXIT_OK);
            break;
        case LHC_EV_CLOSED:
            clear_prompt(s);
            lhc_report_close(&ev);
            return LHC_EXIT_CLOSED;
        case LHC_EV_TIMEOUT:
            clear_prompt(s);
            if (s->want > 0)
                fprintf(stderr, "lhttpc: timed out after %ld ms with %ld of %ld messages\n",
                        s->o->timeout_ms, s->received, s->want);
            else
                fprintf(stderr, "lhttpc: timed out after %ld ms\n", s->o->timeout_ms);
            return finish(s, LHC_EXIT_TIMEOUT);
        case LHC_EV_ERROR:
            clear_prompt(s);
            return ev.status;
        case LHC_EV_SIGNAL:
            if (lhc_stop_signal)
                return finish(s, 128 + (int)lhc_stop_signal);
            break;
        default:
            break;
        }
    }
}

/* Connects, sends what the mode sends first, and runs the session. */
static int run_ws(opts_t *o, const lhc_url_t *u, int64_t deadline, const char *first,
                  size_t first_len)
{
    lhc_conn_opts_t co;
    session_t s;
    int status = 0, r;

    memset(&s, 0, sizeof(s));
    s.o = o;
    s.pre = -1;
    if (o->mode == MODE_SUBSCRIBE && (o->history > 0 || (o->since >= 0 && o->epoch == NULL))) {
        /* first is the first channel's history read (see pre_message). */
        s.pre = 0;
        s.pos = calloc((size_t)o->nargs, sizeof(*s.pos));
        if (s.pos == NULL) {
            fprintf(stderr, "lhttpc: out of memory\n");
            return LHC_EXIT_CONN;
        }
    }
    lhc_input_init(&s.input, (size_t)o->max_size);
    if (o->mode == MODE_SEND || o->mode == MODE_RAW)
        s.want = o->count >= 0 ? o->count : 1;
    else if (o->count > 0)
        s.want = o->count;
    if (o->mode == MODE_INTERACTIVE) {
        s.stdin_open = 1;
        s.tty = isatty(0);
    }
    co.origin = o->origin;
    co.protocols = o->protocols;
    co.token = o->token;
    co.max_message = o->max_size;
    co.deadline = deadline;
    co.cacert = o->cacert;
    co.insecure = o->insecure;
    setup_signals();
    s.c = lhc_conn_open(u, &co, &status);
    if (s.c == NULL) {
        if (lhc_stop_signal)
            status = 128 + (int)lhc_stop_signal;
        goto out;
    }
    if (s.tty && !o->quiet)
        fprintf(stderr,
                "connected to %s. Type a command line, header lines key:value, an empty "
                "line, the body, and a line \".\" to send. Ctrl-D quits.\n",
                o->url);
    if (first != NULL) {
        r = send_message(&s, first, first_len);
        if (r != 0) {
            status = r;
            goto out;
        }
    }
    if (o->mode == MODE_PUBLISH ||
        ((o->mode == MODE_SEND || o->mode == MODE_RAW) && s.want == 0))
        status = finish(&s, LHC_EXIT_OK);
    else
        status = run(&s);
    if (status == LHC_EXIT_OK && s.refused) {
        fprintf(stderr, "lhttpc: the server refused the publish (see its error reply)\n");
        status = LHC_EXIT_PUBLISH;
    }
out:
    lhc_conn_free(s.c);
    lhc_input_free(&s.input);
    free(s.line);
    free(s.pos);
    return status;
}

/* Parses the command line into o. Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, opts_t *o)
{
    static const struct option longopts[] = {
        { "timeout", required_argument, NULL, 'w' },
        { "format", required_argument, NULL, OPT_FORMAT },
        { "origin", required_argument, NULL, 'o' },
        { "protocol", required_argument, NULL, 'p' },
        { "binary", no_argument, NULL, OPT_BINARY },
        { "raw", no_argument, NULL, OPT_RAW },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { "http", no_argument, NULL, OPT_HTTP },
        { "token", required_argument, NULL, OPT_TOKEN },
        { "max-size", required_argument, NULL, OPT_MAX_SIZE },
        { "fragment", required_argument, NULL, OPT_FRAGMENT },
        { "header", required_argument, NULL, 'H' },
        { "data", required_argument, NULL, 'd' },
        { "data-raw", required_argument, NULL, OPT_DATA_RAW },
        { "file", required_argument, NULL, 'f' },
        { "command", required_argument, NULL, 'c' },
        { "since", required_argument, NULL, OPT_SINCE },
        { "epoch", required_argument, NULL, OPT_EPOCH },
        { "history", required_argument, NULL, OPT_HISTORY },
        { "cacert", required_argument, NULL, OPT_CACERT },
        { "insecure", no_argument, NULL, 'k' },
        { NULL, 0, NULL, 0 }
    };
    int ch, raw = 0, has_msg_opts = 0;
    const char *err, *mode;
    long long v;

    o->count = -1;
    o->timeout_ms = -1;
    o->since = -1;
    o->max_size = LHC_DEFAULT_MAX_MESSAGE;
    lhc_msg_init(&o->headers);
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":n:w:o:p:qhkH:d:f:c:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'n':
            if (parse_num(optarg, 0, LONG_MAX, &v) < 0)
                return usage_error("-n wants a number of messages, not '%s'", optarg);
            o->count = (long)v;
            break;
        case 'w':
            if (parse_num(optarg, 0, INT_MAX, &v) < 0)
                return usage_error("-w wants milliseconds, not '%s'", optarg);
            o->timeout_ms = (long)v;
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "raw") == 0)
                o->format = LHC_FORMAT_RAW;
            else if (strcmp(optarg, "json") == 0)
                o->format = LHC_FORMAT_JSON;
            else if (strcmp(optarg, "short") == 0)
                o->format = LHC_FORMAT_SHORT;
            else
                return usage_error("--format is raw, json or short, not '%s'", optarg);
            break;
        case 'o':
            o->origin = optarg;
            break;
        case 'p':
            o->protocols = optarg;
            break;
        case OPT_BINARY:
            o->binary = 1;
            break;
        case OPT_RAW:
            raw = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return LHC_EXIT_OK;
        case OPT_VERSION:
            printf("lhttpc %s\n", LH_VERSION);
            return LHC_EXIT_OK;
        case OPT_HTTP:
            o->http = 1;
            break;
        case OPT_TOKEN:
            o->token = optarg;
            break;
        case OPT_MAX_SIZE:
            if (parse_num(optarg, (long long)LHC_MIN_MAX_MESSAGE, (long long)1 << 40, &v) < 0)
                return usage_error("--max-size wants bytes (at least 1024), not '%s'", optarg);
            o->max_size = (uint64_t)v;
            break;
        case OPT_FRAGMENT:
            if (parse_num(optarg, 1, LLONG_MAX, &v) < 0)
                return usage_error("--fragment wants bytes, not '%s'", optarg);
            o->fragment = (size_t)v;
            break;
        case 'H':
            has_msg_opts = 1;
            if (lhc_msg_add_header_line(&o->headers, optarg, strlen(optarg), &err) < 0)
                return usage_error("-H %s", err);
            break;
        case 'd':
        case OPT_DATA_RAW:
        case 'f':
            has_msg_opts = 1;
            if (o->data != NULL || o->file != NULL)
                return usage_error("%s", "give the body once: -d, --data-raw or -f");
            if (ch == 'f')
                o->file = optarg;
            else
                o->data = optarg;
            o->data_raw = ch == OPT_DATA_RAW;
            break;
        case 'c':
            o->command = optarg;
            break;
        case OPT_CACERT:
            o->cacert = optarg;
            break;
        case 'k':
            o->insecure = 1;
            break;
        case OPT_SINCE:
            if (parse_num(optarg, 0, LLONG_MAX, &v) < 0)
                return usage_error("--since wants an offset, not '%s'", optarg);
            o->since = v;
            break;
        case OPT_EPOCH:
            if (*optarg == '\0' || strlen(optarg) > EPOCH_MAX ||
                strspn(optarg, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") !=
                    strlen(optarg))
                return usage_error("--epoch wants letters and digits (as lhttpd prints it), not "
                                   "'%s'", optarg);
            o->epoch = optarg;
            break;
        case OPT_HISTORY:
            if (parse_num(optarg, 1, 1000000, &v) < 0)
                return usage_error("--history wants a number of messages (1 or more), not '%s'",
                                   optarg);
            o->history = (long)v;
            break;
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("%s", "no URL given");
    o->url = argv[optind++];
    mode = optind < argc ? argv[optind++] : NULL;
    o->args = argv + optind;
    o->nargs = argc - optind;
    if (mode == NULL)
        o->mode = raw ? MODE_RAW : MODE_INTERACTIVE;
    else if (strcmp(mode, "send") == 0)
        o->mode = MODE_SEND;
    else if (strcmp(mode, "listen") == 0)
        o->mode = MODE_LISTEN;
    else if (strcmp(mode, "subscribe") == 0)
        o->mode = MODE_SUBSCRIBE;
    else if (strcmp(mode, "publish") == 0)
        o->mode = MODE_PUBLISH;
    else if (strcmp(mode, "presence") == 0 || strcmp(mode, "presence-stats") == 0) {
        /* send presence -H channel:CHANNEL, and print its answer. */
        err = NULL;
        if (o->nargs != 1 || !lh_channel_valid(o->args[0], strlen(o->args[0]),
                                               LH_CHANNEL_MAX_LEN))
            return usage_error("%s wants one valid CHANNEL", mode);
        if (has_msg_opts)
            return usage_error("%s takes no -H, -d or -f", mode);
        if (lhc_msg_add_header(&o->headers, "channel", 7, o->args[0], strlen(o->args[0]),
                               &err) < 0)
            return usage_error("%s", err);
        o->args[0] = argv[optind - 1];
        o->mode = MODE_SEND;
        has_msg_opts = 1;
    } else
        return usage_error("unknown mode '%s' (send, listen, subscribe, publish, presence or "
                           "presence-stats)", mode);

    if (raw && mode != NULL)
        return usage_error("%s", "--raw sends stdin as the message; give no mode");
    if (o->http && o->mode != MODE_PUBLISH)
        return usage_error("%s", "--http works with publish only");
    if (o->token != NULL && (*o->token == '\0' || strpbrk(o->token, "\r\n") != NULL))
        return usage_error("%s", "--token wants a non-empty token without CR or LF");
    if (o->mode == MODE_SEND && o->nargs != 1)
        return usage_error("%s", "send wants one COMMAND");
    if (o->mode == MODE_LISTEN && o->nargs != 0)
        return usage_error("unexpected argument '%s' after listen", o->args[0]);
    if ((o->mode == MODE_SUBSCRIBE || o->mode == MODE_PUBLISH) && o->nargs == 0)
        return usage_error("%s wants at least one CHANNEL", mode);
    if (o->mode == MODE_INTERACTIVE && o->nargs != 0)
        return usage_error("unexpected argument '%s'", o->args[0]);
    if (has_msg_opts && o->mode != MODE_SEND && o->mode != MODE_PUBLISH)
        return usage_error("%s", "-H, -d and -f go with send or publish");
    if (o->command != NULL && o->mode != MODE_PUBLISH)
        return usage_error("%s", "-c goes with publish (send takes COMMAND as its argument)");
    if (o->mode == MODE_PUBLISH && o->count >= 0)
        return usage_error("%s", "-n does not go with publish; use send with -H publish:CH");
    if ((o->since >= 0 || o->epoch != NULL || o->history > 0) && o->mode != MODE_SUBSCRIBE)
        return usage_error("%s", "--since, --epoch and --history go with subscribe");
    if (o->epoch != NULL && o->since < 0)
        return usage_error("%s", "--epoch goes with --since");
    if (o->history > 0 && o->since >= 0)
        return usage_error("%s", "give --since or --history, not both");
    if (o->mode == MODE_SUBSCRIBE || o->mode == MODE_PUBLISH) {
        int k;

        for (k = 0; k < o->nargs; k++)
            if (!lh_channel_valid(o->args[k], strlen(o->args[k]), LH_CHANNEL_MAX_LEN))
                return usage_error("invalid channel name '%s'", o->args[k]);
    }
    if (o->http && o->token == NULL) {
        const char *t = getenv("LHTTPC_TOKEN");

        if (t != NULL && *t != '\0')
            o->token = t;
    }
    return -1;
}

int main(int argc, char **argv)
{
    opts_t o;
    lhc_url_t u;
    char *first = NULL;
    size_t first_len = 0;
    int64_t start = lhc_now_ms(), deadline = -1;
    int status;
    const char *err;

    /* "lhttpc token ..." is a command of its own (no URL can be the word "token"). */
    if (argc >= 2 && strcmp(argv[1], "token") == 0)
        return lhc_token_main(argc - 1, argv + 1);
    memset(&o, 0, sizeof(o));
    status = parse_args(argc, argv, &o);
    if (status >= 0)
        goto out;
    if (o.timeout_ms < 0 && (o.mode == MODE_SEND || o.mode == MODE_RAW || o.http))
        o.timeout_ms = SEND_TIMEOUT_MS;
    if (o.timeout_ms > 0)
        deadline = start + o.timeout_ms;
    if (!o.http && lhc_url_parse(o.url, &u, &err) < 0) {
        status = usage_error("%s", err);
        goto out;
    }
    if (o.http && strncmp(o.url, "http://", 7) != 0 && strncmp(o.url, "https://", 8) != 0) {
        status = usage_error("%s", "--http wants an http:// URL");
        goto out;
    }

    /* Everything sent is read before connecting, so that no connection waits on input. */
    status = LHC_EXIT_USAGE;
    switch (o.mode) {
    case MODE_RAW:
        first = read_all(0, "stdin", o.max_size, &first_len);
        if (first == NULL)
            goto out;
        break;
    case MODE_SEND:
    case MODE_PUBLISH:
        first = build_message(&o, &first_len, &status);
        if (first == NULL)
            goto out;
        break;
    case MODE_SUBSCRIBE:
        if (o.history > 0 || (o.since >= 0 && o.epoch == NULL))
            first = history_read(o.args[0], o.history > 0 ? o.history : 1, &first_len);
        else
            first = subscribe_message(&o, NULL, &first_len);
        if (first == NULL) {
            status = LHC_EXIT_CONN;
            goto out;
        }
        break;
    default:
        break;
    }

    if (o.http) {
        lhc_http_opts_t ho = { o.url, o.token, o.timeout_ms, o.quiet, o.cacert, o.insecure };

        status = lhc_http_publish(&ho, first, first_len);
    } else {
        status = run_ws(&o, &u, deadline, first, first_len);
    }
out:
    free(first);
    lhc_msg_clear(&o.headers);
    return status;
}
