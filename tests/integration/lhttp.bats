#!/usr/bin/env bats
# LHTTP over WebSocket on websocket.paths (the defaults, "/" and "/ws"): the built-in
# ping processor answers its command, malformed messages get the documented error reply
# (code 400 or 431) and leave the connection open, unknown commands get no reply.
# limits.max_headers is 8 and limits.max_header_line 256 here, so the 431 cases are small.

load ../lib/helpers

setup_file() {
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "limits": {"max_headers": 8, "max_header_line": 256}
    }'
}

teardown_file() { stop_all; }

# A crash caused by a test fails that test.
teardown() { assert_server_alive; }

# repeat N TEXT: prints TEXT N times (no newline).
repeat() { printf "%${1}s" "" | sed "s/ /$2/g"; }

PONG_HELLO='LHTTP/1.0 pong\r\n\r\nhello'

# has_error_reply CODE [COMMAND]: the output has exactly the documented error reply:
# "LHTTP/1.0 error\r\ncode:CODE\r\nreason:<text>\r\n[in-reply-to:COMMAND\r\n]\r\n".
has_error_reply() {
    local irt=""
    [ -n "${2:-}" ] && irt="in-reply-to:$2"'\\r\\n'
    has_match '^(text|binary) [0-9]+ LHTTP/1\.0 error\\r\\ncode:'"$1"'\\r\\nreason:([^\\]|\\\\|\\x[0-9a-f]{2})+\\r\\n'"$irt"'\\r\\n$'
}

@test "ping: the built-in processor answers with pong and the same body" {
    run probe upgrade:/ 'text:LHTTP/1.0 ping\r\n\r\nhello' msgtext
    has_line "text 23 $PONG_HELLO"
}

@test "ping: on /ws, with the lhttp subprotocol offered" {
    run probe --protocol lhttp upgrade:/ws 'text:LHTTP/1.0 ping\r\n\r\nhello' msgtext
    has_line "protocol lhttp"
    has_line "text 23 $PONG_HELLO"
}

@test "ping: a binary message carrying LHTTP is answered too" {
    run probe upgrade:/ 'binary:LHTTP/1.0 ping\r\n\r\nhello' msgtext
    has_match '^(text|binary) 23 LHTTP/1\.0 pong\\r\\n\\r\\nhello$'
}

@test "ping: bare LF line ends are accepted" {
    run probe upgrade:/ 'text:LHTTP/1.0 ping\n\nhello' msgtext
    has_line "text 23 $PONG_HELLO"
}

@test "ping: without a body, and without the empty line" {
    run probe upgrade:/ 'text:LHTTP/1.0 ping\r\n\r\n' msgtext 'text:LHTTP/1.0 ping' msgtext \
        'text:LHTTP/1.0 ping\r\n' msgtext
    [ "$(printf '%s\n' "${lines[@]}" | grep -c '^text 18 LHTTP/1\.0 pong\\r\\n\\r\\n$')" -eq 3 ]
}

@test "ping: the body is taken verbatim, empty lines and binary bytes included" {
    run probe upgrade:/ 'text:LHTTP/1.0 ping\r\nx-a:1\r\n\r\na\r\n\r\nb:c\r\n' msgtext \
        'binary:LHTTP/1.0 ping\r\n\r\n\x00\xff\xfe' msgtext
    has_match '^text [0-9]+ LHTTP/1\.0 pong\\r\\n(.*\\r\\n)?\\r\\na\\r\\n\\r\\nb:c\\r\\n$'
    has_match '^(text|binary) [0-9]+ LHTTP/1\.0 pong\\r\\n(.*\\r\\n)?\\r\\n\\x00\\xff\\xfe$'
}

@test "ping: a message in fragments, and a 200 KiB body" {
    run probe upgrade:/ 'frame:op=text,fin=0,data=LHTTP/1.0 pi' 'frame:op=cont,fin=0,data=ng\r\n\r' \
        'frame:op=cont,fin=1,data=\nhello' msgtext \
        'text:cat:LHTTP/1.0 ping\r\n\r\n ++ rep:204800:y' msgtext
    has_line "text 23 $PONG_HELLO"
    # The pong is 18 + 204800 bytes: its first 300 are shown, then a digest of all.
    digest=$(printf 'LHTTP/1.0 pong\r\n\r\n%s' "$(repeat 204800 y)" | sha256sum | cut -c1-16)
    has_match "^text 204818 LHTTP/1\\.0 pong\\\\r\\\\n\\\\r\\\\ny{282}\\.\\.\\.sha256=$digest\$"
}

@test "ping: a burst of 100 pings is answered in order" {
    steps=()
    for i in $(seq 1 100); do steps+=("text:LHTTP/1.0 ping\r\n\r\n$i"); done
    for i in $(seq 1 100); do steps+=(msgtext); done
    run probe upgrade:/ "${steps[@]}"
    want=$(for i in $(seq 1 100); do echo "text $((18 + ${#i})) LHTTP/1.0 pong\r\n\r\n$i"; done)
    [ "$(printf '%s\n' "${lines[@]}" | grep '^text ')" = "$want" ]
}

@test "ping: the websockets library gets its pong" {
    run wsclient / --subprotocol lhttp 'text:LHTTP/1.0 ping\r\n\r\nhello' recv \
        'binary:LHTTP/1.0 ping\r\n\r\nbin' recv close:1000
    has_line "subprotocol lhttp"
    has_line "text 23 $PONG_HELLO"
    has_match '^(text 21 LHTTP/1\.0 pong\\r\\n\\r\\nbin|binary 21 4c48)'
    has_line "closed 1000"
}

@test "unknown commands are accepted silently" {
    run probe upgrade:/ 'text:LHTTP/1.0 frobnicate\r\nx:1\r\n\r\nbody' \
        'text:LHTTP/1.0 something-else\r\n\r\n' 'text:LHTTP/1.0 ping\r\n\r\nafter' msgtext
    # The pong is the first (and only) message: nothing answered the unknown commands.
    lines_are "status 101" "accept ok" "protocol -" 'text 23 LHTTP/1.0 pong\r\n\r\nafter'
    assert_server_ok
}

@test "error 400: a message that is not LHTTP (HTTP/1.1 x)" {
    run probe upgrade:/ 'text:HTTP/1.1 x\r\n\r\n' msgtext
    has_error_reply 400
    no_match 'in-reply-to'
}

@test "error 400: LHTTP/1.0 with no command" {
    run probe upgrade:/ 'text:LHTTP/1.0\r\n\r\n' msgtext 'text:LHTTP/1.0 \r\n\r\n' msgtext
    has_error_reply 400
    no_match 'in-reply-to'
    [ "$(printf '%s\n' "${lines[@]}" | grep -c 'code:400')" -eq 2 ]
}

@test "error 400: an empty message, and garbage bytes" {
    run probe upgrade:/ text: msgtext 'binary:hex:00ff1234' msgtext
    [ "$(printf '%s\n' "${lines[@]}" | grep -c 'LHTTP/1\.0 error\\r\\ncode:400\\r\\n')" -eq 2 ]
}

@test "error 400: a header line without ':' names the command in in-reply-to" {
    run probe upgrade:/ 'text:LHTTP/1.0 foo\r\nno-colon-here\r\n\r\nbody' msgtext
    has_error_reply 400 foo
}

@test "error 400: a header with an empty key" {
    run probe upgrade:/ 'text:LHTTP/1.0 bar\r\n:value\r\n\r\n' msgtext
    has_error_reply 400 bar
}

@test "error 400: the error reply has exactly the documented shape" {
    run probe upgrade:/ 'text:LHTTP/1.0 ping\r\nbroken\r\n\r\n' msgtext
    has_error_reply 400 ping
    has_match '^text [0-9]+ LHTTP/1\.0 error\\r\\ncode:400\\r\\nreason:[^\\]'
}

@test "error 431: more than limits.max_headers (8) headers" {
    hdrs=""
    for i in $(seq 1 9); do hdrs="${hdrs}h$i:v\r\n"; done
    run probe upgrade:/ "text:LHTTP/1.0 many\r\n$hdrs\r\n" msgtext
    has_error_reply 431 many
}

@test "431 limits hold exactly: 8 headers and a 256-byte line are accepted" {
    hdrs=""
    for i in $(seq 1 8); do hdrs="${hdrs}h$i:v\r\n"; done
    line="x-long:$(repeat 249 v)" # 256 bytes
    run probe upgrade:/ "text:LHTTP/1.0 ping\r\n$hdrs\r\nok8" msgtext \
        "text:LHTTP/1.0 ping\r\n$line\r\n\r\nok256" msgtext
    has_match '^text [0-9]+ LHTTP/1\.0 pong\\r\\n.*ok8$'
    has_match '^text [0-9]+ LHTTP/1\.0 pong\\r\\n.*ok256$'
    no_match 'error'
}

@test "error 431: a header line over limits.max_header_line (256)" {
    line="x-long:$(repeat 250 v)" # 257 bytes
    run probe upgrade:/ "text:LHTTP/1.0 longhdr\r\n$line\r\n\r\n" msgtext
    has_error_reply 431 longhdr
}

@test "error 431: a command line over limits.max_header_line" {
    run probe upgrade:/ "text:LHTTP/1.0 $(repeat 300 c)\r\n\r\n" msgtext
    has_match '^text [0-9]+ LHTTP/1\.0 error\\r\\ncode:431\\r\\nreason:'
}

@test "the connection stays open after each error: a ping still gets its pong" {
    run probe upgrade:/ 'text:HTTP/1.1 x' msgtext 'text:LHTTP/1.0 ping\r\n\r\none' msgtext \
        'text:LHTTP/1.0 foo\r\nbad\r\n\r\n' msgtext 'text:LHTTP/1.0 ping\r\n\r\ntwo' msgtext \
        "text:LHTTP/1.0 big\r\nx:$(repeat 300 v)\r\n\r\n" msgtext 'text:LHTTP/1.0 ping\r\n\r\nthree' msgtext
    has_line 'text 21 LHTTP/1.0 pong\r\n\r\none'
    has_line 'text 21 LHTTP/1.0 pong\r\n\r\ntwo'
    has_line 'text 23 LHTTP/1.0 pong\r\n\r\nthree'
    [ "$(printf '%s\n' "${lines[@]}" | grep -c 'LHTTP/1\.0 error')" -eq 3 ]
    no_match '^close'
}

@test "WebSocket rules hold on LHTTP paths: invalid UTF-8 gets 1007" {
    run probe upgrade:/ 'text:LHTTP/1.0 ping\r\n\r\n\xff' expect-close eof
    has_match '^close 1007( |$)'
    assert_server_ok
}

@test "WebSocket rules hold on LHTTP paths: a ping frame gets its pong" {
    run probe upgrade:/ws ping:frame-level recv 'text:LHTTP/1.0 ping\r\n\r\n' msgtext
    has_line "pong fin=1 len=11 frame-level"
    has_line 'text 18 LHTTP/1.0 pong\r\n\r\n'
}
