#!/usr/bin/env bats
# Plain HTTP/1.1 on lhttpd's port: routing statuses, keep-alive, pipelining,
# Connection: close, the request-head errors (400, 414, 431, 505), Host (RFC 9112 3.2),
# the absolute-form and OPTIONS, with the default http.* limits. One server (with a
# nats-server peer) serves the whole file.

load ../lib/helpers

setup_file() {
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "websocket": {"echo_paths": ["/echo"]}
    }'
}

teardown_file() { stop_all; }

# A crash caused by a test fails that test.
teardown() { assert_server_alive; }

# repeat N TEXT: prints TEXT N times (no newline).
repeat() { printf "%${1}s" "" | sed "s/ /$2/g"; }

@test "an unknown path gets 404" {
    [ "$(http_status /no/such/path)" = 404 ]
    [ "$(http_status '/ws/x?y=1')" = 404 ]
}

@test "a non-GET request on a WebSocket path gets 405 with Allow" {
    run probe 'send:POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n' response
    has_line "status 405"
    has_match '^header allow: .*GET'
    run probe 'send:PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n' response
    has_line "status 405"
    has_match '^header allow: .*GET'
    [ "$(http_status /ws -X DELETE)" = 405 ]
}

@test "a GET on a WebSocket path without Upgrade gets 426 with Upgrade: websocket" {
    for path in / /ws /echo; do
        run probe "send:GET $path HTTP/1.1\r\nHost: x\r\n\r\n" response
        has_line "status 426" || { echo "path $path" >&2; return 1; }
        has_line "header upgrade: websocket"
    done
    [ "$(http_status /ws)" = 426 ]
}

@test "keep-alive: several requests one after the other on one connection" {
    run probe 'send:GET /a HTTP/1.1\r\nHost: x\r\n\r\n' response \
        'send:GET / HTTP/1.1\r\nHost: x\r\n\r\n' response \
        'send:GET /b HTTP/1.1\r\nHost: x\r\n\r\n' response
    [ "$(printf '%s\n' "${lines[@]}" | grep '^status ')" = "$(printf 'status 404\nstatus 426\nstatus 404')" ]
    no_match '^header connection: close'
}

@test "keep-alive: curl reuses one connection for two requests" {
    run curl -s -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' --max-time 5 \
        "http://127.0.0.1:$LH_PORT/one" "http://127.0.0.1:$LH_PORT/two"
    [ "$status" -eq 0 ]
    lines_are "404 1" "404 0"
}

@test "pipelining: requests sent in one write are answered in order" {
    run probe 'send:GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET /ws HTTP/1.1\r\nHost: x\r\n\r\nGET /y HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nGET /z HTTP/1.1\r\nHost: x\r\n\r\n' \
        response response response response response
    [ "$(printf '%s\n' "${lines[@]}" | grep '^status ')" = "$(printf 'status 404\nstatus 426\nstatus 404\nstatus 426\nstatus 404')" ]
}

@test "pipelining: a request after a 405 is answered too, or the 405 says Connection: close" {
    run probe 'send:POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n' \
        response response
    has_line "status 405"
    has_line "status 404" || has_line "header connection: close"
}

@test "pipelining: a request split at odd places across writes" {
    run probe --split 7 'send:GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET /ws HTTP/1.1\r\nHost: x\r\n\r\n' \
        response response
    [ "$(printf '%s\n' "${lines[@]}" | grep '^status ')" = "$(printf 'status 404\nstatus 426')" ]
}

@test "Connection: close is honoured: one response, then the server closes" {
    run probe 'send:GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' response eof
    has_line "status 404"
    last_line_is eof
}

@test "a request that arrives one byte at a time" {
    run probe --split 1 'send:GET /slow HTTP/1.1\r\nHost: x\r\n\r\n' response
    has_line "status 404"
}

@test "414: a request line over http.max_request_line (8192)" {
    long=$(repeat 9000 a)
    run probe "send:GET /$long HTTP/1.1\r\nHost: x\r\n\r\n" response eof
    has_line "status 414"
    last_line_is eof
    assert_server_ok
}

@test "414 is sent before the line ends: a client cannot grow a request line forever" {
    long=$(repeat 9000 a)
    run probe "send:GET /$long" response eof
    has_line "status 414"
    assert_server_ok
}

@test "431: more than http.max_headers (64) header fields" {
    hdrs=""
    for i in $(seq 1 65); do hdrs="${hdrs}X-H$i: v\r\n"; done
    run probe "send:GET / HTTP/1.1\r\nHost: x\r\n$hdrs\r\n" response eof
    has_line "status 431"
    last_line_is eof
    assert_server_ok
}

@test "431: a request head over http.max_header_bytes (16384)" {
    v=$(repeat 1000 b)
    hdrs=""
    for i in $(seq 1 20); do hdrs="${hdrs}X-Big$i: $v\r\n"; done
    run probe "send:GET / HTTP/1.1\r\nHost: x\r\n$hdrs\r\n" response eof
    has_line "status 431"
    last_line_is eof
    assert_server_ok
}

@test "431 is sent before the head ends: a client cannot grow a head forever" {
    v=$(repeat 2000 c)
    hdrs=""
    for i in $(seq 1 10); do hdrs="${hdrs}X-Big$i: $v\r\n"; done
    run probe "send:GET / HTTP/1.1\r\nHost: x\r\n$hdrs" response eof
    has_line "status 431"
    assert_server_ok
}

@test "400: malformed request heads" {
    local bad=(
        'GARBAGE\r\n\r\n'
        'GET /\r\n\r\n'
        'GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n'
        'GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n'
        'GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n'
        'GET / HTTP/1.1\r\nHost: x\r\nName : v\r\n\r\n'
        'GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n'
        'GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n'
        'GET / FOO/1.1\r\n\r\n'
        '\x01\x02\x03\r\n\r\n'
    )
    for req in "${bad[@]}"; do
        run probe "send:$req" response eof
        has_line "status 400" || { echo "request: $req" >&2; return 1; }
        last_line_is eof || { echo "request: $req" >&2; return 1; }
    done
    assert_server_ok
}

@test "505: HTTP/2.0 in the request line" {
    run probe 'send:GET / HTTP/2.0\r\nHost: x\r\n\r\n' response
    has_line "status 505"
    assert_server_ok
}

@test "an HTTP/2 connection preface does not hurt the server" {
    run probe 'send:PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' response eof
    has_match '^status (400|505)$'
    assert_server_ok
}

@test "a client that disconnects in the middle of a request head does not hurt the server" {
    run probe 'send:GET /half HTTP/1.1\r\nHos'
    [ "$status" -eq 0 ]
    assert_server_ok
}

@test "curl sees the documented status codes" {
    [ "$(http_status /nothing-here)" = 404 ]
    [ "$(http_status / -X POST -d x)" = 405 ]
    [ "$(http_status /)" = 426 ]
    [ "$(http_status / --http1.0)" = 426 ]
}

# --- Host, request-target forms, OPTIONS, HTTP/1.0 keep-alive (RFC 9112 3.2, 9110 9.3.7) ---

@test "400: an HTTP/1.1 request without Host (RFC 9112 3.2)" {
    run probe 'send:GET /livez HTTP/1.1\r\n\r\n' response eof
    has_line "status 400"
    has_match '^body .*missing Host'
    last_line_is eof
    run probe 'send:GET /livez HTTP/1.1\r\nHost: x\r\n\r\n' response
    has_line "status 200"
}

@test "400: a Host that is not host[:port] (RFC 9112 3.2, RFC 3986 3.2.2)" {
    local bad=('[::1' '::1' 'a b' 'x:y' 'user@x' 'x/y' '[::g]' '[::1]x' 'x:80:80' '%zz')
    local h
    for h in "${bad[@]}"; do
        run probe "send:GET /livez HTTP/1.1\r\nHost: $h\r\n\r\n" response eof
        has_line "status 400" || { echo "Host: $h" >&2; return 1; }
        has_match '^body .*invalid Host' || { echo "Host: $h" >&2; return 1; }
    done
    for h in 'example.com' 'example.com:8081' '127.0.0.1:1' '[::1]' '[::1]:8081' \
        '[v7.x:y]' 'a-b_c~d.e%41' ''; do
        run probe "send:GET /livez HTTP/1.1\r\nHost: $h\r\n\r\n" response
        has_line "status 200" || { echo "Host: $h" >&2; return 1; }
    done
    assert_server_ok
}

@test "400: two Host header fields, even with the same value" {
    run probe 'send:GET /livez HTTP/1.1\r\nHost: x\r\nhost: x\r\n\r\n' response eof
    has_line "status 400"
    has_match '^body .*more than one Host'
}

@test "HTTP/1.0 without Host is served" {
    run probe 'send:GET /livez HTTP/1.0\r\n\r\n' response eof
    has_line "status 200"
    has_line "body 3 ok\n"
}

@test "absolute-form: GET http://127.0.0.1:PORT/livez is routed by its path; its authority replaces Host (RFC 9112 3.2.2)" {
    run probe "send:GET http://127.0.0.1:$LH_PORT/livez HTTP/1.1\r\nHost: 127.0.0.1:$LH_PORT\r\n\r\n" response
    has_line "status 200"
    has_line "body 3 ok\n"
    run probe "send:GET HTTP://localhost/readyz?verbose HTTP/1.1\r\nHost: elsewhere\r\n\r\n" response
    has_match '^status (200|503)$'
    has_match '^body .*accepting'
    # An empty path is "/": the WebSocket path, without Upgrade.
    run probe "send:GET http://127.0.0.1:$LH_PORT HTTP/1.1\r\nHost: x\r\n\r\n" response
    has_line "status 426"
    run probe "send:GET http://127.0.0.1:$LH_PORT/no/such HTTP/1.1\r\nHost: x\r\n\r\n" response
    has_line "status 404"
    # Still HTTP/1.1: Host is required; and the authority must be a valid host, without
    # userinfo, of an http or https URI.
    local bad=("http://127.0.0.1:$LH_PORT/livez HTTP/1.1\r\n"
        "http://[::1/livez HTTP/1.1\r\nHost: x\r\n"
        "http://u@127.0.0.1/livez HTTP/1.1\r\nHost: x\r\n"
        "ftp://127.0.0.1/livez HTTP/1.1\r\nHost: x\r\n"
        "http:/livez HTTP/1.1\r\nHost: x\r\n"
        "livez HTTP/1.1\r\nHost: x\r\n")
    local t
    for t in "${bad[@]}"; do
        run probe "send:GET $t\r\n" response eof
        has_line "status 400" || { echo "target: $t" >&2; return 1; }
    done
    assert_server_ok
}

@test "absolute-form: a WebSocket upgrade to http://127.0.0.1:PORT/echo opens /echo" {
    run probe "upgrade:http://127.0.0.1:$LH_PORT/echo" 'text:abs' echo
    has_line "status 101"
    has_line "echo ok text 3"
}

@test "OPTIONS * gets 200 with Allow listing the server's methods (RFC 9110 9.3.7)" {
    run probe 'send:OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n' response \
        'send:GET /livez HTTP/1.1\r\nHost: x\r\n\r\n' response
    [ "$(printf '%s\n' "${lines[@]}" | grep '^status ')" = "$(printf 'status 200\nstatus 200')" ]
    has_line "header allow: GET, HEAD, POST, OPTIONS"
    has_line "header content-length: 0"
    # The asterisk-form is for OPTIONS only (RFC 9112 3.2.4).
    run probe 'send:GET * HTTP/1.1\r\nHost: x\r\n\r\n' response eof
    has_line "status 400"
}

@test "OPTIONS on a path answers that path's Allow, or 404" {
    run probe 'send:OPTIONS /publish HTTP/1.1\r\nHost: x\r\n\r\n' response
    has_line "status 200"
    has_line "header allow: POST, OPTIONS"
    run probe 'send:OPTIONS /echo HTTP/1.1\r\nHost: x\r\n\r\n' response
    has_line "status 200"
    has_line "header allow: GET, OPTIONS"
    run probe 'send:OPTIONS /livez HTTP/1.1\r\nHost: x\r\n\r\n' response
    has_line "status 200"
    has_line "header allow: GET, HEAD, OPTIONS"
    run probe 'send:OPTIONS /no/such HTTP/1.1\r\nHost: x\r\n\r\n' response
    has_line "status 404"
}

@test "HTTP/1.0 with Connection: keep-alive: the answer says keep-alive and a second request is answered" {
    run probe 'send:GET /livez HTTP/1.0\r\nConnection: keep-alive\r\n\r\n' response \
        'send:GET /no/such HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n' response \
        'send:GET /livez HTTP/1.0\r\n\r\n' response eof
    [ "$(printf '%s\n' "${lines[@]}" | grep '^status ')" = "$(printf 'status 200\nstatus 404\nstatus 200')" ]
    [ "$(printf '%s\n' "${lines[@]}" | grep -c '^header connection: keep-alive$')" -eq 2 ]
    has_line "header connection: close"
    last_line_is eof
    # HTTP/1.1 keeps the connection without saying so.
    run probe 'send:GET /livez HTTP/1.1\r\nHost: x\r\n\r\n' response
    no_match '^header connection:'
}
