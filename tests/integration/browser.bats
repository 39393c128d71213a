#!/usr/bin/env bats
# The chat demo in a real browser: lhttpd serves clients/chat plus the SDK from
# static.root, and tests/e2e/chat.mjs drives two headless Chromium pages through it
# (join a room, talk both ways, survive `lhttpd -s reload`, keep talking). A second
# lhttpd serves the demo with identity as `make run` does (tests/lib/demo-identity.py:
# an auth key, the chat and team namespaces, demo users' tokens in demo-tokens.js), and
# chat.mjs (LH_SCENARIO=auth) signs users in: server-stamped names, the private room
# refused to an outsider, and history (chat.* keeps it, in the JetStream of the
# nats-server both servers share): a page cut off while another talks shows, once back,
# what it missed, once and in order; a page opened last shows the room's last messages.
# Screenshots land in $LH_TEST_OUT/browser/.
#
# Needs Debian's chromium, node, and `npm ci` in tests/e2e (playwright-core); see
# tests/lib/deps.sh.

load ../lib/helpers

TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)

# start_nats_js: a nats-server with JetStream (its store in the file's temporary
# directory) on a free port, recorded for stop_all; sets NATS_PORT for start_lhttpd.
start_nats_js() {
    local port log try
    for try in 1 2 3 4 5; do
        port=$(free_port) || return 1
        LH_PORTS_TAKEN="$LH_PORTS_TAKEN $port"
        log=$(lh_tmp)/nats-js-$port.log
        nats-server -a 127.0.0.1 -p "$port" -js -sd "$(lh_tmp)/jetstream-$port" >"$log" 2>&1 3>&- &
        NATS_PID=$!
        lh_record "$NATS_PID"
        if wait_for 5 listening_by "$port" "$NATS_PID"; then
            NATS_PORT=$port
            export NATS_PORT NATS_PID LH_PORTS_TAKEN
            return 0
        fi
        lh_stop_pid "$NATS_PID"
        grep -qi 'address already in use' "$log" || { cat "$log" >&2; return 1; }
    done
    return 1
}

# streams_ready LOG N: N workers of that log have the chat namespace's stream.
streams_ready() { [ "$(grep -c 'JetStream: stream LHTTP_chat ready' "$1")" -ge "$2" ]; }

setup_file() {
    T=$(lh_tmp)
    start_nats_js
    # The demo's web root: the page and the SDK side by side, as `make run` serves them.
    export WWW=$T/www
    mkdir -p "$WWW"
    cp "$TOP"/clients/chat/*.html "$TOP"/clients/chat/*.js "$TOP"/clients/chat/*.css \
        "$TOP/clients/js/lhttp.js" "$WWW/"
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 2,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "control_socket": "'"$T"'/ctl.sock",
        "drain_timeout_ms": 500,
        "handoff": {"enabled": false},
        "static": {"root": "'"$WWW"'"}
    }'
    export PLAIN_PORT=$LH_PORT PLAIN_CONF=$LH_CONF PLAIN_LOG=$LH_LOG
    # The demo with identity, in a web root of its own.
    export WWW_AUTH=$T/www-auth
    mkdir -p "$WWW_AUTH"
    cp "$WWW"/* "$WWW_AUTH/"
    local keys
    keys=$("$PY" "$TOP/tests/lib/demo-identity.py" identity "$T/identity" "$WWW_AUTH") || return 1
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 2,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "static": {"root": "'"$WWW_AUTH"'"},
        '"${keys:1:${#keys}-2}"'
    }'
    export AUTH_PORT=$LH_PORT AUTH_LOG=$LH_LOG
    # Both workers have the chat namespace's stream before the pages publish there.
    wait_for 10 streams_ready "$AUTH_LOG" 2
    export LH_PORT=$PLAIN_PORT LH_CONF=$PLAIN_CONF LH_LOG=$PLAIN_LOG
}

teardown_file() { stop_all; }

# A server a test starts for itself (the https one) is stopped with that test: its pid is
# recorded in the test's own environment, which teardown_file does not see.
teardown() {
    if [ -n "${TEST_LH_PID:-}" ]; then lh_stop_pid "$TEST_LH_PID"; fi
}

@test "browser: lhttpd serves the chat page, its script and the SDK" {
    run curl -s --max-time 5 -D - "http://127.0.0.1:$LH_PORT/"
    [[ $output == "HTTP/1.1 200 "* ]] || { lh_show_output || :; return 1; }
    has_match '^Content-Type: text/html; charset=utf-8'
    has_match '<title>lhttpd chat</title>'
    has_match 'src="chat.js"'
    for f in chat.js lhttp.js demo-tokens.js; do
        run curl -s --max-time 5 -o /dev/null -w '%{http_code} %{content_type}' "http://127.0.0.1:$LH_PORT/$f"
        [ "$output" = "200 text/javascript; charset=utf-8" ] || { echo "$f: $output" >&2; return 1; }
    done
    [ "$(curl -s -o /dev/null -w '%{content_type}' "http://127.0.0.1:$LH_PORT/style.css")" = "text/css; charset=utf-8" ]
}

@test "browser: two Chromium pages chat, survive a reload and keep chatting" {
    local chromium=${CHROMIUM:-/usr/bin/chromium}
    [ -x "$chromium" ] || { echo "no browser at $chromium: apt-get install chromium" >&2; return 1; }
    [ -d "$TOP/tests/e2e/node_modules/playwright-core" ] ||
        { echo "playwright-core is missing: npm ci --prefix tests/e2e" >&2; return 1; }
    rm -f "$LH_TEST_OUT/browser/chat-ann.png" "$LH_TEST_OUT/browser/chat-bob.png"
    run timeout 90 env LH_BASE="http://127.0.0.1:$LH_PORT" LHTTPD="$LHTTPD" LH_CONF="$LH_CONF" \
        LH_WWW="$WWW" LH_TEST_OUT="${LH_TEST_OUT:-$(lh_tmp)}" CHROMIUM="$chromium" \
        node "$TOP/tests/e2e/chat.mjs"
    [ "$status" -eq 0 ] || { lh_show_output || :; tail -n 30 "$LH_LOG" >&2; return 1; }
    has_line "e2e: all steps passed"
    if [ -n "${LH_TEST_OUT:-}" ]; then
        [ "$(head -c 4 "$LH_TEST_OUT/browser/chat-ann.png" | od -An -c | tr -d ' ')" = '211PNG' ]
        [ -s "$LH_TEST_OUT/browser/chat-bob.png" ]
    fi
}

@test "browser: with identity, server-stamped names, a private room; a page cut off gets what was said meanwhile, once, in order; history on join" {
    local chromium=${CHROMIUM:-/usr/bin/chromium}
    [ -x "$chromium" ] || { echo "no browser at $chromium: apt-get install chromium" >&2; return 1; }
    [ -d "$TOP/tests/e2e/node_modules/playwright-core" ] ||
        { echo "playwright-core is missing: npm ci --prefix tests/e2e" >&2; return 1; }
    # The tokens the page gets are the ones minted at setup.
    run curl -s --max-time 5 "http://127.0.0.1:$AUTH_PORT/demo-tokens.js"
    has_match '"user": "carol"'
    rm -f "$LH_TEST_OUT/browser/chat-alice.png" "$LH_TEST_OUT/browser/chat-carol.png"
    run timeout 90 env LH_BASE="http://127.0.0.1:$AUTH_PORT" LH_SCENARIO=auth \
        LH_TEST_OUT="${LH_TEST_OUT:-$(lh_tmp)}" CHROMIUM="$chromium" node "$TOP/tests/e2e/chat.mjs"
    [ "$status" -eq 0 ] || { lh_show_output || :; tail -n 30 "$AUTH_LOG" >&2; return 1; }
    has_line "e2e: all steps passed"
    has_match "^step: carol is refused #team.secret: .*403"
    has_line "step: the online list of #team.secret shows alice and bob on both pages"
    has_line "step: bob leaves #team.secret: alice's online list shows only alice"
    has_match "^step: bob's page, cut off while alice said 3 messages, shows each of them once, in order, once back$"
    has_match "^step: a page opened last shows #chat.lobby's 6 messages from its history, in order$"
    if [ -n "${LH_TEST_OUT:-}" ]; then
        [ "$(head -c 4 "$LH_TEST_OUT/browser/chat-alice.png" | od -An -c | tr -d ' ')" = '211PNG' ]
        [ -s "$LH_TEST_OUT/browser/chat-carol.png" ]
    fi
}

@test "browser: the chat over https:// with the test CA's certificate: refused untrusted, then two pages chat over wss://" {
    local chromium=${CHROMIUM:-/usr/bin/chromium} certs spki
    [ -x "$chromium" ] || { echo "no browser at $chromium: apt-get install chromium" >&2; return 1; }
    [ -d "$TOP/tests/e2e/node_modules/playwright-core" ] ||
        { echo "playwright-core is missing: npm ci --prefix tests/e2e" >&2; return 1; }
    # A test CA and a certificate it signs for 127.0.0.1 (made here; no key is committed).
    certs=$(lh_tmp)/certs
    mkdir -p "$certs"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$certs/ca.key" -out "$certs/ca.pem" \
        -days 2 -subj "/CN=lhttpd browser test CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout "$certs/srv.key" -out "$certs/srv.csr" \
        -subj /CN=127.0.0.1 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$certs/srv.ext"
    openssl x509 -req -in "$certs/srv.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" \
        -CAcreateserial -out "$certs/srv.pem" -days 2 -extfile "$certs/srv.ext" 2>/dev/null
    # Chromium trusts exactly this key: the base64 SHA-256 of its SubjectPublicKeyInfo.
    spki=$(openssl x509 -in "$certs/srv.pem" -noout -pubkey | openssl pkey -pubin -outform DER |
        openssl dgst -sha256 -binary | base64)
    local tls_port
    tls_port=$(free_port) || return 1
    LH_PORTS_TAKEN="$LH_PORTS_TAKEN $tls_port"
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@", {"address": "127.0.0.1:'"$tls_port"'", "tls": {
            "cert_file": "'"$certs"'/srv.pem", "key_file": "'"$certs"'/srv.key"}}],
        "workers": 2,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "static": {"root": "'"$WWW"'"}
    }' || return 1
    TEST_LH_PID=$LH_PID
    wait_for 10 curl -sf -o /dev/null --max-time 2 --cacert "$certs/ca.pem" "https://127.0.0.1:$tls_port/"
    rm -f "$LH_TEST_OUT/browser/chat-tls.png"
    run timeout 90 env LH_BASE="https://127.0.0.1:$tls_port" LH_SCENARIO=tls LH_SPKI="$spki" \
        LH_TEST_OUT="${LH_TEST_OUT:-$(lh_tmp)}" CHROMIUM="$chromium" node "$TOP/tests/e2e/chat.mjs"
    [ "$status" -eq 0 ] || { lh_show_output || :; tail -n 30 "$LH_LOG" >&2; return 1; }
    has_line "e2e: all steps passed"
    has_match "^step: without the certificate trusted the page is refused: net::ERR_CERT_AUTHORITY_INVALID$"
    has_line "step: both pages loaded over https:// and connected over wss://"
    has_line "step: messages went both ways over wss://"
    if [ -n "${LH_TEST_OUT:-}" ]; then
        [ "$(head -c 4 "$LH_TEST_OUT/browser/chat-tls.png" | od -An -c | tr -d ' ')" = '211PNG' ]
    fi
}
