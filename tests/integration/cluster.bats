#!/usr/bin/env bats
# Pub/sub across processes and NATS: two lhttpd on one nats-server, two nats-servers
# joined by routes with one lhttpd on each, a nats-server restart under connected
# clients, NATS outages (local delivery goes on, the outage buffer's 503), and an lhttpd
# started before any nats-server exists.
#
# Deliveries through NATS become possible some time after a subscribe (the SUB travels
# to nats-server, and across routes); pubsub.py's sync step publishes until one arrives,
# with a deadline, instead of sleeping.

load ../lib/helpers
load ../lib/pubsub

# Every lhttpd is stopped first: a sanitizer build reports some errors (leaks, use after
# free at exit) only then.
teardown() {
    stop_all
    ! grep -E -A12 'AddressSanitizer|LeakSanitizer|runtime error:' "$(lh_tmp)"/lhttpd-*.log >&2
}

# lhttpd_on NATS_PORT NAME [NATS_MEMBERS]: starts lhttpd (one worker) on the nats-server
# at NATS_PORT, with these extra members in its "nats" section, and saves it as NAME
# (NAME_PORT, NAME_LOG...; see save_lhttpd).
lhttpd_on() {
    NATS_PORT=$1
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]'"${3:+, $3}"'}
    }' || return 1
    save_lhttpd "$2"
}

# got_binary NAME MESSAGE: the same for a message in a binary frame.
got_binary() { echo "$1 got-binary $(printf '%b' "$2" | wc -c) $2"; }

# msg CHANNEL BODY: what pub:NAME:CHANNEL:BODY sends.
msg() { echo "LHTTP/1.0 msg\\r\\npublish:$1\\r\\n\\r\\n$2"; }

# both_ok: both lhttpd (A and B) are alive and serve.
both_ok() {
    use_lhttpd A && assert_server_ok && use_lhttpd B && assert_server_ok
}

# --- two lhttpd, one nats-server ------------------------------------------------------------

@test "two lhttpd on one nats-server deliver across, both ways" {
    start_nats --monitor
    lhttpd_on "$NATS_PORT" A
    lhttpd_on "$NATS_PORT" B
    run ps_run open:a:$A_PORT open:b:$B_PORT sub:a:to-a sub:b:to-b \
        sync:a:b:to-b sync:b:a:to-a \
        'pub:a:to-b:from a, caf\xc3\xa9' recv:b 'pub:b:to-a:from b\r\n\r\nx' recv:a \
        'sendbin:a:LHTTP/1.0 bin\r\npublish:to-b\r\n\r\n\x00\xff' recv:b
    [ "$status" -eq 0 ] || lh_show_output
    has_line "$(got b "$(msg to-b 'from a, caf\xc3\xa9')")"
    has_line "$(got a "$(msg to-a 'from b\r\n\r\nx')")"
    has_line "$(got_binary b 'LHTTP/1.0 bin\r\npublish:to-b\r\n\r\n\x00\xff')"
    both_ok
}

@test "order across two lhttpd: 500 numbered messages arrive 1..500" {
    start_nats --monitor
    lhttpd_on "$NATS_PORT" A
    lhttpd_on "$NATS_PORT" B
    run ps_run open:p:$A_PORT open:s:$B_PORT open:t:$B_PORT sub:s:order 'sub:t:order' \
        sync:p:s:order sync:p:t:order burst:p:order:500:200 seq:s:500 seq:t:500
    [ "$status" -eq 0 ] || lh_show_output
    has_line "s seq ok 500"
    has_line "t seq ok 500"
    both_ok
}

@test "no duplicates: a worker does not get its own publishes back from NATS" {
    start_nats --monitor
    lhttpd_on "$NATS_PORT" A
    lhttpd_on "$NATS_PORT" B
    # s is local to the publisher p; r on B sees p's messages arrive through NATS and
    # then publishes G. nats-server sends anything for A in order: had it echoed X or F
    # back to A, s would get them again before G.
    run ps_run open:p:$A_PORT open:s:$A_PORT open:r:$B_PORT sub:s:dup sub:r:dup \
        sync:p:r:dup pub:p:dup:X pub:p:dup:F recv:r recv:r pub:r:dup:G recv:s recv:s recv:s
    [ "$status" -eq 0 ] || lh_show_output
    printf '%s\n' "${lines[@]}" | grep '^s got' >"$(lh_tmp)/s"
    run cat "$(lh_tmp)/s"
    lines_are "$(got s "$(msg dup X)")" "$(got s "$(msg dup F)")" "$(got s "$(msg dup G)")"
}

@test "POST /publish on one lhttpd reaches a subscriber on the other" {
    start_nats --monitor
    lhttpd_on "$NATS_PORT" A
    lhttpd_on "$NATS_PORT" B
    ps_bg sub open:s:$B_PORT sub:s:http.x print:ready recv:s
    wait_bg sub '^ready$'
    wait_for 5 nats_has_sub "$NATS_MON_PORT" lhttp.http.x
    body=$(lh_tmp)/body
    printf 'LHTTP/1.0 news\r\npublish:http.x\r\n\r\nover http' >"$body"
    run curl -s --max-time 5 --data-binary @"$body" "http://127.0.0.1:$A_PORT/publish"
    lines_are '{"channels":["http.x"],"local_deliveries":0}'
    wait_gone "$PS_PID_sub" 5
    run bg_out sub
    has_line "$(got s 'LHTTP/1.0 news\r\npublish:http.x\r\n\r\nover http')"
}

@test "limits.send_queue_bytes across NATS: a burst reaches a reader that keeps up, in order; a stalled one gets 4008" {
    start_nats --monitor
    lhttpd_on "$NATS_PORT" A
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"], "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "limits": {"send_queue_bytes": 1048576},
        "websocket": {"close_timeout_ms": 60000}
    }'
    save_lhttpd B
    t=$(lh_tmp)
    # The stalled reader starts reading only after the burst: on a busy machine that can
    # be later than the default close_timeout_ms, at which a connection still holding
    # unsent bytes is reset (its close frame lost with them); a long one keeps the test on
    # what it checks, the 4008.
    # The reader that keeps up: lhttpc on B, reading as fast as it can. The limit bounds
    # what a client leaves unread; a client that reads everything it is sent must not be
    # closed because many messages arrived from NATS at once.
    "$LHTTPC" -q -n 600 -w 20000 "ws://127.0.0.1:$B_PORT/" subscribe big \
        >"$t/fast.out" 2>"$t/fast.err" 3>&- &
    fast=$!
    lh_record $fast
    wait_for 5 nats_has_sub "$NATS_MON_PORT" lhttp.big
    # 600 messages of 32 KiB (19 MiB) from A, through NATS, as fast as A takes them: more
    # than the stalled reader's queue plus what loopback TCP buffers can hold (lhttpd
    # writes before it calls a queue full, so the kernel's buffers fill first).
    run ps_run --timeout 15 open:slow:$B_PORT sub:slow:big open:p:$A_PORT \
        burst:p:big:600:32768 drain:slow
    [ "$status" -eq 0 ] || lh_show_output
    has_match '^slow close 4008( .*)?$'
    wait_gone $fast 20
    wait $fast || { echo "lhttpc: $(cat "$t/fast.err")" >&2; false; }
    # lhttpc prints each message and a newline: the body's first line is its number.
    [ "$(grep -cE '^[0-9]+$' "$t/fast.out")" -eq 600 ]
    cmp <(grep -E '^[0-9]+$' "$t/fast.out") <(seq 1 600)
    both_ok
}

# --- two nats-servers joined by routes ---------------------------------------------------------

@test "two nats-servers joined by routes, one lhttpd on each: delivery across, both ways" {
    start_nats_node N1
    start_nats_node N2 "$N1_CLUSTER"
    wait_for 10 nats_routes_up "$N1_MON"
    wait_for 10 nats_routes_up "$N2_MON"
    lhttpd_on "$N1_PORT" A
    lhttpd_on "$N2_PORT" B
    run ps_run open:a:$A_PORT open:b:$B_PORT sub:a:to-a sub:b:to-b \
        sync:a:b:to-b sync:b:a:to-a pub:a:to-b:over-the-route recv:b \
        pub:b:to-a:and-back recv:a burst:a:to-b:200 seq:b:200
    [ "$status" -eq 0 ] || lh_show_output
    has_line "$(got b "$(msg to-b over-the-route)")"
    has_line "$(got a "$(msg to-a and-back)")"
    has_line "b seq ok 200"
    both_ok
}

# --- nats-server restarts and outages ------------------------------------------------------

@test "a nats-server restart loses no client, and delivery across two lhttpd resumes" {
    start_nats --monitor
    lhttpd_on "$NATS_PORT" A
    lhttpd_on "$NATS_PORT" B
    t=$(lh_tmp)
    # a and a2 on A, b on B. During the outage a publishes to a2 (local); after the
    # restart every connection answers, and NATS carries messages again both ways.
    ps_bg cl --timeout 10 open:a:$A_PORT open:b:$B_PORT open:a2:$A_PORT \
        sub:a:to-a sub:b:to-b sub:a2:local \
        sync:a:b:to-b sync:b:a:to-a pub:a:to-b:before recv:b print:phase1 \
        await:$t/down:30 pub:a:local:during-outage recv:a2 print:local-ok \
        await:$t/restarted:30 barrier:a barrier:b barrier:a2 print:alive \
        sync:a:b:to-b:20 sync:b:a:to-a:20 \
        pub:a:to-b:after-a recv:b pub:b:to-a:after-b recv:a print:done await:$t/end:20
    wait_bg cl '^phase1$'
    lh_stop_pid "$NATS_PID"
    use_lhttpd A && wait_log 'NATS: disconnected' 5
    use_lhttpd B && wait_log 'NATS: disconnected' 5
    touch "$t/down"
    wait_bg cl '^local-ok$'
    start_nats_on "$NATS_PORT" "$NATS_MON_PORT"
    touch "$t/restarted"
    wait_bg cl '^done$' 30
    run bg_out cl
    has_line "$(got b "$(msg to-b before)")"
    has_line "$(got a2 "$(msg local during-outage)")"
    has_line "a barrier"
    has_line "b barrier"
    has_line "a2 barrier"
    has_line "$(got b "$(msg to-b after-a)")"
    has_line "$(got a "$(msg to-a after-b)")"
    no_match ' (eof|reset|close|timeout)'
    use_lhttpd A && log_has 'NATS: reconnected'
    use_lhttpd B && log_has 'NATS: reconnected'
    # The subscriptions were restored on the new server.
    wait_for 5 nats_has_sub "$NATS_MON_PORT" lhttp.to-a
    wait_for 5 nats_has_sub "$NATS_MON_PORT" lhttp.to-b
    touch "$t/end"
    both_ok
}

@test "while NATS is down, publishes still reach local subscribers (WebSocket and POST)" {
    start_nats --monitor
    lhttpd_on "$NATS_PORT" A
    lh_stop_pid "$NATS_PID"
    wait_log 'NATS: disconnected' 5
    run ps_run open:p:$LH_PORT open:s:$LH_PORT sub:s:down pub:p:down:during-outage recv:s barrier:p
    [ "$status" -eq 0 ] || lh_show_output
    lines_are "p open" "s open" "s subscribed" "$(got s "$(msg down during-outage)")" "p barrier"
    ps_bg sub open:s:$LH_PORT sub:s:down2 print:ready recv:s
    wait_bg sub '^ready$'
    body=$(lh_tmp)/body
    printf 'LHTTP/1.0 news\r\npublish:down2\r\n\r\nvia post' >"$body"
    run curl -s --max-time 5 --data-binary @"$body" "http://127.0.0.1:$LH_PORT/publish"
    lines_are '{"channels":["down2"],"local_deliveries":1}'
    wait_gone "$PS_PID_sub" 5
    run bg_out sub
    has_line "$(got s 'LHTTP/1.0 news\r\npublish:down2\r\n\r\nvia post')"
    assert_server_ok
}

@test "nats.reconnect_buffer_bytes: once the outage buffer is full a publish gets 503, local delivery goes on" {
    start_nats --monitor
    # "always": alone on NATS, "auto" would not publish at all (nobody else needs it).
    lhttpd_on "$NATS_PORT" A '"reconnect_buffer_bytes": 2048, "publish": "always"'
    lh_stop_pid "$NATS_PID"
    wait_log 'NATS: disconnected' 5
    big="cat:LHTTP/1.0 msg\\r\\npublish:buf\\r\\n\\r\\n ++ rep:8000:b"
    # small fits the 2 KiB buffer; big (8 KiB) cannot fit and is refused; after, small
    # again, fits; nothing is refused locally.
    run ps_run open:p:$LH_PORT open:s:$LH_PORT sub:s:buf pub:p:buf:small barrier:p \
        "send:p:$big" pub:p:buf:after barrier:p recv:s recv:s recv:s
    [ "$status" -eq 0 ] || lh_show_output
    [ "${lines[3]}" = "p barrier" ]
    [ "$(count_lines '^p got [0-9]+ LHTTP/1\.0 error\\r\\ncode:503\\r\\nreason:[^\\]+\\r\\nin-reply-to:msg\\r\\n\\r\\n$')" -eq 1 ]
    has_line "$(got s "$(msg buf small)")"
    has_match '^s got 8030 LHTTP/1\.0 msg\\r\\npublish:buf\\r\\n\\r\\nbbbb'
    has_line "$(got s "$(msg buf after)")"
    # A publish that cannot fit what is left of the buffer: POST /publish answers 503
    # with a reason (the cap is strict: lhttpd checks before cnats appends).
    { printf 'LHTTP/1.0 msg\r\npublish:buf\r\n\r\n'; head -c 3000 /dev/zero | tr '\0' p; } >"$(lh_tmp)/post"
    run curl -s --max-time 5 -w '\n%{http_code}' --data-binary @"$(lh_tmp)/post" "http://127.0.0.1:$LH_PORT/publish"
    last_line_is 503
    [ "$(printf '%s\n' "${lines[0]}" | jq -r .error)" != "" ]
    assert_server_ok
}

@test "lhttpd started with no nats-server serves WebSocket and local pub/sub, and connects when one appears" {
    # Ports for a nats-server that does not run yet.
    NATS_PORT=$(free_port)
    NATS_MON_PORT=$(free_port)
    LH_PORTS_TAKEN="$LH_PORTS_TAKEN $NATS_PORT $NATS_MON_PORT"
    lhttpd_on "$NATS_PORT" A
    wait_log 'NATS: not reachable' 5
    t=$(lh_tmp)
    ps_bg cl --timeout 10 open:a:$A_PORT open:b:$A_PORT sub:b:early pub:a:early:local-only recv:b \
        print:local-ok await:$t/nats-up:30 barrier:a barrier:b print:alive recv:b print:done
    wait_bg cl '^local-ok$'
    run probe upgrade:/ 'text:LHTTP/1.0 ping\r\n\r\nno nats' msgtext
    has_line 'text 25 LHTTP/1.0 pong\r\n\r\nno nats'
    assert_server_ok

    start_nats_on "$NATS_PORT" "$NATS_MON_PORT"
    wait_log 'NATS: connected' 10
    # The subscription made before nats-server existed is there now.
    wait_for 5 nats_has_sub "$NATS_MON_PORT" lhttp.early
    touch "$t/nats-up"
    wait_bg cl '^alive$'
    # A second lhttpd on the new nats-server reaches b.
    lhttpd_on "$NATS_PORT" B
    run ps_run open:c:$B_PORT pub:c:early:from-B barrier:c
    [ "$status" -eq 0 ] || lh_show_output
    wait_bg cl '^done$'
    run bg_out cl
    has_line "$(got b "$(msg early local-only)")"
    has_line "$(got b "$(msg early from-B)")"
    both_ok
}
