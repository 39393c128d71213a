#!/usr/bin/env bats
# Every configured limit and timer holds: each test starts its own lhttpd (and
# nats-server) with small limits so that crossing them is quick, checks the documented
# reaction, and that the server still serves a new client afterwards.
# Deadlines given to the probe (--timeout) are well under the defaults, so a limit the
# server ignores (falling back to its default) makes the test fail.

load ../lib/helpers

teardown() {
    local rc=0
    [ -n "${LH_PID:-}" ] && { assert_server_alive || rc=1; }
    stop_all
    return $rc
}

# start_with JSON_MEMBERS: starts lhttpd with the base config plus these top-level
# members (a leading comma is added). /echo is an echo path; "/" and "/ws" are LHTTP.
start_with() {
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        '"$1"'
    }'
}

repeat() { printf "%${1}s" "" | sed "s/ /$2/g"; }

# hold NAME STEP...: runs a probe in the background that keeps its connection open; its
# output goes to $BATS_TEST_TMPDIR/NAME.out and its pid is recorded for stop_all.
hold() {
    local name=$1
    shift
    "$PY" "$LH_LIB/wsprobe.py" --timeout 30 "$LH_PORT" "$@" >"$BATS_TEST_TMPDIR/$name.out" 2>&1 3>&- &
    lh_record $!
    eval "HOLD_PID_$name=$!"
}

held_has() { grep -qE -- "$2" "$BATS_TEST_TMPDIR/$1.out"; }

# --- limits.max_message_bytes -------------------------------------------------------------

@test "limits.max_message_bytes: a message of exactly the limit passes, one byte more gets 1009" {
    start_with '"websocket": {"echo_paths": ["/echo"]}, "limits": {"max_message_bytes": 1000}'
    run probe upgrade:/echo binary:rand:1000 echo text:rep:1000:t echo frags:binary:4:rand:1000 echo
    has_line "echo ok binary 1000"
    has_line "echo ok text 1000"
    [ "$(printf '%s\n' "${lines[@]}" | grep -c '^echo ok binary 1000$')" -eq 2 ]
    run probe upgrade:/echo binary:rand:1001 expect-close eof
    has_match '^close 1009( |$)'
    last_line_is_eof
    assert_server_ok
}

@test "limits.max_message_bytes: fragments are counted together" {
    start_with '"websocket": {"echo_paths": ["/echo"]}, "limits": {"max_message_bytes": 1000}'
    run probe upgrade:/echo 'frame:op=text,fin=0,data=rep:600:a' \
        'frame:op=cont,fin=0,data=rep:300:b' 'frame:op=cont,fin=1,data=rep:101:c' expect-close eof
    has_match '^close 1009( |$)'
    last_line_is_eof
    assert_server_ok
}

@test "limits.max_message_bytes: holds on LHTTP paths and for the websockets library" {
    start_with '"websocket": {"echo_paths": ["/echo"]}, "limits": {"max_message_bytes": 1000}'
    run probe upgrade:/ 'text:cat:LHTTP/1.0 ping\r\n\r\n ++ rep:982:x' msgtext \
        'text:cat:LHTTP/1.0 ping\r\n\r\n ++ rep:983:x' expect-close eof
    has_match '^text 1000 LHTTP/1\.0 pong'
    has_match '^close 1009( |$)'
    run wsclient /echo binary:rand:1000 echo binary:rand:1001 recv
    has_line "echo ok binary 1000"
    has_match '^closed 1009( |$)'
    assert_server_ok
}

# --- limits.handshake_timeout_ms ------------------------------------------------------

@test "limits.handshake_timeout_ms: a silent connection is closed without a response" {
    start_with '"limits": {"handshake_timeout_ms": 300}'
    run probe --timeout 3 eof
    lines_are eof
    assert_server_ok
}

@test "limits.handshake_timeout_ms: an unfinished request head gets 408 and is closed" {
    start_with '"limits": {"handshake_timeout_ms": 300}'
    run probe --timeout 3 'send:GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n' response eof
    has_line "status 408"
    last_line_is eof
    assert_server_ok
}

@test "limits.handshake_timeout_ms: a head trickled byte by byte is cut off (slowloris)" {
    start_with '"limits": {"handshake_timeout_ms": 400}'
    # 94 bytes at one per 40 ms would take 3.8 s; the server must close after 0.4 s.
    run probe --timeout 3 "trickle:40:GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Slow: abcdefghijklmnop\r\n\r\n" \
        response eof
    has_match '^closed-while-sending [0-9]+/94$'
    n=$(printf '%s\n' "${lines[@]}" | sed -nE 's|^closed-while-sending ([0-9]+)/94$|\1|p')
    [ "$n" -lt 40 ]
    has_line "status 408"
    assert_server_ok
}

@test "limits.handshake_timeout_ms: does not apply once the WebSocket is open" {
    start_with '"websocket": {"echo_paths": ["/echo"]}, "limits": {"handshake_timeout_ms": 200}'
    run probe upgrade:/echo wait:600 text:still-open echo
    has_line "echo ok text 10"
    no_match '^close'
}

# --- ping interval, idle timeout, close timeout -----------------------------------------------

@test "websocket.ping_interval_ms: a silent client gets a ping" {
    start_with '"websocket": {"echo_paths": ["/echo"], "ping_interval_ms": 200}, "limits": {"idle_timeout_ms": 20000}'
    run probe upgrade:/echo listen:1500
    has_match '^ping fin=1 len=[0-9]+'
    has_line still-open
}

@test "websocket.ping_interval_ms: no ping before the interval" {
    start_with '"websocket": {"echo_paths": ["/echo"], "ping_interval_ms": 5000}, "limits": {"idle_timeout_ms": 20000}'
    run probe upgrade:/echo listen:800
    lines_are "status 101" "accept ok" "protocol -" still-open
}

@test "limits.idle_timeout_ms: a silent client is pinged, then closed with 1001" {
    start_with '"websocket": {"echo_paths": ["/echo"], "ping_interval_ms": 200, "close_timeout_ms": 300}, "limits": {"idle_timeout_ms": 700}'
    run probe --timeout 2 upgrade:/echo listen:4000 eof
    has_match '^ping '
    has_match '^close 1001( |$)'
    no_match still-open
    last_line_is_eof
    assert_server_ok
}

@test "limits.idle_timeout_ms: a client that answers pings stays connected" {
    start_with '"websocket": {"echo_paths": ["/echo"], "ping_interval_ms": 150}, "limits": {"idle_timeout_ms": 500}'
    run probe --auto-pong upgrade:/echo listen:1500 text:alive echo
    has_match '^ping '
    has_line still-open
    no_match '^close'
    has_line "echo ok text 5"
}

@test "limits.idle_timeout_ms: a client that keeps sending stays connected" {
    start_with '"websocket": {"echo_paths": ["/echo"], "ping_interval_ms": 60000}, "limits": {"idle_timeout_ms": 600}'
    # 5 x 200 ms of traffic: well past the 600 ms idle timeout in all.
    steps=()
    for i in 1 2 3 4 5; do steps+=(wait:200 "text:msg $i" echo); done
    run probe upgrade:/echo "${steps[@]}"
    [ "$(printf '%s\n' "${lines[@]}" | grep -c '^echo ok text 5$')" -eq 5 ]
    no_match '^close'
}

@test "websocket.close_timeout_ms: the server ends TCP when the client never answers its close" {
    start_with '"websocket": {"echo_paths": ["/echo"], "ping_interval_ms": 60000, "close_timeout_ms": 300}, "limits": {"idle_timeout_ms": 300}'
    # The probe never answers the 1001 close; TCP must end within about 300 ms of it.
    run probe --timeout 1.5 upgrade:/echo listen:3000 eof
    has_match '^close 1001( |$)'
    last_line_is_eof
}

# --- limits.max_connections ---------------------------------------------------------------

@test "limits.max_connections: a connection over the limit gets 503 and is closed" {
    start_with '"workers": 1, "websocket": {"echo_paths": ["/echo"]}, "limits": {"max_connections": 2}'
    hold a upgrade:/echo listen:30000
    hold b upgrade:/echo listen:30000
    wait_for 5 held_has a '^status 101$'
    wait_for 5 held_has b '^status 101$'
    run probe 'send:GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n' \
        response eof
    has_line "status 503"
    last_line_is_eof
    run wsclient /echo
    has_line "rejected 503"
    [ "$(http_status /nothing)" = 503 ]
    # Once one of the two leaves, a new client gets in.
    lh_stop_pid "$HOLD_PID_a"
    wait_for 5 bash -c "'$PY' '$LH_LIB/wsprobe.py' $LH_PORT upgrade:/echo text:in echo | grep -q 'echo ok text 2'"
    held_has b '^status 101$'
    [ "$(grep -cE '^(eof|reset|close)' "$BATS_TEST_TMPDIR/b.out")" -eq 0 ]
}

# --- limits.send_queue_bytes ----------------------------------------------------------------

@test "limits.send_queue_bytes: a client that does not read is dropped (4008), not queued for" {
    start_with '"websocket": {"echo_paths": ["/echo"]}, "limits": {"send_queue_bytes": 65536}'
    # 600 x 64 KiB = 37.5 MiB of echoes that the probe does not read: far more than the
    # kernel buffers hold, so the server's queue must overflow.
    run probe --timeout 10 --rcvbuf 4096 upgrade:/echo flood:600:65536 drain:10000
    has_match '^(flood sent 600|flood stopped at [0-9]+/600)$'
    has_match '^drained [0-9]+$'
    n=$(printf '%s\n' "${lines[@]}" | sed -nE 's/^drained ([0-9]+)$/\1/p')
    [ "$n" -lt 600 ]
    has_match '^(close 4008( .*)?|eof|reset)$'
    no_match '^timeout$'
    assert_server_ok
}

@test "limits.send_queue_bytes: messages larger than the queue reach a client that reads them, pongs queued behind them too" {
    start_with '"websocket": {"echo_paths": ["/echo"]},
        "limits": {"send_queue_bytes": 65536, "max_message_bytes": 8388608}'
    # An 8 MiB echo does not fit in the kernel's buffers at once: it is still being
    # written when the ping after it is answered; the pong waits behind it.
    run probe --timeout 20 upgrade:/echo binary:rand:1048576 echo binary:rand:8388608 \
        ping:p1 echo binary:rand:8388608 echo
    [ "$(printf '%s\n' "${lines[@]}" | grep -c '^echo ok binary')" -eq 3 ]
    has_match '^pong .*p1'
    no_match '4008'
    log_has 'configuration: limits\.max_message_bytes \(8388608\) exceeds limits\.send_queue_bytes \(65536\)'
    run curl -s --max-time 5 "http://127.0.0.1:$LH_PORT/metrics"
    [[ "$output" == *$'\nlhttpd_slow_consumer_closes_total 0\n'* ]]
    assert_server_ok
}

@test "limits.send_queue_bytes: the close handshake after a 16 MiB echo is answered at once, with a 64 MiB queue and the default 4 MiB one" {
    local q
    for q in 67108864 4194304; do
        start_with '"websocket": {"echo_paths": ["/echo"]},
            "limits": {"send_queue_bytes": '$q', "max_message_bytes": 16777216}'
        # Autobahn 9.1.6: the echo, then the client's close; then a close sent while the
        # echo is still being written, which is answered behind it.
        run probe --timeout 3 upgrade:/echo text:utf8:16777216 echo close:1000 expect-close
        has_line 'echo ok text 16777216'
        has_line 'close 1000'
        run probe --timeout 3 upgrade:/echo binary:rand:16777216 close:1000 echo expect-close
        has_line 'echo ok binary 16777216'
        has_line 'close 1000'
        assert_server_ok
    done
}

@test "limits.send_queue_bytes: a client that resets while its own publish overflows its queue costs nobody else" {
    local i
    start_with '"limits": {"send_queue_bytes": 65536, "max_message_bytes": 131072}'
    # Subscribed to "a", it publishes 60 KB to "a" twenty times over: 1.2 MB for its own
    # queue, which overflows while the message is being handled; the write that follows
    # finds the connection reset. The message arrives in pieces, so it is handled from
    # the connection's input buffer, which must outlive the connection's end.
    for i in 1 2 3 4 5; do
        run probe --split 4096 upgrade \
            "binary:cat:str:LHTTP/1.0 x\r\nsubscribe:a\r\npublish:$(repeat 20 'a ')\r\n\r\n ++ rep:60000:B" rst
        has_match '^rst$'
    done
    assert_server_ok
}

@test "limits.send_queue_bytes: an HTTP client that pipelines requests and reads nothing holds at most that much" {
    local q max=0 i
    start_with '"limits": {"send_queue_bytes": 65536}'
    # 300,000 pipelined requests, each answered with a 404: about 30 MB of answers that the
    # client does not read, far more than the socket buffers of a client that reads
    # nothing grow to. The server stops reading its requests while the answers it queued
    # are over the limit. (No tiny SO_RCVBUF for the client:
    # set after the connection is up, it makes the kernel drop the server's segments,
    # and with them the acknowledgements the client's own sending waits for.)
    hold pipe send:rep:9300000:'GET /nope HTTP/1.1\r\nHost: x\r\n\r\n' wait:30000
    queued() { q=$(curl -s --max-time 2 "http://127.0.0.1:$LH_PORT/metrics" |
        sed -n 's/^lhttpd_send_queue_bytes \([0-9]*\)$/\1/p'); [ "${q:-0}" -gt 32768 ]; }
    wait_for 20 queued
    for i in $(seq 10); do
        queued || true
        [ "${q:-0}" -gt "$max" ] && max=$q
        sleep 0.2
    done
    echo "# most queued: $max bytes" >&3
    [ "$max" -le $((65536 + 4096)) ] || { echo "queued $max bytes"; return 1; }
    kill "$HOLD_PID_pipe"
    assert_server_ok
}

# --- http.* -----------------------------------------------------------------------------------

@test "http.max_request_line: a line of exactly the limit passes, one byte more gets 414" {
    start_with '"http": {"max_request_line": 100}'
    # "GET /aaa... HTTP/1.1" without its CRLF: 4 + 1 + 86 + 9 = 100 bytes.
    run probe "send:GET /$(repeat 86 a) HTTP/1.1\r\nHost: x\r\n\r\n" response
    has_line "status 404"
    run probe "send:GET /$(repeat 87 a) HTTP/1.1\r\nHost: x\r\n\r\n" response eof
    has_line "status 414"
    last_line_is eof
    assert_server_ok
}

@test "http.max_headers: the limit's worth of headers passes, one more gets 431" {
    start_with '"http": {"max_headers": 5}'
    run probe 'send:GET /a HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n' response
    has_line "status 404"
    run probe 'send:GET /a HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n' response eof
    has_line "status 431"
    last_line_is eof
    assert_server_ok
}

@test "http.max_header_bytes: a head well under passes, a head over gets 431" {
    start_with '"http": {"max_header_bytes": 600}'
    run probe "send:GET /a HTTP/1.1\r\nHost: x\r\nX-Pad: $(repeat 300 p)\r\n\r\n" response
    has_line "status 404"
    run probe "send:GET /a HTTP/1.1\r\nHost: x\r\nX-Pad: $(repeat 700 p)\r\n\r\n" response eof
    has_line "status 431"
    last_line_is eof
    assert_server_ok
}

@test "http.max_header_bytes also bounds a WebSocket handshake" {
    start_with '"http": {"max_header_bytes": 600}'
    run probe -H "X-Pad: $(repeat 700 p)" upgrade:/ eof
    has_line "status 431"
    assert_server_ok
}

@test "http.keepalive_timeout_ms: an idle keep-alive connection is closed" {
    start_with '"http": {"keepalive_timeout_ms": 300}'
    run probe --timeout 2 'send:GET /a HTTP/1.1\r\nHost: x\r\n\r\n' response eof
    has_line "status 404"
    last_line_is eof
}

@test "http.keepalive_timeout_ms: a connection in use within the timeout stays open" {
    start_with '"http": {"keepalive_timeout_ms": 600}'
    run probe 'send:GET /a HTTP/1.1\r\nHost: x\r\n\r\n' response wait:300 \
        'send:GET /b HTTP/1.1\r\nHost: x\r\n\r\n' response wait:300 \
        'send:GET /c HTTP/1.1\r\nHost: x\r\n\r\n' response
    [ "$(printf '%s\n' "${lines[@]}" | grep -c '^status 404$')" -eq 3 ]
}

# --- limits.max_headers / limits.max_header_line (LHTTP) ---------------------------------------

@test "limits.max_headers and limits.max_header_line hold for LHTTP messages" {
    start_with '"limits": {"max_headers": 2, "max_header_line": 80}'
    run probe upgrade:/ 'text:LHTTP/1.0 ping\r\na:1\r\nb:2\r\n\r\nok' msgtext \
        'text:LHTTP/1.0 c3\r\na:1\r\nb:2\r\nc:3\r\n\r\n' msgtext \
        "text:LHTTP/1.0 c4\r\nk:$(repeat 79 v)\r\n\r\n" msgtext \
        "text:LHTTP/1.0 ping\r\nk:$(repeat 77 v)\r\n\r\nok2" msgtext
    has_match '^text [0-9]+ LHTTP/1\.0 pong\\r\\n.*ok$'
    has_match '^text [0-9]+ LHTTP/1\.0 error\\r\\ncode:431\\r\\n.*in-reply-to:c3\\r\\n'
    has_match '^text [0-9]+ LHTTP/1\.0 error\\r\\ncode:431\\r\\n.*in-reply-to:c4\\r\\n'
    has_match '^text [0-9]+ LHTTP/1\.0 pong\\r\\n.*ok2$'
}
