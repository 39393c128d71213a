#!/usr/bin/env bash
# make bench: lhttpd against nginx + nchan on this machine, in one run.
#
# Starts nats-server, lhttpd and nginx with nchan (installing nginx and
# libnginx-mod-nchan from Debian if missing), runs the same scenarios against both
# servers in alternation (lhttpd first in odd rounds, nchan first in even ones; with the
# floor below, each of the three first in turn), and
# prints a table of medians with lhttpd/nchan ratios. tests/bench/RESULTS.md explains
# the method and records a run. Everything it starts is stopped by pid when it ends.
#
# A third process, bench-floor (tests/bench/floor.c), runs the single-worker scenarios too:
# one send per delivery and nothing else, the least any server that does not merge
# messages must pay on this machine. The table shows how far each server is from it.
#
# Environment: LHTTPD, LHTTP_BENCH, BENCH_FLOOR, LHTTPC (binaries; default build/), B (build dir),
# BENCH_REPS (rounds, default 5), BENCH_SECONDS (publishing time of a throughput run,
# default 2), BENCH_LAT_RATE (messages/s of the latency scenario; default: half of what
# the slower server delivered in the fan-out over WebSocket), BENCH_ONLY=tls (only the
# TLS rows, section 9, with the plain fan-out they are compared with), BENCH_TLS_REPS
# (rounds of the TLS rows in a whole run, default min(BENCH_REPS, 3)).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
B=${B:-$root/build}
LHTTPD=${LHTTPD:-$B/lhttpd}
BENCH=${LHTTP_BENCH:-$B/lhttp-bench}
FLOOR=${BENCH_FLOOR:-$B/bench-floor}
LHTTPC=${LHTTPC:-$B/lhttpc}
REPS=${BENCH_REPS:-5}
DUR=${BENCH_SECONDS:-2}
LAT_RATE=${BENCH_LAT_RATE:-}
PY=/usr/bin/python3
NGINX=/usr/sbin/nginx
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)

say() { printf '%s\n' "$*"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---- packages --------------------------------------------------------------------

install_deps() {
    local need= sudo=
    command -v nats-server >/dev/null || need="$need nats-server"
    [ -x "$NGINX" ] || need="$need nginx"
    [ -f "$NCHAN_MODULE" ] || need="$need libnginx-mod-nchan"
    command -v curl >/dev/null || need="$need curl"
    command -v taskset >/dev/null || need="$need util-linux"
    [ -z "$need" ] && return 0
    say "bench: installing:$need"
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq || die "apt-get update failed"
    # shellcheck disable=SC2086
    $sudo apt-get install -y -qq --no-install-recommends $need >/dev/null ||
        die "apt-get install$need failed"
}

install_deps
[ -x "$LHTTPD" ] && [ -x "$BENCH" ] && [ -x "$FLOOR" ] && [ -x "$LHTTPC" ] ||
    die "build first: make all ($LHTTPD, $BENCH, $FLOOR, $LHTTPC)"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

run_dir=$B/bench/$(date +%Y%m%d-%H%M%S)
mkdir -p "$run_dir" || die "cannot create $run_dir"
RES=$run_dir/results.txt
: >"$RES"

# ---- processes -------------------------------------------------------------------

STARTED=""
NATS_PID= LH_PID= NG_PID= FL_PID=
cleanup() {
    local p
    for p in $STARTED; do kill -TERM "$p" 2>/dev/null; done
    for p in $STARTED; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$p" 2>/dev/null
    done
    wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() {
    local p=$1
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    STARTED=$(printf '%s\n' $STARTED | grep -vx "$p" | tr '\n' ' ')
}

free_port() {
    "$PY" - <<'EOF'
import random, socket
for _ in range(500):
    p = random.randint(20000, 60000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
EOF
}

# wait_until SECONDS CMD...: polls CMD until it succeeds; fails after SECONDS.
wait_until() {
    local n=$(($1 * 20))
    shift
    while [ "$n" -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
        n=$((n - 1))
    done
    return 1
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1"; }
is_200() { [ "$(http_code "$1")" = 200 ]; }
answers() { [ "$(http_code "$1")" != 000 ]; }
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# CPU sets: the servers' W workers on cores 0..W-1 and the generator on the others, when
# the machine has more cores than workers; otherwise nothing is pinned.
set_pinning() {
    local w=$1
    if [ "$NCPU" -gt "$w" ]; then
        SRV_CPUS=0-$((w - 1))
        GEN_CPUS=$w-$((NCPU - 1))
        PINNED=yes
    else
        SRV_CPUS=0-$((NCPU - 1))
        GEN_CPUS=$SRV_CPUS
        PINNED=no
    fi
}

pin_tree() { # pin_tree CPUS PID...: every thread of each process and of its children
    local c=$1 p q
    shift
    for p in "$@"; do
        for q in $p $(pgrep -P "$p"); do taskset -a -p -c "$c" "$q" >/dev/null 2>&1; done
    done
}

# nats-server with JetStream (-js), storing in the run directory: lhttpd's history
# namespace (below) keeps its messages there. Channels without history use core NATS
# only, as before.
start_nats() {
    NATS_PORT=$(free_port)
    taskset -c "$SRV_CPUS" nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$run_dir/jetstream" \
        >"$run_dir/nats.log" 2>&1 &
    NATS_PID=$!
    STARTED="$STARTED $NATS_PID"
    wait_until 10 tcp_open "$NATS_PORT" || die "nats-server did not start ($run_dir/nats.log)"
}

# lhttpd's configuration: the defaults, except what this load needs. max_connections
# 12000 per worker: 10,000 subscribers plus publishers and headroom (the default, 10000,
# is below the scenario itself). log.level warning, like nginx's error_log warn.
# An HS256 key (48 random bytes) and one namespace, authb, where only authenticated
# connections subscribe and only subscribers publish: the fanout-auth row's channels are
# there; every other row's (lhttp-bench's default prefix, b<random>.) are outside it,
# anonymous as before (auth.anonymous stays true).
# And one namespace with history, hist (issue 18): each of its channels keeps its last
# HIST_SIZE messages in JetStream, as nchan's /hpub/ location keeps its last HIST_SIZE
# (nchan_message_buffer_length); the history rows' channels are there (hist.<run>.<n>).
AUTH_NS=authb
HIST_NS=hist
HIST_SIZE=100
HIST_TTL_S=3600
start_lhttpd() {
    local w=$1 conf=$run_dir/lhttpd.json
    LH_PORT=$(free_port)
    LH_TLS_PORT=$(free_port)
    [ -s "$run_dir/jwt.secret" ] || (umask 077 && head -c 48 /dev/urandom >"$run_dir/jwt.secret") ||
        die "cannot write $run_dir/jwt.secret"
    cat >"$conf" <<EOF
{
    "listen": ["127.0.0.1:$LH_PORT", {"address": "127.0.0.1:$LH_TLS_PORT",
               "tls": {"cert_file": "$TLS_CERT", "key_file": "$TLS_KEY"}}],
    "workers": $w,
    "control_socket": "$run_dir/lhttpd.sock",
    "nats": {"servers": ["nats://127.0.0.1:$NATS_PORT"]},
    "limits": {"max_connections": 12000},
    "auth": {"keys": [{"secret_file": "$run_dir/jwt.secret"}]},
    "namespaces": {"$AUTH_NS": {"subscribe": "authenticated", "publish": "subscribers"},
                   "$HIST_NS": {"subscribe": "any", "publish": "any",
                                "history": {"size": $HIST_SIZE, "ttl_ms": $((HIST_TTL_S * 1000))}}},
    "log": {"level": "warning"}
}
EOF
    taskset -c "$SRV_CPUS" "$LHTTPD" -c "$conf" >>"$run_dir/lhttpd.log" 2>&1 &
    LH_PID=$!
    STARTED="$STARTED $LH_PID"
    wait_until 15 is_200 "http://127.0.0.1:$LH_PORT/readyz" ||
        die "lhttpd did not become ready ($run_dir/lhttpd.log)"
    [ "$(pgrep -c -P "$LH_PID")" -ge "$w" ] || die "lhttpd: expected $w workers"
    # /readyz does not wait for JetStream (a publish to a history channel before the
    # stream answered is refused with 503); a history read ends with its closing reply
    # once it did. The history rows run with one worker, the one that answers here.
    wait_until 15 hist_ready || die "lhttpd: the history stream did not answer ($run_dir/lhttpd.log)"
}
hist_ready() {
    "$LHTTPC" -q -n 1 -w 1000 "ws://127.0.0.1:$LH_PORT/" send history -H "channel:$HIST_NS.ready" \
        -H limit:1 | grep -q '^count:'
}

start_nginx() {
    local w=$1 d=$run_dir/nginx
    mkdir -p "$d"
    NG_PORT=$(free_port)
    NG_TLS_PORT=$(free_port)
    sed -e "s|@NCHAN_MODULE@|$NCHAN_MODULE|; s|@WORKERS@|$w|; s|@DIR@|$d|g; s|@PORT@|$NG_PORT|" \
        -e "s|@TLSPORT@|$NG_TLS_PORT|; s|@CERT@|$TLS_CERT|; s|@KEY@|$TLS_KEY|" \
        -e "s|@BUFFER@|0|; s|@HBUFFER@|$HIST_SIZE|; s|@HTTL@|$HIST_TTL_S|" \
        "$here/nginx-nchan.conf.in" >"$d/nginx.conf"
    taskset -c "$SRV_CPUS" "$NGINX" -p "$d" -c "$d/nginx.conf" >>"$run_dir/nginx.out" 2>&1 &
    NG_PID=$!
    STARTED="$STARTED $NG_PID"
    wait_until 15 answers "http://127.0.0.1:$NG_PORT/" ||
        die "nginx did not start ($d/nginx-error.log, $run_dir/nginx.out)"
    wait_until 5 test "$(pgrep -c -P "$NG_PID")" -ge "$w" || die "nginx: expected $w workers"
}

# The floor: one process, so only beside the single-worker servers.
start_floor() {
    FL_PORT=$(free_port)
    taskset -c "$SRV_CPUS" "$FLOOR" "$FL_PORT" >>"$run_dir/floor.log" 2>&1 &
    FL_PID=$!
    STARTED="$STARTED $FL_PID"
    wait_until 10 tcp_open "$FL_PORT" || die "bench-floor did not start ($run_dir/floor.log)"
}

start_servers() {
    WORKERS=$1
    set_pinning "$WORKERS"
    [ -n "$NATS_PID" ] || start_nats
    pin_tree "$SRV_CPUS" "$NATS_PID"
    start_lhttpd "$WORKERS"
    start_nginx "$WORKERS"
    [ "$WORKERS" -ne 1 ] || start_floor
    # shellcheck disable=SC2046
    LH_FDS=$(fds $(server_pids lhttpd))
    # shellcheck disable=SC2046
    NG_FDS=$(fds $(server_pids nchan))
    FL_FDS=$(fds $FL_PID)
}

stop_servers() {
    stop_pid "$LH_PID"
    stop_pid "$NG_PID"
    stop_pid "$FL_PID"
    LH_PID= NG_PID= FL_PID=
}

server_pids() { # the master and its workers
    local m
    case $1 in
    lhttpd) m=$LH_PID ;;
    nchan) m=$NG_PID ;;
    *) echo "$FL_PID"; return ;;
    esac
    echo "$m" $(pgrep -P "$m")
}

ticks() { # CPU ticks (user + system) of the given processes, threads included
    local t=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}

# ---- one run ---------------------------------------------------------------------

# sub_args SERVER: the subscribers' URL; with SUBS=hist, those of the channels with
# history (lhttpd's are in the namespace hist, nchan's at /hsub/).
sub_args() { # the floor speaks nchan's dialect
    if [ -n "${TLS:-}" ]; then # section 9: the same over wss:// on the TLS listeners
        case $1 in
        lhttpd) echo "-t lhttpd -u wss://127.0.0.1:$LH_TLS_PORT/" ;;
        nchan) echo "-t nchan -u wss://127.0.0.1:$NG_TLS_PORT/sub/{ch}" ;;
        esac
        return
    fi
    case $1/${SUBS:-} in
    lhttpd/*) echo "-t lhttpd -u ws://127.0.0.1:$LH_PORT/" ;;
    nchan/hist) echo "-t nchan -u ws://127.0.0.1:$NG_PORT/hsub/{ch}" ;;
    nchan/*) echo "-t nchan -u ws://127.0.0.1:$NG_PORT/sub/{ch}" ;;
    floor/*) echo "-t nchan -u ws://127.0.0.1:$FL_PORT/sub/{ch}" ;;
    esac
}

pub_args() { # pub_args SERVER ws|http
    if [ -n "${TLS:-}" ]; then
        case $1/$2 in
        lhttpd/ws) echo "-p wss://127.0.0.1:$LH_TLS_PORT/" ;;
        lhttpd/http) echo "-p https://127.0.0.1:$LH_TLS_PORT/publish" ;;
        nchan/ws) echo "-p wss://127.0.0.1:$NG_TLS_PORT/pub/{ch}" ;;
        nchan/http) echo "-p https://127.0.0.1:$NG_TLS_PORT/pub/{ch}" ;;
        esac
        return
    fi
    case $1/$2 in
    lhttpd/ws) echo "-p ws://127.0.0.1:$LH_PORT/" ;;
    lhttpd/http) echo "-p http://127.0.0.1:$LH_PORT/publish" ;;
    nchan/ws) echo "-p ws://127.0.0.1:$NG_PORT/pub/{ch}" ;;
    nchan/http) echo "-p http://127.0.0.1:$NG_PORT/pub/{ch}" ;;
    floor/ws) echo "-p ws://127.0.0.1:$FL_PORT/pub/{ch}" ;;
    floor/http) echo "-p http://127.0.0.1:$FL_PORT/pub/{ch}" ;;
    esac
}

# hist_args SERVER ws|http: the publisher and channel names of a history row: nchan's
# buffered location, and for both a prefix of their own for every run (hist.<n>.,
# HIST_RUN counted up by the caller: this runs in a subshell), so that each run starts
# on channels with no history yet.
HIST_RUN=0
hist_args() {
    case $1/$2 in
    lhttpd/*) echo "$(pub_args lhttpd "$2") --prefix $HIST_NS.$HIST_RUN." ;;
    nchan/ws) echo "-p ws://127.0.0.1:$NG_PORT/hpub/{ch} --prefix $HIST_NS.$HIST_RUN." ;;
    nchan/http) echo "-p http://127.0.0.1:$NG_PORT/hpub/{ch} --prefix $HIST_NS.$HIST_RUN." ;;
    esac
}

fds_at_most() { # fds_at_most N PID...: true when the processes hold N descriptors or fewer
    local max=$1
    shift
    [ "$(fds "$@")" -le "$max" ]
}

fds() { # open descriptors of the given processes
    local n=0 p
    for p in "$@"; do n=$((n + $(ls "/proc/$p/fd" 2>/dev/null | wc -l))); done
    echo "$n"
}

# settle SERVER: waits (15 s at most) until the server has closed the previous run's
# connections, so that no run pays for the teardown of the one before.
settle() {
    local pids base
    pids=$(server_pids "$1")
    case $1 in lhttpd) base=$LH_FDS ;; nchan) base=$NG_FDS ;; *) base=$FL_FDS ;; esac
    # shellcheck disable=SC2086
    wait_until 15 fds_at_most $((base + 16)) $pids ||
        say "bench: $1 still holds $(fds $pids) descriptors (at start: $base)"
}

# run SCENARIO SERVER [EXTRA=value...] -- LHTTP-BENCH-ARGS...: one lhttp-bench run on the
# generator's cores; appends its RESULT line, with the scenario, the server's and NATS'
# CPU use over the run, to results.txt.
run() {
    local sc=$1 srv=$2 extra="" pids c0 c1 n0 n1 t0 t1 out line scpu ncpu
    shift 2
    while [ "$1" != -- ]; do extra="$extra $1"; shift; done
    shift
    settle "$srv"
    pids=$(server_pids "$srv")
    # shellcheck disable=SC2086
    c0=$(ticks $pids)
    n0=$(ticks "$NATS_PID")
    t0=$(date +%s%N)
    # shellcheck disable=SC2046
    out=$(taskset -c "$GEN_CPUS" "$BENCH" -q $(sub_args "$srv") "$@" 2>&1)
    t1=$(date +%s%N)
    # shellcheck disable=SC2086
    c1=$(ticks $pids)
    n1=$(ticks "$NATS_PID")
    scpu=$(awk -v a="$c0" -v b="$c1" -v t="$((t1 - t0))" -v hz="$HZ" 'BEGIN {printf "%.2f", (b - a) / hz / (t / 1e9)}')
    ncpu=$(awk -v a="$n0" -v b="$n1" -v t="$((t1 - t0))" -v hz="$HZ" 'BEGIN {printf "%.2f", (b - a) / hz / (t / 1e9)}')
    line=$(printf '%s\n' "$out" | sed -n 's/^RESULT //p' | tail -n 1)
    [ -n "$line" ] || line="complete=0"
    printf 'scenario=%s server=%s workers=%s pinned=%s server_cpu=%s nats_cpu=%s%s %s\n' \
        "$sc" "$srv" "$WORKERS" "$PINNED" "$scpu" "$ncpu" "$extra" "$line" >>"$RES"
    printf '  %-14s %-6s %s\n' "$sc" "$srv" "$(printf '%s\n' "$line" |
        grep -oE '(deliveries_per_s|msgs_per_s|p50_us|p99_us|setup_rate|recover_s|complete)=[0-9.]+' |
        tr '\n' ' ')server_cpu=$scpu nats_cpu=$ncpu"
    if ! printf '%s\n' "$line" | grep -q 'complete=1'; then
        printf '%s\n' "$out" | grep -E '^(PROBLEM|lhttp-bench)' | sed 's/^/    /'
    fi
}

# rounds FUNCTION: calls FUNCTION SERVER for both servers, REPS times, alternating who
# goes first.
rounds() {
    local r
    for r in $(seq "$REPS"); do
        if [ $((r % 2)) -eq 1 ]; then "$1" lhttpd; "$1" nchan; else "$1" nchan; "$1" lhttpd; fi
    done
}

# rounds3 FUNCTION: the same with the floor as a third, each going first in turn.
rounds3() {
    local r
    for r in $(seq "$REPS"); do
        case $((r % 3)) in
        1) "$1" lhttpd; "$1" nchan; "$1" floor ;;
        2) "$1" nchan; "$1" floor; "$1" lhttpd ;;
        0) "$1" floor; "$1" lhttpd; "$1" nchan ;;
        esac
    done
}

# ---- scenarios -------------------------------------------------------------------

# 1. Fan-out: 1000 subscribers on one channel, 64-byte messages, at full speed with at
#    most 200 messages in flight; published over one WebSocket, or by 8 keep-alive
#    HTTP connections with one request outstanding each.
fanout_ws() { # fanout_ws SERVER [EXTRA=value...]
    local srv=$1
    shift
    # shellcheck disable=SC2046
    run fanout-ws "$srv" "$@" -- $(pub_args "$srv" ws) -n 1000 -c 1 -s 64 -d "$DUR" -w 200
}
# ... and the same over WebSocket on lhttpd with every connection authenticated (a token
#    in each handshake) in a namespace whose rule is subscribe "authenticated", publish
#    "subscribers": the publisher subscribes to the channel too (--pub-subscribe; its own
#    copies are not counted). Permissions are checked once per subscribe and once per
#    publish, never per delivery, so this row must be within 5% of fanout-ws. The two
#    alternate within each round of the same run (fanout_ws_and_auth), tagged round=N so
#    report.py can take the ratio round by round.
fanout_auth() {
    local tok
    tok=$("$LHTTPC" token --secret-file "$run_dir/jwt.secret" --sub bench --exp-in 3600) ||
        die "lhttpc token failed"
    # shellcheck disable=SC2046
    run fanout-auth lhttpd "$@" -- $(pub_args lhttpd ws) -n 1000 -c 1 -s 64 -d "$DUR" -w 200 \
        --token "$tok" --prefix "$AUTH_NS." --pub-subscribe
}
AUTH_ROUND=0
fanout_ws_and_auth() {
    if [ "$1" != lhttpd ]; then
        fanout_ws "$1"
        return
    fi
    AUTH_ROUND=$((AUTH_ROUND + 1))
    if [ $((AUTH_ROUND % 2)) -eq 1 ]; then
        fanout_ws lhttpd round="$AUTH_ROUND"
        fanout_auth round="$AUTH_ROUND"
    else
        fanout_auth round="$AUTH_ROUND"
        fanout_ws lhttpd round="$AUTH_ROUND"
    fi
}
fanout_http() {
    # shellcheck disable=SC2046
    run fanout-http "$1" -- $(pub_args "$1" http) -n 1000 -c 1 -s 64 -d "$DUR" -w 200 -k 8
}
# 2. Many channels: 10,000 subscribers on 10,000 channels, each message to a random
#    channel. nchan publishes over HTTP only here (its WebSocket publisher is bound to
#    one channel), so both servers get 8 HTTP publishers; lhttpd's WebSocket publishing
#    is measured too, as its own row.
channels_http() {
    # shellcheck disable=SC2046
    run channels-http "$1" -- $(pub_args "$1" http) -n 10000 -c 10000 --random -s 64 \
        -d "$DUR" -w 1000 -k 8
}
channels_ws_lhttpd() {
    # shellcheck disable=SC2046
    run channels-ws lhttpd -- $(pub_args lhttpd ws) -n 10000 -c 10000 --random -s 64 \
        -d "$DUR" -w 1000
}
# 3. Latency at a fixed rate that saturates neither server: half of what the slower
#    server delivered in scenario 1 (WebSocket publish) in this run, to 1000 subscribers
#    of one channel; and a light load, a tenth of it. Each message's latency is measured
#    at every subscriber, so p99 is close to the time a whole fan-out takes.
latency() {
    # shellcheck disable=SC2046
    run latency "$1" rate="$LAT_RATE" -- $(pub_args "$1" ws) -n 1000 -c 1 -s 64 -d 3 \
        -r "$LAT_RATE"
}
latency_light() {
    # shellcheck disable=SC2046
    run latency-light "$1" rate="$LAT_LIGHT" -- $(pub_args "$1" ws) -n 1000 -c 1 -s 64 \
        -d 3 -r "$LAT_LIGHT"
}
# ... and per message, without a fan-out: 10,000 channels of one subscriber, random
#    channels, 8 HTTP publishers (the path both servers have), at half the slower
#    server's rate in scenario 2.
latency_channels() {
    # shellcheck disable=SC2046
    run latency-channels "$1" rate="$LAT_CH_RATE" -- $(pub_args "$1" http) -n 10000 \
        -c 10000 --random -s 64 -d 3 -k 8 -r "$LAT_CH_RATE"
}
# The median msgs_per_s of SCENARIO for SERVER so far.
median_of() {
    grep "scenario=$1 server=$2 " "$RES" | grep -oE 'msgs_per_s=[0-9.]+' | cut -d= -f2 |
        sort -n | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]; else print 0}'
}
# 5. Connection setup: 10,000 WebSocket connections, each subscribing to its own channel,
#    500 being set up at a time; the time until the last one is subscribed.
setup_rate() {
    run setup "$1" -- -n 10000 -c 10000 --no-publish --conc 500
}
# 7. History (issue 18). Fan-out: scenario 1 over WebSocket on a channel with history,
#    lhttpd's in the namespace hist (every message stored in JetStream before it is
#    delivered, each delivery with its offset, prev-offset and epoch headers; lhttp-bench
#    --server-headers accepts exactly those, removes them before comparing each delivery
#    with what was sent, and follows the offset chain), nchan's at /hpub/
#    (nchan_message_buffer_length HIST_SIZE), its subscribers plain, as in scenario 1:
#    nchan's cheapest buffered fan-out, the one the target is taken against. A client
#    that is to resume needs each message's id, which nchan's WebSocket subscriber gives
#    only with the ws+meta.nchan subprotocol: that costs nchan more, and is measured as
#    fanout-hist-ids (--server-headers for nchan), back to back with fanout-hist.
#    lhttpd's fan-out without history runs back to back with its history fan-out in
#    every round (which goes first alternates), tagged hround=N, for the target
#    "history >= 50% of the fan-out without history".
fanout_hist() { # fanout_hist SERVER [EXTRA=value...]
    local srv=$1 sc=fanout-hist meta=
    shift
    [ "$srv" = lhttpd ] && meta=--server-headers
    if [ "${IDS:-}" = 1 ]; then
        sc=fanout-hist-ids meta=--server-headers
    fi
    HIST_RUN=$((HIST_RUN + 1))
    # shellcheck disable=SC2046
    SUBS=hist run "$sc" "$srv" "$@" -- $(hist_args "$srv" ws) -n 1000 -c 1 -s 64 \
        -d "$DUR" -w 200 $meta
}
HIST_ROUND=0
fanout_hist_pair() {
    HIST_ROUND=$((HIST_ROUND + 1))
    if [ "$1" != lhttpd ]; then
        if [ $((HIST_ROUND % 2)) -eq 1 ]; then
            fanout_hist "$1"
            IDS=1 fanout_hist "$1"
        else
            IDS=1 fanout_hist "$1"
            fanout_hist "$1"
        fi
        return
    fi
    if [ $((HIST_ROUND % 2)) -eq 1 ]; then
        fanout_hist lhttpd hround="$HIST_ROUND"
        # shellcheck disable=SC2046
        run fanout-nohist lhttpd hround="$HIST_ROUND" -- $(pub_args lhttpd ws) -n 1000 -c 1 \
            -s 64 -d "$DUR" -w 200
    else
        # shellcheck disable=SC2046
        run fanout-nohist lhttpd hround="$HIST_ROUND" -- $(pub_args lhttpd ws) -n 1000 -c 1 \
            -s 64 -d "$DUR" -w 200
        fanout_hist lhttpd hround="$HIST_ROUND"
    fi
}
# ... and recovery: 1000 subscribers of one channel with history (as after a reload of
#    the server, or a network switch of a whole room) see a probe, all disconnect, 100
#    messages are published over HTTP (each answered, so stored), then all 1000
#    reconnect at once, each resuming after the probe: lhttpd with
#    recover:<channel>,<offset>,<epoch> (PROTOCOL.md section 10; done at the subscribed
#    reply with recovered:true, after the 100 messages), nchan with Last-Event-ID:
#    <message id>. The time from the first reconnection until every subscriber has its
#    100 messages (lhttp-bench --recover).
recover_hist() {
    HIST_RUN=$((HIST_RUN + 1))
    # shellcheck disable=SC2046
    SUBS=hist run recover "$1" -- $(hist_args "$1" http) -n 1000 -c 1 -s 64 --recover 100 \
        --conc 1000
}

# 4. Idle connections: the same 10,000, held while the servers' memory is read (PSS of
#    the master and workers; NATS apart), against the same servers freshly started.
idle_mem() { # idle_mem SERVER [SCENARIO]: with TLS=1, over wss:// (idle-tls)
    local srv=$1 sc=${2:-idle} pids before after nb na
    pids=$(server_pids "$srv")
    # shellcheck disable=SC2086
    before=$("$here/mem.sh" $pids)
    nb=$("$here/mem.sh" "$NATS_PID")
    run "$sc" "$srv" mem_before="${before// /,}" nats_before="${nb// /,}" -- \
        -n 10000 -c 10000 --no-publish --conc 500 \
        --hold-exec "sleep 0.5; '$here/mem.sh' $pids >'$run_dir/mem-$srv.txt'; '$here/mem.sh' $NATS_PID >'$run_dir/mem-nats-$srv.txt'"
    after=$(cat "$run_dir/mem-$srv.txt" 2>/dev/null)
    na=$(cat "$run_dir/mem-nats-$srv.txt" 2>/dev/null)
    # Append the after-values to the run's line.
    sed -i "\$s/\$/ mem_after=${after// /,} nats_after=${na// /,}/" "$RES"
}

# 9. TLS (issue 19): both servers on the same certificate (RSA 2048, made for the run),
#    TLS 1.3 (what lhttp-bench and both servers negotiate), lhttpd's TLS listener and
#    nginx's `listen ... ssl` (nchan over it), each with its defaults otherwise (session
#    tickets on both, shared by the workers; SSL_MODE_RELEASE_BUFFERS on both).
#    Fan-out: scenario 1 over wss:// (subscribers and the publisher), alternating with
#    lhttpd's plain fan-out (fanout-plain: scenario 1 again, ws://) in each round
#    (tround=N: the ratio TLS / plain is taken round by round). Setup: 5000 subscribers, 500 at a time, every one a full handshake, then
#    the same with --tls-resume (every connection after the first resumes a ticket).
#    Idle: scenario 4 over wss:// against fresh servers.
make_cert() {
    TLS_CERT=$run_dir/bench-cert.pem TLS_KEY=$run_dir/bench-key.pem
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TLS_KEY" -out "$TLS_CERT" -days 2 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null ||
        die "openssl req failed"
}
TLS_ROUND=0
fanout_wss_pair() {
    local srv=$1
    if [ "$srv" != lhttpd ]; then
        TLS=1 fanout_ws_named fanout-wss "$srv"
        return
    fi
    TLS_ROUND=$((TLS_ROUND + 1))
    if [ $((TLS_ROUND % 2)) -eq 1 ]; then
        TLS=1 fanout_ws_named fanout-wss lhttpd tround="$TLS_ROUND"
        fanout_ws_named fanout-plain lhttpd tround="$TLS_ROUND"
    else
        fanout_ws_named fanout-plain lhttpd tround="$TLS_ROUND"
        TLS=1 fanout_ws_named fanout-wss lhttpd tround="$TLS_ROUND"
    fi
}
fanout_ws_named() { # fanout_ws_named SCENARIO SERVER [EXTRA=value...]
    local sc=$1 srv=$2
    shift 2
    # shellcheck disable=SC2046
    run "$sc" "$srv" "$@" -- $(pub_args "$srv" ws) -n 1000 -c 1 -s 64 -d "$DUR" -w 200
}
setup_tls() {
    TLS=1 run setup-tls "$1" -- -n 5000 -c 5000 --no-publish --conc 500
}
setup_tls_resume() {
    TLS=1 run setup-tls-resume "$1" -- -n 5000 -c 5000 --no-publish --conc 500 --tls-resume
}
tls_section() {
    # In a whole `make bench` at most 3 rounds here (BENCH_TLS_REPS), to stay within 10
    # minutes; BENCH_ONLY=tls takes BENCH_REPS as it is.
    local REPS=$REPS
    [ "${BENCH_ONLY:-}" = tls ] || REPS=${BENCH_TLS_REPS:-$((REPS < 3 ? REPS : 3))}
    say "-- 9. TLS: fan-out over wss:// (lhttpd also over ws:// in the same rounds)"
    rounds fanout_wss_pair
    say "-- 9. TLS: connection setup, full handshakes"; rounds setup_tls
    say "-- 9. TLS: connection setup, resumed sessions"; rounds setup_tls_resume
    say "-- 9. TLS: idle connections over wss:// (fresh servers)"
    stop_servers
    start_servers 1
    TLS=1 idle_mem lhttpd idle-tls
    TLS=1 idle_mem nchan idle-tls
    stop_servers
}

# ---- the run ---------------------------------------------------------------------

t_begin=$(date +%s)
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $NCPU"
    echo "memory=$(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "kernel=$(uname -r)"
    echo "loadavg_at_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "lhttpd=$("$LHTTPD" -v 2>&1 | head -n 1) ($(git -C "$root" rev-parse --short HEAD 2>/dev/null))"
    echo "nginx=$("$NGINX" -v 2>&1 | sed 's/.*: //')"
    echo "nchan=$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null)"
    echo "nats-server=$(nats-server --version 2>&1 | head -n 1)"
} >"$run_dir/machine.txt"
cat "$run_dir/machine.txt"
say "bench: results in $run_dir"
make_cert
if [ "${BENCH_ONLY:-}" = tls ]; then
    say "== TLS rows only (BENCH_ONLY=tls), 1 worker each =="
    start_servers 1
    tls_section
    say "bench: done in $(($(date +%s) - t_begin)) s"
    "$PY" "$here/report.py" "$RES" "$run_dir/machine.txt" | tee "$run_dir/table.md"
    exit 0
fi

say "== 1 worker each (servers on CPUs 0-0, generator on the rest, when there are 2+) =="
start_servers 1
say "-- 1. fan-out over WebSocket (lhttpd also with authenticated connections: fanout-auth)"
rounds3 fanout_ws_and_auth
say "-- 1. fan-out over HTTP"; rounds3 fanout_http
say "-- 2. many channels"; rounds3 channels_http
for _ in $(seq "$REPS"); do channels_ws_lhttpd; done
if [ -z "${BENCH_LAT_RATE:-}" ]; then
    LAT_RATE=$(awk -v a="$(median_of fanout-ws lhttpd)" -v b="$(median_of fanout-ws nchan)" \
        'BEGIN {m = a < b ? a : b; r = int(m / 2); print r < 10 ? 10 : r}')
fi
LAT_LIGHT=$(awk -v r="$LAT_RATE" 'BEGIN {l = int(r / 10); print l < 5 ? 5 : l}')
say "-- 3. latency at $LAT_RATE messages/s (half the slower server's fan-out above)"
rounds3 latency
say "-- 3. latency at $LAT_LIGHT messages/s (light load)"
rounds3 latency_light
LAT_CH_RATE=$(awk -v a="$(median_of channels-http lhttpd)" -v b="$(median_of channels-http nchan)" \
    'BEGIN {m = a < b ? a : b; r = int(m / 2); print r < 10 ? 10 : r}')
say "-- 3. latency at $LAT_CH_RATE messages/s to random channels (half the slower server's above)"
rounds3 latency_channels
say "-- 5. connection setup"; rounds setup_rate
say "-- 7. history: fan-out on a channel with history (lhttpd also without: fanout-nohist)"
rounds fanout_hist_pair
say "-- 7. history: 1000 clients reconnecting at once, each recovering 100 messages"
rounds recover_hist
tls_section
say "-- 4. idle connections (fresh servers)"
stop_servers
start_servers 1
idle_mem lhttpd
idle_mem nchan
say "-- scaling: 1 worker, nothing pinned"
stop_servers
start_servers 1
SRV_CPUS=0-$((NCPU - 1)) GEN_CPUS=0-$((NCPU - 1)) PINNED=no
pin_tree "$SRV_CPUS" "$LH_PID" "$NG_PID" "$NATS_PID"
rounds fanout_ws
say "-- scaling: 2 workers"
stop_servers
start_servers 2
rounds fanout_ws
stop_servers

say "-- 8. presence (tests/bench/presence.sh, its own nats-server and lhttpd of 2 workers)"
B="$B" LHTTPD="$LHTTPD" "$here/presence.sh" | tee "$run_dir/presence.txt"

say "bench: done in $(($(date +%s) - t_begin)) s"
"$PY" "$here/report.py" "$RES" "$run_dir/machine.txt" | tee "$run_dir/table.md"
