#!/usr/bin/env bats
# The NATS hop only between workers (nats.publish "auto", the default): a message goes to
# NATS only when another worker of the node has its channel (the interest filter in shared
# memory) or another lhttpd node is on the same NATS (presence messages on
# <prefix>.$peers). nats.publish "always" publishes everything, for services that
# subscribe to lhttpd's subjects themselves. Waits poll conditions with deadlines.

load ../lib/helpers
load ../lib/pubsub

teardown() {
    # A stopped nats-server holds its port and would hang whoever tries it next.
    if [ -n "${NATS_STOPPED:-}" ]; then kill -CONT "$NATS_STOPPED" 2>/dev/null || true; fi
    NATS_STOPPED=
    stop_all
    ! grep -E -A12 'AddressSanitizer|LeakSanitizer|runtime error:' "$(lh_tmp)"/lhttpd-*.log >&2
}

# metric NAME [PORT]: the value of a series on /metrics (summed over its labels).
metric() {
    curl -s --max-time 2 "http://127.0.0.1:${2:-$LH_PORT}/metrics" |
        awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
metric_is() { [ "$(metric "$1" "${3:-}")" = "$2" ]; }

# post CHANNEL BODY [PORT]: POST /publish of a message to CHANNEL; prints the status.
post() {
    local f
    f=$(lh_tmp)/post.$$
    printf 'LHTTP/1.0 msg\r\npublish:%s\r\n\r\n%s' "$1" "$2" >"$f"
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 --data-binary @"$f" \
        "http://127.0.0.1:${3:-$LH_PORT}/publish"
}

# readyz_is CODE [PORT]: /readyz answers CODE.
readyz_is() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
        "http://127.0.0.1:${2:-$LH_PORT}/readyz")" = "$1" ]
}

# now_ms: the wall clock in milliseconds.
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# hang_nats / unhang_nats: SIGSTOP / SIGCONT the nats-server (NATS_PID): it keeps its
# sockets, accepts connections and reads nothing. Teardown continues it.
hang_nats() { NATS_STOPPED=$NATS_PID; kill -STOP "$NATS_PID"; }
unhang_nats() { kill -CONT "$NATS_PID"; NATS_STOPPED=; }

# settled [PORT]: every worker is past its (re)connection grace and has no peer: four
# publishes in a row to a channel nobody has are all skipped.
settled() {
    local before after i
    before=$(metric lhttpd_nats_publishes_skipped_total "${1:-}")
    for i in 1 2 3 4; do post nobody.here x "${1:-}" >/dev/null; done
    after=$(metric lhttpd_nats_publishes_skipped_total "${1:-}")
    [ $((after - before)) -eq 4 ]
}

# both_workers_have_a_channel: lhttpd_worker_channels is 1 for each of the two workers.
both_workers_have_a_channel() {
    local v
    v=$(curl -s --max-time 2 "http://127.0.0.1:$LH_PORT/metrics" |
        awk '$1 ~ /^lhttpd_worker_channels\{/ && $2 == 1 { n++ } END { print n + 0 }')
    [ "$v" -eq 2 ]
}

# subs_on_nats SUBJECT N: nats-server holds N subscriptions to SUBJECT (--monitor).
subs_on_nats() { [ "$(nats_sub_count "$NATS_MON_PORT" "$1")" -eq "$2" ]; }

# lhttpd_on NAME [WORKERS] [NATS_MEMBERS]: starts lhttpd on the current nats-server with
# these extra members in its "nats" section, saved as NAME (see save_lhttpd).
lhttpd_on() {
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": '"${2:-1}"',
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]'"${3:+, $3}"'}
    }' || return 1
    save_lhttpd "$1"
}

@test "nats.publish auto, one node with one worker: messages reach the subscribers and never go to NATS" {
    start_nats
    lhttpd_on A 1
    wait_for 5 settled
    nats_watch w 'lhttp.>'
    out0=$(metric 'lhttpd_nats_messages_total{direction="out"}')
    skip0=$(metric lhttpd_nats_publishes_skipped_total)
    run ps_run open:p:$LH_PORT open:s:$LH_PORT sub:s:room pub:p:room:over-ws recv:s barrier:p
    [ "$status" -eq 0 ] || lh_show_output
    has_line "$(got s 'LHTTP/1.0 msg\r\npublish:room\r\n\r\nover-ws')"
    [ "$(post room over-http)" = 200 ]
    [ "$(metric lhttpd_nats_publishes_skipped_total)" -eq $((skip0 + 2)) ]
    [ "$(metric 'lhttpd_nats_messages_total{direction="out"}')" -eq "$out0" ]
    metric_is lhttpd_nats_peer_nodes 0
    run ! grep -q '^msg lhttp.room ' "$(lh_tmp)/w.out"
    assert_server_ok
}

@test "nats.publish always: every message goes to NATS, where a plain NATS subscriber sees it" {
    start_nats
    lhttpd_on A 1 '"publish": "always"'
    nats_watch w 'lhttp.room'
    run ps_run open:p:$LH_PORT open:s:$LH_PORT sub:s:room pub:p:room:over-ws recv:s barrier:p
    [ "$status" -eq 0 ] || lh_show_output
    [ "$(post room over-http)" = 200 ]
    wait_bg w '^msg lhttp\.room LHTTP/1\.0 msg'
    wait_for 5 bash -c "[ \$(grep -c '^msg lhttp.room ' '$(lh_tmp)/w.out') -eq 2 ]"
    grep -q 'over-ws$' "$(lh_tmp)/w.out"
    grep -q 'over-http$' "$(lh_tmp)/w.out"
    metric_is lhttpd_nats_publishes_skipped_total 0
    [ "$(metric 'lhttpd_nats_messages_total{direction="out"}')" -ge 2 ]
}

@test "two workers: a channel no worker has is not published; one the other worker has is, and every subscriber gets it" {
    start_nats --monitor
    lhttpd_on A 2
    wait_for 5 settled
    skip0=$(metric lhttpd_nats_publishes_skipped_total)
    out0=$(metric 'lhttpd_nats_messages_total{direction="out"}')
    [ "$(post nobody.at.all x)" = 200 ]
    [ "$(metric lhttpd_nats_publishes_skipped_total)" -eq $((skip0 + 1)) ]
    [ "$(metric 'lhttpd_nats_messages_total{direction="out"}')" -eq "$out0" ]
    # Subscribers, one connection at a time, until both workers have the channel (which
    # worker accepts a connection is up to the kernel and the accept balancing).
    n=0
    while ! both_workers_have_a_channel; do
        n=$((n + 1))
        [ "$n" -le 40 ] || { echo "40 subscribers, still one worker" >&2; return 1; }
        ps_bg sub$n open:s$n:$LH_PORT sub:s$n:both print:ready recv:s$n
        wait_bg sub$n '^ready$'
    done
    # Each worker's NATS subscription is in place: one publish, on either worker, reaches all.
    wait_for 5 subs_on_nats lhttp.both 2
    [ "$(post both hello)" = 200 ]
    for i in $(seq 1 "$n"); do
        eval "wait_gone \$PS_PID_sub$i 10"
        grep -qxF "$(got s$i 'LHTTP/1.0 msg\r\npublish:both\r\n\r\nhello')" "$(lh_tmp)/sub$i.out"
    done
    [ "$(metric 'lhttpd_nats_messages_total{direction="out"}')" -eq $((out0 + 1)) ]
    [ "$(metric lhttpd_nats_publishes_skipped_total)" -eq $((skip0 + 1)) ]
}

@test "two nodes see each other and publish across; when one stops, the other stops publishing after nats.peer_timeout_ms" {
    start_nats --monitor
    lhttpd_on A 1 '"peer_timeout_ms": 1000'
    lhttpd_on B 1 '"peer_timeout_ms": 1000'
    wait_for 5 metric_is lhttpd_nats_peer_nodes 1 "$A_PORT"
    wait_for 5 metric_is lhttpd_nats_peer_nodes 1 "$B_PORT"
    run ps_run open:p:$A_PORT open:s:$B_PORT sub:s:across sync:p:s:across pub:p:across:hi recv:s
    [ "$status" -eq 0 ] || lh_show_output
    has_line "$(got s 'LHTTP/1.0 msg\r\npublish:across\r\n\r\nhi')"
    use_lhttpd A
    wait_log 'lhttpd node [0-9a-f]{16} present'
    lh_stop_pid "$B_PID"
    wait_for 5 metric_is lhttpd_nats_peer_nodes 0 "$A_PORT"
    wait_log 'lhttpd node [0-9a-f]{16} silent for 1000 ms; gone'
    wait_for 5 settled "$A_PORT"
    assert_server_ok
}

@test "a node that joins later gets the first message published after its client subscribed" {
    start_nats --monitor
    lhttpd_on A 1
    wait_for 5 settled "$A_PORT"
    lhttpd_on B 1
    ps_bg s open:s:$B_PORT sub:s:late print:ready recv:s
    wait_bg s '^ready$'
    wait_for 5 nats_has_sub "$NATS_MON_PORT" lhttp.late
    # One publish, no retry: A knows of B from B's hello, sent before B accepted anyone.
    [ "$(post late first "$A_PORT")" = 200 ]
    wait_bg s "^s got [0-9]+ LHTTP/1.0 msg.r.npublish:late.r.n.r.nfirst$"
    metric_is lhttpd_nats_peer_nodes 1 "$A_PORT"
}

@test "a hung nats-server (SIGSTOP): /readyz is 503 within 3 s, the stall and what may be lost are counted; after SIGCONT delivery across nodes resumes" {
    start_nats --monitor
    lhttpd_on A 1
    lhttpd_on B 1
    wait_for 5 metric_is lhttpd_nats_peer_nodes 1 "$A_PORT"
    wait_for 5 metric_is lhttpd_nats_peer_nodes 1 "$B_PORT"
    readyz_is 200 "$A_PORT"
    metric_is lhttpd_nats_stalls_total 0 "$A_PORT"
    hang_nats
    # Written into the hung server's socket: gone with it, and counted as possibly lost.
    for i in 1 2 3; do [ "$(post across lost-$i "$A_PORT")" = 200 ]; done
    wait_for 3 readyz_is 503 "$A_PORT"
    wait_for 3 readyz_is 503 "$B_PORT"
    metric_is lhttpd_nats_stalls_total 1 "$A_PORT"
    metric_is lhttpd_nats_stalls_total 1 "$B_PORT"
    [ "$(metric lhttpd_nats_possibly_lost_total "$A_PORT")" -ge 3 ]
    use_lhttpd A
    wait_log 'NATS: no PONG for [0-9]+ ms: the connection is stalled; reconnecting; [0-9]+ message\(s\) published since the last PONG may be lost'
    [ "$(grep -c 'the connection is stalled' "$A_LOG")" -eq 1 ]
    unhang_nats
    wait_for 10 readyz_is 200 "$A_PORT"
    wait_for 10 readyz_is 200 "$B_PORT"
    run ps_run open:p:$A_PORT open:s:$B_PORT sub:s:across sync:p:s:across pub:p:across:back recv:s
    [ "$status" -eq 0 ] || lh_show_output
    has_line "$(got s 'LHTTP/1.0 msg\r\npublish:across\r\n\r\nback')"
    metric_is lhttpd_nats_stalls_total 1 "$A_PORT"
    assert_server_ok
}

@test "publishes while NATS is known to be unreachable are kept and sent on reconnect" {
    start_nats
    lhttpd_on A 1 '"publish": "always"'
    nats_watch w 'lhttp.kept'
    hang_nats
    wait_for 3 readyz_is 503
    lost=$(metric lhttpd_nats_possibly_lost_total)
    [ "$(post kept while-down)" = 200 ]
    unhang_nats
    wait_for 10 readyz_is 200
    wait_bg w '^msg lhttp\.kept LHTTP/1\.0 msg'
    wait_bg w '^while-down$'
    metric_is lhttpd_nats_possibly_lost_total "$lost"
}

@test "nats.stall_timeout_ms sets the stall detection time: more than two thirds of it, at most all of it" {
    start_nats
    lhttpd_on A 1 '"stall_timeout_ms": 9000'
    readyz_is 200
    hang_nats
    t0=$(now_ms)
    wait_for 12 readyz_is 503
    took=$(($(now_ms) - t0))
    echo "# 503 after $took ms" >&3
    [ "$took" -ge 5500 ] && [ "$took" -le 10000 ]
    metric_is lhttpd_nats_stalls_total 1
    unhang_nats
    wait_for 10 readyz_is 200
}
