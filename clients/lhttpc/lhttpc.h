/*
 * lhttpc: the command-line LHTTP-over-WebSocket client. Internal interfaces between its
 * files. Client-only symbols carry the prefix lhc_ so that they never collide with the
 * server's lh_ symbols when a unit test links both.
 *
 * url.c        ws:// URL parsing (pure)
 * handshake.c  the HTTP upgrade request and the check of the server's answer (pure)
 * msg.c        building LHTTP messages from the command line or typed lines (pure)
 * output.c     printing received messages, raw or as JSON lines
 * conn.c       the socket: connect, handshake, frames, close (blocking I/O with poll)
 * httppub.c    publishing with POST over HTTP (libcurl)
 * token.c      `lhttpc token`: minting JWTs (libcrypto, jansson)
 * main.c       options, the modes, and the dispatch to `lhttpc token`
 */
#ifndef LHC_LHTTPC_H
#define LHC_LHTTPC_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "lh_lhttp.h"

/* Exit statuses; main.c's usage text and packaging/man/lhttpc.1 document them. */
enum {
    LHC_EXIT_OK = 0,
    LHC_EXIT_CONN = 1,    /* connect, handshake or WebSocket protocol failure */
    LHC_EXIT_KEY = 1,     /* lhttpc token: the key cannot be read or cannot sign */
    LHC_EXIT_USAGE = 2,   /* bad command line or bad input */
    LHC_EXIT_TIMEOUT = 3, /* -w elapsed */
    LHC_EXIT_CLOSED = 4,  /* the server closed the connection */
    LHC_EXIT_PUBLISH = 5  /* publish refused: HTTP non-2xx, or an LHTTP error reply */
};

/* Default cap of one received or sent message, and the smallest one allowed. */
#define LHC_DEFAULT_MAX_MESSAGE ((uint64_t)64 << 20)
#define LHC_MIN_MAX_MESSAGE ((uint64_t)1 << 10)

/* ---- url.c ---- */

typedef struct {
    char host[256];     /* without the brackets of an IPv6 literal */
    char port[6];       /* decimal, "80" when the URL gives none */
    char hostport[300]; /* the Host header value: as written in the URL */
    char target[4096];  /* path and query, "/" when the URL gives none */
    int tls;            /* wss:// */
} lhc_url_t;

/*
 * Parses a ws:// URL into u. Returns 0, or -1 with *err set to a static text saying what
 * is wrong (wss:// is refused with a pointer to a TLS proxy, since lhttpc has no TLS).
 */
int lhc_url_parse(const char *s, lhc_url_t *u, const char **err);

/* ---- handshake.c ---- */

/*
 * Writes the upgrade request for u into out (capacity cap, NUL-terminated). key is the
 * base64 Sec-WebSocket-Key; origin, protocols and token may be NULL (a token is sent as
 * "Authorization: Bearer <token>"). Returns its length, or -1 when it does not fit or a
 * value holds CR or LF.
 */
int lhc_handshake_request(char *out, size_t cap, const lhc_url_t *u, const char *key,
                          const char *origin, const char *protocols, const char *token);

/* Fills key[25] with the base64 of 16 random bytes. Returns 0, or -1 (errno set). */
int lhc_handshake_key(char key[25]);

/* Length of the response head in buf[0..len) including its empty line, or 0 if incomplete. */
size_t lhc_handshake_head_len(const char *buf, size_t len);

/*
 * Checks the server's response head (head_len bytes from lhc_handshake_head_len) against
 * the request. Returns 0 when it accepts the upgrade. Otherwise returns -1 and writes
 * into err a line for the user: the status line when it is not 101, or what is wrong
 * with a 101 (missing Upgrade, wrong Sec-WebSocket-Accept, an extension or
 * subprotocol not offered). The selected subprotocol, if any, goes into proto (cap
 * proto_cap, "" when none).
 */
int lhc_handshake_check(const char *head, size_t head_len, const char *key,
                        const char *protocols, char *proto, size_t proto_cap, char *err,
                        size_t err_cap);

/* ---- msg.c ---- */

typedef struct {
    char *key;
    char *value;
} lhc_kv_t;

/* An LHTTP message under construction. Owns its strings. */
typedef struct {
    char *command;
    lhc_kv_t *headers;
    size_t num_headers;
    size_t cap_headers;
    char *body;
    size_t body_len;
    size_t body_cap;
} lhc_msg_t;

/* Trims spaces and tabs at both ends of s[0..*len); returns the new start. */
const char *lhc_trim(const char *s, size_t *len);

void lhc_msg_init(lhc_msg_t *m);
void lhc_msg_clear(lhc_msg_t *m); /* frees the contents, leaves an empty message */

/*
 * Sets the command from "chat" or "LHTTP/1.0 chat". Returns 0, or -1 with *err set.
 */
int lhc_msg_set_command(lhc_msg_t *m, const char *s, size_t len, const char **err);

/* Adds a header from "key:value" (white space around key and value trimmed). */
int lhc_msg_add_header_line(lhc_msg_t *m, const char *s, size_t len, const char **err);

/* Adds a header from its key and value, both copied. */
int lhc_msg_add_header(lhc_msg_t *m, const char *key, size_t key_len, const char *value,
                       size_t value_len, const char **err);

/* Appends to the body. Returns 0, or -1 when out of memory or over max bytes. */
int lhc_msg_append_body(lhc_msg_t *m, const char *p, size_t len, size_t max);

/*
 * Serializes the message (CRLF line ends) into a new buffer the caller frees.
 * Returns it with *len set, or NULL when out of memory.
 */
char *lhc_msg_serialize(const lhc_msg_t *m, size_t *len);

/*
 * The line grammar of interactive mode: a command line ("chat" or "LHTTP/1.0 chat";
 * empty lines before it are skipped), header lines "key:value", an empty line, body
 * lines joined by "\n", and a line "." that ends the message. A "." in place of a
 * header line ends a message without body; ".." in the body stands for a line ".".
 */
enum { LHC_IN_COMMAND, LHC_IN_HEADERS, LHC_IN_BODY };

typedef struct {
    int state;
    int body_lines; /* body lines so far, to know where "\n" goes */
    size_t max;     /* cap of the body */
    lhc_msg_t msg;
} lhc_input_t;

void lhc_input_init(lhc_input_t *in, size_t max_body);
void lhc_input_free(lhc_input_t *in);

/*
 * Feeds one line (without its "\n"; a trailing "\r" is dropped). Returns 1 when the
 * line completed a message (in->msg holds it; lhc_input_reset() before the next line),
 * 0 when more lines are needed, -1 with *err set when the line is invalid (the
 * message being typed is dropped).
 */
int lhc_input_line(lhc_input_t *in, const char *line, size_t len, const char **err);

/* Forgets the message being typed and waits for a command line again. */
void lhc_input_reset(lhc_input_t *in);

/* ---- output.c ---- */

enum { LHC_FORMAT_RAW, LHC_FORMAT_JSON, LHC_FORMAT_SHORT };

/*
 * Prints one received message: raw (as received, then "\n"), as one JSON line
 * {"command","headers":[[k,v],...],"body","binary"} ("command" is null when the message
 * is not LHTTP, and a body that is not UTF-8 is given in base64 with "body_base64":true),
 * or short: one line "OFFSET COMMAND CHANNELS: BODY" for a publication (OFFSET is its
 * offset header, "-" without one) and "- COMMAND key=value... BODY" for any other
 * message, with CR, LF, TAB and backslash in values and body written \r \n \t \\ and a
 * body that is not UTF-8 as "<N bytes>". Flushes. Returns 0, or -1 when the write failed.
 */
int lhc_output_message(FILE *out, int format, int binary, const uint8_t *p, size_t len);

/* Builds the JSON line (without "\n") into a new string the caller frees, or NULL. */
char *lhc_output_json(int binary, const uint8_t *p, size_t len);

/* ---- conn.c ---- */

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t lhc_now_ms(void);

/*
 * Signals. main.c blocks SIGINT and SIGTERM while a connection is open; every wait in
 * conn.c is a ppoll(2) with wait_mask, which lets them in, so a signal can only arrive
 * inside a wait and is never lost between a check of lhc_stop_signal and the wait.
 * The handler only stores the signal's number in lhc_stop_signal.
 */
extern volatile sig_atomic_t lhc_stop_signal;
void lhc_conn_set_wait_mask(const sigset_t *wait_mask); /* copies; NULL: plain waits */

typedef struct lhc_conn lhc_conn_t;

typedef struct {
    const char *origin;    /* NULL: no Origin header */
    const char *protocols; /* NULL: no Sec-WebSocket-Protocol */
    const char *token;     /* NULL: no Authorization header */
    uint64_t max_message;  /* cap of a received message */
    int64_t deadline;      /* lhc_now_ms() value, or -1 for none */
    const char *cacert;    /* wss://: PEM file of the CAs to trust; NULL: the system's */
    int insecure;          /* wss://: do not verify the server's certificate */
} lhc_conn_opts_t;

/*
 * Connects to u and performs the upgrade. Returns a connection, or NULL with an exit
 * status in *status (LHC_EXIT_CONN or LHC_EXIT_TIMEOUT) and a message printed on stderr.
 */
lhc_conn_t *lhc_conn_open(const lhc_url_t *u, const lhc_conn_opts_t *o, int *status);

/* Closes the socket and frees c. Accepts NULL. */
void lhc_conn_free(lhc_conn_t *c);

/* Sets the deadline for later calls (-1: none). */
void lhc_conn_set_deadline(lhc_conn_t *c, int64_t deadline);

/*
 * Sends one message in frames of at most frag bytes (0: one frame), each masked with a
 * fresh key from getrandom(2). Returns 0, or an exit status after printing why.
 */
int lhc_conn_send(lhc_conn_t *c, int binary, const void *p, size_t len, size_t frag);

enum {
    LHC_EV_MESSAGE, /* data/len/binary hold a whole message, valid until the next call */
    LHC_EV_FD,      /* the extra fd is readable */
    LHC_EV_CLOSED,  /* the server closed; code/reason set (1006: no close frame) */
    LHC_EV_TIMEOUT, /* the deadline passed */
    LHC_EV_ERROR,   /* a protocol or I/O failure, already reported; status set */
    LHC_EV_SIGNAL   /* poll(2) was interrupted by a signal */
};

typedef struct {
    int type;
    int binary;
    const uint8_t *data;
    size_t len;
    unsigned code;
    char reason[128];
    int status;
} lhc_event_t;

/*
 * Waits for the next event: a whole message (pings are answered and pongs dropped on the
 * way), extra_fd readable (pass -1 for none), the server's close (answered), the
 * deadline, or a signal. Returns ev->type.
 */
int lhc_conn_next(lhc_conn_t *c, int extra_fd, lhc_event_t *ev);

/*
 * Starts the close handshake with code and waits up to wait_ms for the server's close,
 * passing messages that arrive meanwhile to on_message (may be NULL). Returns 0 when the
 * server answered, 1 when it did not within wait_ms, or the exit status of an error.
 */
int lhc_conn_close(lhc_conn_t *c, unsigned code, int wait_ms,
                   void (*on_message)(void *arg, const lhc_event_t *ev), void *arg);

/* Prints "closed: CODE REASON" on stderr. */
void lhc_report_close(const lhc_event_t *ev);

/* ---- httppub.c ---- */

typedef struct {
    const char *url;
    const char *token; /* NULL: no Authorization header */
    long timeout_ms;   /* 0: none */
    int quiet;
    const char *cacert; /* https://: PEM file of the CAs to trust; NULL: the system's */
    int insecure;       /* https://: do not verify the server's certificate */
} lhc_http_opts_t;

/* POSTs msg[0..len) to o->url. Prints the answer; returns an exit status. */
int lhc_http_publish(const lhc_http_opts_t *o, const char *msg, size_t len);

/* ---- token.c ---- */

/*
 * A signing key: an HMAC secret (HS256/384/512), or a private key from PEM, RSA of 2048
 * bits or more (RS256) or EC P-256 (ES256): what lhttpd's auth.keys accept. Owns its
 * secret and key; lhc_token_key_clear frees them (and wipes the secret).
 */
enum { LHC_KEY_NONE = 0, LHC_KEY_SECRET, LHC_KEY_RSA, LHC_KEY_EC };

typedef struct {
    int kind;
    uint8_t *secret;
    size_t secret_len;
    struct evp_pkey_st *pkey;
} lhc_token_key_t;

/* The shortest secret taken (RFC 7518 section 3.2, and lhttpd's rule). */
#define LHC_TOKEN_MIN_SECRET 32

/*
 * Sets k to the secret data[0..len) with its trailing CR and LF bytes removed (how a
 * secret file is read, as lhttpd reads auth.keys[].secret_file). Returns 0, or -1 with
 * err saying why (shorter than LHC_TOKEN_MIN_SECRET bytes, out of memory).
 */
int lhc_token_key_secret(lhc_token_key_t *k, const void *data, size_t len, char *err,
                         size_t errlen);

/*
 * Sets k to the private key in the PEM text pem[0..len) (unencrypted; PKCS#8 or the
 * traditional RSA/EC forms). Returns 0, or -1 with err saying why (not a private key, a
 * passphrase-protected one, RSA under 2048 bits, EC on a curve other than P-256, or
 * another kind of key).
 */
int lhc_token_key_pem(lhc_token_key_t *k, const char *pem, size_t len, char *err,
                      size_t errlen);

/* Frees what k holds and zeroes it; accepts a zeroed or cleared key. */
void lhc_token_key_clear(lhc_token_key_t *k);

/* The LH_JWT_* bit of an algorithm name ("HS256" ... "ES256"), or 0 for anything else. */
unsigned lhc_token_alg(const char *name);

/* The algorithm a key signs with when --alg is not given: HS256, RS256 or ES256. */
unsigned lhc_token_default_alg(const lhc_token_key_t *k);

/* Which claims of lhc_token_claims_t are present. */
enum { LHC_TOKEN_EXP = 1u << 0, LHC_TOKEN_NBF = 1u << 1, LHC_TOKEN_IAT = 1u << 2 };

/* What goes into a token; borrowed strings, NULL when absent. */
typedef struct {
    const char *kid;      /* in the header */
    const char *sub, *aud, *iss;
    unsigned has;         /* LHC_TOKEN_* */
    int64_t exp, nbf, iat;
    const char *channels; /* names separated by spaces: the "channels" array */
    const char *info;     /* the text of a JSON object: the "info" claim */
} lhc_token_claims_t;

/*
 * Mints the compact JWS (header.payload.signature, base64url) of claims c signed by k
 * with alg (an LH_JWT_* bit; 0: lhc_token_default_alg). The header is
 * {"alg","typ":"JWT"[,"kid"]}; an ES256 signature is r || s, 64 bytes (RFC 7518 3.4).
 * Returns a new string the caller frees, or NULL with err saying why: alg is not one the
 * key signs with (HS with a PEM key, RS256 with an EC key...), info is not a JSON object
 * (or has duplicate names), or libcrypto failed.
 */
char *lhc_token_mint(const lhc_token_key_t *k, unsigned alg, const lhc_token_claims_t *c,
                     char *err, size_t errlen);

/* What `lhttpc token` was asked for. */
typedef struct {
    const char *secret_file; /* exactly one of secret_file and key_file */
    const char *key_file;
    unsigned alg; /* 0: from the key */
    int no_iat;
    lhc_token_claims_t claims;
} lhc_token_req_t;

/*
 * Parses the arguments of `lhttpc token` (argv[0] is "token") into r, with now (seconds
 * since the epoch) for --exp-in and the default iat. Returns -1 to go on, or an exit
 * status after printing (0 for --help, LHC_EXIT_USAGE for a bad command line). The
 * strings of r point into argv.
 */
int lhc_token_parse_args(int argc, char **argv, int64_t now, lhc_token_req_t *r);

/* `lhttpc token ...`: prints the token and a newline. Returns the exit status. */
int lhc_token_main(int argc, char **argv);

/* The token section of the usage text. */
void lhc_token_usage(FILE *out);

#endif
