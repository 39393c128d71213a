#!/usr/bin/env bats
# lhttpc's own behaviour as a command: usage errors, exit statuses (1 connection, 2 usage,
# 3 timeout, 4 closed by the server), output formats, interactive input from a pipe,
# large and fragmented messages. One lhttpd (with a nats-server peer) serves the file.

bats_require_minimum_version 1.5.0
load ../lib/helpers

LHTTPC=${LHTTPC:-$LH_LIB/../../build/lhttpc}

setup_file() {
    start_lhttpd '{
        // lhttpc.bats: the default paths plus an echo path; small messages
        "listen": ["127.0.0.1:@PORT@"],
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "websocket": {"echo_paths": ["/echo"]},
        "limits": {"max_message_bytes": 4194304},
        "publish": {"token": "t0ken"}
    }'
}

teardown_file() { stop_all; }

# Background clients of one test; the server's pids stay with teardown_file.
teardown() {
    local p
    for p in ${BG_PIDS:-}; do lh_stop_pid "$p"; done
    BG_PIDS=
}

url() { echo "ws://127.0.0.1:$LH_PORT${1:-/}"; }

# --- usage: exit 2 ---------------------------------------------------------------

@test "lhttpc: --help and --version exit 0; lhttpc(1) documents every option of --help" {
    run "$LHTTPC" --help
    [ "$status" -eq 0 ]
    has_match '^Exit status: 0 ok; 1 connection'
    man_matches_help "$LH_LIB/../../packaging/man/lhttpc.1" "$output"
    run "$LHTTPC" --version
    [ "$status" -eq 0 ]
    has_match '^lhttpc [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "lhttpc: usage errors exit 2 without connecting" {
    local u=ws://127.0.0.1:1/
    run "$LHTTPC"
    [ "$status" -eq 2 ]
    has_match 'no URL given'
    run "$LHTTPC" "$u" frobnicate
    [ "$status" -eq 2 ]
    has_match "unknown mode 'frobnicate'"
    run "$LHTTPC" "$u" send
    [ "$status" -eq 2 ]
    run "$LHTTPC" "$u" send 'two words'
    [ "$status" -eq 2 ]
    run "$LHTTPC" "$u" send chat -H novalue
    [ "$status" -eq 2 ]
    run "$LHTTPC" -n many "$u" listen
    [ "$status" -eq 2 ]
    run "$LHTTPC" --format xml "$u" listen
    [ "$status" -eq 2 ]
    run "$LHTTPC" "$u" subscribe
    [ "$status" -eq 2 ]
    run "$LHTTPC" "$u" publish 'bad*channel'
    [ "$status" -eq 2 ]
    run "$LHTTPC" --bogus "$u" listen
    [ "$status" -eq 2 ]
    run "$LHTTPC" --http "$u" listen
    [ "$status" -eq 2 ]
    run "$LHTTPC" wss://127.0.0.1:1/ listen
    [ "$status" -eq 2 ]
    has_match 'wss:// is not supported'
    run "$LHTTPC" http://127.0.0.1:1/ listen
    [ "$status" -eq 2 ]
}

@test "lhttpc: a body that is not UTF-8 needs --binary" {
    printf 'a\377b' >"$BATS_TEST_TMPDIR/body"
    run "$LHTTPC" "$(url /echo)" send chat -f "$BATS_TEST_TMPDIR/body"
    [ "$status" -eq 2 ]
    has_match 'not UTF-8'
    run "$LHTTPC" --binary --format json "$(url /echo)" send chat -f "$BATS_TEST_TMPDIR/body"
    [ "$status" -eq 0 ]
    lines_are '{"command":"chat","headers":[],"body":"Yf9i","body_base64":true,"binary":true}'
}

@test "lhttpc: interactive input that breaks the grammar exits 2 when not a terminal" {
    run "$LHTTPC" "$(url)" <<<'not a command'
    [ "$status" -eq 2 ]
    has_match 'stdin line 1: invalid command'
}

# --- connection failures: exit 1 -------------------------------------------------------

@test "lhttpc: connection refused exits 1" {
    local port
    port=$(free_port)
    run "$LHTTPC" -w 5000 "ws://127.0.0.1:$port/" listen
    [ "$status" -eq 1 ]
    has_match "connect to 127.0.0.1:$port: Connection refused"
}

@test "lhttpc: a refused handshake exits 1 and shows the status line" {
    run "$LHTTPC" -w 5000 "$(url /no-such-path)" listen
    [ "$status" -eq 1 ]
    has_match '^lhttpc: handshake refused: HTTP/1\.1 404'
}

@test "lhttpc: an HTTP publish to a closed port exits 1" {
    local port
    port=$(free_port)
    run "$LHTTPC" --http "http://127.0.0.1:$port/publish" publish news -d x
    [ "$status" -eq 1 ]
}

# --- timeouts: exit 3 ------------------------------------------------------------------

@test "lhttpc: listen -w gives up with exit 3" {
    local t0 t1
    t0=${EPOCHREALTIME/./}
    run "$LHTTPC" -w 300 "$(url)" listen
    t1=${EPOCHREALTIME/./}
    [ "$status" -eq 3 ]
    has_match 'timed out after 300 ms'
    # Gave up near the deadline: not before it, and not long after.
    [ $(((t1 - t0) / 1000)) -ge 300 ]
    [ $(((t1 - t0) / 1000)) -lt 4000 ]
}

@test "lhttpc: send waiting for more replies than come exits 3" {
    run "$LHTTPC" -w 500 -n 2 "$(url)" send ping -d once
    [ "$status" -eq 3 ]
    has_line 'once'
    has_match 'with 1 of 2 messages'
}

# --- replies and formats ---------------------------------------------------------------

@test "lhttpc: send ping prints the pong raw" {
    run --separate-stderr "$LHTTPC" "$(url)" send ping -d hello
    [ "$status" -eq 0 ]
    [ "$output" = $'LHTTP/1.0 pong\r\n\r\nhello' ]
}

@test "lhttpc: --format json prints one object per message" {
    run --separate-stderr "$LHTTPC" --format json "$(url /echo)" send chat -H to:bob \
        -H 'url:http://x/' -d 'hé "quoted"'
    [ "$status" -eq 0 ]
    lines_are '{"command":"chat","headers":[["to","bob"],["url","http://x/"]],"body":"hé \"quoted\"","binary":false}'
    run --separate-stderr "$LHTTPC" --format json "$(url)" send ping -d x
    [ "$status" -eq 0 ]
    lines_are '{"command":"pong","headers":[],"body":"x","binary":false}'
}

@test "lhttpc: json shows a message that is not LHTTP with a null command" {
    run --separate-stderr "$LHTTPC" --raw --format json "$(url /echo)" <<<'just text'
    [ "$status" -eq 0 ]
    lines_are '{"command":null,"headers":[],"body":"just text\n","binary":false}'
}

@test "lhttpc: --raw sends malformed LHTTP verbatim and shows the error reply" {
    run --separate-stderr "$LHTTPC" --raw --format json "$(url)" < <(printf 'HTTP/1.1 GET\r\n\r\n')
    [ "$status" -eq 0 ]
    has_match '^\{"command":"error","headers":\[.*\["code","400"\]'
}

@test "lhttpc: interactive input from a pipe sends each message" {
    run --separate-stderr "$LHTTPC" -n 2 "$(url)" < <(printf 'ping\n\nfirst\n.\nLHTTP/1.0 ping\n\nsecond\n..\nline\n.\n')
    [ "$status" -eq 0 ]
    [ "$output" = $'LHTTP/1.0 pong\r\n\r\nfirst\nLHTTP/1.0 pong\r\n\r\nsecond\n.\nline' ]
}

@test "lhttpc: the end of input sends the message being typed and closes" {
    run --separate-stderr "$LHTTPC" -w 5000 "$(url)" < <(printf 'ping\n\nunfinished')
    [ "$status" -eq 0 ]
    [ "$output" = $'LHTTP/1.0 pong\r\n\r\nunfinished' ]
}

@test "lhttpc: a 3 MiB message, sent in fragments, comes back whole" {
    local f=$BATS_TEST_TMPDIR/big
    head -c 3145728 /dev/zero | tr '\0' 'z' >"$f"
    "$LHTTPC" -w 20000 --fragment 100000 "$(url /echo)" send big -f "$f" >"$BATS_TEST_TMPDIR/out"
    { printf 'LHTTP/1.0 big\r\n\r\n'; cat "$f"; echo; } >"$BATS_TEST_TMPDIR/want"
    cmp "$BATS_TEST_TMPDIR/want" "$BATS_TEST_TMPDIR/out"
}

@test "lhttpc: send -n 0 sends and closes without waiting for a reply" {
    run --separate-stderr "$LHTTPC" -n 0 "$(url)" send chat -d x
    [ "$status" -eq 0 ]
}

# --- publish and subscribe ---------------------------------------------------------------

# published_to FILE CMD...: runs the publishing CMD, then true when FILE has content.
published_to() {
    local f=$1
    shift
    "$@" >/dev/null || return 1
    [ -s "$f" ]
}

@test "lhttpc: subscribe receives what publish sends, over WebSocket and HTTP" {
    local out=$BATS_TEST_TMPDIR/sub.out pid
    "$LHTTPC" -w 10000 -n 1 --format json "$(url)" subscribe news sports >"$out" 3>&- &
    pid=$!
    BG_PIDS="${BG_PIDS:-} $pid"
    # The subscription has no answer: publish until the subscriber has the message.
    wait_for 5 published_to "$out" "$LHTTPC" "$(url)" publish sports -H from:ws -d goal
    wait_for 5 lh_gone "$pid"
    wait "$pid"
    run cat "$out"
    lines_are '{"command":"publish","headers":[["publish","sports"],["from","ws"]],"body":"goal","binary":false}'

    "$LHTTPC" -w 10000 -n 1 "$(url /ws)" subscribe news >"$out" 3>&- &
    pid=$!
    BG_PIDS="${BG_PIDS:-} $pid"
    wait_for 5 published_to "$out" env LHTTPC_TOKEN=t0ken "$LHTTPC" -q --http \
        "http://127.0.0.1:$LH_PORT/publish" publish news -c flash -d extra
    wait_for 5 lh_gone "$pid"
    wait "$pid"
    [ "$(cat "$out")" = $'LHTTP/1.0 flash\r\npublish:news\r\n\r\nextra' ]
}

@test "lhttpc: HTTP publish prints the JSON answer, or the status and exit 5" {
    run --separate-stderr "$LHTTPC" --http --token t0ken "http://127.0.0.1:$LH_PORT/publish" \
        publish news -d x
    [ "$status" -eq 0 ]
    has_match '^\{.*"channels":\["news"\]'
    run --separate-stderr "$LHTTPC" --http --token wrong "http://127.0.0.1:$LH_PORT/publish" \
        publish news -d x
    [ "$status" -eq 5 ]
    [[ $stderr =~ HTTP\ 401 ]]
}

@test "lhttpc: a WebSocket publish the server refuses exits 5" {
    local long
    long=$(printf 'c%.0s' {1..200})
    run --separate-stderr "$LHTTPC" -w 5000 "$(url)" publish "$long" -d x
    [ "$status" -eq 5 ]
    has_match '^code:400'
    [[ $stderr =~ refused\ the\ publish ]]
}

# --- the server closes: exit 4 -----------------------------------------------------------

@test "lhttpc: a message over the server's limit gets closed: 1009 and exit 4" {
    local f=$BATS_TEST_TMPDIR/huge
    head -c 5000000 /dev/zero | tr '\0' 'z' >"$f"
    run --separate-stderr "$LHTTPC" -w 20000 "$(url /echo)" send big -f "$f"
    [ "$status" -eq 4 ]
    [[ $stderr =~ closed:\ 1009 ]]
    assert_server_ok
}
