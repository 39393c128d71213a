# Shared helpers for lhttpd's bats integration tests. Load with
#   load ../lib/helpers
# Every process a test starts is recorded here by pid and stopped by stop_all (call it
# from teardown / teardown_file). Ports are picked at random on 127.0.0.1 and probed;
# waits poll a condition against a deadline, never a fixed sleep.
#
# Environment from tests/run.sh: LHTTPD, LHTTPC, B, LH_TEST_OUT.

# `run ! cmd` (a negation that fails the test) needs bats 1.5.
bats_require_minimum_version 1.5.0

LH_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Debian's python has python3-websockets; the python3 on PATH may not.
PY=/usr/bin/python3
LHTTPD=${LHTTPD:-$LH_LIB/../../build/lhttpd}
LH_PIDS=${LH_PIDS:-}          # every pid we started, in start order
LH_PORTS_TAKEN=${LH_PORTS_TAKEN:-}

# lh_tmp: the directory for this test's files (or this file's, in setup_file).
lh_tmp() {
    local d=${BATS_TEST_TMPDIR:-${BATS_FILE_TMPDIR:-${TMPDIR:-/tmp}}}
    mkdir -p "$d" && echo "$d"
}

# free_port: prints a port in 20000-60000 that 127.0.0.1 can bind right now and that no
# other helper of this test has handed out. The caller still retries if it loses a race.
free_port() {
    LH_PORTS_TAKEN=$LH_PORTS_TAKEN "$PY" - <<'EOF'
import os, random, socket, sys
taken = set(os.environ.get("LH_PORTS_TAKEN", "").split())
for _ in range(500):
    p = random.randint(20000, 60000)
    if str(p) in taken:
        continue
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    sys.exit(0)
sys.exit("free_port: no free port found")
EOF
}

# wait_for SECONDS CMD...: runs CMD until it succeeds; returns 1 after SECONDS.
wait_for() {
    local secs=$1 ms i f deadline
    shift
    case $secs in
    *.*) i=${secs%.*} f=${secs#*.}000; ms=$((${i:-0} * 1000 + 10#${f:0:3})) ;;
    *) ms=$((secs * 1000)) ;;
    esac
    deadline=$((${EPOCHREALTIME/./} / 1000 + ms))
    while :; do
        "$@" && return 0
        [ $((${EPOCHREALTIME/./} / 1000)) -ge "$deadline" ] && break
        sleep 0.02
    done
    echo "wait_for: gave up after ${secs}s: $*" >&2
    return 1
}

# lh_gone PID: true when the process has exited (or is a zombie waiting to be reaped).
lh_gone() {
    [ ! -e "/proc/$1" ] && return 0
    local st
    st=$(sed -E 's/^.*\) ([A-Z]).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 0
    [ "$st" = Z ] || [ "$st" = X ]
}

lh_alive() { ! lh_gone "$1"; }

# lh_descendants PID: the pids of every descendant of PID, one a line.
lh_descendants() {
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$c"
        lh_descendants "$c"
    done
}

# listening_by PORT PID: true when 127.0.0.1:PORT is in LISTEN state and owned by PID or
# one of its descendants (falls back to "listening and PID alive" when ss cannot show
# owners).
listening_by() {
    local port=$1 pid=$2 line p
    line=$(ss -Hltnp "sport = :$port" 2>/dev/null) || return 1
    [ -n "$line" ] || return 1
    lh_alive "$pid" || return 1
    case $line in
    *pid=*) ;;
    *) return 0 ;;
    esac
    for p in "$pid" $(lh_descendants "$pid"); do
        case $line in *"pid=$p,"*) return 0 ;; esac
    done
    return 1
}

# lh_http_answers PORT: true when an HTTP request to 127.0.0.1:PORT gets any response
# (a worker is accepting, not just the listening socket queueing).
lh_http_answers() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null)" != 000 ]
}

# lh_record PID: remembers a pid for stop_all.
lh_record() {
    LH_PIDS="$LH_PIDS $1"
    export LH_PIDS
}

# start_nats [--monitor]: starts nats-server on a free port (NATS_PORT; NATS_MON_PORT with
# --monitor), records its pid (NATS_PID) and waits until it listens. NATS_CONFIG, when
# set, is the text of a nats-server configuration file it runs with (max_payload, say).
start_nats() {
    local mon=0 try port mport log args
    [ "${1:-}" = --monitor ] && mon=1
    for try in 1 2 3 4 5; do
        port=$(free_port) || return 1
        LH_PORTS_TAKEN="$LH_PORTS_TAKEN $port"
        args=(-a 127.0.0.1 -p "$port")
        if [ $mon = 1 ]; then
            mport=$(free_port) || return 1
            LH_PORTS_TAKEN="$LH_PORTS_TAKEN $mport"
            args+=(-m "$mport")
        fi
        log=$(lh_tmp)/nats-$port.log
        if [ -n "${NATS_CONFIG:-}" ]; then
            printf '%s\n' "$NATS_CONFIG" >"$(lh_tmp)/nats-$port.conf"
            args+=(-c "$(lh_tmp)/nats-$port.conf")
        fi
        nats-server "${args[@]}" >"$log" 2>&1 3>&- &
        NATS_PID=$!
        lh_record "$NATS_PID"
        if wait_for 5 listening_by "$port" "$NATS_PID"; then
            NATS_PORT=$port NATS_LOG=$log
            [ $mon = 1 ] && NATS_MON_PORT=$mport && export NATS_MON_PORT
            export NATS_PORT NATS_PID NATS_LOG LH_PORTS_TAKEN
            return 0
        fi
        lh_stop_pid "$NATS_PID"
        grep -qi 'address already in use' "$log" || { cat "$log" >&2; return 1; }
    done
    echo "start_nats: could not start nats-server" >&2
    return 1
}

# start_lhttpd CONFIG_TEXT: writes the config (with @PORT@ replaced by a free port and
# @NATS@ by NATS_PORT, starting a nats-server first when none runs) to a file, starts
# "$LHTTPD -c FILE" with its output in a log, and waits until it listens. Sets LH_PORT,
# LH_PID, LH_LOG, LH_CONF and LH_WORKERS (the worker pids seen once it listens). Retries
# with another port when the chosen one was taken meanwhile.
start_lhttpd() {
    local text=$1 try port conf log n rest
    [ -x "$LHTTPD" ] || { echo "start_lhttpd: no server binary at $LHTTPD" >&2; return 1; }
    if [ -z "${NATS_PORT:-}" ]; then start_nats || return 1; fi
    LH_NSTARTS=$((${LH_NSTARTS:-0} + 1))
    for try in 1 2 3 4 5; do
        port=$(free_port) || return 1
        LH_PORTS_TAKEN="$LH_PORTS_TAKEN $port"
        n=$LH_NSTARTS
        conf=$(lh_tmp)/lhttpd-$n.json
        log=$(lh_tmp)/lhttpd-$n.log
        text2=${text//@PORT@/$port}
        # Every server gets its own control socket unless the test names one, so that
        # servers never share (or fight over) the default /run/lhttpd/lhttpd.sock.
        case $text2 in
        *'"control_socket"'*) ;;
        *)
            rest=${text2#*\{}
            if [[ $rest =~ ^[[:space:]]*\} ]]; then
                text2="{ \"control_socket\": \"$(lh_tmp)/ctl-$n.sock\" $rest"
            else
                text2="{ \"control_socket\": \"$(lh_tmp)/ctl-$n.sock\", $rest"
            fi
            ;;
        esac
        printf '%s\n' "${text2//@NATS@/$NATS_PORT}" >"$conf"
        "$LHTTPD" -c "$conf" >"$log" 2>&1 3>&- &
        LH_PID=$!
        lh_record "$LH_PID"
        LH_PORT=$port LH_LOG=$log LH_CONF=$conf
        export LH_PORT LH_PID LH_LOG LH_CONF LH_PORTS_TAKEN LH_NSTARTS
        if wait_for 10 listening_by "$port" "$LH_PID" &&
            wait_for 10 lh_http_answers "$port"; then
            LH_WORKERS=$(lh_descendants "$LH_PID" | tr '\n' ' ')
            export LH_WORKERS
            return 0
        fi
        lh_stop_pid "$LH_PID"
        grep -qiE 'address already in use|EADDRINUSE' "$log" || {
            echo "start_lhttpd: server did not start listening; its log:" >&2
            cat "$log" >&2
            return 1
        }
        case $text in *@PORT@*) ;; *) return 1 ;; esac
    done
    echo "start_lhttpd: could not start lhttpd" >&2
    return 1
}

# lh_stop_pid PID: SIGTERM to PID, wait up to 5 s, then SIGKILL; then SIGKILL whatever
# of its descendants (taken before the signal) is still alive. Reaps when it is our child.
lh_stop_pid() {
    local pid=$1 kids k
    if lh_gone "$pid"; then
        wait "$pid" 2>/dev/null || true
        return 0
    fi
    kids=$(lh_descendants "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    wait_for 5 lh_gone "$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    for k in $kids; do
        wait_for 2 lh_gone "$k" 2>/dev/null || kill -KILL "$k" 2>/dev/null || true
    done
    wait "$pid" 2>/dev/null || true
    return 0
}

# stop_all: stops every recorded process, newest first, and keeps the server logs in
# LH_TEST_OUT when it is set.
stop_all() {
    local pids="" p f
    for p in $LH_PIDS; do pids="$p $pids"; done
    for p in $pids; do lh_stop_pid "$p"; done
    LH_PIDS=
    if [ -n "${LH_TEST_OUT:-}" ] && [ -d "$(lh_tmp)" ]; then
        mkdir -p "$LH_TEST_OUT/integration-logs"
        for f in "$(lh_tmp)"/lhttpd-*.log; do
            [ -e "$f" ] || continue
            cp "$f" "$LH_TEST_OUT/integration-logs/$(basename "${BATS_TEST_FILENAME:-x}" .bats)-${BATS_TEST_NUMBER:-file}-$(basename "$f")"
        done
    fi
    unset NATS_PORT NATS_PID LH_PORT LH_PID
}

# --- server log ---------------------------------------------------------------

# server_log: prints the log of the last lhttpd started.
server_log() { cat "$LH_LOG"; }

# log_has REGEX: true when the server log has a line matching the extended regex.
log_has() { grep -qE -- "$1" "$LH_LOG"; }

# wait_log REGEX [SECONDS]: waits until the server log has a line matching REGEX.
wait_log() { wait_for "${2:-5}" log_has "$1"; }

# --- clients --------------------------------------------------------------------

# probe STEP...: wsprobe.py against the last lhttpd started (options may be mixed in).
probe() { "$PY" "$LH_LIB/wsprobe.py" "$LH_PORT" "$@"; }

# wsclient PATH STEP...: the python websockets client against ws://127.0.0.1:LH_PORT/PATH
# (wsclient.py options such as --subprotocol may be mixed in with the steps).
wsclient() {
    local path=$1
    shift
    "$PY" "$LH_LIB/wsclient.py" "ws://127.0.0.1:$LH_PORT$path" "$@"
}

# http_status PATH [CURL_ARGS...]: prints the HTTP status code curl gets for PATH.
http_status() {
    local path=$1
    shift
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "http://127.0.0.1:$LH_PORT$path"
}

# --- assertions on bats' $output / $lines ----------------------------------------

# lh_show_output: prints $status and $output to stderr and fails, so that
# `[ "$status" -eq 0 ] || lh_show_output` fails the test after showing why.
lh_show_output() {
    {
        echo "--- output (status ${status:-?}):"
        printf '%s\n' "$output"
        echo "---"
    } >&2
    return 1
}

# has_line TEXT: some line of $output is exactly TEXT.
has_line() {
    local l
    for l in "${lines[@]}"; do [ "$l" = "$1" ] && return 0; done
    echo "expected a line: $1" >&2
    lh_show_output
    return 1
}

# has_match REGEX: some line of $output matches REGEX.
has_match() {
    local l
    for l in "${lines[@]}"; do [[ $l =~ $1 ]] && return 0; done
    echo "expected a line matching: $1" >&2
    lh_show_output
    return 1
}

# no_match REGEX: no line of $output matches REGEX.
no_match() {
    local l
    for l in "${lines[@]}"; do
        if [[ $l =~ $1 ]]; then
            echo "unexpected line: $l" >&2
            lh_show_output
            return 1
        fi
    done
    return 0
}

# lines_are LINE...: $output is exactly these lines.
lines_are() {
    local want
    want=$(printf '%s\n' "$@")
    [ "$output" = "${want%$'\n'}" ] && return 0
    echo "expected exactly:" >&2
    printf '  %s\n' "$@" >&2
    lh_show_output
    return 1
}

# last_line_is TEXT: the last line of $output is TEXT.
last_line_is() {
    local n=${#lines[@]}
    [ "$n" -gt 0 ] && [ "${lines[$((n - 1))]}" = "$1" ] && return 0
    echo "expected the last line: $1" >&2
    lh_show_output
    return 1
}

# last_line_is_eof: the last line of $output says the connection ended (`eof` for a FIN,
# `reset` for an RST).
last_line_is_eof() {
    local n=${#lines[@]}
    [ "$n" -gt 0 ] && [[ ${lines[$((n - 1))]} =~ ^(eof|reset)$ ]] && return 0
    echo "expected the connection to end (eof/reset) last" >&2
    lh_show_output
    return 1
}

# assert_server_alive: the last lhttpd started is still whole: its master and the
# workers seen at start are alive, and the part of its log written since the previous
# check shows no sanitizer report or crash. After a failure the baseline moves on (the
# current workers, the current end of the log), so that one crash fails one test, not
# every later test of a file sharing the server. Cheap (no client); such files call it
# from teardown.
assert_server_alive() {
    local w state=$LH_LOG.state off workers bad=""
    off=$(sed -n 1p "$state" 2>/dev/null)
    workers=$(sed -n 2p "$state" 2>/dev/null)
    [ -n "$off" ] || off=0
    [ -n "$workers" ] || workers=$LH_WORKERS
    if lh_gone "$LH_PID"; then
        bad="lhttpd (pid $LH_PID) is gone"
    fi
    for w in $workers; do
        if [ -z "$bad" ] && lh_gone "$w"; then bad="lhttpd worker (pid $w) is gone"; fi
    done
    if [ -z "$bad" ] && tail -c +$((off + 1)) "$LH_LOG" |
        grep -qE 'AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:|Segmentation fault|core dumped|worker .*(crash|died|signal)'; then
        bad="lhttpd log shows a crash"
    fi
    [ -z "$bad" ] && return 0
    echo "$bad; the log since the last check:" >&2
    tail -c +$((off + 1)) "$LH_LOG" >&2
    # Workers respawned later than this are still covered by the log check.
    printf '%s\n%s\n' "$(stat -c %s "$LH_LOG")" "$(lh_descendants "$LH_PID" | tr '\n' ' ')" >"$state"
    return 1
}

# assert_server_ok [WS_PATH]: assert_server_alive, and a new client still gets a
# WebSocket handshake (on WS_PATH, default /) and a pong to its ping.
assert_server_ok() {
    local path=${1:-/} out
    assert_server_alive || return 1
    out=$(probe "upgrade:$path" ping:alive recv close:1000 expect-close 2>&1)
    case $out in
    *"pong fin=1 len=5 alive"*) return 0 ;;
    esac
    echo "lhttpd does not serve a new client on $path:" >&2
    printf '%s\n' "$out" >&2
    return 1
}

# man_matches_help MANPAGE HELP_TEXT: true when the man page documents every long option
# the --help text lists at the start of a line, names no long option the help text
# lacks, and is well-formed roff; otherwise says which and returns 1.
man_matches_help() {
    local man=$1 help=$2 opt out
    [ -f "$man" ] || { echo "no $man"; return 1; }
    # The page writes every "-" as "\-".
    for opt in $(printf '%s\n' "$help" | grep -oE '^ +(-[a-zA-Z], )?--[a-z][a-z-]*' | grep -oE -- '--[a-z-]+'); do
        grep -qF -- "${opt//-/\\-}" "$man" || { echo "$opt is not in $man"; return 1; }
    done
    for opt in $(grep -oE '^\.B[IR]? (\\-)+[a-z]+(\\-[a-z]+)*' "$man" | sed 's/^[^ ]* //; s/\\//g' | grep -- '^--'); do
        printf '%s\n' "$help" | grep -qE -- "(^| )$opt( |,|$)" || { echo "$opt is only in $man"; return 1; }
    done
    out=$(groff -man -Tutf8 -ww -z "$man" 2>&1) && [ -z "$out" ] || { echo "groff: $out"; return 1; }
}
