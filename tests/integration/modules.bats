#!/usr/bin/env bats
# Loadable modules and multipart messages, end to end: the two example modules
# (build/modules/echo.so, a processor, and timestamp.so, a header filter) loaded by the
# master, serving in every worker, surviving reloads; modules refused by `lhttpd -t` and
# at start (wrong API version, missing file, no descriptor, unresolved symbol, bad
# config); multipart messages listed by the echo module, and hostile offsets refused
# with error 400 on a connection that stays open. Clients are tests/lib/pubsub.py (one
# process drives several connections in a known order) and lhttpc.

load ../lib/helpers

B=${B:-$LH_LIB/../../build}
ECHO_SO=$B/modules/echo.so
STAMP_SO=$B/modules/timestamp.so

setup() {
    T=$(lh_tmp)
    [ -f "$ECHO_SO" ] && [ -f "$STAMP_SO" ] || {
        echo "the example modules are not built ($B/modules); run make" >&2
        return 1
    }
}

teardown() {
    if [ -n "${LH_PID:-}" ]; then assert_server_alive || { stop_all; return 1; }; fi
    stop_all
}

# The API version this tree speaks, from the header the modules are built against.
api_version() { sed -n 's/^#define LH_API_VERSION \([0-9]*\).*/\1/p' "$B/include/lhttpd/lhttpd.h"; }

# start_modules [EXTRA_MEMBERS]: lhttpd with 2 workers, echo (its replies carry the
# worker's pid) and timestamp, plus EXTRA_MEMBERS (top-level JSON members).
start_modules() {
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 2,
        "drain_timeout_ms": 200,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "modules": [
            {"path": "'"$ECHO_SO"'", "config": {"pid_header": "x-worker-pid"}},
            {"path": "'"$STAMP_SO"'"}
        ]'"${1:+, $1}"'
    }'
}

# ps STEP...: tests/lib/pubsub.py against the server.
ps() { "$PY" "$LH_LIB/pubsub.py" "$@"; }

# active_pids: the pids of the workers of the serving generation, sorted, one line.
active_pids() {
    local st gen
    st=$("$LHTTPD" -s status -c "$LH_CONF") || return 1
    gen=$(printf '%s\n' "$st" | sed -n '1s/.*generation \([0-9]*\);.*/\1/p')
    printf '%s\n' "$st" | awk -v g="$gen" '$1 == "worker" && $6 == g && $7 == "active" { print $4 }' |
        sort -n | tr '\n' ' '
}

# echo_pids N: N connections, open at once, each sends `echo` and reads the answer;
# prints the distinct worker pids that answered (x-worker-pid), sorted, one line.
echo_pids() {
    local steps=() i
    for i in $(seq 1 "$1"); do steps+=("open:c$i:$LH_PORT"); done
    for i in $(seq 1 "$1"); do steps+=("send:c$i:LHTTP/1.0 echo\r\n\r\nhi" "recv:c$i"); done
    ps "${steps[@]}" | grep -oE 'x-worker-pid:[0-9]+' | cut -d: -f2 | sort -un | tr '\n' ' '
}

# every_worker_echoes: each worker of the serving generation answers `echo` (the accept
# balancing spreads connections held open at once; three tries of 16).
every_worker_echoes() {
    local want got try
    want=$(active_pids) || return 1
    [ "$(echo $want | wc -w)" -eq 2 ] || { echo "expected 2 active workers: $want" >&2; return 1; }
    for try in 1 2 3; do
        got=$(echo_pids 16)
        [ "$got" = "$want" ] && return 0
    done
    echo "workers $want; echo answered from: $got" >&2
    return 1
}

# published_is_stamped: a message published on one connection reaches a subscriber on
# another (possibly another worker: through NATS) carrying x-server-time.
published_is_stamped() {
    run ps open:a:$LH_PORT sub:a:room open:b:$LH_PORT sync:b:a:room pub:b:room:hello recv:a
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    has_match '^a got [0-9]+ LHTTP/1\.0 msg\\r\\npublish:room\\r\\nx-server-time:[0-9]{13}\\r\\n\\r\\nhello$'
}

# check_refused CONFIG_FILE TEXT: `lhttpd -t` and a start both fail with TEXT.
check_refused() {
    run "$LHTTPD" -t -c "$1"
    [ "$status" -eq 1 ] || { lh_show_output || :; return 1; }
    [[ $output == *"$2"* ]] || { echo "expected: $2" >&2; lh_show_output; return 1; }
    # Started for real, the master refuses before it opens anything.
    run timeout 10 "$LHTTPD" -c "$1"
    [ "$status" -eq 1 ] || { lh_show_output || :; return 1; }
    [[ $output == *"$2"*"; not starting"* ]] || { echo "expected: $2; not starting" >&2; lh_show_output; return 1; }
}

# conf_with_module PATH [CONFIG_JSON]: writes $T/m.json loading that one module.
conf_with_module() {
    cat >"$T/m.json" <<EOF
{"listen": ["127.0.0.1:1"], "control_socket": "$T/m.sock",
 "modules": [{"path": "$1"${2:+, \"config\": $2}}]}
EOF
}

@test "lhttpd -t loads both example modules" {
    cat >"$T/ok.json" <<EOF
{"modules": [{"path": "$ECHO_SO", "config": {"command": "echo"}}, {"path": "$STAMP_SO", "config": {"header": "x-t"}}]}
EOF
    run "$LHTTPD" -t -c "$T/ok.json"
    [ "$status" -eq 0 ] || lh_show_output
    [ "$status" -eq 0 ]
    has_line "lhttpd: configuration $T/ok.json is valid (2 modules loaded)"
}

@test "a module built for another API version is refused, without running its init" {
    cat >"$T/future.c" <<'EOF'
#include <stdio.h>
#include <lhttpd/lhttpd.h>
static int init(const lh_module_ctx_t *ctx, char *err, size_t errlen)
{
    (void)ctx;
    snprintf(err, errlen, "init ran");
    return 1;
}
const lh_module_t lhttpd_module = {999, "future", "9.0", init};
EOF
    cc -shared -fPIC -I"$B/include" -o "$T/future.so" "$T/future.c"
    conf_with_module "$T/future.so"
    check_refused "$T/m.json" "module $T/future.so: built for lhttpd API 999, this lhttpd speaks API $(api_version); rebuild it against this version's <lhttpd/lhttpd.h>"
    no_match 'init ran'
}

@test "a missing module, a shared object without the descriptor, or with an unresolved symbol is refused" {
    conf_with_module "$T/nowhere.so"
    check_refused "$T/m.json" "module $T/nowhere.so: cannot load it: cannot open shared object file: No such file or directory"

    echo 'int not_a_module(void) { return 0; }' >"$T/plain.c"
    cc -shared -fPIC -o "$T/plain.so" "$T/plain.c"
    conf_with_module "$T/plain.so"
    check_refused "$T/m.json" "module $T/plain.so: no \"lhttpd_module\" symbol: not an lhttpd module"

    cat >"$T/unresolved.c" <<'EOF'
#include <lhttpd/lhttpd.h>
int lh_no_such_function(void);
static int init(const lh_module_ctx_t *ctx, char *err, size_t errlen)
{
    (void)ctx; (void)err; (void)errlen;
    return lh_no_such_function();
}
LH_MODULE("unresolved", "1.0", init);
EOF
    cc -shared -fPIC -I"$B/include" -o "$T/unresolved.so" "$T/unresolved.c"
    conf_with_module "$T/unresolved.so"
    check_refused "$T/m.json" "module $T/unresolved.so: cannot load it: "
    has_match 'undefined symbol: lh_no_such_function'
}

@test "a module calling an internal function is refused at load, naming it; the binary exports only the API" {
    cat >"$T/internal.c" <<'EOF'
#include <lhttpd/lhttpd.h>
void lh_conn_destroy(lh_conn_t *c); /* internal: not in lhttpd.h */
static void on_open(lh_conn_t *c, void *ud) { (void)ud; lh_conn_destroy(c); }
static int init(const lh_module_ctx_t *ctx, char *err, size_t errlen)
{
    static const lh_processor_t p = {on_open, NULL, NULL};
    (void)ctx; (void)err; (void)errlen;
    return lh_register_processor("internal", &p, NULL);
}
LH_MODULE("internal", "1.0", init);
EOF
    cc -shared -fPIC -I"$B/include" -o "$T/internal.so" "$T/internal.c"
    conf_with_module "$T/internal.so"
    check_refused "$T/m.json" "module $T/internal.so: cannot load it: "
    has_match "undefined symbol: lh_conn_destroy.*\\(lh_conn_destroy is not part of lhttpd's module API: a module may call only the functions of <lhttpd/lhttpd\\.h>\\)"
    # What lhttpd exports is exactly what lhttpd.h declares.
    local exported declared
    exported=$(nm -D --defined-only "$LHTTPD" | awk '$3 ~ /^lh_/ { print $3 }' | sort)
    declared=$(sed -nE 's/^LH_API [^(]*[ *](lh_[a-z_]+)\(.*/\1/p' "$B/include/lhttpd/lhttpd.h" | sort)
    [ "$(echo "$declared" | wc -l)" -ge 20 ]
    [ "$exported" = "$declared" ] || { diff <(echo "$declared") <(echo "$exported") >&2; return 1; }
}

@test "a module uses lh_conn_send_raw, lh_conn_close, lh_conn_get_data and lh_conn_set_data" {
    cat >"$T/apitest.c" <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <lhttpd/lhttpd.h>
static int key_count, key_other; /* two keys: their addresses */
static void on_open(lh_conn_t *c, void *ud)
{
    int *n = calloc(1, sizeof(*n));
    (void)ud;
    if (lh_conn_get_data(c, &key_count) != NULL) /* a fresh connection has no data */
        lh_api_log(LH_API_LOG_ERR, "apitest: data before set");
    if (n == NULL || lh_conn_set_data(c, &key_count, n) != 0)
        free(n);
}
static void on_close(lh_conn_t *c, void *ud)
{
    int *n = lh_conn_get_data(c, &key_count);
    (void)ud;
    lh_api_log(LH_API_LOG_NOTICE, "apitest: conn %llu closed after %d counts",
               (unsigned long long)lh_conn_id(c), n ? *n : -1);
    free(n);
    lh_conn_set_data(c, &key_count, NULL);
}
static void count(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    int *n = lh_conn_get_data(c, &key_count);
    char v[16];
    lh_header_t h = {"n", 1, v, 0};
    (void)m; (void)ud;
    if (n == NULL)
        return;
    ++*n;
    h.value_len = (size_t)snprintf(v, sizeof(v), "%d", *n);
    /* A second key is another slot; setting it again replaces its value. */
    lh_conn_set_data(c, &key_other, &key_other);
    lh_conn_set_data(c, &key_other, &key_count);
    if (lh_conn_get_data(c, &key_other) != &key_count || lh_conn_get_data(c, "x") != NULL ||
        lh_conn_get_data(c, &key_count) != n)
        h.value = "bad", h.value_len = 3;
    lh_conn_send(c, "count", &h, 1, NULL, 0);
}
static void raw(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    size_t bl;
    const char *b = lh_msg_body(m, &bl);
    (void)ud;
    lh_conn_send_raw(c, b, bl); /* the body, as one message, as is */
}
static void bye(lh_conn_t *c, lh_msg_t *m, void *ud)
{
    (void)m; (void)ud;
    lh_conn_close(c, 4321, "bye from apitest");
    if (lh_conn_send_raw(c, "late", 4) != -EPIPE) /* closing: nothing more is sent */
        lh_api_log(LH_API_LOG_ERR, "apitest: send after close did not fail");
}
static int init(const lh_module_ctx_t *ctx, char *err, size_t errlen)
{
    static const lh_processor_t pc = {on_open, count, on_close}, pr = {NULL, raw, NULL},
                                pb = {NULL, bye, NULL};
    (void)ctx;
    if (lh_register_processor("count", &pc, NULL) || lh_register_processor("raw", &pr, NULL) ||
        lh_register_processor("bye", &pb, NULL)) {
        snprintf(err, errlen, "register failed");
        return 1;
    }
    return 0;
}
LH_MODULE("apitest", "1.0", init);
EOF
    cc -shared -fPIC -Wall -Werror -I"$B/include" -o "$T/apitest.so" "$T/apitest.c"
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "modules": [{"path": "'"$T/apitest.so"'"}]}'
    run probe upgrade 'text:LHTTP/1.0 count\r\n\r\n' msg 'text:LHTTP/1.0 count\r\n\r\n' msg \
        'text:LHTTP/1.0 raw\r\n\r\nnot LHTTP at all' msg 'text:LHTTP/1.0 bye\r\n\r\n' expect-close
    has_match '^text [0-9]+ LHTTP/1\.0 count\\r\\nn:1\\r\\n'
    has_match '^text [0-9]+ LHTTP/1\.0 count\\r\\nn:2\\r\\n'
    has_line 'text 16 not LHTTP at all'
    has_line 'close 4321 bye from apitest'
    wait_log 'apitest: conn [0-9]+ closed after 2 counts'
    run ! log_has 'apitest: (data before set|send after close did not fail)'
}

@test "a module whose init fails is refused with its reason (bad module config)" {
    conf_with_module "$ECHO_SO" '{"comand": "x"}'
    check_refused "$T/m.json" "module $ECHO_SO (echo): init failed: config: unknown key \"comand\" (echo takes \"command\" and \"pid_header\")"
    conf_with_module "$ECHO_SO" '{"command": "two words"}'
    check_refused "$T/m.json" "init failed: cannot register command \"two words\": not a valid LHTTP command"
    conf_with_module "$STAMP_SO" '{"header": "x:y"}'
    check_refused "$T/m.json" "module $STAMP_SO (timestamp): init failed: config: \"header\" must be a header name"
}

@test "both modules load in every worker and survive reloads" {
    start_modules
    log_has "master: module echo 1\.0 loaded from $ECHO_SO \(API $(api_version)\)"
    log_has "master: module timestamp 1\.0 loaded from $STAMP_SO"
    every_worker_echoes
    published_is_stamped

    # A reload forks a new generation from the same master: the modules come along.
    run "$LHTTPD" -s reload -c "$LH_CONF"
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    every_worker_echoes
    published_is_stamped

    # A changed module list applies at the next restart: the reload goes ahead, says so,
    # and the new workers keep the modules loaded at start.
    sed -i 's|{"path": "'"$STAMP_SO"'"}|{"path": "'"$STAMP_SO"'", "config": {"header": "x-other"}}|' "$LH_CONF"
    grep -q x-other "$LH_CONF"
    run "$LHTTPD" -s reload -c "$LH_CONF"
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    wait_log 'modules changed: module changes apply at the next restart'
    every_worker_echoes
    published_is_stamped
    # Loaded once, in the master, at start: never again by a worker or a reload.
    [ "$(grep -c 'module echo 1.0 loaded' "$LH_LOG")" -eq 1 ]
}

@test "echo answers with the body and the headers the server saw, stamped; a client's stamp is replaced" {
    start_modules
    run ps open:a:$LH_PORT 'send:a:LHTTP/1.0 echo\r\nk: v\r\nx-server-time: forged\r\n\r\nbody\r\n\r\nmore' recv:a
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    has_match '^a got [0-9]+ LHTTP/1\.0 echo\\r\\nk:v\\r\\nx-server-time:[0-9]{13}\\r\\nx-worker-pid:[0-9]+\\r\\n\\r\\nbody\\r\\n\\r\\nmore$'
    # A stamp is within a few seconds of the clock of this test.
    now=$(date +%s%3N)
    t=$(printf '%s\n' "$output" | grep -oE 'x-server-time:[0-9]+' | cut -d: -f2)
    [ $((now - t)) -ge 0 ]
    [ $((now - t)) -lt 10000 ]
    # Built-in headers are acted on, not echoed: the subscription is made.
    run ps open:a:$LH_PORT 'send:a:LHTTP/1.0 echo\r\nsubscribe: r1\r\n\r\nx' recv:a
    has_match '^a got [0-9]+ LHTTP/1\.0 echo\\r\\nx-server-time:[0-9]+\\r\\nx-worker-pid:[0-9]+\\r\\n\\r\\nx$'
}

@test "the same module twice, with two configs: two commands" {
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"], "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "modules": [{"path": "'"$ECHO_SO"'"}, {"path": "'"$ECHO_SO"'", "config": {"command": "say"}}]
    }'
    run ps open:a:$LH_PORT 'send:a:LHTTP/1.0 say\r\n\r\n1' recv:a 'send:a:LHTTP/1.0 echo\r\n\r\n2' recv:a
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    lines_are 'a open' 'a got 18 LHTTP/1.0 say\r\n\r\n1' 'a got 19 LHTTP/1.0 echo\r\n\r\n2'
}

@test "multipart through the echo module: each part's headers and size, zero bytes copied" {
    start_modules
    # Part 0: two headers and "hello" (bytes 0 to 42); part 1: no header, a body that
    # looks like headers (bytes 42 to 50); part 2: LF line ends, a header, an empty body.
    body='content-type: text/plain\r\nname: a\r\n\r\nhello'
    body+='\nk:v\r\n\r\n'
    body+='name:c\n\n'
    run ps open:a:$LH_PORT "send:a:LHTTP/1.0 echo\r\nmultipart: 0  42 50\r\n\r\n$body" recv:a
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    has_match '\\r\\nparts:3\\r\\n\\r\\npart 0: 5 bytes, 2 headers\\ncontent-type: text/plain\\nname: a\\npart 1: 7 bytes, 0 headers\\npart 2: 0 bytes, 1 headers\\nname: c\\n$'
    # The multipart header itself is not echoed.
    no_match 'multipart:'
}

@test "multipart: hostile offsets get error 400 naming the problem; the connection stays open" {
    start_modules '"limits": {"max_multipart_parts": 4}'
    cases=(
        '0 5 3|multipart offsets out of order: 3 after 5|\n\n\n\n\n\n\n'
        '0 3 3|multipart offset 3 appears twice'
        '0 99|multipart offset 99 is not inside the body (8 bytes)'
        '0 18446744073709551616|multipart offset 18446744073709551616 is not inside the body (8 bytes)'
        '0 99999999999999999999999999999999999999|is not inside the body'
        '-1|multipart offset "-1" is not a decimal number'
        '0 0x4|multipart offset "0x4" is not a decimal number'
        '0 04|multipart offset "04" has a leading zero'
        '3|the first multipart offset must be 0, not 3'
        '|the multipart header lists no offset'
        '0 1 2 3 4|more than 4 multipart parts (limits.max_multipart_parts)'
        '0 2|multipart part 1 (bytes 2 to 5) has no empty line after its headers|\nxk:v\n'
        '0|multipart part 0 (bytes 0 to 7) has a header line without '"':'"'|bad\n\nxyz'
    )
    steps=(open:a:$LH_PORT)
    for c in "${cases[@]}"; do
        IFS='|' read -r list _ body <<<"$c"
        steps+=("send:a:LHTTP/1.0 echo\r\nmultipart:$list\r\n\r\n${body:-\n\n\n\n\n\n\n\n}" recv:a)
    done
    # Still open and served: a valid multipart message, then a plain one.
    steps+=('send:a:LHTTP/1.0 echo\r\nmultipart:0 1\r\n\r\n\n\nok' recv:a 'send:a:LHTTP/1.0 echo\r\n\r\nstill here' recv:a)
    run ps "${steps[@]}"
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    for c in "${cases[@]}"; do
        IFS='|' read -r list why _ <<<"$c"
        has_match "^a got [0-9]+ LHTTP/1\\.0 error\\\\r\\\\ncode:400\\\\r\\\\nreason:.*$(printf '%s' "$why" | sed 's/[][().*+?^$|\\]/\\&/g').*\\\\r\\\\nin-reply-to:echo\\\\r\\\\n\\\\r\\\\n$"
    done
    has_match '^a got [0-9]+ LHTTP/1\.0 echo\\r\\n.*parts:2\\r\\n\\r\\npart 0: 0 bytes, 0 headers\\npart 1: 2 bytes, 0 headers\\n$'
    has_match '^a got [0-9]+ LHTTP/1\.0 echo\\r\\n.*\\r\\n\\r\\nstill here$'
    [ "$(printf '%s\n' "$output" | grep -c 'code:400')" -eq "${#cases[@]}" ]
    log_has 'bad multipart message: multipart offsets out of order'
}

@test "multipart: a refused message is not published, nor are its subscriptions made" {
    start_modules
    # a subscribes; b publishes a bad multipart message (refused), then a good one: the
    # first message a receives is the good one.
    run ps open:a:$LH_PORT sub:a:room open:b:$LH_PORT sync:b:a:room \
        'send:b:LHTTP/1.0 msg\r\npublish:room\r\nsubscribe:other\r\nmultipart:0 9\r\n\r\n\nbad' recv:b \
        'send:b:LHTTP/1.0 msg\r\npublish:room\r\nmultipart:0\r\n\r\n\ngood' recv:a
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    has_match '^b got [0-9]+ LHTTP/1\.0 error\\r\\ncode:400\\r\\nreason:multipart offset 9 is not inside the body \(4 bytes\)'
    has_match '^a got [0-9]+ LHTTP/1\.0 msg\\r\\npublish:room\\r\\nmultipart:0\\r\\nx-server-time:[0-9]+\\r\\n\\r\\n\\ngood$'
}

@test "the timestamp filter keeps to limits.max_headers and max_message_bytes (message not stamped, still served)" {
    start_modules '"limits": {"max_headers": 2, "max_message_bytes": 200}'
    # One header: stamped. Two headers: a third is over max_headers. Near 200 bytes: the
    # stamp would push it over max_message_bytes.
    run ps open:a:$LH_PORT \
        'send:a:LHTTP/1.0 echo\r\na:1\r\n\r\nx' recv:a \
        'send:a:LHTTP/1.0 echo\r\na:1\r\nb:2\r\n\r\ny' recv:a \
        'send:a:cat:LHTTP/1.0 echo\r\n\r\n ++ rep:170:z' recv:a
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    has_match '^a got [0-9]+ LHTTP/1\.0 echo\\r\\na:1\\r\\nx-server-time:[0-9]+\\r\\nx-worker-pid:[0-9]+\\r\\n\\r\\nx$'
    has_match '^a got [0-9]+ LHTTP/1\.0 echo\\r\\na:1\\r\\nb:2\\r\\nx-worker-pid:[0-9]+\\r\\n\\r\\ny$'
    has_match '^a got [0-9]+ LHTTP/1\.0 echo\\r\\nx-worker-pid:[0-9]+\\r\\n\\r\\nz{170}$'
}
