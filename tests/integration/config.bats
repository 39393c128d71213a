#!/usr/bin/env bats
# The command line (--help, --version, -t) and the configuration: comments, errors
# reported as FILE:LINE:COL: key.path: problem, and the websocket.* keys changing what
# the server serves. Also: the server works without a reachable NATS.

load ../lib/helpers

teardown() {
    local rc=0
    [ -n "${LH_PID:-}" ] && { assert_server_alive || rc=1; }
    stop_all
    return $rc
}

# conf NAME TEXT: writes TEXT to $BATS_TEST_TMPDIR/NAME and prints the path.
conf() {
    printf '%s\n' "$2" >"$BATS_TEST_TMPDIR/$1"
    echo "$BATS_TEST_TMPDIR/$1"
}

@test "lhttpd --help and --version exit 0; lhttpd(8) documents every option of --help" {
    run "$LHTTPD" --help
    [ "$status" -eq 0 ]
    [[ $output == *-c* ]]
    man_matches_help "$LH_LIB/../../packaging/man/lhttpd.8" "$output"
    run "$LHTTPD" --version
    [ "$status" -eq 0 ]
    want=$(cat "$BATS_TEST_DIRNAME/../../VERSION")
    [[ $output == *"$want"* ]]
}

@test "every configuration key the parser knows is in lhttpd.json(5) and in etc/lhttpd.json" {
    local top=$LH_LIB/../.. keys k missing=
    # The parser's tables: FIELD("name", ...), SECTION("name", ...), { "name", K_... }.
    keys=$(grep -oE '(FIELD|SECTION)\("[a-z_]+"|\{ "[a-z_]+", K_' "$top/shared/lh_config.c" |
        grep -oE '"[a-z_]+"' | tr -d '"' | sort -u)
    [ "$(printf '%s\n' "$keys" | wc -l)" -ge 50 ] || { echo "only found: $keys"; return 1; }
    for k in $keys; do
        grep -qwF "$k" "$top/packaging/man/lhttpd.json.5" ||
            missing="$missing man5:$k"
        grep -qF "\"$k\"" "$top/etc/lhttpd.json" || missing="$missing etc:$k"
    done
    [ -z "$missing" ] || { echo "undocumented:$missing"; return 1; }
}

@test "an unknown option is refused" {
    run "$LHTTPD" --no-such-option
    [ "$status" -ne 0 ]
}

@test "-t accepts a valid config with // and /* */ comments" {
    f=$(conf ok.json '// a line comment
{
    /* a block comment
       over two lines */
    "listen": ["127.0.0.1:18080"], // after a value
    "nats": {"servers": ["nats://127.0.0.1:4222"]},
    "websocket": {"paths": ["/", "/ws"], "echo_paths": ["/echo"], "allowed_origins": [],
                  "ping_interval_ms": 30000, "close_timeout_ms": 5000},
    "limits": {"max_message_bytes": 1048576, "max_headers": 32, "max_header_line": 4096,
               "send_queue_bytes": 4194304, "max_connections": 10000,
               "handshake_timeout_ms": 10000, "idle_timeout_ms": 60000},
    "http": {"max_request_line": 8192, "max_header_bytes": 16384, "max_headers": 64,
             "keepalive_timeout_ms": 15000},
    "publish": {"token": "secret"},
    "log": {"level": "info"}
}')
    run "$LHTTPD" -t -c "$f"
    [ "$status" -eq 0 ]
    # -t only checks: nothing listens on the port afterwards.
    [ -z "$(ss -Hltn 'sport = :18080')" ]
}

@test "-t warns when limits.max_message_bytes exceeds limits.send_queue_bytes" {
    f=$(conf big.json '{"listen": ["127.0.0.1:18080"],
 "limits": {"max_message_bytes": 16777216}}')
    run --separate-stderr "$LHTTPD" -t -c "$f"
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"lhttpd: warning: limits.max_message_bytes (16777216) exceeds limits.send_queue_bytes (4194304): "* ]]
    [[ "$output" == *"is valid"* ]]
    # Within the bounds it is silent.
    f=$(conf fine.json '{"listen": ["127.0.0.1:18080"],
 "limits": {"max_message_bytes": 16777216, "send_queue_bytes": 67108864}}')
    run --separate-stderr "$LHTTPD" -t -c "$f"
    [ "$status" -eq 0 ]
    [ -z "$stderr" ]
}

@test "-t: an unknown key is an error at its line, with its key path" {
    f=$(conf unknown.json '{
    "listen": ["127.0.0.1:18080"],
    "limits": {
        "max_mesage_bytes": 1000
    }
}')
    run "$LHTTPD" -t -c "$f"
    [ "$status" -ne 0 ]
    has_match "^$f:4:[0-9]+: limits\\.max_mesage_bytes: "
}

@test "-t: an unknown top-level key and an unknown websocket key" {
    f=$(conf top.json '{"listen": ["127.0.0.1:18080"],
 "listn": ["x"]}')
    run "$LHTTPD" -t -c "$f"
    [ "$status" -ne 0 ]
    has_match "^$f:2:[0-9]+: listn: "
    f=$(conf ws.json '{
  "websocket": {"echo_path": ["/echo"]}}')
    run "$LHTTPD" -t -c "$f"
    [ "$status" -ne 0 ]
    has_match "^$f:2:[0-9]+: websocket\\.echo_path: "
}

@test "-t: a value of the wrong type or out of range names its key" {
    f=$(conf type.json '{
  "limits": {"max_message_bytes": "big"}
}')
    run "$LHTTPD" -t -c "$f"
    [ "$status" -ne 0 ]
    has_match "^$f:2:[0-9]+: limits\\.max_message_bytes: "
    f=$(conf zero.json '{

  "limits": {"max_message_bytes": 0}}')
    run "$LHTTPD" -t -c "$f"
    [ "$status" -ne 0 ]
    has_match "^$f:3:[0-9]+: limits\\.max_message_bytes: "
    f=$(conf paths.json '{"websocket": {"paths": "/"}}')
    run "$LHTTPD" -t -c "$f"
    [ "$status" -ne 0 ]
    has_match "^$f:1:[0-9]+: websocket\\.paths: "
    f=$(conf level.json '{"log": {"level": "loud"}}')
    run "$LHTTPD" -t -c "$f"
    [ "$status" -ne 0 ]
    has_match "^$f:1:[0-9]+: log\\.level: "
    f=$(conf listen.json '{"listen": ["no port here"]}')
    run "$LHTTPD" -t -c "$f"
    [ "$status" -ne 0 ]
    has_match "^$f:1:[0-9]+: listen"
}

@test "-t: line numbers count lines inside comments" {
    f=$(conf comment-lines.json '{
  /* one
     two
     three */
  // four
  "http": {"max_headers": -1}
}')
    run "$LHTTPD" -t -c "$f"
    [ "$status" -ne 0 ]
    has_match "^$f:6:[0-9]+: http\\.max_headers: "
}

@test "-t: a JSON syntax error is reported with its position" {
    f=$(conf syntax.json '{
  "listen": ["127.0.0.1:18080"]
  "limits": {}
}')
    run "$LHTTPD" -t -c "$f"
    [ "$status" -ne 0 ]
    has_match "^$f:3:[0-9]+: "
}

@test "-t: a missing file is an error" {
    run "$LHTTPD" -t -c "$BATS_TEST_TMPDIR/does-not-exist.json"
    [ "$status" -ne 0 ]
    [ -n "$output" ]
}

@test "lhttpd refuses to start with an invalid config" {
    f=$(conf bad.json '{"listen": ["127.0.0.1:18080"], "limits": {"nope": 1}}')
    run timeout 10 "$LHTTPD" -c "$f"
    [ "$status" -ne 0 ]
    [ "$status" -ne 124 ]
    has_match "limits\\.nope"
}

@test "the server starts from a config with comments" {
    start_lhttpd '/* config.bats */ {
        "listen": ["127.0.0.1:@PORT@"], // the port the test picked
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        /* an echo path */ "websocket": {"echo_paths": ["/echo"]}
    }'
    run probe upgrade:/echo text:hi echo
    has_line "echo ok text 2"
}

@test "defaults: LHTTP on / and /ws, no echo path" {
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "nats": {"servers": ["nats://127.0.0.1:@NATS@"]}}'
    for path in / /ws; do
        run probe upgrade:$path 'text:LHTTP/1.0 ping\r\n\r\nx' msgtext
        has_line 'text 19 LHTTP/1.0 pong\r\n\r\nx' || { echo "path $path" >&2; return 1; }
    done
    [ "$(http_status /echo)" = 404 ]
    run probe upgrade:/echo
    has_line "status 404"
}

@test "websocket.paths and websocket.echo_paths replace the defaults" {
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "websocket": {"paths": ["/lhttp"], "echo_paths": ["/e1", "/e2"]}}'
    run probe upgrade:/lhttp 'text:LHTTP/1.0 ping\r\n\r\ny' msgtext
    has_line 'text 19 LHTTP/1.0 pong\r\n\r\ny'
    run probe upgrade:/e1 'text:LHTTP/1.0 ping\r\n\r\ny' echo
    has_line "echo ok text 19"
    run probe upgrade:/e2 binary:rand:10 echo
    has_line "echo ok binary 10"
    [ "$(http_status /)" = 404 ]
    [ "$(http_status /ws)" = 404 ]
    [ "$(http_status /lhttp)" = 426 ]
    assert_server_ok /lhttp
}

@test "websocket.allowed_origins: a listed Origin gets 101, another gets 403" {
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "websocket": {"echo_paths": ["/echo"],
                      "allowed_origins": ["https://good.example", "http://127.0.0.1:8000"]}}'
    run probe --origin https://good.example upgrade:/echo text:ok echo
    has_line "status 101"
    has_line "echo ok text 2"
    run probe --origin http://127.0.0.1:8000 upgrade:/
    has_line "status 101"
    run probe --origin https://evil.example upgrade:/echo
    has_line "status 403"
    run probe --origin https://good.example.evil.example upgrade:/echo
    has_line "status 403"
    run wsclient /echo --origin https://evil.example
    has_line "rejected 403"
    run wsclient /echo --origin https://good.example text:lib echo
    has_line "echo ok text 3"
}

@test "websocket.allowed_origins empty (the default) accepts any Origin" {
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "nats": {"servers": ["nats://127.0.0.1:@NATS@"]}}'
    run probe --origin https://anything.example upgrade:/
    has_line "status 101"
}

@test "the server works when no NATS server is reachable" {
    # A port nothing listens on: the NATS connection fails, WebSocket service does not.
    NATS_PORT=$(free_port)
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "websocket": {"echo_paths": ["/echo"]}}'
    run probe upgrade:/echo text:no-nats echo
    has_line "echo ok text 7"
    run probe upgrade:/ 'text:LHTTP/1.0 ping\r\n\r\nz' msgtext
    has_line 'text 19 LHTTP/1.0 pong\r\n\r\nz'
    assert_server_ok
}

@test "the server keeps serving when its NATS server goes away" {
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "websocket": {"echo_paths": ["/echo"]}}'
    run probe upgrade:/echo text:before echo
    has_line "echo ok text 6"
    lh_stop_pid "$NATS_PID"
    run probe upgrade:/echo text:after echo
    has_line "echo ok text 5"
    assert_server_ok
}

@test "log.level: err keeps info lines out of the log, info lets them in" {
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "log": {"level": "err"}}'
    run probe 'send:BROKEN\r\n\r\n' response
    has_line "status 400"
    run probe upgrade:/ 'frame:op=text,mask=0,data=x' expect-close eof
    has_match '^close 1002'
    # Lines carry systemd <N> prefixes; err is 3, so nothing above <3> may appear.
    [ "$(grep -cE '^<[4-7]>' "$LH_LOG")" -eq 0 ]
    stop_all
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "log": {"level": "info"}}'
    run probe upgrade:/ 'frame:op=text,mask=0,data=x' expect-close eof
    has_match '^close 1002'
    grep -qE '^<6>' "$LH_LOG"
    [ "$(grep -cE '^<7>' "$LH_LOG")" -eq 0 ]
}

@test "log.bodies: debug lines name each message; its body only when log.bodies is true" {
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "log": {"level": "debug"}}'
    run probe upgrade:/ 'text:LHTTP/1.0 chat\r\nk:v\r\n\r\nsecret-body-1' 'text:LHTTP/1.0 ping\r\n\r\n' recv
    wait_log 'chat, 1 headers, body 13 bytes' 5
    [ "$(grep -c 'secret-body-1' "$LH_LOG")" -eq 0 ]
    stop_all
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "log": {"level": "debug", "bodies": true}}'
    run probe upgrade:/ 'text:LHTTP/1.0 chat\r\nk:v\r\n\r\nsecret-body-2' 'text:LHTTP/1.0 ping\r\n\r\n' recv
    wait_log 'chat, 1 headers, body 13 bytes: secret-body-2' 5
}
