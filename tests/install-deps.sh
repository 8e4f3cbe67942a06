#!/bin/sh
# Installs (idempotently) the Debian packages and Kafka jars needed to build, test and demo outbox-relay.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

fail() {
    echo "install-deps: $*" >&2
    exit 1
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# etcd-server, patroni, python3-etcd: tests/test_ha.py runs private etcd and Patroni instances on free
# ports (harness.PatroniCluster); the packages' own services are not used (where apt starts them,
# `systemctl disable --now etcd patroni` stops them).
packages="gcc make pkg-config libpq-dev librdkafka-dev libjansson-dev libconfig-dev libmicrohttpd-dev libcmocka-dev
libsystemd-dev clang libclang-rt-14-dev valgrind
postgresql-15 postgresql-15-wal2json python3 python3-pytest python3-psycopg2 python3-confluent-kafka
etcd-server patroni python3-etcd"
command -v java >/dev/null 2>&1 || packages="$packages default-jre-headless"
command -v mvn >/dev/null 2>&1 || packages="$packages maven"

command -v dpkg-query >/dev/null 2>&1 || fail "dpkg-query not found: this script supports Debian 12 only"

missing=""
for p in $packages; do
    installed "$p" || missing="$missing $p"
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        sudo=""
    elif command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        fail "missing packages:$missing (run as root or install sudo)"
    fi
    echo "install-deps: installing$missing"
    $sudo apt-get update -q || fail "apt-get update failed"
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
        || fail "apt-get install failed for:$missing"
fi

# Kafka broker jars for the test harness (fetched with Maven into .cache/kafka/libs when missing).
/usr/bin/python3 "$here/harness.py" jars >/dev/null || fail "could not fetch the Kafka jars (see the output above)"
