#!/usr/bin/env bats
# Upstream HTTP and webhooks against real HTTP servers on loopback (tests/lib/backend.py):
# `upstream: METHOD URL` messages and what the backend receives, answers routed back as
# LHTTP, the allow-list (with a canary server that must never be reached), redirects,
# timeouts, retries, in-flight caps under a flood, command webhooks, the connect and
# disconnect webhooks (and their caps under storms of handshakes and departures: 503
# beyond upstream.max_in_flight, the disconnect queue, idle backend connections closed),
# and the lhttpd_upstream_requests_total and lhttpd_webhooks_total counters.
#
# Servers for the whole file: backends B (on upstream.allow as http://127.0.0.1:B/api/;
# also the `order` command webhook), CANARY (on no list: must never see a connection) and
# HOOK (the connect/disconnect webhooks: 403 unless the Cookie has session=ok), a port
# DEAD where nothing listens (on the list), lhttpd MAIN (workers 1, small caps) and lhttpd
# GATED (its handshakes go through HOOK). Tests that need another configuration start
# their own lhttpd; teardown checks and stops it. Every wait polls against a deadline;
# ordering checks use an answer the backend holds 500 ms, not a sleep.

load ../lib/helpers
load ../lib/backend

UPCLIENT=$LH_LIB/upclient.py

# bcount LOG ARGS...: how many requests (or --event connection) the log holds.
bcount() { blog count "$@"; }

# bcount_ge N LOG ARGS...: true once at least N entries match.
bcount_ge() {
    local n=$1
    shift
    [ "$(bcount "$@")" -ge "$n" ]
}

# upc PORT STEP...: upclient.py against ws://127.0.0.1:PORT/ (options may be mixed in).
upc() {
    local port=$1
    shift
    "$PY" "$UPCLIENT" "ws://127.0.0.1:$port/" "$@"
}

# up METHOD URL [BODY] [EXTRA_HEADER_LINES]: a send step for an upstream message with
# command `fetch`.
up() { printf 'send:LHTTP/1.0 fetch\\r\\nupstream: %s %s\\r\\n%s\\r\\n%s' "$1" "$2" "${4:-}" "${3:-}"; }

# has_msg TEXT: some `msg LEN TEXT` line of $output has exactly TEXT (escaped form).
has_msg() {
    local l
    for l in "${lines[@]}"; do
        [[ $l == "msg "* ]] || continue
        l=${l#msg }
        [ "${l#* }" = "$1" ] && return 0
    done
    echo "expected a message: $1" >&2
    lh_show_output
    return 1
}

# count_msg TEXT: how many `msg` lines of $output carry exactly TEXT.
count_msg() {
    local l n=0
    for l in "${lines[@]}"; do
        [[ $l == "msg "* ]] || continue
        l=${l#msg }
        [ "${l#* }" = "$1" ] && n=$((n + 1))
    done
    echo "$n"
}

# err CODE REASON: the escaped text of the error reply to a `fetch` message.
err() { printf 'LHTTP/1.0 error\\r\\ncode:%s\\r\\nreason:%s\\r\\nin-reply-to:%s\\r\\n\\r\\n' "$1" "$2" "${3:-fetch}"; }

# local_addr: the client's address from its `connected local=...` line.
local_addr() { sed -n 's/^connected local=//p' <<<"$output" | head -n 1; }

# metric RESULT: lhttpd_upstream_requests_total{result=RESULT} from /metrics on LH_PORT.
metric() {
    curl -s --max-time 5 "http://127.0.0.1:$LH_PORT/metrics" |
        sed -n "s/^lhttpd_upstream_requests_total{result=\"$1\"} //p"
}

metric_is() { [ "$(metric "$1")" = "$2" ]; }

# use SERVER: points LH_PORT / LH_PID / LH_LOG / LH_WORKERS at MAIN or GATED.
use() {
    local p=${1}_PORT i=${1}_PID l=${1}_LOG w=${1}_WORKERS
    LH_PORT=${!p} LH_PID=${!i} LH_LOG=${!l} LH_WORKERS=${!w}
}

# start_own_lhttpd CONFIG: an lhttpd for this test only (teardown checks and stops it).
start_own_lhttpd() {
    start_lhttpd "$1" || return 1
    OWN_SERVERS="${OWN_SERVERS:-} $LH_PID"
}

setup_file() {
    start_nats
    start_backend CANARY '{"*": {"body": "canary"}}'
    DEAD_PORT=$(free_port)
    LH_PORTS_TAKEN="$LH_PORTS_TAKEN $DEAD_PORT"
    export DEAD_PORT LH_PORTS_TAKEN
    start_backend B '{
        "/api/reply/*": {"headers": {"X-Lhttp-Command": "fetched", "X-Lhttp-Trace": "t1",
                                     "X-Lhttp-Status": "accepted", "X-Other": "dropped"},
                         "body": "answer-body"},
        "/api/plain/*": {"body": "plain-body"},
        "/api/empty/*": {"status": 204},
        "/api/ok-empty": {"status": 200},
        "/api/cmd-only/*": {"headers": {"X-Lhttp-Command": "done", "X-Lhttp-Kind": "head"}},
        "/api/badcmd": {"headers": {"X-Lhttp-Command": "a:b"}, "body": "bad-command"},
        "/api/notfound": {"status": 404, "body": "nope"},
        "/api/slow/*": {"delay_ms": 4000, "body": "late"},
        "/api/hold/*": {"delay_ms": 500, "body": "held"},
        "/api/flaky/get": {"sequence": [{"status": 503}, {"body": "second try"}]},
        "/api/flaky/post": {"sequence": [{"status": 503}, {"body": "second try"}]},
        "/api/flaky/patch": {"sequence": [{"status": 502}, {"body": "second try"}]},
        "/api/down/*": {"status": 503, "body": "down"},
        "/api/big/at-cap": {"body_bytes": 4096},
        "/api/big/over": {"body_bytes": 4097},
        "/api/redir/out": {"status": 302, "headers": {"Location": "http://127.0.0.1:'"$CANARY_PORT"'/stolen"}},
        "/api/redir/out307": {"status": 307, "headers": {"Location": "http://127.0.0.1:'"$CANARY_PORT"'/stolen"}},
        "/api/redir/admin": {"status": 302, "headers": {"Location": "/admin"}},
        "/api/redir/in": {"status": 302, "headers": {"Location": "@SELF@/api/redir/target"}},
        "/api/redir/rel": {"status": 301, "headers": {"Location": "target"}},
        "/api/redir/post303": {"status": 303, "headers": {"Location": "/api/redir/target"}},
        "/api/redir/post307": {"status": 307, "headers": {"Location": "/api/redir/target"}},
        "/api/redir/target": {"headers": {"X-Lhttp-Command": "landed"}, "body": "target-body"},
        "/api/redir/loop": {"status": 302, "headers": {"Location": "/api/redir/loop"}},
        "/hooks/order": {"headers": {"X-Lhttp-Command": "order-ack", "X-Lhttp-Order-Id": "42"},
                         "body": "accepted",
                         "cases": [{"header": "X-Lhttp-Fail", "contains": "yes", "status": 500}]},
        "/admin": {"body": "admin secrets"},
        "*": {"status": 404, "body": "no route"}
    }'
    start_backend HOOK '{
        "/hooks/connect": {"status": 403, "body": "no session",
            "cases": [{"header": "Cookie", "contains": "session=ok", "status": 200},
                      {"header": "Cookie", "contains": "session=limit", "status": 429},
                      {"header": "Cookie", "contains": "session=unauth", "status": 401},
                      {"header": "Cookie", "contains": "session=broken", "status": 500},
                      {"header": "Cookie", "contains": "session=slow", "delay_ms": 3000,
                       "status": 200},
                      {"header": "Cookie", "contains": "session=late", "delay_ms": 1000,
                       "status": 200}]},
        "/hooks/disconnect": {"status": 204}
    }'
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "upstream": {
            "allow": ["http://127.0.0.1:'"$B_PORT"'/api/", "http://127.0.0.1:'"$DEAD_PORT"'/api/"],
            "timeout_ms": 1500,
            "max_in_flight_per_conn": 4,
            "max_in_flight": 6,
            "max_response_bytes": 4096
        },
        "commands": {"order": {"webhook": "http://127.0.0.1:'"$B_PORT"'/hooks/order"}}
    }'
    MAIN_PORT=$LH_PORT MAIN_PID=$LH_PID MAIN_LOG=$LH_LOG MAIN_WORKERS=$LH_WORKERS
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "upstream": {"allow": ["http://127.0.0.1:'"$B_PORT"'/api/"]},
        "webhooks": {
            "connect": "http://127.0.0.1:'"$HOOK_PORT"'/hooks/connect",
            "disconnect": "http://127.0.0.1:'"$HOOK_PORT"'/hooks/disconnect",
            "timeout_ms": 600
        }
    }'
    GATED_PORT=$LH_PORT GATED_PID=$LH_PID GATED_LOG=$LH_LOG GATED_WORKERS=$LH_WORKERS
    FILE_PIDS=$LH_PIDS
    export MAIN_PORT MAIN_PID MAIN_LOG MAIN_WORKERS GATED_PORT GATED_PID GATED_LOG \
        GATED_WORKERS FILE_PIDS
}

teardown_file() { stop_all; }

# A crash fails the test that caused it; whatever this test started is stopped.
teardown() {
    local p rc=0
    # The test's own lhttpd (at most one) is the last one start_lhttpd described.
    if [ -n "${OWN_SERVERS:-}" ]; then
        assert_server_alive || rc=1
    fi
    for p in $LH_PIDS; do
        case " $FILE_PIDS " in *" $p "*) ;; *) lh_stop_pid "$p" ;; esac
    done
    (use MAIN && assert_server_alive) || rc=1
    (use GATED && assert_server_alive) || rc=1
    return $rc
}

# --- messages and answers ------------------------------------------------------------

@test "upstream POST: the backend gets method, path, query, body and the X-Lhttp-* headers; the reply is built from its X-Lhttp-* headers and body" {
    run upc "$MAIN_PORT" \
        "$(up POST "http://127.0.0.1:$B_PORT/api/reply/post?q=1" '{"order":42}' 'x-user: alice\r\nTrace-Id:  abc 123 \r\n')" recv
    has_msg 'LHTTP/1.0 fetched\r\ntrace:t1\r\nstatus:accepted\r\n\r\nanswer-body'
    peer=$(local_addr)
    run blog show "$B_LOG" --path /api/reply/post
    has_line "method POST"
    has_line "target /api/reply/post?q=1"
    has_line 'body 12 {"order":42}'
    has_line "header x-lhttp-command: fetch"
    has_match '^header x-lhttp-connection-id: [0-9]+$'
    has_line "header x-lhttp-peer: $peer"
    has_line "header x-lhttp-x-user: alice"
    has_line "header x-lhttp-trace-id: abc 123"
    has_line "header content-type: text/plain; charset=utf-8"
    # The upstream header itself is lhttpd's, not the backend's.
    no_match '^header x-lhttp-upstream'
}

@test "upstream GET: no body is sent; a reply without X-Lhttp-Command keeps the request's command" {
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/reply/get" 'ignored body' 'x-user: bob\r\n')" recv \
        "$(up GET "http://127.0.0.1:$B_PORT/api/plain/get")" recv
    has_msg 'LHTTP/1.0 fetched\r\ntrace:t1\r\nstatus:accepted\r\n\r\nanswer-body'
    has_msg 'LHTTP/1.0 fetch\r\n\r\nplain-body'
    run blog show "$B_LOG" --path /api/reply/get
    has_line "method GET"
    has_line "body 0"
    has_line "header x-lhttp-x-user: bob"
    has_line "header x-lhttp-command: fetch"
    no_match '^header content-length: [1-9]'
}

@test "upstream PUT and PATCH carry the body, DELETE does not, HEAD replies from X-Lhttp-Command alone" {
    run upc "$MAIN_PORT" "$(up PUT "http://127.0.0.1:$B_PORT/api/reply/put" 'put-body')" recv \
        "$(up PATCH "http://127.0.0.1:$B_PORT/api/reply/patch" 'patch-body')" recv \
        "$(up DELETE "http://127.0.0.1:$B_PORT/api/reply/delete" 'delete-body')" recv \
        "$(up HEAD "http://127.0.0.1:$B_PORT/api/cmd-only/head" 'head-body')" recv
    [ "$(count_msg 'LHTTP/1.0 fetched\r\ntrace:t1\r\nstatus:accepted\r\n\r\nanswer-body')" -eq 3 ]
    has_msg 'LHTTP/1.0 done\r\nkind:head\r\n\r\n'
    run blog show "$B_LOG" --path /api/reply/put
    has_line "method PUT"
    has_line "body 8 put-body"
    run blog show "$B_LOG" --path /api/reply/patch
    has_line "method PATCH"
    has_line "body 10 patch-body"
    run blog show "$B_LOG" --path /api/reply/delete
    has_line "method DELETE"
    has_line "body 0"
    run blog show "$B_LOG" --path /api/cmd-only/head
    has_line "method HEAD"
    has_line "body 0"
}

@test "upstream: a content-type header sets Content-Type; a binary body goes out byte for byte as application/octet-stream" {
    run upc "$MAIN_PORT" \
        "$(up POST "http://127.0.0.1:$B_PORT/api/plain/json" '{"a":1}' 'content-type: application/json\r\n')" recv \
        "$(up POST "http://127.0.0.1:$B_PORT/api/plain/bin" '\x00\xff\xfe\r\n')" recv
    [ "$(count_msg 'LHTTP/1.0 fetch\r\n\r\nplain-body')" -eq 2 ]
    run blog show "$B_LOG" --path /api/plain/json
    has_line "header content-type: application/json"
    has_line "header x-lhttp-content-type: application/json"
    run blog show "$B_LOG" --path /api/plain/bin
    has_line 'body 5 \x00\xff\xfe\r\n'
    has_line "header content-type: application/octet-stream"
}

@test "upstream: a 2xx answer without body or X-Lhttp-Command sends nothing back; an invalid X-Lhttp-Command falls back to the request's" {
    # The empty answers come at once, the held one 500 ms later: it must be the first
    # message the client gets.
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/empty/204")" \
        "$(up GET "http://127.0.0.1:$B_PORT/api/ok-empty")" \
        "$(up GET "http://127.0.0.1:$B_PORT/api/hold/after-empty")" recv \
        "$(up GET "http://127.0.0.1:$B_PORT/api/badcmd")" recv
    [ "${lines[1]#msg * }" = 'LHTTP/1.0 fetch\r\n\r\nheld' ] || { lh_show_output || :; false; }
    has_msg 'LHTTP/1.0 fetch\r\n\r\nbad-command'
    [ "$(bcount "$B_LOG" --path /api/empty/204)" -eq 1 ]
    [ "$(bcount "$B_LOG" --path /api/ok-empty)" -eq 1 ]
}

@test "upstream: a non-2xx answer is error 502 naming its status" {
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/notfound")" recv
    has_msg "$(err 502 'upstream answered 404')"
}

@test "upstream: malformed upstream headers and methods get 400 and reach nobody" {
    before=$(bcount "$B_LOG")
    run upc "$MAIN_PORT" "$(up GET '')" recv "$(up OPTIONS "http://127.0.0.1:$B_PORT/api/plain/x")" recv \
        'send:LHTTP/1.0 fetch\r\nupstream: GET\r\n\r\n' recv \
        "send:LHTTP/1.0 fetch\r\nupstream: GET http://127.0.0.1:$B_PORT/api/plain/a b\r\n\r\n" recv
    [ "$(count_msg "$(err 400 'upstream header must be "METHOD URL"')")" -eq 3 ]
    has_msg "$(err 400 'upstream method must be GET, HEAD, POST, PUT, PATCH or DELETE')"
    [ "$(bcount "$B_LOG")" -eq "$before" ]
}

@test "upstream: LHTTP headers named command, connection-id or peer cannot pass for lhttpd's own X-Lhttp-* headers" {
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/plain/spoof" '' \
        'peer: 6.6.6.6:1\r\nconnection-id: 1\r\ncommand: admin\r\n')" recv
    has_msg 'LHTTP/1.0 fetch\r\n\r\nplain-body'
    peer=$(local_addr)
    run blog show "$B_LOG" --path /api/plain/spoof
    # Exactly one of each, and it is lhttpd's.
    [ "$(grep -c '^header x-lhttp-peer: ' <<<"$output")" -eq 1 ] || { lh_show_output || :; false; }
    [ "$(grep -c '^header x-lhttp-connection-id: ' <<<"$output")" -eq 1 ] || { lh_show_output || :; false; }
    [ "$(grep -c '^header x-lhttp-command: ' <<<"$output")" -eq 1 ] || { lh_show_output || :; false; }
    has_line "header x-lhttp-peer: $peer"
    has_line "header x-lhttp-command: fetch"
}

# --- the allow-list --------------------------------------------------------------------

@test "allow-list: other ports, schemes, hosts and userinfo tricks get 403 and the canary sees no connection" {
    local c=$CANARY_PORT b=$B_PORT steps=() n=0 url
    for url in "http://127.0.0.1:$c/" "http://127.0.0.1:$c/api/" "http://localhost:$c/api/" \
        "http://127.0.0.1:$((c == 65535 ? c - 1 : c + 1))/api/" \
        "http://127.0.0.1:$b@127.0.0.1:$c/" "http://127.0.0.1:$b@127.0.0.1:$c/api/" \
        "http://user:pw@127.0.0.1:$b/api/plain/x" "http://127.0.0.1:$c#@127.0.0.1:$b/api/" \
        "http://127.0.0.1:$c\\@127.0.0.1:$b/api/" "http://2130706433:$c/api/" \
        "http://127.1:$c/api/" "http://[::1]:$c/api/" "http://127.0.0.1/api/" \
        "https://127.0.0.1:$b/api/plain/x" \
        "file:///etc/passwd" "gopher://127.0.0.1:$c/_GET%20/" "dict://127.0.0.1:$c/x" \
        "ftp://127.0.0.1:$c/api/" "ws://127.0.0.1:$c/api/" \
        "http://169.254.169.254/latest/meta-data/" "//127.0.0.1:$c/api/" "/api/plain/x" \
        "127.0.0.1:$b/api/plain/x"; do
        steps+=("$(up GET "$url")" recv)
        n=$((n + 1))
    done
    before=$(bcount "$B_LOG" --event connection)
    run upc "$MAIN_PORT" "${steps[@]}"
    [ "$(count_msg "$(err 403 'upstream URL not allowed')")" -eq "$n" ] || {
        lh_show_output
        false
    }
    [ "$(bcount "$CANARY_LOG" --event connection)" -eq 0 ]
    [ "$(bcount "$B_LOG" --event connection)" -eq "$before" ]
}

@test "allow-list: a path outside the prefix or dot segments out of it get 403 and reach nobody" {
    local b=$B_PORT steps=() n=0 url
    before=$(bcount "$B_LOG")
    for url in "http://127.0.0.1:$b/apix" "http://127.0.0.1:$b/api" "http://127.0.0.1:$b/" \
        "http://127.0.0.1:$b/admin" "http://127.0.0.1:$b/api/../admin" \
        "http://127.0.0.1:$b/api/x/../../admin" "http://127.0.0.1:$b/api/./../admin" \
        "http://127.0.0.1:$b/api/.." "http://127.0.0.1:$b//api/plain/x" \
        "http://127.0.0.1:$b/API/plain/x"; do
        steps+=("$(up GET "$url")" recv)
        n=$((n + 1))
    done
    run upc "$MAIN_PORT" "${steps[@]}"
    [ "$(count_msg "$(err 403 'upstream URL not allowed')")" -eq "$n" ] || {
        lh_show_output
        false
    }
    [ "$(bcount "$B_LOG")" -eq "$before" ]
}

@test "allow-list: percent-encoded dot segments and slashes (%2e%2e, .%2e, %2f..) get 403 and reach nobody" {
    local b=$B_PORT steps=() n=0 url
    before=$(bcount "$B_LOG")
    for url in "http://127.0.0.1:$b/api/%2e%2e/admin" "http://127.0.0.1:$b/api/%2E%2E/admin" \
        "http://127.0.0.1:$b/api/.%2e/admin" "http://127.0.0.1:$b/api/%2e./admin" \
        "http://127.0.0.1:$b/api/x/%2e%2e/%2e%2e/admin" \
        "http://127.0.0.1:$b/api/x%2f..%2f..%2fadmin" "http://127.0.0.1:$b/api/..%2fadmin" \
        "http://127.0.0.1:$b/api/..%5cadmin"; do
        steps+=("$(up GET "$url")" recv)
        n=$((n + 1))
    done
    run upc "$MAIN_PORT" "${steps[@]}"
    [ "$(count_msg "$(err 403 'upstream URL not allowed')")" -eq "$n" ] || {
        echo "the backend received:" >&2
        blog show "$B_LOG" --prefix /api/x --index -1 >&2
        lh_show_output
        false
    }
    [ "$(bcount "$B_LOG")" -eq "$before" ]
}

@test "allow-list: with upstream.allow empty, upstream is disabled: 403 for every URL, even a command webhook still works" {
    start_own_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "upstream": {"allow": []},
        "commands": {"order": {"webhook": "http://127.0.0.1:'"$B_PORT"'/hooks/order"}}
    }'
    before=$(bcount "$B_LOG" --prefix /api/)
    run upc "$LH_PORT" "$(up GET "http://127.0.0.1:$CANARY_PORT/")" recv \
        "$(up POST "http://127.0.0.1:$B_PORT/api/plain/disabled" x)" recv \
        'send:LHTTP/1.0 order\r\nsku:disabled\r\n\r\n1' recv
    [ "$(count_msg "$(err 403 'upstream is disabled (upstream.allow is empty)')")" -eq 2 ]
    has_msg 'LHTTP/1.0 order-ack\r\norder-id:42\r\n\r\naccepted'
    [ "$(bcount "$CANARY_LOG" --event connection)" -eq 0 ]
    [ "$(bcount "$B_LOG" --prefix /api/)" -eq "$before" ]
}

# --- redirects -------------------------------------------------------------------------

@test "redirects: from the allowed backend to the canary or out of the prefix: 502, and nobody outside is reached" {
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/redir/out")" recv \
        "$(up POST "http://127.0.0.1:$B_PORT/api/redir/out307" secret)" recv \
        "$(up GET "http://127.0.0.1:$B_PORT/api/redir/admin")" recv
    [ "$(count_msg "$(err 502 'redirect to a URL outside upstream.allow refused')")" -eq 3 ]
    [ "$(bcount "$B_LOG" --path /api/redir/out)" -eq 1 ]
    [ "$(bcount "$B_LOG" --path /api/redir/out307)" -eq 1 ]
    [ "$(bcount "$B_LOG" --path /admin)" -eq 0 ]
    [ "$(bcount "$CANARY_LOG" --event connection)" -eq 0 ]
}

@test "redirects: inside the allow-list they are followed; 301/302/303 turn POST into GET, 307 keeps method and body" {
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/redir/in")" recv \
        "$(up POST "http://127.0.0.1:$B_PORT/api/redir/rel" rel-body)" recv \
        "$(up POST "http://127.0.0.1:$B_PORT/api/redir/post303" body303)" recv \
        "$(up POST "http://127.0.0.1:$B_PORT/api/redir/post307" body307 'x-step: 307\r\n')" recv
    [ "$(count_msg 'LHTTP/1.0 landed\r\n\r\ntarget-body')" -eq 4 ]
    run blog count "$B_LOG" --path /api/redir/target --method GET
    [ "$output" -eq 3 ]
    run blog show "$B_LOG" --path /api/redir/target --method POST
    has_line "body 7 body307"
    has_line "header x-lhttp-x-step: 307"
    has_line "header x-lhttp-command: fetch"
}

@test "redirects: a loop stops after upstream.max_redirects (3): 502 after exactly 4 requests" {
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/redir/loop")" recv
    has_msg "$(err 502 'too many redirects')"
    [ "$(bcount "$B_LOG" --path /api/redir/loop)" -eq 4 ]
}

# --- timeouts, failures, retries, sizes ----------------------------------------------

@test "timeout: a backend slower than upstream.timeout_ms (1500) gives 504 within the timeout plus slack" {
    run upc "$MAIN_PORT" --timeout 10 "$(up GET "http://127.0.0.1:$B_PORT/api/slow/t1")" timed
    has_msg "$(err 504 'upstream timed out')"
    ms=$(sed -n 's/^elapsed //p' <<<"$output")
    echo "504 after $ms ms" >&2
    [ "$ms" -ge 1400 ]
    [ "$ms" -lt 2500 ]
    [ "$(bcount "$B_LOG" --path /api/slow/t1)" -eq 1 ]
}

@test "failure: a backend that is down (port closed) gives 502, after one retry for GET" {
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$DEAD_PORT/api/x")" timed \
        "$(up POST "http://127.0.0.1:$DEAD_PORT/api/x" body)" timed
    [ "$(count_msg "$(err 502 "upstream failed: Couldn't connect to server")")" -eq 2 ]
    # GET waited retry_delay_ms (100) for its retry.
    first=$(sed -n 's/^elapsed //p' <<<"$output" | head -n 1)
    [ "$first" -ge 90 ]
    [ "$first" -lt 1500 ]
}

@test "retries: a GET answered 503 then 200 succeeds (2 requests); POST and PATCH are not retried; at most upstream.retries (1) extra tries" {
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/flaky/get")" recv \
        "$(up POST "http://127.0.0.1:$B_PORT/api/flaky/post" once)" recv \
        "$(up PATCH "http://127.0.0.1:$B_PORT/api/flaky/patch" once)" recv \
        "$(up PUT "http://127.0.0.1:$B_PORT/api/down/put" twice)" recv
    has_msg 'LHTTP/1.0 fetch\r\n\r\nsecond try'
    has_msg "$(err 502 'upstream answered 503')"
    has_msg "$(err 502 'upstream answered 502')"
    [ "$(count_msg "$(err 502 'upstream answered 503')")" -eq 2 ]
    [ "$(bcount "$B_LOG" --path /api/flaky/get)" -eq 2 ]
    [ "$(bcount "$B_LOG" --path /api/flaky/post)" -eq 1 ]
    [ "$(bcount "$B_LOG" --path /api/flaky/patch)" -eq 1 ]
    [ "$(bcount "$B_LOG" --path /api/down/put)" -eq 2 ]
    run blog show "$B_LOG" --path /api/down/put --index 1
    has_line "body 5 twice"
}

@test "size: an answer of exactly upstream.max_response_bytes (4096) is delivered, one byte more is 502" {
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/big/at-cap")" recv \
        "$(up GET "http://127.0.0.1:$B_PORT/api/big/over")" recv
    has_match '^msg 4115 LHTTP/1\.0 fetch\\r\\n\\r\\nx+\.\.\.sha256='
    has_msg "$(err 502 'upstream answer over upstream.max_response_bytes')"
}

# --- in-flight caps ------------------------------------------------------------------

@test "flood: 500 upstream messages to a slow backend (4 in flight, the rest 429) do not slow another client's pings" {
    local dir fpid
    dir=$(lh_tmp)
    before=$(bcount "$B_LOG" --path /api/hold/flood)
    "$PY" "$UPCLIENT" --flood 500 --rate 400 --timeout 10 "ws://127.0.0.1:$MAIN_PORT/" \
        "LHTTP/1.0 flood\r\nupstream: GET http://127.0.0.1:$B_PORT/api/hold/flood\r\n\r\n" \
        >"$dir/flood.out" 2>&1 3>&- &
    fpid=$!
    lh_record "$fpid"
    wait_for 5 bcount_ge $((before + 4)) "$B_LOG" --path /api/hold/flood
    run upc "$MAIN_PORT" --pings 1000
    echo "$output" >&2
    has_match '^pings [0-9]+ '
    read -r _ n _ p50 _ p99 _ max <<<"${lines[0]}"
    [ "$n" -ge 100 ]
    awk -v p="$p99" 'BEGIN { exit !(p < 50) }'
    wait_for 15 lh_gone "$fpid"
    wait "$fpid" || true
    run cat "$dir/flood.out"
    echo "$output" >&2
    has_line "answers 500"
    limited=$(sed -n 's/^code 429 //p' <<<"$output")
    ok=$(sed -n 's/^ok //p' <<<"$output")
    [ "${limited:-0}" -ge 400 ]
    [ "$ok" -ge 4 ]
    [ $((ok + limited)) -eq 500 ]
    [ "$(bcount "$B_LOG" --path /api/hold/flood)" -eq $((before + ok)) ]
}

@test "caps: upstream.max_in_flight (6) holds for the worker: another connection gets 429 once 6 are in flight" {
    local dir apid
    dir=$(lh_tmp)
    "$PY" "$UPCLIENT" "ws://127.0.0.1:$MAIN_PORT/" \
        "$(up GET "http://127.0.0.1:$B_PORT/api/hold/cap-a")" "$(up GET "http://127.0.0.1:$B_PORT/api/hold/cap-a")" \
        "$(up GET "http://127.0.0.1:$B_PORT/api/hold/cap-a")" "$(up GET "http://127.0.0.1:$B_PORT/api/hold/cap-a")" \
        recv recv recv recv >"$dir/a.out" 2>&1 3>&- &
    apid=$!
    lh_record "$apid"
    wait_for 5 bcount_ge 4 "$B_LOG" --path /api/hold/cap-a
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/hold/cap-b")" \
        "$(up GET "http://127.0.0.1:$B_PORT/api/hold/cap-b")" \
        "$(up GET "http://127.0.0.1:$B_PORT/api/hold/cap-b")" recv recv recv
    [ "$(count_msg "$(err 429 'too many upstream requests in flight')")" -eq 1 ]
    [ "$(count_msg 'LHTTP/1.0 fetch\r\n\r\nheld')" -eq 2 ]
    wait_for 5 lh_gone "$apid"
    wait "$apid" || true
    run cat "$dir/a.out"
    [ "$(count_msg 'LHTTP/1.0 fetch\r\n\r\nheld')" -eq 4 ]
    [ "$(bcount "$B_LOG" --path /api/hold/cap-b)" -eq 2 ]
}

@test "caps: a client that leaves with upstream requests in flight: they are cancelled and free their slots" {
    # Three requests the backend holds (a webhook that answers could answer before the
    # ping's pong, and be done before the client leaves): the pong is the only reply.
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/hold/gone")" \
        "$(up POST "http://127.0.0.1:$B_PORT/api/hold/gone" x)" \
        "$(up GET "http://127.0.0.1:$B_PORT/api/hold/gone-too")" \
        'send:LHTTP/1.0 ping\r\n\r\nsync' recv drop
    has_msg 'LHTTP/1.0 pong\r\n\r\nsync'
    has_line dropped
    # The pong came after the three requests had started (messages are handled in order),
    # whether or not the backend saw them yet. Cancelled with the client, they free their
    # slots: 4 new ones fit under upstream.max_in_flight (6); 3 + 4 would not.
    run upc "$MAIN_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/hold/after-gone")" \
        "$(up GET "http://127.0.0.1:$B_PORT/api/hold/after-gone")" \
        "$(up GET "http://127.0.0.1:$B_PORT/api/hold/after-gone")" \
        "$(up GET "http://127.0.0.1:$B_PORT/api/hold/after-gone")" recv recv recv recv
    [ "$(count_msg 'LHTTP/1.0 fetch\r\n\r\nheld')" -eq 4 ] || { lh_show_output || :; false; }
}

# --- webhooks --------------------------------------------------------------------------

@test "command webhook: every \`order\` message is POSTed to its URL (outside upstream.allow) and the answer comes back" {
    run upc "$MAIN_PORT" 'send:LHTTP/1.0 order\r\nsku:abc-1\r\n\r\n{"qty":2}' recv \
        'send:LHTTP/1.0 order\r\nfail:yes\r\n\r\n' recv \
        'send:LHTTP/1.0 chat\r\n\r\nnot an order' 'send:LHTTP/1.0 ping\r\n\r\nafter' recv
    has_msg 'LHTTP/1.0 order-ack\r\norder-id:42\r\n\r\naccepted'
    has_msg "$(err 502 'upstream answered 500' order)"
    has_msg 'LHTTP/1.0 pong\r\n\r\nafter'
    peer=$(local_addr)
    run blog show "$B_LOG" --path /hooks/order --header "x-lhttp-peer:$peer"
    has_line "method POST"
    has_line 'body 9 {"qty":2}'
    has_line "header x-lhttp-command: order"
    has_line "header x-lhttp-sku: abc-1"
    has_match '^header x-lhttp-connection-id: [0-9]+$'
    [ "$(bcount "$B_LOG" --path /hooks/order --header "x-lhttp-peer:$peer")" -eq 2 ]
}

@test "connect webhook: no session cookie is 403; 401 and 429 pass through, other statuses are 403" {
    run upc "$GATED_PORT" 'send:LHTTP/1.0 ping\r\n\r\n' recv
    has_line "rejected 403"
    run upc "$GATED_PORT" -H 'Cookie: session=unauth' recv
    has_line "rejected 401"
    run upc "$GATED_PORT" -H 'Cookie: session=limit' recv
    has_line "rejected 429"
    run upc "$GATED_PORT" -H 'Cookie: session=broken' recv
    has_line "rejected 403"
    [ "$(bcount "$HOOK_LOG" --path /hooks/connect --header 'cookie:session=broken')" -eq 1 ]
}

@test "connect webhook: with the cookie the handshake completes; the backend saw the request's headers" {
    run "$PY" "$UPCLIENT" -H 'Cookie: session=ok; theme=dark' -H 'Authorization: Bearer tok-1' \
        -H 'Origin: https://app.example' "ws://127.0.0.1:$GATED_PORT/ws?room=1" \
        'send:LHTTP/1.0 ping\r\n\r\nhooked' recv
    has_msg 'LHTTP/1.0 pong\r\n\r\nhooked'
    peer=$(local_addr)
    run blog show "$HOOK_LOG" --path /hooks/connect --header "x-lhttp-peer:$peer"
    has_line "method POST"
    has_line "header cookie: session=ok; theme=dark"
    has_line "header authorization: Bearer tok-1"
    has_line "header origin: https://app.example"
    has_match '^header user-agent: Python'
    has_line "header x-lhttp-event: connect"
    has_line "header x-lhttp-path: /ws?room=1"
    has_match '^header x-lhttp-connection-id: [0-9]+$'
    no_match '^header sec-websocket-'
    no_match '^header (upgrade|connection): '
}

@test "connect and disconnect events: the ids match the connection's, the disconnect body has the close code" {
    run upc "$GATED_PORT" -H 'Cookie: session=ok' \
        "$(up GET "http://127.0.0.1:$B_PORT/api/plain/whoami")" recv close:1000
    has_msg 'LHTTP/1.0 fetch\r\n\r\nplain-body'
    has_line "closed 1000"
    peer=$(local_addr)
    id=$(blog show "$HOOK_LOG" --path /hooks/connect --header "x-lhttp-peer:$peer" |
        sed -n 's/^header x-lhttp-connection-id: //p')
    [ -n "$id" ]
    [ "$(bcount "$B_LOG" --path /api/plain/whoami --header "x-lhttp-connection-id:$id")" -eq 1 ]
    wait_for 5 bcount_ge 1 "$HOOK_LOG" --path /hooks/disconnect --header "x-lhttp-connection-id:$id"
    run blog show "$HOOK_LOG" --path /hooks/disconnect --header "x-lhttp-connection-id:$id"
    has_line "method POST"
    has_line "header x-lhttp-event: disconnect"
    has_line "header content-type: application/json"
    body=$(sed -n 's/^body [0-9]* //p' <<<"$output")
    [ "$(jq -c . <<<"$body")" = "{\"connection\":$id,\"peer\":\"$peer\",\"code\":1000}" ]

    # A client that vanishes without a close frame: code 1006.
    run upc "$GATED_PORT" -H 'Cookie: session=ok' 'send:LHTTP/1.0 ping\r\n\r\n' recv drop
    has_line dropped
    peer=$(local_addr)
    id=$(blog show "$HOOK_LOG" --path /hooks/connect --header "x-lhttp-peer:$peer" |
        sed -n 's/^header x-lhttp-connection-id: //p')
    wait_for 5 bcount_ge 1 "$HOOK_LOG" --path /hooks/disconnect --header "x-lhttp-connection-id:$id"
    body=$(blog show "$HOOK_LOG" --path /hooks/disconnect --header "x-lhttp-connection-id:$id" |
        sed -n 's/^body [0-9]* //p')
    [ "$(jq -c .code <<<"$body")" = 1006 ]
}

@test "disconnect webhook: a refused handshake sends no disconnect event" {
    run upc "$GATED_PORT" -H 'Cookie: session=none' recv
    has_line "rejected 403"
    id=$(blog show "$HOOK_LOG" --path /hooks/connect --header 'cookie:session=none' --index -1 |
        sed -n 's/^header x-lhttp-connection-id: //p')
    [ -n "$id" ]
    # A later connection's disconnect arrives; the refused one's would have come first.
    run upc "$GATED_PORT" -H 'Cookie: session=ok' close:1000
    peer=$(local_addr)
    id2=$(blog show "$HOOK_LOG" --path /hooks/connect --header "x-lhttp-peer:$peer" |
        sed -n 's/^header x-lhttp-connection-id: //p')
    wait_for 5 bcount_ge 1 "$HOOK_LOG" --path /hooks/disconnect --header "x-lhttp-connection-id:$id2"
    [ "$(bcount "$HOOK_LOG" --path /hooks/disconnect --header "x-lhttp-connection-id:$id")" -eq 0 ]
}

@test "connect webhook: slower than webhooks.timeout_ms (600) is 503; a client that leaves meanwhile costs nothing" {
    start=${EPOCHREALTIME/./}
    run upc "$GATED_PORT" -H 'Cookie: session=slow' recv
    ms=$(((${EPOCHREALTIME/./} - start) / 1000))
    has_line "rejected 503"
    echo "503 after $ms ms" >&2
    [ "$ms" -lt 2000 ]
    before=$(bcount "$HOOK_LOG" --path /hooks/connect --header 'cookie:session=slow')
    exec 5<>"/dev/tcp/127.0.0.1/$GATED_PORT"
    printf 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: session=slow\r\n\r\n' >&5
    wait_for 5 bcount_ge $((before + 1)) "$HOOK_LOG" --path /hooks/connect --header 'cookie:session=slow'
    exec 5>&-
    run upc "$GATED_PORT" -H 'Cookie: session=ok' 'send:LHTTP/1.0 ping\r\n\r\nstill' recv
    has_msg 'LHTTP/1.0 pong\r\n\r\nstill'
}

@test "connect webhook: the client's own X-Lhttp-* handshake headers cannot pass for lhttpd's" {
    run "$PY" "$UPCLIENT" -H 'Cookie: session=ok' -H 'X-Lhttp-Peer: 6.6.6.6:1' \
        -H 'X-Lhttp-Connection-Id: 1' -H 'X-Lhttp-Event: disconnect' -H 'X-Lhttp-Path: /admin' \
        "ws://127.0.0.1:$GATED_PORT/ws?spoof=1" close:1000
    has_line "closed 1000"
    peer=$(local_addr)
    run blog show "$HOOK_LOG" --path /hooks/connect --header 'x-lhttp-path:/ws?spoof=1'
    for h in peer connection-id event path; do
        [ "$(grep -c "^header x-lhttp-$h: " <<<"$output")" -eq 1 ] || { lh_show_output || :; false; }
    done
    has_line "header x-lhttp-peer: $peer"
    has_line "header x-lhttp-event: connect"
    no_match '^header x-lhttp-connection-id: 1$'
}

@test "connect webhook: the POST goes to the webhook's own Host, not the one the client named" {
    local key=dGhlIHNhbXBsZSBub25jZQ==
    run probe "send:GET /ws?host=1 HTTP/1.1\r\nHost: evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\nCookie: session=ok\r\n\r\n" \
        response
    has_line "status 101"
    run blog show "$HOOK_LOG" --path /hooks/connect --header 'x-lhttp-path:/ws?host=1'
    has_line "header host: 127.0.0.1:$HOOK_PORT"
    no_match '^header host: evil'
}

@test "connect webhook: a handshake in absolute-form (GET http://host/ws?q) shows the path and query, as the origin-form would" {
    local key=dGhlIHNhbXBsZSBub25jZQ==
    run probe "send:GET http://127.0.0.1:$LH_PORT/ws?abs=1 HTTP/1.1\r\nHost: 127.0.0.1:$LH_PORT\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\nCookie: session=ok\r\n\r\n" \
        response
    has_line "status 101"
    [ "$(bcount "$HOOK_LOG" --path /hooks/connect --header 'x-lhttp-path:/ws?abs=1')" -eq 1 ]
}

@test "connect webhook: frames sent right behind the handshake wait for the webhook, then are answered in order" {
    local key=dGhlIHNhbXBsZSBub25jZQ==
    run probe "send:GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\nCookie: session=ok\r\n\r\n" \
        'text:LHTTP/1.0 ping\r\n\r\none' 'text:LHTTP/1.0 ping\r\n\r\ntwo' response msgtext msgtext
    has_line "status 101"
    has_line 'text 21 LHTTP/1.0 pong\r\n\r\none'
    has_line 'text 21 LHTTP/1.0 pong\r\n\r\ntwo'
}

@test "connect webhook: a refused handshake frees its connection at once (limits.max_connections 2)" {
    start_own_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "limits": {"max_connections": 2},
        "webhooks": {"connect": "http://127.0.0.1:'"$HOOK_PORT"'/hooks/connect"}
    }'
    for i in 1 2 3 4; do
        run upc "$LH_PORT" recv
        has_line "rejected 403"
    done
    run upc "$LH_PORT" -H 'Cookie: session=ok' 'send:LHTTP/1.0 ping\r\n\r\nslot' recv
    has_msg 'LHTTP/1.0 pong\r\n\r\nslot'
}

# handshake PORT COOKIE: a WebSocket handshake request for wsprobe's send step.
handshake() {
    printf 'send:GET /ws HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\nCookie: %s\\r\\n\\r\\n' "$1"
}

# accepted: lhttpd_websocket_connections_accepted_total on LH_PORT.
accepted() {
    curl -s --max-time 5 "http://127.0.0.1:$LH_PORT/metrics" |
        sed -n 's/^lhttpd_websocket_connections_accepted_total //p'
}

@test "connect webhook: a client that resets before the webhook agrees costs nothing (the 101 finds it gone)" {
    local i
    start_own_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "webhooks": {"connect": "http://127.0.0.1:'"$HOOK_PORT"'/hooks/connect", "timeout_ms": 3000}
    }'
    for i in 1 2 3; do
        # The webhook agrees after 1 s; the client is gone (RST) long before, with a
        # frame still unread behind its handshake.
        run probe "$(handshake session=late)" 'text:LHTTP/1.0 ping\r\n\r\nearly' wait:100 rst
        has_line rst
    done
    # A later client with the same webhook delay completes after the three answers came.
    run probe --timeout 10 "$(handshake session=late)" response 'text:LHTTP/1.0 ping\r\n\r\nafter' msgtext
    has_line "status 101"
    has_line 'text 23 LHTTP/1.0 pong\r\n\r\nafter'
    wait_for 5 bcount_ge 4 "$HOOK_LOG" --event answered --path /hooks/connect --header 'cookie:session=late'
}

@test "connect webhook: past limits.handshake_timeout_ms the client gets 408, and the webhook's late yes opens nothing" {
    local peer
    start_own_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "limits": {"handshake_timeout_ms": 300},
        "webhooks": {"connect": "http://127.0.0.1:'"$HOOK_PORT"'/hooks/connect",
                     "disconnect": "http://127.0.0.1:'"$HOOK_PORT"'/hooks/disconnect",
                     "timeout_ms": 3000}
    }'
    # The webhook says yes after 1 s; the handshake deadline is 0.3 s.
    run probe --timeout 5 "$(handshake session=late)" 'text:LHTTP/1.0 ping\r\n\r\ntoo-late' response eof
    has_line "status 408"
    has_line eof
    # Once the webhook has said yes, nothing opens: no WebSocket within a second of it.
    wait_for 5 bcount_ge 1 "$HOOK_LOG" --event answered --path /hooks/connect --header 'cookie:session=late'
    opened() { [ "$(accepted)" != 0 ]; }
    ! wait_for 1 opened 2>/dev/null || { echo "the late answer opened a WebSocket"; return 1; }
    # (By its peer address: connection ids repeat between the servers of this file.)
    peer=$(blog show "$HOOK_LOG" --path /hooks/connect --header 'cookie:session=late' --index -1 |
        sed -n 's/^header x-lhttp-peer: //p')
    [ -n "$peer" ]
    [ "$(bcount "$HOOK_LOG" --path /hooks/disconnect --header "x-lhttp-peer:$peer")" -eq 0 ]
    # And the server still serves.
    run upc "$LH_PORT" -H 'Cookie: session=ok' 'send:LHTTP/1.0 ping\r\n\r\nstill' recv
    has_msg 'LHTTP/1.0 pong\r\n\r\nstill'
}

@test "connect webhook: unreachable is 503" {
    start_own_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "webhooks": {"connect": "http://127.0.0.1:'"$DEAD_PORT"'/hooks/connect"}
    }'
    run upc "$LH_PORT" recv
    has_line "rejected 503"
    run probe upgrade:/
    has_line "status 503"
}

# whm KIND RESULT: lhttpd_webhooks_total{kind=KIND,result=RESULT} from /metrics on LH_PORT.
whm() {
    curl -s --max-time 5 "http://127.0.0.1:$LH_PORT/metrics" |
        sed -n "s/^lhttpd_webhooks_total{kind=\"$1\",result=\"$2\"} //p"
}

whm_is() { [ "$(whm "$1" "$2")" = "$3" ]; }

# storm N FILE [ARGS...]: hsstorm.py against LH_PORT in the background, output to FILE
# (it holds its connections until FILE.stop exists); sets STORM_PID.
storm() {
    local n=$1 f=$2
    shift 2
    "$PY" "$LH_LIB/hsstorm.py" "$LH_PORT" "$n" --stop-file "$f.stop" "$@" >"$f" 2>&1 3>&- &
    STORM_PID=$!
    lh_record "$STORM_PID"
    wait_for 20 grep -q '^holding' "$f" || { cat "$f" >&2; return 1; }
}

# open_is LOG N / open_le LOG N: the backend's open connections now.
open_is() { [ "$(blog open "$1")" -eq "$2" ]; }
open_le() { [ "$(blog open "$1")" -le "$2" ]; }

@test "connect webhook: handshakes beyond upstream.max_in_flight (50) get 503 with Retry-After at once, counted; the backend never holds more than 50" {
    local dir
    dir=$(lh_tmp)
    start_backend STALL '{"/hooks/connect": {"hang": true}}'
    start_own_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "limits": {"handshake_timeout_ms": 6000},
        "upstream": {"max_in_flight": 50},
        "webhooks": {"connect": "http://127.0.0.1:'"$STALL_PORT"'/hooks/connect", "timeout_ms": 20000}
    }'
    # The webhook never answers (and times out after 20 s): 250 answers within 5 s can
    # only be the cap's. A waiting handshake is not read, so the 50 end at the
    # handshake timeout (6 s, 408), whether or not their clients are still there.
    storm 300 "$dir/storm" --answers 250 --wait 5
    run cat "$dir/storm"
    echo "$output" >&2
    has_line "status 503 250"
    has_line "retry-after 250"
    has_line "pending 50"
    wait_for 5 open_is "$STALL_LOG" 50
    [ "$(blog peak "$STALL_LOG")" -eq 50 ]
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$LH_PORT/livez")" = 200 ]
    whm_is connect limited 250
    [ "$(metric limited)" = 250 ]
    # The clients leave; at the handshake timeout their webhooks are cancelled and the
    # backend's connections close.
    touch "$dir/storm.stop"
    wait_for 10 lh_gone "$STORM_PID"
    wait_for 15 open_is "$STALL_LOG" 0
    # And the slots are free again: a new handshake reaches the backend.
    run probe --timeout 5 "$(handshake x=1)" wait:300 rst
    wait_for 5 bcount_ge 51 "$STALL_LOG" --path /hooks/connect
}

@test "disconnect webhook: 300 clients leaving at once (upstream.max_in_flight 20) are all POSTed, 20 at a time, counted; idle connections close after upstream.idle_timeout_ms" {
    local dir
    dir=$(lh_tmp)
    start_backend SINK '{"/hooks/disconnect": {"status": 204, "delay_ms": 20}}'
    start_own_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "upstream": {"max_in_flight": 20, "idle_timeout_ms": 500},
        "webhooks": {"disconnect": "http://127.0.0.1:'"$SINK_PORT"'/hooks/disconnect"}
    }'
    storm 300 "$dir/storm"
    run cat "$dir/storm"
    has_line "status 101 300"
    touch "$dir/storm.stop"
    wait_for 20 bcount_ge 300 "$SINK_LOG" --path /hooks/disconnect ||
        { echo "the backend got $(bcount "$SINK_LOG" --path /hooks/disconnect)" >&2; false; }
    [ "$(bcount "$SINK_LOG" --path /hooks/disconnect)" -eq 300 ]
    [ "$(blog busy "$SINK_LOG")" -le 20 ]
    wait_for 5 whm_is disconnect ok 300
    whm_is disconnect limited 0
    [ "$(metric ok)" = 300 ]
    # After the burst: no keep-alive connection is left open to the backend.
    wait_for 5 open_is "$SINK_LOG" 0 || { echo "open: $(blog open "$SINK_LOG")" >&2; false; }
}

@test "disconnect webhook: webhooks.disconnect_queue (100) bounds the queue: the rest are dropped and counted limited; upstream.max_idle_connections (4) caps idle connections" {
    local dir ok lim got
    dir=$(lh_tmp)
    start_backend SINK '{"/hooks/disconnect": {"status": 204, "delay_ms": 300}}'
    start_own_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "upstream": {"max_in_flight": 20, "max_idle_connections": 4, "idle_timeout_ms": 600000},
        "webhooks": {"disconnect": "http://127.0.0.1:'"$SINK_PORT"'/hooks/disconnect",
                     "disconnect_queue": 100}
    }'
    storm 300 "$dir/storm"
    touch "$dir/storm.stop"
    all_counted() { [ $(($(whm disconnect ok) + $(whm disconnect limited))) -eq 300 ]; }
    wait_for 20 all_counted || { echo "ok $(whm disconnect ok) limited $(whm disconnect limited)" >&2; false; }
    ok=$(whm disconnect ok) lim=$(whm disconnect limited)
    got=$(bcount "$SINK_LOG" --path /hooks/disconnect)
    echo "ok $ok limited $lim backend $got" >&2
    [ "$got" -eq "$ok" ]
    [ "$ok" -ge 120 ]
    [ "$lim" -gt 0 ]
    [ "$lim" -le 180 ]
    [ "$(blog busy "$SINK_LOG")" -le 20 ]
    wait_for 5 open_le "$SINK_LOG" 4 || { echo "open: $(blog open "$SINK_LOG")" >&2; false; }
}

# --- configuration and metrics -------------------------------------------------------

@test "upstream.header_prefix and report_errors false: other prefix both ways; failures send nothing but are counted" {
    start_own_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "upstream": {"allow": ["http://127.0.0.1:'"$B_PORT"'/api/"], "header_prefix": "X-App-",
                     "report_errors": false}
    }'
    # X-App-* answers come from a route written now.
    jq '. + {"/api/prefix": {"headers": {"X-App-Command": "pfx-ok", "X-App-Mark": "m1",
        "X-Lhttp-Other": "ignored"}, "body": "pfx-body"}}' "$B_ROUTES" >"$B_ROUTES.new"
    mv "$B_ROUTES.new" "$B_ROUTES"
    run upc "$LH_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/prefix" '' 'x-user: carol\r\n')" recv
    has_msg 'LHTTP/1.0 pfx-ok\r\nmark:m1\r\n\r\npfx-body'
    run blog show "$B_LOG" --path /api/prefix
    has_line "header x-app-command: fetch"
    has_line "header x-app-x-user: carol"
    has_match '^header x-app-connection-id: [0-9]+$'
    no_match '^header x-lhttp-'
    # A 404 answered at once, then an answer held 500 ms: without error reports the held
    # one is the first message.
    run upc "$LH_PORT" "$(up GET "http://127.0.0.1:$B_PORT/api/notfound")" \
        "$(up GET "http://127.0.0.1:$B_PORT/api/hold/no-report")" recv
    [ "${lines[1]#msg * }" = 'LHTTP/1.0 fetch\r\n\r\nheld' ] || { lh_show_output || :; false; }
    metric_is http_error 1
    metric_is ok 2
}

@test "metrics: lhttpd_upstream_requests_total counts each result as it happened" {
    start_own_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "upstream": {"allow": ["http://127.0.0.1:'"$B_PORT"'/api/", "http://127.0.0.1:'"$DEAD_PORT"'/api/"],
                     "timeout_ms": 1000, "max_in_flight_per_conn": 1},
        "commands": {"order": {"webhook": "http://127.0.0.1:'"$B_PORT"'/hooks/order"}}
    }'
    for r in ok http_error refused timeout failed limited; do
        [ "$(metric "$r")" = 0 ] || { echo "$r is $(metric "$r") at start" >&2; false; }
    done
    run upc "$LH_PORT" --timeout 5 \
        "$(up GET "http://127.0.0.1:$B_PORT/api/plain/m1")" recv \
        "$(up POST "http://127.0.0.1:$B_PORT/api/plain/m2" x)" recv \
        'send:LHTTP/1.0 order\r\n\r\nm3' recv \
        "$(up GET "http://127.0.0.1:$B_PORT/api/notfound")" recv \
        "$(up GET "http://127.0.0.1:$CANARY_PORT/")" recv \
        "$(up GET "http://127.0.0.1:$B_PORT/apix")" recv \
        "$(up GET "http://127.0.0.1:$B_PORT/api/redir/out")" recv \
        "$(up GET "http://127.0.0.1:$B_PORT/api/slow/m")" recv \
        "$(up GET "http://127.0.0.1:$DEAD_PORT/api/m")" recv \
        "$(up GET "http://127.0.0.1:$B_PORT/api/hold/m")" "$(up GET "http://127.0.0.1:$B_PORT/api/plain/m4")" \
        recv recv 'send:LHTTP/1.0 fetch\r\nupstream: GET\r\n\r\n' recv
    [ "$(count_msg "$(err 429 'too many upstream requests in flight')")" -eq 1 ]
    has_msg 'LHTTP/1.0 fetch\r\n\r\nheld'
    want="ok=4 http_error=1 refused=3 timeout=1 failed=1 limited=1"
    got() {
        local r s=""
        for r in ok http_error refused timeout failed limited; do s="$s $r=$(metric "$r")"; done
        echo "${s# }"
    }
    wait_for 5 test "$(got)" = "$want" || { echo "got: $(got); want: $want" >&2; false; }
    # The `order` command webhook among them, by kind.
    whm_is command ok 1
    whm_is connect ok 0
}
