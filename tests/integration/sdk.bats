#!/usr/bin/env bats
# The JavaScript SDK (clients/js): its unit tests and its integration tests against a
# real lhttpd and nats-server, each run by Node's built-in test runner. One bats test per
# node test file or integration scenario, so that run.sh counts them; a node test that
# fails, or a filter that runs no test, fails the bats test. The integration scenarios
# start and stop their own servers (clients/js/test/harness.js), by pid.
#
# Needs node (>= 18) and `npm ci` in clients/js (for the "ws" package), and a
# nats-server with JetStream (-js) for the history scenarios; see tests/lib/deps.sh.

load ../lib/helpers

SDK=$(cd "$BATS_TEST_DIRNAME/../../clients/js" && pwd)

# node_test FILE [NAME_PATTERN]: runs test/FILE (only the tests whose names match the
# pattern) with the TAP reporter; fails unless node exits 0 and at least one test passed
# and none failed.
node_test() {
    local file=$1 pattern=${2:-} pass fail
    command -v node >/dev/null || { echo "node is not installed (tests/lib/deps.sh)" >&2; return 1; }
    run env LH_REQUIRE_INTEGRATION=1 LHTTPD="$LHTTPD" timeout 60 \
        node --test --test-reporter=tap ${pattern:+--test-name-pattern="$pattern"} "$SDK/test/$file"
    pass=$(printf '%s\n' "$output" | sed -nE 's/^# pass ([0-9]+)$/\1/p' | tail -n 1)
    fail=$(printf '%s\n' "$output" | sed -nE 's/^# fail ([0-9]+)$/\1/p' | tail -n 1)
    if [ "$status" -ne 0 ] || [ "${pass:-0}" -lt 1 ] || [ "${fail:-1}" -ne 0 ]; then
        echo "node --test $file ${pattern:+(tests matching \"$pattern\")}: exit $status, ${pass:-?} passed, ${fail:-?} failed" >&2
        printf '%s\n' "$output" | grep -vE '^ +(at |duration_ms|\.\.\.|---)' | head -n 150 >&2
        return 1
    fi
}

@test "sdk unit: LHTTP message encoding and parsing" { node_test message.test.js; }

@test "sdk unit: multipart builder (byte offsets) and parser" { node_test multipart.test.js; }

@test "sdk unit: client events, queue and reconnection policy per close code" { node_test client.test.js; }

@test "sdk unit: identity: auth first, refresh, 4401 and 4403, refused subscriptions, unsubscribed" {
    node_test auth.test.js
}

@test "sdk unit: history: positions, recover entries on every reconnect, recovered and gap events, history()" {
    node_test history.test.js
}

@test "sdk integration: pub/sub both ways with colons, UTF-8, multipart and binary bodies" {
    node_test integration.test.js '^pubsub:'
}

@test "sdk integration: an error reply is an error event; the connection stays open" {
    node_test integration.test.js '^errors:'
}

@test "sdk integration: after a reload (1012) clients reconnect at once and resubscribe" {
    node_test integration.test.js '^reload:'
}

@test "sdk integration: after a restart (1001) clients back off, then resubscribe" {
    node_test integration.test.js '^restart:'
}

@test "sdk integration: a 403 handshake is not retried; a 503 (server full) backs off" {
    node_test integration.test.js '^refusals:'
}

@test "sdk integration: the Node example of clients/js/README.md works as pasted" {
    node_test integration.test.js '^readme:'
}

@test "sdk integration: a token is accepted first; owner rules allow user.42, refuse user.43 (403)" {
    node_test integration.test.js '^auth:'
}

@test "sdk integration: stamp_user names the publisher (no forging); a private room refuses outsiders" {
    node_test integration.test.js '^auth-stamp:'
}

@test "sdk integration: a short token is renewed on the open connection before it expires" {
    node_test integration.test.js '^auth-refresh:'
}

@test "sdk integration: a token not renewed in time: 4401, then a new token and a reconnection" {
    node_test integration.test.js '^auth-expiry:'
}

@test "sdk integration: the server API: 4401 reconnects, 4403 stops, unsubscribe is an event" {
    node_test integration.test.js '^auth-api:'
}

@test "sdk integration: history: a client away while messages are published gets each once, in order" {
    node_test integration.test.js '^history-recover:'
}

@test "sdk integration: history: through two reloads with publishes going on, every message once, in order" {
    node_test integration.test.js '^history-reload:'
}

@test "sdk integration: history: an evicted offset gives recovered:false and a gap, never a partial recovery" {
    node_test integration.test.js '^history-evicted:'
}

@test "sdk integration: history: history() with limit and since; 404 without history; a subscription seeded from a read" {
    node_test integration.test.js '^history-read:'
}
