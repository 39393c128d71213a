# Helpers for tests that talk to tests/lib/backend.py (a real HTTP/1.1 server on loopback):
# starting one, reading its log. Loaded by the bats files that need a backend.

BACKEND=$LH_LIB/backend.py

# start_backend NAME ROUTES_JSON: starts backend.py on a port the kernel picks, with its
# routes in a file (rewritable later) and its log; sets NAME_PORT, NAME_PID, NAME_LOG and
# NAME_ROUTES.
start_backend() {
    local name=$1 dir pid port
    dir=$(lh_tmp)
    printf '%s\n' "$2" >"$dir/$name.routes.json"
    : >"$dir/$name.log"
    rm -f "$dir/$name.port"
    "$PY" "$BACKEND" serve --port-file "$dir/$name.port" --log "$dir/$name.log" \
        --routes "$dir/$name.routes.json" >"$dir/$name.out" 2>&1 3>&- &
    pid=$!
    lh_record "$pid"
    wait_for 5 test -s "$dir/$name.port" || { cat "$dir/$name.out" >&2; return 1; }
    port=$(cat "$dir/$name.port")
    LH_PORTS_TAKEN="$LH_PORTS_TAKEN $port"
    printf -v "${name}_PORT" %s "$port"
    printf -v "${name}_PID" %s "$pid"
    printf -v "${name}_LOG" %s "$dir/$name.log"
    printf -v "${name}_ROUTES" %s "$dir/$name.routes.json"
    export "${name}_PORT" "${name}_PID" "${name}_LOG" "${name}_ROUTES" LH_PORTS_TAKEN
}

# blog count|show LOG ARGS...: backend.py's log reader.
blog() { "$PY" "$BACKEND" "$@"; }

