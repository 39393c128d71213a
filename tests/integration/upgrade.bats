#!/usr/bin/env bats
# Binary upgrade in place (`lhttpd -s upgrade`, master/upgrade.h), with real processes.
# The master runs from a copy of the binary in the test's directory ($T/bin/lhttpd); an
# "upgrade" replaces that file as a package would (a new file renamed over the old
# path, so the running image keeps its deleted inode) with lhttpd rebuilt with another
# version string (tests/lib/build-version.sh: the objects that use LH_VERSION, compiled
# again), then asks the master. Checked: the master's pid, its sockets and its clients
# stay; the new generation runs the new binary (lhttpd_build_info); no counter goes down;
# each failure (no binary, one that exits or crashes at start, a bad configuration, an
# incompatible one, a new image that cannot take over after the exec) leaves the old one
# serving with its workers and makes the command fail with the reason; an upgrade is
# refused while a reload or another upgrade is in progress. Notifications as under
# systemd (systemd-socket-activate and tests/lib/notify_listen.py): RELOADING=1, READY=1.

load ../lib/helpers

setup_file() {
    local d=$BATS_FILE_TMPDIR
    V1=$("$LHTTPD" --version | awk '{ print $2 }')
    V2=$V1-up2
    V3=$V1-up3
    B2=$("$LH_LIB/build-version.sh" "${B:-$LH_LIB/../../build}" "$d/v2" "$V2")
    B3=$("$LH_LIB/build-version.sh" "${B:-$LH_LIB/../../build}" "$d/v3" "$V3")
    export V1 V2 V3 B2 B3
}

setup() {
    T=$(lh_tmp)
    mkdir -p "$T/bin"
    cp "$LHTTPD" "$T/bin/lhttpd"
    BIN=$T/bin/lhttpd
}

teardown() { stop_all; }

# install_binary FILE: puts FILE at $BIN as dpkg does (write aside, rename over).
install_binary() {
    cp "$1" "$BIN.dpkg-new"
    chmod 0755 "$BIN.dpkg-new"
    mv -f "$BIN.dpkg-new" "$BIN"
}

# install_script TEXT: a shell script at $BIN (@REAL@: a kept copy of the real binary).
install_script() {
    cp "$LHTTPD" "$T/real-lhttpd"
    printf '#!/bin/sh\n%s\n' "${1//@REAL@/$T/real-lhttpd}" >"$BIN.dpkg-new"
    chmod 0755 "$BIN.dpkg-new"
    mv -f "$BIN.dpkg-new" "$BIN"
}

# write_conf: $CONF with 2 workers, the admin socket (APORT) and the test's control socket.
write_conf() {
    cat >"$CONF.tmp" <<EOF
{
    "listen": ["127.0.0.1:$PORT"],
    "admin": {"listen": ["127.0.0.1:$APORT"]},
    "workers": 2,
    "control_socket": "$T/ctl.sock",
    "shutdown_timeout_ms": 3000,
    "handoff": {"enabled": true},
    "nats": {"servers": ["nats://127.0.0.1:$NATS_PORT"]}
}
EOF
    mv "$CONF.tmp" "$CONF"
}

notified() { grep -qE -- "$1" "$NOTIFY_LOG"; }

# start_master: nats-server, the notify listener, then $BIN under systemd-socket-activate
# (sockets "public" on PORT, "admin" on APORT, as lhttpd.socket passes them). Sets
# MASTER, PORT, APORT, CONF, LOG, NOTIFY_LOG; returns once READY=1 arrived.
start_master() {
    local try
    [ -n "${NATS_PORT:-}" ] || start_nats || return 1
    NOTIFY_LOG=$T/notify.log
    "$PY" "$LH_LIB/notify_listen.py" "$T/notify.sock" >"$NOTIFY_LOG" 2>&1 3>&- &
    lh_record $!
    wait_for 5 test -S "$T/notify.sock" || return 1
    CONF=$T/lhttpd.json
    LOG=$T/lhttpd-master.log
    for try in 1 2 3 4 5; do
        PORT=$(free_port) && LH_PORTS_TAKEN="$LH_PORTS_TAKEN $PORT"
        APORT=$(free_port) && LH_PORTS_TAKEN="$LH_PORTS_TAKEN $APORT"
        write_conf
        systemd-socket-activate -l "127.0.0.1:$PORT" -l "127.0.0.1:$APORT" \
            --fdname=public:admin -E "NOTIFY_SOCKET=$T/notify.sock" ${SA_ENV:-} \
            "$BIN" -c "$CONF" >"$LOG" 2>&1 3>&- &
        MASTER=$!
        lh_record "$MASTER"
        wait_for 5 listening_by "$APORT" "$MASTER" && break
        lh_stop_pid "$MASTER"
        grep -qi 'address already in use' "$LOG" || { cat "$LOG" >&2; return 1; }
    done
    curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$PORT/" || true
    wait_for 10 notified "^pid=$MASTER .*READY=1" || { cat "$LOG" >&2; return 1; }
    MURL=http://127.0.0.1:$APORT
    LH_PID=$MASTER LH_PORT=$PORT LH_LOG=$LOG LH_CONF=$CONF
    export LH_PID LH_PORT LH_LOG LH_CONF LH_PORTS_TAKEN
}

# ctl COMMAND: `lhttpd -s COMMAND` with the binary the test started from (the client
# side does not matter; a kept copy, since $BIN is replaced).
ctl() { "$LHTTPD" -s "$1" -c "$CONF"; }

workers_info() { ctl status | awk '$1 == "worker" { print $2, $4, $6, $7 }'; }
metric() { "$PY" "$LH_LIB/promscrape.py" value "$MURL/metrics" "$1"; }
build_version() { curl -s --max-time 5 "$MURL/metrics" | sed -nE 's/^lhttpd_build_info\{version="([^"]*)"\} 1$/\1/p'; }

start_pool() {
    "$PY" "$LH_LIB/wspool.py" "$@" "$PORT" >"$T/pool.out" 2>&1 3>&- &
    POOL_PID=$!
    lh_record "$POOL_PID"
}
pool_has() { grep -qE -- "$1" "$T/pool.out"; }
wait_pool() {
    wait_for "$2" pool_has "$1|^connect-failed|^sync-failed|Traceback" || { cat "$T/pool.out" >&2; return 1; }
    ! pool_has '^connect-failed|^sync-failed|Traceback' || { cat "$T/pool.out" >&2; return 1; }
}
finish_pool() {
    kill -USR1 "$POOL_PID"
    wait_for 40 lh_gone "$POOL_PID" || return 1
    output=$(cat "$T/pool.out")
}
report_is() {
    grep -qx -- "$1 $2" "$T/pool.out" && return 0
    echo "pool: expected \"$1 $2\"; its output:" >&2
    cat "$T/pool.out" >&2
    return 1
}

# serves: a new client gets a WebSocket handshake and a pong.
serves() {
    local out
    out=$("$PY" "$LH_LIB/wsprobe.py" "$PORT" upgrade:/ ping:alive recv close:1000 expect-close 2>&1)
    case $out in *"pong fin=1 len=5 alive"*) return 0 ;; esac
    echo "no new client served: $out" >&2
    return 1
}

# start_watch: scrapes /metrics back to back until stop_watch (promscrape.py watch: no
# counter may go down or vanish between two scrapes).
start_watch() {
    mkdir -p "$T/watch"
    "$PY" "$LH_LIB/promscrape.py" watch "$MURL/metrics" --stop-file "$T/watch.stop" \
        --out "$T/watch" >"$T/watch.log" 2>&1 3>&- &
    WATCH_PID=$!
    lh_record "$WATCH_PID"
}
stop_watch() {
    touch "$T/watch.stop"
    wait_for 20 lh_gone "$WATCH_PID"
    cat "$T/watch/report" >&3
    grep -qE '^scrapes [0-9]+ failed 0 decreases 0 duplicates 0$' "$T/watch/report" || {
        cat "$T/watch/report" "$T/watch.log" >&2
        return 1
    }
}

no_crash() {
    ! grep -E 'died|killing|AddressSanitizer|runtime error|master is lost' "$LOG" || {
        cat "$LOG" >&2
        return 1
    }
}

@test "upgrade to a rebuilt binary: same master pid and clients, the new version serves, no counter goes down, RELOADING then READY" {
    start_master
    start_pool --clients 200 --channels 4 --rate 100 --publish --timeout 40
    wait_pool '^publishing' 45
    start_watch
    [ "$(build_version)" = "$V1" ]
    old=$(workers_info)
    before=$(metric lhttpd_tcp_connections_accepted_total)
    install_binary "$B2"
    t0=${EPOCHREALTIME/./}
    run ctl upgrade
    t1=${EPOCHREALTIME/./}
    [ "$status" -eq 0 ] || { lh_show_output || :; cat "$LOG" >&2; false; }
    has_line "lhttpd: upgraded lhttpd $V1 -> $V2 (pid $MASTER): generation 2 serving with 2 workers"
    echo "# lhttpd -s upgrade took $(((t1 - t0) / 1000)) ms with 200 clients connected" >&3
    # Same process, now running the new file.
    lh_alive "$MASTER"
    [ "$(readlink "/proc/$MASTER/exe")" = "$BIN" ]
    [ "$(build_version)" = "$V2" ]
    serves
    [ "$(metric lhttpd_tcp_connections_accepted_total)" -ge "$before" ]
    # The old workers retire as on reload: they hand their clients (and the publisher) to
    # the new generation and leave.
    gen2_only() { [ -z "$(workers_info | awk '$3 != 2')" ]; }
    wait_for 10 gen2_only || { workers_info; false; }
    run workers_info
    [ "$(grep -c ' 2 active' <<<"$output")" -eq 2 ] || lh_show_output
    for pid in $(awk '{ print $2 }' <<<"$old"); do ! grep -q " $pid " <<<"$output" || lh_show_output; done
    [ "$(metric 'lhttpd_handoff_total{result="adopted"}')" = 201 ]
    grep -qx "binary lhttpd $V2 ($BIN); upgrades 1 ok, 0 failed" <<<"$(ctl status)"
    [ "$(metric 'lhttpd_upgrades_total{result="success"}')" = 1 ]
    [ "$(metric 'lhttpd_upgrades_total{result="failure"}')" = 0 ]
    stop_watch
    finish_pool
    report_is open "200 closed 0"
    report_is missing 0
    report_is disorder 0
    report_is errors 0
    no_crash
    # systemd saw a reload: RELOADING=1 then READY=1, from the master's pid.
    run sh -c "sed -nE 's/^pid=([0-9]+) mono=[0-9]+ ((READY|RELOADING)=1).*/\1 \2/p' '$NOTIFY_LOG'"
    lines_are "$MASTER READY=1" "$MASTER RELOADING=1" "$MASTER READY=1"
}

@test "5 upgrades in a row, back and forth between versions: one pid, each generation from its binary, no client closed" {
    start_master
    start_pool --clients 50 --channels 2 --rate 50 --publish --timeout 40
    wait_pool '^publishing' 45
    gen=1
    for bin in "$B2" "$B3" "$LHTTPD" "$B3" "$B2"; do
        want=$("$bin" --version | awk '{ print $2 }')
        from=$(build_version)
        install_binary "$bin"
        run ctl upgrade
        [ "$status" -eq 0 ] || { lh_show_output || :; cat "$LOG" >&2; false; }
        gen=$((gen + 1))
        has_line "lhttpd: upgraded lhttpd $from -> $want (pid $MASTER): generation $gen serving with 2 workers"
        [ "$(build_version)" = "$want" ]
        serves
    done
    grep -qx "binary lhttpd $V2 ($BIN); upgrades 5 ok, 0 failed" <<<"$(ctl status)"
    [ "$(metric 'lhttpd_upgrades_total{result="success"}')" = 5 ]
    finish_pool
    report_is open "50 closed 0"
    report_is missing 0
    no_crash
}

# failed_upgrade_leaves_all REGEX [EXIT]: `lhttpd -s upgrade` fails (exit EXIT, default 1)
# with a message matching REGEX; the master, its workers and its clients stay.
failed_upgrade_leaves_all() {
    local want=${2:-1} old
    old=$(workers_info)
    run ctl upgrade
    [ "$status" -eq "$want" ] || { lh_show_output || :; cat "$LOG" >&2; false; }
    has_match "$1"
    has_match "lhttpd $V1 keeps serving \\(generation 1\\)"
    lh_alive "$MASTER"
    [ "$(workers_info)" = "$old" ]
    [ "$(build_version)" = "$V1" ]
    serves
    notified "STATUS=upgrade failed"
}

@test "failed upgrades: no binary, not executable, exits at start, crashes at start, a bad configuration: the old one serves, the command says why" {
    start_master
    start_pool --clients 50 --channels 2 --rate 50 --publish --timeout 40
    wait_pool '^publishing' 45
    rm "$BIN"
    failed_upgrade_leaves_all "upgrade failed: $BIN: No such file or directory"
    cp "$LHTTPD" "$BIN" && chmod 0644 "$BIN"
    failed_upgrade_leaves_all "upgrade failed: $BIN: Permission denied"
    install_script 'echo "lhttpd: cannot start here" >&2; exit 1'
    failed_upgrade_leaves_all "upgrade failed: $BIN: lhttpd: cannot start here \\(exit status 1\\)"
    install_script 'kill -SEGV $$'
    failed_upgrade_leaves_all "upgrade failed: $BIN: no output \\(signal Segmentation fault"
    # The master's own file is broken (the client reads a good copy, to reach it): the
    # new binary's check finds it.
    install_binary "$B2"
    cp "$CONF" "$T/good.json"
    printf '{ "workers": 2,, }\n' >"$CONF"
    CONF=$T/good.json failed_upgrade_leaves_all "upgrade failed: $BIN: $T/lhttpd.json:1:16: "
    cp "$T/good.json" "$CONF"
    grep -qx "binary lhttpd $V1 ($BIN); upgrades 0 ok, 5 failed" <<<"$(ctl status)"
    [ "$(metric 'lhttpd_upgrades_total{result="failure"}')" = 5 ]
    # Fixed, it goes through.
    run ctl upgrade
    [ "$status" -eq 0 ] || lh_show_output
    [ "$(build_version)" = "$V2" ]
    finish_pool
    report_is open "50 closed 0"
    report_is missing 0
    no_crash
}

@test "an incompatible binary: exit 3 and 'incompatible' (the packages restart then)" {
    start_master
    # The real binary, asked about another state format, refuses as a future one would.
    install_script 'if [ "$1" = --upgrade-check ]; then shift 2; exec @REAL@ --upgrade-check 999 "$@"; fi; exec @REAL@ "$@"'
    failed_upgrade_leaves_all "incompatible: the running master has upgrade format 999, lhttpd $V1 has [0-9]+: restart instead" 3
    # A master that knows no upgrade at all is answered the same way by the client.
    no_crash
}

@test "the new image cannot take over after the exec: it goes back to the old binary, which adopts its workers again" {
    start_master
    start_pool --clients 50 --channels 2 --rate 50 --publish --timeout 40
    wait_pool '^publishing' 45
    # Passes the check, then the exec'd image is given a configuration that does not load.
    install_script 'if [ "$1" = --upgrade-state ]; then exec @REAL@ "$1" "$2" -c /nonexistent/lhttpd.json; fi; exec @REAL@ "$@"'
    old=$(workers_info)
    run ctl upgrade
    [ "$status" -eq 1 ] || { lh_show_output || :; cat "$LOG" >&2; false; }
    has_match "upgrade failed: lhttpd $V1 \\($BIN\\): /nonexistent/lhttpd.json: .*; lhttpd $V1 keeps serving \\(generation 1\\)"
    lh_alive "$MASTER"
    [ "$(workers_info)" = "$old" ]
    grep -q "adopted its 2 workers back (pid $MASTER)" "$LOG"
    [ "$(metric 'lhttpd_upgrades_total{result="failure"}')" = 1 ]
    serves
    # And the old image can still upgrade.
    install_binary "$B2"
    run ctl upgrade
    [ "$status" -eq 0 ] || lh_show_output
    [ "$(build_version)" = "$V2" ]
    finish_pool
    report_is open "50 closed 0"
    report_is missing 0
    no_crash
}

@test "an upgrade is refused while a reload is in progress, and a reload or a second upgrade while an upgrade is" {
    start_master
    # A reload waits for every old worker to acknowledge "drain": a stopped one holds it.
    w=$(workers_info | awk 'NR == 1 { print $2 }')
    kill -STOP "$w"
    ctl reload >"$T/reload.out" 2>&1 &
    rpid=$!
    wait_for 10 grep -q 'reloading' "$LOG"
    run ctl upgrade
    [ "$status" -eq 1 ] || lh_show_output
    has_line "lhttpd: upgrade a reload is in progress; try again when it is done"
    kill -CONT "$w"
    wait "$rpid"
    grep -q 'generation 2 serving' "$T/reload.out"
    # A slow check holds the upgrade in progress.
    install_script 'if [ "$1" = --upgrade-check ]; then sleep 2; fi; exec @REAL@ "$@"'
    ctl upgrade >"$T/upgrade.out" 2>&1 &
    upid=$!
    wait_for 10 grep -q 'upgrade: checking' "$LOG"
    run ctl reload
    [ "$status" -eq 1 ] || lh_show_output
    has_line "lhttpd: reload an upgrade is in progress"
    run ctl upgrade
    [ "$status" -eq 1 ] || lh_show_output
    has_line "lhttpd: upgrade an upgrade is in progress; try again when it is done"
    wait "$upid"
    grep -q "upgraded lhttpd $V1 -> $V1 (pid $MASTER): generation 3 serving" "$T/upgrade.out"
    no_crash
}

@test "SIGTERM during an upgrade's check: the check is abandoned, the upgrade fails with 'stopping', the master stops as usual" {
    start_master
    install_script 'if [ "$1" = --upgrade-check ]; then sleep 5; fi; exec @REAL@ "$@"'
    ctl upgrade >"$T/upgrade.out" 2>&1 &
    upid=$!
    wait_for 10 grep -q 'upgrade: checking' "$LOG"
    kill -TERM "$MASTER"
    rc=0 && wait "$upid" || rc=$?
    [ "$rc" -eq 1 ]
    grep -q "upgrade failed: stopping" "$T/upgrade.out" || { cat "$T/upgrade.out" >&2; false; }
    wait_for 10 lh_gone "$MASTER"
    rc=0 && wait "$MASTER" || rc=$?
    [ "$rc" -eq 0 ]
    grep -q 'master: stopped' "$LOG"
}
