#!/usr/bin/env bats
# History and recovery on NATS JetStream (issue 18), against real processes: nats-server
# with -js (one, or three in a JetStream cluster), one or two lhttpd nodes.
#   - offsets and the server's four headers on every delivery, the same on every worker and
#     node; `subscribed` replies;
#   - recovery: exactly what was missed, then live; refused (recovered:false, nothing old)
#     for another epoch, an evicted or expired offset, more than max_read missing;
#   - history reads: limit, since, the end reply, max_read, 403/404/400;
#   - faults: JetStream absent or stopped (503 on history channels only), reloads and a
#     killed worker under many clients (tests/lib/histclient.py: clients that track
#     offset and epoch and recover after each reconnect), two nodes publishing at full
#     speed, a nats-server of a 3-node JetStream cluster killed while publishing.
# Nothing sleeps a fixed time: waits poll with deadlines. Every process is stopped by pid.

load ../lib/helpers
load ../lib/pubsub

HC=$LH_LIB/histclient.py

setup() { T=$(lh_tmp); }

teardown() {
    stop_all
    ! grep -E -A12 'AddressSanitizer|LeakSanitizer|runtime error:' "$(lh_tmp)"/lhttpd-*.log >&2
}

# hc ARGS...: tests/lib/histclient.py.
hc() { "$PY" "$HC" "$@"; }

# start_js [ARGS...]: a nats-server with JetStream (its store in $T/js-PORT) on free ports;
# sets NATS_PORT, NATS_MON_PORT, NATS_PID, NATS_STORE.
start_js() {
    local _ p m r
    for _ in 1 2 3 4 5; do
        p=$(free_port) && LH_PORTS_TAKEN="$LH_PORTS_TAKEN $p" &&
            m=$(free_port) && LH_PORTS_TAKEN="$LH_PORTS_TAKEN $m" || return 1
        export LH_PORTS_TAKEN
        start_nats_on "$p" "$m" -js -sd "$T/js-$p" "$@"
        r=$?
        if [ $r = 0 ]; then
            NATS_PORT=$p NATS_MON_PORT=$m NATS_STORE=$T/js-$p
            export NATS_PORT NATS_MON_PORT NATS_STORE
            return 0
        fi
        [ $r = 2 ] || return 1
    done
    return 1
}

# The namespaces of every lhttpd here: chat (history 1000), small (history 5), ttl
# (history, 1.5 s), priv (history, subscribe needs a token: everyone is refused), plain
# (no history).
NAMESPACES='"namespaces": {
    "chat": {"subscribe": "any", "publish": "any", "history": {"size": 1000}},
    "small": {"subscribe": "any", "publish": "any", "history": {"size": 5}},
    "ttl": {"subscribe": "any", "publish": "any", "history": {"size": 100, "ttl_ms": 1500}},
    "priv": {"subscribe": "token", "publish": "any", "history": {"size": 10}},
    "plain": {"subscribe": "any", "publish": "any"}}'

# hist_lhttpd NAME [WORKERS] [JETSTREAM_MEMBERS] [TOP_MEMBERS]: lhttpd on the current
# nats-server (NATS_PORT), saved as NAME (see save_lhttpd); returns once its workers
# have their streams (the log says so once per worker and namespace). JETSTREAM_MEMBERS
# default to "timeout_ms": 1000.
hist_lhttpd() {
    local w=${2:-1}
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": '"$w"',
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"],
                 "jetstream": {'"${3:-\"timeout_ms\": 1000}"'}},
        '"$NAMESPACES${4:+, $4}"'
    }' || return 1
    save_lhttpd "$1"
    wait_for 10 streams_ready "$LH_LOG" $((w * 4))
}

# streams_ready LOG N: the log says N times that a stream is ready.
streams_ready() { [ "$(grep -c 'JetStream: stream .* ready' "$1")" -ge "$2" ]; }

# field NAME TEXT: the value of "NAME:value" in an escaped message line.
field() { sed -nE "s/.*(^|\\\\n)$1:([^\\\\]*)\\\\r.*/\\2/p" <<<"$2" | head -n 1; }

# nth_got NAME N: the N-th "NAME got ..." line of $output (1-based), without the prefix.
nth_got() { printf '%s\n' "$output" | grep -E "^$1 got " | sed -n "$2p" | sed -E 's/^[^ ]+ got [0-9]+ //'; }

# --- offsets and headers -------------------------------------------------------------------

@test "offset, prev-offset, epoch and channel on every delivery, right after the command line; client-sent ones are removed; subscribed replies" {
    start_js
    hist_lhttpd A
    run ps_run open:s:$A_PORT open:p:$A_PORT \
        'send:s:LHTTP/1.0 subscribe\r\nsubscribe:chat.h1 plain.h1 chat.h2\r\n\r\n' recv:s recv:s barrier:s \
        'send:p:LHTTP/1.0 msg\r\npublish:chat.h1\r\nOffset:99\r\nx-app:1\r\nprev-offset:98\r\nEPOCH:zz\r\nChannel:x\r\n\r\nhello' recv:s \
        'pub:p:chat.h2:other' recv:s 'pub:p:chat.h1:second' recv:s \
        'send:p:LHTTP/1.0 msg\r\npublish:plain.h1\r\noffset:99\r\n\r\nplain' recv:s \
        'send:p:LHTTP/1.0 subscribe\r\nsubscribe:chat.h1\r\n\r\n' recv:p
    [ "$status" -eq 0 ] || lh_show_output
    # One reply per history channel (none for plain.h1), latest offset 0, a 16-hex epoch.
    [ "$(count_lines '^s got .*LHTTP/1.0 subscribed')" -eq 2 ] || lh_show_output
    has_match '^s got [0-9]+ LHTTP/1.0 subscribed\\r\\nchannel:chat.h1\\r\\nepoch:[0-9a-f]{16}\\r\\noffset:0\\r\\n\\r\\n$'
    has_match '^s got [0-9]+ LHTTP/1.0 subscribed\\r\\nchannel:chat.h2\\r\\nepoch:[0-9a-f]{16}\\r\\noffset:0\\r\\n\\r\\n$'
    no_match 'channel:plain.h1'
    E=$(field epoch "$(nth_got s 1)")
    m1=$(nth_got s 3) m2=$(nth_got s 4) m3=$(nth_got s 5)
    o1=$(field offset "$m1") o2=$(field offset "$m2") o3=$(field offset "$m3")
    # The server's four headers first, then the publisher's (its offset, prev-offset,
    # epoch and channel gone, whatever their case), body untouched.
    [ "$m1" = "LHTTP/1.0 msg\\r\\noffset:$o1\\r\\nprev-offset:0\\r\\nepoch:$E\\r\\nchannel:chat.h1\\r\\npublish:chat.h1\\r\\nx-app:1\\r\\n\\r\\nhello" ] || lh_show_output
    # Offsets grow across the stream (chat.h2's message took one), prev-offset chains
    # the channel's own messages.
    [ "$m2" = "LHTTP/1.0 msg\\r\\noffset:$o2\\r\\nprev-offset:0\\r\\nepoch:$E\\r\\nchannel:chat.h2\\r\\npublish:chat.h2\\r\\n\\r\\nother" ] || lh_show_output
    [ "$m3" = "LHTTP/1.0 msg\\r\\noffset:$o3\\r\\nprev-offset:$o1\\r\\nepoch:$E\\r\\nchannel:chat.h1\\r\\npublish:chat.h1\\r\\n\\r\\nsecond" ] || lh_show_output
    [ "$o2" -gt "$o1" ]
    [ "$o3" -gt "$o2" ]
    # A channel without history: byte for byte, the client's offset header kept.
    [ "$(nth_got s 6)" = 'LHTTP/1.0 msg\r\npublish:plain.h1\r\noffset:99\r\n\r\nplain' ] || lh_show_output
    # A later subscriber learns the latest offset.
    [ "$(nth_got p 1)" = "LHTTP/1.0 subscribed\\r\\nchannel:chat.h1\\r\\nepoch:$E\\r\\noffset:$o3\\r\\n\\r\\n" ] || lh_show_output
    use_lhttpd A && assert_server_ok
}

@test "a subscribe to a history channel already subscribed gets its reply too (the spec: always a reply per channel)" {
    start_js
    hist_lhttpd A
    run ps_run open:a:$A_PORT 'send:a:LHTTP/1.0 subscribe\r\nsubscribe:chat.twice\r\n\r\n' recv:a \
        'send:a:LHTTP/1.0 subscribe\r\nsubscribe:chat.twice\r\n\r\n' recv:a
    [ "$status" -eq 0 ] || lh_show_output
    [ "$(count_lines '^a got [0-9]+ LHTTP/1.0 subscribed\\r\\nchannel:chat.twice\\r\\n')" -eq 2 ] || lh_show_output
}

@test "the same offsets on every worker and node: 2 workers and a second node on one NATS, clients on all three" {
    start_js
    hist_lhttpd A 2
    hist_lhttpd B 1
    hc fleet --ports "$A_PORT,$B_PORT,$A_PORT" --pubs "$A_PORT,$B_PORT" --clients 30 \
        --channel chat.same --rate 100 --stop-file "$T/stop" --status "$T/st" \
        --local-ports "$T/ports" --timeout 20 >"$T/fleet.out" 2>&1 3>&- &
    lh_record $!
    wait_for 20 grep -q '^publishing' "$T/fleet.out" || { cat "$T/fleet.out" >&2; false; }
    # A's clients are held by both of its workers.
    owners=$(ss -Htnp state established "( sport = :$A_PORT )" | grep -oE 'pid=[0-9]+' | sort -u | wc -l)
    [ "$owners" -eq 2 ] || { ss -Htnp state established "( sport = :$A_PORT )" >&2; false; }
    acked() { [ "$(awk '{print $2; exit}' "$T/st" 2>/dev/null)" -ge "$1" ] 2>/dev/null; }
    wait_for 20 acked 200 || { cat "$T/st" "$T/fleet.out" >&2; false; }
    touch "$T/stop"
    wait_for 40 grep -qE '^(ok|FAIL)$' "$T/fleet.out" || { cat "$T/fleet.out" >&2; false; }
    cat "$T/fleet.out" >&2
    grep -E 'history|JetStream' "$A_LOG" | tail -n 20 >&2
    grep -qx ok "$T/fleet.out"
    grep -q '^published .* errors 0 dup-bodies 0$' "$T/fleet.out"
}

@test "two nodes publishing to one channel at full speed: every subscriber on both sees one identical order" {
    start_js
    hist_lhttpd A 2
    hist_lhttpd B 1
    run hc fleet --ports "$A_PORT,$B_PORT" --pubs "$A_PORT,$A_PORT,$B_PORT,$B_PORT" \
        --clients 40 --channel chat.race --window 8 --count 250 --timeout 30
    printf '%s\n' "$output" >&2
    [ "$status" -eq 0 ] || lh_show_output
    has_line "published 1000 resent 0 errors 0 dup-bodies 0"
    has_line "clients 44 complete 44 mismatched 0"
    has_match '^history 1000 '
    for n in A B; do use_lhttpd $n && assert_server_ok; done
}

# --- recovery ----------------------------------------------------------------------------

# publish_n PORT CHANNEL N PREFIX: publishes PREFIX1..PREFIXN from a subscriber of CHANNEL,
# reading each copy back (so each is stored); prints the copies ("p got ..." lines).
publish_n() {
    local steps=(open:p:$1 "send:p:LHTTP/1.0 subscribe\\r\\nsubscribe:$2\\r\\n\\r\\n" recv:p) i
    for i in $(seq "$3"); do steps+=("pub:p:$2:$4$i" recv:p); done
    ps_run "${steps[@]}" | grep '^p got .*LHTTP/1.0 msg'
}

@test "recovery: a client that saw offset N gets exactly what it missed, in order, then live messages; recovered:true (from a worker's memory and from JetStream on another node)" {
    start_js
    hist_lhttpd A 2
    hist_lhttpd B 1
    run publish_n "$A_PORT" chat.r 3 seen
    [ "${#lines[@]}" -eq 3 ] || lh_show_output
    E=$(field epoch "${lines[2]}") N=$(field offset "${lines[2]}")
    # Meanwhile: 4 messages, as a live subscriber gets them.
    run publish_n "$A_PORT" chat.r 4 missed
    [ "${#lines[@]}" -eq 4 ] || lh_show_output
    missed=("${lines[@]}")
    L=$(field offset "${lines[3]}")
    missed=("${missed[@]/#p got/c got}")
    for n in A B; do
        use_lhttpd $n
        k=${#missed[@]}
        steps=(open:c:$LH_PORT "send:c:LHTTP/1.0 subscribe\\r\\nsubscribe:chat.r\\r\\nrecover:chat.r,$N,$E\\r\\n\\r\\n")
        for i in $(seq $((k + 1))); do steps+=(recv:c); done
        run ps_run "${steps[@]}" "pub:c:chat.r:live-$n" recv:c
        [ "$status" -eq 0 ] || lh_show_output
        # Exactly the missed ones (on B, A's live message too), byte for byte as delivered
        # live, oldest first; then the reply; then the next live message, chained to the
        # last one.
        for i in $(seq 0 $((k - 1))); do
            [ "${lines[$((i + 1))]}" = "${missed[$i]}" ] || { echo "node $n, message $i" >&2; lh_show_output; }
        done
        [ "${lines[$((k + 1))]}" = "$(got c "LHTTP/1.0 subscribed\\r\\nchannel:chat.r\\r\\nepoch:$E\\r\\noffset:$L\\r\\nrecovered:true\\r\\n\\r\\n")" ] || lh_show_output
        [[ ${lines[$((k + 2))]} =~ ^c\ got\ [0-9]+\ LHTTP/1.0\ msg\\r\\noffset:([0-9]+)\\r\\nprev-offset:$L\\r\\nepoch:$E\\r\\nchannel:chat.r\\r\\npublish:chat.r\\r\\n\\r\\nlive-$n$ ]] || lh_show_output
        L=${BASH_REMATCH[1]}
        [ "${#lines[@]}" -eq $((k + 3)) ] || lh_show_output
        missed+=("${lines[$((k + 2))]}")
    done
    # Up to date: nothing to send, recovered:true.
    run hc recover "$B_PORT" chat.r "$E" "$L"
    [ "$output" = "r1 recovered true offset $L epoch $E count 0 first - last - chain ok" ] || lh_show_output
}

@test "recovery refused for another epoch: recovered:false, the latest offset and epoch, nothing old" {
    start_js
    hist_lhttpd A
    run publish_n "$A_PORT" chat.e 3 m
    E=$(field epoch "${lines[2]}") N1=$(field offset "${lines[0]}") L=$(field offset "${lines[2]}")
    run hc recover "$A_PORT" chat.e 0123456789abcdef "$N1"
    [ "$output" = "r1 recovered false offset $L epoch $E count 0 first - last - chain ok" ] || lh_show_output
    # A malformed epoch is another epoch.
    run hc recover "$A_PORT" chat.e nope "$N1"
    [ "$output" = "r1 recovered false offset $L epoch $E count 0 first - last - chain ok" ] || lh_show_output
    # And the subscription is live: the next message arrives.
    run ps_run open:c:$A_PORT "send:c:LHTTP/1.0 subscribe\\r\\nsubscribe:chat.e\\r\\nrecover:chat.e,$N1,0000000000000000\\r\\n\\r\\n" \
        recv:c pub:c:chat.e:next recv:c
    [ "$status" -eq 0 ] || lh_show_output
    has_match "^c got [0-9]+ LHTTP/1.0 subscribed.*offset:$L\\\\r\\\\nrecovered:false"
    has_match "^c got [0-9]+ LHTTP/1.0 msg\\\\r\\\\noffset:[0-9]+\\\\r\\\\nprev-offset:$L\\\\r.*next$"
}

@test "recovery of an evicted offset (history size 5 exceeded): recovered:false, nothing old; one still stored recovers (memory and JetStream)" {
    start_js
    hist_lhttpd A
    hist_lhttpd B
    run publish_n "$A_PORT" small.ev 9 m
    [ "${#lines[@]}" -eq 9 ] || lh_show_output
    E=$(field epoch "${lines[0]}") L=$(field offset "${lines[8]}")
    o3=$(field offset "${lines[2]}") o4=$(field offset "${lines[3]}") o5=$(field offset "${lines[4]}")
    for port in "$A_PORT" "$B_PORT"; do
        # m4..m9 are the 5 newest after m3: stored, recovered.
        run hc recover "$port" small.ev "$E" "$o4"
        [ "$output" = "r1 recovered true offset $L epoch $E count 5 first $o5 last $L chain ok" ] || lh_show_output
        # After m3 would need m4, evicted: refused, never partial.
        run hc recover "$port" small.ev "$E" "$o3"
        [ "$output" = "r1 recovered false offset $L epoch $E count 0 first - last - chain ok" ] || lh_show_output
    done
}

@test "recovery of an expired offset (ttl_ms): recovered:false, nothing old" {
    start_js
    hist_lhttpd A
    hist_lhttpd B
    run publish_n "$A_PORT" ttl.x 3 m
    E=$(field epoch "${lines[0]}") o1=$(field offset "${lines[0]}")
    # JetStream drops them after 1.5 s.
    gone() {
        [ "$(nats_json "$NATS_MON_PORT" 'jsz?accounts=true&streams=true' |
            jq '[.account_details[]?.stream_detail[]? | select(.name == "LHTTP_ttl") | .state.messages] | first')" = 0 ]
    }
    wait_for 15 gone || { nats_json "$NATS_MON_PORT" 'jsz?accounts=true&streams=true' >&2; false; }
    for port in "$B_PORT" "$A_PORT"; do
        run hc recover "$port" ttl.x "$E" "$o1"
        [[ $output =~ ^r1\ recovered\ false\ offset\ [0-9]+\ epoch\ $E\ count\ 0\  ]] || { echo "port $port ($A_PORT is the node that delivered them)" >&2; lh_show_output; }
        run ps_run open:h:$port 'send:h:LHTTP/1.0 history\r\nchannel:ttl.x\r\nlimit:10\r\n\r\n' recv:h
        [[ ${lines[1]} =~ ^h\ got\ [0-9]+\ LHTTP/1.0\ history\\r\\n.*count:0\\r\\n ]] || { echo "port $port ($A_PORT is the node that delivered them)" >&2; lh_show_output; }
    done
}

@test "a message published after the channel's messages all expired (ttl_ms) reaches a subscriber that stayed, naming the last one it got" {
    start_js
    hist_lhttpd A
    ps_bg s open:s:$A_PORT 'send:s:LHTTP/1.0 subscribe\r\nsubscribe:ttl.stay\r\n\r\n' recv:s barrier:s \
        pub:s:ttl.stay:first recv:s print:first "await:$T/go" pub:s:ttl.stay:second recv:s print:done
    wait_bg s '^first$'
    o1=$(sed -nE 's/.*offset:([0-9]+)\\r\\nprev-offset.*first$/\1/p' "$T/s.out")
    [ -n "$o1" ]
    gone() {
        [ "$(nats_json "$NATS_MON_PORT" 'jsz?accounts=true&streams=true' |
            jq '[.account_details[]?.stream_detail[]? | select(.name == "LHTTP_ttl") | .state.messages] | first')" = 0 ]
    }
    wait_for 15 gone
    touch "$T/go"
    wait_bg s '^done$'
    grep -qE "prev-offset:$o1\\\\r.*second$" "$T/s.out" || { cat "$T/s.out" >&2; false; }
    run grep -c 'dropped' "$LH_LOG"
    [ "$output" = 0 ]
}

@test "more than nats.jetstream.max_read missing: recovered:false, nothing old; max_read missing: recovered:true" {
    start_js
    hist_lhttpd A 1 '"max_read": 4'
    run publish_n "$A_PORT" chat.mr 10 m
    [ "${#lines[@]}" -eq 10 ] || lh_show_output
    E=$(field epoch "${lines[0]}") L=$(field offset "${lines[9]}")
    o1=$(field offset "${lines[0]}") o6=$(field offset "${lines[5]}") o7=$(field offset "${lines[6]}")
    run hc recover "$A_PORT" chat.mr "$E" "$o1"
    [ "$output" = "r1 recovered false offset $L epoch $E count 0 first - last - chain ok" ] || lh_show_output
    run hc recover "$A_PORT" chat.mr "$E" "$o6"
    [ "$output" = "r1 recovered true offset $L epoch $E count 4 first $o7 last $L chain ok" ] || lh_show_output
}

@test "recoveries arriving together, and one during the JetStream read, on a node without a copy: each recovered:true with exactly what follows its offset" {
    start_js
    hist_lhttpd A
    # 800 messages stored one by one (each published once the one before is delivered).
    run hc fleet --ports "$A_PORT" --clients 0 --channel chat.w --window 1 --count 800
    [ "$status" -eq 0 ] || lh_show_output
    [[ $output =~ history\ 800\ first\ [0-9]+\ last\ [0-9]+\ epoch\ ([0-9a-f]{16}) ]] || lh_show_output
    E=${BASH_REMATCH[1]}
    export HC_TIMEOUT=20
    run hc offsets "$A_PORT" chat.w 1000
    [ "${#lines[@]}" -eq 801 ] || lh_show_output
    offs=($(printf '%s\n' "${lines[@]:0:800}" | cut -d' ' -f1))
    L=${offs[799]}
    hist_lhttpd B
    # Three recoveries at once, then one 20 ms later (while B reads the missing ones from
    # JetStream for the first three); each must get exactly what follows its offset.
    run hc recover "$B_PORT" chat.w "$E" "${offs[699]}" "${offs[499]}" "${offs[599]}" "${offs[99]}:20"
    printf '%s\n' "$output" >&2
    has_line "r1 recovered true offset $L epoch $E count 100 first ${offs[700]} last $L chain ok"
    has_line "r2 recovered true offset $L epoch $E count 300 first ${offs[500]} last $L chain ok"
    has_line "r3 recovered true offset $L epoch $E count 200 first ${offs[600]} last $L chain ok"
    has_line "r4 recovered true offset $L epoch $E count 700 first ${offs[100]} last $L chain ok"
}

@test "a worker just started serves a recovery (its stream asked first, not 'JetStream unreachable')" {
    start_js
    hist_lhttpd A
    run publish_n "$A_PORT" chat.fresh 2 m
    E=$(field epoch "${lines[0]}") o1=$(field offset "${lines[0]}") o2=$(field offset "${lines[1]}")
    # A client that connects to B as soon as B accepts.
    port=$(free_port) && LH_PORTS_TAKEN="$LH_PORTS_TAKEN $port"
    HC_RETRY_CONNECT=1 hc recover "$port" chat.fresh "$E" "$o1" >"$T/fresh.out" 2>&1 3>&- &
    rpid=$!
    lh_record $rpid
    cat >"$T/fresh.json" <<EOF
{ "listen": ["127.0.0.1:$port"], "workers": 1, "control_socket": "$T/fresh.sock",
  "nats": {"servers": ["nats://127.0.0.1:$NATS_PORT"]}, $NAMESPACES }
EOF
    "$LHTTPD" -c "$T/fresh.json" >"$T/lhttpd-fresh.log" 2>&1 3>&- &
    lh_record $!
    wait_gone "$rpid" 15
    run cat "$T/fresh.out"
    [ "$output" = "r1 recovered true offset $o2 epoch $E count 1 first $o2 last $o2 chain ok" ] || lh_show_output
}

# nats_pub SUBJECT PAYLOAD: publishes PAYLOAD (printf %b escapes) on SUBJECT as a plain
# NATS client of NATS_PORT; returns once nats-server has handled it (PONG to a PING).
nats_pub() {
    printf '%b' "$2" | "$PY" -c '
import socket, sys
port, subj, data = int(sys.argv[1]), sys.argv[2].encode(), sys.stdin.buffer.read()
s = socket.create_connection(("127.0.0.1", port), timeout=10)
f = s.makefile("rb")
f.readline()
s.sendall(b"CONNECT {\"verbose\":false}\r\nPUB %s %d\r\n%s\r\nPING\r\n" % (subj, len(data), data))
while f.readline().strip() != b"PONG":
    pass
' "$NATS_PORT" "$1"
}

@test "a message on NATS whose prev-offset is behind the last one delivered (a fork in the chain) does not crash the worker" {
    start_js
    hist_lhttpd A
    run publish_n "$A_PORT" chat.fork 2 m
    E=$(field epoch "${lines[0]}") a=$(field offset "${lines[0]}") b=$(field offset "${lines[1]}")
    ps_bg s open:s:$A_PORT 'send:s:LHTTP/1.0 subscribe\r\nsubscribe:chat.fork\r\n\r\n' recv:s print:ready \
        "await:$T/go" recv:s recv:s
    wait_bg s '^ready$'
    # Offset ahead of the last (b), previous offset behind it: no chain can reach it.
    nats_pub lhttp.chat.fork "LHTTP/1.0 msg\r\noffset:$((b + 5))\r\nprev-offset:$a\r\nepoch:$E\r\npublish:chat.fork\r\n\r\nforged"
    touch "$T/go"
    run publish_n "$A_PORT" chat.fork 1 next
    use_lhttpd A && assert_server_alive || false
    [ "${#lines[@]}" -eq 1 ] || lh_show_output
    n=$(field offset "${lines[0]}")
    wait_bg s "^s got [0-9]+ LHTTP/1.0 msg\\\\r\\\\noffset:$n\\\\r\\\\nprev-offset:$b\\\\r.*next1$"
    use_lhttpd A && assert_server_alive || false
}

# js_store SUBJECT PREV FRAME: stores FRAME (printf %b escapes) as a one-message batch
# naming PREV on SUBJECT straight into JetStream, as a plain NATS client of NATS_PORT
# (nothing is published live); prints the stream sequence of the acknowledgement.
js_store() {
    printf '%b' "$3" | "$PY" -c '
import json, socket, sys
port, subj, prev, frame = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3].encode(), sys.stdin.buffer.read()
data = b"LHB1 1\n%d\n%s" % (len(frame), frame)
hdr = b"NATS/1.0\r\nLhttp-Prev: %s\r\n\r\n" % prev
s = socket.create_connection(("127.0.0.1", port), timeout=10)
f = s.makefile("rb")
f.readline()
s.sendall(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB _store.ack 1\r\n"
          b"HPUB %s _store.ack %d %d\r\n%s%s\r\n" % (subj, len(hdr), len(hdr) + len(data), hdr, data))
while True:
    line = f.readline()
    if line.startswith(b"PING"):
        s.sendall(b"PONG\r\n")
    elif line.startswith(b"MSG"):
        print(json.loads(f.read(int(line.split()[-1]) + 2))["seq"])
        break
' "$NATS_PORT" "$1" "$2"
}

@test "a recovery naming an offset newer than the worker's chain (a message it has not seen yet) catches up from JetStream: recovered:true, no duplicate, and its subscribers get the message once" {
    start_js
    hist_lhttpd A
    run publish_n "$A_PORT" chat.ahead 2 m
    E=$(field epoch "${lines[1]}") b=$(field offset "${lines[1]}")
    # A subscriber keeps the worker's chain (ending at b) in memory.
    ps_bg s open:s:$A_PORT 'send:s:LHTTP/1.0 subscribe\r\nsubscribe:chat.ahead\r\n\r\n' recv:s print:ready \
        recv:s print:caught "await:$T/go" recv:s
    wait_bg s '^ready$'
    # Stored behind the worker's back: it did not see it live.
    seq=$(js_store 'lhttp.$h.chat.ahead' "$b" 'LHTTP/1.0 msg\r\npublish:chat.ahead\r\n\r\nunseen')
    n=$((seq * 1024))
    [ "$n" -gt "$b" ]
    # A client that got it elsewhere recovers from it: nothing to send, recovered:true.
    run ps_run open:r:$A_PORT "send:r:LHTTP/1.0 subscribe\r\nsubscribe:chat.ahead\r\nrecover:chat.ahead,$n,$E\r\n\r\n" \
        recv:r barrier:r pub:r:chat.ahead:after recv:r
    [ "$status" -eq 0 ] || lh_show_output
    [ "$(nth_got r 1)" = "LHTTP/1.0 subscribed\r\nchannel:chat.ahead\r\nepoch:$E\r\noffset:$n\r\nrecovered:true\r\n\r\n" ] || lh_show_output
    has_match "^r got [0-9]+ LHTTP/1.0 msg\\\\r\\\\noffset:[0-9]+\\\\r\\\\nprev-offset:$n\\\\r.*after\$"
    [ "$(count_lines '^r got ')" -eq 2 ] || lh_show_output
    # The subscriber got the caught-up message, in its place, once, then the next one.
    wait_bg s '^caught$'
    wait_bg s "^s got [0-9]+ LHTTP/1.0 msg\\\\r\\\\noffset:$n\\\\r\\\\nprev-offset:$b\\\\r.*unseen\$"
    touch "$T/go"
    wait_bg s "prev-offset:$n\\\\r.*after\$"
    [ "$(grep -c 'unseen$' "$T/s.out")" -eq 1 ]
    assert_server_ok
}

# --- history reads -----------------------------------------------------------------------

@test "history reads: limit, since, oldest first, each exactly as delivered, then the end reply; the same on a node without a copy" {
    start_js
    hist_lhttpd A
    hist_lhttpd B
    run publish_n "$A_PORT" chat.hr 6 m
    [ "${#lines[@]}" -eq 6 ] || lh_show_output
    msgs=("${lines[@]}")
    E=$(field epoch "${lines[0]}") L=$(field offset "${lines[5]}") o3=$(field offset "${lines[2]}")
    end() { got h "LHTTP/1.0 history\\r\\nchannel:chat.hr\\r\\nepoch:$E\\r\\noffset:$L\\r\\ncount:$1\\r\\n\\r\\n"; }
    for port in "$B_PORT" "$A_PORT"; do
        # limit 2: the newest two, oldest first.
        run ps_run open:h:$port 'send:h:LHTTP/1.0 history\r\nchannel:chat.hr\r\nlimit:2\r\n\r\n' recv:h recv:h recv:h
        [ "$status" -eq 0 ] || lh_show_output
        lines_are "h open" "${msgs[4]/#p got/h got}" "${msgs[5]/#p got/h got}" "$(end 2)"
        # since m3: the three after it.
        run ps_run open:h:$port "send:h:LHTTP/1.0 history\\r\\nchannel:chat.hr\\r\\nlimit:10\\r\\nsince:$o3\\r\\n\\r\\n" \
            recv:h recv:h recv:h recv:h
        lines_are "h open" "${msgs[3]/#p got/h got}" "${msgs[4]/#p got/h got}" "${msgs[5]/#p got/h got}" "$(end 3)"
        # No limit: all six (max_read is 1000).
        run ps_run open:h:$port 'send:h:LHTTP/1.0 history\r\nchannel:chat.hr\r\n\r\n' \
            recv:h recv:h recv:h recv:h recv:h recv:h recv:h
        [ "$status" -eq 0 ] || lh_show_output
        [ "${lines[1]}" = "${msgs[0]/#p got/h got}" ] || lh_show_output
        last_line_is "$(end 6)"
        # since the latest: nothing.
        run ps_run open:h:$port "send:h:LHTTP/1.0 history\\r\\nchannel:chat.hr\\r\\nlimit:5\\r\\nsince:$L\\r\\n\\r\\n" recv:h
        lines_are "h open" "$(end 0)"
    done
    # A channel with nothing stored: count 0, offset 0.
    run ps_run open:h:$A_PORT 'send:h:LHTTP/1.0 history\r\nchannel:chat.empty\r\nlimit:5\r\n\r\n' recv:h
    lines_are "h open" "$(got h "LHTTP/1.0 history\\r\\nchannel:chat.empty\\r\\nepoch:$E\\r\\noffset:0\\r\\ncount:0\\r\\n\\r\\n")"
}

@test "a history read returns the newest messages of a channel past its size (5, 8 published) or past max_read (4, 10 published)" {
    start_js
    hist_lhttpd A
    hist_lhttpd B 1 '"timeout_ms": 1000, "max_read": 4'
    run publish_n "$A_PORT" small.hr 8 m
    [ "${#lines[@]}" -eq 8 ] || lh_show_output
    msgs=("${lines[@]}")
    E=$(field epoch "${lines[0]}") L=$(field offset "${lines[7]}")
    run ps_run open:h:$A_PORT 'send:h:LHTTP/1.0 history\r\nchannel:small.hr\r\nlimit:3\r\n\r\n' recv:h recv:h recv:h recv:h
    lines_are "h open" "${msgs[5]/#p got/h got}" "${msgs[6]/#p got/h got}" "${msgs[7]/#p got/h got}" \
        "$(got h "LHTTP/1.0 history\\r\\nchannel:small.hr\\r\\nepoch:$E\\r\\noffset:$L\\r\\ncount:3\\r\\n\\r\\n")"
    run ps_run open:h:$A_PORT 'send:h:LHTTP/1.0 history\r\nchannel:small.hr\r\nlimit:100\r\n\r\n' \
        recv:h recv:h recv:h recv:h recv:h recv:h
    [ "$status" -eq 0 ] || lh_show_output
    [ "${lines[1]}" = "${msgs[3]/#p got/h got}" ] || lh_show_output
    last_line_is "$(got h "LHTTP/1.0 history\\r\\nchannel:small.hr\\r\\nepoch:$E\\r\\noffset:$L\\r\\ncount:5\\r\\n\\r\\n")"
    # B reads at most 4, whatever the limit.
    run publish_n "$B_PORT" chat.mr 10 m
    [ "${#lines[@]}" -eq 10 ] || lh_show_output
    msgs=("${lines[@]}")
    E=$(field epoch "${lines[0]}") L=$(field offset "${lines[9]}")
    run ps_run open:h:$B_PORT 'send:h:LHTTP/1.0 history\r\nchannel:chat.mr\r\nlimit:100\r\n\r\n' \
        recv:h recv:h recv:h recv:h recv:h
    [ "$status" -eq 0 ] || lh_show_output
    [ "${lines[1]}" = "${msgs[6]/#p got/h got}" ] || lh_show_output
    last_line_is "$(got h "LHTTP/1.0 history\\r\\nchannel:chat.mr\\r\\nepoch:$E\\r\\noffset:$L\\r\\ncount:4\\r\\n\\r\\n")"
}

@test "history read errors: 404 for a channel without history, 403 without the subscribe permission, 400 without a valid channel" {
    start_js
    hist_lhttpd A
    run ps_run open:h:$A_PORT 'send:h:LHTTP/1.0 history\r\nchannel:plain.x\r\nlimit:5\r\n\r\n' recv:h \
        'send:h:LHTTP/1.0 history\r\nchannel:priv.x\r\nlimit:5\r\n\r\n' recv:h \
        'send:h:LHTTP/1.0 history\r\nlimit:5\r\n\r\n' recv:h \
        'send:h:LHTTP/1.0 history\r\nchannel:chat.bad name\r\n\r\n' recv:h
    [ "$status" -eq 0 ] || lh_show_output
    has_match '^h got [0-9]+ LHTTP/1.0 error\\r\\ncode:404\\r\\n.*in-reply-to:history'
    has_match '^h got [0-9]+ LHTTP/1.0 error\\r\\ncode:403\\r\\n.*in-reply-to:history'
    [ "$(count_lines '^h got [0-9]+ LHTTP/1.0 error\\r\\ncode:400\\r\\n.*in-reply-to:history')" -eq 2 ] || lh_show_output
    use_lhttpd A && assert_server_ok
}

# --- POST /publish ---------------------------------------------------------------------------

@test "POST /publish answers with each history channel's offset once it is stored; subscribers get it with that offset" {
    start_js
    hist_lhttpd A
    ps_bg s open:s:$A_PORT 'send:s:LHTTP/1.0 subscribe\r\nsubscribe:chat.p1 chat.p2 plain.p\r\n\r\n' \
        recv:s recv:s print:ready recv:s recv:s recv:s
    wait_bg s '^ready$'
    printf 'LHTTP/1.0 post\r\npublish:chat.p1 chat.p2 plain.p\r\n\r\nviahttp' >"$T/body"
    run curl -s --max-time 5 -w '\n%{http_code}' --data-binary @"$T/body" "http://127.0.0.1:$A_PORT/publish"
    [ "${lines[1]}" = 200 ] || lh_show_output
    body=${lines[0]}
    [ "$(jq -c '.offsets | keys' <<<"$body")" = '["chat.p1","chat.p2"]' ] || lh_show_output
    o1=$(jq -r '.offsets["chat.p1"]' <<<"$body") o2=$(jq -r '.offsets["chat.p2"]' <<<"$body")
    [ "$(jq -r '.local_deliveries' <<<"$body")" = 1 ] || lh_show_output
    wait_bg s "^s got [0-9]+ LHTTP/1.0 post\\\\r\\\\noffset:$o1\\\\r\\\\nprev-offset:0\\\\r\\\\nepoch:[0-9a-f]{16}\\\\r\\\\nchannel:chat.p1\\\\r\\\\npublish:chat.p1 chat.p2 plain.p\\\\r\\\\n\\\\r\\\\nviahttp$"
    wait_bg s "^s got [0-9]+ LHTTP/1.0 post\\\\r\\\\noffset:$o2\\\\r\\\\nprev-offset:0\\\\r\\\\nepoch:[0-9a-f]{16}\\\\r\\\\nchannel:chat.p2\\\\r\\\\n.*viahttp$"
    wait_bg s "^s got [0-9]+ LHTTP/1.0 post\\\\r\\\\npublish:chat.p1 chat.p2 plain.p\\\\r\\\\n\\\\r\\\\nviahttp$"
}

# --- JetStream outages -----------------------------------------------------------------------

@test "lhttpd on a nats-server without JetStream: 503 on history channels (publish, read), subscribe still works; other channels as usual" {
    start_nats --monitor
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"], "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"], "jetstream": {"timeout_ms": 500}},
        '"$NAMESPACES"'
    }'
    wait_log 'stream LHTTP_chat: .*refuse publishes' 10
    run ps_run open:a:$LH_PORT open:b:$LH_PORT \
        'send:a:LHTTP/1.0 subscribe\r\nsubscribe:chat.o plain.o\r\nrecover:chat.o,5,0123456789abcdef\r\n\r\n' recv:a barrier:a \
        'sub:b:plain.o' sync:a:b:plain.o \
        'pub:a:chat.o:h1' recv:a 'pub:a:plain.o:p1' recv:a recv:b \
        'pub:a:plain.o chat.o:both' recv:a recv:a recv:b \
        'send:a:LHTTP/1.0 history\r\nchannel:chat.o\r\nlimit:5\r\n\r\n' recv:a
    [ "$status" -eq 0 ] || lh_show_output
    has_match '^a got [0-9]+ LHTTP/1.0 subscribed\\r\\nchannel:chat.o\\r\\n.*recovered:false'
    [ "$(count_lines '^a got [0-9]+ LHTTP/1.0 error\\r\\ncode:503\\r\\n.*in-reply-to:msg')" -eq 2 ] || lh_show_output
    has_match '^a got [0-9]+ LHTTP/1.0 error\\r\\ncode:503\\r\\n.*in-reply-to:history'
    has_line "$(got a 'LHTTP/1.0 msg\r\npublish:plain.o\r\n\r\np1')"
    has_line "$(got b 'LHTTP/1.0 msg\r\npublish:plain.o\r\n\r\np1')"
    has_line "$(got b 'LHTTP/1.0 msg\r\npublish:plain.o chat.o\r\n\r\nboth')"
    # Nothing reached chat.o without an offset.
    no_match '^a got .*publish:chat.o\\r\\n\\r\\nh1'
    # Over HTTP too.
    printf 'LHTTP/1.0 post\r\npublish:chat.o\r\n\r\nviahttp' >"$T/body"
    run curl -s --max-time 5 -o /dev/null -w '%{http_code}' --data-binary @"$T/body" "http://127.0.0.1:$LH_PORT/publish"
    [ "$output" = 503 ] || lh_show_output
    assert_server_ok
}

@test "/readyz is 503 until the history streams answer (or fail to, after nats.jetstream.timeout_ms), then 200" {
    start_nats
    # A NATS client that takes every JetStream API request and never answers: the streams
    # stay unanswered until the JetStream timeout.
    "$PY" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
f = s.makefile("rb")
f.readline()
s.sendall(b"CONNECT {\"verbose\":false}\r\nSUB $JS.API.> 1\r\nPING\r\n")
while True:
    line = f.readline()
    if not line:
        break
    if line.startswith(b"PING"):
        s.sendall(b"PONG\r\n")
    elif line.startswith(b"PONG"):
        print("subscribed", flush=True)
    elif line.startswith(b"MSG"):
        f.read(int(line.split()[-1]) + 2)
' "$NATS_PORT" >"$T/hole.out" 2>&1 3>&- &
    lh_record $!
    wait_for 5 grep -q subscribed "$T/hole.out"
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"], "jetstream": {"timeout_ms": 4000}},
        '"$NAMESPACES"'
    }'
    t0=$EPOCHREALTIME
    run curl -s -w '\n%{http_code}\n' "http://127.0.0.1:$LH_PORT/readyz?verbose"
    has_line '[+] nats'
    has_line '[-] history'
    last_line_is 503
    wait_for 10 grep -q 'stream LHTTP_chat: no answer' "$LH_LOG"
    # Not before the timeout (4 s from the worker's first ask, which came before t0).
    [ "$(bc <<<"$EPOCHREALTIME - $t0 < 4.5")" = 1 ]
    run curl -s -w '\n%{http_code}\n' "http://127.0.0.1:$LH_PORT/readyz?verbose"
    has_line '[+] history'
    last_line_is 200
    assert_server_ok
}

@test "nats-server with JetStream stopped and started again: 503 on history channels meanwhile, local delivery goes on; then the chain and epoch go on" {
    start_js
    hist_lhttpd A 1 '"timeout_ms": 500'
    ps_bg a open:a:$A_PORT 'send:a:LHTTP/1.0 subscribe\r\nsubscribe:chat.out plain.out\r\n\r\n' recv:a barrier:a \
        pub:a:chat.out:before recv:a print:phase1 "await:$T/down:20" \
        pub:a:chat.out:during recv:a pub:a:plain.out:local recv:a \
        'send:a:LHTTP/1.0 history\r\nchannel:chat.out\r\nlimit:5\r\n\r\n' recv:a print:phase2 \
        "await:$T/up:30" pub:a:chat.out:after recv:a print:done
    wait_bg a '^phase1$' 10
    b=$(grep -E '^a got .*before$' "$T/a.out" | sed -E 's/^a got [0-9]+ //')
    E=$(field epoch "$b") N=$(field offset "$b")
    [ -n "$E" ] && [ -n "$N" ] || { cat "$T/a.out" >&2; false; }
    lh_stop_pid "$NATS_PID"
    touch "$T/down"
    wait_bg a '^phase2$' 10
    run bg_out a
    has_match '^a got [0-9]+ LHTTP/1.0 error\\r\\ncode:503\\r\\n.*in-reply-to:msg'
    has_line "$(got a 'LHTTP/1.0 msg\r\npublish:plain.out\r\n\r\nlocal')"
    has_match '^a got [0-9]+ LHTTP/1.0 error\\r\\ncode:503\\r\\n.*in-reply-to:history'
    no_match 'during$'
    # Back on the same port and store: the worker finds its stream again (a second
    # "ready" line), the next message follows "before".
    start_nats_on "$NATS_PORT" "$NATS_MON_PORT" -js -sd "$NATS_STORE"
    wait_for 15 streams_ready "$A_LOG" 5 || { cat "$A_LOG" >&2; false; }
    touch "$T/up"
    wait_bg a '^done$' 10
    run bg_out a
    has_match "^a got [0-9]+ LHTTP/1.0 msg\\\\r\\\\noffset:[0-9]+\\\\r\\\\nprev-offset:$N\\\\r\\\\nepoch:$E\\\\r\\\\nchannel:chat.out\\\\r\\\\npublish:chat.out\\\\r\\\\n\\\\r\\\\nafter$"
    use_lhttpd A && assert_server_ok
}

# --- many clients through reloads and a killed worker ------------------------------------------

# fleet_status FIELD: a number of the fleet's status file ($T/st).
fleet_status() { awk -v k="$1" 'NR == 1 { for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' "$T/st" 2>/dev/null; }

# fleet_back N RECONNECTS: all N clients subscribed again, after at least RECONNECTS
# reconnects in all.
fleet_back() {
    [ "$(fleet_status connected)" = "$1" ] && [ "$(fleet_status reconnects)" -ge "$2" ] 2>/dev/null
}

# fleet_through_reloads CLIENTS RELOADS: lhttpd (2 workers, drain_timeout_ms 200 and no
# handoff so that every reload ends every connection) and CLIENTS clients plus a publisher (histclient.py,
# 2 processes); RELOADS reloads, every third by SIGHUP to the master, the others by
# lhttpd -s reload, each followed by every client being back; then a worker is killed with
# SIGKILL; then the publisher stops and every client must have every message once, in
# order. Prints the timings as bats comments.
fleet_through_reloads() {
    local n=$1 r=$2 i total t0 t victim nv before
    start_js
    hist_lhttpd A 2 '"timeout_ms": 1000' '"drain_timeout_ms": 200, "handoff": {"enabled": false}'
    total=$((n + 1))
    t0=$EPOCHREALTIME
    hc fleet --ports "$A_PORT" --clients "$n" --procs 2 --rate 50 --channel chat.reload \
        --stop-file "$T/stop" --status "$T/st" --timeout 40 >"$T/fleet.out" 2>&1 3>&- &
    lh_record $!
    wait_for 40 grep -q '^publishing' "$T/fleet.out" || { cat "$T/fleet.out" >&2; false; }
    for i in $(seq "$r"); do
        t=$EPOCHREALTIME
        if [ $((i % 3)) = 0 ]; then
            kill -HUP "$A_PID"
        else
            "$LHTTPD" -s reload -c "$LH_CONF" >/dev/null || { cat "$A_LOG" >&2; false; }
        fi
        wait_for 30 fleet_back "$total" $((i * total)) || { echo "reload $i:" >&2; cat "$T/st" >&2; false; }
        echo "# reload $i: every client back in $(bc <<<"$EPOCHREALTIME - $t") s" >&3
    done
    # The worker with the most clients (nv of them).
    read -r nv victim <<<"$(ss -Htnp state established "( sport = :$A_PORT )" | grep -oE 'pid=[0-9]+' |
        sort | uniq -c | sort -rn | awk '{ sub("pid=", "", $2); print $1, $2; exit }')"
    [ -n "$victim" ]
    [ "$victim" != "$A_PID" ]
    before=$(fleet_status reconnects)
    kill -KILL "$victim"
    t=$EPOCHREALTIME
    wait_for 30 fleet_back "$total" $((before + nv)) || { echo "after SIGKILL:" >&2; cat "$T/st" >&2; false; }
    echo "# SIGKILL of a worker with $nv clients: every client back in $(bc <<<"$EPOCHREALTIME - $t") s" >&3
    touch "$T/stop"
    wait_for 60 grep -qE '^(ok|FAIL)$' "$T/fleet.out" || { cat "$T/fleet.out" >&2; false; }
    echo "# $n clients, $r reloads and a SIGKILL: $(grep '^published' "$T/fleet.out"), $(grep '^deliveries' "$T/fleet.out"), $(bc <<<"$EPOCHREALTIME - $t0") s" >&3
    cat "$T/fleet.out" >&2
    grep -qx ok "$T/fleet.out"
    grep -q "^clients $total complete $total mismatched 0$" "$T/fleet.out"
    grep -q '^reconnects [0-9]* recovered-true [0-9]* recovered-false 0 bad 0$' "$T/fleet.out"
    grep -q "died" "$A_LOG"
}

@test "100 subscribers through 3 reloads (one by SIGHUP) and a SIGKILL of a worker: each recovers, every one has every message once, in order" {
    fleet_through_reloads 100 3
}

@test "1000 subscribers through 10 reloads and a SIGKILL of a worker (issue 18's acceptance): each recovers, every one has every message once, in order" {
    fleet_through_reloads 1000 10
}

# --- a 3-node JetStream cluster --------------------------------------------------------------

# start_js_cluster: three nats-servers (n1 n2 n3) with JetStream in cluster "lhjs", each
# with a config file (server_name, store, routes to the other two); NODE_PORT, NODE_MON,
# NODE_PID for each; returns once the JetStream meta group has a leader and 3 peers.
start_js_cluster() {
    local n p m c i
    for n in n1 n2 n3; do
        for i in p m c; do
            eval "$i=\$(free_port)" && LH_PORTS_TAKEN="$LH_PORTS_TAKEN ${!i}" || return 1
        done
        eval "${n}_PORT=$p ${n}_MON=$m ${n}_CLUSTER=$c"
    done
    export LH_PORTS_TAKEN
    for n in n1 n2 n3; do
        local routes="" o
        for o in n1 n2 n3; do
            [ $o = $n ] || routes="$routes nats://127.0.0.1:$(eval echo \$${o}_CLUSTER)"
        done
        cat >"$T/$n.conf" <<EOF
server_name: $n
jetstream { store_dir: "$T/js-$n" }
cluster {
  name: lhjs
  listen: 127.0.0.1:$(eval echo \$${n}_CLUSTER)
  routes: [$(echo $routes | sed 's/ /, /g')]
}
EOF
        start_nats_on "$(eval echo \$${n}_PORT)" "$(eval echo \$${n}_MON)" -c "$T/$n.conf" || return 1
        eval "${n}_PID=$NATS_PID"
    done
    wait_for 30 js_meta_ready "$n1_MON" || { nats_json "$n1_MON" 'jsz' >&2; return 1; }
}

# js_meta_ready MON: the JetStream meta group has a leader and three peers.
js_meta_ready() {
    nats_json "$1" jsz | jq -e '.meta_cluster.leader != null and .meta_cluster.leader != "" and (.meta_cluster.cluster_size // 0) >= 3' >/dev/null 2>&1
}

# stream_leader MON STREAM: the server name of the stream's leader.
stream_leader() {
    nats_json "$1" 'jsz?accounts=true&streams=true' | jq -r --arg s "$2" \
        '[.account_details[]?.stream_detail[]? | select(.name == $s) | .cluster.leader] | first // empty'
}

# One publishing node: nats-server 2.9.10 does not hold Nats-Expected-Last-Subject-Sequence
# against publishes still being replicated, so two nodes publishing to one channel of a
# replicated stream can fork its chain (reproduced without lhttpd; see README, History).
@test "3-node JetStream cluster (replicas 3): SIGKILL of the stream leader while one node publishes loses no acknowledged message; clients on both nodes get every message, once, in order, and recover" {
    start_js_cluster
    servers='"nats://127.0.0.1:'$n1_PORT'", "nats://127.0.0.1:'$n2_PORT'", "nats://127.0.0.1:'$n3_PORT'"'
    for n in A B; do
        start_lhttpd '{
            "listen": ["127.0.0.1:@PORT@"], "workers": 1,
            "nats": {"servers": ['"$servers"'],
                     "jetstream": {"replicas": 3, "timeout_ms": 1000}},
            '"$NAMESPACES"'
        }'
        save_lhttpd $n
        wait_for 30 streams_ready "$LH_LOG" 4 || { cat "$LH_LOG" >&2; false; }
    done
    leader=$(stream_leader "$n1_MON" LHTTP_chat)
    [ -n "$leader" ] || { nats_json "$n1_MON" 'jsz?accounts=true&streams=true' >&2; false; }
    hc fleet --ports "$A_PORT,$B_PORT" --pubs "$A_PORT" --clients 20 --rate 50 \
        --channel chat.cluster --stop-file "$T/stop" --status "$T/st" --timeout 40 \
        >"$T/fleet.out" 2>&1 3>&- &
    lh_record $!
    wait_for 20 grep -q '^publishing' "$T/fleet.out" || { cat "$T/fleet.out" >&2; false; }
    acked() { [ "$(fleet_status acked)" -ge "$1" ] 2>/dev/null; }
    wait_for 20 acked 150 || { cat "$T/st" >&2; false; }
    at_kill=$(fleet_status acked)
    kill -KILL "$(eval echo \$${leader}_PID)"
    # Publishing goes on once the other two elect a leader.
    wait_for 40 acked $((at_kill + 150)) || { cat "$T/st" "$A_LOG" >&2; false; }
    touch "$T/stop"
    wait_for 60 grep -qE '^(ok|FAIL)$' "$T/fleet.out" || { cat "$T/fleet.out" >&2; false; }
    cat "$T/fleet.out" >&2
    echo "# killed $leader after $at_kill acknowledged: $(grep '^published' "$T/fleet.out")" >&3
    grep -qx ok "$T/fleet.out"
    # A new client recovers everything from the first message on, on either node.
    read -r _ h _ first _ last _ E <<<"$(grep '^history ' "$T/fleet.out")"
    for port in "$A_PORT" "$B_PORT"; do
        run hc recover "$port" chat.cluster "$E" "$first"
        [[ $output =~ ^r1\ recovered\ true\ offset\ $last\ epoch\ $E\ count\ $((h - 1))\ first\ [0-9]+\ last\ $last\ chain\ ok$ ]] ||
            lh_show_output
    done
}
