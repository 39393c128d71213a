#!/usr/bin/env bash
# build-rpm.sh: builds lhttpd's RPM packages (binary and source) with rpmbuild.
#
#   packaging/build-rpm.sh [OUTDIR]      (default: build/rpm; `make rpm` runs this)
#
# Writes OUTDIR/SOURCES/lhttpd-VERSION.tar.gz (the tree, as build-deb.sh copies it) and
# OUTDIR/SPECS/lhttpd.spec (packaging/rpm/lhttpd.spec with @VERSION@ from the VERSION
# file, @RELEASE@ = LH_RPM_RELEASE, default 1, and @DATE@), then runs rpmbuild with
# OUTDIR as its top directory: the packages land in OUTDIR/RPMS and OUTDIR/SRPMS.
#
# On an rpm-based distribution this is an ordinary build (its BuildRequires are checked,
# its own systemd macros are used). On Debian, whose `rpm` package has neither an RPM
# database of the build dependencies nor the systemd macros, it builds with --nodeps
# against Debian's libraries and loads packaging/rpm/macros.systemd: the result is for
# inspecting (rpm -qpl, rpm -qp --scripts, rpmlint), not for installing on Fedora.
# Extra rpmbuild options: LH_RPMBUILD_OPTS (for example --nocheck).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build/rpm}
release=${LH_RPM_RELEASE:-1}
version=$(tr -d ' \n' <"$top/VERSION")
case $version in
[0-9]*) ;;
*) echo "build-rpm.sh: VERSION holds \"$version\", not a version" >&2; exit 1 ;;
esac

# The Makefile's own knobs must not reach the package build: `make clean` there
# removes $(B), and CI or WERROR would add -Werror, SANITIZE sanitizers.
unset B SANITIZE OPT CI WERROR

. "$top/packaging/source-tree.sh"

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/BUILD" "$out/BUILDROOT" "$out/RPMS" "$out/SRPMS" "$out/SOURCES" "$out/SPECS" \
    "$out/stage"
mkdir -p "$out/SOURCES" "$out/SPECS" "$out/stage/lhttpd-$version"
lh_copy_tree "$top" "$out/stage/lhttpd-$version"
lh_tarball "$out/stage" "lhttpd-$version" "$out/SOURCES/lhttpd-$version.tar.gz"
rm -rf "$out/stage"

date=$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a %b %d %Y')
sed -e "s/@VERSION@/$version/g" -e "s/@RELEASE@/$release/g" -e "s/@DATE@/$date/g" \
    "$top/packaging/rpm/lhttpd.spec" >"$out/SPECS/lhttpd.spec"

opts=(--define "_topdir $out" --define "_smp_mflags -j$(nproc)")
if [ -z "$(rpm --eval '%{?_unitdir}')" ]; then
    opts+=(--load "$top/packaging/rpm/macros.systemd")
fi
# Debian's brp-compress uses `read -d`, which its /bin/sh (dash) lacks: run it with bash
# so that the man pages get compressed as on Fedora.
if [ -e /etc/debian_version ]; then
    opts+=(--nodeps --define "__brp_compress bash /usr/lib/rpm/brp-compress %{_prefix}")
fi
# shellcheck disable=SC2086
rpmbuild "${opts[@]}" ${LH_RPMBUILD_OPTS:-} -ba "$out/SPECS/lhttpd.spec"
echo "build-rpm.sh: built" "$out"/RPMS/*/*.rpm "$out"/SRPMS/*.rpm
