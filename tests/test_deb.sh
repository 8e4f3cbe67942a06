#!/bin/sh
# test_deb.sh (make deb-test): installs, upgrades, removes and purges the Debian package on this machine.
# Opt-in: it installs /usr/bin/outbox-relay until the purge at its end (also when a check fails).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
version=$(sed -n 's/^VERSION := //p' "$repo/Makefile")
old="$version~old1"
keep="$repo/build/deb-test"
failures=0

# One line per check: PASS or FAIL and what was checked.
check() {
    what=$1
    shift
    if "$@" >/dev/null 2>&1; then
        echo "PASS $what"
    else
        echo "FAIL $what"
        failures=$((failures + 1))
    fi
}

cleanup() {
    dpkg -P outbox-relay >/dev/null 2>&1 || true
    rm -f /etc/outbox-relay/test.conf
    rmdir /etc/outbox-relay 2>/dev/null || true
}

[ "$(id -u)" -eq 0 ] || { echo "test_deb: run as root (dpkg -i)" >&2; exit 1; }
if dpkg-query -W outbox-relay >/dev/null 2>&1; then
    echo "test_deb: outbox-relay is already installed here: remove it first" >&2
    exit 1
fi
# The test writes and removes files in /etc/outbox-relay: never where an administrator has some
# (a `make install` with instances).
if [ -e /etc/outbox-relay ]; then
    echo "test_deb: /etc/outbox-relay exists here: the test would change it (move it away first)" >&2
    exit 1
fi
trap cleanup EXIT

# Two builds: an older version, then the tree's own (make deb removes build/deb each time).
rm -rf "$keep" && mkdir -p "$keep"
DEB_VERSION=$old "$here/build-deb.sh" >"$keep/build-old.log" 2>&1 || { tail "$keep/build-old.log"; exit 1; }
cp "$repo"/build/deb/outbox-relay_"$old"_*.deb "$keep/"
"$here/build-deb.sh" >"$keep/build-new.log" 2>&1 || { tail "$keep/build-new.log"; exit 1; }
new_deb=$(ls "$repo"/build/deb/outbox-relay_"$version"_*.deb)
old_deb=$(ls "$keep"/outbox-relay_"$old"_*.deb)
check "the package lists the binary, the unit, the man page and the SQL kit" \
    sh -c "dpkg-deb -c '$new_deb' | grep -q ' ./usr/bin/outbox-relay\$' &&
           dpkg-deb -c '$new_deb' | grep -q ' ./lib/systemd/system/outbox-relay@.service\$' &&
           dpkg-deb -c '$new_deb' | grep -q ' ./usr/share/man/man8/outbox-relay.8.gz\$' &&
           dpkg-deb -c '$new_deb' | grep -q ' ./usr/share/outbox-relay/sql/outbox.sql\$'"

dpkg -i "$old_deb" >"$keep/install.log" 2>&1 || { cat "$keep/install.log"; exit 1; }
check "install: dpkg says installed, version $old" sh -c "[ \"\$(dpkg-query -W -f='\${Status} \${Version}' outbox-relay)\" = 'install ok installed $old' ]"
check "install: /usr/bin/outbox-relay --version says $old" sh -c "/usr/bin/outbox-relay --version | grep -qF 'outbox-relay $old '"
check "install: the unit names /usr/bin and /etc/outbox-relay" \
    grep -qx 'ExecStart=/usr/bin/outbox-relay --config /etc/outbox-relay/%i.conf' /lib/systemd/system/outbox-relay@.service
check "install: the unit verifies" systemd-analyze verify --man=no /lib/systemd/system/outbox-relay@.service
check "install: /etc/outbox-relay exists" test -d /etc/outbox-relay
check "install: the example configuration passes check-config" \
    /usr/bin/outbox-relay check-config /usr/share/doc/outbox-relay/examples/outbox-relay.conf.example
check "install: man 8 outbox-relay is there" test -f /usr/share/man/man8/outbox-relay.8.gz
# An instance's file, as an administrator would write it (kept by the purge below).
cp /usr/share/doc/outbox-relay/examples/outbox-relay.conf.example /etc/outbox-relay/test.conf

dpkg -i "$new_deb" >"$keep/upgrade.log" 2>&1 || { cat "$keep/upgrade.log"; exit 1; }
check "upgrade: dpkg says installed, version $version" sh -c "[ \"\$(dpkg-query -W -f='\${Status} \${Version}' outbox-relay)\" = 'install ok installed $version' ]"
check "upgrade: /usr/bin/outbox-relay --version says $version" sh -c "/usr/bin/outbox-relay --version | grep -qF 'outbox-relay $version '"
check "upgrade: the administrator's /etc/outbox-relay/test.conf is untouched" \
    cmp /etc/outbox-relay/test.conf /usr/share/doc/outbox-relay/examples/outbox-relay.conf.example

dpkg -r outbox-relay >"$keep/remove.log" 2>&1 || { cat "$keep/remove.log"; exit 1; }
check "remove: the binary, the unit and the docs are gone" \
    sh -c "! test -e /usr/bin/outbox-relay && ! test -e /lib/systemd/system/outbox-relay@.service && ! test -e /usr/share/doc/outbox-relay"
check "remove: dpkg keeps the package as config-files until the purge" \
    sh -c "[ \"\$(dpkg-query -W -f='\${Status}' outbox-relay)\" = 'deinstall ok config-files' ]"
check "remove: /etc/outbox-relay/test.conf is kept" test -f /etc/outbox-relay/test.conf

dpkg -P outbox-relay >"$keep/purge.log" 2>&1 || { cat "$keep/purge.log"; exit 1; }
check "purge: dpkg forgets the package" sh -c "! dpkg-query -W outbox-relay"
check "purge: a non-empty /etc/outbox-relay is kept, and the purge says so" \
    sh -c "test -f /etc/outbox-relay/test.conf && grep -q 'is not empty' '$keep/purge.log'"

# Without the administrator's files, a purge leaves nothing behind.
rm -f /etc/outbox-relay/test.conf
dpkg -i "$new_deb" >>"$keep/install.log" 2>&1 && dpkg -P outbox-relay >>"$keep/purge.log" 2>&1
check "purge of an unused install: /etc/outbox-relay is gone" sh -c "! test -e /etc/outbox-relay"
check "purge: no file of the package is left" \
    sh -c "! test -e /usr/bin/outbox-relay && ! test -e /usr/share/outbox-relay && ! test -e /usr/share/man/man8/outbox-relay.8.gz"

echo "test_deb: $failures failed"
[ "$failures" -eq 0 ]
