#!/usr/bin/env bats
# RFC 6455 conformance of lhttpd: the handshake, echo round trips (raw probe and the
# independent python websockets client), and every frame-level protocol error with its
# close code. One server (with a nats-server peer) serves the whole file; every hostile
# test ends by checking that the server survived and still serves a new client.

#
# websocket-tls.bats is a link to this file: run under that name, every test goes over
# TLS (wss://): the server gets a TLS listener with a certificate of a test CA made here,
# and the probe and the websockets client speak TLS to it, verifying against that CA.

load ../lib/helpers

case $BATS_TEST_FILENAME in
*-tls.bats) WS_TLS=1 ;;
*) WS_TLS= ;;
esac

setup_file() {
    local tls=
    if [ -n "$WS_TLS" ]; then
        local d=$BATS_FILE_TMPDIR/certs
        mkdir -p "$d"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" \
            -days 2 -subj "/CN=lhttpd websocket test CA" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout "$d/srv.key" -out "$d/srv.csr" \
            -subj /CN=localhost 2>/dev/null
        printf 'subjectAltName=DNS:localhost\n' >"$d/srv.ext"
        openssl x509 -req -in "$d/srv.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
            -out "$d/srv.pem" -days 2 -extfile "$d/srv.ext" 2>/dev/null
        WS_CA=$d/ca.pem
        WS_TLS_PORT=$(free_port) || return 1
        LH_PORTS_TAKEN="$LH_PORTS_TAKEN $WS_TLS_PORT"
        export WS_CA WS_TLS_PORT LH_PORTS_TAKEN
        tls=', {"address": "127.0.0.1:'"$WS_TLS_PORT"'", "tls": {"cert_file": "'"$d"'/srv.pem", "key_file": "'"$d"'/srv.key"}}'
    fi
    start_lhttpd '{
        // websocket.bats: default paths ("/", "/ws") plus an echo path
        "listen": ["127.0.0.1:@PORT@"'"$tls"'],
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "websocket": {"echo_paths": ["/echo"], "close_timeout_ms": 1000},
        "limits": {"max_message_bytes": 1048576}
    }'
}

if [ -n "$WS_TLS" ]; then
    # The same clients over TLS (helpers.bash's probe and wsclient, on the TLS port).
    probe() { "$PY" "$LH_LIB/wsprobe.py" --tls "$WS_CA" "$WS_TLS_PORT" "$@"; }
    wsclient() {
        local path=$1
        shift
        SSL_CERT_FILE=$WS_CA "$PY" "$LH_LIB/wsclient.py" "wss://localhost:$WS_TLS_PORT$path" "$@"
    }
fi

teardown_file() { stop_all; }

# A crash caused by a test fails that test.
teardown() { assert_server_alive; }

# closes_with CODE: the probe saw a close frame with CODE, then the TCP connection end.
closes_with() {
    has_match "^close $1( |\$)" && last_line_is_eof
}

# bad_frame CODE STEP...: after an upgrade on /echo the steps must get close CODE and
# the connection must end; then the server must be fine.
bad_frame() {
    local code=$1
    shift
    run probe upgrade:/echo "$@" expect-close eof
    closes_with "$code"
    assert_server_ok
}

# --- transport ----------------------------------------------------------------

@test "transport: the probe speaks TLS (verified) as websocket-tls.bats, plain TCP otherwise" {
    tls_ok() {
        curl -s --max-time 5 "http://127.0.0.1:$LH_PORT/metrics" |
            grep -qE '^lhttpd_tls_handshakes_total\{result="(ok|resumed)",version="TLSv1.3"\} [1-9]'
    }
    run probe upgrade ping:t recv close:1000 expect-close
    has_line "pong fin=1 len=1 t"
    if [ -n "$WS_TLS" ]; then
        wait_for 5 tls_ok
        # The same probe without TLS on the TLS port gets no WebSocket.
        run "$PY" "$LH_LIB/wsprobe.py" "$WS_TLS_PORT" upgrade
        no_match '^status 101'
    else
        run ! tls_ok
    fi
}

# --- handshake ----------------------------------------------------------------

@test "handshake: 101 with the right Sec-WebSocket-Accept and no subprotocol" {
    run probe upgrade:/echo
    lines_are "status 101" "accept ok" "protocol -"
    run probe upgrade:/
    lines_are "status 101" "accept ok" "protocol -"
}

@test "handshake: subprotocol lhttp is selected when offered" {
    run probe --protocol lhttp upgrade:/
    lines_are "status 101" "accept ok" "protocol lhttp"
    run probe --protocol "chat, lhttp" upgrade:/ws
    lines_are "status 101" "accept ok" "protocol lhttp"
}

@test "handshake: the subprotocol is echoed exactly as offered (RFC 6455 4.2.2)" {
    run probe --protocol LHTTP upgrade:/
    lines_are "status 101" "accept ok" "protocol LHTTP"
    run probe --protocol "chat, LHttp" upgrade:/ws
    lines_are "status 101" "accept ok" "protocol LHttp"
}

@test "handshake: an unknown subprotocol alone is not selected" {
    run probe --protocol chat upgrade:/
    has_line "status 101"
    has_line "protocol -"
}

@test "handshake: Connection with Upgrade as one token of a list is accepted" {
    key=$(head -c 16 /dev/urandom | base64)
    run probe "send:GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n\r\n" response
    has_line "status 101"
}

@test "handshake: the request may arrive one byte at a time" {
    run probe --split 1 upgrade:/echo text:hi echo
    has_line "status 101"
    has_line "accept ok"
    has_line "echo ok text 2"
}

# raw_upgrade HEADERS...: a handshake request to /echo with exactly the given header
# lines (plus Host), read as an HTTP response.
raw_upgrade() {
    local req="GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n" h
    for h in "$@"; do req="$req$h\r\n"; done
    run probe "send:$req\r\n" response
}

@test "handshake: a missing Sec-WebSocket-Key gets 400" {
    raw_upgrade "Upgrade: websocket" "Connection: Upgrade" "Sec-WebSocket-Version: 13"
    has_line "status 400"
    assert_server_ok
}

@test "handshake: a Sec-WebSocket-Key that is not base64 of 16 bytes gets 400" {
    raw_upgrade "Upgrade: websocket" "Connection: Upgrade" "Sec-WebSocket-Version: 13" \
        "Sec-WebSocket-Key: not-base64!"
    has_line "status 400"
    # Valid base64, but of 15 bytes.
    raw_upgrade "Upgrade: websocket" "Connection: Upgrade" "Sec-WebSocket-Version: 13" \
        "Sec-WebSocket-Key: $(head -c 15 /dev/urandom | base64)"
    has_line "status 400"
    # Base64 of 17 bytes.
    raw_upgrade "Upgrade: websocket" "Connection: Upgrade" "Sec-WebSocket-Version: 13" \
        "Sec-WebSocket-Key: $(head -c 17 /dev/urandom | base64)"
    has_line "status 400"
    assert_server_ok
}

@test "handshake: Sec-WebSocket-Version 8 gets 426 with Sec-WebSocket-Version: 13" {
    raw_upgrade "Upgrade: websocket" "Connection: Upgrade" "Sec-WebSocket-Version: 8" \
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
    has_line "status 426"
    has_line "header sec-websocket-version: 13"
    assert_server_ok
}

@test "handshake: Sec-WebSocket-Key or Sec-WebSocket-Version twice, or Host twice, gets 400 (RFC 6455 11.3, RFC 9112 3.2)" {
    raw_upgrade "Upgrade: websocket" "Connection: Upgrade" "Sec-WebSocket-Version: 13" \
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
    has_line "status 400"
    has_match 'only once'
    raw_upgrade "Upgrade: websocket" "Connection: Upgrade" "Sec-WebSocket-Version: 13" \
        "Sec-WebSocket-Version: 8" "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
    has_line "status 400"
    raw_upgrade "Upgrade: websocket" "Connection: Upgrade" "Sec-WebSocket-Version: 13" \
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" "Host: other"
    has_line "status 400"
    has_match 'more than one Host'
    # A plain request with two Host lines too.
    run probe 'send:GET /livez HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n' response
    has_line "status 400"
    assert_server_ok
}

@test "handshake: an upgrade request in HTTP/1.0 gets 400" {
    run probe "send:GET /echo HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" response
    has_line "status 400"
    assert_server_ok
}

@test "handshake: Connection without the Upgrade token gets no 101" {
    raw_upgrade "Upgrade: websocket" "Connection: keep-alive" "Sec-WebSocket-Version: 13" \
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
    has_match '^status (400|426)$'
    assert_server_ok
}

@test "handshake: the websockets library gets the right accept key and subprotocol" {
    run wsclient / --subprotocol lhttp
    has_line connected
    has_line "subprotocol lhttp"
    run wsclient /echo
    has_line connected
    has_line "subprotocol -"
}

# --- echo round trips -------------------------------------------------------------

@test "echo: text and binary messages come back unchanged with their type" {
    run probe upgrade:/echo text:hello echo 'binary:hex:00ff10807f' echo \
        'text:utf8:200' echo 'binary:rand:300' echo
    has_line "echo ok text 5"
    has_line "echo ok binary 5"
    has_line "echo ok text 200"
    has_line "echo ok binary 300"
    no_match mismatch
}

@test "echo: empty text and empty binary messages" {
    run probe upgrade:/echo text: msg binary: msg text:after echo
    has_line "text 0"
    has_line "binary 0"
    has_line "echo ok text 5"
}

@test "echo: payload lengths at the 7/16/64-bit length boundaries" {
    run probe upgrade:/echo binary:rand:125 echo binary:rand:126 echo \
        binary:rand:65535 echo binary:rand:65536 echo text:rep:65537:x echo
    for n in 125 126 65535 65536; do has_line "echo ok binary $n"; done
    has_line "echo ok text 65537"
}

@test "echo: a message in many fragments comes back as one message" {
    run probe upgrade:/echo frags:text:100:utf8:1000 echo frags:binary:50:rand:5000 echo \
        frags:text:3:str: echo
    has_line "echo ok text 1000"
    has_line "echo ok binary 5000"
    has_line "echo ok text 0"
}

@test "echo: a UTF-8 character split across fragments is valid" {
    # "€" is e2 82 ac; the fragments cut it after its first and its second byte.
    run probe upgrade:/echo 'frame:op=text,fin=0,data=hex:61e2' 'frame:op=cont,fin=0,data=hex:82' \
        'frame:op=cont,fin=1,data=hex:ac62' echo
    has_line "echo ok text 5"
}

@test "echo: a ping between fragments gets its pong, the message is still whole" {
    run probe upgrade:/echo 'frame:op=text,fin=0,data=str:hello ' 'ping:in-between' \
        'frame:op=cont,fin=1,data=str:world' echo
    has_line "pong fin=1 len=10 in-between"
    has_line "echo ok text 11"
}

@test "echo: 512 KiB text and binary messages" {
    run probe upgrade:/echo text:rep:524288:abc echo binary:rand:524288 echo
    has_line "echo ok text 524288"
    has_line "echo ok binary 524288"
}

@test "echo: a message of exactly limits.max_message_bytes (1 MiB), also fragmented" {
    run probe upgrade:/echo binary:rand:1048576 echo frags:text:16:rep:1048576:xyz echo
    has_line "echo ok binary 1048576"
    has_line "echo ok text 1048576"
}

@test "echo: frames written one byte at a time" {
    run probe --split 1 upgrade:/echo 'text:byte by byte' echo frags:binary:3:rand:40 echo \
        ping:p recv
    has_line "echo ok text 12"
    has_line "echo ok binary 40"
    has_line "pong fin=1 len=1 p"
}

@test "echo: many messages written in one burst come back in order" {
    steps=()
    for i in $(seq 1 200); do steps+=("text:message $i"); done
    for i in $(seq 1 200); do steps+=(msg); done
    run probe upgrade:/echo "${steps[@]}"
    has_line "text 9 message 1"
    has_line "text 11 message 200"
    [ "$(printf '%s\n' "${lines[@]}" | grep -c '^text ')" -eq 200 ]
    want=$(for i in $(seq 1 200); do echo "text $((8 + ${#i})) message $i"; done)
    [ "$(printf '%s\n' "${lines[@]}" | grep '^text ')" = "$want" ]
}

@test "echo: the websockets library round-trips text, binary, large and fragmented data" {
    run wsclient /echo text:hello echo binary:rand:1000 echo text:utf8:300000 echo \
        binary:rand:1048576 echo ping:abc close:1000
    has_line "echo ok text 5"
    has_line "echo ok binary 1000"
    has_line "echo ok text 300000"
    has_line "echo ok binary 1048576"
    has_line "pong ok"
    has_line "closed 1000"
}

# --- control frames -----------------------------------------------------------------

@test "ping: answered with a pong carrying the same payload (empty, text, 125 bytes)" {
    run probe upgrade:/echo ping: recv ping:hello recv 'ping:hex:00ff00' recv ping:rep:125:z recv
    has_line "pong fin=1 len=0"
    has_line "pong fin=1 len=5 hello"
    has_line 'pong fin=1 len=3 \x00\xff\x00'
    has_match '^pong fin=1 len=125 z{125}$'
}

@test "pong: an unsolicited pong is ignored" {
    run probe upgrade:/echo pong:unsolicited text:still-here echo
    has_line "echo ok text 10"
    no_match '^close'
}

@test "close: a client close is answered with its code, then the server closes TCP" {
    run probe upgrade:/echo close:1000:bye expect-close eof
    has_match '^close 1000( |$)'
    last_line_is_eof
    run probe upgrade:/echo close:4321 expect-close eof
    has_match '^close 4321( |$)'
    last_line_is_eof
}

@test "close: valid codes from the registry and private ranges are echoed" {
    for code in 1001 1003 1007 1008 1009 1010 1011 3000 4999; do
        run probe upgrade:/echo "close:$code:reason" expect-close eof
        has_match "^close $code( |\$)" || { echo "code $code" >&2; return 1; }
        last_line_is_eof
    done
}

@test "close: an empty close is answered with an empty close" {
    run probe upgrade:/echo close expect-close eof
    has_line "close none"
    last_line_is_eof
}

@test "close: the websockets library's close handshake completes with 1000" {
    run wsclient /echo text:x echo close:1000
    has_line "closed 1000"
}

# --- protocol errors: 1002 ----------------------------------------------------------

@test "1002: an unmasked client frame" {
    bad_frame 1002 'frame:op=text,mask=0,data=unmasked'
}

@test "1002: an unmasked frame on an LHTTP path too" {
    run probe upgrade:/ 'frame:op=text,mask=0,data=LHTTP/1.0 ping\r\n\r\n' expect-close eof
    closes_with 1002
    assert_server_ok
}

@test "1002: RSV1, RSV2 and RSV3 bits (no extension negotiated)" {
    bad_frame 1002 'frame:op=text,rsv=4,data=x'
    bad_frame 1002 'frame:op=binary,rsv=2,data=x'
    bad_frame 1002 'frame:op=text,rsv=1,data=x'
    bad_frame 1002 'frame:op=ping,rsv=4,data=x'
}

@test "1002: reserved data opcodes 3..7 and control opcodes 0xB..0xF" {
    for op in 3 7 11 15; do
        bad_frame 1002 "frame:op=$op,data=x" || { echo "opcode $op" >&2; return 1; }
    done
}

@test "1002: a fragmented control frame" {
    bad_frame 1002 'frame:op=ping,fin=0,data=x'
    bad_frame 1002 'frame:op=close,fin=0,data=hex:03e8'
}

@test "1002: a control frame with a payload over 125 bytes" {
    bad_frame 1002 'ping:rep:126:a'
    bad_frame 1002 'frame:op=close,data=rep:130:a'
}

@test "1002: a continuation frame without a message to continue" {
    bad_frame 1002 'frame:op=cont,fin=1,data=orphan'
    bad_frame 1002 'text:complete' 'frame:op=cont,fin=1,data=orphan'
}

@test "1002: a new data frame inside a fragmented message" {
    bad_frame 1002 'frame:op=text,fin=0,data=start' 'frame:op=text,fin=1,data=again'
    bad_frame 1002 'frame:op=binary,fin=0,data=start' 'frame:op=binary,fin=0,data=again'
}

@test "1002: a close frame with a 1-byte payload" {
    bad_frame 1002 'frame:op=close,data=hex:03'
}

@test "1002: close codes a peer may not send (0 999 1004 1005 1006 1015 2000 5000)" {
    for code in 0 999 1004 1005 1006 1015 2000 2999 5000 65535; do
        bad_frame 1002 "close:$code" || { echo "close code $code" >&2; return 1; }
    done
}

@test "1002: a length not in its shortest encoding" {
    # 5 bytes announced with the 16-bit form.
    bad_frame 1002 'send:hex:81fe000500000000' 'send:hello'
}

@test "a 64-bit length with its top bit set is refused" {
    run probe upgrade:/echo 'send:hex:82ff800000000000000001020304' expect-close eof
    has_match '^close 100[29]( |$)'
    last_line_is_eof
    assert_server_ok
}

# --- invalid UTF-8: 1007 ------------------------------------------------------------

@test "1007: a text message with invalid UTF-8" {
    bad_frame 1007 'text:hex:68656c6cff6f'
}

@test "1007: overlong encodings, surrogates and code points over U+10FFFF" {
    bad_frame 1007 'text:hex:c0af'
    bad_frame 1007 'text:hex:eda080'
    bad_frame 1007 'text:hex:f4908080'
}

@test "1007: invalid UTF-8 split across fragments" {
    # e2 82 starts "€" correctly, the next fragment breaks it with 28.
    bad_frame 1007 'frame:op=text,fin=0,data=hex:61e282' 'frame:op=cont,fin=1,data=hex:2862'
}

@test "1007: invalid UTF-8 fails at its first byte, before the rest of its frame arrives" {
    # Each frame announces 100000 bytes and sends a few: the server must fail the
    # connection on what it has (Autobahn 6.4.3/6.4.4 strict), not wait for the rest.
    bad_frame 1007 'frame:op=text,len=100000,data=hex:cebae1bdb9cf83cebcceb5eda080'
    bad_frame 1007 'frame:op=text,fin=0,data=str:ok' \
        'frame:op=cont,len=100000,data=hex:cebae1bdb9cf83f4908080'
    # A character cut by the end of what arrived is not an error yet.
    run probe --timeout 1 upgrade:/echo 'frame:op=text,len=100000,data=hex:61e282' expect-close
    last_line_is timeout
}

@test "text frames checked while they arrive are echoed intact, in one frame or in fragments" {
    run probe --split 97 upgrade:/echo text:utf8:20000 echo frags:text:7:utf8:20000 echo \
        'frame:op=text,fin=0,data=utf8:3001' 'frame:op=cont,data=utf8:5003' echo
    has_line 'echo ok text 20000'
    [ "$(printf '%s\n' "${lines[@]}" | grep -c '^echo ok text')" -eq 3 ]
    assert_server_ok
}

@test "1007: a text message truncated in the middle of a character" {
    bad_frame 1007 'text:hex:61e282'
    bad_frame 1007 'frame:op=text,fin=0,data=hex:61' 'frame:op=cont,fin=1,data=hex:f09f98'
}

@test "1007: a close reason with invalid UTF-8" {
    bad_frame 1007 'frame:op=close,data=hex:03e8ff'
}

@test "binary messages may carry any bytes (no UTF-8 check)" {
    run probe upgrade:/echo 'binary:hex:ffc0afeda080' echo
    has_line "echo ok binary 6"
}

# --- too big: 1009 ------------------------------------------------------------------

@test "1009: a frame announcing more than limits.max_message_bytes" {
    # The header announces 1 MiB + 1; the server can refuse before the payload.
    bad_frame 1009 'frame:op=binary,len=1048577,data=rep:1000:a'
}

@test "1009: fragments that together exceed limits.max_message_bytes" {
    bad_frame 1009 'frame:op=binary,fin=0,data=rep:1000000:a' \
        'frame:op=cont,fin=0,data=rep:100000:b'
}

# --- the server's close ----------------------------------------------------------------

@test "after sending a close the server ends TCP within close_timeout_ms without an answer" {
    # close_timeout_ms is 1000 here (the default, 5000, would miss the 3 s deadline).
    run probe --timeout 3 upgrade:/echo 'frame:op=text,mask=0,data=x' expect-close eof
    closes_with 1002
}

@test "data after a close frame is ignored" {
    run probe upgrade:/echo close:1000 text:after-close expect-close eof
    has_match '^close 1000( |$)'
    no_match '^text '
    last_line_is_eof
    assert_server_ok
}

@test "garbage instead of a frame header does not hurt the server" {
    run probe upgrade:/echo 'send:\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff' \
        expect-close eof
    has_match '^close 100[29]( |$)'
    assert_server_ok
}

@test "a client that disconnects in the middle of a frame does not hurt the server" {
    run probe upgrade:/echo 'send:hex:81fe4000aabbccdd0102'
    has_line "status 101"
    run probe upgrade:/echo 'frame:op=binary,fin=0,data=rep:50000:a'
    assert_server_ok /echo
}

@test "random frames (fixed seeds) end in a close or a reply, never a crash" {
    for seed in 1 2 3 4 5 6 7 8 9 10 11 12; do
        run probe --timeout 3 upgrade:/echo "fuzz:$seed:40" drain:3000
        no_match '^timeout$' || { echo "seed $seed" >&2; return 1; }
        run probe --timeout 3 upgrade:/ "fuzz:$((seed + 100)):40" drain:3000
        no_match '^timeout$' || { echo "seed $((seed + 100))" >&2; return 1; }
    done
    assert_server_ok
}
