#!/usr/bin/env bash
# build-deb.sh: builds lhttpd's Debian packages (source and binary) from a copy of the tree.
#
#   packaging/build-deb.sh [OUTDIR]      (default: build/deb; `make deb` runs this)
#
# The repository keeps its own layout: the build happens in OUTDIR/lhttpd-VERSION, a copy
# of the tree with packaging/debian placed at its top as debian/. The version is the
# VERSION file's; debian/changelog is written here from it, with the Debian revision
# LH_DEB_REVISION (default 1); LH_PKG_VERSION, when set, replaces VERSION in the copy (the
# package test builds "the next version" so). The outputs land in OUTDIR: lhttpd_VERSION-REV_ARCH.deb,
# lhttpd-dev_VERSION-REV_all.deb, the .dsc, the .changes and the orig tarball.
# DEB_BUILD_OPTIONS is honoured (nocheck skips the unit tests run during the build).
# Needs dpkg-dev and debhelper, and the Build-Depends of packaging/debian/control.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build/deb}
rev=${LH_DEB_REVISION:-1}
version=${LH_PKG_VERSION:-$(tr -d ' \n' <"$top/VERSION")}
case $version in
[0-9]*) ;;
*) echo "build-deb.sh: VERSION holds \"$version\", not a version" >&2; exit 1 ;;
esac
case $rev in
*[!0-9A-Za-z.+~]* | '') echo "build-deb.sh: bad LH_DEB_REVISION \"$rev\"" >&2; exit 1 ;;
esac

# The Makefile's own knobs must not reach the package build: `make clean` there
# removes $(B), and CI or WERROR would add -Werror, SANITIZE sanitizers.
unset B SANITIZE OPT CI WERROR

. "$top/packaging/source-tree.sh"

mkdir -p "$out"
out=$(cd "$out" && pwd)
src=$out/lhttpd-$version
rm -rf "$src"
mkdir -p "$src"
lh_copy_tree "$top" "$src"
printf '%s\n' "$version" >"$src/VERSION"
# The orig tarball: the tree as upstream ships it, without debian/.
lh_tarball "$out" "lhttpd-$version" "$out/lhttpd_$version.orig.tar.gz"
cp -r "$top/packaging/debian" "$src/debian"

# debian/changelog from VERSION. Its maintainer is control's, its date the last commit's
# (so that two builds of the same tree are the same package).
maint=$(sed -n 's/^Maintainer: //p' "$src/debian/control")
date=$(date -R -u -d "@$SOURCE_DATE_EPOCH")
cat >"$src/debian/changelog" <<EOF
lhttpd ($version-$rev) unstable; urgency=medium

  * lhttpd $version, packaged from the repository's packaging/debian
    (this entry is written by packaging/build-deb.sh from VERSION).

 -- $maint  $date
EOF

cd "$src"
export DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}"
dpkg-buildpackage -us -uc --no-sign
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
echo "build-deb.sh: built $out/lhttpd_${version}-${rev}_$arch.deb and $out/lhttpd-dev_${version}-${rev}_all.deb"
