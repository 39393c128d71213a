#!/usr/bin/env bash
# Installs the Debian packages that building, running and testing lhttpd need, if any is
# missing. Idempotent; uses sudo when not root. Used by `make deps`, `make check`, `make run`.
set -eu
pkgs="build-essential pkg-config clang libevent-dev libnats-dev libcurl4-openssl-dev
libsystemd-dev libjansson-dev libssl-dev bats nats-server python3 python3-websockets curl
systemd procps iproute2 prometheus chromium groff-base openssl jq
debhelper lintian rpm rpmlint"
missing=
for p in $pkgs; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
        missing="$missing $p"
done
command -v node >/dev/null && command -v npm >/dev/null || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
echo "deps: installing:$missing"
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
fi

# The JavaScript SDK's and the browser tests' npm packages (ws, playwright-core; never a
# browser download: the tests use Debian's chromium). Skipped when already installed.
top=$(cd "$(dirname "$0")/../.." && pwd)
for dir in clients/js tests/e2e; do
    lock=$top/$dir/package-lock.json
    [ -f "$lock" ] || continue
    [ "$top/$dir/node_modules/.package-lock.json" -nt "$lock" ] && continue
    echo "deps: npm ci in $dir"
    (cd "$top/$dir" && npm ci --no-audit --no-fund --loglevel=error)
done
