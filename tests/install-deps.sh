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
# prometheus: promtool checks and unit-tests conf/prometheus/outbox-relay-alerts.yml (tests/run-all.sh),
# python3-yaml: tests/test_alerts.py reads that file;
# the package's own server is not used (where apt starts it, `systemctl disable --now prometheus`).
# libavro-dev, libcurl4-openssl-dev: the Avro format (relay/avjson.c, relay/registry.c); python3-requests:
# confluent-kafka's SchemaRegistryClient (tests/test_avro.py). Field protection (relay/protect_action.c):
# libssl-dev (libcrypto: AES-256-GCM), nettle-dev (HMAC-SHA-256); python3-cryptography: tests/test_privacy.py decrypts.
packages="gcc make pkg-config libpq-dev librdkafka-dev libjansson-dev libconfig-dev libmicrohttpd-dev libcmocka-dev
libavro-dev libcurl4-openssl-dev python3-requests libssl-dev nettle-dev python3-cryptography
libsystemd-dev clang libclang-rt-14-dev valgrind
postgresql-15 postgresql-15-wal2json python3 python3-pytest python3-psycopg2 python3-confluent-kafka
etcd-server patroni python3-etcd prometheus python3-yaml"
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

# fastavro (confluent-kafka's AvroDeserializer needs it; Debian 12 has no package): from PyPI into
# .cache/python, which tests/conftest.py puts on sys.path. Nothing is installed system-wide.
if ! PYTHONPATH="$repo/.cache/python" /usr/bin/python3 -c 'import fastavro' >/dev/null 2>&1; then
    echo "install-deps: installing fastavro into $repo/.cache/python"
    /usr/bin/python3 -m pip install -q --disable-pip-version-check --target "$repo/.cache/python" fastavro \
        || fail "pip install fastavro failed"
fi

# Kafka broker jars for the test harness, 3.9.1 and 4.4.0 (fetched with Maven into .cache/kafka/VERSION/libs
# when missing; KAFKA_VERSION=4.4.0 runs the tests against 4.4.0),
# and the schema registry (Apicurio, built with Maven into .cache/registry/app).
/usr/bin/python3 "$here/harness.py" jars --kafka-version 3.9.1 --kafka-version 4.4.0 --registry >/dev/null || fail "could not fetch the Kafka jars or build the schema registry (see the output above)"
