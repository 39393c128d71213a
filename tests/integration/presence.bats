#!/usr/bin/env bats
# Presence and join/leave (issue 20) with real processes: two lhttpd nodes of two workers
# each on one nats-server, clients on every node (tests/lib/presclient.py, users from
# HS256 tokens). Presence is the same from every node and through the server API; a
# leave, an unsubscribe, a worker's SIGKILL and a node's SIGKILL clear their entries in
# the promised time (measured by asking until the count is right); a reload keeps
# presence steady and sends no join/leave; join/leave arrive once per event; a channel of
# 50,000 members answers a bounded list with the right count; 5,000 leaves at once (a
# node stopping) arrive as a few batched messages.

load ../lib/helpers
load ../lib/pubsub

teardown() {
    stop_all
    ! grep -E -A12 'AddressSanitizer|LeakSanitizer|runtime error:' "$(lh_tmp)"/lhttpd-*.log >&2
}

setup() {
    T=$(lh_tmp)
    head -c 48 /dev/urandom | base64 -w0 >"$T/secret"
}

# node NAME [EXTRA]: an lhttpd of 2 workers on the nats-server, with presence namespaces
# "room" (join_leave too), "big" (presence only, readable by anyone) and "plain" (none).
node() {
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 2,
        "publish": {"token": "sekrit"},
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"], "peer_timeout_ms": 2000},
        "auth": {"keys": [{"secret_file": "'"$T"'/secret"}]},
        "limits": {"max_connections": 20000},
        "namespaces": {
            "room": {"presence": true, "join_leave": true},
            "big": {"presence": true, "presence_read": "any"},
            "shy": {"presence": true, "presence_read": "none"},
            "plain": {}
        }'"${2:+, $2}"'
    }' || return 1
    save_lhttpd "$1"
    eval "$1_CONF=\$LH_CONF"
}

pc() { "$PY" "$LH_LIB/presclient.py" "$@"; }
metric() { "$PY" "$LH_LIB/promscrape.py" value "http://127.0.0.1:$LH_PORT/metrics" "$1"; }
metric_ge() { local v; v=$(metric "$1" 2>/dev/null) && [ "$v" -ge "$2" ]; }

# api_count_is PORT CHANNEL N: GET /api/presence-stats on PORT says count N.
api_count_is() {
    API_COUNT=$(curl -sS -H 'Authorization: Bearer sekrit' "http://127.0.0.1:$1/api/presence-stats?channel=$2")
    [ "$(jq .count <<<"$API_COUNT")" = "$3" ]
}

two_nodes() {
    start_nats
    node A "$@" && node B "$@"
    # Each node knows the other (a query waits for every node it knows of).
    wait_for 10 log_has "node [0-9a-f]+ present" || return 1
    use_lhttpd A && wait_for 10 log_has "node [0-9a-f]+ present"
}

@test "2 nodes x 2 workers: every node and the server API give the same presence" {
    two_nodes
    run pc script "$T/secret" \
        open:a1:$A_PORT:u1 open:a2:$A_PORT:u2 open:a3:$A_PORT:u3 'open:a4:'$A_PORT':u4:{"name":"Four"}' \
        open:b1:$B_PORT:u5 open:b2:$B_PORT:u6 open:b3:$B_PORT:u7 open:b4:$B_PORT:u1 \
        sub:a1:room.x sub:a2:room.x sub:a3:room.x sub:a4:room.x \
        sub:b1:room.x sub:b2:room.x sub:b3:room.x sub:b4:room.x \
        presence:a1:room.x presence:b1:room.x stats:a4:room.x stats:b4:room.x \
        presence:a1:plain.x
    [ "$status" -eq 0 ] || lh_show_output
    for n in a1 b1; do
        has_line "$n presence count=8 users=7 truncated=false listed=8 who=u1,u1,u2,u3,u4,u5,u6,u7"
    done
    has_line "a4 stats count=8 users=7"
    has_line "b4 stats count=8 users=7"
    has_line "a1 error 404"
}

@test "the server API: GET /api/presence and /api/presence-stats on both nodes, with the bearer token" {
    two_nodes
    pc script "$T/secret" open:a:$A_PORT:alice 'open:b:'$B_PORT':bob:{"role":"x"}' \
        sub:a:shy.q sub:b:shy.q presence:a:shy.q 'say:ready' wait:$T/done >"$T/out" 2>&1 3>&- &
    lh_record $!
    wait_for 10 grep -q '^ready' "$T/out"
    grep -q '^a error 403$' "$T/out" # presence_read "none": the server API only
    for p in $A_PORT $B_PORT; do
        run curl -sS -H 'Authorization: Bearer sekrit' "http://127.0.0.1:$p/api/presence?channel=shy.q"
        echo "$output"
        [ "$(jq -c '[.count, .users, .truncated, ([.presence[].user] | sort)]' <<<"$output")" = '[2,2,false,["alice","bob"]]' ]
        [ "$(jq -c '[.presence[] | select(.user == "bob") | .info]' <<<"$output")" = '[{"role":"x"}]' ]
        [ "$(jq -r '[.presence[].node] | unique | length' <<<"$output")" = 2 ]
        run curl -sS -H 'Authorization: Bearer sekrit' "http://127.0.0.1:$p/api/presence-stats?channel=shy.q"
        [ "$output" = '{"channel":"shy.q","count":2,"users":2}' ]
    done
    use_lhttpd A
    [ "$(http_status '/api/presence?channel=shy.q' -H 'Authorization: Bearer nope')" = 401 ]
    [ "$(http_status '/api/presence?channel=plain.q' -H 'Authorization: Bearer sekrit')" = 404 ]
    [ "$(http_status '/api/presence?channel=a%20b' -H 'Authorization: Bearer sekrit')" = 400 ]
    [ "$(http_status /api/presence -H 'Authorization: Bearer sekrit')" = 400 ]
    [ "$(http_status '/api/presence?channel=shy.q' -X POST -H 'Authorization: Bearer sekrit')" = 405 ]
    touch "$T/done"
}

@test "a leave and an unsubscribe are gone from every node's presence within a second" {
    two_nodes
    run pc script "$T/secret" \
        open:a:$A_PORT:alice open:b:$B_PORT:bob open:c:$A_PORT:carol open:d:$B_PORT:dave \
        sub:a:room.l sub:b:room.l sub:c:room.l sub:d:room.l until:a:room.l:4 \
        unsub:c:room.l until:b:room.l:3 until:a:room.l:3 \
        close:d until:a:room.l:2 until:b:room.l:2 presence:b:room.l
    [ "$status" -eq 0 ] || lh_show_output
    has_line "b presence count=2 users=2 truncated=false listed=2 who=alice,bob"
    while read -r ms; do
        echo "# cleared in $ms ms" >&3
        [ "$ms" -lt 1000 ]
    done < <(grep -oE 'count [23] after [0-9]+' <<<"$output" | awk '{print $4}')
}

# kill_busiest_worker NODE: SIGKILLs NODE's worker with the most clients; sets KILLED to
# their number.
kill_busiest_worker() {
    local victim
    use_lhttpd "$1"
    read -r KILLED victim <<<"$(ss -Htnp state established "( sport = :$LH_PORT )" | grep -oE 'pid=[0-9]+' |
        sort | uniq -c | sort -rn | awk '{ sub("pid=", "", $2); print $1, $2; exit }')"
    [ -n "$victim" ] && [ "$victim" != "$LH_PID" ]
    kill -KILL "$victim"
    VICTIM=$victim
}

@test "a worker killed with SIGKILL: its entries are gone at once, the node's others stay" {
    two_nodes
    pc fleet "$A_PORT" 40 room.k "$T/secret" u "$T/stop" >"$T/fleet.out" 2>&1 3>&- &
    lh_record $!
    wait_for 30 grep -q '^ready 40' "$T/fleet.out"
    kill_busiest_worker A
    left=$((41 - KILLED))
    run pc script "$T/secret" open:w:$B_PORT:watcher sub:w:room.k until:w:room.k:$left \
        presence:w:room.k
    [ "$status" -eq 0 ] || lh_show_output
    echo "# killed $KILLED of 40; $(grep -o 'after [0-9]* ms' <<<"$output" | head -1)" >&3
    [ "$KILLED" -gt 0 ]
    ms=$(grep -oE 'after [0-9]+' <<<"$output" | head -1 | awk '{print $2}')
    [ "$ms" -lt 3000 ]
    has_match "^w presence count=$left "
    wait_log "died"
}

@test "a node killed with SIGKILL: its entries are gone within node_timeout_ms" {
    two_nodes
    pc fleet "$A_PORT" 30 room.n "$T/secret" a "$T/stop" >"$T/fleet.out" 2>&1 3>&- &
    lh_record $!
    wait_for 30 grep -q '^ready 30' "$T/fleet.out"
    pc script "$T/secret" open:w:$B_PORT:watcher sub:w:room.n until:w:room.n:31 say:ready \
        wait:$T/killed until:w:room.n:1 presence:w:room.n >"$T/out" 2>&1 3>&- &
    lh_record $!
    wait_for 15 grep -q '^ready' "$T/out"
    use_lhttpd A
    kill -KILL $LH_WORKERS "$A_PID"
    touch "$T/killed"
    wait_for 15 grep -qE '^(w presence|FAIL)' "$T/out"
    cat "$T/out"
    grep -q '^w presence count=1 users=1 truncated=false listed=1 who=watcher$' "$T/out"
    ms=$(grep -oE 'count 1 after [0-9]+' "$T/out" | awk '{print $4}')
    echo "# node SIGKILL: presence right after $ms ms (node_timeout_ms 500)" >&3
    [ "$ms" -lt 1500 ]
}

@test "a reload (lhttpd -s reload and SIGHUP) keeps presence steady: no leave, no join, the same count" {
    two_nodes
    pc fleet "$A_PORT" 20 room.r "$T/secret" r "$T/stop" >"$T/fleet.out" 2>&1 3>&- &
    lh_record $!
    wait_for 30 grep -q '^ready 20' "$T/fleet.out"
    pc script "$T/secret" open:w:$B_PORT:watcher open:v:$A_PORT:viewer sub:w:room.r sub:v:room.r \
        until:w:room.r:22 settle:w:300 settle:v:300 say:ready \
        steady:w:room.r:22:4000 steady:v:room.r:22:500 \
        >"$T/out" 2>&1 3>&- &
    local sp=$!
    lh_record $sp
    wait_for 15 grep -q '^ready' "$T/out" || { cat "$T/out"; false; }
    use_lhttpd A
    "$LHTTPD" -s reload -c "$A_CONF" >/dev/null
    wait_log "reload done: generation 2" 10 || { tail -5 "$A_LOG"; false; }
    kill -HUP "$A_PID"
    wait_log "reload done: generation 3" 10
    wait_for 20 grep -qE '^(v steady|FAIL)' "$T/out"
    cat "$T/out"
    grep -q '^w steady 22 for [0-9]* queries$' "$T/out"
    grep -q '^v steady 22 for [0-9]* queries$' "$T/out"
    # Both reloads happened meanwhile: generations 2 and 3 started, the clients stayed on
    # the draining ones.
    grep -q 'started (pid [0-9]*, generation 3)' "$A_LOG" || { tail -20 "$A_LOG"; false; }
}

@test "join and leave arrive once per event, on every node, with user, client and info" {
    two_nodes
    run pc script "$T/secret" \
        open:w:$A_PORT:watcher1 open:x:$B_PORT:watcher2 sub:w:room.j sub:x:room.j \
        evcount:w:join:2 evcount:x:join:2 \
        'open:p:'$A_PORT':pat:{"n":1}' open:q:$B_PORT:quinn sub:p:room.j sub:q:room.j \
        evcount:w:join:4 evcount:x:join:4 \
        unsub:p:room.j close:q evcount:w:leave:2 evcount:x:leave:2 quiet:w:400 \
        events:w events:x
    [ "$status" -eq 0 ] || lh_show_output
    for n in w x; do
        [ "$(grep -c "^$n join room.j " <<<"$output")" = 4 ]
        [ "$(grep -c "^$n leave room.j " <<<"$output")" = 2 ]
        for u in watcher1 watcher2 pat quinn; do
            [ "$(grep -c "^$n join room.j $u " <<<"$output")" = 1 ]
        done
        for u in pat quinn; do
            [ "$(grep -c "^$n leave room.j $u " <<<"$output")" = 1 ]
        done
    done
    # The client id of a join is the one of its leave.
    [ "$(grep '^w join room.j pat ' <<<"$output" | awk '{print $5}')" = "$(grep '^w leave room.j pat ' <<<"$output" | awk '{print $5}')" ]
}

@test "a join carries the server-set user, client id and info of the token" {
    two_nodes
    run pc script "$T/secret" open:w:$A_PORT:watcher sub:w:room.h evcount:w:join:1 \
        'open:p:'$B_PORT':pat:{"team":"red"}' sub:p:room.h evcount:w:join:2 events:w
    [ "$status" -eq 0 ] || lh_show_output
    has_match '^w join room.h pat [0-9a-f]{16}-[0-9]+-[0-9]+ \{"team":"red"\}$'
    has_match '^w join room.h watcher [0-9a-f]{16}-[0-9]+-[0-9]+ null$'
}

@test "50,001 members on 2 nodes x 2 workers: a bounded list (max_list 1000) and the right count and users" {
    two_nodes
    local i
    for i in 0 1 2; do
        pc fleet "$A_PORT,$B_PORT" 16667 big.all "$T/secret" "m$i-" "$T/stop" >"$T/fleet$i.out" 2>&1 3>&- &
        lh_record $!
    done
    for i in 0 1 2; do
        wait_for 240 grep -qE '^(ready|FAIL)' "$T/fleet$i.out"
        grep -q '^ready 16667' "$T/fleet$i.out" || { cat "$T/fleet$i.out"; false; }
    done
    run pc script "$T/secret" open:a:$A_PORT:asker open:b:$B_PORT:asker2 \
        presence:a:big.all presence:b:big.all stats:a:big.all stats:b:big.all
    [ "$status" -eq 0 ] || lh_show_output
    has_match '^a presence count=50001 users=50001 truncated=true listed=1000 '
    has_match '^b presence count=50001 users=50001 truncated=true listed=1000 '
    has_line "a stats count=50001 users=50001"
    has_line "b stats count=50001 users=50001"
    # 3 x 16,667 = 50,001 members (the askers only ask).
    api_count_is "$A_PORT" big.all 50001 || { echo "got: $API_COUNT" >&2; false; }
    local t0=$EPOCHREALTIME
    run curl -sS -H 'Authorization: Bearer sekrit' "http://127.0.0.1:$A_PORT/api/presence-stats?channel=big.all"
    echo "# GET /api/presence-stats on 50,001 members: $output in $(bc <<<"($EPOCHREALTIME - $t0) * 1000") ms" >&3
    [ "$output" = '{"channel":"big.all","count":50001,"users":50001}' ]
    touch "$T/stop"
    for i in 0 1 2; do wait_for 60 grep -q '^closed' "$T/fleet$i.out"; done
}

@test "5,000 leaves at once (a node stopping): watchers get every leave in a few batched messages" {
    two_nodes
    pc fleet "$A_PORT" 2500 room.storm "$T/secret" s "$T/stop" >"$T/fleet.out" 2>&1 3>&- &
    lh_record $!
    pc fleet "$A_PORT" 2500 room.storm "$T/secret" t "$T/stop" >"$T/fleet2.out" 2>&1 3>&- &
    lh_record $!
    pc script "$T/secret" open:w:$B_PORT:w1 open:x:$B_PORT:w2 sub:w:room.storm sub:x:room.storm \
        say:ready evcount:w:join:5002 evcount:x:join:5002 wait:$T/stopped \
        evcount:w:leave:5000 evcount:x:leave:5000 quiet:w:500 events:w >"$T/out" 2>&1 3>&- &
    lh_record $!
    wait_for 120 grep -qE '^(ready 2500|FAIL)' "$T/fleet.out"
    wait_for 120 grep -qE '^(ready 2500|FAIL)' "$T/fleet2.out"
    grep -q '^ready 2500' "$T/fleet.out"
    grep -q '^ready 2500' "$T/fleet2.out"
    wait_for 60 grep -qE '^(x join 5002|FAIL)' "$T/out"
    grep -q '^x join 5002' "$T/out" || { cat "$T/out"; false; }
    local msgs_before
    msgs_before=$(grep -c . "$T/out")
    use_lhttpd A
    kill -TERM "$A_PID"
    wait_for 30 lh_gone "$A_PID"
    touch "$T/stopped"
    wait_for 60 grep -qE '^(w messages|FAIL)' "$T/out"
    grep -q '^x leave 5000' "$T/out" || { cat "$T/out"; false; }
    # Leaves: each once.
    [ "$(grep -c '^w leave room.storm ' "$T/out")" = 5000 ]
    [ "$(grep '^w leave room.storm ' "$T/out" | awk '{print $5}' | sort -u | wc -l)" = 5000 ]
    # The messages that carried the 5002 joins and 5000 leaves.
    local m
    m=$(grep -oE '^w messages [0-9]+' "$T/out" | awk '{print $3}')
    echo "# 5002 joins and 5000 leaves reached a watcher in $m messages" >&3
    [ "$m" -lt 500 ]
}

@test "lhttpc presence and presence-stats print the answer; a bad channel is a usage error" {
    two_nodes
    pc script "$T/secret" open:a:$A_PORT:alice open:b:$B_PORT:bob sub:a:big.c sub:b:big.c \
        say:ready wait:$T/done >"$T/out" 2>&1 3>&- &
    lh_record $!
    wait_for 10 grep -q '^ready' "$T/out"
    run "$LHTTPC" -q "ws://127.0.0.1:$A_PORT/" presence big.c
    [ "$status" -eq 0 ] || lh_show_output
    [[ $output == *"count:2"* && $output == *"users:2"* && $output == *"truncated:false"* ]]
    [[ $output == *'"user":"alice"'* && $output == *'"user":"bob"'* ]]
    run "$LHTTPC" -q "ws://127.0.0.1:$B_PORT/" presence-stats big.c
    [ "$status" -eq 0 ] || lh_show_output
    [[ $output == *"LHTTP/1.0 presence-stats"* && $output == *"count:2"* ]]
    run "$LHTTPC" -q "ws://127.0.0.1:$B_PORT/" presence 'bad channel'
    [ "$status" -ne 0 ]
    run "$LHTTPC" -q "ws://127.0.0.1:$B_PORT/" presence plain.c
    [[ $output == *"code:404"* ]]
    touch "$T/done"
}

@test "presence_read holds: subscribers only, authenticated only, the subscribe rule, none; presence-stats the same; an unsubscribe takes the right away" {
    start_nats
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "auth": {"keys": [{"secret_file": "'"$T"'/secret"}]},
        "namespaces": {
            "subs": {"presence": true},
            "authd": {"presence": true, "presence_read": "authenticated"},
            "sa": {"presence": true, "subscribe": "authenticated", "presence_read": "subscribe"},
            "shy": {"presence": true, "presence_read": "none"}
        }
    }'
    run pc script "$T/secret" open:anon:$LH_PORT open:a:$LH_PORT:alice open:b:$LH_PORT:bob \
        sub:a:subs.x presence:b:subs.x stats:b:subs.x presence:anon:subs.x presence:a:subs.x \
        presence:anon:authd.x stats:anon:authd.x presence:b:authd.x \
        presence:anon:sa.x presence:b:sa.x \
        sub:a:shy.x presence:a:shy.x \
        unsub:a:subs.x presence:a:subs.x
    printf '%s\n' "$output" >&2
    [ "$status" -eq 0 ]
    [ "$(grep -E '^(anon|a|b) (presence|stats|error)' <<<"$output" | paste -sd'|')" = \
      "b error 403|b error 403|anon error 403|a presence count=1 users=1 truncated=false listed=1 who=alice|anon error 403|anon error 403|b presence count=0 users=0 truncated=false listed=0 who=|anon error 403|b presence count=0 users=0 truncated=false listed=0 who=|a error 403|a error 403" ]
    assert_server_ok
}

@test "presence queries in flight are bounded: per connection (max_queries_per_conn) and per worker (max_queries), refused with 429 and counted; the same query shares one gathering" {
    two_nodes '"presence": {"max_queries_per_conn": 3, "max_queries": 100}'
    # Ten queries in one write are all in flight at once (each waits for the other
    # workers' answers through NATS): three are answered (one gathering, which the two
    # others wait for), seven refused.
    run pc script "$T/secret" open:a:$A_PORT:alice sub:a:big.q burst:a:big.q:10 stats:a:big.q
    printf '%s\n' "$output" >&2
    [ "$status" -eq 0 ]
    [[ "$output" == *"a burst answered=3 refused=7"* ]]
    [[ "$output" == *"a stats count=1 users=1"* ]] # answered again once they are done
    use_lhttpd A
    wait_for 5 metric_ge 'lhttpd_presence_queries_refused_total{reason="connection"}' 7
    wait_for 5 metric_ge 'lhttpd_presence_queries_shared_total' 2
    stop_all
    # Six different channels: six gatherings, of which the worker runs two at once.
    two_nodes '"presence": {"max_queries_per_conn": 50, "max_queries": 2}'
    run pc script "$T/secret" open:a:$A_PORT:alice sub:a:big.q burst:a:big.q:6:distinct stats:a:big.q
    printf '%s\n' "$output" >&2
    [ "$status" -eq 0 ]
    [[ "$output" == *"a burst answered=2 refused=4"* ]]
    [[ "$output" == *"a stats count=1 users=1"* ]]
    use_lhttpd A
    wait_for 5 metric_ge 'lhttpd_presence_queries_refused_total{reason="worker"}' 4
    assert_server_ok
}

@test "a worker's answer fits the NATS server's max_payload: a long list is cut, the count stays whole" {
    NATS_CONFIG='max_payload: 65536' start_nats
    node A
    # 400 members with 600 bytes of info each: a worker's 200 entries are 130 KB, twice
    # what this nats-server carries in one message.
    pad=$(head -c 600 /dev/zero | tr '\0' x)
    pc fleet "$A_PORT" 400 big.p "$T/secret" m "$T/stop" "{\"pad\":\"$pad\"}" >"$T/fleet.out" 2>&1 3>&- &
    lh_record $!
    wait_for 60 grep -q '^ready 400' "$T/fleet.out"
    run pc script "$T/secret" open:q:$A_PORT presence:q:big.p stats:q:big.p
    printf '%s\n' "$output" >&2
    [ "$status" -eq 0 ]
    [[ "$output" == *"q presence count=400 users=400 truncated=true"* ]]
    [[ "$output" == *"q stats count=400 users=400"* ]]
    # Fewer than half the members listed (each worker's entries within half of 64 KiB).
    listed=$(grep -o 'listed=[0-9]*' <<<"$output" | cut -d= -f2)
    [ "$listed" -gt 20 ] && [ "$listed" -lt 120 ]
    touch "$T/stop"
    assert_server_ok
}

@test "join_leave: a worker and then a node killed with SIGKILL: each remaining subscriber gets one leave naming the clients gone (gone: their client id prefix)" {
    two_nodes
    pc fleet "$A_PORT" 40 room.g "$T/secret" u "$T/stop" >"$T/fleet.out" 2>&1 3>&- &
    lh_record $!
    wait_for 30 grep -q '^ready 40' "$T/fleet.out"
    pc script "$T/secret" open:w:$B_PORT:watcher open:x:$B_PORT:watcher2 sub:w:room.g sub:x:room.g \
        sub:w:big.other settle:w:300 say:ready wait:$T/k1 evcount:w:gone:1 evcount:x:gone:1 \
        wait:$T/k2 evcount:w:gone:2 evcount:x:gone:2 settle:w:700 events:w events:x >"$T/out" 2>&1 3>&- &
    lh_record $!
    wait_for 15 grep -q '^ready' "$T/out"
    kill_busiest_worker A
    touch "$T/k1"
    wait_for 10 grep -qE '^(x gone 1|FAIL)' "$T/out"
    use_lhttpd A
    kill -KILL $(pgrep -P "$A_PID") "$A_PID"
    touch "$T/k2"
    wait_for 15 grep -qE '^(x messages|FAIL)' "$T/out"
    cat "$T/out" >&2
    mapfile -t gone < <(grep -E '^w gone [a-z]+\.' "$T/out")
    [ "${#gone[@]}" -eq 2 ] # once each, and only on the join_leave channel (not big.*)
    [[ "${gone[0]}" =~ ^w\ gone\ room\.g\ [0-9a-f]{16}-$VICTIM-$ ]]
    [[ "${gone[1]}" =~ ^w\ gone\ room\.g\ [0-9a-f]{16}-$ ]]
    [ "$(grep -c '^x gone room.g' "$T/out")" -eq 2 ]
    use_lhttpd B
    assert_server_ok
}
