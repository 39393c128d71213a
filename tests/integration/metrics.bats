#!/usr/bin/env bats
# Metrics and health: /metrics in Prometheus text format (checked by promtool and scraped
# by a real Prometheus server), counters that never go down across reloads and a killed
# worker, gauges that return to 0, /readyz following NATS, /livez, the routing of the admin
# endpoints, and the example Prometheus files in etc/prometheus. Each test starts its own
# nats-server and lhttpd; clients come from wsfleet.py, scrapes from promscrape.py.

load ../lib/helpers

FLEET=$LH_LIB/wsfleet.py
SCRAPE=$LH_LIB/promscrape.py
PROMDIR=$LH_LIB/../../etc/prometheus

setup() {
    T=$BATS_TEST_TMPDIR
    SKIP_ALIVE=
}

teardown() {
    local rc=0
    if [ -n "${LH_PID:-}" ] && [ -z "$SKIP_ALIVE" ]; then assert_server_alive || rc=1; fi
    stop_all
    return $rc
}

# start_node WORKERS admin|public|none [JSON_MEMBERS]: lhttpd with WORKERS workers, a control
# socket, and with "admin" an admin socket on ADMIN_PORT. Sets MURL (where /metrics,
# /livez and /readyz are served: the admin socket, else the public one) and WSURL; unless
# "none" (no endpoints served), waits until every worker is active.
start_node() {
    local workers=$1 where=$2 extra=${3:-} adm=""
    ADMIN_PORT=
    if [ "$where" = admin ]; then
        ADMIN_PORT=$(free_port) || return 1
        LH_PORTS_TAKEN="$LH_PORTS_TAKEN $ADMIN_PORT"
        adm='"admin": {"listen": ["127.0.0.1:'$ADMIN_PORT'"]},'
    fi
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": '"$workers"',
        '"$adm"'
        "control_socket": "'"$T"'/ctl.sock",
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]}'"${extra:+,
        $extra}"'
    }' || return 1
    WSURL=ws://127.0.0.1:$LH_PORT/
    if [ -n "$ADMIN_PORT" ]; then MURL=http://127.0.0.1:$ADMIN_PORT; else MURL=http://127.0.0.1:$LH_PORT; fi
    if [ "$where" != none ]; then wait_metric 'lhttpd_workers{state="active"}' "$workers" 10; fi
}

# --- reading /metrics ------------------------------------------------------------------

# metric SERIES: the value of SERIES (exactly as exposed, labels in order) in a new scrape.
metric() { "$PY" "$SCRAPE" value "$MURL/metrics" "$1"; }
metric_is() { local v; v=$(metric "$1" 2>/dev/null) && [ "$v" = "$2" ]; }
metric_gt() { local v; v=$(metric "$1" 2>/dev/null) && [ "$v" -gt "$2" ]; }
metric_ge() { local v; v=$(metric "$1" 2>/dev/null) && [ "$v" -ge "$2" ]; }

# wait_metric SERIES VALUE [SECONDS]: waits until SERIES has VALUE; says what it has if not.
wait_metric() {
    wait_for "${3:-5}" metric_is "$1" "$2" && return 0
    echo "$1 is $(metric "$1" 2>&1), expected $2" >&2
    return 1
}

# nats_decided N: messages published to NATS plus messages that did not need NATS is N.
nats_decided() {
    [ $(($(metric 'lhttpd_nats_messages_total{direction="out"}') +
         $(metric lhttpd_nats_publishes_skipped_total))) -eq "$1" ]
}

# progress [N]: waits until clients have published N (default 30) more messages.
progress() {
    local v
    v=$(metric 'lhttpd_publishes_total{source="websocket"}') || return 1
    wait_for 10 metric_gt 'lhttpd_publishes_total{source="websocket"}' $((v + ${1:-30}))
}

# scrape FILE [BASE]: /metrics from BASE (default MURL) with curl into FILE; prints nothing.
scrape() { curl -sf --max-time 5 -o "$1" "${2:-$MURL}/metrics"; }

# in_scrape FILE SERIES: the value of SERIES in a saved scrape.
in_scrape() { awk -v k="$2" '$1 == k { print $2; f = 1 } END { exit !f }' "$1"; }

# promtool_clean FILE: promtool check metrics finds no problem in FILE.
promtool_clean() {
    local out rc=0
    out=$(promtool check metrics <"$1" 2>&1) || rc=$?
    [ $rc -eq 0 ] && [ -z "$out" ] && return 0
    echo "promtool check metrics (exit $rc) on $1:" >&2
    printf '%s\n' "$out" >&2
    return 1
}

code_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@"; }

# --- clients ---------------------------------------------------------------------------

# fleet NAME MODE ARGS...: wsfleet.py MODE against WSURL in the background; its output
# goes to $T/NAME.out; modes that wait for a stop file get $T/NAME.stop (stop_fleet NAME).
fleet() {
    local name=$1 mode=$2 stop=()
    shift 2
    case $mode in hold | traffic | slow) stop=(--stop-file "$T/$name.stop") ;; esac
    "$PY" "$FLEET" "$mode" "$WSURL" "${stop[@]}" "$@" >"$T/$name.out" 2>&1 3>&- &
    lh_record $!
}
fleet_has() { grep -qE -- "$2" "$T/$1.out"; }
wait_fleet() {
    wait_for "${3:-10}" fleet_has "$1" "$2" && return 0
    echo "$1 did not print /$2/; it printed:" >&2
    cat "$T/$1.out" >&2
    return 1
}
stop_fleet() { touch "$T/$1.stop"; }

# nats_subs: how many channel subscriptions nats-server holds (start_nats --monitor);
# each worker's presence subscription (<prefix>.$peers) is not a channel's.
nats_subs() {
    curl -s --max-time 2 "http://127.0.0.1:$NATS_MON_PORT/connz?subs=1" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print(sum(1 for c in d.get("connections") or [] for s in c.get("subscriptions_list") or []
          if not s.endswith(".$peers")))'
}

nats_subs_is() { [ "$(nats_subs)" = "$1" ]; }

# worker_channels: channels counted in each worker and summed (one NATS subscription
# each); the series is lhttpd_worker_channels_sum, or per worker lhttpd_worker_channels.
worker_channels() {
    local name v
    for name in lhttpd_worker_channels lhttpd_worker_channels_sum; do
        v=$("$PY" "$SCRAPE" sum "$MURL/metrics" "$name") && [ "$v" -gt 0 ] && { echo "$v"; return 0; }
    done
    return 1
}

# nats_subs_ready: every worker's channel has its NATS subscription, so that a message
# published on one worker reaches the subscribers of the others.
nats_subs_ready() {
    local n c
    n=$(nats_subs) && c=$(worker_channels) && [ "$n" = "$c" ]
}

# workers_with_clients: how many workers have WebSocket connections open.
workers_with_clients() {
    curl -s --max-time 2 "$MURL/metrics" |
        awk '/^lhttpd_worker_websocket_connections\{/ && $2 > 0 { n++ } END { print n + 0 }'
}

# --- promtool: the exposition format --------------------------------------------------------

@test "promtool check metrics: clean under traffic on the admin socket; the public socket answers 404 there" {
    start_node 2 admin
    fleet subs hold 5 --channel c
    fleet load traffic --clients 4 --channel c --interval-ms 5
    wait_fleet subs '^ready 5$'
    wait_fleet load '^running$'
    progress 50
    for i in 1 2 3; do
        scrape "$T/scrape-$i.txt"
        promtool_clean "$T/scrape-$i.txt"
    done
    # Taken while messages flowed: every kind of series is there and moving.
    [ "$(in_scrape "$T/scrape-1.txt" 'lhttpd_websocket_connections')" -ge 9 ]
    [ "$(in_scrape "$T/scrape-1.txt" 'lhttpd_deliveries_total')" -gt 0 ]
    [ "$(in_scrape "$T/scrape-1.txt" 'lhttpd_delivery_latency_seconds_count')" -gt 0 ]
    [ "$(in_scrape "$T/scrape-1.txt" 'lhttpd_message_size_bytes_count')" -gt 0 ]
    [ "$(in_scrape "$T/scrape-3.txt" 'lhttpd_publishes_total{source="websocket"}')" -gt \
        "$(in_scrape "$T/scrape-1.txt" 'lhttpd_publishes_total{source="websocket"}')" ]
    [ "$(in_scrape "$T/scrape-3.txt" 'lhttpd_http_requests_total{endpoint="metrics",status="200"}')" -ge 2 ]
    [ "$(curl -s -o /dev/null -w '%{content_type}' "$MURL/metrics")" = "text/plain; version=0.0.4; charset=utf-8" ]
    for p in /livez /readyz; do [ "$(code_of "$MURL$p")" = 200 ]; done
    for p in /metrics /livez /readyz; do
        [ "$(code_of "http://127.0.0.1:$LH_PORT$p")" = 404 ] || { echo "public $p is not 404" >&2; return 1; }
    done
    # OPTIONS * names the methods each socket serves.
    curl -s -o /dev/null -D - -X OPTIONS --request-target '*' --max-time 5 "$MURL" |
        grep -qx $'Allow: GET, HEAD, OPTIONS\r'
    curl -s -o /dev/null -D - -X OPTIONS --request-target '*' --max-time 5 "http://127.0.0.1:$LH_PORT" |
        grep -qx $'Allow: GET, HEAD, POST, OPTIONS\r'
    stop_fleet load
    stop_fleet subs
    wait_fleet load '^traffic published'
    wait_fleet subs '^received'
}

@test "promtool check metrics: clean under traffic on the public socket when there is no admin socket" {
    start_node 2 public
    fleet subs hold 5 --channel c
    fleet load traffic --clients 4 --channel c --interval-ms 5
    wait_fleet subs '^ready 5$'
    wait_fleet load '^running$'
    progress 50
    for i in 1 2 3; do
        scrape "$T/scrape-$i.txt"
        promtool_clean "$T/scrape-$i.txt"
    done
    [ "$(in_scrape "$T/scrape-1.txt" 'lhttpd_deliveries_total')" -gt 0 ]
    [ "$(in_scrape "$T/scrape-3.txt" 'lhttpd_publishes_total{source="websocket"}')" -gt \
        "$(in_scrape "$T/scrape-1.txt" 'lhttpd_publishes_total{source="websocket"}')" ]
    [ "$(code_of "$MURL/livez")" = 200 ]
    [ "$(code_of "$MURL/readyz")" = 200 ]
    stop_fleet load
    stop_fleet subs
    wait_fleet load '^traffic published'
}

@test "admin.endpoints_on_public false without an admin socket: /metrics, /livez, /readyz are 404" {
    start_node 1 none '"admin": {"endpoints_on_public": false}'
    for p in /metrics /livez /readyz '/readyz?verbose'; do
        [ "$(code_of "http://127.0.0.1:$LH_PORT$p")" = 404 ] || { echo "$p is not 404" >&2; return 1; }
    done
    # The server itself serves: a WebSocket path still answers (426 without Upgrade).
    [ "$(code_of "http://127.0.0.1:$LH_PORT/")" = 426 ]
}

@test "promtool: the alert rules and the example scrape configuration pass check and unit tests" {
    run promtool check rules "$PROMDIR/lhttpd-alerts.yml"
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    has_match 'SUCCESS: ([0-9]+) rules found'
    n=$(printf '%s\n' "$output" | sed -nE 's/.*SUCCESS: ([0-9]+) rules found.*/\1/p')
    [ "$n" -ge 10 ]
    run promtool check config "$PROMDIR/lhttpd-scrape.yml"
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    has_match 'SUCCESS: 1 rule files found'
    # Unit tests of the rules: the alerts fire on the series they describe, and only then.
    # The second file runs against a copy without annotations, so that its expectations
    # name labels only.
    cp "$PROMDIR/lhttpd-alerts.yml" "$T/alerts.yml"
    awk '/^        annotations:/ { skip = 1; next } skip && NF && match($0, /[^ ]/) <= 9 { skip = 0 } !skip' \
        "$PROMDIR/lhttpd-alerts.yml" >"$T/alerts-bare.yml"
    if grep -q 'annotations:' "$T/alerts-bare.yml"; then echo "annotations left" >&2; return 1; fi
    [ "$(grep -c '^ *- alert:' "$T/alerts-bare.yml")" = "$(grep -c '^ *- alert:' "$PROMDIR/lhttpd-alerts.yml")" ]
    cat >"$T/down.test.yml" <<'EOF'
rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="lhttpd",instance="a:9081"}'
        values: '1 1 0 0 0 0'
      - series: 'up{job="lhttpd",instance="b:9081"}'
        values: '1 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 2m
        alertname: LhttpdDown
      - eval_time: 4m
        alertname: LhttpdDown
        exp_alerts:
          - exp_labels: {severity: critical, job: lhttpd, instance: "a:9081"}
            exp_annotations:
              summary: "lhttpd on a:9081 does not answer /metrics"
              description: "Prometheus has not been able to scrape a:9081 for a minute: the master is down, every worker is stuck, or the admin socket is unreachable. Check `systemctl status lhttpd` and `lhttpd -s status`."
      - eval_time: 4m
        alertname: LhttpdTargetMissing
EOF
    cat >"$T/rules.test.yml" <<'EOF'
rule_files: [alerts-bare.yml]
evaluation_interval: 1m
tests:
  # Worker 0 loses NATS at 1m, worker 1 at 4m; a reload fails at 3m.
  - interval: 1m
    input_series:
      - series: 'lhttpd_workers{job="lhttpd",instance="b:9081",state="active"}'
        values: '2 2 2 2 2 2 2 2'
      - series: 'lhttpd_nats_connected{job="lhttpd",instance="b:9081",worker="0",state="active"}'
        values: '1 0 0 0 0 0 0 0'
      - series: 'lhttpd_nats_connected{job="lhttpd",instance="b:9081",worker="1",state="active"}'
        values: '1 1 1 1 0 0 0 0'
      - series: 'lhttpd_reloads_total{job="lhttpd",instance="b:9081",result="failure"}'
        values: '0 0 0 1 1 1 1 1'
      - series: 'lhttpd_reloads_total{job="lhttpd",instance="b:9081",result="success"}'
        values: '0 1 1 1 2 2 2 2'
      - series: 'lhttpd_worker_restarts_total{job="lhttpd",instance="b:9081"}'
        values: '0 0 0 0 0 0 0 0'
      - series: 'lhttpd_slow_consumer_closes_total{job="lhttpd",instance="b:9081"}'
        values: '0 0 0 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 1m
        alertname: LhttpdNatsDisconnected
      - eval_time: 3m
        alertname: LhttpdNatsDisconnected
        exp_alerts:
          - exp_labels: {severity: warning, job: lhttpd, instance: "b:9081", worker: "0", state: active}
      - eval_time: 5m
        alertname: LhttpdNotReady
      - eval_time: 7m
        alertname: LhttpdNotReady
        exp_alerts:
          - exp_labels: {severity: critical, job: lhttpd, instance: "b:9081"}
      - eval_time: 2m
        alertname: LhttpdReloadFailed
      - eval_time: 4m
        alertname: LhttpdReloadFailed
        exp_alerts:
          - exp_labels: {severity: warning, job: lhttpd, instance: "b:9081", result: failure}
      - eval_time: 7m
        alertname: LhttpdWorkerRestarted
      - eval_time: 7m
        alertname: LhttpdSlowConsumersClosing
  # Slow deliveries from 11m; a worker dies at 2m, then keeps dying from 4m; most
  # handshakes are refused throughout; slow consumers closed from the start.
  - interval: 1m
    input_series:
      - series: 'lhttpd_delivery_latency_seconds_bucket{job="lhttpd",instance="b:9081",le="0.001"}'
        values: '0+100x30'
      - series: 'lhttpd_delivery_latency_seconds_bucket{job="lhttpd",instance="b:9081",le="0.5"}'
        values: '0+100x30'
      - series: 'lhttpd_delivery_latency_seconds_bucket{job="lhttpd",instance="b:9081",le="1"}'
        values: '0+100x10 1000+1000x20'
      - series: 'lhttpd_delivery_latency_seconds_bucket{job="lhttpd",instance="b:9081",le="+Inf"}'
        values: '0+100x10 1000+1000x20'
      - series: 'lhttpd_worker_restarts_total{job="lhttpd",instance="b:9081"}'
        values: '0 0 1 1 2 3 4 5 6 7 8 9 10'
      - series: 'lhttpd_handshakes_rejected_total{job="lhttpd",instance="b:9081",reason="origin"}'
        values: '0+600x30'
      - series: 'lhttpd_websocket_connections_accepted_total{job="lhttpd",instance="b:9081"}'
        values: '0+600x30'
      - series: 'lhttpd_slow_consumer_closes_total{job="lhttpd",instance="b:9081"}'
        values: '0+20x30'
    alert_rule_test:
      - eval_time: 10m
        alertname: LhttpdDeliveryLatencyHigh
      - eval_time: 25m
        alertname: LhttpdDeliveryLatencyHigh
        exp_alerts:
          - exp_labels: {severity: warning, job: lhttpd, instance: "b:9081"}
      - eval_time: 3m
        alertname: LhttpdWorkerRestarted
        exp_alerts:
          - exp_labels: {severity: warning, job: lhttpd, instance: "b:9081"}
      - eval_time: 3m
        alertname: LhttpdWorkersCrashLooping
      - eval_time: 12m
        alertname: LhttpdWorkersCrashLooping
        exp_alerts:
          - exp_labels: {severity: critical, job: lhttpd, instance: "b:9081"}
      - eval_time: 25m
        alertname: LhttpdHandshakeRejectionsHigh
        exp_alerts:
          - exp_labels: {severity: warning, job: lhttpd, instance: "b:9081"}
      - eval_time: 25m
        alertname: LhttpdSlowConsumersClosing
        exp_alerts:
          - exp_labels: {severity: warning, job: lhttpd, instance: "b:9081"}
      - eval_time: 25m
        alertname: LhttpdConnectionLimitReached
EOF
    cd "$T"
    run promtool test rules down.test.yml rules.test.yml
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
}

# --- a real Prometheus server -------------------------------------------------------------

# start_prometheus: Prometheus on PROM_PORT with the example files of etc/prometheus (the
# target moved to ADMIN_PORT, every interval 1 s); waits until it is ready.
start_prometheus() {
    local d=$T/prom try
    mkdir -p "$d"
    cp "$PROMDIR/lhttpd-alerts.yml" "$d/"
    sed -e "s/127\.0\.0\.1:9081/127.0.0.1:$ADMIN_PORT/" \
        -e 's/scrape_interval: 15s/scrape_interval: 1s/' \
        -e 's/evaluation_interval: 15s/evaluation_interval: 1s/' \
        -e 's/scrape_timeout: 5s/scrape_timeout: 1s/' \
        "$PROMDIR/lhttpd-scrape.yml" >"$d/prometheus.yml"
    grep -q "127.0.0.1:$ADMIN_PORT" "$d/prometheus.yml" || return 1
    if grep -E '(interval|timeout): ' "$d/prometheus.yml" | grep -qv ': 1s$'; then
        echo "an interval is not 1 s in $d/prometheus.yml" >&2
        return 1
    fi
    for try in 1 2 3; do
        PROM_PORT=$(free_port) || return 1
        LH_PORTS_TAKEN="$LH_PORTS_TAKEN $PROM_PORT"
        PROM=http://127.0.0.1:$PROM_PORT
        prometheus --config.file="$d/prometheus.yml" --storage.tsdb.path="$d/data" \
            --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$d/log" 2>&1 3>&- &
        PROM_PID=$!
        lh_record "$PROM_PID"
        wait_for 20 curl -sf -o /dev/null --max-time 1 "$PROM/-/ready" && return 0
        lh_stop_pid "$PROM_PID"
        grep -q 'address already in use' "$d/log" || break
    done
    echo "prometheus did not start:" >&2
    cat "$d/log" >&2
    return 1
}

# prom_is EXPR VALUE: Prometheus answers EXPR with one sample of VALUE.
prom_is() {
    local out
    out=$("$PY" "$SCRAPE" query "$PROM" "$1" 2>/dev/null) || return 1
    [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] && [ "${out%% *}" = "$2" ]
}

# prom_all EXPR=VALUE...: every expression has its value.
prom_all() {
    local kv
    for kv in "$@"; do prom_is "${kv%=*}" "${kv##*=}" || return 1; done
}

prom_show() {
    local kv
    for kv in "$@"; do echo "  ${kv%=*}: want ${kv##*=}, Prometheus has $("$PY" "$SCRAPE" query "$PROM" "${kv%=*}" 2>&1 | tr '\n' ' ')" >&2; done
}

target_up() { [ "$("$PY" "$SCRAPE" targets "$PROM" 2>/dev/null)" = "up lhttpd http://127.0.0.1:$ADMIN_PORT/metrics" ]; }

rules_ok() {
    local out
    out=$("$PY" "$SCRAPE" rules "$PROM" 2>/dev/null) || return 1
    [ "$(printf '%s\n' "$out" | grep -c '^ok lhttpd ')" -ge 10 ] && ! printf '%s\n' "$out" | grep -qv '^ok '
}

@test "Prometheus scrapes the admin socket with the example config and sees what the clients did" {
    start_nats --monitor
    start_node 2 admin
    start_prometheus
    fleet subs hold 6 --channel c --expect 7
    wait_fleet subs '^ready 6$'
    # Every worker with subscribers builds one frame per message; its NATS subscription
    # must be in place before the publishes, or a message published on another worker
    # would miss its subscribers.
    busy=$(workers_with_clients)
    [ "$busy" -ge 1 ]
    wait_for 5 nats_subs_is "$busy"
    fleet pub publish 7 --channel c
    wait_fleet pub '^published 7$'
    wait_fleet subs '^got-all 7$'
    wait_for 15 target_up || { "$PY" "$SCRAPE" targets "$PROM" >&2; return 1; }
    want=(
        'up{job="lhttpd"}=1'
        'lhttpd_websocket_connections=6'
        'sum(lhttpd_worker_websocket_connections)=6'
        'lhttpd_workers{state="active"}=2'
        'lhttpd_subscriptions=6'
        'lhttpd_publishes_total{source="websocket"}=7'
        'lhttpd_deliveries_total=42'
        "lhttpd_frames_built_total=$((7 * busy))"
        'lhttpd_channels=1'
        'lhttpd_lhttp_errors_total=0'
        'count(lhttpd_nats_connected == 1)=2'
    )
    wait_for 15 prom_all "${want[@]}" || { prom_show "${want[@]}"; return 1; }
    # The example alert rules load and evaluate against the real series, and none fires
    # or is pending (LhttpdTargetMissing may be pending from before the first scrape).
    wait_for 10 rules_ok || { "$PY" "$SCRAPE" rules "$PROM" >&2; return 1; }
    wait_for 5 prom_is 'count(ALERTS) or vector(0)' 0 || { "$PY" "$SCRAPE" query "$PROM" ALERTS >&2; return 1; }
    stop_fleet subs
    wait_fleet subs '^received 42 7 7$'
}

# --- counters never go down ---------------------------------------------------------------

@test "counters never decrease across 5 reloads and a killed worker under traffic" {
    start_node 2 admin '"drain_timeout_ms": 300, "shutdown_timeout_ms": 2000, "handoff": {"enabled": false}'
    fleet load traffic --clients 6 --channel c --interval-ms 10
    wait_fleet load '^running$'
    "$PY" "$SCRAPE" watch "$MURL/metrics" --stop-file "$T/watch.stop" --out "$T" >"$T/watch.log" 2>&1 3>&- &
    lh_record $!
    for i in 1 2 3 4 5; do
        progress 30
        run "$LHTTPD" -s reload -c "$LH_CONF"
        [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
        wait_metric lhttpd_config_generation $((i + 1))
        # The old workers ask their clients to reconnect after drain_timeout_ms and leave.
        wait_metric 'lhttpd_workers{state="draining"}' 0 10
        wait_metric lhttpd_websocket_connections 6 10
        if [ "$i" = 2 ]; then
            progress 30
            # The worker of generation 3 with the most connections.
            run "$LHTTPD" -s status -c "$LH_CONF"
            pid=$(printf '%s\n' "$output" |
                awk '$1 == "worker" && $6 == 3 && $7 == "active" && $8 > n { n = $8; p = $4 } END { print p }')
            [ -n "$pid" ] || { lh_show_output || :; return 1; }
            SKIP_ALIVE=1 # the worker dies on purpose
            kill -KILL "$pid"
            wait_metric lhttpd_worker_restarts_total 1 5
            wait_metric 'lhttpd_workers{state="active"}' 2 5
            wait_metric lhttpd_websocket_connections 6 10
        fi
    done
    progress 30
    stop_fleet load
    wait_fleet load '^traffic published'
    touch "$T/watch.stop"
    wait_for 10 test -s "$T/report"
    cat "$T/report" >&2
    # (Series listed twice during a reload are the next test's business.)
    read -r _ scrapes _ failed _ decreases _ <"$T/report"
    [ "$decreases" -eq 0 ]
    [ "$scrapes" -ge 30 ]
    wait_metric lhttpd_config_generation 6
    wait_metric 'lhttpd_reloads_total{result="success"}' 5
    wait_metric 'lhttpd_reloads_total{result="failure"}' 0
    wait_metric lhttpd_worker_restarts_total 1
    # The clients were moved by every reload (1012) and the kill (no close frame: 1006).
    line=$(grep '^traffic published' "$T/load.out")
    echo "$line" >&2
    [[ $line =~ closes\ .*1006: ]]
    [[ $line =~ closes\ .*1012: ]]
    read -r _ _ published _ received _ reopened _ <<<"$line"
    [ "$reopened" -ge 33 ]
    # What the clients did is still counted after six generations of workers came and
    # went: their counts were carried into the retired totals. (Messages in flight when
    # the worker died are lost; the rest is counted exactly once.)
    counted=$(metric 'lhttpd_publishes_total{source="websocket"}')
    echo "clients published $published, server counted $counted" >&2
    [ "$counted" -le "$published" ]
    [ $((counted * 100)) -ge $((published * 90)) ]
    [ "$(metric 'lhttpd_websocket_connections_closed_total{code="1012"}')" -ge 30 ]
}

@test "a scrape taken while a reload starts the new workers lists each worker once" {
    SKIP_ALIVE=1 # the reloads replace the workers this test started with
    # Prometheus rejects a whole scrape that has a series twice (the target is down for
    # that scrape), so the old and the new worker N must never both say state="active".
    start_node 2 admin
    for w in 1 2; do
        mkdir -p "$T/w$w"
        "$PY" "$SCRAPE" watch "$MURL/metrics" --stop-file "$T/watch.stop" --out "$T/w$w" >"$T/w$w/log" 2>&1 3>&- &
        lh_record $!
    done
    for i in 1 2 3 4 5 6 7 8; do
        run "$LHTTPD" -s reload -c "$LH_CONF"
        [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    done
    touch "$T/watch.stop"
    for w in 1 2; do
        wait_for 10 test -s "$T/w$w/report"
        head -n 5 "$T/w$w/report" >&2
        read -r _ scrapes _ failed _ decreases _ duplicates <"$T/w$w/report"
        [ "$scrapes" -ge 5 ]
        [ "$decreases" -eq 0 ]
        [ "$duplicates" -eq 0 ]
    done
    wait_metric lhttpd_config_generation 9
}

# --- gauges return to 0 -----------------------------------------------------------------------

@test "gauges return to 0 when every client has left, slow consumers and idle connections included" {
    start_nats --monitor
    start_node 2 admin '"limits": {"send_queue_bytes": 16777216}'
    fleet subs hold 20 --channel g1 --channel g2 --channel g3
    fleet slow1 slow --channel big1 --abort # leaves with an RST while its queue is half written
    fleet slow2 slow --channel big2         # overflows (4008) and reads its close at the end
    exec 5<>"/dev/tcp/127.0.0.1/$LH_PORT"   # an idle HTTP connection
    wait_fleet subs '^ready 20$'
    wait_fleet slow1 '^ready$'
    wait_fleet slow2 '^ready$'
    wait_metric lhttpd_websocket_connections 22
    wait_metric lhttpd_subscriptions 62
    wait_metric lhttpd_channels 5
    wait_for 5 nats_subs_ready
    # curl's own connection and the idle one.
    [ "$(curl -s "$MURL/metrics" | awk '$1 == "lhttpd_http_connections" { print $2 }')" = 2 ]
    # 6 MiB to slow1: more than the kernel buffers take, less than its queue may hold.
    fleet pub1 publish 24 --channel big1 --size 262144
    fleet pub2 publish 80 --channel big2 --size 262144
    fleet pub3 publish 50 --channel g1 --size 1000
    wait_fleet pub1 '^published 24$' 20
    wait_fleet pub2 '^published 80$' 20
    wait_fleet pub3 '^published 50$'
    wait_metric lhttpd_slow_consumer_closes_total 1 10
    metric_gt lhttpd_send_queue_bytes 0
    stop_fleet slow1
    stop_fleet slow2
    stop_fleet subs
    exec 5>&-
    wait_fleet slow1 '^aborted$'
    wait_fleet slow2 '^close 4008$'
    wait_fleet subs '^received 1000 50 50$'
    wait_metric lhttpd_websocket_connections 0
    wait_metric lhttpd_subscriptions 0
    wait_metric lhttpd_channels 0
    wait_metric 'lhttpd_worker_websocket_connections{worker="0",state="active"}' 0
    wait_metric 'lhttpd_worker_websocket_connections{worker="1",state="active"}' 0
    wait_metric lhttpd_send_queue_bytes 0
    # Only curl's connection is left: the gauge counts it while it is being answered.
    http_conns() { [ "$(curl -s "$MURL/metrics" | awk '$1 == "lhttpd_http_connections" { print $2 }')" = 1 ]; }
    wait_for 5 http_conns || { curl -s "$MURL/metrics" | grep '^lhttpd_http_connections' >&2; return 1; }
}

# --- /readyz and /livez -------------------------------------------------------------------

readyz_all() { # CODE: six requests in a row all answer CODE (both workers, most likely)
    local i
    for i in 1 2 3 4 5 6; do [ "$(code_of "$MURL/readyz")" = "$1" ] || return 1; done
}

@test "/readyz is 503 within 2 s of NATS stopping and 200 within 2 s of its return; /livez stays 200" {
    start_nats
    start_node 2 admin
    readyz_all 200
    run curl -s "$MURL/readyz?verbose"
    has_line '[+] accepting'
    has_line '[+] nats'
    has_line '[+] history'
    has_line '[+] not stopping'
    has_line '[+] not draining'
    has_match '^worker [01]: ok$'
    [ "${#lines[@]}" -eq 6 ]
    ( while [ ! -e "$T/livez.stop" ]; do
        code_of "$MURL/livez"; echo
        sleep 0.05
    done ) >"$T/livez.codes" 3>&- &
    lh_record $!

    kill -TERM "$NATS_PID"
    wait_for 2 readyz_all 503
    wait_for 5 lh_gone "$NATS_PID"
    [ "$(code_of "$MURL/livez")" = 200 ]
    run curl -s -w '%{http_code}\n' "$MURL/readyz?verbose"
    has_line '[+] accepting'
    has_line '[-] nats'
    has_line '[+] not stopping'
    has_line '[+] not draining'
    has_match '^worker [01]: not ready$'
    last_line_is 503
    run curl -s -w '\n%{http_code} %{content_type}\n' "$MURL/readyz?verbose=json"
    last_line_is '503 application/json'
    printf '%s\n' "${lines[0]}" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
assert d["status"] == "not ready", d
assert d["checks"] == {"accepting": True, "nats": False, "history": True, "stopping": False, "draining": False}, d
assert d["worker"] in (0, 1), d'
    [ "$(code_of "$MURL/livez")" = 200 ]

    nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$T/nats-again.log" 2>&1 3>&- &
    NATS_PID=$!
    lh_record $!
    wait_for 5 listening_by "$NATS_PORT" "$NATS_PID"
    wait_for 2 readyz_all 200
    run curl -s "$MURL/readyz?verbose=json"
    printf '%s\n' "$output" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
assert d["status"] == "ok", d
assert d["checks"] == {"accepting": True, "nats": True, "history": True, "stopping": False, "draining": False}, d'
    touch "$T/livez.stop"
    wait_for 5 grep -q . "$T/livez.codes"
    [ "$(grep -vc '^200$' "$T/livez.codes")" = 0 ] || { cat "$T/livez.codes" >&2; return 1; }
    wait_metric 'lhttpd_nats_connected{worker="0",state="active"}' 1
    wait_metric 'lhttpd_nats_connected{worker="1",state="active"}' 1
    wait_for 3 metric_ge lhttpd_nats_reconnects_total 2
}

# --- what is counted -----------------------------------------------------------------------------

@test "handshake refusals, HTTP requests by endpoint and status, and closes by code are counted" {
    start_nats --monitor
    start_node 2 admin '"websocket": {"allowed_origins": ["http://good.example"]}, "limits": {"send_queue_bytes": 262144}'
    scrape "$T/before.txt"
    b() { in_scrape "$T/before.txt" "$1" || echo 0; }
    origin0=$(b 'lhttpd_handshakes_rejected_total{reason="origin"}')
    ws403=$(b 'lhttpd_http_requests_total{endpoint="websocket",status="403"}')
    c1000=$(b 'lhttpd_websocket_connections_closed_total{code="1000"}')
    cother=$(b 'lhttpd_websocket_connections_closed_total{code="other"}')
    c4008=$(b 'lhttpd_websocket_connections_closed_total{code="4008"}')
    slow0=$(b lhttpd_slow_consumer_closes_total)
    acc0=$(b lhttpd_websocket_connections_accepted_total)
    err0=$(b lhttpd_lhttp_errors_total)
    in0=$(b lhttpd_lhttp_messages_received_total)
    # No request yet on these two: their series are absent until counted.
    run in_scrape "$T/before.txt" 'lhttpd_http_requests_total{endpoint="other",status="404"}'
    [ "$status" -eq 1 ]
    run in_scrape "$T/before.txt" 'lhttpd_http_requests_total{endpoint="metrics",status="405"}'
    [ "$status" -eq 1 ]

    run "$PY" "$LH_LIB/wsclient.py" --origin http://evil.example "$WSURL"
    lines_are "rejected 403"
    [ "$(code_of "http://127.0.0.1:$LH_PORT/no/such/page")" = 404 ]
    [ "$(code_of "http://127.0.0.1:$LH_PORT/no/such/page")" = 404 ]
    [ "$(code_of -X POST "$MURL/metrics")" = 405 ]
    wait_metric 'lhttpd_handshakes_rejected_total{reason="origin"}' $((origin0 + 1))
    wait_metric 'lhttpd_http_requests_total{endpoint="websocket",status="403"}' $((ws403 + 1))
    wait_metric 'lhttpd_http_requests_total{endpoint="other",status="404"}' 2
    wait_metric 'lhttpd_http_requests_total{endpoint="metrics",status="405"}' 1

    # An invalid LHTTP message gets an error reply and is counted as an error.
    run "$PY" "$LH_LIB/wsclient.py" --origin http://good.example "$WSURL" 'text:not lhttp' recv close:1000
    has_match '^text [0-9]+ LHTTP/1\.0 error'
    has_line 'closed 1000'
    # Clients closing with 1000 and with a private code (counted as "other").
    fleet a hold 1 --origin http://good.example --close 1000
    fleet b hold 1 --origin http://good.example --close 4100
    # A slow consumer, closed with 4008.
    fleet slow slow --channel big
    wait_fleet a '^ready 1$'
    wait_fleet b '^ready 1$'
    wait_fleet slow '^ready$'
    wait_for 5 nats_subs_ready
    fleet pub publish 40 --channel big --size 262144 --origin http://good.example
    wait_fleet pub '^published 40$' 20
    wait_metric lhttpd_slow_consumer_closes_total $((slow0 + 1)) 10
    stop_fleet slow
    stop_fleet a
    stop_fleet b
    wait_fleet slow '^close 4008$'
    wait_fleet a '^received 0 0 0$'
    wait_fleet b '^received 0 0 0$'
    wait_metric 'lhttpd_websocket_connections_closed_total{code="1000"}' $((c1000 + 3))
    wait_metric 'lhttpd_websocket_connections_closed_total{code="other"}' $((cother + 1))
    wait_metric 'lhttpd_websocket_connections_closed_total{code="4008"}' $((c4008 + 1))
    wait_metric lhttpd_websocket_connections_accepted_total $((acc0 + 5))
    wait_metric lhttpd_lhttp_errors_total $((err0 + 1))
    # wsclient 1, a and b 1 each, slow 1, the publisher 40 + its final ping.
    wait_metric lhttpd_lhttp_messages_received_total $((in0 + 45))
    [ "$(metric lhttpd_slow_consumer_dropped_messages_total)" -ge 1 ]
}

@test "fan-out: one publish to 100 subscribers in one worker builds one frame and makes 100 deliveries" {
    start_node 1 admin
    fleet subs hold 100 --channel fan --expect 1
    wait_fleet subs '^ready 100$' 20
    wait_metric lhttpd_subscriptions 100
    scrape "$T/before.txt"
    frames0=$(in_scrape "$T/before.txt" lhttpd_frames_built_total)
    deliv0=$(in_scrape "$T/before.txt" lhttpd_deliveries_total)
    pub0=$(in_scrape "$T/before.txt" 'lhttpd_publishes_total{source="websocket"}')
    out0=$(in_scrape "$T/before.txt" 'lhttpd_nats_messages_total{direction="out"}')
    skip0=$(in_scrape "$T/before.txt" lhttpd_nats_publishes_skipped_total)
    fleet pub publish 1 --channel fan
    wait_fleet pub '^published 1$'
    wait_fleet subs '^got-all 1$'
    wait_metric 'lhttpd_publishes_total{source="websocket"}' $((pub0 + 1))
    wait_metric lhttpd_deliveries_total $((deliv0 + 100))
    wait_metric lhttpd_frames_built_total $((frames0 + 1))
    # One NATS decision: published, or (alone on NATS, past the connection's first
    # second) skipped.
    wait_for 5 nats_decided $((out0 + skip0 + 1))
    stop_fleet subs
    wait_fleet subs '^received 100 1 1$'
}
