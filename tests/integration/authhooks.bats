#!/usr/bin/env bats
# Identity and permissions, the parts that ask a backend or reach across nodes: the
# subscribe and publish webhooks (they decide, pass the backend's reason on, time out,
# fail closed, are capped by upstream.max_in_flight, and a publish waiting for its
# webhook keeps its place among the same connection's messages), the connect webhook
# answering a user id, and the server API (POST /api/disconnect and /api/unsubscribe:
# its token, its socket, and its reach to a user connected to another node).
#
# Servers for the whole file: nats-server, the webhook backend HOOK (tests/lib/backend.py,
# deciding by the X-Lhttp-Channels header) and lhttpd MAIN (one worker, namespace "ops"
# decided by the webhooks, "chat" stamped). Tests that need another configuration start
# their own lhttpd.

load ../lib/helpers
load ../lib/pubsub
load ../lib/backend

# err CODE REASON [CMD]: the escaped text of an error reply.
err() { printf 'LHTTP/1.0 error\\r\\ncode:%s\\r\\nreason:%s\\r\\nin-reply-to:%s\\r\\n\\r\\n' "$1" "$2" "${3:-x}"; }

# wtext MESSAGE: the line wsprobe.py prints for a text message (escaped as it shows it).
wtext() { echo "text $(printf '%b' "$1" | wc -c) $1"; }

metric_value() {
    curl -s --max-time 5 "http://127.0.0.1:$LH_PORT/metrics" | awk -v k="$1" '$1 == k {print $2}'
}

MAIN_CONF='{
    "listen": ["127.0.0.1:@PORT@"],
    "workers": 1,
    "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
    "publish": {"token": "api-secret-token"},
    "upstream": {"max_in_flight": 4},
    "webhooks": {"subscribe": "http://127.0.0.1:HOOKPORT/sub",
                 "publish": "http://127.0.0.1:HOOKPORT/pub", "timeout_ms": 800},
    "namespaces": {"ops": {"subscribe": "webhook", "publish": "webhook"},
                   "chat": {"subscribe": "any", "publish": "any", "stamp_user": true}}
}'

setup_file() {
    start_nats
    start_backend HOOK '{
        "/sub": {"status": 200, "cases": [
            {"header": "x-lhttp-channels", "contains": "ops.denied", "status": 403,
             "body": "{\"reason\": \"ops.denied is closed\"}"},
            {"header": "x-lhttp-channels", "contains": "ops.hang", "hang": true}]},
        "/pub": {"status": 200, "cases": [
            {"header": "x-lhttp-channels", "contains": "ops.denied", "status": 401,
             "body": "not you"},
            {"header": "x-lhttp-channels", "contains": "ops.slow", "delay_ms": 400},
            {"header": "x-lhttp-channels", "contains": "ops.fail", "status": 500},
            {"header": "x-lhttp-channels", "contains": "ops.hang", "hang": true}]},
        "/connect": {"status": 200, "cases": [
            {"header": "cookie", "contains": "who=alice",
             "body": "{\"user\": \"alice\", \"info\": {\"name\": \"Alice\"}}"},
            {"header": "cookie", "contains": "who=broken",
             "body": "{\"user\": \"a\\nb\"}"}]}
    }'
    start_lhttpd "${MAIN_CONF//HOOKPORT/$HOOK_PORT}"
    save_lhttpd MAIN
    FILE_PIDS=$LH_PIDS
    export MAIN_PORT MAIN_PID MAIN_LOG MAIN_WORKERS FILE_PIDS
}

# The servers stop first: a sanitizer build reports leaks only at exit.
teardown_file() {
    stop_all
    ! grep -E -A12 'AddressSanitizer|LeakSanitizer|runtime error:' "$MAIN_LOG" >&2
}

teardown() {
    local p rc=0
    for p in $LH_PIDS; do
        case " $FILE_PIDS " in *" $p "*) ;; *) lh_stop_pid "$p" ;; esac
    done
    (use_lhttpd MAIN && assert_server_alive) || rc=1
    ! grep -E -A12 'AddressSanitizer|LeakSanitizer|runtime error:' "$MAIN_LOG" \
        $(ls "$(lh_tmp)"/lhttpd-*.log 2>/dev/null) >&2 || rc=1
    return $rc
}

setup() { use_lhttpd MAIN; }

# --- the subscribe webhook --------------------------------------------------------------

@test "subscribe webhook: a 2xx subscribes, a 403 refuses with the backend's reason" {
    local before
    before=$(blog count "$HOOK_LOG" --path /sub)
    run probe upgrade 'text:LHTTP/1.0 x\r\nsubscribe:ops.denied\r\n\r\n' msg \
        'text:LHTTP/1.0 x\r\nsubscribe:ops.fine\r\n\r\n' \
        'text:LHTTP/1.0 x\r\npublish:ops.fine\r\n\r\nhello' msg
    has_line "$(wtext "$(err 403 'ops.denied is closed')")"
    has_line "$(wtext 'LHTTP/1.0 x\r\npublish:ops.fine\r\n\r\nhello')"
    [ "$(blog count "$HOOK_LOG" --path /sub)" -eq $((before + 2)) ]
    # What the backend was told: the JSON body and the headers.
    run blog show "$HOOK_LOG" --path /sub --index -1
    has_line 'header x-lhttp-event: subscribe'
    has_line 'header x-lhttp-channels: ops.fine'
    has_line 'header content-type: application/json'
    has_match '^body [0-9]+ \{"connection":[0-9]+,"user":"","info":null,"channels":\["ops.fine"\],"command":"x"\}$'
}

@test "subscribe webhook: all or nothing, one request for the channels it decides" {
    local before
    before=$(blog count "$HOOK_LOG" --path /sub)
    # chat.a needs no webhook; ops.a and ops.denied are asked together and refused.
    run probe upgrade 'text:LHTTP/1.0 x\r\nsubscribe:chat.a ops.a ops.denied\r\n\r\n' msg \
        'text:LHTTP/1.0 x\r\npublish:chat.a\r\n\r\nnobody' 'text:LHTTP/1.0 ping\r\n\r\n' msg
    has_line "$(wtext "$(err 403 'ops.denied is closed')")"
    has_line 'text 18 LHTTP/1.0 pong\r\n\r\n'
    no_match 'nobody'
    [ "$(blog count "$HOOK_LOG" --path /sub)" -eq $((before + 1)) ]
    run blog show "$HOOK_LOG" --path /sub --index -1
    has_line 'header x-lhttp-channels: ops.a ops.denied'
}

@test "subscribe webhook that never answers: 504 at webhooks.timeout_ms, not subscribed" {
    run probe upgrade 'text:LHTTP/1.0 x\r\nsubscribe:ops.hang\r\n\r\n' msg \
        'text:LHTTP/1.0 ping\r\n\r\n' msg
    has_line "$(wtext "$(err 504 'subscribe webhook unavailable: not subscribed')")"
    has_line 'text 18 LHTTP/1.0 pong\r\n\r\n'
}

# --- the publish webhook ----------------------------------------------------------------

@test "publish webhook: a refused publish reaches nobody, the reason is passed on" {
    run ps_run open:s:$LH_PORT open:p:$LH_PORT sub:s:ops.fenced \
        'send:p:LHTTP/1.0 x\r\npublish:ops.denied\r\n\r\nsecret' recv:p \
        'pub:p:ops.fenced:fence' recv:s
    [ "$status" -eq 0 ] || lh_show_output
    has_line "$(got p "$(err 401 'not you')")"
    has_line "$(got s 'LHTTP/1.0 msg\r\npublish:ops.fenced\r\n\r\nfence')"
    no_match 'secret'
}

@test "publish webhook: a waiting publish keeps its order among the client's messages" {
    # ops.slow's webhook answers after 400 ms: the ping sent right after the publish is
    # read only once the publish is done, so its pong comes after the message.
    run probe upgrade 'text:LHTTP/1.0 x\r\nsubscribe:ops.slow\r\n\r\n' \
        'text:LHTTP/1.0 x\r\npublish:ops.slow\r\n\r\nfirst' 'text:LHTTP/1.0 ping\r\n\r\n' \
        msg msg
    [ "${lines[3]}" = "$(wtext 'LHTTP/1.0 x\r\npublish:ops.slow\r\n\r\nfirst')" ] || lh_show_output
    [ "${lines[4]}" = 'text 18 LHTTP/1.0 pong\r\n\r\n' ]
    run blog show "$HOOK_LOG" --path /pub --index -1
    has_match '"message":"LHTTP/1.0 x\\\\r\\\\npublish:ops.slow\\\\r\\\\n\\\\r\\\\nfirst"'
}

@test "publish webhook: a 500 or a dead backend refuses with 503, never publishes" {
    run ps_run open:s:$LH_PORT open:p:$LH_PORT sub:s:ops.fail \
        'send:p:LHTTP/1.0 x\r\npublish:ops.fail\r\n\r\nlost' recv:p \
        'send:p:LHTTP/1.0 x\r\npublish:chat.fence\r\n\r\nf' barrier:p
    [ "$status" -eq 0 ] || lh_show_output
    has_line "$(got p "$(err 503 'publish webhook unavailable: not published')")"
    no_match 'lost'
}

@test "webhooks count against upstream.max_in_flight: beyond it, 503 at once" {
    local i steps=()
    # Four hanging subscribe webhooks fill max_in_flight (4); the fifth is refused.
    for i in 1 2 3 4; do
        probe upgrade 'text:LHTTP/1.0 x\r\nsubscribe:ops.hang\r\n\r\n' wait:1500 >/dev/null &
    done
    wait_for 5 bash -c "[ \$('$PY' '$BACKEND' count '$HOOK_LOG' --path /sub --header x-lhttp-channels:ops.hang) -ge 4 ]" ||
        true
    run probe upgrade 'text:LHTTP/1.0 x\r\nsubscribe:ops.other\r\n\r\n' msg
    has_line "$(wtext "$(err 503 'subscribe webhook busy: try again')")"
    wait
    [ "$(metric_value 'lhttpd_webhooks_total{kind="subscribe",result="limited"}')" -ge 1 ]
}

@test "webhook decisions are counted, with their latency" {
    [ "$(metric_value 'lhttpd_webhooks_total{kind="subscribe",result="ok"}')" -ge 1 ]
    [ "$(metric_value 'lhttpd_webhooks_total{kind="subscribe",result="http_error"}')" -ge 1 ]
    [ "$(metric_value 'lhttpd_webhooks_total{kind="publish",result="http_error"}')" -ge 1 ]
    [ "$(metric_value 'lhttpd_permission_denied_total{action="subscribe",namespace="ops"}')" -ge 1 ]
    [ "$(metric_value 'lhttpd_permission_denied_total{action="publish",namespace="ops"}')" -ge 1 ]
    [ "$(metric_value 'lhttpd_webhook_decision_seconds_count')" -ge 3 ]
}

# --- the connect webhook's user ---------------------------------------------------------

@test "connect webhook answers the user id: it is the connection's, stamped on its messages" {
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"], "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "webhooks": {"connect": "http://127.0.0.1:'"$HOOK_PORT"'/connect"},
        "namespaces": {"chat": {"subscribe": "authenticated", "publish": "subscribers",
                                "stamp_user": true}}
    }'
    run probe -H 'Cookie: who=alice' upgrade \
        'text:LHTTP/1.0 x\r\nsubscribe:chat.r\r\npublish:chat.r\r\nsender:mallory\r\n\r\nhi' msg
    has_line "$(wtext 'LHTTP/1.0 x\r\nsubscribe:chat.r\r\npublish:chat.r\r\nsender:alice\r\n\r\nhi')"
    # Without a user from the webhook the connection is anonymous: refused.
    run probe upgrade 'text:LHTTP/1.0 x\r\nsubscribe:chat.r\r\n\r\n' msg
    has_line "$(wtext "$(err 403 'not allowed to subscribe to "chat.r": namespace "chat" needs an authenticated user')")"
    # A user id that cannot be one (a newline) refuses the handshake.
    run probe -H 'Cookie: who=broken' upgrade
    has_line 'status 502'
    assert_server_ok
}

# --- the server API ---------------------------------------------------------------------

# api PATH JSON [TOKEN]: POST to the server API of LH_PORT; prints the status, then the body.
api() {
    curl -s --max-time 5 -o /dev/stdout -w '\n%{http_code}\n' -X POST \
        -H "Authorization: Bearer ${3-api-secret-token}" -d "$2" "http://127.0.0.1:$LH_PORT$1"
}

@test "server API: token required, bad bodies refused with 400 and a reason" {
    run api /api/disconnect '{"user":"42"}' wrong-token
    [ "${lines[-1]}" = 401 ]
    run api /api/disconnect '{"user":""}'
    [ "${lines[-1]}" = 400 ]
    has_line '{"error":"\"user\" must be a user id (a non-empty string)"}'
    run api /api/disconnect '{"user":"42","code":1000}'
    [ "${lines[-1]}" = 400 ]
    run api /api/unsubscribe '{"user":"42","channel":"a..b"}'
    [ "${lines[-1]}" = 400 ]
    run api /api/disconnect '{"user":"42","bogus":1}'
    [ "${lines[-1]}" = 400 ]
    run api /api/disconnect 'not json'
    [ "${lines[-1]}" = 400 ]
    run api /api/nothing '{}'
    [ "${lines[-1]}" = 404 ]
    run curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$LH_PORT/api/disconnect"
    [ "$output" = 405 ]
}

@test "server API on the public socket needs publish.token; with an admin socket it lives there" {
    local admin
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "workers": 1,
                   "nats": {"servers": ["nats://127.0.0.1:@NATS@"]}}'
    run api /api/disconnect '{"user":"42"}' ''
    [ "${lines[-1]}" = 403 ]
    admin=$(free_port)
    LH_PORTS_TAKEN="$LH_PORTS_TAKEN $admin"
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "workers": 1,
                   "admin": {"listen": ["127.0.0.1:'"$admin"'"]},
                   "nats": {"servers": ["nats://127.0.0.1:@NATS@"]}}'
    run api /api/disconnect '{"user":"42"}' ''
    [ "${lines[-1]}" = 404 ]
    LH_PORT=$admin run api /api/disconnect '{"user":"42"}' ''
    [ "${lines[-1]}" = 200 ]
    has_line '{"ok":true,"here":0}'
}

@test "server API disconnects a user connected to another node, and unsubscribes one" {
    local secret tok
    secret=$(lh_tmp)/api.secret
    head -c 48 /dev/urandom | base64 | tr -d '\n' >"$secret"
    tok=$("$PY" "$LH_LIB/jwtmint.py" "$secret" sub=u42 exp=+600)
    start_lhttpd '{"listen": ["127.0.0.1:@PORT@"], "workers": 2,
                   "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
                   "publish": {"token": "api-secret-token"},
                   "auth": {"keys": [{"secret_file": "'"$secret"'"}]}}'
    save_lhttpd B
    # On node B: two connections of u42 (one subscribed to room.x) and one of another user.
    ps_bg api "open:a:$B_PORT:/?token=$tok" "open:b:$B_PORT:/?token=$tok" open:c:$B_PORT \
        sub:a:room.x sub:b:room.y sub:c:room.x print:ready \
        await:"$(lh_tmp)/api-go-1" recv:a 'pub:c:room.x:after' recv:c barrier:a \
        await:"$(lh_tmp)/api-go-2" drain:a drain:b barrier:c
    wait_for 10 bg_has api '^ready'
    # Asked on node MAIN: it reaches B through NATS.
    use_lhttpd MAIN
    run api /api/unsubscribe '{"user":"u42","channel":"room.x","reason":"moved"}'
    [ "${lines[-1]}" = 200 ]
    touch "$(lh_tmp)/api-go-1"
    wait_for 10 bg_has api '^c got'
    run api /api/disconnect '{"user":"u42","code":4010,"reason":"banned"}'
    [ "${lines[-1]}" = 200 ]
    touch "$(lh_tmp)/api-go-2"
    wait_for 10 bg_has api '^c barrier'
    run bg_out api
    has_line "$(got a 'LHTTP/1.0 unsubscribed\r\nchannel:room.x\r\nreason:moved\r\n\r\n')"
    # a no longer gets room.x (c's "after" reached c only); then both of u42's close.
    has_line "$(got c 'LHTTP/1.0 msg\r\npublish:room.x\r\n\r\nafter')"
    no_match '^a got [0-9]+ LHTTP/1.0 msg'
    has_line 'a close 4010 banned'
    has_line 'b close 4010 banned'
    has_line 'c barrier'
    use_lhttpd B
    [ "$(metric_value 'lhttpd_server_disconnects_total')" -eq 2 ]
    [ "$(metric_value 'lhttpd_server_unsubscribes_total{cause="api"}')" -eq 1 ]
    assert_server_ok
}
