#!/usr/bin/env bats
# Static files (static.root): content types, index.html, caching headers (ETag,
# Last-Modified, Cache-Control, 304), HEAD, and every way out of the root we could think
# of: "..", encoded in several spellings and twice, backslashes, absolute paths, NUL,
# overlong UTF-8, symlinks inside the root pointing outside, dot files. A file outside
# the root holds a marker that must never appear in any response. One server serves the
# whole file; the reload test comes last because it replaces the workers.

load ../lib/helpers

setup_file() {
    T=$(lh_tmp)
    export WWW=$T/www SECRET="TOPSECRET-$RANDOM$RANDOM"
    mkdir -p "$WWW/sub" "$WWW/.hidden" "$T/outside"
    printf '<!doctype html><title>root index</title>\n' >"$WWW/index.html"
    printf '<!doctype html><title>sub index</title>\n' >"$WWW/sub/index.html"
    printf '<p>page</p>\n' >"$WWW/sub/page.html"
    printf 'export const v = 1;\n' >"$WWW/app.js"
    printf 'body { color: red; }\n' >"$WWW/style.css"
    printf '{"a": 1}\n' >"$WWW/data.json"
    printf '<svg xmlns="http://www.w3.org/2000/svg"/>\n' >"$WWW/icon.svg"
    printf '\x89PNG\r\n\x1a\n\0\0\0\rIHDR' >"$WWW/pic.png"
    printf 'plain text\n' >"$WWW/notes.txt"
    printf 'spaced\n' >"$WWW/with space.txt"
    printf '\0\1\2\3' >"$WWW/blob.bin"
    printf 'hidden\n' >"$WWW/.env"
    printf 'hidden too\n' >"$WWW/.hidden/x.txt"
    # Outside the root, reachable only through links or "..".
    printf '%s\n' "$SECRET" >"$T/secret.txt"
    printf '%s\n' "$SECRET" >"$T/outside/secret.txt"
    ln -s "$T/secret.txt" "$WWW/link.txt"
    ln -s ../secret.txt "$WWW/rel-link.txt"
    ln -s "$T/outside" "$WWW/linkdir"
    ln -s /etc/passwd "$WWW/passwd"
    start_lhttpd '{
        "listen": ["127.0.0.1:@PORT@"],
        "nats": {"servers": ["nats://127.0.0.1:@NATS@"]},
        "control_socket": "'"$T"'/ctl.sock",
        "drain_timeout_ms": 1000,
        "static": {"root": "'"$WWW"'", "max_age_s": 123}
    }'
}

teardown_file() { stop_all; }

teardown() { assert_server_alive; }

# get PATH [HEADER...]: sends "GET PATH" byte for byte (no client-side normalization)
# and prints wsprobe's response lines: `status N`, `header k: v`, `body LEN TEXT`.
get() {
    local path=$1 extra="" h
    shift
    for h in "$@"; do extra="$extra$h\\r\\n"; done
    probe "send:GET $path HTTP/1.1\\r\\nHost: x\\r\\n${extra}Connection: close\\r\\n\\r\\n" response
}

# raw REQUEST_TEXT: sends the request (printf escapes) and prints every byte of the reply.
raw() {
    local out
    exec 3<>"/dev/tcp/127.0.0.1/$LH_PORT"
    # shellcheck disable=SC2059
    printf "$1" >&3
    out=$(timeout 5 cat <&3; echo .)
    exec 3<&-
    printf '%s' "${out%.}"
}

# refused PATH...: each PATH gets 400 or 404, and no response shows the secret.
refused() {
    local p
    for p in "$@"; do
        run get "$p"
        if ! [[ ${lines[0]:-} =~ ^status\ (400|404)$ ]]; then
            echo "path $p: expected 400 or 404" >&2
            lh_show_output
            return 1
        fi
        if [[ $output == *"$SECRET"* ]] || [[ $output == *root:x:0* ]]; then
            echo "path $p: a file outside the root was served" >&2
            lh_show_output
            return 1
        fi
    done
}

@test "static: files get their content type and nosniff" {
    local spec path type
    for spec in "/index.html|text/html; charset=utf-8" "/app.js|text/javascript; charset=utf-8" \
        "/style.css|text/css; charset=utf-8" "/data.json|application/json" \
        "/icon.svg|image/svg+xml" "/pic.png|image/png" "/notes.txt|text/plain; charset=utf-8" \
        "/blob.bin|application/octet-stream" "/sub/page.html|text/html; charset=utf-8"; do
        path=${spec%%|*} type=${spec#*|}
        run get "$path"
        has_line "status 200" || { echo "path $path" >&2; return 1; }
        has_line "header content-type: $type"
        has_line "header x-content-type-options: nosniff"
    done
    run get /app.js
    has_line 'body 20 export const v = 1;\n'
    run get /with%20space.txt
    has_line "status 200"
    has_line 'body 7 spaced\n'
}

@test "static: / and /dir/ serve index.html; GET / is the page, and / still upgrades" {
    run get /
    has_line "status 200"
    has_match '^body .*<title>root index</title>'
    run get /sub/
    has_match '^body .*<title>sub index</title>'
    run get /sub
    has_line "status 404"
    # "/" is also a WebSocket path: an upgrade there still gets LHTTP.
    run probe upgrade:/ ping:still-lhttp recv close:1000 expect-close
    has_line "status 101"
    has_match '^pong fin=1 len=11 still-lhttp'
}

@test "static: a query string is ignored" {
    run get '/app.js?v=2&x=%2e%2e'
    has_line "status 200"
    has_line 'body 20 export const v = 1;\n'
}

@test "static: caching headers: HTML no-cache, others public max-age; ETag and Last-Modified" {
    run get /index.html
    has_match '^header cache-control: no-cache'
    has_match '^header etag: "[^"]+"$'
    has_match '^header last-modified: [A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} GMT$'
    run get /app.js
    has_line "header cache-control: public, max-age=123"
    has_match '^header etag: "[^"]+"$'
}

@test "static: If-None-Match with the ETag gets 304 without a body; another ETag gets 200" {
    local etag
    run get /app.js
    etag=$(printf '%s\n' "${lines[@]}" | sed -n 's/^header etag: //p')
    [ -n "$etag" ]
    run get /app.js "If-None-Match: $etag"
    has_line "status 304"
    has_line "header etag: $etag"
    has_match '^body 0 ?$'
    run get /app.js 'If-None-Match: "something-else"'
    has_line "status 200"
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "http://127.0.0.1:$LH_PORT/app.js")" = 304 ]
}

@test "static: HEAD gets the headers and Content-Length of GET, and no body" {
    local out
    out=$(raw 'HEAD /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'; echo .)
    out=${out%.}
    [[ $out == "HTTP/1.1 200 "* ]] || { echo "$out" >&2; return 1; }
    [[ $out == *$'\r\nContent-Length: 20\r\n'* ]] || { echo "$out" >&2; return 1; }
    [[ $out == *$'\r\n\r\n' ]] || { echo "a body after the head: $out" >&2; return 1; }
    [[ $out != *"export const"* ]]
}

@test "static: methods other than GET and HEAD get 405 with Allow" {
    run probe 'send:POST /app.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' response
    has_line "status 405"
    has_match '^header allow: GET, HEAD'
    [ "$(http_status /index.html -X DELETE)" = 405 ]
}

@test "static: OPTIONS on a file, or on the page of a WebSocket path, gets 200 with Allow; on a missing file 404" {
    local p
    for p in /app.js /sub/ /; do
        run probe "send:OPTIONS $p HTTP/1.1\r\nHost: x\r\n\r\n" response
        has_line "status 200" || { echo "path $p" >&2; return 1; }
        has_line "header allow: GET, HEAD, OPTIONS" || { echo "path $p" >&2; return 1; }
        has_line "header content-length: 0"
    done
    # /ws has no page: the upgrade's GET only.
    run probe 'send:OPTIONS /ws HTTP/1.1\r\nHost: x\r\n\r\n' response
    has_line "header allow: GET, OPTIONS"
    run probe 'send:OPTIONS /missing.js HTTP/1.1\r\nHost: x\r\n\r\n' response
    has_line "status 404"
}

@test "static: '..' in any encoding never leaves the root" {
    refused /../secret.txt /sub/../../secret.txt /%2e%2e/secret.txt /%2E%2E/secret.txt \
        /.%2e/secret.txt /%2e./secret.txt /sub/%2e%2e/%2e%2e/secret.txt \
        /..%2fsecret.txt /%2e%2e%2fsecret.txt /sub%2f..%2f..%2fsecret.txt /%2F..%2F..%2Fsecret.txt \
        /.. /sub/.. /%2e%2e /./secret.txt /sub/./../index.html
    run curl -s --path-as-is --max-time 5 "http://127.0.0.1:$LH_PORT/../../../../../../etc/passwd"
    [[ $output != *root:x:0* ]]
    [ "$(http_status /../secret.txt --path-as-is)" = 400 ]
}

@test "static: double encoding, backslashes, overlong UTF-8 and NUL are refused" {
    refused /%252e%252e/secret.txt /%252e%252e%252fsecret.txt /%25%32%65%25%32%65/secret.txt \
        '/..\\\\secret.txt' '/..%5csecret.txt' '/sub%5c..%5c..%5csecret.txt' \
        /%c0%ae%c0%ae/secret.txt /%c0%af..%c0%afsecret.txt /%e0%80%ae%e0%80%ae/secret.txt \
        /index.html%00 /index.html%00.png /%00/../secret.txt /%zz /% /%2
}

@test "static: absolute paths and targets that do not start with / are refused" {
    refused "/$BATS_FILE_TMPDIR/secret.txt" "/${BATS_FILE_TMPDIR#/}/secret.txt" //etc/passwd \
        /etc/passwd /%2fetc%2fpasswd "/%2f${BATS_FILE_TMPDIR#/}/secret.txt" ///secret.txt
    local t
    for t in "$BATS_FILE_TMPDIR/secret.txt" ../secret.txt secret.txt \
        "http://x/../secret.txt" "http://x$BATS_FILE_TMPDIR/secret.txt" '*'; do
        run probe "send:GET $t HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n" response
        [[ ${lines[0]:-} =~ ^status\ (400|404)$ ]] || { echo "target $t" >&2; lh_show_output; return 1; }
        [[ $output != *"$SECRET"* ]] || { echo "target $t leaked" >&2; return 1; }
    done
}

@test "static: symlinks inside the root are not followed; dot files are not served" {
    refused /link.txt /rel-link.txt /linkdir/secret.txt /linkdir/ /passwd /.env /.hidden/x.txt \
        /%2eenv /sub/../.env
}

@test "static: a changed file shows after a reload, not before" {
    local etag
    run get /app.js
    etag=$(printf '%s\n' "${lines[@]}" | sed -n 's/^header etag: //p')
    printf 'export const v = 2; // changed\n' >"$WWW/app.js"
    printf 'new\n' >"$WWW/new.txt"
    run get /app.js
    has_line 'body 20 export const v = 1;\n'
    [ "$(http_status /new.txt)" = 404 ]
    run "$LHTTPD" -s reload -c "$LH_CONF"
    [ "$status" -eq 0 ] || { lh_show_output || :; return 1; }
    run get /app.js
    has_line 'body 31 export const v = 2; // changed\n'
    no_match "^header etag: $etag\$"
    [ "$(http_status /new.txt)" = 200 ]
    # The reload replaced the workers; the old ones leave once drained.
    LH_WORKERS=$(lh_descendants "$LH_PID" | tr '\n' ' ')
    wait_for 10 test "$(lh_descendants "$LH_PID" | wc -l)" -le "$(echo "$LH_WORKERS" | wc -w)"
    LH_WORKERS=$(lh_descendants "$LH_PID" | tr '\n' ' ')
}
