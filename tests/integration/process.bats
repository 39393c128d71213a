#!/usr/bin/env bats
# The process model: lhttpd started exactly as systemd starts it, through
# systemd-socket-activate (sockets named "public" and "admin", NOTIFY_SOCKET pointing at
# tests/lib/notify_listen.py), with many clients and traffic: notifications, reload
# under load, a refused reload, max_workers_alive (a reload refused for room; more
# workers alive than the old fixed table), a killed worker, stop, balance between workers,
# back-off for a worker that keeps dying at start, and the watchdog. One test runs it by hand, without
# systemd. Clients are tests/lib/wspool.py (python websockets).
#
# The master execs in place of systemd-socket-activate, so the pid the test started is
# the master's: notifications must come from it, and `wait` gets its exit status.

load ../lib/helpers

setup() { T=$(lh_tmp); }
teardown() { stop_all; }

# write_conf [JSON_MEMBERS]: writes $CONF: 2 workers, the test's control socket and NATS,
# short shutdown, plus these top-level members (a leading comma is added). The connection
# handoff is off (HANDOFF=true turns it on): these tests are about draining; handoff.bats
# is about the handoff.
write_conf() {
    cat >"$CONF.tmp" <<EOF
{
    "listen": ["127.0.0.1:$PORT"],
    "workers": ${WORKERS:-2},
    "control_socket": "$T/ctl.sock",
    "shutdown_timeout_ms": 3000,
    "handoff": {"enabled": ${HANDOFF:-false}},
    "nats": {"servers": ["nats://127.0.0.1:$NATS_PORT"]}
    ${1:+,$1}
}
EOF
    mv "$CONF.tmp" "$CONF"
}

# notified REGEX: the notify log has a message matching REGEX.
notified() { grep -qE -- "$1" "$NOTIFY_LOG"; }

# start_activated [JSON_MEMBERS]: nats-server, the notify listener, then lhttpd under
# systemd-socket-activate on two free loopback ports (PORT public, APORT admin). A first
# connection starts the master, as the first client starts lhttpd.service; returns once
# READY=1 arrived. SA_ENV may add "-E NAME=VALUE" settings. Sets MASTER (= LH_PID), PORT (= LH_PORT), APORT, CONF, LOG, NOTIFY_LOG.
start_activated() {
    local try
    [ -n "${NATS_PORT:-}" ] || start_nats || return 1
    NOTIFY_LOG=$T/notify.log
    "$PY" "$LH_LIB/notify_listen.py" "$T/notify.sock" >"$NOTIFY_LOG" 2>&1 3>&- &
    lh_record $!
    wait_for 5 test -S "$T/notify.sock" || return 1
    CONF=$T/lhttpd.json
    LOG=$T/lhttpd-activated.log
    for try in 1 2 3 4 5; do
        PORT=$(free_port) && LH_PORTS_TAKEN="$LH_PORTS_TAKEN $PORT"
        APORT=$(free_port) && LH_PORTS_TAKEN="$LH_PORTS_TAKEN $APORT"
        write_conf "${1:-}"
        systemd-socket-activate -l "127.0.0.1:$PORT" -l "127.0.0.1:$APORT" \
            --fdname=public:admin -E "NOTIFY_SOCKET=$T/notify.sock" ${SA_ENV:-} \
            "$LHTTPD" -c "$CONF" >"$LOG" 2>&1 3>&- &
        MASTER=$!
        lh_record "$MASTER"
        wait_for 5 listening_by "$APORT" "$MASTER" && break
        lh_stop_pid "$MASTER"
        grep -qi 'address already in use' "$LOG" || { cat "$LOG" >&2; return 1; }
    done
    # Nothing runs lhttpd before the first connection.
    ! notified 'READY=1' || return 1
    curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$PORT/" || true
    if ! wait_for 10 notified "^pid=$MASTER .*READY=1"; then
        echo "no READY=1 from the master; its log:" >&2
        cat "$LOG" >&2
        return 1
    fi
    LH_PID=$MASTER LH_PORT=$PORT LH_LOG=$LOG LH_CONF=$CONF
    export LH_PID LH_PORT LH_LOG LH_CONF LH_PORTS_TAKEN
}

ctl() { "$LHTTPD" -s "$1" -c "$CONF"; }

# workers_info: "SLOT PID GENERATION STATE CONNECTIONS" per worker, from `lhttpd -s status`.
workers_info() { ctl status | awk '$1 == "worker" { print $2, $4, $6, $7, $8 }'; }

# total_conns_is N: the status line reports N connections (counts arrive with heartbeats).
total_conns_is() { ctl status | head -n 1 | grep -q "; $1 connections;"; }

# start_pool NAME ARGS...: wspool.py against PORT in the background, output in
# $T/NAME.out; its pid in POOL_PID.
start_pool() {
    local name=$1
    shift
    "$PY" "$LH_LIB/wspool.py" "$@" "$PORT" >"$T/$name.out" 2>&1 3>&- &
    POOL_PID=$!
    lh_record "$POOL_PID"
}

pool_has() { grep -qE -- "$2" "$T/$1.out"; }

# wait_pool NAME REGEX SECONDS: waits for a line of the pool's output; fails at once when
# the pool could not connect.
wait_pool() {
    local name=$1 re=$2 secs=$3
    wait_for "$secs" pool_has "$name" "$re|^connect-failed|^sync-failed|Traceback" || {
        cat "$T/$name.out" >&2
        return 1
    }
    if pool_has "$name" '^connect-failed|^sync-failed|Traceback'; then
        cat "$T/$name.out" >&2
        return 1
    fi
}

# finish_pool NAME [PID]: SIGUSR1 to the pool, waits for its report; output in $output.
finish_pool() {
    local pid=${2:-$POOL_PID}
    kill -USR1 "$pid"
    wait_for 40 lh_gone "$pid" || return 1
    output=$(cat "$T/$1.out")
    mapfile -t lines <<<"$output"
}

# report_is NAME KEY VALUE: the pool's report line "KEY VALUE" is present.
report_is() {
    grep -qx -- "$2 $3" "$T/$1.out" && return 0
    echo "pool $1: expected \"$2 $3\"; its output:" >&2
    cat "$T/$1.out" >&2
    return 1
}

# conn_owners: "CLIENT_PORT PID" for every established connection to PORT.
conn_owners() {
    ss -Htnp state established "( sport = :$PORT )" |
        sed -nE 's/^.*127\.0\.0\.1:[0-9]+ +127\.0\.0\.1:([0-9]+) .*pid=([0-9]+),.*$/\1 \2/p'
}

# upgrade_status PATH: the HTTP status a new WebSocket handshake on PATH gets.
upgrade_status() {
    "$PY" "$LH_LIB/wsprobe.py" --timeout 5 "$PORT" "upgrade:$1" close:1000 2>&1 |
        sed -nE 's/^status ([0-9]+)$/\1/p' | head -n 1
}

no_worker_died() {
    ! grep -E 'died|killing|AddressSanitizer|runtime error' "$LOG" || {
        cat "$LOG" >&2
        return 1
    }
}

@test "notifications: READY, RELOADING with MONOTONIC_USEC, READY, STOPPING, all from the master" {
    start_activated
    run ctl reload
    [ "$status" -eq 0 ] || lh_show_output
    has_line "lhttpd: generation 2 serving with 2 workers"
    kill -TERM "$MASTER"
    wait_for 10 lh_gone "$MASTER"
    rc=0 && wait "$MASTER" || rc=$?
    [ "$rc" -eq 0 ]
    # The messages that change the service's state, in order; STATUS= and WATCHDOG= are
    # left out.
    run sh -c "sed -nE 's/^pid=[0-9]+ mono=[0-9]+ ((READY|RELOADING|STOPPING)=1).*/\1/p' '$NOTIFY_LOG'"
    lines_are READY=1 RELOADING=1 READY=1 STOPPING=1
    # Every message came from the master (workers run with NOTIFY_SOCKET unset).
    run grep -vc "^pid=$MASTER " "$NOTIFY_LOG"
    [ "$output" = 0 ] || { cat "$NOTIFY_LOG" >&2; false; }
    # RELOADING=1 carries MONOTONIC_USEC= of this host's CLOCK_MONOTONIC, at most a
    # second before the message arrived.
    line=$(grep 'RELOADING=1' "$NOTIFY_LOG")
    [[ $line =~ mono=([0-9]+).*MONOTONIC_USEC=([0-9]+) ]]
    recv=${BASH_REMATCH[1]} sent=${BASH_REMATCH[2]}
    [ "$sent" -le "$recv" ] && [ $((recv - sent)) -lt 1000000 ] || { echo "$line" >&2; false; }
    # STATUS= tells what serves.
    notified 'READY=1 \| STATUS=generation 2; workers 2 active'
}

@test "reload under load: 1000 clients, traffic, 10 reloads: none dropped, nothing lost, new setting seen" {
    start_activated '"websocket": {"paths": ["/", "/r0"]}'
    start_pool load --clients 1000 --channels 10 --rate 200 --publish --timeout 40
    wait_pool load '^publishing' 45
    [ "$(upgrade_status /r0)" = 101 ]
    for i in 1 2 3 4 5 6 7 8 9 10; do
        write_conf '"websocket": {"paths": ["/", "/r'$i'"]}'
        run ctl reload
        [ "$status" -eq 0 ] || { lh_show_output || :; cat "$LOG" >&2; false; }
        has_line "lhttpd: generation $((i + 1)) serving with 2 workers"
        # A new connection meets the new generation: the new path is served, and the
        # previous one is not.
        [ "$(upgrade_status /r$i)" = 101 ]
        [ "$(upgrade_status /r$((i - 1)))" = 404 ]
    done
    # Generation 1 still holds every client (draining), the probes' generations are gone.
    wait_for 5 total_conns_is 1001
    run workers_info
    [ "$(printf '%s\n' "$output" | grep -c ' 1 draining ')" -eq 2 ] || lh_show_output
    [ "$(printf '%s\n' "$output" | grep -c ' 11 active ')" -eq 2 ] || lh_show_output
    [ "${#lines[@]}" -eq 4 ] || lh_show_output
    finish_pool load
    report_is load open "1000 closed 0"
    report_is load missing 0
    report_is load disorder 0
    report_is load errors 0
    [[ $output =~ published\ ([0-9]+) ]]
    echo "# ${BASH_REMATCH[1]} messages published to 1000 clients during 10 reloads" >&3
    [ "${BASH_REMATCH[1]}" -ge 20 ]
    no_worker_died
    grep -q 'reloads 10 ok, 0 failed' <<<"$(ctl status)"
}

@test "a reload that changes control_socket says it applies at the restart; the master removes its own socket at exit, not the new path" {
    start_activated
    [ -S "$T/ctl.sock" ]
    sed -i "s|\"$T/ctl.sock\"|\"$T/other.sock\"|" "$CONF"
    grep -q other.sock "$CONF"
    echo "not this master's" >"$T/other.sock"
    kill -HUP "$MASTER"
    wait_for 10 grep -q 'reload done' "$LOG"
    grep -q "control_socket changed: it applies at the next restart; this master listens at $T/ctl.sock until then" "$LOG"
    lh_stop_pid "$MASTER"
    [ ! -e "$T/ctl.sock" ]
    [ "$(cat "$T/other.sock")" = "not this master's" ]
}

@test "reload with an invalid configuration: refused with the reason, clients and generation stay" {
    start_activated
    start_pool bad --clients 200 --channels 4 --rate 50 --publish
    wait_pool bad '^publishing' 30
    before=$(workers_info | awk '{ print $1, $2 }')
    cp "$CONF" "$T/good.json"
    printf '{\n  "workers": 2,\n  "listen": ["127.0.0.1:%s"],,\n}\n' "$PORT" >"$CONF"
    # lhttpd -s reload checks the file itself and does not bother the master.
    run ctl reload
    [ "$status" -ne 0 ]
    has_match "^$CONF:3:[0-9]+: "
    # SIGHUP makes the master read it: it refuses, says why, and tells systemd.
    kill -HUP "$MASTER"
    wait_for 5 grep -q 'reload failed' "$LOG"
    grep -qE "^<3>master: reload failed: $CONF:3:" "$LOG"
    wait_for 5 notified "^pid=$MASTER .*READY=1 \| STATUS=reload failed \(generation 1 still serving\): $CONF:3:"
    # A file that parses but has a bad value: same.
    write_conf '"limits": {"max_headers": 100000}'
    run ctl reload
    [ "$status" -ne 0 ]
    has_match "limits.max_headers"
    # Nothing changed: generation 1, the same workers, every client, traffic. (`lhttpd -s`
    # reads the control socket's path from the file, so it needs a valid one.)
    cp "$CONF" "$T/bad.json"
    cp "$T/good.json" "$CONF"
    run ctl status
    has_match '^lhttpd: generation 1; workers 2 active, 0 draining; .*reloads 0 ok, 1 failed$'
    [ "$(workers_info | awk '{ print $1, $2 }')" = "$before" ]
    [ "$(upgrade_status /)" = 101 ]
    finish_pool bad
    report_is bad open "200 closed 0"
    report_is bad missing 0
    report_is bad disorder 0
    # The good file: the reload goes through.
    run ctl reload
    [ "$status" -eq 0 ]
    has_line "lhttpd: generation 2 serving with 2 workers"
    no_worker_died
}

# hold NAME OTHER...: one client in the background (tests/lib/pubsub.py, output in
# $T/NAME.out): it connects to PORT, subscribes to its own channel NAME and prints "NAME
# ready"; once $T/go exists it publishes "from-NAME" to every OTHER's channel and reads one
# message from each OTHER; it stays connected until $T/end exists. Channels of their own
# make each delivery depend on the publishing worker knowing that exactly the receiving
# worker has the channel (no third worker with it sends it to NATS anyway).
hold() {
    local name=$1 steps=() o
    shift
    for o in "$@"; do steps+=("recv:$name"); done
    "$PY" "$LH_LIB/pubsub.py" --timeout 5 "open:$name:$PORT" "sub:$name:$name" \
        "print:$name ready" "await:$T/go:60" "pub:$name:$*:from-$name" "${steps[@]}" \
        "await:$T/end:60" "close:$name" >"$T/$name.out" 2>&1 3>&- &
    lh_record $!
    wait_pool "$name" "^$name ready" 10
}

# heard_all NAME FROM...: NAME received the message of every FROM client.
heard_all() {
    local from
    for from in "${@:2}"; do
        grep -qE -- "^$1 got [0-9]+ .*from-$from\$" "$T/$1.out" || return 1
    done
}

# wait_heard NAME FROM...: waits until heard_all; shows NAME's output on failure.
wait_heard() {
    wait_for 10 heard_all "$@" && return 0
    echo "--- $1 did not hear from all of: ${*:2}; its output:" >&2
    cat "$T/$1.out" >&2
    return 1
}

@test "max_workers_alive: a reload with no room is refused; every generation's worker reaches every other" {
    WORKERS=1 start_activated '"drain_timeout_ms": 60000, "max_workers_alive": 3'
    # One client per generation, each held open, so every generation stays alive
    # (draining) and holds a worker slot: 1 + 1 + 1 = max_workers_alive.
    hold a b c
    run ctl reload
    [ "$status" -eq 0 ] || lh_show_output
    hold b a c
    run ctl reload
    [ "$status" -eq 0 ] || lh_show_output
    hold c a b
    run ctl status
    has_match '^lhttpd: generation 3; workers 1 active, 2 draining; '
    # A third reload would need a fourth worker alive: refused, with the reason, in the
    # reply, the journal and systemd's status; generation 3 keeps serving.
    run ctl reload
    [ "$status" -ne 0 ]
    has_match '^lhttpd: .*max_workers_alive 3.*'
    grep -qE '^<3>master: reload failed: .*max_workers_alive 3' "$LOG"
    wait_for 5 notified "^pid=$MASTER .*STATUS=reload failed \(generation 3 still serving\): .*max_workers_alive 3"
    run ctl status
    has_match '^lhttpd: generation 3; workers 1 active, 2 draining; .*reloads 2 ok, 1 failed$'
    # Each client publishes on its own worker; each hears the other two.
    touch "$T/go"
    wait_heard a b c
    wait_heard b a c
    wait_heard c a b
    touch "$T/end"
    run ! grep -E 'no free metrics slot|counts will be missing' "$LOG"
    no_worker_died
}

@test "more workers alive than the old 128-slot table: the new generation's worker reaches and hears the old" {
    # 128 workers fill the old fixed table; a reload to one worker spawns a 129th while
    # all 128 are alive (those holding a client stay, draining).
    WORKERS=128 start_activated '"drain_timeout_ms": 60000'
    hold a1 a2 a3 b
    hold a2 a1 a3 b
    hold a3 a1 a2 b
    WORKERS=1 write_conf '"drain_timeout_ms": 60000'
    run ctl reload
    [ "$status" -eq 0 ] || lh_show_output
    has_line "lhttpd: generation 2 serving with 1 workers"
    hold b a1 a2 a3
    touch "$T/go"
    wait_heard b a1 a2 a3
    for n in a1 a2 a3; do wait_heard $n b; done
    touch "$T/end"
    run ! grep -E 'no free metrics slot|counts will be missing' "$LOG"
    no_worker_died
}

@test "SIGKILL of a worker: replaced within a second, the other worker's clients notice nothing" {
    start_activated
    start_pool kill --clients 400 --channels 8 --rate 50 --publish --ports "$T/ports"
    wait_pool kill '^publishing' 30
    pubport=$(sed -nE 's/^publisher-port ([0-9]+)$/\1/p' "$T/kill.out")
    wait_for 5 total_conns_is 401
    conn_owners >"$T/owners"
    # The victim: a worker that does not carry the publisher, so the traffic goes on.
    pubpid=$(awk -v p="$pubport" '$1 == p { print $2 }' "$T/owners")
    [ -n "$pubpid" ]
    read -r slot victim _ < <(workers_info | awk -v p="$pubpid" '$2 != p')
    [ -n "$victim" ]
    awk -v v="$victim" '$2 == v { print $1 }' "$T/owners" | sort -n >"$T/victim-ports"
    nvictim=$(wc -l <"$T/victim-ports")
    [ "$nvictim" -gt 0 ]
    [ "$nvictim" -lt 400 ]
    kill -KILL "$victim"
    # Replaced: slot SLOT has a new pid, active, within a second.
    replaced() { workers_info | awk -v s="$slot" -v v="$victim" '$1 == s && $2 != v && $4 == "active"' | grep -q .; }
    wait_for 1 replaced || { ctl status >&2; cat "$LOG" >&2; false; }
    grep -qE "worker $slot \(pid $victim\) died" "$LOG"
    [ "$(upgrade_status /)" = 101 ]
    finish_pool kill
    # Exactly the victim's clients were dropped; every other one got every message.
    report_is kill open "$((400 - nvictim)) closed $nvictim"
    report_is kill missing 0
    report_is kill disorder 0
    report_is kill errors 0
    sed -nE 's/^closed-port ([0-9]+) .*/\1/p' "$T/kill.out" | sort -n >"$T/closed-ports"
    diff "$T/victim-ports" "$T/closed-ports"
}

@test "SIGTERM: every client gets close 1001, the master exits 0 within shutdown_timeout_ms" {
    start_activated
    start_pool term --clients 300 --channels 3
    wait_pool term '^connected 300' 30
    wait_for 5 total_conns_is 300
    t0=${EPOCHREALTIME/./}
    kill -TERM "$MASTER"
    # shutdown_timeout_ms is 3000; these clients answer the close at once.
    wait_for 5 lh_gone "$MASTER" || { cat "$LOG" >&2; false; }
    elapsed_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
    rc=0 && wait "$MASTER" || rc=$?
    [ "$rc" -eq 0 ]
    echo "# stop took ${elapsed_ms} ms with 300 clients" >&3
    [ "$elapsed_ms" -lt 4000 ]
    wait_for 10 lh_gone "$POOL_PID"
    report_is term open "0 closed 300"
    report_is term closes "1001=300"
    grep -q 'STOPPING=1' "$NOTIFY_LOG"
    grep -q '^<5>master: stopped$' "$LOG"
}

@test "by hand, without systemd: the master binds listen itself, reloads and stops" {
    [ -n "${NATS_PORT:-}" ] || start_nats
    CONF_TEXT='{"listen": ["127.0.0.1:@PORT@"], "workers": 2, "shutdown_timeout_ms": 3000,
        "control_socket": "'$T'/ctl.sock", "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "websocket": {"paths": ["/", "/a"]}}'
    start_lhttpd "$CONF_TEXT"
    PORT=$LH_PORT CONF=$LH_CONF LOG=$LH_LOG
    grep -q "listening on 127.0.0.1:$PORT" "$LOG"
    run ! grep -q 'from systemd' "$LOG"
    start_pool hand --clients 100 --channels 4 --rate 50 --publish
    wait_pool hand '^publishing' 30
    sed -i 's#"/a"#"/b"#' "$CONF"
    run ctl reload
    [ "$status" -eq 0 ]
    has_line "lhttpd: generation 2 serving with 2 workers"
    [ "$(upgrade_status /b)" = 101 ]
    [ "$(upgrade_status /a)" = 404 ]
    finish_pool hand
    report_is hand open "100 closed 0"
    report_is hand missing 0
    start_pool hand2 --clients 50 --channels 2
    wait_pool hand2 '^connected 50' 30
    run ctl stop
    [ "$status" -eq 0 ]
    wait_for 6 lh_gone "$LH_PID"
    rc=0 && wait "$LH_PID" || rc=$?
    [ "$rc" -eq 0 ]
    wait_for 10 lh_gone "$POOL_PID"
    report_is hand2 closes "1001=50"
    no_worker_died
}

@test "balance: 3000 connections arriving at once spread over 2 workers, none above 60%" {
    start_activated
    start_pool spread --clients 3000 --channels 30 --timeout 50
    wait_pool spread '^connected 3000' 55
    wait_for 5 total_conns_is 3000
    counts=$(workers_info | awk '{ print $5 }' | tr '\n' ' ')
    echo "# balance over 2 workers: $counts(of 3000)" >&3
    [ -n "${LH_TEST_OUT:-}" ] && echo "balance: $counts" >"$LH_TEST_OUT/balance.txt"
    for c in $counts; do
        [ "$c" -le 1800 ] || { echo "a worker holds $c of 3000 connections" >&2; false; }
    done
    finish_pool spread
    report_is spread open "3000 closed 0"
}

@test "a worker that keeps dying at start is retried with back-off, not in a tight loop" {
    start_activated
    read -r slot victim _ < <(workers_info | head -n 1)
    # Provoke start failures: the master's address-space limit leaves no room for a new
    # worker's threads (cnats starts them when the worker connects to NATS), so every
    # new worker exits at once with "cannot start". The running workers are unaffected.
    vm=$(awk '/^VmSize:/ { print $2 }' "/proc/$MASTER/status")
    prlimit --pid "$MASTER" --as=$(((vm + 4096) * 1024)):
    kill -KILL "$victim"
    wait_for 10 grep -q 'died .* 5 times in a row; next try in 1600 ms' "$LOG" ||
        { cat "$LOG" >&2; false; }
    grep -q "worker $slot: cannot start" "$LOG"
    # The delays double: 100, 200, 400, 800, 1600 ms, and the tries are that far apart
    # (told to systemd in STATUS=, whose arrival times the listener records).
    run sh -c "sed -nE 's/.*next try in ([0-9]+) ms$/\1/p' '$LOG' | head -n 5 | tr '\n' ' '"
    [ "$output" = "100 200 400 800 1600 " ]
    mapfile -t monos < <(sed -nE 's/^pid=[0-9]+ mono=([0-9]+) STATUS=worker [0-9]+ keeps dying at start.*retrying in ([0-9]+) ms$/\1 \2/p' "$NOTIFY_LOG")
    [ "${#monos[@]}" -ge 5 ]
    for i in 1 2 3 4; do
        read -r prev delay <<<"${monos[$((i - 1))]}"
        read -r cur _ <<<"${monos[$i]}"
        [ $(((cur - prev) / 1000)) -ge $((delay - 20)) ] || {
            echo "try $i came $(((cur - prev) / 1000)) ms after the previous, delay $delay" >&2
            false
        }
    done
    # Meanwhile the other worker serves.
    [ "$(upgrade_status /)" = 101 ]
    # Lift the limit: the next try succeeds and both workers serve again.
    prlimit --pid "$MASTER" --as=unlimited:
    two_active() { [ "$(workers_info | grep -c ' active ')" -eq 2 ]; }
    wait_for 5 two_active || { ctl status >&2; false; }
}

@test "watchdog: WATCHDOG=1 only while every worker answers heartbeats" {
    SA_ENV="-E WATCHDOG_USEC=1000000" start_activated
    pets() { grep -c 'WATCHDOG=1' "$NOTIFY_LOG" || true; }
    statuses() { grep -c '^pid=[0-9]* mono=[0-9]* STATUS=' "$NOTIFY_LOG" || true; }
    # Half the watchdog interval: a pet every 500 ms, from the master.
    wait_for 3 sh -c "[ \$(grep -c 'WATCHDOG=1' '$NOTIFY_LOG') -ge 3 ]"
    [ -z "$(grep 'WATCHDOG=1' "$NOTIFY_LOG" | grep -v "^pid=$MASTER ")" ]
    # A stuck worker (stopped): after 3 missed heartbeats the master stops petting.
    read -r _ stuck _ < <(workers_info | head -n 1)
    kill -STOP "$stuck"
    wait_for 6 grep -q 'a worker misses heartbeats: not petting the watchdog' "$LOG" || {
        kill -CONT "$stuck"
        cat "$LOG" >&2
        false
    }
    n=$(pets) s=$(statuses)
    # Two more status heartbeats (one a second) and still no pet.
    wait_for 4 sh -c "[ \$(grep -c '^pid=[0-9]* mono=[0-9]* STATUS=' '$NOTIFY_LOG') -ge $((s + 2)) ]"
    [ "$(pets)" -eq "$n" ] || { kill -CONT "$stuck"; cat "$NOTIFY_LOG" >&2; false; }
    # It answers again: the pets resume, and nobody was killed.
    kill -CONT "$stuck"
    wait_for 3 sh -c "[ \$(grep -c 'WATCHDOG=1' '$NOTIFY_LOG') -gt $n ]"
    lh_alive "$stuck"
    no_worker_died
}
