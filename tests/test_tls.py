# TLS: the relay talks to PostgreSQL (verify-full + client certificate) and Kafka (SSL listener)
# with certificates made by this module (openssl CLI), on servers of its own.
import json
import os
import shutil
import subprocess
import tempfile
import types
import uuid

import pytest

import harness
from harness import wait_for
import relayctl

from events import assert_exactly_once_in_order, consume_events, write_events

P12_PASSWORD = "changeit"


def _openssl(*args, cwd):
    proc = subprocess.run(["openssl"] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, "openssl %s failed:\n%s" % (" ".join(args), proc.stdout)
    return proc.stdout


def _make_ca(d, name):
    _openssl("req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
             "-keyout", name + ".key", "-out", name + ".crt", "-subj", "/CN=outbox-relay test " + name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    os.chmod(os.path.join(d, name + ".key"), 0o600)


def _make_leaf(d, name, cn, ext, ca="ca"):
    """A key and a certificate signed by ca; ext: the extension lines (SAN, key usage)."""
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n")
        f.write(ext + "\n")
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
             "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    os.chmod(os.path.join(d, name + ".key"), 0o600)
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
             "-set_serial", "0x" + uuid.uuid4().hex[:16], "-days", "2", "-sha256",
             "-extfile", name + ".ext", "-out", name + ".crt", cwd=d)


@pytest.fixture(scope="module")
def certs():
    """A throwaway CA (and a second, unrelated one) with server certificates for PostgreSQL and
    Kafka (localhost, 127.0.0.1), a client certificate for user postgres and a PKCS12 keystore."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed (apt-get install openssl)")
    d = tempfile.mkdtemp(prefix="outbox-relay-tls-")
    os.chmod(d, 0o755)  # PostgreSQL runs unprivileged and reads its files from here
    try:
        san = "subjectAltName = DNS:localhost, IP:127.0.0.1"
        _make_ca(d, "ca")
        _make_ca(d, "wrong-ca")
        _make_leaf(d, "pg-server", "localhost", san + "\nextendedKeyUsage = serverAuth")
        _make_leaf(d, "client", "postgres", "extendedKeyUsage = clientAuth")
        _make_leaf(d, "kafka-server", "localhost", san + "\nextendedKeyUsage = serverAuth")
        _openssl("pkcs12", "-export", "-in", "kafka-server.crt", "-inkey", "kafka-server.key",
                 "-certfile", "ca.crt", "-name", "kafka", "-out", "kafka-server.p12",
                 "-passout", "pass:" + P12_PASSWORD, cwd=d)
        os.chmod(os.path.join(d, "kafka-server.p12"), 0o600)
        yield types.SimpleNamespace(dir=d, path=lambda name: os.path.join(d, name))
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_pg(certs):
    """A PostgreSQL of this module: ssl = on; TCP only with TLS and a client certificate
    (hostssl ... cert); the harness's own connections use the Unix socket (trust)."""
    hba = ("local all all trust\n"
           "hostssl all postgres 127.0.0.1/32 cert\n")
    server = harness.Postgres(extra_settings={
        "ssl": "on",
        "ssl_cert_file": "'%s'" % certs.path("pg-server.crt"),
        "ssl_key_file": "'%s'" % certs.path("pg-server.key"),
        "ssl_ca_file": "'%s'" % certs.path("ca.crt"),
    }, hba=hba, admin_via_socket=True)
    if server._user is not None:  # the server refuses a key it does not own with mode 0600
        os.chown(certs.path("pg-server.key"), server._user.pw_uid, server._user.pw_gid)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def tls_kafka(certs):
    """A Kafka of this module with an SSL listener (PKCS12 keystore) besides PLAINTEXT."""
    server = harness.Kafka(ssl_properties={
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": certs.path("kafka-server.p12"),
        "ssl.keystore.password": P12_PASSWORD,
        "ssl.key.password": P12_PASSWORD,
        "ssl.client.auth": "none",
    })
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def ssl_client(kafka, ca):
    """The same broker seen by the harness's clients (admin, consume) through the SSL listener only."""
    view = harness.Kafka.__new__(harness.Kafka)
    view.__dict__.update(kafka.__dict__)
    view._admin = None
    view.config = lambda extra=None: dict({
        "bootstrap.servers": kafka.ssl_bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": ca,
        "ssl.endpoint.identification.algorithm": "https",
        "log_level": 0, "error_cb": lambda err: None,
    }, **(extra or {}))
    return view


@pytest.fixture
def tls_outbox(tls_pg, tls_kafka, certs, tmp_path, request):
    """A database with the outbox schema on tls_pg and a relay config using TLS to both servers."""
    o = types.SimpleNamespace()
    o.db = tls_pg.create_database("tls_" + uuid.uuid4().hex[:10])
    o.slot = "relay_" + uuid.uuid4().hex[:10]
    o.prefix = "t" + uuid.uuid4().hex[:10]
    o.topic = lambda aggregate_type: "%s.%s" % (o.prefix, aggregate_type)
    o.config_path = str(tmp_path / "relay.conf")

    def conninfo(rootcert=certs.path("ca.crt")):
        return ("host=localhost port=%d dbname=%s user=postgres sslmode=verify-full sslrootcert=%s "
                "sslcert=%s sslkey=%s" % (tls_pg.port, o.db.name, rootcert,
                                          certs.path("client.crt"), certs.path("client.key")))

    def configure(rootcert=certs.path("ca.crt"), kafka_ca=certs.path("ca.crt")):
        relayctl.write_config(o.config_path, conninfo(rootcert), tls_kafka.ssl_bootstrap, o.slot,
                              o.prefix + ".${aggregate_type}", extra_kafka=(
                                  'security_protocol = "SSL"; ssl_ca_location = "%s"; '
                                  'ssl_endpoint_identification_algorithm = "https";' % kafka_ca))

    o.conninfo = conninfo
    o.kafka_bootstrap = tls_kafka.ssl_bootstrap
    o.configure = configure
    relayctl.install_outbox(o.db)
    configure()
    o.relay = relayctl.Relay(o.config_path, str(tmp_path))
    yield o
    relayctl.end_of_test(o.relay, request)
    tls_pg.drop_database(o.db.name)


def test_servers_require_tls(tls_pg, tls_kafka, certs, tls_outbox):
    import psycopg2
    # PostgreSQL over TCP: without TLS, or with TLS but no client certificate, is refused.
    base = "host=localhost port=%d dbname=%s user=postgres" % (tls_pg.port, tls_outbox.db.name)
    for extra in ("sslmode=disable", "sslmode=require sslcert=/nonexistent sslkey=/nonexistent"):
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(base + " " + extra, connect_timeout=5).close()
    conn = psycopg2.connect(tls_outbox.conninfo(), connect_timeout=5)
    with conn.cursor() as cur:
        cur.execute("SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone() == (True, "/CN=postgres")
    conn.close()
    # Kafka's SSL port serves TLS with the certificate of our CA for localhost.
    proc = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % tls_kafka.ssl_port,
                           "-servername", "localhost", "-verify_hostname", "localhost",
                           "-CAfile", certs.path("ca.crt"), "-verify_return_error"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=30)
    assert proc.returncode == 0 and "Verify return code: 0 (ok)" in proc.stdout, proc.stdout
    md = ssl_client(tls_kafka, certs.path("ca.crt")).admin().list_topics(timeout=10)
    assert 1 in md.brokers and md.brokers[1].host == "localhost"


def test_relay_over_tls_exactly_once(tls_outbox, tls_pg, tls_kafka, certs):
    o = tls_outbox
    code, out = relayctl.run_once(["preflight", o.config_path], timeout=90)
    assert code == 0, out
    assert "ok   wal2json loads" in out and "preflight: all checks passed" in out
    o.relay.start()
    o.relay.wait_streaming(timeout=60)
    # The replication connection is TLS with the relay's client certificate.
    rows = o.db.query("SELECT s.ssl, s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                      "WHERE a.backend_type = 'walsender' AND a.datname = %s", (o.db.name,))
    assert rows == [(True, "/CN=postgres")]
    events = write_events(o.db, transactions=40, per_txn=5)
    kafka_ssl = ssl_client(tls_kafka, certs.path("ca.crt"))
    msgs = consume_events(kafka_ssl, o, len(events))  # read_committed, over SSL
    assert_exactly_once_in_order(msgs, events, o)
    assert len(consume_events(kafka_ssl, o, None, timeout=20)) == len(events)  # nothing more

    def checkpoint():
        code, out = relayctl.run_once(["status", o.config_path, "--json"], timeout=90)
        assert code == 0, out
        st = json.loads(out)
        return st if st["checkpoint_lsn"] else None
    st = wait_for(checkpoint, 60, interval=1, what="a checkpoint in outbox-relay status")
    assert st["slot_exists"] and st["relay_connected"] and st["plugin"] == "wal2json"
    assert o.relay.stop() == 0


def test_wrong_ca_for_postgresql_is_reported(tls_outbox, certs):
    """verify-full against a CA that did not sign the server's certificate: preflight fails
    naming it; the relay keeps retrying (as for any connection failure), saying why each time."""
    o = tls_outbox
    o.configure(rootcert=certs.path("wrong-ca.crt"))
    code, out = relayctl.run_once(["preflight", o.config_path], timeout=90)
    assert code == 1, out
    assert "FAIL connect to PostgreSQL" in out and "certificate verify failed" in out, out
    assert "preflight: FAILED" in out
    o.relay.start()
    line = "SSL error: certificate verify failed; retrying in"
    wait_for(lambda: o.relay.log().count(line) >= 2 or o.relay.proc.poll() is not None,
             30, what="two reconnection attempts naming the certificate problem")
    log = o.relay.log()
    assert o.relay.proc.poll() is None, "relay exited:\n" + log[-3000:]
    assert log.count(line) >= 2 and "streaming from slot" not in log, log[-3000:]
    assert o.relay.stop() == 0


def test_wrong_ca_for_kafka_is_reported(tls_outbox, certs):
    """ssl_ca_location naming a CA that did not sign the broker's certificate: preflight fails
    on Kafka; the relay keeps retrying and logs librdkafka's reason."""
    o = tls_outbox
    o.configure(kafka_ca=certs.path("wrong-ca.crt"))
    code, out = relayctl.run_once(["preflight", o.config_path], timeout=90)
    assert code == 1, out
    assert "ok   connect to PostgreSQL" in out and "FAIL reach Kafka at %s" % o.kafka_bootstrap in out, out
    o.relay.start()
    line = "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed"
    wait_for(lambda: o.relay.log().count(line) >= 2 or o.relay.proc.poll() is not None,
             60, what="the relay to report the broker's certificate")
    log = o.relay.log()
    assert o.relay.proc.poll() is None, "relay exited:\n" + log[-3000:]
    assert "verify that ssl.ca.location is correctly configured" in log
    assert o.relay.stop() == 0
