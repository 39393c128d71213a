#!/usr/bin/env bats
# Live connection handoff (worker/handoff.c): on a reload, the retiring workers hand
# their WebSocket connections to the new generation instead of draining them. Clients
# are tests/lib/wspool.py (python websockets: every message numbered, each client checks
# that it gets each of its channel's messages once and in order) and tests/lib/pubsub.py.
# HANDOFF_CLIENTS sets the pool's size (default 1000, under a minute on 2 cores).

load ../lib/helpers

setup() { T=$(lh_tmp); }
teardown() { stop_all; }

CLIENTS=${HANDOFF_CLIENTS:-1000}

# start_server [JSON_MEMBERS]: lhttpd with 2 workers on NATS, plus these members.
start_server() {
    start_lhttpd '{ "listen": ["127.0.0.1:@PORT@"], "workers": 2,
        "shutdown_timeout_ms": 3000, "drain_timeout_ms": 120000,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]}'"${1:+, $1}"' }'
}

ctl() { "$LHTTPD" -s "$1" -c "$LH_CONF"; }

# rewrite_conf SED_EXPR: edits the running server's file in place (atomically).
rewrite_conf() { sed -e "$1" "$LH_CONF" >"$LH_CONF.tmp" && mv "$LH_CONF.tmp" "$LH_CONF"; }

# workers_info: "SLOT PID GENERATION STATE CONNECTIONS" per worker.
workers_info() { ctl status | awk '$1 == "worker" { print $2, $4, $6, $7, $8 }'; }
# only_generation G: every worker alive is of generation G (the old ones exited).
only_generation() { [ -z "$(workers_info | awk -v g="$1" '$3 != g')" ]; }

metric() {
    curl -s "http://127.0.0.1:$LH_PORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'
}

start_pool() {
    local name=$1
    shift
    "$PY" "$LH_LIB/wspool.py" "$@" "$LH_PORT" >"$T/$name.out" 2>&1 3>&- &
    POOL_PID=$!
    lh_record "$POOL_PID"
}
pool_has() { grep -qE -- "$2" "$T/$1.out"; }
wait_pool() {
    wait_for "$3" pool_has "$1" "$2|^connect-failed|^sync-failed|Traceback" || {
        cat "$T/$1.out" >&2
        return 1
    }
    ! pool_has "$1" '^connect-failed|^sync-failed|Traceback' || { cat "$T/$1.out" >&2; return 1; }
}
finish_pool() {
    kill -USR1 "$POOL_PID"
    wait_for 60 lh_gone "$POOL_PID" || return 1
    output=$(cat "$T/$1.out")
}
report_is() {
    grep -qx -- "$2 $3" "$T/$1.out" && return 0
    echo "pool $1: expected \"$2 $3\"; its output:" >&2
    cat "$T/$1.out" >&2
    return 1
}

# counters_sane: every lhttpd counter of the scrape in $T/prev.prom is <= now.
counters_monotonic() {
    curl -s "http://127.0.0.1:$LH_PORT/metrics" >"$T/now.prom"
    if [ -f "$T/prev.prom" ]; then
        awk 'NR == FNR { if ($1 ~ /_total(\{|$)/) prev[$1] = $2; next }
             ($1 in prev) && $2 + 0 < prev[$1] + 0 { print "went down:", $1, prev[$1], $2; bad = 1 }
             END { exit bad }' "$T/prev.prom" "$T/now.prom" || return 1
    fi
    mv "$T/now.prom" "$T/prev.prom"
}

@test "reload hands every connection over: $CLIENTS clients publishing through 5 reloads, none closed, each message once and in order, old workers gone in seconds" {
    start_server
    start_pool load --clients "$CLIENTS" --channels 20 --rate "${HANDOFF_RATE:-1000}" --publish --timeout 60
    wait_pool load '^publishing' 90
    counters_monotonic
    for i in 1 2 3 4 5; do
        run ctl reload
        [ "$status" -eq 0 ] || { echo "$output"; cat "$LH_LOG" >&2; false; }
        # The old generation's workers are gone within seconds, not drain_timeout_ms.
        wait_for 10 only_generation $((i + 1)) || { workers_info; cat "$LH_LOG" >&2; false; }
        counters_monotonic
    done
    finish_pool load
    report_is load open "$CLIENTS closed 0"
    report_is load missing 0
    report_is load disorder 0
    report_is load errors 0
    [[ $output =~ published\ ([0-9]+) ]]
    echo "# ${BASH_REMATCH[1]} messages to $CLIENTS clients through 5 reloads" >&3
    [ "${BASH_REMATCH[1]}" -ge 50 ]
    # Every client was handed over (+1: the publisher) five times.
    sent=$(metric 'lhttpd_handoff_total{result="sent"}')
    adopted=$(metric 'lhttpd_handoff_total{result="adopted"}')
    [ "$sent" -eq $((5 * (CLIENTS + 1))) ] || { echo "sent $sent"; false; }
    [ "$adopted" -eq "$sent" ]
    [ "$(metric 'lhttpd_handoff_total{result="failed"}')" -eq 0 ]
    echo "# handoff messages: sent from the buffer $(metric 'lhttpd_handoff_messages_total{result="sent"}'), skipped as delivered $(metric 'lhttpd_handoff_messages_total{result="skipped"}'), dropped $(metric 'lhttpd_handoff_messages_total{result="dropped"}')" >&3
    [ "$(metric 'lhttpd_handoff_messages_total{result="dropped"}')" -eq 0 ]
    ! grep -E 'died|AddressSanitizer|runtime error' "$LH_LOG"
}
