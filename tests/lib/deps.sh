#!/usr/bin/env bash
# Installs the Debian packages that building, running and testing lhttpd need, if any is
# missing. Idempotent; uses sudo when not root. Used by `make deps`, `make check`, `make run`.
set -eu
pkgs="build-essential pkg-config clang libevent-dev libnats-dev libcurl4-openssl-dev
libsystemd-dev libjansson-dev libssl-dev bats nats-server python3 python3-websockets curl
systemd procps iproute2 prometheus"
missing=
for p in $pkgs; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
