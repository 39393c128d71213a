#!/usr/bin/env bats
# The packages, proven by installing them: `make package-test` (tests/package/run.sh).
#
# setup_file builds the .deb twice (the second with another version string, VERSION+up1:
# "the next version" for the upgrade) and the .rpm, from copies of the tree (packaging/build-*.sh),
# and boots a throwaway systemd in namespaces (tests/lib/sdbox.sh) before anything is
# installed, so that its masks of the host's enabled units leave lhttpd's alone. The
# tests then run in order on this machine, which must be root: lintian; `dpkg -i`; the
# user, the files, `lhttpd -t`, `systemd-analyze verify`; the installed binary started
# as systemd starts it (systemd-socket-activate, under the package's user) serving a
# pub/sub exchange; in the box, socket activation, a reload that keeps a client, and an
# upgrade in place that keeps the MainPID and every client, as packaging/README.md says; `dpkg --purge`; then
# the .rpm (its files, its scriptlets, rpmlint).
#
# The package is installed into the real system: teardown_file purges it whatever
# happened, and a marker file says that this test installed it, so that a leftover of
# an interrupted run is purged while an lhttpd installed otherwise is left alone (the
# test then refuses to run).

load ../lib/helpers
source "$BATS_TEST_DIRNAME/../lib/sdbox.sh"

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
MARKER=/var/lib/lhttpd-package-test.installed
UNITS="lhttpd.service lhttpd.socket lhttpd-admin.socket"

# installed PKG: the package is installed (or half-installed) on this machine.
installed() {
    local st
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "${st:1:1}" != n ]
}

purge_ours() {
    if installed lhttpd || installed lhttpd-dev; then
        dpkg --purge lhttpd-dev lhttpd >"$PKG_OUT/purge-teardown.log" 2>&1 || true
    fi
    rm -f "$MARKER"
}

# build NAME CMD...: runs a package build in the background, its output in NAME.log.
build() {
    local name=$1
    shift
    "$@" >"$PKG_OUT/$name.log" 2>&1 </dev/null 3>&- &
    eval "BUILD_PID_$name=\$!"
}

# built NAME: waits for the build NAME; on failure shows the end of its log.
built() {
    local pid
    eval "pid=\$BUILD_PID_$1"
    wait "$pid" && return 0
    echo "--- the $1 build failed; the end of $PKG_OUT/$1.log:" >&2
    tail -n 40 "$PKG_OUT/$1.log" >&2
    return 1
}

setup_file() {
    local t missing=
    if [ "$(id -u)" != 0 ]; then
        echo "package.bats must run as root: it installs the .deb on this machine" >&2
        return 1
    fi
    for t in dpkg-buildpackage dh lintian rpmbuild rpmlint systemd-socket-activate setpriv \
        unshare nsenter nats-server systemd-sysusers; do
        command -v "$t" >/dev/null || missing="$missing $t"
    done
    if [ -n "$missing" ]; then
        echo "package.bats: missing commands:$missing (make deps installs them)" >&2
        return 1
    fi
    PKG_OUT=${B:-$REPO/build}/package-test
    rm -rf "$PKG_OUT"
    mkdir -p "$PKG_OUT"
    export PKG_OUT
    if installed lhttpd || installed lhttpd-dev; then
        if [ ! -e "$MARKER" ]; then
            echo "lhttpd is installed on this machine, not by this test: remove it first" >&2
            return 1
        fi
        echo "# purging the lhttpd an interrupted run of this test left installed" >&3
        purge_ours
    fi

    VERSION=$(tr -d ' \n' <"$REPO/VERSION")
    VERSION2=$VERSION+up1
    ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
    export VERSION VERSION2 ARCH
    # Revision 1 runs the unit tests during its build, as a distribution build would.
    build deb1 env LH_DEB_REVISION=1 "$REPO/packaging/build-deb.sh" "$PKG_OUT/deb1"
    build deb2 env LH_DEB_REVISION=1 LH_PKG_VERSION="$VERSION2" DEB_BUILD_OPTIONS=nocheck \
        "$REPO/packaging/build-deb.sh" "$PKG_OUT/deb2"
    build rpm env LH_RPMBUILD_OPTS=--nocheck "$REPO/packaging/build-rpm.sh" "$PKG_OUT/rpm"
    built deb1 && built deb2 && built rpm || return 1
    DEB1=$PKG_OUT/deb1/lhttpd_${VERSION}-1_$ARCH.deb
    DEV1=$PKG_OUT/deb1/lhttpd-dev_${VERSION}-1_all.deb
    DEB2=$PKG_OUT/deb2/lhttpd_${VERSION2}-1_$ARCH.deb
    DEV2=$PKG_OUT/deb2/lhttpd-dev_${VERSION2}-1_all.deb
    RPM=$(ls "$PKG_OUT"/rpm/RPMS/*/lhttpd-"$VERSION"-*.rpm)
    RPM_DEVEL=$(ls "$PKG_OUT"/rpm/RPMS/noarch/lhttpd-devel-*.rpm)
    export DEB1 DEV1 DEB2 DEV2 RPM RPM_DEVEL

    # A directory the user lhttpd can read (bats' own are private to root).
    WORK=$(mktemp -d /tmp/lhttpd-package-test.XXXXXX)
    chmod 0755 "$WORK"
    BOX=$WORK/box
    mkdir -p "$BOX"
    chmod 0755 "$BOX"
    export WORK BOX
    SDBOX_OWNER=$$ sdbox_start "$BOX" || return 1
    # Tests run in processes of their own: this file says the box still runs, so that
    # teardown_file stops it only if the upgrade test did not (by pid: never twice).
    touch "$WORK/box-running"
    # A container's policy-rc.d (exit 101) forbids maintainer scripts to start or
    # restart services. Inside the box only, allow them, as on a real system.
    if [ -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 0\n' >"$BOX/policy-rc.d"
        chmod 0755 "$BOX/policy-rc.d"
        sdbox mount --bind /run/sdbox/policy-rc.d /usr/sbin/policy-rc.d
    fi
}

teardown_file() {
    if [ -n "${WORK:-}" ] && [ -e "$WORK/box-running" ]; then sdbox_stop; fi
    [ -n "${PKG_OUT:-}" ] && purge_ours
    [ -n "${WORK:-}" ] && rm -rf "$WORK"
    return 0
}

teardown() {
    stop_all
    if [ -z "${BATS_TEST_COMPLETED:-}" ] && [ -n "${SDBOX_PID:-}" ] &&
        [[ $BATS_TEST_DESCRIPTION == "under systemd"* ]]; then
        {
            echo "--- systemctl status:"
            sdbox systemctl status --no-pager -l $UNITS 2>&1 | tail -n 40
            echo "--- journalctl:"
            sdbox journalctl --no-pager -n 60 -u lhttpd.service -u lhttpd.socket \
                -u lhttpd-admin.socket 2>&1
        } >&2
    fi
}

# fail MESSAGE: fails the test with MESSAGE on stderr.
fail() {
    echo "$*" >&2
    return 1
}

# show_fail: fails the test showing the last `run`'s status and output.
show_fail() {
    lh_show_output
    return 1
}

# --- the box ------------------------------------------------------------------------

box_active() { [ "$(sdbox systemctl is-active "$1" 2>/dev/null)" = active ]; }
box_prop() { sdbox systemctl show -p "$2" --value "$1"; }

# box_subscribe NAME: `lhttpc subscribe news` in the box against lhttpd.socket's port,
# printing every message as JSON into $BOX/NAME.out (with lhttpc's notes); sets SUB_PID
# to its host pid. It ends with the box at the latest (sdbox_stop).
box_subscribe() {
    sdbox_bg "$BOX/$1.out" lhttpc -q --format json ws://127.0.0.1:8081/ subscribe news || return 1
    SUB_PID=$SDBOX_BG_PID
}

# delivered_in_box NAME BODY: publishes BODY on "news" from a second client in the box;
# true once the subscriber NAME has printed it (so: call it under wait_for, which
# publishes again until the subscription is in place).
delivered_in_box() {
    sdbox lhttpc -q -w 3000 ws://127.0.0.1:8081/ publish news -d "$2" >/dev/null 2>&1 || true
    grep -qF "\"body\":\"$2\"" "$BOX/$1.out"
}

# --- the tests, in order ------------------------------------------------------------

@test "the version comes from VERSION: the .debs, the .rpm, debian/changelog, the spec" {
    [ "$(dpkg-deb -f "$DEB1" Version)" = "$VERSION-1" ]
    [ "$(dpkg-deb -f "$DEV1" Version)" = "$VERSION-1" ]
    [ "$(dpkg-deb -f "$DEB2" Version)" = "$VERSION2-1" ]
    [ "$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$RPM")" = "$VERSION-1" ]
    [ "$(rpm -qp --qf '%{VERSION}' "$RPM_DEVEL")" = "$VERSION" ]
    head -n 1 "$PKG_OUT/deb1/lhttpd-$VERSION/debian/changelog" | grep -qF "lhttpd ($VERSION-1)"
    grep -qx "Version: *$VERSION" "$PKG_OUT/rpm/SPECS/lhttpd.spec"
    # Nothing under packaging/ names a version of its own.
    if grep -rnF --exclude=lhttpd.spec -e "$VERSION" "$REPO/packaging/debian" "$REPO/packaging/rpm"; then
        fail "a version is written under packaging/ (it must come from VERSION)"
    fi
    grep -qx 'Version: *@VERSION@' "$REPO/packaging/rpm/lhttpd.spec"
}

@test "lintian: no errors and no warnings on the source and binary packages" {
    run lintian --fail-on error,warning --tag-display-limit 0 \
        "$PKG_OUT/deb1/lhttpd_${VERSION}-1_$ARCH.changes"
    printf '%s\n' "$output" | sed 's/^/# lintian: /' >&3
    [ "$status" -eq 0 ] || show_fail
    if printf '%s\n' "$output" | grep -qE '^[EW]: '; then fail "lintian: errors or warnings"; fi
}

@test "the build is hardened: PIE, full RELRO, stack protector, fortified functions" {
    local x=$WORK/deb1-files f
    mkdir -p "$x"
    dpkg-deb -x "$DEB1" "$x"
    for f in usr/sbin/lhttpd usr/bin/lhttpc usr/bin/lhttp-bench; do
        readelf -hW "$x/$f" | grep -q 'Type: *DYN' || fail "$f is not PIE"
        readelf -lW "$x/$f" | grep -q GNU_RELRO || fail "$f has no RELRO"
        readelf -dW "$x/$f" | grep -q BIND_NOW || fail "$f is not bound now"
        nm -D "$x/$f" | grep -q __stack_chk_fail || fail "$f has no stack protector"
        nm -D "$x/$f" | grep -qE '__[a-z_]+_chk' || fail "$f calls no fortified function"
    done
    for f in "$x"/usr/lib/lhttpd/modules/*.so; do
        readelf -dW "$f" | grep -q BIND_NOW || fail "$f is not bound now"
    done
}

@test "dpkg -i installs both packages and creates the system user lhttpd with sysusers" {
    local had_user=no entry uid
    getent passwd lhttpd >/dev/null && had_user=yes
    touch "$MARKER"
    run dpkg -i "$DEB1" "$DEV1"
    [ "$status" -eq 0 ] || show_fail
    installed lhttpd && installed lhttpd-dev
    # The user: a system uid, no home, no login.
    entry=$(getent passwd lhttpd) || fail "no user lhttpd after dpkg -i"
    IFS=: read -r _ _ uid _ _ home shell <<<"$entry"
    [ "$uid" -lt 1000 ] && [ "$home" = /nonexistent ] && [ "$shell" = /usr/sbin/nologin ] ||
        fail "user lhttpd is not a system user without login: $entry"
    getent group lhttpd >/dev/null
    # Created the Debian way: the postinst applies the package's sysusers.d file...
    dpkg-deb --ctrl-tarfile "$DEB1" | tar -xOf - ./postinst |
        grep -q 'systemd-sysusers .*lhttpd\.conf'
    # ...which creates the user on a system that has none (the host may have had one
    # already, from an earlier test).
    mkdir -p "$WORK/sysroot/etc"
    systemd-sysusers --root="$WORK/sysroot" /usr/lib/sysusers.d/lhttpd.conf 2>/dev/null
    grep -q '^lhttpd:x:[0-9]*:[0-9]*:[^:]*:/nonexistent:/usr/sbin/nologin$' "$WORK/sysroot/etc/passwd"
    echo "# user lhttpd: $entry (existed before the install: $had_user)" >&3
}

@test "files are where the package says, the units are enabled, the header compiles" {
    local f
    # Every path dpkg records exists, with the checksums it records.
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        [ -e "$f" ] || [ -L "$f" ] || fail "dpkg -L lists $f, which does not exist"
    done < <(dpkg -L lhttpd lhttpd-dev)
    run dpkg --verify lhttpd lhttpd-dev
    [ "$status" -eq 0 ] && [ -z "$output" ] || show_fail
    # The layout operators expect.
    for f in /usr/sbin/lhttpd /usr/bin/lhttpc /usr/bin/lhttp-bench; do [ -x "$f" ]; done
    for f in $UNITS; do [ -f "/lib/systemd/system/$f" ]; done
    for f in /usr/lib/sysusers.d/lhttpd.conf /usr/include/lhttpd/lhttpd.h \
        /usr/share/man/man8/lhttpd.8.gz /usr/share/man/man1/lhttpc.1.gz \
        /usr/share/man/man1/lhttp-bench.1.gz \
        /usr/share/man/man5/lhttpd.json.5.gz /usr/share/doc/lhttpd/copyright \
        /usr/share/doc/lhttpd/README.Debian /usr/share/doc/lhttpd/PROTOCOL.md.gz; do
        [ -f "$f" ] || fail "missing $f"
    done
    ls /usr/lib/lhttpd/modules/*.so >/dev/null
    # The configuration is a conffile.
    dpkg-query -W -f='${Conffiles}\n' lhttpd | grep -q '^ /etc/lhttpd/lhttpd.json '
    [ "$(/usr/sbin/lhttpd --version)" = "lhttpd $VERSION" ]
    [ "$(/usr/bin/lhttp-bench --version)" = "lhttp-bench $VERSION" ]
    # Enabled on install: the service and both sockets.
    [ -L /etc/systemd/system/multi-user.target.wants/lhttpd.service ]
    [ -L /etc/systemd/system/sockets.target.wants/lhttpd.socket ]
    [ -L /etc/systemd/system/sockets.target.wants/lhttpd-admin.socket ]
    # The module header, as <lhttpd/lhttpd.h>, on its own.
    printf '#include <lhttpd/lhttpd.h>\nint main(void) { return LH_API_VERSION > 0 ? 0 : 1; }\n' |
        cc -std=c11 -Wall -Werror -x c -o "$WORK/api" -
}

@test "lhttpd -t accepts the installed configuration, read as the user lhttpd" {
    run /usr/sbin/lhttpd -t -c /etc/lhttpd/lhttpd.json
    [ "$status" -eq 0 ] || show_fail
    [ "$output" = "lhttpd: configuration /etc/lhttpd/lhttpd.json is valid" ] || show_fail
    run setpriv --reuid=lhttpd --regid=lhttpd --init-groups -- /usr/sbin/lhttpd -t
    [ "$status" -eq 0 ] || show_fail
}

@test "systemd-analyze verify accepts the installed units (with their man pages)" {
    run systemd-analyze verify /lib/systemd/system/lhttpd.service \
        /lib/systemd/system/lhttpd.socket /lib/systemd/system/lhttpd-admin.socket
    [ "$status" -eq 0 ] && [ -z "$output" ] || show_fail
}

@test "started as systemd starts it (socket activation, user lhttpd), the installed lhttpd serves pub/sub" {
    local conf=$WORK/lhttpd.json port try master p i
    start_nats
    mkdir -p "$WORK/run"
    chown lhttpd:lhttpd "$WORK/run"
    # The installed configuration, pointed at this test's NATS and control socket.
    sed -e "s#\"nats://127.0.0.1:4222\"#\"nats://127.0.0.1:$NATS_PORT\"#" \
        -e "s#\"/run/lhttpd/lhttpd.sock\"#\"$WORK/run/lhttpd.sock\"#" \
        /etc/lhttpd/lhttpd.json >"$conf"
    grep -q "$NATS_PORT" "$conf" && grep -q "$WORK/run/lhttpd.sock" "$conf" ||
        fail "the installed configuration no longer names the default NATS or control socket"
    chmod 0644 "$conf"
    for try in 1 2 3 4 5; do
        port=$(free_port)
        LH_PORTS_TAKEN="$LH_PORTS_TAKEN $port"
        # root binds the socket, the service runs unprivileged: as systemd does it.
        systemd-socket-activate -l "127.0.0.1:$port" --fdname=public \
            setpriv --reuid=lhttpd --regid=lhttpd --init-groups --inh-caps=-all -- \
            /usr/sbin/lhttpd -c "$conf" >"$WORK/activated.log" 2>&1 3>&- &
        master=$!
        lh_record "$master"
        wait_for 5 listening_by "$port" "$master" && break
        lh_stop_pid "$master"
        grep -qi 'address already in use' "$WORK/activated.log" || {
            cat "$WORK/activated.log" >&2
            return 1
        }
    done
    # The first client starts it; a second one publishes until the first one has it.
    /usr/bin/lhttpc -q --format json "ws://127.0.0.1:$port/" subscribe news >"$WORK/sub.out" 2>&1 3>&- &
    lh_record $!
    published() {
        /usr/bin/lhttpc -q -w 3000 "ws://127.0.0.1:$port/" publish news -d "$1" >/dev/null 2>&1 || true
        grep -qF "\"body\":\"$1\"" "$WORK/sub.out"
    }
    wait_for 15 published hello-from-the-package || {
        cat "$WORK/sub.out" "$WORK/activated.log" >&2
        return 1
    }
    # The master (socket-activate exec'd into setpriv, then lhttpd) and its workers run
    # as lhttpd, from the installed binary, with the socket systemd-socket-activate bound.
    [ "$(ps -o user= -p "$master")" = lhttpd ]
    [ "$(readlink "/proc/$master/exe")" = /usr/sbin/lhttpd ]
    i=0
    for p in $(lh_descendants "$master"); do
        [ "$(ps -o user= -p "$p")" = lhttpd ] || fail "worker $p does not run as lhttpd"
        i=$((i + 1))
    done
    [ "$i" -ge 1 ]
    grep -q 'using public socket fd 3 from systemd' "$WORK/activated.log"
    # The installed load generator measures the installed server: every delivery arrives
    # (200 messages on 2 channels of 50 subscribers each).
    run timeout 60 /usr/bin/lhttp-bench -q -u "ws://127.0.0.1:$port/" -n 100 -c 2 -m 200 -w 50
    [ "$status" -eq 0 ] || show_fail
    [[ $output == *" expected=10000 delivered=10000 "*" complete=1"* ]] || show_fail
}

@test "under systemd: enable --now lhttpd.socket, a client connects, systemctl reload keeps it" {
    local main
    sdbox systemctl daemon-reload
    sdbox systemctl start nats-server.service
    run sdbox systemctl enable --now lhttpd.socket
    [ "$status" -eq 0 ] || show_fail
    box_active lhttpd.socket
    # Socket activation: nothing runs before the first client.
    if box_active lhttpd.service; then fail "lhttpd.service runs before any client came"; fi
    box_subscribe first
    echo "$SUB_PID" >"$WORK/first.pid"
    wait_for 20 box_active lhttpd.service
    wait_for 15 delivered_in_box first before-reload || fail "$(cat "$BOX/first.out")"
    main=$(box_prop lhttpd.service MainPID)
    [ "$main" -gt 0 ]
    echo "$main" >"$WORK/main-before"
    [ "$(sdbox readlink "/proc/$main/exe")" = /usr/sbin/lhttpd ]

    run sdbox systemctl reload lhttpd.service
    [ "$status" -eq 0 ] || show_fail
    # The same master, a new generation; the client stays on its (draining) worker and
    # still gets what is published.
    [ "$(box_prop lhttpd.service MainPID)" = "$main" ]
    run sdbox lhttpd -s status
    [[ $output == *"generation 2;"*"reloads 1 ok"* ]] || show_fail
    wait_for 15 delivered_in_box first after-reload || fail "$(cat "$BOX/first.out")"
    lh_alive "$SUB_PID"
    if grep -q 'closed' "$BOX/first.out"; then fail "$(cat "$BOX/first.out")"; fi
}

# box_build_version: the version lhttpd_build_info shows on the admin socket.
box_build_version() {
    sdbox curl -s --max-time 5 http://127.0.0.1:9081/metrics |
        sed -nE 's/^lhttpd_build_info\{version="([^"]*)"\} 1$/\1/p'
}

@test "under systemd: an upgrade to the next version runs it in place: same MainPID, no client closed, build_info shows it; the sockets keep listening" {
    local first main_before sock_before admin_before probe pool start_before
    first=$(cat "$WORK/first.pid")
    main_before=$(cat "$WORK/main-before")
    lh_alive "$first" || fail "the client of the previous test is gone: $(cat "$BOX/first.out")"
    sock_before=$(box_prop lhttpd.socket ActiveEnterTimestampMonotonic)
    admin_before=$(box_prop lhttpd-admin.socket ActiveEnterTimestampMonotonic)
    start_before=$(box_prop lhttpd.service ExecMainStartTimestampMonotonic)
    [ "$(box_build_version)" = "$VERSION" ]
    # 300 clients subscribed and receiving through the upgrade (the issue's 1,000 would
    # only make the test slower: the path is the same for each).
    cp "$LH_LIB/wspool.py" "$BOX/"
    sdbox_bg "$BOX/pool.out" /usr/bin/python3 /run/sdbox/wspool.py --clients 300 \
        --channels 4 --rate 50 --publish --timeout 60 8081
    pool=$SDBOX_BG_PID
    wait_for 60 grep -qE '^publishing|^connect-failed|^sync-failed|Traceback' "$BOX/pool.out"
    grep -q '^publishing' "$BOX/pool.out" || fail "$(cat "$BOX/pool.out")"
    cp "$DEB2" "$DEV2" "$BOX/"
    # New connections all through the upgrade: none may be refused or dropped.
    cp "$BATS_TEST_DIRNAME/connect_probe.py" "$BOX/"
    sdbox_bg "$BOX/probe.out" /usr/bin/python3 /run/sdbox/connect_probe.py 8081 \
        /run/sdbox/probe.stop 60
    probe=$SDBOX_BG_PID
    run sdbox dpkg -i --force-confold "/run/sdbox/$(basename "$DEB2")" "/run/sdbox/$(basename "$DEV2")"
    [ "$status" -eq 0 ] || show_fail
    [ "$(dpkg-query -W -f='${Version}' lhttpd)" = "$VERSION2-1" ]
    [[ $output == *"upgraded lhttpd $VERSION -> $VERSION2 (pid $main_before)"* ]] || show_fail
    # The same process, not restarted, now running the installed binary.
    box_active lhttpd.service
    [ "$(box_prop lhttpd.service MainPID)" = "$main_before" ]
    [ "$(box_prop lhttpd.service ExecMainStartTimestampMonotonic)" = "$start_before" ]
    [ "$(box_prop lhttpd.service NRestarts)" = 0 ]
    [ "$(sdbox readlink "/proc/$main_before/exe")" = /usr/sbin/lhttpd ]
    [ "$(box_build_version)" = "$VERSION2" ]
    run sdbox lhttpd -s status
    [[ $output == *$'\n'"binary lhttpd $VERSION2 (/usr/sbin/lhttpd); upgrades 1 ok, 0 failed"$'\n'* ]] || show_fail
    # The sockets were not restarted: they kept listening through the upgrade.
    [ "$(box_prop lhttpd.socket ActiveEnterTimestampMonotonic)" = "$sock_before" ]
    [ "$(box_prop lhttpd-admin.socket ActiveEnterTimestampMonotonic)" = "$admin_before" ]
    if sdbox journalctl --no-pager -u lhttpd.socket -u lhttpd-admin.socket | grep -E 'Failed|Closed'; then
        fail "a socket unit was closed or failed during the upgrade"
    fi
    touch "$BOX/probe.stop"
    wait_for 15 lh_gone "$probe"
    grep -q '^served [1-9][0-9]* failed 0$' "$BOX/probe.out" || fail "$(cat "$BOX/probe.out")"
    echo "# connections during the upgrade: $(head -n 1 "$BOX/probe.out")" >&3
    # Nobody was closed: the subscriber of the previous tests still gets what is published,
    # and the pool's 300 clients are all open with nothing missing.
    lh_alive "$first"
    wait_for 15 delivered_in_box first after-upgrade || fail "$(cat "$BOX/first.out")"
    if grep -q 'closed' "$BOX/first.out"; then fail "$(cat "$BOX/first.out")"; fi
    kill -USR1 "$pool"
    wait_for 40 lh_gone "$pool"
    grep -qx 'open 300 closed 0' "$BOX/pool.out" || fail "$(cat "$BOX/pool.out")"
    grep -qx 'missing 0' "$BOX/pool.out" || fail "$(cat "$BOX/pool.out")"
    # A new client meets the new generation.
    box_subscribe again
    wait_for 15 delivered_in_box again after-upgrade-2 || fail "$(cat "$BOX/again.out")"
    [ "$(sdbox curl -s --max-time 5 http://127.0.0.1:9081/livez -o /dev/null -w '%{http_code}')" = 200 ]
    sdbox_stop
    rm -f "$WORK/box-running"
}

@test "dpkg --purge removes everything but the user lhttpd" {
    local listed=$WORK/listed f
    dpkg -L lhttpd lhttpd-dev >"$listed"
    run dpkg --purge lhttpd-dev lhttpd
    [ "$status" -eq 0 ] || show_fail
    if installed lhttpd || installed lhttpd-dev; then fail "still installed after the purge"; fi
    rm -f "$MARKER"
    # Every file is gone; a directory stays only when another package owns it.
    while IFS= read -r f; do
        case $f in '' | /.) continue ;; esac
        [ -e "$f" ] || [ -L "$f" ] || continue
        # (A symlinked directory, such as merged-/usr's /lib, is the system's.)
        if [ -d "$f" ] && { [ -L "$f" ] || dpkg-query -S "$f" >/dev/null 2>&1; }; then
            continue
        fi
        fail "left after the purge: $f"
    done <"$listed"
    [ ! -e /etc/lhttpd ]
    [ -z "$(find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled \
        /var/lib/systemd/deb-systemd-helper-masked -name '*lhttpd*' 2>/dev/null)" ]
    # Debian keeps system users: files may still belong to them.
    getent passwd lhttpd >/dev/null
}

@test "rpm: the package holds the .deb's files, at the RPM distributions' paths, config(noreplace)" {
    local deb_files rpm_files
    # Regular files and symlinks, documentation aside (each distribution has its own).
    deb_files=$({ dpkg-deb -c "$DEB1" && dpkg-deb -c "$DEV1"; } | awk '$1 !~ /^d/ { print $6 }' |
        sed -e 's#^\./#/#' -e 's#^/lib/systemd/#/usr/lib/systemd/#' \
            -e 's#^/usr/lib/lhttpd/#/usr/lib64/lhttpd/#' -e 's#\.gz$##' |
        grep -v -e '^/usr/share/doc/' -e '^/usr/share/lintian/' | sort)
    rpm_files=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$RPM" "$RPM_DEVEL" |
        awk '$1 !~ /^d/ { print $2 }' | sed 's#\.gz$##' |
        grep -v -e '^/usr/share/doc/' -e '^/usr/lib/\.build-id/' | sort)
    [ "$deb_files" = "$rpm_files" ] || {
        diff <(echo "$deb_files") <(echo "$rpm_files") >&2
        return 1
    }
    echo "$(echo "$rpm_files" | wc -l) files" | sed 's/^/# rpm -qpl: /' >&3
    # The configuration: config, noreplace.
    rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" | grep -qx 'cn /etc/lhttpd/lhttpd.json'
    rpm -qpl "$RPM_DEVEL" | grep -qx /usr/include/lhttpd/lhttpd.h
    # The dependencies cnats and the others bring come from the binaries' sonames.
    rpm -qpR "$RPM" | grep -q '^libnats\.so'
}

@test "rpm: the scriptlets create the user, run the systemd macros and upgrade in place (a restart of lhttpd.service alone only as the fallback)" {
    run rpm -qp --scripts "$RPM"
    [ "$status" -eq 0 ] || show_fail
    printf '%s\n' "$output" >"$WORK/rpm-scripts"
    grep -q '^preinstall scriptlet' "$WORK/rpm-scripts"
    grep -q 'useradd -r -g lhttpd -d /nonexistent -s /sbin/nologin' "$WORK/rpm-scripts"
    grep -q 'systemctl --no-reload preset lhttpd.socket lhttpd-admin.socket lhttpd.service' "$WORK/rpm-scripts"
    grep -q 'systemctl --no-reload disable --now lhttpd.service lhttpd.socket lhttpd-admin.socket' "$WORK/rpm-scripts"
    grep -q 'try-restart lhttpd.service' "$WORK/rpm-scripts"
    grep -q '^posttrans scriptlet' "$WORK/rpm-scripts"
    grep -q '/usr/sbin/lhttpd -s upgrade -c /etc/lhttpd/lhttpd.json' "$WORK/rpm-scripts"
    # No unconditional restart after an upgrade.
    if grep -q 'systemd_postun_with_restart\|systemctl try-restart lhttpd.service >/dev/null 2>&1 || :' "$WORK/rpm-scripts"; then
        fail "an upgrade would restart the service"
    fi
    if grep -E 'try-restart .*lhttpd(-admin)?\.socket' "$WORK/rpm-scripts"; then
        fail "an upgrade would restart a socket unit"
    fi
    # The user of %pre is the one the sysusers.d file (also packaged) describes.
    rpm -qpl "$RPM" | grep -qx /usr/lib/sysusers.d/lhttpd.conf
    grep -q '^u lhttpd - "[^"]*" /nonexistent /usr/sbin/nologin$' "$REPO/packaging/debian/lhttpd.sysusers"
}

@test "rpmlint: no errors on the binary and source packages and the spec" {
    run rpmlint -c "$REPO/packaging/rpm/rpmlint.toml" "$RPM" "$RPM_DEVEL" \
        "$PKG_OUT"/rpm/SRPMS/*.src.rpm "$PKG_OUT/rpm/SPECS/lhttpd.spec"
    printf '%s\n' "$output" | grep -E ': [EW]: |checked;' | sed 's/^/# rpmlint: /' >&3
    [[ $output == *" 0 errors,"* ]] || show_fail
}
