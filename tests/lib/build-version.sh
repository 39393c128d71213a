#!/bin/sh
# build-version.sh SRC_B DEST_B VERSION: lhttpd rebuilt with another version string, for
# the upgrade tests. The objects of SRC_B (a build directory: build, build-san) are copied
# with their timestamps, those of the sources that use LH_VERSION are removed, and make
# rebuilds them with VERSION and links DEST_B/lhttpd: a real rebuild, with the flags of
# SRC_B (a sanitizer build is recognized by its runtime), in seconds rather than minutes.
set -eu
src=$(cd "$1" && pwd)
dest=$2
version=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
rm -rf "$dest/obj"
cp -a "$src/obj" "$src/libshared.a" "$dest/"
for f in $(cd "$root" && grep -l LH_VERSION master/*.c worker/*.c); do
    rm -f "$dest/obj/${f%.c}.o"
done
san=
if grep -q __asan_init "$src/lhttpd"; then san=address,undefined; fi
make -s -C "$root" B="$dest" VERSION="$version" ${san:+SANITIZE=$san} "$dest/lhttpd" >&2
"$dest/lhttpd" --version | grep -qx "lhttpd $version"
echo "$dest/lhttpd"
