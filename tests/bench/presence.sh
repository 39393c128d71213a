#!/usr/bin/env bash
# The presence rows of make bench (issue 20), on their own servers: nats-server and two
# lhttpd nodes of 2 workers each would not fit beside the others, so one node of 2
# workers (queries still go through NATS: every worker answers on it).
#   presence-stats latency: 10,000 members of one channel spread over the 2 workers;
#     500 presence-stats and 100 presence (list, max_list 1000) queries in a row.
#   join/leave cost: 1000 clients subscribing to one channel at once (200 handshakes in
#     flight), with join_leave and without it: wall time, lhttpd CPU, the join messages
#     built and the deliveries they made.
#   fan-out cost: 1000 subscribers of one channel, in a presence namespace ("big.") and
#     in none, rounds alternating on the same server: deliveries per second of each.
# Prints one line per result; run.sh appends them to its output. Everything it starts is
# stopped by pid.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
B=${B:-$root/build}
LHTTPD=${LHTTPD:-$B/lhttpd}
PY=/usr/bin/python3
PC="$root/tests/lib/presclient.py"
HZ=$(getconf CLK_TCK)
dir=$(mktemp -d /tmp/lhttpd-presbench.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_file() { local i; for i in $(seq 600); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
ticks() { local t=0 p; for p in "$@"; do for f in /proc/"$p"/task/*/stat; do t=$((t + $(awk '{print $14 + $15}' "$f" 2>/dev/null || echo 0))); done; done; echo "$t"; }
metric() { curl -s "http://127.0.0.1:$LP/metrics" | awk -v n="$1" '$1 == n {print $2}'; }

head -c 48 /dev/urandom | base64 -w0 >"$dir/secret"
NP=$(port); LP=$(port)
nats-server -a 127.0.0.1 -p "$NP" >"$dir/nats.log" 2>&1 &
pids+=($!)
cat >"$dir/lhttpd.json" <<CFG
{ "listen": ["127.0.0.1:$LP"], "workers": 2, "control_socket": "$dir/ctl.sock",
  "nats": {"servers": ["nats://127.0.0.1:$NP"]},
  "auth": {"keys": [{"secret_file": "$dir/secret"}]},
  "limits": {"max_connections": 20000},
  "namespaces": { "big": {"presence": true, "presence_read": "any"},
                  "jl": {"presence": true, "join_leave": true},
                  "nojl": {"presence": true} } }
CFG
sleep 0.3
"$LHTTPD" -c "$dir/lhttpd.json" >"$dir/lhttpd.log" 2>&1 &
LH=$!
pids+=($LH)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$LP/readyz" && break; sleep 0.1; done
lh_all() { echo "$LH $(pgrep -P "$LH" | tr '\n' ' ')"; }

# --- presence-stats on 10,000 members ---
"$PY" "$PC" fleet "$LP" 10000 big.bench "$dir/secret" m "$dir/stop1" >"$dir/fleet1.out" 2>&1 &
pids+=($!)
wait_file "$dir/fleet1.out" '^(ready|FAIL)' || { echo "presence bench: fleet did not start"; exit 1; }
"$PY" "$PC" script "$dir/secret" open:q:$LP:asker qbench:q:big.bench:500 qbench:q:big.bench:100:list \
    | sed 's/^q qbench/presence 10000 members on 2 workers:/'
touch "$dir/stop1"
wait_file "$dir/fleet1.out" '^closed' || true

# --- 1000 clients joining at once, with and without join_leave ---
for ns in nojl jl; do
    m0=$(metric lhttpd_join_leave_messages_total); e0=$(metric lhttpd_join_leave_events_total)
    d0=$(metric lhttpd_deliveries_total)
    t0=$(ticks $(lh_all)); s0=$(date +%s.%N)
    "$PY" "$PC" fleet "$LP" 1000 "$ns.join" "$dir/secret" j "$dir/stop-$ns" >"$dir/fleet-$ns.out" 2>&1 &
    fp=$!
    pids+=($fp)
    wait_file "$dir/fleet-$ns.out" '^(ready|FAIL)'
    # The last batch goes out join_leave_delay_ms after the last join.
    sleep 0.5
    s1=$(date +%s.%N); t1=$(ticks $(lh_all))
    m1=$(metric lhttpd_join_leave_messages_total); e1=$(metric lhttpd_join_leave_events_total)
    d1=$(metric lhttpd_deliveries_total)
    echo "join 1000 clients at once ($ns): $(echo "$s1 - $s0 - 0.5" | bc) s to all subscribed," \
        "lhttpd CPU $(echo "scale=3; ($t1 - $t0) / $HZ" | bc) s," \
        "join messages $((${m1:-0} - ${m0:-0})) carrying $((${e1:-0} - ${e0:-0})) joins," \
        "deliveries $((${d1:-0} - ${d0:-0}))"
    touch "$dir/stop-$ns"
    wait_file "$dir/fleet-$ns.out" '^closed'
    grep '^events' "$dir/fleet-$ns.out" | sed "s/^events/  received by the 1000 (messages, entries):/"
done

# --- the fan-out rows' cost: a presence namespace against none, same server, alternating ---
BENCH=${LHTTP_BENCH:-$B/lhttp-bench}
for r in 1 2 3; do
    for pre in big.fan "fan$r."; do
        out=$("$BENCH" -q -u "ws://127.0.0.1:$LP/" -p "http://127.0.0.1:$LP/publish" -n 1000 -m 1000 \
              --prefix "$pre$r" 2>&1 | tail -1)
        dps=$(grep -oE 'deliveries_per_s=[0-9]+' <<<"$out" | cut -d= -f2)
        case $pre in big.*) kind=presence ;; *) kind=none ;; esac
        echo "fan-out 1000 subscribers, namespace $kind, round $r: ${dps:-?} deliveries/s"
    done
done
