#!/bin/sh
# build-deb.sh (make deb): builds the Debian package in build/deb/ from a copy of the tree, then runs lintian.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
version=${DEB_VERSION:-$(sed -n 's/^VERSION := //p' "$repo/Makefile")}
out="$repo/build/deb"
src="$out/src/outbox-relay-$version"

fail() {
    echo "build-deb: $*" >&2
    exit 1
}

# Runs as root, else through sudo (like tests/install-deps.sh).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        fail "need root to run: $*"
    fi
}

[ -n "$version" ] || fail "no VERSION in Makefile"
command -v dpkg-query >/dev/null 2>&1 || fail "dpkg-query not found: this script supports Debian 12 only"

# dpkg-buildpackage writes next to the source directory: build from a copy under build/deb/src,
# so that nothing lands outside build/. Only what the package is made of is copied.
rm -rf "$out"
mkdir -p "$src"
(cd "$repo" && tar cf - Makefile README.md relay sql conf docs systemd debian) | (cd "$src" && tar xf -)
rm -f "$src/relay/outbox-relay"

# The version has one home, the Makefile's VERSION (DEB_VERSION overrides it for test builds):
# the changelog is written here, not kept in the tree.
cat > "$src/debian/changelog" <<CHANGELOG
outbox-relay ($version) unstable; urgency=medium

  * Built from the outbox-relay source tree (make deb).

 -- outbox-relay maintainers <maintainers@users.noreply.b-seed-aff12248.example>  $(git -C "$repo" log -1 --format=%aD 2>/dev/null || date -R)
CHANGELOG

# Tools and build dependencies (debian/control's Build-Depends), installed when missing.
for p in dpkg-dev debhelper lintian; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="${missing:-} $p"
done
updated=
# A fresh machine has no package lists yet: apt-get update once, before the first install.
apt_update() {
    [ -n "$updated" ] && return 0
    as_root apt-get update -q >/dev/null || fail "apt-get update failed"
    updated=1
}
if [ -n "${missing:-}" ]; then
    echo "build-deb: installing$missing"
    apt_update
    # shellcheck disable=SC2086
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
        || fail "apt-get install failed for:$missing"
fi
if ! (cd "$src" && dpkg-checkbuilddeps >/dev/null 2>&1); then
    echo "build-deb: installing the build dependencies of debian/control"
    apt_update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q --no-install-recommends "$src" \
        || fail "apt-get build-dep failed"
fi

echo "build-deb: dpkg-buildpackage -us -uc -b (log: build/deb/build.log)"
if ! (cd "$src" && dpkg-buildpackage -us -uc -b) > "$out/build.log" 2>&1; then
    tail -n 30 "$out/build.log" >&2
    fail "dpkg-buildpackage failed (build/deb/build.log)"
fi
cp "$out"/src/*.deb "$out/"
deb=$(ls "$out"/outbox-relay_"$version"_*.deb)
echo "build-deb: $deb"

# Errors and warnings fail the build; what remains is explained in debian/*.lintian-overrides.
echo "build-deb: lintian"
# lintian leaves a temporary file behind (mldbm-elf-*): in build/, not in /tmp.
mkdir -p "$out/tmp"
TMPDIR="$out/tmp" lintian --fail-on error,warning --info "$deb" || fail "lintian found problems in $deb"
echo "build-deb: lintian clean"
