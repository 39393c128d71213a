# Helpers for the pub/sub suites (pubsub.bats, cluster.bats), on top of helpers.bash:
#   load ../lib/helpers
#   load ../lib/pubsub
# Several lhttpd and nats-server processes per test: each is started through these
# functions, recorded for stop_all, and waited for with deadlines.

LHTTPC=${LHTTPC:-$LH_LIB/../../build/lhttpc}

# ps_run STEP...: tests/lib/pubsub.py (several named WebSocket clients in one process).
ps_run() { "$PY" "$LH_LIB/pubsub.py" "$@"; }

# ps_bg NAME STEP...: runs pubsub.py in the background; its output goes to
# $(lh_tmp)/NAME.out, its pid to PS_PID_NAME (and to stop_all's list).
ps_bg() {
    local name=$1
    shift
    "$PY" "$LH_LIB/pubsub.py" "$@" >"$(lh_tmp)/$name.out" 2>&1 3>&- &
    lh_record $!
    eval "PS_PID_$name=$!"
}

# got NAME MESSAGE: the line pubsub.py prints when NAME receives MESSAGE (written with
# \r \n \xHH escapes, as pubsub.py shows it).
got() { echo "$1 got $(printf '%b' "$2" | wc -c) $2"; }

# bg_out NAME: the output of a background client so far.
bg_out() { cat "$(lh_tmp)/$1.out" 2>/dev/null; }

# bg_has NAME REGEX: a line of NAME's output matches the extended REGEX.
bg_has() { grep -qE -- "$2" "$(lh_tmp)/$1.out" 2>/dev/null; }

# wait_bg NAME REGEX [SECONDS]: waits until NAME's output has a line matching REGEX;
# shows the output on failure.
wait_bg() {
    wait_for "${3:-10}" bg_has "$1" "$2" && return 0
    echo "--- output of $1:" >&2
    bg_out "$1" >&2
    return 1
}

# wait_gone PID [SECONDS]: waits until the process has exited.
wait_gone() { wait_for "${2:-10}" lh_gone "$1"; }

# save_lhttpd NAME: remembers the lhttpd started last as NAME_PORT, NAME_PID, NAME_LOG
# and NAME_WORKERS; use_lhttpd NAME makes it the current one again (for probe, log_has,
# assert_server_ok).
save_lhttpd() {
    eval "$1_PORT=\$LH_PORT $1_PID=\$LH_PID $1_LOG=\$LH_LOG $1_WORKERS=\"\$LH_WORKERS\""
}

use_lhttpd() {
    eval "LH_PORT=\$$1_PORT LH_PID=\$$1_PID LH_LOG=\$$1_LOG LH_WORKERS=\"\$$1_WORKERS\""
}

# --- nats-server ----------------------------------------------------------------------

# start_nats_on PORT MON_PORT [ARGS...]: starts nats-server on 127.0.0.1:PORT with its
# monitoring port MON_PORT and ARGS; sets NATS_PID and waits until both ports listen.
# The log ($(lh_tmp)/nats-PORT.log) is appended to, so a restart keeps the earlier one.
start_nats_on() {
    local port=$1 mon=$2 log
    shift 2
    log=$(lh_tmp)/nats-$port.log
    nats-server -a 127.0.0.1 -p "$port" -m "$mon" "$@" >>"$log" 2>&1 3>&- &
    NATS_PID=$!
    lh_record "$NATS_PID"
    if wait_for 5 listening_by "$port" "$NATS_PID" && wait_for 5 listening_by "$mon" "$NATS_PID"; then
        export NATS_PID
        return 0
    fi
    lh_stop_pid "$NATS_PID"
    grep -qi 'address already in use' "$log" && return 2
    echo "start_nats_on: nats-server did not start; its log:" >&2
    cat "$log" >&2
    return 1
}

# start_nats_node NAME [ROUTE_PORT]: starts a nats-server in cluster "lhtest" on free
# ports: NAME_PORT (clients), NAME_MON (monitoring), NAME_CLUSTER (routes), NAME_PID;
# with ROUTE_PORT it routes to the node whose cluster port that is.
start_nats_node() {
    local name=$1 route=${2:-} _ p m c args r
    for _ in 1 2 3 4 5; do
        p=$(free_port) && LH_PORTS_TAKEN="$LH_PORTS_TAKEN $p" &&
            m=$(free_port) && LH_PORTS_TAKEN="$LH_PORTS_TAKEN $m" &&
            c=$(free_port) && LH_PORTS_TAKEN="$LH_PORTS_TAKEN $c" || return 1
        export LH_PORTS_TAKEN
        args=(--cluster_name lhtest --cluster "nats://127.0.0.1:$c")
        [ -n "$route" ] && args+=(--routes "nats://127.0.0.1:$route")
        start_nats_on "$p" "$m" "${args[@]}"
        r=$?
        if [ $r = 0 ]; then
            eval "${name}_PORT=$p ${name}_MON=$m ${name}_CLUSTER=$c ${name}_PID=$NATS_PID"
            return 0
        fi
        [ $r = 2 ] || return 1
    done
    echo "start_nats_node: no free ports" >&2
    return 1
}

# nats_json MON_PORT PATH: GETs the monitoring endpoint PATH (e.g. "connz?subs=1").
nats_json() { curl -s --max-time 2 "http://127.0.0.1:$1/$2"; }

# nats_sub_count MON_PORT SUBJECT: how many client subscriptions on SUBJECT the server
# holds, over all its client connections.
nats_sub_count() {
    nats_json "$1" "connz?subs=1&limit=1000" |
        jq --arg s "$2" '[.connections[]? | .subscriptions_list // [] | .[] | select(. == $s)] | length'
}

# nats_sub_counts MON_PORT SUBJECT: for each client connection holding SUBJECT, the
# number of its subscriptions on it, one a line.
nats_sub_counts() {
    nats_json "$1" "connz?subs=1&limit=1000" |
        jq --arg s "$2" '.connections[]? | [.subscriptions_list // [] | .[] | select(. == $s)] | length | select(. > 0)'
}

# nats_has_sub MON_PORT SUBJECT / nats_no_sub MON_PORT SUBJECT: for wait_for.
nats_has_sub() { [ "$(nats_sub_count "$1" "$2")" -ge 1 ] 2>/dev/null; }
nats_no_sub() { [ "$(nats_sub_count "$1" "$2")" = 0 ]; }

# nats_clients MON_PORT: the number of client connections (lhttpd workers, lhttpc...).
# nats_watch NAME SUBJECT: a plain NATS subscriber (natswatch.py) on SUBJECT at NATS_PORT,
# printing "msg SUBJECT PAYLOAD" lines to $(lh_tmp)/NAME.out (see bg_has, wait_bg);
# returns once nats-server has its subscription.
nats_watch() {
    "$PY" "$LH_LIB/natswatch.py" "$NATS_PORT" "$2" >"$(lh_tmp)/$1.out" 2>&1 3>&- &
    lh_record $!
    wait_bg "$1" '^ready$'
}

nats_clients() { nats_json "$1" connz | jq '.num_connections'; }
nats_has_clients() { [ "$(nats_clients "$1")" -ge "$2" ] 2>/dev/null; }

# nats_routes_up MON_PORT [N]: the server has at least N (default 1) routes.
nats_routes_up() { [ "$(nats_json "$1" routez | jq '.num_routes')" -ge "${2:-1}" ] 2>/dev/null; }

# --- checks ---------------------------------------------------------------------------

# count_lines REGEX: how many lines of $output (set by bats' run) match REGEX.
# shellcheck disable=SC2154
count_lines() { printf '%s\n' "$output" | grep -cE -- "$1" || true; }
