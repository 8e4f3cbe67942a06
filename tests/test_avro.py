# Avro tests: outbox events in Confluent's wire format against a real schema registry (Apicurio), decoded by confluent-kafka's AvroDeserializer.
import datetime
import decimal
import json
import os
import struct
import threading
import time
import urllib.error

import pytest

from harness import wait_for

DLQ = "outbox-relay.dead-letters"

VERIFIED = {
    "type": "record", "name": "IdDocumentVerified", "namespace": "identity.events",
    "fields": [
        {"name": "customer_id", "type": "long"},
        {"name": "seq", "type": "long"},
        {"name": "document", "type": "string"},
        {"name": "verified", "type": "boolean"},
        {"name": "score", "type": "double"},
        {"name": "country", "type": {"type": "enum", "name": "Country", "symbols": ["DE", "FR", "NL"]}},
        {"name": "fee", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
        {"name": "verified_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "born", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "limits", "type": {"type": "map", "values": "long"}},
        {"name": "address", "type": ["null", {"type": "record", "name": "Address", "fields": [
            {"name": "city", "type": "string"}, {"name": "zip", "type": "int"}]}], "default": None},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}

OPENED = {
    "type": "record", "name": "AccountOpened", "namespace": "identity.events",
    "fields": [{"name": "seq", "type": "long"}, {"name": "plan", "type": "string"}],
}


def verified_payload(seq, **changes):
    p = {"customer_id": 9007199254740993 + seq, "seq": seq, "document": "P-\u00e9%d" % seq,
         "verified": seq % 2 == 0, "score": 0.25 * seq, "country": "NL", "fee": "1234567890.12",
         "verified_at": "2026-12-03 04:05:06.789+00", "born": "1990-07-15",
         "tags": ["passport", "liveness"], "limits": {"daily": 1000, "monthly": -1},
         "address": {"city": "Utrecht", "zip": 3511}}
    if seq % 3 == 0:
        p["note"] = "third"
        p["address"] = None
    p.update(changes)
    return p


def expected_decoded(p):
    """What a standard Avro decoder gives for a payload of VERIFIED (logical types as Python types)."""
    e = dict(p)
    e["fee"] = decimal.Decimal(p["fee"])
    e["verified_at"] = datetime.datetime(2026, 12, 3, 4, 5, 6, 789000, tzinfo=datetime.timezone.utc)
    e["born"] = datetime.date(1990, 7, 15)
    e.setdefault("note", None)
    return e


def start_avro(outbox, registry, tmp_path, timeout_ms=5000, source_extra="", registry_extra=""):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "IdDocumentVerified.avsc").write_text(json.dumps(VERIFIED, indent=2))
    (schemas / "AccountOpened.avsc").write_text(json.dumps(OPENED, indent=2))
    outbox.reconfigure(
        sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; format = "avro"; %s }'
                % (outbox.prefix, source_extra),
        extra_top='schema_registry = { url = "%s"; schema_dir = "%s"; timeout_ms = %d; %s };'
                  % (registry.url, schemas, timeout_ms, registry_extra))
    outbox.relay.start()
    outbox.relay.wait_streaming()


def insert(db, aggregate, event_type, payload, key="c-1"):
    """One outbox row in its own transaction; returns its xid (bytes, as in dlq_xid)."""
    conn = db.connect(autocommit=False)
    cur = conn.cursor()
    cur.execute("INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload) "
                "VALUES (%s, %s, %s, %s::jsonb)", (aggregate, key, event_type, json.dumps(payload)))
    cur.execute("SELECT txid_current()")
    xid = str(cur.fetchone()[0]).encode()
    conn.commit()
    conn.close()
    return xid


def deserializer(registry):
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    client = SchemaRegistryClient({"url": registry.url})
    deser = AvroDeserializer(client)
    return lambda m: deser(m["value"], SerializationContext(m["topic"], MessageField.VALUE))


def test_avro_events_decode_to_their_json_payloads(outbox, kafka, registry, tmp_path):
    start_avro(outbox, registry, tmp_path, source_extra="cloudevents = true;")
    payloads = [verified_payload(i) for i in range(1, 7)]
    for p in payloads:
        insert(outbox.db, "identity", "IdDocumentVerified", p)
    insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"})
    msgs = kafka.consume([outbox.topic("identity")], until=len(payloads), timeout=60)
    assert len(msgs) == len(payloads)
    decode = deserializer(registry)
    subject = outbox.topic("identity") + "-value"
    status, latest = registry.request("GET", "/subjects/%s/versions/latest" % subject)
    assert status == 200
    for m, p in zip(msgs, payloads):
        assert m["value"][0] == 0 and struct.unpack(">I", m["value"][1:5])[0] == latest["id"]
        assert decode(m) == expected_decoded(p)
        headers = dict(m["headers"])
        assert headers["event_type"] == b"IdDocumentVerified"
        # Which schema it has: the id, the subject, and for CloudEvents the dataschema URI.
        assert headers["schema_id"] == str(latest["id"]).encode()
        assert headers["schema_subject"] == subject.encode()
        assert headers["ce_dataschema"] == ("%s/schemas/ids/%d" % (registry.url, latest["id"])).encode()
        assert headers["content-type"] == b"application/avro"
        assert headers["ce_type"] == b"IdDocumentVerified"
    # The registry holds the schema file's text as the relay sent it (one canonical text).
    assert json.loads(latest["schema"]) == VERIFIED
    other = kafka.consume([outbox.topic("account")], until=1, timeout=60)
    assert [decode(m) for m in other] == [{"seq": 1, "plan": "basic"}]
    # One registration per subject: the same schema is asked for once, then cached.
    status, versions = registry.request("GET", "/subjects/%s/versions" % subject)
    assert versions == [1]
    assert outbox.relay.stop() == 0


@pytest.mark.parametrize("change, field", [
    ({"score": "high"}, "field score: expected double, got a string"),
    ({"address": {"city": "Utrecht", "zip": "3511"}}, "field address.zip: expected int, got a string"),
    ({"fee": "0.001"}, "field fee: 0.001 has more than 2 fraction digits (decimal scale 2)"),
    ({"country": "XX"}, "field country: \"XX\" is not a symbol of enum identity.events.Country"),
    ({"customer_id": 9223372036854775808}, "field customer_id: 9223372036854775808 does not fit in long"),
    ({"unexpected": 1}, "field unexpected: not a field of record identity.events.IdDocumentVerified"),
])
def test_a_payload_that_breaks_its_schema_is_dead_lettered(outbox, kafka, registry, tmp_path, change, field):
    start_avro(outbox, registry, tmp_path)
    bad_xid = insert(outbox.db, "identity", "IdDocumentVerified", verified_payload(1, **change))
    insert(outbox.db, "identity", "IdDocumentVerified", verified_payload(2))
    dead = []

    def found():
        dead[:] = [m for m in kafka.consume([DLQ], timeout=10) if dict(m["headers"])["dlq_xid"] == bad_xid]
        return dead
    wait_for(found, 60, what="the dead letter")
    assert dict(dead[0]["headers"])["dlq_reason"] == field.encode()
    # Only the good event reaches the main topic.
    msgs = kafka.consume([outbox.topic("identity")], until=1, timeout=60)
    time.sleep(1)
    msgs = kafka.consume([outbox.topic("identity")], timeout=10)
    assert [deserializer(registry)(m)["seq"] for m in msgs] == [2]
    assert outbox.relay.stop() == 0


def test_an_event_type_without_a_schema_is_dead_lettered(outbox, kafka, registry, tmp_path):
    start_avro(outbox, registry, tmp_path)
    xid = insert(outbox.db, "identity", "Unknown", {"seq": 1})
    dead = []

    def found():
        dead[:] = [m for m in kafka.consume([DLQ], timeout=10) if dict(m["headers"])["dlq_xid"] == xid]
        return dead
    wait_for(found, 60, what="the dead letter")
    assert b"no Avro schema for event type \"Unknown\"" in dict(dead[0]["headers"])["dlq_reason"]
    assert outbox.relay.stop() == 0


def test_registry_outage_under_writes_loses_and_duplicates_nothing(outbox, kafka, registry, tmp_path):
    """The registry frozen for 10 s while rows of a known and of a new event type are written:
    the new one's registration times out, the stream is held back (rewind), and once the
    registry answers every event is there exactly once for read_committed consumers."""
    start_avro(outbox, registry, tmp_path, timeout_ms=1000)
    insert(outbox.db, "identity", "IdDocumentVerified", verified_payload(0))
    assert len(kafka.consume([outbox.topic("identity")], until=1, timeout=60)) == 1
    written = {"identity": [0], "account": []}
    stop = threading.Event()

    def writer():
        seq = 1
        while not stop.is_set():
            insert(outbox.db, "identity", "IdDocumentVerified", verified_payload(seq), key="c-%d" % (seq % 4))
            written["identity"].append(seq)
            if seq % 5 == 0:  # a new event type: its schema must be registered first
                insert(outbox.db, "account", "AccountOpened", {"seq": seq, "plan": "basic"}, key="a-%d" % seq)
                written["account"].append(seq)
            seq += 1
            time.sleep(0.05)

    registry.pause()
    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(10)
        log = outbox.relay.log()
        assert "holding back the row of outbox.events" in log
    finally:
        registry.resume()
    time.sleep(2)
    stop.set()
    t.join()
    decode = deserializer(registry)
    for aggregate, seqs in written.items():
        msgs = kafka.consume([outbox.topic(aggregate)], until=len(seqs), timeout=120)
        time.sleep(1)
        msgs = kafka.consume([outbox.topic(aggregate)], timeout=20)  # nothing more after them
        got = [decode(m)["seq"] for m in msgs]
        assert sorted(got) == sorted(seqs), aggregate
        per_key = {}
        for m, s in zip(msgs, got):  # in order per key
            assert per_key.get(m["key"], -1) < s
            per_key[m["key"]] = s
    dead = [m for m in kafka.consume([DLQ], timeout=10)
            if dict(m["headers"]).get("dlq_topic", b"").startswith(outbox.prefix.encode())]
    assert dead == []
    assert outbox.relay.stop() == 0


def test_check_config_reads_the_schema_files(tmp_path):
    """check-config parses every .avsc: a bad one is named with what is wrong (exit 2)."""
    import relayctl
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "IdDocumentVerified.avsc").write_text(json.dumps(VERIFIED))
    path = tmp_path / "relay.conf"
    path.write_text('postgresql = { conninfo = "x"; };\nkafka = { bootstrap_servers = "b"; };\n'
                    'sources = ( { table = "outbox.events"; format = "avro"; } );\n'
                    'schema_registry = { url = "http://127.0.0.1:1/apis/ccompat/v7"; schema_dir = "%s"; };\n'
                    % schemas)
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 0, out
    (schemas / "Broken.avsc").write_text('{"type": "record", "name": "B", "fields": [{"name": "x", "type": "nope"}]}')
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2 and "%s/Broken.avsc: not a valid Avro schema" % schemas in out, out
    (schemas / "Broken.avsc").write_text('{"type": "bytes", "logicalType": "decimal"}')
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2 and "%s/Broken.avsc: a decimal needs 1 <= precision" % schemas in out, out


class AuthProxy:
    """An HTTP proxy in front of the registry that wants basic auth (Apicurio's own needs an
    identity server): 401 without the right user and password, else the registry's answer."""

    def __init__(self, registry, user=None, password=None, tls=None, client_ca=None):
        """user None: no auth wanted. tls: (certificate file, key file): https on localhost.
        client_ca: with tls, mutual TLS: the handshake wants a client certificate this CA signed."""
        import base64
        import http.server
        import ssl
        import urllib.request
        from harness import free_port
        want = None if user is None else "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        self.seen = []
        self.peers = []  # the CN of each request's client certificate (mutual TLS)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                proxy.seen.append(self.headers.get("Authorization"))
                if client_ca:
                    subject = dict(x[0] for x in self.connection.getpeercert()["subject"])
                    proxy.peers.append(subject.get("commonName"))
                if want is not None and self.headers.get("Authorization") != want:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                base = registry.url.rsplit("/apis/", 1)[0]
                req = urllib.request.Request(base + self.path, data=body, method=self.command,
                                             headers={"Content-Type": self.headers.get("Content-Type", "")})
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with opener.open(req, timeout=10) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = "http://127.0.0.1:%d/apis/ccompat/v7" % self.server.server_address[1]
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            if client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(client_ca)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.url = "https://localhost:%d/apis/ccompat/v7" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_basic_auth_with_the_password_from_a_credential(outbox, kafka, registry, tmp_path):
    """The password comes from the credential schema-registry-password, never from the file,
    and never appears in the log; a wrong one holds the stream back until it is right."""
    proxy = AuthProxy(registry, "relay", "s3cr3t-Pw!")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "schema-registry-password").write_text("wrong\n")
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "AccountOpened.avsc").write_text(json.dumps(OPENED))
    try:
        outbox.reconfigure(
            sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; format = "avro"; }' % outbox.prefix,
            extra_top='schema_registry = { url = "%s"; user = "relay"; schema_dir = "%s"; timeout_ms = 2000; };'
                      % (proxy.url, schemas))
        outbox.relay.env = {"CREDENTIALS_DIRECTORY": str(creds)}
        outbox.relay.start()
        outbox.relay.wait_streaming()
        insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"})
        outbox.relay.wait_log("HTTP 401", timeout=30)
        assert kafka.consume([outbox.topic("account")], timeout=3) == []
        assert outbox.relay.stop() == 0
        (creds / "schema-registry-password").write_text("s3cr3t-Pw!\n")
        outbox.relay.start()
        msgs = kafka.consume([outbox.topic("account")], until=1, timeout=60)
        time.sleep(1)
        msgs = kafka.consume([outbox.topic("account")], timeout=10)
        assert [deserializer(registry)(m) for m in msgs] == [{"seq": 1, "plan": "basic"}]
        assert outbox.relay.stop() == 0
        assert "s3cr3t" not in outbox.relay.log()
        assert proxy.seen and all(a and a.startswith("Basic ") for a in proxy.seen)
    finally:
        proxy.close()


KEY_PASSPHRASE = "relay-key-Pw!"


def registry_certs(tmp_path):
    """tmp_path/certs: a private CA (and an unrelated one), the registry's server certificate
    for localhost, and the relay's client certificate with its key plain (relay.key) and
    encrypted with KEY_PASSPHRASE (relay-enc.key); skips without the openssl CLI."""
    import shutil
    from test_tls import _make_ca, _make_leaf, _openssl
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    d = str(tmp_path / "certs")
    os.mkdir(d)
    _make_ca(d, "ca")
    _make_ca(d, "wrong-ca")
    _make_leaf(d, "registry", "localhost", "subjectAltName = DNS:localhost\nextendedKeyUsage = serverAuth")
    _make_leaf(d, "relay", "outbox-relay", "extendedKeyUsage = clientAuth")
    _openssl("pkey", "-in", "relay.key", "-aes256", "-passout", "pass:" + KEY_PASSPHRASE,
             "-out", "relay-enc.key", cwd=d)
    return d


def https_proxy(registry, certs, mutual=False):
    """The TLS proxy in front of the registry with the server certificate of certs; mutual:
    it wants a client certificate of certs' CA."""
    return AuthProxy(registry, tls=(os.path.join(certs, "registry.crt"), os.path.join(certs, "registry.key")),
                     client_ca=os.path.join(certs, "ca.crt") if mutual else None)


def start_through(outbox, proxy, tmp_path, tls_keys):
    """Starts the relay with one Avro source (AccountOpened) whose registry is proxy;
    tls_keys: the schema_registry keys of TLS (ca_file, cert_file, key_file)."""
    schemas = tmp_path / "schemas"
    schemas.mkdir(exist_ok=True)
    (schemas / "AccountOpened.avsc").write_text(json.dumps(OPENED))
    outbox.reconfigure(
        sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; format = "avro"; }' % outbox.prefix,
        extra_top='schema_registry = { url = "%s"; %s schema_dir = "%s"; timeout_ms = 2000; };'
                  % (proxy.url, " ".join('%s = "%s";' % kv for kv in tls_keys.items()), schemas))
    outbox.relay.start()
    outbox.relay.wait_streaming()


def assert_published_once(outbox, kafka, registry, payloads):
    """Each payload of AccountOpened reaches the account topic once, decodable; the relay is
    stopped cleanly first (everything it produced is committed), then the topic read to its end."""
    kafka.consume([outbox.topic("account")], until=len(payloads), timeout=60)
    assert outbox.relay.stop() == 0
    msgs = kafka.consume([outbox.topic("account")], timeout=10)
    assert [deserializer(registry)(m) for m in msgs] == payloads


def test_https_registry_with_a_ca_file(outbox, kafka, registry, tmp_path):
    """An https registry (a TLS proxy with a certificate of a private CA): schema_registry.ca_file
    names the CA; with another CA the certificate is refused and the stream is held back."""
    certs = registry_certs(tmp_path)
    proxy = https_proxy(registry, certs)
    try:
        start_through(outbox, proxy, tmp_path, {"ca_file": os.path.join(certs, "wrong-ca.crt")})
        insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"})
        log = outbox.relay.wait_log("holding back the row of outbox.events", timeout=30)
        assert "certificate" in log.split("holding back the row of outbox.events")[1].splitlines()[0]
        assert outbox.relay.stop() == 0
        start_through(outbox, proxy, tmp_path, {"ca_file": os.path.join(certs, "ca.crt")})
        assert_published_once(outbox, kafka, registry, [{"seq": 1, "plan": "basic"}])
    finally:
        proxy.close()


def test_mutual_tls_registry_with_a_client_certificate_and_an_encrypted_key(outbox, kafka, registry, tmp_path):
    """A registry that wants a client certificate (mutual TLS): schema_registry.cert_file and
    key_file; the key's passphrase comes from the credential schema-registry-key-password.
    Every request shows the certificate; the events decode; the passphrase is not logged."""
    certs = registry_certs(tmp_path)
    proxy = https_proxy(registry, certs, mutual=True)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "schema-registry-key-password").write_text(KEY_PASSPHRASE + "\n")
    outbox.relay.env = {"CREDENTIALS_DIRECTORY": str(creds)}
    try:
        start_through(outbox, proxy, tmp_path, {"ca_file": os.path.join(certs, "ca.crt"),
                                                "cert_file": os.path.join(certs, "relay.crt"),
                                                "key_file": os.path.join(certs, "relay-enc.key")})
        insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"})
        insert(outbox.db, "account", "AccountOpened", {"seq": 2, "plan": "pro"})
        assert_published_once(outbox, kafka, registry, [{"seq": 1, "plan": "basic"}, {"seq": 2, "plan": "pro"}])
        assert proxy.peers and set(proxy.peers) == {"outbox-relay"}
        assert KEY_PASSPHRASE not in outbox.relay.log()
    finally:
        proxy.close()


def test_without_a_client_certificate_a_mutual_tls_registry_holds_the_stream_back(outbox, kafka, registry, tmp_path):
    """The registry refuses the handshake (no client certificate): the row is held back like in
    an outage, with curl's reason in the log; nothing on the topic, nothing dead-lettered.
    Restarted with a certificate, the relay publishes the event once."""
    certs = registry_certs(tmp_path)
    proxy = https_proxy(registry, certs, mutual=True)
    ca = {"ca_file": os.path.join(certs, "ca.crt")}
    try:
        start_through(outbox, proxy, tmp_path, ca)
        insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"})
        log = outbox.relay.wait_log("holding back the row of outbox.events", timeout=30)
        why = log.split("holding back the row of outbox.events")[1].splitlines()[0]
        # TLS 1.3 refuses a missing certificate after the handshake: curl then says SSL, or that
        # the peer went away mid-request, whichever it met first.
        assert any(w in why for w in ("SSL", "TLS", "peer")), why
        assert kafka.consume([outbox.topic("account")], timeout=3) == []
        assert outbox.relay.stop() == 0
        start_through(outbox, proxy, tmp_path, dict(ca, cert_file=os.path.join(certs, "relay.crt"),
                                                    key_file=os.path.join(certs, "relay.key")))
        assert_published_once(outbox, kafka, registry, [{"seq": 1, "plan": "basic"}])
        dead = [m for m in kafka.consume([DLQ], timeout=10)
                if dict(m["headers"]).get("dlq_topic", b"").startswith(outbox.prefix.encode())]
        assert dead == []
    finally:
        proxy.close()


def test_a_key_file_encrypted_after_the_start_never_makes_the_relay_ask_on_its_terminal(outbox, kafka, registry, tmp_path):
    """libcurl reads cert_file and key_file again at each new connection. A key replaced by an
    encrypted one while the relay runs (no passphrase credential) holds the stream back like an
    outage; OpenSSL never asks for a passphrase on the relay's controlling terminal (which would
    block the loop); the plain key put back in place is used at the next attempt, event once."""
    import pty
    import select
    import shutil
    import sys
    certs = registry_certs(tmp_path)
    key = tmp_path / "relay.key"
    shutil.copy(os.path.join(certs, "relay.key"), key)
    master, slave = pty.openpty()
    wrapper = tmp_path / "on-a-terminal"
    wrapper.write_text("#!%s\nimport os, sys\nos.setsid()\nos.close(os.open(%r, os.O_RDWR))  # the controlling tty\n"
                       "os.execv(%r, [%r] + sys.argv[1:])\n"
                       % (sys.executable, os.ttyname(slave), outbox.relay.binary, outbox.relay.binary))
    wrapper.chmod(0o755)
    outbox.relay.binary = str(wrapper)
    proxy = https_proxy(registry, certs, mutual=True)
    try:
        start_through(outbox, proxy, tmp_path, {"ca_file": os.path.join(certs, "ca.crt"),
                                                "cert_file": os.path.join(certs, "relay.crt"), "key_file": str(key)})
        insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"})
        kafka.consume([outbox.topic("account")], until=1, timeout=60)
        since = len(outbox.relay.log())
        shutil.copy(os.path.join(certs, "relay-enc.key"), key)
        insert(outbox.db, "ledger", "AccountOpened", {"seq": 2, "plan": "pro"})  # a new subject: asks the registry
        log = outbox.relay.wait_log("holding back the row of outbox.events", timeout=30, since=since)
        assert kafka.consume([outbox.topic("ledger")], timeout=3) == []
        said = b""
        while select.select([master], [], [], 0)[0]:
            said += os.read(master, 4096)
        assert b"pass phrase" not in said.lower() and "pass phrase" not in log[since:].lower(), said
        shutil.copy(os.path.join(certs, "relay.key"), key)
        kafka.consume([outbox.topic("ledger")], until=1, timeout=60)
        assert outbox.relay.stop() == 0
        msgs = kafka.consume([outbox.topic("ledger")], timeout=10)
        assert [deserializer(registry)(m) for m in msgs] == [{"seq": 2, "plan": "pro"}], log[since:]
    finally:
        os.close(master)  # a relay stuck on its terminal reads an end of file and goes on
        os.close(slave)
        proxy.close()


def test_check_config_refuses_a_client_certificate_without_its_key(tmp_path):
    """cert_file without key_file, and a key_file that is not the certificate's key: one line
    each naming the file and line of the key (exit 2)."""
    import relayctl
    certs = registry_certs(tmp_path)
    path = tmp_path / "relay.conf"

    def check(lines):
        path.write_text('postgresql = { conninfo = "x"; };\nkafka = { bootstrap_servers = "b"; };\n'
                        'schema_registry = {\n  url = "https://localhost:1/apis/ccompat/v7";\n%s};\n' % lines)
        return relayctl.run_once(["check-config", str(path)])

    code, out = check('  cert_file = "%s/relay.crt";\n' % certs)
    assert code == 2 and out.strip() == "%s:5: schema_registry.cert_file needs schema_registry.key_file " \
        "(the certificate's private key)" % path, out
    code, out = check('  cert_file = "%s/relay.crt";\n  key_file = "%s/registry.key";\n' % (certs, certs))
    assert code == 2 and out.strip() == '%s:6: schema_registry.key_file "%s/registry.key" is not the private ' \
        'key of the certificate in schema_registry.cert_file "%s/relay.crt"' % (path, certs, certs), out
    code, out = check('  cert_file = "%s/relay.crt";\n  key_file = "%s/relay.key";\n' % (certs, certs))
    assert code == 0, out


def test_a_schema_the_registry_refuses_stops_the_relay_before_the_slot_moves(outbox, kafka, registry, tmp_path):
    """An incompatible schema under the subject (BACKWARD): one clear line, exit 1, nothing
    published; the event is still there for the next start."""
    subject = outbox.topic("account") + "-value"
    old = {"type": "record", "name": "AccountOpened", "fields": [{"name": "owner", "type": "string"}]}
    status, _ = registry.request("POST", "/subjects/%s/versions" % subject, {"schema": json.dumps(old)})
    assert status == 200
    start_avro(outbox, registry, tmp_path)
    insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"})
    assert outbox.relay.wait_exit(60) == 1
    errors = [line for line in outbox.relay.log().splitlines() if " error " in line]
    assert len(errors) == 1 and "refused the schema of subject %s (HTTP 409)" % subject in errors[0], errors
    assert kafka.consume([outbox.topic("account")], timeout=3) == []


def test_without_auto_registration_a_registered_version_is_used(outbox, kafka, registry, tmp_path):
    """auto_register = false: the version registered already (the same text: the file compacted)
    is used; an event type whose schema is not registered stops the relay, nothing published."""
    subject = outbox.topic("identity") + "-value"
    canonical = json.dumps(VERIFIED, separators=(",", ":"), ensure_ascii=False)
    status, answer = registry.request("POST", "/subjects/%s/versions" % subject, {"schema": canonical})
    assert status == 200
    start_avro(outbox, registry, tmp_path, registry_extra="auto_register = false;")
    insert(outbox.db, "identity", "IdDocumentVerified", verified_payload(1))
    msgs = kafka.consume([outbox.topic("identity")], until=1, timeout=60)
    assert len(msgs) == 1 and struct.unpack(">I", msgs[0]["value"][1:5])[0] == answer["id"]
    assert deserializer(registry)(msgs[0]) == expected_decoded(verified_payload(1))
    insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"})
    assert outbox.relay.wait_exit(60) == 1
    errors = [line for line in outbox.relay.log().splitlines() if " error " in line]
    assert len(errors) == 1 and "not registered under subject %s" % outbox.topic("account") in errors[0], errors
    assert kafka.consume([outbox.topic("account")], timeout=3) == []
    status, _ = registry.request("GET", "/subjects/%s-value/versions" % outbox.topic("account"))
    assert status == 404  # nothing was registered


def test_registry_stopped_then_started_loses_and_duplicates_nothing(outbox, kafka, registry, tmp_path):
    """The registry process is down (connections refused) when the relay starts and while rows
    are written; once it is up again (empty: in-memory) every event goes out exactly once.
    Last in this file: the session's registry starts empty afterwards."""
    registry.stop()
    try:
        start_avro(outbox, registry, tmp_path, timeout_ms=1000)
        seqs = []
        for seq in range(1, 21):
            insert(outbox.db, "account", "AccountOpened", {"seq": seq, "plan": "p%d" % seq}, key="a-%d" % (seq % 3))
            seqs.append(seq)
            time.sleep(0.1)
        outbox.relay.wait_log("holding back the row of outbox.events", timeout=30)
        time.sleep(3)
        assert kafka.consume([outbox.topic("account")], timeout=3) == []
    finally:
        registry.start()
    msgs = kafka.consume([outbox.topic("account")], until=len(seqs), timeout=120)
    time.sleep(1)
    msgs = kafka.consume([outbox.topic("account")], timeout=20)
    decode = deserializer(registry)
    got = [decode(m)["seq"] for m in msgs]
    assert sorted(got) == seqs
    per_key = {}
    for m, s in zip(msgs, got):
        assert per_key.get(m["key"], -1) < s
        per_key[m["key"]] = s
    assert outbox.relay.stop() == 0
