#!/usr/bin/env bats
# Identity and channel permissions (issue 17) with real processes: tokens in the
# handshake (Authorization: Bearer, ?token=) and in the auth command, every way a token
# is refused (401, counted by reason), auth.anonymous false and its deadline (4401),
# expiry with the refresh message and its grace (4401), the namespace rules for subscribe
# and publish (403 naming the channel, counted), subscription tokens and the channels
# claim, stamp_user's sender header, lists that stay all or nothing, a refused publish
# that reaches no one on another worker or node, reloads that tighten the rules or change
# the keys, and `lhttpd -t` on bad auth configurations.
#
# Two servers are shared by the file (setup_file): MAIN (anonymous allowed, namespaces,
# keys of every kind, audience "lh" and issuer "me") and STRICT (auth.anonymous false,
# short deadlines, the default namespace for its owner only). Tests that need their own configuration start their own lhttpd.
# Tokens come from tests/lib/jwtmint.py (HS* with the stdlib, RS256/ES256 through the
# openssl command); keys are made with openssl in setup_file.

load ../lib/helpers
load ../lib/pubsub

MINT=$LH_LIB/jwtmint.py

# --- tokens -----------------------------------------------------------------------------

# mint KEY_FILE ARGS...: jwtmint.py (claims and options as its docstring says).
mint() { "$PY" "$MINT" "$@"; }

# tok SUB [ARGS...]: a token MAIN accepts (HS256, kid-less secret, aud lh, iss me, exp in
# 10 minutes) for user SUB; ARGS (claims override the defaults, options) go to jwtmint.
tok() {
    local sub=$1
    shift
    mint "$K/secret" sub="$sub" aud=lh iss=me exp=+600 "$@"
}

# stok SUB [ARGS...]: a token STRICT accepts (its secret, no aud/iss), exp in 10 minutes.
stok() {
    local sub=$1
    shift
    mint "$K/secret" sub="$sub" exp=+600 "$@"
}

# --- expected lines -----------------------------------------------------------------------

# ws_text MSG: the line wsprobe.py prints for the text message MSG (\r \n escapes).
ws_text() { echo "text $(printf '%b' "$1" | wc -c) $1"; }

# lerr CODE REASON COMMAND: an LHTTP error reply, escaped as the probes show it.
lerr() { echo "LHTTP/1.0 error\\r\\ncode:$1\\r\\nreason:$2\\r\\nin-reply-to:$3\\r\\n\\r\\n"; }

# auth_ok USER EXP: the reply to a successful auth.
auth_ok() { echo "LHTTP/1.0 auth\\r\\nuser:$1\\r\\nexpires:$2\\r\\n\\r\\n"; }

# denied ACTION CHANNEL RULE_TEXT: the reason of a 403 (ACTION subscribe or publish).
denied() {
    local ns="" verb="subscribe to"
    [[ $2 == *.* ]] && ns=${2%%.*}
    [ "$1" = publish ] && verb="publish to"
    echo "not allowed to $verb \"$2\": namespace \"$ns\" $3"
}
OWNER="is for its owner only"
AUTHN="needs an authenticated user"
LISTED="needs a token that lists the channel"
SUBS="takes messages from its subscribers only"
NONE="takes messages from the server only"

# --- servers --------------------------------------------------------------------------------

# use NAME: points LH_PORT / LH_PID / LH_LOG / LH_WORKERS at MAIN or STRICT.
use() {
    local p=${1}_PORT i=${1}_PID l=${1}_LOG w=${1}_WORKERS
    LH_PORT=${!p} LH_PID=${!i} LH_LOG=${!l} LH_WORKERS=${!w}
}

# start_own CONFIG: an lhttpd for this test only (teardown checks and stops it).
start_own() {
    start_lhttpd "$1" || return 1
    OWN_LOGS="${OWN_LOGS:-} $LH_LOG"
}

# metric SAMPLE: the value of SAMPLE (name{labels} as /metrics writes it) on LH_PORT.
metric() {
    curl -s --max-time 5 "http://127.0.0.1:$LH_PORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'
}
fail_metric() { metric "lhttpd_auth_failures_total{reason=\"$1\"}"; }
denied_metric() { metric "lhttpd_permission_denied_total{action=\"$1\",namespace=\"$2\"}"; }

# post CHANNEL BODY [PORT]: POST /publish "LHTTP/1.0 msg\r\npublish:CHANNEL\r\n\r\nBODY";
# prints the status.
post() {
    printf 'LHTTP/1.0 msg\r\npublish:%s\r\n\r\n%s' "$1" "$2" |
        curl -s -o /dev/null -w '%{http_code}' --max-time 5 --data-binary @- \
            "http://127.0.0.1:${3:-$LH_PORT}/publish"
}

# elapsed_ms START: milliseconds since START (an ${EPOCHREALTIME/./} value).
elapsed_ms() { echo $(((${EPOCHREALTIME/./} - $1) / 1000)); }

# san_clean LOG...: no sanitizer report in these logs (leaks show only at exit).
san_clean() {
    ! grep -E -A20 'AddressSanitizer|LeakSanitizer|runtime error:' "$@" >&2
}

setup_file() {
    K=$(lh_tmp)/keys
    mkdir -p "$K"
    # The secret ends in CR LF, which lhttpd (and jwtmint) strip.
    printf '%s\r\n' "$(head -c 48 /dev/urandom | base64 -w0)" >"$K/secret"
    head -c 48 /dev/urandom | base64 -w0 >"$K/secret2"
    head -c 48 /dev/urandom | base64 -w0 >"$K/other"
    for k in rs r1 r2; do
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$K/$k.key" 2>/dev/null
        openssl pkey -in "$K/$k.key" -pubout -out "$K/$k.pub"
    done
    for k in es e1; do
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$K/$k.key"
        openssl pkey -in "$K/$k.key" -pubout -out "$K/$k.pub"
    done
    "$PY" "$MINT" --jwks r1="$K/r1.pub" e1="$K/e1.pub" >"$K/jwks.json"
    export K
    start_nats
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "auth": {
            "keys": [
                {"secret_file": "'"$K"'/secret"},
                {"kid": "k2", "secret_file": "'"$K"'/secret2"},
                {"kid": "rs", "public_key_file": "'"$K"'/rs.pub"},
                {"kid": "es", "public_key_file": "'"$K"'/es.pub"},
                {"jwks_file": "'"$K"'/jwks.json"}
            ],
            "audience": "lh", "issuer": "me",
            "max_token_bytes": 2048, "max_lifetime_s": 3600, "expiry_grace_ms": 1500
        },
        "namespaces": {
            "":     {"subscribe": "any", "publish": "any"},
            "chat": {"subscribe": "authenticated", "publish": "subscribers", "stamp_user": true},
            "user": {"subscribe": "owner", "publish": "none"},
            "feed": {"subscribe": "token", "publish": "none"},
            "news": {"subscribe": "any", "publish": "authenticated", "stamp_user": true},
            "open": {"subscribe": "any", "publish": "any", "stamp_user": true}
        }
    }'
    MAIN_PORT=$LH_PORT MAIN_PID=$LH_PID MAIN_LOG=$LH_LOG MAIN_WORKERS=$LH_WORKERS
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "auth": {"anonymous": false, "keys": [{"secret_file": "'"$K"'/secret"}],
                 "timeout_ms": 1500, "expiry_grace_ms": 1500},
        "namespaces": {"": {"subscribe": "owner", "publish": "any"}}
    }'
    STRICT_PORT=$LH_PORT STRICT_PID=$LH_PID STRICT_LOG=$LH_LOG STRICT_WORKERS=$LH_WORKERS
    FILE_PIDS=$LH_PIDS
    export MAIN_PORT MAIN_PID MAIN_LOG MAIN_WORKERS STRICT_PORT STRICT_PID STRICT_LOG \
        STRICT_WORKERS FILE_PIDS
}

teardown_file() {
    stop_all
    san_clean "$MAIN_LOG" "$STRICT_LOG"
}

# A crash fails the test that caused it; whatever this test started is stopped.
teardown() {
    local p rc=0
    for p in $LH_PIDS; do
        case " $FILE_PIDS " in *" $p "*) ;; *) lh_stop_pid "$p" ;; esac
    done
    if [ -n "${OWN_LOGS:-}" ]; then
        # shellcheck disable=SC2086
        san_clean $OWN_LOGS || rc=1
    fi
    (use MAIN && assert_server_alive) || rc=1
    (use STRICT && assert_server_alive) || rc=1
    return $rc
}

setup() { use MAIN; }

# --- identity: where the token comes from -------------------------------------------------

@test "a token for user 42 subscribes to user.42 and user.42.inbox, not to user.43, user.420 or user.4: Bearer, ?token= and auth" {
    local t exp
    exp=$(($(date +%s) + 600))
    t=$(tok 42 exp=$exp)
    steps=(open:b:$LH_PORT "open:q:$LH_PORT:/?token=$t" open:a:$LH_PORT
        "send:a:LHTTP/1.0 auth\r\ntoken:$t\r\n\r\n" recv:a)
    for c in b q a; do
        steps+=("sub:$c:user.42 user.42.inbox" sub:$c:user.43 sub:$c:user.420 sub:$c:user.4)
    done
    ps_bg cl -H "b=Authorization: Bearer $t" "${steps[@]}" print:ready \
        recv:b recv:b recv:q recv:q recv:a recv:a
    wait_bg cl '^ready$'
    # Had a refused subscribe been made, these would come first.
    for ch in user.43 user.420 user.4; do [ "$(post $ch wrong)" = 200 ]; done
    [ "$(post user.42 one)" = 200 ]
    [ "$(post user.42.inbox two)" = 200 ]
    wait_gone "$PS_PID_cl" 10
    run bg_out cl
    want=("b open" "q open" "a open" "$(got a "$(auth_ok 42 $exp)")")
    for c in b q a; do
        want+=("$c subscribed")
        for ch in user.43 user.420 user.4; do
            want+=("$(got $c "$(lerr 403 "$(denied subscribe $ch "$OWNER")" subscribe)")" "$c subscribed")
        done
    done
    want+=(ready)
    for c in b q a; do
        want+=("$(got $c 'LHTTP/1.0 msg\r\npublish:user.42\r\n\r\none')"
            "$(got $c 'LHTTP/1.0 msg\r\npublish:user.42.inbox\r\n\r\ntwo')")
    done
    lines_are "${want[@]}"
}

@test "owner in the default namespace: a channel without a dot is its owner's when it is the user id itself" {
    use STRICT
    run ps_run -H "u=Authorization: Bearer $(stok 2)" -H "v=Authorization: Bearer $(stok 42)" \
        open:u:$LH_PORT open:v:$LH_PORT \
        sub:u:42 sub:u:x2 sub:u:22 sub:u:2 sub:v:142 sub:v:x42 sub:v:4 sub:v:42 \
        pub:u:42:for-42 pub:v:2:for-2 recv:v recv:u
    [ "$status" -eq 0 ] || lh_show_output
    want=("u open" "v open")
    for ch in 42 x2 22; do
        want+=("$(got u "$(lerr 403 "not allowed to subscribe to \"$ch\": namespace \"\" $OWNER" subscribe)")" "u subscribed")
    done
    want+=("u subscribed")
    for ch in 142 x42 4; do
        want+=("$(got v "$(lerr 403 "not allowed to subscribe to \"$ch\": namespace \"\" $OWNER" subscribe)")" "v subscribed")
    done
    want+=("v subscribed" "$(got v 'LHTTP/1.0 msg\r\npublish:42\r\n\r\nfor-42')"
        "$(got u 'LHTTP/1.0 msg\r\npublish:2\r\n\r\nfor-2')")
    lines_are "${want[@]}"
}

@test "anonymous connections are refused where the rules say (authenticated, owner, token) and allowed elsewhere" {
    run ps_run open:a:$LH_PORT open:p:$LH_PORT \
        sub:a:chat.room sub:a:user.42 sub:a:feed.x sub:a:user \
        'sub:a:lobby misc.x news.x open.x' \
        pub:p:news.x:anonymous-news pub:p:lobby:L pub:p:misc.x:M pub:p:open.x:O \
        recv:a recv:a recv:a barrier:p
    [ "$status" -eq 0 ] || lh_show_output
    lines_are "a open" "p open" \
        "$(got a "$(lerr 403 "$(denied subscribe chat.room "$AUTHN")" subscribe)")" "a subscribed" \
        "$(got a "$(lerr 403 "$(denied subscribe user.42 "$OWNER")" subscribe)")" "a subscribed" \
        "$(got a "$(lerr 403 "$(denied subscribe feed.x "$LISTED")" subscribe)")" "a subscribed" \
        "a subscribed" "a subscribed" \
        "$(got a 'LHTTP/1.0 msg\r\npublish:lobby\r\n\r\nL')" \
        "$(got a 'LHTTP/1.0 msg\r\npublish:misc.x\r\n\r\nM')" \
        "$(got a 'LHTTP/1.0 msg\r\npublish:open.x\r\nsender:\r\n\r\nO')" \
        "$(got p "$(lerr 403 "$(denied publish news.x "$AUTHN")" msg)")" "p barrier"
}

@test "auth.anonymous false: every message before auth gets 401, a bad auth changes nothing, a good one works; no auth within auth.timeout_ms closes with 4401" {
    use STRICT
    local t exp m0 start
    exp=$(($(date +%s) + 600))
    t=$(stok 42 exp=$exp)
    m0=$(fail_metric missing)
    # The silent one runs meanwhile: it must be closed 4401 after 1.5 s (timeout_ms).
    start=${EPOCHREALTIME/./}
    probe --timeout 6 upgrade expect-close >"$(lh_tmp)/silent.out" &
    silent=$!
    probe --timeout 6 -H "Authorization: Bearer $t" upgrade listen:2200 \
        'text:LHTTP/1.0 ping\r\n\r\nbearer' msg >"$(lh_tmp)/bearer.out" &
    bearer=$!
    run probe upgrade 'text:LHTTP/1.0 ping\r\n\r\nx' msg \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:room\r\n\r\n' msg \
        'text:LHTTP/1.0 msg\r\npublish:room\r\n\r\nx' msg \
        "text:LHTTP/1.0 auth\r\ntoken:$(stok 42 --flip)\r\n\r\n" msg \
        'text:LHTTP/1.0 auth\r\n\r\n' msg \
        'text:LHTTP/1.0 ping\r\n\r\nstill' msg \
        "text:LHTTP/1.0 auth\r\ntoken:$t\r\n\r\n" msg \
        'text:LHTTP/1.0 ping\r\n\r\nin' msg listen:2200 close:1000 expect-close
    req="authentication required: send auth with a token first"
    lines_are "status 101" "accept ok" "protocol -" \
        "$(ws_text "$(lerr 401 "$req" ping)")" \
        "$(ws_text "$(lerr 401 "$req" subscribe)")" \
        "$(ws_text "$(lerr 401 "$req" msg)")" \
        "$(ws_text "$(lerr 401 "bad token signature" auth)")" \
        "$(ws_text "$(lerr 400 "auth needs a token header" auth)")" \
        "$(ws_text "$(lerr 401 "$req" ping)")" \
        "$(ws_text "$(auth_ok 42 $exp)")" \
        "$(ws_text 'LHTTP/1.0 pong\r\n\r\nin')" \
        "still-open" "close 1000"
    wait "$silent"
    ms=$(elapsed_ms "$start")
    run cat "$(lh_tmp)/silent.out"
    lines_are "status 101" "accept ok" "protocol -" "close 4401 authentication required"
    [ "$ms" -ge 1400 ] && [ "$ms" -lt 5000 ] || { echo "closed after $ms ms" >&2; false; }
    wait "$bearer"
    run cat "$(lh_tmp)/bearer.out"
    lines_are "status 101" "accept ok" "protocol -" "still-open" \
        "$(ws_text 'LHTTP/1.0 pong\r\n\r\nbearer')"
    # The deadline and the auth without a token: 2 more "missing".
    [ "$(fail_metric missing)" -eq $((m0 + 2)) ]
}

@test "a token and auth messages sent while the connect webhook is pending: the identity holds once the handshake completes" {
    local dir=$(lh_tmp)
    printf '%s\n' '{"/hooks/connect": {"status": 200, "delay_ms": 700}, "/hooks/disconnect": {"status": 204}}' >"$dir/routes.json"
    "$PY" "$LH_LIB/backend.py" serve --port-file "$dir/hook.port" --log "$dir/hook.log" \
        --routes "$dir/routes.json" >"$dir/hook.out" 2>&1 3>&- &
    lh_record $!
    wait_for 5 test -s "$dir/hook.port"
    start_own '{
        "listen": ["127.0.0.1:@PORT@"], "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "webhooks": {"connect": "http://127.0.0.1:'"$(cat "$dir/hook.port")"'/hooks/connect"},
        "auth": {"anonymous": false, "keys": [{"secret_file": "'"$K"'/secret"}]},
        "namespaces": {"user": {"subscribe": "owner"}}
    }'
    exp=$(($(date +%s) + 600))
    get="GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    # The auth command, pipelined behind the handshake.
    run probe "send:$get\r\n" "text:LHTTP/1.0 auth\r\ntoken:$(stok 42 exp=$exp)\r\n\r\n" \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:user.43\r\n\r\n' \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:user.42\r\n\r\n' 'text:LHTTP/1.0 ping\r\n\r\np' \
        response msg msg msg
    has_line "status 101"
    [ "$(tail -3 <<<"$output")" = "$(ws_text "$(auth_ok 42 $exp)")
$(ws_text "$(lerr 403 "$(denied subscribe user.43 "$OWNER")" subscribe)")
$(ws_text 'LHTTP/1.0 pong\r\n\r\np')" ] || lh_show_output
    # The token in the handshake, messages pipelined behind it; then one that leaves
    # before the webhook answers.
    run probe "send:${get}Authorization: Bearer $(stok 7)\r\n\r\n" \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:user.7 user.8\r\n\r\n' 'text:LHTTP/1.0 ping\r\n\r\np' \
        response msg msg
    has_line "status 101"
    [ "$(tail -2 <<<"$output")" = "$(ws_text "$(lerr 403 "$(denied subscribe user.8 "$OWNER")" subscribe)")
$(ws_text 'LHTTP/1.0 pong\r\n\r\np')" ] || lh_show_output
    run probe "send:${get}Authorization: Bearer $(stok 7)\r\n\r\n" \
        "text:LHTTP/1.0 auth\r\ntoken:$(stok 7)\r\n\r\n" rst
    assert_server_ok
}

# --- refused tokens -------------------------------------------------------------------------

@test "every bad token is refused with 401 in the handshake (Bearer and ?token=) and by auth, and counted by reason" {
    local name reason text t out n
    local -A before want
    for r in too_big malformed bad_alg unknown_kid bad_signature bad_claims expired \
        not_yet_valid bad_audience bad_issuer too_long_lived; do
        before[$r]=$(fail_metric $r)
        want[$r]=0
    done
    now=$(date +%s)
    long_sub=$(printf 'u%.0s' $(seq 1 300))
    sub256=$(printf 'u%.0s' $(seq 1 256))
    # name|metric reason|reason text|token
    cases=(
        "expired|expired|token expired|$(tok 42 exp=-100)"
        "expired long ago, no leeway can save it|expired|token expired|$(tok 42 exp=1000)"
        "forged (a flipped signature byte)|bad_signature|bad token signature|$(tok 42 --flip)"
        "signed with another secret|bad_signature|bad token signature|$(mint "$K/other" sub=42 aud=lh iss=me)"
        "the kid of one secret, signed with the other|bad_signature|bad token signature|$(tok 42 --kid k2)"
        "RS256 signed by another RSA key|bad_signature|bad token signature|$(mint "$K/r1.key" --alg RS256 --kid rs sub=42 aud=lh iss=me)"
        "ES256 with a flipped signature|bad_signature|bad token signature|$(mint "$K/es.key" --alg ES256 --kid es sub=42 aud=lh iss=me --flip)"
        "alg none, no signature|malformed|malformed token|$(tok 42 --alg none)"
        "alg none with a signature|bad_alg|token algorithm not accepted|$(tok 42 --alg none)c2lnbmF0dXJl"
        "HS256 with the RSA public key as the secret (key confusion)|bad_alg|token algorithm not accepted|$(mint "$K/rs.pub" --kid rs sub=42 aud=lh iss=me)"
        "RS256 under an ES256 key's kid|bad_alg|token algorithm not accepted|$(mint "$K/rs.key" --alg RS256 --kid es sub=42 aud=lh iss=me)"
        "an algorithm lhttpd does not know|bad_alg|token algorithm not accepted|$(tok 42 --header '{"alg":"PS256","typ":"JWT"}')"
        "unknown kid|unknown_kid|no key for this token|$(tok 42 --kid nope)"
        "RS256 without a kid (the kid-less key is a secret)|bad_alg|token algorithm not accepted|$(mint "$K/rs.key" --alg RS256 sub=42 aud=lh iss=me)"
        "a kid of the JWKS file that it does not have|unknown_kid|no key for this token|$(mint "$K/r2.key" --alg RS256 --kid r2 sub=42 aud=lh iss=me)"
        "wrong audience|bad_audience|token audience not accepted|$(tok 42 aud=other)"
        "no audience|bad_audience|token audience not accepted|$(mint "$K/secret" --raw-payload '{"sub":"42","iss":"me"}')"
        "wrong issuer|bad_issuer|token issuer not accepted|$(tok 42 iss=other)"
        "too big (auth.max_token_bytes 2048)|too_big|token over auth.max_token_bytes|$(tok 42 pad="$(printf 'p%.0s' $(seq 1 2000))")"
        "too long-lived (auth.max_lifetime_s 3600)|too_long_lived|token lifetime over auth.max_lifetime_s|$(tok 42 exp=+7200)"
        "not valid yet (nbf)|not_yet_valid|token not valid yet|$(tok 42 nbf=+600)"
        "issued in the future (iat)|not_yet_valid|token not valid yet|$(tok 42 iat=+600)"
        "malformed base64url in the header|malformed|malformed token|e!!!.eyJzdWIiOiI0MiJ9.c2ln"
        "malformed base64url in the payload|malformed|malformed token|$(mint "$K/secret" --payload-b64 'eyJzdWIi*!')"
        "malformed base64url in the signature|malformed|malformed token|$(tok 42 | cut -d. -f1,2).c2ln!!"
        "two parts|malformed|malformed token|$(tok 42 | cut -d. -f1,2)"
        "four parts|malformed|malformed token|$(tok 42).c2ln"
        "a payload that is a JSON array|malformed|malformed token|$(mint "$K/secret" --raw-payload '[1,2]')"
        "a payload that is not JSON|malformed|malformed token|$(mint "$K/secret" --raw-payload 'sub=42')"
        "a header that is a JSON string|malformed|malformed token|$(tok 42 --header '"HS256"')"
        "a critical header extension|malformed|malformed token|$(tok 42 --header '{"alg":"HS256","crit":["x"],"x":1}')"
        "a NUL in sub|malformed|malformed token|$(mint "$K/secret" --raw-payload '{"sub":"4\u00002","aud":"lh","iss":"me"}')"
        "duplicate claims|bad_claims|bad token claims|$(mint "$K/secret" --raw-payload '{"sub":"1","sub":"2","aud":"lh","iss":"me"}')"
        "duplicate header names|bad_claims|bad token claims|$(tok 42 --header '{"alg":"HS256","alg":"HS256"}')"
        "sub that is a number|bad_claims|bad token claims|$(mint "$K/secret" --raw-payload '{"sub":42,"aud":"lh","iss":"me"}')"
        "CR LF in sub (a header injection)|bad_claims|bad token claims|$(mint "$K/secret" --raw-payload '{"sub":"42\r\nx-admin:1","aud":"lh","iss":"me"}')"
        "a LF in sub|bad_claims|bad token claims|$(mint "$K/secret" --raw-payload '{"sub":"42\nsender:1","aud":"lh","iss":"me"}')"
        "sub of 300 bytes|bad_claims|bad token claims|$(tok "$long_sub")"
        "sub of 256 bytes|bad_claims|bad token claims|$(tok "$sub256")"
        "sub with a trailing space|bad_claims|bad token claims|$(tok '42 ')"
        "exp that is a string|bad_claims|bad token claims|$(mint "$K/secret" --raw-payload '{"sub":"42","aud":"lh","iss":"me","exp":"soon"}')"
        "channels that is a string|bad_claims|bad token claims|$(mint "$K/secret" --raw-payload '{"sub":"42","aud":"lh","iss":"me","channels":"feed.a"}')"
        "channels with a number|bad_claims|bad token claims|$(mint "$K/secret" --raw-payload '{"sub":"42","aud":"lh","iss":"me","channels":["feed.a",1]}')"
        "info that is an array|bad_claims|bad token claims|$(mint "$K/secret" --raw-payload '{"sub":"42","aud":"lh","iss":"me","info":[1]}')"
    )
    for c in "${cases[@]}"; do
        IFS='|' read -r name reason text t <<<"$c"
        out=$(probe -H "Authorization: Bearer $t" upgrade)
        grep -qxF "status 401" <<<"$out" &&
            grep -qxF 'header www-authenticate: Bearer realm="lhttpd", error="invalid_token", error_description="'"$text"'"' <<<"$out" || {
            echo "handshake with $name:" >&2
            echo "$out" >&2
            false
        }
        out=$(probe upgrade "text:LHTTP/1.0 auth\r\ntoken:$t\r\n\r\n" msg \
            'text:LHTTP/1.0 subscribe\r\nsubscribe:chat.x\r\n\r\n' msg)
        [ "$(tail -2 <<<"$out")" = "$(ws_text "$(lerr 401 "$text" auth)")
$(ws_text "$(lerr 403 "$(denied subscribe chat.x "$AUTHN")" subscribe)")" ] || {
            echo "auth with $name: (never anonymous-turned-user)" >&2
            echo "$out" >&2
            false
        }
        want[$reason]=$((want[$reason] + 2))
    done
    # In the query: percent-encoded (a %2E is a dot), or over the size that fits.
    t=$(tok 42 --flip)
    run probe "upgrade:/?x=1&token=${t//./%2E}&y=2"
    has_line "status 401"
    has_line 'header www-authenticate: Bearer realm="lhttpd", error="invalid_token", error_description="bad token signature"'
    run probe "upgrade:/?token=$(tok 42 pad="$(printf 'p%.0s' $(seq 1 2000))")"
    has_line "status 401"
    has_line 'header www-authenticate: Bearer realm="lhttpd", error="invalid_token", error_description="token over auth.max_token_bytes"'
    # A bad percent-encoding is a malformed token, not a big one.
    run probe "upgrade:/?token=%zz"
    has_line "status 401"
    has_line 'header www-authenticate: Bearer realm="lhttpd", error="invalid_token", error_description="malformed token"'
    run probe "upgrade:/?token=$(tok 42 | cut -d. -f1,2).abc%"
    has_line 'header www-authenticate: Bearer realm="lhttpd", error="invalid_token", error_description="malformed token"'
    want[bad_signature]=$((want[bad_signature] + 1))
    want[too_big]=$((want[too_big] + 1))
    want[malformed]=$((want[malformed] + 2))
    for r in "${!want[@]}"; do
        n=$(fail_metric $r)
        [ "$n" -eq $((before[$r] + want[$r])) ] || {
            echo "lhttpd_auth_failures_total{reason=\"$r\"}: $n, expected ${before[$r]} + ${want[$r]}" >&2
            false
        }
    done
}

@test "tokens of every kind are accepted: HS256/384/512, a kid'ed secret, RS256 and ES256 from PEM files and from the JWKS file" {
    local exp out
    exp=$(($(date +%s) + 600))
    c="sub=7 aud=lh iss=me exp=$exp"
    # shellcheck disable=SC2086
    toks=("$(mint "$K/secret" $c)" "$(mint "$K/secret" $c --alg HS384)"
        "$(mint "$K/secret" $c --alg HS512)" "$(mint "$K/secret2" $c --kid k2 --alg HS512)"
        "$(mint "$K/rs.key" $c --alg RS256 --kid rs)" "$(mint "$K/es.key" $c --alg ES256 --kid es)"
        "$(mint "$K/r1.key" $c --alg RS256 --kid r1)" "$(mint "$K/e1.key" $c --alg ES256 --kid e1)"
        "$(mint "$K/secret" $c nbf=+3)"
        "$(mint "$K/secret" --raw-payload '{"sub":"7","aud":["x","lh"],"iss":"me","exp":'$exp'}')")
    for t in "${toks[@]}"; do
        out=$(probe upgrade "text:LHTTP/1.0 auth\r\ntoken:$t\r\n\r\n" msg 'text:LHTTP/1.0 subscribe\r\nsubscribe:user.7\r\n\r\n' \
            'text:LHTTP/1.0 ping\r\n\r\nok' msg)
        [ "$(tail -2 <<<"$out")" = "$(ws_text "$(auth_ok 7 $exp)")
$(ws_text 'LHTTP/1.0 pong\r\n\r\nok')" ] || {
            echo "refused: $t" >&2
            echo "$out" >&2
            false
        }
        run probe -H "Authorization: bearer  $t" upgrade
        has_line "status 101"
    done
    # A token without exp never expires; a 255-byte user id is the longest.
    u255=$(printf 'u%.0s' $(seq 1 255))
    run probe upgrade "text:LHTTP/1.0 auth\r\ntoken:$(mint "$K/secret" sub=$u255 aud=lh iss=me)\r\n\r\n" msg
    last_line_is "$(ws_text "$(auth_ok $u255 0)")"
}

@test "auth.algorithms pins the algorithms, require_exp wants an exp, leeway_s 0 allows no skew, max_token_bytes is exact" {
    local exp t n p
    start_own '{
        "listen": ["127.0.0.1:@PORT@"], "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "auth": {"keys": [{"secret_file": "'"$K"'/secret"}, {"kid": "es", "public_key_file": "'"$K"'/es.pub"}],
                 "algorithms": ["ES256", "HS512"], "require_exp": true, "leeway_s": 0,
                 "max_token_bytes": 256}
    }'
    exp=$(($(date +%s) + 600))
    authp() { probe upgrade "text:LHTTP/1.0 auth\r\ntoken:$1\r\n\r\n" msg | tail -1; }
    refused() { ws_text "$(lerr 401 "$1" auth)"; }
    [ "$(authp "$(mint "$K/es.key" --alg ES256 --kid es sub=1 exp=$exp)")" = "$(ws_text "$(auth_ok 1 $exp)")" ]
    [ "$(authp "$(mint "$K/secret" --alg HS512 sub=1 exp=$exp)")" = "$(ws_text "$(auth_ok 1 $exp)")" ]
    [ "$(authp "$(mint "$K/secret" --alg HS256 sub=1 exp=$exp)")" = "$(refused "token algorithm not accepted")" ]
    [ "$(authp "$(mint "$K/secret" --alg HS384 sub=1 exp=$exp)")" = "$(refused "token algorithm not accepted")" ]
    run probe -H "Authorization: Bearer $(mint "$K/secret" sub=1 exp=$exp)" upgrade
    has_line 'header www-authenticate: Bearer realm="lhttpd", error="invalid_token", error_description="token algorithm not accepted"'
    [ "$(authp "$(mint "$K/secret" --alg HS512 sub=1)")" = "$(refused "bad token claims")" ]
    [ "$(authp "$(mint "$K/secret" --alg HS512 sub=1 exp=-1)")" = "$(refused "token expired")" ]
    [ "$(authp "$(mint "$K/secret" --alg HS512 sub=1 exp=$exp nbf=+2)")" = "$(refused "token not valid yet")" ]
    # Pad a token to exactly 256 bytes: accepted; one more byte is too big.
    n=$(mint "$K/secret" --alg HS512 sub=1 exp=$exp pad= | tr -d '\n' | wc -c)
    p=$(((256 - n) * 3 / 4 - 2))
    while t=$(mint "$K/secret" --alg HS512 sub=1 exp=$exp pad="$(printf 'p%.0s' $(seq 1 $p))") && [ ${#t} -lt 256 ]; do
        p=$((p + 1))
    done
    # (36 bytes of header, 86 of signature and two dots leave 132 for the payload: a
    # base64url length that exists.)
    [ ${#t} -eq 256 ]
    [ "$(authp "$t")" = "$(ws_text "$(auth_ok 1 $exp)")" ]
    t=$(mint "$K/secret" --alg HS512 sub=1 exp=$exp pad="$(printf 'p%.0s' $(seq 1 $((p + 1))))")
    [ ${#t} -gt 256 ]
    [ "$(authp "$t")" = "$(refused "token over auth.max_token_bytes")" ]
}

# --- expiry and refresh ---------------------------------------------------------------------

@test "token expiry: refresh, then 4401 after auth.expiry_grace_ms; a refresh keeps it open; a refresh for another user gets 403 and the identity stays" {
    local exp now o=$(lh_tmp)
    use STRICT
    nr0=$(fail_metric not_refreshed)
    now=$(date +%s)
    exp=$((now + 2))
    t=$(stok 42 exp=$exp)
    start=${EPOCHREALTIME/./}
    # Not refreshed: refresh at exp, close 4401 about 1.5 s later.
    probe --timeout 6 -H "Authorization: Bearer $t" upgrade msg expect-close >"$o/lapse.out" &
    lapse=$!
    # Refreshed after the refresh message: stays past the grace.
    fresh=$(stok 42 exp=$((now + 600)))
    probe --timeout 6 -H "Authorization: Bearer $t" upgrade msg \
        "text:LHTTP/1.0 auth\r\ntoken:$fresh\r\n\r\n" msg listen:2500 \
        'text:LHTTP/1.0 ping\r\n\r\nalive' msg >"$o/refreshed.out" &
    refreshed=$!
    # Refreshed before exp: no refresh message at all.
    probe --timeout 6 -H "Authorization: Bearer $t" upgrade \
        "text:LHTTP/1.0 auth\r\ntoken:$fresh\r\n\r\n" msg listen:3000 >"$o/early.out" &
    early=$!
    # A refresh for another user on MAIN, whose namespaces show the identity: 403, user 42
    # still owns user.42, and the first token's expiry still holds.
    use MAIN
    m0=$(fail_metric other_user)
    mnr0=$(fail_metric not_refreshed)
    mexp=$((now + 2))
    run probe --timeout 6 -H "Authorization: Bearer $(tok 42 exp=$mexp)" upgrade \
        "text:LHTTP/1.0 auth\r\ntoken:$(tok 43)\r\n\r\n" msg \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:user.43\r\n\r\n' msg \
        'text:LHTTP/1.0 subscribe\r\nsubscribe:user.42\r\n\r\n' \
        'text:LHTTP/1.0 ping\r\n\r\nis-42' msg msg expect-close
    lines_are "status 101" "accept ok" "protocol -" \
        "$(ws_text "$(lerr 403 "the token is for another user than this connection's" auth)")" \
        "$(ws_text "$(lerr 403 "$(denied subscribe user.43 "$OWNER")" subscribe)")" \
        "$(ws_text 'LHTTP/1.0 pong\r\n\r\nis-42')" \
        "$(ws_text "LHTTP/1.0 refresh\\r\\nexpires:$mexp\\r\\n\\r\\n")" \
        "close 4401 token expired"
    [ "$(fail_metric other_user)" -eq $((m0 + 1)) ]
    [ "$(fail_metric not_refreshed)" -eq $((mnr0 + 1)) ]
    wait $lapse
    ms=$(elapsed_ms "$start")
    run cat "$o/lapse.out"
    lines_are "status 101" "accept ok" "protocol -" \
        "$(ws_text "LHTTP/1.0 refresh\\r\\nexpires:$exp\\r\\n\\r\\n")" "close 4401 token expired"
    # exp is at most 2 s away, then 1.5 s of grace.
    [ "$ms" -ge 1900 ] && [ "$ms" -lt 6000 ] || { echo "closed after $ms ms" >&2; false; }
    wait $refreshed
    run cat "$o/refreshed.out"
    lines_are "status 101" "accept ok" "protocol -" \
        "$(ws_text "LHTTP/1.0 refresh\\r\\nexpires:$exp\\r\\n\\r\\n")" \
        "$(ws_text "$(auth_ok 42 $((now + 600)))")" "still-open" \
        "$(ws_text 'LHTTP/1.0 pong\r\n\r\nalive')"
    wait $early
    run cat "$o/early.out"
    lines_are "status 101" "accept ok" "protocol -" "$(ws_text "$(auth_ok 42 $((now + 600)))")" \
        "still-open"
    use STRICT
    [ "$(fail_metric not_refreshed)" -eq $((nr0 + 1)) ]
}

@test "a token that expires very far ahead (no auth.max_lifetime_s) gets no refresh: the expiry timer does not wrap" {
    use STRICT
    # (exp - now) * 1000 ms is 2^64 + 384 here: wrapped, the timer fired at once.
    exp=$(($(date +%s) + 18446744073709552))
    run probe upgrade "text:LHTTP/1.0 auth\r\ntoken:$(mint "$K/secret" sub=42 exp=$exp)\r\n\r\n" msg listen:1200
    lines_are "status 101" "accept ok" "protocol -" "$(ws_text "$(auth_ok 42 $exp)")" still-open
}

@test "a token with the largest exp (2^63 - 1) is accepted: the leeway does not overflow it into the past" {
    use STRICT
    exp=9223372036854775807
    run probe upgrade "text:LHTTP/1.0 auth\r\ntoken:$(mint "$K/secret" sub=42 exp=$exp)\r\n\r\n" msg listen:1200
    lines_are "status 101" "accept ok" "protocol -" "$(ws_text "$(auth_ok 42 $exp)")" still-open
}

# --- channels claim and subscription tokens -----------------------------------------------

@test "token namespace: the channels claim and subscription tokens (for the same user only) grant subscriptions; the token is never delivered" {
    local t
    t=$(tok 42 channels=feed.a,feed.b)
    st=$(tok 42 channels=feed.c,feed.e)
    ps_bg cl "open:c:$LH_PORT:/?token=$t" open:l:$LH_PORT sub:l:lobby \
        'sub:c:feed.a feed.b' sub:c:feed.c \
        "send:c:LHTTP/1.0 subscribe\r\nsubscribe:feed.c\r\nsubscribe-token:$st\r\n\r\n" \
        "send:c:LHTTP/1.0 subscribe\r\nsubscribe:feed.d\r\nsubscribe-token:$(tok 43 channels=feed.d)\r\n\r\n" recv:c \
        "send:c:LHTTP/1.0 subscribe\r\nsubscribe:feed.e\r\nsubscribe-token:$(tok 42 channels=feed.e --flip)\r\n\r\n" recv:c \
        "send:c:LHTTP/1.0 subscribe\r\nsubscribe:feed.e feed.f\r\nsubscribe-token:$st\r\n\r\n" recv:c \
        "send:c:LHTTP/1.0 note\r\nsubscribe:feed.g\r\nsubscribe-token:$(tok 42 channels=feed.g)\r\npublish:lobby\r\n\r\nhi" recv:l \
        barrier:c print:ready recv:c recv:c recv:c recv:c
    wait_bg cl '^ready$'
    for ch in feed.a feed.d feed.e feed.f feed.c feed.g feed.b; do
        [ "$(post $ch $ch)" = 200 ]
    done
    wait_gone "$PS_PID_cl" 10
    run bg_out cl
    lines_are "c open" "l open" "l subscribed" "c subscribed" \
        "$(got c "$(lerr 403 "$(denied subscribe feed.c "$LISTED")" subscribe)")" "c subscribed" \
        "$(got c "$(lerr 401 "subscription token refused: it is for another user" subscribe)")" \
        "$(got c "$(lerr 401 "subscription token refused: bad token signature" subscribe)")" \
        "$(got c "$(lerr 403 "$(denied subscribe feed.f "$LISTED")" subscribe)")" \
        "$(got l 'LHTTP/1.0 note\r\nsubscribe:feed.g\r\npublish:lobby\r\n\r\nhi')" \
        "c barrier" ready \
        "$(got c 'LHTTP/1.0 msg\r\npublish:feed.a\r\n\r\nfeed.a')" \
        "$(got c 'LHTTP/1.0 msg\r\npublish:feed.c\r\n\r\nfeed.c')" \
        "$(got c 'LHTTP/1.0 msg\r\npublish:feed.g\r\n\r\nfeed.g')" \
        "$(got c 'LHTTP/1.0 msg\r\npublish:feed.b\r\n\r\nfeed.b')"
    # An anonymous connection: the token namespace is closed to it.
    run ps_run open:a:$LH_PORT sub:a:feed.a
    lines_are "a open" "$(got a "$(lerr 403 "$(denied subscribe feed.a "$LISTED")" subscribe)")" "a subscribed"
}

# --- publish rules and stamp_user -----------------------------------------------------------

@test "publish rules: none, subscribers (subscribe and publish in one message; not unsubscribe and publish), authenticated, any" {
    run ps_run -H "s=Authorization: Bearer $(tok 44)" -H "p=Authorization: Bearer $(tok 43)" \
        -H "o=Authorization: Bearer $(tok 42)" \
        open:s:$LH_PORT open:p:$LH_PORT open:o:$LH_PORT open:a:$LH_PORT \
        sub:s:chat.room sub:o:user.42 \
        pub:o:user.42:to-myself pub:p:chat.room:not-a-subscriber barrier:p \
        "send:p:LHTTP/1.0 msg\r\nsubscribe:chat.room\r\npublish:chat.room\r\n\r\njoined" recv:s recv:p \
        "send:p:LHTTP/1.0 msg\r\nunsubscribe:chat.room\r\npublish:chat.room\r\n\r\nleaving" recv:p \
        pub:s:chat.room:still-there recv:p recv:s \
        pub:a:news.x:anon sub:a:news.x pub:o:news.x:from-42 recv:a pub:a:lobby:any barrier:o
    [ "$status" -eq 0 ] || lh_show_output
    lines_are "s open" "p open" "o open" "a open" "s subscribed" "o subscribed" \
        "$(got p "$(lerr 403 "$(denied publish chat.room "$SUBS")" msg)")" "p barrier" \
        "$(got s 'LHTTP/1.0 msg\r\nsubscribe:chat.room\r\npublish:chat.room\r\nsender:43\r\n\r\njoined')" \
        "$(got p 'LHTTP/1.0 msg\r\nsubscribe:chat.room\r\npublish:chat.room\r\nsender:43\r\n\r\njoined')" \
        "$(got p "$(lerr 403 "$(denied publish chat.room "$SUBS")" msg)")" \
        "$(got p 'LHTTP/1.0 msg\r\npublish:chat.room\r\nsender:44\r\n\r\nstill-there')" \
        "$(got s 'LHTTP/1.0 msg\r\npublish:chat.room\r\nsender:44\r\n\r\nstill-there')" \
        "$(got a "$(lerr 403 "$(denied publish news.x "$AUTHN")" msg)")" "a subscribed" \
        "$(got a 'LHTTP/1.0 msg\r\npublish:news.x\r\nsender:42\r\n\r\nfrom-42')" \
        "$(got o "$(lerr 403 "$(denied publish user.42 "$NONE")" msg)")" "o barrier"
    # The server side may publish where clients may not.
    ps_bg own -H "o=Authorization: Bearer $(tok 42)" open:o:$LH_PORT sub:o:user.42 print:ready recv:o
    wait_bg own '^ready$'
    [ "$(post user.42 from-the-server)" = 200 ]
    wait_gone "$PS_PID_own" 5
    bg_has own '^o got [0-9]+ LHTTP/1\.0 msg\\r\\npublish:user\.42\\r\\n\\r\\nfrom-the-server$'
}

@test "stamp_user cannot be forged: every sender header a client writes is replaced by its user id; an anonymous publisher's is empty" {
    run ps_run -H "p=Authorization: Bearer $(tok 42)" -H "s=Authorization: Bearer $(tok 50)" \
        open:p:$LH_PORT open:s:$LH_PORT open:a:$LH_PORT open:l:$LH_PORT \
        'sub:p:chat.room' 'sub:s:chat.room open.x' sub:l:lobby \
        "send:p:LHTTP/1.0 say\r\nsender:99\r\npublish:chat.room\r\nSENDER:98\r\nx-a:1\r\nSender: 97\r\n\r\nhello\r\nsender:96" recv:s \
        "send:a:LHTTP/1.0 say\r\npublish:open.x\r\nsender:42\r\n\r\nanon" recv:s \
        "send:p:LHTTP/1.0 say\r\npublish:chat.room lobby\r\nsender:99\r\n\r\nboth" recv:s recv:l
    [ "$status" -eq 0 ] || lh_show_output
    lines_are "p open" "s open" "a open" "l open" "p subscribed" "s subscribed" "l subscribed" \
        "$(got s 'LHTTP/1.0 say\r\npublish:chat.room\r\nx-a:1\r\nsender:42\r\n\r\nhello\r\nsender:96')" \
        "$(got s 'LHTTP/1.0 say\r\npublish:open.x\r\nsender:\r\n\r\nanon')" \
        "$(got s 'LHTTP/1.0 say\r\npublish:chat.room lobby\r\nsender:42\r\n\r\nboth')" \
        "$(got l 'LHTTP/1.0 say\r\npublish:chat.room lobby\r\nsender:99\r\n\r\nboth')"
}

@test "a subscribe or publish list with one refused channel is refused whole: nothing of the message takes effect" {
    local t=$(lh_tmp)
    ps_bg cl -H "c=Authorization: Bearer $(tok 42)" -H "p=Authorization: Bearer $(tok 43)" \
        open:c:$LH_PORT open:p:$LH_PORT open:l:$LH_PORT 'sub:l:lobby fence' sub:c:fence \
        'sub:c:lobby2 user.43 user.42' \
        "send:c:LHTTP/1.0 x\r\nsubscribe:lobby3\r\npublish:user.43\r\n\r\nno" recv:c \
        "send:c:LHTTP/1.0 x\r\nunsubscribe:fence\r\nsubscribe:lobby4\r\npublish:lobby chat.room\r\n\r\nno" recv:c \
        'pub:p:lobby chat.room:refused' recv:p \
        barrier:c print:ready await:$t/go \
        pub:p:lobby2:no pub:p:lobby3:no pub:p:lobby4:no pub:p:fence:F recv:c recv:l
    wait_bg cl '^ready$'
    [ "$(post user.42 no)" = 200 ]
    touch "$t/go"
    wait_gone "$PS_PID_cl" 10
    run bg_out cl
    lines_are "c open" "p open" "l open" "l subscribed" "c subscribed" \
        "$(got c "$(lerr 403 "$(denied subscribe user.43 "$OWNER")" subscribe)")" "c subscribed" \
        "$(got c "$(lerr 403 "$(denied publish user.43 "$NONE")" x)")" \
        "$(got c "$(lerr 403 "$(denied publish chat.room "$SUBS")" x)")" \
        "$(got p "$(lerr 403 "$(denied publish chat.room "$SUBS")" msg)")" \
        "c barrier" ready "await ok" \
        "$(got c 'LHTTP/1.0 msg\r\npublish:fence\r\n\r\nF')" \
        "$(got l 'LHTTP/1.0 msg\r\npublish:fence\r\n\r\nF')"
}

@test "lhttpd_permission_denied_total counts refusals by action and namespace, and nothing else" {
    for a in subscribe publish; do
        for ns in "" chat user feed news open; do
            eval "b_${a}_${ns:-dflt}=\$(denied_metric $a '$ns')"
        done
    done
    run ps_run -H "o=Authorization: Bearer $(tok 42)" open:a:$LH_PORT open:o:$LH_PORT \
        sub:a:chat.x 'sub:a:chat.y chat.z' sub:a:user.1 sub:o:user.1 sub:o:user.42 \
        sub:a:feed.q sub:a:news.q sub:a:open.q sub:a:lobby \
        pub:a:news.q:x pub:a:news.q:y pub:o:user.42:x pub:o:chat.x:x pub:a:open.q:ok \
        pub:o:news.q:ok barrier:a barrier:o
    [ "$status" -eq 0 ] || lh_show_output
    # A refused list counts once, for its first refused channel.
    [ "$(denied_metric subscribe chat)" -eq $((b_subscribe_chat + 2)) ]
    [ "$(denied_metric subscribe user)" -eq $((b_subscribe_user + 2)) ]
    [ "$(denied_metric subscribe feed)" -eq $((b_subscribe_feed + 1)) ]
    [ "$(denied_metric subscribe news)" -eq "$b_subscribe_news" ]
    [ "$(denied_metric subscribe open)" -eq "$b_subscribe_open" ]
    [ "$(denied_metric subscribe '')" -eq "$b_subscribe_dflt" ]
    [ "$(denied_metric publish news)" -eq $((b_publish_news + 2)) ]
    [ "$(denied_metric publish user)" -eq $((b_publish_user + 1)) ]
    [ "$(denied_metric publish chat)" -eq $((b_publish_chat + 1)) ]
    [ "$(denied_metric publish open)" -eq "$b_publish_open" ]
    [ "$(denied_metric publish feed)" -eq "$b_publish_feed" ]
}

# --- across workers and nodes ---------------------------------------------------------------

@test "a refused publish reaches no subscriber on any worker or node (2 workers, 2 nodes on one NATS); the stamped sender crosses them" {
    local conf echo_so
    echo_so=$(dirname "$LHTTPD")/modules/echo.so
    conf='{
        "listen": ["127.0.0.1:@PORT@"], "workers": @W@,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "modules": [{"path": "'"$echo_so"'", "config": {"pid_header": "x-worker-pid"}}],
        "auth": {"keys": [{"secret_file": "'"$K"'/secret"}]},
        "namespaces": {"chat": {"subscribe": "authenticated", "publish": "subscribers",
                                "stamp_user": true},
                       "ann": {"subscribe": "any", "publish": "authenticated"}}
    }'
    start_own "${conf//@W@/2}"
    save_lhttpd A
    start_own "${conf//@W@/1}"
    save_lhttpd B
    t=$(stok 1)
    hs=()
    steps=(open:m:$A_PORT "send:m:LHTTP/1.0 auth\r\ntoken:$t\r\n\r\n" recv:m 'sub:m:chat.r ann.r')
    # 24 subscribers on A, open at once: the accept balancing lets no worker hold more
    # than 8 over the average, so both of A's workers have some (checked below); two on
    # B. Each is synced with the marker's publisher (through NATS for the others).
    subs="$(echo a{1..24}) b1 b2"
    for s in $subs; do
        port=$A_PORT
        [[ $s == b* ]] && port=$B_PORT
        hs+=(-H "$s=Authorization: Bearer $t")
        steps+=(open:$s:$port "sub:$s:chat.r ann.r" "send:$s:LHTTP/1.0 echo\r\n\r\npid" recv:$s)
    done
    for s in $subs; do steps+=(sync:m:$s:chat.r); done
    # The refused: a user not subscribed to chat.r; an anonymous one on ann.r; a list
    # with one refused channel. Then the marker.
    steps+=(open:x:$A_PORT "send:x:LHTTP/1.0 auth\r\ntoken:$(stok x)\r\n\r\n" recv:x
        pub:x:chat.r:refused-1 recv:x open:y:$B_PORT pub:y:ann.r:refused-2 recv:y
        'pub:x:ann.r chat.r:refused-3' recv:x
        "send:m:LHTTP/1.0 msg\r\npublish:chat.r\r\nsender:forged\r\n\r\nmarker")
    for s in $subs; do steps+=(recv:$s); done
    run ps_run "${hs[@]}" "${steps[@]}"
    [ "$status" -eq 0 ] || lh_show_output
    no_match 'refused-[0-9]$'
    # The marker is each subscriber's first message after the sync, stamped with its
    # publisher's user id on every worker and node.
    for s in $subs; do
        [ "$(grep -E "^$s got " <<<"$output" | tail -1)" = "$(got $s 'LHTTP/1.0 msg\r\npublish:chat.r\r\nsender:1\r\n\r\nmarker')" ] ||
            { echo "$s did not get the marker first" >&2; lh_show_output; }
    done
    has_line "$(got x "$(lerr 403 "not allowed to publish to \"chat.r\": namespace \"chat\" $SUBS" msg)")"
    has_line "$(got y "$(lerr 403 "not allowed to publish to \"ann.r\": namespace \"ann\" $AUTHN" msg)")"
    [ "$(count_lines '^x got .*code:403')" -eq 2 ]
    # Both of A's workers had subscribers.
    pids=$(grep -oE '^a[0-9]+ got [0-9]+ .*x-worker-pid:[0-9]+' <<<"$output" | grep -oE '[0-9]+$' | sort -u | wc -l)
    [ "$pids" -eq 2 ] || { echo "A's subscribers were all on one worker" >&2; lh_show_output; }
}

# --- reload -------------------------------------------------------------------------------

@test "a reload that tightens a rule ends the subscriptions it no longer allows (unsubscribed, with channel and reason); new connections get the new rules" {
    local cfg
    cfg='{
        "listen": ["127.0.0.1:@PORT@"], "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "auth": {"keys": [{"secret_file": "'"$K"'/secret"}]},
        "namespaces": {"room": {"subscribe": "@RULE@", "publish": "any"},
                       "user": {"subscribe": "@USER@"}}
    }'
    c1=${cfg//@RULE@/any}
    start_own "${c1//@USER@/any}"
    ps_bg cl --timeout 10 -H "u=Authorization: Bearer $(stok 42)" open:a:$LH_PORT open:u:$LH_PORT \
        'sub:a:room.a other.b user.42 room.b' 'sub:u:room.a user.42 user.43' print:ready \
        recv:a recv:a recv:a recv:u pub:a:room.a:after-reload pub:a:other.b:fence recv:a \
        recv:u barrier:a
    wait_bg cl '^ready$'
    sed -i 's/"room": {"subscribe": "any"/"room": {"subscribe": "authenticated"/;
            s/"user": {"subscribe": "any"/"user": {"subscribe": "owner"/' "$LH_CONF"
    grep -q '"room": {"subscribe": "authenticated"' "$LH_CONF"
    run "$LHTTPD" -s reload -c "$LH_CONF"
    [ "$status" -eq 0 ] || lh_show_output
    wait_gone "$PS_PID_cl" 10
    run bg_out cl
    unsub() { echo "LHTTP/1.0 unsubscribed\\r\\nchannel:$1\\r\\nreason:$2\\r\\n\\r\\n"; }
    lines_are "a open" "u open" "a subscribed" "u subscribed" ready \
        "$(got a "$(unsub room.b "$(denied subscribe room.b "$AUTHN")")")" \
        "$(got a "$(unsub user.42 "$(denied subscribe user.42 "$OWNER")")")" \
        "$(got a "$(unsub room.a "$(denied subscribe room.a "$AUTHN")")")" \
        "$(got u "$(unsub user.43 "$(denied subscribe user.43 "$OWNER")")")" \
        "$(got a 'LHTTP/1.0 msg\r\npublish:other.b\r\n\r\nfence')" \
        "$(got u 'LHTTP/1.0 msg\r\npublish:room.a\r\n\r\nafter-reload')" "a barrier"
    # A new connection: the new rules.
    run ps_run -H "u=Authorization: Bearer $(stok 42)" open:n:$LH_PORT open:u:$LH_PORT \
        sub:n:room.c sub:u:user.43 sub:u:room.c
    lines_are "n open" "u open" \
        "$(got n "$(lerr 403 "$(denied subscribe room.c "$AUTHN")" subscribe)")" "n subscribed" \
        "$(got u "$(lerr 403 "$(denied subscribe user.43 "$OWNER")" subscribe)")" "u subscribed" \
        "u subscribed"
    [ "$(metric 'lhttpd_server_unsubscribes_total{cause="rules"}')" -eq 4 ]
}

@test "a second reload reaches connections of a worker that the first one retired: the newest rules end their subscriptions too" {
    start_own '{
        "listen": ["127.0.0.1:@PORT@"], "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "namespaces": {"room": {"subscribe": "any"}, "news": {"subscribe": "any"}}
    }'
    ps_bg gen1 --timeout 10 open:a:$LH_PORT 'sub:a:room.a news.b' print:ready recv:a
    wait_bg gen1 '^ready$'
    # The first reload changes nothing a's subscriptions depend on: generation 1 drains.
    sed -i 's/"news": {"subscribe": "any"}/"news": {"subscribe": "any", "publish": "none"}/' "$LH_CONF"
    run "$LHTTPD" -s reload -c "$LH_CONF"
    [ "$status" -eq 0 ] || lh_show_output
    # The second one closes room to anonymous users, a's connection included.
    sed -i 's/"room": {"subscribe": "any"}/"room": {"subscribe": "authenticated"}/' "$LH_CONF"
    run "$LHTTPD" -s reload -c "$LH_CONF"
    [ "$status" -eq 0 ] || lh_show_output
    wait_gone "$PS_PID_gen1" 12
    run bg_out gen1
    lines_are "a open" "a subscribed" ready \
        "$(got a "LHTTP/1.0 unsubscribed\\r\\nchannel:room.a\\r\\nreason:$(denied subscribe room.a "$AUTHN")\\r\\n\\r\\n")"
}

@test "keys change on reload (SIGHUP): new secret and JWKS keys work, removed ones stop, on new and on old connections" {
    local kd=$(lh_tmp)/rk exp
    mkdir -p "$kd"
    cp "$K/secret" "$kd/secret"
    "$PY" "$MINT" --jwks r1="$K/r1.pub" e1="$K/e1.pub" >"$kd/jwks.json"
    start_own '{
        "listen": ["127.0.0.1:@PORT@"], "workers": 1,
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "auth": {"keys": [{"secret_file": "'"$kd"'/secret"}, {"jwks_file": "'"$kd"'/jwks.json"}]}
    }'
    exp=$(($(date +%s) + 600))
    old_hs=$(mint "$K/secret" sub=5 exp=$exp)
    new_hs=$(mint "$K/secret2" sub=5 exp=$exp)
    r1=$(mint "$K/r1.key" --alg RS256 --kid r1 sub=5 exp=$exp)
    r2=$(mint "$K/r2.key" --alg RS256 --kid r2 sub=5 exp=$exp)
    e1=$(mint "$K/e1.key" --alg ES256 --kid e1 sub=5 exp=$exp)
    ok=$(ws_text "$(auth_ok 5 $exp)")
    authp() { probe upgrade "text:LHTTP/1.0 auth\r\ntoken:$1\r\n\r\n" msg | tail -1; }
    [ "$(authp "$old_hs")" = "$ok" ]
    [ "$(authp "$r1")" = "$ok" ]
    [ "$(authp "$r2")" = "$(ws_text "$(lerr 401 "no key for this token" auth)")" ]
    [ "$(authp "$new_hs")" = "$(ws_text "$(lerr 401 "bad token signature" auth)")" ]
    # An old connection, kept across the reload: its refreshes obey the new keys too.
    ps_bg old open:o:$LH_PORT "send:o:LHTTP/1.0 auth\r\ntoken:$old_hs\r\n\r\n" recv:o \
        print:ready await:$(lh_tmp)/go \
        "send:o:LHTTP/1.0 auth\r\ntoken:$old_hs\r\n\r\n" recv:o \
        "send:o:LHTTP/1.0 auth\r\ntoken:$r1\r\n\r\n" recv:o \
        "send:o:LHTTP/1.0 auth\r\ntoken:$new_hs\r\n\r\n" recv:o \
        "send:o:LHTTP/1.0 auth\r\ntoken:$r2\r\n\r\n" recv:o
    wait_bg old '^ready$'
    cp "$K/secret2" "$kd/secret"
    "$PY" "$MINT" --jwks r2="$K/r2.pub" e1="$K/e1.pub" >"$kd/jwks.json"
    kill -HUP "$LH_PID"
    wait_log 'reload done' 10
    wait_log 'draining 1 connections' 5
    touch "$(lh_tmp)/go"
    [ "$(authp "$old_hs")" = "$(ws_text "$(lerr 401 "bad token signature" auth)")" ]
    [ "$(authp "$r1")" = "$(ws_text "$(lerr 401 "no key for this token" auth)")" ]
    [ "$(authp "$new_hs")" = "$ok" ]
    [ "$(authp "$r2")" = "$ok" ]
    [ "$(authp "$e1")" = "$ok" ]
    wait_gone "$PS_PID_old" 10
    run bg_out old
    lines_are "o open" "$(got o "$(auth_ok 5 $exp)")" ready "await ok" \
        "$(got o "$(lerr 401 "bad token signature" auth)")" \
        "$(got o "$(lerr 401 "no key for this token" auth)")" \
        "$(got o "$(auth_ok 5 $exp)")" "$(got o "$(auth_ok 5 $exp)")"
}

# --- lhttpd -t -------------------------------------------------------------------------------

@test "lhttpd -t: bad key files and auth or namespace settings are each a clear error and exit 1" {
    local d=$(lh_tmp) f=$(lh_tmp)/t.json
    printf 'x%.0s' $(seq 1 31) >"$d/short"
    printf '%s\r\n\r\n' "$(printf 'x%.0s' $(seq 1 31))" >"$d/short-crlf"
    printf -- '-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n' >"$d/bad.pem"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$d/small.key" 2>/dev/null
    openssl pkey -in "$d/small.key" -pubout -out "$d/small.pub"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$d/p384.key"
    openssl pkey -in "$d/p384.key" -pubout -out "$d/p384.pub"
    echo '{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}' >"$d/nokid.jwks"
    check() { # JSON_MEMBERS EXPECTED_OUTPUT
        printf '{"listen": ["127.0.0.1:1"], %s}\n' "$1" >"$f"
        run "$LHTTPD" -t -c "$f"
        [ "$status" -eq 1 ] && [ "$output" = "$2" ] || {
            echo "for: $1" >&2
            echo "expected: $2" >&2
            lh_show_output
        }
    }
    check '"auth": {"keys": [{"secret_file": "'"$d"'/missing"}]}' \
        "$f: auth.keys[0]: $d/missing: No such file or directory"
    check '"auth": {"keys": [{"secret_file": "'"$d"'/short"}]}' \
        "$f: auth.keys[0]: $d/short: an HMAC secret must have at least 32 bytes (RFC 7518 3.2)"
    check '"auth": {"keys": [{"kid": "a", "secret_file": "'"$K"'/secret"}, {"secret_file": "'"$d"'/short-crlf"}]}' \
        "$f: auth.keys[1]: $d/short-crlf: an HMAC secret must have at least 32 bytes (RFC 7518 3.2)"
    check '"auth": {"keys": [{"public_key_file": "'"$d"'/bad.pem"}]}' \
        "$f: auth.keys[0]: $d/bad.pem: not a PEM public key (\"-----BEGIN PUBLIC KEY-----\")"
    check '"auth": {"keys": [{"public_key_file": "'"$K"'/rs.key"}]}' \
        "$f: auth.keys[0]: $K/rs.key: not a PEM public key (\"-----BEGIN PUBLIC KEY-----\")"
    check '"auth": {"keys": [{"public_key_file": "'"$d"'/small.pub"}]}' \
        "$f: auth.keys[0]: $d/small.pub: an RSA key must have at least 2048 bits"
    check '"auth": {"keys": [{"public_key_file": "'"$d"'/p384.pub"}]}' \
        "$f: auth.keys[0]: $d/p384.pub: an EC key must be on P-256 (for ES256)"
    check '"auth": {"keys": [{"jwks_file": "'"$K"'/secret"}]}' \
        "$f: auth.keys[0]: $K/secret: not a JWKS document (an object with a \"keys\" array)"
    check '"auth": {"keys": [{"jwks_file": "'"$d"'/nokid.jwks"}]}' \
        "$f: auth.keys[0]: $d/nokid.jwks: key 0 has no \"kid\""
    # Positions are LINE:COLUMN of the value, or of the key when the key is the problem.
    at='{"listen": ["127.0.0.1:1"], "auth": {"keys": [{"jwks_file": "'"$K"'/jwks.json", '
    check '"auth": {"keys": [{"jwks_file": "'"$K"'/jwks.json", "kid": "x"}]}' \
        "$f:1:$((${#at} + 1)): auth.keys[0].kid: a JWKS file names its keys' kids itself"
    check '"auth": {"keys": [{"secret_file": "relative"}]}' \
        "$f:1:63: auth.keys[0].secret_file: must be an absolute path"
    check '"auth": {"keys": [{"kid": "a"}]}' \
        "$f:1:47: auth.keys[0]: needs one of \"secret_file\", \"public_key_file\", \"jwks_file\""
    check '"auth": {"anonymous": false}' \
        "$f:1:51: auth.anonymous: is false, but there are no auth.keys and no webhooks.connect: no connection could ever authenticate"
    check '"auth": {"algorithms": ["HS256", "none"]}' \
        "$f:1:62: auth.algorithms[1]: must be one of \"HS256\", \"HS384\", \"HS512\", \"RS256\", \"ES256\""
    check '"namespaces": {"chat": {"subscribe": "everyone"}}' \
        "$f:1:66: namespaces.chat.subscribe: must be one of \"any\", \"authenticated\", \"owner\", \"token\", \"webhook\""
    check '"namespaces": {"chat": {"publish": "owner"}}' \
        "$f:1:64: namespaces.chat.publish: must be one of \"any\", \"authenticated\", \"subscribers\", \"none\", \"webhook\""
    check '"namespaces": {"ops": {"subscribe": "webhook"}}' \
        "$f:1:65: namespaces.ops.subscribe: is \"webhook\" but webhooks.subscribe is not set"
    check '"namespaces": {"ops": {"publish": "webhook"}}' \
        "$f:1:63: namespaces.ops.publish: is \"webhook\" but webhooks.publish is not set"
    check '"namespaces": {"a.b": {}}' \
        "$f:1:44: namespaces.a.b: a namespace is \"\" or one channel token (channel characters, no '.')"
    # Fine: the same with the webhooks, and a secret of exactly 32 bytes.
    printf 'x%.0s' $(seq 1 32) >"$d/just32"
    printf '{"listen": ["127.0.0.1:1"], "webhooks": {"subscribe": "http://127.0.0.1:1/s", "publish": "http://127.0.0.1:1/p"}, "auth": {"keys": [{"secret_file": "%s"}]}, "namespaces": {"ops": {"subscribe": "webhook", "publish": "webhook"}}}\n' "$d/just32" >"$f"
    run "$LHTTPD" -t -c "$f"
    [ "$status" -eq 0 ] || lh_show_output
}
