#!/usr/bin/env bats
# Pub/sub on one lhttpd with a real nats-server (its monitoring port on, to see what
# lhttpd subscribes there): channels between clients, the subscribe / unsubscribe /
# publish headers, POST /publish, channel name checks and limits, a subscriber that does
# not read, order, and an independent WebSocket client. Across lhttpd processes and
# nats-servers, and NATS outages: cluster.bats.
#
# Clients: tests/lib/pubsub.py drives several named connections in one process, so a
# test knows what happened before what (a subscription is in place once the pong of a
# ping sent after it arrives; a message that must not come is proven absent by a later
# message of the same publisher arriving first). lhttpc and the python websockets
# client (wsclient.py) take part too.

load ../lib/helpers
load ../lib/pubsub

# Every lhttpd is stopped first: a sanitizer build reports some errors (leaks, use after
# free at exit) only then.
teardown() {
    stop_all
    ! grep -E -A12 'AddressSanitizer|LeakSanitizer|runtime error:' "$(lh_tmp)"/lhttpd-*.log >&2
}

# start_ps [JSON_MEMBERS]: a nats-server with monitoring, then lhttpd on it with these
# extra top-level members; WORKERS workers (default 1), NATS_EXTRA: more members of the
# "nats" section.
start_ps() {
    start_nats --monitor
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": '"${WORKERS:-1}"',
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]'"${NATS_EXTRA:+, $NATS_EXTRA}"'}'"${1:+,
        $1}"'
    }'
}

# got_binary NAME MESSAGE: the same for a message in a binary frame.
got_binary() { echo "$1 got-binary $(printf '%b' "$2" | wc -c) $2"; }

# has_error_reply CODE [COMMAND]: $output has an LHTTP error reply with CODE (and
# in-reply-to: COMMAND), as wsprobe.py shows it.
has_error_reply() {
    local irt=""
    [ -n "${2:-}" ] && irt="in-reply-to:$2"'\\r\\n'
    has_match '^text [0-9]+ LHTTP/1\.0 error\\r\\ncode:'"$1"'\\r\\nreason:([^\\]|\\\\|\\x[0-9a-f]{2})+\\r\\n'"$irt"'\\r\\n$'
}

# post_publish BODY_FILE [CURL_ARGS...]: POSTs the file to /publish; prints the status
# code, and leaves the response body in $(lh_tmp)/post.json.
post_publish() {
    local body=$1
    shift
    curl -s --max-time 5 -o "$(lh_tmp)/post.json" -w '%{http_code}' "$@" \
        --data-binary @"$body" "http://127.0.0.1:$LH_PORT/publish"
}

# server_closed PEER_PORT: lhttpd no longer holds a connection to the client port.
server_closed() {
    ! ss -Htn "( sport = :$LH_PORT and dport = :$1 )" 2>/dev/null |
        grep -qE '^(ESTAB|CLOSE-WAIT)'
}

# --- channels between clients ----------------------------------------------------------

@test "two clients on one lhttpd chat through a channel, byte for byte" {
    start_ps
    m1='LHTTP/1.0 chat\r\npublish:room\r\nfrom:alice\r\n\r\nhello bob'
    m2='LHTTP/1.0 chat\r\npublish:room\r\nfrom:bob\r\n\r\nhi alice, caf\xc3\xa9 \xe2\x82\xac\r\n\r\nsecond line'
    run ps_run open:alice:$LH_PORT open:bob:$LH_PORT sub:alice:room sub:bob:room \
        "send:alice:$m1" recv:bob recv:alice "send:bob:$m2" recv:alice recv:bob
    [ "$status" -eq 0 ] || lh_show_output
    lines_are "alice open" "bob open" "alice subscribed" "bob subscribed" \
        "$(got bob "$m1")" "$(got alice "$m1")" "$(got alice "$m2")" "$(got bob "$m2")"
}

@test "one subscribe header with three channels and runs of spaces: all three arrive" {
    start_ps
    run ps_run open:p:$LH_PORT open:s:$LH_PORT 'sub:s:one  two   three' \
        pub:p:one:1 pub:p:two:2 pub:p:three:3 recv:s recv:s recv:s
    [ "$status" -eq 0 ] || lh_show_output
    lines_are "p open" "s open" "s subscribed" \
        "$(got s 'LHTTP/1.0 msg\r\npublish:one\r\n\r\n1')" \
        "$(got s 'LHTTP/1.0 msg\r\npublish:two\r\n\r\n2')" \
        "$(got s 'LHTTP/1.0 msg\r\npublish:three\r\n\r\n3')"
}

@test "publish to two channels: one copy per channel, so a client on both gets two" {
    start_ps
    run ps_run open:p:$LH_PORT open:s:$LH_PORT open:t:$LH_PORT 'sub:s:x y' sub:t:y \
        'pub:p:x  y:both' pub:p:y:fence recv:s recv:s recv:s recv:t recv:t
    [ "$status" -eq 0 ] || lh_show_output
    both=$(got s 'LHTTP/1.0 msg\r\npublish:x  y\r\n\r\nboth')
    [ "$(count_lines "^${both//\\/\\\\}\$")" -eq 2 ]
    has_line "$(got s 'LHTTP/1.0 msg\r\npublish:y\r\n\r\nfence')"
    has_line "$(got t 'LHTTP/1.0 msg\r\npublish:x  y\r\n\r\nboth')"
    has_line "$(got t 'LHTTP/1.0 msg\r\npublish:y\r\n\r\nfence')"
}

@test "unsubscribe stops delivery; subscribing twice delivers once" {
    start_ps
    # "fence" messages come from the same publisher after the one that must not come:
    # receiving the fence first proves the other was not delivered.
    run ps_run open:p:$LH_PORT open:s:$LH_PORT sub:s:fence sub:s:u \
        pub:p:u:first recv:s unsub:s:u pub:p:u:second pub:p:fence:F1 recv:s \
        sub:s:d sub:s:d 'sub:s:d  d' pub:p:d:once pub:p:fence:F2 recv:s recv:s \
        'unsub:s:d' 'unsub:s:d' pub:p:d:gone pub:p:fence:F3 recv:s
    [ "$status" -eq 0 ] || lh_show_output
    printf '%s\n' "${lines[@]}" | grep ' got ' >"$(lh_tmp)/got"
    run cat "$(lh_tmp)/got"
    lines_are "$(got s 'LHTTP/1.0 msg\r\npublish:u\r\n\r\nfirst')" \
        "$(got s 'LHTTP/1.0 msg\r\npublish:fence\r\n\r\nF1')" \
        "$(got s 'LHTTP/1.0 msg\r\npublish:d\r\n\r\nonce')" \
        "$(got s 'LHTTP/1.0 msg\r\npublish:fence\r\n\r\nF2')" \
        "$(got s 'LHTTP/1.0 msg\r\npublish:fence\r\n\r\nF3')"
}

@test "a message that is not UTF-8 is delivered byte for byte in a binary frame (WebSocket and POST)" {
    start_ps
    ps_bg cl open:p:$LH_PORT open:s:$LH_PORT sub:s:bin \
        'sendbin:p:LHTTP/1.0 blob\r\npublish:bin\r\n\r\n\x00\xff\xfe\x80\r\n' recv:s \
        'send:p:LHTTP/1.0 text\r\npublish:bin\r\n\r\ncaf\xc3\xa9' recv:s print:ready recv:s
    wait_bg cl '^ready$'
    printf 'LHTTP/1.0 post\r\npublish:bin\r\n\r\n\x01\x02\xc3' >"$(lh_tmp)/body"
    [ "$(post_publish "$(lh_tmp)/body")" = 200 ]
    wait_gone "$PS_PID_cl" 5
    run bg_out cl
    has_line "$(got_binary s 'LHTTP/1.0 blob\r\npublish:bin\r\n\r\n\x00\xff\xfe\x80\r\n')"
    # A UTF-8 message sent in a binary frame would be delivered as text: the frame type
    # follows the bytes.
    has_line "$(got s 'LHTTP/1.0 text\r\npublish:bin\r\n\r\ncaf\xc3\xa9')"
    has_line "$(got_binary s 'LHTTP/1.0 post\r\npublish:bin\r\n\r\n\x01\x02\xc3')"
}

# --- POST /publish -----------------------------------------------------------------------

@test "POST /publish: 401 without or with a wrong token, 200 with it; delivered byte for byte" {
    start_ps '"publish": {"token": "s3cret-token"}'
    body=$(lh_tmp)/body
    printf 'LHTTP/1.0 news\r\npublish:post.ch\r\nx-id:7\r\n\r\nline one\r\ncaf\xc3\xa9 \xe2\x82\xac\n\nend' >"$body"
    "$LHTTPC" -q -n 1 -w 10000 "ws://127.0.0.1:$LH_PORT/" subscribe post.ch \
        >"$(lh_tmp)/sub.out" 2>"$(lh_tmp)/sub.err" 3>&- &
    sub_pid=$!
    lh_record $sub_pid
    # lhttpd subscribes on NATS once its first local subscriber is in: then it is ready.
    wait_for 5 nats_has_sub "$NATS_MON_PORT" lhttp.post.ch

    # Refused publishes carry another body: had one been delivered, lhttpc (-n 1) would
    # have printed it instead of the accepted one.
    refused=$(lh_tmp)/refused
    printf 'LHTTP/1.0 news\r\npublish:post.ch\r\n\r\nrefused' >"$refused"
    [ "$(post_publish "$refused")" = 401 ]
    [ "$(jq -r .error "$(lh_tmp)/post.json")" != "" ]
    [ "$(post_publish "$refused" -H 'Authorization: Bearer wrong-token')" = 401 ]
    [ "$(post_publish "$refused" -H 'Authorization: Bearer s3cret-token-and-more')" = 401 ]
    [ "$(post_publish "$refused" -H 'Authorization: Bearer s3cret-toke')" = 401 ]
    [ "$(post_publish "$refused" -H 'Authorization: Basic s3cret-token')" = 401 ]
    run "$LHTTPC" --http "http://127.0.0.1:$LH_PORT/publish" publish post.ch -d refused
    [ "$status" -eq 5 ]
    run "$LHTTPC" --token wrong --http "http://127.0.0.1:$LH_PORT/publish" publish post.ch -d refused
    [ "$status" -eq 5 ]

    [ "$(post_publish "$body" -H 'Authorization: Bearer s3cret-token')" = 200 ]
    run jq -c . "$(lh_tmp)/post.json"
    lines_are '{"channels":["post.ch"],"local_deliveries":1}'
    wait_gone $sub_pid 5
    wait $sub_pid
    # lhttpc prints each message followed by a newline.
    cmp <(cat "$body"; echo) "$(lh_tmp)/sub.out"
}

@test "POST /publish with Expect: 100-continue: 100 before the body; a wrong token is refused before it" {
    local f start ms
    start_ps '"publish": {"token": "tok"}'
    f=$(lh_tmp)/body
    printf 'LHTTP/1.0 news\r\npublish:e1\r\n\r\nexpected' >"$f"
    # curl waits up to --expect100-timeout (15 s) for the 100 before sending the body:
    # an answer well before that shows the server did not leave it waiting.
    expect_post() {
        start=${EPOCHREALTIME/./}
        run curl -sv --max-time 20 --expect100-timeout 15 -H 'Expect: 100-continue' \
            -H "Authorization: Bearer $1" --data-binary @"$f" "http://127.0.0.1:$LH_PORT/publish"
        ms=$(((${EPOCHREALTIME/./} - start) / 1000))
        [ "$ms" -lt 5000 ] || { echo "took $ms ms"; return 1; }
    }
    expect_post tok
    has_match '^< HTTP/1\.1 100 Continue'
    has_match '^< HTTP/1\.1 200 OK'
    has_match '"channels":\["e1"\]'
    expect_post wrong
    has_match '^< HTTP/1\.1 401 '
    no_match '100 Continue'
    assert_server_ok
}

@test "POST /publish with lhttpc --http: the token, and local_deliveries counts subscribers" {
    start_ps '"publish": {"token": "tok"}'
    ps_bg subs open:a:$LH_PORT open:b:$LH_PORT sub:a:h1 'sub:b:h1 h2' print:ready recv:a recv:b recv:b
    wait_bg subs '^ready$'
    run "$LHTTPC" --token tok --http "http://127.0.0.1:$LH_PORT/publish" publish h1 h2 -d 'via http'
    [ "$status" -eq 0 ] || lh_show_output
    [ "$(printf '%s\n' "$output" | jq -c .)" = '{"channels":["h1","h2"],"local_deliveries":3}' ]
    wait_gone "$PS_PID_subs" 5
    run bg_out subs
    # b is on both channels: two copies.
    [ "$(count_lines '^b got [0-9]+ LHTTP/1\.0 publish\\r\\npublish:h1 h2\\r\\n\\r\\nvia http$')" -eq 2 ]
    has_match '^a got [0-9]+ LHTTP/1\.0 publish\\r\\npublish:h1 h2\\r\\n\\r\\nvia http$'
}

@test "POST /publish: 400 with a reason for bad bodies, 405 for GET, 413 over http.max_body_bytes" {
    start_ps '"http": {"max_body_bytes": 1024}'
    f=$(lh_tmp)/bad
    check_400() {
        printf "$1" >"$f"
        [ "$(post_publish "$f")" = 400 ] || { echo "not 400: $1" >&2; return 1; }
        reason=$(jq -r .error "$(lh_tmp)/post.json")
        [[ $reason =~ $2 ]] || { echo "reason for $1: $reason" >&2; return 1; }
    }
    check_400 'hello' 'not an LHTTP message'
    check_400 '' 'not an LHTTP message'
    check_400 'LHTTP/1.0 news\r\nx:1\r\n\r\nbody' 'no publish header'
    check_400 'LHTTP/1.0 news\r\npublish:a.*\r\n\r\nbody' 'invalid channel name "a\.\*"'
    check_400 'LHTTP/1.0 news\r\npublish:>\r\n\r\n' 'invalid channel name ">"'
    check_400 'LHTTP/1.0 news\r\npublish:ok a..b\r\n\r\n' 'invalid channel name "a\.\.b"'
    # A name that is not UTF-8 is quoted byte by byte (JSON cannot carry it as it is).
    check_400 'LHTTP/1.0 news\r\npublish:\xff\xfe\r\n\r\n' 'invalid channel name "\\xff\\xfe"'
    check_400 'LHTTP/1.0 news\r\npublish:   \r\n\r\n' 'no channel'
    check_400 'LHTTP/1.0 news\r\npublish:\r\n\r\n' 'no channel'

    run curl -s -i --max-time 5 "http://127.0.0.1:$LH_PORT/publish"
    has_match $'^HTTP/1\\.1 405 '
    has_match $'^Allow: POST, OPTIONS\r?$'

    # Exactly the limit is fine, one byte more is 413.
    { printf 'LHTTP/1.0 news\r\npublish:big\r\n\r\n'; head -c $((1024 - 31)) /dev/zero | tr '\0' b; } >"$f"
    [ "$(stat -c %s "$f")" -eq 1024 ]
    [ "$(post_publish "$f")" = 200 ]
    printf b >>"$f"
    [ "$(post_publish "$f")" = 413 ]
    assert_server_ok
}

# --- NATS subscriptions follow the clients ------------------------------------------------

@test "a client that leaves is unsubscribed from NATS; one NATS subscription for many clients" {
    # "always": the flush publishes go to NATS, where a plain subscriber sees them.
    NATS_EXTRA='"publish": "always"' start_ps
    mon=$NATS_MON_PORT
    nats_watch w 'lhttp.>'
    t=$(lh_tmp)
    # Three clients on one channel; c is on another one too. Then a leaves, then b and c.
    ps_bg cl open:a:$LH_PORT open:b:$LH_PORT open:c:$LH_PORT port:a \
        sub:a:leave.ch sub:b:leave.ch 'sub:c:leave.ch keep.ch' pub:a:flush1:x print:ready \
        await:$t/go1 quit:a print:a-left await:$t/go2 quit:b quit:c print:all-left
    wait_bg cl '^ready$'
    # The publish went through NATS after the subscriptions: once a NATS subscriber has
    # it, nats-server has every SUB lhttpd sent before.
    wait_bg w '^msg lhttp\.flush1 '
    [ "$(nats_sub_count $mon lhttp.leave.ch)" -eq 1 ]
    [ "$(nats_sub_count $mon lhttp.keep.ch)" -eq 1 ]

    aport=$(bg_out cl | sed -nE 's/^a port ([0-9]+)$/\1/p')
    touch "$t/go1"
    wait_bg cl '^a-left$'
    wait_for 5 server_closed "$aport"
    # Another round through NATS after lhttpd handled a's departure.
    printf 'LHTTP/1.0 x\r\npublish:flush2\r\n\r\n' >"$t/flush2"
    [ "$(post_publish "$t/flush2")" = 200 ]
    wait_bg w '^msg lhttp\.flush2 '
    [ "$(nats_sub_count $mon lhttp.leave.ch)" -eq 1 ]

    touch "$t/go2"
    wait_bg cl '^all-left$'
    wait_for 5 nats_no_sub $mon lhttp.leave.ch
    wait_for 5 nats_no_sub $mon lhttp.keep.ch
    assert_server_ok
}

@test "one NATS subscription per channel per worker, with two workers and eight clients" {
    WORKERS=2 NATS_EXTRA='"publish": "always"' start_ps
    nats_watch w 'lhttp.flush'
    steps=()
    for i in 1 2 3 4 5 6 7 8; do steps+=(open:c$i:$LH_PORT sub:c$i:many); done
    ps_bg cl "${steps[@]}" pub:c1:flush:x print:ready await:$(lh_tmp)/never:20
    wait_bg cl '^ready$'
    wait_for 5 nats_has_sub "$NATS_MON_PORT" lhttp.many
    wait_bg w '^msg lhttp\.flush '
    run nats_sub_counts "$NATS_MON_PORT" lhttp.many
    # Each NATS connection (one per worker) holds the subject at most once.
    no_match '^([02-9]|[1-9][0-9]+)$'
    [ "${#lines[@]}" -ge 1 ]
    [ "${#lines[@]}" -le 2 ]
}

@test "nats.subject_prefix: channel c is the NATS subject <prefix>.c" {
    NATS_EXTRA='"subject_prefix": "app.v1"' start_ps
    ps_bg cl open:s:$LH_PORT sub:s:room.1 print:ready await:$(lh_tmp)/end:20
    wait_bg cl '^ready$'
    wait_for 5 nats_has_sub "$NATS_MON_PORT" app.v1.room.1
    [ "$(nats_sub_count "$NATS_MON_PORT" lhttp.room.1)" -eq 0 ]
    touch "$(lh_tmp)/end"
}

@test "two workers: a publish reaches the subscribers on every worker" {
    WORKERS=2 start_ps
    steps=(open:p:$LH_PORT)
    for i in 1 2 3 4 5 6; do steps+=(open:s$i:$LH_PORT sub:s$i:everyone); done
    # A subscriber on the other worker is reached through NATS: sync with each first.
    for i in 1 2 3 4 5 6; do steps+=(sync:p:s$i:everyone); done
    steps+=(pub:p:everyone:hello)
    for i in 1 2 3 4 5 6; do steps+=(recv:s$i); done
    run ps_run "${steps[@]}"
    [ "$status" -eq 0 ] || lh_show_output
    for i in 1 2 3 4 5 6; do
        has_line "$(got s$i 'LHTTP/1.0 msg\r\npublish:everyone\r\n\r\nhello')"
    done
}

# --- a subscriber that does not read --------------------------------------------------------

@test "limits.send_queue_bytes: a subscriber that stops reading is closed with 4008, another gets everything in order" {
    start_ps '"limits": {"send_queue_bytes": 65536}'
    # 300 messages of 32 KiB (9.6 MiB) for "slow", which reads nothing until the end:
    # far more than 64 KiB plus what the kernel buffers hold. "good" reads each message
    # before the next is published: a reader that keeps up is never over the limit.
    run ps_run --timeout 10 open:slow:$LH_PORT open:good:$LH_PORT open:pub:$LH_PORT \
        sub:slow:big sub:good:big burst:pub:big:300:32768:good:1 drain:slow
    [ "$status" -eq 0 ] || lh_show_output
    has_line "pub sent 300"
    has_line "good seq ok 300"
    # It gets what was already on its way, then the close.
    n=$(printf '%s\n' "$output" | sed -nE 's/^slow drained ([0-9]+)$/\1/p')
    [ -n "$n" ]
    [ "$n" -lt 300 ]
    has_match '^slow close 4008( .*)?$'
    [ "$(grep -c 'send queue over 65536 bytes' "$LH_LOG")" -eq 1 ]
    assert_server_ok
}

# --- order ---------------------------------------------------------------------------------

@test "order is kept per publisher and channel: 500 numbered messages arrive 1..500" {
    start_ps
    run ps_run open:p:$LH_PORT open:s:$LH_PORT open:t:$LH_PORT sub:s:order 'sub:t:order other' \
        burst:p:order:500:100 seq:s:500 seq:t:500 burst:p:other:200 seq:t:200
    [ "$status" -eq 0 ] || lh_show_output
    has_line "s seq ok 500"
    has_line "t seq ok 500"
    has_line "t seq ok 200"
}

# --- an independent client -------------------------------------------------------------------

@test "the python websockets client and lhttpc talk through channels" {
    start_ps
    t=$(lh_tmp)
    "$LHTTPC" -q -n 1 -w 10000 --format json "ws://127.0.0.1:$LH_PORT/ws" subscribe mix.b \
        >"$t/lhttpc.out" 2>"$t/lhttpc.err" 3>&- &
    l_pid=$!
    lh_record $l_pid
    wait_for 5 nats_has_sub "$NATS_MON_PORT" lhttp.mix.b
    wsclient /ws --timeout 10 'text:LHTTP/1.0 subscribe\r\nsubscribe:mix.a\r\n\r\n' \
        'text:LHTTP/1.0 ping\r\n\r\nready' recv recv \
        'text:LHTTP/1.0 reply\r\npublish:mix.b\r\nx-from:websockets\r\n\r\nhello lhttpc' \
        close:1000 >"$t/ws.out" 2>&1 3>&- &
    w_pid=$!
    lh_record $w_pid
    wait_for 5 grep -q 'pong' "$t/ws.out"
    run "$LHTTPC" "ws://127.0.0.1:$LH_PORT/ws" publish mix.a -H x-from:lhttpc -d 'hello websockets'
    [ "$status" -eq 0 ] || lh_show_output
    wait_gone $w_pid 10
    wait_gone $l_pid 10
    run cat "$t/ws.out"
    has_line 'text 23 LHTTP/1.0 pong\r\n\r\nready'
    has_match '^text [0-9]+ LHTTP/1\.0 publish\\r\\n(.*\\r\\n)?publish:mix\.a\\r\\n(.*\\r\\n)?\\r\\nhello websockets$'
    has_match 'x-from:lhttpc'
    has_line "closed 1000"
    run jq -c '[.command, .body, (.headers | map(select(.[0] == "x-from")) | .[0][1])]' "$t/lhttpc.out"
    lines_are '["reply","hello lhttpc","websockets"]'
}

# --- channel names and limits ------------------------------------------------------------------

@test "invalid channel names get 400 (wildcards, empty tokens, over limits.max_channel_bytes)" {
    start_ps '"limits": {"max_channel_bytes": 16}'
    sixteen=abcdefghij.12345
    seventeen=abcdefghij.123456
    run probe upgrade:/ \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:a.*\r\n\r\n' msgtext \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:>\r\n\r\n' msgtext \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:a.>\r\n\r\n' msgtext \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:a..b\r\n\r\n' msgtext \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:.a\r\n\r\n' msgtext \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:a.\r\n\r\n' msgtext \
        "text:LHTTP/1.0 subscribe\r\nsubscribe:$seventeen\r\n\r\n" msgtext \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:fine a/b\r\n\r\n' msgtext \
        'text:LHTTP/1.0 send\r\npublish:a.*\r\n\r\nx' msgtext \
        'text:LHTTP/1.0 leave\r\nunsubscribe:>\r\n\r\n' msgtext \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:\r\n\r\n' msgtext \
        "text:LHTTP/1.0 subscribe\r\nsubscribe:$sixteen\r\n\r\n" \
        'binary:LHTTP/1.0 subscribe\r\nsubscribe:\xff\r\n\r\n' msgtext \
        'text:LHTTP/1.0 ping\r\n\r\nstill here' msgtext
    [ "$(count_lines 'LHTTP/1\.0 error\\r\\ncode:400\\r\\n')" -eq 12 ]
    # Bytes that are not UTF-8 come back quoted, in a text reply a browser can read.
    has_match '^text [0-9]+ LHTTP/1\.0 error\\r\\ncode:400\\r\\nreason:invalid channel name "\\\\xff"'
    has_error_reply 400 subscribe
    has_error_reply 400 send
    has_error_reply 400 leave
    has_match 'reason:invalid channel name \\"a\.\*\\"|reason:invalid channel name "a\.\*"'
    has_match "reason:.*$seventeen"
    # A 16-byte name is fine: the next message is the pong, no error before it.
    last_line_is 'text 28 LHTTP/1.0 pong\r\n\r\nstill here'
    [ "$(count_lines '^text ')" -eq 13 ]
    # The list with a bad name was refused as a whole: "fine" was not subscribed.
    run ps_run open:p:$LH_PORT pub:p:fine:nobody barrier:p
    lines_are "p open" "p barrier"
}

@test "a channel named twice in one publish header gets the message once, over WebSocket and POST /publish" {
    start_ps
    # s is on d1 and d2; p names d1 three times and d2 twice. A fence (barrier on s after
    # p's fence message) proves no further copy is on the way.
    run ps_run open:s:$LH_PORT open:p:$LH_PORT 'sub:s:d1 d2' 'pub:p:d1 d1  d2 d1 d2:twice' \
        recv:s recv:s pub:p:d1:fence recv:s
    [ "$status" -eq 0 ] || lh_show_output
    [ "$(count_lines '^s got [0-9]+ LHTTP/1\.0 msg\\r\\npublish:d1 d1  d2 d1 d2\\r\\n\\r\\ntwice$')" -eq 2 ]
    has_line "$(got s 'LHTTP/1.0 msg\r\npublish:d1\r\n\r\nfence')"
    # Over HTTP: the answer lists each channel once and counts one delivery per channel.
    ps_bg subs open:a:$LH_PORT sub:a:h1 print:ready recv:a recv:a
    wait_bg subs '^ready$'
    f=$(lh_tmp)/twice
    printf 'LHTTP/1.0 news\r\npublish:h1 h2 h1 h1\r\n\r\nonce' >"$f"
    [ "$(post_publish "$f")" = 200 ]
    run jq -c . "$(lh_tmp)/post.json"
    lines_are '{"channels":["h1","h2"],"local_deliveries":1}'
    printf 'LHTTP/1.0 news\r\npublish:h1\r\n\r\nfence' >"$f"
    [ "$(post_publish "$f")" = 200 ]
    wait_gone "$PS_PID_subs" 5
    run bg_out subs
    [ "$(count_lines 'once$')" -eq 1 ]
    has_match 'fence$'
}

@test "limits.max_subscriptions: a subscribe header that would pass the limit makes none of its subscriptions" {
    start_ps '"limits": {"max_subscriptions": 3}'
    # a and b taken; "c d" needs two of the one free slot: 429, and neither c nor d is
    # subscribed (a publish to c or d reaches nobody; the fence on b arrives alone).
    run ps_run open:s:$LH_PORT open:p:$LH_PORT 'sub:s:a b' 'sub:s:c d' \
        pub:p:c:to-c pub:p:d:to-d pub:p:b:fence recv:s 'sub:s:c' pub:p:c:to-c-now recv:s
    [ "$status" -eq 0 ] || lh_show_output
    has_match '^s got [0-9]+ LHTTP/1\.0 error\\r\\ncode:429\\r\\nreason:too many subscriptions \(limits\.max_subscriptions is 3\); none of this message.s was made\\r\\nin-reply-to:subscribe'
    no_match 'to-c$|to-d$'
    has_line "$(got s 'LHTTP/1.0 msg\r\npublish:b\r\n\r\nfence')"
    # One slot is still free: c alone fits.
    has_line "$(got s 'LHTTP/1.0 msg\r\npublish:c\r\n\r\nto-c-now')"
}

@test "limits.max_subscriptions: 33,000 subscriptions of one connection (past 2^15) hold and are all released" {
    local i names
    start_ps '"limits": {"max_subscriptions": 65536, "max_header_line": 1048576,
                         "max_message_bytes": 1048576}'
    args=(upgrade)
    for i in 0 1 2; do
        names=$(seq -f "c%g" $((i * 11000)) $((i * 11000 + 10999)) | paste -sd' ')
        args+=("binary:str:LHTTP/1.0 x\r\nsubscribe:$names\r\n\r\n")
    done
    run probe --timeout 20 "${args[@]}" 'text:LHTTP/1.0 ping\r\n\r\nstill here' msg close:1000 expect-close
    # No error reply: the first message back is the pong.
    has_match '^text [0-9]+ LHTTP/1\.0 pong\\r\\n\\r\\nstill here$'
    no_match 'error'
    has_match '^close 1000'
    assert_server_ok
}

@test "limits.max_subscriptions: one more subscription gets 429, the connection stays usable" {
    start_ps '"limits": {"max_subscriptions": 3}'
    run ps_run open:s:$LH_PORT open:p:$LH_PORT 'sub:s:a b' 'sub:s:b c' sub:s:d \
        unsub:s:a sub:s:d pub:p:d:in-d recv:s
    [ "$status" -eq 0 ] || lh_show_output
    # a, b, c: full; d is refused with 429; after leaving a, d is accepted.
    has_match '^s got [0-9]+ LHTTP/1\.0 error\\r\\ncode:429\\r\\nreason:[^\\]+\\r\\nin-reply-to:subscribe\\r\\n\\r\\n$'
    [ "$(count_lines 'code:429')" -eq 1 ]
    has_line "$(got s 'LHTTP/1.0 msg\r\npublish:d\r\n\r\nin-d')"
    assert_server_ok
}
