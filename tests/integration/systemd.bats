#!/usr/bin/env bats
# lhttpd under a real systemd: the units in systemd/ checked by systemd-analyze, then run
# as an operator would, in a throwaway systemd booted in namespaces (tests/lib/sdbox.sh):
# socket activation, Type=notify readiness, systemctl reload (and a refused one), an
# upgrade in place (lhttpd -s upgrade), stop, and the journal's priorities. The tests of
# this file run in order on one box.
#
# Inside the box the units are those of systemd/, with only the binary and configuration
# paths changed (to a copy of the built binary and a file in the test's directory, seen
# inside as /run/sdbox). They run as the unprivileged user lhttpd, which the package
# creates with sysusers; when the host has no such user, setup_file creates it
# (useradd --system) because the box shares the host's /etc.
# Clients run inside the box (its loopback is its own) through nsenter.

load ../lib/helpers
source "$BATS_TEST_DIRNAME/../lib/sdbox.sh"

UNITS="lhttpd.service lhttpd.socket lhttpd-admin.socket"
SRC=$BATS_TEST_DIRNAME/../../systemd

# box_conf [JSON_MEMBERS]: the configuration the box's lhttpd reads (/run/sdbox/lhttpd.json).
box_conf() {
    cat >"$BOX/lhttpd.json.tmp" <<EOF
{
    "listen": [":8081"],
    "workers": 2,
    "shutdown_timeout_ms": 3000,
    "nats": {"servers": ["nats://127.0.0.1:4222"]}
    ${1:+,$1}
}
EOF
    chmod 0644 "$BOX/lhttpd.json.tmp"
    mv "$BOX/lhttpd.json.tmp" "$BOX/lhttpd.json"
}

setup_file() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "systemd.bats needs root: unshare/nsenter for the box, useradd for lhttpd" >&2
        return 1
    fi
    BOX=$BATS_FILE_TMPDIR/box
    mkdir -p "$BOX"
    chmod 0755 "$BOX"
    export BOX
    # A copy: the build may be relinked while the box runs. The clients go in too: the
    # box's /tmp is private, and the checkout may live under the host's /tmp.
    cp "$LHTTPD" "$BOX/lhttpd"
    cp "$LH_LIB/wspool.py" "$LH_LIB/wsprobe.py" "$BOX/"
    box_conf
    mkdir -p "$BOX/units"
    for u in $UNITS; do
        sed -e 's#/usr/sbin/lhttpd#/run/sdbox/lhttpd#g' \
            -e 's#/etc/lhttpd/lhttpd.json#/run/sdbox/lhttpd.json#g' "$SRC/$u" >"$BOX/units/$u"
    done
    # A sanitizer build (make SANITIZE=...): LeakSanitizer cannot stop threads under the
    # unit's hardening, so the short-lived `lhttpd -s reload` would fail on exit.
    if grep -q __asan_init "$BOX/lhttpd"; then
        sed -i 's/^\[Service\]$/[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0/' \
            "$BOX/units/lhttpd.service"
    fi
    if ! getent passwd lhttpd >/dev/null; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --comment "lhttpd WebSocket server" lhttpd
        echo "# created the system user lhttpd on this host (useradd --system)" >&3
    fi
    SDBOX_OWNER=$$ sdbox_start "$BOX"
    sdbox sh -c 'cp /run/sdbox/units/* /run/systemd/system/'
    sdbox systemctl daemon-reload
}

teardown_file() {
    sdbox_stop
}

teardown() {
    # Clients this test started inside the box (their host pids).
    local p
    for p in ${BOX_PIDS:-}; do
        kill "$p" 2>/dev/null || true
    done
    if [ -n "${BATS_TEST_COMPLETED:-}" ] || [ -z "${SDBOX_PID:-}" ]; then return 0; fi
    # Failed: show what the box's systemd says.
    {
        echo "--- systemctl status lhttpd:"
        sdbox systemctl status --no-pager -l lhttpd.service lhttpd.socket 2>&1 | tail -n 30
        echo "--- journalctl -u lhttpd:"
        sdbox journalctl -u lhttpd --no-pager -n 60 2>&1
    } >&2
}

# box_pool NAME ARGS...: wspool.py inside the box against :8081, output in $BOX/NAME.out
# (host side); its host pid in POOL_PID.
box_pool() {
    local name=$1
    shift
    sdbox_bg "$BOX/$name.out" /usr/bin/python3 /run/sdbox/wspool.py "$@" 8081
    POOL_PID=$SDBOX_BG_PID
    BOX_PIDS="${BOX_PIDS:-} $POOL_PID"
}

pool_has() { grep -qE -- "$2" "$BOX/$1.out"; }

wait_pool() {
    wait_for "$3" pool_has "$1" "$2|^connect-failed|^sync-failed|Traceback" &&
        ! pool_has "$1" '^connect-failed|^sync-failed|Traceback' || {
        cat "$BOX/$1.out" >&2
        return 1
    }
}

report_is() {
    grep -qx -- "$2 $3" "$BOX/$1.out" && return 0
    echo "pool $1: expected \"$2 $3\"; its output:" >&2
    cat "$BOX/$1.out" >&2
    return 1
}

# box_upgrade PATH: the HTTP status a new WebSocket handshake on :8081 PATH gets.
box_upgrade() {
    sdbox /usr/bin/python3 /run/sdbox/wsprobe.py --timeout 5 8081 "upgrade:$1" close:1000 2>&1 |
        sed -nE 's/^status ([0-9]+)$/\1/p' | head -n 1
}

state_is() { [ "$(sdbox systemctl is-active "$1" 2>/dev/null)" = "$2" ]; }
prop() { sdbox systemctl show -P "$2" "$1"; }
journal_has() { sdbox journalctl -u lhttpd --no-pager -o cat | grep -qE -- "$1"; }
# invocation_log: the journal of the service's current run, messages only.
invocation_log() {
    sdbox journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID="$(prop lhttpd.service InvocationID)"
}
main_pid_set() { [ "$(prop lhttpd.service MainPID)" != 0 ]; }

@test "units: systemd-analyze verify accepts the service and both sockets" {
    # verify needs ExecStart='s binary to exist: a copy of the units pointing at the
    # build's. --man=no: the Documentation= pages need not be installed here.
    d=$BATS_TEST_TMPDIR/units
    mkdir -p "$d"
    for u in $UNITS; do
        sed "s#/usr/sbin/lhttpd#$LHTTPD#g" "$SRC/$u" >"$d/$u"
    done
    run systemd-analyze verify --man=no "$d/lhttpd.service" "$d/lhttpd.socket" "$d/lhttpd-admin.socket"
    [ "$status" -eq 0 ] && [ -z "$output" ] || lh_show_output
    # The real paths, as installed.
    grep -qx 'ExecStart=/usr/sbin/lhttpd -c /etc/lhttpd/lhttpd.json' "$SRC/lhttpd.service"
    grep -qx 'ExecReload=/usr/sbin/lhttpd -s reload -c /etc/lhttpd/lhttpd.json' "$SRC/lhttpd.service"
}

@test "units: systemd-analyze security rates lhttpd.service 2.5 or better" {
    run systemd-analyze security --offline=yes --no-pager "$SRC/lhttpd.service"
    [[ $output =~ Overall\ exposure\ level\ for\ lhttpd.service:\ ([0-9]+\.[0-9]) ]] || lh_show_output
    score=${BASH_REMATCH[1]}
    echo "# systemd-analyze security: $score" >&3
    [ "${score/./}" -le 25 ]
}

@test "socket activation: lhttpd.socket listens, the first connection starts lhttpd, active only after READY" {
    # Until NATS answers, a new worker waits up to 1 s in its first connect: a port that
    # accepts and never speaks holds the service in "activating" for that long, so the
    # test can see it. nats-server takes the port later.
    sdbox systemd-run --quiet --unit=silent-nats /usr/bin/python3 -c '
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 4222))
s.listen(64)
held = []
while True:
    held.append(s.accept()[0])'
    wait_for 5 sdbox sh -c 'ss -Hltn "sport = :4222" | grep -q .'
    run sdbox systemctl start lhttpd.socket
    [ "$status" -eq 0 ] || lh_show_output
    state_is lhttpd.socket active
    state_is lhttpd.service inactive
    sdbox ss -Hltnp "sport = :8081" | grep -q 'systemd'
    # The first client starts the service.
    sdbox_bg "$BOX/first.out" curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 http://127.0.0.1:8081/
    BOX_PIDS="${BOX_PIDS:-} $SDBOX_BG_PID"
    wait_for 5 main_pid_set
    # The master runs, its workers wait for NATS: not READY, so not active.
    st=$(sdbox systemctl is-active lhttpd.service) || true
    [ "$st" = activating ] || { echo "state $st before READY" >&2; false; }
    run ! journal_has '^master: ready'
    wait_for 10 state_is lhttpd.service active
    journal_has '^master: ready: 2 workers accepting$'
    # The admin socket came along (Sockets=), by its name.
    state_is lhttpd-admin.socket active
    journal_has '^master: using admin socket fd [0-9]+ from systemd$'
    journal_has '^master: using public socket fd [0-9]+ from systemd$'
    [ "$(sdbox curl -s --max-time 5 http://127.0.0.1:9081/livez -o /dev/null -w '%{http_code}')" = 200 ]
    wait_for 10 grep -qx '426' "$BOX/first.out"
    [[ $(prop lhttpd.service StatusText) =~ ^generation\ 1\; ]]
    [ "$(prop lhttpd.service User)" = lhttpd ]
    # The workers run as lhttpd too, without privileges.
    for p in $(sdbox ps -o pid= --ppid "$(prop lhttpd.service MainPID)"); do
        [ "$(sdbox ps -o user= -p "$p")" = lhttpd ]
    done
    # Stopped, the service leaves its sockets to systemd: the next client starts it
    # again, now with the real NATS (packaged nats-server.service).
    sdbox systemctl stop lhttpd.service
    state_is lhttpd.socket active
    sdbox systemctl stop silent-nats
    sdbox systemctl start nats-server.service
    wait_for 10 sdbox sh -c 'ss -Hltn "sport = :4222" | grep -q .'
    [ "$(sdbox curl -s --max-time 5 http://127.0.0.1:8081/ -o /dev/null -w '%{http_code}')" = 426 ]
    state_is lhttpd.service active
    nats_up() { [ "$(invocation_log | grep -c 'NATS: connected')" -ge 2 ]; }
    wait_for 10 nats_up
}

@test "systemctl reload returns once the new generation serves; connected clients stay" {
    state_is lhttpd.service active
    box_pool reload --clients 200 --channels 4 --rate 50 --publish
    wait_pool reload '^publishing' 30
    [ "$(box_upgrade /r1)" = 404 ]
    box_conf '"websocket": {"paths": ["/", "/r1"]}'
    run sdbox systemctl reload lhttpd
    [ "$status" -eq 0 ] || lh_show_output
    # Right away: new connections meet the new generation.
    [ "$(box_upgrade /r1)" = 101 ]
    state_is lhttpd.service active
    [[ $(prop lhttpd.service StatusText) =~ ^generation\ 2\; ]]
    journal_has '^master: reload done: generation 2 serving with 2 workers$'
    kill -USR1 "$POOL_PID"
    wait_for 30 pool_has reload '^errors '
    report_is reload open "200 closed 0"
    report_is reload missing 0
    report_is reload disorder 0
}

@test "systemctl reload with a broken configuration fails; the node keeps serving" {
    cp "$BOX/lhttpd.json" "$BOX/good.json"
    printf '{"listen": [":8081"], "workers": 2,, }\n' >"$BOX/lhttpd.json"
    run sdbox systemctl reload lhttpd
    [ "$status" -ne 0 ] || lh_show_output
    state_is lhttpd.service active
    [ "$(box_upgrade /r1)" = 101 ]
    [[ $(prop lhttpd.service StatusText) =~ ^generation\ 2\; ]]
    # The reason is in the journal.
    journal_has '^/run/sdbox/lhttpd.json:1:[0-9]+: '
    cp "$BOX/good.json" "$BOX/lhttpd.json"
}

@test "lhttpd -s upgrade: the same MainPID, systemd sees the unit reloading then active, clients stay, the new version serves" {
    local v1 v2 bin main
    state_is lhttpd.service active
    v1=$("$BOX/lhttpd" --version | awk '{ print $2 }')
    v2=$v1-sd2
    bin=$("$LH_LIB/build-version.sh" "${B:-$LH_LIB/../../build}" "$BATS_FILE_TMPDIR/v2" "$v2")
    cp "$bin" "$BOX/lhttpd-v2"
    chmod 0755 "$BOX/lhttpd-v2"
    main=$(prop lhttpd.service MainPID)
    box_pool upgrade --clients 200 --channels 4 --rate 50 --publish
    wait_pool upgrade '^publishing' 30
    # The binary at ExecStart='s path becomes the new one, with a check that takes 2 s so
    # that the unit's state during the upgrade can be seen.
    printf '#!/bin/sh\nif [ "$1" = --upgrade-check ]; then sleep 2; fi\nexec /run/sdbox/lhttpd-v2 "$@"\n' \
        >"$BOX/lhttpd.new"
    chmod 0755 "$BOX/lhttpd.new"
    mv "$BOX/lhttpd" "$BOX/lhttpd-v1"
    mv "$BOX/lhttpd.new" "$BOX/lhttpd"
    sdbox_bg "$BOX/upgrade.out" /run/sdbox/lhttpd-v2 -s upgrade -c /run/sdbox/lhttpd.json
    BOX_PIDS="${BOX_PIDS:-} $SDBOX_BG_PID"
    # RELOADING=1: systemd shows the unit reloading until READY=1.
    wait_for 5 state_is lhttpd.service reloading
    wait_for 30 grep -q . "$BOX/upgrade.out"
    grep -qx "lhttpd: upgraded lhttpd $v1 -> $v2 (pid $main): generation 3 serving with 2 workers" "$BOX/upgrade.out" ||
        { cat "$BOX/upgrade.out" >&2; false; }
    state_is lhttpd.service active
    [ "$(prop lhttpd.service MainPID)" = "$main" ]
    [ "$(prop lhttpd.service NRestarts)" = 0 ]
    [[ $(prop lhttpd.service StatusText) =~ ^generation\ 3\; ]]
    journal_has "^master: upgrade done: lhttpd $v1 -> $v2; generation 3 serving with 2 workers$"
    sdbox curl -s --max-time 5 http://127.0.0.1:9081/metrics | grep -qx "lhttpd_build_info{version=\"$v2\"} 1"
    [ "$(box_upgrade /r1)" = 101 ]
    kill -USR1 "$POOL_PID"
    wait_for 30 pool_has upgrade '^errors '
    report_is upgrade open "200 closed 0"
    report_is upgrade missing 0
    report_is upgrade disorder 0
}

@test "systemctl stop closes every client with 1001" {
    state_is lhttpd.service active
    box_pool stop --clients 100 --channels 2
    wait_pool stop '^connected 100' 30
    run sdbox systemctl stop lhttpd.service
    [ "$status" -eq 0 ] || lh_show_output
    state_is lhttpd.service inactive
    wait_for 10 pool_has stop '^errors '
    report_is stop closes "1001=100"
    journal_has '^master: stopped$'
    [ "$(prop lhttpd.service Result)" = success ]
}

@test "journal: priorities come from the <N> prefixes" {
    # Warnings and worse: the NATS warning of the start, no info lines.
    run sdbox journalctl -u lhttpd.service -p warning -o cat --no-pager
    has_match '^worker [01]: NATS: not reachable yet; retrying in the background$'
    no_match 'started \(pid|^master: ready|NATS: connected'
    no_match '^<[0-7]>'
    # Everything: the info lines are there, without their prefix.
    run sdbox journalctl -u lhttpd.service -p info -o cat --no-pager
    has_match '^master: worker 0 started \(pid [0-9]+, generation 1\)$'
    # Priorities as numbers: warning is 4, notice 5, info 6.
    run sdbox journalctl -u lhttpd.service -o json --no-pager --output-fields=PRIORITY,MESSAGE
    has_match '"PRIORITY":"4".*NATS: not reachable yet|NATS: not reachable yet.*"PRIORITY":"4"'
    has_match '"PRIORITY":"5".*master: ready|master: ready.*"PRIORITY":"5"'
}
