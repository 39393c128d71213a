#!/usr/bin/env bats
# The chat demo in a real browser: lhttpd serves clients/chat plus the SDK from
# static.root, and tests/e2e/chat.mjs drives two headless Chromium pages through it
# (join a room, talk both ways, survive `lhttpd -s reload`, keep talking). A second
# lhttpd serves the demo with identity as `make run` does (tests/lib/demo-identity.py:
# an auth key, the chat and team namespaces, demo users' tokens in demo-tokens.js), and
# chat.mjs (LH_SCENARIO=auth) signs users in: server-stamped names, and the private room
# refused to an outsider. Screenshots land in $LH_TEST_OUT/browser/.
#
# Needs Debian's chromium, node, and `npm ci` in tests/e2e (playwright-core); see
# tests/lib/deps.sh.

load ../lib/helpers

TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)

setup_file() {
    T=$(lh_tmp)
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
    export LH_PORT=$PLAIN_PORT LH_CONF=$PLAIN_CONF LH_LOG=$PLAIN_LOG
}

teardown_file() { stop_all; }

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

@test "browser: with identity, signed-in users see server-stamped names; an outsider is refused the private room" {
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
    if [ -n "${LH_TEST_OUT:-}" ]; then
        [ "$(head -c 4 "$LH_TEST_OUT/browser/chat-alice.png" | od -An -c | tr -d ' ')" = '211PNG' ]
        [ -s "$LH_TEST_OUT/browser/chat-carol.png" ]
    fi
}
