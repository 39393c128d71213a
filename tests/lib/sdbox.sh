#!/usr/bin/env bash
# sdbox: a throwaway systemd booted as PID 1 of fresh namespaces (pid, mount, net, uts,
# ipc), for tests that need real `systemctl`, socket activation, Type=notify, hardening
# directives and journald on a machine whose PID 1 is not systemd. The recipe and its
# pitfalls: shared/SYSTEMD-TESTING.md. In short, before systemd starts, the box gets
# private tmpfs on /run, /tmp and /var/tmp and every unit that sysinit.target,
# sockets.target and timers.target pull in is masked (journald excepted): otherwise the
# first service started runs systemd-tmpfiles-setup.service, which empties the HOST's
# /tmp (the mount namespace hides mounts, not files), and systemd-sysctl.service, which
# writes host kernel settings.
#
# The box sees the host's /, /etc, /lib and /work; its /run, /tmp, /var/tmp and its
# loopback are its own. A host directory given to sdbox_start appears inside as
# /run/sdbox (to hand it files and read its outputs).
#
# As a library (source it):
#   sdbox_start DIR       boot; DIR (host) becomes /run/sdbox inside; sets SDBOX_PID (the
#                         box's systemd, as the host sees it); waits until it runs
#   sdbox CMD...          run CMD inside (nsenter), in the foreground
#   sdbox_bg OUT CMD...   run CMD inside in the background, stdout+stderr to the host
#                         file OUT; sets SDBOX_BG_PID (CMD's host pid, to signal it)
#   sdbox_stop            kill -9 the box's PID 1 (ends everything inside), by pid
# As a command, for a look by hand: tests/lib/sdbox.sh run CMD... boots a box, runs CMD
# inside (default: a shell), and stops the box when CMD ends (also on failure).
#
# Needs root, unshare and nsenter (util-linux), systemd (/lib/systemd/systemd), iproute2.

SDBOX_PID=${SDBOX_PID:-}
SDBOX_DIR=${SDBOX_DIR:-}
SDBOX_GUARD=${SDBOX_GUARD:-}

# The script PID 1 runs before systemd: $1 is the host directory to show as /run/sdbox.
# Every mount happens in the box's own mount namespace (propagation private).
SDBOX_INIT='
set -eu
share=$1
mount -t tmpfs -o mode=0755,nosuid,nodev sdbox-run /run
mkdir -p /run/sdbox /run/systemd/system
mount --bind "$share" /run/sdbox
mount -t tmpfs -o mode=1777,nosuid,nodev sdbox-tmp /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev sdbox-vartmp /var/tmp
for d in /lib/systemd/system /usr/lib/systemd/system /etc/systemd/system; do
    for t in sysinit sockets timers; do
        for u in "$d/$t.target.wants"/*; do
            [ -e "$u" ] || [ -L "$u" ] || continue
            n=${u##*/}
            case $n in
            systemd-journald.service | systemd-journald.socket | systemd-journald-dev-log.socket) ;;
            *) ln -sf /dev/null "/run/systemd/system/$n" ;;
            esac
        done
    done
done
printf "[Unit]\nDescription=sdbox: a throwaway systemd for tests\n" >/run/systemd/system/sdbox.target
ip link set lo up
exec /lib/systemd/systemd --system --unit=sdbox.target
'

# sdbox CMD...: runs CMD in the box (all its namespaces), in the foreground.
sdbox() {
    nsenter -t "$SDBOX_PID" -m -p -n -u -i -- "$@"
}

# sdbox_running: true when the box's systemd reports running or degraded.
sdbox_running() {
    local st
    st=$(sdbox systemctl is-system-running 2>/dev/null) || true
    [ "$st" = running ] || [ "$st" = degraded ]
}

# sdbox_start DIR: boots a box with DIR shown as /run/sdbox. Returns 1 (with the box's
# output) when it does not come up within 15 s.
sdbox_start() {
    local dir=$1 unshare_pid i st
    [ -d "$dir" ] || { echo "sdbox_start: no directory $dir" >&2; return 1; }
    SDBOX_DIR=$(cd "$dir" && pwd)
    setsid unshare --fork --pid --mount --uts --ipc --net --mount-proc --propagation private \
        /bin/sh -c "$SDBOX_INIT" sdbox-init "$SDBOX_DIR" \
        </dev/null >"$SDBOX_DIR/sdbox-console.log" 2>&1 3>&- &
    unshare_pid=$!
    # The box's PID 1 is unshare's child.
    SDBOX_PID=
    for i in $(seq 200); do
        SDBOX_PID=$(ps -o pid= --ppid "$unshare_pid" 2>/dev/null | tr -d ' ' | head -n 1)
        [ -n "$SDBOX_PID" ] && break
        kill -0 "$unshare_pid" 2>/dev/null || break
        sleep 0.01
    done
    if [ -z "$SDBOX_PID" ]; then
        echo "sdbox_start: the box did not start:" >&2
        cat "$SDBOX_DIR/sdbox-console.log" >&2
        return 1
    fi
    export SDBOX_PID SDBOX_DIR
    # Should the caller die without stopping the box (SIGKILL), do it for them.
    # In a session of its own, so that killing the caller's process group spares it.
    setsid bash -c 'trap "" HUP INT TERM
        while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
        kill -9 "$2" 2>/dev/null' sdbox-guard "${SDBOX_OWNER:-$$}" "$SDBOX_PID" \
        </dev/null >/dev/null 2>&1 3>&- &
    SDBOX_GUARD=$!
    for i in $(seq 750); do
        sdbox_running && return 0
        kill -0 "$SDBOX_PID" 2>/dev/null || break
        sleep 0.02
    done
    st=$(sdbox systemctl is-system-running 2>&1) || true
    echo "sdbox_start: the box's systemd is not running ($st):" >&2
    cat "$SDBOX_DIR/sdbox-console.log" >&2
    sdbox systemctl --failed --no-pager >&2 || true
    sdbox_stop
    return 1
}

# sdbox_bg OUT CMD...: runs CMD in the box in the background, its output in the host file
# OUT. Sets SDBOX_BG_PID to CMD's pid as the host sees it (nsenter forks to enter the pid
# namespace: CMD is its child).
sdbox_bg() {
    local out=$1 ns_pid i
    shift
    nsenter -t "$SDBOX_PID" -m -p -n -u -i -- "$@" </dev/null >"$out" 2>&1 3>&- &
    ns_pid=$!
    SDBOX_BG_PID=
    for i in $(seq 200); do
        SDBOX_BG_PID=$(ps -o pid= --ppid "$ns_pid" 2>/dev/null | tr -d ' ' | head -n 1)
        [ -n "$SDBOX_BG_PID" ] && return 0
        kill -0 "$ns_pid" 2>/dev/null || break
        sleep 0.01
    done
    echo "sdbox_bg: $* did not start" >&2
    return 1
}

# sdbox_stop: ends the box: SIGKILL to its PID 1 ends every process in its pid namespace.
sdbox_stop() {
    if [ -n "$SDBOX_PID" ]; then
        kill -9 "$SDBOX_PID" 2>/dev/null || true
        for _ in $(seq 250); do
            kill -0 "$SDBOX_PID" 2>/dev/null || break
            sleep 0.02
        done
    fi
    if [ -n "$SDBOX_GUARD" ]; then
        kill "$SDBOX_GUARD" 2>/dev/null || true
        wait "$SDBOX_GUARD" 2>/dev/null || true
    fi
    SDBOX_PID= SDBOX_GUARD=
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -u
    case ${1:-} in
    run)
        shift
        dir=$(mktemp -d)
        chmod 0755 "$dir"
        trap 'sdbox_stop; rm -rf "$dir"' EXIT
        sdbox_start "$dir" || exit 1
        echo "sdbox: systemd runs as host pid $SDBOX_PID; $dir is /run/sdbox inside" >&2
        if [ $# -eq 0 ]; then set -- /bin/bash; fi
        sdbox "$@"
        ;;
    *)
        echo "usage: $0 run [CMD...]   (or source it: see the comment at its top)" >&2
        exit 2
        ;;
    esac
fi
