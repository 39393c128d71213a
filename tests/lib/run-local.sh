#!/usr/bin/env bash
# `make run`: a local nats-server with JetStream (unless one already listens on
# 127.0.0.1:4222), its store in the run's temporary directory, and lhttpd in the
# foreground with etc/lhttpd.json (port 8081), serving the chat demo with identity on: a
# random demo secret, the auth key and the "chat" (with history: the rooms' last 100
# messages) and "team" namespaces (see tests/lib/demo-identity.py), and the demo users'
# tokens in the web root (demo-tokens.js).
# LH_RUN_TLS=1 also serves https:// and wss:// on port 8443 with LH_RUN_CERT and LH_RUN_KEY
# (default /tmp/cert.pem and /tmp/key.pem; README, TLS, makes a self-signed pair).
# LH_RUN_AUTH=0 runs without identity, as before issue 17. Ctrl-C stops both, and so does a
# SIGTERM or SIGHUP to this script, or make exiting without passing its signal on (a
# SIGTERM to make alone), which the wait loop notices. (A SIGHUP to make alone makes GNU
# make wait for its children instead of exiting: nothing here can see it.)
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
LHTTPD=${LHTTPD:-$top/build/lhttpd}
CONFIG=${CONFIG:-$top/etc/lhttpd.json}
LH_RUN_AUTH=${LH_RUN_AUTH:-1}
nats_pid=
lhttpd_pid=
run_dir=

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

parent=$PPID
outer=${LH_RUN_MAKE:-$PPID} # the `make run` the user started (make passes it)

# 0 while the make that started this script and its own parent are both there (a dead
# parent shows as a changed parent pid: this script was re-parented).
make_alive() {
    kill -0 "$outer" 2>/dev/null && [ "$(awk '{print $4}' "/proc/$$/stat")" = "$parent" ]
}

cleanup() {
    trap - INT TERM HUP EXIT
    [ -n "$lhttpd_pid" ] && kill -TERM "$lhttpd_pid" 2>/dev/null && wait "$lhttpd_pid" 2>/dev/null
    [ -n "$nats_pid" ] && kill -TERM "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null
    [ -n "$run_dir" ] && rm -rf "$run_dir"
    echo "run: stopped"
}
trap cleanup INT TERM HUP EXIT

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/lhttpd-run.XXXXXX") || exit 1
if port_open 4222; then
    echo "run: using the NATS server already on 127.0.0.1:4222 (the rooms' history needs its JetStream: -js)"
else
    nats-server -a 127.0.0.1 -p 4222 -js -sd "$run_dir/jetstream" >"${TMPDIR:-/tmp}/lhttpd-run-nats.log" 2>&1 &
    nats_pid=$!
    for _ in $(seq 1 100); do port_open 4222 && break; sleep 0.05; done
    port_open 4222 || { echo "run: nats-server did not start"; exit 1; }
    echo "run: nats-server with JetStream on 127.0.0.1:4222 (pid $nats_pid)"
fi
# The chat demo: clients/chat and the SDK it imports (clients/js/lhttp.js), copied side by
# side (lhttpd follows no symbolic link) into the web root that static.root names. The
# configuration, the control socket (so that `lhttpd -s reload -c "$run_conf"` reaches
# this server), the demo secret and JetStream's store go to the temporary directory
# removed at exit (so the rooms' history lasts as long as the run); the demo
# users' tokens replace the copy of clients/chat/demo-tokens.js that has none;
# static.max_age_s 0 keeps edited files from being cached while developing.
www=$(cd "$(dirname "$LHTTPD")" && pwd)/www
mkdir -p "$www"
cp "$top"/clients/chat/*.html "$top"/clients/chat/*.js "$top"/clients/chat/*.css \
    "$top/clients/js/lhttp.js" "$www/"
run_conf=$run_dir/lhttpd.json
identity=()
[ "$LH_RUN_AUTH" != 0 ] && identity=(--identity "$run_dir")
python3 "$top/tests/lib/demo-identity.py" config --base "$CONFIG" --out "$run_conf" --www "$www" \
    --control-socket "$run_dir/ctl.sock" "${identity[@]}" || { echo "run: could not write $run_conf"; exit 1; }
if [ "${LH_RUN_TLS:-0}" != 0 ]; then
    python3 - "$run_conf" "${LH_RUN_CERT:-/tmp/cert.pem}" "${LH_RUN_KEY:-/tmp/key.pem}" <<'PY' ||
import json, sys
conf, cert, key = sys.argv[1:4]
with open(conf) as f:
    c = json.load(f)
c.setdefault("listen", [":8081"]).append(
    {"address": ":8443", "tls": {"cert_file": cert, "key_file": key}})
with open(conf, "w") as f:
    json.dump(c, f, indent=2)
PY
        { echo "run: could not add the TLS listener to $run_conf"; exit 1; }
    echo "run: TLS on https://localhost:8443/ (${LH_RUN_CERT:-/tmp/cert.pem})"
fi
if [ "$LH_RUN_AUTH" != 0 ]; then
    echo "run: identity on: sign in as alice, bob (both may enter #team.secret) or carol"
fi
echo "run: lhttpd on http://localhost:8081/ (Ctrl-C stops; reload: $LHTTPD -s reload -c $run_conf)"
"$LHTTPD" -c "$run_conf" &
lhttpd_pid=$!
# Wait for lhttpd, and stop both when make is gone: make does not pass its own SIGTERM
# on to this script.
while kill -0 "$lhttpd_pid" 2>/dev/null; do
    if ! make_alive; then
        echo "run: make went away"
        exit 1
    fi
    sleep 0.3 &
    wait $! 2>/dev/null
done
wait "$lhttpd_pid"
rc=$?
lhttpd_pid=
exit $rc
