#!/usr/bin/env bats
# lhttpc's own behaviour as a command: usage errors, exit statuses (1 connection, 2 usage,
# 3 timeout, 4 closed by the server), output formats, interactive input from a pipe,
# large and fragmented messages, history (offsets in every format, --since, --epoch,
# --history). One lhttpd (with a nats-server peer) serves the file; the history tests
# start their own, one-worker, with a JetStream nats-server.

bats_require_minimum_version 1.5.0
load ../lib/helpers

LHTTPC=${LHTTPC:-$LH_LIB/../../build/lhttpc}

setup_file() {
    start_lhttpd '{
        // lhttpc.bats: the default paths plus an echo path; small messages
        "listen": ["127.0.0.1:@PORT@"],
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "websocket": {"echo_paths": ["/echo"]},
        "limits": {"max_message_bytes": 4194304},
        "publish": {"token": "t0ken"}
    }'
}

teardown_file() { stop_all; }

# Background clients of one test; the server's pids stay with teardown_file.
teardown() {
    local p
    for p in ${BG_PIDS:-}; do lh_stop_pid "$p"; done
    BG_PIDS=
}

url() { echo "ws://127.0.0.1:$LH_PORT${1:-/}"; }

# --- usage: exit 2 ---------------------------------------------------------------

@test "lhttpc: --help and --version exit 0; lhttpc(1) documents every option of --help" {
    run "$LHTTPC" --help
    [ "$status" -eq 0 ]
    has_match '^Exit status: 0 ok; 1 connection'
    man_matches_help "$LH_LIB/../../packaging/man/lhttpc.1" "$output"
    run "$LHTTPC" --version
    [ "$status" -eq 0 ]
    has_match '^lhttpc [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "lhttpc: usage errors exit 2 without connecting" {
    local u=ws://127.0.0.1:1/
    run "$LHTTPC"
    [ "$status" -eq 2 ]
    has_match 'no URL given'
    run "$LHTTPC" "$u" frobnicate
    [ "$status" -eq 2 ]
    has_match "unknown mode 'frobnicate'"
    run "$LHTTPC" "$u" send
    [ "$status" -eq 2 ]
    run "$LHTTPC" "$u" send 'two words'
    [ "$status" -eq 2 ]
    run "$LHTTPC" "$u" send chat -H novalue
    [ "$status" -eq 2 ]
    run "$LHTTPC" -n many "$u" listen
    [ "$status" -eq 2 ]
    run "$LHTTPC" --format xml "$u" listen
    [ "$status" -eq 2 ]
    run "$LHTTPC" "$u" subscribe
    [ "$status" -eq 2 ]
    run "$LHTTPC" "$u" publish 'bad*channel'
    [ "$status" -eq 2 ]
    run "$LHTTPC" --bogus "$u" listen
    [ "$status" -eq 2 ]
    run "$LHTTPC" --http "$u" listen
    [ "$status" -eq 2 ]
    run "$LHTTPC" wss:/127.0.0.1:1/ listen
    [ "$status" -eq 2 ]
    has_match 'must start with ws:// or wss://'
    run "$LHTTPC" http://127.0.0.1:1/ listen
    [ "$status" -eq 2 ]
}

@test "lhttpc: a body that is not UTF-8 needs --binary" {
    printf 'a\377b' >"$BATS_TEST_TMPDIR/body"
    run "$LHTTPC" "$(url /echo)" send chat -f "$BATS_TEST_TMPDIR/body"
    [ "$status" -eq 2 ]
    has_match 'not UTF-8'
    run "$LHTTPC" --binary --format json "$(url /echo)" send chat -f "$BATS_TEST_TMPDIR/body"
    [ "$status" -eq 0 ]
    lines_are '{"command":"chat","headers":[],"body":"Yf9i","body_base64":true,"binary":true}'
}

@test "lhttpc: interactive input that breaks the grammar exits 2 when not a terminal" {
    run "$LHTTPC" "$(url)" <<<'not a command'
    [ "$status" -eq 2 ]
    has_match 'stdin line 1: invalid command'
}

# --- connection failures: exit 1 -------------------------------------------------------

@test "lhttpc: connection refused exits 1" {
    local port
    port=$(free_port)
    run "$LHTTPC" -w 5000 "ws://127.0.0.1:$port/" listen
    [ "$status" -eq 1 ]
    has_match "connect to 127.0.0.1:$port: Connection refused"
}

@test "lhttpc: a refused handshake exits 1 and shows the status line" {
    run "$LHTTPC" -w 5000 "$(url /no-such-path)" listen
    [ "$status" -eq 1 ]
    has_match '^lhttpc: handshake refused: HTTP/1\.1 404'
}

@test "lhttpc: an HTTP publish to a closed port exits 1" {
    local port
    port=$(free_port)
    run "$LHTTPC" --http "http://127.0.0.1:$port/publish" publish news -d x
    [ "$status" -eq 1 ]
}

# --- timeouts: exit 3 ------------------------------------------------------------------

@test "lhttpc: listen -w gives up with exit 3" {
    local t0 t1
    t0=${EPOCHREALTIME/./}
    run "$LHTTPC" -w 300 "$(url)" listen
    t1=${EPOCHREALTIME/./}
    [ "$status" -eq 3 ]
    has_match 'timed out after 300 ms'
    # Gave up near the deadline: not before it, and not long after.
    [ $(((t1 - t0) / 1000)) -ge 300 ]
    [ $(((t1 - t0) / 1000)) -lt 4000 ]
}

@test "lhttpc: send waiting for more replies than come exits 3" {
    run "$LHTTPC" -w 500 -n 2 "$(url)" send ping -d once
    [ "$status" -eq 3 ]
    has_line 'once'
    has_match 'with 1 of 2 messages'
}

# --- replies and formats ---------------------------------------------------------------

@test "lhttpc: send ping prints the pong raw" {
    run --separate-stderr "$LHTTPC" "$(url)" send ping -d hello
    [ "$status" -eq 0 ]
    [ "$output" = $'LHTTP/1.0 pong\r\n\r\nhello' ]
}

@test "lhttpc: --format json prints one object per message" {
    run --separate-stderr "$LHTTPC" --format json "$(url /echo)" send chat -H to:bob \
        -H 'url:http://x/' -d 'hé "quoted"'
    [ "$status" -eq 0 ]
    lines_are '{"command":"chat","headers":[["to","bob"],["url","http://x/"]],"body":"hé \"quoted\"","binary":false}'
    run --separate-stderr "$LHTTPC" --format json "$(url)" send ping -d x
    [ "$status" -eq 0 ]
    lines_are '{"command":"pong","headers":[],"body":"x","binary":false}'
}

@test "lhttpc: json shows a message that is not LHTTP with a null command" {
    run --separate-stderr "$LHTTPC" --raw --format json "$(url /echo)" <<<'just text'
    [ "$status" -eq 0 ]
    lines_are '{"command":null,"headers":[],"body":"just text\n","binary":false}'
}

@test "lhttpc: --raw sends malformed LHTTP verbatim and shows the error reply" {
    run --separate-stderr "$LHTTPC" --raw --format json "$(url)" < <(printf 'HTTP/1.1 GET\r\n\r\n')
    [ "$status" -eq 0 ]
    has_match '^\{"command":"error","headers":\[.*\["code","400"\]'
}

@test "lhttpc: interactive input from a pipe sends each message" {
    run --separate-stderr "$LHTTPC" -n 2 "$(url)" < <(printf 'ping\n\nfirst\n.\nLHTTP/1.0 ping\n\nsecond\n..\nline\n.\n')
    [ "$status" -eq 0 ]
    [ "$output" = $'LHTTP/1.0 pong\r\n\r\nfirst\nLHTTP/1.0 pong\r\n\r\nsecond\n.\nline' ]
}

@test "lhttpc: the end of input sends the message being typed and closes" {
    run --separate-stderr "$LHTTPC" -w 5000 "$(url)" < <(printf 'ping\n\nunfinished')
    [ "$status" -eq 0 ]
    [ "$output" = $'LHTTP/1.0 pong\r\n\r\nunfinished' ]
}

@test "lhttpc: a 3 MiB message, sent in fragments, comes back whole" {
    local f=$BATS_TEST_TMPDIR/big
    head -c 3145728 /dev/zero | tr '\0' 'z' >"$f"
    "$LHTTPC" -w 20000 --fragment 100000 "$(url /echo)" send big -f "$f" >"$BATS_TEST_TMPDIR/out"
    { printf 'LHTTP/1.0 big\r\n\r\n'; cat "$f"; echo; } >"$BATS_TEST_TMPDIR/want"
    cmp "$BATS_TEST_TMPDIR/want" "$BATS_TEST_TMPDIR/out"
}

@test "lhttpc: send -n 0 sends and closes without waiting for a reply" {
    run --separate-stderr "$LHTTPC" -n 0 "$(url)" send chat -d x
    [ "$status" -eq 0 ]
}

# --- publish and subscribe ---------------------------------------------------------------

# published_to FILE CMD...: runs the publishing CMD, then true when FILE has content.
published_to() {
    local f=$1
    shift
    "$@" >/dev/null || return 1
    [ -s "$f" ]
}

@test "lhttpc: subscribe receives what publish sends, over WebSocket and HTTP" {
    local out=$BATS_TEST_TMPDIR/sub.out pid
    "$LHTTPC" -w 10000 -n 1 --format json "$(url)" subscribe news sports >"$out" 3>&- &
    pid=$!
    BG_PIDS="${BG_PIDS:-} $pid"
    # The subscription has no answer: publish until the subscriber has the message.
    wait_for 5 published_to "$out" "$LHTTPC" "$(url)" publish sports -H from:ws -d goal
    wait_for 5 lh_gone "$pid"
    wait "$pid"
    run cat "$out"
    lines_are '{"command":"publish","headers":[["publish","sports"],["from","ws"]],"body":"goal","binary":false}'

    "$LHTTPC" -w 10000 -n 1 "$(url /ws)" subscribe news >"$out" 3>&- &
    pid=$!
    BG_PIDS="${BG_PIDS:-} $pid"
    wait_for 5 published_to "$out" env LHTTPC_TOKEN=t0ken "$LHTTPC" -q --http \
        "http://127.0.0.1:$LH_PORT/publish" publish news -c flash -d extra
    wait_for 5 lh_gone "$pid"
    wait "$pid"
    [ "$(cat "$out")" = $'LHTTP/1.0 flash\r\npublish:news\r\n\r\nextra' ]
}

@test "lhttpc: HTTP publish prints the JSON answer, or the status and exit 5" {
    run --separate-stderr "$LHTTPC" --http --token t0ken "http://127.0.0.1:$LH_PORT/publish" \
        publish news -d x
    [ "$status" -eq 0 ]
    has_match '^\{.*"channels":\["news"\]'
    run --separate-stderr "$LHTTPC" --http --token wrong "http://127.0.0.1:$LH_PORT/publish" \
        publish news -d x
    [ "$status" -eq 5 ]
    [[ $stderr =~ HTTP\ 401 ]]
}

@test "lhttpc: a WebSocket publish the server refuses exits 5" {
    local long
    long=$(printf 'c%.0s' {1..200})
    run --separate-stderr "$LHTTPC" -w 5000 "$(url)" publish "$long" -d x
    [ "$status" -eq 5 ]
    has_match '^code:400'
    [[ $stderr =~ refused\ the\ publish ]]
}

# --- the server closes: exit 4 -----------------------------------------------------------

@test "lhttpc: a message over the server's limit gets closed: 1009 and exit 4" {
    local f=$BATS_TEST_TMPDIR/huge
    head -c 5000000 /dev/zero | tr '\0' 'z' >"$f"
    run --separate-stderr "$LHTTPC" -w 20000 "$(url /echo)" send big -f "$f"
    [ "$status" -eq 4 ]
    [[ $stderr =~ closed:\ 1009 ]]
    assert_server_ok
}

# --- lhttpc token: minting JWTs ---------------------------------------------------------

# b64url_decode: the base64url text on stdin (no padding) as bytes on stdout.
b64url_decode() {
    local s
    s=$(tr '_-' '/+')
    case $((${#s} % 4)) in
    2) s="$s==" ;;
    3) s="$s=" ;;
    esac
    printf '%s' "$s" | base64 -d
}

# b64url: the bytes on stdin in base64url without padding.
b64url() { base64 -w0 | tr '/+' '_-' | tr -d '='; }

# jwt_part TOKEN N: part N of a compact token (1 header, 2 claims, 3 signature), decoded.
jwt_part() { printf '%s' "$1" | cut -d. -f"$2" | b64url_decode; }

# der_of_raw FILE: an ES256 signature (r || s, 64 bytes) as the DER that openssl checks.
der_of_raw() {
    "$PY" -c '
import sys
b = open(sys.argv[1], "rb").read()
assert len(b) == 64, len(b)
def integer(x):
    x = x.lstrip(b"\0") or b"\0"
    if x[0] & 0x80:
        x = b"\0" + x
    return b"\x02" + bytes([len(x)]) + x
body = integer(b[:32]) + integer(b[32:])
sys.stdout.buffer.write(b"\x30" + bytes([len(body)]) + body)' "$1"
}

SECRET=0123456789abcdef0123456789abcdef-s3cret

@test "lhttpc token: HS256/384/512 from a secret file, CR LF dropped: header, claims, HMAC" {
    local d=$BATS_TEST_TMPDIR tok now iat alg bits
    printf '%s\r\n' "$SECRET" >"$d/jwt.secret"
    now=$(date +%s)
    run --separate-stderr "$LHTTPC" token --secret-file "$d/jwt.secret" --kid k1 --sub 42 \
        --exp-in 60 --aud chat --iss https://id.example --channels 'feed.a  user.42' \
        --info '{"name":"Ada","n":1}'
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ $output =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]]
    tok=$output
    [ "$(jwt_part "$tok" 1)" = '{"alg":"HS256","typ":"JWT","kid":"k1"}' ]
    [ "$(jwt_part "$tok" 2 | jq -c '[.sub, .aud, .iss, .channels, .info, .exp - .iat]')" = \
        '["42","chat","https://id.example",["feed.a","user.42"],{"name":"Ada","n":1},60]' ]
    iat=$(jwt_part "$tok" 2 | jq .iat)
    [ "$iat" -ge "$now" ]
    [ "$iat" -le $((now + 5)) ]
    # The signature is the HMAC with the file's bytes, without the CR LF.
    [ "$(printf '%s' "${tok%.*}" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)" = \
        "${tok##*.}" ]
    for bits in 384 512; do
        run --separate-stderr "$LHTTPC" token --secret-file "$d/jwt.secret" --alg "HS$bits"
        [ "$status" -eq 0 ]
        tok=$output
        [ "$(jwt_part "$tok" 1)" = "{\"alg\":\"HS$bits\",\"typ\":\"JWT\"}" ]
        [ "$(printf '%s' "${tok%.*}" | openssl dgst "-sha$bits" -hmac "$SECRET" -binary | b64url)" = \
            "${tok##*.}" ]
    done
}

@test "lhttpc token: RS256 and ES256 (r||s, 64 bytes) from PEM private keys, checked by openssl" {
    local d=$BATS_TEST_TMPDIR tok
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/rs.pem" 2>/dev/null
    openssl pkey -in "$d/rs.pem" -pubout -out "$d/rs.pub"
    run --separate-stderr "$LHTTPC" token --key-file "$d/rs.pem" --sub 7
    [ "$status" -eq 0 ]
    tok=$output
    [ "$(jwt_part "$tok" 1)" = '{"alg":"RS256","typ":"JWT"}' ]
    [ "$(jwt_part "$tok" 2 | jq -r .sub)" = 7 ]
    jwt_part "$tok" 3 >"$d/rs.sig"
    [ "$(stat -c %s "$d/rs.sig")" -eq 256 ]
    printf '%s' "${tok%.*}" | openssl dgst -sha256 -verify "$d/rs.pub" -signature "$d/rs.sig"

    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/es.pem"
    openssl pkey -in "$d/es.pem" -pubout -out "$d/es.pub"
    run --separate-stderr "$LHTTPC" token --key-file "$d/es.pem" --kid e1 --sub 7 --exp 4102444800
    [ "$status" -eq 0 ]
    tok=$output
    [ "$(jwt_part "$tok" 1)" = '{"alg":"ES256","typ":"JWT","kid":"e1"}' ]
    [ "$(jwt_part "$tok" 2 | jq -c '[.sub, .exp]')" = '["7",4102444800]' ]
    jwt_part "$tok" 3 >"$d/es.sig"
    [ "$(stat -c %s "$d/es.sig")" -eq 64 ]
    der_of_raw "$d/es.sig" >"$d/es.der"
    printf '%s' "${tok%.*}" | openssl dgst -sha256 -verify "$d/es.pub" -signature "$d/es.der"
    # The same signature is not valid for other bytes.
    run openssl dgst -sha256 -verify "$d/es.pub" -signature "$d/es.der" <<<"${tok%.*}x"
    [ "$status" -ne 0 ]
}

@test "lhttpc token: the times: --exp-in negative, --exp, --nbf, --iat, --no-iat" {
    local d=$BATS_TEST_TMPDIR tok
    printf '%s' "$SECRET" >"$d/jwt.secret"
    tok=$("$LHTTPC" token --secret-file "$d/jwt.secret" --exp-in -60 --iat 1000)
    [ "$(jwt_part "$tok" 2 | jq -c '[.iat, .exp < now]')" = '[1000,true]' ]
    tok=$("$LHTTPC" token --secret-file "$d/jwt.secret" --exp 2000 --nbf 1500 --no-iat)
    [ "$(jwt_part "$tok" 2)" = '{"exp":2000,"nbf":1500}' ]
}

@test "lhttpc token: key problems exit 1, usage errors exit 2, nothing on stdout" {
    local d=$BATS_TEST_TMPDIR
    printf '%s' "$SECRET" >"$d/jwt.secret"
    printf '0123456789abcdef0123456789abcde\r\n' >"$d/short.secret" # 31 bytes and CR LF
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/es.pem"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$d/p384.pem"
    openssl pkey -in "$d/es.pem" -pubout -out "$d/es.pub"

    run --separate-stderr "$LHTTPC" token --secret-file "$d/short.secret"
    [ "$status" -eq 1 ]
    [ -z "$output" ]
    [[ $stderr =~ 31\ bytes.*at\ least\ 32 ]]
    run --separate-stderr "$LHTTPC" token --secret-file "$d/no-such-file"
    [ "$status" -eq 1 ]
    [ -z "$output" ]
    [[ $stderr =~ No\ such\ file ]]
    run --separate-stderr "$LHTTPC" token --key-file "$d/es.pem" --alg RS256
    [ "$status" -eq 1 ]
    [ -z "$output" ]
    [[ $stderr =~ cannot\ sign\ RS256 ]]
    run --separate-stderr "$LHTTPC" token --key-file "$d/p384.pem"
    [ "$status" -eq 1 ]
    [[ $stderr =~ P-256 ]]
    run --separate-stderr "$LHTTPC" token --key-file "$d/es.pub"
    [ "$status" -eq 1 ]
    [[ $stderr =~ public\ key ]]
    run --separate-stderr "$LHTTPC" token --key-file "$d/jwt.secret"
    [ "$status" -eq 1 ]
    [[ $stderr =~ not\ a\ PEM\ private\ key ]]

    run --separate-stderr "$LHTTPC" token --key-file "$d/es.pem" --alg HS256
    [ "$status" -eq 2 ]
    [ -z "$output" ]
    [[ $stderr =~ use\ --secret-file ]]
    run --separate-stderr "$LHTTPC" token --secret-file "$d/jwt.secret" --alg ES256
    [ "$status" -eq 2 ]
    [[ $stderr =~ use\ --key-file ]]
    run --separate-stderr "$LHTTPC" token --secret-file "$d/jwt.secret" --alg none
    [ "$status" -eq 2 ]
    run --separate-stderr "$LHTTPC" token
    [ "$status" -eq 2 ]
    [[ $stderr =~ give\ the\ key ]]
    run --separate-stderr "$LHTTPC" token --secret-file "$d/jwt.secret" --key-file "$d/es.pem"
    [ "$status" -eq 2 ]
    run --separate-stderr "$LHTTPC" token --secret-file "$d/jwt.secret" --info '["not","an","object"]'
    [ "$status" -eq 2 ]
    [[ $stderr =~ info\ must\ be\ a\ JSON\ object ]]
    run --separate-stderr "$LHTTPC" token --secret-file "$d/jwt.secret" --exp-in soon
    [ "$status" -eq 2 ]
    run --separate-stderr "$LHTTPC" token --secret-file "$d/jwt.secret" --exp-in 5 --exp 7
    [ "$status" -eq 2 ]
    run --separate-stderr "$LHTTPC" token --secret-file "$d/jwt.secret" stray
    [ "$status" -eq 2 ]
    [ -z "$output" ]
    run "$LHTTPC" token --help
    [ "$status" -eq 0 ]
    has_match '^  --secret-file FILE'
}

# --- --token in the WebSocket handshake ------------------------------------------------

# start_recorder: tests/lib/backend.py on a port the kernel picks, answering every request
# 403, with a log of the requests (REC_PORT, REC_LOG): it shows what lhttpc sent.
start_recorder() {
    local d
    d=$(lh_tmp)
    printf '%s\n' '{"*": {"status": 403, "body": "recorded"}}' >"$d/rec.routes.json"
    : >"$d/rec.log"
    "$PY" "$LH_LIB/backend.py" serve --port-file "$d/rec.port" --log "$d/rec.log" \
        --routes "$d/rec.routes.json" >"$d/rec.out" 2>&1 3>&- &
    BG_PIDS="${BG_PIDS:-} $!"
    wait_for 5 test -s "$d/rec.port" || { cat "$d/rec.out" >&2; return 1; }
    REC_PORT=$(cat "$d/rec.port") REC_LOG=$d/rec.log
}

# rec COUNT|SHOW ARGS...: backend.py's reader of the recorder's log.
rec() { "$PY" "$LH_LIB/backend.py" "$1" "$REC_LOG" "${@:2}"; }

@test "lhttpc: --token is sent as Authorization: Bearer in the handshake of every mode" {
    local tok=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2ln mode
    start_recorder
    for mode in listen 'send ping' 'subscribe news' 'publish news -d x'; do
        # shellcheck disable=SC2086
        run --separate-stderr "$LHTTPC" -w 5000 --token "$tok" \
            "ws://127.0.0.1:$REC_PORT/${mode%% *}" $mode
        [ "$status" -eq 1 ]
        [[ $stderr =~ handshake\ refused:\ HTTP/1\.[01]\ 403 ]]
        [ "$(rec count --path "/${mode%% *}" --header "Authorization:Bearer $tok")" -eq 1 ]
    done
    run --separate-stderr "$LHTTPC" -w 5000 --token "$tok" "ws://127.0.0.1:$REC_PORT/tty" </dev/null
    [ "$status" -eq 1 ]
    [ "$(rec count --path /tty --header "Authorization:Bearer $tok")" -eq 1 ]
    # The header is there once, with the Upgrade request.
    run rec show --path /listen
    has_line 'method GET'
    has_line 'header upgrade: websocket'
    [ "$(printf '%s\n' "$output" | grep -c '^header authorization:')" -eq 1 ]
}

@test "lhttpc: no --token, no Authorization header (LHTTPC_TOKEN is only for --http)" {
    start_recorder
    LHTTPC_TOKEN=t0ken run --separate-stderr "$LHTTPC" -w 5000 "ws://127.0.0.1:$REC_PORT/plain" listen
    [ "$status" -eq 1 ]
    [ "$(rec count --path /plain)" -eq 1 ]
    run rec show --path /plain
    has_line 'header upgrade: websocket'
    no_match '^header authorization:'
}

@test "lhttpc: a --token with CR or LF, or empty, is a usage error before connecting" {
    start_recorder
    run --separate-stderr "$LHTTPC" --token $'a\r\nX-Injected: 1' "ws://127.0.0.1:$REC_PORT/x" listen
    [ "$status" -eq 2 ]
    [[ $stderr =~ without\ CR\ or\ LF ]]
    run --separate-stderr "$LHTTPC" --token $'a\nb' "ws://127.0.0.1:$REC_PORT/x" send ping
    [ "$status" -eq 2 ]
    run --separate-stderr "$LHTTPC" --token '' "ws://127.0.0.1:$REC_PORT/x" listen
    [ "$status" -eq 2 ]
    [ "$(rec count --event connection)" -eq 0 ]
}

# --- lhttpc token and --token against lhttpd's auth ------------------------------------

# start_auth_server DIR: a second lhttpd (on the file's nats-server) whose auth.keys are
# DIR/jwt.secret (kid hs), DIR/rs.pub (kid rs) and DIR/es.pub (kid es), with user.*
# channels for their owner only; stopped by teardown.
start_auth_server() {
    local d=$1
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "auth": {"keys": [{"kid": "hs", "secret_file": "'"$d"'/jwt.secret"},
                          {"kid": "rs", "public_key_file": "'"$d"'/rs.pub"},
                          {"kid": "es", "public_key_file": "'"$d"'/es.pub"}]},
        "namespaces": {"user": {"subscribe": "owner", "publish": "none"}}
    }'
    BG_PIDS="${BG_PIDS:-} $LH_PID"
}

@test "lhttpc: tokens of lhttpc token pass lhttpd's auth, sent with --token or in an auth message" {
    local d=$BATS_TEST_TMPDIR tok kid exp key
    printf '%s\n' "$SECRET" >"$d/jwt.secret"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/rs.pem" 2>/dev/null
    openssl pkey -in "$d/rs.pem" -pubout -out "$d/rs.pub"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/es.pem"
    openssl pkey -in "$d/es.pem" -pubout -out "$d/es.pub"
    start_auth_server "$d"
    for kid in hs rs es; do
        if [ $kid = hs ]; then key=(--secret-file "$d/jwt.secret"); else key=(--key-file "$d/$kid.pem"); fi
        exp=$(($(date +%s) + 600))
        tok=$("$LHTTPC" token "${key[@]}" --kid $kid --sub 42 --exp "$exp")
        # In an auth message: the server says who the connection is and until when (the
        # reply ends "\r\n\r\n", and the newline after it; run drops the newlines at the end).
        run --separate-stderr "$LHTTPC" -w 5000 "$(url)" send auth -H "token:$tok"
        [ "$status" -eq 0 ]
        [ "$output" = $'LHTTP/1.0 auth\r\nuser:42\r\nexpires:'"$exp"$'\r\n\r' ] || lh_show_output
        # In the handshake: user 42 may subscribe to user.42 (no answer: the pong comes
        # first), not to user.43.
        run --separate-stderr "$LHTTPC" -w 5000 -n 1 --token "$tok" "$(url)" \
            < <(printf 'subscribe\nsubscribe:user.42\n.\nping\n\nafter\n.\n')
        [ "$status" -eq 0 ]
        [ "$output" = $'LHTTP/1.0 pong\r\n\r\nafter' ]
        run --separate-stderr "$LHTTPC" -w 5000 --token "$tok" "$(url)" send subscribe \
            -H subscribe:user.43
        [ "$status" -eq 0 ]
        [[ $output =~ ^LHTTP/1\.0\ error ]]
        [[ $output =~ code:403 ]]
    done
    # Without a token, user.42 is refused too: the token made the difference.
    run --separate-stderr "$LHTTPC" -w 5000 "$(url)" send subscribe -H subscribe:user.42
    [ "$status" -eq 0 ]
    [[ $output =~ code:403 ]]
}

@test "lhttpc: lhttpd refuses with 401 the handshake of an expired or foreign --token" {
    local d=$BATS_TEST_TMPDIR tok
    printf '%s\n' "$SECRET" >"$d/jwt.secret"
    printf '%s\n' "another-secret-of-more-than-32-bytes" >"$d/other.secret"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/rs.pem" 2>/dev/null
    openssl pkey -in "$d/rs.pem" -pubout -out "$d/rs.pub"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/es.pem"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/es2.pem"
    openssl pkey -in "$d/es.pem" -pubout -out "$d/es.pub"
    start_auth_server "$d"
    for tok in "$("$LHTTPC" token --secret-file "$d/jwt.secret" --kid hs --sub 42 --exp-in -60)" \
        "$("$LHTTPC" token --secret-file "$d/other.secret" --kid hs --sub 42)" \
        "$("$LHTTPC" token --key-file "$d/es2.pem" --kid es --sub 42)"; do
        run --separate-stderr "$LHTTPC" -w 5000 --token "$tok" "$(url)" listen
        [ "$status" -eq 1 ]
        [[ $stderr =~ handshake\ refused:\ HTTP/1\.1\ 401 ]]
    done
    # The same key with its own kid passes.
    tok=$("$LHTTPC" token --key-file "$d/es.pem" --kid es --sub 42)
    run --separate-stderr "$LHTTPC" -w 5000 --token "$tok" "$(url)" send ping -d ok
    [ "$status" -eq 0 ]
}

# --- history and recovery (issue 18) -------------------------------------------------------

# hist_server: for this test only (teardown stops them), a nats-server with JetStream and
# a one-worker lhttpd whose namespace "hist" keeps the last 5 messages of each channel;
# waits until its stream is ready. Sets HURL (its WebSocket URL) and HPUB (its /publish).
hist_server() {
    local port pid try log
    for try in 1 2 3 4 5; do
        port=$(free_port) || return 1
        LH_PORTS_TAKEN="$LH_PORTS_TAKEN $port"
        log=$BATS_TEST_TMPDIR/nats-js-$port.log
        nats-server -a 127.0.0.1 -p "$port" -js -sd "$BATS_TEST_TMPDIR/js-$port" >"$log" 2>&1 3>&- &
        pid=$!
        if wait_for 5 listening_by "$port" "$pid"; then break; fi
        lh_stop_pid "$pid"
        grep -qi 'address already in use' "$log" || { cat "$log" >&2; return 1; }
    done
    NATS_PORT=$port start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "publish": {"token": "t0ken"},
        "namespaces": {"hist": {"subscribe": "any", "publish": "any", "history": {"size": 5}}}
    }' || { lh_stop_pid "$pid"; return 1; }
    BG_PIDS="${BG_PIDS:-} $LH_PID $pid"
    wait_log 'JetStream: stream LHTTP_hist ready' 10
    HURL=ws://127.0.0.1:$LH_PORT/
    HPUB=http://127.0.0.1:$LH_PORT/publish
}

# hpub CHANNEL BODY: publishes over HTTP (stored when it answers) and prints the offset.
hpub() {
    "$LHTTPC" --http --token t0ken "$HPUB" publish "$1" -c chat -d "$2" |
        sed -nE 's/.*"offsets":\{[^}]*"'"${1//./\\.}"'":([0-9]+).*/\1/p'
}

# epoch_of CHANNEL: the channel's epoch, from a history read.
epoch_of() {
    "$LHTTPC" -q -n 1 -w 5000 "$HURL" send history -H "channel:$1" -H limit:1 |
        sed -nE 's/^epoch:([0-9a-f]+)\r$/\1/p'
}

@test "lhttpc: --since, --epoch and --history are checked before connecting" {
    local u=ws://127.0.0.1:1/
    run "$LHTTPC" --since 5 "$u" listen
    [ "$status" -eq 2 ]
    has_match 'go with subscribe'
    run "$LHTTPC" --epoch abc "$u" subscribe a
    [ "$status" -eq 2 ]
    has_match '--epoch goes with --since'
    run "$LHTTPC" --since 5 --history 2 "$u" subscribe a
    [ "$status" -eq 2 ]
    run "$LHTTPC" --since -1 "$u" subscribe a
    [ "$status" -eq 2 ]
    run "$LHTTPC" --since 5 --epoch 'a,b' "$u" subscribe a
    [ "$status" -eq 2 ]
    run "$LHTTPC" --history 0 "$u" subscribe a
    [ "$status" -eq 2 ]
    run "$LHTTPC" --format long "$u" listen
    [ "$status" -eq 2 ]
    has_match 'raw, json or short'
}

@test "lhttpc: --format short: offset, command, channels and body on one line; headers for the server's own" {
    hist_server
    local o1 o2 e
    o1=$(hpub hist.s 'one')
    o2=$(hpub hist.s $'two\nlines\t\\')
    e=$(epoch_of hist.s)
    [ -n "$o1" ] && [ -n "$o2" ] && [ -n "$e" ]
    run --separate-stderr "$LHTTPC" -q -n 4 -w 5000 --format short --history 2 "$HURL" subscribe hist.s
    [ "$status" -eq 0 ]
    lines_are "$o1 chat hist.s: one" \
        "$o2 chat hist.s: two\\nlines\\t\\\\" \
        "- history channel=hist.s epoch=$e offset=$o2 count=2" \
        "- subscribed channel=hist.s epoch=$e offset=$o2 recovered=true"
    run --separate-stderr "$LHTTPC" -q --format short "$HURL" send ping -d 'hi there'
    lines_are '- pong hi there'
}

@test "lhttpc: raw and json output show a history message's offset, prev-offset, epoch and channel headers" {
    hist_server
    local o1 o2 e
    o1=$(hpub hist.r first)
    o2=$(hpub hist.r second)
    e=$(epoch_of hist.r)
    run --separate-stderr "$LHTTPC" -q -n 1 -w 5000 "$HURL" send history -H channel:hist.r -H limit:1
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = $'LHTTP/1.0 chat\r' ]
    [ "${lines[1]}" = $'offset:'"$o2"$'\r' ]
    [ "${lines[2]}" = $'prev-offset:'"$o1"$'\r' ]
    [ "${lines[3]}" = $'epoch:'"$e"$'\r' ]
    [ "${lines[4]}" = $'channel:hist.r\r' ]
    run --separate-stderr "$LHTTPC" -q -n 1 -w 5000 --format json "$HURL" send history -H channel:hist.r -H limit:1
    lines_are '{"command":"chat","headers":[["offset","'"$o2"'"],["prev-offset","'"$o1"'"],["epoch","'"$e"'"],["channel","hist.r"],["publish","hist.r"]],"body":"second","binary":false}'
}

@test "lhttpc: --since OFFSET --epoch E recovers every message after OFFSET, then recovered:true" {
    hist_server
    local o1 o2 o3 e
    o1=$(hpub hist.a a1)
    o2=$(hpub hist.a a2)
    o3=$(hpub hist.a a3)
    e=$(epoch_of hist.a)
    run --separate-stderr "$LHTTPC" -q -n 3 -w 5000 --format short --since "$o1" --epoch "$e" "$HURL" subscribe hist.a
    [ "$status" -eq 0 ]
    lines_are "$o2 chat hist.a: a2" "$o3 chat hist.a: a3" \
        "- subscribed channel=hist.a epoch=$e offset=$o3 recovered=true"
    # Another epoch: nothing old, recovered:false with the latest offset.
    run --separate-stderr "$LHTTPC" -q -n 1 -w 5000 --format short --since "$o1" --epoch 0123456789abcdef "$HURL" subscribe hist.a
    [ "$status" -eq 0 ]
    lines_are "- subscribed channel=hist.a epoch=$e offset=$o3 recovered=false"
}

@test "lhttpc: --since without --epoch takes the channel's current epoch; an evicted offset gives recovered:false; a channel without history is subscribed as is" {
    hist_server
    local o1 o2 e i last
    o1=$(hpub hist.b b1)
    o2=$(hpub hist.b b2)
    e=$(epoch_of hist.b)
    run --separate-stderr "$LHTTPC" -q -n 2 -w 5000 --format short --since "$o1" "$HURL" subscribe hist.b
    [ "$status" -eq 0 ]
    lines_are "$o2 chat hist.b: b2" "- subscribed channel=hist.b epoch=$e offset=$o2 recovered=true"
    # Only the last 5 are kept: b1 is gone, so nothing after it can be recovered whole.
    for i in 3 4 5 6 7 8; do last=$(hpub hist.b "b$i"); done
    run --separate-stderr "$LHTTPC" -q -n 1 -w 5000 --format short --since "$o1" "$HURL" subscribe hist.b
    lines_are "- subscribed channel=hist.b epoch=$e offset=$last recovered=false"
    # A channel without history: the epoch read is refused (printed), the subscription is plain.
    local out=$BATS_TEST_TMPDIR/plain.out pid
    "$LHTTPC" -q -n 2 -w 10000 --format short --since 3 "$HURL" subscribe plain >"$out" 3>&- &
    pid=$!
    BG_PIDS="${BG_PIDS:-} $pid"
    wait_for 5 grep -q 'in-reply-to=history' "$out"
    wait_for 5 published_to "$out" "$LHTTPC" "$HURL" publish plain -c chat -d live
    wait_for 5 lh_gone "$pid"
    run cat "$out"
    has_match '^- error code=404 .*in-reply-to=history$'
    has_match '^- chat plain: live$'
}

@test "lhttpc: --history N prints the last N, then live messages follow the history without a gap" {
    hist_server
    local o1 o2 o3 e out=$BATS_TEST_TMPDIR/h.out pid
    o1=$(hpub hist.h h1)
    o2=$(hpub hist.h h2)
    e=$(epoch_of hist.h)
    "$LHTTPC" -q -n 5 -w 10000 --format short --history 5 "$HURL" subscribe hist.h >"$out" 3>&- &
    pid=$!
    BG_PIDS="${BG_PIDS:-} $pid"
    wait_for 5 grep -q '^- subscribed ' "$out"
    o3=$(hpub hist.h h3)
    wait_for 5 lh_gone "$pid"
    wait "$pid"
    run cat "$out"
    lines_are "$o1 chat hist.h: h1" "$o2 chat hist.h: h2" \
        "- history channel=hist.h epoch=$e offset=$o2 count=2" \
        "- subscribed channel=hist.h epoch=$e offset=$o2 recovered=true" \
        "$o3 chat hist.h: h3"
}
