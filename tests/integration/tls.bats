#!/usr/bin/env bats
# TLS (issue 19): https:// and wss:// served by lhttpd itself. A test CA and server
# certificates are made at test time with `openssl req` (no key is committed); clients
# are curl, openssl s_client and python's ssl (tlsclient.py), none of them lhttpd's own.
# Every bad input closes only its own connection and is counted.

load ../lib/helpers

TLSC=$LH_LIB/tlsclient.py
LHTTPC=${LHTTPC:-${B:-$LH_LIB/../../build}/lhttpc}
B=${B:-$LH_LIB/../../build}

# mkcert NAME CN [SAN]: a key and a certificate signed by the test CA in $CERTS.
mkcert() {
    local n=$1 cn=$2 san=${3:-DNS:$2}
    openssl req -newkey rsa:2048 -nodes -keyout "$CERTS/$n.key" -out "$CERTS/$n.csr" \
        -subj "/CN=$cn" 2>/dev/null
    printf 'subjectAltName=%s\n' "$san" >"$CERTS/$n.ext"
    openssl x509 -req -in "$CERTS/$n.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" \
        -CAcreateserial -out "$CERTS/$n.pem" -days "${DAYS:-365}" -extfile "$CERTS/$n.ext" 2>/dev/null
}

setup_file() {
    CERTS=$BATS_FILE_TMPDIR/certs
    mkdir -p "$CERTS"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$CERTS/ca.key" -out "$CERTS/ca.pem" \
        -days 30 -subj "/CN=lhttpd test CA" 2>/dev/null
    mkcert srv localhost 'DNS:localhost,IP:127.0.0.1'
    mkcert srv2 localhost 'DNS:localhost,IP:127.0.0.1'
    mkcert other other.test 'DNS:other.test,DNS:*.other.test'
    DAYS=10 mkcert soon soon.test
    export CERTS
}

setup() {
    T=$BATS_TEST_TMPDIR
}

teardown() {
    stop_all
}

# start_tls [TLS_EXTRA [TOP_EXTRA]]: lhttpd with a plain listener (LH_PORT) and a TLS one
# (TLS_PORT) whose tls is cert_file/key_file (copies in $T, so a test may swap them) plus
# TLS_EXTRA members; /echo is an echo path.
start_tls() {
    cp "$CERTS/srv.pem" "$T/cert.pem"
    cp "$CERTS/srv.key" "$T/key.pem"
    TLS_PORT=$(free_port) || return 1
    LH_PORTS_TAKEN="$LH_PORTS_TAKEN $TLS_PORT"
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@", {"address": "127.0.0.1:'"$TLS_PORT"'", "tls": {
            "cert_file": "'"$T"'/cert.pem", "key_file": "'"$T"'/key.pem"'"${1:+, $1}"'}}],
        "workers": 2,
        "limits": {"handshake_timeout_ms": 1000},
        "websocket": {"echo_paths": ["/echo"], "close_timeout_ms": 1000},
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]}'"${2:+, $2}"'
    }' || return 1
    wait_for 10 https_ok
}

# https_ok: the TLS port answers an https request (any status: /livez may be the admin
# socket's).
https_ok() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$CERTS/ca.pem" \
        "https://localhost:$TLS_PORT/livez")
    [ "$code" != 000 ]
}

metric() { "$PY" "$LH_LIB/promscrape.py" value "http://127.0.0.1:$LH_PORT/metrics" "$1"; }
metric_is() { local v; v=$(metric "$1" 2>/dev/null) && [ "$v" = "$2" ]; }
metric_ge() { local v; v=$(metric "$1" 2>/dev/null) && [ "$v" -ge "$2" ]; }
hs() { metric "lhttpd_tls_handshakes_total{result=\"$1\",version=\"${2:-}\"}"; }
wait_hs() { wait_for 5 metric_is "lhttpd_tls_handshakes_total{result=\"$1\",version=\"${3:-}\"}" "$2" || { echo "handshakes $1: $(hs "$1" "${3:-}"), expected $2" >&2; return 1; }; }

# rawtcp PORT [HOLD_S [stall]]: sends stdin to 127.0.0.1:PORT, keeps the connection open
# HOLD_S seconds more (default 0), half-closes (not with "stall"), then prints what came
# back until EOF (10 s at most).
rawtcp() {
    "$PY" -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(sys.stdin.buffer.read())
time.sleep(float(sys.argv[2]))
if sys.argv[3] != "stall":
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
out = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except OSError:
    pass
sys.stdout.write(out.decode("latin-1"))
' "$1" "${2:-0}" "${3:-}"
}

# server_whole: the master is alive, and no worker crashed (reloads replace workers).
server_whole() {
    lh_alive "$LH_PID" || { echo "lhttpd is gone" >&2; return 1; }
    if grep -E 'AddressSanitizer|runtime error:|Segmentation fault|core dumped|signal Segm|signal Abort|exit status [1-9]' "$LH_LOG" >&2; then
        return 1
    fi
}

# serial_of HOST [S_CLIENT_ARGS...]: the serial of the certificate the TLS port serves.
serial_of() {
    local host=$1
    shift
    openssl s_client -connect "127.0.0.1:$TLS_PORT" -servername "$host" -CAfile "$CERTS/ca.pem" \
        "$@" </dev/null 2>/dev/null | openssl x509 -noout -serial | cut -d= -f2
}
serial_file() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }

@test "https: curl --cacert to /livez, /metrics and /publish; a wss subscriber gets the publish" {
    start_tls
    run curl -s --max-time 5 --cacert "$CERTS/ca.pem" "https://localhost:$TLS_PORT/metrics"
    [ "$status" -eq 0 ]
    [[ "$output" == *'lhttpd_tls_handshakes_total{result="ok",version="TLSv1.3"}'* ]]
    [[ "$output" == *"lhttpd_tls_certificate_expiry_seconds{file=\"$T/cert.pem\"}"* ]]
    # The expiry is the certificate's notAfter.
    want=$(date -d "$(openssl x509 -in "$T/cert.pem" -noout -enddate | cut -d= -f2)" +%s)
    [ "$(metric "lhttpd_tls_certificate_expiry_seconds{file=\"$T/cert.pem\"}")" = "$want" ]
    # ALPN: http/1.1.
    run sh -c "openssl s_client -connect 127.0.0.1:$TLS_PORT -alpn h2,http/1.1 -CAfile $CERTS/ca.pem </dev/null 2>/dev/null"
    [[ "$output" == *"ALPN protocol: http/1.1"* ]]
    [[ "$output" == *"Verify return code: 0 (ok)"* ]]

    "$PY" "$TLSC" --ca "$CERTS/ca.pem" "wss://localhost:$TLS_PORT/" sub:news print:ready \
        await:"$T/go" recv >"$T/sub.out" 2>&1 &
    lh_record $!
    wait_for 10 grep -q '^ready$' "$T/sub.out"
    grep -q '^connected TLSv1.3 ' "$T/sub.out"
    printf 'LHTTP/1.0 news\r\npublish:news\r\n\r\nhello over tls' >"$T/body"
    run curl -s --max-time 5 -o /dev/null -w '%{http_code}' --cacert "$CERTS/ca.pem" \
        --data-binary @"$T/body" "https://localhost:$TLS_PORT/publish"
    [ "$output" = 200 ]
    touch "$T/go"
    wait_for 10 grep -q '^got .*hello over tls' "$T/sub.out"
    # A big echo through the TLS send path (many records, partial sends).
    head -c 300000 /dev/urandom | base64 -w0 >"$T/big"
    run "$PY" "$LH_LIB/wsclient.py" --timeout 10 "ws://127.0.0.1:$LH_PORT/echo" text:str:x echo
    [[ "$output" == *"echo ok"* ]]
    run "$PY" "$TLSC" --ca "$CERTS/ca.pem" "wss://localhost:$TLS_PORT/echo" \
        file:"$T/big" echo:"$T/big" file:"$T/big" file:"$T/big" echo:"$T/big" echo:"$T/big"
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = "echo ok 400000" ]
    [ "${lines[3]}" = "echo ok 400000" ]
}

@test "TLS 1.2 and min_version 1.3; resumption with a ticket across workers" {
    start_tls
    run sh -c "openssl s_client -connect 127.0.0.1:$TLS_PORT -tls1_2 -CAfile $CERTS/ca.pem </dev/null 2>/dev/null"
    [[ "$output" == *"Protocol  : TLSv1.2"* ]]
    wait_hs ok 1 TLSv1.2
    # Resumed: the session of the first connection, whichever worker takes the second.
    openssl s_client -connect "127.0.0.1:$TLS_PORT" -sess_out "$T/sess" -CAfile "$CERTS/ca.pem" \
        -ign_eof <<<"" >/dev/null 2>&1 || true
    [ -s "$T/sess" ]
    for i in 1 2 3 4; do
        run sh -c "openssl s_client -connect 127.0.0.1:$TLS_PORT -sess_in $T/sess -CAfile $CERTS/ca.pem </dev/null 2>/dev/null"
        [[ "$output" == *"Reused, TLSv1.3"* ]]
    done
    wait_hs resumed 4 TLSv1.3
    stop_all
    start_tls '"min_version": "1.3"'
    run sh -c "openssl s_client -connect 127.0.0.1:$TLS_PORT -tls1_2 -CAfile $CERTS/ca.pem </dev/null 2>&1"
    [[ "$output" == *"alert protocol version"* ]]
    wait_hs failed 1
    https_ok
}

@test "SNI: the certificate that names the host; unknown names get the default or, strict, a refusal" {
    start_tls '"certificates": [{"cert_file": "'"$CERTS"'/other.pem", "key_file": "'"$CERTS"'/other.key"}]'
    [ "$(serial_of localhost)" = "$(serial_file "$CERTS/srv.pem")" ]
    [ "$(serial_of other.test)" = "$(serial_file "$CERTS/other.pem")" ]
    [ "$(serial_of a.other.test)" = "$(serial_file "$CERTS/other.pem")" ]
    [ "$(serial_of unknown.example)" = "$(serial_file "$CERTS/srv.pem")" ]
    run curl -s --max-time 5 --cacert "$CERTS/ca.pem" --resolve "x.other.test:$TLS_PORT:127.0.0.1" \
        "https://x.other.test:$TLS_PORT/livez"
    [ "$output" = ok ]
    stop_all
    start_tls '"sni_strict": true, "certificates": [{"cert_file": "'"$CERTS"'/other.pem", "key_file": "'"$CERTS"'/other.key"}]'
    [ "$(serial_of other.test)" = "$(serial_file "$CERTS/other.pem")" ]
    run sh -c "openssl s_client -connect 127.0.0.1:$TLS_PORT -servername unknown.example </dev/null 2>&1"
    [[ "$output" == *"unrecognized name"* ]]
    wait_hs sni_refused 1
    https_ok
}

@test "bad input: plain HTTP on the TLS port, a TLS hello on the plain port, garbage, oversized records, a stall, renegotiation" {
    start_tls
    # Plain HTTP on the TLS port: a 400 in plain text, then the close.
    run curl -s -i --max-time 5 "http://127.0.0.1:$TLS_PORT/livez"
    [[ "$output" == "HTTP/1.1 400 Bad Request"* ]]
    [[ "$output" == *"This port speaks TLS: use https:// or wss://."* ]]
    wait_hs http_request 1
    # A TLS hello on the plain port: a 400 in plain text, counted.
    run sh -c "openssl s_client -connect 127.0.0.1:$LH_PORT </dev/null 2>&1"
    [ "$status" -ne 0 ]
    run rawtcp "$LH_PORT" < <(printf '\026\003\001\000\005hello')
    [[ "$output" == "HTTP/1.1 400 Bad Request"* ]]
    [[ "$output" == *"This port speaks plain HTTP"* ]]
    wait_for 5 metric_ge 'lhttpd_tls_handshakes_total{result="plain_port",version=""}' 2
    # Garbage, a record header announcing 65535 bytes (over the 16 KiB + overhead limit),
    # and a truncated ClientHello followed by EOF.
    { printf '\026\003\001\000\200'; head -c 2000 /dev/urandom; } | rawtcp "$TLS_PORT" >/dev/null
    { printf '\026\003\001\377\377'; head -c 100 /dev/zero; } | rawtcp "$TLS_PORT" >/dev/null
    wait_for 5 metric_ge 'lhttpd_tls_handshakes_total{result="failed",version=""}' 2
    printf '\026\003\001\002\000\001\000\001\374\003\003' | rawtcp "$TLS_PORT" >/dev/null
    wait_for 5 metric_ge 'lhttpd_tls_handshakes_total{result="eof",version=""}' 1
    # A client that stops mid-handshake is cut at limits.handshake_timeout_ms (1 s).
    start=$(date +%s%N)
    printf '\026\003\001\002\000\001\000\001\374\003\003' | rawtcp "$TLS_PORT" 0 stall >/dev/null
    ms=$((($(date +%s%N) - start) / 1000000))
    [ "$ms" -ge 900 ]
    [ "$ms" -lt 4000 ]
    wait_hs timeout 1
    # Renegotiation (TLS 1.2, s_client's "R"): refused, the connection closed and counted.
    run sh -c "(sleep 1; echo R; sleep 2) | timeout 8 openssl s_client -connect 127.0.0.1:$TLS_PORT -tls1_2 -CAfile $CERTS/ca.pem 2>&1"
    [[ "$output" == *"RENEGOTIATING"* ]]
    wait_for 5 metric_is 'lhttpd_tls_errors_total{reason="renegotiation"}' 1
    # None of it cost anyone else: a new client is served, over TLS and plain.
    https_ok
    run curl -s --max-time 5 "http://127.0.0.1:$LH_PORT/livez"
    [ "$output" = ok ]
    server_whole
}

@test "a wss client keeps its connection through bad connections next to it" {
    start_tls
    "$PY" "$TLSC" --ca "$CERTS/ca.pem" "wss://localhost:$TLS_PORT/" sub:keep print:ready \
        await:"$T/go" recv >"$T/sub.out" 2>&1 &
    lh_record $!
    wait_for 10 grep -q '^ready$' "$T/sub.out"
    for i in $(seq 20); do
        { printf '\026\003\003\001\000'; head -c 3000 /dev/urandom; } | rawtcp "$TLS_PORT" >/dev/null
    done
    printf 'LHTTP/1.0 m\r\npublish:keep\r\n\r\nstill here' >"$T/body"
    run curl -s --max-time 5 -o /dev/null -w '%{http_code}' --data-binary @"$T/body" \
        "http://127.0.0.1:$LH_PORT/publish"
    [ "$output" = 200 ]
    touch "$T/go"
    wait_for 10 grep -q '^got .*still here' "$T/sub.out"
}

@test "reload: new connections get the new certificate, an open one keeps its session; a bad key fails the reload" {
    start_tls
    old=$(serial_file "$CERTS/srv.pem")
    new=$(serial_file "$CERTS/srv2.pem")
    [ "$(serial_of localhost)" = "$old" ]
    "$PY" "$TLSC" --ca "$CERTS/ca.pem" "wss://localhost:$TLS_PORT/" sub:rl print:ready \
        await:"$T/go" recv >"$T/sub.out" 2>&1 &
    lh_record $!
    wait_for 10 grep -q '^ready$' "$T/sub.out"
    cp "$CERTS/srv2.pem" "$T/cert.pem"
    cp "$CERTS/srv2.key" "$T/key.pem"
    run "$LHTTPD" -c "$LH_CONF" -s reload
    [ "$status" -eq 0 ]
    [ "$(serial_of localhost)" = "$new" ]
    grep -q "^connected TLSv1.3 $old\$" "$T/sub.out"
    printf 'LHTTP/1.0 m\r\npublish:rl\r\n\r\nafter reload' >"$T/body"
    run curl -s --max-time 5 -o /dev/null -w '%{http_code}' --cacert "$CERTS/ca.pem" \
        --data-binary @"$T/body" "https://localhost:$TLS_PORT/publish"
    [ "$output" = 200 ]
    touch "$T/go"
    wait_for 10 grep -q '^got .*after reload' "$T/sub.out"
    # A key that does not match: the reload fails with the reason, the old one serves.
    cp "$CERTS/other.key" "$T/key.pem"
    run "$LHTTPD" -c "$LH_CONF" -s reload
    [ "$status" -ne 0 ]
    [[ "$output" == *"does not match"* ]]
    run "$LHTTPD" -c "$LH_CONF" -t
    [ "$status" -ne 0 ]
    [[ "$output" == *"key_file $T/key.pem does not match cert_file $T/cert.pem"* ]]
    [ "$(serial_of localhost)" = "$new" ]
    rm "$T/key.pem"
    run "$LHTTPD" -c "$LH_CONF" -s reload
    [ "$status" -ne 0 ]
    [[ "$output" == *"$T/key.pem"* ]]
    [ "$(serial_of localhost)" = "$new" ]
    server_whole
}

@test "lhttpd -t checks the certificates; one near expiry is logged" {
    cat >"$T/c.json" <<EOF
{"listen": [{"address": "127.0.0.1:1", "tls": {"cert_file": "$CERTS/soon.pem", "key_file": "$CERTS/soon.key"}}],
 "control_socket": "$T/ctl.sock"}
EOF
    run "$LHTTPD" -t -c "$T/c.json"
    [ "$status" -eq 0 ]
    [[ "$output" == *"certificate $CERTS/soon.pem expires in "*" days"* ]]
    sed -i "s|soon.key|nothere.key|" "$T/c.json"
    run "$LHTTPD" -t -c "$T/c.json"
    [ "$status" -ne 0 ]
    [[ "$output" == *"key_file $CERTS/nothere.key"* ]]
    sed -i "s|\"key_file\": \"[^\"]*\"|\"key_file\": \"$CERTS/soon.key\", \"ciphers\": \"NOPE\"|" "$T/c.json"
    run "$LHTTPD" -t -c "$T/c.json"
    [ "$status" -ne 0 ]
    [[ "$output" == *'ciphers "NOPE"'* ]]
}

@test "the admin listener stays plain unless its entry has tls" {
    ADMIN_PORT=$(free_port)
    LH_PORTS_TAKEN="$LH_PORTS_TAKEN $ADMIN_PORT"
    start_tls '' '"admin": {"listen": [{"address": "127.0.0.1:'"$ADMIN_PORT"'", "tls": {"cert_file": "'"$CERTS"'/srv.pem", "key_file": "'"$CERTS"'/srv.key"}}]}'
    run curl -s --max-time 5 --cacert "$CERTS/ca.pem" "https://localhost:$ADMIN_PORT/metrics"
    [[ "$output" == *"lhttpd_tls_handshakes_total"* ]]
    run curl -s -i --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics"
    [[ "$output" == "HTTP/1.1 400 Bad Request"* ]]
}

@test "lhttpc: wss:// and https:// with --cacert, --insecure, and verification by default" {
    start_tls
    "$LHTTPC" --cacert "$CERTS/ca.pem" "wss://localhost:$TLS_PORT/" subscribe room >"$T/sub.out" 2>"$T/sub.err" &
    lh_record $!
    # Subscribed once a publish over wss reaches it; the second message comes by https.
    wait_for 10 sh -c "'$LHTTPC' --cacert '$CERTS/ca.pem' wss://localhost:$TLS_PORT/ publish room -d 'over wss' >/dev/null 2>&1 && grep -q 'over wss' '$T/sub.out'"
    run "$LHTTPC" --cacert "$CERTS/ca.pem" --http "https://localhost:$TLS_PORT/publish" publish room -d 'over https'
    [ "$status" -eq 0 ]
    wait_for 10 grep -q 'over https' "$T/sub.out"
    # Verified by default, against the host (an IP address is checked as one).
    run "$LHTTPC" -q "wss://localhost:$TLS_PORT/" publish room -d x
    [ "$status" -eq 1 ]
    has_match 'certificate verify failed'
    run "$LHTTPC" -q --http "https://localhost:$TLS_PORT/publish" publish room -d x
    [ "$status" -eq 1 ]
    run "$LHTTPC" -q --cacert "$CERTS/ca.pem" "wss://127.0.0.1:$TLS_PORT/" publish room -d x
    [ "$status" -eq 0 ]
    run "$LHTTPC" -q -k "wss://127.0.0.1:$TLS_PORT/" publish room -d x
    [ "$status" -eq 0 ]
    run "$LHTTPC" -q --insecure --http "https://127.0.0.1:$TLS_PORT/publish" publish room -d x
    [ "$status" -eq 0 ]
    # A large message both ways through TLS (many records, partial writes).
    head -c 600000 /dev/urandom | base64 -w0 >"$T/big"
    run sh -c "'$LHTTPC' --cacert '$CERTS/ca.pem' --raw wss://localhost:$TLS_PORT/echo <'$T/big' | head -c 800000 | cmp - '$T/big'"
    [ "$status" -eq 0 ]
}

@test "the JavaScript SDK over wss:// in Node (ws, wsOptions.ca); without the CA it fails" {
    command -v node >/dev/null || { echo "node is not installed" >&2; return 1; }
    start_tls
    run timeout 20 node "$LH_LIB/sdk-wss.mjs" "wss://localhost:$TLS_PORT/" "$CERTS/ca.pem"
    [ "$status" -eq 0 ]
    [ "$output" = "received over wss" ]
    run timeout 20 node "$LH_LIB/sdk-wss.mjs" "wss://localhost:$TLS_PORT/" "$CERTS/other.pem"
    [ "$status" -eq 1 ]
    [[ "$output" == failed* ]]
}

@test "lhttp-bench over wss:// and https://: every delivery arrives; --tls-resume resumes" {
    start_tls
    run timeout 60 "$B/lhttp-bench" -q -u "wss://127.0.0.1:$TLS_PORT/" -p "https://127.0.0.1:$TLS_PORT/publish" \
        -n 50 -m 200 --tls-resume --conc 1
    [ "$status" -eq 0 ]
    [[ "${lines[-1]}" == *" delivered=10000 "* ]]
    [[ "${lines[-1]}" == *" complete=1"* ]]
    wait_for 5 metric_ge 'lhttpd_tls_handshakes_total{result="resumed",version="TLSv1.3"}' 40
}

# workers_rss_kb: the resident memory of lhttpd's workers, summed, in KiB.
workers_rss_kb() {
    local p sum=0 kb
    for p in $(lh_descendants "$LH_PID"); do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
        sum=$((sum + ${kb:-0}))
    done
    echo "$sum"
}

@test "a client that requests KeyUpdates and never reads: the worker stops reading it, its memory stays bounded, others are served" {
    # Under AddressSanitizer freed memory waits in a quarantine (256 MiB) before reuse,
    # which the resident size would count: a small one for this server.
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1" start_tls
    before=$(workers_rss_kb)
    mkfifo "$T/hold"
    "$PY" "$LH_LIB/tlskeyupdate.py" "$TLS_PORT" /echo 16 2 <"$T/hold" >"$T/ku.out" 2>&1 &
    lh_record $!
    exec 7>"$T/hold"
    wait_for 60 grep -q '^sent ' "$T/ku.out"
    cat "$T/ku.out"
    after=$(workers_rss_kb)
    echo "workers' RSS: $before KiB before, $after KiB with the client's answers unread"
    # Each KeyUpdate obliges the server to answer with one; unread, the answers stay in the
    # kernel's buffers and, at most, 256 KiB of ciphertext in the worker: the worker stops
    # reading from this client (the client stalls) instead of growing without bound.
    grep -q '^sent [0-9]* stalled$' "$T/ku.out"
    [ $((after - before)) -lt 8192 ]
    # Meanwhile others are served, over TLS and plain.
    https_ok
    run curl -s --max-time 5 "http://127.0.0.1:$LH_PORT/livez"
    [ "$output" = ok ]
    exec 7>&-
    server_whole
}

@test "a draining worker takes a later reload's rules even when its certificate pair is mid-renewal" {
    start_tls '' '"namespaces": {"room": {"subscribe": "any"}, "news": {"subscribe": "any"}}'
    gen1=$(lh_descendants "$LH_PID")
    "$PY" "$TLSC" --ca "$CERTS/ca.pem" "wss://localhost:$TLS_PORT/" sub:room.a print:ready \
        recv >"$T/sub.out" 2>&1 &
    lh_record $!
    wait_for 10 grep -q '^ready$' "$T/sub.out"
    # The first reload changes nothing the subscription depends on: generation 1 drains.
    sed -i 's/"news": {"subscribe": "any"}/"news": {"subscribe": "any", "publish": "none"}/' "$LH_CONF"
    run "$LHTTPD" -c "$LH_CONF" -s reload
    [ "$status" -eq 0 ]
    wait_log 'draining 1 connections' 5
    # The worker without the connection leaves at once; the other drains.
    alive_of_gen1() { held=; for p in $gen1; do lh_alive "$p" && held="$held $p"; done; [ "$(echo $held | wc -w)" = 1 ]; }
    wait_for 10 alive_of_gen1
    # The second closes room to anonymous users. The master checks the whole file, then
    # tells the draining workers, which are held (SIGSTOP) until the key file has been
    # swapped for one that does not match: a renewal caught between its two files.
    kill -STOP $held
    sed -i 's/"room": {"subscribe": "any"}/"room": {"subscribe": "authenticated"}/' "$LH_CONF"
    run "$LHTTPD" -c "$LH_CONF" -s reload
    cp "$CERTS/other.key" "$T/key.pem"
    kill -CONT $held
    [ "$status" -eq 0 ]
    # Nothing in the rules depends on the certificates: the draining worker takes them
    # and ends the subscription the new rules forbid.
    wait_for 10 grep -q '^got LHTTP/1.0 unsubscribed\\r\\nchannel:room.a' "$T/sub.out"
    run ! log_has 'keeping the old identity and namespace rules'
    server_whole
}
