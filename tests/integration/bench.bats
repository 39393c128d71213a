#!/usr/bin/env bats
# lhttp-bench, the load generator of `make bench`, against lhttpd only and briefly: a few
# hundred connections for a couple of seconds, so that the tool itself is tested here
# (`make bench`, with nginx + nchan, stays out of `make check`). Each run must see every
# expected delivery arrive intact (exit status 0, complete=1).

load ../lib/helpers

BENCH=${LHTTP_BENCH:-${B:-$LH_LIB/../../build}/lhttp-bench}
FLOOR=${BENCH_FLOOR:-${B:-$LH_LIB/../../build}/bench-floor}
LHTTPC=${LHTTPC:-${B:-$LH_LIB/../../build}/lhttpc}

teardown() {
    stop_all
    ! grep -E -A12 'AddressSanitizer|LeakSanitizer|runtime error:' "$(lh_tmp)"/lhttpd-*.log >&2
}

# start_bench_server [JSON_MEMBERS]: a nats-server and an lhttpd with WORKERS workers
# (default 1) on it, with these top-level members added to the configuration.
start_bench_server() {
    start_nats
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"], "workers": '"${WORKERS:-1}"',
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        '"${1:+$1,}"'
        "log": {"level": "warning"}
    }'
}

# result KEY: the value of KEY in the RESULT line of the last run.
result() { printf '%s\n' "$output" | sed -n 's/^RESULT //p' | tr ' ' '\n' | sed -n "s/^$1=//p"; }

@test "lhttp-bench: fan-out over WebSocket, 300 subscribers, every delivery arrives" {
    start_bench_server
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" -n 300 -c 1 -d 1.5 -w 100
    printf '%s\n' "$output"
    [ "$status" -eq 0 ]
    [ "$(result complete)" = 1 ]
    [ "$(result failed)" = 0 ]
    [ "$(result delivered)" -gt 0 ]
    [ "$(result delivered)" = "$(result expected)" ]
    [ "$(result expected)" = $(($(result published) * 300)) ]
}

@test "lhttp-bench: POST /publish from 4 connections to 200 random channels, every delivery arrives" {
    start_bench_server
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" -p "http://127.0.0.1:$LH_PORT/publish" \
        -n 400 -c 200 --random -k 4 -d 1.5 -w 50
    printf '%s\n' "$output"
    [ "$status" -eq 0 ]
    [ "$(result complete)" = 1 ]
    [ "$(result delivered)" -gt 0 ]
    [ "$(result delivered)" = "$(result expected)" ]
}

@test "lhttp-bench: fixed rate, two workers (deliveries cross NATS), latency reported" {
    WORKERS=2 start_bench_server
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" -n 200 -c 2 -r 200 -d 1.5 --src 3
    printf '%s\n' "$output"
    [ "$status" -eq 0 ]
    [ "$(result complete)" = 1 ]
    # 1.5 s at 200 messages/s: about 300 messages, each to 100 subscribers.
    [ "$(result published)" -ge 250 ] && [ "$(result published)" -le 320 ]
    [ "$(result delivered)" = $(($(result published) * 100)) ]
    awk -v p50="$(result p50_us)" -v mx="$(result max_us)" 'BEGIN {exit !(p50 > 0 && mx >= p50)}'
}

@test "lhttp-bench: a delivery that never comes is reported (exit 1, complete=0)" {
    start_bench_server
    # Subscribers on one server, publisher on another with no NATS in common: nothing
    # published reaches them, and the warm-up says so.
    save_port=$LH_PORT
    unset NATS_PORT
    start_bench_server
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$save_port/" -p "ws://127.0.0.1:$LH_PORT/" \
        -n 20 -m 10 --timeout 2
    printf '%s\n' "$output"
    [ "$status" -eq 1 ]
    [ "$(result complete)" = 0 ]
    printf '%s\n' "$output" | grep -q '^PROBLEM: .*warm-up: 0 of 20 subscribers received a probe'
}

@test "lhttp-bench: --pub-token publishes to a /publish that needs one; without it, 401 is reported" {
    start_bench_server '"publish": {"token": "s3cr=t/+x"}'
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" -p "http://127.0.0.1:$LH_PORT/publish" \
        --pub-token 's3cr=t/+x' -n 50 -c 5 -k 2 -m 200 -w 20
    printf '%s\n' "$output"
    [ "$status" -eq 0 ]
    [ "$(result complete)" = 1 ]
    [ "$(result delivered)" = $((200 * 10)) ]
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" -p "http://127.0.0.1:$LH_PORT/publish" \
        -n 5 -m 10 --timeout 2
    printf '%s\n' "$output"
    [ "$status" -eq 1 ]
    [ "$(result complete)" = 0 ]
    printf '%s\n' "$output" | grep -q '^PROBLEM: .*publish answered HTTP/1.1 401'
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" -p "http://127.0.0.1:$LH_PORT/publish" \
        --pub-token wrong -n 5 -m 10 --timeout 2
    [ "$status" -eq 1 ]
    printf '%s\n' "$output" | grep -q '^PROBLEM: .*publish answered HTTP/1.1 401'
}

@test "lhttp-bench: --token authenticates every WebSocket connection of a run (auth.anonymous false)" {
    local d tok
    d=$(lh_tmp)
    printf '%s\n' 0123456789abcdef0123456789abcdef-bench >"$d/jwt.secret"
    printf '%s\n' 0123456789abcdef0123456789abcdef-other >"$d/other.secret"
    start_bench_server '"auth": {"anonymous": false, "keys": [{"secret_file": "'"$d"'/jwt.secret"}]},
        "namespaces": {"room": {"subscribe": "authenticated", "publish": "authenticated"}},
        "publish": {"token": "p0st"}'
    tok=$("$LHTTPC" token --secret-file "$d/jwt.secret" --sub 42 --exp-in 600)
    # 50 subscribers and a WebSocket publisher, each with the token.
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" --prefix room. -n 50 -c 5 -m 200 \
        -w 20 --token "$tok"
    printf '%s\n' "$output"
    [ "$status" -eq 0 ]
    [ "$(result complete)" = 1 ]
    [ "$(result delivered)" = $((200 * 10)) ]
    # Publishing with POST /publish: --pub-token there, --token for the subscribers.
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" -p "http://127.0.0.1:$LH_PORT/publish" \
        --prefix room. -n 50 -c 5 -k 2 -m 200 -w 20 --token "$tok" --pub-token p0st
    printf '%s\n' "$output"
    [ "$status" -eq 0 ]
    [ "$(result complete)" = 1 ]
    [ "$(result delivered)" = $((200 * 10)) ]
    # Without the token no subscriber gets in.
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" --prefix room. -n 5 -m 10 --timeout 2
    printf '%s\n' "$output"
    [ "$status" -eq 1 ]
    [ "$(result complete)" = 0 ]
    [ "$(result delivered)" = 0 ]
    printf '%s\n' "$output" | grep -q '^PROBLEM: .*code:401'
    # A token of another key: every handshake is refused with 401.
    tok=$("$LHTTPC" token --secret-file "$d/other.secret" --sub 42)
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" --prefix room. -n 5 -m 10 --timeout 2 \
        --token "$tok"
    printf '%s\n' "$output"
    [ "$status" -eq 1 ]
    [ "$(result failed)" = 5 ]
    printf '%s\n' "$output" | grep -q '^PROBLEM: .*handshake refused: HTTP/1.1 401'
}

@test "lhttp-bench: --pub-subscribe publishes where only subscribers may; without it the refusals are reported" {
    local d tok
    d=$(lh_tmp)
    head -c 48 /dev/urandom >"$d/jwt.secret"
    start_bench_server '"auth": {"keys": [{"secret_file": "'"$d"'/jwt.secret"}]},
        "namespaces": {"authb": {"subscribe": "authenticated", "publish": "subscribers"},
                       "authc": {"subscribe": "token", "publish": "subscribers"}}'
    tok=$("$LHTTPC" token --secret-file "$d/jwt.secret" --sub bench --exp-in 3600)
    # Two WebSocket publishers, each subscribed to the 3 channels: every message comes back
    # to both of them, and none of those copies is a subscriber's delivery.
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" --prefix authb. -n 60 -c 3 -k 2 \
        -m 300 -w 20 --token "$tok" --pub-subscribe
    printf '%s\n' "$output"
    [ "$status" -eq 0 ]
    [ "$(result complete)" = 1 ]
    [ "$(result published)" = 300 ]
    [ "$(result expected)" = $((300 * 20)) ]
    [ "$(result delivered)" = $((300 * 20)) ]
    [ "$(result pub_replies)" = 0 ]
    [ "$(result pub_copies)" -gt 0 ]
    [ "$(result pub_copies)" -le $((2 * (300 + 3 * 100))) ]
    run ! grep -q PROBLEM <<<"$output"
    # Without --pub-subscribe every publish (the warm-up's probes first) is refused with
    # 403: the run is not complete and the PROBLEM line says why.
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" --prefix authb. -n 20 -c 2 -m 50 \
        --timeout 2 --token "$tok"
    printf '%s\n' "$output"
    [ "$status" -eq 1 ]
    [ "$(result complete)" = 0 ]
    [ "$(result delivered)" = 0 ]
    [ "$(result pub_replies)" -gt 0 ]
    printf '%s\n' "$output" | grep -q '^PROBLEM: .*error replies to publishers; .*code:403'
    printf '%s\n' "$output" | grep -q 'first error: publisher 0 received: .*authb\.[01]'
    # A publisher whose subscribe is refused fails the setup: in authc the token opens
    # authc.0 (the subscriber's channel) and not authc.1, which the publisher asks for too.
    tok=$("$LHTTPC" token --secret-file "$d/jwt.secret" --sub bench --exp-in 3600 \
        --channels authc.0)
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" --prefix authc. -n 1 -c 2 -m 10 \
        --timeout 2 --token "$tok" --pub-subscribe
    printf '%s\n' "$output"
    [ "$status" -eq 1 ]
    [ "$(result complete)" = 0 ]
    [ "$(result published)" = 0 ]
    printf '%s\n' "$output" | grep -qE '^PROBLEM: +aborted; .*first error: publisher 0: subscribe answered with: LHTTP/1.0 error .*code:403 .*authc\.'
}

# start_hist_server SIZE: a nats-server with JetStream (the helpers' start_nats has none)
# and an lhttpd whose namespace h keeps the last SIZE messages of each channel; returns
# once the stream answers (a history read gets its closing reply).
start_hist_server() {
    local port log
    for _ in 1 2 3; do
        port=$(free_port) || return 1
        log=$(lh_tmp)/nats-js-$port.log
        nats-server -a 127.0.0.1 -p "$port" -js -sd "$(lh_tmp)/js-$port" >"$log" 2>&1 3>&- &
        NATS_PID=$!
        lh_record "$NATS_PID"
        if wait_for 5 listening_by "$port" "$NATS_PID"; then
            NATS_PORT=$port
            export NATS_PORT NATS_PID
            break
        fi
        lh_stop_pid "$NATS_PID"
    done
    [ -n "${NATS_PORT:-}" ] || return 1
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"], "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "namespaces": {"h": {"subscribe": "any", "publish": "any", "history": {"size": '"$1"'}}},
        "log": {"level": "warning"}
    }'
    wait_for 10 hist_ready
}
hist_ready() {
    "$LHTTPC" -q -n 1 -w 1000 "ws://127.0.0.1:$LH_PORT/" send history -H channel:h.ready \
        -H limit:1 | grep -q '^count:0'
}

@test "lhttp-bench --server-headers: fan-out on a history channel, offsets chained; without it the headers are corrupt" {
    start_hist_server 100
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" --prefix h.a. -n 200 -c 2 -m 300 \
        -w 50 --server-headers
    printf '%s\n' "$output"
    [ "$status" -eq 0 ]
    [ "$(result complete)" = 1 ]
    [ "$(result server_headers)" = 1 ]
    [ "$(result chain)" = 0 ]
    [ "$(result delivered)" = $((300 * 100)) ]
    # The same deliveries without the option: each has bytes that were not sent.
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" --prefix h.b. -n 20 -c 1 -m 20 \
        --timeout 5
    printf '%s\n' "$output"
    [ "$status" -eq 1 ]
    [ "$(result complete)" = 0 ]
    [ "$(result delivered)" = $((20 * 20)) ]
    printf '%s\n' "$output" | grep -q '^PROBLEM: .* 400 corrupt'
    # And the option on a channel without history: the headers it wants are missing.
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" -n 20 -c 1 -m 20 --timeout 2 \
        --server-headers
    printf '%s\n' "$output"
    [ "$status" -eq 1 ]
    printf '%s\n' "$output" | grep -q "^PROBLEM: .*first error: subscriber [0-9]*: a delivery without the server's headers"
}

@test "lhttp-bench --recover: 300 subscribers reconnect at once and each recovers the 50 messages it missed" {
    start_hist_server 100
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" -p "http://127.0.0.1:$LH_PORT/publish" \
        --prefix h.r. -n 300 -c 3 --recover 50 --conc 300 --src 2 --procs 2
    printf '%s\n' "$output"
    [ "$status" -eq 0 ]
    [ "$(result complete)" = 1 ]
    [ "$(result recover)" = 50 ]
    [ "$(result published)" = $((3 * 50)) ]
    [ "$(result expected)" = $((300 * 50)) ]
    [ "$(result delivered)" = $((300 * 50)) ]
    [ "$(result recovered)" = 300 ]
    [ "$(result not_recovered)" = 0 ]
    [ "$(result chain)" = 0 ]
    awk -v s="$(result recover_s)" -v p="$(result p99_us)" 'BEGIN {exit !(s > 0 && p > 0 && p <= s * 1e6 * 1.02)}'
    printf '%s\n' "$output" | grep -q '^recover:  300 of 300 subscribers recovered 50 messages each'
}

@test "lhttp-bench --recover: a recovery the server refuses (its offset evicted) is reported" {
    # A history of 10 messages: after 30 more, the offset each subscriber saw last is gone,
    # and lhttpd answers recovered:false, sending nothing old.
    start_hist_server 10
    run timeout 60 "$BENCH" -u "ws://127.0.0.1:$LH_PORT/" -p "http://127.0.0.1:$LH_PORT/publish" \
        --prefix h.e. -n 20 -c 1 --recover 30 --drain 2
    printf '%s\n' "$output"
    [ "$status" -eq 1 ]
    [ "$(result complete)" = 0 ]
    [ "$(result recovered)" = 0 ]
    [ "$(result not_recovered)" = 20 ]
    [ "$(result delivered)" = 0 ]
    printf '%s\n' "$output" | grep -q '^PROBLEM: .*0 of 20 recovered, 20 refused or unfinished; first error: subscriber [0-9]*: recovery refused: LHTTP/1.0 subscribed .*recovered:false'
}

# bench-floor, the baseline of `make bench` (one send per delivery, nchan's dialect).
start_floor() {
    local port
    for _ in 1 2 3; do
        port=$(free_port) || return 1
        "$FLOOR" "$port" >"$(lh_tmp)/floor-$port.log" 2>&1 3>&- &
        FLOOR_PID=$!
        lh_record "$FLOOR_PID"
        if wait_for 5 listening_by "$port" "$FLOOR_PID"; then
            FLOOR_PORT=$port
            return 0
        fi
    done
    return 1
}

@test "bench-floor: fan-out over WebSocket and random channels over HTTP, every delivery arrives" {
    start_floor
    run timeout 60 "$BENCH" -t nchan -u "ws://127.0.0.1:$FLOOR_PORT/sub/{ch}" \
        -p "ws://127.0.0.1:$FLOOR_PORT/pub/{ch}" -n 200 -c 1 -d 1 -w 50
    printf '%s\n' "$output"
    [ "$status" -eq 0 ]
    [ "$(result complete)" = 1 ]
    [ "$(result delivered)" -gt 0 ]
    [ "$(result delivered)" = $(($(result published) * 200)) ]
    run timeout 60 "$BENCH" -t nchan -u "ws://127.0.0.1:$FLOOR_PORT/sub/{ch}" \
        -p "http://127.0.0.1:$FLOOR_PORT/pub/{ch}" -n 300 -c 300 --random -k 4 -d 1 -w 50
    printf '%s\n' "$output"
    [ "$status" -eq 0 ]
    [ "$(result complete)" = 1 ]
    [ "$(result delivered)" -gt 0 ]
    [ "$(result delivered)" = "$(result expected)" ]
    # Every run's connections are gone from the floor when lhttp-bench has left.
    wait_for 5 test "$(ls /proc/"$FLOOR_PID"/fd | wc -l)" -le 8
    kill -0 "$FLOOR_PID"
}

@test "bench-floor: a request it does not serve is closed; a bad command line exits 2" {
    start_floor
    run curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$FLOOR_PORT/other"
    [ "$output" = 000 ]
    kill -0 "$FLOOR_PID"
    run "$FLOOR"
    [ "$status" -eq 2 ]
    [[ $output == *"usage: bench-floor PORT"* ]]
    run "$FLOOR" 70000
    [ "$status" -eq 2 ]
}

@test "lhttp-bench: bad command lines exit 2" {
    run "$BENCH" --subs 0
    [ "$status" -eq 2 ]
    run "$BENCH" -t nchan -u 'ws://127.0.0.1:1/sub/{ch}'
    [ "$status" -eq 2 ]
    [[ $output == *"needs --pub"* ]]
    run "$BENCH" -u http://127.0.0.1:1/
    [ "$status" -eq 2 ]
    # A token that could end the header line, or longer than lhttpd takes.
    run "$BENCH" --pub-token $'a\r\nX-Injected: 1'
    [ "$status" -eq 2 ]
    [[ $output == *"bad value for --pub-token"* ]]
    run "$BENCH" --pub-token "$(printf 'a%.0s' $(seq 513))"
    [ "$status" -eq 2 ]
    run "$BENCH" --pub-token ''
    [ "$status" -eq 2 ]
    run "$BENCH" --token $'a.b.c\r\nX-Injected: 1'
    [ "$status" -eq 2 ]
    [[ $output == *"bad value for --token"* ]]
    run "$BENCH" --token 'a.b c'
    [ "$status" -eq 2 ]
    run "$BENCH" --token "$(head -c 65537 /dev/zero | tr '\0' a)"
    [ "$status" -eq 2 ]
    run "$BENCH" --token ''
    [ "$status" -eq 2 ]
    # --pub-subscribe: lhttpd's WebSocket publishers only, and a bounded channel list.
    run "$BENCH" --pub-subscribe -p http://127.0.0.1:1/publish
    [ "$status" -eq 2 ]
    [[ $output == *"--pub-subscribe is for lhttpd's WebSocket publishers"* ]]
    run "$BENCH" --pub-subscribe -t nchan -u 'ws://127.0.0.1:1/sub/{ch}' -p 'ws://127.0.0.1:1/pub/{ch}'
    [ "$status" -eq 2 ]
    run "$BENCH" --pub-subscribe -c 65537
    [ "$status" -eq 2 ]
    [[ $output == *"at most 65536 channels"* ]]
    # --recover: a count, publishing over http:// only, never for a time or at a rate.
    run "$BENCH" --recover 0 -p http://127.0.0.1:1/publish
    [ "$status" -eq 2 ]
    [[ $output == *"bad value for --recover"* ]]
    run "$BENCH" --recover 10
    [ "$status" -eq 2 ]
    [[ $output == *"--recover publishes over http://"* ]]
    run "$BENCH" --recover 10 -p http://127.0.0.1:1/publish -d 2
    [ "$status" -eq 2 ]
    run "$BENCH" --recover 10 -p http://127.0.0.1:1/publish -r 100
    [ "$status" -eq 2 ]
    run "$BENCH" --recover 10 -p http://127.0.0.1:1/publish --no-publish
    [ "$status" -eq 2 ]
}

@test "lhttp-bench: --version, and its man page documents every option of --help" {
    local man=$LH_LIB/../../packaging/man/lhttp-bench.1 opt
    run "$BENCH" --version
    [ "$status" -eq 0 ]
    [[ $output =~ ^lhttp-bench\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
    run "$BENCH" --help
    [ "$status" -eq 0 ]
    man_matches_help "$man" "$output"
}
